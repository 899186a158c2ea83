/*
 * Files under $XDG_CACHE_HOME/bastion-stdio (~/.cache/bastion-stdio): a
 * directory of mode 0700 holding files of mode 0600, written whole to a
 * temporary file and renamed, and a lock file per entry so that
 * concurrent processes wait for one another instead of all asking Entra.
 *
 * The cache is an optimisation: a file that is not ours, not private, a
 * symlink or corrupt is ignored with a warning, and never followed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "log.h"
#include "misc.h"

#define CACHE_FILE_MAX	(256 * 1024)

/* Checks that st describes something only we can read or change. */
static int
private_to_us(const struct stat *st, mode_t type, const char *path)
{
	if ((st->st_mode & S_IFMT) != type) {
		logit("warning: ignoring cache %s: not a %s", path,
		    type == S_IFDIR ? "directory" : "regular file");
		return -1;
	}
	if (st->st_uid != getuid()) {
		logit("warning: ignoring cache %s: owned by uid %u, not %u",
		    path, (unsigned)st->st_uid, (unsigned)getuid());
		return -1;
	}
	if (st->st_mode & 077) {
		logit("warning: ignoring cache %s: mode %03o lets others in",
		    path, (unsigned)(st->st_mode & 0777));
		return -1;
	}
	return 0;
}

/*
 * The cache directory, created if missing.  0, or -1 when there is no
 * usable one (the caller then works without a cache).
 */
int
cache_dir(char *path, size_t size)
{
	static bool unusable;	/* said once; the run goes on without */
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	char parent[1024];
	struct stat st;

	if (unusable)
		return -1;
	if (xdg != NULL && *xdg == '/')
		snprintf(parent, sizeof(parent), "%s", xdg);
	else if (home != NULL && *home == '/')
		snprintf(parent, sizeof(parent), "%s/.cache", home);
	else
		return -1;
	if ((size_t)snprintf(path, size, "%s/bastion-stdio", parent) >= size)
		return -1;
	if (mkdir(parent, 0700) == -1 && errno != EEXIST)
		return -1;
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		logit("warning: cannot create cache %s: %s", path,
		    strerror(errno));
		unusable = true;
		return -1;
	}
	if (lstat(path, &st) == -1 ||
	    private_to_us(&st, S_IFDIR, path) == -1) {
		unusable = true;
		return -1;
	}
	return 0;
}

/* A file name for a key: its SHA-256, so that any key is a safe name. */
void
cache_key_name(const char *key, char *name, size_t size)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;
	size_t off = 0;

	EVP_Digest(key, strlen(key), md, &n, EVP_sha256(), NULL);
	for (i = 0; i < 16 && off + 3 <= size; i++)
		off += (size_t)snprintf(name + off, size - off, "%02x", md[i]);
}

static int
entry_path(const char *name, char *path, size_t size)
{
	char dir[1024];

	if (cache_dir(dir, sizeof(dir)) == -1)
		return -1;
	if ((size_t)snprintf(path, size, "%s/%s", dir, name) >= size)
		return -1;
	return 0;
}

/*
 * Reads an entry into out.  0, or -1 when it is missing or unusable;
 * O_NOFOLLOW refuses a symlink planted where the entry should be.
 */
int
cache_read(const char *name, struct buf *out)
{
	char path[1100];
	struct stat st;
	ssize_t n;
	int fd;

	if (entry_path(name, path, sizeof(path)) == -1)
		return -1;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd == -1) {
		if (errno == ELOOP)
			logit("warning: ignoring cache %s: a symlink", path);
		return -1;
	}
	if (fstat(fd, &st) == -1 || private_to_us(&st, S_IFREG, path) == -1 ||
	    st.st_size > CACHE_FILE_MAX) {
		close(fd);
		return -1;
	}
	buf_reset(out);
	for (;;) {
		unsigned char *p = buf_space(out, 4096, NULL);

		n = read(fd, p, 4096);
		if (n <= 0)
			break;
		buf_commit(out, (size_t)n);
	}
	close(fd);
	return n == 0 ? 0 : -1;
}

/* Writes an entry atomically: a private temporary file, then rename. */
int
cache_write(const char *name, const char *data)
{
	char path[1100], tmp[1200];
	size_t len = strlen(data);
	int fd, ok;

	if (entry_path(name, path, sizeof(path)) == -1)
		return -1;
	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		logit("warning: cannot write cache %s: %s", path,
		    strerror(errno));
		return -1;
	}
	ok = fchmod(fd, 0600) == 0 && write(fd, data, len) == (ssize_t)len;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) == -1) {
		logit("warning: cannot write cache %s: %s", path,
		    strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int
cache_remove(const char *name)
{
	char path[1100];

	if (entry_path(name, path, sizeof(path)) == -1)
		return -1;
	return unlink(path) == -1 && errno != ENOENT ? -1 : 0;
}

/*
 * Takes the lock of an entry, waiting up to timeout seconds for another
 * process that is fetching the same token.  Without a lock (no cache,
 * or the wait ran out) l->fd is -1 and the caller goes on unlocked.
 */
/* The process's signal flag: a wait for a lock ends when it is set. */
static volatile sig_atomic_t *interrupted;

void
cache_set_interrupt(volatile sig_atomic_t *flag)
{
	interrupted = flag;
}

int
cache_lock(const char *name, long timeout, struct cache_lock *l)
{
	char path[1100], lname[128];
	struct timespec pause = { 0, 10 * 1000 * 1000 };
	long waited_ms = 0;

	l->fd = -1;
	snprintf(lname, sizeof(lname), "%s.lock", name);
	if (entry_path(lname, path, sizeof(path)) == -1)
		return -1;
	l->fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (l->fd == -1)
		return -1;
	while (flock(l->fd, LOCK_EX | LOCK_NB) == -1) {
		if ((errno != EWOULDBLOCK && errno != EINTR) ||
		    waited_ms >= timeout * 1000 ||
		    (interrupted != NULL && *interrupted)) {
			debug("cache lock %s: %s", lname,
			    errno == EWOULDBLOCK ? "still held, going on "
			    "without it" : strerror(errno));
			close(l->fd);
			l->fd = -1;
			return -1;
		}
		nanosleep(&pause, NULL);
		waited_ms += 10;
	}
	return 0;
}

void
cache_unlock(struct cache_lock *l)
{
	if (l->fd != -1)
		close(l->fd);	/* releases the flock */
	l->fd = -1;
}

/* Removes every entry: what `bastion-stdio logout` promises. */
int
cache_clear(void)
{
	char dir[1024], path[1400];
	struct dirent *de;
	struct stat st;
	DIR *d;
	int r = 0;

	if (cache_dir(dir, sizeof(dir)) == -1 || (d = opendir(dir)) == NULL)
		return 0;	/* nothing of ours to remove */
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode) &&
		    unlink(path) == -1)
			r = -1;
	}
	closedir(d);
	return r;
}
