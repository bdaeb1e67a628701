/*
 * The syscall table (src/fault.h): the library's allocation, the OS calls
 * of a map, and the clock. Every such call in src/ and backends/ goes
 * through a wrapper here, so that a fault-injection build
 * (MH_FAULT_INJECTION) can fail any one of them; every descriptor the
 * library makes comes from here, above 2.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "internal.h"

int mh__errno_code(int err)
{
    if (err == ENOMEM || err == EMFILE || err == ENFILE)
        return MH_ENOMEM;
    return err == EAGAIN ? MH_EAGAIN : MH_ESYS;
}

#ifdef MH_FAULT_INJECTION
#include <stdatomic.h>

/* The table: each entry's name and the errno its failed call sets. */
static const struct sys_call {
    const char *name;
    int err;
} sys_calls[MH__FAULT_KINDS] = {
#define SYS_CALL_(kind, name, err) [MH__FAULT_##kind] = {#name, err},
    MH__SYSCALLS(SYS_CALL_)
#undef SYS_CALL_
};

/*
 * Per kind: calls since armed, the call number to fail (0: none), the
 * process that armed it and whether the fault is for its children. All
 * relaxed: each is an independent counter or setting, and a test arms
 * before it starts the calls it counts (thread creation and fork order
 * everything after the arm).
 */
static atomic_ulong sys_fault_calls[MH__FAULT_KINDS];
static atomic_ulong sys_fault_nth[MH__FAULT_KINDS];
static atomic_long sys_fault_pid[MH__FAULT_KINDS];
static atomic_bool sys_fault_children[MH__FAULT_KINDS];
static atomic_ulong sys_fault_injected[MH__FAULT_KINDS];
static atomic_long sys_fault_live; /* allocations not yet freed */
static atomic_long sys_fault_maps; /* mappings not yet unmapped */

static void sys_fault_set(int kind, unsigned long nth, bool children)
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
    sys_fault_set(kind, nth, false);
}

void mh__fault_arm_children(int kind, unsigned long nth)
{
    sys_fault_set(kind, nth, true);
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

const char *mh__fault_name(int kind)
{
    return kind < 0 || kind >= MH__FAULT_KINDS ? NULL : sys_calls[kind].name;
}

int mh__fault_code(int kind)
{
    return kind < 0 || kind >= MH__FAULT_KINDS ? MH_EINVAL
                                               : mh__errno_code(sys_calls[kind].err);
}

long mh__fault_live_allocs(void)
{
    return atomic_load_explicit(&sys_fault_live, memory_order_relaxed);
}

long mh__fault_live_maps(void)
{
    return atomic_load_explicit(&sys_fault_maps, memory_order_relaxed);
}

/* Count a call of kind; true (errno set) when this one must fail. */
static bool sys_fault_hit(int kind)
{
    unsigned long call =
        atomic_fetch_add_explicit(&sys_fault_calls[kind], 1, memory_order_relaxed) + 1;
    unsigned long nth = atomic_load_explicit(&sys_fault_nth[kind], memory_order_relaxed);
    bool armer = atomic_load_explicit(&sys_fault_pid[kind], memory_order_relaxed) ==
                 (long)getpid();
    if (nth == 0 || call != nth ||
        armer == atomic_load_explicit(&sys_fault_children[kind], memory_order_relaxed))
        return false;
    atomic_fetch_add_explicit(&sys_fault_injected[kind], 1, memory_order_relaxed);
    errno = sys_calls[kind].err;
    return true;
}

/* In a worker process just forked: its calls count from its fork. */
static void sys_fault_forked(void)
{
    for (int kind = 0; kind < MH__FAULT_KINDS; kind++)
        atomic_store_explicit(&sys_fault_calls[kind], 0, memory_order_relaxed);
}

/* Count a successful allocation as live. */
static void *sys_fault_alloced(void *p)
{
    if (p)
        atomic_fetch_add_explicit(&sys_fault_live, 1, memory_order_relaxed);
    return p;
}
#define SYS_FAILS(kind) sys_fault_hit(MH__FAULT_##kind)
#define SYS_FORKED() sys_fault_forked()
#define SYS_ALLOCED(p) sys_fault_alloced(p)
#define SYS_FREED(p)                                                          \
    do {                                                                      \
        if (p)                                                                \
            atomic_fetch_sub_explicit(&sys_fault_live, 1, memory_order_relaxed); \
    } while (0)
#define SYS_MAPS(delta) atomic_fetch_add_explicit(&sys_fault_maps, (delta), memory_order_relaxed)
#else
#define SYS_FAILS(kind) false
#define SYS_FORKED() ((void)0)
#define SYS_ALLOCED(p) (p)
#define SYS_FREED(p) ((void)(p))
#define SYS_MAPS(delta) ((void)0)
#endif

void *mh__malloc(size_t size)
{
    return SYS_FAILS(ALLOC) ? NULL : SYS_ALLOCED(malloc(size));
}

void *mh__calloc(size_t count, size_t size)
{
    return SYS_FAILS(ALLOC) ? NULL : SYS_ALLOCED(calloc(count, size));
}

void mh__free(void *p)
{
    SYS_FREED(p);
    free(p);
}

void *mh__mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
    void *p = SYS_FAILS(MMAP) ? MAP_FAILED : mmap(addr, length, prot, flags, fd, offset);
    if (p != MAP_FAILED)
        SYS_MAPS(1);
    return p;
}

int mh__munmap(void *addr, size_t length)
{
    if (SYS_FAILS(MUNMAP) || munmap(addr, length))
        return -1;
    SYS_MAPS(-1);
    return 0;
}

pid_t mh__fork(void)
{
    if (SYS_FAILS(FORK))
        return -1;
    pid_t pid = fork();
    if (pid == 0)
        SYS_FORKED();
    return pid;
}

int mh__pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                       void *(*start)(void *), void *arg)
{
    return SYS_FAILS(THREAD) ? EAGAIN : pthread_create(thread, attr, start, arg);
}

/* fd itself, or when it is 0, 1 or 2 (the caller started with them
 * closed) a copy above 2 (close-on-exec as cloexec says), fd closed: a
 * callback that writes to stdout must never write into the library's
 * pipe. -1 on error. */
static int sys_fd_above_stdio(int fd, bool cloexec)
{
    if (fd < 0 || fd > 2)
        return fd;
    int high = fcntl(fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, 3);
    int err = errno;
    close(fd);
    errno = err;
    return high;
}

int mh__pipe2(int fds[2], int flags)
{
    if (SYS_FAILS(PIPE2) || pipe2(fds, flags))
        return -1;
    for (int k = 0; k < 2; k++) {
        fds[k] = sys_fd_above_stdio(fds[k], flags & O_CLOEXEC);
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
    if (SYS_FAILS(PIDFD_OPEN))
        return -1;
    return sys_fd_above_stdio((int)syscall(SYS_pidfd_open, pid, 0), true);
}

int mh__poll(struct pollfd *fds, nfds_t nfds, int timeout_ms)
{
    return SYS_FAILS(POLL) ? -1 : poll(fds, nfds, timeout_ms);
}

/* The one way waitpid fails for a child of ours: someone else reaped it
 * (SIGCHLD ignored, a waitpid(-1) elsewhere). Its fault does just that,
 * reaping the child for real, so that it leaves no zombie. */
pid_t mh__waitpid(pid_t pid, int *wstatus, int options)
{
    if (!SYS_FAILS(WAITPID))
        return waitpid(pid, wstatus, options);
    int lost;
    while (waitpid(pid, &lost, options) < 0 && errno == EINTR)
        ;
    errno = ECHILD;
    return -1;
}

ssize_t mh__read(int fd, void *buf, size_t count)
{
    return SYS_FAILS(READ) ? -1 : read(fd, buf, count);
}

ssize_t mh__write(int fd, const void *buf, size_t count)
{
    return SYS_FAILS(WRITE) ? -1 : write(fd, buf, count);
}

int mh__kill(pid_t pid, int sig)
{
    return SYS_FAILS(KILL) ? -1 : kill(pid, sig);
}

int mh__pidfd_send_signal(int pidfd, int sig)
{
    return SYS_FAILS(PIDFD_SEND_SIGNAL) ? -1
                                        : (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int mh__prctl(int option, unsigned long arg)
{
    return SYS_FAILS(PRCTL) ? -1 : prctl(option, arg, 0UL, 0UL, 0UL);
}

int mh__futex_wait(_Atomic uint32_t *word, uint32_t seen, uint64_t timeout_ns)
{
    if (SYS_FAILS(FUTEX))
        return -1;
    struct timespec ts = {(time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u)};
    /* Not FUTEX_PRIVATE_FLAG: the word may be in memory shared with a
     * forked child. */
    return (int)syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, NULL, 0);
}

int mh__futex_wake(_Atomic uint32_t *word, int count)
{
    return SYS_FAILS(FUTEX) ? -1 : (int)syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}

int mh__setrlimit(int resource, rlim_t soft)
{
    struct rlimit limit;
    if (SYS_FAILS(SETRLIMIT) || getrlimit(resource, &limit))
        return -1;
    /* Only the soft limit: an unprivileged process may not raise its
     * hard one, and keeps the right to raise the soft one up to it. */
    limit.rlim_cur = limit.rlim_max != RLIM_INFINITY && soft > limit.rlim_max
                         ? limit.rlim_max
                         : soft;
    return setrlimit(resource, &limit);
}

int mh__madvise(void *addr, size_t length, int advice)
{
    return SYS_FAILS(MADVISE) ? -1 : madvise(addr, length, advice);
}

uint64_t mh__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int mh__reap(pid_t pid)
{
    int wstatus;
    for (;;) {
        pid_t got = mh__waitpid(pid, &wstatus, 0);
        if (got == pid)
            return wstatus;
        if (got < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

double mh__now(void)
{
    return (double)mh__now_ns() * 1e-9;
}
