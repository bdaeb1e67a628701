/*
 * The openmp backend across fork(). With gcc's libgomp, a child forked
 * after the parent ran an OpenMP region hangs in its first region of its
 * own (GCC PR 60035). The backend must never hang there:
 *   fork_after_map    the parent's team is alive: a new pool in the child
 *                     maps correctly (on the calling thread alone)
 *   fork_after_close  the parent closed its pool, which released the team:
 *                     the child gets a real team again
 * Each child runs under its own alarm, so a regression fails (the child
 * dies of SIGALRM) rather than hangs the suite.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

enum { FORK_N = 5000 };

static int fork_triple(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(int *)out = *(const int *)in * 3 + 1;
    return 0;
}

/* Map FORK_N items on pool; 0 when right. *workers receives the workers
 * the report says took part. */
static int fork_map_on(mh_pool *pool, int *workers)
{
    static int in[FORK_N], out[FORK_N];
    for (int i = 0; i < FORK_N; i++)
        in[i] = i;
    struct mh_task task = {
        .n = FORK_N, .in = in, .in_size = sizeof *in, .out = out,
        .out_size = sizeof *out, .fn = fork_triple,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), MH_OK);
    for (int i = 0; i < FORK_N; i++)
        CHECK(out[i] == i * 3 + 1);
    *workers = report.workers;
    return 0;
}

/* The same on a fresh 2-worker pool of backend, closed after. */
static int fork_map_fresh(const char *backend, int *workers)
{
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    int rc = fork_map_on(pool, workers);
    mh_pool_close(pool);
    return rc;
}

/* Fork; the child maps on a fresh pool and exits 0 when the result is
 * right and it ran on want_workers. The parent checks how it ended. */
static int fork_child_maps(const char *backend, int want_workers)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(20); /* a hang becomes SIGALRM */
        int workers = 0;
        int bad = fork_map_fresh(backend, &workers) != 0;
        if (!bad && workers != want_workers) {
            fprintf(stderr, "child map ran on %d workers, want %d\n", workers,
                    want_workers);
            bad = 1;
        }
        _exit(bad);
    }
    int wstatus;
    CHECK(waitpid(pid, &wstatus, 0) == pid);
    if (WIFSIGNALED(wstatus))
        fprintf(stderr, "child killed by signal %d (%s)\n", WTERMSIG(wstatus),
                WTERMSIG(wstatus) == SIGALRM ? "it hung" : "crashed");
    CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    return 0;
}

static int test_fork_after_map(const char *backend)
{
    mh_pool *pool = mh_test_pool(backend, 2, 0, MH_STOP);
    CHECK(pool);
    int workers = 0;
    CHECK_OK(fork_map_on(pool, &workers));
    CHECK(workers == 2); /* a team ran: it is alive in the parent */
    int rc = fork_child_maps(backend, 1);
    CHECK_OK(fork_map_on(pool, &workers)); /* the parent's team still works */
    mh_pool_close(pool);
    return rc;
}

static int test_fork_after_close(const char *backend)
{
    int workers = 0;
    CHECK_OK(fork_map_fresh(backend, &workers)); /* opens, maps, closes */
    CHECK(workers == 2);
    return fork_child_maps(backend, 2);
}

static const struct mh_test tests[] = {
    MH_TEST_ON(fork_after_map, "openmp")
    MH_TEST_ON(fork_after_close, "openmp")
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return mh_test_main(argc, argv, tests);
}
