/*
 * The fork backend under failure: workers killed, crashing, exiting
 * without a result, stuck past the timeout; the caller killed mid-map,
 * ignoring SIGCHLD, interrupted by signals, robbed of its children by
 * waitpid(-1), running other threads; results larger than any buffer;
 * the record stream fed garbage; the seed's million GMP factorials.
 *
 * `fork_faults TEST fork`: one CTest entry per MH_TEST line of the table,
 * named fork_faults.<test> (labels fault, fork),
 * each under tests/check.c's runner (watchdog; no child, descriptor or
 * thread left).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef MH_TEST_GMP
#include <gmp.h>
#endif

#include "check.h"
#include "records.h"
#ifdef MH_TEST_GMP
#include "kernels.h"
#endif

/* records.c is compiled into this binary (the library hides its
 * internals); these are the allocation calls it uses. */
void *mh__malloc(size_t size);
void mh__free(void *p);
void *mh__malloc(size_t size)
{
    return malloc(size);
}
void mh__free(void *p)
{
    free(p);
}

/* Under ASan a SIGSEGV becomes a report and exit status 1. */
#if defined(__SANITIZE_ADDRESS__)
#define FAULTS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAULTS_ASAN 1
#endif
#endif

/* The kit's clock and sleep, by this file's short names. */
static inline double now_s(void)
{
    return mh_test_now_s();
}

static inline void sleep_ms(double ms)
{
    mh_test_sleep_ms(ms);
}

static void *shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static mh_pool *open_pool(const char *backend, int workers, size_t chunk,
                          enum mh_on_error policy, double timeout_s)
{
    struct mh_config config = {
        .backend = backend, .workers = workers, .chunk = chunk,
        .on_error = policy, .timeout_s = timeout_s,
    };
    return mh_test_pool_with(&config);
}

/* ------------------------------------------------- what callbacks do */

enum fault_kind {
    FAULT_NONE,
    FAULT_SEGV,     /* raise SIGSEGV */
    FAULT_ABORT,    /* abort() */
    FAULT_EXIT0,    /* _exit(0): gone without a result */
    FAULT_HANG,     /* wait to be killed (by the test, or the timeout) */
    FAULT_HANG_NOTERM, /* the same, with SIGTERM blocked */
};

/* Shared with the workers (MAP_SHARED), so what they record is seen. */
struct fault_ctx {
    size_t victim;             /* the item that misbehaves */
    enum fault_kind kind;
    double item_ms;            /* every other item sleeps this long */
    size_t killer;             /* the item whose worker SIGKILLs the victim's
                                * (a sibling), or SIZE_MAX */
    atomic_long victim_pid;    /* the worker running the victim */
    atomic_long pids[64];      /* every worker pid seen */
};

static void fault_note_pid(struct fault_ctx *ctx)
{
    long pid = getpid();
    for (int i = 0; i < 64; i++) {
        long seen = atomic_load(&ctx->pids[i]);
        if (seen == pid)
            return;
        if (seen == 0 && atomic_compare_exchange_strong(&ctx->pids[i], &seen, pid))
            return;
    }
}

static void fault_act(struct fault_ctx *ctx, size_t i)
{
    fault_note_pid(ctx);
    if (i == ctx->killer) {
        long pid;
        while (!(pid = atomic_load(&ctx->victim_pid)))
            sleep_ms(0.5);
        sleep_ms(5);
        kill((pid_t)pid, SIGKILL);
    }
    if (i != ctx->victim || ctx->kind == FAULT_NONE) {
        if (ctx->item_ms > 0)
            sleep_ms(ctx->item_ms);
        return;
    }
    atomic_store(&ctx->victim_pid, (long)getpid());
    switch (ctx->kind) {
    case FAULT_SEGV:
        raise(SIGSEGV);
        break;
    case FAULT_ABORT:
        abort();
    case FAULT_EXIT0:
        _exit(0);
    case FAULT_HANG_NOTERM: {
        sigset_t term;
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        sigprocmask(SIG_BLOCK, &term, NULL);
    }
        /* fall through */
    case FAULT_HANG:
        for (;;)
            sleep_ms(1000);
    case FAULT_NONE:
        break;
    }
}

/* Fixed-size outputs: out = 7 * i + 1 for in = i. */
static int fn_fault(const void *in, void *out, void *vctx)
{
    size_t i = *(const size_t *)in;
    fault_act(vctx, i);
    *(size_t *)out = i * 7 + 1;
    return 0;
}

/* Codec outputs: a heap blob of blob_len(i) bytes, blob_byte(i, j). */
struct blob {
    unsigned char *data;
    size_t len;
};

static size_t blob_big = 0; /* when set, every third item is this large */
static size_t blob_fixed = 0; /* when set, every item is this large */

static size_t blob_len(size_t i)
{
    if (blob_fixed)
        return blob_fixed;
    if (blob_big && i % 3 == 0)
        return blob_big + i * 1000;
    return i % 97;
}

static unsigned char blob_byte(size_t i, size_t j)
{
    return (unsigned char)(i * 131 + j * 7 + (j >> 12));
}

static int blob_fill(size_t i, struct blob *b)
{
    b->len = blob_len(i);
    b->data = malloc(b->len + 1);
    if (!b->data)
        return 1;
    for (size_t j = 0; j < b->len; j++)
        b->data[j] = blob_byte(i, j);
    return 0;
}

static int fn_blob(const void *in, void *out, void *vctx)
{
    size_t i = *(const size_t *)in;
    fault_act(vctx, i);
    return blob_fill(i, out);
}

static size_t blob_size(const void *item, void *ctx)
{
    (void)ctx;
    return ((const struct blob *)item)->len;
}

/* Items whose encode, or decode, fails (SIZE_MAX: none). Set before a map;
 * the workers see the value through fork. */
static size_t blob_fail_encode = SIZE_MAX, blob_fail_decode = SIZE_MAX;

/* Whether a blob's bytes are item i's (unique for i below 24832). */
static int blob_is(size_t i, const void *buf, size_t len)
{
    if (i == SIZE_MAX || len != blob_len(i))
        return 0;
    for (size_t j = 0; j < len; j++)
        if (((const unsigned char *)buf)[j] != blob_byte(i, j))
            return 0;
    return 1;
}

static int blob_encode(const void *item, void *buf, size_t len, void *ctx)
{
    (void)ctx;
    const struct blob *b = item;
    if (blob_is(blob_fail_encode, b->data, b->len))
        return 1;
    memcpy(buf, b->data, len);
    return 0;
}

static int blob_decode(void *item, const void *buf, size_t len, void *ctx)
{
    (void)ctx;
    if (blob_is(blob_fail_decode, buf, len))
        return 1;
    struct blob *b = item;
    b->data = malloc(len + 1);
    if (!b->data)
        return 1;
    memcpy(b->data, buf, len);
    b->len = len;
    return 0;
}

static void blob_clear(void *item, void *ctx)
{
    (void)ctx;
    free(((struct blob *)item)->data);
}

static const struct mh_codec blob_codec = {
    .size = blob_size, .encode = blob_encode, .decode = blob_decode, .clear = blob_clear,
};

static int blob_check(size_t i, const struct blob *b)
{
    if (b->len != blob_len(i)) {
        fprintf(stderr, "item %zu: %zu bytes, want %zu\n", i, b->len, blob_len(i));
        return 1;
    }
    for (size_t j = 0; j < b->len; j++)
        if (b->data[j] != blob_byte(i, j)) {
            fprintf(stderr, "item %zu: byte %zu wrong\n", i, j);
            return 1;
        }
    return 0;
}

/* ------------------------------------------------------ one faulty map */

struct fault_map {
    size_t n;
    int workers;
    size_t chunk;
    enum mh_on_error policy;
    double timeout_s;
    bool codec;
    struct fault_ctx *ctx;  /* shared */
    bool kill_victim;       /* the test SIGKILLs the victim's worker */
};

struct killer_arg {
    struct fault_ctx *ctx;
    int sent;
};

/* Wait for the victim's worker to show up, then SIGKILL it. */
static void *killer_main(void *varg)
{
    struct killer_arg *arg = varg;
    for (int i = 0; i < 20000; i++) {
        long pid = atomic_load(&arg->ctx->victim_pid);
        if (pid) {
            sleep_ms(5); /* let it settle into the item */
            arg->sent = kill((pid_t)pid, SIGKILL) == 0;
            return NULL;
        }
        sleep_ms(0.5);
    }
    return NULL;
}

/* Run fm; check the failure is reported at the victim, exactly once, and
 * everything else is right. want_sig: the signal expected (0: none);
 * want_status: MH_ITEM_CRASHED or _TIMED_OUT; want_rc the code. */
static int fault_run(const char *backend, const struct fault_map *fm, int want_rc,
                     int want_status, int want_sig, int want_exit)
{
    size_t n = fm->n;
    size_t *in = malloc(n * sizeof *in);
    void *out = calloc(n, fm->codec ? sizeof(struct blob) : sizeof(size_t));
    uint8_t *status = malloc(n);
    CHECK(in && out && status);
    for (size_t i = 0; i < n; i++)
        in[i] = i;
    mh_pool *pool = open_pool(backend, fm->workers, fm->chunk, fm->policy, fm->timeout_s);
    CHECK(pool);
    struct mh_task task = {
        .n = n, .in = in, .in_size = sizeof *in, .out = out,
        .out_size = fm->codec ? sizeof(struct blob) : sizeof(size_t),
        .fn = fm->codec ? fn_blob : fn_fault, .ctx = fm->ctx,
        .codec = fm->codec ? &blob_codec : NULL, .status = status,
    };
    pthread_t killer;
    struct killer_arg karg = {fm->ctx, 0};
    if (fm->kill_victim)
        CHECK(pthread_create(&killer, NULL, killer_main, &karg) == 0);
    struct mh_report report;
    double start = now_s();
    int rc = mh_map(pool, &task, &report);
    double wall = now_s() - start;
    if (fm->kill_victim)
        pthread_join(killer, NULL);
    mh_pool_close(pool);

    fprintf(stderr, "n=%zu workers=%d policy=%d: %s at %zu (%s), signal %d, exit %d, "
            "pid %ld, done %zu, failed %zu, %.2f s\n", n, fm->workers, fm->policy,
            mh_err_name(rc), report.failed_index, mh_item_status_name(report.failed_status),
            report.worker_signal, report.worker_exit, report.worker_pid,
            report.items_done, report.items_failed, wall);
    if (fm->kill_victim)
        CHECK(karg.sent);
    CHECK_RC(rc, want_rc);
    CHECK(report.code == want_rc);
    CHECK(report.failed_index == fm->ctx->victim);
    CHECK(report.failed_status == want_status);
    CHECK(status[fm->ctx->victim] == want_status);
    if (want_sig >= 0)
        CHECK(report.worker_signal == want_sig);
    if (want_exit != -2)
        CHECK(report.worker_exit == want_exit);
    if (want_sig != 0 || want_exit != -2)
        CHECK(report.worker_pid == atomic_load(&fm->ctx->victim_pid));
    CHECK(report.items_failed == 1); /* exactly one failure */
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == fm->ctx->victim)
            continue;
        if (fm->policy == MH_CONTINUE)
            CHECK(status[i] == MH_ITEM_OK);
        else
            CHECK(status[i] == MH_ITEM_OK || status[i] == MH_ITEM_NOT_RUN);
        if (status[i] != MH_ITEM_OK)
            continue;
        ok++;
        if (fm->codec) {
            CHECK_OK(blob_check(i, &((struct blob *)out)[i]));
            blob_clear(&((struct blob *)out)[i], NULL);
        } else {
            CHECK(((size_t *)out)[i] == i * 7 + 1);
        }
    }
    CHECK(report.items_done == ok);
    free(in);
    free(out);
    free(status);
    return 0;
}

static struct fault_ctx *fault_ctx_new(size_t victim, enum fault_kind kind, double item_ms)
{
    struct fault_ctx *ctx = shared_alloc(sizeof *ctx);
    if (!ctx)
        return NULL;
    memset(ctx, 0, sizeof *ctx);
    ctx->victim = victim;
    ctx->kind = kind;
    ctx->item_ms = item_ms;
    ctx->killer = SIZE_MAX;
    return ctx;
}

/* A callback that misbehaves at item k: CRASHED at k with the signal or
 * exit status, under both policies, fixed-size and codec outputs. */
static int crash_both_ways(const char *backend, enum fault_kind kind, int want_sig,
                           int want_exit)
{
    for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++)
        for (int codec = 0; codec <= 1; codec++) {
            struct fault_ctx *ctx = fault_ctx_new(1234, kind, 0);
            CHECK(ctx);
            struct fault_map fm = {
                .n = 3000, .workers = 3, .policy = (enum mh_on_error)policy,
                .codec = codec, .ctx = ctx,
            };
#ifdef FAULTS_ASAN
            if (kind == FAULT_SEGV) {
                want_sig = -1; /* ASan turns it into a report and exit 1 */
                want_exit = -2;
            }
#endif
            CHECK_OK(fault_run(backend, &fm, MH_EWORKER, MH_ITEM_CRASHED, want_sig, want_exit));
            munmap(ctx, sizeof *ctx);
        }
    return 0;
}

/* ----------------------------------------------------------- the tests */

static int kill_worker(const char *backend, int workers)
{
    for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++) {
        struct fault_ctx *ctx = fault_ctx_new(150, FAULT_HANG, 1);
        CHECK(ctx);
        struct fault_map fm = {
            .n = 400, .workers = workers, .chunk = 1, .policy = (enum mh_on_error)policy,
            .ctx = ctx, .kill_victim = true,
        };
        CHECK_OK(fault_run(backend, &fm, MH_EWORKER, MH_ITEM_CRASHED, SIGKILL, -1));
        munmap(ctx, sizeof *ctx);
    }
    return 0;
}

static int test_kill_worker_1(const char *backend)
{
    return kill_worker(backend, 1);
}

static int test_kill_worker_2(const char *backend)
{
    return kill_worker(backend, 2);
}

static int test_kill_worker_5(const char *backend)
{
    return kill_worker(backend, 5);
}

static int test_kill_worker_13(const char *backend)
{
    return kill_worker(backend, 13);
}

static int test_kill_worker_by_sibling(const char *backend)
{
    /* One worker's callback SIGKILLs another worker (the victim hangs, so
     * the killer's item runs elsewhere). */
    for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++) {
        struct fault_ctx *ctx = fault_ctx_new(100, FAULT_HANG, 1);
        CHECK(ctx);
        ctx->killer = 200;
        struct fault_map fm = {
            .n = 400, .workers = 3, .chunk = 1, .policy = (enum mh_on_error)policy,
            .ctx = ctx,
        };
        CHECK_OK(fault_run(backend, &fm, MH_EWORKER, MH_ITEM_CRASHED, SIGKILL, -1));
        munmap(ctx, sizeof *ctx);
    }
    return 0;
}

static int test_kill_worker_codec(const char *backend)
{
    /* The victim's earlier results sit in an arena half not yet handed
     * over: they die with it, and must be run again. */
    for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++) {
        struct fault_ctx *ctx = fault_ctx_new(150, FAULT_HANG, 0.2);
        CHECK(ctx);
        struct fault_map fm = {
            .n = 400, .workers = 2, .chunk = 50, .policy = (enum mh_on_error)policy,
            .codec = true, .ctx = ctx, .kill_victim = true,
        };
        CHECK_OK(fault_run(backend, &fm, MH_EWORKER, MH_ITEM_CRASHED, SIGKILL, -1));
        munmap(ctx, sizeof *ctx);
    }
    return 0;
}

static int test_segv_at_item(const char *backend)
{
    return crash_both_ways(backend, FAULT_SEGV, SIGSEGV, -1);
}

static int test_abort_in_callback(const char *backend)
{
    return crash_both_ways(backend, FAULT_ABORT, SIGABRT, -1);
}

static int test_exit0_without_result(const char *backend)
{
    /* The loky EXIT(0) case: a clean exit is not a result. */
    return crash_both_ways(backend, FAULT_EXIT0, 0, 0);
}

static int test_timeout(const char *backend)
{
    const enum fault_kind kinds[] = {FAULT_HANG, FAULT_HANG_NOTERM};
    const int sigs[] = {SIGTERM, SIGKILL}; /* TERM, or KILL after the grace */
    for (int k = 0; k < 2; k++)
        for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++) {
            struct fault_ctx *ctx = fault_ctx_new(77, kinds[k], 0.5);
            CHECK(ctx);
            struct fault_map fm = {
                .n = 200, .workers = 2, .chunk = 1, .policy = (enum mh_on_error)policy,
                .timeout_s = 0.3, .codec = policy == MH_CONTINUE, .ctx = ctx,
            };
            double start = now_s();
            CHECK_OK(fault_run(backend, &fm, MH_ETIMEDOUT, MH_ITEM_TIMED_OUT, sigs[k], -1));
            CHECK(now_s() - start < 20);
            munmap(ctx, sizeof *ctx);
        }
    return 0;
}

/* n items (in[i] = i) through fn on a fresh pool of workers (chunk,
 * MH_STOP, timeout_s) into out: 0 when the map returned MH_OK. */
static int map_ok(const char *backend, int workers, size_t chunk, double timeout_s, mh_fn fn,
                  void *ctx, size_t *out, size_t n)
{
    size_t *in = malloc(n * sizeof *in);
    CHECK(in);
    for (size_t i = 0; i < n; i++)
        in[i] = i;
    mh_pool *pool = open_pool(backend, workers, chunk, MH_STOP, timeout_s);
    CHECK(pool);
    struct mh_task task = {
        .n = n, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn, .ctx = ctx,
    };
    int rc = mh_map(pool, &task, NULL);
    mh_pool_close(pool);
    free(in);
    CHECK_RC(rc, MH_OK);
    return 0;
}

static int test_timeout_not_hit(const char *backend)
{
    /* Items near, but under, the limit all succeed. */
    struct fault_ctx *ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 50);
    CHECK(ctx);
    enum { N = 20 };
    size_t out[N];
    CHECK_OK(map_ok(backend, 2, 1, 1.0, fn_fault, ctx, out, N));
    for (size_t i = 0; i < N; i++)
        CHECK(out[i] == i * 7 + 1);
    munmap(ctx, sizeof *ctx);
    return 0;
}

static int test_big_results(const char *backend)
{
    /* Each third result is over 1 MiB: far past a pipe buffer and an
     * arena half, so it streams through in pieces. */
    const size_t bigs[] = {(size_t)3 << 19, (size_t)5 << 20};
    const size_t ns[] = {40, 7};
    for (int b = 0; b < 2; b++)
        for (size_t chunk = 0; chunk <= 1; chunk++) {
            blob_big = bigs[b];
            size_t n = ns[b];
            struct fault_ctx *ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 0);
            CHECK(ctx);
            size_t *in = malloc(n * sizeof *in);
            struct blob *out = calloc(n, sizeof *out);
            CHECK(in && out);
            for (size_t i = 0; i < n; i++)
                in[i] = i;
            mh_pool *pool = open_pool(backend, 3, chunk, MH_STOP, 0);
            CHECK(pool);
            struct mh_task task = {
                .n = n, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
                .fn = fn_blob, .ctx = ctx, .codec = &blob_codec,
            };
            CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
            mh_pool_close(pool);
            for (size_t i = 0; i < n; i++) {
                CHECK(out[i].len > 1u << 20 || i % 3 != 0);
                CHECK_OK(blob_check(i, &out[i]));
                blob_clear(&out[i], NULL);
            }
            free(in);
            free(out);
            munmap(ctx, sizeof *ctx);
        }
    blob_big = 0;
    return 0;
}

static int test_codec_fails(const char *backend)
{
    /* An item the codec cannot encode (in the worker) or decode (in the
     * caller): MH_ECODEC at that item, status failed; under MH_CONTINUE
     * every other item arrives. */
    for (int side = 0; side < 2; side++)
        for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++) {
            enum { N = 3000, K = 1500 };
            blob_fail_encode = side == 0 ? K : SIZE_MAX;
            blob_fail_decode = side == 1 ? K : SIZE_MAX;
            size_t *in = malloc(N * sizeof *in);
            struct blob *out = calloc(N, sizeof *out);
            uint8_t *status = malloc(N);
            CHECK(in && out && status);
            for (size_t i = 0; i < N; i++)
                in[i] = i;
            struct fault_ctx *ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 0);
            CHECK(ctx);
            mh_pool *pool = open_pool(backend, 3, 0, (enum mh_on_error)policy, 0);
            CHECK(pool);
            struct mh_task task = {
                .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
                .fn = fn_blob, .ctx = ctx, .codec = &blob_codec, .status = status,
            };
            struct mh_report report;
            CHECK_RC(mh_map(pool, &task, &report), MH_ECODEC);
            mh_pool_close(pool);
            CHECK(report.failed_index == K && report.failed_status == MH_ITEM_FAILED);
            CHECK(status[K] == MH_ITEM_FAILED && report.items_failed == 1);
            size_t ok = 0;
            for (size_t i = 0; i < N; i++) {
                if (i == K)
                    continue;
                CHECK(status[i] == MH_ITEM_OK || (policy == MH_STOP && status[i] == MH_ITEM_NOT_RUN));
                if (status[i] == MH_ITEM_OK) {
                    ok++;
                    CHECK_OK(blob_check(i, &out[i]));
                    blob_clear(&out[i], NULL);
                }
            }
            CHECK(report.items_done == ok);
            free(in);
            free(out);
            free(status);
            munmap(ctx, sizeof *ctx);
        }
    blob_fail_encode = blob_fail_decode = SIZE_MAX;
    return 0;
}

static int parent_source(void *item, size_t seq, void *ctx)
{
    (void)ctx;
    *(size_t *)item = seq; /* endless */
    return MH_SOURCE_ITEM;
}

static int parent_sink(size_t seq, int status, void *out, void *ctx)
{
    (void)seq, (void)status, (void)out, (void)ctx;
    return 0;
}

/* The library's caller, in a process of its own, is killed mid-map (or
 * mid-stream). */
static int parent_killed_in(const char *backend, int sig, bool stream)
{
    struct fault_ctx *ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 20);
    CHECK(ctx);
    fflush(NULL);
    pid_t caller = fork();
    CHECK(caller >= 0);
    if (caller == 0) {
        alarm(60);
        signal(sig, SIG_DFL);
        enum { N = 20000 };
        static size_t in[N], out[N];
        for (size_t i = 0; i < N; i++)
            in[i] = i;
        mh_pool *pool = open_pool(backend, 3, 1, MH_STOP, 0);
        if (!pool)
            _exit(3);
        struct mh_task task = {
            .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
            .fn = fn_fault, .ctx = ctx,
        };
        struct mh_stream_task st = {
            .in_size = sizeof *in, .out_size = sizeof *out, .fn = fn_fault, .ctx = ctx,
            .source = parent_source, .sink = parent_sink,
        };
        if (stream)
            mh_stream(pool, &st, NULL);
        else
            mh_map(pool, &task, NULL);
        _exit(4); /* the map should never have finished */
    }
    /* Wait until all three workers run, then kill their caller. */
    int seen = 0;
    for (int i = 0; i < 10000 && seen < 3; i++) {
        sleep_ms(1);
        seen = 0;
        while (seen < 64 && atomic_load(&ctx->pids[seen]))
            seen++;
    }
    CHECK(seen == 3);
    CHECK(kill(caller, sig) == 0);
    int wstatus;
    CHECK(waitpid(caller, &wstatus, 0) == caller);
    CHECK(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == sig);
    /* A second later no worker is alive (a zombie waiting for init to
     * reap it is dead). */
    sleep_ms(1000);
    for (int i = 0; i < seen; i++) {
        char path[64], state = 'X';
        snprintf(path, sizeof path, "/proc/%ld/stat", atomic_load(&ctx->pids[i]));
        FILE *f = fopen(path, "r");
        if (f) {
            int matched = fscanf(f, "%*d (%*[^)]) %c", &state);
            fclose(f);
            if (matched != 1)
                state = '?';
        }
        if (state != 'X' && state != 'Z') {
            fprintf(stderr, "worker %ld still alive (state %c)\n",
                    atomic_load(&ctx->pids[i]), state);
            return 1;
        }
    }
    munmap(ctx, sizeof *ctx);
    return 0;
}

static int parent_killed(const char *backend, int sig)
{
    return parent_killed_in(backend, sig, false);
}

static int test_parent_sigint(const char *backend)
{
    return parent_killed(backend, SIGINT);
}

static int test_parent_sigterm(const char *backend)
{
    return parent_killed(backend, SIGTERM);
}

static int test_parent_sigkill(const char *backend)
{
    return parent_killed(backend, SIGKILL);
}

/* A few maps of every kind, each checked; used under hostile conditions. */
/* rounds rounds on one pool of workers: round r maps n - r items
 * (in[i] = i) through fn into size_t outputs, then through fn_codec into
 * blobs with blob_codec; every map MH_OK and every result right. */
static int two_maps(const char *backend, int workers, mh_fn fn, mh_fn fn_codec, void *ctx,
                    size_t n, int rounds)
{
    size_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    struct blob *blobs = calloc(n, sizeof *blobs);
    CHECK(in && out && blobs);
    for (size_t i = 0; i < n; i++)
        in[i] = i;
    mh_pool *pool = open_pool(backend, workers, 0, MH_STOP, 0);
    CHECK(pool);
    for (int r = 0; r < rounds; r++) {
        struct mh_task task = {
            .n = n - (size_t)r, .in = in, .in_size = sizeof *in, .out = out,
            .out_size = sizeof *out, .fn = fn, .ctx = ctx,
        };
        memset(out, 0, n * sizeof *out);
        CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
        for (size_t i = 0; i < task.n; i++)
            CHECK(out[i] == i * 7 + 1);
        task.out = blobs;
        task.out_size = sizeof *blobs;
        task.fn = fn_codec;
        task.codec = &blob_codec;
        CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
        for (size_t i = 0; i < task.n; i++) {
            CHECK_OK(blob_check(i, &blobs[i]));
            blob_clear(&blobs[i], NULL);
        }
    }
    mh_pool_close(pool);
    free(in);
    free(out);
    free(blobs);
    return 0;
}

/* two_maps of 3000 well-behaved items on 3 workers. */
static int plain_maps(const char *backend, int rounds)
{
    struct fault_ctx *ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 0);
    CHECK(ctx);
    int rc = two_maps(backend, 3, fn_fault, fn_blob, ctx, 3000, rounds);
    munmap(ctx, sizeof *ctx);
    return rc;
}

static int test_sigchld_ignored(const char *backend)
{
    /* Children are reaped by the kernel, so waitpid gives ECHILD: ends
     * must still be seen, and a crash still blamed on its item. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ign.sa_mask);
    CHECK(sigaction(SIGCHLD, &ign, &old) == 0);
    int rc = plain_maps(backend, 5);
    for (int policy = MH_STOP; rc == 0 && policy <= MH_CONTINUE; policy++) {
        struct fault_ctx *ctx = fault_ctx_new(1234, FAULT_SEGV, 0);
        CHECK(ctx);
        struct fault_map fm = {
            .n = 3000, .workers = 3, .policy = (enum mh_on_error)policy, .codec = policy,
            .ctx = ctx,
        };
        /* The signal is unknown here (the status was reaped away). */
        rc = fault_run(backend, &fm, MH_EWORKER, MH_ITEM_CRASHED, -1, -2);
        munmap(ctx, sizeof *ctx);
    }
    sigaction(SIGCHLD, &old, NULL);
    return rc;
}

static void on_signal(int sig)
{
    (void)sig;
}

struct storm_arg {
    pthread_t target;
    atomic_int stop;
    long sent;
};

static void *storm_main(void *varg)
{
    struct storm_arg *arg = varg;
    while (!atomic_load(&arg->stop)) {
        pthread_kill(arg->target, SIGUSR1);
        arg->sent++;
        sleep_ms(0.05);
    }
    return NULL;
}

static int test_signal_storm(const char *backend)
{
    /* Handlers without SA_RESTART: every wait is interrupted, often. */
    struct sigaction act = {.sa_handler = on_signal}, old_usr1, old_chld;
    sigemptyset(&act.sa_mask);
    CHECK(sigaction(SIGUSR1, &act, &old_usr1) == 0);
    CHECK(sigaction(SIGCHLD, &act, &old_chld) == 0);
    struct storm_arg arg = {.target = pthread_self()};
    pthread_t storm;
    CHECK(pthread_create(&storm, NULL, storm_main, &arg) == 0);
    int rc = plain_maps(backend, 10);
    if (rc == 0) {
        struct fault_ctx *ctx = fault_ctx_new(50, FAULT_HANG, 1);
        struct fault_map fm = {
            .n = 100, .workers = 2, .chunk = 1, .policy = MH_CONTINUE, .timeout_s = 0.2,
            .ctx = ctx,
        };
        rc = ctx ? fault_run(backend, &fm, MH_ETIMEDOUT, MH_ITEM_TIMED_OUT, SIGTERM, -1) : 1;
        if (ctx)
            munmap(ctx, sizeof *ctx);
    }
    atomic_store(&arg.stop, 1);
    pthread_join(storm, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    sigaction(SIGCHLD, &old_chld, NULL);
    fprintf(stderr, "%ld signals sent\n", arg.sent);
    return rc;
}

static void *thief_main(void *varg)
{
    atomic_int *stop = varg;
    while (!atomic_load(stop)) {
        waitpid(-1, NULL, WNOHANG);
        sleep_ms(0.02);
    }
    return NULL;
}

static int test_waitpid_thief(const char *backend)
{
    /* Another thread reaps every child it can: ours must still be seen
     * to end, and the map must not hang or fail. */
    atomic_int stop = 0;
    pthread_t thief;
    CHECK(pthread_create(&thief, NULL, thief_main, &stop) == 0);
    int rc = plain_maps(backend, 20);
    atomic_store(&stop, 1);
    pthread_join(thief, NULL);
    return rc;
}

struct churn_arg {
    atomic_int *stop;
    unsigned seed;
    long rounds;
};

static void *churn_main(void *varg)
{
    struct churn_arg *arg = varg;
    FILE *sink = fopen("/dev/null", "w");
    void *held[16] = {0};
    while (!atomic_load(arg->stop)) {
        arg->seed = arg->seed * 1103515245u + 12345u;
        unsigned k = (arg->seed >> 8) % 16;
        free(held[k]);
        held[k] = malloc(1 + (arg->seed >> 12) % 100000);
        if (held[k])
            memset(held[k], 1, 1);
        if (sink)
            fprintf(sink, "%u\n", arg->seed);
        arg->rounds++;
    }
    for (int k = 0; k < 16; k++)
        free(held[k]);
    if (sink)
        fclose(sink);
    return NULL;
}

static int fn_malloc(const void *in, void *out, void *ctx)
{
    (void)ctx;
    size_t i = *(const size_t *)in;
    char *p = malloc(64 + i % 5000); /* malloc in a child of a threaded parent */
    if (!p)
        return 1;
    memset(p, (int)i, 64);
    *(size_t *)out = i * 7 + 1 + (size_t)(p[0] != (char)i);
    free(p);
    return 0;
}

static int test_threads_churn(const char *backend)
{
    enum { T = 8, MAPS = 200, N = 256 };
    atomic_int stop = 0;
    pthread_t threads[T];
    struct churn_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (struct churn_arg){&stop, (unsigned)t * 7919u + 1, 0};
        CHECK(pthread_create(&threads[t], NULL, churn_main, &args[t]) == 0);
    }
    size_t in[N], out[N];
    for (size_t i = 0; i < N; i++)
        in[i] = i;
    mh_pool *pool = open_pool(backend, 2, 0, MH_STOP, 0);
    int failed = !pool;
    for (int m = 0; m < MAPS && !failed; m++) {
        struct mh_task task = {
            .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
            .fn = fn_malloc,
        };
        memset(out, 0, sizeof out);
        failed |= mh_map(pool, &task, NULL) != MH_OK;
        for (size_t i = 0; i < N && !failed; i++)
            failed |= out[i] != i * 7 + 1;
    }
    mh_pool_close(pool);
    atomic_store(&stop, 1);
    long rounds = 0;
    for (int t = 0; t < T; t++) {
        pthread_join(threads[t], NULL);
        rounds += args[t].rounds;
    }
    fprintf(stderr, "%d maps beside %ld malloc/stdio rounds\n", MAPS, rounds);
    CHECK(!failed);
    return 0;
}

/* ---------------------------------------------- the record stream alone */

struct rec_sink {
    size_t n, count, last;
    int bad;
    const unsigned char *want; /* expected payload per index, or NULL */
    const size_t *want_len;
};

static int rec_emit(size_t index, const void *payload, size_t len, void *vs)
{
    struct rec_sink *s = vs;
    if (index >= s->n || (s->count && index <= s->last))
        s->bad = 1;
    if (s->want && (len != s->want_len[index] ||
                    (len && memcmp(payload, s->want + index * 4096, len) != 0)))
        s->bad = 1;
    s->last = index;
    s->count++;
    return 0;
}

static int test_records_garbage(const char *backend)
{
    (void)backend;
    /* Random blocks: never an index out of range or out of order, never a
     * read past the block (ASan builds check that part). */
    unsigned seed = 99;
    unsigned char block[512];
    for (int round = 0; round < 20000; round++) {
        struct mh__record_stream stream = {0};
        mh__record_stream_reset(&stream, 1 + round % 50);
        struct rec_sink sink = {.n = stream.n};
        for (int b = 0; b < 4; b++) {
            seed = seed * 1103515245u + 12345u;
            size_t len = (seed >> 7) % sizeof block;
            for (size_t i = 0; i < len; i++) {
                seed = seed * 1103515245u + 12345u;
                /* Mostly small numbers, so headers sometimes parse. */
                block[i] = (unsigned char)((seed >> 16) % 4 ? (seed >> 20) % 3 : seed >> 24);
            }
            int rc = mh__record_stream_feed(&stream, block, len, rec_emit, &sink);
            CHECK(rc == MH_OK || rc == MH_ERANGE);
            if (rc)
                break;
        }
        CHECK(!sink.bad);
        mh__record_stream_reset(&stream, 0);
    }
    return 0;
}

static int test_records_roundtrip(const char *backend)
{
    /* Records cut into blocks the way a worker cuts them (a header never
     * split, a large payload split anywhere) come back whole, in order. */
    (void)backend;
    enum { N = 300, BLOCK = 1024 };
    static unsigned char want[N * 4096], stream_bytes[N * (4096 + 16)];
    static size_t want_len[N];
    unsigned seed = 7;
    for (int round = 0; round < 50; round++) {
        size_t total = 0, count = 0;
        size_t cuts[N * 8], ncuts = 0, used = 0; /* block ends in stream_bytes */
        for (size_t i = 0; i < N; i++) {
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 9) % 3 == 0)
                continue; /* not every index has a record */
            size_t len = (seed >> 13) % 4 == 0 ? (seed >> 3) % 4096 : (seed >> 3) % 40;
            want_len[i] = len;
            for (size_t j = 0; j < len; j++)
                want[i * 4096 + j] = (unsigned char)(i + j * 3 + (size_t)round);
            if (used > 0 && used + 16 + len > BLOCK) {
                cuts[ncuts++] = total;
                used = 0;
            }
            mh__record_put(stream_bytes + total, i, len);
            memcpy(stream_bytes + total + 16, want + i * 4096, len);
            total += 16 + len;
            used += 16 + len;
            while (used >= BLOCK) { /* a large one spills over blocks */
                cuts[ncuts++] = total - (used - BLOCK);
                used -= BLOCK;
            }
            count++;
        }
        cuts[ncuts++] = total;
        struct mh__record_stream stream = {0};
        mh__record_stream_reset(&stream, N);
        struct rec_sink sink = {.n = N, .want = want, .want_len = want_len};
        size_t from = 0;
        for (size_t c = 0; c < ncuts; c++) {
            CHECK_RC(mh__record_stream_feed(&stream, stream_bytes + from, cuts[c] - from,
                                            rec_emit, &sink), MH_OK);
            from = cuts[c];
        }
        CHECK(!sink.bad);
        CHECK(sink.count == count);
        CHECK(!stream.partial);
        mh__record_stream_reset(&stream, 0);
    }
    /* A header cut short, an index past n, an index going back. */
    unsigned char bad[64];
    struct mh__record_stream stream = {0};
    struct rec_sink sink = {.n = 10};
    mh__record_stream_reset(&stream, 10);
    mh__record_put(bad, 3, 0);
    CHECK_RC(mh__record_stream_feed(&stream, bad, 10, rec_emit, &sink), MH_ERANGE);
    mh__record_stream_reset(&stream, 10);
    mh__record_put(bad, 10, 0);
    CHECK_RC(mh__record_stream_feed(&stream, bad, 16, rec_emit, &sink), MH_ERANGE);
    mh__record_stream_reset(&stream, 10);
    mh__record_put(bad, 5, 0);
    mh__record_put(bad + 16, 5, 0);
    CHECK_RC(mh__record_stream_feed(&stream, bad, 32, rec_emit, &sink), MH_ERANGE);
    /* A huge claimed length allocates only what arrives. */
    mh__record_stream_reset(&stream, 10);
    mh__record_put(bad, 1, SIZE_MAX / 2);
    CHECK_RC(mh__record_stream_feed(&stream, bad, 40, rec_emit, &sink), MH_OK);
    CHECK(stream.partial && stream.got == 24 && stream.cap <= 4096);
    mh__record_stream_reset(&stream, 0);
    return 0;
}

/* ------------------------------------------- the seed's workload, GMP */

#ifdef MH_TEST_GMP
static int factorials_on(const char *backend, int workers, const int *in, size_t n,
                         mpz_t *out)
{
    mh_pool *pool = open_pool(backend, workers, 0, MH_STOP, 0);
    CHECK(pool);
    struct mh_task task = {
        .n = n, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = mh_test_factorial, .codec = &mhk_mpz_codec,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_OK);
    mh_pool_close(pool);
    fprintf(stderr, "%s, %d workers: %.3f s\n", backend, workers, report.wall_s);
    return 0;
}

static int test_factorial_million(const char *backend)
{
    enum { N = 1000000 };
    int *in = malloc(N * sizeof *in);
    mpz_t *got = malloc(N * sizeof *got);
    CHECK(in && got);
    srand(2017);
    for (size_t i = 0; i < N; i++)
        in[i] = 1 + rand() % 99;
    CHECK_OK(factorials_on(backend, 2, in, N, got));
    size_t wrong = mh_test_factorials_differ(in, N, got);
    free(in);
    free(got);
    CHECK(wrong == 0);
    return 0;
}
#else
MH_TEST_SKIPPED(factorial_million, "built without GMP")
#endif

/* ------------------------------------------- the edges of the contract */

/* Run body in a process of its own (a caller whose descriptors, stdio or
 * threads the test changes), at most limit_s seconds: 0 when it exited 0,
 * 1 when it failed or hung (then it is SIGKILLed; its workers die with it
 * by PR_SET_PDEATHSIG). */
static int in_own_process(int (*body)(void *), void *arg, double limit_s)
{
    fflush(NULL);
    pid_t caller = fork();
    CHECK(caller >= 0);
    if (caller == 0)
        _exit(body(arg));
    int wstatus = 0;
    double deadline = now_s() + limit_s;
    pid_t got;
    while ((got = waitpid(caller, &wstatus, WNOHANG)) == 0 && now_s() < deadline)
        sleep_ms(5);
    if (got == 0) {
        kill(caller, SIGKILL);
        waitpid(caller, &wstatus, 0);
        fprintf(stderr, "the caller hung: killed after %.0f s\n", limit_s);
        return 1;
    }
    CHECK(got == caller);
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        fprintf(stderr, "the caller ended with %s %d\n",
                WIFEXITED(wstatus) ? "exit" : "signal",
                WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : WTERMSIG(wstatus));
        return 1;
    }
    return 0;
}

static size_t sum_size(const void *acc)
{
    size_t v;
    memcpy(&v, acc, sizeof v);
    return v;
}

static void fold_size(void *acc, const void *value, void *ctx)
{
    (void)ctx;
    size_t v = sum_size(acc) + sum_size(value);
    memcpy(acc, &v, sizeof v);
}

static const struct mh_reducer size_sum = {
    .acc_size = sizeof(size_t), .fold = fold_size, .combine = fold_size,
};

/* mh_reduce of n items whose victim misbehaves: the failure comes back as
 * want_rc at the first item of the victim's chunk, and the caller lives. */
static int reduce_fault(size_t n, size_t chunk, size_t victim, enum fault_kind kind,
                        double timeout_s, int want_rc, int want_status, size_t want_index)
{
    struct fault_ctx *ctx = fault_ctx_new(victim, kind, 0);
    size_t *in = malloc(n * sizeof *in);
    CHECK(ctx && in);
    for (size_t i = 0; i < n; i++)
        in[i] = i;
    mh_pool *pool = open_pool("fork", 2, chunk, MH_STOP, timeout_s);
    CHECK(pool);
    struct mh_task task = {
        .n = n, .in = in, .in_size = sizeof *in, .out_size = sizeof(size_t),
        .fn = fn_fault, .ctx = ctx,
    };
    size_t acc = 3;
    struct mh_report report;
    int rc = mh_reduce(pool, &task, &size_sum, &acc, &report);
    mh_pool_close(pool);
    fprintf(stderr, "reduce n=%zu chunk=%zu victim %zu: %s at %zu (%s), signal %d\n", n,
            chunk, victim, mh_err_name(rc), report.failed_index,
            mh_item_status_name(report.failed_status), report.worker_signal);
    CHECK_RC(rc, want_rc);
    CHECK(acc == 3);
    CHECK(report.failed_index == want_index);
    CHECK(report.failed_status == want_status);
    CHECK(report.worker_pid == atomic_load(&ctx->victim_pid));
    free(in);
    munmap(ctx, sizeof *ctx);
    return 0;
}

static int test_reduce_tail_crash(const char *backend)
{
    (void)backend;
    /* n = 1001 in chunks of 4: the crash is the tail's only item; with one
     * chunk for everything, the tail is every item (blamed at item 0). */
    CHECK_OK(reduce_fault(1001, 0, 1000, FAULT_ABORT, 0, MH_EWORKER, MH_ITEM_CRASHED, 1000));
    CHECK_OK(reduce_fault(5, SIZE_MAX, 3, FAULT_ABORT, 0, MH_EWORKER, MH_ITEM_CRASHED, 0));
    return 0;
}

static int test_reduce_tail_timeout(const char *backend)
{
    (void)backend;
    CHECK_OK(reduce_fault(1001, 0, 1000, FAULT_HANG, 0.3, MH_ETIMEDOUT, MH_ITEM_TIMED_OUT,
                          1000));
    CHECK_OK(reduce_fault(5, SIZE_MAX, 3, FAULT_HANG, 0.3, MH_ETIMEDOUT, MH_ITEM_TIMED_OUT, 0));
    return 0;
}

/* Another thread of the caller holds stdout's lock, or sits in
 * fgets(stdin) (holding stdin's), for the whole map. */
struct stdio_holder {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int held, release;
};

static void *stdout_holder_main(void *varg)
{
    struct stdio_holder *h = varg;
    flockfile(stdout);
    pthread_mutex_lock(&h->lock);
    h->held = 1;
    pthread_cond_broadcast(&h->cond);
    while (!h->release)
        pthread_cond_wait(&h->cond, &h->lock);
    pthread_mutex_unlock(&h->lock);
    funlockfile(stdout);
    return NULL;
}

static void *stdin_reader_main(void *varg)
{
    char line[16];
    (void)varg;
    return fgets(line, sizeof line, stdin);
}

static int stdio_locked_body(void *arg)
{
    const char *backend = arg;
    struct fault_ctx *ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 0);
    FILE *file = tmpfile();
    CHECK(ctx && file && dup2(fileno(file), 1) == 1);
    printf("pending"); /* buffered when the holder takes stdout */
    /* stdout held by a thread waiting to be told to let go. */
    struct stdio_holder h = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    pthread_t holder;
    CHECK(pthread_create(&holder, NULL, stdout_holder_main, &h) == 0);
    pthread_mutex_lock(&h.lock);
    while (!h.held)
        pthread_cond_wait(&h.cond, &h.lock);
    pthread_mutex_unlock(&h.lock);
    int failed = two_maps(backend, 2, fn_fault, fn_blob, ctx, 2000, 1);
    pthread_mutex_lock(&h.lock);
    h.release = 1;
    pthread_cond_broadcast(&h.cond);
    pthread_mutex_unlock(&h.lock);
    pthread_join(holder, NULL);
    CHECK(!failed);
    /* What the caller had buffered is written once, by the caller. */
    char text[32] = {0};
    CHECK(fflush(stdout) == 0);
    rewind(file);
    CHECK(fread(text, 1, sizeof text - 1, file) == 7 && strcmp(text, "pending") == 0);
    fclose(file);

    /* stdin: a pipe nobody writes to until the maps are done. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(dup2(fds[0], 0) == 0);
    close(fds[0]);
    pthread_t reader;
    CHECK(pthread_create(&reader, NULL, stdin_reader_main, NULL) == 0);
    sleep_ms(50); /* let it block in read, holding the lock */
    failed = two_maps(backend, 2, fn_fault, fn_blob, ctx, 2000, 1);
    CHECK(write(fds[1], "x\n", 2) == 2);
    pthread_join(reader, NULL);
    close(fds[1]);
    CHECK(!failed);
    munmap(ctx, sizeof *ctx);
    return 0;
}

static int test_stdio_locked(const char *backend)
{
    return in_own_process(stdio_locked_body, (void *)backend, 30);
}

/* Callbacks that write to stdout and fail if any of fds 0-2 is open in
 * their worker: then the library gave one of them to its own pipe or
 * pidfd (the caller closed them all). */
static int stdio_closed_check(const void *in)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            return 1;
    printf("item %zu\n", *(const size_t *)in);
    fflush(stdout);
    return 0;
}

static int fn_stdio_closed(const void *in, void *out, void *vctx)
{
    return stdio_closed_check(in) ? 1 : fn_fault(in, out, vctx);
}

static int fn_stdio_closed_blob(const void *in, void *out, void *vctx)
{
    return stdio_closed_check(in) ? 1 : fn_blob(in, out, vctx);
}

static int stdio_closed_body(void *arg)
{
    /* Items of 0.2 ms, so that every worker runs some. */
    struct fault_ctx *ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 0.2);
    if (!ctx)
        return 1;
    for (int fd = 0; fd <= 2; fd++)
        close(fd);
    return two_maps(arg, 2, fn_stdio_closed, fn_stdio_closed_blob, ctx, 2000, 1);
}

static int test_stdio_closed(const char *backend)
{
    return in_own_process(stdio_closed_body, (void *)backend, 30);
}

/* A progress callback that keeps the caller busy for 1 s, twice a map. */
static int progress_slow_left;

static int progress_slow(size_t done, size_t n, void *ctx)
{
    int slow = progress_slow_left;
    (void)done;
    (void)n;
    (void)ctx;
    if (slow > 0) {
        progress_slow_left = slow - 1;
        sleep_ms(1000);
    }
    return 0;
}

static int test_slow_caller(const char *backend)
{
    /* Items of about 10 us, limit 0.5 s, while the caller spends 1 s in
     * progress: results wait for it (a codec's arena halves fill in a few
     * ms), which is no item's time. */
    struct fault_ctx *ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 0.01);
    CHECK(ctx);
    enum { N = 20000 };
    size_t *in = malloc(N * sizeof *in);
    struct blob *blobs = calloc(N, sizeof *blobs);
    CHECK(in && blobs);
    for (size_t i = 0; i < N; i++)
        in[i] = i;
    blob_fixed = 1024;
    for (int codec = 0; codec <= 1; codec++) {
        progress_slow_left = 2;
        mh_pool *pool = open_pool(backend, 2, 0, MH_STOP, 0.5);
        CHECK(pool);
        struct mh_task task = {
            .n = N, .in = in, .in_size = sizeof *in, .out = blobs,
            .out_size = sizeof *blobs, .fn = codec ? fn_blob : fn_fault, .ctx = ctx,
            .codec = codec ? &blob_codec : NULL, .progress = progress_slow,
        };
        struct mh_report report;
        int rc = mh_map(pool, &task, &report);
        mh_pool_close(pool);
        fprintf(stderr, "codec %d: %s at %zu (%s), %.2f s\n", codec, mh_err_name(rc),
                report.failed_index, mh_item_status_name(report.failed_status),
                report.wall_s);
        if (codec && rc == MH_OK)
            for (size_t i = 0; i < N; i++) {
                CHECK_OK(blob_check(i, &blobs[i]));
                blob_clear(&blobs[i], NULL);
            }
        CHECK_RC(rc, MH_OK);
    }
    blob_fixed = 0;
    free(in);
    free(blobs);
    munmap(ctx, sizeof *ctx);
    return 0;
}

/* Callbacks print without a newline into a file: every piece once. A
 * piece is 8 bytes and stdout's buffer 4096 (child_stdout_body), so a
 * piece never straddles two of a child's writes (which another child's
 * could split). */
static int fn_print(const void *in, void *out, void *vctx)
{
    printf("<%06zu>", *(const size_t *)in);
    return fn_fault(in, out, vctx);
}

static void *idle_main(void *varg)
{
    char byte;
    return read(*(int *)varg, &byte, 1) < 0 ? varg : NULL; /* until closed */
}

/* Map N items that print "<i>" into stdout, a file, between "<begin>"
 * (left buffered by the caller) and "<end>": every piece exactly once. */
static int stdout_pieces(const char *backend)
{
    enum { N = 3000 };
    struct fault_ctx *ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 0);
    FILE *file = tmpfile();
    CHECK(ctx && file && dup2(fileno(file), 1) == 1);
    printf("<begin>");
    size_t out[N];
    CHECK_OK(map_ok(backend, 3, 7, 0, fn_print, ctx, out, N));
    printf("<end>");
    CHECK(fflush(stdout) == 0);

    static unsigned seen[N];
    memset(seen, 0, sizeof seen);
    char piece[32];
    int c, len = -1, begin = 0, end = 0, bad = 0;
    rewind(file);
    while ((c = fgetc(file)) != EOF) {
        if (c == '<') {
            len = 0;
        } else if (c == '>' && len > 0) {
            piece[len] = 0;
            char *stop;
            unsigned long i = strtoul(piece, &stop, 10);
            if (strcmp(piece, "begin") == 0)
                begin++;
            else if (strcmp(piece, "end") == 0)
                end++;
            else if (*stop == 0 && i < N)
                seen[i]++;
            else
                bad++;
            len = -1;
        } else if (len >= 0 && len < (int)sizeof piece - 1) {
            piece[len++] = (char)c;
        } else {
            bad++;
        }
    }
    size_t lost = 0, twice = 0;
    for (size_t i = 0; i < N; i++) {
        lost += seen[i] == 0;
        twice += seen[i] > 1;
    }
    fprintf(stderr, "items lost %zu, written twice %zu; <begin> %d, <end> %d, garbage %d\n",
            lost, twice, begin, end, bad);
    CHECK(lost == 0 && twice == 0 && begin == 1 && end == 1 && bad == 0);
    fclose(file);
    munmap(ctx, sizeof *ctx);
    return 0;
}

static int child_stdout_body(void *arg)
{
    /* A caller that never had a thread, then one with an idle thread
     * (only stdout and stderr are flushed around the forks then). */
    static char buffer[4096];
    CHECK(setvbuf(stdout, buffer, _IOFBF, sizeof buffer) == 0);
    CHECK_OK(stdout_pieces(arg));
    int fds[2];
    pthread_t idle;
    CHECK(pipe(fds) == 0 && pthread_create(&idle, NULL, idle_main, &fds[0]) == 0);
    int failed = stdout_pieces(arg);
    close(fds[1]);
    pthread_join(idle, NULL);
    close(fds[0]);
    return failed;
}

static int test_child_stdout_flushed(const char *backend)
{
    return in_own_process(child_stdout_body, (void *)backend, 60);
}

/* Round (ctx) 0: every item doubles its input; 1: the same, but item
 * 1000 fails; 2: odd items write nothing. */
static int reuse_fn(const void *in, void *out, void *ctx)
{
    long x = *(const long *)in;
    intptr_t round = (intptr_t)ctx;
    if (round == 1 && x == 1000)
        return 7;
    if (round != 2 || x % 2 == 0)
        *(long *)out = 2 * x;
    return 0;
}

/*
 * Maps that follow a map on the same pool see what a first map would,
 * when the pool keeps the shared region between them (a region of 1 MiB
 * or more): statuses of items that did not run say NOT_RUN, not the last
 * map's OK, and an output the callback did not write is zero.
 */
static int test_region_reused(const char *backend)
{
    enum { N = 200000 }; /* 1.8 MB of outputs and statuses */
    long *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    uint8_t *status = malloc(N);
    CHECK(in && out && status);
    for (long i = 0; i < N; i++)
        in[i] = i;
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = reuse_fn, .status = status,
    };
    for (int round = 0; round < 3; round++) {
        memset(out, 0x55, N * sizeof *out);
        memset(status, 0xee, N);
        task.ctx = (void *)(intptr_t)round;
        CHECK_RC(mh_map(pool, &task, NULL), round == 1 ? MH_ECALLBACK : MH_OK);
        size_t not_run = 0;
        for (long i = 0; i < N; i++) {
            if (round == 1 && i == 1000) {
                CHECK(status[i] == MH_ITEM_FAILED);
                continue;
            }
            not_run += status[i] == MH_ITEM_NOT_RUN;
            CHECK(status[i] == MH_ITEM_OK || (round == 1 && status[i] == MH_ITEM_NOT_RUN));
            if (status[i] == MH_ITEM_OK)
                CHECK(out[i] == (round == 2 && i % 2 ? 0 : 2 * i));
        }
        CHECK(round == 1 ? not_run > 0 : not_run == 0);
    }
    mh_pool_close(pool);
    free(status);
    free(out);
    free(in);
    return 0;
}

/* Items finished, counted where the caller sees it (shared), and the
 * most done a progress report claimed beyond it. */
struct reuse_progress {
    atomic_size_t finished;
    size_t overclaimed;
};

static int reuse_counted_fn(const void *in, void *out, void *ctx)
{
    struct reuse_progress *rp = ctx;
    *(long *)out = 2 * *(const long *)in;
    if (*(const long *)in % 64 == 0)
        sleep_ms(0.2); /* long enough for a few progress ticks */
    atomic_fetch_add(&rp->finished, 1);
    return 0;
}

static int reuse_progress_cb(size_t done, size_t n, void *ctx)
{
    (void)n;
    struct reuse_progress *rp = ctx;
    size_t finished = atomic_load(&rp->finished);
    if (done > finished && done - finished > rp->overclaimed)
        rp->overclaimed = done - finished;
    return 0;
}

/* Progress on a map that reuses the last map's region counts this map's
 * items only: it never reports more done than have finished (it once
 * added the last map's per-child counts, left in the region's slots). */
static int test_region_reused_progress(const char *backend)
{
    enum { N = 200000 }; /* 1.8 MB: the region is kept */
    long *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    struct reuse_progress *rp = shared_alloc(sizeof *rp);
    CHECK(in && out && rp);
    for (long i = 0; i < N; i++)
        in[i] = i;
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = reuse_counted_fn, .ctx = rp, .progress = reuse_progress_cb,
    };
    for (int round = 0; round < 2; round++) {
        atomic_store(&rp->finished, 0);
        CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
        CHECK(atomic_load(&rp->finished) == N);
    }
    if (rp->overclaimed)
        fprintf(stderr, "progress said %zu more done than had finished\n", rp->overclaimed);
    CHECK(rp->overclaimed == 0);
    mh_pool_close(pool);
    munmap(rp, sizeof *rp);
    free(out);
    free(in);
    return 0;
}

/* ------------------------------------------------------------ streams */

/* A stream of size_t inputs 0, 1, ... through fn_fault or fn_blob, on
 * children forked once: what the sink saw, per sequence number. */
#define SFAULT_CAP ((size_t)1 << 20) /* the most sequence numbers logged */
#define SFAULT_ENDLESS SIZE_MAX

struct sfault {
    size_t n;              /* items, or SFAULT_ENDLESS */
    int workers;
    size_t chunk;          /* config.chunk (0: adaptive) */
    enum mh_on_error policy;
    double timeout_s;
    bool codec;
    enum mh_order order;
    size_t crash_every;    /* fn_crash_every: items seq % it == 7 crash */
    struct fault_ctx *ctx; /* shared */
    /* What the source and sink saw (the calling thread's). */
    size_t pulled, delivered, next, ok, bad_output, out_of_order;
    uint8_t *times, *status; /* per seq below SFAULT_CAP */
};

static int sfault_source(void *item, size_t seq, void *vsf)
{
    struct sfault *sf = vsf;
    if (seq >= sf->n || seq >= SFAULT_CAP)
        return MH_SOURCE_END;
    *(size_t *)item = seq;
    sf->pulled++;
    return MH_SOURCE_ITEM;
}

static int sfault_sink(size_t seq, int status, void *out, void *vsf)
{
    struct sfault *sf = vsf;
    sf->out_of_order += sf->order == MH_ORDERED && seq != sf->next;
    sf->next = seq + 1;
    sf->delivered++;
    if (seq >= SFAULT_CAP)
        return 1;
    sf->times[seq]++;
    sf->status[seq] = (uint8_t)status;
    if (status != MH_ITEM_OK)
        return 0;
    sf->ok++;
    if (sf->codec)
        sf->bad_output += blob_check(seq, out) != 0; /* the library clears it */
    else
        sf->bad_output += *(const size_t *)out != seq * 7 + 1;
    return 0;
}

/* Every item with seq % crash_every == 7 segfaults its child. */
static int fn_crash_every(const void *in, void *out, void *vsf)
{
    const struct sfault *sf = vsf;
    size_t i = *(const size_t *)in;
    if (i % sf->crash_every == 7)
        raise(SIGSEGV);
    *(size_t *)out = i * 7 + 1;
    return 0;
}

static int sfault_fn(const void *in, void *out, void *vsf)
{
    struct fault_ctx *ctx = ((const struct sfault *)vsf)->ctx;
    return ((const struct sfault *)vsf)->codec ? fn_blob(in, out, ctx) : fn_fault(in, out, ctx);
}

/* Run sf's stream; its code, report in *report. */
static int sfault_run(struct sfault *sf, struct mh_report *report)
{
    sf->times = calloc(SFAULT_CAP, 1);
    sf->status = calloc(SFAULT_CAP, 1);
    if (!sf->times || !sf->status)
        return -1;
    mh_pool *pool = open_pool("fork", sf->workers, sf->chunk, sf->policy, sf->timeout_s);
    if (!pool)
        return -1;
    struct mh_stream_task task = {
        .in_size = sizeof(size_t), .out_size = sf->codec ? sizeof(struct blob) : sizeof(size_t),
        .fn = sf->crash_every ? fn_crash_every : sfault_fn, .ctx = sf,
        .codec = sf->codec ? &blob_codec : NULL, .source = sfault_source,
        .sink = sfault_sink, .order = sf->order,
    };
    double start = now_s();
    int rc = mh_stream(pool, &task, report);
    mh_pool_close(pool);
    fprintf(stderr, "stream policy=%d codec=%d order=%d: %s at %zu (%s), signal %d, exit %d, "
            "pulled %zu, delivered %zu, done %zu, failed %zu, %.2f s\n", sf->policy, sf->codec,
            sf->order, mh_err_name(rc), report->failed_index,
            mh_item_status_name(report->failed_status), report->worker_signal,
            report->worker_exit, sf->pulled, sf->delivered, report->items_done,
            report->items_failed, now_s() - start);
    return rc;
}

/* sf's logs, and its shared ctx. */
static void sfault_free(struct sfault *sf)
{
    free(sf->times);
    free(sf->status);
    munmap(sf->ctx, sizeof *sf->ctx);
}

/* The victim k failed with want_status (and want_sig, unless -1);
 * under MH_CONTINUE every other item was delivered OK once; under
 * MH_STOP, ordered, exactly 0 .. k were, in order. */
static int sfault_check(struct sfault *sf, int rc, const struct mh_report *report,
                        int want_rc, int want_status, int want_sig)
{
    size_t k = sf->ctx->victim;
    CHECK_RC(rc, want_rc);
    CHECK(report->failed_index == k && report->failed_status == want_status);
    if (want_sig >= 0)
        CHECK(report->worker_signal == want_sig);
    CHECK(report->worker_pid == atomic_load(&sf->ctx->victim_pid));
    CHECK(sf->times[k] == 1 && sf->status[k] == want_status);
    CHECK(sf->bad_output == 0 && sf->out_of_order == 0);
    CHECK(report->items_done == sf->ok && report->items_failed == 1);
    /* As completed under MH_STOP, what finished after the failure was
     * delivered is not delivered. */
    size_t end = sf->policy == MH_CONTINUE ? sf->n : sf->order == MH_ORDERED ? k + 1 : 0;
    for (size_t i = 0; i < end; i++)
        CHECK(i == k || (sf->times[i] == 1 && sf->status[i] == MH_ITEM_OK));
    for (size_t i = 0; i < SFAULT_CAP; i++)
        CHECK(sf->times[i] <= 1 && (i == k || sf->times[i] == 0 || sf->status[i] == MH_ITEM_OK));
    if (sf->policy == MH_STOP && sf->order == MH_ORDERED)
        CHECK(sf->delivered == k + 1);
    else if (sf->policy == MH_CONTINUE)
        CHECK(sf->delivered == sf->n);
    return 0;
}

/* A child that misbehaves at sequence number 1234 mid-stream, under
 * both policies (MH_STOP: an endless source), both orders, plain and
 * codec outputs. */
static int stream_fault_all_ways(enum fault_kind kind, double timeout_s, bool kill_victim,
                                 int want_rc, int want_status, int want_sig)
{
    for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++)
        for (int codec = 0; codec <= 1; codec++)
            for (int order = 0; order <= 1; order++) {
                struct fault_ctx *ctx = fault_ctx_new(1234, kind, kill_victim ? 0.05 : 0);
                CHECK(ctx);
                struct sfault sf = {
                    .n = policy == MH_STOP ? SFAULT_ENDLESS : 3000, .workers = 3,
                    .policy = (enum mh_on_error)policy, .timeout_s = timeout_s,
                    .codec = codec, .order = (enum mh_order)order, .ctx = ctx,
                    .chunk = kill_victim ? 4 : 0,
                };
                pthread_t killer;
                struct killer_arg karg = {ctx, 0};
                if (kill_victim)
                    CHECK(pthread_create(&killer, NULL, killer_main, &karg) == 0);
                struct mh_report report;
                int rc = sfault_run(&sf, &report);
                if (kill_victim) {
                    pthread_join(killer, NULL);
                    CHECK(karg.sent);
                }
                CHECK_OK(sfault_check(&sf, rc, &report, want_rc, want_status, want_sig));
                sfault_free(&sf);
            }
    return 0;
}

static int test_stream_crash(const char *backend)
{
    (void)backend;
#ifdef FAULTS_ASAN
    return stream_fault_all_ways(FAULT_ABORT, 0, false, MH_EWORKER, MH_ITEM_CRASHED, SIGABRT);
#else
    return stream_fault_all_ways(FAULT_SEGV, 0, false, MH_EWORKER, MH_ITEM_CRASHED, SIGSEGV);
#endif
}

static int test_stream_exit0(const char *backend)
{
    (void)backend;
    return stream_fault_all_ways(FAULT_EXIT0, 0, false, MH_EWORKER, MH_ITEM_CRASHED, 0);
}

static int test_stream_kill_worker(const char *backend)
{
    (void)backend; /* the test SIGKILLs the child while it runs the victim */
    return stream_fault_all_ways(FAULT_HANG, 0, true, MH_EWORKER, MH_ITEM_CRASHED, SIGKILL);
}

static int test_stream_timeout(const char *backend)
{
    (void)backend;
    CHECK_OK(stream_fault_all_ways(FAULT_HANG, 0.3, false, MH_ETIMEDOUT, MH_ITEM_TIMED_OUT,
                                   SIGTERM));
    return stream_fault_all_ways(FAULT_HANG_NOTERM, 0.3, false, MH_ETIMEDOUT,
                                 MH_ITEM_TIMED_OUT, SIGKILL);
}

/* Thirty crashes in one stream, each child replaced in turn: every other
 * item is delivered once, in order, and the first crash is reported. */
static int test_stream_crashes(const char *backend)
{
    (void)backend;
    struct sfault sf = {
        .n = 3000, .workers = 2, .policy = MH_CONTINUE, .crash_every = 100,
        .ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 0),
    };
    CHECK(sf.ctx);
    struct mh_report report;
    int rc = sfault_run(&sf, &report);
    CHECK_RC(rc, MH_EWORKER);
    CHECK(report.failed_index == 7 && report.failed_status == MH_ITEM_CRASHED);
    CHECK(report.items_failed == 30 && report.items_done == 2970);
    CHECK(sf.delivered == 3000 && sf.out_of_order == 0 && sf.bad_output == 0);
    for (size_t i = 0; i < 3000; i++)
        CHECK(sf.times[i] == 1 &&
              sf.status[i] == (i % 100 == 7 ? MH_ITEM_CRASHED : MH_ITEM_OK));
    sfault_free(&sf);
    return 0;
}

/* 10,000 one-item chunks through one stream's two children: no fork per
 * item (the children seen are the two), every result in order. */
static int test_stream_small_jobs(const char *backend)
{
    (void)backend;
    struct sfault sf = {
        .n = 10000, .workers = 2, .chunk = 1, .policy = MH_STOP,
        .ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 0),
    };
    CHECK(sf.ctx);
    struct mh_report report;
    CHECK_RC(sfault_run(&sf, &report), MH_OK);
    CHECK(sf.delivered == 10000 && sf.ok == 10000 && sf.out_of_order == 0 &&
          sf.bad_output == 0);
    CHECK(atomic_load(&sf.ctx->pids[1]) != 0 && atomic_load(&sf.ctx->pids[2]) == 0);
    sfault_free(&sf);
    return 0;
}

/* Recycling (worker_items_max 50): children end cleanly after 50 items,
 * mid-chunk too, and fresh ones finish what they left; every result is
 * delivered once, in order, plain and codec. */
static int test_stream_recycled(const char *backend)
{
    for (int codec = 0; codec <= 1; codec++) {
        struct sfault sf = {
            .n = 1000, .codec = codec, .ctx = fault_ctx_new(SIZE_MAX, FAULT_NONE, 0),
        };
        CHECK(sf.ctx);
        sf.times = calloc(SFAULT_CAP, 1);
        sf.status = calloc(SFAULT_CAP, 1);
        CHECK(sf.times && sf.status);
        struct mh_config config = {.backend = backend, .workers = 2, .worker_items_max = 50};
        mh_pool *pool = NULL;
        CHECK_RC(mh_pool_open(&pool, &config), MH_OK);
        struct mh_stream_task task = {
            .in_size = sizeof(size_t), .out_size = codec ? sizeof(struct blob) : sizeof(size_t),
            .fn = sfault_fn, .ctx = &sf, .codec = codec ? &blob_codec : NULL,
            .source = sfault_source, .sink = sfault_sink,
        };
        CHECK_RC(mh_stream(pool, &task, NULL), MH_OK);
        mh_pool_close(pool);
        CHECK(sf.delivered == 1000 && sf.ok == 1000 && sf.out_of_order == 0 &&
              sf.bad_output == 0);
        CHECK(atomic_load(&sf.ctx->pids[19]) != 0); /* 1000 / 50 children at least */
        sfault_free(&sf);
    }
    return 0;
}

static int test_stream_parent_sigkill(const char *backend)
{
    return parent_killed_in(backend, SIGKILL, true);
}

/* --------------------------------------------------------------- table */

/* Every test here is of the fork backend alone: one entry each,
 * fork_faults.<name>. */
#undef MH_TEST
#define MH_TEST(name) MH_TEST_ONCE_ON(name, "fork")
static const struct mh_test tests[] = {
    MH_TEST(kill_worker_1)
    MH_TEST(kill_worker_2)
    MH_TEST(kill_worker_5)
    MH_TEST(kill_worker_13)
    MH_TEST(kill_worker_by_sibling)
    MH_TEST(kill_worker_codec)
    MH_TEST(segv_at_item)
    MH_TEST(abort_in_callback)
    MH_TEST(exit0_without_result)
    MH_TEST(timeout)
    MH_TEST(timeout_not_hit)
    MH_TEST(big_results)
    MH_TEST(codec_fails)
    MH_TEST(parent_sigint)
    MH_TEST(parent_sigterm)
    MH_TEST(parent_sigkill)
    MH_TEST(sigchld_ignored)
    MH_TEST(signal_storm)
    MH_TEST(waitpid_thief)
    MH_TEST(threads_churn)
    MH_TEST(records_garbage)
    MH_TEST(records_roundtrip)
    MH_TEST(factorial_million)
    MH_TEST(reduce_tail_crash)
    MH_TEST(reduce_tail_timeout)
    MH_TEST(stdio_locked)
    MH_TEST(stdio_closed)
    MH_TEST(slow_caller)
    MH_TEST(child_stdout_flushed)
    MH_TEST(region_reused)
    MH_TEST(region_reused_progress)
    MH_TEST(stream_crash)
    MH_TEST(stream_exit0)
    MH_TEST(stream_kill_worker)
    MH_TEST(stream_timeout)
    MH_TEST(stream_crashes)
    MH_TEST(stream_small_jobs)
    MH_TEST(stream_parent_sigkill)
    MH_TEST(stream_recycled)
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    /* Crashing workers must not write cores. */
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    return mh_test_main(argc, argv, tests);
}
