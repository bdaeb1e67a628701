/*
 * Streams: mh_stream, the pump that feeds and drains the ring on the
 * calling thread, and the worker loop of the pull backends. The ring
 * itself is src/ring.c; the design is docs/design.md, "Streams".
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"

/* A part-filled chunk goes out once a worker waits and filling it has
 * taken this long: a slow source's items do not wait for a full chunk. */
#define STREAM_FLUSH_NS 20000
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

/* End the ring for workers: nothing is published after now; with stop,
 * nothing more starts either. */
static void stream_close(struct mh__stream *st, bool stop)
{
    struct mh__ring *ring = st->ring;
    if (stop)
        atomic_store_explicit(&ring->stop, 1, memory_order_relaxed);
    /* Release: a worker that sees closed sees the final published. */
    atomic_store_explicit(&ring->closed, 1, memory_order_release);
    atomic_fetch_add(&ring->work_seq, 1);
    if (atomic_load(&ring->hungry) > 0)
        mh__futex_wake(&ring->work_seq, MH_WORKERS_MAX);
}

/* Publish the slot being filled as the next chunk. */
static void stream_publish(struct mh__stream *st)
{
    struct mh__ring *ring = st->ring;
    size_t c = atomic_load_explicit(&ring->published, memory_order_relaxed);
    struct mh__ring_chunk *slot = mh__ring_slot(ring, c);
    slot->count = st->filling;
    atomic_store_explicit(&slot->state, mh__chunk_state(c, 0, MH__CHUNK_QUEUED),
                          memory_order_relaxed);
    /* Release: the slot's inputs, seq, count and state before the count
     * of published chunks that claimers acquire. */
    atomic_store_explicit(&ring->published, c + 1, memory_order_release);
    st->filling = 0;
    /* seq_cst with a waiting worker's hungry count and work_seq check. */
    atomic_fetch_add(&ring->work_seq, 1);
    if (atomic_load(&ring->hungry) > 0)
        mh__futex_wake(&ring->work_seq, 1);
}

/* Begin filling the next slot: false when the ring is full (the chunk
 * that last used it is not yet delivered). */
static bool stream_slot_begin(struct mh__stream *st)
{
    struct mh__ring *ring = st->ring;
    size_t c = atomic_load_explicit(&ring->published, memory_order_relaxed);
    if (c >= st->delivered + ring->slots)
        return false;
    struct mh__ring_chunk *slot = mh__ring_slot(ring, c);
    slot->seq = st->pulled;
    slot->count = 0;
    slot->begin = 0;
    slot->fail = mh__failure_none();
    memset(ring->status + mh__ring_item(ring, c), MH_ITEM_NOT_RUN, ring->chunk);
    st->fill_ns = mh__now_ns();
    return true;
}

/* Whether to publish the part-filled slot now: some worker is idle and
 * filling it has taken a while. */
static bool stream_flush_due(const struct mh__stream *st)
{
    if (!st->self_idle && atomic_load_explicit(&st->ring->hungry, memory_order_relaxed) == 0)
        return false;
    return mh__now_ns() - st->fill_ns >= STREAM_FLUSH_NS;
}

static bool stream_pulling(const struct mh__stream *st)
{
    const struct mh__ring *ring = st->ring;
    if (st->ended || st->code || atomic_load_explicit(&ring->stop, memory_order_relaxed))
        return false;
    /* Relaxed: a late read only pulls a little more. */
    return st->on_error != MH_STOP || !atomic_load_explicit(&ring->failed, memory_order_relaxed);
}

/* Fill the slot being filled from the source until it is full (growing:
 * as many items as were pulled before it, per slot) or a flush is due
 * (looked at for each of the first 16 items, then every 16th: the clock
 * is not free). The source's last answer. */
static int stream_fill(struct mh__stream *st)
{
    const struct mh_stream_task *t = st->task;
    struct mh__ring *ring = st->ring;
    size_t c = atomic_load_explicit(&ring->published, memory_order_relaxed);
    size_t filling = st->filling, seq = st->pulled, full = ring->chunk;
    if (st->grow && (seq - filling) / ring->slots < full)
        full = (seq - filling) / ring->slots; /* pulled before this slot */
    if (full <= filling)
        full = filling + 1;
    unsigned char *item = ring->in + (mh__ring_item(ring, c) + filling) * t->in_size;
    int rc = MH_SOURCE_ITEM;
    while (filling < full) {
        if (filling > 0 && (filling < 16 || filling % 16 == 0) && stream_flush_due(st))
            break;
        rc = t->source(item, seq, t->ctx);
        if (rc != MH_SOURCE_ITEM)
            break;
        filling++;
        seq++;
        item += t->in_size;
    }
    st->filling = filling;
    st->pulled = seq;
    return rc;
}

/* Pull from the source while there is room. A calling thread that is a
 * worker with nothing to run returns after each chunk it publishes, to
 * run it. */
static void stream_pull(struct mh__stream *st)
{
    while (stream_pulling(st)) {
        if (st->filling == 0 && !stream_slot_begin(st))
            return; /* full: back-pressure */
        int rc = stream_fill(st);
        if (rc == MH_SOURCE_ITEM) { /* full (for now), or due */
            stream_publish(st);
            if (st->self_idle)
                return;
            continue;
        }
        if (rc == MH_SOURCE_END) {
            st->ended = true;
            if (st->filling > 0)
                stream_publish(st);
            stream_close(st, false);
            return;
        }
        /* An error ends the input: what was pulled still runs and is
         * delivered, and the stream then returns MH_ESOURCE. */
        st->code = MH_ESOURCE;
        st->ended = true;
        if (st->filling > 0)
            stream_publish(st);
        stream_close(st, false);
        return;
    }
}

/* The sink's turn for item seq (status s, output out), which ran: false
 * once nothing more is to be delivered (a sink stop; a failure under
 * MH_STOP), the ring then stopped. */
static bool stream_sink_one(struct mh__stream *st, size_t seq, int s, void *out)
{
    if (st->task->sink(seq, s, out, st->task->ctx)) {
        if (!st->code)
            st->code = MH_ESINK;
    } else if (s == MH_ITEM_OK || st->on_error != MH_STOP) {
        return true;
    }
    stream_close(st, true);
    return false;
}

/* Hand chunk c's items to the sink as the rules allow (docs/design.md,
 * "Streams"), release what their outputs own, free the slot. A run of OK
 * items takes the short loop (the task's fields read once: every
 * callback may write memory); anything else, the careful one. */
static void stream_deliver_chunk(struct mh__stream *st, size_t c)
{
    const struct mh_stream_task *t = st->task;
    mh_sink_fn sink = t->sink;
    void *ctx = t->ctx;
    const struct mh_codec *codec = t->codec;
    const size_t out_size = t->out_size;
    struct mh__ring *ring = st->ring;
    struct mh__ring_chunk *slot = mh__ring_slot(ring, c);
    const uint8_t *status = ring->status + mh__ring_item(ring, c);
    unsigned char *out = ring->out + mh__ring_item(ring, c) * out_size;
    const size_t seq = slot->seq, count = slot->count;
    size_t k = 0, ok = 0;
    mh__run_fail(&st->run, &slot->fail);
    for (; !st->halted && k < count && status[k] == MH_ITEM_OK; k++, out += out_size) {
        ok++;
        if (sink(seq + k, MH_ITEM_OK, out, ctx)) {
            st->code = st->code ? st->code : MH_ESINK;
            st->halted = true;
            stream_close(st, true);
        }
        if (codec)
            codec->clear(out, ctx);
    }
    for (; k < count; k++, out += out_size) {
        int s = status[k];
        if (s == MH_ITEM_NOT_RUN) {
            st->halted |= t->order == MH_ORDERED; /* what follows is out of order */
            continue;
        }
        if (!st->halted) {
            ok += s == MH_ITEM_OK;
            st->halted = !stream_sink_one(st, seq + k, s, out);
        }
        if (s == MH_ITEM_OK && codec)
            codec->clear(out, ctx);
    }
    atomic_fetch_add_explicit(&st->run.items_done, ok, memory_order_relaxed);
    atomic_store_explicit(&slot->state, mh__chunk_state(c, 0, MH__CHUNK_FREE),
                          memory_order_relaxed); /* only the pump reads FREE */
}

static bool stream_chunk_is(const struct mh__ring *ring, size_t c, unsigned phase)
{
    /* Acquire: a DONE chunk's outputs, statuses and fail are visible. */
    uint64_t state = atomic_load_explicit(&mh__ring_slot(ring, c)->state, memory_order_acquire);
    return mh__chunk_of(state) == c && mh__chunk_phase(state) == phase;
}

/* Deliver what is done: in order, or every done chunk; then move past the
 * delivered ones. */
static void stream_deliver(struct mh__stream *st)
{
    struct mh__ring *ring = st->ring;
    size_t published = atomic_load_explicit(&ring->published, memory_order_relaxed);
    for (size_t c = st->delivered; c < published; c++) {
        if (stream_chunk_is(ring, c, MH__CHUNK_DONE))
            stream_deliver_chunk(st, c);
        else if (st->task->order == MH_ORDERED)
            break;
    }
    while (st->delivered < published && stream_chunk_is(ring, st->delivered, MH__CHUNK_FREE))
        st->delivered++;
}

int mh__stream_pump(struct mh__stream *st)
{
    struct mh__ring *ring = st->ring;
    stream_deliver(st);
    stream_pull(st);
    if (st->halted || (st->code && st->code != MH_ESOURCE) ||
        atomic_load_explicit(&ring->stop, memory_order_relaxed)) {
        if (!atomic_load_explicit(&ring->closed, memory_order_relaxed) ||
            !atomic_load_explicit(&ring->stop, memory_order_relaxed))
            stream_close(st, true);
        return MH__PUMP_DRAIN;
    }
    if (st->ended && st->delivered == atomic_load_explicit(&ring->published, memory_order_relaxed))
        return MH__PUMP_END;
    return MH__PUMP_MORE;
}

void mh__stream_finish(struct mh__stream *st)
{
    struct mh__ring *ring = st->ring;
    stream_deliver(st);
    /* What is left never reaches the sink: done chunks after a gap or a
     * stop are released; queued ones never ran. */
    st->halted = true;
    size_t published = atomic_load_explicit(&ring->published, memory_order_relaxed);
    for (size_t c = st->delivered; c < published; c++)
        if (stream_chunk_is(ring, c, MH__CHUNK_DONE))
            stream_deliver_chunk(st, c);
    st->delivered = published;
}

bool mh__stream_room(const struct mh__stream *st)
{
    size_t published = atomic_load_explicit(&st->ring->published, memory_order_relaxed);
    return stream_pulling(st) && (st->filling > 0 || published < st->delivered + st->ring->slots);
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
