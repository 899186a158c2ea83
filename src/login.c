/*
 * User sign-in.  `bastion-stdio login` runs Entra's device-code flow (the
 * message goes to stderr; nothing is read from the terminal) and keeps
 * the refresh token in the cache, where the "login" source redeems it
 * for each connection's ARM token.  Inside a ProxyCommand ssh owns the
 * terminal, so the flow runs there only with "DeviceCode yes".
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "log.h"
#include "login.h"
#include "misc.h"

#define LOGIN_ENTRY	"login"
#define LOGIN_HINT	"sign in again with 'bastion-stdio login'"
#define DEVICE_GRANT	"urn:ietf:params:oauth:grant-type:device_code"

struct login {
	char	*tenant;
	char	*client_id;
	char	*refresh_token;
};

static void
login_free(struct login *l)
{
	free(l->tenant);
	free(l->client_id);
	if (l->refresh_token != NULL)
		explicit_bzero(l->refresh_token, strlen(l->refresh_token));
	free(l->refresh_token);
	memset(l, 0, sizeof(*l));
}

/* The stored sign-in; 0, or -1 when there is none usable. */
static int
login_read(struct login *l)
{
	struct buf b;
	int r = -1;

	memset(l, 0, sizeof(*l));
	buf_init(&b, 4096);
	if (cache_read(LOGIN_ENTRY, &b) == 0) {
		l->tenant = entra_json_string(buf_str(&b), "tenant");
		l->client_id = entra_json_string(buf_str(&b), "client_id");
		l->refresh_token = entra_json_string(buf_str(&b),
		    "refresh_token");
		r = l->tenant && l->client_id && l->refresh_token ? 0 : -1;
		if (r == -1)
			logit("warning: ignoring a corrupt sign-in in the "
			    "cache; run 'bastion-stdio login'");
	}
	explicit_bzero(b.data, b.cap);
	buf_free(&b);
	if (r == -1)
		login_free(l);
	return r;
}

static void
login_write(const char *tenant, const char *client_id, const char *rt)
{
	cJSON *root = cJSON_CreateObject();
	char *text;

	cJSON_AddStringToObject(root, "tenant", tenant);
	cJSON_AddStringToObject(root, "client_id", client_id);
	cJSON_AddStringToObject(root, "refresh_token", rt);
	text = cJSON_PrintUnformatted(root);
	(void)cache_write(LOGIN_ENTRY, text);
	explicit_bzero(text, strlen(text));
	free(text);
	cJSON_Delete(root);
}

/* The scopes of a user sign-in: ARM, and a refresh token. */
static void
user_scope(const struct cred_ctx *c, struct buf *form)
{
	char *scope = xasprintf("%s openid profile offline_access", c->scope);

	form_add(form, "scope", scope);
	free(scope);
}

/*
 * Redeems a refresh token for an ARM token; *new_refresh_token, when
 * asked for, receives the rotated one.  0 or an exit status.
 */
int
login_redeem(const struct cred_ctx *c, const char *tenant,
    const char *client_id, const char *refresh_token, const char *who,
    const char *hint, struct token *t, char **new_refresh_token)
{
	struct buf form;
	int r;

	buf_init(&form, 4096);
	form_add(&form, "grant_type", "refresh_token");
	form_add(&form, "client_id", client_id);
	form_add(&form, "refresh_token", refresh_token);
	user_scope(c, &form);
	form_add(&form, "client_info", "1");
	r = entra_request_token(c->h, c->o->authority_host, tenant,
	    buf_str(&form), who, hint, t, new_refresh_token);
	explicit_bzero(form.data, form.cap);
	buf_free(&form);
	return r;
}

static bool
login_configured(const struct cred_ctx *c)
{
	struct login l;

	(void)c;
	if (login_read(&l) == -1)
		return false;
	login_free(&l);
	return true;
}

static void
login_principal(const struct cred_ctx *c, struct buf *key)
{
	struct login l;

	(void)c;
	if (login_read(&l) == 0) {
		buf_puts(key, l.tenant);
		buf_puts(key, "|");
		buf_puts(key, l.client_id);
		login_free(&l);
	}
}

static int
login_get(const struct cred_ctx *c, struct token *t)
{
	struct login l;
	char *rotated = NULL;
	int r;

	if (login_read(&l) == -1)
		return CRED_UNAVAILABLE;
	r = login_redeem(c, l.tenant, l.client_id, l.refresh_token,
	    "signed-in user", LOGIN_HINT, t, &rotated);
	if (r == 0 && rotated != NULL)
		login_write(l.tenant, l.client_id, rotated);
	if (rotated != NULL)
		explicit_bzero(rotated, strlen(rotated));
	free(rotated);
	login_free(&l);
	return r;
}

const struct cred_source cred_login = {
	"login", login_configured, login_principal, login_get
};

/* One device-code poll's verdict from Entra's OAuth error code. */
static int
poll_verdict(const char *error_code, long *interval)
{
	if (error_code == NULL)
		return -1;
	if (strcmp(error_code, "authorization_pending") == 0)
		return 0;
	if (strcmp(error_code, "slow_down") == 0) {
		*interval += 5;
		return 0;
	}
	return -1;
}

/* Starts the flow: Entra's device code, and its message on stderr. */
static int
device_start(const struct cred_ctx *c, const char *tenant,
    const char *client_id, char **device_code, long *interval,
    long *expires_in)
{
	struct http_request rq = { .method = "POST" };
	struct http_response rs;
	struct buf form;
	char *message;
	int r;

	buf_init(&form, 512);
	form_add(&form, "client_id", client_id);
	user_scope(c, &form);
	rq.body = buf_str(&form);
	rq.url = rq.what = xasprintf("%s/%s/oauth2/v2.0/devicecode",
	    c->o->authority_host, tenant);
	r = http_do(c->h, &rq, &rs);
	*device_code = NULL;
	if (r == 0 && rs.status == 200) {
		*device_code = entra_json_string(buf_str(&rs.body),
		    "device_code");
		message = entra_json_string(buf_str(&rs.body), "message");
		*interval = entra_json_number(buf_str(&rs.body), "interval");
		*expires_in = entra_json_number(buf_str(&rs.body),
		    "expires_in");
		if (message != NULL)
			log_tell_user("%s", message);
		free(message);
	}
	if (r == 0 && *device_code == NULL) {
		char why[400];

		entra_describe_error(buf_str(&rs.body), why, sizeof(why));
		error("device-code sign-in: Entra ID answered %ld: %s",
		    rs.status, why);
		r = EXIT_CREDENTIAL;
	}
	if (*interval <= 0 || *interval > 60)
		*interval = 5;
	if (*expires_in <= 0 || *expires_in > 3600)
		*expires_in = 900;
	http_response_free(&rs);
	buf_free(&form);
	free((char *)rq.url);
	return r;
}

/* Polls until the user signs in, refuses, or the code expires. */
static int
device_poll(const struct cred_ctx *c, const char *tenant,
    const char *client_id, const char *device_code, long interval,
    long expires_in, struct token *t, char **refresh_token)
{
	struct http_request rq = { .method = "POST" };
	struct http_response rs;
	time_t deadline = time(NULL) + expires_in;
	struct buf form;
	char *code, why[400];
	bool finished = false;
	int r = EXIT_CREDENTIAL;

	buf_init(&form, 1024);
	form_add(&form, "grant_type", DEVICE_GRANT);
	form_add(&form, "client_id", client_id);
	form_add(&form, "device_code", device_code);
	rq.body = buf_str(&form);
	rq.url = rq.what = entra_token_url(c->o->authority_host, tenant);
	while (!finished && time(NULL) + interval <= deadline) {
		sleep((unsigned)interval);
		finished = true;
		if ((r = http_do(c->h, &rq, &rs)) != 0)
			break;
		if (rs.status == 200) {
			r = entra_parse_token(buf_str(&rs.body), time(NULL),
			    t) == 0 ? 0 : EXIT_PROTOCOL;
			*refresh_token = entra_json_string(buf_str(&rs.body),
			    "refresh_token");
			http_response_free(&rs);
			break;
		}
		code = entra_json_string(buf_str(&rs.body), "error");
		entra_describe_error(buf_str(&rs.body), why, sizeof(why));
		finished = poll_verdict(code, &interval) == -1;
		free(code);
		http_response_free(&rs);
		r = EXIT_CREDENTIAL;
		if (finished)
			error("device-code sign-in failed: %s", why);
	}
	if (!finished)
		error("device-code sign-in: the code expired before the "
		    "sign-in was completed; run 'bastion-stdio login' again");
	explicit_bzero(form.data, form.cap);
	buf_free(&form);
	free((char *)rq.url);
	return r;
}

/* The whole device-code flow; the refresh token is kept as the login. */
static int
device_flow(const struct cred_ctx *c, struct token *t)
{
	const char *tenant = c->o->tenant ? c->o->tenant : "organizations";
	const char *client_id = c->o->login_client_id ?
	    c->o->login_client_id : AZURE_CLI_CLIENT_ID;
	char *device_code, *rt = NULL;
	long interval, expires_in;
	int r;

	if ((r = device_start(c, tenant, client_id, &device_code, &interval,
	    &expires_in)) != 0)
		return r;
	r = device_poll(c, tenant, client_id, device_code, interval,
	    expires_in, t, &rt);
	if (r == 0 && rt != NULL)
		login_write(tenant, client_id, rt);
	else if (r == 0)
		logit("warning: Entra ID gave no refresh token; the next "
		    "connection will need another sign-in");
	if (rt != NULL)
		explicit_bzero(rt, strlen(rt));
	free(rt);
	free(device_code);
	return r;
}

static bool
device_configured(const struct cred_ctx *c)
{
	return c->o->device_code == 1;
}

static void
device_principal(const struct cred_ctx *c, struct buf *key)
{
	buf_puts(key, c->o->tenant ? c->o->tenant : "organizations");
}

const struct cred_source cred_device_code = {
	"device-code", device_configured, device_principal, device_flow
};

/* `bastion-stdio login`: sign in now, so that connections need not. */
int
login_command(const struct options *o)
{
	struct cred_ctx c;
	struct token t;
	struct http h;
	int r;

	if ((r = http_init(&h, o->ca_file, o->ca_dir, BASTION_STDIO_UA,
	    o->connect_timeout)) != 0)
		return r;
	cred_ctx_init(&c, &h, o);
	memset(&t, 0, sizeof(t));
	if ((r = device_flow(&c, &t)) == 0)
		logit("signed in; bastion-stdio will use this sign-in until "
		    "'bastion-stdio logout'");
	token_free(&t);
	http_cleanup(&h);
	return r;
}

/* `bastion-stdio logout`: forget the sign-in and every cached token. */
int
logout_command(void)
{
	if (cache_clear() == -1) {
		error("cannot clear the cache; remove the bastion-stdio "
		    "directory under $XDG_CACHE_HOME or ~/.cache by hand");
		return EXIT_LOCAL_IO;
	}
	return 0;
}
