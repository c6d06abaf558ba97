/* libFuzzer harness: the control protocol decoders (net/rpc.h) on any
 * frame, as the hub and the agent see them. A decoded message must
 * re-encode and decode again; a refused one carries a printable one-line
 * error and a JSON-RPC error code (task and firewall_show included). Also
 * fg_pending_decode (pending.json). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/state.h"
#include "net/rpc.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static void check_err(int rc, const char *err)
{
	CHECK(rc <= -32000 && rc >= -32768);
	CHECK(err[0] != '\0');
	for (const char *p = err; *p; p++)
		CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
}

static void walk_list(const json_t *a, bool status)
{
	char err[FG_RPC_ERR_MAX];
	size_t i;
	json_t *v;
	if (!a)
		return;
	json_array_foreach(a, i, v)
	{
		/* validated by the message decoder: cannot fail now */
		if (status) {
			struct fg_status_rec s;
			CHECK(fg_status_decode(v, "s", &s, err, sizeof(err)) == 0);
		} else {
			struct fg_counter_rec c;
			CHECK(fg_counter_decode(v, "c", &c, err, sizeof(err)) == 0);
			CHECK(c.id > 0);
			/* link fields: absent (-1) or within the documented bounds */
			CHECK(c.links_up >= -1 && c.links_up <= FG_RPC_LINKS_UP_MAX);
			CHECK(c.rtt_prev_us >= -1 && c.rtt_prev_us <= FG_RPC_RTT_MAX_US);
			CHECK(c.rtt_next_us >= -1 && c.rtt_next_us <= FG_RPC_RTT_MAX_US);
			/* the warning: bounded, one line, no control bytes */
			CHECK(c.warn && strlen(c.warn) <= FG_RPC_WARN_MAX);
			for (const char *p = c.warn; *p; p++)
				CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fg_rpc_msg m;
	char err[FG_RPC_ERR_MAX];
	err[0] = '\0';
	int rc = fg_rpc_decode((const char *)data, size, &m, err, sizeof(err));
	if (rc) {
		check_err(rc, err);
		char *e = fg_rpc_error(m.id, rc, err); /* what the peer gets */
		CHECK(e);
		free(e);
		fg_rpc_msg_deinit(&m);
	} else {
		const json_t *p = m.kind == FG_RPC_RESULT ? m.result : m.params;
		struct fg_hello h;
		struct fg_hello_result hr;
		struct fg_report r;
		struct fg_apply a;
		struct fg_apply_result ar;
		if ((rc = fg_hello_decode(p, &h, err, sizeof(err))))
			check_err(rc, err);
		else
			CHECK(fg_rpc_valid_boot_id(h.boot_id));
		if ((rc = fg_hello_result_decode(p, &hr, err, sizeof(err))))
			check_err(rc, err);
		if ((rc = fg_report_decode(p, &r, err, sizeof(err)))) {
			check_err(rc, err);
		} else {
			walk_list(r.status, true);
			walk_list(r.counters, false);
		}
		if ((rc = fg_apply_decode(p, &a, err, sizeof(err))))
			check_err(rc, err);
		else
			CHECK(a.rev >= 1 && json_is_object(a.state));
		if ((rc = fg_apply_result_decode(p, &ar, err, sizeof(err))))
			check_err(rc, err);
		else
			walk_list(ar.status, true);
		struct fg_task tk;
		struct fg_firewall_show fs;
		if ((rc = fg_task_decode(p, &tk, err, sizeof(err))))
			check_err(rc, err);
		else
			CHECK(tk.kind && tk.script);
		if ((rc = fg_firewall_show_decode(p, &fs, err, sizeof(err)))) {
			check_err(rc, err);
		} else {
			size_t i;
			json_t *v;
			CHECK(fs.live && fs.preview && fs.preview_error);
			json_array_foreach(fs.counters, i, v)
			{
				struct fg_nft_counter_rec c;
				CHECK(fg_nft_counter_decode(v, "c", &c, err, sizeof(err)) == 0);
			}
		}
		/* re-encode what we understood and read it back */
		char *t = NULL;
		if (m.kind == FG_RPC_REQUEST)
			t = fg_rpc_request(m.method, json_incref(m.params), m.id_int);
		else if (m.kind == FG_RPC_RESULT)
			t = fg_rpc_result(m.id, json_incref(m.result));
		if (t && m.kind == FG_RPC_REQUEST && m.params && json_is_object(m.params)) {
			struct fg_rpc_msg m2;
			CHECK(fg_rpc_decode(t, strlen(t), &m2, err, sizeof(err)) == 0);
			CHECK(strcmp(m2.method, m.method) == 0);
			fg_rpc_msg_deinit(&m2);
		}
		free(t);
		fg_rpc_msg_deinit(&m);
	}

	struct fg_pending pd;
	if (fg_pending_decode((const char *)data, size, &pd, err, sizeof(err)) == 0) {
		char *t = fg_pending_encode(&pd);
		CHECK(t);
		struct fg_pending pd2;
		CHECK(fg_pending_decode(t, strlen(t), &pd2, err, sizeof(err)) == 0);
		CHECK(pd2.n == pd.n);
		for (size_t i = 0; i < pd.n; i++) {
			CHECK(pd2.v[i].n == pd.v[i].n);
			for (size_t j = 0; j < pd.v[i].n; j++)
				CHECK(pd2.v[i].v[j].bytes_up == pd.v[i].v[j].bytes_up &&
				      pd2.v[i].v[j].conns == pd.v[i].v[j].conns);
		}
		fg_pending_free(&pd2);
		free(t);
		fg_pending_free(&pd);
	} else {
		CHECK(pd.n == 0 && pd.v == NULL);
	}
	return 0;
}
