/*
 * Private to the manyhands core (src/). Backends see backends/backend.h,
 * users see include/manyhands.h; neither sees this.
 */
#ifndef MH_INTERNAL_H
#define MH_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "../backends/backend.h"
#include "manyhands.h"
#include "mh_config.h"

struct mh_pool {
    const struct mh_backend_ops *ops;
    void *state;              /* the backend's */
    struct mh_config config;  /* resolved: backend and workers filled in */
    pid_t owner;              /* process that opened it; others run inline */
    pthread_mutex_t map_lock; /* serialises maps from several threads */
    /* A stream's ring that could not be unmapped, to unmap later (an
     * exchange: inline streams on other threads may leave one too). */
    _Atomic(struct mh__ring *) ring_kept;
};

/*
 * Nesting depth of callbacks on this thread; a map called at depth > 0
 * runs inline. Raised by mh__run_range around every item loop and by
 * mh__map_run around a backend's whole map on the calling thread (its progress and codec callbacks run there). In a
 * process forked after open a map runs inline anyway (pool->owner).
 */
/* initial-exec: one %fs-relative access (a shared library's default
 * model calls __tls_get_addr, and this is read around every item loop). */
#define MH__TLS_FAST __attribute__((tls_model("initial-exec")))
extern MH__TLS_FAST _Thread_local int mh__callback_depth;

/* The built backends, best first, NULL-terminated (src/registry.c). */
extern const struct mh_backend_ops *const mh__registry[];

/* The backend called name, or NULL. */
const struct mh_backend_ops *mh__backend_find(const char *name);

/* Fill out with config (or defaults) resolved against the environment:
 * backend name and ops, workers. 0 or MH_EINVAL / MH_ENOTSUP. */
int mh__config_resolve(const struct mh_config *config,
                       struct mh_config *out,
                       const struct mh_backend_ops **ops);

/* CPUs this process may run on (sched_getaffinity), at least 1. */
int mh__usable_cpus(void);

/* The backend a run on pool uses from here, with its state and worker
 * count: the pool's, or seq inline (one worker, and true: take no lock)
 * inside a callback or in a child forked after open. */
bool mh__pool_runner(const mh_pool *pool, const struct mh_backend_ops **ops, void **state,
                     int *workers);

/* Run task on pool with the given chunk size (0: adaptive). The shared
 * path of mh_map and mh_reduce; validation is the caller's. */
int mh__map_run(mh_pool *pool, const struct mh_task *task, size_t chunk,
                struct mh_report *report);

/* Validation shared by mh_map and mh_reduce: 0, MH_EINVAL or
 * MH_EOVERFLOW. need_out: whether task->out is required. */
int mh__task_check(const struct mh_task *task, bool need_out);

/* Map a ring of slots chunk slots of chunk items, in_size and out_size
 * bytes each, shared with processes forked after (backends/stream.h):
 * 0, MH_EOVERFLOW or MH_ENOMEM. */
int mh__ring_open(struct mh__ring **ring, size_t chunk, size_t slots, size_t in_size,
                  size_t out_size);
/* Unmap ring (NULL: nothing): 0, or -1 with the ring still mapped. */
int mh__ring_close(struct mh__ring *ring);

/* What a map or stream did, from its run, into report (initialised at
 * its start by mh__report_init). */
void mh__report_fill(struct mh_report *report, struct mh__run *run,
                     const struct mh_backend_ops *ops, int rc, double start);

/* An empty report for a call that failed before running anything. */
void mh__report_init(struct mh_report *report, const mh_pool *pool,
                     int code);

#endif /* MH_INTERNAL_H */
