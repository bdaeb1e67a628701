/*
 * The backend contract — for backend writers only (users include
 * manyhands.h; the core includes src/internal.h).
 *
 * A backend is a table of function pointers plus one file. The core has
 * validated the task, resolved the config and cut the items into chunks
 * before a backend sees them; the backend's only job is to get every
 * chunk run, once, and to say what failed. Backend state hangs off the
 * pool (the `state` pointer), never off a global.
 */
#ifndef MH_BACKEND_H
#define MH_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "manyhands.h"

/* Capability bits of a backend. */
#define MH__CAP_TIMEOUT (1u << 0) /* can stop an item that runs too long */
#define MH__CAP_PROCESS (1u << 1) /* workers are processes: codec needed */
#define MH__CAP_COLLECTIVE (1u << 2) /* every process of a job calls map
                                        * (mpi): see mh__run.error */

/* One failure, as a backend found it. */
struct mh__failure {
    size_t index;      /* the item, or MH_NO_ITEM when none failed */
    int status;        /* MH_ITEM_FAILED, _CRASHED or _TIMED_OUT */
    int callback_code; /* fn's return for MH_ITEM_FAILED, else 0 */
    int signal;        /* for _CRASHED: the signal, or 0 */
    int exit_status;   /* for _CRASHED without a signal: exit status, or -1 */
    long pid;          /* the worker's pid, or 0 */
    size_t count;      /* failures this record stands for (>= 1) */
};

/*
 * One map in flight. The core fills everything before calling the
 * backend's map and reads the failure and counters after it returns.
 * Chunk c covers items [c * chunk, min((c + 1) * chunk, n)).
 */
struct mh__run {
    /* Validated; n > 0, except that a MH__CAP_COLLECTIVE backend is
     * called for n = 0 too (nchunks 0, workers 0): its peers must learn
     * this process's shape, which may differ from theirs. */
    const struct mh_task *task;
    size_t chunk;               /* items per chunk, >= 1 */
    size_t nchunks;             /* ceil(n / chunk) */
    int workers;                /* workers to use: min(pool's, nchunks) */
    enum mh_on_error on_error;
    double timeout_s;           /* 0: none */
    /* Non-zero (an MH_E* code) when the core could not prepare this
     * process's part of the map; only a MH__CAP_COLLECTIVE backend is
     * then called, to end the map on every process with that code. */
    int error;
    uint8_t *status;            /* n statuses (zeroed = NOT_RUN), or NULL */

    /* Set (relaxed) to stop handing out items: the first failure under
     * MH_STOP sets it. Workers poll it between items; a stale read only
     * runs one more item, which the status array then shows. */
    atomic_int stop;
    /* Items that finished with MH_ITEM_OK / that failed in any way. */
    atomic_size_t items_done;
    atomic_size_t items_failed;
    /* The lowest-index failure seen; written only by mh__run_fail, under
     * its lock (failures are rare, so a mutex costs nothing that shows). */
    struct mh__failure failure;
    void *fail_lock; /* pthread_mutex_t *, owned by the core */
    /* Set (relaxed, read after the map) by mh__run_codec_fail: the
     * codec could not carry some item. */
    atomic_int codec_failed;
};

struct mh_backend_ops {
    /* Name users select it by, such as "threads". */
    const char *name;
    /* MH__CAP_* bits. */
    unsigned caps;
    /* Start the backend for a resolved config (workers >= 1). On success
     * set *state (may stay NULL) and return 0; on error release everything
     * and return MH_ENOMEM, MH_EAGAIN, ... */
    int (*open)(void **state, const struct mh_config *config);
    /* Run every chunk of run once, or stop early as run->stop says. Item
     * failures go through mh__run_fail and are not errors of map; return
     * non-zero only when the backend itself failed (then the map fails
     * with that code). Called on the pool's opening process, never
     * concurrently with itself for one state. */
    int (*map)(void *state, struct mh__run *run);
    /* Release state. owner is false in a child forked after open: free
     * memory only, do not join, signal or wait for anything. */
    void (*close)(void *state, bool owner);
    /* Optional: the worker count when the backend decides it rather than
     * the config (mpi: the ranks of the job); read once, after open. */
    int (*workers)(void *state);
    /* Optional: this process's rank among the processes a map spans
     * (mpi); NULL: 0. */
    int (*rank)(void *state);
};

/* Set up run for task in chunks of chunk items (>= 1), statuses at status
 * (or NULL), failures recorded under fail_lock (a pthread_mutex_t *):
 * no failure, nothing done, one worker, no timeout, no error. */
void mh__run_init(struct mh__run *run, const struct mh_task *task, size_t chunk,
                  enum mh_on_error on_error, uint8_t *status, void *fail_lock);

/*
 * Run items [begin, end) in order, writing outputs at out (the base of an
 * array laid out like task->out) and statuses at status (base of n
 * entries, or NULL). Polls *stop before each item. Returns how many items
 * succeeded; *fail receives the first failure in the range (index
 * MH_NO_ITEM when none) and how many there were. Under MH_STOP it stops at
 * the first failure and sets *stop. Touches no other shared state, so a
 * forked child can call it on shared memory.
 */
size_t mh__run_range(const struct mh__run *run, size_t begin, size_t end,
                     void *out, uint8_t *status, atomic_int *stop,
                     struct mh__failure *fail);

/* Record a failure into run (keeps the lowest index, counts, and sets
 * run->stop under MH_STOP). Thread-safe. */
void mh__run_fail(struct mh__run *run, const struct mh__failure *fail);

/* Item i could not travel through the codec (encode or decode failed,
 * or size() asked for more than can be allocated): mark it
 * MH_ITEM_FAILED with callback_code MH_ECODEC and record it as
 * mh__run_fail does. Whoever counted it done must uncount it. */
void mh__run_codec_fail(struct mh__run *run, size_t i);

/* The code a map returns for run's recorded failure: MH_ECODEC when it
 * is an item the codec could not carry, else its status's code (MH_OK
 * when nothing failed). */
int mh__run_failure_code(const struct mh__run *run);

/* Run chunk c in this process on task->out and run->status, count it and
 * record its failure. Returns 0, or the MH_E* code of its failure. */
int mh__run_chunk(struct mh__run *run, size_t c);

/* Report progress to the task's progress callback, if any. Call only from
 * the thread that called mh_map. */
void mh__run_progress(struct mh__run *run);

/* The MH_E* code a failed MH_ITEM_* status maps to. */
int mh__status_code(int item_status);

/*
 * Nesting depth of callbacks on this thread. A worker thread or process
 * raises it while it runs callbacks, so that a map called from inside a
 * callback runs inline instead of waiting on the workers it occupies.
 */
extern _Thread_local int mh__callback_depth;

/*
 * Allocation and the OS calls that start workers go through these, in the
 * library and every backend, so that a fault-injection build can make any
 * one of them fail (src/sys.c). They behave exactly like the calls named.
 */
void *mh__malloc(size_t size);
void *mh__calloc(size_t count, size_t size);
void mh__free(void *p);
void *mh__mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
pid_t mh__fork(void);
int mh__pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                       void *(*start)(void *), void *arg);

/* Every descriptor the library makes, never 0, 1 or 2 (a caller may
 * start with them closed, and its callbacks' stdout must not land in
 * ours). Both set errno and return -1 on error. A close-on-exec pipe; a
 * pidfd (pidfd_open, Linux 5.3), close-on-exec as pidfds are. */
int mh__pipe(int fds[2]);
int mh__pidfd_open(pid_t pid);

/* waitpid on one pid of ours, retrying EINTR. The status, or -1 when
 * unknown (SIGCHLD ignored, or another thread reaped it). */
int mh__reap(pid_t pid);

/* Monotonic clock, seconds. */
double mh__now(void);

/* The built backends. */
extern const struct mh_backend_ops mh__backend_seq;
extern const struct mh_backend_ops mh__backend_threads;
extern const struct mh_backend_ops mh__backend_openmp;
extern const struct mh_backend_ops mh__backend_fork;
extern const struct mh_backend_ops mh__backend_mpi;

#endif /* MH_BACKEND_H */
