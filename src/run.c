/*
 * The per-map helpers every backend shares: the item loop, failure
 * recording and progress. The item loop is the library's hot path.
 */
#include <pthread.h>

#include "internal.h"

MH__TLS_FAST _Thread_local int mh__callback_depth;

void mh__run_init(struct mh__run *run, const struct mh_task *task, size_t chunk,
                  enum mh_on_error on_error, uint8_t *status, void *fail_lock)
{
    *run = (struct mh__run){
        .task = task,
        .workers = 1,
        .on_error = on_error,
        .status = status,
        .failure = mh__failure_none(),
        .fail_lock = fail_lock,
    };
    mh__chunk_plan(run, chunk, 0);
    atomic_init(&run->stop, 0);
    atomic_init(&run->cancelled, 0);
    run->cancel_stop = &run->stop;
    run->cancel_flag = &run->cancelled;
    run->cancel_fd = -1;
    atomic_init(&run->items_done, 0);
    atomic_init(&run->items_failed, 0);
    atomic_init(&run->codec_failed, 0);
}

/* Item i's fn returned rc != 0: run it again while it has callback
 * retries left; if it still fails, record the failure in fail (the first,
 * or one more). Its last return. Off the hot path: only a failure comes
 * here. */
__attribute__((cold, noinline)) static int run_failed(const struct mh__run *run, size_t i,
                                                      const void *in, void *out, int rc,
                                                      struct mh__failure *fail)
{
    const struct mh_task *task = run->task;
    int used = run->charged ? run->charged[i] : 0;
    for (int k = used; rc != 0 && k < run->callback_retries; k++)
        rc = task->fn(in, out, task->ctx);
    if (rc == 0)
        return 0;
    if (fail->count++ == 0) {
        *fail = mh__failure_callback(i, rc);
        /* Its runs: one, plus the retries charged before, then its
         * callback retries. */
        fail->attempts = 1 + (used > run->callback_retries ? used : run->callback_retries);
    }
    return rc;
}

size_t mh__run_range(const struct mh__run *run, size_t begin, size_t end,
                     void *out, uint8_t *status, atomic_int *stop,
                     struct mh__failure *fail)
{
    const struct mh_task *task = run->task;
    return mh__run_items(run, (const unsigned char *)task->in + begin * task->in_size,
                         (unsigned char *)out + begin * task->out_size,
                         status ? status + begin : NULL, end - begin, begin, stop, fail);
}

/* The item loop. skip_ok (a constant at each call, so each copy is
 * compiled without the other's test): resume, items whose status is
 * MH_ITEM_OK are left alone, outputs and all. The task's fields are read
 * once: fn may not change the task it runs in. Items OK are counted from
 * the loop's end, not per item. */
static inline __attribute__((always_inline)) size_t
run_items(const struct mh__run *run, const void *in_first, void *out_first, uint8_t *status,
          size_t count, size_t first, atomic_int *stop, struct mh__failure *fail, bool skip_ok)
{
    const struct mh_task *task = run->task;
    const mh_fn fn = task->fn;
    void *const ctx = task->ctx;
    const size_t in_size = task->in_size, out_size = task->out_size;
    const unsigned char *in = in_first;
    unsigned char *dst = out_first;
    size_t k = 0, skipped = 0;

    /* Only these two until a failure fills the rest: this runs per chunk
     * on every backend. */
    fail->index = MH_NO_ITEM;
    fail->count = 0;
    /* Everything fn runs is a callback: a map it calls runs inline. */
    mh__callback_depth++;
    atomic_int *outer_flag = mh__cancel_flag;
    mh__cancel_flag = run->cancel_flag;
    for (; k < count; k++, in += in_size, dst += out_size) {
        /* Relaxed: the flag only says "stop soon"; it guards no data. */
        if (atomic_load_explicit(stop, memory_order_relaxed))
            break;
        if (skip_ok && status[k] == MH_ITEM_OK) {
            skipped++;
            continue;
        }
        int rc = fn(in, dst, ctx);
        if (__builtin_expect(rc != 0, 0))
            rc = run_failed(run, first + k, in, dst, rc, fail);
        if (status)
            status[k] = rc ? MH_ITEM_FAILED : MH_ITEM_OK;
        if (__builtin_expect(rc != 0, 0) && run->on_error == MH_STOP) {
            atomic_store_explicit(stop, 1, memory_order_relaxed);
            k++;
            break;
        }
    }
    mh__cancel_flag = outer_flag;
    mh__callback_depth--;
    return k - skipped - fail->count;
}

size_t mh__run_items(const struct mh__run *run, const void *in_first, void *out_first,
                     uint8_t *status, size_t count, size_t first, atomic_int *stop,
                     struct mh__failure *fail)
{
    /* One test per range, none per item, when resume is off. */
    if (run->task->resume && status)
        return run_items(run, in_first, out_first, status, count, first, stop, fail, true);
    return run_items(run, in_first, out_first, status, count, first, stop, fail, false);
}

void mh__chunk_plan(struct mh__run *run, size_t chunk, size_t tail_width)
{
    size_t n = run->task->n;
    /* The tail's first level: the largest power of two below chunk whose
     * levels, tail_width chunks each, fit in n items. */
    size_t top = 0;
    if (tail_width > 0 && chunk > 1 && n >= tail_width) {
        top = (size_t)1 << (63 - __builtin_clzll((unsigned long long)(chunk - 1)));
        while (top > 1 && tail_width * (2 * top - 1) > n)
            top /= 2;
    }
    size_t levels = top ? (size_t)__builtin_ctzll((unsigned long long)top) + 1 : 0;
    run->chunk = chunk;
    run->tail_width = top ? tail_width : 0;
    run->tail_top = top;
    run->tail_begin = n - run->tail_width * (2 * top - (top != 0));
    run->tail_chunk = run->tail_begin / chunk + (run->tail_begin % chunk != 0);
    run->nchunks = run->tail_chunk + run->tail_width * levels;
}

void mh__run_fail(struct mh__run *run, const struct mh__failure *fail)
{
    if (fail->index == MH_NO_ITEM)
        return;
    pthread_mutex_t *lock = run->fail_lock;
    pthread_mutex_lock(lock);
    if (run->failure.index == MH_NO_ITEM || fail->index < run->failure.index)
        run->failure = *fail;
    pthread_mutex_unlock(lock);
    atomic_fetch_add_explicit(&run->items_failed, fail->count ? fail->count : 1,
                              memory_order_relaxed);
    if (run->on_error == MH_STOP)
        atomic_store_explicit(&run->stop, 1, memory_order_relaxed);
}

void mh__run_codec_fail(struct mh__run *run, size_t i)
{
    if (run->status)
        run->status[i] = MH_ITEM_FAILED;
    struct mh__failure fail = {
        .index = i, .status = MH_ITEM_FAILED, .callback_code = MH_ECODEC,
        .exit_status = -1, .count = 1, .attempts = 1,
    };
    atomic_store_explicit(&run->codec_failed, 1, memory_order_relaxed);
    mh__run_fail(run, &fail);
}

int mh__run_failure_code(const struct mh__run *run)
{
    const struct mh__failure *fail = &run->failure;
    if (fail->index == MH_NO_ITEM)
        return MH_OK;
    if (fail->status == MH_ITEM_FAILED && fail->callback_code == MH_ECODEC &&
        atomic_load_explicit(&run->codec_failed, memory_order_relaxed))
        return MH_ECODEC;
    return mh__status_code(fail->status);
}

int mh__run_chunk(struct mh__run *run, size_t c)
{
    size_t begin, end;
    mh__chunk_bounds(run, c, &begin, &end);
    struct mh__failure fail;
    size_t ok = mh__run_range(run, begin, end, run->task->out, run->status,
                              &run->stop, &fail);
    atomic_fetch_add_explicit(&run->items_done, ok, memory_order_relaxed);
    if (fail.index == MH_NO_ITEM)
        return MH_OK;
    mh__run_fail(run, &fail);
    return mh__status_code(fail.status);
}

int mh__run_progress(struct mh__run *run)
{
    const struct mh_task *task = run->task;
    if (!task->progress ||
        !task->progress(atomic_load_explicit(&run->items_done, memory_order_relaxed),
                        task->n, task->ctx))
        return 0;
    mh__run_cancel(run); /* a non-zero return: as mh_pool_cancel */
    return 1;
}
