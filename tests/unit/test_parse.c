/*
 * The parsers of Azure's answers, fed real example payloads from the
 * REST API specs and malformed input.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "arm.h"
#include "entra.h"
#include "graph.h"
#include "misc.h"
#include "session.h"
#include "unit.h"
#include "vm.h"

/* Reads a fixture's example response body (responses."200".body). */
static char *
fixture_body(const char *name)
{
	const char *dir = getenv("FIXTURES");
	char path[512], *text, *body;
	cJSON *root, *item;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir ? dir :
	    "../shared/fixtures/azure-rest-api-specs", name);
	if ((f = fopen(path, "r")) == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	text = xcalloc(1, (size_t)n + 1);
	if (fread(text, 1, (size_t)n, f) != (size_t)n)
		n = 0;
	fclose(f);
	root = cJSON_Parse(text);
	free(text);
	item = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(
	    root, "responses"), "200"), "body");
	body = item ? cJSON_PrintUnformatted(item) : NULL;
	cJSON_Delete(root);
	return body;
}

static void
test_bastion_fixtures(void)
{
	struct bastion b;
	char *body;

	body = fixture_body("BastionHostGet.json");
	CHECK(body != NULL);
	CHECK(body != NULL && arm_parse_bastion(body, &b) == 0);
	CHECK_STR(b.dns_name,
	    "bst-9d89d361-100e-4c01-b92d-466548c476dc.bastion.azure.com");
	CHECK_STR(b.sku, "Standard");
	CHECK(b.tunneling == TRI_FALSE && b.ip_connect == TRI_FALSE);
	CHECK(arm_check_bastion(&b, "b", false) == EXIT_REFUSED);
	arm_bastion_free(&b);
	free(body);

	body = fixture_body("BastionHostGetWithPrivateOnly.json");
	CHECK(body != NULL && arm_parse_bastion(body, &b) == 0);
	CHECK_STR(b.sku, "Premium");
	arm_bastion_free(&b);
	free(body);

	body = fixture_body("BastionHostDeveloperGet.json");
	CHECK(body != NULL && arm_parse_bastion(body, &b) == 0);
	CHECK_STR(b.sku, "Developer");
	CHECK(b.tunneling == TRI_UNKNOWN);
	arm_bastion_free(&b);
	free(body);
}

static void
test_bastion_checks(void)
{
	struct bastion b;

	/* missing properties are unknown, never a refusal or a crash */
	CHECK(arm_parse_bastion("{\"properties\":{\"dnsName\":\"h:8443\"}}",
	    &b) == 0);
	CHECK(b.sku == NULL && b.tunneling == TRI_UNKNOWN &&
	    b.ip_connect == TRI_UNKNOWN);
	CHECK(arm_check_bastion(&b, "b", true) == 0);
	arm_bastion_free(&b);

	CHECK(arm_parse_bastion("{\"sku\":{\"name\":\"Basic\"},\"properties\":"
	    "{\"dnsName\":\"h\",\"enableTunneling\":true}}", &b) == 0);
	CHECK(arm_check_bastion(&b, "b", false) == EXIT_REFUSED);
	arm_bastion_free(&b);

	CHECK(arm_parse_bastion("{\"sku\":{\"name\":\"Premium\"},"
	    "\"properties\":{\"dnsName\":\"h\",\"enableTunneling\":true,"
	    "\"enableIpConnect\":false}}", &b) == 0);
	CHECK(arm_check_bastion(&b, "b", false) == 0);
	CHECK(arm_check_bastion(&b, "b", true) == EXIT_REFUSED);
	arm_bastion_free(&b);
}

static void
test_bastion_malformed(void)
{
	static const char *const bad[] = {
		"", "null", "[]", "{", "{\"properties\":null}",
		"{\"properties\":{\"dnsName\":7}}",
		"{\"properties\":{\"dnsName\":\"\"}}",
		"{\"properties\":{\"dnsName\":\"a/b\"}}",
		"{\"properties\":{\"dnsName\":\"a@b\"}}",
		"{\"properties\":{\"dnsName\":\"h:99999\"}}",
		"{\"properties\":{\"dnsName\":\"h:\"}}",
		"{\"properties\":{\"dnsName\":\"h\\nx\"}}",
	};
	struct bastion b;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(arm_parse_bastion(bad[i], &b) == -1);
	CHECK(arm_parse_bastion("{\"sku\":[],\"properties\":{\"dnsName\":"
	    "\"h\",\"enableTunneling\":\"yes\"}}", &b) == 0);
	CHECK(b.sku == NULL && b.tunneling == TRI_UNKNOWN);
	arm_bastion_free(&b);
}

static void
test_entra(void)
{
	struct token t;
	char msg[256];

	CHECK(entra_parse_token("{\"access_token\":\"abc\",\"expires_in\":"
	    "3599}", 1000, &t) == 0);
	CHECK_STR(t.access_token, "abc");
	CHECK(t.expires_on == 4599);
	token_free(&t);
	CHECK(entra_parse_token("{\"access_token\":\"abc\",\"expires_in\":"
	    "\"60\"}", 0, &t) == 0 && t.expires_on == 60);
	token_free(&t);
	CHECK(entra_parse_token("", 0, &t) == -1);
	CHECK(entra_parse_token("{\"access_token\":\"\",\"expires_in\":1}", 0,
	    &t) == -1);
	CHECK(entra_parse_token("{\"access_token\":\"a\"}", 0, &t) == -1);
	CHECK(entra_parse_token("{\"access_token\":\"a\",\"expires_in\":-5}",
	    0, &t) == -1);
	CHECK(entra_parse_token("{\"access_token\":1,\"expires_in\":5}", 0,
	    &t) == -1);
	CHECK(entra_parse_token("{\"access_token\":\"a\\u0000b\","
	    "\"expires_in\":5}", 0, &t) == -1 || t.access_token != NULL);
	token_free(&t);

	entra_describe_error("{\"error\":\"invalid_client\",\"error_description"
	    "\":\"AADSTS7000215: Invalid client secret.\\r\\nTrace ID: x\","
	    "\"correlation_id\":\"c-1\"}", msg, sizeof(msg));
	CHECK_STR(msg, "AADSTS7000215: Invalid client secret. "
	    "(correlation id c-1)");
	entra_describe_error("<html>", msg, sizeof(msg));
	CHECK_STR(msg, "an answer that is not an Entra ID error");
}

static void
test_session(void)
{
	struct session s;
	char msg[256], *path;

	memset(&s, 0, sizeof(s));
	CHECK(session_parse("{\"authToken\":\"a\",\"websocketToken\":\"w/+\","
	    "\"nodeId\":\"n 1\",\"username\":\"\"}", &s) == 0);
	CHECK_STR(s.auth_token, "a");
	path = session_ws_path(&s);
	CHECK_STR(path, "/webtunnelv2/w%2F%2B?X-Node-Id=n%201");
	free(path);
	session_free(&s);
	CHECK(session_parse("{\"authToken\":\"a\",\"nodeId\":\"n\"}", &s) ==
	    -1);
	CHECK(s.auth_token == NULL);
	CHECK(session_parse("{\"authToken\":\"a\",\"websocketToken\":\"\","
	    "\"nodeId\":\"n\"}", &s) == -1);
	CHECK(session_parse("{\"authToken\":[],\"websocketToken\":\"w\","
	    "\"nodeId\":\"n\"}", &s) == -1);
	CHECK(session_parse("Unexpected", &s) == -1);

	/* a Developer data pod: no nodeId needed, the omni path */
	memset(&s, 0, sizeof(s));
	s.developer = 1;
	CHECK(session_parse("{\"authToken\":\"a\",\"websocketToken\":\"w\"}",
	    &s) == 0);
	path = session_ws_path(&s);
	CHECK_STR(path, "/omni/webtunnel/w");
	free(path);
	session_free(&s);

	session_describe_error("{\"message\":\"Tunneling is disabled\"}", msg,
	    sizeof(msg));
	CHECK_STR(msg, "Tunneling is disabled");
	session_describe_error("Forbidden\r\nmore", msg, sizeof(msg));
	CHECK_STR(msg, "Forbidden");
	session_describe_error("<html><body>500</body></html>", msg,
	    sizeof(msg));
	CHECK_STR(msg, "no error message");
	session_describe_error("", msg, sizeof(msg));
	CHECK_STR(msg, "no error message");
}

static void
test_arm_errors(void)
{
	char msg[256];

	arm_describe_error("{\"error\":{\"code\":\"ResourceNotFound\","
	    "\"message\":\"gone\"}}", msg, sizeof(msg));
	CHECK_STR(msg, "ResourceNotFound: gone");
	arm_describe_error("{\"Error\":{\"Code\":\"X\",\"Message\":\"y\"}}",
	    msg, sizeof(msg));
	CHECK_STR(msg, "X: y");
	arm_describe_error("{\"error\":\"flat\"}", msg, sizeof(msg));
	CHECK_STR(msg, "no error details");
	/* Resource Graph: the reason is in the details */
	arm_describe_error("{\"error\":{\"code\":\"BadRequest\",\"message\":"
	    "\"ask support\",\"details\":[{\"code\":\"x\"},{\"code\":"
	    "\"InvalidQuery\",\"message\":\"Query is invalid\"}]}}", msg,
	    sizeof(msg));
	CHECK_STR(msg, "BadRequest: ask support (Query is invalid)");
}

/* Resource Graph pages, from the specs' examples. */
static void
test_graph_pages(void)
{
	cJSON *rows = cJSON_CreateArray();
	char *body, *next = NULL;

	body = fixture_body("ResourcesFirstPageQuery.json");
	CHECK(body != NULL && graph_take_page(body, rows, &next) == 0);
	CHECK(cJSON_GetArraySize(rows) == 3);
	CHECK(next != NULL && strncmp(next, "eyAibm8i", 8) == 0);
	CHECK_STR(graph_str(cJSON_GetArrayItem(rows, 1), "name"), "TestAA");
	free(body);
	free(next);
	body = fixture_body("ResourcesNextPageQuery.json");
	CHECK(body != NULL && graph_take_page(body, rows, &next) == 0);
	CHECK(cJSON_GetArraySize(rows) > 3);
	free(body);
	free(next);
	CHECK(graph_take_page("{\"count\": 0}", rows, &next) == -1);
	CHECK(graph_take_page("not json", rows, &next) == -1);
	CHECK(graph_str(cJSON_GetArrayItem(rows, 0), "nope") == NULL);
	cJSON_Delete(rows);
}

/* The power state in an instance view, from the specs' examples. */
static void
test_power_state(void)
{
	char state[32];
	char *body;

	body = fixture_body("VirtualMachine_Get_InstanceView.json");
	CHECK(body != NULL && vm_parse_power_state(body, state,
	    sizeof(state)) == 0);
	CHECK_STR(state, "running");
	free(body);
	body = fixture_body("VirtualMachineScaleSetVM_Get_"
	    "InstanceViewAutoPlacedOnDedicatedHostGroup.json");
	CHECK(body != NULL && vm_parse_power_state(body, state,
	    sizeof(state)) == 0);
	CHECK_STR(state, "running");
	free(body);

	/* the first PowerState entry, lower-cased, wherever it is */
	CHECK(vm_parse_power_state("{\"statuses\": [{\"code\": "
	    "\"ProvisioningState/succeeded\"}, {\"code\": "
	    "\"PowerState/Deallocated\"}]}", state, sizeof(state)) == 0);
	CHECK_STR(state, "deallocated");

	/* none, or not a plain word: no state rather than a wrong one */
	CHECK(vm_parse_power_state("{\"statuses\": [{\"code\": "
	    "\"ProvisioningState/succeeded\"}]}", state, 32) == -1);
	CHECK(vm_parse_power_state("{\"statuses\": {\"code\": "
	    "\"PowerState/running\"}}", state, 32) == -1);
	CHECK(vm_parse_power_state("{\"statuses\": [{\"code\": "
	    "\"PowerState/run\\u001bning\"}]}", state, 32) == -1);
	CHECK(vm_parse_power_state("{\"statuses\": [{\"code\": "
	    "\"PowerState/\"}]}", state, 32) == -1);
	CHECK(vm_parse_power_state("{\"statuses\": [{\"code\": 7}]}",
	    state, 32) == -1);
	CHECK(vm_parse_power_state("[", state, 32) == -1);
	CHECK(vm_parse_power_state("{\"statuses\": [{\"code\": "
	    "\"PowerState/running\"}]}", state, 4) == -1);
}

/* Azure-AsyncOperation answers, and where their URLs may point. */
static void
test_start_operation(void)
{
	const char *arm = "https://management.azure.com";
	char status[32];

	CHECK(vm_parse_operation("{\"status\": \"InProgress\"}", status,
	    sizeof(status)) == 0);
	CHECK_STR(status, "inprogress");
	CHECK(vm_parse_operation("{\"status\": \"Failed\", \"error\": "
	    "{\"code\": \"X\"}}", status, sizeof(status)) == 0);
	CHECK_STR(status, "failed");
	CHECK(vm_parse_operation("{\"status\": 1}", status, 32) == -1);
	CHECK(vm_parse_operation("{}", status, 32) == -1);
	CHECK(vm_parse_operation("", status, 32) == -1);

	CHECK(vm_url_on_arm("https://management.azure.com/subscriptions/s/"
	    "providers/Microsoft.Compute/locations/westus/operations/1?a=b",
	    arm));
	CHECK(vm_url_on_arm("HTTPS://Management.Azure.com:443/x", arm));
	CHECK(vm_url_on_arm("https://localhost:8443/x",
	    "https://localhost:8443"));
	CHECK(!vm_url_on_arm("https://localhost:8444/x",
	    "https://localhost:8443"));
	CHECK(!vm_url_on_arm("http://management.azure.com/x", arm));
	CHECK(!vm_url_on_arm("https://evil.example/x", arm));
	CHECK(!vm_url_on_arm("https://management.azure.com.evil.example/x",
	    arm));
	CHECK(!vm_url_on_arm("https://management.azure.com@evil.example/x",
	    arm));
	CHECK(!vm_url_on_arm("https://evil.example\\@management.azure.com/",
	    arm));
	CHECK(!vm_url_on_arm("https://management.azure.com/x\r\nHost: e",
	    arm));
	CHECK(!vm_url_on_arm("management.azure.com/x", arm));
	CHECK(!vm_url_on_arm("", arm));
}

/* A power state the caller knows decides without a request (h NULL). */
static void
test_known_state(void)
{
	const char *id = "/subscriptions/s/resourceGroups/g/providers/"
	    "Microsoft.Compute/virtualMachineScaleSets/ss/virtualMachines/3";
	struct options o;
	bool started = true;

	cfg_init(&o);
	o.start_vm = 0;
	CHECK(vm_ensure_running(NULL, &o, NULL, id, "PowerState/running",
	    &started) == 0);
	CHECK(!started);
	CHECK(vm_ensure_running(NULL, &o, NULL, id, "running", &started) ==
	    0);
	CHECK(vm_ensure_running(NULL, &o, NULL, id, "PowerState/deallocated",
	    &started) == EXIT_REFUSED);
	CHECK(vm_ensure_running(NULL, &o, NULL, id, "stopping", &started) ==
	    EXIT_REFUSED);
	o.start_vm = 1;
	CHECK(vm_ensure_running(NULL, &o, NULL, id, "deallocating",
	    &started) == EXIT_REFUSED);
	CHECK(!started);
}

int
main(void)
{
	RUN(test_bastion_fixtures);
	RUN(test_bastion_checks);
	RUN(test_bastion_malformed);
	RUN(test_entra);
	RUN(test_session);
	RUN(test_arm_errors);
	RUN(test_graph_pages);
	RUN(test_power_state);
	RUN(test_start_operation);
	RUN(test_known_state);
	return unit_done();
}
