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

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "manyhands.h"

/* Capability bits of a backend. */
#define MH__CAP_TIMEOUT (1u << 0) /* can stop an item that runs too long */
#define MH__CAP_PROCESS (1u << 1) /* workers are processes: codec needed */
#define MH__CAP_COLLECTIVE (1u << 2) /* every process of a job calls map
                                        * (mpi): see mh__run.error */
#define MH__CAP_WAKE (1u << 3) /* sleeps in poll(): the pool keeps a pipe a
                                * cancel writes to (mh__run.cancel_fd) */
#define MH__CAP_WORKER_LIMITS (1u << 4) /* enforces worker_memory_max and
                                           * worker_items_max (fork) */

/* One failure, as a backend found it. */
struct mh__failure {
    size_t index;      /* the item, or MH_NO_ITEM when none failed */
    int status;        /* MH_ITEM_FAILED, _CRASHED or _TIMED_OUT */
    int callback_code; /* fn's return for MH_ITEM_FAILED, else 0 */
    int signal;        /* for _CRASHED: the signal, or 0 */
    int exit_status;   /* for _CRASHED without a signal: exit status, or -1 */
    long pid;          /* the worker's pid, or 0 */
    size_t count;      /* failures this record stands for (>= 1) */
    int attempts;      /* runs of the item, retries included (>= 1) */
};

/* No failure: index MH_NO_ITEM. */
static inline struct mh__failure mh__failure_none(void)
{
    return (struct mh__failure){.index = MH_NO_ITEM, .exit_status = -1};
}

/* Item index failed in this process: fn returned code (or the codec
 * failed: MH_ECODEC). */
static inline struct mh__failure mh__failure_callback(size_t index, int code)
{
    return (struct mh__failure){
        .index = index, .status = MH_ITEM_FAILED, .callback_code = code,
        .exit_status = -1, .count = 1, .attempts = 1,
    };
}

/* Item index was running when its worker process ended: status is
 * MH_ITEM_CRASHED or MH_ITEM_TIMED_OUT; sig the signal or 0, exit_status
 * the exit status or -1. */
static inline struct mh__failure mh__failure_worker(size_t index, int status, int sig,
                                                    int exit_status, long pid)
{
    return (struct mh__failure){
        .index = index, .status = status, .signal = sig,
        .exit_status = exit_status, .pid = pid, .count = 1, .attempts = 1,
    };
}

/*
 * One map in flight. The core fills everything before calling the
 * backend's map and reads the failure and counters after it returns.
 * Chunk c's items are mh__chunk_bounds(run, c): the only rule for where a
 * chunk starts and ends, so that every process of a map agrees.
 */
struct mh__run {
    /* Validated; n > 0, except that a MH__CAP_COLLECTIVE backend is
     * called for n = 0 too (nchunks 0, workers 0): its peers must learn
     * this process's shape, which may differ from theirs. */
    const struct mh_task *task;
    size_t chunk;               /* items per chunk before the tail, >= 1;
                                 * no chunk is larger */
    size_t nchunks;             /* chunks in all (0 only when n is 0) */
    /* The shrinking tail of an adaptive map (mh__chunk_plan): chunks from
     * tail_chunk on start at item tail_begin and come in levels of
     * tail_width chunks of tail_top, tail_top / 2, ..., 1 items. No tail:
     * tail_chunk == nchunks and tail_begin == n. */
    size_t tail_chunk, tail_begin, tail_top, tail_width;
    int workers;                /* workers to use: min(pool's, nchunks) */
    enum mh_on_error on_error;
    double timeout_s;           /* 0: none */
    /* config.retries: more runs an item whose worker died (crash,
     * timeout) may have; backends that survive a worker's death use it. */
    int retries;
    /* More runs mh__run_range gives an item whose fn returned non-zero:
     * retries with config.retry_callback_errors, else 0. */
    int callback_retries;
    /* NULL, or per item the retries already used (fork: the crashes and
     * timeouts the caller charged, in memory a child inherits): an item's
     * callback retries come out of the same budget. */
    const int *charged;
    /* Set by a backend whose workers ran under config.worker_memory_max
     * (fork): report.memory_capped says so of a failing item. */
    bool memory_capped;
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

    /* Cancel (src/control.c, docs/design.md "Cancel"). mh_pool_cancel, or
     * a progress callback's non-zero return (mh__run_cancel), sets
     * cancelled and then *cancel_stop, both relaxed ("stop soon"; the
     * core reads cancelled after the backend has returned, ordered by
     * the pool's control handshake). cancel_stop is &stop for a map (a
     * stream: its ring's stop). cancel_flag is what mh_cancelled() reads
     * inside fn: &cancelled, unless a backend points it elsewhere (a fork
     * child: a flag in shared memory). cancel_fd becomes readable after a
     * cancel, for a MH__CAP_WAKE backend's poll (-1 otherwise); a
     * backend that sees it drains it (mh__cancel_drain) and then reads
     * cancelled. A collective backend returns MH_EINTR itself, the same
     * on every process; for the others the core does. */
    atomic_int cancelled;
    atomic_int *cancel_stop;
    atomic_int *cancel_flag;
    int cancel_fd;
    /* Resume (task->resume): items already MH_ITEM_OK when the run began.
     * Their outputs are never written; mh__run_range skips them. */
    size_t kept;
};

#include "stream.h"

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
    /* Run a stream (backends/stream.h says how) until every worker has
     * stopped and mh__stream_finish has run. Same rules as map: item
     * failures are the stream's record, not errors of this call. */
    int (*stream)(void *state, struct mh__stream *st);
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
 * entries, or NULL). Polls *stop before each item; while it runs,
 * mh_cancelled() in fn reads run->cancel_flag. With task->resume it skips
 * items whose status is already MH_ITEM_OK (outputs untouched). An item
 * whose fn fails runs again, at once, while it has callback retries left (run's
 * callback_retries less what charged says it used). Returns how many items
 * succeeded; *fail receives the first failure in the range (index
 * MH_NO_ITEM when none) and how many there were. Under MH_STOP it stops at
 * the first failure and sets *stop. Touches no other shared state, so a
 * forked child can call it on shared memory.
 */
size_t mh__run_range(const struct mh__run *run, size_t begin, size_t end,
                     void *out, uint8_t *status, atomic_int *stop,
                     struct mh__failure *fail);

/* mh__run_range's loop over count items whose inputs, outputs and
 * statuses (or NULL) start at in, out and status, the first one being
 * item `first` (the index failures carry). A stream's chunk runs
 * through it. */
size_t mh__run_items(const struct mh__run *run, const void *in, void *out,
                     uint8_t *status, size_t count, size_t first, atomic_int *stop,
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

/* Cut run->task->n items into chunks of `chunk` items, followed when
 * tail_width > 0 by a tail of chunks that halve down to one item, tail_width
 * of each size: sets chunk, nchunks and the tail fields of run. */
void mh__chunk_plan(struct mh__run *run, size_t chunk, size_t tail_width);

/* Chunk c's items, [*begin, *end), for c < run->nchunks. */
static inline void mh__chunk_bounds(const struct mh__run *run, size_t c, size_t *begin,
                                    size_t *end)
{
    if (c < run->tail_chunk) {
        *begin = c * run->chunk;
        *end = run->tail_begin - *begin < run->chunk ? run->tail_begin : *begin + run->chunk;
        return;
    }
    /* Level k of the tail has chunks of tail_top >> k items; the levels
     * before it hold tail_width * (2 * tail_top - 2 * size) items. */
    size_t t = c - run->tail_chunk, size = run->tail_top >> (t / run->tail_width);
    *begin = run->tail_begin + run->tail_width * (2 * run->tail_top - 2 * size) +
             (t % run->tail_width) * size;
    *end = *begin + size;
}

/* Items per chunk that cut n items into about `chunks` chunks, at most
 * MH__CHUNK_MAX: the adaptive chunk size of mh_map and mh_reduce. */
size_t mh__chunk_auto(size_t n, size_t chunks);

/* Past this many items a chunk's claim costs nothing per item. */
#define MH__CHUNK_MAX 4096

/* Report progress to the task's progress callback, if any. Call only from
 * the thread that called mh_map. A non-zero return from the callback
 * cancels the run (mh__run_cancel); returns whether it did. */
int mh__run_progress(struct mh__run *run);

/* Cancel run from inside the library: cancelled, then *cancel_stop. A
 * backend that sleeps still has to act (fork: stop its children). */
void mh__run_cancel(struct mh__run *run);

/* Empty a cancel descriptor (run->cancel_fd): read until it would
 * block. */
void mh__cancel_drain(int fd);

/* The MH_E* code a failed MH_ITEM_* status maps to. */
int mh__status_code(int item_status);

/*
 * Per-worker hooks (src/hooks.c, the one owner of the rule; when each
 * backend calls them: docs/backends.md, "Per-worker hooks").
 */

/* Worker's init hook, if config has one: *state is what it stored (NULL
 * without one). 0, or MH_EINIT when it returned non-zero (*state NULL). */
int mh__hook_init(const struct mh_config *config, int worker, void **state);

/* Worker's fini hook with its state, if config has one. */
void mh__hook_fini(const struct mh_config *config, int worker, void *state);

/* init for workers 0 .. count - 1 in order, on this thread, into
 * states[]; when one fails, fini for those before it, then MH_EINIT. */
int mh__hooks_init_all(const struct mh_config *config, void **states, int count);

/* fini for workers 0 .. count - 1 in order, on this thread. */
void mh__hooks_fini_all(const struct mh_config *config, void *const *states, int count);

/* Which worker this thread runs items for: what mh_worker_index() and
 * mh_worker_state() return in its callbacks. mh__worker_enter binds it
 * and returns the binding before, which mh__worker_leave restores; a
 * backend brackets each worker's item loops of a run with the pair. */
struct mh__worker {
    int index;
    void *state;
};
struct mh__worker mh__worker_enter(int index, void *state);
void mh__worker_leave(struct mh__worker previous);

/*
 * Nesting: a map called from inside any callback (fn, progress, codec)
 * runs inline instead of waiting on workers it may occupy. The core sees
 * to it — mh__run_range marks every item loop, on any thread or process,
 * and the core marks the calling thread for the whole of a backend's map
 * — so a backend that runs items through mh__run_range or mh__run_chunk
 * has nothing to do for it.
 */

/*
 * The syscall table (src/sys.c, src/fault.h): allocation and every OS call
 * of a map go through these, in the core and every backend, so that a
 * fault-injection build can make any one of them fail. Each behaves
 * exactly like the call it names (mh__pidfd_open: pidfd_open(pid, 0);
 * mh__prctl: prctl(option, arg, 0, 0, 0)). A call a backend makes
 * directly is one whose failure no test can reach: add its entry to
 * MH__SYSCALLS and a wrapper here instead.
 */
void *mh__malloc(size_t size);
void *mh__calloc(size_t count, size_t size);
void mh__free(void *p);
void *mh__mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
int mh__munmap(void *addr, size_t length);
pid_t mh__fork(void);
int mh__pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                       void *(*start)(void *), void *arg);
int mh__pipe2(int fds[2], int flags);
int mh__pidfd_open(pid_t pid);
int mh__poll(struct pollfd *fds, nfds_t nfds, int timeout_ms);
pid_t mh__waitpid(pid_t pid, int *wstatus, int options);
ssize_t mh__read(int fd, void *buf, size_t count);
ssize_t mh__write(int fd, const void *buf, size_t count);
int mh__kill(pid_t pid, int sig);
int mh__pidfd_send_signal(int pidfd, int sig); /* (pidfd, sig, NULL, 0) */
int mh__prctl(int option, unsigned long arg);
int mh__setrlimit(int resource, rlim_t soft); /* the soft limit; hard kept */
int mh__madvise(void *addr, size_t length, int advice);
/* FUTEX_WAIT on *word while it holds seen, at most timeout_ns; and
 * FUTEX_WAKE of up to count waiters. Shared futexes: they work across
 * fork on MAP_SHARED memory. A wait may end early for any reason, so
 * every caller re-checks its condition in a loop. */
int mh__futex_wait(_Atomic uint32_t *word, uint32_t seen, uint64_t timeout_ns);
int mh__futex_wake(_Atomic uint32_t *word, int count);

/* Every descriptor the library makes (mh__pipe2, mh__pidfd_open) is
 * never 0, 1 or 2: a caller may start with them closed, and its
 * callbacks' stdout must not land in ours. */

/* waitpid on one pid of ours, retrying EINTR. The status, or -1 when
 * unknown (SIGCHLD ignored, or another thread reaped it). */
int mh__reap(pid_t pid);

/* The MH_E* code for a failed OS call's errno: MH_ENOMEM (ENOMEM, EMFILE,
 * ENFILE), MH_EAGAIN, else MH_ESYS. */
int mh__errno_code(int err);

/* The monotonic clock, in seconds and in nanoseconds: the only clock for
 * deadlines and spins. */
double mh__now(void);
uint64_t mh__now_ns(void);

/* The backend every build has, and the inline path (openmp uses it for a
 * one-thread team). A backend's own table is mh__backend_<name>, defined
 * in its file; src/registry.c declares the built ones from mh_config.h. */
extern const struct mh_backend_ops mh__backend_seq;

#endif /* MH_BACKEND_H */
