#!/bin/bash
# make install (Lua 5.4 and LuaJIT) and luarocks make (Debian's luarocks,
# offline) into temporary trees; the installed module loads, lists its
# backends, and the installed command answers --help. Ends with
# "N passed, N failed".
set -u
cd "$(dirname "$0")/../.." || exit 2
T=$(mktemp -d /tmp/gomaster-install.XXXXXX)
trap 'rm -rf "$T"' EXIT
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
local core = package.searchpath("gomaster.core", package.cpath)
assert(core and core:find(lib, 1, true), "core.so not from the tree: " .. tostring(core))
local names = table.concat(g.backends(), ",")
assert(names:find("sqlite"), names)
local m = assert(g.new{ backend = "sqlite://" .. dir .. "/t.db" })
m:close()
print(g._VERSION, names)
LUA
loads() { # interp share lib: the module from that tree, with its backends
  LUA_PATH="$2/?.lua;;" LUA_CPATH="$3/?.so;;" "$1" "$T/loads.lua" "$3" "$T"
}

check "make install LUA=5.4" make -s install LUA=5.4 DESTDIR="$T/d" PREFIX=/usr/local
check "... the module loads from share/lua/5.4 and lib/lua/5.4" \
  loads lua5.4 "$T/d/usr/local/share/lua/5.4" "$T/d/usr/local/lib/lua/5.4"
check "... bin/gomaster --help" env LUA_PATH="$T/d/usr/local/share/lua/5.4/?.lua;;" \
  LUA_CPATH="$T/d/usr/local/lib/lua/5.4/?.so;;" "$T/d/usr/local/bin/gomaster" exec --help
check "make install LUA=luajit" make -s install LUA=luajit DESTDIR="$T/d" PREFIX=/usr/local
check "... the module loads from share/lua/5.1 and lib/lua/5.1 under LuaJIT" \
  loads luajit "$T/d/usr/local/share/lua/5.1" "$T/d/usr/local/lib/lua/5.1"
if command -v luarocks >/dev/null; then
  check "luarocks make rockspec/gomaster-dev-1.rockspec (offline)" \
    luarocks --lua-version 5.4 make --tree "$T/rocks" rockspec/gomaster-dev-1.rockspec
  check "... the module loads from the rocks tree" \
    loads lua5.4 "$T/rocks/share/lua/5.4" "$T/rocks/lib/lua/5.4"
  check "... and the command is installed" test -x "$T/rocks/bin/gomaster"
else
  echo "not ok - luarocks is not installed (scripts/deps.sh installs it)"
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
