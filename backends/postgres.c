/*
 * postgres.c: the PostgreSQL backend, on libpq.
 *
 * One row per lock in a table (default gomaster_locks, created if missing):
 * name text PRIMARY KEY, owner, version text, token bigint, acquired_at,
 * renewed_at, expires_at timestamptz (microseconds) holding the server's
 * clock_timestamp(); the completion record of a one-time task: done_at,
 * done_by, done_token, result; and instance bigint, the key of the elector
 * instance granted it. A table made beforehand whose columns cannot keep
 * the guarantee is refused, naming the column (src/schema.c, pg_types).
 *
 * Each acquire, renew, release, complete and force_release is one statement
 * that decides by itself (a WHERE on owner, instance and token) and RETURNs
 * the row it wrote, with the statement's own clock_timestamp(): no row back
 * means it did not take effect. The batch renewal is one UPDATE ... FROM
 * unnest(...) for any number of locks. Statements are unnamed (PQsendQueryParams), so a
 * pooler in transaction mode (PgBouncer) passes them through.
 *
 * No thread: every call runs on the core's thread with a deadline of its own
 * (statement_timeout, client side too: a stopped server answers nothing, not
 * even a timeout). The release and the forced release notify ("gomaster"
 * channel, in the same statement); the connection LISTENs, and changed()
 * reads what has arrived on the socket without sending anything. Behind a
 * pooler (the backend pid libpq reports is not the server's), LISTEN cannot
 * work: changed() says so once and followers poll.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libpq-fe.h>

#include "backend.h"
#include "schema.h"
#include "timeutil.h"

#define DEFAULT_TABLE "gomaster_locks"
#define DEFAULT_TIMEOUT_US 2000000 /* each statement: under D = 3 s */
#define CHANNEL "gomaster"
#define MAX_CONN_KEYS 64

/* ---- configuration ----------------------------------------------------- */

/* Made by pg_parse, freed by pg_free_cfg; read-only after, but for
 * no_options, which open() learns (any thread). */
typedef struct pgcfg {
  const char *keys[MAX_CONN_KEYS + 2]; /* libpq's keywords, NULL-ended */
  char *vals[MAX_CONN_KEYS + 2];
  int n;
  char *table;
  int64_t timeout_us; /* statement_timeout: server and client side */
  int listen;         /* 0: never LISTEN (listen=0) */
  char *password;     /* points into vals (the last given): for scrubbing */
  atomic_int no_options; /* a pooler refused the startup 'options' */
} pgcfg;

/* Our keys; every other key of the table form is a libpq keyword. */
static const char *const own_keys[] = {"url", "table", "listen",
                                       "statement_timeout", NULL};

static int is_own(const char *key) {
  for (const char *const *k = own_keys; *k; k++)
    if (strcmp(*k, key) == 0) return 1;
  return 0;
}

static void pg_free_cfg(void *p) {
  pgcfg *c = p;
  if (!c) return;
  for (int i = 0; i < c->n; i++) {
    free((char *)c->keys[i]);
    gm_free_secret(c->vals[i]); /* the password among them */
  }
  free(c->table);
  free(c);
}

static const char *cfg_get(const pgcfg *c, const char *key) {
  for (int i = c->n; i-- > 0;)
    if (strcmp(c->keys[i], key) == 0) return c->vals[i];
  return NULL;
}

static int cfg_add(pgcfg *c, const char *key, const char *val, gm_error *err) {
  if (c->n == MAX_CONN_KEYS) {
    gm_seterr(err, GM_E_ARG, "postgres backend: too many options");
    return GM_ERR;
  }
  c->keys[c->n] = strdup(key);
  c->vals[c->n] = strdup(val);
  if (!c->keys[c->n] || !c->vals[c->n]) {
    free((char *)c->keys[c->n]);
    free(c->vals[c->n]);
    gm_seterr(err, GM_E_NOMEM, "out of memory");
    return GM_ERR;
  }
  if (strcmp(key, "password") == 0) c->password = c->vals[c->n];
  c->n++;
  return GM_OK;
}

/* The URL without our own query keys, which libpq would refuse. */
static char *strip_url(const char *url) {
  char *out = malloc(strlen(url) + 1), *w = out;
  if (!out) return NULL;
  const char *q = strchr(url, '?');
  size_t base = q ? (size_t)(q - url) : strlen(url);
  memcpy(w, url, base);
  w += base;
  for (char sep = '?'; q && *q; q += strcspn(q, "&")) {
    size_t len = strcspn(++q, "&"), klen = strcspn(q, "=&");
    char key[32] = "";
    if (klen < sizeof key) memcpy(key, q, klen);
    if (len > 0 && !(klen < sizeof key && is_own(key))) {
      *w++ = sep;
      sep = '&';
      memcpy(w, q, len);
      w += len;
    }
  }
  *w = '\0';
  return out;
}

/* The password as it stands in the URL (percent-encoded): libpq's parse
 * errors may quote the URL. NULL when there is none. */
static char *raw_password(const char *url) {
  const char *rest = strstr(url, "://");
  if (!rest) return NULL;
  rest += 3;
  size_t alen = strcspn(rest, "/?");
  const char *at = NULL;
  for (size_t i = 0; i < alen; i++)
    if (rest[i] == '@') at = rest + i;
  const char *colon = at ? memchr(rest, ':', (size_t)(at - rest)) : NULL;
  return colon ? strndup(colon + 1, (size_t)(at - colon - 1)) : NULL;
}

/* The URL form: libpq parses it (no I/O), with its own meaning for every
 * key but ours. */
static int parse_url(pgcfg *c, const char *url, gm_error *err) {
  char *stripped = strip_url(url), *msg = NULL;
  if (!stripped) return gm_nomem(err);
  PQconninfoOption *o = PQconninfoParse(stripped, &msg);
  free(stripped);
  if (!o) {
    char m[GM_ERRMSG_MAX], *pw = raw_password(url);
    gm_scrub(m, sizeof m, msg ? msg : "out of memory", pw);
    free(pw);
    gm_seterr(err, msg ? GM_E_URL : GM_E_NOMEM, "postgres backend: bad URL: %s",
              m);
    PQfreemem(msg);
    return GM_ERR;
  }
  int rc = GM_OK;
  for (PQconninfoOption *p = o; p->keyword && rc == GM_OK; p++)
    if (p->val) rc = cfg_add(c, p->keyword, p->val, err);
  PQconninfoFree(o);
  return rc;
}

/* The table form: { type = "postgres", host = ..., database = ... }; every
 * key but ours must be one of libpq's ("database" is "dbname"). */
static int parse_table(pgcfg *c, const gm_kv *opts, size_t n, gm_error *err) {
  char *msg = NULL; /* every keyword, without reading defaults: no I/O */
  PQconninfoOption *d = PQconninfoParse("", &msg);
  PQfreemem(msg);
  if (!d) return gm_nomem(err);
  int rc = GM_OK;
  for (size_t i = 0; i < n && rc == GM_OK; i++) {
    const char *k = opts[i].key;
    if (is_own(k)) continue;
    if (strcmp(k, "database") == 0) k = "dbname";
    int known = 0;
    for (PQconninfoOption *p = d; p->keyword && !known; p++)
      known = strcmp(p->keyword, k) == 0;
    if (!known) {
      gm_seterr(err, GM_E_ARG, "postgres backend: unknown option '%.64s'",
                opts[i].key);
      rc = GM_ERR;
    } else {
      rc = cfg_add(c, k, opts[i].value, err);
    }
  }
  PQconninfoFree(d);
  return rc;
}

static int pg_parse(const gm_kv *opts, size_t n, void **out, gm_error *err) {
  *out = NULL;
  pgcfg *c = calloc(1, sizeof *c);
  if (!c) return gm_nomem(err);
  const char *url = gm_kv_get(opts, n, "url");
  if ((url ? parse_url(c, url, err) : parse_table(c, opts, n, err)) ||
      gm_kv_seconds(opts, n, "statement_timeout", DEFAULT_TIMEOUT_US,
                    &c->timeout_us, err) ||
      gm_kv_dup(opts, n, "table", DEFAULT_TABLE, &c->table, err) ||
      gm_check_identifier("table", c->table, err))
    goto fail;
  static const char *const bits[] = {"0", "1", NULL};
  if (gm_kv_choice(opts, n, "listen", bits, 1, &c->listen, "postgres", err))
    goto fail;
  /* Always bounded, whatever the URL leaves out: the connect (per host), a
   * silent peer (tcp_user_timeout, keepalives). The URL's own values win. */
  char ms[32], s[32];
  snprintf(ms, sizeof ms, "%lld", (long long)(c->timeout_us / 1000));
  snprintf(s, sizeof s, "%lld", (long long)((c->timeout_us + 999999) / 1000000));
  static const char *const dflt[][2] = {
      {"application_name", "gomaster"}, {"keepalives", "1"},
      {"keepalives_idle", "5"},         {"keepalives_interval", "1"},
      {"keepalives_count", "3"}};
  for (size_t i = 0; i < sizeof dflt / sizeof dflt[0]; i++)
    if (!cfg_get(c, dflt[i][0]) && cfg_add(c, dflt[i][0], dflt[i][1], err))
      goto fail;
  if ((!cfg_get(c, "connect_timeout") && cfg_add(c, "connect_timeout", s, err)) ||
      (!cfg_get(c, "tcp_user_timeout") && cfg_add(c, "tcp_user_timeout", ms, err)))
    goto fail;
  atomic_init(&c->no_options, 0);
  *out = c;
  return GM_OK;
fail:
  pg_free_cfg(c);
  return GM_ERR;
}

static void pg_describe(const void *p, char *buf, size_t len) {
  const pgcfg *c = p;
  const char *user = cfg_get(c, "user"), *host = cfg_get(c, "host");
  const char *port = cfg_get(c, "port"), *db = cfg_get(c, "dbname");
  if (!host) host = cfg_get(c, "hostaddr");
  snprintf(buf, len, "postgres://%s%s%s%s%s/%s?table=%s", user ? user : "",
           user ? "@" : "", host ? host : "", port ? ":" : "",
           port ? port : "", db ? db : "", c->table);
}

/* ---- connection -------------------------------------------------------- */

typedef struct pgconn {
  const pgcfg *cfg;
  PGconn *db;
  atomic_int fd; /* the socket, for interrupt() from another thread; -1 */
  int listening; /* LISTEN is in force on this connection */
  int pooled;    /* a pooler stands between: LISTEN cannot work */
  int said;      /* changed() has said so */
  char server[96]; /* host:port for messages */
} pgconn;

/* Waits until the socket is ready for ev, or the deadline (monotonic ns):
 * 0 when ready. */
static int wait_sock(PGconn *db, short ev, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - gm_mono_ns();
    if (left <= 0) return -1;
    struct pollfd pfd = {.fd = PQsocket(db), .events = ev};
    int r = poll(&pfd, 1, (int)((left + GM_NS_PER_MS - 1) / GM_NS_PER_MS));
    if (r > 0) return 0;
    if (r < 0 && errno != EINTR) return -1;
  }
}

static int fail_msg(pgconn *c, int code, const char *what, const char *msg,
                    gm_error *err) {
  char m[GM_ERRMSG_MAX];
  gm_scrub(m, sizeof m, msg, c->cfg->password);
  gm_seterr(err, code, "postgres: %s failed on %s: %s", what, c->server, m);
  return GM_ERR;
}

/* The SQLSTATE classes that mean the session is gone (or going). */
static int lost_session(const char *state) {
  return !state || strncmp(state, "08", 2) == 0 ||
         strncmp(state, "57P", 3) == 0;
}

/* Runs one statement with its parameters as text, within the statement
 * timeout: GM_OK with *res (PGRES_TUPLES_OK or COMMAND_OK; the caller
 * clears it), or GM_ERR. Numeric overflow (22003) is reported as what
 * overflow says, when given. */
static int run(pgconn *c, const char *sql, int n, const char *const *vals,
               const char *what, const char *overflow, PGresult **res,
               gm_error *err) {
  PGconn *db = c->db;
  int64_t deadline = gm_mono_ns() + c->cfg->timeout_us * GM_NS_PER_US;
  *res = NULL;
  if (!PQsendQueryParams(db, sql, n, NULL, vals, NULL, NULL, 0))
    return fail_msg(c, GM_E_CONNECT, what, PQerrorMessage(db), err);
  int f;
  while ((f = PQflush(db)) == 1)
    if (wait_sock(db, POLLOUT | POLLIN, deadline) || !PQconsumeInput(db))
      goto timeout;
  if (f < 0) return fail_msg(c, GM_E_CONNECT, what, PQerrorMessage(db), err);
  PGresult *last = NULL, *r;
  for (;;) {
    while (PQisBusy(db)) {
      if (wait_sock(db, POLLIN, deadline)) {
        PQclear(last);
        goto timeout;
      }
      if (!PQconsumeInput(db)) {
        PQclear(last);
        return fail_msg(c, GM_E_CONNECT, what, PQerrorMessage(db), err);
      }
    }
    if (!(r = PQgetResult(db))) break;
    PQclear(last);
    last = r;
  }
  ExecStatusType st = last ? PQresultStatus(last) : PGRES_FATAL_ERROR;
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
    *res = last;
    return GM_OK;
  }
  const char *state = last ? PQresultErrorField(last, PG_DIAG_SQLSTATE) : NULL;
  if (overflow && state && strcmp(state, "22003") == 0) {
    gm_seterr(err, GM_E_DB, "postgres: %s: %s", what, overflow);
  } else {
    const char *m = last ? PQresultErrorMessage(last) : "";
    fail_msg(c, lost_session(state) ? GM_E_CONNECT : GM_E_DB, what,
             *m ? m : PQerrorMessage(db), err);
  }
  PQclear(last);
  return GM_ERR;
timeout:
  gm_seterr(err, GM_E_CONNECT,
            "postgres: %s on %s: no answer within statement_timeout (%.3g s)",
            what, c->server, (double)c->cfg->timeout_us / 1e6);
  return GM_ERR;
}

/* ---- reading rows ------------------------------------------------------ */

/* A row edited by hand that the election cannot read (gm_bad_column). */
#define bad_row(c, r, j, name, what, err)                                     \
  gm_bad_column(err, "postgres", name, (c)->cfg->table, PQfname(r, j), what)

/* Column j of row 0 as an integer: GM_E_ROW naming the column when NULL
 * (unless null_ok), not a number or out of range (below lo). */
static int col_i64(pgconn *c, PGresult *r, int j, const char *name,
                   int null_ok, int64_t lo, int64_t *out, gm_error *err) {
  *out = 0;
  if (PQgetisnull(r, 0, j))
    return null_ok ? GM_OK : bad_row(c, r, j, name, "is NULL or infinite", err);
  const char *v = PQgetvalue(r, 0, j);
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (end == v || *end || errno || x < lo)
    return bad_row(c, r, j, name, "holds a value out of range", err);
  *out = x;
  return GM_OK;
}

static int col_str(pgconn *c, PGresult *r, int j, const char *name,
                   char *buf, size_t size, gm_error *err) {
  buf[0] = '\0';
  if (PQgetisnull(r, 0, j)) return bad_row(c, r, j, name, "is NULL", err);
  if (gm_strlcpy(buf, PQgetvalue(r, 0, j), size) == GM_OK) return GM_OK;
  return bad_row(c, r, j, name, "is longer than this library writes", err);
}

/* µs since 1970 of a timestamptz; NULL where infinite. */
#define US(x)                                                                 \
  "CASE WHEN isfinite(" x ") THEN (extract(epoch FROM " x                     \
  ") * 1000000)::int8 END"
/* The columns every row-returning statement ends with, in this order. */
#define ROW_COLS(l, now)                                                      \
  US(now) " AS now, " l "name IS NOT NULL AS found, " l "owner, " l           \
  "version, " l "token, " US(l "acquired_at") " AS acquired_at, " US(         \
      l "renewed_at") " AS renewed_at, " US(l "expires_at")                   \
      " AS expires_at, " US(l "done_at") " AS done_at, " l "done_by, " l      \
      "done_token, " l "result, " l "instance"
#define NCOLS 13
/* The statement's one clock reading, as a relation n(now). */
#define CLOCK "(SELECT clock_timestamp() AS now) AS n"
#define LEASE(p) "n.now + " p "::int8 * interval '1 microsecond'"

/* Row 0 of r (columns ROW_COLS from column 0) of lock name into *out. */
static int read_row(pgconn *c, PGresult *r, const char *name, gm_row *out,
                    gm_error *err) {
  memset(out, 0, sizeof *out);
  out->holder = -1;
  if (PQntuples(r) != 1 || PQnfields(r) < NCOLS) {
    gm_seterr(err, GM_E_DB, "postgres: the server returned %d rows, not 1",
              PQntuples(r));
    return GM_ERR;
  }
  if (col_i64(c, r, 0, name, 0, INT64_MIN, &out->now, err)) return GM_ERR;
  out->exists = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
  if (!out->exists) return GM_OK;
  if (col_str(c, r, 2, name, out->owner, sizeof out->owner, err) ||
      col_str(c, r, 3, name, out->version, sizeof out->version, err) ||
      col_i64(c, r, 4, name, 0, 0, (int64_t *)&out->token, err) ||
      col_i64(c, r, 5, name, 0, INT64_MIN, &out->acquired_at, err) ||
      col_i64(c, r, 6, name, 0, INT64_MIN, &out->renewed_at, err) ||
      col_i64(c, r, 7, name, 0, INT64_MIN, &out->expires_at, err) ||
      col_i64(c, r, 8, name, 1, INT64_MIN, &out->done_at, err) ||
      col_str(c, r, 9, name, out->done_by, sizeof out->done_by, err) ||
      col_i64(c, r, 10, name, 0, 0, (int64_t *)&out->done_token, err) ||
      col_str(c, r, 11, name, out->result, sizeof out->result, err) ||
      col_i64(c, r, 12, name, 0, 0, (int64_t *)&out->instance, err))
    return GM_ERR;
  return GM_OK; /* the unsigned fields above hold values >= 0 */
}

/* Runs a conditional write that RETURNs ROW_COLS: GM_OK with *out when it
 * took effect (one row back), GM_NOT when not (none). */
static int write_row(pgconn *c, const char *fmt, int n,
                     const char *const *vals, const char *what,
                     const char *overflow, gm_row *out, gm_error *err) {
  /* vals[0] is the lock's name in every write */
  char sql[2048];
  PGresult *r;
  snprintf(sql, sizeof sql, fmt, c->cfg->table);
  if (run(c, sql, n, vals, what, overflow, &r, err)) return GM_ERR;
  int rc = PQntuples(r) == 0 ? GM_NOT : read_row(c, r, vals[0], out, err);
  PQclear(r);
  return rc;
}

/* Tokens are bigint: the largest is INT64_MAX, and none is granted past it. */
static const char token_limit[] =
    "the token is at its largest (9223372036854775807): refusing to grant "
    "past it";

static int check_token(uint64_t t, gm_error *err) {
  if (t < (uint64_t)INT64_MAX) return GM_OK;
  gm_seterr(err, GM_E_DB, "postgres: %s", token_limit);
  return GM_ERR;
}

/* v as decimal text in b: a statement parameter. */
static const char *dec(char b[24], int64_t v) {
  snprintf(b, 24, "%" PRId64, v);
  return b;
}

/* ---- schema ------------------------------------------------------------ */

static const char create_sql[] =
    "CREATE TABLE IF NOT EXISTS \"%s\" ("
    " name text COLLATE \"C\" NOT NULL PRIMARY KEY,"
    " owner text NOT NULL DEFAULT '',"
    " token bigint NOT NULL,"
    " version text NOT NULL DEFAULT '',"
    " acquired_at timestamptz NOT NULL,"
    " renewed_at timestamptz NOT NULL,"
    " expires_at timestamptz NOT NULL,"
    " done_at timestamptz NULL,"
    " done_by text NOT NULL DEFAULT '',"
    " done_token bigint NOT NULL DEFAULT 0,"
    " result text NOT NULL DEFAULT '',"
    " instance bigint NOT NULL DEFAULT 0)";

/* The table's columns (none when it is missing) and, in the same statement,
 * the server's own pid, which libpq reports too unless a pooler stands
 * between. */
static const char columns_sql[] =
    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), "
    "a.atttypid::regtype::text, a.atttypmod, pg_backend_pid() "
    "FROM (SELECT 1) AS d LEFT JOIN pg_attribute AS a ON "
    "a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped";

/* A text, a bigint, or a timestamp with time zone of microseconds
 * (typmod -1 or 6). */
static const gm_coltype pg_types[] = {
    [GM_COL_TIME] = {.types = "|timestamp with time zone|", .prec = 6,
                     .want = "timestamptz (with microseconds)"},
    [GM_COL_U64] = {.types = "|bigint|", .want = "bigint"},
    [GM_COL_TEXT] = {.types = "|text|character varying|", .want = "text"}};

/* GM_OK: the table is there and fit; GM_NOT: missing; GM_ERR. */
static int check_table(pgconn *c, gm_error *err) {
  const gm_schema schema = {
      c->cfg->table, gm_lock_columns, NULL,
      "postgres: table '%s': column %s is %s; expected %s "
      "(drop or alter the table)",
      "postgres: table '%s' has no column %s (expected %s)", 1, pg_types};
  char quoted[80];
  snprintf(quoted, sizeof quoted, "\"%s\"", c->cfg->table);
  const char *v[1] = {quoted};
  PGresult *r;
  if (run(c, columns_sql, 1, v, "reading the table's columns", NULL, &r, err))
    return GM_ERR;
  int rows = PQntuples(r), rc = GM_OK;
  if (rows > 0)
    c->pooled = atoi(PQgetvalue(r, 0, 4)) != PQbackendPID(c->db);
  if (rows == 0 || PQgetisnull(r, 0, 0)) rc = GM_NOT;
  gm_colcheck k;
  gm_cols_begin(&k, &schema);
  for (int i = 0; rc == GM_OK && i < rows; i++) {
    gm_col_seen col = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 2),
                       PQgetvalue(r, i, 1), NULL,
                       atoi(PQgetvalue(r, i, 3)), 0};
    rc = gm_cols_see(&k, &col, err);
  }
  PQclear(r);
  return rc == GM_OK ? gm_cols_end(&k, err) : rc;
}

/* Creates the table if missing; a table made beforehand is checked. Two
 * nodes creating it at once: the loser's error is moot when it is there. */
static int setup_table(pgconn *c, gm_error *err) {
  int rc = check_table(c, err);
  if (rc != GM_NOT) return rc;
  char sql[1024];
  PGresult *r;
  gm_error cerr = {0};
  snprintf(sql, sizeof sql, create_sql, c->cfg->table);
  if (run(c, sql, 0, NULL, "create table", NULL, &r, &cerr) == GM_OK)
    PQclear(r);
  rc = check_table(c, err);
  if (rc == GM_NOT) *err = cerr;
  return rc == GM_OK ? GM_OK : GM_ERR;
}

/* ---- open and close ---------------------------------------------------- */

static void pg_close(void *p) {
  pgconn *c = p;
  if (!c) return;
  if (c->db) PQfinish(c->db);
  free(c);
}

/* Connects with cfg's keywords, plus the server's statement_timeout in the
 * startup packet unless without_options (a pooler refuses it). */
static PGconn *connect_db(const pgcfg *cfg, int without_options) {
  const char *keys[MAX_CONN_KEYS + 2];
  const char *vals[MAX_CONN_KEYS + 2];
  char options[512];
  int n = 0;
  const char *user_opts = cfg_get(cfg, "options");
  for (int i = 0; i < cfg->n; i++)
    if (strcmp(cfg->keys[i], "options") != 0) {
      keys[n] = cfg->keys[i];
      vals[n++] = cfg->vals[i];
    }
  snprintf(options, sizeof options, "-c statement_timeout=%lld%s%s",
           (long long)(cfg->timeout_us / 1000), user_opts ? " " : "",
           user_opts ? user_opts : "");
  if (!without_options || user_opts) {
    keys[n] = "options";
    vals[n++] = without_options ? user_opts : options;
  }
  keys[n] = vals[n] = NULL;
  return PQconnectdbParams(keys, vals, 0);
}

/* A library prints nothing: notices (and a FATAL that comes between
 * statements) reach the caller as the next call's error. */
static void quiet(void *arg, const char *msg) { (void)arg, (void)msg; }

static int pg_open(const void *cfgp, void **out, gm_error *err) {
  const pgcfg *cfg = cfgp;
  *out = NULL;
  pgconn *c = calloc(1, sizeof *c);
  if (!c) return gm_nomem(err);
  c->cfg = cfg;
  atomic_init(&c->fd, -1);
  const char *host = cfg_get(cfg, "host"), *port = cfg_get(cfg, "port");
  snprintf(c->server, sizeof c->server, "%.60s:%.20s",
           host ? host : "(default host)", port ? port : "5432");
  pgcfg *mut = (pgcfg *)cfg; /* no_options only */
  int without = atomic_load(&mut->no_options);
  c->db = connect_db(cfg, without);
  if (PQstatus(c->db) != CONNECTION_OK && !without &&
      strstr(PQerrorMessage(c->db), "unsupported startup parameter")) {
    PQfinish(c->db); /* a pooler: the statement timeout is ours alone */
    atomic_store(&mut->no_options, 1);
    c->pooled = 1;
    c->db = connect_db(cfg, 1);
  }
  if (!c->db || PQstatus(c->db) != CONNECTION_OK) {
    const char *m = c->db ? PQerrorMessage(c->db) : "out of memory";
    char s[GM_ERRMSG_MAX];
    gm_scrub(s, sizeof s, m, cfg->password);
    gm_seterr(err,
              strstr(m, "authentication failed") || strstr(m, "no password")
                  ? GM_E_AUTH
              : strstr(m, "too many clients") ||
                      strstr(m, "connection slots are reserved") ||
                      strstr(m, "too many connections for")
                  ? GM_E_BUSY /* 53300: the core backs off */
                  : GM_E_CONNECT,
              "postgres: cannot connect to %s: %s", c->server, s);
    goto fail;
  }
  PQsetNoticeProcessor(c->db, quiet, NULL);
  atomic_store(&c->fd, PQsocket(c->db));
  if (PQsetnonblocking(c->db, 1)) {
    gm_seterr(err, GM_E_CONNECT, "postgres: cannot make the connection "
                                 "non-blocking");
    goto fail;
  }
  int pooled = c->pooled;
  if (setup_table(c, err)) goto fail;
  c->pooled |= pooled || atomic_load(&mut->no_options);
  if (cfg->listen && !c->pooled) {
    PGresult *r;
    if (run(c, "LISTEN " CHANNEL, 0, NULL, "listen", NULL, &r, err))
      goto fail;
    PQclear(r);
    c->listening = 1;
  }
  *out = c;
  return GM_OK;
fail:
  pg_close(c);
  return GM_ERR;
}

/* ---- the calls --------------------------------------------------------- */

static int pg_observe(void *p, const char *name, gm_row *out, gm_error *err) {
  pgconn *c = p;
  const char *v[1] = {name};
  char sql[2048];
  PGresult *r;
  snprintf(sql, sizeof sql,
           "SELECT " ROW_COLS("l.", "n.now") " FROM " CLOCK
           " LEFT JOIN \"%s\" AS l ON l.name = $1",
           c->cfg->table);
  if (run(c, sql, 1, v, "observe", NULL, &r, err)) return GM_ERR;
  int rc = read_row(c, r, name, out, err);
  PQclear(r);
  return rc;
}

static int pg_acquire(void *p, const gm_acquire_req *req, gm_row *out,
                      gm_error *err) {
  pgconn *c = p;
  const char *version = req->version ? req->version : "";
  char b[4][24];
  if (check_token(gm_new_token(req) - 1, err) ||
      (req->expect_exists && check_token(req->expect_token, err)))
    return GM_ERR;
  /* tokens were checked; keys are below 2^63: bigints as they are */
  const char *v[7] = {req->name, req->owner, version,
                      dec(b[0], (int64_t)gm_new_token(req)),
                      dec(b[1], req->lease_us),
                      dec(b[2], (int64_t)req->instance),
                      dec(b[3], (int64_t)req->expect_token)};
  if (!req->expect_exists) /* only where there is no row: a racing insert
                            * that loses is not taken */
    return write_row(
        c, "INSERT INTO \"%s\" AS l (name, owner, version, token, acquired_at, "
        "renewed_at, expires_at, instance) SELECT $1::text, $2::text, "
        "$3::text, $4::int8, n.now, n.now, " LEASE("$5") ", $6::int8 FROM "
        CLOCK " ON CONFLICT (name) DO NOTHING RETURNING "
        ROW_COLS("l.", "l.acquired_at"), 6, v, "acquire", token_limit, out,
        err);
  /* the row's token is still the one seen, below the largest, and its
   * lease is over (a released row's ends at the release; an operator's
   * edit may have left it running: it is waited out) */
  return write_row(
      c, "UPDATE \"%s\" AS l SET owner = $2, instance = $6::int8, "
      "version = $3, token = $4::int8, acquired_at = n.now, "
      "renewed_at = n.now, expires_at = " LEASE("$5") " FROM " CLOCK
      " WHERE l.name = $1 AND l.token = $7::int8 AND l.token < "
      "9223372036854775807 AND l.expires_at <= n.now RETURNING "
      ROW_COLS("l.", "n.now"), 7, v, "acquire", token_limit, out, err);
}

static int pg_renew(void *p, const char *name, const char *owner,
                    uint64_t instance, uint64_t token, int64_t lease_us,
                    gm_row *out, gm_error *err) {
  pgconn *c = p;
  char b[3][24];
  if (token > (uint64_t)INT64_MAX) return GM_NOT;
  const char *v[5] = {name, owner, dec(b[0], (int64_t)token),
                      dec(b[1], lease_us), dec(b[2], (int64_t)instance)};
  return write_row(
      c, "UPDATE \"%s\" AS l SET renewed_at = n.now, expires_at = "
      LEASE("$4") " FROM " CLOCK " WHERE l.name = $1 AND l.owner = $2 AND "
      "l.token = $3::int8 AND l.instance = $5::int8 RETURNING "
      ROW_COLS("l.", "n.now"), 5, v, "renew", NULL, out, err);
}

static int pg_release(void *p, const char *name, const char *owner,
                      uint64_t instance, uint64_t token, gm_error *err) {
  pgconn *c = p;
  char b[2][24];
  gm_row r;
  if (token > (uint64_t)INT64_MAX) return GM_NOT;
  const char *v[4] = {name, owner, dec(b[0], (int64_t)token),
                      dec(b[1], (int64_t)instance)};
  /* the notification leaves with the commit of this very statement */
  return write_row(
      c, "WITH w AS (UPDATE \"%s\" AS l SET owner = '', expires_at = "
      "LEAST(l.expires_at, n.now) FROM " CLOCK " WHERE l.name = $1 AND "
      "l.owner = $2 AND l.token = $3::int8 AND l.instance = $4::int8 "
      "RETURNING " ROW_COLS("l.", "n.now") ") SELECT w.*, pg_notify('" CHANNEL
      "', $1) FROM w", 4, v, "release", NULL, &r, err);
}

static int pg_complete(void *p, const char *name, const char *owner,
                       uint64_t instance, uint64_t token, const char *result,
                       gm_error *err) {
  pgconn *c = p;
  char b[2][24];
  gm_row r;
  if (token > (uint64_t)INT64_MAX) return GM_NOT;
  const char *v[5] = {name, owner, dec(b[0], (int64_t)token), result,
                      dec(b[1], (int64_t)instance)};
  return write_row(c,
                   "UPDATE \"%s\" AS l SET done_at = n.now, done_by = l.owner, "
                   "done_token = l.token, result = $4 FROM " CLOCK
                   " WHERE l.name = $1 AND l.owner = $2 AND l.token = $3::int8"
                   " AND ($5::int8 = 0 OR l.instance = $5::int8)" /* 0: any */
                   " RETURNING " ROW_COLS("l.", "n.now"),
                   5, v, "complete", NULL, &r, err);
}

/* Whoever holds it: token + 1 fences the old holder off; the old lease
 * stays (owner '' and a running expiry: held until then) unless now. */
static int pg_force_release(void *p, const char *name, int now, gm_row *out,
                            gm_error *err) {
  pgconn *c = p;
  const char *v[2] = {name, now ? "1" : "0"};
  return write_row(
      c, "WITH w AS (UPDATE \"%s\" AS l SET owner = '', token = l.token + 1, "
      "instance = 0, expires_at = CASE WHEN $2::int4 <> 0 THEN n.now ELSE "
      "GREATEST(l.expires_at, n.now) END FROM " CLOCK " WHERE l.name = $1 "
      "RETURNING " ROW_COLS("l.", "n.now") ") SELECT w.*, pg_notify('" CHANNEL
      "', $1) FROM w", 2, v, "force release", token_limit, out, err);
}

/* Appends s to a text[] literal as one quoted element. */
static char *put_elem(char *w, const char *s) {
  *w++ = '"';
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') *w++ = '\\';
    *w++ = *s;
  }
  *w++ = '"';
  return w;
}

/* One UPDATE for the whole batch: each lock's name, owner, token, lease and
 * instance come as five arrays; the rows that come back are the ones
 * renewed. */
static int pg_renew_many(void *p, gm_renew_req *q, size_t n, gm_error *err) {
  pgconn *c = p;
  size_t cap = 16;
  for (size_t i = 0; i < n; i++) {
    cap += 2 * (strlen(q[i].name) + strlen(q[i].owner)) + 6 + 3 * 21;
    q[i].rc = GM_NOT;
  }
  char *buf = malloc(cap), *w = buf, *a[5];
  if (!buf) return gm_nomem(err);
  for (int k = 0; k < 5; k++) { /* {"a","b"} and {1,2}: array literals */
    a[k] = w;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
      if (i) *w++ = ',';
      if (k < 2) {
        w = put_elem(w, k ? q[i].owner : q[i].name);
        continue;
      }
      /* a token past the column's range is not ours: it matches nothing */
      int64_t x = k == 3 ? q[i].lease_us
                  : k == 4 ? (int64_t)q[i].instance
                  : q[i].token > (uint64_t)INT64_MAX ? 0 : (int64_t)q[i].token;
      w += sprintf(w, "%" PRId64, x);
    }
    *w++ = '}';
    *w++ = '\0';
  }
  char sql[1024];
  snprintf(sql, sizeof sql,
           "UPDATE \"%s\" AS l SET renewed_at = n.now, expires_at = "
           "n.now + b.lease * interval '1 microsecond' FROM " CLOCK ", "
           "unnest($1::text[], $2::text[], $3::int8[], $4::int8[], "
           "$5::int8[]) AS b(name, owner, token, lease, instance) WHERE "
           "l.name = b.name AND l.owner = b.owner AND l.token = b.token AND "
           "l.instance = b.instance "
           "RETURNING l.name, " US("n.now") ", " US("l.expires_at"),
           c->cfg->table);
  PGresult *r;
  int rc = run(c, sql, 5, (const char *const *)a, "renew", NULL, &r, err);
  free(buf);
  if (rc) return GM_ERR;
  for (int j = 0, rows = PQntuples(r); j < rows; j++) {
    const char *name = PQgetvalue(r, j, 0);
    for (size_t i = 0; i < n; i++) {
      if (q[i].rc == GM_OK || strcmp(q[i].name, name) != 0) continue;
      q[i].rc = GM_OK;
      q[i].now = q[i].renewed_at = strtoll(PQgetvalue(r, j, 1), NULL, 10);
      q[i].expires_at = strtoll(PQgetvalue(r, j, 2), NULL, 10);
      break;
    }
  }
  PQclear(r);
  return GM_OK;
}

/* Ends a call in progress on another thread: the socket shut down, its
 * poll wakes and the call fails; the core then closes the connection. */
static void pg_interrupt(void *p) {
  pgconn *c = p;
  int fd = atomic_load(&c->fd);
  if (fd >= 0) shutdown(fd, SHUT_RDWR);
}

/* What has arrived on the connection since the last call: no statement. */
static int pg_changed(void *p, gm_error *err) {
  pgconn *c = p;
  if (!c->listening) {
    if (!c->pooled || !c->cfg->listen || c->said) return GM_NOT;
    c->said = 1;
    gm_seterr(err, GM_E_DB,
              "postgres: %s is a connection pooler (not the server itself): "
              "LISTEN cannot work through it, followers poll (listen=0 in "
              "the URL says so and silences this)",
              c->server);
    return GM_ERR;
  }
  if (!PQconsumeInput(c->db) || PQstatus(c->db) == CONNECTION_BAD)
    return fail_msg(c, GM_E_CONNECT, "reading notifications",
                    PQerrorMessage(c->db), err);
  int any = 0;
  PGnotify *nt;
  while ((nt = PQnotifies(c->db))) {
    any |= strcmp(nt->relname, CHANNEL) == 0;
    PQfreemem(nt);
  }
  return any ? GM_OK : GM_NOT;
}

const gm_backend_ops gm_postgres_ops = {
    .abi = GM_BACKEND_ABI,
    .name = "postgres",
    .url_raw = 1,
    .parse = pg_parse,
    .free_cfg = pg_free_cfg,
    .describe = pg_describe,
    .open = pg_open,
    .close = pg_close,
    .observe = pg_observe,
    .acquire = pg_acquire,
    .renew = pg_renew,
    .release = pg_release,
    .complete = pg_complete,
    .force_release = pg_force_release,
    .renew_many = pg_renew_many,
    .changed = pg_changed,
    .poll_us = 10000, /* changed() is one non-blocking read */
    .interrupt = pg_interrupt,
};
