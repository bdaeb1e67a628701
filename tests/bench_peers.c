/*
 * manyhands-bench's runner table (harness/peers.c) on its own: every
 * entry well formed; each runner's command built from its tokens; each
 * runner's result line read, and a run that did not verify (verified=0,
 * no verified field, an error, a failed exit, a timeout, no line) fails
 * its row; a runner whose program is missing is unavailable, saying what
 * to install. One CTest entry per table line (bench.peers.<name>).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "bench.h"
#include "check.h"

#define MH_DEFINE(name) static int test_##name(const char *backend)

static struct mhb_proc proc; /* large: not on the stack */

/* A process that exited with status and printed out. */
static const struct mhb_proc *fake(const char *out, int status)
{
    memset(&proc, 0, sizeof proc);
    proc.status = status << 8; /* as waitpid encodes an exit status */
    snprintf(proc.out, sizeof proc.out, "%s", out);
    return &proc;
}

/* runner's result line with the given tail (after the seconds). */
static const char *line(const struct mhb_runner *r, const char *tail)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "some chatter\n%skernel=factorial items=100 workers=2 "
             "repeat=0 %s=0.250000 %s\nmore chatter\n", r->tag, r->time_key, tail);
    return buf;
}

static void parse(const struct mhb_runner *r, const struct mhb_proc *p, struct mhb_row *row)
{
    memset(row, 0, sizeof *row);
    row->wall_s = row->pool_s = NAN;
    mhb_runner_parse(r, p, 2, row);
}

MH_DEFINE(table)
{
    (void)backend;
    const struct mhb_runner *const *all = mhb_runners();
    int baselines = 0, references = 0;
    for (const struct mhb_runner *const *r = all; *r; r++) {
        CHECK((*r)->name && (*r)->what && (*r)->argv && (*r)->tag && (*r)->time_key);
        CHECK((*r)->color && (*r)->color[0] == '#' && ((*r)->dash == 1 || (*r)->dash == 4));
        CHECK((*r)->experiments & (MHB_IN_MATRIX | MHB_IN_SEED));
        CHECK((*r)->library || ((*r)->program && (*r)->needs)); /* a peer says what it needs */
        CHECK(mhb_runner_find((*r)->name) == *r);
        for (const struct mhb_runner *const *o = all; o < r; o++)
            CHECK(strcmp((*o)->name, (*r)->name) != 0);
        baselines += (*r)->baseline;
        references += (*r)->reference;
    }
    CHECK(baselines == 1 && all[0]->baseline); /* the baseline runs first */
    CHECK(references <= 1);
    CHECK(mhb_runner_find("no-such-runner") == NULL);
    return 0;
}

MH_DEFINE(argv)
{
    (void)backend;
    struct mhb_call call = {
        .self = "/b/manyhands-bench", .peers_dir = "/b/peers", .source_dir = "/src",
        .mpiexec = "/usr/bin/mpirun", .kernel = mhk_find("factorial"), .items = 12345,
        .workers = 7, .chunk = 16, .seed = 99, .repeat = 2,
    };
    CHECK(call.kernel != NULL);
    for (const struct mhb_runner *const *r = mhb_runners(); *r; r++) {
        char *argv[40], buf[4096];
        CHECK(mhb_runner_argv(*r, &call, argv, 40, buf, sizeof buf) == 0);
        bool items = false, workers = false, chunk = false;
        int n = 0;
        for (; argv[n]; n++) {
            CHECK(argv[n][0] != '$'); /* every token expanded */
            items |= strcmp(argv[n], "12345") == 0;
            workers |= strcmp(argv[n], "7") == 0;
            chunk |= strcmp(argv[n], "16") == 0;
        }
        CHECK(n > 0 && items && workers);
        CHECK(chunk == (*r)->library); /* the library's cells take the chunk asked */
        /* Too small a buffer or argv is refused, never overrun. */
        CHECK(mhb_runner_argv(*r, &call, argv, 2, buf, sizeof buf) == -1);
    }
    return 0;
}

/* Every runner: a verified line fills the row; each kind of failure fails it. */
MH_DEFINE(parse)
{
    (void)backend;
    struct mhb_row row;
    for (const struct mhb_runner *const *r = mhb_runners(); *r; r++) {
        parse(*r, fake(line(*r, "chunk=64 verified=1"), 0), &row);
        if (row.error[0])
            fprintf(stderr, "%s: %s\n", (*r)->name, row.error);
        CHECK(!row.error[0] && row.verified == MHB_VERIFIED && row.wall_s == 0.25);
        CHECK(row.chunk == 64);

        parse(*r, fake(line(*r, "verified=0"), 1), &row);
        CHECK(row.error[0] && row.verified == MHB_WRONG);
        parse(*r, fake(line(*r, "verified=0"), 0), &row); /* even with exit 0 */
        CHECK(row.error[0] && row.verified == MHB_WRONG);
        parse(*r, fake(line(*r, ""), 0), &row); /* no verified field */
        CHECK(row.error[0] && row.verified == MHB_WRONG);
        parse(*r, fake(line(*r, "verified=1 error=map:MH_EWORKER"), 0), &row);
        CHECK(strcmp(row.error, "map:MH_EWORKER") == 0 && row.verified == MHB_WRONG);
        parse(*r, fake(line(*r, "verified=1"), 3), &row); /* a failed exit */
        CHECK(strstr(row.error, "exit status 3") && row.verified == MHB_WRONG);
        parse(*r, fake("Traceback: no result\n", 1), &row);
        CHECK(strstr(row.error, "exit status 1") && row.verified == MHB_WRONG);
        fake(line(*r, "verified=1"), 0);
        proc.timed_out = true;
        parse(*r, &proc, &row);
        CHECK(strstr(row.error, "timeout") && row.verified == MHB_WRONG);
    }
    return 0;
}

/* A launcher's cell must report the ranks asked for. */
MH_DEFINE(parse_ranks)
{
    (void)backend;
    for (const struct mhb_runner *const *r = mhb_runners(); *r; r++) {
        if (!(*r)->launched)
            continue;
        struct mhb_row row;
        char out[256];
        snprintf(out, sizeof out, "%sworkers=1 wall=0.1 verified=1 error=\n", (*r)->tag);
        parse(*r, fake(out, 0), &row);
        CHECK(strstr(row.error, "ranks") && row.verified == MHB_WRONG);
    }
    return 0;
}

/* A peer whose program is missing is unavailable, and says what it needs. */
MH_DEFINE(unavailable)
{
    (void)backend;
    struct mhb_call call = {
        .self = "/nonexistent/manyhands-bench", .peers_dir = "/nonexistent/peers",
        .source_dir = "/nonexistent", .mpiexec = "mpirun", .kernel = mhk_find("sleep"),
        .items = 1, .workers = 1,
    };
    for (const struct mhb_runner *const *r = mhb_runners(); *r; r++) {
        if ((*r)->library)
            continue;
        char why[512] = "";
        CHECK(!mhb_runner_available(*r, &call, why, sizeof why));
        CHECK(strstr(why, "not found") && strstr(why, (*r)->needs));
    }
    return 0;
}

static const struct mh_test tests[] = {
    MH_TEST_ONCE(table)
    MH_TEST_ONCE(argv)
    MH_TEST_ONCE(parse)
    MH_TEST_ONCE(parse_ranks)
    MH_TEST_ONCE(unavailable)
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return mh_test_main(argc, argv, tests);
}
