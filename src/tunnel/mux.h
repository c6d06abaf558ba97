/* Stream multiplexing over one tunnel link.
 *
 * Frames have a 12-byte header (version, type, flags, stream id, length;
 * doc/tunnel-protocol.md). Flow control has two levels of credit, per
 * stream and per session, and credit goes back to the sender only when the
 * owner reports bytes consumed (written out), so what a receiver buffers
 * is bounded by the windows it granted. Windows start at fixed sizes and
 * grow (up to a configured maximum) when the owner drains a window within
 * about an RTT, measured with PING. Streams with data and credit are served
 * by deficit round-robin; control frames always go first. A stream whose
 * reader stops only stops itself.
 *
 * The session is transport-agnostic and never touches a socket or a clock:
 * the owner feeds it received bytes (fg_mux_input), asks it for bytes to
 * send (fg_mux_output), passes the time, and hears back through two
 * callbacks: events (stream opened by the peer, data, FIN, RST, credit
 * available, GOAWAY) and pull (copy outbound stream bytes straight into
 * the frame being built, so the mux holds no send buffers). Per-stream
 * state comes from a slab; steady state allocates nothing. One session
 * belongs to one thread. */
#ifndef FG_TUNNEL_MUX_H
#define FG_TUNNEL_MUX_H

#include <stddef.h>
#include <stdint.h>

#define FG_MUX_VERSION		      1
#define FG_MUX_HDR_LEN		      12
#define FG_MUX_MAX_DATA		      16384 /* DATA payload per frame */
#define FG_MUX_INITIAL_STREAM_WINDOW  (256u * 1024)
#define FG_MUX_INITIAL_SESSION_WINDOW (1024u * 1024)
#define FG_MUX_MAX_CREDIT	      (1u << 30) /* credit a sender may ever hold */

enum fg_mux_type { FG_MUX_DATA = 0, FG_MUX_WINDOW = 1, FG_MUX_PING = 2, FG_MUX_GOAWAY = 3 };
enum fg_mux_flag { FG_MUX_SYN = 1, FG_MUX_ACK = 2, FG_MUX_FIN = 4, FG_MUX_RST = 8 };
enum fg_mux_goaway {
	FG_MUX_GO_NORMAL = 0,
	FG_MUX_GO_PROTOCOL = 1, /* the peer broke the protocol: session over */
	FG_MUX_GO_INTERNAL = 2,
	FG_MUX_GO_CHURN = 3, /* too many opens/resets per second: no new streams */
};

struct fg_mux_hdr {
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t stream_id;
	uint32_t length; /* DATA: payload bytes; WINDOW: credit delta; PING: opaque;
			    GOAWAY: code */
};

void fg_mux_hdr_encode(const struct fg_mux_hdr *h, uint8_t out[FG_MUX_HDR_LEN]);
/* Decodes and checks the rules that need no session state. Returns
 * FG_MUX_HDR_LEN, -EAGAIN if len < 12, or -EINVAL with *why set (static
 * string): bad version, unknown type or flag, DATA longer than
 * FG_MUX_MAX_DATA, DATA on stream 0, WINDOW delta above FG_MUX_MAX_CREDIT,
 * PING/GOAWAY off stream 0 or with wrong flags, SYN together with ACK. */
int fg_mux_hdr_decode(const uint8_t *buf, size_t len, struct fg_mux_hdr *h, const char **why);

struct fg_mux;
struct fg_mux_stream;

enum fg_mux_event {
	FG_MUX_EV_OPEN,	    /* the peer opened s (its SYN data follows as EV_DATA) */
	FG_MUX_EV_ACK,	    /* the peer acknowledged a stream we opened */
	FG_MUX_EV_DATA,	    /* data, len bytes; counts against s's window until
			       fg_mux_stream_consumed */
	FG_MUX_EV_FIN,	    /* the peer will send nothing more on s */
	FG_MUX_EV_RST,	    /* the peer reset or refused s: drop it and release it */
	FG_MUX_EV_WRITABLE, /* s had no send credit and now has some */
	FG_MUX_EV_GOAWAY,   /* s NULL, len = the peer's code: open no more streams */
};

struct fg_mux_ops {
	/* Events. data is borrowed for the call. Inside, the owner may call
	 * any fg_mux_stream_* function and fg_mux_stream_open, but not
	 * fg_mux_input/fg_mux_output/fg_mux_free. */
	void (*event_cb)(struct fg_mux *m, struct fg_mux_stream *s, enum fg_mux_event ev,
			 const uint8_t *data, size_t len, void *arg);
	/* Copies up to max bytes of s's outbound data into buf and returns
	 * how many; 0 means nothing now (s leaves the send queue until
	 * fg_mux_stream_want_send). Same reentrancy rules as event_cb. */
	size_t (*pull_cb)(struct fg_mux *m, struct fg_mux_stream *s, uint8_t *buf, size_t max,
			  void *arg);
};

struct fg_mux_config {
	uint32_t max_streams;	     /* live streams, both directions; 0 = 1024 */
	uint32_t max_stream_window;  /* auto-tuning ceiling; 0 = 16 MiB */
	uint32_t max_session_window; /* 0 = 64 MiB */
	uint32_t churn_per_sec;	     /* peer opens + resets per second; 0 = 1000 */
	uint32_t quantum;	     /* DRR bytes per turn; 0 = FG_MUX_MAX_DATA */
	int64_t ping_interval_ns;    /* 0 = 15 s; negative: never ping */
	int no_autotune;	     /* keep windows at their initial sizes */
};

/* is_dialer: the dialer's streams have odd ids, the listener's even.
 * ops and arg are borrowed for the session's life. NULL on ENOMEM or a
 * config value out of range (a window max below its initial size or above
 * FG_MUX_MAX_CREDIT). */
struct fg_mux *fg_mux_new(const struct fg_mux_config *cfg, int is_dialer,
			  const struct fg_mux_ops *ops, void *arg);
/* Frees the session and every stream (no events). NULL is fine. */
void fg_mux_free(struct fg_mux *m);

/* Feeds received bytes (any split). now_ns: monotonic time. Returns 0, or
 * -EPROTO when the peer broke the protocol (fg_mux_error says how; a
 * GOAWAY is queued for output and every later call returns -EPROTO).
 * Events fire from inside this call. */
int fg_mux_input(struct fg_mux *m, const uint8_t *buf, size_t len, int64_t now_ns);
/* Writes whole frames into out (control frames first, then data by DRR)
 * and returns the bytes written; 0 when nothing is due or cap is below
 * FG_MUX_HDR_LEN + 1. pull_cb fires from inside this call. */
size_t fg_mux_output(struct fg_mux *m, uint8_t *out, size_t cap, int64_t now_ns);
/* Nonzero while fg_mux_output has something to write. */
int fg_mux_want_output(const struct fg_mux *m);
/* When the owner should call fg_mux_output next even without new input
 * (the next PING); INT64_MAX for never. */
int64_t fg_mux_next_timeout_ns(const struct fg_mux *m);
/* Sends GOAWAY(code): the peer opens no new streams, neither do we;
 * existing streams carry on. */
void fg_mux_goaway(struct fg_mux *m, uint32_t code);
/* The protocol error that ended the session, or NULL. */
const char *fg_mux_error(const struct fg_mux *m);

struct fg_mux_info {
	uint32_t streams;     /* live stream structs */
	uint64_t tx_credit;   /* session send credit */
	uint32_t rx_window;   /* session window granted to the peer (target) */
	uint64_t rx_buffered; /* received, not yet consumed, all streams */
	int64_t srtt_ns;      /* 0 until measured */
	/* when our PING went out if still unanswered, else 0: for the
	 * owner's keepalive */
	int64_t ping_unanswered_since_ns;
	uint64_t refused;     /* peer SYNs answered with RST */
	uint64_t churn_trips; /* times the churn limit was hit */
	int goaway_sent, goaway_recv;
	uint32_t goaway_code_recv;
};
void fg_mux_info(const struct fg_mux *m, struct fg_mux_info *out);

/* Opens a stream (its SYN goes out with the next output). Returns 0 and
 * *out, or -EPIPE (session dead), -ECONNREFUSED (GOAWAY sent or
 * received), -EMFILE (max_streams), -EOVERFLOW (stream ids exhausted),
 * -ENOMEM. */
int fg_mux_stream_open(struct fg_mux *m, struct fg_mux_stream **out);
uint32_t fg_mux_stream_id(const struct fg_mux_stream *s);
void fg_mux_stream_set_user(struct fg_mux_stream *s, void *user);
void *fg_mux_stream_user(const struct fg_mux_stream *s);
/* The owner has outbound bytes for s: pull_cb will be asked for them as
 * credit and fairness allow. */
void fg_mux_stream_want_send(struct fg_mux_stream *s);
/* No more outbound bytes after what pull_cb still returns: a FIN follows
 * once pull_cb returns 0. */
void fg_mux_stream_shutdown(struct fg_mux_stream *s);
/* The owner wrote n received bytes of s out (or dropped them): their
 * credit may go back to the peer. Returns 0, or -EINVAL if n is more than
 * s holds unconsumed (nothing changes). */
int fg_mux_stream_consumed(struct fg_mux_stream *s, size_t n);
/* Aborts s: RST goes out, no more events for s, its unconsumed bytes are
 * returned to the session window. */
void fg_mux_stream_reset(struct fg_mux_stream *s);
/* The owner lets go of s; the pointer is invalid afterwards. Graceful if
 * the peer has sent FIN and the owner has shut down (the FIN still goes
 * out), a reset otherwise. */
void fg_mux_stream_release(struct fg_mux_stream *s);

struct fg_mux_stream_info {
	uint64_t rx_buffered;	 /* received, not yet consumed */
	uint32_t rx_window;	 /* window target granted to the peer */
	uint64_t rx_peer_credit; /* what the peer may still send */
	uint64_t tx_credit;	 /* what we may still send */
	uint64_t tx_bytes, rx_bytes;
	int fin_sent, fin_recv, reset;
};
void fg_mux_stream_info(const struct fg_mux_stream *s, struct fg_mux_stream_info *out);

#endif
