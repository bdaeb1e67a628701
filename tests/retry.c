/*
 * Retries (config.retries, config.retry_callback_errors): on fork an item
 * whose worker crashed or timed out runs again in a fresh worker, and
 * only that item is charged (Dask#5234: the items that merely shared the
 * dead worker's chunk must not be); on every backend, when asked, an item
 * whose fn failed runs again. The status array holds the final outcome,
 * report.attempts the failing item's runs.
 *
 * Every callback counts its runs per item in a MAP_SHARED page, so a
 * count made in a forked child is seen by the test: that is how "not
 * charged, not rerun" is checked, item by item. `retry TEST BACKEND`,
 * one CTest entry per table line and backend (retry.<backend>.<test>),
 * under tests/check.c's runner (watchdog; no child, descriptor or thread
 * left).
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#ifdef MH_TEST_FAULTS
#include "fault.h"
#endif

/* What an item does on its runs. */
enum retry_act {
    ACT_OK,          /* out = 3 * in + 1 */
    ACT_CRASH_ONCE,  /* its first run kills its worker */
    ACT_CRASH,       /* every run kills its worker */
    ACT_HANG_ONCE,   /* its first run never returns (a timeout ends it) */
    ACT_HANG,        /* no run returns */
    ACT_FAIL_ONCE,   /* its first run returns 7 */
    ACT_FAIL,        /* every run returns 7 */
};

/* Shared with the workers (MAP_SHARED): what each item does, and how
 * many times it ran (seq_cst adds: read only after the map, any order
 * would do). */
struct retry_ctx {
    size_t n;
    uint8_t *act;       /* n enum retry_act */
    atomic_int *runs;   /* n run counts */
};

static void *shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static int ctx_open(struct retry_ctx *ctx, size_t n)
{
    ctx->n = n;
    ctx->act = shared_alloc(n);
    ctx->runs = shared_alloc(n * sizeof *ctx->runs);
    return ctx->act && ctx->runs ? 0 : 1;
}

static void ctx_close(struct retry_ctx *ctx)
{
    if (ctx->act)
        munmap(ctx->act, ctx->n);
    if (ctx->runs)
        munmap(ctx->runs, ctx->n * sizeof *ctx->runs);
}

static long expected(int x)
{
    return 3L * x + 1;
}

static int fn_retry(const void *in, void *out, void *vctx)
{
    const struct retry_ctx *ctx = vctx;
    int x = *(const int *)in;
    int run = atomic_fetch_add(&ctx->runs[x], 1); /* runs before this one */
    switch (ctx->act[x]) {
    case ACT_CRASH_ONCE:
        if (run == 0)
            raise(SIGKILL);
        break;
    case ACT_CRASH:
        raise(SIGKILL);
        break;
    case ACT_HANG_ONCE:
    case ACT_HANG:
        while (ctx->act[x] == ACT_HANG || run == 0)
            pause();
        break;
    case ACT_FAIL_ONCE:
        if (run == 0)
            return 7;
        break;
    case ACT_FAIL:
        return 7;
    default:
        break;
    }
    *(long *)out = expected(x);
    return 0;
}

/* The same results through a codec: a heap string of the number. */
static int fn_retry_bytes(const void *in, void *out, void *vctx)
{
    long value;
    int rc = fn_retry(in, &value, vctx);
    if (rc)
        return rc;
    struct mh_test_bytes *s = out;
    s->len = (size_t)snprintf(NULL, 0, "%ld", value) + 1;
    if (!(s->p = mh_test_bytes_alloc(s->len)))
        return 1;
    snprintf(s->p, s->len, "%ld", value);
    return 0;
}

static mh_pool *retry_pool(const char *backend, int workers, size_t chunk,
                           enum mh_on_error policy, int retries, int callbacks,
                           double timeout_s)
{
    struct mh_config config = {
        .backend = backend, .workers = workers, .chunk = chunk, .on_error = policy,
        .retries = retries, .retry_callback_errors = callbacks, .timeout_s = timeout_s,
    };
    mh_pool *pool = NULL;
    int rc = mh_pool_open(&pool, &config);
    if (rc)
        fprintf(stderr, "mh_pool_open(%s, retries %d): %s\n", backend, retries,
                mh_err_name(rc));
    return pool;
}

/* Map in[i] = i through fn_retry into out, status. */
static int retry_map(mh_pool *pool, struct retry_ctx *ctx, int *in, long *out,
                     uint8_t *status, struct mh_report *report)
{
    for (size_t i = 0; i < ctx->n; i++)
        in[i] = (int)i;
    struct mh_task task = {
        .n = ctx->n, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_retry, .ctx = ctx, .status = status,
    };
    return mh_map(pool, &task, report);
}

/* Every item but `except` is OK with its result, and (counts: not on
 * mpi, whose ranks count apart) ran exactly once. */
static int check_others(const struct retry_ctx *ctx, const long *out, const uint8_t *status,
                        size_t except, bool counts)
{
    for (size_t i = 0; i < ctx->n; i++) {
        if (i == except || ctx->act[i] != ACT_OK)
            continue;
        CHECK(status[i] == MH_ITEM_OK);
        CHECK(out[i] == expected((int)i));
        CHECK(!counts || atomic_load(&ctx->runs[i]) == 1);
    }
    return 0;
}

/* -------------------------------------------------------- fork: crashes */

/* 1% of the items crash once, retries 1: every item ends OK, with the
 * bytes seq gives, and only the crashing items ran twice; the map does
 * not stop for them (MH_STOP) and reports no failure. */
static int test_crash_once_all_ok(const char *backend)
{
    enum { N = 20000 };
    static int in[N];
    static long out[N], want[N];
    static uint8_t status[N];
    const size_t chunks[] = {0, 1, 50, 4096};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        struct retry_ctx ctx;
        CHECK(ctx_open(&ctx, N) == 0);
        for (size_t i = 37; i < N; i += 100)
            ctx.act[i] = ACT_CRASH_ONCE;
        mh_pool *pool = retry_pool(backend, 3, chunks[c], MH_STOP, 1, 0, 0);
        CHECK(pool);
        struct mh_report report;
        CHECK_RC(retry_map(pool, &ctx, in, out, status, &report), MH_OK);
        mh_pool_close(pool);
        CHECK(report.items_done == N && report.items_failed == 0);
        CHECK(report.failed_index == MH_NO_ITEM && report.attempts == 0);
        CHECK_OK(check_others(&ctx, out, status, MH_NO_ITEM, true));
        for (size_t i = 37; i < N; i += 100)
            CHECK(status[i] == MH_ITEM_OK && atomic_load(&ctx.runs[i]) == 2);

        /* seq, with nothing crashing, gives the same bytes. */
        memset(ctx.act, ACT_OK, N);
        mh_pool *seq = retry_pool("seq", 1, 0, MH_STOP, 0, 0, 0);
        CHECK(seq);
        CHECK_RC(retry_map(seq, &ctx, in, want, NULL, NULL), MH_OK);
        mh_pool_close(seq);
        CHECK(memcmp(out, want, sizeof out) == 0);
        ctx_close(&ctx);
    }
    return 0;
}

/* The same through a codec: results decoded from the records of the
 * children that lived, then of the ones that ran the items again. */
static int test_crash_once_codec(const char *backend)
{
    enum { N = 5000 };
    static int in[N];
    static struct mh_test_bytes out[N];
    static uint8_t status[N];
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    for (size_t i = 11; i < N; i += 100)
        ctx.act[i] = ACT_CRASH_ONCE;
    for (int i = 0; i < N; i++)
        in[i] = i;
    long live = mh_test_bytes_live();
    mh_pool *pool = retry_pool(backend, 2, 0, MH_STOP, 1, 0, 0);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_retry_bytes, .ctx = &ctx, .codec = &mh_test_bytes_codec, .status = status,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_OK);
    mh_pool_close(pool);
    CHECK(report.items_done == N && report.attempts == 0);
    for (int i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof want, "%ld", expected(i));
        CHECK(status[i] == MH_ITEM_OK);
        CHECK(out[i].len == strlen(want) + 1 && memcmp(out[i].p, want, out[i].len) == 0);
        /* A crash loses the records its child had not handed over yet:
         * those items run again, uncharged. */
        CHECK(atomic_load(&ctx.runs[i]) >= (ctx.act[i] == ACT_OK ? 1 : 2));
        mh_test_bytes_codec.clear(&out[i], NULL);
    }
    CHECK(mh_test_bytes_live() == live);
    ctx_close(&ctx);
    return 0;
}

/* One item always crashes, retries R: it fails after R + 1 runs
 * (report.attempts), every other item is OK and ran once (MH_CONTINUE);
 * under MH_STOP the map stops at its final failure with the same report. */
static int test_always_crashes(const char *backend)
{
    enum { N = 3000, BAD = 1234 };
    static int in[N];
    static long out[N];
    static uint8_t status[N];
    const int retries[] = {0, 1, 3};
    for (size_t r = 0; r < sizeof retries / sizeof *retries; r++) {
        for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++) {
            struct retry_ctx ctx;
            CHECK(ctx_open(&ctx, N) == 0);
            ctx.act[BAD] = ACT_CRASH;
            mh_pool *pool = retry_pool(backend, 2, 64, (enum mh_on_error)policy,
                                       retries[r], 0, 0);
            CHECK(pool);
            struct mh_report report;
            CHECK_RC(retry_map(pool, &ctx, in, out, status, &report), MH_EWORKER);
            mh_pool_close(pool);
            CHECK(report.failed_index == BAD && report.failed_status == MH_ITEM_CRASHED);
            CHECK(report.worker_signal == SIGKILL);
            CHECK(report.attempts == retries[r] + 1);
            CHECK(atomic_load(&ctx.runs[BAD]) == retries[r] + 1);
            CHECK(status[BAD] == MH_ITEM_CRASHED);
            if (policy == MH_CONTINUE) {
                CHECK(report.items_failed == 1 && report.items_done == N - 1);
                CHECK_OK(check_others(&ctx, out, status, BAD, true));
            }
            ctx_close(&ctx);
        }
    }
    return 0;
}

/* Dask#5234: every tenth item of one large chunk crashes once, retries 1,
 * one worker. Each crash ends the worker holding the rest of the chunk;
 * were those items charged too, the last ones would run out of retries.
 * Each crashing item ran twice, every other item once, all are OK. */
static int test_chunk_mates_not_charged(const char *backend)
{
    enum { N = 1000, CHUNK = 500 };
    static int in[N];
    static long out[N];
    static uint8_t status[N];
    for (int workers = 1; workers <= 2; workers++) {
        struct retry_ctx ctx;
        CHECK(ctx_open(&ctx, N) == 0);
        for (size_t i = 5; i < CHUNK; i += 10)
            ctx.act[i] = ACT_CRASH_ONCE;
        mh_pool *pool = retry_pool(backend, workers, CHUNK, MH_STOP, 1, 0, 0);
        CHECK(pool);
        struct mh_report report;
        CHECK_RC(retry_map(pool, &ctx, in, out, status, &report), MH_OK);
        mh_pool_close(pool);
        CHECK(report.items_done == N && report.attempts == 0);
        CHECK_OK(check_others(&ctx, out, status, MH_NO_ITEM, true));
        for (size_t i = 5; i < CHUNK; i += 10)
            CHECK(status[i] == MH_ITEM_OK && atomic_load(&ctx.runs[i]) == 2);
        ctx_close(&ctx);
    }
    return 0;
}

/* A timed-out item is retried like a crashed one: one that hangs once
 * ends OK; one that always hangs times out after retries + 1 runs. */
static int test_timeout_retried(const char *backend)
{
    enum { N = 400, ONCE = 17, ALWAYS = 301 };
    static int in[N];
    static long out[N];
    static uint8_t status[N];
    for (int always = 0; always <= 1; always++) {
        struct retry_ctx ctx;
        CHECK(ctx_open(&ctx, N) == 0);
        ctx.act[ONCE] = ACT_HANG_ONCE;
        if (always)
            ctx.act[ALWAYS] = ACT_HANG;
        mh_pool *pool = retry_pool(backend, 2, 0, MH_CONTINUE, 1, 0, 1.0);
        CHECK(pool);
        struct mh_report report;
        CHECK_RC(retry_map(pool, &ctx, in, out, status, &report),
                 always ? MH_ETIMEDOUT : MH_OK);
        mh_pool_close(pool);
        CHECK(status[ONCE] == MH_ITEM_OK && atomic_load(&ctx.runs[ONCE]) == 2);
        CHECK(out[ONCE] == expected(ONCE));
        if (always) {
            CHECK(report.failed_index == ALWAYS && report.attempts == 2);
            CHECK(status[ALWAYS] == MH_ITEM_TIMED_OUT);
            CHECK(atomic_load(&ctx.runs[ALWAYS]) == 2);
            CHECK(report.items_failed == 1);
        } else {
            CHECK(report.attempts == 0 && report.items_done == N);
        }
        CHECK_OK(check_others(&ctx, out, status, MH_NO_ITEM, true));
        ctx_close(&ctx);
    }
    return 0;
}

/* The fresh worker of a retry cannot be forked: the map returns
 * MH_EAGAIN, and nothing it made is left (the runner checks children and
 * descriptors; here allocations and mappings). */
static int test_retry_fork_fails(const char *backend)
{
#ifndef MH_TEST_FAULTS
    (void)backend;
    fprintf(stderr, "not a fault-injection build: skipped\n");
    return MH_SKIP;
#else
    enum { N = 2000, WORKERS = 2 };
    static int in[N];
    static long out[N];
    static uint8_t status[N];
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    ctx.act[700] = ACT_CRASH_ONCE;
    mh_pool *pool = retry_pool(backend, WORKERS, 100, MH_CONTINUE, 1, 0, 0);
    CHECK(pool);
    long allocs = mh__fault_live_allocs(), maps = mh__fault_live_maps();
    mh__fault_arm(MH__FAULT_FORK, WORKERS + 1); /* the first fork after the crash */
    struct mh_report report;
    int rc = retry_map(pool, &ctx, in, out, status, &report);
    unsigned long injected = mh__fault_injected(MH__FAULT_FORK);
    mh__fault_arm(MH__FAULT_FORK, 0);
    CHECK_RC(rc, MH_EAGAIN);
    CHECK(report.code == MH_EAGAIN && injected == 1);
    CHECK(status[700] == MH_ITEM_NOT_RUN); /* never passed off as done */
    CHECK(mh__fault_live_allocs() == allocs && mh__fault_live_maps() == maps);
    mh_pool_close(pool);
    ctx_close(&ctx);
    return 0;
#endif
}

/* curl's torture, over a map that retries: the Nth allocation, mmap,
 * fork or pidfd_open fails, N = 1, 2, ... until a run makes fewer such
 * calls. Each run returns the call's code (mh__fault_code) or absorbs it
 * with every item OK; nothing it made is left. */
static int test_retry_torture(const char *backend)
{
#ifndef MH_TEST_FAULTS
    (void)backend;
    fprintf(stderr, "not a fault-injection build: skipped\n");
    return MH_SKIP;
#else
    enum { N = 2000 };
    static int in[N];
    static long out[N];
    static uint8_t status[N];
    const int kinds[] = {MH__FAULT_ALLOC, MH__FAULT_MMAP, MH__FAULT_FORK,
                         MH__FAULT_PIDFD_OPEN};
    mh_pool *pool = retry_pool(backend, 2, 100, MH_CONTINUE, 1, 0, 0);
    CHECK(pool);
    unsigned long failed = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        for (unsigned long nth = 1;; nth++) {
            struct retry_ctx ctx;
            CHECK(ctx_open(&ctx, N) == 0);
            for (size_t i = 150; i < N; i += 400)
                ctx.act[i] = ACT_CRASH_ONCE;
            long allocs = mh__fault_live_allocs(), maps = mh__fault_live_maps();
            unsigned long before = mh__fault_injected(kinds[k]);
            mh__fault_arm(kinds[k], nth);
            int rc = retry_map(pool, &ctx, in, out, status, NULL);
            mh__fault_arm(kinds[k], 0);
            bool injected = mh__fault_injected(kinds[k]) > before;
            CHECK(mh__fault_live_allocs() == allocs && mh__fault_live_maps() == maps);
            if (rc != MH_OK) {
                CHECK(injected);
                CHECK_RC(rc, mh__fault_code(kinds[k]));
            } else {
                CHECK_OK(check_others(&ctx, out, status, MH_NO_ITEM, false));
                for (size_t i = 150; i < N; i += 400)
                    CHECK(status[i] == MH_ITEM_OK);
            }
            ctx_close(&ctx);
            failed += injected;
            if (!injected)
                break;
        }
    }
    mh_pool_close(pool);
    fprintf(stderr, "retry_torture: %lu faults injected\n", failed);
    return 0;
#endif
}

/* ------------------------------------------ every backend: callbacks */

/* Every backend opens with retries (threads, openmp, seq and mpi cannot
 * outlive a crash, but still retry callback errors); negative is
 * MH_EINVAL. */
static int test_open_with_retries(const char *backend)
{
    mh_pool *pool = retry_pool(backend, 2, 0, MH_STOP, 3, 1, 0);
    CHECK(pool);
    mh_pool_close(pool);
    struct mh_config bad = {.backend = backend, .workers = 2, .retries = -1};
    CHECK_RC(mh_pool_open(&pool, &bad), MH_EINVAL);
    CHECK(pool == NULL);
    return 0;
}

/* retry_callback_errors: items that fail their first call and then
 * succeed end OK, each having run twice; the map reports no failure. */
static int test_callback_retried(const char *backend)
{
    enum { N = 5000 };
    static int in[N];
    static long out[N];
    static uint8_t status[N];
    bool here = mh_test_holds_results(backend), counts = strcmp(backend, "mpi") != 0;
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    for (size_t i = 3; i < N; i += 50)
        ctx.act[i] = ACT_FAIL_ONCE;
    mh_pool *pool = retry_pool(backend, 2, 0, MH_STOP, 1, 1, 0);
    CHECK(pool);
    struct mh_report report;
    CHECK_RC(retry_map(pool, &ctx, in, out, status, &report), MH_OK);
    mh_pool_close(pool);
    CHECK(report.failed_index == MH_NO_ITEM && report.attempts == 0);
    if (here) {
        CHECK(report.items_done == N);
        CHECK_OK(check_others(&ctx, out, status, MH_NO_ITEM, counts));
        for (size_t i = 3; i < N; i += 50) {
            CHECK(status[i] == MH_ITEM_OK && out[i] == expected((int)i));
            CHECK(!counts || atomic_load(&ctx.runs[i]) == 2);
        }
    }
    ctx_close(&ctx);
    return 0;
}

/* An item whose fn always fails, retries 2: MH_ECALLBACK after 3 runs
 * (report.attempts), every other item OK (MH_CONTINUE). */
static int test_callback_retries_exhausted(const char *backend)
{
    enum { N = 3000, BAD = 2222 };
    static int in[N];
    static long out[N];
    static uint8_t status[N];
    bool here = mh_test_holds_results(backend), counts = strcmp(backend, "mpi") != 0;
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    ctx.act[BAD] = ACT_FAIL;
    mh_pool *pool = retry_pool(backend, 2, 0, MH_CONTINUE, 2, 1, 0);
    CHECK(pool);
    struct mh_report report;
    CHECK_RC(retry_map(pool, &ctx, in, out, status, &report), MH_ECALLBACK);
    mh_pool_close(pool);
    CHECK(report.failed_index == BAD && report.callback_code == 7);
    CHECK(report.attempts == 3 && report.items_failed == 1);
    CHECK(!counts || atomic_load(&ctx.runs[BAD]) == 3);
    if (here) {
        CHECK(status[BAD] == MH_ITEM_FAILED);
        CHECK_OK(check_others(&ctx, out, status, BAD, counts));
    }
    ctx_close(&ctx);
    return 0;
}

/* Without retry_callback_errors a callback error is final, whatever
 * retries says (Ray's default): one run, attempts 1. */
static int test_callback_not_retried_by_default(const char *backend)
{
    enum { N = 1000, BAD = 10 };
    static int in[N];
    static long out[N];
    static uint8_t status[N];
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    ctx.act[BAD] = ACT_FAIL_ONCE;
    mh_pool *pool = retry_pool(backend, 2, 0, MH_CONTINUE, 2, 0, 0);
    CHECK(pool);
    struct mh_report report;
    CHECK_RC(retry_map(pool, &ctx, in, out, status, &report), MH_ECALLBACK);
    mh_pool_close(pool);
    CHECK(report.failed_index == BAD && report.attempts == 1);
    CHECK(strcmp(backend, "mpi") == 0 || atomic_load(&ctx.runs[BAD]) == 1);
    if (mh_test_holds_results(backend))
        CHECK(status[BAD] == MH_ITEM_FAILED);
    ctx_close(&ctx);
    return 0;
}

static void fold_long(void *acc, const void *value, void *ctx)
{
    (void)ctx;
    *(long *)acc += *(const long *)value;
}

/* mh_reduce retries a failing item's whole chunk, from the identity: a
 * sum whose items fail once each comes out exact, on every backend. */
static int test_reduce_callback_retried(const char *backend)
{
    enum { N = 10007 };
    static int in[N];
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    long want = 0;
    for (int i = 0; i < N; i++) {
        in[i] = i;
        want += expected(i);
    }
    for (size_t i = 1; i < N; i += 997)
        ctx.act[i] = ACT_FAIL_ONCE;
    ctx.act[N - 1] = ACT_FAIL_ONCE; /* in the shorter last chunk */
    const struct mh_reducer sum = {.acc_size = sizeof(long), .fold = fold_long,
                                   .combine = fold_long};
    mh_pool *pool = retry_pool(backend, 2, 100, MH_STOP, 1, 1, 0);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out_size = sizeof(long),
        .fn = fn_retry, .ctx = &ctx,
    };
    long acc = 0;
    struct mh_report report;
    CHECK_RC(mh_reduce(pool, &task, &sum, &acc, &report), MH_OK);
    mh_pool_close(pool);
    CHECK(report.attempts == 0 && report.failed_index == MH_NO_ITEM);
    CHECK(!mh_test_holds_results(backend) || acc == want);
    ctx_close(&ctx);
    return 0;
}

static const struct mh_test tests[] = {
    MH_TEST_ON(crash_once_all_ok, "fork")
    MH_TEST_ON(crash_once_codec, "fork")
    MH_TEST_ON(always_crashes, "fork")
    MH_TEST_ON(chunk_mates_not_charged, "fork")
    MH_TEST_ON(timeout_retried, "fork")
    MH_TEST_ON(retry_fork_fails, "fork")
    MH_TEST_ON(retry_torture, "fork")
    MH_TEST(open_with_retries)
    MH_TEST(callback_retried)
    MH_TEST(callback_retries_exhausted)
    MH_TEST(callback_not_retried_by_default)
    MH_TEST(reduce_callback_retried)
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return mh_test_main(argc, argv, tests);
}
