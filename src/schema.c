/*
 * schema.c: the lock table's columns, and the check of a table made
 * beforehand, for the SQL backends.
 *
 * A table made beforehand (by hand, by another tool, by an old version)
 * must keep the guarantee: whole-second times would round renewals (two
 * masters for up to a second), a narrow token would wrap. Each backend
 * reads its table's columns from its catalog and feeds them here; the
 * list of columns and the order of the checks are here, the database's
 * types in the backend's predicate (gm_schema.fits). Columns beyond the
 * list are someone else's: accepted. A new column is one line in
 * gm_lock_columns.
 *
 * No state is shared: a check lives on its caller's stack.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "schema.h"

_Static_assert(GM_ID_MAX == 128 && GM_RESULT_MAX == 256 && GM_NAME_MAX == 192,
               "the backends' CREATE TABLE spells these lengths out");

const gm_col gm_lock_columns[] = {
    {"name", GM_COL_TEXT, GM_NAME_MAX - 1},
    {"owner", GM_COL_TEXT, GM_ID_MAX - 1},
    {"token", GM_COL_U64, 0},
    {"version", GM_COL_TEXT, GM_ID_MAX - 1},
    {"acquired_at", GM_COL_TIME, 0},
    {"renewed_at", GM_COL_TIME, 0},
    {"expires_at", GM_COL_TIME, 0},
    {"done_at", GM_COL_TIME, 0},
    {"done_by", GM_COL_TEXT, GM_ID_MAX - 1},
    {"done_token", GM_COL_U64, 0},
    {"result", GM_COL_TEXT, GM_RESULT_MAX - 1},
    {"instance", GM_COL_U64, 0},
    {NULL, GM_COL_U64, 0},
};

/* 1 when type is one of the '|'-separated names of list, in any case. */
static int listed(const char *list, const char *type) {
  size_t len = strlen(type);
  for (const char *p = list; (p = strchr(p, '|')) && p[1]; p++)
    if (strncasecmp(p + 1, type, len) == 0 && p[1 + len] == '|') return 1;
  return 0;
}

int gm_fits(const gm_coltype *types, const gm_col *w, const gm_col_seen *s,
            char *buf, size_t len) {
  const gm_coltype *t = &types[w->kind];
  snprintf(buf, len, t->want, w->len);
  return s && listed(t->types, s->type) && (s->prec < 0 || s->prec >= t->prec) &&
         (!t->wide || s->len >= w->len) &&
         !(t->banned && s->extra && strstr(s->extra, t->banned));
}

/* s's predicate on column i: its own, or gm_fits by its types. */
static int fit(const gm_schema *s, int i, const gm_col_seen *seen, char *buf,
               size_t len) {
  return s->fits ? s->fits(&s->cols[i], seen, buf, len)
                 : gm_fits(s->types, &s->cols[i], seen, buf, len);
}

void gm_cols_begin(gm_colcheck *k, const gm_schema *s) {
  k->s = s;
  k->seen = 0;
  k->any = 0;
}

int gm_cols_see(gm_colcheck *k, const gm_col_seen *col, gm_error *err) {
  const gm_schema *s = k->s;
  k->any = 1;
  for (int i = 0; col->name && s->cols[i].name && i < 64; i++) {
    if (s->exact_case ? strcmp(col->name, s->cols[i].name) != 0
                      : strcasecmp(col->name, s->cols[i].name) != 0)
      continue;
    char want[96];
    k->seen |= 1ull << i;
    if (!fit(s, i, col, want, sizeof want)) {
      gm_seterr(err, GM_E_DB, s->misfit, s->table, col->name,
                col->shown ? col->shown : "?", want);
      return GM_ERR;
    }
  }
  return GM_OK;
}

int gm_cols_end(gm_colcheck *k, gm_error *err) {
  const gm_schema *s = k->s;
  for (int i = 0; s->missing && k->any && s->cols[i].name && i < 64; i++)
    if (!(k->seen & (1ull << i))) {
      char want[96];
      fit(s, i, NULL, want, sizeof want);
      gm_seterr(err, GM_E_DB, s->missing, s->table, s->cols[i].name, want);
      return GM_ERR;
    }
  return GM_OK;
}
