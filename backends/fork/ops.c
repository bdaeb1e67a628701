/*
 * fork: a process pool, forked per map. The design — why per map, the
 * shared region, the record arenas, how a death is found and blamed — is
 * docs/backends.md, "fork"; this comment only says where each part is:
 *
 *   ops.c          the map from start to end, open, close, the ops table
 *   fork.h         the shared region's layout, a child's life, the calls
 *                  between these files
 *   region.c       mapping and laying out the shared region; what the
 *                  status array says about an item
 *   child.c        a child's whole life: chunks, items, its record arena
 *   spawn.c        forking, signalling and reaping one child
 *   wait.c         the caller's poll on pidfds and the doorbell, deadlines
 *   blame.c        what a child's end means: blame, stop, respawn
 *   retry.c        the retries charged per item
 *   collect.c      decoding records, copying results out of the region
 *   ../records.*   the record format, shared with mpi (fuzz_records)
 *   fork_stdio.*   stdio around each fork
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fork.h"

/* The region, the caller's per-child arrays and the doorbell pipe. 0 or
 * an MH_E* code, with everything released. */
static int fork_map_open(struct fork_map *m)
{
    int rc = fork_region_map(m);
    if (rc)
        return rc;
    if ((rc = fork_retry_open(m))) {
        fork_region_unmap(m);
        return rc;
    }
    size_t slots = (size_t)m->nworkers;
    m->workers = mh__calloc(slots, sizeof *m->workers);
    m->fds = mh__calloc(slots + 2, sizeof *m->fds); /* + doorbell, cancel */
    m->slot_of = mh__calloc(slots + 2, sizeof *m->slot_of);
    rc = MH_ENOMEM;
    if (!m->workers || !m->fds || !m->slot_of)
        goto out_free;
    for (int s = 0; s < m->nworkers; s++) {
        m->workers[s].pidfd = -1;
        m->workers[s].stream.n = m->task->n;
    }
    if (m->codec && mh__pipe2(m->bell, O_CLOEXEC)) {
        rc = mh__errno_code(errno);
        goto out_free;
    }
    if (m->codec)
        fcntl(m->bell[0], F_SETFL, O_NONBLOCK); /* drained until EAGAIN */
    return MH_OK;

out_free:
    mh__free(m->slot_of);
    mh__free(m->fds);
    mh__free(m->workers);
    fork_retry_close(m);
    fork_region_unmap(m);
    return rc;
}

static void fork_map_close(struct fork_map *m)
{
    if (m->bell[0] >= 0) {
        close(m->bell[0]);
        close(m->bell[1]);
    }
    for (int s = 0; s < m->nworkers; s++)
        mh__record_stream_reset(&m->workers[s].stream, 0);
    mh__free(m->slot_of);
    mh__free(m->fds);
    mh__free(m->workers);
    fork_retry_close(m);
    fork_region_unmap(m);
}

/* Fork a child per slot. 0 or an MH_E* code, every child gone. */
static int fork_start(struct fork_map *m)
{
    /* The init gate: every child forked here is counted in it. */
    atomic_store_explicit(&m->sh->init_left, m->nworkers, memory_order_relaxed);
    atomic_store_explicit(&m->sh->init_failed, 0, memory_order_relaxed);
    int started = 0, rc = MH_OK;
    for (; started < m->nworkers; started++)
        if ((rc = fork_spawn(m, started)))
            break;
    if (rc == MH_ENOMEM && started > 0) {
        /* Out of descriptors for more children: go on with those we have
         * (fork_spawn reaped the one it could not watch); the init gate
         * stops waiting for the slots left unforked. */
        atomic_fetch_sub_explicit(&m->sh->init_left, m->nworkers - started,
                                  memory_order_acq_rel);
        fork_init_gate_bump(m->sh);
        m->nworkers = started;
        m->run->workers = started;
        return MH_OK;
    }
    if (rc)
        fork_kill_all(m);
    return rc;
}

/* Wait until every child is gone: those that die early under MH_CONTINUE
 * are replaced inside fork_wait; a sweep catches work a child took to its
 * death before it could say which (killed between claim and run). */
static void fork_run_to_end(struct fork_map *m)
{
    struct mh__run *run = m->run;
    for (;;) {
        fork_wait(m);
        if (m->rc || m->live > 0)
            return;
        if (atomic_load_explicit(&m->sh->stop, memory_order_relaxed) ||
            atomic_load_explicit(&run->stop, memory_order_relaxed))
            return;
        if (fork_all_ok(m))
            return;
        size_t first = fork_first_open(m, 0, run->task->n);
        if (first == MH_NO_ITEM)
            return;
        atomic_store_explicit(&m->sh->next, run->nchunks, memory_order_relaxed);
        m->workers[0].redo_lo = first;
        m->workers[0].redo_hi = run->task->n;
        if ((m->rc = fork_spawn(m, 0)))
            return;
    }
}

static int fork_map_run(void *state, struct mh__run *run)
{
    struct fork_map m = {
        .state = state, .run = run, .task = run->task, .codec = run->task->codec,
        .nworkers = run->workers, .parent = getpid(), .pstatus = run->status,
        .bell = {-1, -1},
    };
    run->memory_capped = m.state->config->worker_memory_max > 0;
    int rc = fork_map_open(&m);
    if (rc)
        return rc;
    /* Resume: children skip what is kept (the shared statuses say OK). */
    if (m.task->resume)
        memcpy(m.sstatus, run->status, m.task->n);
    fork_out_keep(&m);
    rc = fork_start(&m);
    if (rc)
        goto out_close;
    fork_run_to_end(&m);
    fork_kill_all(&m);
    rc = m.rc ? m.rc : m.init_failed ? MH_EINIT : MH_OK;
    fork_collect(&m);
    /* An item the codec could not carry is MH_ITEM_FAILED; when it is the
     * one reported, the map says why: MH_ECODEC, not MH_ECALLBACK. */
    if (!rc && atomic_load_explicit(&m.sh->codec_failed, memory_order_relaxed) &&
        run->failure.status == MH_ITEM_FAILED && run->failure.callback_code == MH_ECODEC)
        rc = MH_ECODEC;
out_close:
    fork_out_release(&m);
    fork_map_close(&m);
    return rc;
}

static int fork_open(void **state, const struct mh_config *config)
{
    /* pidfds (Linux 5.3) are how we wait: check once that we have them. */
    int fd = mh__pidfd_open(getpid());
    if (fd < 0)
        return errno == ENOSYS ? MH_ENOTSUP : mh__errno_code(errno);
    close(fd);
    struct fork_state *st = mh__calloc(1, sizeof *st);
    if (!st)
        return MH_ENOMEM;
    st->config = config;
    *state = st;
    return MH_OK;
}

static void fork_close(void *state, bool owner)
{
    (void)owner; /* no child outlives a map: nothing to stop or wait for */
    fork_region_drop(state); /* a failure here leaves nothing to retry with */
    mh__free(state);
}

const struct mh_backend_ops mh__backend_fork = {
    .name = "fork",
    .caps = MH__CAP_TIMEOUT | MH__CAP_PROCESS | MH__CAP_WAKE | MH__CAP_WORKER_LIMITS,
    .open = fork_open,
    .map = fork_map_run,
    .close = fork_close,
    .stream = fork_stream,
};
