/* The ssh_config-style configuration file and -o options. */
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "misc.h"
#include "unit.h"

static char path[] = "/tmp/bastion-stdio-unit-XXXXXX";

/* Writes text to the scratch file and reads it for host. */
static int
read_text(struct options *o, const char *text, const char *host)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
	return cfg_read_file(o, path, host);
}

static void
test_blocks(void)
{
	struct options o;
	static const char text[] =
	    "# comment\n"
	    "ConnectTimeout 7\n"
	    "\n"
	    "Host *.prod !bad.prod\n"
	    "  Bastion /subscriptions/s/resourceGroups/g/providers/"
	    "Microsoft.Network/bastionHosts/prod\n"
	    "  targetresourcegroup=rg-prod\n"
	    "Host *\n"
	    "  Bastion /other\n"
	    "  TargetResourceGroup = rg-default\n"
	    "  LogFile \"/tmp/a b.log\"\n";

	cfg_init(&o);
	CHECK(read_text(&o, text, "web.prod") == 0);
	CHECK(o.connect_timeout == 7);
	CHECK_STR(o.target_resource_group, "rg-prod");
	CHECK_STR(o.log_file, "/tmp/a b.log");
	CHECK(o.bastion != NULL && strstr(o.bastion, "/prod") != NULL);
	cfg_free(&o);

	cfg_init(&o);
	CHECK(read_text(&o, text, "bad.prod") == 0);
	CHECK_STR(o.bastion, "/other");
	CHECK_STR(o.target_resource_group, "rg-default");
	cfg_free(&o);
}

static void
test_syntax(void)
{
	struct options o;

	setenv("HOME", "/home/u", 1);
	cfg_init(&o);
	CHECK(read_text(&o, "\xef\xbb\xbf" "Bastion /b # the prod one\n"
	    "LogFile ~/bs.log\n"
	    "CAFile \"/a b/ca#1.pem\" # quoted\n"
	    "TargetResourceGroup rg#1\n"
	    "Host x # a comment\n"
	    "  TargetSubscription s\n", "x") == 0);
	CHECK_STR(o.bastion, "/b");
	CHECK_STR(o.log_file, "/home/u/bs.log");
	CHECK_STR(o.ca_file, "/a b/ca#1.pem");
	CHECK_STR(o.target_resource_group, "rg#1");
	CHECK_STR(o.target_subscription, "s");
	cfg_free(&o);
	cfg_init(&o);
	CHECK(read_text(&o, "Include other.conf\n", "x") == EXIT_CONFIG);
	CHECK(read_text(&o, "CAFile \"a\" b\n", "x") == EXIT_CONFIG);
	CHECK(read_text(&o, "Bastion # only a comment\n", "x") ==
	    EXIT_CONFIG);
	cfg_free(&o);
}

static void
test_first_wins(void)
{
	struct options o;

	cfg_init(&o);
	CHECK(cfg_parse_option(&o, "FrameSize=8192") == 0);
	CHECK(cfg_parse_option(&o, "LogLevel=DEBUG2") == 0);
	CHECK(read_text(&o, "FrameSize 1024\nFrameSize 2048\n"
	    "LogLevel quiet\n", "h") == 0);
	CHECK(o.frame_size == 8192);
	CHECK(o.log_level == LOG_DEBUG2);
	cfg_free(&o);
}

static void
test_errors(void)
{
	struct options o;

	cfg_init(&o);
	CHECK(read_text(&o, "NoSuchKeyword x\n", "h") == EXIT_CONFIG);
	CHECK(read_text(&o, "ConnectTimeout 0\n", "h") == EXIT_CONFIG);
	CHECK(read_text(&o, "ConnectTimeout 10s\n", "h") == EXIT_CONFIG);
	CHECK(read_text(&o, "FrameSize 100\n", "h") == EXIT_CONFIG);
	CHECK(read_text(&o, "LogLevel LOUD\n", "h") == EXIT_CONFIG);
	CHECK(read_text(&o, "Cloud Mars\n", "h") == EXIT_CONFIG);
	CHECK(read_text(&o, "Bastion\n", "h") == EXIT_CONFIG);
	CHECK(read_text(&o, "Host\n", "h") == EXIT_CONFIG);
	CHECK(read_text(&o, "Match all\n", "h") == EXIT_CONFIG);
	CHECK(read_text(&o, "LogFile \"unterminated\n", "h") == EXIT_CONFIG);
	/* a typo in a block for another host is still an error */
	CHECK(read_text(&o, "Host other\n  Bastoin x\n", "h") == EXIT_CONFIG);
	CHECK(cfg_parse_option(&o, "Bastion") == EXIT_CONFIG);
	CHECK(cfg_parse_option(&o, "=x") == EXIT_CONFIG);
	CHECK(cfg_parse_option(&o, "Host=x") == EXIT_CONFIG);
	CHECK(cfg_read_file(&o, "/nonexistent/config", "h") == EXIT_CONFIG);
	cfg_free(&o);
}

static void
test_finish(void)
{
	struct options o;

	unsetenv("AZURE_AUTHORITY_HOST");
	cfg_init(&o);
	CHECK(cfg_finish(&o) == 0);
	CHECK_STR(o.arm_endpoint, "https://management.azure.com");
	CHECK_STR(o.authority_host, "https://login.microsoftonline.com");
	CHECK_STR(o.cloud->arm_scope,
	    "https://management.core.windows.net//.default");
	CHECK(o.frame_size == 4096 && o.connect_timeout == 30);
	cfg_free(&o);

	setenv("AZURE_AUTHORITY_HOST", "https://login.example/", 1);
	cfg_init(&o);
	CHECK(cfg_parse_option(&o, "Cloud=azurechinacloud") == 0);
	CHECK(cfg_finish(&o) == 0);
	CHECK_STR(o.authority_host, "https://login.example");
	CHECK_STR(o.arm_endpoint, "https://management.chinacloudapi.cn");
	cfg_free(&o);

	cfg_init(&o);
	CHECK(cfg_parse_option(&o, "AuthorityHost=https://cli.example") == 0);
	CHECK(cfg_finish(&o) == 0);
	CHECK_STR(o.authority_host, "https://cli.example");
	cfg_free(&o);
	unsetenv("AZURE_AUTHORITY_HOST");

	cfg_init(&o);
	CHECK(cfg_parse_option(&o, "ArmEndpoint=http://plain") == 0);
	CHECK(cfg_finish(&o) == EXIT_CONFIG);
	cfg_free(&o);
	cfg_init(&o);
	CHECK(cfg_parse_option(&o, "ArmEndpoint=https://a?b") == 0);
	CHECK(cfg_finish(&o) == EXIT_CONFIG);
	cfg_free(&o);
	cfg_init(&o);
	CHECK(cfg_parse_option(&o, "ArmEndpoint=https://a:1/some/path") == 0);
	CHECK(cfg_finish(&o) == EXIT_CONFIG);
	cfg_free(&o);
	cfg_init(&o);
	CHECK(cfg_parse_option(&o, "ArmEndpoint=x") == 0);
	CHECK(cfg_finish(&o) == EXIT_CONFIG);
	cfg_free(&o);
	cfg_init(&o);
	CHECK(cfg_parse_option(&o, "ArmEndpoint=https://a:1//") == 0);
	CHECK(cfg_finish(&o) == 0);
	CHECK_STR(o.arm_endpoint, "https://a:1");
	cfg_free(&o);
}

int
main(void)
{
	int fd = mkstemp(path);

	if (fd == -1)
		return 2;
	close(fd);
	RUN(test_blocks);
	RUN(test_syntax);
	RUN(test_first_wins);
	RUN(test_errors);
	RUN(test_finish);
	unlink(path);
	return unit_done();
}
