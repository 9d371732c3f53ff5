/* util.c: errors, option lookup and validation shared by the backends. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend.h"
#include "timeutil.h"

void gm_seterr(gm_error *err, int code, const char *fmt, ...) {
  if (!err) return;
  va_list ap;
  va_start(ap, fmt);
  err->code = code;
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
}

int gm_nomem(gm_error *err) {
  gm_seterr(err, GM_E_NOMEM, "out of memory");
  return GM_ERR;
}

void gm_scrub(char *dst, size_t len, const char *msg, const char *secret) {
  char tmp[1024];
  size_t sl = secret ? strlen(secret) : 0, o = 0;
  if (len == 0) return;
  if (len > sizeof tmp) len = sizeof tmp;
  if (!msg) msg = "(no message)";
  while (*msg && o + 1 < len) {
    if (sl > 0 && strncmp(msg, secret, sl) == 0) {
      for (const char *r = "***"; *r && o + 1 < len; r++) tmp[o++] = *r;
      msg += sl;
    } else {
      tmp[o++] = (*msg == '\n' || *msg == '\t' || *msg == '\r') ? ' ' : *msg;
      msg++;
    }
  }
  tmp[o] = '\0';
  memcpy(dst, tmp, o + 1);
}

void gm_row_written(gm_row *out, const char *owner, const char *version,
                    uint64_t token, int64_t acquired_at, int64_t now,
                    int64_t lease_us) {
  memset(out, 0, sizeof *out);
  out->exists = 1;
  gm_strlcpy(out->owner, owner, sizeof out->owner);
  gm_strlcpy(out->version, version ? version : "", sizeof out->version);
  out->token = token;
  out->acquired_at = acquired_at;
  out->renewed_at = now;
  out->expires_at = now + lease_us;
  out->now = now;
  out->holder = -1;
}

int gm_strlcpy(char *dst, const char *src, size_t n) {
  size_t len = strlen(src);
  if (n == 0) return GM_ERR;
  if (len >= n) {
    memcpy(dst, src, n - 1);
    dst[n - 1] = '\0';
    return GM_ERR;
  }
  memcpy(dst, src, len + 1);
  return GM_OK;
}

const char *gm_kv_get(const gm_kv *opts, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(opts[i].key, key) == 0) return opts[i].value;
  return NULL;
}

int gm_kv_check_keys(const gm_kv *opts, size_t n, const char *const *allowed,
                     const char *backend, gm_error *err) {
  for (size_t i = 0; i < n; i++) {
    int ok = 0;
    for (const char *const *a = allowed; *a && !ok; a++)
      ok = strcmp(*a, opts[i].key) == 0;
    if (!ok) {
      gm_seterr(err, GM_E_ARG, "%s backend: unknown option '%.64s'", backend,
                opts[i].key);
      return GM_ERR;
    }
  }
  return GM_OK;
}

int gm_kv_seconds(const gm_kv *opts, size_t n, const char *key,
                  int64_t dflt_us, int64_t *out_us, gm_error *err) {
  const char *v = gm_kv_get(opts, n, key);
  if (!v) {
    *out_us = dflt_us;
    return GM_OK;
  }
  char *end;
  errno = 0;
  double s = strtod(v, &end);
  if (end == v || *end != '\0' || errno || !isfinite(s) || s <= 0 ||
      s > 86400) {
    gm_seterr(err, GM_E_ARG,
              "option '%.64s': expected seconds > 0 and <= 86400, got '%.32s'",
              key, v);
    return GM_ERR;
  }
  *out_us = gm_s_to_us(s); /* seconds end here: µs from now on */
  return GM_OK;
}

int gm_check_identifier(const char *field, const char *value, gm_error *err) {
  size_t len = strlen(value);
  int ok = len > 0 && len <= 64 &&
           (isalpha((unsigned char)value[0]) || value[0] == '_');
  for (size_t i = 1; ok && i < len; i++)
    ok = isalnum((unsigned char)value[i]) || value[i] == '_';
  if (!ok) {
    gm_seterr(err, GM_E_ARG,
              "option '%s': not a valid name (letters, digits and '_', "
              "1 to 64, not starting with a digit)",
              field);
    return GM_ERR;
  }
  return GM_OK;
}

int gm_kv_dup(const gm_kv *opts, size_t n, const char *key, const char *dflt,
              char **dst, gm_error *err) {
  const char *v = gm_kv_get(opts, n, key);
  if (!v) v = dflt;
  if (!v) return GM_OK;
  if (!(*dst = strdup(v))) {
    gm_seterr(err, GM_E_NOMEM, "out of memory");
    return GM_ERR;
  }
  return GM_OK;
}

int gm_check_len(const char *backend, const char *what, const char *s,
                 size_t max, gm_error *err) {
  if (strlen(s) <= max) return GM_OK;
  gm_seterr(err, GM_E_ARG, "%s: %s longer than %zu bytes", backend, what, max);
  return GM_ERR;
}

void gm_free_secret(char *s) {
  if (!s) return;
  /* do not leave it in freed memory */
  for (volatile char *p = s; *p; p++) *p = 0;
  free(s);
}

int gm_kv_int(const gm_kv *opts, size_t n, const char *key, long lo, long hi,
              int dflt, int *out, const char *backend, gm_error *err) {
  const char *v = gm_kv_get(opts, n, key);
  *out = dflt;
  if (!v) return GM_OK;
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (!isdigit((unsigned char)*v) || *end || errno || x < lo || x > hi) {
    gm_seterr(err, GM_E_ARG,
              "%s backend: option '%s': expected a whole number %ld-%ld, "
              "got '%.32s'",
              backend, key, lo, hi, v);
    return GM_ERR;
  }
  *out = (int)x;
  return GM_OK;
}

int gm_kv_choice(const gm_kv *opts, size_t n, const char *key,
                 const char *const *names, int dflt, int *out,
                 const char *backend, gm_error *err) {
  const char *v = gm_kv_get(opts, n, key);
  char list[256];
  size_t o = 0;
  *out = dflt;
  if (!v) return GM_OK;
  for (int i = 0; names[i]; i++) {
    if (strcasecmp(v, names[i]) == 0) {
      *out = i;
      return GM_OK;
    }
    if (o < sizeof list)
      o += (size_t)snprintf(list + o, sizeof list - o, "%s%s",
                            i == 0 ? "" : names[i + 1] ? ", " : " or ",
                            names[i]);
  }
  gm_seterr(err, GM_E_ARG, "%s backend: option '%s': expected %s, got '%.32s'",
            backend, key, list, v);
  return GM_ERR;
}

int gm_bad_column(gm_error *err, const char *backend, const char *lock,
                  const char *table, const char *column, const char *what) {
  gm_seterr(err, GM_E_ROW, "%s: lock '%.64s' in table '%s': column '%s' %s",
            backend, lock, table, column, what);
  return GM_ERR;
}

int gm_opts_read(const gm_opt *spec, const gm_kv *opts, size_t n, void *cfg,
                 const char *backend, gm_error *err) {
  for (size_t i = 0; i < n; i++) {
    const gm_opt *o = spec;
    while (o->key && strcmp(o->key, opts[i].key) != 0) o++;
    if (!o->key) {
      gm_seterr(err, GM_E_ARG, "%s backend: unknown option '%.64s'", backend,
                opts[i].key);
      return GM_ERR;
    }
  }
  for (const gm_opt *o = spec; o->key; o++) {
    const char *v = gm_kv_get(opts, n, o->key);
    gm_kv one = {o->key, v ? v : o->dflt}; /* one option, or none */
    size_t k = one.value != NULL;
    void *at = (char *)cfg + o->off;
    int64_t us = 0;
    int rc = GM_OK;
    if (!k && o->required) {
      gm_seterr(err, GM_E_ARG, "%s backend: option '%s' is required, as in %s",
                backend, o->key, o->required);
      return GM_ERR;
    }
    switch (o->kind) {
    case GM_OPT_KNOWN:
      break;
    case GM_OPT_STR:
    case GM_OPT_SECRET:
    case GM_OPT_NAME:
      rc = gm_kv_dup(&one, k, o->key, NULL, at, err);
      if (!rc && k && o->kind == GM_OPT_NAME)
        rc = gm_check_identifier(o->key, one.value, err);
      break;
    case GM_OPT_INT:
      rc = gm_kv_int(&one, k, o->key, o->lo, o->hi, 0, at, backend, err);
      break;
    case GM_OPT_US:
      rc = gm_kv_seconds(&one, k, o->key, 0, at, err);
      break;
    case GM_OPT_WHOLE_S:
      rc = gm_kv_seconds(&one, k, o->key, 0, &us, err);
      *(unsigned *)at = (unsigned)((us + GM_US_PER_S - 1) / GM_US_PER_S);
      break;
    case GM_OPT_CHOICE:
      rc = gm_kv_choice(&one, k, o->key, o->names, -1, at, backend, err);
      break;
    }
    if (rc) return GM_ERR;
  }
  return GM_OK;
}

void gm_opts_free(const gm_opt *spec, void *cfg) {
  for (const gm_opt *o = spec; o->key; o++) {
    if (o->kind != GM_OPT_SECRET && o->kind != GM_OPT_STR &&
        o->kind != GM_OPT_NAME)
      continue; /* only a string field holds a pointer */
    char *s = *(char **)(void *)((char *)cfg + o->off);
    if (o->kind == GM_OPT_SECRET) gm_free_secret(s);
    else free(s);
  }
}
