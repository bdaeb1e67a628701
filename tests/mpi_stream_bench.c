/*
 * mpi_stream_bench: the same items through mh_map and through an ordered
 * mh_stream (a window of WINDOW items; 0, the default: adaptive), for
 * docs/backends.md (a measurement, not a test: CTest does not run it).
 *
 *     mpi_stream_bench seed|empty N ROUNDS [BACKEND [WORKERS [WINDOW]]]
 *
 * seed: N factorials of the seed's inputs (random ints in [1, 100)), each
 * an mpz_t that comes back through the codec; the map keeps all N, the
 * stream hands each to a sink that drops it (the library clears it).
 * empty: N ints through a function that does nothing. ROUNDS rounds of
 * one map then one stream; on rank 0 it prints the median seconds of
 * each, their ratio and the ns per item. BACKEND defaults to mpi (run it
 * under mpiexec -n W; WORKERS is then ignored).
 */
#include <gmp.h>
#include <manyhands.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "kernels.h"

struct bench {
    const int *in;
    size_t n;
};

static int fn_empty(const void *in, void *out, void *ctx)
{
    (void)in;
    (void)out;
    (void)ctx;
    return 0;
}

static int bench_source(void *item, size_t seq, void *ctx)
{
    const struct bench *b = ctx;
    if (seq >= b->n)
        return MH_SOURCE_END;
    memcpy(item, &b->in[seq], sizeof(int));
    return MH_SOURCE_ITEM;
}

static int bench_sink(size_t seq, int status, void *out, void *ctx)
{
    (void)seq;
    (void)out;
    (void)ctx;
    return status != MH_ITEM_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "seed") && strcmp(argv[1], "empty"))) {
        fprintf(stderr, "usage: %s seed|empty N ROUNDS [BACKEND [WORKERS [WINDOW]]]\n", argv[0]);
        return 2;
    }
    int seed = strcmp(argv[1], "seed") == 0;
    size_t n = (size_t)atol(argv[2]);
    int rounds = atoi(argv[3]);
    const char *backend = argc > 4 ? argv[4] : "mpi";
    int workers = argc > 5 ? atoi(argv[5]) : 2;
    size_t window = argc > 6 ? (size_t)atol(argv[6]) : 0;
    if (n < 1 || rounds < 1)
        return 2;
    int *in = malloc(n * sizeof *in);
    void *out = malloc(n * (seed ? sizeof(mpz_t) : sizeof(int)));
    double *t_map = malloc((size_t)rounds * sizeof *t_map);
    double *t_stream = malloc((size_t)rounds * sizeof *t_stream);
    if (!in || !out || !t_map || !t_stream)
        return 1;
    unsigned r = 2026;
    for (size_t i = 0; i < n; i++) {
        r = r * 1103515245u + 12345u;
        in[i] = 1 + (int)((r >> 16) % 99);
    }
    mh_pool *pool;
    int rc = mh_pool_open(&pool, &(struct mh_config){.backend = backend, .workers = workers});
    if (rc) {
        fprintf(stderr, "%s: %s\n", backend, mh_strerror(rc));
        return 1;
    }
    struct bench b = {.in = in, .n = n};
    struct mh_task map = {
        .n = n, .in = in, .in_size = sizeof(int), .out = out,
        .out_size = seed ? sizeof(mpz_t) : sizeof(int), .fn = seed ? mh_test_factorial : fn_empty,
        .codec = seed ? &mhk_mpz_codec : NULL,
    };
    struct mh_stream_task stream = {
        .in_size = map.in_size, .out_size = map.out_size, .fn = map.fn, .ctx = &b,
        .codec = map.codec, .source = bench_source, .sink = bench_sink, .order = MH_ORDERED,
        .window = window,
    };
    int root = mh_pool_rank(pool) == 0;
    for (int k = 0; k < rounds && !rc; k++) {
        double start = mh_test_now_s();
        rc = mh_map(pool, &map, NULL);
        t_map[k] = mh_test_now_s() - start;
        for (size_t i = 0; seed && root && !rc && i < n; i++)
            mpz_clear(((mpz_t *)out)[i]);
        start = mh_test_now_s();
        if (!rc)
            rc = mh_stream(pool, &stream, NULL);
        t_stream[k] = mh_test_now_s() - start;
    }
    int workers_used = mh_pool_workers(pool);
    mh_pool_close(pool);
    if (rc) {
        fprintf(stderr, "%s: %s\n", backend, mh_strerror(rc));
        return 1;
    }
    qsort(t_map, (size_t)rounds, sizeof *t_map, cmp_double);
    qsort(t_stream, (size_t)rounds, sizeof *t_stream, cmp_double);
    double m = t_map[rounds / 2], s = t_stream[rounds / 2];
    if (root)
        printf("%s %s n=%zu workers=%d rounds=%d: map %.3f s (%.1f ns/item), ordered stream "
               "%.3f s (%.1f ns/item); stream throughput %.2fx the map's\n",
               backend, argv[1], n, workers_used, rounds, m, m * 1e9 / (double)n, s,
               s * 1e9 / (double)n, m / s);
    free(in);
    free(out);
    free(t_map);
    free(t_stream);
    return 0;
}
