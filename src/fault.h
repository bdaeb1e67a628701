/*
 * Fault injection, for test builds only (MANYHANDS_FAULT_INJECTION=ON,
 * which defines MH_FAULT_INJECTION in mh_config.h). The wrappers in
 * src/sys.c count their calls per kind; arming a kind makes its Nth call
 * from now fail once, the way the real call fails under pressure:
 *
 *   MH__FAULT_ALLOC   mh__malloc / mh__calloc return NULL (errno ENOMEM)
 *   MH__FAULT_MMAP    mh__mmap returns MAP_FAILED (errno ENOMEM)
 *   MH__FAULT_FORK    mh__fork returns -1 (errno EAGAIN)
 *   MH__FAULT_THREAD  mh__pthread_create returns EAGAIN
 *   MH__FAULT_PIPE    mh__pipe returns -1 (errno EMFILE)
 *   MH__FAULT_PIDFD   mh__pidfd_open returns -1 (errno EMFILE)
 *   MH__FAULT_POLL    mh__poll returns -1 (errno ENOMEM)
 *   MH__FAULT_WAITPID mh__reap returns -1 (errno ECHILD): the child was
 *                     reaped by someone else (really: it is reaped)
 *   MH__FAULT_READ    mh__read returns -1 (errno EIO)
 *   MH__FAULT_WRITE   mh__write returns -1 (errno EIO)
 *   MH__FAULT_KILL    mh__pidfd_signal / mh__kill return -1 (errno EPERM)
 *   MH__FAULT_PRCTL   mh__prctl returns -1 (errno EINVAL)
 *
 * mh__munmap is counted (mh__fault_live_maps) but never failed: unmapping
 * a whole mapping of ours cannot fail. Only the process that armed a kind
 * sees the fault (mh__fault_arm): a worker process forked afterwards
 * inherits the counters but never fails on them, so a test knows which
 * side of the fork it is testing. mh__fault_arm_children arms the other
 * side: every process forked afterwards fails its own Nth call, counted
 * from the armer's count at its fork; the armer never does (for calls
 * only workers make: write, prctl). curl's torture tests are the model:
 * arm N = 1, 2, ... until a run makes fewer than N calls.
 *
 * These functions are exported from the shared library only in a fault
 * injection build; tests/faults.c and tests/soak.c use them.
 */
#ifndef MH_FAULT_H
#define MH_FAULT_H

#include "manyhands.h"

enum mh__fault_kind {
    MH__FAULT_ALLOC = 0,
    MH__FAULT_MMAP = 1,
    MH__FAULT_FORK = 2,
    MH__FAULT_THREAD = 3,
    MH__FAULT_PIPE = 4,
    MH__FAULT_PIDFD = 5,
    MH__FAULT_POLL = 6,
    MH__FAULT_WAITPID = 7,
    MH__FAULT_READ = 8,
    MH__FAULT_WRITE = 9,
    MH__FAULT_KILL = 10,
    MH__FAULT_PRCTL = 11,
    MH__FAULT_KINDS = 12,
};

/* Reset kind's call count to 0 and make its nth call from now (1-based)
 * fail once, in this process; nth 0 disarms. Thread-safe. */
MH_EXPORT void mh__fault_arm(int kind, unsigned long nth);

/* The same for the processes forked after this call: each fails its own
 * nth call of kind once; this process never does. */
MH_EXPORT void mh__fault_arm_children(int kind, unsigned long nth);

/* Calls of kind since it was last armed (failed ones included). */
MH_EXPORT unsigned long mh__fault_calls(int kind);

/* Faults injected for kind since the process started. */
MH_EXPORT unsigned long mh__fault_injected(int kind);

/* Library allocations (mh__malloc / mh__calloc) not yet given to
 * mh__free, in this process: equal before and after a balanced
 * open/map/close, whatever failed in between. */
MH_EXPORT long mh__fault_live_allocs(void);

/* Library mappings (mh__mmap) not yet given to mh__munmap, in this
 * process. */
MH_EXPORT long mh__fault_live_maps(void);

#endif /* MH_FAULT_H */
