/* weighted.c — the shared half of the dense and convolution layers
 * (weighted.h): weights per pass, Q(x), and the passes around the product
 * the workspace chose for the layer. */
#include "internal.h"
#include "kernels.h"
#include "product.h"
#include "quant.h"
#include "weighted.h"

static int is_stochastic(fm_weight_mode mode)
{
    return mode == FM_WEIGHTS_BC || mode == FM_WEIGHTS_TC || mode == FM_WEIGHTS_SYNAPSE;
}

int fmi_eval_uses_real(const fm_config *c)
{
    return c->weights == FM_WEIGHTS_FP32 || (is_stochastic(c->weights) && !c->test_quantized);
}

uint64_t fmi_layer_weight_bytes(const fm_model *m, int l, int quantized)
{
    uint64_t n = fmi_layer_weight_count(&m->layers[l]);
    return quantized ? fmi_packed_bytes(n, fmi_weight_bits(m->config.weights, m->config.synapse_levels))
                     : 4 * n;
}

static void read_weights(const fm_cost *c, const fm_model *m, int l, int quantized)
{
    fmi_bytes_tensor(c, m, l, quantized ? "Wq" : "W", fmi_layer_weight_bytes(m, l, quantized), 0);
}

/* Declares a weight quantization of weighted layer l: W read, Wq written. */
static void quantize_cost(const fm_cost *c, const fm_model *m, int l, int stochastic)
{
    const fm_layer *L = &m->layers[l];
    fmi_quantize_weights_cost(c, m->config.weights, stochastic, fmi_layer_weight_count(L),
                             m->config.synapse_levels);
    read_weights(c, m, l, 0);
    fmi_bytes_tensor(c, m, l, "Wq", fmi_layer_weight_bytes(m, l, 1), 1);
}

/* The weights a training pass uses: W itself in fp32, else a fresh sample
 * (stochastic modes) or the deterministic quantization, in ws->wq. */
static const float *training_weights(const fm_model *m, fm_workspace *ws, int l, uint64_t step)
{
    const fm_layer *L = &m->layers[l];
    const fm_config *c = &m->config;
    const float *w = m->state + L->offset;
    if (c->weights == FM_WEIGHTS_FP32)
        return w;
    uint64_t key = fmi_rng_key(c->seed, FM_STREAM_WEIGHTS, (uint64_t)L->weight_index, step);
    fmi_quantize_weights(c->weights, w, ws->wq[l], fmi_layer_weight_count(L), L->h,
                        c->synapse_levels, (float)c->synapse_range, key);
    return ws->wq[l];
}

void fmi_eval_weights(const fm_model *m, fm_workspace *ws)
{
    const fm_config *c = &m->config;
    if (fmi_eval_uses_real(c))
        return;
    const fm_pass pass = {m, ws, 0, 0, FM_PHASE_EVAL};
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        if (fmi_layer_weighted(L)) {
            fmi_quantize_weights_det(c->weights, m->state + L->offset, ws->wq[l],
                                    fmi_layer_weight_count(L), L->h, c->synapse_levels,
                                    (float)c->synapse_range);
            const fm_cost cost = fmi_pass_cost(&pass, l, FM_PHASE_EVAL);
            quantize_cost(&cost, m, l, 0);
            if (ws->eval_product[l]->prepare)
                ws->eval_product[l]->prepare(&pass, &cost, l, 0);
        }
    }
}

int fmi_weighted_reserve(const fm_model *m, int l, fm_workspace *ws, int training,
                        fm_workspace_sizes *sizes)
{
    (void)training;
    const fm_layer *L = &m->layers[l];
    sizes->widest_input = FM_MAX(sizes->widest_input, (size_t)L->in);
    ws->wq[l] = fmi_alloc(fmi_layer_weight_count(L), sizeof(float));
    return ws->wq[l] ? FM_OK : FM_ENOMEM;
}

void fmi_weighted_init(const fm_layer *L, float *p, fm_rng *rng)
{
    /* U(-2H, 2H): Glorot's uniform bound when H = W0, as the authors' code,
     * so initial weights start partly outside the clip box. */
    float bound = 2.0f * L->h;
    for (size_t i = 0; i < fmi_layer_weight_count(L); i++)
        p[i] = (2.0f * fmi_rng_uniform(rng) - 1.0f) * bound;
}

void fmi_weighted_forward(const fm_pass *p, int l)
{
    const fm_model *m = p->model;
    const fm_config *c = &m->config;
    fm_workspace *ws = p->ws;
    const int quantized = c->weights != FM_WEIGHTS_FP32;
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_FORWARD);
    const fm_product_ops *product = ws->train_product[l];
    if (quantized)
        quantize_cost(&cost, m, l, 1);
    const float *w = training_weights(m, ws, l, p->step);
    if (product->prepare)
        product->prepare(p, &cost, l, 1);
    product->forward(p, &cost, l, w, fmi_weight_class_of(c->weights));
    fmi_bytes_activation(&cost, m, l, 0, p->batch, 0);
    read_weights(&cost, m, l, quantized);
    fmi_bytes_activation(&cost, m, l + 1, 0, p->batch, 1);
}

void fmi_weighted_forward_eval(const fm_pass *p, int l)
{
    const fm_model *m = p->model;
    fm_workspace *ws = p->ws;
    const int real = fmi_eval_uses_real(&m->config);
    const int wclass = real ? FM_WCLASS_REAL : fmi_weight_class_of(m->config.weights);
    const float *w = real ? m->state + m->layers[l].offset : ws->wq[l];
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_EVAL);
    ws->eval_product[l]->forward(p, &cost, l, w, wclass);
    fmi_bytes_activation(&cost, m, l, 0, p->batch, 0);
    read_weights(&cost, m, l, !real);
    fmi_bytes_activation(&cost, m, l + 1, 0, p->batch, 1);
}

void fmi_weighted_backward(const fm_pass *p, int l, int e_at, int emin, int emax)
{
    const fm_model *m = p->model;
    const fm_config *c = &m->config;
    const fm_layer *L = &m->layers[l];
    fm_workspace *ws = p->ws;
    const int B = p->batch;
    const int quantized = c->weights != FM_WEIGHTS_FP32;
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_BACKWARD);
    const fm_product_ops *product = ws->train_product[l];
    const float *x = ws->act[l], *e = ws->grad[e_at];
    const uint64_t xn = (uint64_t)B * L->in;
    const uint64_t qx_bytes = fmi_packed_bytes(xn, fmi_pow2_bits(emin, emax));
    if (c->qb) { /* the weight gradient's copy of x rounded to powers of two */
        fmi_pow2_quantize(x, ws->qx, (size_t)xn, emin, emax,
                         fmi_rng_key(c->seed, FM_STREAM_QB, (uint64_t)L->weight_index, p->step),
                         (uint64_t)ws->row0 * L->in);
        x = ws->qx;
        fmi_pow2_quantize_cost(&cost, xn);
        fmi_bytes_activation(&cost, m, l, 0, B, 0);
        fmi_bytes_tensor(&cost, m, l, "Qx", qx_bytes, 1);
    }
    product->backward_weights(p, &cost, l, x, e, ws->grad_state + L->offset);
    if (c->qb)
        fmi_bytes_tensor(&cost, m, l, "Qx", qx_bytes, 0);
    else
        fmi_bytes_activation(&cost, m, l, 0, B, 0);
    fmi_bytes_activation(&cost, m, e_at, 1, B, 0);
    fmi_bytes_tensor(&cost, m, l, "dW", 4 * (uint64_t)fmi_layer_weight_count(L), 1);
    if (l == 0) /* no input gradient below the first layer */
        return;
    const float *w = quantized ? ws->wq[l] : m->state + L->offset;
    product->backward_input(p, &cost, l, ws->grad[l + 1], w, ws->grad[l],
                            fmi_weight_class_of(c->weights));
    fmi_bytes_activation(&cost, m, l + 1, 1, B, 0);
    read_weights(&cost, m, l, quantized);
    fmi_bytes_activation(&cost, m, l, 1, B, 1);
}
