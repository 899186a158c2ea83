/* Azure Resource Manager: requests, and reading the Bastion host. */
#ifndef ARM_H
#define ARM_H

#include <stdbool.h>

#include "config.h"
#include "entra.h"
#include "http.h"

/* A boolean ARM property that may be missing from the answer. */
enum tristate { TRI_UNKNOWN = -1, TRI_FALSE = 0, TRI_TRUE = 1 };

struct bastion {
	char		*dns_name;	/* host[:port] of the data plane */
	char		*sku;		/* NULL when ARM did not say */
	enum tristate	 tunneling;	/* properties.enableTunneling */
	enum tristate	 ip_connect;	/* properties.enableIpConnect */
};

char	*arm_url(const struct options *o, const char *id, const char *suffix,
	    const char *api);
int	arm_request(struct http *h, const struct options *o,
	    const struct token *t, const char *method, const char *url,
	    const char *body, struct http_response *rs);
int	arm_report(struct http_response *rs, const char *what);
int	arm_parse_bastion(const char *body, struct bastion *b);
void	arm_bastion_free(struct bastion *b);
void	arm_describe_error(const char *body, char *out, size_t size);
int	arm_get_bastion(struct http *h, const struct options *o,
	    const struct token *t, const char *id, struct bastion *b,
	    bool *cached);
void	arm_remember_bastion(const struct options *o, const struct token *t,
	    const char *id, const struct bastion *b);
void	arm_forget_bastion(const struct options *o, const struct token *t,
	    const char *id);
int	arm_check_bastion(const struct bastion *b, const char *name,
	    bool ip_connect);
bool	arm_is_dns_name(const char *s);
bool	arm_is_developer(const struct bastion *b);

#endif
