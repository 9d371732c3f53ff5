/*
 * test_redis_backend.c: drives gm_redis_ops directly against the Redis
 * server named by GOMASTER_TEST_REDIS_URL (tests/servers/redis.sh starts
 * one, with a password and no persistence). Hand edits, SCRIPT FLUSH and
 * ACL users go through a hiredis connection of the test's own. One line per
 * check, then "N passed, N failed".
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "backend_test.h"

extern const gm_backend_ops gm_redis_ops;

#define EVENTS_NAME "@events" /* after the prefix: the wake-up stream */

static redisContext *adm; /* the test's own connection */

/* The admin connection: authenticated with the URL's password. */
static int admin_open(void) {
  const char *port = gm_kv_get(url.kv, url.n, "port");
  struct timeval tv = {5, 0};
  adm = redisConnectWithTimeout("127.0.0.1", port ? atoi(port) : 6379, tv);
  if (!adm || adm->err) return GM_ERR;
  redisReply *r = redisCommand(adm, "AUTH %s", password());
  int ok = r && r->type == REDIS_REPLY_STATUS;
  if (r) freeReplyObject(r);
  return ok ? GM_OK : GM_ERR;
}

/* Runs a command on the admin connection (reconnecting once after a
 * restart); 1 when it did not fail. */
static int admin(const char *fmt, ...) {
  for (int i = 0; i < 2; i++) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = adm && !adm->err ? redisvCommand(adm, fmt, ap) : NULL;
    va_end(ap);
    if (r) {
      int ok = r->type != REDIS_REPLY_ERROR;
      freeReplyObject(r);
      return ok;
    }
    if (adm) redisFree(adm);
    adm = NULL;
    if (admin_open()) return 0;
  }
  return 0;
}

/* The number `field` of INFO `section`, or -1. */
static long info(const char *section, const char *field) {
  redisReply *r = adm ? redisCommand(adm, "INFO %s", section) : NULL;
  const char *u = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, field)
                                                     : NULL;
  long v = u && u[strlen(field)] == ':' ? atol(u + strlen(field) + 1) : -1;
  if (r) freeReplyObject(r);
  return v;
}

/* Seconds the server has been up, or -1. */
static long uptime(void) { return info("server", "uptime_in_seconds"); }

static void test_options(void) {
  void *cfg;
  gm_error err;

  bt_describe("redis://127.0.0.1:", "/0?prefix=gomaster:");
  bt_refused("colour", "blue");
  bt_refused("port", "70000");
  bt_refused("database", "zero");
  bt_refused("wait", "-1");
  bt_refused("timeout", "0");
  int rc = parse_with("user", "alice", &cfg, &err);
  if (rc == GM_OK) ops->free_cfg(cfg);
  check(rc == GM_OK, "user with the URL's password accepted");

  /* rediss:// as a URL, through the registry as users meet it */
  char tls[256];
  snprintf(tls, sizeof tls, "rediss://:%s@127.0.0.1:6380/0", "se%40cret");
  gm_backend *b = gm_backend_new_url(tls, &err);
  check(!b && err.code == GM_E_ARG && strstr(err.msg, "rediss://") &&
            strstr(err.msg, "TLS") && !strstr(err.msg, "se@cret") &&
            !strstr(err.msg, "se%40cret"),
        "rediss:// refused, saying why, without the password: %s", err.msg);
  if (b) gm_backend_unref(b);
}

static void test_connect_errors(void) {
  void *cfg, *conn;
  gm_error err;
  char pw[128];

  snprintf(pw, sizeof pw, "%s-wrong", password());
  int rc = open_with("password", pw, &cfg, &conn, &err);
  check_error("wrong password", rc, &err, GM_E_AUTH, "authentication failed");
  check(strstr(err.msg, pw) == NULL, "wrong password: not in message");
  close_conn(cfg, conn);

  rc = open_with("password", NULL, &cfg, &conn, &err);
  check_error("no password", rc, &err, GM_E_AUTH, "NOAUTH");
  close_conn(cfg, conn);

  double t0 = mono();
  rc = open_with("port", "1", &cfg, &conn, &err);
  check_error("closed port", rc, &err, GM_E_CONNECT, "127.0.0.1:1");
  check(mono() - t0 < 2.5, "closed port: fails at once (%.3f s)", mono() - t0);
  close_conn(cfg, conn);

  /* An ACL user, as redis://user:password@host names it. */
  char user[64], upw[64];
  snprintf(user, sizeof user, "gm-%s", run);
  snprintf(upw, sizeof upw, "pw-%s", run);
  int made = admin("ACL SETUSER %s on >%s ~gomaster:* resetchannels +@all",
                   user, upw);
  gm_kv kv[] = {{"host", "127.0.0.1"},
                {"port", gm_kv_get(url.kv, url.n, "port")},
                {"user", user},
                {"password", upw}};
  rc = ops->parse(kv, 4, &cfg, &err);
  conn = NULL;
  rc = rc == GM_OK ? ops->open(cfg, &conn, &err) : rc;
  gm_row o;
  check(made && rc == GM_OK && ops->observe(conn, "acl", &o, &err) == GM_OK,
        "an ACL user connects and reads (%s)", rc ? err.msg : "");
  int w1 = ops->watch(conn, "acl", 0, NULL, &err); /* free: at once */
  int w2 = ops->watch(conn, "acl", 0, NULL, &err); /* XREAD: nothing new */
  check(w1 == GM_OK && w2 == GM_NOT,
        "... and watches the wake-up stream, with no channel (%d %d) %s", w1,
        w2, w2 == GM_ERR ? err.msg : "");
  close_conn(cfg, conn);
  kv[3].value = "not-it";
  rc = ops->parse(kv, 4, &cfg, &err);
  conn = NULL;
  rc = rc == GM_OK ? ops->open(cfg, &conn, &err) : rc;
  check(rc == GM_ERR && err.code == GM_E_AUTH && strstr(err.msg, user) &&
            !strstr(err.msg, "not-it"),
        "an ACL user's wrong password: %s", err.msg);
  close_conn(cfg, conn);
  admin("ACL DELUSER %s", user);
}

/* What a grant is in Redis (the rest of acquire, renew, release,
 * takeover, tokens, instance keys and the grant's times is
 * test_backend.c's): a hash with no TTL. */
static void test_hash(void *conn) {
  gm_error err;
  gm_row r;
  char name[128];
  const int64_t lease = 5000000;
  lock_name(name, sizeof name, "basic");

  gm_acquire_req a = req(name, "node-a", 0, 0, 0, lease);
  int rc = ops->acquire(conn, &a, &r, &err);
  check(rc == GM_OK && admin("PTTL gomaster:%s", name),
        "the hash is readable by PTTL (rc %d %s)", rc,
        rc == GM_ERR ? err.msg : "");
  redisReply *ttl = redisCommand(adm, "PTTL gomaster:%s", name);
  check(ttl && ttl->type == REDIS_REPLY_INTEGER && ttl->integer == -1,
        "the hash has no TTL (PTTL %lld)", ttl ? ttl->integer : 0);
  if (ttl) freeReplyObject(ttl);
  ops->release(conn, name, "node-a", inst("node-a"), 1, &err);
}

/* Tokens above 2^53 are exact (strings, not Lua's doubles), up to the
 * largest, and never wrap. */
static void test_token_limit(void *conn, void *conn2) {
  gm_error err;
  gm_row r, o;
  char name[128];
  lock_name(name, sizeof name, "limit");
  const uint64_t big = 9223372036854775805u; /* INT64_MAX - 2 */
  gm_acquire_req a = req(name, "node-a", 0, 0, big, 5000000);
  int rc = ops->acquire(conn, &a, &r, &err);
  check(rc == GM_OK && r.token == big + 1, "token %llu granted exactly",
        (unsigned long long)r.token);
  rc = ops->renew(conn, name, "node-a", inst("node-a"), big + 1, 5000000, &r, &err);
  check(rc == GM_OK && r.token == big + 1, "... and renewed by it");
  rc = ops->force_release(conn2, name, 0, &o, &err);
  check(rc == GM_OK && o.token == big + 2 && o.owner[0] == '\0',
        "force_release adds one to it exactly: %llu",
        (unsigned long long)o.token);
  rc = ops->observe(conn, name, &o, &err);
  check(rc == GM_OK && o.token == 9223372036854775807u,
        "a row at INT64_MAX reads exactly");
  gm_acquire_req b = req(name, "node-b", 1, o.token, 0, 5000000);
  rc = ops->acquire(conn2, &b, &r, &err);
  check(rc == GM_ERR && err.code == GM_E_ROW && strstr(err.msg, "limit") &&
            strstr(err.msg, "wrap"),
        "a grant past INT64_MAX is refused, saying so: %s", err.msg);
  rc = ops->force_release(conn2, name, 0, &o, &err);
  check(rc == GM_ERR && strstr(err.msg, "limit"),
        "force_release past INT64_MAX is refused too: %s", err.msg);
  rc = ops->observe(conn, name, &o, &err);
  check(rc == GM_OK && o.token == 9223372036854775807u,
        "... and the row is left as it was");
}

static void test_names(void *conn) {
  static const char *const odd[] = {"it's a \"quoted\" name", "ünïcødé 锁 🔒",
                                    "case", "Case", "trail ", "a*b?[c]",
                                    "tab\tand\nnewline"};
  gm_error err;
  gm_row r;
  char name[GM_NAME_MAX + 8];
  int ok = 1;
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    lock_name(name, sizeof name, odd[i]);
    gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
    ok = ok && ops->acquire(conn, &a, &r, &err) == GM_OK &&
         ops->renew(conn, name, "node-a", inst("node-a"), 1, 5000000, &r, &err) == GM_OK;
  }
  check(ok, "each odd name is its own hash (case, space, glob characters)");
  /* the widest name: test_backend; a longer one: test_core */
}

/* Edits made by hand with redis-cli: each is GM_ERR naming the field. */
static void test_hand_edits(void *conn) {
  /* refused: the take-over write (which reads owner, token and
   * expires_at itself) is refused too */
  static const struct {
    const char *what, *cmd, *field;
    int refused;
  } cases[] = {
      {"token 'abc'", "HSET %s token abc", "'token'", 1},
      {"token '1.5'", "HSET %s token 1.5", "'token'", 1},
      {"token '007'", "HSET %s token 007", "'token'", 1},
      {"token past INT64_MAX", "HSET %s token 9223372036854775808", "'token'",
       1},
      {"expires_at 'soon'", "HSET %s expires_at soon", "'expires_at'", 1},
      {"no expires_at", "HDEL %s expires_at", "'expires_at' of hash", 1},
      {"no owner", "HDEL %s owner", "'owner'", 0},
      {"instance 'x'", "HSET %s instance x", "'instance'", 0},
  };
  gm_error err;
  gm_row r, o;
  char name[128], key[160];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(name, sizeof name, "%s-edit-%zu", run, i);
    snprintf(key, sizeof key, "gomaster:%s", name);
    gm_acquire_req a = req(name, "node-a", 0, 0, 0, 20000);
    int rc = ops->acquire(conn, &a, &r, &err);
    check(rc == GM_OK && admin(cases[i].cmd, key), "%s: edited",
          cases[i].what);
    rc = ops->observe(conn, name, &o, &err);
    check(rc == GM_ERR && err.code == GM_E_ROW &&
              strstr(err.msg, cases[i].field) && strstr(err.msg, name),
          "%s: observe is GM_ERR naming the field: %s", cases[i].what,
          err.msg);
    if (!cases[i].refused) continue;
    usleep(25000); /* the 20 ms lease is over: a take-over would be tried */
    a = req(name, "node-b", 1, 1, 0, 5000000);
    rc = ops->acquire(conn, &a, &r, &err);
    check(rc != GM_OK, "%s: no grant over it (%s)", cases[i].what,
          rc == GM_ERR ? err.msg : "GM_NOT");
  }
  snprintf(name, sizeof name, "%s-edit-string", run);
  admin("SET gomaster:%s hello", name);
  int rc = ops->observe(conn, name, &o, &err);
  check(rc == GM_ERR && err.code == GM_E_ROW && strstr(err.msg, "WRONGTYPE") &&
            strstr(err.msg, name),
        "a key that is not a hash: %s", err.msg);
  /* a released hash whose lease still runs (an operator's edit) is
   * waited out, not taken */
  snprintf(name, sizeof name, "%s-edit-released", run);
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
  rc = ops->acquire(conn, &a, &o, &err);
  check(rc == GM_OK && admin("HSET gomaster:%s owner \"\"", name),
        "owner '' written over a running lease");
  a = req(name, "node-b", 1, 1, 0, 5000000);
  rc = ops->acquire(conn, &a, &o, &err);
  check(rc == GM_NOT, "released with a running lease: not taken before "
                      "expires_at (rc %d)", rc);
}

/* The script flushed from the server between two calls: loaded again. */
static void test_noscript(void *conn) {
  gm_error err;
  gm_row r;
  char name[128];
  lock_name(name, sizeof name, "noscript");
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
  int rc = ops->acquire(conn, &a, &r, &err);
  check(rc == GM_OK && admin("SCRIPT FLUSH"), "SCRIPT FLUSH after a grant");
  rc = ops->renew(conn, name, "node-a", inst("node-a"), 1, 5000000, &r, &err);
  check(rc == GM_OK, "renew after SCRIPT FLUSH: loaded again (%s)",
        rc == GM_ERR ? err.msg : "ok");
  admin("SCRIPT FLUSH");
  gm_renew_req q = {.name = name, .owner = "node-a",
                    .instance = inst("node-a"), .token = 1,
                    .lease_us = 5000000};
  rc = ops->renew_many(conn, &q, 1, &err);
  check(rc == GM_OK && q.rc == GM_OK, "renew_many after SCRIPT FLUSH");
}

static long clients(void) { return info("clients", "connected_clients"); }

/* What the server shows of a waiting watch (INFO clients). */
static long blocked_clients(void) {
  return info("clients", "blocked_clients");
}

/* The wake-up: watch on the follower's one connection (no second one), a
 * release seen within 50 ms, events of other locks read past. */
static void test_wakeup(void *conn, void *conn2) {
  gm_error err;
  gm_row r, o;
  char name[128], other[128];
  lock_name(name, sizeof name, "wake");
  lock_name(other, sizeof other, "wake-other");
  check(ops->watch && ops->interrupt && !ops->changed && !ops->poll_us,
        "watch and interrupt, no changed() to poll");
  /* new hashes: a lease within the server's uptime (6 s) */
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
  int rc = ops->acquire(conn, &a, &r, &err);
  gm_acquire_req b = req(other, "node-a", 0, 0, 0, 5000000);
  rc = rc == GM_OK ? ops->acquire(conn, &b, &o, &err) : rc;
  check(rc == GM_OK, "two locks taken %s", rc ? err.msg : "");
  /* the follower's wake-up is its one connection: the server sees as many
   * connections while it waits as before it (the subscription of old was
   * one more) */
  long c0 = clients();
  bt_watch w;
  int blocked =
      bt_watch_start(&w, conn2, name, 5000000, NULL, blocked_clients);
  long c1 = clients();
  check(blocked && c0 > 0 && c1 == c0,
        "a watching follower holds no connection but its own (%ld clients "
        "before, %ld while it waits)", c0, c1);
  /* a release of another lock: read past, the watch goes on */
  rc = ops->release(conn, other, "node-a", inst("node-a"), o.token, &err);
  usleep(100000);
  check(rc == GM_OK && w.rc == -9, "a release of another lock does not end "
        "the watch");
  double t0 = mono();
  rc = ops->release(conn, name, "node-a", inst("node-a"), r.token, &err);
  bt_watch_join(&w);
  check(rc == GM_OK && w.rc == GM_OK && w.returned - t0 < 0.05,
        "watch returns %.1f ms after the release (<= 50)",
        (w.returned - t0) * 1000);
  rc = ops->observe(conn2, name, &o, &err);
  check(rc == GM_OK && o.owner[0] == '\0', "the follower reads it free");
  void *cfg3, *c3;
  rc = open_with("timeout", "1", &cfg3, &c3, &err);
  t0 = mono();
  rc = rc == GM_OK ? ops->watch(c3, name, 2000000, NULL, &err) : rc;
  check(rc == GM_OK && mono() - t0 < 0.05,
        "the first watch of a free lock returns at once (%.1f ms)",
        (mono() - t0) * 1000);
  close_conn(cfg3, c3);
  /* no event lost between two watches: a release while the follower
   * reads (not in watch) ends the next watch at once */
  a = req(name, "node-b", 1, o.token, 0, 60000000);
  rc = ops->acquire(conn, &a, &r, &err);
  rc = rc == GM_OK ? ops->watch(conn2, name, 200000, NULL, &err) : rc;
  check(rc == GM_NOT, "held again: the watch times out (%d)", rc);
  rc = ops->force_release(conn, name, 1, &o, &err);
  t0 = mono();
  check(rc == GM_OK && ops->watch(conn2, name, 2000000, NULL, &err) == GM_OK &&
            mono() - t0 < 0.05,
        "a force_release between two watches ends the next at once "
        "(%.1f ms)", (mono() - t0) * 1000);
  /* on the election connection: a watch outlasts the read timeout (1 s
   * here), leaves the connection as it was, and an interrupt that came
   * before it ends it at once */
  a = req(name, "node-c", 1, o.token, 0, 60000000);
  rc = ops->acquire(conn, &a, &r, &err);
  rc = rc == GM_OK ? open_with("timeout", "1", &cfg3, &c3, &err) : rc;
  t0 = mono();
  rc = rc == GM_OK ? ops->watch(c3, name, 1600000, NULL, &err) : rc;
  double took = mono() - t0;
  /* (blocked a timer tick less than asked, as ops->watch_early_us says:
   * the server ends a blocked XREAD on its tick, up to a tick late) */
  double early = (double)ops->watch_early_us / 1e6;
  check(rc == GM_NOT && early == 0.1 && took > 1.55 - early && took < 1.65,
        "a 1.6 s watch with a 1 s read timeout times out on time (%.2f s) "
        "%s", took, rc == GM_ERR ? err.msg : "");
  check(ops->observe(c3, name, &o, &err) == GM_OK,
        "... and the connection still reads");
  ops->interrupt(c3);
  t0 = mono();
  rc = ops->watch(c3, name, 3000000, NULL, &err);
  check(rc == GM_ERR && mono() - t0 < 0.05 && strstr(err.msg, "interrupted"),
        "an interrupt before the watch ends it at once (%.1f ms): %s",
        (mono() - t0) * 1000, err.msg);
  close_conn(cfg3, c3);
  check(ops->observe(conn, EVENTS_NAME, &o, &err) == GM_ERR &&
            err.code == GM_E_ARG && strstr(err.msg, "reserved"),
        "the stream's name is no lock name: %s", err.msg);
  ops->release(conn, name, "node-c", inst("node-c"), r.token, &err);
}

typedef struct renew_call {
  void *conn;
  const char *name;
  int rc;
  gm_error err;
} renew_call;

static void *renew_main(void *arg) {
  renew_call *c = arg;
  gm_row r;
  c->rc = ops->renew(c->conn, c->name, "node-a", inst("node-a"), 1, 60000000,
                     &r, &c->err);
  return NULL;
}

/* A hung server costs at most the timeout; a restart that kept nothing
 * leaves no hash, and the next grant starts above the token seen. */
static void test_server_events(const char *dir) {
  void *cfg, *conn;
  gm_error err;
  gm_row r, o;
  char name[128];
  lock_name(name, sizeof name, "events");
  if (parse_with("timeout", "1", &cfg, &err)) return;
  int rc = ops->open(cfg, &conn, &err);
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
  check(rc == GM_OK && ops->acquire(conn, &a, &r, &err) == GM_OK,
        "lock taken before the pause");
  check(server(dir, "pause") == 0, "server paused (SIGSTOP)");
  double t0 = mono();
  rc = ops->watch(conn, name, 300000, NULL, &err);
  double took = mono() - t0;
  check(rc == GM_ERR && err.code == GM_E_CONNECT && took > 1.2 && took < 2,
        "a 0.3 s watch on a paused server fails after it and the timeout of "
        "1 s (%.2f s): %s", took, err.msg);
  ops->close(conn);
  check(server(dir, "resume") == 0 && ops->open(cfg, &conn, &err) == GM_OK &&
            server(dir, "pause") == 0,
        "connected, then paused again");
  t0 = mono();
  rc = ops->renew(conn, name, "node-a", inst("node-a"), 1, 60000000, &r, &err);
  took = mono() - t0;
  check(rc == GM_ERR && err.code == GM_E_CONNECT && strstr(err.msg, "timeout"),
        "renew on a paused server fails: %s", err.msg);
  check(took > 0.5 && took < 2, "... after the timeout of 1 s (%.2f s)", took);
  ops->close(conn);
  conn = NULL;
  /* interrupt(), from another thread, ends a call stuck on the server */
  rc = ops->open(cfg, &conn, &err);
  check(rc == GM_ERR, "(a connection cannot be made while paused)");
  check(server(dir, "resume") == 0 && ops->open(cfg, &conn, &err) == GM_OK &&
            server(dir, "pause") == 0,
        "connected, then paused again");
  renew_call call = {.conn = conn, .name = name};
  pthread_t th;
  pthread_create(&th, NULL, renew_main, &call);
  usleep(100000);
  t0 = mono();
  ops->interrupt(conn);
  pthread_join(th, NULL);
  took = mono() - t0;
  check(call.rc == GM_ERR && took < 0.05,
        "interrupt() ends a renew stuck on a paused server in %.1f ms: %s",
        took * 1000, call.err.msg);
  ops->close(conn);
  conn = NULL;
  bt_open_paused(cfg, 2.5, "the timeouts");
  check(server(dir, "resume") == 0, "server resumed (SIGCONT)");
  rc = ops->open(cfg, &conn, &err);
  check(rc == GM_OK && ops->renew(conn, name, "node-a", inst("node-a"), 1, 60000000, &r,
                                  &err) == GM_OK,
        "after resume: reconnect and renew");
  ops->force_release(conn, name, 1, &o, &err); /* token 2, free now */
  a = req(name, "node-b", 1, 2, 0, 60000000);
  rc = ops->acquire(conn, &a, &r, &err);
  check(rc == GM_OK && r.token == 3, "token 3 granted");

  check(server(dir, "restart") == 0, "server restarted without persistence");
  rc = ops->watch(conn, name, 100000, NULL, &err);
  check(rc == GM_ERR && err.code == GM_E_CONNECT,
        "a watch on the old connection fails: %s", err.msg);
  rc = ops->observe(conn, name, &o, &err);
  check(rc == GM_ERR && err.code == GM_E_CONNECT,
        "the old connection reports the restart: %s", err.msg);
  ops->close(conn);
  rc = ops->open(cfg, &conn, &err);
  rc = rc == GM_OK ? ops->observe(conn, name, &o, &err) : rc;
  check(rc == GM_OK && !o.exists,
        "after the restart the hash is gone (the core's vanished-row rule)");
  check(ops->renew(conn, name, "node-b", inst("node-b"), 3, 60000000, &r, &err) == GM_NOT,
        "the holder's renew finds no hash: GM_NOT");
  a = req(name, "node-c", 0, 0, 0, 60000000); /* a node that saw nothing */
  rc = ops->acquire(conn, &a, &r, &err);
  check(rc == GM_NOT, "no new hash within the restarted server's first "
                      "lease (60 s): GM_NOT");
  a = req(name, "node-a", 0, 0, 3, 1000000); /* min_token: the largest seen */
  t0 = mono();
  while ((rc = ops->acquire(conn, &a, &r, &err)) == GM_NOT && mono() - t0 < 5)
    usleep(20000);
  check(rc == GM_OK && r.token == 4,
        "a node that saw token 3 grants token 4, not 1 (%llu), once the "
        "server is up for its lease of 1 s (%.2f s)",
        (unsigned long long)r.token, mono() - t0);
  close_conn(cfg, conn);
}

/* wait=N: a write counts only once N replicas have it; this server has
 * none. */
static void test_wait(void) {
  void *cfg, *conn;
  gm_error err;
  gm_row r, o;
  char name[128];
  lock_name(name, sizeof name, "wait");
  gm_kv kv[GM_URL_MAX_KV + 2];
  size_t n = 0;
  for (size_t i = 0; i < url.n; i++) kv[n++] = url.kv[i];
  kv[n++] = (gm_kv){"wait", "1"};
  kv[n++] = (gm_kv){"timeout", "0.2"};
  conn = NULL;
  int rc = ops->parse(kv, n, &cfg, &err);
  rc = rc == GM_OK ? ops->open(cfg, &conn, &err) : rc;
  check(rc == GM_OK, "open with wait=1");
  gm_acquire_req a = req(name, "node-a", 0, 0, 0, 5000000);
  double t0 = mono();
  rc = rc == GM_OK ? ops->acquire(conn, &a, &r, &err) : rc;
  check(rc == GM_ERR && strstr(err.msg, "not replicated") &&
            strstr(err.msg, "0 of 1"),
        "acquire without a replica: %s (%.0f ms)", err.msg,
        (mono() - t0) * 1000);
  rc = conn ? ops->observe(conn, name, &o, &err) : GM_ERR;
  check(rc == GM_OK, "observe needs no replica %s", rc ? err.msg : "");
  close_conn(cfg, conn);
}

int main(void) {
  int st = bt_init(&gm_redis_ops, "GOMASTER_TEST_REDIS_URL",
                   gm_redis_ops.url_raw, "redis");
  if (st >= 0) return st;
  check(admin_open() == GM_OK, "the test's own connection");
  /* No lock is created within the server's first lease (5 s here): a
   * server started just now makes the first grants wait. */
  double t0 = mono();
  while (uptime() >= 0 && uptime() < 6 && mono() - t0 < 10) usleep(100000);
  check(uptime() >= 6, "the server is up for 6 s (waited %.1f s)",
        mono() - t0);

  test_options();
  test_connect_errors();
  void *cfg, *conn, *cfg2, *conn2;
  if (bt_open_pair(&cfg, &conn, &cfg2, &conn2) == GM_OK) {
    test_hash(conn);
    test_token_limit(conn, conn2);
    bt_renew_many(conn, conn2, "script", 1);
    bt_complete_and_force(conn, conn2, "migrated to 'v2' \\ ok");
    test_names(conn);
    test_hand_edits(conn);
    test_noscript(conn);
    test_wakeup(conn, conn2);
  }
  close_conn(cfg, conn);
  close_conn(cfg2, conn2);
  test_wait();
  bt_with_dir("GOMASTER_TEST_REDIS_DIR", test_server_events);
  if (adm) redisFree(adm);
  return bt_done();
}
