/*
 * evloop: the event-loop peer for the IO-bound kernels — one thread, W
 * requests in flight, no library: what someone serving many waits at once
 * writes instead of a thread per wait.
 *
 *     evloop --kernel sleep|tcp|file [--items N] [--workers W] [--repeat R]
 *            [--seed S]
 *
 *   sleep  one timerfd per request in flight, all in one epoll set, each
 *          armed for the sleep kernel's delay (MHK_SLEEP_US)
 *   tcp    one non-blocking socket per request in flight (epoll,
 *          edge-triggered) to the tcp kernel's own loopback server,
 *          started by its setup: the same server and service delay
 *   file   io_uring reads of the file kernel's file, the blocks its
 *          generate chose (the same file, the same offsets)
 *
 * The kernel's setup, generate (before each repeat: file drops its pages
 * then) and verify are the ones manyhands-bench's cells use, with the
 * same default seed (1) and items (the kernel's default count); W is the
 * number of requests in flight (default 64, at most 1024).
 *
 * One line per repeat, a format the harness parses:
 *   evloop kernel=sleep items=2048 workers=256 repeat=0 seconds=0.123456 verified=1
 * Exit 0; 1 when an output is wrong (the line says verified=0; stderr
 * names the item) or a request failed; 2 on bad usage; 77 for `file` when
 * built without liburing. The soft RLIMIT_NOFILE is raised to the hard
 * limit when W needs more descriptors (said on stderr).
 *
 * For tests only: --corrupt I flips a bit of item I's output after the
 * loop, before verification, so the test sees a wrong result caught.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "evloop.h"
#include "kernels.h"

#define EVLOOP_MAX_INFLIGHT 1024 /* the tcp server takes 2048 connections */

struct evloop_options {
    const char *kernel;
    uint64_t items;   /* 0: the kernel's default */
    uint64_t workers; /* requests in flight */
    uint64_t repeats;
    uint64_t seed;
    uint64_t corrupt; /* the item to corrupt; UINT64_MAX: none */
};

/* Each kernel's loop; NULL where this build lacks it. */
static const struct {
    const char *name;
    int (*run)(const struct evloop_run *r, double *seconds);
    size_t fds_per_slot; /* descriptors a request in flight costs this process */
} evloop_kernels[] = {
    {"sleep", evloop_sleep, 1}, /* its timerfd */
    {"tcp", evloop_tcp, 2},     /* the client socket and the server's side */
#ifdef EVLOOP_HAVE_URING
    {"file", evloop_file, 0},
#else
    {"file", NULL, 0},
#endif
};
#define EVLOOP_NKERNELS (sizeof evloop_kernels / sizeof *evloop_kernels)

static int evloop_usage(void)
{
    fprintf(stderr, "usage: evloop --kernel sleep|tcp|file [--items N] [--workers W]"
                    " [--repeat R] [--seed S]\n");
    return 2;
}

/* *value = text as a decimal in [min, max]; false when malformed. */
static bool evloop_number(const char *text, uint64_t min, uint64_t max, uint64_t *value)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (!*text || *end || *text == '-' || errno || v < min || v > max)
        return false;
    *value = v;
    return true;
}

/* 0, or 2 (bad usage). */
static int evloop_parse(int argc, char **argv, struct evloop_options *o)
{
    *o = (struct evloop_options){.workers = 64, .repeats = 1, .seed = 1,
                                 .corrupt = UINT64_MAX};
    const struct {
        const char *name;
        uint64_t min, max, *value;
    } numbers[] = {
        {"--items", 1, UINT32_MAX, &o->items},
        {"--workers", 1, EVLOOP_MAX_INFLIGHT, &o->workers},
        {"--repeat", 1, 1000000, &o->repeats},
        {"--seed", 0, UINT64_MAX, &o->seed},
        {"--corrupt", 0, UINT64_MAX - 1, &o->corrupt},
    };
    for (int a = 1; a + 1 < argc; a += 2) {
        if (strcmp(argv[a], "--kernel") == 0) {
            o->kernel = argv[a + 1];
            continue;
        }
        size_t f = 0, count = sizeof numbers / sizeof *numbers;
        while (f < count && strcmp(argv[a], numbers[f].name) != 0)
            f++;
        if (f == count || !evloop_number(argv[a + 1], numbers[f].min, numbers[f].max,
                                         numbers[f].value))
            return evloop_usage();
    }
    return o->kernel && argc % 2 == 1 ? 0 : evloop_usage();
}

/* Enough descriptors for `need`: raise the soft limit to the hard one if
 * it is below (and say so). 0, or 1 when even the hard limit is short. */
static int evloop_descriptors(size_t need)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= need)
        return 0;
    if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < need) {
        fprintf(stderr, "evloop: %zu descriptors needed, the hard RLIMIT_NOFILE is %llu\n",
                need, (unsigned long long)lim.rlim_max);
        return 1;
    }
    unsigned long long was = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
        fprintf(stderr, "evloop: cannot raise RLIMIT_NOFILE to %zu: %s\n", need,
                strerror(errno));
        return 1;
    }
    fprintf(stderr, "evloop: soft RLIMIT_NOFILE raised from %llu to the hard limit %llu "
                    "(%zu descriptors needed)\n",
            was, (unsigned long long)lim.rlim_cur, need);
    return 0;
}

/* Run and verify o->repeats times, one line each. 0, or 1 (wrong or failed). */
static int evloop_repeat(const struct evloop_options *o, const struct mhk_kernel *k,
                         int (*run)(const struct evloop_run *, double *), void *ctx,
                         uint64_t *in, void *out, size_t n)
{
    struct evloop_run r = {.ctx = ctx, .in = in, .out = out, .n = n,
                           .slots = o->workers < n ? (size_t)o->workers : n};
    for (uint64_t rep = 0; rep < o->repeats; rep++) {
        k->generate(in, n, o->seed, ctx);
        memset(out, 0, n * k->out_size);
        double seconds = 0;
        int rc = run(&r, &seconds);
        if (rc) {
            fprintf(stderr, "evloop: kernel=%s repeat=%" PRIu64 ": %s\n", k->name, rep, strerror(rc));
            return 1;
        }
        if (o->corrupt < n)
            ((unsigned char *)out)[o->corrupt * k->out_size] ^= 1;
        size_t bad = k->verify(in, out, n, ctx);
        printf("evloop kernel=%s items=%zu workers=%" PRIu64 " repeat=%" PRIu64
               " seconds=%.6f verified=%d\n",
               k->name, n, o->workers, rep, seconds, bad == 0);
        fflush(stdout);
        if (bad) {
            fprintf(stderr, "evloop: kernel=%s repeat=%" PRIu64 ": wrong output at item %zu\n",
                    k->name, rep, bad - 1);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct evloop_options o;
    if (evloop_parse(argc, argv, &o))
        return 2;
    size_t which = 0;
    while (which < EVLOOP_NKERNELS && strcmp(o.kernel, evloop_kernels[which].name) != 0)
        which++;
    const struct mhk_kernel *k = mhk_find(o.kernel);
    if (which == EVLOOP_NKERNELS || !k)
        return evloop_usage();
    if (!evloop_kernels[which].run) {
        fprintf(stderr, "evloop: kernel %s skipped: built without liburing (io_uring)\n",
                o.kernel);
        return 77;
    }
    size_t n = o.items ? (size_t)o.items : k->default_items;
    if (evloop_descriptors(64 + evloop_kernels[which].fds_per_slot * o.workers))
        return 1;

    void *ctx = NULL;
    int rc = k->setup(&ctx, n, o.seed);
    if (rc) {
        fprintf(stderr, "evloop: %s setup: %s\n", k->name, mh_err_name(rc));
        return 1;
    }
    int status = 1;
    uint64_t *in = calloc(n, k->in_size);
    void *out = calloc(n, k->out_size);
    if (!in || !out)
        fprintf(stderr, "evloop: out of memory for %zu items\n", n);
    else
        status = evloop_repeat(&o, k, evloop_kernels[which].run, ctx, in, out, n);
    free(in);
    free(out);
    k->teardown(ctx);
    return status;
}
