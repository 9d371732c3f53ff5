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
#   GOMASTER_BENCH_PARTS="failover ismaster load many memory close scale"
#                              the benchmarks to run (rows of the others: -)
#   GOMASTER_BENCH_SCALE="10 100 200"   node processes of the scale table
#                              (MariaDB, PostgreSQL, Redis)
#   GOMASTER_BENCH_CRASHES=5   crash failovers per row of the scale table
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
export GOMASTER_ROOT="$ROOT"
TRIALS=${GOMASTER_BENCH_TRIALS:-20}
GTRIALS=${GOMASTER_BENCH_GALERA_TRIALS:-10}
ONLY=${GOMASTER_BENCH_ONLY:-sqlite mysql mongo postgres redis galera}
PARTS=${GOMASTER_BENCH_PARTS:-failover ismaster load many memory close scale}
SCALE=${GOMASTER_BENCH_SCALE:-10 100 200}
CRASHES=${GOMASTER_BENCH_CRASHES:-5}
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

part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

bench_backend() { # $1: tag (sqlite|mysql|mongo|redis), $2: URL, $3: title
  tag=$1 url=$2 title=$3 out="$TMP/$1.out"
  : >"$out"
  echo "running: $title" >&2
  if part failover; then
    lua5.4 bench/failover.lua "$url" "$TRIALS" >>"$out" || echo "failover failed" >&2
  fi
  # the part the library adds: time to the new master minus the lease left
  awk '$1 == "kill" { printf "added %.3f\n", $2 - $3 }' "$out" >"$out.added"
  cat "$out.added" >>"$out"
  if part ismaster; then
    for lua in lua5.4 luajit; do
      $lua bench/ismaster.lua "$url" | sed "s/^ismaster/ismaster-$lua/" >>"$out"
    done
  fi
  if part load; then
    for n in 3 10 50; do lua5.4 bench/load.lua "$tag" "$url" $n 10 >>"$out"; done
  fi
  if part many; then
    for k in 1 100 1000; do lua5.4 bench/many.lua "$tag" "$url" $k 10 >>"$out"; done
  fi
  if part memory; then lua5.4 bench/memory.lua "$url" >>"$out"; fi
  if part close; then lua5.4 bench/close.lua "$url" "$TRIALS" >>"$out"; fi
  if part scale; then
    case $tag in mysql | postgres | redis) bench_scale "$tag" "$url" ;; esac
  fi

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
    [ -n "$i" ] && i="$i (floor $f, ${r}x)"
    echo "| is_master() from $lua, ns per call (floor: a C function returning true) | ${i:--} |"
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
  for k in close free; do
    awk -v k=$k '$1 == k { print $2, $3 }' "$out" >"$out.$k"
    set -- $(stat "$out.$k" follower 2) $(stat "$out.$k" master 2)
    n=$(grep -c '^follower' "$out.$k")
    if [ $k = close ]; then
      echo "| close() of a follower / of the master ($n trials each), ms median / p95 | ${1:--} / ${2:--}; ${3:--} / ${4:--} |"
    else
      echo "| ... then collecting its backend (threads joined, connections closed), ms median / p95 | ${1:--} / ${2:--}; ${3:--} / ${4:--} |"
    fi
  done
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

# The scale table's rows of one backend: bench/scale.lua for each count of
# $SCALE. MariaDB's max_connections (151 by default) becomes 500 for counts
# over 100, and 151 again after.
bench_scale() { # $1: tag, $2: URL
  stag=$1 surl=$2
  for n in $SCALE; do
    raised=""
    if [ "$stag" = mysql ] && [ "$n" -gt 100 ]; then
      mariadb --socket="$GOMASTER_TEST_MARIADB_DIR/mariadb/mysqld.sock" -uroot \
        -e "SET GLOBAL max_connections = 500" && raised=" (max_connections 500)"
    fi
    echo "running: scale $stag $n nodes" >&2
    o="$TMP/scale-$stag-$n.out"
    lua5.4 bench/scale.lua "$stag" "$surl" "$n" 10 "$CRASHES" >"$o" || echo "scale $stag $n failed" >&2
    if [ -n "$raised" ]; then
      mariadb --socket="$GOMASTER_TEST_MARIADB_DIR/mariadb/mysqld.sock" -uroot \
        -e "SET GLOBAL max_connections = 151"
    fi
    awk '$1 == "crash" && $3 != "-" { printf "added %.3f\n", $2 - $3 }' "$o" >"$o.added"
    cat "$o.added" >>"$o"
    # scale <nodes> <connections> <statements/s> <new connections/s> <node errors/s> <masters>
    set -- $(grep '^scale ' "$o") - - - - - - -
    row="${3} | ${4} | ${5} | ${6}; $(col "$o" refused 2)"
    masters=$7
    set -- $(stat "$o" crash 2) $(stat "$o" added 2)
    echo "| $(scale_name "$stag") | $n$raised | $row | $(grep -c '^crash' "$o"): $1 / $2; $3 / $4 | $(col "$o" overlap 2) | $masters |" >>"$TMP/scale.rows"
  done
}
scale_name() { case $1 in mysql) echo MariaDB ;; postgres) echo PostgreSQL ;; redis) echo Redis ;; esac; }

for b in $ONLY; do
  case $b in
    sqlite) bench_backend sqlite "sqlite://%DIR%/gomaster.db" "SQLite (file in /tmp)" ;;
    mysql) start_server mariadb && bench_backend mysql "$GOMASTER_TEST_MYSQL_URL" "MariaDB $(mariadbd --version 2>/dev/null | awk '{print $3}') on 127.0.0.1" ;;
    mongo) start_server mongo && bench_backend mongo "$GOMASTER_TEST_MONGO_URL" "MongoDB wire-protocol stand-in (tests/mongo_standin) on 127.0.0.1" ;;
    postgres) GOMASTER_POSTGRES_MAX_CONNECTIONS=300 start_server postgres && bench_backend postgres "$GOMASTER_TEST_POSTGRES_URL" "PostgreSQL $(psql --version | awk '{print $3}') on 127.0.0.1" ;;
    galera) start_server mariadb && start_server galera && bench_galera ;;
    redis) start_server redis && bench_backend redis "$GOMASTER_TEST_REDIS_URL" "Redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p') on 127.0.0.1, no persistence" ;;
  esac
done
if [ -s "$TMP/scale.rows" ]; then
  echo
  echo "### Scale: node processes on one lock, one server"
  echo
  echo "Each node a process of bench/node.lua (one elector, default timings). At steady state, over 10 s, the server's own counts: connections open (MariaDB Threads_connected, PostgreSQL pg_stat_activity, Redis connected_clients), statements/s (MariaDB Questions, PostgreSQL xact_commit + xact_rollback, Redis the clients' commands of INFO commandstats), new connections/s (MariaDB Connections, which counts refused attempts too; PostgreSQL pg_stat_database.sessions; Redis total_connections_received); node errors/s from the nodes' counters, and refused: errors naming a refused connection over the whole run. Crash: SIGKILL of the master to on_start elsewhere, ms median / p95, then minus the lease left at the kill (- when the reading connection was refused). Overlap: 1 when two nodes' belief intervals overlapped. Servers: MariaDB max_connections 151 (its default), raised to 500 where the row says so; PostgreSQL max_connections 300 (200 in make test); Redis maxclients 10000 (its default)."
  echo
  echo "| server | nodes | connections | statements/s | new connections/s | node errors/s; refused | crash failover: n: ms median / p95; minus lease left | overlap | masters in the window |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  cat "$TMP/scale.rows"
fi
echo
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr); default timings (lease 5 s, heartbeat 1 s, deadline 3 s, retry 1 s)"
