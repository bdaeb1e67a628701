/*
 * The blog's program in C: the factorial of 1,000,000 random ints in
 * [1, 100), each an exact big integer (GMP) kept until the end, with
 * 1..4 workers, on every backend this build has.
 *
 *     seed [ITEMS [MAX_WORKERS [BACKEND...]]]
 *
 * prints, per backend, the blog's lines: "Processes: 2, Seconds: 0.25".
 */
#include <gmp.h>
#include <manyhands.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* n! by repeated multiplication, as the blog's factorial(n) does. */
static int factorial(const void *in, void *out, void *ctx)
{
    (void)ctx;
    unsigned long n = *(const int *)in;
    mpz_ptr result = out;
    mpz_init2(result, 8 * n + 64); /* log2(99) < 7: one allocation */
    mpz_set_ui(result, 1);
    for (unsigned long k = 2; k <= n; k++)
        mpz_mul_ui(result, result, k);
    return 0;
}

/* How a result crosses between processes (fork, mpi): its limbs, as they
 * are in memory — both ends are this program on this machine. */
static size_t mpz_size_bytes(const void *item, void *ctx)
{
    (void)ctx;
    return mpz_size(item) * sizeof(mp_limb_t);
}

static int mpz_encode(const void *item, void *buf, size_t len, void *ctx)
{
    (void)ctx;
    memcpy(buf, mpz_limbs_read(item), len);
    return 0;
}

static int mpz_decode(void *item, const void *buf, size_t len, void *ctx)
{
    (void)ctx;
    if (len % sizeof(mp_limb_t))
        return 1; /* not a whole number of limbs: not ours */
    mp_size_t limbs = (mp_size_t)(len / sizeof(mp_limb_t));
    mpz_init2(item, (mp_bitcnt_t)len * 8);
    memcpy(mpz_limbs_write(item, limbs), buf, len);
    mpz_limbs_finish(item, limbs);
    return 0;
}

static void mpz_clear_item(void *item, void *ctx)
{
    (void)ctx;
    mpz_clear(item);
}

static const struct mh_codec mpz_codec = {
    .size = mpz_size_bytes, .encode = mpz_encode,
    .decode = mpz_decode, .clear = mpz_clear_item,
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One backend, 1..max_workers: the blog's loop. */
static int run_backend(const char *backend, const int *inputs, size_t n,
                       mpz_t *results, int max_workers)
{
    printf("backend: %s\n", backend);
    for (int workers = 1; workers <= max_workers; workers++) {
        mh_pool *pool;
        int rc = mh_pool_open(&pool, &(struct mh_config){.backend = backend, .workers = workers});
        if (rc) {
            fprintf(stderr, "%s: %s\n", backend, mh_strerror(rc));
            return 1;
        }
        struct mh_task task = {
            .n = n, .in = inputs, .in_size = sizeof *inputs,
            .out = results, .out_size = sizeof *results,
            .fn = factorial, .codec = &mpz_codec,
        };
        double start = now();
        rc = mh_map(pool, &task, NULL);
        double seconds = now() - start;
        int root = mh_pool_rank(pool) == 0; /* mpi: rank 0 has the results */
        mh_pool_close(pool);
        if (rc) {
            fprintf(stderr, "%s: map failed: %s\n", backend, mh_strerror(rc));
            return 1;
        }
        if (!root)
            continue;
        printf("Processes: %d, Seconds: %.2f\n", workers, seconds);

        /* Check against GMP's own factorial, then release every result. */
        mpz_t want;
        mpz_init(want);
        for (size_t i = 0; i < n; i++) {
            if (i % 997 == 0) {
                mpz_fac_ui(want, (unsigned long)inputs[i]);
                rc |= mpz_cmp(want, results[i]) != 0;
            }
            mpz_clear(results[i]);
        }
        mpz_clear(want);
        if (rc) {
            fprintf(stderr, "%s: wrong factorial\n", backend);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    int max_workers = argc > 2 ? atoi(argv[2]) : 4;
    if (n == 0 || max_workers < 1) {
        fprintf(stderr, "usage: %s [ITEMS [MAX_WORKERS [BACKEND...]]]\n", argv[0]);
        return 2;
    }
    int *inputs = malloc(n * sizeof *inputs);
    mpz_t *results = malloc(n * sizeof *results);
    if (!inputs || !results)
        return 1;
    srand(2017);
    for (size_t i = 0; i < n; i++)
        inputs[i] = 1 + rand() % 99; /* np.random.randint(1, high=100) */

    int failed = 0;
    if (argc > 3) {
        for (int a = 3; a < argc; a++)
            failed |= run_backend(argv[a], inputs, n, results, max_workers);
    } else {
        for (const char *const *b = mh_backends(); *b; b++)
            failed |= run_backend(*b, inputs, n, results, max_workers);
    }
    free(inputs);
    free(results);
    return failed;
}
