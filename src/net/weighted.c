/* weighted.c — the shared half of the dense and convolution layers
 * (weighted.h): weights per pass, Q(x), the passes around the product the
 * workspace chose for the layer, and the export of their weights. */
#include "internal.h"
#include "kernels.h"
#include "optim.h"
#include "product.h"
#include "quant.h"
#include "rng.h"
#include "weighted.h"

#include <math.h>
#include <string.h>

static int is_stochastic(fm_weight_mode mode)
{
    return mode == FM_WEIGHTS_BC || mode == FM_WEIGHTS_TC || mode == FM_WEIGHTS_SYNAPSE;
}

int fmi_eval_uses_real(const fm_config *c)
{
    return c->weights == FM_WEIGHTS_FP32 || (is_stochastic(c->weights) && !c->test_quantized);
}

int fmi_pass_uses_mulfree(const fm_model *m, const fm_workspace *ws, int evaluation)
{
    return ws->kernels && !(evaluation && fmi_eval_uses_real(&m->config));
}

uint64_t fmi_layer_weight_bytes(const fm_model *m, int l, int quantized)
{
    uint64_t n = fmi_layer_weight_count(&m->layers[l]);
    return quantized ? fmi_packed_bytes(n, fmi_weight_bits(m->config.weights, m->config.synapse_levels))
                     : fmi_latent_bytes(&m->config) * n;
}

uint64_t fmi_latent_bytes(const fm_config *c)
{
    return c->latent == FM_LATENT_BF16 ? 2 : 4;
}

/* With bop the model's weights are the binary values themselves (held as
 * +-H floats, the way the default path emulates every quantized weight), so
 * "W" is the packed bits: no fp32 latent weight is read, sampled or written. */
static int bop_weights(const fm_config *c) { return c->opt == FM_OPT_BOP; }

static void read_weights(const fm_cost *c, const fm_model *m, int l, int quantized)
{
    if (bop_weights(&m->config))
        fmi_bytes_tensor(c, m, l, "W", fmi_layer_weight_bytes(m, l, 1), 0);
    else
        fmi_bytes_tensor(c, m, l, quantized ? "Wq" : "W", fmi_layer_weight_bytes(m, l, quantized),
                         0);
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

/* Weighted layer l's weights for training step `step`, values [at, at +
 * count): a sample (stochastic modes) or the deterministic quantization of
 * the latent W, into ws->wq[l]. */
static void draw_weights(const fm_model *m, fm_workspace *ws, int l, uint64_t step, size_t at,
                         size_t count)
{
    const fm_layer *L = &m->layers[l];
    const fm_config *c = &m->config;
    uint64_t key = fmi_rng_key(c->seed, FM_STREAM_WEIGHTS, (uint64_t)L->weight_index, step);
    fmi_quantize_weights(c->weights, m->state + L->offset + at, ws->wq[l] + at, count, L->h,
                        c->synapse_levels, (float)c->synapse_range, key, at);
}

/* Whether ws->wq[l] holds step `step`'s weights, drawn by the fused update
 * of the step before. */
static int weights_drawn(const fm_workspace *ws, int l, uint64_t step)
{
    return ws->wq_drawn && ws->wq_drawn[l] == step + 1;
}

/* The weights a training pass uses: W itself in fp32, else a fresh sample
 * (stochastic modes) or the deterministic quantization, in ws->wq (unless
 * the step before drew them there). */
static const float *training_weights(const fm_model *m, fm_workspace *ws, int l, uint64_t step)
{
    const fm_layer *L = &m->layers[l];
    const fm_config *c = &m->config;
    const float *w = m->state + L->offset;
    if (c->weights == FM_WEIGHTS_FP32)
        return w;
    if (bop_weights(c)) {
        /* the weights are already +-H; a product with its own layout fills
         * it from ws->wq (no arithmetic: the bits as they are) */
        if (ws->train_product[l]->prepare)
            memcpy(ws->wq[l], w, fmi_layer_weight_count(L) * sizeof *w);
        return w;
    }
    if (!weights_drawn(ws, l, step))
        draw_weights(m, ws, l, step, 0, fmi_layer_weight_count(L));
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
            const fm_cost cost = fmi_pass_cost(&pass, l, FM_PHASE_EVAL);
            if (ws->wq_drawn) /* the next training step draws its own again */
                ws->wq_drawn[l] = 0;
            if (bop_weights(c)) { /* the bits are the evaluation weights */
                memcpy(ws->wq[l], m->state + L->offset, fmi_layer_weight_count(L) * sizeof(float));
            } else {
                fmi_quantize_weights_det(c->weights, m->state + L->offset, ws->wq[l],
                                        fmi_layer_weight_count(L), L->h, c->synapse_levels,
                                        (float)c->synapse_range);
                quantize_cost(&cost, m, l, 0);
            }
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
    if (quantized && !bop_weights(c) && !weights_drawn(ws, l, p->step))
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

/* ---- the update folded into the backward pass ---- */

int fmi_update_fused(const fm_model *m, const fm_workspace *ws, int l)
{
    return ws->fused_s1 && m->layers[l].kind == FM_LAYER_DENSE && ws->train_product[l]->rows;
}

/* Rows of dense layer l in one tile: a tile's bytes, at least one row. */
static int tile_rows(const fm_layer *L)
{
    return FM_MAX(1, FM_MIN(L->in, FMI_FUSED_TILE_BYTES / (4 * L->out)));
}

/* Rows a BLAS forms at once for the fused update: many small products cost
 * a BLAS five times the whole one (paper-mlp), so the default path, which
 * emulates the method with float GEMMs, forms FMI_BLAS_ROWS rows at a time;
 * the ledger counts the method's tiles, as the mulfree kernels run them. */
#define FMI_BLAS_ROWS 256
static int blas_rows(const fm_layer *L) { return FM_MIN(L->in, FM_MAX(tile_rows(L), FMI_BLAS_ROWS)); }

/* Whether the fused update also draws the next step's weights: with
 * fm_config.fuse, for a mode whose weights are drawn from latent ones. */
static int fused_draws(const fm_config *c)
{
    return c->fuse && c->weights != FM_WEIGHTS_FP32 && !bop_weights(c);
}

int fmi_update_fuse(const fm_model *m, fm_workspace *ws, float *s1, float *s2)
{
    const int threads = FM_MAX(1, fmi_threads_available());
    size_t floats = 0, buffer = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        if (L->kind != FM_LAYER_DENSE)
            continue;
        floats = FM_MAX(floats, (size_t)tile_rows(L) * (size_t)L->out);
        buffer = FM_MAX(buffer, FM_MAX((size_t)threads * floats, (size_t)blas_rows(L) * (size_t)L->out));
    }
    if (!(m->config.opt == FM_OPT_BOP || m->config.fuse) || !ws->training || floats == 0)
        return FM_OK;
    fmi_free(ws->fused_tile);
    fmi_free(ws->wq_drawn);
    ws->wq_drawn = NULL;
    if (!(ws->fused_tile = fmi_alloc(buffer, sizeof(float))))
        return FM_ENOMEM;
    if (fused_draws(&m->config) &&
        !(ws->wq_drawn = fmi_alloc((size_t)m->n_layers + 1, sizeof *ws->wq_drawn)))
        return FM_ENOMEM;
    ws->fused_tile_floats = floats;
    ws->fused_threads = threads;
    ws->fused_s1 = s1;
    ws->fused_s2 = s2;
    return FM_OK;
}

#ifdef _OPENMP
#include <omp.h>
static int thread_index(void) { return omp_get_thread_num(); }
static int threads_now(void) { return omp_get_max_threads(); }
#else
static int thread_index(void) { return 0; }
static int threads_now(void) { return 1; }
#endif

/* One tile of dense layer l's weight-gradient rows [i0, i1), formed into
 * `tile` and at once applied: the update of those rows' weights and, where
 * the update draws, their next step's weights. */
static void update_tile(const fm_pass *p, const fm_param_group *G, int l, const float *x,
                        const float *e, int flag, int i0, int i1, float *tile)
{
    const fm_model *m = p->model;
    fm_workspace *ws = p->ws;
    const size_t out = (size_t)m->layers[l].out, at = (size_t)i0 * out, count = (size_t)(i1 - i0) * out;
    ws->train_product[l]->rows(p, l, x, e, flag, i0, i1, tile);
    fmi_update_range(m, ws, G, at, count, tile, ws->fused_s1, ws->fused_s2, (long)p->step + 1);
    if (fused_draws(&m->config))
        draw_weights(m, ws, l, p->step + 1, at, count);
}

/* The update of dense layer l straight from its weight gradient: a tile of
 * rows of dW at a time, formed in the thread's own tile (a first-level
 * cache's worth) and at once folded into those rows' weights and optimizer
 * state, so no dW of the whole layer is ever written or read; with
 * fm_config.fuse the next step's weights are drawn from the tile's fresh
 * latent weights too, so those are read once a step, not twice. The
 * arithmetic, its order and the draws are the unfused step's, whatever the
 * thread count. */
static void fused_update(const fm_pass *p, const fm_cost *backward, int l, const float *x,
                         const float *e)
{
    const fm_model *m = p->model;
    const fm_config *c = &m->config;
    const fm_layer *L = &m->layers[l];
    fm_workspace *ws = p->ws;
    const fm_product_ops *product = ws->train_product[l];
    const int rows = product->rows_own_threads ? blas_rows(L) : tile_rows(L);
    const int tiles = (L->in + rows - 1) / rows;
    const int flag = product->rows_begin(p, backward, l, x, e);
    const fm_param_group *G = fmi_weight_group(m, l);
    if (product->rows_own_threads) {
        /* outside any parallel region, where a BLAS and the step use every thread */
        for (int t = 0; t < tiles; t++)
            update_tile(p, G, l, x, e, flag, t * rows, FM_MIN(L->in, (t + 1) * rows), ws->fused_tile);
    } else {
        const int threads = FM_MIN(ws->fused_threads, threads_now());
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
        for (int t = 0; t < tiles; t++)
            update_tile(p, G, l, x, e, flag, t * rows, FM_MIN(L->in, (t + 1) * rows),
                        ws->fused_tile + (size_t)thread_index() * ws->fused_tile_floats);
    }
    if (fused_draws(c))
        ws->wq_drawn[l] = p->step + 2;
    if (!ws->ledger)
        return;
    /* each tile written by the product and read by the update, once per
     * value; the update's own bytes and operations; the next step's weights
     * drawn from the latent ones as they are updated, so written only */
    const fm_cost update = fmi_pass_cost(p, l, FM_PHASE_UPDATE);
    const uint64_t n = fmi_layer_weight_count(L), tile = 4 * (uint64_t)tile_rows(L) * L->out;
    fmi_cost_bytes(backward, fmi_tensor_of(m, l, "dW.tile").text, tile, 0, 4 * n);
    fmi_cost_bytes(&update, fmi_tensor_of(m, l, "dW.tile").text, tile, 4 * n, 0);
    fmi_update_cost(&update, m, G, n, fm_ledger_layer_name(ws->ledger, l + 1), 0);
    if (fused_draws(c)) {
        fmi_quantize_weights_cost(&update, c->weights, 1, n, c->synapse_levels);
        fmi_bytes_tensor(&update, m, l, "Wq", fmi_layer_weight_bytes(m, l, 1), 1);
    }
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
    /* a fused update changes this layer's weights (and a drawing one its
     * sampled ws->wq): after the input gradient below, which takes them as
     * they were in the forward pass */
    const int fused = fmi_update_fused(m, ws, l);
    if (!fused) {
        product->backward_weights(p, &cost, l, x, e, ws->grad_state + L->offset);
        fmi_bytes_tensor(&cost, m, l, "dW", 4 * (uint64_t)fmi_layer_weight_count(L), 1);
    }
    if (l > 0) { /* no input gradient below the first layer */
        const float *w = quantized && !bop_weights(c) ? ws->wq[l] : m->state + L->offset;
        product->backward_input(p, &cost, l, ws->grad[l + 1], w, ws->grad[l],
                                fmi_weight_class_of(c->weights));
        fmi_bytes_activation(&cost, m, l + 1, 1, B, 0);
        read_weights(&cost, m, l, quantized);
        fmi_bytes_activation(&cost, m, l, 1, B, 1);
    }
    if (fused)
        fused_update(p, &cost, l, x, e);
    if (c->qb)
        fmi_bytes_tensor(&cost, m, l, "Qx", qx_bytes, 0);
    else
        fmi_bytes_activation(&cost, m, l, 0, B, 0);
    fmi_bytes_activation(&cost, m, e_at, 1, B, 0);
}

/* ---- export (dense and conv) ---- */

/* The code of a deterministic synapse value: its magnitude's index and sign. */
static uint32_t synapse_code(const fm_deploy_layer *L, float value)
{
    float a = fabsf(value);
    uint32_t index = 0;
    while ((int)index + 1 < L->levels && L->magnitudes[index] != a)
        index++;
    return (value < 0.0f ? 1u << (L->bits - 1) : 0u) | index;
}

int fmi_export_weights(const fm_model *m, const fm_layer *dl, fm_export_weights how,
                       fm_deploy_layer *L)
{
    const fm_config *c = &m->config;
    const float *w = m->state + dl->offset;
    const int packed = c->weights != FM_WEIGHTS_FP32 &&
                       !(how == FM_EXPORT_MEAN && (c->weights == FM_WEIGHTS_BC ||
                                                   c->weights == FM_WEIGHTS_TC ||
                                                   c->weights == FM_WEIGHTS_SYNAPSE));
    L->in = dl->w_rows;
    L->out = dl->w_cols;
    L->unit = 1.0f;
    if (!packed) {
        L->weights = FM_DW_FP32;
        L->bits = 32;
    } else if (c->weights == FM_WEIGHTS_SYNAPSE && c->synapse_levels > 32) {
        return fmi_error(FM_EUNSUPPORTED, "packed files hold at most 32 synapse levels (model has %d);"
                        " export the real weights instead", c->synapse_levels);
    } else if (c->weights == FM_WEIGHTS_SYNAPSE && c->synapse_levels > 1) {
        L->weights = FM_DW_SYNAPSE;
        L->levels = c->synapse_levels;
        L->bits = (int)fmi_weight_bits(c->weights, c->synapse_levels); /* sign + index */
    } else {
        /* one synapse level with a sign is the binary rule */
        const int binary = c->weights != FM_WEIGHTS_TC && c->weights != FM_WEIGHTS_TC_DET;
        L->weights = binary ? FM_DW_BINARY : FM_DW_TERNARY;
        L->bits = binary ? 1 : 2;
        L->unit = dl->h;
    }
    int rc = fmi_deploy_layer_alloc(L);
    if (rc < 0)
        return rc;
    if (!packed) {
        for (int j = 0; j < L->out; j++)
            for (int i = 0; i < L->in; i++)
                memcpy(L->packed + (size_t)j * L->row_bytes + 4 * (size_t)i,
                       &w[(size_t)i * L->out + j], 4);
        return FM_OK;
    }
    for (int k = 0; k < L->levels; k++)
        L->magnitudes[k] = fmi_synapse_level(dl->h, L->levels, (float)c->synapse_range, k);
    /* The deterministic weights exactly as training evaluates them, then coded. */
    const size_t n = (size_t)L->in * L->out;
    float *q = fmi_alloc(n, sizeof *q);
    if (!q)
        return FM_ENOMEM;
    fmi_quantize_weights_det(c->weights, w, q, n, dl->h, c->synapse_levels, (float)c->synapse_range);
    for (int i = 0; i < L->in; i++)
        for (int j = 0; j < L->out; j++) {
            float v = q[(size_t)i * L->out + j];
            uint32_t code;
            if (L->weights == FM_DW_BINARY)
                code = v > 0.0f;
            else if (L->weights == FM_DW_TERNARY)
                code = v > 0.0f ? 1u : v < 0.0f ? 3u : 0u;
            else
                code = synapse_code(L, v);
            fmi_deploy_set_code(L, j, i, code);
        }
    fmi_free(q);
    return FM_OK;
}

fm_deploy_layer *fmi_export_weighted(fm_export_state *e)
{
    fm_deploy_layer *layers = e->deploy->layers;
    const int k = e->count++;
    e->current = k;
    /* the input is +-1 where the weighted record before (and its pool) ends in
     * a sign; a global average pool's channel means are real */
    int prev = k - 1;
    if (prev >= 0 && layers[prev].type == FM_DL_POOL)
        prev--;
    layers[k].binary_input = prev >= 0 && layers[prev].type != FM_DL_GAP &&
                             layers[prev].act == FM_ACT_SIGN;
    return &layers[k];
}
