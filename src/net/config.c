/* config.c — training configuration: defaults (the paper's MNIST setup), the
 * weight-mode names, architecture strings, and the validation of every field. */
#include "internal.h"
#include "net.h"
#include "quant.h"

#include <errno.h>
#include <float.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void fm_config_default(fm_config *c)
{
    memset(c, 0, sizeof *c);
    c->arch = "paper-mlp";
    c->weights = FM_WEIGHTS_FP32;
    c->synapse_levels = 26;
    c->synapse_range = 60.0;
    c->scale = FM_SCALE_GLOROT;
    c->qb = 0;
    c->qb_emin = FM_QB_UNBOUNDED;
    c->qb_emax = FM_QB_UNBOUNDED;
    c->qb_conv_emin = -4;
    c->qb_conv_emax = 3;
    c->qb_bn_jacobian = 1;
    c->epochs = 20;
    c->batch = 200;
    c->opt = FM_OPT_SGD;
    c->lr = 0.0;
    c->lr_final = 0.0;
    c->momentum = 0.0;
    c->loss = FM_LOSS_HINGE;
    c->preproc = FM_PRE_CENTER;
    c->valid = 10000;
    c->bn_stats = FM_BN_PAPER;
    c->bn_momentum = 0.1;
    c->bn_eps = 1e-4;
    c->eval_every = 1;
    c->seed = 1234;
    c->threads = 0;
    c->bop_gamma = 1e-3;
    c->bop_threshold = 1e-6;
    c->latent = FM_LATENT_FP32;
    c->fuse = 0;
}

double fmi_bop_gamma_at(const fm_config *c, int epoch)
{
    if (!(c->bop_gamma_final > 0.0) || c->epochs < 1)
        return c->bop_gamma;
    /* as the learning rate: the initial value in epoch 1, the final one
     * after the last epoch */
    return c->bop_gamma * pow(c->bop_gamma_final / c->bop_gamma, (double)(epoch - 1) / c->epochs);
}

void fm_config_learning_rates(const fm_config *c, double *lr, double *lr_final)
{
    const int adam = c->opt == FM_OPT_ADAM || c->opt == FM_OPT_BOP; /* bop: batch norm's Adam */
    *lr = c->lr > 0 ? c->lr : (adam ? 3e-3 : 0.3);
    *lr_final = c->lr_final > 0 ? c->lr_final : (adam ? 2e-6 : 0.01);
}

static const char *const weight_names[] = {"fp32", "bc", "bc-det", "tc", "tc-det", "synapse"};

const char *fm_weights_name(fm_weight_mode mode)
{
    if ((unsigned)mode < sizeof weight_names / sizeof weight_names[0])
        return weight_names[mode];
    return "unknown";
}

int fm_parse_weights(const char *text, fm_config *c)
{
    if (!text || !c)
        return fmi_error(FM_EINVAL, "no weight mode given");
    for (int m = 0; m < (int)(sizeof weight_names / sizeof weight_names[0]); m++)
        if (strcmp(text, weight_names[m]) == 0) {
            c->weights = (fm_weight_mode)m;
            return FM_OK;
        }
    if (strncmp(text, "synapse:", 8) == 0) {
        const char *digits = text + 8;
        char *end;
        errno = 0;
        long n = strtol(digits, &end, 10);
        if (*digits == '\0' || *end != '\0' || errno || n < 2 || n > 255)
            return fmi_error(FM_EINVAL, "bad synapse level count '%s' (expected an integer 2..255)",
                            digits);
        c->weights = FM_WEIGHTS_SYNAPSE;
        c->synapse_levels = (int)n;
        return FM_OK;
    }
    return fmi_error(FM_EINVAL,
                    "unknown weight mode '%s' (expected fp32, bc, bc-det, tc, tc-det or synapse[:N])",
                    text);
}

/* The named networks, as the grammar spells them. paper-cnn is the authors'
 * CIFAR-10/SVHN net (7 unpadded convolutions, 3 pools, 1024 dense);
 * bc-cnn BinaryConnect's VGG-like net (padded 3x3 convolutions, 2 x 1024). */
static const struct {
    const char *name, *spelled;
} named_archs[] = {
    {"paper-mlp", "mlp:1024,1024,1024"},
    {"paper-cnn", "conv:128k3,128k3,pool2,256k2,256k2,pool2,512k2,512k2,pool2,1024k2,fc1024"},
    {"bc-cnn", "conv:128k3same,128k3same,pool2,256k3same,256k3same,pool2,512k3same,512k3same,"
               "pool2,fc1024,fc1024"},
};

/* A decimal integer 1..max at *p, advancing *p; -1 if there is none. */
static int parse_count(const char **p, int max)
{
    const char *s = *p;
    long v = 0;
    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++)
        if ((v = v * 10 + (*s - '0')) > max)
            return -1;
    *p = s;
    return v >= 1 ? (int)v : -1;
}

/* One item of "conv:": FkK[sS][same|valid], poolP[sS] or fcH. */
static int parse_item(const char *item, size_t len, fm_layer_spec *spec)
{
    char text[32];
    if (len == 0 || len >= sizeof text)
        return -1;
    memcpy(text, item, len);
    text[len] = '\0';
    const char *p = text;
    memset(spec, 0, sizeof *spec);
    spec->stride = 1;
    if (strncmp(p, "fc", 2) == 0) {
        p += 2;
        spec->kind = FM_SPEC_FC;
        if ((spec->units = parse_count(&p, 65536)) < 0)
            return -1;
        return *p == '\0' ? 0 : -1;
    }
    if (strcmp(p, "gap") == 0) {
        spec->kind = FM_SPEC_GAP;
        return 0;
    }
    if (strncmp(p, "pool", 4) == 0) {
        p += 4;
        spec->kind = FM_SPEC_POOL;
        if ((spec->k = parse_count(&p, 64)) < 0)
            return -1;
        spec->stride = spec->k;
    } else {
        spec->kind = FM_SPEC_CONV;
        if ((spec->units = parse_count(&p, 65536)) < 0 || *p++ != 'k' ||
            (spec->k = parse_count(&p, 64)) < 0)
            return -1;
    }
    if (p[0] == 's' && p[1] >= '0' && p[1] <= '9') { /* not the 's' of "same" */
        p++;
        if ((spec->stride = parse_count(&p, 64)) < 0)
            return -1;
    }
    if (spec->kind == FM_SPEC_CONV && strcmp(p, "same") == 0) {
        spec->same = 1;
        p += 4;
    } else if (spec->kind == FM_SPEC_CONV && strcmp(p, "valid") == 0) {
        p += 5;
    }
    return *p == '\0' ? 0 : -1;
}

int fmi_arch_parse(const char *arch, fm_layer_spec *specs, int max_specs)
{
    if (!arch)
        return fmi_error(FM_EINVAL, "no architecture given");
    const char *spelled = arch;
    for (size_t i = 0; i < sizeof named_archs / sizeof named_archs[0]; i++)
        if (strcmp(arch, named_archs[i].name) == 0)
            spelled = named_archs[i].spelled;
    int conv = strncmp(spelled, "conv:", 5) == 0;
    if (!conv && strncmp(spelled, "mlp:", 4) != 0)
        return fmi_error(FM_EINVAL,
                        "unknown architecture '%s' (expected paper-mlp, paper-cnn, bc-cnn, "
                        "mlp:H1,H2,... or conv:ITEM,...)",
                        arch);
    const char *p = spelled + (conv ? 5 : 4);
    int n = 0, seen_fc = 0;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        fm_layer_spec spec;
        int bad;
        if (conv) {
            bad = parse_item(p, len, &spec);
        } else { /* mlp: bare widths */
            char item[32];
            bad = len == 0 || len + 2 >= sizeof item;
            if (!bad) {
                snprintf(item, sizeof item, "fc%.*s", (int)len, p);
                bad = parse_item(item, len + 2, &spec);
            }
        }
        if (bad)
            return fmi_error(FM_EINVAL,
                            conv ? "bad architecture '%s': item '%.*s' is not FkK[sS][same|valid] "
                                   "(convolution), poolP[sS], gap or fcH"
                                 : "bad architecture '%s': item '%.*s' is not a hidden width "
                                   "1..65536 (widths are separated by commas)",
                            arch, (int)len, p);
        if (spec.kind != FM_SPEC_FC && seen_fc)
            return fmi_error(FM_EINVAL, "bad architecture '%s': '%.*s' follows a dense layer "
                                       "(convolutions and pools come first)",
                            arch, (int)len, p);
        if (spec.kind == FM_SPEC_POOL && (n == 0 || specs[n - 1].kind != FM_SPEC_CONV))
            return fmi_error(FM_EINVAL, "bad architecture '%s': a pool must follow a convolution",
                            arch);
        if (spec.kind == FM_SPEC_GAP && (n == 0 || specs[n - 1].kind == FM_SPEC_GAP))
            return fmi_error(FM_EINVAL, "bad architecture '%s': gap must follow a convolution "
                                       "or a pool", arch);
        seen_fc |= spec.kind == FM_SPEC_FC;
        if (n == max_specs)
            return fmi_error(FM_EINVAL, "bad architecture '%s': at most %d items", arch, max_specs);
        specs[n++] = spec;
        if (!end)
            return n;
        p = end + 1;
    }
}

int fm_arch_is_conv(const char *arch)
{
    fm_layer_spec specs[FM_MAX_HIDDEN];
    int n = fmi_arch_parse(arch, specs, FM_MAX_HIDDEN);
    for (int i = 0; i < n; i++)
        if (specs[i].kind == FM_SPEC_CONV)
            return 1;
    return 0;
}

/* Checks an exponent range of quantized back-prop. */
static int check_qb_range(int emin, int emax, const char *what)
{
    if ((emin == FM_QB_UNBOUNDED) != (emax == FM_QB_UNBOUNDED))
        return fmi_error(FM_EINVAL, "quantized back-prop range%s needs both EMIN and EMAX", what);
    if (emin != FM_QB_UNBOUNDED && (emin > emax || emin < -126 || emax > 126))
        return fmi_error(FM_EINVAL,
                        "quantized back-prop range%s %d:%d invalid (need -126 <= EMIN <= EMAX <= 126)",
                        what, emin, emax);
    return FM_OK;
}

/* A field kept as a double that training computes with as a float must be
 * one: NULL and *as_float the value training uses, or why it is not (beyond
 * FLT_MAX it would be inf; a nonzero value below the smallest normal float
 * would become 0 or keep only a few of its bits). */
static const char *float_problem(double v, float *as_float)
{
    if (!isfinite(v))
        return "is not finite";
    if (fabs(v) > FLT_MAX)
        return "overflows a 32-bit float (at most 3.40282e+38)";
    *as_float = (float)v;
    if (v != 0.0 && fabsf(*as_float) < FLT_MIN)
        return *as_float == 0.0f ? "becomes 0 as a 32-bit float (nonzero values must be at least "
                                   "1.17549e-38)"
                                 : "is below the smallest normal 32-bit float (1.17549e-38)";
    return NULL;
}

/* The synapse levels H * R^(-(N-1-k)/(N-1)), k = 0..N-1, as the quantizers
 * compute them in float (quant.c). Deterministic quantization compares |W|
 * with the geometric midpoints sqrtf(level[k] * level[k+1]), whose product
 * underflows below 2^-126: the smallest level H/R must be at least 2^-63,
 * and since H <= 1 (1 with --scale one) R may not exceed 2^63 whatever the
 * layer (fmi_model_build checks each layer's own H). Neighbouring levels
 * must differ by more than float rounding, a relative step of at least
 * 2^-20 (8 units in the last place), else they round to one value and the
 * stochastic quantizer divides by a zero gap. */
static int check_synapse_range(const fm_config *c)
{
    float range = 0.0f;
    const char *why = float_problem(c->synapse_range, &range);
    if (!(c->synapse_range > 1.0))
        return fmi_error(FM_EINVAL, "synapse range %g must be greater than 1", c->synapse_range);
    if (!why && !(range > 1.0f))
        why = "rounds to 1 as a 32-bit float (it must be greater than 1)";
    if (why)
        return fmi_error(FM_EINVAL, "synapse range %.15g %s", c->synapse_range, why);
    if (c->synapse_range * FMI_SYNAPSE_MIN_LEVEL > 1.0)
        return fmi_error(FM_EINVAL,
                        "synapse range %g is too large: the smallest magnitude H/R would be below "
                        "2^-63 (%.3g) even at H = 1, and deterministic quantization compares weights "
                        "with products of neighbouring levels, which underflow as floats there (R "
                        "at most 2^63 = %.4g)",
                        c->synapse_range, (double)FMI_SYNAPSE_MIN_LEVEL,
                        1.0 / FMI_SYNAPSE_MIN_LEVEL);
    if (c->weights == FM_WEIGHTS_SYNAPSE && c->synapse_levels >= 2 &&
        log(range) / (c->synapse_levels - 1) < 0x1p-20)
        return fmi_error(FM_EINVAL,
                        "synapse range %.10g is too close to 1 for %d levels: neighbouring levels "
                        "would differ by less than float rounding (R at least %.7g)",
                        c->synapse_range, c->synapse_levels, exp(0x1p-20 * (c->synapse_levels - 1)));
    return FM_OK;
}

/* A rate, momentum or probability that training uses as a float: NULL, or
 * why it is not one (its range in double is checked first); below_one: it
 * must stay below 1 (a momentum or probability). */
static const char *check_float(double v, int below_one)
{
    float f = 0.0f;
    const char *problem = float_problem(v, &f);
    if (!problem && below_one && !(f < 1.0f))
        problem = "rounds to 1 as a 32-bit float (it must stay below 1)";
    return problem;
}

int fm_config_check(const fm_config *c)
{
    fm_layer_spec specs[FM_MAX_HIDDEN];
    if (!c)
        return fmi_error(FM_EINVAL, "no configuration");
    int rc = fmi_arch_parse(c->arch, specs, FM_MAX_HIDDEN);
    if (rc < 0)
        return rc;
    if ((unsigned)c->weights > FM_WEIGHTS_SYNAPSE)
        return fmi_error(FM_EINVAL, "unknown weight mode %d", (int)c->weights);
    if (c->weights == FM_WEIGHTS_SYNAPSE && (c->synapse_levels < 2 || c->synapse_levels > 255))
        return fmi_error(FM_EINVAL, "synapse levels %d out of range 2..255", c->synapse_levels);
    if ((rc = check_synapse_range(c)) < 0)
        return rc;
    if ((rc = check_qb_range(c->qb_emin, c->qb_emax, "")) < 0 ||
        (rc = check_qb_range(c->qb_conv_emin, c->qb_conv_emax, " of convolutions")) < 0)
        return rc;
    if (c->epochs < 1 || c->epochs > 1000000)
        return fmi_error(FM_EINVAL, "epochs %d out of range 1..1000000", c->epochs);
    if (c->batch < 1 || c->batch > 65536)
        return fmi_error(FM_EINVAL, "batch %d out of range 1..65536", c->batch);
    if ((unsigned)c->opt > FM_OPT_BOP || (unsigned)c->loss > FM_LOSS_XENT ||
        (unsigned)c->preproc > FM_PRE_GCN_LCN || (unsigned)c->bn_stats > FM_BN_RUNNING ||
        (unsigned)c->scale > FM_SCALE_ONE)
        return fmi_error(FM_EINVAL, "unknown optimizer, loss, preprocessing, scale or bn-stats value");
    const char *why;
    if (!isfinite(c->lr) || c->lr < 0.0 || !isfinite(c->lr_final) || c->lr_final < 0.0)
        return fmi_error(FM_EINVAL, "learning rates must be finite and positive");
    if ((why = check_float(c->lr, 0)) != NULL)
        return fmi_error(FM_EINVAL, "learning rate %.15g %s", c->lr, why);
    if ((why = check_float(c->lr_final, 0)) != NULL)
        return fmi_error(FM_EINVAL, "final learning rate %.15g %s", c->lr_final, why);
    if (!(c->momentum >= 0.0 && c->momentum < 1.0))
        return fmi_error(FM_EINVAL, "momentum %g out of range [0, 1)", c->momentum);
    if ((why = check_float(c->momentum, 1)) != NULL)
        return fmi_error(FM_EINVAL, "momentum %.15g %s", c->momentum, why);
    if (c->valid < 0)
        return fmi_error(FM_EINVAL, "validation size %d is negative", c->valid);
    if (c->train_limit < 0)
        return fmi_error(FM_EINVAL, "train limit %d is negative", c->train_limit);
    if (c->acts != FM_ACTS_RELU && c->acts != FM_ACTS_BINARY)
        return fmi_error(FM_EINVAL, "unknown activation kind %d", (int)c->acts);
    if (!(c->dropout >= 0.0 && c->dropout < 1.0))
        return fmi_error(FM_EINVAL, "dropout %g out of range [0, 1)", c->dropout);
    if ((why = check_float(c->dropout, 1)) != NULL)
        return fmi_error(FM_EINVAL, "dropout %.15g %s", c->dropout, why);
    if (!(c->bn_momentum > 0.0 && c->bn_momentum <= 1.0))
        return fmi_error(FM_EINVAL, "batch-norm momentum %g out of range (0, 1]", c->bn_momentum);
    if ((why = check_float(c->bn_momentum, 0)) != NULL)
        return fmi_error(FM_EINVAL, "batch-norm momentum %.15g %s", c->bn_momentum, why);
    if (!(c->bn_eps > 0.0 && c->bn_eps < 1.0))
        return fmi_error(FM_EINVAL, "batch-norm epsilon %g out of range (0, 1)", c->bn_eps);
    if ((why = check_float(c->bn_eps, 1)) != NULL)
        return fmi_error(FM_EINVAL, "batch-norm epsilon %.15g %s", c->bn_eps, why);
    if (c->eval_every < 1)
        return fmi_error(FM_EINVAL, "eval-every %d must be at least 1", c->eval_every);
    if (c->exec != FM_EXEC_DEFAULT && c->exec != FM_EXEC_MULFREE)
        return fmi_error(FM_EINVAL, "unknown execution path %d", (int)c->exec);
    if (c->exec == FM_EXEC_MULFREE) {
        if (c->weights == FM_WEIGHTS_FP32)
            return fmi_error(FM_EINVAL, "multiplication-free execution needs quantized weights "
                                       "(bc, bc-det, tc, tc-det or synapse), not fp32");
        if (!c->qb)
            return fmi_error(FM_EINVAL, "multiplication-free execution needs quantized back-prop "
                                       "(its weight gradient is formed by exponent adds of Q(x))");
        if (c->weights == FM_WEIGHTS_SYNAPSE && c->synapse_levels > 32)
            return fmi_error(FM_EINVAL, "multiplication-free execution takes at most 32 synapse "
                                       "levels (got %d)", c->synapse_levels);
    }
    if (c->opt == FM_OPT_BOP) {
        if (c->weights != FM_WEIGHTS_BC_DET)
            return fmi_error(FM_EINVAL, "the bop optimizer trains binary weights that are their own "
                                       "state: it needs --weights bc-det, not %s",
                            fm_weights_name(c->weights));
        if (c->momentum != 0.0)
            return fmi_error(FM_EINVAL, "momentum is SGD's: with bop the real parameters take Adam");
        if (!(c->bop_gamma > 0.0 && c->bop_gamma < 1.0))
            return fmi_error(FM_EINVAL, "bop gamma %g out of range (0, 1)", c->bop_gamma);
        if ((why = check_float(c->bop_gamma, 1)) != NULL)
            return fmi_error(FM_EINVAL, "bop gamma %.15g %s", c->bop_gamma, why);
        if (!(c->bop_gamma_final <= 0.0) && !(c->bop_gamma_final > 0.0 && c->bop_gamma_final < 1.0))
            return fmi_error(FM_EINVAL, "bop final gamma %g out of range (0, 1)", c->bop_gamma_final);
        if (c->bop_gamma_final > 0.0 && (why = check_float(c->bop_gamma_final, 1)) != NULL)
            return fmi_error(FM_EINVAL, "bop final gamma %.15g %s", c->bop_gamma_final, why);
        if (!(c->bop_threshold >= 0.0) || !isfinite(c->bop_threshold))
            return fmi_error(FM_EINVAL, "bop threshold %g must be finite and at least 0",
                            c->bop_threshold);
        if (c->bop_threshold > 0.0 && (why = check_float(c->bop_threshold, 0)) != NULL)
            return fmi_error(FM_EINVAL, "bop threshold %.15g %s", c->bop_threshold, why);
    }
    if (c->latent != FM_LATENT_FP32 && c->latent != FM_LATENT_BF16)
        return fmi_error(FM_EINVAL, "latent precision %d unknown (fp32 or bf16)", (int)c->latent);
    if (c->latent == FM_LATENT_BF16 && c->weights == FM_WEIGHTS_FP32)
        return fmi_error(FM_EINVAL, "bf16 learning state is for latent weights behind quantized "
                                   "ones (bc, bc-det, tc, tc-det, synapse) or bop's momentum; "
                                   "fp32 weights are the network itself");
    if (c->fuse != 0 && c->fuse != 1)
        return fmi_error(FM_EINVAL, "fuse %d is neither 0 nor 1", c->fuse);
    if (c->threads > 1024)
        return fmi_error(FM_EINVAL, "threads %d out of range 1..1024", c->threads);
    return FM_OK;
}

const char *fmi_config_differs(const fm_config *a, const fm_config *b)
{
#define SAME(field) if (a->field != b->field) return #field
#define SAME_REAL(field) if (memcmp(&a->field, &b->field, sizeof a->field) != 0) return #field
    if (strcmp(a->arch, b->arch) != 0)
        return "arch";
    SAME(weights);
    SAME(synapse_levels);
    SAME_REAL(synapse_range);
    SAME(scale);
    SAME(qb);
    SAME(qb_emin);
    SAME(qb_emax);
    SAME(qb_conv_emin);
    SAME(qb_conv_emax);
    SAME(qb_bn_jacobian);
    SAME(test_quantized);
    SAME(epochs);
    SAME(batch);
    SAME(opt);
    SAME_REAL(lr);
    SAME_REAL(lr_final);
    SAME_REAL(momentum);
    SAME(loss);
    SAME(preproc);
    SAME(valid);
    SAME(train_limit);
    SAME_REAL(dropout);
    SAME(acts);
    SAME(bn_stats);
    SAME_REAL(bn_momentum);
    SAME_REAL(bn_eps);
    SAME(eval_every);
    SAME(no_eval);
    SAME(seed);
    SAME(exec);
    SAME(latent);
    if (a->opt == FM_OPT_BOP) { /* bop's own, unused otherwise */
        SAME_REAL(bop_gamma);
        SAME_REAL(bop_threshold);
        SAME_REAL(bop_gamma_final);
    }
    return NULL;
#undef SAME
#undef SAME_REAL
}
