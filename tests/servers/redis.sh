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

NAME=redis
. "$(dirname "$0")/lib.sh"

server_args 0 "$0 start|stop|restart|pause|resume|url|cli DIR" "$@"
shift 2
R=$top/redis

for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found: install redis-server (sh scripts/deps.sh)"
done

read_pid() { cat "$R/pid" 2>/dev/null || true; }

cli() {
  REDISCLI_AUTH=$(cat "$R/password") redis-cli -h 127.0.0.1 \
    -p "$(cat "$R/port")" --no-auth-warning "$@"
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
  lrc=0
  await_up "$lpid" "$R/redis.log" "address already in use" 300 pong || lrc=$? # 30 s
  pid_alive "$lpid" || rm -f "$R/pid"
  return $lrc
}

pong() { [ "$(cli ping 2>/dev/null)" = PONG ]; }

do_stop() {
  stop_pid "$(read_pid)" 100 # 10 s
  rm -f "$R/pid"
}

do_start() {
  if pid_alive "$(read_pid)"; then die "already running (pid $(read_pid))"; fi
  mkdir -p "$R"
  # The password needs percent-encoding in a URL: the tests check decoding.
  hex=$(random_hex 8)
  printf '%s' "gm:p@ss/%$hex" >"$R/password"
  chmod 600 "$R/password"
  launch_spare launch "redis-server (see $R/redis.log)"
  {
    export_line GOMASTER_TEST_REDIS_URL \
      "redis://:gm%3Ap%40ss%2F%25$hex@127.0.0.1:$(cat "$R/port")/0"
    export_line GOMASTER_TEST_REDIS_DIR "$top"
  } >"$R/env"
  echo "redis.sh: redis-server pid $(read_pid) on 127.0.0.1:$(cat "$R/port")" >&2
  cat "$R/env"
}

do_restart() {
  [ -f "$R/port" ] || die "not started in $top"
  port=$(cat "$R/port")
  do_stop
  relaunch launch "$port" "$R/env" "redis-server (see $R/redis.log)"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
restart) do_restart ;;
pause) signal_pid "$(read_pid)" STOP redis-server ;;
resume) signal_pid "$(read_pid)" CONT redis-server ;;
url) cat "$R/env" ;;
cli) cli "$@" ;;
*) die "unknown command: $cmd" ;;
esac
