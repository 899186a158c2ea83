/*
 * The ssh_config-style configuration: "Keyword value" or "Keyword=value"
 * lines, case-insensitive keywords, '#' comments and Host blocks whose
 * patterns are matched against the HOST operand.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "match.h"
#include "misc.h"

#define CFG_LINE_MAX	4096

enum kw_type { KW_STRING, KW_PATH, KW_NUMBER, KW_LOGLEVEL, KW_CLOUD,
    KW_FLAG, KW_CREDENTIAL };

struct keyword {
	const char	*name;
	enum kw_type	 type;
	size_t		 offset;
	long		 min, max;	/* for KW_NUMBER */
};

#define FIELD(f)	offsetof(struct options, f), 0, 0
#define STR(f)		KW_STRING, FIELD(f)
#define NUM(f, lo, hi)	KW_NUMBER, offsetof(struct options, f), lo, hi

static const struct keyword keywords[] = {
	{ "ArmCacheTime",		NUM(arm_cache_time, 0, 86400) },
	{ "ArmEndpoint",		STR(arm_endpoint) },
	{ "AuthorityHost",		STR(authority_host) },
	{ "Bastion",			STR(bastion) },
	{ "CAFile",	KW_PATH, FIELD(ca_file) },
	{ "Cloud",	KW_CLOUD, FIELD(cloud_name) },
	{ "ConnectTimeout",		NUM(connect_timeout, 1, 3600) },
	{ "Credential",	KW_CREDENTIAL, FIELD(credential) },
	{ "DeviceCode",	KW_FLAG, FIELD(device_code) },
	{ "FrameSize",			NUM(frame_size, 512, 65536) },
	{ "LogFile",	KW_PATH, FIELD(log_file) },
	{ "LogLevel",	KW_LOGLEVEL, FIELD(log_level) },
	{ "PingInterval",		NUM(ping_interval, 0, 3600) },
	{ "LoginClientId",		STR(login_client_id) },
	{ "ManagedIdentityClientId",	STR(mi_client_id) },
	{ "ManagedIdentityObjectId",	STR(mi_object_id) },
	{ "ManagedIdentityResourceId",	STR(mi_resource_id) },
	{ "StartTimeout",		NUM(start_timeout, 10, 3600) },
	{ "StartVm",	KW_FLAG, FIELD(start_vm) },
	{ "TargetResourceGroup",	STR(target_resource_group) },
	{ "TargetResourceId",		STR(target_resource_id) },
	{ "TargetSubscription",		STR(target_subscription) },
	{ "Tenant",			STR(tenant) },
};

void
cfg_init(struct options *o)
{
	memset(o, 0, sizeof(*o));
	o->connect_timeout = CFG_UNSET;
	o->frame_size = CFG_UNSET;
	o->ping_interval = CFG_UNSET;
	o->arm_cache_time = CFG_UNSET;
	o->log_level = CFG_UNSET;
	o->device_code = CFG_UNSET;
	o->start_vm = CFG_UNSET;
	o->start_timeout = CFG_UNSET;
}

void
cfg_free(struct options *o)
{
	size_t i;

	free(o->ca_dir);
	free(o->files_read);
	free(o->hosts_matched);
	for (i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++) {
		if (keywords[i].type == KW_STRING ||
		    keywords[i].type == KW_PATH ||
		    keywords[i].type == KW_CLOUD ||
		    keywords[i].type == KW_CREDENTIAL)
			free(*(char **)((char *)o + keywords[i].offset));
	}
	cfg_init(o);
}

static const struct keyword *
find_keyword(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (strcasecmp(keywords[i].name, name) == 0)
			return &keywords[i];
	return NULL;
}

#define CREDENTIAL_NAMES	"environment, workload-identity, " \
	"managed-identity, login, azure-cli, device-code"

static bool
credential_name(const char *value)
{
	static const char *const names[] = { "environment",
	    "workload-identity", "managed-identity", "login", "azure-cli",
	    "device-code" };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(value, names[i]) == 0)
			return true;
	return false;
}

/* "~/x" is in the home directory, as in ssh_config. */
static char *
expand_tilde(const char *path)
{
	const char *home = getenv("HOME");

	if (strncmp(path, "~/", 2) == 0 && home != NULL && *home != '\0')
		return xasprintf("%s%s", home, path + 1);
	return xstrdup(path);
}

/* Stores a value unless one was obtained before; 0 or EXIT_CONFIG. */
static int
store(const struct keyword *kw, struct options *o, const char *value,
    const char *where)
{
	void *field = (char *)o + kw->offset;
	enum log_level level;
	long n;

	switch (kw->type) {
	case KW_NUMBER:
		if (parse_number(value, kw->min, kw->max, &n) == -1) {
			error("%s: %s must be a number from %ld to %ld, "
			    "not \"%s\"", where, kw->name, kw->min, kw->max,
			    value);
			return EXIT_CONFIG;
		}
		if (*(long *)field == CFG_UNSET)
			*(long *)field = n;
		return 0;
	case KW_LOGLEVEL:
		if (log_level_parse(value, &level) == -1) {
			error("%s: unknown LogLevel \"%s\" (QUIET, FATAL, "
			    "ERROR, INFO, VERBOSE, DEBUG1, DEBUG2, DEBUG3)",
			    where, value);
			return EXIT_CONFIG;
		}
		if (*(long *)field == CFG_UNSET)
			*(long *)field = (long)level;
		return 0;
	case KW_FLAG:
		if (strcasecmp(value, "yes") != 0 &&
		    strcasecmp(value, "no") != 0) {
			error("%s: %s must be yes or no, not \"%s\"", where,
			    kw->name, value);
			return EXIT_CONFIG;
		}
		if (*(long *)field == CFG_UNSET)
			*(long *)field = strcasecmp(value, "yes") == 0;
		return 0;
	case KW_CREDENTIAL:
		if (!credential_name(value)) {
			error("%s: unknown Credential \"%s\" (%s)", where,
			    value, CREDENTIAL_NAMES);
			return EXIT_CONFIG;
		}
		if (*(char **)field == NULL)
			*(char **)field = xstrdup(value);
		return 0;
	case KW_CLOUD:
		if (cloud_find(value) == NULL) {
			error("%s: unknown Cloud \"%s\" (AzureCloud, "
			    "AzureUSGovernment, AzureChinaCloud)", where,
			    value);
			return EXIT_CONFIG;
		}
		/* FALLTHROUGH */
	case KW_STRING:
		if (*(char **)field == NULL)
			*(char **)field = xstrdup(value);
		return 0;
	case KW_PATH:
		if (*(char **)field == NULL)
			*(char **)field = expand_tilde(value);
		return 0;
	}
	return EXIT_CONFIG;
}

int
cfg_set(struct options *o, const char *keyword, const char *value,
    const char *where)
{
	const struct keyword *kw;

	if ((kw = find_keyword(keyword)) == NULL) {
		error("%s: unknown keyword \"%s\"", where, keyword);
		return EXIT_CONFIG;
	}
	if (*value == '\0' || str_has_ctrl(value)) {
		error("%s: %s needs a value", where, kw->name);
		return EXIT_CONFIG;
	}
	return store(kw, o, value, where);
}

/*
 * Splits "Keyword value", "Keyword=value" or "Keyword = value" in place.
 * A value in double quotes may hold spaces.  Returns -1 on bad syntax.
 */
static int
split_line(char *line, char **keyword, char **value)
{
	char *p, *end;

	end = line + strlen(line);
	while (end > line && (end[-1] == ' ' || end[-1] == '\t' ||
	    end[-1] == '\r' || end[-1] == '\n'))
		*--end = '\0';
	line += strspn(line, " \t");
	*keyword = line;
	line += strcspn(line, " \t=");
	p = line + strspn(line, " \t");
	if (*p == '=')
		p++;
	*line = '\0';
	p += strspn(p, " \t");
	if (*p == '"') {
		/* quoted: up to the closing quote; only a comment may follow */
		if ((end = strchr(p + 1, '"')) == NULL)
			return -1;
		*end++ = '\0';
		end += strspn(end, " \t");
		if (*end != '\0' && *end != '#')
			return -1;
		p++;
	} else {
		/* a '#' that starts a word starts a comment, as in ssh */
		for (end = p; *end != '\0'; end++)
			if (*end == '#' && (end == p || end[-1] == ' ' ||
			    end[-1] == '\t'))
				break;
		*end = '\0';
		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
	}
	*value = p;
	return **keyword == '\0' ? -1 : 0;
}

/* A -o Keyword=Value argument. */
int
cfg_parse_option(struct options *o, const char *arg)
{
	char line[CFG_LINE_MAX], *keyword, *value;

	if (strlen(arg) >= sizeof(line) ||
	    (snprintf(line, sizeof(line), "%s", arg), 0) ||
	    split_line(line, &keyword, &value) == -1) {
		error("-o %.100s: expected Keyword=Value", arg);
		return EXIT_CONFIG;
	}
	if (strcasecmp(keyword, "Host") == 0) {
		error("-o: Host is only allowed in a configuration file");
		return EXIT_CONFIG;
	}
	return cfg_set(o, keyword, value, "command line");
}

/* Appends to a space-separated record of what the configuration used. */
static void
note(char **record, const char *what)
{
	char *s = xasprintf("%s%s%s", *record ? *record : "",
	    *record ? ", " : "", what);

	free(*record);
	*record = s;
}

/*
 * Handles one line of a file.  *active tracks whether the current Host
 * block applies; values of blocks that do not go to the scratch struct
 * ignored, so that they are still checked.
 */
static int
parse_file_line(struct options *o, struct options *ignored, char *line,
    const char *host, bool *active, const char *where)
{
	char *keyword, *value;

	line += strspn(line, " \t\r\n");
	if (*line == '\0' || *line == '#')
		return 0;
	if (split_line(line, &keyword, &value) == -1) {
		error("%s: cannot parse this line", where);
		return EXIT_CONFIG;
	}
	if (strcasecmp(keyword, "Host") == 0) {
		if (*value == '\0') {
			error("%s: Host needs at least one pattern", where);
			return EXIT_CONFIG;
		}
		*active = match_host_patterns(host, value) == 1;
		if (*active)
			note(&o->hosts_matched, where);
		return 0;
	}
	if (strcasecmp(keyword, "Match") == 0) {
		error("%s: Match blocks are not supported; use Host", where);
		return EXIT_CONFIG;
	}
	if (strcasecmp(keyword, "Include") == 0) {
		error("%s: Include is not supported; put the settings in this "
		    "file", where);
		return EXIT_CONFIG;
	}
	return cfg_set(*active ? o : ignored, keyword, value, where);
}

/*
 * Reads a configuration file.  Every line is checked, even in blocks that
 * do not apply, so that a typo is found before the host that needs it.
 */
int
cfg_read_file(struct options *o, const char *path, const char *host)
{
	FILE *f;
	int r;

	if ((f = fopen(path, "re")) == NULL) {
		error("cannot open configuration file %s: %s", path,
		    strerror(errno));
		return EXIT_CONFIG;
	}
	r = cfg_read_stream(o, f, path, host);
	fclose(f);
	note(&o->files_read, path);
	return r;
}

/* The configuration in f, named path in messages. */
int
cfg_read_stream(struct options *o, FILE *f, const char *path,
    const char *host)
{
	struct options ignored;
	char line[CFG_LINE_MAX], where[512];
	bool active = true;
	int linenum = 0, r = 0;

	cfg_init(&ignored);
	while (r == 0 && fgets(line, sizeof(line), f) != NULL) {
		linenum++;
		snprintf(where, sizeof(where), "%s line %d", path, linenum);
		if (strlen(line) == sizeof(line) - 1 &&
		    line[sizeof(line) - 2] != '\n') {
			error("%s: line too long", where);
			r = EXIT_CONFIG;
			break;
		}
		/* a UTF-8 byte order mark, as some editors write */
		if (linenum == 1 && strncmp(line, "\xef\xbb\xbf", 3) == 0)
			memmove(line, line + 3, strlen(line + 3) + 1);
		r = parse_file_line(o, &ignored, line, host, &active, where);
	}
	if (r == 0 && ferror(f)) {
		error("cannot read configuration file %s", path);
		r = EXIT_CONFIG;
	}
	cfg_free(&ignored);
	return r;
}

/*
 * The user's file, then the system-wide one, as ssh reads ~/.ssh/config
 * then /etc/ssh/ssh_config.  A missing file is not an error.
 */
int
cfg_read_default_files(struct options *o, const char *host)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	const char *system_file = "/etc/bastion-stdio/config";
	char *user_file = NULL;
	int r = 0;

	if (xdg != NULL && *xdg == '/')
		user_file = xasprintf("%s/bastion-stdio/config", xdg);
	else if (home != NULL && *home != '\0')
		user_file = xasprintf("%s/.config/bastion-stdio/config", home);
	if (user_file != NULL && access(user_file, F_OK) == 0)
		r = cfg_read_file(o, user_file, host);
	if (r == 0 && access(system_file, F_OK) == 0)
		r = cfg_read_file(o, system_file, host);
	free(user_file);
	return r;
}

/* Checks that a URL setting is https and has no path, query or user. */
static int
check_base_url(const char *keyword, const char *url)
{
	bool https = strncasecmp(url, "https://", 8) == 0;
	const char *host = https ? url + 8 : url;
	const char *path = host + strcspn(host, "/");

	path += strspn(path, "/");	/* trailing slashes are fine */
	if (!https || *host == '\0' || *host == '/' ||
	    strpbrk(host, "?#@ ") != NULL || *path != '\0') {
		error("%s must be an https:// URL with no path, query or user, "
		    "not \"%.100s\"", keyword, url);
		return EXIT_CONFIG;
	}
	return 0;
}

/* Drops trailing slashes so that paths can be appended with one '/'. */
static void
trim_slashes(char *url)
{
	size_t n = strlen(url);

	while (n > strlen("https://") && url[n - 1] == '/')
		url[--n] = '\0';
}

/*
 * Applies the environment and the defaults once every source was read,
 * and checks what only makes sense as a whole.
 */
int
cfg_finish(struct options *o)
{
	const char *env_authority = getenv("AZURE_AUTHORITY_HOST");
	int r;

	if (env_authority != NULL && *env_authority != '\0' &&
	    (r = cfg_set(o, "AuthorityHost", env_authority,
	    "AZURE_AUTHORITY_HOST")) != 0)
		return r;
	if (o->cloud_name == NULL)
		o->cloud_name = xstrdup("AzureCloud");
	o->cloud = cloud_find(o->cloud_name);
	if (o->arm_endpoint == NULL)
		o->arm_endpoint = xstrdup(o->cloud->arm_endpoint);
	if (o->authority_host == NULL)
		o->authority_host = xstrdup(o->cloud->authority_host);
	if ((r = check_base_url("ArmEndpoint", o->arm_endpoint)) != 0 ||
	    (r = check_base_url("AuthorityHost", o->authority_host)) != 0)
		return r;
	trim_slashes(o->arm_endpoint);
	trim_slashes(o->authority_host);
	if (o->connect_timeout == CFG_UNSET)
		o->connect_timeout = 30;
	if (o->frame_size == CFG_UNSET)
		o->frame_size = 4096;
	if (o->ping_interval == CFG_UNSET)
		o->ping_interval = 30;
	if (o->arm_cache_time == CFG_UNSET)
		o->arm_cache_time = 600;
	if (o->log_level == CFG_UNSET)
		o->log_level = LOG_INFO;
	if (o->device_code == CFG_UNSET)
		o->device_code = 0;
	if (o->start_vm == CFG_UNSET)
		o->start_vm = 0;
	if (o->start_timeout == CFG_UNSET)
		o->start_timeout = 300;
	return 0;
}

