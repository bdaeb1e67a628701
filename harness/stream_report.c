/* The stream experiment's report: per work, one line per (backend,
 * workers, chunk asked, call) with its median wall, cost per item, speedup over seq,
 * peak RSS and throughput against the work's first call (the map); then
 * one line of figures per work at its most workers. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

/* chunk: the chunk asked, or SIZE_MAX for any (the baseline's). */
static double report_stat(const struct mhb_run *run, const char *backend, const char *kind,
                          int w, size_t chunk, enum mhb_field field)
{
    return mhb_stat(&run->table, (struct mhb_match){backend, kind, w, chunk}, field);
}

/* "auto" for an adaptive chunk, else its size. */
static const char *report_chunk(char *buf, size_t size, size_t chunk)
{
    if (chunk == 0)
        return "auto";
    snprintf(buf, size, "%zu", chunk);
    return buf;
}

/* The kinds of the work that starts at kind k: [k, *end). */
static const struct mhb_stream_kind *report_work(const struct mhb_stream_kind *k)
{
    const struct mhb_stream_kind *end = k;
    while (end->row.name && end->work == k->work)
        end++;
    return end;
}

/* The work's name: its kinds' names up to the ':'. */
static int report_name_len(const struct mhb_stream_kind *k)
{
    return (int)(strchr(k->row.name, ':') - k->row.name);
}

/* The worker counts of the work's rows other than the baseline's,
 * ascending, into ws; how many. */
static int report_workers(const struct mhb_run *run, const struct mhb_stream_kind *k,
                          const struct mhb_stream_kind *end, int *ws)
{
    size_t found[MHB_LIST_MAX];
    int n = 0;
    for (size_t i = 0; i < run->table.n; i++) {
        const struct mhb_row *r = &run->table.rows[i];
        const struct mhb_runner *runner = mhb_runner_find(r->backend);
        for (const struct mhb_stream_kind *c = k; c < end; c++)
            if (!strcmp(r->kernel, c->row.name) && runner && !runner->baseline)
                n = mhb_add_sorted(found, n, MHB_LIST_MAX, (size_t)r->workers);
    }
    for (int i = 0; i < n; i++)
        ws[i] = (int)found[i];
    return n;
}

/* The baseline runner's name ("seq"). */
static const char *report_baseline(void)
{
    for (const struct mhb_runner *const *r = mhb_runners(); *r; r++)
        if ((*r)->baseline)
            return (*r)->name;
    return "";
}

/* Seconds per item in the unit that reads best for the work. */
static void report_per_item(char *buf, size_t size, double wall, size_t items)
{
    double s = wall / (double)items;
    if (isnan(s))
        snprintf(buf, size, "-");
    else if (s < 1e-6)
        snprintf(buf, size, "%.1f ns", s * 1e9);
    else if (s < 1e-3)
        snprintf(buf, size, "%.2f us", s * 1e6);
    else
        snprintf(buf, size, "%.3f ms", s * 1e3);
}

/* One line per call of the work at (backend, w, chunk). */
static void report_lines(FILE *out, const struct mhb_run *run, const struct mhb_stream_kind *k,
                         const struct mhb_stream_kind *end, const char *backend, int w,
                         size_t chunk, size_t items)
{
    double ref = report_stat(run, backend, k->row.name, w, chunk, MHB_WALL);
    for (const struct mhb_stream_kind *c = k; c < end; c++) {
        double wall = report_stat(run, backend, c->row.name, w, chunk, MHB_WALL);
        if (isnan(wall))
            continue;
        char per[32], cs[24];
        size_t shown = chunk == SIZE_MAX ? k->chunks[0] : chunk; /* the baseline's */
        report_per_item(per, sizeof per, wall, items);
        fprintf(out, "  %-8s %7d %5s  %-13s %9.4f %10s %8.2f %9.1f", backend, w,
                report_chunk(cs, sizeof cs, shown), strchr(c->row.name, ':') + 1, wall, per,
                report_stat(run, backend, c->row.name, w, chunk, MHB_SPEEDUP),
                report_stat(run, backend, c->row.name, w, chunk, MHB_RSS_MIB));
        if (c != k && !isnan(ref))
            fprintf(out, " %6.2fx", ref / wall);
        fputc('\n', out);
    }
}

/* The rows of one work: each backend, worker count and chunk asked. */
static void report_table(FILE *out, const struct mhb_run *run, const struct mhb_stream_kind *k,
                         const struct mhb_stream_kind *end)
{
    const struct mhb_row *first = NULL;
    for (const struct mhb_stream_kind *c = k; c < end && !first; c++)
        first = mhb_table_first(&run->table, c->row.name);
    if (!first)
        return;
    const char *ref_call = strchr(k->row.name, ':') + 1;
    fprintf(out, "\n%.*s%s, %zu items (median of each cell; vs %s: its wall / this wall)\n",
            report_name_len(k), k->row.name,
            k->work == MHB_WORK_SEED ? " (the seed's workload)" : "", first->items, ref_call);
    char vs[32];
    snprintf(vs, sizeof vs, "vs %s", ref_call);
    fprintf(out, "  %-8s %7s %5s  %-13s %9s %10s %8s %9s %7s\n", "backend", "workers", "chunk",
            "call", "wall_s", "per item", "speedup", "rss_MiB", vs);
    struct mhb_names kernels, runners;
    mhb_table_names(&run->table, &kernels, &runners);
    int ws[MHB_LIST_MAX], nw = report_workers(run, k, end, ws);
    report_lines(out, run, k, end, report_baseline(), 1, SIZE_MAX, first->items);
    for (int b = 0; b < runners.n; b++)
        for (int i = 0; i < nw; i++)
            for (int c = 0; c < k->n_chunks; c++)
                report_lines(out, run, k, end, runners.v[b], ws[i], k->chunks[c], first->items);
}

/* A backend's calls of the work at (w, chunk), by what the work is
 * there to show. */
static void report_figure(FILE *out, const struct mhb_run *run, const struct mhb_stream_kind *k,
                          const struct mhb_stream_kind *end, const char *backend, int w,
                          size_t chunk)
{
    double ref = report_stat(run, backend, k->row.name, w, chunk, MHB_WALL);
    for (const struct mhb_stream_kind *c = k; c < end; c++) {
        double wall = report_stat(run, backend, c->row.name, w, chunk, MHB_WALL);
        const struct mhb_row *row = mhb_table_first(&run->table, c->row.name);
        char per[32];
        if (isnan(wall) || (k->work == MHB_WORK_SEED && c == k))
            continue;
        fprintf(out, " %s %s", backend, strchr(c->row.name, ':') + 1);
        if (k->n_chunks > 1)
            fprintf(out, chunk ? " (chunk %zu)" : " (chunk auto)", chunk);
        fputc(' ', out);
        switch (k->work) {
        case MHB_WORK_SEED:
            fprintf(out, "%.2fx;", ref / wall);
            break;
        case MHB_WORK_EMPTY:
        case MHB_WORK_JOBS:
            report_per_item(per, sizeof per, wall, row->items);
            fprintf(out, "%s;", per);
            break;
        case MHB_WORK_IO:
            fprintf(out, "%.1fx;", report_stat(run, backend, c->row.name, w, chunk, MHB_SPEEDUP));
            break;
        case MHB_WORK_COPY:
            fprintf(out, "%.1f MiB;",
                    report_stat(run, backend, c->row.name, w, chunk, MHB_RSS_MIB));
            break;
        }
    }
}

/* One line of the work's figures at its most workers: each backend's
 * calls by what the work is there to show. */
static void report_figures(FILE *out, const struct mhb_run *run,
                           const struct mhb_stream_kind *k, const struct mhb_stream_kind *end)
{
    static const char *const what[] = {
        [MHB_WORK_SEED] = "throughput against the map",
        [MHB_WORK_EMPTY] = "cost per item",
        [MHB_WORK_JOBS] = "cost per job",
        [MHB_WORK_IO] = "speedup over seq",
        [MHB_WORK_COPY] = "peak RSS",
    };
    int ws[MHB_LIST_MAX], nw = report_workers(run, k, end, ws);
    if (nw == 0)
        return;
    int w = ws[nw - 1];
    struct mhb_names kernels, runners;
    mhb_table_names(&run->table, &kernels, &runners);
    fprintf(out, "%.*s at %d workers, %s:", report_name_len(k), k->row.name, w, what[k->work]);
    for (int b = 0; b < runners.n; b++)
        for (int ch = 0; ch < k->n_chunks; ch++)
            report_figure(out, run, k, end, runners.v[b], w, k->chunks[ch]);
    fputc('\n', out);
}

void mhb_stream_report(FILE *out, const struct mhb_run *run)
{
    const struct mhb_stream_kind *k, *end;
    for (k = mhb_stream_kinds(); k->row.name; k = end) {
        end = report_work(k);
        report_table(out, run, k, end);
    }
    fprintf(out, "\nFigures (issue #14; docs/results.md \"Streams\"):\n");
    for (k = mhb_stream_kinds(); k->row.name; k = end) {
        end = report_work(k);
        report_figures(out, run, k, end);
    }
}
