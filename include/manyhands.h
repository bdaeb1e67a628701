/*
 * manyhands — run one function over many items, in parallel, on a backend
 * chosen at build time and picked at run time by name.
 *
 * This is the library's only public header. Everything here is prefixed
 * `mh_` / `MH_`. Functions return 0 or a negative MH_E* code; results come
 * back through out-parameters. The library never aborts, prints or exits.
 *
 *     mh_pool *pool;
 *     int rc = mh_pool_open(&pool, NULL);          // defaults, or env
 *     struct mh_task task = {
 *         .n = n, .in = xs, .in_size = sizeof *xs,
 *         .out = ys, .out_size = sizeof *ys, .fn = square,
 *     };
 *     struct mh_report report;
 *     rc = mh_map(pool, &task, &report);           // ys[i] = square(xs[i])
 *     mh_pool_close(pool);
 */
#ifndef MANYHANDS_H
#define MANYHANDS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MH_BUILDING) && defined(__GNUC__)
#define MH_EXPORT __attribute__((visibility("default")))
#else
#define MH_EXPORT
#endif

#define MH_VERSION_MAJOR 0
#define MH_VERSION_MINOR 2
#define MH_VERSION_PATCH 0

/* ------------------------------------------------------------------ errors */

/*
 * Every error the library returns, with a stable value and a message.
 * X(name, value, message); MH_<name> is the code.
 */
#define MH_ERRNO_MAP(X)                                                       \
    X(EINVAL, -1, "invalid argument")                                         \
    X(EOVERFLOW, -2, "item count times item size overflows size_t")           \
    X(ENOMEM, -3, "out of memory")                                            \
    X(EAGAIN, -4, "could not start a worker (fork or thread creation failed)") \
    X(ENOTSUP, -5, "backend unknown, not built, or feature not supported")    \
    X(ECALLBACK, -6, "the callback returned an error for an item")            \
    X(EWORKER, -7, "a worker process died (signal, or exit without result)")  \
    X(ETIMEDOUT, -8, "an item ran past the per-item timeout")                 \
    X(EDEADLK, -9, "the call would deadlock")                                 \
    X(EBUSY, -10, "the pool is busy")                                         \
    X(ERANGE, -11, "an encoded result does not fit its record")               \
    X(ECODEC, -12, "the output codec failed to encode or decode an item")     \
    X(ESYS, -13, "a system call failed unexpectedly")                         \
    X(EMPI, -14, "the MPI library reported an error")                         \
    X(EINTR, -15, "cancelled: mh_pool_cancel, or progress returned non-zero") \
    X(ESOURCE, -16, "the stream's source reported an error")                 \
    X(ESINK, -17, "the stream's sink asked to stop")                         \
    X(EINIT, -18, "a worker's init hook failed")

enum mh_error {
    MH_OK = 0,
#define MH_ERRNO_ENUM_(name, value, msg) MH_##name = (value),
    MH_ERRNO_MAP(MH_ERRNO_ENUM_)
#undef MH_ERRNO_ENUM_
};

/** Message for an MH_* code ("unknown error" for anything else). Never NULL. */
MH_EXPORT const char *mh_strerror(int code);

/** Name of an MH_* code, such as "MH_EINVAL" ("MH_UNKNOWN" otherwise). */
MH_EXPORT const char *mh_err_name(int code);

/* ------------------------------------------------------------------- pools */

/** An open pool: a backend and its workers. Opaque. */
typedef struct mh_pool mh_pool;

/** What a map does when an item fails. */
enum mh_on_error {
    MH_STOP = 0,     /* stop handing out items; the map returns the error */
    MH_CONTINUE = 1, /* run every other item; failures are marked in status */
};

/** Most workers a pool will run; larger requests are clamped to this. */
#define MH_WORKERS_MAX 1024

/*
 * Pool configuration. A zeroed struct (or a NULL pointer) means defaults.
 */
struct mh_config {
    /* Backend name ("seq", "threads", ...). NULL: $MANYHANDS_BACKEND, else
     * the best backend this build has (first of mh_backends()) that needs
     * no launcher: "mpi" is used only when named. */
    const char *backend;
    /* Worker count. 0: $MANYHANDS_WORKERS, else the CPUs this process may
     * run on (sched_getaffinity). Negative: MH_EINVAL. Above
     * MH_WORKERS_MAX: clamped. For "mpi" the rank count decides instead. */
    int workers;
    /* Items handed out at a time. 0: adaptive (about 64 chunks per worker,
     * at most 4096 items each, then chunks that halve down to one item as
     * the map nears its end; report.chunk gives the largest). */
    size_t chunk;
    /* Per-item time limit in seconds; 0 means none. Only backends that can
     * stop a running item (processes: "fork") accept it; the others fail
     * mh_pool_open with MH_ENOTSUP rather than ignore it. What counts is
     * the item's own time (fn, then its codec encode): a worker waiting
     * for a slow caller to take its results is not charged to any item. */
    double timeout_s;
    /* MH_STOP (default) or MH_CONTINUE. */
    enum mh_on_error on_error;

    /* Retries: an item whose worker crashed or timed out runs again, in a
     * fresh worker, up to this many more times (only the item that was
     * running is charged). 0: none. Negative: MH_EINVAL. Only "fork"
     * retries crashes and timeouts; docs/backends.md says what the others
     * do. */
    int retries;
    /* Non-zero: retry items whose callback returned non-zero too (on
     * every backend), up to `retries` more times. */
    int retry_callback_errors;
    /* "fork": each child runs under this address-space limit in bytes
     * (RLIMIT_AS, which counts what the child inherited from the caller
     * too), so a runaway item fails alone and report.memory_capped says
     * so; 0: none. Other backends: MH_ENOTSUP. */
    size_t worker_memory_max;
    /* "fork": a child is replaced by a fresh one after it has run this
     * many items (a callback that leaks); 0: never. Other backends:
     * MH_ENOTSUP. */
    size_t worker_items_max;

    /* Per-worker hooks, NULL: none. init runs once per worker (thread,
     * process or rank) before its first item, with the worker's index
     * (0 .. workers - 1); what it stores in *state is what
     * mh_worker_state() returns in that worker's callbacks. Non-zero
     * fails the open or run with MH_EINIT before any item runs, after
     * fini has run for the workers already initialised. fini runs once
     * per worker after its last item. When they run, per backend: seq
     * (one worker, 0) and threads per pool (open and close; threads: on
     * the opening thread, the caller of a map being worker workers - 1),
     * openmp per run in each team thread, fork in
     * each child per map or stream (the place to reopen what must not
     * cross a fork; a child that replaces another, after a crash or
     * worker_items_max, runs its own: when that fails the map stops with
     * MH_EINIT, keeping what had finished), mpi per pool on each rank. */
    int (*init)(int worker, void **state, void *ctx);
    void (*fini)(int worker, void *state, void *ctx);
    void *hook_ctx; /* passed to init and fini */
};

/**
 * Open a pool: resolve the config, then start the backend's workers.
 * On success *pool is set and 0 returned; on error *pool is NULL and
 * nothing is left running. Errors: MH_EINVAL (NULL pool, bad config or
 * environment value), MH_ENOTSUP (backend unknown or not in this build, or
 * a timeout on a backend that cannot enforce one), MH_ENOMEM, MH_EAGAIN,
 * MH_EMPI.
 *
 * "mpi" and MPI's lifetime: a program that initialised MPI itself owns
 * it, and finalises it after closing its pools. Otherwise the first open
 * calls MPI_Init_thread (MPI_THREAD_MULTIPLE asked) and registers an
 * atexit hook that calls MPI_Finalize at exit — never mh_pool_close, as
 * MPI cannot start twice; so MPI stays up between pools, an atexit
 * handler registered before that open runs after MPI is finalised, and a
 * map still running at exit (exit() from a callback) leaves MPI
 * unfinalised for the launcher to end the job. After MPI_Finalize, an
 * "mpi" open fails with MH_EMPI. See docs/backends.md "mpi".
 */
MH_EXPORT int mh_pool_open(mh_pool **pool, const struct mh_config *config);

/**
 * Stop the pool's workers, wait for them, release everything. NULL is a
 * no-op. Must not be called while a map on this pool is running. In a
 * child process forked after the pool was opened, it only frees memory.
 */
MH_EXPORT void mh_pool_close(mh_pool *pool);

/** The backend's name, such as "threads". */
MH_EXPORT const char *mh_pool_backend(const mh_pool *pool);

/** The resolved worker count (at least 1). */
MH_EXPORT int mh_pool_workers(const mh_pool *pool);

/**
 * This process's place among the processes a map on pool spans: for "mpi"
 * its rank in the job (maps are collective, and only rank 0 receives the
 * results), 0 for every other backend. A program that every rank runs
 * uses it to read results on rank 0 only. 0 for NULL.
 */
MH_EXPORT int mh_pool_rank(const mh_pool *pool);

/**
 * The backends this build has, best first, as a NULL-terminated list of
 * names. "seq" is always present (and last).
 */
MH_EXPORT const char *const *mh_backends(void);

/**
 * Cancel the map or stream running on pool, or, when none is, the next
 * one to start: one cancel ends one run, which returns MH_EINTR. No new
 * item starts; seq, threads and openmp let running items finish (a long
 * item asks mh_cancelled()); fork sends running children SIGTERM, then
 * SIGKILL after a grace period; on mpi a cancel on any rank ends the run
 * on every rank, all returning MH_EINTR. Finished results are kept as the
 * status array says; items stopped while running are MH_ITEM_CANCELLED,
 * never-started ones MH_ITEM_NOT_RUN.
 *
 * Async-signal-safe, and safe from any thread: it only stores to atomics
 * and writes one byte to a pipe. NULL is a no-op. docs/design.md,
 * "Cancel", shows the Ctrl-C pattern.
 */
MH_EXPORT void mh_pool_cancel(mh_pool *pool);

/**
 * Inside a callback: non-zero when the run it belongs to is being
 * cancelled, so a long item can return early. 0 outside any run.
 */
MH_EXPORT int mh_cancelled(void);

/**
 * Inside a callback: the index of the worker running it (0 .. workers -
 * 1), and the state its init hook stored (NULL without one). -1 and NULL
 * outside any run.
 */
MH_EXPORT int mh_worker_index(void);
MH_EXPORT void *mh_worker_state(void);

/** The library version, "MAJOR.MINOR.PATCH". */
MH_EXPORT const char *mh_version(void);

/* ------------------------------------------------------------------- tasks */

/**
 * The function a map runs once per item: read `in`, write `out`, return 0
 * or any non-zero value for failure (reported as MH_ECALLBACK, the value
 * kept in the report). It runs concurrently with itself on other items.
 * A failing call must not leave memory owned by `out`.
 */
typedef int (*mh_fn)(const void *in, void *out, void *ctx);

/**
 * How output items that own memory (a GMP mpz_t, a heap string) travel
 * between processes. Backends that share the caller's memory never use it;
 * "fork" and "mpi" encode in the worker and decode in the caller. All four
 * slots are required when a codec is given.
 */
struct mh_codec {
    /* Bytes needed to encode *item. */
    size_t (*size)(const void *item, void *ctx);
    /* Encode *item into buf[0..len) where len == size(item); 0 or non-zero. */
    int (*encode)(const void *item, void *buf, size_t len, void *ctx);
    /* Build *item (uninitialised) from buf[0..len); 0 or non-zero. */
    int (*decode)(void *item, const void *buf, size_t len, void *ctx);
    /* Release what *item owns. */
    void (*clear)(void *item, void *ctx);
};

/** Per-item outcome, written to mh_task.status when it is given. */
enum mh_item_status {
    MH_ITEM_NOT_RUN = 0,   /* never started (the map stopped first) */
    MH_ITEM_OK = 1,        /* out[i] holds the result */
    MH_ITEM_FAILED = 2,    /* the callback returned non-zero */
    MH_ITEM_CRASHED = 3,   /* the worker died while running it */
    MH_ITEM_TIMED_OUT = 4, /* it ran past the per-item timeout itself */
    MH_ITEM_CANCELLED = 5, /* running when the run was cancelled, and
                            * stopped (fork: its worker was killed) */
};

/** Name of an MH_ITEM_* value, such as "ok". */
MH_EXPORT const char *mh_item_status_name(int status);

/**
 * One map: out[i] = fn(in[i]) for i in [0, n), in input order.
 *
 * With a codec, each successful out[i] owns memory the caller releases
 * with codec->clear. When the map fails and no status array was given, the
 * library clears every result it produced first (out then owns nothing);
 * with a status array, results whose status is MH_ITEM_OK are kept.
 */
struct mh_task {
    size_t n;             /* item count; 0 is a map that runs nothing */
    const void *in;       /* n items of in_size bytes */
    size_t in_size;
    void *out;            /* n items of out_size bytes */
    size_t out_size;
    mh_fn fn;
    void *ctx;            /* passed to fn, codec and progress */
    const struct mh_codec *codec; /* NULL: outputs are plain bytes */
    uint8_t *status;      /* NULL, or n MH_ITEM_* values written by the map */
    /* NULL, or called on the calling thread as items complete, with the
     * count done so far; the last call has done == n on success. A
     * non-zero return cancels the run (MH_EINTR), as mh_pool_cancel. */
    int (*progress)(size_t done, size_t n, void *ctx);
    /* Non-zero: resume an earlier run of this task. status (required:
     * MH_EINVAL without) holds that run's outcome; only items not
     * MH_ITEM_OK run, and the others' outputs are left untouched (codec
     * outputs included). The report's items_done and progress count the
     * kept items too. */
    int resume;
};

/** Index meaning "no item" in a report. */
#define MH_NO_ITEM SIZE_MAX

/** What a map did. Filled on success and on failure after validation. */
struct mh_report {
    int code;              /* what the call returned */
    const char *backend;   /* backend that ran the map */
    int workers;           /* workers that took part */
    size_t chunk;          /* items per chunk used */
    size_t items_done;     /* items with MH_ITEM_OK */
    size_t items_failed;   /* items failed, crashed or timed out */
    size_t failed_index;   /* lowest failing item, or MH_NO_ITEM */
    int failed_status;     /* its MH_ITEM_* value, or MH_ITEM_OK */
    int callback_code;     /* fn's return for it, 0 when it did not return */
    int worker_signal;     /* signal that killed its worker, or 0 */
    int worker_exit;       /* exit status of a worker that quit without a
                            * result, or -1 */
    long worker_pid;       /* that worker's pid, or 0 */
    int attempts;          /* runs of the failing item (1 + retries used),
                            * or 0 */
    int memory_capped;     /* its worker ran under worker_memory_max */
    double wall_s;         /* wall-clock seconds the map took */
};

/**
 * Run task on pool. Returns 0 when every item succeeded. Errors before any
 * item runs: MH_EINVAL (NULL pool, task or fn; NULL in/out with n > 0;
 * zero sizes; incomplete codec), MH_EOVERFLOW (n * size overflows),
 * MH_ENOMEM, MH_EAGAIN (workers that start per map could not: "fork"'s
 * processes, the threads of an "openmp" team; docs/backends.md says what
 * openmp can and cannot check). Errors of items: MH_ECALLBACK, MH_EWORKER, MH_ETIMEDOUT,
 * MH_ECODEC (report says which item and how); with MH_CONTINUE every other
 * item ran. MH_ECODEC: the codec could not carry the item between
 * processes (encode or decode failed, or size() asked for more than could
 * be allocated); the item is MH_ITEM_FAILED with callback_code MH_ECODEC.
 *
 * On "mpi" a map is collective even with n = 0: a rank that maps n = 0
 * while another maps items (any differing shape) gets MH_EINVAL, on
 * every rank.
 *
 * Called from inside a callback (a map within a map) it runs inline on the
 * calling thread. Maps on one pool from several threads are serialised.
 * report may be NULL.
 */
MH_EXPORT int mh_map(mh_pool *pool, const struct mh_task *task,
                     struct mh_report *report);

/**
 * How mh_reduce folds mapped values into one accumulator of plain bytes.
 */
struct mh_reducer {
    size_t acc_size;                                  /* accumulator bytes */
    /* acc = acc (+) value, where value is one item's fn output. */
    void (*fold)(void *acc, const void *value, void *ctx);
    /* acc = acc (+) other, both accumulators. */
    void (*combine)(void *acc, const void *other, void *ctx);
};

/**
 * Map-reduce: fold fn(in[i]) into acc for every item. On entry *acc holds
 * the identity; on success, the result. Items are cut into chunks whose
 * size depends only on n and config.chunk, never on the worker count;
 * each chunk folds its items in order from the identity, and the partials
 * are combined in chunk order, so the result has the same bits on every
 * backend and every worker count (floating point included).
 *
 * task->out, task->status and task->codec must be NULL, and task->resume
 * 0 (MH_EINVAL: there is no status array to resume from):
 * each fn output goes to scratch space of task->out_size bytes and is
 * folded at once. Every chunk runs on the pool's backend, the last,
 * shorter one included (as a map of its own, after the others): a crash
 * or a hang in any item is a worker's, never the caller's. A failure is
 * reported as for mh_map; *acc is then unchanged. A worker crash is
 * reported at its chunk's first item. progress counts the user's items:
 * the last call has done == n on success; a non-zero return (or
 * mh_pool_cancel) ends the reduce with MH_EINTR, *acc unchanged.
 */
MH_EXPORT int mh_reduce(mh_pool *pool, const struct mh_task *task,
                        const struct mh_reducer *reducer, void *acc,
                        struct mh_report *report);

/* ----------------------------------------------------------------- streams */

/** What a stream's source says besides "error" (any other value). */
enum mh_source_result {
    MH_SOURCE_ITEM = 0, /* the buffer holds the next input item */
    MH_SOURCE_END = 1,  /* no more input */
};

/**
 * A stream's source: write the next input item (in_size bytes) into
 * item, a buffer the library owns, and return MH_SOURCE_ITEM; or return
 * MH_SOURCE_END, or any other value for an error: the input ends there,
 * the items pulled before it still run and are delivered, and the stream
 * returns MH_ESOURCE. seq is the item's sequence number: 0, 1, 2, ...
 * Called on the calling thread, and only while fewer than the window's
 * items are in flight (pulled, not yet delivered). While it blocks no
 * result is delivered: a source that waits on the results it caused (a
 * terminal, a request-reply socket) sets window 1, so that each item is
 * delivered before the next is pulled.
 */
typedef int (*mh_source_fn)(void *item, size_t seq, void *ctx);

/**
 * A stream's sink: called on the calling thread once per item that ran,
 * with its sequence number, its MH_ITEM_* status and its output (out_size
 * bytes, valid during the call; a result only when status is
 * MH_ITEM_OK). With a codec the library owns the output and clears it
 * with codec->clear after the sink returns: a sink that keeps it moves it
 * out first (GMP: mpz_swap with an initialised mpz_t of its own). Return
 * 0 to go on; non-zero ends the stream with MH_ESINK.
 */
typedef int (*mh_sink_fn)(size_t seq, int status, void *out, void *ctx);

/** The order a stream delivers in. */
enum mh_order {
    MH_ORDERED = 0,      /* sequence order */
    MH_AS_COMPLETED = 1, /* as items complete (a chunk at a time) */
};

/**
 * A stream: out = fn(in) for every item a source produces, each handed
 * to a sink, with at most `window` items in memory whatever the input's
 * length. fn, ctx, in_size, out_size and codec are as in mh_task; ctx
 * also goes to source and sink.
 */
struct mh_stream_task {
    size_t in_size;
    size_t out_size;
    mh_fn fn;
    void *ctx;
    const struct mh_codec *codec; /* NULL: outputs are plain bytes */
    mh_source_fn source;
    mh_sink_fn sink;
    /* Most items in flight (pulled, not yet delivered); the source is not
     * called while that many are. 0: adaptive (enough whole chunks to keep
     * every worker busy; report.chunk gives the chunk). */
    size_t window;
    enum mh_order order;
};

/**
 * Run a stream on pool until the source ends, every item pulled has been
 * delivered, or the run stops. Returns 0 when every item succeeded.
 * Errors: as mh_map's (MH_EINVAL also for a NULL source or sink), plus
 * MH_ESOURCE, MH_ESINK and MH_EINTR (cancelled). Under MH_STOP the first
 * failure stops pulling, lets the items running finish (fork too: no
 * child is killed for it), delivers nothing after the failing item in
 * ordered mode, and returns its code; under MH_CONTINUE every item is
 * delivered with its status.
 * The report is mh_map's: failed_index is a sequence number, items_done
 * counts delivered MH_ITEM_OK items.
 *
 * "fork" forks its children once per stream and feeds them through
 * shared memory: they see the caller's memory as it was when the stream
 * started (a child replaced after a crash: when it was forked). "mpi":
 * every rank calls mh_stream; rank 0 runs the source and the sink, and
 * every rank returns the same code. Called from inside a callback it runs
 * inline; streams and maps on one pool from several threads are
 * serialised.
 */
MH_EXPORT int mh_stream(mh_pool *pool, const struct mh_stream_task *stream,
                        struct mh_report *report);

#ifdef __cplusplus
}
#endif

#endif /* MANYHANDS_H */
