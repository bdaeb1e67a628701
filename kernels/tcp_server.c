/*
 * The tcp kernel's server (tcp.c tells the protocol): one thread serves
 * every connection from one poll loop and answers each request
 * ctx->delay_ns after it arrived.
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
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "tcp.h"


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
int mhk__tcp_listen(struct tcp_ctx *ctx)
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

/* Start the server thread, which takes no signals: they stay the
 * caller's. 0 or MH_EAGAIN. */
int mhk__tcp_server_start(struct tcp_ctx *ctx)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&ctx->server, NULL, tcp_server_main, ctx);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err)
        return MH_EAGAIN;
    ctx->server_running = true;
    return 0;
}

/* Stop the server thread and wait for it; it closes its sockets. */
void mhk__tcp_server_stop(struct tcp_ctx *ctx)
{
    if (!ctx->server_running)
        return;
    char byte = 0;
    while (write(ctx->wake[1], &byte, 1) < 0 && errno == EINTR)
        ;
    pthread_join(ctx->server, NULL);
    ctx->server_running = false;
}
