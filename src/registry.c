/* registry.c: the backends this build has. One line per backend.
 *
 * Built two ways. The C library links every backend in (GM_WITH_MONGO).
 * The Lua module leaves MongoDB out (GM_MONGO_DLOPEN) and loads
 * gomaster/mongo.so from beside itself on first use: libmongoc initialises
 * itself as soon as it is loaded and may then print to stderr, which a
 * process that never uses MongoDB should not pay for. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#ifdef GM_MONGO_DLOPEN
#include <dlfcn.h>
#endif

extern const gm_backend_ops gm_sqlite_ops;
#ifdef GM_WITH_MYSQL
extern const gm_backend_ops gm_mysql_ops;
#endif
#ifdef GM_WITH_MONGO
extern const gm_backend_ops gm_mongo_ops;
#endif
#ifdef GM_WITH_POSTGRES
extern const gm_backend_ops gm_postgres_ops;
#endif
#ifdef GM_WITH_REDIS
extern const gm_backend_ops gm_redis_ops;
#endif

static const gm_backend_ops *const registry[] = {
    &gm_sqlite_ops,
#ifdef GM_WITH_MYSQL
    &gm_mysql_ops,
#endif
#ifdef GM_WITH_MONGO
    &gm_mongo_ops,
#endif
#ifdef GM_WITH_POSTGRES
    &gm_postgres_ops,
#endif
#ifdef GM_WITH_REDIS
    &gm_redis_ops,
#endif
};
#define NREG (sizeof registry / sizeof registry[0])

static const char *const names[] = {
    "sqlite",
#ifdef GM_WITH_MYSQL
    "mysql",
#endif
#if defined(GM_WITH_MONGO) || defined(GM_MONGO_DLOPEN)
    "mongodb",
#endif
#ifdef GM_WITH_POSTGRES
    "postgres",
#endif
#ifdef GM_WITH_REDIS
    "redis",
#endif
    NULL};

const char *const *gm_backend_names(void) { return names; }

#ifdef GM_MONGO_DLOPEN
static pthread_once_t mongo_once = PTHREAD_ONCE_INIT;
static const gm_backend_ops *mongo_ops; /* written once under mongo_once */
static char mongo_err[200];

static void load_mongo(void) {
  Dl_info self;
  char path[PATH_MAX];
  if (!dladdr((void *)&gm_backend_names, &self) || !self.dli_fname) {
    snprintf(mongo_err, sizeof mongo_err, "cannot find the module's path");
    return;
  }
  const char *slash = strrchr(self.dli_fname, '/');
  int dir = slash ? (int)(slash - self.dli_fname) : 1;
  snprintf(path, sizeof path, "%.*s/mongo.so", dir,
           slash ? self.dli_fname : ".");
  /* libmongoc's shared-memory counters are diagnostics; a SIGKILLed
   * process leaves its segment behind, and a later process with the same
   * pid then warns on stderr. Off, unless the user chose otherwise. */
  setenv("MONGOC_DISABLE_SHM", "1", 0);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!h) {
    snprintf(mongo_err, sizeof mongo_err, "%s", dlerror());
    return;
  }
  mongo_ops = dlsym(h, "gm_mongo_ops");
  if (!mongo_ops)
    snprintf(mongo_err, sizeof mongo_err, "%.150s: no gm_mongo_ops", path);
}
#endif

const gm_backend_ops *gm_backend_find(const char *name, gm_error *err) {
  if (strcmp(name, "mariadb") == 0) name = "mysql";
  if (strcmp(name, "mongodb+srv") == 0) name = "mongodb";
  if (strcmp(name, "postgresql") == 0) name = "postgres";
  if (strcmp(name, "rediss") == 0) name = "redis"; /* to refuse it clearly */
  for (size_t i = 0; i < NREG; i++)
    if (strcmp(registry[i]->name, name) == 0) return registry[i];
#ifdef GM_MONGO_DLOPEN
  if (strcmp(name, "mongodb") == 0) {
    pthread_once(&mongo_once, load_mongo);
    if (!mongo_ops)
      gm_seterr(err, GM_E_BACKEND, "mongodb backend: cannot load it: %s",
                mongo_err);
    return mongo_ops;
  }
#endif
  char list[128] = "";
  for (const char *const *n = names; *n; n++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
             n == names ? "" : ", ", *n);
  gm_seterr(err, GM_E_BACKEND, "unknown backend '%.32s' (this build has: %s)",
            name, list);
  return NULL;
}
