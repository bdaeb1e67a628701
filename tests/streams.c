/*
 * Streams on every backend (conformance.<backend>.stream_*): each run is
 * compared with the same stream on seq — ordered: the same sequence, byte
 * for byte; as completed: every sequence number exactly once, each with
 * seq's output — and the source and sink see the promised bounds.
 *
 * On mpi every rank runs each test and calls the same streams; only rank
 * 0's source and sink are called, so only rank 0 checks what they saw.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef MH_TEST_GMP
#include <gmp.h>
#endif

#include "check.h"

#define BIG ((size_t)1 << 20) /* bytes of a large item */
#define ENDLESS SIZE_MAX

/* One stream's shape and misbehaviour. */
struct scase {
    size_t n;           /* items the source gives (ENDLESS: never ends) */
    size_t window;
    enum mh_order order;
    size_t item;        /* in and out bytes: 8, or BIG */
    size_t fail_at;     /* fn fails this item (SIZE_MAX: none) */
    size_t fail_every;  /* and, when non-zero, every item with seq % it == 3 */
    size_t source_error_at, sink_stop_at; /* SIZE_MAX: none */
    size_t slow_seq;    /* this item sleeps slow_ms */
    double slow_ms, trickle_ms; /* the source sleeps trickle_ms per item */
    bool lockstep;      /* the source needs every earlier item delivered */
    const struct mh_codec *codec; /* NULL, or mh_test_bytes_codec */
};

/* What the source and sink saw, on the calling thread. */
struct slog {
    const struct scase *sc;
    size_t pulled, delivered, next, max_in_flight, first_at, ok, failed;
    size_t last_seq;
    uint64_t *digest;   /* per seq (n known), or NULL */
    uint8_t *times;     /* deliveries per seq, or NULL */
    int bad;            /* first broken promise, by line */
};

#define SLOG_BAD(log, cond)                                                   \
    do {                                                                      \
        if ((cond) && !(log)->bad)                                            \
            (log)->bad = __LINE__;                                            \
    } while (0)

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static int stream_source(void *item, size_t seq, void *ctx)
{
    struct slog *log = ctx;
    const struct scase *sc = log->sc;
    SLOG_BAD(log, seq != log->pulled);
    SLOG_BAD(log, sc->window && log->pulled - log->delivered >= sc->window);
    SLOG_BAD(log, sc->lockstep && log->delivered != seq);
    if (seq == sc->source_error_at)
        return -7;
    if (seq >= sc->n)
        return MH_SOURCE_END;
    if (sc->trickle_ms > 0)
        mh_test_sleep_ms(sc->trickle_ms);
    uint64_t v = seq;
    if (sc->item == BIG)
        memset(item, (int)(seq & 0xff), BIG);
    memcpy(item, &v, sizeof v);
    log->pulled++;
    if (log->pulled - log->delivered > log->max_in_flight)
        log->max_in_flight = log->pulled - log->delivered;
    return MH_SOURCE_ITEM;
}

static int stream_fn(const void *in, void *out, void *ctx)
{
    const struct scase *sc = ((const struct slog *)ctx)->sc;
    uint64_t seq;
    memcpy(&seq, in, sizeof seq);
    if (seq == sc->slow_seq)
        mh_test_sleep_ms(sc->slow_ms);
    if (seq == sc->fail_at || (sc->fail_every && seq % sc->fail_every == 3))
        return 5;
    uint64_t r = mix(seq);
    if (sc->codec) {
        struct mh_test_bytes *b = out;
        b->len = seq % 97;
        b->p = mh_test_bytes_alloc(b->len);
        if (!b->p)
            return 6;
        memset(b->p, (int)(r & 0xff), b->len);
    } else if (sc->item == BIG) {
        const unsigned char *src = in;
        unsigned char *dst = out;
        for (size_t i = 0; i < BIG; i++)
            dst[i] = src[i] ^ 0x5a;
        memcpy(dst, &r, sizeof r);
    } else {
        memcpy(out, &r, sizeof r);
    }
    return 0;
}

/* A digest of an output, the same whatever backend made it. */
static uint64_t stream_digest(const struct scase *sc, const void *out)
{
    uint64_t d;
    if (sc->codec) {
        const struct mh_test_bytes *b = out;
        d = b->len;
        for (size_t i = 0; i < b->len; i++)
            d = d * 131 + (unsigned char)b->p[i];
        return d;
    }
    memcpy(&d, out, sizeof d);
    if (sc->item == BIG)
        d ^= mix(((const unsigned char *)out)[BIG - 1]);
    return d;
}

static int stream_sink(size_t seq, int status, void *out, void *ctx)
{
    struct slog *log = ctx;
    const struct scase *sc = log->sc;
    if (log->delivered++ == 0)
        log->first_at = log->pulled;
    SLOG_BAD(log, seq >= log->pulled);
    if (sc->order == MH_ORDERED)
        SLOG_BAD(log, seq != log->next);
    log->next = seq + 1;
    log->last_seq = seq;
    if (log->times) {
        SLOG_BAD(log, log->times[seq]++ != 0);
        log->digest[seq] = status == MH_ITEM_OK ? stream_digest(sc, out) : (uint64_t)status;
    }
    if (status == MH_ITEM_OK)
        log->ok++;
    else
        log->failed++;
    return seq == sc->sink_stop_at;
}

/* Run sc on backend into log (digest and times allocated when n is
 * known). The stream's code, or -1 when the pool would not open. */
static int stream_run(const char *backend, int workers, enum mh_on_error policy,
                      const struct scase *sc, struct slog *log, struct mh_report *report)
{
    *log = (struct slog){.sc = sc};
    if (sc->n != ENDLESS && sc->n > 0) {
        log->digest = calloc(sc->n, sizeof *log->digest);
        log->times = calloc(sc->n, 1);
        if (!log->digest || !log->times)
            return -1;
    }
    struct mh_stream_task task = {
        .in_size = sc->item, .out_size = sc->codec ? sizeof(struct mh_test_bytes) : sc->item,
        .fn = stream_fn, .ctx = log, .codec = sc->codec, .source = stream_source,
        .sink = stream_sink, .window = sc->window, .order = sc->order,
    };
    mh_pool *pool = mh_test_pool(backend, workers, 0, policy);
    int rc = pool ? mh_stream(pool, &task, report) : -1;
    mh_pool_close(pool);
    return rc;
}

static void slog_free(struct slog *log)
{
    free(log->digest);
    free(log->times);
}

/* Run sc on backend and on seq; both must return want, and agree. */
static int stream_check(const char *backend, enum mh_on_error policy, const struct scase *sc,
                        int want)
{
    struct slog got, oracle;
    struct mh_report report;
    int rc = stream_run(backend, 4, policy, sc, &got, &report);
    int rc_seq = stream_run("seq", 1, policy, sc, &oracle, NULL);
    int failed = 0;
    if (rc != want || rc_seq != want) {
        fprintf(stderr, "stream n=%zu window=%zu order=%d: %s, seq %s, want %s\n", sc->n,
                sc->window, sc->order, mh_err_name(rc), mh_err_name(rc_seq), mh_err_name(want));
        failed = 1;
    } else if (mh_test_holds_results(backend)) {
        if (got.bad || oracle.bad)
            fprintf(stderr, "stream n=%zu window=%zu order=%d: promise broken at line %d "
                    "(seq: %d)\n", sc->n, sc->window, sc->order, got.bad, oracle.bad);
        failed = got.bad || oracle.bad;
        if (got.times && (memcmp(got.times, oracle.times, sc->n) ||
                          memcmp(got.digest, oracle.digest, sc->n * sizeof *got.digest))) {
            fprintf(stderr, "stream n=%zu window=%zu order=%d: deliveries differ from seq\n",
                    sc->n, sc->window, sc->order);
            failed = 1;
        }
        if (report.items_done != got.ok) {
            fprintf(stderr, "report says %zu done, the sink saw %zu\n", report.items_done, got.ok);
            failed = 1;
        }
    }
    slog_free(&got);
    slog_free(&oracle);
    return failed;
}

static struct scase scase_plain(size_t n, size_t window, enum mh_order order)
{
    return (struct scase){
        .n = n, .window = window, .order = order, .item = 8, .fail_at = SIZE_MAX,
        .source_error_at = SIZE_MAX, .sink_stop_at = SIZE_MAX, .slow_seq = SIZE_MAX,
    };
}

static int test_stream_shapes(const char *backend)
{
    static const size_t ns[] = {0, 1, 3, 1000};
    for (int order = 0; order < 2; order++) {
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            const size_t windows[] = {1, 2, 0, ns[k] + 5};
            for (size_t w = 0; w < 4; w++) {
                struct scase sc = scase_plain(ns[k], windows[w], (enum mh_order)order);
                CHECK_OK(stream_check(backend, MH_STOP, &sc, MH_OK));
            }
        }
        struct scase big = scase_plain(1000000, 0, (enum mh_order)order);
        CHECK_OK(stream_check(backend, MH_STOP, &big, MH_OK));
    }
    return 0;
}

static int test_stream_big_items(const char *backend)
{
    for (size_t window = 0; window <= 3; window += 3) {
        struct scase sc = scase_plain(10, window, MH_ORDERED);
        sc.item = BIG;
        CHECK_OK(stream_check(backend, MH_STOP, &sc, MH_OK));
    }
    return 0;
}

static int test_stream_codec(const char *backend)
{
    long live = mh_test_bytes_live();
    for (int order = 0; order < 2; order++) {
        struct scase sc = scase_plain(3000, order ? 0 : 50, (enum mh_order)order);
        sc.codec = &mh_test_bytes_codec;
        CHECK_OK(stream_check(backend, MH_STOP, &sc, MH_OK));
        sc.fail_every = 10; /* failing items own nothing; the others are cleared */
        CHECK_OK(stream_check(backend, MH_CONTINUE, &sc, MH_ECALLBACK));
    }
    CHECK(mh_test_bytes_live() == live);
    return 0;
}

#ifdef MH_TEST_GMP
#include "kernels.h"

/* The seed's factorials through a stream, each checked in the sink. */
static int fac_source(void *item, size_t seq, void *ctx)
{
    (void)ctx;
    if (seq >= 600)
        return MH_SOURCE_END;
    *(int *)item = (int)(seq * 7 % 1000);
    return MH_SOURCE_ITEM;
}

static int fac_sink(size_t seq, int status, void *out, void *ctx)
{
    size_t *wrong = ctx;
    mpz_t want;
    mpz_init(want);
    mpz_fac_ui(want, (unsigned long)(seq * 7 % 1000));
    if (status != MH_ITEM_OK || mpz_cmp(want, *(mpz_t *)out) != 0)
        (*wrong)++;
    mpz_clear(want);
    return 0;
}

static int test_stream_factorials(const char *backend)
{
    size_t wrong = 0;
    struct mh_stream_task task = {
        .in_size = sizeof(int), .out_size = sizeof(mpz_t), .fn = mh_test_factorial,
        .ctx = &wrong, .codec = &mhk_mpz_codec, .source = fac_source, .sink = fac_sink,
    };
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    CHECK_RC(mh_stream(pool, &task, NULL), MH_OK);
    mh_pool_close(pool);
    CHECK(wrong == 0);
    return 0;
}
#endif

static int test_stream_stop_endless(const char *backend)
{
    for (int order = 0; order < 2; order++) {
        struct scase sc = scase_plain(ENDLESS, 0, (enum mh_order)order);
        sc.fail_at = 5000;
        struct slog log;
        struct mh_report report;
        CHECK_RC(stream_run(backend, 4, MH_STOP, &sc, &log, &report), MH_ECALLBACK);
        CHECK(report.failed_index == 5000 && report.failed_status == MH_ITEM_FAILED);
        if (mh_test_holds_results(backend)) {
            CHECK(!log.bad);
            /* Pulling stopped within a window of the failure. */
            CHECK(log.pulled <= 5001 + 4 * 4 * 1024);
            if (order == MH_ORDERED) /* everything before it, it, nothing after */
                CHECK(log.delivered == 5001 && log.last_seq == 5000 && log.failed == 1);
        }
        slog_free(&log);
    }
    return 0;
}

static int test_stream_continue(const char *backend)
{
    for (int order = 0; order < 2; order++) {
        struct scase sc = scase_plain(3000, 0, (enum mh_order)order);
        sc.fail_every = 7;
        CHECK_OK(stream_check(backend, MH_CONTINUE, &sc, MH_ECALLBACK));
        struct slog log;
        struct mh_report report;
        CHECK_RC(stream_run(backend, 4, MH_CONTINUE, &sc, &log, &report), MH_ECALLBACK);
        CHECK(report.failed_index == 3 && report.items_failed == 3000 / 7 + (3000 % 7 > 3));
        if (mh_test_holds_results(backend))
            CHECK(log.delivered == 3000 && log.failed == report.items_failed);
        slog_free(&log);
    }
    return 0;
}

static int test_stream_source_error(const char *backend)
{
    long live = mh_test_bytes_live();
    struct scase sc = scase_plain(ENDLESS, 0, MH_ORDERED);
    sc.source_error_at = 7777;
    sc.codec = &mh_test_bytes_codec;
    struct slog log;
    CHECK_RC(stream_run(backend, 4, MH_CONTINUE, &sc, &log, NULL), MH_ESOURCE);
    /* What was pulled before the error still runs and is delivered. */
    if (mh_test_holds_results(backend))
        CHECK(!log.bad && log.pulled == 7777 && log.delivered == 7777 && log.ok == 7777);
    slog_free(&log);
    CHECK(mh_test_bytes_live() == live);
    return 0;
}

static int test_stream_sink_stop(const char *backend)
{
    long live = mh_test_bytes_live();
    for (int order = 0; order < 2; order++) {
        struct scase sc = scase_plain(ENDLESS, 0, (enum mh_order)order);
        sc.sink_stop_at = 300;
        sc.codec = &mh_test_bytes_codec;
        struct slog log;
        CHECK_RC(stream_run(backend, 4, MH_STOP, &sc, &log, NULL), MH_ESINK);
        if (mh_test_holds_results(backend)) /* not called again after it said stop */
            CHECK(!log.bad && log.last_seq == 300);
        if (mh_test_holds_results(backend) && order == MH_ORDERED)
            CHECK(log.delivered == 301);
        slog_free(&log);
    }
    CHECK(mh_test_bytes_live() == live);
    return 0;
}

/* Ordered delivery holds at most window items even when item 0 is the
 * slowest of all: the source sees the bound (SLOG_BAD) and reaches it. */
static int test_stream_slow_first(const char *backend)
{
    struct scase sc = scase_plain(200, 8, MH_ORDERED);
    sc.slow_seq = 0;
    sc.slow_ms = 300;
    struct slog log;
    CHECK_RC(stream_run(backend, 4, MH_STOP, &sc, &log, NULL), MH_OK);
    if (mh_test_holds_results(backend))
        CHECK(!log.bad && log.delivered == 200 && log.max_in_flight == 8);
    slog_free(&log);
    return 0;
}

/* A source that trickles: the first results arrive long before it ends
 * (nothing waits for a full chunk or for the end of input). */
static int test_stream_first_delivery(const char *backend)
{
    for (int order = 0; order < 2; order++) {
        struct scase sc = scase_plain(40, 0, (enum mh_order)order);
        sc.trickle_ms = 5;
        struct slog log;
        CHECK_RC(stream_run(backend, 4, MH_STOP, &sc, &log, NULL), MH_OK);
        if (mh_test_holds_results(backend))
            CHECK(!log.bad && log.delivered == 40 && log.first_at <= 20);
        slog_free(&log);
    }
    /* A source that waits on the results it caused (a request-reply
     * peer) runs in lock step with window 1. */
    struct scase sc = scase_plain(300, 1, MH_ORDERED);
    sc.lockstep = true;
    struct slog log;
    CHECK_RC(stream_run(backend, 4, MH_STOP, &sc, &log, NULL), MH_OK);
    if (mh_test_holds_results(backend))
        CHECK(!log.bad && log.delivered == 300);
    slog_free(&log);
    return 0;
}

/* A stream called from inside fn runs inline. */
static mh_pool *nest_pool;

static int nest_source(void *item, size_t seq, void *ctx)
{
    (void)ctx;
    if (seq >= 3)
        return MH_SOURCE_END;
    *(int *)item = (int)seq + 1;
    return MH_SOURCE_ITEM;
}

static int nest_square(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(int *)out = *(const int *)in * *(const int *)in;
    return 0;
}

static int nest_sink(size_t seq, int status, void *out, void *ctx)
{
    (void)seq;
    *(int *)ctx += status == MH_ITEM_OK ? *(int *)out : -1000;
    return 0;
}

static int nest_fn(const void *in, void *out, void *ctx)
{
    (void)ctx;
    int sum = 0;
    struct mh_stream_task inner = {
        .in_size = sizeof(int), .out_size = sizeof(int), .fn = nest_square, .ctx = &sum,
        .source = nest_source, .sink = nest_sink,
    };
    int rc = mh_stream(nest_pool, &inner, NULL);
    *(int *)out = rc ? -1 : sum + *(const int *)in;
    return rc;
}

static int test_stream_nested(const char *backend)
{
    enum { N = 64 };
    int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    nest_pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(nest_pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = nest_fn,
    };
    CHECK_RC(mh_map(nest_pool, &task, NULL), MH_OK);
    mh_pool_close(nest_pool);
    if (mh_test_holds_results(backend))
        for (int i = 0; i < N; i++)
            CHECK(out[i] == 14 + i); /* 1 + 4 + 9 */
    return 0;
}

/* Streams from several threads on one pool are serialised, each right. */
struct many_arg {
    mh_pool *pool;
    int rc, bad;
};

static void *many_thread(void *arg)
{
    struct many_arg *a = arg;
    struct scase sc = scase_plain(20000, 0, MH_ORDERED);
    struct slog log = {.sc = &sc};
    struct mh_stream_task task = {
        .in_size = 8, .out_size = 8, .fn = stream_fn, .ctx = &log, .source = stream_source,
        .sink = stream_sink,
    };
    a->rc = mh_stream(a->pool, &task, NULL);
    a->bad = log.bad || log.delivered != 20000;
    return NULL;
}

static int test_stream_threads_share_pool(const char *backend)
{
    if (mh_test_ranks(backend) > 1 || strcmp(backend, "mpi") == 0)
        return MH_SKIP; /* collective calls from several threads would interleave */
    struct many_arg args[3];
    pthread_t threads[3];
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    for (int t = 0; t < 3; t++) {
        args[t] = (struct many_arg){.pool = pool, .rc = -1};
        CHECK(pthread_create(&threads[t], NULL, many_thread, &args[t]) == 0);
    }
    for (int t = 0; t < 3; t++)
        pthread_join(threads[t], NULL);
    mh_pool_close(pool);
    for (int t = 0; t < 3; t++)
        CHECK(args[t].rc == MH_OK && !args[t].bad);
    return 0;
}

static int test_stream_bad_args(const char *backend)
{
    struct scase sc = scase_plain(10, 0, MH_ORDERED);
    struct slog log = {.sc = &sc};
    const struct mh_codec half = {.size = mh_test_bytes_codec.size};
    struct mh_stream_task good = {
        .in_size = 8, .out_size = 8, .fn = stream_fn, .ctx = &log, .source = stream_source,
        .sink = stream_sink,
    };
    struct mh_report report;
    CHECK_RC(mh_stream(NULL, &good, &report), MH_EINVAL);
    CHECK(report.code == MH_EINVAL);
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    CHECK_RC(mh_stream(pool, NULL, NULL), MH_EINVAL);
    struct mh_stream_task bad[6];
    for (int k = 0; k < 6; k++)
        bad[k] = good;
    bad[0].source = NULL;
    bad[1].sink = NULL;
    bad[2].fn = NULL;
    bad[3].in_size = 0;
    bad[4].order = (enum mh_order)7;
    bad[5].codec = &half;
    for (int k = 0; k < 6; k++)
        CHECK_RC(mh_stream(pool, &bad[k], &report), MH_EINVAL);
    /* The pool still works, and nothing was pulled. */
    CHECK(log.pulled == 0);
    CHECK_RC(mh_stream(pool, &good, &report), MH_OK);
    mh_pool_close(pool);
    if (mh_test_holds_results(backend))
        CHECK(log.delivered == 10 && !log.bad);
    return 0;
}

static const struct mh_test tests[] = {
    MH_TEST(stream_shapes)
    MH_TEST(stream_big_items)
    MH_TEST(stream_codec)
#ifdef MH_TEST_GMP
    MH_TEST(stream_factorials)
#endif
    MH_TEST(stream_stop_endless)
    MH_TEST(stream_continue)
    MH_TEST(stream_source_error)
    MH_TEST(stream_sink_stop)
    MH_TEST(stream_slow_first)
    MH_TEST(stream_first_delivery)
    MH_TEST(stream_nested)
    MH_TEST(stream_threads_share_pool)
    MH_TEST(stream_bad_args)
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return mh_test_main(argc, argv, tests);
}
