/*
 * The Bastion data plane's REST calls.  The request shapes follow the
 * Azure CLI's bastion extension, which is what the service accepts: a
 * form-encoded body, the ARM token as a field, no Authorization header,
 * and no reconnect token (one process is one session).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arm.h"
#include "log.h"
#include "misc.h"
#include "session.h"

/* The DELETE runs after the tunnel, when ssh may be waiting on us. */
#define SESSION_DELETE_TIMEOUT	3

static void
free_secret(char **p)
{
	if (*p != NULL)
		explicit_bzero(*p, strlen(*p));
	free(*p);
	*p = NULL;
}

void
session_free(struct session *s)
{
	free(s->endpoint);
	free_secret(&s->auth_token);
	free_secret(&s->websocket_token);
	free(s->node_id);
	memset(s, 0, sizeof(*s));
}

static char *
token_field(const cJSON *root, const char *name)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);

	if (!cJSON_IsString(item) || *item->valuestring == '\0' ||
	    str_has_ctrl(item->valuestring) ||
	    strlen(item->valuestring) > 4096)
		return NULL;
	return xstrdup(item->valuestring);
}

/*
 * 0, or -1 unless authToken, websocketToken and nodeId are all there; a
 * Developer data pod's nodeId is not known to be sent, so it may lack.
 */
int
session_parse(const char *body, struct session *s)
{
	cJSON *root = cJSON_Parse(body);

	if (root == NULL)
		return -1;
	s->auth_token = token_field(root, "authToken");
	s->websocket_token = token_field(root, "websocketToken");
	s->node_id = token_field(root, "nodeId");
	cJSON_Delete(root);
	if (s->auth_token == NULL || s->websocket_token == NULL ||
	    (s->node_id == NULL && !s->developer)) {
		free_secret(&s->auth_token);
		free_secret(&s->websocket_token);
		free(s->node_id);
		s->node_id = NULL;
		return -1;
	}
	return 0;
}

/*
 * The Bastion's errors are JSON with a "message", but HTML and empty
 * bodies happen; show the message, or the body's first line.
 */
void
session_describe_error(const char *body, char *out, size_t size)
{
	cJSON *root = cJSON_Parse(body);
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "message");
	size_t n;

	if (cJSON_IsString(msg) && *msg->valuestring != '\0')
		snprintf(out, size, "%.300s", msg->valuestring);
	else if (root == NULL && *body != '\0' && *body != '<') {
		n = strcspn(body, "\r\n");
		snprintf(out, size, "%.*s", (int)(n < 200 ? n : 200), body);
	} else
		snprintf(out, size, "no error message");
	cJSON_Delete(root);
}

/* The form of POST /api/tokens. */
static void
token_form(struct buf *form, const struct target *tg, const struct token *t)
{
	char port[8];

	snprintf(port, sizeof(port), "%d", tg->port);
	form_add(form, "resourceId", tg->resource_id);
	form_add(form, "protocol", "tcptunnel");
	form_add(form, "workloadHostPort", port);
	form_add(form, "aztoken", t->access_token);
	if (tg->ip != NULL)
		form_add(form, "hostname", tg->ip);
}

/*
 * Asks the Bastion at endpoint for a session to the target.  Only 200
 * with all three tokens is success.  Returns 0, or an exit status with
 * the Bastion's own message in why; *retry_in is the wait before another
 * try is worth it (its 429 and 5xx answers), or -1.  Failures to reach
 * the Bastion at all are reported here.
 */
int
session_create(struct http *h, const char *endpoint, int developer,
    const struct target *tg, const struct token *t, struct session *s,
    char *why, size_t size, long *retry_in)
{
	struct http_request rq = { .method = "POST" };
	struct http_response rs;
	struct buf form;
	char msg[400];
	int r;

	memset(s, 0, sizeof(*s));
	s->developer = developer;
	*retry_in = -1;
	*why = '\0';
	buf_init(&form, 2048);
	token_form(&form, tg, t);
	rq.body = buf_str(&form);
	rq.url = rq.what = xasprintf("https://%s/api/tokens", endpoint);
	r = http_do(h, &rq, &rs);
	explicit_bzero(form.data, form.cap);
	buf_free(&form);
	free((char *)rq.url);
	if (r == 0 && rs.status != 200) {
		session_describe_error(buf_str(&rs.body), msg, sizeof(msg));
		snprintf(why, size, "Bastion %s refused a session for %s port "
		    "%d: %ld %s", endpoint, tg->ip != NULL ? tg->ip :
		    tg->resource_id, tg->port, rs.status, msg);
		if (rs.status == 403 && tg->ip != NULL)
			snprintf(why + strlen(why), size - strlen(why), "; "
			    "IP-based connection needs enableIpConnect on the "
			    "Bastion, or connect by VM name");
		r = rs.status == 401 ? EXIT_CREDENTIAL : EXIT_REFUSED;
		if (rs.status == 429 || rs.status >= 500)
			*retry_in = rs.retry_after >= 0 ? rs.retry_after : 1;
	} else if (r == 0 && session_parse(buf_str(&rs.body), s) == -1) {
		snprintf(why, size, "Bastion %s answered 200 without "
		    "authToken, websocketToken and nodeId", endpoint);
		r = EXIT_PROTOCOL;
	}
	if (r == 0)
		s->endpoint = xstrdup(endpoint);
	http_response_free(&rs);
	return r;
}

/*
 * Ends the session on the Bastion, so that it does not linger until the
 * Bastion's idle timeout.  404 means it is gone already.
 */
int
session_delete(struct http *h, struct session *s)
{
	struct http_request rq = { .method = "DELETE" };
	struct http_response rs;
	struct buf url;
	const char *headers[2];
	char *what;
	int r;

	buf_init(&url, 256);
	buf_puts(&url, "https://");
	buf_puts(&url, s->endpoint);
	buf_puts(&url, "/api/tokens/");
	url_encode(&url, s->auth_token);
	what = xasprintf("https://%s/api/tokens/<authToken>", s->endpoint);
	headers[0] = s->node_id ? xasprintf("X-Node-Id: %s", s->node_id) :
	    NULL;
	headers[1] = NULL;
	rq.url = buf_str(&url);
	rq.what = what;
	rq.headers = headers;
	rq.timeout = SESSION_DELETE_TIMEOUT;
	/* the connection kept from before the tunnel is likely dead */
	rq.fresh = 1;
	r = http_do(h, &rq, &rs);
	if (r == 0 && rs.status != 200 && rs.status != 204 &&
	    rs.status != 404) {
		error("cannot end the Bastion session: DELETE answered %ld; "
		    "it stays until the Bastion's idle timeout", rs.status);
		r = EXIT_REFUSED;
	}
	http_response_free(&rs);
	explicit_bzero(url.data, url.cap);
	buf_free(&url);
	free((char *)headers[0]);
	free(what);
	return r;
}

/*
 * The WebSocket path.  The node id is a query parameter here although it
 * is a header on the REST calls; both are encoded, as several working
 * clients do, in case a token ever holds a reserved character.  A
 * Developer data pod takes /omni/webtunnel/ and no node id.
 */
char *
session_ws_path(const struct session *s)
{
	struct buf path;
	char *p;

	buf_init(&path, 256);
	buf_puts(&path, s->developer ? "/omni/webtunnel/" : "/webtunnelv2/");
	url_encode(&path, s->websocket_token);
	if (!s->developer) {
		buf_puts(&path, "?X-Node-Id=");
		url_encode(&path, s->node_id);
	}
	p = xstrdup(buf_str(&path));
	explicit_bzero(path.data, path.cap);
	buf_free(&path);
	return p;
}

/* The JSON of POST /api/connection, as the Azure CLI sends it. */
static char *
connection_body(const char *bastion_id, const struct target *tg,
    const struct token *t)
{
	cJSON *root = cJSON_CreateObject();
	char *text;

	cJSON_AddStringToObject(root, "resourceId", tg->resource_id);
	cJSON_AddStringToObject(root, "bastionResourceId", bastion_id);
	cJSON_AddNumberToObject(root, "vmPort", tg->port);
	cJSON_AddStringToObject(root, "azToken", t->access_token);
	cJSON_AddStringToObject(root, "connectionType", "nativeclient");
	text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return text;
}

/*
 * A Developer Bastion's dnsName is a shared front end: it names, as plain
 * text, the data pod that serves this connection.  Returns 0 with *pod,
 * or an exit status after reporting the error.
 */
int
session_data_pod(struct http *h, const char *dns_name, const char *bastion_id,
    const struct target *tg, const struct token *t, char **pod)
{
	const char *headers[] = { "Content-Type: application/json", NULL };
	struct http_request rq = { .method = "POST", .headers = headers };
	struct http_response rs;
	char *text, msg[400];
	size_t n;
	int r;

	*pod = NULL;
	rq.body = text = connection_body(bastion_id, tg, t);
	rq.url = rq.what = xasprintf("https://%s/api/connection", dns_name);
	r = http_do(h, &rq, &rs);
	explicit_bzero(text, strlen(text));
	free(text);
	if (r == 0 && rs.status != 200) {
		session_describe_error(buf_str(&rs.body), msg, sizeof(msg));
		error("Developer Bastion %s found no data pod for %s: %ld %s",
		    dns_name, tg->resource_id, rs.status, msg);
		r = rs.status == 401 ? EXIT_CREDENTIAL : EXIT_REFUSED;
	} else if (r == 0) {
		text = (char *)buf_str(&rs.body);
		text += strspn(text, " \t\r\n");
		n = strcspn(text, " \t\r\n");
		text[n] = '\0';
		if (arm_is_dns_name(text))
			*pod = xstrdup(text);
		else {
			error("Developer Bastion %s answered /api/connection "
			    "with something that is not a host name", dns_name);
			r = EXIT_PROTOCOL;
		}
	}
	http_response_free(&rs);
	free((char *)rq.url);
	return r;
}
