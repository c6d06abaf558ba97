/* Per-thread pools (core/pool): slab objects, buffers, splice pipes. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/pool.h"

static void assert_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			fail_msg("byte %zu of %zu is 0x%02x, not zero", i, n, b[i]);
}

static void test_slab_alloc_is_zeroed_and_cacheline_aligned(void **s)
{
	struct fg_slab slab;
	fg_slab_init(&slab, 100);
	assert_true(slab.obj_size >= 100);
	void *o = fg_slab_alloc(&slab);
	assert_non_null(o);
	assert_int_equal((uintptr_t)o % 64, 0);
	assert_zero(o, 100);
	assert_int_equal(slab.in_use, 1);
	fg_slab_free(&slab, o);
	assert_int_equal(slab.in_use, 0);
	fg_slab_deinit(&slab);
}

static void test_slab_reuses_freed_objects_and_zeroes_them_again(void **s)
{
	struct fg_slab slab;
	fg_slab_init(&slab, 48);
	unsigned char *a = fg_slab_alloc(&slab);
	memset(a, 0xab, 48);
	fg_slab_free(&slab, a);
	unsigned char *b = fg_slab_alloc(&slab);
	assert_ptr_equal(a, b); /* the most recently freed comes back first */
	assert_zero(b, 48);
	fg_slab_free(&slab, NULL); /* harmless */
	assert_int_equal(slab.in_use, 1);
	fg_slab_free(&slab, b);
	fg_slab_deinit(&slab);
}

static void test_slab_objects_never_overlap_across_chunks(void **s)
{
	enum { N = 1000 }; /* > 64 per chunk and > 16 chunks: both arrays grow */
	struct fg_slab slab;
	fg_slab_init(&slab, 24);
	static unsigned char *o[N];
	for (int i = 0; i < N; i++) {
		o[i] = fg_slab_alloc(&slab);
		assert_non_null(o[i]);
		assert_zero(o[i], 24);
		memset(o[i], i & 0xff, slab.obj_size);
	}
	assert_int_equal(slab.in_use, N);
	for (int i = 0; i < N; i++)
		for (size_t k = 0; k < slab.obj_size; k++)
			assert_int_equal(o[i][k], i & 0xff);
	/* free every other one, allocate again: only freed slots come back */
	for (int i = 0; i < N; i += 2)
		fg_slab_free(&slab, o[i]);
	size_t chunks = slab.nchunks;
	for (int i = 0; i < N; i += 2) {
		unsigned char *p = fg_slab_alloc(&slab);
		assert_zero(p, slab.obj_size);
		assert_int_equal((uintptr_t)p % 64, 0);
	}
	assert_int_equal(slab.nchunks, chunks); /* no new chunk needed */
	for (int i = 1; i < N; i += 2)
		for (size_t k = 0; k < slab.obj_size; k++)
			assert_int_equal(o[i][k], i & 0xff);
	fg_slab_deinit(&slab);
}

static void test_buf_pool_reuses_up_to_cap(void **s)
{
	struct fg_buf_pool bp;
	assert_int_equal(fg_buf_pool_init(&bp, 4096, 2), 0);
	void *a = fg_buf_get(&bp), *b = fg_buf_get(&bp), *c = fg_buf_get(&bp);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	memset(a, 1, 4096);
	fg_buf_put(&bp, a);
	fg_buf_put(&bp, b);
	fg_buf_put(&bp, c); /* over cap: freed (ASan would report a leak otherwise) */
	fg_buf_put(&bp, NULL);
	assert_int_equal(bp.len, 2);
	void *d = fg_buf_get(&bp);
	assert_ptr_equal(d, b);
	fg_buf_put(&bp, d);
	fg_buf_pool_deinit(&bp);
}

static int pipe_size(int fd)
{
	return fcntl(fd, F_GETPIPE_SZ);
}

static void test_pipe_pool_grants_the_requested_size(void **s)
{
	struct fg_pipe_pool pp;
	assert_int_equal(fg_pipe_pool_init(&pp, 1 << 20, 4), 0);
	struct fg_pipe p;
	assert_int_equal(fg_pipe_get(&pp, &p), 0);
	assert_true(p.rfd >= 0 && p.wfd >= 0);
	int sz = pipe_size(p.wfd);
	if (geteuid() == 0) /* above pipe-max-size only root is sure to get it */
		assert_true(sz >= 1 << 20);
	assert_int_equal(pp.actual_size, (size_t)sz);
	assert_true(fcntl(p.rfd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(p.wfd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(p.rfd, F_GETFD) & FD_CLOEXEC);
	/* it is a working pipe */
	assert_int_equal(write(p.wfd, "ping", 4), 4);
	char buf[8];
	assert_int_equal(read(p.rfd, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "ping", 4);
	fg_pipe_put(&pp, &p);
	fg_pipe_pool_deinit(&pp);

	assert_int_equal(fg_pipe_pool_init(&pp, 256 * 1024, 4), 0);
	assert_int_equal(fg_pipe_get(&pp, &p), 0);
	assert_true(pipe_size(p.wfd) >= 256 * 1024);
	fg_pipe_close(&p);
	fg_pipe_pool_deinit(&pp);
}

static void test_pipe_pool_size_0_keeps_kernel_default(void **s)
{
	struct fg_pipe_pool pp;
	assert_int_equal(fg_pipe_pool_init(&pp, 0, 1), 0);
	struct fg_pipe p;
	assert_int_equal(fg_pipe_get(&pp, &p), 0);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(pipe_size(p.wfd), pipe_size(fds[1]));
	assert_int_equal(pp.actual_size, (size_t)pipe_size(fds[1]));
	close(fds[0]);
	close(fds[1]);
	fg_pipe_close(&p);
	assert_int_equal(p.rfd, -1);
	assert_int_equal(p.wfd, -1);
	fg_pipe_pool_deinit(&pp);
}

static void test_pipe_pool_returns_pipes_for_reuse_and_closes_extras(void **s)
{
	struct fg_pipe_pool pp;
	assert_int_equal(fg_pipe_pool_init(&pp, 128 * 1024, 1), 0);
	struct fg_pipe a, b;
	assert_int_equal(fg_pipe_get(&pp, &a), 0);
	assert_int_equal(fg_pipe_get(&pp, &b), 0);
	assert_int_equal(pp.created, 2);
	int a_r = a.rfd, a_w = a.wfd, b_r = b.rfd;
	fg_pipe_put(&pp, &a);
	assert_int_equal(a.rfd, -1); /* the caller's handle is cleared */
	assert_int_equal(a.wfd, -1);
	fg_pipe_put(&pp, &b); /* pool full (cap 1): closed */
	assert_int_equal(b.rfd, -1);
	assert_int_equal(fcntl(b_r, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	struct fg_pipe c;
	assert_int_equal(fg_pipe_get(&pp, &c), 0);
	assert_int_equal(c.rfd, a_r);
	assert_int_equal(c.wfd, a_w);
	assert_int_equal(pp.reused, 1);
	assert_int_equal(pp.created, 2);
	assert_true(pipe_size(c.wfd) >= 128 * 1024);
	fg_pipe_put(&pp, &c);
	fg_pipe_put(&pp, &c); /* an emptied handle is ignored */
	assert_int_equal(pp.len, 1);
	fg_pipe_pool_deinit(&pp); /* closes the pooled pipe */
	assert_int_equal(fcntl(a_r, F_GETFD), -1);
	assert_int_equal(fcntl(a_w, F_GETFD), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_slab_alloc_is_zeroed_and_cacheline_aligned),
	    cmocka_unit_test(test_slab_reuses_freed_objects_and_zeroes_them_again),
	    cmocka_unit_test(test_slab_objects_never_overlap_across_chunks),
	    cmocka_unit_test(test_buf_pool_reuses_up_to_cap),
	    cmocka_unit_test(test_pipe_pool_grants_the_requested_size),
	    cmocka_unit_test(test_pipe_pool_size_0_keeps_kernel_default),
	    cmocka_unit_test(test_pipe_pool_returns_pipes_for_reuse_and_closes_extras),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
