/*
 * A tiny unit-test helper: CHECK() counts, RUN() prints one TAP-style
 * line per test function, and unit_done() gives the exit status.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_failures;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		unit_failures++;					\
		printf("#   %s:%d: CHECK(%s) failed\n", __FILE__,	\
		    __LINE__, #cond);					\
	}								\
} while (0)

#define CHECK_STR(a, b) do {						\
	const char *a_ = (a), *b_ = (b);				\
	if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {		\
		unit_failures++;					\
		printf("#   %s:%d: \"%s\" != \"%s\"\n", __FILE__,	\
		    __LINE__, a_ ? a_ : "(null)", b_ ? b_ : "(null)");	\
	}								\
} while (0)

#define RUN(fn) do {							\
	int before_ = unit_failures;					\
	fn();								\
	printf("%s - %s\n", unit_failures == before_ ? "ok" : "not ok",	\
	    #fn);							\
} while (0)

static inline int
unit_done(void)
{
	return unit_failures == 0 ? 0 : 1;
}

#endif
