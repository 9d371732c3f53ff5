/* backend_test.h: what the per-backend C tests (test_mysql_backend.c,
 * test_postgres_backend.c, test_redis_backend.c; test_mongo_backend.c and
 * the conformance suite test_backend.c the clock, naps and watch helper)
 * share: the test URL read from the environment, lock names unique to the
 * run, opening a backend with one option changed, errors that must name
 * their cause and hide the password, the server script (pause, resume,
 * restart), a watch on a thread of its own (given a row or not), and the
 * cases whose checks are the same on each of them (complete and
 * force_release, a batch renewal of 1000 locks).
 *
 * What every backend must do alike (acquire, renew, release, observe,
 * takeover, tokens, instance keys, a vanished row, the clock, a batch of
 * three, the wake-up and watch) is tests/c/test_backend.c's, the
 * conformance suite: a per-backend test keeps only what is its database's
 * own.
 *
 * A per-backend test calls bt_init first and returns bt_done() last. A
 * test whose backend writes no instance key in its requests (MySQL's
 * passes 0, as a tool that knows only the id does) defines BT_NO_INSTANCE
 * before including this. */
#ifndef GOMASTER_TEST_BACKEND_TEST_H
#define GOMASTER_TEST_BACKEND_TEST_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "url.h"

/* Each helper may go unused in one test. */
#define BT_FN static __attribute__((unused))

static const gm_backend_ops *ops; /* the backend under test */
static const char *test_url;      /* the URL as the environment gives it */
static gm_url url;                /* ... and split into its options */
static char run[32]; /* makes this run's lock names unique on the server */
static const char *server_script; /* tests/servers/NAME.sh */

BT_FN const char *password(void) {
  const char *pw = gm_kv_get(url.kv, url.n, "password");
  return pw ? pw : "\x01 no password \x01";
}

BT_FN double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

BT_FN void nap_ms(double ms) {
  struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                        .tv_nsec = (long)((ms - (time_t)(ms / 1000) * 1000) *
                                          1e6)};
  nanosleep(&ts, NULL);
}

BT_FN void lock_name(char *buf, size_t len, const char *what) {
  snprintf(buf, len, "%s-%s", run, what);
}

/* Each owner's instance key (the core draws a random one per elector):
 * FNV-1a of the owner, in [1, 2^63). */
BT_FN uint64_t inst(const char *owner) {
#ifdef BT_NO_INSTANCE
  (void)owner;
  return 0;
#else
  uint64_t h = 14695981039346656037u;
  for (const unsigned char *p = (const unsigned char *)owner; *p; p++)
    h = (h ^ *p) * 1099511628211u;
  return (h >> 1) | 1;
#endif
}

BT_FN gm_acquire_req req(const char *name, const char *owner, int exists,
                          uint64_t expect, uint64_t min, int64_t lease_us) {
  return (gm_acquire_req){.name = name, .owner = owner, .version = "1.0",
                          .lease_us = lease_us, .expect_exists = exists,
                          .expect_token = expect, .min_token = min,
                          .instance = inst(owner)};
}

/* The URL's options with key set to value (value NULL: key removed). */
BT_FN int parse_with(const char *key, const char *value, void **cfg,
                      gm_error *err) {
  gm_kv kv[GM_URL_MAX_KV + 1];
  size_t n = 0;
  for (size_t i = 0; i < url.n; i++)
    if (!key || strcmp(url.kv[i].key, key) != 0) kv[n++] = url.kv[i];
  if (key && value) kv[n++] = (gm_kv){key, value};
  memset(err, 0, sizeof *err);
  return ops->parse(kv, n, cfg, err);
}

/* Opens a connection with one option changed; *cfg is for free_cfg. */
BT_FN int open_with(const char *key, const char *value, void **cfg,
                     void **conn, gm_error *err) {
  *conn = NULL;
  if (parse_with(key, value, cfg, err)) return GM_ERR;
  return ops->open(*cfg, conn, err);
}

BT_FN void close_conn(void *cfg, void *conn) {
  if (conn) ops->close(conn);
  if (cfg) ops->free_cfg(cfg);
}

/* The test URL parses, and describe() shows it from prefix on, with rest
 * in it and no password. */
BT_FN void bt_describe(const char *prefix, const char *rest) {
  void *cfg;
  gm_error err;
  char buf[512];
  check(parse_with(NULL, NULL, &cfg, &err) == GM_OK, "parse the test URL");
  ops->describe(cfg, buf, sizeof buf);
  check(strncmp(buf, prefix, strlen(prefix)) == 0 && strstr(buf, rest) != NULL,
        "describe: %s", buf);
  check(strstr(buf, password()) == NULL, "describe: no password");
  ops->free_cfg(cfg);
}

/* The test URL with key = value is refused, naming key. */
BT_FN void bt_refused(const char *key, const char *value) {
  void *cfg = NULL;
  gm_error err;
  char quoted[64];
  snprintf(quoted, sizeof quoted, "'%s'", key);
  int rc = parse_with(key, value, &cfg, &err);
  check(rc == GM_ERR && strstr(err.msg, quoted),
        "%s = %s refused naming it: %s", key, value, err.msg);
  if (rc == GM_OK) ops->free_cfg(cfg);
}

/* Opens a connection on the test URL as it is (a test may point it
 * elsewhere). */
BT_FN int bt_open_plain(void **cfg, void **conn, gm_error *err) {
  return open_with(NULL, NULL, cfg, conn, err);
}
static int (*bt_open)(void **cfg, void **conn, gm_error *err) = bt_open_plain;

/* Two connections on the test URL (two nodes'), each checked; GM_OK when
 * both opened. */
BT_FN int bt_open_pair(void **cfg, void **conn, void **cfg2, void **conn2) {
  gm_error err;
  double t0 = mono();
  *cfg = *conn = *cfg2 = *conn2 = NULL;
  int rc = bt_open(cfg, conn, &err);
  check(rc == GM_OK, "open (%.1f ms) %s", (mono() - t0) * 1000,
        rc ? err.msg : "");
  int rc2 = bt_open(cfg2, conn2, &err);
  check(rc2 == GM_OK, "open a second connection %s", rc2 ? err.msg : "");
  return rc == GM_OK && rc2 == GM_OK ? GM_OK : GM_ERR;
}

/* An error that names its cause and keeps the password out. */
BT_FN void check_error(const char *what, int rc, const gm_error *err,
                        int code, const char *needle) {
  check(rc == GM_ERR, "%s: refused", what);
  check(err->code == code, "%s: code %d (got %d)", what, code, err->code);
  check(strstr(err->msg, needle) != NULL, "%s: message names the cause: %s",
        what, err->msg);
  check(strstr(err->msg, password()) == NULL, "%s: no password in message",
        what);
}

/* Runs tests/servers/<script>.sh CMD DIR (from GOMASTER_ROOT or the
 * current directory: the repository's top); 0 when it succeeded. */
BT_FN int server(const char *dir, const char *cmd) {
  const char *root = getenv("GOMASTER_ROOT");
  char buf[2048];
  snprintf(buf, sizeof buf, "sh '%s/tests/servers/%s.sh' %s '%s' >/dev/null",
           root && *root ? root : ".", server_script, cmd, dir);
  return system(buf);
}

/* While the server is paused: open fails as a connection error, without
 * the password, within bound seconds (what: the timeouts that bound it). */
BT_FN void bt_open_paused(void *cfg, double bound, const char *what) {
  void *conn = NULL;
  gm_error err;
  double t0 = mono();
  int rc = ops->open(cfg, &conn, &err);
  double took = mono() - t0;
  check(rc == GM_ERR && err.code == GM_E_CONNECT &&
            !strstr(err.msg, password()),
        "open on a paused server fails: %s", err.msg);
  check(took < bound, "... within %s (%.2f s)", what, took);
  if (conn) ops->close(conn);
}

/* Reads the test URL from env and splits it (raw: as gm_url_parse takes
 * it). -1: go on; otherwise the test's exit status (0: skipped, no URL). */
BT_FN int bt_init(const gm_backend_ops *o, const char *env, int raw,
                   const char *script) {
  gm_error err;
  ops = o;
  server_script = script;
  test_url = getenv(env);
  if (!test_url || !*test_url) {
    printf("skipped: %s not set\n", env);
    return 0;
  }
  if (gm_url_parse(test_url, raw, &url, &err)) {
    printf("FAIL - %s: %s\n0 passed, 1 failed\n", env, err.msg);
    return 1;
  }
  snprintf(run, sizeof run, "t%ld.%ld", (long)time(NULL), (long)getpid());
  return -1;
}

/* Runs fn(dir) where the runner that started the server set env to its
 * directory (pause, resume, restart need it). */
BT_FN void bt_with_dir(const char *env, void (*fn)(const char *dir)) {
  const char *dir = getenv(env);
  if (dir && *dir)
    fn(dir);
  else
    printf("skipped: pause and restart (%s not set)\n", env);
}

BT_FN int bt_done(void) {
  gm_url_free(&url);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

/* A one-time task's completion record (ABI 2) and an operator's release:
 * result is written back to the letter. */
BT_FN void bt_complete_and_force(void *conn, void *conn2,
                                  const char *result) {
  gm_error err;
  gm_row r, o;
  char name[128];
  lock_name(name, sizeof name, "once");

  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
  int rc = ops->acquire(conn, &a, &r, &err);
  rc = rc == GM_OK ? ops->observe(conn2, name, &o, &err) : rc;
  check(rc == GM_OK && o.done_at == 0 && o.done_by[0] == '\0',
        "lock for a one-time task taken, no completion record yet");
  check(ops->complete(conn2, name, "node-b", inst("node-b"), 1, "nope",
                      &err) == GM_NOT,
        "complete by another owner: GM_NOT");
  check(ops->complete(conn, name, "node-a", inst("node-a"), 2, "nope",
                      &err) == GM_NOT,
        "complete with a token that is not the row's: GM_NOT");
  rc = ops->complete(conn, name, "node-a", inst("node-a"), 1, result, &err);
  check(rc == GM_OK, "complete by the holder: %s", rc ? err.msg : "");
  rc = ops->observe(conn2, name, &o, &err);
  check(rc == GM_OK && o.done_at > 0 && o.done_at <= o.now &&
            strcmp(o.done_by, "node-a") == 0 && o.done_token == 1 &&
            strcmp(o.result, result) == 0 &&
            strcmp(o.owner, "node-a") == 0 && o.expires_at > o.now,
        "the record is stored and the lock is unchanged");

  int64_t lease_end = o.expires_at;
  rc = ops->force_release(conn2, name, 0, &r, &err);
  check(rc == GM_OK && r.exists && r.owner[0] == '\0' && r.token == 2 &&
            r.expires_at == lease_end && r.expires_at > r.now,
        "force_release frees the lock, fences the holder (token %llu) and "
        "keeps its lease (%lld us left)",
        (unsigned long long)r.token, (long long)(r.expires_at - r.now));
  check(r.instance == 0, "force_release writes no holder's key (instance %llu)",
        (unsigned long long)r.instance);
  rc = ops->renew(conn, name, "node-a", inst("node-a"), 1, 5000000, &r, &err);
  check(rc == GM_NOT, "the old holder's renew after force_release: GM_NOT");
  rc = ops->observe(conn, name, &o, &err);
  check(rc == GM_OK && o.expires_at == lease_end && o.token == 2,
        "the failed renewal left the row as the release made it");
  rc = ops->force_release(conn2, name, 1, &r, &err);
  check(rc == GM_OK && r.token == 3 && r.expires_at <= r.now,
        "force_release now: the lease ends at once (token %llu)",
        (unsigned long long)r.token);
  gm_acquire_req b = req(name, "node-b", 1, 3, 0, 5000000);
  rc = ops->acquire(conn2, &b, &r, &err);
  check(rc == GM_OK && r.token == 4, "taken again after force_release now");
  rc = ops->observe(conn, name, &o, &err);
  check(rc == GM_OK && o.done_token == 1 && strcmp(o.done_by, "node-a") == 0,
        "the completion record outlives the next grant");

  lock_name(name, sizeof name, "never-held");
  rc = ops->force_release(conn, name, 0, &r, &err);
  check(rc == GM_NOT, "force_release of a lock without a row: GM_NOT");
}

/* renew_many of 1000 locks in one round trip (what: "script",
 * "statement"): each its own result and its own lease; three are not ours
 * (released, taken by an operator, asked with a wrong token). renewed_is_now:
 * the backend writes renewed_at = the reported now. */
BT_FN void bt_renew_many(void *conn, void *conn2, const char *what,
                          int renewed_is_now) {
  gm_error err;
  gm_row r;
  enum { K = 1000 };
  static char names[K][64];
  static gm_renew_req q[K];
  int ok = 1;
  for (int i = 0; i < K; i++) {
    snprintf(names[i], sizeof names[i], "%s-many-%d", run, i);
    gm_acquire_req a = req(names[i], "node-a", 0, 0, 0, 5000000);
    ok = ok && ops->acquire(conn, &a, &r, &err) == GM_OK;
    q[i] = (gm_renew_req){.name = names[i], .owner = "node-a",
                          .instance = inst("node-a"), .token = 1,
                          .lease_us = 5000000 + i, .rc = GM_ERR};
  }
  check(ok, "%d locks taken", K);
  ops->release(conn, names[7], "node-a", inst("node-a"), 1, &err);
  ops->force_release(conn2, names[500], 0, &r, &err);
  q[2].token = 5;
  double t0 = mono();
  int rc = ops->renew_many(conn, q, K, &err);
  double took = mono() - t0;
  int good = rc == GM_OK, lost = 0;
  for (int i = 0; i < K; i++) {
    if (q[i].rc == GM_NOT) lost++;
    if (i == 2 || i == 7 || i == 500)
      good = good && q[i].rc == GM_NOT;
    else
      good = good && q[i].rc == GM_OK && q[i].now > 0 &&
             q[i].expires_at == q[i].renewed_at + 5000000 + i &&
             (!renewed_is_now || q[i].renewed_at == q[i].now);
  }
  check(good && lost == 3,
        "renew_many of %d locks in one %s (%.1f ms): each its own result "
        "and lease, the 3 not ours GM_NOT (rc %d %s)",
        K, what, took * 1000, rc, rc == GM_ERR ? err.msg : "");
  rc = ops->observe(conn2, names[K - 1], &r, &err);
  check(rc == GM_OK && r.expires_at == q[K - 1].expires_at &&
            r.renewed_at == q[K - 1].renewed_at,
        "the batch wrote each lock's own lease");
}

/* ---- a watch on a thread of its own, as the core's wake-up runs it ---- */

typedef struct bt_watch {
  void *conn;
  const char *name;
  int64_t timeout_us;
  gm_row *row;     /* given to watch, or NULL */
  int rc;          /* -9 until watch returns */
  double returned; /* mono() when it returned */
  int back;        /* (atomic) watch returned: bt_watch_back */
  gm_error err;
  pthread_t th;
} bt_watch;

static void *bt_watch_main(void *arg) {
  bt_watch *w = arg;
  w->rc = ops->watch(w->conn, w->name, w->timeout_us, w->row, &w->err);
  w->returned = mono();
  __atomic_store_n(&w->back, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

/* Starts watch(conn, name, timeout_us, row) on a thread; row (NULL: none,
 * as on a wake-up connection) is zeroed first. gauge (NULL: none)
 * reads what the server shows of a waiting watch (blocked clients, its
 * count of getMores; < 0: unknown): returns 1 once it rose, 0 after 5 s.
 * Without it (or unknown) returns 0 after 200 ms. bt_watch_join waits for
 * the watch's return. */
BT_FN int bt_watch_start(bt_watch *w, void *conn, const char *name,
                         int64_t timeout_us, gm_row *row,
                         long (*gauge)(void)) {
  long before = gauge ? gauge() : -1;
  *w = (bt_watch){.conn = conn, .name = name, .timeout_us = timeout_us,
                  .row = row, .rc = -9};
  if (row) memset(row, 0, sizeof *row);
  pthread_create(&w->th, NULL, bt_watch_main, w);
  if (before < 0) {
    nap_ms(200);
    return 0;
  }
  for (double t0 = mono(); mono() - t0 < 5; nap_ms(1))
    if (gauge() > before) return 1;
  return 0;
}

/* Whether the watch returned (read while it may still run). */
BT_FN int bt_watch_back(const bt_watch *w) {
  return __atomic_load_n(&w->back, __ATOMIC_SEQ_CST);
}

BT_FN void bt_watch_join(bt_watch *w) { pthread_join(w->th, NULL); }

#endif
