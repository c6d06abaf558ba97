#include "net/proxy_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/addr.h"

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

int fg_pp_encode(enum fg_pp_version v, const struct sockaddr *src, const struct sockaddr *dst,
		 uint8_t *out, size_t cap)
{
	struct sockaddr_storage s, d;
	memcpy(&s, src, fg_addr_len(src));
	memcpy(&d, dst, fg_addr_len(dst));
	fg_addr_unmap(&s);
	fg_addr_unmap(&d);
	int fam = s.ss_family == d.ss_family ? s.ss_family : AF_UNSPEC;

	if (v == FG_PP_V1) {
		char sip[INET6_ADDRSTRLEN], dip[INET6_ADDRSTRLEN];
		int n;
		if (fam == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&s)->sin_addr, sip, sizeof(sip));
			inet_ntop(AF_INET, &((struct sockaddr_in *)&d)->sin_addr, dip, sizeof(dip));
		} else if (fam == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&s)->sin6_addr, sip,
				  sizeof(sip));
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&d)->sin6_addr, dip,
				  sizeof(dip));
		}
		if (fam == AF_UNSPEC)
			n = snprintf((char *)out, cap, "PROXY UNKNOWN\r\n");
		else
			n = snprintf((char *)out, cap, "PROXY %s %s %s %u %u\r\n",
				     fam == AF_INET ? "TCP4" : "TCP6", sip, dip,
				     fg_addr_port((struct sockaddr *)&s),
				     fg_addr_port((struct sockaddr *)&d));
		if (n < 0 || (size_t)n >= cap)
			return -ENOSPC;
		return n;
	}
	if (v != FG_PP_V2)
		return -EINVAL;

	size_t alen = fam == AF_INET ? 12 : fam == AF_INET6 ? 36 : 0;
	if (cap < 16 + alen)
		return -ENOSPC;
	memcpy(out, v2_sig, 12);
	out[12] = 0x21; /* version 2, command PROXY */
	out[13] = fam == AF_INET ? 0x11 : fam == AF_INET6 ? 0x21 : 0x00; /* STREAM */
	out[14] = (uint8_t)(alen >> 8);
	out[15] = (uint8_t)alen;
	uint8_t *p = out + 16;
	if (fam == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&s, *b = (struct sockaddr_in *)&d;
		memcpy(p, &a->sin_addr, 4);
		memcpy(p + 4, &b->sin_addr, 4);
		memcpy(p + 8, &a->sin_port, 2);
		memcpy(p + 10, &b->sin_port, 2);
	} else if (fam == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s, *b = (struct sockaddr_in6 *)&d;
		memcpy(p, &a->sin6_addr, 16);
		memcpy(p + 16, &b->sin6_addr, 16);
		memcpy(p + 32, &a->sin6_port, 2);
		memcpy(p + 34, &b->sin6_port, 2);
	}
	return (int)(16 + alen);
}

static int v1_addr(int fam, const char *ip, const char *port, struct sockaddr_storage *out)
{
	char *end;
	if (!*port || strlen(port) > 5 || (port[0] == '0' && port[1]))
		return -EINVAL;
	/* digits only: strtoul alone would take "+80" and "-0" */
	if (port[strspn(port, "0123456789")] != '\0')
		return -EINVAL;
	unsigned long p = strtoul(port, &end, 10);
	if (*end || p > 65535)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (fam == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)out;
		if (inet_pton(AF_INET, ip, &a->sin_addr) != 1)
			return -EINVAL;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)p);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
		if (inet_pton(AF_INET6, ip, &a->sin6_addr) != 1)
			return -EINVAL;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)p);
	}
	return 0;
}

static int decode_v1(const uint8_t *buf, size_t len, struct fg_pp_info *out)
{
	/* "PROXY " ... "\r\n", at most 107 bytes */
	size_t max = len < 107 ? len : 107;
	const uint8_t *crlf = NULL;
	for (size_t i = 0; i + 1 < max; i++) {
		if (buf[i] == '\r' && buf[i + 1] == '\n') {
			crlf = buf + i;
			break;
		}
	}
	if (!crlf)
		return len < 107 ? -EAGAIN : -EINVAL;
	size_t n = (size_t)(crlf - buf);
	char line[108];
	memcpy(line, buf, n);
	line[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (line[i] < 0x20 || line[i] > 0x7e)
			return -EINVAL;
	out->version = 1;
	if (strcmp(line, "PROXY UNKNOWN") == 0 || strncmp(line, "PROXY UNKNOWN ", 14) == 0) {
		out->family = AF_UNSPEC;
		return (int)(n + 2);
	}
	char *f[6];
	int nf = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (nf == 6)
			return -EINVAL;
		f[nf++] = t;
	}
	if (nf != 6 || strcmp(f[0], "PROXY") != 0)
		return -EINVAL;
	int fam;
	if (strcmp(f[1], "TCP4") == 0)
		fam = AF_INET;
	else if (strcmp(f[1], "TCP6") == 0)
		fam = AF_INET6;
	else
		return -EINVAL;
	if (v1_addr(fam, f[2], f[4], &out->src) || v1_addr(fam, f[3], f[5], &out->dst))
		return -EINVAL;
	out->family = fam;
	return (int)(n + 2);
}

static int decode_v2(const uint8_t *buf, size_t len, struct fg_pp_info *out)
{
	if (len < 16)
		return -EAGAIN;
	if ((buf[12] & 0xF0) != 0x20)
		return -EINVAL;
	int cmd = buf[12] & 0x0F;
	if (cmd > 1)
		return -EINVAL;
	size_t alen = ((size_t)buf[14] << 8) | buf[15];
	if (len < 16 + alen)
		return -EAGAIN;
	out->version = 2;
	out->family = AF_UNSPEC;
	const uint8_t *p = buf + 16;
	uint8_t fam = buf[13] >> 4;
	if (cmd == 1 && fam == 1) {
		if (alen < 12)
			return -EINVAL;
		struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;
		memset(&out->src, 0, sizeof(out->src));
		memset(&out->dst, 0, sizeof(out->dst));
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, p, 4);
		memcpy(&d->sin_addr, p + 4, 4);
		memcpy(&s->sin_port, p + 8, 2);
		memcpy(&d->sin_port, p + 10, 2);
		out->family = AF_INET;
	} else if (cmd == 1 && fam == 2) {
		if (alen < 36)
			return -EINVAL;
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
		memset(&out->src, 0, sizeof(out->src));
		memset(&out->dst, 0, sizeof(out->dst));
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, p, 16);
		memcpy(&d->sin6_addr, p + 16, 16);
		memcpy(&s->sin6_port, p + 32, 2);
		memcpy(&d->sin6_port, p + 34, 2);
		out->family = AF_INET6;
	}
	return (int)(16 + alen);
}

int fg_pp_decode(const uint8_t *buf, size_t len, struct fg_pp_info *out)
{
	memset(out, 0, sizeof(*out));
	size_t cmp = len < 12 ? len : 12;
	if (memcmp(buf, v2_sig, cmp) == 0)
		return len < 12 ? -EAGAIN : decode_v2(buf, len, out);
	cmp = len < 6 ? len : 6;
	if (memcmp(buf, "PROXY ", cmp) == 0)
		return len < 6 ? -EAGAIN : decode_v1(buf, len, out);
	return -EINVAL;
}
