/*
 * Byte buffers.  Appending never fails: the buffer compacts first and
 * grows only when the queued bytes really need more room, so a caller
 * that keeps its own high-water mark keeps memory bounded.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "misc.h"

void
buf_init(struct buf *b, size_t cap)
{
	b->data = cap ? xmalloc(cap) : NULL;
	b->off = b->len = 0;
	b->cap = cap;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

void
buf_reset(struct buf *b)
{
	b->off = b->len = 0;
}

/*
 * Returns room for at least want bytes after the queued ones; *avail is
 * all the contiguous room there is.  Moving the queued bytes to the front
 * is cheaper than a ring's split reads and writes at these sizes.
 */
unsigned char *
buf_space(struct buf *b, size_t want, size_t *avail)
{
	if (b->len == 0)
		b->off = 0;
	if (b->cap - b->off - b->len < want && b->off > 0) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
	}
	if (b->cap - b->len < want) {
		b->cap = b->len + want > 2 * b->cap ? b->len + want :
		    2 * b->cap;
		b->data = xrealloc(b->data, b->cap);
	}
	if (avail != NULL)
		*avail = b->cap - b->off - b->len;
	return b->data + b->off + b->len;
}

void
buf_commit(struct buf *b, size_t n)
{
	b->len += n;
}

void
buf_put(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	memcpy(buf_space(b, n, NULL), p, n);
	b->len += n;
}

void
buf_puts(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

void
buf_consume(struct buf *b, size_t n)
{
	b->off += n;
	b->len -= n;
	if (b->len == 0)
		b->off = 0;
}

/* The queued bytes as a C string; the buffer keeps ownership. */
const char *
buf_str(struct buf *b)
{
	*buf_space(b, 1, NULL) = '\0';
	return (const char *)b->data + b->off;
}
