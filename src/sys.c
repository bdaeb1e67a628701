/*
 * The library's allocation and clock. Every allocation in src/ and
 * backends/ goes through mh__malloc / mh__calloc so that a fault-injection
 * build (MH_FAULT_INJECTION) can fail any one of them.
 */
#include <stdlib.h>
#include <time.h>

#include "internal.h"

void *mh__malloc(size_t size)
{
    return malloc(size);
}

void *mh__calloc(size_t count, size_t size)
{
    return calloc(count, size);
}

void mh__free(void *p)
{
    free(p);
}

double mh__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
