/*
 * libFuzzer target: result-record decoding (backends/records.h), the one
 * format fork and mpi carry encoded results in: the bytes a worker
 * process — possibly one that died half-way, or wrote garbage — leaves in
 * shared memory (fork), or sends in a chunk's payload (mpi).
 *
 * Input: 8 bytes of item count n, 1 byte of block size, then the stream.
 * The stream is fed in blocks of that size, as fork's caller receives
 * arena halves; block size byte 255 feeds it as one block, as mpi's rank 0
 * feeds a chunk's records. Properties (checked, not just "no crash"): every emitted record
 * lies inside what was fed, its index is below n and above the one
 * before, and the reassembly buffer never grows past what arrived (a
 * header claiming 2^63 bytes must not make the caller allocate them).
 * ASan and UBSan catch any read out of bounds on the way.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "records.h"

struct fuzz_seen {
    size_t last;
    int any;
    size_t fed; /* bytes fed so far */
    uint64_t sum;
};

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_records: %s\n", what);
    abort();
}

static int fuzz_emit(size_t index, const void *payload, size_t len, void *vctx)
{
    struct fuzz_seen *seen = vctx;
    if (seen->any && index <= seen->last)
        fuzz_fail("indices not increasing");
    if (len > seen->fed)
        fuzz_fail("record longer than the bytes fed");
    seen->any = 1;
    seen->last = index;
    const unsigned char *p = payload;
    for (size_t i = 0; i < len; i++) /* every byte must be readable */
        seen->sum += p[i];
    return index % 251 == 250 ? MH_ECODEC : 0; /* a decode that fails */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    uint64_t n64;
    memcpy(&n64, data, sizeof n64);
    size_t n = (size_t)(n64 % 100000);
    size_t block = 16 + data[8] * 4u;
    data += 9;
    size -= 9;
    if (data[-1] == 255 && size > 0)
        block = size;

    struct mh__record_stream stream;
    memset(&stream, 0, sizeof stream);
    mh__record_stream_reset(&stream, n);
    struct fuzz_seen seen = {0};
    for (size_t pos = 0; pos < size; pos += block) {
        size_t len = size - pos < block ? size - pos : block;
        /* Each block is its own allocation, so ASan sees a read past it. */
        unsigned char *copy = malloc(len);
        memcpy(copy, data + pos, len);
        seen.fed += len;
        int rc = mh__record_stream_feed(&stream, copy, len, fuzz_emit, &seen);
        free(copy);
        if (stream.cap > stream.got + 4096 && stream.cap > 2 * stream.got)
            fuzz_fail("reassembly buffer larger than what arrived");
        if (rc != MH_OK && rc != MH_ERANGE && rc != MH_ECODEC && rc != MH_ENOMEM)
            fuzz_fail("unexpected return code");
        if (rc != MH_OK)
            break;
    }
    mh__record_stream_reset(&stream, 0); /* releases a partial record */

    /* Round trip: a header written is the header read back. */
    unsigned char header[MH__RECORD_HEADER];
    size_t index = n ? (size_t)(n64 >> 17) % n : 0, len = (size_t)(n64 >> 3), gi, gl;
    mh__record_put(header, index, len);
    int rc = mh__record_get(header, sizeof header, n, &gi, &gl);
    if (n ? rc != MH_OK || gi != index || gl != len : rc != MH_ERANGE)
        fuzz_fail("header round trip");
    if (mh__record_get(header, sizeof header - 1, n + 1, &gi, &gl) != MH_ERANGE)
        fuzz_fail("short header accepted");
    return 0;
}
