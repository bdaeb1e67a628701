/* Running the plan: each cell's runs in their own process, one row each,
 * the baseline's first, then the rest in rounds; progress on stderr. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

void mhb_timestamp(char *buf, size_t size)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The row of a plan's run before it runs: what it is, no result yet. */
static void run_row_init(const struct mhb_run *run, const struct mhb_plan *plan, int repeat,
                         struct mhb_row *row)
{
    memset(row, 0, sizeof *row);
    row->experiment = run->experiment;
    snprintf(row->backend, sizeof row->backend, "%s", plan->runner->name);
    snprintf(row->kernel, sizeof row->kernel, "%s", plan->kernel->name);
    row->bound = plan->kernel->bound == MHK_IO ? "io" : "cpu";
    row->items = plan->items;
    row->workers = plan->workers;
    row->chunk_asked = plan->chunk;
    row->repeat = repeat;
    row->wall_s = row->pool_s = NAN;
    row->speedup = row->efficiency = row->items_per_s = NAN;
    row->verified = MHB_WRONG;
}

/* Run one planned cell once; fill row. */
static void run_once(const struct mhb_run *run, const struct mhb_plan *plan, int repeat,
                     struct mhb_row *row)
{
    const struct mhb_runner *runner = plan->runner;
    run_row_init(run, plan, repeat, row);
    char *argv[40], buf[4 * MHB_PATH_MAX];
    struct mhb_call call = mhb_plan_call(run, plan, repeat);
    struct mhb_proc *p = malloc(sizeof *p);
    if (!p) {
        snprintf(row->error, sizeof row->error, "out of memory");
    } else if (mhb_runner_argv(runner, &call, argv, 40, buf, sizeof buf)) {
        snprintf(row->error, sizeof row->error, "%s: command too long", runner->name);
    } else if (mhb_proc_run(argv, runner->env,
                            runner->timeout_s ? runner->timeout_s : run->o->timeout_s, p)) {
        snprintf(row->error, sizeof row->error, "could not start %s: %s", argv[0],
                 strerror(errno));
    } else {
        row->user_s = p->user_s;
        row->sys_s = p->sys_s;
        row->peak_rss_kib = p->maxrss_kib;
        mhb_runner_parse(runner, p, plan->workers, row);
        if (row->error[0] && !mhb_find_line(p->out, runner->tag)) {
            /* Keep its last words for the reader of stderr. */
            size_t len = strlen(p->out);
            fprintf(stderr, "\nmanyhands-bench: %s %s workers=%d: %s; its output ends:\n%s\n",
                    plan->kernel->name, runner->name, plan->workers, row->error,
                    p->out + (len > 600 ? len - 600 : 0));
        }
    }
    free(p);
    mhb_timestamp(row->timestamp, sizeof row->timestamp);
    row->load_1m = mhb_load_1m();
}

static void run_progress(struct mhb_run *run, const struct mhb_row *r)
{
    double elapsed = mhb_now() - run->started;
    double eta = run->done ? elapsed / (double)run->done * (double)(run->total - run->done) : 0;
    if (run->tty) {
        const int width = 30;
        int fill = (int)((double)width * (double)run->done / (double)run->total);
        char bar[64];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r[%s] %zu/%zu cells  %d:%02d elapsed  ETA %d:%02d  %s %s W=%d\033[K",
                bar, run->done, run->total, (int)elapsed / 60, (int)elapsed % 60,
                (int)eta / 60, (int)eta % 60, r->kernel, r->backend, r->workers);
        if (run->done == run->total)
            fputc('\n', stderr);
    } else {
        fprintf(stderr, "[%zu/%zu] %s %s %s workers=%d chunk=%zu repeat=%d: %.4f s %s%s\n",
                run->done, run->total, r->experiment, r->kernel, r->backend, r->workers,
                r->chunk_asked, r->repeat, r->wall_s,
                r->verified == MHB_VERIFIED ? "verified" : "NOT VERIFIED ", r->error);
    }
}

/* The runs of a plan: the run's repeats, or fewer when its runner says. */
static int run_repeats(const struct mhb_run *run, const struct mhb_plan *plan)
{
    int max = plan->runner->repeat_max;
    return max && max < run->repeat ? max : run->repeat;
}

/* One round's run of plans [i, end) of the baseline (pass 0) or the rest. */
static int run_round(struct mhb_run *run, const struct mhb_plans *plans, size_t i, size_t end,
                     int pass, int r)
{
    for (size_t j = i; j < end; j++) {
        const struct mhb_plan *plan = &plans->v[j];
        bool baseline = plan->runner->baseline;
        if (baseline != (pass == 0) || r >= run_repeats(run, plan))
            continue;
        if (mhb_stop)
            return -1;
        struct mhb_row row;
        run_once(run, plan, r, &row);
        /* The baseline's own rates wait until all its runs are in. */
        if (!baseline)
            mhb_row_rates(&row, mhb_baseline_wall(&run->table, plan->kernel->name));
        if (mhb_table_add(&run->table, &row))
            return -1;
        run->done++;
        run_progress(run, &row);
        if (!baseline && run->csv)
            mhb_csv_row(run->csv, &run->machine, &row);
    }
    return 0;
}

/* The baseline's rows of kernel: rates against their own median, then
 * written. */
static void run_baseline_rows(struct mhb_run *run, const char *kernel)
{
    double base = mhb_baseline_wall(&run->table, kernel);
    for (size_t t = 0; t < run->table.n; t++) {
        struct mhb_row *row = &run->table.rows[t];
        const struct mhb_runner *r = mhb_runner_find(row->backend);
        if (!r || !r->baseline || strcmp(row->kernel, kernel))
            continue;
        mhb_row_rates(row, base);
        if (run->csv)
            mhb_csv_row(run->csv, &run->machine, row);
    }
}

static const void *run_group(const struct mhb_plan *plan)
{
    return plan->group ? plan->group : plan->kernel;
}

int mhb_execute(struct mhb_run *run, const struct mhb_plans *plans)
{
    run->total = 0;
    for (size_t i = 0; i < plans->n; i++)
        run->total += (size_t)run_repeats(run, &plans->v[i]);
    run->started = mhb_now();
    for (size_t i = 0, end; i < plans->n; i = end) {
        const void *group = run_group(&plans->v[i]);
        for (end = i; end < plans->n && run_group(&plans->v[end]) == group;)
            end++;
        for (int pass = 0; pass < 2; pass++) {
            for (int r = 0; r < run->repeat; r++)
                if (run_round(run, plans, i, end, pass, r))
                    return -1;
            /* Each kernel's baseline rows, once, after their runs. */
            for (size_t j = i; pass == 0 && j < end; j++)
                if (j == i || plans->v[j].kernel != plans->v[j - 1].kernel)
                    run_baseline_rows(run, plans->v[j].kernel->name);
        }
    }
    if (run->csv)
        fflush(run->csv);
    return 0;
}
