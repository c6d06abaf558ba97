/* A byte stream over a connected non-blocking socket, as an ops table, so
 * that protocol code (the WebSocket layer, later the tunnel transports)
 * runs one code path over a plain socket or a TLS session (net/tls.h).
 * The caller owns the fg_io that watches stream->fd and asks the stream,
 * after -EAGAIN, which events to wait for: a TLS read can need the socket
 * to be writable and a TLS write can need it readable. One loop, one
 * thread. */
#ifndef FG_NET_STREAM_H
#define FG_NET_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct fg_stream;

struct fg_stream_ops {
	/* Reads up to len (> 0) bytes. Returns the count (> 0), 0 at the end
	 * of the stream, -EAGAIN (nothing now: wait for events()), or another
	 * -errno (-ECONNRESET, -EPROTO for a TLS failure: see error()). */
	ssize_t (*read)(struct fg_stream *s, void *buf, size_t len);
	/* Writes up to len bytes; may write fewer. more: another write follows
	 * at once (MSG_MORE on a plain socket). Returns the count (>= 0),
	 * -EAGAIN, or another -errno. After -EAGAIN the next write must offer
	 * the same bytes again (at least as many): TLS has committed them. */
	ssize_t (*write)(struct fg_stream *s, const void *buf, size_t len, bool more);
	/* The FG_IO_* events to watch so that a read (want_read) and/or a write
	 * (want_write) that returned -EAGAIN can make progress. */
	uint32_t (*events)(const struct fg_stream *s, bool want_read, bool want_write);
	/* A description of the last failure (static or owned by the stream),
	 * or NULL when the errno says it all. */
	const char *(*error)(const struct fg_stream *s);
	/* Ends the stream: a TLS stream sends its close_notify if the socket
	 * takes it now, then the socket is closed and whatever the stream
	 * owns is released. The stream must not be used afterwards. */
	void (*close)(struct fg_stream *s);
};

/* Embedded as the first member by each kind of stream. */
struct fg_stream {
	const struct fg_stream_ops *ops;
	int fd; /* the socket, watched by the caller's fg_io; -1 once closed */
};

/* A plain socket stream, embedded in its user. fd is owned from now on
 * (close() closes it; nothing is freed). */
void fg_stream_plain_init(struct fg_stream *s, int fd);

extern const struct fg_stream_ops fg_stream_plain_ops;

static inline bool fg_stream_is_plain(const struct fg_stream *s)
{
	return s->ops == &fg_stream_plain_ops;
}

#endif
