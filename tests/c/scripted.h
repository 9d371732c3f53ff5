/*
 * scripted.h: an in-process backend for the core's unit tests.
 *
 * A "database" (sc_db) keeps lock rows in memory under its own mutex, with a
 * clock of its own: CLOCK_MONOTONIC plus an offset that the test can step.
 * Each backend object made on it is a "node" (sc_node) with switches the test
 * flips per operation: normal, hang (block until the switch changes), or
 * fail with GM_ERR, or lose a race (GM_ERR, GM_E_CONFLICT). Every call is counted per node and operation.
 *
 * The rows follow the backend contract in src/backend.h: one conditional
 * write per acquire/renew/release, tokens max(row, min_token) + 1, a release
 * keeps the row. The backend is registered through gm_backend_new_ops with
 * the option "node" holding the sc_node's address.
 *
 * Header-only, for tests: every function is static.
 */
#ifndef GM_TEST_SCRIPTED_H
#define GM_TEST_SCRIPTED_H

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "timeutil.h"

#define SC_FN static __attribute__((unused))

enum {
  SC_OPEN,
  SC_OBSERVE,
  SC_ACQUIRE,
  SC_RENEW,
  SC_RELEASE,
  SC_CLOSE,
  SC_COMPLETE,
  SC_FORCE,
  SC_RENEW_MANY, /* ABI 3: sc_ops_fast only */
  SC_CHANGED,
  SC_WATCH,
  SC_NOPS
};
enum { SC_NORMAL = 0, SC_HANG, SC_FAIL, SC_CONFLICT, SC_BUSY };

typedef struct sc_row {
  struct sc_row *next;
  char name[GM_NAME_MAX];
  char owner[GM_ID_MAX];
  char version[GM_ID_MAX];
  uint64_t token;
  int64_t acquired_at, renewed_at, expires_at;
  int64_t done_at; /* µs since the epoch: a record for people */
  char done_by[GM_ID_MAX];
  uint64_t done_token;
  char result[GM_RESULT_MAX];
  int64_t holder; /* the handle of the node that was granted it */
  uint64_t instance; /* the elector instance granted it */
} sc_row;

typedef struct sc_db {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* broadcast whenever a switch changes */
  int64_t offset_us; /* database clock = CLOCK_MONOTONIC + offset */
  sc_row *rows;
  uint64_t version; /* grows with every write (PRAGMA data_version) */
  int next_handle;
  int gone[64]; /* gone[handle]: that node's process is dead */
  unsigned sessions_ended; /* grows when a holder's session ends (a
                            * crash): every watch wakes, as MySQL's
                            * GET_LOCK does when the holder's lock goes */
  struct sc_node *keeper; /* a woken watch_one watch kept the wake: other
                           * watches wait until this node acquires,
                           * observes, watches or closes */
} sc_db;

typedef struct sc_node {
  sc_db *db;
  int mode[SC_NOPS];       /* (db->mu) SC_NORMAL / SC_HANG / SC_FAIL */
  unsigned calls[SC_NOPS]; /* (db->mu) calls begun */
  int hanging[SC_NOPS];    /* (db->mu) calls blocked by SC_HANG right now */
  int conns;               /* (db->mu) connections open */
  int64_t handle;          /* its liveness handle in the rows it takes */
  uint64_t seen_version;   /* (db->mu) db->version at its last changed() */
  int interrupted;         /* (db->mu) interrupt() came: hanging calls fail */
  int many_untold;         /* (db->mu) renew_many: GM_NOT, cannot tell */
  int watch_at_once;       /* (db->mu) watch says "may have changed" at once,
                            * as a backend that cannot tell */
  int watch_row;           /* (db->mu) watch fills the row as it ends, as
                            * MySQL's does */
  int watch_one;           /* (db->mu) ... and wakes one watcher (see
                            * sc_db.keeper; sc_backend_watch_one) */
  int64_t watch_early_us;  /* (db->mu) a watch asked for more than twice
                            * this ends by its time this long before its
                            * timeout, as on a coarse server timer; a
                            * shorter one on time */
  char opt[32];            /* the "node" option: this struct's address */
  int latency_us;          /* each call's round trip (set before start) */
} sc_node;

SC_FN int64_t sc_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

SC_FN void sc_db_init(sc_db *db) {
  memset(db, 0, sizeof *db);
  pthread_mutex_init(&db->mu, NULL);
  gm_cond_init_mono(&db->cv);
}

SC_FN void sc_db_destroy(sc_db *db) {
  sc_row *r = db->rows;
  while (r) {
    sc_row *next = r->next;
    free(r);
    r = next;
  }
  db->rows = NULL;
  pthread_cond_destroy(&db->cv);
  pthread_mutex_destroy(&db->mu);
}

/* The database's now in µs; sc_now_locked wants db->mu held. */
SC_FN int64_t sc_now_locked(sc_db *db) { return sc_mono_us() + db->offset_us; }

SC_FN int64_t sc_now(sc_db *db) {
  pthread_mutex_lock(&db->mu);
  int64_t now = sc_now_locked(db);
  pthread_mutex_unlock(&db->mu);
  return now;
}

/* Steps the database clock by us (forward when positive). */
SC_FN void sc_step_clock(sc_db *db, int64_t us) {
  pthread_mutex_lock(&db->mu);
  db->offset_us += us;
  pthread_mutex_unlock(&db->mu);
}

/* Converts a database time to CLOCK_MONOTONIC µs. */
SC_FN int64_t sc_db_to_mono_us(sc_db *db, int64_t db_us) {
  pthread_mutex_lock(&db->mu);
  int64_t m = db_us - db->offset_us;
  pthread_mutex_unlock(&db->mu);
  return m;
}

SC_FN sc_row *sc_find(sc_db *db, const char *name) {
  for (sc_row *r = db->rows; r; r = r->next)
    if (strcmp(r->name, name) == 0) return r;
  return NULL;
}

/* Copies the row of lock name into *out; 0 when there is none. */
SC_FN int sc_get(sc_db *db, const char *name, sc_row *out) {
  pthread_mutex_lock(&db->mu);
  sc_row *r = sc_find(db, name);
  if (r) *out = *r;
  pthread_mutex_unlock(&db->mu);
  return r != NULL;
}

/* Removes the row of lock name (a wiped database). */
SC_FN void sc_delete(sc_db *db, const char *name) {
  pthread_mutex_lock(&db->mu);
  for (sc_row **p = &db->rows; *p; p = &(*p)->next)
    if (strcmp((*p)->name, name) == 0) {
      sc_row *r = *p;
      *p = r->next;
      free(r);
      break;
    }
  pthread_mutex_unlock(&db->mu);
}

/* Another node takes the lock by force: owner, token + 1, a fresh lease. */
SC_FN uint64_t sc_steal(sc_db *db, const char *name, const char *owner,
                        int64_t lease_us) {
  pthread_mutex_lock(&db->mu);
  sc_row *r = sc_find(db, name);
  uint64_t tok = 0;
  if (r) {
    int64_t now = sc_now_locked(db);
    snprintf(r->owner, sizeof r->owner, "%s", owner);
    tok = ++r->token;
    r->acquired_at = r->renewed_at = now;
    r->expires_at = now + lease_us;
    r->holder = -1;
    db->version++;
  }
  pthread_mutex_unlock(&db->mu);
  return tok;
}

SC_FN void sc_node_init(sc_node *n, sc_db *db) {
  memset(n, 0, sizeof *n);
  n->db = db;
  snprintf(n->opt, sizeof n->opt, "%p", (void *)n);
  pthread_mutex_lock(&db->mu);
  n->handle = db->next_handle++ % 64;
  pthread_mutex_unlock(&db->mu);
}

SC_FN void sc_set(sc_node *n, int op, int mode) {
  pthread_mutex_lock(&n->db->mu);
  n->mode[op] = mode;
  pthread_cond_broadcast(&n->db->cv);
  pthread_mutex_unlock(&n->db->mu);
}

SC_FN unsigned sc_calls(sc_node *n, int op) {
  pthread_mutex_lock(&n->db->mu);
  unsigned c = n->calls[op];
  pthread_mutex_unlock(&n->db->mu);
  return c;
}

SC_FN int sc_hanging(sc_node *n, int op) {
  pthread_mutex_lock(&n->db->mu);
  int h = n->hanging[op];
  pthread_mutex_unlock(&n->db->mu);
  return h;
}

/* Entry of every operation (db->mu taken and left held): counts the call,
 * blocks while the switch says hang, then GM_ERR if it says fail. */
SC_FN int sc_enter(sc_node *n, int op, const char *what, gm_error *err) {
  if (n->latency_us && op != SC_WATCH) usleep((useconds_t)n->latency_us);
  pthread_mutex_lock(&n->db->mu);
  n->calls[op]++;
  if (n->mode[op] == SC_HANG) {
    n->hanging[op]++;
    while (n->mode[op] == SC_HANG && !n->interrupted)
      pthread_cond_wait(&n->db->cv, &n->db->mu);
    n->hanging[op]--;
  }
  /* an interrupt ends the connection it came on, not the next one */
  if (n->mode[op] == SC_FAIL || (n->interrupted && op != SC_OPEN)) {
    pthread_mutex_unlock(&n->db->mu);
    gm_seterr(err, GM_E_DB, "scripted: %s failed", what);
    return GM_ERR;
  }
  if (n->mode[op] == SC_BUSY) { /* the server refuses connections */
    pthread_mutex_unlock(&n->db->mu);
    gm_seterr(err, GM_E_BUSY, "scripted: %s refused (%u)", what,
              n->calls[op]);
    return GM_ERR;
  }
  if (n->mode[op] == SC_CONFLICT) {
    pthread_mutex_unlock(&n->db->mu);
    gm_seterr(err, GM_E_CONFLICT, "scripted: %s lost a race", what);
    return GM_ERR;
  }
  return GM_OK;
}

/* ---- the ops -------------------------------------------------------------- */

SC_FN int sc_parse(const gm_kv *kv, size_t n, void **cfg, gm_error *err) {
  static const char *const keys[] = {"node", NULL};
  if (gm_kv_check_keys(kv, n, keys, "scripted", err)) return GM_ERR;
  const char *v = gm_kv_get(kv, n, "node");
  void *p = NULL;
  if (!v || sscanf(v, "%p", &p) != 1 || !p) {
    gm_seterr(err, GM_E_ARG, "scripted backend: option 'node' is required");
    return GM_ERR;
  }
  *cfg = p;
  return GM_OK;
}

SC_FN void sc_free_cfg(void *cfg) { (void)cfg; }

SC_FN void sc_describe(const void *cfg, char *buf, size_t len) {
  snprintf(buf, len, "scripted://%p", cfg);
}

SC_FN int sc_open(const void *cfg, void **conn, gm_error *err) {
  sc_node *n = (sc_node *)cfg;
  if (sc_enter(n, SC_OPEN, "open", err) != GM_OK) return GM_ERR;
  n->conns++;
  n->interrupted = 0;
  pthread_mutex_unlock(&n->db->mu);
  *conn = n;
  return GM_OK;
}

/* db->mu held: node n lets go the wake its watch kept, if it did. */
SC_FN void sc_let_go(sc_node *n) {
  if (n->db->keeper != n) return;
  n->db->keeper = NULL;
  pthread_cond_broadcast(&n->db->cv);
}

SC_FN void sc_close(void *conn) {
  sc_node *n = conn;
  pthread_mutex_lock(&n->db->mu);
  sc_let_go(n);
  n->calls[SC_CLOSE]++;
  n->conns--;
  pthread_mutex_unlock(&n->db->mu);
}

SC_FN void sc_fill(gm_row *out, const sc_row *r, int64_t now) {
  memset(out, 0, sizeof *out);
  out->now = now;
  if (!r) return;
  out->exists = 1;
  snprintf(out->owner, sizeof out->owner, "%s", r->owner);
  snprintf(out->version, sizeof out->version, "%s", r->version);
  out->token = r->token;
  out->acquired_at = r->acquired_at;
  out->renewed_at = r->renewed_at;
  out->expires_at = r->expires_at;
  out->done_at = r->done_at;
  snprintf(out->done_by, sizeof out->done_by, "%s", r->done_by);
  out->done_token = r->done_token;
  snprintf(out->result, sizeof out->result, "%s", r->result);
  out->holder = r->holder;
  out->instance = r->instance;
}

SC_FN int sc_observe(void *conn, const char *name, gm_row *out,
                      gm_error *err) {
  sc_node *n = conn;
  if (sc_enter(n, SC_OBSERVE, "observe", err) != GM_OK) return GM_ERR;
  sc_let_go(n);
  sc_fill(out, sc_find(n->db, name), sc_now_locked(n->db));
  pthread_mutex_unlock(&n->db->mu);
  return GM_OK;
}

/* Writes node n's grant into row r (db->mu held). */
SC_FN void sc_grant(sc_node *n, sc_row *r, const gm_acquire_req *q,
                    int64_t now, gm_row *out) {
  r->token = (r->token > q->min_token ? r->token : q->min_token) + 1;
  snprintf(r->owner, sizeof r->owner, "%s", q->owner);
  snprintf(r->version, sizeof r->version, "%s", q->version);
  r->instance = q->instance;
  r->acquired_at = r->renewed_at = now;
  r->expires_at = now + q->lease_us;
  r->holder = n->handle;
  n->db->version++;
  pthread_cond_broadcast(&n->db->cv); /* for watch */
  sc_fill(out, r, now);
}

SC_FN int sc_acquire(void *conn, const gm_acquire_req *q, gm_row *out,
                      gm_error *err) {
  sc_node *n = conn;
  if (sc_enter(n, SC_ACQUIRE, "acquire", err) != GM_OK) return GM_ERR;
  sc_db *db = n->db;
  int64_t now = sc_now_locked(db);
  sc_row *r = sc_find(db, q->name);
  int rc = GM_NOT;
  if (!q->expect_exists && !r) {
    r = calloc(1, sizeof *r);
    if (!r) {
      pthread_mutex_unlock(&db->mu);
      gm_seterr(err, GM_E_NOMEM, "scripted: out of memory");
      return GM_ERR;
    }
    snprintf(r->name, sizeof r->name, "%s", q->name);
    r->token = q->min_token;
    r->next = db->rows;
    db->rows = r;
    rc = GM_OK;
  } else if (q->expect_exists && r && r->token == q->expect_token &&
             r->expires_at <= now) {
    rc = GM_OK;
  }
  if (rc == GM_OK) sc_grant(n, r, q, now, out);
  sc_let_go(n); /* after the write: a watcher it wakes reads the grant */
  pthread_mutex_unlock(&db->mu);
  return rc;
}

SC_FN int sc_renew(void *conn, const char *name, const char *owner,
                    uint64_t instance, uint64_t token, int64_t lease_us,
                    gm_row *out, gm_error *err) {
  sc_node *n = conn;
  if (sc_enter(n, SC_RENEW, "renew", err) != GM_OK) return GM_ERR;
  int64_t now = sc_now_locked(n->db);
  sc_row *r = sc_find(n->db, name);
  int rc = GM_NOT;
  if (r && strcmp(r->owner, owner) == 0 && r->instance == instance &&
      r->token == token) {
    r->renewed_at = now;
    r->expires_at = now + lease_us;
    n->db->version++;
    sc_fill(out, r, now);
    rc = GM_OK;
  }
  pthread_mutex_unlock(&n->db->mu);
  return rc;
}

SC_FN int sc_release(void *conn, const char *name, const char *owner,
                      uint64_t instance, uint64_t token, gm_error *err) {
  sc_node *n = conn;
  if (sc_enter(n, SC_RELEASE, "release", err) != GM_OK) return GM_ERR;
  sc_row *r = sc_find(n->db, name);
  int rc = GM_NOT;
  if (r && strcmp(r->owner, owner) == 0 && r->instance == instance &&
      r->token == token) {
    r->owner[0] = '\0';
    r->expires_at = sc_now_locked(n->db);
    n->db->version++;
    pthread_cond_broadcast(&n->db->cv); /* for watch */
    rc = GM_OK;
  }
  pthread_mutex_unlock(&n->db->mu);
  return rc;
}

SC_FN int sc_complete(void *conn, const char *name, const char *owner,
                      uint64_t instance, uint64_t token, const char *result,
                      gm_error *err) {
  sc_node *n = conn;
  if (sc_enter(n, SC_COMPLETE, "complete", err) != GM_OK) return GM_ERR;
  sc_row *r = sc_find(n->db, name);
  int rc = GM_NOT;
  if (r && strcmp(r->owner, owner) == 0 && r->token == token &&
      (!instance || r->instance == instance)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->done_at = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    snprintf(r->done_by, sizeof r->done_by, "%s", owner);
    r->done_token = token;
    snprintf(r->result, sizeof r->result, "%s", result);
    rc = GM_OK;
  }
  pthread_mutex_unlock(&n->db->mu);
  return rc;
}

SC_FN int sc_force_release(void *conn, const char *name, int at_once,
                           gm_row *out, gm_error *err) {
  sc_node *n = conn;
  if (sc_enter(n, SC_FORCE, "force_release", err) != GM_OK) return GM_ERR;
  sc_row *r = sc_find(n->db, name);
  int64_t now = sc_now_locked(n->db);
  if (r) {
    r->owner[0] = '\0';
    r->instance = 0; /* no holder's key: the core applies the two-clock rule */
    r->token++;
    if (at_once || r->expires_at < now) r->expires_at = now;
    sc_fill(out, r, now);
  }
  pthread_mutex_unlock(&n->db->mu);
  return r ? GM_OK : GM_NOT;
}

static const gm_backend_ops sc_ops __attribute__((unused)) = {
    .abi = GM_BACKEND_ABI,
    .name = "scripted",
    .url_raw = 1,
    .parse = sc_parse,
    .free_cfg = sc_free_cfg,
    .describe = sc_describe,
    .open = sc_open,
    .close = sc_close,
    .observe = sc_observe,
    .acquire = sc_acquire,
    .renew = sc_renew,
    .release = sc_release,
    .complete = sc_complete,
    .force_release = sc_force_release,
};

/* ---- ABI 3: batch renewal, dead holders, change polling --------------- */

/* The node's process "dies": the kernel would drop its file lock, so
 * holder_gone reports its handle gone. (Its thread still runs: hang its
 * renewals to stop it writing, as a dead process would.) */
SC_FN void sc_mark_gone(sc_node *n) {
  pthread_mutex_lock(&n->db->mu);
  n->db->gone[n->handle] = 1;
  pthread_mutex_unlock(&n->db->mu);
}

SC_FN int sc_renew_many(void *conn, gm_renew_req *q, size_t cnt,
                        gm_error *err) {
  sc_node *n = conn;
  if (sc_enter(n, SC_RENEW_MANY, "renew_many", err) != GM_OK) return GM_ERR;
  if (n->many_untold) {
    pthread_mutex_unlock(&n->db->mu);
    return GM_NOT;
  }
  int64_t now = sc_now_locked(n->db);
  for (size_t i = 0; i < cnt; i++) {
    sc_row *r = sc_find(n->db, q[i].name);
    q[i].rc = GM_NOT;
    if (r && strcmp(r->owner, q[i].owner) == 0 &&
        r->instance == q[i].instance && r->token == q[i].token) {
      r->renewed_at = q[i].renewed_at = q[i].now = now;
      r->expires_at = q[i].expires_at = now + q[i].lease_us;
      q[i].rc = GM_OK;
    }
  }
  n->db->version++;
  pthread_mutex_unlock(&n->db->mu);
  return GM_OK;
}

SC_FN int sc_holder_gone(void *conn, int64_t holder, gm_error *err) {
  sc_node *n = conn;
  (void)err;
  pthread_mutex_lock(&n->db->mu);
  int gone = holder >= 0 && holder < 64 && holder != n->handle &&
             n->db->gone[holder];
  pthread_mutex_unlock(&n->db->mu);
  return gone ? GM_OK : GM_NOT;
}

SC_FN int sc_acquire_dead(void *conn, const gm_acquire_req *q, int64_t holder,
                          gm_row *out, gm_error *err) {
  sc_node *n = conn;
  if (sc_enter(n, SC_ACQUIRE, "acquire", err) != GM_OK) return GM_ERR;
  sc_db *db = n->db;
  int64_t now = sc_now_locked(db);
  sc_row *r = sc_find(db, q->name);
  int rc = GM_NOT;
  if (r && r->token == q->expect_token && r->holder == holder &&
      holder >= 0 && holder < 64 && db->gone[holder]) {
    sc_grant(n, r, q, now, out);
    rc = GM_OK;
  }
  pthread_mutex_unlock(&db->mu);
  return rc;
}

/* ABI 4: every call that hangs now, or begins before the next open, fails. */
SC_FN void sc_interrupt(void *conn) {
  sc_node *n = conn;
  pthread_mutex_lock(&n->db->mu);
  n->interrupted = 1;
  pthread_cond_broadcast(&n->db->cv);
  pthread_mutex_unlock(&n->db->mu);
}

SC_FN int sc_changed(void *conn, gm_error *err) {
  sc_node *n = conn;
  if (sc_enter(n, SC_CHANGED, "changed", err) != GM_OK) return GM_ERR;
  int changed = n->seen_version != n->db->version;
  n->seen_version = n->db->version;
  pthread_mutex_unlock(&n->db->mu);
  return changed ? GM_OK : GM_NOT;
}

/* Blocks until lock name's owner or token moves (a release, a grant), the
 * timeout, or interrupt(); then, with watch_row, fills *row as it is. */
SC_FN int sc_watch(void *conn, const char *name, int64_t timeout_us,
                   gm_row *row, gm_error *err) {
  sc_node *n = conn;
  if (sc_enter(n, SC_WATCH, "watch", err) != GM_OK) return GM_ERR;
  sc_db *db = n->db;
  sc_let_go(n);
  if (timeout_us > 2 * n->watch_early_us) timeout_us -= n->watch_early_us;
  int64_t until = gm_mono_ns() + timeout_us * 1000;
  sc_row *r = sc_find(db, name);
  char owner[GM_ID_MAX];
  uint64_t token = r ? r->token : 0;
  snprintf(owner, sizeof owner, "%s", r ? r->owner : "");
  unsigned ended = db->sessions_ended;
  int rc = n->watch_at_once ? GM_OK : GM_NOT;
  for (; rc == GM_NOT;) {
    r = sc_find(db, name);
    if (n->interrupted) {
      gm_seterr(err, GM_E_DB, "scripted: watch interrupted");
      rc = GM_ERR;
      break;
    }
    if ((!r || r->token != token || strcmp(r->owner, owner) != 0 ||
         db->sessions_ended != ended) &&
        !db->keeper) {
      rc = GM_OK;
      break;
    }
    if (gm_mono_ns() >= until) break;
    n->hanging[SC_WATCH]++;
    gm_cond_wait_until(&db->cv, &db->mu, until);
    n->hanging[SC_WATCH]--;
  }
  if (rc != GM_ERR && row && n->watch_row)
    sc_fill(row, sc_find(db, name), sc_now_locked(db));
  /* watch_one: woken with a free-looking row, it keeps the wake */
  if (rc == GM_OK && row && row->now && n->watch_one &&
      (!row->exists || !row->owner[0] || row->expires_at <= row->now))
    db->keeper = n;
  pthread_mutex_unlock(&db->mu);
  return rc;
}

/* The holder's session ends (its process crashed): every watch wakes,
 * the rows stay as they are. */
SC_FN void sc_end_session(sc_db *db) {
  pthread_mutex_lock(&db->mu);
  db->sessions_ended++;
  pthread_cond_broadcast(&db->cv);
  pthread_mutex_unlock(&db->mu);
}

/* A backend object for node n with the ops of the core's wake-up thread:
 * watch and interrupt, no changed() polling; shared: watch allowed on the
 * election connection too (watch_shared), so that a node whose followers
 * wait on one lock keeps one connection; shared 2: as 1, but the watch
 * tells of releases only (watch_crash 0, as Redis's and MongoDB's);
 * shared 3: as 2, and the backend says its watch may end by its time up to
 * SC_WATCH_EARLY_US before its timeout (watch_early_us: Redis's timer
 * tick; sc_node.watch_early_us says how early it does). */
#define SC_WATCH_EARLY_US 100000
SC_FN gm_backend *sc_backend_watch_as(sc_node *n, int shared, gm_error *err) {
  static gm_backend_ops w[4]; /* sc_ops plus these: made on first use */
  gm_backend_ops *o = &w[shared < 0 ? 0 : shared > 3 ? 3 : shared];
  if (!o->name) {
    *o = sc_ops;
    o->renew_many = sc_renew_many;
    o->interrupt = sc_interrupt;
    o->watch = sc_watch;
    o->watch_shared = shared != 0;
    o->watch_crash = shared < 2;
    o->watch_early_us = shared == 3 ? SC_WATCH_EARLY_US : 0;
    o->name = shared == 3   ? "scripted-early"
              : shared == 2 ? "scripted-releases"
              : shared      ? "scripted-shared"
                            : "scripted-watch";
  }
  gm_kv kv = {"node", n->opt};
  return gm_backend_new_ops(o, &kv, 1, err);
}

/* As sc_backend_watch_as(n, 1), with watch_one: a release wakes one
 * watcher, which keeps the wake while its row looks free. */
SC_FN gm_backend *sc_backend_watch_one(sc_node *n, gm_error *err) {
  static gm_backend_ops o;
  if (!o.name) {
    o = sc_ops;
    o.renew_many = sc_renew_many;
    o.interrupt = sc_interrupt;
    o.watch = sc_watch;
    o.watch_shared = o.watch_one = o.watch_crash = 1;
    o.name = "scripted-one";
  }
  n->watch_row = n->watch_one = 1;
  gm_kv kv = {"node", n->opt};
  return gm_backend_new_ops(&o, &kv, 1, err);
}

SC_FN gm_backend *sc_backend_watch(sc_node *n, gm_error *err) {
  return sc_backend_watch_as(n, 0, err);
}

/* A backend object for node n with the ABI 3 ops. */
SC_FN gm_backend *sc_backend_fast(sc_node *n, gm_error *err) {
  static gm_backend_ops fast; /* sc_ops plus these: made on first use */
  if (!fast.name) {
    fast = sc_ops;
    fast.renew_many = sc_renew_many;
    fast.holder_gone = sc_holder_gone;
    fast.acquire_dead = sc_acquire_dead;
    fast.changed = sc_changed;
    fast.interrupt = sc_interrupt;
    fast.poll_us = 10000;
    fast.name = "scripted-fast";
  }
  gm_kv kv = {"node", n->opt};
  return gm_backend_new_ops(&fast, &kv, 1, err);
}

/* Makes a backend object (one thread, one "connection") for node n. */
SC_FN gm_backend *sc_backend(sc_node *n, gm_error *err) {
  gm_kv kv = {"node", n->opt};
  return gm_backend_new_ops(&sc_ops, &kv, 1, err);
}

#endif
