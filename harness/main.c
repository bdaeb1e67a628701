/*
 * manyhands-bench: the comparison matrix (runners x kernels x workers x
 * repeats), the seed's experiment beside the peers, streams against maps
 * (stream.c), and the internal `cell` command that runs one measured map
 * or stream in its own process.
 *
 * The parent plans the runs (plan.c), fork+execs each one (run.c: `cell`,
 * `mpirun -np W <self> cell`, or a peer program, as the runner table in
 * peers.c says), reads its result line, takes CPU time and peak RSS from
 * wait4, and writes one CSV row per run; then a summary and gnuplot
 * plots. It never runs a backend itself, so no runtime state (an OpenMP
 * team, a process pool, MPI) leaks from one cell into the next.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "manyhands.h"

static void main_on_signal(int sig)
{
    (void)sig;
    mhb_stop = 1;
}

int mhb_results_base(const struct mhb_options *o, const char *host, const char *what,
                     char *base, size_t size)
{
    char label[MHB_NAME_MAX];
    if (o->label[0]) {
        snprintf(label, sizeof label, "%s", o->label);
    } else {
        snprintf(label, sizeof label, "%s", host);
        for (char *c = label; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == '_'))
                *c = '_';
    }
    char dir[MHB_PATH_MAX + MHB_NAME_MAX + 2];
    snprintf(dir, sizeof dir, "%s/%s", o->out, label);
    if (mhb_mkdirs(dir)) {
        fprintf(stderr, "manyhands-bench: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char date[16];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%Y-%m-%d", &tm);
    int w = snprintf(base, size, "%s/%s-%s", dir, date, what);
    return w < 0 || (size_t)w >= size ? -1 : 0;
}

/* Paths of this executable and of the peer programs built beside it. */
static void main_paths(struct mhb_run *run)
{
    ssize_t len = readlink("/proc/self/exe", run->self, sizeof run->self - 1);
    run->self[len > 0 ? len : 0] = '\0';
    char *slash = strrchr(run->self, '/');
    snprintf(run->peers_dir, sizeof run->peers_dir, "%.*s/peers",
             slash ? (int)(slash - run->self) : 1, slash ? run->self : ".");
}

/* The summary, on stdout and beside the CSV (docs/results.md quotes it). */
static void main_summary(const struct mhb_run *run, const struct mhb_plans *plans,
                         const char *base)
{
    char summary[MHB_PATH_MAX + 16];
    snprintf(summary, sizeof summary, "%s-summary.txt", base);
    FILE *sf = fopen(summary, "w");
    for (int pass = 0; pass < 2; pass++) {
        FILE *out = pass ? sf : stdout;
        if (!out)
            continue;
        if (pass)
            fprintf(out, "manyhands-bench %s, %s, git %s, %s (%d logical / %d physical cores), "
                         "%s %s\n",
                    run->experiment, run->machine.host, run->machine.git_rev,
                    run->machine.cpu_model, run->machine.logical_cores,
                    run->machine.physical_cores, run->machine.compiler,
                    run->machine.build_type);
        mhb_load_line(out, &run->table, run->machine.logical_cores);
        if (run->skipped[0])
            fprintf(out, "Skipped (not available here): %s\n", run->skipped);
        if (run->in == MHB_IN_SEED)
            mhb_seed_report(out, run, plans);
        else if (run->in == MHB_IN_STREAM)
            mhb_stream_report(out, run);
        else
            mhb_summary(out, &run->table, run->machine.logical_cores);
    }
    if (!sf || fclose(sf))
        fprintf(stderr, "manyhands-bench: cannot write %s\n", summary);
}

/* After the runs: summary, counts, plots. 0 when every run succeeded. */
static int main_finish(const struct mhb_run *run, const struct mhb_plans *plans,
                       const char *base, const char *csv)
{
    main_summary(run, plans, base);
    size_t failed = 0, unverified = 0;
    for (size_t i = 0; i < run->table.n; i++) {
        failed += run->table.rows[i].error[0] != 0;
        unverified += run->table.rows[i].verified == MHB_WRONG;
    }
    printf("\n%zu runs in %.1f s (%zu failed, %zu not verified); CSV: %s\n", run->table.n,
           mhb_now() - run->started, failed, unverified, csv);
    if (!run->o->no_plot && run->in != MHB_IN_STREAM) { /* stream: tables only */
        int cores = run->machine.logical_cores;
        int prc = run->in == MHB_IN_SEED ? mhb_plot_seed(base, &run->table, cores, run->repeat)
                                         : mhb_plot_matrix(base, &run->table, cores, run->repeat);
        if (prc == 0)
            printf("plots: %s%s.png and .svg (script %s.gp)\n", base,
                   run->in == MHB_IN_SEED ? "" : "-*", base);
    }
    return failed || unverified ? 1 : 0;
}

static int main_experiment(const struct mhb_options *o)
{
    struct mhb_run run = {.o = o};
    struct mhb_plans plans = {0};
    int rc = 1;
    run.in = o->command == MHB_SEED     ? MHB_IN_SEED
             : o->command == MHB_STREAM ? MHB_IN_STREAM
                                        : MHB_IN_MATRIX;
    run.experiment = run.in == MHB_IN_SEED     ? "seed"
                     : run.in == MHB_IN_STREAM ? "stream"
                                               : "matrix";
    run.repeat = o->repeat ? o->repeat : o->quick ? 1 : 3;
    run.tty = isatty(2);
    main_paths(&run);
    mhb_machine_probe(&run.machine);
    if (mhb_plan(&run, &plans))
        goto out_free;
    if (plans.n == 0) {
        fprintf(stderr, "manyhands-bench: nothing to run\n");
        goto out_free;
    }
    char base[MHB_PATH_MAX], csv[MHB_PATH_MAX + 8];
    if (mhb_results_base(run.o, run.machine.host, run.experiment, base, sizeof base - 16))
        goto out_free;
    snprintf(csv, sizeof csv, "%s.csv", base);
    run.csv = mhb_csv_open(csv);
    if (!run.csv) {
        fprintf(stderr, "manyhands-bench: cannot write %s: %s\n", csv, strerror(errno));
        goto out_free;
    }
    fprintf(stderr, "manyhands-bench %s: %zu cells x %d repeats; %d CPUs; writing %s\n",
            run.experiment, plans.n, run.repeat, run.machine.logical_cores, csv);
    if (run.skipped[0])
        fprintf(stderr, "manyhands-bench: skipped (not available here): %s\n", run.skipped);
    int exec_rc = mhb_execute(&run, &plans);
    fclose(run.csv);
    run.csv = NULL;
    if (exec_rc)
        fprintf(stderr, "\nmanyhands-bench: stopped after %zu of %zu runs; rows so far in %s\n",
                run.done, run.total, csv);
    else
        rc = main_finish(&run, &plans, base, csv);
out_free:
    free(plans.v);
    free(run.table.rows);
    return rc;
}

int main(int argc, char **argv)
{
    static struct mhb_options o; /* large: not on the stack */
    const char *err = mhb_options_parse(&o, argc, argv);
    if (!err && o.command != MHB_HELP) {
        /* The kernels, or the stream experiment's kinds ("empty:stream"); a
         * cell runs either. */
        const char *kernels[96];
        int n = 0;
        for (const struct mhk_kernel *const *k = mhk_kernels(); *k && n < 63; k++)
            if (o.command != MHB_STREAM)
                kernels[n++] = (*k)->name;
        for (const struct mhb_stream_kind *k = mhb_stream_kinds(); k->row.name && n < 95; k++)
            if (o.command == MHB_STREAM || o.command == MHB_CELL)
                kernels[n++] = k->row.name;
        kernels[n] = NULL;
        /* The library's backends and the peers: the runner table's names. */
        const char *backends[64];
        int nb = 0;
        for (const struct mhb_runner *const *r = mhb_runners(); *r && nb < 63; r++)
            backends[nb++] = (*r)->name;
        backends[nb] = NULL;
        err = mhb_options_check(&o, backends, kernels);
    }
    if (err) {
        fprintf(stderr, "manyhands-bench: %s\nTry 'manyhands-bench --help'.\n", err);
        return 2;
    }
    switch (o.command) {
    case MHB_HELP:
        fputs(mhb_usage, stdout);
        return 0;
    case MHB_CELL:
        return mhb_cell_main(&o);
    case MHB_MATRIX:
    case MHB_SEED:
    case MHB_CLUSTER:
    case MHB_STREAM:
        break;
    }
    struct sigaction sa = {.sa_handler = main_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return o.command == MHB_CLUSTER ? mhb_cluster_main(&o) : main_experiment(&o);
}
