/*
 * The WebSocket leg: libwebsockets client connections to the Bastion,
 * one per set-up attempt, and the relay between them and stdin/stdout.
 */
#ifndef TUNNEL_H
#define TUNNEL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy.h"

struct tunnel_config {
	const char	*host;		/* data-plane host name */
	int		 port;
	const char	*ca_file;	/* NULL: the system store */
	const char	*ca_dir;	/* its hashed directory, or NULL */
	const char	*user_agent;
	const struct proxy *proxy;	/* NULL or url NULL: direct */
	size_t		 frame_size;
	long		 connect_timeout;
	long		 ping_interval;	/* seconds; 0: no pings */
	volatile sig_atomic_t *signalled;	/* nonzero: wind down */
};

struct tunnel_stats {
	bool		 opened;	/* a WebSocket was established */
	uint64_t	 bytes_up;	/* stdin to the Bastion */
	uint64_t	 bytes_down;	/* the Bastion to stdout */
};

struct tunnel;

struct tunnel *tunnel_open(const struct tunnel_config *tc);
int	tunnel_attempt(struct tunnel *t, const char *path, bool *retryable,
	    char *why, size_t size);
bool	tunnel_unreached(const struct tunnel *t);
void	tunnel_close(struct tunnel *t, struct tunnel_stats *st);
void	tunnel_wake(void);

#endif
