/*
 * mpi_bench: what one map costs on a backend, for docs/backends.md (a
 * measurement, not a test: CTest does not run it).
 *
 *     mpi_bench small REPS BACKEND [WORKERS]
 *         a map of n = workers items (one int each, chunk 1), REPS times;
 *         for mpi, workers is the job size (run it under mpiexec -n W)
 *     mpi_bench chunk REPS BACKEND BYTES
 *         one chunk of one item of BYTES in and BYTES out, REPS times: on
 *         mpi at 2 ranks it goes to rank 1 and back (rank 0 hands it out
 *         before running anything itself), so this is one chunk's messages
 *     mpi_bench bytes REPS BACKEND BYTES
 *         a map of 64 items of BYTES in and BYTES out (a copy), chunk 1, 2
 *         workers: where moving the bytes is the work
 *
 * Prints, on rank 0, the median and the lowest time of one map, in µs.
 */
#include <manyhands.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fn_copy(const void *in, void *out, void *ctx)
{
    memcpy(out, in, *(const size_t *)ctx);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "small") && strcmp(argv[1], "chunk") &&
                     strcmp(argv[1], "bytes"))) {
        fprintf(stderr, "usage: %s small|chunk|bytes REPS BACKEND [WORKERS|BYTES]\n", argv[0]);
        return 2;
    }
    int small = strcmp(argv[1], "small") == 0;
    int reps = atoi(argv[2]);
    const char *backend = argv[3];
    long arg = argc > 4 ? atol(argv[4]) : 0;
    if (reps < 1 || arg < 0)
        return 2;

    struct mh_config config = {.backend = backend, .chunk = 1,
                               .workers = small ? (int)arg : 2};
    mh_pool *pool;
    int rc = mh_pool_open(&pool, &config);
    if (rc) {
        fprintf(stderr, "%s: %s\n", backend, mh_strerror(rc));
        return 1;
    }
    size_t size = small ? sizeof(int) : (size_t)(arg ? arg : 1);
    size_t n = small ? (size_t)mh_pool_workers(pool) : strcmp(argv[1], "bytes") ? 1 : 64;
    unsigned char *in = calloc(n, size), *out = calloc(n, size);
    double *times = malloc((size_t)reps * sizeof *times);
    if (!in || !out || !times)
        return 1;
    struct mh_task task = {
        .n = n, .in = in, .in_size = size, .out = out, .out_size = size,
        .fn = fn_copy, .ctx = &size,
    };
    for (int r = 0; r < reps && !rc; r++) {
        double start = now();
        rc = mh_map(pool, &task, NULL);
        times[r] = now() - start;
    }
    int root = mh_pool_rank(pool) == 0;
    mh_pool_close(pool);
    if (rc) {
        fprintf(stderr, "map: %s\n", mh_strerror(rc));
        return 1;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    if (root)
        printf("%s %s n=%zu bytes=%zu workers=%d reps=%d: median %.2f us, min %.2f us\n",
               backend, argv[1], n, size, small ? (int)n : 2, reps,
               times[reps / 2] * 1e6, times[0] * 1e6);
    free(in);
    free(out);
    free(times);
    return 0;
}
