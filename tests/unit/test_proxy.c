/* One proxy decision for both legs, made as curl makes it. */
#include <stdlib.h>

#include "misc.h"
#include "proxy.h"
#include "unit.h"

static void
clear_env(void)
{
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	unsetenv("no_proxy");
	unsetenv("NO_PROXY");
	unsetenv("http_proxy");
}

static void
test_url_host(void)
{
	char host[64];
	int port;

	CHECK(url_host("https://a.b:8443/x", host, sizeof(host), &port,
	    443) == 0);
	CHECK_STR(host, "a.b");
	CHECK(port == 8443);
	CHECK(url_host("https://[::1]:9/x", host, sizeof(host), &port,
	    443) == 0);
	CHECK_STR(host, "::1");
	CHECK(port == 9);
	CHECK(url_host("https://u:p@h?q", host, sizeof(host), &port,
	    443) == 0);
	CHECK_STR(host, "h");
	CHECK(port == 443);
	CHECK(url_host("https://h:0/", host, sizeof(host), &port, 443) == -1);
	CHECK(url_host("https://h:x/", host, sizeof(host), &port, 443) == -1);
	CHECK(url_host("https://[::1/", host, sizeof(host), &port, 443) == -1);
	CHECK(url_host("nohost", host, sizeof(host), &port, 443) == -1);
	CHECK(url_host("https:///p", host, sizeof(host), &port, 443) == -1);
}

static void
test_selection(void)
{
	struct proxy p;

	clear_env();
	setenv("http_proxy", "http://ignored:1", 1);
	CHECK(proxy_find("h.example", &p) == 0 && p.url == NULL);

	setenv("HTTPS_PROXY", "http://upper:3128", 1);
	setenv("https_proxy", "lower:8080", 1);
	CHECK(proxy_find("h.example", &p) == 0);
	CHECK_STR(p.host, "lower");
	CHECK(p.port == 8080);
	CHECK_STR(p.variable, "https_proxy");
	proxy_free(&p);

	unsetenv("https_proxy");
	setenv("NO_PROXY", "other, .example", 1);
	CHECK(proxy_find("h.example", &p) == 0 && p.url == NULL);
	CHECK(proxy_find("example", &p) == 0 && p.url == NULL);
	CHECK(proxy_find("notexample", &p) == 0 && p.url != NULL);
	CHECK(p.port == 3128);
	proxy_free(&p);
	setenv("NO_PROXY", "10.0.0.0/8, fd00::/16", 1);
	CHECK(proxy_find("10.1.2.3", &p) == 0 && p.url == NULL);
	CHECK(proxy_find("fd00::4", &p) == 0 && p.url == NULL);
	CHECK(proxy_find("11.1.2.3", &p) == 0 && p.url != NULL);
	proxy_free(&p);
	setenv("NO_PROXY", "127.0.0.0/8", 1);
	CHECK(proxy_find("127.0.0.1", &p) == 0 && p.url == NULL);
	CHECK(proxy_find("localhost", &p) == 0 && p.url != NULL);
	proxy_free(&p);
	setenv("NO_PROXY", "192.168.1.128/25", 1);
	CHECK(proxy_find("192.168.1.200", &p) == 0 && p.url == NULL);
	CHECK(proxy_find("192.168.1.100", &p) == 0 && p.url != NULL);
	proxy_free(&p);
	setenv("NO_PROXY", "1.2.3.4/33, 1.2.3.4/, /8", 1);
	CHECK(proxy_find("1.2.3.4", &p) == 0 && p.url != NULL);
	proxy_free(&p);
	setenv("NO_PROXY", "*", 1);
	CHECK(proxy_find("anything", &p) == 0 && p.url == NULL);

	clear_env();
	setenv("ALL_PROXY", "http://all", 1);
	CHECK(proxy_find("h", &p) == 0 && p.port == 1080);
	proxy_free(&p);
	setenv("all_proxy", "socks5://s:1080", 1);
	CHECK(proxy_find("h", &p) == EXIT_CONFIG);
	clear_env();
}

int
main(void)
{
	RUN(test_url_host);
	RUN(test_selection);
	return unit_done();
}
