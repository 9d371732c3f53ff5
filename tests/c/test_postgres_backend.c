/*
 * test_postgres_backend.c: drives gm_postgres_ops directly against the
 * PostgreSQL server named by GOMASTER_TEST_POSTGRES_URL, and through the
 * PgBouncer of GOMASTER_TEST_PGBOUNCER_URL (tests/servers/postgres.sh starts
 * both). SQL of the test's own (tables made beforehand, rows an operator
 * spoiled) goes through psql. One line per check, then "N passed, N failed".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_test.h"

extern const gm_backend_ops gm_postgres_ops;

/* url with "&extra" (or "?extra") appended; extra NULL: as it is. */
static int open_url(const char *base, const char *extra, void **cfg,
                    void **conn, gm_error *err) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s%s%s", base,
           !extra ? "" : strchr(base, '?') ? "&" : "?", extra ? extra : "");
  gm_url u;
  *cfg = *conn = NULL;
  memset(err, 0, sizeof *err);
  if (gm_url_parse(buf, ops->url_raw, &u, err)) return GM_ERR;
  int rc = ops->parse(u.kv, u.n, cfg, err);
  gm_url_free(&u);
  if (rc) return GM_ERR;
  return ops->open(*cfg, conn, err);
}

/* The table form with the test server's parts, key set to value. */
static int parse_table(const char *key, const char *value, void **cfg,
                       gm_error *err) {
  static const char *const from[] = {"user", "password", "host", "port",
                                     "database"};
  gm_kv kv[8];
  size_t n = 0;
  for (size_t i = 0; i < 5; i++) {
    const char *v = gm_kv_get(url.kv, url.n, from[i]);
    if (v && !(key && strcmp(key, from[i]) == 0)) kv[n++] = (gm_kv){from[i], v};
  }
  if (key) kv[n++] = (gm_kv){key, value};
  memset(err, 0, sizeof *err);
  *cfg = NULL;
  return ops->parse(kv, n, cfg, err);
}

/* Runs SQL on the test server with psql; 0 when it succeeded. */
static int psql(const char *sql) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "psql -X -q -v ON_ERROR_STOP=1 '%s' >/dev/null 2>&1",
           test_url);
  FILE *f = popen(cmd, "w");
  if (!f) return -1;
  fputs(sql, f);
  return pclose(f);
}

static int open_test_url(void **cfg, void **conn, gm_error *err) {
  return open_url(test_url, NULL, cfg, conn, err);
}

static void test_options(void) {
  void *cfg, *conn;
  gm_error err;
  char buf[512];
  gm_url u;

  gm_url_parse(test_url, 1, &u, &err);
  check(ops->parse(u.kv, u.n, &cfg, &err) == GM_OK, "parse the test URL");
  gm_url_free(&u);
  ops->describe(cfg, buf, sizeof buf);
  check(strncmp(buf, "postgres://gomaster@127.0.0.1:", 30) == 0 &&
            strstr(buf, "/gomaster_test?table=gomaster_locks") != NULL,
        "describe: %s", buf);
  check(strstr(buf, password()) == NULL && strstr(buf, "%40") == NULL,
        "describe: no password");
  ops->free_cfg(cfg);

  int rc = open_url(test_url, "colour=blue", &cfg, &conn, &err);
  check_error("unknown URL key", rc, &err, GM_E_URL, "\"colour\"");
  close_conn(cfg, conn);
  rc = open_url(test_url, "table=x\"; DROP TABLE y; --", &cfg, &conn, &err);
  check_error("table name with a quote", rc, &err, GM_E_ARG, "'table'");
  close_conn(cfg, conn);
  rc = open_url(test_url, "listen=maybe", &cfg, &conn, &err);
  check_error("listen=maybe", rc, &err, GM_E_ARG, "'listen'");
  close_conn(cfg, conn);
  rc = open_url(test_url, "statement_timeout=soon", &cfg, &conn, &err);
  check_error("statement_timeout=soon", rc, &err, GM_E_ARG,
              "'statement_timeout'");
  close_conn(cfg, conn);
  rc = parse_table("colour", "blue", &cfg, &err);
  check_error("unknown option of the table form", rc, &err, GM_E_ARG,
              "'colour'");
  ops->free_cfg(cfg);
  rc = parse_table("sslmode", "disable", &cfg, &err);
  check(rc == GM_OK, "libpq's keywords in the table form (sslmode)");
  ops->free_cfg(cfg);

  /* libpq quotes the whole URL in some parse errors: the password goes */
  const char *bad = "postgresql://gomaster:S3cr%40tPass@[::1/db";
  rc = open_url(bad, NULL, &cfg, &conn, &err);
  check(rc == GM_ERR && err.code == GM_E_URL && strstr(err.msg, "IPv6"),
        "a malformed URL is refused: %s", err.msg);
  check(strstr(err.msg, "S3cr") == NULL && strstr(err.msg, "tPass") == NULL,
        "... without its password");
  close_conn(cfg, conn);
}

static void test_connect_errors(void) {
  void *cfg, *conn = NULL;
  gm_error err;
  char pw[128];

  snprintf(pw, sizeof pw, "%s-wrong", password());
  int rc = parse_table("password", pw, &cfg, &err);
  if (rc == GM_OK) rc = ops->open(cfg, &conn, &err);
  check_error("wrong password", rc, &err, GM_E_AUTH, "authentication failed");
  check(strstr(err.msg, pw) == NULL, "wrong password: not in message");
  close_conn(cfg, conn);

  conn = NULL;
  rc = parse_table("database", "gomaster_nosuchdb", &cfg, &err);
  if (rc == GM_OK) rc = ops->open(cfg, &conn, &err);
  check_error("unknown database", rc, &err, GM_E_CONNECT, "gomaster_nosuchdb");
  close_conn(cfg, conn);

  conn = NULL;
  double t0 = mono();
  rc = parse_table("port", "1", &cfg, &err);
  if (rc == GM_OK) rc = ops->open(cfg, &conn, &err);
  check_error("closed port", rc, &err, GM_E_CONNECT, "cannot connect to");
  check(mono() - t0 < 2.5, "closed port: fails within the connect timeout");
  close_conn(cfg, conn);
}

/* What PostgreSQL's grant does of its own (the rest of acquire, renew,
 * release, takeover, tokens, instance keys and the grant's times is
 * test_backend.c's): renewals kept to the microsecond. */
static void test_times(void *conn, void *conn2) {
  gm_error err;
  gm_row r, o;
  char name[128];
  const int64_t lease = 5000000;
  lock_name(name, sizeof name, "basic");

  gm_acquire_req a = req(name, "node-a", 0, 0, 0, lease);
  int rc = ops->acquire(conn, &a, &r, &err);
  rc = rc == GM_OK
           ? ops->renew(conn2, name, "node-a", inst("node-a"), 1, lease, &o,
                        &err)
           : rc;
  rc = rc == GM_OK
           ? ops->renew(conn, name, "node-a", inst("node-a"), 1, lease, &r,
                        &err)
           : rc;
  check(rc == GM_OK && r.renewed_at > o.renewed_at,
        "renewals keep microseconds (%lld µs apart)",
        (long long)(r.renewed_at - o.renewed_at));
  ops->release(conn, name, "node-a", inst("node-a"), 1, &err);
}

/* The largest token: never wrapped, never a float. */
static void test_token_limit(void *conn, void *conn2) {
  gm_error err;
  gm_row r, o;
  char name[128], sql[512];
  lock_name(name, sizeof name, "limit");
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
  ops->acquire(conn, &a, &r, &err);
  snprintf(sql, sizeof sql,
           "UPDATE gomaster_locks SET owner = '', token = 9223372036854775806, "
           "expires_at = clock_timestamp() "
           "WHERE name = '%s'", name);
  check(psql(sql) == 0, "token set to INT64_MAX - 1 by hand");
  gm_acquire_req b = req(name, "node-b", 1, 9223372036854775806u, 0, 5000000);
  int rc = ops->acquire(conn2, &b, &r, &err);
  check(rc == GM_OK && r.token == 9223372036854775807u,
        "granted with token INT64_MAX: %llu", (unsigned long long)r.token);
  ops->release(conn2, name, "node-b", inst("node-b"), r.token, &err);
  b = req(name, "node-a", 1, 9223372036854775807u, 0, 5000000);
  rc = ops->acquire(conn, &b, &r, &err);
  check_error("grant past INT64_MAX", rc, &err, GM_E_DB, "largest");
  rc = ops->force_release(conn, name, 0, &r, &err);
  check_error("force release past INT64_MAX", rc, &err, GM_E_DB, "largest");
  rc = ops->observe(conn, name, &o, &err);
  check(rc == GM_OK && o.token == 9223372036854775807u && o.owner[0] == '\0',
        "the row keeps INT64_MAX, free");
  b = req(name, "node-a", 0, 0, 9223372036854775807u, 5000000);
  rc = ops->acquire(conn, &b, &r, &err);
  check_error("min_token INT64_MAX", rc, &err, GM_E_DB, "largest");
}

/* An operator's edit: owner '' but a lease still running. */
static void test_running_release(void *conn, void *conn2) {
  gm_error err;
  gm_row r, o;
  char name[128], sql[512];
  lock_name(name, sizeof name, "edited");
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 60000000);
  ops->acquire(conn, &a, &r, &err);
  snprintf(sql, sizeof sql,
           "UPDATE gomaster_locks SET owner = '', expires_at = "
           "clock_timestamp() + interval '300 milliseconds' WHERE name = '%s'",
           name);
  check(psql(sql) == 0, "owner set to '' by hand, the lease left running");
  gm_acquire_req b = req(name, "node-b", 1, 1, 0, 5000000);
  int rc = ops->acquire(conn2, &b, &r, &err);
  check(rc == GM_NOT, "a released row whose lease runs is not taken");
  int polls = 0;
  do {
    rc = ops->observe(conn2, name, &o, &err);
  } while (rc == GM_OK && o.now < o.expires_at && ++polls < 100000);
  rc = ops->acquire(conn2, &b, &r, &err);
  check(rc == GM_OK && r.token == 2, "... until it ends on the server's clock");
}

static void test_names(void *conn) {
  static const char *const odd[] = {"it's a \"quoted\" {name}", "back\\slash",
                                    "ünïcødé 锁", "Case", "case", "trail ",
                                    "comma,brace}"};
  gm_error err;
  gm_row r;
  char name[GM_NAME_MAX + 8];
  gm_renew_req q[7];
  int ok = 1;
  for (size_t i = 0; i < 7; i++) {
    lock_name(name, sizeof name, odd[i]);
    gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
    ok = ok && ops->acquire(conn, &a, &r, &err) == GM_OK;
  }
  check(ok, "odd lock names are taken, each its own row");
  static char names[7][GM_NAME_MAX];
  for (size_t i = 0; i < 7; i++) {
    lock_name(names[i], sizeof names[i], odd[i]);
    q[i] = (gm_renew_req){.name = names[i], .owner = "node-a", .token = 1,
                          .instance = inst("node-a"),
                          .lease_us = 5000000};
  }
  int rc = ops->renew_many(conn, q, 7, &err);
  ok = rc == GM_OK;
  for (size_t i = 0; i < 7; i++) ok = ok && q[i].rc == GM_OK;
  check(ok, "renew_many with quotes, braces and commas in names: %s",
        rc ? err.msg : "");
  /* the widest name: test_backend; a longer one: test_core */
}

/* changed() on conn within bound seconds: polled as the core does. */
static int changed_within(void *conn, double bound, gm_error *err) {
  double t0 = mono();
  do {
    int rc = ops->changed(conn, err);
    if (rc != GM_NOT) return rc;
    nap_ms(2);
  } while (mono() - t0 < bound);
  return GM_NOT;
}

static void test_wakeup(void *conn, void *conn2) {
  gm_error err;
  gm_row r;
  char name[128];
  lock_name(name, sizeof name, "wake");
  while (ops->changed(conn2, &err) == GM_OK) {} /* what came before */
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 60000000);
  ops->acquire(conn, &a, &r, &err);
  ops->renew(conn, name, "node-a", inst("node-a"), 1, 60000000, &r, &err);
  check(changed_within(conn2, 0.2, &err) == GM_NOT,
        "no wake-up for a grant or a renewal");
  double t0 = mono();
  ops->release(conn, name, "node-a", inst("node-a"), 1, &err);
  int rc = changed_within(conn2, 2, &err);
  check(rc == GM_OK, "a release wakes the other connection (%.1f ms)",
        (mono() - t0) * 1000);
  check(ops->changed(conn2, &err) == GM_NOT, "... once");
  check(ops->release(conn, name, "node-a", inst("node-a"), 1, &err) == GM_NOT &&
            changed_within(conn2, 0.2, &err) == GM_NOT,
        "a release that did not take effect wakes nobody");
  ops->acquire(conn, &(gm_acquire_req){.name = name, .owner = "node-a",
                                       .version = "", .lease_us = 60000000,
                                       .expect_exists = 1, .expect_token = 1,
                                       .instance = inst("node-a")},
               &r, &err);
  ops->force_release(conn, name, 0, &r, &err);
  check(changed_within(conn2, 2, &err) == GM_OK,
        "a forced release wakes the other connection");
}

static void test_unreadable(void *conn) {
  gm_error err;
  gm_row r;
  char name[128], sql[512];
  static const struct {
    const char *set, *column;
  } bad[] = {{"token = -5", "token"},
             {"expires_at = 'infinity'", "expires_at"},
             {"owner = NULL", "owner"},
             {"acquired_at = NULL", "acquired_at"}};
  check(psql("ALTER TABLE gomaster_locks ALTER owner DROP NOT NULL, "
             "ALTER acquired_at DROP NOT NULL") == 0,
        "NOT NULL dropped by hand");
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(name, sizeof name, "%s-unreadable-%zu", run, i);
    gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
    ops->acquire(conn, &a, &r, &err);
    snprintf(sql, sizeof sql, "UPDATE gomaster_locks SET %s WHERE name = '%s'",
             bad[i].set, name);
    psql(sql);
    int rc = ops->observe(conn, name, &r, &err);
    check(rc == GM_ERR && err.code == GM_E_ROW &&
              strstr(err.msg, bad[i].column) && strstr(err.msg, name),
          "a row with %s cannot be read (GM_E_ROW, naming the column and the "
          "lock): %s", bad[i].set, err.msg);
    check(ops->observe(conn, "never-made", &r, &err) == GM_OK,
          "... and the connection is fine");
  }
  psql("DELETE FROM gomaster_locks WHERE owner IS NULL OR acquired_at IS NULL;"
       "ALTER TABLE gomaster_locks ALTER owner SET NOT NULL, "
       "ALTER acquired_at SET NOT NULL");
}

static void test_wrong_table(void) {
  static const struct {
    const char *ddl, *column, *expected;
  } bad[] = {
      {"expires_at timestamptz(0)", "expires_at", "timestamptz"},
      {"expires_at timestamp", "expires_at", "timestamptz"},
      {"token integer", "token", "bigint"},
  };
  char sql[1024];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(sql, sizeof sql,
             "DROP TABLE IF EXISTS gm_ctest_wrong; CREATE TABLE gm_ctest_wrong "
             "(name text PRIMARY KEY, owner text NOT NULL DEFAULT '', "
             "version text NOT NULL DEFAULT '', acquired_at timestamptz, "
             "renewed_at timestamptz, done_at timestamptz, done_by text, "
             "done_token bigint, result text, %s%s)",
             bad[i].ddl, strcmp(bad[i].column, "token") ? ", token bigint"
                                                        : ", expires_at timestamptz");
    check(psql(sql) == 0, "table made beforehand with %s", bad[i].ddl);
    void *cfg, *conn;
    gm_error err;
    int rc = open_url(test_url, "table=gm_ctest_wrong", &cfg, &conn, &err);
    check(rc == GM_ERR && strstr(err.msg, bad[i].column) &&
              strstr(err.msg, bad[i].expected),
          "refused, naming the column and the type expected: %s", err.msg);
    close_conn(cfg, conn);
  }
  psql("DROP TABLE gm_ctest_wrong");
  void *cfg, *conn;
  gm_error err;
  psql("DROP TABLE IF EXISTS gm_ctest_custom");
  int rc = open_url(test_url, "table=gm_ctest_custom", &cfg, &conn, &err);
  check(rc == GM_OK, "a missing table is created: %s", rc ? err.msg : "");
  close_conn(cfg, conn);
  rc = open_url(test_url, "table=gm_ctest_custom", &cfg, &conn, &err);
  check(rc == GM_OK, "... and accepted as it is the next time");
  close_conn(cfg, conn);
}

/* The core's stop(): another thread pokes the call in progress. */
static void *interrupter(void *conn) {
  nap_ms(200);
  ops->interrupt(conn);
  return NULL;
}

static void test_server_events(const char *dir) {
  void *cfg, *conn, *cfg2, *conn2;
  gm_error err;
  gm_row r, o;
  char name[128];
  lock_name(name, sizeof name, "events");

  int rc = open_url(test_url, "statement_timeout=1", &cfg, &conn, &err);
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 60000000);
  check(rc == GM_OK && ops->acquire(conn, &a, &r, &err) == GM_OK,
        "lock taken before the pause");
  check(server(dir, "pause") == 0, "every server process paused (SIGSTOP)");
  double t0 = mono();
  rc = ops->renew(conn, name, "node-a", inst("node-a"), 1, 60000000, &r, &err);
  double took = mono() - t0;
  check(rc == GM_ERR && err.code == GM_E_CONNECT &&
            strstr(err.msg, "statement_timeout"),
        "renew on a paused server fails: %s", err.msg);
  check(took > 0.9 && took < 1.5, "... after statement_timeout = 1 s (%.2f s)",
        took);
  ops->close(conn);
  conn = NULL;
  check(server(dir, "resume") == 0 && ops->open(cfg, &conn, &err) == GM_OK &&
            server(dir, "pause") == 0,
        "a new connection, then paused again");
  pthread_t th;
  pthread_create(&th, NULL, interrupter, conn);
  t0 = mono();
  rc = ops->renew(conn, name, "node-a", inst("node-a"), 1, 60000000, &r, &err);
  took = mono() - t0;
  pthread_join(th, NULL);
  check(rc == GM_ERR && took < 0.6,
        "interrupt() from another thread ends the call at once (%.2f s): %s",
        took, err.msg);
  ops->close(conn);
  conn = NULL;
  bt_open_paused(cfg, 3.5, "connect_timeout");
  check(server(dir, "resume") == 0, "server resumed (SIGCONT)");
  rc = ops->open(cfg, &conn, &err);
  check(rc == GM_OK && ops->renew(conn, name, "node-a", inst("node-a"), 1, 60000000, &r,
                                  &err) == GM_OK,
        "after resume: reconnect and renew");

  /* an operator ends every session of the database */
  rc = open_url(test_url, NULL, &cfg2, &conn2, &err);
  check(psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
             "datname = 'gomaster_test' AND pid <> pg_backend_pid()") == 0,
        "pg_terminate_backend of every connection");
  rc = ops->renew(conn, name, "node-a", inst("node-a"), 1, 60000000, &r, &err);
  check(rc == GM_ERR && err.code == GM_E_CONNECT,
        "the killed session's renew fails as a connection error: %s", err.msg);
  check(changed_within(conn2, 2, &err) == GM_ERR,
        "changed() on a killed session reports it: %s", err.msg);
  close_conn(cfg2, conn2);
  ops->close(conn);
  rc = ops->open(cfg, &conn, &err);
  check(rc == GM_OK && ops->renew(conn, name, "node-a", inst("node-a"), 1, 60000000, &r,
                                  &err) == GM_OK,
        "reconnect and renew after the sessions were killed");

  check(server(dir, "restart") == 0, "server restarted");
  rc = ops->observe(conn, name, &o, &err);
  check(rc == GM_ERR && err.code == GM_E_CONNECT,
        "the old connection reports the restart: %s", err.msg);
  ops->close(conn);
  rc = ops->open(cfg, &conn, &err);
  check(rc == GM_OK && ops->observe(conn, name, &o, &err) == GM_OK &&
            o.token == 1 && strcmp(o.owner, "node-a") == 0,
        "a new connection finds the lock as it was");
  ops->release(conn, name, "node-a", inst("node-a"), 1, &err);
  close_conn(cfg, conn);
}

static void test_pgbouncer(const char *bouncer) {
  void *cfg, *conn, *cfg2, *conn2;
  gm_error err;
  gm_row r;
  char name[128];
  lock_name(name, sizeof name, "bouncer");
  int rc = open_url(bouncer, NULL, &cfg, &conn, &err);
  check(rc == GM_OK, "open through PgBouncer (transaction mode): %s",
        rc ? err.msg : "");
  if (rc) return;
  open_url(bouncer, NULL, &cfg2, &conn2, &err);
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
  int ok = ops->acquire(conn, &a, &r, &err) == GM_OK;
  for (int i = 0; i < 20 && ok; i++)
    ok = ops->renew(conn, name, "node-a", inst("node-a"), 1, 5000000, &r, &err) == GM_OK &&
         ops->observe(conn2, name, &r, &err) == GM_OK && r.token == 1;
  ok = ok && ops->release(conn, name, "node-a", inst("node-a"), 1, &err) == GM_OK;
  gm_acquire_req b = req(name, "node-b", 1, 1, 0, 5000000);
  ok = ok && ops->acquire(conn2, &b, &r, &err) == GM_OK && r.token == 2;
  check(ok, "acquire, renew, observe, release, takeover through PgBouncer: %s",
        ok ? "" : err.msg);
  rc = ops->changed(conn2, &err);
  check(rc == GM_ERR && strstr(err.msg, "pooler") &&
            strstr(err.msg, password()) == NULL,
        "changed() says once that LISTEN cannot work: %s", err.msg);
  check(ops->changed(conn2, &err) == GM_NOT, "... and then polls quietly");
  close_conn(cfg, conn);
  close_conn(cfg2, conn2);
  rc = open_url(bouncer, "listen=0", &cfg, &conn, &err);
  check(rc == GM_OK && ops->changed(conn, &err) == GM_NOT,
        "listen=0: nothing to say");
  close_conn(cfg, conn);
}

int main(void) {
  /* split as libpq would not: user, password, host, port, database */
  int st = bt_init(&gm_postgres_ops, "GOMASTER_TEST_POSTGRES_URL", 0,
                   "postgres");
  if (st >= 0) return st;

  test_options();
  test_connect_errors();
  void *cfg, *conn, *cfg2, *conn2;
  bt_open = open_test_url;
  if (bt_open_pair(&cfg, &conn, &cfg2, &conn2) == GM_OK) {
    test_times(conn, conn2);
    test_token_limit(conn, conn2);
    bt_complete_and_force(conn, conn2, "it's \"done\" \\ ok");
    test_running_release(conn, conn2);
    test_names(conn);
    bt_renew_many(conn, conn2, "statement", 0);
    test_wakeup(conn, conn2);
    test_unreadable(conn);
  }
  close_conn(cfg, conn);
  close_conn(cfg2, conn2);
  test_wrong_table();
  const char *bouncer = getenv("GOMASTER_TEST_PGBOUNCER_URL");
  if (bouncer && *bouncer)
    test_pgbouncer(bouncer);
  else
    printf("skipped: PgBouncer (GOMASTER_TEST_PGBOUNCER_URL not set)\n");
  bt_with_dir("GOMASTER_TEST_POSTGRES_DIR", test_server_events);
  return bt_done();
}
