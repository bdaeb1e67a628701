/*
 * Checkpoint and resume: Ctrl-C cancels the map, the statuses and
 * outputs go to a file, and the next run resumes from it, running only
 * the items that were not done.
 *
 *     checkpoint [--interrupt-at K] FILE [ITEMS [BACKEND]]
 *
 * The first SIGINT cancels (the handler calls mh_pool_cancel, which is
 * async-signal-safe, and puts SIGINT back to its default); a second one
 * kills the program at once, and its worker processes with it (fork's
 * children die with their parent): no orphan, no zombie.
 * --interrupt-at K sends the program a SIGINT of its own once K items are
 * done (the test drives it so). On success it prints a checksum of every
 * output and removes FILE; cancelled, it saves FILE and exits with 3.
 */
#include <manyhands.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static mh_pool *pool;

static void on_sigint(int sig)
{
    mh_pool_cancel(pool);     /* the first: stop the map, keep what is done */
    signal(sig, SIG_DFL);     /* the second: the default, which kills */
}

/* Some work per item: a few thousand rounds of a mixer, and 0.1 ms. */
static int work(const void *in, void *out, void *ctx)
{
    (void)ctx;
    uint64_t x = *(const uint64_t *)in + 1;
    for (int r = 0; r < 4000; r++)
        x = (x ^ (x >> 31)) * 0x9e3779b97f4a7c15u + (uint64_t)r;
    struct timespec pause = {0, 100000};
    nanosleep(&pause, NULL);
    *(uint64_t *)out = x;
    return 0;
}

static size_t interrupt_at; /* 0: never */

static int progress(size_t done, size_t n, void *ctx)
{
    (void)n;
    (void)ctx;
    if (interrupt_at && done >= interrupt_at) {
        interrupt_at = 0;
        raise(SIGINT); /* as a Ctrl-C would */
    }
    return 0;
}

/* The checkpoint: n, then n statuses, then n outputs. */
static int load(const char *path, size_t n, uint8_t *status, uint64_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0; /* none: a fresh run */
    size_t have = 0;
    int ok = fread(&have, sizeof have, 1, f) == 1 && have == n &&
             fread(status, 1, n, f) == n && fread(out, sizeof *out, n, f) == n;
    fclose(f);
    return ok ? 1 : -1;
}

static int save(const char *path, size_t n, const uint8_t *status, const uint64_t *out)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(&n, sizeof n, 1, f) == 1 && fwrite(status, 1, n, f) == n &&
             fwrite(out, sizeof *out, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    int arg = 1;
    if (argc > 2 && strcmp(argv[1], "--interrupt-at") == 0) {
        interrupt_at = (size_t)strtoull(argv[2], NULL, 10);
        arg = 3;
    }
    if (arg >= argc) {
        fprintf(stderr, "usage: %s [--interrupt-at K] FILE [ITEMS [BACKEND]]\n", argv[0]);
        return 2;
    }
    const char *path = argv[arg];
    size_t n = arg + 1 < argc ? (size_t)strtoull(argv[arg + 1], NULL, 10) : 20000;
    struct mh_config config = {.backend = arg + 2 < argc ? argv[arg + 2] : NULL};

    uint64_t *in = malloc(n * sizeof *in), *out = calloc(n, sizeof *out);
    uint8_t *status = calloc(n, 1);
    if (!in || !out || !status)
        return 1;
    for (size_t i = 0; i < n; i++)
        in[i] = i;
    int resumed = load(path, n, status, out);
    if (resumed < 0) {
        fprintf(stderr, "%s: not a checkpoint of %zu items\n", path, n);
        return 1;
    }
    int rc = mh_pool_open(&pool, &config);
    if (rc) {
        fprintf(stderr, "mh_pool_open: %s\n", mh_strerror(rc));
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    struct mh_task task = {
        .n = n, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = work, .status = status, .progress = progress, .resume = resumed,
    };
    struct mh_report report;
    rc = mh_map(pool, &task, &report);
    signal(SIGINT, SIG_DFL);
    mh_pool_close(pool);

    int exit_code = 0;
    if (rc == MH_OK) {
        uint64_t sum = 0;
        for (size_t i = 0; i < n; i++)
            sum = sum * 31 + out[i];
        printf("done: %zu items%s, checksum %016llx\n", n, resumed ? " (resumed)" : "",
               (unsigned long long)sum);
        remove(path);
    } else if (save(path, n, status, out) == 0) {
        printf("%s: %zu of %zu items done, saved to %s\n", mh_err_name(rc),
               report.items_done, n, path);
        exit_code = 3;
    } else {
        fprintf(stderr, "%s, and %s could not be written\n", mh_strerror(rc), path);
        exit_code = 1;
    }
    free(in);
    free(out);
    free(status);
    return exit_code;
}
