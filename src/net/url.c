/* Server URLs as operators write them (see url.h). */
#include "net/url.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <strings.h>

/* ---- URLs ------------------------------------------------------------- */

static bool host_char_ok(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

int fg_url_parse(const char *s, struct fg_url *u, const char **why)
{
	memset(u, 0, sizeof(*u));
	const char *p = s;
	if (strncasecmp(p, "https://", 8) == 0) {
		u->tls = true;
		p += 8;
	} else if (strncasecmp(p, "http://", 7) == 0) {
		p += 7;
	} else if (strncasecmp(p, "wss://", 6) == 0) {
		u->ws = u->tls = true;
		p += 6;
	} else if (strncasecmp(p, "ws://", 5) == 0) {
		u->ws = true;
		p += 5;
	} else if (strstr(p, "://")) {
		*why = "the scheme must be http://, https://, ws:// or wss://";
		return -EINVAL;
	}
	if (strpbrk(p, "?#")) {
		*why = "a server URL has no query (?) or fragment (#)";
		return -EINVAL;
	}
	const char *slash = strchr(p, '/');
	size_t alen = slash ? (size_t)(slash - p) : strlen(p);
	if (memchr(p, '@', alen)) {
		*why = "user names and passwords do not belong in the URL";
		return -EINVAL;
	}
	const char *port = NULL;
	size_t hlen;
	const char *host = p;
	if (alen && *p == '[') {
		const char *close = memchr(p, ']', alen);
		if (!close) {
			*why = "an IPv6 address needs a closing ']'";
			return -EINVAL;
		}
		host = p + 1;
		hlen = (size_t)(close - host);
		u->host_is_v6 = true;
		if (close + 1 < p + alen) {
			if (close[1] != ':') {
				*why = "expected ':' and a port after ']'";
				return -EINVAL;
			}
			port = close + 2;
		}
	} else {
		const char *colon = memchr(p, ':', alen);
		if (colon && memchr(colon + 1, ':', alen - (size_t)(colon + 1 - p))) {
			*why = "an IPv6 address must be written in brackets: http://[::1]:8080";
			return -EINVAL;
		}
		hlen = colon ? (size_t)(colon - p) : alen;
		if (colon)
			port = colon + 1;
	}
	if (hlen == 0) {
		*why = "the host is missing";
		return -EINVAL;
	}
	if (hlen > FG_URL_HOST_MAX) {
		*why = "the host is too long";
		return -EINVAL;
	}
	memcpy(u->host, host, hlen);
	u->host[hlen] = 0;
	if (u->host_is_v6) {
		struct in6_addr a6;
		if (inet_pton(AF_INET6, u->host, &a6) != 1) {
			*why = "not an IPv6 address inside [ ]";
			return -EINVAL;
		}
	} else {
		for (size_t i = 0; i < hlen; i++) {
			if (!host_char_ok(u->host[i])) {
				*why = "the host may hold only letters, digits, '.', '-' and '_'";
				return -EINVAL;
			}
		}
	}
	u->port = u->tls ? 443 : 80;
	if (port) {
		size_t plen = (size_t)(p + alen - port);
		unsigned long v = 0;
		if (plen == 0 || plen > 5) {
			*why = "the port must be a number 1-65535";
			return -EINVAL;
		}
		for (size_t i = 0; i < plen; i++) {
			if (!isdigit((unsigned char)port[i])) {
				*why = "the port must be a number 1-65535";
				return -EINVAL;
			}
			v = v * 10 + (unsigned long)(port[i] - '0');
		}
		if (v < 1 || v > 65535) {
			*why = "the port must be a number 1-65535";
			return -EINVAL;
		}
		u->port = (uint16_t)v;
		u->port_given = true;
	}
	if (slash) {
		size_t plen = strlen(slash);
		while (plen && slash[plen - 1] == '/')
			plen--;
		if (plen > FG_URL_PATH_MAX) {
			*why = "the path is too long";
			return -EINVAL;
		}
		for (size_t i = 0; i < plen; i++) {
			if ((unsigned char)slash[i] <= ' ' || slash[i] == 0x7f) {
				*why = "the path holds spaces or control characters";
				return -EINVAL;
			}
		}
		memcpy(u->path, slash, plen);
		u->path[plen] = 0;
	}
	return 0;
}

void fg_url_format(const struct fg_url *u, char *out, size_t len)
{
	char port[8] = "";
	if (u->port != (u->tls ? 443 : 80))
		snprintf(port, sizeof(port), ":%u", u->port);
	snprintf(out, len, "%s%s://%s%s%s%s%s", u->ws ? "ws" : "http", u->tls ? "s" : "",
		 u->host_is_v6 ? "[" : "", u->host, u->host_is_v6 ? "]" : "", port, u->path);
}

void fg_url_authority(const struct fg_url *u, char *out, size_t len)
{
	char port[8] = "";
	if (u->port_given)
		snprintf(port, sizeof(port), ":%u", u->port);
	snprintf(out, len, "%s%s%s%s", u->host_is_v6 ? "[" : "", u->host, u->host_is_v6 ? "]" : "",
		 port);
}

bool fg_host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return false;
}
