#!/bin/bash
# Replays the kept fuzzing corpus (tests/fuzz/corpus/<harness>/) through the
# libFuzzer harnesses of tests/fuzz/ (clang, ASan, UBSan): every input that
# once found a bug, or widened coverage, must still run clean. One test per
# harness.
set -u
cd "$(dirname "$0")/../.." || exit 2
passed=0
failed=0
if ! command -v clang >/dev/null 2>&1; then
  echo "not ok: clang is missing (sh scripts/deps.sh)"
  echo "0 passed, 1 failed"
  exit 1
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! make -s fuzzers >"$out" 2>&1; then
  cat "$out"
  echo "not ok: building the harnesses failed"
  echo "0 passed, 1 failed"
  exit 1
fi
for f in build/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  n=${f##*/}
  set -- tests/fuzz/corpus/"$n"/*
  if [ ! -e "$1" ]; then
    echo "not ok: $n has no corpus"
    failed=$((failed + 1))
  elif "$f" "$@" >"$out" 2>&1; then
    echo "ok: $n, $# inputs"
    passed=$((passed + 1))
  else
    tail -n 40 "$out"
    echo "not ok: $n"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
