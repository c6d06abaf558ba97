/* PROXY protocol v1 (text) and v2 (binary) headers, as sent to a target
 * so it learns the real client address. Pure functions. */
#ifndef FG_NET_PROXY_PROTO_H
#define FG_NET_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum fg_pp_version { FG_PP_NONE = 0, FG_PP_V1 = 1, FG_PP_V2 = 2 };

#define FG_PP_MAX_LEN 108 /* v1 max is 107 + NUL; v2 for TCP6 is 52 */

/* Encodes a header for a TCP connection from src to dst into out.
 * Returns the header length, or -ENOSPC / -EAFNOSUPPORT. v4-mapped
 * addresses are written as IPv4; if the families still differ the header
 * says UNKNOWN (v1) / LOCAL-less UNSPEC (v2). */
int fg_pp_encode(enum fg_pp_version v, const struct sockaddr *src, const struct sockaddr *dst,
		 uint8_t *out, size_t cap);

struct fg_pp_info {
	int version;
	int family; /* AF_INET, AF_INET6 or AF_UNSPEC */
	struct sockaddr_storage src, dst;
};

/* Decodes a header at the start of buf. Returns the header length,
 * -EAGAIN if more bytes are needed, -EINVAL if it is not a valid header. */
int fg_pp_decode(const uint8_t *buf, size_t len, struct fg_pp_info *out);

#endif
