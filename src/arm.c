/*
 * Reads the Bastion host from ARM and decides whether it can carry a
 * native-client tunnel.  Optional properties may be missing from the
 * answer (new hosts omit enableTunneling); missing means unknown, and the
 * Bastion data plane then has the last word.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arm.h"
#include "log.h"
#include "misc.h"
#include "lookup.h"
#include "target.h"

/* The API version the Azure CLI's bastion extension reads hosts with. */
#define ARM_BASTION_API	"2024-01-01"

void
arm_bastion_free(struct bastion *b)
{
	free(b->dns_name);
	free(b->sku);
	memset(b, 0, sizeof(*b));
}

static enum tristate
tristate(const cJSON *item)
{
	if (cJSON_IsBool(item))
		return cJSON_IsTrue(item) ? TRI_TRUE : TRI_FALSE;
	return TRI_UNKNOWN;
}

/*
 * A data-plane host name, with an optional :port: letters, digits, dots
 * and dashes, so that it cannot change the meaning of the URLs built on it.
 */
bool
arm_is_dns_name(const char *s)
{
	size_t host = strcspn(s, ":");
	long port;

	if (host == 0 || host > 253)
		return false;
	if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789.-") != host)
		return false;
	return s[host] == '\0' ||
	    parse_number(s + host + 1, 1, 65535, &port) == 0;
}

/* 0, or -1 when the answer has no usable properties.dnsName. */
int
arm_parse_bastion(const char *body, struct bastion *b)
{
	cJSON *root = cJSON_Parse(body);
	const cJSON *props, *dns, *sku, *name;

	memset(b, 0, sizeof(*b));
	b->tunneling = b->ip_connect = TRI_UNKNOWN;
	if (root == NULL)
		return -1;
	props = cJSON_GetObjectItemCaseSensitive(root, "properties");
	dns = cJSON_GetObjectItemCaseSensitive(props, "dnsName");
	sku = cJSON_GetObjectItemCaseSensitive(root, "sku");
	name = cJSON_GetObjectItemCaseSensitive(sku, "name");
	if (cJSON_IsString(dns) && arm_is_dns_name(dns->valuestring))
		b->dns_name = xstrdup(dns->valuestring);
	if (cJSON_IsString(name) && !str_has_ctrl(name->valuestring))
		b->sku = xstrdup(name->valuestring);
	b->tunneling = tristate(cJSON_GetObjectItemCaseSensitive(props,
	    "enableTunneling"));
	b->ip_connect = tristate(cJSON_GetObjectItemCaseSensitive(props,
	    "enableIpConnect"));
	cJSON_Delete(root);
	if (b->dns_name == NULL) {
		arm_bastion_free(b);
		return -1;
	}
	return 0;
}

/*
 * Adds the first of error.details that says something: Resource Graph
 * puts the reason there and a support notice in the message.
 */
static void
append_detail(const cJSON *err, char *out, size_t size)
{
	const cJSON *d, *msg;
	size_t n = strlen(out);

	cJSON_ArrayForEach(d, cJSON_GetObjectItem(err, "details")) {
		msg = cJSON_GetObjectItem(d, "message");
		if (cJSON_IsString(msg) && *msg->valuestring != '\0' &&
		    !str_has_ctrl(msg->valuestring)) {
			snprintf(out + n, size - n, " (%.200s)",
			    msg->valuestring);
			return;
		}
	}
}

/* ARM errors: {"error": {"code", "message"}}, some RPs capitalised. */
void
arm_describe_error(const char *body, char *out, size_t size)
{
	cJSON *root = cJSON_Parse(body);
	const cJSON *err, *code, *msg;

	snprintf(out, size, "no error details");
	if (root == NULL)
		return;
	err = cJSON_GetObjectItem(root, "error");
	code = cJSON_GetObjectItem(err, "code");
	msg = cJSON_GetObjectItem(err, "message");
	if (cJSON_IsString(code) && cJSON_IsString(msg))
		snprintf(out, size, "%.100s: %.300s", code->valuestring,
		    msg->valuestring);
	else if (cJSON_IsString(msg))
		snprintf(out, size, "%.300s", msg->valuestring);
	if (cJSON_IsString(msg))
		append_detail(err, out, size);
	cJSON_Delete(root);
}

/* Reads the Bastion from ARM; 0, or an exit status after reporting. */
static int
fetch_bastion(struct http *h, const struct options *o,
    const struct token *t, const char *id, struct bastion *b)
{
	struct http_response rs;
	char *url = arm_url(o, id, "", ARM_BASTION_API);
	char *what;
	int r;

	r = arm_request(h, o, t, "GET", url, NULL, &rs);
	free(url);
	if (r == 0 && rs.status != 200) {
		what = xasprintf("read Bastion %s from ARM", id);
		r = arm_report(&rs, what);
		free(what);
	} else if (r == 0 && arm_parse_bastion(buf_str(&rs.body), b) == -1) {
		error("ARM answered for Bastion %s without a valid "
		    "properties.dnsName", id);
		r = EXIT_PROTOCOL;
	}
	if (r == 0)
		debug("Bastion %s: sku %s, tunneling %d, IP connect %d",
		    b->dns_name, b->sku ? b->sku : "unknown", b->tunneling,
		    b->ip_connect);
	http_response_free(&rs);
	return r;
}

/* The Developer SKU (QuickConnect in the CLI's words) has no dnsName of
 * its own: /api/connection names a data pod for each connection. */
bool
arm_is_developer(const struct bastion *b)
{
	return b->sku != NULL && (strcasecmp(b->sku, "Developer") == 0 ||
	    strcasecmp(b->sku, "QuickConnect") == 0);
}

/*
 * Refuses, before asking the data plane, what the Bastion's SKU and flags
 * rule out, with the setting to change.  0 or EXIT_REFUSED.
 */
int
arm_check_bastion(const struct bastion *b, const char *name,
    bool ip_connect)
{
	if (b->sku != NULL && strcasecmp(b->sku, "Basic") == 0) {
		error("Bastion %s has the Basic SKU, which cannot tunnel; "
		    "upgrade it to Standard or Premium and enable native "
		    "client support", name);
		return EXIT_REFUSED;
	}
	if (arm_is_developer(b) && ip_connect) {
		error("Bastion %s has the %s SKU, which cannot connect by IP "
		    "address; connect by VM name", name, b->sku);
		return EXIT_REFUSED;
	}
	if (arm_is_developer(b))
		return 0;	/* no tunneling flag: it always tunnels */
	if (b->tunneling == TRI_FALSE) {
		error("Bastion %s has native client support turned off; "
		    "enable it (enableTunneling) in the Bastion's "
		    "configuration", name);
		return EXIT_REFUSED;
	}
	if (ip_connect && b->ip_connect == TRI_FALSE) {
		error("Bastion %s has IP-based connection turned off; enable "
		    "it (enableIpConnect) or connect by VM name", name);
		return EXIT_REFUSED;
	}
	return 0;
}

/* What the cache keeps of a Bastion: the fields ARM's answer had. */
static char *
bastion_text(const struct bastion *b)
{
	cJSON *root = cJSON_CreateObject(), *props, *sku;
	char *text;

	props = cJSON_AddObjectToObject(root, "properties");
	cJSON_AddStringToObject(props, "dnsName", b->dns_name);
	if (b->tunneling != TRI_UNKNOWN)
		cJSON_AddBoolToObject(props, "enableTunneling", b->tunneling);
	if (b->ip_connect != TRI_UNKNOWN)
		cJSON_AddBoolToObject(props, "enableIpConnect", b->ip_connect);
	if (b->sku != NULL) {
		sku = cJSON_AddObjectToObject(root, "sku");
		cJSON_AddStringToObject(sku, "name", b->sku);
	}
	text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return text;
}

struct fetch_ctx {
	struct http		*h;
	const struct options	*o;
	const struct token	*t;
	const char		*id;
};

static int
fetch_text(void *arg, char **text)
{
	struct fetch_ctx *c = arg;
	struct bastion b;
	int r;

	if ((r = fetch_bastion(c->h, c->o, c->t, c->id, &b)) != 0)
		return r;
	*text = bastion_text(&b);
	arm_bastion_free(&b);
	return 0;
}

/* A cached entry that parses (a corrupt one is looked up again). */
static bool
is_bastion_text(const char *text)
{
	struct bastion b;

	if (arm_parse_bastion(text, &b) == -1)
		return false;
	arm_bastion_free(&b);
	return true;
}

/*
 * Gets the Bastion with that id, from the cache while it is younger
 * than ArmCacheTime (*cached says so), else from ARM.  Returns 0, or an
 * exit status after reporting the error.
 */
int
arm_get_bastion(struct http *h, const struct options *o,
    const struct token *t, const char *id, struct bastion *b, bool *cached)
{
	struct fetch_ctx c = { h, o, t, id };
	struct lookup_how how = { fetch_text, &c, is_bastion_text };
	char *text;
	int r;

	if ((r = lookup(o, t, "arm-bastion", id, &how, &text, cached)) != 0)
		return r;
	/* a cached text passed is_bastion_text(); a fetched one parses */
	r = arm_parse_bastion(text, b);
	free(text);
	return r == 0 ? 0 : EXIT_PROTOCOL;
}

/* Keeps what discovery learnt of a Bastion, as if read from ARM. */
void
arm_remember_bastion(const struct options *o, const struct token *t,
    const char *id, const struct bastion *b)
{
	char *text = bastion_text(b);

	lookup_put(o, t, "arm-bastion", id, text);
	free(text);
}

/* Drops the cached Bastion, which turned out stale. */
void
arm_forget_bastion(const struct options *o, const struct token *t,
    const char *id)
{
	lookup_forget(o, t, "arm-bastion", id);
}
