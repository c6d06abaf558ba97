#include "tunnel/mux.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pool.h"
#include "core/util.h"

#define NS_PER_SEC	       1000000000LL
#define DEFAULT_MAX_STREAMS    1024
#define DEFAULT_STREAM_MAX_WIN (16u << 20)
#define DEFAULT_SESS_MAX_WIN   (64u << 20)
#define DEFAULT_CHURN	       1000
#define DEFAULT_PING_NS	       (15 * NS_PER_SEC)
/* Refused peer SYNs waiting for their RST to go out. A peer that outruns
 * this is flooding us faster than it reads: the session ends. */
#define REFUSE_RING 256
#define EPOCH_UNSET INT64_MIN

/* Intrusive circular list with a sentinel head; a detached node has NULL
 * links. */
struct link {
	struct link *prev, *next;
};

static void list_init(struct link *h)
{
	h->prev = h->next = h;
}

static int list_empty(const struct link *h)
{
	return h->next == h;
}

static int linked(const struct link *l)
{
	return l->next != NULL;
}

static void list_add_tail(struct link *h, struct link *l)
{
	l->prev = h->prev;
	l->next = h;
	h->prev->next = l;
	h->prev = l;
}

static void list_del(struct link *l)
{
	if (!linked(l))
		return;
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = NULL;
}

/* The receive side of one window (a stream's or the session's), as byte
 * offsets: the peer may send up to limit; recv arrived; consumed went out. */
struct win {
	uint64_t limit, recv, consumed;
	uint32_t target; /* window size granted on each update */
	int64_t epoch_ns;
	uint64_t epoch_consumed;
};

struct fg_mux_stream {
	struct fg_mux *m;
	uint32_t id;
	struct fg_mux_stream *hnext; /* hash chain */
	struct link ctrl;	     /* in m->ctrl: a control frame is due */
	struct link active;	     /* in m->active: DRR send queue */
	struct link dead;	     /* in m->dead: free at the end of the call */
	void *user;		     /* borrowed, the owner's */
	struct win rx;
	uint64_t tx_credit;
	uint64_t tx_bytes;
	uint32_t deficit;
	unsigned local : 1;	  /* we opened it */
	unsigned syn_pending : 1; /* SYN not sent yet */
	unsigned ack_pending : 1; /* ACK not sent yet */
	unsigned acked : 1;	  /* the peer ACKed our SYN */
	unsigned rst_pending : 1; /* RST not sent yet */
	unsigned reset : 1;	  /* reset by either side: no data, no events */
	unsigned want_send : 1;	  /* the owner has bytes for pull_cb */
	unsigned fin_pending : 1; /* the owner shut down its side */
	unsigned fin_sent : 1;
	unsigned fin_recv : 1;
	unsigned released : 1; /* the owner let go */
	unsigned blocked : 1;  /* ran out of credit with data to send */
	unsigned freeing : 1;  /* on m->dead */
};

struct fg_mux {
	struct fg_mux_config cfg;
	const struct fg_mux_ops *ops; /* borrowed */
	void *arg;		      /* borrowed */
	int is_dialer;
	uint32_t next_id;      /* next id we open */
	uint32_t last_peer_id; /* highest id the peer opened */
	struct fg_slab slab;
	struct fg_mux_stream **buckets; /* owned, nbuckets */
	uint32_t nbuckets, nstreams;
	struct link ctrl, active, dead;
	int in_call;
	/* session flow control */
	uint64_t tx_credit;
	struct win rx;
	/* ping */
	int ping_outstanding;
	uint32_t ping_value;
	int64_t ping_sent_ns, next_ping_ns, srtt_ns;
	int pong_pending;
	uint32_t pong_value;
	/* goaway */
	int goaway_pending, goaway_sent, goaway_recv, refusing;
	uint32_t goaway_code, goaway_code_recv;
	/* refused peer streams: RSTs to send */
	uint32_t refuse_ring[REFUSE_RING];
	uint32_t refuse_head, refuse_len;
	/* churn: peer opens + resets in the current second */
	int64_t churn_start;
	uint32_t churn_count;
	/* input: a partial header, or the rest of a DATA payload */
	uint8_t hdr[FG_MUX_HDR_LEN];
	size_t hdr_have;
	uint32_t cur_id, cur_left;
	uint16_t cur_flags;
	/* status */
	int dead_err;
	const char *error; /* static */
	int64_t now;
	uint64_t refused, churn_trips;
};

/* ---- header codec ---- */

void fg_mux_hdr_encode(const struct fg_mux_hdr *h, uint8_t out[FG_MUX_HDR_LEN])
{
	out[0] = h->version;
	out[1] = h->type;
	out[2] = (uint8_t)(h->flags >> 8);
	out[3] = (uint8_t)h->flags;
	for (int i = 0; i < 4; i++) {
		out[4 + i] = (uint8_t)(h->stream_id >> (24 - 8 * i));
		out[8 + i] = (uint8_t)(h->length >> (24 - 8 * i));
	}
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int fg_mux_hdr_decode(const uint8_t *buf, size_t len, struct fg_mux_hdr *h, const char **why)
{
	*why = NULL;
	if (len < FG_MUX_HDR_LEN)
		return -EAGAIN;
	h->version = buf[0];
	h->type = buf[1];
	h->flags = (uint16_t)(buf[2] << 8 | buf[3]);
	h->stream_id = get32(buf + 4);
	h->length = get32(buf + 8);
	if (h->version != FG_MUX_VERSION)
		*why = "unsupported mux version";
	else if (h->type > FG_MUX_GOAWAY)
		*why = "unknown frame type";
	else if (h->flags & ~(FG_MUX_SYN | FG_MUX_ACK | FG_MUX_FIN | FG_MUX_RST))
		*why = "unknown frame flag";
	else if ((h->flags & (FG_MUX_SYN | FG_MUX_ACK)) == (FG_MUX_SYN | FG_MUX_ACK) &&
		 h->type != FG_MUX_PING)
		*why = "SYN and ACK together";
	else if (h->type == FG_MUX_DATA && h->length > FG_MUX_MAX_DATA)
		*why = "DATA frame too long";
	else if (h->type == FG_MUX_DATA && h->stream_id == 0)
		*why = "DATA on stream 0";
	else if (h->type == FG_MUX_WINDOW && h->length > FG_MUX_MAX_CREDIT)
		*why = "WINDOW delta too large";
	else if (h->type == FG_MUX_WINDOW && h->stream_id == 0 && h->flags)
		*why = "flags on a session WINDOW";
	else if (h->type == FG_MUX_PING &&
		 (h->stream_id || (h->flags != FG_MUX_SYN && h->flags != FG_MUX_ACK)))
		*why = "bad PING";
	else if (h->type == FG_MUX_GOAWAY && (h->stream_id || h->flags))
		*why = "bad GOAWAY";
	return *why ? -EINVAL : FG_MUX_HDR_LEN;
}

static void put_frame(uint8_t *out, uint8_t type, uint16_t flags, uint32_t id, uint32_t length)
{
	struct fg_mux_hdr h = {FG_MUX_VERSION, type, flags, id, length};
	fg_mux_hdr_encode(&h, out);
}

/* ---- windows ---- */

static void win_init(struct win *w, uint32_t initial)
{
	memset(w, 0, sizeof(*w));
	w->limit = initial;
	w->target = initial;
	w->epoch_ns = EPOCH_UNSET;
}

/* Credit worth granting now: the owner consumed at least half a window
 * since the last grant (smaller updates would only add frames), or the
 * peer is down to its last quarter of credit and anything at all was
 * consumed. The second rule matters for the session window: bytes parked
 * on stalled streams count against it, and with half of it parked the
 * first rule alone would never fire again and starve every other stream. */
static uint64_t win_due(const struct win *w)
{
	uint64_t want = w->consumed + w->target;
	if (want <= w->limit)
		return 0;
	uint64_t d = want - w->limit;
	if (d >= w->target / 2 || w->limit - w->recv < w->target / 4)
		return d;
	return 0;
}

/* Doubles the window when the owner drained the last epoch's bytes in
 * less than about two RTTs per half window: then credit, not the reader,
 * is what limits throughput (bandwidth x RTT exceeds the window). */
static void win_autotune(struct fg_mux *m, struct win *w, uint32_t max)
{
	if (!m->cfg.no_autotune && m->srtt_ns > 0 && w->epoch_ns != EPOCH_UNSET &&
	    w->target < max) {
		double in_epoch = (double)(w->consumed - w->epoch_consumed);
		double elapsed = (double)(m->now - w->epoch_ns);
		if (elapsed * w->target < 4.0 * in_epoch * (double)m->srtt_ns)
			w->target = (uint32_t)FG_MIN((uint64_t)w->target * 2, (uint64_t)max);
	}
	w->epoch_ns = m->now;
	w->epoch_consumed = w->consumed;
}

/* Grants the credit due; returns the delta for a WINDOW frame. */
static uint32_t win_grant(struct fg_mux *m, struct win *w, uint32_t max)
{
	win_autotune(m, w, max);
	uint64_t want = w->consumed + w->target;
	if (want <= w->limit)
		return 0;
	uint32_t d = (uint32_t)(want - w->limit);
	w->limit = want;
	return d;
}

/* ---- streams: lookup, lists, lifetime ---- */

static uint32_t bucket(const struct fg_mux *m, uint32_t id)
{
	return (id * 2654435761u) & (m->nbuckets - 1);
}

static struct fg_mux_stream *lookup(const struct fg_mux *m, uint32_t id)
{
	struct fg_mux_stream *s = m->buckets[bucket(m, id)];
	while (s && s->id != id)
		s = s->hnext;
	return s;
}

static void hash_del(struct fg_mux *m, struct fg_mux_stream *s)
{
	struct fg_mux_stream **pp = &m->buckets[bucket(m, s->id)];
	while (*pp && *pp != s)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = s->hnext;
}

static int is_peer_id(const struct fg_mux *m, uint32_t id)
{
	/* the dialer's streams are odd */
	return (id & 1) == (m->is_dialer ? 0u : 1u);
}

/* An id that was in use once and is gone now: late frames are ignored. */
static int stale_id(const struct fg_mux *m, uint32_t id)
{
	return is_peer_id(m, id) ? id <= m->last_peer_id : id < m->next_id;
}

static struct fg_mux_stream *stream_new(struct fg_mux *m, uint32_t id, int local)
{
	struct fg_mux_stream *s = fg_slab_alloc(&m->slab);
	if (!s)
		return NULL;
	s->m = m;
	s->id = id;
	s->local = local ? 1 : 0;
	win_init(&s->rx, FG_MUX_INITIAL_STREAM_WINDOW);
	s->tx_credit = FG_MUX_INITIAL_STREAM_WINDOW;
	uint32_t b = bucket(m, id);
	s->hnext = m->buckets[b];
	m->buckets[b] = s;
	m->nstreams++;
	return s;
}

/* Gives the session window back what the owner will never consume. */
static void drop_rx(struct fg_mux_stream *s)
{
	s->m->rx.consumed += s->rx.recv - s->rx.consumed;
	s->rx.consumed = s->rx.recv;
}

static void stream_free(struct fg_mux *m, struct fg_mux_stream *s)
{
	list_del(&s->ctrl);
	list_del(&s->active);
	list_del(&s->dead);
	hash_del(m, s);
	drop_rx(s);
	m->nstreams--;
	fg_slab_free(&m->slab, s);
}

static void flush_dead(struct fg_mux *m)
{
	while (!list_empty(&m->dead)) {
		struct fg_mux_stream *s = FG_CONTAINER_OF(m->dead.next, struct fg_mux_stream, dead);
		stream_free(m, s);
	}
}

static int stream_done(const struct fg_mux_stream *s)
{
	return (s->reset && !s->rst_pending) || (s->fin_sent && s->fin_recv);
}

/* Frees s once the owner let go and nothing is left to send for it. Inside
 * a call the free waits until the call ends (callers hold pointers). */
static void maybe_finish(struct fg_mux_stream *s)
{
	struct fg_mux *m = s->m;
	if (!s->released || s->freeing || !stream_done(s))
		return;
	s->freeing = 1;
	list_del(&s->ctrl);
	list_del(&s->active);
	list_add_tail(&m->dead, &s->dead);
	if (!m->in_call)
		flush_dead(m);
}

static void ctrl_add(struct fg_mux_stream *s)
{
	if (!linked(&s->ctrl))
		list_add_tail(&s->m->ctrl, &s->ctrl);
}

static void activate(struct fg_mux_stream *s)
{
	if (linked(&s->active) || s->reset || s->fin_sent || s->freeing)
		return;
	if ((s->want_send && s->tx_credit > 0) || (s->fin_pending && !s->want_send))
		list_add_tail(&s->m->active, &s->active);
}

static void event(struct fg_mux *m, struct fg_mux_stream *s, enum fg_mux_event ev,
		  const uint8_t *data, size_t len)
{
	/* a released stream hears nothing; a reset one only its RST */
	if (s && (s->released || (s->reset && ev != FG_MUX_EV_RST)))
		return;
	m->ops->event_cb(m, s, ev, data, len, m->arg);
}

/* ---- session ---- */

static void queue_goaway(struct fg_mux *m, uint32_t code)
{
	m->goaway_pending = 1;
	m->goaway_code = code;
	m->refusing = 1;
}

static int fail(struct fg_mux *m, const char *why)
{
	if (!m->dead_err) {
		m->dead_err = -EPROTO;
		m->error = why;
		queue_goaway(m, FG_MUX_GO_PROTOCOL);
	}
	return -EPROTO;
}

struct fg_mux *fg_mux_new(const struct fg_mux_config *cfg, int is_dialer,
			  const struct fg_mux_ops *ops, void *arg)
{
	struct fg_mux_config c = cfg ? *cfg : (struct fg_mux_config){0};
	if (!c.max_streams)
		c.max_streams = DEFAULT_MAX_STREAMS;
	if (!c.max_stream_window)
		c.max_stream_window = DEFAULT_STREAM_MAX_WIN;
	if (!c.max_session_window)
		c.max_session_window = DEFAULT_SESS_MAX_WIN;
	if (!c.churn_per_sec)
		c.churn_per_sec = DEFAULT_CHURN;
	if (!c.quantum)
		c.quantum = FG_MUX_MAX_DATA;
	if (!c.ping_interval_ns)
		c.ping_interval_ns = DEFAULT_PING_NS;
	if (c.max_stream_window < FG_MUX_INITIAL_STREAM_WINDOW ||
	    c.max_stream_window > FG_MUX_MAX_CREDIT ||
	    c.max_session_window < FG_MUX_INITIAL_SESSION_WINDOW ||
	    c.max_session_window > FG_MUX_MAX_CREDIT || c.max_streams > (1u << 24))
		return NULL;
	struct fg_mux *m = fg_calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cfg = c;
	m->ops = ops;
	m->arg = arg;
	m->is_dialer = is_dialer ? 1 : 0;
	m->next_id = is_dialer ? 1 : 2;
	m->nbuckets = 16;
	while (m->nbuckets < c.max_streams)
		m->nbuckets <<= 1;
	m->buckets = fg_calloc(m->nbuckets, sizeof(*m->buckets));
	if (!m->buckets) {
		fg_free(m);
		return NULL;
	}
	fg_slab_init(&m->slab, sizeof(struct fg_mux_stream));
	list_init(&m->ctrl);
	list_init(&m->active);
	list_init(&m->dead);
	m->tx_credit = FG_MUX_INITIAL_SESSION_WINDOW;
	win_init(&m->rx, FG_MUX_INITIAL_SESSION_WINDOW);
	m->churn_start = INT64_MIN;
	return m;
}

void fg_mux_free(struct fg_mux *m)
{
	if (!m)
		return;
	fg_slab_deinit(&m->slab);
	fg_free(m->buckets);
	fg_free(m);
}

const char *fg_mux_error(const struct fg_mux *m)
{
	return m->error;
}

void fg_mux_goaway(struct fg_mux *m, uint32_t code)
{
	if (!m->goaway_sent || m->goaway_code != code)
		queue_goaway(m, code);
}

/* Counts one peer open or reset. Returns nonzero past the limit: then a
 * GOAWAY(CHURN) is queued and new streams are refused from now on. */
static int churn(struct fg_mux *m)
{
	if (m->churn_start == INT64_MIN || m->now - m->churn_start >= NS_PER_SEC ||
	    m->now < m->churn_start) {
		m->churn_start = m->now;
		m->churn_count = 0;
	}
	if (++m->churn_count <= m->cfg.churn_per_sec)
		return 0;
	if (!m->refusing || m->goaway_code != FG_MUX_GO_CHURN) {
		m->churn_trips++;
		queue_goaway(m, FG_MUX_GO_CHURN);
	}
	return 1;
}

static int refuse(struct fg_mux *m, uint32_t id)
{
	if (m->refuse_len == REFUSE_RING)
		return fail(m, "peer opens streams faster than it reads refusals");
	m->refuse_ring[(m->refuse_head + m->refuse_len) % REFUSE_RING] = id;
	m->refuse_len++;
	m->refused++;
	return 0;
}

/* The peer's SYN for id (already checked new and of its parity). */
static int peer_open(struct fg_mux *m, uint32_t id)
{
	m->last_peer_id = id;
	int over = churn(m);
	if (over || m->refusing || m->nstreams >= m->cfg.max_streams)
		return refuse(m, id);
	struct fg_mux_stream *s = stream_new(m, id, 0);
	if (!s)
		return refuse(m, id);
	s->ack_pending = 1;
	ctrl_add(s);
	event(m, s, FG_MUX_EV_OPEN, NULL, 0);
	return 0;
}

static void peer_reset(struct fg_mux *m, struct fg_mux_stream *s)
{
	s->reset = 1;
	s->rst_pending = 0;
	s->syn_pending = s->ack_pending = 0;
	s->want_send = 0;
	list_del(&s->active);
	drop_rx(s);
	list_del(&s->ctrl);
	event(m, s, FG_MUX_EV_RST, NULL, 0);
	maybe_finish(s);
}

static void add_credit_stream(struct fg_mux *m, struct fg_mux_stream *s, uint32_t delta)
{
	if (!delta || s->reset)
		return;
	int was_empty = s->tx_credit == 0;
	s->tx_credit += delta;
	if (was_empty && s->blocked && !s->fin_sent) {
		s->blocked = 0;
		event(m, s, FG_MUX_EV_WRITABLE, NULL, 0);
	}
	activate(s);
}

/* Flags that take effect after the frame's payload: FIN and RST. */
static int frame_end(struct fg_mux *m, uint32_t id, uint16_t flags)
{
	struct fg_mux_stream *s = lookup(m, id);
	if (!s || s->freeing)
		return 0;
	if (flags & FG_MUX_RST) {
		churn(m);
		if (!s->reset)
			peer_reset(m, s);
		return 0;
	}
	if ((flags & FG_MUX_FIN) && !s->reset) {
		if (s->fin_recv)
			return fail(m, "second FIN on a stream");
		s->fin_recv = 1;
		event(m, s, FG_MUX_EV_FIN, NULL, 0);
		maybe_finish(s);
	}
	return 0;
}

static int frame_start(struct fg_mux *m, const struct fg_mux_hdr *h)
{
	switch (h->type) {
	case FG_MUX_PING:
		if (h->flags & FG_MUX_SYN) {
			m->pong_pending = 1;
			m->pong_value = h->length;
		} else if (m->ping_outstanding && h->length == m->ping_value) {
			int64_t sample = m->now - m->ping_sent_ns;
			if (sample < 0)
				sample = 0;
			m->srtt_ns = m->srtt_ns ? (7 * m->srtt_ns + sample) / 8 : sample;
			m->ping_outstanding = 0;
			m->next_ping_ns = m->now + m->cfg.ping_interval_ns;
		}
		return 0;
	case FG_MUX_GOAWAY:
		m->goaway_recv = 1;
		m->goaway_code_recv = h->length;
		event(m, NULL, FG_MUX_EV_GOAWAY, NULL, h->length);
		return 0;
	default: break;
	}
	if (h->stream_id == 0) { /* session WINDOW (DATA on 0 fails decode) */
		if (m->tx_credit + h->length > FG_MUX_MAX_CREDIT)
			return fail(m, "session credit above the maximum");
		m->tx_credit += h->length;
		return 0;
	}
	uint32_t id = h->stream_id;
	struct fg_mux_stream *s = lookup(m, id);
	if (h->flags & FG_MUX_SYN) {
		if (s || !is_peer_id(m, id) || id <= m->last_peer_id)
			return fail(m, "SYN for a stream id not new to the peer");
		int rc = peer_open(m, id);
		if (rc)
			return rc;
		s = lookup(m, id);
	} else if (!s && !stale_id(m, id)) {
		return fail(m, "frame for a stream never opened");
	}
	if (s && s->freeing)
		s = NULL;
	if ((h->flags & FG_MUX_ACK) && s) {
		if (!s->local || s->acked)
			return fail(m, "unexpected ACK");
		s->acked = 1;
		event(m, s, FG_MUX_EV_ACK, NULL, 0);
	}
	if (h->type == FG_MUX_WINDOW) {
		if (s && !s->reset) {
			if (s->tx_credit + h->length > FG_MUX_MAX_CREDIT)
				return fail(m, "stream credit above the maximum");
			add_credit_stream(m, s, h->length);
		}
		return frame_end(m, id, h->flags);
	}
	/* DATA: check both windows now, account bytes as they arrive */
	if (m->rx.recv + h->length > m->rx.limit)
		return fail(m, "session window exceeded");
	if (s && !s->reset) {
		if (s->fin_recv && h->length)
			return fail(m, "DATA after FIN");
		if (s->rx.recv + h->length > s->rx.limit)
			return fail(m, "stream window exceeded");
	}
	if (!h->length)
		return frame_end(m, id, h->flags);
	m->cur_id = id;
	m->cur_left = h->length;
	m->cur_flags = h->flags;
	return 0;
}

static void deliver(struct fg_mux *m, const uint8_t *p, size_t n)
{
	struct fg_mux_stream *s = lookup(m, m->cur_id);
	m->rx.recv += n;
	if (!s || s->reset || s->released || s->freeing) {
		m->rx.consumed += n; /* nobody will consume it: credit goes back */
		return;
	}
	s->rx.recv += n;
	event(m, s, FG_MUX_EV_DATA, p, n);
}

int fg_mux_input(struct fg_mux *m, const uint8_t *buf, size_t len, int64_t now_ns)
{
	if (m->dead_err)
		return m->dead_err;
	m->now = now_ns;
	m->in_call++;
	size_t off = 0;
	while (off < len && !m->dead_err) {
		if (m->cur_left) {
			size_t n = FG_MIN((size_t)m->cur_left, len - off);
			deliver(m, buf + off, n);
			off += n;
			m->cur_left -= (uint32_t)n;
			if (!m->cur_left)
				frame_end(m, m->cur_id, m->cur_flags);
			continue;
		}
		size_t take = FG_MIN(FG_MUX_HDR_LEN - m->hdr_have, len - off);
		memcpy(m->hdr + m->hdr_have, buf + off, take);
		m->hdr_have += take;
		off += take;
		if (m->hdr_have < FG_MUX_HDR_LEN)
			break;
		m->hdr_have = 0;
		struct fg_mux_hdr h;
		const char *why;
		if (fg_mux_hdr_decode(m->hdr, FG_MUX_HDR_LEN, &h, &why) < 0) {
			fail(m, why);
			break;
		}
		frame_start(m, &h);
	}
	m->in_call--;
	flush_dead(m);
	return m->dead_err;
}

/* ---- output ---- */

static int ping_due(const struct fg_mux *m)
{
	return m->cfg.ping_interval_ns > 0 && !m->ping_outstanding && m->now >= m->next_ping_ns;
}

/* Control frames, in order: GOAWAY, PING answer, PING, session WINDOW,
 * refusals, per-stream SYN/ACK/RST/WINDOW. Returns nonzero when all of
 * them went out. */
static int emit_control(struct fg_mux *m, uint8_t *out, size_t cap, size_t *w)
{
#define ROOM() (cap - *w >= FG_MUX_HDR_LEN)
	if (m->goaway_pending) {
		if (!ROOM())
			return 0;
		put_frame(out + *w, FG_MUX_GOAWAY, 0, 0, m->goaway_code);
		*w += FG_MUX_HDR_LEN;
		m->goaway_pending = 0;
		m->goaway_sent = 1;
	}
	if (m->dead_err)
		return 1;
	if (m->pong_pending) {
		if (!ROOM())
			return 0;
		put_frame(out + *w, FG_MUX_PING, FG_MUX_ACK, 0, m->pong_value);
		*w += FG_MUX_HDR_LEN;
		m->pong_pending = 0;
	}
	if (ping_due(m)) {
		if (!ROOM())
			return 0;
		m->ping_value++;
		m->ping_outstanding = 1;
		m->ping_sent_ns = m->now;
		put_frame(out + *w, FG_MUX_PING, FG_MUX_SYN, 0, m->ping_value);
		*w += FG_MUX_HDR_LEN;
	}
	if (win_due(&m->rx)) {
		if (!ROOM())
			return 0;
		uint32_t d = win_grant(m, &m->rx, m->cfg.max_session_window);
		put_frame(out + *w, FG_MUX_WINDOW, 0, 0, d);
		*w += FG_MUX_HDR_LEN;
	}
	while (m->refuse_len) {
		if (!ROOM())
			return 0;
		put_frame(out + *w, FG_MUX_WINDOW, FG_MUX_RST, m->refuse_ring[m->refuse_head], 0);
		*w += FG_MUX_HDR_LEN;
		m->refuse_head = (m->refuse_head + 1) % REFUSE_RING;
		m->refuse_len--;
	}
	while (!list_empty(&m->ctrl)) {
		struct fg_mux_stream *s = FG_CONTAINER_OF(m->ctrl.next, struct fg_mux_stream, ctrl);
		uint16_t flags = 0;
		uint32_t delta = 0;
		if (s->rst_pending && s->syn_pending) {
			/* the peer never heard of it: nothing to reset */
			s->rst_pending = s->syn_pending = 0;
		} else {
			if (!ROOM())
				return 0;
			flags = (s->syn_pending ? FG_MUX_SYN : 0) |
				(s->ack_pending ? FG_MUX_ACK : 0) |
				(s->rst_pending ? FG_MUX_RST : 0);
			if (!s->reset && win_due(&s->rx)) {
				uint32_t before = s->rx.target;
				delta = win_grant(m, &s->rx, m->cfg.max_stream_window);
				/* keep the session window ahead of a growing stream */
				if (s->rx.target > before && m->rx.target < 2ull * s->rx.target)
					m->rx.target =
					    (uint32_t)FG_MIN(2ull * s->rx.target,
							     (uint64_t)m->cfg.max_session_window);
			}
			if (flags || delta) {
				put_frame(out + *w, FG_MUX_WINDOW, flags, s->id, delta);
				*w += FG_MUX_HDR_LEN;
			}
			s->syn_pending = s->ack_pending = s->rst_pending = 0;
		}
		list_del(&s->ctrl);
		maybe_finish(s);
	}
	return 1;
#undef ROOM
}

static size_t emit_data(struct fg_mux *m, uint8_t *out, size_t cap, size_t w)
{
	while (!list_empty(&m->active) && m->tx_credit > 0) {
		if (cap - w < FG_MUX_HDR_LEN + 1)
			break;
		struct fg_mux_stream *s =
		    FG_CONTAINER_OF(m->active.next, struct fg_mux_stream, active);
		if (!s->deficit)
			s->deficit = m->cfg.quantum;
		if (s->want_send && s->tx_credit > 0) {
			size_t max = FG_MIN(s->tx_credit, m->tx_credit);
			max = FG_MIN(max, (size_t)s->deficit);
			max = FG_MIN(max, (size_t)FG_MUX_MAX_DATA);
			max = FG_MIN(max, cap - w - FG_MUX_HDR_LEN);
			size_t n = m->ops->pull_cb(m, s, out + w + FG_MUX_HDR_LEN, max, m->arg);
			FG_BUG_ON(n > max);
			if (s->reset || s->released)
				continue; /* the owner reset it from pull: left the queue */
			if (n) {
				uint16_t fl = (s->syn_pending ? FG_MUX_SYN : 0) |
					      (s->ack_pending ? FG_MUX_ACK : 0);
				/* DATA carries a pending SYN/ACK: it can never overtake them */
				s->syn_pending = s->ack_pending = 0;
				put_frame(out + w, FG_MUX_DATA, fl, s->id, (uint32_t)n);
				w += FG_MUX_HDR_LEN + n;
				s->tx_credit -= n;
				m->tx_credit -= n;
				s->tx_bytes += n;
				s->deficit -= (uint32_t)n;
				if (!s->deficit) { /* turn over: to the back of the queue */
					list_del(&s->active);
					list_add_tail(&m->active, &s->active);
				}
				continue;
			}
			s->want_send = 0;
		}
		if (!s->want_send && s->fin_pending && !s->fin_sent) {
			uint16_t fl = FG_MUX_FIN | (s->syn_pending ? FG_MUX_SYN : 0) |
				      (s->ack_pending ? FG_MUX_ACK : 0);
			s->syn_pending = s->ack_pending = 0;
			put_frame(out + w, FG_MUX_DATA, fl, s->id, 0);
			w += FG_MUX_HDR_LEN;
			s->fin_sent = 1;
		}
		if (s->want_send && s->tx_credit == 0)
			s->blocked = 1;
		s->deficit = 0;
		list_del(&s->active);
		maybe_finish(s);
	}
	return w;
}

size_t fg_mux_output(struct fg_mux *m, uint8_t *out, size_t cap, int64_t now_ns)
{
	m->now = now_ns;
	if (cap < FG_MUX_HDR_LEN)
		return 0;
	m->in_call++;
	size_t w = 0;
	if (emit_control(m, out, cap, &w) && !m->dead_err)
		w = emit_data(m, out, cap, w);
	m->in_call--;
	flush_dead(m);
	return w;
}

int fg_mux_want_output(const struct fg_mux *m)
{
	if (m->goaway_pending)
		return 1;
	if (m->dead_err)
		return 0;
	return m->pong_pending || ping_due(m) || win_due(&m->rx) || m->refuse_len ||
	       !list_empty(&m->ctrl) || (!list_empty(&m->active) && m->tx_credit > 0);
}

int64_t fg_mux_next_timeout_ns(const struct fg_mux *m)
{
	if (m->dead_err || m->cfg.ping_interval_ns <= 0 || m->ping_outstanding)
		return INT64_MAX;
	return m->next_ping_ns;
}

void fg_mux_info(const struct fg_mux *m, struct fg_mux_info *out)
{
	memset(out, 0, sizeof(*out));
	out->streams = m->nstreams;
	out->tx_credit = m->tx_credit;
	out->rx_window = m->rx.target;
	out->rx_buffered = m->rx.recv - m->rx.consumed;
	out->srtt_ns = m->srtt_ns;
	out->ping_unanswered_since_ns = m->ping_outstanding ? m->ping_sent_ns : 0;
	out->refused = m->refused;
	out->churn_trips = m->churn_trips;
	out->goaway_sent = m->goaway_sent;
	out->goaway_recv = m->goaway_recv;
	out->goaway_code_recv = m->goaway_code_recv;
}

/* ---- stream API ---- */

int fg_mux_stream_open(struct fg_mux *m, struct fg_mux_stream **out)
{
	*out = NULL;
	if (m->dead_err)
		return -EPIPE;
	if (m->refusing || m->goaway_recv)
		return -ECONNREFUSED;
	if (m->nstreams >= m->cfg.max_streams)
		return -EMFILE;
	if (m->next_id > UINT32_MAX - 2)
		return -EOVERFLOW;
	struct fg_mux_stream *s = stream_new(m, m->next_id, 1);
	if (!s)
		return -ENOMEM;
	m->next_id += 2;
	s->syn_pending = 1;
	ctrl_add(s);
	*out = s;
	return 0;
}

uint32_t fg_mux_stream_id(const struct fg_mux_stream *s)
{
	return s->id;
}

void fg_mux_stream_set_user(struct fg_mux_stream *s, void *user)
{
	s->user = user;
}

void *fg_mux_stream_user(const struct fg_mux_stream *s)
{
	return s->user;
}

void fg_mux_stream_want_send(struct fg_mux_stream *s)
{
	if (s->reset || s->fin_sent || s->released)
		return;
	s->want_send = 1;
	if (s->tx_credit == 0)
		s->blocked = 1;
	activate(s);
}

void fg_mux_stream_shutdown(struct fg_mux_stream *s)
{
	if (s->reset || s->fin_pending)
		return;
	s->fin_pending = 1;
	activate(s);
}

int fg_mux_stream_consumed(struct fg_mux_stream *s, size_t n)
{
	if (s->reset)
		return 0; /* already given back */
	if (n > s->rx.recv - s->rx.consumed)
		return -EINVAL;
	s->rx.consumed += n;
	s->m->rx.consumed += n;
	if (win_due(&s->rx) && !s->fin_recv)
		ctrl_add(s);
	return 0;
}

void fg_mux_stream_reset(struct fg_mux_stream *s)
{
	if (s->reset)
		return;
	s->reset = 1;
	s->want_send = 0;
	s->rst_pending = 1;
	s->ack_pending = 0;
	list_del(&s->active);
	drop_rx(s);
	ctrl_add(s);
	maybe_finish(s);
}

void fg_mux_stream_release(struct fg_mux_stream *s)
{
	if (s->released)
		return;
	if (!s->reset && s->fin_recv && s->fin_pending) {
		/* graceful: what is left is the FIN, no more pulls */
		s->want_send = 0;
		s->released = 1;
		list_del(&s->active);
		activate(s);
		maybe_finish(s);
		return;
	}
	fg_mux_stream_reset(s);
	s->released = 1;
	maybe_finish(s);
}

void fg_mux_stream_info(const struct fg_mux_stream *s, struct fg_mux_stream_info *out)
{
	memset(out, 0, sizeof(*out));
	out->rx_buffered = s->rx.recv - s->rx.consumed;
	out->rx_window = s->rx.target;
	out->rx_peer_credit = s->rx.limit - s->rx.recv;
	out->tx_credit = s->tx_credit;
	out->tx_bytes = s->tx_bytes;
	out->rx_bytes = s->rx.recv;
	out->fin_sent = s->fin_sent;
	out->fin_recv = s->fin_recv;
	out->reset = s->reset;
}
