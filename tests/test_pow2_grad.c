/* test_pow2_grad.c — the weight gradient of quantized back-prop, pow2_grad
 * (src/deploy/infer*.c): dW = Q(x)^T . delta formed with integer exponent
 * adds and float adds, no multiply. Every variant this CPU supports must equal
 * the scalar reference bit for bit on many odd shapes, sub-ranges of rows (a
 * thread's share) and misaligned pointers, writing nothing outside its rows;
 * the reference must equal an independent double-precision computation; and
 * fmi_pow2_grad_exact must accept exactly the data whose products are exact.
 *
 * Mutations this test was checked against (each tried on a copy of the tree,
 * each made it fail, none is in the tree):
 *   avx512: the q == 0 merge mask dropped from the float add; the e == 0 mask
 *     dropped from the integer add; q = +1.0 (code 0) taken for a zero q; the
 *     examples summed last to first; the lane mask of the partial block one
 *     lane too wide; every row of a block stored (rows past i1 too); a later
 *     chunk of 256 examples starting from +0.0f instead of the chunk before
 *     (test_long_batches only);
 *   avx2: q == 0 rows reading e's row instead of the zeros; e == 0 lanes
 *     adding the code; the partial block storing a whole block; every
 *     other chunk of 128 examples skipped;
 *   avx512 and avx2 lists: a chunk whose e holds zeros listed without
 *     testing e (avx2) or listed at all (avx512); a later 32 examples
 *     starting from +0.0f (test_densities only, avx512); zero q listed; the
 *     last vector's lanes taken as whole (avx2: the partial tile stored
 *     whole); a dense group's blocked rows one short;
 *   ref: the examples summed last to first (test_ref_against_double);
 *   fmi_pow2_grad_exact: the lower bound >= 0 instead of >= 1, the upper
 *     <= 255 instead of <= 254, q's mantissa bits not checked, the all-zero
 *     case answering 0 (test_exact). */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fewmul.h"
#include "infer.h"
#include "rng.h"

#include "kernel_checks.h"

/* ---- values ---------------------------------------------------------------- */

static float from_bits(uint32_t u)
{
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static float signed_zero(fm_rng *rng) { return fmi_rng_below(rng, 2) ? 0.0f : -0.0f; }

/* q: +-0 with probability zero_percent, else +-2^k with k in [k_lo, k_hi]. */
static void make_q(float *q, size_t n, int k_lo, int k_hi, uint32_t zero_percent, fm_rng *rng)
{
    for (size_t k = 0; k < n; k++) {
        if (fmi_rng_below(rng, 100) < zero_percent) {
            q[k] = signed_zero(rng);
            continue;
        }
        float p = ldexpf(1.0f, k_lo + (int)fmi_rng_below(rng, (uint32_t)(k_hi - k_lo + 1)));
        q[k] = fmi_rng_below(rng, 2) ? -p : p;
    }
}

/* e: +-0 with probability zero_percent, else a normal float with 23 random
 * mantissa bits and magnitude 2^-30 .. 2^11, so sums round and their order
 * shows. */
static void make_e_zeros(float *e, size_t n, uint32_t zero_percent, fm_rng *rng)
{
    for (size_t k = 0; k < n; k++) {
        if (fmi_rng_below(rng, 100) < zero_percent) {
            e[k] = signed_zero(rng);
            continue;
        }
        uint32_t sign = fmi_rng_below(rng, 2), field = 127 - 30 + fmi_rng_below(rng, 41);
        e[k] = from_bits(sign << 31 | field << 23 | fmi_rng_below(rng, 1u << 23));
    }
}

static void make_e(float *e, size_t n, fm_rng *rng) { make_e_zeros(e, n, 40, rng); }

/* ---- variants -------------------------------------------------------------- */

/* kernel_checks.h's variants, each of which must carry a pow2_grad, the
 * reference's being fmi_pow2_grad_ref. */
static void find_pow2_variants(void)
{
    find_variants();
    assert_ptr_equal(variants[0].kernels->pow2_grad, fmi_pow2_grad_ref);
    for (int v = 0; v < n_variants; v++)
        assert_non_null(variants[v].kernels->pow2_grad);
}

/* ---- comparing ------------------------------------------------------------- */

static long calls_compared;

/* Buffers of one shape, each one float longer than needed so that the data can
 * start one float past malloc's alignment. */
typedef struct shape {
    int batch, in, out;
    float *q_block, *e_block, *dw_block, *ref;
} shape;

static void shape_alloc(shape *s, int batch, int in, int out)
{
    s->batch = batch;
    s->in = in;
    s->out = out;
    size_t qn = (size_t)batch * in, en = (size_t)batch * out, wn = (size_t)in * out;
    s->q_block = malloc((qn + 1) * sizeof(float));
    s->e_block = malloc((en + 1) * sizeof(float));
    s->dw_block = malloc((wn + GUARD + 1) * sizeof(float));
    s->ref = malloc((wn + 1) * sizeof(float));
    assert_true(s->q_block && s->e_block && s->dw_block && s->ref);
}

static void shape_free(shape *s)
{
    free(s->q_block);
    free(s->e_block);
    free(s->dw_block);
    free(s->ref);
}

/* Runs `kernels` on rows i0 .. i1-1, stored from row i0 of a dw full of
 * canaries (the kernels store their first row at the pointer they are
 * given), and requires the rows of `expected` (the whole in x out result) in
 * those rows and the canaries everywhere else, the GUARD floats past dw
 * included. */
static void check_rows(const variant *var, const shape *s, const float *q, const float *e, float *dw,
                       int i0, int i1, const float *expected)
{
    const size_t row = (size_t)s->out, total = (size_t)s->in * row;
    for (size_t k = 0; k < total + GUARD; k++)
        dw[k] = from_bits(canary);
    var->kernels->pow2_grad(q, e, dw + (size_t)i0 * row, s->batch, s->in, s->out, i0, i1);
    for (size_t k = 0; k < total + GUARD; k++) {
        size_t i = k / row;
        int inside = k < total && (int)i >= i0 && (int)i < i1;
        uint32_t want = inside ? float_bits(expected[k]) : canary;
        if (float_bits(dw[k]) != want) {
            if (!inside)
                fail_msg("%s wrote outside rows %d .. %d of a %d x %d dw (batch %d): float %zu "
                         "(row %zu) is 0x%08x",
                         var->label, i0, i1 - 1, s->in, s->out, s->batch, k, i, float_bits(dw[k]));
            fail_msg("%s differs from ref: batch %d, %d x %d, rows %d .. %d, dw[%zu][%zu] = %a "
                     "(0x%08x), ref %a (0x%08x)",
                     var->label, s->batch, s->in, s->out, i0, i1 - 1, i, k % row, (double)dw[k],
                     float_bits(dw[k]), (double)expected[k], want);
        }
    }
    calls_compared++;
}

/* The sub-ranges of rows a shape is run on: all, empty ones (at the start, in
 * the middle, at the end), a prefix, shares ending at `in`, an inner one. */
static int row_ranges(int in, int ranges[][2])
{
    int n = 0;
#define RANGE(a, b) (ranges[n][0] = (a), ranges[n][1] = (b), n++)
    RANGE(0, in);
    RANGE(0, 0);
    RANGE(in, in);
    RANGE(in / 2, in / 2);
    if (in >= 2) {
        RANGE(0, in / 2);
        RANGE(in / 2, in);
        RANGE(in - 1, in);
    }
    if (in >= 3)
        RANGE(1, in - 1);
    if (in >= 9)
        RANGE(in / 3, 2 * in / 3 + 1);
#undef RANGE
    return n;
}

/* Fresh data for a shape, its reference over all rows, then every variant on
 * every sub-range; `misalign` (bits 0, 1, 2) moves q, e, dw one float. */
static void check_shape(shape *s, unsigned misalign, fm_rng *rng)
{
    const size_t qn = (size_t)s->batch * s->in, en = (size_t)s->batch * s->out;
    float *q = s->q_block + (misalign & 1), *e = s->e_block + (misalign >> 1 & 1);
    float *dw = s->dw_block + (misalign >> 2 & 1);
    make_q(q, qn, -20, 5, 40, rng);
    make_e(e, en, rng);
    /* the kernels' precondition, which this data meets */
    assert_true(fmi_pow2_grad_exact(q, qn, e, en, 1));
    fmi_pow2_grad_ref(q, e, s->ref, s->batch, s->in, s->out, 0, s->in);
    int ranges[16][2];
    int n = row_ranges(s->in, ranges);
    for (int r = 0; r < n; r++)
        for (int v = 0; v < n_variants; v++)
            check_rows(&variants[v], s, q, e, dw, ranges[r][0], ranges[r][1], s->ref);
}

static void check_shapes(const int *batches, size_t nb, const int *ins, size_t ni, const int *outs, size_t no,
                         uint64_t seed)
{
    fm_rng rng;
    fmi_rng_seed(&rng, seed);
    unsigned count = 0;
    for (size_t a = 0; a < nb; a++)
        for (size_t b = 0; b < ni; b++)
            for (size_t c = 0; c < no; c++) {
                shape s;
                shape_alloc(&s, batches[a], ins[b], outs[c]);
                check_shape(&s, count++ % 8, &rng);
                shape_free(&s);
            }
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- tests ----------------------------------------------------------------- */

static void test_variants_equal_ref(void **state)
{
    (void)state;
    find_pow2_variants();
    print_variants();
    calls_compared = 0;
    static const int batches[] = {1, 2, 3, 7, 16, 33, 200};
    static const int ins[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 31, 64, 97};
    static const int outs[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10,  11, 12, 13, 14, 15,
                               16, 17, 18, 19, 20, 31, 33, 47, 63, 64, 65, 127, 200};
    check_shapes(batches, COUNT(batches), ins, COUNT(ins), outs, COUNT(outs), 20240611);
    print_message("%ld calls equal to ref, outside rows untouched\n", calls_compared);
}

/* Batches around and past the kernels' chunks of examples (128 for AVX2, 256
 * for AVX-512, each listed 32 at a time), batch 0 (every dw element +0.0f),
 * and wide layers split into shares as threads split them. */
static void test_long_batches(void **state)
{
    (void)state;
    find_pow2_variants();
    static const int batches[] = {0, 127, 128, 129, 255, 256, 257, 513};
    static const int ins[] = {1, 6, 7, 13};
    static const int outs[] = {1, 16, 17, 64, 65, 100};
    check_shapes(batches, COUNT(batches), ins, COUNT(ins), outs, COUNT(outs), 99);

    fm_rng rng;
    fmi_rng_seed(&rng, 5);
    static const int wide[] = {1000, 1024, 1031};
    for (size_t w = 0; w < COUNT(wide); w++) {
        shape s;
        shape_alloc(&s, 200, 50, wide[w]);
        float *q = s.q_block, *e = s.e_block + 1, *dw = s.dw_block;
        make_q(q, (size_t)200 * 50, -20, 5, 40, &rng);
        make_e(e, (size_t)200 * wide[w], &rng);
        fmi_pow2_grad_ref(q, e, s.ref, 200, 50, wide[w], 0, 50);
        static const int shares[][2] = {{0, 17}, {17, 34}, {34, 50}, {0, 50}};
        for (size_t k = 0; k < COUNT(shares); k++)
            for (int v = 0; v < n_variants; v++)
                check_rows(&variants[v], &s, q, e, dw, shares[k][0], shares[k][1], s.ref);
        shape_free(&s);
    }
}

/* The kernels' paths by density: q from all nonzero to 90% zeros, e with no
 * zero (the AVX-512 and AVX2 kernels then skip e's zero tests) or with a
 * few, on shapes past their chunks (32 examples), row groups (60 rows) and
 * tiles (256 outputs for AVX-512, 64 for AVX2); they list a row group's
 * nonzero q where at least a quarter of them are zero and block the rows
 * otherwise. The last q has dense and sparse row groups in turn, so that one
 * call takes both. */
static void test_densities(void **state)
{
    (void)state;
    find_pow2_variants();
    fm_rng rng;
    fmi_rng_seed(&rng, 31);
    static const int shapes[][3] = {{200, 130, 300}, {33, 64, 256}, {65, 200, 513}, {31, 7, 10}};
    static const uint32_t q_zeros[] = {0, 30, 50, 90}, e_zeros[] = {0, 1};
    for (size_t a = 0; a < COUNT(shapes); a++)
        for (size_t b = 0; b < COUNT(q_zeros) + 1; b++)
            for (size_t c = 0; c < COUNT(e_zeros); c++) {
                const int batch = shapes[a][0], in = shapes[a][1], out = shapes[a][2];
                shape s;
                shape_alloc(&s, batch, in, out);
                float *q = s.q_block, *e = s.e_block, *dw = s.dw_block;
                if (b < COUNT(q_zeros)) {
                    make_q(q, (size_t)batch * in, -20, 5, q_zeros[b], &rng);
                } else { /* rows 0-59 dense, 60-119 sparse, 120- dense */
                    for (int t = 0; t < batch; t++)
                        for (int i = 0; i < in; i++)
                            make_q(q + (size_t)t * in + i, 1, -20, 5, (i / 60) % 2 ? 70 : 5, &rng);
                }
                make_e_zeros(e, (size_t)batch * out, e_zeros[c], &rng);
                assert_true(fmi_pow2_grad_exact(q, (size_t)batch * in, e, (size_t)batch * out, 1));
                fmi_pow2_grad_ref(q, e, s.ref, batch, in, out, 0, in);
                /* all rows, and an inner share (the other tests run every
                 * kind of share; this one is about densities) */
                const int ranges[2][2] = {{0, in}, {in / 3, 2 * in / 3 + 1}};
                for (int r = 0; r < 2; r++)
                    for (int v = 0; v < n_variants; v++)
                        check_rows(&variants[v], &s, q, e, dw, ranges[r][0], ranges[r][1], s.ref);
                shape_free(&s);
            }
}

/* Every q and e zero: all terms are zeros of both signs, and every dw element
 * is +0.0f (an accumulator that starts at +0.0f never becomes -0.0f). */
static void test_zero_terms(void **state)
{
    (void)state;
    find_pow2_variants();
    fm_rng rng;
    fmi_rng_seed(&rng, 8);
    const int batch = 9, in = 7, out = 37;
    shape s;
    shape_alloc(&s, batch, in, out);
    for (int pass = 0; pass < 3; pass++) {
        /* pass 0: q all zero; 1: e all zero; 2: both */
        make_q(s.q_block, (size_t)batch * in, -3, 3, pass == 1 ? 0 : 100, &rng);
        make_e(s.e_block, (size_t)batch * out, &rng);
        if (pass >= 1)
            for (size_t k = 0; k < (size_t)batch * out; k++)
                s.e_block[k] = signed_zero(&rng);
        for (size_t k = 0; k < (size_t)in * out; k++)
            s.ref[k] = 0.0f;
        for (int v = 0; v < n_variants; v++)
            check_rows(&variants[v], &s, s.q_block, s.e_block, s.dw_block, 0, in, s.ref);
    }
    shape_free(&s);
}

/* The reference against sums formed independently in double precision. */
static void test_ref_against_double(void **state)
{
    (void)state;
    find_pow2_variants();
    fm_rng rng;
    fmi_rng_seed(&rng, 17);
    static const int batches[] = {1, 2, 7, 33, 200};
    static const int ins[] = {1, 3, 9};
    static const int outs[] = {1, 7, 31, 65};
    for (size_t a = 0; a < COUNT(batches); a++)
        for (size_t b = 0; b < COUNT(ins); b++)
            for (size_t c = 0; c < COUNT(outs); c++) {
                const int batch = batches[a], in = ins[b], out = outs[c];
                shape s;
                shape_alloc(&s, batch, in, out);
                float *q = s.q_block, *e = s.e_block, *got = s.dw_block;
                for (int pass = 0; pass < 2; pass++) {
                    if (pass == 0) {
                        /* small integers and halves times 2^-3 .. 2^3: every
                         * partial sum is a multiple of 2^-4 below 2^14, exact
                         * in float, so the result is the exact sum */
                        make_q(q, (size_t)batch * in, -3, 3, 40, &rng);
                        for (size_t k = 0; k < (size_t)batch * out; k++) {
                            int n = (int)fmi_rng_below(&rng, 33) - 16;
                            e[k] = n ? 0.5f * (float)n : signed_zero(&rng);
                        }
                    } else {
                        make_q(q, (size_t)batch * in, -20, 5, 40, &rng);
                        make_e(e, (size_t)batch * out, &rng);
                    }
                    fmi_pow2_grad_ref(q, e, got, batch, in, out, 0, in);
                    for (int i = 0; i < in; i++)
                        for (int j = 0; j < out; j++) {
                            double exact = 0.0;
                            float stepwise = 0.0f;
                            for (int t = 0; t < batch; t++) {
                                /* q * e is exact in double, and in float too */
                                double product =
                                    (double)q[(size_t)t * in + i] * (double)e[(size_t)t * out + j];
                                exact += product;
                                stepwise += (float)product;
                            }
                            float want = pass == 0 ? (float)exact : stepwise;
                            if (pass == 0)
                                assert_true((double)want == exact);
                            float have = got[(size_t)i * out + j];
                            if (float_bits(have) != float_bits(want))
                                fail_msg("ref, %s data, batch %d, %d x %d: dw[%d][%d] = %a, expected %a",
                                         pass == 0 ? "exact" : "general", batch, in, out, i, j, (double)have,
                                         (double)want);
                        }
                }
                shape_free(&s);
            }
}

static int exact1(float q, float e) { return fmi_pow2_grad_exact(&q, 1, &e, 1, 1); }

static void test_exact(void **state)
{
    (void)state;
    fm_rng rng;
    fmi_rng_seed(&rng, 3);
    float q[64], e[64];
    make_q(q, 64, -20, 5, 40, &rng);
    make_e(e, 64, &rng);
    assert_true(fmi_pow2_grad_exact(q, 64, e, 64, 1));
    assert_true(exact1(1.0f, 1.0f));
    assert_true(exact1(-0.25f, -3.0f));
    assert_true(fmi_pow2_grad_exact(q, 0, e, 0, 1));

    /* e not a normal float: subnormal, infinite, NaN */
    assert_false(exact1(1.0f, 0x1p-140f));
    assert_false(exact1(1.0f, from_bits(1)));
    assert_false(exact1(1.0f, INFINITY));
    assert_false(exact1(1.0f, -INFINITY));
    assert_false(exact1(1.0f, NAN));
    /* q not +-0 or +-2^k: mantissa bits, infinite, NaN, subnormal */
    assert_false(exact1(1.5f, 1.0f));
    assert_false(exact1(-3.0f, 1.0f));
    assert_false(exact1(from_bits(0x3f800001), 1.0f));
    assert_false(exact1(INFINITY, 1.0f));
    assert_false(exact1(NAN, 1.0f));
    assert_false(exact1(0x1p-130f, 1.0f));
    /* one bad value among good ones is enough */
    float e_bad[64];
    memcpy(e_bad, e, sizeof e);
    e_bad[40] = 0x1p-149f;
    assert_false(fmi_pow2_grad_exact(q, 64, e_bad, 64, 1));
    float q_bad[64];
    memcpy(q_bad, q, sizeof q);
    q_bad[63] = 0.75f;
    assert_false(fmi_pow2_grad_exact(q_bad, 64, e, 64, 1));

    /* products out of the normal range */
    assert_false(exact1(0x1p-10f, 0x1p-120f)); /* 2^-130: would underflow */
    assert_false(exact1(0x1p10f, 0x1p120f));   /* 2^130: would overflow */
    assert_false(exact1(-0x1p10f, -0x1p120f));
    /* the extremes of each side combine even from different elements */
    float qs[2] = {0x1p-10f, 1.0f}, es[2] = {1.0f, 0x1p-120f};
    assert_false(fmi_pow2_grad_exact(qs, 2, es, 2, 1));

    /* the boundaries: e = 2^-100 has exponent field 27, q = 2^-26 has k = -26,
     * so the smallest product has field 1 (normal); 2^-27 would give 0 */
    assert_true(exact1(0x1p-26f, 0x1p-100f));
    assert_false(exact1(0x1p-27f, 0x1p-100f));
    assert_true(exact1(0x1p-26f, -0x1.fffffep-100f));
    /* e = 2^100 has field 227: q = 2^27 gives 254 (the largest normal field), 2^28 gives 255 */
    assert_true(exact1(0x1p27f, 0x1p100f));
    assert_true(exact1(0x1p27f, 0x1.fffffep100f));
    assert_false(exact1(0x1p28f, 0x1p100f));
    float q_wide[3] = {0x1p-26f, -0.0f, 0x1p27f}, e_wide[3] = {0x1p-100f, 0.0f, -0x1p100f};
    assert_true(fmi_pow2_grad_exact(q_wide, 3, e_wide, 3, 1));
    q_wide[1] = 0x1p-27f;
    assert_false(fmi_pow2_grad_exact(q_wide, 3, e_wide, 3, 1));

    /* all q zero (or all e zero): every term is a zero, whatever the other side's range */
    float q_zero[4] = {0.0f, -0.0f, 0.0f, -0.0f}, e_far[4] = {0x1p120f, 0x1p-120f, -0x1p127f, 0x1p-126f};
    assert_true(fmi_pow2_grad_exact(q_zero, 4, e_far, 4, 1));
    float q_far[3] = {0x1p127f, 0x1p-126f, -1.0f}, e_zero[3] = {-0.0f, 0.0f, 0.0f};
    assert_true(fmi_pow2_grad_exact(q_far, 3, e_zero, 3, 1));
    assert_true(fmi_pow2_grad_exact(q_zero, 4, e_zero, 3, 1));
    /* but a value that is not a normal float is still refused */
    e_far[2] = INFINITY;
    assert_false(fmi_pow2_grad_exact(q_zero, 4, e_far, 4, 1));
}

/* The scan shared among threads (q and e large enough): the answer of one
 * thread for any count, with the one bad or extreme value in any share, at
 * either end of q or of e. */
static void test_exact_threads(void **state)
{
    (void)state;
    fm_rng rng;
    fmi_rng_seed(&rng, 5);
    const size_t qn = 700001, en = 500003; /* over infer.c's EXACT_PARALLEL together */
    float *q = test_malloc(qn * sizeof *q), *e = test_malloc(en * sizeof *e);
    make_q(q, qn, -20, 5, 40, &rng);
    make_e(e, en, &rng);
    const size_t q_at[] = {0, qn / 3, qn - 1}, e_at[] = {0, en / 2 + 1, en - 1};
    for (int threads = 1; threads <= 3; threads++) {
        assert_true(fmi_pow2_grad_exact(q, qn, e, en, threads));
        for (int k = 0; k < 3; k++) {
            const float keep_q = q[q_at[k]], keep_e = e[e_at[k]];
            q[q_at[k]] = 0.75f; /* not a power of two */
            assert_false(fmi_pow2_grad_exact(q, qn, e, en, threads));
            q[q_at[k]] = 0x1p120f; /* a product out of range with e's largest */
            assert_false(fmi_pow2_grad_exact(q, qn, e, en, threads));
            q[q_at[k]] = keep_q;
            e[e_at[k]] = 0x1p-149f; /* subnormal */
            assert_false(fmi_pow2_grad_exact(q, qn, e, en, threads));
            e[e_at[k]] = NAN;
            assert_false(fmi_pow2_grad_exact(q, qn, e, en, threads));
            e[e_at[k]] = keep_e;
            assert_true(fmi_pow2_grad_exact(q, qn, e, en, threads));
        }
    }
    test_free(q);
    test_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variants_equal_ref), cmocka_unit_test(test_long_batches),
        cmocka_unit_test(test_densities),
        cmocka_unit_test(test_zero_terms),         cmocka_unit_test(test_ref_against_double),
        cmocka_unit_test(test_exact),              cmocka_unit_test(test_exact_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
