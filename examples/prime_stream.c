/*
 * The `xargs -P` / GNU parallel use of a stream: read 64-bit unsigned
 * numbers from standard input, one per line, and write one line per
 * input to standard output, "N prime" or "N not prime", in input order,
 * each as soon as it is ready, in memory bounded by the stream's window
 * whatever the input's length. Any backend: MANYHANDS_BACKEND and
 * MANYHANDS_WORKERS choose (mpi: mpiexec -n R prime_stream; rank 0
 * reads and writes).
 *
 *     seq 1 20000000 | prime_stream | tail -1
 *
 * A line that is not a number (digits only, at most 2^64 - 1) ends the
 * stream: a message on stderr, exit status 1. Output is flushed per line
 * when it is a terminal, else written in blocks.
 */
#include <manyhands.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct verdict {
    uint64_t number;
    int prime;
};

struct io {
    FILE *in, *out;
    size_t line;  /* lines read */
    bool tty;     /* out is a terminal: flush every line */
};

/* GCC and Clang's 128-bit integer (__extension__: not ISO C). */
__extension__ typedef unsigned __int128 u128;

/* a * b mod m (a, b < m), without overflow; below 2^32 the product fits
 * in 64 bits, which spares the slow 128-bit division. */
static uint64_t mulmod(uint64_t a, uint64_t b, uint64_t m)
{
    if (m >> 32 == 0)
        return a * b % m;
    return (uint64_t)((u128)a * b % m);
}

static uint64_t powmod(uint64_t base, uint64_t exp, uint64_t m)
{
    uint64_t result = 1;
    base %= m;
    for (; exp; exp >>= 1) {
        if (exp & 1)
            result = mulmod(result, base, m);
        base = mulmod(base, base, m);
    }
    return result;
}

/* Miller-Rabin with the seven bases that decide every n < 2^64
 * (Jim Sinclair, 2011), or below 4,759,123,141 the three that decide
 * those (2, 7, 61: Jaeschke, 1993), after trial division by the small
 * primes. */
static bool is_prime(uint64_t n)
{
    static const uint64_t small[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
    static const uint64_t bases7[] = {2, 325, 9375, 28178, 450775, 9780504, 1795265022, 0};
    static const uint64_t bases3[] = {2, 7, 61, 0};
    const uint64_t *bases = n < 4759123141u ? bases3 : bases7;
    if (n < 2)
        return false;
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
        if (n % small[i] == 0)
            return n == small[i];
    }
    if (n < 41 * 41)
        return true; /* no factor up to 37, none above its square root */
    uint64_t d = n - 1;
    int s = 0;
    for (; (d & 1) == 0; d >>= 1)
        s++;
    for (size_t i = 0; bases[i]; i++) {
        uint64_t a = bases[i] % n;
        if (a == 0)
            continue; /* n divides the base: it says nothing */
        uint64_t x = powmod(a, d, n);
        if (x == 1 || x == n - 1)
            continue;
        int r = 1;
        for (; r < s; r++) {
            x = mulmod(x, x, n);
            if (x == n - 1)
                break;
        }
        if (r == s)
            return false; /* a witnesses that n is composite */
    }
    return true;
}

static int prime_fn(const void *in, void *out, void *ctx)
{
    (void)ctx;
    struct verdict *v = out;
    v->number = *(const uint64_t *)in;
    v->prime = is_prime(v->number);
    return 0;
}

/* Digits only, with an optional "\r" before the newline; false when the
 * text is empty, holds anything else, or exceeds 2^64 - 1. */
static bool parse_u64(const char *text, size_t len, uint64_t *value)
{
    if (len > 0 && text[len - 1] == '\r')
        len--;
    if (len == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned digit = (unsigned)(text[i] - '0');
        if (digit > 9 || v > (UINT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *value = v;
    return true;
}

/* The next line as a number; at the end of input MH_SOURCE_END. Read a
 * byte at a time without locking (only this thread reads stdin). */
static int prime_source(void *item, size_t seq, void *ctx)
{
    (void)seq;
    struct io *io = ctx;
    char line[24]; /* 20 digits and "\r": a longer line is no number */
    size_t len = 0, seen = 0;
    int c;
    while ((c = getc_unlocked(io->in)) != EOF && c != '\n') {
        if (len < sizeof line)
            line[len++] = (char)c;
        seen++;
    }
    if (c == EOF && seen == 0) {
        if (ferror(io->in)) {
            perror("prime_stream: standard input");
            return -1;
        }
        return MH_SOURCE_END; /* the last line may lack its newline */
    }
    io->line++;
    if (seen > len || !parse_u64(line, len, item)) {
        fprintf(stderr, "prime_stream: line %zu: not a 64-bit unsigned number: \"%.*s\"%s\n",
                io->line, (int)len, line, seen > len ? "..." : "");
        return -1;
    }
    return MH_SOURCE_ITEM;
}

/* "N prime\n" or "N not prime\n". Every item of this fn succeeds, so
 * status is MH_ITEM_OK unless a worker died (fork, mpi). */
static int prime_sink(size_t seq, int status, void *out, void *ctx)
{
    struct io *io = ctx;
    const struct verdict *v = out;
    if (status != MH_ITEM_OK) {
        fprintf(stderr, "prime_stream: item %zu: %s\n", seq, mh_item_status_name(status));
        return 1;
    }
    char text[40], *p = text + sizeof text;
    static const char prime[] = " prime\n", not_prime[] = " not prime\n";
    const char *word = v->prime ? prime : not_prime;
    size_t word_len = v->prime ? sizeof prime - 1 : sizeof not_prime - 1;
    p -= word_len;
    memcpy(p, word, word_len);
    uint64_t n = v->number;
    do {
        *--p = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    size_t len = (size_t)(text + sizeof text - p);
    if (fwrite(p, 1, len, io->out) != len || (io->tty && fflush(io->out)))
        return 1;
    return 0;
}

int main(void)
{
    struct io io = {.in = stdin, .out = stdout, .tty = isatty(STDOUT_FILENO) == 1};
    setvbuf(stdin, NULL, _IOFBF, 1 << 16);
    if (!io.tty)
        setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    mh_pool *pool = NULL;
    int rc = mh_pool_open(&pool, NULL);
    if (rc) {
        fprintf(stderr, "prime_stream: mh_pool_open: %s\n", mh_strerror(rc));
        return 1;
    }
    const struct mh_stream_task stream = {
        .in_size = sizeof(uint64_t),
        .out_size = sizeof(struct verdict),
        .fn = prime_fn,
        .ctx = &io,
        .source = prime_source,
        .sink = prime_sink,
        /* adaptive: every worker busy, memory bounded; typed at a
         * terminal, each answer before the next line is read */
        .window = isatty(STDIN_FILENO) == 1 ? 1 : 0,
        .order = MH_ORDERED,
    };
    struct mh_report report = {0};
    rc = mh_stream(pool, &stream, &report);
    int rank = mh_pool_rank(pool);
    mh_pool_close(pool);
    if (rank != 0)
        return rc ? 1 : 0; /* every rank returns the same code */
    if (fflush(stdout)) {
        perror("prime_stream: standard output");
        return 1;
    }
    if (rc) {
        fprintf(stderr, "prime_stream: %s: %s (%zu lines written)\n", mh_err_name(rc),
                mh_strerror(rc), report.items_done);
        return 1;
    }
    return 0;
}
