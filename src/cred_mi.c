/*
 * Managed identity, detected from the environment as the Azure SDKs do:
 * App Service and Container Apps (IDENTITY_ENDPOINT with IDENTITY_HEADER),
 * Azure Arc (IDENTITY_ENDPOINT with IMDS_ENDPOINT), Cloud Shell
 * (MSI_ENDPOINT), and otherwise the VM's instance metadata service.
 *
 * Off Azure there is no IMDS, and every ssh connection would pay for
 * finding that out; so until IMDS has answered once on this machine, it
 * gets one attempt with a very short connect timeout and no retries.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cache.h"
#include "cred.h"
#include "log.h"
#include "misc.h"

#define IMDS_DEFAULT		"http://169.254.169.254"
#define IMDS_PROBE_MS		50
#define IMDS_SEEN		"imds-answered"
#define ARC_TOKEN_DIR		"/var/opt/azcmagent/tokens"
#define ARC_KEY_MAX		4096

enum mi_kind { MI_APPSERVICE, MI_ARC, MI_CLOUDSHELL, MI_IMDS };

static const char *const kind_names[] = {
	"App Service", "Azure Arc", "Cloud Shell", "IMDS"
};

static enum mi_kind
detect(void)
{
	if (cred_env_set("IDENTITY_ENDPOINT") &&
	    cred_env_set("IDENTITY_HEADER"))
		return MI_APPSERVICE;
	if (cred_env_set("IDENTITY_ENDPOINT") && cred_env_set("IMDS_ENDPOINT"))
		return MI_ARC;
	if (cred_env_set("MSI_ENDPOINT"))
		return MI_CLOUDSHELL;
	return MI_IMDS;
}

static bool
mi_configured(const struct cred_ctx *c)
{
	(void)c;
	return true;	/* IMDS may always be there; the probe tells */
}

/*
 * The user-assigned identity asked for, as a query parameter; NULL for
 * the system-assigned one.  AZURE_CLIENT_ID serves too, as in the SDKs.
 */
static const char *
selector(const struct cred_ctx *c, enum mi_kind kind, const char **value)
{
	const struct options *o = c->o;

	if ((*value = o->mi_client_id) != NULL)
		return "client_id";
	if ((*value = o->mi_object_id) != NULL)
		return kind == MI_APPSERVICE ? "principal_id" : "object_id";
	if ((*value = o->mi_resource_id) != NULL)
		return kind == MI_IMDS ? "msi_res_id" : "mi_res_id";
	if ((*value = getenv("AZURE_CLIENT_ID")) != NULL && **value != '\0')
		return "client_id";
	*value = NULL;
	return NULL;
}

static void
mi_principal(const struct cred_ctx *c, struct buf *key)
{
	enum mi_kind kind = detect();
	const char *value, *name = selector(c, kind, &value);

	buf_puts(key, kind_names[kind]);
	buf_puts(key, "|");
	buf_puts(key, name != NULL ? name : "system");
	buf_puts(key, "=");
	buf_puts(key, value != NULL ? value : "");
}

/* base?api-version=V&resource=R[&selector=value] */
static char *
token_url(const struct cred_ctx *c, enum mi_kind kind, const char *base,
    const char *version)
{
	const char *value, *name = selector(c, kind, &value);
	struct buf url;
	char *s;

	buf_init(&url, 512);
	buf_puts(&url, base);
	buf_puts(&url, strchr(base, '?') != NULL ? "&" : "?");
	buf_puts(&url, "api-version=");
	buf_puts(&url, version);
	buf_puts(&url, "&resource=");
	url_encode(&url, c->resource);
	if (name != NULL) {
		buf_puts(&url, "&");
		buf_puts(&url, name);
		buf_puts(&url, "=");
		url_encode(&url, value);
	}
	s = xstrdup(buf_str(&url));
	buf_free(&url);
	return s;
}

/* Managed identity endpoints say why in one of two shapes. */
static void
describe(const char *body, char *out, size_t size)
{
	cJSON *root = cJSON_Parse(body);
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(root,
	    "error_description");
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "message");

	if (cJSON_IsString(d))
		snprintf(out, size, "%.300s", d->valuestring);
	else if (cJSON_IsString(m))
		snprintf(out, size, "%.300s", m->valuestring);
	else
		snprintf(out, size, "no error details");
	cJSON_Delete(root);
}

/* Turns an answer into a token, or reports it; 0 or an exit status. */
static int
take_token(enum mi_kind kind, struct http_response *rs, struct token *t)
{
	char why[400];

	if (rs->status == 200) {
		if (entra_parse_token(buf_str(&rs->body), time(NULL), t) == 0)
			return 0;
		error("managed identity (%s) answered 200 without a usable "
		    "token", kind_names[kind]);
		return EXIT_PROTOCOL;
	}
	describe(buf_str(&rs->body), why, sizeof(why));
	error("managed identity (%s) answered %ld: %s", kind_names[kind],
	    rs->status, why);
	return EXIT_CREDENTIAL;
}

/* The documented IMDS retry policy: which answers are worth waiting for. */
static long
imds_retry_wait(const struct http_response *rs, int attempt)
{
	if (rs->status == 410)
		return 10;	/* IMDS says: back within 70 s */
	if (rs->status == 404 || rs->status == 429 || rs->status >= 500) {
		if (rs->retry_after > 0)
			return rs->retry_after;
		return attempt < 3 ? 1L << attempt : 4;
	}
	return -1;
}

/*
 * The VM's instance metadata service.  AZURE_POD_IDENTITY_AUTHORITY_HOST
 * moves it (the SDKs' variable; the tests point it at loopback).
 */
static int
imds_get(const struct cred_ctx *c, struct token *t)
{
	const char *headers[] = { "Metadata: true", NULL };
	const char *env = getenv("AZURE_POD_IDENTITY_AUTHORITY_HOST");
	struct http_request rq = { .method = "GET", .headers = headers,
	    .local = 1 };
	struct http_response rs;
	struct buf seen;
	char base[512];
	time_t deadline = time(NULL) + c->o->connect_timeout;
	long wait;
	int r, attempt = 0;

	snprintf(base, sizeof(base), "%s/metadata/identity/oauth2/token",
	    env != NULL && *env != '\0' ? env : IMDS_DEFAULT);
	rq.url = rq.what = token_url(c, MI_IMDS, base, "2018-02-01");
	buf_init(&seen, 16);
	if (cache_read(IMDS_SEEN, &seen) == -1) {
		rq.connect_ms = IMDS_PROBE_MS;
		rq.probe = 1;
	}
	buf_free(&seen);
	for (;;) {
		if ((r = http_do(c->h, &rq, &rs)) != 0) {
			debug("no IMDS at %s", base);
			r = CRED_UNAVAILABLE;
			break;
		}
		if (rq.probe)
			(void)cache_write(IMDS_SEEN, "1\n");
		rq.connect_ms = 0;
		rq.probe = 0;
		wait = imds_retry_wait(&rs, attempt++);
		if (rs.status == 410 && attempt == 1)
			deadline = time(NULL) + 70;
		if (wait < 0 || time(NULL) + wait > deadline)
			break;
		debug("IMDS answered %ld: retrying in %ld s", rs.status, wait);
		http_response_free(&rs);
		sleep((unsigned)wait);
	}
	if (r == 0 && rs.status == 400 && c->o->credential == NULL) {
		/* no identity on this VM: the next source may have one */
		debug("IMDS has no identity for this VM");
		r = CRED_UNAVAILABLE;
	} else if (r == 0)
		r = take_token(MI_IMDS, &rs, t);
	http_response_free(&rs);
	free((char *)rq.url);
	return r;
}

/* App Service, Functions and Container Apps. */
static int
appservice_get(const struct cred_ctx *c, struct token *t)
{
	const char *headers[] = { NULL, NULL };
	struct http_request rq = { .method = "GET", .headers = headers,
	    .local = 1 };
	struct http_response rs;
	int r;

	headers[0] = xasprintf("X-IDENTITY-HEADER: %s",
	    getenv("IDENTITY_HEADER"));
	rq.url = rq.what = token_url(c, MI_APPSERVICE,
	    getenv("IDENTITY_ENDPOINT"), "2019-08-01");
	if ((r = http_do(c->h, &rq, &rs)) == 0)
		r = take_token(MI_APPSERVICE, &rs, t);
	http_response_free(&rs);
	explicit_bzero((char *)headers[0], strlen(headers[0]));
	free((char *)headers[0]);
	free((char *)rq.url);
	return r;
}

/* Cloud Shell: the signed-in portal user's token. */
static int
cloudshell_get(const struct cred_ctx *c, struct token *t)
{
	const char *headers[] = { "Metadata: true", NULL };
	struct http_request rq = { .method = "POST", .headers = headers,
	    .local = 1 };
	struct http_response rs;
	struct buf form;
	int r;

	buf_init(&form, 256);
	form_add(&form, "resource", c->resource);
	rq.body = buf_str(&form);
	rq.url = rq.what = getenv("MSI_ENDPOINT");
	if ((r = http_do(c->h, &rq, &rs)) == 0)
		r = take_token(MI_CLOUDSHELL, &rs, t);
	http_response_free(&rs);
	buf_free(&form);
	return r;
}

/*
 * The Arc agent names, in its 401, a file whose contents prove that we
 * may read its token directory.  Only a .key file of at most 4 KiB right
 * in that directory is read, as the SDKs require, so a tampered answer
 * cannot make us send some other file's contents.
 */
static int
read_arc_key(const char *challenge, struct buf *key)
{
	const char *dir = getenv("BASTION_STDIO_ARC_TOKEN_DIR");
	const char *path, *name;
	struct stat st;
	ssize_t n;
	int fd;

	if (dir == NULL || *dir == '\0')
		dir = ARC_TOKEN_DIR;
	if (challenge == NULL || strncasecmp(challenge, "Basic realm=", 12))
		goto bad;
	path = challenge + 12;
	name = strrchr(path, '/');
	if (name == NULL || (size_t)(name - path) != strlen(dir) ||
	    strncmp(path, dir, strlen(dir)) != 0 || strlen(name) < 6 ||
	    strcmp(name + strlen(name) - 4, ".key") != 0)
		goto bad;
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_size > ARC_KEY_MAX) {
		if (fd != -1)
			close(fd);
		goto bad;
	}
	n = read(fd, buf_space(key, ARC_KEY_MAX, NULL), ARC_KEY_MAX);
	close(fd);
	if (n <= 0)
		goto bad;
	buf_commit(key, (size_t)n);
	return 0;
bad:
	error("managed identity (Azure Arc): refusing the agent's challenge "
	    "file; it must be a .key file of at most %d bytes in %s",
	    ARC_KEY_MAX, dir);
	return EXIT_CREDENTIAL;
}

static int
arc_get(const struct cred_ctx *c, struct token *t)
{
	const char *headers[] = { "Metadata: true", NULL, NULL };
	struct http_request rq = { .method = "GET", .headers = headers,
	    .local = 1 };
	struct http_response rs;
	const char *value;
	struct buf key;
	int r;

	if (selector(c, MI_ARC, &value) != NULL) {
		error("managed identity (Azure Arc): only the system-assigned "
		    "identity is supported; unset the ManagedIdentity keywords "
		    "and AZURE_CLIENT_ID");
		return EXIT_CONFIG;
	}
	rq.url = rq.what = token_url(c, MI_ARC, getenv("IDENTITY_ENDPOINT"),
	    "2020-06-01");
	buf_init(&key, ARC_KEY_MAX + 32);
	buf_puts(&key, "Authorization: Basic ");
	if ((r = http_do(c->h, &rq, &rs)) == 0 && rs.status != 401)
		r = take_token(MI_ARC, &rs, t);
	else if (r == 0 && (r = read_arc_key(rs.authenticate, &key)) == 0) {
		http_response_free(&rs);
		headers[1] = buf_str(&key);
		if ((r = http_do(c->h, &rq, &rs)) == 0)
			r = take_token(MI_ARC, &rs, t);
	}
	http_response_free(&rs);
	explicit_bzero(key.data, key.cap);
	buf_free(&key);
	free((char *)rq.url);
	return r;
}

static int
mi_get(const struct cred_ctx *c, struct token *t)
{
	switch (detect()) {
	case MI_APPSERVICE:
		return appservice_get(c, t);
	case MI_ARC:
		return arc_get(c, t);
	case MI_CLOUDSHELL:
		return cloudshell_get(c, t);
	default:
		return imds_get(c, t);
	}
}

const struct cred_source cred_managed_identity = {
	"managed-identity", mi_configured, mi_principal, mi_get
};
