/*
 * manyhands-bench cluster: the runners of the cluster experiment (the
 * runner table: seq, threads, and mpi across 1, 2 and 4 simulated hosts
 * of scripts/cluster, one rank per host, TCP) on the seed workload and
 * the CPU-bound kernel with the most bytes per item; with the messages
 * and bytes every map sent.
 *
 * Each run is a `cell` in its own process, as in the matrix: for mpi,
 * `scripts/cluster H 1 <self> cell ...`. The mpi runs go with Open MPI's
 * monitoring PML on (pml_monitoring_enable=1), which counts, per pair of
 * ranks, the point-to-point messages and bytes sent and writes them at
 * MPI_Finalize to one file per rank: summed, they are what the map sent
 * (the pool's open adds a few small messages of MPI_Comm_dup, counted
 * too). Rows go to <date>-cluster.csv, the mpi rows' network figures to
 * <date>-cluster-net.csv (both in docs/csv.md), a summary to stdout.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "kernels.h"
#include "manyhands.h"

#ifndef MHB_MPIEXEC
#define MHB_MPIEXEC "mpirun"
#endif

/* The host counts of the experiment, and the one-host worker counts of
 * threads beside them. */
static const int cluster_hosts[] = {1, 2, 4};
#define CLUSTER_NHOSTS (sizeof cluster_hosts / sizeof cluster_hosts[0])

/* What one mpi run sent, from the monitoring files. */
struct cluster_net {
    unsigned long long messages, bytes;
};

/* Sum the point-to-point lines ("E <from> <to> <B> bytes <M> msgs sent")
 * of the ranks' monitoring files dir/prof.<rank>.prof, then remove them. */
static int cluster_read_net(const char *dir, int ranks, struct cluster_net *net)
{
    memset(net, 0, sizeof *net);
    int rc = 0;
    for (int r = 0; r < ranks; r++) {
        char path[MHB_PATH_MAX + 32], line[1024];
        snprintf(path, sizeof path, "%s/prof.%d.prof", dir, r);
        FILE *f = fopen(path, "r");
        if (!f) {
            rc = -1;
            continue;
        }
        while (fgets(line, sizeof line, f)) {
            int from, to;
            unsigned long long b, m;
            if (sscanf(line, "E %d %d %llu bytes %llu msgs sent", &from, &to, &b, &m) == 4) {
                net->bytes += b;
                net->messages += m;
            }
        }
        fclose(f);
        unlink(path);
    }
    rmdir(dir);
    return rc;
}

/* A row of the cluster experiment, before its run. */
static void cluster_row_init(struct mhb_row *row, const struct mhk_kernel *k, size_t items,
                             const char *backend, int workers, int repeat)
{
    memset(row, 0, sizeof *row);
    row->experiment = "cluster";
    snprintf(row->backend, sizeof row->backend, "%s", backend);
    snprintf(row->kernel, sizeof row->kernel, "%s", k->name);
    row->bound = k->bound == MHK_IO ? "io" : "cpu";
    row->items = items;
    row->workers = workers;
    row->repeat = repeat;
    row->wall_s = row->pool_s = row->speedup = row->efficiency = row->items_per_s = NAN;
    row->verified = MHB_WRONG;
}

/* Fill row from what the cell process p did and printed: its result line
 * read as the runner table reads it (harness/peers.c). */
static void cluster_parse(const struct mhb_proc *p, const struct mhk_kernel *k, int hosts,
                          struct mhb_row *row)
{
    row->user_s = p->user_s;
    row->sys_s = p->sys_s;
    row->peak_rss_kib = p->maxrss_kib;
    mhb_runner_parse(mhb_runner_find(row->backend), p, row->workers, row);
    if (!row->error[0])
        return;
    if (WIFEXITED(p->status) && WEXITSTATUS(p->status) == 77)
        snprintf(row->error, sizeof row->error, "skipped (not root?)");
    size_t len = strlen(p->out);
    fprintf(stderr, "manyhands-bench cluster: %s %s hosts=%d: %s; its output ends:\n%s\n",
            k->name, row->backend, hosts, row->error, p->out + (len > 300 ? len - 300 : 0));
}

/* One run of a cell: backend on `hosts` simulated hosts (0: plainly, on
 * this one) with `workers` workers; fills row and, for hosts > 0, net. */
static void cluster_run(const struct mhb_options *o, const char *self,
                        const struct mhk_kernel *k, size_t items, const char *backend,
                        int hosts, int workers, int repeat, struct mhb_row *row,
                        struct cluster_net *net)
{
    char n_s[32], w_s[16], h_s[16], seed_s[32], rep_s[16], script[MHB_PATH_MAX];
    char dir[] = "/tmp/mhb-cluster.XXXXXX", file_env[MHB_PATH_MAX + 64];
    snprintf(n_s, sizeof n_s, "%zu", items);
    snprintf(w_s, sizeof w_s, "%d", workers);
    snprintf(h_s, sizeof h_s, "%d", hosts);
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)o->seed);
    snprintf(rep_s, sizeof rep_s, "%d", repeat);
    snprintf(script, sizeof script, "%s/scripts/cluster", MHB_SOURCE_DIR);

    memset(net, 0, sizeof *net);
    cluster_row_init(row, k, items, backend, workers, repeat);

    char *argv[24];
    int a = 0;
    char *env[] = {"MPIEXEC=" MHB_MPIEXEC, "OMPI_MCA_pml_monitoring_enable=1",
                   "OMPI_MCA_pml_monitoring_enable_output=3", file_env, NULL};
    if (hosts > 0) {
        if (!mkdtemp(dir)) {
            snprintf(row->error, sizeof row->error, "mkdtemp: %s", strerror(errno));
            return;
        }
        snprintf(file_env, sizeof file_env, "OMPI_MCA_pml_monitoring_filename=%s/prof", dir);
        argv[a++] = script;
        argv[a++] = h_s;
        argv[a++] = "1";
    }
    char *cell[] = {(char *)self, "cell", "--backends", (char *)backend, "--kernels",
                    (char *)k->name, "--items", n_s, "--workers", w_s, "--seed", seed_s,
                    "--cell-repeat", rep_s, NULL};
    for (int i = 0; cell[i]; i++)
        argv[a++] = cell[i];
    argv[a] = NULL;

    struct mhb_proc *p = malloc(sizeof *p);
    if (!p) {
        snprintf(row->error, sizeof row->error, "out of memory");
        goto out_net;
    }
    if (mhb_proc_run(argv, hosts > 0 ? env : NULL, o->timeout_s, p)) {
        snprintf(row->error, sizeof row->error, "could not start %s", argv[0]);
        goto out_free;
    }
    cluster_parse(p, k, hosts, row);
out_free:
    free(p);
out_net:
    if (hosts > 0 && cluster_read_net(dir, workers, net) && !row->error[0])
        snprintf(row->error, sizeof row->error, "no monitoring output (pml monitoring?)");
    mhb_timestamp(row->timestamp, sizeof row->timestamp);
    row->load_1m = mhb_load_1m();
}

/* One planned cell of the experiment. */
struct cluster_cell {
    const char *backend;
    int hosts; /* 0: plainly on this host */
    int workers;
};

/* A cell's successful runs: how many, and their network counts summed
 * (averaged when reported: the work is the same each run, only which rank
 * ran which chunk varies). Their walls are in the table. */
struct cluster_result {
    struct cluster_cell cell;
    const struct mhk_kernel *kernel;
    size_t items, chunk;
    struct cluster_net net;
    int runs;
};

/* Print the summary and write the network CSV of the mpi cells. */
static void cluster_report(FILE *out, FILE *netcsv, const struct mhb_table *t,
                           const struct cluster_result *res, size_t n)
{
    const char *kernel = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct cluster_result *r = &res[i];
        if (r->kernel->name != kernel) {
            kernel = r->kernel->name;
            fprintf(out, "\ncluster: %s, %zu items (median wall of each cell)\n", kernel,
                    r->items);
            fprintf(out, "  %-8s %5s %7s %10s %8s %10s %10s %11s\n", "backend", "hosts",
                    "workers", "wall_s", "speedup", "messages", "bytes/item", "bytes/chunk");
        }
        struct mhb_match m = {r->cell.backend, kernel, r->cell.workers, SIZE_MAX};
        double wall = mhb_stat(t, m, MHB_WALL);
        size_t chunks = r->chunk ? (r->items + r->chunk - 1) / r->chunk : 0;
        char hosts[16];
        snprintf(hosts, sizeof hosts, "%d", r->cell.hosts ? r->cell.hosts : 1);
        fprintf(out, "  %-8s %5s %7d %10.4f %8.2f", r->cell.backend, hosts, r->cell.workers,
                wall, mhb_stat(t, m, MHB_SPEEDUP));
        if (r->cell.hosts == 0) {
            fprintf(out, "\n");
            continue;
        }
        int runs = r->runs ? r->runs : 1;
        unsigned long long msgs = r->net.messages / (unsigned)runs;
        unsigned long long bytes = r->net.bytes / (unsigned)runs;
        double per_item = (double)bytes / (double)r->items;
        double per_chunk = chunks ? (double)bytes / (double)chunks : NAN;
        fprintf(out, " %10llu %10.1f %11.1f\n", msgs, per_item, per_chunk);
        if (netcsv)
            fprintf(netcsv, "%s,%d,1,%zu,%zu,%zu,%d,%.6f,%llu,%llu,%.3f,%.1f\n", kernel,
                    r->cell.hosts, r->items, r->chunk, chunks, r->runs, wall, msgs, bytes,
                    per_item, per_chunk);
    }
}

/* The cells of one kernel, from the runners in the cluster experiment:
 * the baseline first, at one worker; a launched runner (its ranks) across
 * each host count; the others on this host at that many workers. */
static size_t cluster_plan(const struct mhb_options *o, struct cluster_cell *cells)
{
    size_t n = 0;
    int nh = o->n_workers ? o->n_workers : (int)CLUSTER_NHOSTS;
    for (const struct mhb_runner *const *r = mhb_runners(); *r; r++) {
        if (!((*r)->experiments & MHB_IN_CLUSTER))
            continue;
        if ((*r)->baseline) {
            cells[n++] = (struct cluster_cell){(*r)->name, 0, 1};
            continue;
        }
        for (int i = 0; i < nh; i++) {
            int h = o->n_workers ? o->workers[i] : cluster_hosts[i];
            cells[n++] = (struct cluster_cell){(*r)->name, (*r)->launched ? h : 0, h};
        }
    }
    return n;
}

static size_t cluster_items(const struct mhb_options *o, const struct mhk_kernel *k)
{
    if (o->items)
        return o->items;
    if (k->seed_items && !o->quick)
        return k->seed_items; /* the seed workload */
    double n = (double)(o->quick ? k->quick_items : k->default_items) * o->scale;
    return n < 1 ? 1 : (size_t)n;
}

/* The default kernels: the seed's workload, and the CPU-bound kernel that
 * carries the most bytes per item. Returns how many (at most 2). */
static int cluster_default_kernels(const struct mhk_kernel *out[2])
{
    const struct mhk_kernel *seed = NULL, *bytes = NULL;
    for (const struct mhk_kernel *const *k = mhk_kernels(); *k; k++) {
        if ((*k)->seed_items && !seed)
            seed = *k;
        else if ((*k)->bound == MHK_CPU &&
                 (!bytes || (*k)->in_size + (*k)->out_size > bytes->in_size + bytes->out_size))
            bytes = *k;
    }
    int n = 0;
    if (seed)
        out[n++] = seed;
    if (bytes)
        out[n++] = bytes;
    return n;
}

/* Run every cell of kernel k `repeat` times; rows into t, results. */
static int cluster_kernel(const struct mhb_options *o, const char *self,
                          const struct mhk_kernel *k, int repeat, struct mhb_table *t,
                          struct cluster_result *res, size_t *nres)
{
    struct cluster_cell cells[2 * MHB_LIST_MAX + 1];
    size_t ncells = cluster_plan(o, cells), first = *nres;
    size_t items = cluster_items(o, k);
    for (size_t c = 0; c < ncells; c++)
        res[first + c] = (struct cluster_result){.cell = cells[c], .kernel = k, .items = items};
    *nres += ncells;
    /* seq's runs first, then rounds over the rest. */
    for (int pass = 0; pass < 2; pass++) {
        for (int r = 0; r < repeat; r++) {
            for (size_t c = pass ? 1 : 0; c < (pass ? ncells : 1); c++) {
                struct cluster_result *cr = &res[first + c];
                struct mhb_row row;
                struct cluster_net net;
                if (mhb_stop)
                    return -1;
                cluster_run(o, self, k, items, cr->cell.backend, cr->cell.hosts,
                            cr->cell.workers, r, &row, &net);
                fprintf(stderr, "cluster: %s %s hosts=%d workers=%d repeat=%d: %.4f s %s%s\n",
                        k->name, cr->cell.backend, cr->cell.hosts ? cr->cell.hosts : 1,
                        cr->cell.workers, r, row.wall_s,
                        row.verified == MHB_VERIFIED ? "verified " : "NOT VERIFIED ",
                        row.error);
                if (!row.error[0] && row.verified == MHB_VERIFIED) {
                    cr->runs++;
                    cr->chunk = row.chunk;
                    cr->net.messages += net.messages;
                    cr->net.bytes += net.bytes;
                }
                if (mhb_table_add(t, &row))
                    return -1;
            }
        }
    }
    return 0;
}

/* base = DIR/LABEL/<date>-cluster; write base.csv with every row, their
 * speedups against seq's median first. 0 or -1 (said on stderr). */
static int cluster_write_rows(const struct mhb_options *o, const struct mhb_machine *machine,
                              struct mhb_table *t, char *base, size_t size, size_t *failed)
{
    char path[MHB_PATH_MAX + MHB_NAME_MAX + 64];
    if (mhb_results_base(o, machine->host, "cluster", base, size))
        return -1;
    snprintf(path, sizeof path, "%s.csv", base);
    FILE *csv = mhb_csv_open(path);
    if (!csv) {
        fprintf(stderr, "manyhands-bench cluster: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    *failed = 0;
    for (size_t i = 0; i < t->n; i++) {
        struct mhb_row *row = &t->rows[i];
        mhb_row_rates(row, mhb_baseline_wall(t, row->kernel));
        *failed += row->error[0] || row->verified != MHB_VERIFIED;
        mhb_csv_row(csv, machine, row);
    }
    return fclose(csv) ? -1 : 0;
}

int mhb_cluster_main(const struct mhb_options *o)
{
    char self[MHB_PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    self[len > 0 ? len : 0] = '\0';
    struct mhb_machine machine;
    mhb_machine_probe(&machine);
    int repeat = o->repeat ? o->repeat : o->quick ? 1 : 3;
    const struct mhk_kernel *dflt[2];
    int nk = o->n_kernels ? o->n_kernels : cluster_default_kernels(dflt);
    for (int i = 0; i < o->n_workers; i++)
        if (o->workers[i] > 8) {
            fprintf(stderr, "manyhands-bench cluster: --workers are host counts, 1..8\n");
            return 2;
        }

    struct mhb_table t = {0};
    struct cluster_result *res = calloc((size_t)nk * (2 * MHB_LIST_MAX + 1), sizeof *res);
    size_t nres = 0;
    int rc = 1;
    if (!res)
        return 1;
    for (int i = 0; i < nk; i++) {
        const struct mhk_kernel *k = o->n_kernels ? mhk_find(o->kernels[i]) : dflt[i];
        if (!k || cluster_kernel(o, self, k, repeat, &t, res, &nres))
            goto out_free;
    }

    char base[MHB_PATH_MAX + MHB_NAME_MAX + 48], path[sizeof base + 16];
    size_t failed;
    if (cluster_write_rows(o, &machine, &t, base, sizeof base, &failed))
        goto out_free;
    snprintf(path, sizeof path, "%s-net.csv", base);
    FILE *net = fopen(path, "w");
    if (net)
        fprintf(net, "kernel,hosts,ranks_per_host,items,chunk,chunks,runs,wall_s,messages,"
                     "bytes,bytes_per_item,bytes_per_chunk\n");
    snprintf(path, sizeof path, "%s-summary.txt", base);
    FILE *sf = fopen(path, "w");
    if (sf)
        fprintf(sf, "manyhands-bench cluster, %s, git %s, %s (%d logical cores)\n", machine.host,
                machine.git_rev, machine.cpu_model, machine.logical_cores);
    cluster_report(stdout, net, &t, res, nres);
    if (sf) {
        cluster_report(sf, NULL, &t, res, nres);
        fclose(sf);
    }
    if (net)
        fclose(net);
    printf("\n%zu runs (%zu failed); CSV: %s.csv, %s-net.csv\n", t.n, failed, base, base);
    rc = failed ? 1 : 0;
out_free:
    free(res);
    free(t.rows);
    return rc;
}
