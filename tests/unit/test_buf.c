/* The byte queue under the relay and the URL builders. */
#include <stdlib.h>

#include "buf.h"
#include "misc.h"
#include "unit.h"

static void
test_queue(void)
{
	struct buf b;
	size_t avail;
	unsigned char *p;

	buf_init(&b, 8);
	buf_put(&b, "abcdef", 6);
	buf_consume(&b, 4);
	CHECK(b.len == 2 && b.off == 4);
	/* room for 5 more: compacts instead of growing */
	p = buf_space(&b, 5, &avail);
	CHECK(b.cap == 8 && b.off == 0 && avail == 6);
	memcpy(p, "ghijk", 5);
	buf_commit(&b, 5);
	CHECK_STR(buf_str(&b), "efghijk");
	CHECK(b.cap == 8);	/* the terminating NUL still fits */
	buf_put(&b, "l", 1);
	CHECK_STR(buf_str(&b), "efghijkl");
	CHECK(b.cap > 8);	/* now it did not */
	buf_consume(&b, 8);
	CHECK(b.len == 0 && b.off == 0);
	buf_free(&b);
}

static void
test_growth(void)
{
	struct buf b;
	char big[100000];
	size_t i;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7);
	buf_init(&b, 16);
	buf_put(&b, big, sizeof(big));
	CHECK(b.len == sizeof(big));
	CHECK(memcmp(b.data + b.off, big, sizeof(big)) == 0);
	buf_free(&b);
}

static void
test_form(void)
{
	struct buf b;

	buf_init(&b, 0);
	form_add(&b, "resourceId", "/subscriptions/s/rg/a b&c=d");
	form_add(&b, "aztoken", "tok+en/==");
	form_add(&b, "hostname", "fe80::1");
	CHECK_STR(buf_str(&b), "resourceId=%2Fsubscriptions%2Fs%2Frg%2Fa%20b"
	    "%26c%3Dd&aztoken=tok%2Ben%2F%3D%3D&hostname=fe80%3A%3A1");
	buf_reset(&b);
	url_encode(&b, "\xc3\xa9-._~");
	CHECK_STR(buf_str(&b), "%C3%A9-._~");
	buf_free(&b);
}

static void
test_numbers(void)
{
	long v = 0;

	CHECK(parse_number("22", 1, 65535, &v) == 0 && v == 22);
	CHECK(parse_number("65536", 1, 65535, &v) == -1);
	CHECK(parse_number("0", 1, 65535, &v) == -1);
	CHECK(parse_number("-1", 0, 10, &v) == -1);
	CHECK(parse_number("+1", 0, 10, &v) == -1);
	CHECK(parse_number("1x", 0, 10, &v) == -1);
	CHECK(parse_number("", 0, 10, &v) == -1);
	CHECK(parse_number(" 1", 0, 10, &v) == -1);
	CHECK(parse_number("99999999999999999999", 0, 10, &v) == -1);
}

int
main(void)
{
	RUN(test_queue);
	RUN(test_growth);
	RUN(test_form);
	RUN(test_numbers);
	return unit_done();
}
