/* Finding a target VM, and the Bastion that reaches it, with ARM. */
#ifndef DISCOVER_H
#define DISCOVER_H

#include <stddef.h>

#include "arm.h"
#include "config.h"
#include "entra.h"
#include "http.h"

struct found {
	char	*id;		/* VM or scale-set instance id */
	char	*power;		/* "PowerState/running"..., or NULL */
};

int	discover_split_instance(const char *host, char *scale_set,
	    size_t size, const char **instance);
int	discover_target(struct http *h, const struct options *o,
	    const struct token *t, const char *host, struct found *f);
void	found_free(struct found *f);
int	discover_bastion(struct http *h, const struct options *o,
	    const struct token *t, const char *target_id, char **id,
	    struct bastion *b);

#endif
