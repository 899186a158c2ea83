/* Sessions and WebSockets to the target, with retries during set-up. */
#ifndef RELAY_H
#define RELAY_H

#include <signal.h>
#include <stdbool.h>

#include "config.h"
#include "entra.h"
#include "http.h"
#include "target.h"

/*
 * Asked when the Bastion closed the WebSocket with 1011 before the target
 * sent a byte: 0 to try a new session at once (the target was started),
 * -1 to report that close as it is, or an exit status after reporting
 * why the target could not be reached.
 */
struct relay_hook {
	int	(*unreached)(void *arg);
	void	*arg;
};

int	relay_run(struct http *h, const struct options *o,
	    const char *endpoint, int developer, const struct target *tg,
	    struct token *tok, const struct relay_hook *hook,
	    volatile sig_atomic_t *signalled, bool *opened, char *why,
	    size_t size);

#endif
