/*
 * The runner table's interface (harness/peers.c holds the table): what
 * can fill a row, how its command is built, how its output is read.
 * Included by bench.h; on its own only by what needs the table alone.
 */
#ifndef MHB_RUNNER_H
#define MHB_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

struct mhb_proc;
struct mhb_row;

/* The stream experiment's works a runner also runs (harness/stream.c):
 * the one-item jobs, the IO kernel and the 10^8-item stream; and the map
 * of those 10^8 items (800 MB: one backend shows it). */
enum { MHB_STREAM_JOBS = 1, MHB_STREAM_BIG_MAP = 2 };

/* Which experiments a runner takes part in. */
enum {
    MHB_IN_MATRIX = 1, MHB_IN_SEED = 2, MHB_IN_CLUSTER = 4 /* harness/cluster.c */,
    MHB_IN_STREAM = 8 /* harness/stream.c */,
};

/*
 * What can fill a row: a library backend (run as `manyhands-bench cell`)
 * or a peer program, each one entry of the table in peers.c: how to build
 * its command, how to read its output, how to draw it. The harness names
 * no backend and no peer outside that table.
 */
struct mhb_runner {
    const char *name;  /* the CSV's backend column */
    const char *what;  /* one line, for the summary and the docs */
    bool library;      /* a manyhands backend; false: a peer program */
    bool baseline;     /* seq: runs first, at 1 worker; speedups are against it */
    bool reference;    /* the blog's own program: the seed's "x faster" is against it */
    bool chunk_sweep;  /* runs at each fixed chunk size of the sweep */
    bool launched;     /* a launcher starts W processes: the cell must report W */
    int workers_max;   /* the default worker lists stop here (0: no limit) */
    unsigned experiments; /* MHB_IN_* */
    /* The stream experiment's works beyond the seed's and the empty
     * function (which every library backend runs): MHB_STREAM_* bits. */
    unsigned stream_works;
    /* Which kernels it does (NULL: every one). */
    bool (*does)(const struct mhk_kernel *kernel);
    /* The command: tokens, "$name" ones replaced (peers.c lists them). */
    const char *const *argv;
    /* Extra environment (NULL-terminated "NAME=value"), or NULL. */
    char *const *env;
    const char *tag;      /* its result line starts with this */
    const char *time_key; /* the result line's field with the seconds */
    /* Availability: a program the harness must find ("$peers/tbb"), a
     * probe command that must exit 0 (NULL: none), what to install. */
    const char *program;
    const char *const *probe;
    const char *needs;
    int repeat_max;   /* at most this many runs per cell (0: the run's) */
    double timeout_s; /* its own per-run limit (0: the run's --timeout) */
    const char *color; /* gnuplot colour, the same in every plot */
    int dash;          /* gnuplot dash type: 1 solid, 4 dashed */
};

/* The runners, library backends first (this build's, in mh_backends()
 * order), then the peers; NULL-terminated. */
const struct mhb_runner *const *mhb_runners(void);

/* The runner called name, or NULL. */
const struct mhb_runner *mhb_runner_find(const char *name);

/* What a command line expands "$name" tokens with. */
struct mhb_call {
    const char *self, *peers_dir, *source_dir, *mpiexec;
    const struct mhk_kernel *kernel;
    size_t items;
    int workers;
    size_t chunk;
    uint64_t seed;
    int repeat;
};

/* runner's argv for call into argv[0..max) (NULL-terminated), the
 * numbers formatted into buf. 0, or -1 when it does not fit. */
int mhb_runner_argv(const struct mhb_runner *runner, const struct mhb_call *call, char **argv,
                    int max, char *buf, size_t size);

/* Whether runner can run here; when not, why (what is missing) in why. */
bool mhb_runner_available(const struct mhb_runner *runner, const struct mhb_call *call,
                          char *why, size_t size);

/* Fill row's wall_s, pool_s, chunk, verified and error from what the
 * process p printed and how it ended. A missing line, a verified field
 * other than 1, an error field or a failed exit fail the row. */
void mhb_runner_parse(const struct mhb_runner *runner, const struct mhb_proc *p, int workers,
                      struct mhb_row *row);

#endif /* MHB_RUNNER_H */
