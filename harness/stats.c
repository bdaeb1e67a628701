/* The harness's statistics: one median, taken of any field of the rows
 * that match, and the rates (speedup, efficiency, items/s) of a row. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static int stats_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double mhb_median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, stats_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double stats_value(const struct mhb_row *r, enum mhb_field field)
{
    switch (field) {
    case MHB_WALL:
        return r->wall_s;
    case MHB_SECONDS:
        return r->wall_s + (isnan(r->pool_s) ? 0 : r->pool_s);
    case MHB_SPEEDUP:
        return r->speedup;
    case MHB_CHUNK:
        return r->chunk ? (double)r->chunk : NAN;
    case MHB_RSS_MIB:
        return (double)r->peak_rss_kib / 1024.0;
    case MHB_CPU:
        return r->user_s + r->sys_s;
    }
    return NAN;
}

static bool stats_matches(const struct mhb_row *r, const struct mhb_match *m)
{
    return !r->error[0] && (!m->backend || !strcmp(r->backend, m->backend)) &&
           (!m->kernel || !strcmp(r->kernel, m->kernel)) &&
           (!m->workers || r->workers == m->workers) &&
           (m->chunk_asked == SIZE_MAX || r->chunk_asked == m->chunk_asked);
}

double mhb_stat(const struct mhb_table *t, struct mhb_match m, enum mhb_field field)
{
    double *v = malloc((t->n + 1) * sizeof *v);
    if (!v)
        return NAN;
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (!stats_matches(&t->rows[i], &m))
            continue;
        double x = stats_value(&t->rows[i], field);
        if (!isnan(x))
            v[n++] = x;
    }
    double median = mhb_median(v, n);
    free(v);
    return median;
}

void mhb_row_rates(struct mhb_row *row, double baseline_wall)
{
    if (row->error[0] || !(row->wall_s > 0))
        return;
    row->items_per_s = (double)row->items / row->wall_s;
    if (!isnan(baseline_wall)) {
        row->speedup = baseline_wall / row->wall_s;
        row->efficiency = row->speedup / row->workers;
    }
}

/* The runner whose rows are the baseline (seq), or NULL. */
static const char *stats_baseline_name(void)
{
    for (const struct mhb_runner *const *r = mhb_runners(); *r; r++)
        if ((*r)->baseline)
            return (*r)->name;
    return NULL;
}

double mhb_baseline_wall(const struct mhb_table *t, const char *kernel)
{
    const char *base = stats_baseline_name();
    if (!base)
        return NAN;
    return mhb_stat(t, (struct mhb_match){base, kernel, 1, SIZE_MAX}, MHB_WALL);
}

int mhb_reserve(void **v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t grown = *cap ? 2 * *cap : 64;
    void *p = realloc(*v, grown * size);
    if (!p)
        return -1;
    *v = p;
    *cap = grown;
    return 0;
}

int mhb_table_add(struct mhb_table *t, const struct mhb_row *r)
{
    if (mhb_reserve((void **)&t->rows, &t->cap, t->n, sizeof *t->rows))
        return -1;
    t->rows[t->n++] = *r;
    return 0;
}

void mhb_names_add(struct mhb_names *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0)
            return;
    if (s->n < 64)
        s->v[s->n++] = name;
}

void mhb_table_names(const struct mhb_table *t, struct mhb_names *kernels,
                     struct mhb_names *runners)
{
    const char *base = stats_baseline_name();
    kernels->n = runners->n = 0;
    for (size_t i = 0; i < t->n; i++) {
        mhb_names_add(kernels, t->rows[i].kernel);
        if (!base || strcmp(t->rows[i].backend, base))
            mhb_names_add(runners, t->rows[i].backend);
    }
}

int mhb_add_sorted(size_t *v, int n, int max, size_t x)
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

int mhb_table_workers(const struct mhb_table *t, const char *kernel, int *w, int max)
{
    const char *base = stats_baseline_name();
    size_t found[MHB_LIST_MAX];
    int n = 0;
    if (max > MHB_LIST_MAX)
        max = MHB_LIST_MAX;
    for (size_t i = 0; i < t->n; i++) {
        const struct mhb_row *r = &t->rows[i];
        if ((!kernel || !strcmp(r->kernel, kernel)) && !r->chunk_asked &&
            (!base || strcmp(r->backend, base)))
            n = mhb_add_sorted(found, n, max, (size_t)r->workers);
    }
    for (int k = 0; k < n; k++)
        w[k] = (int)found[k];
    return n;
}

const struct mhb_row *mhb_table_first(const struct mhb_table *t, const char *kernel)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->rows[i].kernel, kernel) == 0)
            return &t->rows[i];
    return NULL;
}

double mhb_best_library(const struct mhb_table *t, const struct mhb_names *runners,
                        const char *kernel, int w, const char **which)
{
    double best = NAN;
    for (int b = 0; b < runners->n; b++) {
        const struct mhb_runner *r = mhb_runner_find(runners->v[b]);
        if (!r || !r->library)
            continue;
        double s = mhb_stat(t, (struct mhb_match){runners->v[b], kernel, w, 0}, MHB_SPEEDUP);
        if (!isnan(s) && (isnan(best) || s > best)) {
            best = s;
            if (which)
                *which = runners->v[b];
        }
    }
    return best;
}
