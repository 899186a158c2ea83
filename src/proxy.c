/*
 * Proxy selection as curl does it for https URLs: https_proxy, then
 * HTTPS_PROXY, then all_proxy and ALL_PROXY, unless no_proxy (or
 * NO_PROXY) names the host or one of its parent domains, or is "*".
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "misc.h"
#include "proxy.h"

static const char *const proxy_vars[] = {
	"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"
};

/*
 * Extracts the host name and port of a URL, without the brackets of an
 * IPv6 literal; *port is default_port when the URL names none.  0 or -1.
 */
int
url_host(const char *url, char *host, size_t size, int *port,
    int default_port)
{
	const char *p, *end, *at, *hend, *rest;
	char num[8];
	long v;

	if ((p = strstr(url, "://")) == NULL)
		return -1;
	p += 3;
	end = p + strcspn(p, "/?#");
	if ((at = memchr(p, '@', (size_t)(end - p))) != NULL)
		p = at + 1;
	if (*p == '[') {
		if ((hend = memchr(p, ']', (size_t)(end - p))) == NULL)
			return -1;
		rest = hend + 1;
		p++;
	} else {
		hend = memchr(p, ':', (size_t)(end - p));
		if (hend == NULL)
			hend = end;
		rest = hend;
	}
	if (hend == p || (size_t)(hend - p) >= size)
		return -1;
	memcpy(host, p, (size_t)(hend - p));
	host[hend - p] = '\0';
	*port = default_port;
	if (rest == end)
		return 0;
	if (*rest != ':' || end - rest < 2 || end - rest > 6)
		return -1;
	memcpy(num, rest + 1, (size_t)(end - rest - 1));
	num[end - rest - 1] = '\0';
	if (parse_number(num, 1, 65535, &v) == -1)
		return -1;
	*port = (int)v;
	return 0;
}

/*
 * libwebsockets takes the proxy as "[user:pass@]host:port" and sends the
 * credentials as Proxy-Authorization: Basic, as curl does.
 */
static char *
lws_address(const char *url, const char *host, int port)
{
	const char *p = strstr(url, "://") + 3;
	size_t n = strcspn(p, "@/");

	if (p[n] != '@')
		return xasprintf("%s:%d", host, port);
	return xasprintf("%.*s@%s:%d", (int)n, p, host, port);
}

/* An address range "a.b.c.d/n" or "x::/n", as curl reads it. */
static bool
cidr_matches(const char *host, const char *entry, size_t n)
{
	unsigned char want[16], have[16];
	char addr[64], prefix[4];
	const char *slash = memchr(entry, '/', n);
	size_t alen = (size_t)(slash - entry), plen = n - alen - 1;
	long bits;
	int af, i;

	if (alen >= sizeof(addr) || plen >= sizeof(prefix))
		return false;
	snprintf(addr, sizeof(addr), "%.*s", (int)alen, entry);
	snprintf(prefix, sizeof(prefix), "%.*s", (int)plen, slash + 1);
	af = strchr(addr, ':') != NULL ? AF_INET6 : AF_INET;
	if (inet_pton(af, addr, want) != 1 || inet_pton(af, host, have) != 1 ||
	    parse_number(prefix, 0, af == AF_INET ? 32 : 128, &bits) == -1)
		return false;
	for (i = 0; bits >= 8; i++, bits -= 8)
		if (want[i] != have[i])
			return false;
	return bits == 0 || ((want[i] ^ have[i]) & (0xff << (8 - bits))) == 0;
}

/*
 * Whether one no_proxy entry covers host: itself, a parent domain, or an
 * address range holding it.
 */
static bool
no_proxy_entry_matches(const char *host, const char *entry, size_t n)
{
	size_t hlen = strlen(host);

	if (memchr(entry, '/', n) != NULL)
		return cidr_matches(host, entry, n);
	if (n > 0 && entry[0] == '.') {
		entry++;
		n--;
	}
	if (n == 0)
		return false;
	if (n == 1 && entry[0] == '*')
		return true;
	if (hlen == n)
		return strncasecmp(host, entry, n) == 0;
	return hlen > n && host[hlen - n - 1] == '.' &&
	    strncasecmp(host + hlen - n, entry, n) == 0;
}

static bool
no_proxy_matches(const char *host)
{
	const char *list = getenv("no_proxy");
	size_t n;

	if (list == NULL)
		list = getenv("NO_PROXY");
	if (list == NULL)
		return false;
	while (*list != '\0') {
		list += strspn(list, ", \t");
		n = strcspn(list, ", \t");
		if (n > 0 && no_proxy_entry_matches(host, list, n))
			return true;
		list += n;
	}
	return false;
}

/*
 * Finds the proxy for connections to host.  Returns 0 with p->url NULL
 * for a direct connection, or EXIT_CONFIG when the variable names a
 * proxy that cannot carry the WebSocket (https:// or SOCKS).
 */
int
proxy_find(const char *host, struct proxy *p)
{
	const char *value = NULL, *name = NULL;
	char phost[256];
	size_t i;

	memset(p, 0, sizeof(*p));
	for (i = 0; i < sizeof(proxy_vars) / sizeof(proxy_vars[0]); i++) {
		value = getenv(proxy_vars[i]);
		if (value != NULL && *value != '\0') {
			name = proxy_vars[i];
			break;
		}
	}
	if (name == NULL || no_proxy_matches(host))
		return 0;
	if (strstr(value, "://") == NULL)
		p->url = xasprintf("http://%s", value);
	else if (strncasecmp(value, "http://", 7) == 0)
		p->url = xstrdup(value);
	else {
		error("%s: only http:// proxies are supported, not \"%.60s\"",
		    name, value);
		return EXIT_CONFIG;
	}
	/* curl's default proxy port */
	if (url_host(p->url, phost, sizeof(phost), &p->port, 1080) == -1) {
		error("%s: cannot parse the proxy address", name);
		proxy_free(p);
		return EXIT_CONFIG;
	}
	p->host = xstrdup(phost);
	p->lws_address = lws_address(p->url, phost, p->port);
	p->variable = xstrdup(name);
	return 0;
}

void
proxy_free(struct proxy *p)
{
	free(p->url);
	free(p->host);
	free(p->lws_address);
	free(p->variable);
	memset(p, 0, sizeof(*p));
}
