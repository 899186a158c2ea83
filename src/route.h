/* Which target, through which Bastion: from settings, cache or ARM. */
#ifndef ROUTE_H
#define ROUTE_H

#include <stdbool.h>

#include "arm.h"
#include "config.h"
#include "entra.h"
#include "http.h"
#include "target.h"

struct route {
	struct target	 tg;
	bool		 target_set;	/* by the settings, not by ARM */
	char		*bastion_id;
	struct bastion	 b;		/* what ARM says of the Bastion */
	char		*power;		/* the VM's power state, if known */
	bool		 cached;	/* some part came from the cache */
};

int	route_check(const struct options *o, const char *host,
	    const char *port, struct route *rt);
int	route_find(struct http *h, const struct options *o,
	    const struct token *t, const char *host, struct route *rt);
int	route_refresh(struct http *h, const struct options *o,
	    const struct token *t, const char *host, struct route *rt);
void	route_forget(const struct options *o, const struct token *t,
	    const char *host, struct route *rt);
void	route_free(struct route *rt);

#endif
