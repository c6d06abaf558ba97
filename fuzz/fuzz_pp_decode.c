/* libFuzzer harness: fg_pp_decode on arbitrary bytes; whatever decodes with
 * addresses must survive encode -> decode unchanged. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/addr.h"
#include "net/proxy_proto.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static void same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	char x[FG_ADDRSTR_MAX], y[FG_ADDRSTR_MAX];
	CHECK(a->ss_family == b->ss_family);
	fg_addr_format((const struct sockaddr *)a, x, sizeof(x));
	fg_addr_format((const struct sockaddr *)b, y, sizeof(y));
	CHECK(strcmp(x, y) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fg_pp_info info, again;
	int n = fg_pp_decode(data, size, &info);
	if (n == -EAGAIN || n == -EINVAL)
		return 0;
	CHECK(n > 0 && (size_t)n <= size);
	CHECK(info.version == 1 || info.version == 2);
	if (info.family == AF_UNSPEC)
		return 0;
	CHECK(info.family == AF_INET || info.family == AF_INET6);
	CHECK(info.src.ss_family == info.family && info.dst.ss_family == info.family);

	uint8_t out[FG_PP_MAX_LEN];
	int m = fg_pp_encode((enum fg_pp_version)info.version, (struct sockaddr *)&info.src,
			     (struct sockaddr *)&info.dst, out, sizeof(out));
	CHECK(m > 0 && m <= FG_PP_MAX_LEN);
	CHECK(fg_pp_decode(out, (size_t)m, &again) == m);
	CHECK(again.version == info.version);
	/* the encoder writes v4-mapped addresses as IPv4 */
	fg_addr_unmap(&info.src);
	fg_addr_unmap(&info.dst);
	if (info.src.ss_family != info.dst.ss_family) {
		CHECK(again.family == AF_UNSPEC);
		return 0;
	}
	CHECK(again.family == info.src.ss_family);
	same_addr(&again.src, &info.src);
	same_addr(&again.dst, &info.dst);
	/* every strict prefix of a valid header asks for more */
	for (int k = 0; k < m; k += 7)
		CHECK(fg_pp_decode(out, (size_t)k, &again) == -EAGAIN);
	return 0;
}
