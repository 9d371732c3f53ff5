/* libFuzzer: option tables given as key/value strings (what
 * gomaster.new{backend = {type = ..., ...}} passes) through gm_backend_new,
 * i.e. each backend's parse function. Input: the first byte picks the type;
 * then lines "key=value" separated by '\n' (at most 16). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gomaster.h"

static const char *const types[] = {"sqlite", "mysql", "mongodb", "nosuch",
                                    "postgres", "redis"};
#define MAXKV 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *type = types[data[0] % (sizeof types / sizeof *types)];
  char *buf = malloc(size);
  if (!buf) return 0;
  memcpy(buf, data + 1, size - 1);
  buf[size - 1] = '\0';
  gm_kv kv[MAXKV];
  size_t n = 0;
  for (char *line = buf, *next; line && n < MAXKV; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = '\0';
    char *eq = strchr(line, '=');
    if (!eq) continue;
    *eq = '\0';
    kv[n].key = line;
    kv[n].value = eq + 1;
    n++;
  }
  gm_error err = {0};
  gm_backend *b = gm_backend_new(type, kv, n, &err);
  if (b) {
    const char *d = gm_backend_describe(b);
    if (!d || strlen(d) > 4096) abort();
    gm_backend_unref(b);
  } else if (err.code == GM_E_NONE) {
    abort();
  }
  free(buf);
  return 0;
}
