/*
 * The fork backend's stdio around each fork: what the caller had buffered
 * is written once, by the caller; what callbacks write in a child is
 * written once, by the child; and no map waits for a stdio lock another
 * thread of the caller holds (a thread blocked in fgets(stdin), or one
 * holding flockfile(stdout), may hold it for ever).
 *
 * Before a fork, a caller that has only ever had one thread
 * (__libc_single_threaded) flushes every stream: fflush(NULL) can wait
 * for nobody. Otherwise only stdout and stderr are flushed, each only if
 * ftrylockfile gets its lock; a child throws its copy of a standard
 * stream it could not flush away (__fpurge), so that nothing the caller
 * still holds is written twice. Other streams of a threaded caller are
 * not touched: there is no way to reach every FILE without taking locks.
 * A child that finishes normally flushes what it flushed before: every
 * stream, or stdout and stderr. (glibc resets every stdio lock in the
 * child of a threaded process, so the child's own flushes cannot wait.)
 */
#ifndef MH_FORK_STDIO_H
#define MH_FORK_STDIO_H

#include <stdbool.h>

struct mh__fork_stdio {
    bool all;          /* every stream was flushed (single-threaded) */
    unsigned unflushed; /* bit 0 stdout, bit 1 stderr: not flushed */
};

/* In the caller, just before fork: flush what can be without waiting. */
void mh__fork_stdio_before(struct mh__fork_stdio *s);

/* In the child, before its first callback: drop its copy of what the
 * caller could not flush. */
void mh__fork_stdio_child_start(const struct mh__fork_stdio *s);

/* In a child that finished normally, before _exit: write what its
 * callbacks left buffered. */
void mh__fork_stdio_child_end(const struct mh__fork_stdio *s);

#endif /* MH_FORK_STDIO_H */
