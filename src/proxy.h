/*
 * One proxy decision for every leg.  libcurl and libwebsockets read
 * different environment variables, so bastion-stdio reads them itself
 * and hands the same answer to both.
 */
#ifndef PROXY_H
#define PROXY_H

#include <stddef.h>

struct proxy {
	char	*url;		/* "http://[user:pass@]host:port", or NULL */
	char	*host;		/* for messages */
	char	*lws_address;	/* for lws: "[user:pass@]host:port" */
	int	 port;
	char	*variable;	/* which environment variable it came from */
};

int	proxy_find(const char *host, struct proxy *p);
void	proxy_free(struct proxy *p);
int	url_host(const char *url, char *host, size_t size, int *port,
	    int default_port);

#endif
