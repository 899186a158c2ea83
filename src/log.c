/*
 * The logging module, after OpenSSH's log.c: a level, one destination,
 * and lines written whole so that concurrent writers do not interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX	1024

static enum log_level log_level = LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {
	"QUIET", "FATAL", "ERROR", "INFO", "VERBOSE",
	"DEBUG1", "DEBUG2", "DEBUG3"
};

void
log_init(enum log_level level)
{
	log_level = level;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

/* Sends messages to a file instead of stderr; 0 or -1 with errno set. */
int
log_open_file(const char *path)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	log_fd = fd;
	return 0;
}

int
log_level_parse(const char *name, enum log_level *level)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	if (strcasecmp(name, "DEBUG") == 0) {
		*level = LOG_DEBUG1;
		return 0;
	}
	return -1;
}

const char *
log_level_name(enum log_level level)
{
	return level_names[level];
}

/*
 * Copies src into dst, replacing control bytes with '?' so that text from
 * a server cannot drive the user's terminal.
 */
static void
copy_printable(char *dst, const char *src, size_t size)
{
	size_t i;

	for (i = 0; src[i] != '\0' && i + 1 < size; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	dst[i] = '\0';
}

/*
 * ssh may have put the terminal into raw mode, so lines end in CR LF.
 * EAGAIN is possible when stderr shares a non-blocking file description
 * with stdout (2>&1); a short retry keeps the line without blocking long.
 */
static void
write_line(const char *line, size_t len)
{
	int tries;
	ssize_t n;

	for (tries = 0; len > 0 && tries < 100; tries++) {
		n = write(log_fd, line, len);
		if (n > 0) {
			line += n;
			len -= (size_t)n;
		} else if (n == -1 && errno != EINTR && errno != EAGAIN)
			return;
		else if (n == -1 && errno == EAGAIN)
			usleep(1000);
	}
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char raw[LOG_LINE_MAX], clean[LOG_LINE_MAX], line[LOG_LINE_MAX + 32];
	int saved_errno = errno;
	int n;

	if (level > log_level || log_level == LOG_QUIET)
		return;
	vsnprintf(raw, sizeof(raw), fmt, ap);
	copy_printable(clean, raw, sizeof(clean));
	if (level >= LOG_DEBUG1)
		n = snprintf(line, sizeof(line),
		    "bastion-stdio: debug%d: %s\r\n",
		    (int)(level - LOG_DEBUG1) + 1, clean);
	else
		n = snprintf(line, sizeof(line), "bastion-stdio: %s\r\n",
		    clean);
	if (n > 0)
		write_line(line, strlen(line));
	errno = saved_errno;
}

/*
 * What the user must read to go on (the device-code sign-in), on stderr
 * whatever the level or LogFile says.
 */
void
log_tell_user(const char *fmt, ...)
{
	int saved_fd = log_fd;
	enum log_level saved_level = log_level;
	va_list ap;

	log_fd = 2;
	log_level = LOG_INFO;
	va_start(ap, fmt);
	log_vmsg(LOG_INFO, fmt, ap);
	va_end(ap);
	log_fd = saved_fd;
	log_level = saved_level;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}
