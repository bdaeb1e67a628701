/*
 * Results into task->out: codec records decoded as each child's arena
 * halves are announced on the doorbell pipe, and at the end of the map
 * the fixed-size outputs and statuses copied out of the shared region.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "fork.h"

/* Decode one record into task->out. */
static int fork_emit(size_t index, const void *payload, size_t len, void *vm)
{
    struct fork_map *m = vm;
    if (m->pstatus[index] != MH_ITEM_NOT_RUN)
        return MH_ERANGE; /* delivered twice: a corrupt stream */
    void *item = (unsigned char *)m->task->out + index * m->task->out_size;
    if (m->codec->decode(item, payload, len, m->task->ctx)) {
        struct mh__failure fail = fork_codec_failed(m, index);
        mh__run_fail(m->run, &fail);
        return MH_OK;
    }
    m->pstatus[index] = MH_ITEM_OK;
    m->delivered++;
    return MH_OK;
}

/* Decode the half a doorbell announces, and hand it back. */
static void fork_take_half(struct fork_map *m, uint32_t s, uint32_t half)
{
    struct fork_slot *slot = &m->slots[s];
    struct fork_worker *w = &m->workers[s];
    /* Acquire: pairs with the child's release, so the half's bytes and
     * len are complete before we read them. */
    if (atomic_load_explicit(&slot->ready[half], memory_order_acquire) != 1)
        return;
    size_t len = slot->len[half];
    int rc = len <= FORK_HALF ? mh__record_stream_feed(&w->stream, fork_half(m, (int)s, (int)half),
                                                     len, fork_emit, m)
                              : MH_ERANGE;
    if (rc) {
        fork_set_rc(m, rc == MH_ENOMEM ? MH_ENOMEM : MH_ECODEC);
        fork_kill_stream(m, w);
        return;
    }
    /* Release: our reads of the half happen before its reuse. */
    atomic_store_explicit(&slot->ready[half], 0, memory_order_release);
    mh__futex_wake(&slot->ready[half], 1);
}

/* Decode every half the doorbell pipe announces. */
void fork_drain_bells(struct fork_map *m)
{
    if (!m->codec)
        return;
    uint32_t msgs[256];
    for (;;) {
        ssize_t got = mh__read(m->bell[0], msgs, sizeof msgs);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && errno != EAGAIN)
            fork_set_rc(m, MH_ESYS);
        if (got <= 0)
            return;
        for (size_t k = 0; k < (size_t)got / sizeof *msgs; k++) {
            uint32_t s = msgs[k] / 2, half = msgs[k] % 2;
            if (s < (uint32_t)m->nworkers && fork_live(&m->workers[s]))
                fork_take_half(m, s, half);
        }
    }
}

/* Items OK: kept, and decoded or done in the shared region. Exact once
 * the children have ended; below n while one with work runs. */
static size_t fork_done(const struct fork_map *m)
{
    if (m->codec)
        return m->run->kept + m->delivered;
    size_t done = m->run->kept;
    for (int s = 0; s < m->nworkers; s++)
        done += m->workers[s].retired_done +
                atomic_load_explicit(&m->slots[s].done, memory_order_relaxed);
    return done;
}

size_t fork_count_done(const struct fork_map *m)
{
    size_t done = fork_done(m);
    return done < m->task->n ? done : m->task->n;
}

bool fork_all_ok(const struct fork_map *m)
{
    return !m->codec && fork_done(m) == m->task->n;
}

/* The final statuses: with a codec the caller's, where an item the
 * children marked failed (its encode) was never delivered. */
static void fork_final_status(struct fork_map *m, size_t *ok, size_t *failed)
{
    size_t n = m->task->n;
    const uint8_t *st = m->sstatus;
    if (m->codec) {
        for (size_t i = 0; i < n; i++)
            if (m->pstatus[i] == MH_ITEM_NOT_RUN && m->sstatus[i] == MH_ITEM_FAILED)
                m->pstatus[i] = MH_ITEM_FAILED;
        st = m->pstatus;
    }
    size_t good = 0, not_failed = 0; /* not run, or cancelled */
    for (size_t i = 0; i < n; i++) {
        good += st[i] == MH_ITEM_OK;
        not_failed += st[i] == MH_ITEM_NOT_RUN || st[i] == MH_ITEM_CANCELLED;
    }
    *ok = good;
    *failed = n - good - not_failed;
}

/* Copy out the chunks children have run whole, in chunk order from the
 * last one copied, so that results leave the region while children run
 * rather than all at the end. The next look: soon after one that found
 * some, later after one that found none. */
void fork_copy_finished(struct fork_map *m)
{
    const struct mh__run *run = m->run;
    if (!m->chunk_done)
        return;
    size_t c = m->copied_chunks, from = m->copied, end = from, begin;
    /* Acquire: pairs with the child's release, so the chunk's outputs
     * and statuses are complete before we read them. */
    for (; c < run->nchunks && atomic_load_explicit(&m->chunk_done[c], memory_order_acquire); c++)
        mh__chunk_bounds(run, c, &begin, &end);
    if (end == from) {
        m->copy_wait = 2 * m->copy_wait < FORK_TICK_S ? 2 * m->copy_wait : FORK_TICK_S;
        return;
    }
    size_t size = m->task->out_size;
    memcpy((unsigned char *)m->task->out + from * size, m->sout + from * size,
           (end - from) * size);
    if (run->status)
        memcpy(run->status + from, m->sstatus + from, end - from);
    m->copied_chunks = c;
    m->copied = end;
    m->copy_wait = FORK_COPY_WAIT_S;
}

/* Copy what fork_copy_finished left of the results and statuses out of
 * the shared region; count them. */
void fork_collect(struct fork_map *m)
{
    const struct mh_task *task = m->task;
    struct mh__run *run = m->run;
    size_t n = task->n, ok = n, failed = 0, from = m->copied, size = task->out_size;
    bool all_ok = fork_all_ok(m); /* then no status needs reading */
    if (!all_ok)
        fork_final_status(m, &ok, &failed);
    if (!m->codec) {
        /* A failed item's bytes too: what fn wrote, as on the other
         * backends (mh_reduce reads where its chunk failed from them).
         * Resume: items kept OK (run->status still says so) are the
         * caller's, never copied over. */
        unsigned char *out = task->out;
        const uint8_t *kept = task->resume ? run->status : NULL;
        if (ok == n && !kept) {
            memcpy(out + from * size, m->sout + from * size, (n - from) * size);
        } else {
            for (size_t i = from; i < n; i++)
                if ((m->sstatus[i] == MH_ITEM_OK || m->sstatus[i] == MH_ITEM_FAILED) &&
                    !(kept && kept[i] == MH_ITEM_OK))
                    memcpy(out + i * size, m->sout + i * size, size);
        }
        if (run->status && all_ok)
            memset(run->status + from, MH_ITEM_OK, n - from);
        else if (run->status)
            memcpy(run->status + from, m->sstatus + from, n - from);
    }
    atomic_store_explicit(&run->items_done, ok, memory_order_relaxed);
    atomic_store_explicit(&run->items_failed, failed, memory_order_relaxed);
}
