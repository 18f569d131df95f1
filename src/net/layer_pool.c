/* layer_pool.c — max-pooling of a map (conv.h): training keeps the chosen
 * input of each output, which the backward pass routes the gradient to. It
 * follows a convolution, before its batch norm and activation; its export is a
 * max-pool record after the convolution's, which pools that convolution's sums. */
#include "internal.h"
#include "layer.h"

#include <stdio.h>

static void pool_shape(const fm_layer *L, char *text, size_t size)
{
    snprintf(text, size, "%dx%dx%d>%dx%dx%d", L->pool.in_h, L->pool.in_w, L->pool.c,
             L->pool.out_h, L->pool.out_w, L->pool.c);
}

static int pool_reserve(const fm_model *m, int l, fm_workspace *ws, int training,
                        fm_workspace_sizes *sizes)
{
    (void)sizes;
    if (!training)
        return FM_OK;
    ws->argmax[l] = fmi_alloc((size_t)ws->max_batch * m->layers[l].out, sizeof(int32_t));
    return ws->argmax[l] ? FM_OK : FM_ENOMEM;
}

/* The window maxima, with (argmax not NULL) the chosen inputs kept. */
static void pool_run(const fm_pass *p, int l, fm_phase phase, int32_t *argmax)
{
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    const int B = p->batch;
    const fm_cost cost = fmi_pass_cost(p, l, phase);
    fmi_maxpool_forward(&L->pool, p->ws->act[l], p->ws->act[l + 1], argmax, B);
    fmi_maxpool_cost_forward(&cost, &L->pool, B);
    fmi_bytes_elementwise(&cost, m, l, B, 0);
    if (argmax)
        fmi_bytes_tensor(&cost, m, l, "argmax", 4 * (uint64_t)B * L->out, 1);
}

static void pool_forward(const fm_pass *p, int l)
{
    pool_run(p, l, FM_PHASE_FORWARD, p->ws->argmax[l]);
}

static void pool_forward_eval(const fm_pass *p, int l) { pool_run(p, l, FM_PHASE_EVAL, NULL); }

static void pool_backward(const fm_pass *p, int l)
{
    if (l == 0)
        return;
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    fm_workspace *ws = p->ws;
    const int B = p->batch;
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_BACKWARD);
    fmi_maxpool_backward(&L->pool, ws->grad[l + 1], ws->argmax[l], ws->grad[l], B);
    fmi_maxpool_cost_backward(&cost, &L->pool, B);
    fmi_bytes_tensor(&cost, m, l, "argmax", 4 * (uint64_t)B * L->out, 0);
    fmi_bytes_elementwise(&cost, m, l, B, 1);
}

static int pool_export(fm_export_state *e, const fm_layer *L)
{
    fm_deploy_layer *D = &e->deploy->layers[e->count++];
    const fm_pool_geom *g = &L->pool;
    D->type = FM_DL_POOL;
    D->weights = FM_DW_FP32; /* no weights: nothing is stored */
    D->in_h = g->in_h, D->in_w = g->in_w, D->in_c = g->c;
    D->k_h = D->k_w = g->size;
    D->stride = g->stride;
    D->out_h = g->out_h, D->out_w = g->out_w, D->out_c = g->c;
    D->in = L->in;
    D->out = L->out;
    return FM_OK;
}

const fm_layer_ops fmi_layer_pool = {
    .name = "pool",
    .shape = pool_shape,
    .reserve = pool_reserve,
    .forward = pool_forward,
    .forward_eval = pool_forward_eval,
    .backward = pool_backward,
    .export = pool_export,
};
