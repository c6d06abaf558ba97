#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/units.h"

static void test_rate_plain_integer_is_bytes_per_second(void **s)
{
	uint64_t v;
	assert_int_equal(fg_parse_rate("1000", &v), 0);
	assert_int_equal(v, 1000);
}

static void test_rate_bit_units_are_decimal_bits(void **s)
{
	uint64_t v;
	assert_int_equal(fg_parse_rate("8kbit", &v), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(fg_parse_rate("10mbit", &v), 0);
	assert_int_equal(v, 1250000);
	assert_int_equal(fg_parse_rate("1gbit", &v), 0);
	assert_int_equal(v, 125000000);
	assert_int_equal(fg_parse_rate("1.5mbit", &v), 0);
	assert_int_equal(v, 187500);
	assert_int_equal(fg_parse_rate("100Mbps", &v), 0);
	assert_int_equal(v, 12500000);
}

static void test_rate_binary_units_are_bytes(void **s)
{
	uint64_t v;
	assert_int_equal(fg_parse_rate("2MiB", &v), 0);
	assert_int_equal(v, 2097152);
	assert_int_equal(fg_parse_rate("1KiB/s", &v), 0);
	assert_int_equal(v, 1024);
	assert_int_equal(fg_parse_rate("1GiB", &v), 0);
	assert_int_equal(v, 1073741824);
}

static void test_rate_rejects_garbage(void **s)
{
	uint64_t v;
	assert_int_not_equal(fg_parse_rate("", &v), 0);
	assert_int_not_equal(fg_parse_rate("fast", &v), 0);
	assert_int_not_equal(fg_parse_rate("12 parsecs", &v), 0);
	assert_int_not_equal(fg_parse_rate("-5", &v), 0);
	assert_int_not_equal(fg_parse_rate("5b", &v), 0); /* bit or byte? refuse */
	assert_int_not_equal(fg_parse_rate("1.", &v), 0);
	assert_int_not_equal(fg_parse_rate("99999999999999999999999", &v), 0);
}

static void test_duration_units(void **s)
{
	int64_t ns;
	assert_int_equal(fg_parse_duration("5", &ns), 0);
	assert_int_equal(ns, 5000000000LL);
	assert_int_equal(fg_parse_duration("250ms", &ns), 0);
	assert_int_equal(ns, 250000000LL);
	assert_int_equal(fg_parse_duration("2m", &ns), 0);
	assert_int_equal(ns, 120000000000LL);
	assert_int_equal(fg_parse_duration("1h", &ns), 0);
	assert_int_not_equal(fg_parse_duration("soon", &ns), 0);
	assert_int_not_equal(fg_parse_duration("5 days", &ns), 0);
}

static void test_rate_decimal_byte_units_are_x1000(void **s)
{
	uint64_t v;
	assert_int_equal(fg_parse_rate("1K", &v), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(fg_parse_rate("1KB", &v), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(fg_parse_rate("3M", &v), 0);
	assert_int_equal(v, 3000000);
	assert_int_equal(fg_parse_rate("3MB", &v), 0);
	assert_int_equal(v, 3000000);
	assert_int_equal(fg_parse_rate("2G", &v), 0);
	assert_int_equal(v, 2000000000);
	assert_int_equal(fg_parse_rate("2GB/s", &v), 0);
	assert_int_equal(v, 2000000000);
	assert_int_equal(fg_parse_rate("7B", &v), 0);
	assert_int_equal(v, 7);
}

static void test_rate_units_are_case_insensitive_and_take_per_second(void **s)
{
	uint64_t v;
	assert_int_equal(fg_parse_rate("10MBIT", &v), 0);
	assert_int_equal(v, 1250000);
	assert_int_equal(fg_parse_rate("10mbit/s", &v), 0);
	assert_int_equal(v, 1250000);
	assert_int_equal(fg_parse_rate("100kbps", &v), 0);
	assert_int_equal(v, 12500);
	assert_int_equal(fg_parse_rate("1gbps", &v), 0);
	assert_int_equal(v, 125000000);
	assert_int_equal(fg_parse_rate("16bit", &v), 0);
	assert_int_equal(v, 2);
	assert_int_equal(fg_parse_rate("2mib", &v), 0);
	assert_int_equal(v, 2097152);
}

static void test_rate_fractions_round_down_to_whole_bytes(void **s)
{
	uint64_t v;
	assert_int_equal(fg_parse_rate("1.5MiB", &v), 0);
	assert_int_equal(v, 1572864);
	assert_int_equal(fg_parse_rate("0.5K", &v), 0);
	assert_int_equal(v, 500);
	assert_int_equal(fg_parse_rate("1bit", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(fg_parse_rate("0.0000001G", &v), 0); /* digits past 1e-6 ignored */
	assert_int_equal(v, 0);
	assert_int_equal(fg_parse_rate("2.25kbit", &v), 0);
	assert_int_equal(v, 281);
}

static void test_rate_zero_means_unlimited_and_parses(void **s)
{
	uint64_t v = 99;
	assert_int_equal(fg_parse_rate("0", &v), 0);
	assert_int_equal(v, 0);
	v = 99;
	assert_int_equal(fg_parse_rate("0mbit", &v), 0);
	assert_int_equal(v, 0);
}

static void test_rate_rejects_blanks_signs_and_other_notations(void **s)
{
	uint64_t v;
	assert_int_equal(fg_parse_rate("10 mbit/s", &v), -EINVAL);
	assert_int_equal(fg_parse_rate(" 10", &v), -EINVAL);
	assert_int_equal(fg_parse_rate("10 ", &v), -EINVAL);
	assert_int_equal(fg_parse_rate("+5", &v), -EINVAL);
	assert_int_equal(fg_parse_rate(".5", &v), -EINVAL);
	assert_int_equal(fg_parse_rate("1..5", &v), -EINVAL);
	assert_int_equal(fg_parse_rate("1e6", &v), -EINVAL);
	assert_int_equal(fg_parse_rate("0x10", &v), -EINVAL);
	assert_int_equal(fg_parse_rate("10mbit/s/s", &v), -EINVAL);
	assert_int_equal(fg_parse_rate("10/s", &v), 0); /* plain bytes per second */
	assert_int_equal(v, 10);
	assert_int_equal(fg_parse_rate("5tbit", &v), -EINVAL);
	assert_int_equal(fg_parse_rate("1averyveryverylongunit", &v), -EINVAL);
}

static void test_rate_overflow_is_erange(void **s)
{
	uint64_t v;
	assert_int_equal(fg_parse_rate("99999999999999999999999", &v), -ERANGE);
	assert_int_equal(fg_parse_rate("1000000000000gib", &v), -ERANGE);
	assert_int_equal(fg_parse_rate("1000000000000", &v), 0);
	assert_int_equal(v, 1000000000000ull);
}

/* found by fuzz_endpoint: "100222222m" parsed, its own value written as a
 * plain integer (100222222000000) was -ERANGE */
static void test_rate_plain_integer_has_the_same_range_as_with_units(void **s)
{
	uint64_t v, w;
	assert_int_equal(fg_parse_rate("100222222m", &v), 0);
	assert_int_equal(fg_parse_rate("100222222000000", &w), 0);
	assert_int_equal(v, w);
	assert_int_equal(fg_parse_rate("9223372036854775807", &v), 0); /* UINT64_MAX / 2 */
	assert_int_equal(v, UINT64_MAX / 2);
	assert_int_equal(fg_parse_rate("9223372036854775808", &v), -ERANGE);
	assert_int_equal(fg_parse_rate("18446744073709551615", &v), -ERANGE);
	assert_int_equal(fg_parse_rate("18446744073709551616", &v), -ERANGE);
	assert_int_equal(fg_parse_rate("18446744073709551615.5kbit", &v), -ERANGE);
}

static void test_size_takes_rate_units_but_not_per_second(void **s)
{
	uint64_t v;
	assert_int_equal(fg_parse_size("64KiB", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(fg_parse_size("16384", &v), 0);
	assert_int_equal(v, 16384);
	assert_int_equal(fg_parse_size("1mbit", &v), 0);
	assert_int_equal(v, 125000);
	assert_int_equal(fg_parse_size("1MiB/s", &v), -EINVAL);
	assert_int_equal(fg_parse_size("lots", &v), -EINVAL);
}

static void test_duration_fractions_and_small_units(void **s)
{
	int64_t ns;
	assert_int_equal(fg_parse_duration("1.5s", &ns), 0);
	assert_int_equal(ns, 1500000000LL);
	assert_int_equal(fg_parse_duration("100us", &ns), 0);
	assert_int_equal(ns, 100000LL);
	assert_int_equal(fg_parse_duration("0.5m", &ns), 0);
	assert_int_equal(ns, 30000000000LL);
	assert_int_equal(fg_parse_duration("300s", &ns), 0);
	assert_int_equal(ns, 300000000000LL);
	assert_int_equal(fg_parse_duration("0", &ns), 0);
	assert_int_equal(ns, 0);
	assert_int_equal(fg_parse_duration("1H", &ns), 0);
	assert_int_equal(ns, 3600000000000LL);
}

static void test_duration_rejects_unknown_units_and_rates(void **s)
{
	int64_t ns;
	assert_int_equal(fg_parse_duration("1d", &ns), -EINVAL);
	assert_int_equal(fg_parse_duration("5s/s", &ns), -EINVAL);
	assert_int_equal(fg_parse_duration("5 s", &ns), -EINVAL);
	assert_int_equal(fg_parse_duration("-1s", &ns), -EINVAL);
	assert_int_equal(fg_parse_duration("", &ns), -EINVAL);
	assert_int_equal(fg_parse_duration("1mbit", &ns), -EINVAL);
	assert_int_equal(fg_parse_duration("9999999999h", &ns), -ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rate_plain_integer_is_bytes_per_second),
	    cmocka_unit_test(test_rate_bit_units_are_decimal_bits),
	    cmocka_unit_test(test_rate_binary_units_are_bytes),
	    cmocka_unit_test(test_rate_rejects_garbage),
	    cmocka_unit_test(test_duration_units),
	    cmocka_unit_test(test_rate_decimal_byte_units_are_x1000),
	    cmocka_unit_test(test_rate_units_are_case_insensitive_and_take_per_second),
	    cmocka_unit_test(test_rate_fractions_round_down_to_whole_bytes),
	    cmocka_unit_test(test_rate_zero_means_unlimited_and_parses),
	    cmocka_unit_test(test_rate_rejects_blanks_signs_and_other_notations),
	    cmocka_unit_test(test_rate_overflow_is_erange),
	    cmocka_unit_test(test_rate_plain_integer_has_the_same_range_as_with_units),
	    cmocka_unit_test(test_size_takes_rate_units_but_not_per_second),
	    cmocka_unit_test(test_duration_fractions_and_small_units),
	    cmocka_unit_test(test_duration_rejects_unknown_units_and_rates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
