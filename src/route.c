/*
 * The route of one connection: which target, through which Bastion, and
 * what ARM says of that Bastion.  Settings decide what they can; ARM
 * (Resource Graph) finds the rest; every answer is cached for
 * ArmCacheTime, so that a warm connection makes no ARM request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arm.h"
#include "discover.h"
#include "log.h"
#include "lookup.h"
#include "misc.h"
#include "route.h"
#include "target.h"

struct find_ctx {
	struct http		*h;
	const struct options	*o;
	const struct token	*t;
	const char		*what;	/* HOST, or the target id */
	char			*power;	/* what Resource Graph said, or NULL */
	struct bastion		 b;	/* the Bastion discovery found */
	int			 found_bastion;
};

static int
find_target(void *arg, char **value)
{
	struct find_ctx *c = arg;
	struct found f;
	int r;

	if ((r = discover_target(c->h, c->o, c->t, c->what, &f)) != 0)
		return r;
	*value = f.id;
	c->power = f.power;
	return 0;
}

static int
find_bastion(void *arg, char **value)
{
	struct find_ctx *c = arg;
	int r;

	if ((r = discover_bastion(c->h, c->o, c->t, c->what, value,
	    &c->b)) != 0)
		return r;
	c->found_bastion = 1;
	return 0;
}

/* Whether id parses and is of the kind that is_kind() accepts. */
static bool
id_is(const char *id, bool (*is_kind)(const struct resource_id *))
{
	struct resource_id r;
	bool yes;

	if (resource_id_parse(id, &r) == -1)
		return false;
	yes = is_kind(&r);
	resource_id_free(&r);
	return yes;
}

/* Cached values that can be what discovery found. */
static bool
is_target_id(const char *id)
{
	return id_is(id, resource_id_is_vm);
}

static bool
is_bastion_id(const char *id)
{
	return id_is(id, resource_id_is_bastion);
}

/* The key of HOST's lookup: the same HOST in another scope differs. */
static char *
target_key(const struct options *o, const char *host)
{
	return xasprintf("%s|%s|%s", host, o->target_subscription ?
	    o->target_subscription : "", o->target_resource_group ?
	    o->target_resource_group : "");
}

/* Sets rt->tg.resource_id from ARM when the settings could not. */
static int
route_target(struct http *h, const struct options *o, const struct token *t,
    const char *host, struct route *rt)
{
	struct find_ctx c = { h, o, t, host, NULL, { 0 }, 0 };
	struct lookup_how how = { find_target, &c, is_target_id };
	char *key;
	bool cached;
	int r;

	if (rt->tg.resource_id != NULL)
		return 0;
	key = target_key(o, host);
	r = lookup(o, t, "target", key, &how, &rt->tg.resource_id, &cached);
	free(key);
	rt->cached |= cached;
	rt->power = c.power;
	return r;
}

/* Sets rt->bastion_id: the Bastion keyword, or the one that reaches. */
static int
route_bastion(struct http *h, const struct options *o,
    const struct token *t, struct route *rt)
{
	struct find_ctx c = { h, o, t, rt->tg.resource_id, NULL, { 0 }, 0 };
	struct lookup_how how = { find_bastion, &c, is_bastion_id };
	bool cached;
	int r;

	if (o->bastion != NULL) {
		rt->bastion_id = xstrdup(o->bastion);
		return 0;
	}
	r = lookup(o, t, "bastion-for", rt->tg.resource_id, &how,
	    &rt->bastion_id, &cached);
	rt->cached |= cached;
	if (r == 0 && c.found_bastion) {
		/* Resource Graph said what ARM's GET would */
		arm_remember_bastion(o, t, rt->bastion_id, &c.b);
		rt->b = c.b;
		return 0;
	}
	arm_bastion_free(&c.b);
	return r;
}

/*
 * Checks the settings, HOST and PORT (unless HOST is NULL) before any
 * request: 0, or an exit status after reporting.  What they leave open,
 * route_find() finds.
 */
int
route_check(const struct options *o, const char *host, const char *port,
    struct route *rt)
{
	struct resource_id bid;
	int r;

	memset(rt, 0, sizeof(*rt));
	memset(&bid, 0, sizeof(bid));
	if (o->bastion != NULL && (resource_id_parse(o->bastion, &bid) ==
	    -1 || !resource_id_is_bastion(&bid))) {
		resource_id_free(&bid);
		error("Bastion \"%.200s\" is not the resource id of a Bastion "
		    "host", o->bastion);
		return EXIT_CONFIG;
	}
	r = host == NULL ? 0 :
	    target_resolve(host, port, o, o->bastion ? &bid : NULL, &rt->tg);
	resource_id_free(&bid);
	rt->target_set = rt->tg.resource_id != NULL;
	return r;
}

/* The last part of a resource id, for messages. */
static const char *
id_name(const char *id)
{
	const char *slash = strrchr(id, '/');

	return slash != NULL ? slash + 1 : id;
}

/*
 * Completes the route with ARM: the target, the Bastion, and what ARM
 * says of the Bastion, which must be able to carry this connection.
 * 0, or an exit status after reporting.
 */
int
route_find(struct http *h, const struct options *o, const struct token *t,
    const char *host, struct route *rt)
{
	bool cached = false;
	int r;

	if ((r = route_target(h, o, t, host, rt)) != 0 ||
	    (r = route_bastion(h, o, t, rt)) != 0)
		return r;
	if (rt->b.dns_name == NULL &&
	    (r = arm_get_bastion(h, o, t, rt->bastion_id, &rt->b,
	    &cached)) != 0)
		return r;
	rt->cached |= cached;
	return arm_check_bastion(&rt->b, id_name(rt->bastion_id),
	    rt->tg.ip != NULL);
}

/* Forgets what ARM found, in the cache and in rt. */
void
route_forget(const struct options *o, const struct token *t,
    const char *host, struct route *rt)
{
	char *key = target_key(o, host);

	if (rt->bastion_id != NULL) {
		if (o->bastion == NULL && rt->tg.resource_id != NULL)
			lookup_forget(o, t, "bastion-for",
			    rt->tg.resource_id);
		arm_forget_bastion(o, t, rt->bastion_id);
	}
	if (!rt->target_set) {
		lookup_forget(o, t, "target", key);
		free(rt->tg.resource_id);
		rt->tg.resource_id = NULL;
	}
	free(key);
	free(rt->bastion_id);
	rt->bastion_id = NULL;
	free(rt->power);
	rt->power = NULL;
	arm_bastion_free(&rt->b);
	rt->cached = false;
}

/*
 * A route from the cache led nowhere: it may be stale.  Looks it up in
 * ARM again; 0 when the new route differs and is worth a try, -1 when
 * it is the same, or an exit status after reporting (the VM is gone).
 */
int
route_refresh(struct http *h, const struct options *o,
    const struct token *t, const char *host, struct route *rt)
{
	char *before = xasprintf("%s|%s|%s", rt->tg.resource_id,
	    rt->bastion_id, rt->b.dns_name);
	char *after;
	int r;

	verbose("the cached route may be stale: asking ARM again");
	route_forget(o, t, host, rt);
	if ((r = route_find(h, o, t, host, rt)) == 0) {
		after = xasprintf("%s|%s|%s", rt->tg.resource_id,
		    rt->bastion_id, rt->b.dns_name);
		r = strcmp(before, after) == 0 ? -1 : 0;
		free(after);
	}
	free(before);
	return r;
}

void
route_free(struct route *rt)
{
	target_free(&rt->tg);
	free(rt->bastion_id);
	free(rt->power);
	arm_bastion_free(&rt->b);
	memset(rt, 0, sizeof(*rt));
}
