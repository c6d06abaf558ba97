/* libFuzzer harness: the server's tunnel model (server/tunnel_model.h) on
 * any JSON. A refused tunnel names a field and says why in one printable
 * line. An accepted one must compile, for every node of it, into a role
 * the tunnel engine's own parser takes (tunnel/config.h): what the API
 * accepts, every agent can run. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/tunnel_model.h"
#include "tunnel/config.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static void check_line(const char *s)
{
	for (const char *p = s; *p; p++)
		CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return 0;
	struct fg_tm m;
	char field[64], err[512];
	int rc = fg_tm_parse(j, &m, field, sizeof(field), err, sizeof(err));
	if (rc) {
		json_decref(j);
		CHECK(rc == -EINVAL || rc == -ENOMEM);
		CHECK(err[0] != '\0');
		check_line(err);
		check_line(field);
		return 0;
	}
	if (!m.link_port && json_is_object(j)) {
		/* the API allocates one and stores it: check the tunnel it stores */
		fg_tm_deinit(&m);
		json_object_set_new(j, "link_port", json_integer(FG_TM_PORT_DEFAULT));
		rc = fg_tm_parse(j, &m, field, sizeof(field), err, sizeof(err));
		if (rc) {
			json_decref(j);
			return 0; /* refused with the port: the API looks for another */
		}
	}
	json_decref(j);
	static const char fp[] = "AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:"
				 "AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB";
	struct fg_tm_node nodes[1 + FG_TM_MAX_HOPS + FG_TM_MAX_EXITS];
	size_t nn = 0;
	int64_t entry = m.entry_node ? m.entry_node : -1;
	nodes[nn++] = (struct fg_tm_node){entry, "entry", "192.0.2.1", fp};
	for (size_t i = 0; i < m.nhops; i++)
		nodes[nn++] = (struct fg_tm_node){m.hops[i], "hop", "2001:db8::2", fp};
	for (size_t i = 0; i < m.nexits; i++)
		nodes[nn++] = (struct fg_tm_node){m.exits[i], "exit", "exit.example", fp};
	uint8_t psk[FG_TM_PSK_LEN] = {7}, prev[FG_TM_PSK_LEN] = {8};
	struct fg_tm_ctx ctx = {.tunnel_id = 42,
				.name = "t",
				.nodes = nodes,
				.nnodes = nn,
				.entry_members = &entry,
				.nentry = 1,
				.psk = psk,
				.psk_len = sizeof(psk),
				.key_id = 43};
	/* every other input in a key rotation's grace period: "keys" */
	if (size && (data[size - 1] & 1)) {
		ctx.prev_psk = prev;
		ctx.prev_psk_len = sizeof(prev);
		ctx.prev_key_id = 42;
	}
	for (size_t i = 0; i < nn; i++) {
		json_t *o = NULL;
		char why[512];
		rc = fg_tm_compile(&m, &ctx, nodes[i].id, &o, why, sizeof(why));
		if (rc == -ENOMEM)
			break;
		CHECK(rc == 0 && o);
		json_t *arr = json_pack("[o]", o);
		struct fg_tunnel_set set = {0};
		rc = fg_tunnel_parse_json(arr, &set, err, sizeof(err));
		json_decref(arr);
		fg_tunnel_set_free(&set);
		if (rc) /* say what the engine refused before failing */
			fprintf(stderr, "engine refuses the %s role: %s\n", nodes[i].name, err);
		CHECK(rc == 0);
	}
	fg_tm_deinit(&m);
	return 0;
}
