/* A kernel's lifecycle, written once (kernels.h, "struct mhk_cell"): the
 * harness's cell, mhk-cost, the TBB peer and the tests all run it. */
#include <gmp.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int mhk_cell_open(struct mhk_cell *cell, const struct mhk_kernel *kernel, size_t n,
                  uint64_t seed)
{
    memset(cell, 0, sizeof *cell);
    cell->kernel = kernel;
    cell->n = n;
    cell->step = "setup";
    if (!kernel)
        return MH_EINVAL;
    int rc = kernel->setup ? kernel->setup(&cell->ctx, n, seed) : 0;
    if (rc)
        return rc;
    cell->set_up = true;
    cell->step = "allocate";
    cell->in = calloc(n ? n : 1, kernel->in_size);
    cell->out = calloc(n ? n : 1, kernel->out_size);
    if (!cell->in || !cell->out) {
        mhk_cell_close(cell);
        cell->step = "allocate";
        return MH_ENOMEM;
    }
    cell->step = NULL;
    kernel->generate(cell->in, n, seed, cell->ctx);
    return 0;
}

void mhk_cell_generate(struct mhk_cell *cell, uint64_t seed)
{
    cell->kernel->generate(cell->in, cell->n, seed, cell->ctx);
}

void mhk_cell_hooks(const struct mhk_cell *cell, struct mh_config *config)
{
    if (!cell->kernel->worker_init && !cell->kernel->worker_fini)
        return;
    config->init = cell->kernel->worker_init;
    config->fini = cell->kernel->worker_fini;
    config->hook_ctx = cell->ctx;
}

struct mh_task mhk_cell_task(const struct mhk_cell *cell)
{
    const struct mhk_kernel *k = cell->kernel;
    return (struct mh_task){
        .n = cell->n, .in = cell->in, .in_size = k->in_size, .out = cell->out,
        .out_size = k->out_size, .fn = k->fn, .ctx = cell->ctx, .codec = k->codec,
    };
}

int mhk_cell_map(struct mhk_cell *cell, mh_pool *pool, struct mh_report *report)
{
    struct mh_task task = mhk_cell_task(cell);
    return mh_map(pool, &task, report);
}

void *mhk_cell_item_out(const struct mhk_cell *cell, size_t i)
{
    return (char *)cell->out + i * cell->kernel->out_size;
}

const void *mhk_cell_item_in(const struct mhk_cell *cell, size_t i)
{
    return (const char *)cell->in + i * cell->kernel->in_size;
}

int mhk_cell_take(struct mhk_cell *cell, size_t i, void *out)
{
    const struct mhk_kernel *k = cell->kernel;
    void *dst = mhk_cell_item_out(cell, i);
    if (!k->codec) {
        memcpy(dst, out, k->out_size);
        return 0;
    }
    if (k->codec != &mhk_mpz_codec)
        return MH_ENOTSUP;
    mpz_init(dst);
    mpz_swap(dst, out);
    return 0;
}

size_t mhk_cell_verify(struct mhk_cell *cell)
{
    size_t wrong = cell->kernel->verify(cell->in, cell->out, cell->n, cell->ctx);
    mhk_clear_outputs(cell->kernel, cell->out, cell->n, cell->ctx);
    return wrong;
}

void mhk_cell_close(struct mhk_cell *cell)
{
    free(cell->in);
    free(cell->out);
    cell->in = cell->out = NULL;
    if (cell->set_up && cell->kernel->teardown)
        cell->kernel->teardown(cell->ctx);
    cell->set_up = false;
    cell->ctx = NULL;
}

int mhk_cell_corrupt(struct mhk_cell *cell, size_t i)
{
    const struct mhk_kernel *k = cell->kernel;
    unsigned char *item = mhk_cell_item_out(cell, i);
    if (!k->codec) {
        item[0] ^= 1; /* every verifier checks each output's first byte */
        return 0;
    }
    /* Through the codec: encode, flip the last byte's low bit, decode. */
    size_t len = k->codec->size(item, cell->ctx);
    unsigned char *buf = len ? malloc(len) : NULL;
    int rc = MH_EINVAL;
    if (buf && k->codec->encode(item, buf, len, cell->ctx) == 0) {
        buf[len - 1] ^= 1;
        k->codec->clear(item, cell->ctx);
        rc = k->codec->decode(item, buf, len, cell->ctx) ? MH_EINVAL : 0;
    }
    free(buf);
    return rc;
}
