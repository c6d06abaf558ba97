/* A background thread for work that must not run on a loop: argon2id
 * hashes, file writes. Jobs run one at a time in submission order; each
 * job's done callback runs back on the submitting loop's thread. */
#ifndef FG_CORE_WORK_H
#define FG_CORE_WORK_H

#include <stddef.h>

struct fg_loop;
struct fg_work;

/* run: on the work thread; done: on the loop thread, after run. Both get
 * the job's arg (owned by the submitter until done returns). */
typedef void (*fg_work_fn)(void *arg);

/* max_queued: submissions beyond this many pending jobs are refused. */
struct fg_work *fg_work_new(struct fg_loop *loop, size_t max_queued);
/* Waits for the running job to finish. Jobs still queued, and done
 * callbacks not yet delivered, are dropped without being called: callers
 * that own job args free them in their own teardown. NULL is fine. */
void fg_work_free(struct fg_work *w);

/* Returns 0, -EBUSY when the queue is full, -ENOMEM. */
int fg_work_submit(struct fg_work *w, fg_work_fn run, fg_work_fn done, void *arg);

#endif
