package = "gomaster"
version = "dev-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "One master among the nodes of a service, through a lease on a shared database",
  detailed = [[
A C core elects a master on a background thread through a lease row on a
database the nodes share (SQLite, MySQL/MariaDB, MongoDB); start/stop hooks
in Lua. Safe under pauses and clock skew: is_master() turns false at the
renew deadline, fencing tokens grow with every grant.
]],
  license = "MIT",
}
dependencies = {
  -- 5.1 (and LuaJIT), 5.3, 5.4: src/compat.h has no 5.2 branch
  "lua >= 5.1, < 5.5",
  "lua ~= 5.2",
}
external_dependencies = {
  SQLITE = { header = "sqlite3.h" },
}
build = {
  type = "make",
  makefile = "Makefile",
  build_target = "module",
  build_variables = {
    LUA = "rock",
    LUA_INCDIR = "$(LUA_INCDIR)",
    CFLAGS = "$(CFLAGS)",
  },
  install_target = "install",
  install_variables = {
    LUA = "rock",
    -- the same flags as the build, so that install finds the objects current
    LUA_INCDIR = "$(LUA_INCDIR)",
    CFLAGS = "$(CFLAGS)",
    LUA_LIBDIR = "$(LIBDIR)",
    LUA_SHAREDIR = "$(LUADIR)",
    BINDIR = "$(BINDIR)",
    PREFIX = "$(PREFIX)",
  },
  install = {
    bin = { gomaster = "bin/gomaster" },
  },
}
