/* layer_gap.c — global average pooling: a map of positions x channels
 * becomes one value per channel, its mean (the `gap` item of a conv:
 * architecture). No parameters; the packed format holds no maps yet, so it
 * has no export. */
#include "conv.h"
#include "layer.h"

#include <stdio.h>

static int positions(const fm_layer *L) { return L->in / L->channels; }

static void gap_shape(const fm_layer *L, char *text, size_t size)
{
    snprintf(text, size, "%dx%d>%d", positions(L), L->channels, L->channels);
}

static void gap_forward(const fm_pass *p, int l)
{
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    const fm_cost cost = fmi_pass_cost(p, l, p->phase);
    fmi_gap_forward(p->ws->act[l], p->ws->act[l + 1], p->batch, positions(L), L->channels);
    fmi_gap_cost_forward(&cost, p->batch, positions(L), L->channels);
    fmi_bytes_elementwise(&cost, m, l, p->batch, 0);
}

static void gap_backward(const fm_pass *p, int l)
{
    if (l == 0)
        return;
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_BACKWARD);
    fmi_gap_backward(p->ws->grad[l + 1], p->ws->grad[l], p->batch, positions(L), L->channels);
    fmi_gap_cost_backward(&cost, p->batch, positions(L), L->channels);
    fmi_bytes_elementwise(&cost, m, l, p->batch, 1);
}

const fm_layer_ops fmi_layer_gap = {
    .name = "gap",
    .shape = gap_shape,
    .forward = gap_forward,
    .forward_eval = gap_forward,
    .backward = gap_backward,
};
