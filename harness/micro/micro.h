// Shared by the micro-benchmark files (micro.cpp tells what each family
// measures): the callbacks, the data, the helpers and the benchmark
// functions that micro.cpp registers.
#ifndef MICRO_H
#define MICRO_H

#include <benchmark/benchmark.h>
#include <gmp.h>
#include <manyhands.h>

#include "kernels.h"

#include <cstddef>
#include <vector>

namespace micro {

// C linkage: the library calls them through mh_fn / mh_codec pointers.
extern "C" {
int micro_empty(const void *, void *, void *);
int micro_square(const void *in, void *out, void *);
void micro_sum_fold(void *acc, const void *value, void *);
void micro_sum_combine(void *acc, const void *other, void *);
}

const struct mhk_kernel &factorial_kernel();

const size_t kSeedItems = 1000000;
std::vector<double> doubles(size_t n);
std::vector<int> seed_inputs();
double sumsq_expected(const std::vector<double> &in);
bool seed_check_and_clear(benchmark::State &state, const std::vector<int> &in,
                          std::vector<__mpz_struct> &out);

// An open pool for one benchmark; skips it with the library's message
// when the backend cannot open (not built, no fork, ...).
struct Pool {
    mh_pool *pool = nullptr;
    Pool(benchmark::State &state, const char *backend, int workers, size_t chunk);
    ~Pool();
    Pool(const Pool &) = delete;
    Pool &operator=(const Pool &) = delete;
};

void per_item(benchmark::State &state, size_t n);
void map_fail(benchmark::State &state, int rc);

// The families (bench.cpp).
void bm_map_empty(benchmark::State &state, const char *backend, int workers, size_t n,
                  size_t chunk);
void bm_map_small(benchmark::State &state, const char *backend, int workers);
void bm_pool_open_close(benchmark::State &state, const char *backend, int workers);
void bm_reduce_sumsq(benchmark::State &state, const char *backend, int workers, size_t n);
void bm_seed_factorial(benchmark::State &state, const char *backend, int workers);
#ifdef MICRO_HAVE_TBB
void bm_tbb_reduce_sumsq(benchmark::State &state, int workers, size_t n, bool deterministic,
                         size_t grain, bool callbacks);
#endif
#ifdef MICRO_HAVE_OPENMP
void bm_raw_map_empty(benchmark::State &state, int workers, size_t n, size_t chunk);
void bm_raw_map_small(benchmark::State &state, int workers);
void bm_raw_seed_factorial(benchmark::State &state, int workers, size_t chunk);
#endif

} // namespace micro

#endif // MICRO_H
