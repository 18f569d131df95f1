/* test_conv.c — convolution and max-pooling (src/kernels/conv.h): im2col +
 * GEMM against direct loops in double for many geometries, both product
 * paths and binary/ternary/power-of-two operands; finite-difference gradients
 * of conv, max-pool and batch norm per feature map; global average pooling; geometry and its errors;
 * identical results whatever the threads; and, in a counting build, executed
 * operations equal to the ledger declarations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "internal.h"
#include "layers.h"
#include "ledger.h"
#include "rng.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static fm_rng rng;

static void fill(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (2.0f * fmi_rng_uniform(&rng) - 1.0f) * scale;
}

static float *falloc(size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    return p;
}

/* ---- direct loops in double: the definition of the layer ---- */

static size_t in_count(const fm_conv_geom *g, int batch)
{
    return (size_t)batch * g->in_h * g->in_w * g->in_c;
}
static size_t out_count(const fm_conv_geom *g, int batch)
{
    return (size_t)batch * g->out_h * g->out_w * g->out_c;
}
static size_t w_count(const fm_conv_geom *g) { return (size_t)fmi_conv_fan_in(g) * g->out_c; }

/* Calls f(xi, wi, yi) for every product term x[xi] * w[wi] feeding y[yi]:
 * batch, output row, column, channel, kernel row, column, input channel. */
#define FOR_EACH_TERM(g, batch, BODY)                                                      \
    for (int b = 0; b < (batch); b++)                                                      \
        for (int oy = 0; oy < (g)->out_h; oy++)                                            \
            for (int ox = 0; ox < (g)->out_w; ox++)                                        \
                for (int o = 0; o < (g)->out_c; o++)                                       \
                    for (int ky = 0; ky < (g)->k_h; ky++)                                  \
                        for (int kx = 0; kx < (g)->k_w; kx++)                              \
                            for (int c = 0; c < (g)->in_c; c++) {                          \
                                int iy = oy * (g)->stride - (g)->pad_top + ky;             \
                                int ix = ox * (g)->stride - (g)->pad_left + kx;            \
                                if (iy < 0 || iy >= (g)->in_h || ix < 0 || ix >= (g)->in_w) \
                                    continue;                                              \
                                size_t xi = (((size_t)b * (g)->in_h + iy) * (g)->in_w + ix) *  \
                                                (g)->in_c + c;                             \
                                size_t wi = ((size_t)(ky * (g)->k_w + kx) * (g)->in_c + c) *   \
                                                (g)->out_c + o;                            \
                                size_t yi = (((size_t)b * (g)->out_h + oy) * (g)->out_w + ox) * \
                                                (g)->out_c + o;                            \
                                BODY                                                       \
                            }

/* The three passes with, per result, the sum of |terms| (for the tolerance). */
static void direct_forward(const fm_conv_geom *g, const float *x, const float *w, int batch,
                           double *y, double *mag)
{
    memset(y, 0, sizeof(double) * out_count(g, batch));
    memset(mag, 0, sizeof(double) * out_count(g, batch));
    FOR_EACH_TERM(g, batch, {
        double t = (double)x[xi] * w[wi];
        y[yi] += t;
        mag[yi] += fabs(t);
    })
}

static void direct_backward_input(const fm_conv_geom *g, const float *dy, const float *w, int batch,
                                  double *dx, double *mag)
{
    memset(dx, 0, sizeof(double) * in_count(g, batch));
    memset(mag, 0, sizeof(double) * in_count(g, batch));
    FOR_EACH_TERM(g, batch, {
        double t = (double)dy[yi] * w[wi];
        dx[xi] += t;
        mag[xi] += fabs(t);
    })
}

static void direct_backward_weights(const fm_conv_geom *g, const float *x, const float *dy,
                                    int batch, double *dw, double *mag)
{
    memset(dw, 0, sizeof(double) * w_count(g));
    memset(mag, 0, sizeof(double) * w_count(g));
    FOR_EACH_TERM(g, batch, {
        double t = (double)x[xi] * dy[yi];
        dw[wi] += t;
        mag[wi] += fabs(t);
    })
}

/* Tolerance of a float sum of n terms in any order: |error| <= n * eps * sum|terms|
 * (the classic bound for recursive summation, which blocked sums also meet). */
static void assert_close_to(const float *got, const double *want, const double *mag, size_t count,
                            int terms, const char *what, const char *where)
{
    for (size_t i = 0; i < count; i++) {
        double tol = (terms + 1) * (double)FLT_EPSILON * mag[i] + 1e-30;
        if (!(fabs(got[i] - want[i]) <= tol))
            fail_msg("%s, %s: [%zu] = %.9g, direct %.9g (tolerance %.3g)", what, where, i,
                     got[i], want[i], tol);
    }
}

/* ---- geometries ---- */

typedef struct shape {
    int h, w, c, k, s, same, oc, batch;
} shape;

static void geom(fm_conv_geom *g, const shape *sh)
{
    assert_int_equal(fmi_conv_geom_init(g, sh->h, sh->w, sh->c, sh->k, sh->s, sh->same, sh->oc),
                     FM_OK);
}

static const char *describe(const shape *sh)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "%dx%dx%d k%d s%d %s -> %d, batch %d", sh->h, sh->w, sh->c, sh->k,
             sh->s, sh->same ? "same" : "valid", sh->oc, sh->batch);
    return buf;
}

/* Valid and same, strides 1-3, kernels 1-5 (even ones with same and stride
 * > 1), odd and non-square maps, 1 or several channels, 1 or several
 * examples, and the two cases whose columns are the input itself. */
static const shape shapes[] = {
    {5, 5, 1, 1, 1, 0, 2, 1},   {6, 5, 1, 3, 1, 0, 3, 2},  {7, 7, 3, 3, 1, 1, 4, 3},
    {7, 9, 3, 2, 1, 1, 2, 2},   {8, 8, 2, 4, 1, 1, 3, 1},  {9, 7, 3, 3, 2, 0, 5, 2},
    {9, 9, 4, 3, 2, 1, 3, 3},   {8, 7, 3, 4, 2, 1, 2, 2},  {10, 10, 3, 2, 2, 1, 4, 2},
    {11, 8, 2, 5, 3, 0, 3, 2},  {11, 11, 3, 5, 3, 1, 2, 3}, {7, 10, 1, 4, 3, 1, 2, 1},
    {5, 6, 3, 5, 1, 1, 2, 2},   {3, 3, 2, 5, 1, 1, 3, 2},  {2, 2, 5, 2, 1, 0, 3, 4},
    {4, 4, 3, 4, 2, 0, 2, 2},   {6, 6, 5, 1, 1, 1, 4, 3},  {6, 6, 5, 1, 2, 0, 3, 2},
    {5, 5, 8, 5, 1, 0, 6, 2},   {4, 3, 2, 3, 3, 1, 2, 2},
};
enum { N_SHAPES = sizeof shapes / sizeof shapes[0] };

/* Several chunks: columns of the whole batch exceed the scratch. */
static const shape chunked = {40, 40, 24, 3, 1, 1, 3, 7};

typedef struct buffers {
    fm_conv_geom g;
    int batch;
    float *x, *w, *y, *dy, *dx, *dw, *scratch;
    double *ref, *mag;
} buffers;

static void buffers_open(buffers *t, const shape *sh, float wscale)
{
    geom(&t->g, sh);
    t->batch = sh->batch;
    size_t ni = in_count(&t->g, sh->batch), no = out_count(&t->g, sh->batch), nw = w_count(&t->g);
    size_t most = FM_MAX(FM_MAX(ni, no), nw);
    t->x = falloc(ni), t->dx = falloc(ni);
    t->y = falloc(no), t->dy = falloc(no);
    t->w = falloc(nw), t->dw = falloc(nw);
    /* exactly the declared scratch: AddressSanitizer catches any overrun */
    t->scratch = falloc(fmi_conv_scratch_floats(&t->g, sh->batch));
    t->ref = malloc(sizeof(double) * most);
    t->mag = malloc(sizeof(double) * most);
    assert_non_null(t->ref);
    assert_non_null(t->mag);
    fill(t->x, ni, 1.0f);
    fill(t->dy, no, 1.0f);
    fill(t->w, nw, wscale);
}

static void buffers_close(buffers *t)
{
    free(t->x), free(t->dx), free(t->y), free(t->dy), free(t->w), free(t->dw), free(t->scratch);
    free(t->ref), free(t->mag);
}

/* All three passes of one product path against the direct loops. */
static void check_passes(buffers *t, const fm_product *p, int pow2, const char *where)
{
    const fm_conv_geom *g = &t->g;
    int B = t->batch;
    fmi_conv_forward(g, p, t->x, t->w, t->y, B, t->scratch);
    direct_forward(g, t->x, t->w, B, t->ref, t->mag);
    assert_close_to(t->y, t->ref, t->mag, out_count(g, B), fmi_conv_fan_in(g), "forward", where);

    memset(t->dx, 0xff, sizeof(float) * in_count(g, B)); /* NaN: every value must be written */
    fmi_conv_backward_input(g, p, t->dy, t->w, t->dx, B, t->scratch);
    direct_backward_input(g, t->dy, t->w, B, t->ref, t->mag);
    assert_close_to(t->dx, t->ref, t->mag, in_count(g, B), g->k_h * g->k_w * g->out_c,
                    "backward input", where);

    memset(t->dw, 0xff, sizeof(float) * w_count(g));
    fmi_conv_backward_weights(g, p, pow2, t->x, t->dy, t->dw, B, t->scratch);
    direct_backward_weights(g, t->x, t->dy, B, t->ref, t->mag);
    assert_close_to(t->dw, t->ref, t->mag, w_count(g), B * fmi_conv_positions(g),
                    "backward weights", where);
}

static void test_conv_matches_direct(void **state)
{
    (void)state;
    const fm_product fast = {0, FM_WCLASS_REAL, 0.0f}, ref = {1, FM_WCLASS_REAL, 0.0f};
    for (int i = 0; i < N_SHAPES; i++) {
        buffers t;
        buffers_open(&t, &shapes[i], 0.5f);
        char where[160];
        snprintf(where, sizeof where, "%s (gemm)", describe(&shapes[i]));
        check_passes(&t, &fast, 0, where);
        snprintf(where, sizeof where, "%s (reference)", describe(&shapes[i]));
        check_passes(&t, &ref, 0, where);
        buffers_close(&t);
    }
}

static void test_conv_chunks(void **state)
{
    (void)state;
    const fm_product fast = {0, FM_WCLASS_REAL, 0.0f}, ref = {1, FM_WCLASS_REAL, 0.0f};
    buffers t;
    buffers_open(&t, &chunked, 0.5f);
    const size_t whole = (size_t)chunked.batch * fmi_conv_positions(&t.g) * fmi_conv_fan_in(&t.g);
    /* the case is meant to take several chunks: its scratch is smaller than
     * the columns of the whole batch */
    assert_true(fmi_conv_scratch_floats(&t.g, chunked.batch) < whole);
    check_passes(&t, &fast, 0, "several chunks (gemm)");
    check_passes(&t, &ref, 0, "several chunks (reference)");
    /* every smaller batch fits the scratch sized for the largest (ASan checks) */
    for (int b = 1; b < chunked.batch; b++) {
        t.batch = b;
        char where[64];
        snprintf(where, sizeof where, "several chunks, batch %d", b);
        check_passes(&t, &fast, 0, where);
    }
    buffers_close(&t);
}

/* Weights of +-h (binary) or +-h, 0 (ternary) through the reference path's
 * sign selects; Q(x)-like inputs (0, +-2^k) through the exponent adds. */
static void test_conv_weight_classes(void **state)
{
    (void)state;
    const float h = 0.375f;
    const shape cases[] = {shapes[2], shapes[7], shapes[10], shapes[14], chunked};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int wc = FM_WCLASS_BINARY; wc <= FM_WCLASS_TERNARY; wc++) {
            buffers t;
            buffers_open(&t, &cases[i], 1.0f);
            for (size_t j = 0; j < w_count(&t.g); j++) {
                float v = t.w[j] >= 0.0f ? h : -h;
                t.w[j] = wc == FM_WCLASS_TERNARY && fabsf(t.w[j]) < 0.3f ? 0.0f : v;
            }
            for (size_t j = 0; j < in_count(&t.g, t.batch); j++) {
                float v = t.x[j];
                t.x[j] = fabsf(v) < 0.1f ? 0.0f : copysignf(ldexpf(1.0f, (int)(v * 8.0f)), v);
            }
            const fm_product p = {1, wc, h};
            char where[160];
            snprintf(where, sizeof where, "%s (%s, pow2)", describe(&cases[i]),
                     wc == FM_WCLASS_BINARY ? "binary" : "ternary");
            check_passes(&t, &p, 1, where);
            buffers_close(&t);
        }
}

/* ---- finite differences (as in test_grad.c) ---- */

static void assert_grad_close(const float *analytic, const double *numeric, size_t n, double tol,
                              const char *what)
{
    double top = 1e-12;
    for (size_t i = 0; i < n; i++)
        top = fmax(top, fabs(numeric[i]));
    for (size_t i = 0; i < n; i++)
        if (fabs(analytic[i] - numeric[i]) > tol * top)
            fail_msg("%s[%zu]: analytic %.6g numeric %.6g (scale %.3g)", what, i, analytic[i],
                     numeric[i], top);
}

static double dotf(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* d/dp sum(r .* conv(x, w)) for every element of p (x or w). */
static void numeric_conv(buffers *t, float *p, size_t n, double *out)
{
    const fm_product fast = {0, FM_WCLASS_REAL, 0.0f};
    const float h = 1e-2f;
    size_t no = out_count(&t->g, t->batch);
    for (size_t i = 0; i < n; i++) {
        float keep = p[i];
        p[i] = keep + h;
        fmi_conv_forward(&t->g, &fast, t->x, t->w, t->y, t->batch, t->scratch);
        double up = dotf(t->dy, t->y, no);
        p[i] = keep - h;
        fmi_conv_forward(&t->g, &fast, t->x, t->w, t->y, t->batch, t->scratch);
        out[i] = (up - dotf(t->dy, t->y, no)) / (2 * h);
        p[i] = keep;
    }
}

static void test_conv_gradients(void **state)
{
    (void)state;
    const shape cases[] = {{6, 5, 2, 3, 1, 0, 3, 2}, {7, 7, 2, 3, 1, 1, 2, 2},
                           {8, 7, 2, 4, 2, 1, 3, 2}, {9, 8, 2, 3, 3, 0, 2, 2}};
    const fm_product fast = {0, FM_WCLASS_REAL, 0.0f};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buffers t;
        buffers_open(&t, &cases[i], 0.5f); /* dy plays r */
        size_t ni = in_count(&t.g, t.batch), nw = w_count(&t.g);
        double *num = malloc(sizeof(double) * FM_MAX(ni, nw));
        assert_non_null(num);
        fmi_conv_backward_input(&t.g, &fast, t.dy, t.w, t.dx, t.batch, t.scratch);
        fmi_conv_backward_weights(&t.g, &fast, 0, t.x, t.dy, t.dw, t.batch, t.scratch);
        char what[160];
        numeric_conv(&t, t.x, ni, num);
        snprintf(what, sizeof what, "conv dx %s", describe(&cases[i]));
        assert_grad_close(t.dx, num, ni, 1e-3, what);
        numeric_conv(&t, t.w, nw, num);
        snprintf(what, sizeof what, "conv dw %s", describe(&cases[i]));
        assert_grad_close(t.dw, num, nw, 1e-3, what);
        free(num);
        buffers_close(&t);
    }
}

/* Distinct values 0.1 apart, shuffled: a step of 1e-2 never reorders a window. */
static void fill_distinct(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.1f * (float)i - 0.05f * (float)n;
    for (size_t i = n; i > 1; i--) {
        size_t j = fmi_rng_below(&rng, (uint32_t)i);
        float v = x[i - 1];
        x[i - 1] = x[j];
        x[j] = v;
    }
}

static void test_maxpool_gradient(void **state)
{
    (void)state;
    /* non-overlapping, overlapping (sums in dx), and a dropped border */
    const int cases[][5] = {{6, 6, 3, 2, 2}, {7, 7, 2, 3, 2}, {7, 5, 2, 2, 2}, {5, 6, 2, 2, 1}};
    enum { B = 2 };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fm_pool_geom g;
        assert_int_equal(
            fmi_pool_geom_init(&g, cases[k][0], cases[k][1], cases[k][2], cases[k][3], cases[k][4]),
            FM_OK);
        size_t ni = (size_t)B * g.in_h * g.in_w * g.c, no = (size_t)B * g.out_h * g.out_w * g.c;
        float *x = falloc(ni), *dx = falloc(ni), *y = falloc(no), *r = falloc(no);
        int32_t *am = malloc(sizeof(int32_t) * no);
        double *num = malloc(sizeof(double) * ni);
        fill_distinct(x, ni);
        fill(r, no, 1.0f);
        fmi_maxpool_forward(&g, x, y, am, B);
        fmi_maxpool_backward(&g, r, am, dx, B);
        const float h = 1e-2f;
        for (size_t i = 0; i < ni; i++) {
            float keep = x[i];
            x[i] = keep + h;
            fmi_maxpool_forward(&g, x, y, NULL, B);
            double up = dotf(r, y, no);
            x[i] = keep - h;
            fmi_maxpool_forward(&g, x, y, NULL, B);
            num[i] = (up - dotf(r, y, no)) / (2 * h);
            x[i] = keep;
        }
        char what[64];
        snprintf(what, sizeof what, "max-pool dx case %zu", k);
        assert_grad_close(dx, num, ni, 1e-3, what);
        free(x), free(dx), free(y), free(r), free(am), free(num);
    }
}

/* Forward against a direct loop, with ties: the first (row-major) maximum
 * wins, its index is the map index, and NULL argmax gives the same maxima. */
static void test_maxpool_forward(void **state)
{
    (void)state;
    const int cases[][5] = {{6, 6, 3, 2, 2}, {7, 8, 4, 3, 2}, {5, 5, 2, 3, 1}, {9, 7, 3, 3, 3}};
    enum { B = 3 };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fm_pool_geom g;
        assert_int_equal(
            fmi_pool_geom_init(&g, cases[k][0], cases[k][1], cases[k][2], cases[k][3], cases[k][4]),
            FM_OK);
        size_t ni = (size_t)B * g.in_h * g.in_w * g.c, no = (size_t)B * g.out_h * g.out_w * g.c;
        float *x = falloc(ni), *y = falloc(no), *y2 = falloc(no);
        int32_t *am = malloc(sizeof(int32_t) * no);
        for (size_t i = 0; i < ni; i++) /* few levels: many ties */
            x[i] = (float)fmi_rng_below(&rng, 4) - 1.5f;
        fmi_maxpool_forward(&g, x, y, am, B);
        fmi_maxpool_forward(&g, x, y2, NULL, B);
        assert_memory_equal(y, y2, sizeof(float) * no);
        size_t o = 0;
        for (int b = 0; b < B; b++)
            for (int oy = 0; oy < g.out_h; oy++)
                for (int ox = 0; ox < g.out_w; ox++)
                    for (int ch = 0; ch < g.c; ch++, o++) {
                        const float *xb = x + (size_t)b * g.in_h * g.in_w * g.c;
                        int best = -1;
                        for (int wy = 0; wy < g.size; wy++)
                            for (int wx = 0; wx < g.size; wx++) {
                                int at = ((oy * g.stride + wy) * g.in_w + ox * g.stride + wx) *
                                             g.c + ch;
                                if (best < 0 || xb[at] > xb[best])
                                    best = at;
                            }
                        if (am[o] != best || y[o] != xb[best])
                            fail_msg("pool case %zu output %zu: argmax %d value %g, expected "
                                     "%d (%g)", k, o, am[o], y[o], best, xb[best]);
                    }
        free(x), free(y), free(y2), free(am);
    }
}

/* Global average pooling against a direct loop in double, its gradient by
 * finite differences, the same bits on 1 and 2 threads, and (counting build)
 * executed operations equal to its declarations. */
static void test_gap(void **state)
{
    (void)state;
    const int cases[][2] = {{1, 3}, {9, 4}, {49, 5}, {1000, 70}}; /* positions, channels */
    enum { B = 3 };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int P = cases[k][0], C = cases[k][1];
        size_t ni = (size_t)B * P * C, no = (size_t)B * C;
        float *x = falloc(ni), *dx = falloc(ni), *dx2 = falloc(ni), *y = falloc(no),
              *y2 = falloc(no), *r = falloc(no);
        fill(x, ni, 1.0f);
        fill(r, no, 1.0f);
        fmi_threads_set(1);
        fmi_gap_forward(x, y, B, P, C);
        fmi_gap_backward(r, dx, B, P, C);
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++) {
                double sum = 0;
                for (int p = 0; p < P; p++)
                    sum += x[((size_t)b * P + p) * C + c];
                assert_true(fabs(y[b * C + c] - sum / P) <= 1e-5 * (1 + fabs(sum / P)));
                for (int p = 0; p < P; p++) /* d mean / d x = 1/P */
                    assert_true(fabsf(dx[((size_t)b * P + p) * C + c] - r[b * C + c] / P) <=
                                1e-7f);
            }
        fmi_threads_set(2);
        fmi_gap_forward(x, y2, B, P, C);
        fmi_gap_backward(r, dx2, B, P, C);
        assert_memory_equal(y, y2, sizeof(float) * no);
        assert_memory_equal(dx, dx2, sizeof(float) * ni);
        if (fmi_tally_enabled()) {
            uint64_t before[FM_OP_KINDS], ran[FM_OP_KINDS], declared[FM_OP_KINDS];
            fm_ledger *ledger;
            assert_int_equal(fm_ledger_create(&ledger), FM_OK);
            fmi_tally_take(before);
            fmi_gap_forward(x, y, B, P, C);
            fmi_gap_backward(r, dx, B, P, C);
            fmi_tally_take(ran);
            const fm_cost cost = {ledger, 0, FM_PHASE_FORWARD};
            fmi_gap_cost_forward(&cost, B, P, C);
            fmi_gap_cost_backward(&cost, B, P, C);
            for (int op = 0; op < FM_OP_KINDS; op++) {
                declared[op] = fm_ledger_ops(ledger, -1, FM_PHASE_FORWARD, (fm_op)op);
                assert_int_equal(ran[op], declared[op]);
            }
            fm_ledger_free(ledger);
        }
        free(x), free(dx), free(dx2), free(y), free(y2), free(r);
    }
}

/* Batch norm per feature map: the dense kernels on B*H*W rows of C features. */
static void test_batchnorm_per_map_gradients(void **state)
{
    (void)state;
    enum { B = 2, H = 3, W = 3, C = 4, ROWS = B * H * W, N = ROWS * C };
    float x[N], y[N], r[N], dx[N], gamma[C], beta[C], dgamma[C], dbeta[C], mean[C], invstd[C];
    double num_x[N], num_g[C], num_b[C];
    fill(x, N, 2.0f);
    fill(gamma, C, 1.5f);
    fill(beta, C, 1.0f);
    fill(r, N, 1.0f);
    const float eps = 1e-4f, h = 1e-2f;
    fmi_bn_forward_train(x, y, ROWS, C, gamma, beta, eps, mean, invstd);
    fmi_bn_backward(x, r, dx, ROWS, C, gamma, mean, invstd, dgamma, dbeta);
#define NUMERIC(arr, i, out)                                                   \
    do {                                                                       \
        float keep = arr[i];                                                   \
        arr[i] = keep + h;                                                     \
        fmi_bn_forward_train(x, y, ROWS, C, gamma, beta, eps, mean, invstd);    \
        double up = dotf(r, y, N);                                             \
        arr[i] = keep - h;                                                     \
        fmi_bn_forward_train(x, y, ROWS, C, gamma, beta, eps, mean, invstd);    \
        out = (up - dotf(r, y, N)) / (2 * h);                                  \
        arr[i] = keep;                                                         \
    } while (0)
    for (int i = 0; i < N; i++)
        NUMERIC(x, i, num_x[i]);
    for (int i = 0; i < C; i++) {
        NUMERIC(gamma, i, num_g[i]);
        NUMERIC(beta, i, num_b[i]);
    }
#undef NUMERIC
    assert_grad_close(dx, num_x, N, 5e-3, "bn map dx");
    assert_grad_close(dgamma, num_g, C, 1e-3, "bn map dgamma");
    assert_grad_close(dbeta, num_b, C, 1e-3, "bn map dbeta");
    /* each map's statistics run over all B*H*W positions of that channel */
    for (int ch = 0; ch < C; ch++) {
        double s = 0;
        for (int i = 0; i < ROWS; i++)
            s += x[i * C + ch];
        assert_float_equal(mean[ch], s / ROWS, 1e-5);
    }
}

/* ---- geometry ---- */

static void test_geometry(void **state)
{
    (void)state;
    fm_conv_geom g;
    /* valid: floor((in - k)/s) + 1, no padding */
    assert_int_equal(fmi_conv_geom_init(&g, 32, 32, 3, 3, 1, 0, 128), FM_OK);
    assert_int_equal(g.out_h, 30);
    assert_int_equal(g.out_w, 30);
    assert_int_equal(g.pad_top, 0);
    assert_int_equal(fmi_conv_fan_in(&g), 27);
    assert_int_equal(fmi_conv_positions(&g), 900);
    assert_int_equal(fmi_conv_geom_init(&g, 9, 8, 2, 3, 2, 0, 4), FM_OK);
    assert_int_equal(g.out_h, 4);
    assert_int_equal(g.out_w, 3);
    assert_int_equal(fmi_conv_geom_init(&g, 11, 11, 1, 5, 3, 0, 1), FM_OK);
    assert_int_equal(g.out_h, 3);
    /* same: ceil(in/s), padding max((out-1)s + k - in, 0), top/left half */
    assert_int_equal(fmi_conv_geom_init(&g, 32, 31, 3, 3, 1, 1, 8), FM_OK);
    assert_int_equal(g.out_h, 32);
    assert_int_equal(g.out_w, 31);
    assert_int_equal(g.pad_top, 1);
    assert_int_equal(g.pad_left, 1);
    assert_int_equal(fmi_conv_geom_init(&g, 8, 7, 1, 4, 2, 1, 1), FM_OK); /* even kernel */
    assert_int_equal(g.out_h, 4);
    assert_int_equal(g.out_w, 4);
    assert_int_equal(g.pad_top, 1); /* total 6 + 4 - 8 = 2 */
    assert_int_equal(g.pad_left, 1); /* total 6 + 4 - 7 = 3: 1 left, 2 right */
    assert_int_equal(fmi_conv_geom_init(&g, 6, 6, 1, 2, 1, 1, 1), FM_OK);
    assert_int_equal(g.pad_top, 0); /* total 1: all bottom */
    assert_int_equal(fmi_conv_geom_init(&g, 9, 9, 1, 1, 3, 1, 1), FM_OK);
    assert_int_equal(g.out_h, 3);
    assert_int_equal(g.pad_top, 0);
    assert_int_equal(fmi_conv_geom_init(&g, 2, 2, 1, 5, 1, 1, 1), FM_OK); /* kernel > input */
    assert_int_equal(g.out_h, 2);
    assert_int_equal(g.pad_top, 2);
    /* errors with a message */
    assert_int_equal(fmi_conv_geom_init(&g, 4, 5, 3, 5, 1, 0, 2), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "larger than"));
    assert_int_equal(fmi_conv_geom_init(&g, 6, 2, 3, 3, 1, 0, 2), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "larger than"));
    assert_int_equal(fmi_conv_geom_init(&g, 0, 5, 3, 1, 1, 0, 2), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), ">= 1"));
    assert_int_equal(fmi_conv_geom_init(&g, 5, 5, 3, 3, 0, 0, 2), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "stride"));
    assert_int_equal(fmi_conv_geom_init(&g, 5, 5, 3, 0, 1, 1, 2), FM_EINVAL);
    assert_int_equal(fmi_conv_geom_init(&g, 5, 5, 3, 3, 1, 0, 0), FM_EINVAL);
    assert_int_equal(fmi_conv_geom_init(&g, 5, 5, 0, 3, 1, 0, 2), FM_EINVAL);
    assert_int_equal(fmi_conv_geom_init(&g, 100000, 100000, 1, 3, 1, 0, 2), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "too large"));

    fm_pool_geom p;
    assert_int_equal(fmi_pool_geom_init(&p, 28, 28, 128, 2, 2), FM_OK);
    assert_int_equal(p.out_h, 14);
    assert_int_equal(p.out_w, 14);
    assert_int_equal(fmi_pool_geom_init(&p, 13, 12, 4, 2, 2), FM_OK); /* border dropped */
    assert_int_equal(p.out_h, 6);
    assert_int_equal(p.out_w, 6);
    assert_int_equal(fmi_pool_geom_init(&p, 7, 8, 4, 3, 2), FM_OK);
    assert_int_equal(p.out_h, 3);
    assert_int_equal(p.out_w, 3);
    assert_int_equal(fmi_pool_geom_init(&p, 2, 2, 1, 2, 2), FM_OK);
    assert_int_equal(p.out_h, 1);
    assert_int_equal(fmi_pool_geom_init(&p, 1, 5, 4, 2, 2), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "larger than"));
    assert_int_equal(fmi_pool_geom_init(&p, 4, 4, 4, 0, 2), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), ">= 1"));
    assert_int_equal(fmi_pool_geom_init(&p, 4, 4, 4, 2, 0), FM_EINVAL);
    assert_int_equal(fmi_pool_geom_init(&p, 4, 4, 0, 2, 2), FM_EINVAL);
}

/* ---- threads ---- */

static void run_all(const buffers *t, const fm_product *p, float *y, float *dx, float *dw)
{
    fmi_conv_forward(&t->g, p, t->x, t->w, y, t->batch, t->scratch);
    fmi_conv_backward_input(&t->g, p, t->dy, t->w, dx, t->batch, t->scratch);
    fmi_conv_backward_weights(&t->g, p, 0, t->x, t->dy, dw, t->batch, t->scratch);
}

static void test_threads_identical(void **state)
{
    (void)state;
#ifdef _OPENMP
    /* big enough for parallel copies, split GEMMs and several chunks */
    const shape cases[] = {chunked, {15, 15, 32, 3, 2, 1, 48, 6}, {2, 2, 64, 2, 1, 0, 96, 64}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int ref = 0; ref < 2; ref++) {
            buffers t;
            buffers_open(&t, &cases[i], 0.5f);
            size_t ni = in_count(&t.g, t.batch), no = out_count(&t.g, t.batch), nw = w_count(&t.g);
            float *y1 = falloc(no), *dx1 = falloc(ni), *dw1 = falloc(nw);
            const fm_product p = {ref, FM_WCLASS_REAL, 0.0f};
            fmi_threads_set(1);
            run_all(&t, &p, y1, dx1, dw1);
            fmi_threads_set(2);
            run_all(&t, &p, t.y, t.dx, t.dw);
            assert_int_equal(omp_get_max_threads(), 2); /* the caller's setting survives */
            char what[160];
            snprintf(what, sizeof what, "%s %s", describe(&cases[i]), ref ? "reference" : "gemm");
            if (memcmp(y1, t.y, sizeof(float) * no))
                fail_msg("1 and 2 threads differ: %s, forward", what);
            if (memcmp(dx1, t.dx, sizeof(float) * ni))
                fail_msg("1 and 2 threads differ: %s, backward input", what);
            if (memcmp(dw1, t.dw, sizeof(float) * nw))
                fail_msg("1 and 2 threads differ: %s, backward weights", what);
            free(y1), free(dx1), free(dw1);
            buffers_close(&t);
        }
    /* max-pool, overlapping windows */
    fm_pool_geom g;
    assert_int_equal(fmi_pool_geom_init(&g, 33, 31, 64, 3, 2), FM_OK);
    enum { B = 8 };
    size_t ni = (size_t)B * g.in_h * g.in_w * g.c, no = (size_t)B * g.out_h * g.out_w * g.c;
    float *x = falloc(ni), *y[2] = {falloc(no), falloc(no)}, *dx[2] = {falloc(ni), falloc(ni)};
    float *dy = falloc(no);
    int32_t *am[2] = {malloc(sizeof(int32_t) * no), malloc(sizeof(int32_t) * no)};
    fill(x, ni, 1.0f);
    fill(dy, no, 1.0f);
    for (int th = 0; th < 2; th++) {
        fmi_threads_set(th + 1);
        fmi_maxpool_forward(&g, x, y[th], am[th], B);
        fmi_maxpool_backward(&g, dy, am[th], dx[th], B);
    }
    assert_memory_equal(y[0], y[1], sizeof(float) * no);
    assert_memory_equal(am[0], am[1], sizeof(int32_t) * no);
    assert_memory_equal(dx[0], dx[1], sizeof(float) * ni);
    free(x), free(y[0]), free(y[1]), free(dx[0]), free(dx[1]), free(dy), free(am[0]), free(am[1]);
#else
    print_message("skipped: built without OpenMP\n");
    skip();
#endif
}

/* ---- counting build: what the kernels execute equals what they declare ---- */

typedef void (*declare_fn)(const fm_cost *cost, const void *arg);

static void check_tally(declare_fn declare, const void *arg, const char *what)
{
    uint64_t done[FM_OP_KINDS];
    fmi_tally_take(done); /* what the pass just executed */
    fm_ledger *l;
    assert_int_equal(fm_ledger_create(&l), FM_OK);
    assert_int_equal(fmi_ledger_layer(l, 0, "conv", "x"), FM_OK);
    const fm_cost cost = {l, 0, FM_PHASE_FORWARD};
    declare(&cost, arg);
    for (int op = 0; op < FM_OP_KINDS; op++) {
        uint64_t declared = fm_ledger_ops(l, 0, FM_PHASE_FORWARD, (fm_op)op);
        if (done[op] != declared)
            fail_msg("%s: %s executed %" PRIu64 ", declared %" PRIu64, what, fm_op_name((fm_op)op),
                     done[op], declared);
    }
    fm_ledger_free(l);
}

typedef struct conv_args {
    const fm_conv_geom *g;
    int wclass, pow2, batch;
} conv_args;

static void declare_forward(const fm_cost *c, const void *a)
{
    const conv_args *x = a;
    fmi_conv_cost_forward(c, x->g, x->wclass, x->batch);
}
static void declare_backward_input(const fm_cost *c, const void *a)
{
    const conv_args *x = a;
    fmi_conv_cost_backward_input(c, x->g, x->wclass, x->batch);
}
static void declare_backward_weights(const fm_cost *c, const void *a)
{
    const conv_args *x = a;
    fmi_conv_cost_backward_weights(c, x->g, x->pow2, x->batch);
}

typedef struct pool_args {
    const fm_pool_geom *g;
    int batch;
} pool_args;

static void declare_pool_forward(const fm_cost *c, const void *a)
{
    const pool_args *x = a;
    fmi_maxpool_cost_forward(c, x->g, x->batch);
}
static void declare_pool_backward(const fm_cost *c, const void *a)
{
    const pool_args *x = a;
    fmi_maxpool_cost_backward(c, x->g, x->batch);
}

static void test_counting_build_tally(void **state)
{
    (void)state;
    if (!fmi_tally_enabled()) {
        if (getenv("FEWMUL_REQUIRE_COUNTING"))
            fail_msg("FEWMUL_REQUIRE_COUNTING is set but this is not a counting build");
        print_message("skipped: not a counting build (configure with -DFEWMUL_COUNT_OPS=ON)\n");
        skip();
    }
    uint64_t junk[FM_OP_KINDS];
    shape two_chunks = chunked; /* the partial sums of exactly one later chunk */
    two_chunks.batch = 4;
    const shape cases[] = {shapes[1], shapes[6],  shapes[7], shapes[10],  shapes[13],
                           shapes[14], shapes[16], shapes[17], two_chunks, chunked};
    for (int threads = 1; threads <= 2; threads++) {
        fmi_threads_set(threads);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            for (int wc = FM_WCLASS_REAL; wc <= FM_WCLASS_TERNARY; wc++) {
                buffers t;
                buffers_open(&t, &cases[i], 0.5f);
                const fm_product p = {1, wc, 0.25f};
                const int pow2 = wc != FM_WCLASS_REAL;
                conv_args a = {&t.g, wc, pow2, t.batch};
                char what[192];
                snprintf(what, sizeof what, "%s class %d threads %d", describe(&cases[i]), wc,
                         threads);
                fmi_tally_take(junk);
                fmi_conv_forward(&t.g, &p, t.x, t.w, t.y, t.batch, t.scratch);
                check_tally(declare_forward, &a, what);
                fmi_conv_backward_input(&t.g, &p, t.dy, t.w, t.dx, t.batch, t.scratch);
                check_tally(declare_backward_input, &a, what);
                fmi_conv_backward_weights(&t.g, &p, pow2, t.x, t.dy, t.dw, t.batch, t.scratch);
                check_tally(declare_backward_weights, &a, what);
                buffers_close(&t);
            }
        const int pools[][5] = {{6, 6, 3, 2, 2}, {7, 8, 4, 3, 2}, {9, 7, 3, 3, 3}, {5, 5, 2, 2, 1}};
        for (size_t k = 0; k < sizeof pools / sizeof pools[0]; k++) {
            fm_pool_geom g;
            assert_int_equal(fmi_pool_geom_init(&g, pools[k][0], pools[k][1], pools[k][2],
                                               pools[k][3], pools[k][4]),
                             FM_OK);
            enum { B = 3 };
            size_t ni = (size_t)B * g.in_h * g.in_w * g.c, no = (size_t)B * g.out_h * g.out_w * g.c;
            float *x = falloc(ni), *dx = falloc(ni), *y = falloc(no);
            int32_t *am = malloc(sizeof(int32_t) * no);
            fill(x, ni, 1.0f);
            pool_args a = {&g, B};
            fmi_tally_take(junk);
            fmi_maxpool_forward(&g, x, y, am, B);
            check_tally(declare_pool_forward, &a, "max-pool forward");
            fmi_maxpool_backward(&g, y, am, dx, B);
            check_tally(declare_pool_backward, &a, "max-pool backward");
            free(x), free(dx), free(y), free(am);
        }
    }
}

int main(void)
{
    fmi_rng_seed(&rng, 20240611);
    fmi_threads_set(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry),
        cmocka_unit_test(test_conv_matches_direct),
        cmocka_unit_test(test_conv_chunks),
        cmocka_unit_test(test_conv_weight_classes),
        cmocka_unit_test(test_conv_gradients),
        cmocka_unit_test(test_maxpool_forward),
        cmocka_unit_test(test_maxpool_gradient),
        cmocka_unit_test(test_gap),
        cmocka_unit_test(test_batchnorm_per_map_gradients),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_counting_build_tally),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
