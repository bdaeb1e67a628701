/*
 * A chunk's result payload, as a worker rank sends it to rank 0: one
 * status byte per item of the chunk, then
 *   - without a codec, every output's bytes (a failed item's too: a
 *     reduce partial says where in its chunk the failure was);
 *   - with a codec, a result record (records.h, the format fork uses)
 *     for each item that succeeded, its index counted from the chunk's
 *     first item, encoded on the rank that ran it.
 * Rank 0 trusts a payload only as far as it checks: the length, the
 * statuses and the record stream (indices in range, increasing, one
 * record per successful item).
 */
#include <string.h>

#include "mpi_int.h"
#include "records.h"

int mh__mpi_buf_room(struct mpi_buf *b, size_t used, size_t need)
{
    if (need <= b->cap)
        return MH_OK;
    size_t want = need / 2 < b->cap ? b->cap * 2 : need;
    unsigned char *bigger = mh__malloc(want);
    if (!bigger && want > need)
        bigger = mh__malloc(want = need);
    if (!bigger)
        return MH_ENOMEM;
    if (used)
        memcpy(bigger, b->p, used);
    mh__free(b->p);
    b->p = bigger;
    b->cap = want;
    return MH_OK;
}

/* Append item i's record at b->p + *used; non-zero when the codec cannot
 * carry it (encode fails, or size() asks for more than can be allocated).
 * The item's output is released either way. */
static int mpi_payload_put(struct mpi_buf *b, size_t *used, const struct mh_task *task,
                           size_t i)
{
    void *item = (unsigned char *)task->out + i * task->out_size;
    size_t size = task->codec->size(item, task->ctx), end;
    int bad = __builtin_add_overflow(*used, (size_t)MH__RECORD_HEADER, &end) ||
              __builtin_add_overflow(end, size, &end) || mh__mpi_buf_room(b, *used, end) ||
              task->codec->encode(item, b->p + *used + MH__RECORD_HEADER, size, task->ctx);
    task->codec->clear(item, task->ctx);
    if (bad)
        return 1;
    mh__record_put(b->p + *used, i, size);
    *used = end;
    return 0;
}

void mh__mpi_payload_encode(struct mpi_buf *b, struct mh__run *sub, size_t *len)
{
    const struct mh_task *task = sub->task;
    size_t n = task->n, used = n; /* the statuses, written last */
    if (!task->codec) {
        memcpy(b->p + n, task->out, n * task->out_size);
        used += n * task->out_size;
    }
    for (size_t i = 0; task->codec && i < n; i++) {
        if (sub->status[i] == MH_ITEM_OK && mpi_payload_put(b, &used, task, i)) {
            atomic_fetch_sub_explicit(&sub->items_done, 1, memory_order_relaxed);
            mh__run_codec_fail(sub, i); /* fails alone, as on fork */
        }
    }
    memcpy(b->p, sub->status, n);
    *len = used;
}

/* Rank 0's view of one payload being merged. */
struct mpi_merge {
    struct mh__run *run;
    size_t begin;          /* the chunk's first item */
    const uint8_t *status; /* the chunk's statuses, as sent */
    size_t records;        /* records taken */
    size_t ok;             /* items now MH_ITEM_OK on rank 0 */
};

/* Decode one record into task->out (mh__record_emit). */
static int mpi_payload_emit(size_t index, const void *rec, size_t len, void *vm)
{
    struct mpi_merge *m = vm;
    struct mh__run *run = m->run;
    const struct mh_task *task = run->task;
    size_t i = m->begin + index;
    if (m->status[index] != MH_ITEM_OK)
        return MH_ECODEC; /* a record for an item that did not succeed */
    m->records++;
    if (task->codec->decode((unsigned char *)task->out + i * task->out_size, rec, len,
                            task->ctx)) {
        mh__run_codec_fail(run, i); /* fails alone, as on fork */
        return MH_OK;
    }
    if (run->status)
        run->status[i] = MH_ITEM_OK;
    m->ok++;
    return MH_OK;
}

/* Take the codec's records after count statuses; MH_ECODEC when they are
 * not one well-formed record per successful item. */
static int mpi_payload_records(struct mpi_merge *m, size_t count, const unsigned char *p,
                               size_t len)
{
    size_t want = 0;
    for (size_t i = 0; i < count; i++)
        want += m->status[i] == MH_ITEM_OK;
    struct mh__record_stream stream = {0};
    mh__record_stream_reset(&stream, count);
    int rc = mh__record_stream_feed(&stream, p + count, len - count, mpi_payload_emit, m);
    if (rc == MH_ERANGE || (!rc && (stream.partial || m->records != want)))
        rc = MH_ECODEC; /* corrupt: the items not reached stay NOT_RUN */
    mh__record_stream_reset(&stream, 0);
    return rc;
}

int mh__mpi_payload_merge(struct mh__run *run, const struct mpi_result *res,
                          const unsigned char *p, size_t len)
{
    const struct mh_task *task = run->task;
    if (res->chunk >= run->nchunks)
        return MH_EMPI;
    size_t begin, end;
    mh__chunk_bounds(run, res->chunk, &begin, &end);
    size_t count = end - begin;
    if (len < count || (!task->codec && len != count + count * task->out_size))
        return MH_EMPI;
    struct mpi_merge m = {.run = run, .begin = begin, .status = p};
    unsigned char *out = (unsigned char *)task->out + begin * task->out_size;
    for (size_t i = 0; i < count; i++) {
        uint8_t st = m.status[i];
        if (st == MH_ITEM_NOT_RUN || (task->codec && st == MH_ITEM_OK))
            continue; /* a record brings it */
        if (!task->codec)
            memcpy(out + i * task->out_size, p + count + i * task->out_size, task->out_size);
        if (run->status)
            run->status[begin + i] = st;
        m.ok += st == MH_ITEM_OK;
    }
    int rc = task->codec ? mpi_payload_records(&m, count, p, len) : MH_OK;
    atomic_fetch_add_explicit(&run->items_done, m.ok, memory_order_relaxed);
    if (res->codec_failed)
        atomic_store_explicit(&run->codec_failed, 1, memory_order_relaxed);
    mh__run_fail(run, &res->fail); /* nothing when none failed */
    return rc;
}
