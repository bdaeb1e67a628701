/*
 * The library's allocation, worker-starting OS calls and clock. Every
 * allocation, mmap, fork and pthread_create in src/ and backends/ goes
 * through these so that a fault-injection build (MH_FAULT_INJECTION) can
 * fail any one of them.
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

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

void *mh__mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
    return mmap(addr, length, prot, flags, fd, offset);
}

pid_t mh__fork(void)
{
    return fork();
}

int mh__pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                       void *(*start)(void *), void *arg)
{
    return pthread_create(thread, attr, start, arg);
}

double mh__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
