/*
 * Private to the manyhands core (src/). Backends see backends/backend.h,
 * users see include/manyhands.h; neither sees this.
 */
#ifndef MH_INTERNAL_H
#define MH_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "../backends/backend.h"
#include "manyhands.h"
#include "mh_config.h"

/*
 * A pool's cancel state (src/control.c). One cancel ends one run: the
 * current one when a run is published, else the next one to begin.
 * mh_pool_cancel is async-signal-safe: it only touches these atomics and
 * writes one byte to wake[1]. Every access is seq_cst: begin/end and a
 * cancel form a Dekker handshake on current and busy (a cancel either
 * finds the run published, or the run, after publishing, finds busy or
 * pending set), so a cancel never writes into a run that has ended.
 */
struct mh__control {
    atomic_int pending;                /* a cancel that no run has taken */
    _Atomic(struct mh__run *) current; /* the run a cancel ends now */
    atomic_int busy;                   /* cancels between reading current
                                        * and their last store into it */
    atomic_int woken;                  /* wake[0] may hold bytes */
    int wake[2];                       /* MH__CAP_WAKE backends: a
                                        * non-blocking pipe; else -1 */
};

struct mh_pool {
    const struct mh_backend_ops *ops;
    void *state;              /* the backend's */
    struct mh_config config;  /* resolved: backend and workers filled in */
    pid_t owner;              /* process that opened it; others run inline */
    pthread_mutex_t map_lock; /* serialises maps from several threads */
    struct mh__control control;
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

/* The cancel flag of the item loop this thread is in (run->cancel_flag),
 * or NULL: what mh_cancelled() reads. Set by mh__run_items. */
extern MH__TLS_FAST _Thread_local atomic_int *mh__cancel_flag;

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

/*
 * Cancel hooks, for every run a pool makes (maps here; streams too):
 * under the pool's map_lock, mh__control_begin(pool, run) before the
 * backend runs and mh__control_end(pool, run) after it has returned and
 * before run->cancelled is read. begin publishes run as the one a
 * cancel ends (mh_stream sets run->cancel_stop = &ring->stop first, so
 * a cancel stops its ring), gives it the wake pipe (run->cancel_fd), and
 * takes a pending cancel: run->cancelled and *cancel_stop are then set
 * before the backend starts, and begin returns true (a non-collective
 * run may skip its backend: nothing is to start). end unpublishes run
 * and waits for a cancel still writing into it. The run then returns
 * MH_EINTR when run->cancelled is set (collective backends: the code
 * their backend returned). Inline runs (nested, or a forked child) are
 * not published.
 */
int mh__control_open(struct mh__control *control, unsigned caps);
void mh__control_close(struct mh__control *control);
bool mh__control_begin(mh_pool *pool, struct mh__run *run);
void mh__control_end(mh_pool *pool, struct mh__run *run);

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
