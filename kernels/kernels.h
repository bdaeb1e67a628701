/*
 * Kernels: the workloads the harness, the tests and the micro-benchmarks
 * share. Each is a descriptor in one registry (kernels/registry.c); the
 * harness knows nothing about any kernel beyond this header.
 *
 * Lifecycle of one measured cell, written once as struct mhk_cell below:
 *   setup(&ctx, n, seed)  -> generate(in, n, seed, ctx) -> mh_map(fn) ->
 *   verify(in, out, n, ctx) -> clear outputs (codec->clear) -> teardown(ctx)
 *
 * Open the pool after setup: the fork backend's workers inherit ctx (the
 * shared array, the file descriptor) when they are forked. fn may run in
 * pool threads, OpenMP threads, forked workers and MPI ranks (each rank
 * runs setup itself); what a kernel keeps per process or per thread is
 * made lazily where it is used, and teardown leaves no descriptor, thread
 * or file behind in the process that ran setup.
 *
 * Knobs (environment, read by setup; a malformed value is MH_EINVAL):
 *   MHK_BANDWIDTH_MIB bandwidth's array size (default: 2 x the last-level cache,
 *                   at least 256 MiB, at most 1 GiB; never more than the
 *                   items touch)
 *   MHK_SLEEP_US    sleep's latency per item (default 1000)
 *   MHK_FILE_MIB    file's size (default 64; rounded down to a power of
 *                   two of 4 KiB blocks)
 *   MHK_FILE_WARM   1: file's reads come from the page cache (default 0:
 *                   the cache is dropped before each run)
 *   MHK_TCP_DELAY_US tcp's service delay per request (default 1000)
 */
#ifndef MHK_KERNELS_H
#define MHK_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manyhands.h"

#ifdef __cplusplus
extern "C" {
#endif

enum mhk_bound {
    MHK_CPU, /* time goes to computing */
    MHK_IO,  /* time goes to waiting: sleep, storage, network */
};

struct mhk_kernel {
    const char *name;        /* "factorial", "sleep", ... */
    const char *description; /* one line */
    enum mhk_bound bound;
    size_t in_size, out_size;
    const struct mh_codec *codec; /* NULL: outputs are plain bytes */
    size_t default_items;         /* items in a default matrix cell */
    size_t quick_items;           /* items in a --quick cell */
    /* What the harness does with it beyond the matrix (it names no kernel):
     * seed_items: the blog's experiment (`manyhands-bench seed`) runs this
     * kernel at this count (0: not the seed's workload); chunk_sweep: the
     * default matrix also runs it at fixed chunk sizes (cost varies along
     * the array, so chunking matters); raw_loop: the raw-openmp peer's
     * --kernel that does the same work (NULL: none). */
    size_t seed_items;
    bool chunk_sweep;
    const char *raw_loop;

    /* Prepare what the items share (a large array, a file, a server) for n
     * items; *ctx is passed to every other slot and to fn. 0 or an MH_E*
     * code. NULL when the kernel needs nothing. */
    int (*setup)(void **ctx, size_t n, uint64_t seed);
    /* Fill n inputs, deterministically from seed. */
    void (*generate)(void *in, size_t n, uint64_t seed, void *ctx);
    /* The map function. */
    mh_fn fn;
    /* Optional per-worker hooks, for config.init / config.fini with the
     * kernel's ctx as hook_ctx (mhk_cell_hooks): what fn keeps per worker
     * (tcp: its connection), made and released with the worker. fn works
     * in pools opened without them too. NULL: none. */
    int (*worker_init)(int worker, void **state, void *ctx);
    void (*worker_fini)(int worker, void *state, void *ctx);
    /* Check n outputs by a method independent of fn: 0 when all are
     * right, else 1 + the index of the first wrong one. */
    size_t (*verify)(const void *in, const void *out, size_t n, void *ctx);
    /* Release what setup made. NULL when setup is NULL. */
    void (*teardown)(void *ctx);
};

/* The kernels, NULL-terminated, CPU-bound first. */
const struct mhk_kernel *const *mhk_kernels(void);

/* The kernel called name, or NULL. */
const struct mhk_kernel *mhk_find(const char *name);

/* Release the outputs of n items after a successful map: codec->clear on
 * each when the kernel has a codec; nothing otherwise. */
void mhk_clear_outputs(const struct mhk_kernel *kernel, void *out, size_t n,
                       void *ctx);

/*
 * One kernel's lifecycle: open (setup, allocate n inputs and outputs,
 * generate), map or run fn, verify (then release the outputs), close
 * (free, teardown). Open pools after mhk_cell_open: forked workers
 * inherit what setup made.
 */
struct mhk_cell {
    const struct mhk_kernel *kernel;
    size_t n;
    void *ctx;
    void *in, *out;   /* n inputs, n outputs (calloc'ed) */
    bool set_up;      /* setup ran: close tears down */
    const char *step; /* after a failed open: "setup" or "allocate" */
};

/* 0, or the MH_E* code of the step that failed (cell->step); nothing is
 * left to close then. */
int mhk_cell_open(struct mhk_cell *cell, const struct mhk_kernel *kernel, size_t n,
                  uint64_t seed);
/* New inputs from seed (a later run of the same cell). */
void mhk_cell_generate(struct mhk_cell *cell, uint64_t seed);
/* Give config the kernel's per-worker hooks, if it has any, with the
 * cell's ctx: pools a cell's maps run on are opened with them. Close such
 * a pool before mhk_cell_close (fini uses what setup made). */
void mhk_cell_hooks(const struct mhk_cell *cell, struct mh_config *config);

/* The map of the cell's kernel over its inputs into its outputs. */
struct mh_task mhk_cell_task(const struct mhk_cell *cell);
int mhk_cell_map(struct mhk_cell *cell, mh_pool *pool, struct mh_report *report);
/* Item i's input and output. */
const void *mhk_cell_item_in(const struct mhk_cell *cell, size_t i);
void *mhk_cell_item_out(const struct mhk_cell *cell, size_t i);
/* A stream sink's output (out, owned by the library) moved into output
 * i, leaving out empty for the library's codec->clear: plain bytes are
 * copied, an mpz_t (mhk_mpz_codec) swapped with a fresh one. 0, or
 * MH_ENOTSUP for another codec. */
int mhk_cell_take(struct mhk_cell *cell, size_t i, void *out);
/* Verify every output (0, or 1 + the first wrong index), then release
 * them (codec->clear): call once after each successful map. */
size_t mhk_cell_verify(struct mhk_cell *cell);
/* Make output i wrong in a way the verifier must catch (its first byte,
 * or the encoded value's lowest bit): for tests of whoever reports a
 * verification. 0, or MH_EINVAL when the codec failed. */
int mhk_cell_corrupt(struct mhk_cell *cell, size_t i);
/* Release everything open made; safe after a failed open. */
void mhk_cell_close(struct mhk_cell *cell);

/* How an mpz_t output travels between processes (factorial,
 * factorial-gmp): the magnitude's bytes, big-endian; values are >= 0. */
extern const struct mh_codec mhk_mpz_codec;

/* tcp only: stop the kernel's loopback server now and close the
 * connections this process made to it, so that later items fail with a
 * clear error (for tests). teardown is still required. 0 or MH_EINVAL. */
int mhk_tcp_stop_server(void *ctx);

/* tcp only: connections the kernel's server has accepted since setup
 * (each thread of each process holds one and reuses it). */
uint64_t mhk_tcp_accepted(void *ctx);

/*
 * For a program that does an IO-bound kernel's waiting itself rather than
 * through fn (harness/peers/evloop.c: an event loop) and hands the outputs
 * to the kernel's own verify. Each takes the ctx of its kernel's setup.
 */

/* sleep: one output, as fn writes it and verify checks it. */
struct mhk_sleep_out {
    uint64_t echo;      /* the input */
    uint64_t waited_ns; /* measured around the wait: at least the delay */
};

/* sleep: the latency per item, in nanoseconds (MHK_SLEEP_US). */
uint64_t mhk_sleep_delay_ns(void *ctx);

/* tcp: the server's port on 127.0.0.1 (host order) and its service delay
 * in nanoseconds. The protocol: 8 bytes of input out, 8 bytes of output
 * back, on a connection that serves one request at a time. */
void mhk_tcp_server(void *ctx, uint16_t *port, uint64_t *delay_ns);

/* file: each item reads the MHK_FILE_BLOCK bytes at offset
 * input * MHK_FILE_BLOCK of the descriptor mhk_file_fd returns (the
 * kernel's; not to be closed), and its output is mhk_file_checksum of
 * them (block: MHK_FILE_BLOCK bytes, 8-byte aligned). */
#define MHK_FILE_BLOCK 4096u
int mhk_file_fd(void *ctx);
uint64_t mhk_file_checksum(const uint64_t *block);

#ifdef __cplusplus
}
#endif

#endif /* MHK_KERNELS_H */
