/* svg_chart.h — what `fewmul report` draws its charts with: a growing text
 * buffer with XML escaping, and two kinds of chart written as SVG text: line
 * charts (linear or logarithmic y, each series decimated to a bounded number
 * of points) and grouped, stacked bar charts. Every chart is one <svg> element
 * of class fm-chart with the given id, 1200 units wide; its marks carry classes
 * (fm-series, fm-bar, ...) that tests look for. Numbers are written with the
 * C library's "C" locale, which the command never changes. */
#ifndef FEWMUL_SVG_CHART_H
#define FEWMUL_SVG_CHART_H

#include <stddef.h>

#if defined(__GNUC__)
#define SB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SB_PRINTF(a, b)
#endif

/* ---- text buffer ---------------------------------------------------------- */

typedef struct sbuf {
    char *data; /* NUL-terminated when not NULL */
    size_t len, cap;
    int oom;    /* an allocation failed: the text is incomplete */
} sbuf;

void sb_put(sbuf *b, const char *s, size_t n);
void sb_puts(sbuf *b, const char *s);
void sb_printf(sbuf *b, const char *fmt, ...) SB_PRINTF(2, 3);
/* s with & < > " ' escaped (valid in HTML and XML text and attributes);
 * control characters other than tab and newline become U+FFFD. */
void sb_text(sbuf *b, const char *s);
void sb_free(sbuf *b);

/* A number for people: 3 significant digits ("12.3", "0.00123", "4.56e+09"). */
const char *fmt_sig(char *buf, size_t cap, double v, int digits);

/* ---- charts ---------------------------------------------------------------- */

enum { CHART_WIDTH = 1200 };

typedef struct legend_item {
    const char *label;
    const char *color;
    const char *dash; /* stroke-dasharray of a line swatch, NULL: solid */
    int box;          /* 1: a filled box (bar kinds), 0: a line */
} legend_item;

typedef struct line_series {
    const double *x, *y; /* y NaN: no value at that x; x ascending */
    size_t n;
    const char *color;
    const char *dash;    /* NULL: solid */
    double width;
    const char *cls;     /* classes after "fm-series", e.g. "fm-run-0 fm-valid" */
    const char *tip;     /* the series' tooltip */
} line_series;

typedef struct line_chart {
    const char *id, *title, *subtitle; /* subtitle may be NULL */
    const char *x_label, *y_label;
    int log_y;                         /* 0: linear from 0 */
    const line_series *series;
    size_t n_series;
    const legend_item *legend;
    size_t n_legend;
    size_t max_points;                 /* per series; more are decimated */
    const char *empty_message;         /* shown when no series has a value */
} line_chart;

typedef struct line_chart_info {
    size_t longest;  /* the most values in one series */
    size_t drawn;    /* the most points drawn for one series */
    int decimated;   /* a series had more than max_points values */
    size_t clamped;  /* values <= 0 drawn at the floor of a log axis */
    size_t beyond;   /* values beyond the axis's range (1e-300 .. 1e300 in
                        magnitude) drawn at its edge */
} line_chart_info;

void svg_line_chart(sbuf *b, const line_chart *c, line_chart_info *info);

typedef struct bar_kind {
    const char *name;
    const char *color;
    const char *cls; /* e.g. "fm-seg-compute" */
} bar_kind;

typedef struct bar_item {
    const char *label;    /* under the bar */
    const char *color;    /* the run's colour: a key strip under the bar */
    const char *cls;      /* e.g. "fm-run-1" */
    const char *tip;      /* tooltip prefix, e.g. "bc+qb, forward" */
    const char *note;     /* above the bar, NULL for none */
    const double *values; /* one per kind, in the chart's base unit */
} bar_item;

typedef struct bar_group {
    const char *label;     /* under the group, NULL for none */
    const bar_item *bars;
    size_t n_bars;
    double ref;            /* > 0: a dashed reference line across the group */
    const char *ref_label;
} bar_group;

typedef struct bar_chart {
    const char *id, *title, *subtitle;
    const char *y_label;     /* "energy" */
    const char *unit;        /* "mJ": shown values are base values * scale */
    double scale;
    const bar_kind *kinds;
    size_t n_kinds;
    const bar_group *groups;
    size_t n_groups;
    double ref_value;        /* a dashed reference line (base unit), NaN: none */
    const char *ref_label;
    const char *empty_message;
} bar_chart;

void svg_bar_chart(sbuf *b, const bar_chart *c);

#endif
