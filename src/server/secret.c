/* Secrets at rest: see secret.h. */
#include "server/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

#define SEAL_PREFIX  "sb1:"
#define SEAL_RAW_MAX (crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + FG_SECRET_PLAIN_MAX)

static int read_key(int fd, const char *path, struct fg_secret_key *key, char *err, size_t errlen)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	if (sb.st_mode & 077) {
		snprintf(err, errlen,
			 "%s: readable by others (mode %03o); it protects every tunnel key: "
			 "chmod 600 it",
			 path, (unsigned)(sb.st_mode & 0777));
		return -EACCES;
	}
	uint8_t buf[FG_SECRET_KEY_LEN + 1];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n != FG_SECRET_KEY_LEN) {
		sodium_memzero(buf, sizeof(buf));
		snprintf(err, errlen, "%s: must hold exactly %d bytes (it has %s%zd)", path,
			 FG_SECRET_KEY_LEN, n > FG_SECRET_KEY_LEN ? "more than " : "",
			 n < 0 ? 0 : n);
		return -EINVAL;
	}
	memcpy(key->k, buf, FG_SECRET_KEY_LEN);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

int fg_secret_key_load(const char *dir, struct fg_secret_key *key, char *err, size_t errlen)
{
	char path[4096], tmp[4096];
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium failed to initialise");
		return -EIO;
	}
	snprintf(path, sizeof(path), "%s/" FG_SECRET_KEY_FILE, dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		int rc = read_key(fd, path, key, err, errlen);
		close(fd);
		return rc;
	}
	if (errno != ENOENT) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	/* first start: write the key to a temporary file and link it in, so
	 * a crash never leaves a short key behind and two servers starting
	 * at once end up with one key */
	snprintf(tmp, sizeof(tmp), "%s/.secret.key.%d", dir, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(e));
		return -e;
	}
	uint8_t k[FG_SECRET_KEY_LEN];
	randombytes_buf(k, sizeof(k));
	int rc = 0;
	if (fchmod(fd, 0600) < 0 || write(fd, k, sizeof(k)) != (ssize_t)sizeof(k) || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	close(fd);
	if (!rc && link(tmp, path) < 0)
		rc = -errno;
	unlink(tmp);
	if (rc == -EEXIST) { /* another process won the race: use its key */
		sodium_memzero(k, sizeof(k));
		return fg_secret_key_load(dir, key, err, errlen);
	}
	if (rc) {
		sodium_memzero(k, sizeof(k));
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	memcpy(key->k, k, sizeof(k));
	sodium_memzero(k, sizeof(k));
	return 1;
}

char *fg_secret_seal(const struct fg_secret_key *key, const uint8_t *plain, size_t len)
{
	uint8_t raw[SEAL_RAW_MAX];
	if (len == 0 || len > FG_SECRET_PLAIN_MAX)
		return NULL;
	size_t rawlen = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + len;
	randombytes_buf(raw, crypto_secretbox_NONCEBYTES);
	crypto_secretbox_easy(raw + crypto_secretbox_NONCEBYTES, plain, len, raw, key->k);
	size_t b64 = sodium_base64_ENCODED_LEN(rawlen, sodium_base64_VARIANT_ORIGINAL);
	char *out = fg_malloc(sizeof(SEAL_PREFIX) - 1 + b64);
	if (!out)
		return NULL;
	memcpy(out, SEAL_PREFIX, sizeof(SEAL_PREFIX) - 1);
	sodium_bin2base64(out + sizeof(SEAL_PREFIX) - 1, b64, raw, rawlen,
			  sodium_base64_VARIANT_ORIGINAL);
	return out;
}

int fg_secret_open(const struct fg_secret_key *key, const char *sealed,
		   uint8_t out[FG_SECRET_PLAIN_MAX])
{
	uint8_t raw[SEAL_RAW_MAX];
	size_t rawlen;
	if (!sealed || strncmp(sealed, SEAL_PREFIX, sizeof(SEAL_PREFIX) - 1) != 0)
		return -EINVAL;
	const char *b64 = sealed + sizeof(SEAL_PREFIX) - 1;
	if (sodium_base642bin(raw, sizeof(raw), b64, strlen(b64), NULL, &rawlen, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    rawlen <= crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)
		return -EINVAL;
	size_t len = rawlen - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
	if (crypto_secretbox_open_easy(out, raw + crypto_secretbox_NONCEBYTES,
				       rawlen - crypto_secretbox_NONCEBYTES, raw, key->k) != 0)
		return -EBADMSG;
	return (int)len;
}
