#!/bin/bash
# `gomaster release --force` of a live holder never lets two CMDs overlap
# (docs/cli.md, "release"): two `gomaster exec` nodes on one lock, each CMD
# writing its start and end times (wall clock, one host); the operator
# force-releases the holder; the other node's CMD must start after the
# first one ended. On SQLite always, and on the MariaDB / MongoDB of
# GOMASTER_TEST_MYSQL_URL / GOMASTER_TEST_MONGO_URL when set. Ends with one
# line "N passed, N failed".
#
#   GOMASTER_KEEP=1    keep the temporary directory
set -u
. "$(dirname "$0")/lib/gm.sh"
gm_setup force
gone() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
  case $st in Z*) return 0 ;; esac
  [ -z "$st" ]
}
field() { awk -v k="$1" '$1 == k { print $2; exit }' "$2" 2>/dev/null; }
has() { [ -n "$(field "$1" "$2")" ]; }

# CMD: "start TIME" when it starts, "end TIME" when SIGTERM ends it.
cat >"$T/cmd.sh" <<'EOF'
#!/bin/sh
echo "start $(date +%s.%N)" >>"$1"
trap 'echo "end $(date +%s.%N)" >>"$1"; exit 0' TERM
while :; do sleep 0.02; done
EOF
chmod +x "$T/cmd.sh"

run_backend() {
  local tag=$1 url=$2 name="force-$1-$$-$RANDOM" i
  local -a pid log
  echo "# $tag"
  for i in 0 1; do
    log[$i]="$T/$tag-$i.log"
    : >"${log[$i]}"
    "$GM" exec --backend "$url" --name "$name" --lease $LEASE -- \
      "$T/cmd.sh" "${log[$i]}" 2>>"$T/$tag-$i.err" &
    pid[$i]=$!
    bg_pids="$bg_pids ${pid[$i]}"
  done
  if ! wait_until 15 eval 'has start "${log[0]}" || has start "${log[1]}"'; then
    not_ok "[$tag] a first CMD started"
    cat "$T/$tag-0.err" "$T/$tag-1.err"
    return
  fi
  local a=0 b=1
  has start "${log[1]}" && ! has start "${log[0]}" && a=1 b=0
  # let the follower watch a few renewals first, as in production
  sleep 0.6
  local out rc t_rel
  t_rel=$(now)
  out=$("$GM" release --backend "$url" --name "$name" --force 2>&1)
  rc=$?
  echo "# $out"
  check "[$tag] release --force of the live holder exits 0" test $rc -eq 0
  wait_until 10 has end "${log[$a]}"
  check "[$tag] the holder's CMD was stopped" has end "${log[$a]}"
  wait_until 10 gone "${pid[$a]}"
  wait "${pid[$a]}"
  rc=$?
  check "[$tag] the holder's exec exits 124 (mastership lost), got $rc" test $rc -eq 124
  wait_until $((3 * 2 + 5)) has start "${log[$b]}"
  local end1 start2
  end1=$(field end "${log[$a]}")
  start2=$(field start "${log[$b]}")
  if [ -n "$end1" ] && [ -n "$start2" ]; then
    echo "# [$tag] release --force at $t_rel; first CMD ended $(calc "$end1 - $t_rel") s after it, second started $(calc "$start2 - $t_rel") s after it"
    check "[$tag] the second CMD started after the first one ended" \
      test "$(calc "$start2 > $end1")" = 1
  else
    not_ok "[$tag] both times recorded (end '$end1', start '$start2')"
    cat "$T/$tag-0.err" "$T/$tag-1.err"
  fi
  kill -TERM "${pid[$b]}" 2>/dev/null
  wait_until 10 gone "${pid[$b]}" || kill -KILL "${pid[$b]}" 2>/dev/null
  wait "${pid[$b]}" 2>/dev/null
}

# --now: the lease ends at once (the docs say it breaks the guarantee).
now_test() {
  local url="sqlite://$T/now.db" name="now-$$" log="$T/now.log" p out rc
  : >"$log"
  "$GM" exec --backend "$url" --name "$name" --lease $LEASE -- \
    "$T/cmd.sh" "$log" 2>>"$T/now.err" &
  p=$!
  bg_pids="$bg_pids $p"
  wait_until 15 has start "$log"
  out=$("$GM" release --backend "$url" --name "$name" --force --now 2>&1)
  rc=$?
  echo "# $out"
  check "[sqlite] release --force --now exits 0 and the lock is free at once" \
    test $rc -eq 0 -a -z "$(echo "$out" | grep -F "free in")"
  out=$("$GM" status --backend "$url" --name "$name" --json)
  check "[sqlite] ... status shows no live lease ($out)" \
    test -n "$(echo "$out" | grep -E '"live": ?false')"
  wait_until 10 gone "$p" || kill -KILL "$p" 2>/dev/null
  wait "$p"
  rc=$?
  check "[sqlite] ... and the old holder's exec exits 124, got $rc" test $rc -eq 124
}

now_test
run_backend sqlite "sqlite://$T/force.db"
[ -n "${GOMASTER_TEST_MYSQL_URL:-}" ] && run_backend mysql "$GOMASTER_TEST_MYSQL_URL"
[ -n "${GOMASTER_TEST_MONGO_URL:-}" ] && run_backend mongo "$GOMASTER_TEST_MONGO_URL"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
