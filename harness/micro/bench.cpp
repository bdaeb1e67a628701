// The benchmark families micro.cpp registers (micro.cpp tells what each
// measures): the library's, oneTBB's and the raw OpenMP floor.
#include "micro.h"

#include <cmath>
#include <string>
#include <vector>

#ifdef MICRO_HAVE_OPENMP
#include <omp.h>
#endif
#ifdef MICRO_HAVE_TBB
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_reduce.h>
#include <oneapi/tbb/task_arena.h>
#endif

namespace micro {

// ------------------------------------------------------------ library

// The empty function over in into out, one int each: the map both
// overhead benchmarks time.
static struct mh_task empty_task(std::vector<int> &in, std::vector<int> &out)
{
    struct mh_task task = {};
    task.n = in.size();
    task.in = in.data();
    task.in_size = sizeof(int);
    task.out = out.data();
    task.out_size = sizeof(int);
    task.fn = micro_empty;
    return task;
}

void bm_map_empty(benchmark::State &state, const char *backend, int workers, size_t n,
                  size_t chunk)
{
    std::vector<int> in(n, 1), out(n);
    Pool p(state, backend, workers, chunk);
    if (!p.pool)
        return;
    struct mh_task task = empty_task(in, out);
    struct mh_report report = {};
    for (auto _ : state) {
        int rc = mh_map(p.pool, &task, &report);
        if (rc) {
            map_fail(state, rc);
            break;
        }
    }
    per_item(state, n);
    state.counters["chunk"] = static_cast<double>(report.chunk);
    state.counters["workers_used"] = report.workers;
}

void bm_map_small(benchmark::State &state, const char *backend, int workers)
{
    size_t n = static_cast<size_t>(workers);
    std::vector<int> in(n, 1), out(n);
    Pool p(state, backend, workers, 0);
    if (!p.pool)
        return;
    struct mh_task task = empty_task(in, out);
    for (auto _ : state) {
        int rc = mh_map(p.pool, &task, nullptr);
        if (rc) {
            map_fail(state, rc);
            break;
        }
    }
}

void bm_pool_open_close(benchmark::State &state, const char *backend, int workers)
{
    struct mh_config config = {};
    config.backend = backend;
    config.workers = workers;
    for (auto _ : state) {
        mh_pool *pool;
        int rc = mh_pool_open(&pool, &config);
        if (rc) {
            state.SkipWithError((std::string("mh_pool_open: ") + mh_strerror(rc)).c_str());
            break;
        }
        mh_pool_close(pool);
    }
}

void bm_reduce_sumsq(benchmark::State &state, const char *backend, int workers, size_t n)
{
    const std::vector<double> in = doubles(n);
    const double expected = sumsq_expected(in);
    Pool p(state, backend, workers, 0);
    if (!p.pool)
        return;
    struct mh_task task = {};
    task.n = n;
    task.in = in.data();
    task.in_size = sizeof(double);
    task.out_size = sizeof(double);
    task.fn = micro_square;
    struct mh_reducer reducer = {sizeof(double), micro_sum_fold, micro_sum_combine};
    double sum = 0;
    for (auto _ : state) {
        sum = 0;
        int rc = mh_reduce(p.pool, &task, &reducer, &sum, nullptr);
        if (rc) {
            state.SkipWithError((std::string("mh_reduce: ") + mh_strerror(rc)).c_str());
            break;
        }
    }
    if (std::fabs(sum - expected) > 1e-9 * expected)
        state.SkipWithError("mh_reduce: wrong sum");
    per_item(state, n);
}

#ifdef MICRO_HAVE_TBB
// The same sum of squares through oneTBB on W threads: parallel_reduce
// (auto_partitioner; the order of additions varies from run to run) or
// parallel_deterministic_reduce (simple_partitioner at grain items: the
// same splits, so the same sum, every run, as mh_reduce promises); with
// callbacks, each item goes through micro_square and micro_sum_fold by
// pointer, the work mh_reduce does per item.
int (*volatile tbb_fn)(const void *, void *, void *) = micro_square;
void (*volatile tbb_fold)(void *, const void *, void *) = micro_sum_fold;

void bm_tbb_reduce_sumsq(benchmark::State &state, int workers, size_t n, bool deterministic,
                         size_t grain, bool callbacks)
{
    const std::vector<double> in = doubles(n);
    const double expected = sumsq_expected(in);
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism,
                                static_cast<size_t>(workers));
    tbb::task_arena arena(workers);
    auto body = [&](const tbb::blocked_range<size_t> &r, double acc) {
        for (size_t i = r.begin(); i != r.end(); ++i) {
            if (callbacks) {
                double sq;
                tbb_fn(&in[i], &sq, nullptr);
                tbb_fold(&acc, &sq, nullptr);
            } else {
                acc += in[i] * in[i];
            }
        }
        return acc;
    };
    auto join = [](double a, double b) { return a + b; };
    double sum = 0;
    for (auto _ : state) {
        arena.execute([&] {
            if (deterministic)
                sum = tbb::parallel_deterministic_reduce(tbb::blocked_range<size_t>(0, n, grain),
                                                         0.0, body, join);
            else
                sum = tbb::parallel_reduce(tbb::blocked_range<size_t>(0, n), 0.0, body, join);
        });
    }
    if (std::fabs(sum - expected) > 1e-9 * expected)
        state.SkipWithError("tbb reduce: wrong sum");
    per_item(state, n);
}
#endif

void bm_seed_factorial(benchmark::State &state, const char *backend, int workers)
{
    const std::vector<int> in = seed_inputs();
    std::vector<__mpz_struct> out(in.size());
    Pool p(state, backend, workers, 0);
    if (!p.pool)
        return;
    struct mh_task task = {};
    task.n = in.size();
    task.in = in.data();
    task.in_size = sizeof(int);
    task.out = out.data();
    task.out_size = sizeof(__mpz_struct);
    task.fn = factorial_kernel().fn;
    task.codec = factorial_kernel().codec;
    for (auto _ : state) {
        int rc = mh_map(p.pool, &task, nullptr);
        if (rc) {
            map_fail(state, rc); // a failed map kept no results
            break;
        }
        if (!seed_check_and_clear(state, in, out))
            break;
    }
    per_item(state, in.size());
}

// ------------------------------------------------------------ raw OpenMP
#ifdef MICRO_HAVE_OPENMP

// Through a volatile pointer, as the library calls fn: no inlining.
static mh_fn volatile raw_fn = micro_empty;

static void raw_empty(size_t n, int workers, size_t chunk, const int *in, int *out)
{
    mh_fn fn = raw_fn;
    long long count = static_cast<long long>(n);
#pragma omp parallel for schedule(dynamic, chunk) num_threads(workers)
    for (long long i = 0; i < count; i++)
        fn(&in[i], &out[i], nullptr);
}

void bm_raw_map_empty(benchmark::State &state, int workers, size_t n, size_t chunk)
{
    std::vector<int> in(n, 1), out(n);
    for (auto _ : state)
        raw_empty(n, workers, chunk, in.data(), out.data());
    per_item(state, n);
}

void bm_raw_map_small(benchmark::State &state, int workers)
{
    size_t n = static_cast<size_t>(workers);
    std::vector<int> in(n, 1), out(n);
    for (auto _ : state)
        raw_empty(n, workers, 1, in.data(), out.data());
}

void bm_raw_seed_factorial(benchmark::State &state, int workers, size_t chunk)
{
    const std::vector<int> in = seed_inputs();
    std::vector<__mpz_struct> out(in.size());
    long long count = static_cast<long long>(in.size());
    const mh_fn factorial = factorial_kernel().fn;
    for (auto _ : state) {
#pragma omp parallel for schedule(dynamic, chunk) num_threads(workers)
        for (long long i = 0; i < count; i++)
            factorial(&in[i], &out[i], nullptr);
        if (!seed_check_and_clear(state, in, out))
            break;
    }
    per_item(state, in.size());
}

#endif // MICRO_HAVE_OPENMP

} // namespace micro
