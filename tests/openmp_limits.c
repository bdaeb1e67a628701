/*
 * The openmp backend when its team's threads cannot be had: the map
 * returns MH_EAGAIN (as threads and fork do), the process lives on, and
 * a team that fits still works. libgomp itself would print "Thread
 * creation failed" and exit(1).
 *
 *   nproc_limit  RLIMIT_NPROC leaves room for one more thread: a 2-worker
 *                pool maps, a 4-worker pool gets MH_EAGAIN, the 2-worker
 *                pool still maps
 *
 * The limit is set in a fresh process (this binary, exec'd): a forked
 * copy of a process that ran OpenMP runs its maps on one thread (GCC PR
 * 60035), so it would never start a team. RLIMIT_NPROC does not bind
 * root, so that process first becomes a uid no other process has.
 */
#define _GNU_SOURCE
#include <grp.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

extern char **environ;

enum { LIMITS_N = 4000 };

static int limits_double(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(int *)out = *(const int *)in * 2;
    return 0;
}

/* Map LIMITS_N items on pool: want is the code, and on success every
 * output is right; on failure no item ran. */
static int limits_map(mh_pool *pool, int want)
{
    static int in[LIMITS_N], out[LIMITS_N];
    static uint8_t status[LIMITS_N];
    for (int i = 0; i < LIMITS_N; i++) {
        in[i] = i;
        out[i] = -1;
    }
    struct mh_task task = {
        .n = LIMITS_N, .in = in, .in_size = sizeof *in, .out = out,
        .out_size = sizeof *out, .fn = limits_double, .status = status,
    };
    struct mh_report report;
    CHECK_RC(mh_map(pool, &task, &report), want);
    for (int i = 0; i < LIMITS_N; i++) {
        CHECK(status[i] == (want == MH_OK ? MH_ITEM_OK : MH_ITEM_NOT_RUN));
        CHECK(out[i] == (want == MH_OK ? 2 * i : -1));
    }
    return 0;
}

/* In the exec'd process: this process alone, one thread, under a uid of
 * its own, with room for one more thread. */
static int limits_child(void)
{
    alarm(60); /* a hang becomes SIGALRM */
    uid_t uid = 3000000000u + (uid_t)(getpid() % 1000000); /* no one else's */
    struct rlimit two = {2, 2};
    if (setrlimit(RLIMIT_NPROC, &two) != 0 || setgroups(0, NULL) != 0 ||
        setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0) {
        perror("limits: setrlimit / dropping root");
        return 1;
    }
    int threads = mh_test_count_threads();
    CHECK(threads == 1);
    mh_pool *two_pool = mh_test_pool("openmp", 2, 0, MH_STOP);
    mh_pool *four_pool = mh_test_pool("openmp", 4, 0, MH_STOP);
    CHECK(two_pool && four_pool);
    CHECK_OK(limits_map(two_pool, MH_OK));      /* one thread more: fits */
    CHECK_OK(limits_map(four_pool, MH_EAGAIN)); /* three more: cannot */
    CHECK(mh_test_threads_settle(2) == 2);      /* the team's one thread */
    CHECK_OK(limits_map(two_pool, MH_OK));      /* its team still works */
    mh_pool_close(four_pool);
    mh_pool_close(two_pool);
    return 0;
}

static int test_nproc_limit(const char *backend)
{
    (void)backend;
    if (geteuid() != 0) {
        fprintf(stderr, "not root: cannot take a uid of its own: skipped\n");
        return MH_SKIP;
    }
    char *argv[] = {"openmp_limits", "--child", NULL};
    pid_t pid;
    fflush(NULL);
    CHECK(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) == 0);
    int wstatus;
    CHECK(waitpid(pid, &wstatus, 0) == pid);
    if (WIFSIGNALED(wstatus))
        fprintf(stderr, "child killed by signal %d\n", WTERMSIG(wstatus));
    else if (WEXITSTATUS(wstatus) != 0)
        fprintf(stderr, "child exited %d (libgomp's exit is 1)\n", WEXITSTATUS(wstatus));
    CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    return 0;
}

static const struct mh_test tests[] = {
    MH_TEST_ONCE_ON(nproc_limit, "openmp")
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--child") == 0)
        return limits_child();
    return mh_test_main(argc, argv, tests);
}
