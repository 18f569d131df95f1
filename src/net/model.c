/* model.c — building a model from its configuration (layer list, one state
 * array, parameter groups), initialization, workspaces and batch loading. */
#include "internal.h"
#include "layers.h"
#include "ledger.h"
#include "mulfree.h"
#include "net.h"
#include "quant.h"
#include "rng.h"

#include <stdio.h>
#include <string.h>

static int is_quantized(fm_weight_mode mode) { return mode != FM_WEIGHTS_FP32; }

int fm_model_build(const fm_config *config, int input_dim, int classes, fm_model **out)
{
    *out = NULL;
    int rc = fm_config_check(config);
    if (rc < 0)
        return rc;
    if (input_dim < 1 || classes < 2 || classes > 256)
        return fm_error(FM_EINVAL, "bad model shape: %d inputs, %d classes", input_dim, classes);
    if (strlen(config->arch) >= sizeof ((fm_model *)0)->arch)
        return fm_error(FM_EINVAL, "architecture string too long");
    int hidden[FM_MAX_HIDDEN];
    int n_hidden = fm_arch_parse(config->arch, hidden, FM_MAX_HIDDEN);

    fm_model *m = fm_alloc(1, sizeof *m);
    if (!m)
        return FM_ENOMEM;
    m->config = *config;
    strcpy(m->arch, config->arch);
    m->config.arch = m->arch;
    m->input_dim = input_dim;
    m->classes = classes;
    int with_dropout = config->dropout > 0.0;
    int max_layers = (n_hidden + 1) * 4;
    m->layers = fm_alloc((size_t)max_layers, sizeof *m->layers);
    m->groups = fm_alloc((size_t)(n_hidden + 1) * 2, sizeof *m->groups);
    m->input_mean = fm_alloc((size_t)input_dim, sizeof *m->input_mean);
    if (!m->layers || !m->groups || !m->input_mean) {
        fm_model_free(m);
        return FM_ENOMEM;
    }

    size_t offset = 0;
    int width = input_dim, dense_index = 0;
    const int quantized = is_quantized(config->weights);
    for (int i = 0; i <= n_hidden; i++) {
        int next = i < n_hidden ? hidden[i] : classes;
        fm_layer *d = &m->layers[m->n_layers++];
        d->kind = FM_LAYER_DENSE;
        d->in = width;
        d->out = next;
        d->offset = offset;
        d->w0 = fm_dense_w0(width, next);
        d->h = quantized && config->scale == FM_SCALE_ONE ? 1.0f : d->w0;
        d->dense_index = dense_index++;
        /* The step is scaled so that --scale changes only the representation:
         * relative to H, BinaryConnect's Adam step is lr*H/W0 (its Glorot
         * learning-rate scale when H = 1) and an SGD step (H/W0)^2 lr. */
        float ratio = d->h / d->w0;
        m->groups[m->n_groups++] = (fm_param_group){
            offset, (size_t)width * next,
            config->opt == FM_OPT_ADAM ? ratio : ratio * ratio,
            quantized ? d->h : 0.0f, m->n_layers - 1};
        offset += (size_t)width * next;

        fm_layer *bn = &m->layers[m->n_layers++];
        bn->kind = FM_LAYER_BN;
        bn->in = bn->out = next;
        bn->offset = offset;
        m->groups[m->n_groups++] = (fm_param_group){offset, (size_t)2 * next, 1.0f, 0.0f, m->n_layers - 1};
        offset += (size_t)4 * next;

        if (i < n_hidden) {
            fm_layer *r = &m->layers[m->n_layers++];
            r->kind = config->acts == FM_ACTS_BINARY ? FM_LAYER_SIGN : FM_LAYER_RELU;
            r->in = r->out = next;
            if (with_dropout) {
                fm_layer *dr = &m->layers[m->n_layers++];
                dr->kind = FM_LAYER_DROPOUT;
                dr->in = dr->out = next;
            }
        }
        width = next;
    }
    m->state_count = offset;
    m->state = fm_alloc(offset, sizeof *m->state);
    if (!m->state) {
        fm_model_free(m);
        return FM_ENOMEM;
    }
    int len = snprintf(m->description, sizeof m->description, "%d", input_dim);
    for (int i = 0; i < n_hidden && len < (int)sizeof m->description; i++)
        len += snprintf(m->description + len, sizeof m->description - (size_t)len, "-%d", hidden[i]);
    if (len < (int)sizeof m->description) {
        char qb[64] = "";
        if (config->qb && config->qb_emin == FM_QB_UNBOUNDED)
            snprintf(qb, sizeof qb, "+qb");
        else if (config->qb)
            snprintf(qb, sizeof qb, "+qb[%d:%d]", config->qb_emin, config->qb_emax);
        char levels[32] = "";
        if (config->weights == FM_WEIGHTS_SYNAPSE)
            snprintf(levels, sizeof levels, ":%d", config->synapse_levels);
        snprintf(m->description + len, sizeof m->description - (size_t)len,
                 "-%d with batch norm, %s%s%s weights%s", classes, fm_weights_name(config->weights),
                 levels, qb, config->acts == FM_ACTS_BINARY ? ", binary activations" : "");
    }
    *out = m;
    return FM_OK;
}

void fm_model_init(fm_model *m, uint64_t seed)
{
    fm_rng rng;
    fm_rng_seed(&rng, seed);
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        float *p = m->state + L->offset;
        if (L->kind == FM_LAYER_DENSE) {
            /* U(-2H, 2H): Glorot's uniform bound when H = W0, as the authors'
             * code, so initial weights start partly outside the clip box. */
            float bound = 2.0f * L->h;
            for (size_t i = 0; i < (size_t)L->in * L->out; i++)
                p[i] = (2.0f * fm_rng_uniform(&rng) - 1.0f) * bound;
        } else if (L->kind == FM_LAYER_BN) {
            for (int j = 0; j < L->out; j++) {
                p[j] = 1.0f;              /* gamma */
                p[L->out + j] = 0.0f;     /* beta */
                p[2 * L->out + j] = 0.0f; /* mean */
                p[3 * L->out + j] = 1.0f; /* var */
            }
        }
    }
}

int fm_model_create(const fm_config *config, int input_dim, int classes, fm_model **out)
{
    if (!config || !out)
        return fm_error(FM_EINVAL, "fm_model_create: NULL argument");
    int rc = fm_model_build(config, input_dim, classes, out);
    if (rc < 0)
        return rc;
    fm_model_init(*out, config->seed);
    return FM_OK;
}

void fm_model_free(fm_model *m)
{
    if (!m)
        return;
    fm_free(m->layers);
    fm_free(m->groups);
    fm_free(m->state);
    fm_free(m->input_mean);
    fm_free(m);
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
        if (L->kind != FM_LAYER_DENSE || L->dense_index != index)
            continue;
        size_t n = (size_t)L->in * L->out;
        if (dst) {
            if (capacity < n)
                return fm_error(FM_EINVAL, "weight buffer holds %zu values, layer has %zu",
                                capacity, n);
            memcpy(dst, m->state + L->offset, n * sizeof *dst);
        }
        return (long)n;
    }
    return fm_error(FM_EINVAL, "no dense layer %d", index);
}

void fm_workspace_free(const fm_model *m, fm_workspace *ws)
{
    if (!ws)
        return;
    for (int l = 0; l <= m->n_layers; l++) {
        if (ws->act)
            fm_free(ws->act[l]);
        if (ws->grad)
            fm_free(ws->grad[l]);
        if (l < m->n_layers) {
            if (ws->wq)
                fm_free(ws->wq[l]);
            if (ws->bn_mean)
                fm_free(ws->bn_mean[l]);
            if (ws->bn_invstd)
                fm_free(ws->bn_invstd[l]);
            if (ws->mask)
                fm_free(ws->mask[l]);
        }
    }
    for (int l = 0; l < m->n_layers; l++) {
        if (ws->mf_forward)
            fm_kernel_weights_free(ws->mf_forward[l]);
        if (ws->mf_backward)
            fm_kernel_weights_free(ws->mf_backward[l]);
    }
    fm_free(ws->mf_forward);
    fm_free(ws->mf_backward);
    fm_free(ws->mf_scratch);
    fm_free(ws->act);
    fm_free(ws->grad);
    fm_free(ws->wq);
    fm_free(ws->bn_mean);
    fm_free(ws->bn_invstd);
    fm_free(ws->mask);
    fm_free(ws->qx);
    fm_free(ws->grad_state);
    fm_free(ws);
}

/* The --exec mulfree part of a workspace: the kernel variant, a layout per
 * dense layer (and its transpose for the input gradient), table scratch. */
static int mulfree_create(const fm_model *m, fm_workspace *ws, int training)
{
    const fm_config *c = &m->config;
    int rc = fm_kernels_default(&ws->kernels);
    if (rc < 0)
        return rc;
    size_t n = (size_t)m->n_layers;
    ws->mf_forward = fm_alloc(n, sizeof *ws->mf_forward);
    ws->mf_backward = fm_alloc(n, sizeof *ws->mf_backward);
    if (!ws->mf_forward || !ws->mf_backward)
        return FM_ENOMEM;
    const fm_deploy_weights kind = fm_mulfree_kind(c->weights);
    size_t slice = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        if (L->kind != FM_LAYER_DENSE)
            continue;
        float magnitudes[FM_KERNEL_MAX_LEVELS] = {0};
        int levels = kind == FM_DW_SYNAPSE ? c->synapse_levels : 0;
        for (int i = 0; i < levels && i < FM_KERNEL_MAX_LEVELS; i++)
            magnitudes[i] = fm_synapse_level(L->h, levels, (float)c->synapse_range, i);
        if ((rc = fm_kernel_layout(kind, L->in, L->out, levels, magnitudes, &ws->mf_forward[l])) < 0)
            return rc;
        slice = FM_MAX(slice, fm_kernel_scratch_floats(ws->mf_forward[l]));
        if (training && l > 0) {
            if ((rc = fm_kernel_layout(kind, L->out, L->in, levels, magnitudes,
                                       &ws->mf_backward[l])) < 0)
                return rc;
            slice = FM_MAX(slice, fm_kernel_scratch_floats(ws->mf_backward[l]));
        }
    }
    ws->mf_threads = FM_MAX(1, fm_threads_available());
    ws->mf_slice = slice;
    ws->mf_scratch = fm_alloc((size_t)ws->mf_threads * slice, sizeof(float));
    return ws->mf_scratch ? FM_OK : FM_ENOMEM;
}

int fm_workspace_create(const fm_model *m, int max_batch, int training, fm_workspace **out)
{
    *out = NULL;
    fm_workspace *ws = fm_alloc(1, sizeof *ws);
    if (!ws)
        return FM_ENOMEM;
    ws->max_batch = max_batch;
    ws->training = training;
    size_t n = (size_t)m->n_layers + 1;
    ws->act = fm_alloc(n, sizeof *ws->act);
    ws->grad = fm_alloc(n, sizeof *ws->grad);
    ws->wq = fm_alloc(n, sizeof *ws->wq);
    ws->bn_mean = fm_alloc(n, sizeof *ws->bn_mean);
    ws->bn_invstd = fm_alloc(n, sizeof *ws->bn_invstd);
    ws->mask = fm_alloc(n, sizeof *ws->mask);
    int ok = ws->act && ws->grad && ws->wq && ws->bn_mean && ws->bn_invstd && ws->mask;
    size_t widest_in = 0;
    for (int l = 0; ok && l <= m->n_layers; l++) {
        int dim = l == 0 ? m->input_dim : m->layers[l - 1].out;
        ok = (ws->act[l] = fm_alloc((size_t)max_batch * dim, sizeof(float))) != NULL;
        if (ok && training)
            ok = (ws->grad[l] = fm_alloc((size_t)max_batch * dim, sizeof(float))) != NULL;
        if (!ok || l == m->n_layers)
            break;
        const fm_layer *L = &m->layers[l];
        if (L->kind == FM_LAYER_DENSE) {
            ok = (ws->wq[l] = fm_alloc((size_t)L->in * L->out, sizeof(float))) != NULL;
            widest_in = FM_MAX(widest_in, (size_t)L->in);
        } else if (L->kind == FM_LAYER_BN) {
            ok = (ws->bn_mean[l] = fm_alloc((size_t)L->out, sizeof(float))) != NULL &&
                 (ws->bn_invstd[l] = fm_alloc((size_t)L->out, sizeof(float))) != NULL;
        } else if (L->kind == FM_LAYER_DROPOUT && training) {
            ok = (ws->mask[l] = fm_alloc((size_t)max_batch * L->out, 1)) != NULL;
        }
    }
    if (ok && training)
        ok = (ws->qx = fm_alloc((size_t)max_batch * widest_in, sizeof(float))) != NULL &&
             (ws->grad_state = fm_alloc(m->state_count, sizeof(float))) != NULL;
    if (!ok) {
        fm_workspace_free(m, ws);
        return FM_ENOMEM;
    }
    if (m->config.exec == FM_EXEC_MULFREE) {
        int rc = mulfree_create(m, ws, training);
        if (rc < 0) {
            fm_workspace_free(m, ws);
            return rc;
        }
    }
    *out = ws;
    return FM_OK;
}

void fm_load_batch(const fm_model *m, const fm_images *images, const int *index, int first,
                   int count, float *x)
{
    const int dim = m->input_dim;
    const float *mean = m->input_mean;
#pragma omp parallel for schedule(static) if (count * dim > 65536)
    for (int b = 0; b < count; b++) {
        long src = index ? index[first + b] : first + b;
        const uint8_t *pix = images->pixels + src * dim;
        float *row = x + (long)b * dim;
        for (int j = 0; j < dim; j++)
            row[j] = (float)pix[j] * (1.0f / 255.0f) - mean[j];
    }
    FM_TALLY(FM_OP_FMA, (uint64_t)count * dim);
}

void fm_load_batch_cost(const fm_model *m, fm_workspace *ws, fm_phase phase, int count,
                        int set_count)
{
    if (!ws->ledger)
        return;
    const fm_cost cost = {ws->ledger, 0, phase};
    const uint64_t n = (uint64_t)count * m->input_dim;
    fm_cost_ops(&cost, FM_OP_FMA, n); /* pixel * (1/255) - mean */
    fm_cost_bytes(&cost, "input.pixels", (uint64_t)set_count * m->input_dim, n, 0);
    fm_cost_bytes(&cost, "input.mean", 4 * (uint64_t)m->input_dim, 4 * (uint64_t)m->input_dim, 0);
    fm_cost_bytes(&cost, "input.x", 4 * n, 0, 4 * n);
}
