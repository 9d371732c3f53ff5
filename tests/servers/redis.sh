#!/bin/sh
# A private Redis server for the tests, on 127.0.0.1 on a spare port, with a
# password (requirepass) and no persistence (--save "" --appendonly no).
#
#   tests/servers/redis.sh start DIR    create DIR/redis, start redis-server,
#                                       print `export ...` lines:
#                                       GOMASTER_TEST_REDIS_URL and
#                                       GOMASTER_TEST_REDIS_DIR (=DIR)
#   tests/servers/redis.sh stop DIR     stop it (nothing keeps running)
#   tests/servers/redis.sh restart DIR  stop and start on the same port: every
#                                       key is gone (nothing was kept)
#   tests/servers/redis.sh pause DIR    SIGSTOP redis-server (a hung server)
#   tests/servers/redis.sh resume DIR   SIGCONT
#   tests/servers/redis.sh url DIR      print the export lines again
#   tests/servers/redis.sh cli DIR ARGS...  run redis-cli on it (tests)
#
# POSIX sh, as tests/servers/mariadb.sh. Only the export lines go to stdout;
# progress and failures go to stderr. State lives in DIR/redis: port, pid,
# password, env (the export lines) and redis.log.
set -eu

die() { echo "redis.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 start|stop|restart|pause|resume|url|cli DIR"
cmd=$1
top=$(cd "$2" 2>/dev/null && pwd) || die "no such directory: $2"
shift 2
case $top in *\'*) die "DIR must not contain a single quote: $top" ;; esac
R=$top/redis

for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found: install redis-server (sh scripts/deps.sh)"
done

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
read_pid() { cat "$R/pid" 2>/dev/null || true; }
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

cli() {
  REDISCLI_AUTH=$(cat "$R/password") redis-cli -h 127.0.0.1 \
    -p "$(cat "$R/port")" --no-auth-warning "$@"
}

# A port nobody listens on now (per /proc/net/tcp*); the bind is the real
# test (see launch).
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

# Starts redis-server on port $1 and waits until it answers. Returns 2 when
# the port was taken (the caller picks another), 1 on any other failure.
launch() {
  lport=$1
  echo "$lport" >"$R/port"
  : >"$R/redis.log"
  # The password goes in through stdin (a config read from "-"), not argv.
  printf 'requirepass %s\n' "$(cat "$R/password")" |
    setsid redis-server - --port "$lport" --bind 127.0.0.1 --dir "$R" \
      --save "" --appendonly no --daemonize no --logfile "$R/redis.log" \
      --protected-mode yes >>"$R/redis.log" 2>&1 &
  lpid=$!
  echo "$lpid" >"$R/pid"
  for _ in $(seq 1 300); do # 30 s
    if ! pid_alive "$lpid"; then
      wait "$lpid" 2>/dev/null || true
      rm -f "$R/pid"
      grep -qi "address already in use" "$R/redis.log" && return 2
      tail -n 20 "$R/redis.log" >&2
      return 1
    fi
    [ "$(cli ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  tail -n 20 "$R/redis.log" >&2
  kill -KILL "$lpid" 2>/dev/null || true
  return 1
}

do_stop() {
  pid=$(read_pid)
  if pid_alive "$pid"; then
    kill -CONT "$pid" 2>/dev/null || true # a paused server cannot shut down
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do # 10 s
      pid_alive "$pid" || break
      sleep 0.1
    done
    if pid_alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      while pid_alive "$pid"; do sleep 0.1; done
    fi
  fi
  rm -f "$R/pid"
}

do_start() {
  if pid_alive "$(read_pid)"; then die "already running (pid $(read_pid))"; fi
  mkdir -p "$R"
  # The password needs percent-encoding in a URL: the tests check decoding.
  hex=$(random_hex 8)
  printf '%s' "gm:p@ss/%$hex" >"$R/password"
  chmod 600 "$R/password"
  rc=2
  for _ in 1 2 3 4 5; do
    rc=0
    launch "$(pick_port)" || rc=$?
    [ $rc = 2 ] || break
  done
  [ $rc = 0 ] || die "redis-server did not start (see $R/redis.log)"
  {
    printf "export GOMASTER_TEST_REDIS_URL='redis://:gm%%3Ap%%40ss%%2F%%25%s@127.0.0.1:%s/0'\n" \
      "$hex" "$(cat "$R/port")"
    printf "export GOMASTER_TEST_REDIS_DIR='%s'\n" "$top"
  } >"$R/env"
  echo "redis.sh: redis-server pid $(read_pid) on 127.0.0.1:$(cat "$R/port")" >&2
  cat "$R/env"
}

do_restart() {
  [ -f "$R/port" ] || die "not started in $top"
  port=$(cat "$R/port")
  do_stop
  # The kernel may hold the port a moment after the old server's exit.
  for _ in $(seq 1 50); do
    launch "$port" && { cat "$R/env"; return 0; }
    [ $? = 2 ] || die "redis-server did not restart (see $R/redis.log)"
    sleep 0.2
  done
  die "port $port stayed busy"
}

signal() {
  pid=$(read_pid)
  pid_alive "$pid" || die "redis-server is not running in $top"
  kill "-$1" "$pid"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
restart) do_restart ;;
pause) signal STOP ;;
resume) signal CONT ;;
url) cat "$R/env" ;;
cli) cli "$@" ;;
*) die "unknown command: $cmd" ;;
esac
