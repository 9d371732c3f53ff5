#!/bin/sh
# nginx workers elect one master through lua/gomaster/ngx.lua: three nginx
# instances with two workers each on loopback ports, on one SQLite file and
# then on the MariaDB of GOMASTER_TEST_MYSQL_URL (skipped when unset).
# SIGKILL, 20 reloads and a quit of the holder, and a paused database while
# requests keep being answered. The checks live in tests/integration/nginx/
# driver.lua; this script checks the prerequisites and makes sure no nginx
# it started outlives it. Ends with one line "N passed, N failed".
#
#   GOMASTER_NGINX=/path/to/nginx    another nginx binary (not NGINX: nginx
#                                    reads that variable for inherited sockets)
#   GOMASTER_NGINX_MODULES=/dir      where ndk_http_module.so and
#                                    ngx_http_lua_module.so are
#   GOMASTER_KEEP=1                  keep the temporary directory
#   GOMASTER_NGINX_ONLY="hooks keys" only these parts (sqlite sqlite-one metrics postgres
#                                    hooks keys full example mariadb)
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
NGINX=${GOMASTER_NGINX:-nginx}
MODULES=${GOMASTER_NGINX_MODULES:-/usr/lib/nginx/modules}

fail() { echo "# $*"; echo "0 passed, 1 failed"; exit 1; }

command -v "$NGINX" >/dev/null 2>&1 || [ -x "/usr/sbin/$NGINX" ] ||
  fail "nginx not found: install nginx-light libnginx-mod-http-lua lua-resty-core lua-resty-lrucache (sh scripts/deps.sh)"
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/$NGINX
for m in ndk_http_module ngx_http_lua_module; do
  [ -f "$MODULES/$m.so" ] || fail "$MODULES/$m.so not found: install libnginx-mod-http-lua"
done
command -v curl >/dev/null 2>&1 || fail "curl not found (sh scripts/deps.sh)"
command -v luajit >/dev/null 2>&1 || fail "luajit not found (sh scripts/deps.sh)"
luajit -e 'require("dkjson")' 2>/dev/null || fail "dkjson not found: install lua-dkjson (sh scripts/deps.sh)"
[ -f build/luajit/gomaster/core.so ] || make -s LUA=luajit >/dev/null ||
  fail "make LUA=luajit failed"

DIR=$(mktemp -d /tmp/gomaster-nginx.XXXXXX) || exit 2
# workers run as nobody when nginx starts as root: they must reach DIR
chmod 0755 "$DIR"

# Last resort (the driver stops its own nginx): kill every nginx process whose
# pid the run recorded, master (pid files) and workers (belief and hook log
# names: <pid>.log, hooks.<pid>.log).
cleanup() {
  for f in "$DIR"/*/nginx*/logs/nginx.pid "$DIR"/*/workers/*.log; do
    [ -f "$f" ] || continue
    case $f in
    *.pid) pid=$(cat "$f" 2>/dev/null) ;;
    *) pid=$(basename "$f" .log); pid=${pid#hooks.} ;;
    esac
    case $pid in '' | *[!0-9]*) continue ;; esac
    if grep -q nginx "/proc/$pid/cmdline" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; fi
  done
  [ -n "${GOMASTER_KEEP:-}" ] && echo "# kept $DIR" || rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

GOMASTER_NGINX=$NGINX GOMASTER_NGINX_MODULES=$MODULES luajit tests/integration/nginx/driver.lua "$ROOT" "$DIR"
