/*
 * Per-worker hooks and fork's worker limits. Every backend: init and fini
 * run exactly once per worker, when docs/backends.md says (per pool:
 * seq, threads, mpi; per map: openmp, fork), callbacks see their
 * worker's index and state and -1 / NULL outside a run; an init that
 * fails at worker k fails the open or the map with MH_EINIT before any
 * item, after fini ran for the workers before it; fini without init.
 * fork: a runaway allocation under worker_memory_max fails its item
 * alone; worker_items_max replaces children (results as seq's, blame
 * exact). Other backends refuse both with MH_ENOTSUP.
 *
 * Counters live in a MAP_SHARED page, so that hooks run in fork's
 * children are counted too. The runner holds the invariants (watchdog;
 * no child, descriptor or thread left).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"

#if defined(__SANITIZE_ADDRESS__)
#define HOOKS_ASAN 1 /* ASan reserves terabytes: RLIMIT_AS is unusable */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOOKS_ASAN 1
#endif
#endif

#define HOOKS_MAX 64  /* worker indexes tracked */
#define HOOKS_PIDS 4096

/* What the hooks and callbacks saw, shared with fork's children. */
struct hooks_seen {
    atomic_int inits[HOOKS_MAX], finis[HOOKS_MAX]; /* per worker index */
    atomic_int fini_state_bad; /* fini got a state its init did not store */
    atomic_int item_bad;       /* a callback saw a wrong index or state */
    atomic_int calls;          /* callbacks run */
    int fail_at;               /* init of this worker fails; -1: none */
    int workers;               /* indexes must be below this */
    bool with_init;            /* fini expects a token (else NULL) */
    char tokens[HOOKS_MAX];    /* worker w's state: &tokens[w] */
    pid_t pids[HOOKS_PIDS];    /* the process that ran item i */
    size_t stream_n, pulled, delivered; /* a stream's, on the calling thread */
    int stream_bad;
};

static struct hooks_seen *seen_open(int workers, int fail_at)
{
    struct hooks_seen *seen = mmap(NULL, sizeof *seen, PROT_READ | PROT_WRITE,
                                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (seen == MAP_FAILED)
        return NULL;
    memset(seen, 0, sizeof *seen);
    seen->fail_at = fail_at;
    seen->workers = workers;
    seen->with_init = true;
    return seen;
}

static int hook_init(int worker, void **state, void *ctx)
{
    struct hooks_seen *seen = ctx;
    if (worker < 0 || worker >= HOOKS_MAX)
        return 1;
    atomic_fetch_add(&seen->inits[worker], 1);
    if (worker == seen->fail_at)
        return 1;
    *state = &seen->tokens[worker];
    return 0;
}

static void hook_fini(int worker, void *state, void *ctx)
{
    struct hooks_seen *seen = ctx;
    if (worker < 0 || worker >= HOOKS_MAX)
        return;
    atomic_fetch_add(&seen->finis[worker], 1);
    void *want = seen->with_init ? &seen->tokens[worker] : NULL;
    if (state != want)
        atomic_store(&seen->fini_state_bad, 1);
}

/* out = in * 3 + 1; checks the worker binding; notes the process. */
static int fn_item(const void *in, void *out, void *ctx)
{
    struct hooks_seen *seen = ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    int w = mh_worker_index();
    void *want = w >= 0 && w < HOOKS_MAX && seen->with_init ? &seen->tokens[w] : NULL;
    if (w < 0 || w >= seen->workers || mh_worker_state() != want)
        atomic_store(&seen->item_bad, 1);
    if (x < HOOKS_PIDS)
        seen->pids[x] = getpid();
    atomic_fetch_add(&seen->calls, 1);
    x = x * 3 + 1;
    memcpy(out, &x, sizeof x);
    return 0;
}

static mh_pool *hooks_pool(const char *backend, int workers, struct hooks_seen *seen,
                           int *rc)
{
    struct mh_config config = {
        .backend = backend, .workers = workers, .chunk = 4,
        .init = hook_init, .fini = hook_fini, .hook_ctx = seen,
    };
    mh_pool *pool = NULL;
    *rc = mh_pool_open(&pool, &config);
    return pool;
}

/* task's n items (in[i] = i, uint64_t; in set here, the rest the
 * caller's) on a fresh pool with config: it opens, and the map returns
 * want. */
static int hooks_map_once(const struct mh_config *config, struct mh_task *task, uint64_t *in,
                          struct mh_report *report, int want)
{
    for (uint64_t i = 0; i < task->n; i++)
        in[i] = i;
    task->in = in;
    task->in_size = sizeof *in;
    mh_pool *pool;
    CHECK_RC(mh_pool_open(&pool, config), MH_OK);
    int rc = mh_map(pool, task, report);
    mh_pool_close(pool);
    CHECK_RC(rc, want);
    return 0;
}

/* Hooks run per pool on these, per map on the others. */
static bool per_pool(const char *backend)
{
    return !strcmp(backend, "seq") || !strcmp(backend, "threads") || !strcmp(backend, "mpi");
}

/* The workers whose hooks run in this process for a pool of `workers`:
 * seq has one, an mpi rank is one (its index is its rank). */
static void local_workers(const char *backend, mh_pool *pool, int workers, int *first,
                          int *count)
{
    *first = 0;
    *count = workers;
    if (!strcmp(backend, "seq"))
        *count = 1;
    if (!strcmp(backend, "mpi")) {
        *first = mh_pool_rank(pool);
        *count = 1;
    }
}

/* Every worker index has run init `inits` and fini `finis` times in
 * [first, first + count), none outside. */
static int check_counts(const struct hooks_seen *seen, int first, int count, int inits,
                        int finis)
{
    for (int w = 0; w < HOOKS_MAX; w++) {
        bool mine = w >= first && w < first + count;
        int i = atomic_load(&seen->inits[w]), f = atomic_load(&seen->finis[w]);
        if (i != (mine ? inits : 0) || f != (mine ? finis : 0)) {
            fprintf(stderr, "worker %d: init ran %d, fini %d times; want %d, %d\n", w, i,
                    f, mine ? inits : 0, mine ? finis : 0);
            return 1;
        }
    }
    return 0;
}

static void seen_reset(struct hooks_seen *seen)
{
    for (int w = 0; w < HOOKS_MAX; w++) {
        atomic_store(&seen->inits[w], 0);
        atomic_store(&seen->finis[w], 0);
    }
}

/* ------------------------------------------------------ every backend */

#define N_ITEMS 200

static int test_init_fini_once_per_worker(const char *backend)
{
    int workers = mh_test_workers(backend, 3);
    struct hooks_seen *seen = seen_open(workers, -1);
    CHECK(seen);
    uint64_t in[N_ITEMS], out[N_ITEMS];
    for (uint64_t i = 0; i < N_ITEMS; i++)
        in[i] = i;
    CHECK(mh_worker_index() == -1 && mh_worker_state() == NULL);
    int rc;
    mh_pool *pool = hooks_pool(backend, 3, seen, &rc);
    CHECK_RC(rc, MH_OK);
    int first, count;
    local_workers(backend, pool, workers, &first, &count);
    bool pooled = per_pool(backend);
    CHECK_OK(check_counts(seen, first, count, pooled ? 1 : 0, 0));

    struct mh_task task = {
        .n = N_ITEMS, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_item, .ctx = seen,
    };
    for (int map = 1; map <= 2; map++) {
        struct mh_report report;
        if (!pooled)
            seen_reset(seen);
        CHECK_RC(mh_map(pool, &task, &report), MH_OK);
        CHECK(mh_worker_index() == -1 && mh_worker_state() == NULL);
        CHECK(atomic_load(&seen->item_bad) == 0);
        if (mh_test_holds_results(backend))
            for (size_t i = 0; i < N_ITEMS; i++)
                CHECK(out[i] == in[i] * 3 + 1);
        if (pooled)
            CHECK_OK(check_counts(seen, first, count, 1, 0));
        else if (!strcmp(backend, "fork"))
            CHECK_OK(check_counts(seen, 0, report.workers, 1, 1));
        else /* openmp: the team the runtime gave, each thread once */
            for (int w = 0; w < HOOKS_MAX; w++) {
                int i = atomic_load(&seen->inits[w]);
                CHECK(i == atomic_load(&seen->finis[w]) && i <= 1);
                CHECK(i == 0 || w < report.workers);
                CHECK(w != 0 || i == 1);
            }
    }
    mh_pool_close(pool);
    if (pooled)
        CHECK_OK(check_counts(seen, first, count, 1, 1));
    CHECK(atomic_load(&seen->fini_state_bad) == 0);
    munmap(seen, sizeof *seen);
    return 0;
}

/* The worker whose init fails: the second (seq has one; on mpi the last
 * rank, so that rank 0 sees another's failure). */
static int fail_index(const char *backend)
{
    if (!strcmp(backend, "seq"))
        return 0;
    if (!strcmp(backend, "mpi"))
        return mh_test_ranks(backend) - 1;
    return 1;
}

static int test_init_fails_at_worker_k(const char *backend)
{
    int workers = mh_test_workers(backend, 3), k = fail_index(backend);
    struct hooks_seen *seen = seen_open(workers, k);
    CHECK(seen);
    uint64_t in[N_ITEMS], out[N_ITEMS];
    uint8_t status[N_ITEMS];
    for (uint64_t i = 0; i < N_ITEMS; i++)
        in[i] = i;
    int rc;
    mh_pool *pool = hooks_pool(backend, 3, seen, &rc);
    if (per_pool(backend)) {
        CHECK_RC(rc, MH_EINIT);
        CHECK(pool == NULL);
    } else {
        CHECK_RC(rc, MH_OK);
        struct mh_task task = {
            .n = N_ITEMS, .in = in, .in_size = sizeof *in, .out = out,
            .out_size = sizeof *out, .fn = fn_item, .ctx = seen, .status = status,
        };
        for (int map = 0; map < 2; map++) {
            struct mh_report report;
            CHECK_RC(mh_map(pool, &task, &report), MH_EINIT);
            CHECK(report.code == MH_EINIT && report.items_done == 0);
            for (size_t i = 0; i < N_ITEMS; i++)
                CHECK(status[i] == MH_ITEM_NOT_RUN);
        }
        mh_pool_close(pool);
    }
    CHECK(atomic_load(&seen->calls) == 0); /* no item ran */
    /* fini ran exactly for the workers whose init succeeded. */
    for (int w = 0; w < HOOKS_MAX; w++) {
        int i = atomic_load(&seen->inits[w]), f = atomic_load(&seen->finis[w]);
        CHECK(f == (w == k ? 0 : i));
        if (!strcmp(backend, "seq") || !strcmp(backend, "threads"))
            CHECK(i == (w <= k)); /* in index order, none after k */
    }
    CHECK(!strcmp(backend, "mpi") || atomic_load(&seen->inits[k]) >= 1);
    CHECK(atomic_load(&seen->fini_state_bad) == 0);
    munmap(seen, sizeof *seen);
    return 0;
}

static int test_fini_without_init(const char *backend)
{
    int workers = mh_test_workers(backend, 2);
    struct hooks_seen *seen = seen_open(workers, -1);
    CHECK(seen);
    seen->with_init = false;
    uint64_t in[N_ITEMS], out[N_ITEMS];
    struct mh_config config = {
        .backend = backend, .workers = 2, .chunk = 4, .fini = hook_fini, .hook_ctx = seen,
    };
    struct mh_task task = {
        .n = N_ITEMS, .out = out, .out_size = sizeof *out,
        .fn = fn_item, .ctx = seen,
    };
    CHECK_OK(hooks_map_once(&config, &task, in, NULL, MH_OK));
    int finis = 0;
    for (int w = 0; w < HOOKS_MAX; w++)
        finis += atomic_load(&seen->finis[w]);
    CHECK(finis >= 1);
    CHECK(atomic_load(&seen->fini_state_bad) == 0 && atomic_load(&seen->item_bad) == 0);
    munmap(seen, sizeof *seen);
    return 0;
}

/* A stream's source and sink over stream_n items, checking fn_item's. */
static int hooks_source(void *item, size_t seq, void *ctx)
{
    struct hooks_seen *seen = ctx;
    if (seq >= seen->stream_n)
        return MH_SOURCE_END;
    uint64_t x = seq;
    memcpy(item, &x, sizeof x);
    seen->pulled++;
    return MH_SOURCE_ITEM;
}

static int hooks_sink(size_t seq, int status, void *out, void *ctx)
{
    struct hooks_seen *seen = ctx;
    uint64_t y;
    memcpy(&y, out, sizeof y);
    if (status != MH_ITEM_OK || y != seq * 3 + 1 || seq != seen->delivered)
        seen->stream_bad = 1;
    seen->delivered++;
    return 0;
}

/* Streams run where maps do: per pool, or per stream (openmp, fork). A
 * backend without streams yet (MH_ENOTSUP) skips. */
static int test_stream_hooks(const char *backend)
{
    int workers = mh_test_workers(backend, 3);
    struct hooks_seen *seen = seen_open(workers, -1);
    CHECK(seen);
    seen->stream_n = 500;
    int rc;
    mh_pool *pool = hooks_pool(backend, 3, seen, &rc);
    CHECK_RC(rc, MH_OK);
    int first, count;
    local_workers(backend, pool, workers, &first, &count);
    struct mh_stream_task st = {
        .in_size = sizeof(uint64_t), .out_size = sizeof(uint64_t), .fn = fn_item,
        .ctx = seen, .source = hooks_source, .sink = hooks_sink,
    };
    struct mh_report report;
    rc = mh_stream(pool, &st, &report);
    CHECK_RC(rc, MH_OK);
    CHECK(mh_worker_index() == -1);
    CHECK(atomic_load(&seen->item_bad) == 0);
    if (mh_test_holds_results(backend))
        CHECK(seen->stream_bad == 0 && seen->delivered == seen->stream_n);
    if (per_pool(backend))
        CHECK_OK(check_counts(seen, first, count, 1, 0));
    else if (!strcmp(backend, "fork"))
        CHECK_OK(check_counts(seen, 0, report.workers, 1, 1));
    else
        for (int w = 0; w < HOOKS_MAX; w++) {
            int i = atomic_load(&seen->inits[w]);
            CHECK(i == atomic_load(&seen->finis[w]) && i <= 1);
            CHECK(w != 0 || i == 1);
        }
    mh_pool_close(pool);
    if (per_pool(backend))
        CHECK_OK(check_counts(seen, first, count, 1, 1));

    /* An init that fails: the stream (per-stream backends) or the open
     * fails with MH_EINIT and the source is never called. */
    seen_reset(seen);
    seen->fail_at = fail_index(backend);
    seen->pulled = 0;
    pool = hooks_pool(backend, 3, seen, &rc);
    if (per_pool(backend)) {
        CHECK_RC(rc, MH_EINIT);
    } else {
        CHECK_RC(rc, MH_OK);
        CHECK_RC(mh_stream(pool, &st, NULL), MH_EINIT);
        mh_pool_close(pool);
    }
    CHECK(seen->pulled == 0 && atomic_load(&seen->fini_state_bad) == 0);
    munmap(seen, sizeof *seen);
    return 0;
}

/* ------------------------------------------------------------- threads */

struct caller_check {
    struct hooks_seen *seen;
    pthread_t caller;
    atomic_int bad;
};

/* The calling thread is the last worker; helpers are the others. */
static int fn_caller_index(const void *in, void *out, void *vctx)
{
    struct caller_check *cc = vctx;
    int w = mh_worker_index(), last = cc->seen->workers - 1;
    bool caller = pthread_equal(pthread_self(), cc->caller);
    if ((caller && w != last) || (!caller && (w < 0 || w >= last)) ||
        mh_worker_state() != &cc->seen->tokens[w < 0 ? 0 : w])
        atomic_store(&cc->bad, 1);
    memcpy(out, in, sizeof(uint64_t));
    return 0;
}

struct caller_run {
    mh_pool *pool;
    struct caller_check *cc;
    int rc;
    int index_after;
};

static void *caller_thread(void *arg)
{
    struct caller_run *r = arg;
    uint64_t in[N_ITEMS], out[N_ITEMS];
    memset(in, 1, sizeof in);
    r->cc->caller = pthread_self();
    struct mh_task task = {
        .n = N_ITEMS, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_caller_index, .ctx = r->cc,
    };
    r->rc = mh_map(r->pool, &task, NULL);
    r->index_after = mh_worker_index();
    return NULL;
}

static int test_any_caller_is_last_worker(const char *backend)
{
    struct hooks_seen *seen = seen_open(3, -1);
    CHECK(seen);
    int rc;
    mh_pool *pool = hooks_pool(backend, 3, seen, &rc);
    CHECK_RC(rc, MH_OK);
    struct caller_check cc = {.seen = seen};
    struct caller_run run = {.pool = pool, .cc = &cc};
    caller_thread(&run); /* this thread */
    CHECK_RC(run.rc, MH_OK);
    CHECK(run.index_after == -1);
    pthread_t other;
    CHECK(pthread_create(&other, NULL, caller_thread, &run) == 0);
    pthread_join(other, NULL);
    CHECK_RC(run.rc, MH_OK);
    CHECK(run.index_after == -1);
    CHECK(atomic_load(&cc.bad) == 0);
    mh_pool_close(pool);
    CHECK_OK(check_counts(seen, 0, 3, 1, 1));
    munmap(seen, sizeof *seen);
    return 0;
}

/* ---------------------------------------------------------------- fork */

/* Items run every way but one: item RUNAWAY asks for more memory than
 * the cap allows, and on failure returns an error (mode 0) or aborts, as
 * GMP's allocator does (mode 1). */
#define RUNAWAY 17
struct runaway {
    size_t huge;
    int abort_on_fail;
};

static int fn_runaway(const void *in, void *out, void *vctx)
{
    const struct runaway *r = vctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    size_t want = x == RUNAWAY ? r->huge : (size_t)1 << 20;
    char *p = malloc(want);
    if (!p && r->abort_on_fail)
        abort();
    if (!p)
        return 12;
    p[0] = (char)x;
    p[want - 1] = (char)x;
    x = x * 3 + (uint64_t)(unsigned char)p[0];
    free(p);
    memcpy(out, &x, sizeof x);
    return 0;
}

#ifndef HOOKS_ASAN
/* This process's address-space size in bytes (VmSize), or 0. */
static size_t vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %lu kB", &kib) == 1)
            break;
    fclose(f);
    return (size_t)kib * 1024;
}

static int check_runaway(int abort_on_fail)
{
    size_t base = vm_size();
    CHECK(base > 0);
    size_t cap = base + ((size_t)512 << 20);
    struct runaway r = {.huge = 2 * cap, .abort_on_fail = abort_on_fail};
    enum { N = 64 };
    uint64_t in[N], out[N];
    uint8_t status[N];
    struct mh_config config = {
        .backend = "fork", .workers = 3, .chunk = 2, .on_error = MH_CONTINUE,
        .worker_memory_max = cap,
    };
    struct mh_task task = {
        .n = N, .out = out, .out_size = sizeof *out,
        .fn = fn_runaway, .ctx = &r, .status = status,
    };
    struct mh_report report;
    int want = abort_on_fail ? MH_EWORKER : MH_ECALLBACK;
    CHECK_OK(hooks_map_once(&config, &task, in, &report, want));
    CHECK(report.failed_index == RUNAWAY && report.items_failed == 1);
    CHECK(report.items_done == N - 1);
    CHECK(report.memory_capped == 1);
    CHECK(report.failed_status == (abort_on_fail ? MH_ITEM_CRASHED : MH_ITEM_FAILED));
    if (abort_on_fail)
        CHECK(report.worker_signal == SIGABRT);
    else
        CHECK(report.callback_code == 12);
    for (uint64_t i = 0; i < N; i++) {
        if (i == RUNAWAY)
            continue;
        CHECK(status[i] == MH_ITEM_OK && out[i] == i * 3 + (i & 0xff));
    }
    return 0;
}

#endif /* HOOKS_ASAN */

static int test_memory_cap_runaway_fails_alone(const char *backend)
{
    (void)backend;
#ifdef HOOKS_ASAN
    fprintf(stderr, "memory cap: not under ASan (its shadow reserves terabytes)\n");
    return MH_SKIP;
#else
    CHECK_OK(check_runaway(0));
    return check_runaway(1);
#endif
}

/* Without a cap the report says so. */
static int test_memory_cap_not_reported_without(const char *backend)
{
    struct runaway r = {.huge = (size_t)1 << 20};
    uint64_t in[8] = {0, 1, 2, 3, 4, 5, 6, 7}, out[8];
    mh_pool *pool = mh_test_pool(backend, 2, 1, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = 8, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_runaway, .ctx = &r,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_OK);
    CHECK(report.memory_capped == 0);
    mh_pool_close(pool);
    return 0;
}

/* Distinct processes among pids[0..n). */
static size_t distinct_pids(const pid_t *pids, size_t n, size_t *most)
{
    size_t distinct = 0;
    *most = 0;
    for (size_t i = 0; i < n; i++) {
        bool first = true;
        size_t runs = 0;
        for (size_t j = 0; j < n; j++) {
            first &= !(j < i && pids[j] == pids[i]);
            runs += pids[j] == pids[i];
        }
        distinct += first;
        if (runs > *most)
            *most = runs;
    }
    return distinct;
}

static int test_recycle_after_k_items(const char *backend)
{
    (void)backend;
    enum { N = 100, K = 7 };
    struct hooks_seen *seen = seen_open(2, -1);
    CHECK(seen);
    uint64_t in[N], out[N], want[N];
    struct mh_config config = {
        .backend = "fork", .workers = 2, .chunk = 5, .worker_items_max = K,
        .init = hook_init, .fini = hook_fini, .hook_ctx = seen,
    };
    struct mh_task task = {
        .n = N, .out = out, .out_size = sizeof *out,
        .fn = fn_item, .ctx = seen,
    };
    struct mh_report report;
    CHECK_OK(hooks_map_once(&config, &task, in, &report, MH_OK));
    CHECK(report.items_done == N && atomic_load(&seen->item_bad) == 0);

    size_t most, children = distinct_pids(seen->pids, N, &most);
    CHECK(children >= (N + K - 1) / K); /* more children than workers */
    CHECK(most <= K);                  /* none ran more than K items */

    mh_pool *seq = mh_test_pool("seq", 1, 5, MH_STOP);
    CHECK(seq);
    task.out = want;
    CHECK_RC(mh_map(seq, &task, NULL), MH_OK);
    mh_pool_close(seq);
    CHECK(memcmp(out, want, sizeof out) == 0);
    int inits = 0, finis = 0;
    for (int w = 0; w < HOOKS_MAX; w++) {
        inits += atomic_load(&seen->inits[w]);
        finis += atomic_load(&seen->finis[w]);
    }
    CHECK(inits == finis && (size_t)inits >= children); /* each child once */
    munmap(seen, sizeof *seen);
    return 0;
}

/* A heap string per item (through the codec), noting its process. */
static int fn_bytes(const void *in, void *out, void *ctx)
{
    struct hooks_seen *seen = ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    struct mh_test_bytes *b = out;
    b->len = 1 + (size_t)(x * 7919 % 300) * 41; /* up to 12 KB */
    b->p = mh_test_bytes_alloc(b->len);
    if (!b->p)
        return 1;
    for (size_t i = 0; i < b->len; i++)
        b->p[i] = (char)('a' + (x + i) % 26);
    if (x < HOOKS_PIDS)
        seen->pids[x] = getpid();
    return 0;
}

/* Recycling with a codec: a child hands over every record before it
 * ends, so its replacement redoes nothing twice and loses nothing. */
static int test_recycle_codec(const char *backend)
{
    (void)backend;
    enum { N = 90, K = 4 };
    struct hooks_seen *seen = seen_open(3, -1);
    CHECK(seen);
    uint64_t in[N];
    struct mh_test_bytes out[N], want[N];
    struct mh_config config = {
        .backend = "fork", .workers = 3, .chunk = 6, .worker_items_max = K,
    };
    struct mh_task task = {
        .n = N, .out = out, .out_size = sizeof *out,
        .fn = fn_bytes, .ctx = seen, .codec = &mh_test_bytes_codec,
    };
    CHECK_OK(hooks_map_once(&config, &task, in, NULL, MH_OK));
    size_t most, children = distinct_pids(seen->pids, N, &most);
    CHECK(children >= (N + K - 1) / K && most <= K);
    mh_pool *seq = mh_test_pool("seq", 1, 6, MH_STOP);
    CHECK(seq);
    task.out = want;
    CHECK_RC(mh_map(seq, &task, NULL), MH_OK);
    mh_pool_close(seq);
    for (size_t i = 0; i < N; i++) {
        CHECK(out[i].len == want[i].len && memcmp(out[i].p, want[i].p, out[i].len) == 0);
        mh_test_bytes_codec.clear(&out[i], NULL);
        mh_test_bytes_codec.clear(&want[i], NULL);
    }
    CHECK(mh_test_bytes_live() == 0);
    munmap(seen, sizeof *seen);
    return 0;
}

/* init fails only for the first replacement child (the fourth init of
 * the map): the map stops with MH_EINIT, what had finished is kept, and
 * every child that passed init ran fini. */
static int hook_init_fourth_fails(int worker, void **state, void *ctx)
{
    struct hooks_seen *seen = ctx;
    int all = 0;
    for (int w = 0; w < HOOKS_MAX; w++)
        all += atomic_load(&seen->inits[w]);
    atomic_fetch_add(&seen->inits[worker], 1);
    if (all == 3)
        return 1;
    *state = &seen->tokens[worker];
    return 0;
}

static int test_replacement_init_fails(const char *backend)
{
    (void)backend;
    struct hooks_seen *seen = seen_open(3, -1);
    CHECK(seen);
    uint64_t in[N_ITEMS], out[N_ITEMS];
    uint8_t status[N_ITEMS];
    struct mh_config config = {
        .backend = "fork", .workers = 3, .chunk = 2, .worker_items_max = 4,
        .init = hook_init_fourth_fails, .fini = hook_fini, .hook_ctx = seen,
    };
    struct mh_task task = {
        .n = N_ITEMS, .out = out, .out_size = sizeof *out,
        .fn = fn_item, .ctx = seen, .status = status,
    };
    struct mh_report report;
    CHECK_OK(hooks_map_once(&config, &task, in, &report, MH_EINIT));
    size_t ok = 0;
    for (size_t i = 0; i < N_ITEMS; i++) {
        CHECK(status[i] == MH_ITEM_OK || status[i] == MH_ITEM_NOT_RUN);
        if (status[i] == MH_ITEM_OK) {
            CHECK(out[i] == in[i] * 3 + 1);
            ok++;
        }
    }
    CHECK(ok >= 4 && ok < N_ITEMS && report.items_done == ok);
    int inits = 0, finis = 0;
    for (int w = 0; w < HOOKS_MAX; w++) {
        inits += atomic_load(&seen->inits[w]);
        finis += atomic_load(&seen->finis[w]);
    }
    CHECK(finis == inits - 1); /* all but the one that failed */
    CHECK(atomic_load(&seen->item_bad) == 0 && atomic_load(&seen->fini_state_bad) == 0);
    munmap(seen, sizeof *seen);
    return 0;
}

/* Item CRASHER kills its worker: blamed alone, recycling or not. */
#define CRASHER 23
static int fn_crash_one(const void *in, void *out, void *ctx)
{
    uint64_t x;
    memcpy(&x, in, sizeof x);
    if (x == CRASHER)
        raise(SIGKILL);
    return fn_item(in, out, ctx);
}

static int test_recycle_blame_exact(const char *backend)
{
    (void)backend;
    enum { N = 60, K = 3 };
    struct hooks_seen *seen = seen_open(3, -1);
    CHECK(seen);
    seen->with_init = false;
    uint64_t in[N], out[N];
    uint8_t status[N];
    struct mh_config config = {
        .backend = "fork", .workers = 3, .chunk = 4, .on_error = MH_CONTINUE,
        .worker_items_max = K,
    };
    struct mh_task task = {
        .n = N, .out = out, .out_size = sizeof *out,
        .fn = fn_crash_one, .ctx = seen, .status = status,
    };
    struct mh_report report;
    CHECK_OK(hooks_map_once(&config, &task, in, &report, MH_EWORKER));
    CHECK(report.failed_index == CRASHER && report.worker_signal == SIGKILL);
    CHECK(report.items_failed == 1 && report.items_done == N - 1);
    CHECK(report.memory_capped == 0);
    for (uint64_t i = 0; i < N; i++)
        CHECK(i == CRASHER ? status[i] == MH_ITEM_CRASHED
                           : status[i] == MH_ITEM_OK && out[i] == i * 3 + 1);
    munmap(seen, sizeof *seen);
    return 0;
}

/* A child that dies inside its init hook: MH_EINIT, not MH_EWORKER. */
static int hook_init_dies(int worker, void **state, void *ctx)
{
    (void)state;
    (void)ctx;
    if (worker == 1)
        raise(SIGKILL);
    return 0;
}

static int test_init_dies_in_child(const char *backend)
{
    (void)backend;
    uint64_t in[N_ITEMS], out[N_ITEMS];
    struct hooks_seen *seen = seen_open(3, -1);
    CHECK(seen);
    struct mh_config config = {
        .backend = "fork", .workers = 3, .chunk = 4, .init = hook_init_dies,
    };
    struct mh_task task = {
        .n = N_ITEMS, .out = out, .out_size = sizeof *out,
        .fn = fn_item, .ctx = seen,
    };
    CHECK_OK(hooks_map_once(&config, &task, in, NULL, MH_EINIT));
    CHECK(atomic_load(&seen->calls) == 0);
    munmap(seen, sizeof *seen);
    return 0;
}

/* --------------------------------------------------------------- others */

static int test_worker_limits_enotsup(const char *backend)
{
    struct mh_config config = {.backend = backend, .worker_memory_max = (size_t)1 << 30};
    mh_pool *pool = (mh_pool *)&config;
    CHECK_RC(mh_pool_open(&pool, &config), MH_ENOTSUP);
    CHECK(pool == NULL);
    config.worker_memory_max = 0;
    config.worker_items_max = 10;
    CHECK_RC(mh_pool_open(&pool, &config), MH_ENOTSUP);
    CHECK(pool == NULL);
    return 0;
}

static const struct mh_test tests[] = {
    MH_TEST(init_fini_once_per_worker)
    MH_TEST(init_fails_at_worker_k)
    MH_TEST(fini_without_init)
    MH_TEST(stream_hooks)
    MH_TEST_ON(any_caller_is_last_worker, "threads")
    MH_TEST_ON(memory_cap_runaway_fails_alone, "fork")
    MH_TEST_ON(memory_cap_not_reported_without, "fork")
    MH_TEST_ON(recycle_after_k_items, "fork")
    MH_TEST_ON(recycle_blame_exact, "fork")
    MH_TEST_ON(recycle_codec, "fork")
    MH_TEST_ON(replacement_init_fails, "fork")
    MH_TEST_ON(init_dies_in_child, "fork")
    MH_TEST_ON(worker_limits_enotsup, "seq,threads,openmp,mpi")
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return mh_test_main(argc, argv, tests);
}
