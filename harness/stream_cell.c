/*
 * `cell` for a kind of the stream experiment (harness/stream.c): set the
 * work up, open a pool, time the call alone (one mh_map, one mh_map per
 * item, or one mh_stream), close the pool, check every output, print
 * cell.c's result line. Exit 77 when the backend has no stream yet.
 *
 * A stream's source hands out the inputs in order (the kernel's generated
 * array, or the sequence number as an int); its sink checks each item's
 * status, its sequence (ordered: 0, 1, 2, ...; as-completed: each once)
 * and moves a kernel's output into the cell's array, checked by the
 * kernel's verifier after the run as a map's are (copy: out == seq at
 * once, nothing kept: memory stays the window's). MHB_CORRUPT=1 (tests):
 * the first item counts as lost, which every check must catch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kernels.h"
#include "manyhands.h"

struct sc {
    const struct mhb_stream_kind *kind;
    struct mhk_cell cell;    /* the kernel's (seed and io works) */
    int *in, *out;           /* the ints of a map of the other works */
    size_t n;                /* items */
    size_t next;             /* ordered: the sequence number due */
    size_t delivered;        /* items the sink took */
    size_t wrong;            /* 1 + the first wrong sequence number, or 0 */
    unsigned char *seen;     /* kernel works: output i taken */
    bool corrupt;
};

static int sc_empty(const void *in, void *out, void *ctx)
{
    (void)in, (void)out, (void)ctx;
    return 0;
}

static int sc_copy(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(int *)out = *(const int *)in;
    return 0;
}

/* A kernel's fn under a stream, whose ctx is the cell's state. */
static int sc_kernel_fn(const void *in, void *out, void *ctx)
{
    const struct sc *s = ctx;
    return s->kind->kernel->fn(in, out, s->cell.ctx);
}

static int sc_source(void *item, size_t seq, void *ctx)
{
    const struct sc *s = ctx;
    if (seq >= s->n)
        return MH_SOURCE_END;
    if (s->kind->kernel)
        memcpy(item, mhk_cell_item_in(&s->cell, seq), s->kind->row.in_size);
    else
        *(int *)item = (int)seq;
    return MH_SOURCE_ITEM;
}

static int sc_sink(size_t seq, int status, void *out, void *ctx)
{
    struct sc *s = ctx;
    bool ok = status == MH_ITEM_OK && seq < s->n;
    if (s->kind->call == MHB_CALL_STREAM)
        ok = ok && seq == s->next++;
    if (ok && s->seen && s->seen[seq])
        ok = false; /* delivered twice */
    if (ok && s->corrupt && seq == 0)
        return 0; /* lost, as MHB_CORRUPT asks */
    if (ok && s->kind->kernel)
        ok = mhk_cell_take(&s->cell, seq, out) == 0;
    else if (ok && s->kind->work == MHB_WORK_COPY)
        ok = *(const int *)out == (int)seq;
    if (ok && s->seen)
        s->seen[seq] = 1;
    if (!ok && !s->wrong)
        s->wrong = seq + 1;
    s->delivered += ok;
    return 0;
}

/* One mh_stream of every item; checks what the sink saw. */
static int sc_stream(struct sc *s, mh_pool *pool, struct mh_report *report)
{
    const struct mhb_stream_kind *k = s->kind;
    struct mh_stream_task task = {
        .in_size = k->row.in_size, .out_size = k->row.out_size,
        .fn = k->kernel ? sc_kernel_fn : k->work == MHB_WORK_COPY ? sc_copy : sc_empty,
        .ctx = s, .codec = k->kernel ? k->kernel->codec : NULL,
        .source = sc_source, .sink = sc_sink,
        .order = k->call == MHB_CALL_AS_COMPLETED ? MH_AS_COMPLETED : MH_ORDERED,
    };
    return mh_stream(pool, &task, report);
}

/* One mh_map of every item, or (maps) one per item. */
static int sc_map(struct sc *s, mh_pool *pool, struct mh_report *report)
{
    const struct mhb_stream_kind *k = s->kind;
    if (k->kernel) {
        int rc = mhk_cell_map(&s->cell, pool, report);
        s->delivered = report->items_done;
        return rc;
    }
    struct mh_task task = {
        .n = s->n, .in = s->in, .in_size = sizeof(int), .out = s->out,
        .out_size = sizeof(int), .fn = k->work == MHB_WORK_COPY ? sc_copy : sc_empty,
    };
    if (k->call == MHB_CALL_MAP) {
        int rc = mh_map(pool, &task, report);
        s->delivered = report->items_done;
        return rc;
    }
    task.n = 1;
    for (size_t i = 0; i < s->n; i++, task.in = s->in + i, task.out = s->out + i) {
        int rc = mh_map(pool, &task, report);
        if (rc)
            return rc;
        s->delivered += report->items_done;
    }
    return 0;
}

/* After a successful call: NULL when every output is right, else why. */
static const char *sc_check(struct sc *s, bool stream)
{
    const struct mhb_stream_kind *k = s->kind;
    if (!stream && k->kernel) {
        if (s->corrupt)
            mhk_cell_corrupt(&s->cell, 0);
        return mhk_cell_verify(&s->cell) ? "wrong output" : NULL;
    }
    if (!stream && s->corrupt)
        s->delivered--, s->out[0] ^= 1;
    if (!stream && k->work == MHB_WORK_COPY)
        for (size_t i = 0; i < s->n; i++)
            if (s->out[i] != (int)i)
                return "wrong output";
    if (s->wrong || s->delivered != s->n)
        return "an item lost, repeated, out of order or wrong";
    if (stream && k->kernel) {
        memset(s->seen, 0, s->n); /* verify clears every output */
        return mhk_cell_verify(&s->cell) ? "wrong output" : NULL;
    }
    return NULL;
}

/* The work's data: the kernel's cell, the map's ints, the seen flags. */
static int sc_open(struct sc *s, const struct mhb_options *o)
{
    const struct mhb_stream_kind *k = s->kind;
    bool stream = k->call == MHB_CALL_STREAM || k->call == MHB_CALL_AS_COMPLETED;
    if (k->kernel) {
        int rc = mhk_cell_open(&s->cell, k->kernel, s->n, o->seed);
        if (rc)
            return rc;
        if (stream && !(s->seen = calloc(s->n, 1)))
            return MH_ENOMEM;
    } else if (!stream) {
        s->in = malloc(s->n * sizeof(int));
        s->out = calloc(s->n, sizeof(int));
        if (!s->in || !s->out)
            return MH_ENOMEM;
        for (size_t i = 0; i < s->n; i++)
            s->in[i] = (int)i;
    }
    return 0;
}

static void sc_close(struct sc *s)
{
    /* Outputs a failed stream's sink took, which no verifier cleared. */
    const struct mh_codec *codec = s->kind->kernel ? s->kind->kernel->codec : NULL;
    for (size_t i = 0; codec && s->seen && i < s->n; i++)
        if (s->seen[i])
            codec->clear(mhk_cell_item_out(&s->cell, i), s->cell.ctx);
    mhk_cell_close(&s->cell);
    free(s->seen);
    free(s->in);
    free(s->out);
}

/* Whether kind is called by mh_stream (else by mh_map). */
static bool sc_streams(const struct mhb_stream_kind *kind)
{
    return kind->call == MHB_CALL_STREAM || kind->call == MHB_CALL_AS_COMPLETED;
}

/* The timed call (mhb_cell_time's). */
static int sc_call(void *vs, mh_pool *pool, struct mh_report *report)
{
    struct sc *s = vs;
    return sc_streams(s->kind) ? sc_stream(s, pool, report) : sc_map(s, pool, report);
}

int mhb_stream_cell_main(const struct mhb_options *o)
{
    struct sc s = {.kind = mhb_stream_find(o->kernels[0]), .n = o->items,
                   .corrupt = getenv("MHB_CORRUPT") != NULL};
    bool stream = sc_streams(s.kind);
    int rank = mhb_cell_rank(), verified = MHB_WRONG;
    struct mhb_cell_timing t = {.report = {.chunk = 0}};
    int rc = sc_open(&s, o);
    if (rc) {
        snprintf(t.error, sizeof t.error, "setup:%s", mh_err_name(rc));
        goto out_close;
    }
    struct mh_config config = {
        .backend = o->backends[0], .workers = o->workers[0],
        .chunk = o->n_chunks ? o->chunks[0] : 0,
    };
    rc = mhb_cell_time(&config, stream ? "stream" : "map", sc_call, &s, &t);
    if (rc)
        goto out_close;
    if (rank == 0) {
        const char *why = sc_check(&s, stream);
        if (why && s.wrong)
            snprintf(t.error, sizeof t.error, "%s (first at item %zu)", why, s.wrong - 1);
        else if (why && s.delivered != s.n)
            snprintf(t.error, sizeof t.error, "%s (%zu of %zu items)", why, s.delivered, s.n);
        else if (why)
            snprintf(t.error, sizeof t.error, "%s", why);
        else
            verified = MHB_VERIFIED;
    }
out_close:
    sc_close(&s);
    if (rank == 0)
        mhb_cell_print(o, t.report.workers, t.report.chunk, t.wall, t.pool_s, verified,
                       t.error);
    if (rc == MH_ENOTSUP && stream)
        return 77; /* the backend has no stream yet */
    return t.error[0] ? 1 : 0;
}
