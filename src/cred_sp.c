/*
 * Service principals, from the environment as the Azure SDKs read it: a
 * client secret, or a certificate whose key signs a JWT assertion; and
 * workload identity, where the assertion is a federated token from a
 * file (AKS writes and rotates it).  All are client-credentials grants.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cred.h"
#include "jwt.h"
#include "log.h"
#include "misc.h"

#define ASSERTION_TYPE \
	"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define FEDERATED_TOKEN_MAX	(64 * 1024)

static bool
environment_configured(const struct cred_ctx *c)
{
	(void)c;
	return cred_env_set("AZURE_TENANT_ID") &&
	    cred_env_set("AZURE_CLIENT_ID") &&
	    (cred_env_set("AZURE_CLIENT_SECRET") ||
	    cred_env_set("AZURE_CLIENT_CERTIFICATE_PATH"));
}

static void
client_principal(const struct cred_ctx *c, struct buf *key)
{
	(void)c;
	buf_puts(key, getenv("AZURE_TENANT_ID"));
	buf_puts(key, "|");
	buf_puts(key, getenv("AZURE_CLIENT_ID"));
}

/* The client id goes into a JWT and a form: a GUID's alphabet only. */
static int
check_client_id(const char *id)
{
	if (strspn(id, "0123456789abcdefABCDEF-") != strlen(id) ||
	    strlen(id) > 64) {
		error("AZURE_CLIENT_ID \"%.64s\" is not a client id (a GUID)",
		    id);
		return EXIT_CONFIG;
	}
	return 0;
}

/* Posts a client-credentials grant with the given credential fields. */
static int
post_grant(const struct cred_ctx *c, struct buf *form, const char *who,
    struct token *t)
{
	int r;

	form_add(form, "scope", c->scope);
	r = entra_request_token(c->h, c->o->authority_host,
	    getenv("AZURE_TENANT_ID"), buf_str(form), who, "check the "
	    "tenant, the client id and the secret or certificate in the "
	    "environment against the app registration", t, NULL);
	explicit_bzero(form->data, form->cap);
	buf_free(form);
	return r;
}

static int
environment_get(const struct cred_ctx *c, struct token *t)
{
	const char *client = getenv("AZURE_CLIENT_ID");
	const char *cert = getenv("AZURE_CLIENT_CERTIFICATE_PATH");
	char *audience, who[128];
	struct buf form, jwt;
	int r;

	if ((r = check_client_id(client)) != 0)
		return r;
	buf_init(&form, 2048);
	form_add(&form, "grant_type", "client_credentials");
	form_add(&form, "client_id", client);
	if (cred_env_set("AZURE_CLIENT_SECRET")) {
		snprintf(who, sizeof(who), "service principal %s (secret)",
		    client);
		form_add(&form, "client_secret", getenv("AZURE_CLIENT_SECRET"));
		return post_grant(c, &form, who, t);
	}
	snprintf(who, sizeof(who), "service principal %s (certificate)",
	    client);
	audience = entra_token_url(c->o->authority_host,
	    getenv("AZURE_TENANT_ID"));
	buf_init(&jwt, 2048);
	r = jwt_client_assertion(cert, getenv(
	    "AZURE_CLIENT_CERTIFICATE_PASSWORD"), client, audience, time(NULL),
	    &jwt);
	free(audience);
	if (r == 0) {
		form_add(&form, "client_assertion_type", ASSERTION_TYPE);
		form_add(&form, "client_assertion", buf_str(&jwt));
		r = post_grant(c, &form, who, t);
	} else
		buf_free(&form);
	buf_free(&jwt);
	return r;
}

const struct cred_source cred_environment = {
	"environment", environment_configured, client_principal,
	environment_get
};

static bool
workload_configured(const struct cred_ctx *c)
{
	(void)c;
	return cred_env_set("AZURE_FEDERATED_TOKEN_FILE") &&
	    cred_env_set("AZURE_CLIENT_ID") && cred_env_set("AZURE_TENANT_ID");
}

/* Read on every request: the token in the file is rotated under us. */
static int
read_federated_token(const char *path, struct buf *out)
{
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		error("cannot read AZURE_FEDERATED_TOKEN_FILE %s: %s", path,
		    strerror(errno));
		return EXIT_CREDENTIAL;
	}
	n = read(fd, buf_space(out, FEDERATED_TOKEN_MAX, NULL),
	    FEDERATED_TOKEN_MAX);
	close(fd);
	if (n > 0)
		buf_commit(out, (size_t)n);
	while (out->len > 0 && (out->data[out->len - 1] == '\n' ||
	    out->data[out->len - 1] == '\r' || out->data[out->len - 1] == ' '))
		out->len--;
	if (n <= 0 || out->len == 0 || n == FEDERATED_TOKEN_MAX) {
		error("AZURE_FEDERATED_TOKEN_FILE %s holds no usable token",
		    path);
		return EXIT_CREDENTIAL;
	}
	return 0;
}

static int
workload_get(const struct cred_ctx *c, struct token *t)
{
	const char *client = getenv("AZURE_CLIENT_ID");
	struct buf form, assertion;
	char who[128];
	int r;

	if ((r = check_client_id(client)) != 0)
		return r;
	buf_init(&assertion, 4096);
	if ((r = read_federated_token(getenv("AZURE_FEDERATED_TOKEN_FILE"),
	    &assertion)) != 0) {
		buf_free(&assertion);
		return r;
	}
	buf_init(&form, 4096);
	form_add(&form, "grant_type", "client_credentials");
	form_add(&form, "client_id", client);
	form_add(&form, "client_assertion_type", ASSERTION_TYPE);
	form_add(&form, "client_assertion", buf_str(&assertion));
	explicit_bzero(assertion.data, assertion.cap);
	buf_free(&assertion);
	snprintf(who, sizeof(who), "workload identity %s", client);
	return post_grant(c, &form, who, t);
}

const struct cred_source cred_workload_identity = {
	"workload-identity", workload_configured, client_principal,
	workload_get
};
