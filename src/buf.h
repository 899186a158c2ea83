/*
 * A byte buffer that serves as a FIFO (the tunnel's two queues) and as a
 * string builder (URLs, form bodies).  Data lives in data[off, off + len).
 */
#ifndef BUF_H
#define BUF_H

#include <stddef.h>

struct buf {
	unsigned char	*data;
	size_t		 off;	/* start of the queued bytes */
	size_t		 len;	/* number of queued bytes */
	size_t		 cap;	/* allocated size */
};

void	buf_init(struct buf *b, size_t cap);
void	buf_free(struct buf *b);
void	buf_reset(struct buf *b);
unsigned char *buf_space(struct buf *b, size_t want, size_t *avail);
void	buf_commit(struct buf *b, size_t n);
void	buf_put(struct buf *b, const void *p, size_t n);
void	buf_puts(struct buf *b, const char *s);
void	buf_consume(struct buf *b, size_t n);
const char *buf_str(struct buf *b);

#endif
