/*
 * The shared region of one map: counters, one slot per child, n statuses,
 * a flag per chunk, then n fixed-size outputs (no codec) or two arena
 * halves per child (codec); what the status array says about an item;
 * and task->out's pages kept from the children. A region of
 * FORK_KEEP_BYTES or more is kept for the pool's next map
 * (docs/backends.md, fork): the caller clears its statuses and flags,
 * each child zeroes the outputs of the chunk it runs.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fork.h"

#define FORK_KEEP_BYTES ((size_t)1 << 20)

static size_t fork_round64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

/* Set m->region to the pool's kept region, or to a fresh mapping of size
 * bytes. 0, MH_ENOMEM (mmap failed) or MH_ESYS (the kept region that does
 * not fit could not be unmapped: the pool keeps it). */
static int fork_region_get(struct fork_map *m, size_t size)
{
    struct fork_state *st = m->state;
    m->reused = st->region && st->size >= size && st->size / 4 <= size;
    if (m->reused) {
        m->region = st->region;
        m->region_size = st->size;
        return MH_OK;
    }
    int rc = fork_region_fresh(m, size);
    if (rc == MH_OK && size >= FORK_KEEP_BYTES) {
        st->region = m->region;
        st->size = size;
    }
    return rc;
}

/* A fresh shared region of size bytes for m, the pool's kept one dropped
 * first (a pool keeps one at most): 0, MH_ESYS (the kept one would not
 * unmap) or MH_ENOMEM. */
int fork_region_fresh(struct fork_map *m, size_t size)
{
    if (fork_region_drop(m->state))
        return MH_ESYS;
    void *region = mh__mmap(NULL, size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED)
        return MH_ENOMEM;
    m->region = region;
    m->region_size = size;
    return MH_OK;
}

/* Whether the caller copies results out as chunks finish (collect.c):
 * fixed-size outputs, enough of them to be worth a wake-up, and no
 * resume (kept outputs are the caller's). */
static bool fork_copies_early(const struct fork_map *m, size_t out_bytes)
{
    return !m->codec && !m->task->resume && out_bytes >= FORK_KEEP_BYTES;
}

/* Lay out and map the shared region. 0 or MH_ENOMEM. */
int fork_region_map(struct fork_map *m)
{
    const struct mh_task *task = m->task;
    size_t W = (size_t)m->nworkers, n = task->n, out_bytes = 0, arena_bytes = 0;
    size_t off_slots = fork_round64(sizeof(struct fork_shared));
    size_t off_status = off_slots + W * sizeof(struct fork_slot);
    size_t nchunks = m->run->nchunks;
    size_t off_done = off_status + fork_round64(n);
    size_t off_out = off_done + fork_round64(nchunks);
    if (!m->codec && __builtin_mul_overflow(n, task->out_size, &out_bytes))
        return MH_ENOMEM;
    if (m->codec && __builtin_mul_overflow(W, 2 * FORK_HALF, &arena_bytes))
        return MH_ENOMEM;
    size_t off_arena, total;
    if (__builtin_add_overflow(off_out, fork_round64(out_bytes), &off_arena) ||
        __builtin_add_overflow(off_arena, arena_bytes, &total))
        return MH_ENOMEM;
    int rc = fork_region_get(m, total);
    if (rc)
        return rc;
    unsigned char *base = m->region;
    m->sh = m->region;
    m->slots = (struct fork_slot *)(base + off_slots);
    m->sstatus = base + off_status;
    m->chunk_done = fork_copies_early(m, out_bytes) ? (atomic_uchar *)(base + off_done) : NULL;
    m->sout = m->codec ? NULL : base + off_out;
    m->arenas = m->codec ? base + off_arena : NULL;
    atomic_init(&m->sh->next, 0);
    atomic_init(&m->sh->stop, 0);
    atomic_init(&m->sh->codec_failed, 0);
    atomic_init(&m->sh->cancelled, 0);
    atomic_init(&m->sh->init_left, 0);
    atomic_init(&m->sh->init_failed, 0);
    atomic_init(&m->sh->init_gate, 0);
    /* A reused region holds the last map's slots: fork_spawn adds what a
     * slot says was done to its worker's count before it resets it. */
    for (size_t s = 0; s < W; s++)
        fork_slot_reset(&m->slots[s]);
    if (m->reused) {
        memset(m->sstatus, MH_ITEM_NOT_RUN, n);
        memset(base + off_done, 0, nchunks);
    }
    m->copy_wait = FORK_COPY_WAIT_S;
    return MH_OK;
}

/* The end of a map: unmap its region unless the pool keeps it. One that
 * cannot be unmapped the pool keeps (it keeps none then: a map either
 * uses the kept region or drops it first), to reuse or unmap later. */
void fork_region_unmap(struct fork_map *m)
{
    struct fork_state *st = m->state;
    if (m->region == st->region || mh__munmap(m->region, m->region_size) == 0)
        return;
    st->region = m->region;
    st->size = m->region_size;
}

/* Unmap the pool's kept region, if any. 0, or -1 with the region still
 * kept. */
int fork_region_drop(struct fork_state *st)
{
    if (st->region && mh__munmap(st->region, st->size))
        return -1;
    st->region = NULL;
    st->size = 0;
    return 0;
}

/* Read one byte per page of [p, p + len): a read fault maps the pages
 * around it too (fault-around), a write fault on a shared mapping only
 * its own, so that reading first saves most of a child's page faults.
 * (MADV_POPULATE_WRITE, measured, costs more: it takes the same fault
 * path per page, plus a call per chunk.) */
static void fork_region_touch(const unsigned char *p, size_t len)
{
    for (size_t off = 0; off < len; off += 4096)
        (void)*(const volatile unsigned char *)(p + off);
}

/* In a child, before it runs items [lo, hi) without a codec: map their
 * statuses and outputs; a reused region's outputs are zeroed, as a fresh
 * one's are. */
void fork_region_clear_out(const struct fork_map *m, size_t lo, size_t hi)
{
    size_t size = m->task->out_size;
    fork_region_touch(m->sstatus + lo, hi - lo);
    fork_region_touch(m->sout + lo * size, (hi - lo) * size);
    if (m->reused)
        memset(m->sout + lo * size, 0, (hi - lo) * size);
}

/*
 * Keep the whole pages of task->out out of every child this map forks
 * (MADV_DONTFORK): without a codec children write into the region, never
 * into task->out, so sharing those pages would only cost fork a
 * page-table copy and the caller a copy-on-write fault per page when it
 * copies results out. Not with a codec (a child builds each result in its
 * copy of task->out before encoding it), nor when the inputs overlap the
 * outputs (children read them). Until fork_out_release, a fork()
 * elsewhere in the caller's process does not see those pages either
 * (docs/backends.md, fork). Best effort: where madvise fails, the map
 * goes on as before.
 */
void fork_out_keep(struct fork_map *m)
{
    const struct mh_task *task = m->task;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), len = task->n * task->out_size;
    uintptr_t out = (uintptr_t)task->out, in = (uintptr_t)task->in;
    if (m->codec || (in < out + len && out < in + task->n * task->in_size))
        return;
    uintptr_t lo = (out + page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t hi = (out + len) & ~(uintptr_t)(page - 1);
    if (hi > lo && mh__madvise((void *)lo, hi - lo, MADV_DONTFORK) == 0) {
        m->out_kept = (void *)lo;
        m->out_kept_len = hi - lo;
    }
}

/* Give the pages fork_out_keep kept back to every later fork. It cannot
 * fail on the range that was advised (no split is needed), so a failure
 * is not reported. */
void fork_out_release(struct fork_map *m)
{
    if (m->out_kept)
        (void)mh__madvise(m->out_kept, m->out_kept_len, MADV_DOFORK);
    m->out_kept = NULL;
}

/* Clear a slot for a fresh child (relaxed: the fork orders them). */
void fork_slot_reset(struct fork_slot *slot)
{
    atomic_store_explicit(&slot->busy, MH_NO_ITEM, memory_order_relaxed);
    atomic_store_explicit(&slot->lo, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->hi, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->done, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->finished, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->sys_failed, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->has_fail, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->inited, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->init_failed, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->recycled, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->ready[0], 0, memory_order_relaxed);
    atomic_store_explicit(&slot->ready[1], 0, memory_order_relaxed);
}

unsigned char *fork_half(const struct fork_map *m, int s, int half)
{
    return m->arenas + ((size_t)s * 2 + (size_t)half) * FORK_HALF;
}

/* Whether item i needs no (re)run: finished in a way the caller keeps. */
bool fork_item_settled(const struct fork_map *m, size_t i)
{
    if (m->codec)
        return m->pstatus[i] != MH_ITEM_NOT_RUN || m->sstatus[i] == MH_ITEM_FAILED;
    return m->sstatus[i] != MH_ITEM_NOT_RUN;
}

/* The first item in [lo, hi) that is not settled, or MH_NO_ITEM. */
size_t fork_first_open(const struct fork_map *m, size_t lo, size_t hi)
{
    if (hi > m->task->n)
        hi = m->task->n;
    if (!m->codec && lo < hi) { /* settled: not NOT_RUN (0) */
        const uint8_t *at = memchr(m->sstatus + lo, MH_ITEM_NOT_RUN, hi - lo);
        return at ? (size_t)(at - m->sstatus) : MH_NO_ITEM;
    }
    for (size_t i = lo; i < hi; i++)
        if (!fork_item_settled(m, i))
            return i;
    return MH_NO_ITEM;
}
