/*
 * The fork backend's stream (docs/backends.md, fork, "Streams"): children
 * forked once per stream, fed through the core's shared ring
 * (backends/stream.h), each claiming chunks as its own slot number.
 *
 *   stream.c        the op: the region, starting children, the caller's
 *                   loop (pump, wait on done_seq, look at pidfds), the end
 *   stream_child.c  a child's life: claim, run, mark done or encode
 *   stream_blame.c  a child's end, timeouts, codec records into the ring
 *
 * A child's slot (struct fork_slot, the map's) says which item it runs
 * (busy, started_ns: with a timeout or a codec) and hands over its arena
 * halves (codec). Records carry index c * (chunk + 1) + k: item k of
 * chunk c, or k == count, the chunk's end, after which the caller marks
 * chunk c DONE (so DONE always means "decoded, the caller can read it").
 */
#ifndef MH_FORK_STREAM_H
#define MH_FORK_STREAM_H

#include "fork.h"

/* Longest the caller sleeps on done_seq before it looks at its
 * children's pidfds (a death wakes nobody). */
#define FSTREAM_SLICE_NS ((uint64_t)2000000)
/* While chunks keep completing: how often it looks at them anyway. */
#define FSTREAM_LOOK_NS ((uint64_t)1000000)
/* Seconds children get to exit on their own at the end. */
#define FSTREAM_EXIT_S 2.0

/* The caller's own per-child bookkeeping (children read their copy). */
struct fstream_kid {
    size_t redo;  /* chunk a fresh child finishes first: its state is
                   * RUNNING by this slot; or MH_NO_ITEM */
    int half;     /* codec: the arena half whose records come next */
    struct mh__failure fail; /* codec: decode failures of the chunk being
                              * received, merged into it when it is done */
};

struct fstream {
    struct fork_map m; /* first: the map's machinery (slots, arenas,
                        * workers, pidfds, reaping) takes &m */
    struct mh__stream *st;
    struct mh__ring *ring;
    struct fstream_kid *kids;
    /* Per slot, shared: 1 (release, then a futex wake) once the caller
     * watches the child through its pidfd. A child claims nothing before:
     * one killed because its pidfd could not be opened holds no chunk. */
    _Atomic uint32_t *gates;
    int started;       /* slots that have had a child */
    bool no_spin;      /* more children than CPUs: sleep at once */
    bool one_item;     /* a timeout or a codec: publish each item */
    uint64_t looked_ns; /* when the pidfds were last looked at */
};

/* stream_child.c */
_Noreturn void fstream_child(const struct fork_map *m, int s,
                             const struct mh__fork_stdio *stdio);
void fstream_fail_merge(struct mh__failure *into, const struct mh__failure *fail);

/* stream_blame.c */
int fstream_spawn(struct fstream *fs, int s);
void fstream_stop(struct mh__ring *ring);
void fstream_take(struct fstream *fs, int s);
int fstream_watch(struct fstream *fs, bool *gone);
void fstream_look(struct fstream *fs);
bool fstream_init_ended(const struct fstream *fs, int s, enum fork_life was);
void fstream_enforce(struct fstream *fs);
uint64_t fstream_slice_ns(const struct fstream *fs);
void fstream_reap_all(struct fstream *fs);

#endif /* MH_FORK_STREAM_H */
