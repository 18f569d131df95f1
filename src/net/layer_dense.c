/* layer_dense.c — the dense layer: y = x · W, W in x out, no bias (batch
 * norm follows). Its products run as the workspace chose (product.h); its
 * export packs the deterministic weights into the deployed layer's codes. */
#include "internal.h"
#include "quant.h"
#include "product.h"
#include "weighted.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void dense_shape(const fm_layer *L, char *text, size_t size)
{
    snprintf(text, size, "%dx%d", L->in, L->out);
}

/* The mulfree kernels run every product of a pass on quantized weights:
 * every training pass (--exec mulfree needs a quantized mode) and the
 * evaluation passes that do not use the real W. */
static const fm_product_ops *dense_product(const fm_model *m, const fm_workspace *ws, int l,
                                           int evaluation)
{
    (void)l;
    if (ws->kernels && !(evaluation && fmi_eval_uses_real(&m->config)))
        return &fmi_product_mulfree;
    return ws->reference ? &fmi_product_reference : &fmi_product_blas;
}

/* With quantized back-prop the authors' code takes the error at the batch
 * norm's output (skipping its Jacobian) for the weight gradient of a dense
 * layer; qb_bn_jacobian uses the exact one. */
static void dense_backward(const fm_pass *p, int l)
{
    const fm_model *m = p->model;
    const fm_config *c = &m->config;
    int e_at = l + 1;
    if (c->qb && !c->qb_bn_jacobian && l + 1 < m->n_layers &&
        m->layers[l + 1].kind == FM_LAYER_BN)
        e_at = l + 2;
    fmi_weighted_backward(p, l, e_at, c->qb_emin, c->qb_emax);
}

/* ---- export ---- */

/* The code of a deterministic synapse value: its magnitude's index and sign. */
static uint32_t synapse_code(const fm_deploy_layer *L, float value)
{
    float a = fabsf(value);
    uint32_t index = 0;
    while ((int)index + 1 < L->levels && L->magnitudes[index] != a)
        index++;
    return (value < 0.0f ? 1u << (L->bits - 1) : 0u) | index;
}

/* Packs dense layer `dl` of the model (latent weights w, in x out) into L. */
static int export_weights(const fm_model *m, const fm_layer *dl, fm_export_weights how,
                          fm_deploy_layer *L)
{
    const fm_config *c = &m->config;
    const float *w = m->state + dl->offset;
    const int packed = c->weights != FM_WEIGHTS_FP32 &&
                       !(how == FM_EXPORT_MEAN && (c->weights == FM_WEIGHTS_BC ||
                                                   c->weights == FM_WEIGHTS_TC ||
                                                   c->weights == FM_WEIGHTS_SYNAPSE));
    L->in = dl->in;
    L->out = dl->out;
    L->unit = 1.0f;
    if (!packed) {
        L->weights = FM_DW_FP32;
        L->bits = 32;
    } else if (c->weights == FM_WEIGHTS_SYNAPSE && c->synapse_levels > 32) {
        return fmi_error(FM_EUNSUPPORTED, "packed files hold at most 32 synapse levels (model has %d);"
                        " export the real weights instead", c->synapse_levels);
    } else if (c->weights == FM_WEIGHTS_SYNAPSE && c->synapse_levels > 1) {
        L->weights = FM_DW_SYNAPSE;
        L->levels = c->synapse_levels;
        L->bits = (int)fmi_weight_bits(c->weights, c->synapse_levels); /* sign + index */
    } else {
        /* one synapse level with a sign is the binary rule */
        const int binary = c->weights != FM_WEIGHTS_TC && c->weights != FM_WEIGHTS_TC_DET;
        L->weights = binary ? FM_DW_BINARY : FM_DW_TERNARY;
        L->bits = binary ? 1 : 2;
        L->unit = dl->h;
    }
    int rc = fmi_deploy_layer_alloc(L);
    if (rc < 0)
        return rc;
    if (!packed) {
        for (int j = 0; j < L->out; j++)
            for (int i = 0; i < L->in; i++)
                memcpy(L->packed + (size_t)j * L->row_bytes + 4 * (size_t)i,
                       &w[(size_t)i * L->out + j], 4);
        return FM_OK;
    }
    for (int k = 0; k < L->levels; k++)
        L->magnitudes[k] = fmi_synapse_level(dl->h, L->levels, (float)c->synapse_range, k);
    /* The deterministic weights exactly as training evaluates them, then coded. */
    const size_t n = (size_t)L->in * L->out;
    float *q = fmi_alloc(n, sizeof *q);
    if (!q)
        return FM_ENOMEM;
    fmi_quantize_weights_det(c->weights, w, q, n, dl->h, c->synapse_levels, (float)c->synapse_range);
    for (int i = 0; i < L->in; i++)
        for (int j = 0; j < L->out; j++) {
            float v = q[(size_t)i * L->out + j];
            uint32_t code;
            if (L->weights == FM_DW_BINARY)
                code = v > 0.0f;
            else if (L->weights == FM_DW_TERNARY)
                code = v > 0.0f ? 1u : v < 0.0f ? 3u : 0u;
            else
                code = synapse_code(L, v);
            fmi_deploy_set_code(L, j, i, code);
        }
    fmi_free(q);
    return FM_OK;
}

/* A dense layer starts the next deployed layer; the batch norm and the
 * activation after it complete that layer. */
static int dense_export(fm_export_state *e, const fm_layer *L)
{
    const int k = ++e->current;
    fm_deploy_layer *layers = e->deploy->layers;
    layers[k].binary_input = k > 0 && layers[k - 1].act == FM_ACT_SIGN;
    return export_weights(e->model, L, e->how, &layers[k]);
}

const fm_layer_ops fmi_layer_dense = {
    .name = "dense",
    .shape = dense_shape,
    .reserve = fmi_weighted_reserve,
    .init = fmi_weighted_init,
    .forward = fmi_weighted_forward,
    .forward_eval = fmi_weighted_forward_eval,
    .backward = dense_backward,
    .product = dense_product,
    .export = dense_export,
};
