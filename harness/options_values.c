/* manyhands-bench's option values: numbers, lists, names (options_values.h). */
#include "options_values.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mhb__opt_fail(struct mhb_options *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->error, sizeof o->error, fmt, ap);
    va_end(ap);
    return o->error;
}

/* Decimal digits only, no sign, no spaces; value in [0, max]. */
bool mhb__opt_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = (unsigned)(*p - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* A finite number in (0, max]. */
bool mhb__opt_parse_positive(const char *s, double max, double *out)
{
    if (!s || !*s || *s == ' ' || *s == '\t' || *s == '+' || *s == '-')
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v <= 0 || v > max)
        return false;
    *out = v;
    return true;
}

/* Lower-case letters, digits, '-', '_' and ':': what backend and kernel
 * names are made of (':' parts a stream kind, "empty:stream"). */
static bool opt_is_name(const char *s, size_t len)
{
    if (len == 0 || len >= MHB_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == ':'))
            return false;
    }
    return true;
}

/* "a,b,c" into names; "all" means the default (an empty list). */
const char *mhb__opt_parse_names(struct mhb_options *o, const char *opt, const char *arg,
                                   char names[][MHB_NAME_MAX], int *count)
{
    *count = 0;
    if (strcmp(arg, "all") == 0)
        return NULL;
    const char *p = arg;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!opt_is_name(p, len))
            return mhb__opt_fail(o, "%s: '%.*s' is not a name (lower-case letters, digits, "
                            "'-', '_', ':'; at most %d)", opt, (int)(len > 64 ? 64 : len), p,
                            MHB_NAME_MAX - 1);
        for (int i = 0; i < *count; i++)
            if (strlen(names[i]) == len && memcmp(names[i], p, len) == 0)
                return mhb__opt_fail(o, "%s: '%s' is listed twice", opt, names[i]);
        if (*count == MHB_LIST_MAX)
            return mhb__opt_fail(o, "%s: more than %d names", opt, MHB_LIST_MAX);
        memcpy(names[*count], p, len);
        names[*count][len] = '\0';
        (*count)++;
        if (!comma)
            return NULL;
        p = comma + 1;
    }
}

/* Ascending insertion; duplicates are an error. */
static const char *opt_add_number(struct mhb_options *o, const char *opt, uint64_t v,
                                  uint64_t *list, int *count)
{
    int i = *count;
    for (int k = 0; k < *count; k++)
        if (list[k] == v)
            return mhb__opt_fail(o, "%s: %llu is listed twice", opt, (unsigned long long)v);
    if (*count == MHB_LIST_MAX)
        return mhb__opt_fail(o, "%s: more than %d values", opt, MHB_LIST_MAX);
    while (i > 0 && list[i - 1] > v) {
        list[i] = list[i - 1];
        i--;
    }
    list[i] = v;
    (*count)++;
    return NULL;
}

/* "1,2,8" or "1-4,8": numbers in [lo, hi], ranges when allow_range. */
const char *mhb__opt_parse_numbers(struct mhb_options *o, const char *opt, const char *arg,
                                     uint64_t lo, uint64_t hi, bool allow_range,
                                     uint64_t *list, int *count)
{
    char item[32];
    *count = 0;
    const char *p = arg;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof item)
            return mhb__opt_fail(o, "%s: '%.*s' is not a number", opt, (int)(len > 40 ? 40 : len), p);
        memcpy(item, p, len);
        item[len] = '\0';
        char *dash = allow_range ? strchr(item, '-') : NULL;
        uint64_t a, b;
        if (dash) {
            *dash = '\0';
            if (!mhb__opt_parse_u64(item, UINT64_MAX, &a) || !mhb__opt_parse_u64(dash + 1, UINT64_MAX, &b))
                return mhb__opt_fail(o, "%s: '%.*s' is not a range A-B", opt, (int)len, p);
            if (a > b)
                return mhb__opt_fail(o, "%s: range '%.*s' runs backwards", opt, (int)len, p);
        } else {
            if (!mhb__opt_parse_u64(item, UINT64_MAX, &a))
                return mhb__opt_fail(o, "%s: '%s' is not a number", opt, item);
            b = a;
        }
        if (a < lo || b > hi)
            return mhb__opt_fail(o, "%s: '%.*s' is not in %llu..%llu", opt, (int)len, p,
                            (unsigned long long)lo, (unsigned long long)hi);
        if (b - a >= MHB_LIST_MAX)
            return mhb__opt_fail(o, "%s: more than %d values", opt, MHB_LIST_MAX);
        for (uint64_t v = a; v <= b; v++) {
            const char *err = opt_add_number(o, opt, v, list, count);
            if (err)
                return err;
        }
        if (!comma)
            return NULL;
        p = comma + 1;
    }
}
