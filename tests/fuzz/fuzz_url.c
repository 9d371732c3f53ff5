/* libFuzzer: backend URLs (src/url.c and each backend's parse) through
 * gm_backend_new_url. The first byte picks a scheme to put in front, so every
 * backend's parser is reached as well as the generic one; the rest is the
 * URL after it. No I/O: a backend object only validates its options. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gomaster.h"

static const char *const schemes[] = {"", "sqlite://", "mysql://",
                                      "mongodb://", "MySQL://", "postgresql://",
                                      "postgres://", "redis://", "rediss://"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *scheme = schemes[data[0] % (sizeof schemes / sizeof *schemes)];
  size_t sl = strlen(scheme), n = size - 1;
  char *url = malloc(sl + n + 1);
  if (!url) return 0;
  memcpy(url, scheme, sl);
  memcpy(url + sl, data + 1, n);
  url[sl + n] = '\0'; /* an embedded NUL just ends the URL early */
  gm_error err = {0};
  gm_backend *b = gm_backend_new_url(url, &err);
  if (b) {
    const char *d = gm_backend_describe(b);
    if (!d || strlen(d) > 4096) abort();
    gm_backend_unref(b);
  } else if (err.code == GM_E_NONE || !memchr(err.msg, '\0', sizeof err.msg)) {
    abort(); /* a failure must say what failed */
  }
  free(url);
  return 0;
}
