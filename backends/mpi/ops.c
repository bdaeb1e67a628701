/* The mpi backend's table (backend.h); the design is in mpi_int.h. */
#include "mpi_int.h"

/* This rank's init hook (worker = rank), then agreement: the open fails
 * with MH_EINIT on every rank when it failed on any, after fini ran on
 * the ranks whose init succeeded. 0 or an MH_E* code. */
static int mpi_hooks_open(struct mpi_pool *mp)
{
    int mine = mh__hook_init(mp->config, mp->rank, &mp->worker_state) ? 1 : 0, any = 0;
    mh__mpi_serial_enter();
    int rc = mh__mpi_code(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, mp->comm));
    mh__mpi_serial_leave();
    if (!rc && !any)
        return MH_OK;
    if (!mine)
        mh__hook_fini(mp->config, mp->rank, mp->worker_state);
    return rc ? rc : MH_EINIT;
}

static int mpi_open(void **state, const struct mh_config *config)
{
    /* workers: the communicator's size decides */
    int rc = mh__mpi_runtime_start();
    if (rc)
        return rc;
    struct mpi_pool *mp = mh__calloc(1, sizeof *mp);
    if (!mp)
        return MH_ENOMEM;
    mp->config = config;
    if ((rc = mh__mpi_pool_open(mp))) {
        mh__free(mp);
        return rc;
    }
    if ((rc = mpi_hooks_open(mp))) {
        mh__mpi_pool_close(mp);
        mh__free(mp);
        return rc;
    }
    *state = mp;
    return MH_OK;
}

static int mpi_workers(void *state)
{
    const struct mpi_pool *mp = state;
    return mp->size;
}

static int mpi_rank(void *state)
{
    const struct mpi_pool *mp = state;
    return mp->rank;
}

static int mpi_map(void *state, struct mh__run *run)
{
    struct mpi_pool *mp = state;
    int rc = mh__mpi_map_begin();
    if (rc)
        return rc;
    mp->maps++;
    struct mh__worker previous = mh__worker_enter(mp->rank, mp->worker_state);
    rc = mp->rank == 0 ? mh__mpi_root_map(mp, run) : mh__mpi_worker_map(mp, run);
    mh__worker_leave(previous);
    mh__mpi_map_end();
    return rc;
}

static int mpi_stream(void *state, struct mh__stream *st)
{
    struct mpi_pool *mp = state;
    int rc = mh__mpi_map_begin();
    if (rc)
        return rc;
    mp->maps++; /* counted with maps: a cancel names its map or stream */
    struct mh__worker previous = mh__worker_enter(mp->rank, mp->worker_state);
    rc = mh__mpi_stream(mp, st);
    mh__worker_leave(previous);
    mh__mpi_map_end();
    return rc;
}

static void mpi_close(void *state, bool owner)
{
    struct mpi_pool *mp = state;
    if (!mp)
        return;
    if (owner)
        mh__hook_fini(mp->config, mp->rank, mp->worker_state);
    int finalised = 1;
    /* In a forked child, or after MPI_Finalize, MPI is not ours to call. */
    if (owner && MPI_Finalized(&finalised) == MPI_SUCCESS && !finalised)
        mh__mpi_pool_close(mp);
    mh__free(mp);
}

const struct mh_backend_ops mh__backend_mpi = {
    .name = "mpi",
    .caps = MH__CAP_PROCESS | MH__CAP_COLLECTIVE,
    .open = mpi_open,
    .map = mpi_map,
    .stream = mpi_stream,
    .close = mpi_close,
    .workers = mpi_workers,
    .rank = mpi_rank,
};
