/* layers.h — forward and backward kernels of the layers, one file each.
 * Activations are row-major batches: B rows (examples) of D values. Every
 * reduction runs over the batch inside one feature, and features split across
 * threads, so results do not depend on the thread count. */
#ifndef FEWMUL_LAYERS_H
#define FEWMUL_LAYERS_H

#include "ledger.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* ---- dense: y = x · W, W is in x out (no bias: batch norm follows) ---- */

/* y[B x out] = x[B x in] · w[in x out] */
void fmi_dense_forward(const float *x, const float *w, float *y, int batch, int in, int out);
/* dx[B x in] = e[B x out] · wᵀ */
void fmi_dense_backward_input(const float *e, const float *w, float *dx, int batch, int in, int out);
/* dw[in x out] = xᵀ · e (x is the layer input, or Q(x) for quantized back-prop) */
void fmi_dense_backward_weights(const float *x, const float *e, float *dw, int batch, int in, int out);
/* Glorot's bound used by the authors: W0 = sqrt(6/(fan_in+fan_out))/2. */
float fmi_dense_w0(int in, int out);
/* Ledger declarations of the three products in the arithmetic of the reference
 * kernels (kernels.h; weight_class is an fm_weight_class, pow2 marks Q(x)). */
void fmi_dense_cost_forward(const fm_cost *cost, int weight_class, int batch, int in, int out);
void fmi_dense_cost_backward_input(const fm_cost *cost, int weight_class, int batch, int in, int out);
void fmi_dense_cost_backward_weights(const fm_cost *cost, int pow2, int batch, int in, int out);

/* ---- batch norm over the batch, per feature: y = gamma * (x-mean)/sqrt(var+eps) + beta ---- */

/* Training: batch statistics (biased variance). Saves mean and 1/sqrt(var+eps). */
void fmi_bn_forward_train(const float *x, float *y, int batch, int dim, const float *gamma,
                         const float *beta, float eps, float *mean, float *invstd);
/* Inference with fixed statistics. */
/* The inference form of batch norm for one feature: y = x * scale + shift with
 * scale = gamma / sqrt(var + eps) and shift = beta - mean * scale. Training's
 * inference pass and the deployed network's folded scale and offset both use it. */
static inline void fmi_bn_fold(float gamma, float beta, float mean, float var, float eps,
                              float *scale, float *shift)
{
    *scale = gamma / sqrtf(var + eps);
    *shift = beta - mean * *scale;
}
void fmi_bn_forward_infer(const float *x, float *y, int batch, int dim, const float *gamma,
                         const float *beta, float eps, const float *mean, const float *var);
/* Batch mean and biased variance of x, per feature. */
void fmi_bn_batch_stats(const float *x, int batch, int dim, float *mean, float *var);
/* Gradients: dgamma, dbeta (overwritten) and dx (may be NULL). */
void fmi_bn_backward(const float *x, const float *dy, float *dx, int batch, int dim,
                    const float *gamma, const float *mean, const float *invstd, float *dgamma,
                    float *dbeta);
/* Ledger declarations of the kernels above. */
/* The same split for a minibatch spread over ranks (net.c sums the partial
 * results over the ranks between the calls): sums over rows, sums of squared
 * deviations from the whole batch's mean, the normalization; the backward
 * sums (dgamma, dbeta of these rows) and the input gradient from the whole
 * batch's sums over its total_rows rows. */
void fmi_bn_sums(const float *x, int rows, int dim, float *sum);
void fmi_bn_centred_squares(const float *x, int rows, int dim, const float *mean, float *sq);
void fmi_bn_normalize(const float *x, float *y, int rows, int dim, const float *gamma,
                     const float *beta, const float *mean, const float *invstd);
void fmi_bn_backward_sums(const float *x, const float *dy, int rows, int dim, const float *mean,
                         const float *invstd, float *dgamma, float *dbeta);
void fmi_bn_backward_input(const float *x, const float *dy, float *dx, int rows, int total_rows,
                          int dim, const float *gamma, const float *mean, const float *invstd,
                          const float *dgamma, const float *dbeta);
void fmi_bn_cost_batch_stats(const fm_cost *cost, int batch, int dim);
void fmi_bn_cost_forward_train(const fm_cost *cost, int batch, int dim);
void fmi_bn_cost_forward_infer(const fm_cost *cost, int batch, int dim);
void fmi_bn_cost_backward(const fm_cost *cost, int batch, int dim, int with_dx);

/* ---- element-wise ---- */

void fmi_relu_forward(const float *x, float *y, size_t n);
/* dx = dy where y > 0, else 0 */
void fmi_relu_backward(const float *y, const float *dy, float *dx, size_t n);
/* y = +1 where x >= 0, else -1 */
void fmi_sign_forward(const float *x, float *y, size_t n);
/* Straight-through: dx = dy where |x| <= 1 (x the sign's input), else 0 */
void fmi_sign_backward(const float *x, const float *dy, float *dx, size_t n);
/* Inverted dropout: keep with probability 1-p, scaled by 1/(1-p); mask records kept. */
/* Value i draws number first + i of stream `key` (as fmi_pow2_quantize). */
void fmi_dropout_forward(const float *x, float *y, uint8_t *mask, size_t n, float p, uint64_t key,
                        uint64_t first);
void fmi_dropout_backward(const float *dy, float *dx, const uint8_t *mask, size_t n, float p);
/* Ledger declarations: one compare and one select per element each way; dropout
 * forward draws, compares, scales and selects, backward scales and selects. */
void fmi_relu_cost(const fm_cost *cost, uint64_t n);
/* Sign: a compare and a select forward; backward an absolute value, a compare
 * and a select. */
void fmi_sign_cost_forward(const fm_cost *cost, uint64_t n);
void fmi_sign_cost_backward(const fm_cost *cost, uint64_t n);
void fmi_dropout_cost_forward(const fm_cost *cost, uint64_t n);
void fmi_dropout_cost_backward(const fm_cost *cost, uint64_t n);

#endif
