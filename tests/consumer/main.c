/* A program outside the project that uses the installed manyhands. */
#include <manyhands.h>
#include <stdio.h>

static int twice(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(int *)out = 2 * *(const int *)in;
    return 0;
}

int main(void)
{
    int in[100], out[100];
    for (int i = 0; i < 100; i++)
        in[i] = i;
    mh_pool *pool;
    int rc = mh_pool_open(&pool, &(struct mh_config){.workers = 2});
    if (rc) {
        fprintf(stderr, "open: %s\n", mh_strerror(rc));
        return 1;
    }
    struct mh_task task = {
        .n = 100, .in = in, .in_size = sizeof *in, .out = out,
        .out_size = sizeof *out, .fn = twice,
    };
    rc = mh_map(pool, &task, NULL);
    mh_pool_close(pool);
    for (int i = 0; i < 100; i++)
        if (out[i] != 2 * i)
            rc = 1;
    printf("manyhands %s consumer: %s\n", mh_version(), rc ? "FAIL" : "ok");
    return rc != 0;
}
