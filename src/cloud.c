/*
 * Endpoints of the Azure clouds, as the Azure CLI names them.  The scope
 * keeps the double slash on purpose: the CLI appends "/.default" to its
 * resource id "https://management.core.windows.net/", and the token that
 * results is the one the Bastion data plane is known to accept.
 */
#include <stddef.h>
#include <strings.h>

#include "cloud.h"

static const struct cloud clouds[] = {
	{ "AzureCloud", "https://management.azure.com",
	  "https://login.microsoftonline.com",
	  "https://management.core.windows.net//.default" },
	{ "AzureUSGovernment", "https://management.usgovcloudapi.net",
	  "https://login.microsoftonline.us",
	  "https://management.core.usgovcloudapi.net//.default" },
	{ "AzureChinaCloud", "https://management.chinacloudapi.cn",
	  "https://login.chinacloudapi.cn",
	  "https://management.core.chinacloudapi.cn//.default" },
};

const struct cloud *
cloud_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(clouds) / sizeof(clouds[0]); i++)
		if (strcasecmp(clouds[i].name, name) == 0)
			return &clouds[i];
	return NULL;
}
