/* layer_dropout.c — inverted dropout of hidden units: training keeps each
 * value with probability 1 - p and scales it by 1/(1 - p), drawing from a
 * stream keyed by (seed, layer, step) at the value's global row, so a
 * minibatch shared by ranks draws as one process would; evaluation is the
 * identity. */
#include "internal.h"
#include "layer.h"
#include "layers.h"

#include <string.h>

static int dropout_reserve(const fm_model *m, int l, fm_workspace *ws, int training,
                           fm_workspace_sizes *sizes)
{
    (void)sizes;
    if (!training)
        return FM_OK;
    ws->mask[l] = fmi_alloc((size_t)ws->max_batch * m->layers[l].out, 1);
    return ws->mask[l] ? FM_OK : FM_ENOMEM;
}

static void dropout_forward(const fm_pass *p, int l)
{
    const fm_model *m = p->model;
    const fm_config *c = &m->config;
    const fm_layer *L = &m->layers[l];
    fm_workspace *ws = p->ws;
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_FORWARD);
    const uint64_t n = (uint64_t)p->batch * L->out;
    fmi_dropout_forward(ws->act[l], ws->act[l + 1], ws->mask[l], (size_t)n, (float)c->dropout,
                       fmi_rng_key(c->seed, FM_STREAM_DROPOUT, (uint64_t)l, p->step),
                       (uint64_t)ws->row0 * L->out);
    fmi_dropout_cost_forward(&cost, n);
    fmi_bytes_elementwise(&cost, m, l, p->batch, 0);
    fmi_bytes_tensor(&cost, m, l, "mask", fmi_packed_bytes(n, 1), 1);
}

static void dropout_forward_eval(const fm_pass *p, int l)
{
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_EVAL);
    const size_t n = (size_t)p->batch * p->model->layers[l].out;
    memcpy(p->ws->act[l + 1], p->ws->act[l], n * sizeof(float));
    fmi_bytes_elementwise(&cost, p->model, l, p->batch, 0);
}

static void dropout_backward(const fm_pass *p, int l)
{
    if (l == 0)
        return;
    const fm_model *m = p->model;
    fm_workspace *ws = p->ws;
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_BACKWARD);
    const uint64_t n = (uint64_t)p->batch * m->layers[l].out;
    fmi_dropout_backward(ws->grad[l + 1], ws->grad[l], ws->mask[l], (size_t)n,
                        (float)m->config.dropout);
    fmi_dropout_cost_backward(&cost, n);
    fmi_bytes_tensor(&cost, m, l, "mask", fmi_packed_bytes(n, 1), 0);
    fmi_bytes_elementwise(&cost, m, l, p->batch, 1);
}

static int dropout_export(fm_export_state *e, const fm_layer *L)
{
    (void)e, (void)L; /* the identity at inference */
    return FM_OK;
}

const fm_layer_ops fmi_layer_dropout = {
    .name = "dropout",
    .shape = fmi_layer_shape_flat,
    .reserve = dropout_reserve,
    .forward = dropout_forward,
    .forward_eval = dropout_forward_eval,
    .backward = dropout_backward,
    .export = dropout_export,
};
