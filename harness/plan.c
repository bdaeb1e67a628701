/* The plan: which cells a matrix or seed run has, in order, from the
 * kernels' descriptors (kernels.h) and the runner table (peers.c). */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#ifndef MHB_SOURCE_DIR
#define MHB_SOURCE_DIR "."
#endif
/* The launcher of the MPI the library was built with (CMake's FindMPI):
 * another MPI's would start W one-rank jobs instead of one W-rank job. */
#ifndef MHB_MPIEXEC
#define MHB_MPIEXEC "mpirun"
#endif

/* Fixed chunk sizes of the sweep (kernels with chunk_sweep). */
static const size_t plan_sweep_chunks[] = {1, 16, 256, 4096};

/* Every worker of an IO-bound cell gets at least this many items, so the
 * highest in-flight counts wait more than once. */
#define PLAN_ITEMS_PER_WORKER 4

static int plan_add(struct mhb_plans *p, struct mhb_plan plan)
{
    if (mhb_reserve((void **)&p->v, &p->cap, p->n, sizeof *p->v))
        return -1;
    p->v[p->n++] = plan;
    return 0;
}

struct mhb_call mhb_plan_call(const struct mhb_run *run, const struct mhb_plan *plan, int repeat)
{
    return (struct mhb_call){
        .self = run->self, .peers_dir = run->peers_dir, .source_dir = MHB_SOURCE_DIR,
        .mpiexec = MHB_MPIEXEC, .kernel = plan->kernel, .items = plan->items,
        .workers = plan->workers, .chunk = plan->chunk, .seed = run->o->seed,
        .repeat = repeat,
    };
}

/* Selected names: the option's list, or every one. */
bool mhb_plan_selected(const struct mhb_options *o, const char *name)
{
    if (o->n_backends == 0)
        return true;
    for (int i = 0; i < o->n_backends; i++)
        if (strcmp(o->backends[i], name) == 0)
            return true;
    return false;
}

/* Whether runner takes part in this run on kernel k; a peer that cannot
 * run here is noted once in run->skipped, never an error. */
static bool plan_takes(struct mhb_run *run, const struct mhb_runner *r,
                       const struct mhk_kernel *k)
{
    if (!(r->experiments & run->in) || (r->does && !r->does(k)) ||
        (!r->baseline && !mhb_plan_selected(run->o, r->name)))
        return false;
    if (r->library)
        return true;
    if (run->o->no_peers || run->o->n_chunks)
        return false;
    /* A probe may depend on the kernel: the note names it then. */
    bool per_kernel = false;
    for (const char *const *t = r->probe; t && *t && !per_kernel; t++)
        per_kernel = strcmp(*t, "$kernel") == 0;
    char key[2 * MHB_NAME_MAX + 8], why[512];
    snprintf(key, sizeof key, per_kernel ? "%s (%s):" : "%s:", r->name, k->name);
    const char *noted = strstr(run->skipped, key);
    if (noted && (noted == run->skipped || noted[-1] == ' '))
        return false;
    struct mhb_plan plan = {r, k, 1, 1, 0, NULL};
    struct mhb_call call = mhb_plan_call(run, &plan, 0);
    if (mhb_runner_available(r, &call, why, sizeof why))
        return true;
    size_t used = strlen(run->skipped);
    snprintf(run->skipped + used, sizeof run->skipped - used, "%s%s %s", used ? "; " : "", key,
             why);
    return false;
}

static size_t plan_items(const struct mhb_options *o, size_t dflt)
{
    if (o->items)
        return o->items;
    double n = (double)dflt * o->scale;
    return n < 1 ? 1 : (size_t)n;
}

/* The default worker counts of a kernel: CPU-bound 1..cores and twice
 * that; IO-bound 1, 2, 4, ..., 64, then 256 and 1024 in flight. */
static int plan_default_workers(const struct mhb_options *o, enum mhk_bound bound, int cores,
                                int *list)
{
    int n = 0;
    if (bound == MHK_CPU) {
        list[n++] = 1;
        if (o->quick) {
            if (cores > 1)
                list[n++] = cores;
            return n;
        }
        for (int w = 2; w <= cores && n < MHB_LIST_MAX - 1; w++)
            list[n++] = w;
        list[n++] = 2 * cores;
        return n;
    }
    if (o->quick) {
        list[0] = 1;
        list[1] = 8;
        return 2;
    }
    for (int w = 1; w <= 64; w *= 2)
        list[n++] = w;
    list[n++] = 256;
    list[n++] = MHB_WORKERS_LIMIT;
    return n;
}

/* Every runner of this run on kernel k at the listed worker counts
 * (chunks: the asked ones, or adaptive). */
static int plan_kernel(struct mhb_run *run, const struct mhk_kernel *k, size_t items,
                       const int *wl, int nw, struct mhb_plans *plans)
{
    const struct mhb_options *o = run->o;
    for (const struct mhb_runner *const *rp = mhb_runners(); *rp; rp++) {
        const struct mhb_runner *r = *rp;
        if (!plan_takes(run, r, k))
            continue;
        for (int w = 0; w < (r->baseline ? 1 : nw); w++) {
            int workers = r->baseline ? 1 : wl[w];
            if (r->workers_max && !o->n_workers && workers > r->workers_max)
                continue;
            int nc = o->n_chunks && r->library ? o->n_chunks : 1;
            for (int c = 0; c < nc; c++) {
                size_t chunk = o->n_chunks && r->library ? o->chunks[c] : 0;
                if (plan_add(plans, (struct mhb_plan){r, k, items, workers, chunk, NULL}))
                    return -1;
            }
        }
    }
    return 0;
}

/* The chunk sweep at W = cores, on the runners that sweep. */
static int plan_sweep(struct mhb_run *run, const struct mhk_kernel *k, size_t items,
                      struct mhb_plans *plans)
{
    int cores = run->machine.logical_cores;
    for (const struct mhb_runner *const *rp = mhb_runners(); *rp; rp++) {
        if (!(*rp)->chunk_sweep || !plan_takes(run, *rp, k))
            continue;
        for (size_t c = 0; c < sizeof plan_sweep_chunks / sizeof *plan_sweep_chunks; c++) {
            struct mhb_plan plan = {*rp, k, items, cores, plan_sweep_chunks[c], NULL};
            if (plan_add(plans, plan))
                return -1;
        }
    }
    return 0;
}

static int plan_matrix(struct mhb_run *run, struct mhb_plans *plans)
{
    const struct mhb_options *o = run->o;
    bool swept = false;
    for (const struct mhk_kernel *const *kp = mhk_kernels(); *kp; kp++) {
        const struct mhk_kernel *k = *kp;
        bool selected = o->n_kernels == 0;
        for (int i = 0; i < o->n_kernels; i++)
            selected |= strcmp(o->kernels[i], k->name) == 0;
        if (!selected)
            continue;
        int wl[MHB_LIST_MAX];
        int nw = o->n_workers;
        if (nw)
            memcpy(wl, o->workers, sizeof(int) * (size_t)nw);
        else
            nw = plan_default_workers(o, k->bound, run->machine.logical_cores, wl);
        size_t items = plan_items(o, o->quick ? k->quick_items : k->default_items);
        if (!o->items && k->bound == MHK_IO && items < PLAN_ITEMS_PER_WORKER * (size_t)wl[nw - 1])
            items = PLAN_ITEMS_PER_WORKER * (size_t)wl[nw - 1];
        if (plan_kernel(run, k, items, wl, nw, plans))
            return -1;
        if (k->chunk_sweep && !swept && !o->quick && !o->n_chunks && !o->n_workers) {
            swept = true;
            if (plan_sweep(run, k, items, plans))
                return -1;
        }
    }
    return 0;
}

static int plan_seed(struct mhb_run *run, struct mhb_plans *plans)
{
    const struct mhb_options *o = run->o;
    const struct mhk_kernel *k = NULL;
    for (const struct mhk_kernel *const *kp = mhk_kernels(); *kp && !k; kp++)
        if ((*kp)->seed_items)
            k = *kp;
    if (!k)
        return 0;
    int wl[MHB_LIST_MAX] = {1, 2, 3, 4};
    int nw = o->n_workers ? o->n_workers : 4;
    if (o->n_workers)
        memcpy(wl, o->workers, sizeof(int) * (size_t)nw);
    size_t items = plan_items(o, o->quick ? k->quick_items : k->seed_items);
    return plan_kernel(run, k, items, wl, nw, plans);
}

int mhb_plan(struct mhb_run *run, struct mhb_plans *plans)
{
    if (run->in == MHB_IN_STREAM)
        return mhb_stream_plan(run, plans);
    return run->in == MHB_IN_SEED ? plan_seed(run, plans) : plan_matrix(run, plans);
}
