/* fuzz_cli.c — libFuzzer target for the `fewmul` command line: the input, split
 * at NUL bytes, is the argv after "fewmul", and the parse function of the
 * command argv[1] names reads it (tools/cli.h). No command runs, no file is
 * opened; error lines go to /dev/null. Built from the C files of tools/ but
 * main.c, those of tools/report/, and the library's (tests/fuzz/run.sh); seeds
 * corpus/cli, cli.dict. */
#include "cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* An argv as a shell would pass it: at most this many arguments and bytes;
 * tests/fuzz/run.sh reads the line below, so that libFuzzer makes no input
 * longer than what is used.
 * FUZZ_OPTIONS: -max_len=4096
 */
enum { MAX_ARGS = 64, MAX_BYTES = 4096 };

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* the parse functions print one line per usage error: keep them quiet */
    cli_err = fopen("/dev/null", "w");
    return 0;
}

/* A parse function answers CLI_OK or CLI_USAGE, nothing else. */
static void check_status(int rc)
{
    if (rc != CLI_OK && rc != CLI_USAGE)
        abort();
}

/* What a successful parse promises the run: a configuration the library
 * accepts, and the values the run relies on. */
static void check_train(const train_opts *o)
{
    if (!o->data || fm_config_check(&o->cfg) != FM_OK || (o->table && !o->ledger))
        abort();
    if (o->out && o->state && strcmp(o->out, o->state) == 0)
        abort();
}

static void check_energy(const train_opts *o)
{
    if (o->list_tables || o->print_table)
        return;
    long long dim = (long long)o->input_shape[0] * o->input_shape[1] * o->input_shape[2];
    if (fm_config_check(&o->cfg) != FM_OK || !o->input || o->input_dim < 1 ||
        o->input_dim > 1048576 || dim != o->input_dim || o->classes < 2 || o->classes > 256)
        abort();
}

static void parse_command(int argc, char **argv)
{
    const char *name = argv[1];
    int rc;
    if (strcmp(name, "train") == 0) {
        train_opts o;
        g_command = "train";
        check_status(rc = parse_train(argc, argv, &o));
        if (rc == CLI_OK && !o.help)
            check_train(&o);
    } else if (strcmp(name, "energy") == 0) {
        train_opts o;
        g_command = "energy";
        check_status(rc = parse_energy(argc, argv, &o));
        if (rc == CLI_OK && !o.help)
            check_energy(&o);
    } else if (strcmp(name, "eval") == 0) {
        eval_opts o;
        g_command = "eval";
        check_status(rc = parse_eval(argc, argv, &o));
        if (rc == CLI_OK && !o.help && (!o.model || !o.data))
            abort();
    } else if (strcmp(name, "infer") == 0) {
        infer_opts o;
        g_command = "infer";
        check_status(rc = parse_infer(argc, argv, &o));
        if (rc == CLI_OK && !o.help && (!o.model || !o.data || o.batch < 1 || o.batch > 65536))
            abort();
    } else if (strcmp(name, "info") == 0) {
        info_opts o;
        g_command = "info";
        check_status(rc = parse_info(argc, argv, &o));
        if (rc == CLI_OK && !o.help && !o.file)
            abort();
    } else if (strcmp(name, "bench") == 0) {
        bench_opts o;
        g_command = "bench";
        check_status(rc = parse_bench(argc, argv, &o));
        if (rc == CLI_OK && !o.help && (!o.model || o.runs < 1))
            abort();
    } else if (strcmp(name, "export") == 0) {
        export_opts o;
        g_command = "export";
        check_status(rc = parse_export(argc, argv, &o));
        if (rc == CLI_OK && !o.help && (!o.model || !o.dir || !o.name || !o.name[0]))
            abort();
    } else if (strcmp(name, "report") == 0) {
        report_opts o;
        g_command = "report";
        check_status(rc = parse_report(argc, argv, &o));
        if (rc == CLI_OK && !o.help &&
            (o.n_files < 1 || o.n_files > REPORT_MAX_RUNS || o.n_labels > o.n_files || !o.out ||
             !o.out[0] || !o.title))
            abort();
    }
    /* help, --version and unknown commands: main.c prints, parses nothing */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char program[] = "fewmul";
    if (size > MAX_BYTES)
        size = MAX_BYTES;
    char *bytes = malloc(size + 1);
    if (!bytes)
        return 0;
    memcpy(bytes, data, size);
    bytes[size] = '\0';
    /* "train\0--epochs\0003" is train --epochs 3; a final NUL ends the last
     * argument, two in a row make an empty one */
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = program;
    for (size_t at = 0; at < size && argc < MAX_ARGS; at += strlen(bytes + at) + 1)
        argv[argc++] = bytes + at;
    argv[argc] = NULL;
    g_command = NULL;
    if (argc >= 2)
        parse_command(argc, argv);
    free(bytes);
    return 0;
}
