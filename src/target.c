/*
 * Checks of names and ids against Azure's naming rules.  They run before
 * any request so that a bad HOST fails at once with a clear message; the
 * names are still percent-encoded wherever they reach a URL or a form.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "log.h"
#include "misc.h"
#include "target.h"

/* Letters, digits and the few punctuation marks Azure names may use. */
static bool
is_name_char(unsigned char c, const char *extra)
{
	return isalnum(c) || (c != '\0' && strchr(extra, c) != NULL);
}

static bool
all_chars(const char *s, const char *extra)
{
	for (; *s != '\0'; s++)
		if (!is_name_char((unsigned char)*s, extra))
			return false;
	return true;
}

bool
target_is_ip(const char *host)
{
	unsigned char addr[16];

	return inet_pton(AF_INET, host, addr) == 1 ||
	    inet_pton(AF_INET6, host, addr) == 1;
}

/* Linux VM names: 1 to 64 of letters, digits, '.', '_' and '-'. */
bool
target_is_vm_name(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= 64 && all_chars(name, "._-") &&
	    name[0] != '.' && name[0] != '-' && name[n - 1] != '.';
}

/*
 * Resource groups allow more (parentheses, and Unicode letters, which
 * arrive here as UTF-8 bytes); they may not end in '.'.
 */
bool
target_is_resource_group(const char *name)
{
	size_t i, n = strlen(name);

	if (n < 1 || n > 90 || name[n - 1] == '.')
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x80 && !is_name_char(c, "._-()"))
			return false;
	}
	return true;
}

/* Subscription ids are GUIDs; only their alphabet is enforced. */
bool
target_is_subscription(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= 64 && all_chars(name, "-");
}

int
target_parse_port(const char *s, int *port)
{
	long v;

	if (parse_number(s, 1, 65535, &v) == -1)
		return -1;
	*port = (int)v;
	return 0;
}

void
target_free(struct target *t)
{
	free(t->resource_id);
	free(t->ip);
	memset(t, 0, sizeof(*t));
}

void
resource_id_free(struct resource_id *r)
{
	free(r->subscription);
	free(r->resource_group);
	free(r->provider);
	free(r->type);
	free(r->name);
	free(r->child_type);
	free(r->child_name);
	memset(r, 0, sizeof(*r));
}

/* Copies the next '/'-separated segment; NULL at the end or if empty. */
static char *
next_segment(const char **p)
{
	const char *s = *p, *e;
	char *seg;

	if (*s != '/')
		return NULL;
	s++;
	e = s + strcspn(s, "/");
	if (e == s)
		return NULL;
	seg = xmalloc((size_t)(e - s) + 1);
	memcpy(seg, s, (size_t)(e - s));
	seg[e - s] = '\0';
	*p = e;
	return seg;
}

/* Takes the literal segment word; 0 or -1. */
static int
expect_segment(const char **p, const char *word)
{
	char *seg = next_segment(p);
	int r = (seg != NULL && strcasecmp(seg, word) == 0) ? 0 : -1;

	free(seg);
	return r;
}

/*
 * Parses a resource id; 0, or -1 when it is not of the form above, has a
 * trailing slash, or holds characters no Azure name can.
 */
int
resource_id_parse(const char *id, struct resource_id *r)
{
	const char *p = id;

	memset(r, 0, sizeof(*r));
	if (str_has_ctrl(id) || strpbrk(id, "?#% \\") != NULL ||
	    expect_segment(&p, "subscriptions") == -1 ||
	    (r->subscription = next_segment(&p)) == NULL ||
	    expect_segment(&p, "resourceGroups") == -1 ||
	    (r->resource_group = next_segment(&p)) == NULL ||
	    expect_segment(&p, "providers") == -1 ||
	    (r->provider = next_segment(&p)) == NULL ||
	    (r->type = next_segment(&p)) == NULL ||
	    (r->name = next_segment(&p)) == NULL)
		goto fail;
	if (*p != '\0' && ((r->child_type = next_segment(&p)) == NULL ||
	    (r->child_name = next_segment(&p)) == NULL))
		goto fail;
	if (*p != '\0' || !target_is_subscription(r->subscription) ||
	    !target_is_resource_group(r->resource_group))
		goto fail;
	return 0;
fail:
	resource_id_free(r);
	return -1;
}

bool
resource_id_is_bastion(const struct resource_id *r)
{
	return strcasecmp(r->provider, "Microsoft.Network") == 0 &&
	    strcasecmp(r->type, "bastionHosts") == 0 &&
	    r->child_type == NULL && all_chars(r->name, "._-");
}

/* A virtual machine, or an instance of a uniform scale set. */
bool
resource_id_is_vm(const struct resource_id *r)
{
	if (strcasecmp(r->provider, "Microsoft.Compute") != 0)
		return false;
	if (strcasecmp(r->type, "virtualMachines") == 0)
		return r->child_type == NULL && target_is_vm_name(r->name);
	return strcasecmp(r->type, "virtualMachineScaleSets") == 0 &&
	    r->child_type != NULL &&
	    strcasecmp(r->child_type, "virtualMachines") == 0 &&
	    target_is_vm_name(r->name) && all_chars(r->child_name, "");
}

/*
 * The VM named HOST when TargetResourceGroup and a subscription
 * (TargetSubscription, else the Bastion's) say where it is; otherwise
 * tg->resource_id stays NULL and ARM is asked (discover.c).
 */
static int
vm_target(const char *host, const struct options *o,
    const struct resource_id *bastion, struct target *tg)
{
	const char *sub = o->target_subscription != NULL ?
	    o->target_subscription : bastion != NULL ?
	    bastion->subscription : NULL;
	const char *rg = o->target_resource_group;

	if (!target_is_vm_name(host)) {
		error("HOST \"%.100s\" is neither a VM name nor an IP address",
		    host);
		return EXIT_USAGE;
	}
	if (o->target_subscription != NULL && !target_is_subscription(sub)) {
		error("TargetSubscription \"%.100s\" is not a subscription id",
		    sub);
		return EXIT_CONFIG;
	}
	if (rg != NULL && !target_is_resource_group(rg)) {
		error("TargetResourceGroup \"%.100s\" is not a resource group "
		    "name", rg);
		return EXIT_CONFIG;
	}
	if (rg != NULL && sub != NULL)
		tg->resource_id = xasprintf("/subscriptions/%s/resourceGroups/"
		    "%s/providers/Microsoft.Compute/virtualMachines/%s", sub,
		    rg, host);
	return 0;
}

/*
 * Decides what the Bastion is asked to reach: TargetResourceId if set,
 * IP-connect for an address when a Bastion is configured, else the VM
 * named HOST.  Returns 0, or an exit status after reporting what is
 * wrong with HOST, PORT or settings.  A NULL tg->resource_id means that
 * only ARM can tell: a VM by name, computer name or private IP.
 */
int
target_resolve(const char *host, const char *port, const struct options *o,
    const struct resource_id *bastion, struct target *tg)
{
	struct resource_id rid;

	memset(tg, 0, sizeof(*tg));
	if (target_parse_port(port, &tg->port) == -1) {
		error("PORT \"%.20s\" is not a number from 1 to 65535",
		    port);
		return EXIT_USAGE;
	}
	if (o->target_resource_id != NULL) {
		if (resource_id_parse(o->target_resource_id, &rid) == -1 ||
		    !resource_id_is_vm(&rid)) {
			resource_id_free(&rid);
			error("TargetResourceId \"%.200s\" is not the id of a "
			    "VM or of a scale-set instance",
			    o->target_resource_id);
			return EXIT_CONFIG;
		}
		resource_id_free(&rid);
		tg->resource_id = xstrdup(o->target_resource_id);
		return 0;
	}
	if (target_is_ip(host) && bastion == NULL)
		return 0;
	if (target_is_ip(host)) {
		tg->ip = xstrdup(host);
		tg->resource_id = xasprintf("/subscriptions/%s/resourceGroups/"
		    "%s/providers/Microsoft.Network/bh-hostConnect/%s",
		    bastion->subscription, bastion->resource_group, host);
		return 0;
	}
	return vm_target(host, o, bastion, tg);
}
