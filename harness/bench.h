/* manyhands-bench internals shared by its files (not a library). */
#ifndef MHB_BENCH_H
#define MHB_BENCH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels.h"
#include "options.h"

/* The line a cell prints; the parent looks for it in the cell's output. */
#define MHB_CELL_TAG "mhb-cell "

/* ------------------------------------------------------------- processes */

/* What one child process did. */
struct mhb_proc {
    int status;          /* wait status */
    bool timed_out;      /* killed after the timeout */
    bool interrupted;    /* killed because we were asked to stop */
    double user_s, sys_s; /* CPU of it and its descendants (wait4) */
    long maxrss_kib;     /* peak RSS of its largest process */
    double elapsed_s;    /* wall time of the whole process */
    char out[16384];     /* the end of its stdout and stderr, NUL-terminated */
};

/* Set by SIGINT/SIGTERM: stop at the next chance. */
extern volatile sig_atomic_t mhb_stop;

/*
 * Run argv (argv[0] a path, or a name looked up in PATH) in a new process
 * group, stdin from /dev/null, stdout and stderr into p->out, with env
 * (NULL-terminated "NAME=value" list, or NULL) added to the environment.
 * Killed, with its whole group, after timeout_s. Returns 0 when it ran
 * (whatever its exit status), -1 when it could not be started.
 */
int mhb_proc_run(char *const argv[], char *const env[], double timeout_s, struct mhb_proc *p);

/* Find the line starting with tag in out; NULL if none. */
const char *mhb_find_line(const char *out, const char *tag);

/* Monotonic seconds. */
double mhb_now(void);

/* --------------------------------------------------------------- the cell */

/* Run one measured cell in this process (the `cell` command). */
int mhb_cell_main(const struct mhb_options *o);

/* The `cluster` experiment (harness/cluster.c). 0, or 1 when a run
 * failed. */
int mhb_cluster_main(const struct mhb_options *o);

/* This process's MPI rank from the launcher's environment (Open MPI,
 * PMIx, MPICH), without linking MPI; 0 when not under a launcher. */
int mhb_cell_rank(void);

/* The cell's result line (MHB_CELL_TAG ...) on stdout; error ("" when
 * none) made one token in place. */
void mhb_cell_print(const struct mhb_options *o, int workers, size_t chunk, double wall,
                    double pool_s, int verified, char *error);

/* What mhb_cell_time measured of one call. */
struct mhb_cell_timing {
    struct mh_report report;
    double wall;     /* the call's seconds */
    double pool_s;   /* the pool's open and close */
    char error[128]; /* "" or what failed */
};

/* Open a pool on config, time call(arg, pool, &t->report) on it alone,
 * close the pool. Returns call's code, or the open's; on either, t->error
 * says which ("open:CODE", or "<what>:CODE item=I signal=S"). */
int mhb_cell_time(const struct mh_config *config, const char *what,
                  int (*call)(void *arg, mh_pool *pool, struct mh_report *report),
                  void *arg, struct mhb_cell_timing *t);

/* ------------------------------------------------------------ the stream */

/* What a cell of the stream experiment (harness/stream.c) runs: a work
 * and how it is called. */
enum mhb_stream_work {
    MHB_WORK_SEED,  /* the seed's kernel (its descriptor's seed_items) */
    MHB_WORK_EMPTY, /* a function that does nothing, int in and out */
    MHB_WORK_JOBS,  /* the same, as one-item jobs (chunk 1) */
    MHB_WORK_IO,    /* the first IO-bound kernel (sleep: 1 ms per item) */
    MHB_WORK_COPY,  /* out = in, int items: memory against the item count */
};
enum mhb_stream_call {
    MHB_CALL_MAP,          /* one mh_map of every item */
    MHB_CALL_MAPS,         /* one mh_map per item */
    MHB_CALL_STREAM,       /* mh_stream, MH_ORDERED */
    MHB_CALL_AS_COMPLETED, /* mh_stream, MH_AS_COMPLETED */
};

/* One kind of cell. `row` is what the plan and the rows see: its name,
 * "<work>:<call>" (the CSV's kernel column), bound and item counts. */
struct mhb_stream_kind {
    struct mhk_kernel row;
    enum mhb_stream_work work;
    enum mhb_stream_call call;
    const struct mhk_kernel *kernel; /* seed and io: the kernel; else NULL */
    size_t chunks[2];                /* asked, each a cell; 0: adaptive */
    int n_chunks;
    int workers[2], n_workers;       /* the default worker counts */
    int quick_workers;               /* with --quick: 1 and this */
    unsigned needs;                  /* MHB_STREAM_* a runner must have; 0: any */
};

/* The kinds, ending with one whose row.name is NULL. */
const struct mhb_stream_kind *mhb_stream_kinds(void);

/* The kind called name, or NULL. */
const struct mhb_stream_kind *mhb_stream_find(const char *name);

/* `cell` for a stream kind: one measured call, one result line. */
int mhb_stream_cell_main(const struct mhb_options *o);

/* ---------------------------------------------------------------- results */

enum mhb_verified { MHB_UNCHECKED = -1, MHB_WRONG = 0, MHB_VERIFIED = 1 };

/* One run: one CSV row. */
struct mhb_row {
    char timestamp[32];
    double load_1m;         /* the machine's 1-minute load average then */
    const char *experiment; /* "matrix", "seed", "cluster" or "stream" */
    char backend[MHB_NAME_MAX];
    char kernel[MHB_NAME_MAX];
    const char *bound;      /* "cpu" or "io" */
    size_t items;
    int workers;
    size_t chunk_asked;     /* 0 = adaptive */
    size_t chunk;           /* what the map used; 0 when unknown */
    int repeat;
    double wall_s;          /* the map (peers: their own timing) */
    double pool_s;          /* pool open + close; NAN for peers */
    double user_s, sys_s;   /* the whole cell process tree */
    long peak_rss_kib;
    double speedup;         /* seq median wall / wall; NAN if no seq */
    double efficiency;      /* speedup / workers */
    double items_per_s;
    int verified;           /* enum mhb_verified */
    char error[128];        /* "" when the run succeeded */
};

/* The table's rows of one run. */
struct mhb_table {
    struct mhb_row *rows;
    size_t n, cap;
};

/* ------------------------------------------------------------- the peers */

#include "runner.h"

/* This machine and build, the same on every row. */
struct mhb_machine {
    char host[64];
    char cpu_model[128];
    int logical_cores;   /* CPUs this process may run on */
    int physical_cores;
    char compiler[64];
    char build_type[32];
    char git_rev[64];
};

/* ---------------------------------------------------------- plan and run */

/* One planned cell (run `repeat` times). */
struct mhb_plan {
    const struct mhb_runner *runner;
    const struct mhk_kernel *kernel;
    size_t items;
    int workers;
    size_t chunk; /* asked; 0 = adaptive */
    /* Consecutive plans of one group run in the same rounds, so that a
     * slow minute hits all of them (NULL: the group is its kernel's). */
    const void *group;
};

struct mhb_plans {
    struct mhb_plan *v;
    size_t n, cap;
};

/* One invocation of the matrix or the seed experiment. */
struct mhb_run {
    const struct mhb_options *o;
    const char *experiment;       /* "matrix", "seed" or "stream" */
    unsigned in;                  /* MHB_IN_MATRIX, MHB_IN_SEED or MHB_IN_STREAM */
    char self[MHB_PATH_MAX];      /* this executable */
    char peers_dir[MHB_PATH_MAX]; /* where the peer programs are built */
    struct mhb_machine machine;
    int repeat;
    FILE *csv;
    struct mhb_table table;
    char skipped[1024]; /* "name: why; ..." of the runners that cannot run here */
    size_t done, total;
    double started;
    bool tty;
};

/* base = DIR/LABEL/<date>-<what> ("results/vm/2026-11-26-matrix"), LABEL
 * --label or host (made safe for a path); DIR/LABEL is created. 0 or -1
 * (said on stderr). */
int mhb_results_base(const struct mhb_options *o, const char *host, const char *what,
                     char *base, size_t size);

/* The time now, as a row's timestamp (UTC, ISO 8601). */
void mhb_timestamp(char *buf, size_t size);

/* The cells of run's experiment (run->in), in the order they run. */
int mhb_plan(struct mhb_run *run, struct mhb_plans *plans);

/* Whether the --backends list selects name (an empty list: every one). */
bool mhb_plan_selected(const struct mhb_options *o, const char *name);

/* The stream experiment's cells (harness/stream.c); a backend whose
 * stream is not there yet (MH_ENOTSUP) is noted in run->skipped. */
int mhb_stream_plan(struct mhb_run *run, struct mhb_plans *plans);

/* The stream experiment's report: per work, each call beside the map. */
void mhb_stream_report(FILE *out, const struct mhb_run *run);

/* Run every plan, repeats in rounds; rows into run->table and the CSV.
 * 0, or -1 when stopped or out of memory. */
int mhb_execute(struct mhb_run *run, const struct mhb_plans *plans);

/* The call (command tokens) of a plan's run. */
struct mhb_call mhb_plan_call(const struct mhb_run *run, const struct mhb_plan *plan, int repeat);

/* The seed experiment's report: the blog's lines, the side-by-side table. */
void mhb_seed_report(FILE *out, const struct mhb_run *run, const struct mhb_plans *plans);

/* ------------------------------------------------------------ statistics */

/* The median of v[0..n) (sorted in place): the middle value, or the mean
 * of the two middle ones; NAN when n is 0. The one median of the harness. */
double mhb_median(double *v, size_t n);

/* What a statistic is taken of. */
enum mhb_field {
    MHB_WALL,    /* wall_s */
    MHB_SECONDS, /* wall_s + pool_s (what the blog's run() times) */
    MHB_SPEEDUP, /* speedup */
    MHB_CHUNK,   /* the chunk the map used */
    MHB_RSS_MIB, /* peak RSS, MiB */
    MHB_CPU,     /* user + sys seconds */
};

/* Which rows: name and kernel (NULL: any), workers (0: any), chunk_asked
 * (SIZE_MAX: any). Failed rows never match. */
struct mhb_match {
    const char *backend, *kernel;
    int workers;
    size_t chunk_asked;
};

int mhb_table_add(struct mhb_table *t, const struct mhb_row *r);

/* Room for item n in the array *v of *cap items of size bytes (doubling);
 * 0, or -1 when out of memory (*v unchanged). */
int mhb_reserve(void **v, size_t *cap, size_t n, size_t size);

/* Median of field over the rows that match; NAN when none. */
double mhb_stat(const struct mhb_table *t, struct mhb_match m, enum mhb_field field);

/* Set row's items_per_s, speedup and efficiency from its wall time and
 * the baseline's median wall time (NAN: no speedup). */
void mhb_row_rates(struct mhb_row *row, double baseline_wall);

/* The baseline's (seq's) median wall for kernel; NAN when none. */
double mhb_baseline_wall(const struct mhb_table *t, const char *kernel);

/* Distinct names, in order of first appearance. */
struct mhb_names {
    const char *v[64];
    int n;
};

void mhb_names_add(struct mhb_names *s, const char *name);

/* The kernels of the table; its runners that are not the baseline. */
void mhb_table_names(const struct mhb_table *t, struct mhb_names *kernels,
                     struct mhb_names *runners);

/* Add x to the ascending list v[0..n) unless it is there or the list has
 * max; returns the new length. */
int mhb_add_sorted(size_t *v, int n, int max, size_t x);

/* The worker counts of kernel's adaptive-chunk rows (the baseline's
 * aside; kernel NULL: every kernel's), ascending, at most max. */
int mhb_table_workers(const struct mhb_table *t, const char *kernel, int *w, int max);

/* The first row of kernel, or NULL. */
const struct mhb_row *mhb_table_first(const struct mhb_table *t, const char *kernel);

/* The fastest library backend's median speedup on kernel at w (which:
 * its name); NAN when none. */
double mhb_best_library(const struct mhb_table *t, const struct mhb_names *runners,
                        const char *kernel, int w, const char **which);

void mhb_machine_probe(struct mhb_machine *m);

/* The 1-minute load average (/proc/loadavg); NAN when unknown. */
double mhb_load_1m(void);

/* Create dir and its parents. 0 or -1 (errno). */
int mhb_mkdirs(const char *dir);

/* Open path for the CSV and write the header. NULL on failure (errno). */
FILE *mhb_csv_open(const char *path);
void mhb_csv_row(FILE *f, const struct mhb_machine *m, const struct mhb_row *r);

/* One line: the load average over the run's rows, against the cores. */
void mhb_load_line(FILE *f, const struct mhb_table *t, int cores);

/* Print the matrix summary: per kernel, speedup by backend and workers,
 * the best; then one verdict line per bound. */
void mhb_summary(FILE *f, const struct mhb_table *t, int cores);

/* Write <base>.gp and run gnuplot on it: <base>-<kernel>.png/.svg,
 * <base>-bound.png/.svg (and -chunks when the run swept chunk sizes).
 * 0, or -1 when gnuplot failed or is missing (reported on stderr). */
int mhb_plot_matrix(const char *base, const struct mhb_table *t, int cores, int repeat);
int mhb_plot_seed(const char *base, const struct mhb_table *t, int cores, int repeat);

#endif /* MHB_BENCH_H */
