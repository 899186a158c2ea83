/* HOST, PORT and resource ids, checked before any request. */
#include <stdarg.h>
#include <stdlib.h>

#include "config.h"
#include "misc.h"

#include "discover.h"
#include "target.h"
#include "unit.h"

#define VM_ID	"/subscriptions/0000-11/resourceGroups/rg-1/providers/" \
		"Microsoft.Compute/virtualMachines/vm1"

static void
test_host(void)
{
	CHECK(target_is_ip("10.0.0.4"));
	CHECK(target_is_ip("::1"));
	CHECK(target_is_ip("fd00::4"));
	CHECK(!target_is_ip("10.0.0"));
	CHECK(!target_is_ip("fe80::1%eth0"));
	CHECK(!target_is_ip("vm1"));
	CHECK(target_is_vm_name("vm1"));
	CHECK(target_is_vm_name("web_01.prod-a"));
	CHECK(!target_is_vm_name(""));
	CHECK(!target_is_vm_name("a/b"));
	CHECK(!target_is_vm_name("../x"));
	CHECK(!target_is_vm_name("-o"));
	CHECK(!target_is_vm_name("x."));
	CHECK(!target_is_vm_name("a b"));
	CHECK(!target_is_vm_name("a%2Fb"));
	CHECK(!target_is_vm_name("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static void
test_port(void)
{
	int port = 0;

	CHECK(target_parse_port("22", &port) == 0 && port == 22);
	CHECK(target_parse_port("65535", &port) == 0 && port == 65535);
	CHECK(target_parse_port("0", &port) == -1);
	CHECK(target_parse_port("65536", &port) == -1);
	CHECK(target_parse_port("ssh", &port) == -1);
	CHECK(target_parse_port("22 ", &port) == -1);
}

static void
test_resource_ids(void)
{
	struct resource_id r;

	CHECK(resource_id_parse(VM_ID, &r) == 0);
	CHECK_STR(r.subscription, "0000-11");
	CHECK_STR(r.resource_group, "rg-1");
	CHECK_STR(r.name, "vm1");
	CHECK(resource_id_is_vm(&r) && !resource_id_is_bastion(&r));
	resource_id_free(&r);

	CHECK(resource_id_parse("/SUBSCRIPTIONS/s/RESOURCEGROUPS/g/PROVIDERS/"
	    "microsoft.network/BASTIONHOSTS/b", &r) == 0);
	CHECK(resource_id_is_bastion(&r) && !resource_id_is_vm(&r));
	resource_id_free(&r);

	CHECK(resource_id_parse("/subscriptions/s/resourceGroups/g/providers/"
	    "Microsoft.Compute/virtualMachineScaleSets/ss/virtualMachines/3",
	    &r) == 0);
	CHECK(resource_id_is_vm(&r));
	CHECK_STR(r.child_name, "3");
	resource_id_free(&r);

	/* a Cosmos DB account is not a tunnel target */
	CHECK(resource_id_parse("/subscriptions/s/resourceGroups/g/providers/"
	    "Microsoft.DocumentDB/databaseAccounts/x", &r) == 0);
	CHECK(!resource_id_is_vm(&r));
	resource_id_free(&r);
}

static void
test_bad_resource_ids(void)
{
	static const char *const bad[] = {
		"", "/", VM_ID "/", VM_ID "?x=1", VM_ID "#", "subscriptions/s",
		"/subscriptions//resourceGroups/g/providers/a/b/c",
		"/subscriptions/s/resourceGroups/g/providers/a/b",
		"/subscriptions/s/resourceGroups/g./providers/a/b/c",
		"/subscriptions/s!/resourceGroups/g/providers/a/b/c",
		"/subscriptions/s/resourceGroups/g/providers/a/b/c/d",
		"/subscriptions/s/resourceGroups/g/providers/a/b/c%2F",
		"/subscriptions/s/resourceGroups/g/providers/a/b/c\n",
		"/subscriptions/s/resourceGroups/g/providers/a/b/c d",
	};
	struct resource_id r;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (resource_id_parse(bad[i], &r) == 0) {
			printf("#   accepted \"%s\"\n", bad[i]);
			CHECK(0);
			resource_id_free(&r);
		}
	}
}

#define BASTION	"/subscriptions/bsub/resourceGroups/brg/providers/" \
		"Microsoft.Network/bastionHosts/bh"

/* Resolves host and port with the -o settings given, NULL-terminated. */
static int
resolve(const char *host, const char *port, struct target *tg, ...)
{
	struct resource_id bastion;
	struct options o;
	const char *opt;
	va_list ap;
	int r;

	cfg_init(&o);
	va_start(ap, tg);
	while ((opt = va_arg(ap, const char *)) != NULL)
		cfg_parse_option(&o, opt);
	va_end(ap);
	resource_id_parse(BASTION, &bastion);
	r = target_resolve(host, port, &o, &bastion, tg);
	resource_id_free(&bastion);
	cfg_free(&o);
	return r;
}

static void
test_resolve(void)
{
	struct target tg;

	/* no resource group: only ARM can say where vm1 is */
	CHECK(resolve("vm1", "22", &tg, NULL) == 0);
	CHECK(tg.resource_id == NULL && tg.ip == NULL && tg.port == 22);
	target_free(&tg);

	/* a resource group alone: in the Bastion's subscription */
	CHECK(resolve("vm1", "22", &tg, "TargetResourceGroup=rg2", NULL) == 0);
	CHECK_STR(tg.resource_id, "/subscriptions/bsub/resourceGroups/rg2/"
	    "providers/Microsoft.Compute/virtualMachines/vm1");
	target_free(&tg);

	CHECK(resolve("vm1", "2222", &tg, "TargetResourceGroup=rg2",
	    "TargetSubscription=sub2", NULL) == 0);
	CHECK_STR(tg.resource_id, "/subscriptions/sub2/resourceGroups/rg2/"
	    "providers/Microsoft.Compute/virtualMachines/vm1");
	target_free(&tg);

	/* IP-connect: the Bastion's subscription and group, and hostname */
	CHECK(resolve("10.1.2.3", "3389", &tg, "TargetResourceGroup=x",
	    NULL) == 0);
	CHECK_STR(tg.resource_id, "/subscriptions/bsub/resourceGroups/brg/"
	    "providers/Microsoft.Network/bh-hostConnect/10.1.2.3");
	CHECK_STR(tg.ip, "10.1.2.3");
	target_free(&tg);
	CHECK(resolve("fd00::4", "22", &tg, NULL) == 0);
	CHECK_STR(tg.ip, "fd00::4");
	target_free(&tg);

	/* TargetResourceId wins over HOST, which may then be any alias */
	CHECK(resolve("my-alias", "22", &tg, "TargetResourceId=/subscriptions"
	    "/s/resourceGroups/g/providers/Microsoft.Compute/"
	    "virtualMachineScaleSets/ss/virtualMachines/7", NULL) == 0);
	CHECK(strstr(tg.resource_id, "/virtualMachines/7") != NULL);
	CHECK(tg.ip == NULL);
	target_free(&tg);
}

static void
test_resolve_errors(void)
{
	struct target tg;

	CHECK(resolve("vm1", "0", &tg, NULL) == EXIT_USAGE);
	CHECK(resolve("a/b", "22", &tg, NULL) == EXIT_USAGE);
	CHECK(resolve("vm1", "22", &tg, "TargetResourceGroup=a/b",
	    NULL) == EXIT_CONFIG);
	CHECK(resolve("vm1", "22", &tg, "TargetSubscription=x y",
	    NULL) == EXIT_CONFIG);
	CHECK(resolve("vm1", "22", &tg, "TargetResourceId=/subscriptions/s/"
	    "resourceGroups/g/providers/Microsoft.Sql/servers/x",
	    NULL) == EXIT_CONFIG);
	target_free(&tg);
}

/* SCALESET_N: Azure's own name for instance N of a uniform scale set. */
static void
test_instance_syntax(void)
{
	char ss[80];
	const char *n;

	CHECK(discover_split_instance("pool_3", ss, sizeof(ss), &n) == 0);
	CHECK_STR(ss, "pool");
	CHECK_STR(n, "3");
	CHECK(discover_split_instance("my_pool_12", ss, sizeof(ss), &n) == 0);
	CHECK_STR(ss, "my_pool");
	CHECK_STR(n, "12");
	CHECK(discover_split_instance("pool_007", ss, sizeof(ss), &n) == 0);
	CHECK_STR(n, "7");
	CHECK(discover_split_instance("pool_0", ss, sizeof(ss), &n) == 0);
	CHECK_STR(n, "0");
	CHECK(discover_split_instance("web", ss, sizeof(ss), &n) == -1);
	CHECK(discover_split_instance("_3", ss, sizeof(ss), &n) == -1);
	CHECK(discover_split_instance("pool_", ss, sizeof(ss), &n) == -1);
	CHECK(discover_split_instance("pool_3a", ss, sizeof(ss), &n) == -1);
	CHECK(discover_split_instance("pool_1234567890", ss, sizeof(ss),
	    &n) == -1);
	CHECK(discover_split_instance("pool_3", ss, 4, &n) == -1);
}

int
main(void)
{
	RUN(test_host);
	RUN(test_port);
	RUN(test_resource_ids);
	RUN(test_bad_resource_ids);
	RUN(test_resolve);
	RUN(test_resolve_errors);
	RUN(test_instance_syntax);
	return unit_done();
}
