/* libmicrohttpd on the fg_loop. MHD runs in "external epoll" mode: it keeps
 * its own epoll set, whose fd we watch for readability; every time it is
 * readable, or MHD's timeout expires, we call MHD_run() and re-arm the
 * timer from MHD_get_timeout(). Nothing here blocks. */
#include "server/http.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/loop.h"
#include "net/addr.h"
#include "net/ws_handshake.h"

struct fg_http {
	struct fg_loop *loop;
	struct MHD_Daemon *d;
	fg_http_handler_cb handler;
	void *data;
	size_t max_body;
	bool tls;
	uint16_t port;
	struct fg_io io;
	struct fg_timer timer;
	bool in_run, run_again;
	struct fg_http_req *pending; /* PENDING requests (suspended) */
	char *tls_cert, *tls_key;    /* PEM text, owned */
};

struct hdr {
	struct hdr *next;
	char *name, *value;
};

struct fg_http_req {
	struct fg_http *h;
	struct MHD_Connection *conn;
	const char *method, *url; /* borrowed from MHD, valid for the request */
	char *body;
	size_t body_len, body_cap;
	bool too_big, answered, dispatched, suspended;
	struct MHD_Response *resp;
	int status;
	struct hdr *hdrs;
	char peer[FG_ADDRSTR_MAX];
	void *user;
	void (*user_free)(void *);
	struct fg_http_req *pnext, **pprev; /* in h->pending while suspended */
	/* upgrade */
	fg_http_upgraded_cb up_cb;
	void *up_arg;
};

struct fg_http_upgraded {
	struct fg_http *h;
	struct MHD_UpgradeResponseHandle *urh;
};

static void run(struct fg_http *h);

static void rearm(struct fg_http *h)
{
	MHD_UNSIGNED_LONG_LONG ms;
	if (MHD_get_timeout(h->d, &ms) == MHD_YES)
		fg_timer_start(h->loop, &h->timer, (int64_t)ms * 1000000LL);
	else
		fg_timer_stop(h->loop, &h->timer);
}

/* MHD_run must not nest: a callback that wants a run while one is in
 * progress (a resumed request) gets it right after. */
static void run(struct fg_http *h)
{
	if (h->in_run) {
		h->run_again = true;
		return;
	}
	h->in_run = true;
	do {
		h->run_again = false;
		MHD_run(h->d);
	} while (h->run_again);
	h->in_run = false;
	rearm(h);
}

static void io_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	run(io->data);
}

static void timer_cb(struct fg_loop *loop, struct fg_timer *t)
{
	run(t->data);
}

/* libmicrohttpd hands us its own printf format */
static void __attribute__((format(printf, 2, 0))) mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	fg_log_rl(FG_LOG_WARN, "http: %s", buf);
}

/* ---- requests -------------------------------------------------------- */

static void req_free(struct fg_http_req *r)
{
	if (r->user_free)
		r->user_free(r->user);
	if (r->resp)
		MHD_destroy_response(r->resp);
	for (struct hdr *x = r->hdrs, *n; x; x = n) {
		n = x->next;
		fg_free(x->name);
		fg_free(x->value);
		fg_free(x);
	}
	fg_free(r->body);
	fg_free(r);
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct fg_http_req *r = *con_cls;
	if (!r)
		return;
	*con_cls = NULL;
	req_free(r);
}

static void pending_unlink(struct fg_http_req *r)
{
	if (!r->pprev)
		return;
	*r->pprev = r->pnext;
	if (r->pnext)
		r->pnext->pprev = r->pprev;
	r->pnext = NULL;
	r->pprev = NULL;
}

static int set_response(struct fg_http_req *r, int status, struct MHD_Response *resp)
{
	if (!resp)
		return -ENOMEM;
	for (struct hdr *x = r->hdrs; x; x = x->next)
		MHD_add_response_header(resp, x->name, x->value);
	if (r->resp)
		MHD_destroy_response(r->resp);
	r->resp = resp;
	r->status = status;
	r->answered = true;
	return 0;
}

int fg_http_respond(struct fg_http_req *r, int status, const char *content_type, const void *body,
		    size_t len)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (resp && content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (resp)
		MHD_add_response_header(resp, "Cache-Control", "no-store");
	return set_response(r, status, resp);
}

int fg_http_respond_fd(struct fg_http_req *r, int status, const char *content_type, int fd,
		       uint64_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_fd64(len, fd);
	if (!resp) {
		close(fd);
		return -ENOMEM;
	}
	if (content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	return set_response(r, status, resp);
}

void fg_http_add_header(struct fg_http_req *r, const char *name, const char *value)
{
	struct hdr *x = fg_calloc(1, sizeof(*x));
	if (!x)
		return;
	x->name = fg_strdup(name);
	x->value = fg_strdup(value);
	if (!x->name || !x->value) {
		fg_free(x->name);
		fg_free(x->value);
		fg_free(x);
		return;
	}
	x->next = r->hdrs;
	r->hdrs = x;
}

static enum MHD_Result queue(struct fg_http_req *r)
{
	if (!r->resp) {
		static const char oops[] = "{\"error\":{\"code\":\"internal\",\"message\":\"no "
					   "answer\"}}";
		fg_http_respond(r, 500, "application/json", oops, sizeof(oops) - 1);
		if (!r->resp)
			return MHD_NO;
	}
	return MHD_queue_response(r->conn, (unsigned)r->status, r->resp);
}

static void too_big(struct fg_http_req *r)
{
	char body[160];
	int n = snprintf(body, sizeof(body),
			 "{\"error\":{\"code\":\"too_large\",\"message\":\"request body over %zu "
			 "bytes\"}}",
			 r->h->max_body);
	fg_http_add_header(r, "Connection", "close");
	fg_http_respond(r, 413, "application/json", body, (size_t)n);
}

static void peer_of(struct MHD_Connection *c, char *out, size_t len)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	out[0] = 0;
	if (!ci || !ci->client_addr)
		return;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, ci->client_addr,
	       ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						      : sizeof(struct sockaddr_in));
	fg_addr_unmap(&ss);
	char buf[FG_ADDRSTR_MAX];
	fg_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
	/* drop the port: "1.2.3.4:5" / "[::1]:5" */
	char *colon = strrchr(buf, ':');
	if (colon)
		*colon = 0;
	const char *s = buf;
	if (*s == '[') {
		s++;
		char *rb = strchr(buf, ']');
		if (rb)
			*rb = 0;
	}
	snprintf(out, len, "%s", s);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
				 const char *method, const char *version, const char *upload,
				 size_t *upload_size, void **con_cls)
{
	struct fg_http *h = cls;
	struct fg_http_req *r = *con_cls;
	if (!r) {
		r = fg_calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->h = h;
		r->conn = c;
		r->method = method;
		r->url = url;
		peer_of(c, r->peer, sizeof(r->peer));
		*con_cls = r;
		/* An announced body over the limit is refused before it is read. */
		const char *cl =
		    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > h->max_body) {
			too_big(r);
			return queue(r);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (r->too_big || r->answered)
			return MHD_YES;
		if (r->body_len + n > h->max_body) {
			r->too_big = true;
			fg_free(r->body);
			r->body = NULL;
			r->body_len = r->body_cap = 0;
			return MHD_YES;
		}
		if (r->body_len + n + 1 > r->body_cap) {
			size_t cap = r->body_cap ? r->body_cap : 1024;
			while (cap < r->body_len + n + 1)
				cap *= 2;
			char *nb = fg_malloc(cap);
			if (!nb)
				return MHD_NO;
			if (r->body_len)
				memcpy(nb, r->body, r->body_len);
			fg_free(r->body);
			r->body = nb;
			r->body_cap = cap;
		}
		memcpy(r->body + r->body_len, upload, n);
		r->body_len += n;
		r->body[r->body_len] = 0;
		return MHD_YES;
	}
	if (r->suspended) /* resumed: the answer is ready */
		return queue(r);
	if (r->answered && !r->dispatched)
		return queue(r); /* 413 given up front */
	if (r->too_big) {
		too_big(r);
		return queue(r);
	}
	r->dispatched = true;
	if (h->handler(r, h->data) == FG_HTTP_PENDING && !r->answered) {
		r->suspended = true;
		r->pnext = h->pending;
		if (h->pending)
			h->pending->pprev = &r->pnext;
		h->pending = r;
		r->pprev = &h->pending;
		MHD_suspend_connection(c);
		return MHD_YES;
	}
	return queue(r);
}

void fg_http_resume(struct fg_http_req *r)
{
	if (!r->suspended || !r->pprev)
		return;
	pending_unlink(r);
	MHD_resume_connection(r->conn);
	run(r->h);
}

/* ---- accessors ------------------------------------------------------- */

const char *fg_http_method(const struct fg_http_req *r)
{
	return r->method;
}

const char *fg_http_path(const struct fg_http_req *r)
{
	return r->url;
}

const char *fg_http_query(const struct fg_http_req *r, const char *key)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *fg_http_header(const struct fg_http_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *fg_http_body(const struct fg_http_req *r, size_t *len)
{
	*len = r->body_len;
	return r->body ? r->body : "";
}

const char *fg_http_peer(const struct fg_http_req *r)
{
	return r->peer;
}

void *fg_http_user(const struct fg_http_req *r)
{
	return r->user;
}

void fg_http_set_user(struct fg_http_req *r, void *user, void (*free_fn)(void *))
{
	r->user = user;
	r->user_free = free_fn;
}

/* ---- WebSocket upgrade ----------------------------------------------- */

static bool header_has_token(const char *v, const char *tok)
{
	size_t tl = strlen(tok);
	for (const char *p = v; p && *p;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		const char *e = p;
		while (*e && *e != ',')
			e++;
		const char *t = e;
		while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if ((size_t)(t - p) == tl && strncasecmp(p, tok, tl) == 0)
			return true;
		p = e;
	}
	return false;
}

static void upgrade_cb(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra_in,
		       size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	struct fg_http_req *r = cls;
	struct fg_http_upgraded *u = fg_calloc(1, sizeof(*u));
	/* The callee gets its own descriptor: MHD closes `sock` itself when
	 * the upgraded connection is released. */
	int fd = u ? fcntl(sock, F_DUPFD_CLOEXEC, 3) : -1;
	if (fd < 0) {
		fg_free(u);
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	u->h = r->h;
	u->urh = urh;
	r->up_cb(fd, extra_in, extra_in_size, u, r->up_arg);
}

static void release_deferred(void *p)
{
	struct fg_http_upgraded *u = p;
	MHD_upgrade_action(u->urh, MHD_UPGRADE_ACTION_CLOSE);
	struct fg_http *h = u->h;
	fg_free(u);
	run(h);
}

void fg_http_upgraded_release(struct fg_http_upgraded *u)
{
	/* Never from inside MHD_run (the callee may release synchronously in
	 * the upgrade callback): at the end of this loop iteration. */
	if (fg_loop_defer(u->h->loop, release_deferred, u) < 0)
		release_deferred(u);
}

int fg_http_upgrade_ws(struct fg_http_req *r, fg_http_upgraded_cb cb, void *arg, const char **why)
{
	const char *upgrade = fg_http_header(r, "Upgrade");
	const char *connection = fg_http_header(r, "Connection");
	const char *version = fg_http_header(r, "Sec-WebSocket-Version");
	const char *key = fg_http_header(r, "Sec-WebSocket-Key");
	if (strcmp(r->method, "GET") != 0) {
		*why = "a WebSocket upgrade must be a GET";
		return -EINVAL;
	}
	if (!upgrade || !header_has_token(upgrade, "websocket") || !connection ||
	    !header_has_token(connection, "upgrade")) {
		*why = "expected Upgrade: websocket and Connection: Upgrade";
		return -EINVAL;
	}
	if (!version || strcmp(version, "13") != 0) {
		*why = "Sec-WebSocket-Version must be 13";
		return -EINVAL;
	}
	char accept[FG_WS_ACCEPT_LEN + 1];
	if (!key || strlen(key) != FG_WS_KEY_LEN || fg_ws_accept_key(key, accept) < 0) {
		*why = "missing or malformed Sec-WebSocket-Key";
		return -EINVAL;
	}
	struct MHD_Response *resp = MHD_create_response_for_upgrade(upgrade_cb, r);
	if (!resp) {
		*why = "out of memory";
		return -ENOMEM;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
	MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
	r->up_cb = cb;
	r->up_arg = arg;
	return set_response(r, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
}

/* ---- the daemon ------------------------------------------------------ */

static int read_file(const char *path, char **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > (1u << 20)) {
				snprintf(err, errlen, "%s: file too large for a PEM", path);
				fg_free(buf);
				fclose(f);
				return -EFBIG;
			}
			char *nb = fg_malloc(cap);
			if (!nb) {
				fg_free(buf);
				fclose(f);
				return -ENOMEM;
			}
			if (len)
				memcpy(nb, buf, len);
			fg_free(buf);
			buf = nb;
		}
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	buf[len] = 0;
	*out = buf;
	return 0;
}

static int listen_socket(const char *addr, uint16_t *port, char *err, size_t errlen)
{
	struct fg_endpoint ep;
	const char *why = NULL;
	if (fg_endpoint_parse(addr, true, &ep, &why) < 0 || ep.port_lo != ep.port_hi) {
		snprintf(err, errlen, "--listen \"%s\": %s", addr,
			 why ? why : "expected one IP address and port");
		return -EINVAL;
	}
	int fd = socket(ep.ip.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	fg_addr_set_port((struct sockaddr *)&ep.ip, ep.port_lo);
	if (bind(fd, (struct sockaddr *)&ep.ip, fg_addr_len((struct sockaddr *)&ep.ip)) < 0 ||
	    listen(fd, 1024) < 0) {
		int e = errno;
		snprintf(err, errlen, "listen on %s: %s", addr, strerror(e));
		close(fd);
		return -e;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	*port = fg_addr_port((struct sockaddr *)&ss);
	return fd;
}

struct fg_http *fg_http_new(struct fg_loop *loop, const struct fg_http_opts *o,
			    fg_http_handler_cb handler, void *data, char *err, size_t errlen)
{
	struct fg_http *h = fg_calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = loop;
	h->handler = handler;
	h->data = data;
	h->max_body = o->max_body ? o->max_body : FG_HTTP_DEFAULT_MAX_BODY;
	fg_io_init(&h->io);
	fg_timer_init(&h->timer, timer_cb, h);
	int lfd = -1;
	if (!!o->tls_cert != !!o->tls_key) {
		snprintf(err, errlen, "--tls-cert and --tls-key go together");
		goto err;
	}
	if (o->tls_cert) {
		if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
			snprintf(err, errlen, "this libmicrohttpd has no TLS support");
			goto err;
		}
		if (read_file(o->tls_cert, &h->tls_cert, err, errlen) < 0 ||
		    read_file(o->tls_key, &h->tls_key, err, errlen) < 0)
			goto err;
		h->tls = true;
	}
	lfd = listen_socket(o->listen, &h->port, err, errlen);
	if (lfd < 0)
		goto err;
	unsigned flags =
	    MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
	if (h->tls)
		flags |= MHD_USE_TLS;
	struct MHD_OptionItem opts[] = {
	    {MHD_OPTION_LISTEN_SOCKET, lfd, NULL},
	    {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed_cb, h},
	    {MHD_OPTION_CONNECTION_LIMIT, o->conn_limit ? o->conn_limit : 16000, NULL},
	    {MHD_OPTION_CONNECTION_TIMEOUT, o->timeout_s ? o->timeout_s : 60, NULL},
	    /* headers only: bodies are gathered in our own buffer */
	    {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 16 * 1024, NULL},
	    {MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL},
	    /* without TLS the list ends here */
	    {h->tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, h->tls_cert},
	    {MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key},
	    {MHD_OPTION_END, 0, NULL},
	};
	/* the logger first, or MHD complains on stderr about the order */
	h->d = MHD_start_daemon(flags, 0, NULL, NULL, access_cb, h, MHD_OPTION_EXTERNAL_LOGGER,
				mhd_log, h, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	if (!h->d) {
		snprintf(err, errlen, "could not start the HTTP server on %s%s", o->listen,
			 h->tls ? " (check the certificate and key)" : "");
		goto err;
	}
	lfd = -1; /* the daemon owns it */
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!di || fg_io_start(loop, &h->io, di->epoll_fd, FG_IO_READ, io_cb, h) < 0) {
		snprintf(err, errlen, "could not watch the HTTP server's epoll fd");
		goto err;
	}
	rearm(h);
	return h;
err:
	if (lfd >= 0)
		close(lfd);
	fg_http_free(h);
	return NULL;
}

void fg_http_free(struct fg_http *h)
{
	if (!h)
		return;
	static const char gone[] =
	    "{\"error\":{\"code\":\"unavailable\",\"message\":\"server shutting down\"}}";
	while (h->pending) {
		struct fg_http_req *r = h->pending;
		if (!r->answered)
			fg_http_respond(r, 503, "application/json", gone, sizeof(gone) - 1);
		fg_http_resume(r);
	}
	if (fg_io_active(&h->io))
		fg_io_stop(h->loop, &h->io);
	fg_timer_stop(h->loop, &h->timer);
	if (h->d)
		MHD_stop_daemon(h->d);
	fg_free(h->tls_cert);
	fg_free(h->tls_key);
	fg_free(h);
}

bool fg_http_is_tls(const struct fg_http *h)
{
	return h->tls;
}

uint16_t fg_http_port(const struct fg_http *h)
{
	return h->port;
}
