/* ARM lookups' answers, cached for ArmCacheTime per principal. */
#ifndef LOOKUP_H
#define LOOKUP_H

#include <stdbool.h>

#include "config.h"
#include "entra.h"

/* Finds the value from ARM: 0 with *value allocated, or an exit status. */
typedef int (*lookup_fn)(void *ctx, char **value);
/* Whether a cached value can be what find() answers. */
typedef bool (*lookup_valid)(const char *value);

struct lookup_how {
	lookup_fn	 find;
	void		*ctx;
	lookup_valid	 valid;		/* NULL: any value */
};

int	lookup(const struct options *o, const struct token *t,
	    const char *kind, const char *key, const struct lookup_how *how,
	    char **value, bool *cached);
void	lookup_put(const struct options *o, const struct token *t,
	    const char *kind, const char *key, const char *value);
void	lookup_forget(const struct options *o, const struct token *t,
	    const char *kind, const char *key);

#endif
