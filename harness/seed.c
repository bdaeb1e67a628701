/* The seed experiment's report: the blog's "Processes: N, Seconds: S"
 * lines per runner, one table side by side, and the blog's question
 * answered per worker count. Seconds = pool start + map + stop, as the
 * blog's run() times Pool(n) and map (the peers' own timing). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

static double seed_seconds(const struct mhb_run *run, const char *name, int w)
{
    return mhb_stat(&run->table, (struct mhb_match){name, NULL, w, SIZE_MAX}, MHB_SECONDS);
}

/* The runners and worker counts of the plans, in plan order. */
static void seed_columns(const struct mhb_plans *plans, struct mhb_names *names, int *ws,
                         int *nw)
{
    size_t sorted[MHB_LIST_MAX];
    int n = 0;
    names->n = 0;
    for (size_t i = 0; i < plans->n; i++) {
        mhb_names_add(names, plans->v[i].runner->name);
        n = mhb_add_sorted(sorted, n, MHB_LIST_MAX, (size_t)plans->v[i].workers);
    }
    for (int i = 0; i < n; i++)
        ws[i] = (int)sorted[i];
    *nw = n;
}

/* The fastest of the library's (library) or the peers' runners at w. */
static double seed_best(const struct mhb_run *run, const struct mhb_names *names, int w,
                        bool library, const char **which)
{
    double best = NAN;
    for (int b = 0; b < names->n; b++) {
        const struct mhb_runner *r = mhb_runner_find(names->v[b]);
        if (r->library != library || (r->baseline && w != 1))
            continue;
        double s = seed_seconds(run, names->v[b], w);
        if (!isnan(s) && (isnan(best) || s < best)) {
            best = s;
            *which = names->v[b];
        }
    }
    return best;
}

/* The blog's question, per worker count: the library's best against the
 * blog's program and against the fastest peer. */
static void seed_answer(FILE *out, const struct mhb_run *run, const struct mhb_names *names,
                        const int *ws, int nw)
{
    const char *ref = NULL;
    for (int b = 0; b < names->n && !ref; b++)
        if (mhb_runner_find(names->v[b])->reference)
            ref = names->v[b];
    for (int i = 0; i < nw; i++) {
        const char *lib = NULL, *peer = NULL;
        double best = seed_best(run, names, ws[i], true, &lib);
        double fastest = seed_best(run, names, ws[i], false, &peer);
        double blog = ref ? seed_seconds(run, ref, ws[i]) : NAN;
        if (isnan(best))
            continue;
        fprintf(out, "%d worker%s: manyhands %s %.3f s", ws[i], ws[i] > 1 ? "s" : "", lib,
                best);
        if (!isnan(blog))
            fprintf(out, "; the blog's %s %.3f s: %.1fx faster", ref, blog, blog / best);
        if (!isnan(fastest))
            fprintf(out, "; fastest peer %s %.3f s (%.2fx manyhands' time)", peer, fastest,
                    best / fastest);
        fprintf(out, "\n");
    }
}

void mhb_seed_report(FILE *out, const struct mhb_run *run, const struct mhb_plans *plans)
{
    struct mhb_names names;
    int ws[MHB_LIST_MAX], nw;
    seed_columns(plans, &names, ws, &nw);
    int repeat = run->repeat;
    fprintf(out, "\nseed: %s of %zu random ints in [1,100), median of %d run%s; Seconds = pool "
                 "start + map + stop\n(as the blog's run() times Pool(n) and map; each peer's "
                 "own timing)\n",
            plans->v[0].kernel->name, plans->v[0].items, repeat, repeat > 1 ? "s" : "");
    for (int b = 0; b < names.n; b++) {
        bool baseline = mhb_runner_find(names.v[b])->baseline;
        fprintf(out, "backend: %s\n", names.v[b]);
        for (int i = 0; i < nw; i++) {
            if (baseline && ws[i] != 1)
                continue;
            double s = seed_seconds(run, names.v[b], ws[i]);
            if (isnan(s))
                fprintf(out, "Processes: %d, Seconds: failed\n", ws[i]);
            else
                fprintf(out, "Processes: %d, Seconds: %.2f\n", ws[i], s);
        }
    }
    fprintf(out, "\nSide by side, seconds:\n%8s", "workers");
    for (int b = 0; b < names.n; b++)
        fprintf(out, " %*s", (int)(strlen(names.v[b]) > 9 ? strlen(names.v[b]) : 9),
                names.v[b]);
    fprintf(out, "\n");
    for (int i = 0; i < nw; i++) {
        fprintf(out, "%8d", ws[i]);
        for (int b = 0; b < names.n; b++) {
            int width = (int)(strlen(names.v[b]) > 9 ? strlen(names.v[b]) : 9);
            double s = seed_seconds(run, names.v[b], ws[i]);
            if (isnan(s))
                fprintf(out, " %*s", width, "-");
            else
                fprintf(out, " %*.3f", width, s);
        }
        fprintf(out, "\n");
    }
    seed_answer(out, run, &names, ws, nw);
}
