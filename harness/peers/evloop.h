/* evloop's parts (harness/peers/evloop*.c): one run of one kernel. */
#ifndef EVLOOP_H
#define EVLOOP_H

#include <stddef.h>
#include <stdint.h>

/* Seconds a request may wait, past the kernel's own delay, before the run
 * fails with ETIMEDOUT (tcp's clients give up after as long). */
#define EVLOOP_TIMEOUT_S 10

/* One run: n items, in[i] the 64-bit input of item i (sleep, tcp and
 * file all take one), out the kernel's outputs; at most `slots` items
 * (1 <= slots <= n) in flight at once. */
struct evloop_run {
    void *ctx; /* the kernel's setup */
    const uint64_t *in;
    void *out;
    size_t n, slots;
};

/* Each runs r on one thread and sets *seconds to the time from the first
 * request started to the last answered (descriptors, timers and rings
 * are made before and released after, as a pool is opened and closed
 * around a timed map). 0, or the errno of what failed. */
int evloop_sleep(const struct evloop_run *r, double *seconds); /* timerfd + epoll */
int evloop_tcp(const struct evloop_run *r, double *seconds);   /* sockets + epoll */
int evloop_file(const struct evloop_run *r, double *seconds);  /* io_uring */

/* Monotonic seconds. */
double evloop_now(void);

#endif /* EVLOOP_H */
