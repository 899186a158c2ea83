/* `bastion-stdio doctor`: every step of a connection, checked and told. */
#ifndef DOCTOR_H
#define DOCTOR_H

#include "config.h"

int	doctor_command(const struct options *o, const char *host,
	    const char *port);	/* host NULL: no target steps */

#endif
