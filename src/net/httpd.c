#include "net/httpd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/loop.h"
#include "core/util.h"
#include "net/addr.h"
#include "net/http_req.h"

#define CLIENT_TIMEOUT_NS (10 * FG_NS_PER_SEC)
#define MAX_CLIENTS	  64

struct client {
	struct fg_httpd *h;
	struct fg_io io;
	struct fg_timer timer;
	char in[FG_HTTP_MAX_HEAD];
	size_t inlen;
	struct fg_strbuf out;
	size_t outoff;
	struct client *next, *prev;
};

struct fg_httpd {
	struct fg_loop *loop;
	struct fg_io lio;
	fg_httpd_handler_cb cb;
	void *data;
	struct client *clients;
	unsigned nclients;
};

static void client_free_deferred(void *p)
{
	struct client *c = p;
	fg_strbuf_deinit(&c->out);
	fg_free(c);
}

static void client_close(struct client *c)
{
	struct fg_httpd *h = c->h;
	int fd = c->io.fd;
	fg_io_stop(h->loop, &c->io);
	close(fd);
	fg_timer_stop(h->loop, &c->timer);
	if (c->prev)
		c->prev->next = c->next;
	else
		h->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->nclients--;
	fg_loop_defer(h->loop, client_free_deferred, c);
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	default: return "Internal Server Error";
	}
}

static void respond(struct client *c, int status, struct fg_strbuf *body, const char *ctype)
{
	fg_strbuf_printf(&c->out,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 status, reason(status), ctype, body->len);
	if (body->len)
		fg_strbuf_append(&c->out, body->s, body->len);
	fg_io_modify(c->h->loop, &c->io, EPOLLOUT);
}

static void client_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(loop);
	FG_UNUSED(events);
	struct client *c = io->data;
	if (c->out.len) {
		while (c->outoff < c->out.len) {
			ssize_t n = send(io->fd, c->out.s + c->outoff, c->out.len - c->outoff,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				c->outoff += (size_t)n;
			else if (n < 0 && errno == EAGAIN)
				return;
			else
				break;
		}
		client_close(c);
		return;
	}
	ssize_t n = recv(io->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN)) {
		client_close(c);
		return;
	}
	if (n < 0)
		return;
	c->inlen += (size_t)n;
	struct fg_http_req req;
	int rc = fg_http_req_parse(c->in, c->inlen, &req);
	if (rc == -EAGAIN)
		return;
	struct fg_strbuf body;
	fg_strbuf_init(&body);
	const char *ctype = "text/plain; charset=utf-8";
	int status;
	if (rc == -E2BIG) {
		status = 431;
	} else if (rc < 0) {
		status = 400;
		fg_strbuf_puts(&body, "bad request\n");
	} else {
		status = c->h->cb(c->h->data, req.method, req.path, &body, &ctype);
	}
	respond(c, status, &body, ctype);
	fg_strbuf_deinit(&body);
}

static void client_timeout_cb(struct fg_loop *loop, struct fg_timer *t)
{
	FG_UNUSED(loop);
	client_close(t->data);
}

static void accept_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(events);
	struct fg_httpd *h = io->data;
	for (;;) {
		int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (h->nclients >= MAX_CLIENTS) {
			close(fd);
			continue;
		}
		struct client *c = fg_calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->h = h;
		fg_strbuf_init(&c->out);
		fg_timer_init(&c->timer, client_timeout_cb, c);
		if (fg_io_start(loop, &c->io, fd, EPOLLIN, client_cb, c) < 0) {
			close(fd);
			fg_free(c);
			continue;
		}
		fg_timer_start(loop, &c->timer, CLIENT_TIMEOUT_NS);
		c->next = h->clients;
		if (h->clients)
			h->clients->prev = c;
		h->clients = c;
		h->nclients++;
	}
}

struct fg_httpd *fg_httpd_new(struct fg_loop *loop, const char *addr, fg_httpd_handler_cb cb,
			      void *data, char *err, size_t errlen)
{
	struct fg_endpoint ep;
	const char *why;
	if (fg_endpoint_parse(addr, true, &ep, &why) < 0 || ep.port_lo != ep.port_hi) {
		snprintf(err, errlen, "\"%s\": %s", addr, why ? why : "one port expected");
		return NULL;
	}
	fg_addr_set_port((struct sockaddr *)&ep.ip, ep.port_lo);
	int fd = socket(ep.ip.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ep.ip, fg_addr_len((struct sockaddr *)&ep.ip)) < 0 ||
	    listen(fd, 64) < 0) {
		snprintf(err, errlen, "\"%s\": %s", addr, strerror(errno));
		close(fd);
		return NULL;
	}
	struct fg_httpd *h = fg_calloc(1, sizeof(*h));
	if (!h) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = loop;
	h->cb = cb;
	h->data = data;
	if (fg_io_start(loop, &h->lio, fd, EPOLLIN, accept_cb, h) < 0) {
		close(fd);
		fg_free(h);
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		return NULL;
	}
	return h;
}

void fg_httpd_free(struct fg_httpd *h)
{
	if (!h)
		return;
	while (h->clients)
		client_close(h->clients);
	int fd = h->lio.fd;
	fg_io_stop(h->loop, &h->lio);
	close(fd);
	fg_free(h);
}
