/* Pool lifecycle, validation and the map path shared by map and reduce. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int mh_pool_open(mh_pool **pool, const struct mh_config *config)
{
    if (!pool)
        return MH_EINVAL;
    *pool = NULL;

    struct mh_config resolved;
    const struct mh_backend_ops *ops;
    int rc = mh__config_resolve(config, &resolved, &ops);
    if (rc)
        return rc;

    mh_pool *p = mh__calloc(1, sizeof *p);
    if (!p)
        return MH_ENOMEM;
    p->ops = ops;
    p->config = resolved;
    p->owner = getpid();
    if (pthread_mutex_init(&p->map_lock, NULL)) {
        rc = MH_ENOMEM;
        goto out_free;
    }
    rc = mh__control_open(&p->control, ops->caps);
    if (rc)
        goto out_mutex;
    rc = ops->open(&p->state, &p->config);
    if (rc)
        goto out_control;
    if (ops->workers)
        p->config.workers = ops->workers(p->state);
    *pool = p;
    return MH_OK;

out_control:
    mh__control_close(&p->control);
out_mutex:
    pthread_mutex_destroy(&p->map_lock);
out_free:
    mh__free(p);
    return rc;
}

void mh_pool_close(mh_pool *pool)
{
    if (!pool)
        return;
    pool->ops->close(pool->state, pool->owner == getpid());
    mh__ring_close(atomic_load_explicit(&pool->ring_kept, memory_order_acquire));
    mh__control_close(&pool->control);
    pthread_mutex_destroy(&pool->map_lock);
    mh__free(pool);
}

int mh_pool_rank(const mh_pool *pool)
{
    return pool && pool->ops->rank ? pool->ops->rank(pool->state) : 0;
}

const char *mh_pool_backend(const mh_pool *pool)
{
    return pool ? pool->ops->name : NULL;
}

int mh_pool_workers(const mh_pool *pool)
{
    return pool ? pool->config.workers : 0;
}

int mh__task_check(const struct mh_task *task, bool need_out)
{
    if (!task || !task->fn || task->in_size == 0 || task->out_size == 0)
        return MH_EINVAL;
    if (task->n > 0 && (!task->in || (need_out && !task->out)))
        return MH_EINVAL;
    if (task->resume && !task->status)
        return MH_EINVAL; /* resume reads the earlier run's statuses */
    const struct mh_codec *codec = task->codec;
    if (codec && (!codec->size || !codec->encode || !codec->decode || !codec->clear))
        return MH_EINVAL;
    size_t bytes;
    if (__builtin_mul_overflow(task->n, task->in_size, &bytes) ||
        __builtin_mul_overflow(task->n, task->out_size, &bytes))
        return MH_EOVERFLOW;
    return MH_OK;
}

void mh__report_init(struct mh_report *report, const mh_pool *pool, int code)
{
    if (!report)
        return;
    memset(report, 0, sizeof *report);
    report->code = code;
    report->backend = pool ? pool->ops->name : NULL;
    report->failed_index = MH_NO_ITEM;
    report->failed_status = MH_ITEM_OK;
    report->worker_exit = -1;
}

/* Release every result a failed codec map produced: the caller was given
 * no status array, so it could not tell which out items own memory. */
static void pool_clear_results(const struct mh_task *task, const uint8_t *status)
{
    unsigned char *out = task->out;
    for (size_t i = 0; i < task->n; i++)
        if (status[i] == MH_ITEM_OK)
            task->codec->clear(out + i * task->out_size, task->ctx);
}

/* Resume: every item not MH_ITEM_OK runs again, so it starts NOT_RUN;
 * the OK ones are kept. Their count. */
static size_t pool_resume_status(uint8_t *status, size_t n)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (status[i] == MH_ITEM_OK)
            kept++;
        else
            status[i] = MH_ITEM_NOT_RUN;
    }
    return kept;
}

void mh__report_fill(struct mh_report *report, struct mh__run *run,
                     const struct mh_backend_ops *ops, int rc, double start)
{
    report->code = rc;
    report->backend = ops->name;
    report->workers = run->workers;
    report->chunk = run->chunk;
    report->items_done = atomic_load(&run->items_done);
    report->items_failed = atomic_load(&run->items_failed);
    if (run->failure.index != MH_NO_ITEM) {
        report->failed_index = run->failure.index;
        report->failed_status = run->failure.status;
        report->callback_code = run->failure.callback_code;
        report->worker_signal = run->failure.signal;
        report->worker_exit = run->failure.exit_status;
        report->worker_pid = run->failure.pid;
        report->attempts = run->failure.attempts;
        report->memory_capped = run->memory_capped;
    }
    report->wall_s = mh__now() - start;
}

bool mh__pool_runner(const mh_pool *pool, const struct mh_backend_ops **ops, void **state,
                     int *workers)
{
    /* Inside a callback, or in a child forked after open, the pool's
     * workers are not ours to wait on: run inline, on this thread. */
    bool inline_run = mh__callback_depth > 0 || pool->owner != getpid();
    *ops = inline_run ? &mh__backend_seq : pool->ops;
    *state = inline_run ? NULL : pool->state;
    *workers = inline_run ? 1 : pool->config.workers;
    return inline_run;
}

/* Run run on the backend (published for cancels when `published`), and
 * say what the map returns. */
static int pool_run_backend(mh_pool *pool, const struct mh_backend_ops *ops, void *state,
                            struct mh__run *run, bool published)
{
    const bool collective = ops->caps & MH__CAP_COLLECTIVE;
    bool cancelled = published && mh__control_begin(pool, run);
    /* Cancelled before it began: nothing is to start, unless peers wait
     * for this process (its backend then ends the map everywhere). */
    int rc = cancelled && !collective ? MH_OK : ops->map(state, run);
    if (published)
        mh__control_end(pool, run);
    /* Relaxed: mh__control_end ordered every cancel's stores before. */
    if (rc == MH_OK && !collective &&
        atomic_load_explicit(&run->cancelled, memory_order_relaxed))
        rc = MH_EINTR;
    if (rc == MH_OK)
        rc = mh__run_failure_code(run);
    /* The last progress call may cancel too; on a collective backend the
     * code is already every process's, and stays. */
    if (rc == MH_OK && run->task->n > 0 && mh__run_progress(run) && !collective)
        rc = MH_EINTR;
    return rc;
}

int mh__map_run(mh_pool *pool, const struct mh_task *task, size_t chunk,
                struct mh_report *report)
{
    double start = mh__now();
    mh__report_init(report, pool, MH_OK);

    const struct mh_backend_ops *ops;
    void *state;
    int workers;
    bool inline_run = mh__pool_runner(pool, &ops, &state, &workers);
    /* n = 0 runs nothing, except on a collective backend: its peers may
     * map items, and only the backend can tell them the shapes differ. */
    if (task->n == 0 && !(ops->caps & MH__CAP_COLLECTIVE))
        return MH_OK;

    pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
    struct mh__run run;
    mh__run_init(&run, task, chunk ? chunk : 1, pool->config.on_error, task->status,
                 &fail_lock);
    /* Adaptive: about 64 chunks per worker, then a tail that halves down
     * to single items, two chunks of each size per worker, so that costly
     * items near the end cannot leave workers idle (docs/design.md). */
    if (!chunk)
        mh__chunk_plan(&run, mh__chunk_auto(task->n, (size_t)workers * 64),
                       2 * (size_t)workers);
    run.workers = (size_t)workers < run.nchunks ? workers : (int)run.nchunks;
    run.timeout_s = pool->config.timeout_s;
    run.retries = pool->config.retries;
    run.callback_retries = pool->config.retry_callback_errors ? pool->config.retries : 0;

    /* With a codec and no status array we still need to know which items
     * own memory, to release them if the map fails. */
    uint8_t *own_status = NULL;
    if (run.status && task->resume) {
        run.kept = pool_resume_status(run.status, task->n);
        atomic_store_explicit(&run.items_done, run.kept, memory_order_relaxed);
    } else if (run.status) {
        memset(run.status, MH_ITEM_NOT_RUN, task->n);
    } else if (task->codec && task->n > 0) {
        own_status = mh__calloc(task->n, 1);
        if (!own_status && !(ops->caps & MH__CAP_COLLECTIVE)) {
            mh__report_init(report, pool, MH_ENOMEM);
            return MH_ENOMEM;
        }
        /* A collective backend's peers wait for this process: it still
         * takes part, and ends the map everywhere with the error. */
        run.error = own_status ? MH_OK : MH_ENOMEM;
        run.status = own_status;
    }

    if (!inline_run)
        pthread_mutex_lock(&pool->map_lock);
    /* Progress and codec callbacks run on this thread, inside the backend
     * and after it: a map they call runs inline, never waiting for
     * map_lock or for our workers (nor, on mpi, for ranks that are not
     * calling it). */
    mh__callback_depth++;
    int rc = pool_run_backend(pool, ops, state, &run, !inline_run);
    if (rc != MH_OK && own_status)
        pool_clear_results(task, own_status);
    mh__callback_depth--;
    if (!inline_run)
        pthread_mutex_unlock(&pool->map_lock);
    mh__free(own_status);

    if (report)
        mh__report_fill(report, &run, ops, rc, start);
    return rc;
}

int mh_map(mh_pool *pool, const struct mh_task *task, struct mh_report *report)
{
    int rc = pool ? mh__task_check(task, true) : MH_EINVAL;
    if (rc) {
        mh__report_init(report, pool, rc);
        return rc;
    }
    return mh__map_run(pool, task, pool->config.chunk, report);
}
