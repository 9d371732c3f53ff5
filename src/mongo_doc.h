/*
 * mongo_doc.h: lock documents as gm_rows (src/mongo_doc.c), for the MongoDB
 * backend. Document layout: the header of backends/mongo.c.
 */
#ifndef GOMASTER_MONGO_DOC_H
#define GOMASTER_MONGO_DOC_H

#include <mongoc/mongoc.h>

#include "backend.h"

/* doc[key] as µs when it is a date (clamped to +-2^62), else 0. */
int64_t gm_mdoc_date_us(const bson_t *doc, const char *key);
/* doc[key] into dst (of size n, always terminated) when it is a string,
 * else "". */
void gm_mdoc_utf8(const bson_t *doc, const char *key, char *dst, size_t n);
/* The lock document doc as *out (exists = 1; a field missing or of another
 * type reads as 0 or ""). */
void gm_mdoc_read(const bson_t *doc, gm_row *out);
/* GM_OK when the fields the election reads each hold their type; else
 * GM_ERR (GM_E_ROW) naming the lock and the field: a document edited by
 * hand (owner missing or null, a token that is a double, a string or
 * negative, a date that is text). */
int gm_mdoc_check(const bson_t *doc, const char *name, gm_error *err);

#endif
