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
#include "micro.h"

#include <sched.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

using namespace micro;

namespace {

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
