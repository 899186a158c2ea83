/*
 * The tunnel's local side: stdin and stdout, adopted by libwebsockets as
 * raw-file descriptors once the first WebSocket is open, and kept across
 * set-up attempts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "misc.h"
#include "tunnel_int.h"

/* Puts fd into ws's poll loop as a raw file; lws owns it then. */
struct lws *
tun_adopt_fd(struct lws *ws, int fd)
{
	lws_sock_file_fd_type desc;

	desc.filefd = fd;
	return lws_adopt_descriptor_vhost(lws_get_vhost(ws),
	    LWS_ADOPT_RAW_FILE_DESC, desc, "tunnel", NULL);
}

/* Puts stdin and stdout into the poll loop; false if lws refused. */
bool
tun_adopt_stdio(struct tunnel *t, struct lws *ws)
{
	t->adopted = true;
	/* before either: 0 and 1 may share one file description */
	t->fd_flags[0] = fcntl(0, F_GETFL);
	t->fd_flags[1] = fcntl(1, F_GETFL);
	if ((t->in = tun_adopt_fd(ws, 0)) == NULL ||
	    (t->out = tun_adopt_fd(ws, 1)) == NULL)
		return false;
	/* A tty on fd 1 is readable when the user types; never read it. */
	lws_rx_flow_control(t->out, 0);
	return true;
}

static void
restore_flags(struct tunnel *t, int fd)
{
	/*
	 * Adoption set O_NONBLOCK on a file description that ssh or a shell
	 * may share; it is restored while the fd is still open, since lws
	 * closes it right after RAW_CLOSE_FILE.
	 */
	if (t->fd_flags[fd] != -1)
		(void)fcntl(fd, F_SETFL, t->fd_flags[fd]);
}

/* stdin is readable: queue what fits under the high-water mark. */
int
tun_on_stdin(struct tunnel *t)
{
	unsigned char *p;
	size_t room;
	ssize_t n;

	if (t->closing || t->ws == NULL || t->up.len >= UP_HWM)
		return 0;	/* paused after lws_service() returns */
	room = UP_HWM - t->up.len;
	p = buf_space(&t->up, room, NULL);
	n = read(0, p, room);
	if (n > 0) {
		buf_commit(&t->up, (size_t)n);
		t->stats.bytes_up += (uint64_t)n;
		return 0;
	}
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n == -1)
		tun_finish(t, EXIT_LOCAL_IO, false, "cannot read stdin: %s",
		    strerror(errno));
	t->in_eof = true;
	return -1;	/* lws closes the wsi and the fd */
}

/*
 * stdin is being closed by lws.  In 4.1.6 (and upstream main) a wsi
 * whose POLLIN is off is closed on POLLHUP although the pipe still holds
 * data: when a paused stdin's writer exits, those bytes would be lost.
 * The fd is still open here, so what is left is read now.  Only a pipe
 * or socket hangs up like that, and its buffer bounds what is read (a
 * regular file would answer FIONREAD with all it has left); up grows
 * past its high-water mark to take it.  Not when the context is being
 * destroyed: then nobody will send it.
 */
static void
drain_stdin(struct tunnel *t)
{
	unsigned char *p;
	struct stat st;
	ssize_t n;
	size_t total = 0;
	int avail;

	if (t->destroying || fstat(0, &st) == -1 ||
	    !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
		return;
	while (total < DRAIN_MAX && ioctl(0, FIONREAD, &avail) == 0 &&
	    avail > 0) {
		if ((size_t)avail > DRAIN_MAX - total)
			avail = (int)(DRAIN_MAX - total);
		p = buf_space(&t->up, (size_t)avail, NULL);
		n = read(0, p, (size_t)avail);
		if (n <= 0)
			break;
		buf_commit(&t->up, (size_t)n);
		t->stats.bytes_up += (uint64_t)n;
		total += (size_t)n;
	}
}

/*
 * Writes down to stdout until it would block or down is empty; 0, or
 * the errno of a write that failed.
 */
static int
write_down(struct tunnel *t)
{
	ssize_t n;

	while (t->down.len > 0) {
		n = write(1, t->down.data + t->down.off, t->down.len);
		if (n > 0) {
			buf_consume(&t->down, (size_t)n);
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		return n == 0 ? EIO : errno;
	}
	return 0;
}

/*
 * Called with what just came down: stdout usually has room, and writing
 * now saves a trip through poll().  An error is left for the next
 * RAW_WRITEABLE_FILE to meet again and report.
 */
void
tun_flush_stdout(struct tunnel *t)
{
	if (t->out != NULL && !t->out_gone)
		(void)write_down(t);
}

/* stdout can take bytes: write until it would block or down is empty. */
int
tun_on_stdout(struct tunnel *t)
{
	int err = write_down(t);

	if (err == 0) {
		/*
		 * Not re-armed here: 4.1.6 clears POLLOUT after this
		 * callback and would cancel it (fixed upstream in
		 * 99f7e572c, v4.4.0).
		 */
		return 0;
	}
	if (err != EPIPE)
		tun_finish(t, EXIT_LOCAL_IO, false, "cannot write stdout: %s",
		    strerror(err));
	t->out_gone = true;
	return -1;
}

void
tun_on_file_closed(struct tunnel *t, struct lws *wsi)
{
	if (wsi == t->in) {
		drain_stdin(t);
		restore_flags(t, 0);
		t->in = NULL;
		t->in_eof = true;
	} else if (wsi == t->out) {
		restore_flags(t, 1);
		t->out = NULL;
		t->out_gone = true;
	} else if (wsi == t->net) {
		/* POLLHUP or an error on the socket: the WebSocket too */
		t->net = NULL;
		tun_ws_release(t);
		if (t->ws != NULL && !t->destroying)
			lws_set_timeout(t->ws, PENDING_TIMEOUT_USER_OK,
			    LWS_TO_KILL_ASYNC);
	}
}

/* stdin is read only while there is a WebSocket to send to and room. */
void
tun_apply_stdin_flow(struct tunnel *t)
{
	bool stop = t->closing || t->ws == NULL || !t->established ||
	    t->up.len >= UP_HWM;

	if (t->in == NULL)
		return;
	if (!t->in_paused && stop) {
		lws_rx_flow_control(t->in, 0);
		t->in_paused = true;
	} else if (t->in_paused && !stop && t->up.len < UP_LWM) {
		lws_rx_flow_control(t->in, 1);
		t->in_paused = false;
	}
}
