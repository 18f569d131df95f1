/* conv.h — 2-D convolution and max-pooling on NHWC batches (example, row,
 * column, channel; the channel varies fastest), so a flattened map feeds a
 * dense layer directly and batch norm per feature map is batch norm over
 * B*H*W rows of C features. Convolution runs as im2col + GEMM: the columns of
 * a chunk of examples form a matrix of (positions) x (k_h*k_w*in_c) and the
 * weights are a (k_h*k_w*in_c) x out_c matrix, rows ordered (ky, kx, c), the
 * same "in x out" layout as a dense layer's W. */
#ifndef FEWMUL_CONV_H
#define FEWMUL_CONV_H

#include "kernels.h"
#include "ledger.h"

#include <stddef.h>
#include <stdint.h>

typedef struct fm_conv_geom {
    int in_h, in_w, in_c;
    int k_h, k_w, stride;
    int pad_top, pad_left; /* zero rows / columns before the input; the bottom and
                              right padding follow from the output size */
    int out_h, out_w, out_c;
} fm_conv_geom;

/* Square kernel k, stride s. valid (same = 0): out = floor((in - k)/s) + 1;
 * same: out = ceil(in/s), total padding max((out-1)*s + k - in, 0), of which
 * top/left get total/2 (the rest bottom/right). FM_EINVAL with a message for
 * sizes < 1 or a valid kernel larger than the input. */
int fmi_conv_geom_init(fm_conv_geom *g, int in_h, int in_w, int in_c, int k, int stride, int same,
                      int out_c);

/* Rows of the weight matrix (the fan-in): k_h * k_w * in_c. */
static inline int fmi_conv_fan_in(const fm_conv_geom *g) { return g->k_h * g->k_w * g->in_c; }
/* Output positions per example: out_h * out_w. */
static inline int fmi_conv_positions(const fm_conv_geom *g) { return g->out_h * g->out_w; }

/* The taps inside the input of every window together (positions x taps less
 * the padded ones): what a kernel that skips padding adds per channel and
 * output (infer.h's conv_real; the ledger of --exec mulfree). */
uint64_t fmi_conv_valid_taps(const fm_conv_geom *g);

/* How the products run: reference = 1 uses the reference kernels of
 * kernels.h (the method's arithmetic, tallied in counting builds) with weight
 * class wclass (an fm_weight_class) and binary/ternary value h; reference = 0
 * uses fmi_sgemm. */
typedef struct fm_product {
    int reference;
    int wclass;
    float h;
} fm_product;

/* Floats of scratch the three functions below need for batches of up to
 * max_batch examples (the im2col columns of one chunk, plus what the
 * reference path's accumulation needs). The chunk size depends only on the
 * geometry and the batch, never on the thread count, so results are the same
 * whatever the threads. */
size_t fmi_conv_scratch_floats(const fm_conv_geom *g, int max_batch);

/* y[B x out_h x out_w x out_c] = conv(x[B x in_h x in_w x in_c], w) */
void fmi_conv_forward(const fm_conv_geom *g, const fm_product *p, const float *x, const float *w,
                     float *y, int batch, float *scratch);
/* dx = the input gradient of dy through w (overwritten). */
void fmi_conv_backward_input(const fm_conv_geom *g, const fm_product *p, const float *dy,
                            const float *w, float *dx, int batch, float *scratch);
/* dw[fan_in x out_c] = the weight gradient (overwritten) of dy for input x.
 * With pow2 set, x holds Q(x) (each value 0 or +-2^k) and the reference path
 * forms every product by an exponent add (kernels.h). */
void fmi_conv_backward_weights(const fm_conv_geom *g, const fm_product *p, int pow2, const float *x,
                              const float *dy, float *dw, int batch, float *scratch);

/* Examples per chunk of fmi_conv_backward_weights' path for a batch
 * (geometry and batch only, never threads), and the most a chunk of any
 * batch holds (INT_MAX: the whole batch). */
int fmi_conv_chunk_examples(const fm_conv_geom *g, int batch);
int fmi_conv_chunk_limit(const fm_conv_geom *g);

/* The weight gradient of fmi_conv_backward_weights with another kernel, in
 * the same chunks of examples: `rows` forms colsᵀ · e for `rows` rows of
 * im2col columns (rows x fan_in) and errors (rows x out_c) into its dw,
 * overwriting it, or with `accumulate` adding to it. The first chunk
 * overwrites dw. With `accumulates` 0 (a kernel that only overwrites, as the
 * reference one) each later chunk forms a partial sum that is then added to
 * dw (FM_OP_FADD per weight, as fmi_conv_cost_backward_weights declares);
 * with 1 the kernel accumulates itself. */
typedef void (*fm_conv_rows_grad)(void *ctx, const float *cols, const float *e, float *dw, int rows,
                                  int fan, int oc, int accumulate);
void fmi_conv_backward_weights_rows(const fm_conv_geom *g, const float *x, const float *dy, float *dw,
                                   int batch, float *scratch, fm_conv_rows_grad rows, void *ctx,
                                   int accumulates);

/* Ledger declarations of exactly what the functions above execute with the
 * reference products (kernels.h's arithmetic at B*positions rows, plus the
 * adds of overlapping columns in the input gradient and of chunk partial sums
 * in the weight gradient). */
void fmi_conv_cost_forward(const fm_cost *cost, const fm_conv_geom *g, int wclass, int batch);
void fmi_conv_cost_backward_input(const fm_cost *cost, const fm_conv_geom *g, int wclass, int batch);
void fmi_conv_cost_backward_weights(const fm_cost *cost, const fm_conv_geom *g, int pow2, int batch);

/* ---- max-pooling: size x size windows moved by stride, no padding; rows or
 * columns that do not fill a window are dropped (Theano's ignore_border) ---- */

typedef struct fm_pool_geom {
    int in_h, in_w, c;
    int size, stride;
    int out_h, out_w;
} fm_pool_geom;

/* out = floor((in - size)/stride) + 1; FM_EINVAL with a message when the
 * input is smaller than a window or a size is < 1. */
int fmi_pool_geom_init(fm_pool_geom *g, int in_h, int in_w, int c, int size, int stride);

/* y = the window maxima (the first of equal maxima wins). argmax (may be
 * NULL at inference) receives, per output value, the index of the chosen
 * input value within its example's map ((row * in_w + col) * c + channel). */
void fmi_maxpool_forward(const fm_pool_geom *g, const float *x, float *y, int32_t *argmax, int batch);
/* dx = dy routed to the chosen inputs, zero elsewhere (summed where windows
 * overlap). */
void fmi_maxpool_backward(const fm_pool_geom *g, const float *dy, const int32_t *argmax, float *dx,
                         int batch);
void fmi_maxpool_cost_forward(const fm_cost *cost, const fm_pool_geom *g, int batch);
void fmi_maxpool_cost_backward(const fm_cost *cost, const fm_pool_geom *g, int batch);

/* ---- global average pooling: each channel's mean over a map's positions ---- */

/* y[B x channels] = the mean of x[B x positions x channels] over positions. */
void fmi_gap_forward(const float *x, float *y, int batch, int positions, int channels);
/* dx[B x positions x channels] = dy / positions at every position (overwritten). */
void fmi_gap_backward(const float *dy, float *dx, int batch, int positions, int channels);
/* Ledger declarations: one reciprocal per call; forward the adds of the
 * positions and one multiply per output, backward one multiply per input. */
void fmi_gap_cost_forward(const fm_cost *cost, int batch, int positions, int channels);
void fmi_gap_cost_backward(const fm_cost *cost, int batch, int positions, int channels);

#endif
