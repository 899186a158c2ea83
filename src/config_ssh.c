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
/* What the blocks are written from and with. */
struct writer {
	const cJSON	*rows;
	const char	*only;		/* the Bastion setting, or NULL */
	const char	*subscription;	/* TargetSubscription, or NULL */
	const char	*config_file;	/* -F, for the blocks, or NULL */
	cJSON		*aliases;	/* Host names written so far */
};

/*
 * The id of the first Bastion (in Resource Graph's order, by id) that
 * reaches target and can tunnel, only that one if w->only is set; *more
 * counts the others.
 */
static const char *
bastion_for(const struct writer *w, const cJSON *target, int *more)
{
	cJSON *nets = networks_of(w->rows, target);
	const cJSON *row;
	const char *id = NULL, *rid;
	struct bastion b;
	int k;

	*more = 0;
	cJSON_ArrayForEach(row, w->rows) {
		if ((k = discover_bastion_row(w->rows, row, nets, &b)) != 0)
			arm_bastion_free(&b);
		rid = graph_str(row, "id");
		if (k != 1 || rid == NULL || (w->only != NULL &&
		    strcasecmp(w->only, rid) != 0))
			continue;
		if (id == NULL)
			id = rid;
		else
			(*more)++;
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

/* Takes alias unless a block already has it (ssh would use the first). */
static bool
claim(struct writer *w, const char *alias)
{
	const cJSON *a;

	cJSON_ArrayForEach(a, w->aliases)
		if (strcasecmp(a->valuestring, alias) == 0)
			return false;
	cJSON_AddItemToArray(w->aliases, cJSON_CreateString(alias));
	return true;
}

/*
 * One Host block.  Its values are single-quoted for the shell that runs
 * the ProxyCommand: resource group names may hold parentheses.
 */
static void
print_block(const struct writer *w, const char *pattern, const char *what,
    const char *bastion, const char *target)
{
	printf("\n# %s\nHost %s\n", what, pattern);
	printf("    ProxyCommand bastion-stdio");
	if (w->config_file != NULL)
		printf(" -F '%s'", w->config_file);
	printf(" -o 'Bastion=%s'", bastion);
	if (target != NULL)
		printf(" -o 'TargetResourceId=%s'", target);
	printf(" %%h %%p\n");
}

/* The Host name for a VM or scale set. */
static char *
alias_of(const struct writer *w, const cJSON *row)
{
	const char *name = graph_str(row, "name");
	const char *rg = graph_str(row, "resourceGroup");

	if (is_type(row, TYPE_VMSS))
		return xasprintf("%s_*", name);
	if (name_shared(w->rows, row) && rg != NULL)
		return xasprintf("%s.%s", name, rg);
	return xstrdup(name);
}

/* The block for one VM or scale set; 1 if written, else 0. */
static int
print_target(struct writer *w, const cJSON *row)
{
	const char *id = graph_str(row, "id"), *bastion;
	char *alias, *what;
	int more, done = 0;

	if (id == NULL || graph_str(row, "name") == NULL)
		return 0;
	if ((bastion = bastion_for(w, row, &more)) == NULL) {
		printf("\n# %s: no Bastion%s reaches it\n", id,
		    w->only != NULL ? " of the Bastion setting" : "");
		return 0;
	}
	alias = alias_of(w, row);
	if (!claim(w, alias))
		printf("\n# %s: its Host name %s is taken by a block above; "
		    "reach it with -o TargetResourceId\n", id, alias);
	else {
		what = is_type(row, TYPE_VMSS) ? xasprintf("%s: %s_N is "
		    "instance N", id, graph_str(row, "name")) : more > 0 ?
		    xasprintf("%s (%d more Bastions reach it)", id, more) :
		    xstrdup(id);
		print_block(w, alias, what, bastion,
		    is_type(row, TYPE_VMSS) ? NULL : id);
		free(what);
		done = 1;
	}
	free(alias);
	return done;
}

/* A VM or scale set of TargetSubscription, if it is set. */
static bool
wanted(const struct writer *w, const cJSON *row)
{
	const char *id = graph_str(row, "id");
	size_t n;

	if (!is_type(row, TYPE_VM) && !is_type(row, TYPE_VMSS))
		return false;
	if (w->subscription == NULL)
		return true;
	n = strlen("/subscriptions/");
	return id != NULL && strncasecmp(id, "/subscriptions/", n) == 0 &&
	    strncasecmp(id + n, w->subscription, strlen(w->subscription)) ==
	    0 && id[n + strlen(w->subscription)] == '/';
}

static int
print_config(struct writer *w)
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
	cJSON_ArrayForEach(row, w->rows)
		if (wanted(w, row))
			n += print_target(w, row);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		error("cannot write the configuration to stdout");
		return EXIT_LOCAL_IO;
	}
	if (n == 0)
		logit("no VM is reachable through a Bastion this credential "
		    "can see");
	return 0;
}

/*
 * Bastions may sit in another subscription than their VMs (a hub), so
 * the query spans all; TargetSubscription narrows only the VMs.  The
 * blocks read the same configuration file as this run did (-F), but not
 * what -o set.
 */
int
config_ssh_command(const struct options *o, const char *config_file,
    bool options_given)
{
	struct writer w = { NULL, o->bastion, o->target_subscription,
	    config_file, NULL };
	struct token tok;
	struct http h;
	cJSON *rows = NULL;
	int r;

	memset(&tok, 0, sizeof(tok));
	if (options_given)
		logit("warning: the blocks do not carry what -o set; put "
		    "such settings in a configuration file");
	if ((r = http_init(&h, o->ca_file, o->ca_dir, BASTION_STDIO_UA,
	    o->connect_timeout)) != 0)
		return r;
	if ((r = cred_get_arm_token(&h, o, &tok)) == 0 &&
	    (r = graph_query(&h, o, &tok, NULL, QUERY,
	    "list VMs and Bastions", &rows)) == 0) {
		w.rows = rows;
		w.aliases = cJSON_CreateArray();
		r = print_config(&w);
		cJSON_Delete(w.aliases);
	}
	cJSON_Delete(rows);
	token_free(&tok);
	http_cleanup(&h);
	return r;
}
