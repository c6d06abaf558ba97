/* The tunnel pieces composed the way a link uses them: handshake, then
 * AEAD-sealed mux frames over an in-memory byte pipe cut at random. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <openssl/rand.h>

#include "tunnel/aead.h"
#include "tunnel/handshake.h"
#include "tunnel/mux.h"

#define NSTREAMS 20
#define MAXID	 64

static const uint8_t psk[32] = "stack-psk-stack-psk-stack-psk-st";

static int lookup(void *arg, uint32_t key_id, uint8_t *out, size_t *len)
{
	if (key_id != 3)
		return -ENOKEY;
	memcpy(out, psk, 32);
	*len = 32;
	return 0;
}

struct st {
	uint64_t to_send, sent, received;
	uint64_t tx_hash, rx_hash;
	uint32_t rng;
	int fin_recv, shut, released, rst;
	struct fg_mux_stream *s;
};

struct end {
	struct fg_mux *m;
	struct fg_aead_sealer seal;
	struct fg_aead_opener open;
	struct st st[MAXID];
	int dead; /* the opener failed: the link is over */
};

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void on_event(struct fg_mux *m, struct fg_mux_stream *s, enum fg_mux_event ev,
		     const uint8_t *data, size_t len, void *arg)
{
	struct end *e = arg;
	struct st *t = s ? &e->st[fg_mux_stream_id(s)] : NULL;
	switch (ev) {
	case FG_MUX_EV_OPEN:
		t->s = s;
		t->tx_hash = t->rx_hash = 0xcbf29ce484222325ull;
		fg_mux_stream_shutdown(s); /* the acceptor only reads */
		t->shut = 1;
		break;
	case FG_MUX_EV_DATA:
		t->rx_hash = fnv(t->rx_hash, data, len);
		t->received += len;
		assert_int_equal(fg_mux_stream_consumed(s, len), 0);
		break;
	case FG_MUX_EV_FIN: t->fin_recv = 1; break;
	case FG_MUX_EV_RST: t->rst = 1; break;
	default: break;
	}
}

static size_t on_pull(struct fg_mux *m, struct fg_mux_stream *s, uint8_t *buf, size_t max,
		      void *arg)
{
	struct end *e = arg;
	struct st *t = &e->st[fg_mux_stream_id(s)];
	size_t n = max < t->to_send - t->sent ? max : (size_t)(t->to_send - t->sent);
	for (size_t i = 0; i < n; i++) {
		t->rng = t->rng * 1664525u + 1013904223u;
		buf[i] = (uint8_t)(t->rng >> 24);
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

static uint8_t plain[256 * 1024], sealed[300 * 1024];

/* from's mux output, sealed, cut at random, opened by to, into to's mux.
 * flip: XOR this byte offset of the sealed bytes (-1: none). */
static size_t leg(struct end *from, struct end *to, int64_t now, long flip)
{
	size_t n = fg_mux_output(from->m, plain, sizeof(plain), now);
	if (!n)
		return 0;
	int w = fg_aead_seal(&from->seal, plain, n, sealed, sizeof(sealed));
	assert_int_equal(w, (int)fg_aead_sealed_size(n));
	if (flip >= 0 && flip < w)
		sealed[flip] ^= 0x40;
	size_t off = 0;
	static uint8_t out[FG_AEAD_MAX_PAYLOAD];
	while (off < (size_t)w && !to->dead) {
		size_t c = 1 + (size_t)rand() % 5000;
		if (c > (size_t)w - off)
			c = (size_t)w - off;
		size_t pos = 0;
		while (pos < c) {
			size_t used;
			int rc = fg_aead_open(&to->open, sealed + off + pos, c - pos, &used, out,
					      sizeof(out));
			pos += used;
			if (rc > 0) {
				assert_int_equal(fg_mux_input(to->m, out, (size_t)rc, now), 0);
				continue;
			}
			if (rc == -EAGAIN)
				break;
			assert_int_equal(rc, -EBADMSG);
			to->dead = 1;
			break;
		}
		off += c;
	}
	return n;
}

static void pump(struct end *a, struct end *b, int64_t *now, long flip)
{
	for (int r = 0; r < 10000; r++) {
		size_t n1 = leg(a, b, *now, flip);
		flip = -1;
		*now += 100000;
		size_t n2 = b->dead ? 0 : leg(b, a, *now, -1);
		*now += 100000;
		struct end *ends[2] = {a, b};
		for (int k = 0; k < 2; k++)
			for (int i = 0; i < MAXID; i++) {
				struct st *t = &ends[k]->st[i];
				if (t->s && !t->released && t->fin_recv && t->shut) {
					fg_mux_stream_release(t->s);
					t->released = 1;
				}
			}
		if ((!n1 && !n2) || b->dead)
			break;
	}
}

/* Handshake between a dialer and a listener; both ends get AEAD keys. */
static void handshake(struct end *a, struct end *b)
{
	struct fg_hs_replay_cache cache;
	assert_int_equal(fg_hs_replay_init(&cache, 1024, 60, 7), 0);
	struct fg_hs_listener_cfg cfg = {.lookup_cb = lookup, .replay = &cache};
	struct fg_hs_listener l;
	struct fg_hs_dialer d;
	uint8_t ln[32], dn[32], hello[64], auth[FG_HS_AUTH_MAX], acc[FG_HS_ACCEPT_MAX];
	assert_int_equal(RAND_bytes(ln, 32), 1);
	assert_int_equal(RAND_bytes(dn, 32), 1);
	uint64_t now = (uint64_t)time(NULL);
	int hn = fg_hs_listener_init(&l, &cfg, ln, NULL, 0, hello, sizeof(hello));
	assert_int_equal(fg_hs_dialer_init(&d, 3, psk, 32, dn, NULL, 0), 0);
	struct fg_hs_req req = {.kind = FG_HS_KIND_DIAL, .tunnel_id = 42, .mux = 1};
	req.present = 1u << FG_HS_TLV_MUX;
	size_t alen;
	assert_int_equal(
	    fg_hs_dialer_on_hello(&d, hello, (size_t)hn, &req, now, auth, sizeof(auth), &alen), hn);
	struct fg_hs_req got;
	assert_int_equal(fg_hs_listener_on_auth(&l, auth, alen, now, &got), (int)alen);
	assert_int_equal(got.tunnel_id, 42);
	assert_true(FG_HS_HAS(&got, FG_HS_TLV_MUX) && got.mux == 1);
	int an = fg_hs_listener_accept(&l, NULL, 0, acc, sizeof(acc));
	assert_int_equal(fg_hs_dialer_on_answer(&d, acc, (size_t)an, NULL, 0, NULL, NULL), an);
	struct fg_aead_keys dk, lk;
	assert_int_equal(fg_hs_dialer_aead_keys(&d, &dk), 0);
	assert_int_equal(fg_hs_listener_aead_keys(&l, &lk), 0);
	assert_int_equal(fg_aead_sealer_init(&a->seal, dk.tx), 0);
	assert_int_equal(fg_aead_opener_init(&a->open, dk.rx), 0);
	assert_int_equal(fg_aead_sealer_init(&b->seal, lk.tx), 0);
	assert_int_equal(fg_aead_opener_init(&b->open, lk.rx), 0);
	fg_hs_dialer_wipe(&d);
	fg_hs_listener_wipe(&l);
	fg_hs_replay_deinit(&cache);
}

static void end_free(struct end *e)
{
	fg_mux_free(e->m);
	fg_aead_sealer_deinit(&e->seal);
	fg_aead_opener_deinit(&e->open);
	free(e);
}

static void test_stack_streams_through_handshake_aead_and_mux_intact(void **state)
{
	struct end *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	srand(3);
	handshake(a, b);
	a->m = fg_mux_new(NULL, 1, &ops, a);
	b->m = fg_mux_new(NULL, 0, &ops, b);
	for (int i = 0; i < NSTREAMS; i++) {
		struct fg_mux_stream *s;
		assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
		struct st *t = &a->st[fg_mux_stream_id(s)];
		t->s = s;
		t->to_send = 1000 + (uint64_t)i * 37000;
		t->rng = (uint32_t)i;
		t->tx_hash = t->rx_hash = 0xcbf29ce484222325ull;
		fg_mux_stream_want_send(s);
	}
	int64_t now = 0;
	pump(a, b, &now, -1);
	for (uint32_t id = 1; id < 2 * NSTREAMS; id += 2) {
		assert_int_equal(b->st[id].received, a->st[id].to_send);
		assert_true(b->st[id].rx_hash == a->st[id].tx_hash);
		assert_true(a->st[id].released && b->st[id].released);
	}
	struct fg_mux_info mi;
	fg_mux_info(b->m, &mi);
	assert_int_equal(mi.streams, 0);
	end_free(a);
	end_free(b);
}

static void test_stack_tampered_byte_ends_link_before_stream_sees_it(void **state)
{
	struct end *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	srand(4);
	handshake(a, b);
	a->m = fg_mux_new(NULL, 1, &ops, a);
	b->m = fg_mux_new(NULL, 0, &ops, b);
	struct fg_mux_stream *s;
	assert_int_equal(fg_mux_stream_open(a->m, &s), 0);
	struct st *t = &a->st[1];
	t->s = s;
	t->to_send = 200000;
	t->tx_hash = t->rx_hash = 0xcbf29ce484222325ull;
	fg_mux_stream_want_send(s);
	int64_t now = 0;
	/* a bit flipped inside the first sealed burst, past its first frame */
	pump(a, b, &now, 40000);
	assert_true(b->dead);
	/* only whole authenticated frames before the flip reached the stream */
	assert_true(b->st[1].received < 40000);
	size_t used;
	uint8_t out[FG_AEAD_MAX_PAYLOAD];
	assert_int_equal(fg_aead_open(&b->open, sealed, 100, &used, out, sizeof(out)), -EBADMSG);
	end_free(a);
	end_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stack_streams_through_handshake_aead_and_mux_intact),
	    cmocka_unit_test(test_stack_tampered_byte_ends_link_before_stream_sees_it),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
