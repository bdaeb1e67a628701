/* The test runner: one test, one backend, the invariants around it. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef MH_TEST_GMP
#include <gmp.h>
#endif

#include "check.h"

mh_pool *mh_test_pool_with(const struct mh_config *config)
{
    mh_pool *pool = NULL;
    int rc = mh_pool_open(&pool, config);
    if (rc)
        fprintf(stderr, "mh_pool_open(%s, workers %d, retries %d): %s\n", config->backend,
                config->workers, config->retries, mh_err_name(rc));
    return pool;
}

mh_pool *mh_test_pool(const char *backend, int workers, size_t chunk,
                      enum mh_on_error on_error)
{
    struct mh_config config = {
        .backend = backend, .workers = workers, .chunk = chunk, .on_error = on_error,
    };
    return mh_test_pool_with(&config);
}

int mh_test_skip(const char *why)
{
    fprintf(stderr, "%s: skipped\n", why);
    return MH_SKIP;
}

int mh_test_have_backend(const char *backend)
{
    for (const char *const *name = mh_backends(); *name; name++)
        if (strcmp(*name, backend) == 0)
            return 1;
    return 0;
}

/* The first of the launcher's variables that is set, as a number. */
static int mpi_env(const char *const *names, int fallback)
{
    for (; *names; names++) {
        const char *value = getenv(*names);
        if (value && *value)
            return atoi(value);
    }
    return fallback;
}

int mh_test_ranks(const char *backend)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", NULL};
    return strcmp(backend, "mpi") == 0 ? mpi_env(names, 1) : 1;
}

int mh_test_holds_results(const char *backend)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", NULL};
    return strcmp(backend, "mpi") != 0 || mpi_env(names, 0) == 0;
}

int mh_test_workers(const char *backend, int asked)
{
    if (strcmp(backend, "mpi") == 0)
        return mh_test_ranks(backend);
    return asked > MH_WORKERS_MAX ? MH_WORKERS_MAX : asked;
}

static int count_dir(const char *path)
{
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)))
        if (entry->d_name[0] != '.')
            count++;
    closedir(dir);
    return count;
}

int mh_test_count_fds(void)
{
    return count_dir("/proc/self/fd");
}

int mh_test_count_threads(void)
{
    return count_dir("/proc/self/task");
}

double mh_test_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void mh_test_sleep_ms(double ms)
{
    time_t s = (time_t)(ms / 1000);
    struct timespec ts = {s, (long)((ms - (double)s * 1000) * 1e6)};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static void watchdog_fired(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: the test did not finish in time (hang)\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(2);
}

void mh_test_watchdog(const char *env, unsigned seconds)
{
    const char *limit = getenv(env);
    signal(SIGALRM, watchdog_fired);
    alarm(limit ? (unsigned)atoi(limit) : seconds);
}

bool mh_test_no_child(void)
{
    errno = 0;
    return waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD;
}

static atomic_long bytes_live;

char *mh_test_bytes_alloc(size_t len)
{
    char *p = malloc(len);
    if (p)
        atomic_fetch_add_explicit(&bytes_live, 1, memory_order_relaxed);
    return p;
}

long mh_test_bytes_live(void)
{
    return atomic_load(&bytes_live);
}

static size_t bytes_size(const void *item, void *ctx)
{
    (void)ctx;
    return ((const struct mh_test_bytes *)item)->len;
}

static int bytes_encode(const void *item, void *buf, size_t len, void *ctx)
{
    (void)ctx;
    memcpy(buf, ((const struct mh_test_bytes *)item)->p, len);
    return 0;
}

static int bytes_decode(void *item, const void *buf, size_t len, void *ctx)
{
    (void)ctx;
    struct mh_test_bytes *b = item;
    b->p = mh_test_bytes_alloc(len ? len : 1);
    if (!b->p)
        return 1;
    memcpy(b->p, buf, len);
    b->len = len;
    return 0;
}

static void bytes_clear(void *item, void *ctx)
{
    (void)ctx;
    struct mh_test_bytes *b = item;
    if (b->p)
        atomic_fetch_sub_explicit(&bytes_live, 1, memory_order_relaxed);
    free(b->p);
    b->p = NULL;
    b->len = 0;
}

const struct mh_codec mh_test_bytes_codec = {
    .size = bytes_size, .encode = bytes_encode, .decode = bytes_decode,
    .clear = bytes_clear,
};

#ifdef MH_TEST_GMP
int mh_test_factorial(const void *in, void *out, void *ctx)
{
    (void)ctx;
    unsigned long n = (unsigned long)*(const int *)in;
    mpz_ptr result = out;
    mpz_init_set_ui(result, 1);
    for (unsigned long k = 2; k <= n; k++)
        mpz_mul_ui(result, result, k);
    return 0;
}

size_t mh_test_factorials_differ(const int *in, size_t n, void *got)
{
    mpz_t *have = got, *want = malloc(n * sizeof *want + 1);
    mh_pool *seq = mh_test_pool("seq", 1, 0, MH_STOP);
    struct mh_task task = {
        .n = n, .in = in, .in_size = sizeof *in, .out = want, .out_size = sizeof *want,
        .fn = mh_test_factorial,
    };
    int rc = want && seq ? mh_map(seq, &task, NULL) : -1;
    mh_pool_close(seq);
    size_t wrong = rc == MH_OK ? 0 : n;
    for (size_t i = 0; i < n; i++) {
        if (rc == MH_OK) {
            if (mpz_cmp(have[i], want[i]) != 0 && wrong++ == 0)
                fprintf(stderr, "item %zu: %d! differs from seq\n", i, in[i]);
            mpz_clear(want[i]);
        }
        mpz_clear(have[i]);
    }
    free(want);
    return wrong;
}
#endif

/* A warm-up map, so that runtime threads a backend keeps for the life of
 * the process (libgomp's team, MPI's progress threads) are in the baseline
 * and only what a test leaves behind is counted. */
static int warm_identity(const void *in, void *out, void *ctx)
{
    (void)ctx;
    memcpy(out, in, sizeof(int));
    return 0;
}

static int warm_up(const char *backend, int *workers)
{
    int in[64] = {0}, out[64];
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    if (!pool)
        return 1;
    struct mh_task task = {
        .n = 64, .in = in, .in_size = sizeof *in, .out = out,
        .out_size = sizeof *out, .fn = warm_identity,
    };
    int rc = mh_map(pool, &task, NULL);
    *workers = mh_pool_workers(pool);
    mh_pool_close(pool);
    return rc != 0;
}

/* The thread count once it has held still for 20 ms (at most 2 s): a
 * thread pthread_join has returned for may still be listed in
 * /proc/self/task for a moment, so a count read just after a pool closed
 * can be one too high. */
int mh_test_threads_steady(void)
{
    int now = mh_test_count_threads();
    for (int i = 0, still = 0; i < 2000 && still < 20; i++) {
        mh_test_sleep_ms(1);
        int next = mh_test_count_threads();
        still = next == now ? still + 1 : 0;
        now = next;
    }
    return now;
}

int mh_test_threads_settle(int baseline)
{
    int now = mh_test_count_threads();
    for (int i = 0; i < 2000 && now != baseline; i++) {
        mh_test_sleep_ms(1);
        now = mh_test_count_threads();
    }
    return now;
}

/* Whether test applies to backend: `on` unset, or backend one of its
 * comma-separated names. */
static int test_applies(const struct mh_test *test, const char *backend)
{
    if (!test->on)
        return 1;
    size_t len = strlen(backend);
    for (const char *at = test->on; at; at = strchr(at, ',')) {
        at += *at == ',';
        if (strncmp(at, backend, len) == 0 && (at[len] == ',' || at[len] == '\0'))
            return 1;
    }
    return 0;
}

/* `--list`: a line per test, "NAME KIND BACKENDS [PATTERN]", KIND each,
 * once or dies, BACKENDS those of this build it runs on, comma-separated
 * ("-": none). tests/discover.cmake makes CTest's entries from it. */
static void test_list(const struct mh_test *tests)
{
    for (const struct mh_test *t = tests; t->name; t++) {
        printf("%s %s ", t->name, t->dies ? "dies" : t->once ? "once" : "each");
        int listed = 0;
        for (const char *const *b = mh_backends(); *b; b++)
            if (test_applies(t, *b))
                printf("%s%s", listed++ ? "," : "", *b);
        printf("%s%s%s\n", listed ? "" : "-", t->dies ? " " : "", t->dies ? t->dies : "");
    }
}

int mh_test_main(int argc, char **argv, const struct mh_test *tests)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        test_list(tests);
        return 0;
    }
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s TEST BACKEND [RANKS] | --list\n", argv[0]);
        return 1;
    }
    const struct mh_test *test = tests;
    while (test->name && strcmp(test->name, argv[1]) != 0)
        test++;
    if (!test->name) {
        fprintf(stderr, "no test called %s\n", argv[1]);
        return 1;
    }
    const char *backend = argv[2];
    if (!mh_test_have_backend(backend)) {
        fprintf(stderr, "backend %s is not in this build: skipped\n", backend);
        return MH_SKIP;
    }
    if (!test_applies(test, backend)) {
        fprintf(stderr, "%s runs on %s, not %s: skipped\n", test->name, test->on, backend);
        return MH_SKIP;
    }
    /* The environment must not choose for the tests. */
    unsetenv("MANYHANDS_BACKEND");
    unsetenv("MANYHANDS_WORKERS");

    mh_test_watchdog("MH_TEST_WATCHDOG", 120);

    int workers = 0;
    if (warm_up(backend, &workers)) {
        fprintf(stderr, "warm-up map on %s failed\n", backend);
        return 1;
    }
    if (argc == 4 && (workers != atoi(argv[3]) ||
                      mh_test_workers(backend, 2) != workers)) {
        fprintf(stderr, "%s: the pool has %d workers (environment says %d), the test "
                "asked for %s (a mismatched launcher?)\n", backend, workers,
                mh_test_workers(backend, 2), argv[3]);
        return 1;
    }
    int fds = mh_test_count_fds(), threads = mh_test_threads_steady();

    int rc = test->run(backend);
    if (rc == MH_SKIP)
        return MH_SKIP;

    /* The global invariants, whatever the test's verdict. */
    if (!mh_test_no_child()) {
        fprintf(stderr, "invariant: a child process is left\n");
        rc = 1;
    }
    int fds_after = mh_test_count_fds();
    if (fds_after != fds) {
        fprintf(stderr, "invariant: %d descriptors before, %d after\n", fds, fds_after);
        rc = 1;
    }
    int threads_after = mh_test_threads_settle(threads);
    if (threads_after != threads) {
        fprintf(stderr, "invariant: %d threads before, %d after\n", threads,
                threads_after);
        rc = 1;
    }
    alarm(0);
    fprintf(stderr, "%s %s: %s\n", test->name, backend, rc ? "FAIL" : "ok");
    return rc ? 1 : 0;
}
