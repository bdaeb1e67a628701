/*
 * mh_reduce as maps over whole chunks. Item j of an inner map is chunk j
 * of the user's items (its inputs are contiguous bytes, so process and MPI
 * backends carry them like any input); its output is that chunk's partial:
 * a header saying whether and where it failed, then the accumulator.
 * The full chunks are one inner map; a shorter last chunk (the tail) is a
 * second map of one item whose input is exactly the tail's bytes, so that
 * every item runs on the backend (isolated, timed) and no backend reads
 * past the caller's input array. Chunk boundaries depend only on n and
 * config.chunk, partials combine in chunk order on the caller: the same
 * bits for any backend and workers.
 */
#include <stdalign.h>
#include <string.h>

#include "internal.h"

struct reduce_header {
    int32_t code;    /* fn's non-zero return, or 0 */
    uint32_t unused;
    uint64_t offset; /* failing item within the chunk */
};

/* Partial accumulators start this far into their record. */
#define REDUCE_ACC_OFFSET \
    ((sizeof(struct reduce_header) + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t))

/* One inner map: its items are chunks of `chunk` user items from `base`. */
struct reduce_ctx {
    const struct mh_task *task;
    const struct mh_reducer *reducer;
    const void *identity; /* the caller's *acc on entry */
    size_t chunk;         /* user items per inner item */
    size_t base;          /* user items before this map's first */
    size_t n;             /* user items in all */
};

/* Fold count items starting at in into the partial record at out. */
static int reduce_items(const struct reduce_ctx *rc, const unsigned char *in,
                        size_t count, unsigned char *out)
{
    const struct mh_task *task = rc->task;
    struct reduce_header *header = (struct reduce_header *)out;
    void *acc = out + REDUCE_ACC_OFFSET;
    memset(header, 0, sizeof *header);
    memcpy(acc, rc->identity, rc->reducer->acc_size);

    /* Scratch for one fn output: on the stack when small. */
    alignas(max_align_t) unsigned char small[256];
    void *value = small;
    if (task->out_size > sizeof small && !(value = mh__malloc(task->out_size))) {
        header->code = MH_ENOMEM;
        return MH_ENOMEM;
    }
    int ret = 0;
    for (size_t i = 0; i < count; i++, in += task->in_size) {
        ret = task->fn(in, value, task->ctx);
        if (ret) {
            header->code = ret;
            header->offset = i;
            break;
        }
        rc->reducer->fold(acc, value, task->ctx);
    }
    if (value != small)
        mh__free(value);
    return ret;
}

static int reduce_chunk_fn(const void *in, void *out, void *ctx)
{
    const struct reduce_ctx *rc = ctx;
    return reduce_items(rc, in, rc->chunk, out);
}

static int reduce_progress(size_t done, size_t n, void *ctx)
{
    const struct reduce_ctx *rc = ctx;
    (void)n;
    return rc->task->progress(rc->base + done * rc->chunk, rc->n, rc->task->ctx);
}

/* Run count inner items (count >= 1) of rc into partials, and turn the
 * inner report (items are chunks) into the user's. */
static int reduce_inner(mh_pool *pool, struct reduce_ctx *rc, size_t count,
                        unsigned char *partials, size_t record, struct mh_report *report)
{
    const struct mh_task *task = rc->task;
    struct mh_task inner = {
        .n = count,
        .in = (const unsigned char *)task->in + rc->base * task->in_size,
        .in_size = task->in_size * rc->chunk,
        .out = partials,
        .out_size = record,
        .fn = reduce_chunk_fn,
        .ctx = rc,
        .progress = task->progress ? reduce_progress : NULL,
    };
    int ret = mh__map_run(pool, &inner, 0, report);
    report->items_done *= rc->chunk;
    if (report->failed_index != MH_NO_ITEM) {
        size_t j = report->failed_index;
        const struct reduce_header *header = (const void *)(partials + j * record);
        report->failed_index = rc->base + j * rc->chunk + (header->code ? header->offset : 0);
    }
    return ret;
}

/* Add the tail map's report to the full chunks' one. */
static void reduce_report_merge(struct mh_report *into, const struct mh_report *tail)
{
    into->items_done += tail->items_done;
    into->items_failed += tail->items_failed;
    into->backend = tail->backend;
    if (tail->workers > into->workers)
        into->workers = tail->workers;
    if (!into->code)
        into->code = tail->code;
    if (into->failed_index == MH_NO_ITEM && tail->failed_index != MH_NO_ITEM) {
        into->failed_index = tail->failed_index;
        into->failed_status = tail->failed_status;
        into->callback_code = tail->callback_code;
        into->worker_signal = tail->worker_signal;
        into->worker_exit = tail->worker_exit;
        into->worker_pid = tail->worker_pid;
        into->attempts = tail->attempts;
    }
}

/* Combine count partials in chunk order into *acc. 0 or MH_ENOMEM. */
static int reduce_combine(const struct reduce_ctx *rc, const unsigned char *partials,
                          size_t count, size_t record, void *acc)
{
    /* Into a copy: *acc is the identity every chunk started from, and
     * stays unchanged if anything failed. */
    size_t size = rc->reducer->acc_size;
    unsigned char *sum = mh__malloc(size);
    if (!sum)
        return MH_ENOMEM;
    memcpy(sum, acc, size);
    for (size_t j = 0; j < count; j++)
        rc->reducer->combine(sum, partials + j * record + REDUCE_ACC_OFFSET, rc->task->ctx);
    memcpy(acc, sum, size);
    mh__free(sum);
    return MH_OK;
}

int mh_reduce(mh_pool *pool, const struct mh_task *task,
              const struct mh_reducer *reducer, void *acc, struct mh_report *report)
{
    double start = mh__now();
    int rc = pool ? mh__task_check(task, false) : MH_EINVAL;
    if (!rc && (task->out || task->status || task->codec || task->resume || !reducer || !acc ||
                !reducer->acc_size || !reducer->fold || !reducer->combine))
        rc = MH_EINVAL;
    if (!rc && reducer->acc_size > SIZE_MAX - REDUCE_ACC_OFFSET)
        rc = MH_EOVERFLOW;
    if (rc) {
        mh__report_init(report, pool, rc);
        return rc;
    }

    size_t n = task->n;
    size_t chunk = pool->config.chunk;
    if (!chunk) /* a function of n alone: about 256 chunks */
        chunk = mh__chunk_auto(n, 256);
    struct reduce_ctx ctx = {
        .task = task, .reducer = reducer, .identity = acc, .chunk = chunk, .base = 0, .n = n,
    };
    size_t full = n / chunk, tail = n % chunk;
    size_t record = REDUCE_ACC_OFFSET + reducer->acc_size;
    size_t bytes;
    if (__builtin_mul_overflow(full + 1, record, &bytes)) {
        mh__report_init(report, pool, MH_EOVERFLOW);
        return MH_EOVERFLOW;
    }
    /* One record per full chunk, one for the tail. Zeroed, so a backend
     * that does not carry back a failed item's bytes leaves code 0. */
    unsigned char *partials = mh__calloc(full + 1, record);
    if (!partials) {
        mh__report_init(report, pool, MH_ENOMEM);
        return MH_ENOMEM;
    }

    struct mh_report inner_report, tail_report;
    mh__report_init(&inner_report, pool, MH_OK);
    if (full)
        rc = reduce_inner(pool, &ctx, full, partials, record, &inner_report);
    /* The tail after the full chunks, so that a failure in a full chunk
     * (a lower index) is the one reported; under MH_CONTINUE it runs too,
     * unless the map itself failed rather than an item. */
    bool item_failed = inner_report.failed_index != MH_NO_ITEM;
    if (tail && (!rc || (item_failed && pool->config.on_error == MH_CONTINUE))) {
        struct reduce_ctx rest = ctx;
        rest.chunk = tail;
        rest.base = full * chunk;
        int tail_rc = reduce_inner(pool, &rest, 1, partials + full * record, record,
                                   &tail_report);
        reduce_report_merge(&inner_report, &tail_report);
        if (!rc)
            rc = tail_rc;
    }

    if (!rc)
        rc = inner_report.code = reduce_combine(&ctx, partials, full + (tail != 0), record, acc);
    mh__free(partials);
    if (report) {
        *report = inner_report;
        report->chunk = chunk;
        report->wall_s = mh__now() - start;
    }
    return rc;
}
