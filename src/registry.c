/* The backends this build has, best first (curl's available_backends[]). */
#include <pthread.h>
#include <string.h>

#include "internal.h"

/* Each built backend's table, defined in its file as mh__backend_<name>. */
#define REGISTRY_DECLARE_(name) extern const struct mh_backend_ops mh__backend_##name;
MH__BACKENDS(REGISTRY_DECLARE_)
#undef REGISTRY_DECLARE_

const struct mh_backend_ops *const mh__registry[] = {
#define REGISTRY_ENTRY_(name) &mh__backend_##name,
    MH__BACKENDS(REGISTRY_ENTRY_)
#undef REGISTRY_ENTRY_
    &mh__backend_seq,
    NULL,
};

#define REGISTRY_LEN (sizeof mh__registry / sizeof mh__registry[0])

/* mh__registry as names, filled once. */
static const char *registry_names[REGISTRY_LEN];
static pthread_once_t registry_names_once = PTHREAD_ONCE_INIT;

static void registry_names_fill(void)
{
    for (size_t i = 0; i < REGISTRY_LEN; i++)
        registry_names[i] = mh__registry[i] ? mh__registry[i]->name : NULL;
}

const char *const *mh_backends(void)
{
    pthread_once(&registry_names_once, registry_names_fill);
    return registry_names;
}

const struct mh_backend_ops *mh__backend_find(const char *name)
{
    for (size_t i = 0; mh__registry[i]; i++)
        if (strcmp(mh__registry[i]->name, name) == 0)
            return mh__registry[i];
    return NULL;
}
