/*
 * The library's allocation, the OS calls of its maps, descriptors and
 * clock. Every allocation, mmap, fork, pthread_create and every OS call
 * the fork backend makes (pipe, pidfd_open, poll, waitpid, read, write,
 * signals, prctl) goes through these so that a fault-injection build
 * (MH_FAULT_INJECTION) can fail any one of them (src/fault.h); every
 * descriptor the library makes comes from here, above 2.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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
static atomic_int sys_fault_children[MH__FAULT_KINDS]; /* armed for children */
static atomic_long sys_fault_live; /* allocations not yet freed */
static atomic_long sys_fault_maps; /* mappings not yet unmapped */

static void sys_fault_arm(int kind, unsigned long nth, int children)
{
    if (kind < 0 || kind >= MH__FAULT_KINDS)
        return;
    atomic_store_explicit(&sys_fault_nth[kind], 0, memory_order_relaxed);
    atomic_store_explicit(&sys_fault_calls[kind], 0, memory_order_relaxed);
    atomic_store_explicit(&sys_fault_pid[kind], (long)getpid(), memory_order_relaxed);
    atomic_store_explicit(&sys_fault_children[kind], children, memory_order_relaxed);
    atomic_store_explicit(&sys_fault_nth[kind], nth, memory_order_relaxed);
}

void mh__fault_arm(int kind, unsigned long nth)
{
    sys_fault_arm(kind, nth, 0);
}

void mh__fault_arm_children(int kind, unsigned long nth)
{
    sys_fault_arm(kind, nth, 1);
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

long mh__fault_live_maps(void)
{
    return atomic_load_explicit(&sys_fault_maps, memory_order_relaxed);
}

/* Count a call of kind; true when this one must fail. */
static bool sys_fault_hit(int kind)
{
    unsigned long call =
        atomic_fetch_add_explicit(&sys_fault_calls[kind], 1, memory_order_relaxed) + 1;
    unsigned long nth = atomic_load_explicit(&sys_fault_nth[kind], memory_order_relaxed);
    bool armer = atomic_load_explicit(&sys_fault_pid[kind], memory_order_relaxed) ==
                 (long)getpid();
    bool children = atomic_load_explicit(&sys_fault_children[kind], memory_order_relaxed);
    if (nth == 0 || call != nth || armer == children)
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
#define SYS_MAPS(delta) atomic_fetch_add_explicit(&sys_fault_maps, (delta), memory_order_relaxed)
#else
#define SYS_FAULT(kind) false
#define SYS_ALLOCED(p) (p)
#define SYS_FREED(p) ((void)(p))
#define SYS_MAPS(delta) ((void)0)
#endif

/* Fail this call of kind with err when the fault build says so. */
#define SYS_FAIL_IF(kind, err, ret)                                           \
    do {                                                                      \
        if (SYS_FAULT(kind)) {                                                \
            errno = (err);                                                    \
            return (ret);                                                     \
        }                                                                     \
    } while (0)

void *mh__malloc(size_t size)
{
    SYS_FAIL_IF(MH__FAULT_ALLOC, ENOMEM, NULL);
    return SYS_ALLOCED(malloc(size));
}

void *mh__calloc(size_t count, size_t size)
{
    SYS_FAIL_IF(MH__FAULT_ALLOC, ENOMEM, NULL);
    return SYS_ALLOCED(calloc(count, size));
}

void mh__free(void *p)
{
    SYS_FREED(p);
    free(p);
}

void *mh__mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
    SYS_FAIL_IF(MH__FAULT_MMAP, ENOMEM, MAP_FAILED);
    void *p = mmap(addr, length, prot, flags, fd, offset);
    if (p != MAP_FAILED)
        SYS_MAPS(1);
    return p;
}

/* Counted, never failed: unmapping a whole mapping of ours cannot fail
 * (there is nothing to split), and a failed one could not be undone. */
int mh__munmap(void *addr, size_t length)
{
    int rc = munmap(addr, length);
    if (rc == 0)
        SYS_MAPS(-1);
    return rc;
}

pid_t mh__fork(void)
{
    SYS_FAIL_IF(MH__FAULT_FORK, EAGAIN, -1);
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
    SYS_FAIL_IF(MH__FAULT_PIPE, EMFILE, -1);
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
    SYS_FAIL_IF(MH__FAULT_PIDFD, EMFILE, -1);
    return sys_fd_above_stdio((int)syscall(SYS_pidfd_open, pid, 0));
}

int mh__reap(pid_t pid)
{
    int wstatus;
    /* The one way waitpid fails for a child of ours: someone else reaped
     * it (SIGCHLD ignored, a waitpid(-1) elsewhere). Done here for real,
     * so that the fault leaves no zombie. */
    if (SYS_FAULT(MH__FAULT_WAITPID)) {
        while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
            ;
        errno = ECHILD;
        return -1;
    }
    for (;;) {
        pid_t got = waitpid(pid, &wstatus, 0);
        if (got == pid)
            return wstatus;
        if (got < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

int mh__poll(struct pollfd *fds, nfds_t nfds, int timeout_ms)
{
    SYS_FAIL_IF(MH__FAULT_POLL, ENOMEM, -1);
    return poll(fds, nfds, timeout_ms);
}

ssize_t mh__read(int fd, void *buf, size_t len)
{
    SYS_FAIL_IF(MH__FAULT_READ, EIO, -1);
    return read(fd, buf, len);
}

ssize_t mh__write(int fd, const void *buf, size_t len)
{
    SYS_FAIL_IF(MH__FAULT_WRITE, EIO, -1);
    return write(fd, buf, len);
}

int mh__pidfd_signal(int pidfd, int sig)
{
    SYS_FAIL_IF(MH__FAULT_KILL, EPERM, -1);
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int mh__kill(pid_t pid, int sig)
{
    SYS_FAIL_IF(MH__FAULT_KILL, EPERM, -1);
    return kill(pid, sig);
}

int mh__prctl(int option, unsigned long arg)
{
    SYS_FAIL_IF(MH__FAULT_PRCTL, EINVAL, -1);
    return prctl(option, arg, 0UL, 0UL, 0UL);
}

int mh__sys_error(int err)
{
    switch (err) {
    case ENOMEM:
    case EMFILE:
    case ENFILE:
        return MH_ENOMEM;
    case ENOSYS:
        return MH_ENOTSUP;
    default:
        return MH_ESYS;
    }
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
