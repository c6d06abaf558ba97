#include "server/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/util.h"

_Static_assert(crypto_pwhash_STRBYTES <= FG_STORE_PWHASH_MAX + 1, "pwhash column too small");
_Static_assert(4 + sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING) ==
		   FG_AUTH_TOKEN_SIZE,
	       "token size");
_Static_assert(sodium_base64_ENCODED_LEN(18, sodium_base64_VARIANT_URLSAFE_NO_PADDING) ==
		   FG_AUTH_GENERATED_LEN + 1,
	       "generated password size");

int fg_auth_init(void)
{
	if (sodium_init() < 0) {
		fg_err("auth: libsodium failed to initialise");
		return -EIO;
	}
	return 0;
}

int fg_auth_password_hash(const char *password, char out[FG_STORE_PWHASH_MAX + 1])
{
	if (crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
			      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		return -ENOMEM;
	return 0;
}

bool fg_auth_password_verify(const char *hash, const char *password)
{
	return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

/* base64url (no padding) of n random bytes into out. */
static void random_b64(char *out, size_t outlen, size_t n)
{
	unsigned char raw[32];
	FG_BUG_ON(n > sizeof(raw));
	randombytes_buf(raw, n);
	sodium_bin2base64(out, outlen, raw, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
}

void fg_auth_token_new(const char *prefix, char out[FG_AUTH_TOKEN_SIZE])
{
	FG_BUG_ON(strlen(prefix) != 4);
	memcpy(out, prefix, 4);
	random_b64(out + 4, FG_AUTH_TOKEN_SIZE - 4, 32);
}

void fg_auth_token_hash(const char *token, char out[FG_STORE_HASH_LEN + 1])
{
	unsigned char h[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
	sodium_bin2hex(out, FG_STORE_HASH_LEN + 1, h, sizeof(h));
}

bool fg_auth_equal(const char *a, const char *b)
{
	size_t n = strlen(a);
	return n == strlen(b) && sodium_memcmp(a, b, n) == 0;
}

/* Writes "password\n" to path, mode 0600 even if the file existed. */
static int write_secret(const char *path, const char *password)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t len = strlen(password);
	int rc = 0;
	errno = 0;
	if (fchmod(fd, 0600) < 0 || write(fd, password, len) != (ssize_t)len ||
	    write(fd, "\n", 1) != 1 || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	close(fd);
	return rc;
}

int fg_auth_bootstrap_admin(struct fg_store *st, const char *data_dir, char *generated, size_t len)
{
	char pw[FG_AUTH_GENERATED_LEN + 1], hash[FG_STORE_PWHASH_MAX + 1], path[4096];
	struct fg_user *users;
	size_t n;
	int64_t id;
	bool gen;

	int rc = st->ops->user_list(st, &users, &n);
	if (rc)
		return rc;
	fg_free(users);
	if (n > 0)
		return 0;

	const char *env = getenv(FG_AUTH_ADMIN_ENV);
	gen = !env || !*env;
	if (!gen && strlen(env) < FG_AUTH_PASSWORD_MIN) {
		fg_err("auth: %s must be at least %d characters", FG_AUTH_ADMIN_ENV,
		       FG_AUTH_PASSWORD_MIN);
		return -EINVAL;
	}
	if (gen && len <= FG_AUTH_GENERATED_LEN)
		return -ENOBUFS;
	if (snprintf(path, sizeof(path), "%s/%s", data_dir, FG_AUTH_ADMIN_FILE) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	if (gen)
		random_b64(pw, sizeof(pw), 18);
	rc = fg_auth_password_hash(gen ? pw : env, hash);
	if (rc)
		goto out;
	/* The file first: a password nobody can read must not exist. */
	if (gen && (rc = write_secret(path, pw)) < 0) {
		fg_err("auth: %s: %s", path, strerror(-rc));
		goto out;
	}
	rc = st->ops->user_create(st, FG_AUTH_ADMIN_NAME, FG_ROLE_ADMIN, hash, &id);
	if (rc) {
		if (gen)
			unlink(path);
		goto out;
	}
	fg_info("auth: created user %s (password %s)", FG_AUTH_ADMIN_NAME,
		gen ? "generated, see " FG_AUTH_ADMIN_FILE : "from " FG_AUTH_ADMIN_ENV);
	if (gen) {
		memcpy(generated, pw, sizeof(pw));
		rc = 1;
	}
out:
	sodium_memzero(pw, sizeof(pw));
	sodium_memzero(hash, sizeof(hash));
	return rc;
}
