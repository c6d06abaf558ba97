#include "tunnel/wsframe.h"

#include <errno.h>
#include <string.h>

size_t fg_wsf_header(uint8_t out[FG_WSF_HDR_MAX], uint8_t op, uint64_t len, const uint8_t *mask)
{
	size_t n = 0;
	out[n++] = (uint8_t)(0x80 | (op & 0x0f));
	uint8_t m = mask ? 0x80 : 0;
	if (len < 126) {
		out[n++] = (uint8_t)(m | len);
	} else if (len <= 0xffff) {
		out[n++] = m | 126;
		out[n++] = (uint8_t)(len >> 8);
		out[n++] = (uint8_t)len;
	} else {
		out[n++] = m | 127;
		for (int i = 7; i >= 0; i--)
			out[n++] = (uint8_t)(len >> (8 * i));
	}
	if (mask) {
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

void fg_wsf_mask(uint8_t *p, size_t len, const uint8_t mask[4], size_t off)
{
	/* eight bytes at a time (the compiler vectorises it): 8 is a multiple
	 * of the mask's period, so one rotated 64-bit mask fits every word */
	uint8_t m8[8];
	uint64_t m;
	size_t i = 0;
	for (int k = 0; k < 8; k++)
		m8[k] = mask[(off + (size_t)k) & 3];
	memcpy(&m, m8, sizeof(m));
	for (; i + 8 <= len; i += 8) {
		uint64_t v;
		memcpy(&v, p + i, sizeof(v));
		v ^= m;
		memcpy(p + i, &v, sizeof(v));
	}
	for (; i < len; i++)
		p[i] ^= mask[(off + i) & 3];
}

void fg_wsf_dec_init(struct fg_wsf_dec *d, bool expect_masked)
{
	memset(d, 0, sizeof(*d));
	d->expect_masked = expect_masked;
}

static int proto(struct fg_wsf_dec *d, const char *why)
{
	d->why = why;
	return -EPROTO;
}

/* Header length once its first two bytes are known. */
static size_t hdr_need(const uint8_t *h)
{
	size_t n = 2;
	uint8_t l = h[1] & 0x7f;
	if (l == 126)
		n += 2;
	else if (l == 127)
		n += 8;
	if (h[1] & 0x80)
		n += 4;
	return n;
}

static int parse_hdr(struct fg_wsf_dec *d)
{
	const uint8_t *h = d->hdr;
	if (h[0] & 0x70)
		return proto(d, "reserved bits set");
	bool fin = h[0] & 0x80;
	uint8_t op = h[0] & 0x0f;
	d->masked = h[1] & 0x80;
	if (d->masked != d->expect_masked)
		return proto(d, d->masked ? "masked frame from the server"
					  : "unmasked frame from the client");
	uint64_t len = h[1] & 0x7f;
	size_t p = 2;
	if (len == 126) {
		len = (uint64_t)h[2] << 8 | h[3];
		p = 4;
		if (len < 126)
			return proto(d, "non-minimal length");
	} else if (len == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | h[2 + i];
		p = 10;
		if (len <= 0xffff)
			return proto(d, "non-minimal length");
	}
	if (d->masked)
		memcpy(d->mask, h + p, 4);
	switch (op) {
	case FG_WSF_OP_CONT:
	case FG_WSF_OP_BINARY:
		/* the tunnel is a byte stream: fragments are just more bytes */
		if (len > FG_WSF_MAX_PAYLOAD)
			return proto(d, "frame too big");
		break;
	case FG_WSF_OP_CLOSE:
	case FG_WSF_OP_PING:
	case FG_WSF_OP_PONG:
		if (!fin || len > FG_WSF_CTRL_MAX)
			return proto(d, "bad control frame");
		break;
	case FG_WSF_OP_TEXT: return proto(d, "text frame on a binary tunnel");
	default: return proto(d, "unknown opcode");
	}
	d->op = op;
	d->left = len;
	d->mask_off = 0;
	d->ctrl_len = 0;
	d->in_frame = true;
	return 0;
}

int fg_wsf_decode(struct fg_wsf_dec *d, uint8_t *buf, size_t len, size_t *used, uint8_t **data,
		  size_t *dlen)
{
	size_t i = 0;
	*used = 0;
	if (d->why)
		return -EPROTO;
	while (i < len || (d->in_frame && d->left == 0)) {
		if (d->closed)
			return proto(d, "bytes after close");
		if (!d->in_frame) {
			while (i < len && (d->hdr_have < 2 || d->hdr_have < hdr_need(d->hdr)))
				d->hdr[d->hdr_have++] = buf[i++];
			if (d->hdr_have < 2 || d->hdr_have < hdr_need(d->hdr))
				break;
			d->hdr_have = 0;
			int rc = parse_hdr(d);
			if (rc < 0) {
				*used = i;
				return rc;
			}
			continue;
		}
		size_t take = len - i;
		if (take > d->left)
			take = (size_t)d->left;
		if (d->masked)
			fg_wsf_mask(buf + i, take, d->mask, (size_t)(d->mask_off & 3));
		d->mask_off += take;
		d->left -= take;
		if (d->op == FG_WSF_OP_BINARY || d->op == FG_WSF_OP_CONT) {
			if (d->left == 0)
				d->in_frame = false;
			if (take == 0)
				continue; /* an empty frame */
			*data = buf + i;
			*dlen = take;
			*used = i + take;
			return FG_WSF_DATA;
		}
		memcpy(d->ctrl + d->ctrl_len, buf + i, take);
		d->ctrl_len += take;
		i += take;
		if (d->left)
			break;
		d->in_frame = false;
		*used = i;
		if (d->op == FG_WSF_OP_CLOSE) {
			d->closed = true;
			return FG_WSF_CLOSE;
		}
		return d->op == FG_WSF_OP_PING ? FG_WSF_PING : FG_WSF_PONG;
	}
	*used = i;
	return FG_WSF_NEED;
}
