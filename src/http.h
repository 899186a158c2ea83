/*
 * HTTPS requests through libcurl, with the settings every leg shares:
 * HTTP/1.1, https only, no redirects, one CA choice, one proxy choice,
 * a time bound, and no secret in any log line.
 */
#ifndef HTTP_H
#define HTTP_H

#include <signal.h>
#include <stdbool.h>

#include "buf.h"

struct http {
	void		*curl;		/* CURL *, reused for keep-alive */
	const char	*ca_file;	/* NULL: the system store */
	const char	*ca_dir;	/* its hashed directory, or NULL */
	const char	*user_agent;
	long		 timeout;	/* seconds for a whole request */
	volatile sig_atomic_t *interrupted;	/* abort when it turns 1 */
	char		 proxy[300];	/* the request's proxy, for messages */
	char		*held;		/* non-NULL: keep, not report, why */
	size_t		 held_size;	/* no answer came (report() in .c) */
	long		 last_status;	/* the last answer's, 0 if none */
};

struct http_request {
	const char	*method;
	const char	*url;
	const char	*what;		/* the URL as logged: no secrets */
	const char	*const *headers;	/* NULL-terminated, or NULL */
	const char	*body;		/* NULL for none */
	long		 timeout;	/* 0: the client's */
	long		 connect_ms;	/* 0: the client's timeout */
	int		 fresh;		/* on a new connection */
	int		 local;		/* plain http allowed, no proxy */
	int		 probe;		/* no answer is no error: debug only */
};

struct http_response {
	long		 status;
	struct buf	 body;
	long		 retry_after;	/* seconds, -1 when absent */
	char		*authenticate;	/* WWW-Authenticate, or NULL */
	char		*location;	/* Location, or NULL */
	char		*async_operation;	/* Azure-AsyncOperation */
};

int	http_init(struct http *h, const char *ca_file, const char *ca_dir,
	    const char *ua, long timeout);
void	http_cleanup(struct http *h);
int	http_do(struct http *h, const struct http_request *rq,
	    struct http_response *rs);
void	http_response_free(struct http_response *rs);
bool	http_retry_later(const struct http_response *rs, int attempt,
	    long *left, const char *who);

#endif
