/* Socket addresses as operators write them: "0.0.0.0:8080", "[::1]:53",
 * "host.example:443", port ranges "10000-10100". Pure parsers. */
#ifndef FG_NET_ADDR_H
#define FG_NET_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define FG_HOST_MAX    253
#define FG_ADDRSTR_MAX 64 /* "[v6]:port" fits */

/* A parsed endpoint: host text (IP literal or DNS name) + port range. */
struct fg_endpoint {
	char host[FG_HOST_MAX + 1];
	bool is_ip;		    /* host is an IP literal; ip holds it */
	struct sockaddr_storage ip; /* valid when is_ip; port 0 */
	uint16_t port_lo, port_hi;  /* equal for a single port */
};

/* Parses "HOST:PORT", "HOST:LO-HI", "[V6]:PORT", ":PORT", "PORT".
 * require_ip: the host must be an IP literal (listen addresses).
 * An empty host means 0.0.0.0. Returns 0 or -EINVAL with a reason in why. */
int fg_endpoint_parse(const char *s, bool require_ip, struct fg_endpoint *out, const char **why);

/* Formats an address as "1.2.3.4:80" or "[::1]:80". */
void fg_addr_format(const struct sockaddr *sa, char *buf, size_t len);
socklen_t fg_addr_len(const struct sockaddr *sa);
uint16_t fg_addr_port(const struct sockaddr *sa);
void fg_addr_set_port(struct sockaddr *sa, uint16_t port);
/* A 32-bit hash of the IP part only (for per-IP limits and ip-hash). */
uint32_t fg_addr_ip_hash(const struct sockaddr *sa);
/* Same IP (ignores port). v4-mapped v6 equals its v4 form. */
bool fg_addr_ip_equal(const struct sockaddr *a, const struct sockaddr *b);
/* 0.0.0.0 or :: — an address to listen on, never one to dial. */
bool fg_addr_is_wildcard(const struct sockaddr_storage *ss);
/* Converts a v4-mapped v6 address to plain v4 in place. */
void fg_addr_unmap(struct sockaddr_storage *ss);

#endif
