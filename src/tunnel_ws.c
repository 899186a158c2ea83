/*
 * The WebSocket's frames, done here rather than by libwebsockets, whose
 * 4.1.6 client parses every received byte through a state machine and
 * masks every sent byte on its own (about 80 % of the relay's CPU).
 *
 * Up: each WRITEABLE builds a batch of masked frames and hands it to
 * lws_write() as LWS_WRITE_HTTP, which lws sends as it is; lws still
 * does TLS, partial writes and its own pings, between whole batches.
 *
 * Down: right after the 101, if lws holds no bytes of its own yet, the
 * WebSocket's receive is switched off for good and a duplicate of its
 * socket is polled instead, as a raw file: its readiness means SSL_read()
 * on lws's own SSL, and the frames are parsed a buffer at a time.  If lws
 * read frames along with the 101, it keeps parsing them, as before.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "log.h"
#include "misc.h"
#include "tunnel_int.h"

/* A fresh masking key per frame, as RFC 6455 wants, from OpenSSL. */
static int
next_key(struct tunnel *t, unsigned char key[4])
{
	if (t->keys_left < 4) {
		if (RAND_bytes(t->keys, sizeof(t->keys)) != 1)
			return -1;
		t->keys_left = sizeof(t->keys);
	}
	t->keys_left -= 4;
	memcpy(key, t->keys + t->keys_left, 4);
	return 0;
}

static void
kill_ws(struct tunnel *t)
{
	if (t->ws != NULL)
		lws_set_timeout(t->ws, PENDING_TIMEOUT_USER_OK,
		    LWS_TO_KILL_ASYNC);
}

/*
 * Called from CLIENT_ESTABLISHED: whether the stream may be taken over
 * after this service round.  lws_service_adjust_timeout() answers 0 when
 * some wsi has bytes lws already read (a buflist, or TLS data buffered
 * with POLLIN on); stdin and stdout never do, so that is the WebSocket
 * holding what came with the 101.
 */
void
tun_ws_established(struct tunnel *t)
{
	t->want_own_rx = lws_service_adjust_timeout(t->ctx, 1, 0) != 0;
	if (!t->want_own_rx)
		debug("frames came with the 101: libwebsockets parses them");
}

/* After lws_service() returned: read the socket here from now on. */
void
tun_ws_take(struct tunnel *t)
{
	int fd;

	t->want_own_rx = false;
	if (t->ws == NULL || t->closing || (t->ssl = lws_get_ssl(t->ws)) ==
	    NULL)
		return;
	fd = fcntl(lws_get_socket_fd(t->ws), F_DUPFD_CLOEXEC, 3);
	if (fd == -1 || (t->net = tun_adopt_fd(t->ws, fd)) == NULL) {
		debug("cannot poll the socket's duplicate: lws parses");
		if (fd != -1)
			close(fd);
		t->ssl = NULL;
		return;
	}
	/* outside any callback, this only takes POLLIN away (tunnel.c) */
	lws_rx_flow_control(t->ws, 0);
	/*
	 * Without read-ahead OpenSSL reads a record's header, then its body:
	 * two read()s, or more, per 16 KiB.  lws no longer reads this SSL,
	 * and SSL_has_pending() below sees what read-ahead keeps.  lws sets
	 * SSL_MODE_RELEASE_BUFFERS, so the next buffer has the new size.
	 */
	SSL_set_default_read_buffer_len(t->ssl, RX_CHUNK);
	SSL_set_read_ahead(t->ssl, 1);
	ws_rx_init(&t->rx);
	t->own_rx = true;
	debug2("WebSocket frames are read here from now on");
	t->net_paused = false;
}

/* A whole control frame from the Bastion. */
static void
on_control(struct tunnel *t, const struct ws_ctl *c)
{
	int code;

	switch (c->opcode) {
	case WS_OP_PING:
		memcpy(t->pong, c->data, c->len);
		t->pong_len = c->len;
		t->pong_due = true;
		break;
	case WS_OP_PONG:
		t->last_pong = time(NULL);
		if (t->ws != NULL)
			lws_validity_confirmed(t->ws);
		break;
	case WS_OP_CLOSE:
		t->rx_done = true;
		if (t->close_sent) {	/* the ack of ours */
			kill_ws(t);
			break;
		}
		code = c->len >= 2 ? (c->data[0] << 8 | c->data[1]) : 1005;
		/* codes no peer may send, as lws 4.1.6 maps them */
		if (c->len == 1 || code < 1000 || (code >= 1004 &&
		    code <= 1006) || code == 1015 || code >= 5000)
			code = 1002;
		t->peer_close = code;
		snprintf(t->close_reason, sizeof(t->close_reason), "%.*s",
		    c->len > 2 ? (int)(c->len - 2) : 0, c->len > 2 ?
		    (const char *)c->data + 2 : "");
		t->echo_due = true;
		/*
		 * XXX: now and then (1 run in 10 to 20 on a loaded machine)
		 * the last bytes before the emulator's close, and the close,
		 * come only when the emulator's 2 s wait for its send buffer
		 * to drain ends, with no read of ours in between.  Its
		 * asyncio TLS transport or our poll set may hold them; not
		 * settled.  A close of ours can wait the same way (5 s).
		 */
		break;
	}
}

/* Frames read from the socket: data into down, control acted on. */
static void
frames_in(struct tunnel *t, const unsigned char *p, size_t len)
{
	struct ws_ctl c;
	size_t before, n;

	while (len > 0 && !t->rx_done) {
		before = t->down.len;
		n = ws_rx_parse(&t->rx, p, len, &t->down, &c);
		tun_count_down(t, t->down.len - before);
		p += n;
		len -= n;
		if (t->rx.error != NULL) {
			debug("the Bastion sent what is not WebSocket: %s",
			    t->rx.error);
			t->saw_garbage = true;
			t->rx_done = true;
			kill_ws(t);
		} else if (c.opcode != 0)
			on_control(t, &c);
	}
}

/*
 * The socket is readable: read while down has room (limit), or all
 * there is when the WebSocket is going away.
 */
void
tun_ws_read(struct tunnel *t, size_t limit)
{
	int n, err;

	while (t->ssl != NULL && !t->rx_done && t->down.len < limit) {
		ERR_clear_error();
		n = SSL_read(t->ssl, t->rxbuf, RX_CHUNK);
		if (n > 0) {
			frames_in(t, t->rxbuf, (size_t)n);
			continue;
		}
		err = SSL_get_error(t->ssl, n);
		/*
		 * XXX: WANT_WRITE (a TLS 1.3 key update meeting a full send
		 * buffer) waits for the next readable event, not POLLOUT.
		 */
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			break;
		debug("the Bastion's TLS stream ended (SSL error %d)", err);
		t->rx_done = true;
		kill_ws(t);
	}
	tun_flush_stdout(t);
	if ((t->pong_due || t->echo_due) && t->ws != NULL)
		lws_callback_on_writable(t->ws);
	if (t->rx_done && t->net != NULL && !t->net_paused) {
		/* a socket at EOF would be readable for ever */
		lws_rx_flow_control(t->net, 0);
		t->net_paused = true;
	}
}

/*
 * The WebSocket or the socket's duplicate is closing: lws frees the SSL
 * next, so what TLS and the kernel still hold is read now (lws closes a
 * wsi on POLLHUP without reading), then the duplicate goes too.
 */
void
tun_ws_release(struct tunnel *t)
{
	struct lws *ws = t->ws;

	if (!t->own_rx)
		return;
	/* no kill, no writable request for a wsi on its way out */
	t->ws = NULL;
	if (!t->destroying)
		tun_ws_read(t, SIZE_MAX);
	t->ws = ws;
	t->ssl = NULL;
	t->own_rx = false;
	if (t->net != NULL && !t->destroying)
		lws_set_timeout(t->net, PENDING_TIMEOUT_USER_OK,
		    LWS_TO_KILL_ASYNC);
	t->net = NULL;
}

/* Receive flow control for the duplicate, after lws_service(). */
void
tun_ws_flow(struct tunnel *t)
{
	if (t->net == NULL)
		return;
	if (!t->net_paused && (t->down.len >= DOWN_HWM || t->rx_done)) {
		lws_rx_flow_control(t->net, 0);
		t->net_paused = true;
	} else if (t->net_paused && t->down.len < DOWN_LWM && !t->rx_done) {
		lws_rx_flow_control(t->net, 1);
		t->net_paused = false;
	}
	/* decrypted bytes in OpenSSL make no POLLIN: read them now */
	if (!t->net_paused && t->ssl != NULL && SSL_has_pending(t->ssl))
		tun_ws_read(t, DOWN_HWM);
}

/* A control frame into the batch; false if no key could be had. */
static bool
put_control(struct tunnel *t, size_t *o, int opcode, const void *p,
    size_t n)
{
	unsigned char key[4];

	if (next_key(t, key) == -1)
		return false;
	*o += ws_frame(t->txbuf + LWS_PRE + *o, opcode, p, n, key);
	return true;
}

/* Data frames of at most FrameSize each, up to TX_WRITE_MAX in all. */
static bool
put_data(struct tunnel *t, size_t *o, size_t *taken)
{
	unsigned char key[4], *p;
	size_t n, fs = t->cfg->frame_size;

	*taken = 0;
	while (*taken < t->up.len) {
		n = t->up.len - *taken < fs ? t->up.len - *taken : fs;
		if (*taken > 0 && *o + WS_HDR_MAX + n > TX_WRITE_MAX)
			break;
		if (next_key(t, key) == -1)
			return false;
		p = t->up.data + t->up.off + *taken;
		tun_keep_for_replay(t, p, n);
		*o += ws_frame(t->txbuf + LWS_PRE + *o, WS_OP_BINARY, p, n,
		    key);
		*taken += n;
	}
	return true;
}

/*
 * One batch per WRITEABLE (lws allows one write): a pong owed, data,
 * and, once our side is done or the Bastion closed, a close frame.  Our
 * own close is only framed here when the stream is read here too, as
 * lws could not see the ack otherwise.  Returns what the callback must.
 */
int
tun_ws_writeable(struct tunnel *t, struct lws *wsi)
{
	static const unsigned char normal[2] = { 0x03, 0xe8 };	/* 1000 */
	unsigned char code[2];
	size_t o = 0, taken = 0;
	bool ok = true, echo = false;

	if (t->close_sent || t->echo_sent)
		return 0;	/* 4.1.6 may call again after the close */
	if (t->pong_due) {
		ok = put_control(t, &o, WS_OP_PONG, t->pong, t->pong_len);
		t->pong_due = false;
	}
	if (ok && t->echo_due) {
		code[0] = (unsigned char)(t->peer_close >> 8);
		code[1] = (unsigned char)t->peer_close;
		ok = put_control(t, &o, WS_OP_CLOSE, code,
		    t->peer_close == 1005 ? 0 : 2);
		echo = true;
	} else if (ok && t->status == 0)
		ok = put_data(t, &o, &taken);
	if (ok && t->own_rx && !echo && t->closing &&
	    (taken == t->up.len || t->status != 0)) {
		ok = put_control(t, &o, WS_OP_CLOSE, normal, 2);
		t->close_sent = true;
	}
	if (!ok || (o > 0 && lws_write(wsi, t->txbuf + LWS_PRE, o,
	    LWS_WRITE_HTTP) < (int)o)) {
		tun_finish(t, EXIT_TUNNEL, false, "cannot send to the Bastion");
		return -1;
	}
	buf_consume(&t->up, taken);
	if (echo) {
		/* lws sends no close of its own when there is no reason */
		t->echo_sent = true;
		return -1;
	}
	return 0;
}
