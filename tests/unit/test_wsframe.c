/* RFC 6455 frames as the relay reads and writes them (wsframe.c). */
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"
#include "wsframe.h"
#include "unit.h"

static const unsigned char key[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* Masking by words gives what masking byte by byte gives, at any phase. */
static void
test_mask(void)
{
	unsigned char a[67], b[67];
	unsigned int pos, kpos;
	size_t i, n, split;

	for (i = 0; i < sizeof(a); i++)
		a[i] = b[i] = (unsigned char)(i * 7);
	for (split = 0; split < 20; split++) {
		memcpy(a, b, sizeof(a));
		kpos = 0;
		ws_mask(a, split, key, &kpos);
		ws_mask(a + split, sizeof(a) - split, key, &kpos);
		CHECK(kpos == sizeof(a) % 4);
		for (i = 0, n = 0; i < sizeof(a); i++)
			n += a[i] != (b[i] ^ key[i & 3]);
		CHECK(n == 0);
	}
	pos = 3;
	a[0] = 0;
	ws_mask(a, 1, key, &pos);
	CHECK(a[0] == key[3] && pos == 0);
}

/* Header forms by length; the RFC's own example ("Hello", masked). */
static void
test_frame(void)
{
	static const unsigned char rfc_key[4] = { 0x37, 0xfa, 0x21, 0x3d };
	static const unsigned char hello[] = { 0x82, 0x85, 0x37, 0xfa, 0x21,
	    0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	unsigned char out[70000 + WS_HDR_MAX], *big;
	size_t n;

	n = ws_frame(out, WS_OP_BINARY, "Hello", 5, rfc_key);
	CHECK(n == sizeof(hello) && memcmp(out, hello, n) == 0);
	big = calloc(1, 70000);
	n = ws_frame(out, WS_OP_BINARY, big, 200, key);
	CHECK(n == 4 + 4 + 200 && out[1] == (0x80 | 126) && out[2] == 0 &&
	    out[3] == 200);
	n = ws_frame(out, WS_OP_BINARY, big, 70000, key);
	CHECK(n == 10 + 4 + 70000 && out[1] == (0x80 | 127) &&
	    out[7] == 0x01 && out[8] == 0x11 && out[9] == 0x70);
	CHECK(out[14] == key[0] && out[15] == key[1]);
	free(big);
}

/* Writes one unmasked server frame; returns its length. */
static size_t
server_frame(unsigned char *out, int b0, const void *p, size_t n)
{
	size_t h = 2;

	out[0] = (unsigned char)b0;
	if (n < 126)
		out[1] = (unsigned char)n;
	else {
		out[1] = 126;
		out[2] = (unsigned char)(n >> 8);
		out[3] = (unsigned char)n;
		h = 4;
	}
	memcpy(out + h, p, n);
	return h + n;
}

/* Data, fragments with a ping inside, a close: fed one byte at a time
 * and all at once, the same bytes and control frames come out. */
static void
test_parse(void)
{
	unsigned char in[1000], payload[300];
	struct ws_rx rx;
	struct ws_ctl c;
	struct buf data;
	size_t len = 0, i, used, step, got_ping, got_close;

	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (unsigned char)i;
	/* binary without FIN, a ping, the continuation with FIN */
	len += server_frame(in + len, 0x02, payload, 10);
	len += server_frame(in + len, 0x89, "hi", 2);
	len += server_frame(in + len, 0x80, payload + 10, 290);
	/* empty text, a masked frame, a close with code 4001 */
	len += server_frame(in + len, 0x81, "", 0);
	len += ws_frame(in + len, WS_OP_BINARY, "xyz", 3, key);
	len += server_frame(in + len, 0x88, "\x0f\xa1" "bye", 5);
	for (step = 1; step <= len; step += len - 1) {
		ws_rx_init(&rx);
		buf_init(&data, 16);
		got_ping = got_close = 0;
		for (i = 0; i < len; i += used) {
			used = ws_rx_parse(&rx, in + i, step < len - i ? step :
			    len - i, &data, &c);
			if (c.opcode == WS_OP_PING)
				got_ping += c.len == 2 &&
				    memcmp(c.data, "hi", 2) == 0;
			if (c.opcode == WS_OP_CLOSE)
				got_close += c.len == 5 && c.data[0] == 0x0f &&
				    c.data[1] == 0xa1;
		}
		CHECK(rx.error == NULL);
		CHECK(got_ping == 1 && got_close == 1);
		CHECK(data.len == 303 && memcmp(data.data, payload, 300) == 0 &&
		    memcmp(data.data + 300, "xyz", 3) == 0);
		buf_free(&data);
	}
}

/* What is not WebSocket: an HTTP page after the 101, bad frames. */
static void
test_errors(void)
{
	static const char *bad[] = {
		"HTTP/1.1 400 Bad Request\r\n",	/* rsv bits */
		"\x83\x00",			/* opcode 3 */
		"\x09\x00",			/* ping without FIN */
		"\x89\x7e",			/* ping of 126 bytes or more */
		"\x80\x00",			/* continuation of nothing */
	};
	struct ws_rx rx;
	struct ws_ctl c;
	struct buf data;
	size_t i, n;

	buf_init(&data, 16);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ws_rx_init(&rx);
		n = strlen(bad[i]) > 2 ? strlen(bad[i]) : 2;
		ws_rx_parse(&rx, (const unsigned char *)bad[i], n, &data, &c);
		CHECK(rx.error != NULL);
		CHECK(data.len == 0);
		/* nothing more, ever */
		CHECK(ws_rx_parse(&rx, (const unsigned char *)"\x82\x01x",
		    3, &data, &c) == 0);
	}
	buf_free(&data);
}

int
main(void)
{
	RUN(test_mask);
	RUN(test_frame);
	RUN(test_parse);
	RUN(test_errors);
	return unit_done();
}
