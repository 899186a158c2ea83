/*
 * relay: a Bastion data plane in C for the benchmarks.  The Python
 * emulator relays a few tens of MiB/s, below what ssh moves over
 * loopback, so measuring bastion-stdio against it would measure the
 * emulator.  This serves only what a tunnel needs, over TLS, on one
 * loopback port, with the test CA's certificate:
 *
 *   POST   /api/tokens                form with resourceId, protocol
 *                                     tcptunnel, workloadHostPort and a
 *                                     non-empty aztoken (not checked)
 *   DELETE /api/tokens/{authToken}    with X-Node-Id: 204, else 404
 *   GET    /webtunnelv2/{token}?X-Node-Id={node}   upgrade, then relay
 *                                     to 127.0.0.1:{workloadHostPort}
 *   GET    /_bench/stats              counters, as JSON
 *
 * One thread per connection; a tunnel is one poll loop over two
 * non-blocking sockets.  It connects to nothing but 127.0.0.1.
 *
 *   relay -c cert.pem -k key.pem -p portfile [-l address]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define HEAD_MAX	16384		/* request line and headers */
#define BODY_MAX	65536
#define IN_CAP		(256 * 1024)	/* client bytes: frames being read */
#define FRAME_MAX	(192 * 1024)	/* largest client payload accepted */
#define READ_CHUNK	65536		/* target bytes per server frame */
#define IDLE_SECONDS	30		/* HTTP keep-alive */
#define CLOSE_WAIT_MS	3000		/* for the client's close frame */
#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct session {
	char		 auth[33], node[17], ws[33];
	int		 port;
	bool		 used;
	struct session	*next;
};

struct stats {
	unsigned long	 connections, tokens, deletes, upgrades, open;
	unsigned long	 bad_requests;
};

struct conn {
	SSL		*ssl;
	int		 fd;
	unsigned char	*in;		/* bytes read and not yet used */
	size_t		 len, cap;
};

static SSL_CTX *tls;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct session *sessions;
static struct stats stats;

static void __attribute__((noreturn))
die(const char *what)
{
	fprintf(stderr, "relay: %s: %s\n", what,
	    errno ? strerror(errno) : "failed");
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void
count(unsigned long *n, long delta)
{
	pthread_mutex_lock(&lock);
	*n += (unsigned long)delta;
	pthread_mutex_unlock(&lock);
}

static void
random_hex(char *out, size_t nbytes)
{
	unsigned char raw[32];
	size_t i;

	if (RAND_bytes(raw, (int)nbytes) != 1)
		die("RAND_bytes");
	for (i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

/* ---------------------------------------------------------------- I/O */

static int
wait_fd(int fd, short ev, int ms)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int r;

	while ((r = poll(&p, 1, ms)) == -1 && errno == EINTR)
		;
	return r;
}

/* Writes all of buf on a socket that may be non-blocking. */
static int
write_all(int fd, const unsigned char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n == -1 && errno == EAGAIN)
			wait_fd(fd, POLLOUT, -1);
		else if (n == -1 && errno != EINTR)
			return -1;
	}
	return 0;
}

/* The same over TLS; SSL_write sends all or nothing without
 * SSL_MODE_ENABLE_PARTIAL_WRITE. */
static int
tls_write_all(struct conn *c, const void *buf, size_t len)
{
	int n, e;

	if (len == 0)
		return 0;
	for (;;) {
		n = SSL_write(c->ssl, buf, (int)len);
		if (n > 0)
			return 0;
		e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_WRITE)
			wait_fd(c->fd, POLLOUT, -1);
		else if (e == SSL_ERROR_WANT_READ)
			wait_fd(c->fd, POLLIN, -1);
		else
			return -1;
	}
}

/*
 * Reads what TLS has into c->in: >0 bytes, 0 none yet, -1 EOF/error.
 * drain keeps reading until the socket has no more (non-blocking only);
 * otherwise one read, plus what OpenSSL already holds.
 */
static int
tls_fill(struct conn *c, bool drain)
{
	int n, e, total = 0;

	while (c->len < c->cap) {
		if (total > 0 && !drain && SSL_pending(c->ssl) == 0)
			break;
		n = SSL_read(c->ssl, c->in + c->len, (int)(c->cap - c->len));
		if (n > 0) {
			c->len += (size_t)n;
			total += n;
			continue;
		}
		e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return total;
		return total > 0 ? total : -1;
	}
	return total;
}

static void
consume(struct conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->len - n);
	c->len -= n;
}

/* ---------------------------------------------------------------- HTTP */

struct request {
	char		 method[8];
	char		 path[4096];
	const char	*head;		/* header lines, in c->in */
	const char	*body;
	size_t		 head_len, body_len, total;
};

/* The value of header name in head, copied to out; -1 if absent. */
static int
header(const struct request *r, const char *name, char *out, size_t size)
{
	const char *p = r->head, *end = r->head + r->head_len, *eol, *v;
	size_t n = strlen(name), vl;

	for (; p < end; p = eol + 2) {
		if ((eol = memmem(p, (size_t)(end - p), "\r\n", 2)) == NULL)
			eol = end;
		if ((size_t)(eol - p) > n && p[n] == ':' &&
		    strncasecmp(p, name, n) == 0) {
			v = p + n + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			vl = (size_t)(eol - v);
			if (vl >= size)
				vl = size - 1;
			memcpy(out, v, vl);
			out[vl] = '\0';
			return 0;
		}
		if (eol == end)
			break;
	}
	return -1;
}

/* Reads one request into c->in: 1, 0 at a clean EOF, -1 on error. */
static int
read_request(struct conn *c, struct request *r)
{
	char *eoh, cl[32];
	size_t hl;

	memset(r, 0, sizeof(*r));
	while ((eoh = memmem(c->in, c->len, "\r\n\r\n", 4)) == NULL) {
		if (c->len >= HEAD_MAX)
			return -1;
		if (tls_fill(c, false) <= 0)
			return c->len == 0 ? 0 : -1;
	}
	hl = (size_t)(eoh - (char *)c->in);
	if (sscanf((char *)c->in, "%7s %4095s HTTP/1.", r->method,
	    r->path) != 2)
		return -1;
	r->head = memmem(c->in, hl, "\r\n", 2);
	r->head = r->head ? r->head + 2 : (char *)c->in + hl;
	r->head_len = (size_t)((char *)c->in + hl - r->head);
	if (header(r, "Content-Length", cl, sizeof(cl)) == 0)
		r->body_len = strtoul(cl, NULL, 10);
	if (r->body_len > BODY_MAX)
		return -1;
	r->total = hl + 4 + r->body_len;
	while (c->len < r->total)
		if (tls_fill(c, false) <= 0)
			return -1;
	r->body = (char *)c->in + hl + 4;
	return 1;
}

static int
respond(struct conn *c, int status, const char *reason, const char *body)
{
	char head[512];
	size_t bl = body ? strlen(body) : 0;
	int n;

	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n"
	    "Content-Length: %zu\r\n%sConnection: keep-alive\r\n\r\n",
	    status, reason, bl, body ? "Content-Type: application/json\r\n" :
	    "");
	if (tls_write_all(c, head, (size_t)n) == -1)
		return -1;
	return tls_write_all(c, body, bl);
}

/* The raw value of a form field, copied to out; -1 if absent. */
static int
form_field(const struct request *r, const char *name, char *out,
    size_t size)
{
	const char *p = r->body, *end = r->body + r->body_len, *amp;
	size_t n = strlen(name), vl;

	for (; p < end; p = amp + 1) {
		if ((amp = memchr(p, '&', (size_t)(end - p))) == NULL)
			amp = end;
		if ((size_t)(amp - p) > n && p[n] == '=' &&
		    strncmp(p, name, n) == 0) {
			vl = (size_t)(amp - p) - n - 1;
			if (vl >= size)
				vl = size - 1;
			memcpy(out, p + n + 1, vl);
			out[vl] = '\0';
			return 0;
		}
	}
	return -1;
}

static int
new_session(struct conn *c, const struct request *r)
{
	struct session *s;
	char proto[32], port[16], tok[8], rid[8], body[256];
	long p;

	if (form_field(r, "protocol", proto, sizeof(proto)) == -1 ||
	    strcmp(proto, "tcptunnel") != 0 ||
	    form_field(r, "aztoken", tok, sizeof(tok)) == -1 || !*tok ||
	    form_field(r, "resourceId", rid, sizeof(rid)) == -1 || !*rid ||
	    form_field(r, "workloadHostPort", port, sizeof(port)) == -1 ||
	    (p = strtol(port, NULL, 10)) < 1 || p > 65535) {
		count(&stats.bad_requests, 1);
		return respond(c, 500, "Internal Server Error",
		    "{\"message\":\"Unexpected internal error\"}");
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		die("calloc");
	random_hex(s->auth, 16);
	random_hex(s->node, 8);
	random_hex(s->ws, 16);
	s->port = (int)p;
	pthread_mutex_lock(&lock);
	s->next = sessions;
	sessions = s;
	stats.tokens++;
	pthread_mutex_unlock(&lock);
	snprintf(body, sizeof(body), "{\"authToken\":\"%s\",\"nodeId\":\"%s\","
	    "\"websocketToken\":\"%s\",\"username\":\"\",\"dataSource\":\"\","
	    "\"availableDataSources\":[]}", s->auth, s->node, s->ws);
	return respond(c, 200, "OK", body);
}

static int
delete_session(struct conn *c, const struct request *r, const char *auth)
{
	struct session **pp, *s = NULL;
	char node[64];

	if (header(r, "X-Node-Id", node, sizeof(node)) == -1)
		node[0] = '\0';
	pthread_mutex_lock(&lock);
	for (pp = &sessions; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->auth, auth) == 0 &&
		    strcmp((*pp)->node, node) == 0) {
			s = *pp;
			*pp = s->next;
			stats.deletes++;
			break;
		}
	pthread_mutex_unlock(&lock);
	free(s);
	if (s == NULL)
		return respond(c, 404, "Not Found",
		    "{\"message\":\"Session already deleted\"}");
	return respond(c, 204, "No Content", NULL);
}

static int
send_stats(struct conn *c)
{
	struct session *s;
	char body[512];
	unsigned long active = 0;

	pthread_mutex_lock(&lock);
	for (s = sessions; s != NULL; s = s->next)
		active++;
	snprintf(body, sizeof(body), "{\"connections\":%lu,\"tokens\":%lu,"
	    "\"deletes\":%lu,\"upgrades\":%lu,\"open\":%lu,\"active\":%lu,"
	    "\"bad_requests\":%lu}", stats.connections, stats.tokens,
	    stats.deletes, stats.upgrades, stats.open, active,
	    stats.bad_requests);
	pthread_mutex_unlock(&lock);
	return respond(c, 200, "OK", body);
}

/* ---------------------------------------------------------------- relay */

static size_t
frame_header(unsigned char *h, int opcode, size_t len)
{
	h[0] = (unsigned char)(0x80 | opcode);
	if (len < 126) {
		h[1] = (unsigned char)len;
		return 2;
	}
	if (len < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		return 4;
	}
	h[1] = 127;
	for (int i = 0; i < 8; i++)
		h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
	return 10;
}

static int
send_control(struct conn *c, int opcode, const void *p, size_t len)
{
	unsigned char f[2 + 125];

	if (len > 125)
		len = 125;
	frame_header(f, opcode, len);
	memcpy(f + 2, p, len);
	return tls_write_all(c, f, 2 + len);
}

static int
send_close(struct conn *c, int code)
{
	unsigned char v[2] = { (unsigned char)(code >> 8),
	    (unsigned char)code };

	return send_control(c, 8, v, 2);
}

/* XOR with the 4-byte key, eight bytes at a time where it can. */
static void
unmask(unsigned char *p, size_t n, const unsigned char key[4])
{
	uint64_t k8, w;
	size_t i = 0;
	unsigned char k[8];

	memcpy(k, key, 4);
	memcpy(k + 4, key, 4);
	memcpy(&k8, k, 8);
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		w ^= k8;
		memcpy(p + i, &w, 8);
	}
	for (; i < n; i++)
		p[i] ^= key[i & 3];
}

enum { GO_ON, CLIENT_CLOSED, BROKEN };

/*
 * Handles every complete frame in c->in.  Data payloads are unmasked in
 * place and gathered at the front of c->in, then written to the target
 * with one write (dropped once the target is gone: tfd -1).
 */
static int
client_frames(struct conn *c, int tfd, bool *close_sent)
{
	size_t pos = 0, out = 0, hl, len;
	unsigned char *f, *key;
	int op, r = GO_ON;

	while (c->len - pos >= 2) {
		f = c->in + pos;
		op = f[0] & 0x0f;
		len = f[1] & 0x7f;
		hl = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + 4;
		if (c->len - pos < hl)
			break;
		if ((f[1] & 0x80) == 0 || (f[0] & 0x70) != 0)
			return BROKEN;	/* unmasked or reserved bits */
		if (len == 126)
			len = (size_t)f[2] << 8 | f[3];
		else if (len == 127) {
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | f[2 + i];
		}
		if (len > FRAME_MAX) {
			send_close(c, 1009);
			return BROKEN;
		}
		if (c->len - pos < hl + len)
			break;
		key = f + hl - 4;
		unmask(f + hl, len, key);
		if (op == 0 || op == 1 || op == 2) {
			memmove(c->in + out, f + hl, len);
			out += len;
		} else if (op == 9) {
			if (send_control(c, 10, f + hl, len) == -1)
				return BROKEN;
		} else if (op == 8) {
			if (!*close_sent)
				send_control(c, 8, f + hl, len < 2 ? len : 2);
			*close_sent = true;
			r = CLIENT_CLOSED;
			pos += hl + len;
			break;
		}
		pos += hl + len;
	}
	if (out > 0 && tfd != -1 && write_all(tfd, c->in, out) == -1)
		r = r == GO_ON ? BROKEN : r;
	consume(c, pos);
	return r;
}

static void
set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void
relay(struct conn *c, int tfd)
{
	unsigned char *out = malloc(10 + READ_CHUNK);
	struct pollfd p[2];
	bool close_sent = false, target_open = true;
	size_t hl;
	ssize_t n;
	int r, wait_ms;

	if (out == NULL)
		die("malloc");
	set_nonblock(c->fd);
	set_nonblock(tfd);
	for (;;) {
		/* bytes that came with the upgrade or that TLS holds */
		r = client_frames(c, target_open ? tfd : -1, &close_sent);
		if (r != GO_ON)
			break;
		if (SSL_pending(c->ssl) > 0) {
			if (tls_fill(c, true) == -1)
				break;
			continue;
		}
		p[0].fd = c->fd;
		p[0].events = POLLIN;
		p[1].fd = target_open ? tfd : -1;
		p[1].events = POLLIN;
		wait_ms = close_sent ? CLOSE_WAIT_MS : -1;
		if ((r = poll(p, 2, wait_ms)) == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;		/* no close answer in time */
		if (p[0].revents && tls_fill(c, true) == -1)
			break;
		if (!p[1].revents)
			continue;
		n = read(tfd, out + 10, READ_CHUNK);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			/* the target ended: end the tunnel as the emulator
			 * does, then wait for the client's close */
			target_open = false;
			shutdown(tfd, SHUT_WR);
			if (!close_sent && send_close(c, 1000) == -1)
				break;
			close_sent = true;
			continue;
		}
		hl = n < 126 ? 2 : n < 65536 ? 4 : 10;
		frame_header(out + 10 - hl, 2, (size_t)n);
		if (tls_write_all(c, out + 10 - hl, hl + (size_t)n) == -1)
			break;
	}
	free(out);
}

/* 127.0.0.1:port, or -1. */
static int
connect_target(int port)
{
	struct sockaddr_in sa;
	int fd, one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

static void
accept_value(const char *key, char *out)
{
	unsigned char md[SHA_DIGEST_LENGTH];
	char buf[128];

	snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
	SHA1((unsigned char *)buf, strlen(buf), md);
	EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

/* Finds and takes the unused session of a tunnel path. */
static int
take_session(const char *path)
{
	struct session *s;
	const char *tok = path + strlen("/webtunnelv2/"), *q;
	int port = -1;

	if ((q = strstr(tok, "?X-Node-Id=")) == NULL)
		return -1;
	pthread_mutex_lock(&lock);
	for (s = sessions; s != NULL; s = s->next)
		if (!s->used && strlen(s->ws) == (size_t)(q - tok) &&
		    strncmp(s->ws, tok, (size_t)(q - tok)) == 0 &&
		    strcmp(s->node, q + strlen("?X-Node-Id=")) == 0) {
			s->used = true;
			port = s->port;
			break;
		}
	pthread_mutex_unlock(&lock);
	return port;
}

/* A tunnel: the upgrade, then the relay.  Owns the connection. */
static void
tunnel(struct conn *c, const struct request *r)
{
	char key[64], up[64], accept[64], resp[256];
	struct timeval tv = { 0, 0 };
	int port, tfd, n;

	if (header(r, "Upgrade", up, sizeof(up)) == -1 ||
	    strcasecmp(up, "websocket") != 0 ||
	    header(r, "Sec-WebSocket-Key", key, sizeof(key)) == -1 ||
	    (port = take_session(r->path)) == -1) {
		respond(c, 404, "Not Found", "{\"message\":\"Not found\"}");
		return;
	}
	consume(c, r->total);
	accept_value(key, accept);
	n = snprintf(resp, sizeof(resp), "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
	if (tls_write_all(c, resp, (size_t)n) == -1)
		return;
	count(&stats.upgrades, 1);
	if ((tfd = connect_target(port)) == -1) {
		send_close(c, 1011);
		return;
	}
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	count(&stats.open, 1);
	relay(c, tfd);
	count(&stats.open, -1);
	close(tfd);
}

/* Requests until the client goes, or a tunnel takes the connection. */
static void
serve(struct conn *c)
{
	struct request r;
	int ok;

	while (read_request(c, &r) == 1) {
		if (strcmp(r.method, "POST") == 0 &&
		    strcmp(r.path, "/api/tokens") == 0)
			ok = new_session(c, &r);
		else if (strcmp(r.method, "DELETE") == 0 &&
		    strncmp(r.path, "/api/tokens/", 12) == 0)
			ok = delete_session(c, &r, r.path + 12);
		else if (strcmp(r.method, "GET") == 0 &&
		    strncmp(r.path, "/webtunnelv2/", 13) == 0) {
			tunnel(c, &r);
			return;
		} else if (strcmp(r.method, "GET") == 0 &&
		    strcmp(r.path, "/_bench/stats") == 0)
			ok = send_stats(c);
		else
			ok = respond(c, 404, "Not Found",
			    "{\"message\":\"Not found\"}");
		if (ok == -1)
			return;
		consume(c, r.total);
	}
}

static void *
connection(void *arg)
{
	struct conn c;
	struct timeval tv = { IDLE_SECONDS, 0 };
	int one = 1;

	memset(&c, 0, sizeof(c));
	c.fd = (int)(intptr_t)arg;
	setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	count(&stats.connections, 1);
	c.cap = IN_CAP;
	if ((c.in = malloc(c.cap)) == NULL)
		die("malloc");
	if ((c.ssl = SSL_new(tls)) != NULL && SSL_set_fd(c.ssl, c.fd) == 1 &&
	    SSL_accept(c.ssl) == 1) {
		serve(&c);
		SSL_shutdown(c.ssl);
	}
	SSL_free(c.ssl);
	close(c.fd);
	free(c.in);
	return NULL;
}

static int
alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1";

	(void)ssl, (void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, h1,
	    sizeof(h1) - 1, in, inlen) == OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

static int
listen_loopback(const char *addr, int *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd, one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 ||
	    (ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
		fprintf(stderr, "relay: %s is not a loopback address\n", addr);
		exit(2);
	}
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    listen(fd, 512) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == -1)
		die("listen");
	*port = ntohs(sa.sin_port);
	return fd;
}

static void
write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL || fprintf(f, "%d\n", port) < 0 ||
	    fclose(f) != 0 || rename(tmp, path) == -1)
		die(path);
}

int
main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL, *port_file = NULL;
	const char *addr = "127.0.0.1";
	pthread_attr_t attr;
	pthread_t th;
	int ch, lfd, fd, port;

	while ((ch = getopt(argc, argv, "c:k:l:p:")) != -1) {
		switch (ch) {
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'l': addr = optarg; break;
		case 'p': port_file = optarg; break;
		default: cert = NULL; optind = argc; break;
		}
	}
	if (cert == NULL || key == NULL || port_file == NULL) {
		fprintf(stderr, "usage: relay -c cert.pem -k key.pem "
		    "-p portfile [-l address]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((tls = SSL_CTX_new(TLS_server_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(tls, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_use_certificate_chain_file(tls, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(tls, key, SSL_FILETYPE_PEM) != 1)
		die("TLS set-up");
	SSL_CTX_set_alpn_select_cb(tls, alpn, NULL);
	lfd = listen_loopback(addr, &port);
	write_port_file(port_file, port);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (;;) {
		if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) == -1) {
			if (errno == EINTR || errno == ECONNABORTED ||
			    errno == EMFILE)
				continue;
			die("accept");
		}
		if (pthread_create(&th, &attr, connection,
		    (void *)(intptr_t)fd) != 0)
			close(fd);
	}
}
