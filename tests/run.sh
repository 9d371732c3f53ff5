#!/bin/sh
# The whole test suite (make test): builds for Lua 5.4 and LuaJIT, starts the
# database servers of tests/servers/ on loopback in a temporary directory,
# runs the C tests and the busted specs under both interpreters, stops the
# servers, and ends with one line "N passed, N failed".
#
#   GOMASTER_TEST_ONLY="sqlite"   run the specs tagged so (busted --tags)
#   GOMASTER_KEEP=1               keep the temporary directory
#   SANITIZE=thread|address,undefined  (make test SANITIZE=...) the C tests
#                                 and specs of that build, with the runtime
#                                 preloaded into the interpreters
#                                 (tests/sanitize/env.sh); no integration
#                                 scripts
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
export GOMASTER_ROOT="$ROOT"
MAKE=${MAKE:-make}
SUITE_TMP=$(mktemp -d /tmp/gomaster-test.XXXXXX)
export GOMASTER_TEST_DIR="$SUITE_TMP"
passed=0
failed=0
servers=""

say() { printf '%s\n' "$*"; }
T0=$(date +%s)
# Each section's heading carries the suite's elapsed time, so a slow part
# shows in the log.
section() { say "== $* (at $(( $(date +%s) - T0 )) s)"; }

stop_servers() {
  for s in $servers; do bash "tests/servers/$s.sh" stop "$SUITE_TMP" >/dev/null 2>&1 || true; done
  servers=""
  [ -n "${GOMASTER_KEEP:-}" ] || rm -rf "$SUITE_TMP"
}
trap 'stop_servers' EXIT
trap 'exit 130' INT TERM

# Adds up "N passed, N failed" (C tests) or busted's TAP lines.
count() {
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
  if [ -n "$line" ]; then
    p=${line%% passed*}
    f=${line#*passed, }
    f=${f%% failed*}
  else
    p=$(grep -c '^ok ' "$1")
    f=$(grep -c '^not ok ' "$1")
    grep -qE '^1\.\.[0-9]+' "$1" || f=$((f + 1)) # busted died before the end
  fi
  passed=$((passed + p))
  failed=$((failed + f))
}

section "build (Lua 5.4, LuaJIT)"
for lua in 5.4 luajit; do
  if ! $MAKE -s LUA=$lua WERROR=1 all ctests >"$SUITE_TMP/build-$lua.log" 2>&1; then
    cat "$SUITE_TMP/build-$lua.log"
    say "build for $lua failed"
    say "0 passed, 1 failed"
    exit 1
  fi
done

section "servers"
for s in mariadb mongo postgres redis; do
  [ -f "tests/servers/$s.sh" ] || continue
  if bash "tests/servers/$s.sh" start "$SUITE_TMP" >"$SUITE_TMP/$s.env" 2>"$SUITE_TMP/$s.err"; then
    servers="$servers $s"
    . "$SUITE_TMP/$s.env"
    say "$s: started"
  else
    cat "$SUITE_TMP/$s.err"
    say "$s: failed to start"
    failed=$((failed + 1))
  fi
done

san=${SANITIZE:-}
suffix=${san:+-$(printf %s "$san" | tr , -)}
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

section "C tests"
for t in build/5.4$suffix/tests/test_*; do
  [ -x "$t" ] || continue
  say "-- $t"
  "$t" >"$SUITE_TMP/ctest.out" 2>&1
  rc=$?
  cat "$SUITE_TMP/ctest.out"
  count "$SUITE_TMP/ctest.out"
  [ $rc -eq 0 ] || grep -qE '^[0-9]+ passed, [1-9]' "$SUITE_TMP/ctest.out" || failed=$((failed + 1))
done

tags=""
[ -n "${GOMASTER_TEST_ONLY:-}" ] && tags="--tags=$GOMASTER_TEST_ONLY"
[ -n "$san" ] && eval "$(sh tests/sanitize/env.sh setup "$san" "$SUITE_TMP")"
for lua in lua5.4 luajit; do
  section "specs ($lua)"
  # shellcheck disable=SC2086
  busted --lua=$lua $tags -o TAP spec >"$SUITE_TMP/busted.out" 2>&1
  cat "$SUITE_TMP/busted.out"
  count "$SUITE_TMP/busted.out"
done
if [ -n "$san" ]; then
  sh tests/sanitize/env.sh report "$SUITE_TMP" || failed=$((failed + 1))
  stop_servers
  trap - EXIT
  say "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
fi

# Scripts that drive whole programs (nginx, the command line): each prints
# one line "N passed, N failed" at its end.
for t in tests/integration/*.sh; do
  [ -f "$t" ] || continue
  section "$t"
  bash "$t" >"$SUITE_TMP/integ.out" 2>&1
  rc=$?
  cat "$SUITE_TMP/integ.out"
  count "$SUITE_TMP/integ.out"
  [ $rc -eq 0 ] || grep -qE '^[0-9]+ passed, [1-9]' "$SUITE_TMP/integ.out" || failed=$((failed + 1))
done

stop_servers
trap - EXIT
say "(suite took $(( $(date +%s) - T0 )) s)"
say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
