#include "net/stream.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop-t.h"

static ssize_t plain_read(struct fg_stream *s, void *buf, size_t len)
{
	ssize_t r;
	do
		r = recv(s->fd, buf, len, 0);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

static ssize_t plain_write(struct fg_stream *s, const void *buf, size_t len, bool more)
{
	ssize_t r;
	do
		r = send(s->fd, buf, len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

static uint32_t plain_events(const struct fg_stream *s, bool want_read, bool want_write)
{
	return (want_read ? FG_IO_READ : 0) | (want_write ? FG_IO_WRITE : 0);
}

static const char *plain_error(const struct fg_stream *s)
{
	return NULL;
}

static void plain_close(struct fg_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

const struct fg_stream_ops fg_stream_plain_ops = {
    .read = plain_read,
    .write = plain_write,
    .events = plain_events,
    .error = plain_error,
    .close = plain_close,
};

void fg_stream_plain_init(struct fg_stream *s, int fd)
{
	s->ops = &fg_stream_plain_ops;
	s->fd = fd;
}
