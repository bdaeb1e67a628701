/*
 * fork: a process pool, forked per map.
 *
 * Each map maps one MAP_SHARED region, then forks min(workers, chunks)
 * children. Children see the inputs and ctx copy-on-write and claim
 * chunks from an atomic counter in the region. Fixed-size outputs go
 * straight into the region (the caller copies them to task->out at the
 * end); with a codec, a child encodes each result into length-prefixed
 * records (records.h) in its own two-half arena, publishes a full
 * half with a release store and a 4-byte doorbell on one shared pipe, and
 * goes on in the other half while the caller decodes the first into
 * task->out and hands it back (futex on the half's flag). A record larger
 * than a half streams through the halves in pieces.
 *
 * The caller waits in poll() on the doorbell pipe and one pidfd per child,
 * with a deadline: a pidfd becomes readable when its child ends, however
 * it ends and whatever the process's SIGCHLD disposition is. A child that
 * ends without setting its `finished` flag died: the item it was running
 * (its slot's `busy`) is marked crashed — or timed out, when the caller
 * killed it for running past config.timeout_s. Under MH_CONTINUE a fresh
 * child reruns what the dead one left of its range, skipping what is
 * done, then claims chunks like the others; under MH_STOP the others get
 * SIGTERM, a grace period, then SIGKILL. Every child is reaped with
 * waitpid on its own pid; signals go through its pidfd, never to a pid
 * that may have been reused.
 *
 * Why per map and not a pool kept across maps: docs/backends.md has the
 * measurements. In short, fork + reap of a small child costs far less
 * than any real codec map, PR_SET_PDEATHSIG is tied to the forking
 * thread (a pool opened by a short-lived thread would lose its children),
 * and a map never needs more children than chunks.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "records.h"
#include "fork_stdio.h"

/* Bytes in each half of a child's record arena. */
#define FORK_HALF ((size_t)256 * 1024)
/* Seconds between SIGTERM and SIGKILL. */
#define FORK_GRACE_S 0.2
/* Seconds between progress reports while waiting. */
#define FORK_TICK_S 0.1
/* Exit status of a child whose parent died before it started. */
#define FORK_EXIT_ORPHAN 125

/* The counters every child shares. */
struct fork_shared {
    atomic_size_t next; /* next chunk to claim (relaxed: a counter only) */
    atomic_int stop;    /* stop claiming (relaxed: "stop soon", guards no data) */
    atomic_int codec_failed; /* a child's encode failed (relaxed: read after
                              * every child has ended) */
};

/*
 * One child's slot in the shared region, on its own cache lines. Written
 * by the child, read by the caller while the child runs and after it ends.
 */
struct fork_slot {
    _Alignas(64) atomic_size_t busy; /* item running, or MH_NO_ITEM; release
                                      * after started_ns, so the caller never
                                      * pairs an item with an older start */
    _Atomic uint64_t started_ns;     /* when busy began (only with a timeout) */
    atomic_size_t lo, hi;            /* the range being run (relaxed: a hint
                                      * for blame; the status array decides) */
    atomic_size_t done;              /* items OK in this child (relaxed) */
    atomic_int finished;             /* 1 (release): every result handed over */
    atomic_int has_fail;             /* 1 (release) once fail is written */
    struct mh__failure fail;         /* the child's first item failure */
    /* Futex words, one per arena half: 1 (release, by the child) while the
     * caller owns the half, 0 (release, by the caller) once it is drained. */
    _Atomic uint32_t ready[2];
    size_t len[2]; /* bytes published in each half, ordered by ready */
};

/* The caller's view of one child. */
struct fork_worker {
    pid_t pid;
    int pidfd;           /* -1 when none */
    bool live;           /* forked and not yet reaped */
    bool gone;           /* exited before its pidfd could be opened */
    bool stopped;        /* we ended it to stop the map: not a failure */
    size_t timed_out;    /* the item we killed it for, or MH_NO_ITEM */
    double term_at;      /* when we sent SIGTERM (0: not sent) */
    bool killed;         /* SIGKILL sent: no deadline left to keep */
    size_t redo_lo, redo_hi; /* range a fresh child runs first; children
                              * read it from their copy of this memory */
    size_t retired_done;     /* items OK by earlier children of this slot */
    struct mh__record_stream stream;
};

/* Everything one map needs; the children inherit a copy. */
struct fork_map {
    struct mh__run *run;
    const struct mh_task *task;
    const struct mh_codec *codec;
    int nworkers;               /* slots */
    pid_t parent;
    void *region;
    size_t region_size;
    struct fork_shared *sh;
    struct fork_slot *slots;
    uint8_t *sstatus;           /* n statuses, shared */
    unsigned char *sout;        /* n outputs, shared (no codec) */
    unsigned char *arenas;      /* 2 * FORK_HALF per slot (codec) */
    uint8_t *pstatus;           /* run->status: the caller's (codec) */
    int bell[2];                /* doorbell pipe (codec) */
    struct fork_worker *workers;
    int live;
    size_t delivered;           /* codec results decoded */
    int rc;                     /* the backend's own failure, or 0 */
};

struct fork_state {
    int workers;
};

/* ------------------------------------------------------------ small tools */

static void fork_signal(struct fork_worker *w, int sig)
{
    if (w->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, w->pidfd, sig, NULL, 0);
}

static void fork_futex_wait(_Atomic uint32_t *word, uint32_t value)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, value, NULL, NULL, 0);
}

static void fork_futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static size_t fork_round64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

/* Whether item i needs no (re)run: finished in a way the caller keeps. */
static bool fork_item_settled(const struct fork_map *m, size_t i)
{
    if (m->codec)
        return m->pstatus[i] != MH_ITEM_NOT_RUN || m->sstatus[i] == MH_ITEM_FAILED;
    return m->sstatus[i] != MH_ITEM_NOT_RUN;
}

/* ------------------------------------------------------------- the child */

/* A child's place in its arena. */
struct fork_out {
    int half;
    size_t used;
};

static unsigned char *fork_half(const struct fork_map *m, int s, int half)
{
    return m->arenas + ((size_t)s * 2 + (size_t)half) * FORK_HALF;
}

static void fork_child_wait_free(struct fork_slot *slot, int half)
{
    /* Acquire: pairs with the caller's release after it read the half, so
     * our next writes cannot overtake its reads. */
    while (atomic_load_explicit(&slot->ready[half], memory_order_acquire) != 0)
        fork_futex_wait(&slot->ready[half], 1);
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
    atomic_fetch_add_explicit(&slot->started_ns, mh__now_ns() - from, memory_order_relaxed);
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
        ssize_t w = write(m->bell[1], p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(126); /* the caller is gone: nothing to hand over to */
        p += w;
        left -= (size_t)w;
    }
    o->half ^= 1;
    o->used = 0;
    fork_child_wait_caller(slot, o->half);
}

/* Encode item i's result into the arena. 0 or non-zero. */
static int fork_child_put(const struct fork_map *m, int s, struct fork_out *o,
                          size_t i, const void *item)
{
    const struct mh_codec *codec = m->codec;
    void *ctx = m->task->ctx;
    size_t size = codec->size(item, ctx);
    if (size > SIZE_MAX - MH__RECORD_HEADER)
        return 1;
    size_t need = MH__RECORD_HEADER + size;
    if (o->used > 0 && o->used + need > FORK_HALF)
        fork_child_publish(m, s, o);
    if (need <= FORK_HALF) {
        unsigned char *at = fork_half(m, s, o->half) + o->used;
        if (codec->encode(item, at + MH__RECORD_HEADER, size, ctx))
            return 1;
        mh__record_put(at, i, size);
        o->used += need;
        return 0;
    }
    /* Larger than a half: encode aside, then stream it through. */
    unsigned char *buf = mh__malloc(size);
    if (!buf || codec->encode(item, buf, size, ctx)) {
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

/* Note the child's first item failure for the caller. */
static void fork_child_fail(struct fork_slot *slot, const struct mh__failure *fail)
{
    if (atomic_load_explicit(&slot->has_fail, memory_order_relaxed))
        return;
    slot->fail = *fail;
    atomic_store_explicit(&slot->has_fail, 1, memory_order_release);
}

/* Run items [lo, hi), skipping settled ones when redo. */
static void fork_child_range(const struct fork_map *m, int s, struct fork_out *o,
                             size_t lo, size_t hi, bool redo)
{
    struct mh__run *run = m->run;
    const struct mh_task *task = m->task;
    struct fork_slot *slot = &m->slots[s];
    bool timed = run->timeout_s > 0;
    atomic_store_explicit(&slot->lo, lo, memory_order_relaxed);
    atomic_store_explicit(&slot->hi, hi, memory_order_relaxed);
    for (size_t i = lo; i < hi; i++) {
        if (atomic_load_explicit(&m->sh->stop, memory_order_relaxed))
            return;
        if (redo && fork_item_settled(m, i))
            continue;
        if (timed)
            atomic_store_explicit(&slot->started_ns, mh__now_ns(), memory_order_relaxed);
        atomic_store_explicit(&slot->busy, i, memory_order_release);

        struct mh__failure fail;
        void *out = m->codec ? task->out : (void *)m->sout;
        size_t ok = mh__run_range(run, i, i + 1, out, m->sstatus, &m->sh->stop, &fail);
        if (fail.index != MH_NO_ITEM)
            fork_child_fail(slot, &fail);
        if (ok && m->codec) {
            void *item = (unsigned char *)task->out + i * task->out_size;
            int bad = fork_child_put(m, s, o, i, item);
            m->codec->clear(item, task->ctx);
            if (bad) {
                m->sstatus[i] = MH_ITEM_FAILED;
                fail = mh__failure_callback(i, MH_ECODEC);
                fork_child_fail(slot, &fail);
                atomic_store_explicit(&m->sh->codec_failed, 1, memory_order_relaxed);
                if (run->on_error == MH_STOP)
                    atomic_store_explicit(&m->sh->stop, 1, memory_order_relaxed);
                ok = 0;
            }
        }
        if (ok) /* one writer: a plain add, no locked instruction */
            atomic_store_explicit(&slot->done,
                                  atomic_load_explicit(&slot->done, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
        atomic_store_explicit(&slot->busy, MH_NO_ITEM, memory_order_release);
    }
}

static _Noreturn void fork_child(const struct fork_map *m, int s,
                                 const struct mh__fork_stdio *stdio)
{
    /* Die with the caller; and if it already died, do not start. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != m->parent)
        _exit(FORK_EXIT_ORPHAN);
    mh__fork_stdio_child_start(stdio);

    const struct mh__run *run = m->run;
    const struct fork_worker *w = &m->workers[s];
    struct fork_out o = {0, 0};
    if (w->redo_hi > w->redo_lo)
        fork_child_range(m, s, &o, w->redo_lo, w->redo_hi, true);
    for (;;) {
        if (atomic_load_explicit(&m->sh->stop, memory_order_relaxed))
            break;
        size_t c = atomic_fetch_add_explicit(&m->sh->next, 1, memory_order_relaxed);
        if (c >= run->nchunks)
            break;
        size_t begin, end;
        mh__chunk_bounds(run, c, &begin, &end);
        fork_child_range(m, s, &o, begin, end, false);
    }
    if (m->codec) {
        struct fork_slot *slot = &m->slots[s];
        if (o.used > 0)
            fork_child_publish(m, s, &o);
        fork_child_wait_free(slot, o.half ^ 1);
        fork_child_wait_free(slot, o.half);
    }
    mh__fork_stdio_child_end(stdio);
    atomic_store_explicit(&m->slots[s].finished, 1, memory_order_release);
    _exit(0);
}

/* ------------------------------------------------------------ the caller */

static void fork_fail(struct fork_map *m, size_t index, int status, int sig,
                      int exit_status, pid_t pid)
{
    m->sstatus[index] = (uint8_t)status;
    if (m->codec)
        m->pstatus[index] = (uint8_t)status;
    struct mh__failure fail = mh__failure_worker(index, status, sig, exit_status, (long)pid);
    mh__run_fail(m->run, &fail);
}

/* Fork a child into slot s. 0, MH_EAGAIN (fork failed) or MH_ESYS. */
static int fork_spawn(struct fork_map *m, int s)
{
    struct fork_slot *slot = &m->slots[s];
    struct fork_worker *w = &m->workers[s];
    w->retired_done += atomic_load_explicit(&slot->done, memory_order_relaxed);
    atomic_store_explicit(&slot->busy, MH_NO_ITEM, memory_order_relaxed);
    atomic_store_explicit(&slot->lo, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->hi, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->done, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->finished, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->has_fail, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->ready[0], 0, memory_order_relaxed);
    atomic_store_explicit(&slot->ready[1], 0, memory_order_relaxed);
    mh__record_stream_reset(&w->stream, m->task->n);
    w->stopped = w->gone = false;
    w->timed_out = MH_NO_ITEM;
    w->term_at = 0;
    w->killed = false;

    struct mh__fork_stdio stdio;
    mh__fork_stdio_before(&stdio);
    pid_t pid = mh__fork();
    if (pid < 0)
        return MH_EAGAIN;
    if (pid == 0)
        fork_child(m, s, &stdio);
    w->pid = pid;
    w->live = true;
    m->live++;
    w->pidfd = mh__pidfd_open(pid);
    if (w->pidfd < 0) {
        if (errno == ESRCH) {
            w->gone = true; /* already ended and reaped (SIGCHLD ignored) */
            return MH_OK;
        }
        int err = errno;
        kill(pid, SIGKILL); /* not reaped yet, so the pid is still ours */
        mh__reap(pid);
        w->live = false;
        m->live--;
        return mh__errno_code(err);
    }
    return MH_OK;
}

/* Decode one record into task->out. */
static int fork_emit(size_t index, const void *payload, size_t len, void *vm)
{
    struct fork_map *m = vm;
    if (m->pstatus[index] != MH_ITEM_NOT_RUN)
        return MH_ERANGE; /* delivered twice: a corrupt stream */
    void *item = (unsigned char *)m->task->out + index * m->task->out_size;
    if (m->codec->decode(item, payload, len, m->task->ctx)) {
        m->sstatus[index] = m->pstatus[index] = MH_ITEM_FAILED;
        struct mh__failure fail = mh__failure_callback(index, MH_ECODEC);
        mh__run_fail(m->run, &fail);
        if (m->run->on_error == MH_STOP)
            atomic_store_explicit(&m->sh->stop, 1, memory_order_relaxed);
        atomic_store_explicit(&m->sh->codec_failed, 1, memory_order_relaxed);
        return MH_OK;
    }
    m->pstatus[index] = MH_ITEM_OK;
    m->delivered++;
    return MH_OK;
}

/* Decode every half the doorbell pipe announces, and hand it back. */
static void fork_drain_bells(struct fork_map *m)
{
    if (!m->codec)
        return;
    uint32_t msgs[256];
    for (;;) {
        ssize_t got = read(m->bell[0], msgs, sizeof msgs);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return; /* EAGAIN: nothing more now */
        for (size_t k = 0; k < (size_t)got / sizeof *msgs; k++) {
            uint32_t s = msgs[k] / 2, half = msgs[k] % 2;
            if (s >= (uint32_t)m->nworkers || !m->workers[s].live)
                continue;
            struct fork_slot *slot = &m->slots[s];
            struct fork_worker *w = &m->workers[s];
            /* Acquire: pairs with the child's release, so the half's
             * bytes and len are complete before we read them. */
            if (atomic_load_explicit(&slot->ready[half], memory_order_acquire) != 1)
                continue;
            size_t len = slot->len[half];
            int rc = len <= FORK_HALF
                         ? mh__record_stream_feed(&w->stream, fork_half(m, (int)s, (int)half),
                                                  len, fork_emit, m)
                         : MH_ERANGE;
            if (rc) {
                /* A corrupt stream: trust nothing more from this child. */
                if (!m->rc)
                    m->rc = rc == MH_ENOMEM ? MH_ENOMEM : MH_ECODEC;
                w->stopped = w->killed = true;
                fork_signal(w, SIGKILL);
                continue;
            }
            /* Release: our reads of the half happen before its reuse. */
            atomic_store_explicit(&slot->ready[half], 0, memory_order_release);
            fork_futex_wake(&slot->ready[half]);
        }
    }
}

/* SIGTERM every live child to stop the map; SIGKILL after the grace. */
static void fork_stop_all(struct fork_map *m)
{
    atomic_store_explicit(&m->sh->stop, 1, memory_order_relaxed);
    double now = mh__now();
    for (int s = 0; s < m->nworkers; s++) {
        struct fork_worker *w = &m->workers[s];
        if (!w->live || w->stopped)
            continue;
        w->stopped = true;
        if (w->timed_out == MH_NO_ITEM && !w->term_at) {
            fork_signal(w, SIGTERM);
            w->term_at = now;
        }
    }
}

/* The first item in [lo, hi) that is not settled, or MH_NO_ITEM. */
static size_t fork_first_open(const struct fork_map *m, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi && i < m->task->n; i++)
        if (!fork_item_settled(m, i))
            return i;
    return MH_NO_ITEM;
}

/* Child s ended: reap it, account for it, replace it if needed. */
static void fork_ended(struct fork_map *m, int s)
{
    struct fork_worker *w = &m->workers[s];
    struct fork_slot *slot = &m->slots[s];
    fork_drain_bells(m); /* its last doorbells are in the pipe by now */
    int wstatus = mh__reap(w->pid);
    if (w->pidfd >= 0)
        close(w->pidfd);
    w->pidfd = -1;
    w->live = false;
    m->live--;
    mh__record_stream_reset(&w->stream, m->task->n); /* a partial record dies with it */

    if (atomic_load_explicit(&slot->has_fail, memory_order_acquire))
        mh__run_fail(m->run, &slot->fail);
    bool finished = atomic_load_explicit(&slot->finished, memory_order_acquire);
    int sig = wstatus != -1 && WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    int code = wstatus != -1 && WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    size_t lo = atomic_load_explicit(&slot->lo, memory_order_relaxed);
    size_t hi = atomic_load_explicit(&slot->hi, memory_order_relaxed);
    bool failed = false;

    if (w->timed_out != MH_NO_ITEM) {
        fork_fail(m, w->timed_out, MH_ITEM_TIMED_OUT, sig, code, w->pid);
        failed = true;
    } else if (!finished && !w->stopped) {
        /* Died without handing over its results: blame the item it was
         * running, or else the first one its range had left. */
        size_t culprit = atomic_load_explicit(&slot->busy, memory_order_acquire);
        if (culprit == MH_NO_ITEM || culprit >= m->task->n)
            culprit = fork_first_open(m, lo, hi);
        if (culprit != MH_NO_ITEM) {
            fork_fail(m, culprit, MH_ITEM_CRASHED, sig, code, w->pid);
            failed = true;
        }
    }
    if (!failed || m->rc)
        return;
    if (m->run->on_error == MH_STOP) {
        fork_stop_all(m);
        return;
    }
    /* MH_CONTINUE: a fresh child reruns what is left of the range, then
     * claims chunks like the others. */
    size_t from = fork_first_open(m, lo, hi);
    bool chunks_left = atomic_load_explicit(&m->sh->next, memory_order_relaxed) <
                       m->run->nchunks;
    if (from == MH_NO_ITEM && !chunks_left)
        return;
    w->redo_lo = from == MH_NO_ITEM ? 0 : from;
    w->redo_hi = from == MH_NO_ITEM ? 0 : hi;
    int rc = fork_spawn(m, s);
    if (rc && !m->rc)
        m->rc = rc;
}

/* Milliseconds poll may sleep: to the nearest deadline, or -1. */
static int fork_poll_ms(struct fork_map *m, double now)
{
    double wait = -1;
    const struct mh__run *run = m->run;
#define FORK_SOONER_(t) do { double t_ = (t); if (wait < 0 || t_ < wait) wait = t_; } while (0)
    if (m->task->progress)
        FORK_SOONER_(FORK_TICK_S);
    uint64_t now_ns = mh__now_ns();
    for (int s = 0; s < m->nworkers; s++) {
        struct fork_worker *w = &m->workers[s];
        if (!w->live || w->killed)
            continue;
        if (w->term_at)
            FORK_SOONER_(w->term_at + FORK_GRACE_S - now);
        else if (run->timeout_s > 0) {
            struct fork_slot *slot = &m->slots[s];
            if (atomic_load_explicit(&slot->busy, memory_order_acquire) == MH_NO_ITEM) {
                FORK_SOONER_(run->timeout_s); /* a new item may start */
                continue;
            }
            uint64_t start = atomic_load_explicit(&slot->started_ns, memory_order_relaxed);
            double ran = now_ns > start ? (double)(now_ns - start) * 1e-9 : 0;
            FORK_SOONER_(run->timeout_s - ran);
        }
    }
#undef FORK_SOONER_
    if (wait < 0)
        return -1;
    if (wait <= 0)
        return 0;
    return (int)(wait * 1000) + 1;
}

/* Kill children past their item's deadline, or past their grace. */
static void fork_enforce(struct fork_map *m, double now)
{
    const struct mh__run *run = m->run;
    uint64_t now_ns = mh__now_ns();
    for (int s = 0; s < m->nworkers; s++) {
        struct fork_worker *w = &m->workers[s];
        if (!w->live || w->killed)
            continue;
        if (w->term_at) {
            if (now - w->term_at >= FORK_GRACE_S) {
                fork_signal(w, SIGKILL);
                w->killed = true;
            }
            continue;
        }
        if (run->timeout_s <= 0 || w->stopped)
            continue;
        struct fork_slot *slot = &m->slots[s];
        size_t busy = atomic_load_explicit(&slot->busy, memory_order_acquire);
        if (busy == MH_NO_ITEM || busy >= m->task->n)
            continue;
        uint64_t start = atomic_load_explicit(&slot->started_ns, memory_order_relaxed);
        if (now_ns > start && (double)(now_ns - start) * 1e-9 >= run->timeout_s) {
            w->timed_out = busy;
            fork_signal(w, SIGTERM);
            w->term_at = now;
        }
    }
}

/* Items OK so far, for progress: decoded, or done in the shared region. */
static size_t fork_count_done(const struct fork_map *m)
{
    if (m->codec)
        return m->delivered;
    size_t done = 0;
    for (int s = 0; s < m->nworkers; s++)
        done += m->workers[s].retired_done +
                atomic_load_explicit(&m->slots[s].done, memory_order_relaxed);
    return done < m->task->n ? done : m->task->n;
}

/* Wait for every child, handling doorbells, deaths and deadlines. */
static void fork_wait(struct fork_map *m, struct pollfd *fds, int *slot_of)
{
    double last_tick = mh__now();
    while (m->live > 0) {
        double now = mh__now();
        int nfds = 0;
        if (m->codec)
            fds[nfds++] = (struct pollfd){.fd = m->bell[0], .events = POLLIN};
        bool gone = false;
        for (int s = 0; s < m->nworkers; s++) {
            struct fork_worker *w = &m->workers[s];
            if (!w->live)
                continue;
            gone |= w->gone;
            if (w->pidfd >= 0) {
                slot_of[nfds] = s;
                fds[nfds++] = (struct pollfd){.fd = w->pidfd, .events = POLLIN};
            }
        }
        int ready = poll(fds, (nfds_t)nfds, gone ? 0 : fork_poll_ms(m, now));
        if (ready < 0 && errno != EINTR) {
            if (!m->rc)
                m->rc = MH_ESYS;
            return;
        }
        fork_drain_bells(m);
        for (int k = m->codec ? 1 : 0; ready > 0 && k < nfds; k++) {
            int s = slot_of[k];
            if (fds[k].revents && m->workers[s].live)
                fork_ended(m, s);
        }
        for (int s = 0; s < m->nworkers; s++)
            if (m->workers[s].live && m->workers[s].gone)
                fork_ended(m, s);
        now = mh__now();
        fork_enforce(m, now);
        if (m->rc)
            return;
        if (m->task->progress && now - last_tick >= FORK_TICK_S) {
            last_tick = now;
            atomic_store_explicit(&m->run->items_done, fork_count_done(m),
                                  memory_order_relaxed);
            mh__run_progress(m->run);
        }
    }
}

/* SIGKILL and reap every child still there (error paths). */
static void fork_kill_all(struct fork_map *m)
{
    for (int s = 0; s < m->nworkers; s++) {
        struct fork_worker *w = &m->workers[s];
        if (!w->live)
            continue;
        if (w->pidfd >= 0)
            fork_signal(w, SIGKILL);
        else if (!w->gone)
            kill(w->pid, SIGKILL); /* not reaped, so still ours */
        mh__reap(w->pid);
        if (w->pidfd >= 0)
            close(w->pidfd);
        w->pidfd = -1;
        w->live = false;
        m->live--;
    }
}

/* Copy results and statuses out of the shared region; count them. */
static void fork_collect(struct fork_map *m)
{
    const struct mh_task *task = m->task;
    struct mh__run *run = m->run;
    size_t n = task->n, ok = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t st = m->sstatus[i];
        if (m->codec) {
            if (m->pstatus[i] == MH_ITEM_NOT_RUN && st == MH_ITEM_FAILED)
                m->pstatus[i] = MH_ITEM_FAILED;
            st = m->pstatus[i];
        }
        ok += st == MH_ITEM_OK;
        failed += st != MH_ITEM_OK && st != MH_ITEM_NOT_RUN;
    }
    if (!m->codec) {
        /* A failed item's bytes too: what fn wrote, as on the other
         * backends (mh_reduce reads where its chunk failed from them). */
        if (ok == n) {
            memcpy(task->out, m->sout, n * task->out_size);
        } else {
            for (size_t i = 0; i < n; i++)
                if (m->sstatus[i] == MH_ITEM_OK || m->sstatus[i] == MH_ITEM_FAILED)
                    memcpy((unsigned char *)task->out + i * task->out_size,
                           m->sout + i * task->out_size, task->out_size);
        }
        if (run->status)
            memcpy(run->status, m->sstatus, n);
    }
    atomic_store_explicit(&run->items_done, ok, memory_order_relaxed);
    atomic_store_explicit(&run->items_failed, failed, memory_order_relaxed);
}

/* Lay out and map the shared region. 0 or MH_ENOMEM. */
static int fork_map_region(struct fork_map *m)
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

static int fork_map_run(void *state, struct mh__run *run)
{
    (void)state;
    struct fork_map m = {
        .run = run, .task = run->task, .codec = run->task->codec,
        .nworkers = run->workers, .parent = getpid(), .pstatus = run->status,
        .bell = {-1, -1},
    };
    int rc = fork_map_region(&m);
    if (rc)
        return rc;
    rc = MH_ENOMEM;
    m.workers = mh__calloc((size_t)m.nworkers, sizeof *m.workers);
    struct pollfd *fds = mh__calloc((size_t)m.nworkers + 1, sizeof *fds);
    int *slot_of = mh__calloc((size_t)m.nworkers + 1, sizeof *slot_of);
    if (!m.workers || !fds || !slot_of)
        goto out_free;
    for (int s = 0; s < m.nworkers; s++) {
        m.workers[s].pidfd = -1;
        m.workers[s].stream.n = run->task->n;
    }
    if (m.codec && mh__pipe2(m.bell, O_CLOEXEC)) {
        rc = mh__errno_code(errno);
        goto out_free;
    }
    if (m.codec)
        fcntl(m.bell[0], F_SETFL, O_NONBLOCK);

    int started = 0;
    for (; started < m.nworkers; started++) {
        rc = fork_spawn(&m, started);
        if (rc)
            break;
    }
    if (rc == MH_ENOMEM && started > 0) {
        /* Out of descriptors for more children: go on with those we have
         * (fork_spawn reaped the one it could not watch). */
        rc = MH_OK;
        m.nworkers = started;
        run->workers = started;
    }
    if (rc) {
        fork_kill_all(&m);
        goto out_pipe;
    }

    /* Until every child is gone: those that die early under MH_CONTINUE
     * are replaced inside fork_wait; a sweep catches work a child took to
     * its death before it could say which (killed between claim and run). */
    for (;;) {
        fork_wait(&m, fds, slot_of);
        if (m.rc || m.live > 0)
            break;
        if (atomic_load_explicit(&m.sh->stop, memory_order_relaxed) ||
            atomic_load_explicit(&run->stop, memory_order_relaxed))
            break;
        size_t first = fork_first_open(&m, 0, run->task->n);
        if (first == MH_NO_ITEM)
            break;
        atomic_store_explicit(&m.sh->next, run->nchunks, memory_order_relaxed);
        m.workers[0].redo_lo = first;
        m.workers[0].redo_hi = run->task->n;
        if ((m.rc = fork_spawn(&m, 0)))
            break;
    }
    fork_kill_all(&m);
    rc = m.rc;
    fork_collect(&m);
    /* An item the codec could not carry is MH_ITEM_FAILED; when it is the
     * one reported, the map says why: MH_ECODEC, not MH_ECALLBACK. */
    if (!rc && atomic_load_explicit(&m.sh->codec_failed, memory_order_relaxed) &&
        run->failure.status == MH_ITEM_FAILED && run->failure.callback_code == MH_ECODEC)
        rc = MH_ECODEC;

out_pipe:
    if (m.bell[0] >= 0) {
        close(m.bell[0]);
        close(m.bell[1]);
    }
out_free:
    if (m.workers)
        for (int s = 0; s < m.nworkers; s++)
            mh__record_stream_reset(&m.workers[s].stream, 0);
    mh__free(slot_of);
    mh__free(fds);
    mh__free(m.workers);
    munmap(m.region, m.region_size);
    return rc;
}

static int fork_open(void **state, const struct mh_config *config)
{
    /* pidfds (Linux 5.3) are how we wait: check once that we have them. */
    int fd = mh__pidfd_open(getpid());
    if (fd < 0)
        return errno == ENOSYS ? MH_ENOTSUP : MH_ESYS;
    close(fd);
    struct fork_state *st = mh__calloc(1, sizeof *st);
    if (!st)
        return MH_ENOMEM;
    st->workers = config->workers;
    *state = st;
    return MH_OK;
}

static void fork_close(void *state, bool owner)
{
    (void)owner; /* no child outlives a map: nothing to stop or wait for */
    mh__free(state);
}

const struct mh_backend_ops mh__backend_fork = {
    .name = "fork",
    .caps = MH__CAP_TIMEOUT | MH__CAP_PROCESS,
    .open = fork_open,
    .map = fork_map_run,
    .close = fork_close,
};
