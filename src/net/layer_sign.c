/* layer_sign.c — binary activations: y = +1 where x >= 0, else -1, trained
 * with the straight-through estimator (the gradient passes where |x| <= 1). */
#include "layer.h"
#include "layers.h"

static void sign_forward(const fm_pass *p, int l)
{
    const fm_model *m = p->model;
    const fm_cost cost = fmi_pass_cost(p, l, p->phase);
    const uint64_t n = (uint64_t)p->batch * m->layers[l].out;
    fmi_sign_forward(p->ws->act[l], p->ws->act[l + 1], (size_t)n);
    fmi_sign_cost_forward(&cost, n);
    fmi_bytes_elementwise(&cost, m, l, p->batch, 0);
}

static void sign_backward(const fm_pass *p, int l)
{
    if (l == 0)
        return;
    const fm_model *m = p->model;
    fm_workspace *ws = p->ws;
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_BACKWARD);
    const uint64_t n = (uint64_t)p->batch * m->layers[l].out;
    fmi_sign_backward(ws->act[l], ws->grad[l + 1], ws->grad[l], (size_t)n);
    fmi_sign_cost_backward(&cost, n);
    fmi_bytes_activation(&cost, m, l, 0, p->batch, 0);
    fmi_bytes_elementwise(&cost, m, l, p->batch, 1);
}

static int sign_export(fm_export_state *e, const fm_layer *L)
{
    (void)L;
    e->deploy->layers[e->current].act = FM_ACT_SIGN;
    return FM_OK;
}

const fm_layer_ops fmi_layer_sign = {
    .name = "sign",
    .shape = fmi_layer_shape_flat,
    .forward = sign_forward,
    .forward_eval = sign_forward,
    .backward = sign_backward,
    .export = sign_export,
};
