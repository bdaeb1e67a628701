/*
 * evloop's file kernel: io_uring on the file kernel's own descriptor, the
 * blocks its generate chose, up to W reads in flight from one thread.
 * Each completed block is checksummed as the kernel's fn does
 * (mhk_file_checksum) and its slot reads the next item's block; a short
 * read goes on where it stopped, as fn's pread loop does. Built only with
 * liburing (harness/peers/CMakeLists.txt).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>

#include "evloop.h"
#include "kernels.h"

#define EV_WORDS (MHK_FILE_BLOCK / sizeof(uint64_t))

/* One read in flight. */
struct ev_read {
    size_t item; /* the item whose block it reads */
    size_t got;  /* bytes of that block read so far */
};

struct ev_file {
    struct io_uring ring;
    int fd;               /* the kernel's; not ours to close */
    uint64_t *bufs;       /* slots x MHK_FILE_BLOCK bytes, one block per slot */
    struct ev_read *reads; /* slots */
    size_t inflight;      /* reads queued or submitted, not yet completed */
};

/* Queue slot s's read of what is left of its block; the next wait
 * submits it. The ring has at least one entry per slot and a slot has
 * at most one read queued or in flight, so an entry is always free. */
static int ev_file_queue(struct ev_file *f, const struct evloop_run *r, size_t s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);
    if (!sqe)
        return EBUSY;
    struct ev_read *rd = &f->reads[s];
    char *buf = (char *)(f->bufs + s * EV_WORDS) + rd->got;
    uint64_t offset = r->in[rd->item] * MHK_FILE_BLOCK + rd->got;
    io_uring_prep_read(sqe, f->fd, buf, (unsigned)(MHK_FILE_BLOCK - rd->got), offset);
    io_uring_sqe_set_data64(sqe, s);
    f->inflight++;
    return 0;
}

/* Slot s's read completed with res: 1 when its block is whole (the
 * output written), 0 when the read goes on, else -errno. */
static int ev_file_done(struct ev_file *f, const struct evloop_run *r, size_t s, int res)
{
    struct ev_read *rd = &f->reads[s];
    if (res == -EINTR || res == -EAGAIN)
        return -ev_file_queue(f, r, s);
    if (res < 0)
        return res;
    if (res == 0)
        return -EIO; /* the file is shorter than the kernel wrote it */
    rd->got += (size_t)res;
    if (rd->got < MHK_FILE_BLOCK)
        return -ev_file_queue(f, r, s);
    ((uint64_t *)r->out)[rd->item] = mhk_file_checksum(f->bufs + s * EV_WORDS);
    return 1;
}

/* Every completion the ring holds, handed to its slot, which starts the
 * next item when its block is done. 0 or an errno. */
static int ev_file_reap(struct ev_file *f, const struct evloop_run *r, size_t *next,
                        size_t *finished)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    int rc = 0;
    io_uring_for_each_cqe(&f->ring, head, cqe) {
        seen++;
        size_t s = (size_t)io_uring_cqe_get_data64(cqe);
        if (s >= r->slots)
            continue; /* not one of our reads (liburing's own timeout) */
        f->inflight--;
        int step = rc ? 0 : ev_file_done(f, r, s, cqe->res);
        if (step < 0) {
            rc = -step;
        } else if (step == 1) {
            ++*finished;
            if (*next < r->n) {
                f->reads[s] = (struct ev_read){.item = (*next)++};
                rc = ev_file_queue(f, r, s);
            }
        }
    }
    io_uring_cq_advance(&f->ring, seen);
    return rc;
}

static int ev_file_loop(struct ev_file *f, const struct evloop_run *r, double *seconds)
{
    struct __kernel_timespec limit = {.tv_sec = EVLOOP_TIMEOUT_S};
    size_t next = 0, finished = 0;
    int rc = 0;
    double start = evloop_now();
    for (size_t s = 0; s < r->slots && !rc; s++) {
        f->reads[s] = (struct ev_read){.item = next++};
        rc = ev_file_queue(f, r, s);
    }
    while (!rc && finished < r->n) {
        struct io_uring_cqe *cqe;
        int got = io_uring_submit_and_wait_timeout(&f->ring, &cqe, 1, &limit, NULL);
        if (got == -EINTR)
            continue;
        if (got < 0) {
            rc = got == -ETIME ? ETIMEDOUT : -got;
            break;
        }
        rc = ev_file_reap(f, r, &next, &finished);
    }
    *seconds = evloop_now() - start;
    return rc;
}

int evloop_file(const struct evloop_run *r, double *seconds)
{
    struct ev_file f = {.fd = mhk_file_fd(r->ctx)};
    int rc;
    f.bufs = aligned_alloc(MHK_FILE_BLOCK, r->slots * MHK_FILE_BLOCK);
    f.reads = calloc(r->slots, sizeof *f.reads);
    if (!f.bufs || !f.reads) {
        rc = ENOMEM;
        goto out_free;
    }
    rc = -io_uring_queue_init((unsigned)r->slots, &f.ring, 0);
    if (rc)
        goto out_free;
    rc = ev_file_loop(&f, r, seconds);
    /* After a failure, reads may still be in flight into f.bufs: let them
     * finish (or time out) before the buffers go. */
    while (f.inflight) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec limit = {.tv_sec = EVLOOP_TIMEOUT_S};
        if (io_uring_submit_and_wait_timeout(&f.ring, &cqe, 1, &limit, NULL) < 0)
            break;
        size_t next = r->n, finished = 0;
        ev_file_reap(&f, r, &next, &finished);
    }
    io_uring_queue_exit(&f.ring);
out_free:
    free(f.bufs);
    free(f.reads);
    return rc;
}
