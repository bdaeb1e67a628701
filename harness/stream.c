/*
 * The stream experiment (`manyhands-bench stream`): the same work through
 * mh_map and through mh_stream, per backend and worker count, each run a
 * `cell` in its own process as in the matrix (run.c), one CSV row each.
 * Its kernel column names the work and the call, "<work>:<call>":
 *
 *   <seed>:map, :stream, :as-completed  the seed's workload (its kernel's
 *                 seed_items, 10^6 factorials), workers 1 and 2
 *   empty:map, empty:stream             a function that does nothing,
 *                 10^7 items: what each item costs the library
 *   jobs:maps, jobs:stream              10^4 one-item jobs (chunk 1) on
 *                 fork and threads: one mh_map per job, or one stream
 *                 (the runner table's stream_works says which backends)
 *   <io>:map, <io>:stream               the first IO-bound kernel (sleep,
 *                 1 ms) x 2048 at 64 workers on fork and threads, with
 *                 adaptive chunks and with chunk 1
 *   copy:map, copy:stream               out = in over 10^8 ints: peak RSS
 *                 of a stream against a map's 800 MB (map on threads only)
 *
 * seq runs every kind first, at 1 worker: the speedups' baseline; then
 * the cells of one work run in the same rounds (a slow minute of a
 * shared machine hits the map and the stream alike). A
 * backend whose stream does not work here yet (stream_probe) is skipped
 * and said so.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "bench.h"

#define STREAM_KINDS 12
static struct mhb_stream_kind stream_kinds[STREAM_KINDS + 1];
static char stream_names[STREAM_KINDS][MHB_NAME_MAX];

static const char *const stream_call_names[] = {
    [MHB_CALL_MAP] = "map", [MHB_CALL_MAPS] = "maps", [MHB_CALL_STREAM] = "stream",
    [MHB_CALL_AS_COMPLETED] = "as-completed",
};

/* One kind into the table at *n: the work's name, items, workers. */
static void stream_kind(int *n, const char *work, const struct mhk_kernel *k,
                        struct mhb_stream_kind kind)
{
    if (*n >= STREAM_KINDS)
        return;
    snprintf(stream_names[*n], MHB_NAME_MAX, "%s:%s", work, stream_call_names[kind.call]);
    kind.row.name = stream_names[*n];
    if (kind.n_chunks == 0)
        kind.n_chunks = 1; /* adaptive */
    kind.row.description = k ? k->description : "";
    kind.kernel = k;
    stream_kinds[(*n)++] = kind;
}

/* The kinds of one work, one per call in calls (ending with -1). */
static void stream_work(int *n, const char *work, const struct mhk_kernel *k,
                        struct mhb_stream_kind kind, const int *calls)
{
    for (; *calls >= 0; calls++) {
        kind.call = (enum mhb_stream_call)*calls;
        stream_kind(n, work, k, kind);
    }
}

const struct mhb_stream_kind *mhb_stream_kinds(void)
{
    if (stream_kinds[0].row.name)
        return stream_kinds;
    const struct mhk_kernel *seed = NULL, *io = NULL;
    for (const struct mhk_kernel *const *k = mhk_kernels(); *k; k++) {
        if ((*k)->seed_items && !seed)
            seed = *k;
        if ((*k)->bound == MHK_IO && !io)
            io = *k;
    }
    static const int map_streams[] = {MHB_CALL_MAP, MHB_CALL_STREAM, MHB_CALL_AS_COMPLETED, -1};
    static const int map_stream[] = {MHB_CALL_MAP, MHB_CALL_STREAM, -1};
    static const int maps_stream[] = {MHB_CALL_MAPS, MHB_CALL_STREAM, -1};
    static const int map_only[] = {MHB_CALL_MAP, -1}, stream_only[] = {MHB_CALL_STREAM, -1};
    int n = 0;
    if (seed)
        stream_work(&n, seed->name, seed,
                    (struct mhb_stream_kind){
                        .row = {.bound = MHK_CPU, .in_size = seed->in_size,
                                .out_size = seed->out_size, .default_items = seed->seed_items,
                                .quick_items = seed->quick_items / 10},
                        .work = MHB_WORK_SEED, .workers = {1, 2}, .n_workers = 2,
                        .quick_workers = 2},
                    map_streams);
    struct mhk_kernel ints = {.bound = MHK_CPU, .in_size = sizeof(int), .out_size = sizeof(int)};
    ints.default_items = 10000000, ints.quick_items = 10000;
    stream_work(&n, "empty", NULL,
                (struct mhb_stream_kind){.row = ints, .work = MHB_WORK_EMPTY, .workers = {1, 2},
                                         .n_workers = 2, .quick_workers = 2},
                map_stream);
    ints.default_items = 10000, ints.quick_items = 100;
    stream_work(&n, "jobs", NULL,
                (struct mhb_stream_kind){.row = ints, .work = MHB_WORK_JOBS, .chunks = {1},
                                         .workers = {2}, .n_workers = 1, .quick_workers = 2,
                                         .needs = MHB_STREAM_JOBS},
                maps_stream);
    if (io)
        stream_work(&n, io->name, io,
                    (struct mhb_stream_kind){
                        .row = {.bound = MHK_IO, .in_size = io->in_size,
                                .out_size = io->out_size, .default_items = 2048,
                                .quick_items = 64},
                        .work = MHB_WORK_IO, .chunks = {0, 1}, .n_chunks = 2,
                        .workers = {64}, .n_workers = 1, .quick_workers = 8,
                        .needs = MHB_STREAM_JOBS},
                    map_stream);
    ints.default_items = 100000000, ints.quick_items = 100000;
    struct mhb_stream_kind copy = {.row = ints, .work = MHB_WORK_COPY, .workers = {2},
                                   .n_workers = 1, .quick_workers = 2,
                                   .needs = MHB_STREAM_BIG_MAP};
    stream_work(&n, "copy", NULL, copy, map_only);
    copy.needs = MHB_STREAM_JOBS;
    stream_work(&n, "copy", NULL, copy, stream_only);
    return stream_kinds;
}

const struct mhb_stream_kind *mhb_stream_find(const char *name)
{
    for (const struct mhb_stream_kind *k = mhb_stream_kinds(); k->row.name; k++)
        if (strcmp(k->row.name, name) == 0)
            return k;
    return NULL;
}

/* ------------------------------------------------------------- the plan */

/* Whether backend r's stream works here: a 3-item stream cell whose
 * stream returns 0. Otherwise it is noted in run->skipped, with why: no stream
 * yet (its cell exits 77 on MH_ENOTSUP), or how the probe failed (the
 * conformance tests judge that; this experiment only measures). */
static bool stream_probe(struct mhb_run *run, const struct mhb_runner *r)
{
    const struct mhb_stream_kind *k = mhb_stream_find("empty:stream");
    struct mhb_plan plan = {r, &k->row, 3, r->launched ? 2 : 1, 0, NULL};
    struct mhb_call call = mhb_plan_call(run, &plan, 0);
    char *argv[40], buf[4 * MHB_PATH_MAX], why[192] = "could not start it";
    struct mhb_proc *p = malloc(sizeof *p);
    bool ok = false;
    if (p && mhb_runner_argv(r, &call, argv, 40, buf, sizeof buf) == 0 &&
        mhb_proc_run(argv, r->env, 60, p) == 0) {
        struct mhb_row row = {.chunk = 0};
        mhb_runner_parse(r, p, plan.workers, &row);
        /* The stream ran and returned 0; what its outputs are (wrong
         * under MHB_CORRUPT) is for the rows to say. */
        const char *line = mhb_find_line(p->out, r->tag);
        ok = line && WIFEXITED(p->status) && WEXITSTATUS(p->status) <= 1 &&
             !strstr(line, " error=stream:") && !strstr(line, " error=open:");
        if (WIFEXITED(p->status) && WEXITSTATUS(p->status) == 77)
            snprintf(why, sizeof why, "no stream on this backend yet (MH_ENOTSUP)");
        else
            snprintf(why, sizeof why, "its stream failed a 3-item probe (%s)", row.error);
    }
    free(p);
    if (!ok) {
        size_t used = strlen(run->skipped);
        snprintf(run->skipped + used, sizeof run->skipped - used, "%s%s: %s",
                 used ? "; " : "", r->name, why);
    }
    return ok;
}

/* Whether runner r runs kind k (the baseline always does). */
static bool stream_takes(const struct mhb_run *run, const struct mhb_runner *r,
                         const struct mhb_stream_kind *k)
{
    if (r->baseline)
        return true;
    return mhb_plan_selected(run->o, r->name) && (r->stream_works & k->needs) == k->needs;
}

static bool stream_kind_selected(const struct mhb_options *o, const char *name)
{
    bool selected = o->n_kernels == 0;
    for (int i = 0; i < o->n_kernels; i++)
        selected |= strcmp(o->kernels[i], name) == 0;
    return selected;
}

int mhb_stream_plan(struct mhb_run *run, struct mhb_plans *plans)
{
    const struct mhb_options *o = run->o;
    const struct mhb_runner *ok[64];
    int nok = 0;
    for (const struct mhb_runner *const *r = mhb_runners(); *r && nok < 64; r++)
        if ((*r)->library && ((*r)->experiments & MHB_IN_STREAM) &&
            ((*r)->baseline || mhb_plan_selected(o, (*r)->name)) && stream_probe(run, *r))
            ok[nok++] = *r;
    const struct mhb_stream_kind *work = NULL; /* the first kind of k's work */
    for (const struct mhb_stream_kind *k = mhb_stream_kinds(); k->row.name; k++) {
        if (!work || work->work != k->work)
            work = k;
        if (!stream_kind_selected(o, k->row.name))
            continue;
        size_t items = o->items ? o->items : o->quick ? k->row.quick_items
                                                        : (size_t)((double)k->row.default_items *
                                                                   o->scale);
        if (items == 0)
            items = 1;
        int wl[MHB_LIST_MAX], nw = o->n_workers;
        if (nw)
            memcpy(wl, o->workers, sizeof(int) * (size_t)nw);
        else if (o->quick)
            wl[0] = k->quick_workers, nw = 1;
        else
            memcpy(wl, k->workers, sizeof(int) * (size_t)(nw = k->n_workers));
        for (int i = 0; i < nok; i++) {
            const struct mhb_runner *r = ok[i];
            if (!stream_takes(run, r, k))
                continue;
            /* The baseline once, at 1 worker and the first chunk size. */
            for (int w = 0; w < (r->baseline ? 1 : nw); w++) {
                int workers = r->baseline ? 1 : wl[w];
                if (r->workers_max && !o->n_workers && workers > r->workers_max)
                    continue;
                for (int c = 0; c < (r->baseline ? 1 : k->n_chunks); c++) {
                    if (mhb_reserve((void **)&plans->v, &plans->cap, plans->n,
                                    sizeof *plans->v))
                        return -1;
                    plans->v[plans->n++] = (struct mhb_plan){r, &k->row, items, workers,
                                                             k->chunks[c], work};
                }
            }
        }
    }
    return 0;
}
