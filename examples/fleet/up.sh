#!/usr/bin/env bash
# A tidepool fleet on one machine (docs/deploy.md, "A fleet through etcd"): an etcd cluster from
# Debian's etcd-server (3 members, or 1), PostgreSQL (the embedded one of `tidepool demo`, or the
# one a DSN names), three tidepool nodes joined to one fleet, and Debian's HAProxy in front of them
# (examples/haproxy/haproxy.cfg with this machine's addresses: leastconn, `option httpchk GET /ready`).
# Everything listens on 127.0.0.1, on ports from --base-port on, and lives in one dir (--dir):
# configs, data, logs and pid files. Root is not needed (as root, PostgreSQL runs as the OS user
# postgres). `down` stops what `up` started (by the pids it wrote, each checked to name the dir)
# and removes the dir.
#
# Usage: examples/fleet/up.sh [up] [--dir DIR] [--base-port N] [--etcd 3|1] [--dsn 'host=... dbname=... user=... password=...']
#        examples/fleet/up.sh down [--dir DIR]
# Ports: N HAProxy (clients connect here), N+1.. etcd clients, N+11.. etcd peers, N+20 PostgreSQL,
# N+31..N+33 the nodes, N+41..N+43 their HTTP (/ready, /metrics). Default N: 16400; DIR:
# ${TMPDIR:-/tmp}/tidepool-fleet.
# Needs: etcd-server and haproxy (apt-get install etcd-server haproxy), Node.js 20+ with npm.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

CMD=up
case "${1:-}" in up|down) CMD=$1; shift ;; esac
DIR=${TMPDIR:-/tmp}/tidepool-fleet
BASE=16400
ETCD_N=3
DSN=''
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=$2; shift 2 ;;
    --base-port) BASE=$2; shift 2 ;;
    --etcd) ETCD_N=$2; shift 2 ;;
    --dsn) DSN=$2; shift 2 ;;
    *) echo "up.sh: unknown argument $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
case "$ETCD_N" in 1|3) ;; *) echo "up.sh: --etcd takes 1 or 3" >&2; exit 2 ;; esac
case "$BASE" in ''|*[!0-9]*) echo "up.sh: --base-port takes a number" >&2; exit 2 ;; esac
if [ "$BASE" -lt 1024 ] || [ "$BASE" -gt 65480 ]; then echo "up.sh: --base-port must be 1024..65480" >&2; exit 2; fi
DIR=$(realpath -m "$DIR")

# Stops what up started: HAProxy first (no new clients), then the nodes, PostgreSQL and etcd
# together; SIGTERM, up to 10 s, then SIGKILL. A pid is only signalled while its command line still
# names $DIR (a pid file left by a crash may name a pid reused since).
down() {
  [ -d "$DIR" ] || { echo "down: nothing at $DIR"; return 0; }
  local group name pid n
  for group in haproxy 'node1 node2 node3 postgres etcd1 etcd2 etcd3'; do
    local pids=()
    for name in $group; do
      [ -f "$DIR/$name.pid" ] || continue
      pid=$(cat "$DIR/$name.pid")
      if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$DIR"; then
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
        echo "down: stopping $name ($pid)"
      fi
      rm -f "$DIR/$name.pid"
    done
    for n in $(seq 100); do
      local alive=0
      for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && alive=1; done
      [ $alive = 0 ] && break
      sleep 0.1
    done
    for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && { echo "down: $pid did not stop in 10 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }; done
  done
  rm -rf "$DIR"
  echo "down: removed $DIR"
}

if [ "$CMD" = down ]; then down; exit 0; fi

missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v node >/dev/null || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then echo "up.sh: missing ${missing[*]}: apt-get install ${missing[*]}" >&2; exit 2; fi
if [ -e "$DIR" ]; then echo "up.sh: $DIR exists: the fleet is up already, or left over (examples/fleet/up.sh down --dir $DIR)" >&2; exit 2; fi
if [ ! -d node_modules ]; then
  echo "up: npm ci (first run)"
  npm ci --no-audit --no-fund >&2
fi
mkdir -p "$DIR"
# As root, the embedded PostgreSQL runs as postgres, which must reach its dir.
chmod 755 "$DIR"

# The process runs in a session of its own (it outlives this script), its output in $DIR/<name>.log.
start() {
  local name=$1; shift
  setsid "$@" > "$DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$DIR/$name.pid"
}

# Waits up to $2 s for the command in $3.. to succeed; on failure shows $1's log and takes everything down.
wait_for() {
  local name=$1 secs=$2; shift 2
  local i
  for i in $(seq $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "up.sh: $name did not come up in ${secs} s; its log:" >&2
  tail -n 30 "$DIR/$name.log" >&2 || true
  down >&2
  exit 1
}

http_ok() { node -e "fetch(process.argv[1]).then(async (r) => process.exit(r.status === 200 && (await r.text()).includes(process.argv[2] ?? '') ? 0 : 1), () => process.exit(1))" "$@"; }
log_has() { grep -qF -- "$2" "$DIR/$1.log"; }

# etcd
cluster=''
endpoints=''
for i in $(seq "$ETCD_N"); do
  cluster+="${cluster:+,}etcd$i=http://127.0.0.1:$((BASE + 10 + i))"
  endpoints+="${endpoints:+,}127.0.0.1:$((BASE + i))"
done
for i in $(seq "$ETCD_N"); do
  start "etcd$i" etcd --name "etcd$i" --data-dir "$DIR/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$((BASE + i))" --advertise-client-urls "http://127.0.0.1:$((BASE + i))" \
    --listen-peer-urls "http://127.0.0.1:$((BASE + 10 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 10 + i))" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "tidepool-fleet-$BASE"
done
for i in $(seq "$ETCD_N"); do wait_for "etcd$i" 30 http_ok "http://127.0.0.1:$((BASE + i))/health" '"true"'; done
echo "up: etcd ($ETCD_N member(s)) on $endpoints"

# PostgreSQL
if [ -z "$DSN" ]; then
  start postgres node --import tsx examples/fleet/postgres.ts --port $((BASE + 20)) --dir "$DIR/pg"
  wait_for postgres 60 log_has postgres 'postgres ready'
  DSN="host=127.0.0.1 port=$((BASE + 20)) dbname=app user=app password=app"
  echo "up: embedded PostgreSQL on 127.0.0.1:$((BASE + 20))"
fi

# The nodes: each its own ini (listen address, fleet keys); [databases] is the same everywhere,
# and `tidepool fleet push` can replace it for all of them at once.
printf '"app" "app"\n' > "$DIR/userlist.txt"
for i in 1 2 3; do
  cat > "$DIR/node$i.ini" <<EOF
[databases]
app = $DSN

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $((BASE + 30 + i))
unix_socket_dir =
auth_type = md5
auth_file = $DIR/userlist.txt
pool_mode = transaction
default_pool_size = 10
max_client_conn = 1000
admin_users = app
ignore_startup_parameters = extra_float_digits

[tidepool]
http_listen_port = $((BASE + 40 + i))
fleet_etcd = $endpoints
fleet_name = example
node_name = node$i
node_advertise = 127.0.0.1:$((BASE + 30 + i))
EOF
  start "node$i" node --import tsx src/main.ts "$DIR/node$i.ini"
done
# Ready, and (a heartbeat later: a third of fleet_lease_ttl) seeing all three in the fleet.
for i in 1 2 3; do
  wait_for "node$i" 30 http_ok "http://127.0.0.1:$((BASE + 40 + i))/ready"
  wait_for "node$i" 30 http_ok "http://127.0.0.1:$((BASE + 40 + i))/metrics" $'\ntidepool_fleet_nodes 3\n'
done
echo "up: tidepool node1..node3 on 127.0.0.1:$((BASE + 31))..$((BASE + 33)), fleet 'example'"

# HAProxy: the example's file, with this machine's addresses and no syslog or stats socket.
sed -e "s|^\(\s*\)log /dev/log local0$|\1log stdout format raw local0|" \
    -e "/^\s*stats socket /d" \
    -e "s|^\(\s*\)bind :6432$|\1bind 127.0.0.1:$BASE|" \
    -e "/^\s*server node[0-9] /d" \
    examples/haproxy/haproxy.cfg > "$DIR/haproxy.cfg"
for i in 1 2 3; do echo "    server node$i 127.0.0.1:$((BASE + 30 + i)) check port $((BASE + 40 + i))" >> "$DIR/haproxy.cfg"; done
start haproxy /usr/sbin/haproxy -db -f "$DIR/haproxy.cfg"
wait_for haproxy 15 node -e "require('node:net').connect($BASE, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))"

cat <<EOF

The fleet is up (everything in $DIR).
  Connect through HAProxy (password: app):
    postgresql://app:app@127.0.0.1:$BASE/app
    PGPASSWORD=app psql -h 127.0.0.1 -p $BASE -U app app
  Fleet commands, from any node's console (through HAProxy reaches one of them; every node runs them):
    PGPASSWORD=app psql -h 127.0.0.1 -p $BASE -U app pgbouncer -c 'SHOW FLEET'
    PGPASSWORD=app psql -h 127.0.0.1 -p $BASE -U app pgbouncer -c 'FLEET PAUSE app'
    PGPASSWORD=app psql -h 127.0.0.1 -p $BASE -U app pgbouncer -c 'FLEET RESUME app'
  Shared config (a file with [databases], [users] and pool settings; every node applies it within a second):
    node --import tsx src/main.ts fleet push FILE.ini --etcd $endpoints --fleet example
    node --import tsx src/main.ts fleet show --etcd $endpoints --fleet example
  Per node: /ready and /metrics on http://127.0.0.1:$((BASE + 41))..$((BASE + 43)); logs in $DIR/*.log
  Stop everything: examples/fleet/up.sh down --dir $DIR
EOF
