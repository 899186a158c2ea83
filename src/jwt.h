/* Client assertions: JWTs signed with a service principal's certificate. */
#ifndef JWT_H
#define JWT_H

#include <time.h>

#include "buf.h"

void	base64url(struct buf *out, const unsigned char *p, size_t n);
char	*jwt_payload(const char *token);
int	jwt_client_assertion(const char *cert_path, const char *password,
	    const char *client_id, const char *audience, time_t now,
	    struct buf *out);

#endif
