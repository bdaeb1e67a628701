/*
 * seq: every chunk in order on the calling thread. Always built; the
 * oracle the other backends are compared with, byte for byte, and the
 * inline path for a map called from inside a callback.
 */
#include "backend.h"

static int seq_open(void **state, const struct mh_config *config)
{
    (void)config;
    *state = NULL;
    return MH_OK;
}

static int seq_map(void *state, struct mh__run *run)
{
    (void)state;
    for (size_t c = 0; c < run->nchunks; c++) {
        if (atomic_load_explicit(&run->stop, memory_order_relaxed))
            break;
        mh__run_chunk(run, c);
        mh__run_progress(run);
    }
    return MH_OK;
}

static int seq_stream(void *state, struct mh__stream *st)
{
    (void)state;
    mh__stream_work(st, 0, true);
    mh__stream_finish(st);
    return MH_OK;
}

static void seq_close(void *state, bool owner)
{
    (void)state;
    (void)owner;
}

const struct mh_backend_ops mh__backend_seq = {
    .name = "seq",
    .caps = 0,
    .open = seq_open,
    .map = seq_map,
    .close = seq_close,
    .stream = seq_stream,
};
