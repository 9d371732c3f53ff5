/*
 * test_mongo_backend.c: drives the MongoDB backend's vtable directly against
 * the server in GOMASTER_TEST_MONGO_URL (tests/servers/mongo.sh starts the
 * stand-in and prints it). One line per check, then "N passed, N failed".
 * Checks that need the stand-in's test-only commands (stepping its clock,
 * counting commands) are skipped on a real MongoDB.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mongoc/mongoc.h>

#define BT_NO_INSTANCE /* its requests carry none, as a tool's */
#include "backend_test.h"

#define PASSWORD "s3cr3t%2Fpw"
#define PASSWORD_DECODED "s3cr3t/pw"


static char base_url[1024];

/* Options from a URL, as the core hands them to a url_raw backend. */
static int parse_url(const char *s, void **cfg, gm_error *err) {
  gm_url u;
  memset(err, 0, sizeof *err);
  if (gm_url_parse(s, 1, &u, err)) return GM_ERR;
  int rc = ops->parse(u.kv, u.n, cfg, err);
  gm_url_free(&u);
  return rc;
}

/* base_url plus "sep" options. */
static const char *url_with(const char *opts) {
  static char buf[2048];
  snprintf(buf, sizeof buf, "%s%s%s", base_url,
           strchr(base_url, '?') ? "&" : "?", opts);
  return buf;
}

/* Where base_url's hosts begin (after any "user:password@"); *rest is
 * where its authority begins. */
static const char *hosts_of(const char **rest) {
  const char *a = strstr(base_url, "://") + 3, *end = a + strcspn(a, "/?");
  *rest = a;
  for (const char *p = end; p > a; p--)
    if (p[-1] == '@') return p;
  return a;
}

/* base_url with user:password in place of any credentials it has. */
static const char *url_with_user(const char *user, const char *pass) {
  static char buf[2048];
  const char *rest, *hosts = hosts_of(&rest);
  snprintf(buf, sizeof buf, "%.*s%s:%s@%s", (int)(rest - base_url), base_url,
           user, pass, hosts);
  return buf;
}

static int no_secret(const char *s) {
  return !strstr(s, "s3cr3t") && !strstr(s, "k3ypw");
}

static void sleep_us(int64_t us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* A loopback port nothing listens on (bound, then released). */
static int closed_port(void) {
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr *)&a, sizeof a);
  getsockname(fd, (struct sockaddr *)&a, &len);
  close(fd);
  return ntohs(a.sin_port);
}

/* ---- the stand-in's test-only commands, over a raw OP_MSG ---------------- */

static const char *server_host_port(int *port) {
  static char host[256];
  const char *rest, *h = hosts_of(&rest);
  size_t hlen = strcspn(h, ",/?:");
  snprintf(host, sizeof host, "%.*s", (int)hlen, h);
  *port = h[hlen] == ':' ? atoi(h + hlen + 1) : 27017;
  return host;
}

static void put32(uint8_t *p, int32_t v) {
  uint32_t u = (uint32_t)v;
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(u >> (8 * i));
}

static int32_t get32(const uint8_t *p) {
  return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                   (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

/* Sends {name: value (double), $db: "admin"}; the reply document goes into
 * reply (up to size bytes). Returns its length, or -1. */
static int standin_command(const char *name, double value, uint8_t *reply,
                           int size) {
  uint8_t doc[256], msg[300];
  int n = 4;
  doc[n++] = 0x01;
  n += sprintf((char *)doc + n, "%s", name) + 1;
  memcpy(doc + n, &value, 8);
  n += 8;
  doc[n++] = 0x02;
  n += sprintf((char *)doc + n, "$db") + 1;
  put32(doc + n, 6);
  n += 4;
  memcpy(doc + n, "admin", 6);
  n += 6;
  doc[n++] = 0;
  put32(doc, n);
  int len = 16 + 4 + 1 + n;
  put32(msg, len);
  put32(msg + 4, 1);
  put32(msg + 8, 0);
  put32(msg + 12, 2013); /* OP_MSG */
  put32(msg + 16, 0);
  msg[20] = 0;
  memcpy(msg + 21, doc, (size_t)n);

  int port, fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = inet_addr(server_host_port(&port));
  a.sin_port = htons((uint16_t)port);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) ||
      write(fd, msg, (size_t)len) != len) {
    close(fd);
    return -1;
  }
  uint8_t buf[4096];
  int got = 0, want = 16;
  while (got < want) {
    ssize_t r = read(fd, buf + got, sizeof buf - (size_t)got);
    if (r <= 0) break;
    got += (int)r;
    if (got >= 4) want = get32(buf);
    if (want > (int)sizeof buf) break;
  }
  close(fd);
  if (got < want || want < 26 || want - 21 > size) return -1;
  memcpy(reply, buf + 21, (size_t)(want - 21));
  return want - 21;
}

/* The value of key in a BSON document: its type byte, and *val. */
static int bson_get(const uint8_t *doc, const char *key, const uint8_t **val) {
  int len = get32(doc), i = 4;
  while (i < len - 1) {
    int type = doc[i++];
    const char *k = (const char *)doc + i;
    i += (int)strlen(k) + 1;
    const uint8_t *v = doc + i;
    int vlen;
    switch (type) {
      case 0x01: case 0x09: case 0x11: case 0x12: vlen = 8; break;
      case 0x02: vlen = 4 + get32(v); break;
      case 0x03: case 0x04: vlen = get32(v); break;
      case 0x08: vlen = 1; break;
      case 0x0A: vlen = 0; break;
      case 0x10: vlen = 4; break;
      default: return 0;
    }
    if (strcmp(k, key) == 0) {
      *val = v;
      return type;
    }
    i += vlen;
  }
  return 0;
}

/* How many commands of that name the stand-in served; -1 if not known. */
static int standin_count(const char *name) {
  uint8_t reply[4096];
  const uint8_t *counts, *v;
  if (standin_command("gomasterCounts", 1, reply, sizeof reply) < 0 ||
      bson_get(reply, "counts", &counts) != 0x03)
    return -1;
  int t = bson_get(counts, name, &v);
  return t == 0x10 ? get32(v) : t == 0 ? 0 : -1;
}

static int standin_step_clock(double seconds) {
  uint8_t reply[4096];
  const uint8_t *v;
  return standin_command("gomasterStepClock", seconds, reply, sizeof reply) >
             0 &&
         bson_get(reply, "offsetMillis", &v) != 0;
}

/* Sets the stand-in's connection limit (0: none); how many connections
 * it counts open, or -1 when not known (a real server). */
static int standin_max_connections(int n) {
  uint8_t reply[4096];
  const uint8_t *v;
  if (standin_command("gomasterMaxConnections", n, reply, sizeof reply) < 0 ||
      bson_get(reply, "open", &v) != 0x10)
    return -1;
  return get32(v);
}

/* ---- the checks ----------------------------------------------------------- */

static void test_parse_errors(void) {
  void *cfg = NULL;
  gm_error err = {0};
  char buf[256];

  int rc = parse_url("mongodb://u:" PASSWORD "@127.0.0.1:1/db", &cfg, &err);
  check(rc == GM_OK, "a URL with credentials parses (%s)", err.msg);
  if (rc == GM_OK) {
    ops->describe(cfg, buf, sizeof buf);
    check(no_secret(buf) && strstr(buf, "127.0.0.1:1"),
          "describe names the server, not the password: %s", buf);
    ops->free_cfg(cfg);
  }

  rc = parse_url("mongodb://u:" PASSWORD "@127.0.0.1:1/db?nosuchoption=1",
                 &cfg, &err);
  check(rc == GM_ERR && strstr(err.msg, "'nosuchoption'") &&
            no_secret(err.msg),
        "an unknown option is refused naming it: %s", err.msg);

  rc = parse_url("mongodb://u:" PASSWORD "@127.0.0.1:1/db?replicaSet=rs&"
                 "authSource=admin&tls=false&collection=locks2",
                 &cfg, &err);
  check(rc == GM_OK, "MongoDB's own options pass through (%s)", err.msg);
  if (rc == GM_OK) ops->free_cfg(cfg);

  rc = parse_url("mongodb://u:" PASSWORD "@/db", &cfg, &err);
  check(rc == GM_ERR && err.code == GM_E_URL && no_secret(err.msg),
        "a URL without host is a URL error without the password: %s",
        err.msg);

  rc = parse_url("mongodb://u:" PASSWORD "@127.0.0.1:1/db?connectTimeoutMS="
                 PASSWORD, &cfg, &err);
  check(rc == GM_ERR && no_secret(err.msg),
        "a bad MongoDB option value is refused, no password: %s", err.msg);

  rc = parse_url("mongodb://127.0.0.1:1/db?tls=true&"
                 "tlsCertificateKeyFilePassword=k3ypw&connectTimeoutMS=k3ypw",
                 &cfg, &err);
  check(rc == GM_ERR && no_secret(err.msg),
        "the TLS key password is not shown either: %s", err.msg);

  rc = parse_url("mongodb://127.0.0.1:1/db?write_concern=0", &cfg, &err);
  check(rc == GM_ERR && strstr(err.msg, "write_concern"),
        "write_concern=0 is refused naming it: %s", err.msg);
  static const char *const unacknowledged[] = {
      "w=0", "W=0", "w=0&journal=false", "journal=false&w=-1",
      "w=0&wtimeoutMS=100&write_concern=majority"};
  for (size_t i = 0; i < sizeof unacknowledged / sizeof *unacknowledged;
       i++) {
    char u[160];
    snprintf(u, sizeof u, "mongodb://127.0.0.1:1/db?%s", unacknowledged[i]);
    rc = parse_url(u, &cfg, &err);
    check(rc == GM_ERR && err.code == GM_E_ARG && strstr(err.msg, "'w=") &&
              strstr(err.msg, "unacknowledged"),
          "unacknowledged writes (%s) are refused naming 'w': %s",
          unacknowledged[i], err.msg);
  }
  rc = parse_url("mongodb://127.0.0.1:1/db?w=1&journal=false", &cfg, &err);
  check(rc == GM_OK, "w=1&journal=false (acknowledged) is accepted: %s",
        rc == GM_OK ? "" : err.msg);
  if (rc == GM_OK) ops->free_cfg(cfg);
  rc = parse_url("mongodb://127.0.0.1:1/db?read_concern=snapshot", &cfg, &err);
  check(rc == GM_ERR && strstr(err.msg, "read_concern"),
        "read_concern=snapshot is refused naming it: %s", err.msg);
  rc = parse_url("mongodb://127.0.0.1:1/db?collection=bad-name", &cfg, &err);
  check(rc == GM_ERR && strstr(err.msg, "collection"),
        "a bad collection name is refused naming it: %s", err.msg);
  rc = parse_url("mongodb://127.0.0.1:1/db?timeout=-1", &cfg, &err);
  check(rc == GM_ERR && strstr(err.msg, "timeout"),
        "a bad timeout is refused naming it: %s", err.msg);
  rc = parse_url("mysql://127.0.0.1:1/db", &cfg, &err);
  check(rc == GM_ERR && err.code == GM_E_URL,
        "another scheme is a URL error: %s", err.msg);

  gm_kv table[] = {{"url", "mongodb://127.0.0.1:1/"},
                   {"collection", "locks3"}, {"database", "db3"}};
  rc = ops->parse(table, 3, &cfg, &err);
  check(rc == GM_OK, "options given as a table (%s)", err.msg);
  if (rc == GM_OK) {
    ops->describe(cfg, buf, sizeof buf);
    check(strstr(buf, "db3.locks3") != NULL, "the table's database and "
          "collection are used: %s", buf);
    ops->free_cfg(cfg);
  }
  gm_kv table2[] = {{"url", "mongodb://127.0.0.1:1/"}, {"replicaSet", "rs"}};
  rc = ops->parse(table2, 2, &cfg, &err);
  check(rc == GM_ERR && strstr(err.msg, "replicaSet"),
        "a MongoDB option outside the url is refused: %s", err.msg);
  gm_kv table3[] = {{"database", "x"}};
  rc = ops->parse(table3, 1, &cfg, &err);
  check(rc == GM_ERR && strstr(err.msg, "'url'"), "no url: %s", err.msg);
}

static void test_connect_errors(void) {
  void *cfg = NULL, *conn = NULL;
  gm_error err = {0};
  char bad[256];
  snprintf(bad, sizeof bad, "mongodb://gm_nobody:%s@127.0.0.1:%d/db?timeout=0.5",
           PASSWORD, closed_port());
  check(parse_url(bad, &cfg, &err) == GM_OK, "parse (unreachable)");
  double t0 = mono();
  int rc = ops->open(cfg, &conn, &err);
  double took = mono() - t0;
  check(rc == GM_ERR && err.code == GM_E_CONNECT && no_secret(err.msg) &&
            strstr(err.msg, "127.0.0.1"),
        "an unreachable server is a connect error naming it: %s", err.msg);
  check(took < 2.0, "and it fails fast: %.3f s", took);
  if (rc == GM_OK) ops->close(conn);
  ops->free_cfg(cfg);

  if (parse_url(url_with_user("gm_nobody", PASSWORD), &cfg, &err)) {
    check(0, "parse (credentials): %s", err.msg);
    return;
  }
  rc = ops->open(cfg, &conn, &err);
  check(rc == GM_ERR && err.code == GM_E_AUTH && no_secret(err.msg),
        "wrong credentials are an auth error without the password: %s",
        err.msg);
  if (rc == GM_OK) ops->close(conn);
  ops->free_cfg(cfg);
}

static char lockname[64];
static const char *new_lock(void) {
  static int n;
  snprintf(lockname, sizeof lockname, "ctest-%d-%d-%ld", (int)getpid(), ++n,
           (long)time(NULL));
  return lockname;
}

static void test_lease(void *c) {
  gm_error err = {0};
  gm_row row, seen;
  const int64_t L = 5000000;
  const char *name = new_lock();
  int rc;

  rc = ops->observe(c, name, &row, &err);
  check(rc == GM_OK && !row.exists && row.now > 1600000000000000LL,
        "observe of a new lock: no document, the server's now (%s)", err.msg);

  gm_acquire_req a = req(name, "node-a", 0, 0, 0, L);
  rc = ops->acquire(c, &a, &row, &err);
  check(rc == GM_OK && row.token == 1 && strcmp(row.owner, "node-a") == 0,
        "insert-if-absent takes a new lock with token 1 (rc %d, %s)", rc,
        err.msg);
  check(row.expires_at - row.now >= L && row.expires_at - row.now < L + 1000 &&
            row.acquired_at == row.now && row.renewed_at == row.now,
        "expiry is the server's now + lease (%lld µs)",
        (long long)(row.expires_at - row.now));

  gm_acquire_req b = req(name, "node-b", 0, 0, 0, L);
  rc = ops->acquire(c, &b, &row, &err);
  check(rc == GM_NOT, "a racing second insert-if-absent is GM_NOT, not an "
        "error (rc %d, %s)", rc, rc == GM_ERR ? err.msg : "");

  rc = ops->observe(c, name, &seen, &err);
  check(rc == GM_OK && seen.exists && seen.token == 1 &&
            strcmp(seen.owner, "node-a") == 0 &&
            strcmp(seen.version, "1.0") == 0 && seen.now >= seen.renewed_at,
        "observe shows the holder, token, version and now");

  rc = ops->renew(c, name, "node-a", 0, 1, L, &row, &err);
  check(rc == GM_OK && row.expires_at >= seen.expires_at &&
            row.renewed_at == row.now && row.token == 1,
        "renew by the owner extends the lease (rc %d, %s)", rc, err.msg);
  rc = ops->renew(c, name, "node-a", 0, 0, L, &row, &err);
  check(rc == GM_NOT, "renew with a stale token is GM_NOT");
  rc = ops->renew(c, name, "node-b", 0, 1, L, &row, &err);
  check(rc == GM_NOT, "renew by another node is GM_NOT");

  b = req(name, "node-b", 1, 1, 0, L);
  rc = ops->acquire(c, &b, &row, &err);
  check(rc == GM_NOT, "update-acquire of a live lease is GM_NOT (rc %d)", rc);
  rc = ops->observe(c, name, &seen, &err);
  check(seen.token == 1 && strcmp(seen.owner, "node-a") == 0,
        "and leaves it to its holder");

  rc = ops->release(c, name, "node-b", 0, 1, &err);
  check(rc == GM_NOT, "release by another node is GM_NOT");
  rc = ops->release(c, name, "node-a", 0, 1, &err);
  check(rc == GM_OK, "release by the owner (rc %d, %s)", rc, err.msg);
  rc = ops->observe(c, name, &seen, &err);
  check(rc == GM_OK && seen.exists && seen.owner[0] == '\0' &&
            seen.token == 1 && seen.expires_at <= seen.now,
        "a released lock keeps its document and token, expired");

  rc = ops->acquire(c, &b, &row, &err);
  check(rc == GM_OK && row.token == 2 && strcmp(row.owner, "node-b") == 0,
        "update-acquire of a released lock: token + 1 (rc %d, token %llu)",
        rc, (unsigned long long)row.token);
  rc = ops->release(c, name, "node-a", 0, 1, &err);
  check(rc == GM_NOT, "a stale release (old token) is GM_NOT");
  rc = ops->observe(c, name, &seen, &err);
  check(seen.token == 2 && strcmp(seen.owner, "node-b") == 0 &&
            seen.expires_at > seen.now,
        "and does not free the new holder");
  a = req(name, "node-a", 1, 1, 0, L);
  rc = ops->acquire(c, &a, &row, &err);
  check(rc == GM_NOT, "update-acquire with a stale expected token is GM_NOT");

  /* min_token: above every token the node has seen. */
  rc = ops->release(c, name, "node-b", 0, 2, &err);
  a = req(name, "node-a", 1, 2, 100, L);
  rc = ops->acquire(c, &a, &row, &err);
  check(rc == GM_OK && row.token == 101,
        "update-acquire with min_token 100 gives 101 (got %llu)",
        (unsigned long long)row.token);
  const char *name2 = new_lock();
  a = req(name2, "node-a", 0, 0, 41, L);
  rc = ops->acquire(c, &a, &row, &err);
  check(rc == GM_OK && row.token == 42,
        "insert-if-absent with min_token 41 gives 42 (got %llu)",
        (unsigned long long)row.token);

  /* Expiry on the server's clock. */
  const char *name3 = new_lock();
  a = req(name3, "node-a", 0, 0, 0, 300000);
  rc = ops->acquire(c, &a, &row, &err);
  b = req(name3, "node-b", 1, 1, 0, L);
  rc = ops->acquire(c, &b, &seen, &err);
  check(rc == GM_NOT, "a 0.3 s lease is not taken before it expires");
  sleep_us(row.expires_at - row.now + 20000);
  rc = ops->acquire(c, &b, &row, &err);
  check(rc == GM_OK && row.token == 2 && strcmp(row.owner, "node-b") == 0,
        "and is taken once the server's clock passed it (rc %d)", rc);
  rc = ops->renew(c, name3, "node-a", 0, 1, L, &row, &err);
  check(rc == GM_NOT, "the old holder cannot renew it any more");

  /* Names that look like expressions are stored as they are. */
  const char *odd = "$owner";
  a = req(new_lock(), odd, 0, 0, 0, L);
  a.version = "$$NOW";
  rc = ops->acquire(c, &a, &row, &err);
  check(rc == GM_OK && strcmp(row.owner, odd) == 0 &&
            strcmp(row.version, "$$NOW") == 0,
        "an owner '$owner' and version '$$NOW' are literals (rc %d, %s/%s)",
        rc, row.owner, row.version);
}

/* ABI 2: the completion record of a one-time task and an operator's
 * release. */
static void test_complete(void *c) {
  gm_error err = {0};
  gm_row row, seen;
  const int64_t L = 5000000;
  const char *name = new_lock();
  int rc;

  rc = ops->complete(c, name, "node-a", 0, 1, "ok", &err);
  check(rc == GM_NOT, "complete of a lock with no document is GM_NOT "
        "(rc %d, %s)", rc, rc == GM_ERR ? err.msg : "");
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, L);
  rc = ops->acquire(c, &a, &row, &err);
  rc = ops->observe(c, name, &seen, &err);
  check(rc == GM_OK && seen.done_at == 0 && seen.done_by[0] == '\0' &&
            seen.done_token == 0 && seen.result[0] == '\0',
        "a new lock has no completion record");

  rc = ops->complete(c, name, "node-b", 0, 1, "theirs", &err);
  check(rc == GM_NOT, "complete by another node is GM_NOT");
  rc = ops->complete(c, name, "node-a", 0, 2, "stale", &err);
  check(rc == GM_NOT, "complete with another token is GM_NOT");
  rc = ops->observe(c, name, &seen, &err);
  check(seen.done_at == 0, "and neither wrote a record");

  const char *result = "$result {\"x\": 1} \xc3\xa9";
  rc = ops->complete(c, name, "node-a", 0, 1, result, &err);
  check(rc == GM_OK, "complete by the holder (rc %d, %s)", rc, err.msg);
  rc = ops->observe(c, name, &seen, &err);
  int64_t wall = (int64_t)time(NULL) * 1000000;
  check(rc == GM_OK && strcmp(seen.done_by, "node-a") == 0 &&
            seen.done_token == 1 && strcmp(seen.result, result) == 0,
        "observe shows done_by, done_token and the result as given "
        "(%s, %llu, '%s')", seen.done_by,
        (unsigned long long)seen.done_token, seen.result);
  check(seen.done_at > wall - 60000000 && seen.done_at < wall + 60000000 &&
            seen.done_at <= seen.now && seen.done_at >= seen.renewed_at,
        "done_at is the server's now, UNIX-epoch µs (%lld, now %lld)",
        (long long)seen.done_at, (long long)seen.now);
  check(strcmp(seen.owner, "node-a") == 0 && seen.token == 1 &&
            seen.expires_at > seen.now,
        "complete leaves the lease to its holder");
  int64_t done_at = seen.done_at;

  rc = ops->release(c, name, "node-a", 0, 1, &err);
  gm_acquire_req b = req(name, "node-b", 1, 1, 0, L);
  rc = ops->acquire(c, &b, &row, &err);
  check(rc == GM_OK && row.token == 2 && row.done_at == done_at &&
            strcmp(row.done_by, "node-a") == 0 && row.done_token == 1 &&
            strcmp(row.result, result) == 0,
        "a later grant keeps the completion record (rc %d, done_by '%s')", rc,
        row.done_by);
  rc = ops->renew(c, name, "node-b", 0, 2, L, &row, &err);
  rc = ops->observe(c, name, &seen, &err);
  check(seen.done_at == done_at && seen.done_token == 1,
        "and so does a renewal");
  int64_t lease_end = seen.expires_at;

  /* An operator's release: the old lease stays, the token moves on. */
  rc = ops->force_release(c, name, 0, &row, &err);
  check(rc == GM_OK && row.exists && row.owner[0] == '\0' && row.token == 3 &&
            row.expires_at == lease_end && row.expires_at > row.now &&
            row.now > 0,
        "force_release frees a held lock with token + 1 and keeps its lease "
        "(rc %d, token %llu, expires in %lld us, %s)", rc,
        (unsigned long long)row.token, (long long)(row.expires_at - row.now),
        err.msg);
  check(row.done_at == done_at && strcmp(row.done_by, "node-a") == 0,
        "and keeps the completion record");
  rc = ops->renew(c, name, "node-b", 0, 2, L, &seen, &err);
  check(rc == GM_NOT, "the old holder cannot renew after it");
  rc = ops->release(c, name, "node-b", 0, 2, &err);
  check(rc == GM_NOT, "nor release");
  rc = ops->complete(c, name, "node-b", 0, 2, "late", &err);
  check(rc == GM_NOT, "nor complete");
  rc = ops->force_release(c, name, 1, &row, &err);
  check(rc == GM_OK && row.owner[0] == '\0' && row.token == 4 &&
            row.expires_at <= row.now,
        "force_release now: ends the lease at the server's now (token %llu)",
        (unsigned long long)row.token);
  b = req(name, "node-b", 1, 4, 0, L);
  rc = ops->acquire(c, &b, &row, &err);
  check(rc == GM_OK && row.token == 5,
        "the lock is free at once after it (token %llu)",
        (unsigned long long)row.token);
  rc = ops->force_release(c, new_lock(), 0, &row, &err);
  check(rc == GM_NOT, "force_release of a lock with no document is GM_NOT "
        "(rc %d)", rc);
}


/* renew_many: K locks in a constant number of commands, each with its own
 * result. */
static void test_renew_many(void *c) {
  gm_error err = {0};
  gm_row row;
  enum { K = 6, BIG = 300 };
  static char names[BIG][96];
  static gm_renew_req q[BIG];
  const int64_t L = 5000000;
  check(ops->renew_many != NULL, "the mongodb backend has renew_many");
  if (!ops->renew_many) return;
  int got = 0;
  for (int i = 0; i < BIG; i++) {
    snprintf(names[i], sizeof names[i], "%s-many-%d", new_lock(), i);
    gm_acquire_req a = req(names[i], "node-a", 0, 0, 0, L);
    got += ops->acquire(c, &a, &row, &err) == GM_OK;
    q[i] = (gm_renew_req){names[i], "node-a", row.token, L, GM_ERR, 0, 0, 0, 0};
  }
  check(got == BIG, "node-a holds %d locks (%d)", BIG, got);
  /* One of K is taken away (an operator's force release moves its token). */
  ops->force_release(c, names[2], 0, &row, &err);
  int upd = standin_count("update"), fnd = standin_count("find"),
      fam = standin_count("findAndModify");
  int rc = ops->renew_many(c, q, K, &err);
  int okn = 0;
  for (int i = 0; i < K; i++) okn += q[i].rc == GM_OK;
  check(rc == GM_OK && okn == K - 1 && q[2].rc == GM_NOT,
        "renew_many of %d locks, one lost: only that one is GM_NOT "
        "(rc %d, %d ok, lost one rc %d) %s", K, rc, okn, q[2].rc, err.msg);
  ops->observe(c, names[0], &row, &err);
  check(q[0].renewed_at > 0 && q[0].now == q[0].renewed_at &&
            q[0].expires_at - q[0].renewed_at == L &&
            row.renewed_at == q[0].renewed_at &&
            row.expires_at == q[0].expires_at,
        "each renewed lock gets the server's times as written "
        "(expires - renewed = %.3f s)",
        (q[0].expires_at - q[0].renewed_at) / 1e6);
  if (upd >= 0)
    check(standin_count("update") == upd + 1 &&
              standin_count("find") == fnd + 1 &&
              standin_count("findAndModify") == fam,
          "... in one update and one find (update +%d, find +%d, "
          "findAndModify +%d)", standin_count("update") - upd,
          standin_count("find") - fnd, standin_count("findAndModify") - fam);

  /* Many locks, two leases: still two commands. */
  q[2].rc = GM_ERR;
  gm_renew_req *rest = q + K;
  for (int i = 0; i < BIG - K; i++)
    if (i % 2) rest[i].lease_us = 2 * L;
  upd = standin_count("update"), fnd = standin_count("find");
  rc = ops->renew_many(c, rest, BIG - K, &err);
  okn = 0;
  for (int i = 0; i < BIG - K; i++)
    okn += rest[i].rc == GM_OK &&
           rest[i].expires_at - rest[i].renewed_at == rest[i].lease_us;
  check(rc == GM_OK && okn == BIG - K,
        "renew_many of %d locks with two leases: all renewed, each with "
        "its own lease (%d ok) %s", BIG - K, okn, err.msg);
  if (upd >= 0)
    check(standin_count("update") == upd + 1 &&
              standin_count("find") == fnd + 1,
          "... still one update and one find (update +%d, find +%d)",
          standin_count("update") - upd, standin_count("find") - fnd);

  /* A renewal by a stale holder (wrong token) is GM_NOT, the holder's own
   * still renews; none of ours: GM_NOT without a find. */
  gm_renew_req two[2] = {
      {names[K], "node-a", q[K].token + 7, L, GM_ERR, 0, 0, 0, 0},
      {names[K + 1], "node-b", q[K + 1].token, L, GM_ERR, 0, 0, 0, 0}};
  fnd = standin_count("find");
  rc = ops->renew_many(c, two, 2, &err);
  check(rc == GM_OK && two[0].rc == GM_NOT && two[1].rc == GM_NOT,
        "renew_many where no lock is ours: all GM_NOT (rc %d, %d %d)", rc,
        two[0].rc, two[1].rc);
  if (fnd >= 0)
    check(standin_count("find") == fnd,
          "... and no find when the update matched nothing");
  for (int i = 0; i < BIG; i++)
    ops->release(c, names[i], "node-a", 0, q[i].token, &err);
}


/* What the stand-in shows of a waiting watch: its count of getMores (-1
 * on a real server). */
static long getmores(void) { return standin_count("getMore"); }

/* The wake-up (watch): no thread of the backend's own; renewals and another
 * lock's release do not wake it, its lock's release does, a release before
 * the watch began returns at once, and the connection closes at once while
 * a getMore waits (interrupt, then close, as the core's wake-up does). */
static void test_watch(void *cfg, void *a) {
  gm_error err = {0};
  gm_row row, other;
  void *b = NULL;
  const int64_t L = 20000000;
  check(ops->watch && ops->interrupt && ops->open_watch && !ops->changed &&
            !ops->poll_us,
        "the mongodb backend has watch, interrupt and open_watch, and no "
        "changed()");
  if (!ops->open_watch || ops->open_watch(cfg, &b, &err) != GM_OK) {
    check(0, "a wake-up connection (%s)", err.msg);
    return;
  }
  char name[64], name2[64];
  snprintf(name, sizeof name, "%s", new_lock());
  snprintf(name2, sizeof name2, "%s", new_lock());
  gm_acquire_req r = req(name, "node-a", 0, 0, 0, L);
  int rc = ops->acquire(a, &r, &row, &err);
  r = req(name2, "node-a", 0, 0, 0, L);
  rc = rc == GM_OK ? ops->acquire(a, &r, &other, &err) : rc;
  check(rc == GM_OK, "two locks held (%s)", err.msg);

  bt_watch w;
  double t0 = mono();
  bt_watch_start(&w, b, name, 1500000, NULL, getmores);
  for (int i = 0; i < 3 && rc == GM_OK; i++)
    rc = ops->renew(a, name, "node-a", 0, row.token, L, &row, &err);
  rc = rc == GM_OK ? ops->release(a, name2, "node-a", 0, other.token, &err)
                   : rc;
  bt_watch_join(&w);
  check(rc == GM_OK && w.rc == GM_NOT && w.returned - t0 >= 1.45,
        "renewals and another lock's release do not end a watch (rc %d "
        "after %.0f ms of 1500) %s", w.rc, (w.returned - t0) * 1000,
        w.err.msg);

  bt_watch_start(&w, b, name, 5000000, NULL, getmores);
  double r0 = mono();
  rc = ops->release(a, name, "node-a", 0, row.token, &err);
  bt_watch_join(&w);
  check(rc == GM_OK && w.rc == GM_OK && w.returned - r0 < 0.05,
        "its lock's release ends the watch: %.1f ms after release began",
        (w.returned - r0) * 1000);

  /* A release that came before the watch's first call (a new wake-up
   * connection): seen from the document, at once. */
  void *b2 = NULL;
  r = req(name, "node-a", 1, row.token, 0, L);
  rc = ops->acquire(a, &r, &row, &err);
  rc = rc == GM_OK ? ops->open_watch(cfg, &b2, &err) : rc;
  rc = rc == GM_OK ? ops->release(a, name, "node-a", 0, row.token, &err) : rc;
  t0 = mono();
  int wr = rc == GM_OK ? ops->watch(b2, name, 5000000, NULL, &err) : GM_ERR;
  check(wr == GM_OK && mono() - t0 < 0.05,
        "a lock released before the watch began: GM_OK at once (%.1f ms) %s",
        (mono() - t0) * 1000, err.msg);
  if (b2) ops->close(b2);

  /* close while a getMore waits: interrupt, the watch's return, close.
   * First the events b has not seen yet (the release above): each a
   * GM_OK at once, which the core pays with one read. */
  r = req(name, "node-a", 1, row.token, 0, L);
  rc = ops->acquire(a, &r, &row, &err);
  for (int i = 0; i < 10 && ops->watch(b, name, 100000, NULL, &err) == GM_OK; i++) {
  }
  bt_watch_start(&w, b, name, 5000000, NULL, getmores);
  double c0 = mono();
  ops->interrupt(b);
  bt_watch_join(&w);
  double c1 = mono();
  ops->close(b);
  double c2 = mono();
  printf("# close mid-watch: interrupt to return %.2f ms, close %.2f ms\n",
         (c1 - c0) * 1000, (c2 - c1) * 1000);
  check(rc == GM_OK && w.rc == GM_ERR && c2 - c0 < 0.2,
        "a wake-up connection closes mid-watch in %.1f ms (target 50; watch "
        "rc %d)", (c2 - c0) * 1000, w.rc);
  ops->release(a, name, "node-a", 0, row.token, &err);
}

/* An events collection that someone made without "capped": the server
 * refuses the tail, and watch says at once that it cannot watch (the
 * followers poll), without an error and keeping the connection. */
static void test_watch_refused(void) {
  char coll[64], events[80];
  snprintf(coll, sizeof coll, "gomaster_nocap%d", (int)getpid());
  snprintf(events, sizeof events, "%s_events", coll);
  mongoc_client_t *cl = mongoc_client_new(base_url);
  mongoc_uri_t *uri = mongoc_uri_new(base_url);
  bson_t *doc = BCON_NEW("_id", BCON_UTF8("not-capped"));
  mongoc_collection_t *ev =
      cl && uri ? mongoc_client_get_collection(
                      cl, mongoc_uri_get_database(uri), events)
                : NULL;
  int put = ev && mongoc_collection_insert_one(ev, doc, NULL, NULL, NULL);
  char opt[96];
  snprintf(opt, sizeof opt, "collection=%s", coll);
  void *cfg = NULL, *a = NULL, *b = NULL;
  gm_error err = {0};
  int rc = put ? parse_url(url_with(opt), &cfg, &err) : GM_ERR;
  rc = rc == GM_OK ? ops->open(cfg, &a, &err) : rc;
  rc = rc == GM_OK ? ops->open_watch(cfg, &b, &err) : rc;
  check(rc == GM_OK, "a collection whose events are not capped opens (%s)",
        err.msg);
  if (rc == GM_OK) {
    gm_row row;
    const char *name = new_lock();
    gm_acquire_req r = req(name, "node-a", 0, 0, 0, 20000000);
    rc = ops->acquire(a, &r, &row, &err);
    double t0 = mono();
    int w1 = ops->watch(b, name, 5000000, NULL, &err);
    double t1 = mono();
    int w2 = ops->watch(b, name, 5000000, NULL, &err);
    double t2 = mono();
    gm_row seen;
    int obs = ops->observe(b, name, &seen, &err);
    check(rc == GM_OK && w1 == GM_NOT && t1 - t0 < 1 && w2 == GM_NOT &&
              t2 - t1 < 0.05 && obs == GM_OK && seen.exists,
          "not capped: watch GM_NOT at once (%.1f ms, then %.1f ms), the "
          "connection kept (%d %d %d) %s", (t1 - t0) * 1000, (t2 - t1) * 1000,
          w1, w2, obs, err.msg);
    ops->release(a, name, "node-a", 0, row.token, &err);
  }
  if (b) ops->close(b);
  if (a) ops->close(a);
  if (cfg) ops->free_cfg(cfg);
  bson_destroy(doc);
  if (ev) mongoc_collection_destroy(ev);
  if (uri) mongoc_uri_destroy(uri);
  if (cl) mongoc_client_destroy(cl);
}

/* A server at its connection limit (the stand-in's, as mongod's
 * net.maxIncomingConnections) closes a new connection before any reply to
 * its handshake: open fails at once as busy (GM_E_BUSY, which the core
 * says once and backs off from), while a connection made before goes on.
 * The limit lifted, open works again. */
static void test_busy(void *cfg, void *c) {
  gm_error err = {0};
  gm_row row;
  void *conn = NULL;
  if (standin_max_connections(0) < 0) {
    printf("# skipped on a real server: the connection limit\n");
    return;
  }
  standin_max_connections(1); /* c's is open: no new one */
  double t0 = mono();
  int rc = ops->open(cfg, &conn, &err);
  double took = mono() - t0;
  check(rc == GM_ERR && err.code == GM_E_BUSY &&
            strstr(err.msg, "refuses connections") && took < 0.5,
        "a server at its connection limit: open is busy (code %d) in %.1f "
        "ms: %s", err.code, took * 1000, err.msg);
  if (rc == GM_OK) ops->close(conn);
  rc = ops->observe(c, new_lock(), &row, &err);
  check(rc == GM_OK, "a connection opened before goes on (%s)",
        rc ? err.msg : "");
  standin_max_connections(0);
  rc = ops->open(cfg, &conn, &err);
  check(rc == GM_OK, "the limit lifted, open works again (%s)",
        rc ? err.msg : "");
  if (rc == GM_OK) ops->close(conn);

  /* A server that takes the connection and never answers: not busy. */
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char mute[128];
  void *mcfg = NULL;
  rc = bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 4) ||
       getsockname(fd, (struct sockaddr *)&a, &len);
  snprintf(mute, sizeof mute, "mongodb://127.0.0.1:%d/db?timeout=0.3",
           ntohs(a.sin_port));
  rc = rc ? GM_ERR : parse_url(mute, &mcfg, &err);
  rc = rc ? GM_ERR : ops->open(mcfg, &conn, &err) == GM_OK ? GM_OK : GM_NOT;
  check(rc == GM_NOT && err.code == GM_E_CONNECT,
        "a server that never answers the handshake is a connect error, not "
        "busy (code %d): %s", err.code, err.msg);
  if (rc == GM_OK) ops->close(conn);
  if (mcfg) ops->free_cfg(mcfg);
  close(fd);
}

static void test_standin_only(void *c) {
  gm_error err = {0};
  gm_row r1, r2;
  const char *name = new_lock();
  int before = standin_count("aggregate");
  if (before < 0) {
    printf("skip - clock step and command counts: not the stand-in\n");
    return;
  }
  int ismaster = standin_count("isMaster"), hello = standin_count("hello");
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
  ops->acquire(c, &a, &r1, &err);
  ops->observe(c, name, &r1, &err);
  check(standin_count("aggregate") == before + 1 &&
            standin_count("isMaster") == ismaster &&
            standin_count("hello") == hello,
        "observe of an existing lock is one round trip (one aggregate)");

  check(standin_step_clock(10), "the stand-in steps its clock by +10 s");
  ops->observe(c, name, &r2, &err);
  int64_t d = r2.now - r1.now;
  check(d >= 10000000 && d < 12000000,
        "observe's now moved by the step: %.3f s", d / 1e6);
  gm_acquire_req b = req(name, "node-b", 1, 1, 0, 5000000);
  int rc = ops->acquire(c, &b, &r2, &err);
  check(rc == GM_OK, "after +10 s the server considers a 5 s lease expired "
        "(the core must not rely on that alone)");
  check(standin_step_clock(-10), "and steps it back");
}

/* Documents edited by hand: each refused by observe as GM_E_ROW, naming
 * the field and the lock. Written with libmongoc directly. */
static void test_unreadable(void *c) {
  mongoc_client_t *cl = mongoc_client_new(base_url);
  mongoc_uri_t *uri = mongoc_uri_new(base_url);
  const char *dbname = uri ? mongoc_uri_get_database(uri) : NULL;
  if (!cl || !dbname) {
    check(0, "unreadable: a client of our own");
    goto out;
  }
  mongoc_collection_t *coll =
      mongoc_client_get_collection(cl, dbname, "gomaster_ctest");
  struct {
    const char *what, *field;
    bson_t *doc;
  } cases[] = {
      {"owner null", "'owner'",
       BCON_NEW("owner", BCON_NULL, "token", BCON_INT64(3), "acquired_at",
                BCON_DATE_TIME(0), "renewed_at", BCON_DATE_TIME(0),
                "expires_at", BCON_DATE_TIME(253402214400000LL))},
      {"token 1.5", "'token'",
       BCON_NEW("owner", BCON_UTF8("x"), "token", BCON_DOUBLE(1.5),
                "acquired_at", BCON_DATE_TIME(0), "renewed_at",
                BCON_DATE_TIME(0), "expires_at", BCON_DATE_TIME(0))},
      {"token 'abc'", "'token'",
       BCON_NEW("owner", BCON_UTF8("x"), "token", BCON_UTF8("abc"),
                "acquired_at", BCON_DATE_TIME(0), "renewed_at",
                BCON_DATE_TIME(0), "expires_at", BCON_DATE_TIME(0))},
      {"token missing", "'token'",
       BCON_NEW("owner", BCON_UTF8("x"), "acquired_at", BCON_DATE_TIME(0),
                "renewed_at", BCON_DATE_TIME(0), "expires_at",
                BCON_DATE_TIME(0))},
      {"expires_at text", "'expires_at'",
       BCON_NEW("owner", BCON_UTF8("x"), "token", BCON_INT64(3),
                "acquired_at", BCON_DATE_TIME(0), "renewed_at",
                BCON_DATE_TIME(0), "expires_at", BCON_UTF8("tomorrow"))},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *name = new_lock();
    BSON_APPEND_UTF8(cases[i].doc, "_id", name);
    bson_error_t be;
    int put = mongoc_collection_insert_one(coll, cases[i].doc, NULL, NULL,
                                           &be);
    gm_row row;
    gm_error err = {0};
    int rc = put ? ops->observe(c, name, &row, &err) : GM_OK;
    check(put && rc == GM_ERR && err.code == GM_E_ROW &&
              strstr(err.msg, cases[i].field) && strstr(err.msg, name),
          "unreadable: %s is refused naming the field and the lock (%s)",
          cases[i].what, put ? err.msg : be.message);
    bson_destroy(cases[i].doc);
  }
  mongoc_collection_destroy(coll);
out:
  if (uri) mongoc_uri_destroy(uri);
  if (cl) mongoc_client_destroy(cl);
}

int main(void) {
  const char *env = getenv("GOMASTER_TEST_MONGO_URL");
  if (!env || !*env) {
    printf("skipped: GOMASTER_TEST_MONGO_URL not set\n");
    return 0;
  }
  ops = gm_backend_find("mongodb", NULL);
  if (!ops) {
    printf("skipped: this build has no mongodb backend\n");
    return 0;
  }
  snprintf(base_url, sizeof base_url, "%s", env);
  check(ops->abi == GM_BACKEND_ABI && ops->url_raw == 1 &&
            strcmp(ops->name, "mongodb") == 0,
        "the vtable: abi, name, url_raw");

  test_parse_errors();
  test_connect_errors();

  void *cfg = NULL, *conn = NULL;
  gm_error err = {0};
  int rc = parse_url(url_with("collection=gomaster_ctest"), &cfg, &err);
  check(rc == GM_OK, "parse %s (%s)", "GOMASTER_TEST_MONGO_URL", err.msg);
  if (rc == GM_OK) {
    rc = ops->open(cfg, &conn, &err);
    check(rc == GM_OK, "open (%s)", err.msg);
    if (rc == GM_OK) {
      test_lease(conn);
      test_complete(conn);
      test_renew_many(conn);
      test_watch(cfg, conn);
      test_watch_refused();
      test_busy(cfg, conn);
      test_standin_only(conn);
      test_unreadable(conn);
      ops->close(conn);
    }
    ops->free_cfg(cfg);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
