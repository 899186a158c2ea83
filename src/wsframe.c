/*
 * RFC 6455 frames, read and written a buffer at a time.  Masking works on
 * eight bytes at once; payload is copied with memcpy.  The reader accepts
 * what libwebsockets 4.1.6 accepts (masked server frames, text, fragments
 * with control frames between them) and refuses what it refuses, so that
 * an HTTP page after the 101 is still told apart from a WebSocket.
 */
#include <string.h>

#include "wsframe.h"

void
ws_rx_init(struct ws_rx *rx)
{
	memset(rx, 0, sizeof(*rx));
	rx->hneed = 2;
}

/* The key repeated over eight bytes, starting at mask offset kpos. */
static uint64_t
key_word(const unsigned char key[4], unsigned int kpos, unsigned char k[8])
{
	uint64_t w;
	int i;

	for (i = 0; i < 8; i++)
		k[i] = key[(kpos + (unsigned int)i) & 3];
	memcpy(&w, k, sizeof(w));
	return w;
}

/* XORs n bytes from src into dst (which may be src) with the key. */
static void
mask_copy(unsigned char *dst, const unsigned char *src, size_t n,
    const unsigned char key[4], unsigned int kpos)
{
	unsigned char k[8];
	uint64_t m = key_word(key, kpos, k), w;
	size_t i;

	/* whole words keep the key's phase: 8 is a multiple of 4 */
	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, src + i, sizeof(w));
		w ^= m;
		memcpy(dst + i, &w, sizeof(w));
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ k[i & 7];
}

/* Masks or unmasks p in place; *kpos carries the phase across calls. */
void
ws_mask(unsigned char *p, size_t n, const unsigned char key[4],
    unsigned int *kpos)
{
	mask_copy(p, p, n, key, *kpos);
	*kpos = (unsigned int)((*kpos + n) & 3);
}

/*
 * Writes one masked frame with FIN set into out, which has room for
 * WS_HDR_MAX + n bytes; returns the bytes written.
 */
size_t
ws_frame(unsigned char *out, int opcode, const void *payload, size_t n,
    const unsigned char key[4])
{
	size_t h = 2;
	int i;

	out[0] = (unsigned char)(0x80 | opcode);
	if (n < 126)
		out[1] = (unsigned char)(0x80 | n);
	else if (n < 65536) {
		out[1] = 0x80 | 126;
		out[2] = (unsigned char)(n >> 8);
		out[3] = (unsigned char)n;
		h = 4;
	} else {
		out[1] = 0x80 | 127;
		for (i = 0; i < 8; i++)
			out[2 + i] = (unsigned char)((uint64_t)n >>
			    (56 - 8 * i));
		h = 10;
	}
	memcpy(out + h, key, 4);
	mask_copy(out + h + 4, payload, n, key, 0);
	return h + 4 + n;
}

/* The first two header bytes are in: check them, size the rest. */
static int
first_bytes(struct ws_rx *rx)
{
	unsigned char b0 = rx->hdr[0], b1 = rx->hdr[1];
	size_t len7 = b1 & 0x7f;

	rx->opcode = b0 & 0x0f;
	rx->masked = (b1 & 0x80) != 0;
	/* what an HTTP page's "HT" looks like: see tunnel.c */
	if (b0 & 0x70)
		rx->error = "reserved (rsv) bits set";
	else if ((rx->opcode > WS_OP_BINARY && rx->opcode < WS_OP_CLOSE) ||
	    rx->opcode > WS_OP_PONG)
		rx->error = "illegal opcode";
	else if (rx->opcode >= WS_OP_CLOSE && !(b0 & 0x80))
		rx->error = "control frames can't be fragmented";
	else if (rx->opcode >= WS_OP_CLOSE && len7 > WS_CTL_MAX)
		rx->error = "control frame too long";
	else if (rx->opcode == WS_OP_CONT && !rx->data_seen)
		rx->error = "continuation without a message";
	if (rx->error != NULL)
		return -1;
	rx->hneed = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) +
	    (rx->masked ? 4 : 0);
	return 0;
}

/* The header is complete: the payload's length and mask. */
static int
header_done(struct ws_rx *rx)
{
	const unsigned char *p = rx->hdr + 2;
	size_t len7 = rx->hdr[1] & 0x7f, i, n = 0;

	if (len7 < 126)
		rx->left = len7;
	else {
		n = len7 == 126 ? 2 : 8;
		rx->left = 0;
		for (i = 0; i < n; i++)
			rx->left = rx->left << 8 | p[i];
		if (rx->left >> 63) {
			rx->error = "frame length out of range";
			return -1;
		}
	}
	if (rx->masked)
		memcpy(rx->key, p + n, 4);
	rx->kpos = 0;
	rx->clen = 0;
	if (rx->opcode <= WS_OP_BINARY)
		rx->data_seen = true;
	return 0;
}

/* Takes header bytes; returns how many, or 0 with rx->error set. */
static size_t
take_header(struct ws_rx *rx, const unsigned char *in, size_t len)
{
	size_t used = 0, n;

	while (rx->hlen < rx->hneed && used < len) {
		n = rx->hneed - rx->hlen;
		if (n > len - used)
			n = len - used;
		memcpy(rx->hdr + rx->hlen, in + used, n);
		rx->hlen += n;
		used += n;
		if (rx->hlen == 2 && first_bytes(rx) == -1)
			return 0;
	}
	if (rx->hlen == rx->hneed && header_done(rx) == -1)
		return 0;
	return used;
}

/* Takes payload bytes: data to the queue, control to rx->ctl. */
static size_t
take_payload(struct ws_rx *rx, const unsigned char *in, size_t len,
    struct buf *data)
{
	size_t n = rx->left < len ? (size_t)rx->left : len;
	unsigned char *p;

	if (rx->opcode <= WS_OP_BINARY) {
		p = buf_space(data, n, NULL);
		memcpy(p, in, n);
		buf_commit(data, n);
	} else {
		p = rx->ctl + rx->clen;
		memcpy(p, in, n);
		rx->clen += n;
	}
	if (rx->masked)
		ws_mask(p, n, rx->key, &rx->kpos);
	rx->left -= n;
	return n;
}

/*
 * Reads frames from in: data payload is appended to data, and the call
 * returns early, with *ctl filled in, after each complete control frame.
 * Returns the bytes consumed; on a stream that is not WebSocket, sets
 * rx->error and consumes nothing more, then or ever.
 */
size_t
ws_rx_parse(struct ws_rx *rx, const unsigned char *in, size_t len,
    struct buf *data, struct ws_ctl *ctl)
{
	size_t used = 0, n;

	ctl->opcode = 0;
	while (rx->error == NULL && used < len) {
		if (!rx->in_payload) {
			n = take_header(rx, in + used, len - used);
			if (n == 0)
				break;
			used += n;
			if (rx->hlen < rx->hneed)
				break;
			rx->in_payload = true;
		}
		used += take_payload(rx, in + used, len - used, data);
		if (rx->left > 0)
			break;
		/* the frame is complete */
		rx->in_payload = false;
		rx->hlen = 0;
		rx->hneed = 2;
		if (rx->opcode >= WS_OP_CLOSE) {
			ctl->opcode = rx->opcode;
			ctl->data = rx->ctl;
			ctl->len = rx->clen;
			break;
		}
	}
	return used;
}
