#!/bin/sh
# A private PostgreSQL server for the tests, on 127.0.0.1 on a spare port,
# and a PgBouncer in transaction pooling mode in front of it.
#
#   tests/servers/postgres.sh start DIR    create DIR/postgres, initdb, start
#                                          postgres and pgbouncer, create
#                                          database gomaster_test and role
#                                          gomaster, print `export ...` lines:
#                                          GOMASTER_TEST_POSTGRES_URL,
#                                          GOMASTER_TEST_PGBOUNCER_URL and
#                                          GOMASTER_TEST_POSTGRES_DIR (=DIR)
#   tests/servers/postgres.sh stop DIR     stop both (nothing keeps running)
#   tests/servers/postgres.sh restart DIR  stop and start the server on the
#                                          same port and data
#   tests/servers/postgres.sh pause DIR    SIGSTOP every postgres process
#   tests/servers/postgres.sh resume DIR   SIGCONT
#   tests/servers/postgres.sh url DIR      print the export lines again
#
# GOMASTER_POSTGRES_MAX_CONNECTIONS (default 200) sets max_connections
# (make bench's scale table raises it for its 200-node row).
#
# The server refuses to run as root: both run as the `postgres` user
# (runuser), which owns DIR/postgres; DIR itself gets o+x so that user can
# reach it. POSIX sh; installs nothing (scripts/deps.sh does). Only the
# export lines go to stdout; progress and failures go to stderr. State in
# DIR/postgres: data/, the socket, port, bport, env, server.log,
# pgbouncer.ini, pgbouncer.pid, pgbouncer.log.
set -eu

NAME=postgres
. "$(dirname "$0")/lib.sh"

server_args 2 "$0 start|stop|restart|pause|resume|url DIR" "$@"
case $top in *\'* | *\ *) die "DIR must not contain quotes or spaces: $top" ;; esac
P=$top/postgres
[ ${#P} -lt 80 ] || die "DIR is too long for a unix socket path: $top"

BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$BIN" ] && [ -x "$BIN/postgres" ] ||
  die "postgres not found: install postgresql (sh scripts/deps.sh)"
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] ||
  die "pgbouncer not found: install pgbouncer (sh scripts/deps.sh)"
PGBOUNCER=$(command -v pgbouncer 2>/dev/null || echo /usr/sbin/pgbouncer)
id postgres >/dev/null 2>&1 || die "no 'postgres' user (the postgresql package makes it)"

as_pg() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# A zombie (exited, not yet reaped) is not alive.
pid_alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null &&
    ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}
server_pid() { head -n 1 "$P/data/postmaster.pid" 2>/dev/null || true; }
bouncer_pid() { cat "$P/pgbouncer.pid" 2>/dev/null || true; }
sql() { as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$P" -p "$(cat "$P/port")" -U postgres -d postgres -c "$1"; }

# Starts postgres on port $1 and waits until it answers. 2: the port was
# taken (the caller picks another); 1: any other failure.
launch() {
  lport=$1
  echo "$lport" >"$P/port"
  : >"$P/server.log"
  chown postgres "$P/server.log" "$P/port"
  # setsid -f: the server is nobody's child here (runuser would stop with
  # it on SIGSTOP and never reap it)
  as_pg setsid -f "$BIN/postgres" -D "$P/data" -p "$lport" -k "$P" \
    -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c shared_buffers=16MB -c max_connections="${GOMASTER_POSTGRES_MAX_CONNECTIONS:-200}" \
    </dev/null >>"$P/server.log" 2>&1
  for _ in $(seq 1 600); do # 60 s
    if as_pg "$BIN/pg_isready" -q -h "$P" -p "$lport" 2>/dev/null; then return 0; fi
    # (a FATAL of "starting up" is pg_isready's own, early)
    if grep FATAL "$P/server.log" | grep -qv "starting up"; then
      grep -qi "address already in use" "$P/server.log" && return 2
      tail -n 20 "$P/server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  tail -n 20 "$P/server.log" >&2
  return 1
}

stop_server() {
  pid=$(server_pid)
  if pid_alive "$pid"; then
    pkill -CONT -P "$pid" 2>/dev/null || true # a paused one cannot stop
  fi
  stop_pid "$pid" 300 INT # fast shutdown
}

stop_bouncer() {
  pid=$(bouncer_pid)
  if pid_alive "$pid"; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
    pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$P/pgbouncer.pid"
}

start_bouncer() {
  bport=$1
  port=$(cat "$P/port")
  cat >"$P/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $P/userlist.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 400
logfile = $P/pgbouncer.log
pidfile = $P/pgbouncer.pid
EOF
  chown postgres "$P/pgbouncer.ini"
  : >"$P/pgbouncer.log"
  chown postgres "$P/pgbouncer.log"
  as_pg "$PGBOUNCER" -d "$P/pgbouncer.ini" >>"$P/pgbouncer.log" 2>&1 || return 1
  for _ in $(seq 1 100); do
    as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$bport" 2>/dev/null && return 0
    pid_alive "$(bouncer_pid)" || { grep -qi "address already in use\|bind" "$P/pgbouncer.log" && return 2; }
    sleep 0.1
  done
  tail -n 20 "$P/pgbouncer.log" >&2
  return 1
}

do_start() {
  pid_alive "$(server_pid)" && die "already running (pid $(server_pid))"
  chmod o+x "$top"
  mkdir -p "$P"
  chown postgres "$P"
  chmod 700 "$P"
  if [ ! -f "$P/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$P/data" -U postgres -A trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C >"$P/initdb.log" 2>&1 || {
      tail -n 20 "$P/initdb.log" >&2
      die "initdb failed"
    }
  fi
  launch_spare launch "postgres (see $P/server.log)"
  port=$(cat "$P/port")

  # The password needs percent-encoding in a URL: the tests check decoding.
  hex=$(random_hex 8)
  pw="gm:p@ss/%$hex"
  enc="gm%3Ap%40ss%2F%25$hex"
  sql "CREATE ROLE gomaster LOGIN PASSWORD '$pw';" >/dev/null ||
    { stop_server; die "could not create the test role"; }
  sql "CREATE DATABASE gomaster_test OWNER gomaster;" >/dev/null ||
    { stop_server; die "could not create the test database"; }
  printf '"gomaster" "%s"\n' "$pw" >"$P/userlist.txt"
  chown postgres "$P/userlist.txt"
  chmod 600 "$P/userlist.txt"
  rc=2
  for _ in 1 2 3 4 5; do
    bport=$(pick_port)
    rc=0
    start_bouncer "$bport" || rc=$?
    [ $rc = 2 ] || break
  done
  [ $rc = 0 ] || { stop_server; die "pgbouncer did not start (see $P/pgbouncer.log)"; }
  echo "$bport" >"$P/bport"
  {
    export_line GOMASTER_TEST_POSTGRES_URL "postgresql://gomaster:$enc@127.0.0.1:$port/gomaster_test"
    export_line GOMASTER_TEST_PGBOUNCER_URL "postgresql://gomaster:$enc@127.0.0.1:$bport/gomaster_test"
    export_line GOMASTER_TEST_POSTGRES_DIR "$top"
  } >"$P/env"
  echo "postgres.sh: postgres pid $(server_pid) on 127.0.0.1:$port, pgbouncer on $bport, data in $P" >&2
  cat "$P/env"
}

do_stop() {
  stop_bouncer
  stop_server
}

do_restart() {
  [ -f "$P/port" ] && [ -f "$P/data/PG_VERSION" ] || die "not started in $top"
  port=$(cat "$P/port")
  stop_server
  relaunch launch "$port" "$P/env" "postgres (see $P/server.log)"
}

# Every process of the server (postmaster and backends): a hung machine.
signal_all() {
  pid_alive "$(server_pid)" || die "postgres is not running in $top"
  if [ "$1" = STOP ]; then
    kill -STOP "$(server_pid)"
    pkill -STOP -P "$(server_pid)" 2>/dev/null || true
  else
    pkill -CONT -P "$(server_pid)" 2>/dev/null || true
    kill -CONT "$(server_pid)"
  fi
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
restart) do_restart ;;
pause) signal_all STOP ;;
resume) signal_all CONT ;;
url) cat "$P/env" ;;
*) die "unknown command: $cmd" ;;
esac
