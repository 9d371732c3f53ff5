/*
 * redis.c: the Redis backend (and Valkey), on hiredis 0.14.
 *
 * One hash per lock, key <prefix><name>: owner, instance, token, version,
 * acquired_at, renewed_at, expires_at (µs on the server's clock, TIME) and
 * a one-time task's done_at, done_by, done_token, result. No key ever gets
 * a TTL: the server's expiry would delete the evidence (docs/redis.md).
 *
 * Every access is one Lua script run on the server (EVALSHA, loaded again
 * on NOSCRIPT): it reads TIME, compares owner, instance and token, writes,
 * and returns whether it took effect and the hash as it now is: one atomic
 * conditional write. Times (< 2^53 µs) are numbers there; tokens stay
 * strings (the new one is computed here). No new hash while the server has
 * been up for less than the lease asked: a restart that kept nothing
 * cannot make two masters (docs/redis.md, "Restart").
 *
 * Wake-up, with no thread or connection of its own: the release scripts
 * XADD the lock's name to the capped stream "<prefix>@events"; watch() is
 * XREAD BLOCK from the last id seen on its connection (any connection: the
 * read timeout is stretched for that command), ended by interrupt()'s
 * shutdown(SHUT_RD). The hash stays the only truth.
 *
 * Messages never carry the password: the server does not echo it, and each
 * message is scrubbed of it all the same.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "backend.h"
#include "hosts.h"
#include "timeutil.h"

#define DEFAULT_HOST "localhost"
#define DEFAULT_PORT "6379"
#define DEFAULT_PREFIX "gomaster:"
#define PREFIX_MAX 128
#define DEFAULT_TIMEOUT "2" /* seconds: connect, read, write; under D = 3 s */
#define EVENTS_KEY "@events" /* after the prefix: the wake-up stream */
#define EVENTS_MAX "1000"    /* its length, about (MAXLEN ~) */
#define TOKEN_MAX "9223372036854775807"
/* The server's timer tick (hz 10): it ends a blocked XREAD or WAIT on it,
 * up to a tick late. A watch blocks a tick less than asked, so it may end
 * a tick early (ops.watch_early_us). */
#define TICK_US 100000

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
    /* a release's event on the wake-up stream, KEYS[2] */
    "local function event(name)\n"
    "  redis.call('XADD', KEYS[2], 'MAXLEN', '~', '" EVENTS_MAX "', '*',\n"
    "    'name', name)\n"
    "end\n"
    "local k = KEYS[1]\n"
    "if op == 'observe' then return reply(1, k)\n"
    /* {1 when the lock is free (or its hash gone or unreadable), the id of
     * the stream's last entry} */
    "elseif op == 'watch' then\n"
    "  local h = redis.call('HMGET', k, 'owner', 'expires_at')\n"
    "  local e = time(h[2])\n"
    "  local l = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)\n"
    "  return {(not h[1] or h[1] == '' or not e or e <= now) and 1 or 0,\n"
    "    l[1] and l[1][1] or '0-0'}\n"
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
    /* owner, instance, token, name */
    "  if not ours(k, ARGV[2], ARGV[3], ARGV[4]) then return reply(0, k) end\n"
    "  local e = time(redis.call('HGET', k, 'expires_at'))\n"
    "  if not e or e > now then e = now end\n"
    "  redis.call('HSET', k, 'owner', '', 'expires_at', s(e))\n"
    "  event(ARGV[5])\n"
    "  return reply(1, k)\n"
    "elseif op == 'complete' then\n"
    /* owner, instance, token, result */
    "  if not ours(k, ARGV[2], ARGV[3], ARGV[4], true) then\n"
    "    return reply(0, k) end\n"
    "  redis.call('HSET', k, 'done_at', s(now), 'done_by', ARGV[2],\n"
    "    'done_token', ARGV[4], 'result', ARGV[5])\n"
    "  return reply(1, k)\n"
    "elseif op == 'force_release' then\n"
    /* name, now */
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
    /* the old lease stays (held until it ends) unless ARGV[3] is '1' */
    "  local e = time(redis.call('HGET', k, 'expires_at'))\n"
    "  if ARGV[3] == '1' or not e or e < now then e = now end\n"
    "  redis.call('HSET', k, 'owner', '', 'instance', '0', 'token', tk,\n"
    "    'expires_at', s(e))\n"
    "  event(ARGV[2])\n"
    "  return reply(1, k)\n"
    "end\n"
    "return redis.error_reply('gomaster: unknown operation')\n";

/* ---- configuration ------------------------------------------------------- */

/* Made by rd_parse, freed by rd_free_cfg. */
typedef struct rcfg {
  char *user, *password, *host, *prefix;
  char events[PREFIX_MAX + 16]; /* "<prefix>@events": the wake-up stream */
  int port, db, wait;
  int64_t timeout_us;
} rcfg;

#define OPT(k, kd, field) .key = k, .kind = kd, .off = offsetof(rcfg, field)
static const gm_opt options[] = {
    {OPT("user", GM_OPT_STR, user)},
    {OPT("password", GM_OPT_SECRET, password)},
    {OPT("host", GM_OPT_STR, host), .dflt = DEFAULT_HOST},
    {OPT("port", GM_OPT_INT, port), .dflt = DEFAULT_PORT, .lo = 1, .hi = 65535},
    {OPT("database", GM_OPT_INT, db), .dflt = "0", .lo = 0, .hi = 1 << 20},
    {OPT("prefix", GM_OPT_STR, prefix), .dflt = DEFAULT_PREFIX},
    {OPT("timeout", GM_OPT_US, timeout_us), .dflt = DEFAULT_TIMEOUT},
    {OPT("wait", GM_OPT_INT, wait), .dflt = "0", .lo = 0, .hi = 1000},
    {.key = "url"}, /* GM_OPT_KNOWN: its parts come as the keys above */
    {.key = NULL}};

static void rd_free_cfg(void *p) {
  if (p) gm_opts_free(options, p);
  free(p);
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
  rcfg *c = calloc(1, sizeof *c);
  if (!c) return gm_nomem(err);
  if (gm_opts_read(options, opts, n, c, "redis", err)) goto fail;
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
  snprintf(c->events, sizeof c->events, "%s" EVENTS_KEY, c->prefix);
  *out = c;
  return GM_OK;
fail:
  rd_free_cfg(c);
  return GM_ERR;
}

static void rd_describe(const void *p, char *buf, size_t len) {
  const rcfg *c = p;
  char wait[32] = "", after[PREFIX_MAX + 64];
  if (c->wait) snprintf(wait, sizeof wait, "&wait=%d", c->wait);
  snprintf(after, sizeof after, "/%d?prefix=%s%s", c->db, c->prefix, wait);
  int o = snprintf(buf, len, "redis://%s%s", c->user ? c->user : "",
                   c->user ? "@" : "");
  if (o >= 0 && (size_t)o < len)
    gm_put_host(buf + o, len - (size_t)o, c->host, (unsigned)c->port, after);
}

/* ---- connections ---------------------------------------------------------- */

/* Made by rd_open, freed by rd_close; used by one thread at a time. The
 * config outlives its connections. */
typedef struct rconn {
  const rcfg *cfg;
  redisContext *rc;      /* the connection */
  atomic_int cut;        /* interrupt() was called: the socket is shut */
  char sha[48];          /* the script's SHA1, from SCRIPT LOAD */
  char last_id[48];      /* watch: the stream's last id seen here, or "" */
  char watched[GM_NAME_MAX]; /* ... and the lock it last watched */
  char key[PREFIX_MAX + GM_NAME_MAX];
  size_t keylen;
} rconn;

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

/* The reply r of command `what` on rc; NULL with err filled (and r freed)
 * on any failure or error reply. */
static redisReply *replied(const rcfg *cfg, redisContext *rc, redisReply *r,
                           const char *what, gm_error *err) {
  if (r && r->type != REDIS_REPLY_ERROR) return r;
  fail(cfg, rc, r, what, err);
  if (r) freeReplyObject(r);
  return NULL;
}

static struct timeval tv_of(int64_t us) {
  return (struct timeval){.tv_sec = us / 1000000, .tv_usec = us % 1000000};
}

/* A connection with its timeouts set, authenticated, on cfg's database:
 * NULL with err filled when it failed. */
static redisContext *connect_one(const rcfg *cfg, gm_error *err) {
  struct timeval tv = tv_of(cfg->timeout_us);
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
    r = cfg->user ? redisCommand(rc, "AUTH %s %s", cfg->user, cfg->password)
                  : redisCommand(rc, "AUTH %s", cfg->password);
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
  r = replied(cfg, rc, redisCommand(rc, "SELECT %d", cfg->db), "SELECT", err);
  if (r) {
    freeReplyObject(r);
    return rc;
  }
fail:
  if (r) freeReplyObject(r);
  redisFree(rc);
  return NULL;
}

static int load_script(rconn *c, gm_error *err) {
  redisReply *r = replied(c->cfg, c->rc,
                          redisCommand(c->rc, "SCRIPT LOAD %s", script),
                          "SCRIPT LOAD", err);
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
  if (c && c->rc) redisFree(c->rc);
  free(c);
}

static int rd_open(const void *cfgp, void **out, gm_error *err) {
  rconn *c = calloc(1, sizeof *c);
  *out = NULL;
  if (!c) return gm_nomem(err);
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
  size_t n, nnum;
} cmd;

/* Room for cap arguments, in one block (v, then len, then num). */
static int cmd_init(cmd *m, size_t cap, gm_error *err) {
  char *b = malloc(cap * (sizeof *m->v + sizeof *m->len + sizeof *m->num));
  m->v = (const char **)(void *)b;
  m->len = (size_t *)(void *)(b + cap * sizeof *m->v);
  m->num = (char(*)[24])(b + cap * (sizeof *m->v + sizeof *m->len));
  m->n = m->nnum = 0;
  return b ? GM_OK : gm_nomem(err);
}

static void cmd_free(cmd *m) { free(m->v); }

static void cmd_str(cmd *m, const char *s, size_t len) {
  m->v[m->n] = s;
  m->len[m->n++] = len;
}

static void cmd_s(cmd *m, const char *s) { cmd_str(m, s, strlen(s)); }

static void cmd_u64(cmd *m, uint64_t x) {
  char *b = m->num[m->nnum++];
  cmd_str(m, b, (size_t)snprintf(b, 24, "%" PRIu64, x));
}

static void cmd_eval(cmd *m, size_t nkeys) { /* EVALSHA (sha) nkeys */
  cmd_s(m, "EVALSHA");
  cmd_s(m, ""); /* the SHA, set by eval() */
  cmd_u64(m, nkeys);
}

/* GM_ERR for the wake-up stream's name (the core checked the length: the
 * key fits c->key). */
static int check_name(const rcfg *cfg, const char *name, gm_error *err) {
  if (strcmp(name, EVENTS_KEY) == 0)
    gm_seterr(err, GM_E_ARG, "redis: lock name '" EVENTS_KEY "' is reserved: "
              "'%s' is the wake-up stream", cfg->events);
  return strcmp(name, EVENTS_KEY) == 0 ? GM_ERR : GM_OK;
}

static int make_key(rconn *c, const char *name, gm_error *err) {
  if (check_name(c->cfg, name, err)) return GM_ERR;
  c->keylen = (size_t)snprintf(c->key, sizeof c->key, "%s%s", c->cfg->prefix,
                               name);
  return GM_OK;
}

/* After a write that took effect: with wait=N, GM_OK only once WAIT says N
 * replicas have it. */
static int replicated(rconn *c, const char *what, gm_error *err) {
  int n = c->cfg->wait;
  long long ms = c->cfg->timeout_us / 2000 > 0 ? c->cfg->timeout_us / 2000 : 1;
  if (n == 0) return GM_OK;
  /* the server ends a WAIT on its timer tick: the read outlasts the
   * wait by a tick, and the timeout, for this command */
  int64_t read_us = c->cfg->timeout_us + ms * 1000 + TICK_US;
  if (redisSetTimeout(c->rc, tv_of(read_us)) != REDIS_OK)
    return fail(c->cfg, c->rc, NULL, "setting the timeout", err);
  redisReply *r = replied(c->cfg, c->rc,
                          redisCommand(c->rc, "WAIT %d %lld", n, ms), "WAIT",
                          err);
  if (r && redisSetTimeout(c->rc, tv_of(c->cfg->timeout_us)) != REDIS_OK) {
    freeReplyObject(r);
    return fail(c->cfg, c->rc, NULL, "setting the timeout", err);
  }
  if (!r) return GM_ERR;
  long long got = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  freeReplyObject(r);
  if (got >= n) return GM_OK;
  gm_seterr(err, GM_E_DB,
            "redis: %s not replicated: WAIT saw %lld of %d replicas within "
            "%lld ms on %s:%d",
            what, got, n, ms, c->cfg->host, c->cfg->port);
  return GM_ERR;
}

static int unexpected(const char *what, gm_error *err) {
  gm_seterr(err, GM_E_DB, "redis: the reply of %s is not as expected", what);
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
      parse_i64(r->element[1]->str, &out->now))
    return unexpected("the script", err);
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

/* A script on lock name's key (and the wake-up stream's, as KEYS[2], when
 * ev): EVALSHA sha nkeys keys op, plus room for `extra` ARGV. */
static int start(rconn *c, cmd *m, const char *name, const char *op, int ev,
                 size_t extra, gm_error *err) {
  if (make_key(c, name, err) || cmd_init(m, 6 + extra, err)) return GM_ERR;
  cmd_eval(m, ev ? 2 : 1);
  cmd_str(m, c->key, c->keylen);
  if (ev) cmd_s(m, c->cfg->events);
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
  if (start(c, &m, name, "observe", 0, 0, err)) return GM_ERR;
  int rc = run(c, &m, name, "observe", 0, out, err);
  return rc == GM_ERR ? GM_ERR : GM_OK;
}

static int rd_acquire(void *p, const gm_acquire_req *q, gm_row *out,
                      gm_error *err) {
  rconn *c = p;
  const char *version = q->version ? q->version : "";
  uint64_t base = gm_new_token(q) - 1; /* the core's rule, written once */
  cmd m;
  if (base >= (uint64_t)INT64_MAX) {
    gm_seterr(err, GM_E_ROW,
              "redis: acquire of lock '%.64s' refused: the token is at the "
              "limit (%" PRIu64 "); a new one would wrap",
              q->name, base);
    return GM_ERR;
  }
  if (start(c, &m, q->name, "acquire", 0, 7, err)) return GM_ERR;
  cmd_s(&m, q->owner);
  cmd_u64(&m, q->instance);
  cmd_s(&m, version);
  cmd_u64(&m, (uint64_t)q->lease_us); /* > 0: the core checks */
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
  if (start(c, &m, name, "renew", 0, 4, err)) return GM_ERR;
  cmd_grant(&m, owner, instance, token);
  cmd_u64(&m, (uint64_t)lease_us);
  return run(c, &m, name, "renew", 1, out, err);
}

static int rd_release(void *p, const char *name, const char *owner,
                      uint64_t instance, uint64_t token, gm_error *err) {
  rconn *c = p;
  cmd m;
  if (start(c, &m, name, "release", 1, 4, err)) return GM_ERR;
  cmd_grant(&m, owner, instance, token);
  cmd_s(&m, name);
  return run(c, &m, name, "release", 1, NULL, err);
}

static int rd_complete(void *p, const char *name, const char *owner,
                       uint64_t instance, uint64_t token, const char *result,
                       gm_error *err) {
  rconn *c = p;
  cmd m;
  if (start(c, &m, name, "complete", 0, 4, err)) return GM_ERR;
  cmd_grant(&m, owner, instance, token); /* instance 0: any */
  cmd_s(&m, result);
  return run(c, &m, name, "complete", 1, NULL, err);
}

static int rd_force_release(void *p, const char *name, int now, gm_row *out,
                            gm_error *err) {
  rconn *c = p;
  cmd m;
  if (start(c, &m, name, "force_release", 1, 2, err)) return GM_ERR;
  cmd_s(&m, name);
  cmd_s(&m, now ? "1" : "0");
  return run(c, &m, name, "force release", 1, out, err);
}

/* One script renews every lock of the batch and says which were ours. */
static int rd_renew_many(void *p, gm_renew_req *q, size_t n, gm_error *err) {
  rconn *c = p;
  size_t klen = strlen(c->cfg->prefix);
  for (size_t i = 0; i < n; i++)
    if (check_name(c->cfg, q[i].name, err)) return GM_ERR;
  char *keys = malloc(n * (klen + GM_NAME_MAX));
  cmd m;
  if (!keys || cmd_init(&m, 4 + 5 * n, err)) {
    free(keys);
    return gm_nomem(err);
  }
  cmd_eval(&m, n);
  for (size_t i = 0; i < n; i++) {
    char *k = keys + i * (klen + GM_NAME_MAX);
    cmd_str(&m, k, (size_t)sprintf(k, "%s%s", c->cfg->prefix, q[i].name));
  }
  cmd_s(&m, "renew_many");
  for (size_t i = 0; i < n; i++) {
    cmd_grant(&m, q[i].owner, q[i].instance, q[i].token);
    cmd_u64(&m, (uint64_t)q[i].lease_us);
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
  if (!ok) return unexpected("the script", err);
  return any ? replicated(c, "renew", err) : GM_OK;
}

/* Ends a command in progress at once (called from another thread): marks
 * the connection and shuts the socket's reading side, so that reads end
 * and a later write cannot raise SIGPIPE. The core then closes it. */
static void rd_interrupt(void *p) {
  rconn *c = p;
  if (!c) return;
  atomic_store(&c->cut, 1);
  if (c->rc && c->rc->fd >= 0) shutdown(c->rc->fd, SHUT_RD);
}

/* ---- wake-up -------------------------------------------------------------- */

/* The first watch of lock `name` here: GM_OK when it is free (its release
 * may have come before), else GM_NOT; the stream's last id becomes the
 * connection's if it had none (else the events since are read). */
static int watch_first(rconn *c, const char *name, gm_error *err) {
  cmd m;
  if (start(c, &m, name, "watch", 1, 0, err)) return GM_ERR;
  redisReply *r = eval(c, &m, "watch", err);
  cmd_free(&m);
  if (!r) return GM_ERR;
  int ok = r->elements == 2 && r->element[0]->type == REDIS_REPLY_INTEGER &&
           r->element[1]->type == REDIS_REPLY_STRING &&
           r->element[1]->len < sizeof c->last_id;
  int rc = ok && r->element[0]->integer == 1 ? GM_OK : GM_NOT;
  if (ok && !c->last_id[0])
    memcpy(c->last_id, r->element[1]->str, r->element[1]->len + 1);
  freeReplyObject(r);
  if (!ok) return unexpected("the watch script", err);
  gm_strlcpy(c->watched, name, sizeof c->watched);
  return rc;
}

/* One XREAD of the wake-up stream from the connection's last id, blocking
 * up to ms (0: not at all; BLOCK 0 would wait for ever): GM_OK when an
 * entry names lock `name`, GM_NOT when none did (the last id moves past
 * every entry read; *more says whether any came). */
static int watch_read(rconn *c, const char *name, int64_t ms, int *more,
                      gm_error *err) {
  const char *ev = c->cfg->events, *id = c->last_id;
  redisReply *r = replied(
      c->cfg, c->rc,
      ms > 0 ? redisCommand(c->rc, "XREAD COUNT 100 BLOCK %lld STREAMS %s %s",
                            (long long)ms, ev, id)
             : redisCommand(c->rc, "XREAD COUNT 100 STREAMS %s %s", ev, id),
      "watch (XREAD)", err);
  if (!r) return GM_ERR;
  /* nil: nothing came; else {{key, {{id, {field, value...}}...}}} */
  const redisReply *list = r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
                                   r->element[0]->type == REDIS_REPLY_ARRAY &&
                                   r->element[0]->elements == 2
                               ? r->element[0]->element[1] : NULL;
  int found = 0, ok = r->type == REDIS_REPLY_NIL ||
                      (list && list->type == REDIS_REPLY_ARRAY);
  for (size_t i = 0; ok && list && i < list->elements; i++) {
    const redisReply *e = list->element[i], *f;
    ok = e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
         e->element[0]->type == REDIS_REPLY_STRING &&
         e->element[0]->len < sizeof c->last_id &&
         (f = e->element[1])->type == REDIS_REPLY_ARRAY;
    if (ok) memcpy(c->last_id, e->element[0]->str, e->element[0]->len + 1);
    for (size_t k = 0; ok && k + 1 < f->elements; k += 2)
      found |= f->element[k + 1]->type == REDIS_REPLY_STRING &&
               strcmp(f->element[k + 1]->str, name) == 0;
    *more = 1;
  }
  freeReplyObject(r);
  if (!ok) return unexpected("XREAD", err);
  return found ? GM_OK : GM_NOT;
}

/* Blocks until lock `name` may have changed (a release or force_release
 * event for it on the stream, or, on the first watch of it here, found
 * free), or timeout_us passed (GM_NOT). Events for other locks are read
 * past. Works on any connection from open: this connection's reads time
 * out timeout_us + timeout from now for as long as it waits, and are set
 * back to timeout after it. */
static int rd_watch(void *p, const char *name, int64_t timeout_us,
                    gm_row *row __attribute__((unused)), gm_error *err) {
  rconn *c = p;
  if (timeout_us < 0 || timeout_us > 3600 * GM_US_PER_S) /* an hour */
    timeout_us = timeout_us < 0 ? 0 : 3600 * GM_US_PER_S;
  int64_t end = gm_mono_ns() + timeout_us * 1000;
  int rc = atomic_load(&c->cut) ? GM_ERR : GM_NOT; /* cut: said below */
  if (rc == GM_NOT && redisSetTimeout(c->rc, tv_of(timeout_us +
                                                   c->cfg->timeout_us)))
    return fail(c->cfg, c->rc, NULL, "setting the timeout", err);
  if (rc == GM_NOT && (!c->last_id[0] || strcmp(c->watched, name) != 0))
    rc = watch_first(c, name, err);
  for (int more = 1; rc == GM_NOT && more;) {
    /* the server ends a blocked XREAD at its next timer tick (up to a
     * tick late): blocked a tick less, it returns by the end */
    int64_t ms = (end - gm_mono_ns()) / 1000000 - TICK_US / 1000;
    more = 0;
    rc = watch_read(c, name, ms > 0 ? ms : 0, &more, err);
    more = more && ms > 0; /* entries for other locks: wait on */
  }
  if (rc != GM_ERR && redisSetTimeout(c->rc, tv_of(c->cfg->timeout_us)) !=
                          REDIS_OK)
    rc = fail(c->cfg, c->rc, NULL, "setting the timeout", err);
  if (!atomic_load(&c->cut)) return rc;
  gm_seterr(err, GM_E_CONNECT, "redis: watch on %s:%d interrupted",
            c->cfg->host, c->cfg->port);
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
    .interrupt = rd_interrupt,
    .watch = rd_watch, /* open_watch NULL: watch works on any connection */
    .watch_shared = 1,
    .watch_early_us = TICK_US, /* it blocks a tick less (rd_watch) */
};
