/*
 * mpi: the same map across processes and hosts, on MPI (Open MPI). The
 * model, what each rank gets and the limits: docs/backends.md "mpi". This
 * header is the backend's own, shared by its files, one per role:
 *
 *   runtime.c    MPI's process-wide state: init, the thread level, the
 *                serialising lock, the maps in flight, the exit hook; and
 *                the one translation of MPI error codes (mh__mpi_code)
 *   transport.c  a pool's communicator and byte messages of any length
 *   payload.c    a chunk's result payload, encoded by the worker and
 *                merged into the caller's arrays by rank 0
 *   root.c       rank 0: hands chunks out, runs its own, ends the map
 *   worker.c     every other rank: runs the chunks it is given
 *   stream.c     a stream: rank 0 pumps the ring and ships its chunks,
 *                the other ranks serve them as they do a map's
 *   ops.c        the backend's table (struct mh_backend_ops)
 *
 * Messages of one map, per other rank: first its task's shape (checked
 * by rank 0 against its own: a rank given no chunk, n = 0 included, is
 * checked too); per chunk, rank 0 sends a control record and the chunk's
 * input bytes and gets back a result record and its payload (payload.c);
 * at the end one control record says stop and carries the outcome. No
 * collective call in a map: a small map costs a few point-to-point
 * messages. All ranks run the same binary on the same architecture, so
 * records travel as raw bytes.
 */
#ifndef MH_MPI_INT_H
#define MH_MPI_INT_H

#include <mpi.h>

#include "backend.h"

/* Message tags on the pool's communicator. */
enum {
    MPI_TAG_CTRL = 1,   /* rank 0 -> worker: struct mpi_ctrl */
    MPI_TAG_INPUT = 2,  /* rank 0 -> worker: a chunk's input bytes */
    MPI_TAG_RESULT = 3, /* worker -> rank 0: struct mpi_result */
    MPI_TAG_OUTPUT = 4, /* worker -> rank 0: a result's payload;
                         * rank 0 -> worker: out[failed_index] at the end */
    MPI_TAG_SHAPE = 5,  /* worker -> rank 0: its task's shape, first */
    MPI_TAG_CANCEL = 6, /* worker -> rank 0: struct mpi_cancel, at most
                         * once per map, when the map is cancelled there */
    MPI_TAG_STATUS = 7, /* rank 0 -> worker: a resumed chunk's statuses */
};

/* A cancel on a worker rank, for rank 0 to end the map everywhere. It
 * names its map (a pool's maps are counted alike on every rank), so that
 * one sent as the map ended is dropped by the next map's rank 0. */
struct mpi_cancel {
    uint64_t map;
};

/* Chunks a worker holds at once: it runs one while the next arrives. */
#define MPI_DEPTH 2

/* Byte counts travel as blocks of this many bytes plus a remainder, so
 * that no count passed to MPI (an int) overflows. */
#define MPI_BLOCK ((size_t)1 << 30)

enum { MPI_CTRL_WORK = 1, MPI_CTRL_STOP = 2 };

/* What a shape is of: a map, or a stream. */
enum { MPI_SHAPE_MAP = 0, MPI_SHAPE_STREAM = 1 };

/* The task's shape. It travels with every control record, so that a rank
 * whose task differs says so (MH_EINVAL) instead of computing garbage; a
 * rank in a stream while the others map (or the reverse) differs in kind.
 * A stream's chunk c of k items travels as n = c * chunk_items + k: the
 * chunk plan any rank makes from the record then gives chunk c those k
 * items, so a rank that maps takes exactly the bytes sent (and refuses
 * them). */
struct mpi_shape {
    uint64_t kind, n, in_size, out_size, chunk_items, tail_width, has_codec, on_error, resume;
    /* Not part of the shape (never compared): the rank's own run->error,
     * so that rank 0 learns it even when it sends that rank no chunk. */
    int64_t error;
};

/* rank 0 -> worker. WORK: run chunk `chunk` (its inputs follow). STOP:
 * the map is over; the rest is its outcome. */
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
    int64_t stream_code; /* a stream's own end: MH_ESOURCE, MH_ESINK, ... */
};

/* worker -> rank 0: what chunk `chunk` gave; `payload` bytes follow. */
struct mpi_result {
    uint64_t chunk;
    int64_t code; /* MH_EINVAL (task differs), MH_ENOMEM, or 0 */
    uint64_t ok;
    struct mh__failure fail; /* its lowest; count: all of the chunk's */
    uint64_t payload; /* bytes of payload (payload.c) */
    uint64_t codec_failed; /* the codec could not carry an item of it */
};

/* One pool: its own communicator, never MPI_COMM_WORLD itself. */
struct mpi_pool {
    MPI_Comm comm;       /* our duplicate of MPI_COMM_WORLD */
    MPI_Datatype block;  /* MPI_BLOCK contiguous bytes */
    int rank, size;
    uint64_t maps;       /* maps and streams begun on this pool (the same
                          * on every rank) */
    const struct mh_config *config; /* the pool's: its hooks */
    void *worker_state;  /* what this rank's init stored (worker = rank) */
};

/* ------------------------------------------------------------ runtime.c */

/* The MH_E* code for an MPI call's return: MH_OK for MPI_SUCCESS,
 * MH_ENOMEM for MPI's out-of-memory class, else MH_EMPI. */
int mh__mpi_code(int mpi_err);

/* Start MPI for a pool unless the caller has (then it is finalised at
 * exit), and check this thread may call it. 0, MH_EMPI (MPI cannot start,
 * or was finalised), MH_ENOTSUP (FUNNELED MPI, not the main thread) or
 * MH_ENOMEM (the exit hook could not be registered). */
int mh__mpi_runtime_start(void);

/* Around every MPI call of the library: below MPI_THREAD_MULTIPLE, calls
 * from several threads are serialised. */
void mh__mpi_serial_enter(void);
void mh__mpi_serial_leave(void);

/* Around a map: checks this thread may call MPI (0 or the code), counts
 * the map as running (the exit hook will not finalise under it) and
 * enters the serialised section; mh__mpi_map_end undoes both. */
int mh__mpi_map_begin(void);
void mh__mpi_map_end(void);

/* ---------------------------------------------------------- transport.c */

/* Open or close a pool's communicator and block type. close: only while
 * MPI is up (not after MPI_Finalize). */
int mh__mpi_pool_open(struct mpi_pool *mp);
void mh__mpi_pool_close(struct mpi_pool *mp);

/* A record (a struct, a few bytes) to or from one rank. */
int mh__mpi_send(const struct mpi_pool *mp, const void *rec, size_t len, int dest, int tag);
int mh__mpi_recv(const struct mpi_pool *mp, void *rec, size_t len, int src, int tag);

/* len bytes, as full blocks plus a remainder: at most two messages, each
 * with a count that fits an int. isend leaves both requests in req (NULL
 * ones for parts not sent). recv with buf NULL drops the bytes. */
int mh__mpi_isend_bytes(const struct mpi_pool *mp, const void *buf, size_t len, int dest,
                        int tag, MPI_Request req[2]);
int mh__mpi_send_bytes(const struct mpi_pool *mp, const void *buf, size_t len, int dest,
                       int tag);
int mh__mpi_recv_bytes(const struct mpi_pool *mp, void *buf, size_t len, int src, int tag);

/* The task's shape, as every control record carries it. */
struct mpi_shape mh__mpi_shape_of(const struct mh__run *run);

/* Whether a record's shape is mine: equal, but for its error and a
 * stream's n (which says where the chunk ends). */
bool mh__mpi_shape_same(const struct mpi_shape *mine, const struct mpi_shape *theirs);

/* ------------------------------------------------------------ payload.c */

/* A growing byte buffer. */
struct mpi_buf {
    unsigned char *p;
    size_t cap;
};

/* Make b hold at least need bytes, keeping its first `used`. 0 or
 * MH_ENOMEM (then b is as it was). */
int mh__mpi_buf_room(struct mpi_buf *b, size_t used, size_t need);

/* Write the payload of sub (a chunk run on this rank, its outputs at
 * sub->task->out) into b, releasing what each output owns with a codec:
 * *len its length. b must already hold n + n * out_size bytes. An item the
 * codec cannot carry fails alone (MH_ITEM_FAILED, MH_ECODEC). */
void mh__mpi_payload_encode(struct mpi_buf *b, struct mh__run *sub, size_t *len);

/* Merge a worker's result for one chunk, its payload p[0..len), into
 * task->out, run->status, the counters and the failure record. 0, or
 * MH_EMPI or MH_ECODEC (a payload that does not match the chunk), or
 * MH_ENOMEM. Items the decoder refuses fail alone. */
int mh__mpi_payload_merge(struct mh__run *run, const struct mpi_result *res,
                          const unsigned char *p, size_t len);

/* --------------------------------------------------- root.c, worker.c */

/* Rank 0's and the other ranks' side of one map. */
int mh__mpi_root_map(const struct mpi_pool *mp, struct mh__run *run);
int mh__mpi_worker_map(const struct mpi_pool *mp, struct mh__run *run);

/* Rank 0 listening for a worker's cancel of the map or stream in flight:
 * listen posts the receive; poll takes a cancel that came for this one
 * (run is then cancelled, mh__run_cancel, and ends MH_EINTR everywhere)
 * and drops one sent as an earlier part ended; wait waits for *pending
 * while polling (a cancel must not wait for the next result); end stops
 * listening before any worker can begin the next part (a cancel already
 * received still counts). 0, or the MPI error. */
struct mpi_listen {
    MPI_Request req; /* a worker's struct mpi_cancel, posted */
    struct mpi_cancel msg;
};
int mh__mpi_listen(const struct mpi_pool *mp, struct mpi_listen *l);
int mh__mpi_listen_poll(const struct mpi_pool *mp, struct mpi_listen *l, struct mh__run *run);
int mh__mpi_listen_wait(const struct mpi_pool *mp, struct mpi_listen *l, struct mh__run *run,
                        MPI_Request *pending, MPI_Status *st);
void mh__mpi_listen_end(const struct mpi_pool *mp, struct mpi_listen *l, struct mh__run *run);

/* Rank 0 ends a map or stream. shapes: every other rank's shape (sent as
 * its part began) against mine; *code, unless set, becomes that rank's
 * own error, or MH_EINVAL when the shape differs. stop: then, *code
 * becoming MH_EINTR when run was cancelled, to each rank one stop record
 * with *code, stream_code, run's counters and failure, and failed_out's
 * out_size bytes after it when not NULL. 0, or the MPI error. */
int mh__mpi_root_shapes(const struct mpi_pool *mp, const struct mpi_shape *mine, int *code);
int mh__mpi_root_stop(const struct mpi_pool *mp, const struct mh__run *run,
                      const struct mpi_shape *mine, int *code, int stream_code,
                      const void *failed_out);

/* Another rank's part of a map or stream: send rank 0 mine, then run the
 * chunks it sends (each of at most `items` items, with run's fn, task
 * and policy) until its stop record, whose outcome becomes run's; *end
 * gets that record. Returns its code, or an MPI error. */
int mh__mpi_worker_serve(const struct mpi_pool *mp, struct mh__run *run,
                         const struct mpi_shape *mine, size_t items, struct mpi_ctrl *end);

/* The backend's stream op, on every rank (stream.c). */
int mh__mpi_stream(const struct mpi_pool *mp, struct mh__stream *st);

#endif /* MH_MPI_INT_H */
