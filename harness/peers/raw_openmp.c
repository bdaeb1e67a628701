/*
 * raw-openmp: the floor the openmp backend is measured against — the
 * seed's workload as a bare `#pragma omp parallel for`, no library.
 *
 *     raw-openmp [--kernel mul|prealloc|fac_ui|empty] [--items N]
 *                [--workers W] [--repeat R] [--seed S]
 *
 * Kernels (items are random ints in [1, 100), drawn as examples/seed does):
 *   mul       n! by repeated multiplication into a fresh mpz_t that
 *             grows as it goes (mpz_init): the seed's algorithm, every
 *             result kept
 *   prealloc  the same, each result allocated once at its final size
 *             (mpz_init2), as the library's factorial kernel and
 *             examples/seed do (anchors.md's two rows)
 *   fac_ui    mpz_fac_ui into a fresh mpz_t
 *   empty     an empty function through a pointer, per int item: the
 *             cost of the loop itself (schedule(dynamic, 4096))
 * GMP kernels use schedule(dynamic, 1024).
 *
 * One line per repeat, a format the harness parses:
 *   raw-openmp kernel=mul items=1000000 workers=2 repeat=0 seconds=0.234567 verified=1
 * Every result is checked against mpz_fac_ui (untimed), as the library's
 * factorial kernels verify theirs: verified=0 and exit 1 when one is wrong,
 * 2 on bad usage. MHB_CORRUPT=1 in the environment makes the first result
 * wrong before the check (the harness's tests).
 */
#include <gmp.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum raw_kernel { RAW_MUL, RAW_PREALLOC, RAW_FAC_UI, RAW_EMPTY };
static const char *const raw_kernel_names[] = {"mul", "prealloc", "fac_ui", "empty"};

static double raw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* n! by repeated multiplication, as examples/seed's factorial does. */
static void raw_factorial(mpz_ptr result, unsigned long n)
{
    mpz_set_ui(result, 1);
    for (unsigned long k = 2; k <= n; k++)
        mpz_mul_ui(result, result, k);
}

/* The empty kernel's callback, with the library's callback signature. */
static int raw_empty_fn(const void *in, void *out, void *ctx)
{
    (void)in;
    (void)out;
    (void)ctx;
    return 0;
}

/* Called through this pointer, so the compiler cannot inline it away. */
static int (*volatile raw_empty_ptr)(const void *, void *, void *) = raw_empty_fn;

/* One GMP kernel's item: out initialised and set to v!. */
static inline void raw_gmp_item(enum raw_kernel kernel, mpz_ptr out, unsigned long v)
{
    if (kernel == RAW_PREALLOC)
        mpz_init2(out, 8 * v + 64); /* log2(99) < 7: one allocation */
    else
        mpz_init(out);
    if (kernel == RAW_FAC_UI)
        mpz_fac_ui(out, v);
    else
        raw_factorial(out, v);
}

/* One timed run of kernel over n inputs. Returns seconds; results stay in
 * out (initialised mpz_t) for the GMP kernels, *bad counts failed calls
 * for empty. */
static double raw_run(enum raw_kernel kernel, const int *inputs, long n, int workers,
                      mpz_t *out, int *scratch, long *bad)
{
    double start = raw_now();
    long failed = 0;
    if (kernel == RAW_EMPTY) {
#pragma omp parallel for schedule(dynamic, 4096) num_threads(workers) reduction(+ : failed)
        for (long i = 0; i < n; i++)
            failed += raw_empty_ptr(&inputs[i], &scratch[i], NULL) != 0;
    } else {
#pragma omp parallel for schedule(dynamic, 1024) num_threads(workers)
        for (long i = 0; i < n; i++)
            raw_gmp_item(kernel, out[i], (unsigned long)inputs[i]);
    }
    double seconds = raw_now() - start;
    *bad = failed;
    return seconds;
}

/* Check every result against GMP's own factorial; 0 when all are right. */
static long raw_verify(const int *inputs, long n, mpz_t *out)
{
    mpz_t want;
    mpz_init(want);
    long wrong = 0;
    if (getenv("MHB_CORRUPT") && n > 0)
        mpz_add_ui(out[0], out[0], 1);
    for (long i = 0; i < n; i++) {
        mpz_fac_ui(want, (unsigned long)inputs[i]);
        wrong += mpz_cmp(want, out[i]) != 0;
    }
    mpz_clear(want);
    return wrong;
}

static int raw_usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--kernel mul|prealloc|fac_ui|empty] [--items N] [--workers W]"
            " [--repeat R] [--seed S]\n",
            prog);
    return 2;
}

/* Parse a positive long; 0 when malformed. */
static long raw_positive(const char *text)
{
    char *end;
    long value = strtol(text, &end, 10);
    return (*text && !*end && value > 0) ? value : 0;
}

int main(int argc, char **argv)
{
    enum raw_kernel kernel = RAW_MUL;
    long n = 1000000, workers = omp_get_num_procs(), repeats = 1;
    unsigned seed = 2017; /* examples/seed's */
    for (int a = 1; a < argc; a++) {
        const char *opt = argv[a];
        if (a + 1 >= argc)
            return raw_usage(argv[0]);
        const char *val = argv[++a];
        if (strcmp(opt, "--kernel") == 0) {
            size_t k = 0, count = sizeof raw_kernel_names / sizeof *raw_kernel_names;
            while (k < count && strcmp(val, raw_kernel_names[k]) != 0)
                k++;
            if (k == count)
                return raw_usage(argv[0]);
            kernel = (enum raw_kernel)k;
        } else if (strcmp(opt, "--items") == 0) {
            if (!(n = raw_positive(val)))
                return raw_usage(argv[0]);
        } else if (strcmp(opt, "--workers") == 0) {
            if (!(workers = raw_positive(val)) || workers > 1024)
                return raw_usage(argv[0]);
        } else if (strcmp(opt, "--repeat") == 0) {
            if (!(repeats = raw_positive(val)))
                return raw_usage(argv[0]);
        } else if (strcmp(opt, "--seed") == 0) {
            long s = raw_positive(val);
            if (!s || s > 0xffffffffL)
                return raw_usage(argv[0]);
            seed = (unsigned)s;
        } else {
            return raw_usage(argv[0]);
        }
    }

    int *inputs = malloc((size_t)n * sizeof *inputs);
    int *scratch = kernel == RAW_EMPTY ? malloc((size_t)n * sizeof *scratch) : NULL;
    mpz_t *out = kernel == RAW_EMPTY ? NULL : malloc((size_t)n * sizeof *out);
    if (!inputs || (kernel == RAW_EMPTY ? !scratch : !out)) {
        fprintf(stderr, "raw-openmp: out of memory\n");
        return 1;
    }
    srand(seed);
    for (long i = 0; i < n; i++)
        inputs[i] = 1 + rand() % 99; /* np.random.randint(1, high=100) */

    int status = 0;
    for (long r = 0; r < repeats && status == 0; r++) {
        long bad = 0;
        double seconds = raw_run(kernel, inputs, n, (int)workers, out, scratch, &bad);
        if (kernel != RAW_EMPTY) {
            bad = raw_verify(inputs, n, out);
            for (long i = 0; i < n; i++)
                mpz_clear(out[i]);
        }
        printf("raw-openmp kernel=%s items=%ld workers=%ld repeat=%ld seconds=%.6f verified=%d\n",
               raw_kernel_names[kernel], n, workers, r, seconds, bad == 0);
        fflush(stdout);
        if (bad) {
            fprintf(stderr, "raw-openmp: %ld wrong results (kernel %s)\n", bad,
                    raw_kernel_names[kernel]);
            status = 1;
        }
    }
    free(inputs);
    free(scratch);
    free(out);
    return status;
}
