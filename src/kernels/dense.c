/* dense.c — the fully connected layer: three GEMMs (forward, input gradient,
 * weight gradient). Which weights enter (sampled binary, ternary, real) and
 * which input enters the weight gradient (x or Q(x)) is the caller's choice. */
#include "layers.h"
#include "gemm.h"
#include "kernels.h"

#include <math.h>

void fmi_dense_forward(const float *x, const float *w, float *y, int batch, int in, int out)
{
    fmi_sgemm(0, 0, batch, out, in, 1.0f, x, in, w, out, 0.0f, y, out);
}

void fmi_dense_backward_input(const float *e, const float *w, float *dx, int batch, int in, int out)
{
    fmi_sgemm(0, 1, batch, in, out, 1.0f, e, out, w, out, 0.0f, dx, in);
}

void fmi_dense_backward_weights(const float *x, const float *e, float *dw, int batch, int in, int out)
{
    fmi_sgemm(1, 0, in, out, batch, 1.0f, x, in, e, out, 0.0f, dw, out);
}

float fmi_dense_w0(int in, int out)
{
    return (float)(sqrt(6.0 / (double)(in + out)) / 2.0);
}

/* ---- ledger declarations: the arithmetic of the reference kernels
 * (dense_ref.c), which the fast GEMMs above reproduce with float products ---- */

static void cost_dots(const fm_cost *c, fm_weight_class wc, uint64_t sums, uint64_t n)
{
    if (wc == FM_WCLASS_REAL) {
        fmi_cost_ops(c, FM_OP_FMA, sums * n);
        return;
    }
    fmi_cost_ops(c, FM_OP_SIGN, sums * n * (wc == FM_WCLASS_TERNARY ? 2 : 1));
    fmi_cost_ops(c, FM_OP_FADD, sums * n);
    fmi_cost_ops(c, FM_OP_FMUL, sums);
}

void fmi_dense_cost_forward(const fm_cost *c, int weight_class, int batch, int in, int out)
{
    cost_dots(c, (fm_weight_class)weight_class, (uint64_t)batch * out, (uint64_t)in);
}

void fmi_dense_cost_backward_input(const fm_cost *c, int weight_class, int batch, int in, int out)
{
    cost_dots(c, (fm_weight_class)weight_class, (uint64_t)batch * in, (uint64_t)out);
}

void fmi_dense_cost_backward_weights(const fm_cost *c, int pow2, int batch, int in, int out)
{
    uint64_t terms = (uint64_t)in * out * batch;
    if (pow2) {
        fmi_cost_ops(c, FM_OP_SHIFT, terms);
        fmi_cost_ops(c, FM_OP_SIGN, 2 * terms);
        fmi_cost_ops(c, FM_OP_FADD, terms);
    } else {
        fmi_cost_ops(c, FM_OP_FMA, terms);
    }
}
