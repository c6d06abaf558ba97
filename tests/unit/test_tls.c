/* TLS (net/tls): certificate files, pins, contexts, and wss sessions over
 * real loopback sockets with client and server driven by one fg_loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/loop.h"
#include "net/tls.h"
#include "net/ws.h"

#define MS    FG_NS_PER_MS
#define TOKEN "node-token"
#define NMSG  200
#define MAXSZ (64 * 1024)
#define BIG   (4u << 20) /* several MiB per message */
#define NBIG  3

/* ---- certificate files, made once for the whole run ------------------ */

static char tmpdir[64];
static char cert_a[128], key_a[128], cert_b[128], key_b[128];
static char ca_cert[128], leaf_cert[128], leaf_key[128];
static char fp_a[FG_TLS_FP_STRLEN], fp_b[FG_TLS_FP_STRLEN], fp_leaf[FG_TLS_FP_STRLEN];

static void path(char *out, const char *name)
{
	snprintf(out, 128, "%s/%s", tmpdir, name);
}

/* A tiny CA for the verification tests: ca signs a leaf for "localhost". */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca,
		       const char *san)
{
	X509 *x = X509_new();
	assert_non_null(x);
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
	X509_set_pubkey(x, key);
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	const char *exts[][2] = {
	    {"basicConstraints", ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
	    {"keyUsage", ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"},
	    {"subjectAltName", san},
	};
	for (size_t i = 0; i < 3; i++) {
		if (!exts[i][1])
			continue;
		X509_EXTENSION *e = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
		assert_non_null(e);
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

static void write_file(const char *p, X509 *x, EVP_PKEY *k)
{
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	if (x)
		assert_true(PEM_write_X509(f, x));
	if (k)
		assert_true(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
	fclose(f);
}

static int group_setup(void **st)
{
	umask(022);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/fg-tls-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	path(cert_a, "a.crt");
	path(key_a, "a.key");
	path(cert_b, "b.crt");
	path(key_b, "b.key");
	path(ca_cert, "ca.crt");
	path(leaf_cert, "leaf.crt");
	path(leaf_key, "leaf.key");
	char err[FG_TLS_ERR_LEN];
	const char *sans[] = {"localhost", "127.0.0.1", "::1"};
	assert_int_equal(
	    fg_tls_make_self_signed(cert_a, key_a, "node-a", sans, 3, err, sizeof(err)), 0);
	assert_int_equal(
	    fg_tls_make_self_signed(cert_b, key_b, "node-b", NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(fg_tls_cert_fingerprint(cert_a, fp_a, err, sizeof(err)), 0);
	assert_int_equal(fg_tls_cert_fingerprint(cert_b, fp_b, err, sizeof(err)), 0);

	EVP_PKEY *cak = EVP_EC_gen("P-256"), *lk = EVP_EC_gen("P-256");
	X509 *ca = make_cert(cak, "test CA", NULL, NULL, true, NULL);
	X509 *leaf = make_cert(lk, "localhost", ca, cak, false, "DNS:localhost");
	write_file(ca_cert, ca, NULL);
	write_file(leaf_cert, leaf, NULL);
	write_file(leaf_key, NULL, lk);
	X509_free(ca);
	X509_free(leaf);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(lk);
	assert_int_equal(fg_tls_cert_fingerprint(leaf_cert, fp_leaf, err, sizeof(err)), 0);
	return 0;
}

static int group_teardown(void **st)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- files, pins, contexts ------------------------------------------- */

static void test_tls_self_signed_files_modes_names_and_lifetime(void **st)
{
	struct stat sb;
	assert_int_equal(stat(key_a, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(stat(cert_a, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0644);

	FILE *f = fopen(cert_a, "r");
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	char cn[64];
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
	assert_string_equal(cn, "node-a");
	assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "example.com", 0, 0, NULL), 0);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
	EVP_PKEY *pk = X509_get0_pubkey(x);
	char group[32];
	size_t gl;
	assert_true(EVP_PKEY_get_group_name(pk, group, sizeof(group), &gl));
	assert_string_equal(group, "prime256v1");
	/* valid now, and still in 9.9 years, not after 10.1 */
	time_t now = time(NULL);
	time_t in99 = now + (time_t)(9.9 * 365.25 * 86400),
	       in101 = now + (time_t)(10.1 * 365.25 * 86400);
	assert_true(X509_cmp_time(X509_get0_notBefore(x), &now) < 0);
	assert_true(X509_cmp_time(X509_get0_notAfter(x), &in99) > 0);
	assert_true(X509_cmp_time(X509_get0_notAfter(x), &in101) < 0);
	X509_free(x);

	/* the key file holds the certificate's key */
	char err[FG_TLS_ERR_LEN];
	struct fg_tls_server *s = fg_tls_server_new(cert_a, key_a, err, sizeof(err));
	assert_non_null(s);
	fg_tls_server_free(s);
}

static void test_tls_fingerprint_same_as_openssl_cli(void **st)
{
	char cmd[256], line[256] = "";
	snprintf(cmd, sizeof(cmd), "openssl x509 -in %s -noout -fingerprint -sha256", cert_a);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(line, sizeof(line), p));
	pclose(p);
	line[strcspn(line, "\n")] = 0;
	const char *eq = strchr(line, '=');
	assert_non_null(eq);
	assert_string_equal(eq + 1, fp_a);
	assert_int_equal(strlen(fp_a), 95);
	assert_string_not_equal(fp_a, fp_b);
}

static void test_tls_pin_formats(void **st)
{
	uint8_t a[FG_TLS_FP_LEN], b[FG_TLS_FP_LEN];
	assert_int_equal(fg_tls_parse_pin(fp_a, a), 0);
	char s[FG_TLS_FP_STRLEN];
	fg_tls_format_fp(a, s);
	assert_string_equal(s, fp_a);

	/* lowercase, and without colons: the same pin */
	char lower[FG_TLS_FP_STRLEN], bare[65];
	size_t j = 0;
	for (size_t i = 0; fp_a[i]; i++) {
		lower[i] = (char)(fp_a[i] >= 'A' && fp_a[i] <= 'F' ? fp_a[i] + 32 : fp_a[i]);
		if (fp_a[i] != ':')
			bare[j++] = fp_a[i];
	}
	lower[95] = 0;
	bare[j] = 0;
	assert_int_equal(fg_tls_parse_pin(lower, b), 0);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(fg_tls_parse_pin(bare, b), 0);
	assert_memory_equal(a, b, sizeof(a));

	assert_int_equal(fg_tls_parse_pin("", b), -EINVAL);
	assert_int_equal(fg_tls_parse_pin(NULL, b), -EINVAL);
	assert_int_equal(fg_tls_parse_pin("AB:CD", b), -EINVAL);
	char bad[FG_TLS_FP_STRLEN];
	memcpy(bad, fp_a, sizeof(bad));
	bad[10] = 'G';
	assert_int_equal(fg_tls_parse_pin(bad, b), -EINVAL);
	memcpy(bad, fp_a, sizeof(bad));
	bad[2] = '-';
	assert_int_equal(fg_tls_parse_pin(bad, b), -EINVAL);
	bare[63] = 0; /* 63 digits */
	assert_int_equal(fg_tls_parse_pin(bare, b), -EINVAL);
}

static void test_tls_self_signed_refuses_bad_names_and_writes_nothing(void **st)
{
	char c[128], k[128], err[FG_TLS_ERR_LEN];
	path(c, "bad.crt");
	path(k, "bad.key");
	const char *sans[] = {"ok.example", "a,DNS:evil"};
	assert_int_equal(fg_tls_make_self_signed(c, k, "x", sans, 2, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "invalid subjectAltName entry \"a,DNS:evil\"");
	assert_int_equal(fg_tls_make_self_signed(c, k, "", NULL, 0, err, sizeof(err)), -EINVAL);
	assert_int_equal(fg_tls_make_self_signed(c, c, "x", NULL, 0, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "the certificate and the key need two different files");
	assert_int_equal(access(c, F_OK), -1);
	assert_int_equal(access(k, F_OK), -1);
	char nodir[128];
	path(nodir, "missing/dir.key");
	assert_true(fg_tls_make_self_signed(c, nodir, "x", NULL, 0, err, sizeof(err)) == -ENOENT);
	assert_non_null(strstr(err, "No such file or directory"));
}

static void test_tls_server_context_errors_name_the_file(void **st)
{
	char err[FG_TLS_ERR_LEN], missing[128], want[512];
	path(missing, "nope.crt");
	assert_null(fg_tls_server_new(missing, key_a, err, sizeof(err)));
	snprintf(want, sizeof(want), "cannot read certificate file %s: No such file or directory",
		 missing);
	assert_string_equal(err, want);

	assert_null(fg_tls_server_new(cert_a, missing, err, sizeof(err)));
	snprintf(want, sizeof(want), "cannot read key file %s: No such file or directory", missing);
	assert_string_equal(err, want);

	assert_null(fg_tls_server_new(cert_a, key_b, err, sizeof(err)));
	snprintf(want, sizeof(want), "private key %s does not match certificate %s", key_b, cert_a);
	assert_string_equal(err, want);

	/* a key where the certificate should be */
	assert_null(fg_tls_server_new(key_a, key_a, err, sizeof(err)));
	snprintf(want, sizeof(want), "no usable certificate in %s", key_a);
	assert_memory_equal(err, want, strlen(want));

	char fp[FG_TLS_FP_STRLEN];
	assert_int_equal(fg_tls_cert_fingerprint(key_a, fp, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "no PEM certificate in %s", key_a);
	assert_string_equal(err, want);

	struct fg_tls_client_opts o = {.ca_file = missing};
	assert_null(fg_tls_client_new(&o, err, sizeof(err)));
	snprintf(want, sizeof(want), "cannot read CA file %s: No such file or directory", missing);
	assert_string_equal(err, want);
}

/* ---- session resumption ---------------------------------------------- */

struct round {
	int rc;		 /* the client's handshake result */
	bool resumed;	 /* both ends agree (asserted) */
	char group[32];	 /* the key exchange group, both ends agree; "" if none */
	uint8_t exp[32]; /* exporter of the connection */
	char why[FG_TLS_ERR_LEN];
};

/* One connection from cc (name, pin) to ss over a socketpair: both
 * handshakes, then a message from the server that the client reads (it
 * reads the server's ticket on the way, as a tunnel dialer does), close. */
static struct round one_round(struct fg_tls_client *cc, struct fg_tls_server *ss, const char *name,
			      const char *pin)
{
	struct round r = {.rc = -EAGAIN};
	char err[FG_TLS_ERR_LEN];
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct fg_tls *c = fg_tls_client_conn(cc, sv[0], name, pin, err, sizeof(err));
	struct fg_tls *s = fg_tls_server_conn(ss, sv[1], err, sizeof(err));
	assert_non_null(c);
	assert_non_null(s);
	int rs = -EAGAIN;
	for (int i = 0; i < 1000 && (r.rc == -EAGAIN || rs == -EAGAIN); i++) {
		if (r.rc == -EAGAIN)
			r.rc = fg_tls_handshake(c);
		if (rs == -EAGAIN)
			rs = fg_tls_handshake(s);
		if (r.rc != 0 && r.rc != -EAGAIN)
			break;
	}
	if (r.rc == 0) {
		assert_int_equal(rs, 0);
		r.resumed = fg_tls_resumed(c);
		assert_int_equal(fg_tls_resumed(s), r.resumed);
		const char *gc = fg_tls_kex_group(c), *gs = fg_tls_kex_group(s);
		snprintf(r.group, sizeof(r.group), "%s", gc ? gc : "");
		assert_string_equal(r.group, gs ? gs : "");
		uint8_t se[32];
		assert_int_equal(fg_tls_export(c, "EXPORTER-test", NULL, 0, r.exp, 32), 0);
		assert_int_equal(fg_tls_export(s, "EXPORTER-test", NULL, 0, se, 32), 0);
		assert_memory_equal(r.exp, se, 32);
		assert_int_equal(fg_tls_write(s, "hi", 2), 2);
		char buf[8];
		ssize_t n = -EAGAIN;
		for (int i = 0; i < 1000 && n == -EAGAIN; i++)
			n = fg_tls_read(c, buf, sizeof(buf));
		assert_int_equal(n, 2);
		assert_memory_equal(buf, "hi", 2);
	} else {
		snprintf(r.why, sizeof(r.why), "%s", fg_tls_error(c));
	}
	fg_tls_free(c);
	fg_tls_free(s);
	return r;
}

static void test_tls_second_connection_resumes_with_its_own_secrets(void **st)
{
	char err[FG_TLS_ERR_LEN];
	struct fg_tls_client_opts o = {.tls13_only = true, .resume = true};
	struct fg_tls_client *cc = fg_tls_client_new(&o, err, sizeof(err));
	struct fg_tls_client *plain =
	    fg_tls_client_new(&(struct fg_tls_client_opts){0}, err, sizeof(err));
	struct fg_tls_server *ss = fg_tls_server_new(cert_a, key_a, err, sizeof(err));
	assert_non_null(cc);
	assert_non_null(plain);
	assert_non_null(ss);

	struct round r1 = one_round(cc, ss, "node-a", fp_a);
	assert_int_equal(r1.rc, 0);
	assert_false(r1.resumed); /* nothing kept yet */
	struct round r2 = one_round(cc, ss, "node-a", fp_a);
	assert_int_equal(r2.rc, 0);
	assert_true(r2.resumed);
	struct round r3 = one_round(cc, ss, "node-a", fp_a);
	assert_int_equal(r3.rc, 0);
	assert_true(r3.resumed);
	/* a resumed connection still does its own (EC)DHE (psk_dhe_ke:
	 * forward secrecy), and has its own secrets: the tunnel handshake is
	 * bound to each one's exporter */
	assert_string_equal(r1.group, "X25519");
	assert_string_equal(r2.group, "X25519");
	assert_string_equal(r3.group, "X25519");
	assert_memory_not_equal(r1.exp, r2.exp, 32);
	assert_memory_not_equal(r2.exp, r3.exp, 32);

	/* a client context without resume never resumes */
	for (int i = 0; i < 2; i++) {
		struct round p = one_round(plain, ss, "node-a", fp_a);
		assert_int_equal(p.rc, 0);
		assert_false(p.resumed);
	}
	/* nor does an unpinned (CA-verified) session, even when it verifies */
	struct fg_tls_client_opts oc = {.ca_file = ca_cert, .resume = true};
	struct fg_tls_client *cac = fg_tls_client_new(&oc, err, sizeof(err));
	struct fg_tls_server *leaf = fg_tls_server_new(leaf_cert, leaf_key, err, sizeof(err));
	assert_non_null(cac);
	assert_non_null(leaf);
	for (int i = 0; i < 2; i++) {
		struct round p = one_round(cac, leaf, "localhost", NULL);
		assert_int_equal(p.rc, 0);
		assert_false(p.resumed);
	}
	fg_tls_client_free(cac);
	fg_tls_server_free(leaf);
	fg_tls_client_free(plain);
	fg_tls_client_free(cc);
	fg_tls_server_free(ss);
}

static void test_tls_session_bound_to_its_pin(void **st)
{
	char err[FG_TLS_ERR_LEN];
	struct fg_tls_client_opts o = {.tls13_only = true, .resume = true};
	struct fg_tls_client *cc = fg_tls_client_new(&o, err, sizeof(err));
	struct fg_tls_server *sa = fg_tls_server_new(cert_a, key_a, err, sizeof(err));
	struct fg_tls_server *sb = fg_tls_server_new(cert_b, key_b, err, sizeof(err));
	assert_non_null(cc);
	assert_non_null(sa);
	assert_non_null(sb);
	assert_int_equal(one_round(cc, sa, "peer", fp_a).rc, 0);
	assert_true(one_round(cc, sa, "peer", fp_a).resumed);

	/* the same name pinned to another certificate: A's session is not
	 * offered, and A is refused as before (a changed pin takes effect at
	 * once, resumption or not) */
	struct round w = one_round(cc, sa, "peer", fp_b);
	assert_int_equal(w.rc, -EKEYREJECTED);
	assert_non_null(strstr(w.why, "certificate fingerprint mismatch"));
	/* B under that pin: a full handshake (B could not open A's ticket
	 * anyway), then B's own session */
	struct round b1 = one_round(cc, sb, "peer", fp_b);
	assert_int_equal(b1.rc, 0);
	assert_false(b1.resumed);
	assert_true(one_round(cc, sb, "peer", fp_b).resumed);
	/* A's session was kept beside it, and still only goes to A's pin */
	assert_true(one_round(cc, sa, "peer", fp_a).resumed);
	assert_int_equal(one_round(cc, sb, "peer", fp_a).rc, -EKEYREJECTED);
	/* a server that cannot open the ticket (another node, or ours after a
	 * restart): a full handshake, pin checked */
	struct fg_tls_server *sa2 = fg_tls_server_new(cert_a, key_a, err, sizeof(err));
	assert_non_null(sa2);
	struct round r = one_round(cc, sa2, "peer", fp_a);
	assert_int_equal(r.rc, 0);
	assert_false(r.resumed);
	fg_tls_server_free(sa2);
	fg_tls_client_free(cc);
	fg_tls_server_free(sa);
	fg_tls_server_free(sb);
}

static void test_tls_ticket_not_accepted_after_its_lifetime(void **st)
{
	char err[FG_TLS_ERR_LEN];
	struct fg_tls_client_opts o = {.tls13_only = true, .resume = true};
	struct fg_tls_client *cc = fg_tls_client_new(&o, err, sizeof(err));
	struct fg_tls_server *ss = fg_tls_server_new(cert_a, key_a, err, sizeof(err));
	assert_non_null(cc);
	assert_non_null(ss);
	assert_int_equal(fg_tls_server_set_ticket_lifetime(ss, 2), 0);
	assert_false(one_round(cc, ss, "a", fp_a).resumed);
	assert_true(one_round(cc, ss, "a", fp_a).resumed);
	sleep(3); /* past the 2 s lifetime: both ticket keys rotated out */
	assert_false(one_round(cc, ss, "a", fp_a).resumed);
	assert_true(one_round(cc, ss, "a", fp_a).resumed); /* the new ticket */

	/* tickets off: full handshakes only */
	assert_int_equal(fg_tls_server_set_ticket_lifetime(ss, 0), 0);
	assert_false(one_round(cc, ss, "b", fp_a).resumed);
	assert_false(one_round(cc, ss, "b", fp_a).resumed);
	fg_tls_client_free(cc);
	fg_tls_server_free(ss);
}

/* ---- the session API against an ordinary (OpenSSL) server ------------ */

/* Drives our client and an OpenSSL server over a socketpair until both
 * handshakes end. Returns the client's result. */
static int pair_handshake(struct fg_tls *c, SSL *s)
{
	int rc = -EAGAIN;
	for (int i = 0; i < 1000 && rc == -EAGAIN; i++) {
		rc = fg_tls_handshake(c);
		SSL_do_handshake(s);
	}
	return rc;
}

static SSL *tls12_server(SSL_CTX **ctx, int fd)
{
	*ctx = SSL_CTX_new(TLS_server_method());
	assert_non_null(*ctx);
	SSL_CTX_set_max_proto_version(*ctx, TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_use_certificate_chain_file(*ctx, cert_a), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(*ctx, key_a, SSL_FILETYPE_PEM), 1);
	SSL *s = SSL_new(*ctx);
	SSL_set_fd(s, fd);
	SSL_set_accept_state(s);
	return s;
}

static void test_tls_client_accepts_tls12_server_unless_tls13_only(void **st)
{
	char err[FG_TLS_ERR_LEN];
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	SSL_CTX *sctx;
	SSL *s = tls12_server(&sctx, sv[1]);
	struct fg_tls_client *cc = fg_tls_client_new(NULL, err, sizeof(err));
	assert_non_null(cc);
	struct fg_tls *c = fg_tls_client_conn(cc, sv[0], "localhost", fp_a, err, sizeof(err));
	assert_non_null(c);
	assert_int_equal(pair_handshake(c, s), 0);
	assert_string_equal(fg_tls_version(c), "TLSv1.2");

	/* bytes both ways, then our close_notify is the server's end of stream */
	char buf[16] = "";
	assert_int_equal(fg_tls_write(c, "hello", 5), 5);
	assert_int_equal(SSL_read(s, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(fg_tls_read(c, buf, sizeof(buf)), -EAGAIN);
	assert_int_equal(fg_tls_stream(c)->ops->events(fg_tls_stream(c), true, false), FG_IO_READ);
	assert_int_equal(SSL_write(s, "world", 5), 5);
	assert_int_equal(fg_tls_read(c, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "world", 5);
	assert_int_equal(fg_tls_shutdown(c), 0);
	assert_int_equal(SSL_read(s, buf, sizeof(buf)), 0);
	assert_int_equal(SSL_get_error(s, 0), SSL_ERROR_ZERO_RETURN);
	fg_tls_free(c);
	SSL_free(s);
	close(sv[1]);
	fg_tls_client_free(cc);

	/* a flowgate-to-flowgate client refuses to go down to 1.2 */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	s = SSL_new(sctx);
	SSL_set_fd(s, sv[1]);
	SSL_set_accept_state(s);
	struct fg_tls_client_opts o = {.tls13_only = true};
	cc = fg_tls_client_new(&o, err, sizeof(err));
	assert_non_null(cc);
	c = fg_tls_client_conn(cc, sv[0], "localhost", fp_a, err, sizeof(err));
	assert_non_null(c);
	assert_int_equal(pair_handshake(c, s), -EPROTO);
	assert_non_null(strstr(fg_tls_error(c), "TLS handshake failed: "));
	assert_non_null(strstr(fg_tls_error(c), "protocol version"));
	fg_tls_free(c);
	SSL_free(s);
	close(sv[1]);
	fg_tls_client_free(cc);
	SSL_CTX_free(sctx);
}

/* ---- wss sessions ---------------------------------------------------- */

struct side {
	struct fg_ws *ws;
	struct fg_ws_hs *hs;
	int open_err, open_status, opened;
	char why[FG_TLS_ERR_LEN];
	char version[16], peer_fp[FG_TLS_FP_STRLEN];
	uint8_t exported[32];
	int sent, recvd, bad;
	int closed, close_code;
	char close_err[FG_TLS_ERR_LEN];
	int texts;
	uint8_t big_hash[NBIG][32]; /* of what was sent (client) or received (server) */
};

enum { M_PLAIN, M_EXCHANGE, M_BIG, M_DIE_MID_MESSAGE };

struct env {
	struct fg_loop *loop;
	int lfd;
	struct fg_io lio;
	struct fg_timer guard;
	struct fg_ws_opts opts;
	struct fg_tls_server *srv_tls;
	struct fg_tls_client *cli_tls;
	struct side cli, srv;
	int mode;
	int srv_only;  /* no fg_ws client: stop when the server ends */
	int small_buf; /* tiny socket buffers: many partial writes */
	int raw_tls;   /* the listener runs fg_tls_accept_start, not wss */
	struct fg_tls *cli_t, *srv_t;
	struct fg_tls_hs *cli_ths, *srv_ths;
	char *buf;
};

static struct env *E;

static void guard_cb(struct fg_loop *l, struct fg_timer *t)
{
	fail_msg("test took too long");
}

static void stop_soon_cb(struct fg_loop *l, struct fg_timer *t)
{
	fg_loop_stop(l);
}

static void drain(struct env *e)
{
	struct fg_timer t;
	fg_timer_init(&t, stop_soon_cb, NULL);
	fg_timer_start(e->loop, &t, 0);
	fg_loop_run(e->loop);
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static size_t msg_size(int i, int dir)
{
	return 1 + (size_t)(mix((uint64_t)i * 2 + (uint64_t)dir) % MAXSZ);
}

static void msg_fill(char *b, int i, int dir)
{
	size_t n = msg_size(i, dir);
	for (size_t j = 0; j < n; j++)
		b[j] = (char)('a' + (i + (int)(j * 13) + dir * 7) % 26);
}

static int send_next(struct side *s, int dir)
{
	if (s->sent >= NMSG)
		return 0;
	msg_fill(E->buf, s->sent, dir);
	int r = fg_ws_send_text(s->ws, E->buf, msg_size(s->sent, dir));
	if (r == 0)
		s->sent++;
	return r;
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
	assert_true(EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL));
}

static void maybe_stop(void)
{
	if ((E->srv_only || E->cli.closed || E->cli.open_err) && (E->srv.closed || E->srv.open_err))
		fg_loop_stop(E->loop);
}

static void on_text(struct fg_ws *ws, const char *d, size_t n, void *user)
{
	struct side *s = user;
	int dir = s == &E->cli ? 1 : 0; /* the direction of what s receives */
	s->texts++;
	if (E->mode != M_EXCHANGE)
		return;
	if (n != msg_size(s->recvd, dir)) {
		s->bad++;
	} else {
		msg_fill(E->buf, s->recvd, dir);
		if (memcmp(E->buf, d, n) != 0)
			s->bad++;
	}
	s->recvd++;
	assert_int_equal(send_next(s, !dir), 0);
	if (E->cli.recvd == NMSG && E->srv.recvd == NMSG)
		fg_ws_close(E->cli.ws, 1000, "done");
}

static void on_binary(struct fg_ws *ws, const uint8_t *d, size_t n, void *user)
{
	struct side *s = user;
	if (s->recvd < NBIG && n == BIG + (size_t)s->recvd)
		sha256(d, n, s->big_hash[s->recvd]);
	else
		s->bad++;
	s->recvd++;
	if (s == &E->srv && s->recvd == NBIG)
		fg_ws_close(ws, 1000, "got them");
}

static void on_close(struct fg_ws *ws, int code, const char *err, void *user)
{
	struct side *s = user;
	s->closed++;
	s->close_code = code;
	snprintf(s->close_err, sizeof(s->close_err), "%s", err ? err : "");
	fg_ws_free(ws);
	s->ws = NULL;
	maybe_stop();
}

static const struct fg_ws_cbs cbs = {
    .on_text = on_text, .on_binary = on_binary, .on_close = on_close};

static void open_cb(struct fg_ws *ws, int err, int status, void *data)
{
	struct side *s = data;
	s->opened++;
	s->open_err = err;
	s->open_status = status;
	s->ws = ws;
	const char *why = fg_ws_hs_error(s->hs);
	snprintf(s->why, sizeof(s->why), "%s", why ? why : "");
	s->hs = NULL;
	if (err) {
		maybe_stop();
		return;
	}
	struct fg_tls *t = fg_ws_tls(ws);
	assert_non_null(t);
	snprintf(s->version, sizeof(s->version), "%s", fg_tls_version(t));
	if (fg_tls_peer_fingerprint(t, s->peer_fp) < 0)
		s->peer_fp[0] = 0;
	assert_int_equal(
	    fg_tls_export(t, "EXPORTER-flowgate-test", NULL, 0, s->exported, sizeof(s->exported)),
	    0);
	if (E->mode == M_EXCHANGE) {
		for (int i = 0; i < 4; i++)
			assert_int_equal(send_next(s, s == &E->cli ? 0 : 1), 0);
		return;
	}
	if (s != &E->cli)
		return;
	switch (E->mode) {
	case M_PLAIN: fg_ws_close(ws, 1000, "bye"); break;
	case M_BIG:
		for (int i = 0; i < NBIG; i++) {
			size_t n = BIG + (size_t)i;
			for (size_t j = 0; j < n; j++)
				E->buf[j] =
				    (char)(mix(j / 8 + (uint64_t)i * 1000003) >> (j % 8 * 8));
			sha256(E->buf, n, s->big_hash[i]);
			assert_int_equal(fg_ws_send_binary(ws, E->buf, n), 0);
		}
		break;
	case M_DIE_MID_MESSAGE:
		memset(E->buf, 'x', BIG);
		assert_int_equal(fg_ws_send_binary(ws, E->buf, BIG), 0);
		assert_true(fg_ws_queued_bytes(ws) > 0);
		/* gone with most of the message unsent: the server is in the
		 * middle of a frame */
		fg_ws_free(ws);
		s->ws = NULL;
		s->closed = 1;
		break;
	}
}

static int check_cb(const struct fg_ws_request *req, void **session_data, void *data)
{
	if (strcmp(req->token, TOKEN) != 0)
		return 401;
	*session_data = &E->srv;
	return 101;
}

/* Small send buffers: writes are cut short and hit EAGAIN all the time.
 * (Not the receive buffer: shrinking it under an advertised window makes
 * the kernel drop segments and TCP back off for seconds.) */
static void shrink(int fd)
{
	int small = 8192;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
}

/* Results of fg_tls_connect_start / fg_tls_accept_start. */
static void tls_open_cb(struct fg_tls *t, int err, const char *why, void *data)
{
	struct side *s = data;
	s->opened++;
	s->open_err = err;
	snprintf(s->why, sizeof(s->why), "%s", why ? why : "");
	if (s == &E->cli) {
		E->cli_t = t;
		E->cli_ths = NULL;
	} else {
		E->srv_t = t;
		E->srv_ths = NULL;
	}
	if (t)
		snprintf(s->version, sizeof(s->version), "%s", fg_tls_version(t));
	if ((E->srv_only || E->cli.opened) && E->srv.opened)
		fg_loop_stop(E->loop);
}

static void listen_cb(struct fg_loop *l, struct fg_io *io, uint32_t events)
{
	int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (E->small_buf)
		shrink(fd);
	if (E->raw_tls) {
		E->srv_ths = fg_tls_accept_start(l, fd, E->srv_tls, E->opts.handshake_timeout_ns,
						 tls_open_cb, &E->srv);
		assert_non_null(E->srv_ths);
		return;
	}
	E->srv.hs =
	    fg_ws_accept_tls_start(l, fd, E->srv_tls, check_cb, &cbs, &E->opts, open_cb, &E->srv);
	assert_non_null(E->srv.hs);
}

static struct sockaddr_in laddr;

static int setup(void **st)
{
	struct env *e = calloc(1, sizeof(*e));
	E = e;
	e->loop = fg_loop_new();
	e->buf = malloc(BIG + NBIG);
	e->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	laddr =
	    (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(e->lfd, (struct sockaddr *)&laddr, sizeof(laddr)), 0);
	socklen_t sl = sizeof(laddr);
	getsockname(e->lfd, (struct sockaddr *)&laddr, &sl);
	assert_int_equal(listen(e->lfd, 16), 0);
	fg_io_init(&e->lio);
	assert_int_equal(fg_io_start(e->loop, &e->lio, e->lfd, FG_IO_READ, listen_cb, e), 0);
	fg_timer_init(&e->guard, guard_cb, e);
	fg_timer_start(e->loop, &e->guard, 60000 * MS);
	char err[FG_TLS_ERR_LEN];
	e->srv_tls = fg_tls_server_new(cert_a, key_a, err, sizeof(err));
	assert_non_null(e->srv_tls);
	e->cli_tls = fg_tls_client_new(NULL, err, sizeof(err)); /* system CAs */
	assert_non_null(e->cli_tls);
	*st = e;
	return 0;
}

static int teardown(void **st)
{
	struct env *e = *st;
	fg_ws_free(e->cli.ws);
	fg_ws_free(e->srv.ws);
	fg_ws_hs_cancel(e->cli.hs);
	fg_ws_hs_cancel(e->srv.hs);
	fg_tls_hs_cancel(e->cli_ths);
	fg_tls_hs_cancel(e->srv_ths);
	fg_tls_free(e->cli_t);
	fg_tls_free(e->srv_t);
	fg_timer_stop(e->loop, &e->guard);
	fg_io_stop(e->loop, &e->lio);
	drain(e);
	close(e->lfd);
	fg_loop_free(e->loop);
	fg_tls_server_free(e->srv_tls);
	fg_tls_client_free(e->cli_tls);
	free(e->buf);
	free(e);
	E = NULL;
	return 0;
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (E->small_buf)
		shrink(fd);
	int r = connect(fd, (struct sockaddr *)&laddr, sizeof(laddr));
	assert_true(r == 0 || errno == EINPROGRESS);
	return fd;
}

/* Dials the listener as "localhost:port" (the default server name) with
 * an optional explicit server name and pin. */
static void start_client(struct env *e, const char *server_name, const char *pin)
{
	char host[64];
	snprintf(host, sizeof(host), "localhost:%u", ntohs(laddr.sin_port));
	e->cli.hs = fg_ws_connect_tls_start(e->loop, dial(), e->cli_tls, server_name, pin, host,
					    "/agent", TOKEN, &cbs, &e->opts, open_cb, &e->cli);
	assert_non_null(e->cli.hs);
}

static void use_client_ca(struct env *e, const char *ca)
{
	char err[FG_TLS_ERR_LEN];
	fg_tls_client_free(e->cli_tls);
	struct fg_tls_client_opts o = {.ca_file = ca};
	e->cli_tls = fg_tls_client_new(&o, err, sizeof(err));
	assert_non_null(e->cli_tls);
}

static void use_server_cert(struct env *e, const char *cert, const char *key)
{
	char err[FG_TLS_ERR_LEN];
	fg_tls_server_free(e->srv_tls);
	e->srv_tls = fg_tls_server_new(cert, key, err, sizeof(err));
	assert_non_null(e->srv_tls);
}

static void test_tls_ws_messages_both_ways_intact_over_tls13_with_pin(void **st)
{
	struct env *e = *st;
	e->mode = M_EXCHANGE;
	e->opts.ping_interval_ns = 20 * MS; /* pings interleave with the data */
	e->opts.ping_timeout_ns = 20000 * MS;
	start_client(e, NULL, fp_a); /* a self-signed certificate, pinned */
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, 0);
	assert_string_equal(e->cli.why, "");
	assert_int_equal(e->srv.open_err, 0);
	assert_int_equal(e->cli.recvd, NMSG);
	assert_int_equal(e->srv.recvd, NMSG);
	assert_int_equal(e->cli.bad, 0);
	assert_int_equal(e->srv.bad, 0);
	assert_int_equal(e->cli.close_code, 1000);
	assert_int_equal(e->srv.close_code, 1000);
	assert_string_equal(e->cli.close_err, "");
	assert_string_equal(e->srv.close_err, "");
	/* the client context allows 1.2, our server does not: 1.3 it is */
	assert_string_equal(e->cli.version, "TLSv1.3");
	assert_string_equal(e->srv.version, "TLSv1.3");
	assert_string_equal(e->cli.peer_fp, fp_a);
	assert_string_equal(e->srv.peer_fp, ""); /* no client certificates */
	assert_memory_equal(e->cli.exported, e->srv.exported, sizeof(e->cli.exported));
}

static void test_tls_ws_several_mib_messages_across_partial_writes(void **st)
{
	struct env *e = *st;
	e->mode = M_BIG;
	e->small_buf = 1;
	e->opts.max_msg = BIG + NBIG;
	e->opts.max_queued = (BIG + NBIG) * NBIG;
	start_client(e, NULL, fp_a);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, 0);
	assert_int_equal(e->srv.recvd, NBIG);
	assert_int_equal(e->srv.bad, 0);
	for (int i = 0; i < NBIG; i++)
		assert_memory_equal(e->srv.big_hash[i], e->cli.big_hash[i], 32);
	assert_int_equal(e->srv.close_code, 1000);
	assert_int_equal(e->cli.close_code, 1000);
	assert_string_equal(e->cli.close_err, "");
}

static void test_tls_pin_mismatch_refused_with_both_fingerprints(void **st)
{
	struct env *e = *st;
	start_client(e, NULL, fp_b);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, -EKEYREJECTED);
	assert_null(e->cli.ws);
	char want[FG_TLS_ERR_LEN];
	snprintf(want, sizeof(want), "certificate fingerprint mismatch: got %s, pinned %s", fp_a,
		 fp_b);
	assert_string_equal(e->cli.why, want);
	/* the server learns it through the client's alert */
	assert_int_equal(e->srv.open_err, -EPROTO);
	assert_non_null(strstr(e->srv.why, "TLS handshake failed: "));
	assert_non_null(strstr(e->srv.why, "alert"));
}

static void test_tls_self_signed_refused_by_ca_verification_without_pin(void **st)
{
	struct env *e = *st;
	start_client(e, NULL, NULL);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, -EKEYREJECTED);
	assert_string_equal(e->cli.why, "certificate verify failed: self-signed certificate");
	assert_int_not_equal(e->srv.open_err, 0);
}

static void test_tls_ca_signed_certificate_accepted_for_its_name(void **st)
{
	struct env *e = *st;
	use_server_cert(e, leaf_cert, leaf_key);
	use_client_ca(e, ca_cert);
	start_client(e, NULL, NULL); /* server name from the Host: "localhost" */
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, 0);
	assert_int_equal(e->srv.open_err, 0);
	assert_string_equal(e->cli.peer_fp, fp_leaf);
	assert_int_equal(e->cli.close_code, 1000);
}

static void test_tls_hostname_mismatch_refused_by_ca_verification(void **st)
{
	struct env *e = *st;
	use_server_cert(e, leaf_cert, leaf_key);
	use_client_ca(e, ca_cert);
	start_client(e, "otherhost", NULL);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, -EKEYREJECTED);
	assert_string_equal(e->cli.why, "certificate verify failed: hostname mismatch (the "
					"certificate is not for otherhost)");
	assert_int_not_equal(e->srv.open_err, 0);
}

static void test_tls_pin_mismatch_refused_even_if_ca_valid(void **st)
{
	struct env *e = *st;
	use_server_cert(e, leaf_cert, leaf_key);
	use_client_ca(e, ca_cert);
	start_client(e, "localhost", fp_a);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, -EKEYREJECTED);
	assert_non_null(strstr(e->cli.why, "certificate fingerprint mismatch: got "));
	assert_non_null(strstr(e->cli.why, fp_leaf));
}

static void test_tls_pin_match_accepted_though_untrusted_and_misnamed(void **st)
{
	struct env *e = *st;
	use_server_cert(e, leaf_cert, leaf_key); /* the CA is unknown to the system store */
	start_client(e, "otherhost", fp_leaf);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, 0);
	assert_int_equal(e->srv.open_err, 0);
	assert_string_equal(e->cli.peer_fp, fp_leaf);
}

static void test_tls_invalid_pin_reported_through_callback(void **st)
{
	struct env *e = *st;
	e->srv_only = 0;
	e->srv.open_err = -1; /* no server side: stop on the client */
	start_client(e, NULL, "12:34");
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.opened, 1);
	assert_int_equal(e->cli.open_err, -EINVAL);
	assert_non_null(strstr(e->cli.why, "invalid pin \"12:34\""));
}

static void test_tls_allocation_failures_close_the_socket(void **st)
{
	struct env *e = *st;
	e->srv.open_err = -1; /* stop on the client's answer */
	char host[64];
	snprintf(host, sizeof(host), "localhost:%u", ntohs(laddr.sin_port));
	/* the handshake object: NULL, socket closed, no callback */
	int fd = dial();
	fg_alloc_fail_after(1);
	struct fg_ws_hs *hs =
	    fg_ws_connect_tls_start(e->loop, fd, e->cli_tls, NULL, fp_a, host, "/agent", TOKEN,
				    &cbs, &e->opts, open_cb, &e->cli);
	fg_alloc_fail_after(0);
	assert_null(hs);
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	/* the TLS session: reported through the callback */
	fd = dial();
	fg_alloc_fail_after(2);
	e->cli.hs = fg_ws_connect_tls_start(e->loop, fd, e->cli_tls, NULL, fp_a, host, "/agent",
					    TOKEN, &cbs, &e->opts, open_cb, &e->cli);
	fg_alloc_fail_after(0);
	assert_non_null(e->cli.hs);
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.opened, 1);
	assert_int_equal(e->cli.open_err, -ENOMEM);
	assert_string_equal(e->cli.why, "out of memory");
}

static void test_tls_peer_closing_mid_message_ends_session(void **st)
{
	struct env *e = *st;
	e->mode = M_DIE_MID_MESSAGE;
	e->small_buf = 1;
	e->opts.max_msg = BIG;
	start_client(e, NULL, fp_a);
	fg_loop_run(e->loop);
	assert_int_equal(e->srv.open_err, 0);
	assert_int_equal(e->srv.recvd, 0); /* the partial message never arrives */
	assert_int_equal(e->srv.closed, 1);
	assert_int_equal(e->srv.close_code, 1006);
	assert_string_equal(e->srv.close_err, "connection closed without close frame");
}

/* A raw TCP client: connects, sends what, and (close_now) closes. */
static int raw_client(const char *what, int close_now)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&laddr, sizeof(laddr)), 0);
	if (what)
		assert_int_equal(write(fd, what, strlen(what)), (ssize_t)strlen(what));
	if (close_now) {
		close(fd);
		return -1;
	}
	return fd;
}

static void test_tls_plain_http_to_tls_port_refused_clearly(void **st)
{
	struct env *e = *st;
	e->srv_only = 1;
	int fd = raw_client("GET /agent HTTP/1.1\r\nHost: x\r\n\r\n", 0);
	fg_loop_run(e->loop);
	assert_int_equal(e->srv.open_err, -EPROTO);
	assert_non_null(strstr(e->srv.why, "TLS handshake failed: "));
	close(fd);
}

static void test_tls_peer_closing_during_handshake_reported(void **st)
{
	struct env *e = *st;
	e->srv_only = 1;
	raw_client("\x16\x03\x01", 1); /* the start of a record, then gone */
	fg_loop_run(e->loop);
	assert_int_equal(e->srv.open_err, -ECONNRESET);
	assert_string_equal(e->srv.why, "TLS handshake: connection closed by peer");
}

static void test_tls_handshake_timeout_covers_tls(void **st)
{
	struct env *e = *st;
	e->srv_only = 1;
	e->opts.handshake_timeout_ns = 200 * MS;
	int fd = raw_client(NULL, 0); /* connects, never says hello */
	int64_t t0 = fg_now_ns();
	fg_loop_run(e->loop);
	int64_t took = fg_now_ns() - t0;
	assert_int_equal(e->srv.open_err, -ETIMEDOUT);
	assert_string_equal(e->srv.why, "TLS handshake timed out");
	assert_true(took >= 190 * MS);
	close(fd);
}

static void test_tls_wrong_token_still_gets_401_over_tls(void **st)
{
	struct env *e = *st;
	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%u", ntohs(laddr.sin_port));
	e->cli.hs = fg_ws_connect_tls_start(e->loop, dial(), e->cli_tls, NULL, fp_a, host, "/agent",
					    "wrong", &cbs, &e->opts, open_cb, &e->cli);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, -EACCES);
	assert_int_equal(e->cli.open_status, 401);
	assert_string_equal(e->cli.why, "server answered HTTP 401");
	assert_int_equal(e->srv.open_err, -EACCES);
	assert_string_equal(e->srv.why, "refused with HTTP 401");
}

/* ---- bare TLS handshakes on the loop (for the tunnel transports) ----- */

static void tls_start_client(struct env *e, const char *pin)
{
	e->raw_tls = 1;
	e->cli_ths = fg_tls_connect_start(e->loop, dial(), e->cli_tls, "localhost", pin, 2000 * MS,
					  tls_open_cb, &e->cli);
	assert_non_null(e->cli_ths);
}

/* Moves n bytes from a to b, both non-blocking, retrying EAGAIN. */
static void tls_pass(struct fg_tls *a, struct fg_tls *b, const char *msg)
{
	size_t n = strlen(msg), got = 0;
	char buf[64];
	assert_int_equal(fg_tls_write(a, msg, n), (ssize_t)n);
	for (int i = 0; i < 2000 && got < n; i++) {
		ssize_t r = fg_tls_read(b, buf + got, sizeof(buf) - got);
		if (r == -EAGAIN) {
			usleep(1000);
			continue;
		}
		assert_true(r > 0);
		got += (size_t)r;
	}
	assert_int_equal(got, n);
	assert_memory_equal(buf, msg, n);
}

static void test_tls_loop_handshakes_give_working_sessions(void **st)
{
	struct env *e = *st;
	tls_start_client(e, fp_a);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, 0);
	assert_int_equal(e->srv.open_err, 0);
	assert_string_equal(e->cli.why, "");
	assert_string_equal(e->cli.version, "TLSv1.3");
	assert_string_equal(e->srv.version, "TLSv1.3");
	char fp[FG_TLS_FP_STRLEN];
	assert_int_equal(fg_tls_peer_fingerprint(e->cli_t, fp), 0);
	assert_string_equal(fp, fp_a);
	assert_int_equal(fg_tls_peer_fingerprint(e->srv_t, fp), -ENOENT);
	uint8_t x1[32], x2[32], x3[32];
	assert_int_equal(
	    fg_tls_export(e->cli_t, "EXPORTER-flowgate", (const uint8_t *)"n", 1, x1, sizeof(x1)),
	    0);
	assert_int_equal(
	    fg_tls_export(e->srv_t, "EXPORTER-flowgate", (const uint8_t *)"n", 1, x2, sizeof(x2)),
	    0);
	assert_int_equal(
	    fg_tls_export(e->srv_t, "EXPORTER-flowgate", (const uint8_t *)"m", 1, x3, sizeof(x3)),
	    0);
	assert_memory_equal(x1, x2, sizeof(x1));
	assert_memory_not_equal(x1, x3, sizeof(x1));
	tls_pass(e->cli_t, e->srv_t, "hello from the dialer");
	tls_pass(e->srv_t, e->cli_t, "hello from the listener");
	/* the listener's close_notify is the dialer's end of stream */
	fg_tls_free(e->srv_t);
	e->srv_t = NULL;
	char buf[8];
	ssize_t r = -EAGAIN;
	for (int i = 0; i < 2000 && r == -EAGAIN; i++) {
		r = fg_tls_read(e->cli_t, buf, sizeof(buf));
		if (r == -EAGAIN)
			usleep(1000);
	}
	assert_int_equal(r, 0);
}

static void test_tls_loop_handshake_pin_mismatch_reported(void **st)
{
	struct env *e = *st;
	tls_start_client(e, fp_b);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, -EKEYREJECTED);
	assert_null(e->cli_t);
	assert_non_null(strstr(e->cli.why, "certificate fingerprint mismatch: got "));
	assert_int_equal(e->srv.open_err, -EPROTO);
	assert_null(e->srv_t);
}

static void test_tls_loop_handshake_timeout_and_invalid_pin(void **st)
{
	struct env *e = *st;
	e->raw_tls = 1;
	e->srv_only = 1;
	e->opts.handshake_timeout_ns = 150 * MS;
	int fd = raw_client(NULL, 0);
	fg_loop_run(e->loop);
	assert_int_equal(e->srv.open_err, -ETIMEDOUT);
	assert_string_equal(e->srv.why, "TLS handshake timed out");
	close(fd);

	e->srv_only = 0;
	tls_start_client(e, "not a pin");
	e->srv.opened = 1; /* stop on the client's answer */
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, -EINVAL);
	assert_non_null(strstr(e->cli.why, "invalid pin \"not a pin\""));
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tls_self_signed_files_modes_names_and_lifetime),
	    cmocka_unit_test(test_tls_fingerprint_same_as_openssl_cli),
	    cmocka_unit_test(test_tls_pin_formats),
	    cmocka_unit_test(test_tls_self_signed_refuses_bad_names_and_writes_nothing),
	    cmocka_unit_test(test_tls_server_context_errors_name_the_file),
	    cmocka_unit_test(test_tls_client_accepts_tls12_server_unless_tls13_only),
	    cmocka_unit_test(test_tls_second_connection_resumes_with_its_own_secrets),
	    cmocka_unit_test(test_tls_session_bound_to_its_pin),
	    cmocka_unit_test(test_tls_ticket_not_accepted_after_its_lifetime),
	    T(test_tls_ws_messages_both_ways_intact_over_tls13_with_pin),
	    T(test_tls_ws_several_mib_messages_across_partial_writes),
	    T(test_tls_pin_mismatch_refused_with_both_fingerprints),
	    T(test_tls_self_signed_refused_by_ca_verification_without_pin),
	    T(test_tls_ca_signed_certificate_accepted_for_its_name),
	    T(test_tls_hostname_mismatch_refused_by_ca_verification),
	    T(test_tls_pin_mismatch_refused_even_if_ca_valid),
	    T(test_tls_pin_match_accepted_though_untrusted_and_misnamed),
	    T(test_tls_invalid_pin_reported_through_callback),
	    T(test_tls_allocation_failures_close_the_socket),
	    T(test_tls_peer_closing_mid_message_ends_session),
	    T(test_tls_plain_http_to_tls_port_refused_clearly),
	    T(test_tls_peer_closing_during_handshake_reported),
	    T(test_tls_handshake_timeout_covers_tls),
	    T(test_tls_wrong_token_still_gets_401_over_tls),
	    T(test_tls_loop_handshakes_give_working_sessions),
	    T(test_tls_loop_handshake_pin_mismatch_reported),
	    T(test_tls_loop_handshake_timeout_and_invalid_pin),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
