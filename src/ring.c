/*
 * A stream's ring (backends/stream.h): its shared mapping, the workers'
 * claim, run and done, and the two waits. The pump that fills and drains
 * it is src/pump.c.
 */
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

/* How long a waiter spins before it sleeps, and the longest sleep: a
 * wake-up lost to a failed futex call costs at most this. */
#define RING_SPIN_NS 20000
#define RING_SLEEP_NS 10000000

static size_t ring_align(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

int mh__ring_open(struct mh__ring **out, size_t chunk, size_t slots, size_t in_size,
                  size_t out_size)
{
    *out = NULL;
    size_t items, in_bytes, out_bytes, size;
    if (__builtin_mul_overflow(chunk, slots, &items) ||
        __builtin_mul_overflow(items, in_size, &in_bytes) ||
        __builtin_mul_overflow(items, out_size, &out_bytes) ||
        __builtin_add_overflow(in_bytes, out_bytes, &size) ||
        __builtin_add_overflow(size, items, &size) ||
        __builtin_add_overflow(size, slots * sizeof(struct mh__ring_chunk) + 5 * 64, &size))
        return MH_EOVERFLOW;
    size += ring_align(sizeof(struct mh__ring));
    /* MAP_SHARED: a child forked after this sees the same pages. Fresh
     * anonymous pages are zero: every slot FREE, every status NOT_RUN. */
    void *base = mh__mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return MH_ENOMEM;
    struct mh__ring *ring = base;
    unsigned char *at = (unsigned char *)base + ring_align(sizeof *ring);
    ring->chunk = chunk;
    ring->slots = slots;
    ring->in_size = in_size;
    ring->out_size = out_size;
    ring->map_size = size;
    ring->chunks = (struct mh__ring_chunk *)at;
    at += ring_align(slots * sizeof(struct mh__ring_chunk));
    ring->status = at;
    at += ring_align(items);
    ring->in = at;
    at += ring_align(in_bytes);
    ring->out = at;
    *out = ring;
    return MH_OK;
}

int mh__ring_close(struct mh__ring *ring)
{
    return ring ? mh__munmap(ring, ring->map_size) : 0;
}

/* Raise the claim hint to at least c (it only grows). */
static void ring_hint_raise(struct mh__ring *ring, size_t c)
{
    size_t hint = atomic_load_explicit(&ring->claim_hint, memory_order_relaxed);
    while (hint < c && !atomic_compare_exchange_weak_explicit(
                           &ring->claim_hint, &hint, c, memory_order_relaxed,
                           memory_order_relaxed))
        ;
}

bool mh__ring_claim(struct mh__ring *ring, unsigned owner, size_t *c)
{
    /* Acquire: pairs with the pump's release of published, so the slots
     * below it are seen with their inputs, seq, count and QUEUED state. */
    size_t published = atomic_load_explicit(&ring->published, memory_order_acquire);
    size_t next = atomic_load_explicit(&ring->claim_hint, memory_order_relaxed);
    for (; next < published; next++) {
        uint64_t queued = mh__chunk_state(next, 0, MH__CHUNK_QUEUED);
        /* The claim and its owner in one step: a worker that dies after
         * it is known to hold the chunk. acq_rel: acquire the slot's
         * fields; release is for whoever reads the owner. */
        if (atomic_compare_exchange_strong_explicit(
                &mh__ring_slot(ring, next)->state, &queued,
                mh__chunk_state(next, owner, MH__CHUNK_RUNNING), memory_order_acq_rel,
                memory_order_relaxed)) {
            ring_hint_raise(ring, next + 1);
            *c = next;
            return true;
        }
    }
    ring_hint_raise(ring, published);
    return false;
}

static inline void ring_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Whether a worker has anything to wait for: false when stopped, or closed
 * with every published chunk claimed. *work: a chunk may be claimable. */
static bool ring_worth_waiting(struct mh__ring *ring, bool *work)
{
    *work = false;
    if (atomic_load_explicit(&ring->stop, memory_order_relaxed))
        return false;
    /* Acquire closed before reading published: once closed, published is
     * final. */
    bool closed = atomic_load_explicit(&ring->closed, memory_order_acquire);
    size_t published = atomic_load_explicit(&ring->published, memory_order_acquire);
    *work = atomic_load_explicit(&ring->claim_hint, memory_order_relaxed) < published;
    return *work || !closed;
}

bool mh__ring_wait_work(struct mh__ring *ring)
{
    uint64_t start = mh__now_ns();
    for (unsigned spins = 0;; spins++) {
        uint32_t seen = atomic_load_explicit(&ring->work_seq, memory_order_acquire);
        bool work;
        if (!ring_worth_waiting(ring, &work))
            return false;
        if (work)
            return true;
        if ((spins & 63) != 63 || mh__now_ns() - start < RING_SPIN_NS) {
            ring_cpu_relax();
            continue;
        }
        /* seq_cst with the pump's bump of work_seq and read of hungry:
         * either it sees us hungry and wakes us, or we see its bump. */
        atomic_fetch_add(&ring->hungry, 1);
        if (atomic_load(&ring->work_seq) == seen)
            mh__futex_wait(&ring->work_seq, seen, RING_SLEEP_NS);
        atomic_fetch_sub(&ring->hungry, 1);
    }
}

size_t mh__ring_run(const struct mh__run *run, struct mh__ring *ring, size_t c)
{
    struct mh__ring_chunk *slot = mh__ring_slot(ring, c);
    size_t at = mh__ring_item(ring, c) + slot->begin;
    struct mh__failure fail;
    /* The stream's run says MH_CONTINUE (the pump applies MH_STOP), so
     * this loop stops only for ring->stop. */
    size_t ok = mh__run_items(run, ring->in + at * ring->in_size,
                              ring->out + at * ring->out_size, ring->status + at,
                              slot->count - slot->begin, slot->seq + slot->begin,
                              &ring->stop, &fail);
    if (fail.index != MH_NO_ITEM) {
        size_t earlier = slot->fail.index == MH_NO_ITEM ? 0 : slot->fail.count;
        if (slot->fail.index == MH_NO_ITEM || fail.index < slot->fail.index)
            slot->fail = fail;
        slot->fail.count = earlier + fail.count;
        /* Relaxed: the pump only stops pulling sooner. */
        atomic_store_explicit(&ring->failed, 1, memory_order_relaxed);
    }
    return ok;
}

void mh__ring_done(struct mh__ring *ring, size_t c)
{
    struct mh__ring_chunk *slot = mh__ring_slot(ring, c);
    uint64_t state = atomic_load_explicit(&slot->state, memory_order_relaxed);
    /* Release: the chunk's outputs, statuses and fail before DONE. */
    atomic_store_explicit(&slot->state,
                          mh__chunk_state(c, mh__chunk_owner(state), MH__CHUNK_DONE),
                          memory_order_release);
    /* seq_cst with the caller's caller_waits store and done_seq check. */
    atomic_fetch_add(&ring->done_seq, 1);
    if (atomic_load(&ring->caller_waits))
        mh__futex_wake(&ring->done_seq, 1);
}

uint32_t mh__ring_wait_done(struct mh__ring *ring, uint32_t seen, uint64_t timeout_ns)
{
    uint64_t start = mh__now_ns();
    for (unsigned spins = 0;; spins++) {
        uint32_t now = atomic_load_explicit(&ring->done_seq, memory_order_acquire);
        if (now != seen)
            return now;
        if ((spins & 63) != 63) {
            ring_cpu_relax();
            continue;
        }
        uint64_t spent = mh__now_ns() - start;
        if (spent >= timeout_ns)
            return now;
        if (spent < RING_SPIN_NS)
            continue;
        uint64_t left = timeout_ns - spent;
        /* seq_cst with mh__ring_done's bump and read of caller_waits. */
        atomic_store(&ring->caller_waits, 1);
        if (atomic_load(&ring->done_seq) == seen)
            mh__futex_wait(&ring->done_seq, seen, left < RING_SLEEP_NS ? left : RING_SLEEP_NS);
        atomic_store(&ring->caller_waits, 0);
    }
}

bool mh__ring_busy(const struct mh__ring *ring)
{
    size_t published = atomic_load_explicit(&ring->published, memory_order_acquire);
    size_t from = published > ring->slots ? published - ring->slots : 0;
    for (size_t c = from; c < published; c++) {
        uint64_t state = atomic_load_explicit(&mh__ring_slot(ring, c)->state,
                                              memory_order_acquire);
        if (mh__chunk_of(state) == c && mh__chunk_phase(state) == MH__CHUNK_RUNNING)
            return true;
    }
    return false;
}
