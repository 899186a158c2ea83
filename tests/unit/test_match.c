/* Host patterns as ssh_config(5) has them. */
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
}

int
main(void)
{
	RUN(test_wildcards);
	RUN(test_lists);
	return unit_done();
}
