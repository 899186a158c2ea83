/* Azure Resource Graph queries, for finding VMs and Bastions. */
#ifndef GRAPH_H
#define GRAPH_H

#include <cjson/cJSON.h>

#include "buf.h"
#include "config.h"
#include "entra.h"
#include "http.h"

void	graph_quote(struct buf *q, const char *s);
int	graph_query(struct http *h, const struct options *o,
	    const struct token *t, const char *subscription,
	    const char *query, const char *why, cJSON **rows);
int	graph_take_page(const char *body, cJSON *rows, char **next);
const char *graph_str(const cJSON *row, const char *column);

#endif
