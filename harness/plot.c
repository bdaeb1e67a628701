/* The gnuplot scripts of a run, and gnuplot run on them: per kernel the
 * speedup against workers (a line per runner, peers dashed, the ideal
 * line, the core count marked), CPU-bound against IO-bound, the chunk
 * sweep, the seed's seconds. Colours and dashes come from the runner
 * table (peers.c), so a runner looks the same in every plot. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "bench.h"

static const char *const plot_kernel_colors[] = {
    "#08306b", "#2171b5", "#6baed6", "#238b45", "#74c476", /* cpu: blues, greens */
    "#a50f15", "#ef3b2c", "#fc9272", "#d94801", "#fdae6b", /* io: reds, oranges */
};

static const char *const plot_terms[][2] = {
    {"set terminal pngcairo size 960,640 noenhanced font 'Sans,11'", "png"},
    {"set terminal svg size 960,640 noenhanced font 'Sans,11' background '#ffffff'", "svg"},
};

/* A runner's line: "dt D lc rgb 'C'". */
static void plot_style(FILE *f, const char *name)
{
    const struct mhb_runner *r = mhb_runner_find(name);
    fprintf(f, "dt %d lc rgb '%s'", r ? r->dash : 1, r ? r->color : "#17becf");
}

static const char *plot_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Run gnuplot on script inside its directory (the script names its
 * outputs without a directory, so it can be rerun by hand there). */
static int plot_gnuplot(const char *script)
{
    char dir[MHB_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", script);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    char *argv[] = {"sh", "-c", "cd \"$1\" && exec gnuplot \"$2\"", "sh", dir,
                    (char *)plot_basename(script), NULL};
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

static FILE *plot_open(const char *base, char *script, size_t size)
{
    snprintf(script, size, "%s.gp", base);
    FILE *f = fopen(script, "w");
    if (!f)
        fprintf(stderr, "manyhands-bench: cannot write %s: %s\n", script, strerror(errno));
    return f;
}

static int plot_close(FILE *f, const char *script)
{
    if (fclose(f)) {
        fprintf(stderr, "manyhands-bench: cannot write %s\n", script);
        return -1;
    }
    return plot_gnuplot(script);
}

/* The vertical line at the core count. */
static void plot_cores_marker(FILE *f, int cores)
{
    fprintf(f, "set arrow 1 from %d, graph 0 to %d, graph 1 nohead dt 3 lc rgb '#666666'\n",
            cores, cores);
    fprintf(f, "set label 1 'cores = %d' at %d, graph 0.04 offset 0.6,0 tc rgb '#666666'\n",
            cores, cores);
}

static double plot_speedup(const struct mhb_table *t, const char *runner, const char *kernel,
                           int w, size_t chunk)
{
    return mhb_stat(t, (struct mhb_match){runner, kernel, w, chunk}, MHB_SPEEDUP);
}

/* Data blocks: $k<K>b<B> (workers, median speedup), $best<K>. */
static void plot_matrix_data(FILE *f, const struct mhb_table *t, const struct mhb_names *kernels,
                             const struct mhb_names *runners)
{
    for (int k = 0; k < kernels->n; k++) {
        int w[MHB_LIST_MAX];
        int nw = mhb_table_workers(t, kernels->v[k], w, MHB_LIST_MAX);
        for (int b = 0; b < runners->n; b++) {
            fprintf(f, "$k%db%d << EOD\n", k, b);
            for (int i = 0; i < nw; i++) {
                double s = plot_speedup(t, runners->v[b], kernels->v[k], w[i], 0);
                if (!isnan(s))
                    fprintf(f, "%d %.4f\n", w[i], s);
            }
            fprintf(f, "EOD\n");
        }
        fprintf(f, "$best%d << EOD\n", k);
        for (int i = 0; i < nw; i++) {
            double s = mhb_best_library(t, runners, kernels->v[k], w[i], NULL);
            if (!isnan(s))
                fprintf(f, "%d %.4f\n", w[i], s);
        }
        fprintf(f, "EOD\n");
    }
}

/* One kernel's speedup plot. */
static void plot_kernel(FILE *f, const struct mhb_table *t, const char *name, int k,
                        const char *kn, const struct mhb_names *runners, int cores, int repeat,
                        int term)
{
    const struct mhb_row *first = mhb_table_first(t, kn);
    int w[MHB_LIST_MAX];
    int nw = mhb_table_workers(t, kn, w, MHB_LIST_MAX);
    if (nw == 0)
        return;
    fprintf(f, "\nreset\n%s\nset output '%s-%s.%s'\n", plot_terms[term][0], name, kn,
            plot_terms[term][1]);
    fprintf(f, "set title '%s (%s-bound, %zu items): speedup over seq, median of %d run%s'\n",
            kn, first->bound, first->items, repeat, repeat > 1 ? "s" : "");
    fprintf(f, "set xlabel 'workers (in flight)'\nset ylabel 'speedup over seq'\n"
               "set grid\nset key top left box opaque\n");
    if (strcmp(first->bound, "io") == 0)
        fprintf(f, "set logscale xy 2\nset xrange [0.8:%g]\nset yrange [0.5:*]\n",
                w[nw - 1] * 1.25);
    else
        fprintf(f, "set xrange [0.5:%g]\nset yrange [0:*]\nset xtics 1\n", w[nw - 1] + 0.5);
    plot_cores_marker(f, cores);
    fprintf(f, "plot x with lines dt 2 lw 1.5 lc rgb '#999999' title 'ideal'");
    for (int b = 0; b < runners->n; b++) {
        if (isnan(mhb_stat(t, (struct mhb_match){runners->v[b], kn, 0, 0}, MHB_SPEEDUP)))
            continue;
        fprintf(f, ", \\\n  $k%db%d using 1:2 with linespoints lw 2 pt 7 ps 0.8 ", k, b);
        plot_style(f, runners->v[b]);
        fprintf(f, " title '%s'", runners->v[b]);
    }
    fprintf(f, "\n");
}

/* CPU-bound against IO-bound: each kernel's best library backend. */
static void plot_bound(FILE *f, const struct mhb_table *t, const char *name,
                       const struct mhb_names *kernels, int cores, int repeat, int term)
{
    fprintf(f, "\nreset\n%s\nset output '%s-bound.%s'\n", plot_terms[term][0], name,
            plot_terms[term][1]);
    fprintf(f, "set title 'CPU-bound vs IO-bound: speedup of the best backend per kernel "
               "(median of %d)'\n", repeat);
    fprintf(f, "set xlabel 'workers'\nset ylabel 'speedup over seq'\nset grid\n"
               "set logscale xy 2\nset xrange [0.8:1300]\nset yrange [0.5:1300]\n"
               "set key top left box opaque\n");
    plot_cores_marker(f, cores);
    fprintf(f, "plot x with lines dt 2 lw 1.5 lc rgb '#999999' title 'ideal'");
    int cpu_i = 0, io_i = 0;
    for (int k = 0; k < kernels->n; k++) {
        const struct mhb_row *first = mhb_table_first(t, kernels->v[k]);
        bool io = strcmp(first->bound, "io") == 0;
        const char *color = io ? plot_kernel_colors[5 + io_i++ % 5]
                               : plot_kernel_colors[cpu_i++ % 5];
        fprintf(f, ", \\\n  $best%d using 1:2 with linespoints lw 2 pt %d ps 0.9 dt 1 "
                   "lc rgb '%s' title '%s (%s)'",
                k, io ? 9 : 7, color, kernels->v[k], first->bound);
    }
    fprintf(f, "\n");
}

/* The sweep's data: $c<B> (chunk, speedup) per library runner, $a<B> the
 * adaptive run at the chunk it chose, $p<B> a peer's own scheduler as a
 * level line across the chunks. 0 when the run had no sweep. */
static int plot_chunk_data(FILE *f, const struct mhb_table *t, const struct mhb_names *runners,
                           const char **kernel, int *w)
{
    size_t chunks[MHB_LIST_MAX];
    int nc = 0;
    *kernel = NULL;
    for (size_t i = 0; i < t->n; i++) {
        const struct mhb_row *r = &t->rows[i];
        if (r->chunk_asked && !*kernel) {
            *kernel = r->kernel;
            *w = r->workers;
        }
        if (r->chunk_asked && !strcmp(r->kernel, *kernel) && r->workers == *w)
            nc = mhb_add_sorted(chunks, nc, MHB_LIST_MAX, r->chunk_asked);
    }
    for (int b = 0; b < runners->n && nc; b++) {
        const char *bn = runners->v[b];
        const struct mhb_runner *r = mhb_runner_find(bn);
        double as = plot_speedup(t, bn, *kernel, *w, 0);
        fprintf(f, "$c%d << EOD\n", b);
        for (int c = 0; c < nc && r && r->library; c++) {
            double v = plot_speedup(t, bn, *kernel, *w, chunks[c]);
            if (!isnan(v))
                fprintf(f, "%zu %.4f\n", chunks[c], v);
        }
        fprintf(f, "EOD\n$a%d << EOD\n", b);
        double ac = mhb_stat(t, (struct mhb_match){bn, *kernel, *w, 0}, MHB_CHUNK);
        if (r && r->library && !isnan(ac) && !isnan(as))
            fprintf(f, "%.0f %.4f\n", ac, as);
        fprintf(f, "EOD\n$p%d << EOD\n", b);
        if (r && !r->library && !isnan(as))
            fprintf(f, "%zu %.4f\n%zu %.4f\n", chunks[0], as, chunks[nc - 1], as);
        fprintf(f, "EOD\n");
    }
    return nc;
}

static void plot_chunks(FILE *f, const struct mhb_table *t, const char *name,
                        const struct mhb_names *runners, const char *kernel, int w, int repeat,
                        int term)
{
    fprintf(f, "\nreset\n%s\nset output '%s-chunks.%s'\n", plot_terms[term][0], name,
            plot_terms[term][1]);
    fprintf(f, "set title '%s at %d workers: speedup over seq against chunk size "
               "(median of %d)'\n", kernel, w, repeat);
    fprintf(f, "set xlabel 'items per chunk (open circles: adaptive, at the chunk it chose; "
               "dashed: a peer scheduling itself)'\nset ylabel 'speedup over seq'\nset grid\n"
               "set logscale x 2\nset yrange [0:%g]\nset key bottom left box opaque\n",
               w * 1.15);
    fprintf(f, "plot %d with lines dt 2 lw 1.5 lc rgb '#999999' title 'ideal (%d)'", w, w);
    for (int b = 0; b < runners->n; b++) {
        const char *bn = runners->v[b];
        const struct mhb_runner *r = mhb_runner_find(bn);
        bool has = false;
        for (size_t i = 0; i < t->n && !has; i++)
            has = !strcmp(t->rows[i].backend, bn) && !strcmp(t->rows[i].kernel, kernel) &&
                  t->rows[i].workers == w && (t->rows[i].chunk_asked || (r && !r->library));
        if (!has)
            continue;
        fprintf(f, ", \\\n  $%c%d using 1:2 with linespoints lw 2 pt 7 ", r && !r->library ? 'p'
                                                                                          : 'c',
                b);
        plot_style(f, bn);
        fprintf(f, " title '%s'", bn);
        if (r && r->library) {
            fprintf(f, ", \\\n  $a%d using 1:2 with points pt 6 ps 2.5 lw 2 ", b);
            plot_style(f, bn);
            fprintf(f, " notitle");
        }
    }
    fprintf(f, "\n");
}

int mhb_plot_matrix(const char *base, const struct mhb_table *t, int cores, int repeat)
{
    char script[MHB_PATH_MAX + 8];
    const char *name = plot_basename(base);
    FILE *f = plot_open(base, script, sizeof script);
    if (!f)
        return -1;
    struct mhb_names kernels, runners;
    mhb_table_names(t, &kernels, &runners);
    fprintf(f, "# Generated by manyhands-bench from %s.csv: medians of the rows.\n"
               "# Redraw by hand: cd to this directory, then gnuplot %s.gp\n",
            name, name);
    plot_matrix_data(f, t, &kernels, &runners);
    const char *sweep_kernel;
    int sweep_w = 0;
    int nc = plot_chunk_data(f, t, &runners, &sweep_kernel, &sweep_w);
    for (int term = 0; term < 2; term++) {
        for (int k = 0; k < kernels.n; k++)
            plot_kernel(f, t, name, k, kernels.v[k], &runners, cores, repeat, term);
        plot_bound(f, t, name, &kernels, cores, repeat, term);
        if (nc)
            plot_chunks(f, t, name, &runners, sweep_kernel, sweep_w, repeat, term);
    }
    return plot_close(f, script);
}

/* $s<B>: a runner's median seconds by workers. Returns the largest w. */
static int plot_seed_data(FILE *f, const struct mhb_table *t, const struct mhb_names *runners)
{
    int wmax = 1;
    for (int b = 0; b < runners->n; b++) {
        size_t w[MHB_LIST_MAX];
        int nw = 0;
        for (size_t i = 0; i < t->n; i++)
            if (!strcmp(t->rows[i].backend, runners->v[b]))
                nw = mhb_add_sorted(w, nw, MHB_LIST_MAX, (size_t)t->rows[i].workers);
        fprintf(f, "$s%d << EOD\n", b);
        for (int i = 0; i < nw; i++) {
            double s = mhb_stat(t, (struct mhb_match){runners->v[b], NULL, (int)w[i], SIZE_MAX},
                                MHB_SECONDS);
            if (!isnan(s))
                fprintf(f, "%zu %.4f\n", w[i], s);
            if ((int)w[i] > wmax)
                wmax = (int)w[i];
        }
        fprintf(f, "EOD\n");
    }
    return wmax;
}

int mhb_plot_seed(const char *base, const struct mhb_table *t, int cores, int repeat)
{
    if (!t->n)
        return -1;
    char script[MHB_PATH_MAX + 8];
    const char *name = plot_basename(base);
    FILE *f = plot_open(base, script, sizeof script);
    if (!f)
        return -1;
    struct mhb_names runners = {.n = 0};
    for (size_t i = 0; i < t->n; i++)
        mhb_names_add(&runners, t->rows[i].backend);
    fprintf(f, "# Generated by manyhands-bench from %s.csv: median seconds (wall + pool;\n"
               "# each peer's own timing). Redraw: cd here, gnuplot %s.gp\n",
            name, name);
    int wmax = plot_seed_data(f, t, &runners);
    /* The blog's own figures (2017, a Jupyter notebook): its only data. */
    fprintf(f, "$blog << EOD\n1 8.40\n2 4.63\n3 5.27\n4 5.05\nEOD\n");
    for (int term = 0; term < 2; term++) {
        fprintf(f, "\nreset\n%s\nset output '%s.%s'\n", plot_terms[term][0], name,
                plot_terms[term][1]);
        fprintf(f, "set title \"The seed's experiment: %s of %zu random ints in [1,100), "
                   "seconds (median of %d)\"\n", t->rows[0].kernel, t->rows[0].items, repeat);
        fprintf(f, "set xlabel 'workers (processes, threads or ranks)'\nset ylabel 'seconds "
                   "(log scale)'\nset logscale y\nset grid\nset xrange [0.5:%g]\nset xtics 1\n"
                   "set key outside right top box\n", wmax + 0.5);
        plot_cores_marker(f, cores);
        fprintf(f, "plot ");
        for (int b = 0; b < runners.n; b++) {
            const struct mhb_runner *r = mhb_runner_find(runners.v[b]);
            fprintf(f, "%s$s%d using 1:2 with linespoints lw 2 pt %d ps 1 ", b ? ", \\\n  " : "",
                    b, r && r->baseline ? 5 : 7);
            plot_style(f, runners.v[b]);
            fprintf(f, " title '%s'", runners.v[b]);
        }
        if (t->rows[0].items == 1000000)
            fprintf(f, ", \\\n  $blog using 1:2 with linespoints lw 1.5 pt 4 dt 3 "
                       "lc rgb '#bbbbbb' title 'the blog (2017)'");
        fprintf(f, "\n");
    }
    return plot_close(f, script);
}
