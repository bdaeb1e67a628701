/*
 * mh-control-bench: what cancel and resume cost (issue 15's figures). A
 * benchmark, not a test: it prints medians, and judges nothing.
 *
 *     mh-control-bench [REPEATS]
 *
 * cancel_latency: from mh_pool_cancel to mh_map's return, with a 10 s
 *   item running on fork (one that ignores SIGTERM, so the grace runs
 *   out, and one that does not), and with 1 ms items on threads and
 *   openmp (the items running when the cancel comes finish first).
 * resume_50: a map cancelled at 50 % (by its progress callback), then
 *   resumed: the resumed run's wall time against a full run's.
 * One CSV line each: case,backend,median_ms,min_ms,max_ms,repeats.
 */
#include <manyhands.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts))
        ;
}

/* Shared with fork's children: how many items began. */
struct bench_shared {
    atomic_int started;
};

struct bench_item {
    struct bench_shared *sh;
    double seconds;  /* each item's time */
    int ignore_term; /* the item ignores SIGTERM (fork) */
};

static int bench_fn(const void *in, void *out, void *vctx)
{
    const struct bench_item *it = vctx;
    if (it->ignore_term)
        signal(SIGTERM, SIG_IGN);
    atomic_fetch_add(&it->sh->started, 1);
    sleep_s(it->seconds);
    memcpy(out, in, sizeof(int));
    return 0;
}

/* A spin of about `seconds` of CPU: the resume case's work. */
static int bench_spin(const void *in, void *out, void *vctx)
{
    const struct bench_item *it = vctx;
    double until = now_s() + it->seconds;
    while (now_s() < until)
        ;
    memcpy(out, in, sizeof(int));
    return 0;
}

struct bench_canceller {
    mh_pool *pool;
    struct bench_shared *sh;
    int after;
    double at; /* when mh_pool_cancel was called */
};

static void *bench_cancel_main(void *arg)
{
    struct bench_canceller *c = arg;
    while (atomic_load(&c->sh->started) < c->after)
        sleep_s(0.0005);
    sleep_s(0.002); /* the items that began are well into their time */
    c->at = now_s();
    mh_pool_cancel(c->pool);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_print(const char *name, const char *backend, double *ms, int repeats)
{
    qsort(ms, (size_t)repeats, sizeof *ms, cmp_double);
    printf("%s,%s,%.2f,%.2f,%.2f,%d\n", name, backend, ms[repeats / 2], ms[0],
           ms[repeats - 1], repeats);
    fflush(stdout);
}

/* Milliseconds from the cancel to the map's return, once. */
static double bench_cancel_once(const char *backend, size_t n, double item_s, int ignore_term,
                                int after)
{
    static int in[200000], out[200000];
    struct bench_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct mh_config config = {.backend = backend, .workers = 2, .chunk = 1};
    mh_pool *pool;
    if (sh == MAP_FAILED || mh_pool_open(&pool, &config))
        return -1;
    struct bench_item item = {.sh = sh, .seconds = item_s, .ignore_term = ignore_term};
    struct mh_task task = {
        .n = n, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = bench_fn, .ctx = &item,
    };
    struct bench_canceller c = {.pool = pool, .sh = sh, .after = after};
    pthread_t thread;
    pthread_create(&thread, NULL, bench_cancel_main, &c);
    int rc = mh_map(pool, &task, NULL);
    double end = now_s();
    pthread_join(thread, NULL);
    mh_pool_close(pool);
    munmap(sh, sizeof *sh);
    return rc == MH_EINTR ? (end - c.at) * 1e3 : -1;
}

static void bench_cancel(const char *name, const char *backend, size_t n, double item_s,
                         int ignore_term, int after, int repeats)
{
    double ms[64];
    for (int r = 0; r < repeats; r++)
        ms[r] = bench_cancel_once(backend, n, item_s, ignore_term, after);
    bench_print(name, backend, ms, repeats);
}

static int bench_half(size_t done, size_t n, void *ctx)
{
    (void)ctx;
    return done >= n / 2; /* cancel at 50 % */
}

/* Full run, then cancelled-at-50 % and resumed: ms of each full and
 * resumed run, repeats times. */
static void bench_resume(const char *backend, int repeats)
{
    enum { RN = 20000 };
    static int in[RN], out[RN];
    static uint8_t status[RN];
    double full[64], resumed[64];
    struct mh_config config = {.backend = backend, .workers = 2};
    mh_pool *pool;
    if (mh_pool_open(&pool, &config))
        return;
    struct bench_item item = {.seconds = 50e-6};
    for (int r = 0; r < repeats; r++) {
        struct mh_task task = {
            .n = RN, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
            .fn = bench_spin, .ctx = &item, .status = status,
        };
        double t0 = now_s();
        mh_map(pool, &task, NULL);
        full[r] = (now_s() - t0) * 1e3;
        task.progress = bench_half;
        mh_map(pool, &task, NULL); /* MH_EINTR at about half */
        task.progress = NULL;
        task.resume = 1;
        t0 = now_s();
        mh_map(pool, &task, NULL);
        resumed[r] = (now_s() - t0) * 1e3;
    }
    mh_pool_close(pool);
    bench_print("resume_50.full", backend, full, repeats);
    bench_print("resume_50.resumed", backend, resumed, repeats);
}

static int bench_have(const char *backend)
{
    for (const char *const *b = mh_backends(); *b; b++)
        if (strcmp(*b, backend) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    int repeats = argc > 1 ? atoi(argv[1]) : 5;
    if (repeats < 1 || repeats > 64)
        repeats = 5;
    printf("case,backend,median_ms,min_ms,max_ms,repeats\n");
    if (bench_have("fork")) {
        bench_cancel("cancel_latency.10s_item_ignores_term", "fork", 1, 10, 1, 1, repeats);
        bench_cancel("cancel_latency.10s_item", "fork", 1, 10, 0, 1, repeats);
    }
    for (int b = 0; b < 2; b++) {
        const char *backend = b ? "openmp" : "threads";
        if (bench_have(backend))
            bench_cancel("cancel_latency.1ms_items", backend, 200000, 1e-3, 0, 50, repeats);
    }
    const char *resume_on[] = {"threads", "fork"};
    for (int b = 0; b < 2; b++)
        if (bench_have(resume_on[b]))
            bench_resume(resume_on[b], repeats);
    return 0;
}
