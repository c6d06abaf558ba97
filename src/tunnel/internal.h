/* Internal types of the tunnel engine (engine.c, link.c, stream.c). The
 * engine is one or more shards (struct tshard), each a complete engine on
 * one loop and one thread: nothing of a shard is locked. What the shards
 * of a node share is in struct tshared (per tunnel: limits) and the
 * node's replay cache (locked inside); everything else the owner thread
 * touches only while the other shards are parked. See doc/tunnel.md. */
#ifndef FG_TUNNEL_INTERNAL_H
#define FG_TUNNEL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/loop.h"
#include "core/pool.h"
#include "net/bucket.h"
#include "net/resolver.h"
#include "net/stream.h"
#include "net/ws_handshake.h"
#include "net/tls.h"
#include "tunnel/aead.h"
#include "tunnel/config.h"
#include "tunnel/engine.h"
#include "tunnel/handshake.h"
#include "tunnel/mux.h"
#include "tunnel/wsframe.h"

#define TQ_CHUNK   16384	/* bytes per queue chunk */
#define TQ_MAX	   (256 * 1024) /* a producer pauses when its queue holds this much */
#define LINK_RBUF  65536
#define LINK_PLAIN 65536 /* plaintext produced per refill of a link's output */
/* wire bytes for `plain` plaintext bytes: AEAD frames, one ws header, and
 * room for the handshake and upgrade messages */
#define LINK_WBUF(plain)                                                                           \
	((plain) + ((plain) / FG_AEAD_MAX_PAYLOAD + 1) * (FG_AEAD_HDR_LEN + FG_AEAD_TAG_LEN) +     \
	 2 * FG_WSF_HDR_MAX + 1024)
#define WS_HEAD_MAX	8192
#define MUX_MAX_STREAMS 16384
#define MUX_CHURN	1000000

/* Open streams of one client IP (entry, when max_conns_per_ip is set). */
struct iprec {
	struct sockaddr_storage ip;
	uint32_t n;
	struct iprec *next;
};
#define IPTAB_SIZE 256

struct tun;
struct link;
struct tstream;

struct tq_chunk {
	struct tq_chunk *next;
	uint32_t off, len;
	uint8_t data[TQ_CHUNK];
};

/* Bytes of one direction of a stream waiting for their consumer. */
struct tq {
	struct tq_chunk *head, *tail;
	size_t bytes;
};

enum ep_kind { EP_NONE = 0, EP_SOCK, EP_MUX, EP_LINK };

/* One side of a stream: side 0 faces the entry (the client socket at an
 * entry), side 1 faces the exit (the target socket at an exit). */
struct ep {
	enum ep_kind kind;
	uint8_t side;
	struct tstream *ts;
	bool eof_in;   /* nothing more will come from this side */
	bool shut_out; /* the end of the other direction was passed on */
	/* EP_SOCK */
	int fd;
	struct fg_io io;
	bool connecting;
	bool can_read, can_write; /* edge-triggered readiness */
	/* EP_MUX, EP_LINK */
	struct link *link;
	struct fg_mux_stream *ms; /* EP_MUX */
};

struct tstream {
	struct tun *tun;
	struct ep ep[2];
	struct tq q[2]; /* q[d]: bytes to write to ep[d] */
	bool started;	/* relay/exit: first bytes seen (open header) */
	bool waiting;	/* in the tunnel's queue for a next-side link */
	bool closed;
	bool counted;	     /* in conns_total / conns_active */
	bool sh_counted;     /* entry: in tun->sh->conns (max_conns) */
	bool pumping, again; /* ts_pump re-entry guard */
	bool check_pending;  /* on the engine's check list */
	bool pump_pending;   /* on the engine's pump list (writes batched) */
	struct tstream *pump_next;
	struct tstream *check_next;
	struct tstream *dead_next;
	uint8_t open_buf[FG_TUNNEL_OPEN_LEN];
	uint8_t open_have;
	uint8_t up_skip; /* open header bytes not to count as client bytes */
	uint16_t port_off;
	unsigned attempts; /* dial attempts (next side) or targets tried (exit) */
	bool key_retried;  /* one more dial after a peer did not know our key */
	size_t target_idx, target_base;
	struct fg_timer timer;		   /* waiting for a link, connecting a target */
	struct fg_timer throttle;	   /* entry: a rate limit said wait */
	struct fg_timer idle;		   /* idle_timeout, re-armed lazily */
	int64_t last_ns;		   /* last byte moved either way */
	struct fg_bucket own_up, own_down; /* entry: per-connection rates */
	struct iprec *iprec;		   /* entry: counted against max_conns_per_ip */
	struct tstream *prev_s, *next_s;   /* tun->streams */
	struct tstream *wprev_s, *wnext_s; /* tun->waitq */
};

enum link_state { LS_CONNECT = 0, LS_TLS, LS_WS, LS_HS, LS_UP, LS_DEAD };

struct peer_slot {
	struct lside *ls;
	size_t idx;
	struct sockaddr_storage addr; /* what a new link dials */
	bool resolved;		      /* addr is valid (IP literal, or the name resolved) */
	bool name_failing;	      /* the last lookup failed (logged once per change) */
	struct fg_name *name;	      /* owned; a host-name address, NULL for an IP */
	char why[64];		      /* the last failure's text, for the health line */
	unsigned want, have;	      /* persistent links wanted / connecting or idle */
	int64_t backoff_ns;
	int64_t down_until_ns; /* per-stream dialing: skip until then */
	struct fg_timer retry;
	/* 0: dial with the link's dial key; k > 0: with its k-th other key,
	 * because the peer refused the dial key as unknown (it has not got a
	 * key rotation's new key yet). Reset when the keys change. */
	unsigned key_alt;
};

/* The runtime of one link config (prev or next) of a tunnel. */
struct lside {
	struct tun *tun;
	const struct fg_tunnel_link_cfg *cfg; /* borrowed from tun->cfg */
	int which;			      /* 0 prev, 1 next */
	int lfd;			      /* listen socket, -1 if dialing */
	struct fg_io lio;
	struct fg_hs_listener_cfg hcfg;
	struct peer_slot *peers;
	size_t npeers;
	unsigned rr;
	struct link *links; /* every link of this side */
	/* the last round trip measured on a link of this side, 0 = none yet:
	 * what fg_tunnel_engine_links reports while no link is up (a
	 * per-stream link's, taken when its handshake finished) */
	int64_t last_rtt_ns;
	/* a dialing side that keeps links up (mux, or a reverse pool): since
	 * when it has had none up, as seen by fg_tunnel_engine_health (loop
	 * ns, 0 = it had one at the last look) */
	int64_t nolink_since_ns;
};

struct link {
	struct tun *tun;
	struct lside *ls;
	struct peer_slot *peer; /* dialer: the peer; NULL when accepted */
	bool dialer;
	bool counted_have; /* counted in peer->have (persistent or pooled) */
	bool counted_up;
	enum link_state state;
	struct fg_io io;
	struct fg_stream plain; /* tcp, ws, aead */
	struct fg_stream *st;	/* &plain or the TLS session's stream */
	struct fg_tls *tls;
	struct fg_tls_hs *tls_hs;
	int pending_fd; /* socket before st exists */
	int dial_errno; /* a dial that failed at once, reported by the timer */
	bool ws;
	struct fg_wsf_dec wsd;
	char ws_key[FG_WS_KEY_LEN + 1];
	char *head; /* upgrade head being read (LS_WS) */
	size_t head_len;
	struct fg_hs_dialer *hd;
	struct fg_hs_listener *hl;
	uint8_t hsbuf[FG_HS_AUTH_MAX + FG_HS_ACCEPT_MAX];
	size_t hslen;
	bool hs_refused;  /* REFUSE queued: close once it is written */
	bool key_unknown; /* dialer: the peer refused our key id as unknown */
	bool aead;
	struct fg_aead_sealer sealer;
	struct fg_aead_opener *opener;
	uint8_t *wbuf; /* from *wpool while bytes wait, else NULL */
	struct fg_buf_pool *wpool;
	size_t woff, wlen;
	bool rd_paused;
	bool busy;	    /* inside link_flush or fg_mux_input: no re-entry */
	bool flush_pending; /* a flush was asked for while in_mux */
	bool shut_pending;  /* send our end of stream once wbuf is empty */
	bool shut_done;
	bool idle;   /* reverse pool link registered, no stream yet */
	bool goaway; /* the peer refuses new mux streams */
	bool rd_eof;
	size_t plain_cap;	/* plaintext per refill */
	size_t wcap;		/* LINK_WBUF(plain_cap) */
	struct fg_timer resume; /* deferred read resume */
	struct link *dead_next;
	struct fg_mux *mux;
	struct ep *single; /* mux off: the one stream's endpoint */
	struct fg_timer timer;
	int64_t up_since_ns;
	struct link *prev_l, *next_l; /* ls->links */
};

/* An exit's target: whether it has an address to dial (an IP literal
 * always does; a host name once its first lookup succeeded). */
struct tname {
	struct tun *tun;
	size_t idx;
	struct fg_name *name; /* owned; NULL for an IP literal */
	bool resolved;
	bool failing; /* the last lookup failed (logged once per change) */
	char why[64]; /* the last failure's text, for the health line */
};

/* What every shard's copy of one running tunnel shares (entry limits):
 * made by apply for each new or restarted tunnel, referenced by each
 * shard's struct tun, freed with the last. Any thread. */
struct tshared {
	int refs;			   /* atomic (__atomic builtins) */
	struct fg_bucket agg_up, agg_down; /* lock-free GCRA words */
	uint64_t conns;			   /* atomic: entry streams counted against max_conns */
	pthread_mutex_t ipmu;		   /* guards iptab and its records */
	struct iprec **iptab;		   /* IPTAB_SIZE chains; NULL without max_conns_per_ip */
};

struct tstats {
	char name[FG_NAME_MAX + 1];
	struct fg_tunnel_counters c;
	int refs;
	struct tstats *next;
};

struct tun {
	struct tshard *e;
	struct fg_tunnel_cfg cfg; /* owned copy */
	struct tstats *stats;
	int *cfds; /* entry: one listen socket per port */
	struct fg_io *cio;
	size_t ncfds;
	struct lside prev, next;
	struct sockaddr_storage *taddr; /* exit: resolved targets */
	struct tname *tnames;		/* exit: per target; NULL when all are IPs */
	struct tshared *sh;		/* counted reference: rates, max_conns, per-ip table */
	unsigned target_rr;
	struct tstream *streams;
	struct tstream *waitq, *waitq_tail;
	bool dying;
	struct tun *next_t;
	struct tun *dead_next;
};

struct tshard {
	struct fg_loop *loop; /* borrowed: the caller's (shard 0) or its thread's */
	/* the engine's, borrowed (shared by every shard: contexts are
	 * thread-safe, and a ticket one shard got resumes on any) */
	struct fg_tls_server *tls_srv;
	struct fg_tls_client *tls_cli;
	struct fg_hs_replay_cache *replay; /* the node's, borrowed from the engine */
	unsigned idx;			   /* shard number; 0 runs on the caller's loop */
	struct fg_buf_pool chunks;
	struct fg_slab streams;
	struct tun *tuns;
	struct tstats *stats;
	uint64_t rng;
	bool reap_scheduled;
	struct fg_timer reap_timer;
	struct tstream *check_list, *dead_streams;
	struct tstream *pump_list; /* socket writes batched during a link read */
	int batching;
	struct link *dead_links;
	struct tun *dead_tuns;
	struct fg_resolver *resolver;	    /* opts' (borrowed) or, if own_resolver, owned */
	bool own_resolver;		    /* made here when a tunnel first named a host */
	uint8_t plain[FG_AEAD_MAX_PAYLOAD]; /* aead open output (reads never nest) */
	uint8_t *rbuf;			    /* LINK_RBUF: every link reads here */
	struct fg_buf_pool wpool[2];	    /* link output: [0] one stream, [1] mux */
	struct fg_buf_pool spool;	    /* plaintext staging for aead/ws */
};

/* engine.c */
void eng_schedule_reap(struct tshard *e);
void set_link_sockopts(int fd, int64_t keepalive_ns);
/* The link came up: remember its socket's round trip on its side. */
void link_note_rtt(struct link *l);

/* stream.c */
void ts_check_later(struct tstream *ts);
void eng_run_pumps(struct tshard *e);
void ts_free(struct tstream *ts);
void tq_clear(struct tshard *e, struct tq *q);
size_t tq_room(struct tshard *e, struct tq *q, uint8_t **p);
void tq_commit(struct tq *q, size_t n);
void tq_drop(struct tshard *e, struct tq *q, size_t n);
struct tstream *ts_new(struct tun *t);
void ts_close(struct tstream *ts, bool reset);
void ts_input(struct tstream *ts, int side, const uint8_t *p, size_t n);
void ts_eof_in(struct ep *ep);
/* The consumer ep[d] took n bytes of q[d] out: counters, credit, resume. */
void ts_consumed(struct tstream *ts, int d, size_t n);
void ts_check_done(struct tstream *ts);
/* Bytes waiting in q[ep->side] may now go to ep. */
void ep_kick_out(struct ep *ep);
size_t tq_take(struct tshard *e, struct tq *q, uint8_t *out, size_t max);
void ts_attach_next(struct tstream *ts);
void tun_drain_waitq(struct tun *t);
void entry_accept_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events);
void ep_sock_start(struct ep *ep, int fd, bool connecting);

/* link.c */
extern const struct fg_mux_ops link_mux_ops;
struct link *link_dial(struct lside *ls, struct peer_slot *p, struct ep *single);
void link_accept_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events);
void link_flush(struct link *l);
void link_resume(struct link *l);
void link_close(struct link *l, const char *why);
void lside_ensure(struct lside *ls);
void lside_stop(struct lside *ls);
/* A pooled reverse link got its first stream bytes: dial a replacement. */
void link_used(struct link *l);
void link_free_deferred(struct link *l);
int key_lookup_cb(void *arg, uint32_t key_id, uint8_t *psk, size_t *psk_len);
uint64_t eng_rand(struct tshard *e);

#endif
