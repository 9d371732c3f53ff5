/*
 * backend.h: the contract between the election core and a database backend.
 *
 * A backend is one file in backends/ that fills a gm_backend_ops and adds one
 * line to the table in src/registry.c. Once an ABI was released, appended
 * fields go under a new ABI number, as SQLite's VFS does; none was yet, so
 * ABI 1 still takes fields, at the end.
 *
 * Threads: parse/free_cfg run on the caller's thread; every other function
 * runs on one background thread per connection, which owns the connection.
 * Functions may block, but never longer than the timeouts the backend sets on
 * its connection (keep them well under the renew deadline).
 *
 * Clocks: every time a backend reports is in microseconds on the database's
 * own clock (MySQL UTC_TIMESTAMP(6), MongoDB $$NOW, SQLite the host's
 * CLOCK_BOOTTIME). No client clock is ever written or compared there.
 *
 * Return codes:
 *   GM_OK   the call took effect (for acquire/renew/release: the one
 *           conditional write changed the row); *out is filled.
 *   GM_NOT  the conditional write did not take effect (someone else holds the
 *           lock, the token moved on). Not an error; *out may be unfilled.
 *   GM_ERR  a failure; err is filled (never with a password), its code
 *           the class: GM_E_CONNECT (the server cannot be reached, or
 *           refuses connections), GM_E_AUTH (credentials refused), GM_E_DB
 *           (a statement failed), GM_E_ROW (a row that cannot be read or
 *           granted), GM_E_ARG (a bad option). The core then closes the
 *           connection and opens a new one later, with its backoff
 *           (timeutil.h).
 *   Conflict: a lost race (a racing insert's duplicate key, a cluster's
 *           certification failure) is GM_NOT, or GM_ERR with code
 *           GM_E_CONFLICT, which the core takes as GM_NOT: never reported
 *           through on_error, the connection kept. From open, GM_E_CONFLICT
 *           is a set-up that lost a race with another process (SQLite
 *           switching a new file to WAL): the core opens again 10 ms later,
 *           for up to 5 s, so no backend sleeps.
 */
#ifndef GOMASTER_BACKEND_H
#define GOMASTER_BACKEND_H

#include "gomaster.h"

#define GM_BACKEND_ABI 1

/* One lock's row/document as read or written, plus the database's now. */
typedef struct gm_row {
  int exists;               /* 0: no row for this lock */
  char owner[GM_ID_MAX];    /* "" when released */
  char version[GM_ID_MAX];
  uint64_t token;
  int64_t acquired_at;      /* µs, database clock */
  int64_t renewed_at;
  int64_t expires_at;
  int64_t now;              /* µs, database clock, read by the same call */
  /* The completion record of a one-time task run under this lock:
   * done_at == 0 while the task is not done. */
  int64_t done_at;          /* µs since the UNIX epoch (SQLite: the host's
                             * wall clock; others: the database's) */
  char done_by[GM_ID_MAX];  /* the node that ran it */
  uint64_t done_token;      /* the token it held */
  char result[GM_RESULT_MAX];
  /* The holder's liveness handle, as the backend wrote it with the
   * grant (SQLite: which byte of the lock file the holder's process keeps
   * locked); -1 when there is none or it cannot be checked from here. */
  int64_t holder;
  /* The instance key of the elector that was granted the row (see
   * gm_acquire_req.instance); 0 in a row written before it existed. */
  uint64_t instance;
} gm_row;

/* A request to take a lock. The write is conditional on what the core saw:
 *   expect_exists == 0: create the row only if there is none
 *                       (a racing insert that loses is GM_NOT);
 *   expect_exists == 1: update only if the row's token == expect_token and
 *                       (owner == '' or expires_at <= database now).
 * The new token is max(row token, min_token) + 1 (min_token + 1 on insert),
 * so tokens grow by one per grant and stay above every token the node saw. */
typedef struct gm_acquire_req {
  const char *name;
  const char *owner;
  const char *version;
  int64_t lease_us;
  int expect_exists;
  uint64_t expect_token;
  uint64_t min_token;
  /* The elector instance taking it: a random key in [1, 2^63), new
   * for every elector (and in a forked child). Written beside owner; every
   * later conditional write of the grant (renew, release, complete) matches
   * owner, instance and token, so two electors that share an id never
   * write each other's grant. */
  uint64_t instance;
} gm_acquire_req;

/* The new token of a grant, the one rule every backend writes:
 * max(row token, min_token) + 1, where the row's token is expect_token (the
 * write is conditional on it) or there is no row. Backends write this
 * value; none computes its own. */
static inline uint64_t gm_new_token(const gm_acquire_req *r) {
  uint64_t base = r->min_token;
  if (r->expect_exists && r->expect_token > base) base = r->expect_token;
  return base + 1;
}

/* One lock of a batch renewal. The core fills the first four
 * fields; the backend sets rc to GM_OK (renewed; the three times are
 * filled, database clock) or GM_NOT (not ours any more). */
typedef struct gm_renew_req {
  const char *name;
  const char *owner;
  uint64_t token;
  int64_t lease_us;
  int rc;
  int64_t renewed_at, expires_at, now;
  uint64_t instance; /* filled by the core, matched with owner */
} gm_renew_req;

typedef struct gm_backend_ops {
  int abi;                  /* GM_BACKEND_ABI */
  const char *name;         /* the URL scheme: "sqlite", "mysql", "mongodb" */
  /* 0: the core splits URLs into user, password, host, port, database (or
   * path for "scheme://path") and the query's keys, percent-decoded, plus
   * "url". 1: the backend gets only "url" and the query's keys. */
  int url_raw;

  /* Validates options (keys and values as strings) into a private config.
   * Unknown keys are refused naming the key. Key "url" holds the whole URL
   * when the backend was made from one. No I/O. */
  int (*parse)(const gm_kv *opts, size_t n, void **cfg, gm_error *err);
  void (*free_cfg)(void *cfg);
  /* Writes a description without secrets into buf. */
  void (*describe)(const void *cfg, char *buf, size_t len);

  /* Connects, sets timeouts, creates the table if missing. */
  int (*open)(const void *cfg, void **conn, gm_error *err);
  void (*close)(void *conn);

  /* Every string the core passes below fits its field with its NUL, as
   * the core checked: a lock name GM_NAME_MAX, an owner or version
   * GM_ID_MAX, a result GM_RESULT_MAX (the columns are that wide). */

  /* Reads the row of lock `name` and the database's now. GM_OK always
   * fills out->now; out->exists says whether the row is there. */
  int (*observe)(void *conn, const char *name, gm_row *out, gm_error *err);

  /* One conditional write each; see gm_acquire_req. On GM_OK *out is the
   * row as written (new token and times) with out->now. */
  int (*acquire)(void *conn, const gm_acquire_req *req, gm_row *out,
                 gm_error *err);

  /* Extends the lease to database now + lease_us where owner, instance and
   * token are ours (whether or not it expired meanwhile: nobody else took
   * it). On GM_OK out->renewed_at, expires_at and now are filled; the rest
   * of *out need not be (the core knows its grant), as with renew_many. */
  int (*renew)(void *conn, const char *name, const char *owner,
               uint64_t instance, uint64_t token, int64_t lease_us,
               gm_row *out, gm_error *err);

  /* Where owner, instance and token are ours: owner = '', expires_at = now.
   * The row stays, so the token keeps growing. */
  int (*release)(void *conn, const char *name, const char *owner,
                 uint64_t instance, uint64_t token, gm_error *err);

  /* ---- one-time tasks and operators ---- */

  /* Where owner and token are ours (and instance, unless it is 0: a tool
   * that knows only the id): done_at = database now, done_by = owner,
   * done_token = token, result = result (at most GM_RESULT_MAX-1 bytes).
   * GM_NOT when the lock is not ours. The lock itself is unchanged. */
  int (*complete)(void *conn, const char *name, const char *owner,
                  uint64_t instance, uint64_t token, const char *result,
                  gm_error *err);

  /* An operator's release, whoever holds the lock: owner = '', token =
   * token + 1 (so the old holder's next renewal fails and it stops), and
   * expires_at kept where it is still ahead of database now (the old
   * grant's lease: nobody is granted the lock before the old holder's
   * belief has ended), else now. now != 0: expires_at = database now, free
   * at once (breaks the guarantee: the old holder may believe it is master
   * until its deadline). GM_NOT when there is no row, or its token is
   * INT64_MAX (no token past it). On GM_OK *out is the row after it. */
  int (*force_release)(void *conn, const char *name, int now, gm_row *out,
                       gm_error *err);

  /* ---- speed. Each may be NULL (0 for poll_us). ---- */

  /* Renews the n locks of reqs as renew does each, in as few statements
   * as the backend can while still learning each lock's own result (where
   * a write cannot tell which rows it matched, renew them one by one).
   * GM_OK: every reqs[i].rc is set. GM_NOT: the batch could not tell each
   * lock's result (a write that matched fewer rows than asked): the core
   * renews each with renew, the one fallback (a renewal is safe to
   * repeat). GM_ERR: none may be trusted; the core treats it as a failed
   * renewal of all. NULL: the core calls renew. */
  int (*renew_many)(void *conn, gm_renew_req *reqs, size_t n, gm_error *err);

  /* GM_OK only when the backend knows for certain that the process behind
   * handle `holder` (gm_row.holder) is gone, so that it neither renews nor
   * believes it is master; GM_NOT when it lives or nobody can tell. No
   * database statement: the core asks this every poll_us. */
  int (*holder_gone)(void *conn, int64_t holder, gm_error *err);

  /* As acquire with req->expect_exists == 1, except that the write also
   * takes a live lease where the row's holder is still `holder`, which
   * holder_gone has just reported gone: the process behind it neither
   * renews nor believes it is master. Still conditional on expect_token.
   * Needed when holder_gone is set. */
  int (*acquire_dead)(void *conn, const gm_acquire_req *req, int64_t holder,
                      gm_row *out, gm_error *err);

  /* A cheap check between observes: GM_OK when some lock's row may have
   * changed since the last call on this connection (the core then has its
   * followers observe at once), GM_NOT when none did, GM_ERR as GM_OK,
   * except that err's message goes to a follower's on_error (once, until
   * the message differs) and the connection is kept. */
  int (*changed)(void *conn, gm_error *err);

  /* How often (µs) the core calls changed and holder_gone while the thread
   * has followers; 0: never. */
  int64_t poll_us;

  /* ---- May be NULL. ---- */

  /* Makes a blocking call on conn, running on the backend's thread right
   * now, end soon (shutdown(2) of the socket, sqlite3_interrupt): called
   * from another thread, with the core's lock held, so it must only poke
   * and never block. conn stays valid during the call; the call running
   * may then fail with GM_ERR, and the core closes conn as after any
   * failure. */
  void (*interrupt)(void *conn);

  /* Blocks on conn until lock `name` may have changed (its holder let go,
   * its row was written: GM_OK), or timeout_us passed with no sign of a
   * change (GM_NOT), or the connection failed (GM_ERR: the core closes it
   * and opens another later, with its backoff; nothing is reported). conn
   * is the election connection where watch_shared allows (below), else a
   * connection of its own that the core opens for this alone, lazily
   * (when a follower waits on a lock another node holds), and closes when
   * no follower waits; the core runs the thread, chooses the lock, and
   * ends a watch at once with interrupt (required with watch). A GM_OK
   * that came without a change costs one read per follower: the core does
   * not watch that lock again until a follower read it anew. A GM_NOT
   * long before the timeout says "cannot watch this lock from here" (MySQL
   * under Galera): not watched again until a follower read it anew either,
   * so the followers poll. NULL: no wake-up (or changed/poll_us). No
   * backend starts a thread or sleeps.
   * row (NULL: not wanted): a backend that reads lock `name`'s row as the
   * watch ends, in the same statement, fills it as observe would, with
   * row->now (never 0 then) the database's now after the wait; one that
   * does not leaves it as it was (the core zeroes it: now == 0 says "not
   * filled"). A watch that ended by its timeout with a row is then the
   * follower's read at the lease's end: one statement per lease. */
  int (*watch)(void *conn, const char *name, int64_t timeout_us,
               gm_row *row, gm_error *err);
  /* Opens the wake-up connection: as open, but with reads that outlast a
   * long watch. NULL: open. */
  int (*open_watch)(const void *cfg, void **conn, gm_error *err);
  /* 1: watch may also block on the election connection (from open), for
   * as long as timeout_us says (the backend stretches that one
   * statement's read timeout, or bounds the wait below it and returns
   * GM_NOT: the core calls again). Then a process whose followers all
   * wait on one lock, and that holds none, uses that one connection: no
   * wake-up thread, no second connection. interrupt must then also end a
   * watch that has not begun yet (a flag or a shut socket that the watch
   * finds), since the core may poke just before the watch blocks; the
   * core then closes that connection and opens another at once, with no
   * backoff and nothing reported (an interrupt may leave it unusable).
   * 0: the wake-up thread and its own connection, as above. */
  int watch_shared;
  /* 1: a watch given row (the election connection's, watch_shared) that
   * ends by a wake-up (GM_OK) and fills the row wakes this watcher alone:
   * the backend keeps the wake-up for it (MySQL: the user lock) where
   * the row looks free (no row, no owner, or its lease over), so the
   * other watchers stay blocked; acquire on that connection turns it
   * into the new master's (or lets it go when the write is refused), and
   * the next observe or watch lets it go. A row that does not look free
   * lets it go at once (the next watcher wakes). The core then judges
   * that row at once (no spread of the followers' reads: one writes per
   * handover). 0: a wake-up may wake every watcher. */
  int watch_one;
  /* 1: a watch also ends when the holder's session ends (MySQL: its user
   * lock goes with its connection), so a crashed holder wakes it: a
   * follower whose lock it covers reads only when the lease it saw ends,
   * and when woken. 0: it tells of releases only (Redis's stream,
   * MongoDB's events): followers still read each retry, so that a holder
   * that crashed has its last renewal read less than L - D after it and
   * is taken a lease after that renewal (point 2's short way), not a
   * lease after a follower first saw it at the lease's end. */
  int watch_crash;
  /* Set by a backend whose watch may end by its own time (GM_NOT,
   * nothing changed) before timeout_us: the most it may end early, in µs
   * (Redis: its server ends a blocked XREAD on its timer tick, up to a
   * tick late, so the backend blocks a tick less than asked). 0: a watch
   * ends at its timeout or after. The core, watching on the election
   * connection: a watch that ended by its time less than this plus 20 ms
   * (the shortest watch worth a statement, which also covers the
   * thread's scheduling) before the read due is that read's: no second
   * watch for the moments left; it begins no watch shorter than that
   * either, and takes a watch that ended early within this for no
   * "cannot watch from here". One that ended earlier than this allows
   * (at 0 too: no other database's margin applies) is watched again for
   * the moments left: the backend said its watch lasts, so a release in
   * them still wakes the follower at once. */
  int64_t watch_early_us;
} gm_backend_ops;

/* Makes a backend object from an ops table of the caller's own (a backend
 * that is not in the registry, such as a test's scripted one). ops must
 * outlive the backend. The same as gm_backend_new otherwise. */
gm_backend *gm_backend_new_ops(const gm_backend_ops *ops, const gm_kv *opts,
                               size_t n, gm_error *err);

/* Registered backends (src/registry.c): NULL with err filled when there is
 * no such backend or it cannot be loaded. */
const gm_backend_ops *gm_backend_find(const char *name, gm_error *err);

/* Helpers for backends (src/util.c). */
void gm_seterr(gm_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* err: "out of memory" (GM_E_NOMEM); returns GM_ERR. */
int gm_nomem(gm_error *err);
/* Looks up key in opts; NULL if absent. */
const char *gm_kv_get(const gm_kv *opts, size_t n, const char *key);
/* GM_ERR naming the first key of opts not in the NULL-terminated list. */
int gm_kv_check_keys(const gm_kv *opts, size_t n, const char *const *allowed,
                     const char *backend, gm_error *err);
/* Parses a duration in seconds ("2", "0.5") into µs; GM_ERR names key. */
int gm_kv_seconds(const gm_kv *opts, size_t n, const char *key,
                  int64_t dflt_us, int64_t *out_us, gm_error *err);
/* Table/collection names: [A-Za-z_][A-Za-z0-9_]{0,63}. GM_ERR names field. */
int gm_check_identifier(const char *field, const char *value, gm_error *err);
/* Copies msg (NULL: "(no message)") into dst of size len, each occurrence
 * of secret (a password; NULL or "": none) as "***", control characters as
 * spaces. Short passwords too: a mangled message beats a leaked secret.
 * dst may be msg. The one scrubbing of every backend. */
void gm_scrub(char *dst, size_t len, const char *msg, const char *secret);
/* The row as a grant or renewal wrote it (exists, owner, version, token,
 * times: renewed_at = now, expires_at = now + lease_us; holder -1, no
 * completion record, instance 0), for a backend whose write does not
 * return the row. The caller sets what else it wrote. */
void gm_row_written(gm_row *out, const char *owner, const char *version,
                    uint64_t token, int64_t acquired_at, int64_t now,
                    int64_t lease_us);
/* Copies src into dst of size n, always terminated; GM_ERR if it did not fit. */
int gm_strlcpy(char *dst, const char *src, size_t n);
/* A copy of opts[key] (or of dflt when absent; neither: *dst untouched) in
 * *dst, freed by the caller. GM_ERR only when out of memory. */
int gm_kv_dup(const gm_kv *opts, size_t n, const char *key, const char *dflt,
              char **dst, gm_error *err);
/* Frees a string holding a password (NULL: nothing), zeroed first. */
void gm_free_secret(char *s);
/* A whole number in [lo, hi] from opts[key] into *out, dflt when absent;
 * GM_ERR names the backend and the key. */
int gm_kv_int(const gm_kv *opts, size_t n, const char *key, long lo, long hi,
              int dflt, int *out, const char *backend, gm_error *err);
/* A row edited by hand that cannot be read: GM_ERR with GM_E_ROW (the
 * connection is fine), naming the lock, the table and the column. */
int gm_bad_column(gm_error *err, const char *backend, const char *lock,
                  const char *table, const char *column, const char *what);
/* The index in names (NULL-ended, any case) of opts[key] into *out, dflt
 * when absent; GM_ERR lists the names. */
int gm_kv_choice(const gm_kv *opts, size_t n, const char *key,
                 const char *const *names, int dflt, int *out,
                 const char *backend, gm_error *err);
/* GM_ERR (GM_E_ARG, "<backend>: <what> longer than max bytes") when s is. */
int gm_check_len(const char *backend, const char *what, const char *s,
                 size_t max, gm_error *err);

/* A backend's options as a table (luaposix's typed readers): each names
 * its key, how it is read, and the field of the config struct it fills
 * (off: offsetof). The value, or dflt when absent, is read by the gm_kv_*
 * reader of its kind, with its messages. */
typedef enum gm_opt_kind {
  GM_OPT_KNOWN,  /* allowed, read by the backend itself (host, url) */
  GM_OPT_STR,    /* char *: a copy (dflt NULL and absent: NULL) */
  GM_OPT_SECRET, /* the same, a password: zeroed when freed */
  GM_OPT_NAME,   /* the same, a table or database (gm_check_identifier) */
  GM_OPT_INT,    /* int in [lo, hi] */
  GM_OPT_US,     /* int64_t µs, from seconds (gm_kv_seconds) */
  GM_OPT_WHOLE_S, /* unsigned seconds rounded up: "0.5" is still a bound */
  GM_OPT_CHOICE, /* int: the index in names; -1 when absent */
} gm_opt_kind;

typedef struct gm_opt {
  const char *key; /* NULL ends a table */
  gm_opt_kind kind;
  size_t off;
  const char *dflt;
  long lo, hi;               /* GM_OPT_INT */
  const char *const *names;  /* GM_OPT_CHOICE */
  const char *required;      /* not NULL: absent is an error, "as in" this */
} gm_opt;

/* Reads opts into cfg by spec; GM_ERR names the first unknown key, or the
 * first option (in spec's order) missing or wrong. What it copied is
 * freed by gm_opts_free, also after GM_ERR. */
int gm_opts_read(const gm_opt *spec, const gm_kv *opts, size_t n, void *cfg,
                 const char *backend, gm_error *err);
void gm_opts_free(const gm_opt *spec, void *cfg);

#endif
