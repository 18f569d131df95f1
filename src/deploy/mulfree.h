/* mulfree.h — the dense layer's three training products executed without
 * float multiplies (`--exec mulfree`, docs/mulfree.md), built on the kernel
 * table of infer.h:
 *   forward    y = x · Wq       the `real` kernel per example: table lookups
 *                               and adds from packed sign (and zero) masks,
 *                               then one multiply by H per output;
 *   backward   dx = e · Wqᵀ     the same kernel on the transposed layout;
 *   gradient   dW = Q(x)ᵀ · e   `pow2_grad`: exponent adds and adds.
 * Every function gives the same bits whatever the thread count: examples (or
 * rows of dW) are shared among threads, never the terms of one sum. */
#ifndef FEWMUL_MULFREE_H
#define FEWMUL_MULFREE_H

#include "infer.h"
#include "ledger.h"

#include <stddef.h>

/* The layout kind of a weight mode: binary, ternary or synapse (FM_DW_FP32
 * for fp32, which has none). */
fm_deploy_weights fmi_mulfree_kind(fm_weight_mode mode);

/* y[b*out + j] = scale * (row b of x through layout w) for b < batch, with
 * out = w->out and rows of x of w->in values. scale is the binary or ternary
 * magnitude H (the one multiply per output the method keeps); a synapse
 * layout's magnitudes already hold H, so pass 1 and no multiply runs. scratch
 * holds `threads` slices of `slice` floats, slice >= fmi_kernel_scratch_floats(w). */
void fmi_mulfree_product(const fm_kernels *k, const fm_kernel_weights *w, const float *x, float *y,
                        int batch, float scale, float *scratch, size_t slice, int threads);

/* dw (in x out) = qᵀ · e for q (batch x in, values +-0 or +-2^k) and e
 * (batch x out): k->pow2_grad over rows shared among threads when
 * fmi_pow2_grad_exact holds, else the reference with ldexpf (the rare step
 * where a product would leave the normal range). Returns 1 when the exponent
 * adds ran, 0 for the fallback. */
int fmi_mulfree_pow2_grad(const fm_kernels *k, const float *q, const float *e, float *dw, int batch,
                         int in, int out, int threads);

/* Ledger declarations of the functions above and of fmi_kernel_fill, in the
 * arithmetic of the reference kernels (infer_ref.c), which tally the same. */
void fmi_mulfree_cost_fill(const fm_cost *cost, fm_deploy_weights kind, int levels, int in, int out);
void fmi_mulfree_cost_product(const fm_cost *cost, fm_deploy_weights kind, int levels, int batch,
                             int in, int out);
void fmi_mulfree_cost_pow2_grad(const fm_cost *cost, int batch, int in, int out);

#endif
