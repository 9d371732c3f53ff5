#!/bin/bash
# One chaos run (make chaos): starts a private database server for BACKEND
# (tests/servers/), runs tests/chaos/run.lua, judges the logs with
# tests/chaos/check.lua (which prints the summary table) and exits with its
# verdict.
#
#   tests/chaos/chaos.sh BACKEND DURATION [NODES LEASE RETRY SEED]
#     BACKEND   sqlite | mysql | mongo | postgres | redis | galera (a 3-node
#               cluster; each node's URL names all three, see run.lua)
#   GOMASTER_CHAOS_HOSTILE=1 adds the user's hand (see tests/chaos/run.lua).
#     DURATION  seconds
#   GOMASTER_KEEP=1 keeps the logs (their directory is printed).
#
# Needs the Lua 5.4 build (make) and, for mysql, mongo and redis, what
# tests/servers/*.sh need (sh scripts/deps.sh).
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
export GOMASTER_ROOT="$ROOT"
backend=${1:?usage: chaos.sh sqlite|mysql|mongo|postgres|redis|galera DURATION [NODES LEASE RETRY SEED]}
duration=${2:?usage: chaos.sh BACKEND DURATION}
shift 2
dir=$(mktemp -d /tmp/gomaster-chaos.XXXXXX)
server=""

cleanup() {
  [ -n "$server" ] && bash "tests/servers/$server.sh" stop "$dir" >/dev/null 2>&1
  if [ -n "${GOMASTER_KEEP:-}" ]; then echo "chaos: logs kept in $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case $backend in
sqlite) url="sqlite://$dir/chaos.db" ;;
mysql | mongo | postgres | redis | galera)
  case $backend in mysql) server=mariadb ;; *) server=$backend ;; esac
  # A real MongoDB (GOMASTER_TEST_MONGO_URI) cannot be paused or restarted
  # from here: the chaos run always uses the stand-in.
  env=$(GOMASTER_TEST_MONGO_URI='' bash "tests/servers/$server.sh" start "$dir" 2>"$dir/server.err") || {
    cat "$dir/server.err" >&2
    echo "chaos: the $server server did not start" >&2
    server=""
    exit 1
  }
  eval "$env"
  case $backend in
  mysql) url=$GOMASTER_TEST_MYSQL_URL ;;
  mongo) url=$GOMASTER_TEST_MONGO_URL ;;
  postgres) url=$GOMASTER_TEST_POSTGRES_URL ;;
  redis) url=$GOMASTER_TEST_REDIS_URL ;;
  galera) url=${GOMASTER_TEST_GALERA_URLS%% *} ;;
  esac
  ;;
*) echo "chaos: unknown backend $backend (sqlite, mysql, mongo, postgres, redis, galera)" >&2; exit 2 ;;
esac

export GOMASTER_CHAOS_SERVER_DIR="$dir"
mkdir -p "$dir/run"
lua5.4 tests/chaos/run.lua "$dir/run" "$backend" "$url" "$duration" "$@" || {
  echo "chaos: the runner failed" >&2
  exit 1
}
lua5.4 tests/chaos/check.lua "$dir/run"
