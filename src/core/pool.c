#include "core/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/util.h"

int fg_pipe_pool_init(struct fg_pipe_pool *pp, size_t pipe_size, size_t cap)
{
	memset(pp, 0, sizeof(*pp));
	pp->free = fg_calloc(cap ? cap : 1, sizeof(*pp->free));
	if (!pp->free)
		return -ENOMEM;
	pp->cap = cap;
	pp->pipe_size = pipe_size;
	return 0;
}

void fg_pipe_pool_deinit(struct fg_pipe_pool *pp)
{
	for (size_t i = 0; i < pp->len; i++)
		fg_pipe_close(&pp->free[i]);
	fg_free(pp->free);
	pp->free = NULL;
	pp->len = 0;
}

int fg_pipe_get(struct fg_pipe_pool *pp, struct fg_pipe *out)
{
	if (pp->len) {
		*out = pp->free[--pp->len];
		pp->reused++;
		return 0;
	}
	int fds[2];
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	if (pp->pipe_size) {
		/* May fail for an unprivileged user above pipe-max-size: the
		 * default size still works, only slower. */
		int got = fcntl(fds[1], F_SETPIPE_SZ, (int)pp->pipe_size);
		if (got > 0)
			pp->actual_size = (size_t)got;
	}
	if (!pp->actual_size) {
		int got = fcntl(fds[1], F_GETPIPE_SZ);
		pp->actual_size = got > 0 ? (size_t)got : 65536;
	}
	out->rfd = fds[0];
	out->wfd = fds[1];
	pp->created++;
	return 0;
}

void fg_pipe_close(struct fg_pipe *p)
{
	if (p->rfd >= 0)
		close(p->rfd);
	if (p->wfd >= 0)
		close(p->wfd);
	p->rfd = p->wfd = -1;
}

void fg_pipe_put(struct fg_pipe_pool *pp, struct fg_pipe *p)
{
	if (p->rfd < 0)
		return;
	if (pp->len < pp->cap)
		pp->free[pp->len++] = *p;
	else
		fg_pipe_close(p);
	p->rfd = p->wfd = -1;
}

int fg_buf_pool_init(struct fg_buf_pool *bp, size_t buf_size, size_t cap)
{
	memset(bp, 0, sizeof(*bp));
	bp->free = fg_calloc(cap ? cap : 1, sizeof(void *));
	if (!bp->free)
		return -ENOMEM;
	bp->cap = cap;
	bp->buf_size = buf_size;
	return 0;
}

void fg_buf_pool_deinit(struct fg_buf_pool *bp)
{
	for (size_t i = 0; i < bp->len; i++)
		fg_free(bp->free[i]);
	fg_free(bp->free);
	bp->free = NULL;
	bp->len = 0;
}

void *fg_buf_get(struct fg_buf_pool *bp)
{
	if (bp->len)
		return bp->free[--bp->len];
	return fg_malloc(bp->buf_size);
}

void fg_buf_put(struct fg_buf_pool *bp, void *buf)
{
	if (!buf)
		return;
	if (bp->len < bp->cap)
		bp->free[bp->len++] = buf;
	else
		fg_free(buf);
}

#define SLAB_CHUNK 64

void fg_slab_init(struct fg_slab *s, size_t obj_size)
{
	memset(s, 0, sizeof(*s));
	/* room for the free-list link, and keep objects cache-line aligned */
	obj_size = FG_MAX(obj_size, sizeof(void *));
	s->obj_size = (obj_size + FG_CACHELINE - 1) & ~(size_t)(FG_CACHELINE - 1);
}

void fg_slab_deinit(struct fg_slab *s)
{
	for (size_t i = 0; i < s->nchunks; i++)
		fg_free(s->chunks[i]);
	fg_free(s->chunks);
	memset(s, 0, sizeof(*s));
}

void *fg_slab_alloc(struct fg_slab *s)
{
	if (!s->free_list) {
		if (s->nchunks == s->chunks_cap) {
			size_t ncap = s->chunks_cap ? s->chunks_cap * 2 : 16;
			void **nc = fg_realloc(s->chunks, ncap * sizeof(*nc));
			if (!nc)
				return NULL;
			s->chunks = nc;
			s->chunks_cap = ncap;
		}
		char *chunk = NULL;
		if (posix_memalign((void **)&chunk, FG_CACHELINE, s->obj_size * SLAB_CHUNK) != 0)
			return NULL;
		s->chunks[s->nchunks++] = chunk;
		for (size_t i = SLAB_CHUNK; i-- > 0;) {
			void *o = chunk + i * s->obj_size;
			*(void **)o = s->free_list;
			s->free_list = o;
		}
	}
	void *o = s->free_list;
	s->free_list = *(void **)o;
	memset(o, 0, s->obj_size);
	s->in_use++;
	return o;
}

void fg_slab_free(struct fg_slab *s, void *obj)
{
	if (!obj)
		return;
	*(void **)obj = s->free_list;
	s->free_list = obj;
	s->in_use--;
}
