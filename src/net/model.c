/* model.c — building a model from its configuration (layer list, one state
 * array, parameter groups), initialization, workspaces and batch loading. */
#include "internal.h"
#include "layer.h"
#include "layers.h"
#include "ledger.h"
#include "mulfree.h"
#include "net.h"
#include "preprocess.h"
#include "quant.h"
#include "rng.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <string.h>

static int is_quantized(fm_weight_mode mode) { return mode != FM_WEIGHTS_FP32; }

/* Appends a layer; the caller sized the array for every item. */
static fm_layer *add_layer(fm_model *m, fm_layer_kind kind, int in, int out)
{
    fm_layer *L = &m->layers[m->n_layers++];
    L->kind = kind;
    L->in = in;
    L->out = out;
    return L;
}

/* Completes weighted layer L of fan_in x units, whose Glorot fan-out is
 * fan_out (units for dense; units * k * k / pool area for conv, as the
 * authors' code), and its parameter group. */
static void add_weights(fm_model *m, fm_layer *L, int fan_in, int units, double fan_out,
                        size_t *offset, int *weight_index)
{
    const fm_config *c = &m->config;
    L->w_rows = fan_in;
    L->w_cols = units;
    L->offset = *offset;
    L->w0 = (float)(sqrt(6.0 / ((double)fan_in + fan_out)) / 2.0);
    L->h = is_quantized(c->weights) && c->scale == FM_SCALE_ONE ? 1.0f : L->w0;
    L->weight_index = (*weight_index)++;
    /* The step is scaled so that --scale changes only the representation:
     * relative to H, BinaryConnect's Adam step is lr*H/W0 (its Glorot
     * learning-rate scale when H = 1) and an SGD step (H/W0)^2 lr. */
    float ratio = L->h / L->w0;
    m->groups[m->n_groups++] = (fm_param_group){
        *offset, fmi_layer_weight_count(L), c->opt == FM_OPT_ADAM ? ratio : ratio * ratio,
        is_quantized(c->weights) ? L->h : 0.0f, (int)(L - m->layers)};
    *offset += fmi_layer_weight_count(L);
}

/* Batch norm over `channels` features of `values` per example, then (hidden
 * layers) the activation and dropout. */
static void add_norm_act(fm_model *m, int values, int channels, int hidden, size_t *offset)
{
    fm_layer *bn = add_layer(m, FM_LAYER_BN, values, values);
    bn->channels = channels;
    bn->offset = *offset;
    m->groups[m->n_groups++] =
        (fm_param_group){*offset, (size_t)2 * channels, 1.0f, 0.0f, m->n_layers - 1};
    *offset += (size_t)4 * channels;
    if (!hidden)
        return;
    add_layer(m, m->config.acts == FM_ACTS_BINARY ? FM_LAYER_SIGN : FM_LAYER_RELU, values, values);
    if (m->config.dropout > 0.0)
        add_layer(m, FM_LAYER_DROPOUT, values, values);
}

static void describe(fm_model *m, const fm_layer_spec *specs, int n_specs)
{
    const fm_config *c = &m->config;
    char *d = m->description;
    const size_t size = sizeof m->description;
    int len, conv = 0;
    for (int i = 0; i < n_specs; i++)
        conv |= specs[i].kind != FM_SPEC_FC;
    if (conv) {
        len = snprintf(d, size, "%dx%dx%d-%s", m->in_h, m->in_w, m->in_c, m->arch);
    } else {
        len = snprintf(d, size, "%d", m->input_dim);
        for (int i = 0; i < n_specs && len < (int)size; i++)
            len += snprintf(d + len, size - (size_t)len, "-%d", specs[i].units);
    }
    if (len >= (int)size)
        return;
    char qb[64] = "";
    if (c->qb && c->qb_emin == FM_QB_UNBOUNDED)
        snprintf(qb, sizeof qb, "+qb");
    else if (c->qb)
        snprintf(qb, sizeof qb, "+qb[%d:%d]", c->qb_emin, c->qb_emax);
    char levels[32] = "";
    if (c->weights == FM_WEIGHTS_SYNAPSE)
        snprintf(levels, sizeof levels, ":%d", c->synapse_levels);
    snprintf(d + len, size - (size_t)len, "-%d with batch norm, %s%s%s weights%s", m->classes,
             fm_weights_name(c->weights), levels, qb,
             c->acts == FM_ACTS_BINARY ? ", binary activations" : "");
}

/* Frees a model under construction whose item `item` (0-based) does not fit
 * its h x w x c input map, naming both. */
static int misfit(fm_model *m, int rc, int item, int h, int w, int c)
{
    char why[FMI_MESSAGE_CAP]; /* fmi_error formats into the buffer fm_last_error() returns */
    snprintf(why, sizeof why, "%s", fm_last_error());
    rc = fmi_error(rc, "architecture '%s', item %d (%dx%dx%d input): %s", m->arch, item + 1, h, w,
                  c, why);
    fm_model_free(m);
    return rc;
}

/* Each weighted layer's smallest synapse level H/R must be one that the
 * deterministic quantizer takes (FMI_SYNAPSE_MIN_LEVEL; fm_config_check
 * bounds R for H = 1, here each layer's H is known). */
static int check_synapse_levels(const fm_model *m)
{
    const fm_config *c = &m->config;
    if (c->weights != FM_WEIGHTS_SYNAPSE)
        return FM_OK;
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        if (!fmi_layer_weighted(L))
            continue;
        float smallest = fmi_synapse_level(L->h, c->synapse_levels, (float)c->synapse_range, 0);
        if (!(smallest >= FMI_SYNAPSE_MIN_LEVEL))
            return fmi_error(FM_EINVAL,
                            "synapse range %g is too large for weighted layer %d (%d x %d): its "
                            "smallest magnitude H/R = %.3g (H = %.3g) is below 2^-63 (%.3g), where "
                            "the products of neighbouring levels that deterministic quantization "
                            "compares against underflow as floats (R at most %.4g here)",
                            c->synapse_range, L->weight_index + 1, L->w_rows, L->w_cols,
                            (double)smallest, (double)L->h, (double)FMI_SYNAPSE_MIN_LEVEL,
                            (double)L->h / FMI_SYNAPSE_MIN_LEVEL);
    }
    return FM_OK;
}

/* fmi_model_build; with arrays 0, the layers alone (no input mean, state or
 * whitening matrix), for fmi_model_state_count. */
static int build(const fm_config *config, int in_h, int in_w, int in_c, int classes,
                 size_t max_state, int arrays, fm_model **out)
{
    *out = NULL;
    int rc = fm_config_check(config);
    if (rc < 0)
        return rc;
    const long input_dim = (long)in_h * in_w * in_c;
    if (in_h < 1 || in_w < 1 || in_c < 1 || input_dim > (1L << 24) || classes < 2 || classes > 256)
        return fmi_error(FM_EINVAL, "bad model shape: %dx%dx%d inputs, %d classes", in_h, in_w, in_c,
                        classes);
    if (strlen(config->arch) >= sizeof ((fm_model *)0)->arch)
        return fmi_error(FM_EINVAL, "architecture string too long");
    fm_layer_spec specs[FM_MAX_HIDDEN];
    const int n_specs = fmi_arch_parse(config->arch, specs, FM_MAX_HIDDEN);

    fm_model *m = fmi_alloc(1, sizeof *m);
    if (!m)
        return FM_ENOMEM;
    m->config = *config;
    strcpy(m->arch, config->arch);
    m->config.arch = m->arch;
    m->input_dim = (int)input_dim;
    m->in_h = in_h;
    m->in_w = in_w;
    m->in_c = in_c;
    m->classes = classes;
    /* at most conv, pool, bn, act, dropout per item; dense and bn at the end */
    m->layers = fmi_alloc((size_t)(n_specs + 1) * 5, sizeof *m->layers);
    m->groups = fmi_alloc((size_t)(n_specs + 1) * 2, sizeof *m->groups);
    if (!m->layers || !m->groups) {
        fm_model_free(m);
        return FM_ENOMEM;
    }

    size_t offset = 0;
    int weight_index = 0;
    int h = in_h, w = in_w, ch = in_c, flat = 0; /* the current map, or flat values */
    for (int i = 0; i < n_specs; i++) {
        const fm_layer_spec *s = &specs[i];
        if (s->kind == FM_SPEC_FC) {
            int in = flat ? flat : h * w * ch;
            fm_layer *d = add_layer(m, FM_LAYER_DENSE, in, s->units);
            add_weights(m, d, in, s->units, (double)s->units, &offset, &weight_index);
            add_norm_act(m, s->units, s->units, 1, &offset);
            flat = s->units;
        } else if (s->kind == FM_SPEC_CONV) {
            fm_layer *cv = add_layer(m, FM_LAYER_CONV, h * w * ch, 0);
            rc = fmi_conv_geom_init(&cv->conv, h, w, ch, s->k, s->stride, s->same, s->units);
            if (rc < 0)
                return misfit(m, rc, i, h, w, ch);
            h = cv->conv.out_h;
            w = cv->conv.out_w;
            ch = s->units;
            cv->out = h * w * ch;
            double pool_area = 1.0;
            if (i + 1 < n_specs && specs[i + 1].kind == FM_SPEC_POOL) {
                const fm_layer_spec *ps = &specs[++i];
                fm_layer *pl = add_layer(m, FM_LAYER_POOL, h * w * ch, 0);
                rc = fmi_pool_geom_init(&pl->pool, h, w, ch, ps->k, ps->stride);
                if (rc < 0)
                    return misfit(m, rc, i, h, w, ch);
                h = pl->pool.out_h;
                w = pl->pool.out_w;
                pl->out = h * w * ch;
                pool_area = (double)ps->k * ps->k;
            }
            add_weights(m, cv, fmi_conv_fan_in(&cv->conv), s->units,
                        (double)s->units * s->k * s->k / pool_area, &offset, &weight_index);
            add_norm_act(m, h * w * ch, ch, 1, &offset);
        } else if (s->kind == FM_SPEC_GAP) { /* the map's mean per channel */
            fm_layer *g = add_layer(m, FM_LAYER_GAP, h * w * ch, ch);
            g->channels = ch;
            h = w = 1;
        }
    }
    {
        int in = flat ? flat : h * w * ch;
        fm_layer *d = add_layer(m, FM_LAYER_DENSE, in, classes);
        add_weights(m, d, in, classes, (double)classes, &offset, &weight_index);
        add_norm_act(m, classes, classes, 0, &offset);
    }
    if ((rc = check_synapse_levels(m)) < 0) {
        fm_model_free(m);
        return rc;
    }
    m->state_count = offset;
    if (offset > max_state) {
        fm_model_free(m);
        return fmi_error(FM_ETRUNC, "the architecture needs %zu state values, more than the %zu "
                                   "there is room for", offset, max_state);
    }
    if (arrays) {
        m->input_mean = fmi_alloc((size_t)input_dim, sizeof *m->input_mean);
        m->state = m->input_mean ? fmi_alloc(offset, sizeof *m->state) : NULL;
        if (config->preproc == FM_PRE_GCN_ZCA && m->state)
            m->zca = fmi_alloc((size_t)input_dim * (size_t)input_dim, sizeof *m->zca);
        if (!m->state || (config->preproc == FM_PRE_GCN_ZCA && !m->zca)) {
            fm_model_free(m);
            return FM_ENOMEM;
        }
    }
    describe(m, specs, n_specs);
    *out = m;
    return FM_OK;
}

int fmi_model_build(const fm_config *config, int in_h, int in_w, int in_c, int classes,
                   size_t max_state, fm_model **out)
{
    return build(config, in_h, in_w, in_c, classes, max_state, 1, out);
}

int fmi_model_state_count(const fm_config *config, int in_h, int in_w, int in_c, int classes,
                          size_t max_state, size_t *count)
{
    fm_model *m;
    int rc = build(config, in_h, in_w, in_c, classes, max_state, 0, &m);
    if (rc < 0)
        return rc;
    *count = m->state_count;
    fm_model_free(m);
    return FM_OK;
}

void fmi_model_init(fm_model *m, uint64_t seed)
{
    fm_rng rng;
    fmi_rng_seed(&rng, seed);
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        const fm_layer_ops *ops = fmi_layer_ops_of(L->kind);
        if (ops->init)
            ops->init(L, m->state + L->offset, &rng);
        /* bop keeps binary weights only: the initial ones are the signs of
         * the usual draw, H*sign(W) with sign(0) = +1 (bc-det's rule) */
        if (ops->init && m->config.opt == FM_OPT_BOP && fmi_layer_weighted(L)) {
            float *w = m->state + L->offset;
            for (size_t i = 0; i < fmi_layer_weight_count(L); i++)
                w[i] = w[i] < 0.0f ? -L->h : L->h;
        }
    }
}

int fm_model_create_image(const fm_config *config, int height, int width, int channels,
                          int classes, fm_model **out)
{
    if (!config || !out)
        return fmi_error(FM_EINVAL, "fm_model_create: NULL argument");
    int rc = fmi_model_build(config, height, width, channels, classes, SIZE_MAX, out);
    if (rc < 0)
        return rc;
    fmi_model_init(*out, config->seed);
    return FM_OK;
}

int fm_model_create(const fm_config *config, int input_dim, int classes, fm_model **out)
{
    return fm_model_create_image(config, input_dim, 1, 1, classes, out);
}

int fm_model_input_shape(const fm_model *m, int *height, int *width, int *channels)
{
    if (height)
        *height = m->in_h;
    if (width)
        *width = m->in_w;
    if (channels)
        *channels = m->in_c;
    return m->input_dim;
}

void fm_model_free(fm_model *m)
{
    if (!m)
        return;
    fmi_free(m->layers);
    fmi_free(m->groups);
    fmi_free(m->state);
    fmi_free(m->input_mean);
    fmi_free(m->zca);
    fmi_free(m);
}

size_t fm_model_param_count(const fm_model *m)
{
    size_t n = 0;
    for (int g = 0; g < m->n_groups; g++)
        n += m->groups[g].count;
    return n;
}

const char *fm_model_describe(const fm_model *m) { return m->description; }
int fm_model_input_dim(const fm_model *m) { return m->input_dim; }
int fm_model_classes(const fm_model *m) { return m->classes; }

long fm_model_weights(const fm_model *m, int index, float *dst, size_t capacity)
{
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        if (!fmi_layer_weighted(L) || L->weight_index != index)
            continue;
        size_t n = fmi_layer_weight_count(L);
        if (dst) {
            if (capacity < n)
                return fmi_error(FM_EINVAL, "weight buffer holds %zu values, layer has %zu",
                                capacity, n);
            memcpy(dst, m->state + L->offset, n * sizeof *dst);
        }
        return (long)n;
    }
    return fmi_error(FM_EINVAL, "no weighted layer %d", index);
}

/* The first value of n at v that is not finite, or -1. */
static long first_not_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return (long)i;
    return -1;
}

static const char *nonfinite_name(float v) { return isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"; }

int fm_model_check_finite(const fm_model *m)
{
    static const char *const bn_names[] = {"gamma", "beta", "mean", "variance"};
    if (!m)
        return fmi_error(FM_EINVAL, "fm_model_check_finite: NULL model");
    int weighted = 0; /* the weighted layer a batch norm follows, 1-based */
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        const float *v = m->state + L->offset;
        long i = -1;
        if (fmi_layer_weighted(L)) {
            weighted = L->weight_index + 1;
            if ((i = first_not_finite(v, fmi_layer_weight_count(L))) >= 0)
                return fmi_error(FM_EINVAL, "weight %ld of weighted layer %d (%d x %d) is %s", i + 1,
                                weighted, L->w_rows, L->w_cols, nonfinite_name(v[i]));
        }
        if (L->kind == FM_LAYER_BN && (i = first_not_finite(v, (size_t)4 * L->channels)) >= 0)
            return fmi_error(FM_EINVAL, "a batch-norm %s of weighted layer %d is %s",
                            bn_names[i / L->channels], weighted, nonfinite_name(v[i]));
    }
    long i = first_not_finite(m->input_mean, (size_t)m->input_dim);
    if (i >= 0)
        return fmi_error(FM_EINVAL, "input mean %ld is %s", i + 1, nonfinite_name(m->input_mean[i]));
    return FM_OK;
}

void fmi_workspace_free(const fm_model *m, fm_workspace *ws)
{
    if (!ws)
        return;
    for (int l = 0; l <= m->n_layers; l++) {
        if (ws->act)
            fmi_free(ws->act[l]);
        if (ws->grad)
            fmi_free(ws->grad[l]);
        if (l < m->n_layers) {
            if (ws->wq)
                fmi_free(ws->wq[l]);
            if (ws->bn_mean)
                fmi_free(ws->bn_mean[l]);
            if (ws->bn_invstd)
                fmi_free(ws->bn_invstd[l]);
            if (ws->mask)
                fmi_free(ws->mask[l]);
            if (ws->argmax)
                fmi_free(ws->argmax[l]);
        }
    }
    for (int l = 0; l < m->n_layers; l++) {
        if (ws->mf_forward)
            fmi_kernel_weights_free(ws->mf_forward[l]);
        if (ws->mf_backward)
            fmi_kernel_weights_free(ws->mf_backward[l]);
        if (ws->mf_conv_forward)
            fmi_conv_weights_free(ws->mf_conv_forward[l]);
        if (ws->mf_conv_backward)
            fmi_conv_weights_free(ws->mf_conv_backward[l]);
    }
    for (int p = 0; p < ws->input.n_parts; p++)
        fmi_free(ws->input.part[p].rows);
    fmi_free(ws->mf_forward);
    fmi_free(ws->mf_backward);
    fmi_free(ws->mf_conv_forward);
    fmi_free(ws->mf_conv_backward);
    fmi_free(ws->mf_scratch);
    fmi_free(ws->act);
    fmi_free(ws->grad);
    fmi_free(ws->wq);
    fmi_free(ws->bn_mean);
    fmi_free(ws->bn_invstd);
    fmi_free(ws->mask);
    fmi_free(ws->argmax);
    fmi_free(ws->train_product);
    fmi_free(ws->eval_product);
    fmi_free(ws->conv_scratch);
    fmi_free(ws->mf_grad);
    fmi_free(ws->pre_scratch);
    fmi_free(ws->qx);
    fmi_free(ws->grad_state);
    fmi_free(ws->fused_tile);
    fmi_free(ws->wq_drawn);
    fmi_free(ws);
}

/* The --exec mulfree part of a workspace: the kernel variant, a layout per
 * weighted layer (and the one of its input gradient), table scratch. */
static int mulfree_create(const fm_model *m, fm_workspace *ws, int training)
{
    const fm_config *c = &m->config;
    int rc = fmi_kernels_default(&ws->kernels);
    if (rc < 0)
        return rc;
    size_t n = (size_t)m->n_layers;
    ws->mf_forward = fmi_alloc(n, sizeof *ws->mf_forward);
    ws->mf_backward = fmi_alloc(n, sizeof *ws->mf_backward);
    ws->mf_conv_forward = fmi_alloc(n, sizeof *ws->mf_conv_forward);
    ws->mf_conv_backward = fmi_alloc(n, sizeof *ws->mf_conv_backward);
    if (!ws->mf_forward || !ws->mf_backward || !ws->mf_conv_forward || !ws->mf_conv_backward)
        return FM_ENOMEM;
    const fm_deploy_weights kind = fmi_mulfree_kind(c->weights);
    size_t slice = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        if (!fmi_layer_weighted(L))
            continue;
        float magnitudes[FM_KERNEL_MAX_LEVELS] = {0};
        int levels = kind == FM_DW_SYNAPSE ? c->synapse_levels : 0;
        for (int i = 0; i < levels && i < FM_KERNEL_MAX_LEVELS; i++)
            magnitudes[i] = fmi_synapse_level(L->h, levels, (float)c->synapse_range, i);
        const int transposed = training && l > 0;
        if (L->kind == FM_LAYER_CONV) {
            fm_conv_geom t;
            fmi_mulfree_conv_transpose(&L->conv, &t);
            if ((rc = fmi_conv_layout(kind, &L->conv, levels, magnitudes, &ws->mf_conv_forward[l])) < 0 ||
                (transposed &&
                 (rc = fmi_conv_layout(kind, &t, levels, magnitudes, &ws->mf_conv_backward[l])) < 0))
                return rc;
            slice = FM_MAX(slice, fmi_mulfree_conv_scratch_floats(ws->mf_conv_forward[l], 1));
            if (training)
                ws->mf_grad_floats =
                    FM_MAX(ws->mf_grad_floats, fmi_mulfree_conv_grad_floats(ws->kernels, &L->conv, ws->max_batch));
            if (transposed)
                slice = FM_MAX(slice, fmi_mulfree_conv_scratch_floats(ws->mf_conv_backward[l],
                                                                      L->conv.stride));
            continue;
        }
        if ((rc = fmi_kernel_layout(kind, L->in, L->out, levels, magnitudes, &ws->mf_forward[l])) < 0 ||
            (transposed &&
             (rc = fmi_kernel_layout(kind, L->out, L->in, levels, magnitudes, &ws->mf_backward[l])) < 0))
            return rc;
        slice = FM_MAX(slice, fmi_kernel_scratch_floats(ws->mf_forward[l]));
        if (transposed)
            slice = FM_MAX(slice, fmi_kernel_scratch_floats(ws->mf_backward[l]));
    }
    ws->mf_threads = FM_MAX(1, fmi_threads_available());
    ws->mf_slice = slice;
    ws->mf_scratch = fmi_alloc((size_t)ws->mf_threads * slice, sizeof(float));
    if (ws->mf_grad_floats && !(ws->mf_grad = fmi_alloc(ws->mf_grad_floats, sizeof(float))))
        return FM_ENOMEM;
    return ws->mf_scratch ? FM_OK : FM_ENOMEM;
}

/* Threads that may run a parallel loop here. */
static int max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void fmi_workspace_choose_products(const fm_model *m, fm_workspace *ws)
{
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer_ops *ops = fmi_layer_ops_of(m->layers[l].kind);
        if (ops->product) {
            ws->train_product[l] = ops->product(m, ws, l, 0);
            ws->eval_product[l] = ops->product(m, ws, l, 1);
        }
    }
}

/* The activations (and gradients) of every layer, then each layer's own
 * buffers and those the layers share. */
static int workspace_buffers(const fm_model *m, fm_workspace *ws, int training)
{
    const int max_batch = ws->max_batch;
    fm_workspace_sizes sizes = {0};
    for (int l = 0; l <= m->n_layers; l++) {
        int dim = l == 0 ? m->input_dim : m->layers[l - 1].out;
        if (!(ws->act[l] = fmi_alloc((size_t)max_batch * dim, sizeof(float))) ||
            (training && !(ws->grad[l] = fmi_alloc((size_t)max_batch * dim, sizeof(float)))))
            return FM_ENOMEM;
        if (l == m->n_layers)
            break;
        const fm_layer_ops *ops = fmi_layer_ops_of(m->layers[l].kind);
        int rc = ops->reserve ? ops->reserve(m, l, ws, training, &sizes) : FM_OK;
        if (rc < 0)
            return rc;
    }
    if (training &&
        (!(ws->qx = fmi_alloc((size_t)max_batch * sizes.widest_input, sizeof(float))) ||
         !(ws->grad_state = fmi_alloc(m->state_count + FM_GRAD_EXTRA, sizeof(float)))))
        return FM_ENOMEM;
    if (sizes.conv_scratch && !(ws->conv_scratch = fmi_alloc(sizes.conv_scratch, sizeof(float))))
        return FM_ENOMEM;
    if (m->config.preproc == FM_PRE_GCN_ZCA &&
        !(ws->pre_scratch = fmi_alloc((size_t)max_batch * m->input_dim, sizeof(float))))
        return FM_ENOMEM;
    if (m->config.preproc == FM_PRE_GCN_LCN &&
        !(ws->pre_scratch = fmi_alloc((size_t)max_threads(),
                                     fmi_lcn_scratch_floats(m->in_h, m->in_w, FM_LCN_KERNEL) *
                                         sizeof(float))))
        return FM_ENOMEM;
    return FM_OK;
}

int fmi_workspace_create(const fm_model *m, int max_batch, int training, fm_workspace **out)
{
    *out = NULL;
    fm_workspace *ws = fmi_alloc(1, sizeof *ws);
    if (!ws)
        return FM_ENOMEM;
    ws->max_batch = max_batch;
    ws->training = training;
    ws->bop_gamma = fmi_bop_gamma_at(&m->config, 1); /* a trainer sets each epoch's */
    double lr_end;
    fm_config_learning_rates(&m->config, &ws->step_lr, &lr_end); /* and each step's */
    size_t n = (size_t)m->n_layers + 1;
    ws->act = fmi_alloc(n, sizeof *ws->act);
    ws->grad = fmi_alloc(n, sizeof *ws->grad);
    ws->wq = fmi_alloc(n, sizeof *ws->wq);
    ws->bn_mean = fmi_alloc(n, sizeof *ws->bn_mean);
    ws->bn_invstd = fmi_alloc(n, sizeof *ws->bn_invstd);
    ws->mask = fmi_alloc(n, sizeof *ws->mask);
    ws->argmax = fmi_alloc(n, sizeof *ws->argmax);
    ws->train_product = fmi_alloc(n, sizeof *ws->train_product);
    ws->eval_product = fmi_alloc(n, sizeof *ws->eval_product);
    int rc = ws->act && ws->grad && ws->wq && ws->bn_mean && ws->bn_invstd && ws->mask &&
                     ws->argmax && ws->train_product && ws->eval_product
                 ? workspace_buffers(m, ws, training)
                 : FM_ENOMEM;
    if (rc == FM_OK && m->config.exec == FM_EXEC_MULFREE)
        rc = mulfree_create(m, ws, training);
    if (rc < 0) {
        fmi_workspace_free(m, ws);
        return rc;
    }
    fmi_workspace_choose_products(m, ws);
    *out = ws;
    return FM_OK;
}

/* The rows of `count` images (as fmi_load_batch) computed into x, which
 * holds ws->max_batch rows or is a cache's. */
static void preprocess_rows(const fm_model *m, fm_workspace *ws, const fm_images *images,
                            const int *index, int first, int count, float *x)
{
    const int dim = m->input_dim;
    const fm_preproc pre = m->config.preproc;
    /* gcn-zca normalises into the scratch, then whitens into x */
    float *rows = pre == FM_PRE_GCN_ZCA ? ws->pre_scratch : x;
    const size_t lcn_floats = fmi_lcn_scratch_floats(m->in_h, m->in_w, FM_LCN_KERNEL);
#pragma omp parallel for schedule(static) if (count * dim > 65536)
    for (int b = 0; b < count; b++) {
        long src = index ? index[first + b] : first + b;
        const uint8_t *pix = images->pixels + src * dim;
        float *row = rows + (long)b * dim;
        if (pre == FM_PRE_CENTER || pre == FM_PRE_UNIT) {
            const float *mean = m->input_mean;
            for (int j = 0; j < dim; j++)
                row[j] = (float)pix[j] * (1.0f / 255.0f) - mean[j];
            continue;
        }
        /* pylearn2's pipelines work on raw pixel values 0..255 */
        for (int j = 0; j < dim; j++)
            row[j] = (float)pix[j];
        fmi_gcn(row, dim, pre == FM_PRE_GCN_ZCA ? &fmi_gcn_cifar10 : &fmi_gcn_svhn);
        if (pre == FM_PRE_GCN_LCN) {
#ifdef _OPENMP
            float *scratch = ws->pre_scratch + (size_t)omp_get_thread_num() * lcn_floats;
#else
            float *scratch = ws->pre_scratch;
#endif
            fmi_lcn(row, m->in_h, m->in_w, m->in_c, FM_LCN_KERNEL, FM_LCN_THRESHOLD, scratch);
        }
    }
    (void)lcn_floats;
    if (pre == FM_PRE_GCN_ZCA)
        fmi_zca_apply(m->input_mean, m->zca, rows, x, count, dim);
    if (pre == FM_PRE_CENTER || pre == FM_PRE_UNIT)
        FM_TALLY(FM_OP_FMA, (uint64_t)count * dim);
}

/* The part of the workspace's cache that holds every image of the batch, or NULL. */
static const fm_input_part *cached_part(const fm_workspace *ws, const fm_images *images,
                                        const int *index, int first, int count)
{
    for (int p = 0; p < ws->input.n_parts; p++) {
        const fm_input_part *part = &ws->input.part[p];
        const long lo = part->first, hi = (long)part->first + part->count;
        if (part->images != images)
            continue;
        if (!index) {
            if (first >= lo && (long)first + count <= hi)
                return part;
            continue;
        }
        int b = 0;
        while (b < count && index[first + b] >= lo && index[first + b] < hi)
            b++;
        if (b == count)
            return part;
    }
    return NULL;
}

void fmi_load_batch(const fm_model *m, fm_workspace *ws, const fm_images *images, const int *index,
                   int first, int count)
{
    const fm_input_part *part = cached_part(ws, images, index, first, count);
    if (!part) {
        preprocess_rows(m, ws, images, index, first, count, ws->act[0]);
        return;
    }
    const size_t dim = (size_t)m->input_dim;
    float *x = ws->act[0];
#pragma omp parallel for schedule(static) if ((size_t)count * dim > 65536)
    for (int b = 0; b < count; b++) {
        const long src = index ? index[first + b] : first + b;
        memcpy(x + (size_t)b * dim, part->rows + (size_t)(src - part->first) * dim, dim * sizeof *x);
    }
}

int fmi_input_cache_wanted(const fm_model *m, size_t rows, size_t bytes)
{
    const fm_preproc pre = m->config.preproc;
    return (pre == FM_PRE_GCN_ZCA || pre == FM_PRE_GCN_LCN) && rows > 0 &&
           rows <= bytes / sizeof(float) / (size_t)m->input_dim;
}

int fmi_input_cache_add(const fm_model *m, fm_workspace *ws, const fm_images *images, int first,
                        int count)
{
    fm_input_cache *cache = &ws->input;
    if (cache->n_parts == FM_INPUT_PARTS || first < 0 || count < 1 || first > images->count - count)
        return fmi_error(FM_EINVAL, "fmi_input_cache_add: images %d..%d of %d, %d parts held", first,
                        first + count - 1, images->count, cache->n_parts);
    const size_t dim = (size_t)m->input_dim;
    float *rows = fmi_alloc_raw((size_t)count * dim * sizeof *rows);
    if (!rows)
        return FM_ENOMEM;
    /* the batches the loads would make of contiguous images, so each row is
     * the one fmi_load_batch gives in such a batch (the BLAS whitening GEMM
     * may round a row differently in a batch of another size) */
    for (int b0 = 0; b0 < count; b0 += ws->max_batch)
        preprocess_rows(m, ws, images, NULL, first + b0, FM_MIN(ws->max_batch, count - b0),
                        rows + (size_t)b0 * dim);
    cache->part[cache->n_parts++] = (fm_input_part){images, first, count, rows};
    return FM_OK;
}

int fmi_preprocess_fit(fm_model *m, const fm_images *im, int count)
{
    const int dim = m->input_dim;
    switch (m->config.preproc) {
    case FM_PRE_UNIT:
    case FM_PRE_GCN_LCN: /* per-image transforms: nothing to fit */
        memset(m->input_mean, 0, (size_t)dim * sizeof *m->input_mean);
        return FM_OK;
    case FM_PRE_CENTER:
#pragma omp parallel for schedule(static)
        for (int j = 0; j < dim; j++) {
            double sum = 0.0;
            for (int i = 0; i < count; i++)
                sum += im->pixels[(long)i * dim + j];
            m->input_mean[j] = (float)(sum / count / 255.0);
        }
        return FM_OK;
    case FM_PRE_GCN_ZCA: {
        float *x = fmi_alloc((size_t)count * dim, sizeof *x);
        if (!x)
            return FM_ENOMEM;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < count; i++) {
            float *row = x + (size_t)i * dim;
            for (int j = 0; j < dim; j++)
                row[j] = (float)im->pixels[(size_t)i * dim + j];
            fmi_gcn(row, dim, &fmi_gcn_cifar10);
        }
        int rc = fmi_zca_fit(x, count, dim, FM_ZCA_FILTER_BIAS, m->input_mean, m->zca);
        fmi_free(x);
        return rc;
    }
    }
    return fmi_error(FM_EINVAL, "unknown preprocessing %d", (int)m->config.preproc);
}

/* What fmi_gcn executes on n examples of dim values: the sum, the centred
 * squares and the scaling per value; the mean, root and normaliser per example. */
static void gcn_cost(const fm_cost *c, uint64_t n, uint64_t dim)
{
    fmi_cost_ops(c, FM_OP_FADD, 3 * n * dim); /* sum; x - mean twice */
    fmi_cost_ops(c, FM_OP_FMA, n * dim);      /* sum of squares */
    fmi_cost_ops(c, FM_OP_FSPECIAL, n * dim + 3 * n); /* / normaliser; mean, sqrt, / scale */
    fmi_cost_ops(c, FM_OP_CMP, n);            /* normaliser < min_divisor */
}

/* Terms of one separable Gaussian pass along a line of `len` values (the
 * kernel is cut at the borders, as fmi_lcn's zero padding). */
static uint64_t blur_terms(int len, int kernel)
{
    const int mid = kernel / 2;
    uint64_t terms = 0;
    for (int j = 0; j < len; j++)
        terms += (uint64_t)(FM_MIN(2 * mid, len - 1 - j + mid) - FM_MAX(0, mid - j) + 1);
    return terms;
}

/* What fmi_lcn executes on n images: per channel the Gaussian's taps (two
 * exponentials, a sum and a division each), two separable blurs (the second
 * of squares), then per value a root, a clamp, a sum, two maxima, a
 * difference and a division; per channel the mean of the roots. */
static void lcn_cost(const fm_cost *c, uint64_t n, int h, int w, int channels, int kernel)
{
    const uint64_t maps = n * (uint64_t)channels, hw = (uint64_t)h * w;
    const uint64_t rows = (uint64_t)h * blur_terms(w, kernel), cols = (uint64_t)w * blur_terms(h, kernel);
    fmi_cost_ops(c, FM_OP_FMA, maps * 2 * (rows + cols));
    fmi_cost_ops(c, FM_OP_FMUL, maps * rows); /* the squares */
    fmi_cost_ops(c, FM_OP_FSPECIAL, maps * (2 * hw + 1 + 3 * (uint64_t)kernel));
    fmi_cost_ops(c, FM_OP_CMP, maps * 3 * hw);
    fmi_cost_ops(c, FM_OP_FADD, maps * (2 * hw + (uint64_t)kernel));
}

void fmi_load_batch_cost(const fm_model *m, fm_workspace *ws, fm_phase phase, int count,
                        int set_count)
{
    if (!ws->ledger)
        return;
    const fm_cost cost = {ws->ledger, 0, phase};
    const uint64_t dim = (uint64_t)m->input_dim, n = (uint64_t)count * dim;
    fmi_cost_bytes(&cost, "input.pixels", (uint64_t)set_count * dim, n, 0);
    fmi_cost_bytes(&cost, "input.x", 4 * n, 0, 4 * n);
    switch (m->config.preproc) {
    case FM_PRE_CENTER:
    case FM_PRE_UNIT:
        fmi_cost_ops(&cost, FM_OP_FMA, n); /* pixel * (1/255) - mean */
        fmi_cost_bytes(&cost, "input.mean", 4 * dim, 4 * dim, 0);
        break;
    case FM_PRE_GCN_ZCA:
        gcn_cost(&cost, (uint64_t)count, dim);
        /* (x - mean)·P as x·P - mean·P: one row of mean·P, then the batch's */
        fmi_cost_ops(&cost, FM_OP_FMA, (n + dim) * dim);
        fmi_cost_bytes(&cost, "input.mean", 4 * dim, 4 * dim, 0);
        fmi_cost_bytes(&cost, "input.zca", 4 * dim * dim, 4 * dim * dim, 0);
        break;
    case FM_PRE_GCN_LCN:
        gcn_cost(&cost, (uint64_t)count, dim);
        lcn_cost(&cost, (uint64_t)count, m->in_h, m->in_w, m->in_c, FM_LCN_KERNEL);
        break;
    }
}
