/*
 * test_galera.c: gm_mysql_ops on a 3-node Galera cluster
 * (GOMASTER_TEST_GALERA_URLS and _PORTS, from tests/servers/galera.sh; run
 * by tests/integration/galera.sh). Opens of host lists that name the
 * nodes in different orders all land on one node. Two connections on two Galera nodes race
 * to take the same expired row, many times: each race has exactly one
 * winner, and the loser's certification conflict (1213) is a lost race
 * (GM_NOT), never an error. One line per check, then "N passed, N failed".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mysql.h>

#include "backend.h"
#include "check.h"
#include "url.h"

extern const gm_backend_ops gm_mysql_ops;
static const gm_backend_ops *ops = &gm_mysql_ops;

#define ROUNDS 40

typedef struct racer {
  void *conn;
  const char *owner;
  const char *name;
  uint64_t expect;
  int rc;
  gm_error err;
} racer;

static pthread_barrier_t start_line;

static void *race(void *arg) {
  racer *r = arg;
  gm_acquire_req q = {.name = r->name, .owner = r->owner, .version = "1",
                      .lease_us = 10000000, .expect_exists = 1,
                      .expect_token = r->expect, .min_token = r->expect,
                      .instance = (uint64_t)(r->owner[0])};
  gm_row row;
  memset(&r->err, 0, sizeof r->err);
  pthread_barrier_wait(&start_line);
  r->rc = ops->acquire(r->conn, &q, &row, &r->err);
  return NULL;
}

/* wsrep_local_cert_failures + wsrep_local_bf_aborts of the server on port,
 * as the test user; -1 when it cannot be read. */
static long long conflicts(const gm_url *u, unsigned port) {
  MYSQL *db = mysql_init(NULL);
  long long n = -1;
  if (db && mysql_real_connect(db, "127.0.0.1", gm_kv_get(u->kv, u->n, "user"),
                               gm_kv_get(u->kv, u->n, "password"), NULL, port,
                               NULL, 0) &&
      mysql_query(db, "SHOW GLOBAL STATUS WHERE Variable_name IN "
                      "('wsrep_local_cert_failures', 'wsrep_local_bf_aborts')")
          == 0) {
    MYSQL_RES *res = mysql_store_result(db);
    MYSQL_ROW row;
    n = 0;
    while (res && (row = mysql_fetch_row(res))) n += atoll(row[1]);
    if (res) mysql_free_result(res);
  }
  if (db) mysql_close(db);
  return n;
}

/* Opens URL number i (0-based) of the space-separated list; with `one`,
 * on its first host alone. */
static int open_url(const char *list, int i, int one, gm_url *u, void **cfg,
                    void **conn) {
  char buf[1024];
  gm_error err = {0};
  const char *s = list;
  for (int k = 0; k < i && s; k++) {
    s = strchr(s, ' ');
    if (s) s++;
  }
  if (!s) return GM_ERR;
  int len = (int)strcspn(s, " ");
  const char *comma = memchr(s, ',', (size_t)len);
  const char *slash = comma ? memchr(comma, '/', (size_t)(s + len - comma))
                            : NULL;
  if (one && slash)
    snprintf(buf, sizeof buf, "%.*s%.*s", (int)(comma - s), s,
             (int)(s + len - slash), slash);
  else
    snprintf(buf, sizeof buf, "%.*s", len, s);
  if (gm_url_parse(buf, 0, u, &err) || ops->parse(u->kv, u->n, cfg, &err) ||
      ops->open(*cfg, conn, &err)) {
    printf("# url %d: %s\n", i + 1, err.msg);
    return GM_ERR;
  }
  return GM_OK;
}

int main(void) {
  const char *urls = getenv("GOMASTER_TEST_GALERA_URLS");
  const char *ports = getenv("GOMASTER_TEST_GALERA_PORTS");
  if (!urls || !*urls || !ports) {
    printf("skipped: GOMASTER_TEST_GALERA_URLS not set "
           "(tests/integration/galera.sh)\n0 passed, 0 failed\n");
    return 0;
  }
  unsigned p1 = 0, p2 = 0;
  sscanf(ports, "%u %u", &p1, &p2);
  gm_url u1 = {0}, u2 = {0}; /* gm_url_free takes these as they are */
  void *cfg1 = NULL, *cfg2 = NULL, *c1 = NULL, *c2 = NULL;
  char desc[512], on[64], agreed[64] = "";

  /* URL i names every node, node i first: every open lands on the same
   * Galera node (the cluster's member index 0), whatever its own first */
  int same = 1;
  for (int i = 0; i < 3; i++) {
    gm_url u = {0};
    void *cfg = NULL, *conn = NULL;
    if (open_url(urls, i, 0, &u, &cfg, &conn) != GM_OK) {
      same = 0;
    } else {
      ops->describe(cfg, desc, sizeof desc);
      const char *at = strstr(desc, "(on ");
      if (i == 0 && at) snprintf(agreed, sizeof agreed, "%s", at);
      same = same && at && strcmp(at, agreed) == 0;
      printf("# url %d: %s\n", i + 1, at ? at : desc);
    }
    if (conn) ops->close(conn);
    if (cfg) ops->free_cfg(cfg);
    gm_url_free(&u);
  }
  check(same && agreed[0], "URLs with every node, each its own first, all "
        "open on one Galera node %s", agreed);

  /* the race: one connection on node 1 alone, one on node 2 alone */
  int ok1 = open_url(urls, 0, 1, &u1, &cfg1, &c1) == GM_OK;
  int ok2 = open_url(urls, 1, 1, &u2, &cfg2, &c2) == GM_OK;
  check(ok1 && ok2, "open on Galera nodes 1 and 2");
  if (!ok1 || !ok2) goto out;

  ops->describe(cfg2, desc, sizeof desc);
  snprintf(on, sizeof on, "127.0.0.1:%u/", p2);
  check(strstr(desc, on) != NULL, "the second connection is on node 2: %s",
        desc);

  char name[64];
  snprintf(name, sizeof name, "race-%ld-%ld", (long)time(NULL), (long)getpid());
  gm_acquire_req first = {.name = name, .owner = "seed", .version = "1",
                          .lease_us = 1000000, .instance = 1};
  gm_row row;
  gm_error err = {0};
  check(ops->acquire(c1, &first, &row, &err) == GM_OK, "create the row %s",
        err.msg);

  long long before = conflicts(&u1, p1) + conflicts(&u2, p2);
  int errors = 0, wins_ok = 0, rounds = 0;
  char first_err[GM_ERRMSG_MAX] = "";
  pthread_barrier_init(&start_line, NULL, 2);
  for (int i = 0; i < ROUNDS; i++) {
    /* expired now, by node 1; node 2 reads it once it has it */
    if (ops->force_release(c1, name, 1, &row, &err) != GM_OK) {
      check(0, "force release: %s", err.msg);
      break;
    }
    uint64_t tok = row.token;
    gm_row seen = {0};
    for (int k = 0; k < 200 && seen.token != tok; k++) {
      if (ops->observe(c2, name, &seen, &err) != GM_OK) break;
      if (seen.token != tok) usleep(5000);
    }
    racer a = {.conn = c1, .owner = "a", .name = name, .expect = tok};
    racer b = {.conn = c2, .owner = "b", .name = name, .expect = tok};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, race, &a);
    pthread_create(&tb, NULL, race, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    rounds++;
    if (a.rc == GM_ERR || b.rc == GM_ERR) {
      errors++;
      if (!first_err[0])
        snprintf(first_err, sizeof first_err, "%s",
                 a.rc == GM_ERR ? a.err.msg : b.err.msg);
    }
    wins_ok += (a.rc == GM_OK) + (b.rc == GM_OK) == 1;
  }
  pthread_barrier_destroy(&start_line);
  long long after = conflicts(&u1, p1) + conflicts(&u2, p2);
  printf("# %d races, %lld certification conflicts or aborts on nodes 1-2\n",
         rounds, before >= 0 && after >= 0 ? after - before : -1);
  check(errors == 0, "no race ends in an error (%d did: %s)", errors,
        first_err);
  check(wins_ok == rounds, "every race has exactly one winner (%d of %d)",
        wins_ok, rounds);

out:
  if (c1) ops->close(c1);
  if (c2) ops->close(c2);
  if (cfg1) ops->free_cfg(cfg1);
  if (cfg2) ops->free_cfg(cfg2);
  gm_url_free(&u1);
  gm_url_free(&u2);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
