/*
 * `bastion-stdio config-ssh` prints ssh_config Host blocks for the VMs
 * that the Bastions this credential can see reach, each naming its
 * Bastion and VM by id, so that those connections need no lookup at
 * all.  One Resource Graph query brings VMs, NICs, networks and
 * Bastions; the reach rules are discovery's (discover_bastion.c).
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config_ssh.h"
#include "cred.h"
#include "discover.h"
#include "graph.h"
#include "log.h"
#include "misc.h"

#define TYPE_VM		"microsoft.compute/virtualmachines"
#define TYPE_VMSS	"microsoft.compute/virtualmachinescalesets"

#define QUERY \
	"Resources | where type in~ ('microsoft.network/bastionhosts', " \
	"'microsoft.network/virtualnetworks', " \
	"'microsoft.network/networkinterfaces', '" TYPE_VM "', '" \
	TYPE_VMSS "') | project " DISCOVER_COLUMNS

static bool
is_type(const cJSON *row, const char *type)
{
	const char *t = graph_str(row, "type");

	return t != NULL && strcasecmp(t, type) == 0;
}

/* The networks of a VM or of a uniform scale set's model. */
static cJSON *
networks_of(const cJSON *rows, const cJSON *target)
{
	cJSON *one, *nets;

	if (is_type(target, TYPE_VM))
		return discover_networks(rows, graph_str(target, "id"));
	one = cJSON_CreateArray();
	cJSON_AddItemReferenceToArray(one, (cJSON *)target);
	nets = discover_networks(one, NULL);
	cJSON_Delete(one);
	return nets;
}
/*
 * The id of the first Bastion (in Resource Graph's order, by id) that
 * reaches target and can tunnel; only that one if only is set.
 */
static const char *
bastion_for(const cJSON *rows, const cJSON *target, const char *only)
{
	cJSON *nets = networks_of(rows, target);
	const cJSON *row;
	const char *id = NULL, *rid;
	struct bastion b;
	int k;

	cJSON_ArrayForEach(row, rows) {
		if ((k = discover_bastion_row(rows, row, nets, &b)) != 0)
			arm_bastion_free(&b);
		rid = graph_str(row, "id");
		if (k == 1 && rid != NULL &&
		    (only == NULL || strcasecmp(only, rid) == 0)) {
			id = rid;
			break;
		}
	}
	cJSON_Delete(nets);
	return id;
}

/* Is another VM of rows called the same?  Then the group tells apart. */
static bool
name_shared(const cJSON *rows, const cJSON *vm)
{
	const cJSON *row;
	const char *name = graph_str(vm, "name"), *other;

	cJSON_ArrayForEach(row, rows) {
		other = graph_str(row, "name");
		if (row != vm && is_type(row, TYPE_VM) && name != NULL &&
		    other != NULL && strcasecmp(other, name) == 0)
			return true;
	}
	return false;
}

/*
 * One Host block.  The ids are single-quoted for the shell that runs
 * the ProxyCommand: resource group names may hold parentheses.
 */
static void
print_block(const char *pattern, const char *what, const char *bastion,
    const char *target)
{
	printf("\n# %s\nHost %s\n", what, pattern);
	printf("    ProxyCommand bastion-stdio -o 'Bastion=%s'", bastion);
	if (target != NULL)
		printf(" -o 'TargetResourceId=%s'", target);
	printf(" %%h %%p\n");
}

/* The block for one VM or scale set; 1 if printed, 0 if unreachable. */
static int
print_target(const cJSON *rows, const cJSON *row, const char *only)
{
	const char *id = graph_str(row, "id"), *name = graph_str(row, "name");
	const char *rg = graph_str(row, "resourceGroup");
	const char *bastion;
	char *pattern, *what;

	if (id == NULL || name == NULL)
		return 0;
	if ((bastion = bastion_for(rows, row, only)) == NULL) {
		printf("\n# %s: no Bastion%s reaches it\n", id,
		    only != NULL ? " of the Bastion setting" : "");
		return 0;
	}
	if (is_type(row, TYPE_VMSS)) {
		pattern = xasprintf("%s_*", name);
		what = xasprintf("%s: %s_N is instance N", id, name);
		print_block(pattern, what, bastion, NULL);
	} else {
		pattern = name_shared(rows, row) && rg != NULL ?
		    xasprintf("%s.%s", name, rg) : xstrdup(name);
		what = xstrdup(id);
		print_block(pattern, what, bastion, id);
	}
	free(pattern);
	free(what);
	return 1;
}

static int
print_config(const cJSON *rows, const char *only)
{
	const cJSON *row;
	char when[64];
	time_t now = time(NULL);
	int n = 0;

	strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", gmtime(&now));
	printf("# Written by bastion-stdio config-ssh on %s: the VMs this\n"
	    "# credential can reach through Azure Bastion.  Add it to "
	    "~/.ssh/config,\n# or save it and Include it from there.\n",
	    when);
	cJSON_ArrayForEach(row, rows)
		if (is_type(row, TYPE_VM) || is_type(row, TYPE_VMSS))
			n += print_target(rows, row, only);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		error("cannot write the configuration to stdout");
		return EXIT_LOCAL_IO;
	}
	if (n == 0)
		logit("no VM is reachable through a Bastion this credential "
		    "can see");
	return 0;
}

int
config_ssh_command(const struct options *o)
{
	struct token tok;
	struct http h;
	cJSON *rows = NULL;
	int r;

	memset(&tok, 0, sizeof(tok));
	if ((r = http_init(&h, o->ca_file, BASTION_STDIO_UA,
	    o->connect_timeout)) != 0)
		return r;
	if ((r = cred_get_arm_token(&h, o, &tok)) == 0 &&
	    (r = graph_query(&h, o, &tok, o->target_subscription, QUERY,
	    "list VMs and Bastions", &rows)) == 0)
		r = print_config(rows, o->bastion);
	cJSON_Delete(rows);
	token_free(&tok);
	http_cleanup(&h);
	return r;
}
