/* WebSocket (RFC 6455) framing for the ws/wss tunnel transports: a byte
 * stream carried in binary frames, without wslay's message queue, so the
 * link keeps its own bounded buffers and back-pressure. Pure over (buf,
 * len): no socket, no RNG (the caller passes masking keys).
 *
 * The decoder unmasks payload in place and hands out payload spans; it
 * answers nothing itself but reports pings (the owner sends the pong) and
 * close frames (the end of the stream). */
#ifndef FG_TUNNEL_WSFRAME_H
#define FG_TUNNEL_WSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FG_WSF_HDR_MAX	 14 /* 2 + 8 (64-bit length) + 4 (mask) */
#define FG_WSF_CTRL_MAX	 125
#define FG_WSF_OP_CONT	 0x0
#define FG_WSF_OP_TEXT	 0x1
#define FG_WSF_OP_BINARY 0x2
#define FG_WSF_OP_CLOSE	 0x8
#define FG_WSF_OP_PING	 0x9
#define FG_WSF_OP_PONG	 0xA
/* The largest frame payload a decoder accepts (a peer announcing more is
 * refused: our own frames are at most 64 KiB). */
#define FG_WSF_MAX_PAYLOAD (1u << 20)

/* Writes a frame header for a FIN frame of opcode op and len payload
 * bytes; masked when mask is non-NULL (client to server). Returns its
 * length (2..14). */
size_t fg_wsf_header(uint8_t out[FG_WSF_HDR_MAX], uint8_t op, uint64_t len, const uint8_t *mask);
/* XORs len bytes with the 4-byte mask, starting at mask offset off. */
void fg_wsf_mask(uint8_t *p, size_t len, const uint8_t mask[4], size_t off);

enum fg_wsf_ev {
	FG_WSF_NEED = 0, /* all input consumed, no complete item */
	FG_WSF_DATA,	 /* payload span (unmasked, in the caller's buffer) */
	FG_WSF_PING,	 /* a ping: answer with a pong carrying ctrl[0..ctrl_len) */
	FG_WSF_PONG,
	FG_WSF_CLOSE, /* the peer closed: end of stream */
};

struct fg_wsf_dec {
	bool expect_masked; /* server side: every frame must be masked */
	uint8_t hdr[FG_WSF_HDR_MAX];
	size_t hdr_have;
	uint8_t op;    /* of the current frame */
	uint64_t left; /* payload bytes still to come */
	uint8_t mask[4];
	bool masked;
	uint64_t mask_off;
	bool in_frame;
	bool closed;
	uint8_t ctrl[FG_WSF_CTRL_MAX];
	size_t ctrl_len;
	const char *why; /* static: why -EPROTO */
};

void fg_wsf_dec_init(struct fg_wsf_dec *d, bool expect_masked);
/* Consumes bytes of buf[0..len) (payload is unmasked in place). Sets
 * *used to the bytes consumed and returns an event: FG_WSF_DATA with
 * (*data, *dlen) a span inside buf; FG_WSF_PING/PONG/CLOSE (control
 * payload in d->ctrl); FG_WSF_NEED once everything is consumed. Call again
 * with the rest. Returns -EPROTO (d->why says why) for a protocol
 * violation: reserved bits, unknown or text opcode, a fragmented or
 * oversized control frame, a payload above FG_WSF_MAX_PAYLOAD, a
 * non-minimal length, a wrong masking direction, bytes after close. */
int fg_wsf_decode(struct fg_wsf_dec *d, uint8_t *buf, size_t len, size_t *used, uint8_t **data,
		  size_t *dlen);

#endif
