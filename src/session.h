/*
 * A Bastion session: the tokens from POST /api/tokens that open the
 * WebSocket, and the DELETE that ends the session on the Bastion.
 */
#ifndef SESSION_H
#define SESSION_H

#include "entra.h"
#include "http.h"
#include "target.h"

/* authToken and websocketToken are secrets and are never logged. */
struct session {
	char	*endpoint;	/* data-plane host[:port] */
	int	 developer;	/* a Developer SKU data pod: /omni/webtunnel/ */
	char	*auth_token;
	char	*websocket_token;
	char	*node_id;
};

int	session_parse(const char *body, struct session *s);
void	session_describe_error(const char *body, char *out, size_t size);
int	session_create(struct http *h, const char *endpoint, int developer,
	    const struct target *tg, const struct token *t,
	    struct session *s, char *why, size_t size, long *retry_in);
int	session_data_pod(struct http *h, const char *dns_name,
	    const char *bastion_id, const struct target *tg,
	    const struct token *t, char **pod);
int	session_delete(struct http *h, struct session *s);
char	*session_ws_path(const struct session *s);
void	session_free(struct session *s);

#endif
