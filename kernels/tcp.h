/*
 * Private to the tcp kernel (tcp.c, the client side and the kernel's
 * lifecycle; tcp_server.c, the server thread): what both share.
 */
#ifndef MHK_TCP_H
#define MHK_TCP_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TCP_MAX_CONNS 2048 /* server side; more than MH_WORKERS_MAX + 1 */
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

/* Listen on 127.0.0.1, a port the system picks (ctx->port). 0 or MH_ESYS. */
int mhk__tcp_listen(struct tcp_ctx *ctx);

/* Start the server thread on ctx->listen_fd. 0 or MH_EAGAIN. */
int mhk__tcp_server_start(struct tcp_ctx *ctx);

/* Stop the server thread, if running, and wait for it; it closes its
 * sockets. */
void mhk__tcp_server_stop(struct tcp_ctx *ctx);

#endif /* MHK_TCP_H */
