/*
 * The WebSocket leg: one libwebsockets client connection to the Bastion,
 * and the relay between it and stdin/stdout.
 */
#ifndef TUNNEL_H
#define TUNNEL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy.h"

struct tunnel_config {
	const char	*host;		/* data-plane host name */
	int		 port;
	const char	*path;		/* secret: holds the websocketToken */
	const char	*ca_file;	/* NULL: the system store */
	const char	*user_agent;
	const struct proxy *proxy;	/* NULL or url NULL: direct */
	size_t		 frame_size;
	long		 connect_timeout;
	volatile sig_atomic_t *signalled;	/* nonzero: wind down */
};

struct tunnel_stats {
	int		 established;
	uint64_t	 bytes_up;	/* stdin to the Bastion */
	uint64_t	 bytes_down;	/* the Bastion to stdout */
};

int	tunnel_run(const struct tunnel_config *tc, struct tunnel_stats *st);
void	tunnel_wake(void);

#endif
