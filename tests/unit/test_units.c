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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rate_plain_integer_is_bytes_per_second),
	    cmocka_unit_test(test_rate_bit_units_are_decimal_bits),
	    cmocka_unit_test(test_rate_binary_units_are_bytes),
	    cmocka_unit_test(test_rate_rejects_garbage),
	    cmocka_unit_test(test_duration_units),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
