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
 */
#include <omp.h>
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

static int openmp_open(void **state, const struct mh_config *config)
{
    (void)config;
    *state = NULL; /* the team is the runtime's; run->workers sizes it */
    return MH_OK;
}

static int openmp_map(void *state, struct mh__run *run)
{
    (void)state;
    const size_t nchunks = run->nchunks;
    const pid_t self = getpid();
    if (openmp_team_pid && openmp_team_pid != self)
        run->workers = 1; /* a forked child: see openmp_team_pid */
    if (run->workers <= 1)
        return mh__backend_seq.map(NULL, run); /* a one-thread team costs a region for nothing */

    openmp_team_pid = self;
#pragma omp parallel num_threads(run->workers)
    {
        const bool caller = omp_get_thread_num() == 0;
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
    if (owner && openmp_team_pid == getpid() && omp_pause_resource_all(omp_pause_soft) == 0)
        openmp_team_pid = 0;
}

const struct mh_backend_ops mh__backend_openmp = {
    .name = "openmp",
    .caps = 0,
    .open = openmp_open,
    .map = openmp_map,
    .close = openmp_close,
};
