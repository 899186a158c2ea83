/*
 * Host pattern matching as ssh_config(5) defines it: '*' matches any run
 * of characters, '?' exactly one, and a leading '!' negates a pattern.
 * Host names compare without regard to case.
 */
#include <ctype.h>
#include <string.h>

#include "match.h"

/* Whether s matches pattern; the recursion depth is bounded by '*'s. */
bool
match_pattern(const char *s, const char *pattern)
{
	for (;;) {
		if (*pattern == '\0')
			return *s == '\0';
		if (*pattern == '*') {
			while (*pattern == '*')
				pattern++;
			if (*pattern == '\0')
				return true;
			for (; *s != '\0'; s++)
				if (match_pattern(s, pattern))
					return true;
			return false;
		}
		if (*s == '\0')
			return false;
		if (*pattern != '?' && tolower((unsigned char)*pattern) !=
		    tolower((unsigned char)*s))
			return false;
		s++;
		pattern++;
	}
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
		if (n - negated >= sizeof(pat))
			return 0;
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
