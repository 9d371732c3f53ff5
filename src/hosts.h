/* hosts.h: host lists of the network backends (src/hosts.c). */
#ifndef GM_HOSTS_H
#define GM_HOSTS_H

#include <stdatomic.h>

#include "backend.h"

#define GM_HOSTS_MAX 16

/* Where the list stands, shared by every connection of one backend. */
typedef struct gm_hoststate {
  atomic_uint next;     /* the host the next open tries first */
  atomic_uint in_use;   /* 1 + the host of the last open that worked; 0 */
  atomic_llong head_at; /* monotonic ns: from then on, start at the head */
} gm_hoststate;

/* Filled by gm_hosts_parse, freed by gm_hosts_free; read-only after but
 * for *st (atomics). hosts[i]:ports[i] for i < n (n >= 1 once parsed). */
typedef struct gm_hosts {
  char *hosts[GM_HOSTS_MAX];
  unsigned ports[GM_HOSTS_MAX];
  unsigned n;
  gm_hoststate *st;
} gm_hosts;

/* Reads option 'host' (or 'hosts': not both) of backend, dflt_host when
 * neither is given: one host, or a list "h1:p1,h2,[v6]:p3" whose items
 * without a port take port. GM_ERR names the option and the item. */
int gm_hosts_parse(gm_hosts *h, const gm_kv *opts, size_t n,
                   const char *backend, const char *dflt_host, unsigned port,
                   gm_error *err);
void gm_hosts_free(gm_hosts *h);

/* Tries open_one on each host in turn from where the list stands (the head
 * again a minute after it left it), until one returns GM_OK; a failure
 * of class GM_E_AUTH, GM_E_ROW or GM_E_ARG ends the round (the same on
 * every host). GM_OK records the host as in use; GM_ERR keeps the last
 * error. */
int gm_hosts_open(const gm_hosts *h, int (*open_one)(void *arg, unsigned i,
                                                     gm_error *err),
                  void *arg, gm_error *err);

/* As gm_hosts_open, for a list of nodes of one cluster that rank
 * themselves in an order every client sees alike (MySQL: Galera's member
 * index): open_one opens host i and keeps it, GM_OK, when its rank is 0 or
 * `any` is set (the host then is the best found), or sets *rank, closes it
 * and returns GM_NOT. A round from where the list stands keeps the first
 * host of rank 0; when no host has rank 0, the host of the lowest rank
 * that answered is opened again with `any` (and one host alone is opened
 * with `any` at once). */
typedef int (*gm_open_ranked)(void *arg, unsigned i, int any, unsigned *rank,
                              gm_error *err);
int gm_hosts_open_ranked(const gm_hosts *h, gm_open_ranked open_one,
                         void *arg, gm_error *err);

/* Host i cannot serve now (a lost connection, a cluster node out of the
 * primary component): the next open starts at the host after it. */
void gm_hosts_failed(const gm_hosts *h, unsigned i);

/* "host:port" ("[v6]:port") and then after, as snprintf counts. */
int gm_put_host(char *buf, size_t len, const char *host, unsigned port,
                const char *after);
/* Every host, ','-separated, then after, then " (on HOST:PORT)" once an
 * open of a list worked: the host in use. Returns what it wrote. */
size_t gm_hosts_put(const gm_hosts *h, char *buf, size_t len,
                    const char *after);

#endif
