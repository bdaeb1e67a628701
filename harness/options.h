/*
 * manyhands-bench command line: what to run, parsed by a pure function
 * (no exit, no printing, no globals, no allocation) so that it can be
 * tested and fuzzed on its own.
 */
#ifndef MHB_OPTIONS_H
#define MHB_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MHB_LIST_MAX 32  /* names or numbers in one list option */
#define MHB_NAME_MAX 64  /* bytes in a backend or kernel name, NUL included */
#define MHB_PATH_MAX 1024
#define MHB_WORKERS_LIMIT 1024 /* MH_WORKERS_MAX */

enum mhb_command {
    MHB_MATRIX, /* the comparison matrix (default) */
    MHB_SEED,   /* the blog's experiment beside Python and raw OpenMP */
    MHB_CELL,   /* internal: one measured map in this process */
    MHB_CLUSTER, /* mpi across simulated hosts (harness/cluster.c) */
    MHB_STREAM, /* mh_stream against mh_map (harness/stream.c) */
    MHB_HELP,   /* --help */
};

struct mhb_options {
    enum mhb_command command;
    /* Lists; a count of 0 means "the default". */
    char backends[MHB_LIST_MAX][MHB_NAME_MAX];
    int n_backends;
    char kernels[MHB_LIST_MAX][MHB_NAME_MAX];
    int n_kernels;
    int workers[MHB_LIST_MAX]; /* each in [1, MHB_WORKERS_LIMIT] */
    int n_workers;
    size_t chunks[MHB_LIST_MAX]; /* 0 = adaptive */
    int n_chunks;
    size_t items;     /* 0: the kernel's default (or quick) item count */
    double scale;     /* multiplies the default item counts; > 0 */
    int repeat;       /* runs per cell; 0: default (3, or 1 with --quick) */
    bool quick;
    bool no_plot;     /* skip gnuplot */
    bool no_peers;    /* run the library's backends only, no peer program */
    uint64_t seed;    /* input generator seed */
    double timeout_s; /* per cell process; killed past it */
    char out[MHB_PATH_MAX];  /* results directory */
    char label[MHB_NAME_MAX]; /* "" = host name */
    int cell_repeat;  /* cell: which repeat this is (for the record only) */
    char error[256];  /* set when parsing fails */
};

/*
 * Parse argv[1..argc) into *o (which it fills completely, defaults
 * first). Returns NULL on success, else a message (o->error) saying what
 * was wrong, such as "--workers: '0' is not in 1..1024".
 */
const char *mhb_options_parse(struct mhb_options *o, int argc, char *const argv[]);

/*
 * Check names against what this build has: backends and kernels are
 * NULL-terminated lists. For `cell`, exactly one backend, kernel and
 * worker count, at most one chunk (none: adaptive), and an item count
 * must be given. Returns NULL or a message (o->error).
 */
const char *mhb_options_check(struct mhb_options *o, const char *const *backends,
                              const char *const *kernels);

/* The --help text. */
extern const char mhb_usage[];

#endif /* MHB_OPTIONS_H */
