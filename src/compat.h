/* compat.h: one source for Lua 5.1/LuaJIT 2.1 and Lua 5.3/5.4. */
#ifndef GOMASTER_COMPAT_H
#define GOMASTER_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM >= 504
#define gm_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 1)
#define gm_setuservalue(L, idx) lua_setiuservalue((L), (idx), 1)
#define gm_getuservalue(L, idx) lua_getiuservalue((L), (idx), 1)
#define gm_rawlen(L, idx) lua_rawlen((L), (idx))
#elif LUA_VERSION_NUM == 503
#define gm_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define gm_setuservalue(L, idx) lua_setuservalue((L), (idx))
#define gm_getuservalue(L, idx) lua_getuservalue((L), (idx))
#define gm_rawlen(L, idx) lua_rawlen((L), (idx))
#else /* 5.1, LuaJIT: a userdata's environment table holds its values */
#define gm_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define gm_setuservalue(L, idx) lua_setfenv((L), (idx))
#define gm_getuservalue(L, idx) lua_getfenv((L), (idx))
#define gm_rawlen(L, idx) lua_objlen((L), (idx))
#endif

/* PUC Lua 5.1 lacks luaL_setfuncs (LuaJIT 2.1, which defines
 * luaL_newlibtable, has it). */
#if LUA_VERSION_NUM < 502 && !defined(luaL_newlibtable)
static inline void gm_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup, "too many upvalues");
  for (; l->name != NULL; l++) {
    for (int i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#define luaL_setfuncs gm_setfuncs

/* Nor luaL_testudata: the userdata at idx if its metatable is tname's. */
static inline void *gm_testudata(lua_State *L, int idx, const char *tname) {
  void *p = lua_touserdata(L, idx);
  if (p == NULL || !lua_getmetatable(L, idx)) return NULL;
  lua_getfield(L, LUA_REGISTRYINDEX, tname);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? p : NULL;
}
#define luaL_testudata gm_testudata
#endif

#if LUA_VERSION_NUM >= 503
#define gm_pushtoken(L, t) lua_pushinteger((L), (lua_Integer)(t))
#else
/* LuaJIT numbers hold tokens exactly up to 2^53. */
#define gm_pushtoken(L, t) lua_pushnumber((L), (lua_Number)(t))
#endif

#endif
