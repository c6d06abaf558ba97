#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/loop.h"

struct fg_tls_client {
	SSL_CTX *ctx; /* owned (one reference; each session holds its own) */
};

struct fg_tls_server {
	SSL_CTX *ctx;
};

/* ---- resumption state ---------------------------------------------------
 *
 * Both live in the SSL_CTX's ex_data (ctx_extra), not in fg_tls_client /
 * fg_tls_server: sessions keep their SSL_CTX alive after the context object
 * is freed, and a ticket may arrive (client) or be issued (server) at any
 * time in a session's life. OpenSSL frees them with the last reference to
 * the SSL_CTX (ctx_extra_free). Both are locked: contexts are shared by
 * loops on several threads. */

#define RESUME_SLOTS 64 /* peers (name + pin) a client remembers a session for */

struct resume_slot {
	SSL_SESSION *sess; /* owned; NULL: free slot */
	uint8_t pin[FG_TLS_FP_LEN];
	char name[256];
	uint64_t stamp; /* last store or use, for LRU replacement */
};

struct ticket_key {
	uint8_t name[16], aes[32], hmac[32];
	int64_t born; /* 0: unset */
};

struct ctx_extra {
	pthread_mutex_t lock;
	/* client: one session per (server name, pin), the newest ticket */
	struct resume_slot *slots; /* RESUME_SLOTS, or NULL (no resumption) */
	uint64_t clock;
	/* server: ticket keys, [0] current, [1] the previous one */
	struct ticket_key keys[2];
	int64_t key_period; /* seconds a key is current; tickets live < 2 periods */
	EVP_CIPHER *aes;    /* fetched once: no name lookup per ticket */
};

struct fg_tls {
	struct fg_stream base; /* first: a struct fg_stream * is a struct fg_tls * */
	SSL *ssl;	       /* owned; its BIO does recv/send on base.fd */
	uint8_t pin[FG_TLS_FP_LEN];
	bool has_pin;
	bool is_client;
	bool hs_done;
	bool fatal;	    /* OpenSSL says the session is unusable: no close_notify */
	bool eof;	    /* recv() saw the end of the TCP stream */
	bool cert_rejected; /* why holds the verification failure */
	bool offered;	    /* client: a kept session was offered for resumption */
	int sys_err;	    /* errno of the last failed recv/send */
	uint32_t want;	    /* events after the last -EAGAIN of handshake/shutdown */
	uint32_t read_want, write_want;
	char name[256]; /* the server name checked (client) */
	char why[FG_TLS_ERR_LEN];
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* The most specific OpenSSL reason in the error queue, and clears it. */
static const char *ossl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	ERR_clear_error();
	return r ? r : "unknown OpenSSL error";
}

/* ---- fingerprints ---------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int fg_tls_parse_pin(const char *s, uint8_t out[FG_TLS_FP_LEN])
{
	if (!s)
		return -EINVAL;
	size_t len = strlen(s);
	/* either 64 digits, or 32 pairs joined by 31 colons */
	bool colons = len == FG_TLS_FP_LEN * 3 - 1;
	if (!colons && len != FG_TLS_FP_LEN * 2)
		return -EINVAL;
	for (size_t i = 0; i < FG_TLS_FP_LEN; i++) {
		const char *p = s + (colons ? i * 3 : i * 2);
		int hi = hexval(p[0]), lo = hexval(p[1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		if (colons && i + 1 < FG_TLS_FP_LEN && p[2] != ':')
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void fg_tls_format_fp(const uint8_t fp[FG_TLS_FP_LEN], char out[FG_TLS_FP_STRLEN])
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < FG_TLS_FP_LEN; i++) {
		out[i * 3] = hex[fp[i] >> 4];
		out[i * 3 + 1] = hex[fp[i] & 15];
		out[i * 3 + 2] = i + 1 < FG_TLS_FP_LEN ? ':' : '\0';
	}
}

static int cert_fp(X509 *x, uint8_t fp[FG_TLS_FP_LEN])
{
	unsigned int n = 0;
	if (!X509_digest(x, EVP_sha256(), fp, &n) || n != FG_TLS_FP_LEN)
		return -EINVAL;
	return 0;
}

/* Opens path for reading, with an errno-bearing message on failure. */
static FILE *open_pem(const char *path, const char *what, char *err, size_t errlen, int *rc)
{
	if (!path || !*path) {
		set_err(err, errlen, "no %s file given", what);
		*rc = -EINVAL;
		return NULL;
	}
	FILE *f = fopen(path, "re");
	if (!f) {
		*rc = -errno;
		set_err(err, errlen, "cannot read %s file %s: %s", what, path, strerror(errno));
	}
	return f;
}

int fg_tls_cert_fingerprint(const char *cert_file, char out[FG_TLS_FP_STRLEN], char *err,
			    size_t errlen)
{
	int rc = 0;
	FILE *f = open_pem(cert_file, "certificate", err, errlen, &rc);
	if (!f)
		return rc;
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x) {
		ERR_clear_error();
		set_err(err, errlen, "no PEM certificate in %s", cert_file);
		return -EINVAL;
	}
	uint8_t fp[FG_TLS_FP_LEN];
	rc = cert_fp(x, fp);
	X509_free(x);
	if (rc < 0) {
		set_err(err, errlen, "cannot hash certificate %s", cert_file);
		return rc;
	}
	fg_tls_format_fp(fp, out);
	return 0;
}

/* ---- self-signed certificates ---------------------------------------- */

static bool is_ip_literal(const char *s)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* A DNS name for a subjectAltName: letters, digits, '-', '.', '_' and a
 * leading "*." wildcard; nothing that could break the config syntax the
 * extension is built from. */
static bool is_dns_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	if (s[0] == '*' && s[1] == '.')
		s += 2;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' || *s == '_'))
			return false;
	return true;
}

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!ext)
		return -EINVAL;
	int ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

enum pem_kind { PEM_KEY, PEM_CERT };

/* Writes obj as PEM to path through path.tmp (created with mode, fsynced,
 * renamed over path). */
static int write_pem(const char *path, mode_t mode, enum pem_kind kind, void *obj, char *err,
		     size_t errlen)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		set_err(err, errlen, "path too long: %s", path);
		return -ENAMETOOLONG;
	}
	unlink(tmp); /* a leftover of an interrupted run */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		int rc = -errno;
		set_err(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return rc;
	}
	/* the umask may have taken bits away, never added: make the key's mode
	 * exactly 0600 whatever the umask */
	if (kind == PEM_KEY && fchmod(fd, mode) < 0) {
		int rc = -errno;
		set_err(err, errlen, "cannot chmod %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return rc;
	}
	FILE *f = fdopen(fd, "w");
	if (!f) {
		int rc = -errno;
		close(fd);
		unlink(tmp);
		set_err(err, errlen, "cannot write %s: %s", tmp, strerror(-rc));
		return rc;
	}
	int ok = kind == PEM_KEY ? PEM_write_PrivateKey(f, obj, NULL, NULL, 0, NULL, NULL)
				 : PEM_write_X509(f, obj);
	int rc = 0;
	if (!ok) {
		rc = -EIO;
		set_err(err, errlen, "cannot write %s: %s", tmp, ossl_reason());
	} else if (fflush(f) != 0 || fsync(fileno(f)) < 0) {
		rc = -errno;
		set_err(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
	}
	if (fclose(f) != 0 && rc == 0) {
		rc = -errno;
		set_err(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
	}
	if (rc == 0 && rename(tmp, path) < 0) {
		rc = -errno;
		set_err(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
	}
	if (rc < 0)
		unlink(tmp);
	return rc;
}

int fg_tls_make_self_signed(const char *cert_file, const char *key_file, const char *cn,
			    const char *const *sans, size_t nsans, char *err, size_t errlen)
{
	int rc = -ENOMEM;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	BIGNUM *bn = NULL;
	char *san = NULL;

	if (!cert_file || !key_file || strcmp(cert_file, key_file) == 0) {
		set_err(err, errlen, "the certificate and the key need two different files");
		return -EINVAL;
	}
	if (!cn || !*cn || strlen(cn) > 64) {
		set_err(err, errlen, "certificate common name must be 1 to 64 bytes");
		return -EINVAL;
	}
	size_t san_len = 1;
	for (size_t i = 0; i < nsans; i++) {
		if (!sans[i] || (!is_ip_literal(sans[i]) && !is_dns_name(sans[i]))) {
			set_err(err, errlen, "invalid subjectAltName entry \"%s\"",
				sans[i] ? sans[i] : "(null)");
			return -EINVAL;
		}
		san_len += strlen(sans[i]) + 5;
	}

	key = EVP_EC_gen("P-256");
	x = X509_new();
	bn = BN_new();
	if (!key || !x || !bn)
		goto ossl_err;
	if (!X509_set_version(x, X509_VERSION_3))
		goto ossl_err;
	/* a random positive 127-bit serial: unique without a registry */
	if (!BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto ossl_err;
	/* an hour back: a peer whose clock lags a little still accepts it */
	if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), 3650, 0, NULL))
		goto ossl_err;
	X509_NAME *name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
					-1, 0) ||
	    !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, key))
		goto ossl_err;
	if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext(x, NID_ext_key_usage, "serverAuth,clientAuth") < 0 ||
	    add_ext(x, NID_subject_key_identifier, "hash") < 0)
		goto ossl_err;
	if (nsans) {
		san = fg_malloc(san_len);
		if (!san)
			goto err;
		size_t off = 0;
		for (size_t i = 0; i < nsans; i++)
			off += (size_t)snprintf(san + off, san_len - off, "%s%s:%s", i ? "," : "",
						is_ip_literal(sans[i]) ? "IP" : "DNS", sans[i]);
		if (add_ext(x, NID_subject_alt_name, san) < 0)
			goto ossl_err;
	}
	if (!X509_sign(x, key, EVP_sha256()))
		goto ossl_err;

	/* the key first: a certificate on disk always has its key */
	rc = write_pem(key_file, 0600, PEM_KEY, key, err, errlen);
	if (rc == 0)
		rc = write_pem(cert_file, 0644, PEM_CERT, x, err, errlen);
	goto out;

ossl_err:
	rc = -EIO;
	set_err(err, errlen, "cannot build certificate: %s", ossl_reason());
	goto out;
err:
	set_err(err, errlen, "out of memory");
out:
	fg_free(san);
	BN_free(bn);
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

/* ---- the socket BIO -------------------------------------------------- */

/* OpenSSL's socket BIO write()s, which raises SIGPIPE on a closed
 * connection; ours uses send(MSG_NOSIGNAL) and keeps errno and EOF for
 * error reporting. Its data is the struct fg_tls. */
static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_read_ex(BIO *b, char *buf, size_t len, size_t *got)
{
	struct fg_tls *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	*got = 0;
	ssize_t r;
	do
		r = recv(t->base.fd, buf, len, 0);
	while (r < 0 && errno == EINTR);
	if (r > 0) {
		*got = (size_t)r;
		return 1;
	}
	if (r == 0) {
		t->eof = true;
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		BIO_set_retry_read(b);
	else
		t->sys_err = errno;
	return 0;
}

static int bio_write_ex(BIO *b, const char *buf, size_t len, size_t *put)
{
	struct fg_tls *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	*put = 0;
	ssize_t r;
	do
		r = send(t->base.fd, buf, len, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r >= 0) {
		*put = (size_t)r;
		return 1;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		BIO_set_retry_write(b);
	else
		t->sys_err = errno;
	return 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct fg_tls *t = BIO_get_data(b);
	switch (cmd) {
	case BIO_CTRL_FLUSH: return 1;	       /* nothing buffered here */
	case BIO_CTRL_EOF: return t && t->eof; /* lets OpenSSL name an unexpected EOF */
	default: return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int bio_destroy(BIO *b)
{
	return 1; /* the fd belongs to the stream */
}

static void bio_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "flowgate socket");
	if (!m)
		return;
	BIO_meth_set_read_ex(m, bio_read_ex);
	BIO_meth_set_write_ex(m, bio_write_ex);
	BIO_meth_set_ctrl(m, bio_ctrl);
	BIO_meth_set_create(m, bio_create);
	BIO_meth_set_destroy(m, bio_destroy);
	bio_method = m;
}

/* ---- context extras (resumption) ------------------------------------- */

static int extra_idx = -1;
static pthread_once_t extra_once = PTHREAD_ONCE_INIT;

static void ctx_extra_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			   void *argp)
{
	struct ctx_extra *x = ptr;
	if (!x)
		return;
	if (x->slots) {
		for (size_t i = 0; i < RESUME_SLOTS; i++)
			SSL_SESSION_free(x->slots[i].sess);
		fg_free(x->slots);
	}
	EVP_CIPHER_free(x->aes);
	OPENSSL_cleanse(x->keys, sizeof(x->keys));
	pthread_mutex_destroy(&x->lock);
	fg_free(x);
}

static void extra_init(void)
{
	extra_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_extra_free);
}

static struct ctx_extra *ctx_extra(SSL_CTX *ctx)
{
	return extra_idx < 0 ? NULL : SSL_CTX_get_ex_data(ctx, extra_idx);
}

/* Attaches a new, empty ctx_extra to ctx (which then owns it). */
static struct ctx_extra *ctx_extra_new(SSL_CTX *ctx)
{
	pthread_once(&extra_once, extra_init);
	if (extra_idx < 0)
		return NULL;
	struct ctx_extra *x = fg_calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	pthread_mutex_init(&x->lock, NULL);
	if (!SSL_CTX_set_ex_data(ctx, extra_idx, x)) {
		pthread_mutex_destroy(&x->lock);
		fg_free(x);
		return NULL;
	}
	return x;
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static bool sess_fresh(SSL_SESSION *s, int64_t now)
{
	return SSL_SESSION_is_resumable(s) &&
	       now - (int64_t)SSL_SESSION_get_time(s) < (int64_t)SSL_SESSION_get_timeout(s);
}

/* The slot for (name, pin), or NULL. Under x->lock. */
static struct resume_slot *slot_find(struct ctx_extra *x, const char *name, const uint8_t *pin)
{
	for (size_t i = 0; i < RESUME_SLOTS; i++) {
		struct resume_slot *r = &x->slots[i];
		if (r->sess && strcmp(r->name, name) == 0 &&
		    memcmp(r->pin, pin, FG_TLS_FP_LEN) == 0)
			return r;
	}
	return NULL;
}

/* Client: the session to offer to (name, pin), with a reference for the
 * caller, or NULL. Only a session stored under exactly this pin is ever
 * offered, so a ticket from one peer never goes to another. */
static SSL_SESSION *resume_get(struct ctx_extra *x, const char *name, const uint8_t *pin)
{
	SSL_SESSION *s = NULL;
	pthread_mutex_lock(&x->lock);
	struct resume_slot *r = slot_find(x, name, pin);
	if (r && sess_fresh(r->sess, now_s())) {
		/* a copy per connection: OpenSSL marks a connection's session
		 * not resumable when it ends without close_notify, which
		 * must not spoil the one kept here */
		s = SSL_SESSION_dup(r->sess);
		r->stamp = ++x->clock;
	} else if (r) {
		SSL_SESSION_free(r->sess);
		memset(r, 0, sizeof(*r));
	}
	pthread_mutex_unlock(&x->lock);
	return s;
}

/* Client: forgets the session of (name, pin), after a failed handshake
 * that offered it. */
static void resume_drop(struct ctx_extra *x, const char *name, const uint8_t *pin)
{
	pthread_mutex_lock(&x->lock);
	struct resume_slot *r = slot_find(x, name, pin);
	if (r) {
		SSL_SESSION_free(r->sess);
		memset(r, 0, sizeof(*r));
	}
	pthread_mutex_unlock(&x->lock);
}

/* OpenSSL's new-session callback (client): a ticket arrived on a pinned
 * session. Kept under (name, pin) only if the session's certificate is the
 * pinned one (defence in depth: the handshake already checked it). Returns
 * 1 when we keep the reference. */
static int client_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct fg_tls *t = SSL_get_app_data(ssl);
	struct ctx_extra *x = ctx_extra(SSL_get_SSL_CTX(ssl));
	if (!t || !x || !x->slots || !t->has_pin || !t->hs_done || t->fatal)
		return 0;
	X509 *peer = SSL_SESSION_get0_peer(sess);
	uint8_t fp[FG_TLS_FP_LEN];
	if (!peer || cert_fp(peer, fp) < 0 || CRYPTO_memcmp(fp, t->pin, FG_TLS_FP_LEN) != 0)
		return 0;
	pthread_mutex_lock(&x->lock);
	struct resume_slot *r = slot_find(x, t->name, t->pin);
	if (!r) { /* a free slot, or the least recently used one */
		r = &x->slots[0];
		for (size_t i = 0; i < RESUME_SLOTS && r->sess; i++)
			if (!x->slots[i].sess || x->slots[i].stamp < r->stamp)
				r = &x->slots[i];
		snprintf(r->name, sizeof(r->name), "%s", t->name);
		memcpy(r->pin, t->pin, FG_TLS_FP_LEN);
	}
	SSL_SESSION_free(r->sess);
	r->sess = sess;
	r->stamp = ++x->clock;
	pthread_mutex_unlock(&x->lock);
	return 1;
}

/* Makes keys[0] a key born less than a period ago, keys[1] the one before
 * it if that is less than two periods old. Under x->lock. Returns 0 or -1
 * (no random bytes). */
static int ticket_keys_rotate(struct ctx_extra *x, int64_t now)
{
	if (x->keys[0].born && now - x->keys[0].born < x->key_period)
		return 0;
	if (x->keys[0].born && now - x->keys[0].born < 2 * x->key_period)
		x->keys[1] = x->keys[0];
	else
		OPENSSL_cleanse(&x->keys[1], sizeof(x->keys[1]));
	struct ticket_key *k = &x->keys[0];
	if (RAND_bytes(k->name, sizeof(k->name)) != 1 || RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
	    RAND_bytes(k->hmac, sizeof(k->hmac)) != 1) {
		OPENSSL_cleanse(k, sizeof(*k));
		return -1;
	}
	k->born = now;
	return 0;
}

/* OpenSSL's ticket key callback (server). Tickets are sealed with the
 * current key (AES-256-CBC + HMAC-SHA256, OpenSSL's ticket format) and
 * opened with the current or the previous one; a key is current for one
 * period and then accepted for one more, so no ticket opens more than two
 * periods (the configured lifetime) after it was issued, and the keys,
 * random and never written anywhere, die with the process. Returns 1 (ok),
 * 2 (ok, issue a fresh ticket), 0 (unknown key: full handshake), -1. */
static int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[16],
			 EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct ctx_extra *x = ctx_extra(SSL_get_SSL_CTX(ssl));
	if (!x || !x->aes)
		return -1;
	struct ticket_key k;
	int rc = 1;
	int64_t now = now_s();
	pthread_mutex_lock(&x->lock);
	if (ticket_keys_rotate(x, now) < 0) {
		pthread_mutex_unlock(&x->lock);
		return -1;
	}
	if (enc) {
		k = x->keys[0];
	} else if (x->keys[0].born && memcmp(key_name, x->keys[0].name, 16) == 0) {
		k = x->keys[0];
	} else if (x->keys[1].born && now - x->keys[1].born < 2 * x->key_period &&
		   memcmp(key_name, x->keys[1].name, 16) == 0) {
		/* the age check: rotation is lazy (on the next handshake), so
		 * the previous key may have been born more than two periods
		 * ago; a ticket is never older than its key */
		k = x->keys[1];
		rc = 2;
	} else {
		rc = 0;
	}
	pthread_mutex_unlock(&x->lock);
	if (rc == 0)
		return 0;
	if (enc) {
		if (RAND_bytes(iv, 16) != 1)
			goto fail;
		memcpy(key_name, k.name, 16);
	}
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
	    OSSL_PARAM_construct_end(),
	};
	if (!EVP_MAC_CTX_set_params(hctx, params))
		goto fail;
	if (enc ? !EVP_EncryptInit_ex(cctx, x->aes, NULL, k.aes, iv)
		: !EVP_DecryptInit_ex(cctx, x->aes, NULL, k.aes, iv))
		goto fail;
	OPENSSL_cleanse(&k, sizeof(k));
	return rc;
fail:
	OPENSSL_cleanse(&k, sizeof(k));
	return -1;
}

/* ---- verification ---------------------------------------------------- */

/* Replaces OpenSSL's chain verification for client sessions: a pin
 * decides alone; without one the chain and the name are checked by
 * X509_verify_cert (the host/IP was set on the session's verify param,
 * which OpenSSL copied into xs). Returns 1 to accept. */
static int verify_cb(X509_STORE_CTX *xs, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct fg_tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
	if (!t)
		return 0;
	if (t->has_pin) {
		X509 *leaf = X509_STORE_CTX_get0_cert(xs);
		uint8_t fp[FG_TLS_FP_LEN];
		if (!leaf || cert_fp(leaf, fp) < 0) {
			snprintf(t->why, sizeof(t->why), "no server certificate to check the pin");
		} else if (CRYPTO_memcmp(fp, t->pin, FG_TLS_FP_LEN) == 0) {
			X509_STORE_CTX_set_error(xs, X509_V_OK);
			return 1;
		} else {
			char got[FG_TLS_FP_STRLEN], want[FG_TLS_FP_STRLEN];
			fg_tls_format_fp(fp, got);
			fg_tls_format_fp(t->pin, want);
			snprintf(t->why, sizeof(t->why),
				 "certificate fingerprint mismatch: got %s, pinned %s", got, want);
		}
		t->cert_rejected = true;
		X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	if (X509_verify_cert(xs) == 1)
		return 1;
	int e = X509_STORE_CTX_get_error(xs);
	if (e == X509_V_ERR_HOSTNAME_MISMATCH || e == X509_V_ERR_IP_ADDRESS_MISMATCH)
		snprintf(t->why, sizeof(t->why),
			 "certificate verify failed: %s (the certificate is not for %.120s)",
			 X509_verify_cert_error_string(e), t->name);
	else
		snprintf(t->why, sizeof(t->why), "certificate verify failed: %s",
			 X509_verify_cert_error_string(e));
	t->cert_rejected = true;
	return 0;
}

/* ---- contexts -------------------------------------------------------- */

struct fg_tls_client *fg_tls_client_new(const struct fg_tls_client_opts *opts, char *err,
					size_t errlen)
{
	struct fg_tls_client_opts o = {0};
	if (opts)
		o = *opts;
	struct fg_tls_client *c = fg_calloc(1, sizeof(*c));
	if (!c) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	pthread_once(&bio_once, bio_method_init);
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (!c->ctx || !bio_method)
		goto ossl_err;
	if (!SSL_CTX_set_min_proto_version(c->ctx, o.tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION))
		goto ossl_err;
	SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	if (o.resume) {
		/* Our own cache (client_new_session_cb), keyed by server name
		 * AND pin: OpenSSL's internal one is keyed by neither. A
		 * resumed session is still checked against the pin after the
		 * handshake (fg_tls_handshake), and OpenSSL offers only
		 * psk_dhe_ke (no SSL_OP_ALLOW_NO_DHE_KEX), so every connection
		 * still does a fresh ECDHE (forward secrecy) and has its own
		 * exporter secret; only the certificate exchange and the
		 * signature are skipped. Sessions of unpinned connections
		 * (CA-verified) are never kept. */
		struct ctx_extra *x = ctx_extra_new(c->ctx);
		if (!x || !(x->slots = fg_calloc(RESUME_SLOTS, sizeof(*x->slots)))) {
			set_err(err, errlen, "out of memory");
			goto err;
		}
		SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT |
							   SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(c->ctx, client_new_session_cb);
		/* no point offering what our servers no longer open */
		SSL_CTX_set_timeout(c->ctx, FG_TLS_TICKET_LIFETIME);
	} else {
		SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
	}
	/* partial writes: the stream contract (a write may take fewer bytes);
	 * a moving buffer: callers repeat the same bytes, not the same
	 * address. No SSL_MODE_RELEASE_BUFFERS: it would malloc/free record
	 * buffers on every burst, and the data path does not allocate. */
	SSL_CTX_set_mode(c->ctx,
			 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* VERIFY_PEER makes a refusal by verify_cb abort the handshake */
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_cert_verify_callback(c->ctx, verify_cb, NULL);
	if (o.ca_file) {
		int rc;
		FILE *f = open_pem(o.ca_file, "CA", err, errlen, &rc);
		if (!f)
			goto err;
		fclose(f);
		if (!SSL_CTX_load_verify_locations(c->ctx, o.ca_file, NULL)) {
			set_err(err, errlen, "no usable CA certificate in %s: %s", o.ca_file,
				ossl_reason());
			goto err;
		}
	} else if (!SSL_CTX_set_default_verify_paths(c->ctx)) {
		goto ossl_err;
	}
	return c;
ossl_err:
	set_err(err, errlen, "cannot set up TLS client: %s", ossl_reason());
err:
	fg_tls_client_free(c);
	return NULL;
}

void fg_tls_client_free(struct fg_tls_client *c)
{
	if (!c)
		return;
	SSL_CTX_free(c->ctx);
	fg_free(c);
}

struct fg_tls_server *fg_tls_server_new(const char *cert_file, const char *key_file, char *err,
					size_t errlen)
{
	int rc;
	struct fg_tls_server *s = fg_calloc(1, sizeof(*s));
	if (!s) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	pthread_once(&bio_once, bio_method_init);
	/* open both first: "No such file" beats an OpenSSL parse message */
	FILE *f = open_pem(cert_file, "certificate", err, errlen, &rc);
	if (!f)
		goto err;
	fclose(f);
	f = open_pem(key_file, "key", err, errlen, &rc);
	if (!f)
		goto err;
	fclose(f);
	s->ctx = SSL_CTX_new(TLS_server_method());
	if (!s->ctx || !bio_method)
		goto ossl_err;
	if (!SSL_CTX_set_min_proto_version(s->ctx, TLS1_3_VERSION))
		goto ossl_err;
	SSL_CTX_set_options(s->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* Resumption by stateless TLS 1.3 tickets only: no server-side
	 * session store (SSL_SESS_CACHE_OFF), tickets sealed with keys held
	 * in memory and rotated (ticket_key_cb), one ticket per handshake.
	 * Safe for the tunnels because a dialer pins our certificate (a
	 * resumed session carries the certificate of the full handshake it
	 * came from, and the dialer checks it again), the key exchange stays
	 * psk_dhe_ke (we never set SSL_OP_ALLOW_NO_DHE_KEX: forward secrecy
	 * per connection), there is no early data, and the tunnel handshake
	 * MACs the exporter of this very connection. */
	SSL_CTX_set_session_cache_mode(s->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_id_context(s->ctx, (const unsigned char *)"flowgate", 8);
	{
		struct ctx_extra *x = ctx_extra_new(s->ctx);
		if (!x || !(x->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL)))
			goto ossl_err;
		x->key_period = FG_TLS_TICKET_LIFETIME / 2;
		SSL_CTX_set_timeout(s->ctx, FG_TLS_TICKET_LIFETIME);
		SSL_CTX_set_num_tickets(s->ctx, 1);
		if (!SSL_CTX_set_tlsext_ticket_key_evp_cb(s->ctx, ticket_key_cb))
			goto ossl_err;
	}
	SSL_CTX_set_mode(s->ctx,
			 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(s->ctx, cert_file) != 1) {
		set_err(err, errlen, "no usable certificate in %s: %s", cert_file, ossl_reason());
		goto err;
	}
	if (SSL_CTX_use_PrivateKey_file(s->ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		const char *r = ossl_reason();
		/* OpenSSL checks the pair while loading the key */
		if (strstr(r, "mismatch")) /* "key values mismatch", "key type mismatch" */
			set_err(err, errlen, "private key %s does not match certificate %s",
				key_file, cert_file);
		else
			set_err(err, errlen, "no usable private key in %s: %s", key_file, r);
		goto err;
	}
	if (SSL_CTX_check_private_key(s->ctx) != 1) {
		ERR_clear_error();
		set_err(err, errlen, "private key %s does not match certificate %s", key_file,
			cert_file);
		goto err;
	}
	return s;
ossl_err:
	set_err(err, errlen, "cannot set up TLS server: %s", ossl_reason());
err:
	fg_tls_server_free(s);
	return NULL;
}

int fg_tls_server_set_ticket_lifetime(struct fg_tls_server *s, int64_t seconds)
{
	struct ctx_extra *x = ctx_extra(s->ctx);
	if (!x || seconds < 0)
		return -EINVAL;
	if (seconds < 2) {
		SSL_CTX_set_num_tickets(s->ctx, 0);
		SSL_CTX_set_options(s->ctx, SSL_OP_NO_TICKET);
		return 0;
	}
	pthread_mutex_lock(&x->lock);
	x->key_period = seconds / 2;
	OPENSSL_cleanse(x->keys, sizeof(x->keys)); /* new keys for the new lifetime */
	pthread_mutex_unlock(&x->lock);
	SSL_CTX_set_timeout(s->ctx, (long)seconds);
	SSL_CTX_clear_options(s->ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(s->ctx, 1);
	return 0;
}

void fg_tls_server_free(struct fg_tls_server *s)
{
	if (!s)
		return;
	SSL_CTX_free(s->ctx);
	fg_free(s);
}

/* ---- sessions -------------------------------------------------------- */

static const struct fg_stream_ops tls_ops;

static struct fg_tls *conn_new(SSL_CTX *ctx, int fd, bool is_client, char *err, size_t errlen)
{
	struct fg_tls *t = fg_calloc(1, sizeof(*t));
	if (!t) {
		set_err(err, errlen, "out of memory");
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	t->base.ops = &tls_ops;
	t->base.fd = fd;
	t->is_client = is_client;
	t->read_want = FG_IO_READ;
	t->write_want = FG_IO_WRITE;
	t->want = is_client ? FG_IO_WRITE : FG_IO_READ;
	t->ssl = SSL_new(ctx);
	BIO *b = t->ssl ? BIO_new(bio_method) : NULL;
	if (!b) {
		set_err(err, errlen, "cannot create TLS session: %s", ossl_reason());
		fg_tls_free(t);
		errno = ENOMEM;
		return NULL;
	}
	BIO_set_data(b, t);
	SSL_set_bio(t->ssl, b, b); /* the session owns the BIO */
	SSL_set_app_data(t->ssl, t);
	if (is_client)
		SSL_set_connect_state(t->ssl);
	else
		SSL_set_accept_state(t->ssl);
	return t;
}

struct fg_tls *fg_tls_client_conn(struct fg_tls_client *c, int fd, const char *server_name,
				  const char *pin, char *err, size_t errlen)
{
	uint8_t p[FG_TLS_FP_LEN];
	bool has_pin = pin && *pin;
	if (has_pin && fg_tls_parse_pin(pin, p) < 0) {
		set_err(err, errlen,
			"invalid pin \"%.100s\": want a SHA-256 fingerprint (64 hex digits, "
			"colons allowed)",
			pin);
		goto err;
	}
	if (!has_pin && (!server_name || !*server_name)) {
		set_err(err, errlen, "no server name to verify the certificate against");
		goto err;
	}
	if (server_name && strlen(server_name) >= sizeof(((struct fg_tls *)0)->name)) {
		set_err(err, errlen, "server name too long");
		goto err;
	}
	struct fg_tls *t = conn_new(c->ctx, fd, true, err, errlen);
	if (!t)
		return NULL;
	t->has_pin = has_pin;
	if (has_pin)
		memcpy(t->pin, p, sizeof(p));
	if (server_name)
		snprintf(t->name, sizeof(t->name), "%s", server_name);
	bool ip = server_name && is_ip_literal(server_name);
	/* RFC 6066: SNI carries host names only */
	if (server_name && *server_name && !ip && !SSL_set_tlsext_host_name(t->ssl, server_name)) {
		set_err(err, errlen, "invalid server name \"%s\"", server_name);
		goto err_t;
	}
	struct ctx_extra *x = has_pin ? ctx_extra(c->ctx) : NULL;
	if (x && x->slots) {
		SSL_SESSION *sess = resume_get(x, t->name, t->pin);
		if (sess) {
			if (SSL_set_session(t->ssl, sess) == 1)
				t->offered = true;
			SSL_SESSION_free(sess); /* SSL_set_session took its own */
			ERR_clear_error();
		}
	}
	if (!has_pin) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
		X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, server_name)
			    : X509_VERIFY_PARAM_set1_host(vp, server_name, 0);
		if (!ok) {
			set_err(err, errlen, "invalid server name \"%s\"", server_name);
			goto err_t;
		}
	}
	return t;
err_t:
	ERR_clear_error();
	fg_tls_free(t);
	errno = EINVAL;
	return NULL;
err:
	close(fd);
	errno = EINVAL;
	return NULL;
}

struct fg_tls *fg_tls_server_conn(struct fg_tls_server *s, int fd, char *err, size_t errlen)
{
	return conn_new(s->ctx, fd, false, err, errlen);
}

/* Turns an OpenSSL failure of ret into an -errno, sets t->why and the
 * events to wait for after -EAGAIN (in *want). what names the operation. */
static int ssl_fail(struct fg_tls *t, int ret, const char *what, uint32_t *want)
{
	int e = SSL_get_error(t->ssl, ret);
	int rc;
	switch (e) {
	case SSL_ERROR_WANT_READ: *want = FG_IO_READ; return -EAGAIN;
	case SSL_ERROR_WANT_WRITE: *want = FG_IO_WRITE; return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN: /* close_notify from the peer */
		snprintf(t->why, sizeof(t->why), "%s: connection closed by peer", what);
		rc = -ECONNRESET;
		break;
	case SSL_ERROR_SYSCALL:
		t->fatal = true;
		if (t->sys_err) {
			rc = -t->sys_err;
			snprintf(t->why, sizeof(t->why), "%s: %s", what, strerror(t->sys_err));
		} else {
			rc = -ECONNRESET;
			snprintf(t->why, sizeof(t->why), "%s: connection closed by peer", what);
		}
		break;
	case SSL_ERROR_SSL:
	default: {
		t->fatal = true;
		if (t->cert_rejected) {
			rc = -EKEYREJECTED; /* why was set by verify_cb */
			break;
		}
		unsigned long ec = ERR_peek_last_error();
		if (ERR_GET_LIB(ec) == ERR_LIB_SSL &&
		    ERR_GET_REASON(ec) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			rc = -ECONNRESET;
			snprintf(t->why, sizeof(t->why), "%s: connection closed by peer", what);
		} else {
			rc = -EPROTO;
			snprintf(t->why, sizeof(t->why), "%s failed: %s", what, ossl_reason());
		}
		break;
	}
	}
	ERR_clear_error();
	return rc;
}

/* 0 if the peer's certificate (from this handshake or, resumed, from the
 * one that issued the ticket) is the pinned one; else -1 with why set. */
static int pin_check(struct fg_tls *t)
{
	X509 *x = SSL_get0_peer_certificate(t->ssl);
	uint8_t fp[FG_TLS_FP_LEN];
	if (!x || cert_fp(x, fp) < 0) {
		snprintf(t->why, sizeof(t->why), "no server certificate to check the pin");
		return -1;
	}
	if (CRYPTO_memcmp(fp, t->pin, FG_TLS_FP_LEN) == 0)
		return 0;
	char got[FG_TLS_FP_STRLEN], want[FG_TLS_FP_STRLEN];
	fg_tls_format_fp(fp, got);
	fg_tls_format_fp(t->pin, want);
	snprintf(t->why, sizeof(t->why), "certificate fingerprint mismatch: got %s, pinned %s", got,
		 want);
	return -1;
}

/* A handshake that offered a kept session failed: do not offer it again. */
static void resume_forget(struct fg_tls *t)
{
	if (!t->offered)
		return;
	t->offered = false;
	struct ctx_extra *x = ctx_extra(SSL_get_SSL_CTX(t->ssl));
	if (x && x->slots)
		resume_drop(x, t->name, t->pin);
}

int fg_tls_handshake(struct fg_tls *t)
{
	if (t->hs_done)
		return 0;
	if (t->fatal)
		return -EPROTO;
	ERR_clear_error();
	t->sys_err = 0;
	int r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		/* The pin again, whether or not verify_cb ran: a resumed session
		 * has no certificate exchange, only the certificate of the full
		 * handshake it came from, and that must be the pinned one. */
		if (t->is_client && t->has_pin && pin_check(t) < 0) {
			t->fatal = true;
			t->cert_rejected = true;
			resume_forget(t);
			return -EKEYREJECTED;
		}
		t->hs_done = true;
		return 0;
	}
	r = ssl_fail(t, r, "TLS handshake", &t->want);
	if (r != -EAGAIN)
		resume_forget(t);
	return r;
}

const char *fg_tls_kex_group(const struct fg_tls *t)
{
	if (!t->hs_done)
		return NULL;
	int nid = SSL_get_negotiated_group(t->ssl);
	return nid > 0 ? OBJ_nid2sn(nid) : NULL;
}

bool fg_tls_resumed(const struct fg_tls *t)
{
	return t->hs_done && SSL_session_reused(t->ssl) == 1;
}

uint32_t fg_tls_want(const struct fg_tls *t)
{
	return t->want;
}

ssize_t fg_tls_read(struct fg_tls *t, void *buf, size_t len)
{
	if (t->fatal)
		return -EPROTO;
	ERR_clear_error();
	t->sys_err = 0;
	size_t got = 0;
	if (SSL_read_ex(t->ssl, buf, len, &got) == 1) {
		t->read_want = FG_IO_READ;
		return (ssize_t)got;
	}
	int e = SSL_get_error(t->ssl, 0);
	if (e == SSL_ERROR_ZERO_RETURN) {
		ERR_clear_error();
		return 0;
	}
	int rc = ssl_fail(t, 0, "TLS read", &t->read_want);
	/* a TCP close without close_notify: the end of the stream to the
	 * caller, whose framing tells a truncated message */
	if (rc == -ECONNRESET && t->eof)
		return 0;
	return rc;
}

ssize_t fg_tls_write(struct fg_tls *t, const void *buf, size_t len)
{
	if (t->fatal)
		return -EPROTO;
	if (len == 0)
		return 0;
	ERR_clear_error();
	t->sys_err = 0;
	size_t put = 0;
	if (SSL_write_ex(t->ssl, buf, len, &put) == 1) {
		t->write_want = FG_IO_WRITE;
		return (ssize_t)put;
	}
	return ssl_fail(t, 0, "TLS write", &t->write_want);
}

int fg_tls_shutdown(struct fg_tls *t)
{
	if (t->fatal || !t->hs_done)
		return -ENOTCONN;
	ERR_clear_error();
	t->sys_err = 0;
	int r = SSL_shutdown(t->ssl);
	if (r >= 0)
		return 0; /* 0: ours is sent, the peer's not yet seen; we do not wait */
	return ssl_fail(t, r, "TLS shutdown", &t->want);
}

void fg_tls_set_read_ahead(struct fg_tls *t, bool on)
{
	SSL_set_read_ahead(t->ssl, on ? 1 : 0);
}

struct fg_stream *fg_tls_stream(struct fg_tls *t)
{
	return &t->base;
}

struct fg_tls *fg_tls_from_stream(struct fg_stream *s)
{
	return s && s->ops == &tls_ops ? (struct fg_tls *)s : NULL;
}

const char *fg_tls_error(const struct fg_tls *t)
{
	return t->why;
}

const char *fg_tls_version(const struct fg_tls *t)
{
	return SSL_get_version(t->ssl);
}

int fg_tls_peer_fingerprint(const struct fg_tls *t, char out[FG_TLS_FP_STRLEN])
{
	X509 *x = SSL_get0_peer_certificate(t->ssl);
	uint8_t fp[FG_TLS_FP_LEN];
	if (!x || cert_fp(x, fp) < 0)
		return -ENOENT;
	fg_tls_format_fp(fp, out);
	return 0;
}

int fg_tls_export(const struct fg_tls *t, const char *label, const uint8_t *context,
		  size_t context_len, uint8_t *out, size_t len)
{
	if (!t->hs_done)
		return -EINVAL;
	if (SSL_export_keying_material(t->ssl, out, len, label, strlen(label), context, context_len,
				       context != NULL) != 1) {
		ERR_clear_error();
		return -EINVAL;
	}
	return 0;
}

void fg_tls_free(struct fg_tls *t)
{
	if (!t)
		return;
	if (t->ssl) {
		if (t->hs_done && !t->fatal) {
			/* best effort: if the socket cannot take it now, the
			 * peer sees a TCP close, which our users handle */
			ERR_clear_error();
			SSL_shutdown(t->ssl);
		}
		ERR_clear_error();
		SSL_free(t->ssl);
	}
	if (t->base.fd >= 0)
		close(t->base.fd);
	fg_free(t);
}

/* ---- handshakes on a loop -------------------------------------------- */

struct fg_tls_hs {
	struct fg_loop *loop;
	struct fg_io io;
	struct fg_timer timer; /* the timeout; 0-delay for an early failure */
	struct fg_tls *t;      /* owned until handed to cb; NULL after an early failure */
	bool connecting;       /* client: connect() not yet known to be done */
	bool done;
	int early_err;
	fg_tls_open_cb cb;
	void *data; /* borrowed: the caller's */
	char why[FG_TLS_ERR_LEN];
};

static void ths_free_cb(void *p)
{
	fg_free(p);
}

/* Ends the handshake: t on success, else err with hs->why. */
static void ths_end(struct fg_tls_hs *hs, int err)
{
	hs->done = true;
	fg_timer_stop(hs->loop, &hs->timer);
	if (fg_io_active(&hs->io))
		fg_io_stop(hs->loop, &hs->io);
	struct fg_tls *t = hs->t;
	hs->t = NULL;
	if (err) {
		fg_tls_free(t);
		t = NULL;
		if (!hs->why[0])
			snprintf(hs->why, sizeof(hs->why), "%s", strerror(-err));
	}
	if (hs->cb)
		hs->cb(t, err, err ? hs->why : NULL, hs->data);
	else
		fg_tls_free(t);
	fg_loop_defer(hs->loop, ths_free_cb, hs);
}

static void ths_step(struct fg_tls_hs *hs)
{
	if (hs->connecting) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(hs->t->base.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			snprintf(hs->why, sizeof(hs->why), "connect failed: %s", strerror(soerr));
			ths_end(hs, -soerr);
			return;
		}
		hs->connecting = false;
	}
	int r = fg_tls_handshake(hs->t);
	if (r == -EAGAIN) {
		if (hs->t->want != hs->io.events)
			fg_io_modify(hs->loop, &hs->io, hs->t->want);
		return;
	}
	if (r < 0)
		snprintf(hs->why, sizeof(hs->why), "%s", hs->t->why);
	ths_end(hs, r);
}

static void ths_io_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	struct fg_tls_hs *hs = io->data;
	if (hs->done)
		return;
	if (hs->connecting && !(events & (FG_IO_WRITE | FG_IO_ERR | FG_IO_HUP)))
		return;
	ths_step(hs);
}

static void ths_timer_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	struct fg_tls_hs *hs = tm->data;
	if (hs->early_err) {
		ths_end(hs, hs->early_err);
		return;
	}
	snprintf(hs->why, sizeof(hs->why), "%s timed out",
		 hs->connecting ? "connect" : "TLS handshake");
	ths_end(hs, -ETIMEDOUT);
}

static struct fg_tls_hs *ths_new(struct fg_loop *loop, fg_tls_open_cb cb, void *data)
{
	struct fg_tls_hs *hs = fg_calloc(1, sizeof(*hs));
	if (!hs)
		return NULL;
	hs->loop = loop;
	hs->cb = cb;
	hs->data = data;
	fg_io_init(&hs->io);
	fg_timer_init(&hs->timer, ths_timer_cb, hs);
	return hs;
}

/* Starts watching hs->t (or reports an early failure: t NULL, why set). */
static struct fg_tls_hs *ths_go(struct fg_tls_hs *hs, int early_err, int64_t timeout_ns)
{
	if (!hs->t) {
		hs->early_err = early_err;
		fg_timer_start(hs->loop, &hs->timer, 0);
		return hs;
	}
	uint32_t ev = hs->t->is_client ? FG_IO_WRITE : FG_IO_READ;
	if (fg_io_start(hs->loop, &hs->io, hs->t->base.fd, ev, ths_io_cb, hs) < 0) {
		fg_tls_free(hs->t);
		fg_free(hs);
		return NULL;
	}
	fg_timer_start(hs->loop, &hs->timer, timeout_ns > 0 ? timeout_ns : 10 * 1000000000LL);
	return hs;
}

struct fg_tls_hs *fg_tls_connect_start(struct fg_loop *loop, int fd, struct fg_tls_client *c,
				       const char *server_name, const char *pin, int64_t timeout_ns,
				       fg_tls_open_cb cb, void *data)
{
	struct fg_tls_hs *hs = ths_new(loop, cb, data);
	if (!hs) {
		close(fd);
		return NULL;
	}
	hs->t = fg_tls_client_conn(c, fd, server_name, pin, hs->why, sizeof(hs->why));
	hs->connecting = true;
	return ths_go(hs, hs->t ? 0 : -errno, timeout_ns);
}

struct fg_tls_hs *fg_tls_accept_start(struct fg_loop *loop, int fd, struct fg_tls_server *s,
				      int64_t timeout_ns, fg_tls_open_cb cb, void *data)
{
	struct fg_tls_hs *hs = ths_new(loop, cb, data);
	if (!hs) {
		close(fd);
		return NULL;
	}
	hs->t = fg_tls_server_conn(s, fd, hs->why, sizeof(hs->why));
	return ths_go(hs, -ENOMEM, timeout_ns);
}

void fg_tls_hs_cancel(struct fg_tls_hs *hs)
{
	if (!hs || hs->done)
		return;
	hs->cb = NULL;
	ths_end(hs, -ECANCELED);
}

/* ---- stream ops ------------------------------------------------------ */

static ssize_t tls_read(struct fg_stream *s, void *buf, size_t len)
{
	return fg_tls_read((struct fg_tls *)s, buf, len);
}

static ssize_t tls_write(struct fg_stream *s, const void *buf, size_t len, bool more)
{
	return fg_tls_write((struct fg_tls *)s, buf, len);
}

static uint32_t tls_events(const struct fg_stream *s, bool want_read, bool want_write)
{
	const struct fg_tls *t = (const struct fg_tls *)s;
	return (want_read ? t->read_want : 0) | (want_write ? t->write_want : 0);
}

static const char *tls_error(const struct fg_stream *s)
{
	const struct fg_tls *t = (const struct fg_tls *)s;
	return t->why[0] ? t->why : NULL;
}

static void tls_close(struct fg_stream *s)
{
	fg_tls_free((struct fg_tls *)s);
}

static const struct fg_stream_ops tls_ops = {
    .read = tls_read,
    .write = tls_write,
    .events = tls_events,
    .error = tls_error,
    .close = tls_close,
};
