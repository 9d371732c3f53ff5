/*
 * test_sqlite_backend.c: drives gm_sqlite_ops directly on a database file in
 * a fresh temporary directory: an operator's release (force_release) and
 * the largest token. One line per check, then "N passed, N failed".
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"

extern const gm_backend_ops gm_sqlite_ops;
static const gm_backend_ops *ops = &gm_sqlite_ops;

static char path[256];

static gm_acquire_req req(const char *name, const char *owner, int exists,
                          uint64_t expect, int64_t lease_us) {
  return (gm_acquire_req){.name = name, .owner = owner, .version = "1.0",
                          .lease_us = lease_us, .expect_exists = exists,
                          .expect_token = expect};
}

/* Runs one statement on the database outside the backend (an operator). */
static int edit(const char *sql) {
  sqlite3 *db;
  int rc = sqlite3_open(path, &db);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  sqlite3_close(db);
  return rc == SQLITE_OK ? GM_OK : GM_ERR;
}

/* release --force of a live holder: the token moves on, the lease stays. */
static void test_force_keeps_lease(void *a, void *b) {
  gm_error err = {0};
  gm_row r, o;
  const int64_t L = 5000000;
  gm_acquire_req q = req("force", "node-a", 0, 0, L);
  q.instance = 7; /* the holder's key, which a forced release must drop */
  int rc = ops->acquire(a, &q, &r, &err);
  check(rc == GM_OK && r.token == 1, "node-a holds the lock");
  int64_t lease_end = r.expires_at;

  rc = ops->force_release(b, "force", 0, &o, &err);
  check(rc == GM_OK && o.exists && o.owner[0] == '\0' && o.token == 2 &&
            o.expires_at == lease_end && o.expires_at > o.now,
        "force_release: owner '', token + 1 (%llu), the old lease kept "
        "(%lld us left)",
        (unsigned long long)o.token, (long long)(o.expires_at - o.now));
  check(o.instance == 0, "force_release writes no holder's key (instance %llu): "
        "followers take it only under the two-clock rule",
        (unsigned long long)o.instance);
  rc = ops->renew(a, "force", "node-a", 0, 1, L, &r, &err);
  check(rc == GM_NOT, "the old holder's renewal after it: GM_NOT");
  rc = ops->release(a, "force", "node-a", 0, 1, &err);
  check(rc == GM_NOT, "nor can it release");
  rc = ops->observe(b, "force", &o, &err);
  check(rc == GM_OK && o.token == 2 && o.expires_at == lease_end &&
            o.owner[0] == '\0',
        "the row stays as the release made it");

  rc = ops->force_release(b, "force", 1, &o, &err);
  check(rc == GM_OK && o.token == 3 && o.expires_at <= o.now,
        "force_release now: the lease ends at once (token %llu)",
        (unsigned long long)o.token);
  q = req("force", "node-b", 1, 3, L);
  rc = ops->acquire(b, &q, &r, &err);
  check(rc == GM_OK && r.token == 4, "and the lock is taken at once");
  rc = ops->release(b, "force", "node-b", 0, 4, &err);
  rc = ops->force_release(a, "force", 0, &o, &err);
  check(rc == GM_OK && o.token == 5 && o.expires_at <= o.now,
        "force_release of a released lock: no lease to keep");
  rc = ops->force_release(a, "never-held", 0, &o, &err);
  check(rc == GM_NOT, "force_release of a lock without a row: GM_NOT");
}

/* No token past INT64_MAX: refused, and said so through the core. */
static void test_force_token_limit(void *a) {
  gm_error err = {0};
  gm_row r;
  gm_acquire_req q = req("max", "node-a", 0, 0, 5000000);
  int rc = ops->acquire(a, &q, &r, &err);
  rc = rc == GM_OK ? edit("UPDATE gomaster_locks SET token ="
                          " 9223372036854775807 WHERE name = 'max'")
                   : rc;
  check(rc == GM_OK, "an operator set the token to INT64_MAX");
  rc = ops->force_release(a, "max", 0, &r, &err);
  check(rc == GM_NOT, "force_release at INT64_MAX: GM_NOT");
  rc = ops->observe(a, "max", &r, &err);
  check(rc == GM_OK && r.token == 9223372036854775807ull &&
            strcmp(r.owner, "node-a") == 0,
        "the row is unchanged, an integer (token %llu)",
        (unsigned long long)r.token);

  gm_kv kv = {"path", path};
  gm_backend *b = gm_backend_new("sqlite", &kv, 1, &err);
  gm_lock_info li;
  rc = b ? gm_backend_force_release(b, "max", &li, &err) : GM_OK;
  check(rc == GM_ERR && strstr(err.msg, "largest") &&
            strstr(err.msg, "9223372036854775807"),
        "gm_backend_force_release says the token is at its largest: %s",
        err.msg);
  gm_backend_unref(b);
}

/* A table made beforehand: integer columns must be integers; extra
 * columns are someone else's. */
static void test_premade_tables(void) {
  static const struct {
    const char *table, *token_type, *extra;
    int ok;
  } cases[] = {
      {"gm_real", "REAL", "", 0},
      {"gm_text", "TEXT", "", 0},
      {"gm_bigint", "BIGINT", ", note TEXT, hits INTEGER DEFAULT 0", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char sql[768];
    snprintf(sql, sizeof sql,
             "CREATE TABLE %s (name TEXT PRIMARY KEY, owner TEXT NOT NULL"
             " DEFAULT '', token %s NOT NULL, version TEXT NOT NULL DEFAULT"
             " '', acquired_at INTEGER NOT NULL, renewed_at INTEGER NOT NULL,"
             " expires_at INTEGER NOT NULL, boot_id TEXT NOT NULL, done_at"
             " INTEGER NOT NULL DEFAULT 0, done_by TEXT NOT NULL DEFAULT '',"
             " done_token INTEGER NOT NULL DEFAULT 0, result TEXT NOT NULL"
             " DEFAULT ''%s)",
             cases[i].table, cases[i].token_type, cases[i].extra);
    gm_kv kv[] = {{"path", path}, {"table", cases[i].table}};
    void *cfg = NULL, *conn = NULL;
    gm_error err = {0};
    int rc = edit(sql);
    if (rc == GM_OK) rc = ops->parse(kv, 2, &cfg, &err);
    if (rc == GM_OK) rc = ops->open(cfg, &conn, &err);
    if (cases[i].ok)
      check(rc == GM_OK, "a table made beforehand with token %s and extra "
                         "columns is used %s",
            cases[i].token_type, err.msg);
    else
      check(rc == GM_ERR && strstr(err.msg, "column 'token'") &&
                strstr(err.msg, "INTEGER"),
            "a table made beforehand with token %s is refused naming the "
            "column: %s",
            cases[i].token_type, err.msg);
    if (conn) ops->close(conn);
    if (cfg) ops->free_cfg(cfg);
  }
}

/* Many processes open one new file at the same instant: one of them
 * switches it to WAL while the others' switch is refused at once (SQLite
 * calls no busy handler there). The backend says so as a lost race and the
 * core opens again: every process gets its connection. */
static int new_file_round(const char *dir, int round, int n) {
  char file[300];
  snprintf(file, sizeof file, "%s/race%d.db", dir, round);
  int go[2];
  if (pipe(go) != 0) return 0;
  pid_t pids[64];
  for (int i = 0; i < n; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      close(go[1]);
      char c;
      if (read(go[0], &c, 1) != 0) _exit(3); /* the parent closes it: go */
      gm_kv kv = {"path", file};
      gm_error err = {0};
      gm_backend *b = gm_backend_new("sqlite", &kv, 1, &err);
      int rc = b ? gm_backend_check(b, &err) : GM_ERR;
      if (rc != GM_OK) printf("# round %d, child %d: %s\n", round, i, err.msg);
      fflush(stdout);
      _exit(rc == GM_OK ? 0 : 1);
    }
  }
  close(go[0]);
  close(go[1]); /* every child reads EOF at once */
  int ok = 0;
  for (int i = 0; i < n; i++) {
    int st = 0;
    if (pids[i] > 0 && waitpid(pids[i], &st, 0) == pids[i] &&
        WIFEXITED(st) && WEXITSTATUS(st) == 0)
      ok++;
  }
  return ok;
}

static void test_new_file_race(const char *dir) {
  enum { ROUNDS = 30, N = 24 };
  int ok = 0;
  for (int r = 0; r < ROUNDS; r++) ok += new_file_round(dir, r, N);
  check(ok == ROUNDS * N, "%d rounds of %d processes opening one new file "
        "at once: %d of %d connected", ROUNDS, N, ok, ROUNDS * N);
}

int main(void) {
  char dir[] = "/tmp/gm-sqlite-test.XXXXXX";
  if (!mkdtemp(dir)) {
    printf("FAIL - mkdtemp\n0 passed, 1 failed\n");
    return 1;
  }
  snprintf(path, sizeof path, "%s/t.db", dir);
  gm_kv kv = {"path", path};
  void *cfg = NULL, *a = NULL, *b = NULL;
  gm_error err = {0};
  int rc = ops->parse(&kv, 1, &cfg, &err);
  if (rc == GM_OK) rc = ops->open(cfg, &a, &err);
  if (rc == GM_OK) rc = ops->open(cfg, &b, &err);
  check(rc == GM_OK, "open two connections on %s %s", path, err.msg);
  if (rc == GM_OK) {
    test_force_keeps_lease(a, b);
    test_force_token_limit(a);
    test_premade_tables();
    test_new_file_race(dir);
  }
  if (a) ops->close(a);
  if (b) ops->close(b);
  if (cfg) ops->free_cfg(cfg);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("could not remove %s\n", dir);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
