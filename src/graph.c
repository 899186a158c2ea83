/*
 * Azure Resource Graph: one KQL query over every subscription the
 * credential can see (or one of them), in a single request per page.
 * Listing VMs, NICs and networks through ARM itself would take a request
 * per subscription and per resource type.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arm.h"
#include "graph.h"
#include "log.h"
#include "misc.h"

#define GRAPH_API	"2021-03-01"
#define GRAPH_PATH	"/providers/Microsoft.ResourceGraph/resources"

/*
 * A bound on pages: discovery's queries select a handful of rows, and
 * config-ssh lists what one credential sees.  Beyond it the answer
 * would be partial, which for a choice is worse than none.
 */
#define GRAPH_PAGES_MAX	50

/* KQL's single-quoted string, with ' and \ escaped. */
void
graph_quote(struct buf *q, const char *s)
{
	buf_puts(q, "'");
	for (; *s != '\0'; s++) {
		if (*s == '\'' || *s == '\\')
			buf_puts(q, "\\");
		buf_put(q, s, 1);
	}
	buf_puts(q, "'");
}

static char *
request_body(const char *query, const char *subscription,
    const char *skip_token)
{
	cJSON *root = cJSON_CreateObject(), *subs, *opts;
	char *text;

	cJSON_AddStringToObject(root, "query", query);
	if (subscription != NULL) {
		subs = cJSON_AddArrayToObject(root, "subscriptions");
		cJSON_AddItemToArray(subs, cJSON_CreateString(subscription));
	}
	opts = cJSON_AddObjectToObject(root, "options");
	cJSON_AddStringToObject(opts, "resultFormat", "objectArray");
	if (skip_token != NULL)
		cJSON_AddStringToObject(opts, "$skipToken", skip_token);
	text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return text;
}

/*
 * Moves one page's rows to rows; *next gets its $skipToken or NULL.
 * 0, or -1 when the answer is not a Resource Graph page.
 */
int
graph_take_page(const char *body, cJSON *rows, char **next)
{
	cJSON *root = cJSON_Parse(body), *data, *row;
	const cJSON *skip;

	*next = NULL;
	data = cJSON_GetObjectItemCaseSensitive(root, "data");
	if (!cJSON_IsArray(data)) {
		cJSON_Delete(root);
		return -1;
	}
	while ((row = cJSON_DetachItemFromArray(data, 0)) != NULL)
		cJSON_AddItemToArray(rows, row);
	skip = cJSON_GetObjectItemCaseSensitive(root, "$skipToken");
	if (cJSON_IsString(skip) && *skip->valuestring != '\0')
		*next = xstrdup(skip->valuestring);
	cJSON_Delete(root);
	return 0;
}

/*
 * Runs query over subscription (NULL: all the token sees) and returns
 * every row of every page in *rows, which the caller deletes.  why names
 * the lookup in messages.  0, or an exit status after reporting.
 */
int
graph_query(struct http *h, const struct options *o, const struct token *t,
    const char *subscription, const char *query, const char *why,
    cJSON **rows)
{
	struct http_response rs;
	char *url, *body, *next = NULL, *what;
	int r = 0, page;

	*rows = cJSON_CreateArray();
	url = xasprintf("%s%s?api-version=%s", o->arm_endpoint, GRAPH_PATH,
	    GRAPH_API);
	debug2("Resource Graph: %s", query);
	for (page = 0; page < GRAPH_PAGES_MAX && r == 0; page++) {
		body = request_body(query, subscription, next);
		free(next);
		next = NULL;
		r = arm_request(h, o, t, "POST", url, body, &rs);
		free(body);
		if (r == 0 && rs.status != 200) {
			what = xasprintf("%s with Resource Graph", why);
			r = arm_report(&rs, what);
			free(what);
		} else if (r == 0 && graph_take_page(buf_str(&rs.body),
		    *rows, &next) == -1) {
			error("Resource Graph answered without rows "
			    "(to %s)", why);
			r = EXIT_PROTOCOL;
		}
		http_response_free(&rs);
		if (next == NULL)
			break;
	}
	if (r == 0 && next != NULL) {
		error("cannot %s: Resource Graph has more than %d pages of "
		    "results; narrow it with TargetSubscription or name the "
		    "resources in the settings", why, GRAPH_PAGES_MAX);
		r = EXIT_CONFIG;
	}
	free(next);
	free(url);
	if (r != 0) {
		cJSON_Delete(*rows);
		*rows = NULL;
	}
	return r;
}

/* A row's string column, or NULL when it is missing or not a string. */
const char *
graph_str(const cJSON *row, const char *column)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, column);

	return cJSON_IsString(v) && !str_has_ctrl(v->valuestring) ?
	    v->valuestring : NULL;
}
