#!/bin/sh
# The Lua specs under a sanitizer build (make test SANITIZE=...).
#
#   tests/sanitize/env.sh setup SANITIZE DIR   print `export ...` lines
#   tests/sanitize/env.sh report DIR           print the reports; exit 1 if any
#
# The module of a sanitizer build (build/5.4-thread/gomaster/core.so, ...)
# needs the sanitizer's runtime loaded first, before the interpreter's own
# libraries. setup makes DIR/san-root: a view of this checkout whose build/5.4
# and build/luajit are the sanitizer builds, and DIR/san-root/path: lua5.4
# and luajit wrappers that start the real interpreter through the dynamic
# loader with --preload of gcc's runtime (libasan and libubsan, or libtsan).
# --preload, unlike LD_PRELOAD, does not reach the programs the specs start
# (sh, sqlite3, python3, mariadbd): only Lua processes, found on PATH as the
# specs and node processes start them, carry the runtime.
#
# Reports go to DIR/san/<kind>.<pid> (log_path), so those of node processes,
# whose stderr no spec shows, are seen too; report lists them.
#
# Leak detection is off in the specs: the interpreters are not built with
# the sanitizer and exit without freeing what the Lua state holds (busted
# ends with os.exit). Leaks of the library are checked by the C tests
# (LeakSanitizer in the address build, valgrind). No other suppression.
set -eu
cmd=${1:?usage: env.sh setup SANITIZE DIR | report DIR}
here=$(cd "$(dirname "$0")/../.." && pwd)

case $cmd in
setup)
  san=${2:?SANITIZE}
  dir=${3:?DIR}
  suffix=-$(printf %s "$san" | tr , -)
  view=$dir/san-root
  mkdir -p "$view/build" "$view/path" "$dir/san"
  for f in "$here"/*; do
    [ "$(basename "$f")" = build ] || ln -sfn "$f" "$view/$(basename "$f")"
  done
  ln -sfn "$here/build/5.4$suffix" "$view/build/5.4"
  ln -sfn "$here/build/luajit$suffix" "$view/build/luajit"
  rt=""
  case $san in
  *thread*) rt=$(gcc -print-file-name=libtsan.so) ;;
  esac
  case $san in
  *address*) rt=$(gcc -print-file-name=libasan.so) ;;
  esac
  case $san in
  *undefined*) rt="${rt:+$rt:}$(gcc -print-file-name=libubsan.so)" ;;
  esac
  loader=$(readlink -f /lib64/ld-linux-x86-64.so.2)
  for lua in lua5.4 luajit; do
    real=$(PATH=$(printf %s "$PATH" | sed "s|$view/path:||g") command -v "$lua")
    printf '#!/bin/sh\nexec %s --preload %s %s "$@"\n' "$loader" "$rt" "$real" >"$view/path/$lua"
    chmod +x "$view/path/$lua"
  done
  log=$dir/san
  echo "export GOMASTER_ROOT='$view'"
  echo "export PATH='$view/path':\"\$PATH\""
  echo "export ASAN_OPTIONS='detect_leaks=0:log_path=$log/asan'"
  echo "export UBSAN_OPTIONS='print_stacktrace=1:log_path=$log/ubsan'"
  echo "export TSAN_OPTIONS='log_path=$log/tsan'"
  ;;
report)
  dir=${2:?DIR}
  found=0
  for f in "$dir"/san/*; do
    [ -s "$f" ] || continue
    found=1
    echo "== sanitizer report $f"
    head -n 80 "$f"
  done
  [ $found -eq 0 ] && echo "sanitizer reports: none"
  [ $found -eq 0 ]
  ;;
*) echo "env.sh: unknown command $cmd" >&2; exit 2 ;;
esac
