/* mulfree.h — the three training products of dense and convolutional
 * layers executed without float multiplies (`--exec mulfree`,
 * docs/mulfree.md), built on the kernel table of infer.h:
 *   forward    y = x · Wq       dense: the `real` kernel per example, table
 *                               lookups and adds from packed sign (and zero)
 *                               masks; conv: `conv_real` per example, the
 *                               same over each window; then one multiply by
 *                               H per output;
 *   backward   dx = e · Wqᵀ     the same kernels on the transposed layout
 *                               (conv: the filters turned by 180 degrees over
 *                               the error map, dilated by the stride);
 *   gradient   dW = Q(x)ᵀ · e   `pow2_grad`: exponent adds and adds (conv:
 *                               over the im2col columns of Q(x), copies).
 * Every function gives the same bits whatever the thread count: examples (or
 * rows of dW) are shared among threads, never the terms of one sum. */
#ifndef FEWMUL_MULFREE_H
#define FEWMUL_MULFREE_H

#include "conv.h"
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
/* Rows r0 .. r1-1 of the same dw, stored from dw_rows on (row r0 first), by
 * k->pow2_grad among the threads; the caller has checked fmi_pow2_grad_exact
 * for q and e. The same bits as those rows of the whole product. */
void fmi_mulfree_pow2_grad_rows(const fm_kernels *k, const float *q, const float *e, float *dw_rows,
                               int batch, int in, int out, int r0, int r1, int threads);

/* ---- convolutions (conv.h geometry, NHWC maps) ---- */

/* The geometry of the convolution that forms conv g's input gradient: over
 * the error map (out_h x out_w x out_c) dilated by g's stride (s - 1 zero
 * pixels between neighbours; none for stride 1), stride 1, the same kernel
 * turned by 180 degrees (fmi_conv_fill, transposed), padded by k - 1 - pad
 * before, giving the in_h x in_w x in_c gradient. A window's taps outside
 * the dilated map are skipped and its zero pixels add zeros, so each input
 * value is the sum of exactly the terms of the convolution's adjoint. */
void fmi_mulfree_conv_transpose(const fm_conv_geom *g, fm_conv_geom *t);

/* Floats of one thread's scratch for fmi_mulfree_conv on w: conv_real's
 * tables and, for dilate > 1, the dilated map. */
size_t fmi_mulfree_conv_scratch_floats(const fm_conv_weights *w, int dilate);

/* y[b] = scale * conv(x[b]) for b < batch, maps of w's geometry (channel
 * last), scale as fmi_mulfree_product. With dilate > 1, each x[b] is the map
 * before dilation, ((in_h-1)/dilate+1) x ((in_w-1)/dilate+1) x in_c, and is
 * dilated into the scratch first (the input gradient of a strided
 * convolution). scratch: `threads` slices of `slice` >=
 * fmi_mulfree_conv_scratch_floats floats. */
void fmi_mulfree_conv(const fm_kernels *k, const fm_conv_weights *w, const float *x, float *y,
                     int batch, float scale, int dilate, float *scratch, size_t slice, int threads);

/* dw (fan_in x out_c) = the weight gradient of conv g for Q(x) q (batch
 * maps, values +-0 or +-2^k) and the error e at its output: pow2_grad over
 * the im2col columns of q in the chunks of fmi_conv_backward_weights' path
 * (columns: fmi_conv_scratch_floats(g, batch) floats), when
 * fmi_pow2_grad_exact holds for q and e, else ldexpf. Where the variant's
 * conv_pow2_grad fits g, maps holds fmi_mulfree_conv_grad_floats(k, g, batch)
 * (maps_floats) and most of e is zero, the sums are formed from the maps
 * themselves over e's nonzero values (mulfree.c). The same bits as
 * fmi_conv_backward_weights' reference path with pow2 in every case. Returns
 * 3 when the exponent adds ran from the maps as bytes (conv_pow2_grad_codes,
 * where q's exponents span at most FM_GRAD_CODE_SPAN fields), 2 from the
 * float maps, 1 over the columns, 0 for the fallback. */
int fmi_mulfree_conv_pow2_grad(const fm_kernels *k, const fm_conv_geom *g, const float *q,
                              const float *e, float *dw, int batch, float *columns, float *maps,
                              size_t maps_floats, int threads);
/* Floats of the maps' scratch of conv g's weight gradient for batches up to
 * max_batch; 0 where k's variant cannot form it from the maps. */
size_t fmi_mulfree_conv_grad_floats(const fm_kernels *k, const fm_conv_geom *g, int max_batch);

/* Ledger declarations of the functions above and of fmi_kernel_fill and
 * fmi_conv_fill (fmi_mulfree_cost_fill with in = fan-in, out = out_c), in the
 * arithmetic of the reference kernels (infer_ref.c, infer_conv.c), which
 * tally the same. */
void fmi_mulfree_cost_fill(const fm_cost *cost, fm_deploy_weights kind, int levels, int in, int out);
void fmi_mulfree_cost_product(const fm_cost *cost, fm_deploy_weights kind, int levels, int batch,
                             int in, int out);
void fmi_mulfree_cost_pow2_grad(const fm_cost *cost, int batch, int in, int out);
void fmi_mulfree_cost_conv(const fm_cost *cost, const fm_conv_weights *w, int batch);
void fmi_mulfree_cost_conv_pow2_grad(const fm_cost *cost, const fm_conv_geom *g, int batch);

#endif
