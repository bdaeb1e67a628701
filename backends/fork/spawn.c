/*
 * Starting, signalling and reaping children. A child is signalled through
 * its pidfd, never through a pid that may have been reused, and reaped
 * with waitpid on its own pid.
 */
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "fork.h"

/* Fork a child into slot s. 0, MH_EAGAIN (fork failed), MH_ENOMEM (out of
 * descriptors for its pidfd) or MH_ESYS. */
int fork_spawn(struct fork_map *m, int s)
{
    struct fork_slot *slot = &m->slots[s];
    struct fork_worker *w = &m->workers[s];
    w->retired_done += atomic_load_explicit(&slot->done, memory_order_relaxed);
    fork_slot_reset(slot);
    mh__record_stream_reset(&w->stream, m->task->n);
    w->timed_out = MH_NO_ITEM;
    w->term_at = 0;

    struct mh__fork_stdio stdio;
    mh__fork_stdio_before(&stdio);
    pid_t pid = mh__fork();
    if (pid < 0)
        return MH_EAGAIN;
    if (pid == 0 && m->child)
        m->child(m, s, &stdio);
    if (pid == 0)
        fork_child(m, s, &stdio);
    w->pid = pid;
    w->life = FORK_RUNNING;
    m->live++;
    w->pidfd = mh__pidfd_open(pid);
    if (w->pidfd >= 0)
        return MH_OK;
    if (errno == ESRCH) {
        w->life = FORK_GONE; /* already ended and reaped (SIGCHLD ignored) */
        return MH_OK;
    }
    int rc = mh__errno_code(errno);
    mh__kill(pid, SIGKILL); /* not reaped yet, so the pid is still ours */
    fork_reap(m, s);
    return rc;
}

/* Send sig to w's child. Through its pidfd; should that fail while the
 * child is there, through its pid, which stays ours until we reap it. A
 * signal that cannot be sent at all is the map's MH_ESYS. */
void fork_signal(struct fork_map *m, struct fork_worker *w, int sig)
{
    if (w->pidfd < 0)
        return; /* FORK_GONE: nothing left to signal */
    if (mh__pidfd_send_signal(w->pidfd, sig) == 0 || errno == ESRCH)
        return;
    if (mh__kill(w->pid, sig) == 0 || errno == ESRCH)
        return;
    fork_set_rc(m, MH_ESYS);
}

/* Reap slot s's child: its wait status, or -1 when unknown (reaped by
 * someone else). The slot is REAPED after. */
int fork_reap(struct fork_map *m, int s)
{
    struct fork_worker *w = &m->workers[s];
    int wstatus = mh__reap(w->pid);
    if (w->pidfd >= 0)
        close(w->pidfd);
    w->pidfd = -1;
    w->life = FORK_REAPED;
    m->live--;
    return wstatus;
}

/* SIGKILL and reap every child still there (the end of every map). */
void fork_kill_all(struct fork_map *m)
{
    for (int s = 0; s < m->nworkers; s++) {
        struct fork_worker *w = &m->workers[s];
        if (!fork_live(w))
            continue;
        if (w->life != FORK_GONE)
            fork_signal(m, w, SIGKILL);
        fork_reap(m, s);
    }
}
