#!/bin/sh
# A private 3-node MariaDB Galera cluster for the tests, on 127.0.0.1 on
# spare ports, run as the `mysql` user (the rsync state transfer runs its
# daemon as the server's user, so root-run joiners never sync).
#
#   tests/servers/galera.sh start DIR        create DIR/galera/n1..n3, start
#                                            the nodes (n1 bootstraps with
#                                            gcomm://), create database
#                                            gomaster_test and user gomaster,
#                                            print `export ...` lines
#   tests/servers/galera.sh stop DIR         stop every node
#   tests/servers/galera.sh kill N DIR       SIGKILL node N (1-3)
#   tests/servers/galera.sh pause N DIR      SIGSTOP node N
#   tests/servers/galera.sh resume N DIR     SIGCONT node N
#   tests/servers/galera.sh restart N DIR    start node N again after a kill
#                                            and wait until it is Synced (it
#                                            rejoins by incremental state
#                                            transfer when the donor's cache
#                                            holds what it missed, else by
#                                            rsync)
#   tests/servers/galera.sh wait DIR         wait until every node is Synced
#                                            in one primary component of 3
#                                            (after a resume: a node paused
#                                            past evs.suspect_timeout was
#                                            evicted and must notice, then
#                                            rejoin)
#   tests/servers/galera.sh url DIR          print the export lines again
#
# Export lines: GOMASTER_TEST_GALERA_URLS, three URLs separated by spaces;
# URL i names every node, node i first (mysql://u:p@h:p1,h:p2,h:p3/db);
# GOMASTER_TEST_GALERA_PORTS, the three SQL ports; GOMASTER_TEST_GALERA_DIR.
# Only the export lines go to stdout; progress and failures to stderr.
# DIR is made enterable by others (o+x) so that `mysql` reaches its files.
set -eu

die() { echo "galera.sh: $*" >&2; exit 1; }
usage="usage: $0 start|stop|url|wait DIR, or $0 kill|pause|resume|restart N DIR"

case ${1:-} in
kill | pause | resume | restart) [ $# -eq 3 ] || die "$usage"; node=$2; dir=$3 ;;
*) [ $# -eq 2 ] || die "$usage"; node=""; dir=$2 ;;
esac
cmd=$1
top=$(cd "$dir" 2>/dev/null && pwd) || die "no such directory: $dir"
case $top in *\'*) die "DIR must not contain a single quote: $top" ;; esac
G=$top/galera
PROVIDER=/usr/lib/galera/libgalera_smm.so
MARIADBD=$(command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd)
[ -f "$PROVIDER" ] || die "no $PROVIDER: install galera-4 and rsync"
command -v rsync >/dev/null 2>&1 || die "rsync not found: install rsync"
id mysql >/dev/null 2>&1 || die "no user mysql: install mariadb-server"

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
# the server's own pid once it wrote it (the launcher may be a subshell)
read_pid() {
  cat "$G/n$1/mariadbd.pid" 2>/dev/null || cat "$G/n$1/pid" 2>/dev/null || true
}
# setpriv execs (runuser would fork), so $! is the server's pid
as_mysql() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=mysql --regid=mysql --init-groups -- "$@"
  else "$@"; fi
}
sql() { # node, statement: one value per line, no headers
  mariadb --no-defaults --socket="$G/n$1/sock" -uroot -N -B \
    --connect-timeout=2 -e "$2" 2>/dev/null
}
state() { sql "$1" "SHOW STATUS LIKE 'wsrep_local_state_comment'" | cut -f2; }

# Twelve ports nobody listens on now (per /proc/net/tcp*), all different.
pick_ports() {
  got=""
  n=0
  for _ in $(seq 1 200); do
    p=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000))
    hex=$(printf '%04X' "$p")
    case " $got " in *" $p "*) continue ;; esac
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
      grep -Eq ":$hex [0-9A-F]+:[0-9A-F]+ 0A " && continue
    got="$got $p"
    n=$((n + 1))
    [ $n -lt 12 ] || { echo "$got"; return 0; }
  done
  die "no spare ports found"
}

launch() { # node, cluster address
  d=$G/n$1
  eval "sp=\$sql$1 gp=\$gm$1 ip=\$ist$1 tp=\$sst$1"
  : >"$d/error.log"
  chown mysql: "$d/error.log" 2>/dev/null || true
  # shellcheck disable=SC2154 # set by eval
  as_mysql setsid "$MARIADBD" --no-defaults --datadir="$d/data" \
    --socket="$d/sock" --port="$sp" --bind-address=127.0.0.1 \
    --skip-name-resolve --pid-file="$d/mariadbd.pid" \
    --log-error="$d/error.log" --innodb-buffer-pool-size=32M \
    --innodb-log-file-size=16M --innodb-flush-log-at-trx-commit=2 \
    --binlog-format=ROW --innodb-autoinc-lock-mode=2 \
    --wsrep-on=ON --wsrep-provider="$PROVIDER" \
    --wsrep-cluster-name=gomaster_test --wsrep-node-name="n$1" \
    --wsrep-cluster-address="$2" --wsrep-node-address=127.0.0.1 \
    --wsrep-provider-options="gmcast.listen_addr=tcp://127.0.0.1:$gp;ist.recv_addr=127.0.0.1:$ip;evs.suspect_timeout=PT5S" \
    --wsrep-sst-method=rsync --wsrep-sst-receive-address="127.0.0.1:$tp" \
    </dev/null >>"$d/error.log" 2>&1 &
  echo $! >"$d/pid"
}

wait_synced() { # node, tenths of a second
  for _ in $(seq 1 "$2"); do
    pid_alive "$(read_pid "$1")" || { tail -n 20 "$G/n$1/error.log" >&2; return 1; }
    [ "$(state "$1")" = Synced ] && return 0
    sleep 0.1
  done
  tail -n 20 "$G/n$1/error.log" >&2
  return 1
}

# Every node Synced and seeing all three (a node that was paused may still
# believe in the old view for a few seconds: its peers' view counts too).
cluster_whole() {
  for i in 1 2 3; do
    v=$(sql "$i" "SHOW STATUS WHERE Variable_name IN ('wsrep_local_state_comment', 'wsrep_cluster_size', 'wsrep_cluster_status')" |
      sort | cut -f2 | tr '\n' ' ')
    [ "$v" = "3 Primary Synced " ] || return 1
  done
}

wait_cluster() { # tenths of a second
  for _ in $(seq 1 "$1"); do
    cluster_whole && return 0
    sleep 0.1
  done
  return 1
}

stop_node() {
  pid=$(read_pid "$1")
  if pid_alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    while pid_alive "$pid"; do sleep 0.1; done
  fi
  rm -f "$G/n$1/pid" "$G/n$1/mariadbd.pid"
}

do_stop() {
  for i in 3 2 1; do
    pid=$(read_pid $i)
    pid_alive "$pid" || continue
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  for i in 3 2 1; do
    pid=$(read_pid $i)
    for _ in $(seq 1 300); do pid_alive "$pid" || break; sleep 0.1; done
    if pid_alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      while pid_alive "$pid"; do sleep 0.1; done
    fi
    rm -f "$G/n$i/pid" "$G/n$i/mariadbd.pid"
  done
}

do_start() {
  for i in 1 2 3; do
    pid_alive "$(read_pid $i)" && die "already running in $G"
  done
  chmod o+x "$top"
  mkdir -p "$G"
  chmod 755 "$G"
  # shellcheck disable=SC2046
  set -- $(pick_ports)
  echo "$*" >"$G/ports"
  for i in 1 2 3; do
    eval "sql$i=$1 gm$i=$2 ist$i=$3 sst$i=$4"
    shift 4
    d=$G/n$i
    mkdir -p "$d"
    chown mysql: "$d"
    [ ${#d} -lt 95 ] || die "DIR is too long for a unix socket path: $top"
    if [ ! -d "$d/data/mysql" ]; then
      as_mysql mariadb-install-db --no-defaults --datadir="$d/data" \
        --auth-root-authentication-method=normal --skip-test-db \
        >"$d/install.log" 2>&1 || { tail -n 20 "$d/install.log" >&2; die "mariadb-install-db failed"; }
    fi
  done
  # shellcheck disable=SC2154
  peers="127.0.0.1:$gm1,127.0.0.1:$gm2,127.0.0.1:$gm3"
  launch 1 "gcomm://"
  wait_synced 1 600 || { do_stop; die "node 1 did not start (see $G/n1/error.log)"; }
  # Both joiners at once; one that does not sync (two state transfers
  # from one donor may collide) is started again, alone.
  launch 2 "gcomm://$peers"
  launch 3 "gcomm://$peers"
  for i in 2 3; do
    wait_synced $i 600 && continue
    echo "galera.sh: node $i did not sync; starting it again" >&2
    stop_node $i
    launch $i "gcomm://$peers"
    wait_synced $i 600 || { do_stop; die "node $i did not sync (see $G/n$i/error.log)"; }
  done

  pw="gm-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  sql 1 "CREATE DATABASE IF NOT EXISTS gomaster_test;
    CREATE OR REPLACE USER 'gomaster'@'%' IDENTIFIED BY '$pw';
    GRANT ALL ON \`gomaster%\`.* TO 'gomaster'@'%';" ||
    { do_stop; die "could not create the test database and user"; }
  # shellcheck disable=SC2154
  h1=127.0.0.1:$sql1 h2=127.0.0.1:$sql2 h3=127.0.0.1:$sql3
  u="mysql://gomaster:$pw@"
  {
    printf "export GOMASTER_TEST_GALERA_URLS='%s%s,%s,%s/gomaster_test %s%s,%s,%s/gomaster_test %s%s,%s,%s/gomaster_test'\n" \
      "$u" "$h1" "$h2" "$h3" "$u" "$h2" "$h3" "$h1" "$u" "$h3" "$h1" "$h2"
    printf "export GOMASTER_TEST_GALERA_PORTS='%s %s %s'\n" "$sql1" "$sql2" "$sql3"
    printf "export GOMASTER_TEST_GALERA_DIR='%s'\n" "$top"
  } >"$G/env"
  echo "galera.sh: 3 nodes on 127.0.0.1:$sql1,$sql2,$sql3, data in $G" >&2
  cat "$G/env"
}

load_ports() {
  [ -f "$G/ports" ] || die "no cluster in $G"
  # shellcheck disable=SC2046
  set -- $(cat "$G/ports")
  for i in 1 2 3; do
    eval "sql$i=$1 gm$i=$2 ist$i=$3 sst$i=$4"
    shift 4
  done
}

# A killed node back into the cluster. Its state transfer script reads the
# last committed position from InnoDB first, so that a donor sends only what
# it missed (IST) when its cache still holds it, instead of a whole copy (an
# rsync state transfer, which blocks the donor's writes while it runs).
do_restart() {
  check_node
  pid_alive "$(read_pid "$node")" && die "node $node is running"
  load_ports
  d=$G/n$node
  rm -f "$d/pid" "$d/mariadbd.pid"
  peers=""
  for i in 1 2 3; do
    [ "$i" = "$node" ] && continue
    eval "peers=\$peers\${peers:+,}127.0.0.1:\$gm$i"
  done
  launch "$node" "gcomm://$peers"
  wait_synced "$node" 1200 || die "node $node did not rejoin (see $d/error.log)"
  wait_cluster 600 || die "the cluster is not whole after node $node rejoined"
}

check_node() {
  case $node in 1 | 2 | 3) ;; *) die "node must be 1, 2 or 3" ;; esac
}

signal() {
  check_node
  pid=$(read_pid "$node")
  pid_alive "$pid" || die "node $node is not running in $G"
  kill "-$1" "$pid"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
kill) signal KILL ;;
pause) signal STOP ;;
resume) signal CONT ;;
restart) do_restart ;;
wait) wait_cluster 1200 || die "the cluster is not whole after 120 s (see $G/n*/error.log)" ;;
url) cat "$G/env" ;;
*) die "unknown command: $cmd" ;;
esac
