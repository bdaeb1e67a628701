/*
 * mh-retry-bench: what retries cost on fork. A map of N items (100,000)
 * where 1% of the items crash their worker on their first run, with
 * retries 1, against the same map with no crash: every item must end OK
 * with its result either way (checked; a run that is not is an error).
 * Prints one CSV line per figure: the median wall time of each, over R
 * runs, and their ratio (docs/results.md quotes it).
 *
 *     mh-retry-bench [ITEMS [REPEATS [WORKERS]]]    # 100000 5 0 (all CPUs)
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "manyhands.h"

/* Every 100th item crashes the first time it runs. */
#define RETRY_BENCH_EVERY 100

struct retry_bench {
    size_t n;
    atomic_uchar *crashed; /* MAP_SHARED: seen by every child; one
                            * exchange per crashing item (seq_cst: rare,
                            * and it orders nothing else) */
    int crash;             /* whether this map's items crash */
};

static long retry_bench_value(int x)
{
    unsigned long v = (unsigned long)x * 2654435761u;
    for (int k = 0; k < 16; k++)
        v ^= v << 13, v ^= v >> 7, v ^= v << 17;
    return (long)(v >> 1);
}

static int retry_bench_fn(const void *in, void *out, void *vctx)
{
    struct retry_bench *b = vctx;
    int x = *(const int *)in;
    if (b->crash && x % RETRY_BENCH_EVERY == 0 && !atomic_exchange(&b->crashed[x], 1))
        raise(SIGKILL);
    *(long *)out = retry_bench_value(x);
    return 0;
}

/* One map; its wall seconds, or -1 when it did not give every result. */
static double retry_bench_run(mh_pool *pool, struct retry_bench *b, const int *in,
                              long *out, uint8_t *status)
{
    memset(b->crashed, 0, b->n);
    memset(out, 0, b->n * sizeof *out);
    struct mh_task task = {
        .n = b->n, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = retry_bench_fn, .ctx = b, .status = status,
    };
    struct mh_report report;
    int rc = mh_map(pool, &task, &report);
    if (rc) {
        fprintf(stderr, "mh-retry-bench: map: %s (item %zu, %d attempts)\n",
                mh_err_name(rc), report.failed_index, report.attempts);
        return -1;
    }
    for (size_t i = 0; i < b->n; i++)
        if (status[i] != MH_ITEM_OK || out[i] != retry_bench_value((int)i)) {
            fprintf(stderr, "mh-retry-bench: item %zu is wrong\n", i);
            return -1;
        }
    return report.wall_s;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    int repeats = argc > 2 ? atoi(argv[2]) : 5, workers = argc > 3 ? atoi(argv[3]) : 0;
    if (n == 0 || n > (size_t)1 << 30 || repeats < 1 || repeats > 1000 || workers < 0) {
        fprintf(stderr, "usage: mh-retry-bench [ITEMS [REPEATS [WORKERS]]]\n");
        return 2;
    }
    int *in = malloc(n * sizeof *in);
    long *out = malloc(n * sizeof *out);
    uint8_t *status = malloc(n);
    double *clean = malloc((size_t)repeats * sizeof *clean);
    double *crashy = malloc((size_t)repeats * sizeof *crashy);
    struct retry_bench b = {.n = n};
    b.crashed = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct mh_config config = {.backend = "fork", .workers = workers, .retries = 1};
    mh_pool *pool = NULL;
    int rc = 1;
    if (!in || !out || !status || !clean || !crashy || b.crashed == MAP_FAILED) {
        fprintf(stderr, "mh-retry-bench: out of memory\n");
        goto out_free;
    }
    if ((rc = mh_pool_open(&pool, &config))) {
        fprintf(stderr, "mh-retry-bench: open: %s\n", mh_err_name(rc));
        goto out_free;
    }
    for (size_t i = 0; i < n; i++)
        in[i] = (int)i;
    rc = 1;
    for (int r = 0; r < repeats; r++) { /* interleaved: drift hits both alike */
        b.crash = 0;
        if ((clean[r] = retry_bench_run(pool, &b, in, out, status)) < 0)
            goto out_close;
        b.crash = 1;
        if ((crashy[r] = retry_bench_run(pool, &b, in, out, status)) < 0)
            goto out_close;
    }
    double c = mhb_median(clean, (size_t)repeats), k = mhb_median(crashy, (size_t)repeats);
    printf("items,workers,repeats,crashes,clean_median_s,crash_median_s,ratio\n");
    printf("%zu,%d,%d,%zu,%.4f,%.4f,%.2f\n", n, mh_pool_workers(pool), repeats,
           (n + RETRY_BENCH_EVERY - 1) / RETRY_BENCH_EVERY, c, k, k / c);
    rc = 0;
out_close:
    mh_pool_close(pool);
out_free:
    if (b.crashed != MAP_FAILED && b.crashed)
        munmap(b.crashed, n);
    free(crashy);
    free(clean);
    free(status);
    free(out);
    free(in);
    return rc;
}
