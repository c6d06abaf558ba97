/* The handshake on every tunnel link: mutual proof of a pre-shared key,
 * replay-safe, carrying what the dialer asks for.
 *
 *   listener -> dialer   HELLO   listener nonce
 *   dialer -> listener   AUTH    key id, dialer nonce, timestamp, request, MAC
 *   listener -> dialer   ACCEPT  reply, MAC        (or REFUSE with a reason)
 *
 * Both MACs are HMAC-SHA256 with the PSK over the transcript so far (and the
 * TLS exporter when the link runs over TLS), with different labels so one
 * cannot stand for the other. The listener checks the dialer's MAC in
 * constant time, the clock window and a replay cache before it answers;
 * the dialer checks the listener's MAC before it sends a byte of payload.
 * Byte layouts: doc/tunnel-protocol.md.
 *
 * Everything here is pure over (buf, len): no socket, no clock, no RNG —
 * the caller passes nonces (RAND_bytes) and the time (unix seconds). */
#ifndef FG_TUNNEL_HANDSHAKE_H
#define FG_TUNNEL_HANDSHAKE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define FG_HS_VERSION		   1
#define FG_HS_NONCE_LEN		   32
#define FG_HS_MAC_LEN		   32
#define FG_HS_PSK_MAX		   64
#define FG_HS_EXPORTER_MAX	   64
#define FG_HS_REQ_MAX		   256				     /* request TLV block */
#define FG_HS_REPLY_MAX		   256				     /* reply block in ACCEPT */
#define FG_HS_HDR_LEN		   5				     /* "FGT", version, type */
#define FG_HS_HELLO_LEN		   (FG_HS_HDR_LEN + FG_HS_NONCE_LEN) /* 37 */
#define FG_HS_AUTH_MIN		   (FG_HS_HDR_LEN + 4 + FG_HS_NONCE_LEN + 8 + 2 + FG_HS_MAC_LEN) /* 83 */
#define FG_HS_AUTH_MAX		   (FG_HS_AUTH_MIN + FG_HS_REQ_MAX)
#define FG_HS_ACCEPT_MIN	   (FG_HS_HDR_LEN + 2 + FG_HS_MAC_LEN) /* 39 */
#define FG_HS_ACCEPT_MAX	   (FG_HS_ACCEPT_MIN + FG_HS_REPLY_MAX)
#define FG_HS_REFUSE_LEN	   (FG_HS_HDR_LEN + 1)
#define FG_HS_DEFAULT_CLOCK_WINDOW 60 /* seconds either way */
/* Label for SSL_export_keying_material when the link runs over TLS. */
#define FG_HS_TLS_EXPORTER_LABEL "EXPORTER-flowgate-tunnel-v1"

enum fg_hs_type { FG_HS_HELLO = 1, FG_HS_AUTH = 2, FG_HS_ACCEPT = 3, FG_HS_REFUSE = 4 };

/* What the dialer asks for (the request TLV block of AUTH). */
enum fg_hs_kind {
	FG_HS_KIND_DIAL = 1,	 /* carry streams to the tunnel's target(s) */
	FG_HS_KIND_REGISTER = 2, /* reverse tunnel: the exit registers with the entry */
};

enum fg_hs_tlv {
	FG_HS_TLV_KIND = 0x01,	  /* u8, required */
	FG_HS_TLV_TUNNEL = 0x02,  /* u32 tunnel id, required */
	FG_HS_TLV_TARGET = 0x03,  /* u16 target index */
	FG_HS_TLV_HOP = 0x04,	  /* u8 hop index along the tunnel */
	FG_HS_TLV_SESSION = 0x05, /* u8 index among parallel mux sessions */
	FG_HS_TLV_NODE = 0x06,	  /* u32 dialer's node id */
	FG_HS_TLV_MUX = 0x07,	  /* u8 1: a mux session runs on this link */
};
/* Unknown types below 0x80 are skipped; 0x80 and above are critical and an
 * unknown one makes the request malformed. */
#define FG_HS_TLV_CRITICAL 0x80

struct fg_hs_req {
	uint32_t present; /* bit (1 << type) for each optional field sent */
	uint8_t kind;	  /* enum fg_hs_kind */
	uint32_t tunnel_id;
	uint16_t target_index;
	uint8_t hop;
	uint8_t session;
	uint32_t node_id;
	uint8_t mux;
};
#define FG_HS_HAS(req, tlv) (((req)->present >> (tlv)) & 1u)

/* Encodes a request (kind and tunnel always, the other fields when their
 * bit is in present). Returns its length, or -ENOSPC / -EINVAL (bad kind). */
int fg_hs_req_encode(const struct fg_hs_req *r, uint8_t *buf, size_t cap);
/* Decodes a request block of exactly len bytes. Returns 0 or -EINVAL
 * (truncated TLV, wrong length for a known type, duplicate, unknown
 * critical type, missing kind or tunnel, unknown kind). */
int fg_hs_req_decode(const uint8_t *buf, size_t len, struct fg_hs_req *out);

/* Reasons in a REFUSE message. Advisory only: REFUSE is unauthenticated. */
enum fg_hs_refuse {
	FG_HS_R_MALFORMED = 1,
	FG_HS_R_UNKNOWN_KEY = 2,
	FG_HS_R_BAD_MAC = 3,
	FG_HS_R_CLOCK = 4,
	FG_HS_R_REPLAY = 5,
	FG_HS_R_NOT_ALLOWED = 6,
	FG_HS_R_BUSY = 7,
	FG_HS_R_VERSION = 8,
};

/* The error codes of this module, as negative errno values:
 *   -EINVAL          malformed message
 *   -EPROTONOSUPPORT unknown handshake version
 *   -ENOKEY          unknown key id (no key for it)
 *   -EBADMSG         MAC does not verify (wrong key, or tampered)
 *   -ETIME           timestamp outside the clock window
 *   -EALREADY        replayed handshake (nonce seen before)
 *   -EACCES          request not allowed (set by the owner's policy)
 *   -EBUSY           listener busy
 *   -ECONNREFUSED    the peer sent REFUSE (see the reason)
 * Returns a static string for any of them (or strerror for others). */
const char *fg_hs_strerror(int err);
int fg_hs_refuse_code(int err);	   /* error -> REFUSE reason */
int fg_hs_refuse_to_err(int code); /* REFUSE reason -> error */
const char *fg_hs_refuse_str(int code);

/* Replay cache: fixed memory, set-associative (FG_HS_REPLAY_WAYS entries
 * per bucket). An entry is live while its timestamp is inside the clock
 * window; a dead one is reused. When a bucket is full of live entries the
 * oldest is evicted and the bucket remembers its timestamp (floor): from
 * then on, a handshake landing in that bucket with a timestamp at or
 * below the floor is refused as a possible replay. So a replay is always
 * refused, and memory never grows. One cache per node: check and live are
 * thread-safe (a mutex; handshakes are rare next to bytes), so every
 * thread of a node refuses a nonce any of them has seen. */
#define FG_HS_REPLAY_WAYS 8
struct fg_hs_replay_slot {
	uint8_t nonce[FG_HS_NONCE_LEN];
	uint64_t ts; /* 0 = empty */
};
struct fg_hs_replay_cache {
	struct fg_hs_replay_slot *slots; /* owned: nbuckets * WAYS */
	uint64_t *floor;		 /* owned: per bucket */
	uint32_t nbuckets;		 /* power of two */
	uint32_t window_s;
	uint64_t seed;
	uint64_t evicted_live; /* live entries evicted (floor raised) */
	pthread_mutex_t mu;    /* guards everything above after init */
};
/* capacity: entries to hold (rounded up to whole buckets). Returns 0,
 * -EINVAL (capacity 0) or -ENOMEM. seed randomises bucket choice. */
int fg_hs_replay_init(struct fg_hs_replay_cache *c, uint32_t capacity, uint32_t window_s,
		      uint64_t seed);
void fg_hs_replay_deinit(struct fg_hs_replay_cache *c);
/* Records (nonce, ts) seen at now. Returns 0, or -EALREADY if the nonce is
 * live in the cache or ts is at/below its bucket's floor (nothing stored). */
int fg_hs_replay_check(struct fg_hs_replay_cache *c, const uint8_t nonce[FG_HS_NONCE_LEN],
		       uint64_t ts, uint64_t now);
size_t fg_hs_replay_capacity(const struct fg_hs_replay_cache *c);
size_t fg_hs_replay_live(const struct fg_hs_replay_cache *c, uint64_t now);

/* Pure codecs of the single messages. Parsers return the message length
 * (bytes after it belong to the next layer), -EAGAIN for a prefix,
 * -EINVAL if malformed, -EPROTONOSUPPORT for another version. Parsed
 * pointers point into buf (borrowed). */
int fg_hs_build_hello(uint8_t *buf, size_t cap, const uint8_t nonce[FG_HS_NONCE_LEN]);
int fg_hs_parse_hello(const uint8_t *buf, size_t len, uint8_t nonce[FG_HS_NONCE_LEN]);

struct fg_hs_auth {
	uint32_t key_id;
	const uint8_t *nonce; /* FG_HS_NONCE_LEN bytes */
	uint64_t ts;
	const uint8_t *req; /* request TLV block */
	size_t req_len;
	const uint8_t *mac; /* FG_HS_MAC_LEN bytes */
};
int fg_hs_parse_auth(const uint8_t *buf, size_t len, struct fg_hs_auth *out);

/* ACCEPT or REFUSE. For ACCEPT *type = FG_HS_ACCEPT and reply/mac are set;
 * for REFUSE *type = FG_HS_REFUSE and *refuse the reason. */
struct fg_hs_answer {
	int type;
	int refuse;
	const uint8_t *reply;
	size_t reply_len;
	const uint8_t *mac;
};
int fg_hs_parse_answer(const uint8_t *buf, size_t len, struct fg_hs_answer *out);
/* REFUSE for an error of this module. Returns FG_HS_REFUSE_LEN or -ENOSPC. */
int fg_hs_build_refuse(uint8_t *buf, size_t cap, int err);

/* ---- Dialer side ---- */
struct fg_hs_dialer {
	uint32_t key_id;
	uint8_t psk[FG_HS_PSK_MAX];
	size_t psk_len;
	uint8_t nonce[FG_HS_NONCE_LEN];		 /* ours */
	uint8_t listener_nonce[FG_HS_NONCE_LEN]; /* from HELLO */
	uint8_t exporter[FG_HS_EXPORTER_MAX];
	size_t exporter_len;
	uint8_t transcript[FG_HS_HELLO_LEN + FG_HS_AUTH_MAX]; /* HELLO || AUTH */
	size_t transcript_len;
	int state; /* 0 wait HELLO, 1 wait answer, 2 done, -1 failed */
};

/* psk is copied; exporter may be NULL (no TLS). nonce: 32 fresh random
 * bytes. Returns 0 or -EINVAL (psk empty or too long, exporter too long). */
int fg_hs_dialer_init(struct fg_hs_dialer *d, uint32_t key_id, const uint8_t *psk, size_t psk_len,
		      const uint8_t nonce[FG_HS_NONCE_LEN], const uint8_t *exporter,
		      size_t exporter_len);
/* Consumes HELLO from in and writes AUTH (with req and now_unix) to out.
 * Returns bytes of in consumed (> 0) and sets *out_len; -EAGAIN; -EINVAL /
 * -EPROTONOSUPPORT; -ENOSPC if out is smaller than FG_HS_AUTH_MAX. */
int fg_hs_dialer_on_hello(struct fg_hs_dialer *d, const uint8_t *in, size_t len,
			  const struct fg_hs_req *req, uint64_t now_unix, uint8_t *out, size_t cap,
			  size_t *out_len);
/* Consumes the listener's answer. On ACCEPT with a valid MAC returns the
 * bytes consumed and copies the reply (reply may be NULL if reply_cap is
 * 0; -EINVAL if it does not fit). -EBADMSG if the listener's MAC is wrong
 * (it does not hold the key: end the link), -ECONNREFUSED on REFUSE
 * (*refuse gets the reason; may be NULL), -EAGAIN, -EINVAL. */
int fg_hs_dialer_on_answer(struct fg_hs_dialer *d, const uint8_t *in, size_t len, uint8_t *reply,
			   size_t reply_cap, size_t *reply_len, int *refuse);
void fg_hs_dialer_wipe(struct fg_hs_dialer *d);

/* ---- Listener side ---- */

/* Finds the PSK for key_id: copies it into psk (FG_HS_PSK_MAX bytes) and
 * sets *psk_len. Returns 0 or -ENOKEY. Called on the listener's thread. */
typedef int (*fg_hs_key_lookup_cb)(void *arg, uint32_t key_id, uint8_t *psk, size_t *psk_len);

struct fg_hs_listener_cfg {
	fg_hs_key_lookup_cb lookup_cb;
	void *lookup_arg;
	uint32_t clock_window_s;	   /* 0 = FG_HS_DEFAULT_CLOCK_WINDOW */
	struct fg_hs_replay_cache *replay; /* borrowed, required */
};

struct fg_hs_listener {
	const struct fg_hs_listener_cfg *cfg; /* borrowed */
	uint8_t nonce[FG_HS_NONCE_LEN];	      /* ours */
	uint8_t exporter[FG_HS_EXPORTER_MAX];
	size_t exporter_len;
	/* set once AUTH verified: */
	uint32_t key_id;
	uint8_t psk[FG_HS_PSK_MAX];
	size_t psk_len;
	uint8_t dialer_nonce[FG_HS_NONCE_LEN];
	struct fg_hs_req req;
	uint8_t transcript[FG_HS_HELLO_LEN + FG_HS_AUTH_MAX];
	size_t transcript_len;
	int state; /* 0 wait AUTH, 1 verified, 2 answered, -1 failed */
};

/* Starts a listener-side handshake: writes HELLO into out. Returns its
 * length, -ENOSPC, or -EINVAL (exporter too long). */
int fg_hs_listener_init(struct fg_hs_listener *l, const struct fg_hs_listener_cfg *cfg,
			const uint8_t nonce[FG_HS_NONCE_LEN], const uint8_t *exporter,
			size_t exporter_len, uint8_t *out, size_t cap);
/* Consumes AUTH and runs every check, in this order: well-formed, key id
 * known, MAC (constant time), clock window, replay cache (the nonce is
 * recorded only when everything before passed). Returns the bytes consumed
 * (> 0) with the decoded request in *req, or -EAGAIN, or one of the errors
 * above; the caller then sends fg_hs_build_refuse (or just closes) and
 * must not let a byte reach a target. */
int fg_hs_listener_on_auth(struct fg_hs_listener *l, const uint8_t *in, size_t len,
			   uint64_t now_unix, struct fg_hs_req *req);
/* After the owner approved the request: writes ACCEPT (reply may be empty)
 * proving the listener holds the key. Returns its length, -ENOSPC, -EINVAL
 * (reply too long, or AUTH not verified). */
int fg_hs_listener_accept(struct fg_hs_listener *l, const uint8_t *reply, size_t reply_len,
			  uint8_t *out, size_t cap);
void fg_hs_listener_wipe(struct fg_hs_listener *l);

/* The AEAD keys of this link (tunnel/aead.h key schedule), once the
 * handshake got far enough: the dialer after a verified ACCEPT, the
 * listener after a verified AUTH. Returns 0, -EINVAL before that (or for
 * a PSK shorter than FG_AEAD_PSK_MIN), -EIO. */
struct fg_aead_keys;
int fg_hs_dialer_aead_keys(const struct fg_hs_dialer *d, struct fg_aead_keys *out);
int fg_hs_listener_aead_keys(const struct fg_hs_listener *l, struct fg_aead_keys *out);

#endif
