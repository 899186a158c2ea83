/*
 * The power state of the target VM or uniform scale-set instance, and
 * its start when StartVm allows it.  Asked only after the Bastion could
 * not reach the target, or with a state the caller already knows, so
 * that a connection to a running VM costs no ARM request.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "arm.h"
#include "log.h"
#include "misc.h"
#include "proxy.h"
#include "target.h"
#include "vm.h"

/* The compute API version the Azure CLI reads and starts VMs with. */
#define VM_API		"2024-07-01"
/* Seconds between looks at a start when ARM sends no Retry-After. */
#define VM_POLL		5
/* Seconds between sessions while a started VM's guest boots. */
#define VM_BOOT_POLL	3
#define STATE_MAX	32

/* A start in progress. */
struct start_op {
	const char	*name;		/* for messages */
	char		*url;		/* what to poll; NULL: started */
	bool		 async;		/* Azure-AsyncOperation, not Location */
	long		 wait;		/* the last Retry-After, -1: none */
	struct timespec	 t0;
};

/* The VM's name in messages: "web", or "ss/3" for a scale-set instance. */
static char *
vm_name(const char *vm_id)
{
	struct resource_id rid;
	char *name;

	if (resource_id_parse(vm_id, &rid) == -1)
		name = xstrdup(vm_id);
	else if (rid.child_name != NULL)
		name = xasprintf("%s/%s", rid.name, rid.child_name);
	else
		name = xstrdup(rid.name);
	resource_id_free(&rid);
	return name;
}

/* Copies a state word ("deallocated"), lower-cased; -1 if it is not one. */
static int
copy_state(const char *s, char *state, size_t size)
{
	size_t i, n = strspn(s, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ");

	if (n == 0 || s[n] != '\0' || n >= size || n >= STATE_MAX)
		return -1;
	for (i = 0; i <= n; i++)
		state[i] = (char)tolower((unsigned char)s[i]);
	return 0;
}

/*
 * The PowerState/ entry of an instance view's statuses, without its
 * prefix: 0, or -1 when there is none.
 */
int
vm_parse_power_state(const char *body, char *state, size_t size)
{
	cJSON *root = cJSON_Parse(body);
	const cJSON *statuses, *item, *code;
	int r = -1;

	statuses = cJSON_GetObjectItemCaseSensitive(root, "statuses");
	if (cJSON_IsArray(statuses)) {
		cJSON_ArrayForEach(item, statuses) {
			code = cJSON_GetObjectItemCaseSensitive(item, "code");
			if (cJSON_IsString(code) && strncasecmp(
			    code->valuestring, "PowerState/", 11) == 0) {
				r = copy_state(code->valuestring + 11, state,
				    size);
				break;
			}
		}
	}
	cJSON_Delete(root);
	return r;
}

/* The status of an Azure-AsyncOperation answer; 0 or -1. */
int
vm_parse_operation(const char *body, char *status, size_t size)
{
	cJSON *root = cJSON_Parse(body);
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "status");
	int r = -1;

	if (cJSON_IsString(s))
		r = copy_state(s->valuestring, status, size);
	cJSON_Delete(root);
	return r;
}

/*
 * Whether a URL from a response header may receive the ARM token: https,
 * no user part, on the ArmEndpoint's host and port.
 */
bool
vm_url_on_arm(const char *url, const char *arm_endpoint)
{
	char host[256], arm_host[256];
	int port, arm_port;

	if (strncasecmp(url, "https://", 8) != 0 || str_has_ctrl(url) ||
	    strpbrk(url, " \\") != NULL ||
	    memchr(url + 8, '@', strcspn(url + 8, "/?#")) != NULL)
		return false;
	if (url_host(url, host, sizeof(host), &port, 443) == -1 ||
	    url_host(arm_endpoint, arm_host, sizeof(arm_host), &arm_port,
	    443) == -1)
		return false;
	return strcasecmp(host, arm_host) == 0 && port == arm_port;
}

/* GET {id}/instanceView; 0 with the state, or an exit status. */
static int
read_state(struct http *h, const struct options *o, const struct token *t,
    const char *vm_id, const char *name, char *state, size_t size)
{
	struct http_response rs;
	char *url = arm_url(o, vm_id, "/instanceView", VM_API);
	char *what;
	int r;

	r = arm_request(h, o, t, "GET", url, NULL, &rs);
	free(url);
	if (r == 0 && rs.status != 200) {
		what = xasprintf("read the power state of VM %s", name);
		r = arm_report(&rs, what);
		free(what);
	} else if (r == 0 && vm_parse_power_state(buf_str(&rs.body), state,
	    size) == -1) {
		error("ARM answered for VM %s without a power state", name);
		r = EXIT_PROTOCOL;
	}
	http_response_free(&rs);
	return r;
}

/* Picks the URL a 202 says to poll, the operation's status first. */
static int
poll_url(const struct options *o, struct http_response *rs,
    struct start_op *op)
{
	const char *a = rs->async_operation, *l = rs->location;

	if (a != NULL && vm_url_on_arm(a, o->arm_endpoint)) {
		op->url = xstrdup(a);
		op->async = true;
	} else if (l != NULL && vm_url_on_arm(l, o->arm_endpoint))
		op->url = xstrdup(l);
	else {
		/* the token must not go anywhere else: do not poll it */
		error("cannot follow the start of VM %s: ARM named no "
		    "operation URL on %s", op->name, o->arm_endpoint);
		return EXIT_PROTOCOL;
	}
	op->wait = rs->retry_after;
	return 0;
}

/* POST {id}/start: 200 or 204 is done, 202 leaves an operation to poll. */
static int
post_start(struct http *h, const struct options *o, const struct token *t,
    const char *vm_id, struct start_op *op)
{
	struct http_response rs;
	char *url = arm_url(o, vm_id, "/start", VM_API);
	char *what;
	int r;

	/* an empty body: ARM wants a Content-Length on a POST */
	r = arm_request(h, o, t, "POST", url, "", &rs);
	free(url);
	if (r == 0 && rs.status == 202)
		r = poll_url(o, &rs, op);
	else if (r == 0 && rs.status != 200 && rs.status != 204) {
		what = xasprintf("start VM %s", op->name);
		r = arm_report(&rs, what);
		free(what);
	}
	http_response_free(&rs);
	return r;
}

/* A finished operation's answer: 0 when it succeeded. */
static int
check_outcome(struct http_response *rs, struct start_op *op, bool *done)
{
	char status[STATE_MAX], why[512], *what;
	int r = 0;

	if (!op->async && rs->status == 202)
		return 0;
	if (!op->async && (rs->status == 200 || rs->status == 204))
		*done = true;
	else if (rs->status != 200) {
		what = xasprintf("start VM %s", op->name);
		r = arm_report(rs, what);
		free(what);
	} else if (vm_parse_operation(buf_str(&rs->body), status,
	    sizeof(status)) == -1) {
		error("ARM answered for the start of VM %s without a status",
		    op->name);
		r = EXIT_PROTOCOL;
	} else if (strcmp(status, "succeeded") == 0)
		*done = true;
	else if (strcmp(status, "failed") == 0 ||
	    strcmp(status, "canceled") == 0) {
		arm_describe_error(buf_str(&rs->body), why, sizeof(why));
		error("cannot start VM %s: the start %s: %s", op->name, status,
		    why);
		r = EXIT_REFUSED;
	}
	return r;
}

/* One look at the operation; 0 (*done says if it ended) or a status. */
static int
poll_once(struct http *h, const struct options *o, const struct token *t,
    struct start_op *op, bool *done)
{
	struct http_response rs;
	int r;

	*done = false;
	if ((r = arm_request(h, o, t, "GET", op->url, NULL, &rs)) == 0) {
		/* XXX: a new Location on a 202 is not followed */
		op->wait = rs.retry_after;
		r = check_outcome(&rs, op, done);
	}
	http_response_free(&rs);
	return r;
}

/*
 * Sleeps wait seconds (VM_POLL when ARM did not say, at least 1), within
 * StartTimeout; -1 when the time is up or a signal came.
 */
static int
pause_start(struct http *h, const struct options *o, struct start_op *op,
    long wait)
{
	long left = o->start_timeout - ms_since(&op->t0) / 1000;

	if (wait < 0)
		wait = VM_POLL;
	if (left <= 0)
		return -1;
	sleep((unsigned)(wait < 1 ? 1 : wait > left ? left : wait));
	return h->interrupted != NULL && *h->interrupted ? -1 : 0;
}

/* Says why the wait ended: StartTimeout, or a signal (said by main). */
static int
timed_out(struct http *h, const struct options *o, const char *name)
{
	if (h->interrupted != NULL && *h->interrupted)
		debug("interrupted while VM %s starts", name);
	else
		error("VM %s is not running after %ld s (StartTimeout)", name,
		    o->start_timeout);
	return EXIT_NETWORK;
}

/* Waits until the instance view says running: it may lag the start. */
static int
wait_running(struct http *h, const struct options *o, const struct token *t,
    const char *vm_id, struct start_op *op)
{
	char state[STATE_MAX];
	int r;

	for (;;) {
		if ((r = read_state(h, o, t, vm_id, op->name, state,
		    sizeof(state))) != 0)
			return r;
		if (strcmp(state, "running") == 0)
			return 0;
		if (strcmp(state, "starting") != 0) {
			error("cannot start VM %s: it is %s after its start",
			    op->name, state);
			return EXIT_REFUSED;
		}
		if (pause_start(h, o, op, VM_POLL) != 0)
			return timed_out(h, o, op->name);
	}
}

/*
 * Starts the VM and waits, within StartTimeout, until it runs.
 * XXX: the ARM token is not renewed on the way; one that expires during
 * a StartTimeout of many minutes fails the polls with status 4.
 */
static int
start_vm(struct http *h, const struct options *o, const struct token *t,
    const char *vm_id, const char *name, const char *state)
{
	struct start_op op = { name, NULL, false, -1, { 0, 0 } };
	bool done = false;
	int r;

	logit("starting VM %s (%s)...", name, state);
	clock_gettime(CLOCK_MONOTONIC, &op.t0);
	r = post_start(h, o, t, vm_id, &op);
	while (r == 0 && op.url != NULL && !done) {
		if (pause_start(h, o, &op, op.wait) != 0)
			r = timed_out(h, o, name);
		else
			r = poll_once(h, o, t, &op, &done);
	}
	if (r == 0)
		r = wait_running(h, o, t, vm_id, &op);
	if (r == 0)
		logit("VM %s is running (%ld s)", name,
		    ms_since(&op.t0) / 1000);
	free(op.url);
	return r;
}

/* A VM that is not running and will not be started: say how to start it. */
static int
refuse(const char *vm_id, const char *name, const char *state)
{
	struct resource_id rid;

	memset(&rid, 0, sizeof(rid));
	if (strcmp(state, "starting") == 0)
		error("VM %s is starting; try again in a moment, or set "
		    "StartVm yes to wait for it", name);
	else if (strcmp(state, "stopping") == 0 ||
	    strcmp(state, "deallocating") == 0)
		error("VM %s is %s; start it once it has stopped", name,
		    state);
	else if (strcmp(state, "stopped") != 0 &&
	    strcmp(state, "deallocated") != 0)
		error("VM %s is in power state %s, not running", name, state);
	else if (resource_id_parse(vm_id, &rid) == 0 && rid.child_name)
		error("VM %s is %s: start it with `az vmss start -g %s -n %s "
		    "--instance-ids %s` or set StartVm yes", name, state,
		    rid.resource_group, rid.name, rid.child_name);
	else
		error("VM %s is %s: start it with `az vm start --ids %s` or "
		    "set StartVm yes", name, state, vm_id);
	resource_id_free(&rid);
	return EXIT_REFUSED;
}

/*
 * Makes sure the VM runs: reads its power state, unless known_state (as
 * Resource Graph's powerState, "PowerState/..." or bare) says it, and
 * starts it if it is stopped or deallocated and StartVm is yes.
 * Returns 0 when it runs (*started: we started it), or an exit status
 * after reporting.
 */
int
vm_ensure_running(struct http *h, const struct options *o,
    const struct token *t, const char *vm_id, const char *known_state,
    bool *started)
{
	char state[STATE_MAX], *name = vm_name(vm_id);
	int r = 0;

	*started = false;
	if (known_state != NULL && strncasecmp(known_state, "PowerState/",
	    11) == 0)
		known_state += 11;
	if (known_state == NULL ||
	    copy_state(known_state, state, sizeof(state)) == -1)
		r = read_state(h, o, t, vm_id, name, state, sizeof(state));
	if (r != 0 || strcmp(state, "running") == 0)
		goto out;
	if (!o->start_vm || (strcmp(state, "stopped") != 0 &&
	    strcmp(state, "deallocated") != 0 &&
	    strcmp(state, "starting") != 0))
		r = refuse(vm_id, name, state);
	else if ((r = start_vm(h, o, t, vm_id, name, state)) == 0)
		*started = true;
out:
	free(name);
	return r;
}

/*
 * The VM we started runs, but its guest may still boot: another session
 * in a moment, until StartTimeout has passed since the start.
 */
static int
booting(struct vm_check *c, const char *name)
{
	long left = c->o->start_timeout - ms_since(&c->since) / 1000;

	if (left <= 0) {
		error("VM %s runs but did not accept the connection within "
		    "%ld s of its start (StartTimeout)", name,
		    c->o->start_timeout);
		return EXIT_NETWORK;
	}
	verbose("VM %s does not answer yet; trying again in %d s", name,
	    VM_BOOT_POLL);
	sleep(left < VM_BOOT_POLL ? (unsigned)left : VM_BOOT_POLL);
	if (c->h->interrupted != NULL && *c->h->interrupted)
		return EXIT_NETWORK;
	return 0;
}

/*
 * The relay's hook (struct relay_hook): the Bastion could not reach the
 * target.  A VM that runs gets -1 (the Bastion's word stands), one that
 * does not is started or refused as vm_ensure_running() decides.
 */
int
vm_unreached(void *arg)
{
	struct vm_check *c = arg;
	char state[STATE_MAX], *name = vm_name(c->vm_id);
	bool started;
	int r;

	c->unreached = true;
	if (c->started)
		r = booting(c, name);
	else if (read_state(c->h, c->o, c->t, c->vm_id, name, state,
	    sizeof(state)) != 0 || strcmp(state, "running") == 0)
		r = -1;		/* the Bastion's close says the rest */
	else {
		clock_gettime(CLOCK_MONOTONIC, &c->since);
		r = vm_ensure_running(c->h, c->o, c->t, c->vm_id, state,
		    &started);
		c->started = r == 0 && started;
	}
	free(name);
	return r;
}
