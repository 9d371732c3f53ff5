#!/bin/bash
# The short chaos runs of make test: tests/chaos/chaos.sh for about 30 s on
# SQLite, MariaDB, the MongoDB stand-in, PostgreSQL and Redis (each on a
# private server of its own; Redis's restarts keep nothing) and 60 s on a
# 3-node Galera cluster (skipped without galera-4, rsync, the mysql user and
# root), five nodes, lease 1.5 s. Each run passes when the checker finds no
# overlap, no token that failed to grow and no leaderless gap beyond
# lease + retry + 1 s after a heal.
#
#   GOMASTER_CHAOS_SECONDS=30          length of each single-server run
#   GOMASTER_CHAOS_GALERA_SECONDS=60   length of the Galera run
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/integration/lib/tap.sh
runs="sqlite mysql mongo postgres redis"
if [ -f /usr/lib/galera/libgalera_smm.so ] && command -v rsync >/dev/null &&
  id mysql >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  runs="$runs galera:${GOMASTER_CHAOS_GALERA_SECONDS:-60}"
else
  echo "# chaos galera skipped: needs galera-4, rsync, the mysql user and root"
fi
# shellcheck disable=SC2086
chaos_runs chaos "${GOMASTER_CHAOS_SECONDS:-30}" $runs
