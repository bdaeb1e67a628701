/*
 * evloop's epoll loop and its two users: sleep (one timerfd per request
 * in flight) and tcp (one non-blocking socket per request in flight, to
 * the tcp kernel's own server). A slot is one request in flight; when its
 * item is done the slot starts the next item at once, so the loop keeps
 * min(W, items left) requests waiting until the last ones.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "evloop.h"
#include "kernels.h"

#define EV_MSG 8 /* tcp's request and response bytes */

/* One request in flight. */
struct ev_slot {
    int fd;             /* its timerfd or socket; -1 before one is made */
    size_t index;       /* its place in the slots: the epoll data */
    size_t item;        /* the item it serves */
    uint64_t start_ns;  /* sleep: when its timer was armed */
    enum { EV_IDLE, EV_CONNECTING, EV_SENDING, EV_RECEIVING } phase; /* tcp */
    unsigned char buf[EV_MSG]; /* tcp: the request, then the response */
    size_t done;        /* tcp: bytes of buf sent or received */
};

/* What a kernel does in the loop. Each returns 0 or an errno, except
 * ready (called on any event of the slot's descriptor, even one that
 * does not complete anything): 1 when the slot's item is done, 0 when
 * not yet, else -errno. open is optional. */
struct ev_ops {
    int (*open)(const struct evloop_run *r, int ep, struct ev_slot *slot); /* untimed */
    int (*start)(const struct evloop_run *r, int ep, struct ev_slot *slot);
    int (*ready)(const struct evloop_run *r, struct ev_slot *slot);
    uint64_t delay_ns; /* the kernel's own wait per item: the timeout's base */
};

static uint64_t ev_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double evloop_now(void)
{
    return (double)ev_now_ns() * 1e-9;
}

static int ev_watch(int ep, struct ev_slot *slot, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u64 = slot->index};
    return epoll_ctl(ep, EPOLL_CTL_ADD, slot->fd, &ev) == 0 ? 0 : errno;
}

/* The loop: start a request in every slot, then wait for events and hand
 * each to its slot, which starts the next item when its own is done. No
 * event within the delay plus EVLOOP_TIMEOUT_S is ETIMEDOUT. */
static int ev_loop(const struct evloop_run *r, int ep, struct ev_slot *slots,
                   const struct ev_ops *ops, double *seconds)
{
    struct epoll_event *events = calloc(r->slots, sizeof *events);
    if (!events)
        return ENOMEM;
    int timeout_ms = (int)(ops->delay_ns / 1000000u) + EVLOOP_TIMEOUT_S * 1000;
    int rc = 0;
    size_t next = 0, finished = 0;
    double start = evloop_now();
    for (size_t s = 0; s < r->slots && !rc; s++) {
        slots[s].item = next++;
        rc = ops->start(r, ep, &slots[s]);
    }
    while (!rc && finished < r->n) {
        int got = epoll_wait(ep, events, (int)r->slots, timeout_ms);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            rc = got == 0 ? ETIMEDOUT : errno;
            break;
        }
        for (int e = 0; e < got && !rc; e++) {
            struct ev_slot *slot = &slots[events[e].data.u64];
            int step = ops->ready(r, slot);
            if (step < 0) {
                rc = -step;
            } else if (step == 1) {
                finished++;
                if (next < r->n) {
                    slot->item = next++;
                    rc = ops->start(r, ep, slot);
                }
            }
        }
    }
    *seconds = evloop_now() - start;
    free(events);
    return rc;
}

/* Make the slots and the epoll set, run the loop, release them all. */
static int ev_run(const struct evloop_run *r, const struct ev_ops *ops, double *seconds)
{
    int rc = 0;
    struct ev_slot *slots = calloc(r->slots, sizeof *slots);
    if (!slots)
        return ENOMEM;
    for (size_t s = 0; s < r->slots; s++)
        slots[s] = (struct ev_slot){.fd = -1, .index = s};
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        rc = errno;
        goto out_free;
    }
    for (size_t s = 0; s < r->slots && ops->open && !rc; s++)
        rc = ops->open(r, ep, &slots[s]);
    if (!rc)
        rc = ev_loop(r, ep, slots, ops, seconds);
    for (size_t s = 0; s < r->slots; s++)
        if (slots[s].fd >= 0)
            close(slots[s].fd);
    close(ep);
out_free:
    free(slots);
    return rc;
}

/* ------------------------------------------------------------------ sleep */

static int ev_sleep_open(const struct evloop_run *r, int ep, struct ev_slot *slot)
{
    (void)r;
    slot->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    return slot->fd < 0 ? errno : ev_watch(ep, slot, EPOLLIN);
}

static int ev_sleep_start(const struct evloop_run *r, int ep, struct ev_slot *slot)
{
    (void)ep;
    /* A zero it_value disarms a timerfd: a zero delay waits 1 ns. */
    uint64_t delay = mhk_sleep_delay_ns(r->ctx);
    delay += delay == 0;
    struct itimerspec when = {
        .it_value = {.tv_sec = (time_t)(delay / 1000000000u),
                     .tv_nsec = (long)(delay % 1000000000u)},
    };
    slot->start_ns = ev_now_ns();
    return timerfd_settime(slot->fd, 0, &when, NULL) == 0 ? 0 : errno;
}

static int ev_sleep_ready(const struct evloop_run *r, struct ev_slot *slot)
{
    uint64_t expirations;
    ssize_t got = read(slot->fd, &expirations, sizeof expirations);
    if (got < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    if (got != sizeof expirations)
        return -EIO;
    struct mhk_sleep_out *out = (struct mhk_sleep_out *)r->out + slot->item;
    out->echo = r->in[slot->item];
    out->waited_ns = ev_now_ns() - slot->start_ns;
    return 1;
}

int evloop_sleep(const struct evloop_run *r, double *seconds)
{
    struct ev_ops ops = {
        .open = ev_sleep_open, .start = ev_sleep_start, .ready = ev_sleep_ready,
        .delay_ns = mhk_sleep_delay_ns(r->ctx),
    };
    return ev_run(r, &ops, seconds);
}

/* -------------------------------------------------------------------- tcp */

/* Send what is left of the request; all sent: wait for the response. */
static int ev_tcp_send(struct ev_slot *slot)
{
    while (slot->done < EV_MSG) {
        ssize_t sent = send(slot->fd, slot->buf + slot->done, EV_MSG - slot->done,
                            MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : errno;
        slot->done += (size_t)sent;
    }
    slot->done = 0;
    slot->phase = EV_RECEIVING;
    return 0;
}

/* A non-blocking connection to the kernel's server, watched
 * edge-triggered for both directions for its whole life. It is added to
 * the epoll set after connect() so that the unconnected socket's HUP is
 * never seen as the connection completing. */
static int ev_tcp_connect(const struct evloop_run *r, int ep, struct ev_slot *slot)
{
    uint16_t port;
    uint64_t delay_ns;
    mhk_tcp_server(r->ctx, &port, &delay_ns);
    slot->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (slot->fd < 0)
        return errno;
    int one = 1;
    setsockopt(slot->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {
        .sin_family = AF_INET,
        .sin_port = htons(port),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
    };
    int rc = connect(slot->fd, (struct sockaddr *)&addr, sizeof addr);
    if (rc != 0 && errno != EINPROGRESS)
        return errno;
    slot->phase = rc == 0 ? EV_SENDING : EV_CONNECTING;
    return ev_watch(ep, slot, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

/* The slot's request goes out on its connection (made on its first
 * item, inside the timed loop, as the tcp kernel's fn connects on a
 * thread's first item); the response comes to ready. */
static int ev_tcp_start(const struct evloop_run *r, int ep, struct ev_slot *slot)
{
    memcpy(slot->buf, &r->in[slot->item], EV_MSG);
    slot->done = 0;
    if (slot->fd < 0) {
        int rc = ev_tcp_connect(r, ep, slot);
        if (rc || slot->phase == EV_CONNECTING)
            return rc;
    }
    slot->phase = EV_SENDING;
    return ev_tcp_send(slot);
}

static int ev_tcp_ready(const struct evloop_run *r, struct ev_slot *slot)
{
    if (slot->phase == EV_IDLE)
        return 0; /* no request on it: the server's close at the end */
    if (slot->phase == EV_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(slot->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            return -errno;
        if (err)
            return -err;
        slot->phase = EV_SENDING;
    }
    if (slot->phase == EV_SENDING) {
        int rc = ev_tcp_send(slot);
        if (rc || slot->phase == EV_SENDING)
            return -rc;
    }
    while (slot->done < EV_MSG) {
        ssize_t got = recv(slot->fd, slot->buf + slot->done, EV_MSG - slot->done, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        if (got == 0)
            return -ECONNRESET; /* the server closed the connection */
        slot->done += (size_t)got;
    }
    memcpy((uint64_t *)r->out + slot->item, slot->buf, EV_MSG);
    slot->phase = EV_IDLE;
    return 1;
}

int evloop_tcp(const struct evloop_run *r, double *seconds)
{
    uint16_t port;
    struct ev_ops ops = {.start = ev_tcp_start, .ready = ev_tcp_ready};
    mhk_tcp_server(r->ctx, &port, &ops.delay_ns);
    return ev_run(r, &ops, seconds);
}
