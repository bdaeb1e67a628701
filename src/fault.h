/*
 * The syscall table and its fault injection.
 *
 * Every OS call a map makes goes through a wrapper in src/sys.c
 * (declared in backends/backend.h), one entry of MH__SYSCALLS each — the
 * idea of SQLite's aSyscall[]: one place where every call can be counted
 * and made to fail. In a test build (MANYHANDS_FAULT_INJECTION=ON, which
 * defines MH_FAULT_INJECTION in mh_config.h) the wrappers count their
 * calls per entry; arming an entry makes its Nth call from now fail once,
 * without being made, the way the real call fails: returning its error
 * value with errno set to the entry's errno (mh__pthread_create returns
 * it). In other builds the wrappers only call through.
 *
 * mh__fault_arm: only the arming process sees the fault; a worker process
 * forked afterwards inherits the counters but never fails on them, so a
 * test knows which side of the fork it is testing. curl's torture tests
 * are the model: arm N = 1, 2, ... until a run makes fewer than N calls.
 * mh__fault_arm_children: the other side — calls made only in a worker
 * process (prctl, the child's writes) fail there, counted from its fork.
 *
 * These functions are exported from the shared library only in a fault
 * injection build; tests/faults.c and tests/soak.c use them.
 */
#ifndef MH_FAULT_H
#define MH_FAULT_H

#include <errno.h>

#include "manyhands.h"

/* X(KIND, name, errno of a failed call); the wrappers are mh__<call>. */
#define MH__SYSCALLS(X)                                                       \
    X(ALLOC, alloc, ENOMEM)           /* mh__malloc, mh__calloc */            \
    X(MMAP, mmap, ENOMEM)                                                     \
    X(FORK, fork, EAGAIN)                                                     \
    X(THREAD, thread, EAGAIN)         /* mh__pthread_create */                \
    X(MUNMAP, munmap, EINVAL)                                                 \
    X(PIPE2, pipe2, EMFILE)                                                   \
    X(PIDFD_OPEN, pidfd_open, EMFILE)                                         \
    X(POLL, poll, ENOMEM)                                                     \
    X(WAITPID, waitpid, ECHILD)                                               \
    X(READ, read, EIO)                                                        \
    X(WRITE, write, EIO)                                                      \
    X(KILL, kill, EPERM)                                                      \
    X(PIDFD_SEND_SIGNAL, pidfd_send_signal, EPERM)                            \
    X(PRCTL, prctl, EINVAL)                                                   \
    X(FUTEX, futex, EINTR)            /* a wait ends early: callers loop */ \
    X(SETRLIMIT, setrlimit, EPERM)                                            \
    X(MADVISE, madvise, ENOMEM)       /* fork's output pages: callers go on */

enum mh__fault_kind {
#define MH__FAULT_ENUM_(kind, name, err) MH__FAULT_##kind,
    MH__SYSCALLS(MH__FAULT_ENUM_)
#undef MH__FAULT_ENUM_
    MH__FAULT_KINDS
};

/* Reset kind's call count to 0 and make its nth call from now (1-based)
 * fail once, in this process; nth 0 disarms. Thread-safe. */
MH_EXPORT void mh__fault_arm(int kind, unsigned long nth);

/* Make the nth call of kind (1-based, counted from the fork) fail once in
 * every worker process forked by the library from now on, and never in
 * this one; nth 0 disarms. Thread-safe. */
MH_EXPORT void mh__fault_arm_children(int kind, unsigned long nth);

/* Calls of kind in this process since it was last armed (failed ones
 * included). */
MH_EXPORT unsigned long mh__fault_calls(int kind);

/* Faults injected for kind in this process since it started. */
MH_EXPORT unsigned long mh__fault_injected(int kind);

/* The entry's name ("pipe2"), or NULL for no such kind. */
MH_EXPORT const char *mh__fault_name(int kind);

/* The code a map or pool_open returns when a call of kind fails and the
 * library cannot do without it: the errno of a failed call, as
 * mh__errno_code translates it. */
MH_EXPORT int mh__fault_code(int kind);

/* Library allocations (mh__malloc / mh__calloc) not yet given to
 * mh__free, in this process: equal before and after a balanced
 * open/map/close, whatever failed in between. */
MH_EXPORT long mh__fault_live_allocs(void);

/* Library mappings (mh__mmap) not yet given to mh__munmap, in this
 * process. */
MH_EXPORT long mh__fault_live_maps(void);

#endif /* MH_FAULT_H */
