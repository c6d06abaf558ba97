/* server/auth: argon2id passwords, token format and hashing, and the first
 * admin user (generated once into a 0600 file, or taken from the env). */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/log.h"
#include "server/auth.h"
#include "server/store.h"

struct fixture {
	char dir[64];
	char pwfile[128];
	struct fg_store *st;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char db[128];
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/fg_test_auth.XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(db, sizeof(db), "%s/flowgate.db", fx->dir);
	snprintf(fx->pwfile, sizeof(fx->pwfile), "%s/%s", fx->dir, FG_AUTH_ADMIN_FILE);
	if (fg_store_sqlite_open(db, &fx->st) != 0)
		return -1;
	unsetenv(FG_AUTH_ADMIN_ENV);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char cmd[128];
	fg_store_close(fx->st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	if (system(cmd) != 0)
		return -1;
	free(fx);
	unsetenv(FG_AUTH_ADMIN_ENV);
	return 0;
}

static void test_auth_password_verifies_only_itself(void **state)
{
	char h1[FG_STORE_PWHASH_MAX + 1], h2[FG_STORE_PWHASH_MAX + 1];

	assert_int_equal(fg_auth_password_hash("correct horse", h1), 0);
	assert_int_equal(fg_auth_password_hash("correct horse", h2), 0);
	assert_int_equal(strncmp(h1, "$argon2id$", 10), 0);
	assert_string_not_equal(h1, h2); /* salted */
	assert_true(fg_auth_password_verify(h1, "correct horse"));
	assert_true(fg_auth_password_verify(h2, "correct horse"));
	assert_false(fg_auth_password_verify(h1, "correct horsE"));
	assert_false(fg_auth_password_verify(h1, ""));
	assert_false(fg_auth_password_verify("not a hash", "correct horse"));
}

static void test_auth_tokens_are_prefixed_random_base64url(void **state)
{
	char a[FG_AUTH_TOKEN_SIZE], b[FG_AUTH_TOKEN_SIZE];
	char ha[FG_STORE_HASH_LEN + 1], hb[FG_STORE_HASH_LEN + 1];

	fg_auth_token_new(FG_TOKEN_PREFIX_SESSION, a);
	fg_auth_token_new(FG_TOKEN_PREFIX_SESSION, b);
	assert_int_equal(strlen(a), FG_AUTH_TOKEN_SIZE - 1);
	assert_int_equal(strncmp(a, "fgs_", 4), 0);
	for (const char *p = a + 4; *p; p++)
		assert_true(isalnum((unsigned char)*p) || *p == '-' || *p == '_');
	assert_string_not_equal(a, b);

	fg_auth_token_hash(a, ha);
	fg_auth_token_hash(b, hb);
	assert_int_equal(strlen(ha), FG_STORE_HASH_LEN);
	assert_int_equal(strspn(ha, "0123456789abcdef"), FG_STORE_HASH_LEN);
	assert_string_not_equal(ha, hb);
	fg_auth_token_hash("abc", ha); /* the FIPS 180-2 test vector */
	assert_string_equal(ha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

	assert_true(fg_auth_equal(a, a));
	assert_false(fg_auth_equal(a, b));
	assert_false(fg_auth_equal("abc", "abcd"));
}

static void test_auth_bootstrap_generates_a_0600_file_once(void **state)
{
	struct fixture *fx = *state;
	char pw[FG_AUTH_GENERATED_LEN + 1], line[64] = "";
	struct fg_user u;
	struct stat sb;

	assert_int_equal(fg_auth_bootstrap_admin(fx->st, fx->dir, pw, sizeof(pw)), 1);
	assert_int_equal(strlen(pw), FG_AUTH_GENERATED_LEN);
	assert_int_equal(stat(fx->pwfile, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	FILE *f = fopen(fx->pwfile, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	assert_string_equal(line, pw);

	assert_int_equal(fx->st->ops->user_get_by_name(fx->st, FG_AUTH_ADMIN_NAME, &u), 0);
	assert_int_equal(u.role, FG_ROLE_ADMIN);
	assert_true(fg_auth_password_verify(u.pwhash, pw));

	/* Second start: nothing is generated or written again. */
	assert_int_equal(unlink(fx->pwfile), 0);
	memset(pw, 0, sizeof(pw));
	assert_int_equal(fg_auth_bootstrap_admin(fx->st, fx->dir, pw, sizeof(pw)), 0);
	assert_int_equal(access(fx->pwfile, F_OK), -1);
	assert_int_equal(pw[0], '\0');
	struct fg_user *v;
	size_t n;
	assert_int_equal(fx->st->ops->user_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 1);
	fg_free(v);
}

static void test_auth_bootstrap_takes_the_env_password(void **state)
{
	struct fixture *fx = *state;
	char pw[FG_AUTH_GENERATED_LEN + 1] = "";
	struct fg_user u;

	setenv(FG_AUTH_ADMIN_ENV, "short", 1);
	assert_int_equal(fg_auth_bootstrap_admin(fx->st, fx->dir, pw, sizeof(pw)), -EINVAL);
	assert_int_equal(fx->st->ops->user_get_by_name(fx->st, FG_AUTH_ADMIN_NAME, &u), -ENOENT);

	setenv(FG_AUTH_ADMIN_ENV, "a long enough secret", 1);
	assert_int_equal(fg_auth_bootstrap_admin(fx->st, fx->dir, pw, sizeof(pw)), 0);
	assert_int_equal(access(fx->pwfile, F_OK), -1); /* nothing to write down */
	assert_int_equal(fx->st->ops->user_get_by_name(fx->st, FG_AUTH_ADMIN_NAME, &u), 0);
	assert_true(fg_auth_password_verify(u.pwhash, "a long enough secret"));
}

int main(void)
{
	fg_log_set_level(FG_LOG_WARN);
	if (fg_auth_init())
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_auth_password_verifies_only_itself),
	    cmocka_unit_test(test_auth_tokens_are_prefixed_random_base64url),
	    cmocka_unit_test_setup_teardown(test_auth_bootstrap_generates_a_0600_file_once, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_auth_bootstrap_takes_the_env_password, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
