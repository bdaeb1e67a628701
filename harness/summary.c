/* The matrix summary: per kernel, median speedup by runner and workers;
 * the chunk sweep; the library against each peer; the cost of many waits
 * in flight (wall, peak RSS, CPU); one verdict line per bound. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

static double summary_speedup(const struct mhb_table *t, const char *runner, const char *kernel,
                              int w, size_t chunk)
{
    return mhb_stat(t, (struct mhb_match){runner, kernel, w, chunk}, MHB_SPEEDUP);
}

static bool summary_is_library(const char *name)
{
    const struct mhb_runner *r = mhb_runner_find(name);
    return r && r->library;
}

/* The best speedup of a bound's kernels: peak (and where), the best at
 * w <= cores, and the best at the largest worker count. */
struct summary_peak {
    double peak, at_cores, at_max;
    const char *kernel, *runner;
    int w, wmax;
    char names[256];
};

static void summary_peak_of(const struct mhb_table *t, const struct mhb_names *kernels,
                            const struct mhb_names *runners, const char *bound, int cores,
                            struct summary_peak *p)
{
    *p = (struct summary_peak){.peak = NAN, .at_cores = NAN, .at_max = NAN};
    for (int k = 0; k < kernels->n; k++) {
        if (strcmp(mhb_table_first(t, kernels->v[k])->bound, bound))
            continue;
        size_t used = strlen(p->names);
        snprintf(p->names + used, sizeof p->names - used, "%s%s", used ? ", " : "",
                 kernels->v[k]);
        int w[MHB_LIST_MAX];
        int nw = mhb_table_workers(t, kernels->v[k], w, MHB_LIST_MAX);
        if (nw && w[nw - 1] > p->wmax)
            p->wmax = w[nw - 1];
        for (int i = 0; i < nw; i++) {
            const char *which = NULL;
            double s = mhb_best_library(t, runners, kernels->v[k], w[i], &which);
            if (!isnan(s) && (isnan(p->peak) || s > p->peak)) {
                p->peak = s;
                p->kernel = kernels->v[k];
                p->runner = which;
                p->w = w[i];
            }
            if (!isnan(s) && w[i] <= cores && (isnan(p->at_cores) || s > p->at_cores))
                p->at_cores = s;
        }
    }
    for (int k = 0; k < kernels->n; k++) {
        if (strcmp(mhb_table_first(t, kernels->v[k])->bound, bound))
            continue;
        double s = mhb_best_library(t, runners, kernels->v[k], p->wmax, NULL);
        if (!isnan(s) && (isnan(p->at_max) || s > p->at_max))
            p->at_max = s;
    }
}

static void summary_verdict(FILE *f, const struct mhb_table *t, const struct mhb_names *kernels,
                            const struct mhb_names *runners, const char *bound, int cores)
{
    struct summary_peak p;
    summary_peak_of(t, kernels, runners, bound, cores, &p);
    if (!p.names[0])
        return;
    if (isnan(p.peak)) {
        fprintf(f, "%s-bound (%s): no successful runs\n", bound, p.names);
        return;
    }
    fprintf(f, "%s-bound (%s): best %.2fx (%s, %s, %d workers); ", bound, p.names, p.peak,
            p.runner, p.kernel, p.w);
    if (p.wmax > cores && !isnan(p.at_cores) && !isnan(p.at_max) && p.at_max > 1.5 * p.at_cores)
        fprintf(f, "keeps growing past the %d cores (%.2fx at most up to %d workers, %.2fx "
                "at %d): waiting overlaps, more workers than cores pay\n",
                cores, p.at_cores, cores, p.at_max, p.wmax);
    else if (p.wmax > cores && !isnan(p.at_cores) && !isnan(p.at_max))
        fprintf(f, "stops at the %d cores (%.2fx at most up to %d workers, %.2fx at %d): "
                "more workers than cores do not pay\n", cores, p.at_cores, cores, p.at_max,
                p.wmax);
    else
        fprintf(f, "no worker count past the %d cores was run\n", cores);
}

/* The first row of the chunk sweep, or NULL when the run had none. */
static const struct mhb_row *summary_sweep(const struct mhb_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->rows[i].chunk_asked)
            return &t->rows[i];
    return NULL;
}

/* The chunk sizes of the sweep, ascending. */
static int summary_chunks(const struct mhb_table *t, const struct mhb_row *first, size_t *chunks)
{
    int n = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct mhb_row *r = &t->rows[i];
        if (r->chunk_asked && !strcmp(r->kernel, first->kernel) && r->workers == first->workers)
            n = mhb_add_sorted(chunks, n, MHB_LIST_MAX, r->chunk_asked);
    }
    return n;
}

/* Speedup by chunk size, the adaptive one, and the peers at the same w. */
static void summary_chunk_table(FILE *f, const struct mhb_table *t,
                                const struct mhb_names *runners)
{
    const struct mhb_row *first = summary_sweep(t);
    if (!first)
        return;
    const char *kn = first->kernel;
    int w = first->workers;
    size_t chunks[MHB_LIST_MAX];
    int nc = summary_chunks(t, first, chunks);
    fprintf(f, "\nChunk size: %s at %d workers, median speedup over seq by items per chunk\n%10s",
            kn, w, "runner");
    for (int c = 0; c < nc; c++)
        fprintf(f, " %8zu", chunks[c]);
    fprintf(f, "   adaptive (chunk it chose) / a peer's own scheduler\n");
    for (int b = 0; b < runners->n; b++) {
        const char *bn = runners->v[b];
        double a = summary_speedup(t, bn, kn, w, 0);
        bool swept = false;
        for (int c = 0; c < nc && !swept; c++)
            swept = !isnan(summary_speedup(t, bn, kn, w, chunks[c]));
        if (!swept && (summary_is_library(bn) || isnan(a)))
            continue;
        fprintf(f, "%10s", bn);
        for (int c = 0; c < nc; c++) {
            double s = summary_speedup(t, bn, kn, w, chunks[c]);
            if (isnan(s))
                fprintf(f, " %8s", "-");
            else
                fprintf(f, " %7.2fx", s);
        }
        double ac = mhb_stat(t, (struct mhb_match){bn, kn, w, 0}, MHB_CHUNK);
        if (isnan(a))
            fprintf(f, "   -\n");
        else if (isnan(ac))
            fprintf(f, "   %.2fx\n", a);
        else
            fprintf(f, "   %.2fx (%.0f)\n", a, ac);
    }
}

/* One kernel against one peer: the peer's median wall, then each library
 * backend's wall over it, by workers. */
static void summary_peer(FILE *f, const struct mhb_table *t, const char *kn, const char *peer,
                         const struct mhb_names *runners)
{
    int w[MHB_LIST_MAX];
    int nw = mhb_table_workers(t, kn, w, MHB_LIST_MAX);
    fprintf(f, "%s against %s:\n%8s %12s", kn, peer, "workers", peer);
    for (int b = 0; b < runners->n; b++)
        if (summary_is_library(runners->v[b]))
            fprintf(f, " %9s", runners->v[b]);
    fprintf(f, "\n");
    for (int i = 0; i < nw; i++) {
        double base = mhb_stat(t, (struct mhb_match){peer, kn, w[i], 0}, MHB_WALL);
        if (isnan(base))
            continue;
        fprintf(f, "%8d %10.4fs", w[i], base);
        for (int b = 0; b < runners->n; b++) {
            if (!summary_is_library(runners->v[b]))
                continue;
            double v = mhb_stat(t, (struct mhb_match){runners->v[b], kn, w[i], 0}, MHB_WALL);
            if (isnan(v))
                fprintf(f, " %9s", "-");
            else
                fprintf(f, " %8.2fx", v / base);
        }
        fprintf(f, "\n");
    }
}

/* Each library backend's median wall against each peer's that ran the
 * same kernel (same items and workers). */
static void summary_peers(FILE *f, const struct mhb_table *t, const struct mhb_names *kernels,
                          const struct mhb_names *runners)
{
    bool header = false;
    for (int k = 0; k < kernels->n; k++) {
        for (int b = 0; b < runners->n; b++) {
            const char *peer = runners->v[b];
            if (summary_is_library(peer) ||
                isnan(mhb_stat(t, (struct mhb_match){peer, kernels->v[k], 0, 0}, MHB_WALL)))
                continue;
            if (!header)
                fprintf(f, "\nAgainst the peers: median wall of each backend / the peer's, "
                           "same kernel, items and workers (below 1: the library is faster)\n");
            header = true;
            summary_peer(f, t, kernels->v[k], peer, runners);
        }
    }
}

/* IO-bound kernels at the three largest worker counts: median wall, peak
 * RSS and CPU seconds per runner: what a thread or a process per wait
 * costs beside an event loop. */
static void summary_in_flight(FILE *f, const struct mhb_table *t,
                              const struct mhb_names *kernels, const struct mhb_names *runners)
{
    for (int k = 0; k < kernels->n; k++) {
        const char *kn = kernels->v[k];
        if (strcmp(mhb_table_first(t, kn)->bound, "io"))
            continue;
        int w[MHB_LIST_MAX];
        int nw = mhb_table_workers(t, kn, w, MHB_LIST_MAX);
        int from = nw > 3 ? nw - 3 : 0;
        fprintf(f, "\n%s in flight (%zu items): median wall s / peak RSS MiB / CPU s\n%10s",
                kn, mhb_table_first(t, kn)->items, "runner");
        for (int i = from; i < nw; i++)
            fprintf(f, " %24d", w[i]);
        fprintf(f, "\n");
        for (int b = 0; b < runners->n; b++) {
            const char *bn = runners->v[b];
            bool ran = false;
            for (int i = from; i < nw && !ran; i++)
                ran = !isnan(mhb_stat(t, (struct mhb_match){bn, kn, w[i], 0}, MHB_WALL));
            if (!ran)
                continue;
            fprintf(f, "%10s", bn);
            for (int i = from; i < nw; i++) {
                struct mhb_match m = {bn, kn, w[i], 0};
                double wall = mhb_stat(t, m, MHB_WALL);
                if (isnan(wall))
                    fprintf(f, " %24s", "-");
                else
                    fprintf(f, "   %7.3f / %6.1f / %6.2f", wall, mhb_stat(t, m, MHB_RSS_MIB),
                            mhb_stat(t, m, MHB_CPU));
            }
            fprintf(f, "\n");
        }
    }
}

/* One kernel's speedup table: a column per runner, a row per worker count. */
static void summary_kernel(FILE *f, const struct mhb_table *t, const char *kn,
                           const struct mhb_names *runners)
{
    const struct mhb_row *first = mhb_table_first(t, kn);
    fprintf(f, "\n%s (%s-bound, %zu items; seq %.4f s)\n%8s", kn, first->bound, first->items,
            mhb_baseline_wall(t, kn), "workers");
    struct mhb_names cols = {.n = 0};
    for (int b = 0; b < runners->n; b++)
        if (!isnan(mhb_stat(t, (struct mhb_match){runners->v[b], kn, 0, SIZE_MAX}, MHB_WALL)))
            mhb_names_add(&cols, runners->v[b]);
    for (int b = 0; b < cols.n; b++)
        fprintf(f, " %11s", cols.v[b]);
    fprintf(f, "   best\n");
    int w[MHB_LIST_MAX];
    int nw = mhb_table_workers(t, kn, w, MHB_LIST_MAX);
    for (int i = 0; i < nw; i++) {
        fprintf(f, "%8d", w[i]);
        for (int b = 0; b < cols.n; b++) {
            double s = summary_speedup(t, cols.v[b], kn, w[i], 0);
            if (isnan(s))
                fprintf(f, " %11s", "-");
            else
                fprintf(f, " %10.2fx", s);
        }
        const char *which = NULL;
        double best = mhb_best_library(t, &cols, kn, w[i], &which);
        if (isnan(best))
            fprintf(f, "   -\n");
        else
            fprintf(f, "   %s %.2fx\n", which, best);
    }
}

void mhb_summary(FILE *f, const struct mhb_table *t, int cores)
{
    struct mhb_names kernels, runners;
    mhb_table_names(t, &kernels, &runners);
    fprintf(f, "\nSummary: median speedup over seq (same kernel and items), by workers; "
               "best = fastest library backend\n");
    for (int k = 0; k < kernels.n; k++)
        summary_kernel(f, t, kernels.v[k], &runners);
    summary_chunk_table(f, t, &runners);
    summary_peers(f, t, &kernels, &runners);
    summary_in_flight(f, t, &kernels, &runners);
    fprintf(f, "\nVerdict (%d cores):\n", cores);
    summary_verdict(f, t, &kernels, &runners, "cpu", cores);
    summary_verdict(f, t, &kernels, &runners, "io", cores);
}
