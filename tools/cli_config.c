/* cli_config.c — the options of `fewmul train` and `fewmul energy` (train_opts):
 * the choice tables, the setters of --weights, --qb, --qb-conv and --input,
 * both option tables, the defaults and the finishing of a parsed set, and the
 * weight mode and bop's parameters as JSON; bop's options and their check. */
#include "cli.h"

#include <limits.h>
#include <math.h>
#include <string.h>

const choice opt_choices[] = {{"sgd", FM_OPT_SGD}, {"adam", FM_OPT_ADAM}, {"bop", FM_OPT_BOP},
                              {NULL, 0}};
static const choice loss_choices[] = {{"hinge", FM_LOSS_HINGE}, {"xent", FM_LOSS_XENT}, {NULL, 0}};
const choice preproc_choices[] = {{"center", FM_PRE_CENTER},   {"unit", FM_PRE_UNIT},
                                  {"gcn-zca", FM_PRE_GCN_ZCA}, {"gcn-lcn", FM_PRE_GCN_LCN},
                                  {NULL, 0}};
static const choice bn_choices[] = {{"paper", FM_BN_PAPER}, {"running", FM_BN_RUNNING}, {NULL, 0}};
static const choice scale_choices[] = {{"glorot", FM_SCALE_GLOROT}, {"one", FM_SCALE_ONE}, {NULL, 0}};
static const choice test_weight_choices[] = {{"real", 0}, {"quantized", 1}, {NULL, 0}};
const choice export_choices[] = {{"det", FM_EXPORT_DET}, {"mean", FM_EXPORT_MEAN}, {NULL, 0}};
const choice acts_choices[] = {{"relu", FM_ACTS_RELU}, {"binary", FM_ACTS_BINARY}, {NULL, 0}};
const choice exec_choices[] = {{"default", FM_EXEC_DEFAULT}, {"mulfree", FM_EXEC_MULFREE}, {NULL, 0}};
const choice latent_choices[] = {{"fp32", FM_LATENT_FP32}, {"bf16", FM_LATENT_BF16}, {NULL, 0}};
const choice compress_choices[] = {{"none", FM_COMPRESS_NONE}, {"pow2", FM_COMPRESS_POW2},
                                   {"int8", FM_COMPRESS_INT8}, {NULL, 0}};

static int set_weights(void *opts, const char *value)
{
    train_opts *o = opts;
    if (fm_parse_weights(value, &o->cfg) != FM_OK)
        return usage_error("--weights: %s", fm_last_error());
    return 0;
}

/* "EMIN:EMAX", integers in -126..126, EMIN <= EMAX: an exponent clip of Q(x). */
static int parse_exponent_range(const char *option, const char *value, const char *forms,
                                int *emin_out, int *emax_out)
{
    const char *colon = strchr(value, ':');
    char emin_text[32];
    size_t len = colon ? (size_t)(colon - value) : 0;
    if (!colon || len >= sizeof emin_text)
        return usage_error("--%s: '%s' is not %s (e.g. --%s=-4:3)", option, value, forms, option);
    memcpy(emin_text, value, len);
    emin_text[len] = '\0';
    long emin = 0, emax = 0;
    if (parse_long(emin_text, &emin) != NUM_OK || parse_long(colon + 1, &emax) != NUM_OK)
        return usage_error("--%s: '%s' is not EMIN:EMAX with integer exponents", option, value);
    if (emin < -126 || emin > 126 || emax < -126 || emax > 126)
        return usage_error("--%s: exponents of '%s' must lie in -126..126", option, value);
    if (emin > emax)
        return usage_error("--%s: EMIN %ld is greater than EMAX %ld", option, emin, emax);
    *emin_out = (int)emin;
    *emax_out = (int)emax;
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
    return parse_exponent_range("qb", value, "EMIN:EMAX", &o->cfg.qb_emin, &o->cfg.qb_emax);
}

/* "--qb-bn-shortcut": the authors' error for a dense layer's weight gradient
 * (at its batch norm's output) instead of the exact one, the default. */
static int set_qb_bn_shortcut(void *opts, const char *value)
{
    (void)value;
    ((train_opts *)opts)->cfg.qb_bn_jacobian = 0;
    return 0;
}

/* "--qb-conv=EMIN:EMAX" or "--qb-conv=none": the exponent clip of Q(x) in
 * convolutions (default -4:3, the authors' conv code). */
static int set_qb_conv(void *opts, const char *value)
{
    train_opts *o = opts;
    if (strcmp(value, "none") == 0) {
        o->cfg.qb_conv_emin = o->cfg.qb_conv_emax = FM_QB_UNBOUNDED;
        return 0;
    }
    return parse_exponent_range("qb-conv", value, "EMIN:EMAX or none", &o->cfg.qb_conv_emin,
                                &o->cfg.qb_conv_emax);
}

/* --bop-gamma, --bop-threshold and --bop-gamma-final: bop's own, refused
 * without --opt bop (train_opts_check_bop). */
static const option_def bop_gamma_def = {"bop-gamma", T_DOUBLE, 0, 0, 1,
                                         LO_OPEN | HI_OPEN | AS_FLOAT, NULL, 0, NULL};
static const option_def bop_threshold_def = {"bop-threshold", T_DOUBLE, 0, 0, INFINITY, AS_FLOAT,
                                             NULL, 0, NULL};
static const option_def bop_gamma_final_def = {"bop-gamma-final", T_DOUBLE, 0, 0, 1,
                                               LO_OPEN | HI_OPEN | AS_FLOAT, NULL, 0, NULL};

static int set_bop_gamma(void *opts, const char *value)
{
    train_opts *o = opts;
    o->bop_given = "bop-gamma";
    return option_set_double(&bop_gamma_def, &o->cfg.bop_gamma, value);
}

static int set_bop_threshold(void *opts, const char *value)
{
    train_opts *o = opts;
    o->bop_given = "bop-threshold";
    return option_set_double(&bop_threshold_def, &o->cfg.bop_threshold, value);
}

static int set_bop_gamma_final(void *opts, const char *value)
{
    train_opts *o = opts;
    o->bop_given = "bop-gamma-final";
    return option_set_double(&bop_gamma_final_def, &o->cfg.bop_gamma_final, value);
}

int train_opts_check_bop(const train_opts *o)
{
    if (o->bop_given && o->cfg.opt != FM_OPT_BOP)
        return usage_error("--%s applies to --opt bop only (the optimizer is %s)", o->bop_given,
                           choice_name(opt_choices, o->opt));
    return CLI_OK;
}

/* "--checkpoint-every N" (training steps) or "Ns", "Nm", "Nh" (seconds,
 * minutes, hours of wall-clock time): when train writes a checkpoint besides
 * the end of each epoch. */
static int set_checkpoint_every(void *opts, const char *value)
{
    train_opts *o = opts;
    char digits[32];
    size_t len = strlen(value);
    const char unit = len ? value[len - 1] : '\0';
    const double scale = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 0;
    if (scale > 0)
        len--;
    long n = 0;
    if (len == 0 || len >= sizeof digits)
        return usage_error("--checkpoint-every: '%s' is not N (steps) or Ns, Nm, Nh (e.g. 500 or 10m)",
                           value);
    memcpy(digits, value, len);
    digits[len] = '\0';
    if (parse_long(digits, &n) != NUM_OK)
        return usage_error("--checkpoint-every: '%s' is not N (steps) or Ns, Nm, Nh (e.g. 500 or 10m)",
                           value);
    if (n < 1 || n > 100000000L)
        return usage_error("--checkpoint-every: %s is out of range (must be between 1 and 100000000)",
                           value);
    o->checkpoint_every = scale > 0 ? 0 : n;
    o->checkpoint_seconds = scale > 0 ? (double)n * scale : 0;
    return 0;
}

/* Largest --input of `fewmul energy`: a 1024x1024 image, or 224x224x3. */
#define MAX_INPUT_DIM 1048576L

/* "N" or "HxWxC": the input values of `fewmul energy`'s network. */
static int set_input(void *opts, const char *value)
{
    train_opts *o = opts;
    long dims[3], product = 1;
    int n = 0;
    const char *p = value;
    for (;;) {
        char part[32];
        size_t len = strcspn(p, "x");
        if (n == 3 || len == 0 || len >= sizeof part)
            return usage_error("--input: '%s' is not N or HxWxC (e.g. 784 or 28x28x1)", value);
        memcpy(part, p, len);
        part[len] = '\0';
        if (parse_long(part, &dims[n]) != NUM_OK)
            return usage_error("--input: '%s' is not N or HxWxC (e.g. 784 or 28x28x1)", value);
        if (dims[n] < 1 || dims[n] > MAX_INPUT_DIM)
            return usage_error("--input: %s in '%s' is out of range (each size must be >= 1)",
                               part, value);
        product *= dims[n++];
        if (product > MAX_INPUT_DIM)
            return usage_error("--input: '%s' is more than %ld values", value, MAX_INPUT_DIM);
        if (!p[len])
            break;
        p += len + 1;
    }
    if (n != 1 && n != 3)
        return usage_error("--input: '%s' has %d sizes; give N or HxWxC (e.g. 28x28x1)", value,
                           n);
    o->input = value;
    o->input_dim = (int)product;
    for (int i = 0; i < 3; i++)
        o->input_shape[i] = n == 3 ? (int)dims[i] : i == 0 ? (int)product : 1;
    return 0;
}

#define TOPT(field) offsetof(train_opts, field)
const option_def train_options[] = {
    {"data", T_STRING, TOPT(data), 0, 0, 0, NULL, 0, NULL},
    {"arch", T_STRING, TOPT(cfg.arch), 0, 0, 0, NULL, 0, NULL},
    {"out", T_STRING, TOPT(out), 0, 0, 0, NULL, 0, NULL},
    {"state", T_STRING, TOPT(state), 0, 0, 0, NULL, 0, NULL},
    {"export", T_CHOICE, TOPT(export_how), 0, 0, 0, export_choices, 0, NULL},
    {"acts", T_CHOICE, TOPT(acts), 0, 0, 0, acts_choices, 0, NULL},
    {"exec", T_CHOICE, TOPT(exec), 0, 0, 0, exec_choices, 0, NULL},
    {"weights", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_weights},
    {"synapse-range", T_DOUBLE, TOPT(cfg.synapse_range), 1, INFINITY, LO_OPEN | AS_FLOAT, NULL, 0, NULL},
    {"scale", T_CHOICE, TOPT(scale), 0, 0, 0, scale_choices, 0, NULL},
    {"qb", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_OPTIONAL, set_qb},
    {"qb-bn-jacobian", T_FLAG, TOPT(cfg.qb_bn_jacobian), 0, 0, 0, NULL, 0, NULL},
    {"qb-bn-shortcut", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_NONE, set_qb_bn_shortcut},
    {"qb-conv", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_qb_conv},
    {"test-weights", T_CHOICE, TOPT(test_quantized), 0, 0, 0, test_weight_choices, 0, NULL},
    {"epochs", T_INT, TOPT(cfg.epochs), 1, 1000000, 0, NULL, 0, NULL},
    {"batch", T_INT, TOPT(cfg.batch), 1, 65536, 0, NULL, 0, NULL},
    {"opt", T_CHOICE, TOPT(opt), 0, 0, 0, opt_choices, 0, NULL},
    {"lr", T_DOUBLE, TOPT(cfg.lr), 0, INFINITY, LO_OPEN | AS_FLOAT, NULL, 0, NULL},
    {"lr-final", T_DOUBLE, TOPT(cfg.lr_final), 0, INFINITY, LO_OPEN | AS_FLOAT, NULL, 0, NULL},
    {"momentum", T_DOUBLE, TOPT(cfg.momentum), 0, 1, HI_OPEN | AS_FLOAT, NULL, 0, NULL},
    {"bop-gamma", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_bop_gamma},
    {"bop-threshold", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_bop_threshold},
    {"bop-gamma-final", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_bop_gamma_final},
    {"latent", T_CHOICE, TOPT(latent), 0, 0, 0, latent_choices, 0, NULL},
    {"fuse", T_FLAG, TOPT(cfg.fuse), 0, 0, 0, NULL, 0, NULL},
    {"loss", T_CHOICE, TOPT(loss), 0, 0, 0, loss_choices, 0, NULL},
    {"preproc", T_CHOICE, TOPT(preproc), 0, 0, 0, preproc_choices, 0, NULL},
    {"preproc-cache", T_INT, TOPT(preproc_cache), 0, 1048576, 0, NULL, 0, NULL},
    {"dropout", T_DOUBLE, TOPT(cfg.dropout), 0, 1, HI_OPEN | AS_FLOAT, NULL, 0, NULL},
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
    {"ledger", T_FLAG, TOPT(ledger), 0, 0, 0, NULL, 0, NULL},
    {"table", T_STRING, TOPT(table), 0, 0, 0, NULL, 0, NULL},
    {"checkpoint", T_STRING, TOPT(checkpoint), 0, 0, 0, NULL, 0, NULL},
    {"checkpoint-every", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_checkpoint_every},
    {"resume", T_STRING, TOPT(resume), 0, 0, 0, NULL, 0, NULL},
    {"compress", T_CHOICE, TOPT(compress), 0, 0, 0, compress_choices, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};

/* `fewmul energy`: train's options that shape the network and its step, with
 * the same names and meanings, and its own. */
const option_def energy_options[] = {
    {"arch", T_STRING, TOPT(cfg.arch), 0, 0, 0, NULL, 0, NULL},
    {"weights", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_weights},
    {"synapse-range", T_DOUBLE, TOPT(cfg.synapse_range), 1, INFINITY, LO_OPEN | AS_FLOAT, NULL, 0, NULL},
    {"scale", T_CHOICE, TOPT(scale), 0, 0, 0, scale_choices, 0, NULL},
    {"qb", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_OPTIONAL, set_qb},
    {"qb-bn-jacobian", T_FLAG, TOPT(cfg.qb_bn_jacobian), 0, 0, 0, NULL, 0, NULL},
    {"qb-bn-shortcut", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_NONE, set_qb_bn_shortcut},
    {"qb-conv", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_qb_conv},
    {"acts", T_CHOICE, TOPT(acts), 0, 0, 0, acts_choices, 0, NULL},
    {"exec", T_CHOICE, TOPT(exec), 0, 0, 0, exec_choices, 0, NULL},
    {"batch", T_INT, TOPT(cfg.batch), 1, 65536, 0, NULL, 0, NULL},
    {"opt", T_CHOICE, TOPT(opt), 0, 0, 0, opt_choices, 0, NULL},
    {"momentum", T_DOUBLE, TOPT(cfg.momentum), 0, 1, HI_OPEN | AS_FLOAT, NULL, 0, NULL},
    {"bop-gamma", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_bop_gamma},
    {"bop-threshold", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_bop_threshold},
    {"latent", T_CHOICE, TOPT(latent), 0, 0, 0, latent_choices, 0, NULL},
    {"fuse", T_FLAG, TOPT(cfg.fuse), 0, 0, 0, NULL, 0, NULL},
    {"loss", T_CHOICE, TOPT(loss), 0, 0, 0, loss_choices, 0, NULL},
    {"dropout", T_DOUBLE, TOPT(cfg.dropout), 0, 1, HI_OPEN | AS_FLOAT, NULL, 0, NULL},
    {"seed", T_U64, TOPT(cfg.seed), 0, 0, 0, NULL, 0, NULL},
    {"threads", T_INT, TOPT(cfg.threads), 1, 1024, 0, NULL, 0, NULL},
    {"input", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_input},
    {"classes", T_INT, TOPT(classes), 2, 256, 0, NULL, 0, NULL},
    {"table", T_STRING, TOPT(table), 0, 0, 0, NULL, 0, NULL},
    {"list-tables", T_FLAG, TOPT(list_tables), 0, 0, 0, NULL, 0, NULL},
    {"print-table", T_STRING, TOPT(print_table), 0, 0, 0, NULL, 0, NULL},
    {"verbose", T_FLAG, TOPT(verbose), 0, 0, 0, NULL, 0, NULL},
    {"json", T_FLAG, TOPT(json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef TOPT

void train_opts_take_config(train_opts *o, const fm_config *c)
{
    o->cfg = *c;
    o->opt = (int)c->opt;
    o->loss = (int)c->loss;
    o->preproc = (int)c->preproc;
    o->bn_stats = (int)c->bn_stats;
    o->scale = (int)c->scale;
    o->test_quantized = c->test_quantized;
    o->acts = (int)c->acts;
    o->exec = (int)c->exec;
    o->latent = (int)c->latent;
}

/* The paper's MNIST setup; --valid and --preproc are left to the data set. */
void train_opts_default(train_opts *o)
{
    memset(o, 0, sizeof *o);
    fm_config defaults;
    fm_config_default(&defaults);
    train_opts_take_config(o, &defaults);
    o->data = "fashion";
    o->export_how = FM_EXPORT_DET;
    o->input = "28x28x1";
    o->input_dim = 784;
    o->input_shape[0] = o->input_shape[1] = 28;
    o->input_shape[2] = 1;
    o->classes = 10;
    /* chosen by the data set unless given (train_opts_finish) */
    o->cfg.valid = -1;
    o->preproc = -1;
    o->preproc_cache = FM_PREPROC_CACHE_DEFAULT_MIB;
}

/* Copies the parsed enumerations into the config and resolves the default
 * learning rates, so that what is reported is what is used. */
void train_opts_finish(train_opts *o)
{
    fm_config *c = &o->cfg;
    /* the data set's validation size and preprocessing (the library's
     * defaults), unless given; a spec that does not parse gets fashion's and
     * fails as a usage error (check_data_spec) */
    fm_data_kind kind = FM_DATA_FASHION;
    fm_data_kind_of(o->data ? o->data : "fashion", &kind);
    fm_preproc preproc = FM_PRE_CENTER;
    int valid = 0;
    fm_data_defaults(kind, &preproc, &valid);
    if (c->valid < 0)
        c->valid = valid;
    if (o->preproc < 0)
        o->preproc = (int)preproc;
    c->opt = (fm_optimizer)o->opt;
    c->loss = (fm_loss)o->loss;
    c->preproc = (fm_preproc)o->preproc;
    c->bn_stats = (fm_bn_stats)o->bn_stats;
    c->scale = (fm_scale)o->scale;
    c->test_quantized = o->test_quantized;
    c->acts = (fm_acts)o->acts;
    c->exec = (fm_exec)o->exec;
    c->latent = (fm_latent)o->latent;
    /* resolve the optimizer's defaults so the reports show the rates used */
    fm_config_learning_rates(c, &c->lr, &c->lr_final);
}

/* The weight mode of a configuration: weights, synapse_levels, qb, qb_error,
 * qb_emin, qb_emax, qb_conv_emin, qb_conv_emax (null where they do not
 * apply). */
void json_mode(json_writer *w, const fm_config *c)
{
    json_string(w, "weights", fm_weights_name(c->weights));
    if (c->weights == FM_WEIGHTS_SYNAPSE)
        json_int(w, "synapse_levels", c->synapse_levels);
    else
        json_null(w, "synapse_levels");
    json_bool(w, "qb", c->qb);
    if (c->qb)
        json_string(w, "qb_error", c->qb_bn_jacobian ? "exact" : "shortcut");
    else
        json_null(w, "qb_error");
    if (c->qb && c->qb_emin != FM_QB_UNBOUNDED) {
        json_int(w, "qb_emin", c->qb_emin);
        json_int(w, "qb_emax", c->qb_emax);
    } else {
        json_null(w, "qb_emin");
        json_null(w, "qb_emax");
    }
    if (c->qb && c->qb_conv_emin != FM_QB_UNBOUNDED && fm_arch_is_conv(c->arch)) {
        json_int(w, "qb_conv_emin", c->qb_conv_emin);
        json_int(w, "qb_conv_emax", c->qb_conv_emax);
    } else {
        json_null(w, "qb_conv_emin");
        json_null(w, "qb_conv_emax");
    }
}

/* Bop's gamma, threshold and final gamma, with --opt bop only, the latent
 * precision where it is not fp32 and fuse where it is set: the results of
 * the other runs keep their shape (tests/golden hashes them). */
void json_bop(json_writer *w, const fm_config *c)
{
    if (c->latent != FM_LATENT_FP32)
        json_string(w, "latent", choice_name(latent_choices, (int)c->latent));
    if (c->fuse)
        json_bool(w, "fuse", 1);
    if (c->opt != FM_OPT_BOP)
        return;
    json_number(w, "bop_gamma", c->bop_gamma);
    json_number(w, "bop_threshold", c->bop_threshold);
    if (c->bop_gamma_final > 0.0)
        json_number(w, "bop_gamma_final", c->bop_gamma_final);
    else
        json_null(w, "bop_gamma_final");
}
