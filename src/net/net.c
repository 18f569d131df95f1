/* net.c — passes through the layer list: the training step (sample weights,
 * forward, loss, backward with optional quantized back-prop), the evaluation
 * forward pass, and the authors' recomputation of batch-norm statistics. */
#include "internal.h"
#include "layers.h"
#include "loss.h"
#include "net.h"
#include "quant.h"
#include "rng.h"

#include <math.h>
#include <string.h>

/* Stream purposes for counter-based draws. */
enum { STREAM_WEIGHTS = 1, STREAM_QB = 2, STREAM_DROPOUT = 3 };

static int is_stochastic(fm_weight_mode mode)
{
    return mode == FM_WEIGHTS_BC || mode == FM_WEIGHTS_TC || mode == FM_WEIGHTS_SYNAPSE;
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
    uint64_t key = fm_rng_key(c->seed, STREAM_WEIGHTS, (uint64_t)L->dense_index, step);
    fm_quantize_weights(c->weights, w, ws->wq[l], (size_t)L->in * L->out, L->h,
                        c->synapse_levels, (float)c->synapse_range, key);
    return ws->wq[l];
}

/* Evaluation uses the real W for fp32 and, as the paper, for stochastic modes;
 * deterministic modes (or test_quantized) use the deterministic quantization. */
static int eval_uses_real(const fm_config *c)
{
    return c->weights == FM_WEIGHTS_FP32 || (is_stochastic(c->weights) && !c->test_quantized);
}

void fm_eval_weights(const fm_model *m, fm_workspace *ws)
{
    const fm_config *c = &m->config;
    if (eval_uses_real(c))
        return;
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        if (L->kind == FM_LAYER_DENSE)
            fm_quantize_weights_det(c->weights, m->state + L->offset, ws->wq[l],
                                    (size_t)L->in * L->out, L->h, c->synapse_levels,
                                    (float)c->synapse_range);
    }
}

static const float *eval_weights_of(const fm_model *m, const fm_workspace *ws, int l)
{
    return eval_uses_real(&m->config) ? m->state + m->layers[l].offset : ws->wq[l];
}

double fm_train_step(fm_model *m, fm_workspace *ws, const uint8_t *labels, int B, uint64_t step,
                     int *errors)
{
    const fm_config *c = &m->config;
    const float eps = (float)c->bn_eps;

    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        const float *x = ws->act[l];
        float *y = ws->act[l + 1];
        float *p = m->state + L->offset;
        switch (L->kind) {
        case FM_LAYER_DENSE:
            fm_dense_forward(x, training_weights(m, ws, l, step), y, B, L->in, L->out);
            break;
        case FM_LAYER_BN:
            fm_bn_forward_train(x, y, B, L->out, p, p + L->out, eps, ws->bn_mean[l], ws->bn_invstd[l]);
            if (c->bn_stats == FM_BN_RUNNING) {
                float a = (float)c->bn_momentum;
                float *mean = p + 2 * L->out, *var = p + 3 * L->out;
                for (int j = 0; j < L->out; j++) {
                    float inv = ws->bn_invstd[l][j];
                    float batch_var = 1.0f / (inv * inv) - eps;
                    mean[j] += a * (ws->bn_mean[l][j] - mean[j]);
                    var[j] += a * (batch_var - var[j]);
                }
            }
            break;
        case FM_LAYER_RELU:
            fm_relu_forward(x, y, (size_t)B * L->out);
            break;
        case FM_LAYER_DROPOUT:
            fm_dropout_forward(x, y, ws->mask[l], (size_t)B * L->out, (float)c->dropout,
                               fm_rng_key(c->seed, STREAM_DROPOUT, (uint64_t)l, step));
            break;
        }
    }

    const float *out = ws->act[m->n_layers];
    float *dout = ws->grad[m->n_layers];
    double loss = c->loss == FM_LOSS_XENT ? fm_loss_xent(out, labels, B, m->classes, dout, errors)
                                          : fm_loss_hinge(out, labels, B, m->classes, dout, errors);

    for (int l = m->n_layers - 1; l >= 0; l--) {
        const fm_layer *L = &m->layers[l];
        const float *x = ws->act[l], *dy = ws->grad[l + 1];
        float *dx = l > 0 ? ws->grad[l] : NULL;
        float *g = ws->grad_state + L->offset;
        const float *p = m->state + L->offset;
        switch (L->kind) {
        case FM_LAYER_DENSE: {
            /* With quantized back-prop the authors' code takes the error at the
             * batch norm's output (skipping its Jacobian) for the weight
             * gradient of a dense layer; qb_bn_jacobian uses the exact one. */
            const float *e = dy;
            if (c->qb && !c->qb_bn_jacobian && l + 1 < m->n_layers &&
                m->layers[l + 1].kind == FM_LAYER_BN)
                e = ws->grad[l + 2];
            const float *xin = x;
            if (c->qb) {
                fm_pow2_quantize(x, ws->qx, (size_t)B * L->in, c->qb_emin, c->qb_emax,
                                 fm_rng_key(c->seed, STREAM_QB, (uint64_t)L->dense_index, step));
                xin = ws->qx;
            }
            fm_dense_backward_weights(xin, e, g, B, L->in, L->out);
            if (dx) {
                const float *w = c->weights == FM_WEIGHTS_FP32 ? p : ws->wq[l];
                fm_dense_backward_input(dy, w, dx, B, L->in, L->out);
            }
            break;
        }
        case FM_LAYER_BN:
            fm_bn_backward(x, dy, dx, B, L->out, p, ws->bn_mean[l], ws->bn_invstd[l], g,
                           g + L->out);
            break;
        case FM_LAYER_RELU:
            if (dx)
                fm_relu_backward(ws->act[l + 1], dy, dx, (size_t)B * L->out);
            break;
        case FM_LAYER_DROPOUT:
            if (dx)
                fm_dropout_backward(dy, dx, ws->mask[l], (size_t)B * L->out, (float)c->dropout);
            break;
        }
    }
    return loss;
}

const float *fm_forward_eval(const fm_model *m, fm_workspace *ws, int B, int refresh)
{
    const float eps = (float)m->config.bn_eps;
    if (refresh)
        fm_eval_weights(m, ws);
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        const float *x = ws->act[l];
        float *y = ws->act[l + 1];
        const float *p = m->state + L->offset;
        switch (L->kind) {
        case FM_LAYER_DENSE:
            fm_dense_forward(x, eval_weights_of(m, ws, l), y, B, L->in, L->out);
            break;
        case FM_LAYER_BN:
            fm_bn_forward_infer(x, y, B, L->out, p, p + L->out, eps, p + 2 * L->out, p + 3 * L->out);
            break;
        case FM_LAYER_RELU:
            fm_relu_forward(x, y, (size_t)B * L->out);
            break;
        case FM_LAYER_DROPOUT: /* inverted dropout: identity at inference */
            memcpy(y, x, (size_t)B * L->out * sizeof *y);
            break;
        }
    }
    return ws->act[m->n_layers];
}

int fm_bn_recompute(fm_model *m, fm_workspace *ws, const fm_images *sets[], const int *firsts,
                    const int *counts, int n_sets, int batch)
{
    const float eps = (float)m->config.bn_eps;
    size_t total = 0;
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].kind == FM_LAYER_BN)
            total += (size_t)m->layers[l].out;
    /* sums of per-batch means and variances, then per-batch scratch */
    float *acc = fm_alloc(total * 4, sizeof *acc);
    if (!acc)
        return FM_ENOMEM;
    batch = FM_MIN(batch, ws->max_batch);
    fm_eval_weights(m, ws);
    long seen = 0;
    for (int s = 0; s < n_sets; s++) {
        for (int b0 = 0; b0 < counts[s]; b0 += batch) {
            int B = FM_MIN(batch, counts[s] - b0);
            fm_load_batch(m, sets[s], NULL, firsts[s] + b0, B, ws->act[0]);
            seen++;
            size_t at = 0;
            for (int l = 0; l < m->n_layers; l++) {
                const fm_layer *L = &m->layers[l];
                const float *x = ws->act[l];
                float *y = ws->act[l + 1];
                float *p = m->state + L->offset;
                if (L->kind == FM_LAYER_DENSE) {
                    fm_dense_forward(x, eval_weights_of(m, ws, l), y, B, L->in, L->out);
                } else if (L->kind == FM_LAYER_BN) {
                    float *sum_mean = acc + at, *sum_var = acc + at + total;
                    float *bm = acc + at + 2 * total, *bv = acc + at + 3 * total;
                    fm_bn_batch_stats(x, B, L->out, bm, bv);
                    /* this batch joins the average before it is normalised, so
                     * the first batch uses its own statistics (the authors'
                     * can_fit) and later ones the running average */
                    for (int j = 0; j < L->out; j++) {
                        sum_mean[j] += bm[j];
                        sum_var[j] += bv[j];
                        p[2 * L->out + j] = sum_mean[j] / (float)seen;
                        p[3 * L->out + j] = sum_var[j] / (float)seen;
                    }
                    fm_bn_forward_infer(x, y, B, L->out, p, p + L->out, eps, p + 2 * L->out,
                                        p + 3 * L->out);
                    at += (size_t)L->out;
                } else if (L->kind == FM_LAYER_RELU) {
                    fm_relu_forward(x, y, (size_t)B * L->out);
                } else {
                    memcpy(y, x, (size_t)B * L->out * sizeof *y);
                }
            }
        }
    }
    fm_free(acc);
    return FM_OK;
}
