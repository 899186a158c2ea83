/*
 * The relay.  One thread, one libwebsockets context: the WebSocket client
 * and stdin/stdout, adopted as raw-file descriptors, share its poll loop.
 *
 * Bytes flow through two queues: up (stdin to the Bastion) and down (the
 * Bastion to stdout).  A full queue stops its reader: stdin is not polled
 * while up is above its high-water mark, and the WebSocket is not read
 * while down is.  Every flow-control change and every stdout re-arm is
 * made after lws_service() returns, never inside a callback, because of
 * two libwebsockets 4.1.6 bugs noted where they bite.
 *
 * Until the target has sent its first byte, a failed WebSocket may be
 * retried on a new session: what was sent is kept and replayed.  After
 * that first byte the stream is live and is never reconnected.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "misc.h"
#include "tunnel_int.h"

#define DRAIN_SECONDS	5		/* to flush queues once ending */

/*
 * libwebsockets 4.1.6 builds the upgrade request line in a fixed 2048-byte
 * buffer and silently cuts longer paths (fixed upstream in ede7f8b0f,
 * v4.2.0), so a longer path is refused here with a clear message.
 */
#define WS_PATH_MAX	1900

/* For the signal handler; one tunnel per process. */
static struct lws_context *volatile active_ctx;

/* The last error line from libwebsockets, for TLS failures (see below). */
static char lws_last_error[256];

/* Whether lws choked on bytes that are not WebSocket frames. */
static bool lws_saw_garbage;

void
tunnel_wake(void)
{
	struct lws_context *ctx = active_ctx;

	if (ctx != NULL)
		lws_cancel_service(ctx);
}

/*
 * libwebsockets logs through here.  Its lines are too cryptic for users,
 * so they go to debug levels.  Its CONNECTION_ERROR text for every TLS
 * failure is "error:00000001:lib(0)::reason(1)" in 4.1.6; the real reason
 * is in the last error line, which is kept for the user's message.  And
 * when a Bastion backend answers an HTTP error page after the 101, lws
 * reads its "HT" as a frame with reserved bits set or a fragmented
 * control frame; those lines tell us that this is what happened.
 */
static void
lws_emit(int level, const char *line)
{
	size_t n = strcspn(line, "\r\n");

	if (level == LLL_ERR)
		snprintf(lws_last_error, sizeof(lws_last_error), "%.*s",
		    (int)n, line);
	if (strstr(line, "rsv bits") != NULL ||
	    strstr(line, "can't be fragmented") != NULL ||
	    strstr(line, "illegal opcode") != NULL)
		lws_saw_garbage = true;
	if (level & (LLL_ERR | LLL_WARN))
		debug2("lws: %.*s", (int)n, line);
	else
		debug3("lws: %.*s", (int)n, line);
}

/*
 * Records how the attempt ends: the first verdict stands.  The message
 * is reported by the caller, which alone knows whether it will retry.
 */
void
tun_finish(struct tunnel *t, int status, bool retryable, const char *fmt,
    ...)
{
	va_list ap;

	if (t->status == 0 && status != 0) {
		t->status = status;
		t->retryable = retryable && !t->target_spoke &&
		    !t->replay_lost && !t->out_gone;
		va_start(ap, fmt);
		vsnprintf(t->why, sizeof(t->why), fmt, ap);
		va_end(ap);
	}
	t->closing = true;
}

/* Keeps what was sent before the target spoke, for a replay. */
void
tun_keep_for_replay(struct tunnel *t, const unsigned char *p, size_t n)
{
	if (t->target_spoke || t->replay_lost)
		return;
	if (t->sent.len + n > REPLAY_MAX) {
		t->replay_lost = true;
		buf_free(&t->sent);
		return;
	}
	buf_put(&t->sent, p, n);
}

/*
 * The frames are built in tunnel_ws.c; only the close is left to lws
 * when lws reads the stream, since it must then see the ack itself.
 */
static int
on_ws_writeable(struct tunnel *t, struct lws *wsi)
{
	/* 4.1.6 may call again after the close began; a second -1 would
	 * drop the connection without waiting for the close ack. */
	if (t->close_sent)
		return 0;
	if (!t->own_rx && t->closing && (t->up.len == 0 || t->status != 0)) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
		t->close_sent = true;
		return -1;
	}
	return tun_ws_writeable(t, wsi);
}

/* len bytes came down, by lws or by tunnel_ws.c. */
void
tun_count_down(struct tunnel *t, size_t len)
{
	t->stats.bytes_down += len;
	if (len > 0 && !t->target_spoke) {
		t->target_spoke = true;
		buf_free(&t->sent);
		lws_sul_cancel(&t->deadline);	/* the first-byte wait */
	}
}

static void
on_receive(struct tunnel *t, const void *in, size_t len)
{
	/* Text and fragments alike are stream bytes.  Receive flow control
	 * is not touched here: see apply_flow(). */
	buf_put(&t->down, in, len);
	tun_count_down(t, len);
}

static void
on_deadline(lws_sorted_usec_list_t *sul)
{
	struct tunnel *t = lws_container_of(sul, struct tunnel, deadline);
	long secs = t->cfg->connect_timeout;

	switch (t->deadline_kind) {
	case DL_CONNECT:
		tun_finish(t, EXIT_NETWORK, false, "no WebSocket connection "
		    "to Bastion %s within %ld s (ConnectTimeout)",
		    t->cfg->host, secs);
		break;
	case DL_FIRST_BYTE:
		if (t->replay_lost) {
			/* too much went up to replay: a working stream to a
			 * target that does not talk back; leave it be */
			debug("the target is silent, but the stream goes on");
			return;
		}
		/* the 101-then-silence failure: a new session may work */
		tun_finish(t, EXIT_PROTOCOL, true, "Bastion %s opened the "
		    "WebSocket but relayed nothing for %ld s (ConnectTimeout)",
		    t->cfg->host, secs);
		break;
	case DL_DRAIN:
		debug("gave up flushing after %d s", DRAIN_SECONDS);
		break;
	}
	t->done = true;
	lws_cancel_service(t->ctx);
}

static void
set_deadline(struct tunnel *t, enum deadline kind, long seconds)
{
	t->deadline_kind = kind;
	lws_sul_schedule(t->ctx, 0, &t->deadline, on_deadline,
	    seconds * LWS_US_PER_SEC);
}

/* The upgrade succeeded: start relaying. */
static int
on_established(struct tunnel *t, struct lws *ws)
{
	int one = 1;

	tun_ws_established(t);
	t->established = true;
	t->stats.opened = true;
	t->last_pong = time(NULL);
	verbose("tunnel open to %s port %d", t->cfg->host, t->cfg->port);
	(void)setsockopt(lws_get_socket_fd(ws), IPPROTO_TCP, TCP_NODELAY,
	    &one, sizeof(one));
	if (!t->adopted && !tun_adopt_stdio(t, ws)) {
		tun_finish(t, EXIT_LOCAL_IO, false,
		    "cannot poll stdin and stdout");
		return 0;
	}
	if (!t->target_spoke)
		set_deadline(t, DL_FIRST_BYTE, t->cfg->connect_timeout);
	else
		lws_sul_cancel(&t->deadline);
	return 0;
}

/* Before the upgrade completed: name what the Bastion did, if anything. */
static void
on_connect_error(struct tunnel *t, struct lws *ws, const char *why)
{
	int status = (int)lws_http_client_http_response(ws);

	if (status == 101)
		tun_finish(t, EXIT_PROTOCOL, true, "Bastion %s answered 101 "
		    "without a valid WebSocket handshake (libwebsockets: %s)",
		    t->cfg->host, why != NULL ? why : "?");
	else if (status > 0)
		tun_finish(t, status == 401 || status == 403 ? EXIT_REFUSED :
		    EXIT_PROTOCOL, true, "Bastion %s refused the WebSocket: "
		    "HTTP %d instead of 101", t->cfg->host, status);
	else
		tun_finish(t, EXIT_NETWORK, false, "cannot connect to Bastion "
		    "%s port %d: %s", t->cfg->host, t->cfg->port,
		    lws_last_error[0] != '\0' ? lws_last_error :
		    why != NULL ? why : "unknown error");
	t->ws = NULL;
	t->ws_gone = true;
}

/* The WebSocket is gone; how it went decides the exit status. */
static void
on_ws_closed(struct tunnel *t)
{
	long silent;

	tun_ws_release(t);	/* what is left to read decides too */
	silent = (long)(time(NULL) - t->last_pong);
	t->ws = NULL;
	t->ws_gone = true;
	if (t->close_sent)
		debug("tunnel closed by us");
	else if (t->peer_close == LWS_CLOSE_STATUS_NORMAL ||
	    t->peer_close == LWS_CLOSE_STATUS_GOINGAWAY)
		debug("Bastion closed the tunnel (code %d)", t->peer_close);
	else if (t->peer_close >= 0) {
		/* the target did not answer the Bastion: perhaps stopped */
		t->unreached = !t->target_spoke &&
		    t->peer_close == LWS_CLOSE_STATUS_UNEXPECTED_CONDITION;
		tun_finish(t, EXIT_TUNNEL, t->unreached, "Bastion closed the "
		    "tunnel with code %d%s%s", t->peer_close,
		    t->close_reason[0] != '\0' ? ": " : "", t->close_reason);
	}
	else if ((lws_saw_garbage || t->saw_garbage) && !t->target_spoke)
		tun_finish(t, EXIT_PROTOCOL, true, "Bastion %s answered the "
		    "upgrade with 101, then sent an HTTP response instead of "
		    "WebSocket frames", t->cfg->host);
	else if (t->cfg->ping_interval > 0 &&
	    silent >= 2 * t->cfg->ping_interval)
		tun_finish(t, EXIT_TUNNEL, false, "no answer from Bastion %s "
		    "for %ld s (PingInterval %ld)", t->cfg->host, silent,
		    t->cfg->ping_interval);
	else
		tun_finish(t, EXIT_TUNNEL, !t->target_spoke, "connection to "
		    "Bastion %s lost", t->cfg->host);
	t->closing = true;
	lws_cancel_service(t->ctx);
}

static int
on_append_headers(struct tunnel *t, struct lws *ws, void *in, size_t len)
{
	unsigned char **p = in, *end = *p + len;
	const char *ua = t->cfg->user_agent;

	if (lws_add_http_header_by_name(ws, (const unsigned char *)
	    "User-Agent:", (const unsigned char *)ua, (int)strlen(ua), p,
	    end) != 0)
		return -1;
	return 0;
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	struct tunnel *t = lws_context_user(lws_get_context(wsi));
	const unsigned char *code = in;

	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
		/* user is the client SSL_CTX, before any connection */
		if (t->cfg->ca_file == NULL && t->cfg->ca_dir != NULL &&
		    SSL_CTX_load_verify_locations(user, NULL,
		    t->cfg->ca_dir) != 1)
			debug("cannot use the CA directory %s", t->cfg->ca_dir);
		return 0;
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
		return on_append_headers(t, wsi, in, len);
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		return on_established(t, wsi);
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		on_connect_error(t, wsi, in);
		return 0;
	case LWS_CALLBACK_CLIENT_HTTP_REDIRECT:
		return -1;	/* the path carries the websocketToken */
	case LWS_CALLBACK_CLIENT_RECEIVE:
		on_receive(t, in, len);
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
		t->last_pong = time(NULL);
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return on_ws_writeable(t, wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		t->peer_close = len >= 2 ? (code[0] << 8 | code[1]) : 1005;
		snprintf(t->close_reason, sizeof(t->close_reason), "%.*s",
		    len > 2 ? (int)(len - 2) : 0, len > 2 ? (const char *)
		    code + 2 : "");
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
		on_ws_closed(t);
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		if (wsi == t->ws) {	/* killed without CLOSED */
			tun_ws_release(t);
			t->ws = NULL;
			t->ws_gone = true;
		}
		return 0;
	case LWS_CALLBACK_RAW_RX_FILE:
		if (wsi == t->in)
			return tun_on_stdin(t);
		if (wsi == t->net) {
			tun_ws_read(t, DOWN_HWM);
			return 0;
		}
		lws_rx_flow_control(wsi, 0);
		return 0;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		return wsi == t->out ? tun_on_stdout(t) : 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		tun_on_file_closed(t, wsi);
		return 0;
	default:
		return 0;
	}
}

/*
 * lws's INFO lines carry what tells an HTTP page after the 101 from
 * frames, but cost a formatted line per write; once the frames are read
 * in tunnel_ws.c, which tells them apart itself, they are left out.
 */
static void
set_lws_logging(bool info)
{
	int levels = LLL_ERR | LLL_WARN | LLL_NOTICE;

	lws_set_log_level(info ? levels | LLL_INFO : levels, lws_emit);
}

/*
 * Pauses and resumes the readers.  Done here, after lws_service() has
 * returned: in 4.1.6, disabling WebSocket receive inside its own RECEIVE
 * callback while OpenSSL still holds decrypted bytes spins forever
 * (warmcat/libwebsockets#2360; mitigated upstream in c11311ff5, v4.3.0).
 */
static void
apply_flow(struct tunnel *t)
{
	tun_apply_stdin_flow(t);
	if (t->own_rx)
		tun_ws_flow(t);
	if (t->ws == NULL || t->own_rx)
		return;
	if (!t->rx_paused && t->down.len > DOWN_HWM) {
		lws_rx_flow_control(t->ws, 0);
		t->rx_paused = true;
	} else if (t->rx_paused && t->down.len < DOWN_LWM) {
		lws_rx_flow_control(t->ws, 1);
		t->rx_paused = false;
	}
}

/* Why the relay should wind down, if it should. */
static void
check_ends(struct tunnel *t)
{
	if (*t->cfg->signalled && !t->closing) {
		debug("signal %d: closing the tunnel", (int)*t->cfg->signalled);
		t->closing = true;
	}
	if (t->out_gone && !t->closing) {
		debug("stdout closed: closing the tunnel");
		t->closing = true;
	}
	if (t->out_gone)
		buf_reset(&t->down);	/* nobody to deliver to */
	if (t->in_eof && t->up.len == 0 && !t->closing && t->established) {
		debug("stdin closed: closing the tunnel");
		t->closing = true;
	}
}

/* Decides, after each service round, what the loop must do next. */
static void
after_service(struct tunnel *t)
{
	bool was_closing = t->closing;

	check_ends(t);
	if (!t->established && (t->closing || t->ws_gone)) {
		t->done = true;
		return;
	}
	if (t->closing && !was_closing && t->deadline_kind != DL_DRAIN)
		set_deadline(t, DL_DRAIN, DRAIN_SECONDS);
	if (t->want_own_rx) {
		tun_ws_take(t);
		set_lws_logging(!t->own_rx);
	}
	apply_flow(t);
	if (t->ws != NULL && !t->close_sent && !t->echo_sent &&
	    (t->up.len > 0 || t->closing || t->pong_due || t->echo_due))
		lws_callback_on_writable(t->ws);
	if (t->out != NULL && t->down.len > 0)
		lws_callback_on_writable(t->out);
	if (t->ws_gone && (t->down.len == 0 || t->out == NULL ||
	    t->retryable))
		t->done = true;
}


static const struct lws_protocols protocols[] = {
	{ "tunnel", callback, 0, RX_CHUNK, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* The lowest descriptor number that is free now. */
static int
lowest_free_fd(void)
{
	int fd = fcntl(0, F_DUPFD_CLOEXEC, 0);

	if (fd >= 0)
		close(fd);
	return fd < 0 ? 0 : fd;
}

static struct lws_context *
create_context(struct tunnel *t)
{
	const struct tunnel_config *tc = t->cfg;
	struct lws_context_creation_info info;

	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.user = t;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	if (tc->ca_file != NULL) {
		/*
		 * The file alone, as on the libcurl legs.  lws 4.1.6 adds the
		 * OS store (which honours SSL_CERT_FILE) unless told not to,
		 * while libcurl ignores SSL_CERT_FILE; main() makes the one
		 * choice for both.
		 */
		info.client_ssl_ca_filepath = tc->ca_file;
		info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
	} else if (tc->ca_dir != NULL)
		/* the directory alone: see LOAD_EXTRA_CLIENT_VERIFY_CERTS */
		info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
	/* a little later than our own deadline, whose message is clearer */
	info.timeout_secs = (unsigned int)tc->connect_timeout + 2;
	info.connect_timeout_secs = (unsigned int)tc->connect_timeout + 2;
	info.pt_serv_buf_size = 32768;
	/* lws sizes its fd table by this instead of by ulimit -n */
	info.fd_limit_per_thread = (unsigned int)lowest_free_fd() + 64;
	/* lws reads http_proxy itself and ignores no_proxy (#2276); the
	 * proxy was chosen already, so keep it from choosing again. */
	unsetenv("http_proxy");
	if (tc->proxy != NULL && tc->proxy->url != NULL) {
		info.http_proxy_address = tc->proxy->lws_address;
	}
	return lws_create_context(&info);
}

/*
 * Sets up the context; stdin and stdout join it with the first open
 * WebSocket.  NULL after reporting an error.
 */
struct tunnel *
tunnel_open(const struct tunnel_config *tc)
{
	struct tunnel *t = xcalloc(1, sizeof(*t));

	t->cfg = tc;
	t->fd_flags[0] = t->fd_flags[1] = -1;
	buf_init(&t->up, 2 * UP_HWM);
	buf_init(&t->down, DOWN_HWM + 2 * RX_CHUNK);
	buf_init(&t->sent, 0);
	/* a batch, and room for one frame of FrameSize past it */
	t->txbuf = xmalloc(LWS_PRE + TX_WRITE_MAX + tc->frame_size +
	    2 * (WS_HDR_MAX + WS_CTL_MAX));
	t->rxbuf = xmalloc(RX_CHUNK);
	/* lws's default policy pings after 300 s and hangs up at 310 s */
	t->pings.secs_since_valid_ping = (uint16_t)tc->ping_interval;
	t->pings.secs_since_valid_hangup = (uint16_t)(2 * tc->ping_interval);
	set_lws_logging(true);
	if ((t->ctx = create_context(t)) == NULL) {
		error("cannot create the libwebsockets context");
		tunnel_close(t, NULL);
		return NULL;
	}
	active_ctx = t->ctx;
	return t;
}

/* Ends the relay: closes stdin and stdout (lws owns them once adopted). */
void
tunnel_close(struct tunnel *t, struct tunnel_stats *st)
{
	if (t == NULL)
		return;
	active_ctx = NULL;
	t->destroying = true;
	if (t->ctx != NULL)
		lws_context_destroy(t->ctx);
	if (st != NULL)
		*st = t->stats;
	buf_free(&t->up);
	buf_free(&t->down);
	buf_free(&t->sent);
	free(t->txbuf);
	free(t->rxbuf);
	free(t);
}

static void
connect_ws(struct tunnel *t, const char *path)
{
	const struct tunnel_config *tc = t->cfg;
	struct lws_client_connect_info ci;

	memset(&ci, 0, sizeof(ci));
	ci.context = t->ctx;
	ci.address = tc->host;
	ci.host = tc->host;
	ci.port = tc->port;
	ci.path = path;
	ci.ssl_connection = LCCSCF_USE_SSL | LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
	/* 4.1 has no WebSocket over h2; offering h2 never connects */
	ci.alpn = "http/1.1";
	ci.local_protocol_name = "tunnel";
	ci.retry_and_idle_policy = &t->pings;
	ci.pwsi = &t->ws;
	if (lws_client_connect_via_info(&ci) == NULL && !t->ws_gone) {
		tun_finish(t, EXIT_NETWORK, false, "cannot connect to Bastion "
		    "%s port %d: %s", tc->host, tc->port, lws_last_error[0] ?
		    lws_last_error : "libwebsockets refused the connection");
		t->ws_gone = true;
	}
}

/* A new attempt starts with what the last one sent, then the rest. */
static void
start_attempt(struct tunnel *t)
{
	struct buf both;

	if (t->sent.len > 0) {
		buf_init(&both, t->sent.len + t->up.len);
		buf_put(&both, t->sent.data + t->sent.off, t->sent.len);
		buf_put(&both, t->up.data + t->up.off, t->up.len);
		buf_free(&t->up);
		t->up = both;
		buf_reset(&t->sent);
	}
	t->ws = NULL;
	t->established = t->ws_gone = t->close_sent = t->closing = false;
	t->rx_paused = t->done = t->retryable = t->saw_garbage = false;
	t->unreached = false;
	t->want_own_rx = t->own_rx = t->net_paused = t->rx_done = false;
	t->pong_due = t->echo_due = t->echo_sent = false;
	t->net = NULL;
	t->ssl = NULL;
	t->peer_close = -1;
	t->close_reason[0] = '\0';
	t->status = 0;
	t->why[0] = '\0';
	lws_last_error[0] = '\0';
	lws_saw_garbage = false;
	set_lws_logging(true);
	set_deadline(t, DL_CONNECT, t->cfg->connect_timeout);
}

/*
 * A WebSocket left open by a deadline is dropped before the next try,
 * within a second; a final attempt leaves it to tunnel_close().
 */
static void
drop_ws(struct tunnel *t)
{
	struct timespec pause = { 0, 10 * 1000 * 1000 };
	int rounds;

	lws_sul_cancel(&t->deadline);
	if (t->ws == NULL || !t->retryable)
		return;
	/* lws_wsi_close() ignores its wsi in 4.1.6; set the timeout here */
	lws_set_timeout(t->ws, 1, LWS_TO_KILL_ASYNC);
	for (rounds = 0; t->ws != NULL && rounds < 100; rounds++) {
		lws_service(t->ctx, -1);
		nanosleep(&pause, NULL);
	}
	t->ws = NULL;
}

/*
 * Whether the last attempt ended because the Bastion could not reach the
 * target (close code 1011 before its first byte), and may be repeated
 * with what stdin sent: only the caller knows whether that is worth it.
 */
bool
tunnel_unreached(const struct tunnel *t)
{
	return t->unreached && t->retryable;
}

/*
 * Relays over one WebSocket at path until either side ends.  Returns 0
 * for a clean end, or an exit status with why filled in; *retryable says
 * whether a new session may still succeed (nothing came back yet).
 */
int
tunnel_attempt(struct tunnel *t, const char *path, bool *retryable,
    char *why, size_t size)
{
	*retryable = false;
	if (strlen(path) > WS_PATH_MAX) {
		snprintf(why, size, "the Bastion's websocketToken is %zu bytes "
		    "long; libwebsockets 4.1 cannot send more than %d",
		    strlen(path), WS_PATH_MAX);
		return EXIT_PROTOCOL;
	}
	if (*t->cfg->signalled)
		return 0;	/* asked to stop before the tunnel began */
	start_attempt(t);
	connect_ws(t, path);
	while (!t->done) {
		lws_service(t->ctx, 0);
		after_service(t);
	}
	drop_ws(t);
	*retryable = t->status != 0 && t->retryable && !*t->cfg->signalled;
	snprintf(why, size, "%s", t->why);
	return t->status;
}
