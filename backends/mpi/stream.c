/*
 * A stream on mpi (backends/stream.h; docs/backends.md "mpi"). Every
 * rank calls it. Rank 0 alone has a ring that matters: it runs the
 * core's pump (the source and the sink), claims published chunks on
 * behalf of the other ranks (owner: the rank), ships each one's inputs
 * and writes what comes back into the chunk's slot before marking it
 * done; between results it runs chunks itself. The other ranks serve
 * chunks exactly as they do a map's (worker.c), so a stream's messages
 * are a map's, and a rank in a map meets a stream as a shape mismatch:
 * MH_EINVAL on every rank, never a hang.
 */
#include <pthread.h>
#include <string.h>

#include "mpi_int.h"

/* A chunk out at another rank: its control record lives until sent. */
struct mpi_out {
    struct mpi_ctrl ctrl; /* kind 0: free */
    MPI_Request req[3];   /* control, input blocks, input rest */
};

struct mpi_sroot {
    const struct mpi_pool *mp;
    struct mh__stream *st;
    struct mpi_shape shape;  /* the stream's; n is set per chunk */
    struct mpi_out *outs;    /* MPI_DEPTH per rank, by rank */
    size_t outstanding;      /* chunks out at other ranks */
    int code;                /* the stream's own error (not an item's) */
    struct mpi_buf payload;
    struct mpi_listen listen; /* for another rank's cancel */
};

/* This rank's shape of st: what every rank must agree on to serve it. */
static struct mpi_shape mpi_stream_shape(const struct mh__stream *st)
{
    const struct mh_task *task = st->run.task;
    return (struct mpi_shape){
        .kind = MPI_SHAPE_STREAM, .in_size = task->in_size, .out_size = task->out_size,
        .chunk_items = st->ring ? st->ring->chunk : 0, .has_codec = task->codec != NULL,
        .on_error = (uint64_t)st->on_error, .error = st->run.error,
    };
}

/* The stream's own error: stop it (the pump then drains). */
static void mpi_stream_error(struct mpi_sroot *r, int code)
{
    if (!r->code)
        r->code = code;
    /* Relaxed: "stop soon" guards no data (stream.h). */
    atomic_store_explicit(&r->st->ring->stop, 1, memory_order_relaxed);
}

/* Ship chunk c (claimed for dest) to rank dest in out. */
static int mpi_stream_ship(struct mpi_sroot *r, int dest, struct mpi_out *out, size_t c)
{
    struct mh__ring *ring = r->st->ring;
    const struct mh__ring_chunk *slot = mh__ring_slot(ring, c);
    size_t k = slot->count - slot->begin, end;
    /* n = c * chunk + k: any rank's plan gives chunk c these k items. */
    if (__builtin_mul_overflow(c, ring->chunk, &end) || __builtin_add_overflow(end, k, &end)) {
        mpi_stream_error(r, MH_EOVERFLOW);
        mh__ring_done(ring, c); /* never runs: its items stay NOT_RUN */
        return MH_OK;
    }
    out->ctrl = (struct mpi_ctrl){.kind = MPI_CTRL_WORK, .chunk = c, .shape = r->shape};
    out->ctrl.shape.n = end;
    const unsigned char *in = ring->in + (mh__ring_item(ring, c) + slot->begin) * ring->in_size;
    int rc = mh__mpi_code(MPI_Isend(&out->ctrl, sizeof out->ctrl, MPI_BYTE, dest, MPI_TAG_CTRL,
                                    r->mp->comm, &out->req[0]));
    if (rc)
        return rc;
    r->outstanding++;
    return mh__mpi_isend_bytes(r->mp, in, k * ring->in_size, dest, MPI_TAG_INPUT, &out->req[1]);
}

/* Ship queued chunks to every rank with room, one per rank per round. */
static int mpi_stream_fill(struct mpi_sroot *r)
{
    struct mh__ring *ring = r->st->ring;
    size_t c;
    for (int d = 0; d < MPI_DEPTH; d++)
        for (int dest = 1; dest < r->mp->size; dest++) {
            struct mpi_out *out = &r->outs[dest * MPI_DEPTH + d];
            if (out->ctrl.kind != 0)
                continue;
            unsigned owner = dest < MH__CHUNK_OWNER_MAX ? (unsigned)dest : MH__CHUNK_OWNER_MAX;
            if (!mh__ring_claim(ring, owner, &c))
                return MH_OK;
            int rc = mpi_stream_ship(r, dest, out, c);
            if (rc)
                return rc;
        }
    return MH_OK;
}

/* Write one rank's result for chunk c (payload p[0..len)) into its slot,
 * through a run that sees the slot as a task of its k items. */
static int mpi_stream_merge(struct mpi_sroot *r, const struct mpi_result *res,
                            const unsigned char *p, size_t len)
{
    struct mh__stream *st = r->st;
    struct mh__ring *ring = st->ring;
    size_t c = res->chunk;
    struct mh__ring_chunk *slot = mh__ring_slot(ring, c);
    size_t k = slot->count - slot->begin, at = mh__ring_item(ring, c) + slot->begin;
    size_t base = c * ring->chunk; /* where the rank's plan put the chunk */
    struct mpi_result local = *res;
    local.chunk = 0;
    if (local.fail.index != MH_NO_ITEM) {
        if (local.fail.index - base >= k)
            return MH_EMPI;
        local.fail.index -= base;
    }
    struct mh_task view_task = *st->run.task;
    view_task.n = k;
    view_task.out = ring->out + at * ring->out_size;
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    struct mh__run view;
    mh__run_init(&view, &view_task, k, MH_CONTINUE, ring->status + at, &lock);
    int rc = mh__mpi_payload_merge(&view, &local, p, len);
    if (view.failure.index != MH_NO_ITEM) {
        slot->fail = view.failure;
        slot->fail.index += slot->seq + slot->begin;
        /* Relaxed, here and for view's codec_failed: view is this
         * thread's alone. */
        slot->fail.count = atomic_load_explicit(&view.items_failed, memory_order_relaxed);
        /* Relaxed: the pump only stops pulling sooner (as mh__ring_run). */
        atomic_store_explicit(&ring->failed, 1, memory_order_relaxed);
    }
    /* Relaxed: read after the stream, on this thread (as in a map). */
    if (atomic_load_explicit(&view.codec_failed, memory_order_relaxed))
        atomic_store_explicit(&st->run.codec_failed, 1, memory_order_relaxed);
    return rc;
}

/* Take one result (its record in *res, from src): free its out, take
 * the payload into the slot, mark the chunk done. */
static int mpi_stream_take(struct mpi_sroot *r, const struct mpi_result *res, int src)
{
    struct mpi_out *out = NULL;
    for (int d = 0; d < MPI_DEPTH && !out; d++) {
        struct mpi_out *o = &r->outs[src * MPI_DEPTH + d];
        if (o->ctrl.kind == MPI_CTRL_WORK && o->ctrl.chunk == res->chunk)
            out = o;
    }
    if (!out)
        return MH_EMPI; /* a result for a chunk this rank was not given */
    r->outstanding--;
    out->ctrl.kind = 0;
    /* A result came back, so the sends were received: this completes them. */
    int rc = mh__mpi_code(MPI_Waitall(3, out->req, MPI_STATUSES_IGNORE));
    bool fits = mh__mpi_buf_room(&r->payload, 0, res->payload) == MH_OK;
    if (!rc)
        rc = mh__mpi_recv_bytes(r->mp, fits ? r->payload.p : NULL, res->payload, src,
                                MPI_TAG_OUTPUT);
    if (rc)
        return rc; /* MPI failed: the protocol cannot go on */
    if (!fits)
        mpi_stream_error(r, MH_ENOMEM);
    else if (res->code)
        mpi_stream_error(r, (int)res->code);
    else if ((rc = mpi_stream_merge(r, res, r->payload.p, res->payload)))
        mpi_stream_error(r, rc);
    mh__ring_done(r->st->ring, res->chunk); /* items not merged stay NOT_RUN */
    return MH_OK;
}

/* Pump, ship, take results and run chunks until the pump says the end,
 * or drains with nothing left out at other ranks. */
static int mpi_stream_loop(struct mpi_sroot *r)
{
    struct mh__stream *st = r->st;
    struct mh__ring *ring = st->ring;
    size_t room = (size_t)(r->mp->size - 1) * MPI_DEPTH, c;
    struct mpi_result res;
    MPI_Request pending = MPI_REQUEST_NULL;
    bool idle = true; /* rank 0 has nothing of its own to run */
    int rc = MH_OK;
    while (!rc && !(rc = mh__mpi_listen_poll(r->mp, &r->listen, &st->run))) {
        /* Relaxed: published is written by the pump, on this thread. */
        size_t before = atomic_load_explicit(&ring->published, memory_order_relaxed);
        /* A rank with room, or rank 0 that found nothing to run, is
         * idle: part-filled chunks go out, and the pump returns after
         * each one, to have it shipped or run. */
        st->self_idle = idle || r->outstanding < room;
        int pump = mh__stream_pump(st);
        if (pump != MH__PUMP_DRAIN && (rc = mpi_stream_fill(r)))
            break;
        if (pump == MH__PUMP_END || (pump == MH__PUMP_DRAIN && r->outstanding == 0))
            break;
        if (r->outstanding > 0 && pending == MPI_REQUEST_NULL &&
            (rc = mh__mpi_code(MPI_Irecv(&res, sizeof res, MPI_BYTE, MPI_ANY_SOURCE,
                                         MPI_TAG_RESULT, r->mp->comm, &pending))))
            break;
        MPI_Status status;
        int arrived = 0;
        if (r->outstanding > 0 && (rc = mh__mpi_code(MPI_Test(&pending, &arrived, &status))))
            break;
        if (!arrived && pump == MH__PUMP_MORE && mh__ring_claim(ring, 0, &c)) {
            idle = false; /* the next pump fills what room there is */
            mh__ring_run(&st->run, ring, c); /* rank 0 works too */
            mh__ring_done(ring, c);
            continue;
        }
        idle = !arrived;
        /* The pump published something: pump again. Else, with nothing
         * to run, wait for a result (the pump returns with no part-filled
         * chunk held back, so nothing is kept from an idle rank). */
        bool moved = atomic_load_explicit(&ring->published, memory_order_relaxed) != before;
        if (!arrived && (moved || r->outstanding == 0))
            continue;
        if (!arrived && (rc = mh__mpi_listen_wait(r->mp, &r->listen, &st->run, &pending,
                                                  &status)))
            break;
        pending = MPI_REQUEST_NULL;
        rc = mpi_stream_take(r, &res, status.MPI_SOURCE);
    }
    /* MPI itself failed: the protocol is broken, and the peers may never
     * hear from us. Open MPI then ends the job. */
    if (rc && pending != MPI_REQUEST_NULL) {
        MPI_Cancel(&pending);
        MPI_Request_free(&pending);
    }
    return rc;
}

/* Rank 0: run the stream, then end it on every rank with its outcome. */
static int mpi_stream_root(const struct mpi_pool *mp, struct mh__stream *st)
{
    struct mpi_sroot r = {.mp = mp, .st = st, .shape = mpi_stream_shape(st),
                          .listen.req = MPI_REQUEST_NULL};
    size_t nouts = (size_t)mp->size * MPI_DEPTH;
    int rc = MH_OK;
    r.code = st->run.error;
    if (!r.code && !(r.outs = mh__calloc(nouts, sizeof *r.outs)))
        r.code = MH_ENOMEM;
    if (r.outs) {
        for (size_t o = 0; o < nouts; o++)
            for (int q = 0; q < 3; q++)
                r.outs[o].req[q] = MPI_REQUEST_NULL;
        rc = mh__mpi_listen(mp, &r.listen);
        if (!rc)
            rc = mpi_stream_loop(&r);
        for (size_t o = 0; o < nouts && !rc; o++)
            rc = mh__mpi_code(MPI_Waitall(3, r.outs[o].req, MPI_STATUSES_IGNORE));
    }
    if (st->ring)
        mh__stream_finish(st); /* nothing runs at another rank now */
    if (!rc)
        rc = mh__mpi_root_shapes(mp, &r.shape, &r.code);
    mh__mpi_listen_end(mp, &r.listen, &st->run);
    if (!rc)
        rc = mh__mpi_root_stop(mp, &st->run, &r.shape, &r.code, st->code, NULL);
    mh__free(r.outs);
    mh__free(r.payload.p);
    return rc ? rc : r.code;
}

int mh__mpi_stream(const struct mpi_pool *mp, struct mh__stream *st)
{
    if (mp->rank == 0)
        return mpi_stream_root(mp, st);
    /* Another rank: its ring stays empty (its source and sink are never
     * called); it serves chunks and takes rank 0's outcome as its own. */
    struct mpi_shape mine = mpi_stream_shape(st);
    struct mpi_ctrl end = {0};
    int rc = mh__mpi_worker_serve(mp, &st->run, &mine, mine.chunk_items, &end);
    if (end.kind == MPI_CTRL_STOP)
        st->code = (int)end.stream_code;
    return rc;
}
