#!/bin/sh
# Installs the Debian packages a target needs, when missing.
#   sh scripts/deps.sh [demo|openresty|test]   (default: test, everything)
#   sh scripts/deps.sh --list GROUP             prints the group's packages
# As root it runs apt-get; otherwise it names the missing packages and the
# command that installs them, and fails.
set -eu

# make demo: a compiler, Lua 5.4 and SQLite.
DEMO="gcc make pkg-config libsqlite3-dev lua5.4 liblua5.4-dev"
# make openresty-demo: the demo's, LuaJIT and nginx with its Lua module.
OPENRESTY="$DEMO luajit2 libluajit2-5.1-dev nginx-light libnginx-mod-http-lua
lua-resty-core lua-resty-lrucache curl"
# make test (also chaos, fuzz, bench): every backend, both interpreters, the
# servers (galera-4 and rsync for the 3-node Galera cluster), the tools of
# the integration tests, luarocks and Lua 5.1 for the rockspec.
TEST="$OPENRESTY sqlite3 lua-busted lua-dkjson default-libmysqlclient-dev
mariadb-server libmongoc-dev libbson-dev python3-mockupdb valgrind clang
luarocks lua5.1 liblua5.1-0-dev python3-prometheus-client postgresql pgbouncer
libpq-dev util-linux bsdutils redis-server libhiredis-dev galera-4 rsync"

list=0
if [ "${1:-}" = "--list" ]; then
  list=1
  shift
fi
case ${1:-test} in
demo) PKGS=$DEMO ;;
openresty) PKGS=$OPENRESTY ;;
test) PKGS=$TEST ;;
*)
  echo "usage: sh scripts/deps.sh [--list] [demo|openresty|test]" >&2
  exit 2
  ;;
esac
[ -n "${GOMASTER_DEPS:-}" ] && PKGS="$GOMASTER_DEPS"
if [ $list = 1 ]; then
  echo $PKGS
  exit 0
fi

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "gomaster: missing Debian packages:$missing" >&2
  echo "gomaster: as root, run: apt-get install$missing" >&2
  exit 1
fi
echo "gomaster: installing$missing"
export DEBIAN_FRONTEND=noninteractive
updated=0
for _ in 1 2 3 4 5 6; do
  # shellcheck disable=SC2086
  if apt-get install -y -q --no-install-recommends $missing >/tmp/gomaster-apt.log 2>&1; then exit 0; fi
  if [ $updated = 0 ]; then apt-get update -q >/dev/null 2>&1 || true; updated=1; fi
  sleep 5   # another apt may hold the dpkg lock for a moment
done
tail -n 20 /tmp/gomaster-apt.log >&2
echo "gomaster: apt-get install failed" >&2
exit 1
