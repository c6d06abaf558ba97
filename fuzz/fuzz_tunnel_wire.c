/* libFuzzer harness for the tunnel's own wire parsers: the WebSocket frame
 * decoder of the ws/wss transports (arbitrary bytes in arbitrary chunks,
 * both masking directions) with a round trip of what the encoder writes,
 * and the stream open header. data[0]: bit 0 server side (frames must be
 * masked), bits 1-7 chunk size seed. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tunnel/config.h"
#include "tunnel/wsframe.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static void decode_arbitrary(const uint8_t *data, size_t size, int server, unsigned seed)
{
	uint8_t *buf = malloc(size ? size : 1);
	memcpy(buf, data, size);
	struct fg_wsf_dec d;
	fg_wsf_dec_init(&d, server);
	size_t off = 0, total = 0;
	int dead = 0;
	while (off < size) {
		size_t chunk = 1 + (seed = seed * 1103515245u + 12345u) % 700;
		if (chunk > size - off)
			chunk = size - off;
		uint8_t *p = buf + off;
		size_t n = chunk;
		while (n) {
			size_t used = 0, dlen = 0;
			uint8_t *dp = NULL;
			int ev = fg_wsf_decode(&d, p, n, &used, &dp, &dlen);
			CHECK(used <= n);
			if (dead)
				CHECK(ev == -EPROTO);
			if (ev < 0) {
				CHECK(ev == -EPROTO && d.why);
				dead = 1;
				break;
			}
			if (ev == FG_WSF_DATA) {
				CHECK(dp >= p && dp + dlen <= p + used && dlen > 0);
				total += dlen;
			}
			if (ev == FG_WSF_PING || ev == FG_WSF_PONG || ev == FG_WSF_CLOSE)
				CHECK(d.ctrl_len <= FG_WSF_CTRL_MAX);
			if (ev == FG_WSF_NEED) {
				CHECK(used == n);
				break;
			}
			p += used;
			n -= used;
		}
		if (dead)
			break;
		off += chunk;
	}
	CHECK(total <= size);
	free(buf);
}

/* Frames the input the way a link does (a client masks), decodes it in
 * chunks and expects the same bytes back. */
static void round_trip(const uint8_t *data, size_t size, int client, unsigned seed)
{
	size_t cap = size + 16 * (size / 100 + 2) + 64;
	uint8_t *wire = malloc(cap), *out = malloc(size + 1);
	size_t w = 0, pos = 0;
	while (pos < size) {
		size_t n = 1 + (seed = seed * 1103515245u + 12345u) % 300;
		if (n > size - pos)
			n = size - pos;
		uint8_t mask[4] = {(uint8_t)seed, (uint8_t)(seed >> 8), (uint8_t)(seed >> 16), 7};
		w += fg_wsf_header(wire + w, FG_WSF_OP_BINARY, n, client ? mask : NULL);
		memcpy(wire + w, data + pos, n);
		if (client)
			fg_wsf_mask(wire + w, n, mask, 0);
		w += n;
		pos += n;
	}
	CHECK(w <= cap);
	struct fg_wsf_dec d;
	fg_wsf_dec_init(&d, client);
	size_t got = 0, off = 0;
	while (off < w) {
		size_t chunk = 1 + (seed = seed * 1103515245u + 12345u) % 97;
		if (chunk > w - off)
			chunk = w - off;
		uint8_t *p = wire + off;
		size_t n = chunk;
		for (;;) {
			size_t used = 0, dlen = 0;
			uint8_t *dp = NULL;
			int ev = fg_wsf_decode(&d, p, n, &used, &dp, &dlen);
			CHECK(ev >= 0);
			if (ev == FG_WSF_DATA) {
				CHECK(got + dlen <= size);
				memcpy(out + got, dp, dlen);
				got += dlen;
			}
			p += used;
			n -= used;
			if (ev == FG_WSF_NEED || !n)
				break;
		}
		off += chunk;
	}
	CHECK(got == size && (size == 0 || memcmp(out, data, size) == 0));
	free(wire);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int server = data[0] & 1;
	unsigned seed = data[0] >> 1;
	decode_arbitrary(data + 1, size - 1, server, seed);
	round_trip(data + 1, size - 1, server, seed);
	uint16_t off;
	int rc = fg_tunnel_open_decode(data + 1, size - 1, &off);
	CHECK(rc == -EAGAIN || rc == -EINVAL || rc == FG_TUNNEL_OPEN_LEN);
	if (rc == FG_TUNNEL_OPEN_LEN) {
		uint8_t b[FG_TUNNEL_OPEN_LEN];
		fg_tunnel_open_encode(off, b);
		CHECK(memcmp(b, data + 1, FG_TUNNEL_OPEN_LEN) == 0);
	}
	return 0;
}
