/*
 * Per-worker hooks, the one owner of their rule: init runs once per
 * worker before its first item, fini once after its last; an init that
 * fails is MH_EINIT, after fini has run for the workers already
 * initialised. And the worker a thread runs items for, which callbacks
 * read through mh_worker_index() and mh_worker_state(). When each
 * backend calls these is docs/backends.md, "Per-worker hooks".
 */
#include "internal.h"

/* The worker this thread runs items for: -1 and NULL outside a run.
 * initial-exec, as mh__callback_depth: set around every item loop. */
static MH__TLS_FAST _Thread_local int hooks_index = -1;
static MH__TLS_FAST _Thread_local void *hooks_state;

int mh_worker_index(void)
{
    return hooks_index;
}

void *mh_worker_state(void)
{
    return hooks_state;
}

struct mh__worker mh__worker_enter(int index, void *state)
{
    struct mh__worker previous = {hooks_index, hooks_state};
    hooks_index = index;
    hooks_state = state;
    return previous;
}

void mh__worker_leave(struct mh__worker previous)
{
    hooks_index = previous.index;
    hooks_state = previous.state;
}

int mh__hook_init(const struct mh_config *config, int worker, void **state)
{
    *state = NULL;
    if (!config->init)
        return MH_OK;
    void *made = NULL;
    if (config->init(worker, &made, config->hook_ctx))
        return MH_EINIT;
    *state = made;
    return MH_OK;
}

void mh__hook_fini(const struct mh_config *config, int worker, void *state)
{
    if (config->fini)
        config->fini(worker, state, config->hook_ctx);
}

int mh__hooks_init_all(const struct mh_config *config, void **states, int count)
{
    for (int w = 0; w < count; w++) {
        if (mh__hook_init(config, w, &states[w]) == MH_OK)
            continue;
        mh__hooks_fini_all(config, states, w);
        return MH_EINIT;
    }
    return MH_OK;
}

void mh__hooks_fini_all(const struct mh_config *config, void *const *states, int count)
{
    for (int w = 0; w < count; w++)
        mh__hook_fini(config, w, states[w]);
}
