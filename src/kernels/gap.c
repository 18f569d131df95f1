/* gap.c — global average pooling on NHWC batches (conv.h): each channel's
 * mean over the map's positions, and its gradient spread evenly back. Each
 * output sums its positions in order on one thread, so the results do not
 * depend on the thread count. */
#include "conv.h"
#include "internal.h"

/* Parallel above this many input values. */
#define GAP_PARALLEL 32768

void fmi_gap_forward(const float *x, float *y, int batch, int positions, int channels)
{
    const float inv = 1.0f / (float)positions;
    const long n = (long)batch * positions * channels;
#pragma omp parallel for schedule(static) if (n > GAP_PARALLEL)
    for (int b = 0; b < batch; b++) {
        const float *xb = x + (long)b * positions * channels;
        float *yb = y + (long)b * channels;
        for (int c = 0; c < channels; c++)
            yb[c] = xb[c];
        for (int p = 1; p < positions; p++)
            for (int c = 0; c < channels; c++)
                yb[c] += xb[(long)p * channels + c];
        for (int c = 0; c < channels; c++)
            yb[c] *= inv;
    }
    FM_TALLY(FM_OP_FSPECIAL, 1);
    FM_TALLY(FM_OP_FADD, (uint64_t)batch * (positions - 1) * channels);
    FM_TALLY(FM_OP_FMUL, (uint64_t)batch * channels);
}

void fmi_gap_backward(const float *dy, float *dx, int batch, int positions, int channels)
{
    const float inv = 1.0f / (float)positions;
    const long n = (long)batch * positions * channels;
#pragma omp parallel for schedule(static) if (n > GAP_PARALLEL)
    for (int b = 0; b < batch; b++) {
        const float *dyb = dy + (long)b * channels;
        float *dxb = dx + (long)b * positions * channels;
        for (int p = 0; p < positions; p++)
            for (int c = 0; c < channels; c++)
                dxb[(long)p * channels + c] = dyb[c] * inv;
    }
    FM_TALLY(FM_OP_FSPECIAL, 1);
    FM_TALLY(FM_OP_FMUL, (uint64_t)n);
}

void fmi_gap_cost_forward(const fm_cost *cost, int batch, int positions, int channels)
{
    fmi_cost_ops(cost, FM_OP_FSPECIAL, 1); /* 1 / positions */
    fmi_cost_ops(cost, FM_OP_FADD, (uint64_t)batch * (positions - 1) * channels);
    fmi_cost_ops(cost, FM_OP_FMUL, (uint64_t)batch * channels);
}

void fmi_gap_cost_backward(const fm_cost *cost, int batch, int positions, int channels)
{
    fmi_cost_ops(cost, FM_OP_FSPECIAL, 1);
    fmi_cost_ops(cost, FM_OP_FMUL, (uint64_t)batch * positions * channels);
}
