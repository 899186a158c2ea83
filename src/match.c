/*
 * Host pattern matching as ssh_config(5) defines it: '*' matches any run
 * of characters, '?' exactly one, and a leading '!' negates a pattern.
 * Host names compare without regard to case.
 */
#include <ctype.h>
#include <string.h>

#include "match.h"

static bool
same_char(char p, char c)
{
	return p == '?' ||
	    tolower((unsigned char)p) == tolower((unsigned char)c);
}

/*
 * Whether s matches pattern.  On a mismatch only the last '*' is moved
 * on, which is enough for '*' and '?' and keeps the time to
 * length(s) * length(pattern); trying every '*' again, as a recursive
 * matcher does, is exponential in the number of stars.
 */
bool
match_pattern(const char *s, const char *pattern)
{
	const char *star = NULL, *resume = NULL;

	while (*s != '\0') {
		if (*pattern == '*') {
			star = ++pattern;
			resume = s;
		} else if (*pattern != '\0' && same_char(*pattern, *s)) {
			pattern++;
			s++;
		} else if (star != NULL) {
			pattern = star;
			s = ++resume;
		} else
			return false;
	}
	while (*pattern == '*')
		pattern++;
	return *pattern == '\0';
}

/*
 * Matches host against a whitespace-separated list of patterns.  Returns
 * 1 when a pattern matches and no negated one does, -1 when a negated
 * pattern matches (it vetoes the whole list), and 0 otherwise.
 */
int
match_host_patterns(const char *host, const char *patterns)
{
	char pat[256];
	const char *p = patterns;
	size_t n;
	int found = 0;
	int negated;

	while (*p != '\0') {
		p += strspn(p, " \t");
		n = strcspn(p, " \t");
		if (n == 0)
			break;
		negated = *p == '!';
		if (n - negated >= sizeof(pat)) {
			p += n;		/* no host name is that long */
			continue;
		}
		memcpy(pat, p + negated, n - negated);
		pat[n - negated] = '\0';
		p += n;
		if (match_pattern(host, pat)) {
			if (negated)
				return -1;
			found = 1;
		}
	}
	return found;
}
