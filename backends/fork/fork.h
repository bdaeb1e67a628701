/*
 * The fork backend's own definitions, shared by the files of
 * backends/fork/ (ops.c's header says which file does what; the design is
 * docs/backends.md, "fork"): the shared region's layout, the caller's
 * view of a child, and the calls between the files.
 */
#ifndef MH_FORK_H
#define MH_FORK_H

#include <poll.h>

#include "backend.h"
#include "records.h"
#include "fork_stdio.h"

/* Bytes in each half of a child's record arena. */
#define FORK_HALF ((size_t)256 * 1024)
/* Seconds between SIGTERM and SIGKILL. */
#define FORK_GRACE_S 0.2
/* Seconds between progress reports while waiting. */
#define FORK_TICK_S 0.1
/* Seconds between the caller's looks for finished chunks to copy out,
 * at first and after a look that found some; doubled, up to FORK_TICK_S,
 * after each that found none. */
#define FORK_COPY_WAIT_S 0.001
/* Exit status of a child whose parent died before it started. */
#define FORK_EXIT_ORPHAN 125
/* Exit status of a child whose own OS call failed (its slot says so). */
#define FORK_EXIT_SYS 126
/* Exit status of a child whose init hook failed (its slot says so). */
#define FORK_EXIT_INIT 124

/* The counters every child shares. */
struct fork_shared {
    atomic_size_t next; /* next chunk to claim (relaxed: a counter only) */
    atomic_int stop;    /* stop claiming (relaxed: "stop soon", guards no data) */
    atomic_int codec_failed; /* a child's encode failed (relaxed: read after
                              * every child has ended) */
    atomic_int cancelled; /* the map is cancelled: what mh_cancelled()
                           * reads in a child (relaxed, set before stop) */
    /* With an init hook, no child runs an item before every first child
     * of the map has run its init (fork_child_gate): init_left counts
     * those still in it, init_failed says one failed (then none runs
     * items), init_gate is the futex word bumped after either changes.
     * All acq_rel / acquire: a child that passes the gate sees why. */
    atomic_int init_left;
    atomic_int init_failed;
    _Atomic uint32_t init_gate;
};

/*
 * One child's slot in the shared region, on its own cache lines. Written
 * by the child, read by the caller while the child runs and after it ends.
 * The child publishes the chunk it is in (lo, hi) once per chunk; the item
 * it died in is then the first of them the status array does not settle.
 * Only where an item's own time or its encode matters (a timeout, a codec)
 * does it also publish the item (busy) around each one.
 */
struct fork_slot {
    _Alignas(64) atomic_size_t busy; /* item running, or MH_NO_ITEM; release
                                      * after started_ns, so the caller never
                                      * pairs an item with an older start */
    _Atomic uint64_t started_ns;     /* when busy began (only with a timeout) */
    atomic_size_t lo, hi;            /* the chunk being run (relaxed: read
                                      * after the child ended) */
    atomic_size_t done;              /* items OK in this child (relaxed) */
    atomic_int finished;             /* 1 (release): every result handed over */
    atomic_int sys_failed;           /* 1 (release): an OS call of the child
                                      * failed; it ended with FORK_EXIT_SYS */
    atomic_int has_fail;             /* 1 (release) once fail is written */
    atomic_int inited;               /* 1 (release): past its init hook */
    atomic_int init_failed;          /* 1 (release): its init hook failed;
                                      * it ended with FORK_EXIT_INIT */
    atomic_int recycled;             /* 1 (release, before finished): it ran
                                      * worker_items_max items and ended
                                      * cleanly, to be replaced */
    struct mh__failure fail;         /* the child's first item failure */
    /* Futex words, one per arena half: 1 (release, by the child) while the
     * caller owns the half, 0 (release, by the caller) once it is drained. */
    _Atomic uint32_t ready[2];
    size_t len[2]; /* bytes published in each half, ordered by ready */
};

/*
 * A child's life, as the caller sees it: one value. UNFORKED (zero) and
 * REAPED have no child; every state between is a child that is ours to
 * reap. STOPPING and TIMING_OUT have a deadline (term_at + the grace);
 * the KILLED states have none left.
 */
enum fork_life {
    FORK_UNFORKED = 0,   /* no child in this slot yet */
    FORK_RUNNING,        /* forked, watched through its pidfd */
    FORK_GONE,           /* ended and reaped by someone else before its
                          * pidfd could be opened: no pidfd */
    FORK_STOPPING,       /* SIGTERM sent to stop the map: not a failure */
    FORK_TIMING_OUT,     /* SIGTERM sent: item timed_out ran too long */
    FORK_KILLED,         /* SIGKILL sent to stop the map (grace over, or
                          * its stream was corrupt): not an item failure */
    FORK_TIMEOUT_KILLED, /* SIGKILL sent after TIMING_OUT's grace */
    FORK_REAPED,         /* reaped: the slot may take a fresh child */
};

/* The caller's view of one child. */
struct fork_worker {
    enum fork_life life;
    pid_t pid;
    int pidfd;               /* RUNNING and the signalled states; else -1 */
    size_t timed_out;        /* TIMING_OUT, TIMEOUT_KILLED: the item */
    double term_at;          /* STOPPING, TIMING_OUT: when SIGTERM went */
    size_t redo_lo, redo_hi; /* range a fresh child runs first; children
                              * read it from their copy of this memory */
    size_t retired_done;     /* items OK by earlier children of this slot */
    struct mh__record_stream stream;
};

/* A pool's state: the shared region of its last map, when that was large
 * enough to keep (region.c), or NULL. */
struct fork_state {
    void *region;
    size_t size;
    const struct mh_config *config; /* the pool's: hooks, cap, recycling */
};

/* Everything one map needs; the children inherit a copy. */
struct fork_map {
    struct mh__run *run;
    const struct mh_task *task;
    const struct mh_codec *codec;
    int nworkers;               /* slots */
    pid_t parent;
    struct fork_state *state;
    void *region;
    size_t region_size;
    bool reused;                /* region held a previous map's data */
    struct fork_shared *sh;
    struct fork_slot *slots;
    uint8_t *sstatus;           /* n statuses, shared */
    atomic_uchar *chunk_done;   /* nchunks flags, shared: 1 (release, by
                                 * the child) once chunk c ran whole; NULL
                                 * where results are not copied early */
    unsigned char *sout;        /* n outputs, shared (no codec) */
    unsigned char *arenas;      /* 2 * FORK_HALF per slot (codec) */
    uint8_t *pstatus;           /* run->status: the caller's (codec) */
    void *out_kept;             /* task->out's whole pages kept from the */
    size_t out_kept_len;        /* children (fork_out_keep), or NULL, 0 */
    int bell[2];                /* doorbell pipe (codec) */
    struct fork_worker *workers;
    struct pollfd *fds;         /* nworkers + 1, for fork_wait */
    int *slot_of;               /* fds[k] is slot_of[k]'s pidfd */
    int live;                   /* workers whose child is not yet reaped */
    int nfixed;                 /* fds[] before the pidfds: doorbell, cancel */
    bool cancelling;            /* a cancel stopped the children */
    int *charged;               /* per item, retries used (retry.c), or
                                 * NULL when the map has none */
    size_t delivered;           /* codec results decoded */
    size_t copied_chunks;       /* chunks below it are copied out */
    size_t copied;              /* ... which is items below this */
    double copy_wait;           /* seconds the caller sleeps before it
                                 * looks for finished chunks again */
    bool init_failed;           /* a child's init hook failed: MH_EINIT */
    int rc;                     /* the backend's own failure, or 0 */
    /* The child's life fork_spawn starts; NULL: a map's (fork_child). */
    void (*child)(const struct fork_map *m, int s,
                  const struct mh__fork_stdio *stdio); /* never returns */
};

static inline bool fork_live(const struct fork_worker *w)
{
    return w->life != FORK_UNFORKED && w->life != FORK_REAPED;
}

/* Keep the map's first backend failure. */
static inline void fork_set_rc(struct fork_map *m, int rc)
{
    if (rc && !m->rc)
        m->rc = rc;
}

/* region.c: the shared region */
int fork_region_map(struct fork_map *m);
int fork_region_fresh(struct fork_map *m, size_t size);
void fork_region_unmap(struct fork_map *m);
int fork_region_drop(struct fork_state *st);
void fork_region_clear_out(const struct fork_map *m, size_t lo, size_t hi);
void fork_out_keep(struct fork_map *m);
void fork_out_release(struct fork_map *m);
void fork_slot_reset(struct fork_slot *slot);
unsigned char *fork_half(const struct fork_map *m, int s, int half);
bool fork_item_settled(const struct fork_map *m, size_t i);
size_t fork_first_open(const struct fork_map *m, size_t lo, size_t hi);

/* child.c: a child's whole life */
_Noreturn void fork_child(const struct fork_map *m, int s, const struct mh__fork_stdio *stdio);
/* In a fresh child (of a map or a stream), before its first item: the
 * memory cap (worker_memory_max), then the init hook as worker `index`.
 * 0, MH_ESYS (the cap could not be set) or MH_EINIT (*state NULL). */
int fork_child_hooks_init(const struct mh_config *config, int index, void **state);
/* In a child after its last item: the fini hook. */
void fork_child_hooks_fini(const struct mh_config *config, int index, void *state);
/* Wake every child waiting at the init gate (after init_left or
 * init_failed changed). */
void fork_init_gate_bump(struct fork_shared *sh);

/* spawn.c: starting, signalling and reaping children */
int fork_spawn(struct fork_map *m, int s);
void fork_signal(struct fork_map *m, struct fork_worker *w, int sig);
int fork_reap(struct fork_map *m, int s);
void fork_kill_all(struct fork_map *m);

/* wait.c: the caller's wait */
void fork_wait(struct fork_map *m);
double fork_item_ran(const struct fork_map *m, int s, uint64_t now_ns, size_t *item);
void fork_enforce(struct fork_map *m, double now);
void fork_check_cancel(struct fork_map *m);

/* blame.c: what a failure or a child's end means for the map */
struct mh__failure fork_codec_failed(const struct fork_map *m, size_t i);
void fork_stop_all(struct fork_map *m);
void fork_kill_stream(struct fork_map *m, struct fork_worker *w);
void fork_after_end(struct fork_map *m, int s, enum fork_life was, int wstatus);

/* retry.c: the retries charged per item */
int fork_retry_open(struct fork_map *m);
void fork_retry_close(struct fork_map *m);
bool fork_retry_charge(struct fork_map *m, size_t i);
bool fork_retry_charge_seq(struct fork_map *m, size_t *keys, size_t at, size_t seq);
int fork_retry_attempts(const struct fork_map *m, size_t i);

/* stream.c: the ops table's stream slot (stream_fork.h) */
int fork_stream(void *state, struct mh__stream *st);

/* collect.c: results into task->out */
void fork_drain_bells(struct fork_map *m);
size_t fork_count_done(const struct fork_map *m);
/* Every item OK, by the children's counts (no codec, children ended). */
bool fork_all_ok(const struct fork_map *m);
void fork_collect(struct fork_map *m);
void fork_copy_finished(struct fork_map *m);

#endif /* MH_FORK_H */
