#!/bin/bash
# Installing as a user would, into temporary trees:
# - make install PREFIX=... (Lua 5.4, LuaJIT): the installed command runs
#   with an empty environment, and a script finds the module with the lines
#   of `make env`; make install DESTDIR=... too;
# - the flags stamp: after a WERROR=1 build, `make -n install` changes
#   nothing and `make install` rebuilds no object;
# - luarocks make (Debian's luarocks, offline) with -Werror, for its default
#   Lua (5.1) and for 5.4: the rock loads (also the 5.1 rock in LuaJIT) and
#   its command runs; the API spec passes under lua5.1;
# - make demo needs only the demo's packages;
# - make openresty-demo shows a leader and a takeover and leaves nothing.
# Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
T=$(mktemp -d /tmp/gomaster-install.XXXXXX)
trap 'rm -rf "$T"' EXIT
chmod 0755 "$T"
passed=0
failed=0
check() {
  local what=$1
  shift
  if "$@" >"$T/out" 2>&1; then
    echo "ok - $what"
    passed=$((passed + 1))
  else
    echo "not ok - $what"
    sed 's/^/#   /' "$T/out" | tail -n 15
    failed=$((failed + 1))
  fi
}
cat >"$T/loads.lua" <<'LUA'
local lib, dir = ...
local g = require("gomaster")
local function search(name, path) -- package.searchpath, which 5.1 lacks
  for t in path:gmatch("[^;]+") do
    local f = t:gsub("%?", (name:gsub("%.", "/")))
    local h = io.open(f)
    if h then h:close() return f end
  end
end
local core = search("gomaster.core", package.cpath)
assert(core and core:find(lib, 1, true), "core.so not from the tree: " .. tostring(core))
local names = table.concat(g.backends(), ",")
assert(names:find("sqlite"), names)
local m = assert(g.new{ backend = "sqlite://" .. dir .. "/t.db" })
m:close()
print(_VERSION, g._VERSION, names)
LUA
loads() { # interp share lib: the module from that tree, with its backends
  LUA_PATH="$2/?.lua;;" LUA_CPATH="$3/?.so;;" "$1" "$T/loads.lua" "$3" "$T"
}
# The installed command with nothing in its environment but PATH, away from
# the checkout: it needs its modules and core.so to run a task once.
bare_once() { # command db
  (cd / && env -i PATH=/usr/bin:/bin "$1" once --backend "sqlite://$2" --name install-t -- true)
}
# A script run with an empty environment plus the lines `make env` printed.
bare_script() { # envfile interp lib
  (cd / && env -i PATH=/usr/bin:/bin sh -c '. "$1" && exec "$2" "$3/loads.lua" "$4" "$3"' \
    sh "$1" "$2" "$T" "$3")
}
mtime() { stat -c %Y.%y "$1"; }

# ---- the flags stamp: a dry run changes nothing, -Werror rebuilds nothing
check "make LUA=5.4 WERROR=1 all" make -s LUA=5.4 WERROR=1 all
stamp=build/5.4/flags.stamp
before=$(mtime "$stamp")
touch "$T/built"
check "make -n install after the WERROR=1 build" make -n LUA=5.4 install PREFIX="$T/p"
check "... left $stamp alone" test "$(mtime "$stamp")" = "$before"
check "... wrote nothing under the prefix" test ! -e "$T/p"
check "make -q LUA=5.4 module: nothing to rebuild without WERROR" make -q LUA=5.4 module

# ---- make install PREFIX=...: the command and scripts need no environment
check "make install LUA=5.4 PREFIX=$T/p" make -s LUA=5.4 install PREFIX="$T/p"
newer=$(find build/5.4 -newer "$T/built" \( -name '*.o' -o -name '*.so' -o -name '*.a' \))
check "... rebuilt no object" test -z "$newer"
[ -z "$newer" ] || echo "#   rebuilt:" $newer
check "... the installed command runs with an empty environment" bare_once "$T/p/bin/gomaster" "$T/p.db"
check "make env PREFIX=$T/p" sh -c 'make -s env PREFIX="$1" >"$2"' sh "$T/p" "$T/env54"
check "... a script finds the module with those lines alone" \
  bare_script "$T/env54" lua5.4 "$T/p/lib/lua/5.4"
check "make install LUA=luajit PREFIX=$T/pj" make -s LUA=luajit install PREFIX="$T/pj"
check "... the installed command runs with an empty environment" bare_once "$T/pj/bin/gomaster" "$T/pj.db"
check "make env LUA=luajit PREFIX=$T/pj" sh -c 'make -s env LUA=luajit PREFIX="$1" >"$2"' sh "$T/pj" "$T/envjit"
check "... a LuaJIT script finds the module with those lines alone" \
  bare_script "$T/envjit" luajit "$T/pj/lib/lua/5.1"

# ---- DESTDIR: files staged under it, paths of the final prefix
check "make install LUA=5.4 DESTDIR=$T/d PREFIX=/usr/local" make -s install LUA=5.4 DESTDIR="$T/d" PREFIX=/usr/local
check "... the module loads from share/lua/5.4 and lib/lua/5.4" \
  loads lua5.4 "$T/d/usr/local/share/lua/5.4" "$T/d/usr/local/lib/lua/5.4"
check "... the command looks in /usr/local, not in DESTDIR" \
  grep -qF "[==[/usr/local/share/lua/5.4/?.lua;" "$T/d/usr/local/bin/gomaster"

# ---- luarocks make, warnings as errors, for luarocks' default Lua and 5.4
if command -v luarocks >/dev/null; then
  # luarocks passes CFLAGS to the Makefile (rockspec: CFLAGS = "$(CFLAGS)")
  printf 'variables = { CFLAGS = "-O2 -fPIC -Werror" }\n' >"$T/luarocks.lua"
  rock() { # tree [--lua-version=X]
    local tree=$1
    shift
    LUAROCKS_CONFIG="$T/luarocks.lua" luarocks "$@" --tree "$tree" make rockspec/gomaster-dev-1.rockspec
  }
  ver=$(luarocks config lua_version 2>/dev/null)
  ver=${ver:-5.1}
  check "luarocks make (its default Lua, $ver; -Werror)" rock "$T/rocks"
  check "... loads in lua$ver from the rocks tree" \
    loads "lua$ver" "$T/rocks/share/lua/$ver" "$T/rocks/lib/lua/$ver"
  if [ "$ver" = 5.1 ]; then
    check "... the 5.1 rock loads in LuaJIT too" loads luajit "$T/rocks/share/lua/5.1" "$T/rocks/lib/lua/5.1"
  fi
  check "... its command runs a task once" bare_once "$T/rocks/bin/gomaster" "$T/rocks.db"
  check "luarocks --lua-version=5.4 make (-Werror)" rock "$T/rocks54" --lua-version=5.4
  check "... loads in lua5.4 from the rocks tree" \
    loads lua5.4 "$T/rocks54/share/lua/5.4" "$T/rocks54/lib/lua/5.4"
  check "... its command runs a task once" bare_once "$T/rocks54/bin/gomaster" "$T/rocks54.db"
else
  echo "not ok - luarocks is not installed (scripts/deps.sh installs it)"
  failed=$((failed + 1))
fi
# the API spec under PUC Lua 5.1 (spec/helper.lua picks build/5.1)
check "make LUA=5.1 WERROR=1 module" make -s LUA=5.1 WERROR=1 module
check "... busted --lua=lua5.1 spec/unit passes" busted --lua=lua5.1 -o TAP spec/unit

# ---- make demo needs a compiler, Lua 5.4 and SQLite, nothing of the tests
demo_ok() {
  make -n demo | grep -qx 'sh scripts/deps.sh demo' || { echo "make -n demo: no 'sh scripts/deps.sh demo'"; return 1; }
  local p bad=""
  for p in $(sh scripts/deps.sh --list demo); do
    case $p in
    gcc | make | pkg-config | libsqlite3-dev | lua5.4 | liblua5.4-dev) ;;
    *) bad="$bad $p" ;;
    esac
  done
  [ -z "$bad" ] || { echo "the demo group lists$bad"; return 1; }
}
check "make demo installs only the demo group (compiler, Lua 5.4, SQLite)" demo_ok
missing_msg() { # as a user, a missing package is named with the command
  runuser -u nobody -- env GOMASTER_DEPS="lua5.4 gomaster-no-such-package" sh "$ROOT/scripts/deps.sh" demo >"$T/deps.out" 2>&1
  local rc=$?
  cat "$T/deps.out"
  [ $rc -ne 0 ] && grep -q "apt-get install gomaster-no-such-package" "$T/deps.out"
}
if [ "$(id -u)" = 0 ]; then
  check "scripts/deps.sh as a user names what is missing and the command" missing_msg
fi
# ---- make openresty-demo: a leader, a takeover, and nothing left behind
openresty_demo() {
  bash examples/openresty/demo.sh >"$T/demo.out" 2>&1
  local rc=$? l t dir pid
  cat "$T/demo.out"
  [ $rc -eq 0 ] || { echo "exit status $rc"; return 1; }
  l=$(sed -n 's/^== leader: worker \([0-9]*\) of nginx [0-9]*, token \([0-9]*\).*/\1 \2/p' "$T/demo.out")
  t=$(sed -n 's/^== takeover: worker \([0-9]*\) of nginx [0-9]*, token \([0-9]*\).*/\1 \2/p' "$T/demo.out")
  [ -n "$l" ] && [ -n "$t" ] || { echo "no leader or no takeover line"; return 1; }
  [ "${l% *}" != "${t% *}" ] && [ "${t#* }" -gt "${l#* }" ] || { echo "takeover $t after $l"; return 1; }
  dir=$(sed -n 's/.*one SQLite file: \(.*\)\/data\/gomaster.db$/\1/p' "$T/demo.out")
  [ -n "$dir" ] && [ ! -e "$dir" ] || { echo "$dir left behind"; return 1; }
  for pid in $(sed -n 's/.*master process \([0-9]*\), workers \(.*\)/\1 \2/p' "$T/demo.out"); do
    if grep -q nginx "/proc/$pid/cmdline" 2>/dev/null; then echo "nginx $pid still runs"; return 1; fi
  done
}
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  check "make openresty-demo: a leader, a takeover by another worker, every nginx stopped, its directory removed" \
    openresty_demo
else
  echo "not ok - nginx is not installed (sh scripts/deps.sh openresty)"
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
