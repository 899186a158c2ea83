/* Entra ID's OAuth 2.0 token endpoint. */
#ifndef ENTRA_H
#define ENTRA_H

#include <stddef.h>
#include <time.h>

#include "http.h"

/* An access token; access_token is a secret and is never logged. */
struct token {
	char	*access_token;
	time_t	 expires_on;
	time_t	 issued_on;
	const char *source;	/* the credential source that gave it */
};

void	token_free(struct token *t);
int	entra_parse_token(const char *body, time_t now, struct token *t);
void	entra_describe_error(const char *body, char *out, size_t size);
char	*entra_token_url(const char *authority, const char *tenant);
int	entra_request_token(struct http *h, const char *authority,
	    const char *tenant, const char *form, const char *who,
	    const char *hint, struct token *t, char **refresh_token);
char	*entra_json_string(const char *body, const char *name);
long	entra_json_number(const char *body, const char *name);

#endif
