/*
 * The tunnel's state, shared by tunnel.c (the WebSocket and the attempt
 * loop) and tunnel_stdio.c (stdin and stdout).  Not for other modules.
 */
#ifndef TUNNEL_INT_H
#define TUNNEL_INT_H

#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <time.h>

#include "buf.h"
#include "tunnel.h"
#include "wsframe.h"

#define UP_HWM		(64 * 1024)	/* stop reading stdin above */
#define UP_LWM		(16 * 1024)	/* and resume below */
#define DOWN_HWM	(128 * 1024)	/* stop reading the socket above */
#define DOWN_LWM	(32 * 1024)
#define RX_CHUNK	65536		/* largest piece lws hands us */
#define REPLAY_MAX	(256 * 1024)	/* sent before the target spoke */
#define DRAIN_MAX	(1024 * 1024)	/* the largest pipe a user may make */
#define TX_WRITE_MAX	RX_CHUNK	/* lws_issue_raw() sends this at once */

enum deadline { DL_CONNECT, DL_FIRST_BYTE, DL_DRAIN };

struct tunnel {
	const struct tunnel_config *cfg;
	struct lws_context *ctx;
	struct lws	*ws, *in, *out;
	struct buf	 up, down;
	struct buf	 sent;		/* up bytes kept for a replay */
	unsigned char	*txbuf;		/* LWS_PRE + one batch of frames */
	unsigned char	*rxbuf;		/* one SSL_read() */
	unsigned char	 keys[256];	/* masking keys to use */
	size_t		 keys_left;
	lws_retry_bo_t	 pings;
	lws_sorted_usec_list_t deadline;
	enum deadline	 deadline_kind;
	struct tunnel_stats stats;
	int		 fd_flags[2];	/* fcntl flags of 0 and 1 to restore */

	/* stdin and stdout: for the whole process */
	bool		 adopted, in_eof, in_paused, out_gone;
	bool		 target_spoke;	/* a byte came from the target */
	bool		 replay_lost;	/* sent overflowed REPLAY_MAX */
	bool		 destroying;	/* lws is closing everything */

	/* this attempt's WebSocket */
	bool		 established, ws_gone, close_sent, closing;
	bool		 rx_paused, done, retryable;
	bool		 unreached;	/* 1011 before the target spoke */
	bool		 saw_garbage;	/* our reader met no WebSocket */

	/* this attempt's frames, when done here (tunnel_ws.c) */
	bool		 want_own_rx, own_rx, net_paused, rx_done;
	bool		 pong_due, echo_due, echo_sent;
	struct lws	*net;		/* a duplicate of the socket */
	SSL		*ssl;		/* lws's, read here */
	struct ws_rx	 rx;
	unsigned char	 pong[WS_CTL_MAX];
	size_t		 pong_len;
	int		 peer_close;	/* close code from the Bastion, or -1 */
	char		 close_reason[128];	/* and its reason text */
	time_t		 last_pong;
	int		 status;	/* exit status once decided */
	char		 why[400];	/* and why, for the caller to report */
};

void	tun_finish(struct tunnel *t, int status, bool retryable,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
bool	tun_adopt_stdio(struct tunnel *t, struct lws *ws);
int	tun_on_stdin(struct tunnel *t);
int	tun_on_stdout(struct tunnel *t);
void	tun_flush_stdout(struct tunnel *t);
void	tun_on_file_closed(struct tunnel *t, struct lws *wsi);
void	tun_apply_stdin_flow(struct tunnel *t);
struct lws *tun_adopt_fd(struct lws *ws, int fd);

void	tun_count_down(struct tunnel *t, size_t len);
void	tun_keep_for_replay(struct tunnel *t, const unsigned char *p,
	    size_t n);
void	tun_ws_established(struct tunnel *t);
void	tun_ws_take(struct tunnel *t);
void	tun_ws_read(struct tunnel *t, size_t limit);
void	tun_ws_release(struct tunnel *t);
void	tun_ws_flow(struct tunnel *t);
int	tun_ws_writeable(struct tunnel *t, struct lws *wsi);

#endif
