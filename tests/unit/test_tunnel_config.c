/* fg_tunnel_parse_doc: the node-local tunnel schema of doc/tunnel.md, and
 * the strict validation (every rejection names the JSON path). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/clock.h"
#include "fwd/config.h"
#include "tunnel/config.h"

static char err[FG_ERR_MAX];

#define PSK "\"psk\":{\"id\":7,\"key\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"}"
#define FP                                                                                         \
	"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:"  \
	"45:67:89"
#define FP_L "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"

static int parse(const char *text, struct fg_tunnel_set *set)
{
	err[0] = '\0';
	return fg_tunnel_parse_doc(text, strlen(text), set, err, sizeof(err));
}

static void expect_reject(const char *text, ...)
{
	struct fg_tunnel_set set;
	int rc = parse(text, &set);
	if (rc != -EINVAL) {
		if (rc == 0)
			fg_tunnel_set_free(&set);
		fail_msg("accepted (rc %d): %s", rc, text);
	}
	assert_null(set.v);
	assert_int_equal(set.n, 0);
	assert_null(strchr(err, '\n'));
	va_list ap;
	va_start(ap, text);
	for (const char *needle; (needle = va_arg(ap, const char *));)
		if (!strstr(err, needle))
			fail_msg("error \"%s\" does not contain \"%s\" (input %s)", err, needle,
				 text);
	va_end(ap);
}

static const char *ENTRY =
    "{\"tls\":{\"cert\":\"/x/node.crt\",\"key\":\"/x/node.key\"},\"forwards\":[],"
    "\"tunnels\":[{\"name\":\"db\",\"id\":\"17\",\"role\":\"entry\","
    "\"listen\":\"0.0.0.0:5432\",\"max_conns\":500,\"rate_down\":\"50mbit\","
    "\"next\":{\"transport\":\"tls\",\"mux\":true," PSK ","
    "\"peers\":[{\"address\":\"203.0.113.7:7000\",\"fingerprint\":\"" FP "\",\"node\":\"b\"},"
    "{\"address\":\"b.example:7000\",\"fingerprint\":\"" FP_L "\"}],"
    "\"balance\":\"round-robin\",\"keepalive\":\"2s\"}}]}";

static void test_tunnel_entry_with_dialed_peers_parses(void **state)
{
	(void)state;
	struct fg_tunnel_set s;
	assert_int_equal(parse(ENTRY, &s), 0);
	assert_int_equal(s.n, 1);
	const struct fg_tunnel_cfg *c = &s.v[0];
	assert_string_equal(c->name, "db");
	assert_string_equal(c->id, "17");
	assert_int_equal(c->tunnel_num, 17);
	assert_int_equal(c->role, FG_TUNNEL_ENTRY);
	assert_int_equal(c->listen.port_lo, 5432);
	assert_int_equal(c->max_conns, 500);
	assert_int_equal(c->rate_down, 6250000);
	assert_false(c->prev.present);
	assert_true(c->next.present);
	assert_int_equal(c->next.transport, FG_TT_TLS);
	assert_true(c->next.mux);
	assert_int_equal(c->next.psk_id, 7);
	assert_int_equal(c->next.psk_len, 32);
	assert_int_equal(c->next.psk[31], 31);
	assert_false(c->next.is_listen);
	assert_int_equal(c->next.npeers, 2);
	assert_string_equal(c->next.peers[0].node, "b");
	assert_string_equal(c->next.peers[0].fingerprint, FP);
	/* any accepted pin form is kept canonical */
	assert_string_equal(c->next.peers[1].fingerprint, FP);
	assert_string_equal(c->next.peers[1].address.host, "b.example");
	assert_int_equal(c->next.balance, FG_TBAL_ROUND_ROBIN);
	assert_int_equal(c->next.keepalive_ns, 2 * FG_NS_PER_SEC);
	assert_string_equal(c->next.ws_path, "/");
	assert_string_equal(s.tls_cert, "/x/node.crt");
	assert_string_equal(s.tls_key, "/x/node.key");

	struct fg_tunnel_cfg copy;
	assert_int_equal(fg_tunnel_cfg_copy(&copy, c), 0);
	assert_true(fg_tunnel_cfg_equal(&copy, c));
	copy.next.psk[0] ^= 1;
	assert_false(fg_tunnel_cfg_equal(&copy, c));
	copy.next.psk[0] ^= 1;
	strcpy(copy.next.peers[1].fingerprint, "00");
	assert_false(fg_tunnel_cfg_equal(&copy, c));
	fg_tunnel_cfg_deinit(&copy);
	fg_tunnel_set_free(&s);
}

static void test_tunnel_reverse_exit_relay_parse(void **state)
{
	(void)state;
	const char *doc =
	    "{\"tunnels\":["
	    "{\"name\":\"r\",\"id\":\"abc\",\"role\":\"exit\",\"targets\":[\"10.0.0.5:5432\","
	    "\"db:6000-6009\"],\"target_balance\":\"round-robin\",\"idle_timeout\":60,"
	    "\"prev\":{\"transport\":\"aead\",\"mux\":false,\"pool\":8," PSK ","
	    "\"peers\":[{\"address\":\"198.51.100.1:7000\"}]}},"
	    "{\"name\":\"h\",\"role\":\"relay\","
	    "\"prev\":{\"transport\":\"ws\",\"ws\":{\"path\":\"/t\",\"host\":\"cdn.example\"}," PSK
	    ",\"listen\":\"0.0.0.0:7001\"},"
	    "\"next\":{\"transport\":\"tcp\"," PSK ",\"listen\":\"[::]:7002\"}}]}";
	struct fg_tunnel_set s;
	assert_int_equal(parse(doc, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.v[0].role, FG_TUNNEL_EXIT);
	assert_int_equal(s.v[0].tunnel_num, 0); /* not a number */
	assert_int_equal(s.v[0].ntargets, 2);
	assert_int_equal(s.v[0].targets[1].port_hi, 6009);
	assert_int_equal(s.v[0].prev.transport, FG_TT_AEAD);
	assert_false(s.v[0].prev.mux);
	assert_int_equal(s.v[0].prev.pool, 8);
	assert_int_equal(s.v[0].idle_timeout_ns, 60 * FG_NS_PER_SEC);
	assert_int_equal(s.v[1].role, FG_TUNNEL_RELAY);
	assert_true(s.v[1].prev.is_listen);
	assert_string_equal(s.v[1].prev.ws_path, "/t");
	assert_string_equal(s.v[1].prev.ws_host, "cdn.example");
	assert_true(s.v[1].next.is_listen);
	assert_string_equal(s.tls_cert, "");
	fg_tunnel_set_free(&s);

	/* a document without tunnels is an empty set */
	assert_int_equal(parse("{\"forwards\":[]}", &s), 0);
	assert_int_equal(s.n, 0);
	fg_tunnel_set_free(&s);
}

#define T(body)	  "{\"tunnels\":[{\"name\":\"t\"," body "}]}"
#define EXIT_PREV "\"prev\":{\"transport\":\"tcp\"," PSK ",\"listen\":\"0.0.0.0:7000\"}"

static void test_tunnel_rejections_name_the_path(void **state)
{
	(void)state;
	expect_reject(T("\"role\":\"middle\""), "tunnels[0].role", "middle", NULL);
	expect_reject(T("\"listen\":\"0.0.0.0:1\""), "tunnels[0].role: missing", NULL);
	expect_reject(T("\"role\":\"exit\",\"targets\":[\"1.2.3.4:5\"]"),
		      "tunnels[0].prev: missing", NULL);
	expect_reject(T("\"role\":\"exit\"," EXIT_PREV), "tunnels[0].targets: missing", NULL);
	expect_reject(T("\"role\":\"exit\"," EXIT_PREV ",\"targets\":[\"0.0.0.0:5\"]"),
		      "tunnels[0].targets[0]", "needs a host", NULL);
	expect_reject(T("\"role\":\"exit\"," EXIT_PREV ",\"targets\":[\"1.2.3.4:5\"],"
			"\"listen\":\"0.0.0.0:80\""),
		      "tunnels[0].listen", "only an entry", NULL);
	expect_reject(T("\"role\":\"exit\"," EXIT_PREV ",\"targets\":[\"1.2.3.4:5\"],"
			"\"max_conns\":3"),
		      "tunnels[0].max_conns", "at the entry", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\""), "tunnels[0].next: missing",
		      NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\",\"proto\":\"udp\","
			"\"next\":{\"transport\":\"tcp\"," PSK ",\"listen\":\"0.0.0.0:81\"}"),
		      "tunnels[0].proto", "tcp only", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"quic\"," PSK ",\"listen\":\"0.0.0.0:81\"}"),
		      "tunnels[0].next.transport", "quic", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"tcp\",\"listen\":\"0.0.0.0:81\"}"),
		      "tunnels[0].next.psk: missing", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"tcp\",\"psk\":{\"id\":1,\"key\":\"c2VjcmV0\"},"
			"\"listen\":\"0.0.0.0:81\"}"),
		      "tunnels[0].next.psk.key", "16-64 bytes", NULL);
	expect_reject(
	    T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
	      "\"next\":{\"transport\":\"tcp\",\"psk\":{\"key\":\"AAECAwQFBgcICQoLDA0ODw==\"},"
	      "\"listen\":\"0.0.0.0:81\"}"),
	    "tunnels[0].next.psk.id: missing", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"tcp\"," PSK "}"),
		      "tunnels[0].next", "exactly one of", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"tls\"," PSK
			",\"peers\":[{\"address\":\"1.2.3.4:5\"}]}"),
		      "tunnels[0].next.peers[0].fingerprint: required", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"tcp\"," PSK
			",\"peers\":[{\"address\":\"1.2.3.4:5\",\"fingerprint\":\"" FP "\"}]}"),
		      "tunnels[0].next.peers[0].fingerprint: only with", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"tls\"," PSK
			",\"peers\":[{\"address\":\"1.2.3.4:5\",\"fingerprint\":\"12:34\"}]}"),
		      "tunnels[0].next.peers[0].fingerprint", "SHA-256", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"tcp\"," PSK ",\"ws\":{\"path\":\"/x\"},"
			"\"listen\":\"0.0.0.0:81\"}"),
		      "tunnels[0].next.ws", "only with", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"ws\"," PSK ",\"ws\":{\"path\":\"x y\"},"
			"\"listen\":\"0.0.0.0:81\"}"),
		      "tunnels[0].next.ws.path", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"tcp\"," PSK ",\"pool\":3,"
			"\"listen\":\"0.0.0.0:81\"}"),
		      "tunnels[0].next.pool", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"tcp\"," PSK ",\"listen\":\"0.0.0.0:80\"}"),
		      "tunnels[0].next.listen", "also its listen", NULL);
	expect_reject(T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","
			"\"next\":{\"transport\":\"tcp\"," PSK ",\"listen\":\"0.0.0.0:81\","
			"\"bogus\":1}"),
		      "tunnels[0].next.bogus: unknown field", NULL);
	expect_reject("{\"tunnels\":[{\"name\":\"a\",\"role\":\"exit\"," EXIT_PREV
		      ",\"targets\":[\"1.2.3.4:5\"]},{\"name\":\"a\",\"role\":\"exit\","
		      "\"prev\":{\"transport\":\"tcp\"," PSK ",\"listen\":\"0.0.0.0:7001\"},"
		      "\"targets\":[\"1.2.3.4:5\"]}]}",
		      "tunnels[1].name", "already used", NULL);
	expect_reject("{\"tunnels\":[{\"name\":\"a\",\"role\":\"exit\"," EXIT_PREV
		      ",\"targets\":[\"1.2.3.4:5\"]},{\"name\":\"b\",\"role\":\"exit\","
		      "\"prev\":{\"transport\":\"tcp\"," PSK ",\"listen\":\"127.0.0.1:7000\"},"
		      "\"targets\":[\"1.2.3.4:5\"]}]}",
		      "tunnels[1].prev.listen", "overlaps tunnels[0].prev.listen", NULL);
	expect_reject("{\"tunnels\":[],\"tls\":{\"cert\":\"/a\"}}", "tls.key: missing", NULL);
	expect_reject("{\"tunnels\":[],\"extra\":1}", "extra: unknown field", NULL);
	expect_reject("{\"tunnels\":{}}", "tunnels:", "must be an array", NULL);
}

/* Key rotation: "keys" lists every key a link accepts, one marked to dial
 * with; the old single "psk" still parses as one key. */
#define K16 "AAECAwQFBgcICQoLDA0ODw=="			   /* 16 bytes 0..15 */
#define K32 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" /* 32 bytes 0..31 */
#define ENTRY_KEYS(keys)                                                                           \
	T("\"role\":\"entry\",\"listen\":\"0.0.0.0:80\","                                          \
	  "\"next\":{\"transport\":\"aead\"," keys ",\"listen\":\"0.0.0.0:81\"}")

static void test_tunnel_keys_list_and_single_psk(void **state)
{
	(void)state;
	struct fg_tunnel_set s, s2;
	assert_int_equal(parse(ENTRY_KEYS("\"keys\":[{\"id\":8,\"key\":\"" K16 "\",\"dial\":true},"
					  "{\"id\":7,\"key\":\"" K32 "\",\"dial\":false}]"),
			       &s),
			 0);
	const struct fg_tunnel_link_cfg *l = &s.v[0].next;
	assert_int_equal(l->nkeys, 2);
	assert_int_equal(l->psk_id, 8); /* the dial key */
	assert_int_equal(l->psk_len, 16);
	assert_int_equal(l->psk[15], 15);
	assert_non_null(fg_tunnel_link_key(l, 7));
	assert_int_equal(fg_tunnel_link_key(l, 7)->len, 32);
	assert_int_equal(fg_tunnel_link_key(l, 8)->key[1], 1);
	assert_null(fg_tunnel_link_key(l, 9));

	/* the single-key form: one key, dialed and accepted */
	assert_int_equal(parse(ENTRY_KEYS(PSK), &s2), 0);
	assert_int_equal(s2.v[0].next.nkeys, 1);
	assert_int_equal(s2.v[0].next.psk_id, 7);
	assert_non_null(fg_tunnel_link_key(&s2.v[0].next, 7));
	assert_null(fg_tunnel_link_key(&s2.v[0].next, 8));
	/* only the keys differ: equal but for keys (the engine rotates in place) */
	assert_false(fg_tunnel_cfg_equal(&s.v[0], &s2.v[0]));
	assert_true(fg_tunnel_cfg_equal_but_keys(&s.v[0], &s2.v[0]));
	fg_tunnel_set_free(&s2);
	assert_int_equal(
	    parse(ENTRY_KEYS("\"keys\":[{\"id\":7,\"key\":\"" K32 "\",\"dial\":true}]"), &s2), 0);
	/* "psk" and a one-element "keys" with the same key: the same config */
	struct fg_tunnel_set s3;
	assert_int_equal(parse(ENTRY_KEYS(PSK), &s3), 0);
	assert_true(fg_tunnel_cfg_equal(&s2.v[0], &s3.v[0]));
	fg_tunnel_set_free(&s3);
	fg_tunnel_set_free(&s2);
	fg_tunnel_set_free(&s);
}

static void test_tunnel_keys_rejections_name_the_field(void **state)
{
	(void)state;
	expect_reject(ENTRY_KEYS("\"keys\":[{\"id\":1,\"key\":\"" K16 "\"}]"),
		      "tunnels[0].next.keys", "exactly one key must have \"dial\": true", NULL);
	expect_reject(ENTRY_KEYS("\"keys\":[{\"id\":1,\"key\":\"" K16 "\",\"dial\":true},"
				 "{\"id\":2,\"key\":\"" K16 "\",\"dial\":true}]"),
		      "tunnels[0].next.keys", "(2 have)", NULL);
	expect_reject(ENTRY_KEYS("\"keys\":[{\"id\":1,\"key\":\"" K16 "\",\"dial\":true},"
				 "{\"id\":1,\"key\":\"" K32 "\"}]"),
		      "tunnels[0].next.keys[1].id", "also the id of", NULL);
	expect_reject(ENTRY_KEYS("\"keys\":[]"), "tunnels[0].next.keys", "1-4 keys", NULL);
	expect_reject(ENTRY_KEYS("\"keys\":[{\"id\":1,\"key\":\"" K16 "\",\"dial\":true},"
				 "{\"id\":2,\"key\":\"" K16 "\"},{\"id\":3,\"key\":\"" K16 "\"},"
				 "{\"id\":4,\"key\":\"" K16 "\"},{\"id\":5,\"key\":\"" K16 "\"}]"),
		      "tunnels[0].next.keys", "1-4 keys", NULL);
	expect_reject(ENTRY_KEYS("\"keys\":[{\"id\":1,\"key\":\"c2VjcmV0\",\"dial\":true}]"),
		      "tunnels[0].next.keys[0].key", "16-64 bytes", NULL);
	/* the key is never echoed in full */
	assert_null(strstr(err, "c2VjcmV0"));
	expect_reject(ENTRY_KEYS("\"keys\":[{\"key\":\"" K16 "\",\"dial\":true}]"),
		      "tunnels[0].next.keys[0].id: missing", NULL);
	expect_reject(ENTRY_KEYS("\"keys\":[{\"id\":1,\"key\":\"" K16 "\",\"dial\":1}]"),
		      "tunnels[0].next.keys[0].dial", NULL);
	expect_reject(ENTRY_KEYS("\"keys\":[{\"id\":1,\"key\":\"" K16 "\",\"dial\":true,"
				 "\"x\":1}]"),
		      "tunnels[0].next.keys[0].x: unknown field", NULL);
	expect_reject(ENTRY_KEYS("\"keys\":{}"), "tunnels[0].next.keys", "array", NULL);
	expect_reject(ENTRY_KEYS(PSK ",\"keys\":[{\"id\":1,\"key\":\"" K16 "\",\"dial\":true}]"),
		      "tunnels[0].next.keys", "not both", NULL);
	/* "dial" belongs to "keys" only */
	expect_reject(ENTRY_KEYS("\"psk\":{\"id\":1,\"key\":\"" K16 "\",\"dial\":true}"),
		      "tunnels[0].next.psk.dial: unknown field", NULL);
}

static void test_tunnel_checked_against_forwards_and_cert(void **state)
{
	(void)state;
	const char *doc = "{\"forwards\":[{\"name\":\"f\",\"listen\":\"0.0.0.0:7000\","
			  "\"targets\":[\"1.2.3.4:5\"]}],"
			  "\"tunnels\":[{\"name\":\"t\",\"role\":\"exit\","
			  "\"prev\":{\"transport\":\"tls\"," PSK ",\"listen\":\"0.0.0.0:7000\"},"
			  "\"targets\":[\"1.2.3.4:5\"]}]}";
	struct fg_tunnel_set s;
	struct fg_forward_set f;
	assert_int_equal(parse(doc, &s), 0);
	assert_int_equal(fg_config_parse(doc, strlen(doc), &f, err, sizeof(err)), 0);
	assert_int_equal(fg_tunnel_set_check_forwards(&s, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "tunnels[0]: a tls/wss link listens here"));
	strcpy(s.tls_cert, "/c");
	strcpy(s.tls_key, "/k");
	assert_int_equal(fg_tunnel_set_check_forwards(&s, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "tunnels[0].prev.listen: port 7000 overlaps forward \"f\""));
	assert_int_equal(fg_tunnel_set_check_forwards(&s, NULL, err, sizeof(err)), 0);
	fg_forward_set_free(&f);
	fg_tunnel_set_free(&s);

	/* a file of tunnels only is a valid forwards document too */
	const char *only = "{\"tunnels\":[]}";
	assert_int_equal(fg_config_parse(only, strlen(only), &f, err, sizeof(err)), 0);
	assert_int_equal(f.n, 0);
	fg_forward_set_free(&f);
}

static void test_tunnel_open_header(void **state)
{
	(void)state;
	uint8_t b[4];
	uint16_t off = 0;
	fg_tunnel_open_encode(513, b);
	assert_int_equal(fg_tunnel_open_decode(b, 3, &off), -EAGAIN);
	assert_int_equal(fg_tunnel_open_decode(b, 4, &off), 4);
	assert_int_equal(off, 513);
	b[1] = 1;
	assert_int_equal(fg_tunnel_open_decode(b, 4, &off), -EINVAL);
	b[1] = 0;
	b[0] = 2;
	assert_int_equal(fg_tunnel_open_decode(b, 4, &off), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tunnel_entry_with_dialed_peers_parses),
	    cmocka_unit_test(test_tunnel_reverse_exit_relay_parse),
	    cmocka_unit_test(test_tunnel_rejections_name_the_path),
	    cmocka_unit_test(test_tunnel_keys_list_and_single_psk),
	    cmocka_unit_test(test_tunnel_keys_rejections_name_the_field),
	    cmocka_unit_test(test_tunnel_checked_against_forwards_and_cert),
	    cmocka_unit_test(test_tunnel_open_header),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
