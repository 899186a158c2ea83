/*
 * Where the ARM access token comes from.  Each source says whether it is
 * configured here and, if so, gets a token; the first configured source
 * is used.
 */
#ifndef CRED_H
#define CRED_H

#include "config.h"
#include "entra.h"
#include "http.h"

int	cred_get_arm_token(struct http *h, const struct options *o,
	    struct token *t);

#endif
