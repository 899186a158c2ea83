/* `bastion-stdio config-ssh`: ssh_config blocks for reachable VMs. */
#ifndef CONFIG_SSH_H
#define CONFIG_SSH_H

#include <stdbool.h>

#include "config.h"

int	config_ssh_command(const struct options *o,
	    const char *config_file, bool options_given);

#endif
