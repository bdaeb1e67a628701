/*
 * primes: is each of n random odd numbers prime? The numbers grow from
 * PRIMES_MIN_BITS bits at the first item to PRIMES_MAX_BITS at the last,
 * and a test's cost grows with about the cube of the size, so per-item
 * cost spans about four orders of magnitude, the most expensive items sit
 * together at the end of the array, and most numbers are rejected at once
 * by trial division while a few (the primes) pay for every round: static
 * chunking leaves one worker with most of the work; dynamic scheduling
 * evens it out.
 *
 * An item is (bits, seed); fn and the verifier expand it into the same
 * number (primes_number). fn asks GMP's mpz_probab_prime_p (trial
 * division, Baillie-PSW, Miller-Rabin). The verifier uses other tests:
 * a claimed composite needs a proof (a factor in common with the product
 * of the primes below PRIMES_SIEVE, or a Fermat witness
 * among the first primes), a claimed prime must pass Fermat's test to
 * twelve bases, and below 2^32 trial division decides exactly.
 */
#include <gmp.h>

#include "internal.h"

#define PRIMES_MIN_BITS 32
#define PRIMES_MAX_BITS 1536
#define PRIMES_REPS 25 /* mpz_probab_prime_p's recommended count */
#define PRIMES_SIEVE 5000 /* the verifier's gcd takes out factors below this */

struct primes_item {
    uint32_t bits;
    uint32_t pad; /* zero */
    uint64_t seed;
};

/* x = the odd number of exactly `bits` bits that item stands for. */
static void primes_number(mpz_t x, const struct primes_item *item)
{
    uint64_t words[PRIMES_MAX_BITS / 64 + 1];
    size_t count = (item->bits + 63) / 64;
    for (size_t w = 0; w < count; w++)
        words[w] = mhk__mix64(item->seed ^ (w * 0x5851f42d4c957f2du));
    mpz_import(x, count, -1, sizeof words[0], 0, 0, words);
    mpz_fdiv_r_2exp(x, x, item->bits);
    mpz_setbit(x, item->bits - 1);
    mpz_setbit(x, 0);
}

static int primes_fn(const void *in, void *out, void *ctx)
{
    (void)ctx;
    const struct primes_item *item = in;
    if (item->bits < 2 || item->bits > PRIMES_MAX_BITS)
        return 1;
    mpz_t x;
    mpz_init2(x, PRIMES_MAX_BITS + 64);
    primes_number(x, item);
    *(int32_t *)out = mpz_probab_prime_p(x, PRIMES_REPS);
    mpz_clear(x);
    return 0;
}

static void primes_generate(void *in, size_t n, uint64_t seed, void *ctx)
{
    (void)ctx;
    struct primes_item *items = in;
    for (size_t i = 0; i < n; i++) {
        uint64_t span = PRIMES_MAX_BITS - PRIMES_MIN_BITS;
        items[i].bits = (uint32_t)(PRIMES_MIN_BITS +
                                   (n > 1 ? span * i / (n - 1) : 0));
        items[i].pad = 0;
        items[i].seed = mhk__mix64(seed * 0x9e3779b97f4a7c15u + i);
    }
}

/* Exact for x < 2^32, by trial division. */
static int primes_trial(unsigned long x)
{
    if (x < 2)
        return 0;
    for (unsigned long d = 2; d * d <= x; d++)
        if (x % d == 0)
            return 0;
    return 1;
}

static const unsigned long primes_bases[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
#define PRIMES_NBASES (sizeof primes_bases / sizeof primes_bases[0])

/* Whether the verdict claimed for x (0 composite, 1 probable, 2 certain)
 * holds by tests other than fn's. */
static int primes_verdict_ok(mpz_t x, int claimed, mpz_srcptr primorial,
                             mpz_t scratch, mpz_t exp)
{
    if (claimed < 0 || claimed > 2)
        return 0;
    if (mpz_fits_ulong_p(x) && mpz_get_ui(x) < (1ul << 32)) {
        int prime = primes_trial(mpz_get_ui(x));
        return prime ? claimed != 0 : claimed == 0;
    }
    /* A common factor with the primes below PRIMES_SIEVE (x is larger than
     * all of them) proves x composite. */
    mpz_gcd(scratch, x, primorial);
    if (mpz_cmp_ui(scratch, 1) != 0)
        return claimed == 0;
    /* Fermat: b^(x-1) != 1 (mod x) proves x composite; passing every base
     * makes it a probable prime (a Carmichael number coprime to all twelve
     * bases is beyond what random inputs produce). */
    mpz_sub_ui(exp, x, 1);
    for (size_t b = 0; b < PRIMES_NBASES; b++) {
        mpz_set_ui(scratch, primes_bases[b]);
        mpz_powm(scratch, scratch, exp, x);
        if (mpz_cmp_ui(scratch, 1) != 0)
            return claimed == 0;
    }
    return claimed != 0;
}

static size_t primes_verify(const void *in, const void *out, size_t n, void *ctx)
{
    (void)ctx;
    const struct primes_item *items = in;
    const int32_t *verdicts = out;
    mpz_t x, scratch, exp, primorial;
    mpz_inits(x, scratch, exp, primorial, NULL);
    mpz_primorial_ui(primorial, PRIMES_SIEVE);
    size_t wrong = 0;
    for (size_t i = 0; i < n && !wrong; i++) {
        if (items[i].bits < 2 || items[i].bits > PRIMES_MAX_BITS) {
            wrong = i + 1;
            break;
        }
        primes_number(x, &items[i]);
        if (!primes_verdict_ok(x, verdicts[i], primorial, scratch, exp))
            wrong = i + 1;
    }
    mpz_clears(x, scratch, exp, primorial, NULL);
    return wrong;
}

const struct mhk_kernel mhk__primes = {
    .name = "primes",
    .description = "primality of random odd numbers growing from 32 to 1536 "
                   "bits along the array (irregular: cost spans ~10^4)",
    .bound = MHK_CPU,
    .in_size = sizeof(struct primes_item),
    .out_size = sizeof(int32_t),
    .default_items = 3000,
    .quick_items = 300,
    .chunk_sweep = true,
    .generate = primes_generate,
    .fn = primes_fn,
    .verify = primes_verify,
};
