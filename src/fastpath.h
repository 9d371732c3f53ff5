/*
 * fastpath.h: is_master()'s test, shared by the core (gm_elector_is_master)
 * and the Lua binding, which inlines it on its hot path. Private.
 *
 * CLOCK_MONOTONIC_COARSE is read from the vDSO without touching the TSC
 * (5 ns here against 34 ns for CLOCK_MONOTONIC). It never runs ahead of
 * CLOCK_MONOTONIC and trails it by one tick (4 ms at HZ=250; 7.8 ms was the
 * most seen under a hypervisor), so "coarse + GM_COARSE_GUARD_NS < until"
 * implies "now < until". Within the guard of the deadline, the exact clock
 * decides; is_master() is never true past the deadline.
 */
#ifndef GOMASTER_FASTPATH_H
#define GOMASTER_FASTPATH_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "gomaster.h"

#define GM_COARSE_GUARD_NS (100 * 1000000LL)

/* clock_gettime, or the vDSO's entry point behind it when it could be found
 * and checked at load time (src/clock.c). Set once, before any thread. */
typedef int (*gm_clock_fn)(clockid_t, struct timespec *);
extern gm_clock_fn gm_clock_gettime;

/* *until: the master's deadline, CLOCK_MONOTONIC ns; 0 when not master. */
static inline int gm_fast_is_master(const _Atomic int64_t *until_p) {
  int64_t until = atomic_load_explicit(until_p, memory_order_acquire);
  if (until == 0) return 0;
  struct timespec ts;
  gm_clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  if ((int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + GM_COARSE_GUARD_NS <
      until)
    return 1;
  gm_clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec < until;
}

/* The deadline gm_fast_is_master reads, for the binding: valid until
 * gm_elector_free. */
const _Atomic int64_t *gm_elector_until_ref(const gm_elector *e);

#endif
