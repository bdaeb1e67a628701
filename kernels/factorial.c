/*
 * factorial and factorial-gmp: the seed's workload. Each item is an int n
 * in [1, 100); its output is the exact n! as a GMP mpz_t, which owns heap
 * memory and so travels between processes through mhk_mpz_codec.
 *
 * factorial is the blog's algorithm, repeated multiplication, with the
 * result allocated once at its final size; factorial-gmp asks GMP's
 * mpz_fac_ui. Each verifier uses methods the other kernel's fn does not:
 * factorial is checked against mpz_fac_ui, factorial-gmp against a table
 * built from prime factorisations (Legendre's formula), and both against
 * the ratio to (n - 1)!.
 */
#include <gmp.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FACTORIAL_MAX 100 /* inputs are in [1, FACTORIAL_MAX) */

/* ------------------------------------------------------------- the codec */

/* A result travels as its limbs, as they lie in memory: both ends are
 * this program on this machine, and a memcpy is what crossing costs
 * (mpz_export byte by byte cost the fork backend a fifth of its time). */
static size_t factorial_codec_size(const void *item, void *ctx)
{
    (void)ctx;
    return mpz_size(item) * sizeof(mp_limb_t);
}

static int factorial_codec_encode(const void *item, void *buf, size_t len,
                                  void *ctx)
{
    (void)ctx;
    if (mpz_sgn((mpz_srcptr)item) < 0 || factorial_codec_size(item, NULL) != len)
        return 1;
    if (len)
        memcpy(buf, mpz_limbs_read(item), len);
    return 0;
}

static int factorial_codec_decode(void *item, const void *buf, size_t len,
                                  void *ctx)
{
    (void)ctx;
    if (len % sizeof(mp_limb_t))
        return 1; /* not whole limbs: not a record of ours */
    mp_size_t limbs = (mp_size_t)(len / sizeof(mp_limb_t));
    /* One allocation at the final size, as fn does. */
    mpz_init2(item, (mp_bitcnt_t)len * 8);
    if (limbs) {
        memcpy(mpz_limbs_write(item, limbs), buf, len);
        mpz_limbs_finish(item, limbs);
    }
    return 0;
}

static void factorial_codec_clear(void *item, void *ctx)
{
    (void)ctx;
    mpz_clear(item);
}

const struct mh_codec mhk_mpz_codec = {
    .size = factorial_codec_size,
    .encode = factorial_codec_encode,
    .decode = factorial_codec_decode,
    .clear = factorial_codec_clear,
};

/* ------------------------------------------------------------ map functions */

/* n! by repeated multiplication, as the blog's factorial(n) does; every
 * factor is below 128 (7 bits), so 7n + 64 bits always hold the result:
 * it is allocated once. */
static int factorial_mul(const void *in, void *out, void *ctx)
{
    (void)ctx;
    int n = *(const int *)in;
    if (n < 0 || n >= FACTORIAL_MAX)
        return 1;
    mpz_ptr result = out;
    mpz_init2(result, 7 * (mp_bitcnt_t)n + 64);
    mpz_set_ui(result, 1);
    for (unsigned long k = 2; k <= (unsigned long)n; k++)
        mpz_mul_ui(result, result, k);
    return 0;
}

static int factorial_fac_ui(const void *in, void *out, void *ctx)
{
    (void)ctx;
    int n = *(const int *)in;
    if (n < 0 || n >= FACTORIAL_MAX)
        return 1;
    mpz_init(out);
    mpz_fac_ui(out, (unsigned long)n);
    return 0;
}

/* Inputs: uniform in [1, 100), like np.random.randint(1, high=100). */
static void factorial_generate(void *in, size_t n, uint64_t seed, void *ctx)
{
    (void)ctx;
    int *items = in;
    for (size_t i = 0; i < n; i++)
        items[i] = 1 + (int)(mhk__mix64(seed + i) % (FACTORIAL_MAX - 1));
}

/* ------------------------------------------------------------- verifiers */

/* table[k] = k! for k < FACTORIAL_MAX by GMP's own factorial. */
static void factorial_table_fac_ui(mpz_t *table)
{
    for (unsigned long k = 0; k < FACTORIAL_MAX; k++) {
        mpz_init(table[k]);
        mpz_fac_ui(table[k], k);
    }
}

/* table[k] = k! by Legendre's formula: the product over primes p <= k of
 * p^e, e = sum over i of floor(k / p^i). No multiplication by every k. */
static void factorial_table_legendre(mpz_t *table)
{
    mpz_t power;
    mpz_init(power);
    for (unsigned long k = 0; k < FACTORIAL_MAX; k++) {
        mpz_init_set_ui(table[k], 1);
        for (unsigned long p = 2; p <= k; p++) {
            int prime = 1;
            for (unsigned long d = 2; d * d <= p; d++)
                if (p % d == 0)
                    prime = 0;
            if (!prime)
                continue;
            unsigned long e = 0;
            for (unsigned long q = p; q <= k; q *= p)
                e += k / q;
            mpz_ui_pow_ui(power, p, e);
            mpz_mul(table[k], table[k], power);
        }
    }
    mpz_clear(power);
}

/*
 * Each out[i] must equal table[n] (n = in[i]) and n * table[n - 1]: the
 * second check is the ratio to (n - 1)!, so one wrong table entry cannot
 * pass a wrong result silently.
 */
static size_t factorial_check(const void *in, const void *out, size_t n,
                              void (*build)(mpz_t *))
{
    mpz_t table[FACTORIAL_MAX], ratio[FACTORIAL_MAX];
    build(table);
    mpz_init_set_ui(ratio[0], 1);
    for (unsigned long k = 1; k < FACTORIAL_MAX; k++) {
        mpz_init(ratio[k]);
        mpz_mul_ui(ratio[k], table[k - 1], k);
    }
    const int *items = in;
    const __mpz_struct *results = out; /* n mpz_t, one struct each */
    size_t wrong = 0;
    for (size_t i = 0; i < n && !wrong; i++) {
        int k = items[i];
        if (k < 0 || k >= FACTORIAL_MAX || mpz_cmp(&results[i], table[k]) != 0 ||
            mpz_cmp(&results[i], ratio[k]) != 0)
            wrong = i + 1;
    }
    for (int k = 0; k < FACTORIAL_MAX; k++) {
        mpz_clear(table[k]);
        mpz_clear(ratio[k]);
    }
    return wrong;
}

static size_t factorial_verify_mul(const void *in, const void *out, size_t n,
                                   void *ctx)
{
    (void)ctx;
    return factorial_check(in, out, n, factorial_table_fac_ui);
}

static size_t factorial_verify_fac_ui(const void *in, const void *out,
                                      size_t n, void *ctx)
{
    (void)ctx;
    return factorial_check(in, out, n, factorial_table_legendre);
}

const struct mhk_kernel mhk__factorial = {
    .name = "factorial",
    .description = "the seed's n! for n in [1,100) by repeated multiplication "
                   "(GMP, exact, one allocation per result)",
    .bound = MHK_CPU,
    .in_size = sizeof(int),
    .out_size = sizeof(mpz_t),
    .codec = &mhk_mpz_codec,
    .default_items = 300000,
    .quick_items = 30000,
    .seed_items = 1000000,
    .raw_loop = "prealloc",
    .generate = factorial_generate,
    .fn = factorial_mul,
    .verify = factorial_verify_mul,
};

const struct mhk_kernel mhk__factorial_gmp = {
    .name = "factorial-gmp",
    .description = "the same n! through GMP's mpz_fac_ui",
    .bound = MHK_CPU,
    .in_size = sizeof(int),
    .out_size = sizeof(mpz_t),
    .codec = &mhk_mpz_codec,
    .default_items = 1000000,
    .quick_items = 100000,
    .raw_loop = "fac_ui",
    .generate = factorial_generate,
    .fn = factorial_fac_ui,
    .verify = factorial_verify_fac_ui,
};
