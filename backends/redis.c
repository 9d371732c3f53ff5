/*
 * redis.c: the Redis backend (and Valkey), on hiredis 0.14.
 *
 * One hash per lock, key <prefix><name> (prefix "gomaster:" by default):
 *
 *   owner, instance, token, version, acquired_at, renewed_at, expires_at
 *   and, once a one-time task run under the lock is done, done_at, done_by,
 *   done_token, result.
 *
 * Times are µs since 1970 on the server's clock (TIME), as decimal strings.
 * No key ever gets a TTL (PX, EXPIRE): an expiry run by the server on its
 * wall clock would delete the evidence, and the core's two-clock rule could
 * not apply.
 *
 * Every access is one Lua script run on the server (EVALSHA of the script
 * below, loaded again on NOSCRIPT): it reads TIME, compares owner, instance
 * (the elector instance's key, docs/design.md "Ownership") and token, writes, and returns whether it took effect and the hash as it
 * now is. Redis runs a script alone, so each is one atomic conditional
 * write; one script renews K locks.
 *
 * Redis Lua numbers are doubles: times (< 2^53 µs until the year 2255) are
 * numbers there, but tokens stay strings. The new token of a grant is
 * computed here (the script only compares the row's token with the one the
 * core saw), and force_release adds one to the decimal string.
 *
 * A restart that kept nothing (no RDB, no AOF) loses every hash. A node
 * that saw one treats it as held for a lease (the core's vanished-row rule);
 * one that never saw it cannot tell a wiped hash from a new lock, so the
 * script makes no new hash while the server has been up for less than the
 * lease asked (INFO's uptime_in_seconds): every grant made before the
 * restart is over by then on its holder's clock. Tokens then start again
 * at the largest the taker has seen, plus one (docs/redis.md).
 *
 * Wake-up, without a thread: the release script PUBLISHes the lock's name on
 * the channel "<prefix>@<db>". changed(), which the core polls, opens a
 * second connection the first time, SUBSCRIBEs there, and afterwards only
 * polls its socket with a zero timeout and reads what has arrived: no
 * command is sent. The hash stays the only truth.
 *
 * Messages never carry the password: the server does not echo it, and each
 * message is scrubbed of it all the same.
 */
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "backend.h"

#define DEFAULT_HOST "localhost"
#define DEFAULT_PORT 6379
#define DEFAULT_PREFIX "gomaster:"
#define PREFIX_MAX 128
#define DEFAULT_TIMEOUT_US 2000000 /* connect, read, write: under D = 3 s */
#define RESUBSCRIBE_NS 1000000000LL /* at most one subscribe attempt per s */
#define TOKEN_MAX "9223372036854775807"

/* ---- the script ---------------------------------------------------------- */

/* ARGV[1] is the operation. Each returns {code, now, exists, fields...}
 * (code 1: took effect; 0: not; -1: the row's expires_at cannot be read;
 * -2: the token is at its limit), but renew_many, which returns {now, code
 * of each key}. */
static const char script[] =
    "local op = ARGV[1]\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local function s(x) return string.format('%.0f', x) end\n"
    "local F = {'owner', 'instance', 'token', 'version', 'acquired_at',\n"
    "  'renewed_at', 'expires_at', 'done_at', 'done_by', 'done_token',\n"
    "  'result'}\n"
    "local function reply(code, k)\n"
    "  local out = {code, s(now), redis.call('EXISTS', k)}\n"
    "  local r = redis.call('HMGET', k, unpack(F))\n"
    "  for i = 1, #F do out[i + 3] = r[i] end\n"
    "  return out\n"
    "end\n"
    "local function time(v)\n"
    "  if type(v) ~= 'string' or #v > 19 or not string.match(v, '^%-?%d+$')\n"
    "  then return nil end\n"
    "  return tonumber(v)\n"
    "end\n"
    /* owner, instance and token as the grant wrote them ('0' any instance
     * where any is true) */
    "local function ours(k, o, i, tk, any)\n"
    "  local h = redis.call('HMGET', k, 'owner', 'instance', 'token')\n"
    "  return h[1] == o and h[3] == tk and\n"
    "    ((any and i == '0') or (h[2] or '0') == i)\n"
    "end\n"
    "local function renew(k, a)\n"
    "  if not ours(k, ARGV[a], ARGV[a + 1], ARGV[a + 2]) then return 0 end\n"
    "  redis.call('HSET', k, 'renewed_at', s(now),\n"
    "    'expires_at', s(now + tonumber(ARGV[a + 3])))\n"
    "  return 1\n"
    "end\n"
    "local k = KEYS[1]\n"
    "if op == 'observe' then return reply(1, k)\n"
    "elseif op == 'acquire' then\n"
    /* owner, instance, version, lease, expect_exists, expect_token, token */
    "  if ARGV[6] == '0' then\n"
    "    if redis.call('EXISTS', k) == 1 then return reply(0, k) end\n"
    /* no hash made within the server's first lease: see "restart" below */
    "    local i = redis.pcall('INFO', 'server')\n"
    "    local up = type(i) == 'string' and\n"
    "      string.match(i, 'uptime_in_seconds:(%d+)')\n"
    "    if up and tonumber(up) * 1000000 < tonumber(ARGV[5]) then\n"
    "      return reply(0, k) end\n"
    "  else\n"
    /* released or not, a running lease is waited out */
    "    local h = redis.call('HMGET', k, 'token', 'expires_at')\n"
    "    if h[1] ~= ARGV[7] then return reply(0, k) end\n"
    "    local e = time(h[2])\n"
    "    if not e then return reply(-1, k) end\n"
    "    if e > now then return reply(0, k) end\n"
    "  end\n"
    "  redis.call('HSET', k, 'owner', ARGV[2], 'instance', ARGV[3],\n"
    "    'token', ARGV[8], 'version', ARGV[4], 'acquired_at', s(now),\n"
    "    'renewed_at', s(now), 'expires_at', s(now + tonumber(ARGV[5])))\n"
    "  return reply(1, k)\n"
    "elseif op == 'renew' then return reply(renew(k, 2), k)\n"
    "elseif op == 'renew_many' then\n"
    "  local out = {s(now)}\n"
    "  for j = 1, #KEYS do out[j + 1] = renew(KEYS[j], 4 * j - 2) end\n"
    "  return out\n"
    "elseif op == 'release' then\n"
    /* owner, instance, token, channel, name */
    "  if not ours(k, ARGV[2], ARGV[3], ARGV[4]) then return reply(0, k) end\n"
    "  local e = time(redis.call('HGET', k, 'expires_at'))\n"
    "  if not e or e > now then e = now end\n"
    "  redis.call('HSET', k, 'owner', '', 'expires_at', s(e))\n"
    "  redis.call('PUBLISH', ARGV[5], ARGV[6])\n"
    "  return reply(1, k)\n"
    "elseif op == 'complete' then\n"
    /* owner, instance, token, result */
    "  if not ours(k, ARGV[2], ARGV[3], ARGV[4], true) then\n"
    "    return reply(0, k) end\n"
    "  redis.call('HSET', k, 'done_at', s(now), 'done_by', ARGV[2],\n"
    "    'done_token', ARGV[4], 'result', ARGV[5])\n"
    "  return reply(1, k)\n"
    "elseif op == 'force_release' then\n"
    /* channel, name, now */
    "  if redis.call('EXISTS', k) == 0 then return reply(0, k) end\n"
    "  local tk = redis.call('HGET', k, 'token')\n"
    "  if type(tk) ~= 'string' or not (tk == '0' or\n"
    "    string.match(tk, '^[1-9]%d*$')) or #tk > 19 or\n"
    "    (#tk == 19 and tk > '" TOKEN_MAX "') then return reply(-1, k) end\n"
    "  if tk == '" TOKEN_MAX "' then return reply(-2, k) end\n"
    "  local i = #tk\n"
    "  while i > 0 and string.sub(tk, i, i) == '9' do i = i - 1 end\n"
    "  if i == 0 then tk = '1' .. string.rep('0', #tk)\n"
    "  else tk = string.sub(tk, 1, i - 1) ..\n"
    "    string.char(string.byte(tk, i) + 1) .. string.rep('0', #tk - i) end\n"
    /* the old lease stays (held until it ends) unless ARGV[4] is '1' */
    "  local e = time(redis.call('HGET', k, 'expires_at'))\n"
    "  if ARGV[4] == '1' or not e or e < now then e = now end\n"
    "  redis.call('HSET', k, 'owner', '', 'instance', '0', 'token', tk,\n"
    "    'expires_at', s(e))\n"
    "  redis.call('PUBLISH', ARGV[2], ARGV[3])\n"
    "  return reply(1, k)\n"
    "end\n"
    "return redis.error_reply('gomaster: unknown operation')\n";

/* ---- configuration ------------------------------------------------------- */

/* Made by rd_parse, freed by rd_free_cfg. */
typedef struct rcfg {
  char *user, *password, *host, *prefix;
  char channel[PREFIX_MAX + 16]; /* "<prefix>@<db>" */
  int port, db, wait;
  int64_t timeout_us;
} rcfg;

static const char *const known_keys[] = {"url",      "user",   "password",
                                         "host",     "port",   "database",
                                         "prefix",   "timeout", "wait",
                                         NULL};

static void rd_free_cfg(void *p) {
  rcfg *c = p;
  if (!c) return;
  free(c->user);
  gm_free_secret(c->password);
  free(c->host);
  free(c->prefix);
  free(c);
}

/* A whole number in [lo, hi] from opts[key], or dflt when absent. */
static int opt_int(const gm_kv *opts, size_t n, const char *key, long lo,
                   long hi, int dflt, int *out, gm_error *err) {
  const char *v = gm_kv_get(opts, n, key);
  *out = dflt;
  if (!v) return GM_OK;
  char *end;
  long x = strtol(v, &end, 10);
  if (!isdigit((unsigned char)*v) || *end || x < lo || x > hi) {
    gm_seterr(err, GM_E_ARG,
              "redis backend: option '%s': expected a whole number %ld-%ld, "
              "got '%.32s'",
              key, lo, hi, v);
    return GM_ERR;
  }
  *out = (int)x;
  return GM_OK;
}

static int rd_parse(const gm_kv *opts, size_t n, void **out, gm_error *err) {
  *out = NULL;
  const char *url = gm_kv_get(opts, n, "url");
  if (url && strncasecmp(url, "rediss://", 9) == 0) {
    gm_seterr(err, GM_E_ARG,
              "redis backend: rediss:// (TLS) is not supported: this build's "
              "hiredis (0.14) has no TLS; use redis:// on a trusted network "
              "or through a TLS tunnel (docs/redis.md)");
    return GM_ERR;
  }
  if (gm_kv_check_keys(opts, n, known_keys, "redis", err)) return GM_ERR;
  rcfg *c = calloc(1, sizeof *c);
  if (!c) {
    gm_seterr(err, GM_E_NOMEM, "out of memory");
    return GM_ERR;
  }
  if (gm_kv_dup(opts, n, "user", NULL, &c->user, err) ||
      gm_kv_dup(opts, n, "password", NULL, &c->password, err) ||
      gm_kv_dup(opts, n, "host", DEFAULT_HOST, &c->host, err) ||
      gm_kv_dup(opts, n, "prefix", DEFAULT_PREFIX, &c->prefix, err) ||
      opt_int(opts, n, "port", 1, 65535, DEFAULT_PORT, &c->port, err) ||
      opt_int(opts, n, "database", 0, 1 << 20, 0, &c->db, err) ||
      opt_int(opts, n, "wait", 0, 1000, 0, &c->wait, err) ||
      gm_kv_seconds(opts, n, "timeout", DEFAULT_TIMEOUT_US, &c->timeout_us,
                    err))
    goto fail;
  if (!*c->host) {
    gm_seterr(err, GM_E_ARG, "redis backend: option 'host' is empty");
    goto fail;
  }
  if (strlen(c->prefix) >= PREFIX_MAX) {
    gm_seterr(err, GM_E_ARG,
              "redis backend: option 'prefix': longer than %d bytes",
              PREFIX_MAX - 1);
    goto fail;
  }
  if (c->user && !c->password) {
    gm_seterr(err, GM_E_ARG,
              "redis backend: option 'user' needs a password, as in "
              "redis://user:password@host:6379/0");
    goto fail;
  }
  snprintf(c->channel, sizeof c->channel, "%s@%d", c->prefix, c->db);
  *out = c;
  return GM_OK;
fail:
  rd_free_cfg(c);
  return GM_ERR;
}

static void rd_describe(const void *p, char *buf, size_t len) {
  const rcfg *c = p;
  int v6 = strchr(c->host, ':') != NULL;
  char wait[32] = "";
  if (c->wait) snprintf(wait, sizeof wait, "&wait=%d", c->wait);
  snprintf(buf, len, "redis://%s%s%s%s%s:%d/%d?prefix=%s%s",
           c->user ? c->user : "", c->user ? "@" : "", v6 ? "[" : "", c->host,
           v6 ? "]" : "", c->port, c->db, c->prefix, wait);
}

/* ---- connections ---------------------------------------------------------- */

/* Made by rd_open, freed by rd_close; used by one thread at a time. The
 * config outlives its connections. */
typedef struct rconn {
  const rcfg *cfg;
  redisContext *rc;      /* the election's connection */
  redisContext *sub;     /* the wake-up subscription, or NULL */
  int64_t sub_retry_ns;  /* mono: no new subscription attempt before */
  char sha[48];          /* the script's SHA1, from SCRIPT LOAD */
  char key[PREFIX_MAX + GM_NAME_MAX];
  size_t keylen;
} rconn;

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The error class of a server's error reply. */
static int classify(const char *msg) {
  static const char *const auth[] = {"NOAUTH", "WRONGPASS", "NOPERM",
                                     "ERR invalid password",
                                     "ERR AUTH", "ERR Client sent AUTH"};
  for (size_t i = 0; i < sizeof auth / sizeof auth[0]; i++)
    if (strncmp(msg, auth[i], strlen(auth[i])) == 0) return GM_E_AUTH;
  if (strstr(msg, "max number of clients")) return GM_E_BUSY; /* maxclients */
  /* a lock's key holding another type: an operator's edit */
  return strncmp(msg, "WRONGTYPE", 9) == 0 ? GM_E_ROW : GM_E_DB;
}

/* err for a failure of `what` on context rc: reply r (an error reply) or,
 * when r is NULL, the context's own error (I/O, timeout, closed). */
static int fail(const rcfg *cfg, redisContext *rc, const redisReply *r,
                const char *what, gm_error *err) {
  char msg[GM_ERRMSG_MAX];
  int code = GM_E_CONNECT;
  if (r && r->type == REDIS_REPLY_ERROR) {
    gm_scrub(msg, sizeof msg, r->str, cfg->password);
    code = classify(r->str);
  } else if (r) {
    snprintf(msg, sizeof msg, "unexpected reply (type %d)", r->type);
    code = GM_E_DB;
  } else if (rc && rc->err == REDIS_ERR_IO &&
             strstr(rc->errstr, "temporarily unavailable")) {
    snprintf(msg, sizeof msg, "no reply within the timeout of %.3g s",
             (double)cfg->timeout_us / 1e6);
  } else {
    gm_scrub(msg, sizeof msg, rc && rc->err ? rc->errstr : "out of memory",
          cfg->password);
  }
  gm_seterr(err, code, "redis: %s failed on %s:%d: %s", what, cfg->host,
            cfg->port, msg);
  return GM_ERR;
}

/* Runs one command; NULL with err filled on any failure or error reply. */
static redisReply *command(const rcfg *cfg, redisContext *rc, int argc,
                           const char **argv, const size_t *len,
                           const char *what, gm_error *err) {
  redisReply *r = redisCommandArgv(rc, argc, argv, len);
  if (r && r->type != REDIS_REPLY_ERROR) return r;
  fail(cfg, rc, r, what, err);
  if (r) freeReplyObject(r);
  return NULL;
}

/* A connection with its timeouts set, authenticated, on cfg's database:
 * NULL with err filled when it failed. Both connections are made here. */
static redisContext *connect_one(const rcfg *cfg, gm_error *err) {
  struct timeval tv = {.tv_sec = cfg->timeout_us / 1000000,
                       .tv_usec = cfg->timeout_us % 1000000};
  redisContext *rc = redisConnectWithTimeout(cfg->host, cfg->port, tv);
  if (!rc || rc->err) {
    fail(cfg, rc, NULL, "connect", err);
    if (rc) redisFree(rc);
    return NULL;
  }
  if (redisSetTimeout(rc, tv) != REDIS_OK) {
    fail(cfg, rc, NULL, "setting the timeout", err);
    redisFree(rc);
    return NULL;
  }
  redisReply *r = NULL;
  if (cfg->password) {
    const char *argv[3] = {"AUTH", cfg->user, cfg->password};
    int argc = cfg->user ? 3 : 2;
    if (!cfg->user) argv[1] = cfg->password;
    r = redisCommandArgv(rc, argc, argv, NULL);
    if (r && r->type == REDIS_REPLY_ERROR && classify(r->str) == GM_E_BUSY) {
      fail(cfg, rc, r, "connect", err); /* maxclients: not the password */
      goto fail;
    }
    if (r && r->type == REDIS_REPLY_ERROR) {
      char msg[GM_ERRMSG_MAX];
      gm_scrub(msg, sizeof msg, r->str, cfg->password);
      gm_seterr(err, GM_E_AUTH,
                "redis: authentication failed for user '%.64s' on %s:%d: %s",
                cfg->user ? cfg->user : "default", cfg->host, cfg->port, msg);
      goto fail;
    }
    if (!r) {
      fail(cfg, rc, NULL, "authentication", err);
      goto fail;
    }
    freeReplyObject(r);
  }
  char db[16];
  snprintf(db, sizeof db, "%d", cfg->db);
  const char *sel[2] = {"SELECT", db};
  if (!(r = command(cfg, rc, 2, sel, NULL, "SELECT", err))) goto fail_nr;
  freeReplyObject(r);
  return rc;
fail:
  if (r) freeReplyObject(r);
fail_nr:
  redisFree(rc);
  return NULL;
}

static int load_script(rconn *c, gm_error *err) {
  const char *argv[3] = {"SCRIPT", "LOAD", script};
  redisReply *r = command(c->cfg, c->rc, 3, argv, NULL, "SCRIPT LOAD", err);
  if (!r) return GM_ERR;
  int ok = r->type == REDIS_REPLY_STRING && r->len < sizeof c->sha;
  if (ok) memcpy(c->sha, r->str, r->len + 1);
  else
    fail(c->cfg, c->rc, r, "SCRIPT LOAD", err);
  freeReplyObject(r);
  return ok ? GM_OK : GM_ERR;
}

static void rd_close(void *p) {
  rconn *c = p;
  if (!c) return;
  if (c->rc) redisFree(c->rc);
  if (c->sub) redisFree(c->sub);
  free(c);
}

static int rd_open(const void *cfgp, void **out, gm_error *err) {
  rconn *c = calloc(1, sizeof *c);
  *out = NULL;
  if (!c) {
    gm_seterr(err, GM_E_NOMEM, "out of memory");
    return GM_ERR;
  }
  c->cfg = cfgp;
  if (!(c->rc = connect_one(c->cfg, err)) || load_script(c, err)) {
    rd_close(c);
    return GM_ERR;
  }
  *out = c;
  return GM_OK;
}

/* ---- running the script --------------------------------------------------- */

/* The arguments of one EVALSHA: "EVALSHA", sha, numkeys, keys, ARGV. */
typedef struct cmd {
  const char **v;
  size_t *len;
  char (*num)[24]; /* storage of numbers turned into text */
  size_t n, nnum, cap;
} cmd;

static int cmd_init(cmd *m, size_t cap, gm_error *err) {
  m->v = malloc(cap * sizeof *m->v);
  m->len = malloc(cap * sizeof *m->len);
  m->num = malloc(cap * sizeof *m->num);
  m->n = m->nnum = 0;
  m->cap = cap;
  if (m->v && m->len && m->num) return GM_OK;
  free(m->v);
  free(m->len);
  free(m->num);
  gm_seterr(err, GM_E_NOMEM, "out of memory");
  return GM_ERR;
}

static void cmd_free(cmd *m) {
  free(m->v);
  free(m->len);
  free(m->num);
}

static void cmd_str(cmd *m, const char *s, size_t len) {
  m->v[m->n] = s;
  m->len[m->n++] = len;
}

static void cmd_s(cmd *m, const char *s) { cmd_str(m, s, strlen(s)); }

static void cmd_u64(cmd *m, uint64_t x) {
  char *b = m->num[m->nnum++];
  cmd_str(m, b, (size_t)snprintf(b, 24, "%" PRIu64, x));
}

static void cmd_i64(cmd *m, int64_t x) {
  char *b = m->num[m->nnum++];
  cmd_str(m, b, (size_t)snprintf(b, 24, "%" PRId64, x));
}

/* Starts an EVALSHA of nkeys keys. */
static void cmd_eval(cmd *m, size_t nkeys) {
  cmd_s(m, "EVALSHA");
  cmd_s(m, ""); /* the SHA, set by eval() */
  cmd_u64(m, nkeys);
}

static int make_key(rconn *c, const char *name, gm_error *err) {
  if (gm_check_len("redis", "lock name", name, GM_NAME_MAX - 1, err))
    return GM_ERR;
  c->keylen = (size_t)snprintf(c->key, sizeof c->key, "%s%s", c->cfg->prefix,
                               name);
  return GM_OK;
}

/* After a write that took effect: with wait=N, GM_OK only once WAIT says N
 * replicas have it. */
static int replicated(rconn *c, const char *what, gm_error *err) {
  int n = c->cfg->wait;
  if (n == 0) return GM_OK;
  char sn[16], ms[24];
  int64_t wait_ms = c->cfg->timeout_us / 2000;
  snprintf(sn, sizeof sn, "%d", n);
  snprintf(ms, sizeof ms, "%" PRId64, wait_ms > 0 ? wait_ms : 1);
  const char *argv[3] = {"WAIT", sn, ms};
  redisReply *r = command(c->cfg, c->rc, 3, argv, NULL, "WAIT", err);
  if (!r) return GM_ERR;
  long long got = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  freeReplyObject(r);
  if (got >= n) return GM_OK;
  gm_seterr(err, GM_E_DB,
            "redis: %s not replicated: WAIT saw %lld of %d replicas within "
            "%s ms on %s:%d",
            what, got, n, ms, c->cfg->host, c->cfg->port);
  return GM_ERR;
}

/* Runs the script (loading it again once on NOSCRIPT): its reply, or NULL
 * with err filled. */
static redisReply *eval(rconn *c, cmd *m, const char *what, gm_error *err) {
  for (int tries = 0;; tries++) {
    m->v[1] = c->sha;
    m->len[1] = strlen(c->sha);
    redisReply *r = redisCommandArgv(c->rc, (int)m->n, m->v, m->len);
    if (r && r->type == REDIS_REPLY_ERROR &&
        strncmp(r->str, "NOSCRIPT", 8) == 0 && tries == 0) {
      freeReplyObject(r);
      if (load_script(c, err)) return NULL;
      continue;
    }
    if (r && r->type == REDIS_REPLY_ARRAY) return r;
    fail(c->cfg, c->rc, r, what, err);
    if (r) freeReplyObject(r);
    return NULL;
  }
}

/* ---- reading the hash ----------------------------------------------------- */

/* Strict decimal integers: what the script writes, and nothing else. */
static int parse_i64(const char *s, int64_t *out) {
  const char *p = s + (*s == '-');
  if (!isdigit((unsigned char)*p) || (p[0] == '0' && p[1]) || strlen(p) > 19)
    return GM_ERR;
  for (const char *q = p; *q; q++)
    if (!isdigit((unsigned char)*q)) return GM_ERR;
  if (strlen(p) == 19 && strcmp(p, TOKEN_MAX) > 0) return GM_ERR;
  *out = strtoll(s, NULL, 10);
  return GM_OK;
}

static int parse_u63(const char *s, uint64_t *out) {
  int64_t v;
  if (*s == '-' || parse_i64(s, &v)) return GM_ERR;
  *out = (uint64_t)v;
  return GM_OK;
}

enum { F_OWNER, F_INSTANCE, F_TOKEN, F_VERSION, F_ACQUIRED, F_RENEWED,
       F_EXPIRES, F_DONE_AT, F_DONE_BY, F_DONE_TOKEN, F_RESULT, NFIELDS };
static const char *const field_names[NFIELDS] = {
    "owner",      "instance",   "token",      "version",
    "acquired_at", "renewed_at", "expires_at", "done_at",
    "done_by",    "done_token", "result"};

static int bad_field(rconn *c, const char *name, int f, const redisReply *v,
                     gm_error *err) {
  char val[40];
  if (v->type == REDIS_REPLY_STRING)
    snprintf(val, sizeof val, "'%.32s'", v->str);
  gm_seterr(err, GM_E_ROW,
            "redis: lock '%.64s': field '%s' of hash '%.64s%.64s' %s%s",
            name, field_names[f], c->cfg->prefix, name,
            v->type == REDIS_REPLY_STRING ? "cannot be read: " : "is missing",
            v->type == REDIS_REPLY_STRING ? val : "");
  return GM_ERR;
}

/* The script's {code, now, exists, fields...} into *out (zeroed first).
 * GM_ERR names a field that is missing or cannot be read. */
static int parse_row(rconn *c, const char *name, const redisReply *r,
                     int *code, gm_row *out, gm_error *err) {
  memset(out, 0, sizeof *out);
  out->holder = -1;
  if (r->elements != 3 + NFIELDS || r->element[0]->type != REDIS_REPLY_INTEGER ||
      r->element[1]->type != REDIS_REPLY_STRING ||
      r->element[2]->type != REDIS_REPLY_INTEGER ||
      parse_i64(r->element[1]->str, &out->now)) {
    gm_seterr(err, GM_E_DB, "redis: the script's reply is not as expected");
    return GM_ERR;
  }
  *code = (int)r->element[0]->integer;
  out->exists = r->element[2]->integer == 1;
  if (!out->exists) return GM_OK;
  redisReply *const *v = r->element + 3;
  static const char required[NFIELDS] = {
      [F_OWNER] = 1, [F_TOKEN] = 1, [F_ACQUIRED] = 1, [F_RENEWED] = 1,
      [F_EXPIRES] = 1};
  for (int f = 0; f < NFIELDS; f++) {
    if (v[f]->type == REDIS_REPLY_NIL && !required[f]) continue;
    if (v[f]->type != REDIS_REPLY_STRING) return bad_field(c, name, f, v[f], err);
    const char *s = v[f]->str;
    int bad = 0;
    switch (f) {
    case F_OWNER: bad = gm_strlcpy(out->owner, s, sizeof out->owner); break;
    case F_VERSION: bad = gm_strlcpy(out->version, s, sizeof out->version); break;
    case F_DONE_BY: bad = gm_strlcpy(out->done_by, s, sizeof out->done_by); break;
    case F_RESULT: bad = gm_strlcpy(out->result, s, sizeof out->result); break;
    case F_INSTANCE: bad = parse_u63(s, &out->instance); break;
    case F_TOKEN: bad = parse_u63(s, &out->token); break;
    case F_DONE_TOKEN: bad = parse_u63(s, &out->done_token); break;
    case F_ACQUIRED: bad = parse_i64(s, &out->acquired_at); break;
    case F_RENEWED: bad = parse_i64(s, &out->renewed_at); break;
    case F_EXPIRES: bad = parse_i64(s, &out->expires_at); break;
    case F_DONE_AT: bad = parse_i64(s, &out->done_at); break;
    }
    if (bad) return bad_field(c, name, f, v[f], err);
  }
  return GM_OK;
}

/* Runs a one-key script m for lock name: GM_OK (took effect; a write
 * replicated as wait= asks) or GM_NOT, with *out the hash after it;
 * GM_ERR. */
static int run(rconn *c, cmd *m, const char *name, const char *what,
               int write, gm_row *out, gm_error *err) {
  gm_row tmp;
  int code = 0;
  redisReply *r = eval(c, m, what, err);
  cmd_free(m);
  if (!r && err && err->code == GM_E_ROW)
    gm_seterr(err, GM_E_ROW, "redis: lock '%.64s': key '%.64s%.64s' is not "
              "a hash (WRONGTYPE)", name, c->cfg->prefix, name);
  if (!r) return GM_ERR;
  int rc = parse_row(c, name, r, &code, out ? out : &tmp, err);
  freeReplyObject(r);
  if (rc) return GM_ERR;
  if (code == -1) { /* the script could not read expires_at; parse did */
    gm_seterr(err, GM_E_ROW, "redis: lock '%.64s': the hash cannot be read",
              name);
    return GM_ERR;
  }
  if (code == -2) {
    gm_seterr(err, GM_E_ROW,
              "redis: %s of lock '%.64s' refused: its token is at the limit "
              "(%s); a new one would wrap",
              what, name, TOKEN_MAX);
    return GM_ERR;
  }
  if (code != 1) return GM_NOT;
  return write ? replicated(c, what, err) : GM_OK;
}

/* ---- the operations ------------------------------------------------------- */

/* A one-key script: EVALSHA sha 1 key op, plus room for `extra` ARGV. */
static int start(rconn *c, cmd *m, const char *name, const char *op,
                 size_t extra, gm_error *err) {
  if (make_key(c, name, err) || cmd_init(m, 5 + extra, err)) return GM_ERR;
  cmd_eval(m, 1);
  cmd_str(m, c->key, c->keylen);
  cmd_s(m, op);
  return GM_OK;
}

/* The grant a conditional write is about: owner, instance, token. */
static void cmd_grant(cmd *m, const char *owner, uint64_t instance,
                      uint64_t token) {
  cmd_s(m, owner);
  cmd_u64(m, instance);
  cmd_u64(m, token);
}

static int rd_observe(void *p, const char *name, gm_row *out, gm_error *err) {
  rconn *c = p;
  cmd m;
  if (start(c, &m, name, "observe", 0, err)) return GM_ERR;
  int rc = run(c, &m, name, "observe", 0, out, err);
  return rc == GM_ERR ? GM_ERR : GM_OK;
}

static int rd_acquire(void *p, const gm_acquire_req *q, gm_row *out,
                      gm_error *err) {
  rconn *c = p;
  const char *version = q->version ? q->version : "";
  uint64_t base = gm_new_token(q) - 1; /* the core's rule, written once */
  cmd m;
  if (gm_check_len("redis", "node id", q->owner, GM_ID_MAX - 1, err) ||
      gm_check_len("redis", "version", version, GM_ID_MAX - 1, err))
    return GM_ERR;
  if (base >= (uint64_t)INT64_MAX) {
    gm_seterr(err, GM_E_ROW,
              "redis: acquire of lock '%.64s' refused: the token is at the "
              "limit (%" PRIu64 "); a new one would wrap",
              q->name, base);
    return GM_ERR;
  }
  if (start(c, &m, q->name, "acquire", 7, err)) return GM_ERR;
  cmd_s(&m, q->owner);
  cmd_u64(&m, q->instance);
  cmd_s(&m, version);
  cmd_i64(&m, q->lease_us);
  cmd_u64(&m, q->expect_exists ? 1 : 0);
  cmd_u64(&m, q->expect_token);
  cmd_u64(&m, base + 1);
  return run(c, &m, q->name, "acquire", 1, out, err);
}

static int rd_renew(void *p, const char *name, const char *owner,
                    uint64_t instance, uint64_t token, int64_t lease_us,
                    gm_row *out, gm_error *err) {
  rconn *c = p;
  cmd m;
  if (start(c, &m, name, "renew", 4, err)) return GM_ERR;
  cmd_grant(&m, owner, instance, token);
  cmd_i64(&m, lease_us);
  return run(c, &m, name, "renew", 1, out, err);
}

static int rd_release(void *p, const char *name, const char *owner,
                      uint64_t instance, uint64_t token, gm_error *err) {
  rconn *c = p;
  cmd m;
  if (start(c, &m, name, "release", 5, err)) return GM_ERR;
  cmd_grant(&m, owner, instance, token);
  cmd_s(&m, c->cfg->channel);
  cmd_s(&m, name);
  return run(c, &m, name, "release", 1, NULL, err);
}

static int rd_complete(void *p, const char *name, const char *owner,
                       uint64_t instance, uint64_t token, const char *result,
                       gm_error *err) {
  rconn *c = p;
  cmd m;
  if (gm_check_len("redis", "result", result, GM_RESULT_MAX - 1, err) ||
      start(c, &m, name, "complete", 4, err))
    return GM_ERR;
  cmd_grant(&m, owner, instance, token); /* instance 0: any */
  cmd_s(&m, result);
  return run(c, &m, name, "complete", 1, NULL, err);
}

static int rd_force_release(void *p, const char *name, int now, gm_row *out,
                            gm_error *err) {
  rconn *c = p;
  cmd m;
  if (start(c, &m, name, "force_release", 3, err)) return GM_ERR;
  cmd_s(&m, c->cfg->channel);
  cmd_s(&m, name);
  cmd_s(&m, now ? "1" : "0");
  return run(c, &m, name, "force release", 1, out, err);
}

/* One script renews every lock of the batch and says which were ours. */
static int rd_renew_many(void *p, gm_renew_req *q, size_t n, gm_error *err) {
  rconn *c = p;
  size_t klen = strlen(c->cfg->prefix);
  char *keys = malloc(n * (klen + GM_NAME_MAX));
  cmd m;
  if (!keys || cmd_init(&m, 4 + 5 * n, err)) {
    free(keys);
    gm_seterr(err, GM_E_NOMEM, "out of memory");
    return GM_ERR;
  }
  cmd_eval(&m, n);
  for (size_t i = 0; i < n; i++) {
    char *k = keys + i * (klen + GM_NAME_MAX);
    if (gm_check_len("redis", "lock name", q[i].name, GM_NAME_MAX - 1, err)) {
      free(keys);
      cmd_free(&m);
      return GM_ERR;
    }
    cmd_str(&m, k, (size_t)sprintf(k, "%s%s", c->cfg->prefix, q[i].name));
  }
  cmd_s(&m, "renew_many");
  for (size_t i = 0; i < n; i++) {
    cmd_grant(&m, q[i].owner, q[i].instance, q[i].token);
    cmd_i64(&m, q[i].lease_us);
  }
  redisReply *r = eval(c, &m, "renew", err);
  cmd_free(&m);
  free(keys);
  if (!r) return GM_ERR;
  int64_t now;
  int ok = r->elements == n + 1 &&
           r->element[0]->type == REDIS_REPLY_STRING &&
           parse_i64(r->element[0]->str, &now) == GM_OK;
  int any = 0;
  for (size_t i = 0; ok && i < n; i++) {
    const redisReply *e = r->element[i + 1];
    ok = e->type == REDIS_REPLY_INTEGER;
    q[i].rc = ok && e->integer == 1 ? GM_OK : GM_NOT;
    q[i].renewed_at = q[i].now = now;
    q[i].expires_at = now + q[i].lease_us;
    any = any || q[i].rc == GM_OK;
  }
  freeReplyObject(r);
  if (!ok) {
    gm_seterr(err, GM_E_DB, "redis: the script's reply is not as expected");
    return GM_ERR;
  }
  return any ? replicated(c, "renew", err) : GM_OK;
}

/* Ends a command in progress on the election's connection at once: called
 * from another thread, it only shuts the socket down (the connection then
 * fails, and the core closes it). */
static void rd_interrupt(void *p) {
  rconn *c = p;
  if (c && c->rc && c->rc->fd >= 0) shutdown(c->rc->fd, SHUT_RDWR);
}

/* ---- wake-up -------------------------------------------------------------- */

static int subscribe(rconn *c, gm_error *err) {
  gm_error e = {0};
  c->sub = connect_one(c->cfg, &e);
  const char *argv[2] = {"SUBSCRIBE", c->cfg->channel};
  redisReply *r =
      c->sub ? command(c->cfg, c->sub, 2, argv, NULL, "SUBSCRIBE", &e) : NULL;
  if (r) {
    freeReplyObject(r);
    return GM_OK;
  }
  if (c->sub) redisFree(c->sub);
  c->sub = NULL;
  gm_seterr(err, e.code,
            "redis: the wake-up subscription is down (followers read at "
            "their own pace until it is back): %s",
            e.msg);
  return GM_ERR;
}

/* GM_OK when a release was published since the last call (or the
 * subscription was just made: one may have come before it). No command is
 * sent: the subscription's socket is polled with a zero timeout and what
 * has arrived is read. A broken subscription is GM_ERR once; the next
 * attempt comes at most once a second, on a later call. */
static int rd_changed(void *p, gm_error *err) {
  rconn *c = p;
  if (!c->sub) {
    int64_t now = mono_ns();
    if (now < c->sub_retry_ns) return GM_NOT;
    c->sub_retry_ns = now + RESUBSCRIBE_NS;
    return subscribe(c, err) ? GM_ERR : GM_OK;
  }
  int got = 0;
  for (int i = 0; i < 64; i++) {
    void *r = NULL;
    while (redisGetReplyFromReader(c->sub, &r) == REDIS_OK && r) {
      const redisReply *x = r;
      got = got || (x->type == REDIS_REPLY_ARRAY && x->elements == 3 &&
                    x->element[0]->type == REDIS_REPLY_STRING &&
                    strcmp(x->element[0]->str, "message") == 0);
      freeReplyObject(r);
      r = NULL;
    }
    struct pollfd pfd = {.fd = c->sub->fd, .events = POLLIN};
    if (c->sub->err || poll(&pfd, 1, 0) != 1) break;
    if (redisBufferRead(c->sub) != REDIS_OK) break;
  }
  if (!c->sub->err) return got ? GM_OK : GM_NOT;
  char msg[GM_ERRMSG_MAX];
  gm_scrub(msg, sizeof msg, c->sub->errstr, c->cfg->password);
  gm_seterr(err, GM_E_CONNECT,
            "redis: the wake-up subscription on %s:%d broke (%s); followers "
            "read at their own pace until it is back",
            c->cfg->host, c->cfg->port, msg);
  redisFree(c->sub);
  c->sub = NULL;
  return GM_ERR;
}

const gm_backend_ops gm_redis_ops = {
    .abi = GM_BACKEND_ABI,
    .name = "redis",
    .url_raw = 0,
    .parse = rd_parse,
    .free_cfg = rd_free_cfg,
    .describe = rd_describe,
    .open = rd_open,
    .close = rd_close,
    .observe = rd_observe,
    .acquire = rd_acquire,
    .renew = rd_renew,
    .release = rd_release,
    .complete = rd_complete,
    .force_release = rd_force_release,
    .renew_many = rd_renew_many,
    .changed = rd_changed,
    .poll_us = 10000, /* changed() is one poll(2) with a zero timeout */
    .interrupt = rd_interrupt,
};
