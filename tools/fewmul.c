/* fewmul.c — the `fewmul` command: `fewmul train` trains a network with binary,
 * ternary, synapse-like or full-precision weights and optional quantized
 * back-propagation; `fewmul eval` measures a saved model's error. It uses only
 * the public header fewmul.h. Exit status: 0 ok, 1 failure, 2 usage error,
 * 130 interrupted (docs/cli.md, docs/fewmul.1). */
#define _POSIX_C_SOURCE 200809L

#include "fewmul.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_INTERRUPTED = 130 };

/* ---- messages ------------------------------------------------------------ */

/* The subcommand whose --help a usage error points to (NULL: the top level). */
static const char *g_command;

/* Every error is exactly one line: control characters that a file name or an
 * argument could smuggle in are shown as '?'. */
static void print_error_line(const char *hint, const char *fmt, va_list args)
{
    char message[1024];
    vsnprintf(message, sizeof message, fmt, args);
    for (char *c = message; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    fflush(stdout);
    if (hint)
        fprintf(stderr, "fewmul: error: %s (%s)\n", message, hint);
    else
        fprintf(stderr, "fewmul: error: %s\n", message);
}

/* A mistake on the command line: exit status 2 and a pointer to the help. */
static int usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
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

/* A failure at run time (data, files, the library): exit status 1. */
static int failure(const char *fmt, ...) CLI_PRINTF(1, 2);
static int failure(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    print_error_line(NULL, fmt, args);
    va_end(args);
    return CLI_FAIL;
}

static int library_failure(void)
{
    return failure("%s", fm_last_error());
}

static void print_lines(FILE *f, const char *const *lines)
{
    for (; *lines; lines++)
        fprintf(f, "%s\n", *lines);
}

/* ---- help texts (arrays of lines: no string literal is too long for C11) -- */

static const char *const main_help[] = {
    "fewmul " FM_VERSION_STRING " - train neural networks with few multiplications",
    "",
    "Usage:",
    "  fewmul train [OPTIONS]              train a network, report its test error",
    "  fewmul eval --model FILE [OPTIONS]  measure the error of a saved model",
    "  fewmul help [COMMAND]               show the help of a command",
    "  fewmul --version                    print the version",
    "",
    "Binary and ternary weights (BinaryConnect, TernaryConnect) turn the forward",
    "pass's multiplications into sign changes; quantized back-propagation (--qb)",
    "turns those of the weight gradient into shifts. After Lin, Courbariaux,",
    "Memisevic, Bengio, \"Neural Networks with Few Multiplications\", ICLR 2016.",
    "",
    "Exit status:",
    "  0    success",
    "  1    failure: unreadable or malformed data or model file, I/O error",
    "  2    usage error: unknown command or option, bad value",
    "  130  interrupted (Ctrl-C)",
    "",
    "Run 'fewmul help train', 'fewmul help eval' or 'man fewmul' for details.",
    NULL};

static const char *const train_help[] = {
    "Usage: fewmul train [OPTIONS]",
    "",
    "Train a network on a training set, keeping its last --valid images for",
    "validation, and report the test error at the epoch of best validation",
    "error. Options take their value as '--opt VALUE' or '--opt=VALUE'.",
    "",
    "Data and model:",
    "  --data SPEC        fashion (default): Fashion-MNIST from Debian's",
    "                     dataset-fashion-mnist (" FM_FASHION_DIR ");",
    "                     mnist:DIR or idx:DIR: a folder with train-images-idx3-ubyte,",
    "                     train-labels-idx1-ubyte, t10k-images-idx3-ubyte,",
    "                     t10k-labels-idx1-ubyte, raw or gzip-compressed (.gz)",
    "  --arch ARCH        paper-mlp (default): 784-1024-1024-1024-10 with batch norm",
    "                     after every layer; mlp:H1,H2,...: those hidden widths",
    "  --out FILE         save the trained model (the best validation epoch's)",
    "",
    "Weights and quantization:",
    "  --weights MODE     fp32 (default): full precision",
    "                     bc, bc-det: binary (BinaryConnect), stochastic or",
    "                       deterministic",
    "                     tc, tc-det: ternary (TernaryConnect), stochastic or",
    "                       deterministic",
    "                     synapse[:N]: N log-spaced magnitudes with sign,",
    "                       stochastic rounding (default N 26)",
    "  --synapse-range R  largest/smallest synapse magnitude, R > 1 (default 60)",
    "  --scale glorot|one weight scale H of binary/ternary values and of the clip",
    "                     box: glorot (default) H = sqrt(6/(fan_in+fan_out))/2, or 1",
    "  --qb[=EMIN:EMAX]   quantized back-prop: the layer inputs used in the weight",
    "                     gradient are rounded stochastically to signed powers of",
    "                     two; EMIN:EMAX clips the exponent (integers, EMIN <= EMAX,",
    "                     each in -126..126); plain --qb leaves it unbounded",
    "  --qb-bn-jacobian   with --qb, use the exact pre-batch-norm error for a",
    "                     layer's weight gradient (default: the error at the batch",
    "                     norm's output, as the authors' code)",
    "  --test-weights real|quantized",
    "                     evaluate stochastic modes with the real weights (default,",
    "                     the paper) or with deterministic quantized weights",
    "",
    "Training:",
    "  --epochs N         epochs, 1..1000000 (default 20)",
    "  --batch B          minibatch size, 1..65536 (default 200)",
    "  --opt sgd|adam     optimizer (default sgd)",
    "  --lr X             initial learning rate, > 0 (default sgd 0.3, adam 0.003)",
    "  --lr-final X       rate after the last epoch, > 0, reached by exponential",
    "                     decay per epoch (default sgd 0.01, adam 2e-6)",
    "  --momentum X       SGD momentum, 0 <= X < 1 (default 0)",
    "  --loss hinge|xent  squared hinge summed over classes (default) or softmax",
    "                     cross-entropy",
    "  --preproc center|unit",
    "                     x/255 minus the training images' per-pixel mean",
    "                     (default), or x/255 in [0,1]",
    "  --dropout P        drop probability of hidden units, 0 <= P < 1 (default 0)",
    "  --bn-stats paper|running",
    "                     batch-norm inference statistics: recomputed after each",
    "                     epoch as the authors' code (default), or moving averages",
    "  --valid N          validation images taken from the end of the training",
    "                     set, N >= 0 (default 10000; 0: none)",
    "  --train-limit N    use only the first N remaining training images (0: all)",
    "  --seed S           random seed, 0..18446744073709551615 (default 1234)",
    "  --threads T        worker threads, 1..1024 (default: all cores)",
    "",
    "Evaluation:",
    "  --eval-every N     measure validation and test error every N epochs and",
    "                     after the last, N >= 1 (default 1)",
    "  --no-eval          measure no validation or test error (benchmarks)",
    "",
    "Output:",
    "  --log FILE         write one JSON object per epoch to FILE (JSON Lines;",
    "                     the file is truncated first and flushed every epoch)",
    "  --json             print the result as one JSON object, the last line of",
    "                     standard output, instead of the human summary",
    "  --quiet            no progress bar and no per-epoch lines",
    "  -h, --help         show this help",
    "",
    "Unless --quiet, each epoch prints a line on standard error, and a progress",
    "bar is drawn while standard error is a terminal:",
    "  epoch 3/20  loss 0.1234  train 2.10%  valid 1.90%  test 2.00%  best 1.90%@3",
    "  lr 0.2800  8.2 s  6100 img/s",
    "Ctrl-C stops training at the next minibatch; fewmul then prints",
    "'interrupted' and exits with status 130 without saving.",
    "",
    "JSON keys: test_error_pct, valid_error_pct, best_epoch, epochs,",
    "train_seconds, train_images_per_s, total_seconds, final_train_loss, arch,",
    "model, weights, synapse_levels, qb, qb_emin, qb_emax, batch, seed, threads,",
    "params, data, lr, lr_final, opt, out (null when absent or not measured).",
    "",
    "Exit status: 0 success; 1 failure (data, model file, I/O, library);",
    "2 usage error (bad option or value); 130 interrupted.",
    "",
    "Examples:",
    "  fewmul train --weights bc --qb --epochs 50 --out bc-qb.fm",
    "  fewmul train --data mnist:/data/mnist --arch mlp:512,512 --opt adam --json",
    NULL};

static const char *const eval_help[] = {
    "Usage: fewmul eval --model FILE [OPTIONS]",
    "",
    "Load a model saved by 'fewmul train --out' and print its classification",
    "error on a data set, with the preprocessing stored in the model.",
    "Options take their value as '--opt VALUE' or '--opt=VALUE'.",
    "",
    "  --model FILE       the model file (required)",
    "  --data SPEC        fashion (default), mnist:DIR or idx:DIR, as for train;",
    "                     the images must have the model's input size",
    "  --set test|train   which set of the data to measure (default test)",
    "  --threads T        worker threads, 1..1024 (default: all cores)",
    "  --json             print the result as one JSON object, the last line of",
    "                     standard output, with the keys error_pct, images,",
    "                     model, data, set, seconds, threads",
    "  -h, --help         show this help",
    "",
    "Exit status: 0 success; 1 failure (model or data file, size mismatch);",
    "2 usage error (bad option or value).",
    NULL};

/* ---- strict numbers ------------------------------------------------------ */

typedef enum { NUM_OK, NUM_SYNTAX, NUM_RANGE } num_status;

/* strtol and friends skip leading white space and stop at the first stray
 * character; a command line value must be a number and nothing else. */
static int starts_badly(const char *s)
{
    return *s == '\0' || isspace((unsigned char)*s);
}

static num_status parse_long(const char *s, long *out)
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

typedef enum { T_FLAG, T_INT, T_U64, T_DOUBLE, T_STRING, T_CHOICE, T_CUSTOM } value_type;
typedef enum { ARG_NONE, ARG_REQUIRED, ARG_OPTIONAL } arg_kind;
enum { LO_OPEN = 1, HI_OPEN = 2 }; /* range bounds excluded (T_DOUBLE) */

typedef struct choice {
    const char *name;
    int value;
} choice;

typedef struct option_def {
    const char *name;     /* without the leading "--" */
    value_type type;
    size_t offset;        /* of the field set, in the command's options struct */
    double lo, hi;        /* inclusive range of T_INT and T_DOUBLE, unless flags */
    unsigned flags;
    const choice *choices; /* T_CHOICE, ends with a NULL name */
    arg_kind arg;         /* T_CUSTOM only; the others follow from the type */
    /* T_CUSTOM: value is NULL when an optional value is absent; returns 0 or
     * CLI_USAGE after printing the error. */
    int (*custom)(void *opts, const char *value);
} option_def;

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
    case T_DOUBLE: {
        double v = 0;
        if ((st = parse_double(value, &v)) != NUM_OK) {
            if (st == NUM_RANGE)
                return usage_error("--%s: '%s' is not a finite number", d->name, value);
            return bad_number(d, value, st);
        }
        if (!in_range(d, v))
            return out_of_range(d, value);
        *(double *)field = v;
        return 0;
    }
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
 * parsing at once so that help works whatever else is on the line. */
static int parse_options(const option_def *table, void *opts, int *help, int argc,
                         char **argv, int first)
{
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            *help = 1;
            return 0;
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
static int check_data_spec(const char *spec)
{
    if (strcmp(spec, "fashion") == 0)
        return 0;
    if ((strncmp(spec, "mnist:", 6) == 0 && spec[6]) || (strncmp(spec, "idx:", 4) == 0 && spec[4]))
        return 0;
    return usage_error("--data: unknown data set '%s' (expected fashion, mnist:DIR or idx:DIR)",
                       spec);
}

/* ---- train: options ------------------------------------------------------ */

typedef struct train_opts {
    fm_config cfg;
    const char *data, *out, *log;
    /* Enumerations are parsed as int and copied into cfg afterwards, since
     * the size of an enum type is the compiler's choice. */
    int opt, loss, preproc, bn_stats, scale, test_quantized;
    int json, quiet, help;
} train_opts;

static const choice opt_choices[] = {{"sgd", FM_OPT_SGD}, {"adam", FM_OPT_ADAM}, {NULL, 0}};
static const choice loss_choices[] = {{"hinge", FM_LOSS_HINGE}, {"xent", FM_LOSS_XENT}, {NULL, 0}};
static const choice preproc_choices[] = {{"center", FM_PRE_CENTER}, {"unit", FM_PRE_UNIT}, {NULL, 0}};
static const choice bn_choices[] = {{"paper", FM_BN_PAPER}, {"running", FM_BN_RUNNING}, {NULL, 0}};
static const choice scale_choices[] = {{"glorot", FM_SCALE_GLOROT}, {"one", FM_SCALE_ONE}, {NULL, 0}};
static const choice test_weight_choices[] = {{"real", 0}, {"quantized", 1}, {NULL, 0}};

static int set_weights(void *opts, const char *value)
{
    train_opts *o = opts;
    if (fm_parse_weights(value, &o->cfg) != FM_OK)
        return usage_error("--weights: %s", fm_last_error());
    return 0;
}

/* "--qb" alone: unbounded exponents; "--qb=EMIN:EMAX": the clip range. */
static int set_qb(void *opts, const char *value)
{
    train_opts *o = opts;
    o->cfg.qb = 1;
    o->cfg.qb_emin = o->cfg.qb_emax = FM_QB_UNBOUNDED;
    if (!value)
        return 0;
    const char *colon = strchr(value, ':');
    char emin_text[32];
    size_t len = colon ? (size_t)(colon - value) : 0;
    if (!colon || len >= sizeof emin_text)
        return usage_error("--qb: '%s' is not EMIN:EMAX (e.g. --qb=-4:3)", value);
    memcpy(emin_text, value, len);
    emin_text[len] = '\0';
    long emin = 0, emax = 0;
    if (parse_long(emin_text, &emin) != NUM_OK || parse_long(colon + 1, &emax) != NUM_OK)
        return usage_error("--qb: '%s' is not EMIN:EMAX with integer exponents", value);
    if (emin < -126 || emin > 126 || emax < -126 || emax > 126)
        return usage_error("--qb: exponents of '%s' must lie in -126..126", value);
    if (emin > emax)
        return usage_error("--qb: EMIN %ld is greater than EMAX %ld", emin, emax);
    o->cfg.qb_emin = (int)emin;
    o->cfg.qb_emax = (int)emax;
    return 0;
}

#define TOPT(field) offsetof(train_opts, field)
static const option_def train_options[] = {
    {"data", T_STRING, TOPT(data), 0, 0, 0, NULL, 0, NULL},
    {"arch", T_STRING, TOPT(cfg.arch), 0, 0, 0, NULL, 0, NULL},
    {"out", T_STRING, TOPT(out), 0, 0, 0, NULL, 0, NULL},
    {"weights", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_weights},
    {"synapse-range", T_DOUBLE, TOPT(cfg.synapse_range), 1, INFINITY, LO_OPEN, NULL, 0, NULL},
    {"scale", T_CHOICE, TOPT(scale), 0, 0, 0, scale_choices, 0, NULL},
    {"qb", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_OPTIONAL, set_qb},
    {"qb-bn-jacobian", T_FLAG, TOPT(cfg.qb_bn_jacobian), 0, 0, 0, NULL, 0, NULL},
    {"test-weights", T_CHOICE, TOPT(test_quantized), 0, 0, 0, test_weight_choices, 0, NULL},
    {"epochs", T_INT, TOPT(cfg.epochs), 1, 1000000, 0, NULL, 0, NULL},
    {"batch", T_INT, TOPT(cfg.batch), 1, 65536, 0, NULL, 0, NULL},
    {"opt", T_CHOICE, TOPT(opt), 0, 0, 0, opt_choices, 0, NULL},
    {"lr", T_DOUBLE, TOPT(cfg.lr), 0, INFINITY, LO_OPEN, NULL, 0, NULL},
    {"lr-final", T_DOUBLE, TOPT(cfg.lr_final), 0, INFINITY, LO_OPEN, NULL, 0, NULL},
    {"momentum", T_DOUBLE, TOPT(cfg.momentum), 0, 1, HI_OPEN, NULL, 0, NULL},
    {"loss", T_CHOICE, TOPT(loss), 0, 0, 0, loss_choices, 0, NULL},
    {"preproc", T_CHOICE, TOPT(preproc), 0, 0, 0, preproc_choices, 0, NULL},
    {"dropout", T_DOUBLE, TOPT(cfg.dropout), 0, 1, HI_OPEN, NULL, 0, NULL},
    {"bn-stats", T_CHOICE, TOPT(bn_stats), 0, 0, 0, bn_choices, 0, NULL},
    {"valid", T_INT, TOPT(cfg.valid), 0, INT_MAX, 0, NULL, 0, NULL},
    {"train-limit", T_INT, TOPT(cfg.train_limit), 0, INT_MAX, 0, NULL, 0, NULL},
    {"seed", T_U64, TOPT(cfg.seed), 0, 0, 0, NULL, 0, NULL},
    {"threads", T_INT, TOPT(cfg.threads), 1, 1024, 0, NULL, 0, NULL},
    {"eval-every", T_INT, TOPT(cfg.eval_every), 1, 1000000, 0, NULL, 0, NULL},
    {"no-eval", T_FLAG, TOPT(cfg.no_eval), 0, 0, 0, NULL, 0, NULL},
    {"log", T_STRING, TOPT(log), 0, 0, 0, NULL, 0, NULL},
    {"json", T_FLAG, TOPT(json), 0, 0, 0, NULL, 0, NULL},
    {"quiet", T_FLAG, TOPT(quiet), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef TOPT

static void train_opts_default(train_opts *o)
{
    memset(o, 0, sizeof *o);
    fm_config_default(&o->cfg);
    o->data = "fashion";
    o->opt = (int)o->cfg.opt;
    o->loss = (int)o->cfg.loss;
    o->preproc = (int)o->cfg.preproc;
    o->bn_stats = (int)o->cfg.bn_stats;
    o->scale = (int)o->cfg.scale;
    o->test_quantized = o->cfg.test_quantized;
}

/* Copies the parsed enumerations into the config and resolves the default
 * learning rates, so that what is reported is what is used. */
static void train_opts_finish(train_opts *o)
{
    fm_config *c = &o->cfg;
    c->opt = (fm_optimizer)o->opt;
    c->loss = (fm_loss)o->loss;
    c->preproc = (fm_preproc)o->preproc;
    c->bn_stats = (fm_bn_stats)o->bn_stats;
    c->scale = (fm_scale)o->scale;
    c->test_quantized = o->test_quantized;
    /* resolve the optimizer's defaults so the reports show the rates used */
    fm_config_learning_rates(c, &c->lr, &c->lr_final);
}

/* ---- small utilities ----------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The thread count to report: the requested one, or the cores online. */
static int threads_reported(int requested)
{
    if (requested > 0)
        return requested;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n <= INT_MAX ? (int)n : 1;
}

static const char *choice_name(const choice *choices, int value)
{
    for (const choice *c = choices; c->name; c++)
        if (c->value == value)
            return c->name;
    return "?";
}

/* Appends formatted text to buf (capacity cap, current length *len). */
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...) CLI_PRINTF(4, 5);
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
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
static int classes_in(const fm_images *images)
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
static int input_dim_of(const fm_images *images)
{
    long long dim = (long long)images->height * images->width * images->channels;
    return dim > 0 && dim <= INT_MAX ? (int)dim : -1;
}

/* ---- JSON output --------------------------------------------------------- */

typedef struct json_writer {
    FILE *f;
    int items;
} json_writer;

static void json_begin(json_writer *w, FILE *f)
{
    w->f = f;
    w->items = 0;
    fputc('{', f);
}

static void json_key(json_writer *w, const char *key)
{
    fprintf(w->f, "%s\"%s\": ", w->items++ ? ", " : "", key);
}

static void json_string(json_writer *w, const char *key, const char *value)
{
    json_key(w, key);
    if (!value) {
        fputs("null", w->f);
        return;
    }
    fputc('"', w->f);
    for (const unsigned char *c = (const unsigned char *)value; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(w->f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(w->f, "\\u%04x", *c);
        else
            fputc(*c, w->f);
    }
    fputc('"', w->f);
}

/* JSON has no nan or inf: a diverged loss is written as null. */
static void json_number(json_writer *w, const char *key, double value)
{
    json_key(w, key);
    if (isfinite(value))
        fprintf(w->f, "%.10g", value);
    else
        fputs("null", w->f);
}

/* Percentages the library reports as -1 when not measured. */
static void json_pct(json_writer *w, const char *key, double value)
{
    if (value < 0)
        value = NAN;
    json_number(w, key, value);
}

static void json_int(json_writer *w, const char *key, long long value)
{
    json_key(w, key);
    fprintf(w->f, "%lld", value);
}

static void json_uint(json_writer *w, const char *key, unsigned long long value)
{
    json_key(w, key);
    fprintf(w->f, "%llu", value);
}

static void json_bool(json_writer *w, const char *key, int value)
{
    json_key(w, key);
    fputs(value ? "true" : "false", w->f);
}

static void json_null(json_writer *w, const char *key)
{
    json_key(w, key);
    fputs("null", w->f);
}

static void json_end(json_writer *w)
{
    fputs("}\n", w->f);
}

/* ---- train: progress, epochs, interruption ------------------------------- */

/* Set by SIGINT, polled by fm_callbacks.should_stop at every minibatch. */
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

/* SA_RESETHAND: a second Ctrl-C kills at once if the first goes unanswered. */
static void install_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = (int)SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
}

typedef struct run_state {
    const train_opts *o;
    FILE *log;
    int log_errno;       /* nonzero once writing the log failed: training stops */
    int bar;             /* draw the progress bar */
    int bar_drawn;       /* characters of the bar now on screen */
    double last_draw;
    double best_valid;   /* best validation error so far, -1 before any */
} run_state;

static void bar_clear(run_state *st)
{
    if (st->bar_drawn > 0) {
        fprintf(stderr, "\r%*s\r", st->bar_drawn, "");
        fflush(stderr);
        st->bar_drawn = 0;
    }
}

static void format_duration(char *buf, size_t cap, double s)
{
    long t = s < 0 ? 0 : s > 1e8 ? 100000000L : (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, cap, "%lds", t);
}

/* "epoch 3/20 [#########.........] 45%  6123 img/s  loss 0.1234  ETA 1m23s";
 * the ETA is for the whole run, from the time and images so far. */
static void on_progress(const fm_progress *p, void *user)
{
    run_state *st = user;
    if (!st->bar || p->images_total <= 0)
        return;
    double now = now_seconds();
    if (now - st->last_draw < 0.1)
        return;
    st->last_draw = now;

    enum { WIDTH = 20 };
    double frac = (double)p->images_done / (double)p->images_total;
    frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
    int filled = (int)(frac * WIDTH);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = '\0';

    double done = (double)(p->epoch - 1) * (double)p->images_total + (double)p->images_done;
    double total = (double)p->epochs * (double)p->images_total;
    char eta[32] = "?";
    if (done > 0 && p->elapsed_s > 0)
        format_duration(eta, sizeof eta, p->elapsed_s * (total - done) / done);

    char line[256];
    size_t len = 0;
    append(line, sizeof line, &len, "epoch %d/%d [%s] %3d%%  %.0f img/s  loss %.4f  ETA %s",
           p->epoch, p->epochs, bar, (int)(frac * 100), p->images_per_s, p->loss, eta);
    int pad = st->bar_drawn > (int)len ? st->bar_drawn - (int)len : 0;
    fprintf(stderr, "\r%s%*s", line, pad, "");
    fflush(stderr);
    st->bar_drawn = (int)len + pad;
}

static void format_lr(char *buf, size_t cap, double lr)
{
    snprintf(buf, cap, lr >= 1e-3 ? "%.4f" : "%.3e", lr);
}

/* "epoch 3/20  loss 0.1234  train 2.10%  valid 1.90%  test 2.00%  best 1.90%@3
 *  lr 0.2800  8.2 s  6100 img/s", leaving out what was not measured. */
static void print_epoch_line(const run_state *st, const fm_epoch_report *r)
{
    char line[512], lr[32];
    size_t len = 0;
    format_lr(lr, sizeof lr, r->lr);
    append(line, sizeof line, &len, "epoch %d/%d  loss %.4f  train %.2f%%", r->epoch, r->epochs,
           r->train_loss, r->train_error_pct);
    if (r->valid_error_pct >= 0)
        append(line, sizeof line, &len, "  valid %.2f%%", r->valid_error_pct);
    if (r->test_error_pct >= 0)
        append(line, sizeof line, &len, "  test %.2f%%", r->test_error_pct);
    if (r->best_epoch > 0 && st->best_valid >= 0)
        append(line, sizeof line, &len, "  best %.2f%%@%d", st->best_valid, r->best_epoch);
    append(line, sizeof line, &len, "  lr %s  %.1f s  %.0f img/s", lr, r->epoch_seconds,
           r->images_per_s);
    fprintf(stderr, "%s\n", line);
}

static void write_log_line(run_state *st, const fm_epoch_report *r)
{
    json_writer w;
    json_begin(&w, st->log);
    json_int(&w, "epoch", r->epoch);
    json_int(&w, "epochs", r->epochs);
    json_number(&w, "lr", r->lr);
    json_number(&w, "train_loss", r->train_loss);
    json_number(&w, "train_error_pct", r->train_error_pct);
    json_pct(&w, "valid_error_pct", r->valid_error_pct);
    json_pct(&w, "test_error_pct", r->test_error_pct);
    json_int(&w, "best_epoch", r->best_epoch);
    json_pct(&w, "best_test_error_pct", r->best_epoch > 0 ? r->best_test_error_pct : -1);
    json_number(&w, "train_seconds", r->train_seconds);
    json_number(&w, "epoch_seconds", r->epoch_seconds);
    json_number(&w, "images_per_s", r->images_per_s);
    json_end(&w);
    /* Flushed every epoch so that a run can be followed, or survives a crash. */
    if (fflush(st->log) != 0 || ferror(st->log))
        st->log_errno = errno ? errno : EIO;
}

static void on_epoch(const fm_epoch_report *r, void *user)
{
    run_state *st = user;
    if (r->best_epoch == r->epoch && r->valid_error_pct >= 0)
        st->best_valid = r->valid_error_pct;
    bar_clear(st);
    if (!st->o->quiet)
        print_epoch_line(st, r);
    if (st->log && !st->log_errno)
        write_log_line(st, r);
}

static int should_stop(void *user)
{
    const run_state *st = user;
    return g_interrupted || st->log_errno;
}

/* ---- train: the command -------------------------------------------------- */

/* The one line that tells what is about to run, on stderr. */
static void print_plan(const train_opts *o, const fm_model *model, const fm_images *train,
                       const fm_images *test)
{
    const fm_config *c = &o->cfg;
    long fit = (long)train->count - c->valid;
    if (c->train_limit > 0 && c->train_limit < fit)
        fit = c->train_limit;
    char lr[32], lr_final[32];
    format_lr(lr, sizeof lr, c->lr);
    format_lr(lr_final, sizeof lr_final, c->lr_final);
    fprintf(stderr,
            "fewmul: %s, %zu parameters; data %s: %ld train, %d valid, %d test images; "
            "%d epoch%s of batch %d, %s lr %s -> %s, %d threads\n",
            fm_model_describe(model), fm_model_param_count(model), o->data, fit, c->valid,
            test ? test->count : 0, c->epochs, c->epochs == 1 ? "" : "s", c->batch,
            choice_name(opt_choices, o->opt), lr, lr_final, threads_reported(c->threads));
}

static void print_train_json(const train_opts *o, const fm_model *model, const fm_result *r,
                             const char *saved)
{
    const fm_config *c = &o->cfg;
    json_writer w;
    json_begin(&w, stdout);
    json_pct(&w, "test_error_pct", r->test_error_pct);
    json_pct(&w, "valid_error_pct", r->valid_error_pct);
    json_int(&w, "best_epoch", r->best_epoch);
    json_int(&w, "epochs", r->epochs);
    json_number(&w, "train_seconds", r->train_seconds);
    json_number(&w, "train_images_per_s", r->train_images_per_s);
    json_number(&w, "total_seconds", r->total_seconds);
    json_number(&w, "final_train_loss", r->final_train_loss);
    json_string(&w, "arch", c->arch);
    json_string(&w, "model", fm_model_describe(model));
    json_string(&w, "weights", fm_weights_name(c->weights));
    if (c->weights == FM_WEIGHTS_SYNAPSE)
        json_int(&w, "synapse_levels", c->synapse_levels);
    else
        json_null(&w, "synapse_levels");
    json_bool(&w, "qb", c->qb);
    if (c->qb && c->qb_emin != FM_QB_UNBOUNDED) {
        json_int(&w, "qb_emin", c->qb_emin);
        json_int(&w, "qb_emax", c->qb_emax);
    } else {
        json_null(&w, "qb_emin");
        json_null(&w, "qb_emax");
    }
    json_int(&w, "batch", c->batch);
    json_uint(&w, "seed", (unsigned long long)c->seed);
    json_int(&w, "threads", threads_reported(c->threads));
    json_uint(&w, "params", (unsigned long long)fm_model_param_count(model));
    json_string(&w, "data", o->data);
    json_number(&w, "lr", c->lr);
    json_number(&w, "lr_final", c->lr_final);
    json_string(&w, "opt", choice_name(opt_choices, o->opt));
    json_string(&w, "out", saved);
    json_end(&w);
}

static void print_train_summary(const fm_result *r, const char *saved)
{
    if (r->test_error_pct >= 0 && r->best_epoch > 0 && r->valid_error_pct >= 0)
        printf("test error %.2f%% at epoch %d, the best validation error (%.2f%%)\n",
               r->test_error_pct, r->best_epoch, r->valid_error_pct);
    else if (r->test_error_pct >= 0)
        printf("test error %.2f%% after the last epoch (no validation set)\n", r->test_error_pct);
    else if (r->valid_error_pct >= 0)
        printf("best validation error %.2f%% at epoch %d (no test set measured)\n",
               r->valid_error_pct, r->best_epoch);
    else
        printf("no error measured\n");
    printf("%d epoch%s: %.1f s of training (%.0f img/s), %.1f s in all, final loss %.4f\n",
           r->epochs, r->epochs == 1 ? "" : "s", r->train_seconds, r->train_images_per_s, r->total_seconds,
           r->final_train_loss);
    if (saved)
        printf("model saved to %s\n", saved);
}

/* Checks the loaded sets against the options; prints the error. */
static int check_data(const train_opts *o, const fm_images *train, const fm_images *test,
                      int *input_dim, int *classes)
{
    *input_dim = input_dim_of(train);
    if (*input_dim < 0)
        return failure("%s: training images of %dx%dx%d values are too large", o->data,
                       train->height, train->width, train->channels);
    if (input_dim_of(test) != *input_dim)
        return failure("%s: test images are %dx%dx%d but training images %dx%dx%d", o->data,
                       test->height, test->width, test->channels, train->height, train->width,
                       train->channels);
    if (o->cfg.valid >= train->count)
        return usage_error("--valid %d leaves no training images: %s has %d", o->cfg.valid,
                           o->data, (int)train->count);
    int a = classes_in(train), b = classes_in(test);
    *classes = a > b ? a : b;
    if (*classes < 2)
        *classes = 2;
    return 0;
}

typedef struct train_run {
    fm_images train, test;
    fm_model *model;
    FILE *log;
} train_run;

static void train_run_free(train_run *t)
{
    fm_images_free(&t->train);
    fm_images_free(&t->test);
    fm_model_free(t->model);
    if (t->log)
        fclose(t->log);
}

/* Everything after the options are known: data, model, training, reports. */
static int train_with(const train_opts *o, train_run *t)
{
    if (o->log && !(t->log = fopen(o->log, "w")))
        return failure("cannot create log file '%s': %s", o->log, strerror(errno));
    if (fm_data_load(o->data, &t->train, &t->test) != FM_OK)
        return library_failure();
    int input_dim = 0, classes = 0;
    int rc = check_data(o, &t->train, &t->test, &input_dim, &classes);
    if (rc)
        return rc;
    if (fm_model_create(&o->cfg, input_dim, classes, &t->model) != FM_OK)
        return library_failure();
    if (!o->quiet)
        print_plan(o, t->model, &t->train, &t->test);

    run_state st = {.o = o, .log = t->log, .best_valid = -1};
    st.bar = !o->quiet && isatty(STDERR_FILENO);
    fm_callbacks cb = {on_progress, on_epoch, should_stop, &st};
    fm_result result;
    memset(&result, 0, sizeof result);
    install_sigint();
    rc = fm_train(t->model, &t->train, &t->test, &o->cfg, &cb, &result);
    signal(SIGINT, SIG_DFL);
    bar_clear(&st);
    if (st.log_errno)
        return failure("writing log file '%s': %s", o->log, strerror(st.log_errno));
    if (rc == FM_ECANCELED && g_interrupted) {
        fflush(stdout);
        fprintf(stderr, "interrupted\n");
        return CLI_INTERRUPTED;
    }
    if (rc != FM_OK)
        return library_failure();

    /* A failed save still reports the training, then fails: the numbers of a
     * long run are worth having even when the disk is full. */
    int saved = o->out && fm_model_save(t->model, o->out) == FM_OK;
    char save_error[512] = "";
    if (o->out && !saved)
        snprintf(save_error, sizeof save_error, "%s", fm_last_error());
    if (o->json)
        print_train_json(o, t->model, &result, saved ? o->out : NULL);
    else
        print_train_summary(&result, saved ? o->out : NULL);
    if (o->out && !saved)
        return failure("%s", save_error);
    return CLI_OK;
}

static int cmd_train(int argc, char **argv)
{
    train_opts o;
    train_opts_default(&o);
    int rc = parse_options(train_options, &o, &o.help, argc, argv, 2);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, train_help);
        return CLI_OK;
    }
    train_opts_finish(&o);
    if ((rc = check_data_spec(o.data)) != 0)
        return rc;
    if (fm_config_check(&o.cfg) != FM_OK)
        return usage_error("%s", fm_last_error());
    train_run t;
    memset(&t, 0, sizeof t);
    rc = train_with(&o, &t);
    train_run_free(&t);
    return rc;
}

/* ---- eval ---------------------------------------------------------------- */

typedef struct eval_opts {
    const char *model, *data;
    int set; /* 0 test, 1 train */
    int threads;
    int json, help;
} eval_opts;

static const choice set_choices[] = {{"test", 0}, {"train", 1}, {NULL, 0}};

#define EOPT(field) offsetof(eval_opts, field)
static const option_def eval_options[] = {
    {"model", T_STRING, EOPT(model), 0, 0, 0, NULL, 0, NULL},
    {"data", T_STRING, EOPT(data), 0, 0, 0, NULL, 0, NULL},
    {"set", T_CHOICE, EOPT(set), 0, 0, 0, set_choices, 0, NULL},
    {"threads", T_INT, EOPT(threads), 1, 1024, 0, NULL, 0, NULL},
    {"json", T_FLAG, EOPT(json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef EOPT

static int check_eval_data(const eval_opts *o, const fm_model *model, const fm_images *images)
{
    int want = fm_model_input_dim(model);
    if (input_dim_of(images) != want)
        return failure("%s: %s images are %dx%dx%d = %lld values, but model '%s' expects %d inputs",
                       o->data, choice_name(set_choices, o->set), images->height, images->width,
                       images->channels,
                       (long long)images->height * images->width * images->channels, o->model,
                       want);
    if (classes_in(images) > fm_model_classes(model))
        return failure("%s: labels go up to %d, but model '%s' has %d classes", o->data,
                       classes_in(images) - 1, o->model, fm_model_classes(model));
    if (images->count <= 0)
        return failure("%s: the %s set is empty", o->data, choice_name(set_choices, o->set));
    return 0;
}

static int eval_with(const eval_opts *o, fm_model **model, fm_images *images)
{
    if (fm_model_load(o->model, model) != FM_OK)
        return library_failure();
    int want_train = o->set == 1;
    if (fm_data_load(o->data, want_train ? images : NULL, want_train ? NULL : images) != FM_OK)
        return library_failure();
    int rc = check_eval_data(o, *model, images);
    if (rc)
        return rc;
    double error_pct = 0, start = now_seconds();
    if (fm_model_evaluate(*model, images, o->threads, &error_pct) != FM_OK)
        return library_failure();
    double seconds = now_seconds() - start;
    const char *set = choice_name(set_choices, o->set);
    if (o->json) {
        json_writer w;
        json_begin(&w, stdout);
        json_number(&w, "error_pct", error_pct);
        json_int(&w, "images", images->count);
        json_string(&w, "model", o->model);
        json_string(&w, "describe", fm_model_describe(*model));
        json_string(&w, "data", o->data);
        json_string(&w, "set", set);
        json_number(&w, "seconds", seconds);
        json_int(&w, "threads", threads_reported(o->threads));
        json_end(&w);
    } else {
        printf("%s error %.2f%% on %d images of %s (%s; %.1f s)\n", set, error_pct,
               (int)images->count, o->data, fm_model_describe(*model), seconds);
    }
    return CLI_OK;
}

static int cmd_eval(int argc, char **argv)
{
    eval_opts o = {.data = "fashion"};
    int rc = parse_options(eval_options, &o, &o.help, argc, argv, 2);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, eval_help);
        return CLI_OK;
    }
    if (!o.model)
        return usage_error("missing --model FILE");
    if ((rc = check_data_spec(o.data)) != 0)
        return rc;
    fm_model *model = NULL;
    fm_images images;
    memset(&images, 0, sizeof images);
    rc = eval_with(&o, &model, &images);
    fm_images_free(&images);
    fm_model_free(model);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------ */

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *const *help;
} command;

static const command commands[] = {
    {"train", cmd_train, train_help}, {"eval", cmd_eval, eval_help}, {NULL, NULL, NULL}};

static const command *find_command(const char *name)
{
    for (const command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* "fewmul help [COMMAND]". */
static int cmd_help(int argc, char **argv)
{
    if (argc <= 2) {
        print_lines(stdout, main_help);
        return CLI_OK;
    }
    if (argc > 3)
        return usage_error("'help' takes one command name, got '%s' too", argv[3]);
    const command *c = find_command(argv[2]);
    if (!c)
        return usage_error("no help for unknown command '%s'", argv[2]);
    print_lines(stdout, c->help);
    return CLI_OK;
}

/* A write error on stdout (a full disk, a closed pipe) must not pass for success. */
static int finish_stdout(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int err = errno;
        fprintf(stderr, "fewmul: error: writing standard output: %s\n", strerror(err ? err : EIO));
        return rc ? rc : CLI_FAIL;
    }
    return rc;
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("no command given; expected train, eval or help");
    const char *name = argv[1];
    if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return cmd_help(argc, argv);
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0 ||
        strcmp(name, "version") == 0) {
        printf("fewmul %s\n", FM_VERSION_STRING);
        return CLI_OK;
    }
    const command *c = find_command(name);
    if (!c) {
        if (name[0] == '-')
            return usage_error("unknown option '%s' before the command", name);
        return usage_error("unknown command '%s'", name);
    }
    g_command = c->name;
    return c->run(argc, argv);
}

/* OpenMP threads that spin between parallel regions take the cores from each
 * other whenever anything else runs on the machine (measured on 2 cores with a
 * second process busy: 2-5x slower training). The runtime reads its wait policy
 * once, when it loads, so the command re-executes itself with a passive policy
 * unless the user chose one. */
static void prefer_passive_waiting(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
        return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) == 0)
        execv("/proc/self/exe", argv); /* returns only on failure: carry on as we are */
}

int main(int argc, char **argv)
{
    prefer_passive_waiting(argv);
    return finish_stdout(dispatch(argc, argv));
}
