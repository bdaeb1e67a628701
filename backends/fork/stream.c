/*
 * fork's stream op (stream_fork.h says which file does what): a small
 * shared region of child slots (and arenas with a codec) beside the
 * core's ring, children forked once, as the first items are pulled, and
 * the caller's loop: pump, take codec records, look at the children, and
 * sleep on the ring's done_seq for at most a slice.
 */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stream_fork.h"

static size_t fstream_round64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

static void fstream_free(struct fstream *fs)
{
    struct fork_map *m = &fs->m;
    for (int s = 0; m->workers && s < m->nworkers; s++)
        mh__record_stream_reset(&m->workers[s].stream, 0);
    mh__free(fs->kids);
    mh__free(fs->charged_seq);
    fork_retry_close(m);
    mh__free(m->slot_of);
    mh__free(m->fds);
    mh__free(m->workers);
    fork_region_unmap(m); /* one that cannot be unmapped the pool keeps */
}

/* The region (counters, a slot and a gate per child, two arena halves
 * per child with a codec) and the caller's arrays. 0, MH_ENOMEM or MH_ESYS (the
 * pool's kept map region could not be unmapped), everything released. */
static int fstream_open(struct fstream *fs)
{
    struct fork_map *m = &fs->m;
    size_t W = (size_t)m->nworkers;
    size_t off_slots = fstream_round64(sizeof(struct fork_shared));
    size_t off_gates = off_slots + W * sizeof(struct fork_slot);
    size_t off_arena = fstream_round64(off_gates + W * sizeof *fs->gates);
    size_t size = off_arena + (m->codec ? W * 2 * FORK_HALF : 0);
    int rc = fork_region_fresh(m, size);
    if (rc)
        return rc;
    unsigned char *region = m->region;
    m->sh = m->region;
    m->slots = (struct fork_slot *)(region + off_slots);
    fs->gates = (_Atomic uint32_t *)(region + off_gates);
    m->arenas = m->codec ? region + off_arena : NULL;
    atomic_init(&m->sh->codec_failed, 0);
    atomic_init(&m->sh->cancelled, 0);
    m->workers = mh__calloc(W, sizeof *m->workers);
    m->fds = mh__calloc(W, sizeof *m->fds);
    m->slot_of = mh__calloc(W, sizeof *m->slot_of);
    fs->kids = mh__calloc(W, sizeof *fs->kids);
    if (m->run->retries > 0) { /* stream_blame.c, fstream_retry */
        size_t items = fs->ring->slots * fs->ring->chunk;
        m->charged = mh__calloc(items, sizeof *m->charged);
        fs->charged_seq = mh__calloc(items, sizeof *fs->charged_seq);
    }
    if (!m->workers || !m->fds || !m->slot_of || !fs->kids ||
        (m->run->retries > 0 && (!m->charged || !fs->charged_seq))) {
        fstream_free(fs);
        return MH_ENOMEM;
    }
    for (size_t s = 0; s < W; s++) {
        m->workers[s].pidfd = -1;
        fs->kids[s].redo = MH_NO_ITEM;
    }
    return MH_OK;
}

/* Whether another child has work: the source goes on, or more chunks are
 * in flight than children started. */
static bool fstream_want_child(const struct fstream *fs)
{
    const struct mh__stream *st = fs->st;
    if (fs->started >= fs->m.nworkers)
        return false;
    /* Relaxed: a count only, read by its one writer's thread. */
    size_t published = atomic_load_explicit(&fs->ring->published, memory_order_relaxed);
    return !st->ended || published - st->delivered + (st->filling > 0) > (size_t)fs->started;
}

/* Fork the next child. Out of descriptors for its pidfd with children
 * running: go on with those (as a map does); other failures end the
 * stream with their code. */
static void fstream_start_one(struct fstream *fs)
{
    int rc = fstream_spawn(fs, fs->started);
    if (rc == MH_ENOMEM && fs->started > 0) {
        fs->m.nworkers = fs->started;
        return;
    }
    fs->started++;
    fork_set_rc(&fs->m, rc);
}

/* Sleep on done_seq until it differs from seen or timeout_ns passes,
 * without mh__ring_wait_done's spin; its value. */
static uint32_t fstream_sleep_done(struct mh__ring *ring, uint32_t seen, uint64_t timeout_ns)
{
    /* seq_cst with mh__ring_done's bump and read of caller_waits. */
    atomic_store(&ring->caller_waits, 1);
    if (atomic_load(&ring->done_seq) == seen)
        mh__futex_wait(&ring->done_seq, seen, timeout_ns);
    atomic_store(&ring->caller_waits, 0);
    /* Acquire: pairs with the bump, as mh__ring_wait_done's read. */
    return atomic_load_explicit(&ring->done_seq, memory_order_acquire);
}

/* With an init hook: every child is forked and past its init before the
 * source is first called, so that an init that fails (or a child that
 * dies in it) ends the stream with MH_EINIT before anything is pulled. */
static void fstream_start_inited(struct fstream *fs)
{
    struct fork_map *m = &fs->m;
    while (!m->rc && fs->started < m->nworkers)
        fstream_start_one(fs);
    while (!m->rc) {
        bool gone, waiting = false;
        int nfds = fstream_watch(fs, &gone);
        for (int s = 0; s < fs->started; s++) {
            struct fork_worker *w = &m->workers[s];
            /* Acquire, both: the child's release stores. */
            bool inited = atomic_load_explicit(&m->slots[s].inited, memory_order_acquire);
            if (atomic_load_explicit(&m->slots[s].init_failed, memory_order_acquire) ||
                (w->life == FORK_GONE && !inited))
                fork_set_rc(m, MH_EINIT); /* failed, or ended unseen in it */
            waiting |= fork_live(w) && !inited;
        }
        if (m->rc || !waiting)
            return;
        int ready = mh__poll(m->fds, (nfds_t)nfds, 1);
        if (ready < 0 && errno != EINTR)
            fork_set_rc(m, mh__errno_code(errno));
        for (int k = 0; ready > 0 && k < nfds; k++)
            if (m->fds[k].revents && fstream_init_ended(fs, m->slot_of[k], FORK_RUNNING))
                fork_set_rc(m, MH_EINIT); /* it died in its init */
    }
}

/* The caller's loop, until the pump says END, or DRAIN with no chunk
 * running, or the backend fails. */
static void fstream_loop(struct fstream *fs)
{
    struct fork_map *m = &fs->m;
    struct mh__ring *ring = fs->ring;
    for (;;) {
        /* Acquire: pairs with the bump of a chunk done (or a half handed
         * over); read before the pump looks, so that one after it ends
         * the wait below at once. */
        uint32_t seen = atomic_load_explicit(&ring->done_seq, memory_order_acquire);
        for (int s = 0; m->codec && s < fs->started; s++)
            if (fork_live(&m->workers[s]))
                fstream_take(fs, s);
        int r = mh__stream_pump(fs->st);
        /* A cancel stopped the ring: as in a map, the children are sent
         * SIGTERM (SIGKILL after the grace, fork_enforce), and
         * mh_cancelled() in them reads the shared flag. */
        fork_check_cancel(m);
        if (m->rc || r == MH__PUMP_END || (r == MH__PUMP_DRAIN && !mh__ring_busy(ring)))
            return;
        if (r == MH__PUMP_MORE && fstream_want_child(fs)) {
            fstream_start_one(fs);
            continue;
        }
        fork_enforce(m, mh__now());
        if (r == MH__PUMP_MORE && mh__stream_room(fs->st)) {
            if (mh__now_ns() - fs->looked_ns >= FSTREAM_LOOK_NS)
                fstream_look(fs);
            continue;
        }
        if (m->live == 0 && fs->started > 0) {
            fstream_look(fs); /* every child gone and none replaced */
            if (m->live == 0 && !m->rc)
                fork_set_rc(m, MH_ESYS);
            continue;
        }
        uint32_t now = fs->no_spin ? fstream_sleep_done(ring, seen, fstream_slice_ns(fs))
                                   : mh__ring_wait_done(ring, seen, fstream_slice_ns(fs));
        if (now == seen || mh__now_ns() - fs->looked_ns >= FSTREAM_LOOK_NS)
            fstream_look(fs);
    }
}

/* Every chunk a child still held (it was killed): DONE, for finish. */
static void fstream_settle(struct fstream *fs)
{
    struct mh__ring *ring = fs->ring;
    for (size_t i = 0; i < ring->slots; i++) {
        /* Acquire: the claim; every child is reaped, so none races us. */
        uint64_t state = atomic_load_explicit(&ring->chunks[i].state, memory_order_acquire);
        if (mh__chunk_phase(state) == MH__CHUNK_RUNNING)
            mh__ring_done(ring, mh__chunk_of(state));
    }
}

/* The ops table's stream slot (ops.c). */
int fork_stream(void *state, struct mh__stream *st)
{
    int workers = st->run.workers < 1 ? 1 : st->run.workers;
    if (workers > MH__CHUNK_OWNER_MAX + 1)
        workers = MH__CHUNK_OWNER_MAX + 1;
    struct fstream fs = {
        .m = {
            .state = state, .run = &st->run, .task = st->run.task,
            .codec = st->run.task->codec, .nworkers = workers, .parent = getpid(),
            .bell = {-1, -1}, .child = fstream_child,
        },
        .st = st, .ring = st->ring,
        /* Item by item where an item's own time, its encode or the
         * count of items a child may run matters. */
        .one_item = st->run.task->codec || st->run.timeout_s > 0 ||
                    ((struct fork_state *)state)->config->worker_items_max,
        /* A spin only helps with a CPU to spare: with more children
         * than CPUs it takes one from a child. */
        .no_spin = workers > sysconf(_SC_NPROCESSORS_ONLN),
    };
    /* The caller runs no item: the pump publishes a part-filled chunk
     * soon and comes back after each chunk, so that results are
     * delivered while a slow source is still producing. */
    st->self_idle = true;
    int rc = fstream_open(&fs);
    if (rc) {
        mh__stream_finish(st);
        return rc;
    }
    if (fs.m.state->config->init)
        fstream_start_inited(&fs);
    if (!fs.m.rc)
        fstream_loop(&fs);
    /* The pump closed the ring (END) or stopped it (DRAIN): children exit
     * from mh__ring_wait_work, running their fini. After a failure of
     * ours, stop them; kill them unless it was an init (the others then
     * run their fini). */
    if (fs.m.rc)
        fstream_stop(fs.ring);
    if (fs.m.rc && fs.m.rc != MH_EINIT)
        fork_kill_all(&fs.m);
    fstream_reap_all(&fs);
    fstream_settle(&fs);
    if (atomic_load_explicit(&fs.m.sh->codec_failed, memory_order_relaxed))
        atomic_store_explicit(&st->run.codec_failed, 1, memory_order_relaxed);
    if (fs.started > 0)
        st->run.workers = fs.started; /* the report says how many ran */
    mh__stream_finish(st);
    rc = fs.m.rc;
    fstream_free(&fs);
    return rc;
}
