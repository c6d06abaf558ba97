/* Secrets at rest: the server's key (DATA/secret.key) and the sealing of
 * the secrets the store keeps (tunnel PSKs), so the SQLite file never holds
 * one in plaintext. libsodium secretbox (XSalsa20-Poly1305, random 24-byte
 * nonce per seal). A sealed secret is text: "sb1:" + base64(nonce || box).
 * Copying the database without secret.key gives nothing usable. */
#ifndef FG_SERVER_SECRET_H
#define FG_SERVER_SECRET_H

#include <stddef.h>
#include <stdint.h>

#define FG_SECRET_KEY_LEN   32
#define FG_SECRET_KEY_FILE  "secret.key"
#define FG_SECRET_PLAIN_MAX 64 /* the longest secret sealed (a PSK is 32 bytes) */

struct fg_secret_key {
	uint8_t k[FG_SECRET_KEY_LEN];
};

/* Reads dir/secret.key (exactly 32 bytes), or creates it with 32 random
 * bytes (mode 0600, created exclusively, fsynced) when it does not exist.
 * A key file readable by group or others is refused (-EACCES), a file of
 * another size too (-EINVAL). Blocking file I/O: call at start-up. Returns
 * 0, 1 when the key was created, or a negative errno with err set. */
int fg_secret_key_load(const char *dir, struct fg_secret_key *key, char *err, size_t errlen);

/* Seals len bytes (1..FG_SECRET_PLAIN_MAX). Returns owned text (fg_free),
 * NULL on bad length or allocation failure. */
char *fg_secret_seal(const struct fg_secret_key *key, const uint8_t *plain, size_t len);

/* Opens a sealed text into out (at least FG_SECRET_PLAIN_MAX bytes).
 * Returns the plaintext length, or -EINVAL (not a sealed text), -EBADMSG
 * (another key, or tampered). Wipe out after use. */
int fg_secret_open(const struct fg_secret_key *key, const char *sealed,
		   uint8_t out[FG_SECRET_PLAIN_MAX]);

#endif
