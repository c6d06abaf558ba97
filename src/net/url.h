/* Server URLs as operators write them: "https://gw.example:8443/prefix",
 * "wss://[2001:db8::1]:8443", "ws://10.0.0.1:8080", or a bare "host:port"
 * (taken as http). One pure parser for `flowgate ctl` (http, https) and
 * the agent (ws, wss). */
#ifndef FG_NET_URL_H
#define FG_NET_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FG_URL_HOST_MAX 255
#define FG_URL_PATH_MAX 1023

struct fg_url {
	bool tls;			/* https:// or wss:// */
	bool ws;			/* ws:// or wss:// */
	char host[FG_URL_HOST_MAX + 1]; /* without brackets for an IPv6 literal */
	bool host_is_v6;		/* host was written [v6] */
	uint16_t port;			/* 80 / 443 when not given */
	bool port_given;
	char path[FG_URL_PATH_MAX + 1]; /* "" or "/prefix" without a trailing '/' */
};

/* Query strings, fragments and user info are refused. Returns 0, or
 * -EINVAL with *why set to a static reason. */
int fg_url_parse(const char *s, struct fg_url *u, const char **why);
/* Writes the URL back in its canonical form ("http://h:p/prefix"; the
 * port only when not the scheme's default). */
void fg_url_format(const struct fg_url *u, char *out, size_t len);
/* The Host header for u: host, [v6], with ":port" when one was written. */
void fg_url_authority(const struct fg_url *u, char *out, size_t len);

/* host (a name or an IP literal without brackets) is "localhost" or a
 * loopback address: where plain ws:// and http:// leave nothing to sniff. */
bool fg_host_is_loopback(const char *host);

#endif
