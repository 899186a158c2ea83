/*
 * Token requests to Entra ID ({authority}/{tenant}/oauth2/v2.0/token) and
 * the parsing of their answers.  Every grant posts a form here; only the
 * form differs, so the credential sources share this code.
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "entra.h"
#include "log.h"
#include "misc.h"

void
token_free(struct token *t)
{
	if (t->access_token != NULL)
		explicit_bzero(t->access_token, strlen(t->access_token));
	free(t->access_token);
	t->access_token = NULL;
	t->expires_on = t->issued_on = 0;
}

/* expires_in is a number from the v2 endpoint, a string from others. */
static long
lifetime(const cJSON *item)
{
	long v;

	if (cJSON_IsNumber(item) && item->valuedouble >= 0 &&
	    item->valuedouble < 2147483647.0)
		return (long)item->valuedouble;
	if (cJSON_IsString(item) &&
	    parse_number(item->valuestring, 0, 2147483647L, &v) == 0)
		return v;
	return -1;
}

/*
 * Takes access_token and its lifetime from a successful answer: Entra's
 * expires_in, or the expires_on (epoch seconds) of managed identity
 * endpoints.  0, or -1 when the answer is not a usable token.
 */
int
entra_parse_token(const char *body, time_t now, struct token *t)
{
	cJSON *root = cJSON_Parse(body);
	const cJSON *tok;
	long secs, on;
	int r = -1;

	memset(t, 0, sizeof(*t));
	if (root == NULL)
		return -1;
	tok = cJSON_GetObjectItemCaseSensitive(root, "access_token");
	secs = lifetime(cJSON_GetObjectItemCaseSensitive(root, "expires_in"));
	on = lifetime(cJSON_GetObjectItemCaseSensitive(root, "expires_on"));
	if (secs < 0 && on > now)
		secs = on - now;
	if (cJSON_IsString(tok) && *tok->valuestring != '\0' &&
	    !str_has_ctrl(tok->valuestring) && secs >= 0) {
		t->access_token = xstrdup(tok->valuestring);
		t->issued_on = now;
		t->expires_on = now + secs;
		r = 0;
	}
	cJSON_Delete(root);
	return r;
}

/*
 * Turns an Entra error answer into one line: the first line of
 * error_description (it starts with the AADSTS code) and the correlation
 * id that Microsoft support asks for.
 */
void
entra_describe_error(const char *body, char *out, size_t size)
{
	cJSON *root = cJSON_Parse(body);
	const cJSON *desc, *code, *corr;
	const char *text = NULL;

	snprintf(out, size, "an answer that is not an Entra ID error");
	if (root == NULL)
		return;
	desc = cJSON_GetObjectItemCaseSensitive(root, "error_description");
	code = cJSON_GetObjectItemCaseSensitive(root, "error");
	corr = cJSON_GetObjectItemCaseSensitive(root, "correlation_id");
	if (cJSON_IsString(desc))
		text = desc->valuestring;
	else if (cJSON_IsString(code))
		text = code->valuestring;
	if (text != NULL)
		snprintf(out, size, "%.*s", (int)strcspn(text, "\r\n"), text);
	if (text != NULL && cJSON_IsString(corr))
		snprintf(out + strlen(out), size - strlen(out),
		    " (correlation id %.64s)", corr->valuestring);
	cJSON_Delete(root);
}

/* Tenants go into the URL path: a GUID or a domain name, nothing else. */
static int
check_tenant(const char *tenant)
{
	const char *p;

	if (*tenant == '\0' || strlen(tenant) > 128)
		return -1;
	for (p = tenant; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return -1;
	return 0;
}

char *
entra_token_url(const char *authority, const char *tenant)
{
	return xasprintf("%s/%s/oauth2/v2.0/token", authority, tenant);
}

/*
 * Posts a grant's form; who names the credential in messages and hint
 * says what to do when Entra refuses.  Returns 0 with the token, or an
 * exit status after reporting the error.
 */
int
entra_request_token(struct http *h, const char *authority,
    const char *tenant, const char *form, const char *who, const char *hint,
    struct token *t, char **refresh_token)
{
	struct http_request rq = { .method = "POST", .body = form };
	struct http_response rs;
	long left = h->timeout;
	char why[512];
	int r, attempt = 0;

	if (check_tenant(tenant) == -1) {
		error("%s: tenant \"%.100s\" is not a GUID or domain name", who,
		    tenant);
		return EXIT_CREDENTIAL;
	}
	rq.url = rq.what = entra_token_url(authority, tenant);
	while ((r = http_do(h, &rq, &rs)) == 0 &&
	    http_retry_later(&rs, attempt++, &left, "Entra ID"))
		http_response_free(&rs);
	if (r == 0 && rs.status != 200) {
		entra_describe_error(buf_str(&rs.body), why, sizeof(why));
		error("%s: Entra ID answered %ld: %s%s%s", who, rs.status, why,
		    hint != NULL ? "; " : "", hint != NULL ? hint : "");
		r = EXIT_CREDENTIAL;
	} else if (r == 0 && entra_parse_token(buf_str(&rs.body), time(NULL),
	    t) == -1) {
		error("%s: Entra ID answered 200 without a usable token", who);
		r = EXIT_PROTOCOL;
	}
	if (r == 0)
		debug("%s: token valid for %ld s", who,
		    (long)(t->expires_on - time(NULL)));
	if (r == 0 && refresh_token != NULL)
		*refresh_token = entra_json_string(buf_str(&rs.body),
		    "refresh_token");
	if (rs.body.data != NULL)
		explicit_bzero(rs.body.data, rs.body.cap);
	http_response_free(&rs);
	free((char *)rq.url);
	return r;
}

/* A top-level number (or numeric string) of a JSON text, or -1. */
long
entra_json_number(const char *body, const char *name)
{
	cJSON *root = cJSON_Parse(body);
	long v = lifetime(cJSON_GetObjectItemCaseSensitive(root, name));

	cJSON_Delete(root);
	return v;
}

/* A top-level string member of a JSON text, or NULL. */
char *
entra_json_string(const char *body, const char *name)
{
	cJSON *root = cJSON_Parse(body);
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);
	char *s = NULL;

	if (cJSON_IsString(item) && *item->valuestring != '\0' &&
	    !str_has_ctrl(item->valuestring))
		s = xstrdup(item->valuestring);
	cJSON_Delete(root);
	return s;
}
