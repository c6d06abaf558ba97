/* Stream multiplexer (tunnel/mux): two sessions wired back to back in
 * memory, bytes split at random, time passed in by hand. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tunnel/mux.h"

#define MAXID	       2048
#define FG_MIN_T(a, b) ((a) < (b) ? (a) : (b))

struct side;

struct tstream {
	struct side *side;
	struct fg_mux_stream *s;
	uint32_t id;
	uint64_t to_send, sent;
	uint32_t rng;
	uint64_t tx_hash, rx_hash, received;
	int shut, fin_recv, acked, rst, released, stall;
};

struct side {
	struct fg_mux *m;
	struct tstream *by_id[MAXID];
	struct tstream pool[MAXID];
	int npool;
	uint32_t stall_id;		     /* do not consume on this stream */
	uint64_t (*reply_size)(uint32_t id); /* bytes to send on peer-opened streams */
	int window_violations;
	int goaway;
	uint32_t goaway_code;
	uint64_t writable_events;
	uint32_t max_window_seen;
};

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static struct tstream *track(struct side *sd, struct fg_mux_stream *s, uint64_t to_send)
{
	assert_true(sd->npool < MAXID);
	struct tstream *t = &sd->pool[sd->npool++];
	memset(t, 0, sizeof(*t));
	t->side = sd;
	t->s = s;
	t->id = fg_mux_stream_id(s);
	t->to_send = to_send;
	t->rng = t->id * 2654435761u + 1;
	t->tx_hash = t->rx_hash = 0xcbf29ce484222325ull;
	t->stall = t->id == sd->stall_id;
	assert_true(t->id < MAXID);
	sd->by_id[t->id] = t;
	fg_mux_stream_set_user(s, t);
	if (to_send)
		fg_mux_stream_want_send(s);
	else {
		fg_mux_stream_shutdown(s);
		t->shut = 1;
	}
	return t;
}

static void on_event(struct fg_mux *m, struct fg_mux_stream *s, enum fg_mux_event ev,
		     const uint8_t *data, size_t len, void *arg)
{
	struct side *sd = arg;
	struct tstream *t = s ? fg_mux_stream_user(s) : NULL;
	struct fg_mux_stream_info si;
	switch (ev) {
	case FG_MUX_EV_OPEN:
		track(sd, s, sd->reply_size ? sd->reply_size(fg_mux_stream_id(s)) : 0);
		break;
	case FG_MUX_EV_ACK: t->acked = 1; break;
	case FG_MUX_EV_DATA:
		t->rx_hash = fnv(t->rx_hash, data, len);
		t->received += len;
		fg_mux_stream_info(s, &si);
		/* what we hold never exceeds what we granted */
		if (si.rx_buffered > si.rx_window)
			sd->window_violations++;
		if (si.rx_window > sd->max_window_seen)
			sd->max_window_seen = si.rx_window;
		if (!t->stall)
			assert_int_equal(fg_mux_stream_consumed(s, len), 0);
		break;
	case FG_MUX_EV_FIN: t->fin_recv = 1; break;
	case FG_MUX_EV_RST: t->rst = 1; break;
	case FG_MUX_EV_WRITABLE: sd->writable_events++; break;
	case FG_MUX_EV_GOAWAY:
		sd->goaway = 1;
		sd->goaway_code = (uint32_t)len;
		break;
	}
}

static size_t on_pull(struct fg_mux *m, struct fg_mux_stream *s, uint8_t *buf, size_t max,
		      void *arg)
{
	struct tstream *t = fg_mux_stream_user(s);
	size_t n = (size_t)FG_MIN_T(max, t->to_send - t->sent);
	for (size_t i = 0; i < n; i++) {
		t->rng ^= t->rng << 13;
		t->rng ^= t->rng >> 17;
		t->rng ^= t->rng << 5;
		buf[i] = (uint8_t)t->rng;
	}
	t->tx_hash = fnv(t->tx_hash, buf, n);
	t->sent += n;
	if (t->sent == t->to_send && !t->shut) {
		fg_mux_stream_shutdown(s);
		t->shut = 1;
	}
	return n;
}

static const struct fg_mux_ops ops = {on_event, on_pull};

static void side_init(struct side *sd, int dialer, const struct fg_mux_config *cfg)
{
	memset(sd, 0, sizeof(*sd));
	sd->m = fg_mux_new(cfg, dialer, &ops, sd);
	assert_non_null(sd->m);
}

/* Feeds len bytes in random pieces; every piece must be accepted. */
static void feed(struct side *sd, const uint8_t *buf, size_t len, int64_t now)
{
	size_t off = 0;
	while (off < len) {
		size_t c = 1 + (size_t)rand() % 40000;
		if (rand() % 4 == 0)
			c = 1 + (size_t)rand() % 13;
		if (c > len - off)
			c = len - off;
		assert_int_equal(fg_mux_input(sd->m, buf + off, c, now), 0);
		off += c;
	}
}

/* Releases streams that are finished both ways (graceful) or reset. */
static void sweep(struct side *sd)
{
	for (int i = 0; i < sd->npool; i++) {
		struct tstream *t = &sd->pool[i];
		if (t->released)
			continue;
		if ((t->fin_recv && t->shut) || t->rst) {
			fg_mux_stream_release(t->s);
			t->released = 1;
		}
	}
}

static uint8_t wire[512 * 1024];

/* One leg: a's output into b, with a random output size. */
static size_t leg(struct side *a, struct side *b, int64_t now)
{
	size_t cap = 13 + (size_t)rand() % (sizeof(wire) - 13);
	if (rand() % 8 == 0)
		cap = 13 + (size_t)rand() % 100;
	size_t n = fg_mux_output(a->m, wire, cap, now);
	assert_true(n <= cap);
	feed(b, wire, n, now);
	return n;
}

/* Runs both directions until neither has anything to say. Time moves by
 * step_ns per leg, so PING measures an RTT of about 2 steps. */
static int pump(struct side *a, struct side *b, int64_t *now, int64_t step_ns, int max_rounds)
{
	int rounds = 0;
	for (; rounds < max_rounds; rounds++) {
		size_t n1 = leg(a, b, *now);
		*now += step_ns;
		size_t n2 = leg(b, a, *now);
		*now += step_ns;
		sweep(a);
		sweep(b);
		if (!n1 && !n2 && !fg_mux_want_output(a->m) && !fg_mux_want_output(b->m))
			break;
	}
	return rounds;
}

static uint64_t rand_size(uint32_t id)
{
	return (uint64_t)((id * 7919u) % 150000u);
}

static void test_mux_header_roundtrip_and_rules(void **st)
{
	struct fg_mux_hdr h = {FG_MUX_VERSION, FG_MUX_DATA, FG_MUX_SYN | FG_MUX_FIN, 0x01020304,
			       FG_MUX_MAX_DATA},
			  g;
	uint8_t b[12];
	const char *why;
	fg_mux_hdr_encode(&h, b);
	assert_int_equal(b[0], 1);
	assert_int_equal(b[1], 0);
	assert_int_equal(b[3], 5);
	assert_int_equal(b[4], 1);
	assert_int_equal(b[7], 4);
	assert_int_equal(fg_mux_hdr_decode(b, 11, &g, &why), -EAGAIN);
	assert_int_equal(fg_mux_hdr_decode(b, 12, &g, &why), 12);
	assert_memory_equal(&h, &g, sizeof(h));
	h.length = FG_MUX_MAX_DATA + 1;
	fg_mux_hdr_encode(&h, b);
	assert_int_equal(fg_mux_hdr_decode(b, 12, &g, &why), -EINVAL);
	assert_string_equal(why, "DATA frame too long");
}

static void test_mux_200_streams_intact_and_stalled_reader_does_not_block_others(void **st)
{
	struct side *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	srand(1);
	side_init(a, 1, NULL);
	side_init(b, 0, NULL);
	a->reply_size = b->reply_size = rand_size;
	b->stall_id = 13; /* a's 7th stream: b never consumes it */
	for (int i = 0; i < 100; i++) {
		struct fg_mux_stream *s;
		assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
		track(a, s,
		      fg_mux_stream_id(s) == 13 ? 1000000 : rand_size(fg_mux_stream_id(s) + 1));
		assert_int_equal(fg_mux_stream_open(b->m, &s), 0);
		track(b, s, rand_size(fg_mux_stream_id(s) + 1));
	}
	int64_t now = 1000;
	pump(a, b, &now, 500000, 100000);
	/* every stream but the stalled one went through, both ways, intact */
	int done = 0;
	for (uint32_t id = 1; id <= 200; id++) {
		struct tstream *x = a->by_id[id], *y = b->by_id[id];
		assert_non_null(x);
		assert_non_null(y);
		if (id == 13)
			continue;
		assert_int_equal(x->received, y->sent);
		assert_int_equal(y->received, x->sent);
		assert_int_equal(x->sent, x->to_send);
		assert_int_equal(y->sent, y->to_send);
		assert_true(x->rx_hash == y->tx_hash);
		assert_true(y->rx_hash == x->tx_hash);
		assert_true(x->released && y->released);
		done++;
	}
	assert_int_equal(done, 199);
	/* the stalled one sits exactly at its window, on both ends */
	struct tstream *x = a->by_id[13], *y = b->by_id[13];
	assert_int_equal(y->received, FG_MUX_INITIAL_STREAM_WINDOW);
	assert_int_equal(x->sent, FG_MUX_INITIAL_STREAM_WINDOW);
	struct fg_mux_stream_info si;
	fg_mux_stream_info(x->s, &si);
	assert_int_equal(si.tx_credit, 0);
	fg_mux_stream_info(y->s, &si);
	assert_int_equal(si.rx_buffered, FG_MUX_INITIAL_STREAM_WINDOW);
	assert_int_equal(si.rx_peer_credit, 0);
	/* the finished streams were freed; only the stalled one is left */
	struct fg_mux_info mi;
	fg_mux_info(a->m, &mi);
	assert_int_equal(mi.streams, 1);
	fg_mux_info(b->m, &mi);
	assert_int_equal(mi.streams, 1);
	assert_int_equal(a->window_violations + b->window_violations, 0);
	assert_null(fg_mux_error(a->m));
	assert_null(fg_mux_error(b->m));

	/* the reader catches up: the rest flows and the stream completes */
	y->stall = 0;
	assert_int_equal(fg_mux_stream_consumed(y->s, FG_MUX_INITIAL_STREAM_WINDOW), 0);
	assert_int_equal(fg_mux_stream_consumed(y->s, 1), -EINVAL);
	pump(a, b, &now, 500000, 100000);
	assert_int_equal(y->received, 1000000);
	assert_true(y->rx_hash == x->tx_hash && x->rx_hash == y->tx_hash);
	assert_true(x->released && y->released);
	assert_true(a->writable_events > 0);
	fg_mux_info(a->m, &mi);
	assert_int_equal(mi.streams, 0);
	fg_mux_free(a->m);
	fg_mux_free(b->m);
	free(a);
	free(b);
}

static void test_mux_credit_returns_only_after_consumption(void **st)
{
	struct side *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct fg_mux_config cfg = {.no_autotune = 1};
	side_init(a, 1, &cfg);
	side_init(b, 0, &cfg);
	b->stall_id = 1;
	struct fg_mux_stream *s;
	assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
	struct tstream *x = track(a, s, 600000);
	int64_t now = 0;
	pump(a, b, &now, 1000, 1000);
	struct tstream *y = b->by_id[1];
	const uint32_t W = FG_MUX_INITIAL_STREAM_WINDOW;
	assert_int_equal(y->received, W);
	struct fg_mux_stream_info si;
	fg_mux_stream_info(x->s, &si);
	assert_int_equal(si.tx_credit, 0);
	/* nothing comes back until the reader consumes: more pumping moves
	 * no byte */
	pump(a, b, &now, 1000, 1000);
	assert_int_equal(y->received, W);
	fg_mux_stream_info(x->s, &si);
	assert_int_equal(si.tx_credit, 0);
	/* the peer is out of credit, so what was consumed goes back, exactly */
	assert_int_equal(fg_mux_stream_consumed(y->s, 1000), 0);
	pump(a, b, &now, 1000, 1000);
	assert_int_equal(y->received, W + 1000);
	fg_mux_stream_info(x->s, &si);
	assert_int_equal(si.tx_credit, 0);
	fg_mux_stream_info(y->s, &si);
	assert_int_equal(si.rx_buffered, W);
	assert_int_equal(si.rx_peer_credit, 0);
	/* half a window consumed at once goes back in one update */
	assert_int_equal(fg_mux_stream_consumed(y->s, W / 2), 0);
	pump(a, b, &now, 1000, 1000);
	assert_int_equal(y->received, W + 1000 + W / 2);
	fg_mux_stream_info(y->s, &si);
	assert_int_equal(si.rx_buffered, W);
	assert_int_equal(si.rx_window, W); /* no auto-tuning here */
	fg_mux_free(a->m);
	fg_mux_free(b->m);
	free(a);
	free(b);
}

static void test_mux_several_stalled_readers_do_not_starve_the_rest(void **st)
{
	struct side *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct fg_mux_config cfg = {.no_autotune = 1};
	side_init(a, 1, &cfg);
	side_init(b, 0, &cfg);
	/* three readers stop: 768 KiB of the 1 MiB session window parked */
	struct tstream *t[13];
	for (int i = 0; i < 13; i++) {
		struct fg_mux_stream *s;
		assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
		t[i] = track(a, s, i < 3 ? 4u << 20 : 600000);
	}
	int64_t now = 0;
	for (int round = 0; round < 2000; round++) {
		/* mark the stalled ones as soon as b knows them */
		for (int i = 0; i < 3; i++) {
			struct tstream *y = b->by_id[t[i]->id];
			if (y)
				y->stall = 1;
		}
		if (pump(a, b, &now, 1000, 1) == 0)
			break;
	}
	for (int i = 3; i < 13; i++) {
		struct tstream *y = b->by_id[t[i]->id];
		assert_int_equal(y->received, 600000);
		assert_true(y->rx_hash == t[i]->tx_hash);
	}
	for (int i = 0; i < 3; i++)
		assert_true(b->by_id[t[i]->id]->received <= FG_MUX_INITIAL_STREAM_WINDOW);
	struct fg_mux_info mi;
	fg_mux_info(b->m, &mi);
	assert_true(mi.rx_buffered <= FG_MUX_INITIAL_SESSION_WINDOW);
	fg_mux_free(a->m);
	fg_mux_free(b->m);
	free(a);
	free(b);
}

static void test_mux_window_grows_with_fast_reader_up_to_max(void **st)
{
	struct side *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	/* the reader keeps up, so credit is the bottleneck until the window
	 * covers what one round trip carries here (an output buffer or two) */
	struct fg_mux_config cfg = {.max_stream_window = 512u << 10};
	side_init(a, 1, &cfg);
	side_init(b, 0, &cfg);
	struct fg_mux_stream *s;
	assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
	struct tstream *x = track(a, s, 24u << 20);
	int64_t now = 0;
	pump(a, b, &now, 1000000, 100000);
	struct tstream *y = b->by_id[1];
	assert_int_equal(y->received, 24u << 20);
	assert_true(y->rx_hash == x->tx_hash);
	struct fg_mux_info mi;
	fg_mux_info(a->m, &mi);
	assert_true(mi.srtt_ns > 0);
	assert_int_equal(mi.ping_unanswered_since_ns, 0);
	/* the window doubled up to its ceiling and never beyond */
	assert_int_equal(b->max_window_seen, 512u << 10);
	assert_int_equal(b->window_violations, 0);
	fg_mux_free(a->m);
	fg_mux_free(b->m);
	free(a);
	free(b);
}

static void test_mux_drr_shares_between_busy_streams(void **st)
{
	struct side *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct fg_mux_config cfg = {.ping_interval_ns = -1};
	side_init(a, 1, &cfg);
	side_init(b, 0, &cfg);
	struct tstream *t[3];
	for (int i = 0; i < 3; i++) {
		struct fg_mux_stream *s;
		assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
		t[i] = track(a, s, 1u << 30);
	}
	static uint8_t buf[48 * 1024];
	int64_t now = 0;
	for (int r = 0; r < 40; r++) {
		size_t n = fg_mux_output(a->m, buf, sizeof(buf), now);
		feed(b, buf, n, now);
		n = fg_mux_output(b->m, buf, sizeof(buf), now);
		feed(a, buf, n, now);
		uint64_t lo = UINT64_MAX, hi = 0;
		for (int i = 0; i < 3; i++) {
			lo = FG_MIN_T(lo, t[i]->sent);
			hi = t[i]->sent > hi ? t[i]->sent : hi;
		}
		/* nobody gets more than one quantum ahead */
		assert_true(hi - lo <= FG_MUX_MAX_DATA);
	}
	assert_true(t[0]->sent > 500000);
	fg_mux_free(a->m);
	fg_mux_free(b->m);
	free(a);
	free(b);
}

static void test_mux_control_frames_go_before_data(void **st)
{
	struct side *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct fg_mux_config cfg = {.ping_interval_ns = -1};
	side_init(a, 1, &cfg);
	side_init(b, 0, &cfg);
	b->reply_size = rand_size;
	struct fg_mux_stream *s;
	assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
	track(a, s, 10u << 20);
	static uint8_t buf[256 * 1024];
	int64_t now = 0;
	for (int r = 0; r < 20; r++) {
		size_t n = fg_mux_output(a->m, buf, sizeof(buf), now);
		int seen_data = 0, ctrl_after_data = 0, ctrl = 0;
		for (size_t off = 0; off < n;) {
			struct fg_mux_hdr h;
			const char *why;
			assert_int_equal(fg_mux_hdr_decode(buf + off, n - off, &h, &why), 12);
			if (h.type == FG_MUX_DATA)
				seen_data = 1;
			else {
				ctrl++;
				ctrl_after_data |= seen_data;
			}
			off += 12 + (h.type == FG_MUX_DATA ? h.length : 0);
		}
		assert_false(ctrl_after_data);
		feed(b, buf, n, now);
		n = fg_mux_output(b->m, buf, sizeof(buf), now);
		feed(a, buf, n, now);
		/* a PING from b must be answered first thing */
		if (r == 5) {
			uint8_t ping[12];
			struct fg_mux_hdr h = {1, FG_MUX_PING, FG_MUX_SYN, 0, 77};
			fg_mux_hdr_encode(&h, ping);
			assert_int_equal(fg_mux_input(a->m, ping, 12, now), 0);
			n = fg_mux_output(a->m, buf, sizeof(buf), now);
			struct fg_mux_hdr g;
			const char *why;
			fg_mux_hdr_decode(buf, n, &g, &why);
			assert_int_equal(g.type, FG_MUX_PING);
			assert_int_equal(g.flags, FG_MUX_ACK);
			assert_int_equal(g.length, 77);
			feed(b, buf, n, now);
		}
	}
	fg_mux_free(a->m);
	fg_mux_free(b->m);
	free(a);
	free(b);
}

static void test_mux_churn_limit_sends_goaway_and_refuses(void **st)
{
	struct side *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct fg_mux_config cfg = {.churn_per_sec = 10};
	side_init(a, 1, NULL);
	side_init(b, 0, &cfg);
	int64_t now = 0;
	/* open and reset, fast: 5 opens + 5 resets reach the limit */
	for (int i = 0; i < 5; i++) {
		struct fg_mux_stream *s;
		assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
		/* more than a few rounds can carry: the stream stays open */
		struct tstream *t = track(a, s, 1u << 30);
		pump(a, b, &now, 1000, 3);
		assert_false(t->released);
		fg_mux_stream_reset(t->s);
		pump(a, b, &now, 1000, 3);
	}
	assert_false(a->goaway);
	struct fg_mux_stream *s;
	assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
	struct tstream *t = track(a, s, 10);
	pump(a, b, &now, 1000, 100);
	/* the 11th event in the second: refused and told to go away */
	assert_true(t->rst);
	assert_true(a->goaway);
	assert_int_equal(a->goaway_code, FG_MUX_GO_CHURN);
	struct fg_mux_info mi;
	fg_mux_info(b->m, &mi);
	assert_int_equal(mi.churn_trips, 1);
	assert_true(mi.refused >= 1);
	assert_int_equal(mi.streams, 0);
	assert_int_equal(fg_mux_stream_open(a->m, &s), -ECONNREFUSED);
	/* still refusing a second later: GOAWAY is for good */
	now += 2000000000LL;
	assert_null(fg_mux_error(b->m));
	fg_mux_free(a->m);
	fg_mux_free(b->m);
	free(a);
	free(b);
}

static void test_mux_max_streams_refuses_extra_with_rst(void **st)
{
	struct side *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct fg_mux_config cfg = {.max_streams = 4};
	side_init(a, 1, NULL);
	side_init(b, 0, &cfg);
	b->stall_id = 1;
	struct tstream *t[5];
	for (int i = 0; i < 5; i++) {
		struct fg_mux_stream *s;
		assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
		t[i] = track(a, s, 100);
	}
	int64_t now = 0;
	pump(a, b, &now, 1000, 100);
	for (int i = 0; i < 4; i++)
		assert_false(t[i]->rst);
	assert_true(t[4]->rst);
	assert_false(a->goaway);
	struct fg_mux_info mi;
	fg_mux_info(b->m, &mi);
	assert_int_equal(mi.refused, 1);
	/* local side has the same ceiling */
	struct side *c = calloc(1, sizeof(*c));
	side_init(c, 1, &cfg);
	struct fg_mux_stream *s;
	for (int i = 0; i < 4; i++)
		assert_int_equal(fg_mux_stream_open(c->m, &s), 0);
	assert_int_equal(fg_mux_stream_open(c->m, &s), -EMFILE);
	fg_mux_free(c->m);
	free(c);
	fg_mux_free(a->m);
	fg_mux_free(b->m);
	free(a);
	free(b);
}

static void test_mux_reset_gives_session_credit_back(void **st)
{
	struct side *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct fg_mux_config cfg = {.no_autotune = 1, .ping_interval_ns = -1};
	side_init(a, 1, &cfg);
	side_init(b, 0, &cfg);
	int64_t now = 0;
	/* Six streams in turn fill their window at a reader that never reads,
	 * then the reader resets them: 6 x 256 KiB is more than the 1 MiB
	 * session window, so the later ones only get bytes if each reset gave
	 * its unread bytes back to the session. */
	for (int i = 0; i < 6; i++) {
		struct fg_mux_stream *s;
		assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
		b->stall_id = fg_mux_stream_id(s);
		struct tstream *x = track(a, s, 1u << 20);
		pump(a, b, &now, 1000, 1000);
		struct tstream *y = b->by_id[x->id];
		assert_int_equal(y->received, FG_MUX_INITIAL_STREAM_WINDOW);
		struct fg_mux_info mi;
		fg_mux_info(b->m, &mi);
		assert_int_equal(mi.rx_buffered, FG_MUX_INITIAL_STREAM_WINDOW);
		fg_mux_stream_reset(y->s);
		y->rst = 1; /* sweep releases it */
		pump(a, b, &now, 1000, 1000);
		fg_mux_info(b->m, &mi);
		assert_int_equal(mi.rx_buffered, 0);
		assert_int_equal(mi.streams, 0);
		assert_true(x->rst);
		fg_mux_info(a->m, &mi);
		assert_int_equal(mi.streams, 0);
	}
	fg_mux_free(a->m);
	fg_mux_free(b->m);
	free(a);
	free(b);
}

struct bad {
	const char *name;
	uint8_t pre[24]; /* frames sent first (a valid SYN, say) */
	size_t pre_len;
	uint8_t f[12];
	int repeat; /* send f this many times (with a payload of its length) */
};

static void test_mux_malformed_frames_end_session_with_error(void **st)
{
	static const struct bad cases[] = {
	    {"bad version", {0}, 0, {2, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0}, 1},
	    {"unknown type", {0}, 0, {1, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, 1},
	    {"unknown flag", {0}, 0, {1, 1, 0, 0x10, 0, 0, 0, 1, 0, 0, 0, 0}, 1},
	    {"DATA too long", {0}, 0, {1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0x40, 1}, 1},
	    {"DATA on stream 0", {0}, 0, {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 1},
	    {"SYN with the listener's parity", {0}, 0, {1, 1, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0}, 1},
	    {"frame for a stream never opened", {0}, 0, {1, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1}, 1},
	    {"SYN twice",
	     {1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0},
	     12,
	     {1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0},
	     1},
	    {"stream window exceeded",
	     {1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0},
	     12,
	     {1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x40, 0},
	     17},
	    {"session credit overflow", {0}, 0, {1, 1, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0}, 1},
	    {"PING on a stream", {0}, 0, {1, 2, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0}, 1},
	    {"ACK for a stream we did not open",
	     {1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0},
	     12,
	     {1, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0},
	     1},
	};
	static uint8_t payload[FG_MUX_MAX_DATA];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad *c = &cases[i];
		struct side *b = calloc(1, sizeof(*b));
		side_init(b, 0, NULL);
		int rc = 0;
		if (c->pre_len)
			assert_int_equal(fg_mux_input(b->m, c->pre, c->pre_len, 0), 0);
		for (int r = 0; r < c->repeat && !rc; r++) {
			rc = fg_mux_input(b->m, c->f, 12, 0);
			uint32_t len = (uint32_t)c->f[8] << 24 | (uint32_t)c->f[9] << 16 |
				       (uint32_t)c->f[10] << 8 | c->f[11];
			if (!rc && c->f[1] == FG_MUX_DATA)
				rc = fg_mux_input(b->m, payload, len, 0);
		}
		if (rc != -EPROTO)
			fail_msg("case '%s': got %d", c->name, rc);
		assert_non_null(fg_mux_error(b->m));
		/* the session tells the peer why it goes, then refuses everything */
		uint8_t out[64];
		size_t n = fg_mux_output(b->m, out, sizeof(out), 0);
		assert_int_equal(n, 12);
		assert_int_equal(out[1], FG_MUX_GOAWAY);
		assert_int_equal(out[11], FG_MUX_GO_PROTOCOL);
		assert_int_equal(fg_mux_output(b->m, out, sizeof(out), 0), 0);
		uint8_t ping[12] = {1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9};
		assert_int_equal(fg_mux_input(b->m, ping, 12, 0), -EPROTO);
		struct fg_mux_stream *s;
		assert_int_equal(fg_mux_stream_open(b->m, &s), -EPIPE);
		fg_mux_free(b->m);
		free(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mux_header_roundtrip_and_rules),
	    cmocka_unit_test(test_mux_200_streams_intact_and_stalled_reader_does_not_block_others),
	    cmocka_unit_test(test_mux_credit_returns_only_after_consumption),
	    cmocka_unit_test(test_mux_several_stalled_readers_do_not_starve_the_rest),
	    cmocka_unit_test(test_mux_window_grows_with_fast_reader_up_to_max),
	    cmocka_unit_test(test_mux_drr_shares_between_busy_streams),
	    cmocka_unit_test(test_mux_control_frames_go_before_data),
	    cmocka_unit_test(test_mux_churn_limit_sends_goaway_and_refuses),
	    cmocka_unit_test(test_mux_max_streams_refuses_extra_with_rst),
	    cmocka_unit_test(test_mux_reset_gives_session_credit_back),
	    cmocka_unit_test(test_mux_malformed_frames_end_session_with_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
