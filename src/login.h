/*
 * Signing in as a user: the device-code flow of `bastion-stdio login`,
 * the refresh token it keeps in bastion-stdio's own cache, and logout.
 */
#ifndef LOGIN_H
#define LOGIN_H

#include "config.h"
#include "cred.h"

/* The Azure CLI's public client id, pre-consented for ARM everywhere. */
#define AZURE_CLI_CLIENT_ID	"04b07795-8ddb-461a-bbee-02f9e1bf7b46"

int	login_command(const struct options *o);
int	logout_command(void);
int	login_redeem(const struct cred_ctx *c, const char *tenant,
	    const char *client_id, const char *refresh_token, const char *who,
	    const char *hint, struct token *t, char **new_refresh_token);

#endif
