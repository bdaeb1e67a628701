/*
 * libFuzzer target: configuration resolution (src/config.c) — the
 * mh_config fields and the MANYHANDS_WORKERS / MANYHANDS_BACKEND values a
 * user may set to anything.
 *
 * Input: 4 bytes workers, 8 bytes timeout (a double: NaN, infinities,
 * negatives), 1 byte on_error and 1 byte of flags, then the workers
 * text, a NUL, the backend text. Properties: the result is MH_OK,
 * MH_EINVAL or MH_ENOTSUP; on MH_OK the worker count is in
 * 1..MH_WORKERS_MAX, the backend is one this build has, an environment
 * worker count was a plain positive decimal, and a named backend is the
 * one resolved.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* putenv keeps these buffers, so nothing is allocated per input. */
static char fuzz_env_workers[300] = "MANYHANDS_WORKERS=";
static char fuzz_env_backend[300] = "MANYHANDS_BACKEND=";
#define FUZZ_PREFIX 18 /* strlen("MANYHANDS_WORKERS=") == strlen("MANYHANDS_BACKEND=") */

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_config: %s\n", what);
    abort();
}

/* Copy up to the first NUL (or the buffer's room) after the prefix. */
static size_t fuzz_set(char *env, const uint8_t *data, size_t size)
{
    size_t len = 0;
    while (len < size && data[len] && FUZZ_PREFIX + len + 1 < 300) {
        env[FUZZ_PREFIX + len] = (char)data[len];
        len++;
    }
    env[FUZZ_PREFIX + len] = '\0';
    return len;
}

static int fuzz_all_digits(const char *text)
{
    if (!*text)
        return 0;
    for (; *text; text++)
        if (*text < '0' || *text > '9')
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        putenv(fuzz_env_workers);
        putenv(fuzz_env_backend);
        ready = 1;
    }
    if (size < 14)
        return 0;
    struct mh_config config;
    memset(&config, 0, sizeof config);
    int32_t workers;
    memcpy(&workers, data, 4);
    memcpy(&config.timeout_s, data + 4, 8);
    config.on_error = (enum mh_on_error)(data[12] % 4);
    uint8_t flags = data[13];
    data += 14;
    size -= 14;
    config.workers = flags & 1 ? workers : 0;
    size_t used = fuzz_set(fuzz_env_workers, data, size);
    data += used < size ? used + 1 : used;
    size -= used < size ? used + 1 : used;
    fuzz_set(fuzz_env_backend, data, size);
    const char *workers_text = fuzz_env_workers + FUZZ_PREFIX;
    const char *backend_text = fuzz_env_backend + FUZZ_PREFIX;
    /* Sometimes name the backend in the config instead (it wins). */
    char named[300];
    if (flags & 2) {
        strcpy(named, backend_text);
        config.backend = named;
    }

    struct mh_config out;
    const struct mh_backend_ops *ops = NULL;
    int rc = mh__config_resolve(&config, &out, &ops);
    if (rc != MH_OK && rc != MH_EINVAL && rc != MH_ENOTSUP)
        fuzz_fail("unexpected return code");
    if (rc != MH_OK)
        return 0;
    if (out.workers < 1 || out.workers > MH_WORKERS_MAX)
        fuzz_fail("worker count out of range");
    if (!ops || !out.backend || mh__backend_find(out.backend) != ops)
        fuzz_fail("backend not in the registry");
    if (config.workers == 0 && *workers_text && !fuzz_all_digits(workers_text))
        fuzz_fail("a worker count that is not a plain decimal was accepted");
    if (config.workers < 0)
        fuzz_fail("a negative worker count was accepted");
    const char *asked = config.backend ? config.backend : backend_text;
    if (*asked && strcmp(asked, out.backend) != 0)
        fuzz_fail("resolved a different backend than the one named");
    if (!(out.timeout_s >= 0) || isinf(out.timeout_s))
        fuzz_fail("a bad timeout was accepted");
    return 0;
}
