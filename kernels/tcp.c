/*
 * tcp: one request and one response per item over loopback TCP, to a
 * server the kernel starts in setup: a thread that serves many
 * connections at once from one poll loop and answers each request
 * MHK_TCP_DELAY_US (default 1 ms) after it arrived, as a remote service
 * would. The request is the 8-byte input; the response is
 * mix(request ^ key), which the verifier computes without the network.
 *
 * Connections: each thread of each process opens its own connection on
 * its first item and reuses it (a connection serves one request at a
 * time). The one a thread holds is remembered in thread-local storage
 * together with the process id and the setup's generation, so a forked
 * worker or a later setup never reuses a descriptor that is not its own.
 * Connections made in the process that ran setup are listed in the
 * context and closed by teardown; a forked worker's close when it exits.
 *
 * Errors: fn returns the errno of what failed (ECONNREFUSED when the
 * server is gone, ECONNRESET when it closed the connection, ETIMEDOUT
 * when no answer came within the delay plus TCP_TIMEOUT_S, EPROTO for a
 * malformed answer) and drops the connection; it never blocks forever.
 */
#define _GNU_SOURCE /* ppoll: a nanosecond timeout, for sub-millisecond delays */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "internal.h"

#define TCP_MAX_CONNS 2048 /* server side; more than MH_WORKERS_MAX + 1 */
#define TCP_TIMEOUT_S 10   /* a client gives up this long past the delay */
#define TCP_MSG 8          /* request and response bytes */

/* One accepted connection, in the server thread only. */
struct tcp_conn {
    int fd;
    enum { TCP_READING, TCP_DELAYING, TCP_SENDING } state;
    unsigned char buf[TCP_MSG]; /* request, then response */
    size_t done;                /* bytes of buf read or sent */
    uint64_t due_ns;            /* when the response may go */
};

struct tcp_ctx {
    /* This setup's generation, from tcp_generations; mhk_tcp_stop_server
     * replaces it. Read by fn in every thread; written only while no map
     * runs (the map's start and end order it), so relaxed. */
    _Atomic uint64_t gen;
    pid_t owner;         /* the process that ran setup */
    uint16_t port;       /* the server's, host order */
    uint64_t key;        /* response = mix(request ^ key) */
    uint64_t delay_ns;   /* service delay */

    int listen_fd;       /* owned by the server thread once started */
    int wake[2];         /* teardown writes wake[1]; the server polls wake[0] */
    pthread_t server;
    bool server_running; /* joined yet? (setup/teardown thread only) */
    struct tcp_conn *conns;  /* TCP_MAX_CONNS, server thread only */
    /* Connections accepted: written by the server thread, read by
     * mhk_tcp_accepted; relaxed, a statistic. */
    _Atomic uint64_t accepted;
    struct pollfd *pfds;     /* TCP_MAX_CONNS + 2, server thread only */

    pthread_mutex_t lock; /* guards clients, nclients, cap */
    int *clients;         /* connections the owner process opened */
    size_t nclients, cap;
};

/* Source of generations: unique in a process, never 0 (a thread's
 * thread-local starts at 0). Relaxed: only uniqueness matters. */
static _Atomic uint64_t tcp_generations = 1;

/* The connection this thread holds, and for which (process, setup). */
static _Thread_local struct {
    uint64_t gen;
    pid_t pid;
    int fd;
} tcp_mine;

/* ------------------------------------------------------------ the server */

static void tcp_conn_close(struct tcp_conn *conn)
{
    close(conn->fd);
    conn->fd = -1;
}

/* Accept every pending connection; refuse (close) past TCP_MAX_CONNS. */
static void tcp_server_accept(struct tcp_ctx *ctx, size_t *nconns)
{
    for (;;) {
        int fd = accept(ctx->listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN: none left; anything else: try next poll */
        }
        atomic_fetch_add_explicit(&ctx->accepted, 1, memory_order_relaxed);
        if (*nconns == TCP_MAX_CONNS) {
            close(fd);
            continue;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fcntl(fd, F_SETFL, O_NONBLOCK);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ctx->conns[(*nconns)++] = (struct tcp_conn){.fd = fd, .state = TCP_READING};
    }
}

/* Read what the client sent; a whole request starts its delay. */
static void tcp_server_read(struct tcp_ctx *ctx, struct tcp_conn *conn)
{
    ssize_t got = recv(conn->fd, conn->buf + conn->done, TCP_MSG - conn->done, 0);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (got <= 0) { /* the client closed, or the connection broke */
        tcp_conn_close(conn);
        return;
    }
    conn->done += (size_t)got;
    if (conn->done < TCP_MSG)
        return;
    uint64_t request;
    memcpy(&request, conn->buf, TCP_MSG);
    uint64_t response = mhk__mix64(request ^ ctx->key);
    memcpy(conn->buf, &response, TCP_MSG);
    conn->done = 0;
    conn->due_ns = mhk__now_ns() + ctx->delay_ns;
    conn->state = TCP_DELAYING;
}

static void tcp_server_send(struct tcp_conn *conn)
{
    ssize_t sent = send(conn->fd, conn->buf + conn->done, TCP_MSG - conn->done,
                        MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (sent < 0) {
        tcp_conn_close(conn);
        return;
    }
    conn->done += (size_t)sent;
    if (conn->done == TCP_MSG) {
        conn->done = 0;
        conn->state = TCP_READING;
    }
}

/*
 * The poll loop: pfds[0] is the wake pipe, pfds[1] the listening socket,
 * then one per connection. Responses whose delay has passed are sent
 * before polling; the poll sleeps until the earliest pending one is due.
 */
static void *tcp_server_main(void *arg)
{
    struct tcp_ctx *ctx = arg;
    size_t nconns = 0;
    for (;;) {
        uint64_t now = mhk__now_ns(), next_due = UINT64_MAX;
        size_t live = 0;
        for (size_t c = 0; c < nconns; c++) {
            struct tcp_conn *conn = &ctx->conns[c];
            if (conn->state == TCP_DELAYING && conn->due_ns <= now) {
                conn->state = TCP_SENDING;
                tcp_server_send(conn);
            }
            if (conn->fd < 0)
                continue; /* closed: compact it away */
            if (conn->state == TCP_DELAYING && conn->due_ns < next_due)
                next_due = conn->due_ns;
            ctx->conns[live++] = *conn;
        }
        nconns = live;

        ctx->pfds[0] = (struct pollfd){.fd = ctx->wake[0], .events = POLLIN};
        ctx->pfds[1] = (struct pollfd){.fd = ctx->listen_fd, .events = POLLIN};
        for (size_t c = 0; c < nconns; c++) {
            struct tcp_conn *conn = &ctx->conns[c];
            short events = conn->state == TCP_READING   ? POLLIN
                           : conn->state == TCP_SENDING ? POLLOUT
                                                        : 0;
            ctx->pfds[c + 2] = (struct pollfd){.fd = conn->fd, .events = events};
        }
        struct timespec wait, *timeout = NULL;
        if (next_due != UINT64_MAX) {
            uint64_t left = next_due > now ? next_due - now : 0;
            wait.tv_sec = (time_t)(left / 1000000000u);
            wait.tv_nsec = (long)(left % 1000000000u);
            timeout = &wait;
        }
        int ready = ppoll(ctx->pfds, nconns + 2, timeout, NULL);
        if (ready < 0)
            continue; /* EINTR (signals are blocked here, but be safe) */
        if (ctx->pfds[0].revents)
            break;
        for (size_t c = 0; c < nconns; c++) {
            short revents = ctx->pfds[c + 2].revents;
            struct tcp_conn *conn = &ctx->conns[c];
            if (!revents)
                continue;
            if (conn->state == TCP_READING)
                tcp_server_read(ctx, conn); /* reads 0 on hang-up: closes */
            else if (conn->state == TCP_SENDING)
                tcp_server_send(conn);
        }
        if (ctx->pfds[1].revents & POLLIN)
            tcp_server_accept(ctx, &nconns);
    }
    for (size_t c = 0; c < nconns; c++)
        if (ctx->conns[c].fd >= 0)
            close(ctx->conns[c].fd);
    close(ctx->listen_fd);
    ctx->listen_fd = -1;
    return NULL;
}

/* Listen on 127.0.0.1, a port the system picks. 0 or MH_ESYS. */
static int tcp_listen(struct tcp_ctx *ctx)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return MH_ESYS;
    struct sockaddr_in addr = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
    };
    socklen_t len = sizeof addr;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        close(fd);
        return MH_ESYS;
    }
    ctx->listen_fd = fd;
    ctx->port = ntohs(addr.sin_port);
    return 0;
}

/* Stop the server thread and wait for it; it closes its sockets. */
static void tcp_server_stop(struct tcp_ctx *ctx)
{
    if (!ctx->server_running)
        return;
    char byte = 0;
    while (write(ctx->wake[1], &byte, 1) < 0 && errno == EINTR)
        ;
    pthread_join(ctx->server, NULL);
    ctx->server_running = false;
}

/* Close the connections this (owner) process opened; threads holding one
 * see a new generation and reconnect, never reuse the closed number. */
static void tcp_clients_close(struct tcp_ctx *ctx)
{
    atomic_store_explicit(&ctx->gen, atomic_fetch_add_explicit(&tcp_generations, 1, memory_order_relaxed), memory_order_relaxed);
    pthread_mutex_lock(&ctx->lock);
    for (size_t i = 0; i < ctx->nclients; i++)
        close(ctx->clients[i]);
    ctx->nclients = 0;
    pthread_mutex_unlock(&ctx->lock);
}

static void tcp_teardown(void *vctx)
{
    struct tcp_ctx *ctx = vctx;
    if (!ctx)
        return;
    tcp_clients_close(ctx);
    tcp_server_stop(ctx);
    if (ctx->listen_fd >= 0)
        close(ctx->listen_fd); /* the server never started */
    close(ctx->wake[0]);
    close(ctx->wake[1]);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx->clients);
    free(ctx->conns);
    free(ctx->pfds);
    free(ctx);
}

int mhk_tcp_stop_server(void *vctx)
{
    struct tcp_ctx *ctx = vctx;
    if (!ctx || ctx->owner != getpid())
        return MH_EINVAL;
    tcp_clients_close(ctx);
    tcp_server_stop(ctx);
    return 0;
}

uint64_t mhk_tcp_accepted(void *vctx)
{
    struct tcp_ctx *ctx = vctx;
    return ctx ? atomic_load_explicit(&ctx->accepted, memory_order_relaxed) : 0;
}

void mhk_tcp_server(void *vctx, uint16_t *port, uint64_t *delay_ns)
{
    const struct tcp_ctx *ctx = vctx;
    *port = ctx->port;
    *delay_ns = ctx->delay_ns;
}

static int tcp_setup(void **ctxp, size_t n, uint64_t seed)
{
    (void)n;
    uint64_t delay_us;
    int rc = mhk__env_u64("MHK_TCP_DELAY_US", 1000, 0, 60000000, &delay_us);
    if (rc)
        return rc;
    struct tcp_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return MH_ENOMEM;
    ctx->listen_fd = ctx->wake[0] = ctx->wake[1] = -1;
    ctx->owner = getpid();
    ctx->key = mhk__mix64(seed ^ 0x7463702d6b6579u);
    ctx->delay_ns = delay_us * 1000;
    atomic_init(&ctx->accepted, 0);
    atomic_init(&ctx->gen, atomic_fetch_add_explicit(&tcp_generations, 1, memory_order_relaxed));
    pthread_mutex_init(&ctx->lock, NULL);
    ctx->conns = calloc(TCP_MAX_CONNS, sizeof *ctx->conns);
    ctx->pfds = calloc(TCP_MAX_CONNS + 2, sizeof *ctx->pfds);
    if (!ctx->conns || !ctx->pfds) {
        rc = MH_ENOMEM;
        goto out_teardown;
    }
    if (pipe(ctx->wake) != 0) {
        ctx->wake[0] = ctx->wake[1] = -1;
        rc = MH_ESYS;
        goto out_teardown;
    }
    fcntl(ctx->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(ctx->wake[1], F_SETFD, FD_CLOEXEC);
    rc = tcp_listen(ctx);
    if (rc)
        goto out_teardown;
    /* The server thread takes no signals: they stay the caller's. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&ctx->server, NULL, tcp_server_main, ctx);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        rc = MH_EAGAIN;
        goto out_teardown;
    }
    ctx->server_running = true;
    *ctxp = ctx;
    return 0;

out_teardown:
    tcp_teardown(ctx);
    return rc;
}

/* --------------------------------------------------------------- clients */

/* A new connection to ctx's server: 0 and *fdp, or an errno. */
static int tcp_connect(const struct tcp_ctx *ctx, int *fdp)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int one = 1;
    uint64_t limit_us = ctx->delay_ns / 1000 + TCP_TIMEOUT_S * 1000000u;
    struct timeval limit = {
        .tv_sec = (time_t)(limit_us / 1000000u),
        .tv_usec = (suseconds_t)(limit_us % 1000000u),
    };
    struct sockaddr_in addr = {
        .sin_family = AF_INET,
        .sin_port = htons(ctx->port),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
    };
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    int rc;
    while ((rc = connect(fd, (struct sockaddr *)&addr, sizeof addr)) != 0 &&
           errno == EINTR)
        ;
    if (rc != 0) {
        rc = errno == EINPROGRESS ? ETIMEDOUT : errno;
        close(fd);
        return rc;
    }
    *fdp = fd;
    return 0;
}

/* Send one request on fd and read its response: 0 or an errno. */
static int tcp_roundtrip(int fd, uint64_t request, uint64_t *response)
{
    unsigned char buf[TCP_MSG];
    memcpy(buf, &request, TCP_MSG);
    size_t done = 0;
    while (done < TCP_MSG) {
        ssize_t sent = send(fd, buf + done, TCP_MSG - done, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno;
        done += (size_t)sent;
    }
    done = 0;
    while (done < TCP_MSG) {
        ssize_t got = recv(fd, buf + done, TCP_MSG - done, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno;
        if (got == 0)
            return ECONNRESET; /* the server closed the connection */
        done += (size_t)got;
    }
    memcpy(response, buf, TCP_MSG);
    return 0;
}

/* Remember fd for teardown (owner process only). 0 or ENOMEM. */
static int tcp_clients_add(struct tcp_ctx *ctx, int fd)
{
    int rc = 0;
    pthread_mutex_lock(&ctx->lock);
    if (ctx->nclients == ctx->cap) {
        size_t cap = ctx->cap ? 2 * ctx->cap : 16;
        int *grown = realloc(ctx->clients, cap * sizeof *grown);
        if (grown) {
            ctx->clients = grown;
            ctx->cap = cap;
        } else {
            rc = ENOMEM;
        }
    }
    if (!rc)
        ctx->clients[ctx->nclients++] = fd;
    pthread_mutex_unlock(&ctx->lock);
    return rc;
}

/* Forget and close fd (owner process only). */
static void tcp_clients_drop(struct tcp_ctx *ctx, int fd)
{
    pthread_mutex_lock(&ctx->lock);
    for (size_t i = 0; i < ctx->nclients; i++) {
        if (ctx->clients[i] == fd) {
            ctx->clients[i] = ctx->clients[--ctx->nclients];
            close(fd);
            break;
        }
    }
    pthread_mutex_unlock(&ctx->lock);
}

static int tcp_fn(const void *in, void *out, void *vctx)
{
    struct tcp_ctx *ctx = vctx;
    pid_t pid = getpid();
    bool owner = pid == ctx->owner;
    uint64_t gen = atomic_load_explicit(&ctx->gen, memory_order_relaxed);
    if (tcp_mine.gen != gen || tcp_mine.pid != pid) {
        int fd = -1, rc = tcp_connect(ctx, &fd);
        if (rc)
            return rc;
        if (owner && (rc = tcp_clients_add(ctx, fd)) != 0) {
            close(fd);
            return rc;
        }
        /* A connection held from an earlier generation in a forked worker
         * is left to its process's exit: it may be the parent's number. */
        tcp_mine.gen = gen;
        tcp_mine.pid = pid;
        tcp_mine.fd = fd;
    }
    int rc = tcp_roundtrip(tcp_mine.fd, *(const uint64_t *)in, out);
    if (rc) {
        /* The connection is in an unknown state: drop it; the next item
         * on this thread connects again. */
        if (owner)
            tcp_clients_drop(ctx, tcp_mine.fd);
        else
            close(tcp_mine.fd);
        tcp_mine.gen = 0;
    }
    return rc;
}

static void tcp_generate(void *in, size_t n, uint64_t seed, void *ctx)
{
    (void)ctx;
    uint64_t *items = in;
    for (size_t i = 0; i < n; i++)
        items[i] = mhk__mix64(seed ^ (i * 0x2545f4914f6cdd1du));
}

static size_t tcp_verify(const void *in, const void *out, size_t n, void *vctx)
{
    const struct tcp_ctx *ctx = vctx;
    const uint64_t *items = in, *responses = out;
    for (size_t i = 0; i < n; i++)
        if (responses[i] != mhk__mix64(items[i] ^ ctx->key))
            return i + 1;
    return 0;
}

const struct mhk_kernel mhk__tcp = {
    .name = "tcp",
    .description = "IO-bound: one request/response per item to a loopback TCP "
                   "server with a 1 ms service delay",
    .bound = MHK_IO,
    .in_size = sizeof(uint64_t),
    .out_size = sizeof(uint64_t),
    .default_items = 512,
    .quick_items = 64,
    .setup = tcp_setup,
    .teardown = tcp_teardown,
    .generate = tcp_generate,
    .fn = tcp_fn,
    .verify = tcp_verify,
};
