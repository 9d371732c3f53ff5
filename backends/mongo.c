/*
 * mongo.c: the MongoDB backend (libmongoc 1.23, MongoDB 4.2 and later).
 *
 * One document per lock in a collection (gomaster_locks by default):
 *   {_id: name, owner, instance (int64: the elector instance granted it;
 *    absent in documents written before it existed, which then match no
 *    renewal), token (int64), version, acquired_at, renewed_at, expires_at
 *    (BSON dates)}
 * and, once a one-time task run under the lock is done, its record:
 *   {done_at (BSON date), done_by, done_token (int64), result}
 * which every later write keeps.
 *
 * Every time comes from the server: acquire, renew and release are one
 * findAndModify each whose update is an aggregation pipeline reading $$NOW,
 * so the server computes and compares expiry inside the write that changes
 * the document, and whether it took effect is read from the document that
 * write returns. A racing insert that loses fails with duplicate key (11000),
 * which is GM_NOT. A release keeps the document, so tokens keep growing.
 *
 * The URL is a standard connection string handed to libmongoc as written,
 * minus the options that are ours (database, collection, write_concern,
 * read_concern, timeout). Error messages never contain the password nor the
 * TLS key password: every message from libmongoc is scrubbed of them.
 *
 * No thread: the core's wake-up connection tails release events (watch,
 * below), and interrupt ends its wait through sockets of our own
 * (src/mongo_stream.c). Documents become rows in src/mongo_doc.c.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mongoc/mongoc.h>

#include "backend.h"
#include "mongo_doc.h"
#include "mongo_stream.h"
#include "timeutil.h"
#include "url.h"

#define DEFAULT_DATABASE "gomaster"
#define DEFAULT_COLLECTION "gomaster_locks"
#define DEFAULT_TIMEOUT_US 2000000 /* well under the default renew deadline */
#define NOW_FIELD "gomaster_server_now"
#define BATCH_FIELD "gomaster_batch" /* the marker of the last batch renewal */
#define EVENTS_SUFFIX "_events" /* the capped collection watch tails */
#define EVENTS_SIZE 65536 /* bytes */
#define EVENTS_MAX 64     /* documents */
#define WATCH_AWAIT_MS 5000 /* the longest await of a wake-up connection */
#define NSECRETS 3

typedef struct mongo_cfg {
  mongoc_uri_t *uri;     /* our options removed, timeouts and appname set */
  mongoc_uri_t *watch_uri; /* the same, reads that outlast WATCH_AWAIT_MS */
  char *database;
  char *collection;
  bson_t *write_concern; /* {writeConcern: ...}, NULL: the URI's own */
  bson_t *read_concern;  /* {readConcern: ...}, NULL: the URI's own */
  char *secrets[NSECRETS]; /* no message may show them: the password as
                            * written and decoded, the TLS key password */
  char describe[256];
} mongo_cfg;

typedef struct mongo_conn {
  const mongo_cfg *cfg; /* the backend's config outlives its connections */
  mongoc_client_t *client;
  mongoc_collection_t *coll;
  mongoc_collection_t *events; /* NULL: no events collection (see watch) */
  int watchable;        /* watch can block here (no TLS, events there) */
  int64_t await_ms;     /* the longest await of one getMore */
  mongoc_cursor_t *tail; /* watch's cursor on the events, kept across calls */
  uint64_t marker_base; /* random per connection: ids never repeat */
  uint64_t batches, announced;
  gm_msocks *socks;     /* its sockets, for interrupt; NULL with TLS */
} mongo_conn;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Once per process, before any client, never undone (the application may
 * use libmongoc itself, and set its own log handler after this). libmongoc's
 * default handler prints to stdout and stderr, where a command line's output
 * goes; every failure that matters comes back as an error message instead. */
static void init_mongoc(void) {
  mongoc_log_set_handler(NULL, NULL);
  mongoc_init();
}

static const char *const our_keys[] = {
    "database", "collection", "write_concern", "read_concern", "timeout", NULL};

/* ---- messages without secrets ------------------------------------------ */

/* Replaces every occurrence of each secret in msg by "***" (gm_scrub). */
static void scrub(const mongo_cfg *cfg, char *msg, size_t size) {
  if (!cfg || !msg || size == 0) return;
  for (int i = 0; i < NSECRETS; i++) gm_scrub(msg, size, msg, cfg->secrets[i]);
}

/* Which gm error code a libmongoc failure is. Busy (docs/mongo.md): a
 * handshake the server ended before any reply (mongod at its connection
 * limit), 262 ExceededTimeLimit, "too many open connections". */
static int classify(const bson_error_t *e) {
  static const char *const busy[] = {
      "connection closed calling ", "rpc bytes. calling ",
      "closed connection. calling ", "from server. calling ",
      "too many open conn"};
  int srv = e->domain == MONGOC_ERROR_SERVER;
  for (int i = 0; i < 5; i++)
    if (strstr(e->message, busy[i])) return GM_E_BUSY;
  if (srv && e->code == 262) return GM_E_BUSY;
  if (e->domain == MONGOC_ERROR_SERVER_SELECTION ||
      e->domain == MONGOC_ERROR_STREAM)
    return GM_E_CONNECT;
  if ((e->domain == MONGOC_ERROR_CLIENT &&
       e->code == MONGOC_ERROR_CLIENT_AUTHENTICATE) ||
      (srv && (e->code == 18 /* AuthenticationFailed */ || e->code == 13)))
    return GM_E_AUTH;
  return GM_E_DB;
}

static int fail(const mongo_cfg *cfg, gm_error *err, const char *what,
                const bson_error_t *e) {
  int code = classify(e);
  gm_seterr(err, code, "mongodb backend: %s failed%s: %s", what,
            code == GM_E_BUSY ? " (the server refuses connections)" : "",
            e->message);
  if (err) scrub(cfg, err->msg, sizeof err->msg);
  return GM_ERR;
}

/* ---- parse ------------------------------------------------------------- */

/* The index of key in our_keys, or -1. */
static int ours(const char *key) {
  for (int i = 0; our_keys[i]; i++)
    if (strcmp(our_keys[i], key) == 0) return i;
  return -1;
}

/* A connection-string option libmongoc knows (names are case-insensitive). */
static int is_mongo_option(const char *key) {
  static const char *const special[] = {
      "w", "readPreferenceTags", "authMechanismProperties", "authSource",
      "authMechanism", "gssapiServiceName", "readConcernLevel",
      "compressors", NULL};
  if (mongoc_uri_option_is_int32(key) || mongoc_uri_option_is_int64(key) ||
      mongoc_uri_option_is_bool(key) || mongoc_uri_option_is_utf8(key))
    return 1;
  for (const char *const *k = special; *k; k++)
    if (strcasecmp(*k, key) == 0) return 1;
  return 0;
}

/* url without the query parameters that are ours, for libmongoc (which
 * warns of options it does not know); NULL when out of memory. */
static char *strip_ours(const char *url) {
  char *out = strdup(url), *w = out ? strchr(out, '?') : NULL, *q = w;
  for (const char *p = w ? url + (w - out) + 1 : ""; *p;
       p += strcspn(p, "&"), p += *p == '&') {
    size_t len = strcspn(p, "&"), klen = strcspn(p, "&=");
    char key[16] = "";
    if (klen < sizeof key) memcpy(key, p, klen);
    if (len && ours(key) < 0)
      w += sprintf(w, "%c%.*s", w == q ? '?' : '&', (int)len, p);
  }
  if (w) *w = '\0';
  return out;
}

/* MongoDB database names: no "/\. \"$*<>:|?", under 64 bytes. */
static int check_database(const char *db, gm_error *err) {
  size_t len = strlen(db);
  if (len == 0 || len > 63 || strpbrk(db, "/\\. \"$*<>:|?")) {
    gm_seterr(err, GM_E_ARG, "option 'database': not a valid MongoDB "
                             "database name");
    return GM_ERR;
  }
  return GM_OK;
}

/* write_concern and read_concern (NULL: "majority" where the URI gives
 * none, else the URI's own). */
static int parse_concerns(mongo_cfg *cfg, const char *wc, const char *rc,
                          gm_error *err) {
  char *end = "";
  if (!wc && mongoc_write_concern_is_default(
                 mongoc_uri_get_write_concern(cfg->uri)))
    wc = "majority";
  if (!rc && mongoc_read_concern_is_default(
                 mongoc_uri_get_read_concern(cfg->uri)))
    rc = "majority";
  long w = wc && strcmp(wc, "majority") ? strtol(wc, &end, 10) : 0;
  if (wc && (*end || w < 0 || w > 50 || (!w && strcmp(wc, "majority")))) {
    gm_seterr(err, GM_E_ARG, "option 'write_concern': expected 'majority' "
                             "or a number of members 1-50");
    return GM_ERR;
  }
  if (rc && strcmp(rc, "majority") && strcmp(rc, "local") &&
      strcmp(rc, "linearizable")) {
    gm_seterr(err, GM_E_ARG, "option 'read_concern': expected 'majority', "
                             "'local' or 'linearizable'");
    return GM_ERR;
  }
  if (wc)
    cfg->write_concern =
        w ? BCON_NEW("writeConcern", "{", "w", BCON_INT32((int32_t)w), "}")
          : BCON_NEW("writeConcern", "{", "w", BCON_UTF8("majority"), "}");
  if (rc)
    cfg->read_concern =
        BCON_NEW("readConcern", "{", "level", BCON_UTF8(rc), "}");
  return GM_OK;
}

/* The authority of url ("user:password@host1,host2"): returns its start
 * (NULL without "://"), sets *hosts to where the hosts begin (after the last
 * '@') and *end to where it ends. */
static const char *authority(const char *url, const char **hosts,
                             const char **end) {
  const char *a = strstr(url, "://");
  if (!a) return NULL;
  a += 3;
  *end = a + strcspn(a, "/?");
  *hosts = a;
  for (const char *p = *end; p > a; p--)
    if (p[-1] == '@') {
      *hosts = p;
      break;
    }
  return a;
}

/* The password as written in the URL, so that even an undecoded form is
 * never shown. */
static char *raw_password(const char *url) {
  const char *hosts, *end, *a = authority(url, &hosts, &end);
  if (!a || hosts == a) return NULL;
  const char *at = hosts - 1, *colon = memchr(a, ':', (size_t)(at - a));
  return colon ? strndup(colon + 1, (size_t)(at - colon - 1)) : NULL;
}

static void mongo_free_cfg(void *p) {
  mongo_cfg *cfg = p;
  if (!cfg) return;
  if (cfg->uri) mongoc_uri_destroy(cfg->uri);
  if (cfg->watch_uri) mongoc_uri_destroy(cfg->watch_uri);
  if (cfg->write_concern) bson_destroy(cfg->write_concern);
  if (cfg->read_concern) bson_destroy(cfg->read_concern);
  for (int i = 0; i < NSECRETS; i++) gm_free_secret(cfg->secrets[i]);
  free(cfg->database);
  free(cfg->collection);
  free(cfg);
}

static void set_describe(mongo_cfg *cfg, const char *url) {
  const char *hosts, *end, *a = authority(url, &hosts, &end);
  const char *user = mongoc_uri_get_username(cfg->uri);
  snprintf(cfg->describe, sizeof cfg->describe, "%.*s%s%s%.*s/%s.%s",
           (int)(a - url), url, user ? user : "", user ? "@" : "",
           (int)(end - hosts), hosts, cfg->database, cfg->collection);
  scrub(cfg, cfg->describe, sizeof cfg->describe);
}

/* The lease needs each write's own result (design point 3): a URL whose
 * write concern asks for no acknowledgement (w=0, w=-1, with or without
 * journal=false) is refused, naming the option. */
static int check_acknowledged(const mongoc_uri_t *uri, gm_error *err) {
  const mongoc_write_concern_t *wc = mongoc_uri_get_write_concern(uri);
  if (mongoc_write_concern_is_acknowledged(wc)) return GM_OK;
  gm_seterr(err, GM_E_ARG,
            "mongodb backend: option 'w=%d'%s makes writes unacknowledged: a "
            "grant or renewal could fail unseen (leave 'w' out for "
            "w=majority, or give w=1 or more)",
            (int)mongoc_write_concern_get_w(wc),
            mongoc_write_concern_journal_is_set(wc) ? " with 'journal=false'"
                                                    : "");
  return GM_ERR;
}

/* Checks the keys of kv (the URL's query u, or the option table, which
 * holds u's keys again) against ours and libmongoc's (those only in the
 * URL), and collects ours into val. The TLS key password joins the secrets. */
static int check_keys(mongo_cfg *cfg, const gm_kv *kv, size_t n,
                      const gm_url *u, const char **val, gm_error *err) {
  for (size_t i = 0; i < n; i++) {
    const char *k = kv[i].key, *v = kv[i].value;
    int j = ours(k);
    if (strcmp(k, "url") == 0) continue;
    if (j < 0 && (!is_mongo_option(k) || !gm_kv_get(u->kv, u->n, k))) {
      gm_seterr(err, GM_E_ARG, "mongodb backend: unknown option '%.64s'%s", k,
                is_mongo_option(k) ? " (put MongoDB options in the url)" : "");
      return GM_ERR;
    }
    if (j >= 0 && val[j] && strcmp(val[j], v) != 0) {
      gm_seterr(err, GM_E_ARG, "mongodb backend: option '%s' given twice", k);
      return GM_ERR;
    }
    if (j >= 0) val[j] = v;
    if (!cfg->secrets[2] && v &&
        (!strcasecmp(k, MONGOC_URI_TLSCERTIFICATEKEYFILEPASSWORD) ||
         !strcasecmp(k, MONGOC_URI_SSLCLIENTCERTIFICATEKEYPASSWORD)) &&
        !(cfg->secrets[2] = strdup(v))) {
      gm_seterr(err, GM_E_NOMEM, "out of memory");
      return GM_ERR;
    }
  }
  return GM_OK;
}

static int mongo_parse(const gm_kv *opts, size_t n, void **out,
                       gm_error *err) {
  const char *url = gm_kv_get(opts, n, "url"), *val[5] = {0};
  char *stripped = NULL;
  bson_error_t e;
  gm_url u = {0};
  mongo_cfg *cfg = calloc(1, sizeof *cfg);
  if (!cfg) goto nomem;
  pthread_once(&init_once, init_mongoc);
  if (!url) {
    gm_seterr(err, GM_E_ARG, "mongodb backend: option 'url' is required "
                             "(mongodb://host[:port]/[database][?options])");
    goto fail;
  }
  if (gm_url_parse(url, 1, &u, err)) goto fail; /* the query, decoded */
  if ((cfg->secrets[0] = raw_password(url)))
    cfg->secrets[1] = gm_url_decode(cfg->secrets[0], strlen(cfg->secrets[0]));
  if (check_keys(cfg, u.kv, u.n, &u, val, err) ||
      check_keys(cfg, opts, n, &u, val, err))
    goto fail;
  if (!(stripped = strip_ours(url))) goto nomem;
  cfg->uri = mongoc_uri_new_with_error(stripped, &e);
  if (!cfg->uri) {
    gm_seterr(err, GM_E_URL, "mongodb backend: bad URL: %s", e.message);
    if (err) scrub(cfg, err->msg, sizeof err->msg);
    goto fail;
  }
  if (check_acknowledged(cfg->uri, err)) goto fail;

  const char *db = val[0] ? val[0] : mongoc_uri_get_database(cfg->uri);
  const char *coll = val[1] ? val[1] : DEFAULT_COLLECTION;
  if (!db) db = DEFAULT_DATABASE;
  if (check_database(db, err) ||
      gm_check_identifier("collection", coll, err))
    goto fail;
  if (!(cfg->database = strdup(db)) || !(cfg->collection = strdup(coll)))
    goto nomem;
  if (parse_concerns(cfg, val[2], val[3], err)) goto fail;
  int64_t timeout_us;
  gm_kv t = {"timeout", val[4]};
  if (gm_kv_seconds(&t, val[4] ? 1 : 0, "timeout", DEFAULT_TIMEOUT_US,
                    &timeout_us, err))
    goto fail;
  int32_t ms = (int32_t)(timeout_us < 1000 ? 1 : timeout_us / 1000 > INT32_MAX
                         ? INT32_MAX : timeout_us / 1000);
  const char *tkeys[] = {MONGOC_URI_CONNECTTIMEOUTMS,
                         MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                         MONGOC_URI_SOCKETTIMEOUTMS};
  for (int i = 0; i < 3; i++)
    if (!mongoc_uri_has_option(cfg->uri, tkeys[i]))
      mongoc_uri_set_option_as_int32(cfg->uri, tkeys[i], ms);
  if (!mongoc_uri_get_appname(cfg->uri))
    mongoc_uri_set_appname(cfg->uri, "gomaster");
  if (!(cfg->watch_uri = mongoc_uri_copy(cfg->uri))) goto nomem;
  mongoc_uri_set_option_as_int32(
      cfg->watch_uri, MONGOC_URI_SOCKETTIMEOUTMS,
      mongoc_uri_get_option_as_int32(cfg->uri, MONGOC_URI_SOCKETTIMEOUTMS, 0) +
          WATCH_AWAIT_MS);
  set_describe(cfg, url);
  gm_url_free(&u);
  free(stripped);
  *out = cfg;
  return GM_OK;
nomem:
  gm_seterr(err, GM_E_NOMEM, "out of memory");
fail:
  gm_url_free(&u);
  free(stripped);
  mongo_free_cfg(cfg);
  return GM_ERR;
}

static void mongo_describe(const void *p, char *buf, size_t len) {
  snprintf(buf, len, "%s", ((const mongo_cfg *)p)->describe);
}

/* From another thread: every socket of conn fails at once, and no new one
 * opens. A TLS client has none (watch does not block there). */
static void mongo_interrupt(void *p) {
  mongo_conn *c = p;
  if (c->socks) gm_msocks_interrupt(c->socks);
}

/* ---- connection -------------------------------------------------------- */

static void mongo_close(void *p) {
  mongo_conn *c = p;
  if (!c) return;
  if (c->tail) mongoc_cursor_destroy(c->tail);
  if (c->events) mongoc_collection_destroy(c->events);
  if (c->coll) mongoc_collection_destroy(c->coll);
  if (c->client) mongoc_client_destroy(c->client);
  gm_msocks_free(c->socks);
  free(c);
}

/* Runs cmd (taken) on the database; GM_OK with *now the reply's localTime
 * (now may be NULL), or GM_ERR with *e filled. */
static int command(mongo_conn *c, bson_t *cmd, int64_t *now,
                   bson_error_t *e) {
  bson_t reply;
  bool ok = mongoc_client_command_simple(c->client, c->cfg->database, cmd,
                                         NULL, &reply, e);
  if (ok && now) *now = gm_mdoc_date_us(&reply, "localTime");
  bson_destroy(cmd);
  bson_destroy(&reply);
  return ok ? GM_OK : GM_ERR;
}

/* A connection (watch: the core's wake-up connection, whose reads outlast
 * an await of WATCH_AWAIT_MS). */
static int open_conn(const mongo_cfg *cfg, int watch, void **out,
                     gm_error *err) {
  const mongoc_uri_t *uri = watch ? cfg->watch_uri : cfg->uri;
  bson_error_t e;
  pthread_once(&init_once, init_mongoc);
  int tls = mongoc_uri_get_tls(uri);
  mongo_conn *c = calloc(1, sizeof *c);
  if (!c || (!tls && !(c->socks = gm_msocks_new()))) {
    gm_seterr(err, GM_E_NOMEM, "out of memory");
    mongo_close(c);
    return GM_ERR;
  }
  c->cfg = cfg;
  c->await_ms = watch ? WATCH_AWAIT_MS
                      : mongoc_uri_get_option_as_int32(
                            uri, MONGOC_URI_SOCKETTIMEOUTMS, 2000) / 2 + 1;
  c->marker_base = gm_seed64();
  char what[sizeof cfg->describe + 32] = "connecting";
  if (!(c->client = mongoc_client_new_from_uri_with_error(uri, &e)))
    goto failed;
  mongoc_client_set_error_api(c->client, MONGOC_ERROR_API_VERSION_2);
  if (c->socks) gm_msocks_attach(c->socks, c->client);
  c->coll = mongoc_client_get_collection(c->client, cfg->database,
                                         cfg->collection);
  /* Selects the primary, connects and authenticates now, so that open
   * reports what is wrong. MongoDB creates the collection on first write. */
  snprintf(what, sizeof what, "connecting to %s", cfg->describe);
  if (command(c, BCON_NEW("ping", BCON_INT32(1)), NULL, &e)) goto failed;
  /* The events collection; refused (no right to create it, or not capped
   * where it exists): no wake-up, the followers poll. */
  char events[96];
  snprintf(events, sizeof events, "%s" EVENTS_SUFFIX, cfg->collection);
  if (!command(c, BCON_NEW("create", BCON_UTF8(events), "capped",
                           BCON_BOOL(true), "size", BCON_INT64(EVENTS_SIZE),
                           "max", BCON_INT64(EVENTS_MAX)), NULL, &e) ||
      e.code == 48 /* NamespaceExists */) {
    c->events = mongoc_client_get_collection(c->client, cfg->database,
                                             events);
    c->watchable = !tls;
  }
  *out = c;
  return GM_OK;
failed:
  fail(cfg, err, what, &e);
  mongo_close(c);
  return GM_ERR;
}

static int mongo_open(const void *cfg, void **out, gm_error *err) {
  return open_conn(cfg, 0, out, err);
}

static int mongo_open_watch(const void *cfg, void **out, gm_error *err) {
  return open_conn(cfg, 1, out, err);
}

/* ---- writes ------------------------------------------------------------ */

/* Runs findAndModify(query, pipeline) returning the new document (taking
 * both): GM_OK with the document in row, GM_NOT when none matched or a
 * racing insert came first (duplicate key), GM_ERR on failure. */
static int find_and_modify(mongo_conn *c, const char *what, bson_t *query,
                           bson_t *pipeline, int upsert, gm_row *row,
                           gm_error *err) {
  bson_error_t e;
  bson_t reply, doc;
  bson_iter_t it;
  const uint8_t *data;
  uint32_t len;
  mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
  mongoc_find_and_modify_opts_set_update(opts, pipeline);
  mongoc_find_and_modify_opts_set_flags(
      opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW |
                (upsert ? MONGOC_FIND_AND_MODIFY_UPSERT : 0));
  if (c->cfg->write_concern)
    mongoc_find_and_modify_opts_append(opts, c->cfg->write_concern);
  bool ok = mongoc_collection_find_and_modify_with_opts(c->coll, query, opts,
                                                        &reply, &e);
  mongoc_find_and_modify_opts_destroy(opts);
  bson_destroy(query);
  bson_destroy(pipeline);
  int rc = GM_NOT;
  if (!ok && e.code == 11000) /* a racing insert: a lost race */
    gm_seterr(err, GM_E_CONFLICT, "%s: another node's insert came first",
              what);
  else if (!ok)
    rc = fail(c->cfg, err, what, &e);
  else if (bson_iter_init_find(&it, &reply, "value") &&
           BSON_ITER_HOLDS_DOCUMENT(&it)) {
    bson_iter_document(&it, &len, &data);
    if (bson_init_static(&doc, data, len)) gm_mdoc_read(&doc, row), rc = GM_OK;
  }
  bson_destroy(&reply);
  return rc;
}

/* Server-side milliseconds, rounded up: a lease never comes out shorter. */
static int64_t lease_ms(int64_t lease_us) { return (lease_us + 999) / 1000; }

static int mongo_acquire(void *p, const gm_acquire_req *r, gm_row *out,
                         gm_error *err) {
  uint64_t token = gm_new_token(r);
  /* the fields of the grant, each time from the server's $$NOW */
  bson_t *g = BCON_NEW(
      "owner", "{", "$literal", BCON_UTF8(r->owner), "}", "token",
      BCON_INT64((int64_t)token), "instance", BCON_INT64((int64_t)r->instance),
      "version", "{", "$literal", BCON_UTF8(r->version ? r->version : ""), "}",
      "acquired_at", BCON_UTF8("$$NOW"), "renewed_at", BCON_UTF8("$$NOW"),
      "expires_at", "{", "$add", "[", BCON_UTF8("$$NOW"),
      BCON_INT64(lease_ms(r->lease_us)), "]", "}");
  bson_t *query = BCON_NEW("_id", BCON_UTF8(r->name)), *pipeline;
  if (!r->expect_exists) {
    /* Only a document with no token (the upsert's new one) gets the
     * grant; when one exists the upsert collides on _id: GM_NOT. */
    BCON_APPEND(query, "token", "{", "$exists", BCON_BOOL(false), "}");
    pipeline = BCON_NEW("0", "{", "$set", BCON_DOCUMENT(g), "}");
  } else {
    /* Granted only where expired on the server's clock (a release sets
     * expires_at to its now; a force release may keep the old expiry). A
     * new root keeps only what it names: carry the completion record (a
     * path to a missing field leaves the field out). */
    BSON_APPEND_INT64(query, "token", (int64_t)r->expect_token);
    BCON_APPEND(g, "_id", "$_id", "done_at", "$done_at", "done_by",
                "$done_by", "done_token", "$done_token", "result", "$result");
    pipeline = BCON_NEW("0", "{", "$replaceRoot", "{", "newRoot", "{",
                        "$cond", "{", "if", "{", "$lte", "[", "$expires_at",
                        "$$NOW", "]", "}", "then", BCON_DOCUMENT(g), "else",
                        "$$ROOT", "}", "}", "}", "}");
  }
  bson_destroy(g);
  int rc = find_and_modify(p, "acquire", query, pipeline, !r->expect_exists,
                           out, err);
  if (rc != GM_OK) return rc;
  out->now = out->renewed_at;
  if (out->token == token && out->instance == r->instance &&
      strcmp(out->owner, r->owner) == 0)
    return GM_OK;
  out->now = 0; /* not ours: the server's now is not known */
  return GM_NOT;
}

/* Query {_id: name, owner, instance, token}: the document is ours
 * (instance 0: any instance, for tools that know only the id). */
static bson_t *ours_query(const char *name, const char *owner,
                          uint64_t instance, uint64_t token) {
  bson_t *q = BCON_NEW("_id", BCON_UTF8(name), "owner", BCON_UTF8(owner),
                       "token", BCON_INT64((int64_t)token));
  if (instance) BSON_APPEND_INT64(q, "instance", (int64_t)instance);
  return q;
}

static int mongo_renew(void *p, const char *name, const char *owner,
                       uint64_t instance, uint64_t token, int64_t lease_us,
                       gm_row *out, gm_error *err) {
  bson_t *pipeline = BCON_NEW(
      "0", "{", "$set", "{", "renewed_at", BCON_UTF8("$$NOW"), "expires_at",
      "{", "$add", "[", BCON_UTF8("$$NOW"), BCON_INT64(lease_ms(lease_us)),
      "]", "}", "}", "}");
  int rc = find_and_modify(p, "renew", ours_query(name, owner, instance, token),
                           pipeline, 0, out, err);
  if (rc == GM_OK) out->now = out->renewed_at;
  return rc;
}

/* ---- batch renewal --------------------------------------------------------
 *
 * Two commands however many locks: one bulk of multi-updates (one per
 * distinct lease) matching {_id, owner, instance, token} of each lock,
 * renewing with $$NOW and stamping BATCH_FIELD with a marker no earlier
 * batch used; then one find of those _ids on the primary. A lock was renewed
 * by this batch iff its document carries the marker and is still ours; its
 * times are then the server's, as written. (An update reports only how many
 * documents matched, not which.) */

/* The multi-update of the locks of q whose lease is q[i]'s, into bulk. */
static void batch_add(mongoc_bulk_operation_t *bulk, const gm_renew_req *q,
                      size_t i, size_t n, const char *marker) {
  int64_t ms = lease_ms(q[i].lease_us);
  bson_t *sel = bson_new(), ors;
  char key[24];
  BSON_APPEND_ARRAY_BEGIN(sel, "$or", &ors);
  for (uint32_t j = (uint32_t)i, k = 0; j < n; j++) {
    if (lease_ms(q[j].lease_us) != ms) continue;
    snprintf(key, sizeof key, "%u", k++);
    BCON_APPEND(&ors, key, "{", "_id", BCON_UTF8(q[j].name), "owner",
                BCON_UTF8(q[j].owner), "instance",
                BCON_INT64((int64_t)q[j].instance), "token",
                BCON_INT64((int64_t)q[j].token), "}");
  }
  bson_append_array_end(sel, &ors);
  bson_t *pipe = BCON_NEW(
      "0", "{", "$set", "{", "renewed_at", BCON_UTF8("$$NOW"), "expires_at",
      "{", "$add", "[", BCON_UTF8("$$NOW"), BCON_INT64(ms), "]", "}",
      BATCH_FIELD, "{", "$literal", BCON_UTF8(marker), "}", "}", "}");
  mongoc_bulk_operation_update_many_with_opts(bulk, sel, pipe, NULL, NULL);
  bson_destroy(pipe);
  bson_destroy(sel);
}

/* Marks the request that doc (as the batch's find returned it) renewed. */
static void batch_mark(gm_renew_req *q, size_t n, size_t *hint,
                       const bson_t *doc, const char *marker) {
  bson_iter_t it;
  char mark[40];
  gm_row r;
  gm_mdoc_utf8(doc, BATCH_FIELD, mark, sizeof mark);
  if (strcmp(mark, marker) != 0 || !bson_iter_init_find(&it, doc, "_id") ||
      !BSON_ITER_HOLDS_UTF8(&it))
    return;
  gm_mdoc_read(doc, &r);
  /* the find mostly answers in the order asked: start after the last */
  for (size_t k = 0; k < n; k++) {
    gm_renew_req *x = &q[(*hint + k) % n];
    if (x->token == r.token && x->instance == r.instance &&
        !strcmp(x->name, bson_iter_utf8(&it, NULL)) &&
        !strcmp(x->owner, r.owner)) {
      x->rc = GM_OK;
      x->renewed_at = x->now = r.renewed_at;
      x->expires_at = r.expires_at;
      *hint = (size_t)(x - q) + 1;
    }
  }
}

static int mongo_renew_many(void *p, gm_renew_req *q, size_t n,
                            gm_error *err) {
  mongo_conn *c = p;
  if (n == 1) { /* one lock: one findAndModify already tells all */
    gm_row r = {0};
    q->rc = mongo_renew(p, q->name, q->owner, q->instance, q->token,
                        q->lease_us, &r, err);
    q->renewed_at = q->now = r.renewed_at;
    q->expires_at = r.expires_at;
    return q->rc == GM_ERR ? GM_ERR : GM_OK;
  }
  bson_error_t e;
  bson_t reply;
  bson_iter_t it;
  char marker[40];
  snprintf(marker, sizeof marker, "%016llx-%llu",
           (unsigned long long)c->marker_base,
           (unsigned long long)++c->batches);
  bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
  if (c->cfg->write_concern) bson_concat(opts, c->cfg->write_concern);
  mongoc_bulk_operation_t *bulk =
      mongoc_collection_create_bulk_operation_with_opts(c->coll, opts);
  bson_destroy(opts);
  for (size_t i = 0; i < n; i++) {
    q[i].rc = GM_NOT;
    int seen = 0; /* a lease of an earlier request: in its update */
    for (size_t j = 0; j < i && !seen; j++)
      seen = lease_ms(q[j].lease_us) == lease_ms(q[i].lease_us);
    if (!seen) batch_add(bulk, q, i, n, marker);
  }
  bool ok = mongoc_bulk_operation_execute(bulk, &reply, &e) != 0;
  int64_t matched = bson_iter_init_find(&it, &reply, "nMatched") &&
      BSON_ITER_HOLDS_NUMBER(&it) ? bson_iter_as_int64(&it) : -1;
  bson_destroy(&reply);
  mongoc_bulk_operation_destroy(bulk);
  if (!ok) return fail(c->cfg, err, "renew", &e);
  if (matched == 0) return GM_OK; /* none is ours any more */

  /* Which were renewed, and their times: one find on the primary. */
  bson_t *filter = bson_new(), in, ids;
  char key[24];
  BSON_APPEND_DOCUMENT_BEGIN(filter, "_id", &in);
  BSON_APPEND_ARRAY_BEGIN(&in, "$in", &ids);
  for (size_t i = 0; i < n; i++) {
    snprintf(key, sizeof key, "%zu", i);
    BSON_APPEND_UTF8(&ids, key, q[i].name);
  }
  bson_append_array_end(&in, &ids);
  bson_append_document_end(filter, &in);
  opts = BCON_NEW("batchSize", BCON_INT64((int64_t)n), "readConcern", "{",
                  "level", BCON_UTF8("local"), "}");
  mongoc_read_prefs_t *primary = mongoc_read_prefs_new(MONGOC_READ_PRIMARY);
  mongoc_cursor_t *cur =
      mongoc_collection_find_with_opts(c->coll, filter, opts, primary);
  mongoc_read_prefs_destroy(primary);
  bson_destroy(filter);
  bson_destroy(opts);
  const bson_t *doc;
  size_t hint = 0;
  while (mongoc_cursor_next(cur, &doc)) batch_mark(q, n, &hint, doc, marker);
  int rc = GM_OK;
  if (mongoc_cursor_error(cur, &e)) rc = fail(c->cfg, err, "renew (find)", &e);
  mongoc_cursor_destroy(cur);
  return rc;
}

static int mongo_observe(void *p, const char *name, gm_row *out,
                         gm_error *err) {
  mongo_conn *c = p;
  bson_error_t e;
  const bson_t *doc;
  /* One round trip: the document with $$NOW beside it. */
  bson_t *pipeline = BCON_NEW("0", "{", "$match", "{", "_id", BCON_UTF8(name),
                              "}", "}", "1", "{", "$set", "{", NOW_FIELD,
                              BCON_UTF8("$$NOW"), "}", "}");
  mongoc_cursor_t *cur = mongoc_collection_aggregate(
      c->coll, MONGOC_QUERY_NONE, pipeline, c->cfg->read_concern, NULL);
  bson_destroy(pipeline);
  memset(out, 0, sizeof *out);
  int rc = GM_OK;
  if (mongoc_cursor_next(cur, &doc)) {
    rc = gm_mdoc_check(doc, name, err);
    gm_mdoc_read(doc, out);
    out->now = gm_mdoc_date_us(doc, NOW_FIELD);
  }
  if (rc == GM_OK && mongoc_cursor_error(cur, &e))
    rc = fail(c->cfg, err, "observe", &e);
  mongoc_cursor_destroy(cur);
  /* no document: the server's clock from isMaster (4.2 has no hello) */
  if (rc == GM_OK && !out->exists &&
      command(c, BCON_NEW("isMaster", BCON_INT32(1)), &out->now, &e))
    rc = fail(c->cfg, err, "observe (isMaster)", &e);
  else if (rc == GM_OK && !out->now)
    gm_seterr(err, GM_E_DB, "mongodb backend: observe: no localTime"),
        rc = GM_ERR;
  return rc;
}

/* ---- wake-up: release events and watch ----------------------------------
 *
 * A release, once the lease document says so, inserts {name, token, at}
 * into the capped collection "<collection>_events" (open creates it). watch
 * tails it with a tailable awaitData cursor of the wake-up connection, kept
 * across calls so that no event between two calls is lost, and returns
 * GM_OK on an event for its lock. An event is only a hint: the lease
 * document stays the only truth, and a lost one costs the followers only
 * the wait to the lease end they saw. */

/* One event, w:1, errors ignored (a lost event only costs the followers
 * their wait): a release's (name) or a cursor's first (name NULL). */
static void put_event(mongo_conn *c, const char *name, uint64_t token,
                      int64_t at_us) {
  char id[48];
  snprintf(id, sizeof id, "%016llx-e%llu", (unsigned long long)c->marker_base,
           (unsigned long long)++c->announced);
  bson_t *doc = BCON_NEW("_id", BCON_UTF8(id), "at",
                         BCON_DATE_TIME(at_us / 1000));
  if (name) BCON_APPEND(doc, "name", BCON_UTF8(name), "token",
                        BCON_INT64((int64_t)token));
  bson_t *opts = BCON_NEW("writeConcern", "{", "w", BCON_INT32(1), "}");
  mongoc_collection_insert_one(c->events, doc, opts, NULL, NULL);
  bson_destroy(opts);
  bson_destroy(doc);
}

/* The tail's start: GM_OK when lock name is free already (a release
 * before the cursor could see it), else GM_NOT with c->tail open on the
 * events from the server's now on. A first event of its own makes the
 * cursor live (one that matches nothing is dead at once). */
static int start_tail(mongo_conn *c, const char *name, gm_error *err) {
  gm_row row;
  int rc = mongo_observe(c, name, &row, err);
  if (rc != GM_OK) return rc;
  if (!row.exists || !row.owner[0] || row.expires_at <= row.now) return GM_OK;
  put_event(c, NULL, 0, row.now);
  bson_t *filter = BCON_NEW("at", "{", "$gte",
                            BCON_DATE_TIME(row.now / 1000), "}");
  bson_t *opts = BCON_NEW("tailable", BCON_BOOL(true), "awaitData",
                          BCON_BOOL(true));
  c->tail = mongoc_collection_find_with_opts(c->events, filter, opts, NULL);
  bson_destroy(opts);
  bson_destroy(filter);
  return GM_NOT;
}

static int mongo_watch(void *p, const char *name, int64_t timeout_us,
                       gm_row *row __attribute__((unused)), gm_error *err) {
  mongo_conn *c = p;
  if (!c->watchable) return GM_NOT; /* cannot watch from here: poll */
  int64_t end = gm_mono_ns() + timeout_us * 1000;
  if (!c->tail) {
    int rc = start_tail(c, name, err);
    if (rc != GM_NOT) return rc;
  }
  for (;;) {
    int64_t left = (end - gm_mono_ns()) / GM_NS_PER_MS;
    if (left <= 0) return GM_NOT;
    mongoc_cursor_set_max_await_time_ms(
        c->tail, (uint32_t)(left < c->await_ms ? left : c->await_ms));
    const bson_t *doc;
    bson_iter_t it;
    if (mongoc_cursor_next(c->tail, &doc)) {
      if (bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it) &&
          strcmp(bson_iter_utf8(&it, NULL), name) == 0)
        return GM_OK;
      continue;
    }
    bson_error_t e = {0};
    int bad = mongoc_cursor_error(c->tail, &e);
    if (!bad && mongoc_cursor_more(c->tail)) continue; /* nothing came */
    mongoc_cursor_destroy(c->tail);
    c->tail = NULL;
    int srv = bad && e.domain == MONGOC_ERROR_SERVER;
    /* ended, or fell behind (136 CappedPositionLost, 43, 175): events may
     * be lost, so a change; refused (2: the collection is not capped):
     * watch no more here, the followers poll */
    if (!bad || (srv && (e.code == 136 || e.code == 43 || e.code == 175)))
      return GM_OK;
    if (srv && e.code == 2) return c->watchable = 0, GM_NOT;
    return fail(c->cfg, err, "watch", &e);
  }
}

/* ---- release, and the operators' writes ------------------------------- */

static int mongo_release(void *p, const char *name, const char *owner,
                         uint64_t instance, uint64_t token, gm_error *err) {
  mongo_conn *c = p;
  gm_row row;
  int rc = find_and_modify(c, "release",
                           ours_query(name, owner, instance, token),
                           BCON_NEW("0", "{", "$set", "{", "owner",
                                    BCON_UTF8(""), "expires_at",
                                    BCON_UTF8("$$NOW"), "}", "}"),
                           0, &row, err);
  if (rc == GM_OK && c->events) put_event(c, name, token, row.expires_at);
  return rc;
}

/* Where owner and token are ours: the completion record, done_at from the
 * server's clock. The lease is left as it is. */
static int mongo_complete(void *p, const char *name, const char *owner,
                          uint64_t instance, uint64_t token,
                          const char *result, gm_error *err) {
  gm_row row;
  return find_and_modify(
      p, "complete", ours_query(name, owner, instance, token),
      BCON_NEW("0", "{", "$set", "{", "done_at", BCON_UTF8("$$NOW"),
               "done_by", "{", "$literal", BCON_UTF8(owner), "}",
               "done_token", BCON_INT64((int64_t)token), "result", "{",
               "$literal", BCON_UTF8(result), "}", "}", "}"),
      0, &row, err);
}

/* Whoever holds it: owner '', token + 1 (fencing off the holder), the old
 * lease kept unless now (see backend.h). *out is the document as read
 * after it, with the server's now. */
static int mongo_force_release(void *p, const char *name, int now,
                               gm_row *out, gm_error *err) {
  const char *kept = now ? "$$NOW" : "$expires_at";
  bson_t *pipeline = BCON_NEW(
      "0", "{", "$set", "{", "owner", BCON_UTF8(""), "token", "{", "$add",
      "[", "$token", BCON_INT64(1), "]", "}", "instance", BCON_INT64(0),
      "expires_at", "{", "$cond", "[", "{", "$lte", "[", "$expires_at",
      "$$NOW", "]", "}", "$$NOW", BCON_UTF8(kept), "]", "}", "}", "}");
  int rc = find_and_modify(p, "force release",
                           BCON_NEW("_id", BCON_UTF8(name), "token", "{",
                                    "$lt", BCON_INT64(INT64_MAX), "}"),
                           pipeline, 0, out, err);
  return rc == GM_OK ? mongo_observe(p, name, out, err) : rc;
}

const gm_backend_ops gm_mongo_ops = {
    .abi = GM_BACKEND_ABI,
    .name = "mongodb",
    .url_raw = 1,
    .parse = mongo_parse,
    .free_cfg = mongo_free_cfg,
    .describe = mongo_describe,
    .open = mongo_open,
    .close = mongo_close,
    .observe = mongo_observe,
    .acquire = mongo_acquire,
    .renew = mongo_renew,
    .release = mongo_release,
    .complete = mongo_complete,
    .force_release = mongo_force_release,
    .renew_many = mongo_renew_many,
    .interrupt = mongo_interrupt,
    .watch = mongo_watch,
    .open_watch = mongo_open_watch,
};
