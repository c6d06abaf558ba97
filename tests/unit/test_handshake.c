/* Tunnel link handshake (tunnel/handshake): mutual PSK proof, replay cache,
 * clock window, request TLVs. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "tunnel/aead.h"
#include "tunnel/config.h"
#include "tunnel/handshake.h"
#include "tunnel/internal.h"

#define NOW    1790000000ull
#define KEY_ID 7

static const uint8_t psk[32] = "psk-psk-psk-psk-psk-psk-psk-psk";

static int lookup(void *arg, uint32_t key_id, uint8_t *out, size_t *len)
{
	(void)arg;
	if (key_id != KEY_ID)
		return -ENOKEY;
	memcpy(out, psk, sizeof(psk));
	*len = sizeof(psk);
	return 0;
}

struct fix {
	struct fg_hs_replay_cache cache;
	struct fg_hs_listener_cfg cfg;
	struct fg_hs_listener l;
	struct fg_hs_dialer d;
	struct fg_hs_req req;
	uint8_t hello[64], auth[FG_HS_AUTH_MAX], acc[FG_HS_ACCEPT_MAX];
	size_t hello_len, auth_len;
};

static void nonce_of(uint8_t n[32], int tag)
{
	for (int i = 0; i < 32; i++)
		n[i] = (uint8_t)(tag * 31 + i * 7);
}

static int setup(void **st)
{
	static struct fix f;
	memset(&f, 0, sizeof(f));
	assert_int_equal(fg_hs_replay_init(&f.cache, 256, 60, 42), 0);
	f.cfg.lookup_cb = lookup;
	f.cfg.replay = &f.cache;
	f.req.kind = FG_HS_KIND_DIAL;
	f.req.tunnel_id = 1234;
	f.req.target_index = 2;
	f.req.present = 1u << FG_HS_TLV_TARGET;
	*st = &f;
	return 0;
}

static int teardown(void **st)
{
	struct fix *f = *st;
	fg_hs_replay_deinit(&f->cache);
	return 0;
}

/* Runs HELLO and AUTH with the given dialer key/nonces; returns the
 * listener's verdict on AUTH. */
static int run_auth(struct fix *f, int listener_tag, int dialer_tag, uint32_t key_id,
		    const uint8_t *dpsk, uint64_t dialer_now, struct fg_hs_req *got)
{
	uint8_t ln[32], dn[32];
	nonce_of(ln, listener_tag);
	nonce_of(dn, dialer_tag);
	int n = fg_hs_listener_init(&f->l, &f->cfg, ln, NULL, 0, f->hello, sizeof(f->hello));
	assert_int_equal(n, FG_HS_HELLO_LEN);
	f->hello_len = (size_t)n;
	assert_int_equal(fg_hs_dialer_init(&f->d, key_id, dpsk, 32, dn, NULL, 0), 0);
	assert_int_equal(fg_hs_dialer_on_hello(&f->d, f->hello, f->hello_len, &f->req, dialer_now,
					       f->auth, sizeof(f->auth), &f->auth_len),
			 FG_HS_HELLO_LEN);
	return fg_hs_listener_on_auth(&f->l, f->auth, f->auth_len, NOW, got);
}

static void test_handshake_mutual_success_and_same_aead_keys(void **st)
{
	struct fix *f = *st;
	struct fg_hs_req got;
	int n = run_auth(f, 1, 2, KEY_ID, psk, NOW, &got);
	assert_int_equal(n, (int)f->auth_len);
	assert_int_equal(got.kind, FG_HS_KIND_DIAL);
	assert_int_equal(got.tunnel_id, 1234);
	assert_true(FG_HS_HAS(&got, FG_HS_TLV_TARGET));
	assert_false(FG_HS_HAS(&got, FG_HS_TLV_NODE));
	assert_int_equal(got.target_index, 2);
	n = fg_hs_listener_accept(&f->l, (const uint8_t *)"ok", 2, f->acc, sizeof(f->acc));
	assert_int_equal(n, FG_HS_ACCEPT_MIN + 2);
	uint8_t reply[16];
	size_t rlen = 0;
	int refuse = 0;
	/* bytes after the answer belong to the next layer */
	f->acc[n] = 0xAA;
	assert_int_equal(fg_hs_dialer_on_answer(&f->d, f->acc, (size_t)n + 1, reply, sizeof(reply),
						&rlen, &refuse),
			 n);
	assert_int_equal(rlen, 2);
	assert_memory_equal(reply, "ok", 2);
	/* both sides now derive the same AEAD keys, crossed */
	struct fg_aead_keys dk2, lk2;
	assert_int_equal(fg_hs_dialer_aead_keys(&f->d, &dk2), 0);
	assert_int_equal(fg_hs_listener_aead_keys(&f->l, &lk2), 0);
	assert_memory_equal(dk2.tx, lk2.rx, 32);
	assert_memory_equal(dk2.rx, lk2.tx, 32);
	/* and by hand from the fields, the same */
	struct fg_aead_keys dk, lk;
	assert_int_equal(
	    fg_aead_derive(f->d.psk, f->d.psk_len, f->d.listener_nonce, f->d.nonce, 1, &dk), 0);
	assert_int_equal(
	    fg_aead_derive(f->l.psk, f->l.psk_len, f->l.nonce, f->l.dialer_nonce, 0, &lk), 0);
	assert_memory_equal(dk.tx, dk2.tx, 32);
	assert_memory_equal(lk.tx, lk2.tx, 32);
}

static void test_handshake_any_split_of_messages_waits(void **st)
{
	struct fix *f = *st;
	struct fg_hs_req got;
	assert_true(run_auth(f, 1, 3, KEY_ID, psk, NOW, &got) > 0);
	uint8_t nonce[32];
	for (size_t i = 0; i < f->hello_len; i++)
		assert_int_equal(fg_hs_parse_hello(f->hello, i, nonce), -EAGAIN);
	struct fg_hs_auth a;
	for (size_t i = 0; i < f->auth_len; i++)
		assert_int_equal(fg_hs_parse_auth(f->auth, i, &a), -EAGAIN);
	int n = fg_hs_listener_accept(&f->l, NULL, 0, f->acc, sizeof(f->acc));
	struct fg_hs_answer ans;
	for (int i = 0; i < n; i++)
		assert_int_equal(fg_hs_parse_answer(f->acc, (size_t)i, &ans), -EAGAIN);
}

static void test_handshake_replayed_auth_refused(void **st)
{
	struct fix *f = *st;
	struct fg_hs_req got;
	assert_true(run_auth(f, 1, 2, KEY_ID, psk, NOW, &got) > 0);
	uint8_t old_auth[FG_HS_AUTH_MAX];
	size_t old_len = f->auth_len;
	memcpy(old_auth, f->auth, old_len);

	/* to a fresh listener (new nonce) the captured AUTH no longer verifies */
	uint8_t ln[32], hello[64];
	nonce_of(ln, 9);
	fg_hs_listener_init(&f->l, &f->cfg, ln, NULL, 0, hello, sizeof(hello));
	assert_int_equal(fg_hs_listener_on_auth(&f->l, old_auth, old_len, NOW + 1, &got), -EBADMSG);

	/* and even if a listener repeated its nonce, the cache refuses it */
	nonce_of(ln, 1);
	fg_hs_listener_init(&f->l, &f->cfg, ln, NULL, 0, hello, sizeof(hello));
	assert_int_equal(fg_hs_listener_on_auth(&f->l, old_auth, old_len, NOW + 1, &got),
			 -EALREADY);
	/* refused: no ACCEPT can be produced */
	assert_int_equal(fg_hs_listener_accept(&f->l, NULL, 0, f->acc, sizeof(f->acc)), -EINVAL);
	assert_string_equal(fg_hs_strerror(-EALREADY), "replayed handshake");
}

static void test_handshake_wrong_key_refused_and_not_cached(void **st)
{
	struct fix *f = *st;
	struct fg_hs_req got;
	uint8_t bad[32];
	memcpy(bad, psk, 32);
	bad[5] ^= 1;
	assert_int_equal(run_auth(f, 1, 2, KEY_ID, bad, NOW, &got), -EBADMSG);
	assert_int_equal(fg_hs_listener_accept(&f->l, NULL, 0, f->acc, sizeof(f->acc)), -EINVAL);
	struct fg_aead_keys k;
	assert_int_equal(fg_hs_listener_aead_keys(&f->l, &k), -EINVAL);
	assert_int_equal(fg_hs_dialer_aead_keys(&f->d, &k), -EINVAL);
	/* an unauthenticated message must not burn the nonce */
	assert_int_equal(fg_hs_replay_live(&f->cache, NOW), 0);
	assert_true(run_auth(f, 1, 2, KEY_ID, psk, NOW, &got) > 0);
}

static void test_handshake_missing_key_refused(void **st)
{
	struct fix *f = *st;
	struct fg_hs_req got;
	assert_int_equal(run_auth(f, 1, 2, KEY_ID + 1, psk, NOW, &got), -ENOKEY);
	assert_string_equal(fg_hs_strerror(-ENOKEY), "unknown key id");
	/* the REFUSE the listener may send is understood by the dialer */
	uint8_t r[8];
	assert_int_equal(fg_hs_build_refuse(r, sizeof(r), -ENOKEY), FG_HS_REFUSE_LEN);
	int reason = 0;
	assert_int_equal(fg_hs_dialer_on_answer(&f->d, r, FG_HS_REFUSE_LEN, NULL, 0, NULL, &reason),
			 -ECONNREFUSED);
	assert_int_equal(reason, FG_HS_R_UNKNOWN_KEY);
	assert_int_equal(fg_hs_refuse_to_err(reason), -ENOKEY);
}

/* A link's listener during a key rotation: the engine's own key lookup
 * over a config with "keys" accepts the new and the previous key, each
 * under its own id, and refuses an id it does not hold; once the previous
 * key is gone (the grace period is over), its id is refused. */
#define ROT_OLD_B64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" /* bytes 0..31 */
#define ROT_NEW_B64 "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=" /* 32 x 0x01 */
#define ROT_DOC(keys)                                                                              \
	"{\"tunnels\":[{\"name\":\"t\",\"role\":\"exit\",\"targets\":[\"10.0.0.1:80\"],"           \
	"\"prev\":{\"transport\":\"tcp\",\"listen\":\"0.0.0.0:7000\"," keys "}}]}"

static void test_handshake_listener_accepts_either_rotation_key(void **st)
{
	struct fix *f = *st;
	struct fg_hs_req got;
	int n;
	uint8_t oldk[32], newk[32];
	for (int i = 0; i < 32; i++)
		oldk[i] = (uint8_t)i, newk[i] = 1;
	const char *rot = ROT_DOC("\"keys\":[{\"id\":8,\"key\":\"" ROT_NEW_B64 "\",\"dial\":true},"
				  "{\"id\":7,\"key\":\"" ROT_OLD_B64 "\"}]");
	struct fg_tunnel_set set;
	char err[256];
	assert_int_equal(fg_tunnel_parse_doc(rot, strlen(rot), &set, err, sizeof(err)), 0);
	struct lside ls = {.cfg = &set.v[0].prev};
	f->cfg.lookup_cb = key_lookup_cb;
	f->cfg.lookup_arg = &ls;
	/* the dialing side of the same config dials with the new key */
	assert_int_equal(ls.cfg->psk_id, 8);
	assert_memory_equal(ls.cfg->psk, newk, 32);

	n = run_auth(f, 1, 2, 8, newk, NOW, &got);
	assert_int_equal(n, (int)f->auth_len);
	assert_int_equal(f->l.key_id, 8);
	n = run_auth(f, 3, 4, 7, oldk, NOW, &got);
	assert_int_equal(n, (int)f->auth_len);
	assert_int_equal(f->l.key_id, 7);
	assert_int_equal(run_auth(f, 5, 6, 9, newk, NOW, &got), -ENOKEY);
	/* a key under another key's id does not verify */
	assert_int_equal(run_auth(f, 7, 8, 7, newk, NOW, &got), -EBADMSG);
	fg_tunnel_set_free(&set);

	/* after the grace period the desired state holds the new key only */
	const char *after = ROT_DOC("\"psk\":{\"id\":8,\"key\":\"" ROT_NEW_B64 "\"}");
	assert_int_equal(fg_tunnel_parse_doc(after, strlen(after), &set, err, sizeof(err)), 0);
	ls.cfg = &set.v[0].prev;
	assert_int_equal(run_auth(f, 9, 10, 7, oldk, NOW, &got), -ENOKEY);
	n = run_auth(f, 11, 12, 8, newk, NOW, &got);
	assert_int_equal(n, (int)f->auth_len);
	fg_tunnel_set_free(&set);
}

static void test_handshake_clock_skew_refused(void **st)
{
	struct fix *f = *st;
	struct fg_hs_req got;
	assert_int_equal(run_auth(f, 1, 2, KEY_ID, psk, NOW + 61, &got), -ETIME);
	assert_int_equal(run_auth(f, 1, 3, KEY_ID, psk, NOW - 61, &got), -ETIME);
	assert_true(run_auth(f, 1, 4, KEY_ID, psk, NOW + 60, &got) > 0);
	assert_true(run_auth(f, 1, 5, KEY_ID, psk, NOW - 60, &got) > 0);
	/* a narrower window, configured */
	f->cfg.clock_window_s = 5;
	assert_int_equal(run_auth(f, 1, 6, KEY_ID, psk, NOW + 6, &got), -ETIME);
	assert_true(run_auth(f, 1, 7, KEY_ID, psk, NOW - 5, &got) > 0);
	assert_string_equal(fg_hs_strerror(-ETIME), "clock skew beyond the allowed window");
}

static void test_handshake_listener_without_key_detected_by_dialer(void **st)
{
	struct fix *f = *st;
	struct fg_hs_req got;
	assert_true(run_auth(f, 1, 2, KEY_ID, psk, NOW, &got) > 0);
	int n = fg_hs_listener_accept(&f->l, (const uint8_t *)"x", 1, f->acc, sizeof(f->acc));
	/* an impostor (or a flipped bit) cannot produce the listener MAC */
	for (int pos = 0; pos < n; pos++) {
		struct fg_hs_dialer d = f->d;
		uint8_t acc[FG_HS_ACCEPT_MAX];
		memcpy(acc, f->acc, (size_t)n);
		acc[pos] ^= 0x01;
		uint8_t reply[8];
		size_t rl;
		int rc =
		    fg_hs_dialer_on_answer(&d, acc, (size_t)n, reply, sizeof(reply), &rl, NULL);
		assert_true(rc == -EBADMSG || rc == -EINVAL || rc == -EPROTONOSUPPORT ||
			    rc == -EAGAIN || rc == -ECONNREFUSED);
		assert_int_not_equal(rc, n);
	}
	/* a listener that merely echoes the dialer MAC fails too (labels differ) */
	struct fg_hs_dialer d = f->d;
	uint8_t fake[FG_HS_ACCEPT_MIN];
	memcpy(fake, f->acc, FG_HS_HDR_LEN);
	fake[FG_HS_HDR_LEN] = fake[FG_HS_HDR_LEN + 1] = 0;
	memcpy(fake + FG_HS_HDR_LEN + 2, f->auth + f->auth_len - 32, 32);
	assert_int_equal(fg_hs_dialer_on_answer(&d, fake, sizeof(fake), NULL, 0, NULL, NULL),
			 -EBADMSG);
}

static void test_handshake_tls_exporter_binds_the_link(void **st)
{
	struct fix *f = *st;
	uint8_t ln[32], dn[32], e1[32], e2[32];
	nonce_of(ln, 1);
	nonce_of(dn, 2);
	memset(e1, 0x11, 32);
	memset(e2, 0x22, 32);
	struct fg_hs_req got;
	/* a relay between two different TLS sessions sees different exporters */
	fg_hs_listener_init(&f->l, &f->cfg, ln, e1, 32, f->hello, sizeof(f->hello));
	fg_hs_dialer_init(&f->d, KEY_ID, psk, 32, dn, e2, 32);
	fg_hs_dialer_on_hello(&f->d, f->hello, FG_HS_HELLO_LEN, &f->req, NOW, f->auth,
			      sizeof(f->auth), &f->auth_len);
	assert_int_equal(fg_hs_listener_on_auth(&f->l, f->auth, f->auth_len, NOW, &got), -EBADMSG);
	nonce_of(dn, 3);
	fg_hs_listener_init(&f->l, &f->cfg, ln, e1, 32, f->hello, sizeof(f->hello));
	fg_hs_dialer_init(&f->d, KEY_ID, psk, 32, dn, e1, 32);
	fg_hs_dialer_on_hello(&f->d, f->hello, FG_HS_HELLO_LEN, &f->req, NOW, f->auth,
			      sizeof(f->auth), &f->auth_len);
	assert_true(fg_hs_listener_on_auth(&f->l, f->auth, f->auth_len, NOW, &got) > 0);
}

static void test_handshake_malformed_messages_refused(void **st)
{
	struct fix *f = *st;
	struct fg_hs_req got;
	assert_true(run_auth(f, 1, 2, KEY_ID, psk, NOW, &got) > 0);
	uint8_t m[FG_HS_AUTH_MAX], nonce[32];
	struct fg_hs_auth a;
	memcpy(m, f->auth, f->auth_len);
	m[0] = 'X';
	assert_int_equal(fg_hs_parse_auth(m, 1, &a), -EINVAL);
	memcpy(m, f->auth, f->auth_len);
	m[3] = 2;
	assert_int_equal(fg_hs_parse_auth(m, f->auth_len, &a), -EPROTONOSUPPORT);
	memcpy(m, f->auth, f->auth_len);
	m[4] = FG_HS_HELLO;
	assert_int_equal(fg_hs_parse_auth(m, f->auth_len, &a), -EINVAL);
	assert_int_equal(fg_hs_parse_hello(f->auth, f->auth_len, nonce), -EINVAL);
	/* request block longer than allowed */
	memcpy(m, f->auth, f->auth_len);
	m[FG_HS_HDR_LEN + 4 + 32 + 8] = 0x01;
	m[FG_HS_HDR_LEN + 4 + 32 + 8 + 1] = 0x01;
	assert_int_equal(fg_hs_parse_auth(m, f->auth_len, &a), -EINVAL);
	assert_string_equal(fg_hs_strerror(-EINVAL), "malformed handshake message");
}

static void test_handshake_request_tlv_rules(void **st)
{
	struct fg_hs_req r = {0}, out;
	uint8_t b[64];
	r.kind = FG_HS_KIND_REGISTER;
	r.tunnel_id = 0xdeadbeef;
	r.node_id = 77;
	r.session = 3;
	r.mux = 1;
	r.hop = 2;
	r.present = 1u << FG_HS_TLV_NODE | 1u << FG_HS_TLV_SESSION | 1u << FG_HS_TLV_MUX |
		    1u << FG_HS_TLV_HOP;
	int n = fg_hs_req_encode(&r, b, sizeof(b));
	assert_int_equal(n, 3 + 6 + 6 + 3 + 3 + 3);
	assert_int_equal(fg_hs_req_decode(b, (size_t)n, &out), 0);
	assert_memory_equal(&r, &out, sizeof(r));
	assert_int_equal(fg_hs_req_encode(&r, b, 5), -ENOSPC);
	/* unknown optional type skipped; unknown critical type refused */
	uint8_t opt[] = {0x01, 1, 1, 0x02, 4, 0, 0, 0, 9, 0x40, 2, 'h', 'i'};
	assert_int_equal(fg_hs_req_decode(opt, sizeof(opt), &out), 0);
	assert_int_equal(out.tunnel_id, 9);
	opt[9] = 0x90;
	assert_int_equal(fg_hs_req_decode(opt, sizeof(opt), &out), -EINVAL);
	uint8_t dup[] = {0x01, 1, 1, 0x02, 4, 0, 0, 0, 9, 0x01, 1, 1};
	assert_int_equal(fg_hs_req_decode(dup, sizeof(dup), &out), -EINVAL);
	uint8_t notun[] = {0x01, 1, 1};
	assert_int_equal(fg_hs_req_decode(notun, sizeof(notun), &out), -EINVAL);
	uint8_t badlen[] = {0x01, 1, 1, 0x02, 3, 0, 0, 9};
	assert_int_equal(fg_hs_req_decode(badlen, sizeof(badlen), &out), -EINVAL);
	uint8_t trunc[] = {0x01, 1, 1, 0x02, 4, 0, 0};
	assert_int_equal(fg_hs_req_decode(trunc, sizeof(trunc), &out), -EINVAL);
	uint8_t badkind[] = {0x01, 1, 9, 0x02, 4, 0, 0, 0, 9};
	assert_int_equal(fg_hs_req_decode(badkind, sizeof(badkind), &out), -EINVAL);
}

static void test_handshake_nonce_cache_evicts_by_time_and_stays_bounded(void **st)
{
	struct fg_hs_replay_cache c;
	assert_int_equal(fg_hs_replay_init(&c, 64, 60, 1), 0);
	size_t cap = fg_hs_replay_capacity(&c);
	assert_int_equal(cap, 64);
	uint8_t n[32];
	/* a full cache's worth in one window, as fast as buckets allow */
	int stored = 0;
	for (int i = 0; i < 64; i++) {
		nonce_of(n, 1000 + i);
		uint64_t t = NOW + (uint64_t)i / 2;
		stored += fg_hs_replay_check(&c, n, t, t) == 0;
	}
	assert_int_equal(stored, 64);
	/* every one of them is refused while it could pass the clock check */
	for (int i = 0; i < 64; i++) {
		nonce_of(n, 1000 + i);
		assert_int_equal(fg_hs_replay_check(&c, n, NOW + (uint64_t)i / 2, NOW + 40),
				 -EALREADY);
	}
	/* a window later they expired: the slots (all taken before) are
	 * reused, no live entry has to be evicted */
	uint64_t later = NOW + 32 + 61;
	assert_true(fg_hs_replay_live(&c, later) == 0);
	uint64_t evicted = c.evicted_live;
	for (int i = 0; i < 32; i++) {
		nonce_of(n, 5000 + i);
		assert_int_equal(fg_hs_replay_check(&c, n, later, later), 0);
	}
	assert_int_equal(c.evicted_live, evicted);
	assert_int_equal(fg_hs_replay_live(&c, later), 32);
	/* overload: 10x capacity within one window never grows memory, and
	 * every nonce it had to forget is still refused */
	for (int i = 0; i < 640; i++) {
		nonce_of(n, 9000 + i);
		uint64_t t = later + 1 + (uint64_t)i / 20;
		fg_hs_replay_check(&c, n, t, t);
		assert_true(fg_hs_replay_live(&c, t) <= cap);
	}
	assert_true(c.evicted_live > 0);
	uint64_t end = later + 1 + 639 / 20;
	for (int i = 0; i < 640; i++) {
		nonce_of(n, 9000 + i);
		assert_int_equal(fg_hs_replay_check(&c, n, later + 1 + (uint64_t)i / 20, end),
				 -EALREADY);
	}
	fg_hs_replay_deinit(&c);
}

/* The tunnel engine's threads share one cache per node: threads checking
 * the same nonces at once accept each at most once, and exactly what one
 * thread alone accepts (without the lock two threads can both find a free
 * way for one nonce and both pass). */
#define RACE_THREADS 4
#define RACE_NONCES  4000
struct race {
	struct fg_hs_replay_cache *c;
	pthread_barrier_t *go;
	int accepted;
};

static void *race_main(void *arg)
{
	struct race *r = arg;
	uint8_t n[32];
	if (r->go)
		pthread_barrier_wait(r->go);
	for (int i = 0; i < RACE_NONCES; i++) {
		/* distinct nonces (nonce_of repeats every 256 tags) */
		memset(n, 0x5a, sizeof(n));
		memcpy(n, &i, sizeof(i));
		r->accepted += fg_hs_replay_check(r->c, n, NOW, NOW) == 0;
	}
	return NULL;
}

static void test_handshake_nonce_cache_is_shared_safely_by_threads(void **st)
{
	(void)st;
	struct fg_hs_replay_cache c;
	/* room for every nonce: no eviction, so exactly one accept each */
	assert_int_equal(fg_hs_replay_init(&c, 4 * RACE_NONCES, 60, 3), 0);
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, RACE_THREADS);
	pthread_t th[RACE_THREADS];
	struct race r[RACE_THREADS];
	for (int i = 0; i < RACE_THREADS; i++) {
		r[i] = (struct race){.c = &c, .go = &go};
		assert_int_equal(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
	}
	int total = 0;
	for (int i = 0; i < RACE_THREADS; i++) {
		pthread_join(th[i], NULL);
		total += r[i].accepted;
	}
	/* the same nonces through a same-seeded cache on one thread: a full
	 * bucket may refuse a few (its floor), so that is the reference */
	struct fg_hs_replay_cache ref;
	assert_int_equal(fg_hs_replay_init(&ref, 4 * RACE_NONCES, 60, 3), 0);
	struct race one = {.c = &ref, .go = NULL};
	race_main(&one);
	assert_true(one.accepted > RACE_NONCES * 99 / 100);
	assert_int_equal(total, one.accepted);
	assert_int_equal(fg_hs_replay_live(&c, NOW), fg_hs_replay_live(&ref, NOW));
	fg_hs_replay_deinit(&ref);
	pthread_barrier_destroy(&go);
	fg_hs_replay_deinit(&c);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_handshake_mutual_success_and_same_aead_keys),
	    T(test_handshake_any_split_of_messages_waits),
	    T(test_handshake_replayed_auth_refused),
	    T(test_handshake_wrong_key_refused_and_not_cached),
	    T(test_handshake_missing_key_refused),
	    T(test_handshake_listener_accepts_either_rotation_key),
	    T(test_handshake_clock_skew_refused),
	    T(test_handshake_listener_without_key_detected_by_dialer),
	    T(test_handshake_tls_exporter_binds_the_link),
	    T(test_handshake_malformed_messages_refused),
	    cmocka_unit_test(test_handshake_request_tlv_rules),
	    cmocka_unit_test(test_handshake_nonce_cache_evicts_by_time_and_stays_bounded),
	    cmocka_unit_test(test_handshake_nonce_cache_is_shared_safely_by_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
