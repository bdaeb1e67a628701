/*
 * mhk-cost: what one item of each kernel costs on this machine, the
 * figures docs/kernels.md quotes. For each kernel: setup, then REPEATS
 * maps of ITEMS items (generate before each, as a matrix cell does) on
 * BACKEND with WORKERS, each verified; prints the fastest and the median
 * wall time of the map, the per-item cost (median wall / items), the
 * process CPU time per item (median; less sensitive than wall time to
 * other load on the machine), and the setup and verify times.
 *
 *     mhk-cost [-n ITEMS] [-r REPEATS] [-b BACKEND] [-w WORKERS] [-q] [-s] [KERNEL...]
 *
 * ITEMS defaults to each kernel's default_items (-q: quick_items).
 * -s also times each item alone (fn called directly, after the maps) and
 * prints the spread of per-item costs: min, median, 99th percentile, max.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h" /* mhb_median: the harness's one median */
#include "internal.h"

/* CPU time of this process (all its threads), seconds. */
static double cost_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Each item timed alone: the spread of the per-item cost. */
static int cost_spread(struct mhk_cell *cell)
{
    const struct mhk_kernel *k = cell->kernel;
    size_t n = cell->n;
    double *us = calloc(n, sizeof *us);
    if (!us)
        return MH_ENOMEM;
    mhk_cell_generate(cell, 1);
    for (size_t i = 0; i < n; i++) {
        void *item_out = mhk_cell_item_out(cell, i);
        uint64_t t0 = mhk__now_ns();
        int rc = k->fn(mhk_cell_item_in(cell, i), item_out, cell->ctx);
        us[i] = (double)(mhk__now_ns() - t0) * 1e-3;
        if (rc) {
            free(us);
            return 1;
        }
        if (k->codec)
            k->codec->clear(item_out, cell->ctx);
    }
    double first = us[0], last = us[n - 1];
    double median = mhb_median(us, n); /* sorts us */
    printf("%-14s per item (us): min %.3f  median %.3f  p99 %.3f  max %.3f"
           "  (first item %.3f, last %.3f)\n", k->name, us[0], median,
           us[n - 1 - n / 100], us[n - 1], first, last);
    free(us);
    return 0;
}

static int spread_too;

/* REPEATS maps of the cell on pool, each verified: walls[], cpus[]. */
static int cost_maps(struct mhk_cell *cell, mh_pool *pool, int repeats, double *walls,
                     double *cpus, double *verify_s)
{
    for (int r = 0; r < repeats; r++) {
        mhk_cell_generate(cell, 1 + (uint64_t)r);
        struct mh_report report;
        double cpu0 = cost_cpu_s();
        int rc = mhk_cell_map(cell, pool, &report);
        cpus[r] = cost_cpu_s() - cpu0;
        if (rc)
            return rc;
        walls[r] = report.wall_s;
        uint64_t t0 = mhk__now_ns();
        size_t wrong = mhk_cell_verify(cell);
        *verify_s = (double)(mhk__now_ns() - t0) * 1e-9;
        if (wrong) {
            fprintf(stderr, "%s: item %zu is wrong\n", cell->kernel->name, wrong - 1);
            return 1;
        }
    }
    return 0;
}

static int cost_one(const struct mhk_kernel *k, size_t n, int repeats,
                    const char *backend, int workers)
{
    struct mhk_cell cell;
    uint64_t t0 = mhk__now_ns();
    int rc = mhk_cell_open(&cell, k, n, 1);
    double setup_s = (double)(mhk__now_ns() - t0) * 1e-9;
    if (rc) {
        fprintf(stderr, "%s: %s: %s\n", k->name, cell.step, mh_strerror(rc));
        return 1;
    }
    double *walls = calloc(2 * (size_t)repeats, sizeof *walls);
    mh_pool *pool = NULL;
    struct mh_config config = {.backend = backend, .workers = workers};
    mhk_cell_hooks(&cell, &config);
    rc = walls ? mh_pool_open(&pool, &config) : MH_ENOMEM;
    double verify_s = 0;
    if (!rc)
        rc = cost_maps(&cell, pool, repeats, walls, walls + repeats, &verify_s);
    if (!rc) {
        double median = mhb_median(walls, (size_t)repeats); /* sorts: walls[0] the fastest */
        double cpu = mhb_median(walls + repeats, (size_t)repeats);
        printf("%-14s %-3s %9zu %9.4f %9.4f %11.3f %11.3f %9.4f %9.4f\n", k->name,
               k->bound == MHK_CPU ? "cpu" : "io", n, walls[0], median,
               median / (double)n * 1e6, cpu / (double)n * 1e6, setup_s, verify_s);
        if (spread_too)
            rc = cost_spread(&cell);
    }
    if (rc < 0)
        fprintf(stderr, "%s: %s\n", k->name, mh_strerror(rc));
    mh_pool_close(pool);
    free(walls);
    mhk_cell_close(&cell);
    return rc != 0;
}

int main(int argc, char **argv)
{
    size_t items = 0;
    int repeats = 5, workers = 1, quick = 0, opt;
    const char *backend = "seq";
    while ((opt = getopt(argc, argv, "n:r:b:w:qs")) != -1) {
        switch (opt) {
        case 'n': items = strtoul(optarg, NULL, 10); break;
        case 'r': repeats = atoi(optarg); break;
        case 'b': backend = optarg; break;
        case 'w': workers = atoi(optarg); break;
        case 'q': quick = 1; break;
        case 's': spread_too = 1; break;
        default:
            fprintf(stderr, "usage: %s [-n ITEMS] [-r REPEATS] [-b BACKEND] "
                            "[-w WORKERS] [-q] [-s] [KERNEL...]\n", argv[0]);
            return 2;
        }
    }
    if (repeats < 1)
        repeats = 1;
    printf("# backend %s, workers %d, %d repeats; times in seconds\n", backend,
           workers, repeats);
    printf("%-14s %-3s %9s %9s %9s %11s %11s %9s %9s\n", "kernel", "bnd", "items",
           "min", "median", "us/item", "cpu-us/item", "setup", "verify");
    int failed = 0;
    if (optind < argc) {
        for (int a = optind; a < argc; a++) {
            const struct mhk_kernel *k = mhk_find(argv[a]);
            if (!k) {
                fprintf(stderr, "no kernel called %s\n", argv[a]);
                failed = 1;
                continue;
            }
            size_t n = items ? items : quick ? k->quick_items : k->default_items;
            failed |= cost_one(k, n, repeats, backend, workers);
        }
    } else {
        for (const struct mhk_kernel *const *k = mhk_kernels(); *k; k++) {
            size_t n = items ? items : quick ? (*k)->quick_items : (*k)->default_items;
            failed |= cost_one(*k, n, repeats, backend, workers);
        }
    }
    return failed;
}
