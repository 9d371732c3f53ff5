/*
 * test_shared.c: what the backends share, without a database: host lists
 * (src/hosts.c), the check of a table made beforehand (src/schema.c) and
 * the option readers of src/util.c. One line per check, then "N passed, N
 * failed".
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "hosts.h"
#include "schema.h"

#define N(a) (sizeof(a) / sizeof(a)[0])

static int parse(gm_hosts *h, const gm_kv *kv, size_t n, gm_error *err) {
  memset(err, 0, sizeof *err);
  return gm_hosts_parse(h, kv, n, "test", "localhost", 3306, err);
}

static void test_host_lists(void) {
  gm_hosts h;
  gm_error err;
  gm_kv none[1] = {{"unused", ""}};
  check(parse(&h, none, 0, &err) == GM_OK && h.n == 1 &&
            strcmp(h.hosts[0], "localhost") == 0 && h.ports[0] == 3306,
        "no host: the default host and port");
  gm_hosts_free(&h);

  gm_kv list[] = {{"host", "h1:1,[::1]:2,h3"}};
  check(parse(&h, list, 1, &err) == GM_OK && h.n == 3 &&
            strcmp(h.hosts[1], "::1") == 0 && h.ports[1] == 2 &&
            strcmp(h.hosts[2], "h3") == 0 && h.ports[2] == 3306,
        "a list: v6 in brackets, a host without a port takes the port");
  char buf[128];
  gm_hosts_put(&h, buf, sizeof buf, "/db");
  check(strcmp(buf, "h1:1,[::1]:2,h3:3306/db") == 0,
        "described before any open: %s", buf);
  gm_hosts_free(&h);

  gm_kv both[] = {{"host", "a"}, {"hosts", "b"}};
  check(parse(&h, both, 2, &err) == GM_ERR && err.code == GM_E_ARG &&
            strstr(err.msg, "'host' and 'hosts' both given"),
        "host and hosts both given: %s", err.msg);
  gm_hosts_free(&h);

  gm_kv bad[] = {{"hosts", "a:1,b:x"}};
  check(parse(&h, bad, 1, &err) == GM_ERR &&
            strstr(err.msg, "option 'hosts': item 2 is not host"),
        "a bad item named by place: %s", err.msg);
  gm_hosts_free(&h);

  gm_kv many[] = {{"host", "a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a"}};
  check(parse(&h, many, 1, &err) == GM_ERR && strstr(err.msg, "more than 16"),
        "17 hosts refused: %s", err.msg);
  gm_hosts_free(&h);

  gm_kv empty[] = {{"host", ""}};
  check(parse(&h, empty, 1, &err) == GM_ERR &&
            strstr(err.msg, "option 'host' is empty"),
        "an empty host refused: %s", err.msg);
  gm_hosts_free(&h);
}

/* gm_hosts_open's callback: host i answers when i >= *ok_from. */
static int answers_from(void *p, unsigned i, gm_error *err) {
  int *ok_from = p;
  if ((int)i >= *ok_from) return GM_OK;
  gm_seterr(err, *ok_from == 99 ? GM_E_AUTH : GM_E_CONNECT, "host %u", i);
  return GM_ERR;
}

static void test_host_rotation(void) {
  gm_hosts h;
  gm_error err;
  gm_kv list[] = {{"hosts", "a,b,c"}};
  parse(&h, list, 1, &err);
  int ok_from = 1;
  char buf[128];
  check(gm_hosts_open(&h, answers_from, &ok_from, &err) == GM_OK,
        "the second host answers");
  gm_hosts_put(&h, buf, sizeof buf, "");
  check(strstr(buf, " (on b:3306)") != NULL, "described on it: %s", buf);
  gm_hosts_failed(&h, 1);
  ok_from = 0;
  gm_hosts_open(&h, answers_from, &ok_from, &err);
  gm_hosts_put(&h, buf, sizeof buf, "");
  check(strstr(buf, " (on c:3306)") != NULL,
        "after a failure the next open starts at the next host: %s", buf);
  ok_from = 99;
  check(gm_hosts_open(&h, answers_from, &ok_from, &err) == GM_ERR &&
            strcmp(err.msg, "host 2") == 0,
        "refused credentials end the round at the first host: %s", err.msg);
  gm_hosts_free(&h);
}

/* gm_hosts_open_ranked's callback: host i has rank ranks[i] (-1: it does
 * not answer); opens are counted. */
typedef struct ranked {
  int ranks[3];
  int opens;
} ranked;

static int open_rank(void *p, unsigned i, int any, unsigned *rank,
                     gm_error *err) {
  ranked *r = p;
  r->opens++;
  if (r->ranks[i] < 0) {
    gm_seterr(err, GM_E_CONNECT, "host %u", i);
    return GM_ERR;
  }
  *rank = (unsigned)r->ranks[i];
  return *rank == 0 || any ? GM_OK : GM_NOT;
}

static void test_host_ranks(void) {
  gm_hosts h;
  gm_error err;
  char buf[128];
  gm_kv list[] = {{"hosts", "a,b,c"}};
  parse(&h, list, 1, &err);
  ranked r = {{2, 1, 0}, 0};
  int rc = gm_hosts_open_ranked(&h, open_rank, &r, &err);
  check(rc == GM_OK && r.opens == 3, "a ranked open goes down the list to the host of rank 0 (%d opens)",
        r.opens);
  gm_hosts_put(&h, buf, sizeof buf, "");
  check(strstr(buf, " (on c:3306)") != NULL, "and keeps it: %s", buf);
  r.opens = 0;
  gm_hosts_open_ranked(&h, open_rank, &r, &err);
  check(r.opens == 1, "the next open starts there (%d opens)", r.opens);
  ranked lost = {{2, 1, -1}, 0};
  rc = gm_hosts_open_ranked(&h, open_rank, &lost, &err);
  check(rc == GM_OK && lost.opens == 4,
        "without rank 0, the lowest rank that answered is opened again (%d "
        "opens)", lost.opens);
  gm_hosts_put(&h, buf, sizeof buf, "");
  check(strstr(buf, " (on b:3306)") != NULL, "and kept: %s", buf);
  ranked none = {{-1, -1, -1}, 0};
  rc = gm_hosts_open_ranked(&h, open_rank, &none, &err);
  check(rc == GM_ERR && none.opens == 3 && strncmp(err.msg, "host ", 5) == 0,
        "no host answers: the last error (%s)", err.msg);
  gm_hosts_free(&h);
  gm_kv one[] = {{"host", "a"}};
  parse(&h, one, 1, &err);
  ranked solo = {{3, -1, -1}, 0};
  rc = gm_hosts_open_ranked(&h, open_rank, &solo, &err);
  check(rc == GM_OK && solo.opens == 1,
        "one host alone is kept whatever its rank (%d opens)", solo.opens);
  gm_hosts_free(&h);
}

/* A predicate for tests: a column fits when its type is the kind's name. */
static int fits(const gm_col *w, const gm_col_seen *s, char *want,
                size_t len) {
  static const char *const names[] = {
      [GM_COL_TIME] = "time", [GM_COL_U64] = "u64", [GM_COL_TEXT] = "text"};
  snprintf(want, len, "%s", names[w->kind]);
  return s && strcmp(s->type, names[w->kind]) == 0;
}

static int check_table(const gm_col_seen *cols, size_t n, int exact,
                       const char *missing, gm_error *err) {
  const gm_schema s = {"t", gm_lock_columns, fits,
                       "table %s: column %s is %s; expected %s", missing,
                       exact, NULL};
  gm_colcheck k;
  gm_cols_begin(&k, &s);
  memset(err, 0, sizeof *err);
  for (size_t i = 0; i < n; i++)
    if (gm_cols_see(&k, &cols[i], err)) return GM_ERR;
  return gm_cols_end(&k, err);
}

static void test_schema(void) {
  gm_col_seen cols[16];
  size_t n = 0;
  gm_error err;
  for (const gm_col *c = gm_lock_columns; c->name; c++)
    cols[n++] = (gm_col_seen){.name = c->name,
                              .type = c->kind == GM_COL_TIME  ? "time"
                                      : c->kind == GM_COL_U64 ? "u64"
                                                              : "text",
                              .shown = "X"};
  cols[n++] = (gm_col_seen){.name = "extra", .type = "blob", .shown = "X"};
  check(n == 13, "twelve lock columns and one of someone else's");
  check(check_table(cols, n, 0, "table %s has no column %s (%s)", &err) ==
            GM_OK,
        "a fit table passes; extra columns are accepted");
  cols[2].type = "int";
  check(check_table(cols, n, 0, NULL, &err) == GM_ERR &&
            err.code == GM_E_DB &&
            strcmp(err.msg, "table t: column token is X; expected u64") == 0,
        "a misfit is named with the type expected: %s", err.msg);
  cols[2].type = "u64";
  cols[4].name = "ACQUIRED_AT";
  check(check_table(cols, n, 0, "no %s.%s (%s)", &err) == GM_OK,
        "names compare without case unless exact");
  check(check_table(cols, n, 1, "no %s.%s (%s)", &err) == GM_ERR &&
            strcmp(err.msg, "no t.acquired_at (time)") == 0,
        "exact case: a missing column is named: %s", err.msg);
  check(check_table(cols, n, 1, NULL, &err) == GM_OK,
        "no missing format: missing columns are left to the statements");
  check(check_table(cols, 0, 1, "no %s.%s (%s)", &err) == GM_OK,
        "no column at all: nothing is missing (the caller knows the table "
        "is not there)");
}

static void test_options(void) {
  gm_error err = {0};
  int v;
  static const char *const modes[] = {"off", "on", "auto", NULL};
  gm_kv kv[] = {{"port", "70000"}, {"n", "12"}, {"mode", "AUTO"},
                {"bad", "maybe"}, {"x", "1x"}};
  check(gm_kv_int(kv, N(kv), "n", 0, 20, 5, &v, "test", &err) == GM_OK &&
            v == 12,
        "a whole number in range");
  check(gm_kv_int(kv, N(kv), "none", 0, 20, 5, &v, "test", &err) == GM_OK &&
            v == 5,
        "absent: the default");
  check(gm_kv_int(kv, N(kv), "port", 1, 65535, 1, &v, "test", &err) ==
                GM_ERR &&
            strcmp(err.msg, "test backend: option 'port': expected a whole "
                            "number 1-65535, got '70000'") == 0,
        "out of range: %s", err.msg);
  check(gm_kv_int(kv, N(kv), "x", 0, 20, 5, &v, "test", &err) == GM_ERR,
        "trailing text refused");
  check(gm_kv_choice(kv, N(kv), "mode", modes, -1, &v, "test", &err) ==
                GM_OK &&
            v == 2,
        "a choice in any case");
  check(gm_kv_choice(kv, N(kv), "none", modes, -1, &v, "test", &err) ==
                GM_OK &&
            v == -1,
        "absent choice: the default");
  check(gm_kv_choice(kv, N(kv), "bad", modes, -1, &v, "test", &err) ==
                GM_ERR &&
            strcmp(err.msg, "test backend: option 'bad': expected off, on "
                            "or auto, got 'maybe'") == 0,
        "a bad choice lists the names: %s", err.msg);
  check(gm_bad_column(&err, "db", "L", "t", "owner", "is NULL") == GM_ERR &&
            err.code == GM_E_ROW &&
            strcmp(err.msg, "db: lock 'L' in table 't': column 'owner' is "
                            "NULL") == 0,
        "a row edited by hand: %s", err.msg);
}

/* gm_fits: a kind's types in any case, its precision (a negative one: the
 * database's default), its width, its banned extra. */
static void test_fits(void) {
  static const gm_coltype t[] = {
      [GM_COL_TIME] = {.types = "|datetime|timestamp|", .prec = 6,
                       .want = "T6", .banned = "on update"},
      [GM_COL_U64] = {.types = "|bigint|", .want = "B"},
      [GM_COL_TEXT] = {.types = "|char|varchar|", .want = "TEXT(%u)",
                       .wide = 1}};
  gm_col time = {"t", GM_COL_TIME, 0}, text = {"x", GM_COL_TEXT, 127};
  gm_col_seen s = {.name = "t", .type = "DATETIME", .extra = "", .prec = 6};
  char want[32];
  check(gm_fits(t, &time, &s, want, sizeof want) && strcmp(want, "T6") == 0,
        "a listed type, any case, precise enough");
  s.prec = 0;
  check(!gm_fits(t, &time, &s, want, sizeof want), "whole seconds refused");
  s.prec = -1;
  check(gm_fits(t, &time, &s, want, sizeof want),
        "the database's default precision is taken");
  s.extra = "on update current_timestamp(6)";
  check(!gm_fits(t, &time, &s, want, sizeof want), "a banned extra refused");
  gm_col_seen v = {.name = "x", .type = "varchar", .len = 127};
  check(gm_fits(t, &text, &v, want, sizeof want) &&
            strcmp(want, "TEXT(127)") == 0,
        "wide enough; the width in the type expected: %s", want);
  v.len = 20;
  check(!gm_fits(t, &text, &v, want, sizeof want), "too narrow refused");
  v.len = 200;
  v.type = "varchar2";
  check(!gm_fits(t, &text, &v, want, sizeof want),
        "a name that only starts like a listed one refused");
  v.type = "";
  check(!gm_fits(t, &text, &v, want, sizeof want), "no type refused");
  check(!gm_fits(t, &text, NULL, want, sizeof want) &&
            strcmp(want, "TEXT(127)") == 0,
        "a missing column: the type expected only");
}

/* An option table: each kind read into its field, defaults, the first
 * error named, and what was copied freed after an error too. */
typedef struct tcfg {
  char *name, *secret;
  int port, mode;
  int64_t wait_us;
  unsigned whole_s;
} tcfg;

static void test_option_table(void) {
  static const char *const modes[] = {"off", "on", NULL};
#define T(k, kd, f) .key = k, .kind = kd, .off = offsetof(tcfg, f)
  static const gm_opt spec[] = {
      {T("table", GM_OPT_NAME, name), .dflt = "locks"},
      {T("password", GM_OPT_SECRET, secret), .required = "x://u:p@h"},
      {T("port", GM_OPT_INT, port), .dflt = "3306", .lo = 1, .hi = 65535},
      {T("mode", GM_OPT_CHOICE, mode), .names = modes},
      {T("wait", GM_OPT_US, wait_us), .dflt = "2"},
      {T("timeout", GM_OPT_WHOLE_S, whole_s), .dflt = "2"},
      {.key = "host"},
      {.key = NULL}};
#undef T
  gm_error err = {0};
  tcfg c = {0};
  gm_kv ok[] = {{"password", "pw"}, {"timeout", "0.2"}, {"host", "h"}};
  check(gm_opts_read(spec, ok, N(ok), &c, "test", &err) == GM_OK &&
            strcmp(c.name, "locks") == 0 && strcmp(c.secret, "pw") == 0 &&
            c.port == 3306 && c.mode == -1 && c.wait_us == 2000000 &&
            c.whole_s == 1,
        "defaults, and 0.2 s as 1 whole second: %s", err.msg);
  gm_opts_free(spec, &c);
  struct {
    gm_kv kv[2];
    const char *msg;
  } bad[] = {
      {{{"password", "pw"}, {"colour", "blue"}},
       "test backend: unknown option 'colour'"},
      {{{"table", "t"}, {"port", "1"}},
       "test backend: option 'password' is required, as in x://u:p@h"},
      {{{"password", "pw"}, {"table", "a-b"}}, "option 'table': not a valid"},
      {{{"password", "pw"}, {"mode", "maybe"}},
       "test backend: option 'mode': expected off or on, got 'maybe'"},
      {{{"password", "pw"}, {"timeout", "0"}}, "option 'timeout': expected"},
  };
  for (size_t i = 0; i < N(bad); i++) {
    memset(&c, 0, sizeof c);
    int rc = gm_opts_read(spec, bad[i].kv, 2, &c, "test", &err);
    check(rc == GM_ERR && err.code == GM_E_ARG &&
              strncmp(err.msg, bad[i].msg, strlen(bad[i].msg)) == 0,
          "refused: %s", err.msg);
    gm_opts_free(spec, &c);
  }
}

int main(void) {
  test_host_lists();
  test_host_rotation();
  test_host_ranks();
  test_schema();
  test_fits();
  test_options();
  test_option_table();
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
