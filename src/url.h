/* url.h: backend URL parsing (src/url.c). */
#ifndef GOMASTER_URL_H
#define GOMASTER_URL_H
#include "gomaster.h"

#define GM_URL_MAX_KV 32

/* A parsed URL: the scheme and options (see url.c). Freed by gm_url_free. */
typedef struct gm_url {
  char *scheme;
  gm_kv *kv;
  size_t n;
} gm_url;

/* raw != 0: only "url" and the query's keys. */
int gm_url_parse(const char *url, int raw, gm_url *u, gm_error *err);
void gm_url_free(gm_url *u);
#endif
