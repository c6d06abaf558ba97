#include "tunnel/aead.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "core/util.h"

static const char INFO_PREFIX[] = "flowgate aead v1 ";

static int hkdf(const uint8_t *psk, size_t psk_len, const uint8_t *salt, size_t salt_len,
		const char *info, uint8_t out[FG_AEAD_KEY_LEN])
{
	int rc = -EIO;
	size_t outlen = FG_AEAD_KEY_LEN;
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
	if (!pctx)
		return -EIO;
	if (EVP_PKEY_derive_init(pctx) <= 0 || EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) <= 0 ||
	    EVP_PKEY_CTX_set1_hkdf_salt(pctx, salt, (int)salt_len) <= 0 ||
	    EVP_PKEY_CTX_set1_hkdf_key(pctx, psk, (int)psk_len) <= 0 ||
	    EVP_PKEY_CTX_add1_hkdf_info(pctx, (const unsigned char *)info, (int)strlen(info)) <= 0)
		goto err;
	if (EVP_PKEY_derive(pctx, out, &outlen) <= 0 || outlen != FG_AEAD_KEY_LEN)
		goto err;
	rc = 0;
err:
	EVP_PKEY_CTX_free(pctx);
	return rc;
}

int fg_aead_derive(const uint8_t *psk, size_t psk_len,
		   const uint8_t listener_nonce[FG_AEAD_NONCE_LEN],
		   const uint8_t dialer_nonce[FG_AEAD_NONCE_LEN], int is_dialer,
		   struct fg_aead_keys *out)
{
	if (psk_len < FG_AEAD_PSK_MIN || psk_len > FG_AEAD_PSK_MAX)
		return -EINVAL;
	uint8_t salt[2 * FG_AEAD_NONCE_LEN];
	memcpy(salt, listener_nonce, FG_AEAD_NONCE_LEN);
	memcpy(salt + FG_AEAD_NONCE_LEN, dialer_nonce, FG_AEAD_NONCE_LEN);
	char info_d2l[sizeof(INFO_PREFIX) + 3], info_l2d[sizeof(INFO_PREFIX) + 3];
	snprintf(info_d2l, sizeof(info_d2l), "%sd2l", INFO_PREFIX);
	snprintf(info_l2d, sizeof(info_l2d), "%sl2d", INFO_PREFIX);
	uint8_t d2l[FG_AEAD_KEY_LEN], l2d[FG_AEAD_KEY_LEN];
	int rc = hkdf(psk, psk_len, salt, sizeof(salt), info_d2l, d2l);
	if (!rc)
		rc = hkdf(psk, psk_len, salt, sizeof(salt), info_l2d, l2d);
	if (!rc) {
		memcpy(out->tx, is_dialer ? d2l : l2d, FG_AEAD_KEY_LEN);
		memcpy(out->rx, is_dialer ? l2d : d2l, FG_AEAD_KEY_LEN);
	}
	OPENSSL_cleanse(d2l, sizeof(d2l));
	OPENSSL_cleanse(l2d, sizeof(l2d));
	return rc;
}

size_t fg_aead_sealed_size(size_t len)
{
	size_t frames = (len + FG_AEAD_MAX_PAYLOAD - 1) / FG_AEAD_MAX_PAYLOAD;
	return len + frames * (FG_AEAD_HDR_LEN + FG_AEAD_TAG_LEN);
}

/* 96-bit ChaCha20-Poly1305 nonce: 4 zero bytes, then the counter big-endian. */
static void make_iv(uint64_t counter, uint8_t iv[12])
{
	memset(iv, 0, 4);
	for (int i = 0; i < 8; i++)
		iv[4 + i] = (uint8_t)(counter >> (56 - 8 * i));
}

static EVP_CIPHER_CTX *ctx_new(const uint8_t key[FG_AEAD_KEY_LEN], int enc)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return NULL;
	if (EVP_CipherInit_ex(ctx, EVP_chacha20_poly1305(), NULL, key, NULL, enc) <= 0) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int fg_aead_sealer_init(struct fg_aead_sealer *s, const uint8_t key[FG_AEAD_KEY_LEN])
{
	memset(s, 0, sizeof(*s));
	s->ctx = ctx_new(key, 1);
	return s->ctx ? 0 : -ENOMEM;
}

void fg_aead_sealer_deinit(struct fg_aead_sealer *s)
{
	EVP_CIPHER_CTX_free(s->ctx);
	s->ctx = NULL;
	s->dead = 1;
}

void fg_aead_sealer_set_counter(struct fg_aead_sealer *s, uint64_t counter)
{
	s->counter = counter;
}

/* Seals one part (length or payload) with the given counter: out gets
 * len ciphertext bytes followed by the tag. */
static int seal_part(EVP_CIPHER_CTX *ctx, uint64_t counter, const uint8_t *in, size_t len,
		     uint8_t *out)
{
	uint8_t iv[12];
	int n = 0, fin = 0;
	make_iv(counter, iv);
	if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) <= 0 ||
	    EVP_EncryptUpdate(ctx, out, &n, in, (int)len) <= 0 || (size_t)n != len ||
	    EVP_EncryptFinal_ex(ctx, out + n, &fin) <= 0 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, FG_AEAD_TAG_LEN, out + len) <= 0)
		return -EIO;
	return 0;
}

int fg_aead_seal(struct fg_aead_sealer *s, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	if (s->dead)
		return -EOVERFLOW;
	if (!len)
		return 0;
	if (len > INT_MAX / 2)
		return -E2BIG; /* the result must fit the int return */
	size_t need = fg_aead_sealed_size(len);
	if (cap < need)
		return -ENOSPC;
	size_t frames = (len + FG_AEAD_MAX_PAYLOAD - 1) / FG_AEAD_MAX_PAYLOAD;
	/* Refuse before any byte is written: frame i uses counter + 2i and
	 * counter + 2i + 1, all of which must stay <= FG_AEAD_COUNTER_MAX. */
	if (s->counter > FG_AEAD_COUNTER_MAX ||
	    frames > (FG_AEAD_COUNTER_MAX - s->counter + 1) / 2) {
		s->dead = 1;
		return -EOVERFLOW;
	}
	size_t off = 0, w = 0;
	while (off < len) {
		size_t plen = FG_MIN(len - off, (size_t)FG_AEAD_MAX_PAYLOAD);
		uint8_t lenbuf[2] = {(uint8_t)(plen >> 8), (uint8_t)plen};
		if (seal_part(s->ctx, s->counter, lenbuf, 2, out + w) ||
		    seal_part(s->ctx, s->counter + 1, in + off, plen, out + w + FG_AEAD_HDR_LEN)) {
			s->dead = 1;
			return -EIO;
		}
		s->counter += 2;
		w += FG_AEAD_HDR_LEN + plen + FG_AEAD_TAG_LEN;
		off += plen;
	}
	return (int)w;
}

int fg_aead_opener_init(struct fg_aead_opener *o, const uint8_t key[FG_AEAD_KEY_LEN])
{
	memset(o, 0, sizeof(*o));
	o->ctx = ctx_new(key, 0);
	return o->ctx ? 0 : -ENOMEM;
}

void fg_aead_opener_deinit(struct fg_aead_opener *o)
{
	EVP_CIPHER_CTX_free(o->ctx);
	o->ctx = NULL;
	OPENSSL_cleanse(o->buf, sizeof(o->buf));
	o->state = FG_AEAD_DEAD;
	o->err = -EPIPE;
}

void fg_aead_opener_set_counter(struct fg_aead_opener *o, uint64_t counter)
{
	o->counter = counter;
}

/* Opens one sealed part: in holds len ciphertext bytes then the tag.
 * Returns 0 or -EBADMSG; on failure out is wiped. */
static int open_part(EVP_CIPHER_CTX *ctx, uint64_t counter, const uint8_t *in, size_t len,
		     uint8_t *out)
{
	uint8_t iv[12], tag[FG_AEAD_TAG_LEN];
	int n = 0, fin = 0;
	make_iv(counter, iv);
	memcpy(tag, in + len, FG_AEAD_TAG_LEN); /* ctrl wants a writable buffer */
	if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, iv) <= 0 ||
	    EVP_DecryptUpdate(ctx, out, &n, in, (int)len) <= 0 || (size_t)n != len ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, FG_AEAD_TAG_LEN, tag) <= 0 ||
	    EVP_DecryptFinal_ex(ctx, out + n, &fin) <= 0) {
		OPENSSL_cleanse(out, len);
		return -EBADMSG;
	}
	return 0;
}

static int die(struct fg_aead_opener *o, int err)
{
	o->state = FG_AEAD_DEAD;
	o->err = err;
	o->have = 0;
	OPENSSL_cleanse(o->buf, sizeof(o->buf));
	return err;
}

/* Gathers want bytes of the current part. Returns a pointer to them (in
 * the input when they are contiguous there, else o->buf), or NULL when the
 * input ran out first (the partial bytes are kept). */
static const uint8_t *gather(struct fg_aead_opener *o, const uint8_t *in, size_t len, size_t *off,
			     size_t want)
{
	if (!o->have && len - *off >= want) {
		const uint8_t *p = in + *off;
		*off += want;
		return p;
	}
	size_t take = FG_MIN(want - o->have, len - *off);
	memcpy(o->buf + o->have, in + *off, take);
	o->have += take;
	*off += take;
	if (o->have < want)
		return NULL;
	o->have = 0;
	return o->buf;
}

int fg_aead_open(struct fg_aead_opener *o, const uint8_t *in, size_t len, size_t *consumed,
		 uint8_t *out, size_t cap)
{
	size_t off = 0;
	*consumed = 0;
	if (o->state == FG_AEAD_DEAD)
		return o->err;
	if (cap < FG_AEAD_MAX_PAYLOAD)
		return -EINVAL;
	if (o->state == FG_AEAD_WANT_HDR) {
		const uint8_t *p = gather(o, in, len, &off, FG_AEAD_HDR_LEN);
		*consumed = off;
		if (!p)
			return -EAGAIN;
		if (o->counter > FG_AEAD_COUNTER_MAX - 1)
			return die(o, -EOVERFLOW);
		uint8_t lb[2];
		if (open_part(o->ctx, o->counter, p, 2, lb))
			return die(o, -EBADMSG);
		size_t plen = (size_t)lb[0] << 8 | lb[1];
		if (plen == 0 || plen > FG_AEAD_MAX_PAYLOAD)
			return die(o, -EPROTO);
		o->want = plen + FG_AEAD_TAG_LEN;
		o->state = FG_AEAD_WANT_PAYLOAD;
	}
	const uint8_t *p = gather(o, in, len, &off, o->want);
	*consumed = off;
	if (!p)
		return -EAGAIN;
	size_t plen = o->want - FG_AEAD_TAG_LEN;
	if (open_part(o->ctx, o->counter + 1, p, plen, out))
		return die(o, -EBADMSG);
	o->counter += 2;
	o->state = FG_AEAD_WANT_HDR;
	return (int)plen;
}
