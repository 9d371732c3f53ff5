/*
 * sqlite.c: the embedded default backend, for processes on one host that
 * share one database file.
 *
 * The database clock is the host's CLOCK_BOOTTIME (µs): every process on the
 * host reads the same clock, and no wall-clock step moves it. Each row keeps
 * the boot id of the clock its times are on; a row written before a reboot is
 * treated as expired long ago. The clock is read just before each statement
 * runs; if the statement then waits for the write lock, the time it stored is
 * a little early, which only shortens the lease it grants.
 *
 * WAL lets followers read while the master writes; synchronous=FULL keeps a
 * granted token on disk, so tokens never repeat after a crash.
 *
 * Telling a crash from a pause. Each backend object keeps one byte of a
 * lock file beside the database ("<realpath>-gomaster-lock") locked with an
 * open file description lock (F_OFD_SETLK) from its first connection until
 * it is freed, which comes after every elector on it stopped. Each grant
 * records that byte and the file's inode in the row (`holder`). The kernel
 * drops the lock only when the holder's process is gone (or its backend
 * was freed, after it stopped believing it is master), so a follower that
 * finds the byte free (F_OFD_GETLK) may take the lock at once with a write
 * conditional on the token and holder it saw. A paused (SIGSTOPped)
 * holder keeps its lock: its lease and deadline cover it as before.
 *
 * Followers poll `PRAGMA data_version` (a read of the WAL index in shared
 * memory, no disk I/O) and the holder's byte every 20 ms, so a release or a
 * crash is seen within one poll instead of one retry.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "schema.h"

#define SLOT_BITS 20
#define SLOTS 65536 /* bytes of the lock file a backend object may take */

typedef struct {
  char *path;
  char table[72];
  int busy_ms;
  /* The lock file (see the top): made by the first open, closed by
   * sq_free_cfg or in a forked child. (mu) */
  pthread_mutex_t mu;
  int lock_fd;
  pid_t lock_pid;
  int64_t holder; /* (inode << SLOT_BITS) | byte, or -1 */
  /* The database's directory (see "Deleted files" below): made by the
   * first open, closed by sq_free_cfg or in a forked child. (mu) */
  int dir_fd;
  pid_t dir_pid;
  off_t set_base;   /* this database's region of the directory's bytes */
  int64_t lease_us; /* the longest lease granted through this object */
  /* The file sets this object's connections are on, or were on less than
   * a lease ago: their bytes stay locked. */
  struct {
    int64_t key;
    int conns;
    int64_t idle_since; /* boot µs when conns became 0 */
  } sets[8];
  int nsets;
} sq_cfg;

/* The files a connection has open: the database, -wal, -shm. */
enum { SET_DB, SET_WAL, SET_SHM, SET_N };
static const char *const set_suffix[SET_N] = {"", "-wal", "-shm"};

typedef struct {
  sq_cfg *cfg;
  sqlite3 *db;
  sqlite3_stmt *observe, *insert, *take, *renew, *release, *complete, *force;
  sqlite3_stmt *take_dead, *data_version;
  int64_t version; /* PRAGMA data_version at the last changed(); -1 */
  char boot_id[40];
  /* Identity of the files opened, from open on: have[i] == 0 when file i
   * was not there (an in-memory database, no WAL). */
  char *real; /* the database's absolute path; NULL: nothing to check */
  int have[SET_N];
  dev_t dev[SET_N];
  ino_t ino[SET_N];
  int64_t set_key;     /* this connection's file set, counted in cfg->sets */
  pid_t counted;       /* the process that counted set_key in cfg->sets */
  int64_t stale_since; /* boot µs when an older file set was first seen */
} sq_conn;

static void files_forget(sq_conn *s);

static const char *const sq_keys[] = {"url", "path", "table", "busy_timeout",
                                      NULL};

static int sq_parse(const gm_kv *kv, size_t n, void **out, gm_error *err) {
  if (gm_kv_check_keys(kv, n, sq_keys, "sqlite", err)) return GM_ERR;
  const char *path = gm_kv_get(kv, n, "path");
  if (!path || !*path) {
    gm_seterr(err, GM_E_ARG, "sqlite backend: option 'path' is required");
    return GM_ERR;
  }
  const char *table = gm_kv_get(kv, n, "table");
  if (!table) table = "gomaster_locks";
  if (gm_check_identifier("table", table, err)) return GM_ERR;
  int64_t busy_us;
  if (gm_kv_seconds(kv, n, "busy_timeout", 1000000, &busy_us, err))
    return GM_ERR;
  sq_cfg *c = calloc(1, sizeof *c);
  if (!c || !(c->path = strdup(path))) {
    free(c);
    return gm_nomem(err);
  }
  snprintf(c->table, sizeof c->table, "%s", table);
  c->busy_ms = (int)(busy_us / 1000);
  pthread_mutex_init(&c->mu, NULL);
  c->lock_fd = -1;
  c->holder = -1;
  c->dir_fd = -1;
  *out = c;
  return GM_OK;
}

static void sq_free_cfg(void *p) {
  sq_cfg *c = p;
  if (!c) return;
  if (c->lock_fd >= 0) close(c->lock_fd); /* the kernel drops our byte */
  if (c->dir_fd >= 0) close(c->dir_fd);   /* and our file-set bytes */
  pthread_mutex_destroy(&c->mu);
  free(c->path);
  free(c);
}

static void sq_describe(const void *p, char *buf, size_t len) {
  const sq_cfg *c = p;
  snprintf(buf, len, "sqlite://%s?table=%s", c->path, c->table);
}

static int64_t boot_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void read_boot_id(char *buf, size_t len) {
  FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
  buf[0] = '\0';
  if (f) {
    if (!fgets(buf, (int)len, f)) buf[0] = '\0';
    fclose(f);
  }
  buf[strcspn(buf, "\n")] = '\0';
  if (!buf[0]) snprintf(buf, len, "unknown");
}

static int db_err(sq_conn *s, const char *what, gm_error *err) {
  gm_seterr(err, GM_E_DB, "sqlite: %s: %s", what, sqlite3_errmsg(s->db));
  return GM_ERR;
}

static void sq_close(void *p) {
  sq_conn *s = p;
  if (!s) return;
  sqlite3_finalize(s->observe);
  sqlite3_finalize(s->insert);
  sqlite3_finalize(s->take);
  sqlite3_finalize(s->renew);
  sqlite3_finalize(s->release);
  sqlite3_finalize(s->complete);
  sqlite3_finalize(s->force);
  sqlite3_finalize(s->take_dead);
  sqlite3_finalize(s->data_version);
  sqlite3_close_v2(s->db);
  files_forget(s);
  free(s->real);
  free(s);
}

static int prep(sq_conn *s, const char *table, const char *fmt,
                sqlite3_stmt **st, gm_error *err) {
  char sql[768];
  snprintf(sql, sizeof sql, fmt, table);
  if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st,
                         NULL) != SQLITE_OK)
    return db_err(s, "prepare", err);
  return GM_OK;
}

static int exec(sq_conn *s, const char *sql, gm_error *err) {
  char *msg = NULL;
  if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    gm_seterr(err, GM_E_DB, "sqlite: %s", msg ? msg : "exec failed");
    sqlite3_free(msg);
    return GM_ERR;
  }
  return GM_OK;
}

/* Takes a byte of the lock file for this backend object (once per process:
 * a forked child must not hold its parent's byte) and returns its handle,
 * or -1 when there is no lock file (an in-memory database, a read-only
 * directory): then followers wait for the lease, as other backends do. */
static int64_t take_slot(sq_cfg *c) {
  pthread_mutex_lock(&c->mu);
  if (c->lock_fd >= 0 && c->lock_pid != getpid()) {
    close(c->lock_fd); /* the parent's description: its byte stays its own */
    c->lock_fd = -1;
    c->holder = -1;
  }
  char *real = c->lock_fd < 0 ? realpath(c->path, NULL) : NULL;
  if (real) {
    char lp[PATH_MAX + 32];
    struct stat st;
    snprintf(lp, sizeof lp, "%s-gomaster-lock", real);
    free(real);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd >= 0 && fstat(fd, &st) == 0) {
      unsigned start = (unsigned)getpid() * 2654435761u;
      for (unsigned i = 0; i < SLOTS; i++) {
        unsigned slot = (start + i) % SLOTS;
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                           .l_start = slot, .l_len = 1};
        if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
          c->lock_fd = fd;
          c->lock_pid = getpid();
          c->holder = ((int64_t)(st.st_ino & 0xffffffffu) << SLOT_BITS) | slot;
          break;
        }
      }
    }
    if (fd >= 0 && c->lock_fd != fd) close(fd);
  }
  int64_t h = c->holder;
  pthread_mutex_unlock(&c->mu);
  return h;
}

/* ---- Deleted files -------------------------------------------------------
 *
 * A clean-up job or an operator may delete the database, -wal and -shm
 * under running nodes. Connections that have them open keep using the
 * unlinked files while new ones make new files with a token from 1: two
 * masters. So each connection keeps the identity (device, inode) of the
 * files it opened and compares it with what the path names now on every
 * read, renewal and grant: a master steps down at once ("lost": renew is
 * GM_NOT) and every connection is reopened (observe is GM_ERR, which
 * reports the path through on_error).
 *
 * A node on the new files must not be granted a lock before whoever may
 * be master on the old ones has stopped believing it. Each backend object
 * keeps a read lock on one byte of the database's directory per file set
 * its connections are on (the byte tells the set: a hash of the database
 * file's device and inode), until a lease after its last connection on that set closed: a
 * master's belief ends within D < L of its last renewal, which came
 * through such a connection. Before creating a lock's row, a connection
 * looks for bytes of other sets of the same path (held by other processes,
 * other backend objects or its own): while there are some, it grants no
 * new row before one lease after it first saw them. The old master's last
 * renewal passed its identity check before the files went, so its belief
 * ends within D < L of that. A directory that cannot be opened goes
 * without this wait. */

#define SET_KEY_BITS 40

static uint64_t mix64(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ull;
  return h ^ (h >> 29);
}

/* The directory's region for this database's name: 2^SET_KEY_BITS bytes. */
static off_t set_base(const char *real) {
  const char *base = strrchr(real, '/');
  uint64_t h = 1469598103934665603ull;
  for (const char *p = base ? base + 1 : real; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  return (off_t)((h & 0xffff) << (SET_KEY_BITS + 4));
}

/* The index of key in c->sets, or -1. (c->mu held) */
static int set_find(sq_cfg *c, int64_t key) {
  for (int i = 0; i < c->nsets; i++)
    if (c->sets[i].key == key) return i;
  return -1;
}

/* Unlocks the sets nobody here has been on for a lease. (c->mu held) */
static void sets_prune(sq_cfg *c, int64_t now) {
  for (int i = 0; i < c->nsets;) {
    if (c->sets[i].conns > 0 || now - c->sets[i].idle_since < c->lease_us) {
      i++;
      continue;
    }
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET,
                       .l_start = c->set_base + c->sets[i].key, .l_len = 1};
    fcntl(c->dir_fd, F_OFD_SETLK, &fl);
    c->sets[i] = c->sets[--c->nsets];
  }
}

/* GM_OK when every file recorded at open is still what its path names;
 * else GM_ERR saying which one is gone or replaced. */
static int files_moved(sq_conn *s, gm_error *err) {
  if (!s->real) return GM_OK;
  sq_cfg *c = s->cfg;
  pthread_mutex_lock(&c->mu); /* and lets go of sets idle for a lease */
  if (c->dir_pid == getpid() && c->dir_fd >= 0) sets_prune(c, boot_us());
  pthread_mutex_unlock(&c->mu);
  int moved = 0;
  sqlite3_file_control(s->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved);
  for (int i = 0; i < SET_N; i++) {
    struct stat st;
    char path[PATH_MAX + 8];
    if (!s->have[i] && !(i == SET_DB && moved)) continue;
    snprintf(path, sizeof path, "%s%s", s->real, set_suffix[i]);
    int gone = stat(path, &st) != 0;
    if (gone || (i == SET_DB && moved) || st.st_dev != s->dev[i] ||
        st.st_ino != s->ino[i]) {
      gm_seterr(err, GM_E_DB,
                "sqlite: '%s' %s while this node had it open (deleted or "
                "replaced): a master steps down; reopening",
                path, gone ? "is gone" : "names another file");
      return GM_ERR;
    }
  }
  return GM_OK;
}

/* Records the identity of the connection's files and marks its file set in
 * the directory. Called at the end of open, when WAL has made -wal/-shm. */
static int files_record(sq_conn *s, gm_error *err) {
  sq_cfg *c = s->cfg;
  s->real = realpath(c->path, NULL);
  if (!s->real) return GM_OK; /* in memory, or no file to check */
  uint64_t key = 0;
  for (int i = 0; i < SET_N; i++) {
    struct stat st;
    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s%s", s->real, set_suffix[i]);
    s->have[i] = stat(path, &st) == 0;
    s->dev[i] = s->have[i] ? st.st_dev : 0;
    s->ino[i] = s->have[i] ? st.st_ino : 0;
  }
  /* The set is the database file's identity: SQLite itself deletes -wal
   * and -shm when the last connection closes, and makes them anew at the
   * next open, which is the same database. */
  key = mix64(mix64(key, (uint64_t)s->dev[SET_DB]), (uint64_t)s->ino[SET_DB]);
  if (files_moved(s, err) != GM_OK) return GM_ERR; /* gone while opening */
  s->set_key = (int64_t)(key & ((1ull << SET_KEY_BITS) - 1));
  pthread_mutex_lock(&c->mu);
  if (c->dir_fd >= 0 && c->dir_pid != getpid()) {
    close(c->dir_fd); /* the parent's description: its bytes stay its own */
    c->dir_fd = -1;
    c->nsets = 0;
  }
  if (c->dir_fd < 0) {
    char *slash = strrchr(s->real, '/');
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", slash && slash != s->real
             ? (int)(slash - s->real) : 1, slash ? s->real : ".");
    c->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    c->dir_pid = getpid();
    c->set_base = set_base(s->real);
  }
  sets_prune(c, boot_us());
  int i = set_find(c, s->set_key);
  struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET,
                     .l_start = c->set_base + s->set_key, .l_len = 1};
  if (i < 0 && c->dir_fd >= 0 &&
      c->nsets < (int)(sizeof c->sets / sizeof c->sets[0]) &&
      fcntl(c->dir_fd, F_OFD_SETLK, &fl) == 0) {
    i = c->nsets++;
    c->sets[i].key = s->set_key;
    c->sets[i].conns = 0;
  }
  if (i >= 0) {
    c->sets[i].conns++;
    s->counted = getpid();
  }
  pthread_mutex_unlock(&c->mu);
  return GM_OK;
}

/* At close: the connection's set goes idle when it was the last on it. */
static void files_forget(sq_conn *s) {
  sq_cfg *c = s->cfg;
  if (s->counted != getpid()) return; /* none, or a forked child's copy */
  pthread_mutex_lock(&c->mu);
  int i = c->dir_pid == getpid() ? set_find(c, s->set_key) : -1;
  if (i >= 0 && --c->sets[i].conns == 0) c->sets[i].idle_since = boot_us();
  pthread_mutex_unlock(&c->mu);
}

/* Before a grant: GM_ERR when the files moved; GM_NOT while a new row must
 * wait: other file sets of this path are still in use (see above) and one
 * lease has not passed since this connection first saw them. */
static int files_before_grant(sq_conn *s, const gm_acquire_req *q,
                              gm_error *err) {
  sq_cfg *c = s->cfg;
  if (files_moved(s, err) != GM_OK) return GM_ERR;
  if (!s->real) return GM_OK;
  int64_t now = boot_us();
  pthread_mutex_lock(&c->mu);
  if (q->lease_us > c->lease_us) c->lease_us = q->lease_us;
  int fd = c->dir_pid == getpid() ? c->dir_fd : -1;
  int old = c->nsets > 1 || (c->nsets == 1 && c->sets[0].key != s->set_key);
  off_t base = c->set_base;
  pthread_mutex_unlock(&c->mu);
  if (fd < 0 || q->expect_exists) return GM_OK;
  off_t mine = base + s->set_key;
  struct flock below = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                        .l_start = base, .l_len = mine - base};
  struct flock above = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                        .l_start = mine + 1,
                        .l_len = base + (1ll << SET_KEY_BITS) - mine - 1};
  if (!old && (below.l_len == 0 || (fcntl(fd, F_OFD_GETLK, &below) == 0 &&
                                    below.l_type == F_UNLCK)) &&
      (above.l_len == 0 || (fcntl(fd, F_OFD_GETLK, &above) == 0 &&
                            above.l_type == F_UNLCK)))
    return GM_OK;
  if (!s->stale_since) s->stale_since = now;
  if (now - s->stale_since >= q->lease_us) return GM_OK;
  gm_seterr(err, GM_E_DB,
            "sqlite: '%s' was made anew while nodes still have the previous "
            "files open: no new grant before one lease",
            s->real);
  return GM_NOT;
}

/* Columns that hold integers (µs, tokens, the holder): a table made
 * beforehand must give them INTEGER affinity (a declared type containing
 * "INT"), or SQLite would keep tokens and times as REAL or TEXT. Missing
 * columns fail the statements' prepare, naming them; other and extra
 * columns are not checked. A new integer column is one line here. */
static const gm_col int_columns[] = {
    {"token", 0, 0},   {"acquired_at", 0, 0}, {"renewed_at", 0, 0},
    {"expires_at", 0, 0}, {"done_at", 0, 0},  {"done_token", 0, 0},
    {"holder", 0, 0},  {"instance", 0, 0},    {NULL, 0, 0}};

static int sq_fits(const gm_col *w, const gm_col_seen *s, char *want,
                   size_t len) {
  (void)w;
  snprintf(want, len, "INTEGER");
  return s && sqlite3_strlike("%INT%", s->type, 0) == 0;
}

static int check_columns(sq_conn *s, gm_error *err) {
  const gm_schema schema = {s->cfg->table, int_columns, sq_fits,
                            "sqlite: table '%s' cannot keep the lease: column "
                            "'%s' is declared '%.32s'; expected %s", NULL, 0,
                            NULL};
  gm_colcheck k;
  sqlite3_stmt *st;
  char sql[128];
  int rc = GM_OK;
  snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", s->cfg->table);
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
    return db_err(s, "reading the columns", err);
  gm_cols_begin(&k, &schema);
  while (rc == GM_OK && sqlite3_step(st) == SQLITE_ROW) {
    const char *t = (const char *)sqlite3_column_text(st, 2);
    gm_col_seen col = {.name = (const char *)sqlite3_column_text(st, 1),
                       .type = t ? t : "", .shown = t ? t : ""};
    rc = gm_cols_see(&k, &col, err);
  }
  sqlite3_finalize(st);
  return rc;
}

static int sq_open(const void *p, void **out, gm_error *err) {
  sq_cfg *c = (sq_cfg *)p; /* only its lock fields change, under c->mu */
  sq_conn *s = calloc(1, sizeof *s);
  if (!s) return gm_nomem(err);
  s->cfg = c;
  s->version = -1;
  read_boot_id(s->boot_id, sizeof s->boot_id);
  int rc = sqlite3_open_v2(c->path, &s->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                               SQLITE_OPEN_NOMUTEX,
                           NULL);
  if (rc != SQLITE_OK) {
    gm_seterr(err, GM_E_CONNECT, "sqlite: cannot open '%s': %s", c->path,
              s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    sq_close(s);
    return GM_ERR;
  }
  sqlite3_busy_timeout(s->db, c->busy_ms);
  char sql[640];
  snprintf(sql, sizeof sql,
           "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
           "CREATE TABLE IF NOT EXISTS %s ("
           " name TEXT PRIMARY KEY,"
           " owner TEXT NOT NULL DEFAULT '',"
           " token INTEGER NOT NULL,"
           " version TEXT NOT NULL DEFAULT '',"
           " acquired_at INTEGER NOT NULL," /* µs, CLOCK_BOOTTIME */
           " renewed_at INTEGER NOT NULL,"
           " expires_at INTEGER NOT NULL,"
           " boot_id TEXT NOT NULL,"
           " done_at INTEGER NOT NULL DEFAULT 0,"
           " done_by TEXT NOT NULL DEFAULT '',"
           " done_token INTEGER NOT NULL DEFAULT 0,"
           " result TEXT NOT NULL DEFAULT '',"
           " holder INTEGER NOT NULL DEFAULT -1,"
           " instance INTEGER NOT NULL DEFAULT 0)",
           c->table);
  /* Several processes opening a new file at once: switching it to WAL
   * needs a lock that SQLite may refuse at once, without its busy handler.
   * That is a lost race (GM_E_CONFLICT): the core opens again soon. */
  int made = exec(s, sql, err);
  if (made != GM_OK && (sqlite3_errcode(s->db) & 0xff) == SQLITE_BUSY) {
    char msg[GM_ERRMSG_MAX];
    snprintf(msg, sizeof msg, "%s", err->msg);
    gm_seterr(err, GM_E_CONFLICT, "%s (database '%s')", msg, c->path);
    sq_close(s);
    return GM_ERR;
  }
  /* A table made before `holder` or `instance` gets them; "duplicate
   * column" is the common answer and fine. */
  static const char *const added[] = {"holder INTEGER NOT NULL DEFAULT -1",
                                      "instance INTEGER NOT NULL DEFAULT 0"};
  for (size_t i = 0; made == GM_OK && i < 2; i++) {
    char add[160];
    snprintf(add, sizeof add, "ALTER TABLE %s ADD COLUMN %s", c->table,
             added[i]);
    sqlite3_exec(s->db, add, NULL, NULL, NULL);
  }
  if (made != GM_OK) {
    char msg[GM_ERRMSG_MAX];
    snprintf(msg, sizeof msg, "%s", err->msg);
    gm_seterr(err, GM_E_CONNECT, "%s (database '%s')", msg, c->path);
    sq_close(s);
    return GM_ERR;
  }
  if (prep(s, c->table,
           "SELECT owner, token, version, acquired_at, renewed_at,"
           " expires_at, boot_id, done_at, done_by, done_token, result,"
           " holder, instance FROM %s WHERE name = ?1",
           &s->observe, err) ||
      prep(s, c->table,
           "UPDATE %s SET done_at = ?1, done_by = ?3, done_token = ?4,"
           " result = ?5 WHERE name = ?2 AND owner = ?3 AND token = ?4"
           " AND (?6 = 0 OR instance = ?6)",
           &s->complete, err) ||
      prep(s, c->table,
           "UPDATE %s SET owner = '', token = token + 1, instance = 0,"
           " expires_at = CASE WHEN ?3 = 0 AND boot_id = ?4"
           " AND expires_at > ?1 THEN expires_at ELSE ?1 END"
           " WHERE name = ?2 AND token < 9223372036854775807",
           &s->force, err) ||
      prep(s, c->table,
           "INSERT INTO %s (name, owner, token, version, acquired_at,"
           " renewed_at, expires_at, boot_id, holder, instance)"
           " VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5 + ?6, ?7, ?9, ?11)"
           " ON CONFLICT (name) DO NOTHING",
           &s->insert, err) ||
      prep(s, c->table,
           "UPDATE %s SET owner = ?2, token = ?3,"
           " version = ?4, acquired_at = ?5, renewed_at = ?5,"
           " expires_at = ?5 + ?6, boot_id = ?7, holder = ?9,"
           " instance = ?11 WHERE name = ?1 AND token = ?8"
           " AND token < 9223372036854775807"
           " AND (expires_at <= ?5 OR boot_id <> ?7)",
           &s->take, err) ||
      prep(s, c->table,
           "UPDATE %s SET owner = ?2, token = ?3,"
           " version = ?4, acquired_at = ?5, renewed_at = ?5,"
           " expires_at = ?5 + ?6, boot_id = ?7, holder = ?9,"
           " instance = ?11 WHERE name = ?1 AND token = ?8 AND boot_id = ?7"
           " AND token < 9223372036854775807"
           " AND holder = ?10 AND holder >= 0",
           &s->take_dead, err) ||
      prep(s, c->table, "PRAGMA data_version", &s->data_version, err) ||
      prep(s, c->table,
           "UPDATE %s SET renewed_at = ?1, expires_at = ?1 + ?2"
           " WHERE name = ?3 AND owner = ?4 AND token = ?5 AND boot_id = ?6"
           " AND instance = ?7",
           &s->renew, err) ||
      prep(s, c->table,
           "UPDATE %s SET owner = '', expires_at = ?1"
           " WHERE name = ?2 AND owner = ?3 AND token = ?4 AND instance = ?5",
           &s->release, err)) {
    sq_close(s);
    return GM_ERR;
  }
  if (check_columns(s, err) != GM_OK || files_record(s, err) != GM_OK) {
    sq_close(s);
    return GM_ERR;
  }
  take_slot(c); /* before campaigning, and to check other holders' bytes */
  *out = s;
  return GM_OK;
}

static void text(sqlite3_stmt *st, int col, char *dst, size_t len) {
  const unsigned char *t = sqlite3_column_text(st, col);
  snprintf(dst, len, "%s", t ? (const char *)t : "");
}

static void bind_text(sqlite3_stmt *st, int i, const char *v) {
  sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

/* Runs a write; GM_OK when it changed a row, GM_NOT when none. */
static int run_write(sq_conn *s, sqlite3_stmt *st, const char *what,
                     gm_error *err) {
  int rc = sqlite3_step(st);
  while (rc == SQLITE_ROW) rc = sqlite3_step(st);
  int changed = sqlite3_changes(s->db);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return db_err(s, what, err);
  return changed == 1 ? GM_OK : GM_NOT;
}

/* The columns the election reads, with the type each must hold: a row
 * edited by hand (NULL, text or a float where a number belongs, a token
 * that overflowed into a REAL) is refused naming the column. */
static int check_row(sqlite3_stmt *st, const char *name, gm_error *err) {
  static const struct {
    int col, type;
    const char *name;
  } cols[] = {{0, SQLITE_TEXT, "owner"},       {1, SQLITE_INTEGER, "token"},
              {3, SQLITE_INTEGER, "acquired_at"},
              {4, SQLITE_INTEGER, "renewed_at"},
              {5, SQLITE_INTEGER, "expires_at"}};
  static const char *const types[] = {"", "an integer", "a float", "text",
                                      "a blob", "NULL"};
  for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
    int t = sqlite3_column_type(st, cols[i].col);
    if (t == cols[i].type &&
        !(t == SQLITE_INTEGER && cols[i].col == 1 &&
          sqlite3_column_int64(st, 1) < 0))
      continue;
    gm_seterr(err, GM_E_ROW,
              "sqlite: lock '%.64s': column '%s' holds %s, not %s",
              name, cols[i].name,
              t == SQLITE_INTEGER ? "a negative integer" : types[t],
              cols[i].type == SQLITE_TEXT ? "text" : "an integer");
    return GM_ERR;
  }
  return GM_OK;
}

static int sq_observe(void *p, const char *name, gm_row *out, gm_error *err) {
  sq_conn *s = p;
  sqlite3_stmt *st = s->observe;
  memset(out, 0, sizeof *out);
  if (files_moved(s, err) != GM_OK) return GM_ERR;
  bind_text(st, 1, name);
  int rc = sqlite3_step(st);
  out->now = boot_us();
  if (rc == SQLITE_ROW && check_row(st, name, err) != GM_OK) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return GM_ERR;
  }
  if (rc == SQLITE_ROW) {
    char boot[40];
    out->exists = 1;
    text(st, 0, out->owner, sizeof out->owner);
    out->token = (uint64_t)sqlite3_column_int64(st, 1);
    text(st, 2, out->version, sizeof out->version);
    out->acquired_at = sqlite3_column_int64(st, 3);
    out->renewed_at = sqlite3_column_int64(st, 4);
    out->expires_at = sqlite3_column_int64(st, 5);
    text(st, 6, boot, sizeof boot);
    out->done_at = sqlite3_column_int64(st, 7);
    text(st, 8, out->done_by, sizeof out->done_by);
    out->done_token = (uint64_t)sqlite3_column_int64(st, 9);
    text(st, 10, out->result, sizeof out->result);
    out->holder = sqlite3_column_int64(st, 11);
    out->instance = (uint64_t)sqlite3_column_int64(st, 12);
    if (strcmp(boot, s->boot_id) != 0) { /* times from before a reboot */
      out->acquired_at = out->renewed_at = out->expires_at = 0;
      out->holder = -1;
    }
    rc = sqlite3_step(st);
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return db_err(s, "read", err);
  return GM_OK;
}

static int acquire_with(sq_conn *s, sqlite3_stmt *st, const gm_acquire_req *q,
                        int64_t dead, gm_row *out, gm_error *err) {
  int ready = files_before_grant(s, q, err);
  if (ready != GM_OK) return ready;
  int64_t now = boot_us();
  uint64_t token = gm_new_token(q);
  bind_text(st, 1, q->name);
  bind_text(st, 2, q->owner);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)token);
  bind_text(st, 4, q->version);
  sqlite3_bind_int64(st, 5, now);
  sqlite3_bind_int64(st, 6, q->lease_us);
  bind_text(st, 7, s->boot_id);
  if (q->expect_exists) sqlite3_bind_int64(st, 8, (sqlite3_int64)q->expect_token);
  int64_t mine = take_slot(s->cfg);
  sqlite3_bind_int64(st, 9, mine);
  if (dead >= 0) sqlite3_bind_int64(st, 10, dead);
  sqlite3_bind_int64(st, 11, (sqlite3_int64)q->instance);
  int rc = run_write(s, st, "acquire", err);
  if (rc != GM_OK) return rc;
  gm_row_written(out, q->owner, q->version, token, now, now, q->lease_us);
  out->holder = mine;
  out->instance = q->instance;
  return GM_OK;
}

static int sq_acquire(void *p, const gm_acquire_req *q, gm_row *out,
                      gm_error *err) {
  sq_conn *s = p;
  return acquire_with(s, q->expect_exists ? s->take : s->insert, q, -1, out,
                      err);
}

static int sq_acquire_dead(void *p, const gm_acquire_req *q, int64_t holder,
                           gm_row *out, gm_error *err) {
  sq_conn *s = p;
  if (!q->expect_exists || holder < 0) return GM_NOT;
  return acquire_with(s, s->take_dead, q, holder, out, err);
}

/* GM_OK when the byte behind `holder` is free in our lock file: its process
 * is gone (or its backend object was freed after its electors stopped). Our
 * own byte, another lock file (another inode: a path that names another
 * file) or no lock file at all: GM_NOT, nobody can tell. */
static int sq_holder_gone(void *p, int64_t holder, gm_error *err) {
  sq_conn *s = p;
  (void)err;
  sq_cfg *c = s->cfg;
  pthread_mutex_lock(&c->mu);
  int fd = c->lock_pid == getpid() ? c->lock_fd : -1;
  int64_t mine = c->holder;
  pthread_mutex_unlock(&c->mu);
  if (fd < 0 || holder < 0 || mine < 0 || holder == mine ||
      holder >> SLOT_BITS != mine >> SLOT_BITS)
    return GM_NOT;
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                     .l_start = holder & ((1 << SLOT_BITS) - 1), .l_len = 1};
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return GM_NOT;
  return fl.l_type == F_UNLCK ? GM_OK : GM_NOT;
}

/* From another thread: the statement running now (or waiting for the write
 * lock) ends with SQLITE_INTERRUPT. */
static void sq_interrupt(void *p) {
  sq_conn *s = p;
  sqlite3_interrupt(s->db);
}

/* PRAGMA data_version changes when another connection commits. */
static int sq_changed(void *p, gm_error *err) {
  sq_conn *s = p;
  sqlite3_stmt *st = s->data_version;
  int rc = sqlite3_step(st);
  int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW) return db_err(s, "data_version", err);
  int changed = v != s->version;
  s->version = v;
  return changed ? GM_OK : GM_NOT;
}

static int sq_renew(void *p, const char *name, const char *owner,
                    uint64_t instance, uint64_t token, int64_t lease_us,
                    gm_row *out, gm_error *err) {
  sq_conn *s = p;
  if (files_moved(s, err) != GM_OK) return GM_NOT; /* lost: step down */
  sqlite3_stmt *st = s->renew;
  int64_t now = boot_us();
  memset(out, 0, sizeof *out);
  sqlite3_bind_int64(st, 1, now);
  sqlite3_bind_int64(st, 2, lease_us);
  bind_text(st, 3, name);
  bind_text(st, 4, owner);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)token);
  bind_text(st, 6, s->boot_id);
  sqlite3_bind_int64(st, 7, (sqlite3_int64)instance);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return db_err(s, "renew", err);
  if (sqlite3_changes(s->db) != 1) return GM_NOT;
  out->renewed_at = out->now = now;
  out->expires_at = now + lease_us;
  return GM_OK;
}

/* All in one transaction: one commit (one fsync) per heartbeat, and each
 * lock's own result from its UPDATE ... RETURNING. */
static int sq_renew_many(void *p, gm_renew_req *q, size_t n, gm_error *err) {
  sq_conn *s = p;
  if (exec(s, "BEGIN IMMEDIATE", err) != GM_OK) return GM_ERR;
  for (size_t i = 0; i < n; i++) {
    gm_row r;
    q[i].rc = sq_renew(p, q[i].name, q[i].owner, q[i].instance, q[i].token,
                       q[i].lease_us, &r, err);
    if (q[i].rc == GM_ERR) {
      sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
      return GM_ERR;
    }
    if (q[i].rc == GM_OK) {
      q[i].renewed_at = r.renewed_at;
      q[i].expires_at = r.expires_at;
      q[i].now = r.now;
    }
  }
  if (exec(s, "COMMIT", err) != GM_OK) {
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return GM_ERR;
  }
  return GM_OK;
}

static int sq_release(void *p, const char *name, const char *owner,
                      uint64_t instance, uint64_t token, gm_error *err) {
  sq_conn *s = p;
  sqlite3_stmt *st = s->release;
  sqlite3_bind_int64(st, 1, boot_us());
  bind_text(st, 2, name);
  bind_text(st, 3, owner);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)token);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)instance);
  return run_write(s, st, "release", err);
}

static int sq_complete(void *p, const char *name, const char *owner,
                       uint64_t instance, uint64_t token, const char *result,
                       gm_error *err) {
  sq_conn *s = p;
  sqlite3_stmt *st = s->complete;
  struct timespec ts; /* done_at is for people: the wall clock */
  clock_gettime(CLOCK_REALTIME, &ts);
  sqlite3_bind_int64(st, 1, (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
  bind_text(st, 2, name);
  bind_text(st, 3, owner);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)token);
  bind_text(st, 5, result);
  sqlite3_bind_int64(st, 6, (sqlite3_int64)instance);
  return run_write(s, st, "complete", err);
}

static int sq_force_release(void *p, const char *name, int now, gm_row *out,
                            gm_error *err) {
  sq_conn *s = p;
  sqlite3_stmt *st = s->force;
  sqlite3_bind_int64(st, 1, boot_us());
  bind_text(st, 2, name);
  sqlite3_bind_int(st, 3, now != 0);
  bind_text(st, 4, s->boot_id);
  int rc = run_write(s, st, "release", err);
  if (rc != GM_OK) return rc;
  return sq_observe(p, name, out, err);
}

const gm_backend_ops gm_sqlite_ops = {
    .abi = GM_BACKEND_ABI,
    .name = "sqlite",
    .url_raw = 0,
    .parse = sq_parse,
    .free_cfg = sq_free_cfg,
    .describe = sq_describe,
    .open = sq_open,
    .close = sq_close,
    .observe = sq_observe,
    .acquire = sq_acquire,
    .renew = sq_renew,
    .release = sq_release,
    .complete = sq_complete,
    .force_release = sq_force_release,
    .renew_many = sq_renew_many,
    .holder_gone = sq_holder_gone,
    .acquire_dead = sq_acquire_dead,
    .changed = sq_changed,
    .poll_us = 20000,
    .interrupt = sq_interrupt,
};
