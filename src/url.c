/*
 * url.c: splits a backend URL into options.
 *
 *   scheme://[user[:password]@]host[:port][/database][?key=value&...]
 *   scheme://[user[:password]@]host1:port1,host2:port2,...[/database]...
 *                                  (a host list: "host" holds it whole)
 *   sqlite://PATH[?key=value...]     (sqlite:///var/lib/app.db is /var/lib/app.db)
 *
 * Parts are percent-decoded. Error messages never quote the URL: it may hold
 * a password. A raw '@' in the user-info is refused (url.h).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "url.h"

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes src[0..len) into a new string; NULL on a bad escape or a NUL. */
static char *pct_decode(const char *src, size_t len, int plus_is_space) {
  char *out = malloc(len + 1), *o = out;
  if (!out) return NULL;
  for (size_t i = 0; i < len; i++) {
    int c = (unsigned char)src[i];
    if (c == '%') {
      int h, l;
      if (i + 2 >= len) goto bad;
      h = hexval(src[i + 1]);
      l = hexval(src[i + 2]);
      if (h < 0 || l < 0 || (h == 0 && l == 0)) goto bad;
      *o++ = (char)(h * 16 + l);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      *o++ = ' ';
    } else {
      *o++ = (char)c;
    }
  }
  *o = '\0';
  return out;
bad:
  free(out);
  return NULL;
}

char *gm_url_decode(const char *s, size_t len) {
  return pct_decode(s, len, 0);
}

void gm_url_free(gm_url *u) {
  if (!u) return;
  for (size_t i = 0; i < u->n; i++) {
    free((char *)u->kv[i].key);
    free((char *)u->kv[i].value);
  }
  free(u->kv);
  free(u->scheme);
  u->kv = NULL;
  u->scheme = NULL;
  u->n = 0;
}

static int add(gm_url *u, const char *key, size_t klen, const char *val,
               size_t vlen, int decode, gm_error *err) {
  if (u->n == GM_URL_MAX_KV) {
    gm_seterr(err, GM_E_URL, "bad URL: too many options");
    return GM_ERR;
  }
  char *k = decode ? pct_decode(key, klen, 1) : strndup(key, klen);
  char *v = decode ? pct_decode(val, vlen, 1) : strndup(val, vlen);
  if (!k || !v) {
    free(k);
    free(v);
    gm_seterr(err, GM_E_URL, "bad URL: invalid percent-encoding");
    return GM_ERR;
  }
  for (size_t i = 0; i < u->n; i++)
    if (strcmp(u->kv[i].key, k) == 0) {
      gm_seterr(err, GM_E_URL, "bad URL: option '%.64s' given twice", k);
      free(k);
      free(v);
      return GM_ERR;
    }
  u->kv[u->n].key = k;
  u->kv[u->n].value = v;
  u->n++;
  return GM_OK;
}

static int parse_query(gm_url *u, const char *q, gm_error *err) {
  while (*q) {
    size_t len = strcspn(q, "&");
    const char *eq = memchr(q, '=', len);
    if (len > 0) {
      if (!eq || eq == q) {
        gm_seterr(err, GM_E_URL, "bad URL: query part is not key=value");
        return GM_ERR;
      }
      if (add(u, q, (size_t)(eq - q), eq + 1, len - (size_t)(eq - q) - 1, 1,
              err))
        return GM_ERR;
    }
    q += len;
    if (*q == '&') q++;
  }
  return GM_OK;
}

int gm_url_parse(const char *url, int raw, gm_url *u, gm_error *err) {
  memset(u, 0, sizeof *u);
  u->kv = calloc(GM_URL_MAX_KV, sizeof *u->kv);
  if (!u->kv) {
    gm_seterr(err, GM_E_NOMEM, "out of memory");
    return GM_ERR;
  }
  const char *sep = strstr(url, "://");
  size_t slen = sep ? (size_t)(sep - url) : 0;
  int ok = slen > 0 && slen < 32 && isalpha((unsigned char)url[0]);
  for (size_t i = 0; ok && i < slen; i++)
    ok = isalnum((unsigned char)url[i]) || url[i] == '+' || url[i] == '-' ||
         url[i] == '.';
  if (!ok) {
    gm_seterr(err, GM_E_URL,
              "bad URL: expected scheme://..., such as sqlite:///path/file.db");
    goto fail;
  }
  u->scheme = strndup(url, slen);
  if (!u->scheme) goto nomem;
  for (char *p = u->scheme; *p; p++) *p = (char)tolower((unsigned char)*p);
  if (add(u, "url", 3, url, strlen(url), 0, err)) goto fail;

  if (strcmp(u->scheme, "sqlite") != 0 && gm_url_raw_at(url)) {
    gm_seterr(err, GM_E_URL, "%s", GM_URL_AT_MSG);
    goto fail;
  }
  const char *rest = sep + 3;
  const char *qmark = strchr(rest, '?');
  size_t rlen = qmark ? (size_t)(qmark - rest) : strlen(rest);
  if (qmark && parse_query(u, qmark + 1, err)) goto fail;
  if (raw) return GM_OK;

  if (strcmp(u->scheme, "sqlite") == 0) {
    if (rlen == 0) {
      gm_seterr(err, GM_E_URL, "bad URL: sqlite:// needs a file path, such "
                               "as sqlite:///var/lib/app/gomaster.db");
      goto fail;
    }
    return add(u, "path", 4, rest, rlen, 1, err) ? (gm_url_free(u), GM_ERR)
                                                  : GM_OK;
  }

  /* authority: [user[:password]@]host[:port] */
  const char *slash = memchr(rest, '/', rlen);
  size_t alen = slash ? (size_t)(slash - rest) : rlen;
  const char *at = NULL;
  for (size_t i = alen; i > 0; i--)
    if (rest[i - 1] == '@') {
      at = rest + i - 1;
      break;
    }
  const char *host = rest;
  if (at) {
    const char *colon = memchr(rest, ':', (size_t)(at - rest));
    size_t ulen = colon ? (size_t)(colon - rest) : (size_t)(at - rest);
    if (ulen && add(u, "user", 4, rest, ulen, 1, err)) goto fail;
    if (colon && add(u, "password", 8, colon + 1, (size_t)(at - colon - 1), 1,
                     err))
      goto fail;
    host = at + 1;
  }
  size_t hlen = (size_t)(rest + alen - host);
  const char *pcolon = NULL;
  if (hlen && host[0] == '[') { /* [v6]:port */
    const char *close = memchr(host, ']', hlen);
    if (!close) {
      gm_seterr(err, GM_E_URL, "bad URL: unterminated [ in host");
      goto fail;
    }
    if (close + 1 < host + hlen) {
      if (close[1] != ':') {
        gm_seterr(err, GM_E_URL, "bad URL: junk after ] in host");
        goto fail;
      }
      pcolon = close + 1;
    }
    if (add(u, "host", 4, host + 1, (size_t)(close - host - 1), 1, err))
      goto fail;
  } else if (memchr(host, ',', hlen)) { /* h1:p1,h2:p2: the backend splits */
    if (add(u, "host", 4, host, hlen, 1, err)) goto fail;
  } else {
    pcolon = memchr(host, ':', hlen);
    size_t hl = pcolon ? (size_t)(pcolon - host) : hlen;
    if (hl && add(u, "host", 4, host, hl, 1, err)) goto fail;
  }
  if (pcolon) {
    size_t plen = (size_t)(host + hlen - pcolon - 1);
    int good = plen > 0 && plen <= 5;
    long port = 0;
    for (size_t i = 0; good && i < plen; i++) {
      good = isdigit((unsigned char)pcolon[1 + i]);
      port = port * 10 + (pcolon[1 + i] - '0');
    }
    if (!good || port < 1 || port > 65535) {
      gm_seterr(err, GM_E_URL, "bad URL: port must be a number 1-65535");
      goto fail;
    }
    if (add(u, "port", 4, pcolon + 1, plen, 0, err)) goto fail;
  }
  if (slash && rlen > alen + 1 &&
      add(u, "database", 8, slash + 1, rlen - alen - 1, 1, err))
    goto fail;
  return GM_OK;
nomem:
  gm_seterr(err, GM_E_NOMEM, "out of memory");
fail:
  gm_url_free(u);
  return GM_ERR;
}
