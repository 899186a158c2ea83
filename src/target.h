/*
 * What the tunnel reaches: HOST and PORT as ssh passes them, checked
 * before any network call, and the ARM resource ids built from them.
 */
#ifndef TARGET_H
#define TARGET_H

#include <stdbool.h>

#include "config.h"

/*
 * An ARM resource id split into its parts:
 * /subscriptions/S/resourceGroups/G/providers/NS/TYPE/NAME[/CTYPE/CNAME]
 */
struct resource_id {
	char	*subscription;
	char	*resource_group;
	char	*provider;
	char	*type;
	char	*name;
	char	*child_type;	/* NULL when absent */
	char	*child_name;
};

struct target {
	char	*resource_id;	/* what the Bastion is asked to reach */
	char	*ip;		/* the IP-connect address, or NULL */
	int	 port;
};

int	resource_id_parse(const char *id, struct resource_id *r);
void	resource_id_free(struct resource_id *r);
bool	resource_id_is_bastion(const struct resource_id *r);
bool	resource_id_is_vm(const struct resource_id *r);

bool	target_is_ip(const char *host);
bool	target_is_vm_name(const char *name);
bool	target_is_resource_group(const char *name);
bool	target_is_subscription(const char *name);
int	target_parse_port(const char *s, int *port);
void	target_free(struct target *t);
int	target_resolve(const char *host, const char *port,
	    const struct options *o, const struct resource_id *bastion,
	    struct target *tg);

#endif
