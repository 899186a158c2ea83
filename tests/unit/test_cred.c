/*
 * Credential pieces that need no server: the JWT client assertion, the
 * refresh rule, and the cache's safety checks.
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "cred.h"
#include "jwt.h"
#include "misc.h"
#include "unit.h"

static char dir[] = "/tmp/bastion-stdio-unit-cred-XXXXXX";

static void
test_base64url(void)
{
	struct buf b;

	buf_init(&b, 0);
	base64url(&b, (const unsigned char *)"\xfb\xff\xbf", 3);
	CHECK_STR(buf_str(&b), "-_-_");
	buf_reset(&b);
	base64url(&b, (const unsigned char *)"ab", 2);
	CHECK_STR(buf_str(&b), "YWI");
	buf_free(&b);
}

/* A throw-away RSA key and self-signed certificate, in one PEM file. */
static void
make_cert(const char *path, EVP_PKEY **key, X509 **cert)
{
	FILE *f = fopen(path, "w");

	*key = EVP_RSA_gen(2048);
	*cert = X509_new();
	X509_set_version(*cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(*cert), 7);
	X509_gmtime_adj(X509_getm_notBefore(*cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(*cert), 3600);
	X509_set_pubkey(*cert, *key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(*cert), "CN",
	    MBSTRING_ASC, (const unsigned char *)"unit", -1, -1, 0);
	X509_set_issuer_name(*cert, X509_get_subject_name(*cert));
	X509_sign(*cert, *key, EVP_sha256());
	PEM_write_PrivateKey(f, *key, NULL, NULL, 0, NULL, NULL);
	PEM_write_X509(f, *cert);
	fclose(f);
}

/* Decodes one base64url JWT segment into a C string. */
static char *
segment(const char *s, size_t n)
{
	char *in = xcalloc(1, n + 4), *out = xcalloc(1, n + 4);
	size_t i;
	int len;

	for (i = 0; i < n; i++)
		in[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	while (i % 4)
		in[i++] = '=';
	len = EVP_DecodeBlock((unsigned char *)out, (unsigned char *)in,
	    (int)i);
	free(in);
	if (len < 0) {
		free(out);
		return NULL;
	}
	return out;
}

static void
test_assertion(void)
{
	char path[128], *header, *payload, thumb[64];
	const char *jwt, *dot1, *dot2;
	unsigned char sha1[EVP_MAX_MD_SIZE], sig[512];
	unsigned int n = 0;
	struct buf b, x5t;
	EVP_MD_CTX *md;
	EVP_PKEY *key;
	X509 *cert;
	int siglen;

	snprintf(path, sizeof(path), "%s/sp.pem", dir);
	make_cert(path, &key, &cert);
	buf_init(&b, 0);
	CHECK(jwt_client_assertion(path, NULL, "c-1", "https://l/t/x", 1000,
	    &b) == 0);
	jwt = buf_str(&b);
	dot1 = strchr(jwt, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	CHECK(dot1 != NULL && dot2 != NULL);
	if (dot2 == NULL)
		return;
	header = segment(jwt, (size_t)(dot1 - jwt));
	payload = segment(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	X509_digest(cert, EVP_sha1(), sha1, &n);
	buf_init(&x5t, 0);
	base64url(&x5t, sha1, n);
	snprintf(thumb, sizeof(thumb), "\"x5t\":\"%s\"", buf_str(&x5t));
	CHECK(strstr(header, "\"alg\":\"RS256\"") != NULL);
	CHECK(strstr(header, thumb) != NULL);
	CHECK(strstr(payload, "\"aud\":\"https://l/t/x\"") != NULL);
	CHECK(strstr(payload, "\"iss\":\"c-1\",\"sub\":\"c-1\"") != NULL);
	CHECK(strstr(payload, "\"exp\":1600") != NULL);

	/* the signature verifies with the certificate's key */
	{
		char *s = segment(dot2 + 1, strlen(dot2 + 1));

		siglen = 0;
		if (s != NULL)
			siglen = EVP_PKEY_get_size(key);
		memcpy(sig, s ? s : "", s ? (size_t)siglen : 0);
		free(s);
	}
	md = EVP_MD_CTX_new();
	CHECK(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1);
	CHECK(EVP_DigestVerify(md, sig, (size_t)siglen,
	    (const unsigned char *)jwt, (size_t)(dot2 - jwt)) == 1);
	EVP_MD_CTX_free(md);
	free(header);
	free(payload);
	buf_free(&x5t);
	buf_free(&b);
	EVP_PKEY_free(key);
	X509_free(cert);

	buf_init(&b, 0);
	CHECK(jwt_client_assertion("/nonexistent.pem", NULL, "c", "a", 0,
	    &b) == EXIT_CONFIG);
	buf_free(&b);
}

static void
test_refresh_rule(void)
{
	struct token t = { .access_token = (char *)"x" };

	t.issued_on = 0;
	t.expires_on = 3600;		/* one hour: refresh 5 min early */
	CHECK(cred_token_usable(&t, 3299));
	CHECK(!cred_token_usable(&t, 3300));
	t.expires_on = 86400;		/* a day: refresh at half-life */
	CHECK(cred_token_usable(&t, 43199));
	CHECK(!cred_token_usable(&t, 43200));
	t.access_token = NULL;
	CHECK(!cred_token_usable(&t, 0));
}

static void
test_cache_safety(void)
{
	char path[256], cdir[200];
	struct buf b;
	struct stat st;

	snprintf(cdir, sizeof(cdir), "%s/cache", dir);
	setenv("XDG_CACHE_HOME", cdir, 1);
	buf_init(&b, 0);
	CHECK(cache_write("entry", "{\"a\":1}") == 0);
	CHECK(cache_read("entry", &b) == 0);
	CHECK_STR(buf_str(&b), "{\"a\":1}");
	snprintf(path, sizeof(path), "%s/bastion-stdio/entry", cdir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	snprintf(path, sizeof(path), "%s/bastion-stdio", cdir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);

	/* readable by others: ignored */
	snprintf(path, sizeof(path), "%s/bastion-stdio/entry", cdir);
	chmod(path, 0644);
	CHECK(cache_read("entry", &b) == -1);
	/* a symlink: not followed */
	unlink(path);
	CHECK(symlink("/etc/hostname", path) == 0);
	CHECK(cache_read("entry", &b) == -1);
	/* written over the symlink, not through it */
	CHECK(cache_write("entry", "new") == 0);
	CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
	CHECK(cache_clear() == 0);
	CHECK(cache_read("entry", &b) == -1);
	/* a directory that others can enter: no cache at all */
	snprintf(path, sizeof(path), "%s/bastion-stdio", cdir);
	chmod(path, 0755);
	CHECK(cache_write("entry", "x") == -1);
	buf_free(&b);
}

int
main(void)
{
	char cmd[128];

	if (mkdtemp(dir) == NULL)
		return 2;
	RUN(test_base64url);
	RUN(test_assertion);
	RUN(test_refresh_rule);
	RUN(test_cache_safety);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? unit_done() : 1;
}
