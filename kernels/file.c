/*
 * file: random 4 KiB reads from a file the kernel writes in setup under
 * $TMPDIR (default /tmp). The file is unlinked as soon as it is open, so
 * nothing is left on disk however the process ends; forked workers share
 * the descriptor and read with pread (no shared offset). setup writes,
 * fsyncs, and drops the file from the page cache; generate drops it again
 * (POSIX_FADV_DONTNEED) before each run, and POSIX_FADV_RANDOM turns off
 * read-ahead, so each item's read reaches storage (MHK_FILE_WARM=1 keeps
 * the file in the page cache instead, to measure reads from memory). MPI
 * ranks each write their own file.
 *
 * Block b holds words w[j] = mix(seed ^ (b * 512 + j)); the output is a
 * checksum of the block read. The verifier computes what each block must
 * hold from the formula and checksums that, without reading the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define FILE_WORDS (MHK_FILE_BLOCK / sizeof(uint64_t))
#define FILE_MIB ((uint64_t)1 << 20)

struct file_ctx {
    int fd;
    uint64_t blocks;
    uint64_t seed;
    bool warm; /* MHK_FILE_WARM=1: leave the file in the page cache */
};

/* Block b as the file holds it. */
static void file_block(uint64_t *words, uint64_t b, uint64_t seed)
{
    for (size_t j = 0; j < FILE_WORDS; j++)
        words[j] = mhk__mix64(seed ^ (b * FILE_WORDS + j));
}

/* Order-sensitive checksum of one block (FNV-1a over words). */
uint64_t mhk_file_checksum(const uint64_t *words)
{
    uint64_t h = 1469598103934665603u;
    for (size_t j = 0; j < FILE_WORDS; j++)
        h = (h ^ words[j]) * 1099511628211u;
    return h;
}

static int file_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t done = write(fd, p, len);
        if (done < 0 && errno == EINTR)
            continue;
        if (done <= 0)
            return MH_ESYS;
        p += done;
        len -= (size_t)done;
    }
    return 0;
}

static int file_setup(void **ctxp, size_t n, uint64_t seed)
{
    (void)n;
    uint64_t mib;
    uint64_t warm;
    int rc = mhk__env_u64("MHK_FILE_MIB", 64, 1, 1u << 20, &mib);
    if (!rc)
        rc = mhk__env_u64("MHK_FILE_WARM", 0, 0, 1, &warm);
    if (rc)
        return rc;
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    char path[4096];
    if (snprintf(path, sizeof path, "%s/mhk-file-XXXXXX", dir) >= (int)sizeof path)
        return MH_EINVAL;
    struct file_ctx *ctx = malloc(sizeof *ctx);
    uint64_t *block = malloc(MHK_FILE_BLOCK * 64); /* written 256 KiB at a time */
    if (!ctx || !block) {
        rc = MH_ENOMEM;
        goto out_free;
    }
    /* A power of two, so that generate can permute block numbers. */
    ctx->blocks = 1;
    while (ctx->blocks * 2 <= mib * FILE_MIB / MHK_FILE_BLOCK)
        ctx->blocks *= 2;
    ctx->seed = seed;
    ctx->warm = warm != 0;
    ctx->fd = mkstemp(path);
    if (ctx->fd < 0) {
        rc = MH_ESYS;
        goto out_free;
    }
    /* Not inherited by a program a callback might exec. */
    fcntl(ctx->fd, F_SETFD, FD_CLOEXEC);
    unlink(path); /* the descriptor keeps it alive until teardown */
    for (uint64_t b = 0; b < ctx->blocks; b += 64) {
        uint64_t count = ctx->blocks - b < 64 ? ctx->blocks - b : 64;
        for (uint64_t k = 0; k < count; k++)
            file_block(block + k * FILE_WORDS, b + k, seed);
        rc = file_write_all(ctx->fd, block, count * MHK_FILE_BLOCK);
        if (rc)
            goto out_close;
    }
    /* DONTNEED drops only clean pages: write them back first. */
    if (fsync(ctx->fd) != 0 ||
        posix_fadvise(ctx->fd, 0, 0, POSIX_FADV_RANDOM) != 0 ||
        (!ctx->warm && posix_fadvise(ctx->fd, 0, 0, POSIX_FADV_DONTNEED) != 0)) {
        rc = MH_ESYS;
        goto out_close;
    }
    free(block);
    *ctxp = ctx;
    return 0;

out_close:
    close(ctx->fd);
out_free:
    free(block);
    free(ctx);
    return rc;
}

int mhk_file_fd(void *vctx)
{
    const struct file_ctx *ctx = vctx;
    return ctx->fd;
}

static void file_teardown(void *vctx)
{
    struct file_ctx *ctx = vctx;
    if (!ctx)
        return;
    close(ctx->fd);
    free(ctx);
}

/* A pseudo-random permutation of [0, 2^bits): odd multipliers and
 * xor-shifts are each invertible modulo 2^bits. */
static uint64_t file_permute(uint64_t x, unsigned bits, uint64_t key)
{
    uint64_t mask = bits >= 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1;
    unsigned shift = (bits + 1) / 2;
    x = (x * (mhk__mix64(key) | 1)) & mask;
    x ^= x >> shift;
    x = (x * (mhk__mix64(key + 1) | 1)) & mask;
    x ^= x >> shift;
    return (x + mhk__mix64(key + 2)) & mask;
}

/* Distinct random blocks (a fresh permutation for each pass over the
 * file when there are more items than blocks), then the file out of the
 * page cache, so that this run's reads reach storage. */
static void file_generate(void *in, size_t n, uint64_t seed, void *vctx)
{
    struct file_ctx *ctx = vctx;
    uint64_t *items = in;
    unsigned bits = 0;
    while (((uint64_t)1 << bits) < ctx->blocks)
        bits++;
    for (size_t i = 0; i < n; i++)
        items[i] = file_permute(i % ctx->blocks, bits, seed * 31 + i / ctx->blocks);
    if (!ctx->warm)
        posix_fadvise(ctx->fd, 0, 0, POSIX_FADV_DONTNEED);
}

static int file_fn(const void *in, void *out, void *vctx)
{
    const struct file_ctx *ctx = vctx;
    uint64_t b = *(const uint64_t *)in;
    if (b >= ctx->blocks)
        return EINVAL;
    uint64_t words[FILE_WORDS];
    size_t got = 0;
    while (got < MHK_FILE_BLOCK) {
        ssize_t done = pread(ctx->fd, (char *)words + got, MHK_FILE_BLOCK - got,
                             (off_t)(b * MHK_FILE_BLOCK + got));
        if (done < 0 && errno == EINTR)
            continue;
        if (done < 0)
            return errno;
        if (done == 0)
            return EIO; /* the file is shorter than it was written */
        got += (size_t)done;
    }
    *(uint64_t *)out = mhk_file_checksum(words);
    return 0;
}

static size_t file_verify(const void *in, const void *out, size_t n, void *vctx)
{
    const struct file_ctx *ctx = vctx;
    const uint64_t *items = in, *sums = out;
    uint64_t words[FILE_WORDS];
    for (size_t i = 0; i < n; i++) {
        if (items[i] >= ctx->blocks)
            return i + 1;
        file_block(words, items[i], ctx->seed);
        if (sums[i] != mhk_file_checksum(words))
            return i + 1;
    }
    return 0;
}

const struct mhk_kernel mhk__file = {
    .name = "file",
    .description = "IO-bound: random 4 KiB reads (pread) from a 64 MiB file "
                   "dropped from the page cache before each run",
    .bound = MHK_IO,
    .in_size = sizeof(uint64_t),
    .out_size = sizeof(uint64_t),
    .default_items = 8192,
    .quick_items = 1024,
    .setup = file_setup,
    .teardown = file_teardown,
    .generate = file_generate,
    .fn = file_fn,
    .verify = file_verify,
};
