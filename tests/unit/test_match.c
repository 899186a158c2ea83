/* Host patterns as ssh_config(5) has them. */
#include <time.h>

#include "match.h"
#include "unit.h"

static void
test_wildcards(void)
{
	CHECK(match_pattern("web1.prod", "*.prod"));
	CHECK(match_pattern("web1.prod", "web?.prod"));
	CHECK(!match_pattern("web10.prod", "web?.prod"));
	CHECK(match_pattern("", "*"));
	CHECK(!match_pattern("", "?"));
	CHECK(match_pattern("abc", "a**c"));
	CHECK(match_pattern("WEB1", "web1"));
	CHECK(!match_pattern("web1.prod.x", "*.prod"));
	CHECK(match_pattern("aaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "*a*a*a*b"));
	CHECK(match_pattern("abcbcd", "a*bcd"));
	CHECK(match_pattern("web-01", "*-??"));
	CHECK(!match_pattern("web-1", "*-??"));
	CHECK(match_pattern("x", "**x**"));
}

/* Many stars against a long non-match once took exponential time. */
static void
test_pathological(void)
{
	char host[201];
	struct timespec t0, t1;
	int i;

	for (i = 0; i < 200; i++)
		host[i] = 'a';
	host[200] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 100; i++)
		CHECK(!match_pattern(host, "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* microseconds each when linear; the recursive matcher took hours */
	CHECK(t1.tv_sec - t0.tv_sec < 2);
}

static void
test_lists(void)
{
	CHECK(match_host_patterns("db1", "web* db*") == 1);
	CHECK(match_host_patterns("db1", "web*") == 0);
	CHECK(match_host_patterns("db1", "* !db1") == -1);
	CHECK(match_host_patterns("db2", "* !db1") == 1);
	CHECK(match_host_patterns("db1", "!db1") == -1);
	CHECK(match_host_patterns("db2", "!db1") == 0);
	CHECK(match_host_patterns("x", "  \t x  ") == 1);
	/* an overlong pattern matches nothing, but spoils no other one */
	{
		char list[400];

		memset(list, 'x', sizeof(list));
		memcpy(list, "vm1 ", 4);
		list[sizeof(list) - 1] = '\0';
		CHECK(match_host_patterns("vm1", list) == 1);
	}
}

int
main(void)
{
	RUN(test_wildcards);
	RUN(test_lists);
	RUN(test_pathological);
	return unit_done();
}
