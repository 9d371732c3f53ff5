/*
 * hosts.c: host lists of the network backends.
 *
 * host = "h1:3306,h2:3306,[::1]:3307" (or a URL's authority so, or
 * hosts = {...} in the table form): an open connects to the first host
 * that answers, in order from where the list stands. A host that cannot
 * serve (gm_hosts_failed) moves the list on, so the next open starts at
 * the next host; HEAD_AGAIN_NS after the list left its head, an open
 * starts at the head again (the first host is the preferred one, such as
 * the node's own database node). A ranked open (gm_hosts_open_ranked)
 * lets the hosts say which is preferred instead: nodes of one cluster
 * ranked in the cluster's own order (MySQL under Galera), so that every
 * client lands on the same node whatever its list's order.
 *
 * Locking. The list itself is written by gm_hosts_parse alone, before any
 * connection exists, and read-only after. Where it stands is the backend's,
 * shared by its connections on any thread: three atomics (gm_hoststate),
 * each read and written alone; a race between two opens only makes one of
 * them start one host further.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hosts.h"
#include "timeutil.h"

#define HEAD_AGAIN_NS 60000000000LL /* 60 s */

/* Splits list into h's hosts and ports; a host without a port takes port.
 * Errors name the option and the item. */
static int split(gm_hosts *h, const char *list, const char *backend,
                 const char *opt, unsigned dport, gm_error *err) {
  const char *s = list;
  for (unsigned i = 0;; i++) {
    size_t len = strcspn(s, ",");
    const char *host = s, *pc = NULL, *end = s + len;
    size_t hl = len;
    if (i == GM_HOSTS_MAX) {
      gm_seterr(err, GM_E_ARG, "%s backend: option '%s': more than %d hosts",
                backend, opt, GM_HOSTS_MAX);
      return GM_ERR;
    }
    if (len && *s == '[') { /* [v6] or [v6]:port */
      const char *close = memchr(s, ']', len);
      if (!close || (close + 1 < end && close[1] != ':')) goto bad;
      host = s + 1;
      hl = (size_t)(close - s - 1);
      if (close + 1 < end) pc = close + 1;
    } else {
      pc = memchr(s, ':', len);
      if (pc) hl = (size_t)(pc - s);
      if (pc && memchr(pc + 1, ':', (size_t)(end - pc - 1))) goto bad;
    }
    if (hl == 0 || memchr(host, ' ', hl)) goto bad;
    unsigned port = dport;
    if (pc) {
      long p = 0;
      size_t pl = (size_t)(end - pc - 1);
      if (pl == 0 || pl > 5) goto bad;
      for (size_t k = 0; k < pl; k++) {
        if (!isdigit((unsigned char)pc[1 + k])) goto bad;
        p = p * 10 + (pc[1 + k] - '0');
      }
      if (p < 1 || p > 65535) goto bad;
      port = (unsigned)p;
    }
    if (!(h->hosts[i] = strndup(host, hl))) {
      gm_seterr(err, GM_E_NOMEM, "out of memory");
      return GM_ERR;
    }
    h->ports[i] = port;
    h->n = i + 1;
    if (!s[len]) return GM_OK;
    s += len + 1;
    continue;
  bad:
    gm_seterr(err, GM_E_ARG, "%s backend: option '%s': item %u is not "
              "host, host:port or [v6]:port (got '%.*s')", backend, opt, i + 1,
              (int)(len > 64 ? 64 : len), s);
    return GM_ERR;
  }
}

int gm_hosts_parse(gm_hosts *h, const gm_kv *opts, size_t n,
                   const char *backend, const char *dflt_host, unsigned port,
                   gm_error *err) {
  const char *one = gm_kv_get(opts, n, "host");
  const char *list = gm_kv_get(opts, n, "hosts");
  const char *opt = list ? "hosts" : "host";
  memset(h, 0, sizeof *h);
  if (list && one) {
    gm_seterr(err, GM_E_ARG, "%s backend: options 'host' and 'hosts' "
              "both given: use one", backend);
    return GM_ERR;
  }
  if (!list) list = one ? one : dflt_host;
  if (!*list) {
    gm_seterr(err, GM_E_ARG, "%s backend: option '%s' is empty", backend,
              opt);
    return GM_ERR;
  }
  if (!(h->st = calloc(1, sizeof *h->st))) {
    gm_seterr(err, GM_E_NOMEM, "out of memory");
    return GM_ERR;
  }
  /* a list, or one bracketed host (as a URL spells a v6 host with a port) */
  if (strcmp(opt, "hosts") == 0 || strchr(list, ',') ||
      (*list == '[' && strchr(list, ']')))
    return split(h, list, backend, opt, port, err);
  if (!(h->hosts[0] = strdup(list))) {
    gm_seterr(err, GM_E_NOMEM, "out of memory");
    return GM_ERR;
  }
  h->ports[0] = port;
  h->n = 1;
  return GM_OK;
}

void gm_hosts_free(gm_hosts *h) {
  for (unsigned i = 0; i < h->n; i++) free(h->hosts[i]);
  free(h->st);
  memset(h, 0, sizeof *h);
}

/* Records host i as the one an open reached (the list moves to it). */
static void opened(const gm_hosts *h, unsigned i, int64_t now) {
  gm_hoststate *st = h->st;
  unsigned was = atomic_exchange(&st->next, i);
  if (i != 0 && (was == 0 || now >= atomic_load(&st->head_at)))
    atomic_store(&st->head_at, now + HEAD_AGAIN_NS);
  atomic_store(&st->in_use, i + 1);
}

int gm_hosts_open_ranked(const gm_hosts *h, gm_open_ranked open_one,
                         void *arg, gm_error *err) {
  gm_hoststate *st = h->st;
  int64_t now = gm_mono_ns();
  unsigned start = atomic_load(&st->next) % h->n, i = 0, best = 0;
  unsigned best_rank = UINT_MAX, rank = 0;
  int rc = GM_ERR;
  if (start != 0 && now >= atomic_load(&st->head_at)) start = 0;
  for (unsigned k = 0; k < h->n && rc != GM_OK; k++) {
    i = (start + k) % h->n;
    rank = UINT_MAX;
    rc = open_one(arg, i, h->n == 1, &rank, err);
    if (rc == GM_NOT && rank < best_rank) {
      best = i;
      best_rank = rank;
    }
    if (rc == GM_ERR && (err->code == GM_E_AUTH || err->code == GM_E_ROW ||
                         err->code == GM_E_ARG))
      return GM_ERR; /* the same on every host */
  }
  if (rc != GM_OK && best_rank != UINT_MAX)
    rc = open_one(arg, i = best, 1, &rank, err);
  if (rc != GM_OK) return GM_ERR;
  opened(h, i, now);
  return GM_OK;
}

/* gm_hosts_open's callback under gm_hosts_open_ranked: every host rank 0. */
typedef struct unranked {
  int (*open_one)(void *arg, unsigned i, gm_error *err);
  void *arg;
} unranked;

static int open_unranked(void *arg, unsigned i, int any, unsigned *rank,
                         gm_error *err) {
  const unranked *u = arg;
  (void)any;
  *rank = 0;
  return u->open_one(u->arg, i, err);
}

int gm_hosts_open(const gm_hosts *h, int (*open_one)(void *arg, unsigned i,
                                                     gm_error *err),
                  void *arg, gm_error *err) {
  unranked u = {open_one, arg};
  return gm_hosts_open_ranked(h, open_unranked, &u, err);
}

void gm_hosts_failed(const gm_hosts *h, unsigned i) {
  if (h->n < 2) return;
  unsigned want = i;
  if (atomic_compare_exchange_strong(&h->st->next, &want, (i + 1) % h->n) &&
      i == 0)
    atomic_store(&h->st->head_at, gm_mono_ns() + HEAD_AGAIN_NS);
}

int gm_put_host(char *buf, size_t len, const char *host, unsigned port,
                const char *after) {
  int v6 = strchr(host, ':') != NULL;
  return snprintf(buf, len, "%s%s%s:%u%s", v6 ? "[" : "", host, v6 ? "]" : "",
                  port, after);
}

size_t gm_hosts_put(const gm_hosts *h, char *buf, size_t len,
                    const char *after) {
  size_t o = 0;
  for (unsigned i = 0; i < h->n && o < len; i++)
    o += (size_t)gm_put_host(buf + o, len - o, h->hosts[i], h->ports[i],
                             i + 1 < h->n ? "," : "");
  if (o < len) o += (size_t)snprintf(buf + o, len - o, "%s", after);
  unsigned u = atomic_load(&h->st->in_use);
  if (h->n > 1 && u-- > 0 && o + 5 < len) {
    o += (size_t)snprintf(buf + o, len - o, " (on ");
    if (o < len)
      o += (size_t)gm_put_host(buf + o, len - o, h->hosts[u], h->ports[u],
                               ")");
  }
  return o;
}
