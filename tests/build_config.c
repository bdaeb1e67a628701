/*
 * Build-time selection, proven: mh_backends() must list exactly the
 * backends CMake configured (MH_BACKENDS, passed in by tests/CMakeLists.txt
 * as MH_EXPECTED_BACKENDS, comma-separated), no more and no fewer, with
 * seq last. (Opening each one is the conformance suite's job: an mpi pool
 * outside mpiexec starts a runtime that outlives it.)
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Whether name is one of the comma-separated names in list. */
static int build_config_listed(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t item = comma ? (size_t)(comma - p) : strlen(p);
        if (item == len && strncmp(p, name, len) == 0)
            return 1;
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

static int test_backends_match_build(const char *backend)
{
    (void)backend;
    const char *expected = getenv("MH_EXPECTED_BACKENDS");
    CHECK(expected && *expected);
    size_t want = 1;
    for (const char *p = expected; *p; p++)
        want += *p == ',';

    const char *const *names = mh_backends();
    size_t count = 0;
    for (; names[count]; count++) {
        if (!build_config_listed(expected, names[count])) {
            fprintf(stderr, "built but not configured: %s (configured: %s)\n",
                    names[count], expected);
            return 1;
        }
    }
    if (count != want) {
        fprintf(stderr, "mh_backends() has %zu names, the build configured %zu (%s)\n",
                count, want, expected);
        return 1;
    }
    CHECK(count >= 1 && strcmp(names[count - 1], "seq") == 0);
    return 0;
}

static const struct mh_test tests[] = {
    MH_TEST_ONCE(backends_match_build)
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return mh_test_main(argc, argv, tests);
}
