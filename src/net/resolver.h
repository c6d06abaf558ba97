/* Asynchronous host-name resolution (c-ares) on an event loop.
 *
 * A resolver is one c-ares channel driven by one loop. A name slot keeps
 * the current address list of one host name: it resolves the name, then
 * re-resolves it when the answer's TTL runs out (clamped to 5 s .. 1 h)
 * or 5 s after a failure, and calls its owner back after every lookup.
 * A failed lookup keeps the last good addresses: a DNS hiccup must not
 * cut traffic. Everything here runs on the resolver's loop; nothing is
 * thread-safe. Used by the forward engine (targets) and the tunnel engine
 * (peers' addresses and exits' targets). */
#ifndef FG_NET_RESOLVER_H
#define FG_NET_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/loop-t.h"

#define FG_NAME_MAX_ADDRS  8
#define FG_NAME_MIN_TTL_NS (5 * 1000000000LL)
#define FG_NAME_MAX_TTL_NS (3600 * 1000000000LL)
#define FG_NAME_RETRY_NS   (5 * 1000000000LL)

struct fg_resolver;
struct fg_name;

/* After each lookup of n: err is NULL on success (the addresses are in
 * fg_name_addrs, changed says whether the set differs from the previous
 * one, the first success always counts as a change) or c-ares's text of
 * the failure (the previous addresses are kept, changed is false). next_ns
 * is when the next lookup starts. The callback may free n. */
typedef void (*fg_name_cb)(struct fg_name *n, const char *err, bool changed, int64_t next_ns,
			   void *arg);

/* One c-ares channel on loop (borrowed: it outlives the resolver). Reads
 * resolv.conf / the hosts file order now; the hosts file itself is read at
 * every lookup. NULL on failure. */
struct fg_resolver *fg_resolver_new(struct fg_loop *loop);
/* Cancels pending lookups (their slots stay valid and simply stop
 * refreshing; free them before or after, in any order). NULL is fine. */
void fg_resolver_free(struct fg_resolver *r);

/* A slot for host (copied) on resolver r (borrowed; it must outlive the
 * slot's last lookup, see fg_resolver_free). Does not look anything up
 * before fg_name_start. NULL on allocation failure. */
struct fg_name *fg_name_new(struct fg_resolver *r, const char *host, fg_name_cb cb, void *arg);
/* Starts resolving from the loop (the first callback never runs inside
 * this call). */
void fg_name_start(struct fg_name *n);
/* Stops and frees: no callback runs after this. A lookup in flight is
 * left to finish inside c-ares, which then frees the slot. NULL is fine. */
void fg_name_free(struct fg_name *n);

/* The current addresses (IPv4 ones first, port 0), up to max; returns how
 * many there are in total (0 = none yet). */
size_t fg_name_addrs(const struct fg_name *n, struct sockaddr_storage *out, size_t max);
const char *fg_name_host(const struct fg_name *n);

/* ---- pure parts, exposed for unit tests ----------------------------- */

struct ares_addrinfo_node;
/* Copies the addresses of a c-ares answer into out (IPv4 first, then
 * IPv6, each in answer order, at most max) and sets *ttl_ns to the lowest
 * TTL among them. Returns the count. */
size_t fg_name_collect(const struct ares_addrinfo_node *nodes, struct sockaddr_storage *out,
		       size_t max, int64_t *ttl_ns);
/* When to look up again after an answer with this TTL. */
int64_t fg_name_refresh_ns(int64_t ttl_ns);
/* Whether two address lists hold the same addresses (and ports), in any
 * order: a server rotating its records is not a change. */
bool fg_name_same_set(const struct sockaddr_storage *a, size_t na, const struct sockaddr_storage *b,
		      size_t nb);

#endif
