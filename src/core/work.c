#include "core/work.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include "core/alloc.h"
#include "core/loop.h"

struct job {
	struct job *next;
	fg_work_fn run, done;
	void *arg;
};

struct fg_work {
	struct fg_loop *loop;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *todo_head, **todo_tail; /* waiting to run */
	struct job *done_head;		    /* ran, waiting for the loop (LIFO) */
	size_t queued, max_queued;
	bool stopping;
	struct fg_async wake;
};

static void *work_main(void *p)
{
	struct fg_work *w = p;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->todo_head && !w->stopping)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stopping)
			break;
		struct job *j = w->todo_head;
		w->todo_head = j->next;
		if (!w->todo_head)
			w->todo_tail = &w->todo_head;
		pthread_mutex_unlock(&w->mu);
		j->run(j->arg);
		pthread_mutex_lock(&w->mu);
		j->next = w->done_head;
		w->done_head = j;
		fg_async_send(&w->wake);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Delivers finished jobs in the order they ran. */
static void wake_cb(struct fg_loop *loop, struct fg_async *a)
{
	struct fg_work *w = a->data;
	pthread_mutex_lock(&w->mu);
	struct job *lifo = w->done_head;
	w->done_head = NULL;
	pthread_mutex_unlock(&w->mu);
	struct job *fifo = NULL;
	while (lifo) {
		struct job *n = lifo->next;
		lifo->next = fifo;
		fifo = lifo;
		lifo = n;
	}
	while (fifo) {
		struct job *n = fifo->next;
		pthread_mutex_lock(&w->mu);
		w->queued--;
		pthread_mutex_unlock(&w->mu);
		if (fifo->done)
			fifo->done(fifo->arg);
		fg_free(fifo);
		fifo = n;
	}
}

struct fg_work *fg_work_new(struct fg_loop *loop, size_t max_queued)
{
	struct fg_work *w = fg_calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->loop = loop;
	w->max_queued = max_queued ? max_queued : 64;
	w->todo_tail = &w->todo_head;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (fg_async_init(loop, &w->wake, wake_cb, w) < 0)
		goto err;
	if (pthread_create(&w->thread, NULL, work_main, w) != 0) {
		fg_async_deinit(loop, &w->wake);
		goto err;
	}
	return w;
err:
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	fg_free(w);
	return NULL;
}

static void free_list(struct job *j)
{
	while (j) {
		struct job *n = j->next;
		fg_free(j);
		j = n;
	}
}

void fg_work_free(struct fg_work *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	free_list(w->todo_head);
	free_list(w->done_head);
	fg_async_deinit(w->loop, &w->wake);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	fg_free(w);
}

int fg_work_submit(struct fg_work *w, fg_work_fn run, fg_work_fn done, void *arg)
{
	struct job *j = fg_calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->run = run;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&w->mu);
	if (w->queued >= w->max_queued) {
		pthread_mutex_unlock(&w->mu);
		fg_free(j);
		return -EBUSY;
	}
	w->queued++;
	*w->todo_tail = j;
	w->todo_tail = &j->next;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}
