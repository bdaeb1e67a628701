/*
 * Private to options.c and options_values.c: the value parsers the
 * option table uses. Each returns NULL, or o->error with what was wrong.
 */
#ifndef MHB_OPTIONS_VALUES_H
#define MHB_OPTIONS_VALUES_H

#include <stdbool.h>
#include <stdint.h>

#include "options.h"

/* Format the error into o->error and return it. */
const char *mhb__opt_fail(struct mhb_options *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Decimal digits only, no sign, no spaces; value in [0, max]. */
bool mhb__opt_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* A finite number in (0, max]. */
bool mhb__opt_parse_positive(const char *s, double max, double *out);

/* "a,b,c" into names; "all" means the default (an empty list). */
const char *mhb__opt_parse_names(struct mhb_options *o, const char *opt, const char *arg,
                                 char names[][MHB_NAME_MAX], int *count);

/* "1,2,8" or "1-4,8": numbers in [lo, hi], ranges when allow_range. */
const char *mhb__opt_parse_numbers(struct mhb_options *o, const char *opt, const char *arg,
                                   uint64_t lo, uint64_t hi, bool allow_range,
                                   uint64_t *list, int *count);

#endif /* MHB_OPTIONS_VALUES_H */
