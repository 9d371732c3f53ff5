# shellcheck shell=bash
# What the scripts that drive bin/gomaster share (sourced, not run): the
# helpers of tap.sh, and gm_setup.

. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"

# gm_setup NAME: the repository's top as the current directory (exits 2
# when it cannot go there), ROOT (it), GM (the command), LEASE (1.5: heartbeat 0.3,
# renew deadline 0.9, retry 0.3), the build for Lua 5.4 (made when missing;
# a failed build ends the script as one failure), T (a fresh temporary
# directory /tmp/gomaster-NAME.*, removed at exit unless GOMASTER_KEEP is
# set), bg_pids (processes killed at exit) and the counts.
gm_setup() {
  cd "$(dirname "$0")/../.." || exit 2
  ROOT=$(pwd)
  GM="$ROOT/bin/gomaster"
  LEASE=1.5
  [ -f build/5.4/gomaster/core.so ] || make -s LUA=5.4 >/dev/null || {
    echo "# build failed"; echo "0 passed, 1 failed"; exit 1; }
  T=$(mktemp -d "/tmp/gomaster-$1.XXXXXX")
  passed=0
  failed=0
  bg_pids=""
  trap gm_cleanup EXIT
}

gm_cleanup() {
  for p in $bg_pids; do kill -KILL "$p" 2>/dev/null; done
  [ -n "${GOMASTER_KEEP:-}" ] || rm -rf "$T"
}
