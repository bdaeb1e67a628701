/*
 * The caller's side of stream children: forking one, decoding its
 * records into the ring, noticing its end (its pidfd, looked at between
 * waits on the ring: a death wakes no futex), blaming the item it died
 * in and handing the rest of its chunk to a fresh child, and timeouts.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "stream_fork.h"

/* Fork a child into slot s; it finishes chunk fs->kids[s].redo first
 * when that is set. 0 or fork_spawn's code. */
int fstream_spawn(struct fstream *fs, int s)
{
    fs->kids[s].half = 0;
    fs->kids[s].fail = mh__failure_none();
    /* Relaxed: the fork orders it before the child's first look. */
    atomic_store_explicit(&fs->gates[s], 0, memory_order_relaxed);
    int rc = fork_spawn(&fs->m, s);
    if (rc == MH_OK) {
        /* Release: what we set for the child (its slot) before it goes;
         * a failed wake costs the child one FSTREAM_SLICE_NS wait. */
        atomic_store_explicit(&fs->gates[s], 1, memory_order_release);
        mh__futex_wake(&fs->gates[s], 1);
    }
    /* Record indices are c * (chunk + 1) + k: no bound but size_t's. */
    mh__record_stream_reset(&fs->m.workers[s].stream, SIZE_MAX);
    fs->kids[s].redo = MH_NO_ITEM; /* the child has its copy */
    return rc;
}

void fstream_stop(struct mh__ring *ring)
{
    /* Relaxed: "stop soon", guarding no data; the work_seq bump
     * (seq_cst, as the pump's) wakes children asleep for work. */
    atomic_store_explicit(&ring->stop, 1, memory_order_relaxed);
    atomic_fetch_add(&ring->work_seq, 1);
    mh__futex_wake(&ring->work_seq, INT_MAX);
}

struct fstream_emit {
    struct fstream *fs;
    int s;
};

/* One record of child s: item k of chunk c decoded into the ring, or
 * (k == count) the chunk's end: DONE. */
static int fstream_emit(size_t index, const void *payload, size_t len, void *vctx)
{
    struct fstream_emit *e = vctx;
    struct fstream *fs = e->fs;
    struct mh__ring *ring = fs->ring;
    size_t c = index / (ring->chunk + 1), k = index % (ring->chunk + 1);
    struct mh__ring_chunk *ch = mh__ring_slot(ring, c);
    /* Acquire: the chunk's claim, and so its seq and count. */
    uint64_t state = atomic_load_explicit(&ch->state, memory_order_acquire);
    if (state != mh__chunk_state(c, (unsigned)e->s, MH__CHUNK_RUNNING) || k > ch->count)
        return MH_ERANGE; /* not a chunk this child holds: corrupt */
    struct fstream_kid *kid = &fs->kids[e->s];
    if (k == ch->count) {
        if (len)
            return MH_ERANGE;
        fstream_fail_merge(&ch->fail, &kid->fail);
        kid->fail = mh__failure_none();
        mh__ring_done(ring, c);
        return MH_OK;
    }
    size_t at = mh__ring_item(ring, c) + k;
    if (ring->status[at] != MH_ITEM_NOT_RUN)
        return MH_ERANGE; /* delivered twice: corrupt */
    void *item = ring->out + at * ring->out_size;
    memset(item, 0, ring->out_size);
    if (fs->m.codec->decode(item, payload, len, fs->m.task->ctx) == 0) {
        ring->status[at] = MH_ITEM_OK;
        return MH_OK;
    }
    ring->status[at] = MH_ITEM_FAILED;
    struct mh__failure fail = mh__failure_callback(ch->seq + k, MH_ECODEC);
    fstream_fail_merge(&kid->fail, &fail);
    atomic_store_explicit(&fs->m.sh->codec_failed, 1, memory_order_relaxed);
    atomic_store_explicit(&ring->failed, 1, memory_order_relaxed); /* pull no more sooner */
    return MH_OK;
}

/* Decode every half child s has handed over, in order, and hand each
 * back. */
void fstream_take(struct fstream *fs, int s)
{
    struct fork_map *m = &fs->m;
    struct fork_slot *slot = &m->slots[s];
    struct fork_worker *w = &m->workers[s];
    struct fstream_emit e = {fs, s};
    for (;;) {
        int half = fs->kids[s].half;
        /* Acquire: pairs with the child's release: the half is whole. */
        if (atomic_load_explicit(&slot->ready[half], memory_order_acquire) != 1)
            return;
        size_t len = slot->len[half];
        int rc = len <= FORK_HALF ? mh__record_stream_feed(&w->stream, fork_half(m, s, half),
                                                         len, fstream_emit, &e)
                                  : MH_ERANGE;
        if (rc) {
            fork_set_rc(m, rc == MH_ENOMEM ? MH_ENOMEM : MH_ECODEC);
            fork_kill_stream(m, w);
            return;
        }
        fs->kids[s].half = half ^ 1;
        /* Release: our reads of the half happen before its reuse. */
        atomic_store_explicit(&slot->ready[half], 0, memory_order_release);
        mh__futex_wake(&slot->ready[half], 1);
    }
}

/* The chunk child s holds (RUNNING by it), or MH_NO_ITEM. */
static size_t fstream_held(const struct fstream *fs, int s)
{
    const struct mh__ring *ring = fs->ring;
    for (size_t i = 0; i < ring->slots; i++) {
        /* Acquire: its claim, so the slot's seq, count and begin. */
        uint64_t state = atomic_load_explicit(&ring->chunks[i].state, memory_order_acquire);
        if (mh__chunk_phase(state) == MH__CHUNK_RUNNING && mh__chunk_owner(state) == (unsigned)s)
            return mh__chunk_of(state);
    }
    return MH_NO_ITEM;
}

/* The item of chunk ch (at base in the ring) a child that ended in
 * state `was` is blamed for, or MH_NO_ITEM: the one it timed out in,
 * else the one it said it ran, else the first its chunk had left. */
static size_t fstream_culprit(const struct fstream *fs, int s,
                              const struct mh__ring_chunk *ch, size_t base,
                              enum fork_life was)
{
    const struct mh__ring *ring = fs->ring;
    if (was == FORK_STOPPING || was == FORK_KILLED)
        return MH_NO_ITEM; /* ended by us, not by its item */
    size_t seq = was == FORK_TIMING_OUT || was == FORK_TIMEOUT_KILLED
                     ? fs->m.workers[s].timed_out
                     : atomic_load_explicit(&fs->m.slots[s].busy, memory_order_acquire);
    size_t k = seq - ch->seq; /* wraps past count when seq is not in it */
    if (seq != MH_NO_ITEM && k < ch->count && ring->status[base + k] == MH_ITEM_NOT_RUN)
        return k;
    const uint8_t *at = memchr(ring->status + base + ch->begin, MH_ITEM_NOT_RUN,
                               ch->count - ch->begin);
    return at ? (size_t)(at - (ring->status + base)) : MH_NO_ITEM;
}

/* A fresh child in slot s, finishing chunk c first (or MH_NO_ITEM),
 * unless the stream is stopping. Whether one was forked. */
static bool fstream_replace(struct fstream *fs, int s, size_t c)
{
    /* Relaxed: "stop soon"; a stale 0 forks one child that exits. */
    if (fs->m.rc || atomic_load_explicit(&fs->ring->stop, memory_order_relaxed))
        return false;
    fs->kids[s].redo = c;
    int rc = fstream_spawn(fs, s);
    fork_set_rc(&fs->m, rc);
    return rc == MH_OK;
}

/* Child s ended in state `was` holding chunk c: blame its item, then
 * hand what is left of c to a fresh child, or settle c (DONE). */
static void fstream_blame(struct fstream *fs, int s, size_t c, enum fork_life was,
                          int wstatus, pid_t pid)
{
    struct mh__ring *ring = fs->ring;
    struct mh__ring_chunk *ch = mh__ring_slot(ring, c);
    size_t base = mh__ring_item(ring, c);
    fstream_fail_merge(&ch->fail, &fs->kids[s].fail);
    fs->kids[s].fail = mh__failure_none();
    size_t k = fstream_culprit(fs, s, ch, base, was);
    if (k != MH_NO_ITEM) {
        int status = was == FORK_TIMING_OUT || was == FORK_TIMEOUT_KILLED ? MH_ITEM_TIMED_OUT
                                                                          : MH_ITEM_CRASHED;
        ring->status[base + k] = (uint8_t)status;
        struct mh__failure fail = mh__failure_worker(
            ch->seq + k, status, wstatus != -1 && WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0,
            wstatus != -1 && WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1, (long)pid);
        fstream_fail_merge(&ch->fail, &fail);
        /* Relaxed: the pump only stops pulling sooner (under MH_STOP it
         * stops the stream when it delivers this failure). */
        atomic_store_explicit(&ring->failed, 1, memory_order_relaxed);
    }
    while (ch->begin < ch->count && ring->status[base + ch->begin] != MH_ITEM_NOT_RUN)
        ch->begin++;
    if (ch->begin < ch->count && fstream_replace(fs, s, c))
        return; /* still RUNNING by s: the fresh child's */
    mh__ring_done(ring, c);
    fstream_replace(fs, s, MH_NO_ITEM);
}

bool fstream_init_ended(const struct fstream *fs, int s, enum fork_life was)
{
    const struct fork_slot *slot = &fs->m.slots[s];
    /* Acquire, both: the child's release stores before it ended. */
    return atomic_load_explicit(&slot->init_failed, memory_order_acquire) ||
           (fs->m.state->config->init && (was == FORK_RUNNING || was == FORK_GONE) &&
            !atomic_load_explicit(&slot->inited, memory_order_acquire));
}

/* Child s ended: take its last records, reap it, account for it. */
static void fstream_ended(struct fstream *fs, int s)
{
    struct fork_map *m = &fs->m;
    struct fork_worker *w = &m->workers[s];
    struct fork_slot *slot = &m->slots[s];
    enum fork_life was = w->life;
    pid_t pid = w->pid;
    if (m->codec)
        fstream_take(fs, s);
    int wstatus = fork_reap(m, s);
    mh__record_stream_reset(&w->stream, SIZE_MAX); /* a partial record dies with it */
    if (atomic_load_explicit(&slot->sys_failed, memory_order_acquire))
        fork_set_rc(m, MH_ESYS); /* the child's own OS call, not its item */
    if (fstream_init_ended(fs, s, was)) {
        fork_set_rc(m, MH_EINIT); /* no item ran in it: nothing to blame */
        return;
    }
    /* Acquire, both: the child's release stores before it ended. A
     * recycled child (worker_items_max) ended as planned: no item is
     * blamed, and a fresh one takes over. */
    bool recycled = atomic_load_explicit(&slot->recycled, memory_order_acquire);
    size_t c = fstream_held(fs, s);
    if (c != MH_NO_ITEM)
        fstream_blame(fs, s, c, recycled ? FORK_STOPPING : was, wstatus, pid);
    else if (recycled || !atomic_load_explicit(&slot->finished, memory_order_acquire))
        fstream_replace(fs, s, MH_NO_ITEM);
}

/* Fill m->fds with the live children's pidfds; their count. *gone: a
 * child ended that no pidfd will report. */
int fstream_watch(struct fstream *fs, bool *gone)
{
    struct fork_map *m = &fs->m;
    int nfds = 0;
    *gone = false;
    for (int s = 0; s < fs->started; s++) {
        struct fork_worker *w = &m->workers[s];
        *gone |= w->life == FORK_GONE;
        if (fork_live(w) && w->pidfd >= 0) {
            m->slot_of[nfds] = s;
            m->fds[nfds++] = (struct pollfd){.fd = w->pidfd, .events = POLLIN};
        }
    }
    return nfds;
}

/* Look (without waiting) for children that ended, and account for them. */
void fstream_look(struct fstream *fs)
{
    struct fork_map *m = &fs->m;
    bool gone;
    int nfds = fstream_watch(fs, &gone);
    fs->looked_ns = mh__now_ns();
    int ready = nfds ? mh__poll(m->fds, (nfds_t)nfds, 0) : 0;
    if (ready < 0 && errno != EINTR) {
        fork_set_rc(m, mh__errno_code(errno));
        return;
    }
    for (int k = 0; ready > 0 && k < nfds; k++)
        if (m->fds[k].revents && fork_live(&m->workers[m->slot_of[k]]))
            fstream_ended(fs, m->slot_of[k]);
    for (int s = 0; gone && s < fs->started; s++)
        if (m->workers[s].life == FORK_GONE)
            fstream_ended(fs, s);
}

/* Seconds the item child s runs (*item) has run, or -1 when it runs
 * none (or waits for the caller, which is not its time). */
static double fstream_ran(const struct fstream *fs, int s, uint64_t now_ns, size_t *item)
{
    const struct fork_slot *slot = &fs->m.slots[s];
    /* Acquire: pairs with the child's release after started_ns. */
    size_t busy = atomic_load_explicit(&slot->busy, memory_order_acquire);
    *item = busy;
    if (busy == MH_NO_ITEM)
        return -1;
    uint64_t start = atomic_load_explicit(&slot->started_ns, memory_order_relaxed);
    return now_ns > start ? (double)(now_ns - start) * 1e-9 : 0;
}

/* Kill children past their grace; SIGTERM those past their item's
 * deadline (as a map's fork_enforce does). */
void fstream_enforce(struct fstream *fs)
{
    struct fork_map *m = &fs->m;
    double now = mh__now();
    uint64_t now_ns = mh__now_ns();
    for (int s = 0; s < fs->started; s++) {
        struct fork_worker *w = &m->workers[s];
        if (w->life == FORK_STOPPING || w->life == FORK_TIMING_OUT) {
            if (now - w->term_at >= FORK_GRACE_S) {
                fork_signal(m, w, SIGKILL);
                w->life = w->life == FORK_STOPPING ? FORK_KILLED : FORK_TIMEOUT_KILLED;
            }
            continue;
        }
        size_t item;
        if (w->life != FORK_RUNNING || m->run->timeout_s <= 0 ||
            fstream_ran(fs, s, now_ns, &item) < m->run->timeout_s)
            continue;
        w->timed_out = item;
        w->life = FORK_TIMING_OUT;
        w->term_at = now;
        fork_signal(m, w, SIGTERM);
    }
}

/* How long the caller may sleep on done_seq: a slice, or less to the
 * nearest item deadline or grace. */
uint64_t fstream_slice_ns(const struct fstream *fs)
{
    const struct fork_map *m = &fs->m;
    uint64_t wait = FSTREAM_SLICE_NS, now_ns = mh__now_ns();
    double now = mh__now(), timeout = m->run->timeout_s;
    for (int s = 0; s < fs->started; s++) {
        const struct fork_worker *w = &m->workers[s];
        double t;
        size_t item;
        if (w->life == FORK_STOPPING || w->life == FORK_TIMING_OUT)
            t = w->term_at + FORK_GRACE_S - now;
        else if (w->life == FORK_RUNNING && timeout > 0) {
            double ran = fstream_ran(fs, s, now_ns, &item);
            t = ran < 0 ? timeout : timeout - ran;
        } else
            continue;
        uint64_t ns = t <= 0 ? 0 : (uint64_t)(t * 1e9) + 1000;
        if (ns < wait)
            wait = ns;
    }
    return wait;
}

/* The end: give the children (told to go by a closed or stopped ring)
 * time to exit and flush their stdio, then kill and reap what is left. A
 * poll that fails only cuts the wait short. */
void fstream_reap_all(struct fstream *fs)
{
    struct fork_map *m = &fs->m;
    double until = mh__now() + FSTREAM_EXIT_S;
    while (m->live > 0) {
        bool gone;
        int nfds = fstream_watch(fs, &gone);
        for (int s = 0; gone && s < fs->started; s++)
            if (m->workers[s].life == FORK_GONE)
                fork_reap(m, s);
        double left = until - mh__now();
        if (nfds == 0 || left <= 0)
            break;
        int ready = mh__poll(m->fds, (nfds_t)nfds, (int)(left * 1000) + 1);
        if (ready < 0 && errno != EINTR)
            break;
        for (int k = 0; ready > 0 && k < nfds; k++)
            if (m->fds[k].revents)
                fork_reap(m, m->slot_of[k]);
    }
    fork_kill_all(m);
}
