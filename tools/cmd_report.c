/* cmd_report.c — the `fewmul report` command: its help, parse_report, and
 * the writing of what the report module (tools/report/report.h) builds from
 * the logs: the HTML page and, with --svg, each chart as DIR/NAME.svg. Each
 * output is written with fm_write_file_atomic (a temporary file beside it,
 * synced and renamed), so a failure leaves the previous one whole; none may
 * be one of the logs by any spelling, nor a device, a FIFO or a folder. */
#include "cli.h"

#include "report/report.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

const char *const report_help[] = {
    "Usage: fewmul report RUN.jsonl [MORE.jsonl ...] [-o FILE] [--svg DIR] [OPTIONS]",
    "",
    "Read the logs that 'fewmul train --log FILE' writes (JSON Lines: one object",
    "per epoch and, once the run has finished, a last line {\"result\": R} holding",
    "the 'train --json' result) and write one self-contained HTML page that",
    "compares the runs: inline CSS and SVG, no script, no font and no reference",
    "to anything outside the file.",
    "Options take their value as '--opt VALUE' or '--opt=VALUE'.",
    "",
    "The page has a table of the runs (test error at the last epoch and at the",
    "best validation epoch, epochs, images/s, time, energy, communication over",
    "computation, energy per training step, against fp32) and six charts:",
    "  error           training, validation and test error per epoch (log scale)",
    "  lr              the learning rate per epoch (log scale)",
    "  speed           training images per second, per epoch",
    "  energy-phase    each run's energy in forward, backward, update and eval:",
    "                  computation, then communication by memory level, the",
    "                  bytes sent between processes (level 'network') apart",
    "  energy-layer    the same for each layer, all phases together",
    "  energy-vs-fp32  each run's total beside the fp32 run's, with the ratio",
    "The energy charts need runs trained with --ledger. A log without a result",
    "line (a run still going, or interrupted) gets its curves and no energy; the",
    "page says so. A series of more than 1000 epochs is drawn with 1000 points:",
    "the lowest and the highest value of each of 500 buckets of epochs, so that",
    "spikes survive; the chart's caption says so.",
    "",
    "Options:",
    "  -o, --out FILE     the page to write (default report.html); written beside",
    "                     it and renamed, so a failure leaves FILE whole",
    "  --svg DIR          also write each chart as DIR/NAME.svg, NAME as above",
    "                     (error.svg, ..., energy-vs-fp32.svg); DIR is created",
    "                     when missing",
    "  --title TEXT       the page's title (default \"fewmul training report\")",
    "  --label NAME       a run's name in the charts and the table: the first",
    "                     --label names the first log, the second the second...",
    "                     (default: the run's mode, e.g. fp32, bc+qb, tc+qb,",
    "                     synapse:26+qb; the file name without a result line)",
    "  --                 what follows is a log file, even when it starts with '-'",
    "  -h, --help         show this help",
    "",
    "At most 64 logs. Blank lines are skipped; anything else must be an epoch",
    "line with the keys of docs/cli.md (\"--log line keys\"), epochs in",
    "increasing order, or the result line, which must come last.",
    "",
    "Exit status: 0 success; 2 usage error (no log, an unknown option, more",
    "labels than logs, -o or a chart naming a log by any spelling); 3 a log",
    "that does not exist; 4 a log that is not one: empty, not JSON, a truncated",
    "line, a key missing or of the wrong type, epochs out of order, a line after",
    "the result (the message names FILE:LINE); 5 a log that cannot be read (a",
    "folder, no permission) or an output that cannot be written (a folder, a",
    "FIFO or a device there; the file there before is left whole); 6 out of",
    "memory. docs/errors.md lists the cases.",
    "",
    "Examples:",
    "  fewmul train --epochs 20 --ledger --log fp32.jsonl",
    "  fewmul train --weights bc --qb --epochs 20 --ledger --log bc.jsonl",
    "  fewmul report fp32.jsonl bc.jsonl -o report.html --svg charts",
    "  fewmul report a.jsonl b.jsonl --label 'lr 0.3' --label 'lr 0.1'",
    NULL};

/* ---- options ------------------------------------------------------------- */

static int add_label(void *opts, const char *value)
{
    report_opts *o = opts;
    if (o->n_labels >= REPORT_MAX_RUNS)
        return usage_error("--label: at most %d labels", REPORT_MAX_RUNS);
    o->labels[o->n_labels++] = value;
    return 0;
}

#define ROPT(field) offsetof(report_opts, field)
static const option_def report_options[] = {
    {"out", T_STRING, ROPT(out), 0, 0, 0, NULL, 0, NULL},
    {"svg", T_STRING, ROPT(svg_dir), 0, 0, 0, NULL, 0, NULL},
    {"title", T_STRING, ROPT(title), 0, 0, 0, NULL, 0, NULL},
    {"label", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, add_label},
    {NULL, 0, 0, 0, 0, 0, NULL, 0, NULL}};

/* The logs are the arguments that are not options, wherever they stand; -o
 * is --out. Each option (with its value) goes through parse_options. */
int parse_report(int argc, char **argv, report_opts *o)
{
    memset(o, 0, sizeof *o);
    int files_only = 0;
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (!files_only && (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)) {
            o->help = 1;
            return CLI_OK;
        }
        if (!files_only && strcmp(arg, "--") == 0) {
            files_only = 1;
            continue;
        }
        if (!files_only && strcmp(arg, "-o") == 0) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return usage_error("option '-o' needs a value");
            if (argv[i + 1][0] == '\0')
                return usage_error("option '-o' needs a non-empty value");
            o->out = argv[++i];
            continue;
        }
        if (!files_only && strncmp(arg, "--", 2) == 0) {
            int n = strchr(arg, '=') || i + 1 >= argc ? 1 : 2;
            int rc = parse_options(report_options, o, &o->help, i + n, argv, i, NULL);
            if (rc || o->help)
                return rc;
            i += n - 1;
            continue;
        }
        if (!files_only && arg[0] == '-')
            return usage_error("unknown option '%s'", arg);
        if (arg[0] == '\0')
            return usage_error("an empty log file name");
        if (o->n_files >= REPORT_MAX_RUNS)
            return usage_error("at most %d logs in one report", REPORT_MAX_RUNS);
        o->files[o->n_files++] = arg;
    }
    if (o->n_files == 0)
        return usage_error("no log given; expected 'fewmul report RUN.jsonl [MORE.jsonl ...]'");
    if (o->n_labels > o->n_files)
        return usage_error("%d --label options for %d log%s", o->n_labels, o->n_files,
                           o->n_files == 1 ? "" : "s");
    if (!o->out)
        o->out = "report.html";
    if (!o->title)
        o->title = "fewmul training report";
    for (int i = 0; i < o->n_files; i++)
        if (strcmp(o->files[i], o->out) == 0)
            return usage_error("-o names the log '%s'; the report would replace it", o->out);
    return CLI_OK;
}

/* ---- writing ------------------------------------------------------------- */

static int write_text(FILE *f, void *user)
{
    const report_text *text = user;
    return fwrite(text->data, 1, text->len, f) == text->len ? 0 : (errno ? errno : EIO);
}

/* text to path through a temporary file beside it (fm_write_file_atomic);
 * `what` names it in the messages ("report", "chart"). */
static int write_output(const char *what, const char *path, const report_text *text)
{
    report_text content = *text;
    fm_write_failure failed;
    if (fm_write_file_atomic(path, write_text, &content, &failed) == 0)
        return 0;
    const char *reason = strerror(failed.sys_errno);
    switch (failed.step) {
    case FM_WRITE_STEP_CREATE:
        return failure_as(FM_EIO, "cannot create %s '%s': %s", what, path, reason);
    case FM_WRITE_STEP_WRITE:
        return failure_as(FM_EIO, "writing %s '%s': %s", what, path, reason);
    case FM_WRITE_STEP_RENAME:
        return failure_as(FM_EIO, "cannot write %s '%s': %s", what, path, reason);
    case FM_WRITE_STEP_TARGET:
        return failure_as(FM_EIO, "%s", fm_last_error());
    default:
        return failure_as(FM_ENOMEM, "out of memory");
    }
}

/* mkdir -p DIR. */
static int make_folder(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return failure_as(FM_EIO, "--svg: the folder name '%.80s...' is too long", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char keep = *p;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return failure_as(FM_EIO, "--svg: cannot create folder '%s': %s", path,
                              strerror(errno));
        *p = keep;
        if (!keep)
            break;
        while (p[1] == '/')
            p++;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return failure_as(FM_EIO, "--svg: '%s' is not a folder", dir);
    return 0;
}

/* An output against every log (and a chart against the page): one file by
 * any spelling is a usage error. */
static int refuse_log_or_page(const report_opts *o, const named_path *output, int with_page)
{
    int rc = 0;
    for (int i = 0; i < o->n_files && !rc; i++) {
        const named_path log = {"the log", o->files[i]};
        rc = refuse_same_file(output, &log);
    }
    const named_path page = {"-o", o->out};
    return rc || !with_page ? rc : refuse_same_file(output, &page);
}

/* The charts, once their folder is there: each is checked before any is
 * written. */
static int write_svgs(const report_opts *o, const report_output *out)
{
    int rc = make_folder(o->svg_dir);
    char paths[REPORT_N_CHARTS][4200];
    for (int c = 0; c < REPORT_N_CHARTS && !rc; c++) {
        snprintf(paths[c], sizeof paths[c], "%s/%s.svg", o->svg_dir, out->chart_names[c]);
        const named_path chart = {"--svg", paths[c]};
        rc = refuse_log_or_page(o, &chart, 1);
        if (!rc)
            rc = check_outputs(&chart, 1);
    }
    for (int c = 0; c < REPORT_N_CHARTS && !rc; c++)
        rc = write_output("chart", paths[c], &out->chart_svgs[c]);
    return rc;
}

/* ---- the command --------------------------------------------------------- */

int cmd_report(int argc, char **argv)
{
    report_opts o;
    int rc = parse_report(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, report_help);
        return CLI_OK;
    }
    /* -o against the logs by device and inode (parse_report compares the
     * strings), and what is at -o, before any log is read */
    const named_path page = {"-o", o.out};
    if ((rc = refuse_log_or_page(&o, &page, 0)) != 0 || (rc = check_outputs(&page, 1)) != 0)
        return rc;
    report_input in = {o.files, o.n_files, o.labels, o.n_labels, o.title, o.svg_dir != NULL};
    report_output out;
    report_error err;
    if (report_build(&in, &out, &err) != 0)
        return failure_as(err.code, "%s", err.message);
    if (o.svg_dir)
        rc = write_svgs(&o, &out);
    if (!rc)
        rc = write_output("report", o.out, &out.page);
    report_output_free(&out);
    return rc;
}
