/*
 * openmp: one `parallel for schedule(dynamic, 1)` region per map, over
 * chunk indices. Each iteration is one chunk of the size the core chose,
 * run by mh__run_chunk, so the item loop, status array and failure
 * recording are the very code every other backend uses.
 *
 * The team belongs to the OpenMP runtime, not to the pool: libgomp keeps
 * one team of idle threads per calling thread and reuses it from one
 * region to the next. The pool therefore holds no state; close hands the
 * calling thread's team back (omp_pause_resource_all), so that a closed
 * pool leaves no thread behind and a later fork starts from a clean
 * runtime (GCC PR 60035, see docs/backends.md).
 *
 * Nothing leaves the region early: C has no exceptions, and after a
 * failure under MH_STOP the remaining iterations only read run->stop.
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
    (void)config;
    *state = NULL; /* the team is the runtime's; run->workers sizes it */
    return MH_OK;
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
    (void)state;
    const size_t nchunks = run->nchunks;
    int rc = openmp_team_ready(&run->workers);
    if (rc)
        return rc;
    if (run->workers <= 1)
        return mh__backend_seq.map(NULL, run); /* a one-thread team costs a region for nothing */

    int team = 0;
#pragma omp parallel num_threads(run->workers)
    {
        const bool caller = omp_get_thread_num() == 0;
        if (caller)
            team = omp_get_num_threads();
#pragma omp for schedule(dynamic, 1) nowait
        for (size_t c = 0; c < nchunks; c++) {
            /* Relaxed: the flag only says "stop soon"; it guards no data.
             * Once set, each remaining iteration is this load and no
             * more: a parallel for cannot be left with break. */
            if (atomic_load_explicit(&run->stop, memory_order_relaxed))
                continue;
            mh__run_chunk(run, c);
            if (caller)
                mh__run_progress(run); /* the calling thread only */
        }
    }
    /* The region's closing barrier orders every thread's outputs,
     * statuses and counters before the core reads them. */
    openmp_team_done(team);
    return MH_OK;
}

/* Thread 0 of the team is the calling thread: it pumps, and works. */
static int openmp_stream(void *state, struct mh__stream *st)
{
    (void)state;
    int rc = openmp_team_ready(&st->run.workers);
    if (rc)
        return rc;
    if (st->run.workers <= 1)
        return mh__backend_seq.stream(NULL, st);
    int team = 0;
#pragma omp parallel num_threads(st->run.workers)
    {
        const int id = omp_get_thread_num();
        if (id == 0)
            team = omp_get_num_threads();
        mh__stream_work(st, (unsigned)id, id == 0);
    }
    openmp_team_done(team);
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
