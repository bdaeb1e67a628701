/*
 * mh-fork-stream-bench: the fork backend's stream figures
 * (docs/results.md, "Streams"). Each prints CSV lines
 * `figure,what,value,unit` (medians over REPEATS runs); every run's
 * results are checked (a wrong one is an error).
 *
 *     mh-fork-stream-bench jobs [N [REPEATS]]   # 10000 5: N one-item jobs
 *         (chunk 1) through one fork stream at 2 workers, µs per job;
 *         beside it one small map (n = 2) per job, µs per map
 *     mh-fork-stream-bench sleep [N [WORKERS]]  # 2048 64: N items of
 *         1 ms, a fork stream (and map) at WORKERS against seq
 *     mh-fork-stream-bench seed [N [REPEATS]]   # 1000000 3: the seed's
 *         factorials, an ordered fork stream against mh_map, 2 workers
 *     mh-fork-stream-bench rss [N]              # 100000000: an ordered
 *         stream of N ints on fork, 2 workers (run under /usr/bin/time -v)
 */
#include <gmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "manyhands.h"

/* A stream over in[0 .. n) (or seq itself, in NULL), in order: the sink
 * checks each output against want (or 2 * seq) and counts. */
struct fsb {
    size_t n, in_size;
    const void *in;
    const struct mhk_kernel *kernel; /* seed: its fn and ctx */
    void *kernel_ctx;
    unsigned long sum;               /* seed: outputs mod a prime */
    size_t got, wrong;
};

static int fsb_source(void *item, size_t seq, void *vb)
{
    struct fsb *b = vb;
    if (seq >= b->n)
        return MH_SOURCE_END;
    if (b->in)
        memcpy(item, (const char *)b->in + seq * b->in_size, b->in_size);
    else
        *(int *)item = (int)seq;
    return MH_SOURCE_ITEM;
}

static int fsb_sink(size_t seq, int status, void *out, void *vb)
{
    struct fsb *b = vb;
    b->wrong += status != MH_ITEM_OK || seq != b->got++;
    if (b->kernel)
        b->sum = (b->sum + mpz_fdiv_ui(out, 1000000007u)) % 1000000007u;
    else
        b->wrong += *(const int *)out != 2 * (int)seq;
    return 0;
}

static int fsb_double(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(int *)out = 2 * *(const int *)in;
    return 0;
}

static int fsb_sleep(const void *in, void *out, void *ctx)
{
    (void)ctx;
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
    *(int *)out = 2 * *(const int *)in;
    return 0;
}

static int fsb_kernel_fn(const void *in, void *out, void *vb)
{
    const struct fsb *b = vb;
    return b->kernel->fn(in, out, b->kernel_ctx);
}

static mh_pool *fsb_pool(const char *backend, int workers, size_t chunk)
{
    struct mh_config config = {.backend = backend, .workers = workers, .chunk = chunk};
    mh_pool *pool = NULL;
    int rc = mh_pool_open(&pool, &config);
    if (rc)
        fprintf(stderr, "mh-fork-stream-bench: open %s: %s\n", backend, mh_err_name(rc));
    return pool;
}

/* One ordered stream of b's items through fn; wall seconds, or -1. */
static double fsb_stream(mh_pool *pool, struct fsb *b, mh_fn fn, size_t out_size,
                         const struct mh_codec *codec)
{
    b->got = b->wrong = 0;
    b->sum = 0;
    struct mh_stream_task task = {
        .in_size = b->in_size, .out_size = out_size, .fn = fn, .ctx = b, .codec = codec,
        .source = fsb_source, .sink = fsb_sink, .order = MH_ORDERED,
    };
    double start = mhb_now();
    int rc = mh_stream(pool, &task, NULL);
    double wall = mhb_now() - start;
    if (rc || b->wrong || b->got != b->n) {
        fprintf(stderr, "mh-fork-stream-bench: stream: %s, %zu of %zu, %zu wrong\n",
                mh_err_name(rc), b->got, b->n, b->wrong);
        return -1;
    }
    return wall;
}

static int fsb_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double fsb_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, fsb_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* N one-item jobs through one stream; and one small map per job. */
static int fsb_jobs(size_t n, int repeats)
{
    mh_pool *pool = fsb_pool("fork", 2, 1);
    if (!pool)
        return 1;
    double stream[101], map[101];
    struct fsb b = {.n = n, .in_size = sizeof(int)};
    int in[2] = {3, 4}, out[2];
    struct mh_task small = {
        .n = 2, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fsb_double,
    };
    for (int r = 0; r < repeats; r++) {
        if ((stream[r] = fsb_stream(pool, &b, fsb_double, sizeof(int), NULL)) < 0)
            return 1;
        double start = mhb_now();
        for (int k = 0; k < 300; k++)
            if (mh_map(pool, &small, NULL) || out[0] != 6 || out[1] != 8)
                return 1;
        map[r] = (mhb_now() - start) / 300;
    }
    mh_pool_close(pool);
    printf("jobs,fork stream (chunk 1; 2 workers),%.2f,us per job\n",
           fsb_median(stream, repeats) / (double)n * 1e6);
    printf("jobs,fork map of 2 items (2 workers),%.1f,us per map\n",
           fsb_median(map, repeats) * 1e6);
    return 0;
}

/* N 1 ms items: fork streams (adaptive chunks, and chunk 1) and a fork
 * map at `workers` against a seq stream. */
static int fsb_sleep_fig(size_t n, int workers)
{
    struct fsb b = {.n = n, .in_size = sizeof(int)};
    const char *backends[] = {"seq", "fork", "fork"};
    const size_t chunks[] = {0, 0, 1};
    double t[3];
    for (int k = 0; k < 3; k++) {
        mh_pool *pool = fsb_pool(backends[k], k ? workers : 1, chunks[k]);
        if (!pool || (t[k] = fsb_stream(pool, &b, fsb_sleep, sizeof(int), NULL)) < 0)
            return 1;
        mh_pool_close(pool);
    }
    int *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    mh_pool *pool = fsb_pool("fork", workers, 0);
    if (!in || !out || !pool)
        return 1;
    for (size_t i = 0; i < n; i++)
        in[i] = (int)i;
    struct mh_task task = {
        .n = n, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fsb_sleep,
    };
    double start = mhb_now();
    if (mh_map(pool, &task, NULL))
        return 1;
    double map = mhb_now() - start;
    mh_pool_close(pool);
    free(in);
    free(out);
    printf("sleep,seq stream,%.3f,s\n", t[0]);
    printf("sleep,fork stream adaptive chunks (%d workers),%.4f,s\n", workers, t[1]);
    printf("sleep,fork stream chunk 1 (%d workers),%.4f,s\n", workers, t[2]);
    printf("sleep,fork stream adaptive speed-up over seq,%.1f,x\n", t[0] / t[1]);
    printf("sleep,fork stream chunk 1 speed-up over seq,%.1f,x\n", t[0] / t[2]);
    printf("sleep,fork map speed-up over seq,%.1f,x\n", t[0] / map);
    return 0;
}

/* The seed's factorials: an ordered stream against mh_map, 2 workers. */
static int fsb_seed(size_t n, int repeats)
{
    const struct mhk_kernel *k = mhk_find("factorial");
    struct mhk_cell cell;
    if (!k || mhk_cell_open(&cell, k, n, 1))
        return 1;
    mh_pool *pool = fsb_pool("fork", 2, 0);
    if (!pool)
        return 1;
    struct fsb b = {.n = n, .in_size = k->in_size, .in = cell.in, .kernel = k,
                    .kernel_ctx = cell.ctx};
    double map[101], stream[101];
    unsigned long want = 0;
    for (int r = 0; r < repeats; r++) {
        struct mh_report report;
        if (mhk_cell_map(&cell, pool, &report))
            return 1;
        map[r] = report.wall_s;
        for (size_t i = 0; r == 0 && i < n; i++)
            want = (want + mpz_fdiv_ui(mhk_cell_item_out(&cell, i), 1000000007u)) % 1000000007u;
        if (mhk_cell_verify(&cell))
            return 1;
        stream[r] = fsb_stream(pool, &b, fsb_kernel_fn, k->out_size, k->codec);
        if (stream[r] < 0 || b.sum != want)
            return 1;
    }
    mh_pool_close(pool);
    mhk_cell_close(&cell);
    double m = fsb_median(map, repeats), s = fsb_median(stream, repeats);
    printf("seed,fork map (2 workers),%.3f,s\n", m);
    printf("seed,fork ordered stream (2 workers),%.3f,s\n", s);
    printf("seed,stream throughput / map's,%.3f,x\n", m / s);
    return 0;
}

/* N ints through an ordered fork stream; peak RSS is the caller's. */
static int fsb_rss(size_t n)
{
    mh_pool *pool = fsb_pool("fork", 2, 0);
    struct fsb b = {.n = n, .in_size = sizeof(int)};
    double t = pool ? fsb_stream(pool, &b, fsb_double, sizeof(int), NULL) : -1;
    mh_pool_close(pool);
    if (t < 0)
        return 1;
    printf("rss,ordered fork stream of %zu ints (2 workers),%.2f,s\n", n, t);
    return 0;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 0;
    int x = argc > 3 ? atoi(argv[3]) : 0;
    if (!strcmp(what, "jobs"))
        return fsb_jobs(n ? n : 10000, x > 0 && x <= 101 ? x : 5);
    if (!strcmp(what, "sleep"))
        return fsb_sleep_fig(n ? n : 2048, x > 0 ? x : 64);
    if (!strcmp(what, "seed"))
        return fsb_seed(n ? n : 1000000, x > 0 && x <= 101 ? x : 3);
    if (!strcmp(what, "rss"))
        return fsb_rss(n ? n : 100000000);
    fprintf(stderr, "usage: mh-fork-stream-bench jobs|sleep|seed|rss [N [X]]\n");
    return 2;
}
