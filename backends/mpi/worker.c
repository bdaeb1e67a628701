/*
 * Every rank but 0: send rank 0 this rank's task shape, then run the
 * chunks it hands out (their inputs arrive with them) and send each
 * chunk's result back, until a stop record brings the map's outcome,
 * which becomes this rank's own. A stream's chunks are served the same
 * way (stream.c). On these ranks task->out and
 * task->status are not written, except out[failed_index] without a codec
 * (docs/backends.md "mpi").
 */

#include "mpi_int.h"

struct mpi_worker {
    unsigned char *in, *out;
    uint8_t *status;
    uint8_t *kept;      /* resume: the chunk's statuses as rank 0 sent them */
    bool told;          /* this rank's cancel was sent to rank 0 */
    struct mpi_buf payload;
    int error; /* what to answer with when in is NULL */
};

/* Run one assigned chunk and send its result to rank 0. */
static int mpi_worker_chunk(const struct mpi_pool *mp, struct mh__run *run,
                            struct mpi_worker *w, const struct mpi_ctrl *ctrl, int shape_ok)
{
    const struct mh_task *task = run->task;
    /* The chunk's place in rank 0's task, which may differ from ours. */
    struct mh_task shape_task = {.n = ctrl->shape.n};
    struct mh__run plan = {.task = &shape_task};
    mh__chunk_plan(&plan, ctrl->shape.chunk_items, ctrl->shape.tail_width);
    size_t begin, end;
    mh__chunk_bounds(&plan, ctrl->chunk, &begin, &end);
    size_t count = end - begin;
    struct mpi_result res = {.chunk = ctrl->chunk, .fail = mh__failure_none()};
    int rc = mh__mpi_recv_bytes(mp, shape_ok && w->in ? w->in : NULL,
                                count * ctrl->shape.in_size, 0, MPI_TAG_INPUT);
    if (!rc && ctrl->shape.resume)
        rc = mh__mpi_recv_bytes(mp, shape_ok && w->in ? w->kept : NULL, count, 0,
                                MPI_TAG_STATUS);
    if (rc)
        return rc;
    if (!shape_ok || !w->in) {
        res.code = shape_ok ? w->error : MH_EINVAL;
        return mh__mpi_send(mp, &res, sizeof res, 0, MPI_TAG_RESULT);
    }

    /* The chunk's items, run against local buffers laid out from item 0:
     * shift the task so that item `begin` lands at index 0 of them. */
    struct mh_task local = *task;
    local.in = w->in;
    local.out = w->out;
    local.n = count;
    pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
    struct mh__run sub;
    mh__run_init(&sub, &local, count, run->on_error, w->status, &fail_lock);
    sub.callback_retries = run->callback_retries;
    /* A cancel here stops the chunk's next items, and fn sees it. */
    sub.cancel_flag = &run->cancelled;
    atomic_store_explicit(&sub.stop, atomic_load_explicit(&run->stop, memory_order_relaxed),
                          memory_order_relaxed);
    /* Resume: the kept items run not, and go back as NOT_RUN, so that
     * rank 0 leaves their outputs alone. */
    for (size_t i = 0; i < count; i++)
        w->status[i] = ctrl->shape.resume && w->kept[i] == MH_ITEM_OK ? MH_ITEM_OK
                                                                       : MH_ITEM_NOT_RUN;
    mh__run_chunk(&sub, 0);
    for (size_t i = 0; ctrl->shape.resume && i < count; i++)
        if (w->kept[i] == MH_ITEM_OK)
            w->status[i] = MH_ITEM_NOT_RUN;

    size_t len;
    mh__mpi_payload_encode(&w->payload, &sub, &len);
    res.ok = atomic_load_explicit(&sub.items_done, memory_order_relaxed);
    res.codec_failed = (uint64_t)atomic_load_explicit(&sub.codec_failed, memory_order_relaxed);
    if (sub.failure.index != MH_NO_ITEM) {
        res.fail = sub.failure;
        res.fail.index += begin;
        res.fail.count = atomic_load_explicit(&sub.items_failed, memory_order_relaxed);
    }
    res.payload = len;
    if ((rc = mh__mpi_send(mp, &res, sizeof res, 0, MPI_TAG_RESULT)))
        return rc;
    return mh__mpi_send_bytes(mp, w->payload.p, len, 0, MPI_TAG_OUTPUT);
}

/* Take the outcome rank 0 sent with STOP as this rank's own. */
static int mpi_worker_outcome(const struct mpi_pool *mp, struct mh__run *run,
                              const struct mpi_ctrl *ctrl)
{
    atomic_store_explicit(&run->items_done, ctrl->items_done, memory_order_relaxed);
    atomic_store_explicit(&run->items_failed, ctrl->items_failed, memory_order_relaxed);
    atomic_store_explicit(&run->codec_failed, (int)ctrl->codec_failed, memory_order_relaxed);
    if (ctrl->fail.index != MH_NO_ITEM) {
        run->failure = ctrl->fail;
        atomic_store_explicit(&run->stop, 1, memory_order_relaxed);
    }
    if (ctrl->out_bytes) {
        const struct mh_task *task = run->task;
        int same = ctrl->out_bytes == task->out_size && ctrl->fail.index < task->n;
        void *dst = same ? (unsigned char *)task->out + ctrl->fail.index * task->out_size : NULL;
        int rc = mh__mpi_recv_bytes(mp, dst, ctrl->out_bytes, 0, MPI_TAG_OUTPUT);
        if (rc)
            return rc;
    }
    return (int)ctrl->code;
}

/* Buffers for a chunk of `items` items; on failure w->in is NULL and
 * w->error says what every chunk is answered with. */
static void mpi_worker_open(struct mpi_worker *w, const struct mh__run *run, size_t items)
{
    const struct mh_task *task = run->task;
    size_t out_bytes = items * task->out_size;
    w->in = mh__malloc(items * task->in_size);
    w->out = mh__malloc(out_bytes);
    w->status = mh__malloc(items);
    w->kept = mh__malloc(items + 1);
    w->payload.cap = items + out_bytes; /* statuses and raw outputs fit */
    w->payload.p = mh__malloc(w->payload.cap);
    if (!w->out || !w->status || !w->kept || !w->payload.p || run->error) {
        mh__free(w->in);
        w->in = NULL; /* answer every chunk with the error */
    }
    w->error = run->error ? run->error : MH_ENOMEM;
}

static void mpi_worker_close(struct mpi_worker *w)
{
    mh__free(w->in);
    mh__free(w->out);
    mh__free(w->status);
    mh__free(w->kept);
    mh__free(w->payload.p);
}

/* Receive rank 0's next control record. While it is on its way, a
 * cancel of this run is sent to rank 0 (once), which ends the map on
 * every rank. Open MPI's blocking receive spins as this loop does. */
static int mpi_worker_next(const struct mpi_pool *mp, struct mh__run *run,
                           struct mpi_worker *w, struct mpi_ctrl *ctrl)
{
    MPI_Request req;
    int rc = mh__mpi_code(MPI_Irecv(ctrl, sizeof *ctrl, MPI_BYTE, 0, MPI_TAG_CTRL, mp->comm,
                                    &req));
    for (int arrived = 0; !rc && !arrived;) {
        /* Relaxed: a poll of "stop soon". */
        if (!w->told && atomic_load_explicit(&run->cancelled, memory_order_relaxed)) {
            struct mpi_cancel msg = {.map = mp->maps};
            w->told = true;
            rc = mh__mpi_send(mp, &msg, sizeof msg, 0, MPI_TAG_CANCEL);
        }
        if (!rc)
            rc = mh__mpi_code(MPI_Test(&req, &arrived, MPI_STATUS_IGNORE));
    }
    if (rc && req != MPI_REQUEST_NULL) {
        MPI_Cancel(&req);
        MPI_Request_free(&req);
    }
    return rc;
}

int mh__mpi_worker_serve(const struct mpi_pool *mp, struct mh__run *run,
                         const struct mpi_shape *mine, size_t items, struct mpi_ctrl *end)
{
    struct mpi_worker w = {0};
    mpi_worker_open(&w, run, items);
    /* This rank's shape goes first, whatever follows: rank 0 checks every
     * rank's, so one given no chunk (n = 0 here or there) is refused too. */
    MPI_Request shape_req = MPI_REQUEST_NULL;
    int rc = mh__mpi_code(MPI_Isend(mine, sizeof *mine, MPI_BYTE, 0, MPI_TAG_SHAPE, mp->comm,
                                    &shape_req));
    while (!rc) {
        if ((rc = mpi_worker_next(mp, run, &w, end)))
            break;
        if (end->kind == MPI_CTRL_STOP) {
            rc = mpi_worker_outcome(mp, run, end);
            break;
        }
        rc = mpi_worker_chunk(mp, run, &w, end, mh__mpi_shape_same(mine, &end->shape));
    }
    /* A small message: sent already, or as soon as rank 0 takes it. */
    int wait = mh__mpi_code(MPI_Wait(&shape_req, MPI_STATUS_IGNORE));
    mpi_worker_close(&w);
    return rc ? rc : wait;
}

int mh__mpi_worker_map(const struct mpi_pool *mp, struct mh__run *run)
{
    const struct mh_task *task = run->task;
    struct mpi_shape mine = mh__mpi_shape_of(run);
    struct mpi_ctrl end;
    return mh__mpi_worker_serve(mp, run, &mine, run->chunk < task->n ? run->chunk : task->n,
                                &end);
}
