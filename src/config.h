/*
 * Settings, from -o options, then the configuration file, then the
 * environment.  The first value obtained for a keyword wins, as in ssh.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdio.h>

#include "cloud.h"
#include "log.h"

#define CFG_UNSET	(-1)

struct options {
	char	*bastion;		/* ARM id of the Bastion host */
	char	*target_resource_group;
	char	*target_subscription;
	char	*target_resource_id;
	char	*cloud_name;
	char	*arm_endpoint;
	char	*authority_host;
	char	*ca_file;
	char	*log_file;
	char	*credential;		/* one source to use alone */
	char	*mi_client_id;		/* user-assigned managed identity */
	char	*mi_object_id;
	char	*mi_resource_id;
	char	*tenant;		/* for `login` */
	char	*login_client_id;
	long	 device_code;		/* yes: sign in from a ProxyCommand */
	long	 connect_timeout;	/* seconds, for each setup step */
	long	 frame_size;		/* largest payload sent per frame */
	long	 ping_interval;		/* seconds between pings; 0: none */
	long	 arm_cache_time;	/* seconds ARM answers are reused */
	long	 log_level;		/* enum log_level */
	long	 start_vm;		/* yes: start a stopped target VM */
	long	 start_timeout;		/* seconds a start may take */

	/* Derived by cfg_finish(). */
	const struct cloud *cloud;
	char	*ca_dir;		/* hashed CA directory, no CAFile */

	/* What was read, for `doctor`: files, and Host lines that applied. */
	char	*files_read;
	char	*hosts_matched;
};

void	cfg_init(struct options *o);
void	cfg_free(struct options *o);
int	cfg_set(struct options *o, const char *keyword, const char *value,
	    const char *where);
int	cfg_parse_option(struct options *o, const char *arg);
int	cfg_read_file(struct options *o, const char *path, const char *host);
int	cfg_read_stream(struct options *o, FILE *f, const char *path,
	    const char *host);
int	cfg_read_default_files(struct options *o, const char *host);
int	cfg_finish(struct options *o);

#endif
