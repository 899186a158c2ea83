/* ARM lookups' answers, cached for ArmCacheTime. */
#ifndef LOOKUP_H
#define LOOKUP_H

#include <stdbool.h>

#include "config.h"

/* Finds the value from ARM: 0 with *value allocated, or an exit status. */
typedef int (*lookup_fn)(void *ctx, char **value);

int	lookup(const struct options *o, const char *kind, const char *key,
	    lookup_fn find, void *ctx, char **value, bool *cached);
void	lookup_put(const struct options *o, const char *kind,
	    const char *key, const char *value);
void	lookup_forget(const struct options *o, const char *kind,
	    const char *key);

#endif
