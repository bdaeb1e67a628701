/*
 * mpi: the same map across processes and hosts, on MPI (Open MPI).
 *
 * SPMD and collective: every rank of the job opens the pool and calls
 * mh_map with the same task shape (n, in_size, out_size, codec or not,
 * chunk and on_error); rank 0's inputs are the ones that count. Rank 0
 * hands chunks out dynamically, two in flight per other rank, and runs
 * chunks itself between polls (MPI_Test) of the results that come back.
 * Inputs travel as bytes; results come back as bytes, or through the
 * task's codec (encoded on the rank that ran the item, decoded on rank 0).
 *
 * After a map rank 0 has every result in order. Every rank returns the
 * same code and the same report counters and failure (rank 0 sends them
 * with the message that ends the map); on other ranks task->out and
 * task->status hold nothing, except that out[failed_index] is copied from
 * rank 0 when an item failed and there is no codec (so mh_reduce reports
 * the same failing item everywhere).
 *
 * Messages of one map, per other rank: first its task's shape (checked
 * by rank 0 against its own: a rank given no chunk, n = 0 included, is
 * checked too); per chunk, rank 0 sends a control record and the chunk's
 * input bytes and gets back a result record and its payload (statuses,
 * then output bytes or encoded items); at the end one control record
 * says stop and carries the outcome. No collective call in a map: a small
 * map costs a few point-to-point messages. An item the codec cannot
 * carry fails alone (MH_ITEM_FAILED, MH_ECODEC), as on fork.
 *
 * MPI is initialised (MPI_THREAD_MULTIPLE asked) by the first pool open
 * if the caller has not done it, and then finalised at exit (atexit):
 * MPI cannot be initialised twice, so closing the last pool must not end
 * it. The pool works on its own duplicate of MPI_COMM_WORLD with
 * MPI_ERRORS_RETURN, and MPI errors come back as MH_EMPI; the library
 * never calls MPI_Abort. A rank that dies is the MPI runtime's to handle:
 * Open MPI's mpiexec then ends the whole job (docs/backends.md).
 */
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/* Message tags on the pool's communicator. */
enum {
    MPI_TAG_CTRL = 1,   /* rank 0 -> worker: struct mpi_ctrl */
    MPI_TAG_INPUT = 2,  /* rank 0 -> worker: a chunk's input bytes */
    MPI_TAG_RESULT = 3, /* worker -> rank 0: struct mpi_result */
    MPI_TAG_OUTPUT = 4, /* worker -> rank 0: a result's payload;
                         * rank 0 -> worker: out[failed_index] at the end */
    MPI_TAG_SHAPE = 5,  /* worker -> rank 0: its task's shape, first */
};

/* Chunks a worker holds at once: it runs one while the next arrives. */
#define MPI_DEPTH 2

/* Byte counts travel as blocks of this many bytes plus a remainder, so
 * that no count passed to MPI (an int) overflows. */
#define MPI_BLOCK ((size_t)1 << 30)

enum { MPI_CTRL_WORK = 1, MPI_CTRL_STOP = 2 };

/*
 * rank 0 -> worker. WORK: run chunk `chunk` (its inputs follow). STOP:
 * the map is over; the rest is its outcome. The task's shape travels with
 * every record so that a rank whose task differs says so (MH_EINVAL)
 * instead of computing garbage. All ranks run the same binary on the same
 * architecture (docs/backends.md), so records travel as raw bytes.
 */
struct mpi_shape {
    uint64_t n, in_size, out_size, chunk_items, tail_width, has_codec, on_error;
};

struct mpi_ctrl {
    uint64_t kind;
    uint64_t chunk;
    struct mpi_shape shape;
    /* STOP only: */
    int64_t code; /* the backend's own error, or 0 */
    uint64_t items_done, items_failed;
    struct mh__failure fail; /* run->failure */
    uint64_t out_bytes; /* bytes of out[fail.index] that follow, or 0 */
    uint64_t codec_failed; /* run->codec_failed */
};

/* worker -> rank 0: what chunk `chunk` gave; `payload` bytes follow. */
struct mpi_result {
    uint64_t chunk;
    int64_t code; /* MH_EINVAL (task differs), MH_ENOMEM, or 0 */
    uint64_t ok;
    struct mh__failure fail; /* its lowest; count: all of the chunk's */
    uint64_t payload; /* statuses (one byte per item), then outputs */
    uint64_t codec_failed; /* the codec could not carry an item of it */
};

struct mpi_pool {
    MPI_Comm comm;       /* our duplicate of MPI_COMM_WORLD */
    MPI_Datatype block;  /* MPI_BLOCK contiguous bytes */
    int rank, size;
};

/* ------------------------------------------------------------ process */

/*
 * MPI's state is the process's, not a pool's: whether we initialised it
 * (then we finalise it at exit), the thread level it gives, and how many
 * maps are running (finalising under a running map would hang the job).
 */
static pthread_mutex_t mpi_init_lock = PTHREAD_MUTEX_INITIALIZER; /* guards
                                        * the init and atexit registration */
static int mpi_we_initialised;         /* under mpi_init_lock */
/* MPI's thread level: written under mpi_init_lock by every open, read by
 * maps on any thread (relaxed: it is set once MPI starts and never
 * changes after, so a reader sees that value or none is running). */
static atomic_int mpi_thread_level = MPI_THREAD_SINGLE;
/* Below MPI_THREAD_MULTIPLE, every MPI call of the library is made under
 * this lock, so that calls from several threads are serialised. */
static pthread_mutex_t mpi_serial_lock = PTHREAD_MUTEX_INITIALIZER;
/* Maps in flight in this process (relaxed: read only by the exit hook,
 * after the threads that count have stopped or are stuck in a map). */
static atomic_int mpi_maps_running;

static void mpi_atexit(void)
{
    int initialised = 0, finalised = 1;
    MPI_Initialized(&initialised);
    MPI_Finalized(&finalised);
    /* A map still running (exit from inside a callback, or from another
     * thread) would wait in MPI_Finalize for peers that wait for this
     * rank's results: leave MPI unfinalised, and the runtime ends the job
     * with an error instead of hanging. */
    if (initialised && !finalised &&
        atomic_load_explicit(&mpi_maps_running, memory_order_relaxed) == 0)
        MPI_Finalize();
}

/* Initialise MPI unless the caller has; learn its thread level. */
static int mpi_ensure_init(void)
{
    int rc = MH_OK;
    pthread_mutex_lock(&mpi_init_lock);
    int initialised = 0, finalised = 0;
    if (MPI_Initialized(&initialised) != MPI_SUCCESS ||
        MPI_Finalized(&finalised) != MPI_SUCCESS || finalised) {
        rc = MH_EMPI; /* MPI cannot start again once finalised */
        goto out_unlock;
    }
    if (initialised) {
        int level;
        if (MPI_Query_thread(&level) != MPI_SUCCESS)
            rc = MH_EMPI;
        else
            atomic_store_explicit(&mpi_thread_level, level, memory_order_relaxed);
        goto out_unlock;
    }
    int level;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &level) != MPI_SUCCESS) {
        rc = MH_EMPI;
        goto out_unlock;
    }
    atomic_store_explicit(&mpi_thread_level, level, memory_order_relaxed);
    /* MPI_COMM_WORLD is ours now: errors on it (MPI_Comm_dup) come back
     * as codes instead of ending the process. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (!mpi_we_initialised) {
        mpi_we_initialised = 1;
        if (atexit(mpi_atexit) != 0)
            rc = MH_ENOMEM; /* MPI stays up; the runtime reports it at exit */
    }
out_unlock:
    pthread_mutex_unlock(&mpi_init_lock);
    return rc;
}

/* Whether this thread may call MPI now (FUNNELED: the main thread only). */
static int mpi_thread_check(void)
{
    if (atomic_load_explicit(&mpi_thread_level, memory_order_relaxed) >= MPI_THREAD_SERIALIZED)
        return MH_OK;
    int is_main = 0;
    if (MPI_Is_thread_main(&is_main) != MPI_SUCCESS)
        return MH_EMPI;
    return is_main ? MH_OK : MH_ENOTSUP;
}

static void mpi_serial_enter(void)
{
    if (atomic_load_explicit(&mpi_thread_level, memory_order_relaxed) < MPI_THREAD_MULTIPLE)
        pthread_mutex_lock(&mpi_serial_lock);
}

static void mpi_serial_leave(void)
{
    if (atomic_load_explicit(&mpi_thread_level, memory_order_relaxed) < MPI_THREAD_MULTIPLE)
        pthread_mutex_unlock(&mpi_serial_lock);
}

/* ---------------------------------------------------------------- bytes */

/* Send or receive len bytes as full blocks plus a remainder: at most two
 * messages, each with a count that fits an int. */
static int mpi_isend_bytes(const struct mpi_pool *mp, const void *buf, size_t len,
                           int dest, int tag, MPI_Request req[2])
{
    const unsigned char *p = buf;
    size_t blocks = len / MPI_BLOCK, rest = len % MPI_BLOCK;
    req[0] = req[1] = MPI_REQUEST_NULL;
    if (blocks > INT_MAX)
        return MH_EOVERFLOW;
    if (blocks && MPI_Isend(p, (int)blocks, mp->block, dest, tag, mp->comm, &req[0]) != MPI_SUCCESS)
        return MH_EMPI;
    if (rest && MPI_Isend(p + blocks * MPI_BLOCK, (int)rest, MPI_BYTE, dest, tag, mp->comm,
                          &req[1]) != MPI_SUCCESS)
        return MH_EMPI;
    return MH_OK;
}

static int mpi_send_bytes(const struct mpi_pool *mp, const void *buf, size_t len,
                          int dest, int tag)
{
    MPI_Request req[2];
    int rc = mpi_isend_bytes(mp, buf, len, dest, tag, req);
    if (MPI_Waitall(2, req, MPI_STATUSES_IGNORE) != MPI_SUCCESS && rc == MH_OK)
        rc = MH_EMPI;
    return rc;
}

/* buf NULL: receive and drop the bytes (a worker that could not allocate
 * still takes its messages, so that rank 0's sends complete). */
static int mpi_recv_bytes(const struct mpi_pool *mp, void *buf, size_t len, int src, int tag)
{
    unsigned char *p = buf;
    size_t blocks = len / MPI_BLOCK, rest = len % MPI_BLOCK;
    if (blocks > INT_MAX)
        return MH_EOVERFLOW;
    if (!buf) {
        /* A zero-byte receive matches the message and truncates it. */
        for (int part = 0; part < (blocks != 0) + (rest != 0); part++)
            MPI_Recv(NULL, 0, MPI_BYTE, src, tag, mp->comm, MPI_STATUS_IGNORE);
        return MH_OK;
    }
    if (blocks && MPI_Recv(p, (int)blocks, mp->block, src, tag, mp->comm,
                           MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return MH_EMPI;
    if (rest && MPI_Recv(p + blocks * MPI_BLOCK, (int)rest, MPI_BYTE, src, tag, mp->comm,
                         MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return MH_EMPI;
    return MH_OK;
}

/* The task's shape, as every control record carries it. */
static struct mpi_shape mpi_shape_of(const struct mh__run *run)
{
    const struct mh_task *task = run->task;
    return (struct mpi_shape){
        .n = task->n, .in_size = task->in_size, .out_size = task->out_size,
        .chunk_items = run->chunk, .tail_width = run->tail_width,
        .has_codec = task->codec != NULL, .on_error = (uint64_t)run->on_error,
    };
}

/* --------------------------------------------------------------- worker */

struct mpi_worker {
    unsigned char *in, *out, *payload;
    uint8_t *status;
    size_t payload_cap;
    int error; /* what to answer with when in is NULL */
};

/* Grow *buf (of *cap bytes) to hold need, keeping its first `used`
 * bytes. 0 or MH_ENOMEM (then *buf is as it was). */
static int mpi_room(unsigned char **buf, size_t *cap, size_t used, size_t need)
{
    if (need <= *cap)
        return MH_OK;
    size_t want = need / 2 < *cap ? *cap * 2 : need;
    unsigned char *bigger = mh__malloc(want);
    if (!bigger && want > need)
        bigger = mh__malloc(want = need);
    if (!bigger)
        return MH_ENOMEM;
    if (used) /* *buf may still be NULL */
        memcpy(bigger, *buf, used);
    mh__free(*buf);
    *buf = bigger;
    *cap = want;
    return MH_OK;
}

/* Encode sub's successful outputs after its statuses into w->payload,
 * releasing what each owns, and return the payload's length. An item the
 * codec cannot carry (encode fails, or size() asks for more than can be
 * allocated) fails alone, as on fork: MH_ITEM_FAILED, MH_ECODEC. */
static size_t mpi_worker_encode(struct mpi_worker *w, struct mh__run *sub)
{
    const struct mh_task *task = sub->task;
    size_t len = task->n; /* the statuses, written last (payload_cap >= n) */
    for (size_t i = 0; i < task->n; i++) {
        if (sub->status[i] != MH_ITEM_OK)
            continue;
        void *item = (unsigned char *)task->out + i * task->out_size;
        uint64_t size = task->codec->size(item, task->ctx);
        size_t end;
        int bad = __builtin_add_overflow(len, sizeof size, &end) ||
                  __builtin_add_overflow(end, size, &end) || mpi_room(&w->payload, &w->payload_cap, len, end) ||
                  task->codec->encode(item, w->payload + len + sizeof size, size, task->ctx);
        task->codec->clear(item, task->ctx);
        if (bad) {
            atomic_fetch_sub_explicit(&sub->items_done, 1, memory_order_relaxed);
            mh__run_codec_fail(sub, i);
            continue;
        }
        memcpy(w->payload + len, &size, sizeof size);
        len = end;
    }
    memcpy(w->payload, sub->status, task->n);
    return len;
}

/* Run one assigned chunk and send its result to rank 0. */
static int mpi_worker_chunk(const struct mpi_pool *mp, struct mh__run *run,
                            struct mpi_worker *w, const struct mpi_ctrl *ctrl, int shape_ok)
{
    const struct mh_task *task = run->task;
    const struct mpi_shape *shape = &ctrl->shape;
    /* The chunk's place in rank 0's task, which may differ from ours. */
    struct mh_task shape_task = {.n = shape->n};
    struct mh__run plan = {.task = &shape_task};
    mh__chunk_plan(&plan, shape->chunk_items, shape->tail_width);
    size_t begin, end;
    mh__chunk_bounds(&plan, ctrl->chunk, &begin, &end);
    size_t count = end - begin;
    struct mpi_result res = {.chunk = ctrl->chunk, .fail = mh__failure_none()};
    int rc = mpi_recv_bytes(mp, shape_ok && w->in ? w->in : NULL, count * shape->in_size, 0,
                            MPI_TAG_INPUT);
    if (rc)
        return rc;
    if (!shape_ok || !w->in) {
        res.code = shape_ok ? w->error : MH_EINVAL;
        return MPI_Send(&res, sizeof res, MPI_BYTE, 0, MPI_TAG_RESULT, mp->comm) == MPI_SUCCESS
                   ? MH_OK : MH_EMPI;
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
    memset(w->status, MH_ITEM_NOT_RUN, count);
    mh__run_chunk(&sub, 0);

    size_t len;
    if (task->codec) {
        len = mpi_worker_encode(w, &sub);
    } else {
        /* Statuses, then every output (a failed item's bytes too: a
         * reduce partial says where in its chunk the failure was). */
        memcpy(w->payload, w->status, count);
        memcpy(w->payload + count, w->out, count * task->out_size);
        len = count + count * task->out_size;
    }
    res.ok = atomic_load_explicit(&sub.items_done, memory_order_relaxed);
    res.codec_failed = (uint64_t)atomic_load_explicit(&sub.codec_failed, memory_order_relaxed);
    if (sub.failure.index != MH_NO_ITEM) {
        res.fail = sub.failure;
        res.fail.index += begin;
        res.fail.count = atomic_load_explicit(&sub.items_failed, memory_order_relaxed);
    }
    res.payload = len;
    if (MPI_Send(&res, sizeof res, MPI_BYTE, 0, MPI_TAG_RESULT, mp->comm) != MPI_SUCCESS)
        return MH_EMPI;
    return mpi_send_bytes(mp, w->payload, len, 0, MPI_TAG_OUTPUT);
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
        int rc = mpi_recv_bytes(mp, dst, ctrl->out_bytes, 0, MPI_TAG_OUTPUT);
        if (rc)
            return rc;
    }
    return (int)ctrl->code;
}

static int mpi_worker_map(const struct mpi_pool *mp, struct mh__run *run)
{
    const struct mh_task *task = run->task;
    struct mpi_worker w = {0};
    size_t items = run->chunk < task->n ? run->chunk : task->n; /* largest chunk */
    size_t out_bytes = items * task->out_size;
    w.in = mh__malloc(items * task->in_size);
    w.out = mh__malloc(out_bytes);
    w.status = mh__malloc(items);
    w.payload_cap = items + out_bytes;
    w.payload = mh__malloc(w.payload_cap);
    if (!w.out || !w.status || !w.payload || run->error) {
        mh__free(w.in);
        w.in = NULL; /* answer every chunk with the error */
    }
    w.error = run->error ? run->error : MH_ENOMEM;

    /* This rank's shape goes first, whatever follows: rank 0 checks every
     * rank's, so one given no chunk (n = 0 here or there) is refused too. */
    struct mpi_shape mine = mpi_shape_of(run);
    MPI_Request shape_req = MPI_REQUEST_NULL;
    int rc = MPI_Isend(&mine, sizeof mine, MPI_BYTE, 0, MPI_TAG_SHAPE, mp->comm, &shape_req) ==
                     MPI_SUCCESS ? MH_OK : MH_EMPI;
    while (!rc) {
        struct mpi_ctrl ctrl;
        if (MPI_Recv(&ctrl, sizeof ctrl, MPI_BYTE, 0, MPI_TAG_CTRL, mp->comm,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            rc = MH_EMPI;
            break;
        }
        if (ctrl.kind == MPI_CTRL_STOP) {
            rc = mpi_worker_outcome(mp, run, &ctrl);
            break;
        }
        rc = mpi_worker_chunk(mp, run, &w, &ctrl, !memcmp(&mine, &ctrl.shape, sizeof mine));
    }
    /* A small message: sent already, or as soon as rank 0 takes it. */
    if (MPI_Wait(&shape_req, MPI_STATUS_IGNORE) != MPI_SUCCESS && !rc)
        rc = MH_EMPI;
    mh__free(w.in);
    mh__free(w.out);
    mh__free(w.status);
    mh__free(w.payload);
    return rc;
}

/* ----------------------------------------------------------------- root */

struct mpi_slot {
    struct mpi_ctrl ctrl;
    MPI_Request req[3]; /* control, input blocks, input rest */
};

struct mpi_root {
    const struct mpi_pool *mp;
    struct mh__run *run;
    struct mpi_slot *slots; /* MPI_DEPTH per worker rank, by rank */
    size_t next;            /* next chunk to hand out or run */
    size_t outstanding;     /* chunks out at workers */
    int code;               /* the map's own error (not an item's) */
    unsigned char *payload;
    size_t payload_cap;
};

static void mpi_root_error(struct mpi_root *r, int code)
{
    if (!r->code)
        r->code = code;
    atomic_store_explicit(&r->run->stop, 1, memory_order_relaxed);
}

static int mpi_root_stopping(const struct mpi_root *r)
{
    return atomic_load_explicit(&r->run->stop, memory_order_relaxed) != 0;
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
    size_t c = r->next++;
    memset(&slot->ctrl, 0, sizeof slot->ctrl);
    slot->ctrl.kind = MPI_CTRL_WORK;
    slot->ctrl.chunk = c;
    slot->ctrl.shape = mpi_shape_of(r->run);
    size_t begin, end;
    mh__chunk_bounds(r->run, c, &begin, &end);
    const unsigned char *in = (const unsigned char *)task->in + begin * task->in_size;
    if (MPI_Isend(&slot->ctrl, sizeof slot->ctrl, MPI_BYTE, dest, MPI_TAG_CTRL, r->mp->comm,
                  &slot->req[0]) != MPI_SUCCESS)
        return MH_EMPI;
    r->outstanding++;
    return mpi_isend_bytes(r->mp, in, (end - begin) * task->in_size, dest,
                           MPI_TAG_INPUT, &slot->req[1]);
}

/* Free the slot of `src` that held chunk c. Its sends were received (a
 * result came back for it), so waiting on them only completes them. */
static int mpi_root_release(struct mpi_root *r, int src, uint64_t c)
{
    for (int d = 0; d < MPI_DEPTH; d++) {
        struct mpi_slot *s = &r->slots[src * MPI_DEPTH + d];
        if (s->ctrl.kind == MPI_CTRL_WORK && s->ctrl.chunk == c) {
            s->ctrl.kind = 0;
            return MPI_Waitall(3, s->req, MPI_STATUSES_IGNORE) == MPI_SUCCESS ? MH_OK : MH_EMPI;
        }
    }
    return MH_EMPI; /* a result for a chunk this rank was not given */
}

/* Put a worker's chunk result into task->out and run->status. */
static int mpi_root_merge(struct mpi_root *r, const struct mpi_result *res,
                          const unsigned char *payload, size_t len)
{
    struct mh__run *run = r->run;
    const struct mh_task *task = run->task;
    size_t c = res->chunk;
    if (c >= run->nchunks)
        return MH_EMPI;
    size_t begin, last;
    mh__chunk_bounds(run, c, &begin, &last);
    size_t count = last - begin;
    unsigned char *out = (unsigned char *)task->out + begin * task->out_size;
    if (len < count || (!task->codec && len != count + count * task->out_size))
        return MH_EMPI;
    const uint8_t *status = payload;
    const unsigned char *p = payload + count, *end = payload + len;
    size_t ok = 0;
    int rc = MH_OK;
    for (size_t i = 0; i < count; i++) {
        uint8_t st = status[i];
        if (st == MH_ITEM_NOT_RUN)
            continue;
        if (task->codec && st == MH_ITEM_OK) {
            uint64_t size = 0;
            if ((size_t)(end - p) >= sizeof size)
                memcpy(&size, p, sizeof size);
            if ((size_t)(end - p) < sizeof size || (size_t)(end - p) - sizeof size < size) {
                rc = MH_ECODEC; /* corrupt: this item and the rest stay NOT_RUN */
                break;
            }
            p += sizeof size;
            int bad = task->codec->decode(out + i * task->out_size, p, size, task->ctx);
            p += size;
            if (bad) {
                mh__run_codec_fail(run, begin + i); /* as fork does */
                continue;
            }
        } else if (!task->codec) {
            memcpy(out + i * task->out_size, p + i * task->out_size, task->out_size);
        }
        if (run->status)
            run->status[begin + i] = st;
        ok += st == MH_ITEM_OK;
    }
    atomic_fetch_add_explicit(&run->items_done, ok, memory_order_relaxed);
    if (res->codec_failed)
        atomic_store_explicit(&run->codec_failed, 1, memory_order_relaxed);
    mh__run_fail(run, &res->fail); /* nothing when none failed */
    return rc;
}

/* Take one result (its record has arrived in *res from src). */
static int mpi_root_take(struct mpi_root *r, const struct mpi_result *res, int src)
{
    r->outstanding--;
    int rc = mpi_root_release(r, src, res->chunk);
    if (rc)
        return rc;
    int fits = mpi_room(&r->payload, &r->payload_cap, 0, res->payload) == MH_OK;
    rc = mpi_recv_bytes(r->mp, fits ? r->payload : NULL, res->payload, src, MPI_TAG_OUTPUT);
    if (rc)
        return rc; /* MPI failed: the protocol cannot go on */
    if (!fits)
        mpi_root_error(r, MH_ENOMEM);
    else if (res->code)
        mpi_root_error(r, (int)res->code);
    else if ((rc = mpi_root_merge(r, res, r->payload, res->payload)))
        mpi_root_error(r, rc);
    mh__run_progress(r->run);
    if (!mpi_root_stopping(r) && r->next < r->run->nchunks)
        return mpi_root_assign(r, src);
    return MH_OK;
}

/* Tell every worker the map is over, with its outcome. */
static int mpi_root_finish(struct mpi_root *r)
{
    struct mh__run *run = r->run;
    const struct mh_task *task = run->task;
    /* Every other rank's shape, sent as its map began: one that differs
     * fails the map on every rank, whether chunks went to it or not. */
    struct mpi_shape mine = mpi_shape_of(run), theirs;
    for (int src = 1; src < r->mp->size; src++) {
        if (MPI_Recv(&theirs, sizeof theirs, MPI_BYTE, src, MPI_TAG_SHAPE, r->mp->comm,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return MH_EMPI;
        if (memcmp(&mine, &theirs, sizeof mine) != 0)
            mpi_root_error(r, MH_EINVAL);
    }
    struct mpi_ctrl stop = {
        .kind = MPI_CTRL_STOP,
        .code = r->code,
        .items_done = atomic_load_explicit(&run->items_done, memory_order_relaxed),
        .items_failed = atomic_load_explicit(&run->items_failed, memory_order_relaxed),
        .fail = run->failure,
        .codec_failed = (uint64_t)atomic_load_explicit(&run->codec_failed, memory_order_relaxed),
        .shape = mine,
    };
    /* Without a codec the failing item's bytes go along (see the top). */
    if (run->failure.index != MH_NO_ITEM && !task->codec)
        stop.out_bytes = task->out_size;
    const unsigned char *failed_out =
        stop.out_bytes ? (const unsigned char *)task->out + run->failure.index * task->out_size
                       : NULL;
    int rc = MH_OK;
    for (int dest = 1; dest < r->mp->size; dest++) {
        if (MPI_Send(&stop, sizeof stop, MPI_BYTE, dest, MPI_TAG_CTRL, r->mp->comm) !=
            MPI_SUCCESS)
            return MH_EMPI;
        if (stop.out_bytes && (rc = mpi_send_bytes(r->mp, failed_out, stop.out_bytes, dest,
                                                   MPI_TAG_OUTPUT)))
            return rc;
    }
    return rc;
}

static int mpi_root_map(const struct mpi_pool *mp, struct mh__run *run)
{
    int workers = mp->size - 1;
    struct mpi_root r = {.mp = mp, .run = run};
    r.slots = run->error ? NULL : mh__calloc((size_t)mp->size * MPI_DEPTH, sizeof *r.slots);
    if (!r.slots) {
        /* Still end the map on every worker, with the error. */
        r.code = run->error ? run->error : MH_ENOMEM;
        atomic_store_explicit(&run->stop, 1, memory_order_relaxed);
        return mpi_root_finish(&r) ? MH_EMPI : r.code;
    }
    for (size_t s = 0; s < (size_t)mp->size * MPI_DEPTH; s++)
        for (int q = 0; q < 3; q++)
            r.slots[s].req[q] = MPI_REQUEST_NULL;

    int rc = MH_OK;
    /* Fill every worker's slots first, one chunk per rank per round, so
     * that a small map spreads over all ranks. */
    for (int d = 0; d < MPI_DEPTH && !rc; d++)
        for (int dest = 1; dest <= workers && r.next < run->nchunks && !rc; dest++)
            rc = mpi_root_assign(&r, dest);

    struct mpi_result res;
    MPI_Request pending = MPI_REQUEST_NULL;
    while (!rc) {
        if (r.outstanding > 0 && pending == MPI_REQUEST_NULL &&
            MPI_Irecv(&res, sizeof res, MPI_BYTE, MPI_ANY_SOURCE, MPI_TAG_RESULT, mp->comm,
                      &pending) != MPI_SUCCESS) {
            rc = MH_EMPI;
            break;
        }
        int local = !mpi_root_stopping(&r) && r.next < run->nchunks;
        if (!local && r.outstanding == 0)
            break;
        MPI_Status st;
        int arrived = 0;
        if (r.outstanding > 0) {
            /* Poll while there is work of our own; wait when there is not. */
            int err = local ? MPI_Test(&pending, &arrived, &st) : MPI_Wait(&pending, &st);
            if (err != MPI_SUCCESS) {
                rc = MH_EMPI;
                break;
            }
            arrived |= !local;
        }
        if (arrived) {
            pending = MPI_REQUEST_NULL;
            rc = mpi_root_take(&r, &res, st.MPI_SOURCE);
            continue;
        }
        /* Rank 0 works too: one chunk between polls. */
        mh__run_chunk(run, r.next++);
        mh__run_progress(run);
    }

    if (rc) {
        /* MPI itself failed: the protocol is broken, and the peers may
         * never hear from us. Open MPI then ends the job. */
        if (pending != MPI_REQUEST_NULL) {
            MPI_Cancel(&pending);
            MPI_Request_free(&pending);
        }
    } else {
        for (size_t s = 0; s < (size_t)mp->size * MPI_DEPTH && !rc; s++)
            if (MPI_Waitall(3, r.slots[s].req, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
                rc = MH_EMPI;
        if (!rc)
            rc = mpi_root_finish(&r);
        if (!rc)
            rc = r.code;
    }
    mh__free(r.slots);
    mh__free(r.payload);
    return rc;
}

/* ------------------------------------------------------------- backend */

static int mpi_open(void **state, const struct mh_config *config)
{
    (void)config; /* workers: the communicator's size decides */
    int rc = mpi_ensure_init();
    if (rc)
        return rc;
    if ((rc = mpi_thread_check()))
        return rc;
    struct mpi_pool *mp = mh__calloc(1, sizeof *mp);
    if (!mp)
        return MH_ENOMEM;
    mpi_serial_enter();
    rc = MH_EMPI;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &mp->comm) != MPI_SUCCESS)
        goto out_free;
    if (MPI_Comm_set_errhandler(mp->comm, MPI_ERRORS_RETURN) != MPI_SUCCESS ||
        MPI_Comm_rank(mp->comm, &mp->rank) != MPI_SUCCESS ||
        MPI_Comm_size(mp->comm, &mp->size) != MPI_SUCCESS)
        goto out_comm;
    if (MPI_Type_contiguous((int)MPI_BLOCK, MPI_BYTE, &mp->block) != MPI_SUCCESS)
        goto out_comm;
    if (MPI_Type_commit(&mp->block) != MPI_SUCCESS)
        goto out_type;
    mpi_serial_leave();
    *state = mp;
    return MH_OK;

out_type:
    MPI_Type_free(&mp->block);
out_comm:
    MPI_Comm_free(&mp->comm);
out_free:
    mpi_serial_leave();
    mh__free(mp);
    return rc;
}

static int mpi_workers(void *state)
{
    const struct mpi_pool *mp = state;
    return mp->size;
}

static int mpi_rank(void *state)
{
    const struct mpi_pool *mp = state;
    return mp->rank;
}

static int mpi_map(void *state, struct mh__run *run)
{
    const struct mpi_pool *mp = state;
    int rc = mpi_thread_check();
    if (rc)
        return rc;
    atomic_fetch_add_explicit(&mpi_maps_running, 1, memory_order_relaxed);
    mpi_serial_enter();
    rc = mp->rank == 0 ? mpi_root_map(mp, run) : mpi_worker_map(mp, run);
    mpi_serial_leave();
    atomic_fetch_sub_explicit(&mpi_maps_running, 1, memory_order_relaxed);
    return rc;
}

static void mpi_close(void *state, bool owner)
{
    struct mpi_pool *mp = state;
    if (!mp)
        return;
    int finalised = 1;
    /* In a forked child, or after MPI_Finalize, MPI is not ours to call. */
    if (owner && MPI_Finalized(&finalised) == MPI_SUCCESS && !finalised) {
        mpi_serial_enter();
        MPI_Type_free(&mp->block);
        MPI_Comm_free(&mp->comm);
        mpi_serial_leave();
    }
    mh__free(mp);
}

const struct mh_backend_ops mh__backend_mpi = {
    .name = "mpi",
    .caps = MH__CAP_PROCESS | MH__CAP_COLLECTIVE,
    .open = mpi_open,
    .map = mpi_map,
    .close = mpi_close,
    .workers = mpi_workers,
    .rank = mpi_rank,
};
