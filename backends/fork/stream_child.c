/*
 * A stream child's whole life: claim chunks of the shared ring as its
 * slot number, run them into the ring, and mark them done; with a codec,
 * encode each result into records in its arena and end each chunk with
 * an end record, which the caller turns into DONE once it has decoded
 * the chunk. It exits when mh__ring_wait_work says there is nothing more.
 */
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "stream_fork.h"

/* A child's place in its arena, its private output (codec), the items
 * it may still run (worker_items_max) and what its end needs. */
struct fstream_out {
    int half;
    size_t used;
    unsigned char *item;
    size_t left;
    void *state;
    const struct mh__fork_stdio *stdio;
};

void fstream_fail_merge(struct mh__failure *into, const struct mh__failure *fail)
{
    if (fail->index == MH_NO_ITEM)
        return;
    size_t count = (into->index == MH_NO_ITEM ? 0 : into->count) +
                   (fail->count ? fail->count : 1);
    if (into->index == MH_NO_ITEM || fail->index < into->index)
        *into = *fail;
    into->count = count;
}

static _Noreturn void fstream_child_sys_failed(const struct fork_map *m, int s)
{
    atomic_store_explicit(&m->slots[s].sys_failed, 1, memory_order_release);
    _exit(FORK_EXIT_SYS);
}

/* Hand the current half to the caller, wake it, move to the other half
 * and wait until the caller has drained that one. */
static void fstream_child_publish(const struct fstream *fs, int s, struct fstream_out *o)
{
    struct fork_slot *slot = &fs->m.slots[s];
    struct mh__ring *ring = fs->ring;
    slot->len[o->half] = o->used;
    /* Release: the records and len are visible before the flag is. */
    atomic_store_explicit(&slot->ready[o->half], 1, memory_order_release);
    /* seq_cst, both (as mh__ring_done): either the caller, about to
     * sleep, sees the new done_seq in its futex wait, or we see its
     * caller_waits and wake it. */
    atomic_fetch_add(&ring->done_seq, 1);
    if (atomic_load(&ring->caller_waits))
        mh__futex_wake(&ring->done_seq, 1);
    o->half ^= 1;
    o->used = 0;
    if (atomic_load_explicit(&slot->ready[o->half], memory_order_acquire) == 0)
        return;
    /* The wait is not the item's time: its clock stops (busy says none). */
    size_t item = atomic_exchange_explicit(&slot->busy, MH_NO_ITEM, memory_order_release);
    uint64_t from = mh__now_ns();
    /* Acquire: pairs with the caller's release once it read the half. */
    while (atomic_load_explicit(&slot->ready[o->half], memory_order_acquire) != 0)
        mh__futex_wait(&slot->ready[o->half], 1, FSTREAM_SLICE_NS);
    atomic_fetch_add_explicit(&slot->started_ns, mh__now_ns() - from, memory_order_relaxed);
    atomic_store_explicit(&slot->busy, item, memory_order_release);
}

/* Copy size bytes at buf into the arena as the payload of record index,
 * through as many halves as it takes. */
static void fstream_child_copy(const struct fstream *fs, int s, struct fstream_out *o,
                               size_t index, const unsigned char *buf, size_t size)
{
    mh__record_put(fork_half(&fs->m, s, o->half) + o->used, index, size);
    o->used += MH__RECORD_HEADER;
    for (size_t sent = 0; sent < size;) {
        size_t take = FORK_HALF - o->used;
        if (take > size - sent)
            take = size - sent;
        memcpy(fork_half(&fs->m, s, o->half) + o->used, buf + sent, take);
        o->used += take;
        sent += take;
        if (o->used == FORK_HALF)
            fstream_child_publish(fs, s, o);
    }
}

/* Record index: the encoding of item (NULL: an empty end record). 0 or
 * non-zero (the codec failed). */
static int fstream_child_put(const struct fstream *fs, int s, struct fstream_out *o,
                             size_t index, const void *item)
{
    const struct mh_codec *codec = fs->m.codec;
    void *ctx = fs->m.task->ctx;
    size_t size = item ? codec->size(item, ctx) : 0;
    if (size > SIZE_MAX - MH__RECORD_HEADER)
        return 1;
    size_t need = MH__RECORD_HEADER + size;
    if (o->used > 0 && o->used + need > FORK_HALF)
        fstream_child_publish(fs, s, o);
    if (need <= FORK_HALF) {
        unsigned char *at = fork_half(&fs->m, s, o->half) + o->used;
        if (size && codec->encode(item, at + MH__RECORD_HEADER, size, ctx))
            return 1;
        mh__record_put(at, index, size);
        o->used += need;
        return 0;
    }
    unsigned char *buf = mh__malloc(size); /* larger than a half: aside */
    int bad = !buf || codec->encode(item, buf, size, ctx);
    if (!bad)
        fstream_child_copy(fs, s, o, index, buf, size);
    mh__free(buf);
    return bad;
}

/* Item k of chunk c ran OK into o->item: encode it, clear it. */
static void fstream_child_encode(const struct fstream *fs, int s, struct fstream_out *o,
                                 size_t c, size_t k, struct mh__failure *fail)
{
    struct mh__ring *ring = fs->ring;
    struct mh__ring_chunk *ch = mh__ring_slot(ring, c);
    int bad = fstream_child_put(fs, s, o, c * (ring->chunk + 1) + k, o->item);
    fs->m.codec->clear(o->item, fs->m.task->ctx);
    if (!bad)
        return;
    ring->status[mh__ring_item(ring, c) + k] = MH_ITEM_FAILED;
    *fail = mh__failure_callback(ch->seq + k, MH_ECODEC);
    atomic_store_explicit(&fs->m.sh->codec_failed, 1, memory_order_relaxed);
}

/* The child's end: what it encoded handed over, its fini hook, its
 * stdio; recycled: it ran worker_items_max items (a planned end, which
 * the caller replaces, not a death it blames). */
static _Noreturn void fstream_child_end(const struct fstream *fs, int s, struct fstream_out *o,
                                        bool recycled)
{
    const struct fork_map *m = &fs->m;
    if (o->item && o->used > 0)
        fstream_child_publish(fs, s, o);
    mh__free(o->item);
    fork_child_hooks_fini(m->state->config, s, o->state);
    mh__fork_stdio_child_end(o->stdio);
    if (recycled)
        atomic_store_explicit(&m->slots[s].recycled, 1, memory_order_release);
    atomic_store_explicit(&m->slots[s].finished, 1, memory_order_release);
    _exit(0);
}

/* Run what chunk c has left, one item at a time, publishing each (busy)
 * and skipping what is settled (a replaced child's chunk, whose records
 * that never reached the caller left items NOT_RUN before `begin`'s). */
static void fstream_child_items(const struct fstream *fs, int s, struct fstream_out *o,
                                size_t c)
{
    struct mh__ring *ring = fs->ring;
    struct mh__ring_chunk *ch = mh__ring_slot(ring, c);
    struct fork_slot *slot = &fs->m.slots[s];
    const struct mh__run *run = fs->m.run;
    size_t base = mh__ring_item(ring, c);
    for (size_t k = ch->begin; k < ch->count; k++) {
        /* Relaxed: "stop soon", guards no data. */
        if (atomic_load_explicit(&ring->stop, memory_order_relaxed))
            break;
        size_t at = base + k;
        if (ring->status[at] != MH_ITEM_NOT_RUN)
            continue;
        if (run->timeout_s > 0)
            atomic_store_explicit(&slot->started_ns, mh__now_ns(), memory_order_relaxed);
        /* Release: the caller pairs it with the start it reads after. */
        atomic_store_explicit(&slot->busy, ch->seq + k, memory_order_release);
        uint8_t mine = MH_ITEM_NOT_RUN;
        if (o->item)
            memset(o->item, 0, ring->out_size); /* as a fresh output array */
        void *out = o->item ? (void *)o->item : ring->out + at * ring->out_size;
        struct mh__failure fail;
        size_t ok = mh__run_items(run, ring->in + at * ring->in_size, out,
                                  o->item ? &mine : &ring->status[at], 1, ch->seq + k,
                                  &ring->stop, &fail);
        if (o->item && ok)
            fstream_child_encode(fs, s, o, c, k, &fail);
        else if (o->item && mine == MH_ITEM_FAILED)
            ring->status[at] = MH_ITEM_FAILED;
        fstream_fail_merge(&ch->fail, &fail);
        if (fail.index != MH_NO_ITEM) /* relaxed: the pump only stops pulling sooner */
            atomic_store_explicit(&ring->failed, 1, memory_order_relaxed);
        atomic_store_explicit(&slot->busy, MH_NO_ITEM, memory_order_release);
        if (--o->left == 0 && k + 1 < ch->count)
            fstream_child_end(fs, s, o, true); /* the caller hands on the rest */
    }
}

static void fstream_child_chunk(const struct fstream *fs, int s, struct fstream_out *o,
                                size_t c)
{
    struct mh__ring *ring = fs->ring;
    if (fs->one_item)
        fstream_child_items(fs, s, o, c);
    else
        mh__ring_run(fs->m.run, ring, c);
    if (!o->item) {
        mh__ring_done(ring, c);
        return;
    }
    if (fstream_child_put(fs, s, o, c * (ring->chunk + 1) + mh__ring_slot(ring, c)->count,
                          NULL))
        fstream_child_sys_failed(&fs->m, s); /* an empty record cannot fail */
    fstream_child_publish(fs, s, o);
}

void fstream_child(const struct fork_map *m, int s, const struct mh__fork_stdio *stdio)
{
    const struct fstream *fs = (const struct fstream *)m; /* m is its first member */
    /* Die with the caller; and if it already died, do not start. */
    if (mh__prctl(PR_SET_PDEATHSIG, SIGKILL))
        fstream_child_sys_failed(m, s);
    if (getppid() != m->parent)
        _exit(FORK_EXIT_ORPHAN);
    mh__fork_stdio_child_start(stdio);
    /* Our copy of the run: mh_cancelled() in fn reads the shared flag
     * the caller sets when the stream is cancelled. */
    m->run->cancel_flag = &m->sh->cancelled;
    const struct mh_config *config = m->state->config;
    void *state;
    int rc = fork_child_hooks_init(config, s, &state); /* the memory cap too */
    if (rc == MH_ESYS)
        fstream_child_sys_failed(m, s);
    if (rc) {
        atomic_store_explicit(&m->slots[s].init_failed, 1, memory_order_release);
        mh__fork_stdio_child_end(stdio);
        _exit(FORK_EXIT_INIT);
    }
    atomic_store_explicit(&m->slots[s].inited, 1, memory_order_release);
    /* Acquire: pairs with the caller's release once it watches us. */
    while (atomic_load_explicit(&fs->gates[s], memory_order_acquire) == 0)
        mh__futex_wait(&fs->gates[s], 0, FSTREAM_SLICE_NS);
    struct fstream_out o = {
        .left = config->worker_items_max ? config->worker_items_max : SIZE_MAX,
        .state = state, .stdio = stdio,
    };
    if (m->codec && !(o.item = mh__calloc(1, fs->ring->out_size)))
        fstream_child_sys_failed(m, s);

    mh__worker_enter(s, state); /* for the rest of this process */
    struct mh__ring *ring = fs->ring;
    size_t c = fs->kids[s].redo;
    if (c != MH_NO_ITEM)
        fstream_child_chunk(fs, s, &o, c);
    do {
        while (o.left > 0 && mh__ring_claim(ring, (unsigned)s, &c))
            fstream_child_chunk(fs, s, &o, c);
    } while (o.left > 0 && mh__ring_wait_work(ring));
    fstream_child_end(fs, s, &o, o.left == 0);
}
