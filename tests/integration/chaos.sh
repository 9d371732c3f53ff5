#!/bin/bash
# The short chaos runs of make test: tests/chaos/chaos.sh for about 44 s on
# SQLite, MariaDB, the MongoDB stand-in, PostgreSQL and Redis (each on a
# private server of its own; Redis's restarts keep nothing) and 60 s on a
# 3-node Galera cluster (skipped without galera-4, rsync, the mysql user and
# root), five nodes, lease 1.5 s. Each run passes when the checker finds no
# overlap, no token that failed to grow and no leaderless gap beyond
# lease + retry + 1 s after a heal.
#
#   GOMASTER_CHAOS_SECONDS=44          length of each single-server run
#   GOMASTER_CHAOS_GALERA_SECONDS=60   length of the Galera run
set -u
cd "$(dirname "$0")/../.." || exit 2
passed=0
failed=0
backends="sqlite mysql mongo postgres redis"
if [ -f /usr/lib/galera/libgalera_smm.so ] && command -v rsync >/dev/null &&
  id mysql >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  backends="$backends galera"
else
  echo "# chaos galera skipped: needs galera-4, rsync, the mysql user and root"
fi
for backend in $backends; do
  seconds=${GOMASTER_CHAOS_SECONDS:-44}
  [ "$backend" = galera ] && seconds=${GOMASTER_CHAOS_GALERA_SECONDS:-60}
  echo "-- chaos $backend, $seconds s"
  if bash tests/chaos/chaos.sh "$backend" "$seconds"; then
    passed=$((passed + 1))
  else
    echo "not ok: chaos $backend"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
