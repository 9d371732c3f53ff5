#!/bin/bash
# 100 node processes on one lock on a MariaDB of their own (default
# max_connections, 151), default timings (lease 5 s): bench/scale.lua
# starts them (bench/node.lua), reads the server's counts over a steady
# 15 s window, SIGKILLs the master twice and ends every node. Checks that
# no two nodes' belief intervals overlap, that exactly one node was master
# over the window, that each crash failover came within the lease + 100 ms
# + a slack for a loaded machine and within the lease left at the kill +
# 100 ms + a slack, and the targets for 100 nodes at steady
# state: connections, statements/s and new connections/s on the whole
# server. Prints the figures. Takes about a minute. Ends with one line
# "N passed, N failed".
#
#   GOMASTER_KEEP=1    keep the temporary directory and the node logs
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
export GOMASTER_ROOT="$ROOT"

# ---- the thresholds: the only place they are written -------------------
NODES=100
WINDOW=15            # seconds of steady state measured
CRASHES=2
MAX_CONNECTIONS=105  # server's open connections at steady state
# statements/s on the whole server at steady state, the target: each
# follower one watch a lease that also reads the row at its end, the
# master one renewal a heartbeat (1 s): 99 / 5 + 1 = 20.8 expected
MAX_STATEMENTS=40
MAX_NEW_CONNECTIONS=0 # new connections/s at steady state (one decimal)
LEASE_MS=5000        # the default lease
FAILOVER_SLACK_MS=500 # a loaded 2-core machine running 100 processes
# a crash failover minus the lease left at the kill: the part the library
# adds (issue 13's target 100 ms; up to a heartbeat, 1 s, when the crash's
# wake-up read does not open point 2's short way), plus a slack
PAST_LEASE_MS=100
PAST_SLACK_MS=200
MAX_FAILOVER_MS=$((LEASE_MS + 100 + FAILOVER_SLACK_MS))
# -------------------------------------------------------------------------

[ -f build/5.4/gomaster/core.so ] || make -s LUA=5.4 >/dev/null || {
  echo "# build failed"; echo "0 passed, 1 failed"; exit 1; }
T=$(mktemp -d /tmp/gomaster-scale.XXXXXX)
passed=0
failed=0
cleanup() {
  bash tests/servers/mariadb.sh stop "$T" >/dev/null 2>&1
  [ -n "${GOMASTER_KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
. "$ROOT/tests/integration/lib/tap.sh"

# A server of its own: the counts are the whole server's.
if ! bash tests/servers/mariadb.sh start "$T" >"$T/env" 2>"$T/err"; then
  cat "$T/err"
  echo "0 passed, 1 failed"
  exit 1
fi
. "$T/env"

t0=$(now)
lua5.4 bench/scale.lua mysql "$GOMASTER_TEST_MYSQL_URL" \
  "$NODES" "$WINDOW" "$CRASHES" >"$T/out" 2>"$T/stderr"
rc=$?
cat "$T/stderr"
check "bench/scale.lua ran to its end" [ "$rc" = 0 ]

# scale <nodes> <connections> <statements/s> <new connections/s> <node errors/s> <masters>
read -r _ _ conns stmts newconns errs masters < <(grep '^scale ' "$T/out")
overlap=$(awk '$1 == "overlap" { print $2 }' "$T/out")
echo "# $NODES nodes, ${WINDOW} s at steady state: connections ${conns:--}," \
  "statements/s ${stmts:--}, new connections/s ${newconns:--}, node errors/s ${errs:--}," \
  "nodes master in the window ${masters:--}; refused connections reported" \
  "$(awk '$1 == "refused" { print $2 }' "$T/out")"
awk '$1 == "crash" { printf "# crash failover: %s ms (lease left at the kill: %s ms)\n", $2, $3 }' "$T/out"
awk '$1 == "close" { print $2 }' "$T/out" | sort -g | awk '
  { v[NR] = $1 } END { if (NR) printf "# close(): %d nodes, median %s ms, max %s ms\n", NR, v[int((NR + 1) / 2)], v[NR] }'

check "never two masters (no overlap of belief intervals)" [ "$overlap" = 0 ]
check "exactly one master over the steady window (got ${masters:--})" [ "${masters:-}" = 1 ]
ncrash=$(grep -c '^crash ' "$T/out")
check "$CRASHES crash failovers measured (got $ncrash)" [ "$ncrash" = "$CRASHES" ]
over=$(awk -v max="$MAX_FAILOVER_MS" '$1 == "crash" && $2 > max' "$T/out" | wc -l)
check "every crash failover within ${MAX_FAILOVER_MS} ms (lease + 100 ms + ${FAILOVER_SLACK_MS} ms)" [ "$over" = 0 ]
past=$(awk -v max="$((PAST_LEASE_MS + PAST_SLACK_MS))" '$1 == "crash" && $3 != "-" && $2 - $3 > max' "$T/out" | wc -l)
check "every crash failover within the lease left at the kill + ${PAST_LEASE_MS} ms + ${PAST_SLACK_MS} ms" [ "$past" = 0 ]
le() { [ -n "$1" ] && [ "$1" != - ] && [ "$(calc "$1 <= $2")" = 1 ]; }
check "connections at steady state ${conns:--} <= $MAX_CONNECTIONS" le "${conns:-}" "$MAX_CONNECTIONS"
check "statements/s at steady state ${stmts:--} <= $MAX_STATEMENTS" le "${stmts:-}" "$MAX_STATEMENTS"
check "new connections/s at steady state ${newconns:--} <= $MAX_NEW_CONNECTIONS" le "${newconns:-}" "$MAX_NEW_CONNECTIONS"

echo "# $(calc "$(now) - $t0") s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
