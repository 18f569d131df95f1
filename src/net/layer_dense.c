/* layer_dense.c — the dense layer: y = x · W, W in x out, no bias (batch
 * norm follows). Its products run as the workspace chose (product.h); its
 * export packs the deterministic weights into the deployed layer's codes
 * (weighted.c). */
#include "internal.h"
#include "quant.h"
#include "product.h"
#include "weighted.h"

#include <stdio.h>

static void dense_shape(const fm_layer *L, char *text, size_t size)
{
    snprintf(text, size, "%dx%d", L->in, L->out);
}

static const fm_product_ops *dense_product(const fm_model *m, const fm_workspace *ws, int l,
                                           int evaluation)
{
    (void)l;
    if (fmi_pass_uses_mulfree(m, ws, evaluation))
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

/* A dense layer starts the next deployed layer; the batch norm and the
 * activation after it complete that layer. */
static int dense_export(fm_export_state *e, const fm_layer *L)
{
    fm_deploy_layer *D = fmi_export_weighted(e);
    D->type = FM_DL_DENSE;
    return fmi_export_weights(e->model, L, e->how, D);
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
