// tbb: a kernel's work through oneTBB, what a C++ programmer would pick:
// the same kernel code (kernels.h: setup, generate, fn, verify), the items
// shared out by tbb::parallel_for with its default auto_partitioner, on W
// threads (a task_arena of W slots, global_control allowing W).
//
//     tbb --kernel NAME --items N --workers W [--seed S] [--repeat R]
//
// The arena is started before the clock (as the library's pool is open
// before its map is timed); seconds time parallel_for alone. Every output
// is then checked with the kernel's verifier, as a library cell does.
// One line per repeat, the format the harness parses:
//   tbb kernel=primes items=3000 workers=2 repeat=0 seconds=0.123456 verified=1
// verified=0 and exit 1 when an output is wrong or fn failed (error= says
// which); exit 2 on bad usage. MHB_CORRUPT=1 in the environment makes the
// first output wrong before the check (the harness's tests).
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels.h"

namespace {

struct Args {
    const char *kernel = nullptr;
    size_t items = 0;
    int workers = 1, repeat = 1;
    uint64_t seed = 1;
};

bool parse(int argc, char **argv, Args &a)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *opt = argv[i], *val = argv[i + 1];
        char *end = nullptr;
        unsigned long long v = std::strtoull(val, &end, 10);
        bool number = *val >= '0' && *val <= '9' && !*end;
        if (!std::strcmp(opt, "--kernel"))
            a.kernel = val;
        else if (!std::strcmp(opt, "--items") && number && v > 0)
            a.items = v;
        else if (!std::strcmp(opt, "--workers") && number && v > 0 && v <= 1024)
            a.workers = static_cast<int>(v);
        else if (!std::strcmp(opt, "--repeat") && number && v > 0 && v <= 1000)
            a.repeat = static_cast<int>(v);
        else if (!std::strcmp(opt, "--seed") && number)
            a.seed = v;
        else
            return false;
    }
    return argc % 2 == 1 && a.kernel && a.items;
}

// parallel_for over the cell's items; the first failing item's index, or
// SIZE_MAX when fn succeeded on all.
size_t run(tbb::task_arena &arena, mhk_cell &cell)
{
    const mhk_kernel *k = cell.kernel;
    std::atomic<size_t> failed{SIZE_MAX};
    arena.execute([&] {
        tbb::parallel_for(tbb::blocked_range<size_t>(0, cell.n),
                          [&](const tbb::blocked_range<size_t> &r) {
                              for (size_t i = r.begin(); i != r.end(); ++i)
                                  if (k->fn(mhk_cell_item_in(&cell, i), mhk_cell_item_out(&cell, i),
                                            cell.ctx) != 0) {
                                      size_t seen = failed.load();
                                      while (i < seen && !failed.compare_exchange_weak(seen, i)) {
                                      }
                                  }
                          });
    });
    return failed.load();
}

} // namespace

int main(int argc, char **argv)
{
    Args a;
    const mhk_kernel *k = nullptr;
    if (!parse(argc, argv, a) || !(k = mhk_find(a.kernel))) {
        std::fprintf(stderr, "usage: %s --kernel NAME --items N --workers W [--seed S] "
                             "[--repeat R]\n", argv[0]);
        return 2;
    }
    mhk_cell cell;
    int rc = mhk_cell_open(&cell, k, a.items, a.seed);
    if (rc) {
        std::fprintf(stderr, "tbb: %s %s: %s\n", a.kernel, cell.step, mh_strerror(rc));
        return 1;
    }
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism,
                                static_cast<size_t>(a.workers));
    tbb::task_arena arena(a.workers);
    arena.initialize();
    arena.execute([] { tbb::parallel_for(0, 1, [](int) {}); }); // start the threads
    int status = 0;
    for (int r = 0; r < a.repeat; r++) {
        if (r)
            mhk_cell_generate(&cell, a.seed + static_cast<uint64_t>(r));
        auto t0 = std::chrono::steady_clock::now();
        size_t failed = run(arena, cell);
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                             .count();
        std::string error;
        size_t wrong = 0;
        if (failed != SIZE_MAX) {
            error = "callback_failed_at_item=" + std::to_string(failed);
        } else {
            if (std::getenv("MHB_CORRUPT"))
                mhk_cell_corrupt(&cell, 0);
            wrong = mhk_cell_verify(&cell);
            if (wrong)
                error = "wrong_output_at_item=" + std::to_string(wrong - 1);
        }
        std::printf("tbb kernel=%s items=%zu workers=%d repeat=%d seconds=%.6f verified=%d%s%s\n",
                    a.kernel, a.items, a.workers, r, seconds, error.empty(),
                    error.empty() ? "" : " error=", error.c_str());
        std::fflush(stdout);
        if (!error.empty()) {
            status = 1;
            break;
        }
    }
    mhk_cell_close(&cell);
    return status;
}
