/*
 * sleep: a fixed latency per item (MHK_SLEEP_US, default 1 ms) spent in
 * nanosleep, as a remote call waits: no CPU, only waiting. The output
 * echoes the input and says how long the item really waited (monotonic
 * clock); the verifier checks both, so an item that returned early or
 * was skipped shows.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

struct sleep_ctx {
    uint64_t delay_ns;
};

static int sleep_setup(void **ctxp, size_t n, uint64_t seed)
{
    (void)n;
    (void)seed;
    uint64_t us;
    int rc = mhk__env_u64("MHK_SLEEP_US", 1000, 0, 60000000, &us);
    if (rc)
        return rc;
    struct sleep_ctx *ctx = malloc(sizeof *ctx);
    if (!ctx)
        return MH_ENOMEM;
    ctx->delay_ns = us * 1000;
    *ctxp = ctx;
    return 0;
}

static void sleep_teardown(void *ctx)
{
    free(ctx);
}

uint64_t mhk_sleep_delay_ns(void *vctx)
{
    const struct sleep_ctx *ctx = vctx;
    return ctx->delay_ns;
}

static void sleep_generate(void *in, size_t n, uint64_t seed, void *ctx)
{
    (void)ctx;
    uint64_t *items = in;
    for (size_t i = 0; i < n; i++)
        items[i] = mhk__mix64(seed + i);
}

static int sleep_fn(const void *in, void *out, void *vctx)
{
    const struct sleep_ctx *ctx = vctx;
    uint64_t start = mhk__now_ns();
    struct timespec left = {
        .tv_sec = (time_t)(ctx->delay_ns / 1000000000u),
        .tv_nsec = (long)(ctx->delay_ns % 1000000000u),
    };
    /* A signal cuts the sleep short: sleep the rest. */
    while (nanosleep(&left, &left) != 0)
        if (errno != EINTR)
            return errno;
    struct mhk_sleep_out *result = out;
    result->echo = *(const uint64_t *)in;
    result->waited_ns = mhk__now_ns() - start;
    return 0;
}

static size_t sleep_verify(const void *in, const void *out, size_t n, void *vctx)
{
    const struct sleep_ctx *ctx = vctx;
    const uint64_t *items = in;
    const struct mhk_sleep_out *results = out;
    for (size_t i = 0; i < n; i++)
        if (results[i].echo != items[i] || results[i].waited_ns < ctx->delay_ns)
            return i + 1;
    return 0;
}

const struct mhk_kernel mhk__sleep = {
    .name = "sleep",
    .description = "IO-bound: a fixed 1 ms latency per item (nanosleep), as a "
                   "remote call waits",
    .bound = MHK_IO,
    .in_size = sizeof(uint64_t),
    .out_size = sizeof(struct mhk_sleep_out),
    .default_items = 512,
    .quick_items = 64,
    .setup = sleep_setup,
    .teardown = sleep_teardown,
    .generate = sleep_generate,
    .fn = sleep_fn,
    .verify = sleep_verify,
};
