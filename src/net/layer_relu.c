/* layer_relu.c — the ReLU layer: y = max(x, 0), its gradient where y > 0. */
#include "layer.h"
#include "layers.h"

static void relu_forward(const fm_pass *p, int l)
{
    const fm_model *m = p->model;
    const fm_cost cost = fmi_pass_cost(p, l, p->phase);
    const uint64_t n = (uint64_t)p->batch * m->layers[l].out;
    fmi_relu_forward(p->ws->act[l], p->ws->act[l + 1], (size_t)n);
    fmi_relu_cost(&cost, n);
    fmi_bytes_elementwise(&cost, m, l, p->batch, 0);
}

static void relu_backward(const fm_pass *p, int l)
{
    if (l == 0) /* no input gradient below the first layer */
        return;
    const fm_model *m = p->model;
    fm_workspace *ws = p->ws;
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_BACKWARD);
    const uint64_t n = (uint64_t)p->batch * m->layers[l].out;
    fmi_relu_backward(ws->act[l + 1], ws->grad[l + 1], ws->grad[l], (size_t)n);
    fmi_relu_cost(&cost, n);
    fmi_bytes_activation(&cost, m, l + 1, 0, p->batch, 0);
    fmi_bytes_elementwise(&cost, m, l, p->batch, 1);
}

static int relu_export(fm_export_state *e, const fm_layer *L)
{
    (void)L;
    e->deploy->layers[e->current].act = FM_ACT_RELU;
    return FM_OK;
}

const fm_layer_ops fmi_layer_relu = {
    .name = "relu",
    .shape = fmi_layer_shape_flat,
    .forward = relu_forward,
    .forward_eval = relu_forward,
    .backward = relu_backward,
    .export = relu_export,
};
