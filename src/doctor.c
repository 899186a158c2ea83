/*
 * `bastion-stdio doctor [HOST [PORT]]` walks the steps of a connection
 * without opening a tunnel: the settings and where they came from, the
 * credential (its source, audience, tenant and expiry, never the token),
 * the Bastion in ARM, the target, and a session the data plane creates
 * and deletes.  One line per step on stdout; what failed says why on
 * stderr, as a connection would.  The status is 0 only if all passed.
 */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arm.h"
#include "cred.h"
#include "doctor.h"
#include "jwt.h"
#include "log.h"
#include "misc.h"
#include "route.h"
#include "session.h"
#include "target.h"

struct doctor {
	const struct options	*o;
	struct http		 h;
	struct token		 tok;
	struct route		 rt;
	int			 status;	/* the first failure's */
};

/* One line: a mark, the step, what was found or what to do. */
static void
step(struct doctor *d, const char *name, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
step(struct doctor *d, const char *name, int r, const char *fmt, ...)
{
	char text[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	printf("%s %-10s %s\n", r == 0 ? "[ok]  " : "[FAIL]", name, text);
	fflush(stdout);
	if (r != 0 && d->status == 0)
		d->status = r;
}

static int
check_settings(struct doctor *d, const char *host, const char *port)
{
	const struct options *o = d->o;
	char trust[300];
	int r;

	step(d, "config", 0, "files: %s; Host lines: %s",
	    o->files_read ? o->files_read : "none",
	    o->hosts_matched ? o->hosts_matched : "none");
	if (o->ca_file != NULL)
		snprintf(trust, sizeof(trust), "%s", o->ca_file);
	else
		snprintf(trust, sizeof(trust), "(system%s%s)",
		    o->ca_dir ? ": " : "", o->ca_dir ? o->ca_dir : "");
	step(d, "settings", 0, "Cloud %s, ArmEndpoint %s, AuthorityHost %s, "
	    "CAFile %s, ConnectTimeout %ld", o->cloud->name, o->arm_endpoint,
	    o->authority_host, trust, o->connect_timeout);
	if (o->bastion == NULL && host == NULL) {
		step(d, "bastion", EXIT_CONFIG, "no Bastion: set it to the "
		    "Bastion's resource id, or give HOST to find one");
		return -1;
	}
	if ((r = route_check(o, host, port, &d->rt)) != 0 &&
	    host == NULL) {
		step(d, "bastion", r, "the Bastion setting is wrong (see "
		    "above)");
		return -1;
	}
	if (r != 0) {
		step(d, "target", r, "HOST %s PORT %s (see above)", host,
		    port);
		return -1;
	}
	return 0;
}

/* What a token says about itself: audience, tenant, expiry. */
static void
describe_token(const struct token *t, char *out, size_t size)
{
	char *claims = jwt_payload(t->access_token);
	cJSON *root = claims ? cJSON_Parse(claims) : NULL;
	const cJSON *aud = cJSON_GetObjectItem(root, "aud");
	const cJSON *tid = cJSON_GetObjectItem(root, "tid");

	snprintf(out, size, "from %s; audience %s, tenant %s; expires in "
	    "%ld min", t->source, cJSON_IsString(aud) ? aud->valuestring :
	    "(not a JWT)", cJSON_IsString(tid) ? tid->valuestring : "?",
	    (long)(t->expires_on - time(NULL)) / 60);
	cJSON_Delete(root);
	free(claims);
}

static int
check_credential(struct doctor *d)
{
	char text[400];
	int r;

	if ((r = cred_get_arm_token(&d->h, d->o, &d->tok)) != 0) {
		step(d, "credential", r, "no ARM token (see above); "
		    "bastion-stdio(1), CREDENTIALS, lists the sources");
		return -1;
	}
	describe_token(&d->tok, text, sizeof(text));
	step(d, "credential", 0, "%s", text);
	return 0;
}

static void
describe_bastion(struct doctor *d)
{
	const struct bastion *b = &d->rt.b;

	step(d, "arm", 0, "Bastion %s: SKU %s, tunneling %s, IP connect %s, "
	    "data plane %s", d->rt.bastion_id, b->sku ? b->sku : "?",
	    b->tunneling == TRI_TRUE ? "on" : b->tunneling == TRI_FALSE ?
	    "off" : "?", b->ip_connect == TRI_TRUE ? "on" :
	    b->ip_connect == TRI_FALSE ? "off" : "?", b->dns_name);
}

/*
 * The target and the Bastion, from ARM itself (the cache is left
 * alone): without HOST, only the Bastion setting's.
 */
static int
check_route(struct doctor *d, const char *host)
{
	struct options fresh = *d->o;
	struct route *rt = &d->rt;
	bool cached;
	int r;

	fresh.arm_cache_time = 0;
	if (host == NULL)
		r = arm_get_bastion(&d->h, &fresh, &d->tok, d->o->bastion,
		    &rt->b, &cached);
	else
		r = route_find(&d->h, &fresh, &d->tok, host, rt);
	if (host != NULL && rt->tg.resource_id != NULL)
		step(d, "target", 0, "%s port %d%s%s%s", rt->tg.resource_id,
		    rt->tg.port, rt->tg.ip ? ", hostname " : "",
		    rt->tg.ip ? rt->tg.ip : "", rt->target_set ? "" :
		    " (found with Resource Graph)");
	if (host != NULL && rt->tg.resource_id == NULL) {
		step(d, "target", r, "cannot find what %s names (see above)",
		    host);
		return -1;
	}
	if (rt->b.dns_name == NULL) {
		step(d, "arm", r, "cannot find or read the Bastion (see "
		    "above); check the settings and the credential's Reader "
		    "role");
		return -1;
	}
	if (rt->bastion_id == NULL)
		rt->bastion_id = xstrdup(d->o->bastion);
	describe_bastion(d);
	if (host == NULL)
		r = arm_check_bastion(&rt->b, rt->bastion_id, false);
	step(d, "sku", r, r == 0 ? "native client tunnels allowed" :
	    "refused (see above)");
	return r == 0 ? 0 : -1;
}

/* A session, created and deleted at once: the data plane answers. */
static void
check_data_plane(struct doctor *d)
{
	struct session s;
	char why[512], *pod = NULL;
	const struct bastion *b = &d->rt.b;
	const char *endpoint = b->dns_name;
	long retry_in;
	int r;

	if (arm_is_developer(b)) {
		if ((r = session_data_pod(&d->h, b->dns_name, d->rt.bastion_id,
		    &d->rt.tg, &d->tok, &pod)) != 0) {
			step(d, "session", r, "no data pod (see above)");
			return;
		}
		endpoint = pod;
	}
	r = session_create(&d->h, endpoint, pod != NULL, &d->rt.tg, &d->tok,
	    &s, why, sizeof(why), &retry_in);
	free(pod);
	if (r != 0) {
		step(d, "session", r, "%s", why[0] ? why : "no answer (see "
		    "above)");
		return;
	}
	r = session_delete(&d->h, &s);
	step(d, "session", r, r == 0 ? "the Bastion at %s made a session for "
	    "port %d and deleted it" : "the Bastion at %s made a session for "
	    "port %d, but did not delete it (see above)", b->dns_name,
	    d->rt.tg.port);
	session_free(&s);
}

int
doctor_command(const struct options *o, const char *host, const char *port)
{
	struct doctor d;
	int r;

	memset(&d, 0, sizeof(d));
	d.o = o;
	if (check_settings(&d, host, port) == -1)
		goto out;
	if ((r = http_init(&d.h, o->ca_file, o->ca_dir, BASTION_STDIO_UA,
	    o->connect_timeout)) != 0) {
		step(&d, "http", r, "cannot set up libcurl");
		goto out;
	}
	/* the data plane needs a target; without HOST it is not asked */
	if (check_credential(&d) == 0 && check_route(&d, host) == 0 &&
	    host != NULL)
		check_data_plane(&d);
	http_cleanup(&d.h);
out:
	token_free(&d.tok);
	route_free(&d.rt);
	return d.status;
}
