/* fg_kplane: the agent's apply / commit-confirm state machine, against a fake
 * backend that keeps the "live" table as text. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "kernel/plane.h"

#define S 1000000000LL

struct fake {
	char *live; /* NULL = no table */
	int runs, checks, removes;
};

static int f_check(void *b, const char *script, char *err, size_t errlen)
{
	struct fake *f = b;
	f->checks++;
	if (strstr(script, "BAD")) {
		snprintf(err, errlen, "Error: syntax error near BAD");
		return -EINVAL;
	}
	return 0;
}

static int f_run(void *b, const char *script, char *err, size_t errlen)
{
	struct fake *f = b;
	f->runs++;
	fg_free(f->live);
	f->live = strcmp(script, "DELETE") == 0 ? NULL : fg_strdup(script);
	return 0;
}

static int f_snapshot(void *b, char **out, char *err, size_t errlen)
{
	struct fake *f = b;
	*out = fg_strdup(f->live ? f->live : "DELETE");
	return 0;
}

static int f_remove(void *b, char *err, size_t errlen)
{
	struct fake *f = b;
	f->removes++;
	fg_free(f->live);
	f->live = NULL;
	return 0;
}

static int f_counters(void *b, struct fg_nft_counter **out, size_t *n, char *err, size_t errlen)
{
	*out = NULL;
	*n = 0;
	return 0;
}

static const struct fg_kplane_backend fake_ops = {
    .check = f_check,
    .run = f_run,
    .snapshot = f_snapshot,
    .remove = f_remove,
    .counters = f_counters,
};

static struct fg_fw_doc doc_of(const char *json)
{
	struct fg_fw_doc d;
	char err[256];
	if (fg_fw_doc_parse(json, strlen(json), &d, err, sizeof(err)))
		fail_msg("%s", err);
	return d;
}

#define POL(rule) "{\"policies\": [{\"name\": \"p\", \"rules\": [" rule "]}]}"

static void test_same_state_twice_changes_nothing(void **state)
{
	struct fake f = {0};
	char err[256];
	struct fg_kplane *kp = fg_kplane_new("flowgate", &fake_ops, &f);
	struct fg_fw_doc a = doc_of(POL("{\"chain\": \"input\", \"action\": \"drop\"}"));
	assert_int_equal(fg_kplane_apply(kp, &a, NULL, 0, 0, 0, err, sizeof(err)),
			 FG_KPLANE_APPLIED);
	assert_int_equal(f.runs, 1);
	assert_non_null(strstr(f.live, "drop"));
	assert_int_equal(fg_kplane_apply(kp, &a, NULL, 0, 0, 0, err, sizeof(err)),
			 FG_KPLANE_UNCHANGED);
	assert_int_equal(f.runs, 1);
	assert_int_equal(f.checks, 1);
	fg_kplane_free(kp);
	assert_int_equal(f.removes, 1);
	assert_null(f.live);
	fg_fw_doc_free(&a);
}

static void test_rejected_script_changes_nothing_and_returns_nfts_error(void **state)
{
	struct fake f = {0};
	char err[256];
	struct fg_kplane *kp = fg_kplane_new("flowgate", &fake_ops, &f);
	struct fg_fw_doc a = doc_of(POL("{\"chain\": \"input\", \"action\": \"drop\"}"));
	struct fg_fw_doc bad = doc_of(POL("{\"chain\": \"input\", \"raw\": \"tcp dport 1 BAD\"}"));
	assert_int_equal(fg_kplane_apply(kp, &a, NULL, 0, 0, 0, err, sizeof(err)),
			 FG_KPLANE_APPLIED);
	char *before = fg_strdup(f.live);
	assert_int_equal(fg_kplane_apply(kp, &bad, NULL, 0, 0, 60 * S, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "syntax error near BAD"));
	assert_string_equal(f.live, before);
	assert_false(fg_kplane_pending(kp, NULL));
	fg_free(before);
	fg_kplane_free(kp);
	fg_fw_doc_free(&a);
	fg_fw_doc_free(&bad);
}

static void test_unconfirmed_change_rolls_back_at_the_deadline(void **state)
{
	struct fake f = {0};
	char err[256];
	int64_t dl = 0;
	struct fg_kplane *kp = fg_kplane_new("flowgate", &fake_ops, &f);
	struct fg_fw_doc a = doc_of(POL("{\"chain\": \"input\", \"action\": \"accept\"}"));
	struct fg_fw_doc b = doc_of(POL("{\"chain\": \"input\", \"action\": \"drop\"}"));
	struct fg_fw_doc c = doc_of(POL("{\"chain\": \"input\", \"action\": \"reject\"}"));
	assert_int_equal(fg_kplane_apply(kp, &a, NULL, 0, 0, 60 * S, err, sizeof(err)), 1);
	fg_kplane_confirm(kp);
	char *good = fg_strdup(f.live);
	/* b, then c while b is unconfirmed: the restore point stays at a */
	assert_int_equal(fg_kplane_apply(kp, &b, NULL, 0, 100 * S, 60 * S, err, sizeof(err)), 1);
	assert_true(fg_kplane_pending(kp, &dl));
	assert_int_equal(dl, 160 * S);
	assert_int_equal(fg_kplane_apply(kp, &c, NULL, 0, 110 * S, 60 * S, err, sizeof(err)), 1);
	assert_true(fg_kplane_pending(kp, &dl));
	assert_int_equal(dl, 170 * S);
	assert_non_null(strstr(f.live, "reject"));
	assert_int_equal(fg_kplane_tick(kp, 169 * S, err, sizeof(err)), 0);
	assert_int_equal(fg_kplane_tick(kp, 170 * S, err, sizeof(err)), 1);
	assert_string_equal(f.live, good);
	assert_false(fg_kplane_pending(kp, NULL));
	assert_int_equal(fg_kplane_tick(kp, 999 * S, err, sizeof(err)), 0);
	/* b again after the rollback is a change, applied */
	assert_int_equal(fg_kplane_apply(kp, &b, NULL, 0, 200 * S, 0, err, sizeof(err)), 1);
	assert_non_null(strstr(f.live, "drop"));
	fg_free(good);
	fg_kplane_free(kp);
	fg_fw_doc_free(&a);
	fg_fw_doc_free(&b);
	fg_fw_doc_free(&c);
}

static void test_first_unconfirmed_apply_rolls_back_to_no_table(void **state)
{
	struct fake f = {0};
	char err[256];
	struct fg_kplane *kp = fg_kplane_new("flowgate", &fake_ops, &f);
	struct fg_fw_doc a = doc_of(POL("{\"chain\": \"input\", \"action\": \"drop\"}"));
	assert_int_equal(fg_kplane_apply(kp, &a, NULL, 0, 0, 5 * S, err, sizeof(err)), 1);
	assert_non_null(f.live);
	assert_int_equal(fg_kplane_tick(kp, 5 * S, err, sizeof(err)), 1);
	assert_null(f.live);
	fg_kplane_free(kp);
	fg_fw_doc_free(&a);
}

static void test_confirmed_change_stays(void **state)
{
	struct fake f = {0};
	char err[256];
	struct fg_kplane *kp = fg_kplane_new("flowgate", &fake_ops, &f);
	struct fg_fw_doc a = doc_of(POL("{\"chain\": \"input\", \"action\": \"drop\"}"));
	assert_int_equal(fg_kplane_apply(kp, &a, NULL, 0, 0, 5 * S, err, sizeof(err)), 1);
	fg_kplane_confirm(kp);
	assert_int_equal(fg_kplane_tick(kp, 50 * S, err, sizeof(err)), 0);
	assert_non_null(strstr(f.live, "drop"));
	assert_string_equal(fg_kplane_current(kp), f.live);
	fg_kplane_free(kp);
	fg_fw_doc_free(&a);
}

static void test_bad_table_name_is_refused(void **state)
{
	struct fake f = {0};
	assert_null(fg_kplane_new("filter", &fake_ops, &f));
	assert_null(fg_kplane_new("flowgate x", &fake_ops, &f));
}

static void test_clear_deletes_the_table_with_commit_confirm(void **state)
{
	struct fake f = {0};
	char err[256];
	struct fg_kplane *kp = fg_kplane_new("flowgate", &fake_ops, &f);
	/* nothing ever applied: nothing to delete */
	assert_int_equal(fg_kplane_clear(kp, 0, 60 * S, err, sizeof(err)), FG_KPLANE_UNCHANGED);
	assert_int_equal(f.runs, 0);
	struct fg_fw_doc a = doc_of(POL("{\"chain\": \"input\", \"action\": \"drop\"}"));
	assert_int_equal(fg_kplane_apply(kp, &a, NULL, 0, 0, 0, err, sizeof(err)), 1);
	char *was = fg_strdup(f.live);
	assert_int_equal(fg_kplane_clear(kp, 10 * S, 60 * S, err, sizeof(err)), 1);
	assert_non_null(strstr(f.live, "delete table inet flowgate"));
	assert_int_equal(fg_kplane_clear(kp, 11 * S, 60 * S, err, sizeof(err)), 0);
	/* not confirmed: the table comes back as it was */
	assert_int_equal(fg_kplane_tick(kp, 71 * S, err, sizeof(err)), 1);
	assert_string_equal(f.live, was);
	fg_free(was);
	fg_kplane_free(kp);
	fg_fw_doc_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_same_state_twice_changes_nothing),
	    cmocka_unit_test(test_clear_deletes_the_table_with_commit_confirm),
	    cmocka_unit_test(test_rejected_script_changes_nothing_and_returns_nfts_error),
	    cmocka_unit_test(test_unconfirmed_change_rolls_back_at_the_deadline),
	    cmocka_unit_test(test_first_unconfirmed_apply_rolls_back_to_no_table),
	    cmocka_unit_test(test_confirmed_change_stays),
	    cmocka_unit_test(test_bad_table_name_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
