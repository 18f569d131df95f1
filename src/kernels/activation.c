/* activation.c — ReLU, sign (binary activations with a straight-through
 * gradient) and inverted dropout, element-wise. */
#include "layers.h"
#include "rng.h"

#include <math.h>

void fmi_relu_forward(const float *x, float *y, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    FM_TALLY(FM_OP_CMP, n);
    FM_TALLY(FM_OP_SIGN, n);
}

void fmi_relu_backward(const float *y, const float *dy, float *dx, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    FM_TALLY(FM_OP_CMP, n);
    FM_TALLY(FM_OP_SIGN, n);
}

void fmi_sign_forward(const float *x, float *y, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] >= 0.0f ? 1.0f : -1.0f;
    FM_TALLY(FM_OP_CMP, n);
    FM_TALLY(FM_OP_SIGN, n);
}

void fmi_sign_backward(const float *x, const float *dy, float *dx, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        dx[i] = fabsf(x[i]) <= 1.0f ? dy[i] : 0.0f;
    FM_TALLY(FM_OP_CMP, n);
    FM_TALLY(FM_OP_SIGN, 2 * n);
}

void fmi_dropout_forward(const float *x, float *y, uint8_t *mask, size_t n, float p, uint64_t key,
                        uint64_t first)
{
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float u = (float)(fmi_rand_u32(key, first + i) >> 8) * 0x1p-24f;
        mask[i] = u >= p;
        y[i] = mask[i] ? x[i] * scale : 0.0f;
    }
    FM_TALLY(FM_OP_RAND, n);
    FM_TALLY(FM_OP_CMP, n);
    FM_TALLY(FM_OP_FMUL, n);
    FM_TALLY(FM_OP_SIGN, n);
}

void fmi_dropout_backward(const float *dy, float *dx, const uint8_t *mask, size_t n, float p)
{
    const float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++)
        dx[i] = mask[i] ? dy[i] * scale : 0.0f;
    FM_TALLY(FM_OP_FMUL, n);
    FM_TALLY(FM_OP_SIGN, n);
}

void fmi_relu_cost(const fm_cost *c, uint64_t n)
{
    fmi_cost_ops(c, FM_OP_CMP, n);
    fmi_cost_ops(c, FM_OP_SIGN, n);
}

void fmi_sign_cost_forward(const fm_cost *c, uint64_t n)
{
    fmi_cost_ops(c, FM_OP_CMP, n);
    fmi_cost_ops(c, FM_OP_SIGN, n);
}

void fmi_sign_cost_backward(const fm_cost *c, uint64_t n)
{
    fmi_cost_ops(c, FM_OP_CMP, n);
    fmi_cost_ops(c, FM_OP_SIGN, 2 * n); /* |x|, then the select */
}

void fmi_dropout_cost_forward(const fm_cost *c, uint64_t n)
{
    fmi_cost_ops(c, FM_OP_RAND, n);
    fmi_cost_ops(c, FM_OP_CMP, n);
    fmi_cost_ops(c, FM_OP_FMUL, n);
    fmi_cost_ops(c, FM_OP_SIGN, n);
}

void fmi_dropout_cost_backward(const fm_cost *c, uint64_t n)
{
    fmi_cost_ops(c, FM_OP_FMUL, n);
    fmi_cost_ops(c, FM_OP_SIGN, n);
}
