/*
 * The mpi backend under `mpiexec -n N`: every rank runs the same test and
 * calls the same maps (SPMD); rank 0 checks the results, every rank checks
 * its return code and report, and every rank's verdict decides the job's
 * exit. Run as `mpi_backend TEST mpi N`: N is the job size the test was
 * launched for, checked against MPI_Comm_size (a mismatched mpiexec gives
 * N one-rank jobs).
 *
 * The conformance suite runs under mpiexec too (tests/CMakeLists.txt);
 * what is here is what only MPI has: ranks, the caller's own MPI, the
 * seed's million GMP factorials crossing processes, and a dying rank.
 */
#include <gmp.h>
#include <mpi.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kernels.h"
#ifdef MH_TEST_FAULTS
#include "fault.h"
#endif

/* codec_fails_off_root's CODEC_SIZE_HUGE makes the library ask for 2^50
 * bytes, which must come back NULL (the item then fails alone, with
 * MH_ECODEC): ASan's allocator would end the rank instead. Keys in
 * ASAN_OPTIONS still override this. */
#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif

static int expected_ranks = -1;

static int world_rank(void)
{
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

static int world_size(void)
{
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
}

static int fn_plus_one(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(int *)out = *(const int *)in + 1;
    return 0;
}

/* The library has initialised MPI (the runner's warm-up map) with the
 * thread level it needs, and the job is the size asked for. */
static int test_ranks(const char *backend)
{
    int initialised = 0, finalised = 1, level = -1;
    CHECK(MPI_Initialized(&initialised) == MPI_SUCCESS && initialised);
    CHECK(MPI_Finalized(&finalised) == MPI_SUCCESS && !finalised);
    CHECK(MPI_Query_thread(&level) == MPI_SUCCESS && level == MPI_THREAD_MULTIPLE);
    CHECK(world_size() == expected_ranks);
    mh_pool *pool = mh_test_pool(backend, 1, 0, MH_STOP);
    CHECK(pool);
    CHECK(mh_pool_workers(pool) == world_size()); /* whatever was asked */
    CHECK(mh_pool_rank(pool) == world_rank());
    CHECK((mh_pool_rank(pool) == 0) == mh_test_holds_results(backend));
    mh_pool_close(pool);
    return 0;
}

/* The caller initialised MPI itself (main, for this test): the library
 * uses it as it is, and leaves finalising to the caller (main checks). */
static int test_caller_initialised(const char *backend)
{
    int level = -1;
    CHECK(MPI_Query_thread(&level) == MPI_SUCCESS && level == MPI_THREAD_SERIALIZED);
    enum { N = 1000 };
    int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    mh_pool *pool = mh_test_pool(backend, 0, 0, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_plus_one,
    };
    CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
    mh_pool_close(pool);
    for (int i = 0; i < N && mh_test_holds_results(backend); i++)
        CHECK(out[i] == i + 1);
    return 0;
}

/* ----------------------------------------------- the seed, in GMP */

static int test_gmp_factorial_million(const char *backend)
{
    enum { N = 1000000 };
    int *in = malloc(N * sizeof *in);
    mpz_t *out = malloc(N * sizeof *out);
    CHECK(in && out);
    /* The same inputs on every rank (only rank 0's count). */
    unsigned seed = 2026;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        in[i] = 1 + (int)((seed >> 16) % 99);
    }
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = mh_test_factorial, .codec = &mhk_mpz_codec,
    };
    struct mh_report report;
    mh_pool *pool = mh_test_pool(backend, 0, 0, MH_STOP);
    CHECK(pool);
    CHECK_RC(mh_map(pool, &task, &report), MH_OK);
    mh_pool_close(pool);
    CHECK(report.items_done == N && report.items_failed == 0);
    CHECK(report.workers == world_size());

    int failed = mh_test_holds_results(backend) && mh_test_factorials_differ(in, N, out);
    free(in);
    free(out);
    CHECK(!failed);
    return 0;
}

/* -------------------------------------- failures on other ranks */

/* Fails on every item that runs on a rank other than 0. */
static int fn_fail_off_root(const void *in, void *out, void *ctx)
{
    (void)ctx;
    if (world_rank() != 0)
        return 70 + world_rank();
    *(int *)out = *(const int *)in + 1;
    return 0;
}

/* Every rank's report must say the same; rank 0's statuses must match it. */
static int check_same_report(const struct mh_report *report)
{
    long long mine[6] = {
        report->code, (long long)report->failed_index, report->callback_code,
        report->failed_status, (long long)report->items_done, (long long)report->items_failed,
    };
    long long low[6], high[6];
    CHECK(MPI_Allreduce(mine, low, 6, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD) == MPI_SUCCESS);
    CHECK(MPI_Allreduce(mine, high, 6, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD) == MPI_SUCCESS);
    CHECK(memcmp(low, high, sizeof low) == 0);
    return 0;
}

static int test_callback_error_off_root(const char *backend)
{
    if (world_size() < 2) {
        fprintf(stderr, "one rank: no other rank to fail on\n");
        return MH_SKIP;
    }
    enum { N = 20000 };
    static int in[N], out[N];
    static uint8_t status[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++) {
        mh_pool *pool = mh_test_pool(backend, 0, 10, (enum mh_on_error)policy);
        CHECK(pool);
        struct mh_task task = {
            .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
            .fn = fn_fail_off_root, .status = status,
        };
        struct mh_report report;
        CHECK_RC(mh_map(pool, &task, &report), MH_ECALLBACK);
        mh_pool_close(pool);
        CHECK(report.failed_status == MH_ITEM_FAILED);
        CHECK(report.callback_code >= 71 && report.callback_code < 70 + world_size());
        CHECK(report.items_failed >= 1);
        if (policy == MH_CONTINUE)
            CHECK(report.items_done + report.items_failed == N);
        CHECK_OK(check_same_report(&report));
        if (!mh_test_holds_results(backend))
            continue;
        size_t ok = 0, bad = 0, lowest = MH_NO_ITEM;
        for (size_t i = 0; i < N; i++) {
            if (status[i] == MH_ITEM_OK) {
                CHECK(out[i] == (int)i + 1);
                ok++;
            } else if (status[i] == MH_ITEM_FAILED) {
                bad++;
                lowest = lowest == MH_NO_ITEM ? i : lowest;
            } else {
                CHECK(status[i] == MH_ITEM_NOT_RUN && policy == MH_STOP);
            }
        }
        CHECK(ok == report.items_done && bad == report.items_failed);
        CHECK(lowest == report.failed_index);
    }
    return 0;
}

/* A task whose shape differs between ranks is refused on every rank. */

static int test_shape_mismatch(const char *backend)
{
    if (world_size() < 2) {
        fprintf(stderr, "one rank: nothing to mismatch\n");
        return MH_SKIP;
    }
    int in[64] = {0}, out[64];
    mh_pool *pool = mh_test_pool(backend, 0, 1, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = world_rank() == 0 ? 64 : 63, .in = in, .in_size = sizeof *in, .out = out,
        .out_size = sizeof *out, .fn = fn_plus_one,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_EINVAL);
    /* The pool is still good for the next map. */
    task.n = 64;
    CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
    mh_pool_close(pool);
    return 0;
}

/* A map of n = 0 is collective too: a rank that maps nothing while
 * another maps items is a shape mismatch, refused on every rank, never
 * a rank that returns at once and leaves the others waiting. n = 0 on
 * every rank runs nothing and calls no callback. */

static int fn_count_calls(const void *in, void *out, void *ctx)
{
    (*(int *)ctx)++;
    *(int *)out = *(const int *)in;
    return 0;
}

static int progress_count(size_t done, size_t n, void *ctx)
{
    (void)done;
    (void)n;
    (*(int *)ctx)++;
    return 0;
}

static int test_empty_map_shape(const char *backend)
{
    int in[8] = {0}, out[8], calls = 0;
    mh_pool *pool = mh_test_pool(backend, 0, 0, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_count_calls, .ctx = &calls, .progress = progress_count,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_OK); /* n = 0 everywhere */
    CHECK(calls == 0 && report.items_done == 0);
    for (int empty_root = 0; empty_root < 2 && world_size() > 1; empty_root++) {
        task.n = (world_rank() == 0) == empty_root ? 0 : 8;
        CHECK_RC(mh_map(pool, &task, &report), MH_EINVAL);
        CHECK_OK(check_same_report(&report));
    }
    /* The pool is still good for the next map. */
    task.n = 8;
    calls = 0;
    CHECK_RC(mh_map(pool, &task, &report), MH_OK);
    CHECK(report.items_done == 8);
    mh_pool_close(pool);
    return 0;
}

/*
 * The codec fails on items that run on a rank other than 0: their encode
 * (on that rank) or decode (on rank 0) fails, or size() claims a length
 * no buffer can hold. As on fork: each such item is MH_ITEM_FAILED with
 * MH_ECODEC, the map returns MH_ECODEC with it as failed_index on every
 * rank, and under MH_CONTINUE every other item arrives.
 */
enum codec_fault { CODEC_ENCODE, CODEC_DECODE, CODEC_SIZE_MAX, CODEC_SIZE_HUGE, CODEC_FAULTS };

static int codec_bad(int value)
{
    return (value - 1) % 100 == 3; /* item 3 (chunk 0: rank 1's), 103, ... */
}

static int fn_boxed(const void *in, void *out, void *ctx)
{
    (void)ctx;
    int *p = malloc(sizeof *p);
    if (!p)
        return 1;
    *p = *(const int *)in + 1;
    *(int **)out = p;
    return 0;
}

static size_t boxed_size(const void *item, void *ctx)
{
    int fault = *(const int *)ctx;
    if (codec_bad(**(int *const *)item) && fault == CODEC_SIZE_MAX)
        return SIZE_MAX - 3;
    if (codec_bad(**(int *const *)item) && fault == CODEC_SIZE_HUGE)
        return (size_t)1 << 50;
    return sizeof(int);
}

static int boxed_encode(const void *item, void *buf, size_t len, void *ctx)
{
    int value = **(int *const *)item;
    if ((codec_bad(value) && *(const int *)ctx == CODEC_ENCODE) || len != sizeof value)
        return 1;
    memcpy(buf, &value, sizeof value);
    return 0;
}

static int boxed_decode(void *item, const void *buf, size_t len, void *ctx)
{
    int value;
    if (len != sizeof value)
        return 1;
    memcpy(&value, buf, sizeof value);
    if (codec_bad(value) && *(const int *)ctx == CODEC_DECODE)
        return 1;
    int *p = malloc(sizeof *p);
    if (!p)
        return 1;
    *p = value;
    *(int **)item = p;
    return 0;
}

static void boxed_clear(void *item, void *ctx)
{
    (void)ctx;
    free(*(int **)item);
}

static const struct mh_codec boxed_codec = {
    .size = boxed_size, .encode = boxed_encode, .decode = boxed_decode, .clear = boxed_clear,
};

/* Rank 0's statuses and outputs against the report; frees the outputs. */
static int codec_check_results(int policy, int **out, const uint8_t *status, size_t n,
                               const struct mh_report *report)
{
    size_t ok = 0, bad = 0;
    CHECK(status[3] == MH_ITEM_FAILED);
    for (size_t i = 0; i < n; i++) {
        if (status[i] == MH_ITEM_OK) {
            CHECK(*out[i] == (int)i + 1);
            free(out[i]);
            ok++;
        } else if (status[i] == MH_ITEM_FAILED) {
            CHECK(codec_bad((int)i + 1));
            bad++;
        } else {
            CHECK(status[i] == MH_ITEM_NOT_RUN && policy == MH_STOP);
        }
    }
    CHECK(ok == report->items_done && bad == report->items_failed);
    return 0;
}

static int test_codec_fails_off_root(const char *backend)
{
    if (world_size() < 2) {
        fprintf(stderr, "one rank: the codec is not used\n");
        return MH_SKIP;
    }
    enum { N = 2000 };
    static int in[N], *out[N];
    static uint8_t status[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    for (int fault = 0; fault < CODEC_FAULTS; fault++)
        for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++)
            for (int with_status = 1; with_status >= 0; with_status--) {
                mh_pool *pool = mh_test_pool(backend, 0, 10, (enum mh_on_error)policy);
                CHECK(pool);
                struct mh_task task = {
                    .n = N, .in = in, .in_size = sizeof *in, .out = out,
                    .out_size = sizeof *out, .fn = fn_boxed, .ctx = &fault,
                    .codec = &boxed_codec, .status = with_status ? status : NULL,
                };
                struct mh_report report;
                CHECK_RC(mh_map(pool, &task, &report), MH_ECODEC);
                mh_pool_close(pool);
                CHECK_OK(check_same_report(&report));
                CHECK(report.failed_index == 3 && report.failed_status == MH_ITEM_FAILED);
                CHECK(report.callback_code == MH_ECODEC);
                if (policy == MH_CONTINUE)
                    CHECK(report.items_done + report.items_failed == N);
                if (with_status && mh_test_holds_results(backend))
                    CHECK_OK(codec_check_results(policy, out, status, N, &report));
            }
    return 0;
}

#ifndef MH_TEST_FAULTS
MH_TEST_SKIPPED(alloc_failures, "not a fault-injection build")
#else
/* What an allocation-failure test calls: call runs it on pool and gives
 * its code; check judges its results after MH_OK (0 when right). */
struct alloc_call {
    const char *what; /* "maps", "streams" */
    size_t chunk;
    int (*call)(mh_pool *pool, void *arg, struct mh_report *report);
    int (*check)(const char *backend, void *arg);
    void *arg;
};

/*
 * The library's Nth allocation fails on one rank (rank 0, then the last),
 * for N = 1, 2, ... until a call makes fewer there: every rank returns
 * the same code (MH_OK, MH_ENOMEM, or MH_ECODEC when it was the buffer a
 * worker encodes an item into: that item fails, as on fork), nobody
 * hangs, and every rank's library allocations balance (Open MPI's own
 * are out of LeakSanitizer's reach). failures[v]: the calls that failed
 * with rank 0 (v 0), then the last (v 1), failing.
 */
static int alloc_failures(const char *backend, const struct alloc_call *c, int failures[2])
{
    int victims[2] = {0, world_size() - 1};
    for (int v = 0; v < 2; v++) {
        failures[v] = 0;
        for (unsigned long nth = 1;; nth++) {
            long live = mh__fault_live_allocs();
            mh_pool *pool = mh_test_pool(backend, 0, c->chunk, MH_STOP);
            CHECK(pool);
            int armed = world_rank() == victims[v];
            if (armed)
                mh__fault_arm(MH__FAULT_ALLOC, nth);
            struct mh_report report;
            int rc = c->call(pool, c->arg, &report);
            int reached = !armed || mh__fault_calls(MH__FAULT_ALLOC) >= nth;
            mh__fault_arm(MH__FAULT_ALLOC, 0);
            CHECK(rc == MH_OK || rc == MH_ENOMEM || rc == MH_ECODEC);
            CHECK_OK(check_same_report(&report));
            failures[v] += rc != MH_OK;
            if (rc == MH_OK)
                CHECK_OK(c->check(backend, c->arg));
            mh_pool_close(pool);
            CHECK(mh__fault_live_allocs() == live);
            int all_reached = 0;
            CHECK(MPI_Allreduce(&reached, &all_reached, 1, MPI_INT, MPI_MIN,
                                MPI_COMM_WORLD) == MPI_SUCCESS);
            if (!all_reached)
                break; /* the call made fewer than nth allocations there */
            CHECK(nth < 1000);
        }
        fprintf(stderr, "rank %d failing: %d %s failed\n", victims[v], failures[v], c->what);
    }
    return 0;
}

enum { ALLOC_N = 3000 };

/* alloc_failures' map: GMP factorials of 1..60, chunks of 50. */
struct alloc_map {
    int in[ALLOC_N];
    mpz_t out[ALLOC_N];
};

static int alloc_map_call(mh_pool *pool, void *arg, struct mh_report *report)
{
    struct alloc_map *m = arg;
    struct mh_task task = {
        .n = ALLOC_N, .in = m->in, .in_size = sizeof *m->in, .out = m->out,
        .out_size = sizeof *m->out, .fn = mh_test_factorial, .codec = &mhk_mpz_codec,
    };
    return mh_map(pool, &task, report);
}

/* Every result is its input's factorial (then cleared). */
static int alloc_map_check(const char *backend, void *arg)
{
    struct alloc_map *m = arg;
    for (int i = 0; i < ALLOC_N && mh_test_holds_results(backend); i++) {
        mpz_t want;
        mpz_init(want);
        mpz_fac_ui(want, (unsigned long)m->in[i]);
        CHECK(mpz_cmp(want, m->out[i]) == 0);
        mpz_clear(want);
        mpz_clear(m->out[i]);
    }
    return 0;
}

/* alloc_failures over a map. Needs a MANYHANDS_FAULT_INJECTION build. */
static int test_alloc_failures(const char *backend)
{
    static struct alloc_map m;
    for (int i = 0; i < ALLOC_N; i++)
        m.in[i] = 1 + i % 60;
    const struct alloc_call c = {.what = "maps", .chunk = 50, .call = alloc_map_call,
                                 .check = alloc_map_check, .arg = &m};
    int failures[2];
    CHECK_OK(alloc_failures(backend, &c, failures));
    /* Rank 0's first allocation, at least, matters. The last rank may
     * get no chunk at all in a run (rank 0 runs chunks itself between
     * results), so what it allocates can all be absorbed. */
    CHECK(failures[0] >= 1);
    return 0;
}
#endif /* MH_TEST_FAULTS */

/* ---------------------------------------------------------- streams */

/*
 * Every rank calls the same streams; only rank 0's source and sink are
 * called. Each rank counts what its own source, sink and fn did: rank 0
 * checks every output in its sink, and the counts add up across ranks.
 */
struct mstream {
    size_t n;                             /* items the source gives */
    size_t item;                          /* bytes in and out (int, or BIG) */
    size_t fail_at, source_error_at, sink_stop_at; /* SIZE_MAX: none */
    int gmp;                              /* in: an int n, out: n! (mpz_t) */
    long source_calls, sink_calls, fn_runs; /* on this rank */
    size_t next, wrong;                   /* rank 0's sink: in order, right */
};

#define BIG ((size_t)1 << 20)

static struct mstream mstream_of(size_t n)
{
    return (struct mstream){
        .n = n, .item = sizeof(int), .fail_at = SIZE_MAX, .source_error_at = SIZE_MAX,
        .sink_stop_at = SIZE_MAX,
    };
}

static int ms_source(void *item, size_t seq, void *ctx)
{
    struct mstream *ms = ctx;
    ms->source_calls++;
    if (seq == ms->source_error_at)
        return -3;
    if (seq >= ms->n)
        return MH_SOURCE_END;
    int v = ms->gmp ? 1 + (int)(seq % 99) : (int)seq;
    if (ms->item == BIG)
        memset(item, (int)(seq & 0xff), BIG);
    memcpy(item, &v, sizeof v);
    return MH_SOURCE_ITEM;
}

static int ms_fn(const void *in, void *out, void *ctx)
{
    struct mstream *ms = ctx;
    ms->fn_runs++; /* one thread per rank runs items: rank 0's loop, or the rank's */
    int v;
    memcpy(&v, in, sizeof v);
    if ((size_t)v == ms->fail_at && !ms->gmp)
        return 40 + world_rank();
    if (ms->gmp)
        return mh_test_factorial(in, out, NULL);
    if (ms->item == BIG) {
        const unsigned char *src = in;
        unsigned char *dst = out;
        for (size_t i = 0; i < BIG; i++)
            dst[i] = src[i] ^ 0x5a;
    }
    v = v * 3 + 1;
    memcpy(out, &v, sizeof v);
    return 0;
}

/* Whether item seq's output is what ms_fn makes of ms_source's input. */
static int ms_output_ok(const struct mstream *ms, size_t seq, const void *out)
{
    if (ms->gmp) {
        mpz_t want;
        mpz_init(want);
        mpz_fac_ui(want, 1 + (unsigned long)(seq % 99));
        int same = mpz_cmp(want, *(const mpz_t *)out) == 0;
        mpz_clear(want);
        return same;
    }
    int v;
    memcpy(&v, out, sizeof v);
    if (v != (int)seq * 3 + 1)
        return 0;
    const unsigned char *o = out;
    for (size_t i = sizeof v; ms->item == BIG && i < BIG; i++)
        if (o[i] != (unsigned char)((seq & 0xff) ^ 0x5a))
            return 0;
    return 1;
}

static int ms_sink(size_t seq, int status, void *out, void *ctx)
{
    struct mstream *ms = ctx;
    ms->sink_calls++;
    if (seq != ms->next++ || (status == MH_ITEM_OK) != (seq != ms->fail_at) ||
        (status == MH_ITEM_OK && !ms_output_ok(ms, seq, out)))
        ms->wrong++;
    return seq == ms->sink_stop_at;
}

/* Run ms as an ordered stream with window on a fresh pool; every rank
 * must return want, with the same report. */
static int ms_run(const char *backend, struct mstream *ms, size_t window,
                  enum mh_on_error policy, int want, struct mh_report *report)
{
    struct mh_stream_task task = {
        .in_size = ms->gmp ? sizeof(int) : ms->item,
        .out_size = ms->gmp ? sizeof(mpz_t) : ms->item, .fn = ms_fn, .ctx = ms,
        .codec = ms->gmp ? &mhk_mpz_codec : NULL, .source = ms_source, .sink = ms_sink,
        .window = window, .order = MH_ORDERED,
    };
    mh_pool *pool = mh_test_pool(backend, 0, 0, policy);
    CHECK(pool);
    CHECK_RC(mh_stream(pool, &task, report), want);
    mh_pool_close(pool);
    CHECK_OK(check_same_report(report));
    CHECK(report->workers == world_size());
    return 0;
}

/* What ran where: rank 0's source and sink alone were called, every item
 * ran once somewhere, and with other ranks some ran there. */
static int ms_check_roles(const struct mstream *ms, size_t delivered)
{
    if (world_rank() != 0) {
        CHECK(ms->source_calls == 0 && ms->sink_calls == 0);
    } else {
        CHECK(ms->wrong == 0 && ms->sink_calls == (long)delivered);
    }
    long runs[2] = {ms->fn_runs, world_rank() != 0 ? ms->fn_runs : 0}, sum[2];
    CHECK(MPI_Allreduce(runs, sum, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS);
    CHECK(sum[0] >= (long)delivered);
    if (world_size() > 1)
        CHECK(sum[1] > 0); /* items crossed to other ranks and back */
    return 0;
}

/* Plain items, then the seed's GMP factorials through the codec: rank
 * 0's sink sees every output in order, whichever rank made it. */
static int test_stream_roles(const char *backend)
{
    for (int gmp = 0; gmp < 2; gmp++)
        for (size_t window = 0; window <= 64; window += 64) {
            struct mstream ms = mstream_of(20000);
            ms.gmp = gmp;
            struct mh_report report;
            CHECK_OK(ms_run(backend, &ms, window, MH_STOP, MH_OK, &report));
            CHECK(report.items_done == ms.n && report.items_failed == 0);
            CHECK_OK(ms_check_roles(&ms, ms.n));
            if (world_rank() == 0)
                CHECK(ms.source_calls == (long)ms.n + 1); /* the last one says END */
        }
    return 0;
}

/* Items of 1 MiB in and out, with the window adaptive and of 3. */
static int test_stream_big_items(const char *backend)
{
    for (size_t window = 0; window <= 3; window += 3) {
        struct mstream ms = mstream_of(24);
        ms.item = BIG;
        struct mh_report report;
        CHECK_OK(ms_run(backend, &ms, window, MH_STOP, MH_OK, &report));
        CHECK(report.items_done == ms.n);
        CHECK_OK(ms_check_roles(&ms, ms.n));
    }
    return 0;
}

/* A failing item (under MH_STOP and MH_CONTINUE), a source error and a
 * sink stop: every rank returns the same code and report. */
static int test_stream_same_code(const char *backend)
{
    enum { N = 30000 };
    for (int policy = MH_STOP; policy <= MH_CONTINUE; policy++) {
        struct mstream ms = mstream_of(N);
        ms.fail_at = 7777;
        struct mh_report report;
        CHECK_OK(ms_run(backend, &ms, 0, (enum mh_on_error)policy, MH_ECALLBACK, &report));
        CHECK(report.failed_index == 7777 && report.failed_status == MH_ITEM_FAILED);
        CHECK(report.callback_code >= 40 && report.callback_code < 40 + world_size());
        CHECK(report.items_failed == 1);
        size_t delivered = policy == MH_STOP ? 7778 : N; /* ordered: up to it */
        CHECK(report.items_done == delivered - 1);
        CHECK_OK(ms_check_roles(&ms, delivered));
    }
    struct mstream ms = mstream_of(SIZE_MAX);
    ms.source_error_at = 12345;
    struct mh_report report;
    CHECK_OK(ms_run(backend, &ms, 0, MH_STOP, MH_ESOURCE, &report));
    CHECK(report.items_done <= 12345 && report.failed_index == MH_NO_ITEM);
    CHECK(ms.source_calls == (world_rank() == 0 ? 12346 : 0));

    ms = mstream_of(SIZE_MAX);
    ms.sink_stop_at = 4321;
    CHECK_OK(ms_run(backend, &ms, 0, MH_STOP, MH_ESINK, &report));
    CHECK(report.items_done == 4322);
    CHECK_OK(ms_check_roles(&ms, 4322)); /* the sink is not called after it said stop */
    return 0;
}

/* One rank's part differs: it maps while the others stream (or the
 * reverse), its stream's item size differs, or its own call is invalid
 * (no sink). Every rank returns MH_EINVAL, nobody hangs, and the pool
 * still works. */
static int test_stream_shape_mismatch(const char *backend)
{
    if (world_size() < 2) {
        fprintf(stderr, "one rank: nothing to mismatch\n");
        return MH_SKIP;
    }
    int in[64] = {0}, out[64];
    struct mh_task map = {
        .n = 64, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_plus_one,
    };
    mh_pool *pool = mh_test_pool(backend, 0, 0, MH_STOP);
    CHECK(pool);
    int odd = world_size() - 1; /* the rank whose part differs */
    for (int c = 0; c < 5; c++) {
        struct mstream ms = mstream_of(5000);
        struct mh_stream_task task = {
            .in_size = sizeof(int), .out_size = sizeof(int), .fn = ms_fn, .ctx = &ms,
            .source = ms_source, .sink = ms_sink,
        };
        int mine = c == 0 ? world_rank() == odd : c == 1 ? world_rank() != odd : 0;
        if (c == 2 && world_rank() == odd)
            task.in_size = 8;
        if (c == 3 && world_rank() == odd)
            task.sink = NULL;
        if (c == 4 && world_rank() == 0)
            task.source = NULL;
        struct mh_report report;
        CHECK_RC(mine ? mh_map(pool, &map, &report) : mh_stream(pool, &task, &report),
                 MH_EINVAL);
        CHECK_OK(check_same_report(&report));
        CHECK(ms.source_calls == 0 || world_rank() == 0);
    }
    struct mstream ms = mstream_of(5000);
    struct mh_stream_task task = {
        .in_size = sizeof(int), .out_size = sizeof(int), .fn = ms_fn, .ctx = &ms,
        .source = ms_source, .sink = ms_sink,
    };
    CHECK_RC(mh_stream(pool, &task, NULL), MH_OK);
    CHECK(world_rank() != 0 || (ms.sink_calls == 5000 && ms.wrong == 0));
    CHECK_RC(mh_map(pool, &map, NULL), MH_OK);
    mh_pool_close(pool);
    return 0;
}

#ifndef MH_TEST_FAULTS
MH_TEST_SKIPPED(stream_alloc_failures, "not a fault-injection build")
#else
/* alloc_failures' stream: 3000 GMP factorials, whole-stream chunks. */
static int alloc_stream_call(mh_pool *pool, void *arg, struct mh_report *report)
{
    struct mstream *ms = arg;
    *ms = mstream_of(ALLOC_N);
    ms->gmp = 1;
    struct mh_stream_task task = {
        .in_size = sizeof(int), .out_size = sizeof(mpz_t), .fn = ms_fn, .ctx = ms,
        .codec = &mhk_mpz_codec, .source = ms_source, .sink = ms_sink,
    };
    return mh_stream(pool, &task, report);
}

/* Rank 0's sink saw every item, each right. */
static int alloc_stream_check(const char *backend, void *arg)
{
    (void)backend;
    const struct mstream *ms = arg;
    CHECK(world_rank() != 0 || (ms->wrong == 0 && ms->sink_calls == ALLOC_N));
    return 0;
}

/* alloc_failures over a stream (MH_ECODEC: an item whose encode buffer
 * could not grow); a failing rank's first allocation, at least, matters,
 * whichever it is. Needs a MANYHANDS_FAULT_INJECTION build. */
static int test_stream_alloc_failures(const char *backend)
{
    struct mstream ms;
    const struct alloc_call c = {.what = "streams", .chunk = 0, .call = alloc_stream_call,
                                 .check = alloc_stream_check, .arg = &ms};
    int failures[2];
    CHECK_OK(alloc_failures(backend, &c, failures));
    CHECK(failures[0] >= 1 && failures[1] >= 1);
    return 0;
}
#endif /* MH_TEST_FAULTS */

/* ------------------------------------------------------------ death */

/* Kills its own process on the first item run on rank `victim` (a
 * negative victim: rank -victim calls exit(0) instead). */
static int fn_die_on(const void *in, void *out, void *ctx)
{
    int victim = *(const int *)ctx;
    if (world_rank() == victim)
        raise(SIGKILL);
    if (world_rank() == -victim)
        exit(0);
    *(int *)out = *(const int *)in;
    return 0;
}

/* Never passes by itself: the rank dies and the job must end (mpiexec
 * ends it; tests/mpi_rank_dies.sh checks how, and that it is quick). */
static int rank_dies(const char *backend, int victim)
{
    enum { N = 100000 };
    static int in[N], out[N];
    mh_pool *pool = mh_test_pool(backend, 0, 1, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_die_on, .ctx = &victim,
    };
    int rc = mh_map(pool, &task, NULL);
    fprintf(stderr, "rank %d: the map returned %s with a rank dead\n", world_rank(),
            mh_err_name(rc));
    mh_pool_close(pool);
    return 1;
}

static int test_worker_rank_dies(const char *backend)
{
    return rank_dies(backend, world_size() - 1);
}

static int test_root_rank_dies(const char *backend)
{
    return rank_dies(backend, 0);
}

static int test_worker_rank_exits(const char *backend)
{
    return rank_dies(backend, -(world_size() - 1));
}

/* Every test here is of the mpi backend alone. */
#undef MH_TEST
#define MH_TEST(name) MH_TEST_ON(name, "mpi")
static const struct mh_test tests[] = {
    MH_TEST(ranks)
    MH_TEST(caller_initialised)
    MH_TEST(gmp_factorial_million)
    MH_TEST(callback_error_off_root)
    MH_TEST(shape_mismatch)
    MH_TEST(empty_map_shape)
    MH_TEST(codec_fails_off_root)
    MH_TEST(alloc_failures)
    MH_TEST(stream_roles)
    MH_TEST(stream_big_items)
    MH_TEST(stream_same_code)
    MH_TEST(stream_shape_mismatch)
    MH_TEST(stream_alloc_failures)
    MH_TEST_DIES(worker_rank_dies, "exited on signal 9")
    MH_TEST_DIES(root_rank_dies, "exited on signal 9")
    MH_TEST_DIES(worker_rank_exits, "exiting improperly")
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc == 4)
        expected_ranks = atoi(argv[3]);
    if (argc < 2 || strcmp(argv[1], "caller_initialised") != 0)
        return mh_test_main(argc, argv, tests);

    /* MPI is the caller's: initialised before any pool, finalised after. */
    int level;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &level) != MPI_SUCCESS)
        return 1;
    int rc = mh_test_main(argc, argv, tests);
    int finalised = 1;
    MPI_Finalized(&finalised);
    if (finalised) {
        fprintf(stderr, "the library finalised the caller's MPI\n");
        return 1;
    }
    MPI_Finalize();
    return rc;
}
