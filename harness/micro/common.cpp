// The micro-benchmarks' shared callbacks, data and helpers (micro.h).
#include "micro.h"

#include <cstdlib>
#include <string>

namespace micro {


// ------------------------------------------------------------ callbacks
// C linkage: the library calls them through mh_fn / mh_codec pointers.
extern "C" {

int micro_empty(const void *, void *, void *) { return 0; }

int micro_square(const void *in, void *out, void *)
{
    double x = *static_cast<const double *>(in);
    *static_cast<double *>(out) = x * x;
    return 0;
}

void micro_sum_fold(void *acc, const void *value, void *)
{
    *static_cast<double *>(acc) += *static_cast<const double *>(value);
}

void micro_sum_combine(void *acc, const void *other, void *)
{
    *static_cast<double *>(acc) += *static_cast<const double *>(other);
}

} // extern "C"

// The seed's workload is the `factorial` kernel (kernels/factorial.c): the
// blog's algorithm, each result allocated once, and its GMP codec — the
// same work the harness measures.
const struct mhk_kernel &factorial_kernel()
{
    static const struct mhk_kernel *k = mhk_find("factorial");
    return *k;
}

// ------------------------------------------------------------ data
// Made by each benchmark for itself (untimed) and freed when it ends:
// the process stays small between benchmarks, so a fork-based backend
// is not charged for copying page tables of another benchmark's arrays.

std::vector<double> doubles(size_t n)
{
    std::vector<double> v(n);
    for (size_t i = 0; i < n; i++)
        v[i] = static_cast<double>(i % 1000) * 0.001;
    return v;
}

// The seed's inputs: srand(2017), 1 + rand() % 99, as examples/seed.c.
std::vector<int> seed_inputs()
{
    std::vector<int> v(kSeedItems);
    std::srand(2017);
    for (int &x : v)
        x = 1 + std::rand() % 99;
    return v;
}

// Sum of squares of in, in extended precision: the check.
double sumsq_expected(const std::vector<double> &in)
{
    long double s = 0;
    for (double x : in)
        s += static_cast<long double>(x) * x;
    return static_cast<double>(s);
}

// ------------------------------------------------------------ helpers

Pool::Pool(benchmark::State &state, const char *backend, int workers, size_t chunk)
{
    struct mh_config config = {};
    config.backend = backend;
    config.workers = workers;
    config.chunk = chunk;
    int rc = mh_pool_open(&pool, &config);
    if (rc)
        state.SkipWithError((std::string("mh_pool_open: ") + mh_strerror(rc)).c_str());
}

Pool::~Pool() { mh_pool_close(pool); }

// ns per item from real time: rate = value * iterations / seconds, so
// inverted with value = n * 1e-9 it is seconds * 1e9 / (n * iterations).
void per_item(benchmark::State &state, size_t n)
{
    state.counters["ns_per_item"] = benchmark::Counter(
        static_cast<double>(n) * 1e-9,
        benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n));
}

void map_fail(benchmark::State &state, int rc)
{
    state.SkipWithError((std::string("mh_map: ") + mh_strerror(rc)).c_str());
}


// Compare a sample of results with GMP's own factorial, then release all,
// off the clock; a wrong one skips the benchmark with an error.
bool seed_check_and_clear(benchmark::State &state, const std::vector<int> &in,
                          std::vector<__mpz_struct> &out)
{
    state.PauseTiming();
    bool ok = true;
    mpz_t want;
    mpz_init(want);
    for (size_t i = 0; i < in.size(); i++) {
        if (i % 997 == 0) {
            mpz_fac_ui(want, static_cast<unsigned long>(in[i]));
            ok &= mpz_cmp(want, &out[i]) == 0;
        }
        mpz_clear(&out[i]);
    }
    mpz_clear(want);
    state.ResumeTiming();
    if (!ok)
        state.SkipWithError("seed_factorial: wrong factorial");
    return ok;
}
} // namespace micro
