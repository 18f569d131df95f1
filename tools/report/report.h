/* report.h — the page builder of `fewmul report` as a module of its own: it
 * reads the JSON Lines logs of `train --log` (every line parsed strictly by
 * json_read.c, every error naming FILE:LINE) and builds one self-contained
 * HTML page (inline CSS and inline SVG from svg_chart.c; no script, no
 * external reference) comparing the runs, and on request each chart as a
 * standalone SVG document. It writes no file and prints nothing: the command
 * (tools/cmd_report.c) parses the options and writes what it gets. */
#ifndef FEWMUL_REPORT_H
#define FEWMUL_REPORT_H

#include <stddef.h>

/* At most this many logs in one report. */
enum { REPORT_MAX_RUNS = 64 };

/* The charts, in the page's order; each has a standalone document too. */
enum { REPORT_N_CHARTS = 6 };

typedef struct report_input {
    const char *const *logs;   /* the log files, 1 to REPORT_MAX_RUNS of them */
    int n_logs;
    const char *const *labels; /* labels[i] names logs[i]; fewer labels than logs:
                                  the others are named after their run's mode */
    int n_labels;
    const char *title;         /* the page's title */
    int with_svg;              /* build the standalone chart documents too */
} report_input;

/* Text owned by a report_output (malloc'd, NUL-terminated). */
typedef struct report_text {
    char *data;
    size_t len;
} report_text;

typedef struct report_output {
    report_text page;                           /* the HTML page */
    /* with_svg: each chart as an SVG file of its own, to be saved as NAME.svg
     * ("error", "lr", "speed", "energy-phase", "energy-layer", "energy-vs-fp32") */
    const char *chart_names[REPORT_N_CHARTS];
    report_text chart_svgs[REPORT_N_CHARTS];
} report_output;

/* Why report_build failed: a negative FM_E* code of fewmul.h (FM_ENOENT: a
 * log that does not exist; FM_EIO: one that cannot be read; FM_EFORMAT: one
 * that is not a log, the message naming FILE:LINE; FM_ENOMEM; FM_EINVAL: an
 * input out of range) and the one-line message to show. */
typedef struct report_error {
    int code;
    char message[1024];
} report_error;

/* Reads the logs and builds the page (and the chart documents). Returns 0
 * with *out filled (free it with report_output_free), or err->code with *out
 * empty. */
int report_build(const report_input *in, report_output *out, report_error *err);
void report_output_free(report_output *out);

#endif
