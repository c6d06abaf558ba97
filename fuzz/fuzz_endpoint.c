/* libFuzzer harness over operator-typed strings: fg_endpoint_parse (both
 * modes), fg_parse_rate, fg_parse_size, fg_parse_duration. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/units.h"
#include "net/addr.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static void check_endpoint(const char *s, bool require_ip)
{
	struct fg_endpoint ep;
	const char *why = "unset";
	int rc = fg_endpoint_parse(s, require_ip, &ep, &why);
	if (rc) {
		CHECK(rc == -EINVAL && why && *why);
		return;
	}
	CHECK(why == NULL);
	CHECK(ep.port_lo >= 1 && ep.port_lo <= ep.port_hi);
	size_t hl = strnlen(ep.host, sizeof(ep.host));
	CHECK(hl > 0 && hl <= FG_HOST_MAX);
	if (require_ip)
		CHECK(ep.is_ip);
	if (!ep.is_ip)
		return;
	CHECK(ep.ip.ss_family == AF_INET || ep.ip.ss_family == AF_INET6);
	/* the canonical spelling parses back to the same address and ports */
	char ip[INET6_ADDRSTRLEN], text[FG_ADDRSTR_MAX + 8];
	if (ep.ip.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ep.ip)->sin6_addr, ip, sizeof(ip));
		snprintf(text, sizeof(text), "[%s]:%u-%u", ip, ep.port_lo, ep.port_hi);
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ep.ip)->sin_addr, ip, sizeof(ip));
		snprintf(text, sizeof(text), "%s:%u-%u", ip, ep.port_lo, ep.port_hi);
	}
	struct fg_endpoint again;
	CHECK(fg_endpoint_parse(text, true, &again, &why) == 0);
	CHECK(again.port_lo == ep.port_lo && again.port_hi == ep.port_hi);
	CHECK(fg_addr_ip_equal((struct sockaddr *)&ep.ip, (struct sockaddr *)&again.ip));
	CHECK(fg_addr_ip_hash((struct sockaddr *)&ep.ip) ==
	      fg_addr_ip_hash((struct sockaddr *)&again.ip));
}

static void check_units(const char *s)
{
	uint64_t v, w;
	int rc = fg_parse_rate(s, &v);
	CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
	if (rc == 0) {
		CHECK(v <= UINT64_MAX / 2);
		char buf[32];
		snprintf(buf, sizeof(buf), "%" PRIu64, v);
		CHECK(fg_parse_rate(buf, &w) == 0 && w == v);
	}
	rc = fg_parse_size(s, &v);
	CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
	if (rc == 0) {
		uint64_t r;
		CHECK(fg_parse_rate(s, &r) == 0 && r == v); /* a size is also a rate */
	}
	int64_t ns;
	rc = fg_parse_duration(s, &ns);
	CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
	if (rc == 0)
		CHECK(ns >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1024)
		return 0;
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0'; /* the parsers take C strings: stop at the first NUL */
	check_endpoint(s, false);
	check_endpoint(s, true);
	check_units(s);
	free(s);
	return 0;
}
