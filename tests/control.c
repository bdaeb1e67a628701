/*
 * Run control (issue 15): cancel from another thread, from a signal
 * handler, before and after a map; a progress callback that stops the
 * run; resume after a cancel, a callback failure and (fork) a crash, with
 * plain and codec outputs. Every backend; mpi at 1, 2 and 4 ranks, where
 * the cancel comes from the last rank and ends the map on every rank.
 * Nothing here times anything: a canceller waits until enough items have
 * started (a counter in shared memory, so fork's children count too).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"

#define N 3000

/* Counters every process of a map shares (fork's children write them). */
struct ctl_shared {
    atomic_int started;     /* fn calls begun */
    atomic_int long_done;   /* the long item ran to its end */
    atomic_int saw_cancel;  /* an item saw mh_cancelled() */
    atomic_int calls[N];    /* fn calls per item */
};

struct ctl_ctx {
    struct ctl_shared *sh;
    double item_ms;   /* each item sleeps this long */
    int fail_mod;     /* >0: items i % fail_mod == 1 fail (first run) */
    int crash_at;     /* >=0: that item kills its worker (fork, first run) */
    int long_item;    /* >=0: that item waits up to 10 s for mh_cancelled() */
    int ignore_term;  /* the long item ignores SIGTERM (fork) */
};

static struct ctl_shared *ctl_map_shared(void)
{
    void *p = mmap(NULL, sizeof(struct ctl_shared), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static int ctl_value(int x)
{
    return x * 3 + 1;
}

static int fn_ctl(const void *in, void *out, void *vctx)
{
    const struct ctl_ctx *ctx = vctx;
    int x = *(const int *)in;
    if (ctx->ignore_term)
        signal(SIGTERM, SIG_IGN); /* fork: only the grace's SIGKILL ends it */
    atomic_fetch_add(&ctx->sh->started, 1);
    atomic_fetch_add(&ctx->sh->calls[x], 1);
    if (x == ctx->long_item) {
        for (int t = 0; t < 10000 && !mh_cancelled(); t++)
            mh_test_sleep_ms(1);
        if (mh_cancelled())
            atomic_store(&ctx->sh->saw_cancel, 1);
        else
            atomic_store(&ctx->sh->long_done, 1);
    } else if (ctx->item_ms > 0) {
        mh_test_sleep_ms(ctx->item_ms);
        if (ctx->item_ms >= 1000)
            atomic_store(&ctx->sh->long_done, 1);
    }
    if (x == ctx->crash_at)
        raise(SIGKILL);
    if (ctx->fail_mod > 0 && x % ctx->fail_mod == 1)
        return 5;
    *(int *)out = ctl_value(x);
    return 0;
}

/* A thread that cancels pool once `after` items have started (or 20 s
 * passed): by mh_pool_cancel, or by a signal whose handler calls it. */
struct canceller {
    mh_pool *pool;
    struct ctl_shared *sh;
    int after;
    int by_signal;
    pthread_t target; /* the map's thread, for the signal */
    pthread_t thread;
    int here;            /* the thread was started */
    double cancelled_at; /* mh_test_now_s() just before the cancel */
};

static mh_pool *ctl_signal_pool;

static void ctl_on_signal(int sig)
{
    (void)sig;
    mh_pool_cancel(ctl_signal_pool);
}

static void *canceller_main(void *arg)
{
    struct canceller *c = arg;
    for (int t = 0; t < 20000 && atomic_load(&c->sh->started) < c->after; t++)
        mh_test_sleep_ms(1);
    c->cancelled_at = mh_test_now_s();
    if (c->by_signal)
        pthread_kill(c->target, SIGUSR1);
    else
        mh_pool_cancel(c->pool);
    return NULL;
}

/* Start c's thread where here (mpi: on the rank that cancels). */
static int canceller_start(struct canceller *c, int here)
{
    c->here = here;
    if (here)
        CHECK(pthread_create(&c->thread, NULL, canceller_main, c) == 0);
    return 0;
}

static void canceller_join(struct canceller *c)
{
    if (c->here)
        pthread_join(c->thread, NULL);
}

/* The rank that cancels: the last (every rank on non-mpi backends is 0). */
static int ctl_cancels_here(const char *backend, mh_pool *pool)
{
    return mh_pool_rank(pool) == mh_test_ranks(backend) - 1;
}

/* A test's shared counters and pool (workers, chunk, on_error). */
static int ctl_open(const char *backend, int workers, size_t chunk, enum mh_on_error on_error,
                    struct ctl_shared **sh, mh_pool **pool)
{
    CHECK((*sh = ctl_map_shared()));
    CHECK((*pool = mh_test_pool(backend, workers, chunk, on_error)));
    return 0;
}

static void ctl_close(struct ctl_shared *sh, mh_pool *pool)
{
    mh_pool_close(pool);
    munmap(sh, sizeof *sh);
}

static int ctl_input[N];

static struct mh_task ctl_task(int *out, uint8_t *status, struct ctl_ctx *ctx)
{
    for (int i = 0; i < N; i++)
        ctl_input[i] = i;
    return (struct mh_task){
        .n = N, .in = ctl_input, .in_size = sizeof(int), .out = out,
        .out_size = sizeof(int), .fn = fn_ctl, .ctx = ctx, .status = status,
    };
}

/* What most tests run: counters, a pool, the items' context and a task
 * of N items through fn_ctl into out and status. */
struct ctl_run {
    struct ctl_shared *sh;
    mh_pool *pool;
    struct ctl_ctx ctx;
    struct mh_task task;
    int out[N];
    uint8_t status[N];
};

/* ctl_open, and r->task over ctx (its counters r->sh). */
static int ctl_run_open(struct ctl_run *r, const char *backend, int workers, size_t chunk,
                        enum mh_on_error on_error, struct ctl_ctx ctx)
{
    CHECK_OK(ctl_open(backend, workers, chunk, on_error, &r->sh, &r->pool));
    r->ctx = ctx;
    r->ctx.sh = r->sh;
    r->task = ctl_task(r->out, r->status, &r->ctx);
    return 0;
}

/* What a stopped run left: every status OK, NOT_RUN or CANCELLED (some
 * not OK), OK outputs right, the report's count equal. */
static int ctl_check_stopped(const int *out, const uint8_t *status,
                             const struct mh_report *report)
{
    size_t ok = 0, open = 0;
    for (int i = 0; i < N; i++) {
        CHECK(status[i] == MH_ITEM_OK || status[i] == MH_ITEM_NOT_RUN ||
              status[i] == MH_ITEM_CANCELLED);
        if (status[i] == MH_ITEM_OK) {
            CHECK(out[i] == ctl_value(i));
            ok++;
        } else {
            open++;
        }
    }
    CHECK(open > 0);
    CHECK(report->code == MH_EINTR && report->items_done == ok);
    CHECK(report->items_failed == 0);
    return 0;
}

/* A map on pool that must run in full: the cancel before was consumed. */
static int ctl_map_in_full(const char *backend, mh_pool *pool, struct ctl_ctx *ctx)
{
    static int out[N];
    static uint8_t status[N];
    struct ctl_ctx plain = *ctx;
    plain.item_ms = 0;
    plain.long_item = -1;
    struct mh_task task = ctl_task(out, status, &plain);
    CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
    for (int i = 0; i < N && mh_test_holds_results(backend); i++)
        CHECK(status[i] == MH_ITEM_OK && out[i] == ctl_value(i));
    return 0;
}

/* Cancel mid-map from another thread or a signal, then map again. */
static int ctl_cancel_mid(const char *backend, int by_signal)
{
    static struct ctl_run r;
    CHECK_OK(ctl_run_open(&r, backend, 2, 4, MH_STOP,
                          (struct ctl_ctx){.item_ms = 1, .crash_at = -1, .long_item = -1}));
    struct sigaction sa = {.sa_handler = ctl_on_signal}, old;
    ctl_signal_pool = r.pool;
    if (by_signal)
        sigaction(SIGUSR1, &sa, &old);
    struct canceller c = {.pool = r.pool, .sh = r.sh, .after = 20, .by_signal = by_signal,
                          .target = pthread_self()};
    CHECK_OK(canceller_start(&c, ctl_cancels_here(backend, r.pool)));
    struct mh_report report;
    int rc = mh_map(r.pool, &r.task, &report);
    canceller_join(&c);
    if (by_signal)
        sigaction(SIGUSR1, &old, NULL);
    CHECK_RC(rc, MH_EINTR);
    if (mh_test_holds_results(backend))
        CHECK_OK(ctl_check_stopped(r.out, r.status, &report));
    CHECK_OK(ctl_map_in_full(backend, r.pool, &r.ctx));
    ctl_close(r.sh, r.pool);
    return 0;
}

static int test_cancel_from_thread(const char *backend)
{
    return ctl_cancel_mid(backend, 0);
}

static int test_cancel_from_signal(const char *backend)
{
    return ctl_cancel_mid(backend, 1);
}

/* A cancel with no run ends the next one before any item starts, and
 * only that one. */
static int test_cancel_before(const char *backend)
{
    static struct ctl_run r;
    CHECK_OK(ctl_run_open(&r, backend, 2, 4, MH_STOP,
                          (struct ctl_ctx){.crash_at = -1, .long_item = -1}));
    if (ctl_cancels_here(backend, r.pool)) {
        mh_pool_cancel(r.pool);
        mh_pool_cancel(NULL); /* a no-op */
    }
    struct mh_report report;
    CHECK_RC(mh_map(r.pool, &r.task, &report), MH_EINTR);
    CHECK(report.code == MH_EINTR);
    /* mpi: other ranks may have begun chunks before the cancel reached
     * rank 0; nowhere else does any item start. */
    if (strcmp(backend, "mpi") != 0) {
        CHECK(atomic_load(&r.sh->started) == 0 && report.items_done == 0);
        for (int i = 0; i < N; i++)
            CHECK(r.status[i] == MH_ITEM_NOT_RUN);
    }
    CHECK_OK(ctl_map_in_full(backend, r.pool, &r.ctx));
    ctl_close(r.sh, r.pool);
    return 0;
}

static int ctl_stop_at(size_t done, size_t n, void *vctx)
{
    (void)n;
    (void)vctx;
    return done >= 10; /* non-zero: cancel */
}

/* progress returning non-zero cancels the run. */
static int test_progress_stops(const char *backend)
{
    static struct ctl_run r;
    CHECK_OK(ctl_run_open(&r, backend, 2, 4, MH_STOP,
                          (struct ctl_ctx){.item_ms = 1, .crash_at = -1, .long_item = -1}));
    r.task.progress = ctl_stop_at;
    struct mh_report report;
    CHECK_RC(mh_map(r.pool, &r.task, &report), MH_EINTR);
    if (mh_test_holds_results(backend))
        CHECK_OK(ctl_check_stopped(r.out, r.status, &report));
    CHECK_OK(ctl_map_in_full(backend, r.pool, &r.ctx));
    ctl_close(r.sh, r.pool);
    return 0;
}

static void ctl_fold(void *acc, const void *value, void *ctx)
{
    (void)ctx;
    *(long *)acc += *(const int *)value;
}

static void ctl_combine(void *acc, const void *other, void *ctx)
{
    (void)ctx;
    *(long *)acc += *(const long *)other;
}

/* mh_reduce forwards progress's return: MH_EINTR, acc unchanged; and
 * takes no resume (no status array to resume from). */
static int test_reduce_progress_stops(const char *backend)
{
    struct ctl_shared *sh;
    mh_pool *pool;
    CHECK_OK(ctl_open(backend, 2, 4, MH_STOP, &sh, &pool));
    struct ctl_ctx ctx = {.sh = sh, .item_ms = 1, .crash_at = -1, .long_item = -1};
    struct mh_task task = ctl_task(NULL, NULL, &ctx);
    task.progress = ctl_stop_at;
    struct mh_reducer reducer = {
        .acc_size = sizeof(long), .fold = ctl_fold, .combine = ctl_combine,
    };
    long acc = 0;
    CHECK_RC(mh_reduce(pool, &task, &reducer, &acc, NULL), MH_EINTR);
    CHECK(acc == 0);
    task.progress = NULL;
    task.resume = 1;
    CHECK_RC(mh_reduce(pool, &task, &reducer, &acc, NULL), MH_EINVAL);
    ctl_close(sh, pool);
    return 0;
}

/* resume without a status array has nothing to resume from. */
static int test_resume_needs_status(const char *backend)
{
    struct ctl_shared *sh;
    mh_pool *pool;
    CHECK_OK(ctl_open(backend, 2, 0, MH_STOP, &sh, &pool));
    int in[4] = {0, 1, 2, 3}, out[4];
    struct ctl_ctx ctx = {.sh = sh, .crash_at = -1, .long_item = -1};
    struct mh_task task = {
        .n = 4, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_ctl, .ctx = &ctx, .resume = 1,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_EINVAL);
    CHECK(report.code == MH_EINVAL && atomic_load(&sh->started) == 0);
    CHECK(mh_cancelled() == 0); /* outside any run */
    ctl_close(sh, pool);
    return 0;
}

/* A sentinel for each item the first run left OK: resume must leave it. */
static int ctl_sentinel(int i)
{
    return -7 - i;
}

/* Run 1 stops (cancel, failures or a crash); run 2 resumes. OK items of
 * run 1 are never run again nor written; in the end every item is OK and
 * equal to seq's result (ctl_value). */
static int ctl_resume(const char *backend, struct ctl_ctx *first, int cancel,
                      enum mh_on_error on_error)
{
    static int out[N];
    static uint8_t status[N], was_ok[N];
    mh_pool *pool = mh_test_pool(backend, 2, 4, on_error);
    CHECK(pool);
    struct mh_task task = ctl_task(out, status, first);
    /* About a third of the way (mpi: this rank runs its share). */
    struct canceller c = {.pool = pool, .sh = first->sh,
                          .after = N / 3 / mh_test_ranks(backend)};
    CHECK_OK(canceller_start(&c, cancel && ctl_cancels_here(backend, pool)));
    int rc = mh_map(pool, &task, NULL);
    canceller_join(&c);
    CHECK(rc != MH_OK);
    int holds = mh_test_holds_results(backend);
    size_t kept = 0;
    for (int i = 0; i < N && holds; i++) {
        was_ok[i] = status[i] == MH_ITEM_OK;
        if (was_ok[i]) {
            CHECK(out[i] == ctl_value(i));
            out[i] = ctl_sentinel(i);
            kept++;
        }
    }
    CHECK(!holds || (kept > 0 && kept < N));

    struct ctl_ctx second = {.sh = first->sh, .crash_at = -1, .long_item = -1};
    /* The oracle: the same items on seq, in one run. */
    static int want[N];
    mh_pool *seq = mh_test_pool("seq", 1, 0, MH_STOP);
    CHECK(seq);
    struct mh_task oracle = ctl_task(want, NULL, &second);
    CHECK_RC(mh_map(seq, &oracle, NULL), MH_OK);
    mh_pool_close(seq);
    memset(first->sh->calls, 0, sizeof first->sh->calls);
    task.ctx = &second;
    task.resume = 1;
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_OK);
    CHECK(report.items_done == N);
    /* mpi: items run on every rank, and only this process's are counted. */
    int counted = strcmp(backend, "mpi") != 0;
    for (int i = 0; i < N && holds; i++) {
        CHECK(status[i] == MH_ITEM_OK);
        CHECK(was_ok[i] ? out[i] == ctl_sentinel(i) : memcmp(&out[i], &want[i], sizeof *out) == 0);
        CHECK(!counted || atomic_load(&first->sh->calls[i]) == (was_ok[i] ? 0 : 1));
    }
    mh_pool_close(pool);
    return 0;
}

/* ctl_resume with first's counters in a fresh shared page. */
static int ctl_resume_fresh(const char *backend, struct ctl_ctx first, int cancel,
                            enum mh_on_error on_error)
{
    CHECK((first.sh = ctl_map_shared()));
    int rc = ctl_resume(backend, &first, cancel, on_error);
    munmap(first.sh, sizeof *first.sh);
    return rc;
}

static int test_resume_after_cancel(const char *backend)
{
    struct ctl_ctx first = {.item_ms = 0.2, .crash_at = -1, .long_item = -1};
    return ctl_resume_fresh(backend, first, 1, MH_STOP);
}

static int test_resume_after_failures(const char *backend)
{
    struct ctl_ctx first = {.fail_mod = 7, .crash_at = -1, .long_item = -1};
    return ctl_resume_fresh(backend, first, 0, MH_CONTINUE);
}

static int test_resume_after_crash(const char *backend)
{
    struct ctl_ctx first = {.crash_at = N / 2, .long_item = -1};
    return ctl_resume_fresh(backend, first, 0, MH_CONTINUE);
}

/* Codec outputs (heap strings): run 1 fails some items; the resumed run
 * decodes only the others, the kept ones keep their very pointers. */
static int fn_ctl_bytes(const void *in, void *out, void *vctx)
{
    const int *fail_first = vctx;
    int x = *(const int *)in;
    if (*fail_first && x % 5 == 2)
        return 3;
    struct mh_test_bytes *b = out;
    b->len = 1 + (size_t)x % 13;
    b->p = mh_test_bytes_alloc(b->len);
    if (!b->p)
        return 1;
    memset(b->p, 'a' + x % 26, b->len);
    return 0;
}

static int ctl_bytes_right(const struct mh_test_bytes *b, int x)
{
    return b->p && b->len == 1 + (size_t)x % 13 && b->p[b->len - 1] == 'a' + x % 26;
}

static int test_resume_codec(const char *backend)
{
    static struct mh_test_bytes out[N];
    static uint8_t status[N];
    static char *kept_p[N];
    memset(out, 0, sizeof out);
    mh_pool *pool = mh_test_pool(backend, 2, 4, MH_CONTINUE);
    CHECK(pool);
    int fail_first = 1;
    struct mh_task task = ctl_task(NULL, status, NULL);
    task.out = out;
    task.out_size = sizeof *out;
    task.fn = fn_ctl_bytes;
    task.ctx = &fail_first;
    task.codec = &mh_test_bytes_codec;
    CHECK_RC(mh_map(pool, &task, NULL), MH_ECALLBACK);
    int holds = mh_test_holds_results(backend);
    for (int i = 0; i < N && holds; i++) {
        CHECK(status[i] == (i % 5 == 2 ? MH_ITEM_FAILED : MH_ITEM_OK));
        kept_p[i] = out[i].p;
    }
    fail_first = 0;
    task.resume = 1;
    CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
    for (int i = 0; i < N && holds; i++) {
        CHECK(status[i] == MH_ITEM_OK && ctl_bytes_right(&out[i], i));
        if (i % 5 != 2)
            CHECK(out[i].p == kept_p[i]);
        mh_test_bytes_codec.clear(&out[i], NULL);
    }
    CHECK(mh_test_bytes_live() == 0);
    mh_pool_close(pool);
    return 0;
}

/* A long item sees mh_cancelled() and returns early with its result
 * (fork: it ignores SIGTERM, and is done within the grace). */
static int test_cancelled_visible(const char *backend)
{
    static struct ctl_run r;
    CHECK_OK(ctl_run_open(&r, backend, 2, 1, MH_STOP,
                          (struct ctl_ctx){.crash_at = -1, .long_item = 0,
                                           .ignore_term = strcmp(backend, "fork") == 0}));
    r.task.n = 2; /* item 0 waits for the cancel */
    struct canceller c = {.pool = r.pool, .sh = r.sh, .after = 1};
    CHECK_OK(canceller_start(&c, 1));
    int rc = mh_map(r.pool, &r.task, NULL);
    canceller_join(&c);
    CHECK_RC(rc, MH_EINTR);
    CHECK(atomic_load(&r.sh->saw_cancel) == 1 && atomic_load(&r.sh->long_done) == 0);
    CHECK(r.status[0] == MH_ITEM_OK && r.out[0] == ctl_value(0));
    ctl_close(r.sh, r.pool);
    return 0;
}

/* fork: a 10 s item that ignores SIGTERM is killed after the grace; it
 * is MH_ITEM_CANCELLED, and nothing of its child is left. */
static int test_cancel_kills_long_item(const char *backend)
{
    static struct ctl_run r;
    /* The item never asks mh_cancelled(), and ignores SIGTERM. */
    CHECK_OK(ctl_run_open(&r, backend, 2, 1, MH_STOP,
                          (struct ctl_ctx){.item_ms = 10000, .crash_at = -1,
                                           .long_item = -1, .ignore_term = 1}));
    r.task.n = 1;
    struct canceller c = {.pool = r.pool, .sh = r.sh, .after = 1};
    CHECK_OK(canceller_start(&c, 1));
    struct mh_report report;
    int rc = mh_map(r.pool, &r.task, &report);
    canceller_join(&c);
    CHECK_RC(rc, MH_EINTR);
    CHECK(r.status[0] == MH_ITEM_CANCELLED);
    CHECK(report.items_done == 0 && report.items_failed == 0);
    CHECK(atomic_load(&r.sh->long_done) == 0);
    CHECK(mh_test_no_child());
    ctl_close(r.sh, r.pool);
    return 0;
}

/* A stream of N items: the source counts, the sink checks each result. */
struct ctl_stream {
    struct ctl_ctx item;
    int stubborn;   /* >0: items from this seq on sleep 10 s, ignoring
                     * SIGTERM and mh_cancelled() (fork) */
    size_t delivered, wrong;
    size_t ncancelled, cancelled_seq; /* sink: MH_ITEM_CANCELLED items */
};

static int ctl_source(void *item, size_t seq, void *vctx)
{
    (void)vctx;
    if (seq >= N)
        return MH_SOURCE_END;
    *(int *)item = (int)seq;
    return MH_SOURCE_ITEM;
}

static int ctl_source_none(void *item, size_t seq, void *vctx)
{
    (void)item;
    (void)seq;
    (void)vctx;
    return MH_SOURCE_END;
}

static int ctl_sink(size_t seq, int status, void *out, void *vctx)
{
    struct ctl_stream *cs = vctx;
    cs->delivered++;
    cs->wrong += status == MH_ITEM_OK && *(int *)out != ctl_value((int)seq);
    if (status == MH_ITEM_CANCELLED) {
        cs->ncancelled++;
        cs->cancelled_seq = seq;
    }
    return 0;
}

static int fn_ctl_stream(const void *in, void *out, void *vctx)
{
    struct ctl_stream *cs = vctx;
    if (cs->stubborn > 0 && *(const int *)in >= cs->stubborn) {
        signal(SIGTERM, SIG_IGN); /* only the grace's SIGKILL ends it */
        atomic_fetch_add(&cs->item.sh->started, 1);
        mh_test_sleep_ms(10000);
        atomic_store(&cs->item.sh->long_done, 1);
    }
    return fn_ctl(in, out, &cs->item);
}

/* Cancel mid-stream from another thread (mpi: on the last rank, whose
 * cancel ends the stream on every rank): MH_EINTR, fewer than N items
 * delivered, each right; then the pool streams in full. */
static int test_cancel_mid_stream(const char *backend)
{
    struct ctl_shared *sh;
    mh_pool *pool;
    CHECK_OK(ctl_open(backend, 2, 4, MH_STOP, &sh, &pool));
    struct ctl_stream cs = {.item = {.sh = sh, .item_ms = 1, .crash_at = -1, .long_item = -1}};
    struct mh_stream_task stream = {
        .in_size = sizeof(int), .out_size = sizeof(int), .fn = fn_ctl_stream, .ctx = &cs,
        .source = ctl_source, .sink = ctl_sink,
    };
    /* An empty stream first: it ends at once. */
    struct mh_stream_task empty = stream;
    empty.source = ctl_source_none;
    CHECK_RC(mh_stream(pool, &empty, NULL), MH_OK);
    struct canceller c = {.pool = pool, .sh = sh, .after = 20};
    CHECK_OK(canceller_start(&c, ctl_cancels_here(backend, pool)));
    int rc = mh_stream(pool, &stream, NULL);
    canceller_join(&c);
    CHECK_RC(rc, MH_EINTR);
    CHECK(!mh_test_holds_results(backend) || (cs.delivered < N && cs.wrong == 0));
    cs = (struct ctl_stream){.item = {.sh = sh, .crash_at = -1, .long_item = -1}};
    CHECK_RC(mh_stream(pool, &stream, NULL), MH_OK);
    CHECK(!mh_test_holds_results(backend) || (cs.delivered == N && cs.wrong == 0));
    ctl_close(sh, pool);
    return 0;
}

/* A stream item's result through a codec: the int as a heap string. */
static int fn_ctl_stream_bytes(const void *in, void *out, void *vctx)
{
    int value;
    int rc = fn_ctl_stream(in, &value, vctx);
    if (rc)
        return rc;
    struct mh_test_bytes *b = out;
    b->len = (size_t)snprintf(NULL, 0, "%d", value) + 1;
    if (!(b->p = mh_test_bytes_alloc(b->len)))
        return 1;
    snprintf(b->p, b->len, "%d", value);
    return 0;
}

static int ctl_sink_bytes(size_t seq, int status, void *out, void *vctx)
{
    int value = status == MH_ITEM_OK ? atoi(((struct mh_test_bytes *)out)->p) : 0;
    return ctl_sink(seq, status, &value, vctx);
}

/* fork: a stream is cancelled while its item 10 runs for 10 s ignoring
 * SIGTERM, plain and through a codec. The child is killed after the
 * grace, the item is delivered MH_ITEM_CANCELLED (plain: after items 0-9,
 * OK; codec: after those whose records the child had handed over),
 * nothing after it, no decoded result is left uncleared, no child is
 * left, and the stream returns MH_EINTR. Prints how long the return took
 * after the cancel (a figure, not a check). */
static int test_cancel_kills_stream_item(const char *backend)
{
    struct ctl_shared *sh;
    mh_pool *pool;
    CHECK_OK(ctl_open(backend, 1, 0, MH_CONTINUE, &sh, &pool));
    for (int codec = 0; codec <= 1; codec++) {
        memset(sh, 0, sizeof *sh);
        struct ctl_stream cs = {.item = {.sh = sh, .crash_at = -1, .long_item = -1},
                                .stubborn = 10};
        struct mh_stream_task stream = {
            .in_size = sizeof(int), .out_size = sizeof(int), .fn = fn_ctl_stream, .ctx = &cs,
            .source = ctl_source, .sink = ctl_sink,
        };
        if (codec) {
            stream.out_size = sizeof(struct mh_test_bytes);
            stream.fn = fn_ctl_stream_bytes;
            stream.sink = ctl_sink_bytes;
            stream.codec = &mh_test_bytes_codec;
            /* Results the child had not handed over die with it (NOT_RUN,
             * as in a map): as completed, they leave no ordered gap. */
            stream.order = MH_AS_COMPLETED;
        }
        struct canceller c = {.pool = pool, .sh = sh, .after = 11};
        CHECK_OK(canceller_start(&c, 1));
        struct mh_report report;
        int rc = mh_stream(pool, &stream, &report);
        double returned = mh_test_now_s();
        canceller_join(&c);
        CHECK_RC(rc, MH_EINTR);
        fprintf(stderr, "codec %d: cancel to return: %.1f ms\n", codec,
                (returned - c.cancelled_at) * 1e3);
        CHECK(atomic_load(&sh->long_done) == 0);
        CHECK(cs.wrong == 0 && cs.ncancelled == 1 && cs.cancelled_seq == 10);
        CHECK(report.items_failed == 0 && cs.delivered == report.items_done + 1);
        CHECK(codec || report.items_done == 10);
        CHECK(mh_test_bytes_live() == 0);
        CHECK(mh_test_no_child());
    }
    ctl_close(sh, pool);
    return 0;
}

static const struct mh_test tests[] = {
    MH_TEST(cancel_from_thread)
    MH_TEST(cancel_from_signal)
    MH_TEST(cancel_before)
    MH_TEST(progress_stops)
    MH_TEST(reduce_progress_stops)
    MH_TEST_ONCE(resume_needs_status)
    MH_TEST(resume_after_cancel)
    MH_TEST(resume_after_failures)
    MH_TEST_ON(resume_after_crash, "fork")
    MH_TEST(resume_codec)
    MH_TEST_ON(cancelled_visible, "seq,threads,openmp,fork")
    MH_TEST_ONCE_ON(cancel_kills_long_item, "fork")
    MH_TEST(cancel_mid_stream)
    MH_TEST_ONCE_ON(cancel_kills_stream_item, "fork")
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return mh_test_main(argc, argv, tests);
}
