/*
 * Cancel: mh_pool_cancel, mh_cancelled, and the handshake by which a run
 * becomes the one a cancel ends (docs/design.md, "Cancel"). The rule is
 * the core's: a cancel sets the run's cancelled and stop flags; backends
 * only poll stop (and, when they sleep, the wake pipe) and act.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include "internal.h"

MH__TLS_FAST _Thread_local atomic_int *mh__cancel_flag;

int mh__control_open(struct mh__control *control, unsigned caps)
{
    atomic_init(&control->pending, 0);
    atomic_init(&control->current, NULL);
    atomic_init(&control->busy, 0);
    atomic_init(&control->woken, 0);
    control->wake[0] = control->wake[1] = -1;
    if (!(caps & MH__CAP_WAKE))
        return MH_OK;
    /* Non-blocking both ends: a cancel never waits on a full pipe (one
     * byte already there wakes the poll), a drain stops at empty. */
    if (mh__pipe2(control->wake, O_CLOEXEC | O_NONBLOCK))
        return mh__errno_code(errno);
    return MH_OK;
}

void mh__control_close(struct mh__control *control)
{
    if (control->wake[0] < 0)
        return;
    close(control->wake[0]);
    close(control->wake[1]);
}

void mh__run_cancel(struct mh__run *run)
{
    /* Relaxed: "stop soon" flags; the core reads cancelled only after
     * the backend returned (its threads joined, or mh__control_end). */
    atomic_store_explicit(&run->cancelled, 1, memory_order_relaxed);
    atomic_store_explicit(run->cancel_stop, 1, memory_order_relaxed);
}

void mh_pool_cancel(mh_pool *pool)
{
    if (!pool)
        return;
    struct mh__control *control = &pool->control;
    int saved = errno; /* a signal handler must leave errno as it was */
    /* seq_cst, all: see struct mh__control. busy first, so that a run
     * ending cannot return (and free its run) while we write into it. */
    atomic_fetch_add(&control->busy, 1);
    struct mh__run *run = atomic_load(&control->current);
    if (run)
        mh__run_cancel(run);
    else
        atomic_store(&control->pending, 1);
    atomic_fetch_sub(&control->busy, 1);
    if (control->wake[1] >= 0) {
        atomic_store(&control->woken, 1);
        char byte = 1;
        (void)!mh__write(control->wake[1], &byte, 1); /* full: already readable */
    }
    errno = saved;
}

int mh_cancelled(void)
{
    atomic_int *flag = mh__cancel_flag;
    /* Relaxed: a poll; a stale 0 only runs a little longer. */
    return flag ? atomic_load_explicit(flag, memory_order_relaxed) : 0;
}

void mh__cancel_drain(int fd)
{
    char bytes[64];
    for (;;) {
        ssize_t got = mh__read(fd, bytes, sizeof bytes);
        if (got > 0 || (got < 0 && errno == EINTR))
            continue;
        return; /* empty (EAGAIN), or a failure a later poll retries */
    }
}

/* Wait until no cancel is between its read of current and its stores:
 * a few instructions, unless one was preempted there. */
static void control_quiesce(struct mh__control *control)
{
    while (atomic_load(&control->busy) != 0)
        sched_yield();
}

bool mh__control_begin(mh_pool *pool, struct mh__run *run)
{
    struct mh__control *control = &pool->control;
    run->cancel_fd = control->wake[0];
    /* Bytes of cancels that ended earlier runs (or none): a poll must
     * wake only for a cancel of this run. */
    if (control->wake[0] >= 0 && atomic_exchange(&control->woken, 0))
        mh__cancel_drain(control->wake[0]);
    atomic_store(&control->current, run);
    /* A cancel that read current before we published it stores pending:
     * wait for it, then take it. */
    control_quiesce(control);
    if (!atomic_exchange(&control->pending, 0))
        return false;
    mh__run_cancel(run);
    return true;
}

void mh__control_end(mh_pool *pool, struct mh__run *run)
{
    (void)run;
    struct mh__control *control = &pool->control;
    atomic_store(&control->current, NULL);
    control_quiesce(control);
}
