/*
 * test_mysql_backend.c: drives gm_mysql_ops directly against the MariaDB or
 * MySQL server named by GOMASTER_TEST_MYSQL_URL (tests/servers/mariadb.sh
 * starts one). One line per check, then "N passed, N failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BT_NO_INSTANCE /* requests carry instance 0 */
#include "backend_test.h"

extern const gm_backend_ops gm_mysql_ops;

static void test_options(void) {
  void *cfg;
  gm_error err;

  bt_describe("mysql://gomaster@127.0.0.1:",
              "/gomaster_test?table=gomaster_locks");
  bt_refused("colour", "blue");
  int rc = parse_with("table", "x`; DROP TABLE y; --", &cfg, &err);
  check_error("table name x`; DROP TABLE y; --", rc, &err, GM_E_ARG,
              "'table'");
  rc = parse_with("database", "gomaster_test`; --", &cfg, &err);
  check_error("database name with a backquote", rc, &err, GM_E_ARG,
              "'database'");
  bt_refused("read_timeout", "soon");
  bt_refused("ssl_mode", "sometimes");
  bt_refused("port", "70000");
  rc = parse_with("database", NULL, &cfg, &err);
  check_error("no database", rc, &err, GM_E_ARG,
              "option 'database' is required, as in mysql://");
}

/* The URL's options with its host replaced by key = value. */
static int parse_hosts(const char *key, const char *value, void **cfg,
                       gm_error *err) {
  gm_kv kv[GM_URL_MAX_KV + 1];
  size_t n = 0;
  for (size_t i = 0; i < url.n; i++)
    if (strcmp(url.kv[i].key, "host") != 0) kv[n++] = url.kv[i];
  kv[n++] = (gm_kv){key, value};
  memset(err, 0, sizeof *err);
  return ops->parse(kv, n, cfg, err);
}

/* Opens cfg and tells where it went (describe's "(on HOST)"). */
static int open_on(void *cfg, void **conn, const char *want, const char *what) {
  gm_error err = {0};
  char buf[512];
  int rc = ops->open(cfg, conn, &err);
  ops->describe(cfg, buf, sizeof buf);
  check(rc == GM_OK && strstr(buf, want) != NULL, "%s: %s %s", what, buf,
        rc ? err.msg : "");
  return rc;
}

/* host1:port1,host2:port2: parse, bad forms, the first host that answers,
 * the next host after a lost connection. */
static void test_host_list(void) {
  void *cfg, *conn = NULL;
  gm_error err;
  char list[256], want[64], buf[512];
  const char *port = gm_kv_get(url.kv, url.n, "port");
  const char *host = gm_kv_get(url.kv, url.n, "host");
  if (!port || !host || strcmp(host, "127.0.0.1") != 0) {
    printf("skipped: host lists (the test URL is not 127.0.0.1:PORT)\n");
    return;
  }

  /* a URL: url.c hands the list over whole */
  char u[512];
  snprintf(u, sizeof u, "mysql://gomaster@127.0.0.1:1,[::1]:2,db3/gomaster_test");
  gm_url lu;
  int rc = gm_url_parse(u, 0, &lu, &err);
  check(rc == GM_OK, "URL with a host list parses: %s", rc ? err.msg : "");
  if (rc == GM_OK) {
    rc = ops->parse(lu.kv, lu.n, &cfg, &err);
    check(rc == GM_OK, "host list from a URL accepted: %s", rc ? err.msg : "");
    if (rc == GM_OK) {
      ops->describe(cfg, buf, sizeof buf);
      check(strstr(buf, "@127.0.0.1:1,[::1]:2,db3:3306/gomaster_test") != NULL,
            "describe shows every host: %s", buf);
      ops->free_cfg(cfg);
    }
    gm_url_free(&lu);
  }

  static const struct { const char *key, *value, *names; } bad[] = {
      {"host", "a,,b", "'host'"},         {"host", "a,b:70000", "'host'"},
      {"host", "a,b:x", "'host'"},        {"hosts", "[::1,b", "'hosts'"},
      {"hosts", "a:1:2", "'hosts'"},      {"host", "a, b", "'host'"},
      {"hosts", ",a", "'hosts'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rc = parse_hosts(bad[i].key, bad[i].value, &cfg, &err);
    check(rc == GM_ERR && err.code == GM_E_ARG &&
              strstr(err.msg, bad[i].names) != NULL,
          "%s = \"%s\" refused naming the field: %s", bad[i].key,
          bad[i].value, err.msg);
    if (rc == GM_OK) ops->free_cfg(cfg);
  }
  gm_kv both[GM_URL_MAX_KV + 2];
  size_t n = 0;
  for (size_t i = 0; i < url.n; i++) both[n++] = url.kv[i];
  both[n++] = (gm_kv){"hosts", "a,b"};
  memset(&err, 0, sizeof err);
  rc = ops->parse(both, n, &cfg, &err);
  check(rc == GM_ERR && strstr(err.msg, "'hosts'"),
        "host and hosts both given: refused: %s", err.msg);

  /* the first host refuses at once (port 1): the second one answers */
  snprintf(list, sizeof list, "127.0.0.1:1,127.0.0.1:%s", port);
  snprintf(want, sizeof want, "(on 127.0.0.1:%s)", port);
  if (parse_with("host", list, &cfg, &err) == GM_OK) {
    if (open_on(cfg, &conn, want, "a dead head: open goes on to the next")) {
      ops->free_cfg(cfg);
      return;
    }
    gm_row row;
    check(ops->observe(conn, "hl", &row, &err) == GM_OK, "observe there");
    close_conn(cfg, conn);
  }

  /* both answer (127.1 is 127.0.0.1 spelled so that describe tells them
   * apart): the head first; after a lost connection, the next one */
  snprintf(list, sizeof list, "127.0.0.1:%s,127.1:%s", port, port);
  if (parse_hosts("hosts", list, &cfg, &err) != GM_OK) {
    check(0, "hosts = %s: %s", list, err.msg);
    return;
  }
  snprintf(want, sizeof want, "(on 127.0.0.1:%s)", port);
  list[strcspn(list, ",")] = '\0'; /* the head, as errors name it */
  if (open_on(cfg, &conn, want, "both answer: the head") == GM_OK) {
    gm_row row;
    ops->interrupt(conn); /* the connection is lost, as in a crash */
    rc = ops->observe(conn, "hl", &row, &err);
    check(rc == GM_ERR && err.code == GM_E_CONNECT &&
              strstr(err.msg, list) != NULL,
          "lost connection: a connect error naming the host: %s", err.msg);
    ops->close(conn);
    snprintf(want, sizeof want, "(on 127.1:%s)", port);
    if (open_on(cfg, &conn, want, "after a lost connection: the next host") ==
        GM_OK)
      ops->close(conn);
  }
  ops->free_cfg(cfg);
}

static void test_connect_errors(void) {
  void *cfg, *conn;
  gm_error err;
  char pw[128];

  snprintf(pw, sizeof pw, "%s-wrong", password());
  int rc = open_with("password", pw, &cfg, &conn, &err);
  check_error("wrong password", rc, &err, GM_E_AUTH,
              "access denied for user 'gomaster'");
  check(strstr(err.msg, pw) == NULL, "wrong password: not in message");
  close_conn(cfg, conn);

  /* the test user has rights on gomaster%: the database is just missing */
  rc = open_with("database", "gomaster_nosuchdb", &cfg, &conn, &err);
  check_error("unknown database", rc, &err, GM_E_CONNECT,
              "unknown database 'gomaster_nosuchdb'");
  close_conn(cfg, conn);
  rc = open_with("database", "mysql", &cfg, &conn, &err);
  check_error("database without rights", rc, &err, GM_E_AUTH,
              "access denied for user 'gomaster' to database 'mysql'");
  close_conn(cfg, conn);

  /* port 1 on loopback: nobody listens, the kernel refuses at once */
  double t0 = mono();
  rc = open_with("port", "1", &cfg, &conn, &err);
  double took = mono() - t0;
  check_error("closed port", rc, &err, GM_E_CONNECT, "cannot connect to");
  check(strstr(err.msg, "127.0.0.1:1") != NULL, "closed port: names host:port");
  check(took < 2.5, "closed port: fails within the connect timeout (%.3f s)",
        took);
  close_conn(cfg, conn);

  rc = open_with("ssl_mode", "required", &cfg, &conn, &err);
  check_error("ssl_mode=required on a server without TLS", rc, &err,
              GM_E_CONNECT, "cannot connect to");
  close_conn(cfg, conn);

  rc = open_with("ssl_mode", "verify_ca", &cfg, &conn, &err);
  check_error("ssl_mode=verify_ca on a server without TLS", rc, &err,
              GM_E_CONNECT, "cannot connect to");
  close_conn(cfg, conn);

  rc = open_with("ssl_mode", "preferred", &cfg, &conn, &err);
  check(rc == GM_OK, "ssl_mode=preferred connects without TLS: %s",
        rc ? err.msg : "");
  close_conn(cfg, conn);

  rc = open_with("ssl_mode", "disabled", &cfg, &conn, &err);
  check(rc == GM_OK, "ssl_mode=disabled connects: %s", rc ? err.msg : "");
  close_conn(cfg, conn);
}

/* What MySQL's renewal does of its own (the rest of acquire, renew,
 * release, takeover and tokens is test_backend.c's): a grant made on one
 * connection renewed on another reads acquired_at itself, and two renewals
 * within one second both count (microseconds, found rows). */
static void test_renewals(void *conn, void *conn2) {
  gm_error err;
  gm_row r;
  char name[128];
  const int64_t lease = 5000000;
  lock_name(name, sizeof name, "basic");

  gm_acquire_req a = req(name, "node-a", 0, 0, 0, lease);
  int rc = ops->acquire(conn, &a, &r, &err);
  check(rc == GM_OK && r.token == 1, "node-a takes a new lock (rc %d %s)", rc,
        rc == GM_ERR ? err.msg : "");
  rc = ops->renew(conn2, name, "node-a", 0, 1, lease, &r, &err);
  check(rc == GM_OK && r.expires_at == r.renewed_at + lease,
        "renew on another connection than the grant's");

  int same = 0, both = 1;
  gm_row r1, r2;
  for (int i = 0; i < 20 && !same; i++) {
    int rc1 = ops->renew(conn, name, "node-a", 0, 1, lease, &r1, &err);
    int rc2 = ops->renew(conn, name, "node-a", 0, 1, lease, &r2, &err);
    both = both && rc1 == GM_OK && rc2 == GM_OK;
    same = r1.now / 1000000 == r2.now / 1000000;
  }
  check(same && both, "two renewals within one second both succeed");
  check(r2.renewed_at > r1.renewed_at, "renewals keep microseconds (%lld µs "
        "apart)", (long long)(r2.renewed_at - r1.renewed_at));
  ops->release(conn, name, "node-a", 0, 1, &err);
}

static void test_names(void *conn, void *conn2) {
  static const char *const odd[] = {
      "it's a \"quoted\" name", "back\\slash\\", "ünïcødé 锁 🔒",
      "x'; DROP TABLE gomaster_locks; --", "100%_like", "case",
      "Case", "trail", "trail ", "tab\tand\nnewline"};
  const size_t n = sizeof odd / sizeof odd[0];
  gm_error err;
  gm_row r, o;
  char name[GM_NAME_MAX + 8];
  int ok = 1;

  for (size_t i = 0; i < n; i++) {
    char owner[32];
    snprintf(owner, sizeof owner, "node-%zu", i);
    lock_name(name, sizeof name, odd[i]);
    gm_acquire_req a = req(name, owner, 0, 0, 0, 5000000);
    int rc = ops->acquire(conn, &a, &r, &err);
    check(rc == GM_OK, "odd lock name %zu taken (rc %d %s)", i, rc,
          rc == GM_ERR ? err.msg : "");
  }
  for (size_t i = 0; i < n; i++) {
    char owner[32];
    snprintf(owner, sizeof owner, "node-%zu", i);
    lock_name(name, sizeof name, odd[i]);
    int rc = ops->observe(conn2, name, &o, &err);
    ok = ok && rc == GM_OK && o.exists && strcmp(o.owner, owner) == 0;
    rc = ops->renew(conn2, name, owner, 0, 1, 5000000, &r, &err);
    ok = ok && rc == GM_OK;
    rc = ops->release(conn2, name, owner, 0, 1, &err);
    ok = ok && rc == GM_OK;
  }
  check(ok, "each odd name is its own row (case, trailing space, quotes)");
  /* the widest name: test_backend; a longer one: test_core */
}

static void test_custom_table(void) {
  void *cfg, *conn;
  gm_error err;
  gm_row r;
  char name[128];
  lock_name(name, sizeof name, "custom");
  int rc = open_with("table", "gm_ctest_custom", &cfg, &conn, &err);
  check(rc == GM_OK, "open with table=gm_ctest_custom (creates it)");
  if (rc == GM_OK) {
    gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
    rc = ops->acquire(conn, &a, &r, &err);
    check(rc == GM_OK && r.token == 1, "acquire in the custom table");
  }
  close_conn(cfg, conn);
}

/* A hung server costs at most the timeouts; a restarted one a reconnect. */
static void test_server_events(const char *dir) {
  void *cfg, *conn;
  gm_error err;
  gm_row r, o;
  char name[128];
  lock_name(name, sizeof name, "events");

  if (parse_with("read_timeout", "1", &cfg, &err)) return;
  int rc = ops->open(cfg, &conn, &err);
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 60000000);
  check(rc == GM_OK && ops->acquire(conn, &a, &r, &err) == GM_OK,
        "lock taken before the pause");
  check(server(dir, "pause") == 0, "server paused (SIGSTOP)");
  double t0 = mono();
  rc = ops->renew(conn, name, "node-a", 0, 1, 60000000, &r, &err);
  double took = mono() - t0;
  check(rc == GM_ERR && err.code == GM_E_CONNECT,
        "renew on a paused server fails: %s", err.msg);
  check(took > 0.5 && took < 2.5,
        "... after the read timeout of 1 s (%.2f s)", took);
  ops->close(conn);
  conn = NULL;
  bt_open_paused(cfg, 4.5, "the connect and read timeouts");
  check(server(dir, "resume") == 0, "server resumed (SIGCONT)");
  rc = ops->open(cfg, &conn, &err);
  check(rc == GM_OK && ops->renew(conn, name, "node-a", 0, 1, 60000000, &r,
                                  &err) == GM_OK,
        "after resume: reconnect and renew");

  t0 = mono();
  rc = server(dir, "restart");
  took = mono() - t0;
  check(rc == 0, "server restarted (%.2f s)", took);
  rc = ops->observe(conn, name, &o, &err);
  check(rc == GM_ERR && err.code == GM_E_CONNECT,
        "the old connection reports the restart: %s", err.msg);
  ops->close(conn);
  rc = ops->open(cfg, &conn, &err);
  check(rc == GM_OK && ops->observe(conn, name, &o, &err) == GM_OK &&
            o.exists && o.token == 1 && strcmp(o.owner, "node-a") == 0,
        "a new connection finds the lock as it was");
  rc = ops->renew(conn, name, "node-a", 0, 1, 60000000, &r, &err);
  check(rc == GM_OK && r.expires_at > o.expires_at,
        "the holder renews after the restart");
  ops->release(conn, name, "node-a", 0, 1, &err);
  close_conn(cfg, conn);
}

/* The core calls open and the rest on its own thread, not parse's. */
static void *thread_main(void *arg) {
  void *cfg = arg, *conn = NULL;
  gm_error err;
  gm_row o;
  static int ok;
  ok = ops->open(cfg, &conn, &err) == GM_OK &&
       ops->observe(conn, "thread", &o, &err) == GM_OK && o.now > 0;
  if (conn) ops->close(conn);
  return &ok;
}

static void test_thread(void) {
  void *cfg, *res;
  gm_error err;
  pthread_t t;
  if (parse_with(NULL, NULL, &cfg, &err)) return;
  pthread_create(&t, NULL, thread_main, cfg);
  pthread_join(t, &res);
  check(*(int *)res, "open and observe on another thread than parse");
  ops->free_cfg(cfg);
}

/* ---- wake-up: the master's user lock and the follower's waiter ---------- */

/* Runs SQL text on the test server with the mariadb client (this test does
 * not see the client library's headers): the first field of the first row
 * goes to out ("" if none). GM_OK when the client succeeded. */
static int sql(const char *text, char *out, size_t len) {
  const char *host = gm_kv_get(url.kv, url.n, "host");
  const char *port = gm_kv_get(url.kv, url.n, "port");
  const char *user = gm_kv_get(url.kv, url.n, "user");
  const char *db = gm_kv_get(url.kv, url.n, "database");
  char in[] = "/tmp/gm-test-sql.XXXXXX", cmd[1024];
  int fd = mkstemp(in);
  if (fd < 0) return GM_ERR;
  FILE *f = fdopen(fd, "w");
  fputs(text, f);
  fclose(f);
  setenv("MYSQL_PWD", password(), 1);
  snprintf(cmd, sizeof cmd,
           "mariadb --no-defaults -h '%s' -P '%s' -u '%s' -N -B '%s' <'%s'",
           host ? host : "127.0.0.1", port ? port : "3306",
           user ? user : "", db ? db : "", in);
  FILE *p = popen(cmd, "r");
  if (out && len) out[0] = '\0';
  if (!p) {
    unlink(in);
    return GM_ERR;
  }
  char line[256] = "";
  if (fgets(line, sizeof line, p) && out && len) {
    line[strcspn(line, "\t\n")] = '\0';
    snprintf(out, len, "%s", line);
  }
  while (fgets(line, sizeof line, p)) {
  }
  int rc = pclose(p);
  unlink(in);
  return rc == 0 ? GM_OK : GM_ERR;
}

/* The user lock of lock name in the test URL's database and default table,
 * as docs/mysql.md defines it: "gomaster:" and FNV-1a 64 of
 * "database\0table\0name\0" in 16 hex digits. */
static void user_lock(char *buf, size_t len, const char *name) {
  char text[512];
  const char *db = gm_kv_get(url.kv, url.n, "database");
  int n = snprintf(text, sizeof text, "%s%c%s%c%s", db, 0, "gomaster_locks", 0,
                   name);
  uint64_t h = 14695981039346656037u;
  for (int i = 0; i <= n; i++) {
    h ^= (unsigned char)text[i];
    h *= 1099511628211u;
  }
  snprintf(buf, len, "gomaster:%016llx", (unsigned long long)h);
}

/* Whether another session holds user lock key (IS_USED_LOCK not NULL). */
static int used(const char *key) {
  char q[256], out[64];
  snprintf(q, sizeof q, "SELECT IS_USED_LOCK('%s')", key);
  return sql(q, out, sizeof out) == GM_OK && strcmp(out, "NULL") != 0 &&
         out[0];
}

/* Two backends on the test URL (a master's and a follower's); on failure
 * a failed check and nothing to close. */
static int open_two(const char *what, void **cfg, void **conn, void **cfg2,
                    void **conn2) {
  gm_error err;
  *conn2 = *cfg2 = NULL;
  if (open_with(NULL, NULL, cfg, conn, &err) == GM_OK &&
      open_with(NULL, NULL, cfg2, conn2, &err) == GM_OK)
    return GM_OK;
  check(0, "%s: open two backends: %s", what, err.msg);
  close_conn(*cfg, *conn);
  close_conn(*cfg2, *conn2);
  return GM_ERR;
}

static void test_wakeup(void) {
  void *cfg, *cfg2, *conn, *conn2, *cfgw = NULL, *w = NULL;
  gm_error err;
  gm_row r, o;
  char name[128], key[64];
  const int64_t lease = 60000000;
  lock_name(name, sizeof name, "wake");
  user_lock(key, sizeof key, name);

  if (open_two("wake-up", &cfg, &conn, &cfg2, &conn2)) return;
  check(ops->watch && ops->interrupt && !ops->changed && !ops->poll_us,
        "watch and interrupt are there; no changed() poll");
  int rc = open_with(NULL, NULL, &cfgw, &w, &err);
  check(rc == GM_OK, "a wake-up connection opens %s", rc ? err.msg : "");
  check(!used(key), "no user lock before the grant (%s)", key);
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, lease);
  rc = ops->acquire(conn, &a, &r, &err);
  check(rc == GM_OK, "wake-up: node-a takes the lock");
  check(used(key), "the master holds the user lock (IS_USED_LOCK)");

  bt_watch wt;
  bt_watch_start(&wt, w, name, 800000, NULL, NULL);
  for (int i = 0; i < 8; i++) {
    ops->renew(conn, name, "node-a", 0, r.token, lease, &r, &err);
    usleep(50000);
  }
  bt_watch_join(&wt);
  check(wt.rc == GM_NOT, "watch: GM_NOT while the master renews (%d)",
        wt.rc);

  bt_watch_start(&wt, w, name, 3000000, NULL, NULL);
  double t0 = mono();
  rc = ops->release(conn, name, "node-a", 0, r.token, &err);
  bt_watch_join(&wt);
  check(rc == GM_OK && wt.rc == GM_OK && wt.returned - t0 < 0.05,
        "watch: GM_OK %.1f ms after the master's release",
        (wt.returned - t0) * 1000);
  check(!used(key), "the user lock is free after the release");
  rc = ops->observe(conn2, name, &o, &err);
  check(rc == GM_OK && o.owner[0] == '\0',
        "... and the follower reads the row free");

  /* The follower takes over; the old master follows it. */
  gm_acquire_req b = req(name, "node-b", 1, o.token, 0, 1000000);
  rc = ops->acquire(conn2, &b, &r, &err);
  check(rc == GM_OK && used(key), "node-b takes it over and holds the user lock");
  rc = ops->observe(conn, name, &o, &err);
  check(rc == GM_OK && strcmp(o.owner, "node-b") == 0,
        "node-a follows node-b");
  usleep(1100000); /* node-b's 1 s lease runs out: node-a takes it back */
  gm_acquire_req a2 = req(name, "node-a", 1, o.token, 0, lease);
  rc = ops->acquire(conn, &a2, &r, &err);
  check(rc == GM_OK, "node-a takes the expired lease");
  rc = ops->renew(conn2, name, "node-b", 0, b.expect_token + 1, lease, &o, &err);
  check(rc == GM_NOT, "node-b's renewal: GM_NOT");
  rc = ops->renew(conn, name, "node-a", 0, r.token, lease, &r, &err);
  check(rc == GM_OK && used(key),
        "node-a holds the user lock once node-b has let it go");
  rc = ops->release(conn, name, "node-a", 0, r.token, &err);
  check(rc == GM_OK && !used(key),
        "both let the user lock go: free after node-a's release");

  /* A master that stepped down at its deadline (paused) never renews or
   * releases again: reading the row taken over lets its user lock go. */
  a = req(name, "node-a", 1, r.token, 0, 1000000);
  rc = ops->acquire(conn, &a, &r, &err);
  usleep(1100000);
  b = req(name, "node-b", 1, r.token, 0, lease);
  rc = rc == GM_OK ? ops->acquire(conn2, &b, &r, &err) : rc;
  check(rc == GM_OK, "node-b takes node-a's expired lease");
  rc = ops->observe(conn, name, &o, &err);
  rc = rc == GM_OK ? ops->renew(conn2, name, "node-b", 0, r.token, lease, &r,
                                &err) : rc;
  rc = rc == GM_OK ? ops->release(conn2, name, "node-b", 0, r.token, &err) : rc;
  check(rc == GM_OK && !used(key),
        "node-a read node-b's grant and let the user lock go");

  /* interrupt() while the watch is blocked in GET_LOCK, then close() */
  a = req(name, "node-a", 1, r.token, 0, lease);
  rc = ops->acquire(conn, &a, &r, &err);
  bt_watch_start(&wt, w, name, 5000000, NULL, NULL);
  t0 = mono();
  ops->interrupt(w);
  bt_watch_join(&wt);
  ops->close(w);
  w = NULL;
  double d = mono() - t0;
  check(rc == GM_OK && wt.rc == GM_ERR && d < 0.05,
        "interrupt() ends a watch, and close() returns, in %.1f ms",
        d * 1000);
  ops->release(conn, name, "node-a", 0, r.token, &err);
  close_conn(cfg, conn);
  close_conn(cfg2, conn2);
  close_conn(cfgw, w);
}

/* A master that does not hold the user lock (it lost it with a
 * connection): watch says "may have changed" at once, which the core takes
 * as one read (it watches that lock again only after a new read). */
/* The new master takes its user lock before it writes the grant, so a
 * follower that reads the grant finds the user lock held and its watch
 * waits (a watch that found it free would return at once, and the
 * follower would miss the handover's wake-up until its retry). A
 * transaction of the test holds the row's lock, so that the acquire's
 * write waits: meanwhile the user lock is already the new master's. */
typedef struct acquirer {
  void *conn;
  gm_acquire_req q;
  gm_row r;
  int rc, done;
} acquirer;

static void *acquire_main(void *arg) {
  acquirer *a = arg;
  gm_error err;
  a->rc = ops->acquire(a->conn, &a->q, &a->r, &err);
  __atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void *sql_main(void *q) {
  sql(q, NULL, 0);
  return NULL;
}

static void test_wakeup_before_row(void) {
  void *cfg, *conn;
  gm_error err;
  gm_row r;
  char name[128], key[64], marker[64], q[512];
  lock_name(name, sizeof name, "order");
  user_lock(key, sizeof key, name);
  snprintf(marker, sizeof marker, "%s-rowlock", run);
  if (open_with(NULL, NULL, &cfg, &conn, &err) != GM_OK) {
    check(0, "user lock first: open (%s)", err.msg);
    return;
  }
  gm_acquire_req a0 = req(name, "node-a", 0, 0, 0, 60000000);
  int rc = ops->acquire(conn, &a0, &r, &err);
  if (rc == GM_OK) rc = ops->release(conn, name, "node-a", 0, r.token, &err);
  check(rc == GM_OK && !used(key), "user lock first: a free row");
  snprintf(q, sizeof q,
           "BEGIN; SELECT 1 FROM gomaster_locks WHERE name = '%s' FOR UPDATE;"
           " DO GET_LOCK('%s', 0); DO SLEEP(1); COMMIT",
           name, marker);
  pthread_t th, ta;
  pthread_create(&th, NULL, sql_main, q);
  double t0 = mono();
  while (!used(marker) && mono() - t0 < 5) {
  }
  acquirer ac = {.conn = conn, .q = req(name, "node-b", 1, r.token, 0,
                                        60000000)};
  pthread_create(&ta, NULL, acquire_main, &ac);
  int held = 0;
  t0 = mono();
  while (!held && !__atomic_load_n(&ac.done, __ATOMIC_SEQ_CST) &&
         mono() - t0 < 0.8)
    held = used(key);
  int early = !__atomic_load_n(&ac.done, __ATOMIC_SEQ_CST);
  pthread_join(ta, NULL);
  pthread_join(th, NULL);
  check(held && early,
        "user lock first: the new master holds it while its write waits "
        "for the row (held %d, write still waiting %d)", held, early);
  check(ac.rc == GM_OK && used(key), "user lock first: then the grant");
  ops->release(conn, name, "node-b", 0, ac.r.token, &err);
  check(!used(key), "user lock first: freed with the release");
  close_conn(cfg, conn);
}

static void test_wakeup_free(void) {
  void *cfg, *cfg2, *conn, *conn2;
  gm_error err;
  gm_row r;
  char name[128];
  lock_name(name, sizeof name, "nospin");

  if (open_two("no spin", &cfg, &conn, &cfg2, &conn2)) return;
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 60000000);
  int rc = ops->acquire(conn, &a, &r, &err);
  ops->close(conn); /* the row stays held; its user lock goes */
  conn = NULL;
  double t0 = mono();
  rc = rc == GM_OK ? ops->watch(conn2, name, 3000000, NULL, &err) : rc;
  check(rc == GM_OK && mono() - t0 < 0.5,
        "watch of a held row whose master lost its user lock: GM_OK at "
        "once (%.1f ms)", (mono() - t0) * 1000);
  close_conn(cfg, conn);
  close_conn(cfg2, conn2);
}

/* The watch's connection killed: watch fails (the core reopens it, quietly,
 * with its backoff); the main connection never notices. */
static void test_wakeup_reconnect(void) {
  void *cfg, *cfg2, *conn, *conn2;
  gm_error err;
  gm_row r, o;
  char name[128];
  lock_name(name, sizeof name, "rewait");

  if (open_two("reconnect", &cfg, &conn, &cfg2, &conn2)) return;
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 60000000);
  int rc = ops->acquire(conn, &a, &r, &err);
  bt_watch wt;
  bt_watch_start(&wt, conn2, name, 5000000, NULL, NULL);
  /* every session waiting so (a closed backend's may linger up to a wait) */
  char kill[1024];
  rc = rc == GM_OK
           ? sql("SELECT GROUP_CONCAT('KILL ', ID, ';' SEPARATOR ' ') "
                 "FROM information_schema.PROCESSLIST "
                 "WHERE INFO LIKE '%IS_FREE_LOCK(?%' AND ID <> CONNECTION_ID()",
                 kill, sizeof kill)
           : rc;
  check(rc == GM_OK && strncmp(kill, "KILL ", 5) == 0 &&
            sql(kill, NULL, 0) == GM_OK,
        "the watch's connection killed (%s)", kill);
  bt_watch_join(&wt);
  check(wt.rc == GM_ERR, "watch: GM_ERR (%d)", wt.rc);
  rc = ops->observe(conn, name, &o, &err);
  check(rc == GM_OK, "the main connection goes on");
  ops->release(conn, name, "node-a", 0, r.token, &err);
  close_conn(cfg, conn);
  close_conn(cfg2, conn2);
}

/* No token past INT64_MAX: force_release refuses rather than wrap. */
static void test_force_token_limit(void) {
  void *cfg, *conn;
  gm_error err;
  gm_row r;
  char name[128], q[512];
  lock_name(name, sizeof name, "force-max");
  if (open_with(NULL, NULL, &cfg, &conn, &err) != GM_OK) {
    check(0, "open for the token limit: %s", err.msg);
    return;
  }
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
  int rc = ops->acquire(conn, &a, &r, &err);
  snprintf(q, sizeof q,
           "UPDATE gomaster_locks SET token = 9223372036854775807"
           " WHERE name = '%s'", name);
  rc = rc == GM_OK ? sql(q, NULL, 0) : rc;
  rc = rc == GM_OK ? ops->force_release(conn, name, 0, &r, &err) : GM_ERR;
  check(rc == GM_NOT, "force_release of a lock at token INT64_MAX: GM_NOT");
  rc = ops->observe(conn, name, &r, &err);
  check(rc == GM_OK && r.token == 9223372036854775807ull &&
            strcmp(r.owner, "node-a") == 0,
        "and the row is unchanged (token %llu)", (unsigned long long)r.token);
  close_conn(cfg, conn);
}

/* ---- tables made beforehand --------------------------------------------- */

#define PREMADE_COLUMNS(times, token, owner)                                  \
  " (name VARBINARY(191) NOT NULL PRIMARY KEY, owner " owner                  \
  " NOT NULL DEFAULT '', token " token " NOT NULL,"                           \
  " version VARCHAR(127) NOT NULL DEFAULT '', acquired_at " times             \
  " NOT NULL, renewed_at " times " NOT NULL, expires_at " times " NOT NULL"
#define PREMADE_DONE                                                          \
  ", done_at DATETIME(6) NULL, done_by VARBINARY(127) NOT NULL DEFAULT '',"  \
  " done_token BIGINT NOT NULL DEFAULT 0, result TEXT NULL,"                 \
  " instance BIGINT UNSIGNED NOT NULL DEFAULT 0"

/* Opens table (made by sql_text first); GM_OK or GM_ERR with err. */
static int open_premade(const char *table, const char *sql_text,
                        gm_error *err) {
  char text[2048], drop[128];
  void *cfg, *conn;
  snprintf(drop, sizeof drop, "DROP TABLE IF EXISTS %s;", table);
  snprintf(text, sizeof text, "%s CREATE TABLE %s %s", drop, table, sql_text);
  if (sql(text, NULL, 0) != GM_OK) {
    gm_seterr(err, GM_E_DB, "the test could not make table %s", table);
    return -1;
  }
  int rc = open_with("table", table, &cfg, &conn, err);
  if (rc == GM_OK) {
    char name[128];
    gm_row r;
    lock_name(name, sizeof name, "premade");
    gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
    rc = ops->acquire(conn, &a, &r, err);
    if (rc == GM_OK)
      rc = ops->renew(conn, name, "node-a", r.instance, r.token, 5000000, &r, err);
  }
  close_conn(cfg, conn);
  sql(drop, NULL, 0);
  return rc;
}

static void test_premade_tables(void) {
  static const struct {
    const char *table, *columns, *names, *expects, *what;
  } refused[] = {
      {"gm_ctest_seconds",
       PREMADE_COLUMNS("DATETIME", "BIGINT UNSIGNED", "VARBINARY(127)") ")",
       "column 'acquired_at'", "DATETIME(6)", "whole-second DATETIME columns"},
      {"gm_ctest_ts3",
       PREMADE_COLUMNS("TIMESTAMP(3)", "BIGINT UNSIGNED", "VARBINARY(127)")
       ")", "column 'acquired_at'", "TIMESTAMP(6)", "TIMESTAMP(3) columns"},
      {"gm_ctest_int",
       PREMADE_COLUMNS("DATETIME(6)", "INT UNSIGNED", "VARBINARY(127)") ")",
       "column 'token'", "BIGINT", "a 32-bit token"},
      {"gm_ctest_narrow",
       PREMADE_COLUMNS("DATETIME(6)", "BIGINT UNSIGNED", "VARCHAR(20)") ")",
       "column 'owner'", "VARBINARY(127)", "an owner too narrow for an id"},
  };
  gm_error err;
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    int rc = open_premade(refused[i].table, refused[i].columns, &err);
    check(rc == GM_ERR && strstr(err.msg, refused[i].names) &&
              strstr(err.msg, refused[i].expects),
          "a table with %s is refused naming the column and the type: %s",
          refused[i].what, err.msg);
  }
  /* no upgrade path: a table without the completion record or the
   * instance key (made before they existed) is refused, naming one */
  int rc = open_premade("gm_ctest_old", PREMADE_COLUMNS("DATETIME(6)",
                        "BIGINT UNSIGNED", "VARBINARY(127)") ")", &err);
  check(rc == GM_ERR && strstr(err.msg, "has no column 'done_at'"),
        "a table without done_* and instance is refused naming the column: "
        "%s", err.msg);
  rc = open_premade("gm_ctest_premade",
                    PREMADE_COLUMNS("TIMESTAMP(6)", "BIGINT", "VARCHAR(200)")
                    PREMADE_DONE ")", &err);
  check(rc == GM_OK, "a right table made beforehand (TIMESTAMP(6), BIGINT, "
                     "VARCHAR) is used: %s",
        rc == GM_OK ? "" : err.msg);
  rc = open_premade("gm_ctest_extra",
                    PREMADE_COLUMNS("DATETIME(6)", "BIGINT UNSIGNED",
                                    "VARBINARY(127)") PREMADE_DONE
                    ", note TEXT NULL, created DATETIME NULL,"
                    " hits INT NOT NULL DEFAULT 0)",
                    &err);
  check(rc == GM_OK, "a table with someone else's extra columns is used: %s",
        rc == GM_OK ? "" : err.msg);
}

/* Rows edited by hand in a table whose columns allow NULL: each observe
 * is GM_E_ROW naming the column and the lock. */
static void test_unreadable(void) {
  static const struct {
    const char *what, *set, *col;
  } cases[] = {
      {"owner NULL with a future expiry",
       "owner = NULL, expires_at = '9999-12-31'", "'owner'"},
      {"token NULL", "token = NULL", "'token'"},
      {"expires_at NULL", "expires_at = NULL", "'expires_at'"},
      {"token above the largest", "token = 18446744073709551615", "'token'"},
  };
  char q[1024], name[128];
  int made = sql("DROP TABLE IF EXISTS gm_ctest_hand;"
                 "CREATE TABLE gm_ctest_hand (name VARBINARY(191) PRIMARY "
                 "KEY, owner VARBINARY(127) NULL, token BIGINT UNSIGNED NULL,"
                 " version VARBINARY(127) NULL, acquired_at DATETIME(6) NULL,"
                 " renewed_at DATETIME(6) NULL, expires_at DATETIME(6) NULL,"
                 " done_at DATETIME(6) NULL, done_by VARBINARY(127) NOT NULL"
                 " DEFAULT '', done_token BIGINT UNSIGNED NOT NULL DEFAULT 0,"
                 " result VARBINARY(255) NOT NULL DEFAULT '', instance BIGINT"
                 " UNSIGNED NOT NULL DEFAULT 0)",
                 NULL, 0);
  check(made == GM_OK, "unreadable: a table made by hand");
  void *cfg, *conn;
  gm_error err = {0};
  if (made != GM_OK ||
      open_with("table", "gm_ctest_hand", &cfg, &conn, &err) != GM_OK) {
    check(0, "unreadable: open (%s)", err.msg);
    return;
  }
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char what[16];
    snprintf(what, sizeof what, "hand%zu", i);
    lock_name(name, sizeof name, what);
    snprintf(q, sizeof q,
             "INSERT INTO gm_ctest_hand (name, owner, token, version,"
             " acquired_at, renewed_at, expires_at) VALUES ('%s', 'x', 3, '',"
             " UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), UTC_TIMESTAMP(6));"
             "UPDATE gm_ctest_hand SET %s WHERE name = '%s'",
             name, cases[i].set, name);
    gm_row r;
    int rc = sql(q, NULL, 0) == GM_OK ? ops->observe(conn, name, &r, &err)
                                      : GM_OK;
    check(rc == GM_ERR && err.code == GM_E_ROW &&
              strstr(err.msg, cases[i].col) && strstr(err.msg, name),
          "unreadable: %s is refused naming the column and the lock (%s)",
          cases[i].what, rc == GM_ERR ? err.msg : "read");
  }
  close_conn(cfg, conn);
}

int main(void) {
  int st = bt_init(&gm_mysql_ops, "GOMASTER_TEST_MYSQL_URL",
                   gm_mysql_ops.url_raw, "mariadb");
  if (st >= 0) return st;

  test_options();
  test_connect_errors();
  test_host_list();

  void *cfg, *conn, *cfg2, *conn2;
  if (bt_open_pair(&cfg, &conn, &cfg2, &conn2) == GM_OK) {
    test_renewals(conn, conn2);
    test_names(conn, conn2);
    bt_complete_and_force(conn, conn2, "migrated to 'v2' \\ ok");
  }
  close_conn(cfg, conn);
  close_conn(cfg2, conn2);
  test_custom_table();
  test_premade_tables();
  test_force_token_limit();
  test_unreadable();
  test_thread();
  test_wakeup();
  test_wakeup_before_row();
  test_wakeup_free();
  test_wakeup_reconnect();
  /* set by a runner that started the server with tests/servers/mariadb.sh */
  bt_with_dir("GOMASTER_TEST_MARIADB_DIR", test_server_events);
  return bt_done();
}
