/*
 * manyhands-bench: the comparison matrix (backends x kernels x workers x
 * repeats), the seed's experiment beside Python, and the internal `cell`
 * command that runs one measured map in its own process.
 *
 * The parent plans the runs, fork+execs itself (`cell`, or `mpirun -np W
 * <self> cell` for mpi) once per run, reads the cell's result line, takes
 * CPU time and peak RSS from wait4, and writes one CSV row per run; then a
 * summary and gnuplot plots. It never runs a backend itself, so no runtime
 * state (an OpenMP team, a process pool, MPI) leaks from one cell into the
 * next.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "kernels.h"
#include "manyhands.h"

#ifndef MHB_SOURCE_DIR
#define MHB_SOURCE_DIR "."
#endif
/* The launcher of the MPI the library was built with (CMake's FindMPI):
 * another MPI's would start W one-rank jobs instead of one W-rank job. */
#ifndef MHB_MPIEXEC
#define MHB_MPIEXEC "mpirun"
#endif

/* Past this many ranks `mpirun` on one small machine is slow to start and
 * has been seen to hang (Open MPI 4.1, 32 ranks on 2 cores): the default
 * worker lists stop mpi here. An explicit --workers is obeyed. */
#define MAIN_MPI_DEFAULT_MAX 16

/* Default items of the seed experiment: the blog's. */
#define MAIN_SEED_ITEMS 1000000

enum main_kind {
    MAIN_LIB,            /* a library backend through `cell` */
    MAIN_PYTHON_PROCESS, /* seed_pool.py with multiprocessing.Pool */
    MAIN_PYTHON_THREAD,  /* seed_pool.py with ThreadPool */
    MAIN_RAW,            /* the raw OpenMP loop */
};

/* One planned cell (run `repeat` times). */
struct main_plan {
    enum main_kind kind;
    const char *backend;
    const struct mhk_kernel *kernel;
    size_t items;
    int workers;
    size_t chunk;          /* asked; 0 = adaptive */
    const char *raw_kernel; /* MAIN_RAW: its --kernel */
};

struct main_plans {
    struct main_plan *v;
    size_t n, cap;
};

/* Where things are and what the run is. */
struct main_run {
    const struct mhb_options *o;
    const char *experiment;
    char self[MHB_PATH_MAX];    /* this executable */
    char raw[MHB_PATH_MAX];     /* the raw-openmp binary, "" if not built */
    char python[MHB_PATH_MAX];  /* seed_pool.py */
    struct mhb_machine machine;
    int repeat;
    FILE *csv;
    struct mhb_table table;
    size_t done, total;
    double started;
    bool tty;
};

static void main_on_signal(int sig)
{
    (void)sig;
    mhb_stop = 1;
}

static int main_plan_add(struct main_plans *p, struct main_plan plan)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        struct main_plan *v = realloc(p->v, cap * sizeof *v);
        if (!v)
            return -1;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = plan;
    return 0;
}

/* Value of " key=" in a result line into buf (one token). */
static bool main_field(const char *line, const char *key, char *buf, size_t size)
{
    size_t klen = strlen(key);
    for (const char *p = line; (p = strstr(p, key)) != NULL; p += klen) {
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

static double main_field_double(const char *line, const char *key)
{
    char buf[64];
    if (!main_field(line, key, buf, sizeof buf))
        return NAN;
    char *end;
    double v = strtod(buf, &end);
    return *end ? NAN : v;
}

static void main_timestamp(char *buf, size_t size)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Why a process did not give a result, from its status and output. */
static void main_why(const struct mhb_proc *p, char *buf, size_t size)
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

/* Run one planned cell once; fill row. */
static void main_run_once(struct main_run *run, const struct main_plan *plan, int repeat,
                          struct mhb_row *row)
{
    const struct mhb_options *o = run->o;
    char items[32], workers[16], chunk[32], seed[32], rep[16];
    snprintf(items, sizeof items, "%zu", plan->items);
    snprintf(workers, sizeof workers, "%d", plan->workers);
    snprintf(chunk, sizeof chunk, "%zu", plan->chunk);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    snprintf(rep, sizeof rep, "%d", repeat);

    memset(row, 0, sizeof *row);
    row->experiment = run->experiment;
    snprintf(row->backend, sizeof row->backend, "%s", plan->backend);
    snprintf(row->kernel, sizeof row->kernel, "%s", plan->kernel->name);
    row->bound = plan->kernel->bound == MHK_IO ? "io" : "cpu";
    row->items = plan->items;
    row->workers = plan->workers;
    row->chunk_asked = plan->chunk;
    row->repeat = repeat;
    row->wall_s = row->pool_s = NAN;
    row->speedup = row->efficiency = row->items_per_s = NAN;
    row->verified = MHB_WRONG;

    static char *const mpi_env[] = {
        "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
        "OMPI_MCA_rmaps_base_oversubscribe=1", NULL,
    };
    char *argv[32];
    int a = 0;
    char *const *env = NULL;
    switch (plan->kind) {
    case MAIN_LIB:
        if (strcmp(plan->backend, "mpi") == 0) {
            argv[a++] = MHB_MPIEXEC;
            argv[a++] = "-np";
            argv[a++] = workers;
            env = mpi_env;
        }
        argv[a++] = run->self;
        argv[a++] = "cell";
        argv[a++] = "--backends";
        argv[a++] = (char *)plan->backend;
        argv[a++] = "--kernels";
        argv[a++] = (char *)plan->kernel->name;
        argv[a++] = "--items";
        argv[a++] = items;
        argv[a++] = "--workers";
        argv[a++] = workers;
        argv[a++] = "--chunks";
        argv[a++] = chunk;
        argv[a++] = "--seed";
        argv[a++] = seed;
        argv[a++] = "--cell-repeat";
        argv[a++] = rep;
        break;
    case MAIN_PYTHON_PROCESS:
    case MAIN_PYTHON_THREAD:
        argv[a++] = "/usr/bin/python3";
        argv[a++] = run->python;
        argv[a++] = plan->kind == MAIN_PYTHON_THREAD ? "thread" : "process";
        argv[a++] = workers;
        argv[a++] = items;
        argv[a++] = "1";
        argv[a++] = seed;
        row->verified = MHB_UNCHECKED;
        break;
    case MAIN_RAW:
        argv[a++] = run->raw;
        argv[a++] = "--kernel";
        argv[a++] = (char *)plan->raw_kernel;
        argv[a++] = "--items";
        argv[a++] = items;
        argv[a++] = "--workers";
        argv[a++] = workers;
        argv[a++] = "--repeat";
        argv[a++] = "1";
        argv[a++] = "--seed";
        argv[a++] = seed;
        row->verified = MHB_UNCHECKED;
        break;
    }
    argv[a] = NULL;

    struct mhb_proc *p = malloc(sizeof *p);
    if (!p) {
        snprintf(row->error, sizeof row->error, "out of memory");
        goto out_stamp;
    }
    if (mhb_proc_run(argv, env, o->timeout_s, p)) {
        snprintf(row->error, sizeof row->error, "could not start %s: %s", argv[0],
                 strerror(errno));
        goto out_free;
    }
    row->user_s = p->user_s;
    row->sys_s = p->sys_s;
    row->peak_rss_kib = p->maxrss_kib;

    const char *line;
    switch (plan->kind) {
    case MAIN_LIB:
        line = mhb_find_line(p->out, MHB_CELL_TAG);
        if (!line) {
            main_why(p, row->error, sizeof row->error);
            break;
        }
        row->wall_s = main_field_double(line, "wall");
        row->pool_s = main_field_double(line, "pool");
        double ch = main_field_double(line, "chunk");
        row->chunk = isnan(ch) ? 0 : (size_t)ch;
        double v = main_field_double(line, "verified");
        row->verified = v == 1 ? MHB_VERIFIED : MHB_WRONG;
        main_field(line, "error", row->error, sizeof row->error);
        if (!row->error[0] && (p->timed_out || p->interrupted || p->status))
            main_why(p, row->error, sizeof row->error);
        /* A mismatched launcher gives W one-rank jobs: catch it here. */
        double ranks = main_field_double(line, "workers");
        if (!row->error[0] && strcmp(plan->backend, "mpi") == 0 && ranks != plan->workers) {
            snprintf(row->error, sizeof row->error, "mpi pool has %.0f ranks, not %d "
                     "(a mismatched launcher?)", ranks, plan->workers);
            row->verified = MHB_WRONG;
        }
        break;
    case MAIN_PYTHON_PROCESS:
    case MAIN_PYTHON_THREAD:
        line = strstr(p->out, "Seconds: ");
        if (line && !p->status)
            row->wall_s = strtod(line + 9, NULL);
        else
            main_why(p, row->error, sizeof row->error);
        break;
    case MAIN_RAW:
        line = mhb_find_line(p->out, "raw-openmp ");
        if (line && !p->status) {
            row->wall_s = main_field_double(line, "seconds");
            row->chunk = 0;
        } else {
            main_why(p, row->error, sizeof row->error);
        }
        break;
    }
    if (row->error[0] && plan->kind == MAIN_LIB && !mhb_find_line(p->out, MHB_CELL_TAG)) {
        /* Keep the cell's last words for the reader of stderr. */
        const char *tail = p->out + (strlen(p->out) > 600 ? strlen(p->out) - 600 : 0);
        fprintf(stderr, "\nmanyhands-bench: %s %s workers=%d: %s; its output ends:\n%s\n",
                plan->kernel->name, plan->backend, plan->workers, row->error, tail);
    }
out_free:
    free(p);
out_stamp:
    main_timestamp(row->timestamp, sizeof row->timestamp);
    row->load_1m = mhb_load_1m();
}

static void main_progress(struct main_run *run, const struct mhb_row *r)
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
                r->verified == MHB_VERIFIED ? "verified"
                : r->verified == MHB_UNCHECKED ? "(not checked)" : "NOT VERIFIED ",
                r->error);
    }
}

/* Run every plan `repeat` times: for each kernel, seq's runs first (the
 * baseline every other row's speedup needs), then repeat rounds over the
 * rest, so slow drift of the machine spreads over all backends. */
static int main_execute(struct main_run *run, const struct main_plans *plans)
{
    run->total = plans->n * (size_t)run->repeat;
    run->started = mhb_now();
    size_t i = 0;
    while (i < plans->n) {
        const struct mhk_kernel *k = plans->v[i].kernel;
        size_t end = i;
        while (end < plans->n && plans->v[end].kernel == k)
            end++;
        for (int pass = 0; pass < 2; pass++) {
            for (int r = 0; r < run->repeat; r++) {
                for (size_t j = i; j < end; j++) {
                    const struct main_plan *plan = &plans->v[j];
                    bool is_seq = plan->kind == MAIN_LIB && strcmp(plan->backend, "seq") == 0;
                    if (is_seq != (pass == 0))
                        continue;
                    if (mhb_stop)
                        return -1;
                    struct mhb_row row;
                    main_run_once(run, plan, r, &row);
                    /* seq's own speedup waits until all its runs are in (below). */
                    double base = is_seq ? NAN
                                         : mhb_median_wall(&run->table, "seq", k->name, 1,
                                                           SIZE_MAX);
                    if (!row.error[0] && row.wall_s > 0) {
                        row.items_per_s = (double)row.items / row.wall_s;
                        if (!isnan(base)) {
                            row.speedup = base / row.wall_s;
                            row.efficiency = row.speedup / row.workers;
                        }
                    }
                    if (mhb_table_add(&run->table, &row))
                        return -1;
                    run->done++;
                    main_progress(run, &row);
                    if (!is_seq && run->csv)
                        mhb_csv_row(run->csv, &run->machine, &row);
                }
            }
            if (pass == 0) {
                /* seq rows: speedup against their own median, then written. */
                double base = mhb_median_wall(&run->table, "seq", k->name, 1, SIZE_MAX);
                for (size_t t = 0; t < run->table.n; t++) {
                    struct mhb_row *row = &run->table.rows[t];
                    if (strcmp(row->backend, "seq") || strcmp(row->kernel, k->name) ||
                        row->experiment != run->experiment)
                        continue;
                    if (!row->error[0] && row->wall_s > 0 && !isnan(base)) {
                        row->speedup = base / row->wall_s;
                        row->efficiency = row->speedup / row->workers;
                    }
                    if (run->csv)
                        mhb_csv_row(run->csv, &run->machine, row);
                }
            }
        }
        i = end;
    }
    if (run->csv)
        fflush(run->csv);
    return 0;
}

/* The default worker counts of a kernel. */
static int main_default_workers(const struct mhb_options *o, enum mhk_bound bound, int cores,
                                int *list)
{
    int n = 0;
    if (bound == MHK_CPU) {
        if (o->quick) {
            list[n++] = 1;
            if (cores > 1)
                list[n++] = cores;
            return n;
        }
        for (int w = 1; w <= cores && n < MHB_LIST_MAX - 1; w++)
            list[n++] = w;
        list[n++] = 2 * cores;
        return n;
    }
    if (o->quick) {
        list[n++] = 1;
        list[n++] = 8;
        return n;
    }
    for (int w = 1; w <= 64; w *= 2)
        list[n++] = w;
    return n;
}

static size_t main_items(const struct mhb_options *o, size_t dflt)
{
    if (o->items)
        return o->items;
    double n = (double)dflt * o->scale;
    return n < 1 ? 1 : (size_t)n;
}

/* Selected names: the option's list, or every one of all. */
static bool main_selected(const char names[][MHB_NAME_MAX], int count, const char *name)
{
    if (count == 0)
        return true;
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* The kernel the default matrix sweeps chunk sizes on: the irregular one,
 * where chunking matters most. */
static const char *const main_sweep_kernels[] = {"primes", "mandelbrot", "irregular", NULL};
static const size_t main_sweep_chunks[] = {1, 16, 256, 4096};

static int main_plan_matrix(const struct main_run *run, struct main_plans *plans)
{
    const struct mhb_options *o = run->o;
    const char *const *backends = mh_backends();
    int cores = run->machine.logical_cores;
    bool swept = false;
    for (const struct mhk_kernel *const *kp = mhk_kernels(); *kp; kp++) {
        const struct mhk_kernel *k = *kp;
        if (!main_selected(o->kernels, o->n_kernels, k->name))
            continue;
        size_t items = main_items(o, o->quick ? k->quick_items : k->default_items);
        int wl[MHB_LIST_MAX];
        int nw = o->n_workers;
        if (nw)
            memcpy(wl, o->workers, sizeof(int) * (size_t)nw);
        else
            nw = main_default_workers(o, k->bound, cores, wl);
        size_t chunk0 = 0;
        struct main_plan seq = {MAIN_LIB, "seq", k, items, 1, chunk0, NULL};
        if (main_plan_add(plans, seq))
            return -1;
        for (const char *const *b = backends; *b; b++) {
            if (strcmp(*b, "seq") == 0 || !main_selected(o->backends, o->n_backends, *b))
                continue;
            for (int w = 0; w < nw; w++) {
                if (strcmp(*b, "mpi") == 0 && !o->n_workers && wl[w] > MAIN_MPI_DEFAULT_MAX)
                    continue;
                int nc = o->n_chunks ? o->n_chunks : 1;
                for (int c = 0; c < nc; c++) {
                    struct main_plan p = {MAIN_LIB, *b, k, items, wl[w],
                                          o->n_chunks ? o->chunks[c] : 0, NULL};
                    if (main_plan_add(plans, p))
                        return -1;
                }
            }
        }
        /* The floor: the same work in a raw OpenMP loop, no library. */
        const char *raw_kernel = strcmp(k->name, "factorial") == 0       ? "prealloc"
                                 : strcmp(k->name, "factorial-gmp") == 0 ? "fac_ui"
                                                                         : NULL;
        if (raw_kernel && run->raw[0] && !o->no_peers &&
            main_selected(o->backends, o->n_backends, "raw-openmp") && !o->n_chunks) {
            for (int w = 0; w < nw; w++) {
                struct main_plan p = {MAIN_RAW, "raw-openmp", k, items, wl[w], 0, raw_kernel};
                if (main_plan_add(plans, p))
                    return -1;
            }
        }
        /* Chunk sizes, on one irregular kernel at W = cores. */
        bool sweep = false;
        for (int s = 0; main_sweep_kernels[s]; s++)
            sweep |= strcmp(k->name, main_sweep_kernels[s]) == 0;
        if (sweep && !swept && !o->quick && !o->n_chunks && !o->n_workers) {
            swept = true;
            for (const char *const *b = backends; *b; b++) {
                if (!strcmp(*b, "seq") || !strcmp(*b, "mpi") ||
                    !main_selected(o->backends, o->n_backends, *b))
                    continue;
                for (size_t c = 0; c < sizeof main_sweep_chunks / sizeof *main_sweep_chunks;
                     c++) {
                    struct main_plan p = {MAIN_LIB, *b, k, items, cores, main_sweep_chunks[c],
                                          NULL};
                    if (main_plan_add(plans, p))
                        return -1;
                }
            }
        }
    }
    return 0;
}

static int main_plan_seed(const struct main_run *run, const struct mhk_kernel *k,
                          struct main_plans *plans)
{
    const struct mhb_options *o = run->o;
    size_t items = main_items(o, o->quick ? k->quick_items : MAIN_SEED_ITEMS);
    int wl[MHB_LIST_MAX] = {1, 2, 3, 4};
    int nw = o->n_workers ? o->n_workers : 4;
    if (o->n_workers)
        memcpy(wl, o->workers, sizeof(int) * (size_t)nw);
    if (main_plan_add(plans, (struct main_plan){MAIN_LIB, "seq", k, items, 1, 0, NULL}))
        return -1;
    for (const char *const *b = mh_backends(); *b; b++) {
        if (strcmp(*b, "seq") == 0 || !main_selected(o->backends, o->n_backends, *b))
            continue;
        for (int w = 0; w < nw; w++)
            if (main_plan_add(plans, (struct main_plan){MAIN_LIB, *b, k, items, wl[w], 0, NULL}))
                return -1;
    }
    if (o->no_peers)
        return 0;
    bool raw = run->raw[0] && main_selected(o->backends, o->n_backends, "raw-openmp");
    bool py_process = main_selected(o->backends, o->n_backends, "python-process");
    bool py_thread = main_selected(o->backends, o->n_backends, "python-thread");
    for (int w = 0; w < nw; w++) {
        if (raw &&
            main_plan_add(plans,
                          (struct main_plan){MAIN_RAW, "raw-openmp", k, items, wl[w], 0, "prealloc"}))
            return -1;
        if (access(run->python, R_OK) == 0 && access("/usr/bin/python3", X_OK) == 0) {
            if ((py_process &&
                 main_plan_add(plans, (struct main_plan){MAIN_PYTHON_PROCESS, "python-process",
                                                         k, items, wl[w], 0, NULL})) ||
                (py_thread &&
                 main_plan_add(plans, (struct main_plan){MAIN_PYTHON_THREAD, "python-thread", k,
                                                         items, wl[w], 0, NULL})))
                return -1;
        }
    }
    return 0;
}

/* Median of wall + pool (Python: its own timing) of a backend's runs at w,
 * what the blog's run() times; NAN when none succeeded. */
static double main_seed_seconds(const struct main_run *run, const char *backend, int w)
{
    double secs[1024];
    size_t n = 0;
    for (size_t t = 0; t < run->table.n && n < 1024; t++) {
        const struct mhb_row *r = &run->table.rows[t];
        if (!strcmp(r->backend, backend) && r->workers == w && !r->error[0])
            secs[n++] = r->wall_s + (isnan(r->pool_s) ? 0 : r->pool_s);
    }
    if (n == 0)
        return NAN;
    for (size_t x = 1; x < n; x++)
        for (size_t y = x; y > 0 && secs[y - 1] > secs[y]; y--) {
            double tmp = secs[y];
            secs[y] = secs[y - 1];
            secs[y - 1] = tmp;
        }
    return n % 2 ? secs[n / 2] : (secs[n / 2 - 1] + secs[n / 2]) / 2;
}

/* The blog's lines, per backend, medians; then one table side by side. */
static void main_seed_report(FILE *out, const struct main_run *run,
                             const struct main_plans *plans)
{
    const struct mhk_kernel *k = plans->v[0].kernel;
    const char *names[64];
    int nb = 0, ws[MHB_LIST_MAX], nw = 0;
    for (size_t i = 0; i < plans->n; i++) {
        bool seen = false;
        for (int j = 0; j < nb && !seen; j++)
            seen = strcmp(names[j], plans->v[i].backend) == 0;
        if (!seen && nb < 64)
            names[nb++] = plans->v[i].backend;
        seen = false;
        for (int j = 0; j < nw && !seen; j++)
            seen = ws[j] == plans->v[i].workers;
        if (!seen && nw < MHB_LIST_MAX)
            ws[nw++] = plans->v[i].workers;
    }
    fprintf(out, "\nseed: %s of %zu random ints in [1,100), median of %d run%s; Seconds = pool "
                 "start + map + stop\n(as the blog's run() times Pool(n) and map; Python's own "
                 "timing for python-*)\n",
            k->name, plans->v[0].items, run->repeat, run->repeat > 1 ? "s" : "");
    for (int b = 0; b < nb; b++) {
        fprintf(out, "backend: %s\n", names[b]);
        for (int i = 0; i < nw; i++) {
            if (!strcmp(names[b], "seq") && ws[i] != 1)
                continue;
            double s = main_seed_seconds(run, names[b], ws[i]);
            if (isnan(s))
                fprintf(out, "Processes: %d, Seconds: failed\n", ws[i]);
            else
                fprintf(out, "Processes: %d, Seconds: %.2f\n", ws[i], s);
        }
    }
    fprintf(out, "\nSide by side, seconds:\n%8s", "workers");
    for (int b = 0; b < nb; b++)
        fprintf(out, " %14s", names[b]);
    fprintf(out, "\n");
    for (int i = 0; i < nw; i++) {
        fprintf(out, "%8d", ws[i]);
        for (int b = 0; b < nb; b++) {
            double s = main_seed_seconds(run, names[b], ws[i]);
            if (isnan(s))
                fprintf(out, " %14s", "-");
            else
                fprintf(out, " %14.3f", s);
        }
        fprintf(out, "\n");
    }
    /* The question the blog asked, answered per worker count. */
    for (int i = 0; i < nw; i++) {
        double best = NAN, py = main_seed_seconds(run, "python-process", ws[i]);
        const char *which = NULL;
        for (int b = 0; b < nb; b++) {
            if (!strncmp(names[b], "python-", 7) || !strcmp(names[b], "raw-openmp") ||
                (!strcmp(names[b], "seq") && ws[i] != 1))
                continue;
            double s = main_seed_seconds(run, names[b], ws[i]);
            if (!isnan(s) && (isnan(best) || s < best)) {
                best = s;
                which = names[b];
            }
        }
        if (!isnan(best) && !isnan(py))
            fprintf(out, "%d worker%s: manyhands %s %.3f s, Python Pool %.3f s: %.1fx faster\n",
                    ws[i], ws[i] > 1 ? "s" : "", which, best, py, py / best);
    }
}

/* "results/vm/2026-11-26-matrix" */
static int main_base(const struct main_run *run, const char *what, char *base, size_t size)
{
    char label[MHB_NAME_MAX];
    if (run->o->label[0]) {
        snprintf(label, sizeof label, "%s", run->o->label);
    } else {
        snprintf(label, sizeof label, "%s", run->machine.host);
        for (char *c = label; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == '_'))
                *c = '_';
    }
    char dir[MHB_PATH_MAX + MHB_NAME_MAX + 2];
    snprintf(dir, sizeof dir, "%s/%s", run->o->out, label);
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

/* Paths of this executable and of the peers. */
static void main_paths(struct main_run *run)
{
    ssize_t len = readlink("/proc/self/exe", run->self, sizeof run->self - 1);
    run->self[len > 0 ? len : 0] = '\0';
    run->raw[0] = '\0';
    char *slash = strrchr(run->self, '/');
    if (slash) {
        snprintf(run->raw, sizeof run->raw, "%.*s/peers/raw-openmp",
                 (int)(slash - run->self), run->self);
        if (access(run->raw, X_OK) != 0)
            run->raw[0] = '\0';
    }
    snprintf(run->python, sizeof run->python, "%s/harness/peers/seed_pool.py", MHB_SOURCE_DIR);
}

static int main_experiment(const struct mhb_options *o)
{
    struct main_run run = {.o = o};
    struct main_plans plans = {0};
    int rc = 1;
    run.experiment = o->command == MHB_SEED ? "seed" : "matrix";
    run.repeat = o->repeat ? o->repeat : o->quick ? 1 : 3;
    run.tty = isatty(2);
    main_paths(&run);
    mhb_machine_probe(&run.machine);

    if (o->command == MHB_SEED) {
        const struct mhk_kernel *k = mhk_find("factorial");
        if (!k) {
            fprintf(stderr, "manyhands-bench: seed needs the factorial kernel\n");
            return 1;
        }
        if (main_plan_seed(&run, k, &plans))
            goto out_free;
    } else if (main_plan_matrix(&run, &plans)) {
        goto out_free;
    }
    if (plans.n == 0) {
        fprintf(stderr, "manyhands-bench: nothing to run\n");
        goto out_free;
    }
    char base[MHB_PATH_MAX], csv[MHB_PATH_MAX + 8];
    if (main_base(&run, run.experiment, base, sizeof base - 16))
        goto out_free;
    snprintf(csv, sizeof csv, "%s.csv", base);
    run.csv = mhb_csv_open(csv);
    if (!run.csv) {
        fprintf(stderr, "manyhands-bench: cannot write %s: %s\n", csv, strerror(errno));
        goto out_free;
    }
    fprintf(stderr, "manyhands-bench %s: %zu cells x %d repeats; this build has:",
            run.experiment, plans.n, run.repeat);
    for (const char *const *b = mh_backends(); *b; b++)
        fprintf(stderr, " %s", *b);
    fprintf(stderr, "%s%s; %d CPUs; writing %s\n", run.raw[0] ? " (+raw-openmp)" : "",
            o->command == MHB_SEED && !o->no_peers ? " (+python)" : "",
            run.machine.logical_cores, csv);

    int exec_rc = main_execute(&run, &plans);
    fclose(run.csv);
    run.csv = NULL;
    double took = mhb_now() - run.started;
    if (exec_rc) {
        fprintf(stderr, "\nmanyhands-bench: stopped after %zu of %zu runs; rows so far in %s\n",
                run.done, run.total, csv);
        goto out_free;
    }
    /* The summary, on stdout and beside the CSV (docs/results.md quotes it). */
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
                    run.experiment, run.machine.host, run.machine.git_rev,
                    run.machine.cpu_model, run.machine.logical_cores,
                    run.machine.physical_cores, run.machine.compiler, run.machine.build_type);
        mhb_load_line(out, &run.table, run.machine.logical_cores);
        if (o->command == MHB_SEED)
            main_seed_report(out, &run, &plans);
        else
            mhb_summary(out, &run.table, run.machine.logical_cores);
    }
    if (!sf || fclose(sf))
        fprintf(stderr, "manyhands-bench: cannot write %s\n", summary);
    size_t failed = 0, unverified = 0;
    for (size_t i = 0; i < run.table.n; i++) {
        failed += run.table.rows[i].error[0] != 0;
        unverified += run.table.rows[i].verified == MHB_WRONG;
    }
    printf("\n%zu runs in %.1f s (%zu failed, %zu not verified); CSV: %s\n", run.table.n, took,
           failed, unverified, csv);
    if (!o->no_plot) {
        int prc = o->command == MHB_SEED
                      ? mhb_plot_seed(base, &run.table, run.machine.logical_cores, run.repeat)
                      : mhb_plot_matrix(base, &run.table, run.machine.logical_cores,
                                        run.repeat);
        if (prc == 0)
            printf("plots: %s%s.png and .svg (script %s.gp)\n", base,
                   o->command == MHB_SEED ? "" : "-*", base);
    }
    rc = failed || unverified ? 1 : 0;
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
        const char *kernels[64];
        int n = 0;
        for (const struct mhk_kernel *const *k = mhk_kernels(); *k && n < 63; k++)
            kernels[n++] = (*k)->name;
        kernels[n] = NULL;
        /* The library's backends, and the peer programs by their row names. */
        const char *backends[64];
        int nb = 0;
        for (const char *const *b = mh_backends(); *b && nb < 60; b++)
            backends[nb++] = *b;
        backends[nb++] = "raw-openmp";
        backends[nb++] = "python-process";
        backends[nb++] = "python-thread";
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
        break;
    }
    struct sigaction sa = {.sa_handler = main_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return o.command == MHB_CLUSTER ? mhb_cluster_main(&o) : main_experiment(&o);
}
