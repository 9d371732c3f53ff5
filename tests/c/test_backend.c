/*
 * test_backend.c: the conformance suite of the backend contract
 * (src/backend.h). The same cases run on every backend whose server is
 * known: SQLite always (a file in a fresh temporary directory), and MySQL,
 * MongoDB, PostgreSQL and Redis when GOMASTER_TEST_MYSQL_URL,
 * GOMASTER_TEST_MONGO_URL, GOMASTER_TEST_POSTGRES_URL and
 * GOMASTER_TEST_REDIS_URL are set (tests/run.sh exports them) and the
 * backend is built in. Every check names its backend; the test ends with
 * "N passed, N failed".
 *
 * A case uses two connections (a and b) as two nodes would, and lock names
 * unique to the run, so that runs never see each other's rows. The one
 * thing done outside the backend is deleting a row (an operator's DELETE),
 * with each database's own client.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#ifdef GM_WITH_MYSQL
#include <mysql.h>
#endif
#ifdef GM_WITH_POSTGRES
#include <libpq-fe.h>
#endif
#if __has_include(<mongoc/mongoc.h>)
#include <mongoc/mongoc.h>
#define HAVE_MONGOC 1
#endif

#include "backend_test.h"

#define L_US 400000 /* a short lease: takeover cases wait it out */
#define WAKE_MS 50  /* the wake-up: a release seen within this */

typedef struct target {
  const char *label;  /* in every check */
  const char *scheme; /* gm_backend_find */
  const char *env;    /* the server's URL; NULL: SQLite */
  const gm_backend_ops *ops;
  const char *url;
  void *cfg;
  char sqlite_path[256];
} target;

static target *T; /* the backend under test (ops: its ops) */
static const char *lname(const char *base) {
  static char buf[8][GM_NAME_MAX];
  static int i;
  char *b = buf[i++ % 8];
  snprintf(b, GM_NAME_MAX, "%s.%s", base, run);
  return b;
}

static double mono_ms(void) { return mono() * 1e3; }

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A request by instance (backend_test.h's req: by owner), lease L_US. */
static gm_acquire_req ireq(const char *name, const char *owner, int exists,
                           uint64_t expect, uint64_t min, uint64_t instance) {
  return (gm_acquire_req){.name = name, .owner = owner, .version = "1.0",
                          .lease_us = L_US, .expect_exists = exists,
                          .expect_token = expect, .min_token = min,
                          .instance = instance};
}

/* ---- deleting a row with the database's own client ---- */

static const char *kv_of(const gm_url *u, const char *key) {
  return gm_kv_get(u->kv, u->n, key);
}

static int delete_row(const char *name) {
  int ok = 0;
  if (!T->env) {
    sqlite3 *db;
    char *sql = sqlite3_mprintf("DELETE FROM gomaster_locks WHERE name = %Q",
                                name);
    if (sqlite3_open(T->sqlite_path, &db) == SQLITE_OK)
      ok = sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK;
    sqlite3_close(db);
    sqlite3_free(sql);
    return ok;
  }
#ifdef GM_WITH_MYSQL
  if (strcmp(T->scheme, "mysql") == 0) {
    gm_url u;
    gm_error err;
    if (gm_url_parse(T->url, 0, &u, &err)) return 0;
    const char *port = kv_of(&u, "port");
    MYSQL *db = mysql_init(NULL);
    if (db && mysql_real_connect(db, kv_of(&u, "host"), kv_of(&u, "user"),
                                 kv_of(&u, "password"), kv_of(&u, "database"),
                                 port ? (unsigned)atoi(port) : 0, NULL, 0)) {
      char sql[GM_NAME_MAX * 2 + 64], esc[GM_NAME_MAX * 2 + 1];
      mysql_real_escape_string(db, esc, name, strlen(name));
      snprintf(sql, sizeof sql, "DELETE FROM gomaster_locks WHERE name = '%s'",
               esc);
      ok = mysql_query(db, sql) == 0;
    }
    if (db) mysql_close(db);
    gm_url_free(&u);
    return ok;
  }
#endif
#ifdef GM_WITH_POSTGRES
  if (strcmp(T->scheme, "postgres") == 0) {
    PGconn *db = PQconnectdb(T->url);
    if (PQstatus(db) == CONNECTION_OK) {
      const char *p[1] = {name};
      PGresult *r = PQexecParams(db, "DELETE FROM gomaster_locks WHERE name"
                                 " = $1", 1, NULL, p, NULL, NULL, 0);
      ok = PQresultStatus(r) == PGRES_COMMAND_OK;
      PQclear(r);
    }
    PQfinish(db);
    return ok;
  }
#endif
#ifdef HAVE_MONGOC
  if (strcmp(T->scheme, "mongodb") == 0) {
    mongoc_client_t *cl = mongoc_client_new(T->url);
    if (!cl) return 0;
    mongoc_uri_t *uri = mongoc_uri_new(T->url);
    const char *dbn = uri ? mongoc_uri_get_database(uri) : NULL;
    mongoc_collection_t *c = mongoc_client_get_collection(
        cl, dbn ? dbn : "gomaster", "gomaster_locks");
    bson_t *q = BCON_NEW("_id", BCON_UTF8(name));
    ok = mongoc_collection_delete_one(c, q, NULL, NULL, NULL);
    bson_destroy(q);
    mongoc_collection_destroy(c);
    if (uri) mongoc_uri_destroy(uri);
    mongoc_client_destroy(cl);
    return ok;
  }
#endif
  return -1; /* no client here: the case is skipped */
}

/* ---- the cases ---- */

/* acquire, observe, renew, release: each says whether it took effect and
 * returns the row as it now is. */
static void case_basic(void *a, void *b) {
  const gm_backend_ops *o = T->ops;
  const char *n = lname("basic");
  gm_error err = {0};
  gm_row r, s;
  int rc = o->observe(a, n, &r, &err);
  check(rc == GM_OK && !r.exists && r.now > 0,
        "%s: observe of a lock without a row: exists 0, now %" PRId64,
        T->label, r.now);
  int64_t wall = wall_us(); /* a server's now is its wall clock */
  if (T->env)
    check(r.now > wall - 60000000 && r.now < wall + 60000000,
          "%s: now is the server's, within a minute of this host's clock "
          "(%" PRId64 " us apart)", T->label, r.now - wall);
  gm_acquire_req q = ireq(n, "node-a", 0, 0, 0, 11);
  rc = o->acquire(a, &q, &r, &err);
  check(rc == GM_OK && r.exists && r.token == 1 &&
            strcmp(r.owner, "node-a") == 0 && strcmp(r.version, "1.0") == 0 &&
            r.expires_at - r.renewed_at == L_US && r.acquired_at ==
            r.renewed_at && r.now == r.renewed_at && r.instance == 11,
        "%s: acquire creates the row as written, at the write's now: "
        "token %" PRIu64 ", lease %" PRId64 " us, instance %" PRIu64 " %s",
        T->label, r.token, r.expires_at - r.renewed_at, r.instance, err.msg);
  rc = o->observe(b, n, &s, &err);
  check(rc == GM_OK && s.exists && s.token == r.token &&
            strcmp(s.owner, "node-a") == 0 && s.expires_at == r.expires_at &&
            s.instance == 11,
        "%s: the other connection observes the same row", T->label);
  rc = o->renew(a, n, "node-a", 11, 1, L_US, &s, &err);
  check(rc == GM_OK && s.expires_at >= r.expires_at &&
            s.expires_at - s.renewed_at == L_US && s.now >= s.renewed_at,
        "%s: renew extends the lease to now + L and reports its times %s",
        T->label, err.msg);
  /* renew reports only the times: the core knows the rest of its grant,
   * which the renewal leaves as it was */
  gm_row t;
  rc = o->observe(b, n, &t, &err);
  check(rc == GM_OK && t.token == 1 && t.acquired_at == r.acquired_at &&
            strcmp(t.version, "1.0") == 0 && t.instance == 11 &&
            t.expires_at == s.expires_at && t.renewed_at == s.renewed_at,
        "%s: after renew the row keeps token, acquired_at, version and "
        "instance, with the times renew reported %s", T->label, err.msg);
  rc = o->renew(b, n, "node-a", 11, 1, L_US, &s, &err);
  check(rc == GM_OK && s.expires_at - s.renewed_at == L_US,
        "%s: the owner's renew on another connection than the grant's %s",
        T->label, err.msg);
  rc = o->renew(b, n, "node-b", 11, 1, L_US, &s, &err);
  check(rc == GM_NOT, "%s: another owner's renew: GM_NOT", T->label);
  rc = o->renew(a, n, "node-a", 11, 2, L_US, &s, &err);
  check(rc == GM_NOT, "%s: renew with a token that is not the row's: GM_NOT",
        T->label);
  rc = o->release(b, n, "node-b", 11, 1, &err);
  check(rc == GM_NOT, "%s: another owner's release: GM_NOT", T->label);
  rc = o->release(a, n, "node-a", 11, 1, &err);
  check(rc == GM_OK, "%s: release %s", T->label, err.msg);
  rc = o->observe(b, n, &s, &err);
  check(rc == GM_OK && s.exists && s.owner[0] == '\0' && s.token == 1 &&
            s.expires_at <= s.now,
        "%s: after release the row stays: owner '', token 1, expired",
        T->label);
  rc = o->release(a, n, "node-a", 11, 1, &err);
  check(rc == GM_NOT, "%s: a second release: GM_NOT", T->label);
  rc = o->renew(a, n, "node-a", 11, 1, L_US, &s, &err);
  check(rc == GM_NOT, "%s: renew after release: GM_NOT", T->label);
}

/* Takeover: refused while the lease lasts, granted once it ended (on the
 * database's clock), and the old holder cannot renew after. */
static void case_takeover(void *a, void *b) {
  const gm_backend_ops *o = T->ops;
  const char *n = lname("takeover");
  gm_error err = {0};
  gm_row r, s;
  gm_acquire_req q = ireq(n, "node-a", 0, 0, 0, 21);
  int rc = o->acquire(a, &q, &r, &err);
  check(rc == GM_OK, "%s: node-a takes the lock %s", T->label, err.msg);
  q = ireq(n, "node-b", 1, r.token, 0, 22);
  rc = o->acquire(b, &q, &s, &err);
  rc = o->observe(b, n, &s, &err) == GM_OK && s.now < r.expires_at
           ? rc
           : -1; /* too slow to tell: the lease ended meanwhile */
  check(rc == GM_NOT || rc == -1,
        "%s: takeover before the lease ends: GM_NOT%s", T->label,
        rc == -1 ? " (not seen: the lease ended first)" : "");
  q = ireq(n, "node-b", 0, 0, 0, 22);
  rc = o->acquire(b, &q, &s, &err);
  check(rc == GM_NOT, "%s: creating a row that exists: GM_NOT", T->label);
  /* wait on the database's clock for the lease to end */
  double t0 = mono_ms();
  do {
    nap_ms(20);
    rc = o->observe(b, n, &s, &err);
  } while (rc == GM_OK && s.now < s.expires_at && mono_ms() - t0 < 10000);
  check(rc == GM_OK && s.now >= s.expires_at && strcmp(s.owner, "node-a")
                                                    == 0,
        "%s: the lease ends on the database's clock (%.0f ms)", T->label,
        mono_ms() - t0);
  q = ireq(n, "node-b", 1, r.token, 0, 22);
  rc = o->acquire(b, &q, &s, &err);
  check(rc == GM_OK && s.token == r.token + 1 &&
            strcmp(s.owner, "node-b") == 0 && s.instance == 22,
        "%s: takeover after expiry: token %" PRIu64 " -> %" PRIu64 " %s",
        T->label, r.token, s.token, err.msg);
  rc = o->renew(a, n, "node-a", 21, r.token, L_US, &r, &err);
  check(rc == GM_NOT, "%s: the old holder's renew after takeover: GM_NOT",
        T->label);
  rc = o->release(a, n, "node-a", 21, 1, &err);
  check(rc == GM_NOT, "%s: nor its release", T->label);
  rc = o->release(b, n, "node-b", 22, s.token - 1, &err);
  check(rc == GM_NOT, "%s: the new holder's release with the old token: "
        "GM_NOT", T->label);
  gm_row t;
  rc = o->observe(a, n, &t, &err);
  check(rc == GM_OK && strcmp(t.owner, "node-b") == 0 &&
            t.token == s.token && t.expires_at > t.now,
        "%s: the new holder still holds the lock", T->label);
  o->release(b, n, "node-b", 22, s.token, &err);
}

/* Tokens: one more per grant, and above min_token. */
static void case_tokens(void *a, void *b) {
  const gm_backend_ops *o = T->ops;
  const char *n = lname("tokens");
  gm_error err = {0};
  gm_row r;
  gm_acquire_req q = ireq(n, "node-a", 0, 0, 41, 31);
  int rc = o->acquire(a, &q, &r, &err);
  check(rc == GM_OK && r.token == 42,
        "%s: insert with min_token 41: token %" PRIu64 " %s", T->label,
        r.token, err.msg);
  o->release(a, n, "node-a", 31, r.token, &err);
  q = ireq(n, "node-b", 1, 42, 7, 32);
  rc = o->acquire(b, &q, &r, &err);
  check(rc == GM_OK && r.token == 43,
        "%s: min_token below the row's: row token + 1 = %" PRIu64, T->label,
        r.token);
  o->release(b, n, "node-b", 32, 43, &err);
  q = ireq(n, "node-a", 1, 43, 100, 31);
  rc = o->acquire(a, &q, &r, &err);
  check(rc == GM_OK && r.token == 101,
        "%s: min_token above the row's: min_token + 1 = %" PRIu64, T->label,
        r.token);
  gm_row s;
  rc = o->observe(b, n, &s, &err);
  check(rc == GM_OK && s.token == 101 && strcmp(s.owner, "node-a") == 0,
        "%s: token 101 stored", T->label);
  o->release(a, n, "node-a", 31, r.token, &err);
  q = ireq(n, "node-b", 1, 42, 0, 32);
  rc = o->acquire(b, &q, &r, &err);
  check(rc == GM_NOT, "%s: acquire expecting an old token: GM_NOT",
        T->label);
}

/* The instance key: two electors that share an id never write each
 * other's grant. */
static void case_instance(void *a, void *b) {
  const gm_backend_ops *o = T->ops;
  const char *n = lname("instance");
  gm_error err = {0};
  gm_row r, s;
  gm_acquire_req q = ireq(n, "node", 0, 0, 0, 1001);
  int rc = o->acquire(a, &q, &r, &err);
  check(rc == GM_OK && r.instance == 1001, "%s: acquired by instance 1001",
        T->label);
  rc = o->renew(b, n, "node", 1002, r.token, L_US, &s, &err);
  check(rc == GM_NOT, "%s: renew by the same id, another instance: GM_NOT",
        T->label);
  rc = o->release(b, n, "node", 1002, r.token, &err);
  check(rc == GM_NOT, "%s: release by another instance: GM_NOT", T->label);
  if (o->complete) {
    rc = o->complete(b, n, "node", 1002, r.token, "x", &err);
    check(rc == GM_NOT, "%s: complete by another instance: GM_NOT", T->label);
    rc = o->complete(b, n, "node", 0, r.token, "", &err);
    check(rc == GM_OK, "%s: complete with instance 0 (a tool that knows only "
          "the id) %s", T->label, err.msg);
  }
  rc = o->observe(b, n, &s, &err);
  check(rc == GM_OK && s.instance == 1001 && strcmp(s.owner, "node") == 0 &&
            s.expires_at == r.expires_at,
        "%s: the row is unchanged", T->label);
  rc = o->release(a, n, "node", 1001, r.token, &err);
  check(rc == GM_OK, "%s: the instance that holds it releases it", T->label);
}

/* The widest values the core passes (backend.h: it checked each length)
 * are kept whole: a name of GM_NAME_MAX - 1 bytes, an owner and a version
 * of GM_ID_MAX - 1, a result of GM_RESULT_MAX - 1. */
static void case_widest(void *a, void *b) {
  const gm_backend_ops *o = T->ops;
  char n[GM_NAME_MAX], id[GM_ID_MAX], v[GM_ID_MAX], res[GM_RESULT_MAX];
  int k = snprintf(n, sizeof n, "widest.%s.", run);
  memset(n + k, 'n', sizeof n - 1 - (size_t)k);
  memset(id, 'i', sizeof id - 1);
  memset(v, 'v', sizeof v - 1);
  memset(res, 'r', sizeof res - 1);
  n[sizeof n - 1] = id[sizeof id - 1] = v[sizeof v - 1] = '\0';
  res[sizeof res - 1] = '\0';
  gm_error err = {0};
  gm_row r, s;
  gm_acquire_req q = ireq(n, id, 0, 0, 0, 51);
  q.version = v;
  int rc = o->acquire(a, &q, &r, &err);
  if (rc == GM_OK) rc = o->renew(b, n, id, 51, r.token, L_US, &s, &err);
  if (rc == GM_OK && o->complete)
    rc = o->complete(b, n, id, 51, r.token, res, &err);
  if (rc == GM_OK) rc = o->observe(b, n, &s, &err);
  n[sizeof n - 2] = 'm'; /* another lock, by its last byte */
  gm_row t = {.exists = 1};
  if (rc == GM_OK) rc = o->observe(b, n, &t, &err);
  n[sizeof n - 2] = 'n';
  check(rc == GM_OK && strcmp(s.owner, id) == 0 && strcmp(s.version, v) == 0 &&
            (!o->complete ||
             (strcmp(s.done_by, id) == 0 && strcmp(s.result, res) == 0)) &&
            !t.exists,
        "%s: a %d-byte name (its last byte its own), %d-byte owner and "
        "version and %d-byte result are kept whole %s", T->label,
        GM_NAME_MAX - 1, GM_ID_MAX - 1, GM_RESULT_MAX - 1, err.msg);
  rc = o->release(a, n, id, 51, r.token, &err);
  check(rc == GM_OK, "%s: ... and released %s", T->label, err.msg);
}

/* The row vanishes (an operator deleted it): renew fails, observe sees no
 * row, and the row is made again above the tokens seen. */
static void case_vanished(void *a, void *b) {
  const gm_backend_ops *o = T->ops;
  const char *n = lname("vanished");
  gm_error err = {0};
  gm_row r, s;
  gm_acquire_req q = ireq(n, "node-a", 0, 0, 0, 51);
  int rc = o->acquire(a, &q, &r, &err);
  o->release(a, n, "node-a", 51, r.token, &err);
  q = ireq(n, "node-a", 1, r.token, 0, 51);
  rc = o->acquire(a, &q, &r, &err);
  int d = delete_row(n);
  if (d < 0) {
    printf("skipped: %s: vanished row (no client to delete it)\n", T->label);
    return;
  }
  check(rc == GM_OK && r.token == 2 && d == 1,
        "%s: the row (token 2) deleted by an operator", T->label);
  rc = o->renew(a, n, "node-a", 51, r.token, L_US, &s, &err);
  check(rc == GM_NOT, "%s: the holder's renew finds no row: GM_NOT",
        T->label);
  rc = o->observe(b, n, &s, &err);
  check(rc == GM_OK && !s.exists && s.now > 0,
        "%s: observe: no row, now read", T->label);
  rc = o->release(a, n, "node-a", 51, r.token, &err);
  check(rc == GM_NOT, "%s: release of a vanished row: GM_NOT", T->label);
  q = ireq(n, "node-b", 0, 0, r.token, 52);
  rc = o->acquire(b, &q, &s, &err);
  check(rc == GM_OK && s.token == r.token + 1,
        "%s: made again above the largest token seen: %" PRIu64, T->label,
        s.token);
  o->release(b, n, "node-b", 52, s.token, &err);
}

/* The database's now advances with ours. */
static void case_clock(void *a, void *b) {
  const gm_backend_ops *o = T->ops;
  const char *n = lname("clock");
  gm_error err = {0};
  gm_row r, s;
  double t0 = mono_ms();
  int rc = o->observe(a, n, &r, &err);
  double t1 = mono_ms();
  nap_ms(300);
  double t2 = mono_ms();
  int rc2 = o->observe(b, n, &s, &err);
  double t3 = mono_ms();
  double db_ms = (s.now - r.now) / 1e3;
  /* the database's interval lies within ours, give or take its precision
   * (MongoDB's $$NOW: 1 ms) */
  check(rc == GM_OK && rc2 == GM_OK && db_ms >= t2 - t1 - 2 &&
            db_ms <= t3 - t0 + 2,
        "%s: database now advanced %.1f ms while ours advanced %.1f-%.1f ms",
        T->label, db_ms, t2 - t1, t3 - t0);
}

/* Batch renewal: each lock's own result. */
static void case_renew_many(void *a, void *b) {
  const gm_backend_ops *o = T->ops;
  gm_error err = {0};
  gm_row r[3];
  const char *names[3] = {lname("many0"), lname("many1"), lname("many2")};
  for (int i = 0; i < 3; i++) {
    gm_acquire_req q = ireq(names[i], "node-a", 0, 0, 0, 61);
    o->acquire(a, &q, &r[i], &err);
  }
  /* lock 1 is not ours any more: an operator released it */
  gm_row f;
  int rc = o->force_release(b, names[1], 1, &f, &err);
  check(rc == GM_OK, "%s: lock 1 of 3 released by an operator", T->label);
  gm_renew_req rq[3];
  for (int i = 0; i < 3; i++)
    rq[i] = (gm_renew_req){.name = names[i], .owner = "node-a",
                           .token = r[i].token, .lease_us = L_US,
                           .rc = -1, .instance = 61};
  if (!o->renew_many) {
    printf("skipped: %s: no renew_many (the core renews one by one)\n",
           T->label);
  } else {
    rc = o->renew_many(a, rq, 3, &err);
    if (rc == GM_NOT) { /* cannot tell which: the core renews each */
      printf("# %s: renew_many cannot tell which: renewed one by one\n",
             T->label);
      rc = GM_OK;
      for (int i = 0; i < 3; i++) {
        gm_row x;
        rq[i].rc = o->renew(a, names[i], "node-a", 61, r[i].token, L_US, &x,
                            &err);
        rq[i].renewed_at = x.renewed_at;
        rq[i].expires_at = x.expires_at;
        rq[i].now = x.now;
        if (rq[i].rc == GM_ERR) rc = GM_ERR;
      }
    }
    check(rc == GM_OK && rq[0].rc == GM_OK && rq[1].rc == GM_NOT &&
              rq[2].rc == GM_OK,
          "%s: renew_many: ok, not, ok (%d %d %d) %s", T->label, rq[0].rc,
          rq[1].rc, rq[2].rc, err.msg);
    check(rq[0].expires_at - rq[0].renewed_at == L_US &&
              rq[0].expires_at >= r[0].expires_at && rq[0].now > 0 &&
              rq[2].expires_at >= r[2].expires_at,
          "%s: renew_many: times of the renewed filled", T->label);
    gm_row s;
    o->observe(b, names[2], &s, &err);
    check(s.expires_at == rq[2].expires_at && s.token == r[2].token,
          "%s: renew_many: the row as it reported", T->label);
  }
  for (int i = 0; i < 3; i++)
    o->release(a, names[i], "node-a", 61, r[i].token, &err);
}

/* A lost race: two nodes saw the same row; one write takes effect. */
static void case_race(void *a, void *b) {
  const gm_backend_ops *o = T->ops;
  const char *n = lname("race");
  gm_error err = {0};
  gm_row r, s;
  gm_acquire_req qa = ireq(n, "node-a", 0, 0, 0, 71);
  gm_acquire_req qb = ireq(n, "node-b", 0, 0, 0, 72);
  int ra = o->acquire(a, &qa, &r, &err);
  memset(&err, 0, sizeof err);
  int rb = o->acquire(b, &qb, &s, &err);
  check(ra == GM_OK && rb == GM_NOT,
        "%s: two inserts of one row: the second GM_NOT (%d %d)", T->label, ra,
        rb);
  check(err.code == GM_E_NONE || err.code == GM_E_CONFLICT,
        "%s: a lost race is a conflict, not an error (code %d) %s", T->label,
        err.code, err.msg);
  o->release(a, n, "node-a", 71, r.token, &err);
  qa = ireq(n, "node-a", 1, r.token, 0, 71);
  qb = ireq(n, "node-b", 1, r.token, 0, 72);
  ra = o->acquire(b, &qb, &s, &err);
  rb = o->acquire(a, &qa, &r, &err);
  check(ra == GM_OK && rb == GM_NOT && s.token == 2,
        "%s: two takeovers from one token: the second GM_NOT (%d %d)",
        T->label, ra, rb);
  o->release(b, n, "node-b", 72, s.token, &err);
}

/* The wake-up: b (a connection that followed no other lock: a backend may
 * choose what it watches by what its connection observed) follows a lock a
 * holds; b hears of nothing while nothing changes, and of a's release
 * within WAKE_MS. */
static void case_wakeup(void *a) {
  const gm_backend_ops *o = T->ops;
  if (!o->changed || !o->poll_us) {
    printf("skipped: %s: no wake-up\n", T->label);
    return;
  }
  void *b = NULL;
  gm_error oerr = {0};
  if (!check(o->open(T->cfg, &b, &oerr) == GM_OK,
             "%s: a third connection opens %s", T->label, oerr.msg))
    return;
  const char *n = lname("wake");
  gm_error err = {0};
  gm_row r, s;
  gm_acquire_req q = ireq(n, "node-a", 0, 0, 0, 81);
  int rc = o->acquire(a, &q, &r, &err);
  rc = rc == GM_OK ? o->observe(b, n, &s, &err) : rc;
  check(rc == GM_OK && s.exists, "%s: b follows the lock a holds", T->label);
  int64_t step_us = o->poll_us < 1000 ? o->poll_us : 1000;
  o->changed(b, &err); /* what came before */
  int spurious = 0;
  double t0 = mono_ms();
  while (mono_ms() - t0 < 500) {
    if (o->changed(b, &err) == GM_OK) spurious++;
    nap_ms(step_us / 1e3);
  }
  check(spurious <= 1, "%s: no wake-up while nothing changes (%d in 500 ms)",
        T->label, spurious);
  o->changed(b, &err);
  t0 = mono_ms();
  rc = o->release(a, n, "node-a", 81, r.token, &err);
  double woke = -1;
  while (woke < 0 && mono_ms() - t0 < 5000) {
    if (o->changed(b, &err) == GM_OK) woke = mono_ms() - t0;
    else nap_ms(step_us / 1e3);
  }
  check(rc == GM_OK && woke >= 0 && woke <= WAKE_MS,
        "%s: a release seen by the other connection in %.1f ms (<= %d)",
        T->label, woke, WAKE_MS);
  o->close(b);
}

/* watch, on a connection of its own as the core's wake-up thread uses it
 * (bt_watch: on a thread of its own): times out on time when nothing
 * changes, returns within WAKE_MS of a release, and at once on
 * interrupt. */
static void case_watch(void *a) {
  const gm_backend_ops *o = T->ops;
  if (!o->watch) {
    printf("skipped: %s: no watch (the core's wake-up thread is not used)\n",
           T->label);
    return;
  }
  check(o->interrupt != NULL, "%s: watch comes with interrupt", T->label);
  const char *n = lname("watch");
  gm_error err = {0};
  gm_row r;
  void *w = NULL;
  if (!check(o->open(T->cfg, &w, &err) == GM_OK,
             "%s: a wake-up connection opens %s", T->label, err.msg))
    return;
  gm_acquire_req q = ireq(n, "node-a", 0, 0, 0, 91);
  int rc = o->acquire(a, &q, &r, &err);
  double t0 = mono_ms();
  int wr = o->watch(w, n, 300000, NULL, &err);
  double took = mono_ms() - t0;
  /* no earlier than the backend says its watch may end (watch_early_us:
   * Redis blocks a timer tick less than asked, since the server ends a
   * blocked XREAD on its tick; 0 elsewhere) */
  double early = (double)o->watch_early_us / 1000;
  check(rc == GM_OK && wr == GM_NOT && took >= 290 - early && took < 800,
        "%s: watch with nothing changing times out on time (%.1f ms for "
        "300) rc %d %s",
        T->label, took, wr, err.msg);
  /* a release while another connection watches (under way once started:
   * no event tells it from here) */
  bt_watch wt;
  bt_watch_start(&wt, w, n, 5000000, NULL, NULL);
  double t1 = mono_ms();
  rc = o->release(a, n, "node-a", 91, r.token, &err);
  bt_watch_join(&wt);
  check(rc == GM_OK && wt.rc == GM_OK && wt.returned * 1e3 - t1 <= WAKE_MS,
        "%s: watch returns %.1f ms after a release (<= %d) rc %d %s",
        T->label, wt.returned * 1e3 - t1, WAKE_MS, wt.rc, wt.err.msg);
  /* interrupt ends a watch at once */
  q = ireq(n, "node-a", 1, r.token, 0, 91);
  rc = o->acquire(a, &q, &r, &err);
  bt_watch_start(&wt, w, n, 5000000, NULL, NULL);
  t1 = mono_ms();
  o->interrupt(w);
  bt_watch_join(&wt);
  check(rc == GM_OK && wt.rc != -9 && wt.returned * 1e3 - t1 <= 50,
        "%s: interrupt ends a watch in %.1f ms (<= 50)", T->label,
        wt.returned * 1e3 - t1);
  o->close(w);
  o->release(a, n, "node-a", 91, r.token, &err);
}

/* watch_shared: watch on an election connection (from open) may outlast
 * the connection's read timeout (2 s by default) and leaves the
 * connection usable; an interrupt that came before the watch began ends
 * it at once (the core may poke just before the watch blocks). */
static void case_watch_shared(void *a) {
  const gm_backend_ops *o = T->ops;
  if (!o->watch || !o->watch_shared) {
    printf("skipped: %s: no watch on the election connection\n", T->label);
    return;
  }
  const char *n = lname("wshared");
  gm_error err = {0};
  gm_row r;
  void *w = NULL;
  if (!check(o->open(T->cfg, &w, &err) == GM_OK,
             "%s: an election connection opens %s", T->label, err.msg))
    return;
  gm_acquire_req q = ireq(n, "node-a", 0, 0, 0, 93);
  int rc = o->acquire(a, &q, &r, &err);
  double t0 = mono_ms();
  int wr = o->watch(w, n, 3500000, NULL, &err);
  double took = mono_ms() - t0;
  gm_row seen;
  int obs = o->observe(w, n, &seen, &err);
  check(rc == GM_OK && wr == GM_NOT && took >= 3400 && took < 4500 &&
            obs == GM_OK && seen.token == r.token,
        "%s: a 3.5 s watch on an election connection times out on time "
        "(%.1f ms, rc %d) and the connection still reads (rc %d) %s",
        T->label, took, wr, obs, err.msg);
  o->interrupt(w);
  t0 = mono_ms();
  wr = o->watch(w, n, 3000000, NULL, &err);
  took = mono_ms() - t0;
  check(took < 50, "%s: an interrupt before the watch ends it at once "
        "(%.1f ms, rc %d)", T->label, took, wr);
  o->close(w);
  o->release(a, n, "node-a", 93, r.token, &err);
}

/* watch's row: a watch that times out fills the row as it is when the
 * watch ends (a renewal from another connection during the wait shows,
 * and its now is after the wait), or, in a backend that reads no row,
 * leaves it as it was (now 0). */
static void case_watch_row(void *a) {
  const gm_backend_ops *o = T->ops;
  if (!o->watch) return; /* case_watch said so */
  const char *n = lname("wrow");
  gm_error err = {0};
  gm_row r, s, row;
  void *c = NULL;
  if (!check(o->open(T->cfg, &c, &err) == GM_OK,
             "%s: a watch connection opens %s", T->label, err.msg))
    return;
  gm_acquire_req q = ireq(n, "node-a", 0, 0, 0, 95);
  q.lease_us = 5000000; /* runs through the watch */
  int rc = o->acquire(a, &q, &r, &err);
  bt_watch w;
  bt_watch_start(&w, c, n, 900000, &row, NULL); /* under way: 200 ms in */
  int rn = o->renew(a, n, "node-a", 95, r.token, 5000000, &s, &err);
  bt_watch_join(&w);
  if (!row.now) {
    check(rc == GM_OK && rn == GM_OK && w.rc != GM_ERR && !row.exists,
          "%s: a watch that times out leaves the row unfilled (rc %d) %s",
          T->label, w.rc, w.err.msg);
    printf("skipped: %s: watch reads no row (followers read at the "
           "lease's end)\n", T->label);
  } else {
    check(rc == GM_OK && rn == GM_OK && w.rc == GM_NOT && row.exists &&
              row.token == r.token && !strcmp(row.owner, "node-a") &&
              row.instance == 95 && row.renewed_at == s.renewed_at &&
              row.expires_at == s.expires_at,
          "%s: a watch that times out returns the row as it ends: the "
          "renewal made during it (renewed_at %" PRId64 ", renewal's %" PRId64
          ") rc %d %s",
          T->label, row.renewed_at, s.renewed_at, w.rc, w.err.msg);
    /* the watch began after the grant and waited 900 ms */
    check(row.now - r.now >= 850000 && row.now >= s.now,
          "%s: the watch's row has the database's now after the wait "
          "(%.1f ms after the grant, >= 850)",
          T->label, (row.now - r.now) / 1e3);
  }
  o->close(c);
  o->release(a, n, "node-a", 95, r.token, &err);
}

/* watch_one: of two connections watching (given a row), a release wakes
 * one alone, with the free row; the other stays blocked while the woken
 * one acquires and holds the lock, and wakes at its release. A holder
 * whose session ends (a crash) leaves a live lease: each watcher wakes,
 * the one before lets the next go at once. */
static void case_watch_one(void *a) {
  const gm_backend_ops *o = T->ops;
  if (!o->watch || !o->watch_one) {
    if (o->watch) printf("skipped: %s: a wake-up wakes every watcher\n",
                         T->label);
    return;
  }
  const char *n = lname("wone");
  gm_error err = {0};
  gm_row r, g, row[2];
  void *m = NULL, *c[2] = {NULL, NULL};
  bt_watch w[2];
  int rc = o->open(T->cfg, &c[0], &err);
  if (rc == GM_OK) rc = o->open(T->cfg, &c[1], &err);
  if (rc == GM_OK) rc = o->open(T->cfg, &m, &err);
  gm_acquire_req q = ireq(n, "node-a", 0, 0, 0, 97);
  q.lease_us = 5000000;
  if (rc == GM_OK) rc = o->acquire(a, &q, &r, &err);
  if (!check(rc == GM_OK, "%s: watch one: set up %s", T->label, err.msg))
    goto out;
  for (int i = 0; i < 2; i++) /* each under way once started */
    bt_watch_start(&w[i], c[i], n, 5000000, &row[i], NULL);
  double t0 = mono_ms();
  rc = o->release(a, n, "node-a", 97, r.token, &err);
  while (!bt_watch_back(&w[0]) && !bt_watch_back(&w[1]) &&
         mono_ms() - t0 < 2000)
    nap_ms(1);
  int k = bt_watch_back(&w[0]) ? 0 : 1; /* the woken one */
  nap_ms(300);
  check(rc == GM_OK && bt_watch_back(&w[k]) && w[k].rc == GM_OK &&
            w[k].returned * 1e3 - t0 <= WAKE_MS && row[k].exists &&
            !row[k].owner[0] && !bt_watch_back(&w[1 - k]),
        "%s: watch one: a release wakes one watcher in %.1f ms with the "
        "free row; the other waits on (rc %d, %d)",
        T->label, w[k].returned * 1e3 - t0, w[k].rc,
        bt_watch_back(&w[1 - k]));
  q = ireq(n, "node-b", 1, row[k].token, 0, 98);
  q.lease_us = 5000000;
  rc = o->acquire(c[k], &q, &g, &err);
  nap_ms(200);
  check(rc == GM_OK && !bt_watch_back(&w[1 - k]),
        "%s: watch one: the woken one acquires; the other still waits %s",
        T->label, err.msg);
  t0 = mono_ms();
  rc = o->release(c[k], n, "node-b", 98, g.token, &err);
  bt_watch_join(&w[1 - k]);
  check(rc == GM_OK && w[1 - k].rc == GM_OK &&
            w[1 - k].returned * 1e3 - t0 <= WAKE_MS,
        "%s: watch one: its release wakes the other in %.1f ms (<= %d)",
        T->label, w[1 - k].returned * 1e3 - t0, WAKE_MS);
  bt_watch_join(&w[k]);
  o->observe(c[1 - k], n, &g, &err); /* it does not acquire: lets go */
  /* a crash: a live lease left; both wake, one after the other */
  q = ireq(n, "node-c", 1, g.token, 0, 99);
  q.lease_us = 5000000;
  rc = o->acquire(m, &q, &g, &err);
  for (int i = 0; i < 2; i++)
    bt_watch_start(&w[i], c[i], n, 5000000, &row[i], NULL);
  t0 = mono_ms();
  o->close(m);
  m = NULL;
  for (int i = 0; i < 2; i++) bt_watch_join(&w[i]);
  double last = 1e3 * (w[0].returned > w[1].returned ? w[0].returned
                                                      : w[1].returned);
  check(rc == GM_OK && w[0].rc == GM_OK && w[1].rc == GM_OK &&
            last - t0 <= WAKE_MS && row[0].token == g.token &&
            row[1].token == g.token,
        "%s: watch one: a crashed holder's live lease wakes both watchers "
        "in %.1f ms (<= %d), with its row", T->label, last - t0, WAKE_MS);
out:
  for (int i = 0; i < 2; i++)
    if (c[i]) o->close(c[i]);
  if (m) o->close(m);
}

static void run_target(target *t) {
  gm_error err = {0};
  T = t;
  ops = t->ops = gm_backend_find(t->scheme, &err);
  if (!t->ops) {
    printf("skipped: %s: %s\n", t->label, err.msg);
    return;
  }
  int rc;
  if (!t->env) {
    gm_kv kv = {"path", t->sqlite_path};
    rc = t->ops->parse(&kv, 1, &t->cfg, &err);
  } else {
    gm_url u;
    rc = gm_url_parse(t->url, t->ops->url_raw, &u, &err);
    if (rc == GM_OK) {
      rc = t->ops->parse(u.kv, u.n, &t->cfg, &err);
      gm_url_free(&u);
    }
  }
  void *a = NULL, *b = NULL;
  if (rc == GM_OK) rc = t->ops->open(t->cfg, &a, &err);
  if (rc == GM_OK) rc = t->ops->open(t->cfg, &b, &err);
  if (check(rc == GM_OK, "%s: two connections open %s", t->label, err.msg)) {
    case_basic(a, b);
    case_takeover(a, b);
    case_tokens(a, b);
    case_instance(a, b);
    case_widest(a, b);
    case_vanished(a, b);
    case_clock(a, b);
    case_renew_many(a, b);
    case_race(a, b);
    case_wakeup(a);
    case_watch(a);
    case_watch_shared(a);
    case_watch_row(a);
    case_watch_one(a);
  }
  double t0 = mono_ms();
  if (a) t->ops->close(a);
  if (b) t->ops->close(b);
  printf("# %s: close of two connections: %.1f ms\n", t->label,
         mono_ms() - t0);
  if (t->cfg) t->ops->free_cfg(t->cfg);
}

int main(void) {
  static target targets[] = {
      {.label = "sqlite", .scheme = "sqlite"},
      {.label = "mysql", .scheme = "mysql", .env = "GOMASTER_TEST_MYSQL_URL"},
      {.label = "mongodb", .scheme = "mongodb",
       .env = "GOMASTER_TEST_MONGO_URL"},
      {.label = "postgres", .scheme = "postgres",
       .env = "GOMASTER_TEST_POSTGRES_URL"},
      {.label = "redis", .scheme = "redis", .env = "GOMASTER_TEST_REDIS_URL"},
  };
  char dir[] = "/tmp/gm-backend-test.XXXXXX";
  if (!mkdtemp(dir)) {
    printf("FAIL - mkdtemp\n0 passed, 1 failed\n");
    return 1;
  }
  snprintf(run, sizeof run, "%ld.%ld", (long)time(NULL), (long)getpid());
#ifdef HAVE_MONGOC
  mongoc_init();
#endif
  for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
    target *t = &targets[i];
    if (t->env) {
      t->url = getenv(t->env);
      if (!t->url || !*t->url) {
        printf("skipped: %s (%s not set)\n", t->label, t->env);
        continue;
      }
    } else {
      snprintf(t->sqlite_path, sizeof t->sqlite_path, "%s/t.db", dir);
    }
    run_target(t);
  }
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("could not remove %s\n", dir);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
