/*
 * Rank 0: hand chunks out dynamically, MPI_DEPTH in flight per other
 * rank, run chunks itself between polls (MPI_Test) of the results that
 * come back, and wait (MPI_Test in a loop that also takes a worker's
 * cancel) when it has none left of its own. Then
 * check every rank's shape and end the map on each with its outcome: the
 * same code, counters and failure everywhere.
 */
#include <string.h>

#include "mpi_int.h"

struct mpi_slot {
    struct mpi_ctrl ctrl;
    MPI_Request req[4]; /* control, input blocks, input rest, statuses */
};

struct mpi_root {
    const struct mpi_pool *mp;
    struct mh__run *run;
    struct mpi_slot *slots; /* MPI_DEPTH per worker rank, by rank */
    size_t nslots;
    size_t next;            /* next chunk to hand out or run */
    size_t outstanding;     /* chunks out at workers */
    int code;               /* the map's own error (not an item's) */
    struct mpi_buf payload;
    struct mpi_listen listen; /* for a worker's cancel */
};

static void mpi_root_error(struct mpi_root *r, int code)
{
    if (!r->code)
        r->code = code;
    atomic_store_explicit(&r->run->stop, 1, memory_order_relaxed);
}

static bool mpi_root_stopping(const struct mpi_root *r)
{
    return atomic_load_explicit(&r->run->stop, memory_order_relaxed) != 0;
}

int mh__mpi_listen(const struct mpi_pool *mp, struct mpi_listen *l)
{
    return mh__mpi_code(MPI_Irecv(&l->msg, sizeof l->msg, MPI_BYTE, MPI_ANY_SOURCE,
                                  MPI_TAG_CANCEL, mp->comm, &l->req));
}

int mh__mpi_listen_poll(const struct mpi_pool *mp, struct mpi_listen *l, struct mh__run *run)
{
    int arrived = 0;
    while (l->req != MPI_REQUEST_NULL) {
        int rc = mh__mpi_code(MPI_Test(&l->req, &arrived, MPI_STATUS_IGNORE));
        if (rc || !arrived)
            return rc;
        if (l->msg.map == mp->maps) {
            mh__run_cancel(run);
            return MH_OK; /* one is enough: the request stays NULL */
        }
        /* Sent as an earlier map ended: dropped; listen again. */
        if ((rc = mh__mpi_listen(mp, l)))
            return rc;
    }
    return MH_OK;
}

int mh__mpi_listen_wait(const struct mpi_pool *mp, struct mpi_listen *l, struct mh__run *run,
                        MPI_Request *pending, MPI_Status *st)
{
    for (;;) {
        int arrived = 0;
        int rc = mh__mpi_code(MPI_Test(pending, &arrived, st));
        if (rc || arrived)
            return rc;
        if ((rc = mh__mpi_listen_poll(mp, l, run)))
            return rc;
    }
}

void mh__mpi_listen_end(const struct mpi_pool *mp, struct mpi_listen *l, struct mh__run *run)
{
    if (l->req == MPI_REQUEST_NULL)
        return;
    MPI_Status st;
    int cancelled = 1;
    MPI_Cancel(&l->req);
    if (MPI_Wait(&l->req, &st) == MPI_SUCCESS &&
        MPI_Test_cancelled(&st, &cancelled) == MPI_SUCCESS && !cancelled &&
        l->msg.map == mp->maps)
        mh__run_cancel(run);
}

/* Hand chunk `next` to worker rank `dest`, in a free slot of its. */
static int mpi_root_assign(struct mpi_root *r, int dest)
{
    struct mpi_slot *slot = NULL;
    for (int d = 0; d < MPI_DEPTH && !slot; d++)
        if (r->slots[dest * MPI_DEPTH + d].ctrl.kind == 0)
            slot = &r->slots[dest * MPI_DEPTH + d];
    if (!slot) /* every slot busy: cannot happen, a result freed one */
        return MH_EMPI;
    const struct mh_task *task = r->run->task;
    memset(&slot->ctrl, 0, sizeof slot->ctrl);
    slot->ctrl.kind = MPI_CTRL_WORK;
    slot->ctrl.chunk = r->next++;
    slot->ctrl.shape = mh__mpi_shape_of(r->run);
    size_t begin, end;
    mh__chunk_bounds(r->run, slot->ctrl.chunk, &begin, &end);
    const unsigned char *in = (const unsigned char *)task->in + begin * task->in_size;
    int rc = mh__mpi_code(MPI_Isend(&slot->ctrl, sizeof slot->ctrl, MPI_BYTE, dest,
                                    MPI_TAG_CTRL, r->mp->comm, &slot->req[0]));
    if (rc)
        return rc;
    r->outstanding++;
    rc = mh__mpi_isend_bytes(r->mp, in, (end - begin) * task->in_size, dest, MPI_TAG_INPUT,
                             &slot->req[1]);
    /* Resume: the worker skips what is kept (run->status says OK). */
    if (!rc && task->resume)
        rc = mh__mpi_code(MPI_Isend(r->run->status + begin, (int)(end - begin), MPI_BYTE,
                                    dest, MPI_TAG_STATUS, r->mp->comm, &slot->req[3]));
    return rc;
}

/* Free the slot of `src` that held chunk c. Its sends were received (a
 * result came back for it), so waiting on them only completes them. */
static int mpi_root_release(struct mpi_root *r, int src, uint64_t c)
{
    for (int d = 0; d < MPI_DEPTH; d++) {
        struct mpi_slot *s = &r->slots[src * MPI_DEPTH + d];
        if (s->ctrl.kind == MPI_CTRL_WORK && s->ctrl.chunk == c) {
            s->ctrl.kind = 0;
            return mh__mpi_code(MPI_Waitall(4, s->req, MPI_STATUSES_IGNORE));
        }
    }
    return MH_EMPI; /* a result for a chunk this rank was not given */
}

/* Take one result (its record has arrived in *res from src). */
static int mpi_root_take(struct mpi_root *r, const struct mpi_result *res, int src)
{
    r->outstanding--;
    int rc = mpi_root_release(r, src, res->chunk);
    if (rc)
        return rc;
    bool fits = mh__mpi_buf_room(&r->payload, 0, res->payload) == MH_OK;
    rc = mh__mpi_recv_bytes(r->mp, fits ? r->payload.p : NULL, res->payload, src,
                            MPI_TAG_OUTPUT);
    if (rc)
        return rc; /* MPI failed: the protocol cannot go on */
    if (!fits)
        mpi_root_error(r, MH_ENOMEM);
    else if (res->code)
        mpi_root_error(r, (int)res->code);
    else if ((rc = mh__mpi_payload_merge(r->run, res, r->payload.p, res->payload)))
        mpi_root_error(r, rc);
    mh__run_progress(r->run);
    if (!mpi_root_stopping(r) && r->next < r->run->nchunks)
        return mpi_root_assign(r, src);
    return MH_OK;
}

int mh__mpi_root_shapes(const struct mpi_pool *mp, const struct mpi_shape *mine, int *code)
{
    struct mpi_shape theirs;
    for (int src = 1; src < mp->size; src++) {
        int rc = mh__mpi_recv(mp, &theirs, sizeof theirs, src, MPI_TAG_SHAPE);
        if (rc)
            return rc;
        if (!*code && theirs.error)
            *code = (int)theirs.error;
        else if (!*code && !mh__mpi_shape_same(mine, &theirs))
            *code = MH_EINVAL;
    }
    return MH_OK;
}

int mh__mpi_root_stop(const struct mpi_pool *mp, const struct mh__run *run,
                      const struct mpi_shape *mine, int *code, int stream_code,
                      const void *failed_out)
{
    /* Cancelled here or on any rank: every rank returns MH_EINTR. */
    if (!*code && atomic_load_explicit(&run->cancelled, memory_order_relaxed))
        *code = MH_EINTR;
    struct mpi_ctrl stop = {
        .kind = MPI_CTRL_STOP,
        .code = *code,
        .items_done = atomic_load_explicit(&run->items_done, memory_order_relaxed),
        .items_failed = atomic_load_explicit(&run->items_failed, memory_order_relaxed),
        .fail = run->failure,
        .codec_failed = (uint64_t)atomic_load_explicit(&run->codec_failed, memory_order_relaxed),
        .stream_code = stream_code,
        .shape = *mine,
        .out_bytes = failed_out ? run->task->out_size : 0,
    };
    int rc = MH_OK;
    for (int dest = 1; dest < mp->size && !rc; dest++) {
        rc = mh__mpi_send(mp, &stop, sizeof stop, dest, MPI_TAG_CTRL);
        if (!rc && stop.out_bytes)
            rc = mh__mpi_send_bytes(mp, failed_out, stop.out_bytes, dest, MPI_TAG_OUTPUT);
    }
    return rc;
}

/* Tell every worker the map is over, with its outcome. */
static int mpi_root_finish(struct mpi_root *r)
{
    struct mh__run *run = r->run;
    const struct mh_task *task = run->task;
    struct mpi_shape mine = mh__mpi_shape_of(run);
    int rc = mh__mpi_root_shapes(r->mp, &mine, &r->code);
    mh__mpi_listen_end(r->mp, &r->listen, r->run);
    if (rc)
        return rc;
    /* Without a codec the failing item's bytes go along, so that every
     * rank's mh_reduce reports the same failing item. */
    const unsigned char *failed_out =
        run->failure.index != MH_NO_ITEM && !task->codec
            ? (const unsigned char *)task->out + run->failure.index * task->out_size
            : NULL;
    return mh__mpi_root_stop(r->mp, run, &mine, &r->code, MH_OK, failed_out);
}

/* Hand out and run every chunk, taking results as they come. */
static int mpi_root_loop(struct mpi_root *r)
{
    struct mh__run *run = r->run;
    int rc = MH_OK;
    /* Fill every worker's slots first, one chunk per rank per round, so
     * that a small map spreads over all ranks. */
    for (int d = 0; d < MPI_DEPTH && !rc && !mpi_root_stopping(r); d++)
        for (int dest = 1; dest < r->mp->size && r->next < run->nchunks && !rc; dest++)
            rc = mpi_root_assign(r, dest);

    struct mpi_result res;
    MPI_Request pending = MPI_REQUEST_NULL;
    while (!rc) {
        if ((rc = mh__mpi_listen_poll(r->mp, &r->listen, r->run)))
            break;
        if (r->outstanding > 0 && pending == MPI_REQUEST_NULL &&
            (rc = mh__mpi_code(MPI_Irecv(&res, sizeof res, MPI_BYTE, MPI_ANY_SOURCE,
                                         MPI_TAG_RESULT, r->mp->comm, &pending))))
            break;
        bool local = !mpi_root_stopping(r) && r->next < run->nchunks;
        if (!local && r->outstanding == 0)
            break;
        MPI_Status st;
        int arrived = 0;
        if (r->outstanding > 0) {
            /* Poll while there is work of our own; wait when there is not. */
            rc = local ? mh__mpi_code(MPI_Test(&pending, &arrived, &st))
                       : mh__mpi_listen_wait(r->mp, &r->listen, r->run, &pending, &st);
            if (rc)
                break;
            arrived |= !local;
        }
        if (arrived) {
            pending = MPI_REQUEST_NULL;
            rc = mpi_root_take(r, &res, st.MPI_SOURCE);
            continue;
        }
        /* Rank 0 works too: one chunk between polls. */
        mh__run_chunk(run, r->next++);
        mh__run_progress(run);
    }
    /* MPI itself failed: the protocol is broken, and the peers may never
     * hear from us. Open MPI then ends the job. */
    if (rc && pending != MPI_REQUEST_NULL) {
        MPI_Cancel(&pending);
        MPI_Request_free(&pending);
    }
    return rc;
}

int mh__mpi_root_map(const struct mpi_pool *mp, struct mh__run *run)
{
    struct mpi_root r = {.mp = mp, .run = run, .nslots = (size_t)mp->size * MPI_DEPTH,
                         .listen.req = MPI_REQUEST_NULL};
    r.slots = run->error ? NULL : mh__calloc(r.nslots, sizeof *r.slots);
    if (!r.slots) {
        /* Still end the map on every worker, with the error. */
        mpi_root_error(&r, run->error ? run->error : MH_ENOMEM);
        return mpi_root_finish(&r) ? MH_EMPI : r.code;
    }
    for (size_t s = 0; s < r.nslots; s++)
        for (int q = 0; q < 4; q++)
            r.slots[s].req[q] = MPI_REQUEST_NULL;

    int rc = mh__mpi_listen(mp, &r.listen);
    if (!rc)
        rc = mpi_root_loop(&r);
    for (size_t s = 0; s < r.nslots && !rc; s++)
        rc = mh__mpi_code(MPI_Waitall(4, r.slots[s].req, MPI_STATUSES_IGNORE));
    if (rc)
        mh__mpi_listen_end(mp, &r.listen, run);
    else
        rc = mpi_root_finish(&r);
    if (!rc)
        rc = r.code;
    mh__free(r.slots);
    mh__free(r.payload.p);
    return rc;
}
