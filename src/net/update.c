/* update.c — the optimizer's step on the parameter groups (SGD, Adam, bop,
 * then the bf16 rounding of the learning state), over whole groups after
 * the backward pass (fmi_optimizer_step) or over a tile of a dense layer's
 * rows inside it (the fused update, weighted.c), with the same arithmetic
 * and draws either way, and its declarations to the ledger. */
#include "internal.h"
#include "net.h"
#include "optim.h"
#include "rng.h"
#include "weighted.h"

#include <stdio.h>

uint64_t fmi_latent_key(const fm_model *m, int l, uint64_t step)
{
    return fmi_rng_key(m->config.seed, FM_STREAM_LATENT, (uint64_t)m->layers[l].weight_index, step);
}

const fm_param_group *fmi_weight_group(const fm_model *m, int l)
{
    for (int g = 0; g < m->n_groups; g++)
        if (m->groups[g].layer == l && m->groups[g].offset == m->layers[l].offset)
            return &m->groups[g];
    return NULL;
}

/* bop flips the binary weights; the real parameters (batch norm) take Adam,
 * as in Helwegen et al. */
static int group_bop(const fm_model *m, const fm_param_group *G)
{
    return m->config.opt == FM_OPT_BOP && fmi_layer_weighted(&m->layers[G->layer]);
}

/* The learning state kept in bf16: bop's momenta, the latent weights. */
static int group_bf16(const fm_model *m, const fm_param_group *G)
{
    return m->config.latent == FM_LATENT_BF16 && fmi_layer_weighted(&m->layers[G->layer]);
}

static int uses_adam(const fm_config *c) { return c->opt == FM_OPT_ADAM || c->opt == FM_OPT_BOP; }

void fmi_update_range(const fm_model *m, const fm_workspace *ws, const fm_param_group *G, size_t at,
                      size_t count, const float *g, float *s1, float *s2, long t)
{
    const fm_config *c = &m->config;
    float *p = m->state + G->offset + at;
    s1 += G->offset + at;
    const float rate = (float)ws->step_lr * G->lr_scale;
    const int bf16 = group_bf16(m, G), bop = group_bop(m, G);
    const fm_latent_round round = {fmi_latent_key(m, G->layer, (uint64_t)(t - 1)), at};
    if (bop)
        fmi_bop_step(p, g, s1, count, (float)ws->bop_gamma, (float)c->bop_threshold,
                     bf16 ? &round : NULL);
    else if (uses_adam(c))
        fmi_adam_step(p, g, s1, s2 + G->offset + at, count, rate, 0.9f, 0.999f, 1e-8f, t, G->clip);
    else
        fmi_sgd_step(p, g, s1, count, rate, (float)c->momentum, G->clip);
    if (bf16 && !bop)
        fmi_round_bf16_all(p, count, &round);
}

/* The whole gradient of group G read by its update ("dW", or batch norm's
 * "dparams"), when `whole`: declared right after the parameters, in the
 * order a run's ledger (and so its checkpoints) has always listed them. */
static void gradient_bytes(const fm_cost *cost, const fm_model *m, const fm_param_group *G,
                           uint64_t n, const char *layer, int whole)
{
    if (!whole)
        return;
    char name[64];
    snprintf(name, sizeof name, "%s.%s", layer,
             fmi_layer_weighted(&m->layers[G->layer]) ? "dW" : "dparams");
    fmi_cost_bytes(cost, name, 4 * n, 4 * n, 0);
}

void fmi_update_cost(const fm_cost *cost, const fm_model *m, const fm_param_group *G, uint64_t n,
                     const char *layer, int whole_gradient)
{
    const fm_config *c = &m->config;
    const int weighted = fmi_layer_weighted(&m->layers[G->layer]);
    const int bf16 = group_bf16(m, G);
    const uint64_t bytes = 4 * n, kept = (bf16 ? 2 : 4) * n;
    /* dense and conv groups hold W; batch-norm groups gamma and beta ("params") */
    char name[64];
    snprintf(name, sizeof name, "%s.%s", layer, weighted ? "W" : "params");
    if (group_bop(m, G)) {
        /* the bits read and written whole, the momenta read and written; no
         * fp32 weight anywhere */
        const uint64_t bits = fmi_packed_bytes(n, 1);
        fmi_cost_bytes(cost, name, bits, bits, bits);
        gradient_bytes(cost, m, G, n, layer, whole_gradient);
        snprintf(name, sizeof name, "%s.momentum", layer);
        fmi_cost_bytes(cost, name, kept, kept, kept);
        fmi_bop_cost(cost, n, bf16);
        return;
    }
    fmi_cost_bytes(cost, name, kept, kept, kept);
    if (bf16)
        fmi_round_bf16_cost(cost, n);
    gradient_bytes(cost, m, G, n, layer, whole_gradient);
    if (uses_adam(c)) {
        fmi_adam_cost(cost, n, G->clip > 0.0f);
        snprintf(name, sizeof name, "%s.adam", layer);
        fmi_cost_bytes(cost, name, 2 * bytes, 2 * bytes, 2 * bytes);
    } else {
        fmi_sgd_cost(cost, n, c->momentum != 0.0, G->clip > 0.0f);
        snprintf(name, sizeof name, "%s.velocity", layer);
        if (c->momentum != 0.0)
            fmi_cost_bytes(cost, name, bytes, bytes, bytes);
    }
}

void fmi_optimizer_step(fm_model *m, const fm_workspace *ws, float *s1, float *s2, long t)
{
    for (int g = 0; g < m->n_groups; g++) {
        const fm_param_group *G = &m->groups[g];
        if (fmi_update_fused(m, ws, G->layer))
            continue; /* updated in the backward pass, and declared there */
        fmi_update_range(m, ws, G, 0, G->count, ws->grad_state + G->offset, s1, s2, t);
        if (!ws->ledger)
            continue;
        const fm_cost cost = {ws->ledger, G->layer + 1, FM_PHASE_UPDATE};
        fmi_update_cost(&cost, m, G, G->count, fm_ledger_layer_name(ws->ledger, G->layer + 1), 1);
    }
}
