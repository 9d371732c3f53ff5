#!/bin/bash
# The user's hand, randomized (make test): tests/chaos/chaos.sh with
# GOMASTER_CHAOS_HOSTILE=1 for about 30 s on SQLite, MariaDB and the MongoDB
# stand-in. Beside the usual faults: electors whose ids collide with the
# master's, an operator's edits of the row (a far-future expiry, a wrong
# owner), `gomaster release --force`, and on SQLite the
# database's files deleted under the nodes. Each run passes when the checker
# finds no overlap, no token that failed to grow, no gap beyond the bound,
# no follower spinning, and every anomaly reported through on_error.
#
#   GOMASTER_HOSTILE_SECONDS=30   length of each run
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/integration/lib/tap.sh
export GOMASTER_CHAOS_HOSTILE=1
chaos_runs "hostile chaos" "${GOMASTER_HOSTILE_SECONDS:-30}" sqlite mysql mongo
