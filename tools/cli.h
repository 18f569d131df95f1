/* cli.h — what the files of the `fewmul` command share: exit statuses, error
 * messages, strict numbers, the option table and its parser, small utilities,
 * the JSON writer, the options of train and energy, the energy-ledger reports,
 * the deployed-model helpers, and each command's parse function, help text and
 * entry point. Include it first: it sets _POSIX_C_SOURCE. */
#ifndef FEWMUL_CLI_H
#define FEWMUL_CLI_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "fewmul.h"
#include "report/report.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* Exit statuses (docs/cli.md, "Exit status"; docs/errors.md): a failure of
 * the library maps by its code (exit_status_of), an interruption by its signal
 * (128 + the signal's number, as a shell reports a signal's death). */
enum {
    CLI_OK = 0,
    CLI_FAIL = 1,        /* anything not below: an invalid environment, an internal error */
    CLI_USAGE = 2,       /* the command line: unknown option, bad value, conflicting options */
    CLI_NOT_FOUND = 3,   /* FM_ENOENT: a file or folder named does not exist */
    CLI_BAD_INPUT = 4,   /* FM_EFORMAT, FM_ETRUNC, FM_EMISMATCH, FM_EUNSUPPORTED: malformed,
                            truncated, unsupported or not fitting together */
    CLI_IO = 5,          /* FM_EIO: a file could not be read or written (permission, not a
                            regular file, disk full) */
    CLI_NO_MEMORY = 6,   /* FM_ENOMEM */
    CLI_PEER = 7,        /* FM_EPEER: another rank of an MPI run failed, or the link to it */
    CLI_INTERRUPTED = 130, /* SIGINT */
    CLI_TERMINATED = 143   /* SIGTERM */
};

/* ---- messages (cli_util.c) ----------------------------------------------- */

/* The subcommand whose --help a usage error points to (NULL: the top level). */
extern const char *g_command;

/* Where error messages go; NULL (the default) is stderr. cli_err_file() is
 * the stream in effect. */
extern FILE *cli_err;
FILE *cli_err_file(void);

/* A mistake on the command line: prints the one error line with a pointer to
 * the help, returns CLI_USAGE (exit status 2). */
int usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* The exit status of a library error code. */
int exit_status_of(int err);
/* A failure at run time that is no file's or the library's: CLI_FAIL. */
int failure(const char *fmt, ...) CLI_PRINTF(1, 2);
/* A failure of the kind of library code err: prints, returns exit_status_of(err). */
int failure_as(int err, const char *fmt, ...) CLI_PRINTF(2, 3);
/* The library's last failure: fm_last_error() with fm_last_error_code()'s status. */
int library_failure(void);
void print_lines(FILE *f, const char *const *lines);
/* A user's value (a path, an architecture, a data spec) as a message echoes
 * it: its first and last 60 bytes with "..." between when longer than 123.
 * The last 4 results stay valid. Every error line is fitted so anyway
 * (fm_fit_text); this keeps a message composed in a buffer short. */
const char *elided(const char *value);
/* The text of the last error line printed (without "fewmul: error: "). */
const char *last_error_message(void);
/* In a run of several ranks every error line names its rank: "rank R of N: ". */
void set_error_prefix(int rank, int size);

/* ---- the ranks of an MPI run (cli_mpi.c; docs/distributed.md) ------------ */

typedef struct cli_ranks {
    int rank, size;  /* 0 of 1 outside MPI */
    int local_size;  /* ranks on this machine */
    int mpi;         /* MPI is running (launched by mpirun with N > 1) */
    fm_comm comm;    /* the collectives, when mpi */
} cli_ranks;

/* Starts MPI when launched as one of several ranks; 0 or an exit status
 * (without MPI in the build, several ranks are refused: exit 4). */
int ranks_start(cli_ranks *ranks);
/* After each rank's set-up: 0 when all started; else this rank's own status,
 * or CLI_PEER after printing which rank failed and its message. */
int ranks_agree(cli_ranks *ranks, int status);
/* The largest of every rank's value (all ranks must call it); this rank's
 * own outside MPI or when the collective fails. */
int ranks_max(cli_ranks *ranks, int value);
/* MPI's description of a failed collective, or NULL. */
const char *ranks_failure(void);
void ranks_finish(cli_ranks *ranks);

/* ---- strict numbers (cli_util.c) ----------------------------------------- */

typedef enum { NUM_OK, NUM_SYNTAX, NUM_RANGE } num_status;

/* A decimal integer and nothing else: no white space, no stray characters. */
num_status parse_long(const char *s, long *out);

/* ---- the option table (cli_util.c) --------------------------------------- */

typedef enum { T_FLAG, T_INT, T_U64, T_DOUBLE, T_STRING, T_CHOICE, T_CUSTOM } value_type;
typedef enum { ARG_NONE, ARG_REQUIRED, ARG_OPTIONAL } arg_kind;
/* T_DOUBLE: range bounds excluded; AS_FLOAT: the library computes with the
 * value as a 32-bit float, so it is checked again after that conversion (no
 * overflow to inf, no nonzero value that becomes 0 or loses its bits, the
 * range still met: 0.99999999999 is 1 as a float). */
enum { LO_OPEN = 1, HI_OPEN = 2, AS_FLOAT = 4 };

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

/* Parses argv[first..argc) against table into opts. Returns 0, or CLI_USAGE
 * after printing the one error line. `help` is set on -h/--help, which ends
 * parsing at once so that help works whatever else is on the line. When
 * `positional` is not NULL, one argument that is not an option (a FILE, as in
 * `fewmul info FILE`) is stored there, wherever it stands on the line. */
int parse_options(const option_def *table, void *opts, int *help, int argc, char **argv,
                  int first, const char **positional);

/* A --data spec's syntax (no file is opened): 0, or CLI_USAGE. */
int check_data_spec(const char *spec);

/* ---- small utilities (cli_util.c) ---------------------------------------- */

double now_seconds(void);
/* The thread count a command runs on and reports: the requested one (<= 0:
 * all cores), or fewer when the system lets it start no more threads
 * (fm_threads_usable), which the first call says on stderr in one line.
 * Commands call it before their work starts. */
int threads_reported(int requested);
const char *choice_name(const choice *choices, int value);
/* A T_DOUBLE option's value checked against d (range, AS_FLOAT) into
 * *field, for a T_CUSTOM setter that does more; 0 or a usage error. */
int option_set_double(const option_def *d, double *field, const char *value);
/* Appends formatted text to buf (capacity cap, current length *len). */
void append(char *buf, size_t cap, size_t *len, const char *fmt, ...) CLI_PRINTF(4, 5);
/* Highest label + 1 over a set (0 when the set is empty or absent). */
int classes_in(const fm_images *images);
/* height*width*channels, or -1 when it does not fit in an int. */
int input_dim_of(const fm_images *images);
/* "8 KiB", "3.1 MiB", "512 B". */
const char *fmt_size(char *buf, size_t cap, uint64_t n);

/* ---- files the command writes (cli_files.c; docs/errors.md) -------------- */

/* A file an option names, and the option as messages name it ("--out", "-o"). */
typedef struct named_path {
    const char *option;
    const char *path; /* NULL: not given */
} named_path;

/* Whether a and b name one file: the same string, the same device and inode,
 * or (a file not there yet) the same folder, by device and inode, and the
 * same base name. */
int same_file(const char *a, const char *b);
/* A usage error (exit 2) "OPT 'A' and OPT 'B' name the same file" when they
 * do (same_file), else 0; a path NULL is no file. */
int refuse_same_file(const named_path *a, const named_path *b);
/* refuse_same_file for every pair of n files. */
int refuse_same_files(const named_path *files, int n);
/* Every output given may be replaced (fm_check_output): else exit 5 with
 * "OPT: 'PATH' is a character device, not a regular file; ...". */
int check_outputs(const named_path *outputs, int n);

/* The advisory lock a run holds on its checkpoint: fcntl's on FILE.lock. */
typedef struct file_lock {
    char *path; /* FILE.lock; NULL: no lock taken (a zeroed struct is none) */
    int fd;
} file_lock;
/* 0 once the lock is held; else prints why (another run, with its pid, holds
 * it; the lock file cannot be made) and returns exit status 5. */
int lock_checkpoint(const char *checkpoint, file_lock *lock);
/* Removes the lock file and lets the lock go (nothing when none is held). */
void unlock_checkpoint(file_lock *lock);

/* ---- JSON output (cli_util.c) -------------------------------------------- */

/* One JSON object written as it goes, on one line; objects and arrays nest
 * (json_open ... json_close). */
enum { JSON_MAX_DEPTH = 16 };
typedef struct json_writer {
    FILE *f;
    int depth;
    int items[JSON_MAX_DEPTH]; /* values written so far at each depth */
} json_writer;

void json_begin(json_writer *w, FILE *f);
/* Opens an object ('{') or array ('[') as the value of key (NULL in an array). */
void json_open(json_writer *w, const char *key, char bracket);
void json_close(json_writer *w, char bracket);
void json_string(json_writer *w, const char *key, const char *value); /* NULL: null */
void json_number(json_writer *w, const char *key, double value);      /* nan, inf: null */
void json_pct(json_writer *w, const char *key, double value);         /* < 0: null */
void json_int(json_writer *w, const char *key, long long value);
void json_uint(json_writer *w, const char *key, unsigned long long value);
void json_u64(json_writer *w, const char *key, uint64_t value);
void json_bool(json_writer *w, const char *key, int value);
void json_null(json_writer *w, const char *key);
void json_end(json_writer *w);

/* ---- the options of train and energy (cli_config.c) ---------------------- */

typedef struct train_opts {
    fm_config cfg;
    const char *data, *log;
    const char *out;   /* the packed deployment file */
    const char *state; /* the full training state */
    /* Enumerations are parsed as int and copied into cfg afterwards, since
     * the size of an enum type is the compiler's choice. */
    int opt, loss, preproc, bn_stats, scale, test_quantized, acts, exec, latent;
    int export_how;    /* fm_export_weights of --out */
    int json, quiet, help;
    /* the energy ledger: train --ledger [--table], and `fewmul energy` */
    int ledger, verbose, list_tables;
    const char *table, *print_table;
    const char *input;      /* energy --input as given ("28x28x1") */
    int input_dim, classes; /* energy: the network's input values and outputs */
    int input_shape[3];     /* energy: height, width, channels */
    /* train: checkpoints (--checkpoint, --checkpoint-every N or a time) and
     * the run to continue (--resume) */
    const char *checkpoint, *resume;
    long checkpoint_every;
    double checkpoint_seconds;
    int compress;      /* fm_compress of an MPI run's gradient exchange */
    int preproc_cache; /* --preproc-cache: MiB of gcn-* rows kept (0: none) */
    int ranks;         /* the ranks of an MPI run (set at its start; 0 or 1: one process) */
    const char *bop_given; /* the last of --bop-gamma, --bop-threshold given, or NULL */
} train_opts;

extern const choice opt_choices[], preproc_choices[], export_choices[], acts_choices[],
    exec_choices[], compress_choices[], latent_choices[];
extern const option_def train_options[], energy_options[];

void train_opts_default(train_opts *o);
/* The options of a configuration (a resumed run's): cfg and the enumerations. */
void train_opts_take_config(train_opts *o, const fm_config *c);
/* Copies the parsed enumerations into the config and resolves the default
 * learning rates, so that what is reported is what is used. */
void train_opts_finish(train_opts *o);
/* A usage error when bop's options are given without --opt bop (after
 * train_opts_finish); else CLI_OK. */
int train_opts_check_bop(const train_opts *o);
/* The weight mode of a configuration: weights, synapse_levels, qb, qb_emin,
 * qb_emax, qb_conv_emin, qb_conv_emax (null where they do not apply). */
void json_mode(json_writer *w, const fm_config *c);
/* bop_gamma and bop_threshold when the optimizer is bop (else nothing). */
void json_bop(json_writer *w, const fm_config *c);

/* ---- the energy ledger: pricing, reports, JSON (cli_ledger.c) ------------ */

/* How costs are shown in a text table: joules with an SI prefix, or the
 * table's own unit when it is not physical. */
typedef struct cost_unit {
    double scale; /* shown value = table units * scale */
    char name[48];
} cost_unit;

int price(const fm_ledger *l, const fm_energy_table *t, int layer, int phase, fm_energy *e);
/* The table's joules per unit, 0 when it is not physical. */
double jpu_of(const fm_energy_table *t);
const char *fmt_joules(char *buf, size_t cap, double joules); /* "1.23 µJ" */
void choose_unit(cost_unit *u, const fm_energy_table *t, double largest);
const char *fmt_cost(char *buf, size_t cap, double units, const cost_unit *u);
const char *fmt_ratio(char *buf, size_t cap, double num, double den);
/* A cost unit for a whole ledger, from its total. */
int ledger_unit(const fm_ledger *l, const fm_energy_table *t, cost_unit *u);
/* The rows of a ledger: each layer's phases with work, then all layers by
 * phase and in total, then memory and tensors. */
int print_ledger_rows(const fm_ledger *l, const fm_energy_table *t, const cost_unit *u,
                      int all_tensors, const char *more_hint);
void print_table_heading(const fm_energy_table *t);
/* After train's summary: what the run did, priced with the table. */
int print_run_ledger(const fm_ledger *l, const fm_energy_table *t);
/* A ledger under key; sets *bad when the library failed to price it. */
void json_ledger(json_writer *w, const char *key, const fm_ledger *l, const fm_energy_table *t,
                 int with_passes, int *bad);
void json_table(json_writer *w, const char *key, const fm_energy_table *t);
/* --table: a built-in name or a file (NULL: the default); CLI_FAIL when
 * missing, unreadable or malformed. */
int open_table(const char *name, fm_energy_table **out);

/* ---- deployed networks: shared helpers (cli_deploy.c) -------------------- */

extern const choice set_choices[]; /* --set test|train of eval and infer */

/* The weights of a deployed network, summed over its layers. */
typedef struct weight_totals {
    uint64_t weights; /* in x out */
    uint64_t bits;    /* weights x bits per weight */
    uint64_t bytes;   /* packed weight bytes in the file */
    const char *kind; /* the layers' weight kind ("binary"), or "mixed" */
} weight_totals;

int weight_totals_of(const fm_deploy *d, weight_totals *t); /* 0 or -1 */
double bits_per_weight(const weight_totals *t);

typedef enum {
    MODEL_FILE_OTHER, MODEL_FILE_STATE, MODEL_FILE_PACKED, MODEL_FILE_CHECKPOINT
} model_file_kind;
model_file_kind model_file_kind_of(const char *path);
/* A packed model for info, infer, bench and export: 0, or the exit status
 * after printing why not. A training-state file gets a message that says
 * which file these commands read, rather than "bad magic". */
int load_packed(const char *path, fm_deploy **out);
/* Images against a model's input of h x w x c values: the same count and,
 * unless the model's shape is flat (N x 1 x 1: a packed model of a flat
 * input, or a training state of before version 3), the same shape; else
 * prints "DATA: SET images are HxWxC = N values, but model 'MODEL' expects
 * HxWxC = N inputs" and returns exit status 4. */
int check_input_shape(const char *model, const char *data, const char *set, const fm_images *images,
                      int h, int w, int c);
int check_deploy_data(const char *model, const char *data, const char *set, const fm_deploy *d,
                      const fm_images *images);
int predict_batches(const fm_deploy *d, const fm_images *images, int batch, int threads,
                    long *errors, double *latency, double *seconds);

/* ---- the commands -------------------------------------------------------- */

/* The options of eval, infer, info and bench infer (train and energy: train_opts). */
typedef struct eval_opts {
    const char *model, *data;
    int set; /* 0 test, 1 train */
    int threads;
    int json, help;
} eval_opts;

typedef struct infer_opts {
    const char *model, *data;
    int set, batch, threads;
    int kernels; /* index in kernel_choices, -1: the variant chosen at load */
    int show;    /* --show N: the first N images' predictions, one per line */
    int json, help;
} infer_opts;

typedef struct info_opts {
    const char *file;
    int json, help;
} info_opts;

typedef struct bench_opts {
    const char *model;
    const char *kernels; /* --kernels LIST: comma-separated variants; NULL: all */
    int runs, threads;
    int json, help;
} bench_opts;

typedef struct export_opts {
    const char *model, *dir, *name; /* --model, --c, --name */
    const char *onnx;               /* --onnx FILE */
    int dialect;                    /* --onnx-dialect: fm_onnx_dialect, -1 when not given */
    int json, help;
} export_opts;

typedef struct import_opts {
    const char *onnx, *out; /* --onnx FILE, -o/--out OUT */
    int json, help;
} import_opts;

/* The options of report: the logs (not options, wherever they stand) and
 * one --label per log, in order (REPORT_MAX_RUNS: report/report.h). */
typedef struct report_opts {
    const char *files[REPORT_MAX_RUNS];
    int n_files;
    const char *labels[REPORT_MAX_RUNS];
    int n_labels;
    const char *out, *svg_dir, *title;
    int help;
} report_opts;

/* Each parse function reads the command's argv (argv[1] the command's name)
 * into its options and makes every check that needs no file; it opens no
 * file, keeps no memory, runs nothing and never exits. It returns CLI_OK or
 * CLI_USAGE (after printing the one error line to cli_err); on -h or --help
 * it sets the options' help and returns CLI_OK at once. */
int parse_train(int argc, char **argv, train_opts *o);
int parse_eval(int argc, char **argv, eval_opts *o);
int parse_infer(int argc, char **argv, infer_opts *o);
int parse_info(int argc, char **argv, info_opts *o);
int parse_bench(int argc, char **argv, bench_opts *o); /* bench infer */
int parse_export(int argc, char **argv, export_opts *o);
int parse_import(int argc, char **argv, import_opts *o);
int parse_energy(int argc, char **argv, train_opts *o);
int parse_report(int argc, char **argv, report_opts *o);

/* Each command: its parse function, then the help or the run; an exit status. */
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_energy(int argc, char **argv);
int cmd_report(int argc, char **argv);

/* Help texts: arrays of lines ending with NULL (no string literal is too long
 * for C11). */
extern const char *const train_help[], *const eval_help[], *const infer_help[],
    *const info_help[], *const bench_help[], *const export_help[], *const import_help[], *const energy_help[],
    *const report_help[];

#endif
