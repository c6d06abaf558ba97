/* libFuzzer harness: handshake parsers and verifiers on arbitrary bytes.
 * data[0] % 4 picks:
 *   0  every parser on the raw bytes (HELLO, AUTH, answer, request TLVs)
 *   1  the listener verifying arbitrary bytes as AUTH (never accepted)
 *   2  an AUTH built and MACed here by the documented transcript layout
 *      around an arbitrary request block and timestamp: the listener's
 *      verdict must match the request decoder and the clock window
 *   3  the dialer given arbitrary bytes as the listener's answer */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tunnel/handshake.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

#define NOW 1790000000ull

static const uint8_t psk[32] = "fuzz-psk-fuzz-psk-fuzz-psk-fuzz";
static const uint8_t ln[32] = "listener-nonce-listener-nonce-ln";
static const uint8_t dn[32] = "dialer-nonce-dialer-nonce-dialer";

static int lookup(void *arg, uint32_t key_id, uint8_t *out, size_t *len)
{
	if (key_id != 1)
		return -ENOKEY;
	memcpy(out, psk, 32);
	*len = 32;
	return 0;
}

static int known(int rc)
{
	return rc == -EAGAIN || rc == -EINVAL || rc == -EPROTONOSUPPORT || rc == -ENOKEY ||
	       rc == -EBADMSG || rc == -ETIME || rc == -EALREADY || rc == -ECONNREFUSED;
}

static void parsers(const uint8_t *b, size_t n)
{
	uint8_t nonce[32];
	int rc = fg_hs_parse_hello(b, n, nonce);
	CHECK(rc < 0 ? known(rc) : rc == FG_HS_HELLO_LEN && (size_t)rc <= n);
	struct fg_hs_auth a;
	rc = fg_hs_parse_auth(b, n, &a);
	if (rc > 0) {
		CHECK((size_t)rc <= n && rc >= FG_HS_AUTH_MIN && rc <= FG_HS_AUTH_MAX);
		CHECK(a.mac + FG_HS_MAC_LEN == b + rc && a.req + a.req_len == a.mac);
		struct fg_hs_auth again;
		CHECK(fg_hs_parse_auth(b, (size_t)rc, &again) == rc);
		CHECK(fg_hs_parse_auth(b, (size_t)rc - 1, &again) == -EAGAIN);
	} else {
		CHECK(known(rc));
	}
	struct fg_hs_answer ans;
	rc = fg_hs_parse_answer(b, n, &ans);
	CHECK(rc < 0 ? known(rc) : (size_t)rc <= n);
	struct fg_hs_req r;
	rc = fg_hs_req_decode(b, n, &r);
	if (rc == 0) {
		/* what decodes re-encodes and decodes to the same request */
		uint8_t buf[64];
		struct fg_hs_req r2;
		int m = fg_hs_req_encode(&r, buf, sizeof(buf));
		CHECK(m > 0 && fg_hs_req_decode(buf, (size_t)m, &r2) == 0);
		CHECK(memcmp(&r, &r2, sizeof(r)) == 0);
	} else {
		CHECK(rc == -EINVAL);
	}
}

static void listener_setup(struct fg_hs_replay_cache *c, struct fg_hs_listener_cfg *cfg,
			   struct fg_hs_listener *l, uint8_t *hello)
{
	CHECK(fg_hs_replay_init(c, 16, 60, 3) == 0);
	memset(cfg, 0, sizeof(*cfg));
	cfg->lookup_cb = lookup;
	cfg->replay = c;
	CHECK(fg_hs_listener_init(l, cfg, ln, NULL, 0, hello, 64) == FG_HS_HELLO_LEN);
}

static void listener_raw(const uint8_t *b, size_t n)
{
	struct fg_hs_replay_cache c;
	struct fg_hs_listener_cfg cfg;
	struct fg_hs_listener l;
	uint8_t hello[64];
	listener_setup(&c, &cfg, &l, hello);
	struct fg_hs_req r;
	int rc = fg_hs_listener_on_auth(&l, b, n, NOW, &r);
	CHECK(known(rc)); /* a MAC is never guessed */
	uint8_t acc[FG_HS_ACCEPT_MAX];
	CHECK(fg_hs_listener_accept(&l, NULL, 0, acc, sizeof(acc)) == -EINVAL);
	fg_hs_replay_deinit(&c);
}

static void listener_built(const uint8_t *b, size_t n)
{
	if (n < 3)
		return;
	int64_t skew = (int8_t)b[0];
	uint32_t key_id = b[1] & 1 ? 1 : 2;
	b += 2, n -= 2;
	if (n > FG_HS_REQ_MAX)
		n = FG_HS_REQ_MAX;
	struct fg_hs_replay_cache c;
	struct fg_hs_listener_cfg cfg;
	struct fg_hs_listener l;
	uint8_t hello[64], m[FG_HS_AUTH_MAX], t[512 + FG_HS_AUTH_MAX];
	listener_setup(&c, &cfg, &l, hello);
	size_t k = 0;
	memcpy(m, "FGT\x01\x02", 5), k = 5;
	m[k++] = (uint8_t)(key_id >> 24), m[k++] = (uint8_t)(key_id >> 16);
	m[k++] = (uint8_t)(key_id >> 8), m[k++] = (uint8_t)key_id;
	memcpy(m + k, dn, 32), k += 32;
	uint64_t ts = NOW + (uint64_t)skew;
	for (int i = 0; i < 8; i++)
		m[k++] = (uint8_t)(ts >> (56 - 8 * i));
	m[k++] = (uint8_t)(n >> 8), m[k++] = (uint8_t)n;
	memcpy(m + k, b, n), k += n;
	/* transcript: label || u8 exporter_len || exporter || HELLO || AUTH body */
	size_t tl = 0;
	memcpy(t, "flowgate hs v1 dialer", 21), tl = 21;
	t[tl++] = 0;
	memcpy(t + tl, hello, FG_HS_HELLO_LEN), tl += FG_HS_HELLO_LEN;
	memcpy(t + tl, m, k), tl += k;
	unsigned int ml = 0;
	CHECK(HMAC(EVP_sha256(), psk, 32, t, tl, m + k, &ml) && ml == 32);
	k += 32;
	struct fg_hs_req r, expect;
	int rc = fg_hs_listener_on_auth(&l, m, k, NOW, &r);
	int dec = fg_hs_req_decode(b, n, &expect);
	if (dec)
		CHECK(rc == -EINVAL);
	else if (key_id != 1)
		CHECK(rc == -ENOKEY);
	else if (skew > 60 || skew < -60)
		CHECK(rc == -ETIME);
	else {
		CHECK(rc == (int)k && memcmp(&r, &expect, sizeof(r)) == 0);
		/* the same AUTH again is a replay */
		struct fg_hs_listener l2;
		CHECK(fg_hs_listener_init(&l2, &cfg, ln, NULL, 0, hello, 64) > 0);
		CHECK(fg_hs_listener_on_auth(&l2, m, k, NOW, &r) == -EALREADY);
	}
	fg_hs_replay_deinit(&c);
}

static void dialer_answer(const uint8_t *b, size_t n)
{
	struct fg_hs_dialer d;
	uint8_t hello[64], auth[FG_HS_AUTH_MAX], reply[FG_HS_REPLY_MAX];
	size_t alen, rlen;
	struct fg_hs_req req = {.kind = FG_HS_KIND_DIAL, .tunnel_id = 5};
	CHECK(fg_hs_build_hello(hello, sizeof(hello), ln) == FG_HS_HELLO_LEN);
	CHECK(fg_hs_dialer_init(&d, 1, psk, 32, dn, NULL, 0) == 0);
	CHECK(fg_hs_dialer_on_hello(&d, hello, FG_HS_HELLO_LEN, &req, NOW, auth, sizeof(auth),
				    &alen) == FG_HS_HELLO_LEN);
	int refuse = 0;
	int rc = fg_hs_dialer_on_answer(&d, b, n, reply, sizeof(reply), &rlen, &refuse);
	CHECK(known(rc));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t *buf = malloc(size - 1 ? size - 1 : 1);
	memcpy(buf, data + 1, size - 1);
	switch (data[0] % 4) {
	case 0: parsers(buf, size - 1); break;
	case 1: listener_raw(buf, size - 1); break;
	case 2: listener_built(buf, size - 1); break;
	case 3: dialer_answer(buf, size - 1); break;
	}
	free(buf);
	return 0;
}
