#include "tunnel/handshake.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/alloc.h"
#include "core/util.h"
#include "tunnel/aead.h"

static const uint8_t MAGIC[3] = {'F', 'G', 'T'};
static const char LABEL_DIALER[] = "flowgate hs v1 dialer";
static const char LABEL_LISTENER[] = "flowgate hs v1 listener";

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* ---- request TLVs ---- */

int fg_hs_req_encode(const struct fg_hs_req *r, uint8_t *buf, size_t cap)
{
	uint8_t tmp[64];
	size_t n = 0;
	if (r->kind != FG_HS_KIND_DIAL && r->kind != FG_HS_KIND_REGISTER)
		return -EINVAL;
	tmp[n++] = FG_HS_TLV_KIND, tmp[n++] = 1, tmp[n++] = r->kind;
	tmp[n++] = FG_HS_TLV_TUNNEL, tmp[n++] = 4, put32(tmp + n, r->tunnel_id), n += 4;
	if (FG_HS_HAS(r, FG_HS_TLV_TARGET))
		tmp[n++] = FG_HS_TLV_TARGET, tmp[n++] = 2, put16(tmp + n, r->target_index), n += 2;
	if (FG_HS_HAS(r, FG_HS_TLV_HOP))
		tmp[n++] = FG_HS_TLV_HOP, tmp[n++] = 1, tmp[n++] = r->hop;
	if (FG_HS_HAS(r, FG_HS_TLV_SESSION))
		tmp[n++] = FG_HS_TLV_SESSION, tmp[n++] = 1, tmp[n++] = r->session;
	if (FG_HS_HAS(r, FG_HS_TLV_NODE))
		tmp[n++] = FG_HS_TLV_NODE, tmp[n++] = 4, put32(tmp + n, r->node_id), n += 4;
	if (FG_HS_HAS(r, FG_HS_TLV_MUX))
		tmp[n++] = FG_HS_TLV_MUX, tmp[n++] = 1, tmp[n++] = r->mux;
	if (n > cap)
		return -ENOSPC;
	memcpy(buf, tmp, n);
	return (int)n;
}

static int tlv_len(uint8_t type)
{
	switch (type) {
	case FG_HS_TLV_KIND: return 1;
	case FG_HS_TLV_TUNNEL: return 4;
	case FG_HS_TLV_TARGET: return 2;
	case FG_HS_TLV_HOP: return 1;
	case FG_HS_TLV_SESSION: return 1;
	case FG_HS_TLV_NODE: return 4;
	case FG_HS_TLV_MUX: return 1;
	default: return -1;
	}
}

int fg_hs_req_decode(const uint8_t *buf, size_t len, struct fg_hs_req *out)
{
	memset(out, 0, sizeof(*out));
	uint32_t seen = 0;
	size_t off = 0;
	while (off < len) {
		if (len - off < 2)
			return -EINVAL;
		uint8_t type = buf[off], vlen = buf[off + 1];
		const uint8_t *v = buf + off + 2;
		if (len - off - 2 < vlen)
			return -EINVAL;
		off += 2 + (size_t)vlen;
		int want = tlv_len(type);
		if (want < 0) {
			if (type & FG_HS_TLV_CRITICAL)
				return -EINVAL;
			continue; /* a newer peer's optional field */
		}
		if (vlen != want || (seen >> type & 1u))
			return -EINVAL;
		seen |= 1u << type;
		switch (type) {
		case FG_HS_TLV_KIND: out->kind = v[0]; break;
		case FG_HS_TLV_TUNNEL: out->tunnel_id = get32(v); break;
		case FG_HS_TLV_TARGET: out->target_index = get16(v); break;
		case FG_HS_TLV_HOP: out->hop = v[0]; break;
		case FG_HS_TLV_SESSION: out->session = v[0]; break;
		case FG_HS_TLV_NODE: out->node_id = get32(v); break;
		case FG_HS_TLV_MUX: out->mux = v[0]; break;
		}
	}
	if (!(seen >> FG_HS_TLV_KIND & 1u) || !(seen >> FG_HS_TLV_TUNNEL & 1u))
		return -EINVAL;
	if (out->kind != FG_HS_KIND_DIAL && out->kind != FG_HS_KIND_REGISTER)
		return -EINVAL;
	out->present = seen & ~(1u << FG_HS_TLV_KIND | 1u << FG_HS_TLV_TUNNEL);
	return 0;
}

/* ---- errors ---- */

const char *fg_hs_strerror(int err)
{
	switch (err) {
	case 0: return "ok";
	case -EAGAIN: return "handshake incomplete";
	case -EINVAL: return "malformed handshake message";
	case -EPROTONOSUPPORT: return "unsupported handshake version";
	case -ENOKEY: return "unknown key id";
	case -EBADMSG: return "handshake MAC mismatch (wrong key)";
	case -ETIME: return "clock skew beyond the allowed window";
	case -EALREADY: return "replayed handshake";
	case -EACCES: return "request not allowed";
	case -EBUSY: return "listener busy";
	case -ECONNREFUSED: return "handshake refused by peer";
	case -ENOSPC: return "buffer too small";
	default: return strerror(err < 0 ? -err : err);
	}
}

static const struct {
	int code, err;
	const char *str;
} refusals[] = {
    {FG_HS_R_MALFORMED, -EINVAL, "malformed"},
    {FG_HS_R_UNKNOWN_KEY, -ENOKEY, "unknown key id"},
    {FG_HS_R_BAD_MAC, -EBADMSG, "bad mac"},
    {FG_HS_R_CLOCK, -ETIME, "clock skew"},
    {FG_HS_R_REPLAY, -EALREADY, "replay"},
    {FG_HS_R_NOT_ALLOWED, -EACCES, "not allowed"},
    {FG_HS_R_BUSY, -EBUSY, "busy"},
    {FG_HS_R_VERSION, -EPROTONOSUPPORT, "unsupported version"},
};

int fg_hs_refuse_code(int err)
{
	for (size_t i = 0; i < FG_ARRAY_LEN(refusals); i++)
		if (refusals[i].err == err)
			return refusals[i].code;
	return FG_HS_R_BUSY;
}

int fg_hs_refuse_to_err(int code)
{
	for (size_t i = 0; i < FG_ARRAY_LEN(refusals); i++)
		if (refusals[i].code == code)
			return refusals[i].err;
	return -ECONNREFUSED;
}

const char *fg_hs_refuse_str(int code)
{
	for (size_t i = 0; i < FG_ARRAY_LEN(refusals); i++)
		if (refusals[i].code == code)
			return refusals[i].str;
	return "unknown reason";
}

/* ---- replay cache ---- */

int fg_hs_replay_init(struct fg_hs_replay_cache *c, uint32_t capacity, uint32_t window_s,
		      uint64_t seed)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	if (!capacity)
		return -EINVAL;
	uint32_t nb = 1;
	while ((uint64_t)nb * FG_HS_REPLAY_WAYS < capacity)
		nb <<= 1;
	c->slots = fg_calloc((size_t)nb * FG_HS_REPLAY_WAYS, sizeof(*c->slots));
	c->floor = fg_calloc(nb, sizeof(*c->floor));
	if (!c->slots || !c->floor) {
		fg_hs_replay_deinit(c);
		return -ENOMEM;
	}
	c->nbuckets = nb;
	c->window_s = window_s ? window_s : FG_HS_DEFAULT_CLOCK_WINDOW;
	c->seed = seed;
	return 0;
}

void fg_hs_replay_deinit(struct fg_hs_replay_cache *c)
{
	fg_free(c->slots);
	fg_free(c->floor);
	c->slots = NULL;
	c->floor = NULL;
	c->nbuckets = 0;
	pthread_mutex_destroy(&c->mu);
}

size_t fg_hs_replay_capacity(const struct fg_hs_replay_cache *c)
{
	return (size_t)c->nbuckets * FG_HS_REPLAY_WAYS;
}

static int slot_live(const struct fg_hs_replay_cache *c, const struct fg_hs_replay_slot *s,
		     uint64_t now)
{
	/* past ts + window the clock check refuses a replay by itself */
	return s->ts && s->ts + c->window_s >= now;
}

size_t fg_hs_replay_live(const struct fg_hs_replay_cache *c, uint64_t now)
{
	size_t n = 0;
	pthread_mutex_t *mu = (pthread_mutex_t *)&c->mu; /* logically const */
	pthread_mutex_lock(mu);
	for (size_t i = 0; i < fg_hs_replay_capacity(c); i++)
		n += (size_t)slot_live(c, &c->slots[i], now);
	pthread_mutex_unlock(mu);
	return n;
}

static uint32_t bucket_of(const struct fg_hs_replay_cache *c, const uint8_t *nonce)
{
	uint64_t a = 0, b = 0;
	memcpy(&a, nonce, 8);
	memcpy(&b, nonce + 8, 8);
	uint64_t h = (a ^ c->seed) * 0x9e3779b97f4a7c15ull;
	h ^= (b + (h >> 29)) * 0xbf58476d1ce4e5b9ull;
	h ^= h >> 31;
	return (uint32_t)(h & (c->nbuckets - 1));
}

static int replay_check_locked(struct fg_hs_replay_cache *c, const uint8_t nonce[FG_HS_NONCE_LEN],
			       uint64_t ts, uint64_t now)
{
	uint32_t b = bucket_of(c, nonce);
	struct fg_hs_replay_slot *set = c->slots + (size_t)b * FG_HS_REPLAY_WAYS;
	if (ts <= c->floor[b])
		return -EALREADY;
	struct fg_hs_replay_slot *free_slot = NULL, *oldest = NULL;
	for (int i = 0; i < FG_HS_REPLAY_WAYS; i++) {
		struct fg_hs_replay_slot *s = &set[i];
		if (!slot_live(c, s, now)) {
			if (!free_slot)
				free_slot = s;
			continue;
		}
		if (!memcmp(s->nonce, nonce, FG_HS_NONCE_LEN))
			return -EALREADY;
		if (!oldest || s->ts < oldest->ts)
			oldest = s;
	}
	if (!free_slot) {
		/* Every way is live: evict the oldest and refuse, from now on,
		 * anything in this bucket that is not newer than it. */
		c->floor[b] = FG_MAX(c->floor[b], oldest->ts);
		c->evicted_live++;
		free_slot = oldest;
		if (ts <= c->floor[b])
			return -EALREADY;
	}
	memcpy(free_slot->nonce, nonce, FG_HS_NONCE_LEN);
	free_slot->ts = ts ? ts : 1;
	return 0;
}

/* Any thread: the tunnel engine's shards share one cache per node. */
int fg_hs_replay_check(struct fg_hs_replay_cache *c, const uint8_t nonce[FG_HS_NONCE_LEN],
		       uint64_t ts, uint64_t now)
{
	pthread_mutex_lock(&c->mu);
	int rc = replay_check_locked(c, nonce, ts, now);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* ---- messages ---- */

static void put_hdr(uint8_t *p, uint8_t type)
{
	memcpy(p, MAGIC, 3);
	p[3] = FG_HS_VERSION;
	p[4] = type;
}

/* Checks the 5-byte header. Returns 0, -EAGAIN, -EINVAL or
 * -EPROTONOSUPPORT; *type gets the message type. */
static int check_hdr(const uint8_t *buf, size_t len, uint8_t *type)
{
	size_t n = FG_MIN(len, (size_t)3);
	if (memcmp(buf, MAGIC, n))
		return -EINVAL;
	if (len < FG_HS_HDR_LEN)
		return -EAGAIN;
	if (buf[3] != FG_HS_VERSION)
		return -EPROTONOSUPPORT;
	*type = buf[4];
	return 0;
}

int fg_hs_build_hello(uint8_t *buf, size_t cap, const uint8_t nonce[FG_HS_NONCE_LEN])
{
	if (cap < FG_HS_HELLO_LEN)
		return -ENOSPC;
	put_hdr(buf, FG_HS_HELLO);
	memcpy(buf + FG_HS_HDR_LEN, nonce, FG_HS_NONCE_LEN);
	return FG_HS_HELLO_LEN;
}

int fg_hs_parse_hello(const uint8_t *buf, size_t len, uint8_t nonce[FG_HS_NONCE_LEN])
{
	uint8_t type;
	int rc = check_hdr(buf, len, &type);
	if (rc)
		return rc;
	if (type != FG_HS_HELLO)
		return -EINVAL;
	if (len < FG_HS_HELLO_LEN)
		return -EAGAIN;
	memcpy(nonce, buf + FG_HS_HDR_LEN, FG_HS_NONCE_LEN);
	return FG_HS_HELLO_LEN;
}

int fg_hs_parse_auth(const uint8_t *buf, size_t len, struct fg_hs_auth *out)
{
	uint8_t type;
	int rc = check_hdr(buf, len, &type);
	if (rc)
		return rc;
	if (type != FG_HS_AUTH)
		return -EINVAL;
	const size_t fixed = FG_HS_HDR_LEN + 4 + FG_HS_NONCE_LEN + 8 + 2;
	if (len < fixed)
		return -EAGAIN;
	size_t req_len = get16(buf + fixed - 2);
	if (req_len > FG_HS_REQ_MAX)
		return -EINVAL;
	size_t total = fixed + req_len + FG_HS_MAC_LEN;
	if (len < total)
		return -EAGAIN;
	const uint8_t *p = buf + FG_HS_HDR_LEN;
	out->key_id = get32(p);
	out->nonce = p + 4;
	out->ts = get64(p + 4 + FG_HS_NONCE_LEN);
	out->req = buf + fixed;
	out->req_len = req_len;
	out->mac = buf + fixed + req_len;
	return (int)total;
}

int fg_hs_parse_answer(const uint8_t *buf, size_t len, struct fg_hs_answer *out)
{
	uint8_t type;
	int rc = check_hdr(buf, len, &type);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	out->type = type;
	if (type == FG_HS_REFUSE) {
		if (len < FG_HS_REFUSE_LEN)
			return -EAGAIN;
		out->refuse = buf[FG_HS_HDR_LEN];
		return FG_HS_REFUSE_LEN;
	}
	if (type != FG_HS_ACCEPT)
		return -EINVAL;
	if (len < FG_HS_HDR_LEN + 2)
		return -EAGAIN;
	size_t rlen = get16(buf + FG_HS_HDR_LEN);
	if (rlen > FG_HS_REPLY_MAX)
		return -EINVAL;
	size_t total = FG_HS_ACCEPT_MIN + rlen;
	if (len < total)
		return -EAGAIN;
	out->reply = buf + FG_HS_HDR_LEN + 2;
	out->reply_len = rlen;
	out->mac = out->reply + rlen;
	return (int)total;
}

int fg_hs_build_refuse(uint8_t *buf, size_t cap, int err)
{
	if (cap < FG_HS_REFUSE_LEN)
		return -ENOSPC;
	put_hdr(buf, FG_HS_REFUSE);
	buf[FG_HS_HDR_LEN] = (uint8_t)fg_hs_refuse_code(err);
	return FG_HS_REFUSE_LEN;
}

/* HMAC-SHA256(psk, label || u8 exporter_len || exporter || a || b). The
 * whole input is bounded (a few hundred bytes), so it is laid out in one
 * stack buffer for the one-shot HMAC(). */
static int transcript_mac(const uint8_t *psk, size_t psk_len, const char *label,
			  const uint8_t *exporter, size_t exporter_len, const uint8_t *a,
			  size_t alen, const uint8_t *b, size_t blen, uint8_t mac[FG_HS_MAC_LEN])
{
	uint8_t
	    msg[32 + 1 + FG_HS_EXPORTER_MAX + FG_HS_HELLO_LEN + FG_HS_AUTH_MAX + FG_HS_ACCEPT_MAX];
	size_t ll = strlen(label), n = 0;
	if (ll > 32 || exporter_len > FG_HS_EXPORTER_MAX ||
	    alen + blen > sizeof(msg) - 33 - FG_HS_EXPORTER_MAX)
		return -EINVAL;
	memcpy(msg, label, ll), n += ll;
	msg[n++] = (uint8_t)exporter_len;
	if (exporter_len)
		memcpy(msg + n, exporter, exporter_len), n += exporter_len;
	if (alen)
		memcpy(msg + n, a, alen), n += alen;
	if (blen)
		memcpy(msg + n, b, blen), n += blen;
	unsigned int mlen = 0;
	uint8_t *r = HMAC(EVP_sha256(), psk, (int)psk_len, msg, n, mac, &mlen);
	OPENSSL_cleanse(msg, n);
	return r && mlen == FG_HS_MAC_LEN ? 0 : -EIO;
}

/* ---- dialer ---- */

int fg_hs_dialer_init(struct fg_hs_dialer *d, uint32_t key_id, const uint8_t *psk, size_t psk_len,
		      const uint8_t nonce[FG_HS_NONCE_LEN], const uint8_t *exporter,
		      size_t exporter_len)
{
	memset(d, 0, sizeof(*d));
	if (!psk_len || psk_len > FG_HS_PSK_MAX || exporter_len > FG_HS_EXPORTER_MAX ||
	    (exporter_len && !exporter))
		return -EINVAL;
	d->key_id = key_id;
	memcpy(d->psk, psk, psk_len);
	d->psk_len = psk_len;
	memcpy(d->nonce, nonce, FG_HS_NONCE_LEN);
	if (exporter_len)
		memcpy(d->exporter, exporter, exporter_len);
	d->exporter_len = exporter_len;
	return 0;
}

int fg_hs_dialer_on_hello(struct fg_hs_dialer *d, const uint8_t *in, size_t len,
			  const struct fg_hs_req *req, uint64_t now_unix, uint8_t *out, size_t cap,
			  size_t *out_len)
{
	if (d->state != 0)
		return -EINVAL;
	if (cap < FG_HS_AUTH_MAX)
		return -ENOSPC;
	int n = fg_hs_parse_hello(in, len, d->listener_nonce);
	if (n < 0) {
		if (n != -EAGAIN)
			d->state = -1;
		return n;
	}
	uint8_t *p = out;
	put_hdr(p, FG_HS_AUTH);
	p += FG_HS_HDR_LEN;
	put32(p, d->key_id), p += 4;
	memcpy(p, d->nonce, FG_HS_NONCE_LEN), p += FG_HS_NONCE_LEN;
	put64(p, now_unix), p += 8;
	int rl = fg_hs_req_encode(req, p + 2, FG_HS_REQ_MAX);
	if (rl < 0) {
		d->state = -1;
		return -EINVAL;
	}
	put16(p, (uint16_t)rl), p += 2 + rl;
	size_t body = (size_t)(p - out);
	if (transcript_mac(d->psk, d->psk_len, LABEL_DIALER, d->exporter, d->exporter_len, in,
			   (size_t)n, out, body, p)) {
		d->state = -1;
		return -EIO;
	}
	*out_len = body + FG_HS_MAC_LEN;
	memcpy(d->transcript, in, (size_t)n);
	memcpy(d->transcript + n, out, *out_len);
	d->transcript_len = (size_t)n + *out_len;
	d->state = 1;
	return n;
}

int fg_hs_dialer_on_answer(struct fg_hs_dialer *d, const uint8_t *in, size_t len, uint8_t *reply,
			   size_t reply_cap, size_t *reply_len, int *refuse)
{
	if (d->state != 1)
		return -EINVAL;
	struct fg_hs_answer a;
	int n = fg_hs_parse_answer(in, len, &a);
	if (n == -EAGAIN)
		return n;
	d->state = -1;
	if (n < 0)
		return n;
	if (a.type == FG_HS_REFUSE) {
		if (refuse)
			*refuse = a.refuse;
		return -ECONNREFUSED;
	}
	uint8_t mac[FG_HS_MAC_LEN];
	size_t body = (size_t)n - FG_HS_MAC_LEN;
	if (transcript_mac(d->psk, d->psk_len, LABEL_LISTENER, d->exporter, d->exporter_len,
			   d->transcript, d->transcript_len, in, body, mac))
		return -EIO;
	if (CRYPTO_memcmp(mac, a.mac, FG_HS_MAC_LEN))
		return -EBADMSG;
	if (a.reply_len > reply_cap)
		return -EINVAL;
	if (a.reply_len)
		memcpy(reply, a.reply, a.reply_len);
	if (reply_len)
		*reply_len = a.reply_len;
	d->state = 2;
	return n;
}

void fg_hs_dialer_wipe(struct fg_hs_dialer *d)
{
	OPENSSL_cleanse(d, sizeof(*d));
}

/* ---- listener ---- */

int fg_hs_listener_init(struct fg_hs_listener *l, const struct fg_hs_listener_cfg *cfg,
			const uint8_t nonce[FG_HS_NONCE_LEN], const uint8_t *exporter,
			size_t exporter_len, uint8_t *out, size_t cap)
{
	memset(l, 0, sizeof(*l));
	if (exporter_len > FG_HS_EXPORTER_MAX || (exporter_len && !exporter) || !cfg->replay ||
	    !cfg->lookup_cb)
		return -EINVAL;
	l->cfg = cfg;
	memcpy(l->nonce, nonce, FG_HS_NONCE_LEN);
	if (exporter_len)
		memcpy(l->exporter, exporter, exporter_len);
	l->exporter_len = exporter_len;
	int n = fg_hs_build_hello(l->transcript, sizeof(l->transcript), nonce);
	if (n < 0 || (size_t)n > cap)
		return -ENOSPC;
	l->transcript_len = (size_t)n;
	memcpy(out, l->transcript, (size_t)n);
	return n;
}

int fg_hs_listener_on_auth(struct fg_hs_listener *l, const uint8_t *in, size_t len,
			   uint64_t now_unix, struct fg_hs_req *req)
{
	if (l->state != 0)
		return -EINVAL;
	struct fg_hs_auth a;
	int n = fg_hs_parse_auth(in, len, &a);
	if (n == -EAGAIN)
		return n;
	l->state = -1;
	if (n < 0)
		return n;
	struct fg_hs_req r;
	if (fg_hs_req_decode(a.req, a.req_len, &r))
		return -EINVAL;
	size_t psk_len = 0;
	if (l->cfg->lookup_cb(l->cfg->lookup_arg, a.key_id, l->psk, &psk_len) || psk_len == 0 ||
	    psk_len > FG_HS_PSK_MAX) {
		OPENSSL_cleanse(l->psk, sizeof(l->psk));
		return -ENOKEY;
	}
	uint8_t mac[FG_HS_MAC_LEN];
	size_t body = (size_t)n - FG_HS_MAC_LEN;
	int rc = transcript_mac(l->psk, psk_len, LABEL_DIALER, l->exporter, l->exporter_len,
				l->transcript, l->transcript_len, in, body, mac);
	if (rc || CRYPTO_memcmp(mac, a.mac, FG_HS_MAC_LEN)) {
		OPENSSL_cleanse(l->psk, sizeof(l->psk));
		return rc ? rc : -EBADMSG;
	}
	/* Authenticated from here on: only a key holder can make us spend a
	 * replay-cache slot. */
	uint32_t w = l->cfg->clock_window_s ? l->cfg->clock_window_s : FG_HS_DEFAULT_CLOCK_WINDOW;
	uint64_t skew = a.ts > now_unix ? a.ts - now_unix : now_unix - a.ts;
	if (skew > w) {
		OPENSSL_cleanse(l->psk, sizeof(l->psk));
		return -ETIME;
	}
	if (fg_hs_replay_check(l->cfg->replay, a.nonce, a.ts, now_unix)) {
		OPENSSL_cleanse(l->psk, sizeof(l->psk));
		return -EALREADY;
	}
	l->psk_len = psk_len;
	l->key_id = a.key_id;
	memcpy(l->dialer_nonce, a.nonce, FG_HS_NONCE_LEN);
	memcpy(l->transcript + l->transcript_len, in, (size_t)n);
	l->transcript_len += (size_t)n;
	l->req = r;
	*req = r;
	l->state = 1;
	return n;
}

int fg_hs_listener_accept(struct fg_hs_listener *l, const uint8_t *reply, size_t reply_len,
			  uint8_t *out, size_t cap)
{
	if (l->state != 1 || reply_len > FG_HS_REPLY_MAX)
		return -EINVAL;
	size_t total = FG_HS_ACCEPT_MIN + reply_len;
	if (cap < total)
		return -ENOSPC;
	put_hdr(out, FG_HS_ACCEPT);
	put16(out + FG_HS_HDR_LEN, (uint16_t)reply_len);
	if (reply_len)
		memcpy(out + FG_HS_HDR_LEN + 2, reply, reply_len);
	size_t body = total - FG_HS_MAC_LEN;
	if (transcript_mac(l->psk, l->psk_len, LABEL_LISTENER, l->exporter, l->exporter_len,
			   l->transcript, l->transcript_len, out, body, out + body))
		return -EIO;
	l->state = 2;
	return (int)total;
}

void fg_hs_listener_wipe(struct fg_hs_listener *l)
{
	OPENSSL_cleanse(l, sizeof(*l));
}

int fg_hs_dialer_aead_keys(const struct fg_hs_dialer *d, struct fg_aead_keys *out)
{
	if (d->state != 2)
		return -EINVAL;
	return fg_aead_derive(d->psk, d->psk_len, d->listener_nonce, d->nonce, 1, out);
}

int fg_hs_listener_aead_keys(const struct fg_hs_listener *l, struct fg_aead_keys *out)
{
	if (l->state != 1 && l->state != 2)
		return -EINVAL;
	return fg_aead_derive(l->psk, l->psk_len, l->nonce, l->dialer_nonce, 0, out);
}
