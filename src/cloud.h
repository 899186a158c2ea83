/* The Azure clouds bastion-stdio knows by name. */
#ifndef CLOUD_H
#define CLOUD_H

struct cloud {
	const char	*name;
	const char	*arm_endpoint;
	const char	*authority_host;
	const char	*arm_scope;	/* what the Azure CLI asks Entra for */
};

const struct cloud *cloud_find(const char *name);

#endif
