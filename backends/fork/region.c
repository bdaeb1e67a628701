/*
 * The shared region of one map: counters, one slot per child, n statuses,
 * then n fixed-size outputs (no codec) or two arena halves per child
 * (codec); and what the status array says about an item.

 */
#include <sys/mman.h>

#include "fork.h"

static size_t fork_round64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

/* Lay out and map the shared region. 0 or MH_ENOMEM. */
int fork_region_map(struct fork_map *m)
{
    const struct mh_task *task = m->task;
    size_t W = (size_t)m->nworkers, n = task->n, out_bytes = 0, arena_bytes = 0;
    size_t off_slots = fork_round64(sizeof(struct fork_shared));
    size_t off_status = off_slots + W * sizeof(struct fork_slot);
    size_t off_out = off_status + fork_round64(n);
    if (!m->codec && __builtin_mul_overflow(n, task->out_size, &out_bytes))
        return MH_ENOMEM;
    if (m->codec && __builtin_mul_overflow(W, 2 * FORK_HALF, &arena_bytes))
        return MH_ENOMEM;
    size_t off_arena, total;
    if (__builtin_add_overflow(off_out, fork_round64(out_bytes), &off_arena) ||
        __builtin_add_overflow(off_arena, arena_bytes, &total))
        return MH_ENOMEM;
    void *region = mh__mmap(NULL, total, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED)
        return MH_ENOMEM;
    unsigned char *base = region;
    m->region = region;
    m->region_size = total;
    m->sh = region;
    m->slots = (struct fork_slot *)(base + off_slots);
    m->sstatus = base + off_status;
    m->sout = m->codec ? NULL : base + off_out;
    m->arenas = m->codec ? base + off_arena : NULL;
    atomic_init(&m->sh->next, 0);
    atomic_init(&m->sh->stop, 0);
    atomic_init(&m->sh->codec_failed, 0);
    return MH_OK;
}

void fork_region_unmap(struct fork_map *m)
{
    mh__munmap(m->region, m->region_size);
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
    for (size_t i = lo; i < hi && i < m->task->n; i++)
        if (!fork_item_settled(m, i))
            return i;
    return MH_NO_ITEM;
}
