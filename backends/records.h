/*
 * Result records: how an encoded output travels from a worker process to
 * the caller, the one format of the process backends (fork through shared
 * memory, mpi in a chunk's result message). Pure code (no system calls,
 * allocation only through mh__malloc/mh__free) so that it can be fuzzed on
 * its own (tests/fuzz/fuzz_records.c).
 *
 * A worker writes a stream of records, each a 16-byte header — the item
 * index and the payload length, two native-endian uint64 — then the
 * payload. The stream is handed to the caller in blocks (fork: one arena
 * half at a time; mpi: a chunk's records as one block). A header never
 * straddles two blocks; a payload may, when the record is larger than a
 * block. Within one worker's stream, indices strictly increase.
 */
#ifndef MH_RECORDS_H
#define MH_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MH__RECORD_HEADER 16

/* Write a header for (index, len) at buf[0..16). */
void mh__record_put(unsigned char *buf, size_t index, size_t len);

/*
 * Read a header from buf[0..avail). Returns 0 and sets *index, *len; or
 * MH_ERANGE when fewer than 16 bytes are there, the index is not below n,
 * or the length does not fit size_t.
 */
int mh__record_get(const unsigned char *buf, size_t avail, size_t n,
                   size_t *index, size_t *len);

/* Called for each complete record: 0, or a code that stops the feed. */
typedef int (*mh__record_emit)(size_t index, const void *payload, size_t len,
                               void *ctx);

/* One worker's stream as the caller parses it. Zero it to start. */
struct mh__record_stream {
    size_t n;         /* items in the map: every index is below it */
    size_t next_min;  /* the next record's index must be at least this */
    bool partial;     /* a payload is being reassembled across blocks */
    size_t index;     /* that record's index and length */
    size_t len;
    size_t got;       /* payload bytes received so far */
    unsigned char *buf; /* received payload; grows with what arrives,
                         * never with what a header claims */
    size_t cap;
};

/*
 * Feed one published block of a stream. Every complete record is passed to
 * emit, in stream order, straight from block when it lies inside it. A
 * header cut short, an index out of range or not increasing gives
 * MH_ERANGE; running out of memory MH_ENOMEM; a non-zero emit return is
 * returned as is. After an error the stream must be reset.
 */
int mh__record_stream_feed(struct mh__record_stream *s, const unsigned char *block,
                           size_t len, mh__record_emit emit, void *ctx);

/* Drop a partial record (its worker died) and start again for n items. */
void mh__record_stream_reset(struct mh__record_stream *s, size_t n);

#endif /* MH_RECORDS_H */
