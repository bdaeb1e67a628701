/*
 * Check manyhands-bench CSV files against the schema in docs/csv.md.
 *
 *   bench_csv_check [--verified] CSV_MD FILE.csv...
 *
 * Reads the schema table of CSV_MD (rows "| `name` | type | empty | ..."),
 * then checks each file: the header is exactly the schema's columns in
 * order, every row has that many fields, every field has its column's type
 * (iso8601, text, int, real, bool, enum(a,b)) and is empty only where the
 * schema allows it. With --verified, every row must also have no error and
 * verified = 1 (peer programs verify too): bench.smoke. Exit 0 when all is well, 1 with one
 * line per problem (the first 20) otherwise.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COLS_MAX 64
#define FIELD_MAX 1024

struct column {
    char name[64];
    char type[128];
    bool may_be_empty;
};

static struct column columns[COLS_MAX];
static int n_columns;
static int problems;

static void problem(const char *file, long line, const char *fmt, const char *a, const char *b)
{
    if (++problems <= 20) {
        fprintf(stderr, "%s:%ld: ", file, line);
        fprintf(stderr, fmt, a, b);
        fputc('\n', stderr);
    }
}

/* Trim spaces (and backticks) from both ends, in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '`')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '`' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

static int read_schema(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "| `", 3) != 0)
            continue;
        char *cells[5] = {0};
        int n = 0;
        char *p = line + 1;
        while (n < 4) {
            char *bar = strchr(p, '|');
            if (!bar)
                break;
            *bar = '\0';
            cells[n++] = trim(p);
            p = bar + 1;
        }
        if (n < 3 || n_columns == COLS_MAX)
            continue;
        struct column *c = &columns[n_columns++];
        snprintf(c->name, sizeof c->name, "%s", cells[0]);
        snprintf(c->type, sizeof c->type, "%s", cells[1]);
        c->may_be_empty = strcmp(cells[2], "never") != 0;
    }
    fclose(f);
    if (n_columns == 0) {
        fprintf(stderr, "%s: no schema table found\n", path);
        return -1;
    }
    return 0;
}

/* One CSV record (RFC 4180, no newlines inside fields) into fields. */
static int split(const char *line, char fields[][FIELD_MAX], int max)
{
    int n = 0;
    const char *p = line;
    for (;;) {
        if (n == max)
            return -1;
        char *out = fields[n];
        size_t len = 0;
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '\0' || *p == '\n')
                    return -1; /* unterminated quote */
                if (*p == '"') {
                    if (p[1] == '"') {
                        p += 2;
                        if (len + 1 < FIELD_MAX)
                            out[len++] = '"';
                        continue;
                    }
                    p++;
                    break;
                }
                if (len + 1 < FIELD_MAX)
                    out[len++] = *p;
                p++;
            }
        } else {
            while (*p && *p != ',' && *p != '\n' && *p != '\r') {
                if (*p == '"')
                    return -1; /* a quote inside an unquoted field */
                if (len + 1 < FIELD_MAX)
                    out[len++] = *p;
                p++;
            }
        }
        out[len] = '\0';
        n++;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '\0' || *p == '\n' || (*p == '\r' && p[1] == '\n'))
            return n;
        return -1;
    }
}

static bool is_int(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

static bool is_real(const char *s)
{
    char *end;
    if (!*s || isspace((unsigned char)*s))
        return false;
    double v = strtod(s, &end);
    return *end == '\0' && v == v && v >= 0;
}

/* YYYY-MM-DDTHH:MM:SSZ */
static bool is_iso8601(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (strlen(s) != sizeof shape - 1)
        return false;
    for (size_t i = 0; shape[i]; i++)
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return false;
    return true;
}

/* type "enum(a,b)": value is one of them */
static bool in_enum(const char *type, const char *v)
{
    const char *p = type + 5;
    size_t len = strlen(v);
    while (*p && *p != ')') {
        size_t n = strcspn(p, ",)");
        if (n == len && strncmp(p, v, n) == 0)
            return true;
        p += n + (p[n] == ',');
    }
    return false;
}

static bool has_type(const char *type, const char *v)
{
    if (strcmp(type, "text") == 0)
        return true;
    if (strcmp(type, "int") == 0)
        return is_int(v);
    if (strcmp(type, "real") == 0)
        return is_real(v);
    if (strcmp(type, "bool") == 0)
        return strcmp(v, "0") == 0 || strcmp(v, "1") == 0;
    if (strcmp(type, "iso8601") == 0)
        return is_iso8601(v);
    if (strncmp(type, "enum(", 5) == 0)
        return in_enum(type, v);
    return false; /* an unknown type in the schema is a problem too */
}

static int column_index(const char *name)
{
    for (int i = 0; i < n_columns; i++)
        if (strcmp(columns[i].name, name) == 0)
            return i;
    return -1;
}

static void check_file(const char *path, bool want_verified)
{
    static char fields[COLS_MAX + 1][FIELD_MAX];
    static char line[1 << 16];
    FILE *f = fopen(path, "r");
    if (!f) {
        problem(path, 0, "cannot open%s%s", "", "");
        return;
    }
    long lineno = 0, rows = 0;
    int before = problems;
    int verified = column_index("verified"), error = column_index("error");
    while (fgets(line, sizeof line, f)) {
        lineno++;
        int n = split(line, fields, COLS_MAX + 1);
        if (n < 0) {
            problem(path, lineno, "not a CSV record%s%s", "", "");
            continue;
        }
        if (lineno == 1) {
            if (n != n_columns)
                problem(path, lineno, "header has a different number of columns than "
                                      "the schema%s%s", "", "");
            for (int i = 0; i < n && i < n_columns; i++)
                if (strcmp(fields[i], columns[i].name) != 0)
                    problem(path, lineno, "header says '%s' where the schema says '%s'",
                            fields[i], columns[i].name);
            continue;
        }
        rows++;
        if (n != n_columns) {
            problem(path, lineno, "wrong number of fields%s%s", "", "");
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (!fields[i][0]) {
                if (!columns[i].may_be_empty)
                    problem(path, lineno, "'%s' is empty%s", columns[i].name, "");
            } else if (!has_type(columns[i].type, fields[i])) {
                problem(path, lineno, "'%s' is not of its type: '%s'", columns[i].name,
                        fields[i]);
            }
        }
        /* Library backends and peer programs alike verify every output. */
        if (want_verified && (verified < 0 || strcmp(fields[verified], "1") != 0 ||
                              (error >= 0 && fields[error][0])))
            problem(path, lineno, "run failed or not verified: %s",
                    error >= 0 ? fields[error] : "", "");
    }
    fclose(f);
    if (lineno == 0)
        problem(path, 0, "empty file%s%s", "", "");
    else if (rows == 0)
        problem(path, 1, "no rows%s%s", "", "");
    else if (problems == before)
        printf("%s: %ld rows, %d columns, schema ok%s\n", path, rows, n_columns,
               want_verified ? ", every run verified" : "");
}

int main(int argc, char **argv)
{
    int a = 1;
    bool want_verified = false;
    if (a < argc && strcmp(argv[a], "--verified") == 0) {
        want_verified = true;
        a++;
    }
    if (argc - a < 2) {
        fprintf(stderr, "usage: %s [--verified] CSV_MD FILE.csv...\n", argv[0]);
        return 2;
    }
    if (read_schema(argv[a]))
        return 1;
    for (int i = a + 1; i < argc; i++)
        check_file(argv[i], want_verified);
    if (problems > 20)
        fprintf(stderr, "... %d problems in all\n", problems);
    return problems ? 1 : 0;
}
