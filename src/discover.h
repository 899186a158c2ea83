/* Finding a target VM, and the Bastion that reaches it, with ARM. */
#ifndef DISCOVER_H
#define DISCOVER_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "arm.h"
#include "config.h"
#include "entra.h"
#include "http.h"

/*
 * The columns the network queries project: what discover_networks()
 * and discover_bastion_row() read.
 */
#define DISCOVER_COLUMNS \
	"id, type, name, resourceGroup, sku = tostring(sku.name), " \
	"dnsName = tostring(properties.dnsName), " \
	"tunneling = properties.enableTunneling, " \
	"ipConnect = properties.enableIpConnect, " \
	"vnet = tostring(properties.virtualNetwork.id), " \
	"ipConfigurations = properties.ipConfigurations, " \
	"peerings = properties.virtualNetworkPeerings, " \
	"vm = tostring(properties.virtualMachine.id), " \
	"computerName = tostring(properties.osProfile.computerName), " \
	"nics = properties.virtualMachineProfile.networkProfile." \
	"networkInterfaceConfigurations"

struct found {
	char	*id;		/* VM or scale-set instance id */
	char	*power;		/* "PowerState/running"..., or NULL */
};

int	discover_split_instance(const char *host, char *scale_set,
	    size_t size, const char **instance);
int	discover_target(struct http *h, const struct options *o,
	    const struct token *t, const char *host, struct found *f);
void	found_free(struct found *f);
cJSON	*discover_networks(const cJSON *rows, const char *vm_id);
int	discover_bastion_row(const cJSON *rows, const cJSON *row,
	    const cJSON *nets, struct bastion *b);
int	discover_bastion(struct http *h, const struct options *o,
	    const struct token *t, const char *target_id, char **id,
	    struct bastion *b);

#endif
