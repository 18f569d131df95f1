/* product.c — the products of product.h. Every variant computes what the
 * reference kernels specify (up to the order of float additions for BLAS)
 * and declares the reference arithmetic; convolutions add the bytes of their
 * im2col columns. */
#include "conv.h"
#include "gemm.h"
#include "internal.h"
#include "kernels.h"
#include "layers.h"
#include "mulfree.h"
#include "product.h"
#include "weighted.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- dense layers through BLAS (fmi_sgemm) ---- */

static void blas_forward(const fm_pass *p, const fm_cost *c, int l, const float *w, int wclass)
{
    const fm_layer *L = &p->model->layers[l];
    fmi_dense_forward(p->ws->act[l], w, p->ws->act[l + 1], p->batch, L->in, L->out);
    fmi_dense_cost_forward(c, wclass, p->batch, L->in, L->out);
}

static void blas_backward_weights(const fm_pass *p, const fm_cost *c, int l, const float *x,
                                  const float *e, float *dw)
{
    const fm_layer *L = &p->model->layers[l];
    fmi_dense_backward_weights(x, e, dw, p->batch, L->in, L->out);
    fmi_dense_cost_backward_weights(c, p->model->config.qb, p->batch, L->in, L->out);
}

static void blas_backward_input(const fm_pass *p, const fm_cost *c, int l, const float *dy,
                                const float *w, float *dx, int wclass)
{
    const fm_layer *L = &p->model->layers[l];
    fmi_dense_backward_input(dy, w, dx, p->batch, L->in, L->out);
    fmi_dense_cost_backward_input(c, wclass, p->batch, L->in, L->out);
}

static int blas_rows_begin(const fm_pass *p, const fm_cost *c, int l, const float *x, const float *e)
{
    (void)x, (void)e;
    const fm_layer *L = &p->model->layers[l];
    fmi_dense_cost_backward_weights(c, p->model->config.qb, p->batch, L->in, L->out);
    return 0;
}

static void blas_rows(const fm_pass *p, int l, const float *x, const float *e, int flag, int i0, int i1,
                      float *dw_rows)
{
    (void)flag;
    const fm_layer *L = &p->model->layers[l];
    /* rows i0.. of xᵀ: x's columns from i0 on, still in rows of L->in */
    fmi_sgemm(1, 0, i1 - i0, L->out, p->batch, 1.0f, x + i0, L->in, e, L->out, 0.0f, dw_rows, L->out);
}

const fm_product_ops fmi_product_blas = {"blas", NULL, blas_forward, blas_backward_weights,
                                        blas_backward_input, blas_rows_begin, blas_rows, 1};

/* ---- dense layers through the reference kernels (the method's arithmetic) ---- */

static void reference_forward(const fm_pass *p, const fm_cost *c, int l, const float *w,
                              int wclass)
{
    const fm_layer *L = &p->model->layers[l];
    fmi_ref_dense_forward((fm_weight_class)wclass, p->ws->act[l], w, L->h, p->ws->act[l + 1],
                         p->batch, L->in, L->out);
    fmi_dense_cost_forward(c, wclass, p->batch, L->in, L->out);
}

static void reference_backward_weights(const fm_pass *p, const fm_cost *c, int l, const float *x,
                                       const float *e, float *dw)
{
    const fm_layer *L = &p->model->layers[l];
    const int qb = p->model->config.qb;
    fmi_ref_dense_backward_weights(qb, x, e, dw, p->batch, L->in, L->out);
    fmi_dense_cost_backward_weights(c, qb, p->batch, L->in, L->out);
}

static void reference_backward_input(const fm_pass *p, const fm_cost *c, int l, const float *dy,
                                     const float *w, float *dx, int wclass)
{
    const fm_layer *L = &p->model->layers[l];
    fmi_ref_dense_backward_input((fm_weight_class)wclass, dy, w, L->h, dx, p->batch, L->in, L->out);
    fmi_dense_cost_backward_input(c, wclass, p->batch, L->in, L->out);
}

static void reference_rows(const fm_pass *p, int l, const float *x, const float *e, int flag, int i0,
                           int i1, float *dw_rows)
{
    (void)flag;
    const fm_layer *L = &p->model->layers[l];
    fmi_ref_dense_backward_weights_rows(p->model->config.qb, x, e, dw_rows, p->batch, L->in, L->out,
                                       i0, i1);
}

/* the same declaration as BLAS's: both declare the reference arithmetic */
const fm_product_ops fmi_product_reference = {"reference", NULL, reference_forward,
                                             reference_backward_weights, reference_backward_input,
                                             blas_rows_begin, reference_rows, 0};

/* ---- dense layers without float multiplies (--exec mulfree) ---- */

/* Threads a mulfree product may use: the run's count, within the scratch. */
static int mulfree_threads(const fm_workspace *ws)
{
#ifdef _OPENMP
    return FM_MAX(1, FM_MIN(omp_get_max_threads(), ws->mf_threads));
#else
    return 1;
#endif
}

/* Refills weighted layer l's mulfree layouts from the pass's float weights
 * in ws->wq: the forward one and, with_transpose, the one of the input
 * gradient (training workspaces, layers after the first). A dense layer's
 * layouts come from one read of the floats along their rows
 * (fmi_kernel_fill_pair; synapse weights are read once per layout). Each
 * refill is declared: the weights read as floats, the codes written. An error
 * (a synapse weight off the level table, which the quantizer never gives) is
 * kept in ws->status for the caller of the pass. */
static void mulfree_prepare(const fm_pass *p, const fm_cost *c, int l, int with_transpose)
{
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    fm_workspace *ws = p->ws;
    const fm_deploy_weights kind = fmi_mulfree_kind(m->config.weights);
    int layouts = 0, float_reads = 0, rc = FM_OK;
    if (L->kind == FM_LAYER_CONV) {
        for (int t = 0; t <= with_transpose && rc == FM_OK; t++) {
            fm_conv_weights *layout = t ? ws->mf_conv_backward[l] : ws->mf_conv_forward[l];
            if (!layout)
                break;
            rc = fmi_conv_fill(layout, ws->wq[l], t, mulfree_threads(ws));
            layouts++, float_reads++;
        }
    } else if (ws->mf_forward[l]) {
        fm_kernel_weights *transposed = with_transpose ? ws->mf_backward[l] : NULL;
        rc = fmi_kernel_fill_pair(ws->mf_forward[l], transposed, ws->wq[l], mulfree_threads(ws));
        layouts = transposed ? 2 : 1;
        float_reads = kind == FM_DW_SYNAPSE ? layouts : 1;
    }
    if (rc < 0 && ws->status == FM_OK)
        ws->status = rc;
    for (int t = 0; t < layouts; t++) {
        fmi_mulfree_cost_fill(c, kind, m->config.synapse_levels, L->w_rows, L->w_cols);
        if (t < float_reads)
            fmi_bytes_tensor(c, m, l, "Wq.float", 4 * (uint64_t)fmi_layer_weight_count(L), 0);
        fmi_bytes_tensor(c, m, l, "Wq", fmi_layer_weight_bytes(m, l, 1), 1);
    }
}

static void mulfree_forward(const fm_pass *p, const fm_cost *c, int l, const float *w, int wclass)
{
    (void)w, (void)wclass; /* the layout prepared from them */
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    fm_workspace *ws = p->ws;
    fmi_mulfree_product(ws->kernels, ws->mf_forward[l], ws->act[l], ws->act[l + 1], p->batch, L->h,
                       ws->mf_scratch, ws->mf_slice, mulfree_threads(ws));
    fmi_mulfree_cost_product(c, fmi_mulfree_kind(m->config.weights), m->config.synapse_levels,
                            p->batch, L->in, L->out);
}

static void mulfree_backward_weights(const fm_pass *p, const fm_cost *c, int l, const float *x,
                                     const float *e, float *dw)
{
    const fm_layer *L = &p->model->layers[l];
    fm_workspace *ws = p->ws;
    /* x is Q(x): --exec mulfree needs quantized back-prop (fm_config_check) */
    if (!fmi_mulfree_pow2_grad(ws->kernels, x, e, dw, p->batch, L->in, L->out, mulfree_threads(ws)))
        ws->mf_fallbacks++;
    fmi_mulfree_cost_pow2_grad(c, p->batch, L->in, L->out);
}

static void mulfree_backward_input(const fm_pass *p, const fm_cost *c, int l, const float *dy,
                                   const float *w, float *dx, int wclass)
{
    (void)w, (void)wclass;
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    fm_workspace *ws = p->ws;
    fmi_mulfree_product(ws->kernels, ws->mf_backward[l], dy, dx, p->batch, L->h, ws->mf_scratch,
                       ws->mf_slice, mulfree_threads(ws));
    fmi_mulfree_cost_product(c, fmi_mulfree_kind(m->config.weights), m->config.synapse_levels,
                            p->batch, L->out, L->in);
}

static int mulfree_rows_begin(const fm_pass *p, const fm_cost *c, int l, const float *x,
                              const float *e)
{
    const fm_layer *L = &p->model->layers[l];
    /* x is Q(x), as for the whole product; checked once for every tile */
    const int exact = fmi_pow2_grad_exact(x, (size_t)p->batch * L->in, e, (size_t)p->batch * L->out,
                                          mulfree_threads(p->ws));
    if (!exact)
        p->ws->mf_fallbacks++;
    fmi_mulfree_cost_pow2_grad(c, p->batch, L->in, L->out);
    return exact;
}

static void mulfree_rows(const fm_pass *p, int l, const float *x, const float *e, int exact, int i0,
                         int i1, float *dw_rows)
{
    const fm_layer *L = &p->model->layers[l];
    if (exact) /* on this thread: the fused update shares the tiles among threads */
        fmi_mulfree_pow2_grad_rows(p->ws->kernels, x, e, dw_rows, p->batch, L->in, L->out, i0, i1, 1);
    else /* the rare step where a product would leave the normal range */
        fmi_ref_dense_backward_weights_rows(1, x, e, dw_rows, p->batch, L->in, L->out, i0, i1);
}

const fm_product_ops fmi_product_mulfree = {"mulfree", mulfree_prepare, mulfree_forward,
                                           mulfree_backward_weights, mulfree_backward_input,
                                           mulfree_rows_begin, mulfree_rows, 0};

/* ---- convolutions: im2col + GEMM, or + the reference kernels ---- */

/* im2col columns of conv layer l for B examples: written and read once per
 * product. They pass through a buffer of one chunk of examples (conv.h),
 * which is the tensor's footprint in the memory model. A layer whose columns
 * are its input itself (a 1x1 kernel, or one covering the whole map) needs no
 * buffer and moves no columns. */
static void conv_columns_bytes(const fm_cost *c, const fm_model *m, int l, int B)
{
    const fm_layer *L = &m->layers[l];
    const size_t buffer = fmi_conv_scratch_floats(&L->conv, B);
    if (!c->ledger || buffer == 0)
        return;
    uint64_t bytes = 4 * (uint64_t)B * fmi_conv_positions(&L->conv) * L->w_rows;
    uint64_t footprint = FM_MIN(bytes, 4 * (uint64_t)buffer);
    fmi_cost_bytes(c, fmi_tensor_of(m, l, "cols").text, footprint, bytes, bytes);
}

static void conv_forward(const fm_pass *p, const fm_cost *c, int l, const float *w, int wclass,
                         int reference)
{
    const fm_layer *L = &p->model->layers[l];
    const fm_product prod = {reference, wclass, L->h};
    fmi_conv_forward(&L->conv, &prod, p->ws->act[l], w, p->ws->act[l + 1], p->batch,
                    p->ws->conv_scratch);
    fmi_conv_cost_forward(c, &L->conv, wclass, p->batch);
    conv_columns_bytes(c, p->model, l, p->batch);
}

static void conv_backward_weights(const fm_pass *p, const fm_cost *c, int l, const float *x,
                                  const float *e, float *dw, int reference)
{
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    const fm_product prod = {reference, fmi_weight_class_of(m->config.weights), L->h};
    fmi_conv_backward_weights(&L->conv, &prod, m->config.qb, x, e, dw, p->batch,
                             p->ws->conv_scratch);
    fmi_conv_cost_backward_weights(c, &L->conv, m->config.qb, p->batch);
    conv_columns_bytes(c, m, l, p->batch);
}

static void conv_backward_input(const fm_pass *p, const fm_cost *c, int l, const float *dy,
                                const float *w, float *dx, int wclass, int reference)
{
    const fm_layer *L = &p->model->layers[l];
    const fm_product prod = {reference, wclass, L->h};
    fmi_conv_backward_input(&L->conv, &prod, dy, w, dx, p->batch, p->ws->conv_scratch);
    fmi_conv_cost_backward_input(c, &L->conv, wclass, p->batch);
    conv_columns_bytes(c, p->model, l, p->batch);
}

static void conv_gemm_forward(const fm_pass *p, const fm_cost *c, int l, const float *w, int wclass)
{
    conv_forward(p, c, l, w, wclass, 0);
}
static void conv_gemm_backward_weights(const fm_pass *p, const fm_cost *c, int l, const float *x,
                                       const float *e, float *dw)
{
    conv_backward_weights(p, c, l, x, e, dw, 0);
}
static void conv_gemm_backward_input(const fm_pass *p, const fm_cost *c, int l, const float *dy,
                                     const float *w, float *dx, int wclass)
{
    conv_backward_input(p, c, l, dy, w, dx, wclass, 0);
}

const fm_product_ops fmi_product_conv_gemm = {"conv-gemm", NULL, conv_gemm_forward,
                                             conv_gemm_backward_weights, conv_gemm_backward_input,
                                             NULL, NULL, 0};

static void conv_reference_forward(const fm_pass *p, const fm_cost *c, int l, const float *w,
                                   int wclass)
{
    conv_forward(p, c, l, w, wclass, 1);
}
static void conv_reference_backward_weights(const fm_pass *p, const fm_cost *c, int l,
                                            const float *x, const float *e, float *dw)
{
    conv_backward_weights(p, c, l, x, e, dw, 1);
}
static void conv_reference_backward_input(const fm_pass *p, const fm_cost *c, int l,
                                          const float *dy, const float *w, float *dx, int wclass)
{
    conv_backward_input(p, c, l, dy, w, dx, wclass, 1);
}

const fm_product_ops fmi_product_conv_reference = {
    "conv-reference", NULL, conv_reference_forward, conv_reference_backward_weights,
    conv_reference_backward_input, NULL, NULL, 0};

/* ---- convolutions without float multiplies (--exec mulfree) ---- */

static void conv_mulfree_forward(const fm_pass *p, const fm_cost *c, int l, const float *w,
                                 int wclass)
{
    (void)w, (void)wclass; /* the layout prepared from them */
    const fm_layer *L = &p->model->layers[l];
    fm_workspace *ws = p->ws;
    fmi_mulfree_conv(ws->kernels, ws->mf_conv_forward[l], ws->act[l], ws->act[l + 1], p->batch, L->h,
                    1, ws->mf_scratch, ws->mf_slice, mulfree_threads(ws));
    fmi_mulfree_cost_conv(c, ws->mf_conv_forward[l], p->batch);
}

static void conv_mulfree_backward_weights(const fm_pass *p, const fm_cost *c, int l, const float *x,
                                          const float *e, float *dw)
{
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    fm_workspace *ws = p->ws;
    /* x is Q(x), as for dense layers */
    if (!fmi_mulfree_conv_pow2_grad(ws->kernels, &L->conv, x, e, dw, p->batch, ws->conv_scratch,
                                   ws->mf_grad, ws->mf_grad_floats, mulfree_threads(ws)))
        ws->mf_fallbacks++;
    fmi_mulfree_cost_conv_pow2_grad(c, &L->conv, p->batch);
    conv_columns_bytes(c, m, l, p->batch);
}

static void conv_mulfree_backward_input(const fm_pass *p, const fm_cost *c, int l, const float *dy,
                                        const float *w, float *dx, int wclass)
{
    (void)w, (void)wclass;
    const fm_layer *L = &p->model->layers[l];
    fm_workspace *ws = p->ws;
    fmi_mulfree_conv(ws->kernels, ws->mf_conv_backward[l], dy, dx, p->batch, L->h, L->conv.stride,
                    ws->mf_scratch, ws->mf_slice, mulfree_threads(ws));
    fmi_mulfree_cost_conv(c, ws->mf_conv_backward[l], p->batch);
}

const fm_product_ops fmi_product_conv_mulfree = {
    "conv-mulfree", mulfree_prepare, conv_mulfree_forward, conv_mulfree_backward_weights,
    conv_mulfree_backward_input, NULL, NULL, 0};
