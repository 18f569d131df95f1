/* report.c — the report module (report.h): reads the JSON Lines logs of
 * `train --log` (epoch lines, then a finished run's {"result": R} line, each
 * parsed strictly by json_read.c, every error naming FILE:LINE) and builds the
 * page: the error, learning rate and speed of each run per epoch, its energy
 * ledger by phase, by layer and against the fp32 run, and a table of the runs,
 * as one self-contained HTML page with inline SVG charts (svg_chart.c); and
 * each chart as an SVG document of its own. Writes no file, prints nothing. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* fdopen */
#endif
#include "report.h"

#include "fewmul.h"
#include "json_read.h"
#include "svg_chart.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__GNUC__)
#define REPORT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define REPORT_PRINTF(a, b)
#endif

/* A series of more epochs is drawn with this many points (svg_chart.h). */
enum { REPORT_MAX_POINTS = 1000 };
/* The longest line a log may have (docs/cli.md, report). */
enum { REPORT_MAX_LINE = 1 << 20 };

/* ---- runs ---------------------------------------------------------------- */

/* The columns of an epoch line (docs/cli.md, "--log line keys"). */
enum {
    C_EPOCH, C_EPOCHS, C_LR, C_LOSS, C_TRAIN, C_VALID, C_TEST, C_BEST_EPOCH, C_BEST_TEST,
    C_TRAIN_S, C_EPOCH_S, C_IPS, N_COLS
};
typedef enum { K_COUNT1, K_COUNT0, K_NUMBER, K_PCT } key_kind;
static const struct {
    const char *key;
    key_kind kind; /* counts are whole numbers, never null; numbers may be null */
} epoch_keys[N_COLS] = {
    {"epoch", K_COUNT1},          {"epochs", K_COUNT1},        {"lr", K_NUMBER},
    {"train_loss", K_NUMBER},     {"train_error_pct", K_PCT},  {"valid_error_pct", K_PCT},
    {"test_error_pct", K_PCT},    {"best_epoch", K_COUNT0},    {"best_test_error_pct", K_PCT},
    {"train_seconds", K_NUMBER},  {"epoch_seconds", K_NUMBER}, {"images_per_s", K_NUMBER}};

enum { MAX_LEVELS = 16, MAX_PHASES = 8 };

/* Energy in the report's base unit (joules when the table is physical):
 * computation, communication at each memory level (report.levels), and
 * communication the table does not price by level. */
typedef struct energy {
    double compute;
    double level[MAX_LEVELS];
    double other;
} energy;

typedef struct named_energy {
    const char *name, *shape;
    energy e;
} named_energy;

typedef struct run {
    const char *path;
    char label[160];
    const char *color;
    int index;
    /* the epoch lines */
    size_t n, cap;
    double *col[N_COLS];
    /* the result line, when there is one */
    json_doc doc;
    const jv *result;
    long result_line;
    char mode[64];
    const char *arch, *model, *data, *weights;
    int qb;
    /* the energy ledger, when the result has one */
    int has_ledger, in_energy;
    const char *table_name, *table_unit;
    double jpu;
    named_energy phases[MAX_PHASES];
    int n_phases;
    named_energy *layers;
    int n_layers;
    energy total, train; /* all phases; all but eval */
    double steps, train_examples; /* training passes and examples (ledger.passes) */
} run;

typedef struct report {
    const report_input *in;
    report_error *err;   /* where a failure is told */
    run *runs;
    int n;
    const char *levels[MAX_LEVELS]; /* the memory levels met, in order */
    int n_levels;
    int physical;        /* the energy charts are in joules */
    const char *unit;    /* else in this table unit */
    int ref;             /* the fp32 run among those in the energy charts, or -1 */
    int n_energy;
    sbuf notes;          /* <li> items */
} report;

static const char *const run_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                         "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                         "#bcbd22", "#7f7f7f"};

static void run_free(run *r)
{
    for (int c = 0; c < N_COLS; c++)
        free(r->col[c]);
    free(r->layers);
    json_doc_free(&r->doc);
}

/* A failure: its code and its message, for the command to show. */
static int fail(report_error *err, int code, const char *fmt, ...) REPORT_PRINTF(3, 4);
static int fail(report_error *err, int code, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, args);
    va_end(args);
    err->code = code;
    return code;
}

/* Where a message points: the file and the line being read. */
typedef struct where {
    const char *path;
    long line;
    report_error *err;
} where;

static int bad(const where *w, const char *fmt, ...) REPORT_PRINTF(2, 3);
static int bad(const where *w, const char *fmt, ...)
{
    char msg[768];
    va_list args;
    va_start(args, fmt);
    vsnprintf(msg, sizeof msg, fmt, args);
    va_end(args);
    if (w->line > 0)
        return fail(w->err, FM_EFORMAT, "%s:%ld: %s", w->path, w->line, msg);
    return fail(w->err, FM_EFORMAT, "%s: %s", w->path, msg);
}

static int no_memory(report_error *err)
{
    return fail(err, FM_ENOMEM, "out of memory");
}

/* "a string", or "2.5" for a number: what a value is, for messages. */
static const char *what_is(const jv *v, char *buf, size_t cap)
{
    if (v && v->type == JV_NUMBER) {
        snprintf(buf, cap, "%.6g", v->u.number);
        return buf;
    }
    return jv_type_name(v);
}

/* ---- the epoch lines ----------------------------------------------------- */

static int add_row(run *r, const double *row, report_error *err)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 256;
        for (int c = 0; c < N_COLS; c++) {
            double *p = realloc(r->col[c], cap * sizeof *p);
            if (!p)
                return no_memory(err);
            r->col[c] = p;
        }
        r->cap = cap;
    }
    for (int c = 0; c < N_COLS; c++)
        r->col[c][r->n] = row[c];
    r->n++;
    return 0;
}

static int read_epoch_line(run *r, const where *w, const jv *obj)
{
    double row[N_COLS];
    char buf[48];
    for (int c = 0; c < N_COLS; c++) {
        const char *key = epoch_keys[c].key;
        const jv *v = jv_get(obj, key);
        key_kind kind = epoch_keys[c].kind;
        if (!v)
            return bad(w, "no '%s' key: not a 'fewmul train --log' epoch line", key);
        if (v->type == JV_NULL && (kind == K_NUMBER || kind == K_PCT)) {
            row[c] = NAN;
            continue;
        }
        if (v->type != JV_NUMBER)
            return bad(w, "'%s' is %s, expected a number", key, what_is(v, buf, sizeof buf));
        double x = v->u.number;
        if ((kind == K_COUNT1 || kind == K_COUNT0) &&
            (x != floor(x) || x < (kind == K_COUNT1 ? 1 : 0) || x > 1e12))
            return bad(w, "'%s' is %s, expected a whole number >= %d", key,
                       what_is(v, buf, sizeof buf), kind == K_COUNT1 ? 1 : 0);
        if (kind == K_PCT && (x < 0 || x > 100))
            return bad(w, "'%s' is %s, expected a percentage (0 to 100)", key,
                       what_is(v, buf, sizeof buf));
        row[c] = x;
    }
    if (row[C_EPOCH] > row[C_EPOCHS])
        return bad(w, "epoch %.0f of %.0f", row[C_EPOCH], row[C_EPOCHS]);
    if (r->n > 0 && row[C_EPOCH] <= r->col[C_EPOCH][r->n - 1])
        return bad(w, "epoch %.0f follows epoch %.0f (two runs in one log?)", row[C_EPOCH],
                   r->col[C_EPOCH][r->n - 1]);
    return add_row(r, row, w->err);
}

/* ---- the result line ----------------------------------------------------- */

/* A number with its decimals, "1.2e+15" beyond a billion (a log may hold
 * 1e308: never a run of 300 digits), "-" when not finite. */
static const char *fixed(char *buf, size_t cap, double v, int decimals)
{
    if (!isfinite(v))
        snprintf(buf, cap, "-");
    else if (fabs(v) < 1e9)
        snprintf(buf, cap, "%.*f", decimals, v);
    else
        snprintf(buf, cap, "%.3g", v);
    return buf;
}

static int get_string(const where *w, const jv *obj, const char *path, const char *key,
                      int required, const char **out)
{
    const jv *v = jv_get(obj, key);
    *out = NULL;
    if (!v || v->type == JV_NULL) {
        if (required)
            return bad(w, "%s has no '%s'", path, key);
        return 0;
    }
    if (v->type != JV_STRING)
        return bad(w, "%s.%s is %s, expected a string", path, key, jv_type_name(v));
    *out = v->u.string.s;
    return 0;
}

/* A number, or NAN when absent or null (unless required). */
static int get_number(const where *w, const jv *obj, const char *path, const char *key,
                      int required, double *out)
{
    const jv *v = jv_get(obj, key);
    *out = NAN;
    if (!v || v->type == JV_NULL) {
        if (required)
            return bad(w, "%s has no '%s'", path, key);
        return 0;
    }
    if (v->type != JV_NUMBER)
        return bad(w, "%s.%s is %s, expected a number", path, key, jv_type_name(v));
    *out = v->u.number;
    return 0;
}

static int get_object(const where *w, const jv *obj, const char *path, const char *key,
                      const jv **out)
{
    const jv *v = jv_get(obj, key);
    *out = v;
    if (!v)
        return bad(w, "%s has no '%s'", path, key);
    if (v->type != JV_OBJECT)
        return bad(w, "%s.%s is %s, expected an object", path, key, jv_type_name(v));
    return 0;
}

/* The index of a memory level among those met so far; a new one is added
 * (-1 when there are too many: its bytes count as unpriced). */
static int level_index(report *rep, const char *name)
{
    for (int i = 0; i < rep->n_levels; i++)
        if (strcmp(rep->levels[i], name) == 0)
            return i;
    if (rep->n_levels >= MAX_LEVELS)
        return -1;
    rep->levels[rep->n_levels] = name;
    return rep->n_levels++;
}

/* A level's cost per byte read and written in table t: its entry in levels,
 * or for "network" the object table.network (costs per byte received and
 * sent), when the table has one. */
static int level_costs(const jv *t, const char *name, double *rd, double *wr)
{
    const jv *levels = jv_get(t, "levels");
    for (size_t i = 0; levels && i < levels->u.array.count; i++) {
        const jv *lv = levels->u.array.items[i];
        const jv *n = jv_get(lv, "name");
        if (n && n->type == JV_STRING && strcmp(n->u.string.s, name) == 0) {
            *rd = jv_get(lv, "read_cost_per_byte")->u.number;
            *wr = jv_get(lv, "write_cost_per_byte")->u.number;
            return 1;
        }
    }
    const jv *net = jv_get(t, name);
    if (strcmp(name, "network") == 0 && net && net->type == JV_OBJECT) {
        const jv *a = jv_get(net, "receive_cost_per_byte"), *b = jv_get(net, "send_cost_per_byte");
        if (!a && !b) {
            a = jv_get(net, "read_cost_per_byte");
            b = jv_get(net, "write_cost_per_byte");
        }
        if (a && b && a->type == JV_NUMBER && b->type == JV_NUMBER) {
            *rd = a->u.number;
            *wr = b->u.number;
            return 1;
        }
    }
    return 0;
}

static int check_table(const where *w, const jv *t)
{
    const char *s;
    double jpu;
    if (get_string(w, t, "result.table", "name", 1, &s) ||
        get_string(w, t, "result.table", "unit", 1, &s) ||
        get_number(w, t, "result.table", "joules_per_unit", 1, &jpu))
        return FM_EFORMAT;
    if (jpu < 0)
        return bad(w, "result.table.joules_per_unit is negative");
    const jv *levels = jv_get(t, "levels");
    if (!levels || levels->type != JV_ARRAY)
        return bad(w, "result.table.levels is %s, expected an array", jv_type_name(levels));
    for (size_t i = 0; i < levels->u.array.count; i++) {
        const jv *lv = levels->u.array.items[i];
        char path[64];
        snprintf(path, sizeof path, "result.table.levels[%zu]", i);
        double x;
        if (!lv || lv->type != JV_OBJECT)
            return bad(w, "%s is %s, expected an object", path, jv_type_name(lv));
        if (get_string(w, lv, path, "name", 1, &s) ||
            get_number(w, lv, path, "read_cost_per_byte", 1, &x) ||
            get_number(w, lv, path, "write_cost_per_byte", 1, &x))
            return FM_EFORMAT;
    }
    return 0;
}

/* A priced part P of the ledger as energy: computation, and communication
 * split by level with the table's costs per byte (the level "network", the
 * bytes received from and sent to the other ranks of an MPI run, at P's
 * network_cost when it has one); what the levels do not account for (a level
 * the table does not price) goes to the one level that has bytes and no
 * price, or else to `other`. */
static int read_part(report *rep, run *r, const where *w, const jv *table, const jv *P,
                     const char *path, energy *e)
{
    memset(e, 0, sizeof *e);
    if (!P || P->type != JV_OBJECT)
        return bad(w, "%s is %s, expected an object", path, jv_type_name(P));
    double compute, comm;
    const jv *rb, *wb;
    if (get_number(w, P, path, "compute", 1, &compute) ||
        get_number(w, P, path, "communication", 1, &comm) ||
        get_object(w, P, path, "read_bytes", &rb) || get_object(w, P, path, "written_bytes", &wb))
        return FM_EFORMAT;
    if (compute < 0 || comm < 0)
        return bad(w, "%s: a negative cost", path);
    e->compute = compute;
    double priced = 0, network_cost;
    int unpriced = -2; /* -2: none, -1: several or unknown, else the level */
    if (get_number(w, P, path, "network_cost", 0, &network_cost))
        return FM_EFORMAT;
    int network = isfinite(network_cost) ? level_index(rep, "network") : -1;
    if (network >= 0) {
        e->level[network] = network_cost;
        priced += network_cost;
    }
    const jv *sides[2] = {rb, wb};
    for (int side = 0; side < 2; side++) {
        const jv *bytes = sides[side];
        for (size_t i = 0; i < bytes->u.object.count; i++) {
            const char *name = bytes->u.object.keys[i];
            const jv *v = bytes->u.object.values[i];
            if (v->type != JV_NUMBER || v->u.number < 0)
                return bad(w, "%s.%s.%s is %s, expected a byte count", path,
                           side ? "written_bytes" : "read_bytes", name, jv_type_name(v));
            int k = level_index(rep, name);
            double rd, wr;
            if (k >= 0 && k == network)
                continue; /* priced above */
            if (k >= 0 && level_costs(table, name, &rd, &wr)) {
                double cost = v->u.number * (side ? wr : rd);
                e->level[k] += cost;
                priced += cost;
            } else if (v->u.number > 0) {
                unpriced = unpriced == -2 || unpriced == k ? k : -1;
            }
        }
    }
    double rest = comm - priced;
    if (rest > 1e-9 * comm) {
        if (unpriced >= 0)
            e->level[unpriced] += rest;
        else
            e->other += rest;
    } else if (rest < -1e-6 * comm && priced > 0) {
        /* the levels' costs say more than the total: scale them to it */
        for (int k = 0; k < MAX_LEVELS; k++)
            e->level[k] *= comm / priced;
    }
    if (r->jpu > 0) {
        e->compute *= r->jpu;
        e->other *= r->jpu;
        for (int k = 0; k < MAX_LEVELS; k++)
            e->level[k] *= r->jpu;
    }
    return 0;
}

static void energy_add(energy *to, const energy *e)
{
    to->compute += e->compute;
    to->other += e->other;
    for (int k = 0; k < MAX_LEVELS; k++)
        to->level[k] += e->level[k];
}

static double energy_comm(const energy *e)
{
    double t = e->other;
    for (int k = 0; k < MAX_LEVELS; k++)
        t += e->level[k];
    return t;
}

static double energy_sum(const energy *e)
{
    return e->compute + energy_comm(e);
}

static int read_ledger(report *rep, run *r, const where *w, const jv *R)
{
    const jv *ledger = jv_get(R, "ledger"), *table = jv_get(R, "table");
    if (!ledger || ledger->type == JV_NULL)
        return 0;
    if (ledger->type != JV_OBJECT)
        return bad(w, "result.ledger is %s, expected an object", jv_type_name(ledger));
    if (!table || table->type != JV_OBJECT)
        return bad(w, "result.table is %s, expected an object (it prices the ledger)",
                   jv_type_name(table));
    int rc = check_table(w, table);
    if (rc)
        return rc;
    r->table_name = jv_get(table, "name")->u.string.s;
    r->table_unit = jv_get(table, "unit")->u.string.s;
    r->jpu = jv_get(table, "joules_per_unit")->u.number;
    /* the table's levels first, in its order */
    const jv *levels = jv_get(table, "levels");
    for (size_t i = 0; i < levels->u.array.count; i++)
        level_index(rep, jv_get(levels->u.array.items[i], "name")->u.string.s);

    const jv *phases, *layers = jv_get(ledger, "layers");
    if (get_object(w, ledger, "result.ledger", "phases", &phases))
        return FM_EFORMAT;
    char path[256];
    for (size_t i = 0; i < phases->u.object.count; i++) {
        if (r->n_phases >= MAX_PHASES)
            return bad(w, "result.ledger.phases: more than %d phases", MAX_PHASES);
        named_energy *ph = &r->phases[r->n_phases++];
        ph->name = phases->u.object.keys[i];
        snprintf(path, sizeof path, "result.ledger.phases.%.64s", ph->name);
        if ((rc = read_part(rep, r, w, table, phases->u.object.values[i], path, &ph->e)) != 0)
            return rc;
        if (strcmp(ph->name, "eval") != 0)
            energy_add(&r->train, &ph->e);
    }
    if (!layers || layers->type != JV_ARRAY)
        return bad(w, "result.ledger.layers is %s, expected an array", jv_type_name(layers));
    size_t n = layers->u.array.count;
    if (n > 100000)
        return bad(w, "result.ledger.layers: %zu layers", n);
    r->layers = calloc(n ? n : 1, sizeof *r->layers);
    if (!r->layers)
        return no_memory(w->err);
    for (size_t i = 0; i < n; i++) {
        const jv *layer = layers->u.array.items[i], *lp;
        named_energy *le = &r->layers[r->n_layers++];
        snprintf(path, sizeof path, "result.ledger.layers[%zu]", i);
        if (!layer || layer->type != JV_OBJECT)
            return bad(w, "%s is %s, expected an object", path, jv_type_name(layer));
        if (get_string(w, layer, path, "name", 1, &le->name) ||
            get_string(w, layer, path, "shape", 0, &le->shape) ||
            get_object(w, layer, path, "phases", &lp))
            return FM_EFORMAT;
        for (size_t j = 0; j < lp->u.object.count; j++) {
            char ppath[400];
            energy e;
            snprintf(ppath, sizeof ppath, "%s.phases.%.64s", path, lp->u.object.keys[j]);
            if ((rc = read_part(rep, r, w, table, lp->u.object.values[j], ppath, &e)) != 0)
                return rc;
            energy_add(&le->e, &e);
        }
    }
    if ((rc = read_part(rep, r, w, table, jv_get(ledger, "total"), "result.ledger.total",
                        &r->total)) != 0)
        return rc;
    /* training steps: the forward passes of the training phase */
    const jv *passes = jv_get(ledger, "passes");
    r->steps = r->train_examples = NAN;
    if (passes && passes->type == JV_OBJECT) {
        const jv *fw = jv_get(passes, "forward");
        if (fw && fw->type == JV_OBJECT &&
            (get_number(w, fw, "result.ledger.passes.forward", "passes", 0, &r->steps) ||
             get_number(w, fw, "result.ledger.passes.forward", "examples", 0,
                        &r->train_examples)))
            return FM_EFORMAT;
    }
    r->has_ledger = 1;
    return 0;
}

/* "fp32", "bc+qb", "synapse:26+qb", "bc-det+qb bop": the run's weight mode,
 * and the optimizer when it is bop (which trains the bits themselves). */
static int read_result(report *rep, run *r, const where *w, const jv *R)
{
    if (!R || R->type != JV_OBJECT)
        return bad(w, "'result' is %s, expected an object", jv_type_name(R));
    const jv *qb = jv_get(R, "qb");
    double levels;
    const char *opt = NULL;
    if (get_string(w, R, "result", "weights", 1, &r->weights) ||
        get_string(w, R, "result", "opt", 0, &opt) ||
        get_string(w, R, "result", "arch", 0, &r->arch) ||
        get_string(w, R, "result", "model", 0, &r->model) ||
        get_string(w, R, "result", "data", 0, &r->data) ||
        get_number(w, R, "result", "synapse_levels", 0, &levels))
        return FM_EFORMAT;
    if (!qb || qb->type != JV_BOOL)
        return bad(w, "result.qb is %s, expected true or false", jv_type_name(qb));
    static const char *const numbers[] = {"test_error_pct", "valid_error_pct", "best_epoch",
                                          "epochs", "train_seconds", "train_images_per_s",
                                          "total_seconds"};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        double x;
        if (get_number(w, R, "result", numbers[i], 0, &x))
            return FM_EFORMAT;
    }
    r->qb = qb->u.boolean;
    char n[32];
    if (strcmp(r->weights, "synapse") == 0 && isfinite(levels))
        snprintf(r->mode, sizeof r->mode, "synapse:%s%s", fixed(n, sizeof n, levels, 0),
                 r->qb ? "+qb" : "");
    else
        snprintf(r->mode, sizeof r->mode, "%.40s%s%s", r->weights, r->qb ? "+qb" : "",
                 opt && strcmp(opt, "bop") == 0 ? " bop" : "");
    return read_ledger(rep, r, w, R);
}

static double result_number(const run *r, const char *key)
{
    const jv *v = jv_get(r->result, key);
    return v && v->type == JV_NUMBER ? v->u.number : NAN;
}

/* ---- reading a log ------------------------------------------------------- */

static int read_line(report *rep, run *r, const where *w, const char *line, size_t len,
                     int ends_line)
{
    json_doc doc;
    char msg[256];
    size_t at = 0;
    json_read_status st = json_read(line, len, &doc, msg, sizeof msg, &at);
    if (st == JSON_READ_NOMEM)
        return no_memory(w->err);
    if (st == JSON_READ_TRUNCATED)
        return bad(w, "truncated line: %s%s", msg,
                   ends_line ? "" : " (the log ends there: is the run still writing it?)");
    if (st != JSON_READ_OK)
        return bad(w, "not JSON at column %zu: %s", at + 1, msg);
    const jv *root = doc.root;
    int rc = 0;
    if (root->type != JV_OBJECT) {
        rc = bad(w, "%s, expected a JSON object", jv_type_name(root));
    } else if (r->result) {
        rc = bad(w, "a line after the result line (line %ld)", r->result_line);
    } else if (jv_get(root, "result")) {
        if (root->u.object.count != 1)
            rc = bad(w, "a result line holds the key 'result' alone");
        else {
            r->doc = doc;
            r->result = jv_get(root, "result");
            r->result_line = w->line;
            return read_result(rep, r, w, r->result);
        }
    } else {
        rc = read_epoch_line(r, w, root);
    }
    json_doc_free(&doc);
    return rc;
}

static int only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

/* One line of a log into *buf (grown with realloc, NUL-terminated, the
 * newline kept): its length; -1 at the end of the file; -2 when it is longer
 * than REPORT_MAX_LINE bytes (what was read is dropped); -3 out of memory. A
 * line of a training log is a few hundred bytes, so that a file that is no
 * log (one endless line) is refused at the limit instead of filling memory. */
static long get_line(FILE *f, char **buf, size_t *cap)
{
    size_t len = 0;
    int c = EOF;
    while ((c = getc_unlocked(f)) != EOF) {
        if (len + 2 > *cap) {
            if (len >= REPORT_MAX_LINE)
                return -2;
            size_t next = *cap ? *cap * 2 : 256;
            if (next > REPORT_MAX_LINE + 2)
                next = REPORT_MAX_LINE + 2;
            char *grown = realloc(*buf, next);
            if (!grown)
                return -3;
            *buf = grown;
            *cap = next;
        }
        (*buf)[len++] = (char)c;
        if (c == '\n')
            break;
    }
    if (len == 0)
        return -1;
    (*buf)[len] = '\0';
    return (long)len;
}

static int read_log(report *rep, run *r)
{
    struct stat st; /* stat() waits for nothing: a folder is named for what it is */
    if (stat(r->path, &st) == 0 && S_ISDIR(st.st_mode))
        return fail(rep->err, FM_EIO, "log file '%s': is a folder", r->path);
    /* a regular file or a pipe, opened without waiting for a FIFO's writer;
     * the library's message is "PATH: REASON" */
    int fd = fm_open_input(r->path, 1);
    if (fd < 0) {
        const char *why = fm_last_error();
        size_t n = strlen(r->path);
        if (strncmp(why, r->path, n) == 0 && why[n] == ':' && why[n + 1] == ' ')
            why += n + 2;
        return fail(rep->err, fd, "log file '%s': %s", r->path, why);
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        int e = errno;
        close(fd);
        return fail(rep->err, e == ENOMEM ? FM_ENOMEM : FM_EIO, "log file '%s': %s", r->path,
                    strerror(e));
    }
    char *line = NULL;
    size_t cap = 0;
    long len;
    where w = {r->path, 0, rep->err};
    int rc = 0, any = 0;
    while ((len = get_line(f, &line, &cap)) >= 0) {
        w.line++;
        if (only_space(line, (size_t)len))
            continue;
        any = 1;
        int ends = len > 0 && line[len - 1] == '\n';
        if ((rc = read_line(rep, r, &w, line, (size_t)len, ends)) != 0)
            break;
    }
    if (!rc && len == -2)
        rc = bad(&(where){r->path, w.line + 1, rep->err},
                 "a line longer than %d bytes (1 MiB): not a 'fewmul train --log' file",
                 REPORT_MAX_LINE);
    else if (!rc && len == -3)
        rc = no_memory(rep->err);
    else if (!rc && ferror(f))
        rc = fail(rep->err, FM_EIO, "reading log file '%s': %s", r->path,
                  strerror(errno ? errno : EIO));
    free(line);
    fclose(f);
    if (!rc && !any) {
        w.line = 0;
        rc = bad(&w, "empty log: no epoch lines (is it a 'fewmul train --log' file?)");
    }
    return rc;
}

/* ---- labels and the energy set ------------------------------------------- */

/* "runs/bc.jsonl" -> "bc". */
static void file_stem(char *buf, size_t cap, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(buf, cap, "%s", base);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf &&
        (strcmp(dot, ".jsonl") == 0 || strcmp(dot, ".json") == 0 || strcmp(dot, ".log") == 0))
        *dot = '\0';
}

static void note(report *rep, const char *fmt, ...) REPORT_PRINTF(2, 3);
static void note(report *rep, const char *fmt, ...)
{
    char text[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    sb_puts(&rep->notes, "<li>");
    sb_text(&rep->notes, text);
    sb_puts(&rep->notes, "</li>\n");
}

static void name_runs(report *rep)
{
    const report_input *in = rep->in;
    for (int i = 0; i < rep->n; i++) {
        run *r = &rep->runs[i];
        char stem[128];
        file_stem(stem, sizeof stem, r->path);
        if (i < in->n_labels)
            snprintf(r->label, sizeof r->label, "%s", in->labels[i]);
        else if (r->result)
            snprintf(r->label, sizeof r->label, "%s", r->mode);
        else
            snprintf(r->label, sizeof r->label, "%s", stem);
    }
    /* runs of one name: each gets its file's name beside it, or its place
     * among the logs when the file names are the same too */
    int same[REPORT_MAX_RUNS] = {0};
    for (int i = 0; i < rep->n; i++)
        for (int j = i + 1; j < rep->n; j++)
            if (strcmp(rep->runs[i].label, rep->runs[j].label) == 0)
                same[i] = same[j] = 1;
    char stems[REPORT_MAX_RUNS][128];
    for (int i = 0; i < rep->n; i++)
        file_stem(stems[i], sizeof stems[i], rep->runs[i].path);
    for (int i = 0; i < rep->n; i++) {
        if (!same[i])
            continue;
        int unique = strcmp(stems[i], rep->runs[i].label) != 0;
        for (int j = 0; j < rep->n && unique; j++)
            if (j != i && same[j] && strcmp(rep->runs[i].label, rep->runs[j].label) == 0 &&
                strcmp(stems[i], stems[j]) == 0)
                unique = 0;
        same[i] = unique ? 1 : 2;
    }
    for (int i = 0; i < rep->n; i++) {
        run *r = &rep->runs[i];
        char label[160];
        if (same[i] == 1)
            snprintf(label, sizeof label, "%.80s (%.70s)", r->label, stems[i]);
        else if (same[i] == 2)
            snprintf(label, sizeof label, "%.100s (%d)", r->label, i + 1);
        else
            continue;
        snprintf(r->label, sizeof r->label, "%s", label);
    }
}

/* Which runs the energy charts show, in which unit, against which fp32 run. */
static void choose_energy_runs(report *rep)
{
    int any_physical = 0;
    const char *unit = NULL;
    for (int i = 0; i < rep->n; i++) {
        const run *r = &rep->runs[i];
        if (r->has_ledger && r->jpu > 0)
            any_physical = 1;
        if (r->has_ledger && !unit)
            unit = r->table_unit;
    }
    rep->physical = any_physical;
    rep->unit = any_physical ? "J" : unit;
    rep->ref = -1;
    for (int i = 0; i < rep->n; i++) {
        run *r = &rep->runs[i];
        if (!r->result) {
            note(rep, "%s (%s): the log has no result line (the run is still going, or was "
                      "interrupted): its curves are drawn, its energy is not.",
                 r->label, r->path);
            continue;
        }
        if (!r->has_ledger) {
            note(rep, "%s (%s): trained without --ledger: no energy to show.", r->label,
                 r->path);
            continue;
        }
        if (any_physical ? !(r->jpu > 0) : strcmp(r->table_unit, unit) != 0) {
            note(rep, "%s (%s): its energy table %s counts in %s, not comparable with the "
                      "others (%s): left out of the energy charts.",
                 r->label, r->path, r->table_name, r->table_unit, any_physical ? "joules" : unit);
            continue;
        }
        r->in_energy = 1;
        rep->n_energy++;
        if (rep->ref < 0 && strcmp(r->weights, "fp32") == 0 && !r->qb)
            rep->ref = i;
    }
}

/* The unit the energy charts show values in: a prefix of joules, or a
 * power of 1000 of the table's unit; shown = base * scale. */
static void choose_scale(const report *rep, double largest, char *unit, size_t cap,
                         double *scale)
{
    if (rep->physical) {
        static const struct {
            double f;
            const char *name;
        } si[] = {{1, "J"},     {1e-3, "mJ"},  {1e-6, "\xc2\xb5J"}, {1e-9, "nJ"},
                  {1e-12, "pJ"}, {1e-15, "fJ"}, {1e-18, "aJ"}};
        int i = 0;
        while (i + 1 < (int)(sizeof si / sizeof si[0]) && largest < si[i].f)
            i++;
        snprintf(unit, cap, "%s", si[i].name);
        *scale = 1 / si[i].f;
        return;
    }
    int k = 0;
    *scale = 1;
    while (largest * *scale >= 1000 && k < 30) {
        *scale /= 1000;
        k += 3;
    }
    if (k)
        snprintf(unit, cap, "1e%d %s", k, rep->unit ? rep->unit : "");
    else
        snprintf(unit, cap, "%s", rep->unit ? rep->unit : "");
}

static void fmt_energy(const report *rep, char *buf, size_t cap, double v)
{
    if (!isfinite(v)) {
        snprintf(buf, cap, "-");
        return;
    }
    char unit[40];
    double scale;
    choose_scale(rep, v, unit, sizeof unit, &scale);
    snprintf(buf, cap, "%.3g %s", v * scale, unit);
}

/* ---- charts -------------------------------------------------------------- */

enum { CHART_ERROR, CHART_LR, CHART_SPEED, CHART_PHASE, CHART_LAYER, CHART_FP32, N_CHARTS };
static const char *const chart_names[N_CHARTS] = {"error",        "lr",           "speed",
                                                  "energy-phase", "energy-layer", "energy-vs-fp32"};

typedef struct chart_out {
    sbuf svg;     /* the <svg> element, without xmlns */
    sbuf caption; /* HTML */
} chart_out;

static void decimation_caption(sbuf *cap, const line_chart_info *info)
{
    if (info->decimated)
        sb_printf(cap, " Decimated: the longest series has %zu values; each series is drawn "
                       "with at most %d points, the lowest and the highest value of each of "
                       "%d buckets of epochs.",
                  info->longest, REPORT_MAX_POINTS, REPORT_MAX_POINTS / 2);
    if (info->clamped)
        sb_printf(cap, " %zu values of 0 are drawn on the floor of the log axis.", info->clamped);
    if (info->beyond)
        sb_printf(cap, " %zu values beyond the range a chart draws (magnitudes 1e-300 to 1e300 "
                       "on a log axis, up to 1e300 on a linear one) are drawn at its edge.",
                  info->beyond);
}

static void error_chart(const report *rep, chart_out *out)
{
    line_series *s = calloc((size_t)rep->n * 3 + 1, sizeof *s);
    legend_item *legend = calloc((size_t)rep->n + 3, sizeof *legend);
    char (*tips)[200] = calloc((size_t)rep->n * 3 + 1, sizeof *tips);
    char (*cls)[48] = calloc((size_t)rep->n * 3 + 1, sizeof *cls);
    if (!s || !legend || !tips || !cls) {
        out->svg.oom = 1;
        free(s), free(legend), free(tips), free(cls);
        return;
    }
    size_t ns = 0, nl = 0;
    int any_test = 0;
    for (int i = 0; i < rep->n; i++)
        for (size_t k = 0; k < rep->runs[i].n; k++)
            any_test |= !isnan(rep->runs[i].col[C_TEST][k]);
    static const struct {
        int col;
        const char *name, *cls, *dash;
        double width;
    } kinds[3] = {{C_VALID, "validation", "fm-valid", NULL, 2.2},
                  {C_TRAIN, "training", "fm-train", "7 4", 1.5},
                  {C_TEST, "test", "fm-test", "2 3", 1.7}};
    for (int i = 0; i < rep->n; i++) {
        const run *r = &rep->runs[i];
        legend[nl++] = (legend_item){r->label, r->color, NULL, 0};
        for (int k = 0; k < 3; k++) {
            if (kinds[k].col == C_TEST && !any_test)
                continue;
            snprintf(tips[ns], sizeof tips[ns], "%s: %s error %%", r->label, kinds[k].name);
            snprintf(cls[ns], sizeof cls[ns], "fm-run-%d %s", i, kinds[k].cls);
            s[ns] = (line_series){r->col[C_EPOCH], r->col[kinds[k].col], r->n, r->color,
                                  kinds[k].dash, kinds[k].width, cls[ns], tips[ns]};
            ns++;
        }
    }
    for (int k = 0; k < 3; k++)
        if (kinds[k].col != C_TEST || any_test)
            legend[nl++] = (legend_item){kinds[k].name, "#555", kinds[k].dash, 0};
    line_chart c = {"chart-error", "Error per epoch",
                    any_test ? "solid: validation, dashed: training minibatches (sampled "
                               "weights), dotted: test; log scale"
                             : "solid: validation, dashed: training minibatches (sampled "
                               "weights); log scale",
                    "epoch", "error (%)", 1, s, ns, legend, nl, REPORT_MAX_POINTS,
                    "no error values in these logs"};
    line_chart_info info;
    svg_line_chart(&out->svg, &c, &info);
    sb_puts(&out->caption, "Error of each run per epoch, in percent on a log scale: on the "
                           "training minibatches as trained (with the weights sampled for "
                           "them), on the validation set, and on the test set where measured "
                           "(epochs that were not evaluated are skipped).");
    decimation_caption(&out->caption, &info);
    free(s), free(legend), free(tips), free(cls);
}

/* One series per run: the learning rate (log y) or the speed. */
static void per_run_chart(const report *rep, chart_out *out, int col)
{
    line_series *s = calloc((size_t)rep->n + 1, sizeof *s);
    legend_item *legend = calloc((size_t)rep->n + 1, sizeof *legend);
    char (*tips)[200] = calloc((size_t)rep->n + 1, sizeof *tips);
    char (*cls)[48] = calloc((size_t)rep->n + 1, sizeof *cls);
    if (!s || !legend || !tips || !cls) {
        out->svg.oom = 1;
        free(s), free(legend), free(tips), free(cls);
        return;
    }
    int lr = col == C_LR;
    for (int i = 0; i < rep->n; i++) {
        const run *r = &rep->runs[i];
        legend[i] = (legend_item){r->label, r->color, NULL, 0};
        snprintf(tips[i], sizeof tips[i], "%s: %s", r->label,
                 lr ? "learning rate" : "training images/s");
        snprintf(cls[i], sizeof cls[i], "fm-run-%d %s", i, lr ? "fm-lr" : "fm-speed");
        s[i] = (line_series){r->col[C_EPOCH], r->col[col], r->n, r->color, NULL, 2.0,
                             cls[i], tips[i]};
    }
    line_chart c = {lr ? "chart-lr" : "chart-speed",
                    lr ? "Learning rate per epoch" : "Training speed per epoch",
                    lr ? "the rate used during each epoch; log scale"
                       : "training images per second of training-step time",
                    "epoch", lr ? "learning rate" : "images/s", lr, s, (size_t)rep->n,
                    legend, (size_t)rep->n, REPORT_MAX_POINTS,
                    lr ? "no learning rates in these logs" : "no speeds in these logs"};
    line_chart_info info;
    svg_line_chart(&out->svg, &c, &info);
    sb_puts(&out->caption,
            lr ? "The learning rate of each epoch (the 'lr' of each log line), on a log "
                 "scale: with --lr-final it decays exponentially."
               : "Training images per second in each epoch, over the time spent in training "
                 "steps (evaluation excluded).");
    decimation_caption(&out->caption, &info);
    free(s), free(legend), free(tips), free(cls);
}

/* The segments of an energy bar: computation, the levels (network last),
 * the unpriced rest. */
typedef struct kinds_of {
    bar_kind kinds[MAX_LEVELS + 2];
    int level_of[MAX_LEVELS + 2]; /* the report level of each kind, -1 compute, -2 other */
    char names[MAX_LEVELS + 2][80], cls[MAX_LEVELS + 2][96], colors[MAX_LEVELS + 2][8];
    size_t n;
} kinds_of;

static void energy_kinds(const report *rep, kinds_of *k, int with_other)
{
    memset(k, 0, sizeof *k);
    int order[MAX_LEVELS], n = 0, network = -1;
    for (int i = 0; i < rep->n_levels; i++) {
        if (strcmp(rep->levels[i], "network") == 0)
            network = i;
        else
            order[n++] = i;
    }
    int plain = n;
    if (network >= 0)
        order[n++] = network;
    snprintf(k->names[0], sizeof k->names[0], "computation");
    snprintf(k->cls[0], sizeof k->cls[0], "fm-seg-compute");
    snprintf(k->colors[0], sizeof k->colors[0], "#74b560");
    k->level_of[0] = -1;
    k->n = 1;
    for (int j = 0; j < n; j++) {
        int lv = order[j];
        size_t at = k->n++;
        snprintf(k->names[at], sizeof k->names[at], "%.60s", rep->levels[lv]);
        /* a class name from the level's name: letters, digits, '-' */
        char safe[64];
        size_t m = 0;
        for (const char *c = rep->levels[lv]; *c && m + 1 < sizeof safe; c++)
            safe[m++] = ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                         (*c >= '0' && *c <= '9') || *c == '-')
                            ? *c
                            : '_';
        safe[m] = '\0';
        snprintf(k->cls[at], sizeof k->cls[at], "fm-seg-comm fm-seg-level-%s", safe);
        if (lv == network) {
            snprintf(k->colors[at], sizeof k->colors[at], "#e8702a");
        } else {
            /* light to dark blue, the nearest level first */
            double t = plain > 1 ? (double)j / (plain - 1) : 1;
            int rgb0[3] = {0xc6, 0xdb, 0xef}, rgb1[3] = {0x08, 0x30, 0x6b};
            snprintf(k->colors[at], sizeof k->colors[at], "#%02x%02x%02x",
                     (int)(rgb0[0] + t * (rgb1[0] - rgb0[0])),
                     (int)(rgb0[1] + t * (rgb1[1] - rgb0[1])),
                     (int)(rgb0[2] + t * (rgb1[2] - rgb0[2])));
        }
        k->level_of[at] = lv;
    }
    if (with_other) {
        size_t at = k->n++;
        snprintf(k->names[at], sizeof k->names[at], "communication not priced by level");
        snprintf(k->cls[at], sizeof k->cls[at], "fm-seg-comm fm-seg-other");
        snprintf(k->colors[at], sizeof k->colors[at], "#bab0ac");
        k->level_of[at] = -2;
    }
    for (size_t i = 0; i < k->n; i++)
        k->kinds[i] = (bar_kind){k->names[i], k->colors[i], k->cls[i]};
}

static void energy_values(const kinds_of *k, const energy *e, double *values)
{
    for (size_t i = 0; i < k->n; i++)
        values[i] = k->level_of[i] == -1   ? e->compute
                    : k->level_of[i] == -2 ? e->other
                                           : e->level[k->level_of[i]];
}

static int any_other(const report *rep)
{
    for (int i = 0; i < rep->n; i++)
        if (rep->runs[i].in_energy && rep->runs[i].total.other > 0)
            return 1;
    return 0;
}

static const char *energy_subtitle(const report *rep, char *buf, size_t cap, const char *what)
{
    const char *table = NULL;
    int same = 1;
    for (int i = 0; i < rep->n; i++) {
        const run *r = &rep->runs[i];
        if (!r->in_energy)
            continue;
        if (!table)
            table = r->table_name;
        else if (strcmp(table, r->table_name) != 0)
            same = 0;
    }
    snprintf(buf, cap, "%s; priced with %s%s", what, same && table ? "the table " : "",
             same && table ? table : "each run's table");
    return buf;
}

static const char *no_energy_message(const report *rep)
{
    (void)rep;
    return "no run in these logs has an energy ledger (fewmul train --ledger) and a result line";
}

/* Grouped bars: by phase (layers 0) or by layer (1). */
static void grouped_energy_chart(const report *rep, chart_out *out, int by_layer)
{
    kinds_of k;
    energy_kinds(rep, &k, any_other(rep));
    /* the groups: phases in the usual order, others after; layers in the
     * order met */
    const char *names[4096];
    size_t ng = 0;
    static const char *const usual[] = {"forward", "backward", "update", "eval"};
    if (!by_layer)
        for (int u = 0; u < 4; u++)
            names[ng++] = usual[u];
    for (int i = 0; i < rep->n; i++) {
        const run *r = &rep->runs[i];
        if (!r->in_energy)
            continue;
        int count = by_layer ? r->n_layers : r->n_phases;
        for (int j = 0; j < count; j++) {
            const named_energy *ne = by_layer ? &r->layers[j] : &r->phases[j];
            size_t g = 0;
            while (g < ng && strcmp(names[g], ne->name) != 0)
                g++;
            if (g == ng && ng < sizeof names / sizeof names[0])
                names[ng++] = ne->name;
        }
    }
    size_t max_bars = ng * (size_t)rep->n + 1;
    bar_group *groups = calloc(ng + 1, sizeof *groups);
    bar_item *bars = calloc(max_bars, sizeof *bars);
    double *values = calloc(max_bars * k.n, sizeof *values);
    char (*tips)[240] = calloc(max_bars, sizeof *tips);
    char (*cls)[24] = calloc(max_bars, sizeof *cls);
    char (*glabels)[120] = calloc(ng + 1, sizeof *glabels);
    if (!groups || !bars || !values || !tips || !cls || !glabels) {
        out->svg.oom = 1;
        goto done;
    }
    size_t nb = 0, used = 0;
    double largest = 0;
    for (size_t g = 0; g < ng; g++) {
        size_t first = nb;
        for (int i = 0; i < rep->n; i++) {
            const run *r = &rep->runs[i];
            if (!r->in_energy)
                continue;
            int count = by_layer ? r->n_layers : r->n_phases;
            const named_energy *ne = NULL;
            for (int j = 0; j < count && !ne; j++) {
                const named_energy *c = by_layer ? &r->layers[j] : &r->phases[j];
                if (strcmp(c->name, names[g]) == 0)
                    ne = c;
            }
            if (!ne)
                continue;
            bar_item *b = &bars[nb];
            double *v = values + nb * k.n;
            energy_values(&k, &ne->e, v);
            largest = fmax(largest, energy_sum(&ne->e));
            snprintf(tips[nb], sizeof tips[nb], "%s, %s%s%s%s", r->label, names[g],
                     ne->shape ? " (" : "", ne->shape ? ne->shape : "", ne->shape ? ")" : "");
            snprintf(cls[nb], sizeof cls[nb], "fm-run-%d", i);
            *b = (bar_item){r->label, r->color, cls[nb], tips[nb], NULL, v};
            nb++;
        }
        if (nb == first)
            continue;
        snprintf(glabels[used], sizeof glabels[used], "%s", names[g]);
        groups[used] = (bar_group){glabels[used], bars + first, nb - first, 0, NULL};
        used++;
    }
    char unit[48], sub[256];
    double scale;
    choose_scale(rep, largest, unit, sizeof unit, &scale);
    bar_chart c = {by_layer ? "chart-energy-layer" : "chart-energy-phase",
                   by_layer ? "Energy per layer" : "Energy per phase",
                   energy_subtitle(rep, sub, sizeof sub,
                                   by_layer ? "whole run, all phases of each layer"
                                            : "whole run: training steps (forward, backward, "
                                              "update) and evaluation passes (eval)"),
                   "energy", unit, scale, k.kinds, k.n, groups, used, NAN, NULL,
                   no_energy_message(rep)};
    svg_bar_chart(&out->svg, &c);
    sb_puts(&out->caption,
            by_layer ? "The energy of each layer over the whole run (all its phases): the "
                       "computation (green), then the communication, the bytes it reads and "
                       "writes priced at the memory level that holds each tensor (blue, the "
                       "nearest level lightest"
                     : "The energy of each phase over the whole run: the computation (green), "
                       "then the communication, the bytes read and written priced at the "
                       "memory level that holds each tensor (blue, the nearest level lightest");
    int network = 0;
    for (int i = 0; i < rep->n_levels; i++)
        network |= strcmp(rep->levels[i], "network") == 0;
    sb_puts(&out->caption, network ? "; orange: the bytes sent between processes). " : "). ");
    sb_puts(&out->caption, "Hover over a segment for its value.");
done:
    free(groups), free(bars), free(values), free(tips), free(cls), free(glabels);
}

/* "12 mJ, 3.4x less": a total and its ratio to the fp32 run's. */
static void ratio_note(const report *rep, char *buf, size_t cap, double total, double ref_total,
                       int is_ref)
{
    char e[64];
    fmt_energy(rep, e, sizeof e, total);
    /* a ratio that does not fit a double (a total of 5e-324) is left out */
    double less = ref_total / total, more = total / ref_total;
    if (is_ref)
        snprintf(buf, cap, "%s (fp32)", e);
    else if (isfinite(ref_total) && total > 0 && less >= 1 && isfinite(less))
        snprintf(buf, cap, "%s, %.3g\xc3\x97 less", e, less);
    else if (isfinite(ref_total) && total > 0 && less < 1 && isfinite(more))
        snprintf(buf, cap, "%s, %.3g\xc3\x97 more", e, more);
    else
        snprintf(buf, cap, "%s", e);
}

/* Two groups of one bar per run: the training steps, and the whole run. */
static void fp32_chart(const report *rep, chart_out *out)
{
    kinds_of k;
    energy_kinds(rep, &k, any_other(rep));
    size_t n = 2 * (size_t)rep->n;
    bar_item *bars = calloc(n + 1, sizeof *bars);
    double *values = calloc((n + 1) * k.n, sizeof *values);
    char (*notes)[160] = calloc(n + 1, sizeof *notes);
    char (*cls)[24] = calloc(n + 1, sizeof *cls);
    if (!bars || !values || !notes || !cls) {
        out->svg.oom = 1;
        goto done;
    }
    const run *ref = rep->ref >= 0 ? &rep->runs[rep->ref] : NULL;
    double largest = 0;
    size_t nb = 0;
    bar_group groups[2];
    static const char *const group_names[2] = {"training steps (forward, backward, update)",
                                               "whole run (evaluation included)"};
    for (int g = 0; g < 2; g++) {
        size_t first = nb;
        double ref_total = ref ? energy_sum(g ? &ref->total : &ref->train) : NAN;
        for (int i = 0; i < rep->n; i++) {
            const run *r = &rep->runs[i];
            if (!r->in_energy)
                continue;
            const energy *e = g ? &r->total : &r->train;
            double total = energy_sum(e);
            largest = fmax(largest, total);
            double *v = values + nb * k.n;
            energy_values(&k, e, v);
            ratio_note(rep, notes[nb], sizeof notes[nb], total, ref_total, ref && i == rep->ref);
            snprintf(cls[nb], sizeof cls[nb], "fm-run-%d", i);
            bars[nb] = (bar_item){r->label, r->color, cls[nb], r->label, notes[nb], v};
            nb++;
        }
        groups[g] = (bar_group){group_names[g], bars + first, nb - first,
                                ref ? ref_total : 0, ref ? "fp32" : NULL};
    }
    char unit[48], sub[400], what[256];
    double scale;
    choose_scale(rep, largest, unit, sizeof unit, &scale);
    if (ref)
        snprintf(what, sizeof what, "against the fp32 run %.100s (dashed lines: its totals)",
                 ref->label);
    else
        snprintf(what, sizeof what, "no fp32 run among the inputs, so no ratios");
    bar_chart c = {"chart-energy-vs-fp32", "Energy of each mode beside fp32",
                   energy_subtitle(rep, sub, sizeof sub, what), "energy", unit, scale, k.kinds,
                   k.n, groups, nb ? 2 : 0, NAN, NULL, no_energy_message(rep)};
    svg_bar_chart(&out->svg, &c);
    sb_puts(&out->caption, "Each run's energy, computation and communication (by memory "
                           "level): in its training steps, and over the whole run with its "
                           "evaluation passes. ");
    if (ref) {
        sb_puts(&out->caption, "Above each bar: the total and how many times less (or more) "
                               "energy it took than the fp32 run <b>");
        sb_text(&out->caption, ref->label);
        sb_puts(&out->caption, "</b> (the fp32 total over the run's total).");
        /* different amounts of work make the ratio one of whole runs */
        for (int i = 0; i < rep->n; i++) {
            const run *r = &rep->runs[i];
            if (r->in_energy && i != rep->ref && isfinite(r->train_examples) &&
                isfinite(ref->train_examples) && r->train_examples != ref->train_examples) {
                sb_puts(&out->caption, " The runs did not train on the same number of "
                                       "examples: the ratios compare whole runs, not the "
                                       "same work.");
                break;
            }
        }
    } else {
        sb_puts(&out->caption, "No fp32 run is among the inputs (a result with weights fp32 "
                               "and no --qb), so no ratio is given.");
    }
done:
    free(bars), free(values), free(notes), free(cls);
}

/* ---- the page ------------------------------------------------------------ */

static const char page_style[] =
    "body{font-family:sans-serif;color:#222;background:#fff;margin:0 auto;max-width:1240px;"
    "padding:12px 20px 40px}\n"
    "h1{font-size:26px;margin:10px 0 4px}h2{font-size:20px;margin:26px 0 8px;"
    "border-bottom:1px solid #ddd;padding-bottom:4px}\n"
    ".fm-sub{color:#555;margin:0 0 12px}\n"
    "table.fm-runs{border-collapse:collapse;font-size:14px;width:100%}\n"
    "table.fm-runs th,table.fm-runs td{border-bottom:1px solid #e2e2e2;padding:5px 7px;"
    "text-align:right;vertical-align:top}\n"
    "table.fm-runs th{background:#f4f4f4;font-weight:600}\n"
    "table.fm-runs th:first-child,table.fm-runs td:first-child,table.fm-runs .fm-text"
    "{text-align:left}\n"
    ".fm-swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;"
    "vertical-align:-1px}\n"
    ".fm-small{color:#666;font-size:12px}\n"
    "figure{margin:0 0 26px}svg.fm-chart{display:block;width:100%;max-width:1200px;"
    "height:auto;border:1px solid #eee}\n"
    "figcaption{font-size:14px;color:#444;margin-top:6px;max-width:1200px;line-height:1.4}\n"
    "ul.fm-notes li{margin:3px 0}footer{color:#777;font-size:12px;margin-top:30px}\n";

static void cell(sbuf *b, const char *text, int left)
{
    sb_puts(b, left ? "<td class=\"fm-text\">" : "<td>");
    sb_text(b, text && text[0] ? text : "-");
    sb_puts(b, "</td>");
}

static void cell_num(sbuf *b, double v, const char *fmt_suffix, int decimals)
{
    char buf[64], num[32];
    if (isfinite(v))
        snprintf(buf, sizeof buf, "%s%s", fixed(num, sizeof num, v, decimals), fmt_suffix);
    else
        snprintf(buf, sizeof buf, "-");
    cell(b, buf, 0);
}

/* The last value of a column that is not null. */
static double last_value(const run *r, int col, double *epoch)
{
    for (size_t k = r->n; k-- > 0;)
        if (!isnan(r->col[col][k])) {
            if (epoch)
                *epoch = r->col[C_EPOCH][k];
            return r->col[col][k];
        }
    return NAN;
}

static double mean_of(const run *r, int col)
{
    double s = 0;
    size_t n = 0;
    for (size_t k = 0; k < r->n; k++)
        if (isfinite(r->col[col][k])) {
            s += r->col[col][k];
            n++;
        }
    return n ? s / (double)n : NAN;
}

static void runs_table(const report *rep, sbuf *b)
{
    sb_puts(b, "<table class=\"fm-runs\" id=\"fm-runs-table\">\n<thead><tr><th>run</th>"
               "<th class=\"fm-text\">network</th><th>epochs</th><th>test error, last epoch</th>"
               "<th>test error at best valid.</th><th>best valid. error</th>"
               "<th>images/s</th><th>training time</th><th>energy</th>"
               "<th>comm / comp</th><th>per training step</th>"
               "<th title=\"the fp32 run's energy over this run's: training steps / whole run\">"
               "less than fp32<br><span class=\"fm-small\">training / run</span></th></tr></thead>\n"
               "<tbody>\n");
    const run *ref = rep->ref >= 0 ? &rep->runs[rep->ref] : NULL;
    for (int i = 0; i < rep->n; i++) {
        const run *r = &rep->runs[i];
        char buf[256];
        sb_printf(b, "<tr class=\"fm-run-row fm-run-%d\"><td class=\"fm-text\">"
                     "<span class=\"fm-swatch\" style=\"background:%s\"></span>",
                  i, r->color);
        sb_text(b, r->label);
        sb_puts(b, "<br><span class=\"fm-small\">");
        sb_text(b, r->path);
        sb_puts(b, "</span></td>");
        sb_puts(b, "<td class=\"fm-text\">");
        sb_text(b, r->arch ? r->arch : "-");
        if (r->model) {
            sb_puts(b, "<br><span class=\"fm-small\">");
            sb_text(b, r->model);
            sb_puts(b, "</span>");
        }
        sb_puts(b, "</td>");
        double last_epoch = r->n ? r->col[C_EPOCH][r->n - 1] : NAN;
        double total_epochs = r->n ? r->col[C_EPOCHS][r->n - 1] : result_number(r, "epochs");
        char n1[32], n2[32];
        if (r->result || !isfinite(total_epochs) || last_epoch == total_epochs)
            fixed(buf, sizeof buf, isfinite(last_epoch) ? last_epoch : result_number(r, "epochs"),
                  0);
        else
            snprintf(buf, sizeof buf, "%s of %s", fixed(n1, sizeof n1, last_epoch, 0),
                     fixed(n2, sizeof n2, total_epochs, 0));
        cell(b, buf, 0);
        double at = NAN;
        double last_test = last_value(r, C_TEST, &at);
        if (isfinite(last_test) && isfinite(last_epoch) && at != last_epoch)
            snprintf(buf, sizeof buf, "%s%% (epoch %s)", fixed(n1, sizeof n1, last_test, 2),
                     fixed(n2, sizeof n2, at, 0));
        else if (isfinite(last_test))
            snprintf(buf, sizeof buf, "%s%%", fixed(n1, sizeof n1, last_test, 2));
        else
            snprintf(buf, sizeof buf, "-");
        cell(b, buf, 0);
        double best_test = r->result ? result_number(r, "test_error_pct")
                                     : last_value(r, C_BEST_TEST, NULL);
        double best_epoch = r->result ? result_number(r, "best_epoch")
                                      : last_value(r, C_BEST_EPOCH, NULL);
        if (isfinite(best_test) && isfinite(best_epoch) && best_epoch > 0)
            snprintf(buf, sizeof buf, "%s%% (epoch %s)", fixed(n1, sizeof n1, best_test, 2),
                     fixed(n2, sizeof n2, best_epoch, 0));
        else if (isfinite(best_test))
            snprintf(buf, sizeof buf, "%s%%", fixed(n1, sizeof n1, best_test, 2));
        else
            snprintf(buf, sizeof buf, "-");
        cell(b, buf, 0);
        double best_valid = r->result ? result_number(r, "valid_error_pct") : NAN;
        if (!r->result) {
            for (size_t k = 0; k < r->n; k++)
                if (!isnan(r->col[C_VALID][k]) &&
                    (isnan(best_valid) || r->col[C_VALID][k] <= best_valid))
                    best_valid = r->col[C_VALID][k];
        }
        cell_num(b, best_valid, "%", 2);
        double ips = r->result ? result_number(r, "train_images_per_s") : mean_of(r, C_IPS);
        cell_num(b, ips, "", 0);
        double seconds = r->result ? result_number(r, "train_seconds") : NAN;
        if (!r->result) {
            seconds = 0;
            for (size_t k = 0; k < r->n; k++)
                if (isfinite(r->col[C_TRAIN_S][k]))
                    seconds += r->col[C_TRAIN_S][k];
        }
        cell_num(b, seconds, " s", seconds < 10 ? 2 : 1);
        if (r->in_energy) {
            double total = energy_sum(&r->total);
            fmt_energy(rep, buf, sizeof buf, total);
            cell(b, buf, 0);
            double comp = r->total.compute, comm = energy_comm(&r->total);
            fmt_sig(buf, sizeof buf, comp > 0 ? comm / comp : NAN, 3);
            cell(b, buf, 0);
            double train = energy_sum(&r->train);
            fmt_energy(rep, buf, sizeof buf,
                       isfinite(r->steps) && r->steps > 0 ? train / r->steps : NAN);
            cell(b, buf, 0);
            double by_train = ref ? energy_sum(&ref->train) / train : NAN,
                   by_run = ref ? energy_sum(&ref->total) / total : NAN;
            if (ref && i == rep->ref)
                snprintf(buf, sizeof buf, "fp32");
            else if (ref && total > 0 && train > 0 && isfinite(by_train) && isfinite(by_run))
                snprintf(buf, sizeof buf, "%.3g\xc3\x97 / %.3g\xc3\x97", by_train, by_run);
            else
                snprintf(buf, sizeof buf, "-");
            cell(b, buf, 0);
        } else {
            const char *why = !r->result ? "no result line" : !r->has_ledger ? "no ledger"
                                                                             : "not comparable";
            for (int k = 0; k < 4; k++)
                cell(b, k == 0 ? why : "-", 0);
        }
        sb_puts(b, "</tr>\n");
    }
    sb_puts(b, "</tbody></table>\n");
}

/* What the runs share: "mlp:64 on mnist:DIR", or NULL. */
static void page_subtitle(const report *rep, sbuf *b)
{
    const char *arch = NULL, *data = NULL;
    int same_arch = 1, same_data = 1;
    for (int i = 0; i < rep->n; i++) {
        const run *r = &rep->runs[i];
        if (!r->result)
            continue;
        if (r->arch && !arch)
            arch = r->arch;
        else if (r->arch && strcmp(arch, r->arch) != 0)
            same_arch = 0;
        if (r->data && !data)
            data = r->data;
        else if (r->data && strcmp(data, r->data) != 0)
            same_data = 0;
    }
    sb_printf(b, "<p class=\"fm-sub\">%d run%s", rep->n, rep->n == 1 ? "" : "s");
    if (arch && same_arch) {
        sb_puts(b, " of <b>");
        sb_text(b, arch);
        sb_puts(b, "</b>");
    }
    if (data && same_data) {
        sb_puts(b, " on <b>");
        sb_text(b, data);
        sb_puts(b, "</b>");
    }
    sb_puts(b, ": ");
    for (int i = 0; i < rep->n; i++) {
        sb_printf(b, "%s<span class=\"fm-swatch\" style=\"background:%s\"></span>",
                  i ? ", " : "", rep->runs[i].color);
        sb_text(b, rep->runs[i].label);
    }
    sb_puts(b, "</p>\n");
}

static void figure(sbuf *b, const chart_out *c, int id)
{
    sb_printf(b, "<figure id=\"fig-%s\">\n", chart_names[id]);
    sb_put(b, c->svg.data ? c->svg.data : "", c->svg.len);
    sb_puts(b, "<figcaption>");
    sb_put(b, c->caption.data ? c->caption.data : "", c->caption.len);
    sb_puts(b, "</figcaption>\n</figure>\n");
}

static void build_page(const report *rep, const chart_out *charts, sbuf *b)
{
    sb_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
               "<meta name=\"generator\" content=\"fewmul " FM_VERSION_STRING " report\">\n"
               "<title>");
    sb_text(b, rep->in->title);
    sb_puts(b, "</title>\n<style>\n");
    sb_puts(b, page_style);
    sb_puts(b, "</style>\n</head>\n<body>\n<header>\n<h1>");
    sb_text(b, rep->in->title);
    sb_puts(b, "</h1>\n");
    page_subtitle(rep, b);
    sb_puts(b, "</header>\n<section id=\"runs\">\n<h2>Runs</h2>\n");
    runs_table(rep, b);
    if (rep->notes.len) {
        sb_puts(b, "<ul class=\"fm-notes\" id=\"fm-notes\">\n");
        sb_put(b, rep->notes.data, rep->notes.len);
        sb_puts(b, "</ul>\n");
    }
    sb_puts(b, "</section>\n<section id=\"training\">\n<h2>Training</h2>\n");
    for (int c = CHART_ERROR; c <= CHART_SPEED; c++)
        figure(b, &charts[c], c);
    sb_puts(b, "</section>\n<section id=\"energy\">\n<h2>Energy</h2>\n");
    for (int c = CHART_PHASE; c <= CHART_FP32; c++)
        figure(b, &charts[c], c);
    sb_puts(b, "</section>\n<footer>Written by <code>fewmul report</code> (fewmul "
               FM_VERSION_STRING ") from ");
    for (int i = 0; i < rep->n; i++) {
        sb_puts(b, i ? ", <code>" : "<code>");
        sb_text(b, rep->runs[i].path);
        sb_puts(b, "</code>");
    }
    sb_puts(b, ". Energy is the ledger of each run (docs/ledger.md); the log format is "
               "docs/cli.md, &quot;--log line keys&quot;.</footer>\n</body>\n</html>\n");
}

/* ---- building ------------------------------------------------------------ */

_Static_assert((int)N_CHARTS == (int)REPORT_N_CHARTS, "report.h counts the charts");

/* Hands b's text over to out; b is left empty. */
static void take_text(sbuf *b, report_text *out)
{
    out->data = b->data;
    out->len = b->len;
    memset(b, 0, sizeof *b);
}

/* A chart as a file of its own: the XML declaration and the namespace that
 * the inline element does without, then the element after its "<svg".
 * 0, or -1 out of memory. */
static int standalone_svg(const sbuf *svg, report_text *out)
{
    static const char head[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                               "<svg xmlns=\"http://www.w3.org/2000/svg\"";
    sbuf file = {0};
    sb_puts(&file, head);
    sb_put(&file, svg->data + 4, svg->len - 4);
    if (file.oom) {
        sb_free(&file);
        return -1;
    }
    take_text(&file, out);
    return 0;
}

static int build_report(report *rep, report_output *out)
{
    const report_input *in = rep->in;
    int rc;
    for (int i = 0; i < rep->n; i++) {
        run *r = &rep->runs[i];
        r->path = in->logs[i];
        r->index = i;
        r->color = run_colors[i % (sizeof run_colors / sizeof run_colors[0])];
        if ((rc = read_log(rep, r)) != 0)
            return rc;
    }
    name_runs(rep);
    choose_energy_runs(rep);

    chart_out charts[N_CHARTS];
    memset(charts, 0, sizeof charts);
    error_chart(rep, &charts[CHART_ERROR]);
    per_run_chart(rep, &charts[CHART_LR], C_LR);
    per_run_chart(rep, &charts[CHART_SPEED], C_IPS);
    grouped_energy_chart(rep, &charts[CHART_PHASE], 0);
    grouped_energy_chart(rep, &charts[CHART_LAYER], 1);
    fp32_chart(rep, &charts[CHART_FP32]);
    sbuf page = {0};
    int oom = rep->notes.oom;
    for (int c = 0; c < N_CHARTS; c++)
        oom |= charts[c].svg.oom || charts[c].caption.oom || charts[c].svg.len < 4;
    if (!oom) {
        build_page(rep, charts, &page);
        oom = page.oom;
    }
    for (int c = 0; c < N_CHARTS && !oom && in->with_svg; c++)
        oom = standalone_svg(&charts[c].svg, &out->chart_svgs[c]) != 0;
    if (!oom)
        take_text(&page, &out->page);
    sb_free(&page);
    for (int c = 0; c < N_CHARTS; c++) {
        sb_free(&charts[c].svg);
        sb_free(&charts[c].caption);
    }
    return oom ? no_memory(rep->err) : 0;
}

int report_build(const report_input *in, report_output *out, report_error *err)
{
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    if (in->n_logs < 1 || in->n_logs > REPORT_MAX_RUNS || in->n_labels < 0 ||
        in->n_labels > in->n_logs || !in->title)
        return fail(err, FM_EINVAL, "report: %d logs (1 to %d), %d labels, %s", in->n_logs,
                    REPORT_MAX_RUNS, in->n_labels, in->title ? "a title" : "no title");
    report rep;
    memset(&rep, 0, sizeof rep);
    rep.in = in;
    rep.err = err;
    rep.n = in->n_logs;
    rep.ref = -1;
    rep.runs = calloc((size_t)rep.n, sizeof *rep.runs);
    if (!rep.runs)
        return no_memory(err);
    int rc = build_report(&rep, out);
    for (int i = 0; i < rep.n; i++)
        run_free(&rep.runs[i]);
    free(rep.runs);
    sb_free(&rep.notes);
    if (rc) {
        report_output_free(out);
        return rc;
    }
    for (int c = 0; c < N_CHARTS; c++)
        out->chart_names[c] = chart_names[c];
    return 0;
}

void report_output_free(report_output *out)
{
    free(out->page.data);
    for (int c = 0; c < REPORT_N_CHARTS; c++)
        free(out->chart_svgs[c].data);
    memset(out, 0, sizeof *out);
}
