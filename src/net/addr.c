#include "net/addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *s, size_t n, uint16_t *out)
{
	if (n == 0 || n > 5)
		return -EINVAL;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -ERANGE;
	*out = (uint16_t)v;
	return 0;
}

static bool valid_dns_name(const char *h)
{
	size_t n = strlen(h), label = 0;
	if (n == 0 || n > FG_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

int fg_endpoint_parse(const char *s, bool require_ip, struct fg_endpoint *out, const char **why)
{
	const char *host, *ports;
	size_t hlen;
	memset(out, 0, sizeof(*out));
	*why = NULL;
	if (!s || !*s) {
		*why = "empty address";
		return -EINVAL;
	}
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':') {
			*why = "IPv6 address must look like [::1]:PORT";
			return -EINVAL;
		}
		host = s + 1;
		hlen = (size_t)(rb - host);
		ports = rb + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon) {
			host = "";
			hlen = 0;
			ports = s; /* bare port */
		} else {
			if (memchr(s, ':', (size_t)(colon - s))) {
				*why = "IPv6 address must be in brackets: [::1]:PORT";
				return -EINVAL;
			}
			host = s;
			hlen = (size_t)(colon - s);
			ports = colon + 1;
		}
	}
	if (hlen > FG_HOST_MAX) {
		*why = "host name too long";
		return -EINVAL;
	}
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	if (hlen == 0)
		strcpy(out->host, "0.0.0.0");

	const char *dash = strchr(ports, '-');
	int rc;
	if (dash) {
		if ((rc = parse_port(ports, (size_t)(dash - ports), &out->port_lo)) ||
		    (rc = parse_port(dash + 1, strlen(dash + 1), &out->port_hi))) {
			*why = rc == -ERANGE ? "port out of range 1-65535" : "bad port range";
			return -EINVAL;
		}
		if (out->port_hi < out->port_lo) {
			*why = "port range is reversed";
			return -EINVAL;
		}
	} else {
		if ((rc = parse_port(ports, strlen(ports), &out->port_lo))) {
			*why = rc == -ERANGE ? "port out of range 1-65535" : "bad port";
			return -EINVAL;
		}
		out->port_hi = out->port_lo;
	}

	struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ip;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ip;
	/* brackets hold an IPv6 literal only: "[1.2.3.4]:80" and "[]:80" are typos */
	if (s[0] != '[' && inet_pton(AF_INET, out->host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		out->is_ip = true;
	} else if (inet_pton(AF_INET6, out->host, &v6->sin6_addr) == 1) {
		if (s[0] != '[') {
			*why = "IPv6 address must be in brackets: [::1]:PORT";
			return -EINVAL;
		}
		v6->sin6_family = AF_INET6;
		out->is_ip = true;
	} else if (s[0] == '[') {
		*why = "not an IPv6 address";
		return -EINVAL;
	} else if (require_ip) {
		*why = "not an IP address";
		return -EINVAL;
	} else if (!valid_dns_name(out->host)) {
		*why = "not an IP address or host name";
		return -EINVAL;
	}
	return 0;
}

socklen_t fg_addr_len(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

uint16_t fg_addr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

void fg_addr_set_port(struct sockaddr *sa, uint16_t port)
{
	if (sa->sa_family == AF_INET6)
		((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)sa)->sin_port = htons(port);
}

void fg_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(v6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(v4->sin_port));
	} else {
		snprintf(buf, len, "?");
	}
}

void fg_addr_unmap(struct sockaddr_storage *ss)
{
	if (ss->ss_family != AF_INET6)
		return;
	struct sockaddr_in6 v6 = *(struct sockaddr_in6 *)ss;
	if (!IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr))
		return;
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	memset(v4, 0, sizeof(*v4));
	v4->sin_family = AF_INET;
	v4->sin_port = v6.sin6_port;
	memcpy(&v4->sin_addr, &v6.sin6_addr.s6_addr[12], 4);
}

/* The IP bytes of an address, v4-mapped folded to v4. */
static const uint8_t *ip_bytes(const struct sockaddr *sa, size_t *n)
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
			*n = 4;
			return &v6->sin6_addr.s6_addr[12];
		}
		*n = 16;
		return v6->sin6_addr.s6_addr;
	}
	*n = 4;
	return (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
}

uint32_t fg_addr_ip_hash(const struct sockaddr *sa)
{
	size_t n;
	const uint8_t *b = ip_bytes(sa, &n);
	uint32_t h = 2166136261u; /* FNV-1a, then a final mix for spread */
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	h ^= h >> 16;
	h *= 0x7feb352du;
	h ^= h >> 15;
	return h;
}

bool fg_addr_ip_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	size_t na, nb;
	const uint8_t *pa = ip_bytes(a, &na), *pb = ip_bytes(b, &nb);
	return na == nb && memcmp(pa, pb, na) == 0;
}

bool fg_addr_is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
}
