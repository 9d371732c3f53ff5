#!/bin/sh
# The MongoDB server for the tests: a real one when GOMASTER_TEST_MONGO_URI
# is set, otherwise the wire-protocol stand-in (tests/mongo_standin/) on
# 127.0.0.1 on a spare port.
#
#   tests/servers/mongo.sh start DIR      start the stand-in (or take the real
#                                         server's URI) and print `export ...`
#                                         lines: GOMASTER_TEST_MONGO_URL, and
#                                         for the stand-in GOMASTER_TEST_MONGO_DIR
#                                         (=DIR) for the tests that use the
#                                         commands below
#   tests/servers/mongo.sh stop DIR       stop it (nothing keeps running)
#   tests/servers/mongo.sh restart DIR [keep]
#                                         stop and start on the same port: the
#                                         stand-in's memory (every document,
#                                         its clock step) is lost; with keep,
#                                         the documents stay (a real restart)
#   tests/servers/mongo.sh stepclock DIR SECONDS
#                                         move the stand-in's clock ($$NOW,
#                                         localTime) by SECONDS (may be < 0)
#   tests/servers/mongo.sh counts DIR     print how many commands of each name
#                                         the stand-in served (JSON)
#   tests/servers/mongo.sh maxconns DIR N set the stand-in's connection limit
#                                         (mongod's net.maxIncomingConnections;
#                                         0: none) and print how many are open
#   tests/servers/mongo.sh url DIR        print the export lines again
#
# GOMASTER_MONGO_MAX_CONNECTIONS (default 0: none) starts the stand-in with
# that connection limit (mongod's net.maxIncomingConnections).
#
# Only the export lines go to stdout, so a runner can
# `eval "$(tests/servers/mongo.sh start "$dir")"`; progress and failures go
# to stderr. State lives in DIR/mongo: port, pid, env, standin.log.
set -eu

NAME=mongo
. "$(dirname "$0")/lib.sh"

server_args 0 "$0 start|stop|restart|stepclock|counts|maxconns|url DIR [SECONDS|N]" "$@"
M=$top/mongo
HERE=$(cd "$(dirname "$0")/../.." && pwd)
STANDIN=$HERE/tests/mongo_standin/standin.py
# Debian's interpreter: another python3 on PATH may not see python3-mockupdb.
PY=/usr/bin/python3

standin() { "$PY" "$STANDIN" "$@"; }

is_real() { [ -f "$M/real" ]; }

need_standin() {
  is_real && die "$cmd needs the stand-in; GOMASTER_TEST_MONGO_URI is a real server"
  [ -f "$M/port" ] || die "not started in $top"
}

# Starts the stand-in on port $1 (0: a spare one); the command returns once
# it listens (the daemon reports its port through a pipe).
launch() {
  local port
  port=$(standin serve --daemon --port "$1" --pidfile "$M/pid" \
    --max-connections "${GOMASTER_MONGO_MAX_CONNECTIONS:-0}" \
    --logfile "$M/standin.log" --state "$M/state") || {
    tail -n 20 "$M/standin.log" >&2
    die "the stand-in did not start (see $M/standin.log)"
  }
  echo "$port" >"$M/port"
  # It answers: the handshake a client would do, and a ping.
  standin call "$port" '{"ping": 1}' >/dev/null ||
    die "the stand-in on port $port does not answer"
}

do_start() {
  [ -f "$M/pid" ] && die "already running (pid $(cat "$M/pid"))"
  mkdir -p "$M"
  rm -f "$M/real"
  if [ -n "${GOMASTER_TEST_MONGO_URI:-}" ]; then
    touch "$M/real"
    printf "export GOMASTER_TEST_MONGO_URL='%s'\n" \
      "$(printf '%s' "$GOMASTER_TEST_MONGO_URI" | sed "s/'/'\\\\''/g")" >"$M/env"
    echo "mongo.sh: using the MongoDB server of GOMASTER_TEST_MONGO_URI" >&2
    cat "$M/env"
    return 0
  fi
  if ! "$PY" -c 'import mockupdb' 2>/dev/null; then
    die "$PY cannot import mockupdb: install python3-mockupdb (sh scripts/deps.sh)"
  fi
  rm -f "$M/state"
  launch 0
  local port
  port=$(cat "$M/port")
  {
    export_line GOMASTER_TEST_MONGO_URL "mongodb://127.0.0.1:$port/gomaster_test"
    export_line GOMASTER_TEST_MONGO_DIR "$top"
  } >"$M/env"
  echo "mongo.sh: stand-in pid $(cat "$M/pid") on 127.0.0.1:$port" >&2
  cat "$M/env"
}

do_stop() {
  is_real && return 0
  [ -f "$M/pid" ] || return 0
  # Sends SIGTERM and waits for the exit (pidfd), SIGKILL after 10 s.
  standin stop --pidfile "$M/pid"
}

# restart DIR: the documents are lost, as in a wiped database or a failover
# to an empty replica. restart DIR keep: they are kept, as a real server
# keeps them across a restart.
do_restart() {
  need_standin
  local port
  port=$(cat "$M/port")
  do_stop
  [ "${1:-}" = keep ] || rm -f "$M/state"
  launch "$port"
  if [ "${1:-}" = keep ]; then
    echo "mongo.sh: stand-in restarted on 127.0.0.1:$port, documents kept" >&2
  else
    echo "mongo.sh: stand-in restarted on 127.0.0.1:$port, memory lost" >&2
  fi
}

do_stepclock() {
  need_standin
  printf '%s' "${1:-}" | grep -Eqx -- '-?[0-9]+(\.[0-9]+)?' ||
    die "stepclock needs SECONDS, got '${1:-}'"
  standin call "$(cat "$M/port")" "{\"gomasterStepClock\": $1}" >/dev/null ||
    die "the stand-in refused the clock step"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
restart) do_restart "${3:-}" ;;
stepclock) do_stepclock "${3:-}" ;;
counts) need_standin; standin call "$(cat "$M/port")" '{"gomasterCounts": 1}' ;;
maxconns)
  need_standin
  printf '%s' "${3:-}" | grep -Eqx '[0-9]+' || die "maxconns needs N, got '${3:-}'"
  standin call "$(cat "$M/port")" "{\"gomasterMaxConnections\": $3}" ;;
url) cat "$M/env" ;;
*) die "unknown command: $cmd" ;;
esac
