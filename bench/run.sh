#!/bin/sh
# make bench: builds for Lua 5.4 and LuaJIT, starts MariaDB, the MongoDB
# stand-in, PostgreSQL, Redis and a 3-node MariaDB Galera cluster on loopback
# in a temporary directory (tests/servers/*.sh), runs every benchmark against
# SQLite and each of them, prints one markdown table per backend, and stops
# the servers. Galera gets its own table: the load on the whole cluster
# against one MariaDB server with the same nodes, and failover when the
# Galera node under the master dies.
#
#   GOMASTER_BENCH_TRIALS=20   failover and handover trials per backend
#   GOMASTER_BENCH_GALERA_TRIALS=10   Galera failover trials (each restarts
#                                     the killed Galera node: 15-30 s)
#   GOMASTER_BENCH_ONLY="sqlite mysql mongo postgres redis galera"   backends to run
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
export GOMASTER_ROOT="$ROOT"
TRIALS=${GOMASTER_BENCH_TRIALS:-20}
GTRIALS=${GOMASTER_BENCH_GALERA_TRIALS:-10}
ONLY=${GOMASTER_BENCH_ONLY:-sqlite mysql mongo postgres redis galera}
MAKE=${MAKE:-make}
TMP=$(mktemp -d /tmp/gomaster-bench-run.XXXXXX)
servers=""

cleanup() {
  for s in $servers; do bash "tests/servers/$s.sh" stop "$TMP" >/dev/null 2>&1 || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for lua in 5.4 luajit; do
  $MAKE -s LUA=$lua all >"$TMP/build-$lua.log" 2>&1 || { cat "$TMP/build-$lua.log"; exit 1; }
done

start_server() { # $1: mariadb | mongo | postgres | redis | galera
  case " $servers " in *" $1 "*) return 0 ;; esac
  if bash "tests/servers/$1.sh" start "$TMP" >"$TMP/$1.env" 2>"$TMP/$1.err"; then
    servers="$servers $1"
    . "$TMP/$1.env"
  else
    cat "$TMP/$1.err" >&2
    return 1
  fi
}

# Column $3 of the first line of file $1 whose first word is $2.
col() { awk -v k="$2" -v c="$3" '$1 == k { print $c; exit }' "$1"; }

# Median and p95 of column $3 of the lines of $1 starting with $2.
stat() {
  awk -v k="$2" -v c="$3" '$1 == k { print $c }' "$1" | sort -g | awk '
    { v[NR] = $1 }
    END { if (NR == 0) { print "- -"; exit }
          m = int((NR + 1) / 2); p = int(NR * 0.95); if (p < NR * 0.95) p++;
          printf "%.0f %.0f\n", v[m], v[p] }'
}

bench_backend() { # $1: tag (sqlite|mysql|mongo|redis), $2: URL, $3: title
  tag=$1 url=$2 title=$3 out="$TMP/$1.out"
  : >"$out"
  echo "running: $title" >&2
  lua5.4 bench/failover.lua "$url" "$TRIALS" >>"$out" || echo "failover failed" >&2
  # the part the library adds: time to the new master minus the lease left
  awk '$1 == "kill" { printf "added %.3f\n", $2 - $3 }' "$out" >"$out.added"
  cat "$out.added" >>"$out"
  for lua in lua5.4 luajit; do
    $lua bench/ismaster.lua "$url" | sed "s/^ismaster/ismaster-$lua/" >>"$out"
  done
  for n in 3 10 50; do lua5.4 bench/load.lua "$tag" "$url" $n 10 >>"$out"; done
  for k in 1 100 1000; do lua5.4 bench/many.lua "$tag" "$url" $k 10 >>"$out"; done
  lua5.4 bench/memory.lua "$url" >>"$out"

  set -- $(stat "$out" kill 2); kmed=$1 kp95=$2
  set -- $(stat "$out" added 2); amed=$1 ap95=$2
  set -- $(stat "$out" stop 2); smed=$1 sp95=$2
  ntr=$(grep -c '^kill' "$out")
  echo
  echo "### $title"
  echo
  echo "| measure | result |"
  echo "| --- | --- |"
  echo "| failover after SIGKILL of the master ($ntr trials): ms to on_start elsewhere, median / p95 | $kmed / $kp95 |"
  echo "| ... minus the lease left at the kill (the part the library adds), median / p95 | $amed / $ap95 |"
  echo "| graceful handover, m:stop() to on_start elsewhere ($(grep -c '^stop' "$out") trials), ms median / p95 | $smed / $sp95 |"
  for lua in lua5.4 luajit; do
    f=$(col "$out" ismaster-$lua 2) i=$(col "$out" ismaster-$lua 3)
    r=$(awk -v a="$i" -v b="$f" 'BEGIN { if (b > 0) printf "%.2f", a / b }')
    echo "| is_master() from $lua, ns per call (floor: a C function returning true) | $i (floor $f, ${r}x) |"
  done
  for n in 3 10 50; do
    line=$(grep "^load $n " "$out")
    set -- $line
    echo "| $n nodes: statements/s of the master / a follower (mean, max) / whole server; failed writes/s | ${3:--} / ${4:--}, ${5:--} / ${6:--}; ${7:--} |"
  done
  for k in 1 100 1000; do
    line=$(grep "^many $k " "$out")
    set -- $line
    echo "| one process, K = $k locks on one backend: server statements/s; lock renewals/s (counters); CPU % of a core; locks held | ${3:--}; ${4:--}; ${5:--}; ${6:--} |"
  done
  set -- $(grep '^memory' "$out")
  echo "| RSS added per elector / per backend connection, bytes | ${2:--} / ${3:--} |"
}

# The same election nodes on one MariaDB server and on the Galera cluster
# (node i on Galera node (i-1) % 3 + 1 first), then the Galera failover.
bench_galera() {
  out="$TMP/galera.out"
  : >"$out"
  echo "running: Galera" >&2
  for n in 3 10; do
    lua5.4 bench/load.lua mysql "$GOMASTER_TEST_MYSQL_URL" $n 10 | sed 's/^load/single/' >>"$out"
    lua5.4 bench/load.lua galera "$GOMASTER_TEST_GALERA_URLS" $n 10 >>"$out"
  done
  lua5.4 bench/failover.lua galera "$GOMASTER_TEST_GALERA_URLS" "$GTRIALS" >>"$out" || echo "galera failover failed" >&2
  set -- $(stat "$out" dbkill 2); kmed=$1 kp95=$2
  echo
  echo "### MariaDB Galera, 3 nodes on 127.0.0.1 ($(mariadbd --version 2>/dev/null | awk '{print $3}'), galera-4, evs.suspect_timeout 5 s)"
  echo
  echo "| measure | result |"
  echo "| --- | --- |"
  for n in 3 10; do
    g=$(awk -v n=$n '$1 == "load" && $2 == n { print $6 }' "$out")
    one=$(awk -v n=$n '$1 == "single" && $2 == n { print $6 }' "$out")
    r=$(awk -v a="$g" -v b="$one" 'BEGIN { if (b > 0) printf "%.2f", a / b }')
    echo "| $n nodes: client statements/s summed over the three Galera nodes / on one MariaDB server; ratio | ${g:--} / ${one:--}; ${r:--}x |"
  done
  echo "| failover when the Galera node under the master dies (SIGKILL, $(grep -c '^dbkill' "$out") trials): ms from the kill to on_start on any node, median / p95 | $kmed / $kp95 |"
  echo "| ... won by the old master (on another Galera node) / by another node | $(grep -c '^dbkill .* same' "$out") / $(grep -c '^dbkill .* other' "$out") |"
}

for b in $ONLY; do
  case $b in
    sqlite) bench_backend sqlite "sqlite://%DIR%/gomaster.db" "SQLite (file in /tmp)" ;;
    mysql) start_server mariadb && bench_backend mysql "$GOMASTER_TEST_MYSQL_URL" "MariaDB $(mariadbd --version 2>/dev/null | awk '{print $3}') on 127.0.0.1" ;;
    mongo) start_server mongo && bench_backend mongo "$GOMASTER_TEST_MONGO_URL" "MongoDB wire-protocol stand-in (tests/mongo_standin) on 127.0.0.1" ;;
    postgres) start_server postgres && bench_backend postgres "$GOMASTER_TEST_POSTGRES_URL" "PostgreSQL $(psql --version | awk '{print $3}') on 127.0.0.1" ;;
    galera) start_server mariadb && start_server galera && bench_galera ;;
    redis) start_server redis && bench_backend redis "$GOMASTER_TEST_REDIS_URL" "Redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p') on 127.0.0.1, no persistence" ;;
  esac
done
echo
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr); default timings (lease 5 s, heartbeat 1 s, deadline 3 s, retry 1 s)"
