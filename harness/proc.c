/* Run one child process: output captured, CPU and peak RSS from wait4,
 * killed with its process group after a timeout or when asked to stop. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

volatile sig_atomic_t mhb_stop;

double mhb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Keep the last sizeof p->out - 1 bytes the child wrote. */
static void proc_keep(struct mhb_proc *p, size_t *used, const char *buf, size_t len)
{
    size_t cap = sizeof p->out - 1; /* larger than any one read */
    if (*used + len > cap) {
        size_t drop = *used + len - cap;
        memmove(p->out, p->out + drop, *used - drop);
        *used -= drop;
    }
    memcpy(p->out + *used, buf, len);
    *used += len;
    p->out[*used] = '\0';
}

/* In the child, after fork: only async-signal-safe calls until exec
 * (setenv is not, but this child has one thread: the harness has none). */
static void proc_child(char *const argv[], char *const env[], int out_fd)
{
    setpgid(0, 0);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) {
        dup2(null_fd, 0);
        close(null_fd);
    }
    dup2(out_fd, 1);
    dup2(out_fd, 2);
    close(out_fd);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    for (int i = 0; env && env[i]; i++)
        putenv(env[i]);
    execvp(argv[0], argv);
    const char msg[] = "manyhands-bench: exec failed\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(127);
}

int mhb_proc_run(char *const argv[], char *const env[], double timeout_s, struct mhb_proc *p)
{
    memset(p, 0, offsetof(struct mhb_proc, out));
    p->out[0] = '\0';
    int fds[2];
    if (pipe(fds))
        return -1;
    fflush(NULL);
    double start = mhb_now();
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        proc_child(argv, env, fds[1]);
    }
    setpgid(pid, pid); /* also in the child: whichever runs first wins */
    close(fds[1]);

    size_t used = 0;
    bool killed = false;
    double killed_at = 0;
    char buf[4096];
    _Static_assert(sizeof buf < sizeof p->out, "proc_keep takes one read whole");
    for (;;) {
        double left = start + timeout_s - mhb_now();
        /* Something outside the group still holds the pipe: give up on it. */
        if (killed && mhb_now() - killed_at > 5)
            break;
        if (!killed && (left <= 0 || mhb_stop)) {
            /* The whole group: mpirun's ranks and a fork pool's children too. */
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            killed = true;
            killed_at = mhb_now();
            p->timed_out = !mhb_stop;
            p->interrupted = mhb_stop != 0;
        }
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int wait_ms = killed ? 1000 : (int)(left * 1000) + 1;
        int r = poll(&pfd, 1, wait_ms > 1000 ? 1000 : wait_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        ssize_t got = read(fds[0], buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; /* EOF: every writer, descendants included, has gone */
        proc_keep(p, &used, buf, (size_t)got);
    }
    close(fds[0]);

    struct rusage ru;
    pid_t w;
    do
        w = wait4(pid, &p->status, 0, &ru);
    while (w < 0 && errno == EINTR);
    p->elapsed_s = mhb_now() - start;
    if (w != pid)
        return -1;
    /* A descendant that closed its output but lives on (a daemon) is
     * not ours to keep: the group goes. */
    kill(-pid, SIGKILL);
    p->user_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6;
    p->sys_s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    p->maxrss_kib = ru.ru_maxrss; /* Linux: KiB */
    return 0;
}

const char *mhb_find_line(const char *out, const char *tag)
{
    size_t len = strlen(tag);
    for (const char *line = out; line && *line;) {
        if (strncmp(line, tag, len) == 0)
            return line;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return NULL;
}
