/*
 * Config resolution: what the caller asked for, else the environment
 * (MANYHANDS_BACKEND, MANYHANDS_WORKERS), else the build's and machine's
 * defaults.
 */
/* sched_getaffinity and CPU_COUNT are GNU extensions. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

int mh__usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int count = CPU_COUNT(&set);
        if (count > 0)
            return count;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

/* A whole positive decimal number, nothing else; -1 when it is not one. */
static long config_parse_count(const char *text)
{
    if (!text || *text < '0' || *text > '9')
        return -1;
    errno = 0;
    char *end;
    long value = strtol(text, &end, 10);
    if (errno || *end != '\0' || value <= 0)
        return -1;
    return value;
}

/* The best backend built that runs without a launcher: a collective one
 * (mpi) needs every process of a job to call it, so it is only ever
 * chosen by name. seq qualifies, so there always is one. */
static const char *config_default_backend(void)
{
    size_t i = 0;
    while (mh__registry[i]->caps & MH__CAP_COLLECTIVE)
        i++;
    return mh__registry[i]->name;
}

int mh__config_resolve(const struct mh_config *config, struct mh_config *out,
                       const struct mh_backend_ops **ops)
{
    static const struct mh_config defaults = {0};
    *out = config ? *config : defaults;

    if (out->on_error != MH_STOP && out->on_error != MH_CONTINUE)
        return MH_EINVAL;
    if (!(out->timeout_s >= 0.0) || isinf(out->timeout_s))
        return MH_EINVAL; /* negative, NaN or infinite */
    if (out->workers < 0 || out->retries < 0)
        return MH_EINVAL;

    if (out->workers == 0) {
        const char *env = getenv("MANYHANDS_WORKERS");
        if (env && *env) {
            long count = config_parse_count(env);
            if (count < 0)
                return MH_EINVAL;
            out->workers = count > MH_WORKERS_MAX ? MH_WORKERS_MAX : (int)count;
        } else {
            out->workers = mh__usable_cpus();
        }
    }
    if (out->workers > MH_WORKERS_MAX)
        out->workers = MH_WORKERS_MAX;

    if (!out->backend) {
        const char *env = getenv("MANYHANDS_BACKEND");
        out->backend = env && *env ? env : config_default_backend();
    }
    *ops = mh__backend_find(out->backend);
    if (!*ops)
        return MH_ENOTSUP;
    out->backend = (*ops)->name; /* static storage, unlike env or caller's */

    if (out->timeout_s > 0 && !((*ops)->caps & MH__CAP_TIMEOUT))
        return MH_ENOTSUP;
    /* A cap or a recycling count nobody enforces would be a silent lie. */
    if ((out->worker_memory_max || out->worker_items_max) &&
        !((*ops)->caps & MH__CAP_WORKER_LIMITS))
        return MH_ENOTSUP;
    return MH_OK;
}

size_t mh__chunk_auto(size_t n, size_t chunks)
{
    size_t chunk = n / chunks + (n % chunks != 0);
    if (chunk > MH__CHUNK_MAX)
        chunk = MH__CHUNK_MAX;
    return chunk ? chunk : 1;
}
