/*
 * The runners: every library backend and every peer program as one entry
 * of one table — how to build its command, how to read its result line,
 * whether it can run here, how to draw it. The rest of the harness asks
 * this table and names no backend or peer itself.
 *
 * Command tokens: "$self" (manyhands-bench), "$mpiexec", "$peers/NAME"
 * (a program built beside manyhands-bench), "$src/PATH" (the source tree),
 * "$kernel", "$raw_loop" (the kernel's raw-openmp loop), "$items",
 * "$workers", "$chunk", "$seed", "$repeat".
 *
 * Every runner prints one line per run, "TAG key=value ...", with its
 * seconds (time_key) and verified=1 only when it checked every output
 * (kernels.h's verifiers, or an independent check of the same kind:
 * docs/results.md says which); MHB_CORRUPT=1 in the environment makes
 * each one corrupt its first output before checking (the bench tests).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "manyhands.h"

#define CELL_ARGS                                                                          \
    "$self", "cell", "--backends", "$name", "--kernels", "$kernel", "--items", "$items",   \
        "--workers", "$workers", "--chunks", "$chunk", "--seed", "$seed", "--cell-repeat", \
        "$repeat", NULL
#define SEED_ARGS "$workers", "$items", "1", "$seed"

static const char *const peers_cell[] = {CELL_ARGS};
static const char *const peers_mpi_cell[] = {"$mpiexec", "-np", "$workers", CELL_ARGS};
static char *const peers_mpi_env[] = {
    "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
    "OMPI_MCA_rmaps_base_oversubscribe=1", NULL,
};
static const char *const peers_raw[] = {"$peers/raw-openmp", "--kernel", "$raw_loop",
                                        "--items", "$items", "--workers", "$workers",
                                        "--repeat", "1", "--seed", "$seed", NULL};
static const char *const peers_tbb[] = {"$peers/tbb", "--kernel", "$kernel", "--items",
                                        "$items", "--workers", "$workers", "--seed", "$seed",
                                        NULL};
static const char *const peers_pool[] = {"/usr/bin/python3", "$src/harness/peers/seed_pool.py",
                                         "process", SEED_ARGS, NULL};
static const char *const peers_pool_tuned[] = {"/usr/bin/python3",
                                               "$src/harness/peers/seed_pool.py", "process",
                                               SEED_ARGS, "tuned", NULL};
static const char *const peers_thread[] = {"/usr/bin/python3", "$src/harness/peers/seed_pool.py",
                                           "thread", SEED_ARGS, NULL};
static const char *const peers_joblib_batched[] = {
    "/usr/bin/python3", "$src/harness/peers/seed_joblib.py", "batched", SEED_ARGS, NULL};
static const char *const peers_joblib_auto[] = {
    "/usr/bin/python3", "$src/harness/peers/seed_joblib.py", "auto", SEED_ARGS, NULL};
static const char *const peers_evloop[] = {"$peers/evloop", "--kernel", "$kernel", "--items",
                                           "$items", "--workers", "$workers", "--repeat", "1",
                                           "--seed", "$seed", NULL};
/* evloop exits 77 for a kernel this build of it lacks (file without liburing). */
static const char *const peers_evloop_probe[] = {"$peers/evloop", "--kernel", "$kernel",
                                                 "--items", "1", "--workers", "1", NULL};
static const char *const peers_numpy[] = {"/usr/bin/python3", "-c", "import numpy", NULL};
static const char *const peers_joblib[] = {"/usr/bin/python3", "-c", "import numpy, joblib",
                                           NULL};

static bool peers_cpu(const struct mhk_kernel *k) { return k->bound == MHK_CPU; }
static bool peers_io(const struct mhk_kernel *k) { return k->bound == MHK_IO; }
static bool peers_raw_loop(const struct mhk_kernel *k) { return k->raw_loop != NULL; }
static bool peers_seed(const struct mhk_kernel *k) { return k->seed_items != 0; }

/* A library backend, in the matrix, the seed and the stream experiment,
 * and in the experiments (MHB_IN_*) of `also`. */
#define LIBRARY(also, ...) .library = true,                                      \
                     .experiments = MHB_IN_MATRIX | MHB_IN_SEED | MHB_IN_STREAM | (also), \
                     .tag = MHB_CELL_TAG, .time_key = "wall", .dash = 1, __VA_ARGS__
/* A Python program on the seed's workload (seed only). */
#define PYTHON(...) .experiments = MHB_IN_SEED, .does = peers_seed, .time_key = "seconds", \
                    .dash = 4, __VA_ARGS__
/* The blog's program, seed_pool.py. */
#define BLOG_POOL(...) PYTHON(.tag = "seed-pool ", .program = "$src/harness/peers/seed_pool.py", \
                              .probe = peers_numpy, .needs = "python3-numpy", __VA_ARGS__)
/* joblib, seed_joblib.py. */
#define JOBLIB(...) PYTHON(.tag = "seed-joblib ", .program = "$src/harness/peers/seed_joblib.py", \
                           .probe = peers_joblib, .needs = "python3-joblib", __VA_ARGS__)

static const struct mhb_runner peers_table[] = {
    {.name = "seq", .what = "the library's sequential loop: the baseline and the oracle",
     LIBRARY(MHB_IN_CLUSTER, .argv = peers_cell, .baseline = true, .color = "#000000")},
    {.name = "threads", .what = "the library's pthread pool",
     LIBRARY(MHB_IN_CLUSTER, .argv = peers_cell, .chunk_sweep = true,
             .stream_works = MHB_STREAM_JOBS | MHB_STREAM_BIG_MAP, .color = "#1f77b4")},
    {.name = "openmp", .what = "the library's OpenMP backend",
     LIBRARY(0, .argv = peers_cell, .chunk_sweep = true, .color = "#2ca02c")},
    {.name = "fork", .what = "the library's forked worker processes",
     LIBRARY(0, .argv = peers_cell, .chunk_sweep = true, .stream_works = MHB_STREAM_JOBS,
             .color = "#d62728")},
    /* mpirun with 32 ranks on 2 cores was seen to hang (Open MPI 4.1). */
    {.name = "mpi", .what = "the library's MPI ranks, under mpirun",
     LIBRARY(MHB_IN_CLUSTER, .argv = peers_mpi_cell, .env = peers_mpi_env, .launched = true, .workers_max = 16,
             .color = "#9467bd")},
    {.name = "raw-openmp", .what = "a bare `#pragma omp parallel for`, no library",
     .experiments = MHB_IN_MATRIX | MHB_IN_SEED, .does = peers_raw_loop, .argv = peers_raw,
     .tag = "raw-openmp ", .time_key = "seconds", .program = "$peers/raw-openmp",
     .needs = "OpenMP and GMP when CMake configured the build", .color = "#7f7f7f", .dash = 4},
    {.name = "tbb", .what = "oneTBB parallel_for (auto_partitioner) over the same kernel code",
     .experiments = MHB_IN_MATRIX | MHB_IN_SEED, .does = peers_cpu, .argv = peers_tbb,
     .tag = "tbb ", .time_key = "seconds", .program = "$peers/tbb",
     .needs = "libtbb-dev when CMake configured the build (scripts/install-deps)",
     .color = "#e377c2", .dash = 4},
    {.name = "evloop",
     .what = "one thread, W requests in flight: timerfd+epoll, non-blocking sockets+epoll, "
             "io_uring",
     .experiments = MHB_IN_MATRIX, .does = peers_io, .argv = peers_evloop, .tag = "evloop ",
     .time_key = "seconds", .program = "$peers/evloop", .probe = peers_evloop_probe,
     .needs = "the kernels (GMP); liburing-dev for file (scripts/install-deps)",
     .color = "#17becf", .dash = 4},
    {.name = "python-process", .what = "the blog's program: multiprocessing.Pool.map",
     BLOG_POOL(.reference = true, .argv = peers_pool, .color = "#ff7f0e")},
    {.name = "python-process-tuned",
     .what = "the same Pool.map with a tuned chunksize (seed_pool.py says which)",
     BLOG_POOL(.argv = peers_pool_tuned, .color = "#ffbb78")},
    {.name = "python-thread", .what = "the blog's program with ThreadPool (the GIL)",
     BLOG_POOL(.argv = peers_thread, .color = "#8c564b")},
    {.name = "joblib-batched", .what = "joblib Parallel (loky), batches of n/(4W) items",
     JOBLIB(.argv = peers_joblib_batched, .color = "#bcbd22")},
    /* joblib's automatic batching at n_jobs=1 took 144 s by hand: one run. */
    {.name = "joblib-auto", .what = "joblib Parallel (loky), its automatic batching",
     JOBLIB(.argv = peers_joblib_auto, .repeat_max = 1, .timeout_s = 900, .color = "#dbdb8d")},
};

#define PEERS_COUNT (sizeof peers_table / sizeof *peers_table)

/* A backend of this build that the table does not know: drawn in light blue. */
static struct mhb_runner peers_unknown[16];
static const struct mhb_runner *peers_list[PEERS_COUNT + 17];

static const struct mhb_runner *peers_entry(const char *name)
{
    for (size_t i = 0; i < PEERS_COUNT; i++)
        if (strcmp(peers_table[i].name, name) == 0)
            return &peers_table[i];
    return NULL;
}

const struct mhb_runner *const *mhb_runners(void)
{
    if (peers_list[0])
        return peers_list;
    size_t n = 0, unknown = 0;
    for (int baseline = 1; baseline >= 0; baseline--) { /* the baseline first */
        for (const char *const *b = mh_backends(); *b; b++) {
            const struct mhb_runner *r = peers_entry(*b);
            if (!r && unknown < 16 && !baseline) {
                peers_unknown[unknown] = (struct mhb_runner){
                    .name = *b, .what = "a library backend",
                    LIBRARY(0, .argv = peers_cell, .color = "#aec7e8")};
                r = &peers_unknown[unknown++];
            }
            if (r && r->baseline == (baseline == 1))
                peers_list[n++] = r;
        }
    }
    for (size_t i = 0; i < PEERS_COUNT; i++)
        if (!peers_table[i].library)
            peers_list[n++] = &peers_table[i];
    peers_list[n] = NULL;
    return peers_list;
}

const struct mhb_runner *mhb_runner_find(const char *name)
{
    for (const struct mhb_runner *const *r = mhb_runners(); *r; r++)
        if (strcmp((*r)->name, name) == 0)
            return *r;
    return NULL;
}

/* ---------------------------------------------------------- the command */

/* One token of a command: a copy into buf at *used, or the token itself. */
static const char *peers_token(const struct mhb_runner *runner, const char *token,
                               const struct mhb_call *c, char *buf, size_t size, size_t *used)
{
    char tmp[MHB_PATH_MAX + 64];
    if (token[0] != '$')
        return token;
    const char *name = token + 1;
    if (!strncmp(name, "peers/", 6))
        snprintf(tmp, sizeof tmp, "%s/%s", c->peers_dir, name + 6);
    else if (!strncmp(name, "src/", 4))
        snprintf(tmp, sizeof tmp, "%s/%s", c->source_dir, name + 4);
    else if (!strcmp(name, "self"))
        return c->self;
    else if (!strcmp(name, "mpiexec"))
        return c->mpiexec;
    else if (!strcmp(name, "name"))
        return runner->name;
    else if (!strcmp(name, "kernel"))
        return c->kernel->name;
    else if (!strcmp(name, "raw_loop"))
        return c->kernel->raw_loop ? c->kernel->raw_loop : "";
    else if (!strcmp(name, "items"))
        snprintf(tmp, sizeof tmp, "%zu", c->items);
    else if (!strcmp(name, "workers"))
        snprintf(tmp, sizeof tmp, "%d", c->workers);
    else if (!strcmp(name, "chunk"))
        snprintf(tmp, sizeof tmp, "%zu", c->chunk);
    else if (!strcmp(name, "seed"))
        snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)c->seed);
    else if (!strcmp(name, "repeat"))
        snprintf(tmp, sizeof tmp, "%d", c->repeat);
    else
        return NULL;
    size_t len = strlen(tmp) + 1;
    if (*used + len > size)
        return NULL;
    char *out = buf + *used;
    memcpy(out, tmp, len);
    *used += len;
    return out;
}

int mhb_runner_argv(const struct mhb_runner *runner, const struct mhb_call *call, char **argv,
                    int max, char *buf, size_t size)
{
    size_t used = 0;
    int a = 0;
    for (const char *const *t = runner->argv; *t; t++) {
        if (a + 1 >= max)
            return -1;
        const char *v = peers_token(runner, *t, call, buf, size, &used);
        if (!v)
            return -1;
        argv[a++] = (char *)v;
    }
    argv[a] = NULL;
    return 0;
}

bool mhb_runner_available(const struct mhb_runner *runner, const struct mhb_call *call,
                          char *why, size_t size)
{
    char buf[MHB_PATH_MAX + 64];
    size_t used = 0;
    const char *program =
        runner->program ? peers_token(runner, runner->program, call, buf, sizeof buf, &used)
                        : NULL;
    if (program && access(program, R_OK) != 0) {
        snprintf(why, size, "%s not found (needs %s)", program, runner->needs);
        return false;
    }
    if (!runner->probe)
        return true;
    struct mhb_runner probe = *runner;
    probe.argv = runner->probe;
    char *argv[16], args[2 * MHB_PATH_MAX];
    struct mhb_proc *p = malloc(sizeof *p);
    bool ok = p && mhb_runner_argv(&probe, call, argv, 16, args, sizeof args) == 0 &&
              mhb_proc_run(argv, NULL, 60, p) == 0 && WIFEXITED(p->status) &&
              WEXITSTATUS(p->status) == 0;
    if (!ok)
        snprintf(why, size, "'%s %s %s' failed (needs %s)", runner->probe[0],
                 runner->probe[1], runner->probe[2] ? runner->probe[2] : "", runner->needs);
    free(p);
    return ok;
}

/* --------------------------------------------------------- the result */

/* Value of " key=" in a result line into buf (one token). */
static bool peers_field(const char *line, const char *key, char *buf, size_t size)
{
    size_t klen = strlen(key), end = strcspn(line, "\n");
    for (const char *p = line; (p = strstr(p, key)) != NULL && p < line + end; p += klen) {
        if ((p != line && p[-1] != ' ') || p[klen] != '=')
            continue;
        p += klen + 1;
        size_t len = strcspn(p, " \n");
        if (len >= size)
            len = size - 1;
        memcpy(buf, p, len);
        buf[len] = '\0';
        return true;
    }
    return false;
}

static double peers_number(const char *line, const char *key)
{
    char buf[64];
    if (!peers_field(line, key, buf, sizeof buf))
        return NAN;
    char *end;
    double v = strtod(buf, &end);
    return *end || !buf[0] ? NAN : v;
}

/* Why a process did not give a result, from its status. */
static void peers_why(const struct mhb_proc *p, char *buf, size_t size)
{
    if (p->interrupted)
        snprintf(buf, size, "interrupted");
    else if (p->timed_out)
        snprintf(buf, size, "timeout after %.0f s", p->elapsed_s);
    else if (WIFSIGNALED(p->status))
        snprintf(buf, size, "killed by signal %d", WTERMSIG(p->status));
    else if (WIFEXITED(p->status) && WEXITSTATUS(p->status))
        snprintf(buf, size, "exit status %d", WEXITSTATUS(p->status));
    else
        snprintf(buf, size, "no result line");
}

void mhb_runner_parse(const struct mhb_runner *runner, const struct mhb_proc *p, int workers,
                      struct mhb_row *row)
{
    const char *line = mhb_find_line(p->out, runner->tag);
    row->verified = MHB_WRONG;
    if (!line) {
        peers_why(p, row->error, sizeof row->error);
        return;
    }
    row->wall_s = peers_number(line, runner->time_key);
    row->pool_s = peers_number(line, "pool");
    double chunk = peers_number(line, "chunk");
    row->chunk = isnan(chunk) ? 0 : (size_t)chunk;
    peers_field(line, "error", row->error, sizeof row->error);
    if (peers_number(line, "verified") == 1)
        row->verified = MHB_VERIFIED;
    else if (!row->error[0])
        snprintf(row->error, sizeof row->error, "wrong output (the %s run did not verify)",
                 runner->name);
    if (!row->error[0] && (p->timed_out || p->interrupted || p->status))
        peers_why(p, row->error, sizeof row->error);
    if (!row->error[0] && isnan(row->wall_s))
        snprintf(row->error, sizeof row->error, "no %s= in the result line", runner->time_key);
    /* A mismatched launcher gives W one-rank jobs: catch it here. */
    double ranks = peers_number(line, "workers");
    if (!row->error[0] && runner->launched && ranks != workers)
        snprintf(row->error, sizeof row->error,
                 "mpi pool has %.0f ranks, not %d (a mismatched launcher?)", ranks, workers);
    if (row->error[0])
        row->verified = MHB_WRONG;
}
