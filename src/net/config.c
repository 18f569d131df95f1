/* config.c — training configuration: defaults (the paper's MNIST setup), the
 * weight-mode names, architecture strings, and the validation of every field. */
#include "internal.h"
#include "net.h"

#include <errno.h>
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
}

void fm_config_learning_rates(const fm_config *c, double *lr, double *lr_final)
{
    const int adam = c->opt == FM_OPT_ADAM;
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
        return fm_error(FM_EINVAL, "no weight mode given");
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
            return fm_error(FM_EINVAL, "bad synapse level count '%s' (expected an integer 2..255)",
                            digits);
        c->weights = FM_WEIGHTS_SYNAPSE;
        c->synapse_levels = (int)n;
        return FM_OK;
    }
    return fm_error(FM_EINVAL,
                    "unknown weight mode '%s' (expected fp32, bc, bc-det, tc, tc-det or synapse[:N])",
                    text);
}

int fm_arch_parse(const char *arch, int *hidden, int max_hidden)
{
    if (!arch)
        return fm_error(FM_EINVAL, "no architecture given");
    if (strcmp(arch, "paper-mlp") == 0) {
        for (int i = 0; i < 3 && i < max_hidden; i++)
            hidden[i] = 1024;
        return 3;
    }
    if (strncmp(arch, "mlp:", 4) != 0)
        return fm_error(FM_EINVAL, "unknown architecture '%s' (expected paper-mlp or mlp:H1,H2,...)",
                        arch);
    const char *p = arch + 4;
    int n = 0;
    for (;;) {
        char *end;
        errno = 0;
        long width = strtol(p, &end, 10);
        if (end == p || errno || width < 1 || width > 65536 || (*end != ',' && *end != '\0') ||
            *p == '+' || *p == '-' || *p == ' ')
            return fm_error(FM_EINVAL,
                            "bad architecture '%s': hidden widths must be integers 1..65536 "
                            "separated by commas",
                            arch);
        if (n == max_hidden)
            return fm_error(FM_EINVAL, "bad architecture '%s': at most %d hidden layers", arch,
                            max_hidden);
        hidden[n++] = (int)width;
        if (*end == '\0')
            return n;
        p = end + 1;
    }
}

int fm_config_check(const fm_config *c)
{
    int hidden[FM_MAX_HIDDEN];
    if (!c)
        return fm_error(FM_EINVAL, "no configuration");
    int rc = fm_arch_parse(c->arch, hidden, FM_MAX_HIDDEN);
    if (rc < 0)
        return rc;
    if ((unsigned)c->weights > FM_WEIGHTS_SYNAPSE)
        return fm_error(FM_EINVAL, "unknown weight mode %d", (int)c->weights);
    if (c->weights == FM_WEIGHTS_SYNAPSE && (c->synapse_levels < 2 || c->synapse_levels > 255))
        return fm_error(FM_EINVAL, "synapse levels %d out of range 2..255", c->synapse_levels);
    if (!(c->synapse_range > 1.0 && c->synapse_range < 1e30))
        return fm_error(FM_EINVAL, "synapse range %g must be greater than 1", c->synapse_range);
    if ((c->qb_emin == FM_QB_UNBOUNDED) != (c->qb_emax == FM_QB_UNBOUNDED))
        return fm_error(FM_EINVAL, "quantized back-prop range needs both EMIN and EMAX");
    if (c->qb_emin != FM_QB_UNBOUNDED &&
        (c->qb_emin > c->qb_emax || c->qb_emin < -126 || c->qb_emax > 126))
        return fm_error(FM_EINVAL,
                        "quantized back-prop range %d:%d invalid (need -126 <= EMIN <= EMAX <= 126)",
                        c->qb_emin, c->qb_emax);
    if (c->epochs < 1 || c->epochs > 1000000)
        return fm_error(FM_EINVAL, "epochs %d out of range 1..1000000", c->epochs);
    if (c->batch < 1 || c->batch > 65536)
        return fm_error(FM_EINVAL, "batch %d out of range 1..65536", c->batch);
    if ((unsigned)c->opt > FM_OPT_ADAM || (unsigned)c->loss > FM_LOSS_XENT ||
        (unsigned)c->preproc > FM_PRE_UNIT || (unsigned)c->bn_stats > FM_BN_RUNNING ||
        (unsigned)c->scale > FM_SCALE_ONE)
        return fm_error(FM_EINVAL, "unknown optimizer, loss, preprocessing, scale or bn-stats value");
    if (!isfinite(c->lr) || c->lr < 0.0 || !isfinite(c->lr_final) || c->lr_final < 0.0)
        return fm_error(FM_EINVAL, "learning rates must be finite and positive");
    if (!(c->momentum >= 0.0 && c->momentum < 1.0))
        return fm_error(FM_EINVAL, "momentum %g out of range [0, 1)", c->momentum);
    if (c->valid < 0)
        return fm_error(FM_EINVAL, "validation size %d is negative", c->valid);
    if (c->train_limit < 0)
        return fm_error(FM_EINVAL, "train limit %d is negative", c->train_limit);
    if (c->acts != FM_ACTS_RELU && c->acts != FM_ACTS_BINARY)
        return fm_error(FM_EINVAL, "unknown activation kind %d", (int)c->acts);
    if (!(c->dropout >= 0.0 && c->dropout < 1.0))
        return fm_error(FM_EINVAL, "dropout %g out of range [0, 1)", c->dropout);
    if (!(c->bn_momentum > 0.0 && c->bn_momentum <= 1.0))
        return fm_error(FM_EINVAL, "batch-norm momentum %g out of range (0, 1]", c->bn_momentum);
    if (!(c->bn_eps > 0.0 && c->bn_eps < 1.0))
        return fm_error(FM_EINVAL, "batch-norm epsilon %g out of range (0, 1)", c->bn_eps);
    if (c->eval_every < 1)
        return fm_error(FM_EINVAL, "eval-every %d must be at least 1", c->eval_every);
    if (c->exec != FM_EXEC_DEFAULT && c->exec != FM_EXEC_MULFREE)
        return fm_error(FM_EINVAL, "unknown execution path %d", (int)c->exec);
    if (c->exec == FM_EXEC_MULFREE) {
        if (c->weights == FM_WEIGHTS_FP32)
            return fm_error(FM_EINVAL, "multiplication-free execution needs quantized weights "
                                       "(bc, bc-det, tc, tc-det or synapse), not fp32");
        if (!c->qb)
            return fm_error(FM_EINVAL, "multiplication-free execution needs quantized back-prop "
                                       "(its weight gradient is formed by exponent adds of Q(x))");
        if (c->weights == FM_WEIGHTS_SYNAPSE && c->synapse_levels > 32)
            return fm_error(FM_EINVAL, "multiplication-free execution takes at most 32 synapse "
                                       "levels (got %d)", c->synapse_levels);
    }
    if (c->threads > 1024)
        return fm_error(FM_EINVAL, "threads %d out of range 1..1024", c->threads);
    return FM_OK;
}
