/*
 * elector.c: the election core. One background thread per backend object runs
 * the state machine of every elector (lock) made on it; it never calls Lua.
 *
 * Locking. Each backend has one mutex, b->mu. It guards the fields marked
 * (mu) below, in the backend and in each of its electors, and the pieces of
 * elector state that the API and the thread share: the event queue, the
 * counters, the last leader seen. Two fields are atomics read without the
 * lock: e->master_until and e->token (written under mu, so writers agree).
 * Fields marked (thread) belong to the backend's thread alone: the
 * connection and the per-lock election state. No database call is ever made
 * with mu held.
 *
 * Lifetimes. No API call waits for the database: stop() and close() ask
 * the thread to release and wait for it at most STOP_WAIT_NS, and free()
 * and the last gm_backend_unref() leave to the thread whatever it still
 * does. An elector the thread still has (e->active) when it is freed is
 * marked orphan and freed by the thread once its stop step is done; a
 * backend whose thread runs when its last reference goes is marked orphan,
 * its blocking call interrupted (ops->interrupt on b->live_conn), and freed
 * by the thread when no elector is left. A database call is therefore
 * never made on memory the API freed.
 *
 * Waiting. With nothing due, the thread sleeps on b->wake until its next
 * step, or (ops->watch_shared, its followers waiting on one lock, no
 * master) blocks in ops->watch on its own connection until then
 * (watch_step; b->watching). Every API call that gives it work goes
 * through kick(), which also interrupts such a watch at once.
 *
 * Time. Local times are CLOCK_MONOTONIC nanoseconds ("mono"); database times
 * are microseconds on the database's clock ("db"). The two are only ever
 * compared through differences measured on each.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "fastpath.h"
#include "timeutil.h"
#include "url.h"

#define NS GM_NS_PER_S
#define US_PER_NS GM_NS_PER_US
/* Slack allowed between the database clock and ours over one span, on top of
 * half the round trips of the two reads compared. */
#define STEP_TOL_US 20000LL
/* How long stop() and close() wait for the thread's release: a release that
 * takes longer goes on in the background. */
#define STOP_WAIT_NS (20 * 1000000LL)

typedef struct ev_node {
  struct ev_node *next;
  gm_event ev;
} ev_node;

enum { ROLE_FOLLOWER = 0, ROLE_MASTER = 1 };

struct gm_elector {
  gm_backend *b;
  struct gm_elector *next; /* (mu) in b->active */
  struct gm_elector *all_next; /* (mu) in b->electors */
  char name[GM_NAME_MAX];
  char id[GM_ID_MAX];
  char version[GM_ID_MAX];
  /* The key a grant belongs to (see docs/design.md, "Ownership"): set by
   * gm_elector_new and anew in a forked child, where no thread runs. */
  uint64_t instance;
  int default_id;         /* id was made here, not given */
  int64_t lease_ns, hb_ns, dl_ns, retry_ns;

  _Atomic int64_t master_until; /* mono ns; 0: not master (written under mu) */
  _Atomic uint64_t token;       /* token of the current grant (under mu) */

  /* (mu) */
  int want;           /* campaigning; 0 once stop was asked */
  int active;         /* in b->active: the thread works for it */
  int orphan;         /* freed by the API while active: the thread frees it */
  int reported;       /* a START was queued with no STOP after it */
  gm_stop_reason stop_reason;
  ev_node *q_head, *q_tail;
  int efd;
  pid_t efd_pid;
  gm_leader leader;   /* last holder seen */
  char last_error[GM_ERRMSG_MAX]; /* "" again after the next success */
  double last_error_at;  /* CLOCK_REALTIME s of the last error, 0: none */
  char said[GM_ERRMSG_MAX]; /* the last message queued, until a success */
  int said_busy;      /* a refused connection was said, until a success */
  uint64_t n_acquires, n_renewals, n_observes, n_releases, n_errors, n_grants,
      n_losses;

  /* (atomic) metrics, added to with relaxed atomics where they happen and
   * read by status() without the lock: stops by reason (index reason - 1)
   * and the renewal round-trip histogram (per bucket, not cumulative). */
  _Atomic uint64_t m_stops[4];
  _Atomic uint64_t m_renew_in[GM_RENEW_BUCKETS + 1]; /* last: above all */
  _Atomic uint64_t m_renew_sum_ns;

  /* (thread) */
  int role;
  int64_t next_at;        /* mono ns of the next step */
  int64_t woken_from;     /* the next_at a wake-up moved to now, or 0 */
  uint64_t my_token;      /* token of our grant while role == MASTER */
  int64_t master_until_t; /* the thread's copy of master_until */
  int64_t acquired_at;    /* db µs of our grant, for status() */
  int64_t holder;         /* the other holder's handle seen last, or -1 */
  int seen_row;           /* the row was seen at least once */
  uint64_t max_token;     /* largest token seen */
  int64_t absent_since;   /* mono ns the row was first seen missing */
  /* the version (owner, token, renewed_at) being watched */
  char v_owner[GM_ID_MAX];
  uint64_t v_token;
  int64_t v_renewed_at;
  int64_t v_first_t1;     /* mono ns: end of the read that first showed it */
  /* the anchor of the database clock's steadiness */
  int have_anchor;
  int64_t anchor_mid, anchor_db, anchor_rtt;
  uint64_t reported_leader_token;
  uint64_t reported_leader_instance;
  char reported_leader_owner[GM_ID_MAX];
  int reported_leader_valid;
  char row_said[GM_ERRMSG_MAX]; /* the row's anomaly said last, "" if none */
  int warned;             /* row_warn ran in this step */
  int v_live;             /* the watched version was seen with its lease
                           * running (also a released row: see below) */
  int refused;            /* acquires in a row that a free-looking row
                           * refused (GM_NOT) */
  int watch;              /* the last read found the lock held by another,
                           * its lease running: the wake-up may watch it */
  uint64_t watch_gen;     /* grows with every such read, but for a read
                           * after a wake-up that found the same grant (a
                           * wake-up that cannot tell: watched again only
                           * once the grant changed or a lease passed) */
  char watch_owner[GM_ID_MAX]; /* the grant watched: owner and token */
  uint64_t watch_token;
  int64_t watch_since;    /* mono ns when watch_gen last grew */
  int watch_done;         /* an election-connection watch of this
                           * watch_gen ended without telling more: not
                           * watched again until watch_gen grows */
  int64_t watch_until;    /* mono ns: the end of the lease the last read
                           * saw (plus jitter): the next read, when a
                           * watch covers the lock */
  int stretch;            /* a read just set next_at: the loop moves it to
                           * watch_until if a watch covers the lock */
  int64_t unstretched;    /* the next_at a stretch moved, or 0: where the
                           * read goes back to when the watch stops
                           * covering the lock (it cannot watch, or
                           * failed) */
  int have_wrow;          /* a watch on the election connection ended by
                           * its timeout, due for the next read, with the
                           * row as it ended (wrow, read at a local time
                           * in [wrow_t0, wrow_t1]): that read, no observe */
  gm_row wrow;
  int64_t wrow_t0, wrow_t1;
};

struct gm_backend {
  const gm_backend_ops *ops;
  void *cfg;
  char desc[256];
  atomic_int refs;
  struct gm_backend *g_next; /* (g_mu) in the process-wide list */

  pthread_mutex_t mu;
  pthread_cond_t wake; /* the thread waits here for work */
  pthread_cond_t done; /* stop() waits here for the thread */
  /* (mu) */
  int thread_running;
  int quit;
  int orphan;         /* unreferenced while its thread runs: the thread frees
                       * it when no elector is left */
  int thread_done;    /* the thread has finished with b */
  int idle;           /* the thread waits for work: no call is under way */
  int watching;       /* the thread blocks in watch on its election
                       * connection (ops->watch_shared) */
  int watch_cut;      /* ... and kick() interrupted it */
  int watch_blind;    /* a watch said at once that it cannot watch here
                       * (MySQL under Galera): followers read each retry
                       * until a new connection */
  void *live_conn;    /* the thread's connection while open, for interrupt */
  pthread_t thread;
  gm_elector *active;
  gm_elector *electors; /* every elector made on it, for a forked child */
  unsigned kicks;

  /* (thread) */
  void *conn;
  int64_t reconnect_at;
  gm_backoff backoff;     /* reconnects (timeutil.h) */
  uint64_t rng;
  int64_t poll_at;        /* mono ns of the next changed/holder_gone poll */
  char poll_err[GM_ERRMSG_MAX]; /* changed()'s last error, said once */
  size_t batch_cap;       /* batch renewal buffers, grown as needed */
  gm_elector **batch;
  gm_renew_req *reqs;

  /* The wake-up thread (backends with ops->watch): its own connection,
   * opened when a follower waits on a lock another node holds, closed when
   * none does. It blocks in watch() on the lock the election thread chose
   * (wk_name) and, when watch() says the lock may have changed, sets woke:
   * the followers read at once. (mu) unless said. */
  pthread_t wk_thread;
  int wk_running;     /* started and not yet joined */
  int wk_quit;
  pthread_cond_t wk_cv; /* a new target, or quit */
  char wk_name[GM_NAME_MAX]; /* "" when no follower waits */
  uint64_t wk_gen;    /* grows with every new target or read of it */
  uint64_t wk_done_gen; /* the wk_gen a watch already ended on */
  const gm_elector *wk_for; /* the follower it watches for (identity only) */
  uint64_t wk_for_gen;      /* and its watch_gen then */
  void *wk_live;      /* the wake-up connection while open, for interrupt */
  atomic_int woke;    /* set by the wake-up, taken by the election thread */
  atomic_int blinded; /* set by the wake-up when it cannot watch: the
                       * followers' reads go back to each retry */
};

/* ---- process-wide: fork safety ------------------------------------------ */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static gm_backend *g_backends; /* (g_mu) */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void free_queue(gm_elector *e) {
  ev_node *n = e->q_head;
  while (n) {
    ev_node *next = n->next;
    free(n);
    n = next;
  }
  e->q_head = e->q_tail = NULL;
}

static void atfork_prepare(void) {
  pthread_mutex_lock(&g_mu);
  for (gm_backend *b = g_backends; b; b = b->g_next) pthread_mutex_lock(&b->mu);
}

static void atfork_parent(void) {
  for (gm_backend *b = g_backends; b; b = b->g_next)
    pthread_mutex_unlock(&b->mu);
  pthread_mutex_unlock(&g_mu);
}

static void default_id(char *buf, size_t len);
static uint64_t new_instance(void);

/* Initialises b's mutex and condition variables: when b is made, and in a
 * forked child over the copy of the parent's, which the parent's threads
 * may have been using at the fork. The copy cannot be destroyed: glibc's
 * pthread_cond_destroy waits for the waiters it still counts, for ever. */
static void init_sync(gm_backend *b) {
  pthread_mutex_init(&b->mu, NULL);
  gm_cond_init_mono(&b->wake);
  gm_cond_init_mono(&b->done);
  gm_cond_init_mono(&b->wk_cv);
}

/* The child has no election thread: every elector the parent ran is stopped
 * here, its queue dropped, and the connection (the parent's) left alone.
 * Every elector becomes another instance (a new key, and a new id where the
 * id was the default one): the parent's grants are not the child's, and
 * m:start() in the child campaigns as a node of its own. */
static void atfork_child(void) {
  for (gm_backend *b = g_backends; b; b = b->g_next) {
    for (gm_elector *e = b->active; e; e = e->next) {
      e->active = 0;
      free_queue(e);
    }
    for (gm_elector *e = b->electors; e; e = e->all_next) {
      atomic_store(&e->master_until, 0);
      atomic_store(&e->token, 0);
      e->want = e->reported = 0;
      e->role = ROLE_FOLLOWER;
      e->instance = new_instance();
      if (e->default_id) default_id(e->id, sizeof e->id);
      e->reported_leader_valid = 0;
    }
    b->active = NULL;
    b->thread_running = 0;
    b->thread_done = 0;
    b->quit = 0;
    b->conn = NULL;
    b->live_conn = NULL;
    b->watching = b->watch_cut = 0;
    b->wk_running = 0; /* no wake-up thread here; its connection is the
                        * parent's, left alone */
    b->wk_quit = 0;
    b->wk_live = NULL;
    b->wk_name[0] = '\0';
    atomic_store(&b->woke, 0);
    atomic_store(&b->blinded, 0);
    init_sync(b);
  }
  pthread_mutex_init(&g_mu, NULL);
}

static void register_atfork(void) {
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- small helpers ------------------------------------------------------ */

/* An instance key: random, in [1, 2^63) so that every backend stores it as
 * a signed 64-bit integer; 0 means "none" (rows written before keys). */
static uint64_t new_instance(void) {
  uint64_t k = gm_seed64() >> 1;
  return k ? k : 1;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Saturating arithmetic for times read from rows: an operator may write any
 * value there (9999-12-31, or the smallest integer), and a unit change or a
 * difference must not wrap. */
static int64_t sat_sub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? INT64_MAX : INT64_MIN;
  return r;
}


static int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}

/* The largest token a grant may have: every backend stores it as a signed
 * 64-bit integer. */
#define TOKEN_MAX ((uint64_t)INT64_MAX)
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

const double gm_renew_bounds[GM_RENEW_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* One renewal's round trip into the histogram: no lock, two atomic adds. */
static void note_renew_rtt(gm_elector *e, int64_t rtt_ns) {
  if (rtt_ns < 0) rtt_ns = 0;
  size_t i = 0;
  while (i < GM_RENEW_BUCKETS && (double)rtt_ns > gm_renew_bounds[i] * 1e9)
    i++;
  atomic_fetch_add_explicit(&e->m_renew_in[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&e->m_renew_sum_ns, (uint64_t)rtt_ns,
                            memory_order_relaxed);
}

const char *gm_stop_reason_name(gm_stop_reason r) {
  switch (r) {
  case GM_STOP_LOST: return "lost";
  case GM_STOP_DEADLINE: return "deadline";
  case GM_STOP_STOPPED: return "stopped";
  case GM_STOP_CLOSED: return "closed";
  }
  return "unknown";
}

/* ---- events (mu held) --------------------------------------------------- */

static void wake_fd(gm_elector *e) {
  if (e->efd >= 0 && e->efd_pid == getpid()) {
    uint64_t one = 1;
    ssize_t r = write(e->efd, &one, sizeof one);
    (void)r; /* a full counter is still readable: nothing to do */
  }
}

static void push_event(gm_elector *e, const gm_event *ev) {
  ev_node *n = malloc(sizeof *n);
  if (!n) return; /* an event lost to OOM; the state (is_master) stays right */
  n->ev = *ev;
  n->next = NULL;
  if (e->q_tail)
    e->q_tail->next = n;
  else
    e->q_head = n;
  e->q_tail = n;
  wake_fd(e);
}

static void push_stop(gm_elector *e, gm_stop_reason why) {
  if (!e->reported) return;
  if (why >= GM_STOP_LOST && why <= GM_STOP_CLOSED)
    atomic_fetch_add_explicit(&e->m_stops[why - 1], 1, memory_order_relaxed);
  gm_event ev = {.type = GM_EV_STOP, .reason = why};
  e->reported = 0;
  push_event(e, &ev);
}

/* Counts an error and keeps it for status(); queues error(message) unless
 * the same message was queued since the last success (a database down, a
 * damaged row: said once, not once a retry). */
static void push_error(gm_elector *e, const gm_error *err) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(e->last_error, sizeof e->last_error, "%s", err->msg);
  e->last_error_at = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  e->n_errors++;
  if (strcmp(err->msg, e->said) == 0) return;
  if (err->code == GM_E_BUSY) { /* once, whatever each refusal says */
    if (e->said_busy) return;
    e->said_busy = 1;
  }
  snprintf(e->said, sizeof e->said, "%s", err->msg);
  gm_event ev = {.type = GM_EV_ERROR, .code = err->code};
  snprintf(ev.message, sizeof ev.message, "%s", err->msg);
  push_event(e, &ev);
}

/* A call worked: the last error is history (its count and time stay). */
static void note_success(gm_elector *e) {
  e->last_error[0] = '\0';
  e->said[0] = '\0';
  e->said_busy = 0;
}

/* ---- config ------------------------------------------------------------- */

int gm_config_resolve(gm_config *c, gm_error *err) {
  struct {
    const char *field;
    double v;
  } f[] = {{"lease", c->lease},
           {"heartbeat", c->heartbeat},
           {"renew_deadline", c->renew_deadline},
           {"retry", c->retry}};
  for (size_t i = 0; i < 4; i++)
    if (!(f[i].v >= 0) || f[i].v > GM_MAX_SECONDS) { /* also catches NaN */
      gm_seterr(err, GM_E_ARG,
                "%s: must be a number of seconds > 0 and at most %d (got %g)",
                f[i].field, GM_MAX_SECONDS, f[i].v);
      return GM_ERR;
    }
  if (c->lease == 0) c->lease = GM_DEFAULT_LEASE;
  if (c->heartbeat == 0) c->heartbeat = GM_DEFAULT_HEARTBEAT(c->lease);
  if (c->renew_deadline == 0) c->renew_deadline = GM_DEFAULT_DEADLINE(c->lease);
  if (c->retry == 0) c->retry = GM_DEFAULT_RETRY(c->lease);
  if (!(c->heartbeat < c->renew_deadline)) {
    gm_seterr(err, GM_E_ARG,
              "heartbeat (%g s) must be less than renew_deadline (%g s)",
              c->heartbeat, c->renew_deadline);
    return GM_ERR;
  }
  if (!(c->renew_deadline < c->lease)) {
    gm_seterr(err, GM_E_ARG,
              "renew_deadline (%g s) must be less than lease (%g s)",
              c->renew_deadline, c->lease);
    return GM_ERR;
  }
  if (c->heartbeat < 0.001) {
    gm_seterr(err, GM_E_ARG, "heartbeat: must be at least 0.001 s");
    return GM_ERR;
  }
  if (c->retry < 0.001) {
    gm_seterr(err, GM_E_ARG, "retry: must be at least 0.001 s");
    return GM_ERR;
  }
  return GM_OK;
}

/* ---- backends ----------------------------------------------------------- */

static gm_backend *backend_alloc(const gm_backend_ops *ops, const gm_kv *kv,
                                 size_t n, gm_error *err) {
  if (ops->abi != GM_BACKEND_ABI) {
    gm_seterr(err, GM_E_BACKEND, "backend '%s' has ABI %d, expected %d",
              ops->name, ops->abi, GM_BACKEND_ABI);
    return NULL;
  }
  if (ops->watch && !ops->interrupt) { /* close() could not end a watch */
    gm_seterr(err, GM_E_BACKEND, "backend '%s' has watch but no interrupt",
              ops->name);
    return NULL;
  }
  gm_backend *b = calloc(1, sizeof *b);
  if (!b) {
    gm_seterr(err, GM_E_NOMEM, "out of memory");
    return NULL;
  }
  b->ops = ops;
  if (ops->parse(kv, n, &b->cfg, err) != GM_OK) {
    free(b);
    return NULL;
  }
  ops->describe(b->cfg, b->desc, sizeof b->desc);
  atomic_init(&b->refs, 1);
  init_sync(b);
  b->rng = gm_seed64();
  pthread_once(&g_once, register_atfork);
  pthread_mutex_lock(&g_mu);
  b->g_next = g_backends;
  g_backends = b;
  pthread_mutex_unlock(&g_mu);
  return b;
}

gm_backend *gm_backend_new(const char *type, const gm_kv *opts, size_t n,
                           gm_error *err) {
  const gm_backend_ops *ops = gm_backend_find(type ? type : "(none)", err);
  return ops ? backend_alloc(ops, opts, n, err) : NULL;
}

gm_backend *gm_backend_new_ops(const gm_backend_ops *ops, const gm_kv *opts,
                               size_t n, gm_error *err) {
  if (!ops || !ops->name || !ops->parse || !ops->free_cfg || !ops->describe ||
      !ops->open || !ops->close || !ops->observe || !ops->acquire ||
      !ops->renew || !ops->release) {
    gm_seterr(err, GM_E_BACKEND, "backend ops: a function is missing");
    return NULL;
  }
  return backend_alloc(ops, opts, n, err);
}

gm_backend *gm_backend_new_url(const char *url, gm_error *err) {
  gm_url u;
  if (!url) {
    gm_seterr(err, GM_E_URL, "bad URL: none given");
    return NULL;
  }
  /* The scheme decides whether the backend splits the URL itself. */
  const char *sep = strstr(url, "://");
  char scheme[32] = "";
  if (sep && (size_t)(sep - url) < sizeof scheme) {
    memcpy(scheme, url, (size_t)(sep - url));
    scheme[sep - url] = '\0';
    for (char *p = scheme; *p; p++)
      if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
  }
  gm_error ignored = {0}; /* an unknown scheme is reported below */
  const gm_backend_ops *ops = sep ? gm_backend_find(scheme, &ignored) : NULL;
  if (gm_url_parse(url, ops ? ops->url_raw : 0, &u, err) != GM_OK)
    return NULL;
  gm_backend *b = gm_backend_new(u.scheme, u.kv, u.n, err);
  gm_url_free(&u);
  return b;
}

const char *gm_backend_describe(const gm_backend *b) { return b->desc; }

/* How long a connection is tried again while its set-up loses races. */
#define OPEN_RACE_NS (5 * GM_NS_PER_S)

/* Opens a connection. A set-up that lost a race (GM_E_CONFLICT: SQLite
 * switching a new file to WAL while another process does the same) is
 * tried again every 10 ms for up to OPEN_RACE_NS, here, since backends
 * never sleep; any other failure returns at once. */
static int open_conn(gm_backend *b, void **conn, gm_error *err) {
  int64_t until = gm_mono_ns() + OPEN_RACE_NS;
  for (;;) {
    int rc = b->ops->open(b->cfg, conn, err);
    if (rc == GM_OK || err->code != GM_E_CONFLICT || gm_mono_ns() >= until)
      return rc;
    struct timespec nap = {0, 10 * GM_NS_PER_MS};
    nanosleep(&nap, NULL);
  }
}

int gm_backend_check(gm_backend *b, gm_error *err) {
  void *conn = NULL;
  if (open_conn(b, &conn, err) != GM_OK) return GM_ERR;
  b->ops->close(conn);
  return GM_OK;
}

static void lock_info(gm_lock_info *o, const gm_row *r) {
  memset(o, 0, sizeof *o);
  o->exists = r->exists;
  o->live = r->exists && r->owner[0] && r->expires_at > r->now;
  snprintf(o->owner, sizeof o->owner, "%s", r->owner);
  snprintf(o->version, sizeof o->version, "%s", r->version);
  o->token = r->token;
  o->acquired_at = (double)r->acquired_at / 1e6;
  o->renewed_at = (double)r->renewed_at / 1e6;
  o->expires_at = (double)r->expires_at / 1e6;
  o->now = (double)r->now / 1e6;
  o->done_at = (double)r->done_at / 1e6;
  snprintf(o->done_by, sizeof o->done_by, "%s", r->done_by);
  o->done_token = r->done_token;
  snprintf(o->result, sizeof o->result, "%s", r->result);
}

/* v fits a field of max bytes with its NUL (the columns of every backend
 * are that wide: backend.h). */
static int check_text(const char *field, const char *v, size_t max,
                      int allow_empty, gm_error *err) {
  size_t len = strlen(v);
  if ((!allow_empty && len == 0) || len >= max) {
    gm_seterr(err, GM_E_ARG, "%s: must be %s%zu bytes at most", field,
              allow_empty ? "" : "1 to ", max - 1);
    return GM_ERR;
  }
  return GM_OK;
}

/* Opens a connection for one call on the caller's thread. */
static int open_once(gm_backend *b, void **conn, int need, gm_error *err) {
  if (!need) {
    gm_seterr(err, GM_E_BACKEND,
              "the %s backend does not support this operation",
              b->ops->name);
    return GM_ERR;
  }
  return open_conn(b, conn, err);
}

int gm_backend_read(gm_backend *b, const char *name, gm_lock_info *out,
                    gm_error *err) {
  void *conn;
  gm_row r = {0};
  if (check_text("name", name, GM_NAME_MAX, 0, err) ||
      open_once(b, &conn, 1, err) != GM_OK)
    return GM_ERR;
  int rc = b->ops->observe(conn, name, &r, err);
  b->ops->close(conn);
  if (rc == GM_OK) lock_info(out, &r);
  return rc == GM_OK ? GM_OK : GM_ERR;
}

int gm_backend_complete(gm_backend *b, const char *name, const char *owner,
                        uint64_t instance, uint64_t token, const char *result,
                        gm_error *err) {
  void *conn;
  if (check_text("name", name, GM_NAME_MAX, 0, err) ||
      check_text("id", owner, GM_ID_MAX, 1, err) || /* "": a probe */
      check_text("result", result, GM_RESULT_MAX, 1, err) ||
      open_once(b, &conn, b->ops->complete != NULL, err) != GM_OK)
    return GM_ERR;
  int rc = b->ops->complete(conn, name, owner, instance, token, result, err);
  b->ops->close(conn);
  return rc;
}

static int force_release(gm_backend *b, const char *name, int now,
                         gm_lock_info *out, gm_error *err) {
  void *conn;
  gm_row r = {0};
  if (check_text("name", name, GM_NAME_MAX, 0, err) ||
      open_once(b, &conn, b->ops->force_release != NULL, err) != GM_OK)
    return GM_ERR;
  int rc = b->ops->force_release(conn, name, now, &r, err);
  if (rc == GM_NOT && b->ops->observe(conn, name, &r, err) == GM_OK &&
      r.exists && r.token >= (uint64_t)INT64_MAX) {
    gm_seterr(err, GM_E_DB, "lock '%s': its token is at the largest "
              "(%llu): no new token to fence the holder with", name,
              (unsigned long long)r.token);
    rc = GM_ERR;
  }
  b->ops->close(conn);
  if (rc == GM_OK) lock_info(out, &r);
  return rc;
}

int gm_backend_force_release(gm_backend *b, const char *name,
                             gm_lock_info *out, gm_error *err) {
  return force_release(b, name, 0, out, err);
}

int gm_backend_force_release_now(gm_backend *b, const char *name,
                                 gm_lock_info *out, gm_error *err) {
  return force_release(b, name, 1, out, err);
}

static void backend_free(gm_backend *b);
static void kick(gm_backend *b);

static void timed_wait_on(pthread_cond_t *cv, gm_backend *b, int64_t until) {
  gm_cond_wait_until(cv, &b->mu, until);
}

void gm_backend_ref(gm_backend *b) { atomic_fetch_add(&b->refs, 1); }

void gm_backend_unref(gm_backend *b) {
  if (!b || atomic_fetch_sub(&b->refs, 1) != 1) return;
  pthread_mutex_lock(&g_mu);
  for (gm_backend **p = &g_backends; *p; p = &(*p)->g_next)
    if (*p == b) {
      *p = b->g_next;
      break;
    }
  pthread_mutex_unlock(&g_mu);
  pthread_mutex_lock(&b->mu);
  int running = b->thread_running;
  b->quit = 1;
  kick(b);
  /* A thread that ends soon (the common case) is joined; one still inside
   * a call after STOP_WAIT_NS (a hung database) is cut short and frees b
   * itself. */
  int64_t until = gm_mono_ns() + STOP_WAIT_NS;
  while (running && !b->thread_done && gm_mono_ns() < until)
    timed_wait_on(&b->done, b, until);
  int orphan = running && !b->thread_done;
  if (orphan) {
    b->orphan = 1;
    if (b->live_conn && b->ops->interrupt) b->ops->interrupt(b->live_conn);
    b->wk_quit = 1;
    if (b->wk_live && b->ops->interrupt) b->ops->interrupt(b->wk_live);
    pthread_cond_signal(&b->wk_cv);
    pthread_detach(b->thread);
  }
  pthread_mutex_unlock(&b->mu);
  if (running && !orphan) pthread_join(b->thread, NULL);
  if (!orphan) backend_free(b);
}

/* Frees b: no thread runs for it any more. */
static void backend_free(gm_backend *b) {
  if (b->conn) b->ops->close(b->conn);
  free(b->batch);
  free(b->reqs);
  b->ops->free_cfg(b->cfg);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->wake);
  pthread_cond_destroy(&b->done);
  pthread_cond_destroy(&b->wk_cv);
  free(b);
}

/* ---- the election thread ------------------------------------------------ */

static void close_conn(gm_backend *b) {
  if (!b->conn) return;
  pthread_mutex_lock(&b->mu);
  b->live_conn = NULL; /* no interrupt from here on */
  pthread_mutex_unlock(&b->mu);
  b->ops->close(b->conn);
  b->conn = NULL;
}

/* The delay before the next open after a failure of class code. */
static int64_t backoff(gm_backoff *bo, int code, int64_t retry_ns) {
  if (code != GM_E_BUSY) return gm_backoff_next(bo);
  return gm_backoff_next_in(bo, GM_BUSY_MIN_NS,
                            max64(GM_BUSY_MAX_NS, GM_BUSY_RETRIES * retry_ns));
}

/* Records a backend failure: the connection is dropped and reopened later. */
static void fail(gm_backend *b, gm_elector *e, const gm_error *err) {
  close_conn(b);
  int64_t now = gm_mono_ns();
  b->reconnect_at = now + backoff(&b->backoff, err->code, e->retry_ns);
  pthread_mutex_lock(&b->mu);
  push_error(e, err);
  pthread_mutex_unlock(&b->mu);
}

static int ensure_conn(gm_backend *b, gm_elector *e) {
  if (b->conn) return GM_OK;
  if (gm_mono_ns() < b->reconnect_at) return GM_ERR;
  gm_error err = {0};
  if (open_conn(b, &b->conn, &err) != GM_OK) {
    b->conn = NULL;
    fail(b, e, &err);
    return GM_ERR;
  }
  pthread_mutex_lock(&b->mu);
  b->live_conn = b->conn;
  if (b->ops->watch_shared) b->watch_blind = 0; /* may watch from here */
  if (b->quit && b->ops->interrupt) b->ops->interrupt(b->conn);
  pthread_mutex_unlock(&b->mu);
  gm_backoff_reset(&b->backoff);
  return GM_OK;
}

static void fill_leader(gm_leader *l, const gm_row *r) {
  memset(l, 0, sizeof *l);
  l->held = r->exists && r->owner[0] && r->expires_at > r->now;
  snprintf(l->id, sizeof l->id, "%s", r->owner);
  snprintf(l->version, sizeof l->version, "%s", r->version);
  l->token = r->token;
  l->acquired_at = (double)r->acquired_at / 1e6;
  l->renewed_at = (double)r->renewed_at / 1e6;
  l->expires_at = (double)r->expires_at / 1e6;
  l->expires_in =
      r->exists ? (double)sat_sub(r->expires_at, r->now) / 1e6 : 0;
  if (l->expires_in < 0) l->expires_in = 0;
}

/* A row granted to this elector instance: the id alone says nothing, since
 * two electors may share one. */
static int is_ours(const gm_elector *e, const gm_row *r) {
  return r->instance == e->instance && strcmp(r->owner, e->id) == 0;
}

/* Keeps the last holder seen and queues leader(info) when another node took
 * the lock or it became free. */
static void note_leader(gm_elector *e, const gm_row *r) {
  gm_leader l;
  fill_leader(&l, r);
  const char *owner = l.held ? r->owner : "";
  pthread_mutex_lock(&e->b->mu);
  e->leader = l;
  uint64_t inst = l.held ? r->instance : 0;
  int changed = !e->reported_leader_valid ||
                strcmp(owner, e->reported_leader_owner) != 0 ||
                inst != e->reported_leader_instance ||
                (l.held && r->token != e->reported_leader_token);
  /* Our own grant is no news; another instance with our id is. */
  if (changed && !(l.held && is_ours(e, r))) {
    gm_event ev = {.type = GM_EV_LEADER, .leader = l};
    push_event(e, &ev);
  }
  if (changed) {
    snprintf(e->reported_leader_owner, sizeof e->reported_leader_owner, "%s",
             owner);
    e->reported_leader_token = r->token;
    e->reported_leader_instance = inst;
    e->reported_leader_valid = 1;
  }
  pthread_mutex_unlock(&e->b->mu);
}

static void step_down(gm_elector *e, gm_stop_reason why) {
  pthread_mutex_lock(&e->b->mu);
  atomic_store(&e->master_until, 0);
  atomic_store(&e->token, 0);
  if (why == GM_STOP_LOST) e->n_losses++;
  push_stop(e, why);
  pthread_mutex_unlock(&e->b->mu);
  e->role = ROLE_FOLLOWER;
  e->master_until_t = 0;
}

/* A lost race (GM_E_CONFLICT) is no failure: GM_NOT, never on_error. */
static int unconflict(int rc, gm_error *err) {
  return rc == GM_ERR && err->code == GM_E_CONFLICT ? GM_NOT : rc;
}

static int64_t jitter(gm_backend *b, int64_t span_ns) {
  return span_ns > 0 ? (int64_t)(gm_rng_next(&b->rng) % (uint64_t)span_ns) : 0;
}

/* Tracks how the database clock runs against ours. A read whose database
 * time drifted from the anchor by more than the tolerance (a step of the
 * database clock) starts a new anchor, but for a read as wide as a watch
 * (`wide`: its time anywhere in a long [t0, t1]): it is checked against
 * the anchor the same way, but never anchors (that would widen the
 * tolerance of every later check). */
static void track_clock(gm_elector *e, int64_t t0, int64_t t1,
                        const gm_row *r, int wide) {
  int64_t mid = t0 + (t1 - t0) / 2, rtt = t1 - t0;
  if (e->have_anchor) {
    int64_t local_us = (mid - e->anchor_mid) / US_PER_NS;
    int64_t db_us = r->now - e->anchor_db;
    int64_t tol = STEP_TOL_US + (e->anchor_rtt + rtt) / 2 / US_PER_NS;
    int64_t drift = db_us - local_us;
    if (drift > tol || drift < -tol) e->have_anchor = 0;
  }
  if (!e->have_anchor && !wide) {
    e->have_anchor = 1;
    e->anchor_mid = mid;
    e->anchor_db = r->now;
    e->anchor_rtt = rtt;
  }
}

/* Starts watching a new version of the row when (owner, token, renewed_at)
 * changed since the last read. */
static void track_version(gm_elector *e, int64_t t1, const gm_row *r) {
  if (strcmp(e->v_owner, r->owner) == 0 && e->v_token == r->token &&
      e->v_renewed_at == r->renewed_at && e->v_first_t1)
    return;
  snprintf(e->v_owner, sizeof e->v_owner, "%s", r->owner);
  e->v_live = 0;
  e->refused = 0; /* a lost race shows as a new version */
  e->v_token = r->token;
  e->v_renewed_at = r->renewed_at;
  e->v_first_t1 = t1;
}

/* The design's guarantee, point 2: the database says the lease has ended;
 * may we believe it? Yes when we watched this version unchanged for a whole
 * lease. Or the short way: this read is in step with the anchor of the
 * database clock, that anchor was read before the renewal, and on that
 * anchor the read that first showed the renewal ended less than the
 * margin L - D after the renewal's time. That
 * read came after the renewal, so a step of the database clock that made
 * the renewal's time early, and went back before we looked, hid less than
 * the margin; and the lease's end on that anchor is then more than D after
 * that read ended on our clock, past the holder's deadline. Returns 0 when
 * yes, -1 when a read in step now could say yes (this one is a watch's
 * row: its database time proves nothing), else ns to wait. */
static int64_t takeover_wait(gm_elector *e, int64_t t0, int64_t t1,
                             const gm_row *r, int wide) {
  int64_t watched = t1 - e->v_first_t1;
  if (watched >= e->lease_ns) return 0;
  int64_t wait = e->lease_ns - watched;
  /* the anchor was read before the renewal: a step between the two is
   * one the anchor saw (a step that stayed, after it, moved the anchor) */
  if (!e->have_anchor || e->anchor_db > r->renewed_at) return wait;
  int64_t margin_us = (e->lease_ns - e->dl_ns) / US_PER_NS;
  int64_t first_db = sat_add(e->anchor_db,
                             (e->v_first_t1 - e->anchor_mid) / US_PER_NS);
  int64_t tol_us = STEP_TOL_US +
                   (e->anchor_rtt + (wide ? 0 : t1 - t0)) / 2 / US_PER_NS;
  if (sat_add(sat_sub(first_db, r->renewed_at), tol_us) >= margin_us)
    return wait;
  if (wide) return -1;
  int64_t past_us = sat_sub(r->now, r->expires_at);
  if (past_us >= STEP_TOL_US) return 0;
  return min64(wait, (STEP_TOL_US - past_us) * US_PER_NS);
}

static void become_master(gm_backend *b, gm_elector *e, int64_t t_send,
                          const gm_row *r) {
  e->seen_row = 1; /* a grant handed back is still a token seen */
  if (r->token > e->max_token) e->max_token = r->token;
  pthread_mutex_lock(&b->mu);
  if (!e->want) { /* stop() came while we were acquiring: hand it back */
    pthread_mutex_unlock(&b->mu);
    gm_error err = {0};
    if (b->ops->release(b->conn, e->name, e->id, e->instance, r->token,
                        &err) == GM_ERR)
      fail(b, e, &err);
    return;
  }
  e->n_grants++;
  fill_leader(&e->leader, r);
  atomic_store(&e->token, r->token);
  atomic_store(&e->master_until, t_send + e->dl_ns);
  e->reported = 1;
  gm_event ev = {.type = GM_EV_START, .token = r->token};
  push_event(e, &ev);
  snprintf(e->reported_leader_owner, sizeof e->reported_leader_owner, "%s",
           e->id);
  e->reported_leader_token = r->token;
  e->reported_leader_instance = e->instance;
  e->reported_leader_valid = 1;
  pthread_mutex_unlock(&b->mu);
  e->role = ROLE_MASTER;
  e->absent_since = 0;
  e->my_token = r->token;
  e->master_until_t = t_send + e->dl_ns;
  e->acquired_at = r->acquired_at;
  e->holder = -1;
  e->next_at = t_send + e->hb_ns;
}

/* Says what is wrong with the lock's row through on_error and status(),
 * once until the row changes what it says (thread; takes mu). */
static void row_warn(gm_backend *b, gm_elector *e, const char *msg) {
  int fresh = strcmp(msg, e->row_said) != 0;
  snprintf(e->row_said, sizeof e->row_said, "%s", msg);
  e->warned = 1;
  gm_error err = {GM_E_ROW, ""};
  snprintf(err.msg, sizeof err.msg, "%s", msg);
  pthread_mutex_lock(&b->mu);
  /* said once per anomaly, however often a read finds it again */
  snprintf(e->said, sizeof e->said, "%s", fresh ? "" : msg);
  push_error(e, &err);
  pthread_mutex_unlock(&b->mu);
}

static void try_acquire(gm_backend *b, gm_elector *e, const gm_row *seen,
                        int64_t dead_holder) {
  uint64_t base = seen->exists && seen->token > e->max_token ? seen->token
                                                             : e->max_token;
  if (base >= TOKEN_MAX) {
    /* Never wrap, never a float: no grant past the largest token. */
    char msg[GM_ERRMSG_MAX];
    snprintf(msg, sizeof msg,
             "lock '%.64s': token %" PRIu64 " is the largest a grant can "
             "have (%" PRIu64 "): no new grant until an operator resets "
             "the lock's row",
             e->name, base, TOKEN_MAX);
    row_warn(b, e, msg);
    e->next_at = gm_mono_ns() + e->retry_ns;
    return;
  }
  gm_acquire_req req = {.name = e->name,
                        .owner = e->id,
                        .version = e->version,
                        .lease_us = e->lease_ns / US_PER_NS,
                        .expect_exists = seen->exists,
                        .expect_token = seen->token,
                        .min_token = e->max_token,
                        .instance = e->instance};
  gm_row r = {0};
  gm_error err = {0};
  int64_t t0 = gm_mono_ns();
  int rc = dead_holder >= 0 && b->ops->acquire_dead
               ? b->ops->acquire_dead(b->conn, &req, dead_holder, &r, &err)
               : b->ops->acquire(b->conn, &req, &r, &err);
  rc = unconflict(rc, &err);
  pthread_mutex_lock(&b->mu);
  e->n_acquires++;
  pthread_mutex_unlock(&b->mu);
  if (rc == GM_OK) {
    e->refused = 0;
    pthread_mutex_lock(&b->mu);
    note_success(e);
    pthread_mutex_unlock(&b->mu);
    become_master(b, e, t0, &r);
  } else if (rc == GM_NOT) {
    /* Someone was faster: read again soon to learn who. A row that keeps
     * refusing while it looks free (an operator's edit the statement
     * cannot match) is said, and read once a retry. */
    if (++e->refused >= 2) {
      char msg[GM_ERRMSG_MAX];
      snprintf(msg, sizeof msg,
               "lock '%.64s': the row looks free (owner '%.64s', token "
               "%" PRIu64 ") but the conditional acquire does not take it: "
               "an edited row?",
               e->name, seen->owner, seen->token);
      row_warn(b, e, msg);
      e->next_at = gm_mono_ns() + e->retry_ns;
    } else {
      e->next_at = gm_mono_ns() + jitter(b, min64(e->retry_ns, 50 * 1000000LL));
    }
  } else {
    fail(b, e, &err);
    e->next_at = b->reconnect_at;
  }
}

static void follower_judge(gm_backend *b, gm_elector *e, const gm_row *row,
                           int64_t t0, int64_t t1, int wide);

/* A follower's read: the row a watch ended on (have_wrow), else observe;
 * then judged. */
static void follower_step(gm_backend *b, gm_elector *e) {
  gm_row r = {0};
  gm_error err = {0};
  e->warned = 0;
  e->watch = 0;
  if (e->have_wrow) {
    e->have_wrow = 0;
    pthread_mutex_lock(&b->mu);
    e->n_observes++;
    note_success(e);
    pthread_mutex_unlock(&b->mu);
    follower_judge(b, e, &e->wrow, e->wrow_t0, e->wrow_t1, 1);
    return;
  }
  int64_t t0 = gm_mono_ns();
  int rc = b->ops->observe(b->conn, e->name, &r, &err);
  int64_t t1 = gm_mono_ns();
  if (rc != GM_OK && err.code == GM_E_ROW) {
    /* A row the backend cannot read: held, said once, read once a retry;
     * the connection is fine. */
    pthread_mutex_lock(&b->mu);
    e->n_observes++;
    pthread_mutex_unlock(&b->mu);
    row_warn(b, e, err.msg);
    e->next_at = t1 + e->retry_ns;
    e->woken_from = 0;
    return;
  }
  if (rc != GM_OK) {
    fail(b, e, &err);
    e->next_at = b->reconnect_at;
    e->woken_from = 0;
    return;
  }
  pthread_mutex_lock(&b->mu);
  e->n_observes++;
  note_success(e);
  pthread_mutex_unlock(&b->mu);
  follower_judge(b, e, &r, t0, t1, 0);
}

/* What a follower does with the row it read at a local time in [t0, t1]
 * (wide: a watch's row, see track_clock). */
static void follower_judge(gm_backend *b, gm_elector *e, const gm_row *row,
                           int64_t t0, int64_t t1, int wide) {
  gm_row r = *row;
  gm_error err = {0};
  int64_t resume = e->woken_from; /* this read came early, on a wake-up */
  e->woken_from = 0;
  track_clock(e, t0, t1, &r, wide);
  int64_t jit = jitter(b, min64(e->retry_ns, e->lease_ns) / 20);
  e->holder = -1;

  if (!r.exists) {
    /* point 7: a row that vanished is held until watched absent for L */
    if (e->seen_row) {
      if (!e->absent_since) e->absent_since = t1;
      int64_t left = e->absent_since + e->lease_ns - t1;
      if (left > 0) {
        e->next_at = t1 + min64(e->retry_ns, left + jit);
        goto done;
      }
    }
    note_leader(e, &r);
    try_acquire(b, e, &r, -1);
    goto done;
  }
  e->seen_row = 1;
  e->absent_since = 0;
  if (r.token > e->max_token) e->max_token = r.token;
  track_version(e, t1, &r);
  note_leader(e, &r);

  if (is_ours(e, &r)) {
    /* Ours from a grant this instance gave up (deadline): free it, then
     * campaign. A row with our id and another instance key is another
     * elector's grant (the same id given twice, a forked child): held. */
    if (b->ops->release(b->conn, e->name, e->id, e->instance, r.token,
                        &err) == GM_ERR) {
      fail(b, e, &err);
      e->next_at = b->reconnect_at;
    } else {
      e->next_at = gm_mono_ns();
    }
    goto done;
  }
  int64_t ahead_us = sat_sub(r.expires_at, r.now);
  if (ahead_us > e->lease_ns / US_PER_NS + STEP_TOL_US) {
    /* No lease this node knows of ends that far ahead: an operator's edit
     * (9999-12-31), or a node with a longer lease. Followed, one read a
     * retry, and said. */
    char msg[GM_ERRMSG_MAX];
    snprintf(msg, sizeof msg,
             "lock '%.40s': the lease of '%.40s' (token %" PRIu64
             ") ends more than one lease (%g s) after the database's now: "
             "an edited row, or a longer lease",
             e->name, r.owner, r.token, (double)e->lease_ns / NS);
    row_warn(b, e, msg);
  }
  int released = r.owner[0] == '\0';
  /* A release by the holder keeps its instance key: it stopped believing
   * before it wrote, so the lock is free at once. One without a key (an
   * operator's release --force, a row edited by hand) says nothing of
   * what the holder believes: taken only under the two-clock rule, also
   * when its expiry has passed already (a database clock stepped forward
   * may have ended it early). */
  if (released && (r.expires_at > r.now || r.instance == 0)) e->v_live = 1;
  if (released && !e->v_live) { /* released: free at once */
    try_acquire(b, e, &r, -1);
    goto done;
  }
  /* Held by another node, or freed by an operator while its lease still
   * runs (a force release keeps expires_at): waited out as a live lease,
   * then taken under the two-clock rule. Where the backend can tell for
   * certain that the holder's process is gone (SQLite: the kernel dropped
   * its file lock), nobody believes it is master: take it without waiting
   * for the lease. A paused holder keeps its lock and stays covered by
   * lease and deadline. */
  e->holder = !released && b->ops->holder_gone && b->ops->acquire_dead
                  ? r.holder
                  : -1;
  if (e->holder >= 0 &&
      b->ops->holder_gone(b->conn, r.holder, &err) == GM_OK) {
    try_acquire(b, e, &r, r.holder);
    goto done;
  }
  if (r.expires_at > r.now) { /* live: sleep until it ends, or one retry */
    e->v_live = 1;
    e->watch = !released; /* the wake-up may watch it */
    int same = e->watch_token == r.token &&
               strcmp(e->watch_owner, r.owner) == 0;
    if (!resume || !same || t1 - e->watch_since >= e->lease_ns) {
      e->watch_gen++;
      e->watch_since = t1;
      e->watch_done = 0;
    }
    e->watch_token = r.token;
    gm_strlcpy(e->watch_owner, r.owner, sizeof e->watch_owner);
    int64_t left = sat_add(gm_us_to_ns(ahead_us), STEP_TOL_US * US_PER_NS);
    e->next_at = t1 + min64(e->retry_ns, sat_add(left, jit));
    /* Read again a retry from now, or (point 6) only when the lease ends
     * where a watch tells of a release or a crash meanwhile: the thread's
     * loop decides (stretch), once it knows what it watches. */
    e->watch_until = sat_add(t1, sat_add(left, jit));
    e->stretch = e->watch;
    e->unstretched = 0; /* this read sets the schedule anew */
    /* A wake-up that found the version it had already seen (a crashed
     * holder's session ended, say) keeps the reads where they were due:
     * reads in step with the holder's last renewal would meet the expiry
     * late, a retry after it rather than just past it. Not when the read
     * before came just now (a wake-up racing a read that already saw the
     * change): the schedule moves by less than two polls then, and keeping
     * it would only add reads. */
    if (resume > t1 && e->v_first_t1 != t1 &&
        e->next_at - resume > 2 * b->ops->poll_us * US_PER_NS) {
      e->next_at = min64(e->next_at, resume);
      e->watch_until = min64(e->watch_until, resume);
    }
    goto done;
  }
  int64_t wait = takeover_wait(e, t0, t1, &r, wide);
  if (wait == 0)
    try_acquire(b, e, &r, -1);
  else if (wait < 0) /* a watch's row: a read in step, at once */
    e->next_at = t1;
  else
    e->next_at = t1 + min64(e->retry_ns, wait + jit);
done:
  if (!e->warned) e->row_said[0] = '\0'; /* the row reads as it should */
}

/* The row as our renewal left it: the backend reports its times
 * (renewed_at, expires_at, now); the rest is our grant's. */
static void renewed_row(const gm_elector *e, const gm_row *times, gm_row *r) {
  *r = (gm_row){.exists = 1, .token = e->my_token,
                .acquired_at = e->acquired_at, .renewed_at = times->renewed_at,
                .expires_at = times->expires_at, .now = times->now,
                .holder = -1, .instance = e->instance};
  snprintf(r->owner, sizeof r->owner, "%s", e->id);
  snprintf(r->version, sizeof r->version, "%s", e->version);
}

/* The outcome of one lock's renewal sent at t0 and answered at t1; r holds
 * the renewal's times (GM_OK). */
static void renew_done(gm_backend *b, gm_elector *e, int rc, int64_t t0,
                       int64_t t1, const gm_row *r, const gm_error *err) {
  note_renew_rtt(e, t1 - t0);
  pthread_mutex_lock(&b->mu);
  e->n_renewals++;
  pthread_mutex_unlock(&b->mu);
  if (rc == GM_OK) {
    pthread_mutex_lock(&b->mu);
    /* !reported: next_event already told the user the deadline passed */
    int late = t1 >= e->master_until_t || !e->reported;
    note_success(e);
    if (!late) {
      e->master_until_t = t0 + e->dl_ns;
      if (e->want) /* stop() zeroed it and must find it zero */
        atomic_store(&e->master_until, e->master_until_t);
      gm_row own;
      renewed_row(e, r, &own);
      fill_leader(&e->leader, &own);
    }
    pthread_mutex_unlock(&b->mu);
    if (late) {
      /* The renewal came back after our deadline: that grant is over.
       * Step down and release, so the lock is not left held. */
      gm_error rerr = {0};
      step_down(e, GM_STOP_DEADLINE);
      if (b->conn && b->ops->release(b->conn, e->name, e->id, e->instance,
                                     e->my_token, &rerr) == GM_ERR)
        fail(b, e, &rerr);
      e->next_at = gm_mono_ns();
      return;
    }
    e->next_at = t0 + e->hb_ns;
    return;
  }
  if (rc == GM_NOT) {
    step_down(e, GM_STOP_LOST);
    e->next_at = t1;
    return;
  }
  if (err) fail(b, e, err);
  /* retry the renewal soon, while the deadline allows */
  e->next_at = min64(max64(b->reconnect_at, t1 + e->hb_ns / 4),
                     e->master_until_t);
}

static void master_step(gm_backend *b, gm_elector *e) {
  gm_row r = {0};
  gm_error err = {0};
  int64_t t0 = gm_mono_ns();
  if (t0 >= e->master_until_t) {
    step_down(e, GM_STOP_DEADLINE);
    e->next_at = t0;
    return;
  }
  int rc = b->ops->renew(b->conn, e->name, e->id, e->instance, e->my_token,
                         e->lease_ns / US_PER_NS, &r, &err);
  rc = unconflict(rc, &err);
  renew_done(b, e, rc, t0, gm_mono_ns(), &r, &err);
}

static int batch_grow(gm_backend *b, size_t n) {
  if (n <= b->batch_cap) return GM_OK;
  size_t cap = b->batch_cap ? b->batch_cap * 2 : 16;
  while (cap < n) cap *= 2;
  gm_elector **es = realloc(b->batch, cap * sizeof *es);
  if (es) b->batch = es;
  gm_renew_req *rq = realloc(b->reqs, cap * sizeof *rq);
  if (rq) b->reqs = rq;
  if (!es || !rq) return GM_ERR;
  b->batch_cap = cap;
  return GM_OK;
}

/* Renews, in one call of renew_many, every lock this thread holds whose
 * heartbeat falls due within half a heartbeat (so the heartbeats of a
 * node's locks fall into step and stay there): one statement per
 * heartbeat however many locks the node holds. Renewing early is safe: it
 * only moves the deadline from a later send time. */
static void master_batch(gm_backend *b, gm_elector *due) {
  int64_t now = gm_mono_ns();
  size_t n = 0;
  pthread_mutex_lock(&b->mu);
  for (gm_elector *e = b->active; e; e = e->next)
    if (e->want && e->role == ROLE_MASTER &&
        (e == due || e->next_at <= now + e->hb_ns / 2)) {
      if (batch_grow(b, n + 1) != GM_OK) break;
      b->batch[n++] = e;
    }
  pthread_mutex_unlock(&b->mu);
  if (n == 0) { /* no memory for even one: renew the due lock alone */
    master_step(b, due);
    return;
  }
  int64_t t0 = gm_mono_ns();
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    gm_elector *e = b->batch[i];
    if (t0 >= e->master_until_t) {
      step_down(e, GM_STOP_DEADLINE);
      e->next_at = t0;
      continue;
    }
    b->batch[k] = e;
    b->reqs[k] = (gm_renew_req){.name = e->name,
                                .owner = e->id,
                                .token = e->my_token,
                                .lease_us = e->lease_ns / US_PER_NS,
                                .rc = GM_ERR,
                                .instance = e->instance};
    k++;
  }
  if (k == 0) return;
  gm_error err = {0};
  int rc = b->ops->renew_many(b->conn, b->reqs, k, &err);
  int64_t t1 = gm_mono_ns();
  if (rc == GM_ERR) {
    fail(b, b->batch[0], &err);
    for (size_t i = 0; i < k; i++)
      renew_done(b, b->batch[i], GM_ERR, t0, t1, NULL, NULL);
    return;
  }
  if (rc == GM_NOT) { /* the batch cannot tell which: one by one */
    for (size_t i = 0; i < k; i++) {
      if (b->conn)
        master_step(b, b->batch[i]);
      else /* a failure closed the connection */
        renew_done(b, b->batch[i], GM_ERR, t0, t1, NULL, NULL);
    }
    return;
  }
  for (size_t i = 0; i < k; i++) {
    gm_elector *e = b->batch[i];
    const gm_renew_req *q = &b->reqs[i];
    gm_row r = {
        .renewed_at = q->renewed_at, .expires_at = q->expires_at, .now = q->now};
    gm_error none = {GM_E_DB, "renew: the backend set no result"};
    int one = q->rc == GM_OK || q->rc == GM_NOT ? q->rc : GM_ERR;
    renew_done(b, e, one, t0, t1, &r, one == GM_ERR ? &none : NULL);
    if (!b->conn) { /* that failure closed the connection */
      for (size_t j = i + 1; j < k; j++)
        renew_done(b, b->batch[j], GM_ERR, t0, t1, NULL, NULL);
      return;
    }
  }
}

static void wake_followers(gm_backend *b, int64_t now);

/* The most a wake-up spreads its followers' reads (wake_at). */
#define WAKE_SPREAD_NS (50 * GM_NS_PER_MS)

/* A wake-up (changed(), a watch) has follower e read soon: within a
 * random part of a twentieth of min(retry, lease), at most 50 ms, so
 * that the followers of many nodes woken by one release do not all read
 * the free row at once and all write (one grant, N-1 refused writes): the
 * first read takes it and most later ones read the new holder. Keeps the
 * time the read was due for (woken_from). */
static void wake_at(gm_backend *b, gm_elector *e, int64_t now) {
  if (!e->woken_from) e->woken_from = e->next_at;
  e->next_at =
      min64(e->next_at, now + jitter(b, min64(WAKE_SPREAD_NS,
                                             min64(e->retry_ns, e->lease_ns) /
                                                 20)));
}

/* Between observes: asks the backend whether anything changed (then every
 * follower observes now) and whether a holder a follower waits on is gone
 * (then that follower observes now). */
static void poll_step(gm_backend *b) {
  int64_t now = gm_mono_ns();
  b->poll_at = now + b->ops->poll_us * US_PER_NS;
  if (!b->conn) return;
  gm_error err = {0};
  int ch = b->ops->changed ? b->ops->changed(b->conn, &err) : GM_NOT;
  /* A changed() error is no reason to drop the connection (the wake-up is
   * only a hint; the followers observe as after a change): its message goes
   * to the first follower's on_error once, until another one comes. */
  int say = ch == GM_ERR && err.msg[0] && strcmp(err.msg, b->poll_err) != 0;
  if (say) snprintf(b->poll_err, sizeof b->poll_err, "%s", err.msg);
  /* Only this thread unlinks electors, so the list past its head, read
   * under mu, stays as it is while we walk it. */
  pthread_mutex_lock(&b->mu);
  gm_elector *head = b->active;
  for (gm_elector *e = head; say && e; e = e->next)
    if (e->role == ROLE_FOLLOWER) {
      push_error(e, &err);
      say = 0;
    }
  pthread_mutex_unlock(&b->mu);
  int64_t checked = -1;
  int gone = 0;
  for (gm_elector *e = head; e; e = e->next) {
    /* A follower whose row is wrong (row_said) reads once a retry, woken
     * or not: each commit to the database would read it again. */
    if (e->role != ROLE_FOLLOWER || e->next_at <= now || e->row_said[0])
      continue;
    if (ch != GM_NOT) {
      wake_at(b, e, now);
    } else if (e->holder >= 0 && b->ops->holder_gone) {
      if (e->holder != checked) {
        checked = e->holder;
        gone = b->ops->holder_gone(b->conn, checked, &err) == GM_OK;
      }
      if (gone) e->next_at = now;
    }
  }
}

static void elector_destroy(gm_elector *e);

/* Runs the stop that the API asked for: release if master, queue the stop
 * (stop() queued it already, unless a grant came since). An elector started
 * again meanwhile campaigns on; one freed meanwhile is freed here. */
static void stop_step(gm_backend *b, gm_elector *e, gm_stop_reason why) {
  if (e->role == ROLE_MASTER) {
    gm_error err = {0};
    pthread_mutex_lock(&b->mu);
    int quit = b->quit; /* going away: no new connection for a release */
    pthread_mutex_unlock(&b->mu);
    if ((b->conn || !quit) && ensure_conn(b, e) == GM_OK &&
        b->ops->release(b->conn, e->name, e->id, e->instance, e->my_token,
                        &err) != GM_ERR) {
      pthread_mutex_lock(&b->mu);
      e->n_releases++;
      pthread_mutex_unlock(&b->mu);
    } else if (err.msg[0]) {
      fail(b, e, &err);
    }
    e->role = ROLE_FOLLOWER;
    e->master_until_t = 0;
  }
  pthread_mutex_lock(&b->mu);
  push_stop(e, why);
  if (e->want) { /* started again while the release ran */
    e->next_at = 0;
    pthread_mutex_unlock(&b->mu);
    return;
  }
  for (gm_elector **p = &b->active; *p; p = &(*p)->next)
    if (*p == e) {
      *p = e->next;
      break;
    }
  e->active = 0;
  int orphan = e->orphan;
  pthread_cond_broadcast(&b->done);
  pthread_mutex_unlock(&b->mu);
  if (orphan) elector_destroy(e);
}

static void run_step(gm_backend *b, gm_elector *e) {
  if (ensure_conn(b, e) != GM_OK) {
    if (e->role == ROLE_MASTER && gm_mono_ns() >= e->master_until_t)
      step_down(e, GM_STOP_DEADLINE);
    e->next_at = e->role == ROLE_MASTER
                     ? min64(b->reconnect_at, e->master_until_t)
                     : b->reconnect_at;
    e->woken_from = 0; /* the read it was woken for did not happen */
    e->have_wrow = 0;
    return;
  }
  if (e->role == ROLE_MASTER && b->ops->renew_many)
    master_batch(b, e);
  else if (e->role == ROLE_MASTER)
    master_step(b, e);
  else
    follower_step(b, e);
}

static void timed_wait(gm_backend *b, int64_t until) {
  timed_wait_on(&b->wake, b, until);
}

/* ---- the wake-up thread (ops->watch) ------------------------------------ */

/* How long one watch() may block on the wake-up's connection: the thread
 * comes back this often to see whether the target moved (a target change
 * does not interrupt it). On the election connection a watch lasts until
 * the thread's next step, at most this long when nothing else is due. */
#define WATCH_MAX_US (5 * GM_US_PER_S)
/* The shortest watch worth a statement on the election connection: one
 * that blocks this long beyond the backend's early end (watch_early_us),
 * which also covers the scheduling of the thread around it. */
#define WATCH_MIN_NS (20 * GM_NS_PER_MS)

/* Under mu: the wake-up found the lock may have changed: the election
 * thread's followers read at once. */
static void wk_woke(gm_backend *b) {
  atomic_store(&b->woke, 1);
  b->kicks++;
  pthread_cond_signal(&b->wake);
}

static void *wk_main(void *arg) {
  gm_backend *b = arg;
  void *conn = NULL;
  gm_backoff wk_bo = {0};
  int64_t retry_at = 0;
  char name[GM_NAME_MAX];
  pthread_mutex_lock(&b->mu);
  while (!b->wk_quit) {
    if (!b->wk_name[0] || b->wk_gen == b->wk_done_gen) {
      if (!b->wk_name[0] && conn) { /* nobody waits: give it back */
        b->wk_live = NULL;
        pthread_mutex_unlock(&b->mu);
        b->ops->close(conn);
        conn = NULL;
        pthread_mutex_lock(&b->mu);
        continue;
      }
      pthread_cond_wait(&b->wk_cv, &b->mu);
      continue;
    }
    int64_t now = gm_mono_ns();
    if (!conn && now < retry_at) {
      gm_cond_wait_until(&b->wk_cv, &b->mu, retry_at);
      continue;
    }
    uint64_t gen = b->wk_gen;
    memcpy(name, b->wk_name, sizeof name);
    pthread_mutex_unlock(&b->mu);
    gm_error err = {0};
    int (*open)(const void *, void **, gm_error *) =
        b->ops->open_watch ? b->ops->open_watch : b->ops->open;
    if (!conn && open(b->cfg, &conn, &err) != GM_OK) {
      /* quietly: the election goes on at retry speed meanwhile */
      conn = NULL;
      pthread_mutex_lock(&b->mu);
      retry_at = gm_mono_ns() + backoff(&wk_bo, err.code, GM_NS_PER_S);
      continue;
    }
    pthread_mutex_lock(&b->mu);
    if (b->wk_live != conn) b->watch_blind = 0; /* a new connection */
    b->wk_live = conn;
    if (b->wk_quit) break;
    pthread_mutex_unlock(&b->mu);
    int64_t t_watch = gm_mono_ns();
    int rc = b->ops->watch(conn, name, WATCH_MAX_US, NULL, &err);
    int64_t took_ns = gm_mono_ns() - t_watch;
    pthread_mutex_lock(&b->mu);
    if (rc == GM_ERR) {
      b->wk_live = NULL;
      atomic_store(&b->blinded, 1); /* uncovered until it watches again */
      pthread_cond_signal(&b->wake);
      pthread_mutex_unlock(&b->mu);
      b->ops->close(conn);
      conn = NULL;
      pthread_mutex_lock(&b->mu);
      retry_at = gm_mono_ns() + gm_backoff_next(&wk_bo);
      continue;
    }
    gm_backoff_reset(&wk_bo);
    if (rc == GM_NOT && took_ns < gm_us_to_ns(WATCH_MAX_US) / 2 &&
        gen == b->wk_gen && strcmp(name, b->wk_name) == 0) {
      /* nothing, and at once: the backend cannot watch this lock from
       * here (MySQL under Galera); not again until a follower read it,
       * and the followers read each retry meanwhile */
      b->wk_done_gen = gen;
      if (!b->watch_blind) { /* off their lease-end schedule */
        atomic_store(&b->blinded, 1);
        pthread_cond_signal(&b->wake);
      }
      b->watch_blind = 1;
    } else if (rc == GM_OK) {
      /* no new watch of this lock until a follower read it again */
      if (gen == b->wk_gen && strcmp(name, b->wk_name) == 0)
        b->wk_done_gen = gen;
      wk_woke(b);
    }
  }
  b->wk_live = NULL;
  pthread_mutex_unlock(&b->mu);
  if (conn) b->ops->close(conn);
  return NULL;
}

/* Under mu: the first follower that waits on another node's live lease
 * (the lock to watch), or NULL. */
static gm_elector *watch_target(gm_backend *b) {
  for (gm_elector *e = b->active; e; e = e->next)
    if (e->want && e->role == ROLE_FOLLOWER && e->watch) return e;
  return NULL;
}

/* Under mu: whether the election thread watches t's lock itself, on its
 * own connection: the backend can (watch_shared), nothing of this backend
 * object is master, and every follower that waits on a live lease waits
 * on t's lock. Then a node holds one connection. */
static int watch_here(gm_backend *b, const gm_elector *t) {
  if (!t || !b->ops->watch_shared) return 0;
  for (gm_elector *e = b->active; e; e = e->next)
    if (e->role != ROLE_FOLLOWER ||
        (e->watch && strcmp(e->name, t->name) != 0))
      return 0;
  return 1;
}

/* Under mu, on the election thread: points the wake-up at the lock of the
 * first follower that waits on another node's live lease (a new read of it
 * makes a new generation), or at none (also when the election thread
 * watches it itself); starts the thread on first need. */
static void wk_target(gm_backend *b, gm_elector *t) {
  if (!b->ops->watch) return;
  if (!t || watch_here(b, t)) {
    if (b->wk_name[0]) { /* its connection closes now */
      b->wk_name[0] = '\0';
      if (b->wk_live) b->ops->interrupt(b->wk_live);
      pthread_cond_signal(&b->wk_cv);
    }
    return;
  }
  if (b->wk_name[0] && t == b->wk_for && t->watch_gen == b->wk_for_gen &&
      strcmp(b->wk_name, t->name) == 0)
    return;
  gm_strlcpy(b->wk_name, t->name, sizeof b->wk_name);
  b->wk_for = t;
  b->wk_for_gen = t->watch_gen;
  b->wk_gen++;
  if (!b->wk_running && !b->wk_quit)
    b->wk_running = pthread_create(&b->wk_thread, NULL, wk_main, b) == 0;
  pthread_cond_signal(&b->wk_cv);
}

/* Under mu: a watch said a lock may have changed: every follower reads
 * now (as after changed()). */
static void wake_followers(gm_backend *b, int64_t now) {
  for (gm_elector *e = b->active; e; e = e->next)
    if (e->want && e->role == ROLE_FOLLOWER && e->next_at > now &&
        !e->row_said[0])
      wake_at(b, e, now);
}

static void unstretch(gm_backend *b);

static void wk_take(gm_backend *b, int64_t now) {
  if (atomic_exchange(&b->blinded, 0)) unstretch(b);
  if (atomic_exchange(&b->woke, 0)) wake_followers(b, now);
}

/* Under mu: moves each follower that has just read (stretch) to the end of
 * the lease it saw where a watch of its lock can still tell it of a
 * release, or of the holder's session ending (a crash), before then: on
 * the election connection or the wake-up's (ops->watch_crash). Elsewhere
 * (changed() or a watch tells of releases only; the short way of point 2
 * needs a silent holder's last renewal read less than L - D after it) it
 * reads again a retry on. */
static void stretch(gm_backend *b, const gm_elector *t) {
  int here = watch_here(b, t);
  for (gm_elector *e = b->active; e; e = e->next) {
    if (!e->stretch) continue;
    e->stretch = 0;
    e->unstretched = 0;
    if (e->row_said[0]) continue; /* a row that reads wrong: each retry */
    if (!b->ops->watch_crash) continue; /* releases only: each retry */
    int told = t && !b->watch_blind && strcmp(e->name, t->name) == 0 &&
               (here ? !t->watch_done : b->wk_done_gen != b->wk_gen);
    if (told && e->next_at < e->watch_until) {
      e->unstretched = e->next_at;
      e->next_at = e->watch_until;
    }
  }
}

/* Under mu: the watch no longer covers its lock (it cannot watch from
 * here, or its connection failed): each follower that a stretch moved to
 * the lease's end reads when it was due before (a retry after its last
 * read), not at once: a watch that says nothing costs no read. */
static void unstretch(gm_backend *b) {
  for (gm_elector *e = b->active; e; e = e->next) {
    if (e->unstretched && e->role == ROLE_FOLLOWER &&
        e->unstretched < e->next_at)
      e->next_at = e->unstretched;
    e->unstretched = 0;
  }
}

/* Under mu: the thread has work from the API: wake it, and end at once a
 * watch it blocks in on its election connection. */
static void kick(gm_backend *b) {
  b->kicks++;
  pthread_cond_broadcast(&b->wake);
  if (b->watching && !b->watch_cut && b->live_conn) {
    b->watch_cut = 1;
    b->ops->interrupt(b->live_conn);
  }
}

/* Under mu: the row t's watch ended on, read at some local time in [t0,
 * t1], is t's next read, due now (follower_step): t1 anchors "first
 * seen", t0 is the read's start (see track_clock). */
static void keep_row(gm_elector *t, const gm_row *row, int64_t t0,
                     int64_t t1) {
  t->wrow = *row;
  t->wrow_t0 = t0;
  t->wrow_t1 = t1;
  t->have_wrow = 1;
  t->next_at = min64(t->next_at, t1);
}

/* Under mu, on the election thread with nothing due before `until`: blocks
 * in watch on its own connection on t's lock (watch_here) until then, a
 * change, or kick(). Returns 0 when there is nothing to watch (the caller
 * waits as usual). */
static int watch_step(gm_backend *b, gm_elector *t, int64_t until) {
  int64_t now = gm_mono_ns();
  /* the backend's watch may end this long before its timeout (Redis's
   * timer tick): a wait that short is no watch */
  int64_t early = gm_us_to_ns(b->ops->watch_early_us);
  if (!watch_here(b, t) || t->watch_done || b->watch_blind || !b->conn ||
      b->quit || until - now < WATCH_MIN_NS + early)
    return 0;
  char name[GM_NAME_MAX];
  memcpy(name, t->name, sizeof name);
  uint64_t gen = t->watch_gen;
  int64_t span_us = until == INT64_MAX ? WATCH_MAX_US
                                       : (until - now) / US_PER_NS;
  b->watching = b->idle = 1;
  pthread_mutex_unlock(&b->mu);
  gm_error err = {0};
  gm_row row = {0};
  int rc = b->ops->watch(b->conn, name, span_us, &row, &err);
  int64_t t1 = gm_mono_ns();
  pthread_mutex_lock(&b->mu);
  int cut = b->watch_cut;
  b->watching = b->idle = b->watch_cut = 0;
  /* t is still active: only this thread unlinks electors */
  int same = t->watch_gen == gen;
  if (rc == GM_ERR || cut) {
    /* the connection is gone, or was poked (an interrupt may have shut
     * it just as the watch returned): reopened, at once when cut on
     * purpose; nothing is reported: the next read says what is wrong */
    pthread_mutex_unlock(&b->mu);
    close_conn(b);
    b->reconnect_at = cut ? t1 : t1 + gm_backoff_next(&b->backoff);
    pthread_mutex_lock(&b->mu);
    /* the reads a retry after the last, the watch again once reopened */
    unstretch(b);
  } else if (rc == GM_OK) {
    if (same) t->watch_done = 1; /* not again until a follower read it */
    wake_followers(b, t1);
    /* woken alone (watch_one), with the row: read at once, no spread,
     * where a wake-up has t read (woken_from; not a row that reads
     * wrong: each retry) */
    if (row.now && same && t->woken_from && b->ops->watch_one)
      keep_row(t, &row, now, t1);
  } else if (row.now && same && t->want && t->next_at - t1 < WATCH_MIN_NS) {
    /* ended by its timeout, at t's next read, with the row as it ended:
     * that read (follower_step), no second statement */
    keep_row(t, &row, now, t1);
  } else if (!row.now && t1 - now < (gm_us_to_ns(span_us) - early) / 2) {
    /* nothing, at once: cannot watch from here (MySQL under Galera) */
    if (same) t->watch_done = 1;
    b->watch_blind = 1;
    unstretch(b);
  } else if (same && until - t1 < WATCH_MIN_NS + early) {
    /* ended by its time, no earlier than the backend said it may
     * (watch_early_us: Redis's ends on its server's timer tick): the read
     * is due, no second watch for the moments left. One that ended
     * sooner is watched again for the moments left (the backend said its
     * watch lasts: a release in them still wakes the follower) */
    t->watch_done = 1;
  }
  return 1;
}

/* Under mu, as the election thread ends: stops and joins the wake-up (a
 * watch under way is interrupted). */
static void wk_stop(gm_backend *b) {
  b->wk_quit = 1;
  if (b->wk_live && b->ops->interrupt) b->ops->interrupt(b->wk_live);
  pthread_cond_signal(&b->wk_cv);
  if (!b->wk_running) return;
  b->wk_running = 0;
  pthread_mutex_unlock(&b->mu);
  pthread_join(b->wk_thread, NULL);
  pthread_mutex_lock(&b->mu);
}

static void *thread_main(void *arg) {
  gm_backend *b = arg;
  pthread_mutex_lock(&b->mu);
  /* After quit, only the stop steps of electors freed meanwhile are left. */
  while (!b->quit || b->active) {
    int64_t now = gm_mono_ns(), next = INT64_MAX;
    gm_elector *due = NULL;
    int followers = 0;
    gm_elector *target = watch_target(b);
    wk_target(b, target);
    wk_take(b, now);
    stretch(b, target);
    for (gm_elector *e = b->active; e; e = e->next) {
      if (!e->want || e->next_at <= now) {
        due = e;
        break;
      }
      next = min64(next, e->next_at);
      followers |= e->role == ROLE_FOLLOWER;
    }
    if (!due && followers && b->ops->poll_us > 0 && b->conn) {
      if (b->poll_at <= now) {
        pthread_mutex_unlock(&b->mu);
        poll_step(b);
        pthread_mutex_lock(&b->mu);
        continue;
      }
      next = min64(next, b->poll_at);
    }
    if (!due) {
      if (!b->active && b->conn) { /* idle: give the connection back */
        void *c = b->conn;
        b->conn = NULL;
        b->live_conn = NULL;
        pthread_mutex_unlock(&b->mu);
        b->ops->close(c);
        pthread_mutex_lock(&b->mu);
        continue;
      }
      if (b->quit) break;
      if (watch_step(b, target, next)) continue;
      unsigned k = b->kicks;
      b->idle = 1;
      if (next == INT64_MAX) {
        while (!b->quit && k == b->kicks) pthread_cond_wait(&b->wake, &b->mu);
      } else {
        timed_wait(b, next);
      }
      b->idle = 0;
      continue;
    }
    int want = due->want;
    gm_stop_reason why = due->stop_reason;
    pthread_mutex_unlock(&b->mu);
    if (want)
      run_step(b, due);
    else
      stop_step(b, due, why);
    pthread_mutex_lock(&b->mu);
  }
  wk_stop(b);
  pthread_mutex_unlock(&b->mu);
  close_conn(b);
  pthread_mutex_lock(&b->mu);
  int orphan = b->orphan;
  b->thread_done = 1; /* after this, the unref that waits frees b */
  pthread_cond_broadcast(&b->done);
  pthread_mutex_unlock(&b->mu);
  if (orphan) backend_free(b);
  return NULL;
}

/* ---- electors: API ------------------------------------------------------ */

static void default_id(char *buf, size_t len) {
  char host[64] = "host";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  snprintf(buf, len, "%s:%ld:%08x", host, (long)getpid(),
           (unsigned)(gm_seed64() & 0xffffffffu));
}

gm_elector *gm_elector_new(gm_backend *b, const gm_config *cfg_in,
                           gm_error *err) {
  gm_config c = *cfg_in;
  if (!b) {
    gm_seterr(err, GM_E_ARG, "backend: none given");
    return NULL;
  }
  if (gm_config_resolve(&c, err) != GM_OK) return NULL;
  const char *name = c.name ? c.name : "default";
  if (check_text("name", name, GM_NAME_MAX, 0, err) ||
      (c.id && check_text("id", c.id, GM_ID_MAX, 0, err)) ||
      (c.version && check_text("version", c.version, GM_ID_MAX, 1, err)))
    return NULL;
  gm_elector *e = calloc(1, sizeof *e);
  if (!e) {
    gm_seterr(err, GM_E_NOMEM, "out of memory");
    return NULL;
  }
  gm_strlcpy(e->name, name, sizeof e->name);
  if (c.id)
    gm_strlcpy(e->id, c.id, sizeof e->id);
  else
    default_id(e->id, sizeof e->id);
  e->default_id = !c.id;
  e->instance = new_instance();
  gm_strlcpy(e->version, c.version ? c.version : "", sizeof e->version);
  e->lease_ns = (int64_t)(c.lease * NS);
  e->hb_ns = (int64_t)(c.heartbeat * NS);
  e->dl_ns = (int64_t)(c.renew_deadline * NS);
  e->retry_ns = (int64_t)(c.retry * NS);
  atomic_init(&e->master_until, 0);
  atomic_init(&e->token, 0);
  e->efd = -1;
  e->holder = -1;
  e->b = b;
  gm_backend_ref(b);
  pthread_mutex_lock(&b->mu);
  e->all_next = b->electors;
  b->electors = e;
  pthread_mutex_unlock(&b->mu);
  return e;
}

int gm_elector_start(gm_elector *e, gm_error *err) {
  gm_backend *b = e->b;
  pthread_mutex_lock(&b->mu);
  if (e->active) { /* already campaigning (or a stop is pending) */
    e->want = 1;
    pthread_mutex_unlock(&b->mu);
    return GM_OK;
  }
  if (!b->thread_running) {
    b->quit = 0;
    int rc = pthread_create(&b->thread, NULL, thread_main, b);
    if (rc != 0) {
      pthread_mutex_unlock(&b->mu);
      gm_seterr(err, GM_E_STATE, "cannot start the election thread: %s",
                strerror(rc));
      return GM_ERR;
    }
    b->thread_running = 1;
    b->thread_done = 0;
  }
  e->want = 1;
  e->active = 1;
  e->role = ROLE_FOLLOWER;
  e->next_at = 0;
  e->woken_from = 0; /* a wake-up before a stop() is no reason to read */
  e->have_wrow = 0;
  e->unstretched = 0;
  e->next = b->active;
  b->active = e;
  kick(b);
  pthread_mutex_unlock(&b->mu);
  return GM_OK;
}

/* is_master() is false and stop(why) queued at once; the release goes on
 * on the thread, waited for at most STOP_WAIT_NS. */
static void stop_as(gm_elector *e, gm_stop_reason why) {
  gm_backend *b = e->b;
  pthread_mutex_lock(&b->mu);
  atomic_store(&e->master_until, 0); /* is_master is false from here on */
  atomic_store(&e->token, 0);
  if (e->active) {
    int asked = e->want; /* a stop already under way is not waited again */
    e->want = 0;
    e->stop_reason = why;
    push_stop(e, why);
    kick(b);
    /* Waited for only when the thread was idle: then the release starts
     * now and is usually done within the wait. A thread inside a call may
     * be stuck in it for a whole read timeout. */
    int64_t until = gm_mono_ns() + (asked && b->idle ? STOP_WAIT_NS : 0);
    while (e->active && !e->want && gm_mono_ns() < until)
      timed_wait_on(&b->done, b, until);
  }
  pthread_mutex_unlock(&b->mu);
}

void gm_elector_stop(gm_elector *e) { stop_as(e, GM_STOP_STOPPED); }

void gm_elector_close(gm_elector *e) { stop_as(e, GM_STOP_CLOSED); }

/* Frees e, which no thread has any more (mu not held). */
static void elector_destroy(gm_elector *e) {
  free_queue(e);
  free(e);
}

void gm_elector_free(gm_elector *e) {
  if (!e) return;
  gm_backend *b = e->b;
  stop_as(e, GM_STOP_CLOSED);
  pthread_mutex_lock(&b->mu);
  for (gm_elector **p = &b->electors; *p; p = &(*p)->all_next)
    if (*p == e) {
      *p = e->all_next;
      break;
    }
  if (e->efd >= 0 && e->efd_pid == getpid()) close(e->efd);
  e->efd = -1;
  int later = e->active; /* the thread still has it: it frees it */
  e->orphan = later;
  pthread_mutex_unlock(&b->mu);
  if (!later) elector_destroy(e);
  gm_backend_unref(b); /* the thread, if any, outlives the last use of b */
}

int gm_elector_is_master(const gm_elector *e) {
  return gm_fast_is_master(&e->master_until);
}

const _Atomic int64_t *gm_elector_until_ref(const gm_elector *e) {
  return &e->master_until;
}

uint64_t gm_elector_token(const gm_elector *e) {
  return gm_elector_is_master(e) ? atomic_load(&e->token) : 0;
}

int64_t gm_elector_deadline(const gm_elector *e) {
  return atomic_load(&e->master_until);
}

const char *gm_elector_id(const gm_elector *e) { return e->id; }
uint64_t gm_elector_instance(const gm_elector *e) { return e->instance; }
const char *gm_elector_name(const gm_elector *e) { return e->name; }

int gm_elector_fd(gm_elector *e, gm_error *err) {
  pthread_mutex_lock(&e->b->mu);
  pid_t me = getpid();
  if (e->efd >= 0 && e->efd_pid != me) { /* the parent's: not ours to use */
    close(e->efd);
    e->efd = -1;
  }
  if (e->efd < 0) {
    e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->efd < 0) {
      int saved = errno;
      pthread_mutex_unlock(&e->b->mu);
      gm_seterr(err, GM_E_STATE, "eventfd: %s", strerror(saved));
      return -1;
    }
    e->efd_pid = me;
    if (e->q_head) wake_fd(e);
  }
  int fd = e->efd;
  pthread_mutex_unlock(&e->b->mu);
  return fd;
}

int gm_elector_next_event(gm_elector *e, gm_event *ev) {
  gm_backend *b = e->b;
  pthread_mutex_lock(&b->mu);
  /* The thread may hang in a call past our deadline: say so ourselves. */
  int64_t until = atomic_load(&e->master_until);
  if (e->reported && until && gm_mono_ns() >= until) push_stop(e, GM_STOP_DEADLINE);
  ev_node *n = e->q_head;
  if (n) {
    e->q_head = n->next;
    if (!e->q_head) e->q_tail = NULL;
  }
  if (!e->q_head && e->efd >= 0 && e->efd_pid == getpid()) {
    uint64_t v;
    ssize_t r = read(e->efd, &v, sizeof v); /* drain: nothing left */
    (void)r;
  }
  pthread_mutex_unlock(&b->mu);
  if (!n) return GM_NOT;
  *ev = n->ev;
  free(n);
  return GM_OK;
}

void gm_elector_status(gm_elector *e, gm_status *st) {
  memset(st, 0, sizeof *st);
  st->is_master = gm_elector_is_master(e);
  st->token = st->is_master ? atomic_load(&e->token) : 0;
  e->b->ops->describe(e->b->cfg, st->backend, sizeof st->backend);
  pthread_mutex_lock(&e->b->mu);
  st->running = e->active && e->want;
  st->leader = e->leader;
  snprintf(st->last_error, sizeof st->last_error, "%s", e->last_error);
  st->last_error_at = e->last_error_at;
  st->acquires = e->n_acquires;
  st->renewals = e->n_renewals;
  st->observes = e->n_observes;
  st->releases = e->n_releases;
  st->errors = e->n_errors;
  st->grants = e->n_grants;
  st->losses = e->n_losses;
  pthread_mutex_unlock(&e->b->mu);
  for (int i = 0; i < 4; i++)
    st->stops[i] = atomic_load_explicit(&e->m_stops[i], memory_order_relaxed);
  uint64_t sum = 0;
  for (int i = 0; i <= GM_RENEW_BUCKETS; i++) {
    sum += atomic_load_explicit(&e->m_renew_in[i], memory_order_relaxed);
    if (i < GM_RENEW_BUCKETS) st->renew_le[i] = sum;
  }
  st->renew_count = sum;
  st->renew_sum = (double)atomic_load_explicit(&e->m_renew_sum_ns,
                                               memory_order_relaxed) / 1e9;
  int64_t until = atomic_load(&e->master_until), now = gm_mono_ns();
  st->deadline_in = st->is_master && until > now ? (double)(until - now) / 1e9
                                                 : 0;
}
