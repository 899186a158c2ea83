/* Small helpers shared by every module. */
#ifndef MISC_H
#define MISC_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"

/*
 * Exit statuses, documented in README.md and the manual.  Functions that
 * can fail report the error where they can explain it and return one of
 * these (0 for success) so that only main() decides to exit.
 */
enum exit_status {
	EXIT_OK = 0,
	EXIT_TUNNEL = 1,	/* the tunnel broke after it was established */
	EXIT_USAGE = 2,		/* bad command line, HOST or PORT */
	EXIT_CONFIG = 3,	/* bad configuration file or keyword value */
	EXIT_CREDENTIAL = 4,	/* no ARM token could be had */
	EXIT_REFUSED = 5,	/* Azure or the Bastion refused the request */
	EXIT_NETWORK = 6,	/* DNS, connect, TLS or timeout */
	EXIT_PROTOCOL = 7,	/* an answer that breaks the protocol */
	EXIT_LOCAL_IO = 8	/* stdin or stdout failed */
};

#define BASTION_STDIO_UA	"bastion-stdio/" BASTION_STDIO_VERSION

void	*xmalloc(size_t n);
void	*xcalloc(size_t n, size_t size);
void	*xrealloc(void *p, size_t n);
char	*xstrdup(const char *s);
char	*xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void	sanitise_stdfd(void);
int	parse_number(const char *s, long min, long max, long *out);
void	url_encode(struct buf *b, const char *s);
void	form_add(struct buf *b, const char *key, const char *value);
bool	str_has_ctrl(const char *s);
long	ms_since(const struct timespec *t0);

#endif
