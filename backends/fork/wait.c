/*
 * The caller's wait: poll() on the doorbell pipe and one pidfd per child,
 * with a deadline — the nearest item timeout, grace period or progress
 * tick. A pidfd becomes readable when its child ends, however it ends and
 * whatever the process's SIGCHLD disposition is.
 */
#include <errno.h>
#include <signal.h>

#include "fork.h"

/* Seconds the item child s runs (*item: an index, or a stream's
 * sequence number) has run, or -1 when it runs none (or is waiting for
 * the caller, which is not its time). */
double fork_item_ran(const struct fork_map *m, int s, uint64_t now_ns, size_t *item)
{
    const struct fork_slot *slot = &m->slots[s];
    /* Acquire: pairs with the child's release after started_ns. */
    size_t busy = atomic_load_explicit(&slot->busy, memory_order_acquire);
    *item = busy;
    if (busy == MH_NO_ITEM || (!m->child && busy >= m->task->n))
        return -1;
    uint64_t start = atomic_load_explicit(&slot->started_ns, memory_order_relaxed);
    return now_ns > start ? (double)(now_ns - start) * 1e-9 : 0;
}

/* Milliseconds poll may sleep: to the nearest deadline, or -1. */
static int fork_poll_ms(const struct fork_map *m, double now)
{
    double wait = m->task->progress ? FORK_TICK_S : -1;
    double timeout = m->run->timeout_s;
    uint64_t now_ns = mh__now_ns();
    for (int s = 0; s < m->nworkers; s++) {
        const struct fork_worker *w = &m->workers[s];
        double t;
        if (w->life == FORK_STOPPING || w->life == FORK_TIMING_OUT)
            t = w->term_at + FORK_GRACE_S - now;
        else if (w->life == FORK_RUNNING && timeout > 0) {
            size_t item;
            double ran = fork_item_ran(m, s, now_ns, &item);
            t = ran < 0 ? timeout : timeout - ran; /* a new item may start */
        } else
            continue;
        if (wait < 0 || t < wait)
            wait = t;
    }
    if (m->chunk_done && m->copied_chunks < m->run->nchunks &&
        (wait < 0 || m->copy_wait < wait))
        wait = m->copy_wait;
    if (wait < 0)
        return -1;
    if (wait <= 0)
        return 0;
    return (int)(wait * 1000) + 1;
}

/* Kill children past their grace; SIGTERM those past their item's
 * deadline (a map's wait, and a stream's loop). */
void fork_enforce(struct fork_map *m, double now)
{
    uint64_t now_ns = mh__now_ns();
    for (int s = 0; s < m->nworkers; s++) {
        struct fork_worker *w = &m->workers[s];
        if (w->life == FORK_STOPPING || w->life == FORK_TIMING_OUT) {
            if (now - w->term_at >= FORK_GRACE_S) {
                fork_signal(m, w, SIGKILL);
                w->life = w->life == FORK_STOPPING ? FORK_KILLED : FORK_TIMEOUT_KILLED;
            }
            continue;
        }
        if (w->life != FORK_RUNNING || m->run->timeout_s <= 0)
            continue;
        size_t item;
        if (fork_item_ran(m, s, now_ns, &item) >= m->run->timeout_s) {
            w->timed_out = item;
            w->life = FORK_TIMING_OUT;
            w->term_at = now;
            fork_signal(m, w, SIGTERM);
        }
    }
}

/* Child s ended: reap it, then account for it. */
static void fork_ended(struct fork_map *m, int s)
{
    struct fork_worker *w = &m->workers[s];
    enum fork_life was = w->life;
    fork_drain_bells(m); /* its last doorbells are in the pipe by now */
    int wstatus = fork_reap(m, s);
    mh__record_stream_reset(&w->stream, m->task->n); /* a partial record dies with it */
    fork_after_end(m, s, was, wstatus);
}

/* Fill m->fds with the doorbell, the cancel pipe and the pidfds to
 * watch; their count. *gone: a child ended that no pidfd will report. */
static int fork_watch(struct fork_map *m, bool *gone)
{
    int nfds = 0;
    if (m->codec)
        m->fds[nfds++] = (struct pollfd){.fd = m->bell[0], .events = POLLIN};
    if (m->run->cancel_fd >= 0 && !m->cancelling)
        m->fds[nfds++] = (struct pollfd){.fd = m->run->cancel_fd, .events = POLLIN};
    m->nfixed = nfds;
    *gone = false;
    for (int s = 0; s < m->nworkers; s++) {
        struct fork_worker *w = &m->workers[s];
        *gone |= w->life == FORK_GONE;
        if (fork_live(w) && w->pidfd >= 0) {
            m->slot_of[nfds] = s;
            m->fds[nfds++] = (struct pollfd){.fd = w->pidfd, .events = POLLIN};
        }
    }
    return nfds;
}

/* The run is cancelled (mh_pool_cancel, progress): stop every child,
 * once; the items they were running become MH_ITEM_CANCELLED (blame.c). */
void fork_check_cancel(struct fork_map *m)
{
    /* Relaxed: cancelled is a "stop soon" flag, re-read every wake-up. */
    if (m->cancelling || !atomic_load_explicit(&m->run->cancelled, memory_order_relaxed))
        return;
    m->cancelling = true;
    atomic_store_explicit(&m->sh->cancelled, 1, memory_order_relaxed);
    fork_stop_all(m);
}

/* Wait for every child, handling doorbells, deaths, cancels and
 * deadlines. */
void fork_wait(struct fork_map *m)
{
    double last_tick = mh__now();
    while (m->live > 0) {
        fork_check_cancel(m);
        bool gone;
        int nfds = fork_watch(m, &gone);
        int ready = mh__poll(m->fds, (nfds_t)nfds, gone ? 0 : fork_poll_ms(m, mh__now()));
        if (ready < 0 && errno != EINTR) {
            fork_set_rc(m, mh__errno_code(errno));
            return;
        }
        fork_drain_bells(m);
        fork_copy_finished(m);
        if (ready > 0 && m->nfixed > (m->codec ? 1 : 0) && m->fds[m->nfixed - 1].revents)
            mh__cancel_drain(m->run->cancel_fd);
        for (int k = m->nfixed; ready > 0 && k < nfds; k++) {
            int s = m->slot_of[k];
            if (m->fds[k].revents && fork_live(&m->workers[s]))
                fork_ended(m, s);
        }
        for (int s = 0; s < m->nworkers; s++)
            if (m->workers[s].life == FORK_GONE)
                fork_ended(m, s);
        double now = mh__now();
        fork_enforce(m, now);
        if (m->rc)
            return;
        if (m->task->progress && now - last_tick >= FORK_TICK_S) {
            last_tick = now;
            atomic_store_explicit(&m->run->items_done, fork_count_done(m),
                                  memory_order_relaxed);
            mh__run_progress(m->run); /* a non-zero return: cancelled */
        }
    }
}
