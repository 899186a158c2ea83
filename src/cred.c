/*
 * The credential chain and the token cache in front of it.  Each source
 * names the principal it would get a token for; with the cloud, the
 * authority and the scope that is the cache key.  Only a process that
 * finds no usable token takes the entry's lock and asks the source, so
 * that many connections started at once make one request between them.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cache.h"
#include "cred.h"
#include "log.h"
#include "misc.h"

/* Refresh this long before expiry, or at half-life for long tokens. */
#define REFRESH_MARGIN		300
#define LONG_LIFETIME		7200

static const struct cred_source *const sources[] = {
	&cred_environment,
	&cred_workload_identity,
	&cred_managed_identity,
	&cred_login,
	&cred_azure_cli,
	&cred_device_code,
};

bool
cred_env_set(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0';
}

bool
cred_token_usable(const struct token *t, time_t now)
{
	time_t lifetime = t->expires_on - t->issued_on;
	time_t refresh_on = lifetime >= LONG_LIFETIME ?
	    t->issued_on + lifetime / 2 : t->expires_on - REFRESH_MARGIN;

	return t->access_token != NULL && now < refresh_on;
}

static void
cache_name(const struct cred_ctx *c, const struct cred_source *s,
    char *name, size_t size)
{
	struct buf key;

	buf_init(&key, 256);
	buf_puts(&key, "token|");
	buf_puts(&key, c->o->cloud->name);
	buf_puts(&key, "|");
	buf_puts(&key, c->o->authority_host);
	buf_puts(&key, "|");
	buf_puts(&key, s->name);
	buf_puts(&key, "|");
	s->principal(c, &key);
	buf_puts(&key, "|");
	buf_puts(&key, c->scope);
	cache_key_name(buf_str(&key), name, size);
	buf_free(&key);
}

/* A cached token; 0, or -1 if absent, corrupt or due for refresh. */
static int
read_cached(const char *name, struct token *t)
{
	struct buf b;
	cJSON *root = NULL;
	const cJSON *tok, *exp, *iss;
	int r = -1;

	buf_init(&b, 4096);
	if (cache_read(name, &b) == 0)
		root = cJSON_Parse(buf_str(&b));
	tok = cJSON_GetObjectItemCaseSensitive(root, "access_token");
	exp = cJSON_GetObjectItemCaseSensitive(root, "expires_on");
	iss = cJSON_GetObjectItemCaseSensitive(root, "issued_on");
	if (cJSON_IsString(tok) && *tok->valuestring != '\0' &&
	    cJSON_IsNumber(exp) && cJSON_IsNumber(iss)) {
		t->access_token = xstrdup(tok->valuestring);
		t->expires_on = (time_t)exp->valuedouble;
		t->issued_on = (time_t)iss->valuedouble;
		if (cred_token_usable(t, time(NULL)))
			r = 0;
		else
			token_free(t);
	} else if (b.len > 0)
		logit("warning: ignoring a corrupt token cache entry %s", name);
	cJSON_Delete(root);
	explicit_bzero(b.data, b.cap);
	buf_free(&b);
	return r;
}

static void
write_cached(const char *name, const struct token *t)
{
	char *text = xasprintf("{\"access_token\":\"%s\",\"expires_on\":%lld,"
	    "\"issued_on\":%lld}\n", t->access_token, (long long)t->expires_on,
	    (long long)t->issued_on);

	(void)cache_write(name, text);
	explicit_bzero(text, strlen(text));
	free(text);
}

/*
 * A token from one source, through the cache.  The lock is held while the
 * source is asked, so that the other processes waiting for it find the
 * token in the cache when they get the lock.
 */
static int
get_through_cache(const struct cred_ctx *c, const struct cred_source *s,
    struct token *t)
{
	struct cache_lock lock;
	char name[64];
	int r;

	cache_name(c, s, name, sizeof(name));
	t->source = s->name;
	if (read_cached(name, t) == 0) {
		debug("credential: %s, from the cache", s->name);
		return 0;
	}
	(void)cache_lock(name, c->o->connect_timeout, &lock);
	if (read_cached(name, t) == 0) {
		debug("credential: %s, from the cache after a wait", s->name);
		cache_unlock(&lock);
		return 0;
	}
	debug("credential: %s", s->name);
	if ((r = s->get(c, t)) == 0) {
		t->source = s->name;	/* the source's parser cleared it */
		write_cached(name, t);
	}
	cache_unlock(&lock);
	return r;
}

static void
no_credential(const struct options *o)
{
	if (o->credential != NULL) {
		error("Credential %s is not configured here: see "
		    "bastion-stdio(1), CREDENTIALS", o->credential);
		return;
	}
	error("no Azure credential: sign in with 'bastion-stdio login' or "
	    "'az login', or set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
	    "AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH)");
}

/* Managed identity takes the resource: the scope without /.default. */
void
cred_ctx_init(struct cred_ctx *c, struct http *h, const struct options *o)
{
	size_t n;

	c->h = h;
	c->o = o;
	c->scope = o->cloud->arm_scope;
	n = strlen(c->scope) - strlen("/.default");
	snprintf(c->resource, sizeof(c->resource), "%.*s", (int)n, c->scope);
}

/*
 * Returns 0 with an ARM token from the first source that is configured
 * and answers, or an exit status after reporting why there is none.
 */
int
cred_get_arm_token(struct http *h, const struct options *o, struct token *t)
{
	struct cred_ctx c;
	size_t i;
	int r;

	memset(t, 0, sizeof(*t));
	cred_ctx_init(&c, h, o);
	for (i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
		if (o->credential != NULL &&
		    strcasecmp(o->credential, sources[i]->name) != 0)
			continue;
		if (!sources[i]->configured(&c))
			continue;
		r = get_through_cache(&c, sources[i], t);
		if (r != CRED_UNAVAILABLE)
			return r;
	}
	no_credential(o);
	return EXIT_CREDENTIAL;
}

/*
 * A token that the Bastion refused although it looked fresh (revoked, or
 * a clock skew): drops it from the cache and asks its source again.
 */
int
cred_renew_arm_token(struct http *h, const struct options *o, struct token *t)
{
	struct cred_ctx c;
	char name[64];
	size_t i;

	cred_ctx_init(&c, h, o);
	for (i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
		if (t->source == NULL || strcmp(t->source, sources[i]->name))
			continue;
		cache_name(&c, sources[i], name, sizeof(name));
		(void)cache_remove(name);
		token_free(t);
		memset(t, 0, sizeof(*t));
		return get_through_cache(&c, sources[i], t);
	}
	return EXIT_CREDENTIAL;
}
