/*
 * libFuzzer: the relay's WebSocket frame reader (wsframe.c), fed what a
 * Bastion could send in reads of every size.  The first byte picks the
 * read size; the rest is the stream.  Checked: nothing is consumed past
 * the input or after an error, control frames fit their limit, and a
 * payload framed by ws_frame() reads back as itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "misc.h"
#include "wsframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
read_stream(const uint8_t *p, size_t len, size_t step)
{
	struct ws_rx rx;
	struct ws_ctl c;
	struct buf out;
	size_t i, n, used;

	ws_rx_init(&rx);
	buf_init(&out, 64);
	for (i = 0; i < len; i += n) {
		n = len - i < step ? len - i : step;
		used = ws_rx_parse(&rx, p + i, n, &out, &c);
		if (used > n || (c.opcode != 0 && c.len > WS_CTL_MAX))
			abort();
		if (rx.error != NULL) {
			if (ws_rx_parse(&rx, p, len, &out, &c) != 0)
				abort();
			break;
		}
		if (used < n)	/* a control frame came first */
			n = used;
		if (n == 0 && c.opcode == 0)
			abort();
	}
	buf_free(&out);
}

static void
round_trip(const uint8_t *p, size_t len)
{
	static const unsigned char key[4] = { 1, 2, 3, 4 };
	unsigned char *f = xmalloc(len + WS_HDR_MAX);
	struct ws_rx rx;
	struct ws_ctl c;
	struct buf out;
	size_t n;

	n = ws_frame(f, WS_OP_BINARY, p, len, key);
	ws_rx_init(&rx);
	buf_init(&out, 64);
	if (ws_rx_parse(&rx, f, n, &out, &c) != n || rx.error != NULL ||
	    out.len != len || (len > 0 && memcmp(out.data, p, len) != 0))
		abort();
	buf_free(&out);
	free(f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	read_stream(data + 1, size - 1, (size_t)data[0] + 1);
	round_trip(data + 1, size - 1);
	return 0;
}
