/* libFuzzer: every parser of an answer from Entra ID, ARM or a Bastion. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arm.h"
#include "entra.h"
#include "log.h"
#include "misc.h"
#include "session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = xmalloc(size + 1), msg[512];
	struct bastion b;
	struct session s;
	struct token t;

	log_init(LOG_QUIET);
	memcpy(body, data, size);
	body[size] = '\0';
	if (arm_parse_bastion(body, &b) == 0) {
		(void)arm_check_bastion(&b, "b", true);
		arm_bastion_free(&b);
	}
	memset(&s, 0, sizeof(s));
	if (session_parse(body, &s) == 0)
		free(session_ws_path(&s));
	session_free(&s);
	if (entra_parse_token(body, 1000, &t) == 0)
		token_free(&t);
	entra_describe_error(body, msg, sizeof(msg));
	session_describe_error(body, msg, sizeof(msg));
	arm_describe_error(body, msg, sizeof(msg));
	free(entra_json_string(body, "refresh_token"));
	(void)entra_json_number(body, "interval");
	free(body);
	return 0;
}
