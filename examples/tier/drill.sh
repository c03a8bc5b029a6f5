#!/usr/bin/env bash
# The floating-IP kill drill (docs/deploy.md), from a fresh checkout: as root, it builds
# examples/keepalived/'s tier in network namespaces it creates (PostgreSQL from npm's
# embedded-postgres in the root namespace, three tidepool nodes each with Debian's keepalived, the
# clients in a namespace of their own), kills -9 the tidepool holding the floating address under
# load, and removes everything again. The last line of its output is
#   recovery_s=<s> acked=<n> lost=<n> duplicated=<n> failed=<n>
# recovery_s: from the kill to the first new connection through the address that succeeded;
# acked: commits the clients saw acknowledged; lost: of those, missing from the table; duplicated:
# transactions found twice; failed: transactions that failed once connected (the one each client
# was in when its node died, or a pgbench client's next BEGIN; refused connects are not counted).
#
# Usage: sudo examples/tier/drill.sh [--pooler tidepool|pgbouncer] [--nodes 3] [--clients 8]
#                                    [--think-ms 5] [--pgbench 4] [--stop]
#   --pgbench N: N pgbench clients besides the node-postgres ones, in 2 s runs that the drill
#                restarts as each ends, as a load script would after a failover (0: none).
#   --pooler pgbouncer: Debian's PgBouncer in tidepool's place (its check: pg_isready).
#   --stop: a planned stop (SIGTERM) instead of kill -9.
# Needs: keepalived and iproute2 (apt-get install keepalived iproute2; bash .ci/run installs them),
# Node.js 20+ and npm; for --pooler pgbouncer, pgbouncer and postgresql-client.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" != 0 ]; then
  echo "drill.sh: run as root: it creates network namespaces, a bridge and veth pairs" >&2
  exit 2
fi
missing=()
for bin in /usr/sbin/keepalived /usr/sbin/ip /usr/bin/setpriv; do [ -x "$bin" ] || missing+=("$bin"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "drill.sh: missing ${missing[*]}: apt-get install keepalived iproute2 util-linux" >&2
  exit 2
fi
if [ ! -d node_modules ]; then
  echo "drill: npm ci (first run)"
  npm ci --no-audit --no-fund >&2
fi
exec node --import tsx scripts/tier-drill.ts "$@"
