/*
 * timeutil.h: the one place for time units, the monotonic clock, condition
 * variables on it, and the reconnect backoff (src/timeutil.c), as
 * luasocket keeps timeout.c.
 *
 * Units: the core and the backends count durations and database times in
 * microseconds (int64_t, "_us") and monotonic instants in nanoseconds
 * ("_ns"). Seconds appear only at the boundary (options and the Lua
 * binding) and are converted there, once, with gm_s_to_us.
 */
#ifndef GOMASTER_TIMEUTIL_H
#define GOMASTER_TIMEUTIL_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define GM_NS_PER_US 1000LL
#define GM_NS_PER_MS 1000000LL
#define GM_NS_PER_S 1000000000LL
#define GM_US_PER_MS 1000LL
#define GM_US_PER_S 1000000LL

/* The reconnect backoff: the first retry after GM_BACKOFF_MIN_NS, each next
 * one twice as late up to GM_BACKOFF_MAX_NS, each delay stretched by a
 * random part of up to half of it (so that nodes that failed together do
 * not come back together). */
#define GM_BACKOFF_MIN_NS (50 * GM_NS_PER_MS)
#define GM_BACKOFF_MAX_NS (1 * GM_NS_PER_S)

/* CLOCK_MONOTONIC in ns. */
int64_t gm_mono_ns(void);
/* Saturating conversions (times read from rows may be anything). */
int64_t gm_us_to_ns(int64_t us);
int64_t gm_s_to_us(double s); /* rounds down; at least 1 for s > 0 */
/* A monotonic instant as a timespec for pthread_cond_timedwait. */
struct timespec gm_ns_to_ts(int64_t ns);

/* A condition variable on CLOCK_MONOTONIC. */
void gm_cond_init_mono(pthread_cond_t *cv);
/* Waits on cv (mu held) until signalled or the monotonic instant until_ns;
 * the pthread_cond_timedwait result. */
int gm_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                       int64_t until_ns);

/* A random 64-bit seed (getrandom, else the clock and pid), never 0, and
 * the xorshift64* generator for jitter (not for secrets). */
uint64_t gm_seed64(void);
uint64_t gm_rng_next(uint64_t *s);

typedef struct gm_backoff {
  int64_t cur_ns; /* 0: no failure since the last success */
  uint64_t rng;   /* 0: seeded on first use */
} gm_backoff;

/* After a failure: the delay (ns) before the next try. */
int64_t gm_backoff_next(gm_backoff *b);
/* The same between min_ns and max_ns (the delay before the jitter): a
 * refused connection (GM_E_BUSY) backs off from GM_BUSY_MIN_NS up to
 * GM_BUSY_MAX_NS or GM_BUSY_RETRIES retries, whichever is longer, so a
 * full server sees each node at most once a second, and ever less often. */
int64_t gm_backoff_next_in(gm_backoff *b, int64_t min_ns, int64_t max_ns);
#define GM_BUSY_MIN_NS (1 * GM_NS_PER_S)
#define GM_BUSY_MAX_NS (30 * GM_NS_PER_S)
#define GM_BUSY_RETRIES 10
/* After a success. */
static inline void gm_backoff_reset(gm_backoff *b) { b->cur_ns = 0; }

#endif
