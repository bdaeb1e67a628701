/*
 * libFuzzer target: manyhands-bench's command line and matrix spec
 * (harness/options.c), a pure parser fed whatever a user types.
 *
 * Input: argv strings separated by NUL bytes (at most 64). Properties:
 * parse and check return NULL or their o->error message, never crash or
 * read past a string; on success every list is within MHB_LIST_MAX, every
 * name and path is NUL-terminated inside its buffer, worker counts are in
 * 1..MHB_WORKERS_LIMIT, scale and timeout are positive and finite, and a
 * checked `cell` names exactly one backend, kernel, worker count and item
 * count, and at most one chunk.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

#define FUZZ_ARGS 64

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_options: %s\n", what);
    abort();
}

static void fuzz_name_ok(const char *name, size_t cap)
{
    if (memchr(name, '\0', cap) == NULL)
        fuzz_fail("a name is not NUL-terminated in its buffer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* One heap copy per argument, so ASan sees a read past any of them. */
    char *argv[FUZZ_ARGS + 2];
    int argc = 0;
    argv[argc++] = strdup("manyhands-bench");
    size_t pos = 0;
    while (pos < size && argc <= FUZZ_ARGS) {
        const uint8_t *end = memchr(data + pos, '\0', size - pos);
        size_t len = end ? (size_t)(end - (data + pos)) : size - pos;
        char *arg = malloc(len + 1);
        memcpy(arg, data + pos, len);
        arg[len] = '\0';
        argv[argc++] = arg;
        pos += len + 1;
    }
    argv[argc] = NULL;

    static struct mhb_options o; /* large: keep it off the stack */
    const char *err = mhb_options_parse(&o, argc, argv);
    if (err) {
        if (err != o.error && strcmp(err, o.error) != 0)
            fuzz_fail("parse error is not o->error");
        fuzz_name_ok(o.error, sizeof o.error);
    } else {
        if (o.n_backends < 0 || o.n_backends > MHB_LIST_MAX || o.n_kernels < 0 ||
            o.n_kernels > MHB_LIST_MAX || o.n_workers < 0 || o.n_workers > MHB_LIST_MAX ||
            o.n_chunks < 0 || o.n_chunks > MHB_LIST_MAX)
            fuzz_fail("a list count out of range");
        for (int i = 0; i < o.n_backends; i++)
            fuzz_name_ok(o.backends[i], MHB_NAME_MAX);
        for (int i = 0; i < o.n_kernels; i++)
            fuzz_name_ok(o.kernels[i], MHB_NAME_MAX);
        for (int i = 0; i < o.n_workers; i++)
            if (o.workers[i] < 1 || o.workers[i] > MHB_WORKERS_LIMIT)
                fuzz_fail("a worker count out of range");
        fuzz_name_ok(o.out, sizeof o.out);
        fuzz_name_ok(o.label, sizeof o.label);
        if (!(o.scale > 0) || !isfinite(o.scale) || !(o.timeout_s > 0) ||
            !isfinite(o.timeout_s) || o.repeat < 0)
            fuzz_fail("scale, timeout or repeat out of range");

        static const char *const backends[] = {"seq", "threads", "openmp", "fork", NULL};
        static const char *const kernels[] = {"factorial", "sleep", "bandwidth", NULL};
        const char *check = mhb_options_check(&o, backends, kernels);
        if (check) {
            fuzz_name_ok(o.error, sizeof o.error);
        } else if (o.command == MHB_CELL &&
                   (o.n_backends != 1 || o.n_kernels != 1 || o.n_workers != 1 ||
                    o.n_chunks > 1 || o.items == 0)) {
            /* At most one --chunks: none means adaptive (options.c's
             * message; options.h's comment still says "exactly one"). */
            fuzz_fail("a cell that is not exactly one of each was accepted");
        }
    }
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    return 0;
}
