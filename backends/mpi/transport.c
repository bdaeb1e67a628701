/*
 * A pool's communicator, and messages on it: records (small structs, as
 * raw bytes) and byte arrays of any length, cut so that no count passed
 * to MPI (an int) overflows.
 */
#include <limits.h>
#include <string.h>

#include "mpi_int.h"

int mh__mpi_pool_open(struct mpi_pool *mp)
{
    mh__mpi_serial_enter();
    int rc = mh__mpi_code(MPI_Comm_dup(MPI_COMM_WORLD, &mp->comm));
    if (rc)
        goto out_leave;
    /* Errors on our communicator come back as codes (mh__mpi_code); the
     * library never ends the job itself (no MPI_Abort). */
    if ((rc = mh__mpi_code(MPI_Comm_set_errhandler(mp->comm, MPI_ERRORS_RETURN))) ||
        (rc = mh__mpi_code(MPI_Comm_rank(mp->comm, &mp->rank))) ||
        (rc = mh__mpi_code(MPI_Comm_size(mp->comm, &mp->size))) ||
        (rc = mh__mpi_code(MPI_Type_contiguous((int)MPI_BLOCK, MPI_BYTE, &mp->block))))
        goto out_comm;
    if ((rc = mh__mpi_code(MPI_Type_commit(&mp->block))))
        goto out_type;
    mh__mpi_serial_leave();
    return MH_OK;

out_type:
    MPI_Type_free(&mp->block);
out_comm:
    MPI_Comm_free(&mp->comm);
out_leave:
    mh__mpi_serial_leave();
    return rc;
}

void mh__mpi_pool_close(struct mpi_pool *mp)
{
    mh__mpi_serial_enter();
    MPI_Type_free(&mp->block);
    MPI_Comm_free(&mp->comm);
    mh__mpi_serial_leave();
}

int mh__mpi_send(const struct mpi_pool *mp, const void *rec, size_t len, int dest, int tag)
{
    return mh__mpi_code(MPI_Send(rec, (int)len, MPI_BYTE, dest, tag, mp->comm));
}

int mh__mpi_recv(const struct mpi_pool *mp, void *rec, size_t len, int src, int tag)
{
    return mh__mpi_code(MPI_Recv(rec, (int)len, MPI_BYTE, src, tag, mp->comm,
                                 MPI_STATUS_IGNORE));
}

int mh__mpi_isend_bytes(const struct mpi_pool *mp, const void *buf, size_t len, int dest,
                        int tag, MPI_Request req[2])
{
    const unsigned char *p = buf;
    size_t blocks = len / MPI_BLOCK, rest = len % MPI_BLOCK;
    int rc = MH_OK;
    req[0] = req[1] = MPI_REQUEST_NULL;
    if (blocks > INT_MAX)
        return MH_EOVERFLOW;
    if (blocks)
        rc = mh__mpi_code(MPI_Isend(p, (int)blocks, mp->block, dest, tag, mp->comm, &req[0]));
    if (!rc && rest)
        rc = mh__mpi_code(MPI_Isend(p + blocks * MPI_BLOCK, (int)rest, MPI_BYTE, dest, tag,
                                    mp->comm, &req[1]));
    return rc;
}

int mh__mpi_send_bytes(const struct mpi_pool *mp, const void *buf, size_t len, int dest,
                       int tag)
{
    MPI_Request req[2];
    int rc = mh__mpi_isend_bytes(mp, buf, len, dest, tag, req);
    int wait = mh__mpi_code(MPI_Waitall(2, req, MPI_STATUSES_IGNORE));
    return rc ? rc : wait;
}

int mh__mpi_recv_bytes(const struct mpi_pool *mp, void *buf, size_t len, int src, int tag)
{
    unsigned char *p = buf;
    size_t blocks = len / MPI_BLOCK, rest = len % MPI_BLOCK;
    int rc = MH_OK;
    if (blocks > INT_MAX)
        return MH_EOVERFLOW;
    if (!buf) {
        /* A zero-byte receive matches the message and truncates it: a
         * rank that could not allocate still takes its messages, so that
         * the sender's complete. */
        for (int part = 0; part < (blocks != 0) + (rest != 0); part++)
            MPI_Recv(NULL, 0, MPI_BYTE, src, tag, mp->comm, MPI_STATUS_IGNORE);
        return MH_OK;
    }
    if (blocks)
        rc = mh__mpi_code(MPI_Recv(p, (int)blocks, mp->block, src, tag, mp->comm,
                                   MPI_STATUS_IGNORE));
    if (!rc && rest)
        rc = mh__mpi_code(MPI_Recv(p + blocks * MPI_BLOCK, (int)rest, MPI_BYTE, src, tag,
                                   mp->comm, MPI_STATUS_IGNORE));
    return rc;
}

struct mpi_shape mh__mpi_shape_of(const struct mh__run *run)
{
    const struct mh_task *task = run->task;
    return (struct mpi_shape){
        .kind = MPI_SHAPE_MAP, .n = task->n, .in_size = task->in_size,
        .out_size = task->out_size, .chunk_items = run->chunk, .tail_width = run->tail_width,
        .has_codec = task->codec != NULL, .on_error = (uint64_t)run->on_error,
        .resume = task->resume != 0, .error = run->error,
    };
}

bool mh__mpi_shape_same(const struct mpi_shape *mine, const struct mpi_shape *theirs)
{
    struct mpi_shape t = *theirs;
    t.error = mine->error;
    if (mine->kind == MPI_SHAPE_STREAM && t.kind == MPI_SHAPE_STREAM)
        t.n = mine->n;
    return memcmp(mine, &t, sizeof t) == 0;
}
