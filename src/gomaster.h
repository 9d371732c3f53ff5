/*
 * gomaster.h: master election through a lease on a shared database.
 *
 * The public C API. It needs no Lua: the Lua module (src/lgomaster.c) is one
 * client of it. Every function that can fail returns GM_OK / GM_ERR (or NULL)
 * and fills a gm_error; no function prints, exits or aborts on bad input.
 *
 * Threads: one background thread per backend object runs the elections of
 * every elector made on it. All gm_elector_* functions may be called from any
 * thread of the process that made the elector; gm_elector_is_master and
 * gm_elector_token are lock-free.
 */
#ifndef GOMASTER_H
#define GOMASTER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GM_VERSION "0.1.0"

enum { GM_OK = 0, GM_ERR = -1, GM_NOT = 1 };

/* Error codes carried in gm_error.code. */
enum {
  GM_E_NONE = 0,
  GM_E_ARG,       /* a bad option or value: the message names the field */
  GM_E_URL,       /* a malformed URL */
  GM_E_BACKEND,   /* unknown backend or backend not built in */
  GM_E_CONNECT,   /* could not reach or open the database */
  GM_E_AUTH,      /* the database refused the credentials */
  GM_E_DB,        /* a statement failed */
  GM_E_STATE,     /* call not allowed in this state (closed, forked) */
  GM_E_NOMEM,
  GM_E_ROW,       /* a lock's row that cannot be read or granted (a bad
                   * value, an operator's edit): the message names the
                   * column and the lock; the connection is fine */
  GM_E_CONFLICT,  /* a lost race: another node's write came first (a
                   * duplicate key, a certification failure). Never an
                   * error to report: the core takes it as GM_NOT */
  GM_E_BUSY       /* the server refuses connections: too many (MySQL
                   * 1040, PostgreSQL 53300, Redis maxclients, MongoDB's
                   * net.maxIncomingConnections). Said once
                   * until a success; the node backs off (timeutil.h) */
};

/* The defaults, exported once (the Lua binding gives them as
 * core.DEFAULT_BACKEND, core.MAX_SECONDS and core.timings()). */
#define GM_DEFAULT_BACKEND "sqlite:///tmp/gomaster.db"
#define GM_MAX_SECONDS 86400 /* the longest timing gm_config_resolve takes */

#define GM_ERRMSG_MAX 256
typedef struct gm_error {
  int code;
  char msg[GM_ERRMSG_MAX]; /* never contains a password */
} gm_error;

#define GM_ID_MAX 128      /* node ids and versions, bytes with the NUL */
#define GM_RESULT_MAX 256  /* a one-time task's result, bytes with the NUL */
#define GM_NAME_MAX 192    /* lock names, bytes with the NUL */

/* One option of a backend: a key and a string value. */
typedef struct gm_kv {
  const char *key;
  const char *value;
} gm_kv;

typedef struct gm_backend gm_backend;
typedef struct gm_elector gm_elector;

/* ---- backends ---------------------------------------------------------- */

/* Names of the backends built in, NULL-terminated, static. */
const char *const *gm_backend_names(void);

/* Makes a backend object from a URL such as "sqlite:///var/lib/app/gm.db" or
 * "mysql://user:pass@127.0.0.1:3306/db?table=locks". Validates the options but
 * does no I/O. Freed by gm_backend_unref. */
gm_backend *gm_backend_new_url(const char *url, gm_error *err);

/* The same from a backend type ("sqlite", "mysql", "mongodb") and options. */
gm_backend *gm_backend_new(const char *type, const gm_kv *opts, size_t nopts,
                           gm_error *err);

/* Opens a connection, creates the table if missing, closes it again: reports
 * now what the background thread would otherwise report later. */
int gm_backend_check(gm_backend *b, gm_error *err);

/* A description safe to print: type and address, never a password. */
const char *gm_backend_describe(const gm_backend *b);

/* A lock's row as read from the database, with its completion record. */
typedef struct gm_lock_info {
  int exists;                 /* 0: no row for this lock */
  int live;                   /* held, and the lease has not ended */
  char owner[GM_ID_MAX];      /* "" when released */
  char version[GM_ID_MAX];
  uint64_t token;
  double acquired_at, renewed_at, expires_at, now; /* s, database clock */
  double done_at;             /* 0: the one-time task is not done */
  char done_by[GM_ID_MAX];
  uint64_t done_token;
  char result[GM_RESULT_MAX];
} gm_lock_info;

/* These three open a connection on the caller's thread, make one call and
 * close it: for tools and one-time tasks, not for hot paths. */

/* Reads lock `name`. */
int gm_backend_read(gm_backend *b, const char *name, gm_lock_info *out,
                    gm_error *err);

/* Records that the one-time task `name` is done, where `owner` holds the
 * lock with `token` (and, unless instance is 0, the grant is the one of
 * elector instance `instance`: gm_elector_instance): GM_OK, GM_NOT (not
 * the holder), GM_ERR. */
int gm_backend_complete(gm_backend *b, const char *name, const char *owner,
                        uint64_t instance, uint64_t token, const char *result,
                        gm_error *err);

/* Frees lock `name` whoever holds it, with a new token: GM_OK and *out the
 * row after, GM_NOT when there is no such lock, GM_ERR. The old holder's
 * next renewal fails; nobody is granted the lock before the old grant's
 * lease would have ended. */
int gm_backend_force_release(gm_backend *b, const char *name,
                             gm_lock_info *out, gm_error *err);
/* The same, but free at once: breaks the guarantee (the old holder may
 * believe it is master until its renew deadline). */
int gm_backend_force_release_now(gm_backend *b, const char *name,
                                 gm_lock_info *out, gm_error *err);

/* Reference counting: an elector holds a reference on its backend. The last
 * unref stops the thread and closes the connection: it joins a thread that
 * ends within 20 ms; one still inside a database call then (a hung
 * database) has that call interrupted where the backend can (a socket shut
 * down) and frees the backend itself when done. Never blocks longer. */
void gm_backend_ref(gm_backend *b);
void gm_backend_unref(gm_backend *b);

/* ---- electors ---------------------------------------------------------- */

/* The default timings, the one place they are written: a lease of
 * GM_DEFAULT_LEASE seconds, and heartbeat, renew deadline and retry from
 * the lease. gm_config_resolve applies them; a binding or tool that shows
 * the defaults calls it rather than computing them again. */
#define GM_DEFAULT_LEASE 5.0
#define GM_DEFAULT_HEARTBEAT(lease) ((lease) / 5)
#define GM_DEFAULT_DEADLINE(lease) ((lease) * 3 / 5)
#define GM_DEFAULT_RETRY(lease) ((lease) / 5)

typedef struct gm_config {
  const char *name;     /* lock name; NULL: "default" */
  const char *id;       /* node id; NULL: "hostname:pid:random" */
  const char *version;  /* application version; NULL: "" */
  double lease;          /* seconds; 0: GM_DEFAULT_LEASE (5) */
  double heartbeat;      /* seconds; 0: lease/5 */
  double renew_deadline; /* seconds; 0: 3*lease/5 */
  double retry;          /* seconds; 0: lease/5 */
} gm_config;

/* Checks the rules 0 < heartbeat < renew_deadline < lease, retry > 0 and fills
 * the timings not given. GM_ERR names the field that breaks a rule. */
int gm_config_resolve(gm_config *cfg, gm_error *err);

/* Makes an elector for one lock on backend b (takes a reference on b).
 * Freed by gm_elector_free. */
gm_elector *gm_elector_new(gm_backend *b, const gm_config *cfg, gm_error *err);

/* Starts campaigning; non-blocking. Starts the backend thread if needed. */
int gm_elector_start(gm_elector *e, gm_error *err);

/* Stops campaigning: is_master turns false and stop("stopped") is queued at
 * once; a master's release runs on the thread, waited for at most 20 ms
 * (and not at all while the thread is inside another call): whatever the
 * database does, this returns within that. Idempotent. gm_elector_start
 * may follow at once. */
void gm_elector_stop(gm_elector *e);

/* Stops as gm_elector_stop but with reason "closed". */
void gm_elector_close(gm_elector *e);

/* Stops as gm_elector_close and frees the elector; queued events are
 * dropped. Does not wait again for a release under way: the thread keeps
 * what it still needs and frees it when done. */
void gm_elector_free(gm_elector *e);

/* True only inside [grant, send time of the last successful renewal + renew
 * deadline) on CLOCK_MONOTONIC. One atomic load and one clock read. */
int gm_elector_is_master(const gm_elector *e);

/* The fencing token of the current grant, 0 when not master. */
uint64_t gm_elector_token(const gm_elector *e);

const char *gm_elector_id(const gm_elector *e);
/* The elector's instance key: random, in [1, 2^63), new in a forked child.
 * A grant belongs to this key, not to the id (two electors may share an
 * id). */
uint64_t gm_elector_instance(const gm_elector *e);
const char *gm_elector_name(const gm_elector *e);

/* Monotonic deadline in ns while master (0 otherwise): a caller of
 * gm_elector_next_event should poll no later than this. */
int64_t gm_elector_deadline(const gm_elector *e);

/* An fd that becomes readable when events are queued (created on first call,
 * per process). -1 with err on failure. */
int gm_elector_fd(gm_elector *e, gm_error *err);

/* ---- events ------------------------------------------------------------ */

typedef enum gm_event_type {
  GM_EV_START = 1, /* became master: token */
  GM_EV_STOP,      /* no longer master: reason */
  GM_EV_LEADER,    /* the holder changed (another node, or free): leader */
  GM_EV_ERROR      /* a backend failure: message */
} gm_event_type;

typedef enum gm_stop_reason {
  GM_STOP_LOST = 1, /* another node holds the lock */
  GM_STOP_DEADLINE, /* no successful renewal within the renew deadline */
  GM_STOP_STOPPED,  /* gm_elector_stop */
  GM_STOP_CLOSED    /* gm_elector_free */
} gm_stop_reason;

const char *gm_stop_reason_name(gm_stop_reason r);

/* The holder of a lock as the database last showed it. Times are seconds on
 * the database's clock (for SQLite: since the host booted). */
typedef struct gm_leader {
  int held;                   /* 0: the lock is free */
  char id[GM_ID_MAX];
  char version[GM_ID_MAX];
  uint64_t token;
  double acquired_at, renewed_at, expires_at;
  double expires_in;          /* seconds of lease left when read */
} gm_leader;

typedef struct gm_event {
  gm_event_type type;
  uint64_t token;             /* START */
  gm_stop_reason reason;      /* STOP */
  gm_leader leader;           /* LEADER */
  char message[GM_ERRMSG_MAX];/* ERROR */
  int code;                   /* ERROR: the gm_error.code */
} gm_event;

/* Pops the oldest event: GM_OK with *ev filled, GM_NOT when none. Also queues
 * stop("deadline") itself when the deadline passed while the thread hangs. */
int gm_elector_next_event(gm_elector *e, gm_event *ev);

/* ---- status ------------------------------------------------------------ */

/* The upper bounds (seconds) of the renewal round-trip histogram. */
#define GM_RENEW_BUCKETS 13
extern const double gm_renew_bounds[GM_RENEW_BUCKETS];

typedef struct gm_status {
  int is_master;
  int running;
  uint64_t token;
  gm_leader leader;
  char last_error[GM_ERRMSG_MAX]; /* "" once a call worked again */
  double last_error_at; /* CLOCK_REALTIME seconds of the last error; 0: none */
  uint64_t acquires, renewals, observes, releases, errors, grants, losses;
  /* Metrics: the stops of this elector's grants by reason (indexed by
   * gm_stop_reason), and the round trips of its renewals as a histogram:
   * renew_le[i] counts those that took at most gm_renew_bounds[i] seconds
   * (cumulative, as Prometheus wants them); renew_count and renew_sum (s)
   * cover every renewal, the slowest included. */
  uint64_t stops[4];
  uint64_t renew_le[GM_RENEW_BUCKETS];
  uint64_t renew_count;
  double renew_sum;
  /* Seconds left until the master's renew deadline (0 when not master). */
  double deadline_in;
  /* The backend as its describe() says now: for a MySQL host list, the
   * host in use. */
  char backend[256];
} gm_status;

void gm_elector_status(gm_elector *e, gm_status *st);

#ifdef __cplusplus
}
#endif
#endif
