/* `bastion-stdio config-ssh`: ssh_config blocks for reachable VMs. */
#ifndef CONFIG_SSH_H
#define CONFIG_SSH_H

#include "config.h"

int	config_ssh_command(const struct options *o);

#endif
