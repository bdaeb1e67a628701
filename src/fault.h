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
 *
 * Only the process that armed a kind sees the fault: a worker process
 * forked afterwards inherits the counters but never fails on them, so a
 * test knows which side of the fork it is testing. curl's torture tests
 * are the model: arm N = 1, 2, ... until a run makes fewer than N calls.
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
    MH__FAULT_KINDS = 4,
};

/* Reset kind's call count to 0 and make its nth call from now (1-based)
 * fail once, in this process; nth 0 disarms. Thread-safe. */
MH_EXPORT void mh__fault_arm(int kind, unsigned long nth);

/* Calls of kind since it was last armed (failed ones included). */
MH_EXPORT unsigned long mh__fault_calls(int kind);

/* Faults injected for kind since the process started. */
MH_EXPORT unsigned long mh__fault_injected(int kind);

/* Library allocations (mh__malloc / mh__calloc) not yet given to
 * mh__free, in this process: equal before and after a balanced
 * open/map/close, whatever failed in between. */
MH_EXPORT long mh__fault_live_allocs(void);

#endif /* MH_FAULT_H */
