/* net.c — passes through the layer list: the training step (sample weights,
 * forward, loss, backward with optional quantized back-prop), the evaluation
 * forward pass, and the authors' recomputation of batch-norm statistics.
 * Each pass declares its work to ws->ledger, when there is one: the layers'
 * operations (from their fm_*_cost functions) and the bytes of every tensor
 * they read and write (docs/ledger.md). */
#include "dist.h"
#include "internal.h"
#include "kernels.h"
#include "layers.h"
#include "ledger.h"
#include "loss.h"
#include "mulfree.h"
#include "net.h"
#include "quant.h"
#include "rng.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <string.h>

/* Stream purposes for counter-based draws. */
enum { STREAM_WEIGHTS = 1, STREAM_QB = 2, STREAM_DROPOUT = 3 };

static int is_stochastic(fm_weight_mode mode)
{
    return mode == FM_WEIGHTS_BC || mode == FM_WEIGHTS_TC || mode == FM_WEIGHTS_SYNAPSE;
}

/* Threads a mulfree product may use: the run's count, within the scratch. */
static int mulfree_threads(const fm_workspace *ws)
{
#ifdef _OPENMP
    return FM_MAX(1, FM_MIN(omp_get_max_threads(), ws->mf_threads));
#else
    return 1;
#endif
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
    uint64_t key = fm_rng_key(c->seed, STREAM_WEIGHTS, (uint64_t)L->weight_index, step);
    fm_quantize_weights(c->weights, w, ws->wq[l], fm_layer_weight_count(L), L->h,
                        c->synapse_levels, (float)c->synapse_range, key);
    return ws->wq[l];
}

/* Evaluation uses the real W for fp32 and, as the paper, for stochastic modes;
 * deterministic modes (or test_quantized) use the deterministic quantization. */
static int eval_uses_real(const fm_config *c)
{
    return c->weights == FM_WEIGHTS_FP32 || (is_stochastic(c->weights) && !c->test_quantized);
}

static void quantize_cost(const fm_cost *c, const fm_model *m, int l, int stochastic);
static void refill_layouts(const fm_cost *c, const fm_model *m, fm_workspace *ws, int l,
                           int with_transpose);

void fm_eval_weights(const fm_model *m, fm_workspace *ws)
{
    const fm_config *c = &m->config;
    if (eval_uses_real(c))
        return;
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        if (fm_layer_weighted(L)) {
            fm_quantize_weights_det(c->weights, m->state + L->offset, ws->wq[l],
                                    fm_layer_weight_count(L), L->h, c->synapse_levels,
                                    (float)c->synapse_range);
            const fm_cost cost = {ws->ledger, l + 1, FM_PHASE_EVAL};
            quantize_cost(&cost, m, l, 0);
            if (ws->kernels)
                refill_layouts(&cost, m, ws, l, 0);
        }
    }
}

static const float *eval_weights_of(const fm_model *m, const fm_workspace *ws, int l)
{
    return eval_uses_real(&m->config) ? m->state + m->layers[l].offset : ws->wq[l];
}

/* ---- ledger bookkeeping ---- */

/* "dense2", "bn2", "relu1", "conv3": kind and 1-based count of that kind. */
static void layer_name(const fm_model *m, int l, char *name, size_t size)
{
    static const char *const kinds[] = {"dense", "bn", "relu", "dropout", "sign", "conv", "pool"};
    int k = 1;
    for (int i = 0; i < l; i++)
        k += m->layers[i].kind == m->layers[l].kind;
    snprintf(name, size, "%s%d", kinds[m->layers[l].kind], k);
}

void fm_ledger_declare_layers(const fm_model *m, fm_ledger *ledger)
{
    if (!ledger)
        return;
    char name[32], shape[48];
    snprintf(shape, sizeof shape, "%d", m->input_dim);
    fm_ledger_layer(ledger, 0, "input", shape);
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        layer_name(m, l, name, sizeof name);
        if (L->kind == FM_LAYER_DENSE)
            snprintf(shape, sizeof shape, "%dx%d", L->in, L->out);
        else if (L->kind == FM_LAYER_CONV)
            snprintf(shape, sizeof shape, "%dx%dx%d>%dk%d>%dx%dx%d", L->conv.in_h, L->conv.in_w,
                     L->conv.in_c, L->conv.out_c, L->conv.k_h, L->conv.out_h, L->conv.out_w,
                     L->conv.out_c);
        else if (L->kind == FM_LAYER_POOL)
            snprintf(shape, sizeof shape, "%dx%dx%d>%dx%dx%d", L->pool.in_h, L->pool.in_w,
                     L->pool.c, L->pool.out_h, L->pool.out_w, L->pool.c);
        else
            snprintf(shape, sizeof shape, "%d", L->out);
        fm_ledger_layer(ledger, l + 1, name, shape);
    }
    snprintf(shape, sizeof shape, "%d", m->classes);
    fm_ledger_layer(ledger, fm_ledger_loss_index(m), "loss", shape);
}

/* Tensor names: "<layer>.<what>"; activation l is "input.x" or "<layer l-1>.y",
 * its gradient "<layer l-1>.dy". */
typedef struct tensor_name {
    char text[48];
} tensor_name;

static tensor_name tensor_of(const fm_model *m, int l, const char *what)
{
    tensor_name t;
    char name[32];
    layer_name(m, l, name, sizeof name);
    snprintf(t.text, sizeof t.text, "%s.%s", name, what);
    return t;
}

static tensor_name activation(const fm_model *m, int l, int gradient)
{
    if (l == 0) {
        tensor_name t = {"input.x"};
        return t;
    }
    return tensor_of(m, l - 1, gradient ? "dy" : "y");
}

static fm_cost cost_at(const fm_workspace *ws, int ledger_layer, fm_phase phase)
{
    return (fm_cost){ws->ledger, ledger_layer, phase};
}

/* Reads of the B x dim activation l (or its gradient). */
static void read_activation(const fm_cost *c, const fm_model *m, int l, int gradient, int B)
{
    if (!c->ledger)
        return;
    int dim = l == 0 ? m->input_dim : m->layers[l - 1].out;
    uint64_t bytes = 4 * (uint64_t)B * dim;
    fm_cost_bytes(c, activation(m, l, gradient).text, bytes, bytes, 0);
}

static void write_activation(const fm_cost *c, const fm_model *m, int l, int gradient, int B)
{
    if (!c->ledger)
        return;
    int dim = l == 0 ? m->input_dim : m->layers[l - 1].out;
    uint64_t bytes = 4 * (uint64_t)B * dim;
    fm_cost_bytes(c, activation(m, l, gradient).text, bytes, 0, bytes);
}

/* A whole tensor read (written = 0) or written once. */
static void move_tensor(const fm_cost *c, const fm_model *m, int l, const char *what,
                        uint64_t bytes, int written)
{
    if (!c->ledger)
        return;
    fm_cost_bytes(c, tensor_of(m, l, what).text, bytes, written ? 0 : bytes, written ? bytes : 0);
}

/* Bytes of weighted layer l's weights as a pass reads them: latent fp32 W, or
 * the quantized weights packed at the mode's bits per weight. */
static uint64_t weight_bytes(const fm_model *m, int l, int quantized)
{
    uint64_t n = fm_layer_weight_count(&m->layers[l]);
    return quantized ? fm_packed_bytes(n, fm_weight_bits(m->config.weights, m->config.synapse_levels))
                     : 4 * n;
}

static void read_weights(const fm_cost *c, const fm_model *m, int l, int quantized)
{
    move_tensor(c, m, l, quantized ? "Wq" : "W", weight_bytes(m, l, quantized), 0);
}

/* Declares a weight quantization of weighted layer l: W read, Wq written. */
static void quantize_cost(const fm_cost *c, const fm_model *m, int l, int stochastic)
{
    const fm_layer *L = &m->layers[l];
    fm_quantize_weights_cost(c, m->config.weights, stochastic, fm_layer_weight_count(L),
                             m->config.synapse_levels);
    read_weights(c, m, l, 0);
    move_tensor(c, m, l, "Wq", weight_bytes(m, l, 1), 1);
}

/* Refills dense layer l's mulfree layouts from the pass's float weights in
 * ws->wq: the forward one and, with_transpose, the transposed one of the
 * input gradient (training workspaces, layers after the first). Each refill
 * is declared: the weights read as floats, the codes written. An error (a
 * synapse weight off the level table, which the quantizer never gives) is
 * kept in ws->status for the caller of the pass. */
static void refill_layouts(const fm_cost *c, const fm_model *m, fm_workspace *ws, int l,
                           int with_transpose)
{
    const fm_layer *L = &m->layers[l];
    fm_kernel_weights *layouts[2] = {ws->mf_forward[l], with_transpose ? ws->mf_backward[l] : NULL};
    const size_t strides[2][2] = {{(size_t)L->out, 1}, {1, (size_t)L->out}};
    for (int t = 0; t < 2 && layouts[t]; t++) {
        int rc = fm_kernel_fill(layouts[t], ws->wq[l], strides[t][0], strides[t][1]);
        if (rc < 0 && ws->status == FM_OK)
            ws->status = rc;
        fm_mulfree_cost_fill(c, fm_mulfree_kind(m->config.weights), m->config.synapse_levels,
                             L->in, L->out);
        move_tensor(c, m, l, "Wq.float", 4 * (uint64_t)L->in * L->out, 0);
        move_tensor(c, m, l, "Wq", weight_bytes(m, l, 1), 1);
    }
}

/* The product of a pass runs on the mulfree kernels: the workspace has them
 * and the pass's weights are quantized (not the real W of an evaluation). */
static int runs_mulfree(const fm_workspace *ws, int quantized)
{
    return ws->kernels != NULL && quantized;
}

/* How a conv layer's products run: GEMM, or the reference kernels in the
 * method's arithmetic (weights of class wclass). */
static fm_product conv_product(const fm_workspace *ws, const fm_layer *L, int wclass)
{
    return (fm_product){ws->reference, wclass, L->h};
}

/* im2col columns of conv layer l for B examples: written and read once per
 * product. They pass through a buffer of one chunk of examples (conv.h),
 * which is the tensor's footprint in the memory model. A layer whose columns
 * are its input itself (a 1x1 kernel, or one covering the whole map) needs no
 * buffer and moves no columns. */
static void conv_columns_bytes(const fm_cost *c, const fm_model *m, int l, int B)
{
    const fm_layer *L = &m->layers[l];
    const size_t buffer = fm_conv_scratch_floats(&L->conv, B);
    if (!c->ledger || buffer == 0)
        return;
    uint64_t bytes = 4 * (uint64_t)B * fm_conv_positions(&L->conv) * L->w_rows;
    uint64_t footprint = FM_MIN(bytes, 4 * (uint64_t)buffer);
    fm_cost_bytes(c, tensor_of(m, l, "cols").text, footprint, bytes, bytes);
}

/* y = x · w (dense) or conv(x, w) through BLAS, the reference kernels in the
 * method's arithmetic, or (dense, quantized: w is in the mulfree layout too)
 * the mulfree kernels. */
static void weighted_forward(const fm_model *m, fm_workspace *ws, int l, const float *w,
                             int wclass, int quantized, int B)
{
    const fm_layer *L = &m->layers[l];
    if (L->kind == FM_LAYER_CONV) {
        const fm_product p = conv_product(ws, L, wclass);
        fm_conv_forward(&L->conv, &p, ws->act[l], w, ws->act[l + 1], B, ws->conv_scratch);
    } else if (runs_mulfree(ws, quantized)) {
        fm_mulfree_product(ws->kernels, ws->mf_forward[l], ws->act[l], ws->act[l + 1], B, L->h,
                           ws->mf_scratch, ws->mf_slice, mulfree_threads(ws));
    } else if (ws->reference) {
        fm_ref_dense_forward((fm_weight_class)wclass, ws->act[l], w, L->h, ws->act[l + 1], B,
                             L->in, L->out);
    } else {
        fm_dense_forward(ws->act[l], w, ws->act[l + 1], B, L->in, L->out);
    }
}

/* Declares a forward product with weights of class wclass. */
static void weighted_forward_cost(const fm_cost *c, const fm_model *m, const fm_workspace *ws,
                                  int l, int wclass, int quantized, int B)
{
    const fm_layer *L = &m->layers[l];
    if (L->kind == FM_LAYER_CONV) {
        fm_conv_cost_forward(c, &L->conv, wclass, B);
        conv_columns_bytes(c, m, l, B);
    } else if (runs_mulfree(ws, quantized)) {
        fm_mulfree_cost_product(c, fm_mulfree_kind(m->config.weights), m->config.synapse_levels, B,
                                L->in, L->out);
    } else {
        fm_dense_cost_forward(c, wclass, B, L->in, L->out);
    }
    read_activation(c, m, l, 0, B);
    read_weights(c, m, l, quantized);
    write_activation(c, m, l + 1, 0, B);
}

/* Max-pool forward of layer l (argmax: NULL at evaluation), declared. */
static void pool_forward(const fm_cost *c, const fm_model *m, fm_workspace *ws, int l, int B,
                         int32_t *argmax)
{
    const fm_layer *L = &m->layers[l];
    fm_maxpool_forward(&L->pool, ws->act[l], ws->act[l + 1], argmax, B);
    fm_maxpool_cost_forward(c, &L->pool, B);
    read_activation(c, m, l, 0, B);
    write_activation(c, m, l + 1, 0, B);
    if (argmax)
        move_tensor(c, m, l, "argmax", 4 * (uint64_t)B * L->out, 1);
}

/* Rows batch norm normalises over: B examples times the positions of a map. */
static int bn_rows(const fm_layer *L, int B) { return B * (L->out / L->channels); }

/* Declares an element-wise layer (ReLU, dropout, identity copy). */
static void elementwise_bytes(const fm_cost *c, const fm_model *m, int l, int B, int backward)
{
    if (backward) {
        read_activation(c, m, l + 1, 1, B);
        write_activation(c, m, l, 1, B);
    } else {
        read_activation(c, m, l, 0, B);
        write_activation(c, m, l + 1, 0, B);
    }
}

/* ReLU forward of layer l (training or evaluation), declared. */
static void relu_forward(const fm_cost *c, const fm_model *m, fm_workspace *ws, int l, int B)
{
    const uint64_t n = (uint64_t)B * m->layers[l].out;
    fm_relu_forward(ws->act[l], ws->act[l + 1], (size_t)n);
    fm_relu_cost(c, n);
    elementwise_bytes(c, m, l, B, 0);
}

/* Sign forward of layer l (training or evaluation), declared. */
static void sign_forward(const fm_cost *c, const fm_model *m, fm_workspace *ws, int l, int B)
{
    const uint64_t n = (uint64_t)B * m->layers[l].out;
    fm_sign_forward(ws->act[l], ws->act[l + 1], (size_t)n);
    fm_sign_cost_forward(c, n);
    elementwise_bytes(c, m, l, B, 0);
}

/* Batch-norm state tensors: gamma and beta ("params"), inference mean and
 * variance ("stats"), the batch mean and 1/std of the last pass ("batch"). */
static void bn_bytes(const fm_cost *c, const fm_model *m, int l, const char *what, int written)
{
    move_tensor(c, m, l, what, 8 * (uint64_t)m->layers[l].channels, written);
}

/* Batch norm over a global minibatch spread over ranks: the partial sums of
 * this rank's rows are summed over the ranks before each use, and divided by
 * the whole minibatch's rows. A failed collective is kept in ws->status (the
 * rank's other collectives of the step are skipped: the communicator is gone). */
static int shared_batch(const fm_workspace *ws) { return ws->dist && ws->status != FM_EPEER; }

static void shared_sum(const fm_cost *cost, fm_workspace *ws, float *x, size_t n)
{
    if (!shared_batch(ws))
        return;
    char name[64] = "sums";
    if (cost->ledger)
        snprintf(name, sizeof name, "%s.sums", fm_ledger_layer_name(cost->ledger, cost->layer));
    int rc = fm_dist_allreduce(ws->dist, cost, name, x, n);
    if (rc < 0)
        ws->status = rc;
}

static void bn_forward_shared(const fm_cost *cost, fm_workspace *ws, const fm_layer *L, int l,
                              const float *x, float *y, const float *p, int B, float eps)
{
    const int C = L->channels, rows = bn_rows(L, B), total = bn_rows(L, ws->rows_total);
    float *mean = ws->bn_mean[l], *invstd = ws->bn_invstd[l];
    const float inv_b = 1.0f / (float)total;
    fm_bn_sums(x, rows, C, mean);
    shared_sum(cost, ws, mean, (size_t)C);
    for (int j = 0; j < C; j++)
        mean[j] *= inv_b;
    fm_bn_centred_squares(x, rows, C, mean, invstd);
    shared_sum(cost, ws, invstd, (size_t)C);
    for (int j = 0; j < C; j++)
        invstd[j] = 1.0f / sqrtf(invstd[j] * inv_b + eps);
    FM_TALLY(FM_OP_FMUL, 2 * (uint64_t)C);
    FM_TALLY(FM_OP_FADD, (uint64_t)C);
    FM_TALLY(FM_OP_FSPECIAL, 2 * (uint64_t)C);
    fm_bn_normalize(x, y, rows, C, p, p + L->channels, mean, invstd);
}

static void bn_backward_shared(const fm_cost *cost, fm_workspace *ws, const fm_layer *L, int l,
                               const float *x, const float *dy, float *dx, float *g,
                               const float *p, int B)
{
    const int C = L->channels, rows = bn_rows(L, B);
    /* g keeps this rank's own sums: the gradient exchange adds them up */
    fm_bn_backward_sums(x, dy, rows, C, ws->bn_mean[l], ws->bn_invstd[l], g, g + C);
    if (!dx)
        return;
    float *total = ws->dist->scratch;
    memcpy(total, g, 2 * (size_t)C * sizeof *total);
    shared_sum(cost, ws, total, 2 * (size_t)C);
    fm_bn_backward_input(x, dy, dx, rows, bn_rows(L, ws->rows_total), C, p, ws->bn_mean[l],
                         ws->bn_invstd[l], total, total + C);
}

double fm_train_step(fm_model *m, fm_workspace *ws, const uint8_t *labels, int B, uint64_t step,
                     int *errors)
{
    const fm_config *c = &m->config;
    const float eps = (float)c->bn_eps;
    const int quantized = c->weights != FM_WEIGHTS_FP32;
    int unused_errors;
    if (!errors) /* the loss counts errors either way, as its ledger entry says */
        errors = &unused_errors;
    const int wclass = fm_weight_class_of(c->weights);
    fm_ledger_declare_layers(m, ws->ledger);

    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        const float *x = ws->act[l];
        float *y = ws->act[l + 1];
        float *p = m->state + L->offset;
        const fm_cost cost = cost_at(ws, l + 1, FM_PHASE_FORWARD);
        const uint64_t n = (uint64_t)B * L->out;
        switch (L->kind) {
        case FM_LAYER_DENSE:
        case FM_LAYER_CONV: {
            if (quantized)
                quantize_cost(&cost, m, l, 1);
            const float *wq = training_weights(m, ws, l, step);
            if (ws->kernels)
                refill_layouts(&cost, m, ws, l, 1);
            weighted_forward(m, ws, l, wq, wclass, quantized, B);
            weighted_forward_cost(&cost, m, ws, l, wclass, quantized, B);
            break;
        }
        case FM_LAYER_POOL:
            pool_forward(&cost, m, ws, l, B, ws->argmax[l]);
            break;
        case FM_LAYER_BN: {
            const int C = L->channels;
            if (ws->dist)
                bn_forward_shared(&cost, ws, L, l, x, y, p, B, eps);
            else
                fm_bn_forward_train(x, y, bn_rows(L, B), C, p, p + C, eps, ws->bn_mean[l],
                                    ws->bn_invstd[l]);
            fm_bn_cost_forward_train(&cost, bn_rows(L, B), C);
            elementwise_bytes(&cost, m, l, B, 0);
            bn_bytes(&cost, m, l, "params", 0);
            bn_bytes(&cost, m, l, "batch", 1);
            if (c->bn_stats == FM_BN_RUNNING) {
                float a = (float)c->bn_momentum;
                float *mean = p + 2 * C, *var = p + 3 * C;
                for (int j = 0; j < C; j++) {
                    float inv = ws->bn_invstd[l][j];
                    float batch_var = 1.0f / (inv * inv) - eps;
                    mean[j] += a * (ws->bn_mean[l][j] - mean[j]);
                    var[j] += a * (batch_var - var[j]);
                }
                /* per feature: inv*inv, 1/., - eps; two differences and two multiply-adds */
                FM_TALLY(FM_OP_FMUL, C);
                FM_TALLY(FM_OP_FSPECIAL, C);
                FM_TALLY(FM_OP_FADD, 3 * (uint64_t)C);
                FM_TALLY(FM_OP_FMA, 2 * (uint64_t)C);
                fm_cost_ops(&cost, FM_OP_FMUL, (uint64_t)C);
                fm_cost_ops(&cost, FM_OP_FSPECIAL, (uint64_t)C);
                fm_cost_ops(&cost, FM_OP_FADD, 3 * (uint64_t)C);
                fm_cost_ops(&cost, FM_OP_FMA, 2 * (uint64_t)C);
                bn_bytes(&cost, m, l, "stats", 0);
                bn_bytes(&cost, m, l, "stats", 1);
            }
            break;
        }
        case FM_LAYER_RELU:
            relu_forward(&cost, m, ws, l, B);
            break;
        case FM_LAYER_SIGN:
            sign_forward(&cost, m, ws, l, B);
            break;
        case FM_LAYER_DROPOUT:
            fm_dropout_forward(x, y, ws->mask[l], (size_t)n, (float)c->dropout,
                               fm_rng_key(c->seed, STREAM_DROPOUT, (uint64_t)l, step),
                               (uint64_t)ws->row0 * L->out);
            fm_dropout_cost_forward(&cost, n);
            elementwise_bytes(&cost, m, l, B, 0);
            move_tensor(&cost, m, l, "mask", fm_packed_bytes(n, 1), 1);
            break;
        }
    }

    const float *out = ws->act[m->n_layers];
    float *dout = ws->grad[m->n_layers];
    /* a rank's share of a global minibatch divides by the whole minibatch */
    const int norm = ws->rows_total > 0 ? ws->rows_total : B;
    double loss = c->loss == FM_LOSS_XENT
                      ? fm_loss_xent_part(out, labels, B, norm, m->classes, dout, errors)
                      : fm_loss_hinge_part(out, labels, B, norm, m->classes, dout, errors);
    {
        const int loss_layer = fm_ledger_loss_index(m);
        const fm_cost fwd = cost_at(ws, loss_layer, FM_PHASE_FORWARD);
        const fm_cost bwd = cost_at(ws, loss_layer, FM_PHASE_BACKWARD);
        if (c->loss == FM_LOSS_XENT)
            fm_loss_xent_cost(&fwd, &bwd, B, m->classes);
        else
            fm_loss_hinge_cost(&fwd, &bwd, B, m->classes);
        read_activation(&fwd, m, m->n_layers, 0, B);
        fm_cost_bytes(&fwd, "labels", (uint64_t)B, (uint64_t)B, 0);
        write_activation(&bwd, m, m->n_layers, 1, B);
    }

    for (int l = m->n_layers - 1; l >= 0; l--) {
        const fm_layer *L = &m->layers[l];
        const float *x = ws->act[l], *dy = ws->grad[l + 1];
        float *dx = l > 0 ? ws->grad[l] : NULL;
        float *g = ws->grad_state + L->offset;
        const float *p = m->state + L->offset;
        const fm_cost cost = cost_at(ws, l + 1, FM_PHASE_BACKWARD);
        const uint64_t n = (uint64_t)B * L->out;
        switch (L->kind) {
        case FM_LAYER_DENSE:
        case FM_LAYER_CONV: {
            const int conv = L->kind == FM_LAYER_CONV;
            /* With quantized back-prop the authors' code takes the error at the
             * batch norm's output (skipping its Jacobian) for the weight
             * gradient of a dense layer; qb_bn_jacobian uses the exact one.
             * Their conv layers take the exact error at the convolution's
             * output, before pooling and batch norm. */
            int e_at = l + 1;
            if (!conv && c->qb && !c->qb_bn_jacobian && l + 1 < m->n_layers &&
                m->layers[l + 1].kind == FM_LAYER_BN)
                e_at = l + 2;
            const float *e = ws->grad[e_at];
            const float *xin = x;
            const int emin = conv ? c->qb_conv_emin : c->qb_emin;
            const int emax = conv ? c->qb_conv_emax : c->qb_emax;
            const uint64_t xn = (uint64_t)B * L->in;
            const uint64_t qx_bytes = fm_packed_bytes(xn, fm_pow2_bits(emin, emax));
            if (c->qb) {
                fm_pow2_quantize(x, ws->qx, (size_t)xn, emin, emax,
                                 fm_rng_key(c->seed, STREAM_QB, (uint64_t)L->weight_index, step),
                                 (uint64_t)ws->row0 * L->in);
                xin = ws->qx;
                fm_pow2_quantize_cost(&cost, xn);
                read_activation(&cost, m, l, 0, B);
                move_tensor(&cost, m, l, "Qx", qx_bytes, 1);
            }
            const fm_product prod = conv_product(ws, L, wclass);
            if (conv) {
                fm_conv_backward_weights(&L->conv, &prod, c->qb, xin, e, g, B, ws->conv_scratch);
                fm_conv_cost_backward_weights(&cost, &L->conv, c->qb, B);
                conv_columns_bytes(&cost, m, l, B);
            } else if (ws->kernels) { /* with quantized back-prop, as fm_config_check ensures */
                if (!fm_mulfree_pow2_grad(ws->kernels, xin, e, g, B, L->in, L->out,
                                          mulfree_threads(ws)))
                    ws->mf_fallbacks++;
                fm_mulfree_cost_pow2_grad(&cost, B, L->in, L->out);
            } else {
                if (ws->reference)
                    fm_ref_dense_backward_weights(c->qb, xin, e, g, B, L->in, L->out);
                else
                    fm_dense_backward_weights(xin, e, g, B, L->in, L->out);
                fm_dense_cost_backward_weights(&cost, c->qb, B, L->in, L->out);
            }
            if (c->qb)
                move_tensor(&cost, m, l, "Qx", qx_bytes, 0);
            else
                read_activation(&cost, m, l, 0, B);
            read_activation(&cost, m, e_at, 1, B);
            move_tensor(&cost, m, l, "dW", 4 * (uint64_t)fm_layer_weight_count(L), 1);
            if (dx) {
                const float *w = quantized ? ws->wq[l] : p;
                if (conv) {
                    fm_conv_backward_input(&L->conv, &prod, dy, w, dx, B, ws->conv_scratch);
                    fm_conv_cost_backward_input(&cost, &L->conv, wclass, B);
                    conv_columns_bytes(&cost, m, l, B);
                } else if (ws->kernels) {
                    fm_mulfree_product(ws->kernels, ws->mf_backward[l], dy, dx, B, L->h,
                                       ws->mf_scratch, ws->mf_slice, mulfree_threads(ws));
                    fm_mulfree_cost_product(&cost, fm_mulfree_kind(c->weights), c->synapse_levels,
                                            B, L->out, L->in);
                } else {
                    if (ws->reference)
                        fm_ref_dense_backward_input((fm_weight_class)wclass, dy, w, L->h, dx, B,
                                                    L->in, L->out);
                    else
                        fm_dense_backward_input(dy, w, dx, B, L->in, L->out);
                    fm_dense_cost_backward_input(&cost, wclass, B, L->in, L->out);
                }
                read_activation(&cost, m, l + 1, 1, B);
                read_weights(&cost, m, l, quantized);
                write_activation(&cost, m, l, 1, B);
            }
            break;
        }
        case FM_LAYER_POOL:
            if (dx) {
                fm_maxpool_backward(&L->pool, dy, ws->argmax[l], dx, B);
                fm_maxpool_cost_backward(&cost, &L->pool, B);
                move_tensor(&cost, m, l, "argmax", 4 * (uint64_t)B * L->out, 0);
                elementwise_bytes(&cost, m, l, B, 1);
            }
            break;
        case FM_LAYER_BN:
            if (ws->dist)
                bn_backward_shared(&cost, ws, L, l, x, dy, dx, g, p, B);
            else
                fm_bn_backward(x, dy, dx, bn_rows(L, B), L->channels, p, ws->bn_mean[l],
                               ws->bn_invstd[l], g, g + L->channels);
            fm_bn_cost_backward(&cost, bn_rows(L, B), L->channels, dx != NULL);
            read_activation(&cost, m, l, 0, B);
            read_activation(&cost, m, l + 1, 1, B);
            bn_bytes(&cost, m, l, "params", 0);
            bn_bytes(&cost, m, l, "batch", 0);
            bn_bytes(&cost, m, l, "dparams", 1);
            if (dx)
                write_activation(&cost, m, l, 1, B);
            break;
        case FM_LAYER_RELU:
            if (dx) {
                fm_relu_backward(ws->act[l + 1], dy, dx, (size_t)n);
                fm_relu_cost(&cost, n);
                read_activation(&cost, m, l + 1, 0, B);
                elementwise_bytes(&cost, m, l, B, 1);
            }
            break;
        case FM_LAYER_SIGN:
            if (dx) {
                fm_sign_backward(x, dy, dx, (size_t)n);
                fm_sign_cost_backward(&cost, n);
                read_activation(&cost, m, l, 0, B);
                elementwise_bytes(&cost, m, l, B, 1);
            }
            break;
        case FM_LAYER_DROPOUT:
            if (dx) {
                fm_dropout_backward(dy, dx, ws->mask[l], (size_t)n, (float)c->dropout);
                fm_dropout_cost_backward(&cost, n);
                move_tensor(&cost, m, l, "mask", fm_packed_bytes(n, 1), 0);
                elementwise_bytes(&cost, m, l, B, 1);
            }
            break;
        }
    }
    fm_ledger_pass(ws->ledger, FM_PHASE_FORWARD, (uint64_t)B);
    fm_ledger_pass(ws->ledger, FM_PHASE_BACKWARD, (uint64_t)B);
    return loss;
}

/* One layer of the evaluation pass, except batch norm's statistics (the caller's). */
static void eval_layer(const fm_model *m, fm_workspace *ws, int l, int B)
{
    const fm_layer *L = &m->layers[l];
    const float *x = ws->act[l];
    float *y = ws->act[l + 1];
    const float *p = m->state + L->offset;
    const fm_cost cost = cost_at(ws, l + 1, FM_PHASE_EVAL);
    const uint64_t n = (uint64_t)B * L->out;
    const int real = eval_uses_real(&m->config);
    switch (L->kind) {
    case FM_LAYER_DENSE:
    case FM_LAYER_CONV: {
        int wclass = real ? FM_WCLASS_REAL : fm_weight_class_of(m->config.weights);
        weighted_forward(m, ws, l, eval_weights_of(m, ws, l), wclass, !real, B);
        weighted_forward_cost(&cost, m, ws, l, wclass, !real, B);
        break;
    }
    case FM_LAYER_POOL:
        pool_forward(&cost, m, ws, l, B, NULL);
        break;
    case FM_LAYER_BN: {
        const int C = L->channels;
        fm_bn_forward_infer(x, y, bn_rows(L, B), C, p, p + C, (float)m->config.bn_eps, p + 2 * C,
                            p + 3 * C);
        fm_bn_cost_forward_infer(&cost, bn_rows(L, B), C);
        elementwise_bytes(&cost, m, l, B, 0);
        bn_bytes(&cost, m, l, "params", 0);
        bn_bytes(&cost, m, l, "stats", 0);
        break;
    }
    case FM_LAYER_RELU:
        relu_forward(&cost, m, ws, l, B);
        break;
    case FM_LAYER_SIGN:
        sign_forward(&cost, m, ws, l, B);
        break;
    case FM_LAYER_DROPOUT: /* inverted dropout: identity at inference */
        memcpy(y, x, (size_t)n * sizeof *y);
        elementwise_bytes(&cost, m, l, B, 0);
        break;
    }
}

const float *fm_forward_eval(const fm_model *m, fm_workspace *ws, int B, int refresh)
{
    fm_ledger_declare_layers(m, ws->ledger);
    if (refresh)
        fm_eval_weights(m, ws);
    for (int l = 0; l < m->n_layers; l++)
        eval_layer(m, ws, l, B);
    fm_ledger_pass(ws->ledger, FM_PHASE_EVAL, (uint64_t)B);
    return ws->act[m->n_layers];
}

void fm_eval_errors_cost(const fm_model *m, fm_workspace *ws, int batch)
{
    const fm_cost cost = cost_at(ws, fm_ledger_loss_index(m), FM_PHASE_EVAL);
    fm_count_errors_cost(&cost, batch, m->classes);
    read_activation(&cost, m, m->n_layers, 0, batch);
    fm_cost_bytes(&cost, "labels", (uint64_t)batch, (uint64_t)batch, 0);
}

int fm_bn_recompute(fm_model *m, fm_workspace *ws, const fm_images *sets[], const int *firsts,
                    const int *counts, int n_sets, int batch)
{
    size_t total = 0;
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].kind == FM_LAYER_BN)
            total += (size_t)m->layers[l].channels;
    /* sums of per-batch means and variances, then per-batch scratch */
    float *acc = fm_alloc(total * 4, sizeof *acc);
    if (!acc)
        return FM_ENOMEM;
    batch = FM_MIN(batch, ws->max_batch);
    fm_ledger_declare_layers(m, ws->ledger);
    fm_eval_weights(m, ws);
    long seen = 0;
    for (int s = 0; s < n_sets; s++) {
        for (int b0 = 0; b0 < counts[s]; b0 += batch) {
            int B = FM_MIN(batch, counts[s] - b0);
            fm_load_batch(m, ws, sets[s], NULL, firsts[s] + b0, B);
            fm_load_batch_cost(m, ws, FM_PHASE_EVAL, B, sets[s]->count);
            seen++;
            size_t at = 0;
            for (int l = 0; l < m->n_layers; l++) {
                const fm_layer *L = &m->layers[l];
                if (L->kind == FM_LAYER_BN) {
                    const int C = L->channels;
                    float *p = m->state + L->offset;
                    float *sum_mean = acc + at, *sum_var = acc + at + total;
                    float *bm = acc + at + 2 * total, *bv = acc + at + 3 * total;
                    fm_bn_batch_stats(ws->act[l], bn_rows(L, B), C, bm, bv);
                    /* this batch joins the average before it is normalised, so
                     * the first batch uses its own statistics (the authors'
                     * can_fit) and later ones the running average */
                    for (int j = 0; j < C; j++) {
                        sum_mean[j] += bm[j];
                        sum_var[j] += bv[j];
                        p[2 * C + j] = sum_mean[j] / (float)seen;
                        p[3 * C + j] = sum_var[j] / (float)seen;
                    }
                    FM_TALLY(FM_OP_FADD, 2 * (uint64_t)C);
                    FM_TALLY(FM_OP_FSPECIAL, 2 * (uint64_t)C);
                    const fm_cost cost = cost_at(ws, l + 1, FM_PHASE_EVAL);
                    fm_bn_cost_batch_stats(&cost, bn_rows(L, B), C);
                    fm_cost_ops(&cost, FM_OP_FADD, 2 * (uint64_t)C);     /* the sums */
                    fm_cost_ops(&cost, FM_OP_FSPECIAL, 2 * (uint64_t)C); /* / seen */
                    read_activation(&cost, m, l, 0, B);
                    bn_bytes(&cost, m, l, "sums", 0);
                    bn_bytes(&cost, m, l, "sums", 1);
                    bn_bytes(&cost, m, l, "stats", 1);
                    at += (size_t)C;
                }
                eval_layer(m, ws, l, B);
            }
            fm_ledger_pass(ws->ledger, FM_PHASE_EVAL, (uint64_t)B);
        }
    }
    fm_free(acc);
    return ws->status < 0 ? ws->status : FM_OK;
}
