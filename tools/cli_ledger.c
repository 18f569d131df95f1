/* cli_ledger.c — the energy ledger as `fewmul energy` and `fewmul train --ledger`
 * show it: pricing with an energy table, cost units and number formats, the
 * text report (rows per layer and phase, memory levels, tensors, the table's
 * heading, a run's passes) and the ledger and table as JSON. */
#include "cli.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the energy ledger: pricing and reports ------------------------------ */

/* Whether one layer and phase of a ledger (negative: all) has any work. */
static int has_work(const fm_ledger *l, int layer, int phase)
{
    for (int op = 0; op < FM_OP_KINDS; op++)
        if (fm_ledger_ops(l, layer, phase, (fm_op)op))
            return 1;
    return fm_ledger_bytes(l, layer, phase, -1, 0) || fm_ledger_bytes(l, layer, phase, -1, 1);
}

static int phases_with_work(const fm_ledger *l, int layer)
{
    int n = 0;
    for (int p = 0; p < FM_PHASES; p++)
        n += has_work(l, layer, p);
    return n;
}

int price(const fm_ledger *l, const fm_energy_table *t, int layer, int phase, fm_energy *e)
{
    memset(e, 0, sizeof *e);
    return fm_ledger_price(l, t, layer, phase, e);
}

double jpu_of(const fm_energy_table *t)
{
    double jpu = fm_energy_table_joules_per_unit(t);
    return jpu > 0 && isfinite(jpu) ? jpu : 0;
}

/* SI prefixes for joules, largest first. */
static const struct si_prefix {
    double factor;
    const char *name;
} si_prefixes[] = {{1, ""},      {1e-3, "m"},   {1e-6, "\xc2\xb5"}, {1e-9, "n"},
                   {1e-12, "p"}, {1e-15, "f"},  {1e-18, "a"},       {1e-21, "z"}};
enum { SI_PREFIXES = sizeof si_prefixes / sizeof si_prefixes[0] };

static int si_index(double joules)
{
    int i = 0;
    if (!(joules > 0))
        return 0;
    while (i + 1 < SI_PREFIXES && joules < si_prefixes[i].factor)
        i++;
    return i;
}

/* "1.23 µJ" */
const char *fmt_joules(char *buf, size_t cap, double joules)
{
    int i = si_index(joules);
    snprintf(buf, cap, "%.3g %sJ", joules / si_prefixes[i].factor, si_prefixes[i].name);
    return buf;
}

/* How costs are shown in a text table (cost_unit): joules with the SI prefix
 * that puts `largest` (table units) in [1, 1000), or the table's own unit when
 * it is not physical. */
void choose_unit(cost_unit *u, const fm_energy_table *t, double largest)
{
    double jpu = jpu_of(t);
    if (jpu == 0) {
        /* "1e6 MAC": a power of 1000 of the table's unit */
        int k = 0;
        u->scale = 1;
        while (largest * u->scale >= 1000 && k < 30) {
            u->scale /= 1000;
            k += 3;
        }
        if (k)
            snprintf(u->name, sizeof u->name, "1e%d %s", k, fm_energy_table_unit(t));
        else
            snprintf(u->name, sizeof u->name, "%s", fm_energy_table_unit(t));
        return;
    }
    int i = si_index(largest * jpu);
    u->scale = jpu / si_prefixes[i].factor;
    snprintf(u->name, sizeof u->name, "%sJ", si_prefixes[i].name);
}

/* 12345, 160.6M, 1.748G: counts readable at a glance (JSON has them exact). */
static const char *fmt_count(char *buf, size_t cap, uint64_t n)
{
    static const char suffix[] = "kMGTPE";
    if (n < 100000) {
        snprintf(buf, cap, "%" PRIu64, n);
        return buf;
    }
    double v = (double)n;
    int i = -1;
    while (v >= 999.95 && i < 5) {
        v /= 1000;
        i++;
    }
    snprintf(buf, cap, "%.4g%c", v, suffix[i]);
    return buf;
}

const char *fmt_cost(char *buf, size_t cap, double units, const cost_unit *u)
{
    snprintf(buf, cap, "%.3g", units * u->scale);
    return buf;
}

const char *fmt_ratio(char *buf, size_t cap, double num, double den)
{
    if (den > 0 && isfinite(num / den))
        snprintf(buf, cap, num / den >= 1000 && num / den < 1e9 ? "%.0f" : "%.3g", num / den);
    else
        snprintf(buf, cap, "-");
    return buf;
}

static const char *level_name(const fm_energy_table *t, int level)
{
    if (level == FM_LEDGER_NETWORK)
        return "network"; /* bytes between the ranks of an MPI run */
    const char *name = level >= 0 ? fm_energy_table_level_name(t, level) : NULL;
    return name ? name : "?";
}

/* The rows of the text report: operation columns group the ten kinds. */
static void print_rows_header(void)
{
    printf("  %-14s%7s%7s%7s%9s%7s%8s%8s%9s%9s%10s\n", "layer/phase", "mul+fma", "add",
           "shift", "sign/sel", "other", "read B", "write B", "compute", "comm", "comm/comp");
}

static void print_row(const char *label, const fm_ledger *l, int layer, int phase,
                      const fm_energy *e, const cost_unit *u)
{
#define OPS(op) fm_ledger_ops(l, layer, phase, op)
    uint64_t mul = OPS(FM_OP_FMUL) + OPS(FM_OP_FMA), add = OPS(FM_OP_FADD) + OPS(FM_OP_IADD);
    uint64_t shift = OPS(FM_OP_SHIFT), sign = OPS(FM_OP_SIGN);
    uint64_t other = OPS(FM_OP_FSPECIAL) + OPS(FM_OP_XNOR_POPCOUNT) + OPS(FM_OP_CMP) +
                     OPS(FM_OP_RAND);
#undef OPS
    char c[11][32];
    printf("    %-12s%7s%7s%7s%9s%7s%8s%8s%9s%9s%10s\n", label, fmt_count(c[0], 32, mul),
           fmt_count(c[1], 32, add), fmt_count(c[2], 32, shift), fmt_count(c[3], 32, sign),
           fmt_count(c[4], 32, other), fmt_count(c[5], 32, fm_ledger_bytes(l, layer, phase, -1, 0)),
           fmt_count(c[6], 32, fm_ledger_bytes(l, layer, phase, -1, 1)),
           fmt_cost(c[7], 32, e->compute, u), fmt_cost(c[8], 32, e->communication, u),
           fmt_ratio(c[9], 32, e->communication, e->compute));
}

/* Prints `items` (already formatted) after `lead`, wrapped before 98 columns. */
static void print_wrapped(const char *lead, const char *const *items, int n, const char *tail)
{
    size_t col = strlen(lead);
    fputs(lead, stdout);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(items[i]) + (i + 1 < n ? 1 : 0);
        if (i > 0 && col + 1 + len > 98) {
            printf("\n    ");
            col = 4;
        } else if (i > 0) {
            putchar(' ');
            col++;
        }
        printf("%s%s", items[i], i + 1 < n ? "," : "");
        col += len;
    }
    printf("%s\n", tail ? tail : "");
}

/* The tensors of a ledger, largest first (ties in recording order). */
static int *tensors_by_size(const fm_ledger *l, int *count)
{
    int n = fm_ledger_tensors(l);
    *count = n > 0 ? n : 0;
    int *order = malloc(sizeof *order * (size_t)(*count + 1));
    if (!order)
        return NULL;
    for (int i = 0; i < *count; i++) {
        int j = i;
        uint64_t b = fm_ledger_tensor_bytes(l, i);
        while (j > 0 && fm_ledger_tensor_bytes(l, order[j - 1]) < b) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    return order;
}

/* Memory levels (bytes and cost of the whole ledger at each) and tensors:
 * all of them when `all`, else the largest few. */
static int print_memory(const fm_ledger *l, const fm_energy_table *t, const cost_unit *u,
                        int all, const char *more_hint)
{
    fm_energy e;
    if (price(l, t, -1, -1, &e) != FM_OK)
        return library_failure();
    int levels = fm_energy_table_levels(t), count = 0;
    int *order = tensors_by_size(l, &count);
    if (!order)
        return failure_as(FM_ENOMEM, "out of memory");
    printf("  %-14s%10s%10s%10s%10s%9s\n", "memory level", "capacity", "read B", "write B",
           "cost", "tensors");
    for (int lv = 0; lv < levels && lv < FM_ENERGY_MAX_LEVELS; lv++) {
        char cap[32], r[32], w[32], cost[32];
        uint64_t capacity = fm_energy_table_level_capacity(t, lv);
        int held = 0;
        for (int i = 0; i < count; i++)
            held += fm_ledger_tensor_level(l, t, i) == lv;
        if (capacity == FM_ENERGY_UNBOUNDED)
            snprintf(cap, sizeof cap, "-");
        else
            fmt_size(cap, sizeof cap, capacity);
        printf("  %-14s%10s%10s%10s%10s%9d\n", level_name(t, lv), cap,
               fmt_count(r, sizeof r, e.read_bytes[lv]),
               fmt_count(w, sizeof w, e.written_bytes[lv]),
               fmt_cost(cost, sizeof cost, e.level_cost[lv], u), held);
    }
    if (e.network_sent || e.network_received) {
        char r[32], w[32], cost[32];
        int held = 0;
        for (int i = 0; i < count; i++)
            held += fm_ledger_tensor_level(l, t, i) == FM_LEDGER_NETWORK;
        printf("  %-14s%10s%10s%10s%10s%9d\n", "network", "ranks",
               fmt_count(r, sizeof r, e.network_received), fmt_count(w, sizeof w, e.network_sent),
               fm_energy_table_has_network(t) ? fmt_cost(cost, sizeof cost, e.network_cost, u)
                                              : "unpriced",
               held);
    }
    if (count > 0) {
        int shown = all || count <= 6 ? count : 4;
        char(*text)[160] = malloc(sizeof *text * (size_t)shown);
        const char **items = malloc(sizeof *items * (size_t)shown);
        if (!text || !items) {
            free(text);
            free(items);
            free(order);
            return failure_as(FM_ENOMEM, "out of memory");
        }
        for (int i = 0; i < shown; i++) {
            char size[32];
            snprintf(text[i], sizeof text[i], "%s %s (%s)", fm_ledger_tensor_name(l, order[i]),
                     fmt_size(size, sizeof size, fm_ledger_tensor_bytes(l, order[i])),
                     level_name(t, fm_ledger_tensor_level(l, t, order[i])));
            items[i] = text[i];
        }
        char tail[128] = "";
        if (shown < count)
            snprintf(tail, sizeof tail, ", ... (%d in all; %s)", count, more_hint);
        print_wrapped(shown < count ? "  largest tensors: " : "  tensors: ", items, shown, tail);
        free(text);
        free(items);
    }
    free(order);
    return 0;
}

/* The rows of a ledger: each layer's phases with work, then all layers by
 * phase and in total, then memory and tensors. */
int print_ledger_rows(const fm_ledger *l, const fm_energy_table *t, const cost_unit *u,
                      int all_tensors, const char *more_hint)
{
    fm_energy e;
    print_rows_header();
    for (int layer = 0; layer < fm_ledger_layers(l); layer++) {
        if (!phases_with_work(l, layer))
            continue;
        const char *name = fm_ledger_layer_name(l, layer), *shape = fm_ledger_layer_shape(l, layer);
        printf("  %s%s%s\n", name ? name : "?", shape && shape[0] ? " " : "", shape ? shape : "");
        for (int p = 0; p < FM_PHASES; p++) {
            if (!has_work(l, layer, p))
                continue;
            if (price(l, t, layer, p, &e) != FM_OK)
                return library_failure();
            print_row(fm_phase_name((fm_phase)p), l, layer, p, &e, u);
        }
    }
    printf("  all layers\n");
    for (int p = 0; p < FM_PHASES; p++) {
        if (!has_work(l, -1, p))
            continue;
        if (price(l, t, -1, p, &e) != FM_OK)
            return library_failure();
        print_row(fm_phase_name((fm_phase)p), l, -1, p, &e, u);
    }
    if (phases_with_work(l, -1) != 1) {
        if (price(l, t, -1, -1, &e) != FM_OK)
            return library_failure();
        print_row("total", l, -1, -1, &e, u);
    }
    return print_memory(l, t, u, all_tensors, more_hint);
}

/* A cost unit for a whole ledger, from its total. */
int ledger_unit(const fm_ledger *l, const fm_energy_table *t, cost_unit *u)
{
    fm_energy e;
    if (price(l, t, -1, -1, &e) != FM_OK)
        return library_failure();
    choose_unit(u, t, e.compute > e.communication ? e.compute : e.communication);
    return 0;
}

/* Prints lead then text, wrapped at spaces before 98 columns; continuation
 * lines are indented by 4. */
static void print_words(const char *lead, const char *text)
{
    size_t col = strlen(lead);
    int first = 1;
    fputs(lead, stdout);
    for (;;) {
        while (*text == ' ')
            text++;
        if (!*text)
            break;
        size_t word = strcspn(text, " ");
        if (!first && col + 1 + word > 98) {
            fputs("\n    ", stdout);
            col = 4;
        } else if (!first) {
            putchar(' ');
            col++;
        }
        fwrite(text, 1, word, stdout);
        col += word;
        text += word;
        first = 0;
    }
    putchar('\n');
}

void print_table_heading(const fm_energy_table *t)
{
    const char *source = fm_energy_table_source(t);
    char lead[160];
    snprintf(lead, sizeof lead, "table %s (%s): ", fm_energy_table_name(t),
             fm_energy_table_unit(t));
    print_words(lead, source && source[0] ? source : "no source given");
    int levels = fm_energy_table_levels(t);
    char(*text)[96] = malloc(sizeof *text * (size_t)(levels > 0 ? levels : 1));
    const char **items = malloc(sizeof *items * (size_t)(levels > 0 ? levels : 1));
    if (text && items) {
        for (int lv = 0; lv < levels; lv++) {
            char size[32];
            uint64_t capacity = fm_energy_table_level_capacity(t, lv);
            if (capacity == FM_ENERGY_UNBOUNDED)
                snprintf(text[lv], sizeof text[lv], "%s", level_name(t, lv));
            else
                snprintf(text[lv], sizeof text[lv], "%s %s", level_name(t, lv),
                         fmt_size(size, sizeof size, capacity));
            items[lv] = text[lv];
        }
        print_wrapped("levels: ", items, levels, NULL);
    }
    free(text);
    free(items);
}

/* ---- the energy ledger: JSON --------------------------------------------- */

/* One priced part P of a ledger; sets *bad when the library failed. */
static void json_priced(json_writer *w, const char *key, const fm_ledger *l,
                        const fm_energy_table *t, int layer, int phase, int *bad)
{
    fm_energy e;
    if (price(l, t, layer, phase, &e) != FM_OK) {
        *bad = 1;
        json_null(w, key);
        return;
    }
    double jpu = jpu_of(t);
    int levels = fm_energy_table_levels(t);
    json_open(w, key, '{');
    json_open(w, "ops", '{');
    for (int op = 0; op < FM_OP_KINDS; op++)
        json_u64(w, fm_op_name((fm_op)op), fm_ledger_ops(l, layer, phase, (fm_op)op));
    json_close(w, '}');
    for (int written = 0; written <= 1; written++) {
        json_open(w, written ? "written_bytes" : "read_bytes", '{');
        for (int lv = 0; lv < levels && lv < FM_ENERGY_MAX_LEVELS; lv++)
            json_u64(w, level_name(t, lv), written ? e.written_bytes[lv] : e.read_bytes[lv]);
        /* bytes received from and sent to the other ranks of an MPI run */
        if (e.network_sent || e.network_received)
            json_u64(w, "network", written ? e.network_sent : e.network_received);
        json_close(w, '}');
    }
    if (e.network_sent || e.network_received)
        json_number(w, "network_cost", e.network_cost);
    json_number(w, "compute", e.compute);
    json_number(w, "communication", e.communication);
    if (jpu > 0) {
        json_number(w, "compute_j", e.compute * jpu);
        json_number(w, "communication_j", e.communication * jpu);
    }
    json_number(w, "comm_to_compute", e.compute > 0 ? e.communication / e.compute : NAN);
    json_number(w, "landauer_bits", e.landauer_bits);
    if (jpu > 0)
        json_number(w, "landauer_j", e.landauer_bits * FM_LANDAUER_J_PER_BIT);
    json_close(w, '}');
}

/* A ledger L: its layers with their phases that have work, its tensors and
 * their levels, each phase over all layers, the total, and (runs) the passes. */
void json_ledger(json_writer *w, const char *key, const fm_ledger *l, const fm_energy_table *t,
                 int with_passes, int *bad)
{
    json_open(w, key, '{');
    json_open(w, "layers", '[');
    for (int layer = 0; layer < fm_ledger_layers(l); layer++) {
        json_open(w, NULL, '{');
        json_string(w, "name", fm_ledger_layer_name(l, layer));
        json_string(w, "shape", fm_ledger_layer_shape(l, layer));
        json_open(w, "phases", '{');
        for (int p = 0; p < FM_PHASES; p++)
            if (has_work(l, layer, p))
                json_priced(w, fm_phase_name((fm_phase)p), l, t, layer, p, bad);
        json_close(w, '}');
        json_close(w, '}');
    }
    json_close(w, ']');
    json_open(w, "tensors", '[');
    for (int i = 0; i < fm_ledger_tensors(l); i++) {
        json_open(w, NULL, '{');
        json_string(w, "name", fm_ledger_tensor_name(l, i));
        json_u64(w, "bytes", fm_ledger_tensor_bytes(l, i));
        int lv = fm_ledger_tensor_level(l, t, i);
        json_string(w, "level", lv >= 0 || lv == FM_LEDGER_NETWORK ? level_name(t, lv) : NULL);
        json_close(w, '}');
    }
    json_close(w, ']');
    json_open(w, "phases", '{');
    for (int p = 0; p < FM_PHASES; p++)
        if (has_work(l, -1, p))
            json_priced(w, fm_phase_name((fm_phase)p), l, t, -1, p, bad);
    json_close(w, '}');
    json_priced(w, "total", l, t, -1, -1, bad);
    if (with_passes) {
        json_open(w, "passes", '{');
        for (int p = 0; p < FM_PHASES; p++) {
            uint64_t examples = 0, passes = fm_ledger_passes(l, p, &examples);
            json_open(w, fm_phase_name((fm_phase)p), '{');
            json_u64(w, "passes", passes);
            json_u64(w, "examples", examples);
            json_close(w, '}');
        }
        json_close(w, '}');
    }
    json_close(w, '}');
}

void json_table(json_writer *w, const char *key, const fm_energy_table *t)
{
    json_open(w, key, '{');
    json_string(w, "name", fm_energy_table_name(t));
    json_string(w, "source", fm_energy_table_source(t));
    json_string(w, "unit", fm_energy_table_unit(t));
    json_number(w, "joules_per_unit", jpu_of(t));
    json_open(w, "levels", '[');
    for (int lv = 0; lv < fm_energy_table_levels(t); lv++) {
        uint64_t capacity = fm_energy_table_level_capacity(t, lv);
        json_open(w, NULL, '{');
        json_string(w, "name", level_name(t, lv));
        if (capacity == FM_ENERGY_UNBOUNDED)
            json_null(w, "capacity_bytes");
        else
            json_u64(w, "capacity_bytes", capacity);
        json_number(w, "read_cost_per_byte", fm_energy_table_level_cost(t, lv, 0));
        json_number(w, "write_cost_per_byte", fm_energy_table_level_cost(t, lv, 1));
        json_close(w, '}');
    }
    json_close(w, ']');
    if (fm_energy_table_has_network(t)) {
        json_open(w, "network", '{');
        json_number(w, "send_cost_per_byte", fm_energy_table_network_cost(t, 0));
        json_number(w, "receive_cost_per_byte", fm_energy_table_network_cost(t, 1));
        json_close(w, '}');
    } else {
        json_null(w, "network");
    }
    json_open(w, "ops", '{');
    for (int op = 0; op < FM_OP_KINDS; op++)
        json_number(w, fm_op_name((fm_op)op), fm_energy_table_op_cost(t, (fm_op)op));
    json_close(w, '}');
    json_close(w, '}');
}

/* --table: a built-in name or a file; a missing, unreadable or malformed
 * table is a failure (exit 3, 4 or 5) with the library's message, which names the
 * file (and line), or the built-in tables when a name is neither. */
int open_table(const char *name, fm_energy_table **out)
{
    if (!name)
        name = fm_energy_table_builtin(0);
    if (fm_energy_table_open(name, out) != FM_OK)
        return failure_as(fm_last_error_code(), "--table: %s", fm_last_error());
    return 0;
}

/* After train's summary: what the run did, priced with the table. */
int print_run_ledger(const fm_ledger *l, const fm_energy_table *t)
{
    cost_unit u;
    int rc = ledger_unit(l, t, &u);
    if (rc)
        return rc;
    printf("\nledger of the run (costs in %s):\n", u.name);
    print_table_heading(t);
    char text[FM_PHASES][96];
    const char *items[FM_PHASES];
    for (int p = 0; p < FM_PHASES; p++) {
        uint64_t examples = 0, passes = fm_ledger_passes(l, p, &examples);
        snprintf(text[p], sizeof text[p], "%s %" PRIu64 " (%" PRIu64 " examples)",
                 fm_phase_name((fm_phase)p), passes, examples);
        items[p] = text[p];
    }
    print_wrapped("passes: ", items, FM_PHASES, NULL);
    rc = print_ledger_rows(l, t, &u, 0, "--json lists them all");
    if (rc)
        return rc;
    fm_energy e;
    if (price(l, t, -1, -1, &e) != FM_OK)
        return library_failure();
    double jpu = jpu_of(t);
    if (jpu > 0) {
        char a[48], b[48], c[48];
        printf("run total: compute %s, communication %s; Landauer floor %s\n",
               fmt_joules(a, sizeof a, e.compute * jpu),
               fmt_joules(b, sizeof b, e.communication * jpu),
               fmt_joules(c, sizeof c, e.landauer_bits * FM_LANDAUER_J_PER_BIT));
    }
    return 0;
}
