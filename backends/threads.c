/*
 * threads: a persistent pthreads pool. The design — the caller as the
 * last worker, the ticket that publishes a map, self-scheduling, spinning
 * then sleeping between maps — is docs/design.md, "The threads backend".
 *
 * Worker indexes (hooks, mh_worker_index): helper i is worker i, the
 * thread that calls mh_map or mh_stream (whichever it is) the last,
 * workers - 1. Their init hooks run at open, on the opening thread, in
 * index order; their fini at close.
 *
 * Invariant: a helper takes part in map g only if it read the ticket of
 * map g; the caller does not publish map g+1 until every participant of
 * map g has checked out (pending == 0).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "backend.h"

/* How long an idle helper, or the waiting caller, spins before sleeping. */
#define THREADS_SPIN_NS 50000

struct threads_pool {
    int helpers;        /* helper threads started */
    pthread_t *threads;
    const struct mh_config *config; /* the pool's: its hooks */
    void **states;      /* helpers + 1 init states, by worker index */

    pthread_mutex_t lock; /* pairs with wake and idle: no lost wake-ups */
    pthread_cond_t wake;  /* helpers sleep here between maps */
    pthread_cond_t idle;  /* the caller sleeps here until pending == 0 */
    bool shutdown;        /* under lock */

    /* The current map's ticket: generation << 32 | participating helpers.
     * Stored with release after run/next/pending are set, loaded with
     * acquire by helpers, so a helper that sees the ticket sees the map. */
    _Atomic uint64_t ticket;
    struct mh__run *run;
    struct mh__stream *stream; /* the stream, when the ticket is one */
    atomic_size_t next;  /* next chunk to claim (relaxed: a counter only) */
    atomic_int pending;  /* participants not yet checked out (acq_rel:
                          * publishes their outputs to the caller) */
};

struct threads_helper {
    struct threads_pool *pool;
    int id; /* 0 .. helpers-1; takes part when id < the ticket's count */
};

static inline void threads_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claim and run chunks until none are left or the map is stopping. */
static void threads_work(struct threads_pool *tp, struct mh__run *run, bool caller)
{
    for (;;) {
        if (atomic_load_explicit(&run->stop, memory_order_relaxed))
            return;
        size_t c = atomic_fetch_add_explicit(&tp->next, 1, memory_order_relaxed);
        if (c >= run->nchunks)
            return;
        mh__run_chunk(run, c);
        if (caller)
            mh__run_progress(run);
    }
}

/* Wait for a ticket other than seen; returns it, or 0 on shutdown. */
static uint64_t threads_wait_ticket(struct threads_pool *tp, uint64_t seen)
{
    uint64_t start = mh__now_ns();
    for (unsigned spins = 0;; spins++) {
        uint64_t ticket = atomic_load_explicit(&tp->ticket, memory_order_acquire);
        if (ticket != seen)
            return ticket;
        if ((spins & 63) == 63 && mh__now_ns() - start > THREADS_SPIN_NS)
            break;
        threads_cpu_relax();
    }
    pthread_mutex_lock(&tp->lock);
    uint64_t ticket;
    while ((ticket = atomic_load_explicit(&tp->ticket, memory_order_acquire)) == seen &&
           !tp->shutdown)
        pthread_cond_wait(&tp->wake, &tp->lock);
    bool stop = tp->shutdown;
    pthread_mutex_unlock(&tp->lock);
    return stop ? 0 : ticket;
}

static void *threads_helper_main(void *arg)
{
    struct threads_helper *self = arg;
    struct threads_pool *tp = self->pool;

    /* Not the current ticket: a helper that starts late must still take
     * part in a map published before it ran. Tickets are never 0. */
    uint64_t seen = 0;
    for (;;) {
        seen = threads_wait_ticket(tp, seen);
        if (!seen)
            break;
        if (self->id >= (int)(uint32_t)seen)
            continue; /* not needed for this map */
        struct mh__worker previous = mh__worker_enter(self->id, tp->states[self->id]);
        if (tp->stream)
            mh__stream_work(tp->stream, (unsigned)self->id + 1, false);
        else
            threads_work(tp, tp->run, false);
        mh__worker_leave(previous);
        if (atomic_fetch_sub_explicit(&tp->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&tp->lock);
            pthread_cond_signal(&tp->idle);
            pthread_mutex_unlock(&tp->lock);
        }
    }
    return NULL;
}

/* Wait until every participant of the current map has checked out. */
static void threads_wait_idle(struct threads_pool *tp, struct mh__run *run)
{
    uint64_t start = mh__now_ns();
    for (unsigned spins = 0;; spins++) {
        if (atomic_load_explicit(&tp->pending, memory_order_acquire) == 0)
            return;
        if ((spins & 63) == 63 && mh__now_ns() - start > THREADS_SPIN_NS)
            break;
        threads_cpu_relax();
    }
    pthread_mutex_lock(&tp->lock);
    while (atomic_load_explicit(&tp->pending, memory_order_acquire) != 0) {
        if (!run->task->progress) {
            pthread_cond_wait(&tp->idle, &tp->lock);
            continue;
        }
        /* Long waits still report progress, every 100 ms. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        if (pthread_cond_timedwait(&tp->idle, &tp->lock, &until) == ETIMEDOUT) {
            pthread_mutex_unlock(&tp->lock);
            mh__run_progress(run);
            pthread_mutex_lock(&tp->lock);
        }
    }
    pthread_mutex_unlock(&tp->lock);
}

/* Publish run (and stream, for a stream) to helpers of the pool, at most
 * run->workers - 1 of them; returns how many take part. */
static int threads_publish(struct threads_pool *tp, struct mh__run *run,
                           struct mh__stream *stream)
{
    int helpers = run->workers - 1;
    if (helpers > tp->helpers)
        helpers = tp->helpers;

    tp->run = run;
    tp->stream = stream;
    atomic_store_explicit(&tp->next, 0, memory_order_relaxed);
    atomic_store_explicit(&tp->pending, helpers, memory_order_relaxed);
    if (helpers > 0) {
        uint64_t generation = (atomic_load_explicit(&tp->ticket, memory_order_relaxed) >> 32) + 1;
        if ((uint32_t)generation == 0)
            generation = 1; /* ticket 0 means shutdown to a helper */
        pthread_mutex_lock(&tp->lock);
        atomic_store_explicit(&tp->ticket, generation << 32 | (uint32_t)helpers,
                              memory_order_release);
        pthread_mutex_unlock(&tp->lock);
        pthread_cond_broadcast(&tp->wake);
    }
    return helpers;
}

static int threads_map(void *state, struct mh__run *run)
{
    struct threads_pool *tp = state;
    int helpers = threads_publish(tp, run, NULL);
    struct mh__worker previous = mh__worker_enter(tp->helpers, tp->states[tp->helpers]);
    threads_work(tp, run, true);
    mh__worker_leave(previous);
    if (helpers > 0)
        threads_wait_idle(tp, run);
    return MH_OK;
}

/* The calling thread is worker 0 and pumps; helper k is worker k + 1. */
static int threads_stream(void *state, struct mh__stream *st)
{
    struct threads_pool *tp = state;
    int helpers = threads_publish(tp, &st->run, st);
    struct mh__worker previous = mh__worker_enter(tp->helpers, tp->states[tp->helpers]);
    mh__stream_work(st, 0, true);
    mh__worker_leave(previous);
    if (helpers > 0)
        threads_wait_idle(tp, &st->run);
    mh__stream_finish(st);
    return MH_OK;
}

static void threads_stop_helpers(struct threads_pool *tp, int started)
{
    pthread_mutex_lock(&tp->lock);
    tp->shutdown = true;
    pthread_mutex_unlock(&tp->lock);
    pthread_cond_broadcast(&tp->wake);
    for (int i = 0; i < started; i++)
        pthread_join(tp->threads[i], NULL);
}

static void threads_free(struct threads_pool *tp)
{
    pthread_cond_destroy(&tp->idle);
    pthread_cond_destroy(&tp->wake);
    pthread_mutex_destroy(&tp->lock);
    mh__free(tp->threads);
    mh__free(tp);
}

/* Start the helper threads, every signal blocked in them: signals meant
 * for the process go to the caller's threads, never to a pool thread in
 * the middle of a chunk. 0, or MH_EAGAIN with none left running. */
static int threads_start(struct threads_pool *tp, int helpers)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    struct threads_helper *records = (struct threads_helper *)(tp->threads + helpers + 1);
    int started = 0;
    for (; started < helpers; started++) {
        records[started] = (struct threads_helper){.pool = tp, .id = started};
        if (mh__pthread_create(&tp->threads[started], NULL, threads_helper_main,
                           &records[started]))
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started == helpers)
        return MH_OK;
    threads_stop_helpers(tp, started);
    return MH_EAGAIN;
}

static int threads_open(void **state, const struct mh_config *config)
{
    struct threads_pool *tp = mh__calloc(1, sizeof *tp);
    if (!tp)
        return MH_ENOMEM;
    int rc = MH_ENOMEM;
    int helpers = config->workers - 1;
    /* The helper records, then the init states, live right after the
     * thread handles. */
    tp->threads = mh__calloc((size_t)helpers + 1,
                             sizeof(pthread_t) + sizeof(struct threads_helper) +
                                 sizeof(void *));
    if (!tp->threads)
        goto out_free;
    tp->config = config;
    tp->states = (void **)((struct threads_helper *)(tp->threads + helpers + 1) + helpers + 1);
    if (pthread_mutex_init(&tp->lock, NULL))
        goto out_free;
    if (pthread_cond_init(&tp->wake, NULL))
        goto out_mutex;
    if (pthread_cond_init(&tp->idle, NULL))
        goto out_wake;
    atomic_init(&tp->ticket, 0);
    atomic_init(&tp->next, 0);
    atomic_init(&tp->pending, 0);

    /* Every worker's init before any thread starts: a failure leaves no
     * thread to stop. */
    if ((rc = mh__hooks_init_all(config, tp->states, helpers + 1)))
        goto out_idle;
    tp->helpers = helpers;
    if ((rc = threads_start(tp, helpers))) {
        mh__hooks_fini_all(config, tp->states, helpers + 1);
        goto out_idle;
    }
    *state = tp;
    return MH_OK;

out_idle:
    pthread_cond_destroy(&tp->idle);
out_wake:
    pthread_cond_destroy(&tp->wake);
out_mutex:
    pthread_mutex_destroy(&tp->lock);
out_free:
    mh__free(tp->threads);
    mh__free(tp);
    return rc;
}

static void threads_close(void *state, bool owner)
{
    struct threads_pool *tp = state;
    if (!owner) {
        /* A forked child: the helpers do not exist here, and destroying a
         * condition variable they were waiting on would wait for them. */
        mh__free(tp->threads);
        mh__free(tp);
        return;
    }
    threads_stop_helpers(tp, tp->helpers);
    mh__hooks_fini_all(tp->config, tp->states, tp->helpers + 1);
    threads_free(tp);
}

const struct mh_backend_ops mh__backend_threads = {
    .name = "threads",
    .caps = 0,
    .open = threads_open,
    .map = threads_map,
    .close = threads_close,
    .stream = threads_stream,
};
