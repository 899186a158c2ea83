/* HOST, PORT and resource ids, checked before any request. */
#include <stdlib.h>

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

int
main(void)
{
	RUN(test_host);
	RUN(test_port);
	RUN(test_resource_ids);
	RUN(test_bad_resource_ids);
	return unit_done();
}
