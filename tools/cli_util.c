/* cli_util.c — the `fewmul` command's common ground: one-line error messages
 * (to cli_err), strict number parsing, the option-table parser, the --data
 * spec check, small utilities and the one-line JSON writer. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- messages ------------------------------------------------------------ */

/* The subcommand whose --help a usage error points to (NULL: the top level). */
const char *g_command;

/* Where error messages go (NULL: stderr); the fuzz target sends them away. */
FILE *cli_err;

FILE *cli_err_file(void)
{
    return cli_err ? cli_err : stderr;
}

/* Every error is exactly one line: control characters that a file name or an
 * argument could smuggle in are shown as '?'. */
static char last_message[1024];
static char rank_prefix[48];

const char *last_error_message(void) { return last_message; }

void set_error_prefix(int rank, int size)
{
    snprintf(rank_prefix, sizeof rank_prefix, "rank %d of %d: ", rank, size);
}

/* A message longer than the buffer keeps its beginning and its reason: the
 * middle of the long value in it (a path, an architecture) is elided
 * (fm_fit_text). It is formatted apart from last_message, which may be one
 * of the arguments. */
static void print_error_line(const char *hint, const char *fmt, va_list args)
{
    char *message = last_message, text[sizeof last_message];
    va_list again;
    va_copy(again, args);
    int n = vsnprintf(text, sizeof text, fmt, args);
    char *whole = n >= (int)sizeof text ? malloc((size_t)n + 1) : NULL;
    if (whole)
        vsnprintf(whole, (size_t)n + 1, fmt, again);
    va_end(again);
    fm_fit_text(message, sizeof last_message, whole ? whole : n >= 0 ? text : fmt);
    free(whole);
    for (char *c = message; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    fflush(stdout);
    if (hint)
        fprintf(cli_err_file(), "fewmul: error: %s%s (%s)\n", rank_prefix, message, hint);
    else
        fprintf(cli_err_file(), "fewmul: error: %s%s\n", rank_prefix, message);
}

/* A value as a message echoes it: whole up to 123 bytes, else its first and
 * last 60 with "..." between (fm_fit_text). The last 4 results stay valid. */
const char *elided(const char *value)
{
    static char slots[4][124];
    static int next;
    char *slot = slots[next++ % 4];
    fm_fit_text(slot, sizeof slots[0], value ? value : "");
    return slot;
}

/* A mistake on the command line: exit status 2 and a pointer to the help. */
int usage_error(const char *fmt, ...)
{
    char hint[64];
    if (g_command)
        snprintf(hint, sizeof hint, "try 'fewmul %s --help'", g_command);
    else
        snprintf(hint, sizeof hint, "try 'fewmul --help'");
    va_list args;
    va_start(args, fmt);
    print_error_line(hint, fmt, args);
    va_end(args);
    return CLI_USAGE;
}

int exit_status_of(int err)
{
    switch (err) {
    case FM_ENOENT:
        return CLI_NOT_FOUND;
    case FM_EFORMAT:
    case FM_ETRUNC:
    case FM_EMISMATCH:
    case FM_EUNSUPPORTED:
        return CLI_BAD_INPUT;
    case FM_EIO:
        return CLI_IO;
    case FM_ENOMEM:
        return CLI_NO_MEMORY;
    case FM_EPEER:
        return CLI_PEER;
    default:
        return CLI_FAIL;
    }
}

int failure(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    print_error_line(NULL, fmt, args);
    va_end(args);
    return CLI_FAIL;
}

int failure_as(int err, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    print_error_line(NULL, fmt, args);
    va_end(args);
    return exit_status_of(err);
}

int library_failure(void)
{
    return failure_as(fm_last_error_code(), "%s", fm_last_error());
}

void print_lines(FILE *f, const char *const *lines)
{
    for (; *lines; lines++)
        fprintf(f, "%s\n", *lines);
}

/* ---- strict numbers ------------------------------------------------------ */

/* strtol and friends skip leading white space and stop at the first stray
 * character; a command line value must be a number and nothing else. */
static int starts_badly(const char *s)
{
    return *s == '\0' || isspace((unsigned char)*s);
}

num_status parse_long(const char *s, long *out)
{
    if (starts_badly(s))
        return NUM_SYNTAX;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end)
        return NUM_SYNTAX;
    if (errno == ERANGE)
        return NUM_RANGE;
    *out = v;
    return NUM_OK;
}

/* strtoull accepts "-1" and wraps it: a seed never starts with '-'. */
static num_status parse_u64(const char *s, uint64_t *out)
{
    if (starts_badly(s) || *s == '-')
        return NUM_SYNTAX;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end)
        return NUM_SYNTAX;
    if (errno == ERANGE || v > UINT64_MAX)
        return NUM_RANGE;
    *out = (uint64_t)v;
    return NUM_OK;
}

/* Overflow and underflow both count as out of range; nan and inf parse but are
 * never a sensible rate or probability. */
static num_status parse_double(const char *s, double *out)
{
    if (starts_badly(s))
        return NUM_SYNTAX;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end)
        return NUM_SYNTAX;
    if (errno == ERANGE || !isfinite(v))
        return NUM_RANGE;
    *out = v;
    return NUM_OK;
}

/* ---- the option table ---------------------------------------------------- */

static arg_kind option_arg(const option_def *d)
{
    if (d->type == T_CUSTOM)
        return d->arg;
    return d->type == T_FLAG ? ARG_NONE : ARG_REQUIRED;
}

static int out_of_range(const option_def *d, const char *value);

static int bad_number(const option_def *d, const char *value, num_status st)
{
    if (st == NUM_SYNTAX)
        return usage_error("--%s: '%s' is not %s", d->name, value,
                           d->type == T_DOUBLE ? "a number"
                           : d->type == T_U64  ? "a non-negative integer"
                                               : "an integer");
    if (d->type == T_U64)
        return usage_error("--%s: %s is out of range (must be at most %llu)", d->name, value,
                           (unsigned long long)UINT64_MAX);
    return out_of_range(d, value);
}

/* "between 1 and 1000000", "> 0", "in [0, 1)": the range as a reader says it. */
static void describe_range(const option_def *d, char *buf, size_t cap)
{
    if (d->type == T_INT || d->type == T_U64) {
        if (d->hi >= (double)INT_MAX)
            snprintf(buf, cap, ">= %.0f", d->lo);
        else
            snprintf(buf, cap, "between %.0f and %.0f", d->lo, d->hi);
    } else if (isinf(d->hi)) {
        snprintf(buf, cap, "%s %g", (d->flags & LO_OPEN) ? ">" : ">=", d->lo);
    } else {
        snprintf(buf, cap, "in %c%g, %g%c", (d->flags & LO_OPEN) ? '(' : '[', d->lo, d->hi,
                 (d->flags & HI_OPEN) ? ')' : ']');
    }
}

static int in_range(const option_def *d, double v)
{
    int lo_ok = (d->flags & LO_OPEN) ? v > d->lo : v >= d->lo;
    int hi_ok = (d->flags & HI_OPEN) ? v < d->hi : v <= d->hi;
    return lo_ok && hi_ok;
}

static int out_of_range(const option_def *d, const char *value)
{
    char range[96];
    describe_range(d, range, sizeof range);
    return usage_error("--%s: %s is out of range (must be %s)", d->name, value, range);
}

/* AS_FLOAT: the value as the library uses it, a 32-bit float: finite, a
 * nonzero value not flushed to 0 or below the normal range (where it keeps
 * only a few bits), and still in the option's range once rounded. */
static int check_as_float(const option_def *d, const char *value, double v)
{
    static const char why[] = "a 32-bit float, the type training computes with";
    char range[96];
    describe_range(d, range, sizeof range);
    if (fabs(v) > FLT_MAX)
        return usage_error("--%s: %s is too large for %s (at most %g)", d->name, value, why,
                           (double)FLT_MAX);
    const float f = (float)v;
    if (v != 0.0 && fabsf(f) < FLT_MIN)
        return usage_error("--%s: %s becomes %g as %s (nonzero values must be at least %g)",
                           d->name, value, (double)f, why, (double)FLT_MIN);
    if (!in_range(d, (double)f))
        return usage_error("--%s: %s becomes %.9g as %s (must be %s)", d->name, value, (double)f,
                           why, range);
    return 0;
}

int option_set_double(const option_def *d, double *field, const char *value)
{
    double v = 0;
    num_status st;
    int rc;
    if ((st = parse_double(value, &v)) != NUM_OK) {
        if (st == NUM_RANGE)
            return usage_error("--%s: '%s' is not a finite number", d->name, value);
        return bad_number(d, value, st);
    }
    if (!in_range(d, v))
        return out_of_range(d, value);
    if ((d->flags & AS_FLOAT) && (rc = check_as_float(d, value, v)) != 0)
        return rc;
    *field = v;
    return 0;
}

static int set_choice(const option_def *d, int *field, const char *value)
{
    char names[256] = "";
    for (const choice *c = d->choices; c->name; c++) {
        if (strcmp(c->name, value) == 0) {
            *field = c->value;
            return 0;
        }
        if (names[0])
            strncat(names, "|", sizeof names - strlen(names) - 1);
        strncat(names, c->name, sizeof names - strlen(names) - 1);
    }
    return usage_error("--%s: unknown value '%s' (expected %s)", d->name, value, names);
}

/* Stores one option's value into opts after checking it. */
static int set_option(const option_def *d, void *opts, const char *value)
{
    char *field = (char *)opts + d->offset;
    num_status st;
    switch (d->type) {
    case T_FLAG:
        *(int *)field = 1;
        return 0;
    case T_STRING:
        *(const char **)field = value;
        return 0;
    case T_CHOICE:
        return set_choice(d, (int *)field, value);
    case T_CUSTOM:
        return d->custom(opts, value);
    case T_INT: {
        long v = 0;
        if ((st = parse_long(value, &v)) != NUM_OK)
            return bad_number(d, value, st);
        if (!in_range(d, (double)v))
            return out_of_range(d, value);
        *(int *)field = (int)v;
        return 0;
    }
    case T_U64: {
        uint64_t v = 0;
        if ((st = parse_u64(value, &v)) != NUM_OK)
            return bad_number(d, value, st);
        *(uint64_t *)field = v;
        return 0;
    }
    case T_DOUBLE:
        return option_set_double(d, (double *)field, value);
    }
    return usage_error("--%s: internal error: bad option type", d->name);
}

static const option_def *find_option(const option_def *table, const char *name, size_t len)
{
    for (const option_def *d = table; d->name; d++)
        if (strlen(d->name) == len && strncmp(d->name, name, len) == 0)
            return d;
    return NULL;
}

/* Parses argv[first..argc) against table into opts. Returns 0, or CLI_USAGE
 * after printing the one error line. `help` is set on -h/--help, which ends
 * parsing at once so that help works whatever else is on the line. When
 * `positional` is not NULL, one argument that is not an option (a FILE, as in
 * `fewmul info FILE`) is stored there, wherever it stands on the line. */
int parse_options(const option_def *table, void *opts, int *help, int argc, char **argv,
                  int first, const char **positional)
{
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            *help = 1;
            return 0;
        }
        if (positional && strncmp(arg, "--", 2) != 0 && arg[0] != '\0' && !*positional) {
            *positional = arg;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return usage_error("unexpected argument '%s'", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const option_def *d = find_option(table, name, len);
        if (!d)
            return usage_error("unknown option '--%.*s'", (int)len, name);
        const char *value = eq ? eq + 1 : NULL;
        arg_kind kind = option_arg(d);
        if (kind == ARG_NONE && value)
            return usage_error("option '--%s' takes no value", d->name);
        /* An optional value is only ever attached with '=' ("--qb=-4:3"), so
         * "--qb --epochs 3" never swallows the next option. A required value
         * may follow as the next argument, unless that is another option. */
        if (kind == ARG_REQUIRED && !value) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return usage_error("option '--%s' needs a value", d->name);
            value = argv[++i];
        }
        if (kind == ARG_OPTIONAL && !value && i + 1 < argc &&
            strncmp(argv[i + 1], "--", 2) != 0 && strcmp(argv[i + 1], "-h") != 0)
            return usage_error("option '--%s' takes its value as '--%s=%s'", d->name, d->name,
                               argv[i + 1]);
        if (value && value[0] == '\0')
            return usage_error("option '--%s' needs a non-empty value", d->name);
        int rc = set_option(d, opts, value);
        if (rc)
            return rc;
    }
    return 0;
}

/* The forms fm_data_load accepts (fewmul.h); checked here so that a mistyped
 * spec is a usage error, while a missing or broken folder is a failure. */
int check_data_spec(const char *spec)
{
    if (fm_data_kind_of(spec, NULL) != FM_OK)
        return usage_error("--data: %s", fm_last_error());
    return 0;
}

/* ---- small utilities ----------------------------------------------------- */

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int threads_reported(int requested)
{
    static int told;
    int wanted;
    const int usable = fm_threads_usable(requested, &wanted);
    if (usable < wanted && !told) {
        told = 1;
        fprintf(stderr,
                "fewmul %s: warning: running on %d thread%s of the %d asked for: a process or "
                "memory limit, or OMP_THREAD_LIMIT, leaves no room for more\n",
                g_command ? g_command : "", usable, usable == 1 ? "" : "s", wanted);
    }
    return usable;
}

const char *choice_name(const choice *choices, int value)
{
    for (const choice *c = choices; c->name; c++)
        if (c->value == value)
            return c->name;
    return "?";
}

/* Appends formatted text to buf (capacity cap, current length *len). */
void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len >= cap)
        return;
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, args);
    va_end(args);
    if (n > 0)
        *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

/* Highest label + 1 over a set (0 when the set is empty or absent). */
int classes_in(const fm_images *images)
{
    int top = -1;
    if (!images || !images->labels)
        return 0;
    for (int32_t i = 0; i < images->count; i++)
        if (images->labels[i] > top)
            top = images->labels[i];
    return top + 1;
}

/* height*width*channels, or -1 when it does not fit in an int. */
int input_dim_of(const fm_images *images)
{
    long long dim = (long long)images->height * images->width * images->channels;
    return dim > 0 && dim <= INT_MAX ? (int)dim : -1;
}

/* "8 KiB", "3.1 MiB", "512 B". */
const char *fmt_size(char *buf, size_t cap, uint64_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int i = 0;
    double v = (double)n;
    while (v >= 1024 && i < 6) {
        v /= 1024;
        i++;
    }
    if (i == 0 || v == floor(v))
        snprintf(buf, cap, "%.0f %s", v, units[i]);
    else
        snprintf(buf, cap, "%.1f %s", v, units[i]);
    return buf;
}

/* ---- JSON output --------------------------------------------------------- */

/* The length of the valid UTF-8 sequence at s, or 0 when it is not one. */
static int utf8_length(const unsigned char *s)
{
    int n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
          : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 2 && s[0] < 0xc2)
        return 0; /* overlong */
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* A JSON string: quotes, backslashes and control characters escaped, and any
 * byte that is not valid UTF-8 (a user's table file) replaced by U+FFFD. */
static void json_put_string(FILE *f, const char *value)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)value; *c;) {
        int n = utf8_length(c);
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f)
            fprintf(f, "\\u%04x", *c);
        else if (n > 1) {
            fwrite(c, 1, (size_t)n, f);
            c += n;
            continue;
        } else if (n == 0)
            fputs("\\ufffd", f);
        else
            fputc(*c, f);
        c++;
    }
    fputc('"', f);
}

void json_begin(json_writer *w, FILE *f)
{
    w->f = f;
    w->depth = 0;
    w->items[0] = 0;
    fputc('{', f);
}

/* The separator and, inside an object, the key (NULL inside an array). */
static void json_key(json_writer *w, const char *key)
{
    if (w->items[w->depth]++)
        fputs(", ", w->f);
    if (key) {
        json_put_string(w->f, key);
        fputs(": ", w->f);
    }
}

/* Opens an object ('{') or array ('[') as the value of key. */
void json_open(json_writer *w, const char *key, char bracket)
{
    json_key(w, key);
    fputc(bracket, w->f);
    if (w->depth + 1 < JSON_MAX_DEPTH)
        w->items[++w->depth] = 0;
}

void json_close(json_writer *w, char bracket)
{
    fputc(bracket, w->f);
    if (w->depth > 0)
        w->depth--;
}

void json_string(json_writer *w, const char *key, const char *value)
{
    json_key(w, key);
    if (!value)
        fputs("null", w->f);
    else
        json_put_string(w->f, value);
}

/* JSON has no nan or inf: a diverged loss is written as null. */
void json_number(json_writer *w, const char *key, double value)
{
    json_key(w, key);
    if (isfinite(value))
        fprintf(w->f, "%.10g", value);
    else
        fputs("null", w->f);
}

/* Percentages the library reports as -1 when not measured. */
void json_pct(json_writer *w, const char *key, double value)
{
    if (value < 0)
        value = NAN;
    json_number(w, key, value);
}

void json_int(json_writer *w, const char *key, long long value)
{
    json_key(w, key);
    fprintf(w->f, "%lld", value);
}

void json_uint(json_writer *w, const char *key, unsigned long long value)
{
    json_key(w, key);
    fprintf(w->f, "%llu", value);
}

void json_u64(json_writer *w, const char *key, uint64_t value)
{
    json_key(w, key);
    fprintf(w->f, "%" PRIu64, value);
}

void json_bool(json_writer *w, const char *key, int value)
{
    json_key(w, key);
    fputs(value ? "true" : "false", w->f);
}

void json_null(json_writer *w, const char *key)
{
    json_key(w, key);
    fputs("null", w->f);
}

void json_end(json_writer *w)
{
    fputs("}\n", w->f);
}
