/* check.h: the C tests' one assertion. Each check prints "ok - ..." or
 * "FAIL - ..." and counts; a test ends with printf("%d passed, %d failed\n",
 * passed, failed), the line tests/run.sh and make test-c add up. */
#ifndef GOMASTER_TEST_CHECK_H
#define GOMASTER_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>

static int passed, failed;

static int check(int ok, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%s - ", ok ? "ok" : "FAIL");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  if (ok)
    passed++;
  else
    failed++;
  fflush(stdout);
  return ok;
}

#endif
