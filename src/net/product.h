/* product.h — the product interface: how a weighted layer's three products
 * run (y = x·W, dx = dy·Wᵀ, dW = xᵀ·e): through BLAS, through the reference
 * kernels in the method's arithmetic (kernels.h, the ledger's ground truth),
 * through the multiplication-free kernels (mulfree.h), or as convolutions
 * (conv.h) with any of the three. Each product declares its operations
 * next to the kernel it runs. The workspace chooses one per weighted layer
 * for training passes and one for evaluation passes when it is made
 * (fmi_workspace_choose_products), so no pass tests how to run a product. */
#ifndef FEWMUL_PRODUCT_H
#define FEWMUL_PRODUCT_H

#include "layer.h"

typedef struct fm_product_ops {
    const char *name;
    /* Fills the product's own layout of the pass's weights in ws->wq[l]
     * (with_transpose: the input gradient's too), declared; NULL: the
     * product reads the float weights directly. */
    void (*prepare)(const fm_pass *p, const fm_cost *c, int l, int with_transpose);
    /* act[l+1] = act[l] · w, weights of class wclass (an fm_weight_class). */
    void (*forward)(const fm_pass *p, const fm_cost *c, int l, const float *w, int wclass);
    /* dw = xᵀ · e, x the layer's input or Q(x) (config.qb). */
    void (*backward_weights)(const fm_pass *p, const fm_cost *c, int l, const float *x,
                             const float *e, float *dw);
    /* dx = dy · wᵀ. */
    void (*backward_input)(const fm_pass *p, const fm_cost *c, int l, const float *dy,
                           const float *w, float *dx, int wclass);
    /* The weight gradient a tile of rows at a time, for an update folded
     * into the backward pass (bop, weighted.c): rows_begin declares the
     * whole product's arithmetic, as backward_weights does, and returns what
     * the pass's rows calls take (mulfree: whether the exponent adds are
     * exact); rows stores rows i0 .. i1-1 of xᵀ·e from dw_rows on, the same
     * bits as backward_weights gives those rows, except that a BLAS may sum
     * in another order for another shape. rows runs on the calling thread,
     * so that each thread forms its own tiles, unless rows_own_threads (a
     * BLAS, which runs its own threads: one call at a time). NULL for
     * convolutions: bop updates them from the whole dW. */
    int (*rows_begin)(const fm_pass *p, const fm_cost *c, int l, const float *x, const float *e);
    void (*rows)(const fm_pass *p, int l, const float *x, const float *e, int flag, int i0, int i1,
                 float *dw_rows);
    int rows_own_threads;
} fm_product_ops;

extern const fm_product_ops fmi_product_blas, fmi_product_reference, fmi_product_mulfree,
    fmi_product_conv_gemm, fmi_product_conv_reference, fmi_product_conv_mulfree;

/* Evaluation runs on the real W for fp32 and, as the paper, for the
 * stochastic modes; deterministic modes (or test_quantized) on the
 * deterministic quantization. */
int fmi_eval_uses_real(const fm_config *c);
/* The mulfree kernels run every product of a pass on quantized weights:
 * every training pass of a workspace with kernels (--exec mulfree needs a
 * quantized mode) and the evaluation passes that do not use the real W. */
int fmi_pass_uses_mulfree(const fm_model *m, const fm_workspace *ws, int evaluation);

#endif
