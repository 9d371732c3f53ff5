/* timeutil.c: time units, the monotonic clock, monotonic condition
 * variables and the one reconnect backoff (see timeutil.h). */
#include <stdint.h>
#include <sys/random.h>
#include <unistd.h>

#include "timeutil.h"

int64_t gm_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * GM_NS_PER_S + ts.tv_nsec;
}

int64_t gm_us_to_ns(int64_t us) {
  if (us > INT64_MAX / GM_NS_PER_US) return INT64_MAX;
  if (us < INT64_MIN / GM_NS_PER_US) return INT64_MIN;
  return us * GM_NS_PER_US;
}

int64_t gm_s_to_us(double s) {
  if (!(s > 0)) return 0;
  if (s >= (double)(INT64_MAX / GM_US_PER_S)) return INT64_MAX;
  int64_t us = (int64_t)(s * (double)GM_US_PER_S);
  return us < 1 ? 1 : us;
}

struct timespec gm_ns_to_ts(int64_t ns) {
  if (ns < 0) ns = 0;
  return (struct timespec){.tv_sec = (time_t)(ns / GM_NS_PER_S),
                           .tv_nsec = (long)(ns % GM_NS_PER_S)};
}

void gm_cond_init_mono(pthread_cond_t *cv) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(cv, &ca);
  pthread_condattr_destroy(&ca);
}

int gm_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                       int64_t until_ns) {
  struct timespec ts = gm_ns_to_ts(until_ns);
  return pthread_cond_timedwait(cv, mu, &ts);
}

uint64_t gm_rng_next(uint64_t *s) {
  /* xorshift64* */
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

uint64_t gm_seed64(void) {
  uint64_t s = 0;
  if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
    s = (uint64_t)gm_mono_ns() ^ ((uint64_t)getpid() << 32);
  return s ? s : 0x9E3779B97F4A7C15ULL;
}

int64_t gm_backoff_next(gm_backoff *b) {
  return gm_backoff_next_in(b, GM_BACKOFF_MIN_NS, GM_BACKOFF_MAX_NS);
}

int64_t gm_backoff_next_in(gm_backoff *b, int64_t min_ns, int64_t max_ns) {
  if (!b->rng) b->rng = gm_seed64();
  int64_t c = b->cur_ns ? b->cur_ns * 2 : min_ns;
  b->cur_ns = c < min_ns ? min_ns : c > max_ns ? max_ns : c;
  return b->cur_ns + (int64_t)(gm_rng_next(&b->rng) %
                               (uint64_t)(b->cur_ns / 2 + 1));
}
