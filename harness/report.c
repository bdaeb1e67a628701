/* What a run produced: the machine, CSV rows, medians, the summary table
 * and the gnuplot script. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#ifndef MHB_SOURCE_DIR
#define MHB_SOURCE_DIR "."
#endif
#ifndef MHB_BUILD_TYPE
#define MHB_BUILD_TYPE "unknown"
#endif

/* ---------------------------------------------------------------- machine */

/* The value of the first "key\t: value" line of /proc/cpuinfo. */
static void report_cpuinfo_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        colon++;
        while (*colon == ' ')
            colon++;
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(buf, size, "%s", colon);
        break;
    }
    fclose(f);
}

/* Distinct (physical id, core id) pairs; 0 when cpuinfo does not say. */
static int report_physical_cores(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return 0;
    long pairs[1024][2];
    int n = 0;
    long phys = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        if (strncmp(line, "physical id", 11) == 0) {
            phys = strtol(colon + 1, NULL, 10);
        } else if (strncmp(line, "core id", 7) == 0) {
            long core = strtol(colon + 1, NULL, 10);
            bool seen = false;
            for (int i = 0; i < n && !seen; i++)
                seen = pairs[i][0] == phys && pairs[i][1] == core;
            if (!seen && n < 1024) {
                pairs[n][0] = phys;
                pairs[n][1] = core;
                n++;
            }
        }
    }
    fclose(f);
    return n;
}

void mhb_machine_probe(struct mhb_machine *m)
{
    memset(m, 0, sizeof *m);
    if (gethostname(m->host, sizeof m->host - 1))
        snprintf(m->host, sizeof m->host, "unknown");
    report_cpuinfo_model(m->cpu_model, sizeof m->cpu_model);
    cpu_set_t set;
    m->logical_cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (m->logical_cores < 1)
        m->logical_cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (m->logical_cores < 1)
        m->logical_cores = 1;
    m->physical_cores = report_physical_cores();
    if (m->physical_cores < 1)
        m->physical_cores = m->logical_cores;
#if defined(__clang__)
    snprintf(m->compiler, sizeof m->compiler, "clang %d.%d.%d", __clang_major__,
             __clang_minor__, __clang_patchlevel__);
#elif defined(__GNUC__)
    snprintf(m->compiler, sizeof m->compiler, "gcc %d.%d.%d", __GNUC__, __GNUC_MINOR__,
             __GNUC_PATCHLEVEL__);
#else
    snprintf(m->compiler, sizeof m->compiler, "unknown");
#endif
    snprintf(m->build_type, sizeof m->build_type, "%s", MHB_BUILD_TYPE);

    /* The revision of the tree the binary was built from, "-dirty" when it
     * has changes: asked of git at run time, so a rebuild is not needed. */
    snprintf(m->git_rev, sizeof m->git_rev, "unknown");
    char *argv[] = {"git", "-C", MHB_SOURCE_DIR, "describe", "--always", "--dirty",
                    "--abbrev=12", NULL};
    struct mhb_proc *p = malloc(sizeof *p);
    if (p && mhb_proc_run(argv, NULL, 20, p) == 0 && WIFEXITED(p->status) &&
        WEXITSTATUS(p->status) == 0) {
        p->out[strcspn(p->out, "\n")] = '\0';
        if (p->out[0])
            snprintf(m->git_rev, sizeof m->git_rev, "%.63s", p->out);
    }
    free(p);
}

double mhb_load_1m(void)
{
    double load = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1)
            load = NAN;
        fclose(f);
    }
    return load;
}

int mhb_mkdirs(const char *dir)
{
    char path[MHB_PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0777) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(path, 0777) && errno != EEXIST)
        return -1;
    return 0;
}

/* -------------------------------------------------------------------- CSV */

/* The columns, in order: docs/csv.md describes each; tests/bench_csv.sh
 * checks a file against that page. */
static const char report_header[] =
    "timestamp,load_1m,host,cpu_model,logical_cores,physical_cores,compiler,build_type,git_rev,"
    "experiment,backend,kernel,bound,items,workers,chunk_asked,chunk,repeat,wall_s,pool_s,"
    "user_s,sys_s,peak_rss_kib,speedup,efficiency,items_per_s,verified,error";

FILE *mhb_csv_open(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    fprintf(f, "%s\n", report_header);
    fflush(f);
    return f;
}

/* A text field, quoted (RFC 4180) when it holds a comma, quote or newline. */
static void report_text(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
    }
    fputc('"', f);
}

/* A number, or an empty field when there is none. */
static void report_num(FILE *f, const char *fmt, double v)
{
    if (!isnan(v))
        fprintf(f, fmt, v);
}

void mhb_csv_row(FILE *f, const struct mhb_machine *m, const struct mhb_row *r)
{
    report_text(f, r->timestamp);
    fputc(',', f);
    report_num(f, "%.2f", r->load_1m);
    fputc(',', f);
    report_text(f, m->host);
    fputc(',', f);
    report_text(f, m->cpu_model);
    fprintf(f, ",%d,%d,", m->logical_cores, m->physical_cores);
    report_text(f, m->compiler);
    fputc(',', f);
    report_text(f, m->build_type);
    fputc(',', f);
    report_text(f, m->git_rev);
    fputc(',', f);
    report_text(f, r->experiment);
    fputc(',', f);
    report_text(f, r->backend);
    fputc(',', f);
    report_text(f, r->kernel);
    fprintf(f, ",%s,%zu,%d,%zu,", r->bound, r->items, r->workers, r->chunk_asked);
    if (r->chunk)
        fprintf(f, "%zu", r->chunk);
    fprintf(f, ",%d,", r->repeat);
    report_num(f, "%.6f", r->wall_s);
    fputc(',', f);
    report_num(f, "%.6f", r->pool_s);
    fprintf(f, ",%.3f,%.3f,%ld,", r->user_s, r->sys_s, r->peak_rss_kib);
    report_num(f, "%.4f", r->speedup);
    fputc(',', f);
    report_num(f, "%.4f", r->efficiency);
    fputc(',', f);
    report_num(f, "%.1f", r->items_per_s);
    fputc(',', f);
    if (r->verified != MHB_UNCHECKED)
        fprintf(f, "%d", r->verified);
    fputc(',', f);
    report_text(f, r->error);
    fputc('\n', f);
    fflush(f);
}

/* ------------------------------------------------------------------ table */

int mhb_table_add(struct mhb_table *t, const struct mhb_row *r)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        struct mhb_row *rows = realloc(t->rows, cap * sizeof *rows);
        if (!rows)
            return -1;
        t->rows = rows;
        t->cap = cap;
    }
    t->rows[t->n++] = *r;
    return 0;
}

static int report_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of a field over the successful rows that match. */
static double report_median(const struct mhb_table *t, const char *backend, const char *kernel,
                            int workers, size_t chunk_asked, size_t field)
{
    double *v = malloc((t->n + 1) * sizeof *v);
    if (!v)
        return NAN;
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct mhb_row *r = &t->rows[i];
        if (r->error[0] || strcmp(r->backend, backend) || strcmp(r->kernel, kernel) ||
            r->workers != workers || (chunk_asked != SIZE_MAX && r->chunk_asked != chunk_asked))
            continue;
        double x = *(const double *)((const char *)r + field);
        if (!isnan(x))
            v[n++] = x;
    }
    double m = NAN;
    if (n) {
        qsort(v, n, sizeof *v, report_cmp_double);
        m = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    }
    free(v);
    return m;
}

double mhb_median_wall(const struct mhb_table *t, const char *backend, const char *kernel,
                       int workers, size_t chunk_asked)
{
    return report_median(t, backend, kernel, workers, chunk_asked,
                         offsetof(struct mhb_row, wall_s));
}

double mhb_median_speedup(const struct mhb_table *t, const char *backend, const char *kernel,
                          int workers, size_t chunk_asked)
{
    return report_median(t, backend, kernel, workers, chunk_asked,
                         offsetof(struct mhb_row, speedup));
}

static double report_median_chunk(const struct mhb_table *t, const char *backend,
                                  const char *kernel, int workers)
{
    double v[1024];
    size_t n = 0;
    for (size_t i = 0; i < t->n && n < 1024; i++) {
        const struct mhb_row *r = &t->rows[i];
        if (!r->error[0] && r->chunk && r->chunk_asked == 0 && !strcmp(r->backend, backend) &&
            !strcmp(r->kernel, kernel) && r->workers == workers)
            v[n++] = (double)r->chunk;
    }
    if (!n)
        return NAN;
    qsort(v, n, sizeof *v, report_cmp_double);
    return v[n / 2];
}

static bool report_is_peer(const char *backend)
{
    return strcmp(backend, "raw-openmp") == 0 || strncmp(backend, "python-", 7) == 0;
}

/* Distinct strings of the rows, in order of first appearance. */
struct report_names {
    const char *v[64];
    int n;
};

static void report_names_add(struct report_names *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0)
            return;
    if (s->n < 64)
        s->v[s->n++] = name;
}

/* Add x to the ascending list v[0..n) unless it is there or the list is
 * full; returns the new length. */
static int report_add_sorted(size_t *v, int n, int max, size_t x)
{
    for (int k = 0; k < n; k++)
        if (v[k] == x)
            return n;
    if (n == max)
        return n;
    int k = n++;
    while (k > 0 && v[k - 1] > x) {
        v[k] = v[k - 1];
        k--;
    }
    v[k] = x;
    return n;
}

/* The worker counts of a kernel's adaptive-chunk rows, ascending. */
static int report_workers(const struct mhb_table *t, const char *kernel, int *w, int max)
{
    size_t found[MHB_LIST_MAX];
    int n = 0;
    if (max > MHB_LIST_MAX)
        max = MHB_LIST_MAX;
    for (size_t i = 0; i < t->n; i++) {
        const struct mhb_row *r = &t->rows[i];
        if (!strcmp(r->kernel, kernel) && !r->chunk_asked && strcmp(r->backend, "seq"))
            n = report_add_sorted(found, n, max, (size_t)r->workers);
    }
    for (int k = 0; k < n; k++)
        w[k] = (int)found[k];
    return n;
}

static const struct mhb_row *report_first(const struct mhb_table *t, const char *kernel)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->rows[i].kernel, kernel) == 0)
            return &t->rows[i];
    return NULL;
}

/* The best library backend's median speedup at w; NAN when none. */
static double report_best(const struct mhb_table *t, const struct report_names *backends,
                          const char *kernel, int w, const char **which)
{
    double best = NAN;
    for (int b = 0; b < backends->n; b++) {
        if (report_is_peer(backends->v[b]))
            continue;
        double s = mhb_median_speedup(t, backends->v[b], kernel, w, 0);
        if (!isnan(s) && (isnan(best) || s > best)) {
            best = s;
            if (which)
                *which = backends->v[b];
        }
    }
    return best;
}

/* ---------------------------------------------------------------- summary */

void mhb_load_line(FILE *f, const struct mhb_table *t, int cores)
{
    double *v = malloc((t->n + 1) * sizeof *v);
    size_t n = 0;
    for (size_t i = 0; v && i < t->n; i++)
        if (!isnan(t->rows[i].load_1m))
            v[n++] = t->rows[i].load_1m;
    if (n) {
        qsort(v, n, sizeof *v, report_cmp_double);
        fprintf(f, "Load average (1 min) over the runs: %.2f to %.2f, median %.2f, on %d cores%s\n",
                v[0], v[n - 1], v[n / 2], cores,
                v[n / 2] > cores ? ": a busy machine, timings are noisy" : "");
    }
    free(v);
}

static void report_verdict(FILE *f, const struct mhb_table *t, const struct report_names *kernels,
                           const struct report_names *backends, const char *bound, int cores)
{
    char names[256] = "";
    double peak = NAN, at_cores = NAN, at_max = NAN;
    const char *peak_kernel = NULL, *peak_backend = NULL;
    int peak_w = 0, wmax = 0;
    for (int k = 0; k < kernels->n; k++) {
        const struct mhb_row *first = report_first(t, kernels->v[k]);
        if (!first || strcmp(first->bound, bound))
            continue;
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "", kernels->v[k]);
        int w[MHB_LIST_MAX];
        int nw = report_workers(t, kernels->v[k], w, MHB_LIST_MAX);
        if (nw && w[nw - 1] > wmax)
            wmax = w[nw - 1];
        for (int i = 0; i < nw; i++) {
            const char *which = NULL;
            double s = report_best(t, backends, kernels->v[k], w[i], &which);
            if (isnan(s))
                continue;
            if (isnan(peak) || s > peak) {
                peak = s;
                peak_kernel = kernels->v[k];
                peak_backend = which;
                peak_w = w[i];
            }
            if (w[i] <= cores && (isnan(at_cores) || s > at_cores))
                at_cores = s;
        }
    }
    if (!names[0])
        return;
    if (isnan(peak)) {
        fprintf(f, "%s-bound (%s): no successful runs\n", bound, names);
        return;
    }
    for (int k = 0; k < kernels->n; k++) {
        const struct mhb_row *first = report_first(t, kernels->v[k]);
        if (!first || strcmp(first->bound, bound))
            continue;
        double s = report_best(t, backends, kernels->v[k], wmax, NULL);
        if (!isnan(s) && (isnan(at_max) || s > at_max))
            at_max = s;
    }
    fprintf(f, "%s-bound (%s): best %.2fx (%s, %s, %d workers); ", bound, names, peak,
            peak_backend, peak_kernel, peak_w);
    if (wmax > cores && !isnan(at_cores) && !isnan(at_max) && at_max > 1.5 * at_cores)
        fprintf(f, "keeps growing past the %d cores (%.2fx at most up to %d workers, %.2fx "
                "at %d): waiting overlaps, more workers than cores pay\n",
                cores, at_cores, cores, at_max, wmax);
    else if (wmax > cores && !isnan(at_cores) && !isnan(at_max))
        fprintf(f, "stops at the %d cores (%.2fx at most up to %d workers, %.2fx at %d): "
                "more workers than cores do not pay\n", cores, at_cores, cores, at_max, wmax);
    else
        fprintf(f, "no worker count past the %d cores was run\n", cores);
}

/* The chunk sizes a run swept, ascending (0, adaptive, excluded). */
static int report_swept_chunks(const struct mhb_table *t, const char *kernel, int w,
                               size_t *chunks, int max)
{
    int n = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct mhb_row *r = &t->rows[i];
        if (r->chunk_asked && !strcmp(r->kernel, kernel) && r->workers == w)
            n = report_add_sorted(chunks, n, max, r->chunk_asked);
    }
    return n;
}

/* Speedup by chunk size, when the run swept them. */
static void report_chunks(FILE *f, const struct mhb_table *t, const struct report_names *backends)
{
    const struct mhb_row *first = NULL;
    for (size_t i = 0; i < t->n && !first; i++)
        if (t->rows[i].chunk_asked)
            first = &t->rows[i];
    if (!first)
        return;
    size_t chunks[MHB_LIST_MAX];
    int nc = report_swept_chunks(t, first->kernel, first->workers, chunks, MHB_LIST_MAX);
    fprintf(f, "\nChunk size: %s at %d workers, median speedup over seq by items per chunk\n",
            first->kernel, first->workers);
    fprintf(f, "%8s", "backend");
    for (int c = 0; c < nc; c++)
        fprintf(f, " %8zu", chunks[c]);
    fprintf(f, "   adaptive (chunk it chose)\n");
    for (int b = 0; b < backends->n; b++) {
        const char *bn = backends->v[b];
        bool has = false;
        for (int c = 0; c < nc && !has; c++)
            has = !isnan(mhb_median_speedup(t, bn, first->kernel, first->workers, chunks[c]));
        if (!has)
            continue;
        fprintf(f, "%8s", bn);
        for (int c = 0; c < nc; c++) {
            double s = mhb_median_speedup(t, bn, first->kernel, first->workers, chunks[c]);
            if (isnan(s))
                fprintf(f, " %8s", "-");
            else
                fprintf(f, " %7.2fx", s);
        }
        double a = mhb_median_speedup(t, bn, first->kernel, first->workers, 0);
        double ac = report_median_chunk(t, bn, first->kernel, first->workers);
        if (isnan(a))
            fprintf(f, "   -\n");
        else
            fprintf(f, "   %.2fx (%.0f)\n", a, ac);
    }
}

/* Each library backend's median wall against the raw OpenMP loop's, for
 * the kernels the raw loop ran. */
static void report_overhead(FILE *f, const struct mhb_table *t, const struct report_names *kernels,
                            const struct report_names *backends)
{
    bool header = false;
    for (int k = 0; k < kernels->n; k++) {
        const char *kn = kernels->v[k];
        int w[MHB_LIST_MAX];
        int nw = report_workers(t, kn, w, MHB_LIST_MAX);
        bool has = false;
        for (int i = 0; i < nw && !has; i++)
            has = !isnan(mhb_median_wall(t, "raw-openmp", kn, w[i], 0));
        if (!has)
            continue;
        if (!header) {
            fprintf(f, "\nAgainst the raw OpenMP loop (no library): median wall of each "
                       "backend / raw-openmp's, same items and workers\n");
            header = true;
        }
        fprintf(f, "%s:\n%8s %12s", kn, "workers", "raw-openmp");
        for (int b = 0; b < backends->n; b++)
            if (!report_is_peer(backends->v[b]))
                fprintf(f, " %9s", backends->v[b]);
        fprintf(f, "\n");
        for (int i = 0; i < nw; i++) {
            double raw = mhb_median_wall(t, "raw-openmp", kn, w[i], 0);
            fprintf(f, "%8d", w[i]);
            if (isnan(raw))
                fprintf(f, " %12s", "-");
            else
                fprintf(f, " %10.4fs", raw);
            for (int b = 0; b < backends->n; b++) {
                if (report_is_peer(backends->v[b]))
                    continue;
                double v = mhb_median_wall(t, backends->v[b], kn, w[i], 0);
                if (isnan(v) || isnan(raw))
                    fprintf(f, " %9s", "-");
                else
                    fprintf(f, " %8.2fx", v / raw);
            }
            fprintf(f, "\n");
        }
    }
}

void mhb_summary(FILE *f, const struct mhb_table *t, int cores)
{
    struct report_names kernels = {.n = 0}, backends = {.n = 0};
    for (size_t i = 0; i < t->n; i++) {
        report_names_add(&kernels, t->rows[i].kernel);
        if (strcmp(t->rows[i].backend, "seq"))
            report_names_add(&backends, t->rows[i].backend);
    }
    fprintf(f, "\nSummary: median speedup over seq (same kernel and items), by workers; "
               "best = fastest library backend\n");
    for (int k = 0; k < kernels.n; k++) {
        const char *kn = kernels.v[k];
        const struct mhb_row *first = report_first(t, kn);
        double seq = mhb_median_wall(t, "seq", kn, 1, SIZE_MAX);
        fprintf(f, "\n%s (%s-bound, %zu items; seq %.4f s)\n", kn, first->bound, first->items,
                seq);
        fprintf(f, "%8s", "workers");
        struct report_names cols = {.n = 0};
        for (int b = 0; b < backends.n; b++) {
            for (size_t i = 0; i < t->n; i++)
                if (!strcmp(t->rows[i].kernel, kn) && !strcmp(t->rows[i].backend, backends.v[b]))
                    report_names_add(&cols, backends.v[b]);
        }
        for (int b = 0; b < cols.n; b++)
            fprintf(f, " %11s", cols.v[b]);
        fprintf(f, "   best\n");
        int w[MHB_LIST_MAX];
        int nw = report_workers(t, kn, w, MHB_LIST_MAX);
        for (int i = 0; i < nw; i++) {
            fprintf(f, "%8d", w[i]);
            for (int b = 0; b < cols.n; b++) {
                double s = mhb_median_speedup(t, cols.v[b], kn, w[i], 0);
                if (isnan(s))
                    fprintf(f, " %11s", "-");
                else
                    fprintf(f, " %10.2fx", s);
            }
            const char *which = NULL;
            double best = report_best(t, &cols, kn, w[i], &which);
            if (isnan(best))
                fprintf(f, "   -\n");
            else
                fprintf(f, "   %s %.2fx\n", which, best);
        }
    }
    report_chunks(f, t, &backends);
    report_overhead(f, t, &kernels, &backends);
    fprintf(f, "\nVerdict (%d cores):\n", cores);
    report_verdict(f, t, &kernels, &backends, "cpu", cores);
    report_verdict(f, t, &kernels, &backends, "io", cores);
}

/* ------------------------------------------------------------------ plots */

/* A fixed colour per backend, the same in every plot. */
static const char *report_color(const char *backend)
{
    static const char *const map[][2] = {
        {"seq", "#000000"},        {"threads", "#1f77b4"},       {"openmp", "#2ca02c"},
        {"fork", "#d62728"},       {"mpi", "#9467bd"},           {"raw-openmp", "#7f7f7f"},
        {"python-process", "#ff7f0e"}, {"python-thread", "#8c564b"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i][0], backend) == 0)
            return map[i][1];
    return "#17becf";
}

static const char *const report_kernel_colors[] = {
    "#08306b", "#2171b5", "#6baed6", "#238b45", "#74c476", /* cpu: blues, greens */
    "#a50f15", "#ef3b2c", "#fc9272", "#d94801", "#fdae6b", /* io: reds, oranges */
};

static const char *const report_terms[][2] = {
    {"set terminal pngcairo size 960,640 noenhanced font 'Sans,11'", "png"},
    {"set terminal svg size 960,640 noenhanced font 'Sans,11' background '#ffffff'", "svg"},
};

/* The file name part of a path. */
static const char *report_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Run gnuplot on script inside its directory (the script names its
 * outputs without a directory, so it can be rerun by hand there). */
static int report_gnuplot(const char *script)
{
    char dir[MHB_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", script);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    char *argv[] = {"sh", "-c", "cd \"$1\" && exec gnuplot \"$2\"", "sh", dir,
                    (char *)report_basename(script), NULL};
    struct mhb_proc *p = malloc(sizeof *p);
    if (!p)
        return -1;
    int rc = mhb_proc_run(argv, NULL, 300, p);
    if (rc == 0 && !(WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0)) {
        if (WIFEXITED(p->status) && WEXITSTATUS(p->status) == 127)
            fprintf(stderr, "manyhands-bench: gnuplot not found: no plots (install "
                            "gnuplot-nox; scripts/install-deps does)\n");
        else
            fprintf(stderr, "manyhands-bench: gnuplot failed on %s:\n%s\n", script, p->out);
        rc = -1;
    }
    free(p);
    return rc;
}

/* The vertical line at the core count. */
static void report_cores_marker(FILE *f, int cores)
{
    fprintf(f, "set arrow 1 from %d, graph 0 to %d, graph 1 nohead dt 3 lc rgb '#666666'\n",
            cores, cores);
    fprintf(f, "set label 1 'cores = %d' at %d, graph 0.04 offset 0.6,0 tc rgb '#666666'\n",
            cores, cores);
}

int mhb_plot_matrix(const char *base, const struct mhb_table *t, int cores, int repeat)
{
    char script[MHB_PATH_MAX + 8];
    snprintf(script, sizeof script, "%s.gp", base);
    const char *name = report_basename(base);
    FILE *f = fopen(script, "w");
    if (!f) {
        fprintf(stderr, "manyhands-bench: cannot write %s: %s\n", script, strerror(errno));
        return -1;
    }
    struct report_names kernels = {.n = 0}, backends = {.n = 0};
    for (size_t i = 0; i < t->n; i++) {
        report_names_add(&kernels, t->rows[i].kernel);
        if (strcmp(t->rows[i].backend, "seq"))
            report_names_add(&backends, t->rows[i].backend);
    }
    fprintf(f, "# Generated by manyhands-bench from %s.csv: medians of the rows.\n"
               "# Redraw by hand: cd to this directory, then gnuplot %s.gp\n",
            name, name);

    /* Data: per kernel and backend, workers and median speedup (adaptive
     * chunk); per kernel, the best library backend's. */
    for (int k = 0; k < kernels.n; k++) {
        int w[MHB_LIST_MAX];
        int nw = report_workers(t, kernels.v[k], w, MHB_LIST_MAX);
        for (int b = 0; b < backends.n; b++) {
            fprintf(f, "$k%db%d << EOD\n", k, b);
            for (int i = 0; i < nw; i++) {
                double s = mhb_median_speedup(t, backends.v[b], kernels.v[k], w[i], 0);
                if (!isnan(s))
                    fprintf(f, "%d %.4f\n", w[i], s);
            }
            fprintf(f, "EOD\n");
        }
        fprintf(f, "$best%d << EOD\n", k);
        for (int i = 0; i < nw; i++) {
            double s = report_best(t, &backends, kernels.v[k], w[i], NULL);
            if (!isnan(s))
                fprintf(f, "%d %.4f\n", w[i], s);
        }
        fprintf(f, "EOD\n");
    }

    for (size_t term = 0; term < 2; term++) {
        const char *ext = report_terms[term][1];
        for (int k = 0; k < kernels.n; k++) {
            const struct mhb_row *first = report_first(t, kernels.v[k]);
            bool io = strcmp(first->bound, "io") == 0;
            int w[MHB_LIST_MAX];
            int nw = report_workers(t, kernels.v[k], w, MHB_LIST_MAX);
            if (nw == 0)
                continue;
            int wmax = w[nw - 1];
            fprintf(f, "\nreset\n%s\nset output '%s-%s.%s'\n", report_terms[term][0], name,
                    kernels.v[k], ext);
            fprintf(f, "set title '%s (%s-bound, %zu items): speedup over seq, median of %d "
                       "run%s'\n",
                    kernels.v[k], first->bound, first->items, repeat, repeat > 1 ? "s" : "");
            fprintf(f, "set xlabel 'workers'\nset ylabel 'speedup over seq'\n"
                       "set grid\nset key top left box opaque\n");
            if (io)
                fprintf(f, "set logscale xy 2\nset xrange [0.8:%g]\nset yrange [0.5:*]\n",
                        wmax * 1.25);
            else
                fprintf(f, "set xrange [0.5:%g]\nset yrange [0:*]\nset xtics 1\n", wmax + 0.5);
            report_cores_marker(f, cores);
            fprintf(f, "plot x with lines dt 2 lw 1.5 lc rgb '#999999' title 'ideal'");
            for (int b = 0; b < backends.n; b++) {
                bool has = false;
                for (int i = 0; i < nw && !has; i++)
                    has = !isnan(mhb_median_speedup(t, backends.v[b], kernels.v[k], w[i], 0));
                if (!has)
                    continue;
                fprintf(f, ", \\\n  $k%db%d using 1:2 with linespoints lw 2 pt 7 ps 0.8 %s "
                           "lc rgb '%s' title '%s'",
                        k, b, report_is_peer(backends.v[b]) ? "dt 4" : "dt 1",
                        report_color(backends.v[b]), backends.v[b]);
            }
            fprintf(f, "\n");
        }

        /* CPU-bound against IO-bound: each kernel's best backend. */
        fprintf(f, "\nreset\n%s\nset output '%s-bound.%s'\n", report_terms[term][0], name, ext);
        fprintf(f, "set title 'CPU-bound vs IO-bound: speedup of the best backend per kernel "
                   "(median of %d)'\n", repeat);
        fprintf(f, "set xlabel 'workers'\nset ylabel 'speedup over seq'\nset grid\n"
                   "set logscale xy 2\nset xrange [0.8:80]\nset yrange [0.5:80]\n"
                   "set key top left box opaque\n");
        report_cores_marker(f, cores);
        fprintf(f, "plot x with lines dt 2 lw 1.5 lc rgb '#999999' title 'ideal'");
        int cpu_i = 0, io_i = 0;
        for (int k = 0; k < kernels.n; k++) {
            const struct mhb_row *first = report_first(t, kernels.v[k]);
            bool io = strcmp(first->bound, "io") == 0;
            const char *color = io ? report_kernel_colors[5 + io_i++ % 5]
                                   : report_kernel_colors[cpu_i++ % 5];
            fprintf(f, ", \\\n  $best%d using 1:2 with linespoints lw 2 pt %d ps 0.9 dt %d "
                       "lc rgb '%s' title '%s (%s)'",
                    k, io ? 9 : 7, io ? 1 : 1, color, kernels.v[k], first->bound);
        }
        fprintf(f, "\n");
    }

    /* Chunk sizes, when the run swept them. */
    const char *sweep_kernel = NULL;
    int sweep_w = 0;
    for (size_t i = 0; i < t->n && !sweep_kernel; i++)
        if (t->rows[i].chunk_asked) {
            sweep_kernel = t->rows[i].kernel;
            sweep_w = t->rows[i].workers;
        }
    if (sweep_kernel) {
        for (int b = 0; b < backends.n; b++) {
            fprintf(f, "$c%d << EOD\n", b);
            size_t seen[64];
            int ns = 0;
            for (size_t i = 0; i < t->n; i++) {
                const struct mhb_row *r = &t->rows[i];
                if (!r->chunk_asked || strcmp(r->kernel, sweep_kernel) ||
                    strcmp(r->backend, backends.v[b]) || r->workers != sweep_w)
                    continue;
                bool dup = false;
                for (int s = 0; s < ns && !dup; s++)
                    dup = seen[s] == r->chunk_asked;
                if (dup || ns == 64)
                    continue;
                seen[ns++] = r->chunk_asked;
            }
            for (int x = 1; x < ns; x++)
                for (int y = x; y > 0 && seen[y - 1] > seen[y]; y--) {
                    size_t tmp = seen[y];
                    seen[y] = seen[y - 1];
                    seen[y - 1] = tmp;
                }
            for (int s = 0; s < ns; s++) {
                double v = mhb_median_speedup(t, backends.v[b], sweep_kernel, sweep_w, seen[s]);
                if (!isnan(v))
                    fprintf(f, "%zu %.4f\n", seen[s], v);
            }
            fprintf(f, "EOD\n$a%d << EOD\n", b);
            double ac = report_median_chunk(t, backends.v[b], sweep_kernel, sweep_w);
            double as = mhb_median_speedup(t, backends.v[b], sweep_kernel, sweep_w, 0);
            if (!isnan(ac) && !isnan(as))
                fprintf(f, "%.0f %.4f\n", ac, as);
            fprintf(f, "EOD\n");
        }
        for (size_t term = 0; term < 2; term++) {
            fprintf(f, "\nreset\n%s\nset output '%s-chunks.%s'\n", report_terms[term][0], name,
                    report_terms[term][1]);
            fprintf(f, "set title '%s at %d workers: speedup over seq against chunk size "
                       "(median of %d)'\n", sweep_kernel, sweep_w, repeat);
            fprintf(f, "set xlabel 'items per chunk (open circles: adaptive, at the chunk it "
                       "chose)'\nset ylabel 'speedup over seq'\nset grid\nset logscale x 2\n"
                       "set yrange [0:%g]\nset key bottom left box opaque\n", sweep_w * 1.15);
            fprintf(f, "plot %d with lines dt 2 lw 1.5 lc rgb '#999999' title 'ideal (%d)'",
                    sweep_w, sweep_w);
            for (int b = 0; b < backends.n; b++) {
                bool has = false;
                for (size_t i = 0; i < t->n && !has; i++)
                    has = t->rows[i].chunk_asked && !strcmp(t->rows[i].backend, backends.v[b]);
                if (!has)
                    continue;
                fprintf(f, ", \\\n  $c%d using 1:2 with linespoints lw 2 pt 7 lc rgb '%s' "
                           "title '%s', \\\n  $a%d using 1:2 with points pt 6 ps 2.5 lw 2 "
                           "lc rgb '%s' notitle",
                        b, report_color(backends.v[b]), backends.v[b], b,
                        report_color(backends.v[b]));
            }
            fprintf(f, "\n");
        }
    }
    if (fclose(f)) {
        fprintf(stderr, "manyhands-bench: cannot write %s\n", script);
        return -1;
    }
    return report_gnuplot(script);
}

int mhb_plot_seed(const char *base, const struct mhb_table *t, int cores, int repeat)
{
    char script[MHB_PATH_MAX + 8];
    snprintf(script, sizeof script, "%s.gp", base);
    const char *name = report_basename(base);
    FILE *f = fopen(script, "w");
    if (!f) {
        fprintf(stderr, "manyhands-bench: cannot write %s: %s\n", script, strerror(errno));
        return -1;
    }
    struct report_names backends = {.n = 0};
    for (size_t i = 0; i < t->n; i++)
        report_names_add(&backends, t->rows[i].backend);
    if (!t->n) {
        fclose(f);
        return -1;
    }
    fprintf(f, "# Generated by manyhands-bench from %s.csv: median seconds (wall + pool;\n"
               "# Python's own timing for python-*). Redraw: cd here, gnuplot %s.gp\n",
            name, name);
    int wmax = 1;
    for (int b = 0; b < backends.n; b++) {
        int w[MHB_LIST_MAX], nw = 0;
        for (size_t i = 0; i < t->n; i++) {
            const struct mhb_row *r = &t->rows[i];
            if (strcmp(r->backend, backends.v[b]))
                continue;
            bool seen = false;
            for (int k = 0; k < nw && !seen; k++)
                seen = w[k] == r->workers;
            if (!seen && nw < MHB_LIST_MAX)
                w[nw++] = r->workers;
            if (r->workers > wmax)
                wmax = r->workers;
        }
        fprintf(f, "$s%d << EOD\n", b);
        for (int i = 0; i < nw; i++) {
            double v[1024];
            size_t n = 0;
            for (size_t j = 0; j < t->n && n < 1024; j++) {
                const struct mhb_row *r = &t->rows[j];
                if (!strcmp(r->backend, backends.v[b]) && r->workers == w[i] && !r->error[0])
                    v[n++] = r->wall_s + (isnan(r->pool_s) ? 0 : r->pool_s);
            }
            if (!n)
                continue;
            qsort(v, n, sizeof *v, report_cmp_double);
            fprintf(f, "%d %.4f\n", w[i], n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
        }
        fprintf(f, "EOD\n");
    }
    /* The blog's own figures (2017, a Jupyter notebook): its only data. */
    fprintf(f, "$blog << EOD\n1 8.40\n2 4.63\n3 5.27\n4 5.05\nEOD\n");
    for (size_t term = 0; term < 2; term++) {
        fprintf(f, "\nreset\n%s\nset output '%s.%s'\n", report_terms[term][0], name,
                report_terms[term][1]);
        fprintf(f, "set title \"The seed's experiment: factorial of %zu random ints in [1,100), "
                   "seconds (median of %d)\"\n", t->rows[0].items, repeat);
        fprintf(f, "set xlabel 'workers (processes, threads or ranks)'\nset ylabel 'seconds "
                   "(log scale)'\nset logscale y\nset grid\nset xrange [0.5:%g]\nset xtics 1\n"
                   "set key outside right top box\n", wmax + 0.5);
        report_cores_marker(f, cores);
        fprintf(f, "plot ");
        for (int b = 0; b < backends.n; b++)
            fprintf(f, "%s$s%d using 1:2 with linespoints lw 2 pt %d ps 1 %s lc rgb '%s' "
                       "title '%s'",
                    b ? ", \\\n  " : "", b, strcmp(backends.v[b], "seq") ? 7 : 5,
                    report_is_peer(backends.v[b]) ? "dt 4" : "dt 1",
                    report_color(backends.v[b]), backends.v[b]);
        if (t->rows[0].items == 1000000)
            fprintf(f, ", \\\n  $blog using 1:2 with linespoints lw 1.5 pt 4 dt 3 "
                       "lc rgb '#bbbbbb' title 'the blog (2017)'");
        fprintf(f, "\n");
    }
    if (fclose(f)) {
        fprintf(stderr, "manyhands-bench: cannot write %s\n", script);
        return -1;
    }
    return report_gnuplot(script);
}
