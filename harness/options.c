/* manyhands-bench command line parsing: pure, see options.h. */
#include "options.h"
#include "options_values.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void opt_defaults(struct mhb_options *o)
{
    memset(o, 0, sizeof *o);
    o->command = MHB_MATRIX;
    o->scale = 1.0;
    o->seed = 1;
    o->timeout_s = 120;
    strcpy(o->out, "results");
}

/* Options that take a value, and those that take none. */
static const char *const opt_with_value[] = {
    "backends", "kernels", "workers", "chunks", "items", "scale", "repeat",
    "seed", "timeout", "out", "label", "cell-repeat", NULL,
};
static const char *const opt_flags[] = {"quick", "no-plot", "no-peers", "help", NULL};

static bool opt_in(const char *const *names, const char *name)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* The list options; NULL with *handled false for others. */
static const char *opt_apply_list(struct mhb_options *o, const char *opt, const char *name,
                                  const char *v, bool *handled)
{
    uint64_t list[MHB_LIST_MAX];
    int count;
    const char *err = NULL;
    *handled = true;
    if (strcmp(name, "backends") == 0)
        return mhb__opt_parse_names(o, opt, v, o->backends, &o->n_backends);
    if (strcmp(name, "kernels") == 0)
        return mhb__opt_parse_names(o, opt, v, o->kernels, &o->n_kernels);
    if (strcmp(name, "workers") == 0) {
        err = mhb__opt_parse_numbers(o, opt, v, 1, MHB_WORKERS_LIMIT, true, list, &count);
        for (int i = 0; !err && i < count; i++)
            o->workers[i] = (int)list[i];
        o->n_workers = err ? 0 : count;
        return err;
    }
    if (strcmp(name, "chunks") == 0) {
        err = mhb__opt_parse_numbers(o, opt, v, 0, (uint64_t)1 << 32, false, list, &count);
        for (int i = 0; !err && i < count; i++)
            o->chunks[i] = (size_t)list[i];
        o->n_chunks = err ? 0 : count;
        return err;
    }
    *handled = false;
    return NULL;
}

/* The options with one number; NULL with *handled false for others. */
static const char *opt_apply_number(struct mhb_options *o, const char *opt, const char *name,
                                    const char *v, bool *handled)
{
    uint64_t n;
    *handled = true;
    if (strcmp(name, "items") == 0) {
        if (!mhb__opt_parse_u64(v, (uint64_t)1 << 40, &n) || n == 0)
            return mhb__opt_fail(o, "%s: '%s' is not a count in 1..2^40", opt, v);
        o->items = (size_t)n;
    } else if (strcmp(name, "scale") == 0) {
        if (!mhb__opt_parse_positive(v, 1e6, &o->scale))
            return mhb__opt_fail(o, "%s: '%s' is not a number in (0, 1e6]", opt, v);
    } else if (strcmp(name, "repeat") == 0) {
        if (!mhb__opt_parse_u64(v, 1000, &n) || n == 0)
            return mhb__opt_fail(o, "%s: '%s' is not in 1..1000", opt, v);
        o->repeat = (int)n;
    } else if (strcmp(name, "cell-repeat") == 0) {
        if (!mhb__opt_parse_u64(v, 1000, &n))
            return mhb__opt_fail(o, "%s: '%s' is not in 0..1000", opt, v);
        o->cell_repeat = (int)n;
    } else if (strcmp(name, "seed") == 0) {
        if (!mhb__opt_parse_u64(v, UINT64_MAX, &o->seed))
            return mhb__opt_fail(o, "%s: '%s' is not an unsigned 64-bit number", opt, v);
    } else if (strcmp(name, "timeout") == 0) {
        if (!mhb__opt_parse_positive(v, 86400, &o->timeout_s))
            return mhb__opt_fail(o, "%s: '%s' is not a number of seconds in (0, 86400]", opt, v);
    } else {
        *handled = false;
    }
    return NULL;
}

/* One option with its value (NULL for flags). */
static const char *opt_apply(struct mhb_options *o, const char *name, const char *v)
{
    char opt[80];
    snprintf(opt, sizeof opt, "--%s", name);
    bool handled;
    const char *err = opt_apply_list(o, opt, name, v, &handled);
    if (!handled)
        err = opt_apply_number(o, opt, name, v, &handled);
    if (handled)
        return err;
    if (strcmp(name, "out") == 0) {
        size_t len = strlen(v);
        if (len == 0 || len >= sizeof o->out)
            return mhb__opt_fail(o, "%s: the directory name is empty or too long", opt);
        memcpy(o->out, v, len + 1);
        return NULL;
    }
    if (strcmp(name, "label") == 0) {
        size_t len = strlen(v);
        bool ok = len > 0 && len < sizeof o->label && v[0] != '.';
        for (size_t i = 0; ok && i < len; i++) {
            char c = v[i];
            ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '-' || c == '_';
        }
        if (!ok)
            return mhb__opt_fail(o, "%s: '%.64s' must be 1..%d of [A-Za-z0-9._-], not starting "
                            "with '.'", opt, v, MHB_NAME_MAX - 1);
        memcpy(o->label, v, len + 1);
        return NULL;
    }
    bool *flag = !strcmp(name, "quick")      ? &o->quick
                 : !strcmp(name, "no-plot")  ? &o->no_plot
                 : !strcmp(name, "no-peers") ? &o->no_peers
                                             : NULL;
    if (flag)
        *flag = true;
    else if (strcmp(name, "help") == 0)
        o->command = MHB_HELP;
    else
        return mhb__opt_fail(o, "unknown option '%.64s'", opt);
    return NULL;
}

const char *mhb_options_parse(struct mhb_options *o, int argc, char *const argv[])
{
    opt_defaults(o);
    int i = 1;
    if (argc > 1 && argv[1] && argv[1][0] != '-') {
        if (strcmp(argv[1], "matrix") == 0)
            o->command = MHB_MATRIX;
        else if (strcmp(argv[1], "seed") == 0)
            o->command = MHB_SEED;
        else if (strcmp(argv[1], "cell") == 0)
            o->command = MHB_CELL;
        else if (strcmp(argv[1], "cluster") == 0)
            o->command = MHB_CLUSTER;
        else if (strcmp(argv[1], "stream") == 0)
            o->command = MHB_STREAM;
        else if (strcmp(argv[1], "help") == 0)
            o->command = MHB_HELP;
        else
            return mhb__opt_fail(o, "unknown command '%.64s' (commands: matrix, seed, "
                                    "cluster, stream)", argv[1]);
        i = 2;
    }
    bool help = false;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (!arg)
            return mhb__opt_fail(o, "argument %d is NULL", i);
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            help = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return mhb__opt_fail(o, "unexpected argument '%.64s'", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        char key[32];
        if (len == 0 || len >= sizeof key)
            return mhb__opt_fail(o, "unknown option '%.64s'", arg);
        memcpy(key, name, len);
        key[len] = '\0';
        const char *value = NULL;
        if (!opt_in(opt_with_value, key) && !opt_in(opt_flags, key))
            return mhb__opt_fail(o, "unknown option '--%s'", key);
        if (opt_in(opt_with_value, key)) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc && argv[i + 1])
                value = argv[++i];
            else
                return mhb__opt_fail(o, "--%s needs a value", key);
        } else if (eq) {
            return mhb__opt_fail(o, "--%s takes no value", key);
        }
        const char *err = opt_apply(o, key, value);
        if (err)
            return err;
    }
    if (help)
        o->command = MHB_HELP;
    return NULL;
}

static bool opt_in_list(const char *name, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(*list, name) == 0)
            return true;
    return false;
}

/* "a, b, c" of a NULL-terminated list into buf. */
static void opt_join(char *buf, size_t size, const char *const *list)
{
    size_t used = 0;
    buf[0] = '\0';
    for (; list && *list && used + 1 < size; list++) {
        int w = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", *list);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

const char *mhb_options_check(struct mhb_options *o, const char *const *backends,
                              const char *const *kernels)
{
    char have[160];
    for (int i = 0; i < o->n_backends; i++) {
        if (!opt_in_list(o->backends[i], backends)) {
            opt_join(have, sizeof have, backends);
            return mhb__opt_fail(o, "--backends: '%s' is not in this build (built: %s)",
                            o->backends[i], have);
        }
    }
    for (int i = 0; i < o->n_kernels; i++) {
        if (!opt_in_list(o->kernels[i], kernels)) {
            opt_join(have, sizeof have, kernels);
            return mhb__opt_fail(o, "--kernels: unknown kernel '%s' (kernels: %s)", o->kernels[i],
                            have);
        }
    }
    if (o->command == MHB_CELL) {
        if (o->n_backends != 1 || o->n_kernels != 1 || o->n_workers != 1 || o->n_chunks > 1 ||
            o->items == 0)
            return mhb__opt_fail(o, "cell: give exactly one --backends, --kernels, --workers and "
                            "--items (and at most one --chunks)");
    }
    return NULL;
}
