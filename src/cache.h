/*
 * bastion-stdio's own cache: tokens shared by the short-lived processes
 * that ssh starts, so that fifty connections make one token request.
 */
#ifndef CACHE_H
#define CACHE_H

#include <signal.h>
#include <time.h>

#include "buf.h"

struct cache_lock {
	int	fd;
};

int	cache_dir(char *path, size_t size);
int	cache_read(const char *name, struct buf *out);
int	cache_write(const char *name, const char *data);
int	cache_remove(const char *name);
void	cache_set_interrupt(volatile sig_atomic_t *flag);
int	cache_lock(const char *name, long timeout, struct cache_lock *l);
void	cache_unlock(struct cache_lock *l);
void	cache_key_name(const char *key, char *name, size_t size);
int	cache_clear(void);

#endif
