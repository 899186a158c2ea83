/*
 * RFC 6455 framing over whole buffers, for the relay's hot path:
 * libwebsockets 4.1.6 parses and masks one byte at a time.  Pure code,
 * no I/O: the tunnel feeds it what it read and sends what it built.
 */
#ifndef WSFRAME_H
#define WSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define WS_OP_CONT	0x0
#define WS_OP_TEXT	0x1
#define WS_OP_BINARY	0x2
#define WS_OP_CLOSE	0x8
#define WS_OP_PING	0x9
#define WS_OP_PONG	0xa

#define WS_HDR_MAX	14	/* 2 + 8 bytes of length + 4 of mask */
#define WS_CTL_MAX	125	/* largest control frame payload */

/* Where the reader is in the stream of frames. */
struct ws_rx {
	unsigned char	 hdr[WS_HDR_MAX];
	size_t		 hlen;		/* header bytes read so far */
	size_t		 hneed;		/* and how many there will be */
	uint64_t	 left;		/* payload bytes still to come */
	unsigned char	 key[4];	/* mask, if the frame has one */
	unsigned int	 kpos;		/* mask offset of the next byte */
	bool		 masked;
	bool		 in_payload;	/* the header is complete */
	bool		 data_seen;	/* a continuation may follow */
	int		 opcode;	/* of the frame being read */
	unsigned char	 ctl[WS_CTL_MAX];	/* a control frame's payload */
	size_t		 clen;
	const char	*error;		/* set once the stream is not WS */
};

/* A control frame, complete: opcode 0 means none. */
struct ws_ctl {
	int		 opcode;
	const unsigned char *data;
	size_t		 len;
};

void	ws_rx_init(struct ws_rx *rx);
size_t	ws_rx_parse(struct ws_rx *rx, const unsigned char *in, size_t len,
	    struct buf *data, struct ws_ctl *ctl);
void	ws_mask(unsigned char *p, size_t n, const unsigned char key[4],
	    unsigned int *kpos);
size_t	ws_frame(unsigned char *out, int opcode, const void *payload,
	    size_t n, const unsigned char key[4]);

#endif
