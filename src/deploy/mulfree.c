/* mulfree.c — the training products of `--exec mulfree` (mulfree.h): the
 * kernel table's `real` kernel run per example, `pow2_grad` over shares of
 * rows, the exactness fallback, and their ledger declarations. */
#include "mulfree.h"
#include "internal.h"
#include "kernels.h"
#include "layers.h"
#include "quant.h"

#ifdef _OPENMP
#include <omp.h>
#endif

fm_deploy_weights fmi_mulfree_kind(fm_weight_mode mode)
{
    switch (mode) {
    case FM_WEIGHTS_BC:
    case FM_WEIGHTS_BC_DET:
        return FM_DW_BINARY;
    case FM_WEIGHTS_TC:
    case FM_WEIGHTS_TC_DET:
        return FM_DW_TERNARY;
    case FM_WEIGHTS_SYNAPSE:
        return FM_DW_SYNAPSE;
    default:
        return FM_DW_FP32;
    }
}

static int thread_index(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

void fmi_mulfree_product(const fm_kernels *k, const fm_kernel_weights *w, const float *x, float *y,
                        int batch, float scale, float *scratch, size_t slice, int threads)
{
    const int scaled = w->weights != FM_DW_SYNAPSE;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *tables = scratch + (size_t)thread_index() * slice;
#pragma omp for schedule(static)
        for (int b = 0; b < batch; b++) {
            float *row = y + (size_t)b * w->out;
            k->real(w, x + (size_t)b * w->in, row, tables);
            if (scaled)
                for (int j = 0; j < w->out; j++)
                    row[j] *= scale;
        }
    }
    if (scaled)
        FM_TALLY(FM_OP_FMUL, (uint64_t)batch * w->out);
}

int fmi_mulfree_pow2_grad(const fm_kernels *k, const float *q, const float *e, float *dw, int batch,
                         int in, int out, int threads)
{
    if (!fmi_pow2_grad_exact(q, (size_t)batch * in, e, (size_t)batch * out)) {
        fmi_ref_dense_backward_weights(1, q, e, dw, batch, in, out);
        return 0;
    }
    /* Shares of whole 16-row bands, so a kernel may block rows as it likes. */
    const int band = 16, bands = (in + band - 1) / band;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int t = 0; t < threads; t++) {
        int first = (int)((long)bands * t / threads), last = (int)((long)bands * (t + 1) / threads);
        int i0 = FM_MIN(in, first * band), i1 = FM_MIN(in, last * band);
        if (i0 < i1)
            k->pow2_grad(q, e, dw, batch, in, out, i0, i1);
    }
    return 1;
}

/* ---- ledger declarations --------------------------------------------------
 * A lookup among S table entries is counted as the S - 1 two-way selects of a
 * select tree (`sign`), an upper bound on what a hardware multiplexer does. */

void fmi_mulfree_cost_fill(const fm_cost *c, fm_deploy_weights kind, int levels, int in, int out)
{
    const uint64_t n = (uint64_t)in * out;
    if (kind == FM_DW_TERNARY)
        fmi_cost_ops(c, FM_OP_CMP, 2 * n);
    if (kind == FM_DW_SYNAPSE) {
        const uint64_t steps = (uint64_t)fmi_search_steps(levels - 1); /* as fmi_kernel_fill */
        fmi_cost_ops(c, FM_OP_IADD, steps * n);
        fmi_cost_ops(c, FM_OP_CMP, (steps + 1) * n);
        fmi_cost_ops(c, FM_OP_SIGN, steps * n);
    }
    /* binary: the sign bit is the code, wiring */
}

void fmi_mulfree_cost_product(const fm_cost *c, fm_deploy_weights kind, int levels, int batch,
                             int in, int out)
{
    const uint64_t B = (uint64_t)batch, groups = ((uint64_t)in + 3) / 4;
    if (kind == FM_DW_SYNAPSE) {
        const uint64_t stride = levels <= 16 ? 16 : 32, terms = B * in * out;
        fmi_cost_ops(c, FM_OP_FMUL, B * in * stride); /* the product tables */
        fmi_cost_ops(c, FM_OP_SIGN, terms * stride);  /* lookup (stride - 1) and sign (1) */
        fmi_cost_ops(c, FM_OP_FADD, terms);
        return;
    }
    const uint64_t lookups = kind == FM_DW_TERNARY ? 2 : 1;
    /* per group and example: 8 pair sums of two selected inputs, 16 table sums */
    fmi_cost_ops(c, FM_OP_SIGN, B * groups * 16);
    fmi_cost_ops(c, FM_OP_FADD, B * groups * 24);
    /* per group, output and example: the lookups (15 selects each) and their adds */
    fmi_cost_ops(c, FM_OP_SIGN, B * groups * out * lookups * 15);
    fmi_cost_ops(c, FM_OP_FADD, B * groups * out * lookups);
    fmi_cost_ops(c, FM_OP_FMUL, B * out); /* times H */
}

void fmi_mulfree_cost_pow2_grad(const fm_cost *c, int batch, int in, int out)
{
    /* the exactness check: three compares per value of Q(x) and of e */
    fmi_cost_ops(c, FM_OP_CMP, 3 * (uint64_t)batch * ((uint64_t)in + out));
    fmi_dense_cost_backward_weights(c, 1, batch, in, out);
}
