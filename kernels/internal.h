/*
 * Private to kernels/: helpers the kernel files share. The harness and the
 * tests see kernels.h only.
 */
#ifndef MHK_INTERNAL_H
#define MHK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/* The descriptors, one per kernel file; registry.c lists them. */
extern const struct mhk_kernel mhk__factorial;
extern const struct mhk_kernel mhk__factorial_gmp;
extern const struct mhk_kernel mhk__primes;
extern const struct mhk_kernel mhk__bandwidth;
extern const struct mhk_kernel mhk__sleep;
extern const struct mhk_kernel mhk__file;
extern const struct mhk_kernel mhk__tcp;

/* SplitMix64: the one pseudo-random step every generator uses, so inputs
 * depend on the seed alone, never on rand()'s global state. */
static inline uint64_t mhk__mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t mhk__now_ns(void);

/* *value = the unsigned integer in environment variable name, or fallback
 * when it is unset or empty. 0, or MH_EINVAL when it is set but not a
 * decimal number in [min, max]: a typo must not silently measure
 * something else. */
int mhk__env_u64(const char *name, uint64_t fallback, uint64_t min,
                 uint64_t max, uint64_t *value);

#endif /* MHK_INTERNAL_H */
