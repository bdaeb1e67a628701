/*
 * The test kit shared by every test binary: checks that survive NDEBUG,
 * a runner that holds the global invariants around each test — a
 * watchdog, no child left, no new descriptor, no thread left — and the
 * helpers more than one test binary needs.
 *
 * A test binary defines a table of struct mh_test, one MH_TEST(name) line
 * per `static int test_<name>(const char *backend)`, and calls
 * mh_test_main(argc, argv, table): `prog TEST BACKEND` runs one test on
 * one backend (exit 0 pass, 1 fail, 77 skip); `prog --list` prints each
 * test with the backends it runs on in this build. CTest's entries are
 * made from that list (tests/discover.cmake, tests/README.md): the table
 * line is a test's only registration.
 */
#ifndef MH_TEST_CHECK_H
#define MH_TEST_CHECK_H

#include <stdbool.h>
#include <stdio.h>

#include "manyhands.h"

#define MH_SKIP 77

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                   \
            return 1;                                                         \
        }                                                                     \
    } while (0)

/* expr must return want (MH_* codes, shown by name). */
#define CHECK_RC(expr, want)                                                   \
    do {                                                                       \
        int check_rc_ = (expr), check_want_ = (want);                          \
        if (check_rc_ != check_want_) {                                        \
            fprintf(stderr, "%s:%d: %s\n  returned %s (%d), want %s (%d)\n",   \
                    __FILE__, __LINE__, #expr, mh_err_name(check_rc_),         \
                    check_rc_, mh_err_name(check_want_), check_want_);         \
            return 1;                                                          \
        }                                                                      \
    } while (0)

/* Run a sub-check that returns 0 or 1, and fail with it. */
#define CHECK_OK(expr)                                                        \
    do {                                                                      \
        if ((expr) != 0) {                                                    \
            fprintf(stderr, "%s:%d: in %s\n", __FILE__, __LINE__, #expr);     \
            return 1;                                                         \
        }                                                                     \
    } while (0)

struct mh_test {
    const char *name;
    int (*run)(const char *backend); /* 0 pass, 1 fail, MH_SKIP */
    const char *on;   /* the backends it applies to ("fork,threads"); NULL: all */
    bool once;        /* one entry, <binary>.<name>, on `on` (one backend) */
    const char *dies; /* kills its own mpi job: mpi_rank_dies.sh wants this said */
};

/*
 * Table lines. MH_TEST: on every backend, one entry each, named
 * <binary>.<backend>.<name> (mpi: <binary>.mpi<N>.<name> per job size).
 * MH_TEST_ON: the same, on the listed backends alone. MH_TEST_ONCE: what
 * no backend changes, one entry <binary>.<name> run on seq; ONCE_ON: on
 * that backend. MH_TEST_DIES: a rank of a 2-rank mpi job dies; the job
 * must end with `pattern` (grep -E) in its output. A table whose tests
 * all share one of these redefines MH_TEST as it (#undef first).
 */
#define MH_TEST_ENTRY(name_, on_, once_, dies_)                              \
    {.name = #name_, .run = test_##name_, .on = on_, .once = once_, .dies = dies_},
#define MH_TEST(name) MH_TEST_ENTRY(name, NULL, false, NULL)
#define MH_TEST_ON(name, backends) MH_TEST_ENTRY(name, backends, false, NULL)
#define MH_TEST_ONCE_ON(name, backend) MH_TEST_ENTRY(name, backend, true, NULL)
#define MH_TEST_ONCE(name) MH_TEST_ONCE_ON(name, "seq")
#define MH_TEST_DIES(name, pattern) MH_TEST_ENTRY(name, "mpi", false, pattern)

/* Open a pool with config (a line on stderr saying why when it does
 * not open: NULL then); mh_test_pool: on backend with the given workers,
 * chunk and policy, the rest default. */
mh_pool *mh_test_pool_with(const struct mh_config *config);
mh_pool *mh_test_pool(const char *backend, int workers, size_t chunk,
                      enum mh_on_error on_error);

/* A test this build cannot run: "<why>: skipped" on stderr, MH_SKIP.
 * MH_TEST_SKIPPED defines test_<name> as that, for the #else of a test
 * that needs what the build may lack (fault injection). */
int mh_test_skip(const char *why);
#define MH_TEST_SKIPPED(name, why)                                            \
    static int test_##name(const char *backend)                               \
    {                                                                         \
        (void)backend;                                                        \
        return mh_test_skip(why);                                             \
    }

/* Whether this build has backend. */
int mh_test_have_backend(const char *backend);

/* Count of entries in /proc/self/fd, /proc/self/task. */
int mh_test_count_fds(void);
int mh_test_count_threads(void);

/* The thread count, once it is back to baseline or 2 s have passed:
 * threads may take a moment to leave /proc after they are joined. */
int mh_test_threads_settle(int baseline);

/* The thread count once it has held still for 20 ms (at most 2 s): the
 * baseline to compare with after a pool has just closed. */
int mh_test_threads_steady(void);

/*
 * Maps on "mpi" are collective: under `mpiexec -n N` every rank runs the
 * test and calls the same maps, and only rank 0 receives results (other
 * ranks get the same return code and report). These say, from the
 * launcher's environment, how many ranks the job has and whether this
 * process holds the results; for every other backend: 1 and true.
 */
int mh_test_ranks(const char *backend);
int mh_test_holds_results(const char *backend);

/* The worker count a pool on backend reports when asked for `asked`
 * (clamped to MH_WORKERS_MAX; mpi: the job's ranks, whatever was asked). */
int mh_test_workers(const char *backend, int asked);

/* Seconds on CLOCK_MONOTONIC; a sleep that resumes after signals. */
double mh_test_now_s(void);
void mh_test_sleep_ms(double ms);

/* Arm the watchdog: SIGALRM after seconds (or $env where set) ends the
 * process with status 2 and a line saying it hung. */
void mh_test_watchdog(const char *env, unsigned seconds);

/* Whether this process has no child left, reaped or not. */
bool mh_test_no_child(void);

/*
 * An output item that owns heap memory, so that a map's codec path
 * (encode in a worker process, decode in the caller, clear on failure) is
 * exercised: mh_test_bytes_codec carries len bytes of p. Every p from
 * mh_test_bytes_alloc (fn in-process, decode) is counted until clear, so
 * a result the library forgets to clear shows in mh_test_bytes_live().
 */
struct mh_test_bytes {
    char *p;
    size_t len;
};
extern const struct mh_codec mh_test_bytes_codec;
char *mh_test_bytes_alloc(size_t len);
long mh_test_bytes_live(void);

/* fn: out (an mpz_t) = n! for the int n at in, as the seed computes it;
 * kernels' mhk_mpz_codec carries it between processes. GMP builds. */
int mh_test_factorial(const void *in, void *out, void *ctx);

/* How many of the n mpz outputs in got (a map of mh_test_factorial over
 * in) differ from seq's, the first one named; got's values are cleared.
 * n when seq's own map fails. GMP builds. */
size_t mh_test_factorials_differ(const int *in, size_t n, void *got);

/* `prog TEST BACKEND [RANKS]`: with RANKS, the pool's worker count must
 * equal it (mpi: a mismatched mpiexec gives N one-rank jobs). */
int mh_test_main(int argc, char **argv, const struct mh_test *tests);

#endif /* MH_TEST_CHECK_H */
