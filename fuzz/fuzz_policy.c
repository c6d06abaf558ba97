/* libFuzzer harness: fg_fw_doc_parse (the firewall policies document) and the
 * compiler behind it. A rejected document leaves nothing and one printable
 * error line; an accepted one compiles, and the script can only ever name our
 * table: every top-level line is about "inet flowgate", and braces balance so
 * nothing a rule carries can close our table and open another. An accepted
 * document is also an accepted firewall section (fg_fw_section_parse). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/strbuf.h"
#include "kernel/nft_compile.h"
#include "kernel/policy.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static void check_script(const char *s)
{
	int depth = 0;
	bool in_str = false, line_start = true, comment = false;
	for (const char *p = s; *p; p++) {
		if (line_start && depth == 0 && !in_str && *p != '#' && *p != '}' && *p != '\n')
			CHECK(strncmp(p, "table inet flowgate ", 20) == 0 ||
			      strncmp(p, "delete table inet flowgate\n", 27) == 0);
		line_start = *p == '\n';
		if (*p == '\n') {
			comment = false;
			CHECK(!in_str);
			continue;
		}
		if (comment)
			continue;
		if (*p == '"')
			in_str = !in_str;
		else if (in_str)
			continue;
		else if (*p == '#')
			comment = true;
		else if (*p == '{')
			depth++;
		else if (*p == '}')
			CHECK(--depth >= 0);
	}
	CHECK(depth == 0 && !in_str);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fg_fw_doc doc;
	char err[512];
	err[0] = '\0';
	int rc = fg_fw_doc_parse((const char *)data, size, &doc, err, sizeof(err));
	if (rc) {
		CHECK(rc == -EINVAL);
		CHECK(doc.policies == NULL && doc.sets == NULL);
		CHECK(err[0] != '\0');
		for (const char *p = err; *p; p++)
			CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
		return 0;
	}
	struct fg_strbuf out;
	fg_strbuf_init(&out);
	struct fg_nft_spec spec = {.table = "flowgate", .fw = &doc};
	CHECK(fg_nft_compile(&spec, &out, err, sizeof(err)) == 0);
	check_script(out.s);
	fg_strbuf_deinit(&out);
	fg_fw_doc_free(&doc);

	/* the same document as a desired state's firewall section (what the
	 * agent gets): accepted too, with and without a confirm_timeout */
	json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	CHECK(j);
	int64_t cs = -1;
	CHECK(fg_fw_section_parse(j, &doc, &cs, err, sizeof(err)) == 0 && cs == 0);
	fg_fw_doc_free(&doc);
	json_object_set_new(j, "confirm_timeout", json_integer((json_int_t)(size % 100000)));
	rc = fg_fw_section_parse(j, &doc, &cs, err, sizeof(err));
	CHECK(rc == 0 ? cs == (int64_t)(size % 100000)
		      : (size % 100000 == 0 || size % 100000 > 86400));
	if (rc == 0)
		fg_fw_doc_free(&doc);
	json_decref(j);
	return 0;
}
