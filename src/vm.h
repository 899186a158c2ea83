/*
 * A target VM's power state, from ARM, and starting it when StartVm
 * allows: ARM's long-running start, polled until the VM runs.
 */
#ifndef VM_H
#define VM_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "config.h"
#include "entra.h"
#include "http.h"

/* What the relay's hook needs to look at a target it could not reach. */
struct vm_check {
	struct http		*h;
	const struct options	*o;
	const struct token	*t;
	const char		*vm_id;
	bool			 started;	/* we started it */
	bool			 unreached;	/* the hook was called */
	struct timespec		 since;		/* when the start began */
};

int	vm_parse_power_state(const char *body, char *state, size_t size);
int	vm_parse_operation(const char *body, char *status, size_t size);
bool	vm_url_on_arm(const char *url, const char *arm_endpoint);
int	vm_ensure_running(struct http *h, const struct options *o,
	    const struct token *t, const char *vm_id, const char *known_state,
	    bool *started);
int	vm_unreached(void *arg);

#endif
