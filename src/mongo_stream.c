/*
 * mongo_stream.c: libmongoc sockets that another thread can end, for the
 * MongoDB backend (backends/mongo.c).
 *
 * The backend's interrupt must end a blocking call (the wake-up's getMore
 * above all) at once, from another thread, without blocking, and libmongoc
 * has no such call. So a client connects through a stream initiator of
 * ours: a plain socket stream (poll(2) with libmongoc's timeouts) whose
 * descriptors a gm_msocks lists under its mutex; gm_msocks_interrupt shuts
 * them down (shutdown(2), as the MySQL backend does with its socket), and
 * the call under way fails at once. TCP and Unix sockets; no TLS (a TLS
 * client keeps libmongoc's own streams).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "backend.h"
#include "mongo_stream.h"
#include "timeutil.h"

#define SOCK_STREAM_TYPE 0x474d /* none of libmongoc's MONGOC_STREAM_* */

typedef struct sock sock;

/* The sockets of one client. */
struct gm_msocks {
  pthread_mutex_t mu;   /* guards the list, each fd, interrupted */
  sock *socks;          /* the open sockets */
  int interrupted;      /* no new socket once interrupted */
};

struct sock {
  mongoc_stream_t s;    /* first: libmongoc holds a mongoc_stream_t * */
  int fd;               /* -1 once closed; written under set->mu */
  int timed_out;
  gm_msocks *set;
  sock *next;           /* set->socks, under set->mu */
};

static int64_t deadline(int32_t ms) {
  return ms < 0 ? -1 : gm_mono_ns() + (int64_t)ms * GM_NS_PER_MS;
}

/* Waits until fd is ready for ev or until end (-1: never): 0, or -1 with
 * errno (ETIMEDOUT, timed_out set). */
static int sock_wait(sock *k, short ev, int64_t end) {
  for (;;) {
    struct pollfd p = {k->fd, ev, 0};
    int64_t left = end < 0 ? -1 : (end - gm_mono_ns()) / GM_NS_PER_MS;
    int rc = poll(&p, 1, left < 0 ? (end < 0 ? -1 : 0) : (int)left);
    if (rc > 0) return 0;
    if (rc == 0) {
      k->timed_out = 1;
      errno = ETIMEDOUT;
      return -1;
    }
    if (errno != EINTR) return -1;
  }
}

/* Moves through iov: reads (at least min bytes, 1 when min is 0) or
 * writes (all) within ms. */
static ssize_t sock_io(sock *k, mongoc_iovec_t *iov, size_t n, size_t min,
                       int32_t ms, int rd) {
  int64_t end = deadline(ms);
  size_t done = 0, off = 0, need = min ? min : 1;
  k->timed_out = 0;
  for (size_t i = 0; i < n && (!rd || done < need);) {
    if (off == iov[i].iov_len) {
      i++, off = 0;
      continue;
    }
    char *at = (char *)iov[i].iov_base + off;
    ssize_t r = rd ? recv(k->fd, at, iov[i].iov_len - off, 0)
                   : send(k->fd, at, iov[i].iov_len - off, MSG_NOSIGNAL);
    if (r > 0) {
      done += (size_t)r, off += (size_t)r;
    } else if (r == 0) {
      errno = ECONNRESET; /* the server hung up, or interrupt */
      return -1;
    } else if (errno != EINTR && ((errno != EAGAIN && errno != EWOULDBLOCK) ||
                                  sock_wait(k, rd ? POLLIN : POLLOUT, end))) {
      return -1;
    }
  }
  return (ssize_t)done;
}

static ssize_t sock_readv(mongoc_stream_t *s, mongoc_iovec_t *iov, size_t n,
                          size_t min, int32_t ms) {
  return sock_io((sock *)s, iov, n, min, ms, 1);
}

static ssize_t sock_writev(mongoc_stream_t *s, mongoc_iovec_t *iov, size_t n,
                           int32_t ms) {
  return sock_io((sock *)s, iov, n, 0, ms, 0);
}

static int sock_close(mongoc_stream_t *s) {
  sock *k = (sock *)s;
  pthread_mutex_lock(&k->set->mu);
  int fd = k->fd;
  k->fd = -1; /* interrupt never reaches a reused descriptor */
  pthread_mutex_unlock(&k->set->mu);
  return fd >= 0 ? close(fd) : 0;
}

static void sock_destroy(mongoc_stream_t *s) {
  sock *k = (sock *)s;
  sock_close(s);
  pthread_mutex_lock(&k->set->mu);
  for (sock **p = &k->set->socks; *p; p = &(*p)->next)
    if (*p == k) {
      *p = k->next;
      break;
    }
  pthread_mutex_unlock(&k->set->mu);
  free(k);
}

static int sock_flush(mongoc_stream_t *s) { return (void)s, 0; }

static int sock_setsockopt(mongoc_stream_t *s, int level, int name, void *v,
                           mongoc_socklen_t len) {
  return setsockopt(((sock *)s)->fd, level, name, v, len);
}

/* Whether the server hung up an idle socket. */
static bool sock_check_closed(mongoc_stream_t *s) {
  sock *k = (sock *)s;
  struct pollfd p = {k->fd, POLLIN, 0};
  char ch;
  if (k->fd < 0) return true;
  if (poll(&p, 1, 0) == 0) return false;
  return recv(k->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
}

static ssize_t sock_poll(mongoc_stream_poll_t *ss, size_t n, int32_t ms) {
  struct pollfd *p = calloc(n ? n : 1, sizeof *p);
  if (!p) return -1;
  for (size_t i = 0; i < n; i++)
    p[i] = (struct pollfd){((sock *)ss[i].stream)->fd, (short)ss[i].events, 0};
  int rc = poll(p, n, ms);
  for (size_t i = 0; i < n; i++) ss[i].revents = p[i].revents;
  free(p);
  return rc;
}

static bool sock_timed_out(mongoc_stream_t *s) {
  return ((sock *)s)->timed_out;
}

static bool sock_should_retry(mongoc_stream_t *s) { return (void)s, false; }

/* A connected non-blocking socket to a, or -1. */
static int dial_addr(int family, const struct sockaddr *a, socklen_t len,
                     int32_t ms) {
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int e = 0, one = 1;
  socklen_t elen = sizeof e;
  struct pollfd p = {fd, POLLOUT, 0};
  if (fd < 0) return -1;
  if (connect(fd, a, len) != 0 &&
      (errno != EINPROGRESS || poll(&p, 1, ms) != 1 ||
       getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0 || e != 0)) {
    close(fd);
    return -1;
  }
  if (family != AF_UNIX) {
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  }
  return fd;
}

static int dial(const mongoc_host_list_t *h, int32_t ms) {
  if (h->family == AF_UNIX) {
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    if (gm_strlcpy(un.sun_path, h->host, sizeof un.sun_path)) return -1;
    return dial_addr(AF_UNIX, (struct sockaddr *)&un, sizeof un, ms);
  }
  struct addrinfo hints = {.ai_family = h->family, .ai_socktype = SOCK_STREAM};
  struct addrinfo *ai = NULL;
  char port[8];
  snprintf(port, sizeof port, "%u", (unsigned)h->port);
  if (getaddrinfo(h->host, port, &hints, &ai) != 0) return -1;
  int fd = -1;
  for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next)
    fd = dial_addr(a->ai_family, a->ai_addr, a->ai_addrlen, ms);
  freeaddrinfo(ai);
  return fd;
}

/* libmongoc's stream initiator, for every socket of set's client. */
static mongoc_stream_t *initiator(const mongoc_uri_t *uri,
                                  const mongoc_host_list_t *h, void *set,
                                  bson_error_t *e) {
  gm_msocks *c = set;
  sock *k = calloc(1, sizeof *k);
  int fd = k ? dial(h, mongoc_uri_get_option_as_int32(
                           uri, MONGOC_URI_CONNECTTIMEOUTMS, 10000))
             : -1;
  if (fd >= 0) {
    k->s = (mongoc_stream_t){
        .type = SOCK_STREAM_TYPE, .destroy = sock_destroy,
        .close = sock_close, .flush = sock_flush, .writev = sock_writev,
        .readv = sock_readv, .setsockopt = sock_setsockopt,
        .check_closed = sock_check_closed, .poll = sock_poll,
        .failed = sock_destroy, .timed_out = sock_timed_out,
        .should_retry = sock_should_retry};
    k->fd = fd;
    k->set = c;
    pthread_mutex_lock(&c->mu);
    int ok = !c->interrupted;
    if (ok) k->next = c->socks, c->socks = k;
    pthread_mutex_unlock(&c->mu);
    if (ok) return &k->s;
    close(fd);
  }
  free(k);
  bson_set_error(e, MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_CONNECT,
                 "Failed to connect to target host: %s", h->host_and_port);
  return NULL;
}

gm_msocks *gm_msocks_new(void) {
  gm_msocks *set = calloc(1, sizeof *set);
  if (set) pthread_mutex_init(&set->mu, NULL);
  return set;
}

void gm_msocks_attach(gm_msocks *set, mongoc_client_t *client) {
  mongoc_client_set_stream_initiator(client, initiator, set);
}

void gm_msocks_interrupt(gm_msocks *set) {
  pthread_mutex_lock(&set->mu);
  set->interrupted = 1;
  for (sock *k = set->socks; k; k = k->next)
    if (k->fd >= 0) shutdown(k->fd, SHUT_RDWR);
  pthread_mutex_unlock(&set->mu);
}

void gm_msocks_free(gm_msocks *set) {
  if (!set) return;
  pthread_mutex_destroy(&set->mu);
  free(set);
}
