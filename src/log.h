/*
 * Diagnostics for bastion-stdio.  stdout belongs to the tunnel, so every
 * message goes to stderr or to the LogFile, one write(2) per line.
 */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>

/* The OpenSSH levels, in increasing verbosity. */
enum log_level {
	LOG_QUIET,
	LOG_FATAL,
	LOG_ERROR,
	LOG_INFO,
	LOG_VERBOSE,
	LOG_DEBUG1,
	LOG_DEBUG2,
	LOG_DEBUG3
};

#define LOG_FORMAT(a, b) __attribute__((format(printf, a, b)))

void	log_init(enum log_level level);
int	log_open_file(const char *path);
enum log_level	log_get_level(void);
int	log_level_parse(const char *name, enum log_level *level);
const char *log_level_name(enum log_level level);

void	log_msg(enum log_level level, const char *fmt, ...) LOG_FORMAT(2, 3);
void	log_tell_user(const char *fmt, ...) LOG_FORMAT(1, 2);
void	log_vmsg(enum log_level level, const char *fmt, va_list ap)
	    LOG_FORMAT(2, 0);

#define error(...)	log_msg(LOG_ERROR, __VA_ARGS__)
#define logit(...)	log_msg(LOG_INFO, __VA_ARGS__)
#define verbose(...)	log_msg(LOG_VERBOSE, __VA_ARGS__)
#define debug(...)	log_msg(LOG_DEBUG1, __VA_ARGS__)
#define debug2(...)	log_msg(LOG_DEBUG2, __VA_ARGS__)
#define debug3(...)	log_msg(LOG_DEBUG3, __VA_ARGS__)

#endif
