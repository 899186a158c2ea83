/*
 * The credential chain.  Today it holds one source, a service principal
 * with a client secret from the environment; other sources slot into the
 * table in the order they should be tried.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "cred.h"
#include "log.h"
#include "misc.h"

struct cred_source {
	const char	*name;
	bool		(*configured)(void);
	int		(*get)(struct http *, const struct options *,
			    struct token *);
};

static bool
env_set(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0';
}

static bool
secret_configured(void)
{
	return env_set("AZURE_TENANT_ID") && env_set("AZURE_CLIENT_ID") &&
	    env_set("AZURE_CLIENT_SECRET");
}

/* The client-credentials grant with AZURE_CLIENT_SECRET. */
static int
secret_get(struct http *h, const struct options *o, struct token *t)
{
	const char *client = getenv("AZURE_CLIENT_ID");
	struct buf form;
	char who[160];
	int r;

	buf_init(&form, 512);
	form_add(&form, "grant_type", "client_credentials");
	form_add(&form, "client_id", client);
	form_add(&form, "client_secret", getenv("AZURE_CLIENT_SECRET"));
	form_add(&form, "scope", o->cloud->arm_scope);
	snprintf(who, sizeof(who), "service principal %.64s", client);
	r = entra_request_token(h, o->authority_host,
	    getenv("AZURE_TENANT_ID"), buf_str(&form), who, t);
	explicit_bzero(form.data, form.cap);
	buf_free(&form);
	return r;
}

static const struct cred_source sources[] = {
	{ "environment (client secret)", secret_configured, secret_get },
};

/* Returns 0 with a token, or an exit status after reporting why not. */
int
cred_get_arm_token(struct http *h, const struct options *o, struct token *t)
{
	size_t i;

	for (i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
		if (!sources[i].configured())
			continue;
		debug("credential: %s", sources[i].name);
		return sources[i].get(h, o, t);
	}
	error("no Azure credential: set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
	    "AZURE_CLIENT_SECRET for a service principal");
	return EXIT_CREDENTIAL;
}
