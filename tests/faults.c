/*
 * Fault injection (curl's torture tests): for every entry of the syscall
 * table (src/fault.h) and N = 1, 2, ..., make the Nth call of one phase
 * fail — opening a pool, or the runs (a map, a reduce, a stream) — until
 * a run makes fewer than N such calls. Every injected failure must come back as the entry's code
 * (mh__fault_code: MH_ENOMEM for allocation and mmap, MH_EAGAIN for fork
 * and thread creation, ...) or be absorbed with a complete, correct
 * result; after each run no library allocation, user string, descriptor,
 * child or thread is left over. LSan (the ASan build) and valgrind check
 * the rest of the heap.
 *
 * Built only with MANYHANDS_FAULT_INJECTION=ON. One CTest entry per entry,
 * phase and backend (faults.<backend>.<call>_<phase>); a backend that
 * makes no call of an entry in a phase skips (77), so it shows as not
 * applicable, not passed. A call site moved onto the table is tested by
 * its entry's tests with no change here; a new entry needs its two
 * MH_TEST lines (the functions come from MH__SYSCALLS). Calls only
 * workers make (write, prctl) are failed in the workers; the signals also
 * during a map that must time an item out (signals_timeout). After each
 * run no library mapping is left either.
 */
#include <errno.h>
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
#include "fault.h"

/* Large enough that a failing N is never the last call by accident. */
#define FAULTS_MAX_N 100000
#define FAULTS_ITEMS 1000
#define FAULTS_WORKERS 4

enum faults_phase { FAULTS_OPEN, FAULTS_MAP };


/* ------------------------------------------------------ the user's side */

static size_t faults_str_len(int x)
{
    return 1 + (size_t)x % 37;
}

static int faults_fn_str(const void *in, void *out, void *ctx)
{
    (void)ctx;
    int x = *(const int *)in;
    struct mh_test_bytes *s = out;
    s->len = faults_str_len(x);
    s->p = mh_test_bytes_alloc(s->len);
    if (!s->p)
        return 1;
    for (size_t i = 0; i < s->len; i++)
        s->p[i] = (char)('a' + (x + (int)i) % 26);
    return 0;
}

static int faults_fn_double(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(long *)out = 2L * *(const int *)in;
    return 0;
}

static void faults_fold(void *acc, const void *value, void *ctx)
{
    (void)ctx;
    *(long *)acc += *(const long *)value;
}

static void faults_combine(void *acc, const void *other, void *ctx)
{
    (void)ctx;
    *(long *)acc += *(const long *)other;
}

/* ------------------------------------------------------------- a run */

struct faults_outcome {
    int rc[5];          /* open, codec map, reduce, stream, plain map (MH_OK
                         * when not reached) */
    int wrong;          /* a call returned MH_OK with a wrong result */
    unsigned long calls; /* calls of the armed kind in the armed phase */
};

/* A stream's source and sink: the same items and check as the map's. */
struct faults_stream {
    size_t got;
    int wrong;
};

static int faults_source(void *item, size_t seq, void *ctx)
{
    (void)ctx;
    if (seq >= FAULTS_ITEMS)
        return MH_SOURCE_END;
    *(int *)item = (int)seq;
    return MH_SOURCE_ITEM;
}

static int faults_sink(size_t seq, int status, void *out, void *ctx)
{
    struct faults_stream *fs = ctx;
    const struct mh_test_bytes *s = out;
    size_t len = faults_str_len((int)seq);
    if (status != MH_ITEM_OK || seq != fs->got++ || !s->p || s->len != len ||
        s->p[len - 1] != (char)('a' + ((int)seq + (int)len - 1) % 26))
        fs->wrong = 1;
    return 0;
}

/* The map phase: a codec map (the library allocates its own status array
 * for it), a reduce, a stream and a plain map. Results are checked
 * whenever a call succeeds. */
static void faults_map_phase(mh_pool *pool, const int *in, struct faults_outcome *o)
{
    static struct mh_test_bytes out[FAULTS_ITEMS];
    memset(out, 0, sizeof out);
    struct mh_task task = {
        .n = FAULTS_ITEMS, .in = in, .in_size = sizeof *in, .out = out,
        .out_size = sizeof *out, .fn = faults_fn_str, .codec = &mh_test_bytes_codec,
    };
    o->rc[1] = mh_map(pool, &task, NULL);
    if (o->rc[1] == MH_OK) {
        for (size_t i = 0; i < FAULTS_ITEMS; i++) {
            size_t len = faults_str_len(in[i]);
            if (!out[i].p || out[i].len != len ||
                out[i].p[len - 1] != (char)('a' + (in[i] + (int)len - 1) % 26))
                o->wrong = 1;
            mh_test_bytes_codec.clear(&out[i], NULL);
        }
    }

    struct mh_task sum = {
        .n = FAULTS_ITEMS, .in = in, .in_size = sizeof *in, .out_size = sizeof(long),
        .fn = faults_fn_double,
    };
    struct mh_reducer reducer = {
        .acc_size = sizeof(long), .fold = faults_fold, .combine = faults_combine,
    };
    long acc = 0;
    o->rc[2] = mh_reduce(pool, &sum, &reducer, &acc, NULL);
    if (o->rc[2] == MH_OK && acc != (long)FAULTS_ITEMS * (FAULTS_ITEMS - 1))
        o->wrong = 1;
    else if (o->rc[2] != MH_OK && acc != 0)
        o->wrong = 1; /* a failed reduce leaves acc unchanged */

    struct faults_stream fs = {0};
    struct mh_stream_task stream = {
        .in_size = sizeof(int), .out_size = sizeof(struct mh_test_bytes),
        .fn = faults_fn_str, .ctx = &fs, .codec = &mh_test_bytes_codec,
        .source = faults_source, .sink = faults_sink,
        .window = 100, /* chunks of a few items: every worker takes part */
    };
    o->rc[3] = mh_stream(pool, &stream, NULL);
    if (o->rc[3] == MH_OK && (fs.wrong || fs.got != FAULTS_ITEMS))
        o->wrong = 1;

    /* Plain bytes out, a whole page of them at least: fork keeps those
     * pages from its children (madvise). */
    _Alignas(4096) static long plain[FAULTS_ITEMS];
    memset(plain, 0, sizeof plain);
    struct mh_task map = {
        .n = FAULTS_ITEMS, .in = in, .in_size = sizeof *in, .out = plain,
        .out_size = sizeof *plain, .fn = faults_fn_double,
    };
    o->rc[4] = mh_map(pool, &map, NULL);
    for (size_t i = 0; o->rc[4] == MH_OK && i < FAULTS_ITEMS; i++)
        o->wrong |= plain[i] != 2L * in[i];
}

/* Calls only worker processes make: armed for them, not for the caller. */
static bool faults_in_children(int kind)
{
    return kind == MH__FAULT_WRITE || kind == MH__FAULT_PRCTL ||
           kind == MH__FAULT_SETRLIMIT;
}

/* Open, map, close on backend with kind armed at nth during phase. */
static void faults_run(const char *backend, int kind, enum faults_phase phase,
                       unsigned long nth, struct faults_outcome *o)
{
    static int in[FAULTS_ITEMS];
    for (int i = 0; i < FAULTS_ITEMS; i++)
        in[i] = i;
    memset(o, 0, sizeof *o);
    struct mh_config config = {.backend = backend, .workers = FAULTS_WORKERS};
    /* fork's children set their memory cap only when there is one:
     * SIZE_MAX makes the call without limiting anything. */
    if (kind == MH__FAULT_SETRLIMIT && strcmp(backend, "fork") == 0)
        config.worker_memory_max = SIZE_MAX;
    mh_pool *pool = NULL;
    void (*arm)(int, unsigned long) =
        faults_in_children(kind) ? mh__fault_arm_children : mh__fault_arm;

    if (phase == FAULTS_OPEN)
        arm(kind, nth);
    o->rc[0] = mh_pool_open(&pool, &config);
    if (phase == FAULTS_OPEN) {
        o->calls = mh__fault_calls(kind);
        mh__fault_arm(kind, 0);
    }
    if (o->rc[0] != MH_OK) {
        if (pool)
            o->wrong = 1; /* a failed open must leave *pool NULL */
        return;
    }
    if (phase == FAULTS_MAP)
        arm(kind, nth);
    faults_map_phase(pool, in, o);
    if (phase == FAULTS_MAP) {
        o->calls = mh__fault_calls(kind);
        mh__fault_arm(kind, 0);
    }
    mh_pool_close(pool);
}

/* Nothing left behind, whatever failed: no child, library allocation or
 * mapping, user string, descriptor or thread beyond what was there. */
static int faults_nothing_left(long live, long maps, int fds, int threads)
{
    CHECK(mh_test_no_child());
    CHECK(mh__fault_live_allocs() == live);
    CHECK(mh__fault_live_maps() == maps);
    CHECK(mh_test_bytes_live() == 0);
    CHECK(mh_test_count_fds() == fds);
    CHECK(mh_test_threads_settle(threads) == threads);
    return 0;
}

static int faults_torture(const char *backend, int kind, enum faults_phase phase)
{
    const int want = mh__fault_code(kind);
    const char *phase_name = phase == FAULTS_OPEN ? "open" : "map";
    long live = mh__fault_live_allocs(), maps = mh__fault_live_maps();
    int fds = mh_test_count_fds(), threads = mh_test_count_threads();
    unsigned long injected = 0, absorbed = 0, n;

    for (n = 1; n <= FAULTS_MAX_N; n++) {
        struct faults_outcome o;
        faults_run(backend, kind, phase, n, &o);
        /* A worker's fault is never absorbed: it hit when a call failed. */
        bool hit = o.calls >= n;
        int errors = 0;
        for (int i = 0; i < 5; i++) {
            if (o.rc[i] == MH_OK)
                continue;
            errors++;
            hit |= faults_in_children(kind);
            if (!hit || o.rc[i] != want) {
                fprintf(stderr, "%s %s %s N=%lu: call %d returned %s, want %s%s\n",
                        mh__fault_name(kind), phase_name, backend, n, i,
                        mh_err_name(o.rc[i]), hit ? mh_err_name(want) : "MH_OK",
                        hit ? "" : " (no fault was injected)");
                return 1;
            }
        }
        if (o.wrong) {
            fprintf(stderr, "%s %s %s N=%lu: wrong result or state after the fault\n",
                    mh__fault_name(kind), phase_name, backend, n);
            return 1;
        }
        CHECK_OK(faults_nothing_left(live, maps, fds, threads));
        if (!hit)
            break;
        injected++;
        absorbed += errors == 0;
    }
    CHECK(n <= FAULTS_MAX_N);
    if (injected == 0) {
        fprintf(stderr, "%s makes no %s call in %s: skipped\n", backend,
                mh__fault_name(kind), phase_name);
        return MH_SKIP;
    }
    fprintf(stderr, "faults: injected %lu (%s, %s, %s), %lu absorbed with a correct result\n",
            injected, mh__fault_name(kind), phase_name, backend, absorbed);
    return 0;
}

/* test_<call>_open and test_<call>_map for every entry of the table. */
#define FAULTS_TESTS_(kind, name, err)                                        \
    static int test_##name##_open(const char *backend)                        \
    {                                                                         \
        return faults_torture(backend, MH__FAULT_##kind, FAULTS_OPEN);        \
    }                                                                         \
    static int test_##name##_map(const char *backend)                         \
    {                                                                         \
        return faults_torture(backend, MH__FAULT_##kind, FAULTS_MAP);         \
    }
MH__SYSCALLS(FAULTS_TESTS_)
#undef FAULTS_TESTS_

/* Item 3 hangs until its worker is killed for it: SIGTERM ignored, so
 * that SIGKILL after the grace does it. */
static int faults_fn_hang(const void *in, void *out, void *ctx)
{
    if (*(const int *)in == 3) {
        signal(SIGTERM, SIG_IGN);
        for (;;)
            pause();
    }
    return faults_fn_double(in, out, ctx);
}

/* One map whose item 3 runs past a 50 ms timeout: it must come back
 * MH_ETIMEDOUT with item 3 timed out and every other result right, or
 * with want when that is another code. */
static int faults_timeout_map(mh_pool *pool, int want)
{
    enum { N = 40 };
    static int in[N];
    static long out[N];
    uint8_t status[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    memset(out, 0, sizeof out);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = faults_fn_hang, .status = status,
    };
    CHECK_RC(mh_map(pool, &task, NULL), want);
    for (int i = 0; want == MH_ETIMEDOUT && i < N; i++) {
        CHECK(status[i] == (i == 3 ? MH_ITEM_TIMED_OUT : MH_ITEM_OK));
        CHECK(i == 3 || out[i] == 2L * i);
    }
    return 0;
}

/* The signals of a timeout (SIGTERM, then SIGKILL after the grace) with
 * the Nth pidfd_send_signal failing: a signal the pidfd cannot carry is
 * sent again through the pid, which stays the child's until it is reaped,
 * so each fault is absorbed (without that, a failed SIGKILL leaves a
 * child no deadline will end: the watchdog). With the kill after it
 * failing too (both), the map ends with MH_ESYS, every child reaped. */
static int faults_signals(const char *backend, bool both)
{
    const int kind = MH__FAULT_PIDFD_SEND_SIGNAL;
    struct mh_config config = {
        .backend = backend, .workers = 2, .chunk = 4, .timeout_s = 0.05,
        .on_error = MH_CONTINUE,
    };
    mh_pool *pool = NULL;
    int rc = mh_pool_open(&pool, &config);
    if (rc == MH_ENOTSUP) {
        fprintf(stderr, "%s has no timeout, so sends no signal: skipped\n", backend);
        return MH_SKIP;
    }
    CHECK_RC(rc, MH_OK);
    CHECK_OK(faults_timeout_map(pool, MH_ETIMEDOUT)); /* unarmed */
    long live = mh__fault_live_allocs(), maps = mh__fault_live_maps();
    int fds = mh_test_count_fds(), threads = mh_test_count_threads();
    unsigned long n, calls;
    for (n = 1; n <= FAULTS_MAX_N; n++) {
        mh__fault_arm(kind, n);
        mh__fault_arm(MH__FAULT_KILL, both);
        int bad = faults_timeout_map(pool, both ? MH_ESYS : MH_ETIMEDOUT);
        calls = mh__fault_calls(kind);
        mh__fault_arm(kind, 0);
        mh__fault_arm(MH__FAULT_KILL, 0);
        if (both && calls < n)
            bad = 0; /* no signal failed: the map timed out as it should */
        CHECK_OK(bad);
        CHECK_OK(faults_nothing_left(live, maps, fds, threads));
        if (calls < n)
            break;
    }
    mh_pool_close(pool);
    CHECK(n > 1); /* at least one signal failed */
    fprintf(stderr, "faults: %lu signals failed in turn (%s), %s\n", n - 1, backend,
            both ? "and the kill after each: MH_ESYS" : "each absorbed");
    return 0;
}

static int test_signals_timeout(const char *backend)
{
    int rc = faults_signals(backend, false);
    return rc ? rc : faults_signals(backend, true);
}

/* Start counting every kind from 0, none armed. */
static void faults_reset_counts(void)
{
    for (int k = 0; k < MH__FAULT_KINDS; k++)
        mh__fault_arm(k, 0);
}

static int faults_expect_no_calls(const char *what)
{
    int bad = 0;
    for (int k = 0; k < MH__FAULT_KINDS; k++)
        if (mh__fault_calls(k)) {
            fprintf(stderr, "%s made %lu %s calls, want none\n", what, mh__fault_calls(k),
                    mh__fault_name(k));
            bad = 1;
        }
    return bad;
}

/*
 * What must start nothing (checklist 1, 4, 7, 26): a map of n = 0, a map
 * whose sizes overflow, a map with no function; a map of one chunk forks
 * at most one worker; and when the shared mapping fails, nothing was
 * forked before it.
 */
static int test_starts_nothing(const char *backend)
{
    static int in[100];
    static long out[100];
    mh_pool *pool = mh_test_pool(backend, FAULTS_WORKERS, 0, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = 0, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = faults_fn_double,
    };
    faults_reset_counts();
    CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
    CHECK_OK(faults_expect_no_calls("a map of n = 0"));

    task.n = SIZE_MAX / 2;
    faults_reset_counts();
    CHECK_RC(mh_map(pool, &task, NULL), MH_EOVERFLOW);
    CHECK_OK(faults_expect_no_calls("a map whose n * size overflows"));

    task.n = 100;
    task.fn = NULL;
    faults_reset_counts();
    CHECK_RC(mh_map(pool, &task, NULL), MH_EINVAL);
    CHECK_OK(faults_expect_no_calls("a map without a function"));
    mh_pool_close(pool);

    /* One chunk (chunk > n), four workers: no idle worker is started. */
    pool = mh_test_pool(backend, FAULTS_WORKERS, 1000, MH_STOP);
    CHECK(pool);
    task.fn = faults_fn_double;
    faults_reset_counts();
    CHECK_RC(mh_map(pool, &task, NULL), MH_OK);
    CHECK(mh__fault_calls(MH__FAULT_FORK) <= 1);
    for (int i = 0; i < 100; i++)
        CHECK(out[i] == 2L * in[i]);

    /* The first mmap of the map fails: MH_ENOMEM, and no fork before it. */
    faults_reset_counts();
    mh__fault_arm(MH__FAULT_MMAP, 1);
    int rc = mh_map(pool, &task, NULL);
    unsigned long mmaps = mh__fault_calls(MH__FAULT_MMAP);
    unsigned long forks = mh__fault_calls(MH__FAULT_FORK);
    mh__fault_arm(MH__FAULT_MMAP, 0);
    if (mmaps > 0) {
        CHECK_RC(rc, MH_ENOMEM);
        CHECK(forks == 0);
    } else {
        CHECK_RC(rc, MH_OK);
    }
    mh_pool_close(pool);
    fprintf(stderr, "starts_nothing %s: the map's mmap %s\n", backend,
            mmaps ? "failed first, nothing forked" : "is not used by this backend");
    return 0;
}

static const struct mh_test tests[] = {
    /* <call>_open and <call>_map for every entry of the table. */
#define FAULTS_ENTRIES_(kind, name, err) MH_TEST(name##_open) MH_TEST(name##_map)
    MH__SYSCALLS(FAULTS_ENTRIES_)
#undef FAULTS_ENTRIES_
    MH_TEST(starts_nothing)
    MH_TEST(signals_timeout)
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return mh_test_main(argc, argv, tests);
}
