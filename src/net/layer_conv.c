/* layer_conv.c — the 2-D convolution (conv.h) on NHWC maps, weights
 * (k_h*k_w*in_c) x out_c. Its products are the workspace's convolution
 * product (product.h); its export is a convolution record with the weights
 * packed as a dense layer's, one row per output channel. */
#include "conv.h"
#include "internal.h"
#include "product.h"
#include "weighted.h"

#include <stdio.h>

static void conv_shape(const fm_layer *L, char *text, size_t size)
{
    snprintf(text, size, "%dx%dx%d>%dk%d>%dx%dx%d", L->conv.in_h, L->conv.in_w, L->conv.in_c,
             L->conv.out_c, L->conv.k_h, L->conv.out_h, L->conv.out_w, L->conv.out_c);
}

static int conv_reserve(const fm_model *m, int l, fm_workspace *ws, int training,
                        fm_workspace_sizes *sizes)
{
    const fm_layer *L = &m->layers[l];
    sizes->conv_scratch = FM_MAX(sizes->conv_scratch, fmi_conv_scratch_floats(&L->conv, ws->max_batch));
    return fmi_weighted_reserve(m, l, ws, training, sizes);
}

static const fm_product_ops *conv_product(const fm_model *m, const fm_workspace *ws, int l,
                                          int evaluation)
{
    (void)l;
    if (fmi_pass_uses_mulfree(m, ws, evaluation))
        return &fmi_product_conv_mulfree;
    return ws->reference ? &fmi_product_conv_reference : &fmi_product_conv_gemm;
}

/* The authors' conv layers take the exact error at the convolution's
 * output, before pooling and batch norm, and clip Q(x) to their own range. */
static void conv_backward(const fm_pass *p, int l)
{
    const fm_config *c = &p->model->config;
    fmi_weighted_backward(p, l, l + 1, c->qb_conv_emin, c->qb_conv_emax);
}

/* A convolution starts the next deployed record (the pool, batch norm and
 * activation after it complete it), with the geometry the trainer uses. */
static int conv_export(fm_export_state *e, const fm_layer *L)
{
    fm_deploy_layer *D = fmi_export_weighted(e);
    const fm_conv_geom *g = &L->conv;
    D->type = FM_DL_CONV;
    D->in_h = g->in_h, D->in_w = g->in_w, D->in_c = g->in_c;
    D->k_h = g->k_h, D->k_w = g->k_w, D->stride = g->stride;
    D->pad_top = g->pad_top, D->pad_left = g->pad_left;
    D->out_h = g->out_h, D->out_w = g->out_w, D->out_c = g->out_c;
    return fmi_export_weights(e->model, L, e->how, D);
}

const fm_layer_ops fmi_layer_conv = {
    .name = "conv",
    .shape = conv_shape,
    .reserve = conv_reserve,
    .init = fmi_weighted_init,
    .forward = fmi_weighted_forward,
    .forward_eval = fmi_weighted_forward_eval,
    .backward = conv_backward,
    .product = conv_product,
    .export = conv_export,
};
