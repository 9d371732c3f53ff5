#!/bin/sh
# Installs the Debian packages that building and testing need, when missing.
# As root it runs apt-get; otherwise it only says what is missing.
set -eu
PKGS="gcc make pkg-config libsqlite3-dev sqlite3 lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev lua-busted
default-libmysqlclient-dev mariadb-server libmongoc-dev libbson-dev python3-mockupdb valgrind clang
nginx-light libnginx-mod-http-lua lua-resty-core lua-resty-lrucache curl luarocks
redis-server libhiredis-dev"
[ -n "${GOMASTER_DEPS:-}" ] && PKGS="$GOMASTER_DEPS"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "gomaster: missing Debian packages:$missing (run as root, or apt-get install them)" >&2
  exit 1
fi
echo "gomaster: installing$missing"
export DEBIAN_FRONTEND=noninteractive
updated=0
for try in 1 2 3 4 5 6; do
  # shellcheck disable=SC2086
  if apt-get install -y -q --no-install-recommends $missing >/tmp/gomaster-apt.log 2>&1; then exit 0; fi
  if [ $updated = 0 ]; then apt-get update -q >/dev/null 2>&1 || true; updated=1; fi
  sleep 5   # another apt may hold the dpkg lock for a moment
done
tail -n 20 /tmp/gomaster-apt.log >&2
echo "gomaster: apt-get install failed" >&2
exit 1
