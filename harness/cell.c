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

int mhb_cell_time(const struct mh_config *config, const char *what,
                  int (*call)(void *arg, mh_pool *pool, struct mh_report *report),
                  void *arg, struct mhb_cell_timing *t)
{
    *t = (struct mhb_cell_timing){.report = {.chunk = 0}};
    mh_pool *pool;
    double t0 = mhb_now();
    int rc = mh_pool_open(&pool, config);
    if (rc) {
        snprintf(t->error, sizeof t->error, "open:%s", mh_err_name(rc));
        return rc;
    }
    double t1 = mhb_now();
    rc = call(arg, pool, &t->report);
    double t2 = mhb_now();
    mh_pool_close(pool);
    t->wall = t2 - t1;
    t->pool_s = (t1 - t0) + (mhb_now() - t2);
    if (rc)
        snprintf(t->error, sizeof t->error, "%s:%s item=%zu signal=%d", what, mh_err_name(rc),
                 t->report.failed_index, t->report.worker_signal);
    return rc;
}

static int cell_map(void *cell, mh_pool *pool, struct mh_report *report)
{
    return mhk_cell_map(cell, pool, report);
}

int mhb_cell_main(const struct mhb_options *o)
{
    if (mhb_stream_find(o->kernels[0]))
        return mhb_stream_cell_main(o);
    int rank = mhb_cell_rank();
    struct mhb_cell_timing t = {.report = {.chunk = 0}};
    int verified = MHB_WRONG;
    struct mhk_cell cell;
    int rc = mhk_cell_open(&cell, mhk_find(o->kernels[0]), o->items, o->seed);
    if (rc) {
        snprintf(t.error, sizeof t.error, "%s:%s", cell.step, mh_err_name(rc));
        goto out_print;
    }
    struct mh_config config = {
        .backend = o->backends[0], .workers = o->workers[0],
        .chunk = o->n_chunks ? o->chunks[0] : 0,
    };
    mhk_cell_hooks(&cell, &config);
    if (mhb_cell_time(&config, "map", cell_map, &cell, &t))
        goto out_close;
    if (rank == 0) {
        /* MHB_CORRUPT=1 (tests): a wrong result must fail the cell. */
        if (getenv("MHB_CORRUPT"))
            mhk_cell_corrupt(&cell, 0);
        size_t bad = mhk_cell_verify(&cell);
        if (bad)
            snprintf(t.error, sizeof t.error, "wrong output at item %zu", bad - 1);
        else
            verified = MHB_VERIFIED;
    }
out_close:
    mhk_cell_close(&cell);
out_print:
    if (rank != 0)
        return t.error[0] ? 1 : 0;
    mhb_cell_print(o, t.report.workers, t.report.chunk, t.wall, t.pool_s, verified, t.error);
    return t.error[0] ? 1 : 0;
}
