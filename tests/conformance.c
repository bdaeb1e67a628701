/*
 * The conformance suite: every backend must pass every test here, and its
 * results must equal seq's byte for byte. One CTest entry per MH_TEST
 * line of the table and backend (from `conformance --list`).
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* ------------------------------------------------------------ functions */

/* Output bytes derived from every input byte (FNV-1a), so any misplaced,
 * skipped or repeated item shows. */
struct mix_ctx {
    size_t in_size, out_size;
    atomic_size_t calls;
};

static int fn_mix(const void *in, void *out, void *vctx)
{
    struct mix_ctx *ctx = vctx;
    const unsigned char *p = in;
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < ctx->in_size; i++)
        h = (h ^ p[i]) * 1099511628211u;
    unsigned char *q = out;
    for (size_t j = 0; j < ctx->out_size; j++) {
        h = (h ^ j) * 1099511628211u;
        q[j] = (unsigned char)(h >> 29);
    }
    atomic_fetch_add_explicit(&ctx->calls, 1, memory_order_relaxed);
    return 0;
}

/* n items of size bytes, filled from seed. */
static unsigned char *make_input(size_t n, size_t size, unsigned seed)
{
    unsigned char *buf = malloc(n * size + 1);
    uint64_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n * size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
    return buf;
}

/*
 * Map n items of the given sizes on backend (workers, chunk) and on seq,
 * and compare the outputs byte for byte, and with fn called directly.
 */
static int check_mix(const char *backend, size_t n, size_t in_size,
                     size_t out_size, int workers, size_t chunk)
{
    unsigned char *in = make_input(n, in_size, (unsigned)(n + in_size));
    unsigned char *out = malloc(n * out_size + 1);
    unsigned char *want = malloc(n * out_size + 1);
    unsigned char *oracle = malloc(n * out_size + 1);
    uint8_t *status = malloc(n + 1);
    /* Shared, so that calls made in worker processes are counted too. */
    struct mix_ctx *shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    struct mix_ctx ctx_init = {.in_size = in_size, .out_size = out_size};
    memcpy(shared, &ctx_init, sizeof ctx_init);
    struct mix_ctx *ctx = shared;
    int failed = 0;
    /* mpi under mpiexec: only rank 0 gets the outputs, and fn also runs
     * in the other ranks' processes, out of this counter's sight. */
    int here = mh_test_holds_results(backend);
    size_t calls_least = mh_test_ranks(backend) > 1 ? n : 2 * n;

    for (size_t i = 0; i < n; i++)
        fn_mix(in + i * in_size, want + i * out_size, ctx);
    atomic_store(&ctx->calls, 0);

    struct mh_task task = {
        .n = n, .in = in, .in_size = in_size, .out = out, .out_size = out_size,
        .fn = fn_mix, .ctx = ctx, .status = status,
    };
    struct mh_report report;
    mh_pool *pool = mh_test_pool(backend, workers, chunk, MH_STOP);
    memset(out, 0xA5, n * out_size);
    int rc = pool ? mh_map(pool, &task, &report) : -1;
    mh_pool_close(pool);

    mh_pool *seq = mh_test_pool("seq", 1, chunk, MH_STOP);
    task.out = oracle;
    task.status = NULL;
    int rc_seq = seq ? mh_map(seq, &task, NULL) : -1;
    mh_pool_close(seq);

    if (rc != 0 || rc_seq != 0) {
        fprintf(stderr, "map n=%zu in=%zu out=%zu workers=%d chunk=%zu: %s / seq %s\n",
                n, in_size, out_size, workers, chunk, mh_err_name(rc),
                mh_err_name(rc_seq));
        failed = 1;
    } else if ((here && memcmp(out, want, n * out_size) != 0) ||
               memcmp(oracle, want, n * out_size) != 0) {
        fprintf(stderr, "map n=%zu in=%zu out=%zu workers=%d chunk=%zu: wrong output\n",
                n, in_size, out_size, workers, chunk);
        failed = 1;
    } else if (report.items_done != n || report.items_failed != 0 ||
               report.failed_index != MH_NO_ITEM || report.code != 0) {
        fprintf(stderr, "map n=%zu: report says done %zu failed %zu index %zu\n", n,
                report.items_done, report.items_failed, report.failed_index);
        failed = 1;
    } else if (atomic_load(&ctx->calls) < calls_least || atomic_load(&ctx->calls) > 2 * n) {
        fprintf(stderr, "map n=%zu: fn ran %zu times, want %zu\n", n,
                atomic_load(&ctx->calls), 2 * n);
        failed = 1;
    } else if (here) {
        for (size_t i = 0; i < n; i++)
            if (status[i] != MH_ITEM_OK) {
                fprintf(stderr, "map n=%zu: status[%zu] = %d\n", n, i, status[i]);
                failed = 1;
                break;
            }
    }
    free(in);
    free(out);
    free(want);
    free(oracle);
    free(status);
    munmap(shared, sizeof *shared);
    return failed;
}

/* ------------------------------------------------------- results equal */

static int test_map_n0(const char *backend)
{
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    struct mix_ctx ctx = {.in_size = 4, .out_size = 4};
    int threads = mh_test_count_threads();
    struct mh_task task = {.n = 0, .in_size = 4, .out_size = 4, .fn = fn_mix, .ctx = &ctx};
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_OK);
    CHECK(atomic_load(&ctx.calls) == 0);
    CHECK(report.items_done == 0 && report.failed_index == MH_NO_ITEM);
    CHECK(mh_test_count_threads() == threads); /* nothing started for it */
    mh_pool_close(pool);
    return 0;
}

static int test_map_n1(const char *backend)
{
    CHECK_OK(check_mix(backend, 1, 8, 8, 2, 0));
    CHECK_OK(check_mix(backend, 1, 1, 64, 4, 0));
    return 0;
}

static int test_map_n_workers_minus_1(const char *backend)
{
    for (int workers = 2; workers <= 8; workers *= 2)
        CHECK_OK(check_mix(backend, (size_t)workers - 1, 8, 8, workers, 0));
    return 0;
}

static int test_map_n_prime(const char *backend)
{
    const size_t chunks[] = {0, 1, 2, 7, 64, 1009, 5000};
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++)
        CHECK_OK(check_mix(backend, 1009, 12, 20, 3, chunks[i]));
    return 0;
}

static int test_map_n_million(const char *backend)
{
    CHECK_OK(check_mix(backend, 1000000, 4, 8, 2, 0));
    return 0;
}

static int test_map_elem_sizes(const char *backend)
{
    const size_t sizes[] = {1, 3, 8, 24, 100, 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (size_t j = 0; j < sizeof sizes / sizeof *sizes; j += 2)
            CHECK_OK(check_mix(backend, 257, sizes[i], sizes[j], 2, 0));
    return 0;
}

static int test_map_chunk_one(const char *backend)
{
    CHECK_OK(check_mix(backend, 10007, 8, 8, 2, 1));
    return 0;
}

static int test_map_chunk_larger_than_n(const char *backend)
{
    CHECK_OK(check_mix(backend, 10, 8, 8, 4, 1000));
    return 0;
}

/* Adaptive chunks (a body, then a tail that halves to single items) cover
 * every item exactly once, for n around each tail's edges. */
static int test_map_chunk_adaptive(const char *backend)
{
    static const size_t ns[] = {1, 2, 3, 5, 8, 13, 31, 64, 100, 127, 128, 129, 255,
                                257, 1000, 4095, 4097, 65537, 300001};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
        for (int workers = 1; workers <= 4; workers += 3)
            CHECK_OK(check_mix(backend, ns[k], 3, 5, workers, 0));
    return 0;
}

static int test_map_workers_more_than_items(const char *backend)
{
    CHECK_OK(check_mix(backend, 5, 8, 8, 32, 0));
    CHECK_OK(check_mix(backend, 100, 8, 8, 64, 1));
    return 0;
}

static int test_map_workers_clamped(const char *backend)
{
    mh_pool *pool = mh_test_pool(backend, 1000000, 0, MH_STOP);
    CHECK(pool);
    CHECK(mh_pool_workers(pool) == mh_test_workers(backend, 1000000));
    mh_pool_close(pool);
    CHECK_OK(check_mix(backend, 3000, 8, 8, 1000000, 0));
    return 0;
}

static int test_map_workers_auto(const char *backend)
{
    mh_pool *pool = mh_test_pool(backend, 0, 0, MH_STOP);
    CHECK(pool);
    CHECK(mh_pool_workers(pool) >= 1);
    CHECK(strcmp(mh_pool_backend(pool), backend) == 0);
    CHECK(mh_pool_rank(NULL) == 0);
    CHECK(strcmp(backend, "mpi") == 0 || mh_pool_rank(pool) == 0);
    mh_pool_close(pool);
    CHECK_OK(check_mix(backend, 4096, 8, 8, 0, 0));
    return 0;
}

static int test_map_stress_random(const char *backend)
{
    unsigned seed = 12345;
    for (int round = 0; round < 60; round++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 8) % 5000;
        size_t in_size = 1 + (seed >> 3) % 40;
        size_t out_size = 1 + (seed >> 13) % 40;
        int workers = 1 + (int)((seed >> 20) % 8);
        size_t chunk = (seed >> 24) % 3 == 0 ? 0 : 1 + (seed >> 4) % 300;
        CHECK_OK(check_mix(backend, n, in_size, out_size, workers, chunk));
    }
    return 0;
}

/* Heap strings as outputs, through a codec: owned memory crosses back. */
struct str_item {
    char *text;
};

static atomic_long live_strings;

static int fn_string(const void *in, void *out, void *ctx)
{
    (void)ctx;
    unsigned value = *(const unsigned *)in;
    struct str_item *item = out;
    size_t len = 1 + value % 3000; /* some past a page */
    item->text = malloc(len + 1);
    if (!item->text)
        return 1;
    for (size_t i = 0; i < len; i++)
        item->text[i] = (char)('a' + (value + i) % 26);
    item->text[len] = '\0';
    atomic_fetch_add(&live_strings, 1);
    return 0;
}

static size_t str_size(const void *item, void *ctx)
{
    (void)ctx;
    return strlen(((const struct str_item *)item)->text);
}

static int str_encode(const void *item, void *buf, size_t len, void *ctx)
{
    (void)ctx;
    memcpy(buf, ((const struct str_item *)item)->text, len);
    return 0;
}

static int str_decode(void *item, const void *buf, size_t len, void *ctx)
{
    (void)ctx;
    char *text = malloc(len + 1);
    if (!text)
        return 1;
    memcpy(text, buf, len);
    text[len] = '\0';
    ((struct str_item *)item)->text = text;
    atomic_fetch_add(&live_strings, 1);
    return 0;
}

static void str_clear(void *item, void *ctx)
{
    (void)ctx;
    free(((struct str_item *)item)->text);
    atomic_fetch_sub(&live_strings, 1);
}

static const struct mh_codec str_codec = {
    .size = str_size, .encode = str_encode, .decode = str_decode, .clear = str_clear,
};

static int test_map_codec(const char *backend)
{
    enum { N = 2000 };
    static unsigned in[N];
    static struct str_item out[N];
    for (unsigned i = 0; i < N; i++)
        in[i] = i * 7919u;
    mh_pool *pool = mh_test_pool(backend, 3, 0, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_string, .codec = &str_codec,
    };
    CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
    mh_pool_close(pool);
    int failed = 0;
    for (unsigned i = 0; i < N && mh_test_holds_results(backend); i++) {
        struct str_item want;
        if (fn_string(&in[i], &want, NULL))
            return 1;
        failed |= strcmp(want.text, out[i].text) != 0;
        str_clear(&want, NULL);
        str_clear(&out[i], NULL);
    }
    CHECK(!failed);
    CHECK(atomic_load(&live_strings) == 0);
    return 0;
}

static int test_map_status_all_ok(const char *backend)
{
    CHECK_OK(check_mix(backend, 3333, 8, 8, 3, 5));
    return 0;
}

struct progress_log {
    size_t calls, last, n;
    int backwards, wrong_n;
};

static int fn_progress(const void *in, void *out, void *ctx)
{
    (void)ctx;
    memcpy(out, in, sizeof(int));
    return 0;
}

static int on_progress(size_t done, size_t n, void *ctx)
{
    struct progress_log *log = ctx;
    log->calls++;
    log->backwards |= done < log->last;
    log->wrong_n |= n != log->n;
    log->last = done;
    return 0;
}

static int test_map_progress(const char *backend)
{
    enum { N = 20000 };
    static int in[N], out[N];
    struct progress_log log = {.n = N};
    mh_pool *pool = mh_test_pool(backend, 2, 100, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_progress, .ctx = &log, .progress = on_progress,
    };
    CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
    mh_pool_close(pool);
    CHECK(log.calls >= 1);
    CHECK(!log.backwards && !log.wrong_n);
    CHECK(log.last == N);
    return 0;
}

static int test_report_fields(const char *backend)
{
    enum { N = 5000 };
    static int in[N], out[N];
    mh_pool *pool = mh_test_pool(backend, 2, 77, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_progress,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_OK);
    mh_pool_close(pool);
    CHECK(report.code == MH_OK);
    CHECK(report.backend && strcmp(report.backend, backend) == 0);
    CHECK(report.chunk == 77);
    CHECK(report.workers >= 1 && report.workers <= mh_test_workers(backend, 2));
    CHECK(report.items_done == N && report.items_failed == 0);
    CHECK(report.failed_index == MH_NO_ITEM && report.failed_status == MH_ITEM_OK);
    CHECK(report.worker_signal == 0 && report.worker_exit == -1 && report.worker_pid == 0);
    CHECK(report.wall_s >= 0 && report.wall_s < 60);
    return 0;
}

/* ------------------------------------------------------------ bad input */

static atomic_int bad_calls;

static int fn_count(const void *in, void *out, void *ctx)
{
    (void)in;
    (void)out;
    (void)ctx;
    atomic_fetch_add(&bad_calls, 1);
    return 0;
}

/* mh_map(task) must fail with want, run nothing, and say so in report. */
static int expect_refused(mh_pool *pool, const struct mh_task *task, int want)
{
    struct mh_report report;
    atomic_store(&bad_calls, 0);
    CHECK_RC(mh_map(pool, task, &report), want);
    CHECK(report.code == want && report.items_done == 0);
    CHECK(report.failed_index == MH_NO_ITEM);
    CHECK(atomic_load(&bad_calls) == 0);
    return 0;
}

static int test_bad_null_args(const char *backend)
{
    int in[4] = {0}, out[4];
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    struct mh_task good = {
        .n = 4, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_count,
    };
    struct mh_task task = good;
    CHECK_RC(mh_map(NULL, &task, NULL), MH_EINVAL);
    CHECK_OK(expect_refused(pool, NULL, MH_EINVAL));
    task.fn = NULL;
    CHECK_OK(expect_refused(pool, &task, MH_EINVAL));
    task = good;
    task.in = NULL;
    CHECK_OK(expect_refused(pool, &task, MH_EINVAL));
    task = good;
    task.out = NULL;
    CHECK_OK(expect_refused(pool, &task, MH_EINVAL));
    CHECK_RC(mh_pool_open(NULL, NULL), MH_EINVAL);
    /* NULL arrays are fine when there are no items. */
    task = good;
    task.n = 0;
    task.in = NULL;
    task.out = NULL;
    CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
    mh_pool_close(pool);
    mh_pool_close(NULL);
    return 0;
}

static int test_bad_zero_sizes(const char *backend)
{
    int in[4] = {0}, out[4];
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = 4, .in = in, .in_size = 0, .out = out, .out_size = sizeof *out,
        .fn = fn_count,
    };
    CHECK_OK(expect_refused(pool, &task, MH_EINVAL));
    task.in_size = sizeof *in;
    task.out_size = 0;
    CHECK_OK(expect_refused(pool, &task, MH_EINVAL));
    task.n = 0;
    CHECK_OK(expect_refused(pool, &task, MH_EINVAL));
    mh_pool_close(pool);
    return 0;
}

static int test_bad_overflow(const char *backend)
{
    int in[4] = {0}, out[4];
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = 2, .in = in, .in_size = SIZE_MAX / 2 + 1, .out = out, .out_size = 4,
        .fn = fn_count,
    };
    CHECK_OK(expect_refused(pool, &task, MH_EOVERFLOW));
    task.in_size = 4;
    task.out_size = SIZE_MAX / 2 + 1;
    CHECK_OK(expect_refused(pool, &task, MH_EOVERFLOW));
    task.out_size = 4;
    task.n = SIZE_MAX / 3;
    CHECK_OK(expect_refused(pool, &task, MH_EOVERFLOW));
    mh_pool_close(pool);
    return 0;
}

static int test_bad_config(const char *backend)
{
    mh_pool *pool = (mh_pool *)&pool; /* must be reset to NULL on error */
    struct mh_config config = {.backend = backend, .workers = -1};
    CHECK_RC(mh_pool_open(&pool, &config), MH_EINVAL);
    CHECK(pool == NULL);
    config.workers = 2;
    config.on_error = (enum mh_on_error)7;
    CHECK_RC(mh_pool_open(&pool, &config), MH_EINVAL);
    config.on_error = MH_STOP;
    config.timeout_s = -1;
    CHECK_RC(mh_pool_open(&pool, &config), MH_EINVAL);
    config.timeout_s = NAN;
    CHECK_RC(mh_pool_open(&pool, &config), MH_EINVAL);
    config.timeout_s = 0;
    CHECK_RC(mh_pool_open(&pool, &config), MH_OK);
    mh_pool_close(pool);
    return 0;
}

static int test_bad_backend(const char *backend)
{
    (void)backend;
    mh_pool *pool;
    struct mh_config config = {.backend = "no-such-backend"};
    CHECK_RC(mh_pool_open(&pool, &config), MH_ENOTSUP);
    config.backend = "";
    CHECK_RC(mh_pool_open(&pool, &config), MH_ENOTSUP);
    /* Every backend manyhands knows, and this build lacks, is refused. */
    const char *known[] = {"seq", "threads", "openmp", "fork", "mpi"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
        config.backend = known[i];
        if (!mh_test_have_backend(known[i]))
            CHECK_RC(mh_pool_open(&pool, &config), MH_ENOTSUP);
    }
    return 0;
}

static int test_bad_timeout_support(const char *backend)
{
    /* A timeout is accepted by a backend that can enforce it and refused
     * by the others; a pool never silently ignores it. */
    mh_pool *pool = NULL;
    struct mh_config config = {.backend = backend, .workers = 2, .timeout_s = 5};
    int rc = mh_pool_open(&pool, &config);
    CHECK(rc == MH_OK || rc == MH_ENOTSUP);
    if (strcmp(backend, "seq") == 0 || strcmp(backend, "threads") == 0 ||
        strcmp(backend, "openmp") == 0)
        CHECK_RC(rc, MH_ENOTSUP);
    mh_pool_close(pool);
    return 0;
}

static int test_bad_env(const char *backend)
{
    mh_pool *pool;
    setenv("MANYHANDS_WORKERS", "abc", 1);
    CHECK_RC(mh_pool_open(&pool, &(struct mh_config){.backend = backend}), MH_EINVAL);
    setenv("MANYHANDS_WORKERS", "0", 1);
    CHECK_RC(mh_pool_open(&pool, &(struct mh_config){.backend = backend}), MH_EINVAL);
    setenv("MANYHANDS_WORKERS", "-3", 1);
    CHECK_RC(mh_pool_open(&pool, &(struct mh_config){.backend = backend}), MH_EINVAL);
    setenv("MANYHANDS_WORKERS", "3", 1);
    CHECK_RC(mh_pool_open(&pool, &(struct mh_config){.backend = backend}), MH_OK);
    CHECK(mh_pool_workers(pool) == mh_test_workers(backend, 3));
    mh_pool_close(pool);
    /* An explicit count wins over the environment. */
    CHECK_RC(mh_pool_open(&pool, &(struct mh_config){.backend = backend, .workers = 2}), MH_OK);
    CHECK(mh_pool_workers(pool) == mh_test_workers(backend, 2));
    mh_pool_close(pool);
    unsetenv("MANYHANDS_WORKERS");

    setenv("MANYHANDS_BACKEND", "nope", 1);
    CHECK_RC(mh_pool_open(&pool, NULL), MH_ENOTSUP);
    setenv("MANYHANDS_BACKEND", backend, 1);
    CHECK_RC(mh_pool_open(&pool, &(struct mh_config){.workers = 2}), MH_OK);
    CHECK(strcmp(mh_pool_backend(pool), backend) == 0);
    mh_pool_close(pool);
    unsetenv("MANYHANDS_BACKEND");
    /* Neither set: the build's best backend that needs no launcher. */
    const char *const *best = mh_backends();
    if (strcmp(*best, "mpi") == 0)
        best++;
    CHECK_RC(mh_pool_open(&pool, &(struct mh_config){.workers = 2}), MH_OK);
    CHECK(strcmp(mh_pool_backend(pool), *best) == 0);
    mh_pool_close(pool);
    return 0;
}

static int test_bad_codec(const char *backend)
{
    int in[4] = {0};
    struct str_item out[4];
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    struct mh_codec partial = str_codec;
    partial.decode = NULL;
    struct mh_task task = {
        .n = 4, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_count, .codec = &partial,
    };
    CHECK_OK(expect_refused(pool, &task, MH_EINVAL));
    mh_pool_close(pool);
    return 0;
}

static int test_strerror_names(const char *backend)
{
    (void)backend;
#define CHECK_NAME_(name, value, msg)                                 \
    CHECK(strcmp(mh_err_name(MH_##name), "MH_" #name) == 0);          \
    CHECK(strcmp(mh_strerror(MH_##name), msg) == 0);                  \
    CHECK(MH_##name < 0);
    MH_ERRNO_MAP(CHECK_NAME_)
#undef CHECK_NAME_
    CHECK(strcmp(mh_err_name(0), "MH_OK") == 0);
    CHECK(strcmp(mh_err_name(-9999), "MH_UNKNOWN") == 0);
    CHECK(strcmp(mh_strerror(12345), "unknown error") == 0);
    CHECK(strcmp(mh_item_status_name(MH_ITEM_CRASHED), "crashed") == 0);
    CHECK(strcmp(mh_version(), "0.1.0") == 0);
    return 0;
}

static int test_backends_list(const char *backend)
{
    const char *const *names = mh_backends();
    size_t count = 0;
    while (names[count])
        count++;
    CHECK(count >= 1);
    CHECK(strcmp(names[count - 1], "seq") == 0);
    for (size_t i = 0; i < count; i++)
        for (size_t j = i + 1; j < count; j++)
            CHECK(strcmp(names[i], names[j]) != 0);
    CHECK(mh_test_have_backend(backend));
    return 0;
}

/* ------------------------------------------------------ item failures */

/* Fails (returns 40 + index / 1000) for inputs listed in ctx. */
struct fail_ctx {
    const int *bad;
    size_t nbad;
};

static int fn_fail_some(const void *in, void *out, void *vctx)
{
    const struct fail_ctx *ctx = vctx;
    int value = *(const int *)in;
    for (size_t i = 0; i < ctx->nbad; i++)
        if (ctx->bad[i] == value)
            return 40 + value / 1000;
    *(int *)out = value * 3 + 1;
    return 0;
}

/* Check out/status/report after a failing map over in[i] = i. */
static int check_failures(size_t n, const int *out, const uint8_t *status,
                          const struct mh_report *report, const struct fail_ctx *ctx,
                          enum mh_on_error policy, int here)
{
    if (!here) {
        /* mpi, rank other than 0: no outputs, the same report. */
        CHECK(report->items_failed >= 1);
        CHECK(report->failed_status == MH_ITEM_FAILED);
        CHECK(report->callback_code == 40 + (int)report->failed_index / 1000);
        if (policy == MH_CONTINUE) {
            CHECK(report->items_failed == ctx->nbad);
            CHECK(report->items_done == n - ctx->nbad);
            CHECK(report->failed_index == (size_t)ctx->bad[0]);
        }
        return 0;
    }
    size_t ok = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        int bad = 0;
        for (size_t b = 0; b < ctx->nbad; b++)
            bad |= ctx->bad[b] == (int)i;
        if (status[i] == MH_ITEM_OK) {
            CHECK(!bad);
            CHECK(out[i] == (int)i * 3 + 1);
            ok++;
        } else if (status[i] == MH_ITEM_FAILED) {
            CHECK(bad);
            failed++;
        } else {
            CHECK(status[i] == MH_ITEM_NOT_RUN);
            CHECK(policy == MH_STOP);
        }
    }
    CHECK(report->items_done == ok);
    CHECK(report->items_failed == failed);
    CHECK(failed >= 1);
    CHECK(status[report->failed_index] == MH_ITEM_FAILED);
    CHECK(report->failed_status == MH_ITEM_FAILED);
    CHECK(report->callback_code == 40 + (int)report->failed_index / 1000);
    if (policy == MH_CONTINUE) {
        CHECK(ok + failed == n);
        CHECK(failed == ctx->nbad);
        CHECK(report->failed_index == (size_t)ctx->bad[0]); /* bad[] sorted */
    }
    return 0;
}

static int run_failing_map(const char *backend, enum mh_on_error policy,
                           const struct fail_ctx *ctx, int workers, size_t chunk)
{
    enum { N = 20000 };
    static int in[N], out[N];
    static uint8_t status[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    mh_pool *pool = mh_test_pool(backend, workers, chunk, policy);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_fail_some, .ctx = (void *)ctx, .status = status,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_ECALLBACK);
    CHECK(report.code == MH_ECALLBACK);
    mh_pool_close(pool);
    CHECK_OK(check_failures(N, out, status, &report, ctx, policy,
                            mh_test_holds_results(backend)));
    return 0;
}

static int test_callback_error_stop(const char *backend)
{
    const int bad[] = {12345};
    struct fail_ctx ctx = {bad, 1};
    CHECK_OK(run_failing_map(backend, MH_STOP, &ctx, 2, 0));
    CHECK_OK(run_failing_map(backend, MH_STOP, &ctx, 4, 1));
    const int first[] = {0};
    struct fail_ctx at_zero = {first, 1};
    CHECK_OK(run_failing_map(backend, MH_STOP, &at_zero, 3, 0));
    return 0;
}

static int test_callback_error_continue(const char *backend)
{
    const int bad[] = {3, 999, 1000, 7777, 19999};
    struct fail_ctx ctx = {bad, 5};
    CHECK_OK(run_failing_map(backend, MH_CONTINUE, &ctx, 2, 0));
    CHECK_OK(run_failing_map(backend, MH_CONTINUE, &ctx, 3, 1));
    CHECK_OK(run_failing_map(backend, MH_CONTINUE, &ctx, 1, 10000));
    return 0;
}

static int test_callback_error_stops_promptly(const char *backend)
{
    /* Under MH_STOP, a failure at the first item must keep most of the
     * other items from running. */
    enum { N = 200000 };
    static int in[N], out[N];
    static uint8_t status[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    const int bad[] = {0};
    struct fail_ctx ctx = {bad, 1};
    mh_pool *pool = mh_test_pool(backend, 2, 1, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_fail_some, .ctx = &ctx, .status = status,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_ECALLBACK);
    mh_pool_close(pool);
    CHECK(report.failed_index == 0);
    CHECK(report.items_done < N / 2);
    CHECK_OK(check_failures(N, out, status, &report, &ctx, MH_STOP,
                            mh_test_holds_results(backend)));
    return 0;
}

static int fn_string_fail(const void *in, void *out, void *ctx)
{
    if (*(const unsigned *)in == 1500u * 7919u)
        return 5;
    return fn_string(in, out, ctx);
}

static int test_callback_error_codec_cleared(const char *backend)
{
    /* Without a status array the caller cannot tell which results own
     * memory, so a failed codec map must release them all itself. */
    enum { N = 3000 };
    static unsigned in[N];
    static struct str_item out[N];
    for (unsigned i = 0; i < N; i++)
        in[i] = i * 7919u;
    for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++) {
        mh_pool *pool = mh_test_pool(backend, 2, 0, (enum mh_on_error)policy);
        CHECK(pool);
        struct mh_task task = {
            .n = N, .in = in, .in_size = sizeof *in, .out = out,
            .out_size = sizeof *out, .fn = fn_string_fail, .codec = &str_codec,
        };
        struct mh_report report;
        CHECK_RC(mh_map(pool, &task, &report), MH_ECALLBACK);
        mh_pool_close(pool);
        CHECK(report.failed_index == 1500);
        CHECK(report.callback_code == 5);
        CHECK(atomic_load(&live_strings) == 0);
    }
    return 0;
}

/* ---------------------------------------------- nesting and concurrency */

struct nest_ctx {
    mh_pool *pool;
    int depth; /* maps still to open below this one */
};

static int fn_nested(const void *in, void *out, void *vctx)
{
    const struct nest_ctx *ctx = vctx;
    int value = *(const int *)in;
    if (ctx->depth == 0) {
        *(long *)out = value;
        return 0;
    }
    enum { M = 5 };
    int inner_in[M];
    long inner_out[M];
    for (int i = 0; i < M; i++)
        inner_in[i] = value * M + i;
    struct nest_ctx inner = {ctx->pool, ctx->depth - 1};
    struct mh_task task = {
        .n = M, .in = inner_in, .in_size = sizeof *inner_in, .out = inner_out,
        .out_size = sizeof *inner_out, .fn = fn_nested, .ctx = &inner,
    };
    if (mh_map(ctx->pool, &task, NULL))
        return 1;
    long sum = 0;
    for (int i = 0; i < M; i++)
        sum += inner_out[i];
    *(long *)out = sum;
    return 0;
}

/* What fn_nested computes, directly. */
static long nested_want(int value, int depth)
{
    if (depth == 0)
        return value;
    long sum = 0;
    for (int i = 0; i < 5; i++)
        sum += nested_want(value * 5 + i, depth - 1);
    return sum;
}

static int test_nested_map(const char *backend)
{
    enum { N = 64 };
    int in[N];
    long out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    mh_pool *pool = mh_test_pool(backend, 4, 1, MH_STOP);
    CHECK(pool);
    for (int depth = 1; depth <= 3; depth++) {
        struct nest_ctx ctx = {pool, depth};
        struct mh_task task = {
            .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
            .fn = fn_nested, .ctx = &ctx,
        };
        CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
        for (int i = 0; i < N && mh_test_holds_results(backend); i++)
            CHECK(out[i] == nested_want(i, depth));
    }
    mh_pool_close(pool);
    return 0;
}

/*
 * A map from inside the progress and codec callbacks, which run on the
 * calling thread (progress, decode, clear) or in a backend's processes
 * (encode): it runs inline and gives the right result, never a hang. The
 * context is shared memory, so that maps made in worker processes count.
 */
struct nest_cb_ctx {
    mh_pool *pool;
    atomic_int bad;   /* an inner map failed or was wrong */
    atomic_int inner; /* inner maps made */
};

/* From inside a callback: a map of one item that nests two deeper. */
static void nest_from_callback(struct nest_cb_ctx *ctx)
{
    int in = 3;
    long out = 0;
    struct nest_ctx inner = {ctx->pool, 2};
    struct mh_task task = {
        .n = 1, .in = &in, .in_size = sizeof in, .out = &out, .out_size = sizeof out,
        .fn = fn_nested, .ctx = &inner,
    };
    if (mh_map(ctx->pool, &task, NULL) != MH_OK || out != nested_want(in, 2))
        atomic_store(&ctx->bad, 1);
    atomic_fetch_add(&ctx->inner, 1);
}

static int fn_widen(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(long *)out = *(const int *)in;
    return 0;
}

static int nest_on_progress(size_t done, size_t n, void *ctx)
{
    (void)done;
    (void)n;
    nest_from_callback(ctx);
    return 0;
}

static int nest_encode(const void *item, void *buf, size_t len, void *ctx)
{
    nest_from_callback(ctx);
    return str_encode(item, buf, len, ctx);
}

static int nest_decode(void *item, const void *buf, size_t len, void *ctx)
{
    nest_from_callback(ctx);
    return str_decode(item, buf, len, ctx);
}

static const struct mh_codec nest_codec = {
    .size = str_size, .encode = nest_encode, .decode = nest_decode, .clear = str_clear,
};

static struct nest_cb_ctx *nest_cb_open(const char *backend)
{
    struct nest_cb_ctx *ctx = mmap(NULL, sizeof *ctx, PROT_READ | PROT_WRITE,
                                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ctx == MAP_FAILED)
        return NULL;
    ctx->pool = mh_test_pool(backend, 3, 50, MH_STOP);
    atomic_init(&ctx->bad, 0);
    atomic_init(&ctx->inner, 0);
    if (!ctx->pool) {
        munmap(ctx, sizeof *ctx);
        return NULL;
    }
    return ctx;
}

static void nest_cb_close(struct nest_cb_ctx *ctx)
{
    mh_pool_close(ctx->pool);
    munmap(ctx, sizeof *ctx);
}

static int test_nested_map_in_progress(const char *backend)
{
    enum { N = 2000 };
    static int in[N];
    static long out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    struct nest_cb_ctx *ctx = nest_cb_open(backend);
    CHECK(ctx);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_widen, .ctx = ctx, .progress = nest_on_progress,
    };
    int rc = mh_map(ctx->pool, &task, NULL);
    int bad = atomic_load(&ctx->bad), inner = atomic_load(&ctx->inner);
    nest_cb_close(ctx);
    CHECK_RC(rc, MH_OK);
    CHECK(!bad);
    CHECK(inner >= 1); /* progress is called at least once, at the end */
    for (int i = 0; i < N && mh_test_holds_results(backend); i++)
        CHECK(out[i] == i);
    return 0;
}

static int test_nested_map_in_codec(const char *backend)
{
    enum { N = 300 };
    static unsigned in[N];
    static struct str_item out[N];
    for (unsigned i = 0; i < N; i++)
        in[i] = i * 7919u;
    struct nest_cb_ctx *ctx = nest_cb_open(backend);
    CHECK(ctx);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_string, .ctx = ctx, .codec = &nest_codec,
    };
    int rc = mh_map(ctx->pool, &task, NULL);
    int bad = atomic_load(&ctx->bad), inner = atomic_load(&ctx->inner);
    nest_cb_close(ctx);
    CHECK_RC(rc, MH_OK);
    CHECK(!bad);
    int failed = 0;
    for (unsigned i = 0; i < N && mh_test_holds_results(backend); i++) {
        struct str_item want;
        CHECK(fn_string(&in[i], &want, NULL) == 0);
        failed |= strcmp(want.text, out[i].text) != 0;
        str_clear(&want, NULL);
        str_clear(&out[i], NULL);
    }
    CHECK(!failed);
    fprintf(stderr, "nested_map_in_codec %s: %d maps from codec callbacks in this process\n",
            backend, inner);
    return 0;
}

struct concurrent_arg {
    const char *backend;
    mh_pool *shared; /* NULL: open a pool of its own */
    int id, failed;
};

static void *concurrent_main(void *varg)
{
    struct concurrent_arg *arg = varg;
    mh_pool *pool = arg->shared ? arg->shared : mh_test_pool(arg->backend, 2, 0, MH_STOP);
    enum { N = 30000 };
    int *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    for (int round = 0; pool && round < 20 && !arg->failed; round++) {
        for (int i = 0; i < N; i++)
            in[i] = i + arg->id * 1000 + round;
        struct fail_ctx none = {NULL, 0};
        struct mh_task task = {
            .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
            .fn = fn_fail_some, .ctx = &none,
        };
        if (mh_map(pool, &task, NULL) != MH_OK)
            arg->failed = 1;
        for (int i = 0; i < N && !arg->failed && mh_test_holds_results(arg->backend); i++)
            if (out[i] != in[i] * 3 + 1)
                arg->failed = 1;
    }
    if (!pool)
        arg->failed = 1;
    if (!arg->shared)
        mh_pool_close(pool);
    free(in);
    free(out);
    return NULL;
}

static int run_concurrent(const char *backend, mh_pool *shared)
{
    enum { T = 4 };
    pthread_t threads[T];
    struct concurrent_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (struct concurrent_arg){backend, shared, t, 0};
        CHECK(pthread_create(&threads[t], NULL, concurrent_main, &args[t]) == 0);
    }
    int failed = 0;
    for (int t = 0; t < T; t++) {
        pthread_join(threads[t], NULL);
        failed |= args[t].failed;
    }
    CHECK(!failed);
    return 0;
}

static int test_concurrent_maps_one_pool(const char *backend)
{
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    int rc = run_concurrent(backend, pool);
    mh_pool_close(pool);
    return rc;
}

static int test_concurrent_maps_separate_pools(const char *backend)
{
    /* Opening a pool on mpi is collective (MPI_Comm_dup): from several
     * threads at once the ranks would pair them in different orders. */
    if (mh_test_ranks(backend) > 1) {
        fprintf(stderr, "pools opened from several threads at once: not across ranks\n");
        return MH_SKIP;
    }
    return run_concurrent(backend, NULL);
}

static int test_map_in_forked_child(const char *backend)
{
    /* A child forked after the pool opened has none of its workers; a map
     * there must still be right (it runs inline), and close must not wait. */
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    CHECK_OK(check_mix(backend, 100, 8, 8, 2, 0)); /* parent maps first */
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(20);
        enum { N = 1000 };
        int in[N], out[N];
        for (int i = 0; i < N; i++)
            in[i] = i;
        struct fail_ctx none = {NULL, 0};
        struct mh_task task = {
            .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
            .fn = fn_fail_some, .ctx = &none,
        };
        int bad = mh_map(pool, &task, NULL) != MH_OK;
        for (int i = 0; i < N; i++)
            bad |= out[i] != i * 3 + 1;
        mh_pool_close(pool);
        _exit(bad ? 1 : 0);
    }
    int wstatus;
    CHECK(waitpid(pid, &wstatus, 0) == pid);
    CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    mh_pool_close(pool);
    return 0;
}

static int fn_triple_long(const void *in, void *out, void *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = 3 * x + 1;
    return 0;
}

/* A map in place (out == in): every backend reads each input before it
 * writes the output over it. fork keeps task->out's pages from its
 * children only when they do not hold the inputs. */
static int test_map_in_place(const char *backend)
{
    enum { N = 100000 }; /* 800 KB: many whole pages */
    long *buf = malloc(N * sizeof *buf);
    CHECK(buf);
    for (long i = 0; i < N; i++)
        buf[i] = i;
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = buf, .in_size = sizeof *buf, .out = buf, .out_size = sizeof *buf,
        .fn = fn_triple_long,
    };
    CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
    for (long i = 0; mh_test_holds_results(backend) && i < N; i++)
        CHECK(buf[i] == 3 * i + 1);
    mh_pool_close(pool);
    free(buf);
    return 0;
}

/* After a map, a process the caller forks sees task->out whole, as it
 * would after any other write (fork gives its pages back to later forks). */
static int test_map_out_seen_by_later_fork(const char *backend)
{
    enum { N = 100000 };
    long *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    CHECK(in && out);
    for (long i = 0; i < N; i++)
        in[i] = i;
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_triple_long,
    };
    CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
    mh_pool_close(pool);
    if (!mh_test_holds_results(backend)) { /* an mpi rank above 0 */
        free(out);
        free(in);
        return 0;
    }
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(20);
        int bad = 0;
        for (long i = 0; i < N; i++)
            bad |= out[i] != 3 * i + 1;
        _exit(bad);
    }
    int wstatus;
    CHECK(waitpid(pid, &wstatus, 0) == pid);
    CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    free(out);
    free(in);
    return 0;
}

static int test_open_close_repeat(const char *backend)
{
    int in[16] = {0}, out[16];
    struct fail_ctx none = {NULL, 0};
    for (int round = 0; round < 50; round++) {
        mh_pool *pool = mh_test_pool(backend, 1 + round % 4, 0, MH_STOP);
        CHECK(pool);
        struct mh_task task = {
            .n = 16, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
            .fn = fn_fail_some, .ctx = &none,
        };
        if (round % 2)
            CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
        mh_pool_close(pool);
    }
    return 0;
}

/* ----------------------------------------------------------------- reduce */

static int fn_square(const void *in, void *out, void *ctx)
{
    (void)ctx;
    double x = *(const double *)in;
    *(double *)out = x * x;
    return 0;
}

static void fold_sum(void *acc, const void *value, void *ctx)
{
    (void)ctx;
    *(double *)acc += *(const double *)value;
}

static const struct mh_reducer sum_reducer = {
    .acc_size = sizeof(double), .fold = fold_sum, .combine = fold_sum,
};

static double *make_doubles(size_t n)
{
    double *xs = malloc(n * sizeof *xs + 1);
    uint64_t state = 88172645463325252u;
    for (size_t i = 0; i < n; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        /* Magnitudes over many orders, so the order of adding shows. */
        xs[i] = ldexp((double)(state >> 11) / 9007199254740992.0, (int)(state % 60) - 30);
    }
    return xs;
}

static int reduce_on(const char *backend, int workers, size_t chunk,
                     const double *xs, size_t n, double *sum)
{
    mh_pool *pool = mh_test_pool(backend, workers, chunk, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = n, .in = xs, .in_size = sizeof *xs, .out_size = sizeof(double), .fn = fn_square,
    };
    struct mh_report report;
    *sum = 0.0;
    CHECK_RC(mh_reduce(pool, &task, &sum_reducer, sum, &report), MH_OK);
    CHECK(report.items_done == n);
    mh_pool_close(pool);
    return 0;
}

static int test_reduce_bit_identical(const char *backend)
{
    const size_t sizes[] = {1, 255, 100003, 1000000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        double *xs = make_doubles(n);
        double oracle, sum;
        int failed = reduce_on("seq", 1, 0, xs, n, &oracle);
        const int workers[] = {1, 2, 3, 8};
        for (size_t w = 0; w < 4 && !failed; w++) {
            failed |= reduce_on(backend, workers[w], 0, xs, n, &sum);
            if (!failed && mh_test_holds_results(backend) &&
                memcmp(&sum, &oracle, sizeof sum) != 0) {
                fprintf(stderr, "n=%zu workers=%d: %.17g, seq %.17g\n", n, workers[w],
                        sum, oracle);
                failed = 1;
            }
        }
        /* The same sum as a plain loop, up to rounding. */
        double direct = 0;
        for (size_t i = 0; i < n; i++)
            direct += xs[i] * xs[i];
        failed |= fabs(direct - oracle) > 1e-9 * fabs(direct);
        free(xs);
        CHECK(!failed);
    }
    return 0;
}

static int test_reduce_chunk_explicit(const char *backend)
{
    enum { N = 12345 };
    double *xs = make_doubles(N);
    double oracle, sum;
    int failed = reduce_on("seq", 1, 100, xs, N, &oracle);
    failed |= reduce_on(backend, 3, 100, xs, N, &sum);
    failed |= mh_test_holds_results(backend) && memcmp(&sum, &oracle, sizeof sum) != 0;
    /* The exact order: chunks of 100 from zero, added in chunk order. */
    double want = 0;
    for (size_t c = 0; c < N; c += 100) {
        double part = 0;
        for (size_t i = c; i < c + 100 && i < N; i++)
            part += xs[i] * xs[i];
        want += part;
    }
    failed |= memcmp(&want, &oracle, sizeof want) != 0;
    free(xs);
    CHECK(!failed);
    return 0;
}

static int fn_square_fail(const void *in, void *out, void *ctx)
{
    const double *base = ctx;
    /* By value, not by address: mpi copies the inputs to other ranks
     * (xs[4321] occurs once in xs). */
    if (*(const double *)in == base[4321])
        return 9;
    return fn_square(in, out, ctx);
}

static int test_reduce_error(const char *backend)
{
    enum { N = 10000 };
    double *xs = make_doubles(N);
    for (size_t chunk = 0; chunk <= 1000; chunk += 1000) {
        mh_pool *pool = mh_test_pool(backend, 2, chunk, MH_STOP);
        CHECK(pool);
        struct mh_task task = {
            .n = N, .in = xs, .in_size = sizeof *xs, .out_size = sizeof(double),
            .fn = fn_square_fail, .ctx = xs,
        };
        double acc = 1.5;
        struct mh_report report;
        CHECK_RC(mh_reduce(pool, &task, &sum_reducer, &acc, &report), MH_ECALLBACK);
        mh_pool_close(pool);
        CHECK(acc == 1.5);
        CHECK(report.failed_index == 4321);
        CHECK(report.callback_code == 9);
        CHECK(report.failed_status == MH_ITEM_FAILED);
    }
    free(xs);
    return 0;
}

/* The tail chunk (n not a multiple of the chunk, or one chunk for all)
 * goes through the backend like the others: its progress and its
 * failures are counted. */
static const struct {
    size_t n, chunk;
} reduce_tails[] = {{1001, 0}, {100003, 0}, {5, 10}, {5, SIZE_MAX}};

static int test_reduce_progress(const char *backend)
{
    for (size_t k = 0; k < sizeof reduce_tails / sizeof *reduce_tails; k++) {
        size_t n = reduce_tails[k].n;
        double *xs = make_doubles(n), sum = 0;
        struct progress_log log = {.n = n};
        mh_pool *pool = mh_test_pool(backend, 2, reduce_tails[k].chunk, MH_STOP);
        CHECK(pool);
        struct mh_task task = {
            .n = n, .in = xs, .in_size = sizeof *xs, .out_size = sizeof(double),
            .fn = fn_square, .ctx = &log, .progress = on_progress,
        };
        CHECK_RC(mh_reduce(pool, &task, &sum_reducer, &sum, NULL), MH_OK);
        mh_pool_close(pool);
        free(xs);
        fprintf(stderr, "n=%zu chunk=%zu: %zu calls, last %zu\n", n, reduce_tails[k].chunk,
                log.calls, log.last);
        CHECK(log.calls >= 1);
        CHECK(!log.backwards && !log.wrong_n);
        CHECK(log.last == n);
    }
    return 0;
}

static int fn_square_fail_at(const void *in, void *out, void *ctx)
{
    /* By value, as fn_square_fail: the victim's input is unique. */
    if (*(const double *)in == *(const double *)ctx)
        return 7;
    return fn_square(in, out, ctx);
}

static int test_reduce_tail_error(const char *backend)
{
    for (size_t k = 0; k < sizeof reduce_tails / sizeof *reduce_tails; k++) {
        size_t n = reduce_tails[k].n, victim = n - 1; /* in the tail */
        double *xs = make_doubles(n);
        mh_pool *pool = mh_test_pool(backend, 2, reduce_tails[k].chunk, MH_STOP);
        CHECK(pool);
        struct mh_task task = {
            .n = n, .in = xs, .in_size = sizeof *xs, .out_size = sizeof(double),
            .fn = fn_square_fail_at, .ctx = &xs[victim],
        };
        double acc = 1.5;
        struct mh_report report;
        CHECK_RC(mh_reduce(pool, &task, &sum_reducer, &acc, &report), MH_ECALLBACK);
        mh_pool_close(pool);
        free(xs);
        CHECK(acc == 1.5);
        CHECK(report.code == MH_ECALLBACK);
        CHECK(report.failed_index == victim);
        CHECK(report.failed_status == MH_ITEM_FAILED);
        CHECK(report.callback_code == 7);
        CHECK(report.items_failed == 1);
    }
    return 0;
}

static int test_reduce_bad_args(const char *backend)
{
    double xs[4] = {1, 2, 3, 4}, out[4], acc = 0;
    uint8_t status[4];
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    struct mh_task good = {
        .n = 4, .in = xs, .in_size = sizeof *xs, .out_size = sizeof(double), .fn = fn_square,
    };
    struct mh_task task = good;
    task.out = out;
    CHECK_RC(mh_reduce(pool, &task, &sum_reducer, &acc, NULL), MH_EINVAL);
    task = good;
    task.status = status;
    CHECK_RC(mh_reduce(pool, &task, &sum_reducer, &acc, NULL), MH_EINVAL);
    CHECK_RC(mh_reduce(pool, &good, NULL, &acc, NULL), MH_EINVAL);
    CHECK_RC(mh_reduce(pool, &good, &sum_reducer, NULL, NULL), MH_EINVAL);
    CHECK_RC(mh_reduce(NULL, &good, &sum_reducer, &acc, NULL), MH_EINVAL);
    struct mh_reducer empty = sum_reducer;
    empty.acc_size = 0;
    CHECK_RC(mh_reduce(pool, &good, &empty, &acc, NULL), MH_EINVAL);
    task = good;
    task.n = SIZE_MAX / 4;
    CHECK_RC(mh_reduce(pool, &task, &sum_reducer, &acc, NULL), MH_EOVERFLOW);
    CHECK(acc == 0);
    /* n = 0: the identity comes back. */
    task = good;
    task.n = 0;
    acc = 2.5;
    CHECK_RC(mh_reduce(pool, &task, &sum_reducer, &acc, NULL), MH_OK);
    CHECK(acc == 2.5);
    mh_pool_close(pool);
    return 0;
}

/* --------------------------------------------------------------- table */

static const struct mh_test tests[] = {
    MH_TEST(map_n0)
    MH_TEST(map_n1)
    MH_TEST(map_n_workers_minus_1)
    MH_TEST(map_n_prime)
    MH_TEST(map_n_million)
    MH_TEST(map_elem_sizes)
    MH_TEST(map_chunk_one)
    MH_TEST(map_chunk_larger_than_n)
    MH_TEST(map_chunk_adaptive)
    MH_TEST(map_workers_more_than_items)
    MH_TEST(map_workers_clamped)
    MH_TEST(map_workers_auto)
    MH_TEST(map_stress_random)
    MH_TEST(map_codec)
    MH_TEST(map_status_all_ok)
    MH_TEST(map_progress)
    MH_TEST(map_in_place)
    MH_TEST(map_out_seen_by_later_fork)
    MH_TEST(report_fields)
    MH_TEST(bad_null_args)
    MH_TEST(bad_zero_sizes)
    MH_TEST(bad_overflow)
    MH_TEST(bad_config)
    MH_TEST(bad_backend)
    MH_TEST(bad_timeout_support)
    MH_TEST(bad_env)
    MH_TEST(bad_codec)
    MH_TEST(strerror_names)
    MH_TEST(backends_list)
    MH_TEST(callback_error_stop)
    MH_TEST(callback_error_continue)
    MH_TEST(callback_error_stops_promptly)
    MH_TEST(callback_error_codec_cleared)
    MH_TEST(nested_map)
    MH_TEST(nested_map_in_progress)
    MH_TEST(nested_map_in_codec)
    MH_TEST(concurrent_maps_one_pool)
    MH_TEST(concurrent_maps_separate_pools)
    MH_TEST(map_in_forked_child)
    MH_TEST(open_close_repeat)
    MH_TEST(reduce_bit_identical)
    MH_TEST(reduce_chunk_explicit)
    MH_TEST(reduce_error)
    MH_TEST(reduce_bad_args)
    MH_TEST(reduce_progress)
    MH_TEST(reduce_tail_error)
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return mh_test_main(argc, argv, tests);
}
