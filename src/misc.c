/* Small helpers shared by every module. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "misc.h"

/* Running out of memory in a short-lived relay has no useful recovery. */
static void
out_of_memory(void)
{
	static const char msg[] = "bastion-stdio: out of memory\r\n";
	ssize_t n = write(2, msg, sizeof(msg) - 1);

	(void)n;	/* nothing more can be done */
	_exit(EXIT_LOCAL_IO);
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		out_of_memory();
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		out_of_memory();
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		out_of_memory();
	return p;
}

char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		out_of_memory();
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		out_of_memory();
	return p;
}

/*
 * Opens /dev/null onto any closed standard descriptor, as OpenSSH does.
 * Otherwise the next descriptor opened takes number 0 or 1 and is relayed
 * as if it were stdin or stdout: libwebsockets 4.1.6 opens /dev/urandom
 * at context creation, and with "<&-" that random stream went up the
 * tunnel.  No upstream change addresses it; it is the caller's job.
 */
void
sanitise_stdfd(void)
{
	int fd;

	while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
		;
	if (fd > 2)
		close(fd);
}

/* Parses a decimal number in [min, max]; 0 or -1. */
int
parse_number(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (*s == '\0' || *s == '+' || *s == '-' || *s == ' ')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Percent-encodes everything but RFC 3986's unreserved characters. */
void
url_encode(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char c;
	char esc[3];

	for (; (c = (unsigned char)*s) != '\0'; s++) {
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~') {
			buf_put(b, s, 1);
			continue;
		}
		esc[0] = '%';
		esc[1] = hex[c >> 4];
		esc[2] = hex[c & 15];
		buf_put(b, esc, 3);
	}
}

/* Appends key=value to an application/x-www-form-urlencoded body. */
void
form_add(struct buf *b, const char *key, const char *value)
{
	if (b->len > 0)
		buf_puts(b, "&");
	url_encode(b, key);
	buf_puts(b, "=");
	url_encode(b, value);
}

bool
str_has_ctrl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Milliseconds since t0, on the monotonic clock: for -v's timings. */
long
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 +
	    (t1.tv_nsec - t0->tv_nsec) / 1000000;
}
