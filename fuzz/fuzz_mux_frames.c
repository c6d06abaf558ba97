/* libFuzzer harness: arbitrary bytes into a mux session, in chunks, with an
 * owner that consumes, resets, releases and opens streams as the input
 * says, and output pulled between chunks. The session must never crash,
 * must stay dead once it reports -EPROTO, must never hold more than it
 * granted, and everything it writes must decode as valid frames.
 * data[0]: bit 0 dialer, bits 1-3 max streams, bits 4-7 churn limit. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tunnel/mux.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

#define LIVE	       32
#define FG_MIN_N(a, b) ((a) < (b) ? (a) : (b))

struct owner {
	struct fg_mux_stream *live[LIVE];
	int nlive;
	uint32_t rng;
};

static uint32_t next(struct owner *o)
{
	o->rng ^= o->rng << 13;
	o->rng ^= o->rng >> 17;
	o->rng ^= o->rng << 5;
	return o->rng;
}

static void forget(struct owner *o, struct fg_mux_stream *s)
{
	for (int i = 0; i < o->nlive; i++)
		if (o->live[i] == s) {
			o->live[i] = o->live[--o->nlive];
			return;
		}
}

static void keep(struct owner *o, struct fg_mux_stream *s)
{
	if (o->nlive == LIVE) {
		fg_mux_stream_release(s); /* resets it */
		return;
	}
	o->live[o->nlive++] = s;
	fg_mux_stream_set_user(s, o);
	if (next(o) & 1)
		fg_mux_stream_want_send(s);
}

static void on_event(struct fg_mux *m, struct fg_mux_stream *s, enum fg_mux_event ev,
		     const uint8_t *data, size_t len, void *arg)
{
	struct owner *o = arg;
	struct fg_mux_stream_info si;
	switch (ev) {
	case FG_MUX_EV_OPEN: keep(o, s); break;
	case FG_MUX_EV_DATA:
		fg_mux_stream_info(s, &si);
		CHECK(si.rx_buffered <= si.rx_window && len <= FG_MUX_MAX_DATA);
		if (next(o) % 4)
			CHECK(fg_mux_stream_consumed(s, len) == 0);
		break;
	case FG_MUX_EV_FIN:
		fg_mux_stream_shutdown(s);
		forget(o, s);
		fg_mux_stream_release(s);
		break;
	case FG_MUX_EV_RST:
		forget(o, s);
		fg_mux_stream_release(s);
		break;
	default: break;
	}
}

static size_t on_pull(struct fg_mux *m, struct fg_mux_stream *s, uint8_t *buf, size_t max,
		      void *arg)
{
	struct owner *o = arg;
	size_t want = next(o) % 3 ? next(o) % 3000 : 0;
	size_t n = FG_MIN_N(max, want);
	memset(buf, 0x5a, n);
	return n;
}

static const struct fg_mux_ops ops = {on_event, on_pull};

/* Every frame the session writes must pass the decoder. */
static void check_output(const uint8_t *out, size_t n)
{
	size_t off = 0;
	while (off < n) {
		struct fg_mux_hdr h;
		const char *why;
		CHECK(fg_mux_hdr_decode(out + off, n - off, &h, &why) == FG_MUX_HDR_LEN);
		off += FG_MUX_HDR_LEN + (h.type == FG_MUX_DATA ? h.length : 0);
	}
	CHECK(off == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct owner o = {.rng = 0x9e3779b9u ^ data[1]};
	struct fg_mux_config cfg = {
	    .max_streams = 1 + ((data[0] >> 1) & 7),
	    .churn_per_sec = 1 + (data[0] >> 4),
	    .quantum = 1000,
	};
	struct fg_mux *m = fg_mux_new(&cfg, data[0] & 1, &ops, &o);
	CHECK(m);
	static uint8_t out[70000];
	const uint8_t *p = data + 2;
	size_t left = size - 2;
	int64_t now = 0;
	int dead = 0;
	while (left) {
		size_t c = 1 + next(&o) % 64;
		if (c > left)
			c = left;
		/* a copy of exactly the chunk, so ASan sees any overread */
		uint8_t *chunk = malloc(c);
		memcpy(chunk, p, c);
		int rc = fg_mux_input(m, chunk, c, now);
		free(chunk);
		CHECK(rc == 0 || rc == -EPROTO);
		if (dead)
			CHECK(rc == -EPROTO);
		if (rc) {
			dead = 1;
			CHECK(fg_mux_error(m) != NULL);
		}
		p += c, left -= c;
		now += (int64_t)(next(&o) % 100000000);
		uint32_t r = next(&o);
		if (!dead && (r & 7) == 0 && o.nlive < LIVE) {
			struct fg_mux_stream *s;
			if (fg_mux_stream_open(m, &s) == 0)
				keep(&o, s);
		}
		if (o.nlive && (r & 0x30) == 0x30) {
			struct fg_mux_stream *s = o.live[(r >> 8) % (uint32_t)o.nlive];
			struct fg_mux_stream_info si;
			fg_mux_stream_info(s, &si);
			CHECK(fg_mux_stream_consumed(s, (size_t)si.rx_buffered) == 0);
			if (r & 0x40) {
				forget(&o, s);
				fg_mux_stream_release(s);
			}
		}
		size_t cap = 12 + next(&o) % sizeof(out);
		if (cap > sizeof(out))
			cap = sizeof(out);
		size_t n = fg_mux_output(m, out, cap, now);
		CHECK(n <= cap);
		check_output(out, n);
	}
	fg_mux_free(m);
	return 0;
}
