/*
 * tcp: one request and one response per item over loopback TCP, to a
 * server the kernel starts in setup: a thread that serves many
 * connections at once from one poll loop and answers each request
 * MHK_TCP_DELAY_US (default 1 ms) after it arrived, as a remote service
 * would. The request is the 8-byte input; the response is
 * mix(request ^ key), which the verifier computes without the network.
 *
 * Connections: each worker opens its own connection on its first item
 * and reuses it (a connection serves one request at a time). In a pool
 * opened with the kernel's hooks (mhk_cell_hooks) the connection is the
 * worker's state: init makes an empty one, fini closes it, so it lives
 * as long as the worker (threads: the pool; fork: the child). Without
 * them it is the thread's, in thread-local storage. Either way it is
 * remembered with the process id and the setup's generation, so a forked
 * worker or a later setup never reuses a descriptor that is not its own.
 * Connections made in the process that ran setup are listed in the
 * context and closed by teardown (or fini); a forked worker's by fini or
 * when it exits.
 *
 * Errors: fn returns the errno of what failed (ECONNREFUSED when the
 * server is gone, ECONNRESET when it closed the connection, ETIMEDOUT
 * when no answer came within the delay plus TCP_TIMEOUT_S, EPROTO for a
 * malformed answer) and drops the connection; it never blocks forever.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "internal.h"
#include "tcp.h"

#define TCP_TIMEOUT_S 10   /* a client gives up this long past the delay */

/* Source of generations: unique in a process, never 0 (a thread's
 * thread-local starts at 0). Relaxed: only uniqueness matters. */
static _Atomic uint64_t tcp_generations = 1;

/* A connection, and for which (process, setup): gen 0 is none. */
struct tcp_client {
    uint64_t gen;
    pid_t pid;
    int fd;
};

/* The connection this thread holds, in a pool without the hooks. */
static _Thread_local struct tcp_client tcp_mine;

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
    mhk__tcp_server_stop(ctx);
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
    mhk__tcp_server_stop(ctx);
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
    rc = mhk__tcp_listen(ctx);
    if (rc)
        goto out_teardown;
    rc = mhk__tcp_server_start(ctx);
    if (rc)
        goto out_teardown;
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

/* init: the worker's connection, made on its first item. */
static int tcp_worker_init(int worker, void **state, void *vctx)
{
    (void)worker;
    (void)vctx;
    struct tcp_client *me = calloc(1, sizeof *me);
    if (!me)
        return ENOMEM;
    me->fd = -1;
    *state = me;
    return 0;
}

/* fini: close the worker's connection, unless it is from another process
 * or setup (then its number is not ours to close). */
static void tcp_worker_fini(int worker, void *state, void *vctx)
{
    (void)worker;
    struct tcp_ctx *ctx = vctx;
    struct tcp_client *me = state;
    if (me->gen && me->gen == atomic_load_explicit(&ctx->gen, memory_order_relaxed) &&
        me->pid == getpid()) {
        if (me->pid == ctx->owner)
            tcp_clients_drop(ctx, me->fd);
        else
            close(me->fd);
    }
    free(me);
}

static int tcp_fn(const void *in, void *out, void *vctx)
{
    struct tcp_ctx *ctx = vctx;
    pid_t pid = getpid();
    bool owner = pid == ctx->owner;
    uint64_t gen = atomic_load_explicit(&ctx->gen, memory_order_relaxed);
    struct tcp_client *me = mh_worker_state();
    if (!me)
        me = &tcp_mine;
    if (me->gen != gen || me->pid != pid) {
        int fd = -1, rc = tcp_connect(ctx, &fd);
        if (rc)
            return rc;
        if (owner && (rc = tcp_clients_add(ctx, fd)) != 0) {
            close(fd);
            return rc;
        }
        /* A connection held from an earlier generation in a forked worker
         * is left to its process's exit: it may be the parent's number. */
        me->gen = gen;
        me->pid = pid;
        me->fd = fd;
    }
    int rc = tcp_roundtrip(me->fd, *(const uint64_t *)in, out);
    if (rc) {
        /* The connection is in an unknown state: drop it; the worker's
         * next item connects again. */
        if (owner)
            tcp_clients_drop(ctx, me->fd);
        else
            close(me->fd);
        me->gen = 0;
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
    .worker_init = tcp_worker_init,
    .worker_fini = tcp_worker_fini,
    .verify = tcp_verify,
};
