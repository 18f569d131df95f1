/* pool.c — max-pooling on NHWC batches (conv.h): size x size windows moved by
 * stride without padding, the first of equal maxima chosen, and the gradient
 * routed back to the chosen inputs. Channels are the inner loop, so the
 * compares and selects vectorize across them. */
#include "conv.h"
#include "internal.h"

#include <string.h>

/* Parallel above this many output values. */
#define POOL_PARALLEL 32768

int fmi_pool_geom_init(fm_pool_geom *g, int in_h, int in_w, int c, int size, int stride)
{
    if (!g)
        return fmi_error(FM_EINVAL, "max-pool: no geometry to fill");
    if (in_h < 1 || in_w < 1 || c < 1 || size < 1 || stride < 1)
        return fmi_error(FM_EINVAL,
                        "max-pool: input %dx%dx%d, window %d, stride %d: sizes must be >= 1", in_h,
                        in_w, c, size, stride);
    if (size > in_h || size > in_w)
        return fmi_error(FM_EINVAL, "max-pool: %dx%d window larger than the %dx%d input", size, size,
                        in_h, in_w);
    if ((long long)in_h * in_w * c > INT32_MAX)
        return fmi_error(FM_EINVAL, "max-pool: input %dx%dx%d too large for int32 indices", in_h,
                        in_w, c);
    memset(g, 0, sizeof *g);
    g->in_h = in_h, g->in_w = in_w, g->c = c;
    g->size = size, g->stride = stride;
    g->out_h = (in_h - size) / stride + 1;
    g->out_w = (in_w - size) / stride + 1;
    return FM_OK;
}

static uint64_t pool_outputs(const fm_pool_geom *g, int batch)
{
    return (uint64_t)(batch > 0 ? batch : 0) * (uint64_t)g->out_h * (uint64_t)g->out_w *
           (uint64_t)g->c;
}

/* One output row (b, oy) per task. The window's first value starts the
 * maximum; each later one is compared (strictly greater replaces it, so the
 * first of equal maxima stays) and selected. */
void fmi_maxpool_forward(const fm_pool_geom *g, const float *x, float *y, int32_t *argmax, int batch)
{
    const int c = g->c, iw = g->in_w, oh = g->out_h, ow = g->out_w, k = g->size, s = g->stride;
    const long in_size = (long)g->in_h * iw * c;
    const long tasks = (long)(batch > 0 ? batch : 0) * oh;
#pragma omp parallel for schedule(static) if (pool_outputs(g, batch) > POOL_PARALLEL)
    for (long t = 0; t < tasks; t++) {
        const int b = (int)(t / oh), oy = (int)(t % oh);
        const float *xb = x + b * in_size;
        for (int ox = 0; ox < ow; ox++) {
            const long o = ((t * ow) + ox) * c;
            float *yo = y + o;
            const int32_t base = (int32_t)(((long)oy * s * iw + (long)ox * s) * c);
            memcpy(yo, xb + base, sizeof(float) * (size_t)c);
            if (argmax) {
                int32_t *ao = argmax + o;
                for (int ch = 0; ch < c; ch++)
                    ao[ch] = base + ch;
                for (int wy = 0; wy < k; wy++)
                    for (int wx = wy ? 0 : 1; wx < k; wx++) {
                        const int32_t at = base + (int32_t)(((long)wy * iw + wx) * c);
                        const float *v = xb + at;
                        for (int ch = 0; ch < c; ch++) {
                            const int gt = v[ch] > yo[ch];
                            yo[ch] = gt ? v[ch] : yo[ch];
                            ao[ch] = gt ? at + ch : ao[ch];
                        }
                    }
            } else {
                for (int wy = 0; wy < k; wy++)
                    for (int wx = wy ? 0 : 1; wx < k; wx++) {
                        const float *v = xb + base + ((long)wy * iw + wx) * c;
                        for (int ch = 0; ch < c; ch++)
                            yo[ch] = v[ch] > yo[ch] ? v[ch] : yo[ch];
                    }
            }
        }
    }
    uint64_t later = pool_outputs(g, batch) * (uint64_t)(k * k - 1);
    FM_TALLY(FM_OP_CMP, later);
    FM_TALLY(FM_OP_SIGN, later);
    (void)later;
}

/* One example per task: with overlapping windows two outputs may route to the
 * same input, so an example's map belongs to one thread and its sums keep
 * output order. Without overlap each input receives at most one value, a
 * store; with overlap every routed value is added. */
void fmi_maxpool_backward(const fm_pool_geom *g, const float *dy, const int32_t *argmax, float *dx,
                         int batch)
{
    const long in_size = (long)g->in_h * g->in_w * g->c;
    const long out_size = (long)g->out_h * g->out_w * g->c;
    const int overlap = g->stride < g->size;
#pragma omp parallel for schedule(static) if (pool_outputs(g, batch) > POOL_PARALLEL)
    for (int b = 0; b < batch; b++) {
        float *dxb = dx + b * in_size;
        const float *dyb = dy + b * out_size;
        const int32_t *ab = argmax + b * out_size;
        memset(dxb, 0, sizeof(float) * (size_t)in_size);
        if (overlap)
            for (long o = 0; o < out_size; o++)
                dxb[ab[o]] += dyb[o];
        else
            for (long o = 0; o < out_size; o++)
                dxb[ab[o]] = dyb[o];
    }
    uint64_t n = pool_outputs(g, batch);
    FM_TALLY(FM_OP_SIGN, n);
    if (overlap)
        FM_TALLY(FM_OP_FADD, n);
    (void)n;
}

void fmi_maxpool_cost_forward(const fm_cost *cost, const fm_pool_geom *g, int batch)
{
    uint64_t later = pool_outputs(g, batch) * (uint64_t)(g->size * g->size - 1);
    fmi_cost_ops(cost, FM_OP_CMP, later);  /* v > max */
    fmi_cost_ops(cost, FM_OP_SIGN, later); /* max (and its index) = the greater */
}

void fmi_maxpool_cost_backward(const fm_cost *cost, const fm_pool_geom *g, int batch)
{
    uint64_t n = pool_outputs(g, batch);
    fmi_cost_ops(cost, FM_OP_SIGN, n); /* route dy to the chosen input */
    if (g->stride < g->size)
        fmi_cost_ops(cost, FM_OP_FADD, n); /* overlapping windows sum */
}
