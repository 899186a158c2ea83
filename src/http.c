/*
 * The REST legs (Entra ID, ARM, the Bastion's /api/tokens) over libcurl.
 * One easy handle is reused so that requests to the same host share a
 * connection and a TLS session.
 */
#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "misc.h"
#include "proxy.h"

/* No answer bastion-stdio expects is anywhere near this large. */
#define HTTP_BODY_MAX	(1024 * 1024)

int
http_init(struct http *h, const char *ca_file, const char *ca_dir,
    const char *ua, long timeout)
{
	memset(h, 0, sizeof(*h));
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    (h->curl = curl_easy_init()) == NULL) {
		error("cannot initialise libcurl");
		return EXIT_LOCAL_IO;
	}
	h->ca_file = ca_file;
	h->ca_dir = ca_dir;
	h->user_agent = ua;
	h->timeout = timeout;
	return 0;
}

void
http_cleanup(struct http *h)
{
	if (h->curl != NULL)
		curl_easy_cleanup(h->curl);
	h->curl = NULL;
	curl_global_cleanup();
}

void
http_response_free(struct http_response *rs)
{
	buf_free(&rs->body);
	free(rs->authenticate);
	free(rs->location);
	free(rs->async_operation);
	rs->authenticate = rs->location = rs->async_operation = NULL;
}

/* The value of header name in a header line, or NULL. */
static const char *
header_value(const char *p, size_t len, const char *name, size_t *vlen)
{
	size_t i = strlen(name);

	if (len <= i || strncasecmp(p, name, i) != 0)
		return NULL;
	while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	*vlen = len - i;
	while (*vlen > 0 && (p[i + *vlen - 1] == '\r' ||
	    p[i + *vlen - 1] == '\n' || p[i + *vlen - 1] == ' '))
		(*vlen)--;
	return p + i;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;

	if (b->len + n > HTTP_BODY_MAX)
		return 0;	/* libcurl fails the transfer */
	buf_put(b, p, n * size);
	return n * size;
}

/* Keeps the first value of a header, up to 4 KiB. */
static void
keep_header(char **field, const char *v, size_t vlen)
{
	if (*field != NULL || vlen >= 4096)
		return;
	*field = xmalloc(vlen + 1);
	memcpy(*field, v, vlen);
	(*field)[vlen] = '\0';
}

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct http_response *rs = arg;
	size_t len = n * size, vlen;
	const char *v;
	char num[16];
	long secs;

	if ((v = header_value(p, len, "retry-after:", &vlen)) != NULL &&
	    vlen < sizeof(num)) {
		memcpy(num, v, vlen);
		num[vlen] = '\0';
		if (parse_number(num, 0, 86400, &secs) == 0)
			rs->retry_after = secs;
	} else if ((v = header_value(p, len, "www-authenticate:",
	    &vlen)) != NULL)
		keep_header(&rs->authenticate, v, vlen);
	else if ((v = header_value(p, len, "location:", &vlen)) != NULL)
		keep_header(&rs->location, v, vlen);
	else if ((v = header_value(p, len, "azure-asyncoperation:",
	    &vlen)) != NULL)
		keep_header(&rs->async_operation, v, vlen);
	return len;
}

/* Lets a signal end a transfer that would otherwise run to its timeout. */
static int
on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
    curl_off_t un)
{
	struct http *h = arg;

	(void)dt, (void)dn, (void)ut, (void)un;
	return h->interrupted != NULL && *h->interrupted;
}

/* The path of a DELETE carries the session's authToken. */
static void
redact_session_path(char *line)
{
	static const char marker[] = "/api/tokens/";
	static const char mask[] = "<authToken>";
	char *p = strstr(line, marker);

	/* the caller's line buffer holds 200 bytes, the mask fits */
	if (p != NULL && (size_t)(p - line) + sizeof(marker) +
	    sizeof(mask) < 200)
		memcpy(p + sizeof(marker) - 1, mask, sizeof(mask));
	else if (p != NULL)
		*p = '\0';
}

/*
 * libcurl's protocol trace at DEBUG3, headers only: bodies carry client
 * secrets and tokens, and so does an Authorization header.
 */
static int
on_debug(CURL *c, curl_infotype type, char *data, size_t size, void *arg)
{
	const char *dir = type == CURLINFO_HEADER_IN ? "<" : ">";
	char line[200];
	size_t n;

	(void)c, (void)arg;
	if (type != CURLINFO_HEADER_IN && type != CURLINFO_HEADER_OUT)
		return 0;
	while (size > 0) {
		n = strcspn(data, "\r\n");
		if (n > size)
			n = size;
		if (n > 0 && strncasecmp(data, "authorization:", 14) == 0)
			debug3("%s Authorization: <redacted>", dir);
		else if (n > 0) {
			snprintf(line, sizeof(line), "%.*s", (int)n, data);
			redact_session_path(line);
			debug3("%s %s", dir, line);
		}
		while (n < size && (data[n] == '\r' || data[n] == '\n'))
			n++;
		data += n;
		size -= n;
	}
	return 0;
}

/* Per-request options: method, body, headers, proxy and time bounds. */
static int
set_request(struct http *h, const struct http_request *rq,
    struct http_response *rs, struct curl_slist **hdrs)
{
	CURL *c = h->curl;
	struct proxy px;
	char host[256];
	int port, r;
	size_t i;

	if (url_host(rq->url, host, sizeof(host), &port, 443) == -1) {
		error("%s: not a valid URL", rq->what);
		return EXIT_CONFIG;
	}
	if (rq->local)
		memset(&px, 0, sizeof(px));
	else if ((r = proxy_find(host, &px)) != 0)
		return r;
	curl_easy_setopt(c, CURLOPT_PROXY, px.url != NULL ? px.url : "");
	/* the decision is made: libcurl must not apply no_proxy again */
	curl_easy_setopt(c, CURLOPT_NOPROXY, "");
	h->proxy[0] = '\0';
	if (px.url != NULL) {
		snprintf(h->proxy, sizeof(h->proxy), "%s:%d (from %s)",
		    px.host, px.port, px.variable);
		debug2("%s: through proxy %s", rq->what, h->proxy);
	}
	proxy_free(&px);

	for (i = 0; rq->headers != NULL && rq->headers[i] != NULL; i++)
		*hdrs = curl_slist_append(*hdrs, rq->headers[i]);
	/* curl would otherwise send "Expect: 100-continue" for big bodies */
	*hdrs = curl_slist_append(*hdrs, "Expect:");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
	curl_easy_setopt(c, CURLOPT_URL, rq->url);
	curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	if (rq->body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE,
		    (long)strlen(rq->body));
	}
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST,
	    strcmp(rq->method, rq->body != NULL ? "POST" : "GET") == 0 ?
	    NULL : rq->method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT,
	    rq->timeout > 0 ? rq->timeout : h->timeout);
	if (rq->connect_ms > 0)
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, rq->connect_ms);
	else
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, h->timeout);
	if (rq->local)
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, (long)rq->fresh);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &rs->body);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, rs);
	return 0;
}

/* Options that stay the same for every request of the process. */
static void
set_common(struct http *h, char *errbuf)
{
	CURL *c = h->curl;

	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, h->user_agent);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, h);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	if (h->ca_file != NULL) {
		/* the file alone, as on the WebSocket leg */
		curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
		curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	} else if (h->ca_dir != NULL) {
		/* the directory alone: libcurl's bundle would be parsed */
		curl_easy_setopt(c, CURLOPT_CAINFO, NULL);
		curl_easy_setopt(c, CURLOPT_CAPATH, h->ca_dir);
	}
	if (log_get_level() >= LOG_DEBUG3) {
		curl_easy_setopt(c, CURLOPT_VERBOSE, 1L);
		curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, on_debug);
	}
}

/*
 * Reports msg, or keeps it in h->held for a caller that may yet get
 * there another way and report only what is final.
 */
static void
report(struct http *h, const char *msg)
{
	if (h->held != NULL)
		snprintf(h->held, h->held_size, "%s", msg);
	else
		error("%s", msg);
}

/* Says why no answer came, in libcurl's words where they are better. */
static int
report_failure(struct http *h, const struct http_request *rq, CURLcode cc,
    const char *errbuf)
{
	const char *why = *errbuf != '\0' ? errbuf : curl_easy_strerror(cc);
	char msg[700];
	long code = 0;
	int r = EXIT_NETWORK;

	if (rq->probe || cc == CURLE_ABORTED_BY_CALLBACK) {
		debug("%s %s: %s", rq->method, rq->what,
		    rq->probe ? why : "interrupted");
		return EXIT_NETWORK;
	}
	curl_easy_getinfo(h->curl, CURLINFO_HTTP_CONNECTCODE, &code);
	if (h->proxy[0] != '\0' && code >= 300)
		/* the proxy's own answer, not Azure's */
		snprintf(msg, sizeof(msg), "%s %s: proxy %s refused the "
		    "connection: HTTP %ld%s", rq->method, rq->what, h->proxy,
		    code, code == 407 ? " (it wants credentials: "
		    "http://user:password@host:port in the variable)" : "");
	else if (h->proxy[0] != '\0' && (cc == CURLE_COULDNT_CONNECT ||
	    cc == CURLE_COULDNT_RESOLVE_PROXY))
		snprintf(msg, sizeof(msg), "%s %s: cannot reach proxy %s: %s",
		    rq->method, rq->what, h->proxy, why);
	else if (cc == CURLE_WRITE_ERROR) {
		snprintf(msg, sizeof(msg), "%s %s: the answer is larger than "
		    "%d bytes", rq->method, rq->what, HTTP_BODY_MAX);
		r = EXIT_PROTOCOL;
	} else if (cc == CURLE_UNSUPPORTED_PROTOCOL) {
		snprintf(msg, sizeof(msg), "%s %s: only https is allowed",
		    rq->method, rq->what);
		r = EXIT_CONFIG;
	} else if (cc == CURLE_OPERATION_TIMEDOUT)
		snprintf(msg, sizeof(msg), "%s %s: no answer within %ld s "
		    "(ConnectTimeout)", rq->method, rq->what,
		    rq->timeout > 0 ? rq->timeout : h->timeout);
	else
		snprintf(msg, sizeof(msg), "%s %s: %s", rq->method, rq->what,
		    why);
	report(h, msg);
	return r;
}

/*
 * Sends one request.  Returns 0 when an HTTP answer arrived, whatever its
 * status, or an exit status after reporting why none did.
 */
int
http_do(struct http *h, const struct http_request *rq,
    struct http_response *rs)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	struct timespec t0;
	CURLcode cc;
	int r;

	memset(rs, 0, sizeof(*rs));
	rs->retry_after = -1;
	h->last_status = 0;
	curl_easy_reset(h->curl);
	set_common(h, errbuf);
	if ((r = set_request(h, rq, rs, &hdrs)) != 0) {
		curl_slist_free_all(hdrs);
		return r;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cc = curl_easy_perform(h->curl);
	curl_slist_free_all(hdrs);
	if (cc != CURLE_OK)
		return report_failure(h, rq, cc, errbuf);
	curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &rs->status);
	h->last_status = rs->status;
	debug("%s %s: %ld (%ld ms)", rq->method, rq->what, rs->status,
	    ms_since(&t0));
	return 0;
}

/*
 * Up to this much is added to each wait before a retry, so that the
 * processes one ssh fan-out started do not all ask again at once.
 */
#define JITTER_MS	500

/* Sleeps, unless a signal cuts it short. */
static void
pause_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	(void)nanosleep(&ts, NULL);
}

/*
 * Whether an answer is worth waiting for and asking again: throttling
 * (429) and server errors, up to three retries, waiting as Retry-After
 * says (or 1, 2, 4 s) plus some jitter when that fits in the *left
 * seconds.  Sleeps if so.
 */
bool
http_retry_later(const struct http_response *rs, int attempt, long *left,
    const char *who)
{
	long wait;

	if (rs->status != 429 && rs->status < 500)
		return false;
	wait = rs->retry_after >= 0 ? rs->retry_after : 1L << attempt;
	if (attempt >= 3 || wait + 1 > *left) {
		if (wait + 1 > *left && rs->retry_after >= 0)
			debug("%s asks to retry after %ld s: too late", who,
			    wait);
		return false;
	}
	debug("%s answered %ld: retrying in %ld s", who, rs->status, wait);
	pause_ms(wait * 1000 + (long)arc4random_uniform(JITTER_MS));
	*left -= wait + 1;	/* the jitter counts as a second */
	return true;
}
