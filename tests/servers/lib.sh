# tests/servers/lib.sh: what the scripts of tests/servers/ share, sourced by
# each after it set NAME (its name in messages):
#
#   NAME=redis
#   . "$(dirname "$0")/lib.sh"
#
# POSIX sh: functions share globals (sh has no `local`), so the helpers'
# own variables start with an underscore. Progress and failures go to
# stderr; only export lines go to stdout.

die() { echo "$NAME.sh: $*" >&2; exit 1; }

# server_args MAX USAGE "$@": cmd and top (see top_dir) from a script's
# arguments COMMAND DIR: at least two, at most MAX (0: no limit); dies
# saying USAGE otherwise.
server_args() {
  _max=$1 _usage=$2
  shift 2
  if [ $# -lt 2 ] || { [ "$_max" != 0 ] && [ $# -gt "$_max" ]; }; then
    die "usage: $_usage"
  fi
  cmd=$1
  top_dir "$2"
}

# top_dir DIR: top=DIR made absolute; dies when it does not exist or holds a
# single quote (the export lines quote it so).
top_dir() {
  top=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
  case $top in *\'*) die "DIR must not contain a single quote: $top" ;; esac
}

# Whether PID is there: a zombie (exited, not yet reaped) counts, so that
# a stop waits for the reaping (postgres.sh counts it gone: its own).
pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# A port nobody listens on now (per /proc/net/tcp*); the server's bind is
# the real test (see launch_spare).
pick_port() {
  for _ in $(seq 1 50); do
    _p=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000))
    _hex=$(printf '%04X' "$_p")
    if ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
      grep -Eq ":$_hex [0-9A-F]+:[0-9A-F]+ 0A "; then
      echo "$_p"
      return 0
    fi
  done
  die "no spare port found"
}

# launch_spare LAUNCH WHAT: runs `LAUNCH PORT` on a spare port, and on
# another while LAUNCH returns 2 (the port was taken meanwhile), five times
# at most; dies saying WHAT did not start otherwise.
launch_spare() {
  _rc=2
  for _ in 1 2 3 4 5; do
    _rc=0
    "$1" "$(pick_port)" || _rc=$?
    [ $_rc = 2 ] || break
  done
  [ $_rc = 0 ] || die "$2 did not start"
}

# relaunch LAUNCH PORT ENV WHAT: runs `LAUNCH PORT` again on the port of a
# server just stopped (the kernel may hold it a moment after the old
# server's exit), then prints the export lines of file ENV; dies saying
# WHAT did not restart otherwise.
relaunch() {
  for _ in $(seq 1 50); do
    "$1" "$2" && { cat "$3"; return 0; }
    [ $? = 2 ] || die "$4 did not restart"
    sleep 0.2
  done
  die "port $2 stayed busy"
}

# await_up PID LOG BUSY TENTHS CHECK...: waits until CHECK succeeds (0),
# PID ends (2 when LOG matches BUSY, grep's basic regex: the port was
# taken; else 1), or TENTHS tenths of a second passed (1, PID killed). On 1
# the tail of LOG goes to stderr.
await_up() {
  _pid=$1 _log=$2 _busy=$3 _n=$4
  shift 4
  for _ in $(seq 1 "$_n"); do
    if ! pid_alive "$_pid"; then
      wait "$_pid" 2>/dev/null || true
      grep -qi "$_busy" "$_log" && return 2
      tail -n 20 "$_log" >&2
      return 1
    fi
    "$@" && return 0
    sleep 0.1
  done
  tail -n 20 "$_log" >&2
  kill -KILL "$_pid" 2>/dev/null || true
  return 1
}

# stop_pid PID TENTHS [SIGNAL]: SIGCONT (a paused server cannot shut down)
# and SIGNAL (TERM), then SIGKILL after TENTHS tenths of a second; returns
# once PID is gone.
stop_pid() {
  pid_alive "$1" || return 0
  kill -CONT "$1" 2>/dev/null || true
  kill "-${3:-TERM}" "$1" 2>/dev/null || true
  for _ in $(seq 1 "$2"); do
    pid_alive "$1" || return 0
    sleep 0.1
  done
  echo "$NAME.sh: pid $1 did not stop; killing it" >&2
  kill -KILL "$1" 2>/dev/null || true
  while pid_alive "$1"; do sleep 0.1; done
}

# signal_pid PID SIGNAL WHAT: sends SIGNAL (STOP: a hung server; CONT) to
# PID; dies saying WHAT is not running when PID is gone.
signal_pid() {
  pid_alive "$1" || die "$3 is not running in $top"
  kill "-$2" "$1"
}

# export_line VAR VALUE: one line for a runner's eval (VALUE holds no single
# quote).
export_line() { printf "export %s='%s'\n" "$1" "$2"; }
