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
 */
#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "misc.h"
#include "tunnel.h"

#define UP_HWM		(64 * 1024)	/* stop reading stdin above */
#define UP_LWM		(16 * 1024)	/* and resume below */
#define DOWN_HWM	(128 * 1024)	/* stop reading the socket above */
#define DOWN_LWM	(32 * 1024)
#define RX_CHUNK	65536		/* largest piece lws hands us */
#define DRAIN_SECONDS	5		/* to flush queues once ending */

/*
 * libwebsockets 4.1.6 builds the upgrade request line in a fixed 2048-byte
 * buffer and silently cuts longer paths (fixed upstream in ede7f8b0f,
 * v4.2.0), so a longer path is refused here with a clear message.
 */
#define WS_PATH_MAX	1900

struct tunnel {
	const struct tunnel_config *cfg;
	struct lws_context *ctx;
	struct lws	*ws, *in, *out;
	struct buf	 up, down;
	unsigned char	*txbuf;		/* LWS_PRE + one frame */
	lws_sorted_usec_list_t deadline;
	bool		 established, ws_gone, close_sent, closing;
	bool		 in_eof, in_paused, out_gone, rx_paused;
	bool		 done;
	int		 peer_close;	/* close code from the Bastion, or -1 */
	int		 status;	/* exit status once decided */
	int		 fd_flags[2];	/* fcntl flags of 0 and 1 to restore */
	struct tunnel_stats *stats;
};

/* For the signal handler; one tunnel per process. */
static struct lws_context *volatile active_ctx;

/* The last error line from libwebsockets, for TLS failures (see below). */
static char lws_last_error[256];

/* Makes lws_service() return so that a caught signal is acted on. */
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
 * is in the last error line, which is kept for the user's message.
 */
static void
lws_emit(int level, const char *line)
{
	size_t n = strcspn(line, "\r\n");

	if (level == LLL_ERR)
		snprintf(lws_last_error, sizeof(lws_last_error), "%.*s",
		    (int)n, line);
	if (level & (LLL_ERR | LLL_WARN))
		debug2("lws: %.*s", (int)n, line);
	else
		debug3("lws: %.*s", (int)n, line);
}

static void
restore_flags(struct tunnel *t, int fd)
{
	/*
	 * Adoption set O_NONBLOCK on a file description that ssh or a shell
	 * may share; it is restored while the fd is still open, since lws
	 * closes it right after RAW_CLOSE_FILE.
	 */
	if (t->fd_flags[fd] != -1)
		(void)fcntl(fd, F_SETFL, t->fd_flags[fd]);
}

static void
finish(struct tunnel *t, int status)
{
	if (t->status == 0)
		t->status = status;
	t->closing = true;
}

/* stdin is readable: queue what fits under the high-water mark. */
static int
on_stdin(struct tunnel *t)
{
	unsigned char *p;
	size_t room;
	ssize_t n;

	if (t->closing || t->up.len >= UP_HWM)
		return 0;	/* paused after lws_service() returns */
	room = UP_HWM - t->up.len;
	p = buf_space(&t->up, room, NULL);
	n = read(0, p, room);
	if (n > 0) {
		buf_commit(&t->up, (size_t)n);
		t->stats->bytes_up += (uint64_t)n;
		return 0;
	}
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n == -1) {
		error("cannot read stdin: %s", strerror(errno));
		finish(t, EXIT_LOCAL_IO);
	}
	t->in_eof = true;
	return -1;	/* lws closes the wsi and the fd */
}

/*
 * stdin is being closed by lws.  In 4.1.6 (and upstream main) a wsi
 * whose POLLIN is off is closed on POLLHUP although the pipe still holds
 * data: when a paused stdin's writer exits, those bytes would be lost.
 * The fd is still open here, so what is left is read now.  The pipe's
 * capacity bounds it; up grows past its high-water mark to take it.
 */
static void
drain_stdin(struct tunnel *t)
{
	unsigned char *p;
	ssize_t n;
	int avail;

	while (ioctl(0, FIONREAD, &avail) == 0 && avail > 0) {
		p = buf_space(&t->up, (size_t)avail, NULL);
		n = read(0, p, (size_t)avail);
		if (n <= 0)
			break;
		buf_commit(&t->up, (size_t)n);
		t->stats->bytes_up += (uint64_t)n;
	}
}

/* stdout can take bytes: write until it would block or down is empty. */
static int
on_stdout(struct tunnel *t)
{
	ssize_t n;

	while (t->down.len > 0) {
		n = write(1, t->down.data + t->down.off, t->down.len);
		if (n > 0) {
			buf_consume(&t->down, (size_t)n);
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (errno != EPIPE)
			error("cannot write stdout: %s", strerror(errno));
		t->out_gone = true;
		return -1;
	}
	/*
	 * Not re-armed here: 4.1.6 clears POLLOUT after this callback and
	 * would cancel it (fixed upstream in 99f7e572c, v4.4.0).
	 */
	return 0;
}

static void
on_file_closed(struct tunnel *t, struct lws *wsi)
{
	if (wsi == t->in) {
		drain_stdin(t);
		restore_flags(t, 0);
		t->in = NULL;
		t->in_eof = true;
	} else if (wsi == t->out) {
		restore_flags(t, 1);
		t->out = NULL;
		t->out_gone = true;
	}
}

/* One frame from up per call: lws allows one write per WRITEABLE. */
static int
on_ws_writeable(struct tunnel *t, struct lws *wsi)
{
	size_t n = t->up.len < t->cfg->frame_size ? t->up.len :
	    t->cfg->frame_size;

	/* 4.1.6 may call again after the close began; a second -1 would
	 * drop the connection without waiting for the close ack. */
	if (t->close_sent)
		return 0;
	if (n > 0) {
		memcpy(t->txbuf + LWS_PRE, t->up.data + t->up.off, n);
		if (lws_write(wsi, t->txbuf + LWS_PRE, n, LWS_WRITE_BINARY) <
		    (int)n) {
			error("cannot send to the Bastion");
			finish(t, EXIT_TUNNEL);
			return -1;
		}
		buf_consume(&t->up, n);
		return 0;
	}
	if (t->closing) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
		t->close_sent = true;
		return -1;
	}
	return 0;
}

static struct lws *
adopt(struct tunnel *t, struct lws *ws, int fd)
{
	lws_sock_file_fd_type desc;

	desc.filefd = fd;
	t->fd_flags[fd] = fcntl(fd, F_GETFL);
	return lws_adopt_descriptor_vhost(lws_get_vhost(ws),
	    LWS_ADOPT_RAW_FILE_DESC, desc, "tunnel", NULL);
}

/* The upgrade succeeded: start relaying. */
static int
on_established(struct tunnel *t, struct lws *ws)
{
	int one = 1;

	t->established = true;
	t->stats->established = 1;
	verbose("tunnel open to %s port %d", t->cfg->host, t->cfg->port);
	(void)setsockopt(lws_get_socket_fd(ws), IPPROTO_TCP, TCP_NODELAY,
	    &one, sizeof(one));
	if ((t->in = adopt(t, ws, 0)) == NULL ||
	    (t->out = adopt(t, ws, 1)) == NULL) {
		error("cannot poll stdin and stdout");
		finish(t, EXIT_LOCAL_IO);
		return 0;
	}
	/* A tty on fd 1 is readable when the user types; never read it. */
	lws_rx_flow_control(t->out, 0);
	return 0;
}

/* Before the upgrade completed: name what the Bastion did, if anything. */
static void
on_connect_error(struct tunnel *t, struct lws *ws, const char *why)
{
	int status = (int)lws_http_client_http_response(ws);

	if (status > 0) {
		error("Bastion %s refused the WebSocket: HTTP %d instead of "
		    "101", t->cfg->host, status);
		finish(t, status == 401 || status == 403 ? EXIT_REFUSED :
		    EXIT_PROTOCOL);
	} else if (lws_last_error[0] != '\0') {
		error("cannot connect to Bastion %s port %d: %s",
		    t->cfg->host, t->cfg->port, lws_last_error);
		finish(t, EXIT_NETWORK);
	} else {
		error("cannot connect to Bastion %s port %d: %s",
		    t->cfg->host, t->cfg->port, why ? why : "unknown error");
		finish(t, EXIT_NETWORK);
	}
	t->ws = NULL;
	t->ws_gone = true;
}

/* The WebSocket is gone; how it went decides the exit status. */
static void
on_ws_closed(struct tunnel *t)
{
	t->ws = NULL;
	t->ws_gone = true;
	if (t->close_sent)
		debug("tunnel closed by us");
	else if (t->peer_close == LWS_CLOSE_STATUS_NORMAL ||
	    t->peer_close == LWS_CLOSE_STATUS_GOINGAWAY)
		debug("Bastion closed the tunnel (code %d)", t->peer_close);
	else if (t->peer_close >= 0) {
		error("Bastion closed the tunnel with code %d",
		    t->peer_close);
		finish(t, EXIT_TUNNEL);
	} else {
		error("connection to Bastion %s lost", t->cfg->host);
		finish(t, EXIT_TUNNEL);
	}
	t->closing = true;
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

	(void)user;
	switch (reason) {
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
		/* Text and fragments alike are stream bytes.  Receive flow
		 * control is not touched here: see apply_flow(). */
		buf_put(&t->down, in, len);
		t->stats->bytes_down += len;
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return on_ws_writeable(t, wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		t->peer_close = len >= 2 ? (code[0] << 8 | code[1]) : 1005;
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
		on_ws_closed(t);
		return 0;
	case LWS_CALLBACK_RAW_RX_FILE:
		if (wsi == t->in)
			return on_stdin(t);
		lws_rx_flow_control(wsi, 0);
		return 0;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		return wsi == t->out ? on_stdout(t) : 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		on_file_closed(t, wsi);
		return 0;
	default:
		return 0;
	}
}

static void
on_deadline(lws_sorted_usec_list_t *sul)
{
	struct tunnel *t = lws_container_of(sul, struct tunnel, deadline);

	if (!t->established) {
		error("no WebSocket connection to Bastion %s within %ld s "
		    "(ConnectTimeout)", t->cfg->host, t->cfg->connect_timeout);
		finish(t, EXIT_NETWORK);
	} else
		debug("gave up flushing after %d s", DRAIN_SECONDS);
	t->done = true;
}

static void
set_deadline(struct tunnel *t, long seconds)
{
	lws_sul_schedule(t->ctx, 0, &t->deadline, on_deadline,
	    seconds * LWS_US_PER_SEC);
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
	bool stop_in = t->closing || t->up.len >= UP_HWM;

	if (t->in != NULL && !t->in_paused && stop_in) {
		lws_rx_flow_control(t->in, 0);
		t->in_paused = true;
	} else if (t->in != NULL && t->in_paused && !t->closing &&
	    t->up.len < UP_LWM) {
		lws_rx_flow_control(t->in, 1);
		t->in_paused = false;
	}
	if (t->ws == NULL)
		return;
	if (!t->rx_paused && t->down.len > DOWN_HWM) {
		lws_rx_flow_control(t->ws, 0);
		t->rx_paused = true;
	} else if (t->rx_paused && t->down.len < DOWN_LWM) {
		lws_rx_flow_control(t->ws, 1);
		t->rx_paused = false;
	}
}

/* Decides, after each service round, what the loop must do next. */
static void
after_service(struct tunnel *t)
{
	bool was_closing = t->closing;

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
	if (t->in_eof && t->up.len == 0 && !t->closing) {
		debug("stdin closed: closing the tunnel");
		t->closing = true;
	}
	if (!t->established && (t->closing || t->ws_gone)) {
		t->done = true;
		return;
	}
	if (t->closing && !was_closing)
		set_deadline(t, DRAIN_SECONDS);
	apply_flow(t);
	if (t->ws != NULL && (t->up.len > 0 || t->closing))
		lws_callback_on_writable(t->ws);
	if (t->out != NULL && t->down.len > 0)
		lws_callback_on_writable(t->out);
	if (t->ws_gone && (t->down.len == 0 || t->out == NULL))
		t->done = true;
}

static void
relay_round(struct tunnel *t)
{
	bool was_established = t->established;

	lws_service(t->ctx, 0);
	after_service(t);
	/* the connect deadline ends; the drain deadline starts on close */
	if (t->established && !was_established)
		lws_sul_cancel(&t->deadline);
}

static const struct lws_protocols protocols[] = {
	{ "tunnel", callback, 0, RX_CHUNK, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/*
 * No pings: whether the Bastion answers them is not known, and lws's
 * default policy would hang up an idle tunnel after 310 s without a pong.
 */
static const lws_retry_bo_t no_pings = {
	.secs_since_valid_ping = 0,
	.secs_since_valid_hangup = 0,
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
	}
	info.timeout_secs = (unsigned int)tc->connect_timeout;
	info.connect_timeout_secs = (unsigned int)tc->connect_timeout;
	info.pt_serv_buf_size = 32768;
	/* lws sizes its fd table by this instead of by ulimit -n */
	info.fd_limit_per_thread = (unsigned int)lowest_free_fd() + 64;
	/* lws reads http_proxy itself and ignores no_proxy (#2276); the
	 * proxy was chosen already, so keep it from choosing again. */
	unsetenv("http_proxy");
	if (tc->proxy != NULL && tc->proxy->url != NULL) {
		info.http_proxy_address = tc->proxy->host;
		info.http_proxy_port = (unsigned int)tc->proxy->port;
	}
	return lws_create_context(&info);
}

static int
connect_ws(struct tunnel *t)
{
	const struct tunnel_config *tc = t->cfg;
	struct lws_client_connect_info ci;

	memset(&ci, 0, sizeof(ci));
	ci.context = t->ctx;
	ci.address = tc->host;
	ci.host = tc->host;
	ci.port = tc->port;
	ci.path = tc->path;
	ci.ssl_connection = LCCSCF_USE_SSL | LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
	/* 4.1 has no WebSocket over h2; offering h2 never connects */
	ci.alpn = "http/1.1";
	ci.local_protocol_name = "tunnel";
	ci.retry_and_idle_policy = &no_pings;
	ci.pwsi = &t->ws;
	if (lws_client_connect_via_info(&ci) == NULL && !t->ws_gone) {
		error("cannot connect to Bastion %s port %d: %s", tc->host,
		    tc->port, lws_last_error[0] ? lws_last_error :
		    "libwebsockets refused the connection");
		return EXIT_NETWORK;
	}
	return 0;
}

static void
set_lws_logging(void)
{
	int levels = LLL_ERR | LLL_WARN;

	if (log_get_level() >= LOG_DEBUG3)
		levels |= LLL_NOTICE | LLL_INFO;
	lws_set_log_level(levels, lws_emit);
}

/*
 * Opens the WebSocket and relays until either side ends, then flushes
 * what was already read to the other side, within DRAIN_SECONDS.
 * Returns 0 for a clean end, or an exit status after reporting why not.
 * stdin and stdout are closed on return (lws owns them once adopted).
 */
int
tunnel_run(const struct tunnel_config *tc, struct tunnel_stats *st)
{
	struct tunnel t;

	if (strlen(tc->path) > WS_PATH_MAX) {
		error("the Bastion's websocketToken is %zu bytes long; "
		    "libwebsockets 4.1 cannot send more than %d",
		    strlen(tc->path), WS_PATH_MAX);
		return EXIT_PROTOCOL;
	}
	memset(&t, 0, sizeof(t));
	memset(st, 0, sizeof(*st));
	t.cfg = tc;
	t.stats = st;
	t.peer_close = -1;
	t.fd_flags[0] = t.fd_flags[1] = -1;
	buf_init(&t.up, 2 * UP_HWM);
	buf_init(&t.down, DOWN_HWM + 2 * RX_CHUNK);
	t.txbuf = xmalloc(LWS_PRE + tc->frame_size);
	lws_last_error[0] = '\0';
	set_lws_logging();
	if ((t.ctx = create_context(&t)) == NULL) {
		error("cannot create the libwebsockets context");
		t.status = EXIT_LOCAL_IO;
	} else {
		active_ctx = t.ctx;
		set_deadline(&t, tc->connect_timeout);
		if ((t.status = connect_ws(&t)) == 0)
			while (!t.done)
				relay_round(&t);
		active_ctx = NULL;
		lws_context_destroy(t.ctx);
	}
	buf_free(&t.up);
	buf_free(&t.down);
	free(t.txbuf);
	return t.status;
}
