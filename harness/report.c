/* What a run records: the machine, the CSV rows, the load line. */
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

void mhb_load_line(FILE *f, const struct mhb_table *t, int cores)
{
    double *v = malloc((t->n + 1) * sizeof *v);
    size_t n = 0;
    for (size_t i = 0; v && i < t->n; i++)
        if (!isnan(t->rows[i].load_1m))
            v[n++] = t->rows[i].load_1m;
    double median = mhb_median(v, n); /* sorts v */
    if (n)
        fprintf(f, "Load average (1 min) over the runs: %.2f to %.2f, median %.2f, on %d cores%s\n",
                v[0], v[n - 1], median, cores,
                median > cores ? ": a busy machine, timings are noisy" : "");
    free(v);
}
