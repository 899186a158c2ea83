/* libFuzzer: the configuration file parser and -o options. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct options o;
	char opt[256];
	FILE *f;

	log_init(LOG_QUIET);
	if (size == 0)
		return 0;
	cfg_init(&o);
	if ((f = fmemopen((void *)data, size, "r")) != NULL) {
		(void)cfg_read_stream(&o, f, "fuzz", "web1.prod");
		fclose(f);
	}
	(void)cfg_finish(&o);
	cfg_free(&o);

	/* the first line, as a -o argument */
	snprintf(opt, sizeof(opt), "%.*s", (int)size, (const char *)data);
	opt[strcspn(opt, "\n")] = '\0';
	cfg_init(&o);
	(void)cfg_parse_option(&o, opt);
	cfg_free(&o);
	return 0;
}
