/* Types shared by the engine's files (engine.c, tcp.c, udp.c, target.c).
 * Not for use outside src/fwd. */
#ifndef FG_FWD_INTERNAL_H
#define FG_FWD_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/loop-t.h"
#include "core/pool.h"
#include "core/util.h"
#include "fwd/config.h"
#include "fwd/engine.h"
#include "net/bucket.h"
#include "net/resolver.h"

#define FG_MAX_WORKERS	    64
#define FG_MAX_ADDRS	    FG_NAME_MAX_ADDRS
#define FG_PASSIVE_RETRY_NS (10 * FG_NS_PER_SEC)
#define FG_COPY_BUF	    16384

struct fg_engine;
struct fg_worker;
struct fg_fwd;

enum fg_refuse_reason {
	FG_REFUSE_MAX_CONNS = 0,
	FG_REFUSE_PER_IP,
	FG_REFUSE_NO_TARGET,
	FG_REFUSE_N
};

/* Counters written by one worker only (relaxed atomics: readers on the
 * control thread may see a slightly old value, never a torn one). */
struct fg_stats_slot {
	_Atomic uint64_t bytes_up, bytes_down, conns_total;
	_Atomic int64_t active;
	_Atomic uint64_t refused[FG_REFUSE_N];
} __attribute__((aligned(FG_CACHELINE)));

/* Per-target error counter, kept by name across reloads. */
struct fg_target_stats {
	struct fg_target_stats *next;
	char label[FG_HOST_MAX + 16];
	_Atomic uint64_t errors;
};

/* The counters of a forward name; outlives reloads. Refcounted: held by
 * the engine's registry and by every fwd runtime of that name. */
struct fg_stats {
	_Atomic int refs;
	struct fg_stats *next; /* registry list (control thread) */
	char name[FG_NAME_MAX + 1];
	struct fg_target_stats *targets; /* append-only list, control thread adds */
	struct fg_forward_counters snap; /* control thread: the sum one scrape reports */
	struct fg_stats_slot slot[];	 /* one per worker */
};

void fg_stats_add(_Atomic uint64_t *c, uint64_t n);

/* A target of a forward. Read by workers, written by the control thread
 * (resolver, health) and by workers (passive failures) through atomics. */
struct fg_target {
	struct fg_endpoint ep;
	uint32_t key;		       /* hash of the text, for ip-hash */
	struct fg_target_stats *stats; /* borrowed from the fwd's fg_stats */
	_Atomic bool up;
	_Atomic uint32_t fails;	  /* consecutive passive failures */
	_Atomic int64_t retry_at; /* passive: when a down target may be tried */
	_Atomic uint32_t active;  /* open connections */
	/* addresses: seqlock, written by the control thread only */
	_Atomic uint32_t seq;
	uint32_t naddrs;
	struct sockaddr_storage addrs[FG_MAX_ADDRS];
	/* control thread only */
	struct fg_name *name; /* owned; host-name targets while started */
	uint32_t hc_ok, hc_bad;
	int hc_fd;
	struct fg_io hc_io;
	struct fg_timer hc_timer, hc_timeout;
	struct fg_fwd *fwd; /* borrowed back-pointer */
};

/* Per-client-IP connection counts (only when max_conns_per_ip is set).
 * A mutex is taken on accept and close only, never per byte. */
struct fg_ipcount {
	struct fg_ipcount *next;
	struct sockaddr_storage ip;
	uint32_t count;
};
#define FG_IPTABLE_BUCKETS 1024
struct fg_iptable {
	pthread_mutex_t mu;
	struct fg_ipcount *b[FG_IPTABLE_BUCKETS];
};

/* A running forward: immutable config + shared state. Refcounted: the
 * control thread, each worker's listeners, and each connection hold one. */
struct fg_fwd {
	_Atomic int refs;
	struct fg_engine *engine;
	struct fg_forward_cfg cfg;
	struct fg_stats *stats;	   /* counted reference */
	struct fg_target *targets; /* owned array, cfg.ntargets */
	struct fg_bucket up, down; /* aggregate limits */
	_Atomic uint32_t active;   /* for max_conns */
	_Atomic uint64_t rr;
	_Atomic bool closing;	   /* removed: connections close */
	struct fg_iptable *per_ip; /* owned, NULL if no per-IP limit */
	/* listening sockets [worker][port], tcp then udp; -1 when absent.
	 * Created by the control thread, handed to workers. */
	unsigned nports;
	int *tcp_fds, *udp_fds;
	bool ctl_dead; /* control thread dropped it */
	/* a changed forward with the same listen address and protocol takes
	 * over the running one's sockets instead of binding new ones: no
	 * window where the kernel queues a connection on a closing socket */
	bool adopt;
	struct fg_fwd *next; /* engine's running list */
};

void fg_fwd_ref(struct fg_fwd *f);
void fg_fwd_unref(struct fg_fwd *f);

/* ---- workers -------------------------------------------------------- */

struct fg_listener {
	struct fg_io io;
	struct fg_worker *w;
	struct fg_fwd *fwd; /* counted reference */
	uint16_t port;	    /* listen port */
	uint16_t port_idx;
	bool udp;
	struct fg_timer pause; /* tcp: resume after EMFILE */
	struct fg_listener *next;
	struct fg_udp_table *sessions; /* udp only, owned */
};

struct fg_tcp_conn;
struct fg_udp_session;

struct fg_worker {
	unsigned id;
	struct fg_engine *engine;
	struct fg_loop *loop;
	pthread_t thread;
	struct fg_async inbox_async;
	pthread_mutex_t inbox_mu; /* control messages only */
	struct fg_msg *inbox;
	struct fg_listener *listeners;
	struct fg_slab conn_slab, sess_slab;
	struct fg_pipe_pool pipes;
	/* every open tcp conn, for closing a removed forward (udp sessions
	 * belong to their listener and close with it) */
	struct fg_tcp_conn *conns;
	/* udp batch buffers */
	void *udp_bufs;
	/* small TCP reads are copied through here instead of spliced */
	uint8_t copy_buf[FG_COPY_BUF];
};

enum fg_msg_kind { FG_MSG_ADD, FG_MSG_REMOVE, FG_MSG_REPLACE };
struct fg_msg {
	struct fg_msg *next;
	enum fg_msg_kind kind;
	struct fg_fwd *fwd; /* counted reference, moved to the worker */
	struct fg_fwd *old; /* REPLACE: the forward whose listeners fwd takes over (counted) */
};

struct fg_engine {
	struct fg_loop *ctl;
	unsigned nworkers;
	size_t pipe_size;
	struct fg_worker *workers;
	struct fg_fwd *running;
	struct fg_stats *stats;
	struct fg_resolver *resolver;
	fg_engine_metrics_cb metrics_hook; /* extra samples (kernel forwards) */
	void *metrics_hook_data;	   /* borrowed */
};

/* tcp.c */
extern const size_t fg_tcp_conn_size;
void fg_tcp_accept_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events);
/* Closes the worker's connections of forward f (every one if f is NULL). */
void fg_tcp_close_fwd(struct fg_worker *w, struct fg_fwd *f);
void fg_tcp_drain_listener(struct fg_worker *w, struct fg_listener *l);
void fg_tcp_listener_timer_init(struct fg_listener *l);

/* udp.c */
extern const size_t fg_udp_session_size;
int fg_udp_worker_init(struct fg_worker *w);
void fg_udp_worker_deinit(struct fg_worker *w);
int fg_udp_listener_init(struct fg_listener *l);
void fg_udp_listener_deinit(struct fg_listener *l);
void fg_udp_recv_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events);

/* target.c */
/* Picks a target for a client; returns its index or -1. skip: tried ones. */
int fg_target_pick(struct fg_fwd *f, const struct sockaddr *client, uint64_t skip, int64_t now);
/* Copies the address to dial for target t at listen port index port_idx. */
bool fg_target_addr(struct fg_target *t, unsigned port_idx, struct sockaddr_storage *out);
void fg_target_failed(struct fg_fwd *f, struct fg_target *t, int64_t now);
void fg_target_succeeded(struct fg_fwd *f, struct fg_target *t);
void fg_target_init(struct fg_fwd *f, struct fg_target *t, const struct fg_endpoint *ep);
/* Control thread: start/stop resolution and health checks of a forward. */
void fg_targets_start(struct fg_engine *e, struct fg_fwd *f);
void fg_targets_stop(struct fg_engine *e, struct fg_fwd *f);

/* per-IP limits (engine.c) */
bool fg_ip_acquire(struct fg_fwd *f, const struct sockaddr *ip);
void fg_ip_release(struct fg_fwd *f, const struct sockaddr *ip);

#endif
