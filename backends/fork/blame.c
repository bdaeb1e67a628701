/*
 * What a failure means for the map (docs/backends.md, fork, "Failures"):
 * the item a dead child was in is blamed; then under MH_STOP the others
 * are stopped, under MH_CONTINUE a fresh child takes over.
 */
#include <signal.h>
#include <sys/wait.h>

#include "fork.h"

/* Item i's result could not cross the codec (encode in a child, decode
 * in the caller): mark it failed, stop under MH_STOP; its failure. */
struct mh__failure fork_codec_failed(const struct fork_map *m, size_t i)
{
    m->sstatus[i] = MH_ITEM_FAILED;
    if (m->pstatus)
        m->pstatus[i] = MH_ITEM_FAILED;
    atomic_store_explicit(&m->sh->codec_failed, 1, memory_order_relaxed);
    if (m->run->on_error == MH_STOP)
        atomic_store_explicit(&m->sh->stop, 1, memory_order_relaxed);
    return mh__failure_callback(i, MH_ECODEC);
}

/* SIGTERM every running child to stop the map; SIGKILL after the grace
 * (fork_wait). One already being ended keeps its reason. */
void fork_stop_all(struct fork_map *m)
{
    atomic_store_explicit(&m->sh->stop, 1, memory_order_relaxed);
    double now = mh__now();
    for (int s = 0; s < m->nworkers; s++) {
        struct fork_worker *w = &m->workers[s];
        if (w->life != FORK_RUNNING)
            continue;
        w->life = FORK_STOPPING;
        w->term_at = now;
        fork_signal(m, w, SIGTERM);
    }
}

/* w's record stream is corrupt: trust nothing more from it. */
void fork_kill_stream(struct fork_map *m, struct fork_worker *w)
{
    if (w->life == FORK_GONE || w->life == FORK_TIMEOUT_KILLED)
        return;
    w->life = w->life == FORK_TIMING_OUT ? FORK_TIMEOUT_KILLED : FORK_KILLED;
    fork_signal(m, w, SIGKILL);
}

/* What the end of a child means for the map. */
enum fork_end {
    FORK_END_CLEAN,  /* no item failed with it */
    FORK_END_FAILED, /* an item failed with it */
    FORK_END_RETRY,  /* its item runs again (retry.c) */
};

/* Item index was running when its worker ended: status MH_ITEM_CRASHED
 * or _TIMED_OUT. It runs again while it has retries, else it failed. */
static enum fork_end fork_worker_failed(struct fork_map *m, size_t index, int status,
                                        int wstatus, pid_t pid)
{
    if (fork_retry_charge(m, index))
        return FORK_END_RETRY;
    m->sstatus[index] = (uint8_t)status;
    if (m->codec)
        m->pstatus[index] = (uint8_t)status;
    struct mh__failure fail = mh__failure_worker(
        index, status, wstatus != -1 && WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0,
        wstatus != -1 && WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1, (long)pid);
    fail.attempts = fork_retry_attempts(m, index);
    mh__run_fail(m->run, &fail);
    return FORK_END_FAILED;
}

/* Slot s's child was stopped by a cancel before it handed over its
 * results: the item it was in is MH_ITEM_CANCELLED, not a failure. */
static void fork_mark_cancelled(struct fork_map *m, int s)
{
    struct fork_slot *slot = &m->slots[s];
    size_t item = atomic_load_explicit(&slot->busy, memory_order_acquire);
    if (item == MH_NO_ITEM || item >= m->task->n)
        item = fork_first_open(m, atomic_load_explicit(&slot->lo, memory_order_relaxed),
                               atomic_load_explicit(&slot->hi, memory_order_relaxed));
    if (item == MH_NO_ITEM)
        return;
    m->sstatus[item] = MH_ITEM_CANCELLED;
    if (m->codec)
        m->pstatus[item] = MH_ITEM_CANCELLED;
}

/* Slot s's child ended in its init hook (it failed, or the child died in
 * it): the map fails with MH_EINIT and no item runs; children waiting at
 * the gate run their fini and end by themselves. */
static bool fork_init_ended(struct fork_map *m, int s, enum fork_life was)
{
    const struct fork_slot *slot = &m->slots[s];
    bool ended = atomic_load_explicit(&slot->init_failed, memory_order_acquire) ||
                 (m->state->config->init && (was == FORK_RUNNING || was == FORK_GONE) &&
                  !atomic_load_explicit(&slot->inited, memory_order_acquire));
    if (!ended)
        return false;
    m->init_failed = true;
    atomic_store_explicit(&m->sh->stop, 1, memory_order_relaxed);
    atomic_store_explicit(&m->sh->init_failed, 1, memory_order_release);
    fork_init_gate_bump(m->sh);
    return true;
}

/* Blame the end of slot s's child, which was in state `was`: what it
 * means for the item it was running. */
static enum fork_end fork_blame(struct fork_map *m, int s, enum fork_life was, int wstatus)
{
    struct fork_worker *w = &m->workers[s];
    struct fork_slot *slot = &m->slots[s];
    if (atomic_load_explicit(&slot->has_fail, memory_order_acquire))
        mh__run_fail(m->run, &slot->fail);
    if (was == FORK_TIMING_OUT || was == FORK_TIMEOUT_KILLED)
        return fork_worker_failed(m, w->timed_out, MH_ITEM_TIMED_OUT, wstatus, w->pid);
    if (atomic_load_explicit(&slot->sys_failed, memory_order_acquire)) {
        fork_set_rc(m, MH_ESYS); /* the child's own OS call, not its item */
        return FORK_END_CLEAN;
    }
    if (fork_init_ended(m, s, was))
        return FORK_END_CLEAN;
    if (atomic_load_explicit(&slot->finished, memory_order_acquire))
        return FORK_END_CLEAN;
    if (was == FORK_STOPPING || was == FORK_KILLED) {
        if (m->cancelling)
            fork_mark_cancelled(m, s);
        return FORK_END_CLEAN;
    }
    /* Died without handing over its results: blame the item it was
     * running, or else the first one its chunk had left. */
    size_t culprit = atomic_load_explicit(&slot->busy, memory_order_acquire);
    if (culprit == MH_NO_ITEM || culprit >= m->task->n)
        culprit = fork_first_open(m, atomic_load_explicit(&slot->lo, memory_order_relaxed),
                                  atomic_load_explicit(&slot->hi, memory_order_relaxed));
    if (culprit == MH_NO_ITEM)
        return FORK_END_CLEAN;
    return fork_worker_failed(m, culprit, MH_ITEM_CRASHED, wstatus, w->pid);
}

/* MH_CONTINUE, or a retry: a fresh child in slot s reruns what is left
 * of the dead one's chunk, then claims chunks like the others. */
static void fork_respawn(struct fork_map *m, int s)
{
    struct fork_worker *w = &m->workers[s];
    size_t hi = atomic_load_explicit(&m->slots[s].hi, memory_order_relaxed);
    size_t from = fork_first_open(m, atomic_load_explicit(&m->slots[s].lo, memory_order_relaxed),
                                  hi);
    bool chunks_left = atomic_load_explicit(&m->sh->next, memory_order_relaxed) <
                       m->run->nchunks;
    if (from == MH_NO_ITEM && !chunks_left)
        return;
    w->redo_lo = from == MH_NO_ITEM ? 0 : from;
    w->redo_hi = from == MH_NO_ITEM ? 0 : hi;
    fork_set_rc(m, fork_spawn(m, s));
}

/* Whether slot s's child ended as planned after worker_items_max items,
 * with the map going on: then it is replaced, as a dead one would be. */
static bool fork_recycled(const struct fork_map *m, int s, enum fork_life was)
{
    return was == FORK_RUNNING &&
           atomic_load_explicit(&m->slots[s].recycled, memory_order_acquire) &&
           !atomic_load_explicit(&m->sh->stop, memory_order_relaxed) &&
           !atomic_load_explicit(&m->run->stop, memory_order_relaxed);
}

void fork_after_end(struct fork_map *m, int s, enum fork_life was, int wstatus)
{
    enum fork_end end = fork_blame(m, s, was, wstatus);
    if (end == FORK_END_CLEAN) {
        if (!m->rc && fork_recycled(m, s, was))
            fork_respawn(m, s);
        return;
    }
    if (m->rc)
        return;
    /* A retried item is no failure: the map does not stop for it. */
    if (end == FORK_END_FAILED && m->run->on_error == MH_STOP)
        fork_stop_all(m);
    else
        fork_respawn(m, s);
}
