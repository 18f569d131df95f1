/* cmd_energy.c — `fewmul energy`: its help, parse_energy, the built-in tables
 * (--list-tables, --print-table), and the measurement: one training step and
 * one inference pass of the network and of its fp32 peer, counted, priced and
 * reported as text or JSON. */
#include "cli.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

const char *const energy_help[] = {
    "Usage: fewmul energy [OPTIONS]",
    "       fewmul energy --list-tables | --print-table NAME",
    "",
    "Build a network, run one real training step (forward, backward, update) and",
    "one inference pass on a batch of synthetic examples, and report the ledger of",
    "that work: every scalar operation by kind (fp32 multiply, add, multiply-add,",
    "shift, sign flip or select, ...) and every byte each layer reads and writes,",
    "per layer and phase. An energy table prices it: a cost per operation, and a",
    "cost per byte read or written at the memory level that holds each tensor (the",
    "smallest level its footprint fits in). The same network with fp32 weights and",
    "without --qb is measured beside it, and the multiplications per minibatch are",
    "also given as the paper's table counts them. docs/ledger.md explains the",
    "counting and the memory model, docs/energy-tables.md the table format.",
    "Options take their value as '--opt VALUE' or '--opt=VALUE'.",
    "",
    "Network and step (as for 'fewmul train'):",
    "  --arch ARCH        paper-mlp (default), mlp:H1,H2,..., paper-cnn, bc-cnn or",
    "                     conv:ITEM,... (as for train)",
    "  --input N|HxWxC    input values: N, or height x width x channels (the",
    "                     convolutional networks need HxWxC, e.g. 32x32x3)",
    "                     (default 28x28x1 = 784; at most 1048576 values)",
    "  --classes C        outputs, 2..256 (default 10; labels are bytes)",
    "  --weights MODE     fp32 (default), bc, bc-det, tc, tc-det, synapse[:N]",
    "  --synapse-range R  largest/smallest synapse magnitude, R > 1 (default 60)",
    "  --scale glorot|one weight scale H (default glorot)",
    "  --qb[=EMIN:EMAX]   quantized back-prop (exponent clip as for train)",
    "  --qb-conv EMIN:EMAX|none",
    "                     the exponent clip in convolutions (default -4:3)",
    "  --qb-bn-shortcut   with --qb, the authors' error at the batch norm's output",
    "  --qb-bn-jacobian   with --qb, the exact pre-batch-norm error (the default)",
    "  --acts relu|binary hidden activations (default relu; binary: sign, as train)",
    "  --exec default|mulfree",
    "                     the arithmetic the dense and convolution products are",
    "                     counted in, as train: default, the method's sign",
    "                     selects and adds per term (the default path computes",
    "                     the same values with float GEMMs); mulfree, what the",
    "                     multiplication-free kernels execute: table lookups per",
    "                     4 weights, exponent adds (needs a quantized mode and",
    "                     --qb; docs/mulfree.md)",
    "  --batch B          examples in the step and the inference pass, 1..65536",
    "                     (default 200)",
    "  --loss hinge|xent  loss (default hinge)",
    "  --opt sgd|adam|bop optimizer of the update (default sgd); bop needs",
    "                     --weights bc-det: bits and one momentum per weight",
    "  --bop-gamma X      bop's momentum rate, 0 < X < 1 (default 0.001)",
    "  --bop-threshold X  bop's flip threshold, >= 0 (default 1e-6)",
    "  --latent fp32|bf16 the learning state per weight, as train: bf16 counts 2",
    "                     bytes for each latent weight or bop momentum and the",
    "                     stochastic rounding of each (default fp32)",
    "  --fuse             as train: each dense layer's update in the backward",
    "                     pass, with the next step's weights drawn there; the",
    "                     step measured is then one whose weights the step",
    "                     before drew, as every step of a run after its first",
    "  --momentum X       SGD momentum, 0 <= X < 1 (default 0)",
    "  --dropout P        drop probability of hidden units, 0 <= P < 1 (default 0)",
    "  --seed S           random seed (default 1234)",
    "  --threads T        worker threads, 1..1024 (default: all cores); the counts",
    "                     do not depend on it",
    "",
    "Energy table:",
    "  --table NAME|FILE  a built-in table (default horowitz45) or a table file;",
    "                     a missing file fails with exit status 3, a malformed",
    "                     one 4, an unreadable one 5",
    "  --list-tables      print the built-in tables, their units and sources",
    "  --print-table NAME print a built-in table in the file format, a start for",
    "                     one's own table file",
    "",
    "Output:",
    "  --verbose          list every tensor with its size and memory level (the",
    "                     report lists the largest few)",
    "  --json             print one JSON object, the last line of standard output,",
    "                     instead of the report",
    "  -h, --help         show this help",
    "",
    "The report has, for the training step and for the inference pass, one row per",
    "layer and phase with work, then each phase over all layers and the total.",
    "Columns: mul+fma (fmul, fma), add (fadd, iadd), shift, sign/sel, other",
    "(fspecial, xnor_popcount, cmp, rand), bytes read and written, compute and",
    "communication cost, and their ratio. Then the bytes and cost at each memory",
    "level, the method against fp32 with the energy saved, the Landauer floor",
    "(kT ln 2 at 300 K per bit; physical tables only), and the paper's count.",
    "Costs are in joules with an SI prefix when the table is physical, else in",
    "the table's unit times a power of 1000 (\"1e6 MAC\").",
    "",
    "JSON keys: command, arch, weights, synapse_levels, qb, qb_error, qb_emin, qb_emax,",
    "qb_conv_emin, qb_conv_emax,",
    "batch, input, input_dim, classes, seed, opt (latent with --latent bf16, fuse with",
    "--fuse; bop_gamma,",
    "bop_threshold, bop_gamma_final with",
    "--opt bop), describe, params, table, train_step,",
    "inference, fp32 (describe, train_step, inference), saved, paper_mults_standard,",
    "paper_mults_method, paper_ratio, landauer_j_per_bit. A ledger has layers",
    "(name, shape, phases), tensors (name, bytes, level), phases and total; each",
    "priced part has ops (the ten kinds, exact integers), read_bytes and",
    "written_bytes by level, compute, communication, comm_to_compute,",
    "landauer_bits, and compute_j, communication_j, landauer_j when the table is",
    "physical. docs/cli.md lists them in full.",
    "",
    "Exit status: 0 success; 2 usage error (bad option or value, unknown",
    "--print-table name); 3 --table names no built-in table and no file; 4 a",
    "malformed table file; 5 a table file that cannot be read; 6 out of",
    "memory. docs/errors.md lists the cases.",
    "",
    "Examples:",
    "  fewmul energy --weights bc --qb",
    "  fewmul energy --arch mlp:512,512 --input 32x32x3 --weights tc --qb=-4:3",
    "  fewmul energy --print-table horowitz45 > my.table   (edit it, then)",
    "  fewmul energy --weights bc --qb --table my.table --json",
    NULL};

/* ---- the built-in tables ------------------------------------------------- */

/* --list-tables: each built-in table with its unit and source. */
static int list_tables(void)
{
    for (int i = 0; fm_energy_table_builtin(i); i++) {
        const char *name = fm_energy_table_builtin(i);
        fm_energy_table *t = NULL;
        if (fm_energy_table_open(name, &t) != FM_OK)
            return failure("built-in table %s: %s", name, fm_last_error());
        const char *source = fm_energy_table_source(t);
        printf("%-12s %-6s %s%s\n", name, fm_energy_table_unit(t),
               source && source[0] ? source : "no source given", i == 0 ? " (default)" : "");
        fm_energy_table_free(t);
    }
    return CLI_OK;
}

/* The index of the built-in table called name, or -1. */
static int builtin_table_index(const char *name)
{
    for (int i = 0; fm_energy_table_builtin(i); i++)
        if (strcmp(fm_energy_table_builtin(i), name) == 0)
            return i;
    return -1;
}

/* --print-table with a name that is not built in: a usage error. */
static int no_builtin_table(const char *name)
{
    char names[256] = "";
    size_t len = 0;
    for (int i = 0; fm_energy_table_builtin(i); i++)
        append(names, sizeof names, &len, "%s%s", i ? ", " : "", fm_energy_table_builtin(i));
    return usage_error("--print-table: no built-in table '%s' (built in: %s)", name, names);
}

/* --print-table NAME: a built-in table's text, the start of one's own. */
static int print_builtin_table(const char *name)
{
    int i = builtin_table_index(name);
    if (i < 0)
        return no_builtin_table(name);
    const char *text = fm_energy_table_builtin_text(i);
    if (!text)
        return failure("built-in table %s has no text", name);
    fputs(text, stdout);
    if (text[0] && text[strlen(text) - 1] != '\n')
        putchar('\n');
    return CLI_OK;
}

/* ---- the measurement ----------------------------------------------------- */


typedef struct energy_run {
    fm_energy_table *table;
    fm_model *model, *peer;          /* the network, and the same in plain fp32 */
    fm_ledger *step, *infer;         /* its training step and inference pass */
    fm_ledger *peer_step, *peer_infer;
    uint64_t paper_standard, paper_method;
} energy_run;

static void energy_run_free(energy_run *r)
{
    fm_ledger_free(r->step);
    fm_ledger_free(r->infer);
    fm_ledger_free(r->peer_step);
    fm_ledger_free(r->peer_infer);
    fm_model_free(r->model);
    fm_model_free(r->peer);
    fm_energy_table_free(r->table);
}

/* A model the options describe; the library refusing its shape is a usage
 * error, anything else a failure. */
static int create_model(const fm_config *cfg, const int shape[3], int classes, fm_model **out)
{
    int err = fm_model_create_image(cfg, shape[0], shape[1], shape[2], classes, out);
    if (err == FM_EINVAL || err == FM_EUNSUPPORTED)
        return usage_error("%s", fm_last_error());
    if (err != FM_OK)
        return library_failure();
    return 0;
}

static int measure(fm_model *model, int batch, fm_ledger **step, fm_ledger **infer)
{
    if (fm_ledger_create(step) != FM_OK || fm_ledger_create(infer) != FM_OK)
        return library_failure();
    if (fm_model_measure(model, batch, *step, *infer) != FM_OK)
        return library_failure();
    return 0;
}

static double ledger_total(const fm_ledger *l, const fm_energy_table *t, fm_energy *e)
{
    if (price(l, t, -1, -1, e) != FM_OK)
        return NAN;
    return e->compute + e->communication;
}

/* The method against fp32: compute, communication, their ratio, the total. */
static int print_comparison(const energy_run *r, const char *peer_describe)
{
    const fm_ledger *ls[4] = {r->step, r->peer_step, r->infer, r->peer_infer};
    fm_energy e[4];
    double total[4], largest = 0;
    for (int i = 0; i < 4; i++) {
        total[i] = ledger_total(ls[i], r->table, &e[i]);
        if (isnan(total[i]))
            return library_failure();
        if (total[i] > largest)
            largest = total[i];
    }
    cost_unit u;
    choose_unit(&u, r->table, largest);
    printf("\nmethod vs fp32 (%s; costs in %s)\n", peer_describe, u.name);
    printf("  %-16s%10s%10s%11s%10s%13s\n", "", "compute", "comm", "comm/comp", "total",
           "fp32/method");
    static const char *const labels[4] = {"training step", "  fp32", "inference", "  fp32"};
    for (int i = 0; i < 4; i++) {
        char c[5][32];
        if (i % 2)
            fmt_ratio(c[4], 32, total[i], total[i - 1]);
        else
            c[4][0] = '\0';
        if (i % 2 && strcmp(c[4], "-") != 0)
            strncat(c[4], "x", sizeof c[4] - strlen(c[4]) - 1);
        printf("  %-16s%10s%10s%11s%10s", labels[i], fmt_cost(c[0], 32, e[i].compute, &u),
               fmt_cost(c[1], 32, e[i].communication, &u),
               fmt_ratio(c[2], 32, e[i].communication, e[i].compute),
               fmt_cost(c[3], 32, total[i], &u));
        if (c[4][0])
            printf("%13s", c[4]);
        putchar('\n');
    }
    double jpu = jpu_of(r->table);
    if (jpu > 0) {
        char a[48], b[48], per_bit[48];
        printf("Landauer floor (kT ln 2 at 300 K, %s per bit): training step %s, inference %s\n",
               fmt_joules(per_bit, sizeof per_bit, FM_LANDAUER_J_PER_BIT),
               fmt_joules(a, sizeof a, e[0].landauer_bits * FM_LANDAUER_J_PER_BIT),
               fmt_joules(b, sizeof b, e[2].landauer_bits * FM_LANDAUER_J_PER_BIT));
    }
    return 0;
}

static int print_energy_text(const train_opts *o, const energy_run *r)
{
    const fm_config *c = &o->cfg;
    printf("fewmul energy: %s\n", fm_model_describe(r->model));
    printf("batch %d, input %s (%d values), %d classes, seed %" PRIu64 "\n", c->batch, o->input,
           o->input_dim, o->classes, c->seed);
    if (c->opt == FM_OPT_BOP)
        printf("optimizer bop (gamma %g, threshold %g): the weights are their bits, flipped by one "
               "momentum each; batch norm by Adam\n", c->bop_gamma, c->bop_threshold);
    print_table_heading(r->table);

    static const char *const titles[2] = {"training step", "inference"};
    const fm_ledger *ls[2] = {r->step, r->infer};
    for (int i = 0; i < 2; i++) {
        cost_unit u;
        int rc = ledger_unit(ls[i], r->table, &u);
        if (rc)
            return rc;
        printf("\n%s (%d example%s; costs in %s)\n", titles[i], c->batch,
               c->batch == 1 ? "" : "s", u.name);
        rc = print_ledger_rows(ls[i], r->table, &u, o->verbose, "--verbose lists them all");
        if (rc)
            return rc;
    }
    char peer_describe[256];
    snprintf(peer_describe, sizeof peer_describe, "%s", fm_model_describe(r->peer));
    int rc = print_comparison(r, peer_describe);
    if (rc)
        return rc;
    char ratio[32] = "-";
    if (r->paper_standard)
        snprintf(ratio, sizeof ratio, "%.4g", (double)r->paper_method / (double)r->paper_standard);
    printf("paper view (multiplications per minibatch, as the paper's table):\n"
           "  standard %" PRIu64 ", this method %" PRIu64 " (ratio %s)\n",
           r->paper_standard, r->paper_method, ratio);
    return 0;
}

static int print_energy_json(const train_opts *o, const energy_run *r)
{
    const fm_config *c = &o->cfg;
    int bad = 0;
    json_writer w;
    json_begin(&w, stdout);
    json_string(&w, "command", "energy");
    json_string(&w, "arch", c->arch);
    json_mode(&w, c);
    json_int(&w, "batch", c->batch);
    json_string(&w, "input", o->input);
    json_int(&w, "input_dim", o->input_dim);
    json_int(&w, "classes", o->classes);
    json_uint(&w, "seed", (unsigned long long)c->seed);
    json_string(&w, "opt", choice_name(opt_choices, o->opt));
    json_bop(&w, c);
    json_string(&w, "describe", fm_model_describe(r->model));
    json_uint(&w, "params", (unsigned long long)fm_model_param_count(r->model));
    json_table(&w, "table", r->table);
    json_ledger(&w, "train_step", r->step, r->table, 0, &bad);
    json_ledger(&w, "inference", r->infer, r->table, 0, &bad);
    json_open(&w, "fp32", '{');
    json_string(&w, "describe", fm_model_describe(r->peer));
    json_ledger(&w, "train_step", r->peer_step, r->table, 0, &bad);
    json_ledger(&w, "inference", r->peer_infer, r->table, 0, &bad);
    json_close(&w, '}');
    fm_energy e;
    json_open(&w, "saved", '{');
    json_number(&w, "train_step",
                ledger_total(r->peer_step, r->table, &e) / ledger_total(r->step, r->table, &e));
    json_number(&w, "inference",
                ledger_total(r->peer_infer, r->table, &e) / ledger_total(r->infer, r->table, &e));
    json_close(&w, '}');
    json_u64(&w, "paper_mults_standard", r->paper_standard);
    json_u64(&w, "paper_mults_method", r->paper_method);
    json_number(&w, "paper_ratio",
                r->paper_standard ? (double)r->paper_method / (double)r->paper_standard : NAN);
    json_number(&w, "landauer_j_per_bit", FM_LANDAUER_J_PER_BIT);
    json_end(&w);
    return bad ? library_failure() : 0;
}

static int energy_with(const train_opts *o, energy_run *r)
{
    const fm_config *c = &o->cfg;
    int rc = open_table(o->table, &r->table);
    if (rc)
        return rc;
    if ((rc = create_model(c, o->input_shape, o->classes, &r->model)) != 0)
        return rc;
    if ((rc = measure(r->model, c->batch, &r->step, &r->infer)) != 0)
        return rc;
    /* the peer: the same network and step with fp32 weights, no quantized back-prop */
    fm_config peer = *c;
    peer.weights = FM_WEIGHTS_FP32;
    peer.qb = 0;
    peer.qb_emin = peer.qb_emax = FM_QB_UNBOUNDED;
    peer.exec = FM_EXEC_DEFAULT;
    peer.latent = FM_LATENT_FP32; /* fp32 weights are their own state */
    if (peer.opt == FM_OPT_BOP) /* fp32 weights have no bits to flip: Adam, bop's for the rest */
        peer.opt = FM_OPT_ADAM;
    if ((rc = create_model(&peer, o->input_shape, o->classes, &r->peer)) != 0)
        return rc;
    if ((rc = measure(r->peer, c->batch, &r->peer_step, &r->peer_infer)) != 0)
        return rc;
    if (fm_model_paper_mults(r->model, c->batch, &r->paper_standard, &r->paper_method) != FM_OK)
        return library_failure();
    return o->json ? print_energy_json(o, r) : print_energy_text(o, r);
}

/* ---- the command --------------------------------------------------------- */

/* With --list-tables or --print-table the command prints built-in tables
 * instead of measuring, and the network's options go unchecked. An unknown
 * --print-table name is a usage error found here, unless --list-tables comes
 * first: then the list is printed before the error (cmd_energy). */
int parse_energy(int argc, char **argv, train_opts *o)
{
    train_opts_default(o);
    int rc = parse_options(energy_options, o, &o->help, argc, argv, 2, NULL);
    if (rc || o->help)
        return rc;
    if (o->list_tables || o->print_table) {
        if (o->print_table && !o->list_tables && builtin_table_index(o->print_table) < 0)
            return no_builtin_table(o->print_table);
        return CLI_OK;
    }
    train_opts_finish(o);
    if ((rc = train_opts_check_bop(o)) != 0)
        return rc;
    if (fm_config_check(&o->cfg) != FM_OK)
        return usage_error("%s", fm_last_error());
    return CLI_OK;
}

int cmd_energy(int argc, char **argv)
{
    train_opts o;
    int rc = parse_energy(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, energy_help);
        return CLI_OK;
    }
    if (o.list_tables || o.print_table) {
        if (o.list_tables && (rc = list_tables()) != 0)
            return rc;
        return o.print_table ? print_builtin_table(o.print_table) : CLI_OK;
    }
    threads_reported(o.cfg.threads);
    energy_run r;
    memset(&r, 0, sizeof r);
    rc = energy_with(&o, &r);
    energy_run_free(&r);
    return rc;
}
