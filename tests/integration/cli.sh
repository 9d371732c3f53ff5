#!/bin/bash
# The gomaster command line (bin/gomaster, docs/cli.md), driven as users run
# it: three `gomaster exec` on one lock (one child at a time; SIGKILL of the
# holder: its child dies with it and another starts after the lease; a
# database paused past the renew deadline: the child gets SIGTERM and exec
# exits 124), signals passed on, `gomaster once` (runs once, then says
# "already done" and exits 0), `status --json` against the backend's row,
# `release --force`, --help and bad options. On SQLite always, and on the
# MariaDB / MongoDB of GOMASTER_TEST_MYSQL_URL / GOMASTER_TEST_MONGO_URL
# when set (commands their backend lacks are skipped). Ends with one line
# "N passed, N failed".
#
#   GOMASTER_KEEP=1    keep the temporary directory
set -u
. "$(dirname "$0")/lib/gm.sh"
gm_setup cli

count() {
  local c
  c=$(grep -c "^$1 " "$2" 2>/dev/null)
  echo "${c:-0}"
}
has_lines() { [ "$(count "$1" "$3")" -ge "$2" ]; }
# Gone: no such process, or a zombie nobody has reaped yet (an orphan waits
# for init, which on some machines reaps late).
gone() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
  case $st in Z*) return 0 ;; esac
  [ -z "$st" ]
}

# holder_of PID: the gomaster exec above CMD PID (its parent, or the
# parent of the namespace's init that is CMD's parent); never empty or 0.
holder_of() {
  local p q
  p=$(ps -o ppid= -p "$1" | tr -d ' ')
  q=$(ps -o ppid= -p "${p:-1}" | tr -d ' ')
  case "$(ps -o args= -p "${q:-1}")" in *bin/gomaster*) p=$q ;; esac
  [ -n "$p" ] && [ "$p" -gt 1 ] && echo "$p" || echo 999999999
}

# A child for exec: logs "start PID TIME", and "term PID" on SIGTERM. PID
# as this host sees it (CMD runs in a PID namespace where $$ is 2).
cat >"$T/child.sh" <<'EOF'
#!/bin/sh
read -r me _ </proc/self/stat
echo "start $me $(date +%s.%N)" >>"$1"
trap 'echo "term $me" >>"$1"; exit 0' TERM
while :; do sleep 0.05; done
EOF
chmod +x "$T/child.sh"

# ---- usage, help, exit codes (no database needed beyond SQLite) -----------

usage_tests() {
  export GOMASTER_BACKEND="sqlite://$T/usage.db"
  local c out err rc
  for c in exec once status release; do
    out=$("$GM" "$c" --help 2>"$T/err"); rc=$?
    check "gomaster $c --help: exit 0, usage on stdout, nothing on stderr" \
      test $rc -eq 0 -a -n "$(echo "$out" | grep "^Usage: gomaster $c")" -a ! -s "$T/err"
  done
  out=$("$GM" help once); rc=$?
  check "gomaster help once is once's help" test $rc -eq 0 -a -n "$(echo "$out" | grep '^Usage: gomaster once')"
  "$GM" >/dev/null 2>&1; rc=$?
  check "gomaster without a command: exit 2" test $rc -eq 2

  # bad_option EXPECTED_CODE PATTERN ARGS...: one line on stderr naming the cause.
  bad_option() {
    local want=$1 pat=$2
    shift 2
    "$GM" "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    check "gomaster $*: exit $want, one line on stderr naming '$pat' ($(head -c 120 "$T/err"))" \
      test $rc -eq "$want" -a "$(wc -l <"$T/err")" -eq 1 -a -n "$(grep -F -- "$pat" "$T/err")" -a ! -s "$T/out"
  }
  bad_option 2 "unknown option '--bogus'" exec --bogus -- true
  bad_option 2 "'--lease' needs a value" exec --lease
  bad_option 2 "'--lease': expected a number of seconds, got 'abc'" exec --lease abc -- true
  # the timings' ranges and rules are the core's (one place), named as options
  bad_option 2 "--retry: must be a number of seconds > 0 and at most 86400 (got -1)" once --name t --retry -1 -- true
  bad_option 2 "--lease: must be a number of seconds > 0 and at most 86400 (got 1e+300)" exec --lease 1e300 -- true
  bad_option 2 "--lease: must be a number of seconds > 0 and at most 86400 (got 1e+06)" exec --lease 1e6 -- true
  bad_option 2 "--heartbeat: must be a number of seconds > 0 and at most 86400 (got 86401)" once --name t --heartbeat 86401 -- true
  bad_option 2 "'--grace': expected a number of seconds > 0 and at most 86400, got 'inf'" exec --grace inf -- true
  local long
  long=$(printf '%0192d' 0)
  bad_option 2 "'--name': at most 191 bytes, got 192" exec --name "$long" -- true
  bad_option 2 "'--name': at most 191 bytes, got 192" status --name "$long"
  bad_option 2 "'--id': at most 127 bytes, got 192" once --name t --id "$long" -- true
  bad_option 3 "no such lock" release --force --name "${long:1}"
  bad_option 2 "--heartbeat (1.5 s) must be less than --renew-deadline (1.2 s)" exec --lease 2 --heartbeat 1.5 -- true
  bad_option 2 "--renew-deadline (3 s) must be less than --lease (2 s)" exec --lease 2 --renew-deadline 3 -- true
  bad_option 2 "a command is required" exec --lease 2
  bad_option 2 "--name is required" once -- true
  bad_option 2 "--force is required" release --name x
  bad_option 2 "unknown backend 'nosuch'" status --backend nosuch://x
  bad_option 2 "unknown option '--json'" exec --json -- true
  bad_option 2 "unknown command 'frob'" frob
  bad_option 125 "unable to open database file" status --backend "sqlite:///nonexistent-dir/x.db"
  bad_option 3 "no such lock 'nolock'" release --name nolock --force
  bad_option 127 "No such file or directory" exec --lease 1 --name nf -- "$T/no-such-command"
  bad_option 126 "Permission denied" exec --lease 1 --name nx -- "$T/usage.db"

  # Passwords: a raw '@' in a URL's user-info is refused with a word on
  # %40; no piece of a password shows in any output (any case).
  local pw='Zq9w@Xk7v-Mn4p' m
  secret_free() { ! grep -qiE 'Zq9w|Xk7v|Mn4p' "$T/out" "$T/err"; }
  at_refused() {
    local c=$1 kind=$2
    shift 2
    "$GM" "$c" "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    check "gomaster $c with a raw '@' in a $kind password: exit 2, says %40, no piece of it ($(head -c 150 "$T/err"))" \
      test $rc -eq 2 -a -n "$(grep -F '%40' "$T/err")" -a "$(wc -l <"$T/err")" -eq 1
    check "... no piece of the password in stdout or stderr" secret_free
  }
  at_refused status mysql --backend "mysql://app:$pw@127.0.0.1:1/db"
  at_refused exec mysql --backend "mysql://app:$pw@127.0.0.1:1/db" --lease 1 -- true
  if [ -f build/5.4/gomaster/mongo.so ]; then
    at_refused status mongodb --backend "mongodb://app:$pw@127.0.0.1:1/db"
    lua5.4 -e "package.path='$ROOT/lua/?.lua;'..package.path; package.cpath='$ROOT/build/5.4/?.so;'..package.cpath
      print(select(2, require('gomaster').backend{type = 'mongodb', url = 'mongodb://app:$pw@127.0.0.1:1/db'}))" >"$T/out" 2>"$T/err"
    check "a mongodb URL in a table: the same rule ($(cat "$T/out"))" grep -qF '%40' "$T/out"
    check "... no piece of the password" secret_free
  fi
  # The command line echoes no password in its usage errors.
  for m in "exec --lease mysql://app:$pw@h -- true" "status mysql://app:$pw@h" \
    "mysql://app:$pw@h" "exec -Xmysql://app:$pw@h -- true" "help mysql://app:$pw@h" \
    "status --backend mysql://app:x@h?password=$pw&ssl_key=$pw"; do
    # shellcheck disable=SC2086 # word splitting wanted
    "$GM" $m >"$T/out" 2>"$T/err"
    check "gomaster ${m:0:16}...: an error, and no piece of the password ($(head -c 100 "$T/err"))" secret_free
  done
  "$GM" status --backend "mysql://app:Zq9w%40Xk7v-Mn4p@127.0.0.1:1/db" >"$T/out" 2>"$T/err"; rc=$?
  check "a percent-encoded '@' is taken: the database is unreachable (exit $rc), no piece of the password" \
    test $rc -eq 125
  check "... no piece of the password" secret_free

  # All of 20,000 arguments reach CMD, under each interpreter built.
  local lua
  for lua in lua5.4 luajit; do
    local flavour=5.4
    [ $lua = luajit ] && flavour=luajit
    if [ ! -f "build/$flavour/gomaster/core.so" ] || ! command -v $lua >/dev/null; then
      skip "20,000 arguments under $lua: not built for it"
      continue
    fi
    # shellcheck disable=SC2046 # one argument per number
    out=$($lua "$GM" exec --lease 1 --name args -- sh -c 'echo "$# $1 ${20000}"' x $(seq 20000) 2>/dev/null); rc=$?
    check "exec under $lua passes all 20,000 arguments to CMD ($out)" test $rc -eq 0 -a "$out" = "20000 1 20000"
  done

  # status --json is valid JSON in valid UTF-8 whatever bytes a lock's name
  # holds: an overlong '/', a surrogate, a code point above U+10FFFF, a
  # stray continuation byte, a sequence cut short.
  local bad
  for bad in $'over\xe0\x80\xaflong' $'sur\xed\xa0\x80rogate' $'big\xf4\x90\x80\x80' \
    $'stray\x80' $'cut\xe2\x82'; do
    "$GM" exec --lease 1 --name "$bad" -- true 2>/dev/null
    "$GM" status --name "$bad" --json >"$T/out" 2>"$T/err"; rc=$?
    check "status --json of a lock named $(printf '%q' "$bad"): exit 0, parsed by python's json" \
      test $rc -eq 0 -a -z "$(/usr/bin/python3 -c 'import json,sys; json.load(sys.stdin)' <"$T/out" 2>&1)"
    check "... and its bytes are strict UTF-8 ($(head -c 60 "$T/out"))" \
      /usr/bin/python3 -c 'import json,sys; d = json.loads(sys.stdin.buffer.read().decode("utf-8", "strict")); sys.exit(0 if d["exists"] else 1)' <"$T/out"
  done

  "$GM" exec --lease 1 --name st -- sh -c 'exit 7' 2>/dev/null; rc=$?
  check "exec exits with CMD's status (7)" test $rc -eq 7
  "$GM" exec --lease 1 --name st -- sh -c 'kill -KILL $$' 2>/dev/null; rc=$?
  check "exec of a CMD killed by SIGKILL exits 128+9" test $rc -eq 137

  # Signals sent to gomaster exec reach CMD.
  : >"$T/sig.log"
  "$GM" exec --lease 1 --name sig -- sh -c \
    'trap "echo usr1 >>$0" USR1; trap "echo term >>$0; exit 3" TERM; echo up >>$0; while :; do sleep 0.05; done' \
    "$T/sig.log" 2>/dev/null &
  local p=$!
  bg_pids="$bg_pids $p"
  wait_until 10 grep -q up "$T/sig.log"
  kill -USR1 $p
  wait_until 5 grep -q usr1 "$T/sig.log"
  kill -TERM $p
  wait_until 10 gone $p || kill -KILL $p 2>/dev/null # a failure, never a hang
  wait $p; rc=$?
  check "SIGUSR1 and SIGTERM to exec reach CMD, exec exits with CMD's status (3)" \
    test "$(tr '\n' ' ' <"$T/sig.log")" = "up usr1 term " -a $rc -eq 3
}

# ---- per backend -------------------------------------------------------------

# pause_db / resume_db for the backend under test.
pause_db() {
  case $tag in
  sqlite) # hold the write lock: renewals (writes) wait, then fail
    rm -f "$T/hold" "$T/hold.out"
    mkfifo "$T/hold"
    sqlite3 "$db_file" <"$T/hold" >"$T/hold.out" 2>&1 &
    holder=$!
    bg_pids="$bg_pids $holder"
    exec 9>"$T/hold"
    echo "BEGIN EXCLUSIVE; SELECT 'locked';" >&9
    wait_until 5 grep -q locked "$T/hold.out"
    ;;
  mysql) sh tests/servers/mariadb.sh pause "$GOMASTER_TEST_MARIADB_DIR" >/dev/null ;;
  mongo) kill -STOP "$(cat "$GOMASTER_TEST_MONGO_DIR/mongo/pid")" ;;
  esac
}
resume_db() {
  case $tag in
  sqlite) echo "COMMIT;" >&9; exec 9>&-; wait "$holder" 2>/dev/null ;;
  mysql) sh tests/servers/mariadb.sh resume "$GOMASTER_TEST_MARIADB_DIR" >/dev/null ;;
  mongo) kill -CONT "$(cat "$GOMASTER_TEST_MONGO_DIR/mongo/pid")" ;;
  esac
}
can_pause() {
  case $tag in
  sqlite) command -v sqlite3 >/dev/null ;;
  mysql) [ -n "${GOMASTER_TEST_MARIADB_DIR:-}" ] ;;
  mongo) [ -n "${GOMASTER_TEST_MONGO_DIR:-}" ] && [ -f "$GOMASTER_TEST_MONGO_DIR/mongo/pid" ] ;;
  esac
}

exec_tests() {
  local name="exec-$tag-$RANDOM" log="$T/exec-$tag.log" i
  local -a ex
  : >"$log"
  for i in 1 2 3; do
    "$GM" exec --backend "$url" --name "$name" --lease $LEASE -- "$T/child.sh" "$log" 2>>"$T/exec-$tag.err" &
    ex[$i]=$!
    bg_pids="$bg_pids ${ex[$i]}"
  done
  wait_until 15 has_lines start 1 "$log"
  # A property over a span: let two leases pass and look again.
  sleep "$(calc "2 * $LEASE")"
  check "[$tag] exec on three shells: exactly one child runs" test "$(count start "$log")" -eq 1
  local c1 holder1
  c1=$(awk '/^start/ {print $2; exit}' "$log")
  holder1=$(holder_of "$c1")
  check "[$tag] the child's parent is one of the three gomaster exec" \
    test -n "$holder1" -a \( "$holder1" = "${ex[1]}" -o "$holder1" = "${ex[2]}" -o "$holder1" = "${ex[3]}" \)

  kill -KILL "$holder1"
  local t_kill
  t_kill=$(now)
  wait "$holder1" 2>/dev/null
  check "[$tag] SIGKILL of the holding exec: its child dies with it" wait_until 5 gone "$c1"
  check "[$tag] another child starts after the lease" wait_until 15 has_lines start 2 "$log"
  local t_start
  t_start=$(awk '/^start/ {n++; if (n == 2) print $3}' "$log")
  # The holder renewed at most a heartbeat before the kill. On SQLite the
  # kernel's file lock tells a dead holder for certain: at once is right.
  if [ "$tag" = sqlite ]; then
    check "[$tag] ... at once: the dead holder is known dead ($(calc "$t_start - $t_kill") s after the kill)" \
      test "$(calc "$t_start <= $t_kill + 0.5")" = 1
  else
    check "[$tag] ... not before the lease ended ($(calc "$t_start - $t_kill") s after the kill)" \
      test "$(calc "$t_start >= $t_kill + $LEASE - $LEASE / 5 - 0.1")" = 1
  fi
  check "[$tag] ... and only one" test "$(count start "$log")" -eq 2

  if can_pause; then
    local c2 holder2 rc
    c2=$(awk '/^start/ {n++; if (n == 2) print $2}' "$log")
    holder2=$(holder_of "$c2")
    pause_db
    local t_pause
    t_pause=$(now)
    check "[$tag] database paused past the renew deadline: the child gets SIGTERM" \
      wait_until 10 grep -q "^term $c2\$" "$log"
    local t_term
    t_term=$(now)
    wait "$holder2"; rc=$?
    resume_db
    check "[$tag] ... $(calc "$t_term - $t_pause") s after the pause, and exec exits 124" test $rc -eq 124
  else
    skip "[$tag] database pause: no way to pause this server here"
  fi
  for i in 1 2 3; do kill -TERM "${ex[$i]}" 2>/dev/null; done
  for i in 1 2 3; do wait "${ex[$i]}" 2>/dev/null; done
}

once_tests() {
  local name="once-$tag-$RANDOM" out rc
  # The library's probe: a backend without completion records says so.
  local probe
  probe=$(lua5.4 -e "package.path='$ROOT/lua/?.lua;'..package.path; package.cpath='$ROOT/build/5.4/?.so;'..package.cpath
    local b = assert(require('gomaster').backend('$url'))
    local ok, err = b:complete('gomaster-probe', '', 0, '')
    print(ok == nil and err or 'ok')")
  if [ "$probe" != ok ]; then
    skip "[$tag] once, status --json, release: $probe"
    return
  fi
  out=$("$GM" once --backend "$url" --name "$name" --lease $LEASE -- sh -c 'echo ran-once; echo side >>"$0"' "$T/once-$tag.side" 2>/dev/null); rc=$?
  check "[$tag] gomaster once runs CMD and exits 0" test $rc -eq 0 -a "$out" = ran-once
  out=$("$GM" once --backend "$url" --name "$name" --lease $LEASE -- sh -c 'echo side >>"$0"' "$T/once-$tag.side" 2>"$T/err"); rc=$?
  check "[$tag] gomaster once again: exit 0, one clear line ($out)" \
    test $rc -eq 0 -a "$(echo "$out" | wc -l)" -eq 1 -a -n "$(echo "$out" | grep -E "^gomaster once: task '$name' already done at [0-9T:-]+Z by .+ \(token [0-9]+\): exit 0")"
  check "[$tag] ... and CMD ran once" test "$(wc -l <"$T/once-$tag.side")" -eq 1
  "$GM" once --backend "$url" --name "$name-f" --lease $LEASE -- sh -c 'exit 5' 2>/dev/null; rc=$?
  out=$("$GM" status --backend "$url" --name "$name-f" --json)
  check "[$tag] a failing CMD: once exits with its status (5), nothing recorded" \
    test $rc -eq 5 -a "$(echo "$out" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get("done"))')" = None

  # The completion record counts CMD's time, not the wait for the lock: a
  # holder keeps the lock 3 s while once waits, then CMD takes no time.
  : >"$T/hold-$tag.log"
  "$GM" exec --backend "$url" --name "$name-w" --lease $LEASE -- sh -c 'echo "start $$" >>"$0"; sleep 3' "$T/hold-$tag.log" 2>/dev/null &
  local h=$!
  bg_pids="$bg_pids $h"
  wait_until 10 has_lines start 1 "$T/hold-$tag.log"
  local t_once
  t_once=$(now)
  "$GM" once --backend "$url" --name "$name-w" --lease $LEASE -- true 2>/dev/null; rc=$?
  t_once=$(calc "$(now) - $t_once")
  wait $h
  out=$("$GM" status --backend "$url" --name "$name-w" --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["done"]["result"])')
  check "[$tag] once after waiting $t_once s for the lock: exit 0, the record counts CMD's time only ($out)" \
    test $rc -eq 0 -a "$(calc "$t_once >= 1")" = 1 -a -n "$(echo "$out" | grep -E '^exit 0 after 0\.[0-9] s$')"

  # status --json against the row as the library reads it.
  "$GM" exec --backend "$url" --name "$name" --lease $LEASE --version 9.9 -- "$T/child.sh" "$T/st-$tag.log" 2>/dev/null &
  local p=$!
  bg_pids="$bg_pids $p"
  wait_until 10 has_lines start 1 "$T/st-$tag.log"
  "$GM" status --backend "$url" --name "$name" --json >"$T/status.json"; rc=$?
  local row
  row=$(lua5.4 -e "package.path='$ROOT/lua/?.lua;'..package.path; package.cpath='$ROOT/build/5.4/?.so;'..package.cpath
    local r = assert(assert(require('gomaster').backend('$url')):read('$name'))
    print(r.owner, r.version, r.token, r.live, r.done.by, r.done.token, r.done.result, ('%.0f'):format(r.done.at))")
  local js
  js=$(/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("\t".join([d["owner"], d["version"], str(d["token"]), str(d["live"]).lower(),
                 d["done"]["by"], str(d["done"]["token"]), d["done"]["result"], "%.0f" % d["done"]["at"]]))
ok = d["name"] == sys.argv[2] and d["exists"] and 0 < d["expires_in"] <= float(sys.argv[3])
sys.exit(0 if ok else 1)' "$T/status.json" "$name" "$LEASE"); local prc=$?
  check "[$tag] status --json parses, and matches the backend's row ($js)" test $rc -eq 0 -a $prc -eq 0 -a "$js" = "$row"
  out=$("$GM" status --backend "$url" --name "$name")
  check "[$tag] status (text) shows the holder, its version and a live lease" \
    test -n "$(echo "$out" | grep -E '^holder: +.+ \(version 9\.9\)$')" -a -n "$(echo "$out" | grep -E '^lease: +live, expires in')"

  local before
  before=$(echo "$js" | cut -f3)
  out=$("$GM" release --backend "$url" --name "$name" --force); rc=$?
  check "[$tag] release --force: exit 0, token moves on ($out)" \
    test $rc -eq 0 -a -n "$(echo "$out" | grep -F "token now $((before + 1))")"
  check "[$tag] ... the holder's child gets SIGTERM (exec sees its lock gone)" \
    wait_until 10 grep -q "^term " "$T/st-$tag.log"
  wait_until 10 gone $p || kill -KILL $p 2>/dev/null # a failure, never a hang
  wait $p; rc=$?
  check "[$tag] ... and that exec exits 124" test $rc -eq 124
}

usage_tests
run_backend() {
  tag=$1
  url=$2
  echo "# backend $tag"
  exec_tests
  once_tests
}
db_file="$T/cli.db"
run_backend sqlite "sqlite://$db_file"
[ -n "${GOMASTER_TEST_MYSQL_URL:-}" ] && run_backend mysql "$GOMASTER_TEST_MYSQL_URL"
[ -n "${GOMASTER_TEST_MONGO_URL:-}" ] && run_backend mongo "$GOMASTER_TEST_MONGO_URL"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
