/* svg_chart.c — the charts of svg_chart.h: the text buffer, axes with "nice"
 * ticks (1, 2, 5 times a power of ten; decades on a log axis), legends that
 * wrap, line charts whose long series keep the lowest and the highest value
 * of each bucket (so that spikes survive decimation), and grouped stacked bar
 * charts with tooltips (<title>) on every segment. No script, no external
 * reference: presentation attributes only, so that a chart looks the same
 * inline in the report and as a standalone .svg file. */
#include "svg_chart.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- text buffer ---------------------------------------------------------- */

static int sb_reserve(sbuf *b, size_t more)
{
    if (b->oom)
        return -1;
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1) {
        if (cap > ((size_t)-1) / 2) {
            b->oom = 1;
            return -1;
        }
        cap *= 2;
    }
    char *data = realloc(b->data, cap);
    if (!data) {
        b->oom = 1;
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

void sb_put(sbuf *b, const char *s, size_t n)
{
    if (sb_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sb_puts(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

void sb_printf(sbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(small, sizeof small, fmt, args);
    va_end(args);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        sb_put(b, small, (size_t)n);
        return;
    }
    if (sb_reserve(b, (size_t)n) != 0)
        return;
    va_start(args, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, args);
    va_end(args);
    b->len += (size_t)n;
}

void sb_text(sbuf *b, const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '&':
            sb_puts(b, "&amp;");
            break;
        case '<':
            sb_puts(b, "&lt;");
            break;
        case '>':
            sb_puts(b, "&gt;");
            break;
        case '"':
            sb_puts(b, "&quot;");
            break;
        case '\'':
            sb_puts(b, "&#39;");
            break;
        default:
            if ((*c < 0x20 && *c != '\t' && *c != '\n') || *c == 0x7f)
                sb_puts(b, "\xef\xbf\xbd");
            else
                sb_put(b, (const char *)c, 1);
        }
    }
}

void sb_free(sbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

const char *fmt_sig(char *buf, size_t cap, double v, int digits)
{
    if (!isfinite(v))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.*g", digits, v);
    return buf;
}

/* ---- axes ------------------------------------------------------------------ */

/* Every axis lies within [-AXIS_MAX, AXIS_MAX], and a log axis starts at
 * AXIS_MIN or above: there powers of ten, their multiples and the steps
 * between ticks are normal doubles, so no range, tick or position becomes
 * 0, inf or NaN whatever the values (a JSON number may be 5e-324 or 1e308).
 * Values beyond are drawn at the edge of the plot (line_chart_info.beyond). */
#define AXIS_MAX 1e300
#define AXIS_MIN 1e-300

static double clamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The 1, 2 or 5 times a power of ten nearest above raw. */
static double nice_step(double raw)
{
    if (!(raw > 0) || !isfinite(raw))
        return 1;
    raw = clamp(raw, AXIS_MIN, AXIS_MAX);
    double p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m <= 1.0001 ? 1 : m <= 2.0001 ? 2 : m <= 5.0001 ? 5 : 10) * p;
}

/* The largest 1, 2 or 5 times a power of ten <= v (up: the smallest >= v). */
static double nice_125(double v, int up)
{
    v = clamp(v, AXIS_MIN, AXIS_MAX);
    double p = pow(10, floor(log10(v)));
    static const double m[] = {1, 2, 5, 10};
    if (up) {
        for (int i = 0; i < 4; i++)
            if (m[i] * p >= v * (1 - 1e-9))
                return m[i] * p;
        return 10 * p;
    }
    for (int i = 3; i >= 0; i--)
        if (m[i] * p <= v * (1 + 1e-9))
            return m[i] * p;
    return p;
}

/* A tick label of a linear axis with ticks every step: "0.25", "400k", "1.5M". */
static void fmt_tick(char *buf, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-6) {
        snprintf(buf, cap, "0");
        return;
    }
    const char *suffix = "";
    double div = 1;
    if (fabs(v) >= 1e9 && step >= 1e8) {
        suffix = "G";
        div = 1e9;
    } else if (fabs(v) >= 1e6 && step >= 1e5) {
        suffix = "M";
        div = 1e6;
    } else if (fabs(v) >= 1e4 && step >= 1e3) {
        suffix = "k";
        div = 1e3;
    }
    double s = step / div;
    if (fabs(v) >= 1e12) { /* "2e+12", never a run of 300 digits */
        snprintf(buf, cap, "%g", v);
        return;
    }
    if (s < 1e-4) {
        snprintf(buf, cap, "%g%s", v / div, suffix);
        return;
    }
    int decimals = s >= 1 ? 0 : (int)ceil(-log10(s) - 1e-9);
    snprintf(buf, cap, "%.*f%s", decimals, v / div, suffix);
}

/* A tick label of a log axis: "0.01", "20", "1e-5", "2e+6". */
static void fmt_log_tick(char *buf, size_t cap, double v)
{
    if (!(v > 0) || !isfinite(v)) { /* never on an axis (AXIS_MIN) */
        snprintf(buf, cap, "-");
        return;
    }
    if (v >= 1e-3 && v < 1e5) {
        snprintf(buf, cap, "%g", v);
        return;
    }
    int e = (int)floor(log10(v) + 1e-9);
    double m = v / pow(10, e);
    snprintf(buf, cap, "%.0fe%+d", m, e);
    /* "1e-5" reads better than "1e-05"; keep the sign only when negative */
    if (e >= 0) {
        char *plus = strchr(buf, '+');
        if (plus)
            memmove(plus, plus + 1, strlen(plus));
    }
}

typedef struct axis {
    double lo, hi;
    int log;
    double pos0, pos1; /* screen coordinates of lo and hi */
} axis;

/* Where v goes: a value beyond the axis at its edge, so every coordinate
 * is a number. */
static double axis_pos(const axis *a, double v)
{
    double t;
    if (a->log)
        t = (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    else
        t = (v / 2 - a->lo / 2) / (a->hi / 2 - a->lo / 2); /* halves: no overflow */
    t = isnan(t) ? 0 : clamp(t, 0, 1);
    return a->pos0 + t * (a->pos1 - a->pos0);
}

/* Whether v lies beyond the axis (drawn at its edge). */
static int beyond(const axis *a, double v)
{
    return v < a->lo * (1 - 1e-9) || v > a->hi * (1 + 1e-9);
}

enum { MAX_TICKS = 24 };

/* Ticks of a linear axis: returns their count and the step (at least
 * min_step when that is > 0). */
static int linear_ticks(const axis *a, double target, double *ticks, double *step_out,
                        double min_step)
{
    double step = fmax(nice_step((a->hi - a->lo) / target), min_step);
    int n = 0;
    for (double t = ceil(a->lo / step - 1e-9) * step; t <= a->hi + step * 1e-9 && n < MAX_TICKS;
         t += step)
        ticks[n++] = fabs(t) < step * 1e-9 ? 0 : t;
    *step_out = step;
    return n;
}

static int log_ticks(const axis *a, double *ticks)
{
    double decades = log10(a->hi / a->lo);
    static const double all[] = {1, 2, 5};
    int n = 0;
    int e0 = (int)floor(log10(a->lo) + 1e-9), e1 = (int)ceil(log10(a->hi) - 1e-9);
    int every = decades <= 8 ? 1 : (int)ceil(decades / 8);
    for (int e = e0; e <= e1 && n < MAX_TICKS; e++) {
        for (int i = 0; i < (decades <= 2.5 ? 3 : 1) && n < MAX_TICKS; i++) {
            if (i == 0 && (e - e0) % every != 0)
                continue;
            double v = all[i] * pow(10, e);
            if (v >= a->lo * (1 - 1e-9) && v <= a->hi * (1 + 1e-9))
                ticks[n++] = v;
        }
    }
    return n;
}

/* ---- common frame ------------------------------------------------------------ */

static const double CHAR_W = 7.0; /* about the width of a character at 13 px */

static void svg_begin(sbuf *b, const char *id, int height, const char *title,
                      const char *subtitle)
{
    sb_printf(b, "<svg class=\"fm-chart\" id=\"");
    sb_text(b, id);
    sb_printf(b,
              "\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
              "font-size=\"13\" role=\"img\" aria-label=\"",
              CHART_WIDTH, height, CHART_WIDTH, height);
    sb_text(b, title);
    sb_puts(b, "\">\n");
    sb_printf(b, "<rect class=\"fm-background\" x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" "
                 "fill=\"#ffffff\"/>\n",
              CHART_WIDTH, height);
    sb_puts(b, "<text class=\"fm-title\" x=\"16\" y=\"26\" font-size=\"17\" "
               "font-weight=\"bold\" fill=\"#222\">");
    sb_text(b, title);
    sb_puts(b, "</text>\n");
    if (subtitle && subtitle[0]) {
        sb_puts(b, "<text class=\"fm-subtitle\" x=\"16\" y=\"46\" font-size=\"13\" "
                   "fill=\"#555\">");
        sb_text(b, subtitle);
        sb_puts(b, "</text>\n");
    }
}

/* Legend rows needed from x0 to x1. */
static int legend_rows(const legend_item *items, size_t n, double x0, double x1)
{
    if (n == 0)
        return 0;
    int rows = 1;
    double x = x0;
    for (size_t i = 0; i < n; i++) {
        double w = 28 + CHAR_W * (double)strlen(items[i].label) + 18;
        if (x > x0 && x + w > x1) {
            rows++;
            x = x0;
        }
        x += w;
    }
    return rows;
}

static void draw_legend(sbuf *b, const legend_item *items, size_t n, double x0, double x1,
                        double y)
{
    if (n == 0)
        return;
    sb_puts(b, "<g class=\"fm-legend\">\n");
    double x = x0;
    for (size_t i = 0; i < n; i++) {
        double w = 28 + CHAR_W * (double)strlen(items[i].label) + 18;
        if (x > x0 && x + w > x1) {
            y += 20;
            x = x0;
        }
        if (items[i].box)
            sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"12\" fill=\"%s\" "
                         "stroke=\"#444\" stroke-width=\"0.5\"/>",
                      x, y - 10, items[i].color);
        else
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                         "stroke-width=\"2.5\"%s%s%s/>",
                      x, y - 4, x + 22, y - 4, items[i].color,
                      items[i].dash ? " stroke-dasharray=\"" : "",
                      items[i].dash ? items[i].dash : "", items[i].dash ? "\"" : "");
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#222\">", x + 28, y);
        sb_text(b, items[i].label);
        sb_puts(b, "</text>\n");
        x += w;
    }
    sb_puts(b, "</g>\n");
}

static void draw_empty(sbuf *b, const char *message, double x0, double x1, double y0, double y1)
{
    sb_printf(b, "<rect class=\"fm-plot\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                 "fill=\"#fafafa\" stroke=\"#ccc\"/>\n",
              x0, y0, x1 - x0, y1 - y0);
    sb_printf(b, "<text class=\"fm-empty\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                 "font-size=\"15\" fill=\"#666\">",
              (x0 + x1) / 2, (y0 + y1) / 2);
    sb_text(b, message ? message : "no data");
    sb_puts(b, "</text>\n");
}

/* The y axis: grid lines, tick labels and the rotated title. */
static void draw_y_axis(sbuf *b, const axis *ya, double x0, double x1, const char *label,
                        const char *unit)
{
    double ticks[MAX_TICKS], step = 0;
    int n = ya->log ? log_ticks(ya, ticks) : linear_ticks(ya, 6, ticks, &step, 0);
    sb_puts(b, "<g class=\"fm-y-axis\">\n");
    for (int i = 0; i < n; i++) {
        double y = axis_pos(ya, ticks[i]);
        char t[48];
        if (ya->log)
            fmt_log_tick(t, sizeof t, ticks[i]);
        else
            fmt_tick(t, sizeof t, ticks[i], step);
        sb_printf(b, "<line class=\"fm-grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                     "stroke=\"#e3e3e3\"/>",
                  x0, y, x1, y);
        sb_printf(b, "<text class=\"fm-tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                     "fill=\"#333\">%s</text>\n",
                  x0 - 6, y + 4, t);
    }
    double mid = (ya->pos0 + ya->pos1) / 2;
    sb_printf(b, "<text class=\"fm-axis-title\" transform=\"translate(20,%.1f) rotate(-90)\" "
                 "text-anchor=\"middle\" fill=\"#222\">",
              mid);
    sb_text(b, label);
    if (unit && unit[0]) {
        sb_puts(b, " (");
        sb_text(b, unit);
        sb_puts(b, ")");
    }
    sb_puts(b, "</text>\n</g>\n");
}

/* ---- line charts ------------------------------------------------------------- */

/* The indices of s's points to draw: all its values, or, beyond max points,
 * the lowest and the highest of each of max/2 buckets, in x order. */
static size_t pick_points(const line_series *s, size_t max, size_t *out, size_t valid)
{
    size_t n = 0;
    if (valid <= max) {
        for (size_t i = 0; i < s->n; i++)
            if (isfinite(s->y[i]) && isfinite(s->x[i]))
                out[n++] = i;
        return n;
    }
    size_t buckets = max / 2 ? max / 2 : 1;
    size_t k = 0; /* valid values seen */
    size_t i = 0;
    for (size_t bk = 0; bk < buckets; bk++) {
        size_t end = (size_t)((double)valid * (double)(bk + 1) / (double)buckets);
        if (bk + 1 == buckets)
            end = valid;
        size_t lo = (size_t)-1, hi = (size_t)-1;
        for (; k < end && i < s->n; i++) {
            if (!isfinite(s->y[i]) || !isfinite(s->x[i]))
                continue;
            if (lo == (size_t)-1 || s->y[i] < s->y[lo])
                lo = i;
            if (hi == (size_t)-1 || s->y[i] > s->y[hi])
                hi = i;
            k++;
        }
        if (lo == (size_t)-1)
            continue;
        if (lo == hi)
            out[n++] = lo;
        else if (lo < hi) {
            out[n++] = lo;
            out[n++] = hi;
        } else {
            out[n++] = hi;
            out[n++] = lo;
        }
    }
    return n;
}

/* The extent of the values of a line chart's series. */
typedef struct line_ranges {
    double xmin, xmax, ymin, ymax;
    double ypos; /* the smallest positive y */
} line_ranges;

static void find_line_ranges(const line_chart *c, line_ranges *r, line_chart_info *info)
{
    *r = (line_ranges){INFINITY, -INFINITY, INFINITY, -INFINITY, INFINITY};
    for (size_t k = 0; k < c->n_series; k++) {
        const line_series *s = &c->series[k];
        size_t valid = 0;
        for (size_t i = 0; i < s->n; i++) {
            double y = s->y[i];
            if (!isfinite(y) || !isfinite(s->x[i]))
                continue;
            valid++;
            r->xmin = fmin(r->xmin, s->x[i]);
            r->xmax = fmax(r->xmax, s->x[i]);
            r->ymin = fmin(r->ymin, y);
            r->ymax = fmax(r->ymax, y);
            if (y > 0)
                r->ypos = fmin(r->ypos, y);
        }
        if (valid > info->longest)
            info->longest = valid;
    }
}

/* The y axis of a line chart: decades of 1, 2, 5 on a log scale, else
 * from 0 (or below, for negative values) to a nice step above the top. */
static void line_y_range(const line_chart *c, const line_ranges *r, axis *ya)
{
    if (c->log_y) {
        ya->lo = nice_125(r->ypos, 0);
        ya->hi = nice_125(r->ymax, 1);
        if (ya->hi <= ya->lo * 1.0001) {
            ya->lo = ya->lo > AXIS_MIN * 2 ? ya->lo / 2 : ya->lo;
            ya->hi = ya->hi < AXIS_MAX / 2 ? ya->hi * 2 : ya->hi;
        }
    } else {
        /* at least AXIS_MIN / 5 a step: below, a top of 1e-310 would have
         * steps of a few denormal bits */
        double top = r->ymax > AXIS_MIN ? fmin(r->ymax, AXIS_MAX) : r->ymax > 0 ? AXIS_MIN : 1;
        double step = nice_step(top / 5);
        ya->hi = fmin(ceil(top / step - 1e-9) * step, AXIS_MAX);
        ya->lo = r->ymin < 0 ? fmax(floor(fmax(r->ymin, -AXIS_MAX) / step) * step, -AXIS_MAX) : 0;
        if (ya->hi <= ya->lo)
            ya->hi = ya->lo + step;
    }
}

/* The x axis of a line chart, its grid and title, and the axis lines. */
static void draw_line_x_axis(sbuf *b, const line_chart *c, const axis *xa, double x0, double x1,
                             double y0, double y1)
{
    double ticks[MAX_TICKS], step;
    /* whole numbers (epochs) get whole ticks */
    int whole = 1;
    for (size_t k = 0; k < c->n_series && whole; k++)
        for (size_t i = 0; i < c->series[k].n && whole; i++)
            whole = c->series[k].x[i] == floor(c->series[k].x[i]);
    int n = linear_ticks(xa, 10, ticks, &step, whole ? 1 : 0);
    sb_puts(b, "<g class=\"fm-x-axis\">\n");
    for (int i = 0; i < n; i++) {
        double x = axis_pos(xa, ticks[i]);
        char t[48];
        fmt_tick(t, sizeof t, ticks[i], step);
        sb_printf(b, "<line class=\"fm-grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                     "stroke=\"#efefef\"/>",
                  x, y0, x, y1);
        sb_printf(b, "<text class=\"fm-tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                     "fill=\"#333\">%s</text>\n",
                  x, y1 + 18, t);
    }
    sb_printf(b, "<text class=\"fm-axis-title\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                 "fill=\"#222\">",
              (x0 + x1) / 2, y1 + 42);
    sb_text(b, c->x_label);
    sb_puts(b, "</text>\n</g>\n");
    sb_printf(b, "<path class=\"fm-axis\" d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" "
                 "stroke=\"#333\"/>\n",
              x0, y0, y1, x1);
}

/* One series' polyline through its m picked points, with a marker on each
 * where the points are few enough to be told apart. */
static void draw_series(sbuf *b, const line_chart *c, const line_series *s, const size_t *pick,
                        size_t m, const axis *xa, const axis *ya, line_chart_info *info)
{
    sb_printf(b, "<polyline class=\"fm-series %s\" fill=\"none\" stroke=\"%s\" "
                 "stroke-width=\"%.1f\" stroke-linejoin=\"round\"%s%s%s points=\"",
              s->cls, s->color, s->width, s->dash ? " stroke-dasharray=\"" : "",
              s->dash ? s->dash : "", s->dash ? "\"" : "");
    for (size_t j = 0; j < m; j++) {
        double y = s->y[pick[j]];
        if (c->log_y && y <= 0) {
            y = ya->lo;
            info->clamped++;
        } else if (beyond(ya, y)) {
            info->beyond++;
        }
        sb_printf(b, "%s%.1f,%.1f", j ? " " : "", axis_pos(xa, s->x[pick[j]]), axis_pos(ya, y));
    }
    sb_puts(b, "\"><title>");
    sb_text(b, s->tip);
    sb_puts(b, "</title></polyline>\n");
    if (m <= 60) {
        sb_printf(b, "<g class=\"fm-markers %s\" fill=\"%s\">", s->cls, s->color);
        for (size_t j = 0; j < m; j++) {
            double y = s->y[pick[j]];
            if (c->log_y && y <= 0)
                y = ya->lo;
            sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\"/>",
                      axis_pos(xa, s->x[pick[j]]), axis_pos(ya, y), m == 1 ? 4.0 : 2.5);
        }
        sb_puts(b, "</g>\n");
    }
}

/* Every series with a value, each decimated to at most max_points points. */
static void draw_all_series(sbuf *b, const line_chart *c, const axis *xa, const axis *ya,
                            line_chart_info *info)
{
    size_t *pick = NULL;
    size_t cap = 0;
    for (size_t k = 0; k < c->n_series; k++) {
        const line_series *s = &c->series[k];
        size_t valid = 0;
        for (size_t i = 0; i < s->n; i++)
            if (isfinite(s->y[i]) && isfinite(s->x[i]))
                valid++;
        if (valid == 0)
            continue;
        size_t want = valid < c->max_points ? valid : c->max_points;
        if (want > cap) {
            size_t *p = realloc(pick, want * sizeof *pick);
            if (!p) {
                b->oom = 1;
                break;
            }
            pick = p;
            cap = want;
        }
        if (valid > c->max_points)
            info->decimated = 1;
        size_t m = pick_points(s, c->max_points, pick, valid);
        if (m > info->drawn)
            info->drawn = m;
        draw_series(b, c, s, pick, m, xa, ya, info);
    }
    free(pick);
}

void svg_line_chart(sbuf *b, const line_chart *c, line_chart_info *info)
{
    memset(info, 0, sizeof *info);
    const double x0 = 84, x1 = CHART_WIDTH - 30;
    int rows = legend_rows(c->legend, c->n_legend, x0, x1);
    double legend_y = c->subtitle && c->subtitle[0] ? 72 : 54;
    double y0 = legend_y + rows * 20 + 6;
    int height = (int)(y0 + 340 + 56);
    double y1 = height - 56;
    svg_begin(b, c->id, height, c->title, c->subtitle);
    draw_legend(b, c->legend, c->n_legend, x0, x1, legend_y);

    line_ranges r;
    find_line_ranges(c, &r, info);
    if (info->longest == 0 || (c->log_y && !isfinite(r.ypos))) {
        draw_empty(b, c->empty_message, x0, x1, y0, y1);
        sb_puts(b, "</svg>\n");
        return;
    }
    r.xmin = clamp(r.xmin, -AXIS_MAX, AXIS_MAX);
    r.xmax = clamp(r.xmax, -AXIS_MAX, AXIS_MAX);
    if (r.xmax - r.xmin < fmax(fabs(r.xmin), 1) * 1e-9) { /* one x: a unit either side */
        double pad = fmax(fabs(r.xmin), 1) * 1e-3;
        r.xmin -= pad > 1 ? pad : 1;
        r.xmax += pad > 1 ? pad : 1;
    }
    axis xa = {r.xmin, r.xmax, 0, x0, x1};
    axis ya = {0, 1, c->log_y, y1, y0};
    line_y_range(c, &r, &ya);
    draw_y_axis(b, &ya, x0, x1, c->y_label, NULL);
    draw_line_x_axis(b, c, &xa, x0, x1, y0, y1);
    draw_all_series(b, c, &xa, &ya, info);
    sb_puts(b, "</svg>\n");
}

/* ---- bar charts -------------------------------------------------------------- */

/* A segment's value: a positive number, else nothing to draw. */
static double segment(double v) { return v > 0 && isfinite(v) ? v : 0; }

static double bar_total(const bar_chart *c, const bar_item *bar)
{
    double t = 0;
    for (size_t k = 0; k < c->n_kinds; k++)
        t += segment(bar->values[k]);
    return t;
}

/* A label cut to at most max characters (UTF-8 aware), with an ellipsis. */
static void cut_label(char *buf, size_t cap, const char *s, size_t max)
{
    size_t chars = 0, i = 0;
    while (s[i] && chars < max) {
        i++;
        while (((unsigned char)s[i] & 0xc0) == 0x80)
            i++;
        chars++;
    }
    if (!s[i])
        snprintf(buf, cap, "%s", s);
    else
        snprintf(buf, cap, "%.*s\xe2\x80\xa6", (int)i, s);
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* Where a bar chart's parts go. */
typedef struct bar_layout {
    double x0, x1;       /* the plot's left and right */
    double y0, y1;       /* its top and its baseline */
    double slot, gap;    /* a bar's width with its margins; between groups, in slots */
    double bar_w;
    double label_h;      /* the room of the bar labels under the baseline */
    int rotate;          /* the bar labels are too wide: slanted */
    size_t n_bars;
    double top;          /* the largest bar or reference, in base units */
    int height;
} bar_layout;

static void bar_layout_of(const bar_chart *c, double y0, bar_layout *l)
{
    size_t n_bars = 0, longest = 0;
    double top = 0;
    int grouped = 0;
    for (size_t g = 0; g < c->n_groups; g++) {
        n_bars += c->groups[g].n_bars;
        if (c->groups[g].ref > 0)
            top = fmax(top, c->groups[g].ref);
        if (c->groups[g].label)
            grouped = 1;
        for (size_t i = 0; i < c->groups[g].n_bars; i++) {
            const bar_item *bar = &c->groups[g].bars[i];
            top = fmax(top, bar_total(c, bar));
            size_t len = utf8_chars(bar->label);
            if (len > longest)
                longest = len;
        }
    }
    if (isfinite(c->ref_value))
        top = fmax(top, c->ref_value);
    l->n_bars = n_bars;
    l->top = top;
    l->y0 = y0;
    /* the widths: a bar slot each, and a slot's gap between groups */
    l->gap = c->n_groups > 1 ? 1.0 : 0.0;
    l->slot = n_bars ? (l->x1 - l->x0 - 8) / ((double)n_bars + l->gap * (double)c->n_groups) : 0;
    l->bar_w = fmin(l->slot * 0.8, 110);
    if (longest > 24)
        longest = 24;
    l->rotate = (double)longest * CHAR_W > l->slot - 4;
    l->label_h = l->rotate ? 12 + (double)longest * CHAR_W * 0.66 : 20;
    double plot_h = 320;
    l->height = (int)(y0 + plot_h + 10 + l->label_h + (grouped ? 30 : 6));
    l->y1 = y0 + plot_h;
}

/* One stacked bar in the slot starting at x: its segments with tooltips,
 * the run's key strip, its note above and its label below. */
static void draw_bar(sbuf *b, const bar_chart *c, const bar_item *bar, double x,
                     const bar_layout *l, const axis *ya)
{
    double bx = x + (l->slot - l->bar_w) / 2, cx = x + l->slot / 2;
    double total = bar_total(c, bar), acc = 0;
    for (size_t k = 0; k < c->n_kinds; k++) {
        double v = segment(bar->values[k]);
        if (!(v > 0))
            continue;
        double ya0 = axis_pos(ya, acc * c->scale), ya1 = axis_pos(ya, (acc + v) * c->scale);
        acc += v;
        char val[32], pct[32];
        sb_printf(b, "<rect class=\"fm-bar fm-seg %s %s\" x=\"%.1f\" y=\"%.2f\" "
                     "width=\"%.1f\" height=\"%.2f\" fill=\"%s\"><title>",
                  c->kinds[k].cls, bar->cls, bx, ya1, l->bar_w, ya0 - ya1, c->kinds[k].color);
        sb_text(b, bar->tip);
        sb_puts(b, ": ");
        sb_text(b, c->kinds[k].name);
        sb_printf(b, " %s %s (%s%% of %s)", fmt_sig(val, sizeof val, v * c->scale, 3), c->unit,
                  fmt_sig(pct, sizeof pct, 100 * v / total, 3), "the bar");
        sb_puts(b, "</title></rect>\n");
    }
    double ytop = axis_pos(ya, total * c->scale);
    /* the run's key colour, a strip under the bar */
    sb_printf(b, "<rect class=\"fm-bar-key %s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                 "height=\"5\" fill=\"%s\"/>\n",
              bar->cls, bx, l->y1 + 2, l->bar_w, bar->color);
    if (bar->note && bar->note[0]) {
        sb_printf(b, "<text class=\"fm-bar-note\" x=\"%.1f\" y=\"%.1f\" "
                     "text-anchor=\"middle\" font-size=\"12\" fill=\"#222\">",
                  cx, ytop - 6);
        sb_text(b, bar->note);
        sb_puts(b, "</text>\n");
    }
    char label[128];
    cut_label(label, sizeof label, bar->label, 24);
    if (l->rotate)
        sb_printf(b, "<text class=\"fm-bar-label\" transform=\"translate(%.1f,%.1f) "
                     "rotate(-40)\" text-anchor=\"end\" font-size=\"12\" fill=\"#333\">",
                  cx + 4, l->y1 + 18);
    else
        sb_printf(b, "<text class=\"fm-bar-label\" x=\"%.1f\" y=\"%.1f\" "
                     "text-anchor=\"middle\" font-size=\"12\" fill=\"#333\">",
                  cx, l->y1 + 20);
    sb_text(b, label);
    sb_puts(b, "</text>\n");
}

/* A dashed reference line from x_from to x_to at value (base units), with
 * its label at the right end, label_dx before it. */
static void draw_ref(sbuf *b, const bar_chart *c, const axis *ya, double value, double x_from,
                     double x_to, const char *label, double label_dx)
{
    double y = axis_pos(ya, value * c->scale);
    sb_printf(b, "<path class=\"fm-ref\" d=\"M%.1f %.1fH%.1f\" stroke=\"#555\" "
                 "stroke-dasharray=\"6 4\" fill=\"none\"/>\n",
              x_from, y, x_to);
    if (label) {
        sb_printf(b, "<text class=\"fm-ref-label\" x=\"%.1f\" y=\"%.1f\" "
                     "text-anchor=\"end\" font-size=\"12\" fill=\"#555\">",
                  x_to - label_dx, y - 5);
        sb_text(b, label);
        sb_puts(b, "</text>\n");
    }
}

/* Group g's bars from x on, its reference line, its label under them and
 * the line that separates it from the next; returns the x after its bars. */
static double draw_group(sbuf *b, const bar_chart *c, size_t g, double x, const bar_layout *l,
                         const axis *ya)
{
    const bar_group *grp = &c->groups[g];
    double gx0 = x;
    sb_puts(b, "<g class=\"fm-group\">\n");
    for (size_t i = 0; i < grp->n_bars; i++) {
        draw_bar(b, c, &grp->bars[i], x, l, ya);
        x += l->slot;
    }
    if (grp->ref > 0)
        draw_ref(b, c, ya, grp->ref, gx0, x, grp->ref_label, 2);
    if (grp->label) {
        double gx1 = x;
        sb_printf(b, "<text class=\"fm-group-label\" x=\"%.1f\" y=\"%.1f\" "
                     "text-anchor=\"middle\" font-weight=\"bold\" fill=\"#222\">",
                  (gx0 + gx1) / 2, l->y1 + 10 + l->label_h + 16);
        char label[128];
        cut_label(label, sizeof label, grp->label, (size_t)fmax(3, (gx1 - gx0) / CHAR_W));
        sb_text(b, label);
        sb_puts(b, "</text>\n");
        if (g + 1 < c->n_groups)
            sb_printf(b, "<line class=\"fm-group-sep\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                         "y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                      x + l->slot * l->gap / 2, l->y0, x + l->slot * l->gap / 2,
                      l->y1 + 10 + l->label_h + 20);
    }
    sb_puts(b, "</g>\n");
    return x;
}

void svg_bar_chart(sbuf *b, const bar_chart *c)
{
    bar_layout l = {.x0 = 92, .x1 = CHART_WIDTH - 24};
    legend_item legend[32];
    size_t n_legend = 0;
    for (size_t k = 0; k < c->n_kinds && n_legend < 32; k++)
        legend[n_legend++] = (legend_item){c->kinds[k].name, c->kinds[k].color, NULL, 1};
    int rows = legend_rows(legend, n_legend, l.x0, l.x1);
    double legend_y = c->subtitle && c->subtitle[0] ? 72 : 54;
    bar_layout_of(c, legend_y + rows * 20 + 14, &l);
    svg_begin(b, c->id, l.height, c->title, c->subtitle);
    draw_legend(b, legend, n_legend, l.x0, l.x1, legend_y);
    if (l.n_bars == 0 || !(l.top > 0)) {
        draw_empty(b, c->empty_message, l.x0, l.x1, l.y0, l.y1);
        sb_puts(b, "</svg>\n");
        return;
    }
    axis ya = {0, 1, 0, l.y1, l.y0};
    double shown_top = clamp(l.top * c->scale, AXIS_MIN, AXIS_MAX / 2);
    double step = nice_step(shown_top / 5);
    ya.hi = ceil(shown_top * 1.08 / step - 1e-9) * step;
    draw_y_axis(b, &ya, l.x0, l.x1, c->y_label, c->unit);
    sb_printf(b, "<path class=\"fm-axis\" d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" "
                 "stroke=\"#333\"/>\n",
              l.x0, l.y0, l.y1, l.x1);

    double x = l.x0 + 4 + l.slot * l.gap / 2;
    for (size_t g = 0; g < c->n_groups; g++)
        x = draw_group(b, c, g, x, &l, &ya) + l.slot * l.gap;
    if (isfinite(c->ref_value) && c->ref_value > 0)
        draw_ref(b, c, &ya, c->ref_value, l.x0, l.x1, c->ref_label, 4);
    sb_puts(b, "</svg>\n");
}
