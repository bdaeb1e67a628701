/*
 * One measured cell, in its own process: set the kernel up, generate its
 * inputs, open a pool, time the map, close the pool, verify, and print one
 * line for the parent:
 *
 *   mhb-cell backend=threads kernel=sleep items=400 workers=4 chunk=2
 *            wall=0.101234567 pool=0.000123 verified=1 error=
 *
 * Under mpirun every rank runs this (the mpi backend is SPMD: every rank
 * opens the pool and calls mh_map); only rank 0 verifies and prints.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kernels.h"
#include "manyhands.h"

int mhb_cell_rank(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return atoi(v);
    }
    return 0;
}

void mhb_cell_print(const struct mhb_options *o, int workers, size_t chunk, double wall,
                    double pool_s, int verified, char *error)
{
    for (char *c = error; *c; c++)
        if (*c == ' ' || *c == '\n')
            *c = '_'; /* one token */
    printf(MHB_CELL_TAG "backend=%s kernel=%s items=%zu workers=%d chunk=%zu wall=%.9f "
           "pool=%.9f verified=%d error=%s\n",
           o->backends[0], o->kernels[0], o->items, workers, chunk, wall, pool_s, verified,
           error);
    fflush(stdout);
}

int mhb_cell_main(const struct mhb_options *o)
{
    if (mhb_stream_find(o->kernels[0]))
        return mhb_stream_cell_main(o);
    const char *backend = o->backends[0];
    int rank = mhb_cell_rank();
    struct mh_report report = {.chunk = 0};
    double wall = 0, pool_s = 0;
    int verified = MHB_WRONG;
    char error[128] = "";
    struct mhk_cell cell;
    int rc = mhk_cell_open(&cell, mhk_find(o->kernels[0]), o->items, o->seed);
    if (rc) {
        snprintf(error, sizeof error, "%s:%s", cell.step, mh_err_name(rc));
        goto out_print;
    }
    struct mh_config config = {
        .backend = backend, .workers = o->workers[0],
        .chunk = o->n_chunks ? o->chunks[0] : 0,
    };
    mhk_cell_hooks(&cell, &config);
    mh_pool *pool;
    double t0 = mhb_now();
    rc = mh_pool_open(&pool, &config);
    if (rc) {
        snprintf(error, sizeof error, "open:%s", mh_err_name(rc));
        goto out_close;
    }
    double t1 = mhb_now();
    rc = mhk_cell_map(&cell, pool, &report);
    double t2 = mhb_now();
    mh_pool_close(pool);
    wall = t2 - t1;
    pool_s = (t1 - t0) + (mhb_now() - t2);
    if (rc) {
        snprintf(error, sizeof error, "map:%s item=%zu signal=%d", mh_err_name(rc),
                 report.failed_index, report.worker_signal);
        goto out_close;
    }
    if (rank == 0) {
        /* MHB_CORRUPT=1 (tests): a wrong result must fail the cell. */
        if (getenv("MHB_CORRUPT"))
            mhk_cell_corrupt(&cell, 0);
        size_t bad = mhk_cell_verify(&cell);
        if (bad)
            snprintf(error, sizeof error, "wrong output at item %zu", bad - 1);
        else
            verified = MHB_VERIFIED;
    }
out_close:
    mhk_cell_close(&cell);
out_print:
    if (rank != 0)
        return error[0] ? 1 : 0;
    mhb_cell_print(o, report.workers, report.chunk, wall, pool_s, verified, error);
    return error[0] ? 1 : 0;
}
