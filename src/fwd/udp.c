/* UDP data path: one session per client address (per listener socket),
 * each with its own connected upstream socket. Datagrams are read and
 * written in batches (recvmmsg/sendmmsg); replies leave from the address
 * the client sent to, also on a wildcard listener (IP_PKTINFO). */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "fwd/internal.h"
#include "net/addr.h"

#define BATCH	       32
#define DGRAM_MAX      65536
#define CMSG_SPACE_MAX 64

/* Batch buffers, one set per worker (the loop is single-threaded). */
struct udp_bufs {
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_storage names[BATCH];
	union {
		char buf[CMSG_SPACE_MAX];
		struct cmsghdr align;
	} cmsg[BATCH];
	uint8_t data[BATCH][DGRAM_MAX];
};

struct fg_udp_session {
	struct fg_listener *l; /* borrowed: closes its sessions first */
	struct fg_io io;       /* connected upstream socket */
	struct sockaddr_storage client;
	int local_family; /* the address the client sent to */
	struct in_pktinfo local4;
	struct in6_pktinfo local6;
	struct fg_target *target;
	int64_t last_active;
	struct fg_timer timer;	  /* idle */
	struct fg_timer throttle; /* down-direction rate limit */
	bool per_ip_held;
	struct fg_udp_session *hnext;
};

struct fg_udp_table {
	size_t nb, n;
	struct fg_udp_session **b;
	struct fg_timer throttle; /* up-direction rate limit pause */
};

static uint32_t client_hash(const struct sockaddr_storage *ss)
{
	return fg_addr_ip_hash((const struct sockaddr *)ss) ^
	       (fg_addr_port((const struct sockaddr *)ss) * 0x9e3779b1u);
}

static bool client_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	return a->ss_family == b->ss_family &&
	       fg_addr_port((const struct sockaddr *)a) ==
		   fg_addr_port((const struct sockaddr *)b) &&
	       fg_addr_ip_equal((const struct sockaddr *)a, (const struct sockaddr *)b);
}

static struct fg_udp_session *table_find(struct fg_udp_table *t, const struct sockaddr_storage *c)
{
	for (struct fg_udp_session *s = t->b[client_hash(c) & (t->nb - 1)]; s; s = s->hnext)
		if (client_equal(&s->client, c))
			return s;
	return NULL;
}

static void table_grow(struct fg_udp_table *t)
{
	size_t nb = t->nb * 2;
	struct fg_udp_session **b = fg_calloc(nb, sizeof(*b));
	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < t->nb; i++) {
		struct fg_udp_session *s = t->b[i], *next;
		for (; s; s = next) {
			next = s->hnext;
			size_t k = client_hash(&s->client) & (nb - 1);
			s->hnext = b[k];
			b[k] = s;
		}
	}
	fg_free(t->b);
	t->b = b;
	t->nb = nb;
}

static void table_remove(struct fg_udp_table *t, struct fg_udp_session *s)
{
	struct fg_udp_session **pp = &t->b[client_hash(&s->client) & (t->nb - 1)];
	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == s) {
			*pp = s->hnext;
			t->n--;
			return;
		}
	}
}

static struct fg_stats_slot *slot_of(struct fg_listener *l)
{
	return &l->fwd->stats->slot[l->w->id];
}

/* Over the rate: stop reading `io` and resume by timer when the bucket
 * allows a byte again; meanwhile the kernel's socket buffer holds (or
 * drops) what comes. Returns true when paused. */
static bool paused_by_limit(struct fg_loop *loop, struct fg_io *io, struct fg_timer *resume,
			    struct fg_bucket *b, int64_t now)
{
	int64_t wait = fg_bucket_wait_ns(b, 1, now);
	if (wait <= 0)
		return false;
	fg_io_modify(loop, io, 0);
	fg_timer_start(loop, resume, wait);
	return true;
}

/* Timer data: the fg_io that paused_by_limit stopped. */
static void resume_reading_cb(struct fg_loop *loop, struct fg_timer *t)
{
	fg_io_modify(loop, t->data, EPOLLIN);
}

static void sess_free_deferred(void *data)
{
	struct fg_udp_session *s = data;
	fg_slab_free(&s->l->w->sess_slab, s);
}

static void sess_close(struct fg_udp_session *s)
{
	struct fg_listener *l = s->l;
	struct fg_fwd *f = l->fwd;
	struct fg_loop *loop = l->w->loop;
	if (s->io.fd >= 0) {
		int fd = s->io.fd;
		fg_io_stop(loop, &s->io);
		close(fd);
	}
	fg_timer_stop(loop, &s->timer);
	fg_timer_stop(loop, &s->throttle);
	table_remove(l->sessions, s);
	if (s->target)
		atomic_fetch_sub(&s->target->active, 1);
	atomic_fetch_sub(&f->active, 1);
	if (s->per_ip_held)
		fg_ip_release(f, (struct sockaddr *)&s->client);
	struct fg_stats_slot *sl = slot_of(l);
	atomic_store_explicit(&sl->active,
			      atomic_load_explicit(&sl->active, memory_order_relaxed) - 1,
			      memory_order_relaxed);
	fg_loop_defer(loop, sess_free_deferred, s);
}

static void sess_idle_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fg_udp_session *s = t->data;
	int64_t idle = s->l->fwd->cfg.udp_idle_timeout_ns;
	int64_t quiet = fg_loop_now(loop) - s->last_active;
	if (quiet >= idle) {
		sess_close(s);
		return;
	}
	fg_timer_start(loop, t, idle - quiet);
}

/* Replies: upstream socket -> client, from the address the client used. */
static void sess_recv_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(events);
	struct fg_udp_session *s = io->data;
	struct fg_listener *l = s->l;
	struct fg_fwd *f = l->fwd;
	struct udp_bufs *ub = l->w->udp_bufs;
	int64_t now = fg_loop_now(loop);

	if (paused_by_limit(loop, &s->io, &s->throttle, &f->down, now))
		return;
	for (int i = 0; i < BATCH; i++) {
		ub->iov[i] = (struct iovec){ub->data[i], DGRAM_MAX};
		ub->msgs[i].msg_hdr = (struct msghdr){.msg_iov = &ub->iov[i], .msg_iovlen = 1};
	}
	int n = recvmmsg(io->fd, ub->msgs, BATCH, MSG_DONTWAIT, NULL);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		/* ICMP port unreachable from the target surfaces here */
		fg_target_failed(f, s->target, now);
		sess_close(s);
		return;
	}
	for (int i = 0; i < n; i++) {
		ub->iov[i].iov_len = ub->msgs[i].msg_len;
		struct msghdr *h = &ub->msgs[i].msg_hdr;
		h->msg_name = &s->client;
		h->msg_namelen = fg_addr_len((struct sockaddr *)&s->client);
		h->msg_control = ub->cmsg[i].buf;
		struct cmsghdr *cm;
		if (s->local_family == AF_INET) {
			h->msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
			cm = CMSG_FIRSTHDR(h);
			cm->cmsg_level = IPPROTO_IP;
			cm->cmsg_type = IP_PKTINFO;
			cm->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
			struct in_pktinfo pi = {.ipi_spec_dst = s->local4.ipi_addr};
			memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
		} else if (s->local_family == AF_INET6) {
			h->msg_controllen = CMSG_SPACE(sizeof(struct in6_pktinfo));
			cm = CMSG_FIRSTHDR(h);
			cm->cmsg_level = IPPROTO_IPV6;
			cm->cmsg_type = IPV6_PKTINFO;
			cm->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
			memcpy(CMSG_DATA(cm), &s->local6, sizeof(s->local6));
		} else {
			h->msg_control = NULL;
			h->msg_controllen = 0;
		}
	}
	int sent = sendmmsg(l->io.fd, ub->msgs, (unsigned)n, MSG_DONTWAIT);
	uint64_t sent_bytes = 0;
	for (int i = 0; i < sent; i++)
		sent_bytes += ub->msgs[i].msg_len;
	fg_bucket_charge(&f->down, sent_bytes, now);
	fg_stats_add(&slot_of(l)->bytes_down, sent_bytes);
	s->last_active = now;
}

static struct fg_udp_session *sess_open(struct fg_listener *l,
					const struct sockaddr_storage *client, struct msghdr *h,
					int64_t now)
{
	struct fg_fwd *f = l->fwd;
	struct fg_worker *w = l->w;
	struct fg_stats_slot *sl = slot_of(l);
	uint32_t active = atomic_fetch_add(&f->active, 1);
	if (f->cfg.max_conns && active >= f->cfg.max_conns) {
		atomic_fetch_sub(&f->active, 1);
		fg_stats_add(&sl->refused[FG_REFUSE_MAX_CONNS], 1);
		return NULL;
	}
	bool per_ip = false;
	if (f->cfg.max_conns_per_ip) {
		if (!fg_ip_acquire(f, (const struct sockaddr *)client)) {
			atomic_fetch_sub(&f->active, 1);
			fg_stats_add(&sl->refused[FG_REFUSE_PER_IP], 1);
			return NULL;
		}
		per_ip = true;
	}
	struct fg_udp_session *s = fg_slab_alloc(&w->sess_slab);
	if (!s)
		goto err;
	s->l = l;
	s->client = *client;
	s->per_ip_held = per_ip;
	fg_io_init(&s->io);
	fg_timer_init(&s->timer, sess_idle_cb, s);
	fg_timer_init(&s->throttle, resume_reading_cb, &s->io);
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm)) {
		if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
			memcpy(&s->local4, CMSG_DATA(cm), sizeof(s->local4));
			s->local_family = AF_INET;
		} else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
			memcpy(&s->local6, CMSG_DATA(cm), sizeof(s->local6));
			s->local_family = AF_INET6;
		}
	}

	uint64_t tried = 0;
	for (;;) {
		int idx = fg_target_pick(f, (const struct sockaddr *)client, tried, now);
		if (idx < 0) {
			fg_stats_add(&sl->refused[FG_REFUSE_NO_TARGET], 1);
			goto err_free;
		}
		if (idx < 64)
			tried |= 1ull << idx;
		struct fg_target *t = &f->targets[idx];
		struct sockaddr_storage sa;
		if (!fg_target_addr(t, l->port_idx, &sa))
			continue;
		int fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			goto err_free;
		if (connect(fd, (struct sockaddr *)&sa, fg_addr_len((struct sockaddr *)&sa)) < 0 ||
		    fg_io_start(w->loop, &s->io, fd, EPOLLIN, sess_recv_cb, s) < 0) {
			close(fd);
			fg_target_failed(f, t, now);
			continue;
		}
		s->target = t;
		atomic_fetch_add(&t->active, 1);
		break;
	}
	struct fg_udp_table *tb = l->sessions;
	if (tb->n >= tb->nb)
		table_grow(tb);
	size_t k = client_hash(client) & (tb->nb - 1);
	s->hnext = tb->b[k];
	tb->b[k] = s;
	tb->n++;
	s->last_active = now;
	fg_timer_start(w->loop, &s->timer, f->cfg.udp_idle_timeout_ns);
	atomic_store_explicit(&sl->active,
			      atomic_load_explicit(&sl->active, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	fg_stats_add(&sl->conns_total, 1);
	return s;
err_free:
	fg_slab_free(&w->sess_slab, s);
err:
	if (per_ip)
		fg_ip_release(f, (const struct sockaddr *)client);
	atomic_fetch_sub(&f->active, 1);
	return NULL;
}

/* Client datagrams: listener -> session upstream socket. */
void fg_udp_recv_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(events);
	struct fg_listener *l = io->data;
	struct fg_fwd *f = l->fwd;
	struct udp_bufs *ub = l->w->udp_bufs;
	int64_t now = fg_loop_now(loop);

	if (paused_by_limit(loop, io, &l->sessions->throttle, &f->up, now))
		return;
	for (int i = 0; i < BATCH; i++) {
		ub->iov[i] = (struct iovec){ub->data[i], DGRAM_MAX};
		ub->msgs[i].msg_hdr = (struct msghdr){
		    .msg_name = &ub->names[i],
		    .msg_namelen = sizeof(ub->names[i]),
		    .msg_iov = &ub->iov[i],
		    .msg_iovlen = 1,
		    .msg_control = ub->cmsg[i].buf,
		    .msg_controllen = CMSG_SPACE_MAX,
		};
	}
	int n = recvmmsg(io->fd, ub->msgs, BATCH, MSG_DONTWAIT, NULL);
	if (n <= 0)
		return;
	uint64_t bytes = 0;
	for (int i = 0; i < n; i++) {
		struct sockaddr_storage *client = &ub->names[i];
		struct fg_udp_session *s = table_find(l->sessions, client);
		if (!s)
			s = sess_open(l, client, &ub->msgs[i].msg_hdr, now);
		if (!s)
			continue;
		size_t len = ub->msgs[i].msg_len;
		if (send(s->io.fd, ub->data[i], len, MSG_DONTWAIT) < 0) {
			if (errno == ECONNREFUSED) {
				fg_target_failed(f, s->target, now);
				sess_close(s);
			}
			continue; /* EAGAIN: dropped, as the network would */
		}
		bytes += len;
		s->last_active = now;
	}
	fg_bucket_charge(&f->up, bytes, now);
	fg_stats_add(&slot_of(l)->bytes_up, bytes);
}

int fg_udp_worker_init(struct fg_worker *w)
{
	w->udp_bufs = fg_malloc(sizeof(struct udp_bufs));
	return w->udp_bufs ? 0 : -ENOMEM;
}

void fg_udp_worker_deinit(struct fg_worker *w)
{
	fg_free(w->udp_bufs);
	w->udp_bufs = NULL;
}

int fg_udp_listener_init(struct fg_listener *l)
{
	struct fg_udp_table *t = fg_calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->nb = 64;
	t->b = fg_calloc(t->nb, sizeof(*t->b));
	if (!t->b) {
		fg_free(t);
		return -ENOMEM;
	}
	fg_timer_init(&t->throttle, resume_reading_cb, &l->io);
	l->sessions = t;
	return 0;
}

void fg_udp_listener_deinit(struct fg_listener *l)
{
	struct fg_udp_table *t = l->sessions;
	if (!t)
		return;
	for (size_t i = 0; i < t->nb; i++)
		while (t->b[i])
			sess_close(t->b[i]);
	fg_timer_stop(l->w->loop, &t->throttle);
	fg_free(t->b);
	fg_free(t);
	l->sessions = NULL;
}

const size_t fg_udp_session_size = sizeof(struct fg_udp_session);
