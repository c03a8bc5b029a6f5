#!/bin/bash
# keepalived's check for a tidepool node (vrrp_script in keepalived.conf): exits 0 only when
# tidepool's /ready answers 200. Usage: check-tidepool.sh [host] [port], by default 127.0.0.1 8080,
# the node's [tidepool] http_listen_addr and http_listen_port.
# Plain bash (/dev/tcp), so the check needs no curl and starts in a millisecond or two, twice a
# second. keepalived's `timeout` bounds it should the connection hang.
set -u
host=${1:-127.0.0.1}
port=${2:-8080}
exec 3<>"/dev/tcp/$host/$port" 2>/dev/null || exit 1
printf 'GET /ready HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
IFS= read -r -t 1 status <&3 || exit 1
case $status in
  "HTTP/1."?" 200 "*) exit 0 ;;
esac
exit 1
