/*
 * Kernel tests. Per backend (MH_TEST): every kernel mapped at a small size
 * and checked by its own verifier; the tcp kernel with its server stopped
 * fails with a clear error. Once (MH_TEST_ONCE, run on seq): each
 * verifier rejects a wrong output, the mpz codec round-trips, the
 * registry is well formed, and a malformed knob is refused.
 */
#include <errno.h>
#include <gmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "kernels.h"

#define WORKERS 3 /* more than this machine's cores: items really interleave */

/* Small knobs for every kernel: fast, and bandwidth's array wraps. */
static void small_knobs(void)
{
    setenv("MHK_BANDWIDTH_MIB", "8", 1); /* 32 slices of 256 KiB */
    setenv("MHK_FILE_MIB", "4", 1);
    unsetenv("MHK_FILE_WARM");
    unsetenv("MHK_SLEEP_US");
    unsetenv("MHK_TCP_DELAY_US");
}

/* The kernel's lifecycle (kernels.h, struct mhk_cell) with the small
 * knobs, every step checked. */
static int cell_open(struct mhk_cell *cell, const char *name, size_t n, uint64_t seed)
{
    small_knobs();
    const struct mhk_kernel *kernel = mhk_find(name);
    CHECK(kernel != NULL);
    CHECK_RC(mhk_cell_open(cell, kernel, n, seed), MH_OK);
    return 0;
}

/* ------------------------------------------------ every kernel, every backend */

/* Map kernel name over n items on backend (the pool opened after setup,
 * as kernels.h asks, with the kernel's per-worker hooks), twice (a second
 * run reuses what the first made: connections, the page cache dropped
 * again), and verify each run. */
static int check_kernel(const char *backend, const char *name, size_t n)
{
    struct mhk_cell cell;
    CHECK_OK(cell_open(&cell, name, n, 20261126));
    struct mh_config config = {.backend = backend, .workers = WORKERS};
    mhk_cell_hooks(&cell, &config);
    mh_pool *pool;
    CHECK_RC(mh_pool_open(&pool, &config), MH_OK);
    struct mh_task task = mhk_cell_task(&cell);
    int failed = 0;
    for (int run = 0; run < 2 && !failed; run++) {
        if (run)
            cell.kernel->generate(cell.in, n, 20261126 + run, cell.ctx);
        struct mh_report report;
        int rc = mh_map(pool, &task, &report);
        if (rc) {
            fprintf(stderr, "%s on %s: %s (item %zu, callback %d)\n", name,
                    backend, mh_err_name(rc), report.failed_index,
                    report.callback_code);
            failed = 1;
            break;
        }
        if (!mh_test_holds_results(backend))
            continue; /* mpi, rank > 0: rank 0 verifies */
        size_t wrong = mhk_cell_verify(&cell);
        if (wrong)
            fprintf(stderr, "%s on %s: item %zu is wrong\n", name, backend, wrong - 1);
        failed = wrong != 0;
    }
    /* tcp: each thread of each process connects once and reuses it: per
     * run, no more connections than workers and the caller (fork starts
     * new workers for each map), never one per item. */
    if (!failed && strcmp(name, "tcp") == 0) {
        uint64_t accepted = mhk_tcp_accepted(cell.ctx);
        if (accepted < 1 || accepted > 2 * (WORKERS + 1))
            fprintf(stderr, "tcp on %s: %llu connections for %zu items\n", backend,
                    (unsigned long long)accepted, 2 * n);
        failed = accepted < 1 || accepted > 2 * (WORKERS + 1);
    }
    mh_pool_close(pool);
    mhk_cell_close(&cell);
    return failed;
}

static int test_factorial(const char *backend) { return check_kernel(backend, "factorial", 3000); }
static int test_factorial_gmp(const char *backend) { return check_kernel(backend, "factorial-gmp", 3000); }
static int test_primes(const char *backend) { return check_kernel(backend, "primes", 150); }
static int test_bandwidth(const char *backend) { return check_kernel(backend, "bandwidth", 100); }
static int test_sleep(const char *backend) { return check_kernel(backend, "sleep", 64); }
static int test_file(const char *backend) { return check_kernel(backend, "file", 128); }
static int test_tcp(const char *backend) { return check_kernel(backend, "tcp", 64); }

/* Every registered kernel is covered by a test above. */
static int test_all_kernels_tested(const char *backend)
{
    (void)backend;
    static const char *const tested[] = {
        "factorial", "factorial-gmp", "primes", "bandwidth", "sleep", "file", "tcp", NULL,
    };
    for (const struct mhk_kernel *const *k = mhk_kernels(); *k; k++) {
        const char *const *t = tested;
        while (*t && strcmp(*t, (*k)->name) != 0)
            t++;
        if (!*t)
            fprintf(stderr, "kernel %s has no test here\n", (*k)->name);
        CHECK(*t != NULL);
    }
    return 0;
}

/* The server stopped after a good run: the next map fails with a clear
 * callback error (refused, reset, broken pipe), not a hang or a timeout;
 * with the kernel's hooks (connections per worker) and without (per
 * thread). */
static int check_tcp_server_stopped(const char *backend, bool hooks)
{
    struct mhk_cell cell;
    CHECK_OK(cell_open(&cell, "tcp", 32, 7));
    struct mh_config config = {.backend = backend, .workers = WORKERS};
    if (hooks)
        mhk_cell_hooks(&cell, &config);
    mh_pool *pool;
    CHECK_RC(mh_pool_open(&pool, &config), MH_OK);
    struct mh_task task = mhk_cell_task(&cell);
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_OK);
    if (mh_test_holds_results(backend))
        CHECK(cell.kernel->verify(cell.in, cell.out, cell.n, cell.ctx) == 0);

    CHECK_RC(mhk_tcp_stop_server(cell.ctx), MH_OK);
    CHECK_RC(mh_map(pool, &task, &report), MH_ECALLBACK);
    int code = report.callback_code;
    fprintf(stderr, "after stop: item %zu failed with %d (%s)\n",
            report.failed_index, code, strerror(code));
    CHECK(report.failed_index != MH_NO_ITEM);
    CHECK(code == ECONNREFUSED || code == ECONNRESET || code == EPIPE);
    /* And again: connections dropped by the failure reconnect, refused. */
    CHECK_RC(mh_map(pool, &task, &report), MH_ECALLBACK);
    CHECK(report.callback_code == ECONNREFUSED || report.callback_code == ECONNRESET ||
          report.callback_code == EPIPE);
    mh_pool_close(pool);
    mhk_cell_close(&cell);
    return 0;
}

static int test_tcp_server_stopped(const char *backend)
{
    return check_tcp_server_stopped(backend, false);
}

static int test_tcp_server_stopped_hooks(const char *backend)
{
    return check_tcp_server_stopped(backend, true);
}

/* With the kernel's hooks a connection is its worker's: the pool's close
 * closes the caller's process's connections (fini), not teardown. */
static int test_tcp_hooks_release_connections(const char *backend)
{
    struct mhk_cell cell;
    CHECK_OK(cell_open(&cell, "tcp", 32, 9));
    struct mh_config config = {.backend = backend, .workers = WORKERS};
    mhk_cell_hooks(&cell, &config);
    int fds = mh_test_count_fds();
    mh_pool *pool;
    CHECK_RC(mh_pool_open(&pool, &config), MH_OK);
    struct mh_task task = mhk_cell_task(&cell);
    for (int run = 0; run < 2; run++) {
        CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
        CHECK(cell.kernel->verify(cell.in, cell.out, cell.n, cell.ctx) == 0);
    }
    mh_pool_close(pool);
    /* The server closes its ends once it reads EOF: give it 2 s. */
    for (int i = 0; i < 200 && mh_test_count_fds() != fds; i++)
        mh_test_sleep_ms(10);
    CHECK(mh_test_count_fds() == fds);
    CHECK(mhk_tcp_accepted(cell.ctx) >= 1);
    mhk_cell_close(&cell);
    return 0;
}

/* ------------------------------------------------------- verifiers reject */

/* Compute n outputs in this process by calling fn directly; the verifier
 * must accept them, then reject each corruption made at item n / 2. */
static int check_wrong(const char *name, size_t n,
                       int (*corrupt)(const struct mhk_kernel *, void *item, void *ctx))
{
    struct mhk_cell cell;
    CHECK_OK(cell_open(&cell, name, n, 99));
    const struct mhk_kernel *k = cell.kernel;
    for (size_t i = 0; i < n; i++)
        CHECK(k->fn((char *)cell.in + i * k->in_size,
                    (char *)cell.out + i * k->out_size, cell.ctx) == 0);
    CHECK(k->verify(cell.in, cell.out, n, cell.ctx) == 0);
    size_t bad = n / 2;
    CHECK(corrupt(k, (char *)cell.out + bad * k->out_size, cell.ctx) == 0);
    size_t wrong = k->verify(cell.in, cell.out, n, cell.ctx);
    if (wrong != bad + 1)
        fprintf(stderr, "%s: verify gave %zu for a wrong item %zu\n", name, wrong, bad);
    CHECK(wrong == bad + 1);
    mhk_clear_outputs(k, cell.out, n, cell.ctx);
    mhk_cell_close(&cell);
    return 0;
}

/* Flip one bit in each of the first `bytes` bytes of item n / 2, one byte
 * at a time: every such change must be caught, and undoing it accepted. */
static int check_wrong_each_byte(const char *name, size_t n, size_t bytes)
{
    struct mhk_cell cell;
    CHECK_OK(cell_open(&cell, name, n, 98));
    const struct mhk_kernel *k = cell.kernel;
    CHECK(k->codec == NULL && bytes <= k->out_size);
    for (size_t i = 0; i < n; i++)
        CHECK(k->fn((char *)cell.in + i * k->in_size,
                    (char *)cell.out + i * k->out_size, cell.ctx) == 0);
    size_t bad = n / 2;
    unsigned char *item = (unsigned char *)cell.out + bad * k->out_size;
    for (size_t b = 0; b < bytes; b++) {
        CHECK(k->verify(cell.in, cell.out, n, cell.ctx) == 0);
        item[b] ^= 0x10;
        size_t wrong = k->verify(cell.in, cell.out, n, cell.ctx);
        if (wrong != bad + 1)
            fprintf(stderr, "%s: byte %zu flipped, verify gave %zu\n", name, b, wrong);
        CHECK(wrong == bad + 1);
        item[b] ^= 0x10;
    }
    mhk_cell_close(&cell);
    return 0;
}

static int corrupt_mpz(const struct mhk_kernel *k, void *item, void *ctx)
{
    (void)k;
    (void)ctx;
    mpz_add_ui(item, item, 1);
    return 0;
}

static int corrupt_first_bit(const struct mhk_kernel *k, void *item, void *ctx)
{
    (void)k;
    (void)ctx;
    *(unsigned char *)item ^= 1;
    return 0;
}

/* sleep: the echo right, but the item claims it waited too little. */
static int corrupt_sleep_short(const struct mhk_kernel *k, void *item, void *ctx)
{
    (void)k;
    (void)ctx;
    uint64_t *waited = (uint64_t *)item + 1;
    *waited = 999999; /* the delay is 1 ms: 1 ns short */
    return 0;
}

static int test_wrong_factorial(const char *b) { (void)b; return check_wrong("factorial", 500, corrupt_mpz); }
static int test_wrong_factorial_gmp(const char *b) { (void)b; return check_wrong("factorial-gmp", 500, corrupt_mpz); }
static int test_wrong_primes(const char *b)
{
    (void)b;
    CHECK_OK(check_wrong("primes", 60, corrupt_first_bit)); /* prime <-> composite */
    return check_wrong_each_byte("primes", 60, sizeof(int32_t));
}
static int test_wrong_bandwidth(const char *b) { (void)b; return check_wrong_each_byte("bandwidth", 40, 8); }
static int test_wrong_sleep(const char *b)
{
    (void)b;
    CHECK_OK(check_wrong_each_byte("sleep", 16, 8)); /* the echo */
    return check_wrong("sleep", 16, corrupt_sleep_short);
}
static int test_wrong_file(const char *b) { (void)b; return check_wrong_each_byte("file", 64, 8); }
static int test_wrong_tcp(const char *b) { (void)b; return check_wrong_each_byte("tcp", 16, 8); }

/* factorial: a result that is right for its neighbour, (n-1)!, fails too. */
static int test_wrong_factorial_neighbour(const char *backend)
{
    (void)backend;
    const struct mhk_kernel *k = mhk_find("factorial");
    CHECK(k != NULL);
    int in[3] = {5, 50, 99};
    mpz_t out[3];
    for (int i = 0; i < 3; i++)
        CHECK(k->fn(&in[i], out[i], NULL) == 0);
    CHECK(k->verify(in, out, 3, NULL) == 0);
    mpz_fac_ui(out[1], 49);
    CHECK(k->verify(in, out, 3, NULL) == 2);
    CHECK(mhk_find("factorial-gmp")->verify(in, out, 3, NULL) == 2);
    for (int i = 0; i < 3; i++)
        mpz_clear(out[i]);
    return 0;
}

/* ------------------------------------------------------------ the codec */

static int roundtrip(mpz_srcptr value)
{
    const struct mh_codec *codec = &mhk_mpz_codec;
    size_t len = codec->size(value, NULL);
    unsigned char *buf = malloc(len + 1);
    CHECK(buf != NULL);
    CHECK(codec->encode(value, buf, len, NULL) == 0);
    mpz_t back;
    CHECK(codec->decode(back, buf, len, NULL) == 0);
    int same = mpz_cmp(back, value) == 0;
    codec->clear(back, NULL);
    /* A wrong length is refused, never a short or overlong record. */
    if (len)
        CHECK(codec->encode(value, buf, len - 1, NULL) != 0);
    CHECK(codec->encode(value, buf, len + 1, NULL) != 0);
    free(buf);
    CHECK(same);
    return 0;
}

static int test_codec_roundtrip(const char *backend)
{
    (void)backend;
    mpz_t x;
    mpz_init(x);
    CHECK_OK(roundtrip(x)); /* zero: no bytes */
    CHECK(mhk_mpz_codec.size(x, NULL) == 0);
    for (unsigned long n = 1; n < 100; n++) {
        mpz_fac_ui(x, n);
        CHECK_OK(roundtrip(x));
    }
    mpz_set_ui(x, 255); /* exactly one limb */
    CHECK(mhk_mpz_codec.size(x, NULL) == sizeof(mp_limb_t));
    CHECK_OK(roundtrip(x));
    /* A record that is not whole limbs is refused, not half read. */
    unsigned char odd[sizeof(mp_limb_t) + 1] = {0};
    mpz_t y;
    CHECK(mhk_mpz_codec.decode(y, odd, sizeof odd, NULL) != 0);
    mpz_ui_pow_ui(x, 2, 4096);
    mpz_add_ui(x, x, 12345);
    CHECK_OK(roundtrip(x));
    /* Negative values are not the kernels' and are refused. */
    mpz_set_si(x, -5);
    unsigned char buf[8];
    CHECK(mhk_mpz_codec.encode(x, buf, mhk_mpz_codec.size(x, NULL), NULL) != 0);
    mpz_clear(x);
    return 0;
}

/* ------------------------------------------------- in a forked process */

#define RECORD 512 /* bytes per item in the shared region: length + payload */

/* What the fork backend will do, done by hand for every kernel: after
 * setup, a forked child runs fn (making its own per-process state: the
 * tcp connection) and encodes each output into shared memory; the parent
 * decodes and verifies. Also checks that the child's connections are not
 * the parent's. */
static int test_forked_child(const char *backend)
{
    (void)backend;
#if defined(__SANITIZE_THREAD__)
#define KERNELS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KERNELS_TSAN 1
#endif
#endif
#ifdef KERNELS_TSAN
    /* TSan starts a helper thread at the first fork (the thread count
     * would change) and does not support a multithreaded fork: the fork
     * backend's own entries cover this under TSan. */
    fprintf(stderr, "forked_child: not under ThreadSanitizer\n");
    return MH_SKIP;
#endif
    for (const struct mhk_kernel *const *p = mhk_kernels(); *p; p++) {
        const struct mhk_kernel *k = *p;
        size_t n = strcmp(k->name, "primes") == 0 ? 40 : 24;
        struct mhk_cell cell;
        CHECK_OK(cell_open(&cell, k->name, n, 5));
        unsigned char *shared = mmap(NULL, n * RECORD, PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        CHECK(shared != MAP_FAILED);
        /* The parent uses the kernel first, so the child inherits its
         * per-thread state (tcp: a connection of the parent's). */
        CHECK(k->fn(cell.in, cell.out, cell.ctx) == 0);
        if (k->codec)
            k->codec->clear(cell.out, cell.ctx);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            int bad = 0;
            for (size_t i = 0; i < n && !bad; i++) {
                void *out = (char *)cell.out + i * k->out_size;
                unsigned char *rec = shared + i * RECORD;
                bad = k->fn((char *)cell.in + i * k->in_size, out, cell.ctx) != 0;
                if (bad)
                    break;
                size_t len = k->codec ? k->codec->size(out, cell.ctx) : k->out_size;
                bad = len > RECORD - sizeof len;
                if (!bad) {
                    memcpy(rec, &len, sizeof len);
                    if (k->codec)
                        bad = k->codec->encode(out, rec + sizeof len, len, cell.ctx) != 0;
                    else
                        memcpy(rec + sizeof len, out, len);
                }
                if (k->codec)
                    k->codec->clear(out, cell.ctx);
            }
            _exit(bad);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fprintf(stderr, "%s: the forked child failed (status %d)\n", k->name, status);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        for (size_t i = 0; i < n; i++) {
            void *out = (char *)cell.out + i * k->out_size;
            unsigned char *rec = shared + i * RECORD;
            size_t len;
            memcpy(&len, rec, sizeof len);
            if (k->codec)
                CHECK(k->codec->decode(out, rec + sizeof len, len, cell.ctx) == 0);
            else
                memcpy(out, rec + sizeof len, len);
        }
        size_t wrong = k->verify(cell.in, cell.out, n, cell.ctx);
        if (wrong)
            fprintf(stderr, "%s: item %zu from the child is wrong\n", k->name, wrong - 1);
        CHECK(wrong == 0);
        /* The parent still works after the child is gone. */
        mhk_clear_outputs(k, cell.out, n, cell.ctx);
        CHECK(k->fn(cell.in, cell.out, cell.ctx) == 0);
        if (k->codec)
            k->codec->clear(cell.out, cell.ctx);
        munmap(shared, n * RECORD);
        mhk_cell_close(&cell);
    }
    return 0;
}

/* ------------------------------------------------------------- registry */

static int test_registry(const char *backend)
{
    (void)backend;
    int count = 0, seen_io = 0;
    for (const struct mhk_kernel *const *p = mhk_kernels(); *p; p++, count++) {
        const struct mhk_kernel *k = *p;
        CHECK(k->name && k->description && k->generate && k->fn && k->verify);
        CHECK(k->in_size > 0 && k->out_size > 0);
        CHECK(k->quick_items > 0 && k->quick_items < k->default_items);
        CHECK(!k->setup == !k->teardown);
        CHECK(k->bound == MHK_CPU || k->bound == MHK_IO);
        if (k->bound == MHK_IO)
            seen_io = 1;
        else
            CHECK(!seen_io); /* CPU-bound first */
        CHECK(mhk_find(k->name) == k);
        if (k->codec)
            CHECK(k->codec->size && k->codec->encode && k->codec->decode &&
                  k->codec->clear);
    }
    CHECK(count == 7);
    CHECK(mhk_find("no-such-kernel") == NULL);
    CHECK(mhk_find(NULL) == NULL);
    return 0;
}

/* A malformed or out-of-range knob is refused, not silently replaced. */
static int test_bad_knobs(const char *backend)
{
    (void)backend;
    static const struct {
        const char *kernel, *var, *value;
    } bad[] = {
        {"sleep", "MHK_SLEEP_US", "1ms"},  {"sleep", "MHK_SLEEP_US", "-1"},
        {"tcp", "MHK_TCP_DELAY_US", " 5"}, {"file", "MHK_FILE_MIB", "0"},
        {"bandwidth", "MHK_BANDWIDTH_MIB", "x"},
        {"file", "MHK_FILE_WARM", "2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        small_knobs();
        setenv(bad[i].var, bad[i].value, 1);
        void *ctx = NULL;
        const struct mhk_kernel *k = mhk_find(bad[i].kernel);
        CHECK(k != NULL);
        CHECK_RC(k->setup(&ctx, 8, 1), MH_EINVAL);
        CHECK(ctx == NULL);
        unsetenv(bad[i].var);
    }
    return 0;
}

/* ---------------------------------------------------------------- table */

static const struct mh_test tests[] = {
    MH_TEST(factorial)
    MH_TEST(factorial_gmp)
    MH_TEST(primes)
    MH_TEST(bandwidth)
    MH_TEST(sleep)
    MH_TEST(file)
    MH_TEST(tcp)
    MH_TEST(tcp_server_stopped)
    MH_TEST(tcp_server_stopped_hooks)
    MH_TEST_ON(tcp_hooks_release_connections, "seq,threads,openmp,fork")
    MH_TEST_ONCE(all_kernels_tested)
    MH_TEST_ONCE(wrong_factorial)
    MH_TEST_ONCE(wrong_factorial_neighbour)
    MH_TEST_ONCE(wrong_factorial_gmp)
    MH_TEST_ONCE(wrong_primes)
    MH_TEST_ONCE(wrong_bandwidth)
    MH_TEST_ONCE(wrong_sleep)
    MH_TEST_ONCE(wrong_file)
    MH_TEST_ONCE(wrong_tcp)
    MH_TEST_ONCE(codec_roundtrip)
    MH_TEST_ONCE(forked_child)
    MH_TEST_ONCE(registry)
    MH_TEST_ONCE(bad_knobs)
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return mh_test_main(argc, argv, tests);
}
