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

NAME=mariadb
. "$(dirname "$0")/lib.sh"

server_args 2 "$0 start|stop|restart|pause|resume|url DIR" "$@"
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

read_pid() { cat "$M/pid" 2>/dev/null || true; }

ping_server() {
  mariadb-admin --no-defaults --socket="$SOCK" -uroot --connect-timeout=2 \
    ping >/dev/null 2>&1
}

root_sql() { mariadb --no-defaults --socket="$SOCK" -uroot -e "$1"; }

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
  lrc=0
  await_up "$lpid" "$M/error.log" "bind on tcp/ip port\|address already in use" \
    600 ping_server || lrc=$? # 60 s
  pid_alive "$lpid" || rm -f "$M/pid"
  return $lrc
}

do_stop() {
  stop_pid "$(read_pid)" 300 # 30 s
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
  launch_spare launch "mariadbd (see $M/error.log)"
  port=$(cat "$M/port")

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
    export_line GOMASTER_TEST_MYSQL_URL \
      "mysql://gomaster:$enc@127.0.0.1:$port/gomaster_test"
    # for the tests that restart or pause the server with this script
    export_line GOMASTER_TEST_MARIADB_DIR "$top"
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
  relaunch launch "$port" "$M/env" "mariadbd (see $M/error.log)"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
restart) do_restart ;;
pause) signal_pid "$(read_pid)" STOP mariadbd ;;
resume) signal_pid "$(read_pid)" CONT mariadbd ;;
url) cat "$M/env" ;;
*) die "unknown command: $cmd" ;;
esac
