/*
 * probe: the measuring tools of the benchmarks, in one small program so
 * that the measurement costs little beside what it measures.
 *
 *   probe target PORTFILE
 *	A TCP target on 127.0.0.1: each connection gets a banner line;
 *	then "U n\n" makes it read n bytes and answer "OK\n", "D n\n"
 *	makes it send n zero bytes; anything else is read and dropped.
 *   probe blast HOST:PORT CA TOKENFILE RESOURCEID TPORT up|down BYTES FRAME
 *	The data plane's own ceiling: a WebSocket client as lean as it gets
 *	(one mask for every frame) moves BYTES through the relay to the
 *	target at TPORT and prints MiB/s.
 *   probe setup HOST:PORT CA TOKENFILE RESOURCEID TPORT
 *	The floor of the set-up: only the two exchanges the protocol needs
 *	once the ARM token and the Bastion are known (POST /api/tokens, the
 *	upgrade), each on a new connection; copies the first bytes from the
 *	target to stdout, then closes and deletes the session.
 *   probe tunnel HOST:PORT CA TOKENFILE RESOURCEID TPORT
 *	A ProxyCommand as lean as it gets over the same two exchanges:
 *	OpenSSL and its own framing, no other library.  How fast a client
 *	can be on this machine, beside bastion-stdio.
 *   probe start N -- COMMAND...
 *	Starts N copies of COMMAND at once, stdin held open as ssh holds
 *	it, and prints the milliseconds until every one has written its
 *	first byte, how many did and did not, and the milliseconds until
 *	all exited after SIGHUP (what ssh sends its ProxyCommand).
 *   probe rusage OUTFILE -- COMMAND...
 *	Runs COMMAND, passes on SIGHUP, SIGTERM and SIGINT, and writes its
 *	peak RSS (KiB), user and system CPU seconds to OUTFILE.
 *
 * It talks to loopback only and refuses any other address.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BANNER		"SSH-2.0-bench-target\r\n"
#define CHUNK		(256 * 1024)
#define START_TIMEOUT_MS 120000

static void __attribute__((noreturn))
die(const char *what)
{
	fprintf(stderr, "probe: %s%s%s\n", what, errno ? ": " : "",
	    errno ? strerror(errno) : "");
	ERR_print_errors_fp(stderr);
	exit(1);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, p, len)) > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n == -1 && errno != EINTR)
			return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- target */

static void *
target_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char line[64], *buf = calloc(1, CHUNK);
	size_t have = 0;
	unsigned long long n = 0, done = 0;
	ssize_t r;

	if (buf == NULL || write_all(fd, BANNER, strlen(BANNER)) == -1)
		goto out;
	/* one command line, read a byte at a time so nothing is taken
	 * from what follows it */
	while (have + 1 < sizeof(line) && read(fd, line + have, 1) == 1)
		if (line[have++] == '\n')
			break;
	line[have] = '\0';
	if (sscanf(line, "U %llu", &n) == 1) {
		while (done < n && (r = read(fd, buf, CHUNK)) > 0)
			done += (unsigned long long)r;
		if (write_all(fd, "OK\n", 3) == -1)
			goto out;
	} else if (sscanf(line, "D %llu", &n) == 1) {
		while (done < n) {
			r = (ssize_t)(n - done < CHUNK ? n - done : CHUNK);
			if (write_all(fd, buf, (size_t)r) == -1)
				goto out;
			done += (unsigned long long)r;
		}
	}
	while (read(fd, buf, CHUNK) > 0)
		;
out:
	free(buf);
	close(fd);
	return NULL;
}

static void __attribute__((noreturn))
target_main(const char *port_file)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	pthread_attr_t attr;
	pthread_t th;
	char tmp[4096];
	FILE *f;
	int lfd, fd, one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    listen(lfd, 512) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) == -1)
		die("listen");
	snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
	if ((f = fopen(tmp, "w")) == NULL ||
	    fprintf(f, "%d\n", ntohs(sa.sin_port)) < 0 || fclose(f) != 0 ||
	    rename(tmp, port_file) == -1)
		die(port_file);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (;;) {
		if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) == -1)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&th, &attr, target_conn,
		    (void *)(intptr_t)fd) != 0)
			close(fd);
	}
}

/* ---------------------------------------------------------------- TLS */

struct peer {
	const char	*host;		/* as in the URL and certificate */
	const char	*port;
	SSL_CTX		*ctx;
};

struct tls {
	SSL		*ssl;
	int		 fd;
	unsigned char	*in;		/* bytes read and not yet used */
	size_t		 len, cap;
};

static bool
is_loopback(const struct sockaddr *sa)
{
	static const unsigned char v6[16] = { [15] = 1 };

	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr)
		    >> 24) == 127;
	return sa->sa_family == AF_INET6 && memcmp(v6,
	    &((const struct sockaddr_in6 *)sa)->sin6_addr, 16) == 0;
}

/* A new TCP connection and TLS handshake; dies on failure. */
static void
tls_open(const struct peer *p, struct tls *t)
{
	struct addrinfo hints, *res, *ai;
	int one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(p->host, p->port, &hints, &res) != 0)
		die("getaddrinfo");
	t->fd = -1;
	for (ai = res; ai != NULL && t->fd == -1; ai = ai->ai_next) {
		if (!is_loopback(ai->ai_addr))
			continue;	/* loopback only, whatever DNS says */
		t->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (t->fd != -1 && connect(t->fd, ai->ai_addr,
		    ai->ai_addrlen) == -1) {
			close(t->fd);
			t->fd = -1;
		}
	}
	freeaddrinfo(res);
	if (t->fd == -1)
		die("connect");
	setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((t->ssl = SSL_new(p->ctx)) == NULL ||
	    SSL_set_tlsext_host_name(t->ssl, p->host) != 1 ||
	    SSL_set1_host(t->ssl, p->host) != 1 ||
	    SSL_set_fd(t->ssl, t->fd) != 1 || SSL_connect(t->ssl) != 1)
		die("TLS handshake");
	t->len = 0;
	t->cap = CHUNK;
	if (t->in == NULL && (t->in = malloc(t->cap)) == NULL)
		die("malloc");
}

static void
tls_close(struct tls *t)
{
	SSL_free(t->ssl);
	close(t->fd);
	t->ssl = NULL;
}

static void
tls_send(struct tls *t, const void *buf, size_t len)
{
	if (len > 0 && SSL_write(t->ssl, buf, (int)len) <= 0)
		die("TLS write");
}

/* One read into t->in; -1 at EOF. */
static int
tls_fill(struct tls *t)
{
	int n;

	if (t->len == t->cap)
		return 0;
	if ((n = SSL_read(t->ssl, t->in + t->len, (int)(t->cap - t->len))) <= 0)
		return -1;
	t->len += (size_t)n;
	return n;
}

static void
consume(struct tls *t, size_t n)
{
	memmove(t->in, t->in + n, t->len - n);
	t->len -= n;
}

/* Reads up to the end of an HTTP head; returns its length. */
static size_t
read_head(struct tls *t)
{
	char *e;

	while ((e = memmem(t->in, t->len, "\r\n\r\n", 4)) == NULL)
		if (tls_fill(t) == -1)
			die("no HTTP answer");
	return (size_t)(e - (char *)t->in) + 4;
}

/*
 * One request on a new connection ("Connection: close"); the status is
 * returned and the body copied to body.
 */
static int
http(const struct peer *p, struct tls *t, const char *req, size_t req_len,
    char *body, size_t size)
{
	size_t hl, bl = 0;
	char *cl;
	int status = 0;

	tls_open(p, t);
	tls_send(t, req, req_len);
	hl = read_head(t);
	sscanf((char *)t->in, "HTTP/1.%*c %d", &status);
	t->in[hl - 1] = '\0';
	if ((cl = strcasestr((char *)t->in, "\r\ncontent-length:")) != NULL)
		bl = strtoul(cl + 17, NULL, 10);
	while (t->len < hl + bl)
		if (tls_fill(t) == -1)
			die("short HTTP body");
	if (bl >= size)
		bl = size - 1;
	memcpy(body, t->in + hl, bl);
	body[bl] = '\0';
	tls_close(t);
	return status;
}

/* The string value of "name" in a flat JSON object. */
static void
json_str(const char *json, const char *name, char *out, size_t size)
{
	char key[64];
	const char *p, *q;

	snprintf(key, sizeof(key), "\"%s\"", name);
	if ((p = strstr(json, key)) == NULL ||
	    (p = strchr(p + strlen(key), '"')) == NULL ||
	    (q = strchr(p + 1, '"')) == NULL || (size_t)(q - p) > size)
		die("session answer without its tokens");
	memcpy(out, p + 1, (size_t)(q - p - 1));
	out[q - p - 1] = '\0';
}

/* ---------------------------------------------------------------- session */

struct session {
	struct peer	 peer;
	char		 auth[512], node[128], ws[1024];
};

static void
form_escape(char *out, size_t size, const char *s)
{
	size_t o = 0;

	for (; *s != '\0' && o + 4 < size; s++) {
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || strchr("-._~", *s) != NULL)
			out[o++] = *s;
		else
			o += (size_t)snprintf(out + o, 4, "%%%02X",
			    (unsigned char)*s);
	}
	out[o] = '\0';
}

static char *
read_token(const char *path)
{
	static char tok[8192];
	FILE *f;
	size_t n;

	if ((f = fopen(path, "r")) == NULL)
		die(path);
	n = fread(tok, 1, sizeof(tok) - 1, f);
	fclose(f);
	while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r'))
		n--;
	tok[n] = '\0';
	return tok;
}

/* POST /api/tokens: the first exchange. */
static void
session_create(struct session *s, struct tls *t, const char *aztoken,
    const char *rid, const char *tport)
{
	static char form[16384], req[20000], ans[4096];
	char erid[1024], etok[12288];
	int n, status;

	form_escape(erid, sizeof(erid), rid);
	form_escape(etok, sizeof(etok), aztoken);
	n = snprintf(form, sizeof(form), "resourceId=%s&protocol=tcptunnel&"
	    "workloadHostPort=%s&aztoken=%s", erid, tport, etok);
	n = snprintf(req, sizeof(req), "POST /api/tokens HTTP/1.1\r\n"
	    "Host: %s:%s\r\nContent-Type: application/x-www-form-urlencoded"
	    "\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
	    s->peer.host, s->peer.port, n, form);
	status = http(&s->peer, t, req, (size_t)n, ans, sizeof(ans));
	if (status != 200) {
		fprintf(stderr, "probe: POST /api/tokens: %d %s\n", status,
		    ans);
		exit(1);
	}
	json_str(ans, "authToken", s->auth, sizeof(s->auth));
	json_str(ans, "nodeId", s->node, sizeof(s->node));
	json_str(ans, "websocketToken", s->ws, sizeof(s->ws));
}

static void
session_delete(struct session *s, struct tls *t)
{
	char req[2048], ans[512];
	int n, status;

	n = snprintf(req, sizeof(req), "DELETE /api/tokens/%s HTTP/1.1\r\n"
	    "Host: %s:%s\r\nX-Node-Id: %s\r\nConnection: close\r\n\r\n",
	    s->auth, s->peer.host, s->peer.port, s->node);
	status = http(&s->peer, t, req, (size_t)n, ans, sizeof(ans));
	if (status != 204 && status != 200)
		fprintf(stderr, "probe: DELETE: %d %s\n", status, ans);
}

/* The upgrade: the second exchange.  Leaves t open on the tunnel. */
static void
ws_open(struct session *s, struct tls *t)
{
	char req[4096];
	size_t hl;
	int n;

	tls_open(&s->peer, t);
	n = snprintf(req, sizeof(req), "GET /webtunnelv2/%s?X-Node-Id=%s "
	    "HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Key: "
	    "YmVuY2gtcHJvYmUta2V5IQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	    s->ws, s->node, s->peer.host, s->peer.port);
	tls_send(t, req, (size_t)n);
	hl = read_head(t);
	if (strncmp((char *)t->in, "HTTP/1.1 101", 12) != 0)
		die("upgrade refused");
	consume(t, hl);
}

static const unsigned char mask_key[4] = { 0x12, 0x34, 0x56, 0x78 };

/* One masked client frame of len bytes from p into out; its size. */
static size_t
frame(unsigned char *out, int opcode, const unsigned char *p, size_t len)
{
	size_t h = 2, i;

	out[0] = (unsigned char)(0x80 | opcode);
	if (len < 126)
		out[1] = (unsigned char)(0x80 | len);
	else {
		out[1] = 0x80 | 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
		h = 4;
	}
	memcpy(out + h, mask_key, 4);
	for (i = 0; i < len; i++)
		out[h + 4 + i] = p[i] ^ mask_key[i & 3];
	return h + 4 + len;
}

/* Payload of the next data frame, pointing into t->in (consumed on the
 * next call).  -1 at close or EOF. */
static long
next_payload(struct tls *t, const unsigned char **p, size_t *skip)
{
	size_t hl, len;
	int op;

	consume(t, *skip);
	*skip = 0;
	for (;;) {
		while (t->len < 2 || t->len < (hl = 2 + ((t->in[1] & 0x7f) ==
		    126 ? 2 : (t->in[1] & 0x7f) == 127 ? 8 : 0)))
			if (tls_fill(t) == -1)
				return -1;
		len = t->in[1] & 0x7f;
		if (len == 126)
			len = (size_t)t->in[2] << 8 | t->in[3];
		else if (len == 127) {
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | t->in[2 + i];
		}
		if (hl + len > t->cap)
			die("frame larger than the buffer");
		while (t->len < hl + len)
			if (tls_fill(t) == -1)
				return -1;
		op = t->in[0] & 0x0f;
		if (op == 8)
			return -1;
		if (op <= 2) {
			*p = t->in + hl;
			*skip = hl + len;
			return (long)len;
		}
		consume(t, hl + len);	/* pings: none expected */
	}
}

static void
ws_close(struct tls *t)
{
	unsigned char f[16];
	const unsigned char code[2] = { 0x03, 0xe8 };
	const unsigned char *p;
	size_t skip = 0;

	tls_send(t, f, frame(f, 8, code, 2));
	while (next_payload(t, &p, &skip) >= 0)
		;
	tls_close(t);
}

static SSL_CTX *
client_ctx(const char *ca)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		die(ca);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

static void
peer_init(struct session *s, char *hostport, const char *ca)
{
	char *colon = strrchr(hostport, ':');

	if (colon == NULL)
		die("HOST:PORT expected");
	*colon = '\0';
	s->peer.host = hostport;
	s->peer.port = colon + 1;
	s->peer.ctx = client_ctx(ca);
}

static int
setup_main(char **av)
{
	struct session s;
	struct tls tl = { 0 };
	const unsigned char *p;
	size_t skip = 0;
	long n;

	double t[4];

	signal(SIGHUP, SIG_IGN);	/* finish the DELETE after the byte */
	signal(SIGPIPE, SIG_IGN);
	t[0] = now_ms();
	peer_init(&s, av[0], av[1]);
	t[1] = now_ms();
	session_create(&s, &tl, read_token(av[2]), av[3], av[4]);
	t[2] = now_ms();
	ws_open(&s, &tl);
	if ((n = next_payload(&tl, &p, &skip)) <= 0)
		die("no byte from the target");
	t[3] = now_ms();
	write_all(1, p, (size_t)n);
	if (getenv("PROBE_TIMES") != NULL)
		fprintf(stderr, "probe setup: TLS init %.2f ms, POST "
		    "/api/tokens %.2f ms, upgrade and first byte %.2f ms\n",
		    t[1] - t[0], t[2] - t[1], t[3] - t[2]);
	ws_close(&tl);
	session_delete(&s, &tl);
	return 0;
}

static int
blast_main(char **av)
{
	struct session s;
	struct tls t = { 0 };
	unsigned long long bytes = strtoull(av[6], NULL, 10), done = 0;
	size_t fsz = strtoul(av[7], NULL, 10), fl, skip = 0, batch, per;
	const unsigned char *p;
	unsigned char *payload, *frames;
	char cmd[64];
	double t0, secs;
	bool up = strcmp(av[5], "up") == 0;
	long got;

	if (fsz < 1 || fsz > 65535)
		die("FRAME must be 1..65535");
	signal(SIGPIPE, SIG_IGN);
	peer_init(&s, av[0], av[1]);
	session_create(&s, &t, read_token(av[2]), av[3], av[4]);
	ws_open(&s, &t);
	if (next_payload(&t, &p, &skip) <= 0)	/* the banner */
		die("no banner");
	payload = calloc(1, fsz);
	frames = malloc(CHUNK + 256);
	if (payload == NULL || frames == NULL)
		die("malloc");
	/* every frame the same, masked once: the client costs nearly
	 * nothing, so what is measured is the relay */
	fl = frame(frames, 2, payload, fsz);
	for (batch = fl; batch + fl <= CHUNK; batch += fl)
		memcpy(frames + batch, frames, fl);
	per = fsz * (batch / fl);	/* payload bytes in one batch */
	snprintf(cmd, sizeof(cmd), "%c %llu\n", up ? 'U' : 'D', bytes);
	t0 = now_ms();
	tls_send(&t, frames + CHUNK, frame(frames + CHUNK, 2,
	    (unsigned char *)cmd, strlen(cmd)));
	if (up) {
		for (; done + per <= bytes; done += per)
			tls_send(&t, frames, batch);
		for (; done < bytes; done += fl) {
			fl = bytes - done < fsz ? bytes - done : fsz;
			tls_send(&t, frames, frame(frames, 2, payload, fl));
		}
		if (next_payload(&t, &p, &skip) <= 0)
			die("no OK from the target");
	} else
		while (done < bytes) {
			if ((got = next_payload(&t, &p, &skip)) < 0)
				die("tunnel ended early");
			done += (unsigned long long)got;
		}
	secs = (now_ms() - t0) / 1e3;
	printf("%.1f\n", bytes / 1048576.0 / secs);
	ws_close(&t);
	session_delete(&s, &t);
	return 0;
}

/*
 * A whole ProxyCommand with nothing but OpenSSL and its own framing:
 * 4096-byte frames up (as bastion-stdio and the CLI send), each with its
 * own mask, unmasked eight bytes at a time; payloads down written to
 * stdout straight from the decrypted buffer.  What a client costs when
 * no library gets in the way.
 */
static volatile sig_atomic_t hangup;

static void
on_hangup(int sig)
{
	(void)sig;
	hangup = 1;
}

static uint64_t
xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Frames in[0..n) into out as 4096-byte masked frames; returns bytes. */
static size_t
frame_up(unsigned char *out, const unsigned char *in, size_t n,
    uint64_t *rng)
{
	size_t o = 0, len, i;
	uint64_t k8, w;
	uint32_t k;

	while (n > 0) {
		len = n < 4096 ? n : 4096;
		out[o++] = 0x82;
		if (len < 126)
			out[o++] = (unsigned char)(0x80 | len);
		else {
			out[o++] = 0x80 | 126;
			out[o++] = (unsigned char)(len >> 8);
			out[o++] = (unsigned char)len;
		}
		k = (uint32_t)xorshift(rng);
		memcpy(out + o, &k, 4);
		o += 4;
		k8 = (uint64_t)k << 32 | k;
		for (i = 0; i + 8 <= len; i += 8) {
			memcpy(&w, in + i, 8);
			w ^= k8;
			memcpy(out + o + i, &w, 8);
		}
		for (; i < len; i++)
			out[o + i] = in[i] ^ ((unsigned char *)&k)[i & 3];
		o += len;
		in += len;
		n -= len;
	}
	return o;
}

/* Writes every complete server frame's payload to stdout; -1 at close. */
static int
frames_down(struct tls *t)
{
	size_t pos = 0, hl, len;
	int r = 0;

	while (t->len - pos >= 2) {
		len = t->in[pos + 1] & 0x7f;
		hl = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0);
		if (t->len - pos < hl)
			break;
		if (len == 126)
			len = (size_t)t->in[pos + 2] << 8 | t->in[pos + 3];
		else if (len == 127) {
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | t->in[pos + 2 + i];
		}
		if (hl + len > t->cap)
			die("frame larger than the buffer");
		if (t->len - pos < hl + len)
			break;
		if ((t->in[pos] & 0x0f) == 8) {
			r = -1;
			break;
		}
		if ((t->in[pos] & 0x0f) <= 2 &&
		    write_all(1, t->in + pos + hl, len) == -1) {
			r = -1;
			break;
		}
		pos += hl + len;
	}
	consume(t, pos);
	return r;
}

static int
tunnel_main(char **av)
{
	struct session s;
	struct tls tl = { 0 };
	struct pollfd p[2];
	unsigned char *raw = malloc(65536), *up = malloc(65536 + 1024);
	size_t up_len = 0, up_off = 0;
	uint64_t rng;
	ssize_t n;
	int r, e;
	bool in_open = true;

	if (raw == NULL || up == NULL || RAND_bytes((unsigned char *)&rng,
	    sizeof(rng)) != 1)
		die("set-up");
	rng |= 1;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, on_hangup);
	peer_init(&s, av[0], av[1]);
	session_create(&s, &tl, read_token(av[2]), av[3], av[4]);
	ws_open(&s, &tl);
	fcntl(tl.fd, F_SETFL, fcntl(tl.fd, F_GETFL) | O_NONBLOCK);
	SSL_set_mode(tl.ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
	while (!hangup) {
		if (frames_down(&tl) == -1)
			break;
		if (up_off == up_len && !in_open)
			break;
		p[0].fd = tl.fd;
		p[0].events = POLLIN | (up_off < up_len ? POLLOUT : 0);
		p[1].fd = in_open && up_off == up_len ? 0 : -1;
		p[1].events = POLLIN;
		p[0].revents = p[1].revents = 0;
		if (SSL_pending(tl.ssl) == 0 && poll(p, 2, -1) == -1)
			continue;	/* EINTR: SIGHUP */
		/* down: whatever TLS has */
		r = 1;
		while (tl.len < tl.cap) {
			r = SSL_read(tl.ssl, tl.in + tl.len,
			    (int)(tl.cap - tl.len));
			if (r <= 0)
				break;
			tl.len += (size_t)r;
		}
		if (r <= 0 && (e = SSL_get_error(tl.ssl, r)) !=
		    SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			break;
		/* up: a new read once the last one is sent */
		if (up_off == up_len && in_open && p[1].revents != 0) {
			n = read(0, raw, 65536);
			if (n <= 0)
				in_open = false;
			else {
				up_len = frame_up(up, raw, (size_t)n, &rng);
				up_off = 0;
			}
		}
		while (up_off < up_len) {
			r = SSL_write(tl.ssl, up + up_off,
			    (int)(up_len - up_off));
			if (r <= 0)
				break;
			up_off += (size_t)r;
		}
	}
	fcntl(tl.fd, F_SETFL, fcntl(tl.fd, F_GETFL) & ~O_NONBLOCK);
	ws_close(&tl);
	session_delete(&s, &tl);
	return 0;
}

/* ---------------------------------------------------------------- start */

struct child {
	pid_t		 pid;
	int		 in, out;	/* our ends of its stdin and stdout */
	bool		 got;
};

static void
spawn(struct child *c, char **cmd)
{
	int pin[2], pout[2];

	if (pipe2(pin, O_CLOEXEC) == -1 || pipe2(pout, O_CLOEXEC) == -1)
		die("pipe");
	if ((c->pid = fork()) == -1)
		die("fork");
	if (c->pid == 0) {
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		signal(SIGPIPE, SIG_DFL);
		execvp(cmd[0], cmd);
		_exit(127);
	}
	close(pin[0]);
	close(pout[1]);
	c->in = pin[1];
	c->out = pout[0];
	c->got = false;
}

static int
start_main(int n, char **cmd)
{
	struct child *c = calloc((size_t)n, sizeof(*c));
	struct pollfd *pf = calloc((size_t)n, sizeof(*pf));
	double t0, t_all, t_exit, wait_ms;
	int i, left = n, ok = 0, status;
	char buf[4096];

	if (c == NULL || pf == NULL)
		die("calloc");
	signal(SIGPIPE, SIG_IGN);
	t0 = now_ms();
	for (i = 0; i < n; i++)
		spawn(&c[i], cmd);
	while (left > 0) {
		for (i = 0; i < n; i++) {
			pf[i].fd = c[i].got ? -1 : c[i].out;
			pf[i].events = POLLIN;
		}
		wait_ms = START_TIMEOUT_MS - (now_ms() - t0);
		if (wait_ms < 1 || poll(pf, (nfds_t)n, (int)wait_ms) <= 0)
			break;
		for (i = 0; i < n; i++) {
			if (c[i].got || pf[i].revents == 0)
				continue;
			c[i].got = true;
			left--;
			if (read(c[i].out, buf, sizeof(buf)) > 0)
				ok++;
		}
	}
	t_all = now_ms() - t0;
	for (i = 0; i < n; i++) {
		kill(c[i].pid, SIGHUP);
		close(c[i].in);
	}
	for (i = 0; i < n; i++) {
		/* drain, so that no child blocks on a full pipe */
		while (read(c[i].out, buf, sizeof(buf)) > 0)
			;
		close(c[i].out);
		while (waitpid(c[i].pid, &status, 0) == -1 && errno == EINTR)
			;
	}
	t_exit = now_ms() - t0;
	printf("%.2f %d %d %.2f\n", t_all, ok, n - ok, t_exit);
	return ok == n ? 0 : 1;
}

/* ---------------------------------------------------------------- rusage */

static volatile pid_t child_pid;

static void
forward(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

static int
rusage_main(const char *out, char **cmd)
{
	struct sigaction sa;
	struct rusage ru;
	char tmp[4096];
	FILE *f;
	int status;
	pid_t pid;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if ((pid = fork()) == -1)
		die("fork");
	if (pid == 0) {
		execvp(cmd[0], cmd);
		_exit(127);
	}
	child_pid = pid;
	while (wait4(pid, &status, 0, &ru) == -1)
		if (errno != EINTR)
			die("wait4");
	snprintf(tmp, sizeof(tmp), "%s.tmp", out);
	if ((f = fopen(tmp, "w")) == NULL)
		die(tmp);
	fprintf(f, "%ld %.3f %.3f %d\n", ru.ru_maxrss,
	    ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
	    WIFEXITED(status) ? WEXITSTATUS(status) :
	    128 + WTERMSIG(status));
	if (fclose(f) != 0 || rename(tmp, out) == -1)
		die(out);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: probe target PORTFILE\n"
	    "       probe blast HOST:PORT CA TOKENFILE RESOURCEID TPORT "
	    "up|down BYTES FRAME\n"
	    "       probe setup HOST:PORT CA TOKENFILE RESOURCEID TPORT\n"
	    "       probe tunnel HOST:PORT CA TOKENFILE RESOURCEID TPORT\n"
	    "       probe start N -- COMMAND...\n"
	    "       probe rusage OUTFILE -- COMMAND...\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	long n = argc > 2 ? strtol(argv[2], NULL, 10) : 0;

	if (argc == 3 && strcmp(argv[1], "target") == 0)
		target_main(argv[2]);
	if (argc == 10 && strcmp(argv[1], "blast") == 0)
		return blast_main(argv + 2);
	if (argc == 7 && strcmp(argv[1], "setup") == 0)
		return setup_main(argv + 2);
	if (argc == 7 && strcmp(argv[1], "tunnel") == 0)
		return tunnel_main(argv + 2);
	if (argc > 4 && strcmp(argv[1], "start") == 0 &&
	    strcmp(argv[3], "--") == 0 && n > 0 && n <= 10000)
		return start_main((int)n, argv + 4);
	if (argc > 4 && strcmp(argv[1], "rusage") == 0 &&
	    strcmp(argv[3], "--") == 0)
		return rusage_main(argv[2], argv + 4);
	usage();
	return 2;
}
