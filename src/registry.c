/* registry.c: the backends this build has. One line per backend. */
#include <string.h>

#include "backend.h"

extern const gm_backend_ops gm_sqlite_ops;
#ifdef GM_WITH_MYSQL
extern const gm_backend_ops gm_mysql_ops;
#endif
#ifdef GM_WITH_MONGO
extern const gm_backend_ops gm_mongo_ops;
#endif

static const gm_backend_ops *const registry[] = {
    &gm_sqlite_ops,
#ifdef GM_WITH_MYSQL
    &gm_mysql_ops,
#endif
#ifdef GM_WITH_MONGO
    &gm_mongo_ops,
#endif
};
#define NREG (sizeof registry / sizeof registry[0])

static const char *const names[] = {
    "sqlite",
#ifdef GM_WITH_MYSQL
    "mysql",
#endif
#ifdef GM_WITH_MONGO
    "mongodb",
#endif
    NULL};

const char *const *gm_backend_names(void) { return names; }

const gm_backend_ops *gm_backend_find(const char *name) {
  if (strcmp(name, "mariadb") == 0) name = "mysql";
  if (strcmp(name, "mongodb+srv") == 0) name = "mongodb";
  for (size_t i = 0; i < NREG; i++)
    if (strcmp(registry[i]->name, name) == 0) return registry[i];
  return NULL;
}
