/*
 * The stream contract, for backend writers (included by backend.h). The
 * design is docs/design.md, "Streams"; in short:
 *
 * The core owns a ring of `slots` chunk slots of `chunk` items each, in
 * memory shared with processes forked after it was made (MAP_SHARED), so
 * threads, forked children and mpi's root all reach it at one address.
 * On the calling thread the core's pump pulls items from the source into
 * the next free slot and publishes it as chunk c (slot c % slots, chunk
 * numbers 0, 1, 2, ...), and delivers finished chunks to the sink. A slot
 * is reused only once its chunk is delivered and every chunk before it
 * too, so chunk c + slots is never published while chunk c is undelivered.
 *
 * Workers claim published chunks in order (mh__ring_claim records the
 * owner in the same atomic step, so a worker that dies holding a chunk is
 * known), run them into the ring (mh__ring_run), and mark them done
 * (mh__ring_done). A backend's stream op is then:
 *
 *     pull backends (seq, threads, openmp): every worker calls
 *         mh__stream_work(st, owner, is_caller); the calling thread's
 *         call also pumps, and returns when the stream is over;
 *     fork: children claim, run and mark done in the shared ring; the
 *         caller loops { mh__stream_pump(st); wait for a done chunk, a
 *         death or a deadline } until the pump says MH__PUMP_END, or says
 *         MH__PUMP_DRAIN and no child is running a chunk;
 *     mpi: rank 0 claims on behalf of the other ranks and ships chunks.
 *
 * and then mh__stream_finish(st) once no worker runs anything.
 */
#ifndef MH_STREAM_H
#define MH_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A chunk slot's state word: the chunk number, its owner and its phase,
 * changed only by compare-and-swap (acq_rel) or by a release store of
 * the slot's one writer. */
#define MH__CHUNK_FREE 0u    /* no chunk: the pump may fill the slot */
#define MH__CHUNK_QUEUED 1u  /* published, not yet claimed */
#define MH__CHUNK_RUNNING 2u /* claimed by owner */
#define MH__CHUNK_DONE 3u    /* results written (release): deliverable */
#define MH__CHUNK_OWNER_MAX 16383

/* The chunk number is stored plus one, so that a zeroed slot names no
 * chunk (mh__chunk_of: SIZE_MAX). */
static inline uint64_t mh__chunk_state(size_t c, unsigned owner, unsigned phase)
{
    return (uint64_t)(c + 1) << 16 | (uint64_t)owner << 2 | phase;
}
static inline size_t mh__chunk_of(uint64_t state) { return (size_t)(state >> 16) - 1; }
static inline unsigned mh__chunk_owner(uint64_t state) { return (state >> 2) & 0x3fffu; }
static inline unsigned mh__chunk_phase(uint64_t state) { return state & 3u; }

/* One chunk slot: where chunk c's items are, and how far it got. */
struct mh__ring_chunk {
    _Alignas(64) _Atomic uint64_t state;
    size_t seq;   /* the first item's sequence number (set before publish) */
    size_t count; /* items in the chunk, 1 .. ring->chunk (set before publish) */
    /* The first item still to run, 0 .. count: a backend that replaces a
     * dead worker sets it past the items that worker settled. */
    size_t begin;
    /* The chunk's first item failure (index: a sequence number), or
     * index MH_NO_ITEM; written before DONE, read by the pump. */
    struct mh__failure fail;
};

/* The ring's header; the chunk slots, then statuses, inputs and outputs
 * (slots * chunk items each) follow it in the same mapping. */
struct mh__ring {
    size_t chunk, slots;      /* items per chunk slot; chunk slots */
    size_t in_size, out_size;
    size_t map_size;          /* bytes mapped (header included) */
    struct mh__ring_chunk *chunks;
    uint8_t *status;          /* per item: MH_ITEM_*, written by workers */
    unsigned char *in, *out;

    /* Chunks published so far (release, by the pump, after the slot's
     * inputs, seq and count; acquire by claimers). */
    _Alignas(64) atomic_size_t published;
    /* The lowest chunk number a claimer may still find QUEUED (a hint,
     * advanced by compare-and-swap; relaxed). */
    atomic_size_t claim_hint;
    /* 1 once no chunk will be published after `published` (release). */
    atomic_int closed;
    /* "Stop soon" (relaxed, guards no data): set by the pump when the
     * stream must end early (a failure delivered under MH_STOP, a source
     * error, a sink stop, a cancel). Item loops poll it, as they poll
     * run->stop in a map. Workers themselves never set it: a stream's
     * item loops run as under MH_CONTINUE and the pump applies MH_STOP at
     * delivery, so every item before the failing one still runs. */
    atomic_int stop;
    /* 1 (relaxed) once any item failed: the pump stops pulling under
     * MH_STOP. */
    atomic_int failed;
    /* Futex words (shared: they work across fork). work_seq is bumped
     * (release) whenever published, closed or stop change; done_seq
     * whenever a chunk becomes DONE. hungry counts workers waiting for
     * work, so the pump publishes a part-filled chunk instead of keeping
     * them idle; caller_waits says the pump sleeps on done_seq. */
    _Alignas(64) _Atomic uint32_t work_seq;
    _Atomic uint32_t done_seq;
    atomic_int hungry;
    atomic_int caller_waits;
};

/* Chunk c's slot, and its items' storage. */
static inline struct mh__ring_chunk *mh__ring_slot(const struct mh__ring *ring, size_t c)
{
    return &ring->chunks[c % ring->slots];
}
static inline size_t mh__ring_item(const struct mh__ring *ring, size_t c)
{
    return (c % ring->slots) * ring->chunk;
}

/* Claim the lowest QUEUED chunk for owner (0 .. MH__CHUNK_OWNER_MAX): true
 * with *c set (its state RUNNING by owner), or false when none is queued
 * now. Never waits. */
bool mh__ring_claim(struct mh__ring *ring, unsigned owner, size_t *c);

/* Wait (spin, then sleep on work_seq, counted in hungry) until a chunk may
 * be claimable, the ring is closed or stop is set. False when there is
 * nothing more for workers: stop, or closed with nothing queued. */
bool mh__ring_wait_work(struct mh__ring *ring);

/* Run chunk c's items from its begin into the ring with run's fn:
 * outputs, statuses, its first failure and failure count (into the
 * slot's fail), ring->failed. Returns the items that succeeded. Touches
 * nothing but the ring, so a forked child may call it. */
size_t mh__ring_run(const struct mh__run *run, struct mh__ring *ring, size_t c);

/* Chunk c's results are in the ring: DONE (release), done_seq bumped and
 * the caller woken when it sleeps. */
void mh__ring_done(struct mh__ring *ring, size_t c);

/* Sleep on done_seq until it differs from seen or timeout_ns passes (a
 * spin first). For the caller; returns done_seq's new value. */
uint32_t mh__ring_wait_done(struct mh__ring *ring, uint32_t seen, uint64_t timeout_ns);

/* One stream in flight: the core's, read by backends. */
struct mh__stream {
    struct mh__run run;  /* fn, ctx, sizes, codec (run.task, n = 0),
                          * on_error, timeout, workers, failure record */
    struct mh__ring *ring;
    const struct mh_stream_task *task;
    enum mh_on_error on_error; /* the pool's; the pump applies it */
    /* The pump's own, on the calling thread only. */
    size_t delivered;    /* chunks below this are all delivered */
    size_t pulled;       /* items pulled from the source */
    size_t filling;      /* items in the slot being filled (chunk
                          * `published`), not yet published */
    uint64_t fill_ns;    /* when that slot's filling began */
    bool ended;          /* the source said MH_SOURCE_END */
    bool grow;           /* adaptive: a chunk takes at most pulled / slots
                          * items, so that a short stream of slow items
                          * still spreads over every worker */
    bool self_idle;      /* the calling thread, a worker too, has nothing
                          * to run: part-filled chunks go out at once */
    bool halted;         /* ordered MH_STOP: nothing more is delivered */
    int code;            /* first stream-level error: MH_ESOURCE,
                          * MH_ESINK, MH_EINTR, or 0 */
};

/* What the pump says. */
enum {
    MH__PUMP_MORE = 0, /* the stream goes on: wait for a done chunk */
    MH__PUMP_DRAIN,    /* stopping: nothing more is pulled; wait until no
                        * worker runs a chunk, then finish */
    MH__PUMP_END,      /* every item pulled has been delivered */
};

/* Deliver every deliverable chunk, then pull while there is room.
 * Never waits for workers (the source and sink may take their time).
 * Calling thread only. */
int mh__stream_pump(struct mh__stream *st);

/* Whether the pump could pull now, were it called: the stream still
 * pulls, and the slot being filled or a free one is there. */
bool mh__stream_room(const struct mh__stream *st);

/* A pull backend's worker: claim, run and mark done until the stream is
 * over for workers. With is_caller (the calling thread; exactly one
 * worker) it pumps between chunks and returns only at MH__PUMP_END or,
 * after DRAIN, once no other worker holds a chunk. */
void mh__stream_work(struct mh__stream *st, unsigned owner, bool is_caller);

/* After the last worker has stopped: deliver what the rules allow,
 * release every undelivered codec output, settle the run's counters. */
void mh__stream_finish(struct mh__stream *st);

/* Whether any chunk is RUNNING (a worker holds it). */
bool mh__ring_busy(const struct mh__ring *ring);

#endif /* MH_STREAM_H */
