# shellcheck shell=bash
# Helpers for the scripts in tests/integration (sourced, not run): results
# counted in $passed and $failed, floating-point times, waiting for events.

ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
# check DESCRIPTION COMMAND...: passes when COMMAND succeeds.
check() {
  local d=$1
  shift
  if "$@"; then ok "$d"; else not_ok "$d"; fi
}
skip() { echo "ok - # SKIP $*"; }
now() { date +%s.%N; }
# calc EXPR: floating-point arithmetic and comparisons (1 or 0), by awk.
calc() { awk -v OFMT=%.6f "BEGIN { print ($*) }"; }

# wait_until SECONDS COMMAND...: polls every 20 ms until COMMAND succeeds.
wait_until() {
  local limit=$1
  shift
  local end
  end=$(calc "$(now) + $limit")
  until "$@"; do
    [ "$(calc "$(now) > $end")" = 1 ] && return 1
    sleep 0.02
  done
}

# chaos_runs WHAT SECONDS BACKEND...: tests/chaos/chaos.sh on each backend
# for SECONDS (BACKEND:S: for S seconds), one count a run
# (GOMASTER_CHAOS_HOSTILE as the environment has it), then the closing line
# "N passed, N failed"; fails when a run did.
chaos_runs() {
  local what=$1 seconds=$2 backend s
  shift 2
  passed=0
  failed=0
  for backend in "$@"; do
    s=$seconds
    case $backend in *:*) s=${backend#*:} backend=${backend%%:*} ;; esac
    echo "-- $what $backend, $s s"
    if bash tests/chaos/chaos.sh "$backend" "$s"; then
      passed=$((passed + 1))
    else
      echo "not ok: $what $backend"
      failed=$((failed + 1))
    fi
  done
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
