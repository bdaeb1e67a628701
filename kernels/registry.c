/* The kernel registry: every descriptor, CPU-bound first, and lookup. */
#include <string.h>
#include <time.h>
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static const struct mhk_kernel *const registry_list[] = {
    &mhk__factorial, &mhk__factorial_gmp, &mhk__primes, &mhk__bandwidth,
    &mhk__sleep,     &mhk__file,          &mhk__tcp,    NULL,
};

const struct mhk_kernel *const *mhk_kernels(void)
{
    return registry_list;
}

const struct mhk_kernel *mhk_find(const char *name)
{
    if (!name)
        return NULL;
    for (const struct mhk_kernel *const *k = registry_list; *k; k++)
        if (strcmp((*k)->name, name) == 0)
            return *k;
    return NULL;
}

void mhk_clear_outputs(const struct mhk_kernel *kernel, void *out, size_t n,
                       void *ctx)
{
    if (!kernel || !kernel->codec || !out)
        return;
    for (size_t i = 0; i < n; i++)
        kernel->codec->clear((char *)out + i * kernel->out_size, ctx);
}

uint64_t mhk__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int mhk__env_u64(const char *name, uint64_t fallback, uint64_t min,
                 uint64_t max, uint64_t *value)
{
    const char *text = getenv(name);
    if (!text || !*text) {
        *value = fallback;
        return 0;
    }
    if (*text < '0' || *text > '9')
        return MH_EINVAL; /* strtoull would accept "-1" and " 5" */
    char *end;
    errno = 0;
    unsigned long long parsed = strtoull(text, &end, 10);
    if (errno || *end || parsed < min || parsed > max)
        return MH_EINVAL;
    *value = parsed;
    return 0;
}
