/* dense_ref.c — the dense layer's reference kernels in the method's own
 * arithmetic (kernels.h). Plain loops, one output at a time, each sum in
 * index order: slow, obvious and independent of the thread count. */
#include "kernels.h"
#include "ledger.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

fm_weight_class fmi_weight_class_of(fm_weight_mode mode)
{
    switch (mode) {
    case FM_WEIGHTS_BC:
    case FM_WEIGHTS_BC_DET:
        return FM_WCLASS_BINARY;
    case FM_WEIGHTS_TC:
    case FM_WEIGHTS_TC_DET:
        return FM_WCLASS_TERNARY;
    default: /* fp32, and synapse levels (not powers of two) */
        return FM_WCLASS_REAL;
    }
}

/* v or -v by the sign of weight s (+h or -h); the one select of a binary term. */
static inline float signed_by(float s, float v) { return s >= 0.0f ? v : -v; }

/* sum_i v[i*stride] * w[i*wstride] over n terms in the class's arithmetic. */
static float dot(fm_weight_class wc, const float *v, long vstride, const float *w, long wstride,
                 int n, float h)
{
    float acc = 0.0f;
    if (wc == FM_WCLASS_REAL) {
        for (int i = 0; i < n; i++)
            acc = fmaf(v[i * vstride], w[i * wstride], acc);
        return acc;
    }
    for (int i = 0; i < n; i++) {
        float s = w[i * wstride];
        float t = signed_by(s, v[i * vstride]);
        if (wc == FM_WCLASS_TERNARY)
            t = s == 0.0f ? 0.0f : t;
        acc += t;
    }
    return h * acc;
}

/* Operations of dot() for `sums` sums of n terms each. */
static void tally_dots(fm_weight_class wc, uint64_t sums, uint64_t n)
{
    if (wc == FM_WCLASS_REAL) {
        FM_TALLY(FM_OP_FMA, sums * n);
        return;
    }
    FM_TALLY(FM_OP_SIGN, sums * n * (wc == FM_WCLASS_TERNARY ? 2 : 1));
    FM_TALLY(FM_OP_FADD, sums * n);
    FM_TALLY(FM_OP_FMUL, sums);
    (void)sums;
    (void)n;
}

void fmi_ref_dense_forward(fm_weight_class wc, const float *x, const float *w, float h, float *y,
                          int batch, int in, int out)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; b++)
        for (int j = 0; j < out; j++)
            y[(long)b * out + j] = dot(wc, x + (long)b * in, 1, w + j, out, in, h);
    tally_dots(wc, (uint64_t)batch * out, (uint64_t)in);
}

void fmi_ref_dense_backward_input(fm_weight_class wc, const float *e, const float *w, float h,
                                 float *dx, int batch, int in, int out)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < in; i++)
            dx[(long)b * in + i] = dot(wc, e + (long)b * out, 1, w + (long)i * out, 1, out, h);
    tally_dots(wc, (uint64_t)batch * in, (uint64_t)out);
}

/* e * q for q = 0 or +-2^k, without a multiply: k from q's exponent field is
 * added to e's exponent (ldexpf, exact or correctly rounded like the product),
 * q's sign flips the result, and q = 0 selects zero. */
static inline float times_pow2(float e, float q)
{
    uint32_t bits;
    memcpy(&bits, &q, sizeof bits);
    int k = (int)((bits >> 23) & 0xffu) - 127;
    float t = ldexpf(e, k);
    t = (bits & 0x80000000u) ? -t : t;
    return (bits & 0x7fffffffu) == 0 ? 0.0f : t;
}

/* Row i of dw = xᵀ·e into dw_row: each value's terms added in example order. */
static void backward_weights_row(int pow2, const float *x, const float *e, float *dw_row, int batch,
                                 int in, int out, int i)
{
    for (int j = 0; j < out; j++) {
        float acc = 0.0f;
        for (int b = 0; b < batch; b++) {
            float xv = x[(long)b * in + i], ev = e[(long)b * out + j];
            acc = pow2 ? acc + times_pow2(ev, xv) : fmaf(xv, ev, acc);
        }
        dw_row[j] = acc;
    }
}

static void tally_backward_weights(int pow2, uint64_t terms)
{
    if (pow2) {
        FM_TALLY(FM_OP_SHIFT, terms);
        FM_TALLY(FM_OP_SIGN, 2 * terms);
        FM_TALLY(FM_OP_FADD, terms);
    } else {
        FM_TALLY(FM_OP_FMA, terms);
    }
    (void)pow2, (void)terms;
}

void fmi_ref_dense_backward_weights(int pow2, const float *x, const float *e, float *dw, int batch,
                                   int in, int out)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < in; i++)
        backward_weights_row(pow2, x, e, dw + (long)i * out, batch, in, out, i);
    tally_backward_weights(pow2, (uint64_t)in * out * batch);
}

void fmi_ref_dense_backward_weights_rows(int pow2, const float *x, const float *e, float *dw_rows,
                                        int batch, int in, int out, int i0, int i1)
{
    for (int i = i0; i < i1; i++)
        backward_weights_row(pow2, x, e, dw_rows + (long)(i - i0) * out, batch, in, out, i);
    tally_backward_weights(pow2, (uint64_t)(i1 > i0 ? i1 - i0 : 0) * out * batch);
}
