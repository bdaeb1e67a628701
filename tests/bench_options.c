/*
 * manyhands-bench's command line parser (harness/options.c), on its own:
 * defaults, lists and ranges, every kind of bad value, the name checks,
 * and a seeded random-argv run that must never crash or accept garbage
 * silently. One CTest entry per table line (bench.options.<name>).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "options.h"

static struct mhb_options opts;

/* Parse a NULL-terminated argument list (argv[0] added). */
static const char *parse(const char *const *args)
{
    char *argv[64] = {"manyhands-bench"};
    int argc = 1;
    for (; args[argc - 1] && argc < 63; argc++)
        argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    return mhb_options_parse(&opts, argc, argv);
}

#define PARSE(...) parse((const char *const[]){__VA_ARGS__, NULL})

/* A bad command line: rejected, with a message naming what was wrong. */
#define CHECK_BAD(want, ...)                                                    \
    do {                                                                        \
        const char *err_ = PARSE(__VA_ARGS__);                                  \
        if (!err_ || !strstr(err_, want)) {                                     \
            fprintf(stderr, "%s:%d: got '%s', want an error with '%s'\n",       \
                    __FILE__, __LINE__, err_ ? err_ : "(accepted)", want);      \
            return 1;                                                           \
        }                                                                       \
    } while (0)

static int test_defaults(const char *backend)
{
    (void)backend;
    CHECK(parse((const char *const[]){NULL}) == NULL);
    CHECK(opts.command == MHB_MATRIX);
    CHECK(opts.n_backends == 0 && opts.n_kernels == 0 && opts.n_workers == 0);
    CHECK(opts.n_chunks == 0 && opts.items == 0 && opts.repeat == 0);
    CHECK(opts.scale == 1.0 && opts.seed == 1 && !opts.quick);
    CHECK(strcmp(opts.out, "results") == 0 && opts.label[0] == '\0');
    CHECK(PARSE("seed") == NULL && opts.command == MHB_SEED);
    CHECK(PARSE("matrix") == NULL && opts.command == MHB_MATRIX);
    CHECK(PARSE("stream") == NULL && opts.command == MHB_STREAM);
    return 0;
}

static int test_lists(const char *backend)
{
    (void)backend;
    CHECK(PARSE("--workers", "8,1-3", "--backends=threads,fork", "--kernels", "sleep") == NULL);
    CHECK(opts.n_workers == 4);
    CHECK(opts.workers[0] == 1 && opts.workers[1] == 2 && opts.workers[2] == 3 &&
          opts.workers[3] == 8); /* sorted */
    CHECK(opts.n_backends == 2 && strcmp(opts.backends[1], "fork") == 0);
    CHECK(opts.n_kernels == 1 && strcmp(opts.kernels[0], "sleep") == 0);
    CHECK(PARSE("--backends", "all") == NULL && opts.n_backends == 0);
    CHECK(PARSE("--chunks", "0,4096,16") == NULL && opts.n_chunks == 3 && opts.chunks[0] == 0 &&
          opts.chunks[2] == 4096);
    CHECK(PARSE("--workers", "1-32") == NULL && opts.n_workers == 32);
    CHECK(PARSE("--workers", "1024") == NULL && opts.workers[0] == 1024);
    return 0;
}

static int test_values(const char *backend)
{
    (void)backend;
    CHECK(PARSE("seed", "--quick", "--repeat", "5", "--scale=0.25", "--items", "1000",
                "--seed", "18446744073709551615", "--timeout", "2.5", "--out", "/tmp/x",
                "--label", "host-1.lab_2", "--no-plot", "--no-peers") == NULL);
    CHECK(opts.command == MHB_SEED && opts.quick && opts.repeat == 5);
    CHECK(opts.scale == 0.25 && opts.items == 1000 && opts.seed == UINT64_MAX);
    CHECK(opts.timeout_s == 2.5 && strcmp(opts.out, "/tmp/x") == 0);
    CHECK(strcmp(opts.label, "host-1.lab_2") == 0 && opts.no_plot && opts.no_peers);
    CHECK(PARSE("--help") == NULL && opts.command == MHB_HELP);
    CHECK(PARSE("seed", "-h") == NULL && opts.command == MHB_HELP);
    CHECK(PARSE("help") == NULL && opts.command == MHB_HELP);
    return 0;
}

static int test_bad_values(const char *backend)
{
    (void)backend;
    CHECK_BAD("not in 1..1024", "--workers", "0");
    CHECK_BAD("not in 1..1024", "--workers", "1025");
    CHECK_BAD("not a number", "--workers", "1,,2");
    CHECK_BAD("not a number", "--workers", "");
    CHECK_BAD("not a number", "--workers", "+2");
    CHECK_BAD("not a range", "--workers", "1-");
    CHECK_BAD("runs backwards", "--workers", "4-2");
    CHECK_BAD("listed twice", "--workers", "2,1-3");
    CHECK_BAD("not a number", "--workers", "99999999999999999999999");
    CHECK_BAD("more than", "--workers", "1-33");
    CHECK_BAD("not a number", "--chunks", "1-4");
    CHECK_BAD("not a number", "--chunks", "-1");
    CHECK_BAD("--scale", "--scale", "0");
    CHECK_BAD("--scale", "--scale", "-1");
    CHECK_BAD("--scale", "--scale", "nan");
    CHECK_BAD("--scale", "--scale", "inf");
    CHECK_BAD("--scale", "--scale", "1x");
    CHECK_BAD("--repeat", "--repeat", "0");
    CHECK_BAD("--repeat", "--repeat", "1001");
    CHECK_BAD("--repeat", "--repeat", "three");
    CHECK_BAD("--items", "--items", "0");
    CHECK_BAD("--seed", "--seed", "-1");
    CHECK_BAD("--timeout", "--timeout", "0");
    CHECK_BAD("--label", "--label", "../up");
    CHECK_BAD("--label", "--label", ".hidden");
    CHECK_BAD("--label", "--label", "");
    CHECK_BAD("--out", "--out", "");
    CHECK_BAD("not a name", "--backends", "Threads");
    CHECK_BAD("not a name", "--backends", "threads,");
    CHECK_BAD("not a name", "--kernels", "a b");
    CHECK_BAD("not a name", "--kernels", "empty;stream");
    CHECK_BAD("listed twice", "--kernels", "sleep,sleep");
    return 0;
}

static int test_bad_syntax(const char *backend)
{
    (void)backend;
    CHECK_BAD("unknown option '--frob'", "--frob");
    CHECK_BAD("unknown option", "--frob=1");
    CHECK_BAD("unknown option", "--=1");
    CHECK_BAD("takes no value", "--quick=yes");
    CHECK_BAD("needs a value", "--workers");
    CHECK_BAD("unexpected argument", "-x");
    CHECK_BAD("unexpected argument", "--");
    CHECK_BAD("unexpected argument", "--quick", "stray");
    CHECK_BAD("unknown command 'frob'", "frob");
    return 0;
}

static int test_names_checked(const char *backend)
{
    (void)backend;
    const char *const backends[] = {"threads", "seq", NULL};
    const char *const kernels[] = {"sleep", "factorial", NULL};
    CHECK(PARSE("--backends", "threads", "--kernels", "sleep") == NULL);
    CHECK(mhb_options_check(&opts, backends, kernels) == NULL);
    CHECK(PARSE("--backends", "mpi") == NULL);
    const char *err = mhb_options_check(&opts, backends, kernels);
    CHECK(err && strstr(err, "'mpi' is not in this build (built: threads, seq)"));
    CHECK(PARSE("--kernels", "sleep,nope") == NULL);
    err = mhb_options_check(&opts, backends, kernels);
    CHECK(err && strstr(err, "unknown kernel 'nope' (kernels: sleep, factorial)"));
    /* A stream kind's name: work and call. */
    const char *const kinds[] = {"empty:map", "empty:stream", NULL};
    CHECK(PARSE("stream", "--kernels", "empty:stream") == NULL);
    CHECK(mhb_options_check(&opts, backends, kinds) == NULL);
    CHECK(opts.n_kernels == 1 && strcmp(opts.kernels[0], "empty:stream") == 0);
    CHECK(PARSE("stream", "--kernels", "empty:strea") == NULL);
    CHECK(mhb_options_check(&opts, backends, kinds) != NULL);
    /* cell: exactly one of each */
    CHECK(PARSE("cell", "--backends", "threads", "--kernels", "sleep", "--workers", "2",
                "--items", "10") == NULL);
    CHECK(opts.command == MHB_CELL && mhb_options_check(&opts, backends, kernels) == NULL);
    CHECK(PARSE("cell", "--backends", "threads,seq", "--kernels", "sleep", "--workers", "2",
                "--items", "10") == NULL);
    CHECK(mhb_options_check(&opts, backends, kernels) != NULL);
    CHECK(PARSE("cell", "--backends", "threads", "--kernels", "sleep", "--workers", "2") == NULL);
    CHECK(mhb_options_check(&opts, backends, kernels) != NULL);
    return 0;
}

/* Random command lines from pieces of real ones: parse must return, with
 * either success or a NUL-terminated message; a success must hold values
 * in range. Seeded: the same lines every run. */
static int test_random_argv(const char *backend)
{
    (void)backend;
    static const char *const pieces[] = {
        "--workers", "--backends", "--kernels", "--chunks", "--items", "--scale", "--repeat",
        "--seed", "--timeout", "--out", "--label", "--quick", "--no-plot", "--help", "seed",
        "cell", "matrix", "1", "0", "-1", "1-4", "4-1", "1,2", ",", "", "=", "--workers=",
        "threads", "a,b,c", "1e308", "nan", "18446744073709551616", "x", "--", "-",
        "--scale=2", "1024", "1025", "../x", "all",
    };
    const size_t n_pieces = sizeof pieces / sizeof pieces[0];
    uint64_t state = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 20000; round++) {
        char *argv[9] = {"manyhands-bench"};
        int argc = 1 + (int)(state % 8);
        for (int i = 1; i < argc; i++) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            argv[i] = (char *)pieces[state % n_pieces];
        }
        argv[argc] = NULL;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        const char *err = mhb_options_parse(&opts, argc, argv);
        if (err) {
            CHECK(err == opts.error && strlen(err) > 0 && strlen(err) < sizeof opts.error);
            continue;
        }
        CHECK(opts.n_workers >= 0 && opts.n_workers <= MHB_LIST_MAX);
        for (int i = 0; i < opts.n_workers; i++)
            CHECK(opts.workers[i] >= 1 && opts.workers[i] <= MHB_WORKERS_LIMIT);
        CHECK(opts.scale > 0 && opts.scale <= 1e6);
        CHECK(opts.repeat >= 0 && opts.repeat <= 1000);
        CHECK(opts.out[0] != '\0');
    }
    return 0;
}

static const struct mh_test tests[] = {
    MH_TEST_ONCE(defaults)
    MH_TEST_ONCE(lists)
    MH_TEST_ONCE(values)
    MH_TEST_ONCE(bad_values)
    MH_TEST_ONCE(bad_syntax)
    MH_TEST_ONCE(names_checked)
    MH_TEST_ONCE(random_argv)
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return mh_test_main(argc, argv, tests);
}
