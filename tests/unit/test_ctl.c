/* `flowgate ctl`'s pure parts: forward flags -> request body, durations
 * and times, the saved login's file, path escaping. */
#include <errno.h>
#include <fcntl.h>
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

#include "cli/ctl.h"

/* Runs fg_ctl_forward_body on a NULL-terminated argument list. */
static int body_of(bool update, json_t **body, const char **ref, char *err, size_t errlen, ...)
{
	char *argv[64];
	int argc = 0;
	va_list ap;
	va_start(ap, errlen);
	for (const char *a; (a = va_arg(ap, const char *)) && argc < 63;)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	return fg_ctl_forward_body(argc, argv, update, body, ref, err, errlen);
}

static int tunnel_body_of(bool update, json_t **body, const char **ref, char *err, size_t errlen,
			  ...)
{
	char *argv[64];
	int argc = 0;
	va_list ap;
	va_start(ap, errlen);
	for (const char *a; (a = va_arg(ap, const char *)) && argc < 63;)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	return fg_ctl_tunnel_body(argc, argv, update, body, ref, err, errlen);
}

static void assert_json(json_t *got, const char *want)
{
	json_t *w = json_loads(want, 0, NULL);
	assert_non_null(w);
	if (!json_equal(got, w)) {
		char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
		fail_msg("got %s, want %s", g, want);
	}
	json_decref(w);
}

static void test_forward_create_from_flags(void **s)
{
	json_t *b;
	const char *ref;
	char err[256];
	assert_int_equal(body_of(false, &b, &ref, err, sizeof(err), "create", "--name", "web",
				 "--group", "edge", "--listen", "0.0.0.0:8080", "--target",
				 "10.0.0.2:80", "--target=10.0.0.3:80", "--proto", "both",
				 "--rate-up", "8mbit", "--max-conns", "100", "--max-conns-per-ip",
				 "lots", "--proxy-protocol", "v2", "--health-check", "10s",
				 "--disabled", NULL),
			 0);
	assert_null(ref);
	assert_json(b, "{\"name\":\"web\",\"group\":\"edge\",\"listen\":\"0.0.0.0:8080\","
		       "\"targets\":[\"10.0.0.2:80\",\"10.0.0.3:80\"],\"proto\":\"both\","
		       "\"rate_up\":\"8mbit\",\"max_conns\":100,\"max_conns_per_ip\":\"lots\","
		       "\"proxy_protocol\":\"v2\",\"health_check\":{\"interval\":\"10s\","
		       "\"timeout\":\"2000ms\"},\"enabled\":false}");
	json_decref(b);
}

static void test_forward_create_names_the_missing_flag(void **s)
{
	json_t *b;
	const char *ref;
	char err[256];
	assert_int_equal(body_of(false, &b, &ref, err, sizeof(err), "create", "--name", "web",
				 "--node", "n1", "--target", "10.0.0.2:80", NULL),
			 -EINVAL);
	assert_null(b);
	assert_non_null(strstr(err, "--listen"));
	assert_int_equal(body_of(false, &b, &ref, err, sizeof(err), "create", "--name", "web",
				 "--listen", ":80", "--target", "10.0.0.2:80", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "--node NODE or --group GROUP"));
	assert_int_equal(body_of(false, &b, &ref, err, sizeof(err), "create", "--name", "w",
				 "--node", "n1", "--group", "g", "--listen", ":80", "--target",
				 "h:1", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "one node or one group"));
	assert_int_equal(
	    body_of(false, &b, &ref, err, sizeof(err), "create", "--name", "w", "--listen", NULL),
	    -EINVAL);
	assert_non_null(strstr(err, "--listen: needs a value"));
	assert_int_equal(
	    body_of(false, &b, &ref, err, sizeof(err), "create", "--colour", "red", NULL), -EINVAL);
	assert_non_null(strstr(err, "--colour"));
	assert_int_equal(body_of(false, &b, &ref, err, sizeof(err), "create", "web", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "--name NAME"));
}

static void test_forward_update_sends_only_changes_and_unsets(void **s)
{
	json_t *b;
	const char *ref;
	char err[256];
	assert_int_equal(body_of(true, &b, &ref, err, sizeof(err), "update", "web", "--rate-down",
				 "2MiB", "--unset", "rate-up", "--unset", "max_conns", "--enabled",
				 NULL),
			 0);
	assert_string_equal(ref, "web");
	assert_json(b, "{\"rate_down\":\"2MiB\",\"rate_up\":null,\"max_conns\":null,"
		       "\"enabled\":true}");
	json_decref(b);
	assert_int_equal(body_of(true, &b, &ref, err, sizeof(err), "update", "web", NULL), -EINVAL);
	assert_non_null(strstr(err, "nothing to change"));
	assert_int_equal(
	    body_of(true, &b, &ref, err, sizeof(err), "update", "--proto", "udp", NULL), -EINVAL);
	assert_non_null(strstr(err, "exactly one forward"));
	assert_int_equal(
	    body_of(true, &b, &ref, err, sizeof(err), "update", "web", "--unset", "listen", NULL),
	    -EINVAL);
	assert_non_null(strstr(err, "--unset"));
}

static void test_forward_file_is_the_base_flags_override(void **s)
{
	char path[] = "/tmp/fg-test-ctl-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	static const char doc[] = "{\"name\":\"db\",\"group\":\"edge\",\"listen\":\":5432\","
				  "\"targets\":[\"10.0.0.9:5432\"],\"rate_up\":\"1mbit\"}";
	assert_int_equal(write(fd, doc, sizeof(doc) - 1), (ssize_t)(sizeof(doc) - 1));
	close(fd);
	json_t *b;
	const char *ref;
	char err[256];
	assert_int_equal(body_of(false, &b, &ref, err, sizeof(err), "create", "-f", path, "--node",
				 "n1", "--listen", ":6432", "--unset", "rate_up", NULL),
			 0);
	assert_json(b, "{\"name\":\"db\",\"node\":\"n1\",\"listen\":\":6432\","
		       "\"targets\":[\"10.0.0.9:5432\"]}");
	json_decref(b);

	/* a file that is not one JSON object says where */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "{\n\"name\": }", 11), 11);
	close(fd);
	assert_int_equal(body_of(false, &b, &ref, err, sizeof(err), "create", "-f", path, NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "line 2"));
	unlink(path);
}

static void test_tunnel_body_from_flags_and_file(void **s)
{
	json_t *b;
	const char *ref;
	char err[256];
	assert_int_equal(tunnel_body_of(false, &b, &ref, err, sizeof(err), "create", "--name", "db",
					"--node", "n1", "--listen", "5432", "--hop", "r1", "--hop",
					"r2", "--exit", "x1", "--target", "10.0.0.5:5432",
					"--transport", "aead", "--no-mux", "--link-port", "21000",
					"--max-conns", "5", NULL),
			 0);
	assert_json(b, "{\"name\":\"db\",\"entry\":{\"node\":\"n1\",\"listen\":\"5432\"},"
		       "\"hops\":[\"r1\",\"r2\"],\"exit\":\"x1\",\"target\":\"10.0.0.5:5432\","
		       "\"transport\":\"aead\",\"mux\":false,\"link_port\":21000,"
		       "\"max_conns\":5}");
	json_decref(b);
	/* several exits: "exits" */
	assert_int_equal(tunnel_body_of(true, &b, &ref, err, sizeof(err), "update", "db", "--exit",
					"x1", "--exit", "x2", "--listen", "6000", "--unset",
					"rate-up", NULL),
			 0);
	assert_string_equal(ref, "db");
	assert_json(b, "{\"exits\":[\"x1\",\"x2\"],\"entry\":{\"listen\":\"6000\"},"
		       "\"rate_up\":null}");
	json_decref(b);
	/* what is missing is named by its option */
	assert_int_equal(tunnel_body_of(false, &b, &ref, err, sizeof(err), "create", "--name", "db",
					"--node", "n1", "--listen", "1", "--target", "h:1", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "--exit NODE is required"));
	assert_int_equal(tunnel_body_of(false, &b, &ref, err, sizeof(err), "create", "--node", "n1",
					"--group", "g", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "--node and --group"));
	assert_int_equal(tunnel_body_of(true, &b, &ref, err, sizeof(err), "update", "db", "--unset",
					"name", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "not an optional tunnel field"));

	/* a file is the base: --group replaces its entry node, --listen merges */
	char path[] = "/tmp/fg-test-ctl-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	static const char doc[] = "{\"name\":\"w\",\"entry\":{\"node\":\"n1\",\"listen\":\"80\"},"
				  "\"exits\":[\"a\",\"b\"],\"target\":\"h:80\"}";
	assert_int_equal(write(fd, doc, sizeof(doc) - 1), (ssize_t)(sizeof(doc) - 1));
	close(fd);
	assert_int_equal(tunnel_body_of(false, &b, &ref, err, sizeof(err), "create", "-f", path,
					"--group", "edge", "--exit", "c", NULL),
			 0);
	assert_json(b, "{\"name\":\"w\",\"entry\":{\"group\":\"edge\",\"listen\":\"80\"},"
		       "\"exit\":\"c\",\"target\":\"h:80\"}");
	json_decref(b);
	unlink(path);
}

static void test_field_flags(void **s)
{
	assert_string_equal(fg_ctl_field_flag("rate_up_per_conn"), "--rate-up-per-conn");
	assert_string_equal(fg_ctl_field_flag("targets"), "--target");
	assert_string_equal(fg_ctl_field_flag("targets[1]"), "--target");
	assert_string_equal(fg_ctl_field_flag("entry.listen"), "--listen");
	assert_string_equal(fg_ctl_field_flag("hops[0]"), "--hop");
	assert_string_equal(fg_ctl_field_flag("exits[1]"), "--exit");
	assert_null(fg_ctl_field_flag("no_such_field"));
}

static void test_seconds(void **s)
{
	int64_t v;
	assert_int_equal(fg_ctl_parse_seconds("90", &v), 0);
	assert_int_equal(v, 90);
	assert_int_equal(fg_ctl_parse_seconds("15m", &v), 0);
	assert_int_equal(v, 900);
	assert_int_equal(fg_ctl_parse_seconds("12h", &v), 0);
	assert_int_equal(v, 43200);
	assert_int_equal(fg_ctl_parse_seconds("30d", &v), 0);
	assert_int_equal(v, 2592000);
	assert_int_equal(fg_ctl_parse_seconds("2w", &v), 0);
	assert_int_equal(v, 1209600);
	assert_int_equal(fg_ctl_parse_seconds("-5", &v), -EINVAL);
	assert_int_equal(fg_ctl_parse_seconds("10y", &v), -EINVAL);
	assert_int_equal(fg_ctl_parse_seconds("d", &v), -EINVAL);
	assert_int_equal(fg_ctl_parse_seconds("99999999999d", &v), -ERANGE);
}

static void test_times(void **s)
{
	int64_t v, now = 1795333651;
	assert_int_equal(fg_ctl_parse_time("now", now, &v), 0);
	assert_int_equal(v, now);
	assert_int_equal(fg_ctl_parse_time("1700000000", now, &v), 0);
	assert_int_equal(v, 1700000000);
	assert_int_equal(fg_ctl_parse_time("2h", now, &v), 0);
	assert_int_equal(v, now - 7200);
	assert_int_equal(fg_ctl_parse_time("2026-11-22T07:00Z", now, &v), 0);
	assert_int_equal(v, 1795330800);
	assert_int_equal(fg_ctl_parse_time("2026-11-22T07:00:30", now, &v), 0);
	assert_int_equal(v, 1795330830);
	assert_int_equal(fg_ctl_parse_time("2026-11-22", now, &v), 0);
	assert_int_equal(v, 1795305600);
	assert_int_equal(fg_ctl_parse_time("yesterday", now, &v), -EINVAL);
	assert_int_equal(fg_ctl_parse_time("2026-11-22T07", now, &v), -EINVAL);
}

static void test_config_round_trip_private_modes(void **s)
{
	char dir[] = "/tmp/fg-test-cfg-XXXXXX";
	assert_non_null(mkdtemp(dir));
	setenv("XDG_CONFIG_HOME", dir, 1);
	char path[512], err[256];
	assert_int_equal(fg_ctl_config_path(path, sizeof(path)), 0);
	char want[600];
	snprintf(want, sizeof(want), "%s/flowgate/ctl.json", dir);
	assert_string_equal(path, want);

	struct fg_ctl_config c;
	assert_int_equal(fg_ctl_config_load(path, &c, err, sizeof(err)), 0); /* none yet */
	assert_null(c.server);
	assert_null(c.token);

	struct fg_ctl_config w = {.server = "https://gw.example:8443",
				  .token = "fgs_secret",
				  .username = "ops",
				  .ca_file = "/etc/ca.pem",
				  .insecure = false};
	assert_int_equal(fg_ctl_config_save(path, &w, err, sizeof(err)), 0);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	char fdir[600];
	snprintf(fdir, sizeof(fdir), "%s/flowgate", dir);
	assert_int_equal(stat(fdir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);

	assert_int_equal(fg_ctl_config_load(path, &c, err, sizeof(err)), 0);
	assert_string_equal(c.server, w.server);
	assert_string_equal(c.token, w.token);
	assert_string_equal(c.username, w.username);
	assert_string_equal(c.ca_file, w.ca_file);
	assert_false(c.insecure);

	/* logout: the token goes, the rest stays; a looser directory is
	 * tightened again */
	free(c.token);
	c.token = NULL;
	c.insecure = true;
	chmod(fdir, 0755);
	assert_int_equal(fg_ctl_config_save(path, &c, err, sizeof(err)), 0);
	fg_ctl_config_free(&c);
	assert_int_equal(stat(fdir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(fg_ctl_config_load(path, &c, err, sizeof(err)), 0);
	assert_string_equal(c.server, w.server);
	assert_null(c.token);
	assert_true(c.insecure);
	fg_ctl_config_free(&c);

	/* a damaged file is an error that says how to fix it */
	FILE *f = fopen(path, "w");
	fputs("{\"server\": ", f);
	fclose(f);
	assert_int_equal(fg_ctl_config_load(path, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "log in again"));

	unlink(path);
	rmdir(fdir);
	rmdir(dir);
	unsetenv("XDG_CONFIG_HOME");
}

static void test_config_path_falls_back_to_home(void **s)
{
	char path[512];
	setenv("HOME", "/home/ops", 1);
	setenv("XDG_CONFIG_HOME", "relative/is/ignored", 1);
	assert_int_equal(fg_ctl_config_path(path, sizeof(path)), 0);
	assert_string_equal(path, "/home/ops/.config/flowgate/ctl.json");
	unsetenv("XDG_CONFIG_HOME");
	unsetenv("HOME");
	assert_int_equal(fg_ctl_config_path(path, sizeof(path)), -ENOENT);
}

static void test_path_escape(void **s)
{
	char out[64];
	assert_int_equal(fg_ctl_path_escape("edge-1.fra_2~", out, sizeof(out)), 0);
	assert_string_equal(out, "edge-1.fra_2~");
	assert_int_equal(fg_ctl_path_escape("a/b c?d%", out, sizeof(out)), 0);
	assert_string_equal(out, "a%2Fb%20c%3Fd%25");
	assert_int_equal(fg_ctl_path_escape("abcd", out, 4), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_forward_create_from_flags),
	    cmocka_unit_test(test_forward_create_names_the_missing_flag),
	    cmocka_unit_test(test_forward_update_sends_only_changes_and_unsets),
	    cmocka_unit_test(test_forward_file_is_the_base_flags_override),
	    cmocka_unit_test(test_tunnel_body_from_flags_and_file),
	    cmocka_unit_test(test_field_flags),
	    cmocka_unit_test(test_seconds),
	    cmocka_unit_test(test_times),
	    cmocka_unit_test(test_config_round_trip_private_modes),
	    cmocka_unit_test(test_config_path_falls_back_to_home),
	    cmocka_unit_test(test_path_escape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
