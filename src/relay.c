/*
 * The connection's life after ARM: a session from the Bastion, a
 * WebSocket on it, the relay, and the session's deletion.  Until the
 * target has sent a byte, a failure the Bastion may not repeat (its 429
 * and 5xx answers, an upgrade refused, an HTTP page or silence after the
 * 101) is retried on a fresh session, replaying what stdin had sent.
 * Every session is deleted, failed ones included.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cred.h"
#include "log.h"
#include "misc.h"
#include "proxy.h"
#include "relay.h"
#include "session.h"
#include "tunnel.h"

#define ATTEMPTS	3

/* The WebSocket's settings, from the options and the data plane host. */
static int
tunnel_settings(const struct options *o, const char *endpoint,
    struct tunnel_config *tc, char *host, size_t size, struct proxy *px)
{
	char *url = xasprintf("https://%s", endpoint);
	int r;

	memset(tc, 0, sizeof(*tc));
	memset(px, 0, sizeof(*px));
	r = url_host(url, host, size, &tc->port, 443);
	free(url);
	if (r == -1) {
		error("cannot parse the Bastion's dnsName %s", endpoint);
		return EXIT_PROTOCOL;
	}
	if ((r = proxy_find(host, px)) != 0)
		return r;
	tc->host = host;
	tc->ca_file = o->ca_file;
	tc->ca_dir = o->ca_dir;
	tc->user_agent = BASTION_STDIO_UA;
	tc->proxy = px;
	tc->frame_size = (size_t)o->frame_size;
	tc->connect_timeout = o->connect_timeout;
	tc->ping_interval = o->ping_interval;
	return 0;
}

/*
 * One session and one WebSocket on it.  When no other attempt will
 * follow, the tunnel is closed (*tp becomes NULL) before the session is
 * deleted, so that ssh sees EOF without waiting for the DELETE.
 */
static int
attempt(struct http *h, struct tunnel **tp, struct tunnel_stats *st,
    const char *endpoint, int developer, const struct target *tg,
    struct token *tok, char *why, size_t size, long *retry_in)
{
	volatile sig_atomic_t *saved;
	struct session s;
	bool retryable;
	char *path;
	int r;

	/*
	 * Not cut short by a signal: once the Bastion has made the session,
	 * only its answer lets us delete it.  The signal is acted on as soon
	 * as the tunnel starts.
	 */
	saved = h->interrupted;
	h->interrupted = NULL;
	r = session_create(h, endpoint, developer, tg, tok, &s, why, size,
	    retry_in);
	h->interrupted = saved;
	if (r != 0)
		return r;
	verbose("session for %s port %d", tg->resource_id, tg->port);
	path = session_ws_path(&s);
	r = tunnel_attempt(*tp, path, &retryable, why, size);
	explicit_bzero(path, strlen(path));
	free(path);
	*retry_in = retryable ? 1 : -1;
	if (r == 0 || !retryable) {
		tunnel_close(*tp, st);
		*tp = NULL;
		/* lws closed fds 0 and 1; keep new sockets from taking them */
		sanitise_stdfd();
	}
	h->interrupted = NULL;	/* a signal must not stop the clean-up */
	(void)session_delete(h, &s);
	h->interrupted = saved;
	session_free(&s);
	return r;
}

/*
 * The target was not reached: the hook may know why, or wake it up.
 * Without one, the close is final, as are other closes: three attempts
 * a second apart would only delay the message.
 */
static int
ask_hook(const struct relay_hook *hook, const char *why)
{
	if (hook == NULL)
		return -1;
	verbose("%s; asking why", why);
	return hook->unreached(hook->arg);
}

/*
 * Runs the attempts; returns 0 for a clean end or an exit status, with
 * the last attempt's failure in why (empty if reported already), which
 * the caller reports unless it has another way to try.
 */
int
relay_run(struct http *h, const struct options *o, const char *endpoint,
    int developer, const struct target *tg, struct token *tok,
    const struct relay_hook *hook, volatile sig_atomic_t *signalled,
    bool *opened, char *why, size_t size)
{
	struct tunnel_config tc;
	struct tunnel_stats st = { false, 0, 0 };
	struct tunnel *t;
	struct proxy px;
	char host[256];
	long retry_in;
	bool renewed = false;
	int r, n, k;

	*why = '\0';
	if ((r = tunnel_settings(o, endpoint, &tc, host, sizeof(host),
	    &px)) != 0)
		return r;
	tc.signalled = signalled;
	if ((t = tunnel_open(&tc)) == NULL) {
		proxy_free(&px);
		return EXIT_LOCAL_IO;
	}
	for (n = 1;; n++) {
		why[0] = '\0';
		r = attempt(h, &t, &st, endpoint, developer, tg, tok, why,
		    size, &retry_in);
		if (r == EXIT_CREDENTIAL && !renewed && n < ATTEMPTS) {
			/* a cached token the Bastion no longer takes */
			verbose("%s; getting a new ARM token", why);
			renewed = true;
			if (cred_renew_arm_token(h, o, tok) != 0)
				break;
			continue;
		}
		if (r != 0 && t != NULL && tunnel_unreached(t)) {
			if ((k = ask_hook(hook, why)) > 0) {
				r = k;		/* the hook said why */
				why[0] = '\0';
			}
			if (k != 0)
				break;
			n--;	/* the target's wake-up is not an attempt */
			continue;
		}
		if (retry_in > o->connect_timeout) {
			snprintf(why + strlen(why), size - strlen(why),
			    " (it asks to wait %ld s)", retry_in);
			break;
		}
		if (r == 0 || retry_in < 0 || n == ATTEMPTS || *signalled)
			break;
		verbose("attempt %d: %s; trying a new session in %ld s", n, why,
		    retry_in);
		sleep((unsigned)retry_in);
	}
	tunnel_close(t, &st);
	sanitise_stdfd();
	if (r != 0 && why[0] != '\0' && n > 1)
		snprintf(why + strlen(why), size - strlen(why),
		    " (attempt %d of %d)", n, n);
	if (r == 0)
		*why = '\0';
	verbose("tunnel closed: %llu bytes up, %llu down",
	    (unsigned long long)st.bytes_up,
	    (unsigned long long)st.bytes_down);
	proxy_free(&px);
	*opened = st.opened;
	return r;
}
