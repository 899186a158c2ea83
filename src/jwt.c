/*
 * The JWT client assertion of the certificate credential, as the Azure
 * C++ SDK makes it: RS256 (RSA PKCS#1 v1.5 with SHA-256), the header's
 * x5t the base64url SHA-1 thumbprint of the certificate, audience the
 * token endpoint, issuer and subject the client id, valid ten minutes.
 */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "jwt.h"
#include "log.h"
#include "misc.h"

#define ASSERTION_LIFETIME	600

/* base64url without padding, as JWT segments must be. */
void
base64url(struct buf *out, const unsigned char *p, size_t n)
{
	unsigned char *dst = buf_space(out, 4 * ((n + 2) / 3) + 1, NULL);
	int len = EVP_EncodeBlock(dst, p, (int)n);
	int i;

	while (len > 0 && dst[len - 1] == '=')
		len--;
	for (i = 0; i < len; i++) {
		if (dst[i] == '+')
			dst[i] = '-';
		else if (dst[i] == '/')
			dst[i] = '_';
	}
	buf_commit(out, (size_t)len);
}

static void
base64url_str(struct buf *out, const char *s)
{
	base64url(out, (const unsigned char *)s, strlen(s));
}

/* The first OpenSSL error, for a message a user can act on. */
static const char *
ssl_reason(void)
{
	static char text[256];
	unsigned long e = ERR_get_error();

	ERR_error_string_n(e, text, sizeof(text));
	ERR_clear_error();
	return e != 0 ? text : "no certificate or key found";
}

static int
has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* Loads the certificate and key from PKCS#12 (.pfx/.p12) or PEM. */
static int
load_credential(const char *path, const char *password, X509 **cert,
    EVP_PKEY **key)
{
	BIO *bio = BIO_new_file(path, "rb");
	PKCS12 *p12;
	int ok = 0;

	*cert = NULL;
	*key = NULL;
	if (bio == NULL) {
		ERR_clear_error();
		error("cannot read AZURE_CLIENT_CERTIFICATE_PATH %s: %s", path,
		    strerror(errno));
		return EXIT_CONFIG;
	}
	if (has_suffix(path, ".pfx") || has_suffix(path, ".p12")) {
		p12 = d2i_PKCS12_bio(bio, NULL);
		ok = p12 != NULL && PKCS12_parse(p12, password ? password : "",
		    key, cert, NULL);
		PKCS12_free(p12);
	} else {
		*cert = PEM_read_bio_X509(bio, NULL, NULL, (void *)"");
		(void)BIO_reset(bio);
		*key = PEM_read_bio_PrivateKey(bio, NULL, NULL,
		    (void *)(password ? password : ""));
		ok = *cert != NULL && *key != NULL;
	}
	BIO_free(bio);
	ERR_clear_error();
	if (!ok || EVP_PKEY_get_base_id(*key) != EVP_PKEY_RSA) {
		error("certificate %s: %s", path, ok ? "the key must be RSA "
		    "(Entra signs assertions with RS256)" : *cert == NULL ?
		    "no certificate in it, or a wrong password" :
		    "no private key in it, or a wrong password");
		X509_free(*cert);
		EVP_PKEY_free(*key);
		return EXIT_CONFIG;
	}
	return 0;
}

/* A random UUID (version 4) for jti. */
static void
uuid4(char *out, size_t size)
{
	unsigned char r[16];

	RAND_bytes(r, sizeof(r));
	r[6] = (r[6] & 0x0f) | 0x40;
	r[8] = (r[8] & 0x3f) | 0x80;
	snprintf(out, size, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5],
	    r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
}

/* The signing input: base64url(header) "." base64url(payload). */
static void
signing_input(X509 *cert, const char *client_id, const char *audience,
    time_t now, struct buf *out)
{
	unsigned char sha1[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	struct buf x5t;
	char *header, *payload, jti[40];

	X509_digest(cert, EVP_sha1(), sha1, &n);
	buf_init(&x5t, 64);
	base64url(&x5t, sha1, n);
	header = xasprintf("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5t\":\"%s\"}",
	    buf_str(&x5t));
	uuid4(jti, sizeof(jti));
	payload = xasprintf("{\"aud\":\"%s\",\"iss\":\"%s\",\"sub\":\"%s\","
	    "\"jti\":\"%s\",\"nbf\":%lld,\"iat\":%lld,\"exp\":%lld}", audience,
	    client_id, client_id, jti, (long long)now, (long long)now,
	    (long long)now + ASSERTION_LIFETIME);
	base64url_str(out, header);
	buf_puts(out, ".");
	base64url_str(out, payload);
	free(header);
	free(payload);
	buf_free(&x5t);
}

/*
 * Builds the client assertion for client_id at audience (the token URL)
 * into out.  The ids are JSON-safe: the caller checked their alphabet.
 * Returns 0, or an exit status after reporting the error.
 */
int
jwt_client_assertion(const char *cert_path, const char *password,
    const char *client_id, const char *audience, time_t now,
    struct buf *out)
{
	unsigned char sig[1024];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *md = NULL;
	EVP_PKEY *key;
	X509 *cert;
	int r;

	if ((r = load_credential(cert_path, password, &cert, &key)) != 0)
		return r;
	signing_input(cert, client_id, audience, now, out);
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL,
	    key) != 1 || EVP_DigestSign(md, sig, &siglen, out->data + out->off,
	    out->len) != 1) {
		error("certificate %s: cannot sign: %s", cert_path,
		    ssl_reason());
		r = EXIT_CONFIG;
	} else {
		buf_puts(out, ".");
		base64url(out, sig, siglen);
	}
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	X509_free(cert);
	return r;
}

/*
 * The claims of a JWT as JSON text (the caller frees it), or NULL when
 * the token is not a JWT.  Nothing is verified: for display only.
 */
char *
jwt_payload(const char *token)
{
	const char *p = strchr(token, '.'), *end;
	unsigned char *out;
	struct buf in;
	size_t i, n;
	int len;

	if (p == NULL || (end = strchr(++p, '.')) == NULL ||
	    (n = (size_t)(end - p)) == 0 || n > 16384)
		return NULL;
	buf_init(&in, n + 4);
	for (i = 0; i < n; i++)
		buf_put(&in, p[i] == '-' ? "+" : p[i] == '_' ? "/" : &p[i], 1);
	while (in.len % 4)
		buf_put(&in, "=", 1);
	out = xmalloc(in.len + 1);
	len = EVP_DecodeBlock(out, in.data, (int)in.len);
	buf_free(&in);
	if (len < 0) {
		free(out);
		return NULL;
	}
	while (len > 0 && out[len - 1] == '\0')	/* the padding's zeros */
		len--;
	out[len] = '\0';
	return (char *)out;
}
