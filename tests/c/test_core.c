/*
 * test_core.c: unit tests of the election core (src/elector.c) against the
 * scripted in-process backend of scripted.h.
 *
 * One line per check ("ok - ..." or "FAIL - ..."), lines starting with '#'
 * for measurements, and a last line "N passed, N failed"; exit 1 if any
 * check failed. Events are waited for on gm_elector_fd with poll(); short
 * sleeps only where no event exists (a call that started hanging, a state
 * that must hold over a span of time).
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#define NS_ 1000000000LL

#include "gomaster.h"
#include "fastpath.h"
#include "check.h"
#include "scripted.h"


#define MS 1000000LL

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(int64_t t_ns) {
  struct timespec ts = {.tv_sec = t_ns / 1000000000LL,
                        .tv_nsec = t_ns % 1000000000LL};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static void sleep_ms(int ms) { sleep_until(mono_ns() + ms * MS); }

static gm_config conf(const char *name, const char *id, double lease,
                      double hb, double dl, double retry) {
  gm_config c = {.name = name,
                 .id = id,
                 .lease = lease,
                 .heartbeat = hb,
                 .renew_deadline = dl,
                 .retry = retry};
  return c;
}

static gm_elector *mk(gm_backend *b, gm_config c) {
  gm_error err = {0};
  gm_elector *e = gm_elector_new(b, &c, &err);
  if (!e) {
    check(0, "gm_elector_new %s: %s", c.id, err.msg);
    exit(1);
  }
  return e;
}

static void start(gm_elector *e) {
  gm_error err = {0};
  if (gm_elector_start(e, &err) != GM_OK) {
    check(0, "gm_elector_start %s: %s", gm_elector_id(e), err.msg);
    exit(1);
  }
}

/* Events popped from the electors wait here until a test takes them, so
 * that waiting for one elector's event never drops another's. */
#define LOG_MAX 4096
static struct {
  const gm_elector *e;
  gm_event ev;
} g_log[LOG_MAX];
static int g_nlog;

static void log_remove(int i) {
  memmove(&g_log[i], &g_log[i + 1], (size_t)(g_nlog - i - 1) * sizeof g_log[0]);
  g_nlog--;
}

static void log_pull(gm_elector *e) {
  gm_event ev;
  while (gm_elector_next_event(e, &ev) == GM_OK) {
    if (g_nlog == LOG_MAX) log_remove(0); /* the oldest nobody took */
    g_log[g_nlog].e = e;
    g_log[g_nlog++].ev = ev;
  }
}

/* Takes the oldest logged event of e of type `type` (0: any). */
static int log_take(const gm_elector *e, int type, gm_event *ev) {
  for (int i = 0; i < g_nlog; i++)
    if (g_log[i].e == e && (!type || (int)g_log[i].ev.type == type)) {
      *ev = g_log[i].ev;
      log_remove(i);
      return 1;
    }
  return 0;
}

/* Takes every event of e of type `type` queued now; returns how many. */
static int count_ev(gm_elector *e, int type) {
  gm_event ev;
  int n = 0;
  log_pull(e);
  while (log_take(e, type, &ev)) n++;
  return n;
}

/* Drops the events of e so far: what a test waits for next is new. */
static void log_clear(gm_elector *e) { (void)count_ev(e, 0); }

/* Frees an elector and forgets its logged events. */
static void free_el(gm_elector *e) {
  for (int i = g_nlog - 1; i >= 0; i--)
    if (g_log[i].e == e) log_remove(i);
  gm_elector_free(e);
}

/* Waits up to timeout_ms for an event of type `type` (0: any) on any of the
 * n electors. Returns the index of the elector, -1 on timeout. Polls the
 * electors' fds, and wakes at a master's deadline, when
 * gm_elector_next_event queues stop("deadline") itself. */
static int wait_any(gm_elector **es, int n, int type, int timeout_ms,
                    gm_event *ev) {
  int64_t end = mono_ns() + timeout_ms * MS;
  struct pollfd pf[8];
  for (int i = 0; i < n; i++) {
    gm_error err = {0};
    pf[i].fd = gm_elector_fd(es[i], &err);
    pf[i].events = POLLIN;
    if (pf[i].fd < 0) {
      check(0, "gm_elector_fd: %s", err.msg);
      return -1;
    }
  }
  for (;;) {
    for (int i = 0; i < n; i++) log_pull(es[i]);
    for (int i = 0; i < n; i++)
      if (log_take(es[i], type, ev)) return i;
    int64_t now = mono_ns(), until = end;
    if (now >= end) return -1;
    for (int i = 0; i < n; i++) {
      int64_t dl = gm_elector_deadline(es[i]);
      if (dl && dl + MS < until) until = dl + MS;
    }
    int ms = until > now ? (int)((until - now + MS - 1) / MS) : 0;
    poll(pf, (nfds_t)n, ms);
  }
}

static int wait_ev(gm_elector *e, int type, int timeout_ms, gm_event *ev) {
  return wait_any(&e, 1, type, timeout_ms, ev) == 0;
}

/* Waits for leader(id, token): earlier ones (the lock was free) are skipped. */
static int wait_leader(gm_elector *e, const char *id, uint64_t token,
                       int timeout_ms, gm_event *ev) {
  int64_t end = mono_ns() + timeout_ms * MS;
  for (;;) {
    int64_t left = (end - mono_ns()) / MS;
    if (left < 0 || !wait_ev(e, GM_EV_LEADER, (int)left, ev)) return 0;
    if (ev->leader.held && strcmp(ev->leader.id, id) == 0 &&
        ev->leader.token == token)
      return 1;
  }
}

/* Polls a condition no event reports (a call that began hanging). */
static int wait_cond(int (*cond)(void *), void *arg, int timeout_ms) {
  int64_t end = mono_ns() + timeout_ms * MS;
  while (!cond(arg)) {
    if (mono_ns() >= end) return 0;
    sleep_ms(1);
  }
  return 1;
}

static int renew_hangs(void *n) { return sc_hanging(n, SC_RENEW) > 0; }

/* The node's connections are closed: a thread left to finish by itself
 * (gm_backend_unref does not wait for a hung call) no longer uses the
 * scripted database. */
static int no_conns(void *p) {
  sc_node *n = p;
  pthread_mutex_lock(&n->db->mu);
  int none = n->conns == 0;
  pthread_mutex_unlock(&n->db->mu);
  return none;
}

static int row_owner_is(sc_db *db, const char *name, const char *owner) {
  sc_row r;
  return sc_get(db, name, &r) && strcmp(r.owner, owner) == 0;
}

/* ---- config --------------------------------------------------------------- */

static int resolve_fails(gm_config c, const char *field) {
  gm_error err = {0};
  int rc = gm_config_resolve(&c, &err);
  size_t len = strlen(field);
  return rc == GM_ERR && err.code == GM_E_ARG &&
         strncmp(err.msg, field, len) == 0 &&
         (err.msg[len] == ':' || err.msg[len] == ' ');
}

static void test_config(void) {
  gm_error err = {0};
  gm_config c = {0};
  int rc = gm_config_resolve(&c, &err);
  check(rc == GM_OK && c.lease == 5 && c.heartbeat == 1 &&
            c.renew_deadline == 3 && c.retry == 1,
        "config: defaults L=5 H=1 D=3 P=1 (got %g %g %g %g)", c.lease,
        c.heartbeat, c.renew_deadline, c.retry);
  c = (gm_config){.lease = 10};
  rc = gm_config_resolve(&c, &err);
  check(rc == GM_OK && c.heartbeat == 2 && c.renew_deadline == 6 &&
            c.retry == 2,
        "config: only lease=10 gives H=2 D=6 P=2 (got %g %g %g)", c.heartbeat,
        c.renew_deadline, c.retry);
  c = (gm_config){.lease = 0.5};
  rc = gm_config_resolve(&c, &err);
  check(rc == GM_OK && fabs(c.heartbeat - 0.1) < 1e-12 &&
            fabs(c.renew_deadline - 0.3) < 1e-12 && fabs(c.retry - 0.1) < 1e-12,
        "config: only lease=0.5 is valid: H=L/5 D=3L/5 P=L/5");
  c = (gm_config){.lease = 5, .heartbeat = 2, .renew_deadline = 4, .retry = 3};
  rc = gm_config_resolve(&c, &err);
  check(rc == GM_OK && c.lease == 5 && c.heartbeat == 2 &&
            c.renew_deadline == 4 && c.retry == 3,
        "config: given timings are kept");

  check(resolve_fails((gm_config){.lease = 5, .heartbeat = 3,
                                  .renew_deadline = 3},
                      "heartbeat"),
        "config: H == D refused naming heartbeat");
  check(resolve_fails((gm_config){.lease = 2, .heartbeat = 2}, "heartbeat"),
        "config: H above the default D refused naming heartbeat");
  check(resolve_fails((gm_config){.lease = 3, .heartbeat = 1,
                                  .renew_deadline = 3},
                      "renew_deadline"),
        "config: D == L refused naming renew_deadline");
  check(resolve_fails((gm_config){.lease = 3, .renew_deadline = 4},
                      "renew_deadline"),
        "config: D > L refused naming renew_deadline");
  check(resolve_fails((gm_config){.lease = -1}, "lease"),
        "config: negative lease refused naming lease");
  check(resolve_fails((gm_config){.heartbeat = -0.5}, "heartbeat"),
        "config: negative heartbeat refused naming heartbeat");
  check(resolve_fails((gm_config){.renew_deadline = -2}, "renew_deadline"),
        "config: negative renew_deadline refused naming renew_deadline");
  check(resolve_fails((gm_config){.retry = -1}, "retry"),
        "config: negative retry refused naming retry");
  check(resolve_fails((gm_config){.lease = NAN}, "lease"),
        "config: NaN lease refused naming lease");
  check(resolve_fails((gm_config){.retry = INFINITY}, "retry"),
        "config: infinite retry refused naming retry");

  sc_db db;
  sc_node n;
  sc_db_init(&db);
  sc_node_init(&n, &db);
  gm_backend *b = sc_backend(&n, &err);
  check(b != NULL, "gm_backend_new_ops makes a backend from the test's ops");
  gm_config bad = conf("x", "a", 1, 1, 0.5, 0.1);
  memset(&err, 0, sizeof err);
  gm_elector *e = gm_elector_new(b, &bad, &err);
  check(e == NULL && strstr(err.msg, "heartbeat") != NULL,
        "config: gm_elector_new refuses H > D naming heartbeat (%s)", err.msg);
  bad = conf("", "a", 1, 0.1, 0.5, 0.1);
  e = gm_elector_new(b, &bad, &err);
  check(e == NULL && strncmp(err.msg, "name", 4) == 0,
        "config: empty lock name refused naming name (%s)", err.msg);
  gm_backend_unref(b);

  gm_backend_ops wrong = sc_ops;
  wrong.abi = GM_BACKEND_ABI + 1;
  gm_kv kv = {"node", n.opt};
  b = gm_backend_new_ops(&wrong, &kv, 1, &err);
  check(b == NULL && err.code == GM_E_BACKEND,
        "gm_backend_new_ops refuses another ABI (%s)", err.msg);
  sc_db_destroy(&db);
}

/* ---- election ------------------------------------------------------------- */

static void test_one_of_two(void) {
  sc_db db;
  sc_node n;
  gm_error err = {0};
  sc_db_init(&db);
  sc_node_init(&n, &db);
  gm_backend *b = sc_backend(&n, &err);
  gm_elector *es[2] = {mk(b, conf("one", "A", 1, 0.1, 0.6, 0.1)),
                       mk(b, conf("one", "B", 1, 0.1, 0.6, 0.1))};
  int64_t t0 = mono_ns();
  start(es[0]);
  start(es[1]);
  gm_event ev;
  int w = wait_any(es, 2, GM_EV_START, 2000, &ev);
  double ms = (double)(mono_ns() - t0) / MS;
  check(w >= 0, "one of two: a START event came (%.1f ms)", ms);
  if (w < 0) goto out;
  gm_elector *m = es[w], *f = es[1 - w];
  check(ms < 300, "one of two: a lock never seen is free at once (%.1f ms)",
        ms);
  check(ev.token == 1 && gm_elector_token(m) == ev.token,
        "one of two: START carries the token (%" PRIu64 ", token() %" PRIu64
        ")",
        ev.token, gm_elector_token(m));
  check(gm_elector_is_master(m) && !gm_elector_is_master(f),
        "one of two: exactly one is master");
  check(gm_elector_token(f) == 0, "one of two: the follower's token is 0");
  int got = wait_leader(f, gm_elector_id(m), 1, 1000, &ev);
  check(got,
        "one of two: the follower gets leader(%s, token 1)", gm_elector_id(m));
  int both = 0, none = 0;
  for (int64_t end = mono_ns() + 600 * MS; mono_ns() < end; sleep_ms(5)) {
    int a = gm_elector_is_master(m), c = gm_elector_is_master(f);
    both += a && c;
    none += !a;
  }
  check(both == 0 && none == 0,
        "one of two: over 6 heartbeats the master stays and the other never "
        "is");
  gm_status st;
  gm_elector_status(m, &st);
  check(st.is_master && st.renewals >= 3 && st.grants == 1,
        "one of two: status counts %" PRIu64 " renewals, 1 grant",
        st.renewals);
out:
  free_el(es[0]);
  free_el(es[1]);
  gm_backend_unref(b);
  check(wait_cond(no_conns, &n, 2000),
        "one of two: the connection is closed after unref");
  sc_db_destroy(&db);
}

/* One node (one backend, one thread) with one elector on its own database. */
typedef struct solo {
  sc_db db;
  sc_node n;
  gm_backend *b;
  gm_elector *e;
} solo;

static void solo_init(solo *s, const char *lock, double L, double H, double D,
                      double P) {
  gm_error err = {0};
  sc_db_init(&s->db);
  sc_node_init(&s->n, &s->db);
  s->b = sc_backend(&s->n, &err);
  s->e = mk(s->b, conf(lock, "M", L, H, D, P));
}

/* solo_init, start, wait for START: its token, 0 on failure. */
static uint64_t solo_master(solo *s, const char *lock, double L, double H,
                            double D, double P) {
  gm_event ev;
  solo_init(s, lock, L, H, D, P);
  start(s->e);
  int ok = wait_ev(s->e, GM_EV_START, 2000, &ev);
  check(ok, "%s: became master (token %" PRIu64 ")", lock, ok ? ev.token : 0);
  return ok ? ev.token : 0;
}

static void solo_free(solo *s) {
  for (int op = 0; op < SC_NOPS; op++) sc_set(&s->n, op, SC_NORMAL);
  free_el(s->e);
  gm_backend_unref(s->b);
  wait_cond(no_conns, &s->n, 5000);
  sc_db_destroy(&s->db);
}

/* Two nodes (two backends, two threads) on one database. */
typedef struct pair {
  sc_db db;
  sc_node n[2];
  gm_backend *b[2];
  gm_elector *e[2];
} pair;

/* fast: 1, the backend has the speed ops (sc_backend_fast); 2, the core's
 * wake-up thread's watch (sc_backend_watch); 3, watch on the election
 * connection (sc_backend_shared). */
static void pair_init_as(pair *p, int fast, const char *lock, double L,
                         double H, double D, double P) {
  gm_error err = {0};
  sc_db_init(&p->db);
  static const char *ids[2] = {"node-0", "node-1"};
  for (int i = 0; i < 2; i++) {
    sc_node_init(&p->n[i], &p->db);
    p->b[i] = fast >= 2 ? sc_backend_watch_as(&p->n[i], fast - 2, &err)
              : fast   ? sc_backend_fast(&p->n[i], &err)
                       : sc_backend(&p->n[i], &err);
    p->e[i] = mk(p->b[i], conf(lock, ids[i], L, H, D, P));
  }
}

static void pair_init(pair *p, const char *lock, double L, double H, double D,
                      double P) {
  pair_init_as(p, 0, lock, L, H, D, P);
}

static void pair_free(pair *p) {
  for (int i = 0; i < 2; i++) {
    sc_set(&p->n[i], SC_RENEW, SC_NORMAL);
    free_el(p->e[i]);
    gm_backend_unref(p->b[i]);
  }
  for (int i = 0; i < 2; i++) wait_cond(no_conns, &p->n[i], 5000);
  sc_db_destroy(&p->db);
}

/* Starts e[0], waits for it to be master, starts e[1] and waits until it
 * has seen e[0] hold the lock. Returns e[0]'s token, 0 on failure. */
static uint64_t pair_elect(pair *p, const char *what) {
  gm_event ev;
  start(p->e[0]);
  int ok = wait_ev(p->e[0], GM_EV_START, 2000, &ev);
  uint64_t tok = ok ? ev.token : 0;
  start(p->e[1]);
  ok = ok && wait_leader(p->e[1], "node-0", tok, 2000, &ev);
  check(ok, "%s: node-0 master (token %" PRIu64 "), node-1 follows", what,
        tok);
  return ok ? tok : 0;
}

static void test_tokens(void) {
  pair p;
  pair_init(&p, "tok", 1, 0.1, 0.6, 0.1);
  uint64_t tok = pair_elect(&p, "tokens");
  if (!tok) goto out;
  int cur = 0, grow = 1;
  uint64_t first = tok;
  for (int i = 0; i < 4; i++) {
    gm_event ev;
    gm_elector_stop(p.e[cur]);
    int got = wait_ev(p.e[1 - cur], GM_EV_START, 2000, &ev);
    if (!got || ev.token != tok + 1) {
      grow = 0;
      printf("# handover %d: got %d token %" PRIu64 " after %" PRIu64 "\n", i,
             got, got ? ev.token : 0, tok);
    }
    tok = got ? ev.token : tok;
    start(p.e[cur]);
    /* the restarted node reads the new holder: it has seen every token */
    if (!wait_leader(p.e[cur], gm_elector_id(p.e[1 - cur]), tok, 2000, &ev))
      grow = 0;
    cur = 1 - cur;
  }
  check(grow, "tokens: four handovers give tokens %" PRIu64 "..%" PRIu64
              ", one more per grant",
        first + 1, tok);
  sc_row r;
  check(sc_get(&p.db, "tok", &r) && r.token == tok &&
            strcmp(r.owner, gm_elector_id(p.e[cur])) == 0,
        "tokens: the row holds the current master and token");

  /* Point 7: the row vanishes under a live master. */
  gm_elector *m = p.e[cur];
  log_clear(m);
  int64_t t_del = mono_ns();
  sc_delete(&p.db, "tok");
  gm_event ev;
  int got = wait_ev(m, GM_EV_STOP, 1000, &ev);
  check(got && ev.reason == GM_STOP_LOST,
        "vanished row: the master's renew finds no row: stop(lost)");
  int w = wait_any(p.e, 2, GM_EV_START, 3000, &ev);
  double ms = (double)(mono_ns() - t_del) / MS;
  printf("# vanished row: re-created %.1f ms after it vanished (L = 1000 ms)\n",
         ms);
  check(w >= 0 && ms >= 1000,
        "vanished row: treated as held until watched absent for L (%.1f ms)",
        ms);
  check(w >= 0 && ev.token == tok + 1,
        "vanished row: the new token %" PRIu64 " is above the largest seen "
        "(%" PRIu64 ")",
        w >= 0 ? ev.token : 0, tok);
  check(sc_get(&p.db, "tok", &r) && r.token == tok + 1,
        "vanished row: the re-created row has token %" PRIu64, tok + 1);
out:
  pair_free(&p);
}

/* Point 2: a database clock that steps forward cannot cut a live lease. */
static void test_clock_step(void) {
  pair p;
  pair_init(&p, "step", 2, 0.2, 1.2, 0.05);
  uint64_t tok = pair_elect(&p, "clock step");
  if (!tok) goto out;
  gm_elector *m = p.e[0], *f = p.e[1];
  sc_node *nm = &p.n[0], *nf = &p.n[1];

  /* Hold the master's next renewal back so that the follower surely reads
   * the row while the stepped clock says the lease ended long ago. */
  sc_set(nm, SC_RENEW, SC_HANG);
  int hung = wait_cond(renew_hangs, nm, 1000);
  sc_step_clock(&p.db, 10 * 1000000LL);
  sc_row r;
  sc_get(&p.db, "step", &r);
  int64_t past_ms = (sc_now(&p.db) - r.expires_at) / 1000;
  unsigned obs = sc_calls(nf, SC_OBSERVE);
  int64_t end = mono_ns() + 600 * MS;
  while (sc_calls(nf, SC_OBSERVE) < obs + 4 && mono_ns() < end) sleep_ms(2);
  unsigned seen = sc_calls(nf, SC_OBSERVE) - obs;
  check(hung && seen >= 4 && gm_elector_is_master(m),
        "clock step: the follower read the row %u times while the database "
        "said the lease ended %" PRId64 " ms ago, master still renewing",
        seen, past_ms);
  check(!gm_elector_is_master(f) && row_owner_is(&p.db, "step", "node-0") &&
            sc_calls(nf, SC_ACQUIRE) == 0,
        "clock step: the follower did not take over (no acquire)");
  sc_set(nm, SC_RENEW, SC_NORMAL);

  /* A second step with no help; then both run for longer than a lease. */
  int64_t t_step2 = mono_ns() + 500 * MS;
  int stepped = 0, f_master = 0, m_lapse = 0;
  for (end = mono_ns() + 2500 * MS; mono_ns() < end; sleep_ms(5)) {
    if (!stepped && mono_ns() >= t_step2) {
      sc_step_clock(&p.db, 10 * 1000000LL);
      stepped = 1;
    }
    f_master += gm_elector_is_master(f);
    m_lapse += !gm_elector_is_master(m);
  }
  int f_start = 0, m_stop = 0;
  f_start = count_ev(f, GM_EV_START);
  m_stop = count_ev(m, GM_EV_STOP);
  check(f_master == 0 && f_start == 0 && sc_calls(nf, SC_ACQUIRE) == 0,
        "clock step: over a lease and two steps of 10 s the follower never "
        "became master");
  check(m_lapse == 0 && m_stop == 0 && gm_elector_token(m) == tok &&
            row_owner_is(&p.db, "step", "node-0"),
        "clock step: the master stayed master with token %" PRIu64, tok);
out:
  pair_free(&p);
}

/* A crashed master (its renewals stop): a follower takes over soon after
 * the lease ends, never before. */
static void test_crash_takeover(void) {
  pair p;
  double P = 0.2;
  pair_init(&p, "crash", 1, 0.1, 0.6, P);
  uint64_t tok = pair_elect(&p, "crash");
  if (!tok) goto out;
  gm_elector *m = p.e[0], *f = p.e[1];
  sc_set(&p.n[0], SC_RENEW, SC_HANG);
  int hung = wait_cond(renew_hangs, &p.n[0], 1000);
  int64_t m_deadline = gm_elector_deadline(m);
  sc_row before, after;
  sc_get(&p.db, "crash", &before);
  gm_event ev;
  int got = wait_ev(f, GM_EV_START, 3000, &ev);
  check(hung && got && ev.token == tok + 1,
        "crash: the follower took over with token %" PRIu64,
        got ? ev.token : 0);
  if (!got) goto out;
  sc_get(&p.db, "crash", &after);
  double delay_ms = (double)(after.acquired_at - before.expires_at) / 1000;
  printf("# crash: takeover %.1f ms after the lease ended (retry %.0f ms)\n",
         delay_ms, P * 1000);
  check(delay_ms >= 0, "crash: not before the lease ended (%.1f ms)",
        delay_ms);
  check(delay_ms < P * 1000 + 100,
        "crash: within one retry after the lease ended (%.1f ms)", delay_ms);
  int64_t acq_mono = sc_db_to_mono_us(&p.db, after.acquired_at) * 1000;
  check(!gm_elector_is_master(m) && m_deadline > 0 && m_deadline <= acq_mono,
        "crash: the old master's deadline passed %.1f ms before the grant",
        (double)(acq_mono - m_deadline) / MS);
out:
  pair_free(&p);
}

/* A crashed master and a database clock that steps forward at once: the
 * database says the lease ended, but the follower's own clock must agree. */
static void test_crash_step(void) {
  pair p;
  double P = 0.1;
  pair_init(&p, "crashstep", 1, 0.1, 0.6, P);
  uint64_t tok = pair_elect(&p, "crash + step");
  if (!tok) goto out;
  sc_set(&p.n[0], SC_RENEW, SC_HANG);
  int hung = wait_cond(renew_hangs, &p.n[0], 1000);
  sc_row before, after;
  sc_get(&p.db, "crashstep", &before);
  int64_t exp_mono = sc_db_to_mono_us(&p.db, before.expires_at);
  sc_step_clock(&p.db, 10 * 1000000LL);
  gm_event ev;
  int got = wait_ev(p.e[1], GM_EV_START, 3000, &ev);
  check(hung && got && ev.token == tok + 1,
        "crash + step: the follower took over with token %" PRIu64,
        got ? ev.token : 0);
  if (!got) goto out;
  sc_get(&p.db, "crashstep", &after);
  double delay_ms =
      (double)(sc_db_to_mono_us(&p.db, after.acquired_at) - exp_mono) / 1000;
  printf("# crash + step: takeover %.1f ms after the lease ended on the "
         "follower's clock\n",
         delay_ms);
  check(delay_ms >= 0,
        "crash + step: not before the lease ended on our own clock (%.1f ms)",
        delay_ms);
  check(delay_ms < P * 1000 + 100,
        "crash + step: still within one retry of the real end (%.1f ms)",
        delay_ms);
out:
  pair_free(&p);
}

static void test_hang_deadline(void) {
  solo s;
  uint64_t tok = solo_master(&s, "hang", 1, 0.1, 0.5, 0.1);
  sc_node *n = &s.n;
  gm_elector *m = s.e;
  gm_event ev;
  if (!tok) goto out;
  log_clear(m);
  sc_set(n, SC_RENEW, SC_HANG);
  int hung = wait_cond(renew_hangs, n, 1000);
  int64_t dl = gm_elector_deadline(m);
  check(hung && dl > mono_ns(), "hang: a renewal hangs, deadline %.1f ms ahead",
        (double)(dl - mono_ns()) / MS);
  sleep_until(dl - 20 * MS);
  int64_t a = mono_ns();
  int before = gm_elector_is_master(m);
  int64_t a2 = mono_ns();
  if (a2 < dl)
    check(before, "hang: still master %.1f ms before the deadline",
          (double)(dl - a) / MS);
  sleep_until(dl);
  int at = gm_elector_is_master(m);
  uint64_t at_tok = gm_elector_token(m);
  double late = (double)(mono_ns() - dl) / MS;
  /* The thread is stuck in the renewal: nothing but the clock can turn
   * is_master false, so a check a little late (a loaded machine) still
   * tests the clock; 100 ms stays far inside the hang. */
  check(!at && at_tok == 0 && late < 100,
        "hang: is_master false and token 0 at the deadline (checked %.2f ms "
        "after it)",
        late);
  int got = wait_ev(m, 0, 100, &ev);
  check(got && ev.type == GM_EV_STOP && ev.reason == GM_STOP_DEADLINE &&
            sc_hanging(n, SC_RENEW) == 1,
        "hang: next_event yields stop(deadline) while the renewal still hangs");
  got = wait_ev(m, 0, 50, &ev);
  check(!got, "hang: no second event while it hangs");

  /* Released: the late renewal is no grant. A START may follow only with a
   * new grant and a new token. */
  gm_status st0;
  gm_elector_status(m, &st0);
  sc_set(n, SC_RENEW, SC_NORMAL);
  int starts = 0, bad = 0, old_token_master = 0;
  uint64_t last = tok;
  for (int64_t end = mono_ns() + 1500 * MS; mono_ns() < end;) {
    if (wait_ev(m, 0, 5, &ev)) {
      if (ev.type == GM_EV_START) {
        starts++;
        if (ev.token <= last) bad++;
        last = ev.token;
      }
    }
    if (gm_elector_is_master(m) && gm_elector_token(m) == tok)
      old_token_master++;
  }
  gm_status st1;
  gm_elector_status(m, &st1);
  check(old_token_master == 0,
        "hang: after release never master again under the old token");
  check(bad == 0 && (uint64_t)starts == st1.grants - st0.grants,
        "hang: every later START (%d) is a new grant with a new token "
        "(last %" PRIu64 ")",
        starts, last);
  check(starts >= 1 && last == tok + 1,
        "hang: campaigns again and wins token %" PRIu64, tok + 1);
out:
  solo_free(&s);
}

static void test_stop_master(void) {
  pair p;
  double P = 0.2;
  pair_init(&p, "stopm", 2, 0.2, 1.2, P);
  if (!pair_elect(&p, "stop master")) goto out;
  gm_elector *m = p.e[0], *f = p.e[1];
  log_clear(m);
  int64_t t0 = mono_ns();
  gm_elector_stop(m);
  int64_t t1 = mono_ns();
  check(!gm_elector_is_master(m) && gm_elector_token(m) == 0,
        "stop master: not master once stop() returned");
  check(t1 - t0 < 50 * MS,
        "stop master: stop() released and returned without waiting for a "
        "heartbeat (%.1f ms, H = 200 ms)",
        (double)(t1 - t0) / MS);
  sc_row r = {0};
  int kept = sc_get(&p.db, "stopm", &r);
  check(kept && strcmp(r.owner, "node-0") != 0 &&
            sc_calls(&p.n[0], SC_RELEASE) == 1,
        "stop master: the lock was released (row kept, token %" PRIu64 ")",
        r.token);
  gm_event ev;
  int got = wait_ev(m, 0, 200, &ev);
  check(got && ev.type == GM_EV_STOP && ev.reason == GM_STOP_STOPPED,
        "stop master: stop(stopped) queued");
  got = wait_ev(f, GM_EV_START, 2000, &ev);
  double ms = (double)(mono_ns() - t1) / MS;
  printf("# stop master: follower took over %.1f ms after stop (retry %.0f "
         "ms, lease 2000 ms)\n",
         ms, P * 1000);
  check(got && ms < P * 1000 + 100,
        "stop master: the follower took over within one retry (%.1f ms)", ms);
  gm_status st;
  gm_elector_status(m, &st);
  check(!st.running && st.releases == 1, "stop master: status not running");
out:
  pair_free(&p);
}

static void test_stop_follower(void) {
  pair p;
  pair_init(&p, "stopf", 1, 0.1, 0.6, 0.1);
  if (!pair_elect(&p, "stop follower")) goto out;
  gm_elector *m = p.e[0], *f = p.e[1];
  gm_elector_stop(f);
  unsigned obs = sc_calls(&p.n[1], SC_OBSERVE),
           acq = sc_calls(&p.n[1], SC_ACQUIRE);
  gm_elector_stop(m); /* the lock is free now */
  int f_master = 0;
  for (int64_t end = mono_ns() + 600 * MS; mono_ns() < end; sleep_ms(5))
    f_master += gm_elector_is_master(f);
  int f_events = 0;
  f_events = count_ev(f, GM_EV_START) + count_ev(f, GM_EV_STOP);
  check(f_master == 0 && f_events == 0,
        "stop follower: never master after stop, even with the lock free");
  check(sc_calls(&p.n[1], SC_OBSERVE) == obs &&
            sc_calls(&p.n[1], SC_ACQUIRE) == acq,
        "stop follower: no reads or writes after stop");
  check(row_owner_is(&p.db, "stopf", ""), "stop follower: the lock stays free");
out:
  pair_free(&p);
}

static void test_lost(void) {
  solo s;
  uint64_t tok = solo_master(&s, "lost", 1, 0.1, 0.6, 0.1);
  sc_db *db = &s.db;
  gm_elector *m = s.e;
  gm_event ev;
  if (!tok) goto out;
  log_clear(m);
  uint64_t stolen = sc_steal(db, "lost", "thief", 5 * 1000000LL);
  int got = wait_ev(m, 0, 1000, &ev);
  check(got && ev.type == GM_EV_STOP && ev.reason == GM_STOP_LOST &&
            !gm_elector_is_master(m),
        "lost: a renew that finds another owner yields stop(lost)");
  got = wait_ev(m, GM_EV_LEADER, 1000, &ev);
  check(got && strcmp(ev.leader.id, "thief") == 0 && ev.leader.token == stolen,
        "lost: then leader(thief, token %" PRIu64 ")", stolen);
  int again = 0;
  for (int64_t end = mono_ns() + 400 * MS; mono_ns() < end; sleep_ms(5))
    again += gm_elector_is_master(m);
  gm_status st;
  gm_elector_status(m, &st);
  check(again == 0 && st.losses == 1 && row_owner_is(db, "lost", "thief"),
        "lost: follows the thief's live lease, losses = 1");
out:
  solo_free(&s);
}

static void test_errors(void) {
  solo s;
  solo_init(&s, "err", 1, 0.1, 0.6, 0.1);
  sc_node *n = &s.n;
  gm_elector *e = s.e;
  sc_set(n, SC_OBSERVE, SC_FAIL);
  start(e);
  gm_event ev;
  int got = wait_ev(e, GM_EV_ERROR, 1000, &ev);
  check(got && strstr(ev.message, "observe failed") != NULL,
        "errors: a failing read yields error(%s)", got ? ev.message : "");
  sc_set(n, SC_OPEN, SC_FAIL); /* and reconnecting fails too */
  got = wait_ev(e, GM_EV_ERROR, 1500, &ev);
  check(got && strstr(ev.message, "open failed") != NULL,
        "errors: a failing reconnect yields error(%s)", got ? ev.message : "");
  gm_status st;
  gm_elector_status(e, &st);
  check(!gm_elector_is_master(e) && st.errors >= 2 &&
            strstr(st.last_error, "open failed") != NULL,
        "errors: not master, status counts %" PRIu64 " errors, last_error set",
        st.errors);
  sc_set(n, SC_OPEN, SC_NORMAL);
  sc_set(n, SC_OBSERVE, SC_NORMAL);
  int64_t t0 = mono_ns();
  got = wait_ev(e, GM_EV_START, 3000, &ev);
  check(got && gm_elector_is_master(e),
        "errors: recovers once the backend works again (START after %.1f ms)",
        (double)(mono_ns() - t0) / MS);
  if (!got) goto out;
  uint64_t tok = ev.token;

  /* A master whose renewals fail for a moment, shorter than D. */
  sc_set(n, SC_RENEW, SC_FAIL);
  got = wait_ev(e, GM_EV_ERROR, 1000, &ev);
  sc_set(n, SC_RENEW, SC_NORMAL);
  check(got && strstr(ev.message, "renew failed") != NULL,
        "errors: a failing renewal yields error(%s)", got ? ev.message : "");
  unsigned ren = sc_calls(n, SC_RENEW);
  int lapse = 0;
  for (int64_t end = mono_ns() + 700 * MS; mono_ns() < end; sleep_ms(5))
    lapse += !gm_elector_is_master(e);
  int stops = 0;
  stops = count_ev(e, GM_EV_STOP);
  check(lapse == 0 && stops == 0 && gm_elector_token(e) == tok &&
            sc_calls(n, SC_RENEW) >= ren + 3,
        "errors: the master renews again and stays master (token %" PRIu64 ")",
        tok);

  /* Failing for longer than D: steps down at the deadline. */
  sc_set(n, SC_RENEW, SC_FAIL);
  got = wait_ev(e, GM_EV_STOP, 2000, &ev);
  check(got && ev.reason == GM_STOP_DEADLINE && !gm_elector_is_master(e),
        "errors: renewals failing past D yield stop(deadline)");
out:
  solo_free(&s);
}

static void test_free_running(void) {
  sc_db db;
  sc_node n, n2;
  gm_error err = {0};
  sc_db_init(&db);
  sc_node_init(&n, &db);
  sc_node_init(&n2, &db);
  gm_backend *b = sc_backend(&n, &err), *b2 = sc_backend(&n2, &err);
  gm_elector *es[4] = {mk(b, conf("free", "A", 1, 0.1, 0.6, 0.1)),
                       mk(b, conf("free", "B", 1, 0.1, 0.6, 0.1)),
                       mk(b, conf("free2", "C", 1, 0.1, 0.6, 0.1)),
                       mk(b2, conf("free", "D", 1, 0.1, 0.6, 0.1))};
  gm_elector *idle = mk(b, conf("free", "idle", 1, 0.1, 0.6, 0.1));
  for (int i = 0; i < 4; i++) start(es[i]);
  gm_event ev;
  int w = wait_any(es, 4, GM_EV_START, 2000, &ev);
  (void)wait_ev(es[2], GM_EV_START, 2000, &ev);
  free_el(idle);
  gm_backend_unref(b); /* the electors keep it alive */
  int64_t worst = 0;
  /* a master first, while the others run */
  int order[4], k = 0;
  order[k++] = w >= 0 ? w : 0;
  for (int i = 0; i < 4; i++)
    if (i != order[0]) order[k++] = i;
  for (int i = 0; i < 4; i++) {
    int64_t t0 = mono_ns();
    free_el(es[order[i]]);
    int64_t took = mono_ns() - t0;
    if (took > worst) worst = took;
  }
  check(w >= 0 && worst < 50 * MS,
        "free while running: masters and followers freed, slowest %.1f ms",
        (double)worst / MS);
  check(row_owner_is(&db, "free", "") && row_owner_is(&db, "free2", ""),
        "free while running: the masters released their locks");
  check(wait_cond(no_conns, &n, 2000) &&
            sc_calls(&n, SC_OPEN) == sc_calls(&n, SC_CLOSE),
        "free while running: the last free closed the shared connection");
  gm_backend_unref(b2);
  check(wait_cond(no_conns, &n2, 2000),
        "free while running: the other backend closed too");
  sc_db_destroy(&db);
}

/* ---- ABI 2: read, complete, force_release --------------------------------- */

static void test_operator(void) {
  pair p;
  pair_init(&p, "op", 1, 0.1, 0.6, 0.1);
  uint64_t tok = pair_elect(&p, "operator");
  if (!tok) goto out;
  gm_error err = {0};
  gm_lock_info li;
  int rc = gm_backend_read(p.b[1], "op", &li, &err);
  check(rc == GM_OK && li.exists && li.live && strcmp(li.owner, "node-0") == 0 &&
            li.token == tok && li.done_at == 0,
        "read: shows the holder node-0 with its token, live, not done");
  rc = gm_backend_read(p.b[1], "nosuch", &li, &err);
  check(rc == GM_OK && !li.exists, "read: a lock never made does not exist");
  /* names no column could keep stop in the core, before any backend */
  char longer[GM_NAME_MAX + 1];
  memset(longer, 'n', GM_NAME_MAX);
  longer[GM_NAME_MAX] = '\0';
  unsigned reads = sc_calls(&p.n[1], SC_OBSERVE);
  int r1 = gm_backend_read(p.b[1], longer, &li, &err);
  int r2 = gm_backend_force_release(p.b[1], longer, &li, &err);
  int r3 = gm_backend_complete(p.b[1], longer, "node-1", 0, tok, "x", &err);
  check(r1 == GM_ERR && r2 == GM_ERR && r3 == GM_ERR &&
            err.code == GM_E_ARG && strstr(err.msg, "name") &&
            sc_calls(&p.n[1], SC_OBSERVE) == reads,
        "read, force_release, complete: a %d-byte name is refused in the "
        "core (%s)", GM_NAME_MAX, err.msg);

  rc = gm_backend_complete(p.b[1], "op", "node-1", 0, tok, "x", &err);
  check(rc == GM_NOT, "complete: refused to a node that does not hold it");
  rc = gm_backend_complete(p.b[0], "op", "node-0", 0, tok, "migrated", &err);
  gm_backend_read(p.b[1], "op", &li, &err);
  check(rc == GM_OK && li.done_at > 0 && strcmp(li.done_by, "node-0") == 0 &&
            li.done_token == tok && strcmp(li.result, "migrated") == 0 &&
            li.live && li.token == tok && gm_elector_is_master(p.e[0]),
        "complete: the holder records done_by, token and result; the lock "
        "is unchanged");
  char big[GM_RESULT_MAX + 1];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  rc = gm_backend_complete(p.b[0], "op", "node-0", 0, tok, big, &err);
  check(rc == GM_ERR && err.code == GM_E_ARG &&
            strncmp(err.msg, "result", 6) == 0,
        "complete: a result too long is refused naming result");

  log_clear(p.e[0]);
  rc = gm_backend_force_release(p.b[1], "op", &li, &err);
  check(rc == GM_OK && li.exists && li.owner[0] == '\0' && !li.live &&
            li.token == tok + 1,
        "force_release: frees the lock with a new token %" PRIu64, tok + 1);
  gm_event ev;
  int got = wait_ev(p.e[0], GM_EV_STOP, 1000, &ev);
  check(got && ev.reason == GM_STOP_LOST && gm_elector_token(p.e[0]) != tok,
        "force_release: the fenced holder's renewal fails: stop(lost)");
  int w = wait_any(p.e, 2, GM_EV_START, 1000, &ev);
  check(w >= 0 && ev.token == tok + 2,
        "force_release: the freed lock is taken at once with token %" PRIu64,
        tok + 2);
  rc = gm_backend_force_release(p.b[1], "nosuch", &li, &err);
  check(rc == GM_NOT, "force_release: GM_NOT for a lock that does not exist");

  gm_backend_ops v1 = sc_ops; /* a backend without the optional calls */
  v1.complete = NULL;
  v1.force_release = NULL;
  gm_kv kv = {"node", p.n[1].opt};
  gm_backend *b = gm_backend_new_ops(&v1, &kv, 1, &err);
  rc = b ? gm_backend_complete(b, "op", "node-1", 0, tok, "", &err) : GM_OK;
  check(rc == GM_ERR && err.code == GM_E_BACKEND,
        "complete: a backend without it says so (%s)", err.msg);
  rc = b ? gm_backend_force_release(b, "op", &li, &err) : GM_OK;
  check(rc == GM_ERR && err.code == GM_E_BACKEND,
        "force_release: a backend without it says so");
  gm_backend_unref(b);
out:
  pair_free(&p);
}

/* ---- fork ----------------------------------------------------------------- */

static void test_fork(void) {
  solo s;
  uint64_t tok = solo_master(&s, "fork", 1, 0.1, 0.6, 0.1);
  sc_node *n = &s.n;
  gm_elector *m = s.e;
  gm_error err = {0};
  gm_event ev;
  if (!tok) goto out;
  int pfd = gm_elector_fd(m, &err); /* made before fork: shared with a child */
  int c2p[2], p2c[2];
  if (pipe(c2p) || pipe(p2c)) {
    check(0, "fork: pipe: %s", strerror(errno));
    goto out;
  }
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(20);
    passed = failed = 0;
    close(c2p[0]);
    close(p2c[1]);
    check(!gm_elector_is_master(m) && gm_elector_token(m) == 0 &&
              gm_elector_deadline(m) == 0,
          "fork child: the parent's master is not master here");
    gm_status st;
    gm_elector_status(m, &st);
    check(!st.running, "fork child: not running here");
    int cfd = gm_elector_fd(m, &err);
    check(cfd >= 0, "fork child: gm_elector_fd gives an fd of its own");
    char c = 'r';
    if (write(c2p[1], &c, 1) != 1 || read(p2c[0], &c, 1) != 1) _exit(2);
    /* the parent queued events and keeps queuing them now */
    struct pollfd pf = {.fd = cfd, .events = POLLIN};
    int r = poll(&pf, 1, 300);
    check(r == 0, "fork child: its fd does not receive the parent's events");
    check(gm_elector_next_event(m, &ev) == GM_NOT,
          "fork child: no events of the parent's election");
    int64_t t0 = mono_ns();
    gm_elector_free(m);
    check(mono_ns() - t0 < 100 * MS, "fork child: gm_elector_free returns");
    int counts[2] = {passed, failed};
    if (write(c2p[1], counts, sizeof counts) != (ssize_t)sizeof counts)
      _exit(2);
    fflush(stdout);
    _exit(0);
  }
  close(c2p[1]);
  close(p2c[0]);
  char c;
  int ok = read(c2p[0], &c, 1) == 1;
  sc_set(n, SC_RENEW, SC_FAIL); /* the parent's election goes on: errors */
  int got = ok && wait_ev(m, GM_EV_ERROR, 1000, &ev);
  check(got, "fork parent: its election still queues events");
  ok = ok && write(p2c[1], "d", 1) == 1;
  int counts[2] = {0, 1};
  ssize_t rd = ok ? read(c2p[0], counts, sizeof counts) : -1;
  int status = 0;
  waitpid(pid, &status, 0);
  check(rd == (ssize_t)sizeof counts && WIFEXITED(status) &&
            WEXITSTATUS(status) == 0,
        "fork child: ran its checks and exited");
  passed += counts[0];
  failed += counts[1];
  struct pollfd pf = {.fd = pfd, .events = POLLIN};
  int more = wait_ev(m, GM_EV_ERROR, 1000, &ev) ||
             (poll(&pf, 1, 0) >= 0 && gm_elector_next_event(m, &ev) == GM_OK);
  check(more, "fork parent: still gets its events on its fd after the child");
  sc_set(n, SC_RENEW, SC_NORMAL);
  close(c2p[0]);
  close(p2c[1]);
out:
  solo_free(&s);
}

/* ---- speed (ABI 3): batch renewal, dead holders, change polling ---------- */

/* Two nodes on the fast scripted backend (renew_many, holder_gone,
 * acquire_dead, changed). */
static void fast_init(pair *p, const char *lock, double L, double H, double D,
                      double P) {
  pair_init_as(p, 1, lock, L, H, D, P);
}

static void fast_free(pair *p) {
  for (int i = 0; i < 2; i++) sc_set(&p->n[i], SC_RENEW_MANY, SC_NORMAL);
  pair_free(p);
}

static int watch_hangs(void *n) { return sc_hanging(n, SC_WATCH) > 0; }
static int watch_not_hangs(void *n) { return sc_hanging(n, SC_WATCH) == 0; }
static int conns_of(sc_node *n);
static int one_conn_watching(void *n) {
  return watch_hangs(n) && conns_of(n) == 1;
}

static int renew_many_hangs(void *n) {
  return sc_hanging(n, SC_RENEW_MANY) > 0;
}

/* K locks on one backend object: one renew_many per heartbeat for all of
 * them, none renewed alone; a lock lost among them is reported alone. */
static void test_batch_renew(void) {
  enum { K = 40 };
  sc_db db;
  sc_node n;
  gm_error err = {0};
  sc_db_init(&db);
  sc_node_init(&n, &db);
  gm_backend *b = sc_backend_fast(&n, &err);
  gm_elector *e[K];
  char names[K][16];
  int masters = 0;
  for (int i = 0; i < K; i++) {
    snprintf(names[i], sizeof names[i], "batch-%d", i);
    e[i] = mk(b, conf(names[i], "solo", 2, 0.1, 1.2, 0.1));
    start(e[i]);
  }
  for (int i = 0; i < K; i++) {
    gm_event ev;
    masters += wait_ev(e[i], GM_EV_START, 2000, &ev);
  }
  check(masters == K, "batch: one node is master of all %d locks (%d)", K,
        masters);
  unsigned many0 = sc_calls(&n, SC_RENEW_MANY), one0 = sc_calls(&n, SC_RENEW);
  sleep_ms(1000); /* ten heartbeats */
  unsigned many = sc_calls(&n, SC_RENEW_MANY) - many0;
  unsigned one = sc_calls(&n, SC_RENEW) - one0;
  printf("# batch: %u renew_many calls in 1 s for %d locks (H = 100 ms)\n",
         many, K);
  check(many >= 8 && many <= 14 && one == 0,
        "batch: about one renewal statement per heartbeat for %d locks "
        "(%u batches, %u single renewals)",
        K, many, one);
  int all = 1;
  for (int i = 0; i < K; i++) all = all && gm_elector_is_master(e[i]);
  check(all, "batch: every lock is still held");
  sc_steal(&db, names[7], "thief", 5000000);
  gm_event ev;
  int lost = wait_ev(e[7], GM_EV_STOP, 1000, &ev) && ev.reason == GM_STOP_LOST;
  sleep_ms(300);
  int others = 1;
  for (int i = 0; i < K; i++)
    if (i != 7) others = others && gm_elector_is_master(e[i]);
  check(lost && !gm_elector_is_master(e[7]) && others,
        "batch: the one stolen lock reports lost, the others stay master");
  for (int i = 0; i < K; i++) free_el(e[i]);
  gm_backend_unref(b);
  wait_cond(no_conns, &n, 2000);
  sc_db_destroy(&db);
}

/* A holder known dead (its file lock gone) is taken over at once, long
 * before its lease ends; a paused one (lock kept) only after the lease. */
static void test_dead_holder(void) {
  pair p;
  double L = 3;
  fast_init(&p, "dead", L, 0.2, 1.8, 1);
  uint64_t tok = pair_elect(&p, "dead holder");
  if (!tok) goto out;
  sc_set(&p.n[0], SC_RENEW_MANY, SC_HANG);
  int hung = wait_cond(renew_many_hangs, &p.n[0], 1000);
  int64_t t = mono_ns();
  sc_mark_gone(&p.n[0]);
  gm_event ev;
  int got = wait_ev(p.e[1], GM_EV_START, 3000, &ev);
  double ms = (double)(mono_ns() - t) / MS;
  printf("# dead holder: taken over %.1f ms after it died (lease %.0f ms)\n",
         ms, L * 1000);
  check(hung && got && ev.token == tok + 1 && ms < 200,
        "dead holder: taken over with token %" PRIu64 " in %.1f ms, not "
        "after the lease",
        got ? ev.token : 0, ms);
out:
  fast_free(&p);
}

/* Node 0 of p, master of lock with token tok, stops renewing (hangs in
 * renew_many); node 1 must take over with the next token within ms:
 * the row before the pause and after the grant; 0 when it did not. */
static int silent_takeover(pair *p, const char *lock, uint64_t tok, int ms,
                           const char *what, sc_row *before, sc_row *after) {
  sc_set(&p->n[0], SC_RENEW_MANY, SC_HANG);
  int hung = wait_cond(renew_many_hangs, &p->n[0], 1000);
  sc_get(&p->db, lock, before);
  gm_event ev;
  int got = wait_ev(p->e[1], GM_EV_START, ms, &ev);
  check(hung && got && ev.token == tok + 1,
        "%s: the follower took over a silent holder with token %" PRIu64,
        what, got ? ev.token : 0);
  if (got) sc_get(&p->db, lock, after);
  return got;
}

static void test_paused_holder(void) {
  pair p;
  double L = 1;
  fast_init(&p, "paused", L, 0.1, 0.6, 0.2);
  uint64_t tok = pair_elect(&p, "paused holder");
  if (!tok) goto out;
  sc_row before, after;
  if (!silent_takeover(&p, "paused", tok, 3000, "paused holder", &before,
                       &after))
    goto out;
  double late = (double)(after.acquired_at - before.expires_at) / 1000;
  check(late >= 0, "paused holder: not before its lease ended (%.1f ms after)",
        late);
out:
  fast_free(&p);
}

/* A stopping master releases; the follower sees the change at its next
 * poll (10 ms), not at its next retry (2 s). */
static void test_changed_wakeup(void) {
  pair p;
  fast_init(&p, "wake", 5, 1, 3, 2);
  uint64_t tok = pair_elect(&p, "wake-up");
  if (!tok) goto out;
  sleep_ms(50); /* the follower is now asleep until its next retry */
  unsigned polls = sc_calls(&p.n[1], SC_CHANGED);
  int64_t t = mono_ns();
  gm_elector_stop(p.e[0]);
  gm_event ev;
  int got = wait_ev(p.e[1], GM_EV_START, 3000, &ev);
  double ms = (double)(mono_ns() - t) / MS;
  printf("# wake-up: handover %.1f ms after stop() (retry 2000 ms)\n", ms);
  check(got && ev.token == tok + 1 && ms < 150,
        "wake-up: the follower took over %.1f ms after stop(), not after a "
        "retry",
        ms);
  check(sc_calls(&p.n[1], SC_CHANGED) > polls,
        "wake-up: the follower polled changed() meanwhile");
  polls = sc_calls(&p.n[1], SC_CHANGED);
  sleep_ms(200);
  check(sc_calls(&p.n[1], SC_CHANGED) == polls,
        "wake-up: a node with no followers does not poll");

  /* A failing changed(): said once through on_error, the connection kept,
   * and the election goes on. Node 0, stopped above, follows again. */
  sc_set(&p.n[0], SC_CHANGED, SC_FAIL);
  gm_elector_start(p.e[0], NULL);
  int said = wait_ev(p.e[0], GM_EV_ERROR, 3000, &ev) &&
             strstr(ev.message, "changed failed") != NULL;
  unsigned opens = sc_calls(&p.n[0], SC_OPEN);
  unsigned fails = sc_calls(&p.n[0], SC_CHANGED);
  sleep_ms(300); /* a window for more reports: there must be none */
  int again = wait_ev(p.e[0], GM_EV_ERROR, 0, &ev);
  check(said && !again && sc_calls(&p.n[0], SC_OPEN) == opens &&
            sc_calls(&p.n[0], SC_CHANGED) > fails,
        "wake-up: a changed() error is said once (%s), the connection kept "
        "and still polled", said ? "said" : "not said");
  check(gm_elector_is_master(p.e[1]), "wake-up: ... and the master stays");
  sc_set(&p.n[0], SC_CHANGED, SC_NORMAL);
out:
  fast_free(&p);
}

/* A wake-up whose read finds the version already seen (a crashed holder's
 * session ended; nothing was written) keeps the follower's reads where they
 * were due, so that they still meet the lease's end just after it: here the
 * read due 0.5 s after the wake-up still comes, not a whole retry later. */
static void test_wakeup_keeps_schedule(void) {
  pair p;
  fast_init(&p, "phase", 5, 1, 3, 2);
  if (!pair_elect(&p, "phase")) goto out;
  sc_set(&p.n[0], SC_RENEW_MANY, SC_HANG); /* the row stops changing */
  sc_set(&p.n[0], SC_RENEW, SC_HANG);
  unsigned seen = sc_calls(&p.n[1], SC_OBSERVE);
  int64_t t = mono_ns();
  while (sc_calls(&p.n[1], SC_OBSERVE) == seen && mono_ns() - t < 5000 * MS)
    sleep_ms(5);
  /* that read saw the last renewal (or one before it: no matter, the
   * row no longer changes); the next is due 2 s (the retry) later */
  sleep_ms(1500);
  seen = sc_calls(&p.n[1], SC_OBSERVE);
  pthread_mutex_lock(&p.db.mu);
  p.db.version++; /* a change with no write: the wake-up alone */
  pthread_mutex_unlock(&p.db.mu);
  t = mono_ns();
  while (sc_calls(&p.n[1], SC_OBSERVE) < seen + 2 && mono_ns() - t < 3000 * MS)
    sleep_ms(5);
  double ms = (double)(mono_ns() - t) / MS;
  check(sc_calls(&p.n[1], SC_OBSERVE) >= seen + 2 && ms < 1000,
        "wake-up: an early read that found nothing new kept the next read "
        "where it was due (two reads %.0f ms after the wake-up; 2000 if it "
        "had moved)", ms);
  sc_set(&p.n[0], SC_RENEW, SC_NORMAL);
out:
  fast_free(&p);
}

/* is_master()'s clock (src/clock.c) reads the same clocks as clock_gettime:
 * each of its readings falls between two of glibc's, many times over. */
static void test_fast_clock(void) {
  static const clockid_t ids[] = {CLOCK_MONOTONIC, CLOCK_MONOTONIC_COARSE};
  int bad = 0;
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 100000; k++) {
      struct timespec a, b, c;
      clock_gettime(ids[i], &a);
      gm_clock_gettime(ids[i], &b);
      clock_gettime(ids[i], &c);
      int64_t na = a.tv_sec * NS_ + a.tv_nsec, nb = b.tv_sec * NS_ + b.tv_nsec,
              nc = c.tv_sec * NS_ + c.tv_nsec;
      bad += nb < na || nb > nc;
    }
  check(bad == 0, "the fast clock (%s) agrees with clock_gettime: %d of 200000 "
        "readings out of order", gm_clock_gettime == clock_gettime
        ? "glibc's" : "the vDSO's", bad);
}


/* ---- ownership: a grant belongs to an elector instance, not to its id ---- */

/* Counts the samples over ms milliseconds where both electors are master. */
static int both_master(gm_elector **es, int ms) {
  int both = 0;
  for (int64_t end = mono_ns() + ms * MS; mono_ns() < end; sleep_ms(2))
    both += gm_elector_is_master(es[0]) && gm_elector_is_master(es[1]);
  return both;
}

static void test_same_id(void) {
  sc_db db;
  sc_node n[2];
  gm_backend *b[2];
  gm_elector *es[2];
  gm_error err = {0};
  gm_event ev;
  sc_db_init(&db);
  for (int i = 0; i < 2; i++) {
    sc_node_init(&n[i], &db);
    b[i] = i ? sc_backend_fast(&n[i], &err) : sc_backend(&n[i], &err);
    es[i] = mk(b[i], conf("same", "host", 1, 0.1, 0.6, 0.1));
  }
  check(gm_elector_instance(es[0]) && gm_elector_instance(es[1]) &&
            gm_elector_instance(es[0]) != gm_elector_instance(es[1]) &&
            gm_elector_instance(es[0]) < ((uint64_t)1 << 63),
        "same id: each elector has an instance key of its own");
  start(es[0]);
  start(es[1]);
  int w = wait_any(es, 2, GM_EV_START, 2000, &ev);
  check(w >= 0, "same id: one became master");
  if (w < 0) goto out;
  gm_elector *m = es[w], *f = es[1 - w];
  int got = wait_leader(f, "host", ev.token, 1000, &ev);
  check(got, "same id: the other gets leader(host) for the other instance");
  int both = both_master(es, 800);
  check(both == 0 && gm_elector_is_master(m),
        "same id: never both master over 8 heartbeats (%d samples both)",
        both);
  sc_row r;
  check(sc_get(&db, "same", &r) && r.instance == gm_elector_instance(m),
        "same id: the row holds the master's instance key");
  /* A handover: the master stops, the other takes over; then the new
   * master misses its deadline (renewals hang) and the old one waits out
   * the lease before it takes the lock back. */
  gm_elector_stop(m);
  got = wait_ev(f, GM_EV_START, 2000, &ev);
  check(got && gm_elector_is_master(f), "same id: the other took over");
  start(m);
  both = both_master(es, 400);
  check(both == 0, "same id: never both master after a handover (%d)", both);
  sc_node *fn = f == es[0] ? &n[0] : &n[1];
  sc_set(fn, SC_RENEW, SC_HANG);
  sc_set(fn, SC_RENEW_MANY, SC_HANG);
  both = 0;
  int took = 0;
  for (int64_t end = mono_ns() + 3000 * MS; mono_ns() < end && !took;
       sleep_ms(2)) {
    both += gm_elector_is_master(m) && gm_elector_is_master(f);
    took = gm_elector_is_master(m);
  }
  both += both_master(es, 200);
  check(took && both == 0,
        "same id: a master past its deadline is followed, not adopted, by "
        "the other instance (took %d, both %d)",
        took, both);
  sc_set(fn, SC_RENEW, SC_NORMAL);
  sc_set(fn, SC_RENEW_MANY, SC_NORMAL);
out:
  for (int i = 0; i < 2; i++) {
    free_el(es[i]);
    gm_backend_unref(b[i]);
  }
  for (int i = 0; i < 2; i++) wait_cond(no_conns, &n[i], 2000);
  sc_db_destroy(&db);
}

/* ---- fork(): children are other instances, and exit without hanging ------ */

/* Waits up to ms for child pid; 1 when it exited with status 0. A child
 * still running then is killed (a hang). */
static int reap_within(pid_t pid, int ms) {
  int status = 0;
  for (int64_t end = mono_ns() + ms * MS; mono_ns() < end; sleep_ms(2))
    if (waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return 0;
}

static void test_fork_children(void) {
  char dir[] = "/tmp/gm-fork.XXXXXX", url[128];
  gm_error err = {0};
  gm_event ev;
  if (!mkdtemp(dir)) {
    check(0, "fork children: mkdtemp: %s", strerror(errno));
    return;
  }
  snprintf(url, sizeof url, "sqlite://%s/fork.db", dir);
  gm_backend *b = gm_backend_new_url(url, &err);
  check(b != NULL, "fork children: sqlite backend (%s)", err.msg);
  if (!b) return;
  gm_elector *m = mk(b, conf("forks", "forker", 1, 0.1, 0.6, 0.1));
  gm_elector *d = mk(b, conf("forks-2", NULL, 1, 0.1, 0.6, 0.1));
  start(m);
  if (!wait_ev(m, GM_EV_START, 3000, &ev)) {
    check(0, "fork children: the parent became master");
    goto out;
  }
  /* 100 children that only exit, freeing what they inherited while the
   * parent's thread waits on its condition variable. */
  int exited = 0, slowest = 0;
  for (int i = 0; i < 100; i++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      gm_elector_free(m);
      gm_elector_free(d);
      gm_backend_unref(b);
      _exit(0);
    }
    int64_t t0 = mono_ns();
    exited += pid > 0 && reap_within(pid, 5000);
    int ms = (int)((mono_ns() - t0) / MS);
    if (ms > slowest) slowest = ms;
  }
  printf("# fork children: %d of 100 exited, slowest %d ms\n", exited,
         slowest);
  check(exited == 100, "fork children: 100 of 100 children exit (%d)",
        exited);
  /* A child that campaigns: another instance, with the id it was given,
   * and a new default id; never master while the parent holds the lock,
   * and master once the parent stops. (ThreadSanitizer cannot start a
   * thread in a child forked from a threaded process.) */
#ifdef __SANITIZE_THREAD__
  printf("# fork child: campaign skipped under ThreadSanitizer\n");
  goto out;
#endif
  int c2p[2], p2c[2];
  if (pipe(c2p) || pipe(p2c)) {
    check(0, "fork children: pipe: %s", strerror(errno));
    goto out;
  }
  char parent_default[GM_ID_MAX];
  snprintf(parent_default, sizeof parent_default, "%s", gm_elector_id(d));
  uint64_t parent_key = gm_elector_instance(m);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(20);
    int r[4] = {0};
    r[0] = gm_elector_instance(m) != parent_key &&
           strcmp(gm_elector_id(m), "forker") == 0 &&
           strcmp(gm_elector_id(d), parent_default) != 0;
    gm_error e2 = {0};
    int ok = gm_elector_start(m, &e2) == GM_OK;
    for (int64_t end = mono_ns() + 1000 * MS; ok && mono_ns() < end;
         sleep_ms(2))
      r[1] += gm_elector_is_master(m);
    char c = 'w';
    if (write(c2p[1], &c, 1) != 1 || read(p2c[0], &c, 1) != 1) _exit(2);
    r[2] = ok && wait_ev(m, GM_EV_START, 5000, &ev) && gm_elector_is_master(m);
    r[3] = ok;
    if (write(c2p[1], r, sizeof r) != (ssize_t)sizeof r) _exit(2);
    gm_elector_free(m);
    gm_elector_free(d);
    gm_backend_unref(b);
    _exit(0);
  }
  close(c2p[1]);
  close(p2c[0]);
  char c;
  int parent_all = 1;
  int ok = read(c2p[0], &c, 1) == 1;
  /* the child sampled for 1 s; the parent renewed throughout */
  parent_all = gm_elector_is_master(m);
  gm_elector_stop(m);
  ok = ok && write(p2c[1], "s", 1) == 1;
  int r[4] = {0};
  ok = ok && read(c2p[0], r, sizeof r) == (ssize_t)sizeof r;
  int clean = reap_within(pid, 5000);
  check(ok && r[0],
        "fork child: a new instance key, the given id kept, a new default id");
  check(ok && r[3] && r[1] == 0 && parent_all,
        "fork child: m:start() in the child: never master while the parent "
        "holds the lock (%d samples master)",
        r[1]);
  check(ok && r[2], "fork child: master after the parent stopped");
  check(clean, "fork child: exited");
  close(c2p[0]);
  close(p2c[1]);
out:
  free_el(m);
  free_el(d);
  gm_backend_unref(b);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) {
  }
}

/* ---- stop(), close() and free never wait for a hung database ------------- */

static int release_hangs(void *n) { return sc_hanging(n, SC_RELEASE) > 0; }
static sc_db *g_rel_db;
static int row_released(void *name) {
  return row_owner_is(g_rel_db, name, "");
}

static void test_stop_hung(void) {
  sc_db db;
  sc_node n;
  gm_error err = {0};
  gm_event ev;
  sc_db_init(&db);
  sc_node_init(&n, &db);
  g_rel_db = &db;
  gm_backend *b = sc_backend_fast(&n, &err);
  gm_elector *m = mk(b, conf("hung", "H", 1, 0.1, 0.6, 0.1));
  start(m);
  if (!wait_ev(m, GM_EV_START, 2000, &ev)) {
    check(0, "stop hung: became master");
    return;
  }
  sc_set(&n, SC_RELEASE, SC_HANG);
  int64_t t0 = mono_ns();
  gm_elector_stop(m);
  int64_t took = mono_ns() - t0;
  int was = gm_elector_is_master(m);
  printf("# stop hung: stop() returned in %.2f ms with the release hanging\n",
         (double)took / MS);
  check(took < 50 * MS && !was,
        "stop hung: stop() returns within 50 ms and is_master() is false "
        "(%.2f ms)",
        (double)took / MS);
  check(wait_ev(m, GM_EV_STOP, 0, &ev) &&
            ev.reason == GM_STOP_STOPPED,
        "stop hung: stop(stopped) is queued when stop() returns");
  check(wait_cond(release_hangs, &n, 1000),
        "stop hung: the release goes on in the background");
  sc_set(&n, SC_RELEASE, SC_NORMAL);
  check(wait_cond(row_released, "hung", 1000),
        "stop hung: the background release freed the lock");
  /* Master again, then freed while its release hangs: free and the last
   * unref return at once; the blocked call is interrupted and the thread
   * frees what is left. */
  start(m);
  check(wait_ev(m, GM_EV_START, 2000, &ev), "stop hung: master again");
  sc_set(&n, SC_RELEASE, SC_HANG);
  int64_t t[4];
  t[0] = mono_ns();
  gm_elector_close(m);
  t[1] = mono_ns();
  free_el(m);
  t[2] = mono_ns();
  gm_backend_unref(b);
  t[3] = mono_ns();
  printf("# stop hung: close() %.2f ms, free %.2f ms, last unref %.2f ms\n",
         (double)(t[1] - t[0]) / MS, (double)(t[2] - t[1]) / MS,
         (double)(t[3] - t[2]) / MS);
  check(t[1] - t[0] < 50 * MS && t[2] - t[1] < 50 * MS &&
            t[3] - t[2] < 50 * MS,
        "stop hung: close(), free and the last unref each return within "
        "50 ms");
  check(wait_cond(no_conns, &n, 2000),
        "stop hung: the interrupted thread closed its connection");
  sc_set(&n, SC_RELEASE, SC_NORMAL);
  sleep_ms(20); /* the thread frees the backend after its last close */
  sc_db_destroy(&db);
}

/* ---- rows an operator left: a forced release, the largest token ---------- */

/* An operator's force release that keeps the old expiry (owner '', token
 * + 1): the lease still runs, so nobody takes the lock before it ends. */
static void test_forced_release(void) {
  pair p;
  pair_init(&p, "forced", 1, 0.1, 0.6, 0.1);
  gm_event ev;
  if (!pair_elect(&p, "forced release")) goto out;
  pthread_mutex_lock(&p.db.mu);
  sc_row *r = sc_find(&p.db, "forced");
  r->owner[0] = '\0';
  r->token++;
  int64_t exp = r->expires_at;
  p.db.version++;
  pthread_mutex_unlock(&p.db.mu);
  unsigned acq = sc_calls(&p.n[0], SC_ACQUIRE) + sc_calls(&p.n[1], SC_ACQUIRE);
  sleep_until(sc_db_to_mono_us(&p.db, exp) * 1000 - 50 * MS);
  unsigned acq2 = sc_calls(&p.n[0], SC_ACQUIRE) + sc_calls(&p.n[1], SC_ACQUIRE);
  check(acq2 == acq && !gm_elector_is_master(p.e[0]) &&
            !gm_elector_is_master(p.e[1]),
        "forced release: no acquire is even tried while the lease runs (%u)",
        acq2 - acq);
  int w = wait_any(p.e, 2, GM_EV_START, 4000, &ev);
  sc_row after = {0};
  sc_get(&p.db, "forced", &after);
  double early_ms = (double)(exp - after.acquired_at) / 1000;
  printf("# forced release: granted again %.1f ms after the old lease ended\n",
         -early_ms);
  check(w >= 0 && after.acquired_at >= exp,
        "forced release: a released row whose lease runs is not taken "
        "before its expiry (granted %.1f ms %s it)",
        early_ms < 0 ? -early_ms : early_ms, early_ms > 0 ? "before" : "after");
out:
  pair_free(&p);
}

static void test_token_limit(void) {
  pair p;
  pair_init(&p, "tokmax", 1, 0.1, 0.6, 0.1);
  gm_event ev;
  if (!pair_elect(&p, "token limit")) goto out;
  gm_elector_stop(p.e[0]);
  pthread_mutex_lock(&p.db.mu);
  sc_row *r = sc_find(&p.db, "tokmax");
  r->token = (uint64_t)INT64_MAX;
  r->owner[0] = '\0';
  p.db.version++;
  pthread_mutex_unlock(&p.db.mu);
  unsigned acq = sc_calls(&p.n[1], SC_ACQUIRE);
  int got = wait_ev(p.e[1], GM_EV_ERROR, 2000, &ev);
  check(got && strstr(ev.message, "largest") &&
            strstr(ev.message, "9223372036854775807"),
        "token limit: refused with a message that says so (%s)",
        got ? ev.message : "none");
  sleep_ms(500);
  int more = count_ev(p.e[1], GM_EV_ERROR);
  sc_row after = {0};
  sc_get(&p.db, "tokmax", &after);
  check(!gm_elector_is_master(p.e[1]) && after.token == (uint64_t)INT64_MAX &&
            sc_calls(&p.n[1], SC_ACQUIRE) == acq && more == 0,
        "token limit: no grant, no write, said once (%d more)", more);
  gm_status st;
  gm_elector_status(p.e[1], &st);
  check(strstr(st.last_error, "largest") != NULL,
        "token limit: status().last_error says it");
out:
  pair_free(&p);
}

/* status().last_error is history once a call works again. */
static void test_error_cleared(void) {
  solo s;
  gm_event ev;
  if (!solo_master(&s, "cleared", 1, 0.1, 0.6, 0.1)) goto out;
  log_clear(s.e);
  sc_set(&s.n, SC_RENEW, SC_FAIL);
  int got = wait_ev(s.e, GM_EV_ERROR, 1000, &ev);
  gm_status st;
  gm_elector_status(s.e, &st);
  check(got && st.last_error[0] && st.errors >= 1 && st.last_error_at > 0,
        "error cleared: a failed renewal shows in last_error (%s)",
        st.last_error);
  sleep_ms(150); /* more failures of the same kind */
  int again = count_ev(s.e, GM_EV_ERROR);
  sc_set(&s.n, SC_RENEW, SC_NORMAL);
  int64_t end = mono_ns() + 2000 * MS;
  do {
    sleep_ms(10);
    gm_elector_status(s.e, &st);
  } while (st.last_error[0] && mono_ns() < end);
  check(again == 0, "error cleared: the same failure is said once (%d more)",
        again);
  check(!st.last_error[0] && st.errors >= 1 && st.last_error_at > 0 &&
            gm_elector_is_master(s.e),
        "error cleared: the next success clears last_error; the count "
        "(%" PRIu64 ") and last_error_at stay",
        st.errors);
out:
  solo_free(&s);
}

static int conns_of(sc_node *n) {
  pthread_mutex_lock(&n->db->mu);
  int k = n->conns;
  pthread_mutex_unlock(&n->db->mu);
  return k;
}
static int two_conns(void *p) { return conns_of(p) == 2; }
static int one_conn(void *p) { return conns_of(p) == 1; }

/* Closes node 0 of p, which blocks in watch (follows): at once, and every
 * connection of it closed. */
static void close_node0(pair *p, int follows, const char *what) {
  int64_t t = mono_ns();
  free_el(p->e[0]);
  gm_backend_unref(p->b[0]);
  double ms = (double)(mono_ns() - t) / MS;
  p->e[0] = NULL;
  p->b[0] = NULL;
  check(follows && ms < 50 && wait_cond(no_conns, &p->n[0], 2000),
        "%s: closing a node in watch takes %.1f ms (< 50), every "
        "connection closed", what, ms);
}

/* The core's wake-up thread (ops->watch): a follower's node opens a second
 * connection and blocks in watch on the lock it waits on; a release wakes
 * it at once (no changed() poll); a node with no follower closes it; and
 * closing a node whose watch is under way takes no time. */
static void test_watch_wakeup(void) {
  pair p;
  pair_init_as(&p, 2, "watch", 5, 1, 3, 2);
  uint64_t tok = pair_elect(&p, "watch");
  if (!tok) goto out;
  int open2 = wait_cond(two_conns, &p.n[1], 2000);
  int waiting = open2 && wait_cond(watch_hangs, &p.n[1], 2000);
  check(open2 && waiting && sc_calls(&p.n[0], SC_WATCH) == 0,
        "watch: the follower's node blocks in watch on a second connection; "
        "the master's node has none");
  unsigned reads = sc_calls(&p.n[1], SC_OBSERVE);
  sleep_ms(300);
  check(sc_calls(&p.n[1], SC_OBSERVE) <= reads + 1,
        "watch: no reads while the lease runs and nothing changes (%u)",
        sc_calls(&p.n[1], SC_OBSERVE) - reads);
  int64_t t = mono_ns();
  gm_elector_stop(p.e[0]);
  gm_event ev;
  int got = wait_ev(p.e[1], GM_EV_START, 3000, &ev);
  double ms = (double)(mono_ns() - t) / MS;
  check(got && ev.token == tok + 1 && ms < 150,
        "watch: the follower took over %.1f ms after stop() (retry 2000 ms)",
        ms);
  check(wait_cond(one_conn, &p.n[1], 2000),
        "watch: the new master's node closed its wake-up connection");
  start(p.e[0]);
  int follows = wait_cond(two_conns, &p.n[0], 3000) &&
                wait_cond(watch_hangs, &p.n[0], 2000);
  close_node0(&p, follows, "watch");
  gm_backend_ops bad = sc_ops;
  bad.watch = sc_watch;
  gm_error err = {0};
  gm_kv kv = {"node", p.n[0].opt};
  gm_backend *nb = gm_backend_new_ops(&bad, &kv, 1, &err);
  check(!nb && strstr(err.msg, "no interrupt"),
        "watch: a backend with watch and no interrupt is refused: %s",
        err.msg);
  gm_backend_unref(nb);
out:
  pair_free(&p);
}

/* One connection per node (watch_shared): the follower's election thread
 * blocks in watch on its own connection until the lease it saw ends; it
 * reads once per lease; a release wakes it at once; stop(), a new elector
 * and the last unref end the watch at once. */
static void test_watch_shared(void) {
  pair p;
  pair_init_as(&p, 3, "shared", 5, 1, 3, 1);
  uint64_t tok = pair_elect(&p, "shared");
  if (!tok) goto out;
  int waiting = wait_cond(watch_hangs, &p.n[1], 2000);
  sleep_ms(100);
  check(waiting && conns_of(&p.n[1]) == 1 && conns_of(&p.n[0]) == 1 &&
            sc_calls(&p.n[0], SC_WATCH) == 0,
        "shared: the follower blocks in watch on its one connection (%d "
        "connections; the master's node %d, no watch)",
        conns_of(&p.n[1]), conns_of(&p.n[0]));
  unsigned reads = sc_calls(&p.n[1], SC_OBSERVE);
  unsigned watches = sc_calls(&p.n[1], SC_WATCH);
  sleep_ms(5000);
  reads = sc_calls(&p.n[1], SC_OBSERVE) - reads;
  watches = sc_calls(&p.n[1], SC_WATCH) - watches;
  printf("# shared: a follower's calls in one lease (5 s, retry 1 s): %u "
         "reads, %u watches\n", reads, watches);
  check(reads <= 2 && watches <= 2,
        "shared: at most a read and a watch per lease (%u reads, %u "
        "watches in 5 s; retry 1 s)", reads, watches);
  /* a second lock on the follower's node: the watch ends at once */
  gm_elector *e2 = mk(p.b[1], conf("shared-2", "node-1b", 5, 1, 3, 1));
  int64_t t = mono_ns();
  start(e2);
  gm_event ev;
  int got = wait_ev(e2, GM_EV_START, 2000, &ev);
  double ms = (double)(mono_ns() - t) / MS;
  check(got && ms < 100,
        "shared: a new elector on a node in watch runs %.1f ms after "
        "start() (< 100)", ms);
  free_el(e2);
  check(wait_cond(one_conn_watching, &p.n[1], 8000),
        "shared: ... then the follower watches again, one connection");
  t = mono_ns();
  gm_elector_stop(p.e[0]);
  got = wait_ev(p.e[1], GM_EV_START, 3000, &ev);
  ms = (double)(mono_ns() - t) / MS;
  check(got && ev.token == tok + 1 && ms < 150,
        "shared: the follower took over %.1f ms after stop() (retry 1000 "
        "ms)", ms);
  start(p.e[0]);
  int follows = wait_cond(watch_hangs, &p.n[0], 3000);
  t = mono_ns();
  gm_elector_stop(p.e[0]);
  int ended = wait_cond(watch_not_hangs, &p.n[0], 1000);
  ms = (double)(mono_ns() - t) / MS;
  check(follows && ended && ms < 50,
        "shared: stop() of a follower in watch ends it in %.1f ms (< 50)", ms);
  start(p.e[0]);
  follows = wait_cond(watch_hangs, &p.n[0], 3000);
  close_node0(&p, follows, "shared");
out:
  pair_free(&p);
}

/* A watch that returns the row it ends on (watch_row, as MySQL's): at
 * steady state the follower's watch, ended by its timeout at the lease's
 * end, is its read: one statement per lease, no observe. A holder that
 * pauses (and a database clock stepped forward meanwhile, which makes
 * the lease look over early) is still taken over only once the follower
 * watched its last renewal for a whole lease on its own clock. */
static void test_watch_row(void) {
  pair p;
  double L = 1;
  pair_init_as(&p, 3, "wrow", L, 0.2, 0.6, 0.25);
  p.n[1].watch_row = 1; /* before its thread runs */
  uint64_t tok = pair_elect(&p, "watch row");
  if (!tok) goto out;
  wait_cond(watch_hangs, &p.n[1], 2000);
  sleep_ms(1200); /* past the first lease's end: the steady state */
  unsigned reads = sc_calls(&p.n[1], SC_OBSERVE);
  unsigned watches = sc_calls(&p.n[1], SC_WATCH);
  int64_t t = mono_ns();
  sleep_ms(3000);
  double leases = (double)(mono_ns() - t) / NS_ / (L - 0.2);
  reads = sc_calls(&p.n[1], SC_OBSERVE) - reads;
  watches = sc_calls(&p.n[1], SC_WATCH) - watches;
  printf("# watch row: a follower's statements in 3 s (lease 1 s, renewed "
         "every 0.2 s): %u reads, %u watches\n", reads, watches);
  check(reads == 0 && watches >= 2 && watches <= leases + 1,
        "watch row: one statement per lease at steady state (%u reads, %u "
        "watches in %.1f leases)", reads, watches, leases);
  /* the holder pauses; the database clock steps 0.5 s forward */
  sc_set(&p.n[0], SC_RENEW_MANY, SC_HANG);
  int hung = wait_cond(renew_many_hangs, &p.n[0], 1000);
  sc_row before, after;
  sc_get(&p.db, "wrow", &before);
  sc_step_clock(&p.db, 500000);
  gm_event ev;
  int got = wait_ev(p.e[1], GM_EV_START, 4000, &ev);
  check(hung && got && ev.token == tok + 1,
        "watch row: the follower took over a paused holder with token "
        "%" PRIu64, got ? ev.token : 0);
  if (!got) goto out;
  sc_get(&p.db, "wrow", &after);
  /* on the local clock (the database's minus its step) */
  double watched = (double)(after.acquired_at - 500000 - before.renewed_at) /
                   1000;
  check(watched >= L * 1000,
        "watch row: taken %.1f ms after the holder's last renewal on the "
        "local clock (>= the lease, %.0f ms)", watched, L * 1000);
out:
  pair_free(&p);
}

/* A crash wakes the watch (watch_crash, MySQL's user lock ending with the
 * holder's session) and the follower reads the holder's last renewal soon
 * after it, though its read before came more than the margin L - D
 * earlier (reads a lease apart): point 2's short way takes the lock just
 * past that renewal's lease (the crash failover of docs/benchmarks.md),
 * not a lease after the wake-up, and never before the lease ended. */
static int watch_began(void *n) {
  static unsigned seen;
  unsigned c = sc_calls(n, SC_WATCH);
  int began = seen && c != seen;
  seen = c;
  return began;
}

static void test_crash_wake(void) {
  pair p;
  double L = 2, D = 1.4; /* margin 0.6 s */
  pair_init_as(&p, 3, "crash", L, 0.2, D, 0.5);
  p.n[1].watch_row = 1; /* before its thread runs */
  uint64_t tok = pair_elect(&p, "crash wake");
  if (!tok) goto out;
  wait_cond(watch_hangs, &p.n[1], 2000);
  sleep_ms(2200); /* past the first lease's end: reads a lease apart */
  watch_began(&p.n[1]);
  int began = wait_cond(watch_began, &p.n[1], 3000); /* it just read */
  sleep_ms(700);
  sc_set(&p.n[0], SC_RENEW_MANY, SC_HANG);
  sc_set(&p.n[0], SC_RENEW, SC_HANG);
  int hung = wait_cond(renew_many_hangs, &p.n[0], 1000);
  sc_row before, after;
  sc_get(&p.db, "crash", &before);
  sleep_ms(100); /* the session ends 0.1-0.3 s after the last renewal, */
  int64_t woke = mono_ns(); /* 0.8-1 s after the follower's last read */
  sc_end_session(&p.db);
  gm_event ev;
  int got = wait_ev(p.e[1], GM_EV_START, 2 * (int)(L * 1000) + 1000, &ev);
  check(began && hung && got && ev.token == tok + 1,
        "crash wake: the follower took over with token %" PRIu64,
        got ? ev.token : 0);
  if (!got) goto out;
  double after_wake = (double)(mono_ns() - woke) / MS;
  sc_get(&p.db, "crash", &after);
  double past = (double)(after.acquired_at - before.expires_at) / 1000;
  printf("# crash wake: taken %.1f ms past the lease's end, %.0f ms after "
         "the wake-up (lease %.0f ms)\n", past, after_wake, L * 1000);
  check(past >= 0 && past < 100,
        "crash wake: taken %.1f ms past the last renewal's lease (>= 0, < "
        "100; a lease after the wake-up is 100 or more)", past);
out:
  pair_free(&p);
}

/* A watch that tells of releases only (watch_crash 0: Redis's stream,
 * MongoDB's events): a follower still reads each retry beside it, so a
 * holder that goes silent is taken a lease after its last renewal (the
 * short way of point 2), not a lease after the follower first read that
 * renewal at the lease's end; a release still wakes it at once. */
static void test_watch_releases(void) {
  pair p;
  double L = 1, P = 0.25;
  pair_init_as(&p, 4, "wrel", L, 0.2, 0.6, P);
  uint64_t tok = pair_elect(&p, "watch releases");
  if (!tok) goto out;
  wait_cond(watch_hangs, &p.n[1], 2000);
  unsigned reads = sc_calls(&p.n[1], SC_OBSERVE);
  int64_t t = mono_ns();
  sleep_ms(2000);
  double retries = (double)(mono_ns() - t) / NS_ / P;
  reads = sc_calls(&p.n[1], SC_OBSERVE) - reads;
  check(reads + 2 >= retries && reads <= retries + 2,
        "watch releases: the follower reads each retry beside its watch "
        "(%u reads in %.1f retries)", reads, retries);
  sc_row before, after;
  if (!silent_takeover(&p, "wrel", tok, 4000, "watch releases", &before,
                       &after))
    goto out;
  double ms = (double)(after.acquired_at - before.renewed_at) / 1000;
  check(ms >= L * 1000 && ms < (L + P) * 1000 + 150,
        "watch releases: taken %.1f ms after the holder's last renewal "
        "(a lease, %.0f ms, plus at most a retry)", ms, L * 1000);
out:
  pair_free(&p);
}

/* A watch that ends by its time early (Redis's ends on its server's timer
 * tick): the backend says how early it may (watch_early_us). The follower
 * (releases only: it reads each retry, retry 0.5 s) watches between its
 * reads on its one connection; over 3 s, how many watches per read. */
static void early_as(int says, int64_t ends_us, double *reads,
                     double *watches) {
  pair p;
  pair_init_as(&p, says ? 5 : 4, "early", 2, 0.2, 1.2, 0.5);
  p.n[1].watch_early_us = ends_us; /* before its thread runs */
  *reads = *watches = 0;
  if (!pair_elect(&p, "watch early")) goto out;
  wait_cond(watch_hangs, &p.n[1], 2000);
  sleep_ms(600); /* a read and a watch or two: the steady state */
  unsigned r = sc_calls(&p.n[1], SC_OBSERVE), w = sc_calls(&p.n[1], SC_WATCH);
  sleep_ms(3000);
  *reads = sc_calls(&p.n[1], SC_OBSERVE) - r;
  *watches = sc_calls(&p.n[1], SC_WATCH) - w;
  printf("# watch early: the backend says %lld ms, its watch ends %lld ms "
         "early: %.0f reads, %.0f watches in 3 s\n",
         says ? (long long)SC_WATCH_EARLY_US / 1000 : 0LL,
         (long long)ends_us / 1000, *reads, *watches);
out:
  pair_free(&p);
}

/* A watch that ended by its time within watch_early_us (100 ms) of the
 * read due is that read's: no second watch for the moments left. One
 * that ended earlier than the backend allows (200 ms), or any early end
 * where it says 0 (no margin of another database's applies: 80 ms), is
 * watched again for the moments left, so a release in them still wakes
 * the follower at once. */
static void test_watch_early(void) {
  double r, w;
  early_as(1, 80000, &r, &w);
  check(r >= 4 && w >= r - 1 && w <= r + 1,
        "watch early: a watch that ends 80 ms early, the backend saying "
        "100: one watch per read (%.0f reads, %.0f watches)", r, w);
  early_as(1, 200000, &r, &w);
  check(r >= 4 && w >= 2 * r - 2 && w <= 2 * r + 2,
        "watch early: one that ends 200 ms early, the backend saying 100: "
        "a second watch for the moments left (%.0f reads, %.0f watches)",
        r, w);
  early_as(0, 80000, &r, &w);
  check(r >= 4 && w >= 2 * r - 2 && w <= 2 * r + 2,
        "watch early: one that ends 80 ms early, the backend saying 0: a "
        "second watch for the moments left (%.0f reads, %.0f watches)", r,
        w);
}

/* A thundering herd: 20 nodes, each a follower woken by the master's
 * release at once (its watch on its one connection). They read within a spread, so the first
 * read takes the lock and most of the others read the new holder: a few
 * acquires, not 19, and the handover still within 150 ms. With one
 * (watch_one: a release wakes one watcher, which keeps the wake while
 * its row looks free) the woken one judges its row at once and alone
 * writes: one acquire. */
static void herd_as(int one) {
  enum { N = 20 };
  static sc_node n[N];
  const char *what = one ? "herd, one woken" : "herd";
  gm_backend *b[N];
  gm_elector *e[N];
  sc_db db;
  sc_db_init(&db);
  gm_error err = {0};
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof id, "herd-%d", i);
    sc_node_init(&n[i], &db);
    n[i].latency_us = 2000; /* a database's round trip */
    b[i] = one ? sc_backend_watch_one(&n[i], &err)
               : sc_backend_watch_as(&n[i], 1, &err);
    e[i] = mk(b[i], conf("herd", id, 5, 1, 3, 1));
  }
  gm_event ev;
  start(e[0]);
  int ok = wait_ev(e[0], GM_EV_START, 2000, &ev);
  uint64_t tok = ok ? ev.token : 0;
  for (int i = 1; i < N; i++) start(e[i]);
  for (int i = 1; i < N && ok; i++) ok = wait_leader(e[i], "herd-0", tok, 3000, &ev);
  check(ok, "%s: herd-0 master, %d followers", what, N - 1);
  sleep_ms(200);
  unsigned acq = 0;
  for (int i = 1; i < N; i++) acq += sc_calls(&n[i], SC_ACQUIRE);
  int64_t t = mono_ns();
  gm_elector_stop(e[0]);
  int who = -1;
  while (who < 0 && mono_ns() - t < 3000 * MS) {
    for (int i = 1; i < N && who < 0; i++)
      if (gm_elector_is_master(e[i])) who = i;
    if (who < 0) sleep_ms(1);
  }
  double ms = (double)(mono_ns() - t) / MS;
  sleep_ms(300); /* every follower has read by now */
  unsigned after = 0;
  for (int i = 1; i < N; i++) after += sc_calls(&n[i], SC_ACQUIRE);
  after -= acq;
  printf("# %s: %u acquires by %d woken followers, handover %.1f ms\n",
         what, after, N - 1, ms);
  /* watch_one: one follower woken, it alone writes */
  check(who > 0 && ms < 150 && after <= (one ? 1 : N / 4),
        "%s: one release wakes %d followers: %u acquires (<= %d), the "
        "handover in %.1f ms (< 150)", what, one ? 1 : N - 1, after,
        one ? 1 : N / 4, ms);
  for (int i = 0; i < N; i++) {
    free_el(e[i]);
    gm_backend_unref(b[i]);
  }
  for (int i = 0; i < N; i++) wait_cond(no_conns, &n[i], 5000);
  sc_db_destroy(&db);
}

static void test_herd(void) {
  herd_as(0);
  herd_as(1);
}

/* A server that refuses connections (GM_E_BUSY, each refusal worded
 * anew): said once until a success, opens at most once a second, backing
 * off; the node connected meanwhile is master; once the server takes the
 * refused node again, it follows. */
static void test_busy(void) {
  pair p;
  pair_init(&p, "busy", 2, 0.4, 1.2, 0.4);
  sc_set(&p.n[1], SC_OPEN, SC_BUSY);
  start(p.e[0]);
  start(p.e[1]);
  gm_event ev;
  int master = wait_ev(p.e[0], GM_EV_START, 2000, &ev);
  uint64_t tok = master ? ev.token : 0;
  int said = wait_ev(p.e[1], GM_EV_ERROR, 2000, &ev) && ev.code == GM_E_BUSY;
  unsigned opens = sc_calls(&p.n[1], SC_OPEN);
  int64_t t = mono_ns();
  sleep_ms(4500);
  double s = (double)(mono_ns() - t) / NS_;
  opens = sc_calls(&p.n[1], SC_OPEN) - opens;
  int again = count_ev(p.e[1], GM_EV_ERROR);
  printf("# busy: %u opens in %.1f s (retry 0.4 s), %d more reports\n", opens,
         s, again);
  check(master && said && again == 0 && opens >= 1 && opens <= 3 &&
            !gm_elector_is_master(p.e[1]) && gm_elector_is_master(p.e[0]),
        "busy: a refused node says it once (%s), opens %u times in %.1f s "
        "(at most once a second, backing off), the connected node is master",
        said ? "said" : "not said", opens, s);
  sc_set(&p.n[1], SC_OPEN, SC_NORMAL);
  int follows = wait_leader(p.e[1], "node-0", tok, 40000, &ev);
  check(follows, "busy: once the server takes it, the node follows");
  /* said again after a success: a failed read drops the connection */
  sc_set(&p.n[1], SC_OPEN, SC_BUSY);
  sc_set(&p.n[1], SC_OBSERVE, SC_FAIL);
  int again_said = 0;
  for (int i = 0; i < 10 && !again_said; i++)
    again_said = wait_ev(p.e[1], GM_EV_ERROR, 2000, &ev) &&
                 ev.code == GM_E_BUSY;
  check(again_said, "busy: a refusal after a success is said again");
  sc_set(&p.n[1], SC_OPEN, SC_NORMAL);
  sc_set(&p.n[1], SC_OBSERVE, SC_NORMAL);
  pair_free(&p);
}

/* A watch that says "may have changed" at once, every time (a backend that
 * cannot tell: MariaDB when the master holds no user lock) costs a read,
 * then no more until the grant changes or a lease passed: no spin. */
static void test_watch_no_spin(void) {
  pair p;
  pair_init_as(&p, 2, "watchspin", 5, 1, 3, 2);
  p.n[1].watch_at_once = 1; /* before any thread runs */
  if (!pair_elect(&p, "watch no spin")) goto out;
  sleep_ms(100);
  unsigned reads = sc_calls(&p.n[1], SC_OBSERVE);
  unsigned watches = sc_calls(&p.n[1], SC_WATCH);
  sleep_ms(1000);
  reads = sc_calls(&p.n[1], SC_OBSERVE) - reads;
  watches = sc_calls(&p.n[1], SC_WATCH) - watches;
  check(reads <= 2 && watches <= 2,
        "watch no spin: %u reads, %u watches in 1 s (retry 2 s)", reads,
        watches);
out:
  pair_free(&p);
}

/* A batch renewal that cannot tell each lock's result (GM_NOT): the core
 * renews each alone, and its masters stay masters. */
static void test_batch_untold(void) {
  sc_db db;
  sc_node n;
  gm_error err = {0};
  sc_db_init(&db);
  sc_node_init(&n, &db);
  n.many_untold = 1;
  gm_backend *b = sc_backend_fast(&n, &err);
  gm_elector *e[3];
  char names[3][16];
  int masters = 0;
  for (int i = 0; i < 3; i++) {
    snprintf(names[i], sizeof names[i], "untold-%d", i);
    e[i] = mk(b, conf(names[i], "solo", 2, 0.1, 1.2, 0.1));
    start(e[i]);
  }
  gm_event ev;
  for (int i = 0; i < 3; i++) masters += wait_ev(e[i], GM_EV_START, 2000, &ev);
  unsigned many = sc_calls(&n, SC_RENEW_MANY), one = sc_calls(&n, SC_RENEW);
  sleep_ms(500);
  many = sc_calls(&n, SC_RENEW_MANY) - many;
  one = sc_calls(&n, SC_RENEW) - one;
  int still = 0;
  for (int i = 0; i < 3; i++) still += gm_elector_is_master(e[i]);
  check(masters == 3 && still == 3 && many > 0 && one >= 3 * many &&
            count_ev(e[0], GM_EV_ERROR) == 0,
        "batch untold: %u batches said GM_NOT, %u renewals one by one, "
        "%d of 3 still master",
        many, one, still);
  for (int i = 0; i < 3; i++) free_el(e[i]);
  gm_backend_unref(b);
  wait_cond(no_conns, &n, 5000);
  sc_db_destroy(&db);
}

/* A lost race (GM_ERR with GM_E_CONFLICT) is no error: nothing reported,
 * the connection kept, and the node reads again and takes the lock. */
static void test_conflict(void) {
  solo s;
  solo_init(&s, "conflict", 1, 0.1, 0.6, 0.1);
  sc_node *n = &s.n;
  gm_elector *e = s.e;
  sc_set(n, SC_ACQUIRE, SC_CONFLICT);
  start(e);
  int64_t end = mono_ns() + 2000 * MS;
  while (sc_calls(n, SC_ACQUIRE) < 1 && mono_ns() < end) sleep_ms(1);
  sc_set(n, SC_ACQUIRE, SC_NORMAL);
  gm_event ev;
  int got = wait_ev(e, GM_EV_START, 3000, &ev) && gm_elector_is_master(e);
  gm_status st;
  gm_elector_status(e, &st);
  unsigned opens = sc_calls(n, SC_OPEN), tries = sc_calls(n, SC_ACQUIRE);
  check(got && tries >= 2 && st.errors == 0 &&
            count_ev(e, GM_EV_ERROR) == 0 && opens == 1,
        "conflict: a lost race, then the lock taken: no error(), %" PRIu64
        " errors counted, %u connection(s) opened, %u acquires",
        st.errors, opens, tries);
  solo_free(&s);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  alarm(600); /* a hang is a failure, not a stuck CI */
  test_fast_clock();
  test_config();
  test_one_of_two();
  test_tokens();
  test_clock_step();
  test_crash_takeover();
  test_crash_step();
  test_hang_deadline();
  test_stop_master();
  test_stop_follower();
  test_lost();
  test_errors();
  test_free_running();
  test_operator();
  test_fork();
  test_batch_renew();
  test_dead_holder();
  test_paused_holder();
  test_changed_wakeup();
  test_wakeup_keeps_schedule();
  test_same_id();
  test_fork_children();
  test_stop_hung();
  test_forced_release();
  test_token_limit();
  test_error_cleared();
  test_conflict();
  test_watch_wakeup();
  test_watch_no_spin();
  test_watch_shared();
  test_watch_releases();
  test_watch_early();
  test_crash_wake();
  test_watch_row();
  test_busy();
  test_herd();
  test_batch_untold();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
