/* The WebSocket (RFC 6455) opening handshake: pure builders and parsers
 * over (buf, len). Nothing here allocates, blocks or touches a socket. */
#ifndef FG_NET_WS_HANDSHAKE_H
#define FG_NET_WS_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#define FG_WS_MAX_HEAD	   8192 /* request or response head, blank line included */
#define FG_WS_KEY_LEN	   24	/* base64 of 16 bytes */
#define FG_WS_ACCEPT_LEN   28	/* base64 of a SHA-1 */
#define FG_WS_MAX_TOKEN	   1024
#define FG_WS_MAX_HOST	   256
#define FG_WS_MAX_PROTOCOL 256

/* What a client's upgrade request said. Every string is NUL-terminated. */
struct fg_ws_request {
	char path[256];			   /* request target, as sent */
	char host[FG_WS_MAX_HOST];	   /* Host header */
	char key[FG_WS_KEY_LEN + 1];	   /* Sec-WebSocket-Key */
	char token[FG_WS_MAX_TOKEN];	   /* bearer token; "" if none */
	char protocol[FG_WS_MAX_PROTOCOL]; /* Sec-WebSocket-Protocol; "" if none */
	int has_authorization;		   /* an Authorization header was present */
	const char *why;		   /* static string: why -EINVAL; NULL otherwise */
};

/* Encodes 16 random bytes as a Sec-WebSocket-Key (24 chars + NUL). */
void fg_ws_key_encode(const uint8_t nonce[16], char out[FG_WS_KEY_LEN + 1]);

/* Sec-WebSocket-Accept for client_key: base64(SHA-1(key + GUID)), 28 chars
 * + NUL. Returns 0, or -EINVAL if the digest could not be computed. */
int fg_ws_accept_key(const char *client_key, char out[FG_WS_ACCEPT_LEN + 1]);

/* Parses a client's upgrade request head. Returns the head length (through
 * the blank line; bytes after it belong to the WebSocket stream), -EAGAIN
 * if more bytes are needed, -EINVAL if malformed or not a WebSocket upgrade
 * (out->why says which rule failed), -E2BIG if the head exceeds
 * FG_WS_MAX_HEAD. */
int fg_ws_parse_upgrade_request(const char *buf, size_t len, struct fg_ws_request *out);

/* Parses a server's answer to our upgrade request. *status gets the HTTP
 * status once the status line is complete (0 before). Returns the head
 * length, -EAGAIN, -EINVAL (malformed, or a 101 whose Upgrade, Connection
 * or Sec-WebSocket-Accept is wrong), -EACCES for any status but 101, or
 * -E2BIG. expected_accept is fg_ws_accept_key() of the key we sent. */
int fg_ws_parse_upgrade_response(const char *buf, size_t len, const char *expected_accept,
				 int *status);

/* Builders write a complete head into buf and return its length, or
 * -ENOSPC if cap is too small, or -EINVAL for a value that would break the
 * head (CR, LF or other control bytes). bearer_token may be NULL. */
int fg_ws_build_upgrade_request(char *buf, size_t cap, const char *host, const char *path,
				const char *key, const char *bearer_token);
int fg_ws_build_upgrade_response(char *buf, size_t cap, const char *accept_key);
/* A non-101 answer that ends the connection (Content-Length: 0,
 * Connection: close; 401 adds WWW-Authenticate: Bearer, 426 adds
 * Sec-WebSocket-Version: 13). reason may be NULL for the standard phrase. */
int fg_ws_build_error_response(char *buf, size_t cap, int status, const char *reason);

/* The standard reason phrase of an HTTP status ("Unauthorized"), or "Error". */
const char *fg_ws_status_phrase(int status);

#endif
