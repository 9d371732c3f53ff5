/*
 * sim.c: a deterministic simulator of the election core (docs/design.md,
 * "Simulation").
 *
 * The core (src/elector.c, unmodified) is compiled with tests/sim/shim.h
 * force-included, so its threads are coroutines scheduled here, its clocks
 * are simulated clocks and its randomness comes from the schedule's seed.
 * One process runs one schedule at a time on one thread; nothing depends on
 * the host's clock or scheduler, so a seed replays exactly.
 *
 * A schedule: 2 to 7 hosts, each with a monotonic clock of its own rate;
 * one process per host at a time (crashes, restarts), each running one
 * elector on one backend object made with gm_backend_new_ops on the
 * simulated backend below; a simulated database with a clock of its own.
 * Every backend call is a request delivered to the database after a drawn
 * delay (or lost), applied there atomically, and a reply delivered after
 * another delay (or lost: the call fails at its timeout).
 *
 * Checked against true time: never two processes' is_master() true at once
 * (each on its own host's clock), tokens of grants, a master within
 * (lease + retry) + 1 s after the last fault heals, and how often a
 * follower sends statements.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define GM_SIM_NO_MACROS
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <ucontext.h>

#include "backend.h"
#include "fastpath.h"
#include "shim.h"

#define MS 1000000LL
#define SEC 1000000000LL
#define STACK_SIZE (256 * 1024)
#define MAX_HOSTS 7
#define MAX_PROCS 64
#define FAR_FUTURE_US 253402300799000000LL /* 9999-12-31 */

/* ---- randomness: one generator, seeded per schedule -------------------- */

static uint64_t g_rng;
static uint64_t rnd(void) { /* splitmix64 */
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
static int64_t rnd_in(int64_t lo, int64_t hi) { /* [lo, hi] */
  return hi <= lo ? lo : lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}
static double rnd_u(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }
static int chance(double p) { return rnd_u() < p; }

/* A second generator for the schedule-wide draws added since the first
 * version (watch, liveness, forks): a schedule that draws none of them
 * draws the same from rnd() as before, so its seed names the same
 * schedule (the regression seeds of tests/integration/sim.sh). */
static uint64_t g_rng2;
static uint64_t rnd2(void) {
  uint64_t keep = g_rng, z;
  g_rng = g_rng2;
  z = rnd();
  g_rng2 = g_rng;
  g_rng = keep;
  return z;
}
static double rnd2_u(void) {
  return (double)(rnd2() >> 11) / 9007199254740992.0;
}
static int chance2(double p) { return rnd2_u() < p; }
static int64_t rnd2_in(int64_t lo, int64_t hi) {
  return hi <= lo ? lo : lo + (int64_t)(rnd2() % (uint64_t)(hi - lo + 1));
}

/* ---- trace and verdicts -------------------------------------------------- */

static int g_trace;
static int g_show_beyond; /* --beyond: print failures beyond the guarantee */
static uint64_t g_seed;
static int64_t T; /* true time, ns */
static int g_violations;
/* why this schedule leaves the guarantee (clock rates beyond the bound...):
 * a failure is then reported as BEYOND, not as a violation; "" if none */
static const char *g_beyond = "";

static void trace(const char *fmt, ...) {
  if (!g_trace) return;
  va_list ap;
  va_start(ap, fmt);
  printf("%10.6f ", (double)T / SEC);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

static void violation(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if ((g_violations++ == 0 && (!g_beyond[0] || g_show_beyond)) || g_trace)
    printf("%s seed=%" PRIu64 ": %s (at %.6f s)%s%s\n",
           g_beyond[0] ? "BEYOND" : "VIOLATION", g_seed, msg, (double)T / SEC,
           g_beyond[0] ? "; beyond the guarantee: " : "", g_beyond);
  fflush(stdout);
}

/* ---- events: a binary heap ordered by (time, sequence) ----------------- */

typedef void (*ev_fn)(void *p, uint64_t gen);
typedef struct {
  int64_t t;
  uint64_t seq;
  ev_fn fn;
  void *p;
  uint64_t gen;
} event;

static event *heap;
static size_t heap_n, heap_cap;
static uint64_t heap_seq;

static int ev_less(const event *a, const event *b) {
  return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void at(int64_t t, ev_fn fn, void *p, uint64_t gen) {
  if (t < T) t = T;
  if (heap_n == heap_cap) {
    heap_cap = heap_cap ? heap_cap * 2 : 1024;
    heap = realloc(heap, heap_cap * sizeof *heap);
    if (!heap) abort();
  }
  size_t i = heap_n++;
  heap[i] = (event){t, heap_seq++, fn, p, gen};
  while (i > 0 && ev_less(&heap[i], &heap[(i - 1) / 2])) {
    event x = heap[i];
    heap[i] = heap[(i - 1) / 2];
    heap[(i - 1) / 2] = x;
    i = (i - 1) / 2;
  }
}

static event pop(void) {
  event top = heap[0];
  heap[0] = heap[--heap_n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < heap_n && ev_less(&heap[l], &heap[m])) m = l;
    if (r < heap_n && ev_less(&heap[r], &heap[m])) m = r;
    if (m == i) break;
    event x = heap[i];
    heap[i] = heap[m];
    heap[m] = x;
    i = m;
  }
  return top;
}

/* ---- hosts (clocks) and processes ---------------------------------------- */

typedef struct host {
  int64_t rate_ppm; /* local ns per 10^6 true ns */
  int64_t base_local, base_t;
} host;

/* The core's process-wide state (src/elector.c's statics, made global in
 * the simulator's copy of elector.o by objcopy: see the Makefile): each
 * simulated process has its own, swapped in when one of its coroutines
 * runs. */
extern gm_backend *g_backends;
extern pthread_mutex_t g_mu;
extern pthread_once_t g_once;
typedef struct {
  gm_backend *backends;
  pthread_mutex_t mu;
  pthread_once_t once;
} core_globals;

typedef struct co co;
typedef struct proc {
  int idx;
  host *h;
  int hidx;
  int alive;
  pid_t pid;
  int64_t paused_until; /* true ns; its coroutines wait until then */
  gm_backend *b;
  gm_elector *e;
  char id[64];
  int started;
  /* statements sent while a follower: local send times (ring) */
  int64_t fsent[16];
  unsigned nfsent;
  int64_t quiet_from, quiet_until, quiet_left; /* local ns */
  int64_t quiet_sent; /* local ns when that read was sent */
  int64_t last_start_local; /* local ns of the last start() or failed call */
  uint64_t seen_max; /* largest token in any reply this process got */
  int want_running;  /* the app should be campaigning */
  uint64_t seen_version; /* DB.version at its last changed() */
  int64_t woken_at;      /* true ns of its last wake-up */
  int watch_woke;        /* a watch said "may have changed": the next
                          * reads (this many) may be reads on a wake-up */
  uint64_t nreads;       /* observes that got a reply */
  uint64_t rewatch_after;  /* no new watch until nreads passes this: set
                            * by a watch that woke (or said "cannot") */
  int rewatch_set;
  unsigned nstarts;      /* start() calls */
  int64_t slot;          /* its byte of the lock file (liveness), or -1 */
  struct sconn *conns;   /* every connection it opened */
  core_globals gl;       /* its core's process-wide state, while not loaded */
  int fork_pending;      /* the application forks at its next turn */
  int reopen_pending;    /* ... frees its elector and backend, makes new */
  int closing;           /* inside free() and unref() */
  unsigned epoch;        /* grows with every such reopening: the checks
                          * follow the coroutines of the current backend */
  int parent;            /* the process it was forked from, or -1 */
} proc;

static host hosts[MAX_HOSTS];
static int n_hosts;
static proc procs[MAX_PROCS];
static int n_procs;
static proc *cur_proc; /* whose clock the core reads */

static int64_t local_of(const host *h, int64_t t) {
  return h->base_local +
         (int64_t)((__int128)(t - h->base_t) * h->rate_ppm / 1000000);
}
/* The first true time at which h's clock reads at least local. */
static int64_t true_of(const host *h, int64_t local) {
  if (local <= h->base_local) return h->base_t;
  __int128 d = (__int128)(local - h->base_local) * 1000000;
  int64_t t = h->base_t + (int64_t)((d + h->rate_ppm - 1) / h->rate_ppm);
  while (local_of(h, t) < local) t++;
  return t;
}

/* ---- coroutines ---------------------------------------------------------- */

struct co {
  ucontext_t ctx;
  char *stack;
  proc *p;
  void *(*fn)(void *);
  void *arg;
  void *ret;
  int done, blocked;
  uint64_t gen;
  co *joiner;
  co *wnext; /* in a mutex's or condition's wait list */
  int woken; /* cond: woken by a broadcast (not the timeout) */
  unsigned epoch; /* its process's epoch when it was made */
};

static ucontext_t sched_ctx;
static co *cur; /* running coroutine; NULL: the scheduler */

/* Loads p's process-wide core state (NULL: none is loaded). */
static proc *gl_loaded;
static void globals_switch(proc *p) {
  if (gl_loaded == p) return;
  if (gl_loaded) {
    gl_loaded->gl.backends = g_backends;
    gl_loaded->gl.mu = g_mu;
    gl_loaded->gl.once = g_once;
  }
  if (p) {
    g_backends = p->gl.backends;
    g_mu = p->gl.mu;
    g_once = p->gl.once;
  }
  gl_loaded = p;
}

static void co_resume(co *c) {
  co *was = cur;
  proc *pw = cur_proc;
  globals_switch(c->p);
  cur = c;
  cur_proc = c->p;
  c->blocked = 0;
  swapcontext(&sched_ctx, &c->ctx);
  cur = was;
  cur_proc = pw;
}

/* Blocks the running coroutine: wake-ups carry the returned generation. */
static uint64_t block_prepare(void) {
  cur->blocked = 1;
  return ++cur->gen;
}
static void block_now(void) { swapcontext(&cur->ctx, &sched_ctx); }

static void ev_wake(void *pc, uint64_t gen) {
  co *c = pc;
  if (c->done || !c->blocked || c->gen != gen || !c->p->alive) return;
  if (c->p->paused_until > T) { /* paused: not scheduled until it ends */
    at(c->p->paused_until, ev_wake, c, gen);
    return;
  }
  co_resume(c);
}

static void wake_at(co *c, int64_t t) { at(t, ev_wake, c, c->gen); }

/* makecontext passes ints: the coroutine's address in two halves */
static void co_entry(unsigned hi, unsigned lo) {
  co *c = (co *)(((uintptr_t)hi << 32) | (uintptr_t)lo);
  c->ret = c->fn(c->arg);
  c->done = 1;
  if (c->joiner) wake_at(c->joiner, T);
  swapcontext(&c->ctx, &sched_ctx);
}

static co *co_new(proc *p, void *(*fn)(void *), void *arg) {
  co *c = calloc(1, sizeof *c);
  c->stack = malloc(STACK_SIZE);
  if (!c || !c->stack) abort();
  c->p = p;
  c->epoch = p->epoch;
  c->fn = fn;
  c->arg = arg;
  getcontext(&c->ctx);
  c->ctx.uc_stack.ss_sp = c->stack;
  c->ctx.uc_stack.ss_size = STACK_SIZE;
  c->ctx.uc_link = NULL;
  makecontext(&c->ctx, (void (*)(void))co_entry, 2,
              (unsigned)((uintptr_t)c >> 32), (unsigned)(uintptr_t)c);
  /* run it at once, as a new thread would be */
  c->blocked = 1;
  c->gen = 1;
  wake_at(c, T);
  return c;
}

static void sleep_true(int64_t ns) {
  uint64_t g = block_prepare();
  at(T + ns, ev_wake, cur, g);
  block_now();
}

/* ---- the shim: what the core calls --------------------------------------- */

typedef struct {
  co *owner;
  co *head, *tail;
} smutex;
typedef struct {
  co *head, *tail;
} scond;
_Static_assert(sizeof(smutex) <= sizeof(pthread_mutex_t), "mutex fits");
_Static_assert(sizeof(scond) <= sizeof(pthread_cond_t), "cond fits");

static void wl_push(co **h, co **t, co *c) {
  c->wnext = NULL;
  if (*t)
    (*t)->wnext = c;
  else
    *h = c;
  *t = c;
}
static void wl_remove(co **h, co **t, co *c) {
  co *prev = NULL;
  for (co *x = *h; x; prev = x, x = x->wnext)
    if (x == c) {
      if (prev)
        prev->wnext = x->wnext;
      else
        *h = x->wnext;
      if (*t == x) *t = prev;
      return;
    }
}

int sim_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a) {
  (void)a;
  memset(m, 0, sizeof *m);
  return 0;
}
int sim_mutex_destroy(pthread_mutex_t *m) {
  (void)m;
  return 0;
}
int sim_mutex_lock(pthread_mutex_t *pm) {
  smutex *m = (smutex *)pm;
  if (!cur) abort(); /* only coroutines take the core's locks */
  if (!m->owner) {
    m->owner = cur;
    return 0;
  }
  if (m->owner == cur) abort(); /* the core's mutexes are not recursive */
  wl_push(&m->head, &m->tail, cur);
  block_prepare();
  block_now(); /* unlock hands it over */
  return 0;
}
int sim_mutex_unlock(pthread_mutex_t *pm) {
  smutex *m = (smutex *)pm;
  co *next = m->head;
  /* a waiter of a dead process never takes it */
  while (next && !next->p->alive) {
    wl_remove(&m->head, &m->tail, next);
    next = m->head;
  }
  if (next) {
    wl_remove(&m->head, &m->tail, next);
    m->owner = next;
    wake_at(next, T);
  } else {
    m->owner = NULL;
  }
  return 0;
}
int sim_cond_init(pthread_cond_t *c, const pthread_condattr_t *a) {
  (void)a;
  memset(c, 0, sizeof *c);
  return 0;
}
int sim_cond_destroy(pthread_cond_t *c) {
  (void)c;
  return 0;
}
static int cond_wait_until(pthread_cond_t *pc, pthread_mutex_t *m,
                           int64_t until_true) {
  scond *c = (scond *)pc;
  wl_push(&c->head, &c->tail, cur);
  cur->woken = 0;
  sim_mutex_unlock(m);
  uint64_t g = block_prepare();
  if (until_true >= 0) at(until_true, ev_wake, cur, g);
  block_now();
  int woken = cur->woken;
  wl_remove(&c->head, &c->tail, cur);
  sim_mutex_lock(m);
  return woken ? 0 : ETIMEDOUT;
}
int sim_cond_wait(pthread_cond_t *c, pthread_mutex_t *m) {
  cond_wait_until(c, m, -1);
  return 0;
}
/* The core's condition variables all use CLOCK_MONOTONIC. */
int sim_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                       const struct timespec *abs) {
  int64_t local = (int64_t)abs->tv_sec * SEC + abs->tv_nsec;
  return cond_wait_until(c, m, true_of(cur->p->h, local));
}
int sim_cond_broadcast(pthread_cond_t *pc) {
  scond *c = (scond *)pc;
  for (co *x = c->head; x; x = x->wnext)
    if (x->blocked && !x->woken) {
      x->woken = 1;
      wake_at(x, T);
    }
  c->head = c->tail = NULL;
  return 0;
}
int sim_cond_signal(pthread_cond_t *pc) {
  scond *c = (scond *)pc;
  co *x = c->head;
  if (x) {
    wl_remove(&c->head, &c->tail, x);
    x->woken = 1;
    wake_at(x, T);
  }
  return 0;
}
int sim_thread_create(pthread_t *t, const pthread_attr_t *a,
                      void *(*fn)(void *), void *arg) {
  (void)a;
  co *c = co_new(cur->p, fn, arg);
  *t = (pthread_t)(uintptr_t)c;
  trace("p%d: thread started", cur->p->idx);
  return 0;
}
int sim_thread_join(pthread_t t, void **ret) {
  co *c = (co *)(uintptr_t)t;
  while (!c->done) {
    c->joiner = cur;
    block_prepare();
    block_now();
  }
  if (ret) *ret = c->ret;
  return 0;
}
int sim_thread_detach(pthread_t t) {
  (void)t;
  return 0;
}
int sim_once(pthread_once_t *o, void (*fn)(void)) {
  if (*o == 0) {
    *o = 1;
    fn();
  }
  return 0;
}
static void (*at_prepare)(void), (*at_parent)(void), (*at_child)(void);
int sim_atfork(void (*prepare)(void), void (*parent)(void),
               void (*child)(void)) {
  at_prepare = prepare; /* the same functions in every process */
  at_parent = parent;
  at_child = child;
  return 0;
}

/* The core's memory: every block with the process that made it. */
typedef struct {
  void *p;
  size_t n;
  proc *owner;
} block;
static block *blocks;
static size_t nblocks, capblocks;
static void track(void *p, size_t n, proc *owner) {
  if (nblocks == capblocks) {
    capblocks = capblocks ? 2 * capblocks : 256;
    blocks = realloc(blocks, capblocks * sizeof *blocks);
    if (!blocks) abort();
  }
  blocks[nblocks++] = (block){p, n, owner};
}
static block *find_block(const void *p) {
  for (size_t i = nblocks; i-- > 0;)
    if (blocks[i].p == p) return &blocks[i];
  return NULL;
}
void *sim_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  track(p, n, cur_proc);
  return p;
}
void *sim_calloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) abort();
  track(p, n * size, cur_proc);
  return p;
}
void *sim_realloc(void *p, size_t n) {
  if (!p) return sim_malloc(n);
  block *b = find_block(p);
  void *q = realloc(p, n ? n : 1);
  if (!q) abort();
  if (b) {
    b->p = q;
    b->n = n;
  } else {
    track(q, n, cur_proc);
  }
  return q;
}
void sim_free(void *p) {
  if (!p) return;
  block *b = find_block(p);
  if (b) *b = blocks[--nblocks];
  free(p);
}
char *sim_strdup(const char *s) {
  return sim_strndup(s, strlen(s));
}
char *sim_strndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *d = sim_malloc(len + 1);
  memcpy(d, s, len);
  d[len] = '\0';
  return d;
}

/* A fork's copy of the parent's memory: each block of the parent copied
 * for the child, and every word of the copies that points into a block of
 * the parent pointed at the child's copy instead. */
typedef struct {
  uintptr_t old;
  size_t n;
  char *neu;
} moved;
static int moved_cmp(const void *a, const void *b) {
  uintptr_t x = ((const moved *)a)->old, y = ((const moved *)b)->old;
  return x < y ? -1 : x > y;
}
static moved *g_moved;
static size_t g_nmoved;
static void *relocate(const void *v) {
  uintptr_t a = (uintptr_t)v;
  size_t lo = 0, hi = g_nmoved;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (a < g_moved[mid].old) hi = mid;
    else if (a >= g_moved[mid].old + (g_moved[mid].n ? g_moved[mid].n : 1))
      lo = mid + 1;
    else
      return g_moved[mid].neu + (a - g_moved[mid].old);
  }
  return (void *)v;
}
static void copy_memory(proc *from, proc *to) {
  g_nmoved = 0;
  g_moved = calloc(nblocks + 1, sizeof *g_moved);
  if (!g_moved) abort();
  size_t n0 = nblocks; /* the copies are added below */
  for (size_t i = 0; i < n0; i++)
    if (blocks[i].owner == from) {
      char *q = malloc(blocks[i].n ? blocks[i].n : 1);
      if (!q) abort();
      memcpy(q, blocks[i].p, blocks[i].n);
      g_moved[g_nmoved++] = (moved){(uintptr_t)blocks[i].p, blocks[i].n, q};
    }
  qsort(g_moved, g_nmoved, sizeof *g_moved, moved_cmp);
  for (size_t i = 0; i < g_nmoved; i++) {
    track(g_moved[i].neu, g_moved[i].n, to);
    for (size_t off = 0; off + sizeof(void *) <= g_moved[i].n;
         off += sizeof(void *)) {
      void *w;
      memcpy(&w, g_moved[i].neu + off, sizeof w);
      w = relocate(w);
      memcpy(g_moved[i].neu + off, &w, sizeof w);
    }
  }
}
int sim_clock_gettime(clockid_t id, struct timespec *ts) {
  proc *p = cur_proc;
  if (!p) abort();
  int64_t ns = local_of(p->h, T);
  if (id == CLOCK_MONOTONIC_COARSE) ns -= ns % (4 * MS); /* one 4 ms tick */
  if (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)
    ns += 1700000000LL * SEC;
  ts->tv_sec = ns / SEC;
  ts->tv_nsec = ns % SEC;
  return 0;
}
gm_clock_fn gm_clock_gettime = sim_clock_gettime;

ssize_t sim_getrandom(void *buf, size_t len, unsigned flags) {
  (void)flags;
  unsigned char *o = buf;
  for (size_t i = 0; i < len; i++) o[i] = (unsigned char)rnd();
  return (ssize_t)len;
}
pid_t sim_getpid(void) { return cur_proc ? cur_proc->pid : 1; }
int sim_gethostname(char *buf, size_t len) {
  snprintf(buf, len, "host%d", cur_proc ? cur_proc->hidx : 0);
  return 0;
}
int sim_eventfd(unsigned init, int flags) {
  (void)init, (void)flags;
  errno = ENOSYS; /* the simulated app dispatches by polling */
  return -1;
}
int sim_nanosleep(const struct timespec *req, struct timespec *rem) {
  (void)rem;
  int64_t local = local_of(cur->p->h, T) + (int64_t)req->tv_sec * SEC +
                  req->tv_nsec;
  uint64_t g = block_prepare();
  at(true_of(cur->p->h, local), ev_wake, cur, g);
  block_now();
  return 0;
}
int sim_usleep(useconds_t us) {
  struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
  return sim_nanosleep(&ts, NULL);
}
pid_t sim_fork(void) {
  errno = ENOSYS;
  return -1;
}

/* The registry is not linked: backends come from gm_backend_new_ops. */
const gm_backend_ops *gm_backend_find(const char *name, gm_error *err) {
  gm_seterr(err, GM_E_BACKEND, "no backend '%s' in the simulator", name);
  return NULL;
}

/* ---- the schedule's parameters --------------------------------------------- */

static struct {
  int64_t L, H, D, P; /* ns */
  int64_t timeout;    /* a call's timeout, local ns */
  int64_t lat_lo, lat_hi; /* one-way delay, ns */
  double p_slow;      /* a delay drawn up to 2 timeouts */
  double p_lost_req, p_lost_rep;
  int64_t fault_end;  /* faults happen in [0, fault_end) */
  int64_t heal;       /* every fault healed */
  int64_t end;
  int batch;          /* the backend has renew_many */
  int wake;           /* the backend has changed/poll_us (wake-ups) */
  int watch;          /* the backend has watch/open_watch/interrupt */
  int watch_noisy;    /* a renewal wakes a watch too */
  double p_watch_not; /* a watch says "cannot watch this lock" at once */
  double p_watch_spurious; /* a watch wakes at once with nothing changed */
  int watch_row;      /* a watch returns the row as it ends (MySQL's) */
  int watch_crash;    /* a crashed holder's session ends the watches */
  int watch_one;      /* a change wakes one watcher, which the core then
                       * has judge its row at once (MySQL's watch_one) */
  int64_t watch_tick; /* 0, or the database ends a watch's wait on its
                       * timer tick, this often (true ns), and the backend
                       * asks a tick less: it may end a tick early
                       * (Redis's XREAD; ops.watch_early_us) */
  int liveness;       /* holder_gone/acquire_dead (SQLite's lock file) */
} S;

/* ---- the database -------------------------------------------------------- */

typedef struct {
  int exists;
  char owner[GM_ID_MAX];
  uint64_t instance, token;
  int64_t acquired_at, renewed_at, expires_at;
  int64_t t_renewed; /* true time of the last grant or renewal */
  int64_t holder;    /* the granted process's liveness handle, or -1 */
} dbrow;

enum { W_GRANT, W_RENEW, W_RELEASE, W_OPERATOR };
#define HIST 8
static struct {
  int64_t rate_ppm, base_db, base_t; /* its clock, in µs */
  dbrow row;
  int down;                    /* an outage: requests are lost */
  int64_t down_until;
  /* the last writes: the row before each, for a failover to a replica */
  struct {
    int kind;
    dbrow before;
  } hist[HIST];
  int nhist;
  uint64_t max_token;   /* largest token since the row was last deleted */
  int deleted;          /* the row was deleted at least once */
  int far_future;       /* an operator set a far-future expiry */
  int64_t last_grant_t; /* true time of the last grant */
  uint64_t version;     /* grows with every write (PRAGMA data_version) */
  struct req *watchers[64]; /* watches waiting for the row to change */
  int nwatchers;
} DB;

static int64_t db_now(void) {
  return DB.base_db +
         (int64_t)((__int128)(T - DB.base_t) * DB.rate_ppm / 1000000 / 1000);
}

static void watch_fire(int changed);
static void db_record(int kind) {
  DB.version++;
  watch_fire(kind != W_RENEW);
  if (DB.nhist == HIST) {
    memmove(&DB.hist[0], &DB.hist[1], (HIST - 1) * sizeof DB.hist[0]);
    DB.nhist--;
  }
  DB.hist[DB.nhist].kind = kind;
  DB.hist[DB.nhist].before = DB.row;
  DB.nhist++;
}

static void row_out(gm_row *o, int64_t now) {
  memset(o, 0, sizeof *o);
  o->exists = DB.row.exists;
  o->now = now;
  o->holder = -1;
  if (!DB.row.exists) return;
  if (S.liveness) o->holder = DB.row.holder;
  snprintf(o->owner, sizeof o->owner, "%s", DB.row.owner);
  o->token = DB.row.token;
  o->instance = DB.row.instance;
  o->acquired_at = DB.row.acquired_at;
  o->renewed_at = DB.row.renewed_at;
  o->expires_at = DB.row.expires_at;
}

/* ---- the simulated backend: one generic request/reply path -------------- */

enum {
  OP_OPEN,
  OP_OBSERVE,
  OP_ACQUIRE,
  OP_RENEW,
  OP_RELEASE,
  OP_RENEW_MANY,
  OP_WATCH
};
static const char *op_names[] = {"open",  "observe",    "acquire", "renew",
                                 "release", "renew_many", "watch"};

/* A connection: interrupt() shuts it down (as shutdown(2) of a socket):
 * the call running on it fails at once, and every later one too. */
typedef struct sconn {
  proc *p;
  int watch;          /* opened by open_watch: reads outlast a long watch */
  int shut;           /* interrupted */
  int fresh;          /* no watch on it yet */
  int election;       /* a read or write came on it: the election's */
  int64_t early_left; /* its last call: a watch that ended by its time
                       * this long (local ns) before its timeout, within
                       * watch_early_us; -1: none */
  uint64_t reads_mark; /* its proc's nreads when it was opened */
  int closed;
  struct req *busy;   /* the call running on it */
  struct sconn *next; /* in p->conns */
} sconn;

typedef struct req {
  int op;
  proc *p;
  co *c;
  uint64_t gen;
  int done;
  int interrupted;
  int64_t wait;   /* watch: how long the database waits, true ns */
  int waiting;    /* watch: registered with the database */
  int64_t holder; /* acquire: the requester's liveness handle, or -1 */
  int64_t dead;   /* acquire_dead: the holder reported gone, else -1 */
  /* input */
  char owner[GM_ID_MAX];
  uint64_t instance, token, expect_token, min_token, seen_max;
  int expect_exists;
  int64_t lease_us;
  gm_renew_req *reqs; /* renew_many: copied in and out */
  size_t n;
  /* output */
  int rc;
  gm_row row;
  int woken; /* sent on a wake-up */
  int filled; /* watch: row holds the row as the wait ended */
} req;

static int64_t delay(void) {
  if (chance(S.p_slow)) return rnd_in(S.lat_lo, 2 * S.timeout);
  return rnd_in(S.lat_lo, S.lat_hi);
}

static int owns(const char *owner, uint64_t instance, uint64_t token) {
  return DB.row.exists && strcmp(DB.row.owner, owner) == 0 &&
         DB.row.instance == instance && DB.row.token == token;
}

/* Applies one request atomically, as a real backend's statement does. */
static int db_apply_one(req *r, gm_row *out, const char *owner,
                        uint64_t instance, uint64_t token, int64_t lease_us) {
  int64_t now = db_now();
  switch (r->op) {
  case OP_OPEN:
    return GM_OK;
  case OP_OBSERVE:
    row_out(out, now);
    return GM_OK;
  case OP_ACQUIRE: {
    uint64_t nt;
    if (!r->expect_exists) {
      if (DB.row.exists) return GM_NOT;
      nt = r->min_token + 1;
    } else {
      /* acquire_dead (SQLite's take_dead): a live lease too, where the
       * row's holder is still the one reported gone */
      int free_row = r->dead >= 0 ? DB.row.holder == r->dead
                                  : DB.row.expires_at <= now;
      if (!DB.row.exists || DB.row.token != r->expect_token || !free_row ||
          DB.row.token >= (uint64_t)INT64_MAX)
        return GM_NOT;
      nt = (DB.row.token > r->min_token ? DB.row.token : r->min_token) + 1;
    }
    /* tokens: above every token of this row since it was (re)created, and
     * above every token the node had seen (point 7) */
    if (DB.max_token && nt <= DB.max_token && !(DB.deleted && !r->expect_exists))
      violation("grant of token %" PRIu64 " to p%d not above token %" PRIu64
                " granted before",
                nt, r->p->idx, DB.max_token);
    if (nt <= r->seen_max)
      violation("grant of token %" PRIu64 " to p%d not above token %" PRIu64
                " it had seen",
                nt, r->p->idx, r->seen_max);
    db_record(W_GRANT);
    DB.row.exists = 1;
    snprintf(DB.row.owner, sizeof DB.row.owner, "%s", owner);
    DB.row.instance = instance;
    DB.row.token = nt;
    DB.row.acquired_at = DB.row.renewed_at = now;
    DB.row.t_renewed = T;
    DB.row.expires_at = now + lease_us;
    DB.row.holder = r->holder;
    if (nt > DB.max_token) DB.max_token = nt;
    DB.last_grant_t = T;
    trace("db: granted token %" PRIu64 " to p%d (%s)%s", nt, r->p->idx, owner,
          r->dead >= 0 ? ", its holder gone" : "");
    row_out(out, now);
    return GM_OK;
  }
  case OP_RENEW:
  case OP_RENEW_MANY:
    if (!owns(owner, instance, token)) return GM_NOT;
    db_record(W_RENEW);
    DB.row.renewed_at = now;
    DB.row.t_renewed = T;
    DB.row.expires_at = now + lease_us;
    row_out(out, now);
    return GM_OK;
  case OP_RELEASE:
    if (!owns(owner, instance, token)) return GM_NOT;
    db_record(W_RELEASE);
    DB.row.owner[0] = '\0';
    DB.row.expires_at = now;
    trace("db: p%d released token %" PRIu64, r->p->idx, token);
    return GM_OK;
  }
  return GM_ERR;
}

static void ev_reply(void *pr, uint64_t gen) {
  req *r = pr;
  (void)gen;
  if (r->c->gen != r->gen || !r->c->blocked) return; /* timed out */
  r->done = 1;
  if (r->op == OP_WATCH)
    trace("p%d: watch replied %d", r->p->idx, r->rc);
  else
    trace("p%d: %s replied %d: row %s owner '%s' token %" PRIu64
          " expires in %.3f s", r->p->idx, op_names[r->op], r->rc,
          r->row.exists ? "exists" : "absent", r->row.owner, r->row.token,
          (double)(r->row.expires_at - r->row.now) / 1e6);
  ev_wake(r->c, r->gen);
}

/* The database's reply: after a drawn delay, or lost. */
static void reply(req *r) {
  if (chance(S.p_lost_rep) && r->op != OP_OPEN) {
    trace("db: reply to p%d's %s lost (rc %d)", r->p->idx, op_names[r->op],
          r->rc);
    return;
  }
  at(T + delay(), ev_reply, r, 0);
}

/* ---- watch: the database holds the request until the row changes ------- */

/* Ends watch r with rc; with S.watch_row, the row read as it ends, at
 * the database's now then (MySQL's SYSDATE(6) after the wait). */
static void watch_end(req *r, int rc) {
  for (int i = 0; i < DB.nwatchers; i++)
    if (DB.watchers[i] == r) {
      DB.watchers[i] = DB.watchers[--DB.nwatchers];
      break;
    }
  r->waiting = 0;
  r->rc = rc;
  r->filled = S.watch_row;
  if (r->filled) row_out(&r->row, db_now());
  reply(r);
}

/* The row was written: every watch returns GM_OK, where the write changed
 * the grant (a grant, a release, an operator's edit, a deletion, a
 * failover, a crashed holder's session ended) or the database also wakes on
 * renewals. */
static void watch_fire(int changed) {
  if (!changed && !S.watch_noisy) return;
  while (DB.nwatchers) {
    trace("db: p%d's watch woken", DB.watchers[0]->p->idx);
    watch_end(DB.watchers[0], GM_OK);
    if (S.watch_one) break; /* the others wait on, to their timeouts */
  }
}

/* Its wait ran out with the row unchanged: GM_NOT. */
static void ev_watch_timeout(void *pr, uint64_t gen) {
  req *r = pr;
  (void)gen;
  if (r->waiting) watch_end(r, GM_NOT);
}

/* A watch delivered: GM_OK at once when the lock is not held (as MySQL's
 * IS_FREE_LOCK), or, drawn, with nothing changed; else it waits. */
static void watch_begin(req *r) {
  int64_t now = db_now();
  int held = DB.row.exists && DB.row.owner[0] && DB.row.expires_at > now;
  if (!held || chance(S.p_watch_spurious) ||
      DB.nwatchers == (int)(sizeof DB.watchers / sizeof DB.watchers[0])) {
    watch_end(r, GM_OK);
    return;
  }
  r->waiting = 1;
  DB.watchers[DB.nwatchers++] = r;
  int64_t end = T + r->wait;
  if (S.watch_tick) end += (S.watch_tick - end % S.watch_tick) % S.watch_tick;
  at(end, ev_watch_timeout, r, 0);
}

static void ev_deliver(void *pr, uint64_t gen) {
  req *r = pr;
  (void)gen;
  if (DB.down) {
    trace("db: down, p%d's %s lost", r->p->idx, op_names[r->op]);
    return;
  }
  if (r->op == OP_WATCH) {
    watch_begin(r);
    return;
  }
  if (r->op == OP_RENEW_MANY) {
    for (size_t i = 0; i < r->n; i++) {
      gm_renew_req *q = &r->reqs[i];
      gm_row o;
      q->rc = db_apply_one(r, &o, q->owner, q->instance, q->token, q->lease_us);
      q->renewed_at = o.renewed_at;
      q->expires_at = o.expires_at;
      q->now = o.now;
    }
    r->rc = GM_OK;
  } else {
    r->rc = db_apply_one(r, &r->row, r->owner, r->instance, r->token,
                         r->lease_us);
  }
  reply(r);
}

/* A follower's statements: after a read that showed another node's live
 * lease, nothing for min(retry, what is left of that lease) unless a
 * wake-up or start() came since (point 6), and never many in a row. */
static void check_follower_pace(proc *p, const req *r) {
  int64_t now = local_of(p->h, T);
  if (now < p->quiet_until - 1000 && p->quiet_sent > p->last_start_local)
    violation("p%d sent %s %.3f s after reading a live lease that had "
              "%.3f s left (retry %.3f s)",
              p->idx, op_names[r->op], (double)(now - p->quiet_from) / SEC,
              (double)p->quiet_left / SEC, (double)S.P / SEC);
  p->fsent[p->nfsent++ % 16] = now;
  if (p->nfsent >= 16) {
    int64_t first = p->fsent[p->nfsent % 16];
    int64_t span = S.P > 100 * MS ? S.P : 100 * MS;
    if (now - first < span && first > p->last_start_local)
      violation("p%d sent 16 statements in %.3f s as a follower (retry "
                "%.3f s)",
                p->idx, (double)(now - first) / SEC, (double)S.P / SEC);
  }
}

/* Every call: a request after a delay, a reply after another, or GM_ERR at
 * the timeout (on the caller's clock), or at once when the connection is
 * interrupted. Statements a follower sends are counted against the retry
 * interval; a watch is not such a statement (it waits), but a watch that
 * woke (or could not watch) is not followed by another before a read. */
static int call(sconn *cn, req *r, gm_error *err) {
  proc *p = cur->p;
  r->p = p;
  r->c = cur;
  /* the checks follow the current backend's coroutines: a freed one's
   * thread may still release in the background */
  int ours = cur->epoch == p->epoch;
  r->seen_max = ours ? p->seen_max : 0;
  /* after a watch woke, the read on the wake-up may come second (after
   * a read that was due anyway: the election thread was in a call, or
   * had no connection, when the wake-up came): neither sets a window */
  /* a read the core sends on a wake-up, within its spread (elector.c,
   * wake_at: min(retry, lease)/20 on the node's clock; twice that here) */
  r->woken = (p->woken_at > 0 &&
              T - p->woken_at <= (S.P < S.L ? S.P : S.L) / 10) ||
             (r->op == OP_OBSERVE && p->watch_woke);
  if (r->op == OP_OBSERVE && p->watch_woke && ours) p->watch_woke--;
  if (cn->closed) violation("p%d: %s on a closed connection", p->idx,
                            op_names[r->op]);
  if (cn->p != p) violation("p%d: %s on p%d's connection", p->idx,
                            op_names[r->op], cn->p->idx);
  if (cn->shut) {
    trace("p%d: %s on an interrupted connection", p->idx, op_names[r->op]);
    gm_seterr(err, GM_E_CONNECT, "%s: the connection was interrupted",
              op_names[r->op]);
    return GM_ERR;
  }
  if (r->op != OP_WATCH) cn->early_left = -1;
  if (r->op != OP_WATCH && r->op != OP_OPEN) cn->election = 1;
  if (!ours) {
  } else if (r->op == OP_WATCH) {
    if (p->rewatch_set && p->nreads <= p->rewatch_after)
      violation("p%d watched again with no read since its last watch woke",
                p->idx);
  } else if (r->op != OP_OPEN && p->e && gm_elector_deadline(p->e) == 0) {
    check_follower_pace(p, r);
  }
  int64_t sent_local = local_of(p->h, T);
  r->gen = block_prepare();
  trace("p%d: %s sent%s", p->idx, op_names[r->op],
        p->e && gm_elector_deadline(p->e) ? " (master)" : "");
  if (chance(S.p_lost_req))
    trace("p%d: %s request lost", p->idx, op_names[r->op]);
  else
    at(T + delay(), ev_deliver, r, 0);
  int64_t limit = S.timeout + (r->op == OP_WATCH ? r->wait : 0);
  at(true_of(p->h, local_of(p->h, T) + limit), ev_wake, cur, r->gen);
  cn->busy = r;
  block_now();
  cn->busy = NULL;
  ours = cur->epoch == p->epoch; /* (the application may have reopened) */
  if (!r->done) {
    gm_seterr(err, r->interrupted ? GM_E_CONNECT : GM_E_DB, "%s: %s",
              op_names[r->op], r->interrupted ? "interrupted" : "timed out");
    if (r->op == OP_WATCH || !ours) return GM_ERR;
    /* a failed call: the core's backoff paces what follows, the counts
     * start again */
    p->last_start_local = local_of(p->h, T);
    return GM_ERR;
  }
  if (!ours) return r->rc;
  if (r->op == OP_WATCH) {
    if (r->rc == GM_OK) { /* a wake-up: the followers read at once */
      p->watch_woke = 2;
      p->last_start_local = local_of(p->h, T);
    } else if (r->woken && !p->watch_woke) {
      /* begun within a wake-up's spread (the core waits it out in a
       * watch): the read after it is that wake-up's, however long the
       * watch's reply took */
      p->watch_woke = 1;
    }
    return r->rc;
  }
  if (r->op == OP_OBSERVE && r->rc == GM_OK) p->nreads++;
  if (r->op != OP_OPEN && r->row.token > p->seen_max)
    p->seen_max = r->row.token;
  /* a read on a wake-up may be followed by the read that was due anyway
   * (docs/design.md, "Wake-ups"): it sets no window */
  if (r->op == OP_OBSERVE && r->rc == GM_OK && r->row.exists && !r->woken &&
      r->row.owner[0] && r->row.expires_at > r->row.now &&
      !(p->e && r->row.instance == gm_elector_instance(p->e))) {
    /* what is left of the lease, on the slowest clock the bound allows */
    double bound = (double)(S.L - S.D) / (double)S.L;
    int64_t left = (r->row.expires_at - r->row.now) * 1000;
    left = (int64_t)((double)left * (1 - bound));
    /* (a wake-up that came while the read was under way makes the core
     * read again at once: the window counts from the read's start) */
    p->quiet_from = local_of(p->h, T);
    p->quiet_sent = sent_local;
    p->quiet_left = left < S.P ? left : S.P;
    p->quiet_until = p->quiet_from + p->quiet_left;
  }
  if (r->op == OP_RENEW_MANY)
    for (size_t i = 0; i < r->n; i++)
      if (r->reqs[i].rc == GM_OK && r->reqs[i].token > p->seen_max)
        p->seen_max = r->reqs[i].token;
  return r->rc;
}

static req *req_new(int op) {
  req *r = calloc(1, sizeof *r); /* freed with the process */
  if (!r) abort();
  r->op = op;
  r->holder = r->dead = -1;
  return r;
}

static int sb_parse(const gm_kv *o, size_t n, void **cfg, gm_error *err) {
  (void)o, (void)n, (void)err;
  *cfg = NULL;
  return GM_OK;
}
static void sb_free_cfg(void *cfg) { (void)cfg; }
static void sb_describe(const void *cfg, char *buf, size_t len) {
  (void)cfg;
  snprintf(buf, len, "sim");
}
/* SQLite's liveness handle: a byte of the lock file that the process
 * keeps locked from its first open on; the kernel frees it when the
 * process dies (not when it pauses). A few bytes, so a new process may
 * take a dead one's. */
#define SLOTS 8
static int slot_taken(int64_t slot) {
  for (int i = 0; i < n_procs; i++)
    if (procs[i].alive && procs[i].slot == slot) return 1;
  return 0;
}
static void take_slot(proc *p) {
  if (!S.liveness || p->slot >= 0) return;
  unsigned start = (unsigned)p->pid * 2654435761u;
  for (unsigned i = 0; i < SLOTS; i++)
    if (!slot_taken((start + i) % SLOTS)) {
      p->slot = (start + i) % SLOTS;
      return;
    }
}

static int open_conn(int watch, void **conn, gm_error *err) {
  proc *p = cur->p;
  sconn *cn = calloc(1, sizeof *cn); /* freed with the process */
  if (!cn) abort();
  cn->p = p;
  cn->watch = watch;
  cn->fresh = 1;
  cn->early_left = -1;
  cn->reads_mark = p->nreads;
  cn->next = p->conns;
  p->conns = cn;
  take_slot(p);
  req *r = req_new(OP_OPEN);
  int rc = call(cn, r, err);
  if (rc != GM_OK) cn->closed = 1;
  *conn = rc == GM_OK ? cn : NULL;
  return rc == GM_OK ? GM_OK : GM_ERR;
}
static int sb_open(const void *cfg, void **conn, gm_error *err) {
  (void)cfg;
  return open_conn(0, conn, err);
}
static int sb_open_watch(const void *cfg, void **conn, gm_error *err) {
  (void)cfg;
  return open_conn(1, conn, err);
}
static void sb_close(void *conn) {
  sconn *cn = conn;
  if (cn->closed) violation("p%d: a connection closed twice", cn->p->idx);
  cn->closed = 1;
}
/* From another thread (the core's lock held): the call running on conn
 * fails at once; so does every later one. */
static void sb_interrupt(void *conn) {
  sconn *cn = conn;
  if (cn->closed) violation("p%d: interrupt of a closed connection",
                            cn->p->idx);
  trace("p%d: interrupt%s", cn->p->idx, cn->busy ? " ends a call" : "");
  cn->shut = 1;
  if (cn->busy && !cn->busy->done) {
    cn->busy->interrupted = 1;
    at(T, ev_wake, cn->busy->c, cn->busy->gen);
  }
}
static int sb_observe(void *conn, const char *name, gm_row *out,
                      gm_error *err) {
  (void)name;
  req *r = req_new(OP_OBSERVE);
  int rc = call(conn, r, err);
  if (rc == GM_OK) *out = r->row;
  return rc;
}
static int acquire_with(void *conn, const gm_acquire_req *a, int64_t dead,
                        gm_row *out, gm_error *err) {
  req *r = req_new(OP_ACQUIRE);
  snprintf(r->owner, sizeof r->owner, "%s", a->owner);
  r->instance = a->instance;
  r->expect_exists = a->expect_exists;
  r->expect_token = a->expect_token;
  r->min_token = a->min_token;
  r->lease_us = a->lease_us;
  r->holder = cur->p->slot;
  r->dead = dead;
  int rc = call(conn, r, err);
  if (rc == GM_OK) *out = r->row;
  return rc;
}
static int sb_acquire(void *conn, const gm_acquire_req *a, gm_row *out,
                      gm_error *err) {
  return acquire_with(conn, a, -1, out, err);
}
/* As SQLite's: only an update, and only of the holder reported gone. */
static int sb_acquire_dead(void *conn, const gm_acquire_req *a,
                           int64_t holder, gm_row *out, gm_error *err) {
  if (!a->expect_exists || holder < 0) return GM_NOT;
  return acquire_with(conn, a, holder, out, err);
}
/* A local check, no statement: the byte is free when no live process
 * holds it. Our own byte, or none: nobody can tell. */
static int holder_gone(proc *p, int64_t holder) {
  if (holder < 0 || p->slot < 0 || holder == p->slot) return GM_NOT;
  if (slot_taken(holder)) return GM_NOT;
  /* a wake-up: the follower reads (and takes the lock) at once */
  p->last_start_local = local_of(p->h, T);
  p->woken_at = T;
  return GM_OK;
}
static int sb_holder_gone(void *conn, int64_t holder, gm_error *err) {
  (void)conn, (void)err;
  return holder_gone(cur->p, holder);
}
static int sb_renew(void *conn, const char *name, const char *owner,
                    uint64_t instance, uint64_t token, int64_t lease_us,
                    gm_row *out, gm_error *err) {
  (void)name;
  req *r = req_new(OP_RENEW);
  snprintf(r->owner, sizeof r->owner, "%s", owner);
  r->instance = instance;
  r->token = token;
  r->lease_us = lease_us;
  int rc = call(conn, r, err);
  if (rc == GM_OK) *out = r->row;
  return rc;
}
static int sb_release(void *conn, const char *name, const char *owner,
                      uint64_t instance, uint64_t token, gm_error *err) {
  (void)name;
  req *r = req_new(OP_RELEASE);
  snprintf(r->owner, sizeof r->owner, "%s", owner);
  r->instance = instance;
  r->token = token;
  return call(conn, r, err);
}
static int sb_renew_many(void *conn, gm_renew_req *reqs, size_t n,
                         gm_error *err) {
  req *r = req_new(OP_RENEW_MANY);
  r->reqs = calloc(n, sizeof *reqs);
  if (!r->reqs) abort();
  memcpy(r->reqs, reqs, n * sizeof *reqs);
  r->n = n;
  int rc = call(conn, r, err);
  if (rc == GM_OK) memcpy(reqs, r->reqs, n * sizeof *reqs);
  return rc;
}

/* A wake-up as SQLite's: a local read of the database's write counter, no
 * statement and no delay. A wake-up lets the followers read at once: the
 * follower counts start again. */
static int sb_changed(void *conn, gm_error *err) {
  (void)conn, (void)err;
  proc *p = cur->p;
  if (p->seen_version == DB.version) return GM_NOT;
  p->seen_version = DB.version;
  if (cur->epoch == p->epoch) p->last_start_local = local_of(p->h, T);
  p->woken_at = T;
  trace("p%d: changed says yes", p->idx);
  return GM_OK;
}

/* A watch as MySQL's GET_LOCK: the database holds the request until the
 * lock's row changes or its wait runs out. On a connection from open (not
 * open_watch) the wait is cut to half the call's timeout, which the
 * connection's reads must outlast, unless the backend says watch_shared
 * (it stretches that call's read timeout, as MySQL and Redis do; the
 * core then watches on the election connection). Drawn: "cannot watch this lock from
 * here" at once, with no statement (MySQL under Galera). */
static gm_backend_ops sim_ops; /* below */

static int sb_watch(void *conn, const char *name, int64_t timeout_us,
                    gm_row *row, gm_error *err) {
  (void)name;
  sconn *cn = conn;
  proc *p = cur->p;
  /* the reads the core had seen when it chose what to watch: before it
   * opened the connection, for the first watch on it */
  uint64_t mark = cn->fresh ? cn->reads_mark : p->nreads;
  cn->fresh = 0;
  unsigned starts = p->nstarts;
  /* the read was due: no second watch for the moments left (backend.h) */
  if (cn->election && cn->early_left >= 0 && cur->epoch == p->epoch)
    violation("p%d watched again with no read, after a watch that ended by "
              "its time %.3f s early (the backend says it may, by %.3f s)",
              p->idx, (double)cn->early_left / SEC,
              (double)sim_ops.watch_early_us / 1e6);
  cn->early_left = -1;
  if (chance(S.p_watch_not)) {
    trace("p%d: watch: cannot watch from here", p->idx);
    p->rewatch_set = 1;
    p->rewatch_after = mark;
    return GM_NOT;
  }
  req *r = req_new(OP_WATCH);
  trace("p%d: watch for %.3f s", p->idx, timeout_us / 1e6);
  int64_t wait = timeout_us < 0 ? 0 : timeout_us * 1000;
  if (!cn->watch && !sim_ops.watch_shared && wait > S.timeout / 2)
    wait = S.timeout / 2;
  /* on a tick: a tick less, as Redis's backend asks (it may end early) */
  wait = wait > S.watch_tick ? wait - S.watch_tick : 0;
  r->wait = wait;
  int64_t asked_end = local_of(p->h, T) + timeout_us * 1000;
  int rc = call(cn, r, err);
  int64_t left = asked_end - local_of(p->h, T);
  /* (a row it returned may be the core's read: only a watch without) */
  if (rc == GM_NOT && !r->filled && left > 0 && left < S.watch_tick)
    cn->early_left = left;
  if (rc == GM_OK && starts == p->nstarts && cur->epoch == p->epoch) {
    p->rewatch_set = 1;
    p->rewatch_after = mark;
  }
  if (rc != GM_ERR && row && r->filled) *row = r->row;
  /* woken alone, with the row: the core's read of it */
  if (rc == GM_OK && row && r->filled && sim_ops.watch_one) p->nreads++;
  return rc;
}

static gm_backend_ops sim_ops = {
    .abi = GM_BACKEND_ABI,
    .name = "sim",
    .parse = sb_parse,
    .free_cfg = sb_free_cfg,
    .describe = sb_describe,
    .open = sb_open,
    .close = sb_close,
    .observe = sb_observe,
    .acquire = sb_acquire,
    .renew = sb_renew,
    .release = sb_release,
};


/* ---- processes: the application -------------------------------------------- */

static const char *shared_id; /* colliding ids: every process uses it */

static void drain(proc *p) {
  gm_event ev;
  while (gm_elector_next_event(p->e, &ev) == GM_OK)
    if (ev.type == GM_EV_START)
      trace("p%d: start(%" PRIu64 ")", p->idx, ev.token);
    else if (ev.type == GM_EV_STOP)
      trace("p%d: stop(%s)", p->idx, gm_stop_reason_name(ev.reason));
}

static void *app_loop(proc *p);
static void do_fork(proc *p);
static void *app_loop_main(void *arg) { return app_loop(arg); }
/* The application's backend and elector. */
static int app_open(proc *p) {
  gm_error err = {0};
  p->b = gm_backend_new_ops(&sim_ops, NULL, 0, &err);
  if (!p->b) {
    violation("gm_backend_new_ops: %s", err.msg);
    return -1;
  }
  gm_config cfg = {.lease = (double)S.L / SEC,
                   .heartbeat = (double)S.H / SEC,
                   .renew_deadline = (double)S.D / SEC,
                   .retry = (double)S.P / SEC,
                   .id = shared_id};
  p->e = gm_elector_new(p->b, &cfg, &err);
  if (!p->e) {
    violation("gm_elector_new: %s", err.msg);
    return -1;
  }
  snprintf(p->id, sizeof p->id, "%s", gm_elector_id(p->e));
  return 0;
}
static void *app_main(void *arg) {
  proc *p = arg;
  return app_open(p) ? NULL : app_loop(p);
}

/* The application frees its elector and its backend (gm_elector_free, the
 * last gm_backend_unref: a thread still in a call is cut short with
 * interrupt) and makes new ones. From here on the checks follow the new
 * elector (a new node as point 7 sees it: its own tokens seen). */
static int app_reopen(proc *p) {
  gm_elector *e = p->e;
  gm_backend *b = p->b;
  trace("p%d: free() and unref(): a new backend and elector", p->idx);
  p->e = NULL; /* asked nothing while free() runs */
  p->b = NULL;
  p->closing = 1;
  gm_elector_free(e);
  gm_backend_unref(b);
  p->closing = 0;
  p->epoch++;
  p->seen_max = 0;
  p->started = 0;
  p->watch_woke = 0;
  p->rewatch_set = 0;
  p->nfsent = 0;
  p->quiet_until = INT64_MIN;
  p->last_start_local = local_of(p->h, T);
  return app_open(p);
}

static void spawn(int hidx);
static proc *new_proc(int hidx) {
  if (n_procs == MAX_PROCS) return NULL;
  proc *p = &procs[n_procs];
  memset(p, 0, sizeof *p);
  p->idx = n_procs++;
  p->hidx = hidx;
  p->h = &hosts[hidx];
  p->alive = 1;
  p->pid = 1000 + p->idx;
  p->want_running = 1;
  p->last_start_local = INT64_MIN;
  p->slot = -1;
  p->parent = -1;
  return p;
}

/* fork() in the application: the prepare handlers in the parent, the
 * parent's memory and process-wide state copied for the child, the parent
 * handlers in the parent, the child handlers in the child (before anyone
 * can ask the child anything, as fork() returns there only after them).
 * The child is a process of its own on the same host: a new pid, no
 * thread, its own byte of the lock file once it opens a connection; its
 * application goes on with the copy of the parent's elector. */
static void do_fork(proc *p) {
  if (!at_child || n_procs == MAX_PROCS) return;
  if (at_prepare) at_prepare(); /* takes the core's locks: may wait */
  proc *c = new_proc(p->hidx);
  c->parent = p->idx;
  c->seen_max = p->seen_max;
  c->want_running = chance2(0.8);
  copy_memory(p, c);
  c->gl.backends = relocate(g_backends); /* p's, loaded */
  c->gl.mu = g_mu;
  c->gl.once = g_once;
  c->b = relocate(p->b);
  c->e = relocate(p->e);
  free(g_moved);
  g_moved = NULL;
  if (at_parent) at_parent();
  proc *was = cur_proc;
  globals_switch(c);
  cur_proc = c;
  at_child();
  int is = gm_elector_is_master(c->e);
  cur_proc = was;
  globals_switch(p);
  snprintf(c->id, sizeof c->id, "%s", gm_elector_id(c->e));
  trace("p%d: fork: child p%d (%s)", p->idx, c->idx, c->id);
  if (is) violation("p%d's forked child p%d believes it is master", p->idx,
                    c->idx);
  if (gm_elector_instance(c->e) == gm_elector_instance(p->e))
    violation("p%d's forked child p%d has its instance key", p->idx, c->idx);
  co_new(c, app_loop_main, c);
}

static void *app_loop(proc *p) {
  gm_error err = {0};
  for (;;) {
    if (p->fork_pending) {
      p->fork_pending = 0;
      do_fork(p);
    }
    if (p->reopen_pending) {
      p->reopen_pending = 0;
      if (app_reopen(p)) return NULL;
    }
    if (p->want_running && !p->started) {
      p->last_start_local = local_of(p->h, T);
      if (gm_elector_start(p->e, &err) != GM_OK)
        violation("start: %s", err.msg);
      p->started = 1;
      p->rewatch_set = 0; /* the core may watch on what it read before */
      p->nstarts++;
      trace("p%d: start() as %s", p->idx, p->id);
    } else if (!p->want_running && p->started) {
      trace("p%d: stop()", p->idx);
      gm_elector_stop(p->e);
      p->started = 0;
    }
    drain(p);
    sleep_true(rnd_in(S.P / 4, S.P));
  }
  return NULL;
}

static void spawn(int hidx) {
  proc *p = new_proc(hidx);
  if (!p) return;
  trace("p%d: process starts on host %d", p->idx, hidx);
  co_new(p, app_main, p);
}

static proc *live_on(int hidx) {
  for (int i = 0; i < n_procs; i++)
    if (procs[i].alive && procs[i].hidx == hidx) return &procs[i];
  return NULL;
}

/* ---- faults --------------------------------------------------------------- */

static void f_crash(void *ph, uint64_t gen) {
  (void)gen;
  proc *p = live_on((int)(intptr_t)ph);
  if (p) {
    p->alive = 0;
    trace("p%d: crashed", p->idx);
    /* the holder's session ends: a watch of its lock wakes (MySQL's user
     * lock is freed with the connection) */
    if (S.watch_crash && p->e && DB.row.exists && DB.row.owner[0] &&
        DB.row.instance == gm_elector_instance(p->e))
      watch_fire(1);
  }
}
static void f_restart(void *ph, uint64_t gen) {
  (void)gen;
  int hidx = (int)(intptr_t)ph;
  if (!live_on(hidx)) spawn(hidx);
}
static void f_pause(void *ph, uint64_t len) {
  proc *p = live_on((int)(intptr_t)ph);
  if (!p) return;
  p->paused_until = T + (int64_t)len;
  trace("p%d: paused for %.3f s", p->idx, (double)len / SEC);
}
static void f_stop(void *ph, uint64_t len) {
  proc *p = live_on((int)(intptr_t)ph);
  if (!p) return;
  p->want_running = 0;
  (void)len;
}
static void f_fork(void *ph, uint64_t gen) {
  (void)gen;
  proc *p = live_on((int)(intptr_t)ph);
  if (p) p->fork_pending = 1;
}
static void f_reopen(void *ph, uint64_t gen) {
  (void)gen;
  proc *p = live_on((int)(intptr_t)ph);
  if (p) p->reopen_pending = 1;
}
static void f_start(void *ph, uint64_t gen) {
  (void)gen;
  proc *p = live_on((int)(intptr_t)ph);
  if (p) p->want_running = 1;
}

static void f_db_step(void *unused, uint64_t step_us) {
  (void)unused;
  DB.base_db = db_now() + (int64_t)step_us;
  DB.base_t = T;
  trace("db: clock stepped by %+.3f s", (double)(int64_t)step_us / 1e6);
}
static void f_db_down(void *unused, uint64_t up) {
  (void)unused;
  DB.down = !up;
  trace("db: %s", up ? "up" : "down");
  while (!up && DB.nwatchers) /* their replies never come */
    DB.watchers[--DB.nwatchers]->waiting = 0;
}
static int any_master(void);
static int64_t master_seen_after_heal = -1;
static void f_operator(void *unused, uint64_t what) {
  (void)unused;
  int64_t now = db_now();
  if (!DB.row.exists) return;
  if (what != 2) {
    db_record(W_OPERATOR);
    DB.nhist = 0; /* no failover across an operator's edit */
  }
  switch (what) {
  case 0: /* gomaster release --force: keeps a running lease */
    if (DB.row.token >= (uint64_t)INT64_MAX) return;
    DB.row.owner[0] = '\0';
    DB.row.instance = 0; /* as every backend: no holder's key */
    DB.row.token++;
    if (DB.row.token > DB.max_token) DB.max_token = DB.row.token;
    if (DB.row.expires_at < now) DB.row.expires_at = now;
    trace("operator: release --force (token now %" PRIu64 ")", DB.row.token);
    break;
  case 1: /* an expiry in 9999 */
    DB.row.expires_at = FAR_FUTURE_US;
    DB.far_future = 1;
    trace("operator: expiry set to 9999-12-31");
    break;
  case 2:
    /* deleting a row is outside the guarantee while anyone may believe
     * in its grant (a node that never saw the row takes the lock at once,
     * point 7): the operator deletes it only when nobody is master and the
     * last grant is a lease old (no grant's reply still on its way), and
     * else comes back a heartbeat later */
    if (any_master() || T < DB.last_grant_t + S.L) {
      at(T + S.H, f_operator, NULL, 2);
      return;
    }
    if (T > S.heal) { /* a late fix of the row is the last fault */
      S.end += T - S.heal;
      S.heal = T;
      master_seen_after_heal = -1;
    }
    DB.nhist = 0;
    DB.version++;
    watch_fire(1);
    DB.row.exists = 0;
    DB.deleted = 1;
    DB.far_future = 0;
    DB.max_token = 0;
    trace("operator: row deleted");
    break;
  }
}
/* Processes that are master, or freeing an elector that may be. */
static int any_master(void) {
  int n = 0;
  proc *was = cur_proc;
  for (int i = 0; i < n_procs; i++)
    n += procs[i].alive && procs[i].closing;
  for (int i = 0; i < n_procs; i++)
    if (procs[i].alive && procs[i].e) {
      cur_proc = &procs[i];
      n += gm_elector_is_master(procs[i].e);
    }
  cur_proc = was;
  return n;
}

/* A failover to a replica that lacks the last k writes: only renewals and
 * releases (a lost grant breaks the guarantee, see docs/design.md), and
 * only while the lease of the row it goes back to outlasts the renewed
 * grant's deadline: lease - k * heartbeat >= renew deadline. */
static void f_lose_writes(void *unused, uint64_t k) {
  (void)unused;
  if ((int)k > DB.nhist) return;
  int64_t last_renew = INT64_MIN;
  for (int i = DB.nhist - (int)k; i < DB.nhist; i++) {
    if (DB.hist[i].kind != W_RENEW && DB.hist[i].kind != W_RELEASE) return;
    if (DB.hist[i].kind == W_RENEW) {
      const dbrow *after = i + 1 < DB.nhist ? &DB.hist[i + 1].before : &DB.row;
      if (after->renewed_at > last_renew) last_renew = after->renewed_at;
    }
  }
  const dbrow *back = &DB.hist[DB.nhist - (int)k].before;
  if ((int64_t)k * S.H > S.L - S.D) return;
  if (last_renew != INT64_MIN &&
      back->expires_at < last_renew + (S.D + (S.L - S.D) / 2) / 1000)
    return;
  DB.row = *back;
  DB.nhist -= (int)k;
  DB.version++;
  watch_fire(1);
  trace("db: failover lost the last %d writes", (int)k);
}

/* ---- the checker ------------------------------------------------------------ */


static void check_masters(void) {
  proc *m = NULL;
  for (int i = 0; i < n_procs; i++) {
    proc *p = &procs[i];
    if (!p->alive || !p->e) continue;
    proc *was = cur_proc;
    cur_proc = p;
    int is = gm_elector_is_master(p->e);
    uint64_t tok = is ? gm_elector_token(p->e) : 0;
    cur_proc = was;
    if (!is) continue;
    if (T >= S.heal && master_seen_after_heal < 0) master_seen_after_heal = T;
    if (m) {
      proc *was2 = cur_proc;
      cur_proc = m;
      uint64_t mt = gm_elector_token(m->e);
      cur_proc = was2;
      violation("two masters: p%d (%s, token %" PRIu64 ") and p%d (%s, token "
                "%" PRIu64 ")",
                m->idx, m->id, mt, p->idx, p->id, tok);
      return;
    }
    m = p;
  }
}

/* ---- one schedule ------------------------------------------------------------ */

static void draw_schedule(void) {
  static const int64_t leases[] = {500 * MS, 1 * SEC, 2 * SEC, 5 * SEC};
  S.L = leases[rnd_in(0, 3)];
  if (chance(0.5)) { /* the defaults */
    S.H = S.L / 5;
    S.D = 3 * S.L / 5;
    S.P = S.L / 5;
  } else {
    S.D = rnd_in(S.L * 3 / 10, S.L * 9 / 10);
    S.H = rnd_in(S.D / 10, S.D * 6 / 10);
    S.P = rnd_in(S.L / 20, S.L);
  }
  S.timeout = S.D / 3;
  S.lat_lo = rnd_in(10 * 1000, 500 * 1000);
  S.lat_hi = S.lat_lo + rnd_in(0, chance(0.3) ? 50 * MS : 5 * MS);
  S.p_slow = chance(0.5) ? 0 : rnd_u() * 0.05;
  S.p_lost_req = chance(0.5) ? 0 : rnd_u() * 0.1;
  S.p_lost_rep = chance(0.5) ? 0 : rnd_u() * 0.1;
  S.batch = chance(0.5);
  sim_ops.renew_many = S.batch ? sb_renew_many : NULL;
  S.wake = chance(0.25);
  sim_ops.changed = S.wake ? sb_changed : NULL;
  sim_ops.poll_us = S.wake ? 20000 : 0;
  S.fault_end = rnd_in(3, 8) * S.L;
  /* from the second generator: a watch (MySQL's GET_LOCK) in a third of
   * the schedules, SQLite's liveness check in a quarter */
  S.watch = chance2(0.35);
  S.watch_noisy = chance2(0.3);
  S.p_watch_not = chance2(0.1) ? 1 : chance2(0.5) ? 0 : rnd2_u() * 0.2;
  S.p_watch_spurious = chance2(0.5) ? 0 : rnd2_u() * 0.1;
  S.liveness = chance2(0.25);
  sim_ops.watch = S.watch ? sb_watch : NULL;
  sim_ops.open_watch = S.watch && chance2(0.8) ? sb_open_watch : NULL;
  sim_ops.interrupt = S.watch || chance2(0.5) ? sb_interrupt : NULL;
  sim_ops.watch_shared = S.watch && chance2(0.5);
  sim_ops.holder_gone = S.liveness ? sb_holder_gone : NULL;
  sim_ops.acquire_dead = S.liveness ? sb_acquire_dead : NULL;
  if (S.liveness) sim_ops.poll_us = 20000;

  /* clocks: within the bound (rates differ by less than (L - D) / L), or,
   * in one schedule in ten, one host beyond it */
  double bound = (double)(S.L - S.D) / (double)S.L;
  n_hosts = (int)rnd_in(2, MAX_HOSTS);
  for (int i = 0; i < n_hosts; i++) {
    double dev = (rnd_u() * 2 - 1) * 0.45 * bound;
    hosts[i] = (host){.rate_ppm = (int64_t)(1e6 * (1 + dev)),
                      .base_local = rnd_in(1, 1000) * SEC,
                      .base_t = 0};
  }
  double ddev = (rnd_u() * 2 - 1) * 0.45 * bound;
  g_beyond = "";
  if (chance(0.1)) {
    int h = (int)rnd_in(0, n_hosts - 1);
    double dev = bound * (1.2 + rnd_u() * 2);
    if (dev > 0.9) dev = 0.9;
    hosts[h].rate_ppm = (int64_t)(1e6 * (1 - dev));
    g_beyond = "clock rates beyond (L - D) / L";
  }
  DB.rate_ppm = (int64_t)(1e6 * (1 + ddev));
  DB.base_db = rnd_in(1000, 100000) * 1000000LL;
  DB.base_t = 0;

  shared_id = chance(0.3) ? "node" : NULL;
  for (int i = 0; i < n_hosts; i++) {
    int64_t t = rnd_in(0, S.L);
    at(t, f_restart, (void *)(intptr_t)i, 0);
  }

  /* forks of the application's process, in a fifth of the schedules */
  int nforks = chance2(0.2) ? (int)rnd2_in(1, 3) : 0;
  for (int i = 0; i < nforks; i++)
    at(rnd2_in(0, S.fault_end - 1), f_fork,
       (void *)(intptr_t)rnd2_in(0, n_hosts - 1), 0);
  /* the application frees its elector and backend and makes new ones, in
   * a fifth */
  int nreopen = chance2(0.2) ? (int)rnd2_in(1, 3) : 0;
  for (int i = 0; i < nreopen; i++)
    at(rnd2_in(0, S.fault_end - 1), f_reopen,
       (void *)(intptr_t)rnd2_in(0, n_hosts - 1), 0);
  /* drawn last: the schedules of the seeds above stay as they were */
  S.watch_row = S.watch && chance2(0.5);
  S.watch_one = S.watch_row && chance2(0.5);
  sim_ops.watch_one = S.watch_one;
  /* a watch that a crashed holder's session wakes (MySQL's), or one that
   * tells of releases only (Redis's, MongoDB's) */
  S.watch_crash = S.watch_one || (S.watch && chance2(0.5));
  sim_ops.watch_crash = S.watch_crash;
  /* a watch that ends on the database's timer tick, up to a tick early
   * (Redis's), in half the schedules that tell of releases only */
  S.watch_tick = S.watch && !S.watch_crash && chance2(0.5) ? 100 * MS : 0;
  sim_ops.watch_early_us = S.watch_tick / 1000;
  int64_t heal = S.fault_end, back_total = 0, last_step = 0;
  int nf = (int)rnd_in(0, 8);
  for (int f = 0; f < nf; f++) {
    int64_t t = rnd_in(0, S.fault_end - 1);
    int h = (int)rnd_in(0, n_hosts - 1);
    void *ph = (void *)(intptr_t)h;
    switch (rnd_in(0, 7)) {
    case 0: { /* crash, restart later (before the faults end) */
      int64_t back = rnd_in(0, 2 * S.L);
      if (t + back >= S.fault_end) back = S.fault_end - t;
      at(t, f_crash, ph, 0);
      at(t + back, f_restart, ph, 0);
      break;
    }
    case 1: { /* a process pause */
      int64_t len = rnd_in(S.H, 3 * S.L);
      at(t, f_pause, ph, (uint64_t)len);
      if (t + len > heal) heal = t + len;
      break;
    }
    case 2: { /* stop(), start() later */
      int64_t back = rnd_in(0, 2 * S.L);
      if (t + back >= S.fault_end) back = S.fault_end - t;
      at(t, f_stop, ph, 0);
      at(t + back, f_start, ph, 0);
      break;
    }
    case 3: { /* a step of the database's clock */
      int64_t step = rnd_in(-2 * S.L, 2 * S.L) / 1000;
      at(t, f_db_step, NULL, (uint64_t)step);
      /* steps back add up: every lease written before them ends later */
      if (step < 0) back_total += -step * 1000;
      if (t > last_step) last_step = t;
      break;
    }
    case 4: { /* an outage */
      int64_t len = rnd_in(S.H, 2 * S.L);
      if (t + len > S.fault_end) len = S.fault_end - t;
      at(t, f_db_down, NULL, 0);
      at(t + len, f_db_down, NULL, 1);
      break;
    }
    case 5: { /* an operator's edit; a far-future expiry is undone later by
               * deleting the row */
      int what = (int)rnd_in(0, 2);
      at(t, f_operator, NULL, (uint64_t)what);
      if (what == 1) at(S.fault_end, f_operator, NULL, 2);
      break;
    }
    case 6:
    case 7: /* a failover that loses the last k writes */
      at(t, f_lose_writes, NULL, (uint64_t)rnd_in(1, 3));
      break;
    }
  }
  /* dips, in a third of the schedules (drawn from the second stream, so
   * the schedules above stay): the database clock steps back and comes
   * back soon, often between two reads of a follower. A renewal made in a
   * dip has an early time that no later read shows as a step: what point
   * 2's short way must bound by the margin L - D. */
  int ndips = chance2(1.0 / 3) ? (int)rnd2_in(1, 6) : 0;
  for (int i = 0; i < ndips; i++) {
    int64_t t = rnd2_in(0, S.fault_end - 1);
    int64_t depth = rnd2_in(MS, S.L) / 1000; /* µs */
    int64_t len = rnd2_in(S.H / 4, 2 * S.H);
    at(t, f_db_step, NULL, (uint64_t)-depth);
    at(t + len, f_db_step, NULL, (uint64_t)depth);
  }
  if (back_total && last_step + back_total > heal) heal = last_step + back_total;
  S.heal = heal;
  /* liveness: lease + retry + 1 s after the heal, on the slowest clock */
  int64_t minrate = DB.rate_ppm;
  for (int i = 0; i < n_hosts; i++)
    if (hosts[i].rate_ppm < minrate) minrate = hosts[i].rate_ppm;
  int64_t w = (S.L + S.P) * 1000000 / minrate + SEC;
  S.end = S.heal + w;
}

static void ev_heal(void *unused, uint64_t gen) {
  (void)unused, (void)gen;
  /* the loss and delay draws end; every host runs one started process */
  S.p_lost_req = S.p_lost_rep = S.p_slow = 0;
  S.lat_hi = S.lat_lo + 2 * MS;
  DB.down = 0;
  for (int i = 0; i < n_hosts; i++) {
    proc *p = live_on(i);
    if (!p)
      spawn(i);
    else
      p->want_running = 1;
  }
  trace("faults healed");
}

static int run_schedule(uint64_t seed) {
  g_seed = seed;
  g_rng = seed * 0x9E3779B97F4A7C15ULL + 1;
  /* (+ 79: none of the regression seeds of tests/integration/sim.sh
   * draws watch, liveness, forks or reopenings, so they name the
   * schedules they were found with) */
  g_rng2 = seed * 0xD1B54A32D192ED03ULL + 79;
  T = 0;
  memset(&DB, 0, sizeof DB);
  draw_schedule();
  if (g_trace)
    printf("seed %" PRIu64 ": %d hosts, lease %.3f heartbeat %.3f deadline "
           "%.3f retry %.3f, faults until %.3f, healed %.3f%s%s%s\n",
           seed, n_hosts, (double)S.L / SEC, (double)S.H / SEC,
           (double)S.D / SEC, (double)S.P / SEC, (double)S.fault_end / SEC,
           (double)S.heal / SEC, g_beyond[0] ? ", clocks beyond the bound" : "",
           S.batch ? ", batch renewals" : "", S.wake ? ", wake-ups" : "");
  if (g_trace && (S.watch || S.liveness))
    printf("  %s%s%s%s%s%s%s\n",
           S.watch ? (S.p_watch_not >= 1 ? "watch (cannot watch)"
                      : S.watch_noisy ? "watch (woken by renewals too)"
                                      : "watch")
                   : "",
           sim_ops.watch_shared ? " on the election connection" : "",
           S.watch_row ? (S.watch_one ? ", returning the row, waking one"
                                      : ", returning the row") : "",
           S.watch && !S.watch_crash ? ", releases only" : "",
           S.watch_tick ? ", ending on a 100 ms tick" : "",
           S.watch && S.liveness ? ", " : "",
           S.liveness ? "liveness (holder_gone)" : "");
  at(S.heal, ev_heal, NULL, 0);
  while (heap_n && g_violations == 0) {
    event ev = pop();
    if (ev.t > S.end) break;
    T = ev.t;
    ev.fn(ev.p, ev.gen);
    check_masters();
  }
  T = S.end;
  if (!g_violations && master_seen_after_heal < 0)
    violation("no master within %.3f s after the faults healed at %.3f s",
              (double)(S.end - S.heal) / SEC, (double)S.heal / SEC);
  if (g_violations && g_beyond[0]) return 2;
  return g_violations ? 1 : 0;
}

/* ---- the simulated database against the backend contract ----------------- */

/* The cases of src/backend.h, applied to the simulated database directly:
 * `sim --selftest` (run by tests/integration/sim.sh). */
static int st_fail;
static void st_check(int ok, const char *what) {
  if (!ok) {
    printf("not ok - database contract: %s\n", what);
    st_fail++;
  }
}
static int st_acq(req *r, int exists, uint64_t expect, uint64_t min,
                  uint64_t inst) {
  r->op = OP_ACQUIRE;
  r->expect_exists = exists;
  r->expect_token = expect;
  r->min_token = min;
  r->seen_max = 0;
  return db_apply_one(r, &r->row, "a", inst, 0, 1000000);
}
/* holder_gone and acquire_dead, as SQLite's: the byte of a dead process
 * is free, a paused one's is not; acquire_dead takes a live lease only
 * where the row's holder is still the one reported gone. */
static void selftest_liveness(void) {
  static host h = {.rate_ppm = 1000000};
  S.liveness = 1;
  n_procs = 2;
  procs[0] = (proc){.idx = 0, .alive = 1, .pid = 1000, .slot = -1, .h = &h};
  procs[1] = (proc){.idx = 1, .alive = 1, .pid = 1001, .slot = -1, .h = &h};
  take_slot(&procs[0]);
  take_slot(&procs[1]);
  int64_t mine = procs[0].slot, other = procs[1].slot;
  st_check(mine >= 0 && other >= 0 && mine != other,
           "two live processes hold two bytes");
  procs[1].paused_until = T + SEC;
  st_check(holder_gone(&procs[0], other) == GM_NOT,
           "holder_gone: a live (paused) holder is not gone");
  st_check(holder_gone(&procs[0], mine) == GM_NOT &&
               holder_gone(&procs[0], -1) == GM_NOT,
           "holder_gone: our own byte, or none: nobody can tell");
  req r = {0};
  r.p = &procs[1];
  r.dead = -1;
  r.holder = other;
  memset(&DB, 0, sizeof DB);
  DB.rate_ppm = 1000000;
  st_check(st_acq(&r, 0, 0, 0, 5) == GM_OK && DB.row.holder == other,
           "a grant writes the holder's handle");
  gm_row o;
  r.op = OP_OBSERVE;
  st_check(db_apply_one(&r, &o, "", 0, 0, 0) == GM_OK && o.holder == other,
           "observe reads the holder's handle");
  uint64_t tok = DB.row.token;
  r.p = &procs[0];
  r.holder = mine;
  r.dead = other;
  st_check(st_acq(&r, 1, tok - 1, 0, 6) == GM_NOT,
           "acquire_dead: refused where the row's token moved on");
  procs[1].alive = 0;
  st_check(holder_gone(&procs[0], other) == GM_OK,
           "holder_gone: a crashed holder's byte is free");
  r.dead = mine;
  st_check(st_acq(&r, 1, tok, 0, 6) == GM_NOT,
           "acquire_dead: refused where the row's holder is another");
  r.dead = other;
  st_check(st_acq(&r, 1, tok, 0, 6) == GM_OK && r.row.token == tok + 1 &&
               DB.row.holder == mine,
           "acquire_dead: takes a live lease of the holder reported gone");
  st_check(st_acq(&r, 1, tok + 1, 0, 7) == GM_NOT,
           "acquire_dead: not a lease whose holder lives");
  procs[2] = (proc){.idx = 2, .alive = 1, .pid = 1001, .slot = -1, .h = &h};
  n_procs = 3;
  take_slot(&procs[2]);
  st_check(procs[2].slot == other && holder_gone(&procs[0], other) == GM_NOT,
           "a new process may take a dead one's byte: then it is not gone");
  S.liveness = 0;
  n_procs = 0;
}

/* watch and interrupt, through the backend's ops on a coroutine, in
 * simulated time (the cases of tests/c/test_backend.c's case_watch). */
static struct {
  int open_watch;  /* open with open_watch */
  int64_t timeout; /* µs */
  sconn *conn;
  int rc, rc2;     /* watch's, and a call after it on the same connection */
  int64_t t;       /* true ns when watch returned */
  gm_row row;      /* the row watch filled, if it did */
} W;
static void *st_watcher(void *unused) {
  (void)unused;
  gm_error err = {0};
  void *c = NULL;
  if ((W.open_watch ? sb_open_watch : sb_open)(NULL, &c, &err) != GM_OK) {
    W.rc = -2;
    return NULL;
  }
  W.conn = c;
  W.rc = sb_watch(c, "a", W.timeout, &W.row, &err);
  W.t = T;
  gm_row o;
  W.rc2 = sb_observe(c, "a", &o, &err);
  return NULL;
}
static void st_ev_release(void *u, uint64_t g) {
  (void)u, (void)g;
  req r = {.op = OP_RELEASE, .p = &procs[0], .holder = -1, .dead = -1};
  gm_row o;
  db_apply_one(&r, &o, DB.row.owner, DB.row.instance, DB.row.token, 0);
}
static void st_ev_renew(void *u, uint64_t g) {
  (void)u, (void)g;
  req r = {.op = OP_RENEW, .p = &procs[0], .holder = -1, .dead = -1};
  gm_row o;
  db_apply_one(&r, &o, DB.row.owner, DB.row.instance, DB.row.token, 5000000);
}
static void st_ev_interrupt(void *u, uint64_t g) {
  (void)u, (void)g;
  if (W.conn) sb_interrupt(W.conn);
}
static void st_ev_down(void *u, uint64_t g) {
  (void)g;
  f_db_down(NULL, (uint64_t)(intptr_t)u);
}
/* One case: a held row, a watcher from T0, what ev does at T0 + at_ns;
 * runs until nothing is left. Returns T0. */
static int64_t st_watch_case(int open_watch, int64_t timeout_us, ev_fn ev,
                             int64_t at_ns, void *arg) {
  static host h = {.rate_ppm = 1000000};
  memset(&DB, 0, sizeof DB);
  DB.rate_ppm = 1000000;
  DB.row = (dbrow){.exists = 1, .instance = 9, .token = 4, .holder = -1};
  snprintf(DB.row.owner, sizeof DB.row.owner, "holder");
  DB.row.expires_at = db_now() + 10000000;
  n_procs = 1;
  procs[0] = (proc){.idx = 0, .alive = 1, .pid = 1000, .slot = -1, .h = &h};
  memset(&W, 0, sizeof W);
  W.rc = W.rc2 = -9;
  W.open_watch = open_watch;
  W.timeout = timeout_us;
  int64_t t0 = T;
  co_new(&procs[0], st_watcher, NULL);
  if (ev) at(t0 + at_ns, ev, arg, 0);
  while (heap_n) {
    event e = pop();
    T = e.t;
    e.fn(e.p, e.gen);
  }
  return t0;
}
static void selftest_watch(void) {
  S.lat_lo = S.lat_hi = 1 * MS;
  S.p_slow = S.p_lost_req = S.p_lost_rep = 0;
  S.timeout = 100 * MS;
  S.watch = 1;
  S.watch_crash = 1;
  S.watch_noisy = 0;
  S.p_watch_not = S.p_watch_spurious = 0;
  int64_t t0 = st_watch_case(1, 300000, NULL, 0, NULL);
  int64_t took = W.t - t0;
  st_check(W.rc == GM_NOT && took >= 300 * MS && took <= 310 * MS,
           "watch with nothing changing: GM_NOT at its timeout");
  t0 = st_watch_case(1, 300000, st_ev_renew, 100 * MS, NULL);
  st_check(W.rc == GM_NOT && W.t - t0 >= 300 * MS && W.row.now == 0,
           "watch: a renewal is no change (and no row where none is "
           "returned)");
  S.watch_row = 1;
  t0 = st_watch_case(1, 300000, st_ev_renew, 100 * MS, NULL);
  int64_t left = W.row.expires_at - W.row.now;
  st_check(W.rc == GM_NOT && W.row.exists && W.row.now &&
               left >= 4790000 && left <= 4810000,
           "watch that returns the row: the renewal during the wait, at "
           "the database's now as the wait ended");
  S.watch_row = 0;
  S.watch_noisy = 1;
  t0 = st_watch_case(1, 300000, st_ev_renew, 100 * MS, NULL);
  st_check(W.rc == GM_OK && W.t - t0 <= 102 * MS,
           "watch on a database that wakes on renewals: GM_OK");
  S.watch_noisy = 0;
  t0 = st_watch_case(1, 5000000, st_ev_release, 200 * MS, NULL);
  st_check(W.rc == GM_OK && W.rc2 == GM_OK && W.t - t0 <= 202 * MS,
           "watch returns GM_OK within a reply's delay of a release");
  t0 = st_watch_case(1, 5000000, f_operator, 200 * MS, NULL);
  st_check(W.rc == GM_OK && W.t - t0 <= 202 * MS,
           "watch returns GM_OK on an operator's release --force");
  DB.row.owner[0] = '\0';
  t0 = st_watch_case(1, 5000000, st_ev_release, 0, NULL);
  st_check(W.rc == GM_OK && W.t - t0 <= 5 * MS,
           "watch of a released row: GM_OK at once");
  t0 = st_watch_case(1, 5000000, st_ev_interrupt, 200 * MS, NULL);
  st_check(W.rc == GM_ERR && W.t - t0 == 200 * MS,
           "interrupt ends a watch at once (GM_ERR)");
  st_check(W.rc2 == GM_ERR, "a call on an interrupted connection: GM_ERR");
  /* on the election connection (open, not open_watch): the wait is cut to
   * what its reads outlast; interrupt ends it at once too */
  t0 = st_watch_case(0, 5000000, NULL, 0, NULL);
  st_check(W.rc == GM_NOT && W.t - t0 <= S.timeout,
           "watch on the election connection: GM_NOT within its reads' time");
  t0 = st_watch_case(0, 5000000, st_ev_interrupt, 20 * MS, NULL);
  st_check(W.rc == GM_ERR && W.t - t0 == 20 * MS,
           "interrupt ends a watch on the election connection at once");
  t0 = st_watch_case(1, 1000000, st_ev_down, 100 * MS, NULL);
  st_check(W.rc == GM_ERR && W.t - t0 <= 1000 * MS + S.timeout + 2 * MS,
           "a watch whose database went down fails at its timeout");
  S.p_watch_not = 1;
  t0 = st_watch_case(1, 5000000, NULL, 0, NULL);
  st_check(W.rc == GM_NOT && W.t - t0 <= 2 * MS,
           "a backend that cannot watch: GM_NOT at once");
  S.p_watch_not = 0;
  S.watch = 0;
  n_procs = 0;
}

static int selftest(void) {
  static proc p;
  req r = {0};
  r.holder = r.dead = -1;
  r.p = &p;
  memset(&DB, 0, sizeof DB);
  DB.rate_ppm = 1000000;
  T = SEC;
  g_seed = 0;
  st_check(st_acq(&r, 1, 0, 0, 7) == GM_NOT, "update of a missing row");
  st_check(st_acq(&r, 0, 0, 4, 7) == GM_OK && r.row.token == 5,
           "insert: token min_token + 1");
  st_check(st_acq(&r, 0, 0, 0, 7) == GM_NOT, "insert over a row");
  st_check(st_acq(&r, 1, 5, 0, 8) == GM_NOT, "acquire of a live lease");
  gm_row o;
  r.op = OP_RENEW;
  st_check(db_apply_one(&r, &o, "a", 8, 5, 1000000) == GM_NOT,
           "renew with another instance");
  st_check(db_apply_one(&r, &o, "b", 7, 5, 1000000) == GM_NOT,
           "renew with another owner");
  st_check(db_apply_one(&r, &o, "a", 7, 4, 1000000) == GM_NOT,
           "renew with another token");
  T += 2 * SEC; /* the lease ended: renew still works (nobody took it) */
  st_check(db_apply_one(&r, &o, "a", 7, 5, 1000000) == GM_OK &&
               o.expires_at == o.now + 1000000 && o.renewed_at == o.now,
           "renew of an ended lease, nobody took it");
  r.op = OP_RELEASE;
  st_check(db_apply_one(&r, &o, "a", 7, 5, 0) == GM_OK && DB.row.exists &&
               DB.row.owner[0] == 0 && DB.row.expires_at == db_now() &&
               DB.row.token == 5,
           "release keeps the row and the token, expires_at = now");
  st_check(db_apply_one(&r, &o, "a", 7, 5, 0) == GM_NOT, "release twice");
  st_check(st_acq(&r, 1, 4, 0, 9) == GM_NOT, "acquire with a stale token");
  st_check(st_acq(&r, 1, 5, 9, 9) == GM_OK && r.row.token == 10,
           "acquire: token max(row, min_token) + 1");
  st_check(st_acq(&r, 1, 10, 0, 3) == GM_NOT, "acquire of a live grant");
  f_operator(NULL, 0); /* release --force: the lease kept */
  st_check(DB.row.owner[0] == 0 && DB.row.token == 11 &&
               DB.row.expires_at > db_now(),
           "release --force moves the token on and keeps the lease");
  st_check(st_acq(&r, 1, 11, 0, 3) == GM_NOT,
           "a force-released row is held until its lease ends");
  T += 2 * SEC;
  st_check(st_acq(&r, 1, 11, 0, 3) == GM_OK && r.row.token == 12,
           "taken once the kept lease ended");
  DB.row.token = (uint64_t)INT64_MAX;
  T += 2 * SEC;
  st_check(st_acq(&r, 1, (uint64_t)INT64_MAX, 0, 3) == GM_NOT,
           "no token past INT64_MAX");
  r.op = OP_OBSERVE;
  st_check(db_apply_one(&r, &o, "", 0, 0, 0) == GM_OK && o.exists &&
               o.now == db_now() && o.holder == -1,
           "observe fills the row and the database's now");
  selftest_liveness();
  selftest_watch();
  printf("database contract: %d failed\n", st_fail);
  return st_fail != 0;
}

/* ---- the runner: one child process per schedule -------------------------------- */

int main(int argc, char **argv) {
  uint64_t seeds = 100000, first = 1, one = 0;
  int jobs = 2, have_one = 0;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--seeds=", 8) == 0)
      seeds = strtoull(argv[i] + 8, NULL, 10);
    else if (strncmp(argv[i], "--first=", 8) == 0)
      first = strtoull(argv[i] + 8, NULL, 10);
    else if (strncmp(argv[i], "--seed=", 7) == 0) {
      one = strtoull(argv[i] + 7, NULL, 10);
      have_one = 1;
    } else if (strcmp(argv[i], "--selftest") == 0)
      return selftest();
    else if (strcmp(argv[i], "--beyond") == 0)
      g_show_beyond = 1;
    else if (strncmp(argv[i], "--jobs=", 7) == 0)
      jobs = atoi(argv[i] + 7);
    else {
      fprintf(stderr, "usage: %s [--seeds=N] [--first=S] [--seed=S] "
                      "[--jobs=J] [--beyond] [--selftest]\n", argv[0]);
      return 2;
    }
  }
  if (have_one) {
    g_trace = 1;
    int rc = run_schedule(one);
    printf("1 schedules, %d violations%s\n", rc == 1 ? 1 : 0,
           rc == 2 ? " (1 failure beyond the guarantee, not counted)" : "");
    return rc == 1;
  }
  if (jobs < 1) jobs = 1;
  uint64_t next = first, end = first + seeds, done = 0, viol = 0, beyond = 0;
  int running = 0;
  struct {
    pid_t pid;
    uint64_t seed;
  } kids[64];
  if (jobs > 64) jobs = 64;
  fflush(stdout);
  while (done < seeds) {
    while (running < jobs && next < end) {
      pid_t pid = fork();
      if (pid == 0) {
        int rc = run_schedule(next);
        fflush(stdout);
        _exit(rc);
      }
      if (pid < 0) {
        perror("fork");
        return 2;
      }
      kids[running].pid = pid;
      kids[running].seed = next++;
      running++;
    }
    int st;
    pid_t pid = wait(&st);
    if (pid < 0) break;
    for (int i = 0; i < running; i++)
      if (kids[i].pid == pid) {
        uint64_t s = kids[i].seed;
        kids[i] = kids[--running];
        done++;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) break;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 2) {
          beyond++;
          break;
        }
        viol++;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 1)
          printf("VIOLATION seed=%" PRIu64 ": the schedule crashed (%s)\n", s,
                 WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "exit status");
        fflush(stdout);
        break;
      }
  }
  printf("%" PRIu64 " schedules, %" PRIu64 " violations", done, viol);
  if (beyond)
    printf(" (%" PRIu64 " failures beyond the guarantee, not counted)",
           beyond);
  printf("\n");
  return viol > 0;
}
