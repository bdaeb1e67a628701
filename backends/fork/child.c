/*
 * A child's whole life: its memory cap and init hook; claim chunks and
 * run each through the core's item loop; with a codec, encode every
 * result into records in its two-half arena and hand each full half to
 * the caller (a release store, a doorbell, then a futex wait until the
 * caller gives it back); after worker_items_max items, end cleanly to be
 * replaced; its fini hook.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "fork.h"

/* A child's place in its arena, and its item budget. */
struct fork_out {
    int half;
    size_t used;
    size_t left; /* items it may still run (worker_items_max), or SIZE_MAX */
};

/* An OS call of this child failed: say so to the caller, and end. */
static _Noreturn void fork_child_sys_failed(const struct fork_map *m, int s)
{
    atomic_store_explicit(&m->slots[s].sys_failed, 1, memory_order_release);
    _exit(FORK_EXIT_SYS);
}

static void fork_child_wait_free(struct fork_slot *slot, int half)
{
    /* Acquire: pairs with the caller's release after it read the half, so
     * our next writes cannot overtake its reads. */
    while (atomic_load_explicit(&slot->ready[half], memory_order_acquire) != 0)
        mh__futex_wait(&slot->ready[half], 1, 100000000u); /* loops: may end early */
}

/* Wait until the caller has drained half. The time is not the running
 * item's: its clock stops (busy says no item), so that a slow caller
 * never makes an item time out. */
static void fork_child_wait_caller(struct fork_slot *slot, int half)
{
    if (atomic_load_explicit(&slot->ready[half], memory_order_acquire) == 0)
        return;
    /* Release, as every store of busy: the caller reads started_ns only
     * after an acquire load of busy that shows an item. */
    size_t item = atomic_exchange_explicit(&slot->busy, MH_NO_ITEM, memory_order_release);
    uint64_t from = mh__now_ns();
    fork_child_wait_free(slot, half);
    atomic_fetch_add_explicit(&slot->started_ns, mh__now_ns() - from,
                              memory_order_relaxed);
    atomic_store_explicit(&slot->busy, item, memory_order_release);
}

/* Hand the current half to the caller and move to the other one. */
static void fork_child_publish(const struct fork_map *m, int s, struct fork_out *o)
{
    struct fork_slot *slot = &m->slots[s];
    slot->len[o->half] = o->used;
    /* Release: the records and len are visible before the flag is. */
    atomic_store_explicit(&slot->ready[o->half], 1, memory_order_release);
    uint32_t msg = (uint32_t)s * 2 + (uint32_t)o->half;
    const char *p = (const char *)&msg;
    size_t left = sizeof msg; /* under PIPE_BUF: written whole or not at all */
    while (left) {
        ssize_t w = mh__write(m->bell[1], p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            fork_child_sys_failed(m, s); /* or the caller is gone */
        p += w;
        left -= (size_t)w;
    }
    o->half ^= 1;
    o->used = 0;
    fork_child_wait_caller(slot, o->half);
}

/* A record larger than a half: encode it aside, then stream it through
 * the halves. 0 or non-zero. */
static int fork_child_put_large(const struct fork_map *m, int s, struct fork_out *o,
                                size_t i, const void *item, size_t size)
{
    unsigned char *buf = mh__malloc(size);
    if (!buf || m->codec->encode(item, buf, size, m->task->ctx)) {
        mh__free(buf);
        return 1;
    }
    mh__record_put(fork_half(m, s, o->half), i, size);
    o->used = MH__RECORD_HEADER;
    for (size_t sent = 0; sent < size;) {
        size_t take = FORK_HALF - o->used;
        if (take > size - sent)
            take = size - sent;
        memcpy(fork_half(m, s, o->half) + o->used, buf + sent, take);
        o->used += take;
        sent += take;
        if (o->used == FORK_HALF)
            fork_child_publish(m, s, o);
    }
    mh__free(buf);
    return 0;
}

/* Encode item i's result into the arena. 0 or non-zero. */
static int fork_child_put(const struct fork_map *m, int s, struct fork_out *o,
                          size_t i, const void *item)
{
    const struct mh_codec *codec = m->codec;
    size_t size = codec->size(item, m->task->ctx);
    if (size > SIZE_MAX - MH__RECORD_HEADER)
        return 1;
    size_t need = MH__RECORD_HEADER + size;
    if (o->used > 0 && o->used + need > FORK_HALF)
        fork_child_publish(m, s, o);
    if (need > FORK_HALF)
        return fork_child_put_large(m, s, o, i, item, size);
    unsigned char *at = fork_half(m, s, o->half) + o->used;
    if (codec->encode(item, at + MH__RECORD_HEADER, size, m->task->ctx))
        return 1;
    mh__record_put(at, i, size);
    o->used += need;
    return 0;
}

/* Note the child's first item failure for the caller. */
static void fork_child_fail(struct fork_slot *slot, const struct mh__failure *fail)
{
    if (fail->index == MH_NO_ITEM ||
        atomic_load_explicit(&slot->has_fail, memory_order_relaxed))
        return;
    slot->fail = *fail;
    atomic_store_explicit(&slot->has_fail, 1, memory_order_release);
}

/* Run items [lo, hi) through the core's item loop. With one_item (a
 * timeout or a codec: hi == lo + 1) publish the item around it and
 * encode its result. */
static void fork_child_items(const struct fork_map *m, int s, struct fork_out *o,
                             size_t lo, size_t hi, bool one_item)
{
    const struct mh_task *task = m->task;
    struct fork_slot *slot = &m->slots[s];
    if (one_item) {
        if (m->run->timeout_s > 0)
            atomic_store_explicit(&slot->started_ns, mh__now_ns(),
                                  memory_order_relaxed);
        atomic_store_explicit(&slot->busy, lo, memory_order_release);
    }
    struct mh__failure fail;
    void *out = m->codec ? task->out : (void *)m->sout;
    if (!m->codec)
        fork_region_clear_out(m, lo, hi);
    size_t ok = mh__run_range(m->run, lo, hi, out, m->sstatus, &m->sh->stop, &fail);
    fork_child_fail(slot, &fail);
    if (ok && m->codec) {
        void *item = (unsigned char *)task->out + lo * task->out_size;
        int bad = fork_child_put(m, s, o, lo, item);
        m->codec->clear(item, task->ctx);
        if (bad) {
            fail = fork_codec_failed(m, lo);
            fork_child_fail(slot, &fail);
            ok = 0;
        }
    }
    /* One writer: a plain add, no locked instruction. */
    atomic_store_explicit(&slot->done,
                          atomic_load_explicit(&slot->done, memory_order_relaxed) + ok,
                          memory_order_relaxed);
    if (one_item)
        atomic_store_explicit(&slot->busy, MH_NO_ITEM, memory_order_release);
}

/* Run the chunk [lo, hi); with redo, only what is not settled yet. Out
 * of budget part-way, it leaves the rest to its replacement (the
 * caller's redo range, as after a death). Whether every item ran: no
 * stop came and the budget lasted. */
static bool fork_child_chunk(const struct fork_map *m, int s, struct fork_out *o,
                             size_t lo, size_t hi, bool redo)
{
    struct fork_slot *slot = &m->slots[s];
    bool one_item = m->codec || m->run->timeout_s > 0;
    atomic_store_explicit(&slot->lo, lo, memory_order_relaxed);
    atomic_store_explicit(&slot->hi, hi, memory_order_relaxed);
    size_t i = lo;
    while (i < hi && o->left > 0) {
        if (atomic_load_explicit(&m->sh->stop, memory_order_relaxed))
            return false;
        if (redo && fork_item_settled(m, i)) {
            i++;
            continue;
        }
        size_t end = one_item ? i + 1 : hi;
        if (end - i > o->left)
            end = i + o->left;
        for (size_t k = i + 1; redo && k < end; k++)
            if (fork_item_settled(m, k))
                end = k;
        fork_child_items(m, s, o, i, end, one_item);
        o->left -= end - i;
        i = end;
    }
    /* The item loop leaves at a stop without saying so: a stop seen now
     * may have cut the chunk short (one seen later did not). */
    return i >= hi && !atomic_load_explicit(&m->sh->stop, memory_order_relaxed);
}

/* The redo range, then chunks as claimed, until none is left, the map
 * stops or the budget is spent. */
static void fork_child_work(const struct fork_map *m, int s, struct fork_out *o)
{
    const struct mh__run *run = m->run;
    const struct fork_worker *w = &m->workers[s];
    if (w->redo_hi > w->redo_lo)
        fork_child_chunk(m, s, o, w->redo_lo, w->redo_hi, true);
    while (o->left > 0) {
        if (atomic_load_explicit(&m->sh->stop, memory_order_relaxed))
            break;
        size_t c = atomic_fetch_add_explicit(&m->sh->next, 1, memory_order_relaxed);
        if (c >= run->nchunks)
            break;
        size_t begin, end;
        mh__chunk_bounds(run, c, &begin, &end);
        /* Release: the chunk's outputs and statuses are written before
         * the caller, which acquires the flag, copies them out. */
        if (fork_child_chunk(m, s, o, begin, end, false) && m->chunk_done)
            atomic_store_explicit(&m->chunk_done[c], 1, memory_order_release);
    }
}

int fork_child_hooks_init(const struct mh_config *config, int index, void **state)
{
    *state = NULL;
    if (config->worker_memory_max &&
        mh__setrlimit(RLIMIT_AS, (rlim_t)config->worker_memory_max))
        return MH_ESYS;
    return mh__hook_init(config, index, state);
}

void fork_child_hooks_fini(const struct mh_config *config, int index, void *state)
{
    mh__hook_fini(config, index, state);
}

void fork_init_gate_bump(struct fork_shared *sh)
{
    /* Release: whatever changed before (init_left, init_failed) is seen
     * by a child that reads the new value. */
    atomic_fetch_add_explicit(&sh->init_gate, 1, memory_order_release);
    mh__futex_wake(&sh->init_gate, INT_MAX);
}

/* With an init hook: count this child past its init, then wait until
 * every first child of the map is. false when one's init failed: then
 * no child may run an item. */
static bool fork_child_gate(const struct fork_map *m)
{
    struct fork_shared *sh = m->sh;
    if (!m->state->config->init)
        return true;
    atomic_fetch_sub_explicit(&sh->init_left, 1, memory_order_acq_rel);
    fork_init_gate_bump(sh);
    for (;;) {
        uint32_t seen = atomic_load_explicit(&sh->init_gate, memory_order_acquire);
        if (atomic_load_explicit(&sh->init_failed, memory_order_acquire))
            return false;
        if (atomic_load_explicit(&sh->init_left, memory_order_acquire) <= 0)
            return true;
        /* Bounded: a wake that could not be made costs 10 ms, no hang. */
        mh__futex_wait(&sh->init_gate, seen, 10000000u);
    }
}

/* This child's init hook failed: say so to the caller and every child
 * waiting at the gate, and end. */
static _Noreturn void fork_child_init_failed(const struct fork_map *m, int s,
                                             const struct mh__fork_stdio *stdio)
{
    atomic_store_explicit(&m->slots[s].init_failed, 1, memory_order_release);
    atomic_store_explicit(&m->sh->init_failed, 1, memory_order_release);
    fork_init_gate_bump(m->sh);
    mh__fork_stdio_child_end(stdio);
    _exit(FORK_EXIT_INIT);
}

_Noreturn void fork_child(const struct fork_map *m, int s, const struct mh__fork_stdio *stdio)
{
    /* Die with the caller; and if it already died, do not start. */
    if (mh__prctl(PR_SET_PDEATHSIG, SIGKILL))
        fork_child_sys_failed(m, s);
    if (getppid() != m->parent)
        _exit(FORK_EXIT_ORPHAN);
    mh__fork_stdio_child_start(stdio);

    /* Our copy of the run: mh_cancelled() in fn reads the shared flag
     * the caller sets when the map is cancelled. */
    m->run->cancel_flag = &m->sh->cancelled;
    const struct mh_config *config = m->state->config;
    struct fork_slot *slot = &m->slots[s];
    void *state;
    int rc = fork_child_hooks_init(config, s, &state);
    if (rc == MH_ESYS)
        fork_child_sys_failed(m, s);
    if (rc)
        fork_child_init_failed(m, s, stdio);
    atomic_store_explicit(&slot->inited, 1, memory_order_release);
    struct fork_out o = {
        .left = config->worker_items_max ? config->worker_items_max : SIZE_MAX,
    };
    if (fork_child_gate(m)) {
        mh__worker_enter(s, state); /* for the rest of this process */
        fork_child_work(m, s, &o);
    }
    fork_child_hooks_fini(config, s, state);
    if (o.left == 0) /* recycled: a planned end, not a death */
        atomic_store_explicit(&slot->recycled, 1, memory_order_release);
    if (m->codec) {
        if (o.used > 0)
            fork_child_publish(m, s, &o);
        fork_child_wait_free(slot, o.half ^ 1);
        fork_child_wait_free(slot, o.half);
    }
    mh__fork_stdio_child_end(stdio);
    atomic_store_explicit(&slot->finished, 1, memory_order_release);
    _exit(0);
}
