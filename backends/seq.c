/*
 * seq: every chunk in order on the calling thread. Always built; the
 * oracle the other backends are compared with, byte for byte, and the
 * inline path for a map called from inside a callback.
 *
 * One worker, index 0, whatever the config's worker count: its init hook
 * runs at open, its fini at close. The inline path (state NULL) leaves
 * the worker binding of the callback it runs inside as it was.
 */
#include "backend.h"

struct seq_pool {
    const struct mh_config *config; /* the pool's: its hooks */
    void *worker_state;             /* what worker 0's init stored */
};

/* A pool without hooks: nothing to allocate. */
static const struct seq_pool seq_plain;

static int seq_open(void **state, const struct mh_config *config)
{
    *state = (void *)&seq_plain;
    if (!config->init && !config->fini)
        return MH_OK;
    struct seq_pool *sp = mh__calloc(1, sizeof *sp);
    if (!sp)
        return MH_ENOMEM;
    sp->config = config;
    int rc = mh__hook_init(config, 0, &sp->worker_state);
    if (rc) {
        mh__free(sp);
        return rc;
    }
    *state = sp;
    return MH_OK;
}

static int seq_map(void *state, struct mh__run *run)
{
    const struct seq_pool *sp = state;
    struct mh__worker previous = {0};
    if (sp)
        previous = mh__worker_enter(0, sp->worker_state);
    for (size_t c = 0; c < run->nchunks; c++) {
        if (atomic_load_explicit(&run->stop, memory_order_relaxed))
            break;
        mh__run_chunk(run, c);
        mh__run_progress(run);
    }
    if (sp)
        mh__worker_leave(previous);
    return MH_OK;
}

static int seq_stream(void *state, struct mh__stream *st)
{
    const struct seq_pool *sp = state;
    struct mh__worker previous = {0};
    if (sp)
        previous = mh__worker_enter(0, sp->worker_state);
    mh__stream_work(st, 0, true);
    if (sp)
        mh__worker_leave(previous);
    mh__stream_finish(st);
    return MH_OK;
}

static void seq_close(void *state, bool owner)
{
    struct seq_pool *sp = state;
    if (!sp || sp == &seq_plain)
        return;
    if (owner)
        mh__hook_fini(sp->config, 0, sp->worker_state);
    mh__free(sp);
}

const struct mh_backend_ops mh__backend_seq = {
    .name = "seq",
    .caps = 0,
    .open = seq_open,
    .map = seq_map,
    .close = seq_close,
    .stream = seq_stream,
};
