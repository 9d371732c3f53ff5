/*
 * mysql.c: the MySQL/MariaDB backend, on MariaDB Connector/C.
 *
 * One row per lock (table create_sql, binary strings: names compare byte
 * for byte). Every write is one prepared statement whose own result decides
 * (affected rows under CLIENT_FOUND_ROWS, or a duplicate key) and whose
 * reply carries the server's time (NOW_REPORTED): no client clock is written
 * or compared. A graceful handover wakes followers through a user lock the
 * master holds ("wake-up" below). docs/mysql.md says why, at length.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <errmsg.h>
#include <mysql.h>
#include <ma_pvio.h> /* a statement's own read timeout (watch) */
#include <mysqld_error.h>

#include "backend.h"
#include "hosts.h"
#include "schema.h"
#include "timeutil.h"

#ifndef MARIADB_PACKAGE_VERSION
#error "backends/mysql.c needs MariaDB Connector/C (mysql_optionsv, TLS)"
#endif

#define DEFAULT_TABLE "gomaster_locks"
#define DEFAULT_HOST "localhost"
#define DEFAULT_PORT "3306"
#define DEFAULT_TIMEOUT "2" /* seconds: connect, read, write; under D = 3 s */

/* ---- configuration ----------------------------------------------------- */

/* ssl_mode: an index in ssl_modes; unset is verify_ca with ssl_ca,
 * otherwise the library's default (set_options says more). */
enum ssl_mode {
  SSL_UNSET = -1, SSL_DISABLED, SSL_PREFERRED, SSL_REQUIRED, SSL_VERIFY_CA,
  SSL_VERIFY_IDENTITY
};

static const char *const ssl_modes[] = {
    "disabled", "preferred", "required", "verify_ca", "verify_identity", NULL};

/* Made by my_parse, freed by my_free_cfg. */
typedef struct mycfg {
  char *user, *password, *database, *table, *ssl_ca;
  gm_hosts h; /* its position is shared by the connections: atomics */
  int port, ssl_mode; /* the hosts' default; an enum ssl_mode */
  unsigned connect_timeout, read_timeout, write_timeout; /* whole seconds */
} mycfg;

/* An option that fills field (a timeout: whole seconds, DEFAULT_TIMEOUT). */
#define OPT(k, kd, field) .key = k, .kind = kd, .off = offsetof(mycfg, field)
#define TIMEOUT(k) {OPT(#k, GM_OPT_WHOLE_S, k), .dflt = DEFAULT_TIMEOUT}
static const gm_opt options[] = {
    {OPT("user", GM_OPT_STR, user)},
    {OPT("password", GM_OPT_SECRET, password)},
    {OPT("database", GM_OPT_NAME, database),
     .required = "mysql://user:password@host:3306/database"},
    {OPT("table", GM_OPT_NAME, table), .dflt = DEFAULT_TABLE},
    {OPT("port", GM_OPT_INT, port), .dflt = DEFAULT_PORT, .lo = 1, .hi = 65535},
    TIMEOUT(connect_timeout), TIMEOUT(read_timeout), TIMEOUT(write_timeout),
    {OPT("ssl_mode", GM_OPT_CHOICE, ssl_mode), .names = ssl_modes},
    {OPT("ssl_ca", GM_OPT_STR, ssl_ca)},
    {.key = "host"}, {.key = "hosts"}, {.key = "url"}, /* GM_OPT_KNOWN */
    {.key = NULL}};

static void my_free_cfg(void *p) {
  mycfg *c = p;
  if (!c) return;
  gm_opts_free(options, c);
  gm_hosts_free(&c->h);
  free(c);
}

static int my_parse(const gm_kv *opts, size_t n, void **out, gm_error *err) {
  mycfg *c = calloc(1, sizeof *c);
  *out = NULL;
  if (!c) return gm_nomem(err);
  if (gm_opts_read(options, opts, n, c, "mysql", err) ||
      gm_hosts_parse(&c->h, opts, n, "mysql", DEFAULT_HOST,
                     (unsigned)c->port, err)) {
    my_free_cfg(c);
    return GM_ERR;
  }
  if (c->ssl_mode == SSL_UNSET && c->ssl_ca) c->ssl_mode = SSL_VERIFY_CA;
  *out = c;
  return GM_OK;
}

/* The URL without its password; with a host list, every host and then,
 * once an open worked, "(on HOST:PORT)": the host of the last one. */
static void my_describe(const void *p, char *buf, size_t len) {
  const mycfg *c = p;
  char after[160];
  size_t o = (size_t)snprintf(buf, len, "mysql://%s%s",
                              c->user ? c->user : "", c->user ? "@" : "");
  snprintf(after, sizeof after, "/%s?table=%s", c->database, c->table);
  if (o < len) gm_hosts_put(&c->h, buf + o, len - o, after);
}

/* ---- connection -------------------------------------------------------- */

/* The prepared statements (sql): S_ULOCK and S_WAIT are the wake-up's. */
enum {
  S_OBSERVE, S_INSERT, S_TAKE, S_RENEW, S_RELEASE, S_COMPLETE, S_FORCE,
  S_ULOCK, S_WAIT, NSTMT
};

/* Wake-up (docs/mysql.md): a master holds a user lock per election lock;
 * watch blocks in GET_LOCK on it. */
#define ULOCK_KEY_MAX 32 /* "gomaster:" and 16 hex digits */
#define ULOCK_WAIT_US 20000 /* the longest a master waits for its own */

/* A user lock the connection holds. */
typedef struct ulock {
  char name[GM_NAME_MAX];
  uint64_t token; /* of the grant it is held for; 0: none yet (an acquire
                   * under way, or kept by a woken watch, see my_watch) */
} ulock;

/* Made by my_open, freed by my_close, used by one thread at a time. The
 * config outlives its connections (the core frees it last). */
typedef struct myconn {
  const mycfg *cfg;
  unsigned hi; /* cfg->h.hosts[hi] is this connection's server (under
                * Galera, the one every election node prefers) */
  MYSQL *db;
  MYSQL_STMT *st[NSTMT];
  ulock *ul; /* the user locks this connection holds */
  size_t nul;
} myconn;

/* Microseconds since 1970 of a DATETIME(6) holding UTC; exact. */
#define US(x) "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', " x ")"
#define NOW "UTC_TIMESTAMP(6)"
/* NOW, and the server's reply to this statement carries it (insert id). */
#define NOW_REPORTED                                                          \
  "(TIMESTAMP'1970-01-01 00:00:00' + INTERVAL LAST_INSERT_ID(" US(NOW)        \
  ") MICROSECOND)"

/* The row's columns (fetch_row), now read as `now`, from d LEFT JOIN l. */
#define ROW_OF(now)                                                           \
  "SELECT " US(now) ", l.owner, l.version, l.token, " US("l.acquired_at")    \
  ", " US("l.renewed_at") ", " US("l.expires_at") ", " US("l.done_at")       \
  ", l.done_by, l.done_token, l.result, l.instance, l.name IS NOT NULL, "    \
  "d.v FROM (SELECT "
#define ROW_ON ") AS d LEFT JOIN `%s` AS l ON l.name = ?"
#define MINE "name = ? AND owner = ? AND token = ?" /* the holder's row */
/* A renewal's times, the lease (µs) a parameter or a number. */
#define RENEWED(lease)                                                        \
  "renewed_at = " NOW_REPORTED ", expires_at = " NOW " + INTERVAL " lease    \
  " MICROSECOND"
/* A grant: owner, instance, version, new token, lease_us. */
#define GRANT                                                                 \
  "owner = ?, instance = ?, version = ?, token = ?, acquired_at = "          \
  NOW_REPORTED ", renewed_at = " NOW ", expires_at = " NOW                   \
  " + INTERVAL ? MICROSECOND"

/* %s is the table name, validated and quoted. */
static const char *const sql[NSTMT] = {
    [S_OBSERVE] = ROW_OF(NOW) "0 AS v" ROW_ON,
    /* GRANT's, name */
    [S_INSERT] = "INSERT INTO `%s` SET " GRANT ", name = ?",
    /* GRANT's, name, expect_token */
    [S_TAKE] = "UPDATE `%s` SET " GRANT " WHERE name = ? AND token = ? AND "
               "token < 9223372036854775807 AND expires_at <= " NOW,
    /* lease_us, name, owner, token, instance */
    [S_RENEW] = "UPDATE `%s` SET " RENEWED("?") " WHERE " MINE
                " AND instance = ?",
    /* name, owner, token, instance */
    [S_RELEASE] = "UPDATE `%s` SET owner = '', expires_at = LEAST(expires_at, "
                  NOW ") WHERE " MINE " AND instance = ?",
    /* result, name, owner, token, instance (0: any): the lock itself is
     * unchanged */
    [S_COMPLETE] = "UPDATE `%s` SET done_at = " NOW ", done_by = owner, "
                   "done_token = token, result = ? "
                   "WHERE " MINE " AND instance = IF(? = 0, instance, ?)",
    /* now, name: whoever holds it; token + 1 fences the old holder off;
     * the old lease stays unless now (see backend.h) */
    [S_FORCE] = "UPDATE `%s` SET owner = '', token = token + 1, instance = 0, "
                "expires_at = IF(? <> 0, " NOW ", GREATEST(expires_at, " NOW
                ")) WHERE name = ? AND token < 9223372036854775807",
    /* wait (µs; < 0: RELEASE_LOCK), user lock's name twice, wait */
    [S_ULOCK] = "SELECT IF(? < 0, RELEASE_LOCK(?), GET_LOCK(?, ? / 1000000))",
    /* v: 2 the user lock was free at once, 1 held, then ours (my_watch),
     * 0 still held after the wait (µs); the row is read after the wait,
     * at SYSDATE(6) (docs/mysql.md, "Follower") */
    [S_WAIT] = ROW_OF("SYSDATE(6)") "IF(IS_FREE_LOCK(?), 2, GET_LOCK(?, "
               "? / 1000000)) AS v" ROW_ON,
};

_Static_assert(GM_NAME_MAX == 192 && GM_ID_MAX == 128 && GM_RESULT_MAX == 256,
               "create_sql spells out the column sizes");
static const char create_sql[] =
    "CREATE TABLE IF NOT EXISTS `%s` ("
    " name VARBINARY(191) NOT NULL PRIMARY KEY,"
    " owner VARBINARY(127) NOT NULL DEFAULT '', token BIGINT UNSIGNED NOT NULL,"
    " version VARBINARY(127) NOT NULL DEFAULT '',"
    " acquired_at DATETIME(6) NOT NULL, renewed_at DATETIME(6) NOT NULL,"
    " expires_at DATETIME(6) NOT NULL,"
    " done_at DATETIME(6) NULL DEFAULT NULL," /* NULL: the task is not done */
    " done_by VARBINARY(127) NOT NULL DEFAULT '',"
    " done_token BIGINT UNSIGNED NOT NULL DEFAULT 0,"
    " result VARBINARY(255) NOT NULL DEFAULT '',"
    " instance BIGINT UNSIGNED NOT NULL DEFAULT 0"
    ") ENGINE=InnoDB";

/* err for a failed call on the connection or one statement of it. A server
 * that cannot serve now (the connection lost, or a Galera node outside the
 * primary component: 1047) moves the host list on (src/hosts.c). */
static int fail(myconn *c, MYSQL_STMT *st, const char *what, gm_error *err) {
  unsigned e = st ? mysql_stmt_errno(st) : mysql_errno(c->db);
  int gone = e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST ||
             e == CR_SERVER_LOST_EXTENDED || e == CR_CONNECTION_ERROR ||
             e == CR_CONN_HOST_ERROR || e == ER_UNKNOWN_COM_ERROR;
  char msg[GM_ERRMSG_MAX];
  gm_scrub(msg, sizeof msg, st ? mysql_stmt_error(st) : mysql_error(c->db),
           c->cfg->password);
  if (gone) gm_hosts_failed(&c->cfg->h, c->hi);
  gm_seterr(err, gone ? GM_E_CONNECT : GM_E_DB,
            "mysql: %s failed on %s:%u: %s (%u)", what, c->cfg->h.hosts[c->hi],
            c->cfg->h.ports[c->hi], msg, e);
  return GM_ERR;
}

/* err for a connect that failed, or that is not encrypted as ssl_mode
 * requires (errno 0: connected). */
static void connect_error(const mycfg *cfg, unsigned hi, MYSQL *db,
                          gm_error *err) {
  const char *user = cfg->user ? cfg->user : "";
  unsigned e = mysql_errno(db);
  char at[300], msg[GM_ERRMSG_MAX];
  gm_put_host(at, sizeof at, cfg->h.hosts[hi], cfg->h.ports[hi], "");
  gm_scrub(msg, sizeof msg, mysql_error(db), cfg->password);
  if (e == 0)
    gm_seterr(err, GM_E_CONNECT, "mysql: cannot connect to %s: ssl_mode "
              "requires TLS and the server did not encrypt the connection", at);
  else if (e == ER_ACCESS_DENIED_ERROR ||
           e == ER_ACCESS_DENIED_NO_PASSWORD_ERROR)
    gm_seterr(err, GM_E_AUTH, "mysql: access denied for user '%.64s' on %s",
              user, at);
  else if (e == ER_DBACCESS_DENIED_ERROR)
    gm_seterr(err, GM_E_AUTH,
              "mysql: access denied for user '%.64s' to database '%s' on %s",
              user, cfg->database, at);
  else if (e == ER_BAD_DB_ERROR)
    gm_seterr(err, GM_E_CONNECT, "mysql: unknown database '%s' on %s",
              cfg->database, at);
  else if (e == ER_CON_COUNT_ERROR || e == ER_TOO_MANY_USER_CONNECTIONS ||
           e == ER_USER_LIMIT_REACHED) /* too many: the core backs off */
    gm_seterr(err, GM_E_BUSY, "mysql: %s refuses connections: %s (%u)", at,
              msg, e);
  else
    gm_seterr(err, GM_E_CONNECT, "mysql: cannot connect to %s: %s (%u)", at,
              msg, e);
}

/* Closes c's statements and server connection, if any. */
static void close_db(myconn *c) {
  for (int i = 0; i < NSTMT; i++)
    if (c->st[i]) mysql_stmt_close(c->st[i]);
  memset(c->st, 0, sizeof c->st);
  if (c->db) mysql_close(c->db);
  c->db = NULL;
}

static void my_close(void *p) {
  myconn *c = p;
  if (!c) return;
  free(c->ul);
  close_db(c);
  free(c);
}

/* Sets cfg's options on db. ssl_mode: disabled sets both TLS options off,
 * required enforces TLS, verify_* also the certificate; preferred and
 * unset leave them to the library (preferred: mysql_ssl_set). required
 * may still fall back to plain text on Connector/C 3.3: open_host checks. */
static int set_options(const mycfg *cfg, MYSQL *db, gm_error *err) {
  int plain = cfg->ssl_mode == SSL_DISABLED;
  my_bool off = 0, enforce = cfg->ssl_mode >= SSL_REQUIRED,
          verify = cfg->ssl_mode >= SSL_VERIFY_CA;
  int rc = mysql_optionsv(db, MYSQL_OPT_CONNECT_TIMEOUT,
                          &cfg->connect_timeout) ||
           mysql_optionsv(db, MYSQL_OPT_READ_TIMEOUT, &cfg->read_timeout) ||
           mysql_optionsv(db, MYSQL_OPT_WRITE_TIMEOUT,
                          &cfg->write_timeout) ||
           /* the core reopens after any failure: a silent reconnect would
            * lose the session's setup and hide the failure from it */
           mysql_optionsv(db, MYSQL_OPT_RECONNECT, &off) ||
           mysql_optionsv(db, MYSQL_SET_CHARSET_NAME, "utf8mb4") ||
           (cfg->ssl_ca && !plain &&
            mysql_optionsv(db, MYSQL_OPT_SSL_CA, cfg->ssl_ca)) ||
           ((plain || enforce) &&
            mysql_optionsv(db, MYSQL_OPT_SSL_ENFORCE, &enforce)) ||
           ((plain || verify) &&
            mysql_optionsv(db, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify));
  if (!rc && cfg->ssl_mode == SSL_PREFERRED)
    mysql_ssl_set(db, NULL, NULL, cfg->ssl_ca, NULL, NULL);
  if (!rc) return GM_OK;
  gm_seterr(err, GM_E_CONNECT,
            "mysql: the client library refused a connection option");
  return GM_ERR;
}

/* ---- the table's columns: a table made beforehand is checked -------- */

static const char columns_sql[] =
    "SELECT COLUMN_NAME, DATA_TYPE, COALESCE(DATETIME_PRECISION, 0),"
    " COALESCE(CHARACTER_MAXIMUM_LENGTH, 0), COLUMN_TYPE, EXTRA"
    " FROM information_schema.COLUMNS"
    " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '%s'"
    " ORDER BY ORDINAL_POSITION";

/* What keeps each kind, as information_schema names it (not BINARY(n): it
 * pads with zero bytes). */
static const gm_coltype my_types[] = {
    [GM_COL_TIME] = {.types = "|datetime|timestamp|", .prec = 6,
                     .want = "DATETIME(6) or TIMESTAMP(6) (microseconds, no ON "
                             "UPDATE)",
                     .banned = "on update"},
    [GM_COL_U64] = {.types = "|bigint|", .want = "BIGINT UNSIGNED"},
    [GM_COL_TEXT] = {.types = "|varbinary|varchar|char|blob|text|tinyblob|"
                              "tinytext|mediumblob|mediumtext|longblob|"
                              "longtext|",
                     .want = "VARBINARY(%u) or text at least that wide",
                     .wide = 1}};

/* The rows of q (text protocol); NULL with err filled when it failed. */
static MYSQL_RES *query(myconn *c, const char *q, const char *what,
                        gm_error *err) {
  MYSQL_RES *res = mysql_query(c->db, q) ? NULL : mysql_store_result(c->db);
  if (!res) fail(c, NULL, what, err);
  return res;
}

static int check_columns(myconn *c, gm_error *err) {
  const gm_schema schema = {
      c->cfg->table, gm_lock_columns, NULL,
      "mysql: table '%s' cannot keep the lease: column '%s' is %.64s; "
      "expected %s",
      "mysql: table '%s' has no column '%s'", 0, my_types};
  char q[512];
  snprintf(q, sizeof q, columns_sql, c->cfg->table); /* a checked name */
  MYSQL_RES *res = query(c, q, "reading the columns", err);
  if (!res) return GM_ERR;
  gm_colcheck k;
  int rc = GM_OK;
  MYSQL_ROW row;
  gm_cols_begin(&k, &schema);
  while (rc == GM_OK && (row = mysql_fetch_row(res))) {
    gm_col_seen col = {row[0], row[1] ? row[1] : "", row[4],
                       row[5] ? row[5] : "",
                       row[2] ? strtoll(row[2], NULL, 10) : 0,
                       row[3] ? strtoll(row[3], NULL, 10) : 0};
    rc = gm_cols_see(&k, &col, err);
  }
  mysql_free_result(res);
  return rc == GM_OK ? gm_cols_end(&k, err) : rc;
}

/* Everything a fresh connection needs, so that a reconnect after a server
 * restart is the same as the first connect. */
static int setup_session(myconn *c, gm_error *err) {
  char q[1024];
  /* a row lock never outwaits the read timeout on the server side */
  snprintf(q, sizeof q,
           "SET SESSION autocommit = 1, innodb_lock_wait_timeout = %u, "
           "time_zone = '+00:00'", c->cfg->read_timeout);
  if (mysql_query(c->db, q)) return fail(c, NULL, "session setup", err);
  /* No DDL for a table that is there (under Galera each is a cluster-wide
   * step that waits out a dead node's failure detection); a user without
   * CREATE may still use one: if the statements prepare, it is there. */
  snprintf(q, sizeof q, "SELECT 1 FROM `%s` LIMIT 0", c->cfg->table);
  int exists = mysql_query(c->db, q) == 0;
  if (exists) mysql_free_result(mysql_store_result(c->db));
  snprintf(q, sizeof q, create_sql, c->cfg->table);
  gm_error create_err;
  int create_failed = !exists && mysql_query(c->db, q) != 0 &&
                      fail(c, NULL, "create table", &create_err);
  for (int i = 0; i < NSTMT; i++) {
    c->st[i] = mysql_stmt_init(c->db);
    if (!c->st[i]) return fail(c, NULL, "statement init", err);
    snprintf(q, sizeof q, sql[i], c->cfg->table);
    if (mysql_stmt_prepare(c->st[i], q, strlen(q)) == 0) continue;
    if (create_failed)
      *err = create_err;
    /* a column missing (a table made by hand): check_columns names it */
    else if (mysql_stmt_errno(c->st[i]) != ER_BAD_FIELD_ERROR ||
             check_columns(c, err) == GM_OK)
      fail(c, c->st[i], "prepare", err);
    return GM_ERR;
  }
  return check_columns(c, err);
}

/* The rank of c's server (docs/galera.md, "Wake-ups"): 0 off Galera (a
 * server without @@wsrep_on too), else its member index (the cluster's own
 * order), after every Synced node when it is not Synced; a node not ready
 * in the primary component: GM_ERR. */
static int galera_rank(myconn *c, unsigned *rank, gm_error *err) {
  static const char *const vars[] = {"wsrep_on", "wsrep_local_index",
                                     "wsrep_ready", "wsrep_cluster_status",
                                     "wsrep_local_state"};
  char v[5][32] = {"0", "-1", "", "", ""}; /* each value, as vars names them */
  *rank = 0;
  MYSQL_RES *res = query(c, "SELECT 'wsrep_on', @@wsrep_on UNION ALL SELECT "
                            "VARIABLE_NAME, VARIABLE_VALUE FROM "
                            "information_schema.GLOBAL_STATUS WHERE "
                            "VARIABLE_NAME LIKE 'wsrep%'",
                         "reading the Galera status", err);
  if (!res) /* no such variable: not Galera, and err is moot */
    return mysql_errno(c->db) == ER_UNKNOWN_SYSTEM_VARIABLE ? GM_OK : GM_ERR;
  MYSQL_ROW row;
  while ((row = mysql_fetch_row(res)))
    for (int i = 0; i < 5; i++)
      if (row[0] && row[1] && strcasecmp(row[0], vars[i]) == 0)
        gm_strlcpy(v[i], row[1], sizeof v[i]);
  mysql_free_result(res);
  if (strcmp(v[0], "0") == 0 || strcasecmp(v[0], "OFF") == 0) return GM_OK;
  long index = strtol(v[1], NULL, 10);
  int ready = strcasecmp(v[2], "ON") == 0,
      primary = strcasecmp(v[3], "Primary") == 0;
  if (!ready || !primary || index < 0) {
    gm_seterr(err, GM_E_CONNECT,
              "mysql: %s:%u is a Galera node outside the primary component "
              "(wsrep_ready %s, wsrep_cluster_status %s)",
              c->cfg->h.hosts[c->hi], c->cfg->h.ports[c->hi],
              ready ? "ON" : "OFF", primary ? "Primary" : "not Primary");
    return GM_ERR;
  }
  if (index > 65535) index = 65535;
  *rank = (unsigned)index + (strcmp(v[4], "4") == 0 ? 0 : 65536u); /* Synced */
  return GM_OK;
}

/* Connects c to host hi and sets its session up when the server's rank is
 * 0 or any is set; else GM_NOT with *rank (gm_hosts_open_ranked). */
static int open_host(void *p, unsigned hi, int any, unsigned *rank,
                     gm_error *err) {
  myconn *c = p;
  const mycfg *cfg = c->cfg;
  int rc = GM_ERR;
  c->hi = hi;
  if (!(c->db = mysql_init(NULL))) return gm_nomem(err);
  if (set_options(cfg, c->db, err)) goto fail;
  if (!mysql_real_connect(c->db, cfg->h.hosts[hi], cfg->user, cfg->password,
                          cfg->database, cfg->h.ports[hi], NULL,
                          CLIENT_FOUND_ROWS) ||
      (cfg->ssl_mode >= SSL_REQUIRED && !mysql_get_ssl_cipher(c->db))) {
    connect_error(cfg, hi, c->db, err);
    goto fail;
  }
  if (galera_rank(c, rank, err)) goto fail;
  if (*rank != 0 && !any)
    rc = GM_NOT; /* a node of lower rank may answer */
  else if (setup_session(c, err) == GM_OK)
    return GM_OK;
fail:
  close_db(c);
  return rc;
}

static int my_open(const void *p, void **out, gm_error *err) {
  const mycfg *cfg = p;
  *out = NULL;
  /* Connector/C starts once (pthread_once): any thread may call this */
  if (mysql_library_init(0, NULL, NULL)) {
    gm_seterr(err, GM_E_CONNECT, "mysql: the client library did not start");
    return GM_ERR;
  }
  myconn *c = calloc(1, sizeof *c);
  if (!c) return gm_nomem(err);
  c->cfg = cfg;
  mysql_thread_init(); /* a no-op in Connector/C 3: no thread_end needed */
  if (gm_hosts_open_ranked(&cfg->h, open_host, c, err) == GM_OK) {
    *out = c;
    return GM_OK;
  }
  my_close(c);
  return GM_ERR;
}

/* ---- statements -------------------------------------------------------- */

/* Binds and runs st with the parameters that follow fmt, one letter each:
 * 's' a string, 'u' a uint64_t, 'i' an int64_t. Nonzero: it failed
 * (mysql_stmt_errno). */
#define MAX_PARAMS 7
static int vexec(MYSQL_STMT *st, const char *fmt, va_list ap) {
  MYSQL_BIND b[MAX_PARAMS] = {0};
  unsigned long len[MAX_PARAMS];
  uint64_t v[MAX_PARAMS];
  for (int i = 0; fmt[i]; i++) {
    if (fmt[i] == 's') { /* the library only reads parameters */
      char *str = (char *)va_arg(ap, const char *);
      len[i] = (unsigned long)strlen(str);
      b[i] = (MYSQL_BIND){.buffer_type = MYSQL_TYPE_STRING, .buffer = str,
                          .buffer_length = len[i], .length = &len[i]};
      continue;
    }
    v[i] = fmt[i] == 'u' ? va_arg(ap, uint64_t) : (uint64_t)va_arg(ap, int64_t);
    b[i] = (MYSQL_BIND){.buffer_type = MYSQL_TYPE_LONGLONG, .buffer = &v[i],
                        .is_unsigned = fmt[i] == 'u'};
  }
  return mysql_stmt_bind_param(st, b) || mysql_stmt_execute(st);
}

/* A write that lost a race, not a failure: a duplicate key, or a deadlock,
 * as Galera reports a certification conflict. Nothing of ours took effect. */
static int lost_race(unsigned e) {
  return e == ER_DUP_ENTRY || e == ER_LOCK_DEADLOCK;
}

/* Runs a prepared write with the parameters of fmt (see vexec). GM_OK
 * when it changed one row, with, unless now is NULL, the statement's time
 * (the insert id, see NOW_REPORTED); GM_NOT when it changed none or lost a
 * race (lost_race); GM_ERR. */
static int run_write(myconn *c, int which, const char *what, int64_t *now,
                     gm_error *err, const char *fmt, ...) {
  MYSQL_STMT *st = c->st[which];
  va_list ap;
  va_start(ap, fmt);
  int failed = vexec(st, fmt, ap);
  va_end(ap);
  if (failed) {
    if (lost_race(mysql_stmt_errno(st))) {
      gm_seterr(err, GM_E_CONFLICT, "%s: another node's write came first (%u)",
                what, mysql_stmt_errno(st));
      return GM_NOT;
    }
    return fail(c, st, what, err);
  }
  if (mysql_stmt_affected_rows(st) != 1) return GM_NOT;
  if (now && (*now = (int64_t)mysql_stmt_insert_id(st)) <= 0) {
    gm_seterr(err, GM_E_DB, "mysql: %s: the server did not report its time",
              what);
    return GM_ERR;
  }
  return GM_OK;
}

#define MAX_COLS 14
typedef struct results {
  MYSQL_BIND b[MAX_COLS];
  unsigned long len[MAX_COLS];
  my_bool nul[MAX_COLS];
  my_bool cut[MAX_COLS]; /* the value did not fit (or convert) */
  int n;
} results;

/* Binds r to the buffers that follow fmt, one letter each: 'i' an int64_t
 * *, 'u' a uint64_t *, 's' a char * and its size_t size (terminated by
 * fetch_row). A NULL leaves a buffer as it was: zeroed by the caller. */
static void bind_out(results *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  for (int i = r->n = 0; fmt[i]; i = ++r->n) {
    int str = fmt[i] == 's';
    r->b[i] = (MYSQL_BIND){
        .buffer = va_arg(ap, void *), .is_null = &r->nul[i],
        .error = &r->cut[i], .length = &r->len[i], .is_unsigned = fmt[i] == 'u',
        .buffer_type = str ? MYSQL_TYPE_STRING : MYSQL_TYPE_LONGLONG};
    if (str) r->b[i].buffer_length = va_arg(ap, size_t) - 1;
  }
  va_end(ap);
}

/* Runs st with the parameters of fmt (see vexec) and fetches its first row
 * into r's buffers: 0 (or MYSQL_DATA_TRUNCATED: r->cut says where),
 * MYSQL_NO_DATA, or 1 when it failed, with err filled unless NULL. */
static int fetch_one(myconn *c, MYSQL_STMT *st, results *r, const char *what,
                     gm_error *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = vexec(st, fmt, ap) || mysql_stmt_bind_result(st, r->b) ||
                   mysql_stmt_store_result(st)
               ? 1
               : mysql_stmt_fetch(st);
  va_end(ap);
  if (rc == 1 && err) fail(c, st, what, err); /* before free clears it */
  mysql_stmt_free_result(st);
  return rc;
}

/* The observe statement's columns, in order, as errors name them. */
static const char *const row_cols[MAX_COLS] = {
    "now", "owner", "version", "token", "acquired_at", "renewed_at",
    "expires_at", "done_at", "done_by", "done_token", "result", "instance",
    "name"};

/* Runs the observe statement (key NULL) or the watch's on user lock key
 * (wait_us) into *row (zeroed first) and *v unless NULL (see S_WAIT). */
static int fetch_row(myconn *c, const char *name, const char *key,
                     int64_t wait_us, gm_row *row, int64_t *v, gm_error *err) {
  MYSQL_STMT *st = c->st[key ? S_WAIT : S_OBSERVE];
  const char *what = key ? "watch" : "observe";
  results r = {0};
  memset(row, 0, sizeof *row);
  int64_t exists = 0, wake = 0;
  /* token signed: a value past INT64_MAX (no grant goes there) is cut */
  bind_out(&r, "issiiiiisusuii", &row->now, row->owner, sizeof row->owner,
           row->version, sizeof row->version, &row->token, &row->acquired_at,
           &row->renewed_at, &row->expires_at, &row->done_at, row->done_by,
           sizeof row->done_by, &row->done_token, row->result,
           sizeof row->result, &row->instance, &exists, v ? v : &wake);
  int rc = key ? fetch_one(c, st, &r, what, err, "ssis", key, key, wait_us,
                           name)
               : fetch_one(c, st, &r, what, err, "s", name);
  if (rc == 1) return GM_ERR;
  if (rc == MYSQL_NO_DATA || r.nul[0]) {
    gm_seterr(err, GM_E_DB, "mysql: %s: the server returned no row", what);
    return GM_ERR;
  }
  row->exists = exists != 0;
  for (int i = 0; i < r.n; i++) {
    /* NULL where the election needs a value, or a value that does not
     * fit: a row edited by hand; named, never guessed at */
    int needed = i == 1 || (i >= 3 && i <= 6);
    if (i && row->exists && (r.cut[i] || (needed && r.nul[i])))
      return gm_bad_column(err, "mysql", name, c->cfg->table, row_cols[i],
                           r.nul[i] ? "is NULL"
                                    : "holds a value this library cannot "
                                      "read (too long or out of range)");
    if (r.b[i].buffer_type == MYSQL_TYPE_STRING)
      ((char *)r.b[i].buffer)[r.nul[i] ? 0 : r.len[i]] = '\0';
  }
  return GM_OK;
}

/* ---- wake-up: the master's user locks ----------------------------------- */

/* From another thread: a call blocked on the socket (a hung server) fails
 * at once, the connection with it; the core then closes it. */
static void my_interrupt(void *p) {
  myconn *c = p;
  my_socket fd = c->db ? mysql_get_socket(c->db) : MARIADB_INVALID_SOCKET;
  if (fd != MARIADB_INVALID_SOCKET) shutdown(fd, SHUT_RDWR);
}

/* The user lock's name: "gomaster:" and the FNV-1a (64 bits) of database,
 * table and lock name, each with its NUL (docs/mysql.md, "Name"). */
static void lock_key(const mycfg *cfg, const char *name,
                     char key[ULOCK_KEY_MAX]) {
  const char *parts[3] = {cfg->database, cfg->table, name};
  uint64_t h = 0xcbf29ce484222325u;
  for (int i = 0; i < 3; i++)
    for (const unsigned char *p = (const unsigned char *)parts[i];; p++) {
      h = (h ^ *p) * 0x100000001b3u;
      if (!*p) break;
    }
  snprintf(key, ULOCK_KEY_MAX, "gomaster:%016" PRIx64, h);
}

static ulock *ulock_find(myconn *c, const char *name) {
  for (size_t i = 0; i < c->nul; i++)
    if (strcmp(c->ul[i].name, name) == 0) return &c->ul[i];
  return NULL;
}

/* Runs GET_LOCK (waiting wait_us at most) or RELEASE_LOCK (wait_us < 0)
 * on lock name's user lock: its value (1: taken or freed), or -1 when it
 * failed. Silent: the user locks only speed things up, and a lost
 * connection shows in the election's next statement anyway. */
static long long ulock_run(myconn *c, const char *name, int64_t wait_us) {
  char key[ULOCK_KEY_MAX];
  results r = {0};
  int64_t x = 0;
  lock_key(c->cfg, name, key);
  bind_out(&r, "i", &x);
  int rc = fetch_one(c, c->st[S_ULOCK], &r, "user lock", NULL, "issi",
                     wait_us, key, key, wait_us);
  return rc == 0 && !r.nul[0] ? x : -1;
}

/* Records lock name's user lock, just taken, as held for no grant yet;
 * NULL, and let go, when there is no room. */
static ulock *ulock_got(myconn *c, const char *name) {
  ulock *u = realloc(c->ul, (c->nul + 1) * sizeof *u); /* one per grant */
  if (!u && ulock_run(c, name, -1) < 0) my_interrupt(c);
  if (!u) return NULL;
  c->ul = u;
  u = &c->ul[c->nul++];
  gm_strlcpy(u->name, name, sizeof u->name);
  u->token = 0;
  return u;
}

/* Holds lock name's user lock (a statement only where not held yet):
 * NULL when another session held it for wait_us (a woken watch until it
 * acquires or lets go; a master paused past its lease keeps it). */
static ulock *ulock_take(myconn *c, const char *name, int64_t wait_us) {
  ulock *u = ulock_find(c, name);
  return u || ulock_run(c, name, wait_us) != 1 ? u : ulock_got(c, name);
}

/* After a grant or its renewal: holds its user lock (when a watch or a
 * paused session kept it from the grant, each renewal tries again). */
static void ulock_hold(myconn *c, const char *name, uint64_t token) {
  ulock *u = ulock_take(c, name, ULOCK_WAIT_US);
  if (u) u->token = token;
}

/* Lock name's row is not ours (any more): frees its user lock (a waiting
 * follower wakes); a RELEASE_LOCK that fails ends the session, freeing it. */
static void ulock_drop(myconn *c, const char *name) {
  ulock *u = ulock_find(c, name);
  if (!u) return;
  if (ulock_run(c, name, -1) < 0) my_interrupt(c);
  *u = c->ul[--c->nul];
}

/* Lets go the user locks a woken watch kept and no grant took (a
 * follower that did not acquire: backend.h, watch_one). */
static void ulock_settle(myconn *c) {
  for (size_t i = c->nul; i-- > 0;)
    if (!c->ul[i].token) ulock_drop(c, c->ul[i].name);
}

static int my_observe(void *p, const char *name, gm_row *out, gm_error *err) {
  ulock_settle(p);
  int rc = fetch_row(p, name, NULL, 0, out, NULL, err);
  /* a user lock still held for another grant goes (a master past its
   * deadline whose lease was taken never renews or releases it again) */
  ulock *u = rc == GM_OK ? ulock_find(p, name) : NULL;
  if (u && (!out->exists || out->token != u->token)) ulock_drop(p, name);
  return rc;
}

/* The row as a successful write of this connection left it. */
static int my_acquire(void *p, const gm_acquire_req *req, gm_row *out,
                      gm_error *err) {
  myconn *c = p;
  const char *version = req->version ? req->version : "";
  int64_t now;
  uint64_t token = gm_new_token(req);
  /* the user lock before the row (not waiting: that would delay the
   * grant): a follower that reads the grant finds it held, and waits */
  ulock *u = ulock_take(c, req->name, 0);
  /* the insert's parameters are the update's without expect_token */
  int rc = run_write(c, req->expect_exists ? S_TAKE : S_INSERT, "acquire",
                     &now, err, req->expect_exists ? "susuisu" : "susuis",
                     req->owner, req->instance, version, token, req->lease_us,
                     req->name, req->expect_token);
  if (rc == GM_OK) ulock_hold(c, req->name, token); /* u, or tried again */
  else if (u && !u->token) ulock_drop(c, req->name); /* taken for this try */
  if (rc != GM_OK) return rc;
  gm_row_written(out, req->owner, version, token, now, now, req->lease_us);
  out->instance = req->instance;
  return GM_OK;
}

static int my_renew(void *p, const char *name, const char *owner,
                    uint64_t instance, uint64_t token, int64_t lease_us,
                    gm_row *out, gm_error *err) {
  myconn *c = p;
  int64_t now;
  int rc = run_write(c, S_RENEW, "renew", &now, err, "issuu", lease_us, name,
                     owner, token, instance);
  if (rc == GM_NOT) ulock_drop(c, name); /* not ours (any more) */
  if (rc != GM_OK) return rc;
  ulock_hold(c, name, token);
  gm_row_written(out, owner, "", token, 0, now, lease_us); /* the times */
  return GM_OK;
}

static int my_release(void *p, const char *name, const char *owner,
                      uint64_t instance, uint64_t token, gm_error *err) {
  int rc = run_write(p, S_RELEASE, "release", NULL, err, "ssuu", name, owner,
                     token, instance);
  /* first the row, then the user lock: a follower it wakes finds it free */
  if (rc != GM_ERR) ulock_drop(p, name);
  return rc;
}

static int my_complete(void *p, const char *name, const char *owner,
                       uint64_t instance, uint64_t token, const char *result,
                       gm_error *err) {
  return run_write(p, S_COMPLETE, "complete", NULL, err, "sssuuu", result,
                   name, owner, token, instance, instance);
}

static int my_force_release(void *p, const char *name, int now, gm_row *out,
                            gm_error *err) {
  int rc = run_write(p, S_FORCE, "force release", NULL, err, "is",
                     (int64_t)(now != 0), name);
  /* the decision was the write's; this read only reports the row */
  return rc != GM_OK ? rc : fetch_row(p, name, NULL, 0, out, NULL, err);
}

/* Appends sep and s as a hex literal (X'...'): nothing to escape. */
static char *put_hex(char *w, const char *sep, const char *s) {
  static const char hex[] = "0123456789abcdef";
  w += sprintf(w, "%sX'", sep);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    *w++ = hex[*p >> 4];
    *w++ = hex[*p & 15];
  }
  *w++ = '\'';
  return w;
}

/* One UPDATE for every lock of the batch, when they share a lease; fewer
 * rows matched than asked cannot say which: GM_NOT, the core renews each. */
static int my_renew_many(void *p, gm_renew_req *q, size_t n, gm_error *err) {
  myconn *c = p;
  int same = n > 1;
  size_t cap = 512 + strlen(c->cfg->table);
  for (size_t i = 0; i < n; i++) {
    same = same && q[i].lease_us == q[0].lease_us;
    cap += 4 * strlen(q[i].name) + 2 * strlen(q[i].owner) + 96;
  }
  if (!same) return GM_NOT;
  char *text = malloc(cap), *w = text;
  if (!text) return gm_nomem(err);
  w += sprintf(w, "UPDATE `%s` SET " RENEWED("%lld") " WHERE name IN (",
               c->cfg->table, (long long)q[0].lease_us);
  for (size_t i = 0; i < n; i++) w = put_hex(w, i ? "," : "", q[i].name);
  w += sprintf(w, ") AND (name, owner, instance, token) IN (");
  for (size_t i = 0; i < n; i++) {
    w = put_hex(put_hex(w, i ? ",(" : "(", q[i].name), ",", q[i].owner);
    w += sprintf(w, ",%llu,%llu)", (unsigned long long)q[i].instance,
                 (unsigned long long)q[i].token);
  }
  *w++ = ')';
  int bad = mysql_real_query(c->db, text, (unsigned long)(w - text));
  free(text);
  /* a lost race (Galera's conflict): each alone says which were lost */
  if (bad && !lost_race(mysql_errno(c->db)))
    return fail(c, NULL, "renew", err);
  int64_t now = bad ? 0 : (int64_t)mysql_insert_id(c->db);
  if (bad || mysql_affected_rows(c->db) != n || now <= 0) return GM_NOT;
  for (size_t i = 0; i < n; i++) {
    q[i].rc = GM_OK;
    q[i].renewed_at = q[i].now = now;
    q[i].expires_at = now + q[i].lease_us;
    ulock_hold(c, q[i].name, q[i].token);
  }
  return GM_OK;
}

/* ---- wake-up: watch ---------------------------------------------------- */

#define WAIT_S 60 /* the longest GET_LOCK wait */

/* The connection's read timeout, whole seconds (Connector/C's pvio: the
 * one place it is kept after the connect). */
static void read_timeout(myconn *c, unsigned s) {
  MARIADB_PVIO *pv = c->db ? c->db->net.pvio : NULL;
  if (pv && pv->methods && pv->methods->set_timeout)
    pv->methods->set_timeout(pv, PVIO_READ_TIMEOUT, (int)s);
}

/* Blocks in GET_LOCK on lock name's user lock for at most timeout_us and
 * WAIT_S, then reads the row into *row where given; this statement's reads
 * time out read_timeout after the wait, every other one's as set. */
static int my_watch(void *p, const char *name, int64_t timeout_us,
                    gm_row *row, gm_error *err) {
  myconn *c = p;
  gm_row mine;
  int64_t v = 0, most = WAIT_S * GM_US_PER_S;
  char key[ULOCK_KEY_MAX];
  int64_t wait_us = timeout_us < 0 ? 0 : timeout_us < most ? timeout_us : most;
  int keep = row != NULL;
  ulock_settle(c); /* else GET_LOCK, re-entrant, would return at once */
  lock_key(c->cfg, name, key);
  read_timeout(c, c->cfg->read_timeout + (unsigned)(wait_us / GM_US_PER_S) + 1);
  int rc = fetch_row(c, name, key, wait_us, row = row ? row : &mine, &v, err);
  read_timeout(c, c->cfg->read_timeout);
  if (rc != GM_OK && err->code != GM_E_ROW) return GM_ERR;
  if (rc != GM_OK) row->now = 0; /* unreadable: the next observe says why */
  /* got it: kept for this follower's acquire where the row looks free,
   * else let go at once for the next watcher (backend.h, watch_one) */
  keep = keep && row->now &&
         (!row->exists || !row->owner[0] || row->expires_at <= row->now);
  if (v == 1 && ulock_got(c, name) && !keep) ulock_drop(c, name);
  return v == 1 || v == 2 ? GM_OK : GM_NOT;
}

const gm_backend_ops gm_mysql_ops = {
    .abi = GM_BACKEND_ABI, .name = "mysql", .url_raw = 0,
    .parse = my_parse, .free_cfg = my_free_cfg, .describe = my_describe,
    .open = my_open, .close = my_close, .observe = my_observe,
    .acquire = my_acquire, .renew = my_renew, .release = my_release,
    .complete = my_complete, .force_release = my_force_release,
    .renew_many = my_renew_many, .interrupt = my_interrupt, .watch = my_watch,
    .watch_shared = 1, .watch_one = 1, .watch_crash = 1,
};
