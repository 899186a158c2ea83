/*
 * One ARM request with the rules every ARM read and write shares: the
 * bearer token, JSON both ways, and bounded retries of the answers ARM
 * asks to repeat (429 with Retry-After, 5xx) within ConnectTimeout.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arm.h"
#include "log.h"
#include "misc.h"

/* The resource id as a URL path, each segment percent-encoded. */
static void
append_id_path(struct buf *url, const char *id)
{
	char seg[256];
	size_t n;

	while (*id == '/') {
		id++;
		n = strcspn(id, "/");
		snprintf(seg, sizeof(seg), "%.*s", (int)n, id);
		buf_puts(url, "/");
		url_encode(url, seg);
		id += n;
	}
}

/*
 * {ArmEndpoint}{id}{suffix}?api-version=api, for an id read from the
 * settings or from ARM; suffix is ours ("/start", "/instanceView").
 */
char *
arm_url(const struct options *o, const char *id, const char *suffix,
    const char *api)
{
	struct buf url;
	char *s;

	buf_init(&url, 256);
	buf_puts(&url, o->arm_endpoint);
	append_id_path(&url, id);
	buf_puts(&url, suffix);
	buf_puts(&url, "?api-version=");
	buf_puts(&url, api);
	s = xstrdup(buf_str(&url));
	buf_free(&url);
	return s;
}

/*
 * Sends the request, and again while ARM answers 429 or 5xx and its wait
 * fits in ConnectTimeout.  Returns 0 with *rs holding the last answer,
 * whatever its status, or an exit status after a transport failure.
 */
int
arm_request(struct http *h, const struct options *o, const struct token *t,
    const char *method, const char *url, const char *body,
    struct http_response *rs)
{
	const char *headers[] = { NULL, "Accept: application/json", NULL,
	    NULL };
	struct http_request rq = { .method = method, .url = url,
	    .what = url, .body = body, .headers = headers };
	long left = o->connect_timeout;
	char *auth;
	int r, attempt = 0;

	auth = xasprintf("Authorization: Bearer %s", t->access_token);
	headers[0] = auth;
	if (body != NULL)
		headers[2] = "Content-Type: application/json";
	while ((r = http_do(h, &rq, rs)) == 0 &&
	    http_retry_later(rs, attempt++, &left, "ARM"))
		http_response_free(rs);
	explicit_bzero(auth, strlen(auth));
	free(auth);
	return r;
}

/*
 * Reports an ARM answer other than success as "cannot WHAT: status code:
 * message" and returns the exit status it deserves.
 */
int
arm_report(struct http_response *rs, const char *what)
{
	char why[512], wait[64] = "";

	arm_describe_error(buf_str(&rs->body), why, sizeof(why));
	if (rs->status == 429 && rs->retry_after >= 0)
		snprintf(wait, sizeof(wait), " (throttled; it asks to wait "
		    "%ld s)", rs->retry_after);
	else if (rs->status == 429)
		snprintf(wait, sizeof(wait), " (throttled; try again later)");
	error("cannot %s: %ld %s%s", what, rs->status, why, wait);
	return rs->status == 401 ? EXIT_CREDENTIAL : EXIT_REFUSED;
}
