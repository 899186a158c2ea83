/*
 * Where the ARM access token comes from.  Sources are tried in order;
 * the first one configured here answers (the Credential keyword names
 * one to use alone), through bastion-stdio's own cache.
 */
#ifndef CRED_H
#define CRED_H

#include <stdbool.h>

#include "buf.h"
#include "config.h"
#include "entra.h"
#include "http.h"

/* A source that cannot answer here after all (no IMDS off Azure). */
#define CRED_UNAVAILABLE	(-2)

struct cred_ctx {
	struct http		*h;
	const struct options	*o;
	const char		*scope;		/* for Entra: ".../.default" */
	char			 resource[256];	/* for managed identity */
};

struct cred_source {
	const char	*name;		/* the Credential keyword's value */
	bool		(*configured)(const struct cred_ctx *);
	void		(*principal)(const struct cred_ctx *, struct buf *);
	int		(*get)(const struct cred_ctx *, struct token *);
};

extern const struct cred_source cred_environment;
extern const struct cred_source cred_workload_identity;
extern const struct cred_source cred_managed_identity;
extern const struct cred_source cred_login;
extern const struct cred_source cred_azure_cli;
extern const struct cred_source cred_device_code;

void	cred_ctx_init(struct cred_ctx *c, struct http *h,
	    const struct options *o);
int	cred_get_arm_token(struct http *h, const struct options *o,
	    struct token *t);
int	cred_renew_arm_token(struct http *h, const struct options *o,
	    struct token *t);
bool	cred_env_set(const char *name);
bool	cred_token_usable(const struct token *t, time_t now);

#endif
