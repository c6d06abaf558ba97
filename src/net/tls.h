/* TLS over a non-blocking socket (OpenSSL): client and server contexts,
 * certificate pinning by SHA-256 fingerprint, self-signed certificate
 * generation, and a TLS session usable as a struct fg_stream (net/stream.h)
 * on an fg_loop. See doc/tls.md.
 *
 * Contexts (fg_tls_client, fg_tls_server) are built once, at start-up or
 * reload (they read files: not on a data-path loop), and may then be shared
 * by loops on several threads. A session (fg_tls) lives on one loop.
 *
 * Functions that can fail with a reason worth telling an operator take
 * (err, errlen): on failure they write a NUL-terminated message there
 * (FG_TLS_ERR_LEN is enough); err may be NULL. */
#ifndef FG_NET_TLS_H
#define FG_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/stream.h"

#define FG_TLS_FP_LEN	 32  /* SHA-256 */
#define FG_TLS_FP_STRLEN 96  /* "AB:CD:...:EF" (32 bytes) + NUL */
#define FG_TLS_ERR_LEN	 256 /* enough for any message written to err */

struct fg_tls_client;
struct fg_tls_server;
struct fg_tls;

/* ---- fingerprints ---------------------------------------------------- */

/* Parses a pin: the SHA-256 fingerprint of a certificate (its DER form) as
 * 64 hex digits, any case, optionally with a colon between every two
 * digits ("ab:CD:..." or "abcd..."). Returns 0 or -EINVAL. */
int fg_tls_parse_pin(const char *s, uint8_t out[FG_TLS_FP_LEN]);
/* Formats a fingerprint the canonical way: uppercase, colon-separated. */
void fg_tls_format_fp(const uint8_t fp[FG_TLS_FP_LEN], char out[FG_TLS_FP_STRLEN]);
/* Fingerprint of the first certificate in a PEM file (what a peer pins);
 * the same value as `openssl x509 -noout -fingerprint -sha256`. Returns 0,
 * or -errno with err filled. */
int fg_tls_cert_fingerprint(const char *cert_file, char out[FG_TLS_FP_STRLEN], char *err,
			    size_t errlen);

/* Writes a new self-signed certificate and its key as PEM files: EC P-256,
 * subject CN = cn, subjectAltName = each of sans (an IPv4/IPv6 literal
 * becomes an IP entry, anything else a DNS name; nsans may be 0), valid
 * from one hour ago for 10 years, SHA-256 signature. The key file is mode
 * 0600, the certificate 0644 (less with a stricter umask). Each file is
 * written to a temporary name, fsynced and renamed: an existing file is
 * replaced only by a complete one (the key first). Blocking (file I/O):
 * not on a data-path loop. Returns 0, -EINVAL (bad cn or san, or the
 * same path for both files), or -errno, with err filled. */
int fg_tls_make_self_signed(const char *cert_file, const char *key_file, const char *cn,
			    const char *const *sans, size_t nsans, char *err, size_t errlen);

/* ---- contexts -------------------------------------------------------- */

struct fg_tls_client_opts {
	/* PEM file of the CA certificates to verify servers against; NULL:
	 * the system store (Debian: /etc/ssl/certs). Unused by sessions that
	 * pin a fingerprint. */
	const char *ca_file;
	/* Refuse TLS 1.2 (flowgate to flowgate). By default a client offers
	 * TLS 1.3 and accepts 1.2 from ordinary servers. */
	bool tls13_only;
	/* Keep the TLS 1.3 session tickets of pinned servers (at most 64
	 * peers, the newest ticket each) and offer them on the next
	 * connection to the same server name with the same pin, to skip the
	 * certificate exchange and signatures (a fresh ECDHE is still done).
	 * The pin is checked after every handshake, resumed or not; sessions
	 * of unpinned connections are never kept. See doc/tls.md. */
	bool resume;
};

/* opts may be NULL. Returns NULL with err filled (unreadable CA file,
 * OpenSSL failure). */
struct fg_tls_client *fg_tls_client_new(const struct fg_tls_client_opts *opts, char *err,
					size_t errlen);
/* Sessions made from the context keep working after it is freed. NULL ok. */
void fg_tls_client_free(struct fg_tls_client *c);

/* A server context from a PEM certificate file (the leaf, then any chain)
 * and a PEM private key file. Speaks TLS 1.3 only. Returns NULL with err
 * filled: missing or unreadable file, no certificate or key in it, key
 * that does not match the certificate. */
struct fg_tls_server *fg_tls_server_new(const char *cert_file, const char *key_file, char *err,
					size_t errlen);
/* Server contexts issue one stateless TLS 1.3 ticket per handshake, good
 * for FG_TLS_TICKET_LIFETIME seconds: sealed with random keys kept in
 * memory only and rotated every half lifetime (a ticket never opens later
 * than its lifetime after it was issued). This changes the lifetime (new
 * keys: tickets issued so far stop working); seconds < 2 turns tickets
 * off. Call before sessions are made. Returns 0 or -EINVAL. */
#define FG_TLS_TICKET_LIFETIME 3600
int fg_tls_server_set_ticket_lifetime(struct fg_tls_server *s, int64_t seconds);
void fg_tls_server_free(struct fg_tls_server *s);

/* ---- sessions -------------------------------------------------------- */

/* A client session over fd (a connected, or connecting, non-blocking
 * socket; owned by the session from now on, closed on failure too).
 *
 * server_name is sent as SNI (unless it is an IP literal) and, without a
 * pin, checked against the certificate (DNS name or IP address in its
 * subjectAltName). pin (NULL or "" for none) is a fingerprint in the
 * fg_tls_parse_pin format: with a pin, the server's leaf certificate is
 * accepted if and only if its SHA-256 fingerprint is the pin — a
 * self-signed or otherwise untrusted certificate that matches is fine, a
 * CA-valid one that does not is refused. Without a pin the chain must
 * verify against the context's CAs and server_name must match.
 *
 * Returns NULL with err filled and errno set: EINVAL (invalid pin, no
 * server_name to verify without a pin), ENOMEM. */
struct fg_tls *fg_tls_client_conn(struct fg_tls_client *c, int fd, const char *server_name,
				  const char *pin, char *err, size_t errlen);
/* A server session over an accepted non-blocking fd (owned from now on,
 * closed on failure too). Returns NULL with err filled (errno ENOMEM). */
struct fg_tls *fg_tls_server_conn(struct fg_tls_server *s, int fd, char *err, size_t errlen);

/* Advances the handshake without blocking. Returns 0 once it is complete,
 * -EAGAIN (watch fd for fg_tls_want() and call again), or a failure with
 * fg_tls_error() saying what failed:
 *   -EKEYREJECTED  we refused the peer's certificate ("certificate
 *                  fingerprint mismatch: got AB:.., pinned 12:..",
 *                  "certificate verify failed: self-signed certificate",
 *                  "certificate verify failed: hostname mismatch ...");
 *   -EPROTO        TLS protocol failure, including the peer refusing us
 *                  ("TLS handshake failed: tlsv1 alert unknown ca", ...);
 *   -ECONNRESET    the peer closed the connection during the handshake;
 *   other -errno   socket errors.
 * The session must be freed after a failure. */
int fg_tls_handshake(struct fg_tls *t);
/* After -EAGAIN from fg_tls_handshake() or fg_tls_shutdown(): the FG_IO_*
 * events to wait for. */
uint32_t fg_tls_want(const struct fg_tls *t);

/* Data once the handshake is done; the same as the stream ops (see
 * net/stream.h): read returns > 0, 0 at the end of the stream (the peer's
 * close_notify, or a plain TCP close: WebSocket and the tunnel framing
 * detect truncation themselves), -EAGAIN, or -errno (-EPROTO: see
 * fg_tls_error()). A write that returned -EAGAIN must be repeated with the
 * same bytes. */
ssize_t fg_tls_read(struct fg_tls *t, void *buf, size_t len);
ssize_t fg_tls_write(struct fg_tls *t, const void *buf, size_t len);

/* Sends close_notify. Returns 0 when it is sent, -EAGAIN (see
 * fg_tls_want()), or -errno. Does not wait for the peer's. */
int fg_tls_shutdown(struct fg_tls *t);

/* Lets OpenSSL read ahead of the current record: one recv() fills its
 * buffer instead of one for the header and one for the body of every
 * record. Only for callers that read until -EAGAIN each time they are
 * woken (the tunnel links): bytes may then wait inside the session with
 * nothing left on the socket to wake the loop. */
void fg_tls_set_read_ahead(struct fg_tls *t, bool on);

/* The session as a stream (its close op is fg_tls_free()). */
struct fg_stream *fg_tls_stream(struct fg_tls *t);
/* The TLS session behind a stream, or NULL for another kind of stream. */
struct fg_tls *fg_tls_from_stream(struct fg_stream *s);

/* Why the last operation failed; "" if nothing failed. Owned by t. */
const char *fg_tls_error(const struct fg_tls *t);
/* Whether the finished handshake resumed a session (a ticket) rather than
 * doing a full one. */
bool fg_tls_resumed(const struct fg_tls *t);
/* The (EC)DHE group of the finished handshake ("X25519", "prime256v1"), or
 * NULL when there was no key exchange (a PSK-only resumption, which
 * flowgate never offers nor accepts). */
const char *fg_tls_kex_group(const struct fg_tls *t);
/* "TLSv1.3", "TLSv1.2" once the handshake is done. */
const char *fg_tls_version(const struct fg_tls *t);
/* Fingerprint of the peer's leaf certificate. Returns 0, or -ENOENT when
 * the peer sent none (a client, as servers do not ask for one). */
int fg_tls_peer_fingerprint(const struct fg_tls *t, char out[FG_TLS_FP_STRLEN]);
/* RFC 8446 §7.5 exporter (TLS 1.3): len bytes bound to this session, the
 * same on both ends, for channel binding in the tunnel handshake. Returns 0
 * or -EINVAL (handshake not done). */
int fg_tls_export(const struct fg_tls *t, const char *label, const uint8_t *context,
		  size_t context_len, uint8_t *out, size_t len);

/* Sends close_notify if the socket takes it now (best effort), closes the
 * socket and frees the session. NULL is fine. */
void fg_tls_free(struct fg_tls *t);

/* ---- handshakes on a loop -------------------------------------------- */

struct fg_loop;
struct fg_tls_hs;

/* Result of a handshake run on the loop: on success t is the session,
 * handshake done, owned by the callee (err 0, why NULL). On failure t is
 * NULL, the socket is closed, err is what fg_tls_handshake() returns or
 * -ETIMEDOUT / a connect errno, and why says it in words (valid during the
 * call). The fg_tls_hs is gone once this returns. */
typedef void (*fg_tls_open_cb)(struct fg_tls *t, int err, const char *why, void *data);

/* Runs a client handshake on loop: fd is a non-blocking socket, connected
 * or with a connect() in progress, owned from now on; server_name and pin
 * as for fg_tls_client_conn(). timeout_ns (> 0) covers the connect and the
 * handshake. cb is always called from the loop, never from inside this
 * call (an invalid pin is reported on the next iteration). Returns NULL
 * only on allocation failure (fd closed, cb not called). */
struct fg_tls_hs *fg_tls_connect_start(struct fg_loop *loop, int fd, struct fg_tls_client *c,
				       const char *server_name, const char *pin, int64_t timeout_ns,
				       fg_tls_open_cb cb, void *data);
/* Runs a server handshake on loop over an accepted non-blocking fd. */
struct fg_tls_hs *fg_tls_accept_start(struct fg_loop *loop, int fd, struct fg_tls_server *s,
				      int64_t timeout_ns, fg_tls_open_cb cb, void *data);
/* Abandons a handshake in progress: socket closed, cb not called. */
void fg_tls_hs_cancel(struct fg_tls_hs *hs);

#endif
