/*
 * Streams: mh_stream, the ring's plan, and the worker loop of the pull
 * backends. The pump is src/pump.c, the ring src/ring.c; the design is
 * docs/design.md, "Streams".
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"

/* The adaptive ring: chunk slots per worker, and about the bytes it may
 * take (inputs and outputs), so that large items get small chunks. */
#define STREAM_SLOTS_PER_WORKER 4
#define STREAM_RING_BYTES ((size_t)4 << 20)
#define STREAM_CHUNK_AUTO 1024
/* The longest the calling thread sleeps before it looks again. */
#define STREAM_WAIT_NS 100000000

/* Chunk size and slot count for the stream's window on workers; the
 * window is then chunk * slots <= window (adaptive: see mh_stream_task). */
static void stream_plan(const struct mh_stream_task *t, size_t config_chunk, int workers,
                        size_t *chunk, size_t *slots)
{
    size_t r = (size_t)workers * STREAM_SLOTS_PER_WORKER, c;
    if (t->window == 0) {
        c = config_chunk ? config_chunk
                         : STREAM_RING_BYTES / r / (t->in_size + t->out_size + 1);
        if (!config_chunk && c > STREAM_CHUNK_AUTO)
            c = STREAM_CHUNK_AUTO;
    } else {
        if (r > t->window)
            r = t->window;
        c = config_chunk ? config_chunk : t->window / r;
        if (c > t->window)
            c = t->window;
        if (!config_chunk && c > MH__CHUNK_MAX)
            c = MH__CHUNK_MAX;
    }
    *chunk = c ? c : 1;
    *slots = t->window ? t->window / *chunk : r;
}

void mh__stream_work(struct mh__stream *st, unsigned owner, bool is_caller)
{
    struct mh__ring *ring = st->ring;
    size_t c;
    while (!is_caller) {
        if (mh__ring_claim(ring, owner, &c)) {
            mh__ring_run(&st->run, ring, c);
            mh__ring_done(ring, c);
        } else if (!mh__ring_wait_work(ring)) {
            return;
        }
    }
    st->self_idle = true;
    for (;;) {
        uint32_t seen = atomic_load_explicit(&ring->done_seq, memory_order_acquire);
        int pump = mh__stream_pump(st);
        if (pump == MH__PUMP_END)
            return;
        if (pump == MH__PUMP_MORE && mh__ring_claim(ring, owner, &c)) {
            /* Busy, while another worker may take what the pump adds:
             * fill the ring for it. Alone, this thread is every worker
             * there is, so it is idle whenever it pumps. */
            st->self_idle = st->run.workers <= 1;
            mh__ring_run(&st->run, ring, c);
            mh__ring_done(ring, c);
            continue;
        }
        st->self_idle = true;
        if (pump == MH__PUMP_DRAIN && !mh__ring_busy(ring))
            return;
        if (pump == MH__PUMP_MORE && mh__stream_room(st))
            continue;
        mh__ring_wait_done(ring, seen, STREAM_WAIT_NS);
    }
}

/* The inner task a stream's run carries: what the item loop reads. */
static struct mh_task stream_inner(const struct mh_stream_task *t)
{
    return (struct mh_task){
        .in_size = t->in_size, .out_size = t->out_size, .fn = t->fn, .ctx = t->ctx,
        .codec = t->codec,
    };
}

static int stream_check(const struct mh_stream_task *t)
{
    if (!t || !t->source || !t->sink || (t->order != MH_ORDERED && t->order != MH_AS_COMPLETED))
        return MH_EINVAL;
    struct mh_task inner = stream_inner(t);
    return mh__task_check(&inner, false);
}

/* Unmap a stream's ring. One that cannot be unmapped the pool keeps, and
 * unmaps with the next one or at close. */
static void stream_ring_release(mh_pool *pool, struct mh__ring *ring)
{
    if (mh__ring_close(ring) == 0)
        return;
    /* acq_rel: the ring taken out is the one another thread kept. */
    struct mh__ring *kept = atomic_exchange_explicit(&pool->ring_kept, ring, memory_order_acq_rel);
    mh__ring_close(kept); /* a second failure leaves nothing to try */
}

int mh_stream(mh_pool *pool, const struct mh_stream_task *t, struct mh_report *report)
{
    double start = mh__now();
    int rc = pool ? stream_check(t) : MH_EINVAL;
    mh__report_init(report, pool, rc);
    if (!pool)
        return rc;
    const struct mh_backend_ops *ops;
    void *state;
    int workers;
    bool inline_run = mh__pool_runner(pool, &ops, &state, &workers);
    bool collective = ops->caps & MH__CAP_COLLECTIVE;
    if (!ops->stream) /* every rank lacks it alike: nobody waits */
        rc = rc ? rc : MH_ENOTSUP;
    if (rc && (!collective || !ops->stream))
        return rc;

    struct mh_task inner = t ? stream_inner(t) : (struct mh_task){0};
    pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
    struct mh__stream st = {
        .task = t, .on_error = pool->config.on_error,
        .grow = t && t->window == 0 && pool->config.chunk == 0,
    };
    size_t chunk = 1, slots = 1;
    if (!rc)
        stream_plan(t, pool->config.chunk, workers, &chunk, &slots);
    /* The workers' item loops run as under MH_CONTINUE: the pump applies
     * the pool's policy at delivery. */
    mh__run_init(&st.run, &inner, chunk, MH_CONTINUE, NULL, &fail_lock);
    st.run.workers = workers;
    st.run.timeout_s = pool->config.timeout_s;
    st.run.retries = pool->config.retries;
    st.run.callback_retries = pool->config.retry_callback_errors ? pool->config.retries : 0;
    if (!rc)
        rc = mh__ring_open(&st.ring, chunk, slots, t->in_size, t->out_size);
    if (rc && !collective)
        goto out;
    /* A collective backend's peers wait for this process: it still takes
     * part, and ends the stream everywhere with the error. */
    st.run.error = rc;

    if (!inline_run) {
        pthread_mutex_lock(&pool->map_lock);
        /* A cancel stops the ring (src/internal.h, "Cancel hooks"). */
        if (st.ring)
            st.run.cancel_stop = &st.ring->stop;
        mh__control_begin(pool, &st.run);
    }
    /* Source, sink and codec run on this thread: a map or stream they
     * call runs inline (as in mh__map_run). */
    mh__callback_depth++;
    rc = ops->stream(state, &st);
    mh__callback_depth--;
    if (!inline_run) {
        mh__control_end(pool, &st.run);
        pthread_mutex_unlock(&pool->map_lock);
    }
    /* Relaxed: mh__control_end ordered the cancel's stores before. A
     * collective backend's code is every process's already. */
    if (!rc && !collective && !st.run.error &&
        atomic_load_explicit(&st.run.cancelled, memory_order_relaxed))
        rc = MH_EINTR;
    if (!rc)
        rc = st.run.error ? st.run.error : st.code ? st.code : mh__run_failure_code(&st.run);
out:
    stream_ring_release(pool, st.ring);
    if (report)
        mh__report_fill(report, &st.run, ops, rc, start);
    return rc;
}
