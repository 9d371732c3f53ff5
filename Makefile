# gomaster: make [LUA=5.4|luajit|5.1|5.3] [WERROR=1] [SANITIZE=address,undefined|thread]
#   make            build the Lua module and the C library for LUA (5.4)
#   make test       install what is missing (as root), start the servers, run every test
#   make demo       install what is missing, build, run a three-node election with a failover
#   make openresty-demo  the same with three nginx instances of two workers each
#   make env        PREFIX=/usr/local: the LUA_PATH and LUA_CPATH of scripts
#   make install    PREFIX=/usr/local DESTDIR=
#   make chaos      DURATION=60 BACKEND=sqlite|mysql|mongo|postgres|redis|galera [HOSTILE=1]: faults, then the checker
#   make fuzz       SECONDS=60: each libFuzzer harness of tests/fuzz/
#   make sim        SEEDS=100000 [FIRST=1] | SEED=S (a trace) [BREAK=deadline|ownclock|token|fork|margin|anchor|early]
#                   [BEYOND=1: print failures beyond the guarantee too]:
#                   the core in the deterministic simulator (tests/sim/)

LUA        ?= 5.4
PREFIX     ?= /usr/local
DESTDIR    ?=
CC         ?= cc
PKG_CONFIG ?= pkg-config

ifeq ($(LUA),luajit)
  LUA_PC   ?= luajit
  LUA_BIN  ?= luajit
  LUA_VER  ?= 5.1
else
  LUA_PC   ?= lua$(LUA)
  LUA_BIN  ?= lua$(LUA)
  LUA_VER  ?= $(LUA)
endif
LUA_INCDIR ?=
LUA_CFLAGS := $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell $(PKG_CONFIG) --cflags $(LUA_PC) 2>/dev/null))
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VER)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_VER)
BINDIR     ?= $(PREFIX)/bin
LUA_PATHS  := $(LUA_SHAREDIR)/?.lua;$(LUA_SHAREDIR)/?/init.lua
LUA_CPATHS := $(LUA_LIBDIR)/?.so

# Sanitizer builds go to their own directory (build/5.4-thread, ...), so
# objects of different instrumentation never mix. BUILD=dir overrides.
comma      := ,
BUILD      ?= build/$(LUA)$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))
CSTD       := -std=c11 -D_GNU_SOURCE
WARN       := -Wall -Wextra -Wshadow -Wstrict-prototypes
ifeq ($(WERROR),1)
  WARN += -Werror
endif
OPT        ?= -O2 -g
SAN_FLAGS  := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer,)
CFLAGS_ALL := $(CSTD) $(WARN) $(OPT) -fPIC -pthread $(SAN_FLAGS) $(CFLAGS)

# Backends: SQLite is required; MySQL/MariaDB, MongoDB, PostgreSQL (libpq)
# and Redis (hiredis) when found.
SQLITE_CFLAGS := $(shell $(PKG_CONFIG) --cflags sqlite3 2>/dev/null)
SQLITE_LIBS   := $(shell $(PKG_CONFIG) --libs sqlite3 2>/dev/null || echo -lsqlite3)
# MariaDB Connector/C (Debian's default-libmysqlclient-dev); Oracle's
# libmysqlclient lacks mysql_optionsv.
MYSQL_PC      := $(if $(shell $(PKG_CONFIG) --exists libmariadb && echo y),libmariadb)
MONGO_PC      := $(if $(shell $(PKG_CONFIG) --exists libmongoc-1.0 && echo y),libmongoc-1.0)
WITH_MYSQL    ?= $(if $(and $(MYSQL_PC),$(wildcard backends/mysql.c)),1,0)
WITH_MONGO    ?= $(if $(and $(MONGO_PC),$(wildcard backends/mongo.c)),1,0)
PG_PC         := $(if $(shell $(PKG_CONFIG) --exists libpq && echo y),libpq)
WITH_POSTGRES ?= $(if $(and $(PG_PC),$(wildcard backends/postgres.c)),1,0)
REDIS_PC      := $(if $(shell $(PKG_CONFIG) --exists hiredis && echo y),hiredis)
WITH_REDIS    ?= $(if $(and $(REDIS_PC),$(wildcard backends/redis.c)),1,0)

BACKEND_SRC := backends/sqlite.c
BACKEND_CFLAGS := $(SQLITE_CFLAGS)
BACKEND_LIBS := $(SQLITE_LIBS)
ifeq ($(WITH_MYSQL),1)
  BACKEND_SRC += backends/mysql.c
  BACKEND_CFLAGS += -DGM_WITH_MYSQL $(shell $(PKG_CONFIG) --cflags $(MYSQL_PC))
  BACKEND_LIBS += $(shell $(PKG_CONFIG) --libs $(MYSQL_PC))
endif
ifeq ($(WITH_POSTGRES),1)
  BACKEND_SRC += backends/postgres.c
  BACKEND_CFLAGS += -DGM_WITH_POSTGRES $(shell $(PKG_CONFIG) --cflags libpq)
  BACKEND_LIBS += $(shell $(PKG_CONFIG) --libs libpq)
endif
ifeq ($(WITH_REDIS),1)
  BACKEND_SRC += backends/redis.c
  BACKEND_CFLAGS += -DGM_WITH_REDIS $(shell $(PKG_CONFIG) --cflags hiredis)
  BACKEND_LIBS += $(shell $(PKG_CONFIG) --libs hiredis)
endif
# libmongoc initialises itself when it is loaded, and then warns on stderr
# when a killed process of the same pid left its shared-memory counters
# behind. So the Lua module does not link it: the MongoDB backend is its own
# object, gomaster/mongo.so, loaded by src/registry.c on first use (with the
# counters off). The C library links it in (GM_WITH_MONGO).
ifeq ($(WITH_MONGO),1)
  MONGO_SRC    := backends/mongo.c src/mongo_doc.c src/mongo_stream.c
  BACKEND_CFLAGS += $(shell $(PKG_CONFIG) --cflags libmongoc-1.0)
  MONGO_LIBS   := $(shell $(PKG_CONFIG) --libs libmongoc-1.0)
  MONGO_MODULE := $(BUILD)/gomaster/mongo.so
endif

CORE_SRC := src/elector.c src/clock.c src/url.c src/util.c src/timeutil.c src/hosts.c src/schema.c $(BACKEND_SRC)
CORE_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CORE_SRC))
MONGO_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(MONGO_SRC))
REG_LIB  := $(BUILD)/obj/src/registry-lib.o
REG_MOD  := $(BUILD)/obj/src/registry-mod.o
LUA_OBJ  := $(BUILD)/obj/src/lgomaster.o $(BUILD)/obj/src/lproc.o
HEADERS  := $(wildcard src/*.h)

MODULE   := $(BUILD)/gomaster/core.so
CORELIB  := $(BUILD)/libgomaster.a

CTESTS   := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/test_*.c))

.PHONY: sim all lib module ctests test test-c test-lua demo install uninstall clean deps bench chaos fuzz fuzzers env openresty-demo FORCE

all: module lib

module: $(MODULE) $(MONGO_MODULE)
lib: $(CORELIB)

# Objects are rebuilt when the flags change (a backend found or dropped,
# another sanitizer), not only when a source does.
# -Werror is left out: it changes no object, so `make install` after the
# tests' WERROR=1 build rebuilds nothing. The stamp is written by a rule, only
# when the flags differ from the ones it holds, so `make -n` and `make -q`
# change nothing (and show the rebuild a change of flags would cause).
FLAGS_STAMP := $(BUILD)/flags.stamp
FLAGS_NOW   := $(filter-out -Werror,$(CC) $(CFLAGS_ALL) $(BACKEND_CFLAGS) $(LUA_CFLAGS))
ifneq ($(FLAGS_NOW),$(strip $(shell cat $(FLAGS_STAMP) 2>/dev/null)))
$(FLAGS_STAMP): FORCE
endif
$(FLAGS_STAMP):
	@mkdir -p $(@D)
	@echo '$(FLAGS_NOW)' > $@
FORCE:

$(BUILD)/obj/%.o: %.c $(HEADERS) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(BACKEND_CFLAGS) -Isrc -c $< -o $@

$(LUA_OBJ): $(BUILD)/obj/src/%.o: src/%.c $(HEADERS) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LUA_CFLAGS) -Isrc -c $< -o $@

$(REG_LIB): src/registry.c $(HEADERS) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(BACKEND_CFLAGS) $(if $(MONGO_SRC),-DGM_WITH_MONGO) -Isrc -c $< -o $@

$(REG_MOD): src/registry.c $(HEADERS) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(BACKEND_CFLAGS) $(if $(MONGO_SRC),-DGM_MONGO_DLOPEN) -Isrc -c $< -o $@

# -z nodelete: the module stays mapped after lua_close, so a background thread
# that is still winding down never runs unmapped code.
$(MODULE): $(CORE_OBJ) $(REG_MOD) $(LUA_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -pthread $(SAN_FLAGS) -Wl,-z,nodelete -o $@ $^ $(BACKEND_LIBS) -ldl $(LDFLAGS)

$(MONGO_MODULE): $(MONGO_OBJ) $(BUILD)/obj/src/util.o $(BUILD)/obj/src/timeutil.o $(BUILD)/obj/src/url.o
	@mkdir -p $(dir $@)
	$(CC) -shared -pthread $(SAN_FLAGS) -Wl,-z,nodelete -o $@ $^ $(MONGO_LIBS) $(LDFLAGS)

$(CORELIB): $(CORE_OBJ) $(REG_LIB) $(MONGO_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/tests/%: tests/c/%.c tests/c/scripted.h tests/c/check.h tests/c/backend_test.h $(CORELIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(BACKEND_CFLAGS) -Isrc -Itests/c -o $@ $< $(CORELIB) $(BACKEND_LIBS) $(MONGO_LIBS) -lm $(LDFLAGS)

ctests: $(CTESTS)

# Builds and runs every C test binary (each ends with "N passed, N failed")
# and prints their sum. CTEST_RUN prefixes each run, e.g.
#   make test-c CTEST_RUN="valgrind --error-exitcode=99 --leak-check=full"
CTEST_RUN ?=
test-c: $(CTESTS)
	@mkdir -p $(BUILD)/ctest-logs; pass=0; fail=0; \
	for t in $(CTESTS); do \
	  echo "== $$t"; log=$(BUILD)/ctest-logs/$${t##*/}.log; \
	  $(CTEST_RUN) $$t > $$log 2>&1; rc=$$?; cat $$log; \
	  line=$$(grep -E '^[0-9]+ passed, [0-9]+ failed$$' $$log | tail -n 1); \
	  if [ -n "$$line" ]; then \
	    p=$${line%% passed*}; f=$${line#*passed, }; f=$${f%% failed}; \
	  else p=0; f=0; fi; \
	  if [ $$rc -ne 0 ] && [ $$f -eq 0 ]; then f=1; echo "$$t: exit status $$rc"; fi; \
	  pass=$$((pass + p)); fail=$$((fail + f)); \
	done; \
	echo "$$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# Debian packages, by group (scripts/deps.sh): demo (a compiler, Lua 5.4,
# SQLite), openresty (and LuaJIT, nginx), test (everything; the default).
DEPS ?= test
deps:
	@sh scripts/deps.sh $(DEPS)

# The whole suite: C unit tests, then the specs under Lua 5.4 and LuaJIT
# against SQLite and the database servers that tests/servers.sh starts.
test: deps
	@sh tests/run.sh

demo:
	@sh scripts/deps.sh demo
	@$(MAKE) -s LUA=5.4 all
	@lua5.4 examples/demo.lua

# Three nginx instances of two workers each on loopback ports and one SQLite
# file in a temporary directory: the leader, a takeover when the leader's
# nginx quits, then every nginx stopped and the directory removed.
openresty-demo:
	@sh scripts/deps.sh openresty
	@$(MAKE) -s LUA=luajit all
	@bash examples/openresty/demo.sh

# Chaos: NODES node processes on one backend under random faults, then the
# checker's summary table (tests/chaos/). make chaos DURATION=600 BACKEND=mysql
DURATION   ?= 60
BACKEND    ?= sqlite
NODES      ?= 5
LEASE      ?= 1.5
HOSTILE    ?=
chaos: deps
	@$(MAKE) -s LUA=5.4 all
	@GOMASTER_CHAOS_HOSTILE=$(HOSTILE) bash tests/chaos/chaos.sh $(BACKEND) $(DURATION) $(NODES) $(LEASE)

# Fuzzing (tests/fuzz/): libFuzzer harnesses built with clang, ASan and
# UBSan into build/fuzz/. make fuzz SECONDS=60 runs each for SECONDS, starting
# from tests/fuzz/corpus/<harness>/ and keeping what it finds new in
# build/fuzz/corpus-<harness>/; tests/integration/fuzz_replay.sh replays the
# kept corpus in make test.
SECONDS    ?= 60
FUZZ_CC    ?= clang
FUZZ_FLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -pthread \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC   := $(CORE_SRC) src/registry.c $(MONGO_SRC)
FUZZERS    := build/fuzz/fuzz_url build/fuzz/fuzz_options \
              $(if $(filter 1,$(WITH_MONGO)),build/fuzz/fuzz_mongo_doc)
build/fuzz/fuzz_url build/fuzz/fuzz_options: build/fuzz/%: tests/fuzz/%.c $(FUZZ_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(BACKEND_CFLAGS) $(if $(MONGO_SRC),-DGM_WITH_MONGO) -Isrc -o $@ $< $(FUZZ_SRC) $(BACKEND_LIBS) $(MONGO_LIBS) -lm
build/fuzz/fuzz_mongo_doc: tests/fuzz/fuzz_mongo_doc.c $(FUZZ_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(BACKEND_CFLAGS) -DGM_WITH_MONGO -Isrc -o $@ $< $(FUZZ_SRC) $(BACKEND_LIBS) $(MONGO_LIBS) -lm
fuzzers: $(FUZZERS)
fuzz: deps
	@$(MAKE) -s fuzzers
	@for f in $(FUZZERS); do n=$${f##*/}; mkdir -p build/fuzz/corpus-$$n tests/fuzz/corpus/$$n; \
	  echo "== $$n, $(SECONDS) s"; \
	  $$f -max_total_time=$(SECONDS) -print_final_stats=1 build/fuzz/corpus-$$n tests/fuzz/corpus/$$n \
	    2>build/fuzz/$$n.log || { tail -n 60 build/fuzz/$$n.log; exit 1; }; \
	  grep -E '^stat::(number_of_executed_units|new_units_added)' build/fuzz/$$n.log; done

bench: deps
	@sh bench/run.sh

# The installed command looks in its own prefix first, so it needs no
# LUA_PATH. (luarocks wraps the command with its tree's paths instead.)
INSTALL_PATHS = echo '-- make install: this prefix first'; \
	  echo 'package.path = [==[$(LUA_PATHS);]==] .. package.path'; \
	  echo 'package.cpath = [==[$(LUA_CPATHS);]==] .. package.cpath';
install: $(MODULE) $(MONGO_MODULE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/gomaster $(DESTDIR)$(LUA_SHAREDIR)/gomaster $(DESTDIR)$(BINDIR)
	install -m 0755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/gomaster/core.so
	$(if $(MONGO_MODULE),install -m 0755 $(MONGO_MODULE) $(DESTDIR)$(LUA_LIBDIR)/gomaster/mongo.so)
	install -m 0644 lua/gomaster.lua $(DESTDIR)$(LUA_SHAREDIR)/gomaster.lua
	for f in lua/gomaster/*.lua; do [ -e "$$f" ] && install -m 0644 "$$f" $(DESTDIR)$(LUA_SHAREDIR)/gomaster/ || true; done
	{ echo '#!/usr/bin/env $(if $(filter rock,$(LUA)),lua,$(LUA_BIN))'; \
	  $(if $(filter rock,$(LUA)),,$(INSTALL_PATHS)) sed 1d bin/gomaster; } > $(DESTDIR)$(BINDIR)/gomaster
	chmod 0755 $(DESTDIR)$(BINDIR)/gomaster

# The environment a Lua script needs to require("gomaster") from PREFIX:
#   eval "$(make -s env PREFIX=/opt/gm)"   (LUA=luajit for LuaJIT's 5.1 paths)
env:
	@echo "export LUA_PATH='$(LUA_PATHS);;'"
	@echo "export LUA_CPATH='$(LUA_CPATHS);;'"

uninstall:
	rm -rf $(DESTDIR)$(LUA_LIBDIR)/gomaster $(DESTDIR)$(LUA_SHAREDIR)/gomaster $(DESTDIR)$(LUA_SHAREDIR)/gomaster.lua $(DESTDIR)$(BINDIR)/gomaster

clean:
	rm -rf build

# The deterministic simulator (tests/sim/, docs/design.md "Simulation"): the
# core built with tests/sim/shim.h force-included. BREAK=deadline|ownclock|
# token|fork|margin|anchor|early builds a deliberately wrong copy of src/elector.c (one line changed
# by sed; the build fails when the line is not found) that make sim must
# catch.
SEEDS      ?= 100000
FIRST      ?= 1
SIM_JOBS   ?= 2
SIM_DIR    := build/sim$(if $(BREAK),-$(BREAK))
SIM_BIN    := $(SIM_DIR)/sim
SIM_CFLAGS := $(CSTD) $(WARN) -O2 -g -Isrc -Itests/sim
SIM_SED_deadline := s/e->dl_ns = (int64_t)(c.renew_deadline \* NS);/e->dl_ns = (int64_t)(c.lease * NS);/
SIM_SED_ownclock := s/int64_t watched = t1 - e->v_first_t1;/return 0; int64_t watched = t1 - e->v_first_t1;/
SIM_SED_token    := s/\.min_token = e->max_token,/.min_token = 0,/
SIM_SED_fork     := s/^      e->instance = new_instance();/      ;/
SIM_SED_margin   := s/int64_t margin_us = (e->lease_ns - e->dl_ns)/int64_t margin_us = 2 * (e->lease_ns - e->dl_ns)/
SIM_SED_anchor   := s/e->anchor_db > r->renewed_at) return wait;/0) return wait;/
SIM_SED_early    := s/int64_t early = gm_us_to_ns(b->ops->watch_early_us);/int64_t early = 0;/

$(SIM_DIR)/elector.c: src/elector.c Makefile
	@mkdir -p $(@D)
ifeq ($(BREAK),)
	@cp src/elector.c $@
else
	@test -n '$(SIM_SED_$(BREAK))' || { echo "BREAK=$(BREAK): deadline, ownclock, token, fork, margin, anchor or early" >&2; exit 2; }
	@sed -e '$(SIM_SED_$(BREAK))' src/elector.c > $@
	@! cmp -s src/elector.c $@ || { echo "BREAK=$(BREAK): the line to change is not in src/elector.c" >&2; rm -f $@; exit 2; }
endif

# Every source of the core goes through the shim (a time module too, when
# there is one); only elector.c is copied, for BREAK.
SIM_LIBSRC := src/util.c src/url.c $(wildcard src/timeutil.c src/time.c)
# The core's process-wide statics, made global in the simulator's copy of
# elector.o: each simulated process has its own (a fork copies them).
SIM_GLOBALS := g_backends g_mu g_once
$(SIM_BIN): $(SIM_DIR)/elector.c tests/sim/sim.c tests/sim/shim.h $(SIM_LIBSRC) $(HEADERS)
	$(CC) $(SIM_CFLAGS) -include tests/sim/shim.h -c $(SIM_DIR)/elector.c -o $(SIM_DIR)/elector.o
	objcopy $(addprefix --globalize-symbol=,$(SIM_GLOBALS)) $(SIM_DIR)/elector.o
	@for f in $(SIM_LIBSRC); do \
	  $(CC) $(SIM_CFLAGS) -include tests/sim/shim.h -c $$f -o $(SIM_DIR)/$$(basename $$f .c).o || exit 1; done
	$(CC) $(SIM_CFLAGS) -o $@ tests/sim/sim.c $(SIM_DIR)/elector.o $(patsubst src/%.c,$(SIM_DIR)/%.o,$(SIM_LIBSRC)) -lm

sim: $(SIM_BIN)
	@$(SIM_BIN) $(if $(SEED),--seed=$(SEED),--seeds=$(SEEDS) --first=$(FIRST) --jobs=$(SIM_JOBS)) $(if $(BEYOND),--beyond)
