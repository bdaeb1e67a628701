/*
 * openmp: one `parallel` region per map, whose threads claim chunk
 * indices from one counter (dynamic self-scheduling, as threads does).
 * Each claim is one chunk of the size the core chose, run by
 * mh__run_chunk, so the item loop, status array and failure recording
 * are the very code every other backend uses.
 *
 * The team belongs to the OpenMP runtime, not to the pool: libgomp keeps
 * one team of idle threads per calling thread and reuses it from one
 * region to the next. The pool holds only its config (for the hooks); close hands the
 * calling thread's team back (omp_pause_resource_all), so that a closed
 * pool leaves no thread behind and a later fork starts from a clean
 * runtime (GCC PR 60035, see docs/backends.md).
 *
 * After a failure under MH_STOP or a cancel, each thread leaves its claim
 * loop at its next look at run->stop.
 *
 * Per-worker hooks run per map or stream, in each team thread (worker
 * index: its thread number): every thread's init, a barrier, then items
 * only if every init succeeded; each thread's fini after its last item.
 *
 * libgomp cannot fail to start a team: when pthread_create fails it
 * prints "Thread creation failed" and calls exit(1). So before a region
 * that would start threads, the backend starts as many itself (a probe)
 * and returns MH_EAGAIN, having run nothing, when they cannot all be had.
 * libgomp starts threads only when a team grows past the one this thread
 * last had (it keeps that team's threads, and lets surplus ones exit when
 * a smaller team follows), so a map of the last map's size probes nothing.
 */
#define _GNU_SOURCE /* gettid */
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#include "backend.h"

/*
 * The process in which this thread last started an OpenMP team for a map,
 * or 0 when it holds none (none yet, or released by close). Thread-local,
 * like libgomp's own pointer to the team, and copied by fork() with the
 * thread that forks. A child that finds another pid here has inherited a
 * team whose threads do not exist in it: libgomp would wait for them
 * forever (GCC PR 60035), so its maps run on the calling thread alone.
 * It cannot see teams that the program's own OpenMP code started: see
 * docs/backends.md.
 */
static _Thread_local pid_t openmp_team_pid;
/* The size of the team libgomp keeps for this thread after its last map
 * here (0: none known). Teams the program's own OpenMP code starts on
 * this thread are not seen: see docs/backends.md. */
static _Thread_local int openmp_team_size;

/* Probe threads, alive together until the probe ends. */
struct openmp_probe {
    pthread_mutex_t lock; /* guards done and tids */
    pthread_cond_t go;
    bool done;
    size_t started;
    pid_t *tids; /* kernel ids of the threads started, by start order */
};

static void *openmp_probe_thread(void *arg)
{
    struct openmp_probe *probe = arg;
    pthread_mutex_lock(&probe->lock);
    probe->tids[probe->started++] = gettid();
    while (!probe->done)
        pthread_cond_wait(&probe->go, &probe->lock);
    pthread_mutex_unlock(&probe->lock);
    return NULL;
}

/* Wait (a bounded while) until the kernel has let go of thread tid: a
 * joined thread still counts against RLIMIT_NPROC until it is reaped,
 * just after it leaves /proc. */
static void openmp_probe_gone(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld", (long)tid);
    for (int i = 0; i < 100000 && access(path, F_OK) == 0; i++)
        sched_yield();
}

/* Whether `count` more threads can run at once: start them, end them,
 * wait until they no longer count. 0, MH_EAGAIN or MH_ENOMEM. */
static int openmp_probe(int count)
{
    pthread_t *threads = mh__calloc((size_t)count, sizeof *threads + sizeof(pid_t));
    if (!threads)
        return MH_ENOMEM;
    struct openmp_probe probe = {
        .lock = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
        .tids = (pid_t *)(threads + count),
    };
    int started = 0, rc = MH_OK;
    while (started < count && !rc)
        if (mh__pthread_create(&threads[started], NULL, openmp_probe_thread, &probe) == 0)
            started++;
        else
            rc = MH_EAGAIN;
    pthread_mutex_lock(&probe.lock);
    probe.done = true;
    pthread_cond_broadcast(&probe.go);
    pthread_mutex_unlock(&probe.lock);
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    for (size_t t = 0; t < probe.started; t++)
        openmp_probe_gone(probe.tids[t]);
    mh__free(threads);
    return rc;
}

static int openmp_open(void **state, const struct mh_config *config)
{
    /* The team is the runtime's (run->workers sizes it): the state is
     * the pool's own config, for its hooks; it lives as long as the pool. */
    *state = (void *)config;
    return MH_OK;
}

/* In team thread me, at the region's start: its init hook, then, with an
 * init hook, a barrier, so that no thread starts an item before every
 * init has run. Whether every thread's init succeeded; *ready: whether
 * this one's did (then its fini is due). init_failed is the team's flag
 * (relaxed: set before the barrier, read after it; the barrier orders). */
static bool openmp_hooks_start(const struct mh_config *config, int me, void **hook_state,
                               bool *ready, atomic_int *init_failed)
{
    *ready = mh__hook_init(config, me, hook_state) == MH_OK;
    if (!*ready)
        atomic_store_explicit(init_failed, 1, memory_order_relaxed);
    if (config->init) {
#pragma omp barrier
    }
    return !atomic_load_explicit(init_failed, memory_order_relaxed);
}

/* A one-thread team: seq's map or stream as worker 0, with its hooks. */
static int openmp_alone(const struct mh_config *config, struct mh__run *run,
                        struct mh__stream *st)
{
    void *hook_state;
    if (mh__hook_init(config, 0, &hook_state))
        return MH_EINIT;
    struct mh__worker previous = mh__worker_enter(0, hook_state);
    int rc = st ? mh__backend_seq.stream(NULL, st) : mh__backend_seq.map(NULL, run);
    mh__worker_leave(previous);
    mh__hook_fini(config, 0, hook_state);
    return rc;
}

/* Get ready for a team of *workers threads: 1 in a forked child (see
 * openmp_team_pid); probe for the threads libgomp would start. 0 or
 * MH_EAGAIN / MH_ENOMEM, having run nothing. */
static int openmp_team_ready(int *workers)
{
    const pid_t self = getpid();
    if (openmp_team_pid && openmp_team_pid != self)
        *workers = 1; /* a forked child: see openmp_team_pid */
    if (*workers <= 1)
        return MH_OK;
    /* Threads libgomp would start: past the team this thread keeps, or
     * a whole team when nested (libgomp reuses no threads there). */
    int known = omp_get_level() == 0 ? openmp_team_size : 0;
    if (*workers > known) {
        int rc = openmp_probe(*workers - (known > 1 ? known : 1));
        if (rc)
            return rc;
    }
    openmp_team_pid = self;
    return MH_OK;
}

/* The team's size after a region, for openmp_team_ready's next probe. */
static void openmp_team_done(int team)
{
    if (omp_get_level() == 0)
        openmp_team_size = team;
}

static int openmp_map(void *state, struct mh__run *run)
{
    const struct mh_config *config = state;
    const size_t nchunks = run->nchunks;
    int rc = openmp_team_ready(&run->workers);
    if (rc)
        return rc;
    if (run->workers <= 1)
        return openmp_alone(config, run, NULL); /* a region would cost for nothing */

    int team = 0;
    atomic_size_t next = 0; /* next chunk to claim (relaxed: a counter only) */
    atomic_int init_failed = 0;
#pragma omp parallel num_threads(run->workers)
    {
        const int me = omp_get_thread_num();
        const bool caller = me == 0;
        if (caller)
            team = omp_get_num_threads();
        void *hook_state = NULL;
        bool ready;
        const bool run_items = openmp_hooks_start(config, me, &hook_state, &ready, &init_failed);
        struct mh__worker previous = mh__worker_enter(me, hook_state);
        /* A claim counter, not `omp for`: a stopped map (a failure, a
         * cancel) leaves at once instead of walking every index left. */
        while (run_items) {
            /* Relaxed: the flag only says "stop soon"; it guards no data. */
            if (atomic_load_explicit(&run->stop, memory_order_relaxed))
                break;
            size_t c = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed);
            if (c >= nchunks)
                break;
            mh__run_chunk(run, c);
            if (caller)
                mh__run_progress(run); /* the calling thread only */
        }
        mh__worker_leave(previous);
        if (ready)
            mh__hook_fini(config, me, hook_state);
    }
    /* The region's closing barrier orders every thread's outputs,
     * statuses and counters before the core reads them. */
    openmp_team_done(team);
    return atomic_load_explicit(&init_failed, memory_order_relaxed) ? MH_EINIT : MH_OK;
}

/* Thread 0 of the team is the calling thread: it pumps, and works. */
static int openmp_stream(void *state, struct mh__stream *st)
{
    const struct mh_config *config = state;
    int rc = openmp_team_ready(&st->run.workers);
    if (rc)
        return rc;
    if (st->run.workers <= 1)
        return openmp_alone(config, NULL, st);
    int team = 0;
    atomic_int init_failed = 0;
#pragma omp parallel num_threads(st->run.workers)
    {
        const int id = omp_get_thread_num();
        if (id == 0)
            team = omp_get_num_threads();
        void *hook_state = NULL;
        bool ready;
        /* A failed init: no thread works, nothing is pulled. */
        if (openmp_hooks_start(config, id, &hook_state, &ready, &init_failed)) {
            struct mh__worker previous = mh__worker_enter(id, hook_state);
            mh__stream_work(st, (unsigned)id, id == 0);
            mh__worker_leave(previous);
        }
        if (ready)
            mh__hook_fini(config, id, hook_state);
    }
    openmp_team_done(team);
    if (atomic_load_explicit(&init_failed, memory_order_relaxed))
        return MH_EINIT;
    mh__stream_finish(st);
    return MH_OK;
}

static void openmp_close(void *state, bool owner)
{
    (void)state;
    /* Release the calling thread's team: its threads exit, and a child
     * forked later starts with no team to wait for. Only a team this
     * process started: releasing one inherited through fork would wait
     * for threads that are not there. Inside an active parallel region
     * the call fails harmlessly (-1) and the team stays. */
    if (owner && openmp_team_pid == getpid() && omp_pause_resource_all(omp_pause_soft) == 0) {
        openmp_team_pid = 0;
        openmp_team_size = 0;
    }
}

const struct mh_backend_ops mh__backend_openmp = {
    .name = "openmp",
    .caps = 0,
    .open = openmp_open,
    .map = openmp_map,
    .close = openmp_close,
    .stream = openmp_stream,
};
