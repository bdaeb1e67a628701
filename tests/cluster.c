/*
 * The mpi backend across the simulated hosts of scripts/cluster: run as
 * `scripts/cluster K R cluster TEST mpi K*R` (tests/CMakeLists.txt,
 * mh_add_cluster_tests). The script gives each host its own network
 * namespace and hostname, and lists the hostnames, in order, in
 * MH_CLUSTER_HOSTS; ranks are placed by slot (R per host).
 *
 * ranks_on_hosts: every rank is where the hostfile put it (its processor
 * name is its host's, and differs from every other host's; ranks share a
 * network namespace exactly when they share a host), the btl is tcp,self,
 * and a map's inputs to ranks on other hosts really crossed host 0's
 * link: its eth0 sent at least those bytes.
 *
 * host_lost (run by tests/cluster_host_lost.sh, never passes by itself):
 * a long map; the script loses a host in the middle of it.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

/* Items of the transport map: 64 KiB each, 16 MiB in all. */
#define CLUSTER_ITEM 65536
#define CLUSTER_ITEMS 256

struct cluster_item {
    unsigned char bytes[CLUSTER_ITEM];
};

/* Items this rank ran: what it received from rank 0. */
static long cluster_ran;

static int fn_sum(const void *in, void *out, void *ctx)
{
    (void)ctx;
    const struct cluster_item *item = in;
    unsigned long sum = 0;
    for (size_t i = 0; i < sizeof item->bytes; i++)
        sum += item->bytes[i];
    *(unsigned long *)out = sum;
    cluster_ran++;
    return 0;
}

/* What one rank tells rank 0 about itself. */
struct cluster_rank {
    char name[MPI_MAX_PROCESSOR_NAME];
    char uts[256];
    unsigned long long netns; /* inode of /proc/self/ns/net */
    long ran;
};

static long long cluster_tx_bytes(void)
{
    FILE *f = fopen("/sys/class/net/eth0/statistics/tx_bytes", "r");
    long long v = -1;
    if (f) {
        if (fscanf(f, "%lld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* The MCA variable `btl` as the ranks see it, via MPI_T. */
static int cluster_btl(char *buf, int len)
{
    int provided, index, count;
    if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS)
        return -1;
    int rc = -1;
    MPI_T_cvar_handle handle;
    if (MPI_T_cvar_get_index("btl", &index) == MPI_SUCCESS &&
        MPI_T_cvar_handle_alloc(index, NULL, &handle, &count) == MPI_SUCCESS) {
        if (count <= len && MPI_T_cvar_read(handle, buf) == MPI_SUCCESS)
            rc = 0;
        MPI_T_cvar_handle_free(&handle);
    }
    MPI_T_finalize();
    return rc;
}

/* Rank 0's checks of the gathered records; hosts from MH_CLUSTER_HOSTS. */
static int cluster_check_places(const struct cluster_rank *all, int size)
{
    const char *list = getenv("MH_CLUSTER_HOSTS");
    CHECK(list && *list);
    char hosts[16][64];
    int nhosts = 0;
    for (const char *p = list; *p && nhosts < 16;) {
        size_t len = strcspn(p, " ");
        if (len && len < sizeof hosts[0]) {
            memcpy(hosts[nhosts], p, len);
            hosts[nhosts++][len] = '\0';
        }
        p += len + (p[len] == ' ');
    }
    CHECK(nhosts >= 2 && size % nhosts == 0);
    int per_host = size / nhosts;
    for (int r = 0; r < size; r++) {
        fprintf(stderr, "rank %d: processor %s, hostname %s, netns %llu, ran %ld items\n", r,
                all[r].name, all[r].uts, all[r].netns, all[r].ran);
        CHECK(strcmp(all[r].name, hosts[r / per_host]) == 0);
        CHECK(strcmp(all[r].uts, all[r].name) == 0);
        for (int q = 0; q < r; q++) {
            int same_host = q / per_host == r / per_host;
            CHECK((strcmp(all[q].name, all[r].name) == 0) == same_host);
            CHECK((all[q].netns == all[r].netns) == same_host);
        }
    }
    return 0;
}

static int test_ranks_on_hosts(const char *backend)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char btl[4096] = ""; /* MPI_T says how long a string may be: 2048 here */
    CHECK(cluster_btl(btl, sizeof btl) == 0);
    if (strcmp(btl, "tcp,self") != 0) {
        fprintf(stderr, "rank %d: btl is '%s', not tcp,self\n", rank, btl);
        return 1;
    }

    static struct cluster_item in[CLUSTER_ITEMS];
    static unsigned long out[CLUSTER_ITEMS];
    for (size_t i = 0; i < CLUSTER_ITEMS; i++)
        memset(in[i].bytes, (int)(i & 0x7f), sizeof in[i].bytes);
    mh_pool *pool = mh_test_pool(backend, 0, 1, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = CLUSTER_ITEMS, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_sum,
    };
    cluster_ran = 0;
    long long tx0 = cluster_tx_bytes();
    int rc = mh_map(pool, &task, NULL);
    long long tx1 = cluster_tx_bytes();
    mh_pool_close(pool);
    CHECK_RC(rc, MH_OK);

    struct cluster_rank me = {.ran = cluster_ran};
    int len;
    CHECK(MPI_Get_processor_name(me.name, &len) == MPI_SUCCESS);
    CHECK(gethostname(me.uts, sizeof me.uts) == 0);
    struct stat st;
    CHECK(stat("/proc/self/ns/net", &st) == 0);
    me.netns = (unsigned long long)st.st_ino;
    struct cluster_rank *all = rank == 0 ? calloc((size_t)size, sizeof *all) : NULL;
    CHECK(rank != 0 || all);
    CHECK(MPI_Gather(&me, sizeof me, MPI_BYTE, all, sizeof me, MPI_BYTE, 0, MPI_COMM_WORLD) ==
          MPI_SUCCESS);
    if (rank != 0)
        return 0;
    int bad = cluster_check_places(all, size);
    long remote = 0; /* items run on hosts other than rank 0's */
    for (int r = 0; r < size; r++)
        if (strcmp(all[r].name, all[0].name) != 0)
            remote += all[r].ran;
    free(all);
    CHECK(bad == 0);
    for (size_t i = 0; i < CLUSTER_ITEMS; i++)
        CHECK(out[i] == (i & 0x7f) * CLUSTER_ITEM);
    long long sent = tx1 - tx0, need = remote * (long long)CLUSTER_ITEM;
    fprintf(stderr, "%ld of %d items ran on other hosts; host 0's eth0 sent %lld bytes "
            "(their inputs: %lld)\n", remote, CLUSTER_ITEMS, sent, need);
    CHECK(remote > 0 && tx0 >= 0 && tx1 >= 0);
    CHECK(sent >= need);
    return 0;
}

/* 1 ms per item: long enough for the script to lose a host mid-map. */
static int fn_slow(const void *in, void *out, void *ctx)
{
    (void)ctx;
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
    *(int *)out = *(const int *)in;
    return 0;
}

static int test_host_lost(const char *backend)
{
    enum { N = 60000 };
    static int in[N], out[N];
    mh_pool *pool = mh_test_pool(backend, 0, 8, MH_STOP);
    CHECK(pool);
    struct mh_task task = {
        .n = N, .in = in, .in_size = sizeof *in, .out = out, .out_size = sizeof *out,
        .fn = fn_slow,
    };
    const char *mark = getenv("MH_CLUSTER_MARK");
    if (mark && mh_pool_rank(pool) == 0) {
        FILE *f = fopen(mark, "w"); /* the map starts now */
        if (f)
            fclose(f);
    }
    int rc = mh_map(pool, &task, NULL);
    fprintf(stderr, "rank %d: the map returned %s with a host lost\n", mh_pool_rank(pool),
            mh_err_name(rc));
    mh_pool_close(pool);
    return 1;
}

static const struct mh_test tests[] = {
    MH_TEST_ON(ranks_on_hosts, "mpi")
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    /* Not a table line: it passes only as cluster_host_lost.sh judges it. */
    if (argc >= 3 && strcmp(argv[1], "host_lost") == 0)
        return test_host_lost(argv[2]);
    return mh_test_main(argc, argv, tests);
}
