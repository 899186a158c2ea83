/* Sessions and WebSockets to the target, with retries during set-up. */
#ifndef RELAY_H
#define RELAY_H

#include <signal.h>
#include <stdbool.h>

#include "config.h"
#include "entra.h"
#include "http.h"
#include "target.h"

int	relay_run(struct http *h, const struct options *o,
	    const char *endpoint, int developer, const struct target *tg,
	    struct token *tok, volatile sig_atomic_t *signalled,
	    bool *opened, char *why, size_t size);

#endif
