/*
 * lgomaster.c: gomaster.core, the Lua binding of the election core.
 *
 * Two userdata types: a backend (gm_backend *) and an elector (gm_elector *).
 * Each holds one reference on its C object and drops it in __gc, so closing
 * the lua_State stops and joins every election thread before the state goes
 * (the module is also linked with -z nodelete, so its code stays mapped).
 * The C core never calls Lua: events wait in a queue until Lua asks.
 *
 * An elector's uservalue is a table: its hooks and options, kept by
 * lua/gomaster.lua. Wrong argument types raise; other failures return
 * nil, message, class: the class is a short string from gm_error.code,
 * mapped in one place (error_class below), as luaL_fileresult maps errno.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "fastpath.h"
#include "gomaster.h"

int luaopen_gomaster_proc(lua_State *L); /* src/lproc.c */

#define BACKEND_MT "gomaster.backend"
#define ELECTOR_MT "gomaster.elector"
#define ELECTOR_MAGIC 0x676d656cu

typedef struct {
  gm_backend *b;
} lbackend;

typedef struct {
  unsigned magic;
  gm_elector *e; /* NULL once closed */
  const _Atomic int64_t *until; /* e's deadline, for is_master; NULL: e is */
} lelector;

/* is_master()'s type check, cached per OS thread: the last userdata that
 * passed the whole check, trusted while no elector has been freed since
 * (g_freed counts the frees). Its memory can only hold something else after
 * its __gc ran, and that counts a free first. */
static atomic_ulong g_freed;
static __thread const lelector *t_checked
    __attribute__((tls_model("initial-exec")));
static __thread unsigned long t_checked_gen
    __attribute__((tls_model("initial-exec")));

/* The class of each gm_error.code: the third value of nil, message, class
 * (README "Errors", docs/design.md). A new code is one line here; a code
 * missing from the table is "error". */
static const char *const error_class[] = {
    [GM_E_NONE] = "error",       [GM_E_ARG] = "arg",
    [GM_E_URL] = "arg",          [GM_E_BACKEND] = "arg",
    [GM_E_CONNECT] = "connect",  [GM_E_AUTH] = "auth",
    [GM_E_DB] = "db",            [GM_E_STATE] = "state",
    [GM_E_NOMEM] = "nomem",      [GM_E_ROW] = "row",
    [GM_E_BUSY] = "busy",
};

static const char *class_of(int code) {
  if (code < 0 || (size_t)code >= sizeof error_class / sizeof error_class[0] ||
      !error_class[code])
    return "error";
  return error_class[code];
}

static int fail(lua_State *L, const gm_error *err) {
  lua_pushnil(L);
  lua_pushstring(L, err->msg);
  lua_pushstring(L, class_of(err->code));
  return 3;
}

/* nil, message, "arg": a bad value found by the binding itself; the message
 * is on the top of the stack. */
static int fail_arg(lua_State *L) {
  lua_pushnil(L);
  lua_insert(L, -2);
  lua_pushstring(L, class_of(GM_E_ARG));
  return 3;
}

/* The string at index i, or NULL when it holds a NUL byte: C would cut it
 * there without a word (a name, an id, a path). */
static const char *whole_string(lua_State *L, int i) {
  size_t len;
  const char *s = lua_tolstring(L, i, &len);
  return s && strlen(s) == len ? s : NULL;
}

static int fail_nul(lua_State *L, const char *field) {
  lua_pushfstring(L, "%s: must not contain a NUL byte", field);
  return fail_arg(L);
}

/* luaL_checkstring for names and ids: a NUL byte raises, naming the
 * field. */
static const char *check_text(lua_State *L, int i, const char *field) {
  luaL_checkstring(L, i);
  const char *s = whole_string(L, i);
  if (!s) {
    lua_pushfstring(L, "%s: must not contain a NUL byte", field);
    luaL_argerror(L, i, lua_tostring(L, -1));
  }
  return s;
}

/* ---- backends ----------------------------------------------------------- */

static lbackend *check_backend(lua_State *L, int i) {
  lbackend *lb = luaL_checkudata(L, i, BACKEND_MT);
  if (!lb->b) luaL_argerror(L, i, "backend is closed");
  return lb;
}

static void push_backend(lua_State *L, gm_backend *b) {
  lbackend *lb = gm_newuserdata(L, sizeof *lb);
  lb->b = b;
  luaL_getmetatable(L, BACKEND_MT);
  lua_setmetatable(L, -2);
}

/* hosts = {"h1:3306", "h2:3306"} becomes "h1:3306,h2:3306" in place of
 * the table on top of the stack; 0 (the stack as it was) when an item is
 * not a string or the list is empty. */
static int join_hosts(lua_State *L) {
  int t = lua_gettop(L), n = 0;
  luaL_Buffer buf;
  for (;; n++) {
    lua_rawgeti(L, t, n + 1);
    int ty = lua_type(L, -1);
    lua_pop(L, 1);
    if (ty == LUA_TNIL) break;
    if (ty != LUA_TSTRING) return 0;
  }
  if (n == 0) return 0;
  luaL_buffinit(L, &buf);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&buf, ',');
    lua_rawgeti(L, t, i);
    luaL_addvalue(&buf);
  }
  luaL_pushresult(&buf);
  lua_replace(L, t);
  return 1;
}

/* core.backend(url) or core.backend{type = "mysql", host = ..., ...} */
static int l_backend(lua_State *L) {
  gm_error err = {0};
  gm_backend *b;
  if (lua_type(L, 1) == LUA_TSTRING) {
    const char *url = whole_string(L, 1);
    if (!url) return fail_nul(L, "backend URL");
    b = gm_backend_new_url(url, &err);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    gm_kv kv[32];
    size_t n = 0;
    const char *type = NULL;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
      luaL_checkstack(L, 4, "too many backend options");
      if (lua_type(L, -2) != LUA_TSTRING) {
        lua_pop(L, 2);
        lua_pushstring(L, "backend: option names must be strings");
        return fail_arg(L);
      }
      const char *k = lua_tostring(L, -2);
      int t = lua_type(L, -1);
      if (t == LUA_TBOOLEAN) {
        lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
        lua_replace(L, -2);
      } else if (t == LUA_TTABLE && strcmp(k, "hosts") == 0) {
        if (!join_hosts(L)) {
          lua_pushnil(L);
          lua_pushstring(L, "backend option 'hosts': expected a list of "
                            "\"host:port\" strings");
          return 2;
        }
      } else if (t != LUA_TSTRING && t != LUA_TNUMBER) {
        lua_pushfstring(L, "backend option '%s': expected a string or a "
                           "number, got %s",
                        k, lua_typename(L, t));
        return fail_arg(L);
      }
      if (!whole_string(L, -1)) {
        lua_pushfstring(L, "backend option '%s': must not contain a NUL byte",
                        k);
        return fail_arg(L);
      }
      if (strcmp(k, "type") == 0) {
        type = lua_tostring(L, -1);
      } else {
        if (n == sizeof kv / sizeof kv[0]) {
          lua_pushstring(L, "backend: too many options");
          return fail_arg(L);
        }
        kv[n].key = k;
        kv[n].value = lua_tostring(L, -1); /* converts numbers in place */
        n++;
      }
      /* keep the value on the stack: kv points into it (the table keeps
       * the key); it is popped after the call below */
      lua_pushvalue(L, -2);
    }
    if (!type) {
      lua_pushstring(L, "backend option 'type': required (sqlite, mysql or "
                        "mongodb)");
      return fail_arg(L);
    }
    b = gm_backend_new(type, kv, n, &err);
  }
  if (!b) return fail(L, &err);
  push_backend(L, b);
  return 1;
}

static int l_backend_check(lua_State *L) {
  lbackend *lb = check_backend(L, 1);
  gm_error err = {0};
  if (gm_backend_check(lb->b, &err) != GM_OK) return fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static uint64_t check_token(lua_State *L, int i) {
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(L, i)) return (uint64_t)lua_tointeger(L, i);
#endif
  lua_Number n = luaL_checknumber(L, i);
  if (!(n >= 0) || n != floor(n)) luaL_argerror(L, i, "token expected");
  return (uint64_t)n;
}

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void push_lock_info(lua_State *L, const gm_lock_info *o) {
  lua_createtable(L, 0, 10);
  lua_pushboolean(L, o->exists);
  lua_setfield(L, -2, "exists");
  lua_pushboolean(L, o->live);
  lua_setfield(L, -2, "live");
  set_str(L, "owner", o->owner);
  set_str(L, "version", o->version);
  gm_pushtoken(L, o->token);
  lua_setfield(L, -2, "token");
  set_num(L, "acquired_at", o->acquired_at);
  set_num(L, "renewed_at", o->renewed_at);
  set_num(L, "expires_at", o->expires_at);
  set_num(L, "now", o->now);
  if (o->done_at > 0) {
    lua_createtable(L, 0, 4);
    set_num(L, "at", o->done_at);
    set_str(L, "by", o->done_by);
    gm_pushtoken(L, o->done_token);
    lua_setfield(L, -2, "token");
    set_str(L, "result", o->result);
    lua_setfield(L, -2, "done");
  }
}

/* b:read(name) -> row table (see README) | nil, err */
static int l_backend_read(lua_State *L) {
  lbackend *lb = check_backend(L, 1);
  const char *name = check_text(L, 2, "name");
  gm_lock_info o;
  gm_error err = {0};
  if (gm_backend_read(lb->b, name, &o, &err) != GM_OK) return fail(L, &err);
  push_lock_info(L, &o);
  return 1;
}

/* An instance key as m:instance() gives it: 16 hex digits (a Lua number
 * cannot hold 63 bits under LuaJIT); nil or absent: 0, any instance. */
static uint64_t opt_instance(lua_State *L, int i) {
  if (lua_isnoneornil(L, i)) return 0;
  size_t len;
  const char *s = luaL_checklstring(L, i, &len);
  uint64_t v = 0;
  if (len == 0 || len > 16) luaL_argerror(L, i, "instance key expected");
  for (size_t k = 0; k < len; k++) {
    int c = s[k], d = c >= '0' && c <= '9'   ? c - '0'
                      : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                             : -1;
    if (d < 0) luaL_argerror(L, i, "instance key expected");
    v = v << 4 | (uint64_t)d;
  }
  return v;
}

/* b:complete(name, owner, token, result[, instance]) -> true | false (not
 * the holder) | nil, err */
static int l_backend_complete(lua_State *L) {
  lbackend *lb = check_backend(L, 1);
  const char *name = check_text(L, 2, "name");
  const char *owner = check_text(L, 3, "owner");
  uint64_t token = check_token(L, 4);
  const char *result =
      lua_isnoneornil(L, 5) ? "" : check_text(L, 5, "result");
  uint64_t instance = opt_instance(L, 6);
  gm_error err = {0};
  int rc = gm_backend_complete(lb->b, name, owner, instance, token, result,
                               &err);
  if (rc == GM_ERR) return fail(L, &err);
  lua_pushboolean(L, rc == GM_OK);
  return 1;
}

/* b:force_release(name [, now]) -> row after | false (no such lock) |
 * nil, err. now: free at once instead of after the old lease. */
static int l_backend_force_release(lua_State *L) {
  lbackend *lb = check_backend(L, 1);
  const char *name = check_text(L, 2, "name");
  gm_lock_info o;
  gm_error err = {0};
  int rc = lua_toboolean(L, 3)
               ? gm_backend_force_release_now(lb->b, name, &o, &err)
               : gm_backend_force_release(lb->b, name, &o, &err);
  if (rc == GM_ERR) return fail(L, &err);
  if (rc == GM_NOT) {
    lua_pushboolean(L, 0);
    return 1;
  }
  push_lock_info(L, &o);
  return 1;
}

static int l_backend_gc(lua_State *L) {
  lbackend *lb = luaL_checkudata(L, 1, BACKEND_MT);
  if (lb->b) gm_backend_unref(lb->b);
  lb->b = NULL;
  return 0;
}

static int l_backend_tostring(lua_State *L) {
  lbackend *lb = luaL_checkudata(L, 1, BACKEND_MT);
  lua_pushfstring(L, "gomaster.backend (%s)",
                  lb->b ? gm_backend_describe(lb->b) : "closed");
  return 1;
}

/* core.is_backend(v) -> true when v is a backend object (even closed). */
static int l_is_backend(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, BACKEND_MT) != NULL);
  return 1;
}

static int l_backends(lua_State *L) {
  const char *const *names = gm_backend_names();
  lua_newtable(L);
  for (int i = 0; names[i]; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* ---- electors ----------------------------------------------------------- */

static lelector *check_elector(lua_State *L, int i) {
  lelector *le = luaL_checkudata(L, i, ELECTOR_MT);
  if (!le->e) luaL_argerror(L, i, "elector is closed");
  return le;
}

static double opt_seconds(lua_State *L, int t, const char *field) {
  lua_getfield(L, t, field);
  double v = 0;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "%s: expected a number of seconds", field);
    v = lua_tonumber(L, -1);
    /* gm_config_resolve checks the range and names the field; 0 means
     * "the default" to it, so a 0 given goes as -1, refused as well */
    if (v == 0) v = -1;
  }
  lua_pop(L, 1);
  return v;
}

/* core.timings([{lease=, heartbeat=, renew_deadline=, retry=}]) -> the
 * four timings as the core resolves them (the defaults for what is not
 * given: L=5, H=L/5, D=3L/5, P=L/5) | nil, message, "arg". */
static int l_timings(lua_State *L) {
  gm_config c = {0};
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    c.lease = opt_seconds(L, 1, "lease");
    c.heartbeat = opt_seconds(L, 1, "heartbeat");
    c.renew_deadline = opt_seconds(L, 1, "renew_deadline");
    c.retry = opt_seconds(L, 1, "retry");
  }
  gm_error err = {0};
  if (gm_config_resolve(&c, &err) != GM_OK) return fail(L, &err);
  lua_createtable(L, 0, 4);
  set_num(L, "lease", c.lease);
  set_num(L, "heartbeat", c.heartbeat);
  set_num(L, "renew_deadline", c.renew_deadline);
  set_num(L, "retry", c.retry);
  return 1;
}

/* A string option; *nul set when it holds a NUL byte. */
static const char *opt_string(lua_State *L, int t, const char *field,
                              int *nul) {
  lua_getfield(L, t, field);
  const char *s = NULL;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: expected a string", field);
    s = whole_string(L, -1);
    *nul = !s;
  }
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

/* core.new(backend, {name=, id=, version=, lease=, ...}, uservalue) */
static int l_new(lua_State *L) {
  lbackend *lb = check_backend(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  gm_config c = {0};
  int nul[3] = {0, 0, 0};
  c.name = opt_string(L, 2, "name", &nul[0]);
  c.id = opt_string(L, 2, "id", &nul[1]);
  c.version = opt_string(L, 2, "version", &nul[2]);
  static const char *const fields[3] = {"name", "id", "version"};
  for (int i = 0; i < 3; i++)
    if (nul[i]) return fail_nul(L, fields[i]);
  c.lease = opt_seconds(L, 2, "lease");
  c.heartbeat = opt_seconds(L, 2, "heartbeat");
  c.renew_deadline = opt_seconds(L, 2, "renew_deadline");
  c.retry = opt_seconds(L, 2, "retry");
  lelector *le = gm_newuserdata(L, sizeof *le);
  le->magic = ELECTOR_MAGIC;
  le->e = NULL;
  le->until = NULL;
  luaL_getmetatable(L, ELECTOR_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 3);
  gm_setuservalue(L, -2);
  gm_error err = {0};
  le->e = gm_elector_new(lb->b, &c, &err);
  if (!le->e) return fail(L, &err);
  le->until = gm_elector_until_ref(le->e);
  return 1;
}

static int l_start(lua_State *L) {
  lelector *le = check_elector(L, 1);
  gm_error err = {0};
  if (gm_elector_start(le->e, &err) != GM_OK) return fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_stop(lua_State *L) {
  lelector *le = check_elector(L, 1);
  gm_elector_stop(le->e);
  lua_pushboolean(L, 1);
  return 1;
}

/* Stops with reason "closed"; the events queued stay readable until _free. */
static int l_close(lua_State *L) {
  lelector *le = luaL_checkudata(L, 1, ELECTOR_MT);
  if (le->e) gm_elector_close(le->e);
  return 0;
}

static int l_free(lua_State *L) {
  lelector *le = luaL_checkudata(L, 1, ELECTOR_MT);
  atomic_fetch_add_explicit(&g_freed, 1, memory_order_acq_rel);
  le->until = NULL;
  if (le->e) gm_elector_free(le->e);
  le->e = NULL;
  return 0;
}

static const lelector *is_master_check(lua_State *L) {
  unsigned long gen = atomic_load_explicit(&g_freed, memory_order_acquire);
  const lelector *le = lua_touserdata(L, 1);
  if (!le || gm_rawlen(L, 1) != sizeof *le || le->magic != ELECTOR_MAGIC)
    le = luaL_checkudata(L, 1, ELECTOR_MT);
  t_checked = le;
  t_checked_gen = gen;
  return le;
}

/* The hot path: a pointer compare for the type check (above), one atomic
 * load and one coarse clock read (src/fastpath.h), inlined. */
static int l_is_master(lua_State *L) {
  const lelector *le = lua_touserdata(L, 1);
  if (le != t_checked || !le ||
      t_checked_gen != atomic_load_explicit(&g_freed, memory_order_acquire))
    le = is_master_check(L);
  lua_pushboolean(L, le->until && gm_fast_is_master(le->until));
  return 1;
}

/* core._true(x) -> true: the cheapest C function, the floor that the
 * benchmark sets is_master() beside. */
static int l_true(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

static int l_token(lua_State *L) {
  lelector *le = check_elector(L, 1);
  uint64_t t = gm_elector_token(le->e);
  if (t)
    gm_pushtoken(L, t);
  else
    lua_pushnil(L);
  return 1;
}

static int l_id(lua_State *L) {
  lua_pushstring(L, gm_elector_id(check_elector(L, 1)->e));
  return 1;
}

/* m:instance() -> the instance key as 16 hex digits */
static int l_instance(lua_State *L) {
  char buf[20];
  snprintf(buf, sizeof buf, "%016llx",
           (unsigned long long)gm_elector_instance(check_elector(L, 1)->e));
  lua_pushstring(L, buf);
  return 1;
}

static int l_name(lua_State *L) {
  lua_pushstring(L, gm_elector_name(check_elector(L, 1)->e));
  return 1;
}

static int l_fd(lua_State *L) {
  lelector *le = check_elector(L, 1);
  gm_error err = {0};
  int fd = gm_elector_fd(le->e, &err);
  if (fd < 0) return fail(L, &err);
  lua_pushinteger(L, fd);
  return 1;
}

static int l_hooks(lua_State *L) {
  luaL_checkudata(L, 1, ELECTOR_MT);
  gm_getuservalue(L, 1);
  return 1;
}

static void push_leader(lua_State *L, const gm_leader *l) {
  lua_createtable(L, 0, 8);
  lua_pushboolean(L, l->held);
  lua_setfield(L, -2, "held");
  if (l->held) {
    lua_pushstring(L, l->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, l->version);
    lua_setfield(L, -2, "version");
  }
  gm_pushtoken(L, l->token);
  lua_setfield(L, -2, "token");
  lua_pushnumber(L, l->acquired_at);
  lua_setfield(L, -2, "acquired_at");
  lua_pushnumber(L, l->renewed_at);
  lua_setfield(L, -2, "renewed_at");
  lua_pushnumber(L, l->expires_at);
  lua_setfield(L, -2, "expires_at");
  lua_pushnumber(L, l->expires_in);
  lua_setfield(L, -2, "expires_in");
}

/* m:_next() -> kind, value[, class] | nil: the oldest event (an error's
 * class third). */
static int l_next(lua_State *L) {
  lelector *le = luaL_checkudata(L, 1, ELECTOR_MT);
  gm_event ev;
  if (!le->e || gm_elector_next_event(le->e, &ev) != GM_OK) return 0;
  switch (ev.type) {
  case GM_EV_START:
    lua_pushliteral(L, "start");
    gm_pushtoken(L, ev.token);
    break;
  case GM_EV_STOP:
    lua_pushliteral(L, "stop");
    lua_pushstring(L, gm_stop_reason_name(ev.reason));
    break;
  case GM_EV_LEADER:
    lua_pushliteral(L, "leader");
    push_leader(L, &ev.leader);
    break;
  case GM_EV_ERROR:
    lua_pushliteral(L, "error");
    lua_pushstring(L, ev.message);
    lua_pushstring(L, class_of(ev.code));
    return 3;
  default:
    return 0;
  }
  return 2;
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* m:_poll(timeout) -> true when events may be waiting. Waits on the event fd
 * no longer than timeout (nil: forever) and no later than the deadline, so a
 * master hanging in a database call still hears its stop("deadline"). */
static int l_poll(lua_State *L) {
  lelector *le = check_elector(L, 1);
  double timeout = luaL_optnumber(L, 2, -1);
  if (timeout != timeout) luaL_argerror(L, 2, "timeout is NaN");
  gm_error err = {0};
  int fd = gm_elector_fd(le->e, &err);
  if (fd < 0) return fail(L, &err);
  int64_t now = mono_ns();
  int64_t until = timeout < 0 ? INT64_MAX : now + (int64_t)(timeout * 1e9);
  int64_t deadline = gm_elector_deadline(le->e);
  if (deadline && deadline < until) until = deadline + 1000000; /* +1 ms */
  for (;;) {
    int64_t left = until == INT64_MAX ? -1 : (until - mono_ns()) / 1000000;
    if (until != INT64_MAX && left < 0) left = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, left > 2000000000 ? 2000000000 : (int)left);
    if (r >= 0 || errno != EINTR) {
      lua_pushboolean(L, r > 0);
      return 1;
    }
  }
}

/* core.now() -> CLOCK_MONOTONIC seconds: the clock is_master() runs on. */
static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)mono_ns() / 1e9);
  return 1;
}

static int l_status(lua_State *L) {
  lelector *le = check_elector(L, 1);
  gm_status st;
  gm_elector_status(le->e, &st);
  lua_createtable(L, 0, 12);
  lua_pushboolean(L, st.is_master);
  lua_setfield(L, -2, "is_master");
  lua_pushboolean(L, st.running);
  lua_setfield(L, -2, "running");
  lua_pushstring(L, gm_elector_id(le->e));
  lua_setfield(L, -2, "id");
  lua_pushstring(L, gm_elector_name(le->e));
  lua_setfield(L, -2, "name");
  if (st.token) {
    gm_pushtoken(L, st.token);
    lua_setfield(L, -2, "token");
  }
  push_leader(L, &st.leader);
  lua_setfield(L, -2, "leader");
  if (st.last_error[0]) {
    lua_pushstring(L, st.last_error);
    lua_setfield(L, -2, "last_error");
  }
  if (st.last_error_at > 0) {
    lua_pushnumber(L, st.last_error_at);
    lua_setfield(L, -2, "last_error_at");
  }
  lua_createtable(L, 0, 7);
  const struct {
    const char *k;
    uint64_t v;
  } c[] = {{"acquires", st.acquires}, {"renewals", st.renewals},
           {"observes", st.observes}, {"releases", st.releases},
           {"errors", st.errors},     {"grants", st.grants},
           {"losses", st.losses}};
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    gm_pushtoken(L, c[i].v);
    lua_setfield(L, -2, c[i].k);
  }
  lua_setfield(L, -2, "counters");
  /* metrics: stops by reason, the renewal histogram, time to the deadline */
  lua_createtable(L, 0, 4);
  for (int r = GM_STOP_LOST; r <= GM_STOP_CLOSED; r++) {
    gm_pushtoken(L, st.stops[r - 1]);
    lua_setfield(L, -2, gm_stop_reason_name((gm_stop_reason)r));
  }
  lua_setfield(L, -2, "stops");
  lua_createtable(L, 0, 3);
  lua_createtable(L, GM_RENEW_BUCKETS, 0);
  for (int i = 0; i < GM_RENEW_BUCKETS; i++) {
    gm_pushtoken(L, st.renew_le[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "le");
  gm_pushtoken(L, st.renew_count);
  lua_setfield(L, -2, "count");
  lua_pushnumber(L, (lua_Number)st.renew_sum);
  lua_setfield(L, -2, "sum");
  lua_setfield(L, -2, "renew_seconds");
  lua_pushnumber(L, (lua_Number)st.deadline_in);
  lua_setfield(L, -2, "deadline_in");
  lua_pushstring(L, st.backend);
  lua_setfield(L, -2, "backend");
  return 1;
}

static int l_elector_tostring(lua_State *L) {
  lelector *le = luaL_checkudata(L, 1, ELECTOR_MT);
  if (!le->e)
    lua_pushliteral(L, "gomaster.elector (closed)");
  else
    lua_pushfstring(L, "gomaster.elector (%s, lock '%s', %s)",
                    gm_elector_id(le->e), gm_elector_name(le->e),
                    gm_elector_is_master(le->e) ? "master" : "follower");
  return 1;
}

static const luaL_Reg elector_methods[] = {
    {"start", l_start},   {"stop", l_stop},        {"is_master", l_is_master},
    {"token", l_token},   {"id", l_id},            {"name", l_name},
    {"fd", l_fd},         {"status", l_status},    {"_next", l_next},
    {"_poll", l_poll},    {"_close", l_close},     {"_free", l_free},
    {"_hooks", l_hooks},  {"instance", l_instance}, {NULL, NULL}};

static const luaL_Reg backend_methods[] = {
    {"check", l_backend_check},
    {"read", l_backend_read},
    {"complete", l_backend_complete},
    {"force_release", l_backend_force_release},
    {NULL, NULL}};

static const luaL_Reg funcs[] = {{"backend", l_backend},
                                 {"backends", l_backends},
                                 {"is_backend", l_is_backend},
                                 {"new", l_new},
                                 {"now", l_now},
                                 {"timings", l_timings},
                                 {"_true", l_true},
                                 {NULL, NULL}};

int luaopen_gomaster_core(lua_State *L) {
#if LUA_VERSION_NUM >= 502
  luaL_checkversion(L);
#endif
  /* backend metatable */
  luaL_newmetatable(L, BACKEND_MT);
  lua_newtable(L);
  luaL_setfuncs(L, backend_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_backend_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_backend_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  /* elector metatable: __index is the method table itself (fast lookup);
   * lua/gomaster.lua adds dispatch, wait, close and __gc/__close to it. */
  luaL_newmetatable(L, ELECTOR_MT);
  lua_newtable(L);
  luaL_setfuncs(L, elector_methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");
  lua_pushcfunction(L, l_free);
  lua_setfield(L, -3, "__gc");
  lua_pushcfunction(L, l_elector_tostring);
  lua_setfield(L, -3, "__tostring");

  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  lua_insert(L, -2);
  lua_setfield(L, -2, "methods");
  lua_insert(L, -2);
  lua_setfield(L, -2, "metatable");
  lua_pushliteral(L, GM_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushliteral(L, GM_DEFAULT_BACKEND);
  lua_setfield(L, -2, "DEFAULT_BACKEND");
  lua_pushinteger(L, GM_MAX_SECONDS);
  lua_setfield(L, -2, "MAX_SECONDS");
  lua_pushinteger(L, LUA_VERSION_NUM);
  lua_setfield(L, -2, "lua_version_num");
  lua_createtable(L, GM_RENEW_BUCKETS, 0);
  for (int i = 0; i < GM_RENEW_BUCKETS; i++) {
    lua_pushnumber(L, (lua_Number)gm_renew_bounds[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "renew_bounds");
  /* the opener of gomaster.proc (lua/gomaster/proc.lua), linked in here */
  lua_pushcfunction(L, luaopen_gomaster_proc);
  lua_setfield(L, -2, "_open_proc");
  return 1;
}
