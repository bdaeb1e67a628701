/*
 * A stream's pump (backends/stream.h), on the calling thread only: it
 * delivers what is done and pulls from the source into the ring while
 * there is room. The rules are docs/design.md, "Streams".
 */
#include <string.h>

#include "internal.h"

/* A part-filled chunk goes out once a worker waits and filling it has
 * taken this long: a slow source's items do not wait for a full chunk. */
#define PUMP_FLUSH_NS 20000

/* End the ring for workers: nothing is published after now; with stop,
 * nothing more starts either. */
static void pump_close(struct mh__stream *st, bool stop)
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
static void pump_publish(struct mh__stream *st)
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
static bool pump_slot_begin(struct mh__stream *st)
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
static bool pump_flush_due(const struct mh__stream *st)
{
    if (!st->self_idle && atomic_load_explicit(&st->ring->hungry, memory_order_relaxed) == 0)
        return false;
    return mh__now_ns() - st->fill_ns >= PUMP_FLUSH_NS;
}

static bool pump_pulling(const struct mh__stream *st)
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
static int pump_fill(struct mh__stream *st)
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
        if (filling > 0 && (filling < 16 || filling % 16 == 0) && pump_flush_due(st))
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
static void pump_pull(struct mh__stream *st)
{
    while (pump_pulling(st)) {
        if (st->filling == 0 && !pump_slot_begin(st))
            return; /* full: back-pressure */
        int rc = pump_fill(st);
        if (rc == MH_SOURCE_ITEM) { /* full (for now), or due */
            pump_publish(st);
            if (st->self_idle)
                return;
            continue;
        }
        if (rc == MH_SOURCE_END) {
            st->ended = true;
            if (st->filling > 0)
                pump_publish(st);
            pump_close(st, false);
            return;
        }
        /* An error ends the input: what was pulled still runs and is
         * delivered, and the stream then returns MH_ESOURCE. */
        st->code = MH_ESOURCE;
        st->ended = true;
        if (st->filling > 0)
            pump_publish(st);
        pump_close(st, false);
        return;
    }
}

/* The sink's turn for item seq (status s, output out), which ran: false
 * once nothing more is to be delivered (a sink stop; a failure under
 * MH_STOP), the ring then stopped. */
static bool pump_sink_one(struct mh__stream *st, size_t seq, int s, void *out)
{
    if (st->task->sink(seq, s, out, st->task->ctx)) {
        if (!st->code)
            st->code = MH_ESINK;
    } else if (s == MH_ITEM_OK || st->on_error != MH_STOP) {
        return true;
    }
    pump_close(st, true);
    return false;
}

/* Hand chunk c's items to the sink as the rules allow (docs/design.md,
 * "Streams"), release what their outputs own, free the slot. A run of OK
 * items takes the short loop (the task's fields read once: every
 * callback may write memory); anything else, the careful one. */
static void pump_deliver_chunk(struct mh__stream *st, size_t c)
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
            pump_close(st, true);
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
            st->halted = !pump_sink_one(st, seq + k, s, out);
        }
        if (s == MH_ITEM_OK && codec)
            codec->clear(out, ctx);
    }
    atomic_fetch_add_explicit(&st->run.items_done, ok, memory_order_relaxed);
    atomic_store_explicit(&slot->state, mh__chunk_state(c, 0, MH__CHUNK_FREE),
                          memory_order_relaxed); /* only the pump reads FREE */
}

static bool pump_chunk_is(const struct mh__ring *ring, size_t c, unsigned phase)
{
    /* Acquire: a DONE chunk's outputs, statuses and fail are visible. */
    uint64_t state = atomic_load_explicit(&mh__ring_slot(ring, c)->state, memory_order_acquire);
    return mh__chunk_of(state) == c && mh__chunk_phase(state) == phase;
}

/* Deliver what is done: in order, or every done chunk; then move past the
 * delivered ones. */
static void pump_deliver(struct mh__stream *st)
{
    struct mh__ring *ring = st->ring;
    size_t published = atomic_load_explicit(&ring->published, memory_order_relaxed);
    for (size_t c = st->delivered; c < published; c++) {
        if (pump_chunk_is(ring, c, MH__CHUNK_DONE))
            pump_deliver_chunk(st, c);
        else if (st->task->order == MH_ORDERED)
            break;
    }
    while (st->delivered < published && pump_chunk_is(ring, st->delivered, MH__CHUNK_FREE))
        st->delivered++;
}

int mh__stream_pump(struct mh__stream *st)
{
    struct mh__ring *ring = st->ring;
    pump_deliver(st);
    pump_pull(st);
    if (st->halted || (st->code && st->code != MH_ESOURCE) ||
        atomic_load_explicit(&ring->stop, memory_order_relaxed)) {
        if (!atomic_load_explicit(&ring->closed, memory_order_relaxed) ||
            !atomic_load_explicit(&ring->stop, memory_order_relaxed))
            pump_close(st, true);
        return MH__PUMP_DRAIN;
    }
    if (st->ended && st->delivered == atomic_load_explicit(&ring->published, memory_order_relaxed))
        return MH__PUMP_END;
    return MH__PUMP_MORE;
}

void mh__stream_finish(struct mh__stream *st)
{
    struct mh__ring *ring = st->ring;
    pump_deliver(st);
    /* What is left never reaches the sink: done chunks after a gap or a
     * stop are released; queued ones never ran. */
    st->halted = true;
    size_t published = atomic_load_explicit(&ring->published, memory_order_relaxed);
    for (size_t c = st->delivered; c < published; c++)
        if (pump_chunk_is(ring, c, MH__CHUNK_DONE))
            pump_deliver_chunk(st, c);
    st->delivered = published;
}

bool mh__stream_room(const struct mh__stream *st)
{
    size_t published = atomic_load_explicit(&st->ring->published, memory_order_relaxed);
    return pump_pulling(st) && (st->filling > 0 || published < st->delivered + st->ring->slots);
}

