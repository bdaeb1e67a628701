/*
 * bandwidth: memory-bound. setup fills one large array of 64-bit words,
 * a[k] = mul * k + add (mod 2^64), bigger than the last-level cache; each
 * item sums one slice of BANDWIDTH_SLICE_BYTES, item i taking slice
 * i mod slices, so the items sweep the array in order, again and again
 * when there are more items than slices. Speedup stops where the workers
 * together saturate memory bandwidth. The verifier sums each slice in
 * closed form, from how the array was filled, without reading it.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define BANDWIDTH_SLICE_BYTES (256u * 1024u)
#define BANDWIDTH_SLICE_WORDS (BANDWIDTH_SLICE_BYTES / sizeof(uint64_t))
#define BANDWIDTH_MIB ((uint64_t)1 << 20)

struct bandwidth_ctx {
    const uint64_t *array;
    size_t bytes;          /* mapped */
    size_t slices;         /* of BANDWIDTH_SLICE_WORDS words each */
    uint64_t mul, add;     /* a[k] = mul * k + add */
};

/* Default size: twice the last-level cache, within [256 MiB, 1 GiB]. */
static uint64_t bandwidth_default_mib(void)
{
    long llc = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
    llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (llc <= 0)
        llc = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    uint64_t mib = llc > 0 ? 2 * (uint64_t)llc / BANDWIDTH_MIB : 0;
    if (mib < 256)
        mib = 256;
    if (mib > 1024)
        mib = 1024;
    return mib;
}

static int bandwidth_setup(void **ctxp, size_t n, uint64_t seed)
{
    uint64_t mib;
    int rc = mhk__env_u64("MHK_BANDWIDTH_MIB", bandwidth_default_mib(), 1, 65536, &mib);
    if (rc)
        return rc;
    struct bandwidth_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return MH_ENOMEM;
    /* No more slices than the items touch: a small run gets a small array. */
    size_t slices = (size_t)(mib * BANDWIDTH_MIB / BANDWIDTH_SLICE_BYTES);
    if (slices > n)
        slices = n;
    if (slices == 0)
        slices = 1;
    ctx->slices = slices;
    ctx->bytes = slices * BANDWIDTH_SLICE_BYTES;
    ctx->mul = mhk__mix64(seed) | 1;
    ctx->add = mhk__mix64(seed + 1);
    /* mmap, not malloc: page-aligned, and forked workers share it
     * copy-on-write (they only read it). */
    uint64_t *array = mmap(NULL, ctx->bytes, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (array == MAP_FAILED) {
        free(ctx);
        return MH_ENOMEM;
    }
    /* Huge pages where the system allows: fewer faults while filling,
     * fewer TLB misses while sweeping. Advice only: failure is fine. */
    madvise(array, ctx->bytes, MADV_HUGEPAGE);
    size_t words = ctx->bytes / sizeof(uint64_t);
    uint64_t value = ctx->add; /* mul * k + add, by additions */
    for (size_t k = 0; k < words; k++, value += ctx->mul)
        array[k] = value;
    ctx->array = array;
    *ctxp = ctx;
    return 0;
}

static void bandwidth_teardown(void *vctx)
{
    struct bandwidth_ctx *ctx = vctx;
    if (!ctx)
        return;
    munmap((void *)ctx->array, ctx->bytes);
    free(ctx);
}

static void bandwidth_generate(void *in, size_t n, uint64_t seed, void *vctx)
{
    (void)seed;
    struct bandwidth_ctx *ctx = vctx;
    uint64_t *slice = in;
    for (size_t i = 0; i < n; i++)
        slice[i] = i % ctx->slices;
}

static int bandwidth_fn(const void *in, void *out, void *vctx)
{
    const struct bandwidth_ctx *ctx = vctx;
    uint64_t s = *(const uint64_t *)in;
    if (s >= ctx->slices)
        return 1;
    const uint64_t *p = ctx->array + s * BANDWIDTH_SLICE_WORDS;
    /* Four independent sums, so the loop waits on memory, not on one
     * chain of additions. */
    uint64_t sum0 = 0, sum1 = 0, sum2 = 0, sum3 = 0;
    for (size_t k = 0; k < BANDWIDTH_SLICE_WORDS; k += 4) {
        sum0 += p[k];
        sum1 += p[k + 1];
        sum2 += p[k + 2];
        sum3 += p[k + 3];
    }
    *(uint64_t *)out = sum0 + sum1 + sum2 + sum3;
    return 0;
}

/* Sum of a[k] for k in [s L, s L + L): mul (L s L + L (L - 1) / 2) + add L,
 * all mod 2^64 (L is even, so L / 2 is exact). */
static size_t bandwidth_verify(const void *in, const void *out, size_t n, void *vctx)
{
    const struct bandwidth_ctx *ctx = vctx;
    const uint64_t *slice = in, *sum = out;
    const uint64_t len = BANDWIDTH_SLICE_WORDS;
    for (size_t i = 0; i < n; i++) {
        uint64_t first = slice[i] * len;
        uint64_t index_sum = len * first + (len / 2) * (len - 1);
        if (slice[i] >= ctx->slices || sum[i] != ctx->mul * index_sum + ctx->add * len)
            return i + 1;
    }
    return 0;
}

const struct mhk_kernel mhk__bandwidth = {
    .name = "bandwidth",
    .description = "memory-bound: each item sums a 256 KiB slice of one array "
                   "larger than the last-level cache",
    .bound = MHK_CPU,
    .in_size = sizeof(uint64_t),
    .out_size = sizeof(uint64_t),
    .default_items = 6144,
    .quick_items = 512,
    .setup = bandwidth_setup,
    .teardown = bandwidth_teardown,
    .generate = bandwidth_generate,
    .fn = bandwidth_fn,
    .verify = bandwidth_verify,
};
