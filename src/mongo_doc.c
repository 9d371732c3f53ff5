/*
 * mongo_doc.c: lock documents of the MongoDB backend (backends/mongo.c) as
 * gm_rows: what is read back from the server (or whatever answers on its
 * port) is read defensively, and tests/fuzz/fuzz_mongo_doc.c fuzzes it.
 */
#include <string.h>

#include "backend.h"
#include "mongo_doc.h"

/* A stored date far outside any lease (a damaged document) is clamped to
 * +-2^62 us, so neither this conversion nor a difference of two such times
 * overflows. */
#define DATE_US_LIMIT ((int64_t)1 << 62)
int64_t gm_mdoc_date_us(const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_DATE_TIME(&it)) {
    int64_t ms = bson_iter_date_time(&it);
    if (ms > DATE_US_LIMIT / 1000) return DATE_US_LIMIT;
    if (ms < -DATE_US_LIMIT / 1000) return -DATE_US_LIMIT;
    return ms * 1000;
  }
  return 0;
}

void gm_mdoc_utf8(const bson_t *doc, const char *key, char *dst, size_t n) {
  bson_iter_t it;
  dst[0] = '\0';
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
    gm_strlcpy(dst, bson_iter_utf8(&it, NULL), n);
}

/* A number field as int64 (0 when missing or not a number). */
static int64_t num(const bson_t *doc, const char *key) {
  bson_iter_t it;
  return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it)
             ? bson_iter_as_int64(&it)
             : 0;
}

void gm_mdoc_read(const bson_t *doc, gm_row *out) {
  bson_iter_t it;
  memset(out, 0, sizeof *out);
  out->exists = 1;
  gm_mdoc_utf8(doc, "owner", out->owner, sizeof out->owner);
  gm_mdoc_utf8(doc, "version", out->version, sizeof out->version);
  gm_mdoc_utf8(doc, "done_by", out->done_by, sizeof out->done_by);
  gm_mdoc_utf8(doc, "result", out->result, sizeof out->result);
  out->token = (uint64_t)num(doc, "token");
  out->done_token = (uint64_t)num(doc, "done_token");
  out->acquired_at = gm_mdoc_date_us(doc, "acquired_at");
  out->renewed_at = gm_mdoc_date_us(doc, "renewed_at");
  out->expires_at = gm_mdoc_date_us(doc, "expires_at");
  out->done_at = gm_mdoc_date_us(doc, "done_at");
  if (bson_iter_init_find(&it, doc, "instance") && BSON_ITER_HOLDS_INT64(&it))
    out->instance = (uint64_t)bson_iter_int64(&it);
}

int gm_mdoc_check(const bson_t *doc, const char *name, gm_error *err) {
  static const char *const field[] = {"owner", "token", "instance",
                                      "acquired_at", "renewed_at",
                                      "expires_at"};
  static const char *const want[] = {"a string",
                                     "a non-negative 64-bit integer",
                                     "a 64-bit integer", "a date"};
  bson_iter_t it;
  for (int i = 0; i < 6; i++) {
    int has = bson_iter_init_find(&it, doc, field[i]);
    int ok = i == 0   ? has && BSON_ITER_HOLDS_UTF8(&it)
             : i == 1 ? has && (BSON_ITER_HOLDS_INT64(&it) ||
                                BSON_ITER_HOLDS_INT32(&it)) &&
                            bson_iter_as_int64(&it) >= 0
             : i == 2 ? !has || BSON_ITER_HOLDS_INT64(&it)
                      : has && BSON_ITER_HOLDS_DATE_TIME(&it);
    if (!ok) {
      gm_seterr(err, GM_E_ROW, "mongodb backend: lock '%.64s': field '%s' "
                "is missing or not %s", name, field[i], want[i < 3 ? i : 3]);
      return GM_ERR;
    }
  }
  return GM_OK;
}
