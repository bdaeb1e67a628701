/*
 * Soak and differential test (checklist scenarios 33 and 34): many random
 * maps — random n (0..1e5, log-uniform), element sizes, chunk, workers,
 * backend and policy, some with failing items, some with variable-size
 * heap results through a codec — each compared with seq on the same
 * input. Descriptor and thread counts are checked all along; child count,
 * RSS (/proc/self/statm) and, in a fault-injection build, the library's
 * live allocations are compared at the start and the end.
 *
 *   soak MAPS SEED BACKEND...      BACKEND "all": every built backend but mpi
 *
 * Exit 0 when every map agreed with seq and nothing grew; 1 otherwise.
 * CTest runs a reduced count (label soak); `make soak` runs 10,000.
 */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#ifdef MH_SOAK_LIVE
#include "fault.h"
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SOAK_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SOAK_SANITIZED 1
#endif
#endif
#ifndef SOAK_SANITIZED
#define SOAK_SANITIZED 0
#endif

#define SOAK_N_MAX 100000
#define SOAK_BACKENDS_MAX 16
/* RSS also counts free memory malloc keeps: per-thread arenas filled by
 * callbacks on pool threads hold ~20 MiB after 10,000 threads maps while
 * the heap in use stays flat. The heap check below is the tight one. */
#define SOAK_RSS_SLACK (64L << 20)
/* Bytes malloc has handed out and not had back (mallinfo2): unlike RSS it
 * does not count free memory an allocator keeps, so it can be tight. */
#define SOAK_HEAP_SLACK ((size_t)1 << 20)

static uint64_t soak_rng_state;

static uint64_t soak_rand(void)
{
    /* xorshift64* */
    soak_rng_state ^= soak_rng_state >> 12;
    soak_rng_state ^= soak_rng_state << 25;
    soak_rng_state ^= soak_rng_state >> 27;
    return soak_rng_state * 2685821657736338717u;
}

/* Uniform in [lo, hi]. */
static size_t soak_range(size_t lo, size_t hi)
{
    return lo + (size_t)(soak_rand() % (hi - lo + 1));
}

static uint64_t soak_hash(const void *data, size_t len, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

/* ------------------------------------------------------- the callbacks */

struct soak_ctx {
    const unsigned char *in; /* base of the input, to find an item's index */
    size_t in_size, out_size;
    uint64_t fail_mod;  /* item i fails when hash(i) % fail_mod == 0; 0: never */
    uint64_t salt;
    size_t big_every;   /* codec maps: every big_every-th item is large */
};

static bool soak_fails(const struct soak_ctx *ctx, size_t i)
{
    return ctx->fail_mod && soak_hash(&i, sizeof i, ctx->salt) % ctx->fail_mod == 0;
}

static size_t soak_index(const struct soak_ctx *ctx, const void *in)
{
    return (size_t)((const unsigned char *)in - ctx->in) / ctx->in_size;
}

/* Plain bytes: every output byte depends on every input byte. */
static int soak_fn_bytes(const void *in, void *out, void *vctx)
{
    const struct soak_ctx *ctx = vctx;
    if (soak_fails(ctx, soak_index(ctx, in)))
        return 7;
    uint64_t h = soak_hash(in, ctx->in_size, 1469598103934665603u);
    unsigned char *q = out;
    for (size_t j = 0; j < ctx->out_size; j++) {
        h = (h ^ j) * 1099511628211u;
        q[j] = (unsigned char)(h >> 29);
    }
    return 0;
}

/* Variable-size heap results, like a GMP integer. */
static size_t soak_str_len(const struct soak_ctx *ctx, size_t i, uint64_t h)
{
    if (ctx->big_every && i % ctx->big_every == ctx->big_every - 1)
        return 70000 + h % 1000; /* past a pipe buffer (scenario 17) */
    return 1 + h % 300;
}

static int soak_fn_str(const void *in, void *out, void *vctx)
{
    const struct soak_ctx *ctx = vctx;
    size_t i = soak_index(ctx, in);
    if (soak_fails(ctx, i))
        return 9;
    uint64_t h = soak_hash(in, ctx->in_size, 1469598103934665603u);
    struct mh_test_bytes *s = out;
    s->len = soak_str_len(ctx, i, h);
    s->p = mh_test_bytes_alloc(s->len);
    if (!s->p)
        return 1;
    for (size_t j = 0; j < s->len; j++) {
        h = (h ^ j) * 1099511628211u;
        s->p[j] = (char)(h >> 29);
    }
    return 0;
}

/* ----------------------------------------------------------- one map */

struct soak_map {
    const char *backend;
    size_t n, in_size, out_size, chunk;
    int workers;
    enum mh_on_error policy;
    bool codec, with_status, fresh_pool;
    struct soak_ctx ctx;
};

static void soak_describe(const struct soak_map *m, unsigned long index)
{
    fprintf(stderr,
            "  map %lu: backend %s n %zu in %zu out %zu chunk %zu workers %d %s "
            "codec %d status %d fresh pool %d fail_mod %llu big_every %zu\n",
            index, m->backend, m->n, m->in_size, m->out_size, m->chunk, m->workers,
            m->policy == MH_STOP ? "STOP" : "CONTINUE", m->codec, m->with_status,
            m->fresh_pool, (unsigned long long)m->ctx.fail_mod, m->ctx.big_every);
}

static bool soak_out_equal(const struct soak_map *m, const unsigned char *a,
                           const unsigned char *b, size_t i)
{
    if (!m->codec)
        return memcmp(a + i * m->out_size, b + i * m->out_size, m->out_size) == 0;
    const struct mh_test_bytes *x = (const struct mh_test_bytes *)a + i;
    const struct mh_test_bytes *y = (const struct mh_test_bytes *)b + i;
    return x->len == y->len && x->p && y->p && memcmp(x->p, y->p, x->len) == 0;
}

/* Release the codec results the caller owns: those with status OK, or
 * all of them after a successful map without a status array. */
static void soak_clear(const struct soak_map *m, void *out, const uint8_t *status,
                       bool all)
{
    if (!m->codec)
        return;
    struct mh_test_bytes *s = out;
    for (size_t i = 0; i < m->n; i++)
        if (all || (status && status[i] == MH_ITEM_OK))
            mh_test_bytes_codec.clear(&s[i], NULL);
}

/*
 * Run m on pool and on seq (MH_CONTINUE: every item's truth) and compare.
 * Returns 0 when they agree.
 */
static int soak_one(const struct soak_map *m, mh_pool *pool, mh_pool *oracle_pool)
{
    size_t osz = m->codec ? sizeof(struct mh_test_bytes) : m->out_size;
    unsigned char *in = malloc(m->n * m->in_size + 1);
    unsigned char *out = malloc(m->n * osz + 1);
    unsigned char *truth = malloc(m->n * osz + 1);
    uint8_t *status = malloc(m->n + 1), *truth_status = malloc(m->n + 1);
    CHECK(in && out && truth && status && truth_status);
    for (size_t i = 0; i < m->n * m->in_size; i++)
        in[i] = (unsigned char)soak_rand();
    memset(out, 0, m->n * osz);
    memset(truth, 0, m->n * osz);

    struct soak_ctx ctx = m->ctx;
    ctx.in = in;
    struct mh_task task = {
        .n = m->n, .in = in, .in_size = m->in_size, .out = truth, .out_size = osz,
        .fn = m->codec ? soak_fn_str : soak_fn_bytes, .ctx = &ctx,
        .codec = m->codec ? &mh_test_bytes_codec : NULL, .status = truth_status,
    };
    struct mh_report truth_report, report;
    int truth_rc = mh_map(oracle_pool, &task, &truth_report);

    task.out = out;
    task.status = m->with_status ? status : NULL;
    int rc = mh_map(pool, &task, &report);

    int failed = 0;
    bool any_fail = truth_rc != MH_OK;
    if (truth_rc != MH_OK && truth_rc != MH_ECALLBACK) {
        fprintf(stderr, "seq oracle returned %s\n", mh_err_name(truth_rc));
        failed = 1;
    } else if (!any_fail) {
        /* Every item succeeds: the outputs must equal seq's, all of them. */
        if (rc != MH_OK) {
            fprintf(stderr, "returned %s, seq succeeded\n", mh_err_name(rc));
            failed = 1;
        }
        for (size_t i = 0; !failed && i < m->n; i++)
            if (!soak_out_equal(m, out, truth, i) ||
                (m->with_status && status[i] != MH_ITEM_OK)) {
                fprintf(stderr, "item %zu differs from seq\n", i);
                failed = 1;
            }
        if (!failed && (report.items_done != m->n || report.failed_index != MH_NO_ITEM)) {
            fprintf(stderr, "report: done %zu of %zu, failed index %zu\n",
                    report.items_done, m->n, report.failed_index);
            failed = 1;
        }
        if (rc == MH_OK)
            soak_clear(m, out, NULL, true);
    } else {
        /* Some items fail: an error, never a silent partial result. */
        if (rc != MH_ECALLBACK) {
            fprintf(stderr, "returned %s, want MH_ECALLBACK\n", mh_err_name(rc));
            failed = 1;
        } else if (report.failed_index >= m->n || !soak_fails(&ctx, report.failed_index) ||
                   report.failed_status != MH_ITEM_FAILED) {
            fprintf(stderr, "report names item %zu (status %d), which does not fail\n",
                    report.failed_index, report.failed_status);
            failed = 1;
        } else if (m->policy == MH_CONTINUE &&
                   (report.failed_index != truth_report.failed_index ||
                    report.items_done != truth_report.items_done ||
                    report.items_failed != truth_report.items_failed)) {
            fprintf(stderr, "MH_CONTINUE: index %zu done %zu failed %zu, seq %zu %zu %zu\n",
                    report.failed_index, report.items_done, report.items_failed,
                    truth_report.failed_index, truth_report.items_done,
                    truth_report.items_failed);
            failed = 1;
        }
        if (m->with_status) {
            size_t ok = 0;
            for (size_t i = 0; !failed && i < m->n; i++) {
                if (status[i] == MH_ITEM_OK) {
                    ok++;
                    if (soak_fails(&ctx, i) || !soak_out_equal(m, out, truth, i)) {
                        fprintf(stderr, "item %zu: status ok, output differs\n", i);
                        failed = 1;
                    }
                } else if (status[i] == MH_ITEM_FAILED ? !soak_fails(&ctx, i)
                                                       : status[i] != MH_ITEM_NOT_RUN) {
                    fprintf(stderr, "item %zu: status %d, fails %d\n", i, status[i],
                            soak_fails(&ctx, i));
                    failed = 1;
                } else if (m->policy == MH_CONTINUE && status[i] != truth_status[i]) {
                    fprintf(stderr, "item %zu: MH_CONTINUE status %d, seq %d\n", i,
                            status[i], truth_status[i]);
                    failed = 1;
                }
            }
            if (!failed && ok != report.items_done) {
                fprintf(stderr, "%zu items ok, report says %zu\n", ok, report.items_done);
                failed = 1;
            }
            soak_clear(m, out, status, false);
        }
        /* Without a status array the library cleared its results. */
    }
    if (truth_rc == MH_OK)
        soak_clear(m, truth, NULL, true);
    else
        soak_clear(m, truth, truth_status, false);
    free(in);
    free(out);
    free(truth);
    free(status);
    free(truth_status);
    return failed;
}

/* --------------------------------------------------------------- main */

static long soak_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = -1;
        fclose(f);
    }
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static int soak_warm(const char *backend)
{
    struct soak_map m = {
        .backend = backend, .n = 64, .in_size = 4, .out_size = 4,
        .ctx = {.in_size = 4, .out_size = 4},
    };
    /* As many workers as any map uses: libgomp keeps a team that large. */
    mh_pool *pool = mh_test_pool(backend, 8, 0, MH_CONTINUE);
    mh_pool *seq = mh_test_pool("seq", 1, 0, MH_CONTINUE);
    int rc = pool && seq ? soak_one(&m, pool, seq) : 1;
    mh_pool_close(pool);
    mh_pool_close(seq);
    return rc;
}

static void soak_pick(struct soak_map *m, const char *const *backends, int nbackends)
{
    memset(m, 0, sizeof *m);
    m->backend = backends[soak_range(0, (size_t)nbackends - 1)];
    /* Log-uniform over 0..1e5: small maps (the overhead paths) are common,
     * large ones still come often. */
    double u = (double)(soak_rand() >> 11) / 9007199254740992.0;
    m->n = (size_t)floor(exp(u * log((double)SOAK_N_MAX + 1.0))) - 1;
    if (m->n > SOAK_N_MAX)
        m->n = SOAK_N_MAX;
    m->in_size = soak_range(0, 3) ? soak_range(1, 16) : soak_range(17, 64);
    m->out_size = soak_range(0, 3) ? soak_range(1, 16) : soak_range(17, 64);
    m->chunk = soak_range(0, 1) ? 0 : soak_range(1, m->n + 2);
    m->workers = (int)soak_range(1, 8);
    m->policy = soak_range(0, 1) ? MH_STOP : MH_CONTINUE;
    m->codec = soak_range(0, 6) == 0;
    m->with_status = soak_range(0, 3) != 0;
    m->fresh_pool = soak_range(0, 1);
    if (soak_range(0, 4) == 0)
        m->ctx.fail_mod = soak_range(1, 1000);
    m->ctx.salt = soak_rand();
    m->ctx.in_size = m->in_size;
    m->ctx.out_size = m->out_size;
    if (m->codec) {
        if (m->n > 20000)
            m->n /= 10; /* heap strings of up to 300 bytes each */
        if (soak_range(0, 3) == 0)
            m->ctx.big_every = soak_range(50, 2000);
    }
}

static int soak_usage(void)
{
    fprintf(stderr, "usage: soak MAPS SEED BACKEND...   (BACKEND all: every built one but mpi)\n");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return soak_usage();
    char *end;
    unsigned long maps = strtoul(argv[1], &end, 10);
    if (*end)
        return soak_usage();
    unsigned long long seed = strtoull(argv[2], &end, 10);
    if (*end)
        return soak_usage();
    soak_rng_state = seed * 0x9E3779B97F4A7C15ull + 1;

    const char *backends[SOAK_BACKENDS_MAX];
    int nbackends = 0;
    for (int a = 3; a < argc; a++) {
        for (const char *const *b = mh_backends(); *b && nbackends < SOAK_BACKENDS_MAX; b++) {
            /* mpi needs mpiexec; its own tests run it there. */
            bool all = strcmp(argv[a], "all") == 0 && strcmp(*b, "mpi") != 0;
            if (all || strcmp(argv[a], *b) == 0)
                backends[nbackends++] = *b;
        }
    }
    if (nbackends == 0) {
        fprintf(stderr, "soak: none of the backends asked for is built: skipped\n");
        return MH_SKIP;
    }
    unsetenv("MANYHANDS_BACKEND");
    unsetenv("MANYHANDS_WORKERS");
    mh_test_watchdog("MH_SOAK_WATCHDOG", (unsigned)(120 + maps / 2));
    double t0 = mh_test_now_s();

    /* Runtime threads a backend keeps for the process's life belong in
     * the baseline. */
    for (int b = 0; b < nbackends; b++)
        CHECK_OK(soak_warm(backends[b]));
    int fds0 = mh_test_count_fds(), threads0 = mh_test_threads_steady();

    /* Long-lived pools, reused by half the maps; the other half open a
     * fresh pool with their own workers and chunk. */
    mh_pool *kept[SOAK_BACKENDS_MAX][2];
    for (int b = 0; b < nbackends; b++)
        for (int p = 0; p < 2; p++) {
            kept[b][p] = mh_test_pool(backends[b], 4, 0, p ? MH_CONTINUE : MH_STOP);
            CHECK(kept[b][p]);
        }
    mh_pool *oracle = mh_test_pool("seq", 1, 0, MH_CONTINUE);
    CHECK(oracle);
    for (int b = 0; b < nbackends; b++)
        CHECK_OK(soak_warm(backends[b]));
    int fds1 = mh_test_count_fds(), threads1 = mh_test_threads_steady();

    unsigned long warm = maps / 10 > 20 ? maps / 10 : 20, failures = 0;
    unsigned long per_backend[SOAK_BACKENDS_MAX] = {0}, failing_maps = 0, codec_maps = 0;
    unsigned long long items = 0;
    long rss0 = -1;
    size_t heap0 = 0;
#ifdef MH_SOAK_LIVE
    long live0 = 0;
#endif
    unsigned long i;
    for (i = 0; i < maps && failures < 5; i++) {
        if (i == warm || (i == 0 && maps <= warm)) {
            malloc_trim(0);
            rss0 = soak_rss_bytes();
            heap0 = mallinfo2().uordblks;
#ifdef MH_SOAK_LIVE
            live0 = mh__fault_live_allocs();
#endif
        }
        struct soak_map m;
        soak_pick(&m, backends, nbackends);
        int b = 0;
        while (backends[b] != m.backend)
            b++;
        mh_pool *pool;
        if (m.fresh_pool) {
            pool = mh_test_pool(m.backend, m.workers, m.chunk, m.policy);
        } else {
            pool = kept[b][m.policy == MH_CONTINUE];
            m.workers = 4;
            m.chunk = 0;
        }
        int rc = pool ? soak_one(&m, pool, oracle) : 1;
        if (m.fresh_pool)
            mh_pool_close(pool);
        per_backend[b]++;
        items += m.n;
        failing_maps += m.ctx.fail_mod != 0;
        codec_maps += m.codec;
        if (rc) {
            soak_describe(&m, i);
            failures++;
        }
        if (i % 50 == 49) {
            /* A runtime's idle threads follow the last team's size
             * (libgomp): bring every backend back to the warm-up's. */
            for (int w = 0; w < nbackends; w++)
                CHECK_OK(soak_warm(backends[w]));
            int fds = mh_test_count_fds(), threads = mh_test_threads_settle(threads1);
            if (fds != fds1 || threads != threads1) {
                fprintf(stderr, "after map %lu: %d fds (%d at start), %d threads (%d)\n", i,
                        fds, fds1, threads, threads1);
                failures++;
            }
        }
    }
    malloc_trim(0);
    long rss1 = soak_rss_bytes();
    size_t heap1 = mallinfo2().uordblks;
#ifdef MH_SOAK_LIVE
    long live1 = mh__fault_live_allocs();
#endif
    for (int b = 0; b < nbackends; b++)
        for (int p = 0; p < 2; p++)
            mh_pool_close(kept[b][p]);
    mh_pool_close(oracle);
    for (int b = 0; b < nbackends; b++)
        CHECK_OK(soak_warm(backends[b]));

    fprintf(stderr, "soak: %lu maps, %llu items, seed %llu, %lu with failing items, "
            "%lu with a codec, %.1f s\n", i, items, seed, failing_maps, codec_maps,
            mh_test_now_s() - t0);
    for (int b = 0; b < nbackends; b++)
        fprintf(stderr, "soak:   %-8s %lu maps\n", backends[b], per_backend[b]);
    fprintf(stderr, "soak: RSS %.1f MiB after warm-up, %.1f MiB at the end\n",
            (double)rss0 / (1 << 20), (double)rss1 / (1 << 20));
    fprintf(stderr, "soak: heap in use %.2f MiB after warm-up, %.2f MiB at the end\n",
            (double)heap0 / (1 << 20), (double)heap1 / (1 << 20));
    CHECK(failures == 0);
    CHECK(heap1 <= heap0 + SOAK_HEAP_SLACK);
    CHECK(rss0 > 0 && rss1 > 0);
#if SOAK_SANITIZED
    /* The sanitizer's allocator keeps freed memory in quarantine: RSS
     * says nothing here, and LSan checks the leaks at exit instead. */
    fprintf(stderr, "soak: sanitizer build: RSS not checked\n");
#else
    CHECK(rss1 <= rss0 + SOAK_RSS_SLACK);
#endif
#ifdef MH_SOAK_LIVE
    fprintf(stderr, "soak: library allocations live %ld after warm-up, %ld at the end\n",
            live0, live1);
    CHECK(live1 == live0);
#endif
    CHECK(mh_test_count_fds() == fds0);
    CHECK(mh_test_threads_settle(threads0) == threads0);
    CHECK(mh_test_no_child());
    fprintf(stderr, "soak: ok\n");
    return 0;
}
