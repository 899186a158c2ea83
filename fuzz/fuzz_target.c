/*
 * libFuzzer: HOST, PORT and the ids they become, and URLs.  The input is
 * split at NUL bytes into HOST, PORT, a TargetResourceId and a URL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "misc.h"
#include "proxy.h"
#include "target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASTION	"/subscriptions/s/resourceGroups/g/providers/" \
		"Microsoft.Network/bastionHosts/b"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = xcalloc(1, size + 4), *part[4], host[256];
	struct resource_id bastion, rid;
	struct options o;
	struct target tg;
	size_t i, n = 0;
	int port;

	log_init(LOG_QUIET);
	memcpy(buf, data, size);
	part[n++] = buf;
	for (i = 0; i < size && n < 4; i++)
		if (buf[i] == '\0')
			part[n++] = buf + i + 1;
	while (n < 4)
		part[n++] = buf + size + 1;

	cfg_init(&o);
	if (*part[2] != '\0')
		(void)cfg_set(&o, "TargetResourceId", part[2], "fuzz");
	(void)resource_id_parse(BASTION, &bastion);
	if (target_resolve(part[0], part[1], &o, &bastion, &tg) == 0)
		target_free(&tg);
	resource_id_free(&bastion);
	cfg_free(&o);
	if (resource_id_parse(part[2], &rid) == 0) {
		(void)resource_id_is_vm(&rid);
		(void)resource_id_is_bastion(&rid);
		resource_id_free(&rid);
	}
	(void)url_host(part[3], host, sizeof(host), &port, 443);
	free(buf);
	return 0;
}
