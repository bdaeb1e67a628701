/*
 * Retries of items whose child died (docs/backends.md, fork, "Retries").
 * The caller does the blaming, so it keeps the count: per item, the
 * retries charged to it, in its own memory, which every child forked
 * after a charge inherits (mh__run_range takes callback retries out of
 * the same budget). Only the item a dead child was running is charged;
 * the rest of its chunk is not, and simply runs in the fresh child
 * (Dask#5234 charged every item the dead worker held). A stream keeps
 * its counters per ring item instead (fork_retry_charge_seq); its
 * children do not read them (run->charged stays NULL: callback retries
 * index by item, a stream's by sequence number).
 */
#include "fork.h"

/* The counters, when the map may retry. 0 or MH_ENOMEM. */
int fork_retry_open(struct fork_map *m)
{
    if (m->run->retries <= 0)
        return MH_OK;
    /* Large counts come as untouched zero pages: only charged ones cost. */
    m->charged = mh__calloc(m->task->n, sizeof *m->charged);
    if (!m->charged)
        return MH_ENOMEM;
    m->run->charged = m->charged;
    return MH_OK;
}

void fork_retry_close(struct fork_map *m)
{
    if (!m->charged)
        return;
    m->run->charged = NULL;
    mh__free(m->charged);
    m->charged = NULL;
}

/* Item i's child died in it: charge it a retry if it has one left.
 * Whether it runs again (then it stays unsettled for the next child). */
bool fork_retry_charge(struct fork_map *m, size_t i)
{
    if (!m->charged || m->charged[i] >= m->run->retries)
        return false;
    m->charged[i]++;
    return true;
}

/* A stream's item seq, at ring item `at`, whose child died in it: as
 * fork_retry_charge, the counter m->charged[at] restarting for each new
 * item to use the ring item (keys[at]: the seq it counts for). */
bool fork_retry_charge_seq(struct fork_map *m, size_t *keys, size_t at, size_t seq)
{
    if (!m->charged)
        return false;
    if (keys[at] != seq) {
        keys[at] = seq;
        m->charged[at] = 0;
    }
    return fork_retry_charge(m, at);
}

/* Runs item i has had, the one that just ended included. */
int fork_retry_attempts(const struct fork_map *m, size_t i)
{
    return 1 + (m->charged ? m->charged[i] : 0);
}
