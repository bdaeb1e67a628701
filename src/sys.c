/*
 * The library's allocation, worker-starting OS calls and clock. Every
 * allocation, mmap, fork and pthread_create in src/ and backends/ goes
 * through these so that a fault-injection build (MH_FAULT_INJECTION) can
 * fail any one of them.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifdef MH_FAULT_INJECTION
#include <stdatomic.h>

#include "fault.h"

/*
 * Per kind: calls since armed, the call number to fail (0: none) and the
 * process that armed it. All relaxed: each is an independent counter or
 * setting, and a test arms before it starts the calls it counts (thread
 * creation and fork order everything after the arm).
 */
static atomic_ulong sys_fault_calls[MH__FAULT_KINDS];
static atomic_ulong sys_fault_nth[MH__FAULT_KINDS];
static atomic_long sys_fault_pid[MH__FAULT_KINDS];
static atomic_ulong sys_fault_injected[MH__FAULT_KINDS];
static atomic_long sys_fault_live; /* allocations not yet freed */

void mh__fault_arm(int kind, unsigned long nth)
{
    if (kind < 0 || kind >= MH__FAULT_KINDS)
        return;
    atomic_store_explicit(&sys_fault_nth[kind], 0, memory_order_relaxed);
    atomic_store_explicit(&sys_fault_calls[kind], 0, memory_order_relaxed);
    atomic_store_explicit(&sys_fault_pid[kind], (long)getpid(), memory_order_relaxed);
    atomic_store_explicit(&sys_fault_nth[kind], nth, memory_order_relaxed);
}

unsigned long mh__fault_calls(int kind)
{
    if (kind < 0 || kind >= MH__FAULT_KINDS)
        return 0;
    return atomic_load_explicit(&sys_fault_calls[kind], memory_order_relaxed);
}

unsigned long mh__fault_injected(int kind)
{
    if (kind < 0 || kind >= MH__FAULT_KINDS)
        return 0;
    return atomic_load_explicit(&sys_fault_injected[kind], memory_order_relaxed);
}

long mh__fault_live_allocs(void)
{
    return atomic_load_explicit(&sys_fault_live, memory_order_relaxed);
}

/* Count a call of kind; true when this one must fail. */
static bool sys_fault_hit(int kind)
{
    unsigned long call =
        atomic_fetch_add_explicit(&sys_fault_calls[kind], 1, memory_order_relaxed) + 1;
    unsigned long nth = atomic_load_explicit(&sys_fault_nth[kind], memory_order_relaxed);
    if (nth == 0 || call != nth ||
        atomic_load_explicit(&sys_fault_pid[kind], memory_order_relaxed) != (long)getpid())
        return false;
    atomic_fetch_add_explicit(&sys_fault_injected[kind], 1, memory_order_relaxed);
    return true;
}

/* Count a successful allocation as live. */
static void *sys_fault_alloced(void *p)
{
    if (p)
        atomic_fetch_add_explicit(&sys_fault_live, 1, memory_order_relaxed);
    return p;
}
#define SYS_FAULT(kind) sys_fault_hit(kind)
#define SYS_ALLOCED(p) sys_fault_alloced(p)
#define SYS_FREED(p)                                                          \
    do {                                                                      \
        if (p)                                                                \
            atomic_fetch_sub_explicit(&sys_fault_live, 1, memory_order_relaxed); \
    } while (0)
#else
#define SYS_FAULT(kind) false
#define SYS_ALLOCED(p) (p)
#define SYS_FREED(p) ((void)(p))
#endif

void *mh__malloc(size_t size)
{
    if (SYS_FAULT(MH__FAULT_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return SYS_ALLOCED(malloc(size));
}

void *mh__calloc(size_t count, size_t size)
{
    if (SYS_FAULT(MH__FAULT_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return SYS_ALLOCED(calloc(count, size));
}

void mh__free(void *p)
{
    SYS_FREED(p);
    free(p);
}

void *mh__mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
    if (SYS_FAULT(MH__FAULT_MMAP)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return mmap(addr, length, prot, flags, fd, offset);
}

pid_t mh__fork(void)
{
    if (SYS_FAULT(MH__FAULT_FORK)) {
        errno = EAGAIN;
        return -1;
    }
    return fork();
}

int mh__pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                       void *(*start)(void *), void *arg)
{
    if (SYS_FAULT(MH__FAULT_THREAD))
        return EAGAIN;
    return pthread_create(thread, attr, start, arg);
}

uint64_t mh__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double mh__now(void)
{
    return (double)mh__now_ns() * 1e-9;
}
