/* conv.c — 2-D convolution on NHWC batches as im2col + GEMM (conv.h): the
 * geometry, the column copy (im2col) and its adjoint (col2im), the three
 * passes through fmi_sgemm or the reference kernels of kernels.h, and their
 * ledger declarations. Examples go through in chunks whose size depends only
 * on the geometry and the batch, which bounds the column buffer. */
#include "conv.h"
#include "gemm.h"
#include "internal.h"
#include "layers.h"

#include <limits.h>
#include <string.h>

/* Floats of im2col columns per chunk (4 MB). The columns are written, then
 * read by the GEMM (or the GEMM's are read by col2im) while they still sit in
 * the caches; on the paper's network 4 MB took about 3% less CPU time than
 * 8 or 16 MB (the paper's 28x28x1152 columns: one example per chunk). */
#ifndef COL_CAP
#define COL_CAP ((size_t)1 << 20)
#endif
/* Parallel copies above this many floats; below, waking threads costs more. */
#define COPY_PARALLEL 32768

int fmi_conv_geom_init(fm_conv_geom *g, int in_h, int in_w, int in_c, int k, int stride, int same,
                      int out_c)
{
    if (!g)
        return fmi_error(FM_EINVAL, "conv: no geometry to fill");
    if (in_h < 1 || in_w < 1 || in_c < 1 || out_c < 1)
        return fmi_error(FM_EINVAL,
                        "conv: input %dx%dx%d with %d output channels: sizes must be >= 1", in_h,
                        in_w, in_c, out_c);
    if (k < 1 || stride < 1)
        return fmi_error(FM_EINVAL, "conv: kernel %d, stride %d: both must be >= 1", k, stride);
    if (!same && (k > in_h || k > in_w))
        return fmi_error(FM_EINVAL,
                        "conv: %dx%d kernel larger than the %dx%d input ('valid' padding)", k, k,
                        in_h, in_w);
    /* every index and row count below is an int: keep the sizes in range */
    if ((long long)k * k * in_c > INT_MAX / 4 || (long long)in_h * in_w * in_c > INT_MAX / 4 ||
        (long long)in_h * in_w * out_c > INT_MAX / 4)
        return fmi_error(FM_EINVAL, "conv: input %dx%dx%d, kernel %d, %d output channels: too large",
                        in_h, in_w, in_c, k, out_c);
    memset(g, 0, sizeof *g);
    g->in_h = in_h, g->in_w = in_w, g->in_c = in_c;
    g->k_h = k, g->k_w = k, g->stride = stride, g->out_c = out_c;
    if (same) {
        g->out_h = (in_h + stride - 1) / stride;
        g->out_w = (in_w + stride - 1) / stride;
        g->pad_top = FM_MAX((g->out_h - 1) * stride + k - in_h, 0) / 2;
        g->pad_left = FM_MAX((g->out_w - 1) * stride + k - in_w, 0) / 2;
    } else {
        g->out_h = (in_h - k) / stride + 1;
        g->out_w = (in_w - k) / stride + 1;
    }
    return FM_OK;
}

/* The columns are the input itself when every window is one whole pixel
 * (1x1 kernel, stride 1) or the whole map (one output position): the layer is
 * then a dense layer on the input, with no copy and no col2im. */
static int columns_are_input(const fm_conv_geom *g)
{
    if (g->pad_top || g->pad_left)
        return 0;
    if (g->k_h == 1 && g->k_w == 1 && g->stride == 1)
        return 1;
    return g->out_h == 1 && g->out_w == 1 && g->k_h == g->in_h && g->k_w == g->in_w;
}

static size_t col_floats_per_example(const fm_conv_geom *g)
{
    return (size_t)fmi_conv_positions(g) * (size_t)fmi_conv_fan_in(g);
}

/* Most examples one chunk may hold: its columns stay within COL_CAP. */
static int chunk_limit(const fm_conv_geom *g)
{
    size_t lim = COL_CAP / col_floats_per_example(g);
    return lim < 1 ? 1 : lim > INT_MAX ? INT_MAX : (int)lim;
}

/* Examples per chunk for a batch: the fewest chunks within the limit, sized
 * evenly (so no tiny last GEMM). Geometry and batch only, never threads. */
static int chunk_examples(const fm_conv_geom *g, int batch)
{
    if (batch < 1)
        return 1;
    if (columns_are_input(g))
        return batch;
    int lim = chunk_limit(g);
    if (batch <= lim)
        return batch;
    int chunks = (batch + lim - 1) / lim;
    return (batch + chunks - 1) / chunks;
}

int fmi_conv_chunk_examples(const fm_conv_geom *g, int batch) { return chunk_examples(g, batch); }

int fmi_conv_chunk_limit(const fm_conv_geom *g) { return columns_are_input(g) ? INT_MAX : chunk_limit(g); }

static int chunk_count(const fm_conv_geom *g, int batch)
{
    int cb = chunk_examples(g, batch);
    return batch < 1 ? 0 : (batch + cb - 1) / cb;
}

size_t fmi_conv_scratch_floats(const fm_conv_geom *g, int max_batch)
{
    if (max_batch < 1 || columns_are_input(g))
        return 0;
    int lim = chunk_limit(g);
    /* a smaller batch may take up to `lim` examples in one chunk */
    size_t floats = (size_t)FM_MIN(max_batch, lim) * col_floats_per_example(g);
    /* the reference weight gradient's partial sums of chunks after the first */
    if (max_batch > lim)
        floats += (size_t)fmi_conv_fan_in(g) * (size_t)g->out_c;
    return floats;
}

/* ---- im2col and col2im ---- */

static inline void copy_floats(float *dst, const float *src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = src[i];
}

static inline void zero_floats(float *dst, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = 0.0f;
}

/* col[(b*P + oy*out_w + ox) x fan_in] = the windows of nb examples x; one row
 * of windows (b, oy) per task. For one (ky), the window's kx run is k_w*in_c
 * consecutive input floats (channels fastest), clipped by the padding. */
static void im2col(const fm_conv_geom *g, const float *x, int nb, float *col)
{
    const int kh = g->k_h, kw = g->k_w, s = g->stride, ic = g->in_c;
    const int oh = g->out_h, ow = g->out_w, ih = g->in_h, iw = g->in_w;
    const int fan = fmi_conv_fan_in(g), run = kw * ic;
    const long in_size = (long)ih * iw * ic;
    const long tasks = (long)nb * oh;
    const int parallel = (size_t)nb * col_floats_per_example(g) > COPY_PARALLEL;
#pragma omp parallel for schedule(static) if (parallel)
    for (long t = 0; t < tasks; t++) {
        const int b = (int)(t / oh), oy = (int)(t % oh);
        const float *xb = x + b * in_size;
        float *row = col + ((long)b * oh * ow + (long)oy * ow) * fan;
        for (int ox = 0; ox < ow; ox++, row += fan) {
            const int ix0 = ox * s - g->pad_left;
            /* the in-bounds part of the kx run: columns [lo, hi) of the window */
            const int lo = FM_MAX(0, -ix0), hi = FM_MIN(kw, iw - ix0);
            for (int ky = 0; ky < kh; ky++) {
                const int iy = oy * s - g->pad_top + ky;
                float *dst = row + ky * run;
                if (iy < 0 || iy >= ih || lo >= hi) {
                    zero_floats(dst, run);
                    continue;
                }
                zero_floats(dst, lo * ic);
                copy_floats(dst + lo * ic, xb + ((long)iy * iw + ix0 + lo) * ic, (hi - lo) * ic);
                zero_floats(dst + hi * ic, (kw - hi) * ic);
            }
        }
    }
}

/* dx[nb examples] = the sum, per input value, of the column entries that
 * copied it (the adjoint of im2col). Gathered per input pixel, one input row
 * (b, iy) per task, so each value's sum has a fixed order (ky, kx ascending)
 * whatever the threads: the first entry is stored, the rest added, and a
 * pixel no window covers (dropped by the stride) is zeroed. Returns the adds. */
static uint64_t col2im(const fm_conv_geom *g, const float *col, int nb, float *dx)
{
    const int kh = g->k_h, kw = g->k_w, s = g->stride, ic = g->in_c;
    const int oh = g->out_h, ow = g->out_w, ih = g->in_h, iw = g->in_w;
    const int fan = fmi_conv_fan_in(g);
    const long tasks = (long)nb * ih;
    const int parallel = (size_t)nb * col_floats_per_example(g) > COPY_PARALLEL;
    uint64_t adds = 0;
#pragma omp parallel for schedule(static) reduction(+ : adds) if (parallel)
    for (long t = 0; t < tasks; t++) {
        const int b = (int)(t / ih), iy = (int)(t % ih);
        const float *colb = col + (long)b * oh * ow * fan;
        float *d = dx + ((long)b * ih + iy) * iw * ic;
        for (int ix = 0; ix < iw; ix++, d += ic) {
            int first = 1;
            for (int ky = 0; ky < kh; ky++) {
                const int ty = iy + g->pad_top - ky;
                if (ty < 0 || ty % s || ty / s >= oh)
                    continue;
                const float *colr = colb + (long)(ty / s) * ow * fan + ky * kw * ic;
                for (int kx = 0; kx < kw; kx++) {
                    const int tx = ix + g->pad_left - kx;
                    if (tx < 0 || tx % s || tx / s >= ow)
                        continue;
                    const float *src = colr + (long)(tx / s) * fan + kx * ic;
                    if (first) {
                        copy_floats(d, src, ic);
                        first = 0;
                    } else {
                        for (int c = 0; c < ic; c++)
                            d[c] += src[c];
                        adds += (uint64_t)ic;
                    }
                }
            }
            if (first)
                zero_floats(d, ic);
        }
    }
    return adds;
}

/* Adds col2im executes per example: a pixel covered by n windows takes n - 1
 * adds per channel. Coverage is separable, rows(iy) * cols(ix), so the total
 * is (sum rows)(sum cols) - (rows covered)(cols covered), times in_c. */
static void coverage(int in, int out, int k, int s, int pad, uint64_t *sum, uint64_t *covered)
{
    *sum = 0, *covered = 0;
    for (int i = 0; i < in; i++) {
        uint64_t n = 0;
        for (int kk = 0; kk < k; kk++) {
            int t = i + pad - kk;
            n += t >= 0 && t % s == 0 && t / s < out;
        }
        *sum += n;
        *covered += n > 0;
    }
}

static uint64_t col2im_adds_per_example(const fm_conv_geom *g)
{
    uint64_t sr, cr, sc, cc;
    coverage(g->in_h, g->out_h, g->k_h, g->stride, g->pad_top, &sr, &cr);
    coverage(g->in_w, g->out_w, g->k_w, g->stride, g->pad_left, &sc, &cc);
    return (sr * sc - cr * cc) * (uint64_t)g->in_c;
}

/* Valid taps along one axis, summed over the outputs: a window's taps inside
 * the input (as fmi_conv_window of infer.h clips them). */
static uint64_t valid_span(int in, int out, int k, int s, int pad)
{
    uint64_t sum = 0;
    for (int o = 0, i0 = -pad; o < out; o++, i0 += s) {
        int lo = FM_MAX(0, -i0), hi = FM_MIN(k, in - i0);
        sum += (uint64_t)FM_MAX(0, hi - lo);
    }
    return sum;
}

uint64_t fmi_conv_valid_taps(const fm_conv_geom *g)
{
    /* a window's valid taps are its valid rows times its valid columns */
    return valid_span(g->in_h, g->out_h, g->k_h, g->stride, g->pad_top) *
           valid_span(g->in_w, g->out_w, g->k_w, g->stride, g->pad_left);
}

/* ---- the three products, fast or reference (rows = positions of a chunk) ----
 * fmi_sgemm cuts its product in a grid that does not depend on the thread
 * count (gemm.c), and the chunks depend on the geometry and the batch only:
 * the same bits on any number of threads. */

static void product_forward(const fm_product *p, const float *col, const float *w, float *y,
                            int rows, int fan, int oc)
{
    if (p->reference)
        fmi_ref_dense_forward((fm_weight_class)p->wclass, col, w, p->h, y, rows, fan, oc);
    else
        fmi_sgemm(0, 0, rows, oc, fan, 1.0f, col, fan, w, oc, 0.0f, y, oc);
}

static void product_backward_input(const fm_product *p, const float *dy, const float *w,
                                   float *dcol, int rows, int fan, int oc)
{
    if (p->reference)
        fmi_ref_dense_backward_input((fm_weight_class)p->wclass, dy, w, p->h, dcol, rows, fan, oc);
    else
        fmi_sgemm(0, 1, rows, fan, oc, 1.0f, dy, oc, w, oc, 0.0f, dcol, fan);
}

void fmi_conv_forward(const fm_conv_geom *g, const fm_product *p, const float *x, const float *w,
                     float *y, int batch, float *scratch)
{
    const int fan = fmi_conv_fan_in(g), P = fmi_conv_positions(g), oc = g->out_c;
    if (batch < 1)
        return;
    if (columns_are_input(g)) {
        product_forward(p, x, w, y, batch * P, fan, oc);
        return;
    }
    const long in_size = (long)g->in_h * g->in_w * g->in_c;
    const int cb = chunk_examples(g, batch);
    for (int b0 = 0; b0 < batch; b0 += cb) {
        const int nb = FM_MIN(cb, batch - b0);
        im2col(g, x + b0 * in_size, nb, scratch);
        product_forward(p, scratch, w, y + (long)b0 * P * oc, nb * P, fan, oc);
    }
}

void fmi_conv_backward_input(const fm_conv_geom *g, const fm_product *p, const float *dy,
                            const float *w, float *dx, int batch, float *scratch)
{
    const int fan = fmi_conv_fan_in(g), P = fmi_conv_positions(g), oc = g->out_c;
    if (batch < 1)
        return;
    if (columns_are_input(g)) {
        product_backward_input(p, dy, w, dx, batch * P, fan, oc);
        return;
    }
    const long in_size = (long)g->in_h * g->in_w * g->in_c;
    const int cb = chunk_examples(g, batch);
    uint64_t adds = 0;
    for (int b0 = 0; b0 < batch; b0 += cb) {
        const int nb = FM_MIN(cb, batch - b0);
        product_backward_input(p, dy + (long)b0 * P * oc, w, scratch, nb * P, fan, oc);
        adds += col2im(g, scratch, nb, dx + b0 * in_size);
    }
    FM_TALLY(FM_OP_FADD, adds);
    (void)adds;
}

void fmi_conv_backward_weights_rows(const fm_conv_geom *g, const float *x, const float *dy, float *dw,
                                   int batch, float *scratch, fm_conv_rows_grad rows, void *ctx,
                                   int accumulates)
{
    const int fan = fmi_conv_fan_in(g), P = fmi_conv_positions(g), oc = g->out_c;
    const long n = (long)fan * oc;
    if (batch < 1) {
        memset(dw, 0, sizeof(float) * (size_t)n);
        return;
    }
    if (columns_are_input(g)) {
        rows(ctx, x, dy, dw, batch * P, fan, oc, 0);
        return;
    }
    const long in_size = (long)g->in_h * g->in_w * g->in_c;
    const int cb = chunk_examples(g, batch);
    float *col = scratch, *part = scratch + (size_t)cb * col_floats_per_example(g);
    for (int b0 = 0; b0 < batch; b0 += cb) {
        const int nb = FM_MIN(cb, batch - b0);
        im2col(g, x + b0 * in_size, nb, col);
        const float *e = dy + (long)b0 * P * oc;
        if (b0 == 0 || accumulates) { /* the first chunk overwrites dw */
            rows(ctx, col, e, dw, nb * P, fan, oc, b0 > 0);
            continue;
        }
        /* a kernel that overwrites: a partial sum, then one add each */
        rows(ctx, col, e, part, nb * P, fan, oc, 0);
#pragma omp parallel for simd schedule(static) if (n > COPY_PARALLEL)
        for (long i = 0; i < n; i++)
            dw[i] += part[i];
        FM_TALLY(FM_OP_FADD, n);
    }
}

/* The reference kernel as fm_conv_rows_grad (it overwrites); ctx points at pow2. */
static void reference_rows(void *ctx, const float *cols, const float *e, float *dw, int rows, int fan,
                           int oc, int accumulate)
{
    (void)accumulate;
    fmi_ref_dense_backward_weights(*(const int *)ctx, cols, e, dw, rows, fan, oc);
}

/* The GEMM, which accumulates into dw (beta = 1) for the chunks after the first. */
static void gemm_rows(void *ctx, const float *cols, const float *e, float *dw, int rows, int fan, int oc,
                      int accumulate)
{
    (void)ctx;
    fmi_sgemm(1, 0, fan, oc, rows, 1.0f, cols, fan, e, oc, accumulate ? 1.0f : 0.0f, dw, oc);
}

void fmi_conv_backward_weights(const fm_conv_geom *g, const fm_product *p, int pow2, const float *x,
                              const float *dy, float *dw, int batch, float *scratch)
{
    if (p->reference)
        fmi_conv_backward_weights_rows(g, x, dy, dw, batch, scratch, reference_rows, &pow2, 0);
    else
        fmi_conv_backward_weights_rows(g, x, dy, dw, batch, scratch, gemm_rows, NULL, 1);
}

/* ---- ledger declarations ---- */

void fmi_conv_cost_forward(const fm_cost *cost, const fm_conv_geom *g, int wclass, int batch)
{
    fmi_dense_cost_forward(cost, wclass, batch * fmi_conv_positions(g), fmi_conv_fan_in(g), g->out_c);
}

void fmi_conv_cost_backward_input(const fm_cost *cost, const fm_conv_geom *g, int wclass, int batch)
{
    fmi_dense_cost_backward_input(cost, wclass, batch * fmi_conv_positions(g), fmi_conv_fan_in(g),
                                 g->out_c);
    /* the overlapping columns' adds (none when the columns are the input) */
    if (batch > 0 && !columns_are_input(g))
        fmi_cost_ops(cost, FM_OP_FADD, (uint64_t)batch * col2im_adds_per_example(g));
}

void fmi_conv_cost_backward_weights(const fm_cost *cost, const fm_conv_geom *g, int pow2, int batch)
{
    fmi_dense_cost_backward_weights(cost, pow2, batch * fmi_conv_positions(g), fmi_conv_fan_in(g),
                                   g->out_c);
    /* the reference path's partial sums of the chunks after the first */
    int chunks = chunk_count(g, batch);
    if (chunks > 1)
        fmi_cost_ops(cost, FM_OP_FADD,
                    (uint64_t)(chunks - 1) * (uint64_t)fmi_conv_fan_in(g) * (uint64_t)g->out_c);
}
