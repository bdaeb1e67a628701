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
#include <stdlib.h>
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
 * would do). The inputs (in[i] = i), outputs and statuses are the test's
 * own memory, as a caller's are. */
struct retry_ctx {
    size_t n;
    uint8_t *act;       /* n enum retry_act */
    atomic_int *runs;   /* n run counts */
    int *in;
    long *out;
    uint8_t *status;
};

static void *shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static int ctx_open(struct retry_ctx *ctx, size_t n)
{
    *ctx = (struct retry_ctx){
        .n = n, .act = shared_alloc(n), .runs = shared_alloc(n * sizeof *ctx->runs),
        .in = malloc(n * sizeof *ctx->in), .out = calloc(n, sizeof *ctx->out),
        .status = malloc(n),
    };
    if (!ctx->act || !ctx->runs || !ctx->in || !ctx->out || !ctx->status)
        return 1;
    for (size_t i = 0; i < n; i++)
        ctx->in[i] = (int)i;
    return 0;
}

static void ctx_close(struct retry_ctx *ctx)
{
    if (ctx->act)
        munmap(ctx->act, ctx->n);
    if (ctx->runs)
        munmap(ctx->runs, ctx->n * sizeof *ctx->runs);
    free(ctx->in);
    free(ctx->out);
    free(ctx->status);
}

/* Items first, first + step, ... below end do act. */
static void ctx_mark(struct retry_ctx *ctx, size_t first, size_t step, size_t end,
                     enum retry_act act)
{
    for (size_t i = first; i < end; i += step)
        ctx->act[i] = (uint8_t)act;
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

/* Map ctx's inputs through fn_retry into out, status. */
static int retry_map(mh_pool *pool, struct retry_ctx *ctx, long *out, uint8_t *status,
                     struct mh_report *report)
{
    struct mh_task task = {
        .n = ctx->n, .in = ctx->in, .in_size = sizeof *ctx->in, .out = out,
        .out_size = sizeof *out, .fn = fn_retry, .ctx = ctx, .status = status,
    };
    return mh_map(pool, &task, report);
}

/* A stream of ctx->n items (seq i: in = i) through fn_retry; the sink
 * keeps each item's output and status by sequence number. */
struct retry_stream {
    struct retry_ctx *ctx;
    bool codec; /* results as fn_retry_bytes's strings */
};

static int retry_source(void *item, size_t seq, void *vrs)
{
    const struct retry_stream *rs = vrs;
    if (seq >= rs->ctx->n)
        return MH_SOURCE_END;
    *(int *)item = (int)seq;
    return MH_SOURCE_ITEM;
}

static int retry_sink(size_t seq, int status, void *out, void *vrs)
{
    struct retry_stream *rs = vrs;
    rs->ctx->status[seq] = (uint8_t)status;
    if (status == MH_ITEM_OK && rs->codec)
        rs->ctx->out[seq] = strtol(((struct mh_test_bytes *)out)->p, NULL, 10);
    else if (status == MH_ITEM_OK)
        rs->ctx->out[seq] = *(long *)out;
    return 0;
}

static int fn_retry_stream(const void *in, void *out, void *vrs)
{
    const struct retry_stream *rs = vrs;
    return rs->codec ? fn_retry_bytes(in, out, rs->ctx) : fn_retry(in, out, rs->ctx);
}

/* Stream ctx's items into ctx->out and ctx->status. */
static int retry_stream(mh_pool *pool, struct retry_ctx *ctx, struct mh_report *report,
                        bool codec)
{
    struct retry_stream rs = {.ctx = ctx, .codec = codec};
    memset(ctx->status, MH_ITEM_NOT_RUN, ctx->n);
    struct mh_stream_task task = {
        .in_size = sizeof(int), .out_size = codec ? sizeof(struct mh_test_bytes) : sizeof(long),
        .fn = fn_retry_stream, .ctx = &rs, .codec = codec ? &mh_test_bytes_codec : NULL,
        .source = retry_source, .sink = retry_sink,
    };
    return mh_stream(pool, &task, report);
}

/* Open a pool with config, run ctx's items on it by a map or (stream) a
 * stream into ctx->out and ctx->status, close it: 0 when the call
 * returned want. */
static int retry_run(const struct mh_config *config, bool stream, struct retry_ctx *ctx,
                     struct mh_report *report, int want)
{
    mh_pool *pool = mh_test_pool_with(config);
    CHECK(pool);
    int rc = stream ? retry_stream(pool, ctx, report, false)
                    : retry_map(pool, ctx, ctx->out, ctx->status, report);
    mh_pool_close(pool);
    CHECK_RC(rc, want);
    return 0;
}

/* Every item but `except` is OK with its result, and (counts: not on
 * mpi, whose ranks count apart) ran exactly once. */
static int check_others(const struct retry_ctx *ctx, size_t except, bool counts)
{
    for (size_t i = 0; i < ctx->n; i++) {
        if (i == except || ctx->act[i] != ACT_OK)
            continue;
        CHECK(ctx->status[i] == MH_ITEM_OK);
        CHECK(ctx->out[i] == expected((int)i));
        CHECK(!counts || atomic_load(&ctx->runs[i]) == 1);
    }
    return 0;
}

/* Items first, first + step, ... below end are OK and ran twice. */
static int check_ran_twice(const struct retry_ctx *ctx, size_t first, size_t step, size_t end)
{
    for (size_t i = first; i < end; i += step)
        CHECK(ctx->status[i] == MH_ITEM_OK && atomic_load(&ctx->runs[i]) == 2);
    return 0;
}

/* ------------------------------------------------ fork: crashes, timeouts */

/* 1% of the items crash once, retries 1, on a pool of workers, chunk: by
 * a map or a stream, every item ends OK and only the crashing items ran
 * twice; the call does not stop for them (MH_STOP) and reports no
 * failure. */
static int retry_crash_once(const char *backend, bool stream, int workers, size_t chunk,
                            struct retry_ctx *ctx, struct mh_report *report)
{
    ctx_mark(ctx, 37, 100, ctx->n, ACT_CRASH_ONCE);
    struct mh_config config = {.backend = backend, .workers = workers, .chunk = chunk,
                               .on_error = MH_STOP, .retries = 1};
    CHECK_OK(retry_run(&config, stream, ctx, report, MH_OK));
    CHECK(report->items_done == ctx->n && report->items_failed == 0);
    CHECK(report->attempts == 0);
    CHECK_OK(check_others(ctx, MH_NO_ITEM, true));
    CHECK_OK(check_ran_twice(ctx, 37, 100, ctx->n));
    return 0;
}

/* The map's: with the bytes seq gives, at every chunk size. */
static int test_crash_once_all_ok(const char *backend)
{
    enum { N = 20000 };
    static long want[N];
    const size_t chunks[] = {0, 1, 50, 4096};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        struct retry_ctx ctx;
        CHECK(ctx_open(&ctx, N) == 0);
        struct mh_report report;
        CHECK_OK(retry_crash_once(backend, false, 3, chunks[c], &ctx, &report));
        CHECK(report.failed_index == MH_NO_ITEM);

        /* seq, with nothing crashing, gives the same bytes. */
        memset(ctx.act, ACT_OK, N);
        mh_pool *seq = mh_test_pool("seq", 1, 0, MH_STOP);
        CHECK(seq);
        CHECK_RC(retry_map(seq, &ctx, want, NULL, NULL), MH_OK);
        mh_pool_close(seq);
        CHECK(memcmp(ctx.out, want, sizeof want) == 0);
        ctx_close(&ctx);
    }
    return 0;
}

/* The codec tests' start: n items, one in a hundred crashing once, a
 * pool of 2 workers with retries 1. */
static int retry_codec_open(const char *backend, size_t n, struct retry_ctx *ctx,
                            mh_pool **pool)
{
    CHECK(ctx_open(ctx, n) == 0);
    ctx_mark(ctx, 11, 100, n, ACT_CRASH_ONCE);
    struct mh_config config = {.backend = backend, .workers = 2, .on_error = MH_STOP,
                               .retries = 1};
    CHECK((*pool = mh_test_pool_with(&config)));
    return 0;
}

/* The same through a codec: results decoded from the records of the
 * children that lived, then of the ones that ran the items again. */
static int test_crash_once_codec(const char *backend)
{
    enum { N = 5000 };
    static struct mh_test_bytes out[N];
    long live = mh_test_bytes_live();
    struct retry_ctx ctx;
    mh_pool *pool;
    CHECK_OK(retry_codec_open(backend, N, &ctx, &pool));
    struct mh_task task = {
        .n = N, .in = ctx.in, .in_size = sizeof *ctx.in, .out = out, .out_size = sizeof *out,
        .fn = fn_retry_bytes, .ctx = &ctx, .codec = &mh_test_bytes_codec, .status = ctx.status,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_OK);
    mh_pool_close(pool);
    CHECK(report.items_done == N && report.attempts == 0);
    for (int i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof want, "%ld", expected(i));
        CHECK(ctx.status[i] == MH_ITEM_OK);
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

/* One item always crashes, retries R, by a map or a stream: it fails
 * after R + 1 runs (report.attempts); under MH_CONTINUE every other item
 * is OK and ran once, under MH_STOP the call stops at its final failure
 * with the same report. */
static int retry_always_crashes(const char *backend, bool stream, int retries,
                                enum mh_on_error policy)
{
    enum { N = 3000, BAD = 1234 };
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    ctx.act[BAD] = ACT_CRASH;
    struct mh_config config = {.backend = backend, .workers = 2, .chunk = 64,
                               .on_error = policy, .retries = retries};
    struct mh_report report;
    CHECK_OK(retry_run(&config, stream, &ctx, &report, MH_EWORKER));
    CHECK(report.failed_index == BAD && report.failed_status == MH_ITEM_CRASHED);
    CHECK(report.worker_signal == SIGKILL && report.attempts == retries + 1);
    CHECK(atomic_load(&ctx.runs[BAD]) == retries + 1);
    CHECK(ctx.status[BAD] == MH_ITEM_CRASHED);
    if (policy == MH_CONTINUE) {
        CHECK(report.items_failed == 1 && report.items_done == N - 1);
        CHECK_OK(check_others(&ctx, BAD, true));
    }
    ctx_close(&ctx);
    return 0;
}

static const int retry_counts[] = {0, 1, 3};

static int test_always_crashes(const char *backend)
{
    for (size_t r = 0; r < sizeof retry_counts / sizeof *retry_counts; r++)
        for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++)
            CHECK_OK(retry_always_crashes(backend, false, retry_counts[r],
                                          (enum mh_on_error)policy));
    return 0;
}

/* Dask#5234: every tenth item of one 500-item chunk crashes once, retries
 * 1, one worker and then two, by a map or a stream. Each crash ends the
 * worker holding the rest of the chunk; were those items charged too, the
 * last ones would run out of retries. Each crashing item ran twice, every
 * other item once, all are OK. */
static int retry_chunk_mates(const char *backend, bool stream)
{
    enum { N = 1000, CHUNK = 500 };
    for (int workers = 1; workers <= 2; workers++) {
        struct retry_ctx ctx;
        CHECK(ctx_open(&ctx, N) == 0);
        ctx_mark(&ctx, 5, 10, CHUNK, ACT_CRASH_ONCE);
        struct mh_config config = {.backend = backend, .workers = workers, .chunk = CHUNK,
                                   .on_error = MH_STOP, .retries = 1};
        struct mh_report report;
        CHECK_OK(retry_run(&config, stream, &ctx, &report, MH_OK));
        CHECK(report.items_done == N && report.attempts == 0);
        CHECK_OK(check_others(&ctx, MH_NO_ITEM, true));
        CHECK_OK(check_ran_twice(&ctx, 5, 10, CHUNK));
        ctx_close(&ctx);
    }
    return 0;
}

static int test_chunk_mates_not_charged(const char *backend)
{
    return retry_chunk_mates(backend, false);
}

/* A timed-out item is retried like a crashed one, by a map or a stream:
 * one that hangs once ends OK; one that (always) always hangs times out
 * after retries + 1 runs. */
static int retry_timeout(const char *backend, bool stream, bool always)
{
    enum { N = 400, ONCE = 17, ALWAYS = 301 };
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    ctx.act[ONCE] = ACT_HANG_ONCE;
    if (always)
        ctx.act[ALWAYS] = ACT_HANG;
    struct mh_config config = {.backend = backend, .workers = 2, .on_error = MH_CONTINUE,
                               .retries = 1, .timeout_s = 1.0};
    struct mh_report report;
    CHECK_OK(retry_run(&config, stream, &ctx, &report, always ? MH_ETIMEDOUT : MH_OK));
    CHECK(ctx.status[ONCE] == MH_ITEM_OK && atomic_load(&ctx.runs[ONCE]) == 2);
    CHECK(ctx.out[ONCE] == expected(ONCE));
    if (always) {
        CHECK(report.failed_index == ALWAYS && report.attempts == 2);
        CHECK(ctx.status[ALWAYS] == MH_ITEM_TIMED_OUT);
        CHECK(atomic_load(&ctx.runs[ALWAYS]) == 2);
        CHECK(report.items_failed == 1);
    } else {
        CHECK(report.attempts == 0 && report.items_done == N);
    }
    CHECK_OK(check_others(&ctx, MH_NO_ITEM, true));
    ctx_close(&ctx);
    return 0;
}

static int test_timeout_retried(const char *backend)
{
    for (int always = 0; always <= 1; always++)
        CHECK_OK(retry_timeout(backend, false, always));
    return 0;
}

/* ------------------------------------------------- fork: stream retries */

/* retry_crash_once by a stream: every item delivered OK with its value. */
static int test_stream_crash_once_all_ok(const char *backend)
{
    enum { N = 3000 };
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    struct mh_report report;
    CHECK_OK(retry_crash_once(backend, true, 2, 0, &ctx, &report));
    for (size_t i = 37; i < N; i += 100)
        CHECK(ctx.out[i] == expected((int)i));
    ctx_close(&ctx);
    return 0;
}

/* The same through a codec: every item delivered OK with its string;
 * the records a dead child had not handed over are lost, so those items
 * run again, uncharged; no decoded result is left uncleared. */
static int test_stream_crash_once_codec(const char *backend)
{
    enum { N = 5000 };
    long live = mh_test_bytes_live();
    struct retry_ctx ctx;
    mh_pool *pool;
    CHECK_OK(retry_codec_open(backend, N, &ctx, &pool));
    struct mh_report report;
    CHECK_RC(retry_stream(pool, &ctx, &report, true), MH_OK);
    mh_pool_close(pool);
    CHECK(report.items_done == N && report.attempts == 0);
    for (int i = 0; i < N; i++) {
        CHECK(ctx.status[i] == MH_ITEM_OK && ctx.out[i] == expected(i));
        CHECK(atomic_load(&ctx.runs[i]) >= (ctx.act[i] == ACT_OK ? 1 : 2));
    }
    CHECK(mh_test_bytes_live() == live);
    ctx_close(&ctx);
    return 0;
}

/* retry_always_crashes by a stream (MH_CONTINUE). */
static int test_stream_always_crashes(const char *backend)
{
    for (size_t r = 0; r < sizeof retry_counts / sizeof *retry_counts; r++)
        CHECK_OK(retry_always_crashes(backend, true, retry_counts[r], MH_CONTINUE));
    return 0;
}

/* Dask#5234 in a stream (retry_chunk_mates): the chunk mates, run by the
 * fresh children, are not charged. */
static int test_stream_chunk_mates_not_charged(const char *backend)
{
    return retry_chunk_mates(backend, true);
}

/* retry_timeout by a stream, the item that always hangs included. */
static int test_stream_timeout_retried(const char *backend)
{
    return retry_timeout(backend, true, true);
}

#ifndef MH_TEST_FAULTS
MH_TEST_SKIPPED(retry_fork_fails, "not a fault-injection build")
MH_TEST_SKIPPED(stream_retry_faults, "not a fault-injection build")
MH_TEST_SKIPPED(retry_torture, "not a fault-injection build")
#else
/* The fault tests' pool: 2 workers, chunk 100, MH_CONTINUE, retries 1. */
static mh_pool *retry_fault_pool(const char *backend)
{
    struct mh_config config = {.backend = backend, .workers = 2, .chunk = 100,
                               .on_error = MH_CONTINUE, .retries = 1};
    return mh_test_pool_with(&config);
}

/* What retry_fork_after_crash_fails leaves for its test to check. */
struct retry_fault {
    struct retry_ctx ctx;
    mh_pool *pool;
    struct mh_report report;
};

/* On a fresh ctx of 2000 items and pool (retry_fault_pool), item 700
 * crashes once and the fresh worker of its retry cannot be forked: a map
 * or a stream returns MH_EAGAIN, one fault injected, no allocation or
 * mapping left. */
static int retry_fork_after_crash_fails(const char *backend, bool stream,
                                        struct retry_fault *f)
{
    struct retry_ctx *ctx = &f->ctx;
    CHECK(ctx_open(ctx, 2000) == 0);
    ctx->act[700] = ACT_CRASH_ONCE;
    CHECK((f->pool = retry_fault_pool(backend)));
    long allocs = mh__fault_live_allocs(), maps = mh__fault_live_maps();
    mh__fault_arm(MH__FAULT_FORK, 2 + 1); /* after the 2 workers': the retry's */
    int rc = stream ? retry_stream(f->pool, ctx, &f->report, false)
                    : retry_map(f->pool, ctx, ctx->out, ctx->status, &f->report);
    unsigned long injected = mh__fault_injected(MH__FAULT_FORK);
    mh__fault_arm(MH__FAULT_FORK, 0);
    CHECK_RC(rc, MH_EAGAIN);
    CHECK(injected == 1);
    CHECK(mh__fault_live_allocs() == allocs && mh__fault_live_maps() == maps);
    return 0;
}

static void retry_fault_close(struct retry_fault *f)
{
    mh_pool_close(f->pool);
    ctx_close(&f->ctx);
}

/* The fresh worker of a retry cannot be forked: the map returns
 * MH_EAGAIN, and nothing it made is left (the runner checks children and
 * descriptors; here allocations and mappings). */
static int test_retry_fork_fails(const char *backend)
{
    struct retry_fault f;
    CHECK_OK(retry_fork_after_crash_fails(backend, false, &f));
    CHECK(f.report.code == MH_EAGAIN);
    CHECK(f.ctx.status[700] == MH_ITEM_NOT_RUN); /* never passed off as done */
    retry_fault_close(&f);
    return 0;
}

/* A stream with retries, under faults: the fresh child of a retry
 * cannot be forked → MH_EAGAIN, the crashed item never delivered OK; then
 * every allocation of the stream failing in turn (the retry counters
 * among them) → MH_ENOMEM or a stream in full. Nothing is left either
 * way (allocations, mappings; the runner: children, descriptors). */
static int test_stream_retry_faults(const char *backend)
{
    struct retry_fault f;
    CHECK_OK(retry_fork_after_crash_fails(backend, true, &f));
    struct retry_ctx *ctx = &f.ctx;
    CHECK(ctx->status[700] != MH_ITEM_OK);
    long allocs = mh__fault_live_allocs(), maps = mh__fault_live_maps();
    for (unsigned long nth = 1;; nth++) {
        memset(ctx->runs, 0, ctx->n * sizeof *ctx->runs);
        mh__fault_arm(MH__FAULT_ALLOC, nth);
        int rc = retry_stream(f.pool, ctx, &f.report, false);
        unsigned long calls = mh__fault_calls(MH__FAULT_ALLOC);
        mh__fault_arm(MH__FAULT_ALLOC, 0);
        CHECK(mh__fault_live_allocs() == allocs && mh__fault_live_maps() == maps);
        if (calls < nth) { /* nothing failed: the stream ran in full */
            CHECK_RC(rc, MH_OK);
            CHECK(ctx->status[700] == MH_ITEM_OK && ctx->out[700] == expected(700));
            fprintf(stderr, "%lu allocations failed in turn\n", nth - 1);
            break;
        }
        CHECK_RC(rc, MH_ENOMEM);
    }
    retry_fault_close(&f);
    return 0;
}

/* curl's torture, over a map that retries: the Nth allocation, mmap,
 * fork or pidfd_open fails, N = 1, 2, ... until a run makes fewer such
 * calls. Each run returns the call's code (mh__fault_code) or absorbs it
 * with every item OK; nothing it made is left. */
static int test_retry_torture(const char *backend)
{
    enum { N = 2000 };
    const int kinds[] = {MH__FAULT_ALLOC, MH__FAULT_MMAP, MH__FAULT_FORK,
                         MH__FAULT_PIDFD_OPEN};
    mh_pool *pool = retry_fault_pool(backend);
    CHECK(pool);
    unsigned long failed = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        for (unsigned long nth = 1;; nth++) {
            struct retry_ctx ctx;
            CHECK(ctx_open(&ctx, N) == 0);
            ctx_mark(&ctx, 150, 400, N, ACT_CRASH_ONCE);
            long allocs = mh__fault_live_allocs(), maps = mh__fault_live_maps();
            unsigned long before = mh__fault_injected(kinds[k]);
            mh__fault_arm(kinds[k], nth);
            int rc = retry_map(pool, &ctx, ctx.out, ctx.status, NULL);
            mh__fault_arm(kinds[k], 0);
            bool injected = mh__fault_injected(kinds[k]) > before;
            CHECK(mh__fault_live_allocs() == allocs && mh__fault_live_maps() == maps);
            if (rc != MH_OK) {
                CHECK(injected);
                CHECK_RC(rc, mh__fault_code(kinds[k]));
            } else {
                CHECK_OK(check_others(&ctx, MH_NO_ITEM, false));
                for (size_t i = 150; i < N; i += 400)
                    CHECK(ctx.status[i] == MH_ITEM_OK);
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
}
#endif /* MH_TEST_FAULTS */

/* ------------------------------------------ every backend: callbacks */

/* Every backend opens with retries (threads, openmp, seq and mpi cannot
 * outlive a crash, but still retry callback errors); negative is
 * MH_EINVAL. */
static int test_open_with_retries(const char *backend)
{
    struct mh_config config = {.backend = backend, .workers = 2, .on_error = MH_STOP,
                               .retries = 3, .retry_callback_errors = 1};
    mh_pool *pool = mh_test_pool_with(&config);
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
    bool here = mh_test_holds_results(backend), counts = strcmp(backend, "mpi") != 0;
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    ctx_mark(&ctx, 3, 50, N, ACT_FAIL_ONCE);
    struct mh_config config = {.backend = backend, .workers = 2, .on_error = MH_STOP,
                               .retries = 1, .retry_callback_errors = 1};
    struct mh_report report;
    CHECK_OK(retry_run(&config, false, &ctx, &report, MH_OK));
    CHECK(report.failed_index == MH_NO_ITEM && report.attempts == 0);
    if (here) {
        CHECK(report.items_done == N);
        CHECK_OK(check_others(&ctx, MH_NO_ITEM, counts));
        for (size_t i = 3; i < N; i += 50) {
            CHECK(ctx.status[i] == MH_ITEM_OK && ctx.out[i] == expected((int)i));
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
    bool here = mh_test_holds_results(backend), counts = strcmp(backend, "mpi") != 0;
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    ctx.act[BAD] = ACT_FAIL;
    struct mh_config config = {.backend = backend, .workers = 2, .on_error = MH_CONTINUE,
                               .retries = 2, .retry_callback_errors = 1};
    struct mh_report report;
    CHECK_OK(retry_run(&config, false, &ctx, &report, MH_ECALLBACK));
    CHECK(report.failed_index == BAD && report.callback_code == 7);
    CHECK(report.attempts == 3 && report.items_failed == 1);
    CHECK(!counts || atomic_load(&ctx.runs[BAD]) == 3);
    if (here) {
        CHECK(ctx.status[BAD] == MH_ITEM_FAILED);
        CHECK_OK(check_others(&ctx, BAD, counts));
    }
    ctx_close(&ctx);
    return 0;
}

/* Without retry_callback_errors a callback error is final, whatever
 * retries says (Ray's default): one run, attempts 1. */
static int test_callback_not_retried_by_default(const char *backend)
{
    enum { N = 1000, BAD = 10 };
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    ctx.act[BAD] = ACT_FAIL_ONCE;
    struct mh_config config = {.backend = backend, .workers = 2, .on_error = MH_CONTINUE,
                               .retries = 2};
    struct mh_report report;
    CHECK_OK(retry_run(&config, false, &ctx, &report, MH_ECALLBACK));
    CHECK(report.failed_index == BAD && report.attempts == 1);
    CHECK(strcmp(backend, "mpi") == 0 || atomic_load(&ctx.runs[BAD]) == 1);
    if (mh_test_holds_results(backend))
        CHECK(ctx.status[BAD] == MH_ITEM_FAILED);
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
    struct retry_ctx ctx;
    CHECK(ctx_open(&ctx, N) == 0);
    long want = 0;
    for (int i = 0; i < N; i++)
        want += expected(i);
    ctx_mark(&ctx, 1, 997, N, ACT_FAIL_ONCE);
    ctx.act[N - 1] = ACT_FAIL_ONCE; /* in the shorter last chunk */
    const struct mh_reducer sum = {.acc_size = sizeof(long), .fold = fold_long,
                                   .combine = fold_long};
    struct mh_config config = {.backend = backend, .workers = 2, .chunk = 100,
                               .on_error = MH_STOP, .retries = 1, .retry_callback_errors = 1};
    mh_pool *pool = mh_test_pool_with(&config);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = ctx.in, .in_size = sizeof *ctx.in, .out_size = sizeof(long),
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
    MH_TEST_ON(stream_crash_once_all_ok, "fork")
    MH_TEST_ON(stream_crash_once_codec, "fork")
    MH_TEST_ON(stream_always_crashes, "fork")
    MH_TEST_ON(stream_chunk_mates_not_charged, "fork")
    MH_TEST_ON(stream_timeout_retried, "fork")
    MH_TEST_ON(retry_fork_fails, "fork")
    MH_TEST_ON(stream_retry_faults, "fork")
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
