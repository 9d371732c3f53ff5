#!/bin/bash
# make openresty-demo: examples/openresty (nginx.conf and app.lua) run as
# three nginx instances of two workers each on loopback ports, sharing one
# SQLite file in a temporary directory. Shows which worker leads, quits the
# leader's nginx, shows the worker that takes over, then stops every nginx
# and removes the directory. Needs the LuaJIT build (make LUA=luajit) and
# nginx with its Lua module (sh scripts/deps.sh openresty).
#
#   GOMASTER_NGINX=/path/to/nginx   another nginx binary
#   GOMASTER_NGINX_MODULES=/dir     where ndk_http_module.so and
#                                   ngx_http_lua_module.so are
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
NGINX=${GOMASTER_NGINX:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/$NGINX
MODULES=${GOMASTER_NGINX_MODULES:-/usr/lib/nginx/modules}
N=3

die() { echo "openresty-demo: $*" >&2; exit 1; }
[ -x "$NGINX" ] || command -v "$NGINX" >/dev/null 2>&1 || die "nginx not found (sh scripts/deps.sh openresty)"
[ -f "$MODULES/ngx_http_lua_module.so" ] || die "$MODULES/ngx_http_lua_module.so not found (sh scripts/deps.sh openresty)"
[ -f build/luajit/gomaster/core.so ] || die "build/luajit/gomaster/core.so not found: make LUA=luajit"

DIR=$(mktemp -d /tmp/gomaster-openresty.XXXXXX) || exit 2
# Workers run as nobody when nginx starts as root: they must enter DIR and
# write the SQLite file's directory (SQLite adds -wal and -shm files there).
chmod 0755 "$DIR"
mkdir -m 0777 "$DIR/data" && chmod 0777 "$DIR/data"
DB=$DIR/data/gomaster.db
declare -a PORT MASTER

nginx_of() { "$NGINX" -p "$DIR/nginx$1" -c "$DIR/nginx$1/nginx.conf" -e "$DIR/nginx$1/logs/error.log" "${@:2}"; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# Stops instance i: nginx -s quit (workers release the lock), then waits up
# to 10 s for its master process to exit, and kills what is left.
declare -a QUIT
quit() { [ -n "${QUIT[$1]:-}" ] || nginx_of "$1" -s quit 2>/dev/null && QUIT[$1]=1; }
stop() {
  local i=$1 pid=${MASTER[$1]:-} k
  alive "$pid" || return 0
  quit "$i"
  for ((k = 0; k < 200; k++)); do alive "$pid" || return 0; sleep 0.05; done
  pkill -KILL -P "$pid" 2>/dev/null
  kill -KILL "$pid" 2>/dev/null
}
cleanup() {
  local i
  for ((i = 1; i <= N; i++)); do stop "$i"; done
  [ -n "${GOMASTER_KEEP:-}" ] && echo "kept $DIR" || rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port below the kernel's ephemeral range; a taken one shows at start.
spare_port() {
  local lo
  lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
  lo=${lo:-32768}
  echo $((10000 + RANDOM % (lo - 10000)))
}

# Instance i: the example's nginx.conf with this checkout's paths, a port of
# its own and nginx's temporary files under its prefix.
start() {
  local i=$1 p=$DIR/nginx$1
  mkdir -p "$p/logs"
  for _ in 1 2 3 4 5; do
    PORT[$i]=$(spare_port)
    sed -e "s|/usr/lib/nginx/modules|$MODULES|" \
      -e "s|/etc/nginx/lua/?.lua|$ROOT/examples/openresty/?.lua|" \
      -e "s|/usr/local/share/lua/5.1/?.lua|$ROOT/lua/?.lua|" \
      -e "s|/usr/local/lib/lua/5.1/?.so|$ROOT/build/luajit/?.so|" \
      -e "s|127.0.0.1:8080|127.0.0.1:${PORT[$i]}|" \
      -e "s|access_log off;|access_log off; client_body_temp_path $p/body; proxy_temp_path $p/proxy; fastcgi_temp_path $p/fastcgi; uwsgi_temp_path $p/uwsgi; scgi_temp_path $p/scgi;|" \
      examples/openresty/nginx.conf >"$p/nginx.conf"
    if GOMASTER_BACKEND="sqlite://$DB" nginx_of "$i" 2>"$p/logs/start.err"; then
      MASTER[$i]=$(cat "$p/logs/nginx.pid")
      return 0
    fi
    grep -q "Address already in use" "$p/logs/start.err" || break
  done
  cat "$p/logs/start.err" >&2
  die "nginx $i did not start"
}

# The instance whose error log has a "master now" line written after line
# SKIP[i] of it, as "instance pid token"; waits up to 30 s for one.
declare -a SKIP
leader() {
  local k i line
  for ((k = 0; k < 600; k++)); do
    for ((i = 1; i <= N; i++)); do
      alive "${MASTER[$i]:-}" || continue
      line=$(tail -n +$((${SKIP[$i]:-0} + 1)) "$DIR/nginx$i/logs/error.log" 2>/dev/null | grep -m1 "report: master now, token")
      if [ -n "$line" ]; then
        echo "$i $(sed -E 's/.*\] ([0-9]+)#.*token ([0-9]+).*/\1 \2/' <<<"$line")"
        return 0
      fi
    done
    sleep 0.05
  done
  return 1
}
mark_logs() {
  local i
  for ((i = 1; i <= N; i++)); do SKIP[$i]=$(wc -l <"$DIR/nginx$i/logs/error.log"); done
}

echo "== $N nginx instances, 2 workers each, one SQLite file: $DB"
t0=$(now)
for ((i = 1; i <= N; i++)); do
  start "$i"
  for ((k = 0; k < 100; k++)); do [ "$(pgrep -c -P "${MASTER[$i]}")" -ge 2 ] && break; sleep 0.05; done
  echo "nginx $i: http://127.0.0.1:${PORT[$i]}/  master process ${MASTER[$i]}, workers $(pgrep -d ' ' -P "${MASTER[$i]}")"
done

read -r li lpid ltok < <(leader) || die "no worker became master within 30 s"
echo "== leader: worker $lpid of nginx $li, token $ltok ($(since "$t0") s after the first start)"
grep -h "report: master now" "$DIR/nginx$li/logs/error.log" | sed 's/^/   error.log: /'
show() { # what each instance's / and /gomaster say, and the lock's row
  local i k
  for ((i = 1; i <= N; i++)); do
    alive "${MASTER[$i]}" || continue
    echo "   nginx $i, GET /gomaster: is_master of each worker (id):" \
      "$(curl -s --max-time 2 "http://127.0.0.1:${PORT[$i]}/gomaster" |
        grep -oE '"id":"[^"]*","is_master":(true|false)' | sort -u |
        sed -E 's/"id":"([^"]*)","is_master":(.*)/\1=\2/' | paste -sd ' ')"
  done
  echo "   luajit bin/gomaster status --backend sqlite://$DB --name report:"
  luajit bin/gomaster status --backend "sqlite://$DB" --name report | sed 's/^/     /'
}
show

echo "== nginx -s quit on nginx $li (the leader's instance)"
mark_logs
t1=$(now)
quit "$li" || die "nginx -s quit failed"
read -r ni npid ntok < <(leader) || die "no worker took over within 30 s"
echo "== takeover: worker $npid of nginx $ni, token $ntok ($(since "$t1") s after the quit)"
grep -h "report: master now" "$DIR/nginx$ni/logs/error.log" | sed 's/^/   error.log: /'
stop "$li"
show

echo "== stopping every nginx"
for ((i = 1; i <= N; i++)); do stop "$i"; done
left=""
for ((i = 1; i <= N; i++)); do alive "${MASTER[$i]}" && left="$left ${MASTER[$i]}"; done
errors=$(cat "$DIR"/nginx*/logs/error.log | grep -c -E '\[(error|alert|crit|emerg)\]')
[ -z "$left" ] || die "nginx still running:$left"
echo "all stopped; $errors error lines in the logs; removing $DIR"
grep -h -E '\[(error|alert|crit|emerg)\]' "$DIR"/nginx*/logs/error.log
[ "$errors" = 0 ]
