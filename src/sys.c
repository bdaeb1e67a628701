/*
 * The library's allocation, worker-starting OS calls, descriptors and
 * clock. Every allocation, mmap, fork and pthread_create in src/ and
 * backends/ goes through these so that a fault-injection build
 * (MH_FAULT_INJECTION) can fail any one of them; every descriptor the
 * library makes comes from here, above 2.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

/* fd itself, or when it is 0, 1 or 2 (the caller started with them
 * closed) a close-on-exec copy above 2, fd closed: a callback that writes
 * to stdout must never write into the library's pipe. -1 on error. */
static int sys_fd_above_stdio(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int err = errno;
    close(fd);
    errno = err;
    return high;
}

int mh__pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC))
        return -1;
    for (int k = 0; k < 2; k++) {
        fds[k] = sys_fd_above_stdio(fds[k]);
        if (fds[k] < 0) {
            int err = errno;
            close(fds[1 - k]); /* k == 0: fds[1] is still open; k == 1: fds[0] */
            errno = err;
            fds[0] = fds[1] = -1;
            return -1;
        }
    }
    return 0;
}

int mh__pidfd_open(pid_t pid)
{
    return sys_fd_above_stdio((int)syscall(SYS_pidfd_open, pid, 0));
}

int mh__reap(pid_t pid)
{
    int wstatus;
    for (;;) {
        pid_t got = waitpid(pid, &wstatus, 0);
        if (got == pid)
            return wstatus;
        if (got < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

double mh__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
