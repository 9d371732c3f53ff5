#!/bin/bash
# CMD's whole process tree lives and dies with the grant (docs/cli.md,
# "CMD's process tree"): processes CMD leaves behind (in the background,
# out of its group with setsid, daemons that fork twice) are gone when CMD
# exits, when mastership is lost, and when `gomaster exec` or `once` dies
# by SIGKILL, before another node's CMD starts. Each process is told by a
# command line no other process has (`sleep 4242.<unique>`), looked up in
# /proc/*/cmdline. Also: a terminal (under `script`) is handed to CMD, and
# SIGTSTP stops CMD's tree with gomaster. SQLite; the SIGKILL case also on
# the MariaDB / MongoDB of GOMASTER_TEST_MYSQL_URL / _MONGO_URL. Ends with one line
# "N passed, N failed".
#
#   GOMASTER_KEEP=1    keep the temporary directory
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
GM="$ROOT/bin/gomaster"
[ -f build/5.4/gomaster/core.so ] || make -s LUA=5.4 >/dev/null || {
  echo "# build failed"; echo "0 passed, 1 failed"; exit 1; }
T=$(mktemp -d /tmp/gomaster-tree.XXXXXX)
chmod 777 "$T"
export GOMASTER_BACKEND="sqlite://$T/tree.db"
passed=0
failed=0
bg_pids=""

cleanup() {
  for p in $bg_pids; do kill -KILL "$p" 2>/dev/null; done
  for p in $(pids_of "sleep 4242.$$"); do kill -KILL "$p" 2>/dev/null; done
  [ -n "${GOMASTER_KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

. tests/integration/lib/tap.sh

# pids_of PREFIX: the live (not zombie) processes whose command line starts
# with PREFIX (arguments joined by spaces).
pids_of() {
  local f p st
  for f in /proc/[0-9]*/cmdline; do
    p=${f#/proc/}
    p=${p%/cmdline}
    case "$({ tr '\0' ' ' <"$f"; } 2>/dev/null)" in
    "$1"*)
      st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)
      [ -n "$st" ] && [ "$st" != Z ] && echo "$p"
      ;;
    esac
  done
}
none_of() { [ -z "$(pids_of "$1")" ]; }
all_of() { [ "$(pids_of "$1" | wc -l)" -ge "$2" ]; }
gone_pid() { ! kill -0 "$1" 2>/dev/null || [ "$(state "$1")" = Z ]; }
state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null; }
# every_stopped PREFIX: every process of PREFIX is stopped (T).
every_stopped() {
  local p
  [ -n "$(pids_of "$1")" ] || return 1
  for p in $(pids_of "$1"); do [ "$(state "$p")" = T ] || return 1; done
}
none_stopped() {
  local p
  for p in $(pids_of "$1"); do [ "$(state "$p")" != T ] || return 1; done
}

# A tree: a background job, a process out of the group (setsid), a
# daemon that forked twice (its parent gone), and CMD's own last command.
# tree_cmd U LAST: the sh -c script; every sleep is "sleep U<n>" (U: a
# number unique to this run and case).
tree_cmd() {
  echo "sleep ${1}1 & setsid sleep ${1}2 & (sh -c 'sleep ${1}3 &' &) ; $2"
}
# The last command of a tree that ends: waits until the three run.
READY="$T/ready.sh"
cat >"$READY" <<'EOF'
#!/bin/sh
i=0
while [ $i -lt 500 ]; do
  n=0
  for f in /proc/[0-9]*/cmdline; do
    case "$( { tr '\0' ' ' <"$f"; } 2>/dev/null)" in "sleep $1"*) n=$((n + 1)) ;; esac
  done
  [ $n -ge 3 ] && { echo "ready $n"; exit 0; }
  sleep 0.02
  i=$((i + 1))
done
echo "not ready"
EOF
chmod +x "$READY"
# The scan a second node runs first thing: ALIVE lines for what is left of
# the first node's tree, then "ran".
SCAN="$T/scan.sh"
cat >"$SCAN" <<'EOF'
#!/bin/sh
for f in /proc/[0-9]*/cmdline; do
  c=$({ tr '\0' ' ' <"$f"; } 2>/dev/null)
  case "$c" in "sleep $1"*) echo "ALIVE $c" ;; esac
done
echo ran
EOF
chmod +x "$SCAN"

# ---- CMD exits: its leftovers go with it ----------------------------------

u="4242.${$}1"
# Output to a file: a left-behind process holding a pipe must not hang us.
timeout 60 "$GM" exec --lease 1 --name exit -- sh -c "$(tree_cmd "$u" "$READY $u; exit 0")" >"$T/out" 2>"$T/err"
rc=$?
out=$(cat "$T/out")
check "exec of a CMD that leaves a background job, a setsid process and a daemon: exit 0 ($out)" \
  test $rc -eq 0 -a "$out" = "ready 3"
check "... all three were gone when exec returned ($(pids_of "sleep $u" | wc -l) left)" none_of "sleep $u"
check "... and no line on stderr says the tree is not contained" test -z "$(grep -F 'PID namespace' "$T/err")"

u="4242.${$}2"
timeout 60 "$GM" once --lease 1 --name once-exit -- sh -c "$(tree_cmd "$u" "$READY $u")" >"$T/out" 2>/dev/null
rc=$?
out=$(cat "$T/out")
check "once: the same, exit 0 ($out)" test $rc -eq 0 -a "$out" = "ready 3"
check "... nothing left behind" none_of "sleep $u"

# ---- SIGKILL of gomaster: the tree is gone before the next node runs -------

# sigkill_case CMD TAG: a holder runs a tree, a second node waits on the
# same lock with the scan as CMD; SIGKILL of the holder.
sigkill_case() {
  local cmd=$1 tag=$2 name="kill-$1-$2-$$" u="4242.$$$2" a b rc
  local on=${GOMASTER_BACKEND%%:*}
  "$GM" "$cmd" --lease 1 --name "$name" -- sh -c "$(tree_cmd "$u" "sleep ${u}4")" 2>/dev/null &
  a=$!
  bg_pids="$bg_pids $a"
  if ! wait_until 15 all_of "sleep $u" 4; then
    not_ok "[$cmd, $on] the holder's tree runs (4 processes: $(pids_of "sleep $u" | wc -l))"
    return
  fi
  "$GM" "$cmd" --lease 1 --name "$name" -- "$SCAN" "$u" >"$T/$tag.scan" 2>/dev/null &
  b=$!
  bg_pids="$bg_pids $b"
  sleep 0.3 # let the second node wait on the lock (it cannot run yet)
  kill -KILL "$a"
  wait "$a" 2>/dev/null
  wait_until 20 grep -q '^ran$' "$T/$tag.scan"
  check "[$cmd, $on] SIGKILL of the holder: the next node ran" grep -q '^ran$' "$T/$tag.scan"
  check "[$cmd, $on] ... and found none of the old tree alive ($(grep -c ALIVE "$T/$tag.scan") alive)" \
    test "$(grep -c ALIVE "$T/$tag.scan")" -eq 0
  check "[$cmd, $on] ... none alive now either" none_of "sleep $u"
  wait "$b" 2>/dev/null
}
sigkill_case exec 3
sigkill_case once 4
# The same on the servers of the suite, when given (the lease covers it).
if [ -n "${GOMASTER_TEST_MYSQL_URL:-}" ]; then
  GOMASTER_BACKEND=$GOMASTER_TEST_MYSQL_URL sigkill_case exec 31
fi
if [ -n "${GOMASTER_TEST_MONGO_URL:-}" ]; then
  GOMASTER_BACKEND=$GOMASTER_TEST_MONGO_URL sigkill_case exec 32
fi

# ---- mastership lost: exec exits 124 with the tree gone --------------------

u="4242.${$}5"
"$GM" exec --lease 1 --name lost -- sh -c "$(tree_cmd "$u" "sleep ${u}4")" 2>/dev/null &
a=$!
bg_pids="$bg_pids $a"
check "a tree of 4 runs under exec" wait_until 15 all_of "sleep $u" 4
"$GM" release --name lost --force >/dev/null 2>&1
wait_until 20 none_of "sleep ${u}4" || kill -KILL "$a" # a failure, never a hang
wait "$a"
rc=$?
check "release --force under a running tree: exec exits 124" test $rc -eq 124
check "... and every process of the tree was gone when it exited" none_of "sleep $u"

# ---- the pid in the start line: signals sent to it reach CMD -------------

: >"$T/relay.log"
"$GM" exec --lease 1 --name relay -- sh -c \
  "trap 'echo usr1 >>$T/relay.log' USR1; trap 'echo term >>$T/relay.log; exit 5' TERM; echo up >>$T/relay.log; while :; do sleep 0.05; done" \
  2>"$T/relay.err" &
a=$!
bg_pids="$bg_pids $a"
wait_until 15 grep -q up "$T/relay.log"
n=$(sed -n 's/.*running sh (pid \([0-9]*\)).*/\1/p' "$T/relay.err")
if [ -n "$n" ] && [ "$n" -gt 1 ]; then
  kill -USR1 "$n"
  wait_until 10 grep -q usr1 "$T/relay.log"
  kill -TERM "$n"
fi
wait_until 20 gone_pid "$a" || kill -KILL "$a" # a failure, never a hang
wait "$a"
rc=$?
check "SIGUSR1 and SIGTERM to the pid of the start line ($n) reach CMD; exec exits with its status ($rc)" \
  test "$(tr '\n' ' ' <"$T/relay.log")" = "up usr1 term " -a $rc -eq 5

# ---- where no PID namespace can be made ----------------------------------

u="4242.${$}6"
GOMASTER_TREE=group "$GM" exec --lease 1 --name group -- sh -c "sleep ${u}1 & exit 0" 2>"$T/err"
rc=$?
check "GOMASTER_TREE=group: exec runs CMD (exit 0), one line on stderr says the tree is not contained ($(grep -F 'process group' "$T/err"))" \
  test $rc -eq 0 -a "$(grep -c 'only CMD.s process group' "$T/err")" -eq 1
check "... and CMD's background job outlives it there, as that line says" all_of "sleep $u" 1
for p in $(pids_of "sleep $u"); do kill "$p"; done

# ---- without root: a user namespace -------------------------------------

if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  u="4242.${$}7"
  timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups \
    "$GM" exec --backend "sqlite://$T/nobody.db" --lease 1 --name nobody -- \
    sh -c "id -u; $(tree_cmd "$u" "$READY $u")" >"$T/out" 2>"$T/err"
  rc=$?
  out=$(tr '\n' ' ' <"$T/out")
  check "as an unprivileged user: exec runs CMD as that user (exit $rc, $out)" \
    test $rc -eq 0 -a "$out" = "65534 ready 3 "
  if grep -q 'PID namespace' "$T/err"; then
    echo "# no unprivileged user namespaces here: $(grep 'PID namespace' "$T/err")"
    for p in $(pids_of "sleep $u"); do kill "$p"; done
  else
    check "... in a user namespace: nothing left behind" none_of "sleep $u"
  fi
else
  echo "ok - # SKIP unprivileged user namespace: needs root and setpriv to switch user"
fi

# ---- SIGTSTP: CMD's tree stops before gomaster; lost meanwhile: 124 ------
# Lease 20 (renew deadline 12 s): the first stop and continue must fit in
# the deadline also on a loaded machine; the second outlasts the lease.

u="4242.${$}9"
"$GM" exec --lease 20 --name tstp -- sh -c \
  "setsid sleep ${u}1 & trap 'echo term >>$T/tstp.log' TERM; sleep ${u}2 & wait" 2>"$T/tstp.err" &
a=$!
bg_pids="$bg_pids $a"
check "a tree runs under exec" wait_until 15 all_of "sleep $u" 2
kill -TSTP "$a"
wait_until 10 test "$(state "$a")" = T
check "SIGTSTP to exec: exec stops ($(state "$a"))" test "$(state "$a")" = T
check "... and every process of CMD's tree, also out of its group, was stopped before it" every_stopped "sleep $u"
kill -CONT "$a"
check "SIGCONT, still master: the tree runs on" wait_until 10 none_stopped "sleep $u"
check "... and exec runs on too ($(state "$a"))" test -n "$(state "$a")" -a "$(state "$a")" != T -a "$(state "$a")" != Z
kill -TSTP "$a"
wait_until 10 test "$(state "$a")" = T
"$GM" exec --lease 4 --name tstp -- sh -c "echo b-ran >>$T/tstp.log" 2>/dev/null
check "while it is stopped, another node is granted the lock after the lease" grep -q b-ran "$T/tstp.log"
kill -CONT "$a"
wait_until 20 gone_pid "$a" || kill -KILL "$a" # a failure, never a hang
wait "$a"
rc=$?
check "SIGCONT after mastership was lost: exec exits 124 ($rc)" test $rc -eq 124
check "... the stopped tree was killed (SIGKILL: its TERM trap never ran)" \
  test -z "$(pids_of "sleep $u")" -a -z "$(grep term "$T/tstp.log")"

# ---- a terminal: CMD's group is its foreground group while CMD runs ------

if command -v script >/dev/null; then
  # in_tty SCRIPT: runs sh -c SCRIPT on a new terminal (util-linux script)
  # with the input of $T/tty.in, output in $T/tty.out; its status.
  in_tty() {
    timeout 30 script -qec "$1" /dev/null <"$T/tty.in" >"$T/tty.out" 2>&1
  }
  printf 'hello-tty\n\004' >"$T/tty.in"
  in_tty "$GM exec --lease 1 --name tty -- cat"
  rc=$?
  check "exec -- cat on a terminal, with input and EOF: exit 0 ($rc), the line echoed and cat's copy ($(grep -c hello-tty "$T/tty.out") lines)" \
    test $rc -eq 0 -a "$(grep -c hello-tty "$T/tty.out")" -eq 2
  printf 'after-exec\n\004' >"$T/tty.in"
  in_tty "$GM exec --lease 1 --name tty -- true; cat"
  rc=$?
  check "the terminal is given back when CMD ends: the shell's next cat reads it (exit $rc)" \
    test $rc -eq 0 -a "$(grep -c after-exec "$T/tty.out")" -eq 2
  # ^C once CMD runs: a fifo feeds the terminal.
  u="4242.${$}8"
  rm -f "$T/tty.in"
  mkfifo "$T/tty.in"
  in_tty "$GM exec --lease 1 --name tty -- sleep ${u}1" &
  a=$!
  bg_pids="$bg_pids $a"
  exec 8>"$T/tty.in"
  wait_until 20 all_of "sleep $u" 1
  printf '\003' >&8
  wait_until 20 none_of "sleep $u"
  exec 8>&-
  wait "$a"
  rc=$?
  check "^C on the terminal reaches CMD: exec exits 130 ($rc)" test $rc -eq 130
else
  skip "terminal: no script(1)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
