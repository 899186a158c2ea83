/*
 * bastion-stdio: an OpenSSH ProxyCommand that reaches an Azure VM through
 * Azure Bastion.  One process is one connection: get an ARM token, read
 * the Bastion from ARM, ask the Bastion for a session, relay stdin and
 * stdout over one WebSocket, and delete the session at the end.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "arm.h"
#include "cache.h"
#include "config.h"
#include "config_ssh.h"
#include "cred.h"
#include "doctor.h"
#include "http.h"
#include "log.h"
#include "login.h"
#include "misc.h"
#include "proxy.h"
#include "relay.h"
#include "route.h"
#include "session.h"
#include "target.h"
#include "tunnel.h"
#include "vm.h"


static volatile sig_atomic_t signalled;
static bool stdout_closed;

struct args {
	const char	*command;	/* a subcommand's name, or NULL */
	const char	*config_file;	/* -F; NULL: the default files */
	const char	*host;
	const char	*port;
	int		 verbosity;	/* -v count */
	int		 options_given;	/* -o count */
	int		 quiet;
};

static void
usage(void)
{
	fprintf(stderr,
	    "usage: bastion-stdio [-qvV] [-F configfile] [-o Keyword=Value] "
	    "HOST PORT\n"
	    "       bastion-stdio login [-qv] [-F configfile] "
	    "[-o Keyword=Value]\n"
	    "       bastion-stdio logout\n"
	    "       bastion-stdio doctor [-qv] [-F configfile] "
	    "[-o Keyword=Value] [HOST [PORT]]\n"
	    "       bastion-stdio config-ssh [-qv] [-F configfile] "
	    "[-o Keyword=Value]\n");
}

static void
version(void)
{
	fprintf(stderr, "bastion-stdio %s (libcurl %s, %s, libwebsockets "
	    "%s, cJSON %s)\n", BASTION_STDIO_VERSION,
	    curl_version_info(CURLVERSION_NOW)->version,
	    OpenSSL_version(OPENSSL_VERSION), lws_get_library_version(),
	    cJSON_Version());
}

/* Records the signal; the relay loop and libcurl's progress check act. */
static void
on_signal(int sig)
{
	signalled = sig;
	tunnel_wake();
}

static void
set_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

/* Options and operands; 0, -1 after -V, or EXIT_USAGE / EXIT_CONFIG. */
static int
parse_args(int argc, char **argv, struct args *a, struct options *o)
{
	int ch, r;

	memset(a, 0, sizeof(*a));
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		version();
		return -1;
	}
	if (argc > 1 && (strcmp(argv[1], "login") == 0 ||
	    strcmp(argv[1], "logout") == 0 ||
	    strcmp(argv[1], "doctor") == 0 ||
	    strcmp(argv[1], "config-ssh") == 0)) {
		a->command = argv[1];
		argv[1] = argv[0];	/* getopt's messages name the program */
		argv++;
		argc--;
	}
	while ((ch = getopt(argc, argv, "F:o:qvV")) != -1) {
		switch (ch) {
		case 'F':
			a->config_file = optarg;
			break;
		case 'o':
			if ((r = cfg_parse_option(o, optarg)) != 0)
				return r;
			a->options_given++;
			break;
		case 'q':
			a->quiet = 1;
			break;
		case 'v':
			a->verbosity++;
			break;
		case 'V':
			version();
			return -1;
		default:
			usage();
			return EXIT_USAGE;
		}
	}
	if (a->command != NULL && strcmp(a->command, "logout") == 0 &&
	    argc > 1) {
		usage();
		return EXIT_USAGE;
	}
	if (a->command != NULL && strcmp(a->command, "doctor") == 0 &&
	    argc - optind <= 2) {
		a->host = argc > optind ? argv[optind] : "";
		a->port = argc > optind + 1 ? argv[optind + 1] : "22";
		return 0;
	}
	if (a->command != NULL && argc == optind) {
		a->host = "";	/* for Host patterns: only "*" matches */
		return 0;
	}
	if (a->command != NULL || argc - optind != 2) {
		usage();
		return EXIT_USAGE;
	}
	a->host = argv[optind];
	a->port = argv[optind + 1];
	return 0;
}

/*
 * The system store as a hashed directory (SSL_CERT_DIR, else OpenSSL's
 * default), when it has hash links: it is read one certificate at a
 * time, as verification needs them, where loading the bundle parses
 * every CA on both legs (some 56 ms per connection with Debian's 144).
 * NULL: no such directory; the libraries' defaults then apply.
 */
static char *
trust_dir(void)
{
	const char *env = getenv(X509_get_default_cert_dir_env());
	const char *dir = env != NULL && *env != '\0' ? env :
	    X509_get_default_cert_dir();
	char *link = NULL;
	struct dirent *e;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return NULL;
	while (link == NULL && (e = readdir(d)) != NULL)
		if (strlen(e->d_name) == 10 && e->d_name[8] == '.' &&
		    strspn(e->d_name, "0123456789abcdef") == 8)
			link = e->d_name;
	closedir(d);
	if (link == NULL)
		return NULL;
	debug("trusting the CA directory %s", dir);
	return xstrdup(dir);
}

/* Reads every source of settings and sets up logging from them. */
static int
load_config(const struct args *a, struct options *o)
{
	enum log_level level;
	bool from_env = false;
	int r;

	if (a->config_file == NULL)
		r = cfg_read_default_files(o, a->host);
	else if (strcmp(a->config_file, "none") == 0)
		r = 0;
	else
		r = cfg_read_file(o, a->config_file, a->host);
	if (r != 0 || (r = cfg_finish(o)) != 0)
		return r;
	level = (enum log_level)o->log_level;
	if (a->quiet)
		level = LOG_QUIET;
	else if (a->verbosity > 0)	/* as in ssh: -v is DEBUG1 */
		level = a->verbosity >= 3 ? LOG_DEBUG3 :
		    (enum log_level)(LOG_DEBUG1 + a->verbosity - 1);
	log_init(level);
	if (o->log_file != NULL && log_open_file(o->log_file) == -1) {
		error("cannot open LogFile %s: %s", o->log_file,
		    strerror(errno));
		return EXIT_CONFIG;
	}
	if (o->ca_file == NULL && getenv("SSL_CERT_FILE") != NULL &&
	    *getenv("SSL_CERT_FILE") != '\0') {
		o->ca_file = xstrdup(getenv("SSL_CERT_FILE"));
		from_env = true;
	}
	if (o->ca_file != NULL && access(o->ca_file, R_OK) == -1) {
		error("cannot read %s %s: %s", from_env ? "SSL_CERT_FILE" :
		    "CAFile", o->ca_file, strerror(errno));
		return EXIT_CONFIG;
	}
	if (o->ca_file == NULL)
		o->ca_dir = trust_dir();
	return 0;
}

/*
 * Sessions and the tunnel, on the Bastion's dnsName or, for the Developer
 * SKU, on the data pod its front end names for this connection.
 */
static int
reach_target(struct http *h, const struct options *o, const struct route *rt,
    struct token *tok, struct vm_check *vc, bool *opened, char *why,
    size_t size)
{
	struct relay_hook hook = { vm_unreached, vc };
	const struct bastion *b = &rt->b;
	char *pod = NULL;
	int r;

	*opened = false;
	*why = '\0';
	vc->vm_id = rt->tg.resource_id;
	if (arm_is_developer(b) && (r = session_data_pod(h, b->dns_name,
	    rt->bastion_id, &rt->tg, tok, &pod)) != 0)
		return r;
	if (pod != NULL)
		verbose("Developer Bastion: data pod %s", pod);
	/* a VM that does not answer may be stopped: the hook looks */
	r = relay_run(h, o, pod != NULL ? pod : b->dns_name, pod != NULL,
	    &rt->tg, tok, rt->tg.ip == NULL ? &hook : NULL, &signalled, opened,
	    why, size);
	free(pod);
	return r;
}

/*
 * The first try of a route from the cache, which may be stale: why it
 * failed to reach the Bastion at all is kept, not reported, since
 * another try may follow.
 */
static int
first_try(struct http *h, const struct options *o, const struct route *rt,
    struct token *tok, struct vm_check *vc, bool *opened, char *why,
    size_t size)
{
	char held[700] = "";
	int r;

	if (rt->cached) {
		h->held = held;
		h->held_size = sizeof(held);
	}
	r = reach_target(h, o, rt, tok, vc, opened, why, size);
	h->held = NULL;
	if (r == 0 && held[0] != '\0')
		error("%s", held);	/* the session's DELETE, say */
	else if (r != 0 && why[0] == '\0')
		snprintf(why, size, "%s", held);
	return r;
}

/*
 * Resource Graph said, while finding the VM, that it is not running.
 * Its view can lag behind, so ARM is asked before anything is refused
 * or started; a VM found in the cache is left to the relay's hook, which
 * vc also tells about a start made here.
 */
static int
check_power(const struct route *rt, struct vm_check *vc)
{
	int r;

	if (rt->power == NULL || rt->tg.ip != NULL ||
	    strcasecmp(rt->power, "PowerState/running") == 0)
		return 0;
	verbose("Resource Graph says %s: asking ARM", rt->power);
	clock_gettime(CLOCK_MONOTONIC, &vc->since);
	r = vm_ensure_running(vc->h, vc->o, vc->t, rt->tg.resource_id, NULL,
	    &vc->started);
	return r;
}

/*
 * Whether a failure before the tunnel opened says the cached route is
 * stale: the Bastion's host cannot be reached, or it does not know the
 * VM (404).  Throttling and refusals say nothing about the route.
 */
static bool
looks_stale(const struct http *h, int r)
{
	return r == EXIT_NETWORK || (r == EXIT_REFUSED &&
	    h->last_status == 404);
}

/* Every step after the settings. */
static int
run(const struct args *a, const struct options *o)
{
	struct route rt;
	struct token tok;
	struct http h;
	struct timespec t0;
	struct vm_check vc = { &h, o, &tok, NULL, false, false, { 0, 0 } };
	char why[700];
	bool opened;
	int r, k;

	memset(&tok, 0, sizeof(tok));
	if ((r = route_check(o, a->host, a->port, &rt)) != 0 ||
	    (r = http_init(&h, o->ca_file, o->ca_dir, BASTION_STDIO_UA,
	    o->connect_timeout)) != 0)
		goto out;
	h.interrupted = &signalled;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((r = cred_get_arm_token(&h, o, &tok)) != 0)
		goto out_http;
	verbose("ARM token (%ld ms)", ms_since(&t0));
	if ((r = route_find(&h, o, &tok, a->host, &rt)) != 0)
		goto out_http;
	verbose("%s through Bastion %s at %s%s (%ld ms)", rt.tg.resource_id,
	    rt.bastion_id, rt.b.dns_name, rt.cached ? ", cached" : "",
	    ms_since(&t0));
	if ((r = check_power(&rt, &vc)) != 0)
		goto out_http;
	r = first_try(&h, o, &rt, &tok, &vc, &opened, why, sizeof(why));
	if (r != 0 && rt.cached && !opened && !signalled &&
	    looks_stale(&h, r)) {
		if ((k = route_refresh(&h, o, &tok, a->host, &rt)) >= 0) {
			verbose("%s", why);	/* what the stale route did */
			why[0] = '\0';
		}
		if (k == 0)
			r = reach_target(&h, o, &rt, &tok, &vc, &opened, why,
			    sizeof(why));
		else if (k > 0)
			r = k;
	} else if (r != 0 && rt.cached && !signalled && vc.unreached)
		/*
		 * XXX: the Bastion could not reach a running VM: the route may
		 * be stale, but what ssh sent went into that tunnel and
		 * cannot be sent again; the next connection looks it up anew.
		 */
		route_forget(o, &tok, a->host, &rt);
	/*
	 * A failure is reported even when a signal came after it: ssh
	 * sends SIGHUP as soon as it sees the EOF that the failure caused.
	 * One a signal caused has no text (the relay winds down quietly).
	 */
	if (r != 0 && why[0] != '\0')
		error("%s", why);
	verbose("done (%ld ms)", ms_since(&t0));
out_http:
	http_cleanup(&h);
out:
	token_free(&tok);
	route_free(&rt);
	return r;
}

/*
 * config-ssh, whose blocks name the same configuration file as this run
 * read, by a path that works from anywhere.
 */
static int
config_ssh(const struct args *a, const struct options *o)
{
	char *path = NULL;
	int r;

	if (stdout_closed) {
		error("config-ssh: standard output is closed");
		return EXIT_LOCAL_IO;
	}
	if (a->config_file != NULL && strcmp(a->config_file, "none") != 0 &&
	    ((path = realpath(a->config_file, NULL)) == NULL ||
	    strchr(path, '\'') != NULL)) {
		error("cannot name %s in the blocks: %s", a->config_file,
		    path == NULL ? strerror(errno) : "it holds a quote");
		free(path);
		return EXIT_CONFIG;
	}
	r = config_ssh_command(o, path != NULL ? path : a->config_file,
	    a->options_given > 0);
	free(path);
	return r;
}

int
main(int argc, char **argv)
{
	struct options o;
	struct args a;
	int r;

	/* config-ssh's output must not vanish into the /dev/null below */
	stdout_closed = fcntl(STDOUT_FILENO, F_GETFD) == -1;
	sanitise_stdfd();
	set_signals();
	cache_set_interrupt(&signalled);
	cfg_init(&o);
	if ((r = parse_args(argc, argv, &a, &o)) == 0 &&
	    (r = load_config(&a, &o)) == 0) {
		if (a.command == NULL)
			r = run(&a, &o);
		else if (strcmp(a.command, "login") == 0)
			r = login_command(&o);
		else if (strcmp(a.command, "doctor") == 0)
			r = doctor_command(&o, *a.host ? a.host : NULL,
			    a.port);
		else if (strcmp(a.command, "config-ssh") == 0)
			r = config_ssh(&a, &o);
		else
			r = logout_command();
	}
	cfg_free(&o);
	if (r == -1)
		return EXIT_OK;
	if (signalled && (r == 0 || r == EXIT_NETWORK))
		return signalled == SIGHUP ? EXIT_OK : 128 + signalled;
	return r;
}
