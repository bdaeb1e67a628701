/*
 * mh_reduce as a map over whole chunks. Item j of the inner map is chunk j
 * of the user's items (its inputs are contiguous bytes, so process and MPI
 * backends carry them like any input); its output is that chunk's partial:
 * a header saying whether and where it failed, then the accumulator.
 * Chunk boundaries depend only on n and config.chunk, partials combine in
 * chunk order on the caller: the same bits for any backend and workers.
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

struct reduce_ctx {
    const struct mh_task *task;
    const struct mh_reducer *reducer;
    const void *identity; /* the caller's *acc on entry */
    size_t chunk;         /* items per inner item */
    size_t n;             /* user items */
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

static void reduce_progress(size_t done, size_t n, void *ctx)
{
    const struct reduce_ctx *rc = ctx;
    (void)n;
    rc->task->progress(done * rc->chunk, rc->n, rc->task->ctx);
}

/* Turn the inner map's report (items are chunks) into the user's. */
static void reduce_report_fix(struct mh_report *report, const struct reduce_ctx *rc,
                              const unsigned char *partials, size_t record)
{
    report->items_done *= rc->chunk;
    if (report->failed_index == MH_NO_ITEM)
        return;
    size_t j = report->failed_index;
    const struct reduce_header *header = (const void *)(partials + j * record);
    report->failed_index = j * rc->chunk + (header->code ? header->offset : 0);
}

int mh_reduce(mh_pool *pool, const struct mh_task *task,
              const struct mh_reducer *reducer, void *acc, struct mh_report *report)
{
    int rc = pool ? mh__task_check(task, false) : MH_EINVAL;
    if (!rc && (task->out || task->status || task->codec || !reducer || !acc ||
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
        .task = task, .reducer = reducer, .identity = acc, .chunk = chunk, .n = n,
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

    struct mh_task inner = {
        .n = full,
        .in = task->in,
        .in_size = task->in_size * chunk,
        .out = partials,
        .out_size = record,
        .fn = reduce_chunk_fn,
        .ctx = &ctx,
        .progress = task->progress ? reduce_progress : NULL,
    };
    struct mh_report inner_report;
    rc = mh__map_run(pool, &inner, 0, &inner_report);
    reduce_report_fix(&inner_report, &ctx, partials, record);

    /* The tail chunk runs here, after the full ones, so that a failure in
     * a full chunk (a lower index) is the one reported. */
    if (!rc && tail) {
        unsigned char *last = partials + full * record;
        const unsigned char *in = (const unsigned char *)task->in + full * chunk * task->in_size;
        struct reduce_ctx tail_ctx = ctx;
        tail_ctx.chunk = tail;
        int ret = mh__run_callback(reduce_chunk_fn, in, last, &tail_ctx);
        if (ret) {
            const struct reduce_header *header = (const void *)last;
            rc = MH_ECALLBACK;
            inner_report.code = rc;
            inner_report.items_done += header->offset;
            inner_report.items_failed = 1;
            inner_report.failed_index = full * chunk + header->offset;
            inner_report.failed_status = MH_ITEM_FAILED;
            inner_report.callback_code = ret;
        } else {
            inner_report.items_done += tail;
        }
    }

    if (!rc) {
        /* Combine into a copy: *acc is the identity every chunk started
         * from, and stays unchanged if anything failed. */
        unsigned char *sum = mh__malloc(reducer->acc_size);
        if (!sum) {
            rc = inner_report.code = MH_ENOMEM;
        } else {
            memcpy(sum, acc, reducer->acc_size);
            for (size_t j = 0; j < full; j++)
                reducer->combine(sum, partials + j * record + REDUCE_ACC_OFFSET, task->ctx);
            if (tail)
                reducer->combine(sum, partials + full * record + REDUCE_ACC_OFFSET, task->ctx);
            memcpy(acc, sum, reducer->acc_size);
            mh__free(sum);
        }
    }
    mh__free(partials);
    if (report) {
        *report = inner_report;
        report->chunk = chunk;
    }
    return rc;
}
