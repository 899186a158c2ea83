/*
 * What ARM lookups found (a HOST's VM id, a VM's Bastion), kept in the
 * cache for ArmCacheTime so that a warm connection asks ARM nothing.
 * Processes started together wait on the entry's lock and ask once.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "jwt.h"
#include "log.h"
#include "lookup.h"
#include "misc.h"

/*
 * Whose view of ARM an answer is: the token's tenant and object id (or
 * app id).  Two credentials see different subscriptions, so an answer
 * one of them found must not steer the other.
 */
static char *
principal(const struct token *t)
{
	char *claims = jwt_payload(t->access_token);
	cJSON *root = claims != NULL ? cJSON_Parse(claims) : NULL;
	const cJSON *tid = cJSON_GetObjectItemCaseSensitive(root, "tid");
	const cJSON *oid = cJSON_GetObjectItemCaseSensitive(root, "oid");
	const cJSON *app = cJSON_GetObjectItemCaseSensitive(root, "appid");
	char *who;

	if (!cJSON_IsString(oid))
		oid = app;
	if (cJSON_IsString(tid) && cJSON_IsString(oid))
		who = xasprintf("%s/%s", tid->valuestring, oid->valuestring);
	else	/* not a JWT we can read: at least per source */
		who = xstrdup(t->source != NULL ? t->source : "");
	cJSON_Delete(root);
	free(claims);
	return who;
}

/* ARM ids and names compare case-insensitively: so do the keys. */
static void
entry_name(const struct options *o, const struct token *t, const char *kind,
    const char *key, char *name, size_t size)
{
	char *who = principal(t);
	char *k = xasprintf("lookup|%s|%s|%s|%s", kind, o->arm_endpoint, who,
	    key);
	char *p;

	for (p = k; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	cache_key_name(k, name, size);
	free(k);
	free(who);
}

/* The value of a young enough entry that valid() accepts, or NULL. */
static char *
read_entry(const struct options *o, const char *name, lookup_valid valid)
{
	struct buf text;
	cJSON *root;
	const cJSON *when, *value;
	time_t now = time(NULL);
	char *v = NULL;

	buf_init(&text, 512);
	root = cache_read(name, &text) == 0 ?
	    cJSON_Parse(buf_str(&text)) : NULL;
	when = cJSON_GetObjectItemCaseSensitive(root, "fetched_on");
	value = cJSON_GetObjectItemCaseSensitive(root, "value");
	if (cJSON_IsNumber(when) && cJSON_IsString(value) &&
	    !str_has_ctrl(value->valuestring) &&
	    (valid == NULL || valid(value->valuestring)) &&
	    now >= (time_t)when->valuedouble &&
	    now - (time_t)when->valuedouble < o->arm_cache_time)
		v = xstrdup(value->valuestring);
	cJSON_Delete(root);
	buf_free(&text);
	return v;
}

static void
write_entry(const char *name, const char *value)
{
	cJSON *root = cJSON_CreateObject();
	char *text;

	cJSON_AddStringToObject(root, "value", value);
	cJSON_AddNumberToObject(root, "fetched_on", (double)time(NULL));
	text = cJSON_PrintUnformatted(root);
	(void)cache_write(name, text);
	free(text);
	cJSON_Delete(root);
}

/*
 * *value for kind and key, as t's principal sees ARM: from the cache
 * (*cached is then true) if valid() accepts it, else from find(), whose
 * answer is kept.  ArmCacheTime 0 turns the cache off.  Returns 0, or
 * find()'s exit status.
 */
int
lookup(const struct options *o, const struct token *t, const char *kind,
    const char *key, const struct lookup_how *how, char **value,
    bool *cached)
{
	struct cache_lock lock;
	char name[64];
	int r;

	*value = NULL;
	*cached = false;
	if (o->arm_cache_time == 0)
		return how->find(how->ctx, value);
	entry_name(o, t, kind, key, name, sizeof(name));
	if ((*value = read_entry(o, name, how->valid)) != NULL) {
		*cached = true;
		return 0;
	}
	(void)cache_lock(name, o->connect_timeout, &lock);
	if ((*value = read_entry(o, name, how->valid)) != NULL)
		*cached = true;
	else if ((r = how->find(how->ctx, value)) != 0) {
		cache_unlock(&lock);
		return r;
	} else
		write_entry(name, *value);
	cache_unlock(&lock);
	if (*cached)
		debug("%s %s: %s (cached)", kind, key, *value);
	return 0;
}

/* Keeps a value found some other way. */
void
lookup_put(const struct options *o, const struct token *t, const char *kind,
    const char *key, const char *value)
{
	char name[64];

	if (o->arm_cache_time == 0)
		return;
	entry_name(o, t, kind, key, name, sizeof(name));
	write_entry(name, value);
}

/* Drops an entry that turned out stale. */
void
lookup_forget(const struct options *o, const struct token *t,
    const char *kind, const char *key)
{
	char name[64];

	entry_name(o, t, kind, key, name, sizeof(name));
	(void)cache_remove(name);
}
