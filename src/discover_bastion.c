/*
 * Finding the Bastion for a target when none is configured: one whose
 * virtual network is the target's, or (not the Developer SKU, which
 * reaches only its own network) is peered with it, the peering
 * Connected.  Peering is not transitive, so a direct peering it must
 * be.  Two Resource Graph queries: the target's NICs (or its scale
 * set's model), then every Bastion and the target's networks with
 * their peerings.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arm.h"
#include "discover.h"
#include "graph.h"
#include "log.h"
#include "misc.h"
#include "target.h"

#define TYPE_BASTION	"microsoft.network/bastionhosts"
#define TYPE_VNET	"microsoft.network/virtualnetworks"
#define TYPE_NIC	"microsoft.network/networkinterfaces"
#define LIST_MAX	10

/* The target's NICs, or its uniform scale set (whose model names them). */
static char *
nics_query(const char *target_id)
{
	struct resource_id r;
	struct buf q;
	char *s, *ss = NULL;

	if (resource_id_parse(target_id, &r) == 0 && r.child_name != NULL)
		ss = xasprintf("/subscriptions/%s/resourceGroups/%s/providers/"
		    "%s/%s/%s", r.subscription, r.resource_group, r.provider,
		    r.type, r.name);
	resource_id_free(&r);
	buf_init(&q, 1024);
	if (ss != NULL) {
		buf_puts(&q, "Resources | where id =~ ");
		graph_quote(&q, ss);
	} else {
		buf_puts(&q, "Resources | where type =~ '" TYPE_NIC "' and "
		    "properties.virtualMachine.id =~ ");
		graph_quote(&q, target_id);
	}
	buf_puts(&q, " | project " DISCOVER_COLUMNS);
	s = xstrdup(buf_str(&q));
	buf_free(&q);
	free(ss);
	return s;
}

/* Every Bastion, and the target's networks with their peerings. */
static char *
bastions_query(const cJSON *nets)
{
	const cJSON *net;
	struct buf q;
	char *s;

	buf_init(&q, 1024);
	buf_puts(&q, "Resources | where type =~ '" TYPE_BASTION "' or "
	    "(type =~ '" TYPE_VNET "' and id in~ (");
	cJSON_ArrayForEach(net, nets) {
		graph_quote(&q, net->valuestring);
		buf_puts(&q, net->next != NULL ? ", " : "");
	}
	buf_puts(&q, ")) | project " DISCOVER_COLUMNS);
	s = xstrdup(buf_str(&q));
	buf_free(&q);
	return s;
}

/* The virtual network of a subnet id, as a new string, or NULL. */
static char *
vnet_of_subnet(const char *subnet)
{
	const char *p = subnet != NULL ? strstr(subnet, "/subnets/") : NULL;

	if (p == NULL)
		return NULL;
	return xasprintf("%.*s", (int)(p - subnet), subnet);
}

static const char *
subnet_of_ipconfig(const cJSON *ipc)
{
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(ipc,
	    "properties");
	const cJSON *subnet = cJSON_GetObjectItemCaseSensitive(props,
	    "subnet");

	return graph_str(subnet, "id");
}

/* Adds the networks of ipConfigurations to the list, once each. */
static void
add_networks(cJSON *list, const cJSON *ipconfigs)
{
	const cJSON *ipc, *known;
	char *vnet;

	cJSON_ArrayForEach(ipc, ipconfigs) {
		if ((vnet = vnet_of_subnet(subnet_of_ipconfig(ipc))) == NULL)
			continue;
		cJSON_ArrayForEach(known, list)
			if (strcasecmp(known->valuestring, vnet) == 0)
				break;
		if (known == NULL)
			cJSON_AddItemToArray(list, cJSON_CreateString(vnet));
		free(vnet);
	}
}

/*
 * A target's networks: from the NICs of vm_id, or, when it is NULL,
 * from every NIC row and every scale set's model among rows.
 */
cJSON *
discover_networks(const cJSON *rows, const char *vm_id)
{
	cJSON *list = cJSON_CreateArray();
	const cJSON *row, *nic, *props;
	const char *type, *vm;

	cJSON_ArrayForEach(row, rows) {
		type = graph_str(row, "type");
		vm = graph_str(row, "vm");
		if (type != NULL && strcasecmp(type, TYPE_NIC) == 0 &&
		    (vm_id == NULL || (vm != NULL && strcasecmp(vm, vm_id) ==
		    0)))
			add_networks(list, cJSON_GetObjectItemCaseSensitive(row,
			    "ipConfigurations"));
		if (vm_id != NULL)	/* a scale set's model is not a VM's */
			continue;
		cJSON_ArrayForEach(nic, cJSON_GetObjectItemCaseSensitive(row,
		    "nics")) {
			props = cJSON_GetObjectItemCaseSensitive(nic,
			    "properties");
			add_networks(list, cJSON_GetObjectItemCaseSensitive(
			    props, "ipConfigurations"));
		}
	}
	return list;
}

static bool
in_list(const cJSON *list, const char *s)
{
	const cJSON *item;

	cJSON_ArrayForEach(item, list)
		if (s != NULL && strcasecmp(item->valuestring, s) == 0)
			return true;
	return false;
}

/*
 * Is one of the target's networks peered with vnet?  Its side of the
 * peering says: Azure shows Connected only once both sides exist (one
 * side alone is Initiated; a side whose other half went, Disconnected).
 */
static bool
peered(const cJSON *rows, const char *vnet, const cJSON *nets)
{
	const cJSON *row, *peer, *props, *remote;
	const char *state, *rid;

	cJSON_ArrayForEach(row, rows) {
		if (!in_list(nets, graph_str(row, "id")))
			continue;
		cJSON_ArrayForEach(peer, cJSON_GetObjectItemCaseSensitive(row,
		    "peerings")) {
			props = cJSON_GetObjectItemCaseSensitive(peer,
			    "properties");
			remote = cJSON_GetObjectItemCaseSensitive(props,
			    "remoteVirtualNetwork");
			state = graph_str(props, "peeringState");
			rid = graph_str(remote, "id");
			if (state != NULL && strcasecmp(state, "Connected") ==
			    0 && rid != NULL && strcasecmp(rid, vnet) == 0)
				return true;
		}
	}
	return false;
}

static enum tristate
row_flag(const cJSON *row, const char *column)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, column);

	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v) ? TRI_TRUE : TRI_FALSE;
	return TRI_UNKNOWN;
}

/* What the row says of a Bastion, as ARM's GET would; -1 if unusable. */
static int
row_bastion(const cJSON *row, struct bastion *b)
{
	const char *dns = graph_str(row, "dnsName");
	const char *sku = graph_str(row, "sku");

	memset(b, 0, sizeof(*b));
	if (dns == NULL || !arm_is_dns_name(dns))
		return -1;
	b->dns_name = xstrdup(dns);
	b->sku = sku != NULL && *sku != '\0' ? xstrdup(sku) : NULL;
	b->tunneling = row_flag(row, "tunneling");
	b->ip_connect = row_flag(row, "ipConnect");
	return 0;
}

/* Can the Bastion of this row reach one of the networks? */
static bool
reaches(const cJSON *rows, const cJSON *row, const struct bastion *b,
    const cJSON *nets)
{
	const char *own = graph_str(row, "vnet");
	char *vnet = NULL;
	bool yes;

	if (own == NULL || *own == '\0') {
		vnet = vnet_of_subnet(subnet_of_ipconfig(cJSON_GetArrayItem(
		    cJSON_GetObjectItemCaseSensitive(row, "ipConfigurations"),
		    0)));
		own = vnet;
	}
	if (own == NULL)
		return false;
	yes = in_list(nets, own) ||
	    (!arm_is_developer(b) && peered(rows, own, nets));
	free(vnet);
	return yes;
}

/* One that can tunnel: Basic cannot, nor one with tunneling off. */
static bool
can_tunnel(const struct bastion *b)
{
	if (b->sku != NULL && strcasecmp(b->sku, "Basic") == 0)
		return false;
	return arm_is_developer(b) || b->tunneling != TRI_FALSE;
}

/*
 * For a row of rows: 1 when it is a Bastion that reaches one of nets
 * and can tunnel, -1 when it reaches but cannot, else 0.  *b holds what
 * the row says of the Bastion for 1 and -1.
 */
int
discover_bastion_row(const cJSON *rows, const cJSON *row, const cJSON *nets,
    struct bastion *b)
{
	const char *type = graph_str(row, "type");

	if (type == NULL || strcasecmp(type, TYPE_BASTION) != 0 ||
	    row_bastion(row, b) == -1)
		return 0;
	if (!reaches(rows, row, b, nets)) {
		arm_bastion_free(b);
		return 0;
	}
	return can_tunnel(b) ? 1 : -1;
}

static void
list_bastions(const char *target, char **ids, int n)
{
	int i;

	const char *name = strrchr(target, '/');

	error("%d Bastions reach %s; choose one with a Host block in the "
	    "configuration (~/.config/bastion-stdio/config), or -o Bastion:",
	    n, target);
	for (i = 0; i < n && i < LIST_MAX; i++)
		error("    %s", ids[i]);
	error("  Host %s", name != NULL ? name + 1 : target);
	error("      Bastion %s", ids[0]);
}

/*
 * Says why no Bastion was chosen: one that reaches the target but
 * cannot tunnel, or none at all.  Returns the exit status.
 */
static int
none_found(const char *target, const char *refused_id,
    const struct bastion *refused, const cJSON *nets)
{
	struct resource_id r;
	int status;

	if (refused_id != NULL && resource_id_parse(refused_id, &r) == 0) {
		status = arm_check_bastion(refused, r.name, false);
		resource_id_free(&r);
		return status;
	}
	if (cJSON_GetArraySize(nets) == 0)
		error("cannot tell which virtual network %s is in; set "
		    "Bastion for it", target);
	else
		error("no Bastion visible to this credential is in or peered "
		    "with %s, the network of %s; set Bastion for it",
		    cJSON_GetArrayItem(nets, 0)->valuestring, target);
	return EXIT_CONFIG;
}

/* Picks the one Bastion that reaches the target and can tunnel. */
static int
choose(const cJSON *rows, const cJSON *nets, const char *target, char **id,
    struct bastion *b)
{
	const cJSON *row;
	struct bastion cand, refused = { 0 };
	char *ids[LIST_MAX], *refused_id = NULL;
	int n = 0, r = 0, k;

	cJSON_ArrayForEach(row, rows) {
		if ((k = discover_bastion_row(rows, row, nets, &cand)) == 0)
			continue;
		if (k == -1 && refused_id == NULL) {
			refused_id = xstrdup(graph_str(row, "id"));
			refused = cand;
			continue;
		}
		if (k == 1 && n < LIST_MAX) {
			ids[n] = xstrdup(graph_str(row, "id"));
			if (n++ == 0) {
				*b = cand;
				continue;
			}
		}
		arm_bastion_free(&cand);
	}
	if (n == 0)
		r = none_found(target, refused_id, &refused, nets);
	else if (n > 1) {
		list_bastions(target, ids, n);
		arm_bastion_free(b);
		r = EXIT_CONFIG;
	} else
		*id = xstrdup(ids[0]);
	while (n-- > 0)
		free(ids[n]);
	free(refused_id);
	arm_bastion_free(&refused);
	return r;
}

/*
 * Finds the Bastion for target_id.  0 with *id and *b (what ARM says
 * of it), or an exit status after reporting.
 */
int
discover_bastion(struct http *h, const struct options *o,
    const struct token *t, const char *target_id, char **id,
    struct bastion *b)
{
	cJSON *rows = NULL, *nets = NULL;
	char *query, *why;
	int r;

	*id = NULL;
	memset(b, 0, sizeof(*b));
	why = xasprintf("find the Bastion for %s", target_id);
	query = nics_query(target_id);
	r = graph_query(h, o, t, NULL, query, why, &rows);
	free(query);
	if (r == 0) {
		nets = discover_networks(rows, NULL);
		cJSON_Delete(rows);
		rows = NULL;
	}
	if (r == 0 && cJSON_GetArraySize(nets) == 0)
		r = none_found(target_id, NULL, NULL, nets);
	else if (r == 0) {
		query = bastions_query(nets);
		r = graph_query(h, o, t, NULL, query, why, &rows);
		free(query);
	}
	if (r == 0)
		r = choose(rows, nets, target_id, id, b);
	free(why);
	cJSON_Delete(rows);
	cJSON_Delete(nets);
	if (r == 0)
		verbose("Bastion for %s: %s", target_id, *id);
	return r;
}
