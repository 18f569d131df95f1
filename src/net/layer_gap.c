/* layer_gap.c — global average pooling: a map of positions x channels
 * becomes one value per channel, its mean (the `gap` item of a conv:
 * architecture). No parameters; its export is a global average pool record. */
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

static int gap_export(fm_export_state *e, const fm_layer *L)
{
    const fm_deploy_layer *before = &e->deploy->layers[e->count - 1];
    fm_deploy_layer *D = &e->deploy->layers[e->count++];
    D->type = FM_DL_GAP;
    D->weights = FM_DW_FP32; /* no weights: nothing is stored */
    D->in_h = before->out_h, D->in_w = before->out_w, D->in_c = L->channels;
    D->out_h = D->out_w = 1;
    D->out_c = L->channels;
    D->in = L->in;
    D->out = L->out;
    return FM_OK;
}

const fm_layer_ops fmi_layer_gap = {
    .name = "gap",
    .shape = gap_shape,
    .forward = gap_forward,
    .forward_eval = gap_forward,
    .backward = gap_backward,
    .export = gap_export,
};
