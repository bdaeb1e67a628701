/* The fork backend's stdio around each fork (fork_stdio.h says what and
 * why). glibc: __fpurge and __libc_single_threaded. */
#include <stdio.h>
#include <stdio_ext.h>

#include "fork_stdio.h"

#if defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define FORK_STDIO_ONE_THREAD() (__libc_single_threaded != 0)
#endif
#endif
#ifndef FORK_STDIO_ONE_THREAD
#define FORK_STDIO_ONE_THREAD() false /* unknown: take the careful path */
#endif

static FILE *fork_stdio_stream(int k)
{
    return k ? stderr : stdout;
}

void mh__fork_stdio_before(struct mh__fork_stdio *s)
{
    s->all = FORK_STDIO_ONE_THREAD();
    s->unflushed = 0;
    if (s->all) {
        fflush(NULL); /* no other thread: no lock to wait for */
        return;
    }
    for (int k = 0; k < 2; k++) {
        FILE *f = fork_stdio_stream(k);
        if (ftrylockfile(f)) { /* another thread has it */
            s->unflushed |= 1u << k;
            continue;
        }
        fflush_unlocked(f);
        funlockfile(f);
    }
}

void mh__fork_stdio_child_start(const struct mh__fork_stdio *s)
{
    for (int k = 0; k < 2; k++)
        if (s->unflushed & (1u << k))
            __fpurge(fork_stdio_stream(k));
}

void mh__fork_stdio_child_end(const struct mh__fork_stdio *s)
{
    if (s->all) {
        fflush(NULL);
        return;
    }
    fflush(stdout);
    fflush(stderr);
}
