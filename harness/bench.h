/* manyhands-bench internals shared by its files (not a library). */
#ifndef MHB_BENCH_H
#define MHB_BENCH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

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

/* ---------------------------------------------------------------- results */

enum mhb_verified { MHB_UNCHECKED = -1, MHB_WRONG = 0, MHB_VERIFIED = 1 };

/* One run: one CSV row. */
struct mhb_row {
    char timestamp[32];
    double load_1m;         /* the machine's 1-minute load average then */
    const char *experiment; /* "matrix" or "seed" */
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

void mhb_machine_probe(struct mhb_machine *m);

/* The 1-minute load average (/proc/loadavg); NAN when unknown. */
double mhb_load_1m(void);

/* Create dir and its parents. 0 or -1 (errno). */
int mhb_mkdirs(const char *dir);

/* Open path for the CSV and write the header. NULL on failure (errno). */
FILE *mhb_csv_open(const char *path);
void mhb_csv_row(FILE *f, const struct mhb_machine *m, const struct mhb_row *r);

/* All rows of one run, for the summary and the plots. */
struct mhb_table {
    struct mhb_row *rows;
    size_t n, cap;
};

int mhb_table_add(struct mhb_table *t, const struct mhb_row *r);

/* Median wall (peers and library alike) and speedup of the rows that
 * match; NAN when none succeeded. chunk_asked SIZE_MAX matches any. */
double mhb_median_wall(const struct mhb_table *t, const char *backend, const char *kernel,
                       int workers, size_t chunk_asked);
double mhb_median_speedup(const struct mhb_table *t, const char *backend, const char *kernel,
                          int workers, size_t chunk_asked);

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
