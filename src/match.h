/* ssh_config-style host patterns. */
#ifndef MATCH_H
#define MATCH_H

#include <stdbool.h>

bool	match_pattern(const char *s, const char *pattern);
int	match_host_patterns(const char *host, const char *patterns);

#endif
