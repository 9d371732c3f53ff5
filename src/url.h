/* url.h: backend URL parsing (src/url.c). */
#ifndef GOMASTER_URL_H
#define GOMASTER_URL_H
#include <string.h>

#include "gomaster.h"

#define GM_URL_MAX_KV 32

/* A parsed URL: the scheme and options (see url.c). Freed by gm_url_free. */
typedef struct gm_url {
  char *scheme;
  gm_kv *kv;
  size_t n;
} gm_url;

/* The one rule for the user-info part of every URL
 * (scheme://user:password@host...): a raw '@' in it is refused, so that no
 * reader can split it elsewhere than another (the last '@' here, the first
 * in some client libraries) and show a piece of the password as a host.
 * gm_url_raw_at(url) is 1 when the authority (after "://", up to '/', '?'
 * or '#') holds more than one '@'; GM_URL_AT_MSG says what to do. */
#define GM_URL_AT_MSG                                                         \
  "bad URL: a raw '@' in the user name or password: percent-encode it as %40"
static inline int gm_url_raw_at(const char *url) {
  const char *a = strstr(url, "://");
  int n = 0;
  if (!a) return 0;
  for (a += 3; *a && *a != '/' && *a != '?' && *a != '#'; a++) n += *a == '@';
  return n > 1;
}

/* raw != 0: only "url" and the query's keys. sqlite: no user-info. */
int gm_url_parse(const char *url, int raw, gm_url *u, gm_error *err);
void gm_url_free(gm_url *u);
/* s[0..len) percent-decoded ('+' kept), freed by the caller; NULL on a bad
 * escape, a NUL or no memory. */
char *gm_url_decode(const char *s, size_t len);
#endif
