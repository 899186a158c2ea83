/*
 * Finding the target VM from HOST alone: its name, its computer name,
 * a private IP of one of its NICs, or SCALESET_N for instance N of a
 * uniform scale set (the name Azure itself gives that instance).  One
 * Resource Graph query over every subscription the credential sees,
 * narrowed by TargetSubscription and TargetResourceGroup when set.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "discover.h"
#include "graph.h"
#include "log.h"
#include "misc.h"
#include "target.h"

#define TYPE_VM		"microsoft.compute/virtualmachines"
#define TYPE_VMSS	"microsoft.compute/virtualmachinescalesets"

/* Candidates beyond this many are not listed in the ambiguity error. */
#define LIST_MAX	10

/*
 * Splits SCALESET_N into the scale set's name and N; -1 if HOST has no
 * such form.  A VM may be called so too: both are then candidates.
 */
int
discover_split_instance(const char *host, char *scale_set, size_t size,
    const char **instance)
{
	const char *us = strrchr(host, '_');

	if (us == NULL || us == host || us[1] == '\0' ||
	    strspn(us + 1, "0123456789") != strlen(us + 1) ||
	    strlen(us + 1) > 9 || (size_t)(us - host) >= size)
		return -1;
	memcpy(scale_set, host, (size_t)(us - host));
	scale_set[us - host] = '\0';
	*instance = us + 1;
	while (**instance == '0' && (*instance)[1] != '\0')
		(*instance)++;		/* pool_03 is instance 3 */
	return 0;
}

static void
narrow(struct buf *q, const struct options *o)
{
	if (o->target_resource_group != NULL) {
		buf_puts(q, " | where resourceGroup =~ ");
		graph_quote(q, o->target_resource_group);
	}
}

/* VMs called HOST or with that computer name, and SCALESET for _N. */
static char *
name_query(const char *host, const struct options *o)
{
	struct buf q;
	char ss[80];
	const char *n;
	char *s;

	buf_init(&q, 512);
	buf_puts(&q, "Resources | where (type =~ '" TYPE_VM "' and "
	    "(name =~ ");
	graph_quote(&q, host);
	buf_puts(&q, " or properties.osProfile.computerName =~ ");
	graph_quote(&q, host);
	buf_puts(&q, "))");
	if (discover_split_instance(host, ss, sizeof(ss), &n) == 0) {
		buf_puts(&q, " or (type =~ '" TYPE_VMSS "' and "
		    "properties.orchestrationMode =~ 'Uniform' and name =~ ");
		graph_quote(&q, ss);
		buf_puts(&q, ")");
	}
	narrow(&q, o);
	buf_puts(&q, " | project id, name, type, computerName = "
	    "tostring(properties.osProfile.computerName), power = "
	    "tostring(properties.extended.instanceView.powerState.code)");
	s = xstrdup(buf_str(&q));
	buf_free(&q);
	return s;
}

/*
 * NICs with that private IP, and the VM each is attached to.  ARM keeps
 * an address in its usual text form (fd00::4, not FD00:0::4), which is
 * compared as a string.
 */
static char *
ip_query(const char *host, const struct options *o)
{
	unsigned char addr[16];
	char ip[INET6_ADDRSTRLEN];
	int af = strchr(host, ':') != NULL ? AF_INET6 : AF_INET;
	struct buf q;
	char *s;

	if (inet_pton(af, host, addr) != 1 ||
	    inet_ntop(af, addr, ip, sizeof(ip)) == NULL)
		snprintf(ip, sizeof(ip), "%s", host);

	buf_init(&q, 512);
	buf_puts(&q, "Resources | where type =~ "
	    "'microsoft.network/networkinterfaces'");
	narrow(&q, o);
	buf_puts(&q, " | mv-expand ipc = properties.ipConfigurations"
	    " | where ipc.properties.privateIPAddress == ");
	graph_quote(&q, ip);
	buf_puts(&q, " | project id, vm = "
	    "tostring(properties.virtualMachine.id)");
	s = xstrdup(buf_str(&q));
	buf_free(&q);
	return s;
}

/*
 * How well a row matches HOST: 3 for a VM's own name, 2 for its
 * computer name, 1 for a scale set's instance, 0 not at all.
 */
static int
rank(const cJSON *row, const char *host)
{
	const char *name = graph_str(row, "name");
	const char *type = graph_str(row, "type");
	const char *cn = graph_str(row, "computerName");
	char ss[80];
	const char *n;

	if (name == NULL || type == NULL)
		return 0;
	if (strcasecmp(type, TYPE_VMSS) == 0)
		return discover_split_instance(host, ss, sizeof(ss), &n) == 0 &&
		    strcasecmp(name, ss) == 0 ? 1 : 0;
	if (strcasecmp(name, host) == 0)
		return 3;
	return cn != NULL && strcasecmp(cn, host) == 0 ? 2 : 0;
}

/* The id the Bastion is given for a row: an instance below a scale set. */
static char *
row_target(const cJSON *row, const char *host)
{
	const char *id = graph_str(row, "id");
	const char *type = graph_str(row, "type");
	char ss[80];
	const char *n;

	if (strcasecmp(type, TYPE_VMSS) == 0 &&
	    discover_split_instance(host, ss, sizeof(ss), &n) == 0)
		return xasprintf("%s/virtualMachines/%s", id, n);
	return xstrdup(id);
}

static void
list_candidates(const char *host, char **ids, int n)
{
	int i;

	error("%s names %d VMs; set TargetResourceGroup, "
	    "TargetSubscription or TargetResourceId for it in a Host block:",
	    host, n);
	for (i = 0; i < n && i < LIST_MAX; i++)
		error("    %s", ids[i]);
	if (n > LIST_MAX)
		error("    and %d more", n - LIST_MAX);
}

/*
 * The best-ranked row's target id, if one row alone has that rank.
 * 0, or EXIT_USAGE after saying that HOST names no VM or several.
 */
static int
choose(cJSON *rows, const char *host, struct found *f)
{
	char *ids[LIST_MAX];
	const cJSON *row, *best = NULL;
	int top = 0, n = 0, k;

	cJSON_ArrayForEach(row, rows) {
		if ((k = rank(row, host)) > top) {
			top = k;
			n = 0;
		}
		if (k == top && k > 0 && n++ == 0)
			best = row;
	}
	if (n == 1) {
		f->id = row_target(best, host);
		f->power = graph_str(best, "power") != NULL &&
		    strcasecmp(graph_str(best, "type"), TYPE_VM) == 0 ?
		    xstrdup(graph_str(best, "power")) : NULL;
		return 0;
	}
	if (n == 0) {
		error("no VM called %s is visible to this credential%s", host,
		    " (looked for VM names, computer names and SCALESET_N)");
		return EXIT_USAGE;
	}
	k = 0;
	cJSON_ArrayForEach(row, rows)
		if (rank(row, host) == top && k < LIST_MAX)
			ids[k++] = row_target(row, host);
	list_candidates(host, ids, n);
	while (k-- > 0)
		free(ids[k]);
	return EXIT_USAGE;
}

/*
 * The VM whose NIC holds the private IP.  Several VMs can (address
 * spaces overlap across networks): that is ambiguous like a name.
 */
static int
choose_ip(cJSON *rows, const char *ip, struct found *f)
{
	char *ids[LIST_MAX];
	const cJSON *row;
	const char *vm;
	int n = 0, i;

	cJSON_ArrayForEach(row, rows) {
		if ((vm = graph_str(row, "vm")) == NULL || *vm == '\0')
			continue;
		for (i = 0; i < n && strcasecmp(ids[i], vm) != 0; i++)
			;
		if (i == n && n < LIST_MAX)
			ids[n++] = xstrdup(vm);
	}
	if (n == 1) {
		f->id = ids[0];
		return 0;
	}
	if (n == 0)
		error("no VM visible to this credential has the private IP "
		    "%s; to reach another address, set Bastion (IP connect)",
		    ip);
	else
		list_candidates(ip, ids, n);
	for (i = 0; i < n; i++)
		free(ids[i]);
	return EXIT_USAGE;
}

void
found_free(struct found *f)
{
	free(f->id);
	free(f->power);
	memset(f, 0, sizeof(*f));
}

/*
 * Finds the VM that HOST names.  0 with f filled (f->power only when
 * Resource Graph said), or an exit status after reporting.
 */
int
discover_target(struct http *h, const struct options *o,
    const struct token *t, const char *host, struct found *f)
{
	cJSON *rows;
	char *query, *why;
	bool ip = target_is_ip(host);
	int r;

	memset(f, 0, sizeof(*f));
	query = ip ? ip_query(host, o) : name_query(host, o);
	why = xasprintf("look up %s", host);
	r = graph_query(h, o, t, o->target_subscription, query, why, &rows);
	free(query);
	free(why);
	if (r != 0)
		return r;
	r = ip ? choose_ip(rows, host, f) : choose(rows, host, f);
	cJSON_Delete(rows);
	if (r == 0)
		verbose("%s is %s%s%s", host, f->id, f->power ? ", " : "",
		    f->power ? f->power : "");
	return r;
}
