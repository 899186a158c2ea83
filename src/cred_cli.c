/*
 * The Azure CLI's sign-in, read natively and read-only: the default
 * subscription's tenant and user from azureProfile.json, then that
 * user's refresh token from msal_token_cache.json (MSAL's cache schema),
 * redeemed with the CLI's own client id.  The CLI's files are never
 * written and az is never run.  The token cache holds secrets, so a copy
 * that others may read, or that someone else owns, is refused.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cred.h"
#include "log.h"
#include "login.h"
#include "misc.h"

#define CLI_FILE_MAX	(16 * 1024 * 1024)
#define CLI_HINT	"sign in again with 'az login' or 'bastion-stdio login'"

struct cli_account {
	char	*tenant;
	char	*user;		/* user.name: a UPN */
	char	*subscription;
};

static void
account_free(struct cli_account *a)
{
	free(a->tenant);
	free(a->user);
	free(a->subscription);
	memset(a, 0, sizeof(*a));
}

static void
cli_path(const char *file, char *path, size_t size)
{
	const char *dir = getenv("AZURE_CONFIG_DIR");
	const char *home = getenv("HOME");

	if (dir != NULL && *dir != '\0')
		snprintf(path, size, "%s/%s", dir, file);
	else
		snprintf(path, size, "%s/.azure/%s", home ? home : "", file);
}

/*
 * Reads one of the CLI's files; 0, or -1 (reported when it exists but
 * cannot be used).  private: refuse unless only we can read it.
 */
static int
read_cli_file(const char *file, bool private, struct buf *out)
{
	char path[1024];
	struct stat st;
	ssize_t n;
	int fd;

	cli_path(file, path, sizeof(path));
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno != ENOENT)
			logit("warning: cannot read %s: %s", path,
			    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_size > CLI_FILE_MAX) {
		close(fd);
		return -1;
	}
	if (private && (st.st_uid != getuid() || (st.st_mode & 077))) {
		error("refusing the Azure CLI's %s: %s; run 'chmod 600 %s' "
		    "if it is yours", path, st.st_uid != getuid() ?
		    "it belongs to another user" :
		    "other users may read it", path);
		close(fd);
		return -1;
	}
	while ((n = read(fd, buf_space(out, 65536, NULL), 65536)) > 0)
		buf_commit(out, (size_t)n);
	close(fd);
	return n == 0 ? 0 : -1;
}

/* azureProfile.json starts with a UTF-8 byte order mark. */
static cJSON *
parse_skipping_bom(struct buf *b)
{
	const char *s = buf_str(b);

	if (strncmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;
	return cJSON_Parse(s);
}

static const char *
json_str(const cJSON *obj, const char *name)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* The default subscription of the active cloud, and its user. */
static int
default_account(const char *cloud, struct cli_account *a)
{
	const cJSON *subs, *s, *user;
	const char *env, *type;
	struct buf b;
	cJSON *root;
	int r = -1;

	memset(a, 0, sizeof(*a));
	buf_init(&b, 65536);
	if (read_cli_file("azureProfile.json", false, &b) == -1) {
		buf_free(&b);
		return -1;
	}
	root = parse_skipping_bom(&b);
	subs = cJSON_GetObjectItemCaseSensitive(root, "subscriptions");
	cJSON_ArrayForEach(s, subs) {
		env = json_str(s, "environmentName");
		if (!cJSON_IsTrue(cJSON_GetObjectItem(s, "isDefault")) ||
		    strcasecmp(env != NULL ? env : "AzureCloud", cloud) != 0)
			continue;
		user = cJSON_GetObjectItemCaseSensitive(s, "user");
		type = json_str(user, "type");
		if (json_str(s, "tenantId") == NULL ||
		    json_str(user, "name") == NULL)
			break;
		if (type == NULL || strcmp(type, "user") != 0) {
			debug("the Azure CLI is signed in as a %s, not a user",
			    type ? type : "principal of unknown type");
			break;
		}
		a->tenant = xstrdup(json_str(s, "tenantId"));
		a->user = xstrdup(json_str(user, "name"));
		if (json_str(s, "id") != NULL)
			a->subscription = xstrdup(json_str(s, "id"));
		r = 0;
		break;
	}
	cJSON_Delete(root);
	buf_free(&b);
	return r;
}

/* "login.microsoftonline.com": MSAL's environment for an authority. */
static void
authority_environment(const char *authority, char *env, size_t size)
{
	const char *p = strstr(authority, "://");

	p = p != NULL ? p + 3 : authority;
	snprintf(env, size, "%.*s", (int)strcspn(p, ":/"), p);
}

/* The account's home_account_id, found by user name and environment. */
static const char *
home_account(const cJSON *cache, const char *user, const char *env)
{
	const cJSON *e;

	cJSON_ArrayForEach(e, cJSON_GetObjectItem(cache, "Account")) {
		const char *name = json_str(e, "username");
		const char *en = json_str(e, "environment");

		if (name != NULL && en != NULL && strcasecmp(name, user) == 0 &&
		    strcasecmp(en, env) == 0)
			return json_str(e, "home_account_id");
	}
	return NULL;
}

/* MSAL keeps times as strings of epoch seconds. */
static long
str_time(const cJSON *e, const char *name)
{
	const char *s = json_str(e, name);
	long v;

	return s != NULL && parse_number(s, 0, 4102444800L, &v) == 0 ? v : -1;
}

static bool
same_account(const cJSON *e, const char *home, const char *env)
{
	const char *h = json_str(e, "home_account_id");
	const char *en = json_str(e, "environment");

	return h != NULL && en != NULL && strcasecmp(h, home) == 0 &&
	    strcasecmp(en, env) == 0;
}

/*
 * A still-fresh ARM access token the CLI holds for this account and
 * tenant: using it costs no request at all.
 */
static int
cached_access_token(const cJSON *cache, const char *home, const char *env,
    const struct cli_account *a, const char *resource, struct token *t)
{
	const cJSON *e;
	time_t now = time(NULL);

	cJSON_ArrayForEach(e, cJSON_GetObjectItem(cache, "AccessToken")) {
		const char *realm = json_str(e, "realm");
		const char *client = json_str(e, "client_id");
		const char *target = json_str(e, "target");
		const char *secret = json_str(e, "secret");

		if (!same_account(e, home, env) || realm == NULL ||
		    client == NULL || target == NULL || secret == NULL ||
		    strcasecmp(realm, a->tenant) != 0 ||
		    strcasecmp(client, AZURE_CLI_CLIENT_ID) != 0 ||
		    strstr(target, resource) == NULL || str_has_ctrl(secret))
			continue;
		t->access_token = xstrdup(secret);
		t->expires_on = str_time(e, "expires_on");
		t->issued_on = str_time(e, "cached_at");
		if (t->issued_on < 0)
			t->issued_on = now;
		if (cred_token_usable(t, now))
			return 0;
		token_free(t);
	}
	return -1;
}

/* The newest refresh token this account's CLI (or its family) holds. */
static const char *
newest_refresh_token(const cJSON *cache, const char *home, const char *env)
{
	const cJSON *e;
	const char *best = NULL;
	long best_time = -2;

	cJSON_ArrayForEach(e, cJSON_GetObjectItem(cache, "RefreshToken")) {
		const char *client = json_str(e, "client_id");
		const char *family = json_str(e, "family_id");
		const char *secret = json_str(e, "secret");
		long when = str_time(e, "last_modification_time");

		if (!same_account(e, home, env) || secret == NULL ||
		    str_has_ctrl(secret) || !((client != NULL &&
		    strcasecmp(client, AZURE_CLI_CLIENT_ID) == 0) ||
		    (family != NULL && strcmp(family, "1") == 0)))
			continue;
		if (when > best_time) {
			best = secret;
			best_time = when;
		}
	}
	return best;
}

static bool
cli_configured(const struct cred_ctx *c)
{
	char path[1024];

	(void)c;
	cli_path("msal_token_cache.json", path, sizeof(path));
	return access(path, F_OK) == 0;
}

static void
cli_principal(const struct cred_ctx *c, struct buf *key)
{
	struct cli_account a;

	if (default_account(c->o->cloud->name, &a) == 0) {
		buf_puts(key, a.tenant);
		buf_puts(key, "|");
		buf_puts(key, a.user);
		account_free(&a);
	}
}

static int
cli_get(const struct cred_ctx *c, struct token *t)
{
	struct cli_account a;
	const char *home, *rt;
	char env[256], who[300];
	cJSON *cache = NULL;
	struct buf b;
	int r = CRED_UNAVAILABLE;

	if (default_account(c->o->cloud->name, &a) == -1) {
		debug("no Azure CLI user sign-in for %s", c->o->cloud->name);
		return CRED_UNAVAILABLE;
	}
	authority_environment(c->o->authority_host, env, sizeof(env));
	buf_init(&b, 65536);
	if (read_cli_file("msal_token_cache.json", true, &b) == 0)
		cache = cJSON_Parse(buf_str(&b));
	snprintf(who, sizeof(who), "Azure CLI sign-in of %.200s", a.user);
	if ((home = home_account(cache, a.user, env)) == NULL)
		debug("%s: no account in the CLI's token cache", who);
	else if (cached_access_token(cache, home, env, &a, c->resource,
	    t) == 0) {
		debug("%s: the CLI's own ARM token", who);
		r = 0;
	} else if ((rt = newest_refresh_token(cache, home, env)) != NULL)
		r = login_redeem(c, a.tenant, AZURE_CLI_CLIENT_ID, rt, who,
		    CLI_HINT, t, NULL);
	else
		debug("%s: no refresh token in the CLI's token cache", who);
	cJSON_Delete(cache);
	explicit_bzero(b.data, b.cap);
	buf_free(&b);
	account_free(&a);
	return r;
}

const struct cred_source cred_azure_cli = {
	"azure-cli", cli_configured, cli_principal, cli_get
};
