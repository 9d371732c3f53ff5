#!/bin/sh
# A private MariaDB server for the tests, on 127.0.0.1 on a spare port.
#
#   tests/servers/mariadb.sh start DIR    create DIR/mariadb, start mariadbd,
#                                         create database gomaster_test and user
#                                         gomaster, print `export ...` lines:
#                                         GOMASTER_TEST_MYSQL_URL and
#                                         GOMASTER_TEST_MARIADB_DIR (=DIR)
#   tests/servers/mariadb.sh stop DIR     stop it (nothing keeps running)
#   tests/servers/mariadb.sh restart DIR  stop and start on the same port and data
#   tests/servers/mariadb.sh pause DIR    SIGSTOP mariadbd (a hung server)
#   tests/servers/mariadb.sh resume DIR   SIGCONT
#   tests/servers/mariadb.sh url DIR      print the export lines again
#
# GOMASTER_MARIADB_MAX_CONNECTIONS (default 151, the server's own) sets
# max_connections (a refused-connections test; a run of many nodes).
# POSIX sh (tests/run.sh runs it with sh). It installs nothing
# (scripts/deps.sh does). Functions share globals: sh has no `local`. Only the export lines go to
# stdout, so a runner can `eval "$(tests/servers/mariadb.sh start "$dir")"`;
# progress and failures go to stderr. State lives in DIR/mariadb: data/,
# mysqld.sock, port, pid, env (the export lines) and error.log.
set -eu

die() { echo "mariadb.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 start|stop|restart|pause|resume|url DIR"
cmd=$1
top=$(cd "$2" 2>/dev/null && pwd) || die "no such directory: $2"
case $top in *\'*) die "DIR must not contain a single quote: $top" ;; esac
M=$top/mariadb
SOCK=$M/mysqld.sock
# The socket path must fit in sun_path (108 bytes).
[ ${#SOCK} -lt 100 ] || die "DIR is too long for a unix socket path: $top"

for tool in mariadb-install-db mariadbd mariadb-admin mariadb; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] ||
    die "$tool not found: install mariadb-server (sh scripts/deps.sh)"
done
MARIADBD=$(command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd)

as_root=""
[ "$(id -u)" = 0 ] && as_root=--user=root

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
read_pid() { cat "$M/pid" 2>/dev/null || true; }

ping_server() {
  mariadb-admin --no-defaults --socket="$SOCK" -uroot --connect-timeout=2 \
    ping >/dev/null 2>&1
}

root_sql() { mariadb --no-defaults --socket="$SOCK" -uroot -e "$1"; }

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# A port nobody listens on now (per /proc/net/tcp*); mariadbd's bind is the
# real test (see launch).
pick_port() {
  for _ in $(seq 1 50); do
    p=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000))
    hex=$(printf '%04X' "$p")
    if ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
      grep -Eq ":$hex [0-9A-F]+:[0-9A-F]+ 0A "; then
      echo "$p"
      return 0
    fi
  done
  die "no spare port found"
}

# Starts mariadbd on port $1 and waits until it answers. Returns 2 when the
# port was taken (the caller picks another), 1 on any other failure.
launch() {
  lport=$1
  : >"$M/error.log"
  # shellcheck disable=SC2086 # as_root is empty or one word
  setsid "$MARIADBD" --no-defaults $as_root --datadir="$M/data" \
    --socket="$SOCK" --port="$lport" --bind-address=127.0.0.1 \
    --skip-name-resolve --pid-file="$M/mariadbd.pid" \
    --log-error="$M/error.log" --innodb-buffer-pool-size=32M \
    --innodb-log-file-size=16M --innodb-flush-log-at-trx-commit=2 \
    --max-connections="${GOMASTER_MARIADB_MAX_CONNECTIONS:-151}" \
    </dev/null >>"$M/error.log" 2>&1 &
  lpid=$!
  echo "$lpid" >"$M/pid"
  echo "$lport" >"$M/port"
  for _ in $(seq 1 600); do # 60 s
    if ! pid_alive "$lpid"; then
      wait "$lpid" 2>/dev/null || true
      rm -f "$M/pid"
      grep -qi "bind on tcp/ip port\|address already in use" "$M/error.log" &&
        return 2
      tail -n 20 "$M/error.log" >&2
      return 1
    fi
    ping_server && return 0
    sleep 0.1
  done
  tail -n 20 "$M/error.log" >&2
  kill -KILL "$lpid" 2>/dev/null || true
  return 1
}

do_stop() {
  pid=$(read_pid)
  if pid_alive "$pid"; then
    kill -CONT "$pid" 2>/dev/null || true # a paused server cannot shut down
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do # 30 s
      pid_alive "$pid" || break
      sleep 0.1
    done
    if pid_alive "$pid"; then
      echo "mariadb.sh: mariadbd $pid did not stop; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      while pid_alive "$pid"; do sleep 0.1; done
    fi
  fi
  rm -f "$M/pid"
}

do_start() {
  if pid_alive "$(read_pid)"; then die "already running (pid $(read_pid))"; fi
  mkdir -p "$M"
  if [ ! -d "$M/data/mysql" ]; then
    # shellcheck disable=SC2086
    mariadb-install-db --no-defaults $as_root --datadir="$M/data" \
      --auth-root-authentication-method=normal --skip-test-db \
      >"$M/install.log" 2>&1 || {
      tail -n 20 "$M/install.log" >&2
      die "mariadb-install-db failed"
    }
  fi
  rc=2
  for _ in 1 2 3 4 5; do
    port=$(pick_port)
    rc=0
    launch "$port" || rc=$?
    [ $rc = 2 ] || break
  done
  [ $rc = 0 ] || die "mariadbd did not start (see $M/error.log)"

  # The password needs percent-encoding in a URL: the tests check decoding.
  # Rights on gomaster* databases, so that a missing one is "unknown
  # database" rather than "access denied".
  hex=$(random_hex 8)
  pw="gm:p@ss/%$hex"
  enc="gm%3Ap%40ss%2F%25$hex"
  root_sql "CREATE DATABASE IF NOT EXISTS gomaster_test;
    CREATE OR REPLACE USER 'gomaster'@'%' IDENTIFIED BY '$pw';
    GRANT ALL ON \`gomaster%\`.* TO 'gomaster'@'%';" ||
    { do_stop; die "could not create the test database and user"; }
  {
    printf "export GOMASTER_TEST_MYSQL_URL='mysql://gomaster:%s@127.0.0.1:%s/gomaster_test'\n" \
      "$enc" "$port"
    # for the tests that restart or pause the server with this script
    printf "export GOMASTER_TEST_MARIADB_DIR='%s'\n" "$top"
  } >"$M/env"
  echo "mariadb.sh: mariadbd pid $(read_pid) on 127.0.0.1:$port, data in $M" >&2
  cat "$M/env"
}

do_restart() {
  if [ ! -f "$M/port" ] || [ ! -d "$M/data/mysql" ]; then
    die "not started in $top"
  fi
  port=$(cat "$M/port")
  do_stop
  # The kernel may hold the port a moment after the old server's exit.
  for _ in $(seq 1 50); do
    launch "$port" && { cat "$M/env"; return 0; }
    [ $? = 2 ] || die "mariadbd did not restart (see $M/error.log)"
    sleep 0.2
  done
  die "port $port stayed busy"
}

signal() {
  pid=$(read_pid)
  pid_alive "$pid" || die "mariadbd is not running in $top"
  kill "-$1" "$pid"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
restart) do_restart ;;
pause) signal STOP ;;
resume) signal CONT ;;
url) cat "$M/env" ;;
*) die "unknown command: $cmd" ;;
esac
