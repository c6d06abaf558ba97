/* Per-thread pools: pipe pairs for splice(), fixed-size buffers, and a
 * slab of fixed-size objects. None of them is thread-safe: each data-path
 * thread owns its own. */
#ifndef FG_CORE_POOL_H
#define FG_CORE_POOL_H

#include <stddef.h>
#include <stdint.h>

struct fg_pipe {
	int rfd, wfd; /* -1 when empty */
};

struct fg_pipe_pool {
	struct fg_pipe *free; /* owned stack */
	size_t len, cap;
	size_t pipe_size;   /* F_SETPIPE_SZ asked for */
	size_t actual_size; /* what the kernel granted for the last pipe */
	uint64_t created, reused;
};

/* pipe_size 0 keeps the kernel default. cap: how many idle pipes to keep. */
int fg_pipe_pool_init(struct fg_pipe_pool *pp, size_t pipe_size, size_t cap);
void fg_pipe_pool_deinit(struct fg_pipe_pool *pp);
/* Returns 0 or -errno (EMFILE...). */
int fg_pipe_get(struct fg_pipe_pool *pp, struct fg_pipe *out);
/* Returns an EMPTY pipe to the pool (closes it when the pool is full). A
 * pipe that still holds bytes must go to fg_pipe_close instead. */
void fg_pipe_put(struct fg_pipe_pool *pp, struct fg_pipe *p);
void fg_pipe_close(struct fg_pipe *p);

/* Fixed-size buffers. */
struct fg_buf_pool {
	void **free;
	size_t len, cap, buf_size;
};
int fg_buf_pool_init(struct fg_buf_pool *bp, size_t buf_size, size_t cap);
void fg_buf_pool_deinit(struct fg_buf_pool *bp);
void *fg_buf_get(struct fg_buf_pool *bp);
void fg_buf_put(struct fg_buf_pool *bp, void *buf);

/* Slab of fixed-size objects carved from 64-object chunks; memory is kept
 * until fg_slab_deinit. */
struct fg_slab {
	size_t obj_size;
	void *free_list;
	void **chunks;
	size_t nchunks, chunks_cap;
	size_t in_use;
};
void fg_slab_init(struct fg_slab *s, size_t obj_size);
void fg_slab_deinit(struct fg_slab *s);
void *fg_slab_alloc(struct fg_slab *s); /* zeroed; NULL when out of memory */
void fg_slab_free(struct fg_slab *s, void *obj);

#endif
