/* Passwords (argon2id), tokens and the first admin user. Everything here is
 * CPU-bound or blocking (argon2id takes ~100 ms and 64 MiB): call it from
 * the store thread, never from a data-path loop. */
#ifndef FG_SERVER_AUTH_H
#define FG_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "server/store.h"

/* Token prefixes: they say what a leaked token is at a glance. */
#define FG_TOKEN_PREFIX_SESSION "fgs_"
#define FG_TOKEN_PREFIX_API	"fga_"
#define FG_TOKEN_PREFIX_NODE	"fgn_"

/* prefix (4) + base64url of 32 random bytes (43) + NUL */
#define FG_AUTH_TOKEN_SIZE    48
#define FG_AUTH_PASSWORD_MIN  8
#define FG_AUTH_ADMIN_NAME    "admin"
#define FG_AUTH_ADMIN_ENV     "FLOWGATE_ADMIN_PASSWORD"
#define FG_AUTH_ADMIN_FILE    "initial-admin-password"
#define FG_AUTH_GENERATED_LEN 24 /* base64url of 18 random bytes */

/* Initialises libsodium; call once before anything below. Returns 0 or
 * -EIO. */
int fg_auth_init(void);

/* argon2id with OPSLIMIT/MEMLIMIT_INTERACTIVE. Returns 0 or -ENOMEM. */
int fg_auth_password_hash(const char *password, char out[FG_STORE_PWHASH_MAX + 1]);
bool fg_auth_password_verify(const char *hash, const char *password);

/* A new random token: prefix followed by 43 base64url characters. */
void fg_auth_token_new(const char *prefix, char out[FG_AUTH_TOKEN_SIZE]);
/* SHA-256 of the token as lowercase hex: what the store keeps. */
void fg_auth_token_hash(const char *token, char out[FG_STORE_HASH_LEN + 1]);
/* Constant-time equality of two NUL-terminated strings of equal length
 * (the length itself is not secret). */
bool fg_auth_equal(const char *a, const char *b);

/* First start: if the store has no user yet, creates FG_AUTH_ADMIN_NAME
 * with role admin. The password comes from $FLOWGATE_ADMIN_PASSWORD
 * (at least FG_AUTH_PASSWORD_MIN characters, else -EINVAL), or is
 * generated, written to data_dir/initial-admin-password (mode 0600) and
 * copied to generated (at least FG_AUTH_GENERATED_LEN + 1 bytes) so the
 * caller prints it once. Returns 1 if it generated a password, 0 if it
 * generated none (users exist, or the env var was used), or a negative
 * errno. */
int fg_auth_bootstrap_admin(struct fg_store *st, const char *data_dir, char *generated, size_t len);

#endif
