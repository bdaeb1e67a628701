// manyhands micro-benchmarks: what the library itself costs.
//
// Google Benchmark, from C++, over the public C API. One family per
// question, registered once per backend this build has (mh_backends(),
// "mpi" left out: its ranks come from mpiexec) and per worker count:
//
//   map_empty/B/workers:W/n:N/chunk:C   per-item overhead: an empty function
//                                       over N ints (counter ns_per_item)
//   map_small/B/workers:W/n:W           latency of a map of one item per
//                                       worker, pool already open
//   pool_open_close/B/workers:W         mh_pool_open + mh_pool_close
//   reduce_sumsq/B/workers:W/n:N        mh_reduce, sum of squares of doubles
//                                       (with oneTBB: B = tbb is parallel_reduce,
//                                       B = tbb_deterministic is
//                                       parallel_deterministic_reduce at the
//                                       library's adaptive chunk as grain;
//                                       tbb_callbacks the same calling the
//                                       benchmark's fn and fold through
//                                       pointers, as mh_reduce does)
//   seed_factorial/B/workers:W/n:N      the blog's workload: N GMP
//                                       factorials of ints in [1, 100),
//                                       results kept (cleared untimed)
//
// With OpenMP, B = raw_openmp is the same work as a bare
// `#pragma omp parallel for schedule(dynamic, C)` loop: the floor the
// library is measured against, in the same process and conditions.
//
// Every benchmark uses real time. Defaults: 5 repetitions, aggregates
// only on the console (the JSON file keeps every repetition); any
// --benchmark_* flag given on the command line overrides them.
#include <benchmark/benchmark.h>
#include <gmp.h>
#include <manyhands.h>

#include "kernels.h"
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
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

namespace {

// ------------------------------------------------------------ callbacks
// C linkage: the library calls them through mh_fn / mh_codec pointers.
extern "C" {

static int micro_empty(const void *, void *, void *) { return 0; }

static int micro_square(const void *in, void *out, void *)
{
    double x = *static_cast<const double *>(in);
    *static_cast<double *>(out) = x * x;
    return 0;
}

static void micro_sum_fold(void *acc, const void *value, void *)
{
    *static_cast<double *>(acc) += *static_cast<const double *>(value);
}

static void micro_sum_combine(void *acc, const void *other, void *)
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

const size_t kSeedItems = 1000000;

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

// An open pool for one benchmark; skips it with the library's message
// when the backend cannot open (not built, no fork, ...).
struct Pool {
    mh_pool *pool = nullptr;
    Pool(benchmark::State &state, const char *backend, int workers, size_t chunk)
    {
        struct mh_config config = {};
        config.backend = backend;
        config.workers = workers;
        config.chunk = chunk;
        int rc = mh_pool_open(&pool, &config);
        if (rc)
            state.SkipWithError((std::string("mh_pool_open: ") + mh_strerror(rc)).c_str());
    }
    ~Pool() { mh_pool_close(pool); }
    Pool(const Pool &) = delete;
    Pool &operator=(const Pool &) = delete;
};

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

// ------------------------------------------------------------ library

void bm_map_empty(benchmark::State &state, const char *backend, int workers, size_t n,
                  size_t chunk)
{
    std::vector<int> in(n, 1), out(n);
    Pool p(state, backend, workers, chunk);
    if (!p.pool)
        return;
    struct mh_task task = {};
    task.n = n;
    task.in = in.data();
    task.in_size = sizeof(int);
    task.out = out.data();
    task.out_size = sizeof(int);
    task.fn = micro_empty;
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
    struct mh_task task = {};
    task.n = n;
    task.in = in.data();
    task.in_size = sizeof(int);
    task.out = out.data();
    task.out_size = sizeof(int);
    task.fn = micro_empty;
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

// Compare a sample of results with GMP's own factorial, then release all.
bool seed_check_and_clear(const std::vector<int> &in, std::vector<__mpz_struct> &out)
{
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
    return ok;
}

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
        state.PauseTiming();
        bool ok = seed_check_and_clear(in, out);
        state.ResumeTiming();
        if (!ok) {
            state.SkipWithError("seed_factorial: wrong factorial");
            break;
        }
    }
    per_item(state, in.size());
}

// ------------------------------------------------------------ raw OpenMP
#ifdef MICRO_HAVE_OPENMP

// Through a volatile pointer, as the library calls fn: no inlining.
mh_fn volatile raw_fn = micro_empty;

void raw_empty(size_t n, int workers, size_t chunk, const int *in, int *out)
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
        state.PauseTiming();
        bool ok = seed_check_and_clear(in, out);
        state.ResumeTiming();
        if (!ok) {
            state.SkipWithError("seed_factorial: wrong factorial");
            break;
        }
    }
    per_item(state, in.size());
}

#endif // MICRO_HAVE_OPENMP

// ------------------------------------------------------------ registration

int usable_cpus()
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return 1;
}

// 1, 2 and every CPU this process may use: the 2-core targets, and the
// whole machine where it is bigger.
std::vector<int> worker_counts()
{
    std::vector<int> w = {1, 2};
    int cpus = usable_cpus();
    if (cpus > 2)
        w.push_back(cpus);
    return w;
}

std::string name(const std::string &family, const std::string &backend, int workers)
{
    return family + "/" + backend + "/workers:" + std::to_string(workers);
}

// The fastest repetition: on a shared machine, the one least disturbed.
double fastest(const std::vector<double> &v)
{
    return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
}

template <class F>
void add(const std::string &full, F &&fn, benchmark::TimeUnit unit)
{
    benchmark::RegisterBenchmark(full.c_str(), std::forward<F>(fn))
        ->UseRealTime()
        ->Unit(unit)
        ->ComputeStatistics("min", fastest);
}

const size_t kEmptyItems[] = {1000000, 10000000};
const size_t kFixedChunk = 256;
const size_t kReduceItems = 10000000;

// The chunk the library picks on its own for n items over workers (about
// 64 chunks per worker, at most 4096 items): raw OpenMP uses it too.
size_t adaptive_chunk(size_t n, int workers)
{
    size_t per = static_cast<size_t>(workers) * 64;
    size_t chunk = (n + per - 1) / per;
    return std::min<size_t>(std::max<size_t>(chunk, 1), 4096);
}

// Every (backend, workers) pair to measure: seq runs on the caller alone.
std::vector<std::pair<const char *, int>> instances(const std::vector<const char *> &backends)
{
    std::vector<std::pair<const char *, int>> out;
    for (const char *backend : backends)
        for (int w : worker_counts())
            if (w == 1 || std::strcmp(backend, "seq") != 0)
                out.emplace_back(backend, w);
    return out;
}

// Family by family, every backend next to the others and next to the raw
// OpenMP floor: drift on a shared machine hits the figures that are
// compared with each other alike.
void register_all(const std::vector<const char *> &backends)
{
    using benchmark::kMicrosecond;
    using benchmark::kMillisecond;
    const auto pairs = instances(backends);

    for (auto [backend, w] : pairs)
        add(name("map_small", backend, w) + "/n:" + std::to_string(w),
            [=](benchmark::State &s) { bm_map_small(s, backend, w); }, kMicrosecond);
#ifdef MICRO_HAVE_OPENMP
    for (int w : worker_counts())
        add(name("map_small", "raw_openmp", w) + "/n:" + std::to_string(w),
            [=](benchmark::State &s) { bm_raw_map_small(s, w); }, kMicrosecond);
#endif

    for (auto [backend, w] : pairs)
        add(name("pool_open_close", backend, w),
            [=](benchmark::State &s) { bm_pool_open_close(s, backend, w); }, kMicrosecond);

    for (size_t n : kEmptyItems) {
        for (auto [backend, w] : pairs) {
            std::string base = name("map_empty", backend, w) + "/n:" + std::to_string(n);
            add(base + "/chunk:adaptive",
                [=](benchmark::State &s) { bm_map_empty(s, backend, w, n, 0); }, kMillisecond);
            add(base + "/chunk:" + std::to_string(kFixedChunk),
                [=](benchmark::State &s) { bm_map_empty(s, backend, w, n, kFixedChunk); },
                kMillisecond);
        }
#ifdef MICRO_HAVE_OPENMP
        for (int w : worker_counts()) {
            size_t chunk = adaptive_chunk(n, w);
            add(name("map_empty", "raw_openmp", w) + "/n:" + std::to_string(n) + "/chunk:" +
                    std::to_string(chunk),
                [=](benchmark::State &s) { bm_raw_map_empty(s, w, n, chunk); }, kMillisecond);
        }
#endif
    }

    for (auto [backend, w] : pairs)
        add(name("reduce_sumsq", backend, w) + "/n:" + std::to_string(kReduceItems),
            [=](benchmark::State &s) { bm_reduce_sumsq(s, backend, w, kReduceItems); },
            kMillisecond);
#ifdef MICRO_HAVE_TBB
    for (int w : worker_counts()) {
        size_t grain = adaptive_chunk(kReduceItems, w);
        std::string n = "/n:" + std::to_string(kReduceItems);
        std::string g = "/grain:" + std::to_string(grain);
        add(name("reduce_sumsq", "tbb", w) + n,
            [=](benchmark::State &s) { bm_tbb_reduce_sumsq(s, w, kReduceItems, false, 1, false); },
            kMillisecond);
        add(name("reduce_sumsq", "tbb_deterministic", w) + n + g,
            [=](benchmark::State &s) {
                bm_tbb_reduce_sumsq(s, w, kReduceItems, true, grain, false);
            },
            kMillisecond);
        add(name("reduce_sumsq", "tbb_callbacks", w) + n + g,
            [=](benchmark::State &s) {
                bm_tbb_reduce_sumsq(s, w, kReduceItems, true, grain, true);
            },
            kMillisecond);
    }
#endif

    for (auto [backend, w] : pairs)
        add(name("seed_factorial", backend, w) + "/n:" + std::to_string(kSeedItems),
            [=](benchmark::State &s) { bm_seed_factorial(s, backend, w); }, kMillisecond);
#ifdef MICRO_HAVE_OPENMP
    for (int w : worker_counts()) {
        size_t chunk = adaptive_chunk(kSeedItems, w);
        add(name("seed_factorial", "raw_openmp", w) + "/n:" + std::to_string(kSeedItems) +
                "/chunk:" + std::to_string(chunk),
            [=](benchmark::State &s) { bm_raw_seed_factorial(s, w, chunk); }, kMillisecond);
    }
#endif
}

} // namespace

int main(int argc, char **argv)
{
    // Defaults first, so that the caller's flags (parsed later) win.
    static char repetitions[] = "--benchmark_repetitions=5";
    static char aggregates[] = "--benchmark_display_aggregates_only=true";
    std::vector<char *> args = {argv[0], repetitions, aggregates};
    args.insert(args.end(), argv + 1, argv + argc);
    args.push_back(nullptr);
    int count = static_cast<int>(args.size()) - 1;
    benchmark::Initialize(&count, args.data());
    if (benchmark::ReportUnrecognizedArguments(count, args.data()))
        return 2;

    std::string built;
    std::vector<const char *> backends;
    for (const char *const *b = mh_backends(); *b; b++) {
        built += built.empty() ? "" : ",";
        built += *b;
        if (std::strcmp(*b, "mpi") != 0) // its ranks come from mpiexec
            backends.push_back(*b);
    }
    register_all(backends);
    benchmark::AddCustomContext("manyhands_version", mh_version());
    benchmark::AddCustomContext("manyhands_backends", built);
    benchmark::AddCustomContext("usable_cpus", std::to_string(usable_cpus()));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
