/* schema.h: the lock table's columns, and the check of a table made
 * beforehand (src/schema.c). */
#ifndef GM_SCHEMA_H
#define GM_SCHEMA_H

#include <stdint.h>

#include "backend.h"

enum gm_col_kind {
  GM_COL_TIME, /* a time of microseconds */
  GM_COL_U64,  /* a 64-bit integer */
  GM_COL_TEXT, /* bytes or characters: at least len of them */
};

typedef struct gm_col {
  const char *name; /* NULL ends a list */
  enum gm_col_kind kind;
  unsigned len;
} gm_col;

/* What every SQL backend's table holds, in the order of CREATE TABLE. */
extern const gm_col gm_lock_columns[];

/* A column as the database describes it; the fields a database lacks are
 * NULL or 0. */
typedef struct gm_col_seen {
  const char *name;  /* as the table spells it */
  const char *type;  /* the type's name, for the predicate */
  const char *shown; /* the type as errors show it */
  const char *extra; /* more of the type, for the predicate */
  long long prec, len;
} gm_col_seen;

/* A database's rules for a table made beforehand. */
typedef struct gm_schema {
  const char *table;
  const gm_col *cols; /* the columns checked */
  /* 1 when seen keeps what want needs. 0 otherwise, and the type expected
   * in buf; seen is NULL when the column is missing (buf only). NULL:
   * gm_fits by types. */
  int (*fits)(const gm_col *want, const gm_col_seen *seen, char *buf,
              size_t len);
  const char *misfit;  /* format: table, column, type seen, type expected */
  const char *missing; /* format: table, column, type expected; NULL: a
                        * missing column is left to the statements */
  int exact_case;      /* names compare with case (else without) */
  const struct gm_coltype *types; /* for gm_fits, when fits is NULL */
} gm_schema;

/* What a column of one kind may be in one database, for gm_fits. */
typedef struct gm_coltype {
  const char *types;  /* the type names that fit, each between '|' (any case) */
  const char *want;   /* the type as errors name it; %u: the width needed */
  int prec;           /* the least precision (a negative one seen: the
                       * database's default, taken as enough) */
  int wide;           /* the width seen must reach the column's len */
  const char *banned; /* NULL, or what the type's extra must not hold */
} gm_coltype;

/* A gm_schema.fits by a table of gm_coltype indexed by kind. */
int gm_fits(const gm_coltype *types, const gm_col *want,
            const gm_col_seen *seen, char *buf, size_t len);

/* A check in progress: gm_cols_see for each column the table has (GM_ERR
 * at the first that does not fit, err naming it), then gm_cols_end (GM_ERR
 * for the first column missing, when the table had any). */
typedef struct gm_colcheck {
  const gm_schema *s;
  uint64_t seen; /* bit i: s->cols[i] was there */
  int any;
} gm_colcheck;

void gm_cols_begin(gm_colcheck *k, const gm_schema *s);
int gm_cols_see(gm_colcheck *k, const gm_col_seen *col, gm_error *err);
int gm_cols_end(gm_colcheck *k, gm_error *err);

#endif
