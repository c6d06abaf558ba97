/* ChaCha20-Poly1305 framing of a byte stream with a pre-shared key.
 *
 * Each direction of a connection has its own 32-byte key, derived by
 * HKDF-SHA256 from the PSK and both handshake nonces, and its own 64-bit
 * frame counter used as the nonce (never random). A frame is
 *
 *   seal(len as 2 bytes big-endian) + tag    18 bytes, nonce = counter
 *   seal(payload) + tag                      len + 16 bytes, nonce = counter + 1
 *
 * so lengths are authenticated and cannot be altered. The opener works over
 * arbitrary chunks of the stream; one failed tag ends it for good. See
 * doc/tunnel-protocol.md for the byte layout. Nothing here touches a socket;
 * a sealer or opener belongs to one connection on one thread. */
#ifndef FG_TUNNEL_AEAD_H
#define FG_TUNNEL_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define FG_AEAD_KEY_LEN	    32
#define FG_AEAD_NONCE_LEN   32 /* handshake nonce of each side */
#define FG_AEAD_TAG_LEN	    16
#define FG_AEAD_LEN_LEN	    2
#define FG_AEAD_HDR_LEN	    (FG_AEAD_LEN_LEN + FG_AEAD_TAG_LEN) /* 18 */
#define FG_AEAD_MAX_PAYLOAD 16384				/* per frame */
#define FG_AEAD_FRAME_MAX   (FG_AEAD_HDR_LEN + FG_AEAD_MAX_PAYLOAD + FG_AEAD_TAG_LEN)
#define FG_AEAD_PSK_MIN	    16
#define FG_AEAD_PSK_MAX	    64
/* Each frame uses two counter values; the sealer and opener refuse a frame
 * whose counters would pass this (2^64 - 2: never wraps). */
#define FG_AEAD_COUNTER_MAX (UINT64_MAX - 1)

struct evp_cipher_ctx_st;

/* The two keys of one side of a connection: tx seals what this side sends,
 * rx opens what it receives. The dialer's tx is the listener's rx. */
struct fg_aead_keys {
	uint8_t tx[FG_AEAD_KEY_LEN];
	uint8_t rx[FG_AEAD_KEY_LEN];
};

/* Derives both direction keys: HKDF-SHA256 with ikm = psk, salt =
 * listener_nonce || dialer_nonce, info = "flowgate aead v1 " + "d2l" or
 * "l2d". is_dialer picks which key is tx. Returns 0, -EINVAL (psk length
 * outside [FG_AEAD_PSK_MIN, FG_AEAD_PSK_MAX]) or -EIO (libcrypto failed). */
int fg_aead_derive(const uint8_t *psk, size_t psk_len,
		   const uint8_t listener_nonce[FG_AEAD_NONCE_LEN],
		   const uint8_t dialer_nonce[FG_AEAD_NONCE_LEN], int is_dialer,
		   struct fg_aead_keys *out);

/* Bytes on the wire for len payload bytes (split into full frames). */
size_t fg_aead_sealed_size(size_t len);

struct fg_aead_sealer {
	struct evp_cipher_ctx_st *ctx; /* owned; key set once */
	uint64_t counter;	       /* next nonce */
	int dead;		       /* counter exhausted or libcrypto failed */
};

/* Returns 0, or -ENOMEM/-EIO. The key is copied into the cipher context. */
int fg_aead_sealer_init(struct fg_aead_sealer *s, const uint8_t key[FG_AEAD_KEY_LEN]);
void fg_aead_sealer_deinit(struct fg_aead_sealer *s);

/* Seals len bytes (len may exceed FG_AEAD_MAX_PAYLOAD: it is split into
 * frames) into out. Returns the bytes written (fg_aead_sealed_size(len)),
 * -ENOSPC if cap is too small (nothing written, counter unchanged), -E2BIG
 * for len above INT_MAX / 2,
 * -EOVERFLOW if the counter would pass FG_AEAD_COUNTER_MAX (the sealer is
 * then dead: the connection must end and a new handshake start), or -EIO.
 * len 0 writes nothing and returns 0: empty frames do not exist. */
int fg_aead_seal(struct fg_aead_sealer *s, const uint8_t *in, size_t len, uint8_t *out, size_t cap);

enum fg_aead_open_state { FG_AEAD_WANT_HDR = 0, FG_AEAD_WANT_PAYLOAD, FG_AEAD_DEAD };

struct fg_aead_opener {
	struct evp_cipher_ctx_st *ctx; /* owned */
	uint64_t counter;
	enum fg_aead_open_state state;
	int err;     /* the error returned forever once dead */
	size_t want; /* sealed payload + tag bytes of the current frame */
	size_t have; /* bytes of the current part held in buf */
	uint8_t buf[FG_AEAD_MAX_PAYLOAD + FG_AEAD_TAG_LEN]; /* a partial part */
};

int fg_aead_opener_init(struct fg_aead_opener *o, const uint8_t key[FG_AEAD_KEY_LEN]);
void fg_aead_opener_deinit(struct fg_aead_opener *o);

/* Feeds ciphertext. Consumes input until one frame is complete, then writes
 * its plaintext to out (cap must be >= FG_AEAD_MAX_PAYLOAD) and returns its
 * length (> 0). *consumed tells how much of in was taken; call again with
 * the rest. Returns -EAGAIN once all of in is consumed without completing a
 * frame (partial bytes are kept inside the opener). Returns -EBADMSG if a
 * tag does not verify, -EPROTO for an authenticated but impossible length
 * (0 or > FG_AEAD_MAX_PAYLOAD), -EOVERFLOW if the counter is exhausted; any
 * of those kills the opener, and every later call returns the same error
 * without reading input. Unauthenticated plaintext never reaches out: a
 * failed frame's bytes are wiped. -EINVAL for cap too small (not fatal). */
int fg_aead_open(struct fg_aead_opener *o, const uint8_t *in, size_t len, size_t *consumed,
		 uint8_t *out, size_t cap);

/* Test hook: start counting at counter (to reach exhaustion in a test). */
void fg_aead_sealer_set_counter(struct fg_aead_sealer *s, uint64_t counter);
void fg_aead_opener_set_counter(struct fg_aead_opener *o, uint64_t counter);

#endif
