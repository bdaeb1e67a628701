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

/* This process's MPI rank from the launcher's environment (Open MPI,
 * PMIx, MPICH), without linking MPI; 0 when not under a launcher. */
static int cell_rank(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return atoi(v);
    }
    return 0;
}

int mhb_cell_main(const struct mhb_options *o)
{
    const struct mhk_kernel *k = mhk_find(o->kernels[0]);
    const char *backend = o->backends[0];
    size_t n = o->items;
    int rank = cell_rank();
    struct mh_report report = {.chunk = 0};
    double wall = 0, pool_s = 0;
    int verified = MHB_WRONG;
    char error[128] = "";
    void *ctx = NULL;
    void *in = NULL, *out = NULL;
    int rc;

    if (!k) {
        snprintf(error, sizeof error, "no kernel %s", o->kernels[0]);
        goto out_print;
    }
    if (k->setup) {
        rc = k->setup(&ctx, n, o->seed);
        if (rc) {
            snprintf(error, sizeof error, "setup:%s", mh_err_name(rc));
            goto out_print;
        }
    }
    in = calloc(n, k->in_size);
    out = calloc(n, k->out_size);
    if (!in || !out) {
        snprintf(error, sizeof error, "out of memory for %zu items", n);
        goto out_teardown;
    }
    k->generate(in, n, o->seed, ctx);

    struct mh_config config = {
        .backend = backend, .workers = o->workers[0],
        .chunk = o->n_chunks ? o->chunks[0] : 0,
    };
    struct mh_task task = {
        .n = n, .in = in, .in_size = k->in_size, .out = out, .out_size = k->out_size,
        .fn = k->fn, .ctx = ctx, .codec = k->codec,
    };
    mh_pool *pool;
    double t0 = mhb_now();
    rc = mh_pool_open(&pool, &config);
    if (rc) {
        snprintf(error, sizeof error, "open:%s", mh_err_name(rc));
        goto out_teardown;
    }
    double t1 = mhb_now();
    rc = mh_map(pool, &task, &report);
    double t2 = mhb_now();
    mh_pool_close(pool);
    double t3 = mhb_now();
    wall = t2 - t1;
    pool_s = (t1 - t0) + (t3 - t2);
    if (rc) {
        snprintf(error, sizeof error, "map:%s item=%zu signal=%d", mh_err_name(rc),
                 report.failed_index, report.worker_signal);
        goto out_teardown;
    }
    if (rank == 0) {
        size_t bad = k->verify(in, out, n, ctx);
        if (bad)
            snprintf(error, sizeof error, "wrong output at item %zu", bad - 1);
        else
            verified = MHB_VERIFIED;
        if (k->codec)
            for (size_t i = 0; i < n; i++)
                k->codec->clear((char *)out + i * k->out_size, ctx);
    }

out_teardown:
    if (k->teardown)
        k->teardown(ctx);
out_print:
    free(in);
    free(out);
    if (rank != 0)
        return error[0] ? 1 : 0;
    for (char *c = error; *c; c++)
        if (*c == ' ' || *c == '\n')
            *c = '_'; /* one token */
    printf(MHB_CELL_TAG "backend=%s kernel=%s items=%zu workers=%d chunk=%zu wall=%.9f "
           "pool=%.9f verified=%d error=%s\n",
           backend, o->kernels[0], n, report.workers, report.chunk, wall, pool_s, verified,
           error);
    fflush(stdout);
    return error[0] ? 1 : 0;
}
