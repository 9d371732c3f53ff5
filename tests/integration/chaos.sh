#!/bin/bash
# The short chaos runs of make test: tests/chaos/chaos.sh for about 60 s on
# SQLite, MariaDB, the MongoDB stand-in, PostgreSQL and Redis (each on a
# private server of its own; Redis's restarts keep nothing), five nodes,
# lease 1.5 s. Each run passes when the checker finds no
# overlap, no token that failed to grow and no leaderless gap beyond
# lease + retry + 1 s after a heal.
#
#   GOMASTER_CHAOS_SECONDS=60   length of each run
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/integration/lib/tap.sh
chaos_runs chaos "${GOMASTER_CHAOS_SECONDS:-60}" sqlite mysql mongo postgres redis
