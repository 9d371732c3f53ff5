/*
 * shim.h: force-included (-include) into the unmodified core when it is built
 * for the simulator (tests/sim/sim.c). Every call through which the core
 * meets threads, time, randomness or the process goes to the simulator
 * instead: threads are coroutines it schedules, clocks are its simulated
 * clocks (one per simulated host), randomness comes from the schedule's
 * seed. The core's memory is allocated through the simulator too, which
 * knows each block's process: a simulated fork() copies the parent's
 * blocks for the child. The system headers come first, so their
 * declarations keep their names; the macros below only rename the core's
 * calls.
 */
#ifndef GM_SIM_SHIM_H
#define GM_SIM_SHIM_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

int sim_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a);
int sim_mutex_lock(pthread_mutex_t *m);
int sim_mutex_unlock(pthread_mutex_t *m);
int sim_mutex_destroy(pthread_mutex_t *m);
int sim_cond_init(pthread_cond_t *c, const pthread_condattr_t *a);
int sim_cond_destroy(pthread_cond_t *c);
int sim_cond_wait(pthread_cond_t *c, pthread_mutex_t *m);
int sim_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                       const struct timespec *abs);
int sim_cond_broadcast(pthread_cond_t *c);
int sim_cond_signal(pthread_cond_t *c);
int sim_thread_create(pthread_t *t, const pthread_attr_t *a,
                      void *(*fn)(void *), void *arg);
int sim_thread_join(pthread_t t, void **ret);
int sim_thread_detach(pthread_t t);
int sim_once(pthread_once_t *o, void (*fn)(void));
int sim_atfork(void (*prepare)(void), void (*parent)(void),
               void (*child)(void));
int sim_clock_gettime(clockid_t id, struct timespec *ts);
ssize_t sim_getrandom(void *buf, size_t len, unsigned flags);
pid_t sim_getpid(void);
int sim_gethostname(char *buf, size_t len);
int sim_eventfd(unsigned init, int flags);
int sim_nanosleep(const struct timespec *req, struct timespec *rem);
int sim_usleep(useconds_t us);
pid_t sim_fork(void);
void *sim_malloc(size_t n);
void *sim_calloc(size_t n, size_t size);
void *sim_realloc(void *p, size_t n);
void sim_free(void *p);
char *sim_strdup(const char *s);
char *sim_strndup(const char *s, size_t n);

#ifndef GM_SIM_NO_MACROS
#define pthread_mutex_init sim_mutex_init
#define pthread_mutex_lock sim_mutex_lock
#define pthread_mutex_unlock sim_mutex_unlock
#define pthread_mutex_destroy sim_mutex_destroy
#define pthread_cond_init sim_cond_init
#define pthread_cond_destroy sim_cond_destroy
#define pthread_cond_wait sim_cond_wait
#define pthread_cond_timedwait sim_cond_timedwait
#define pthread_cond_broadcast sim_cond_broadcast
#define pthread_cond_signal sim_cond_signal
#define pthread_create sim_thread_create
#define pthread_join sim_thread_join
#define pthread_detach sim_thread_detach
#define pthread_once sim_once
#define pthread_atfork sim_atfork
#define clock_gettime sim_clock_gettime
#define getrandom sim_getrandom
#define getpid sim_getpid
#define gethostname sim_gethostname
#define eventfd sim_eventfd
#define nanosleep sim_nanosleep
#define usleep sim_usleep
#define fork sim_fork
#define malloc sim_malloc
#define calloc sim_calloc
#define realloc sim_realloc
#define free sim_free
#define strdup sim_strdup
#define strndup sim_strndup
#endif

#endif
