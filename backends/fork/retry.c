/*
 * Retries of items whose child died (docs/backends.md, fork, "Retries").
 * The caller does the blaming, so it keeps the count: per item, the
 * retries charged to it, in its own memory, which every child forked
 * after a charge inherits (mh__run_range takes callback retries out of
 * the same budget). Only the item a dead child was running is charged;
 * the rest of its chunk is not, and simply runs in the fresh child
 * (Dask#5234 charged every item the dead worker held).
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

/* Runs item i has had, the one that just ended included. */
int fork_retry_attempts(const struct fork_map *m, size_t i)
{
    return 1 + (m->charged ? m->charged[i] : 0);
}
