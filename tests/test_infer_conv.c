/* test_infer_conv.c — the convolution kernels of deployed networks
 * (src/deploy/infer_conv.c, infer_avx2.c, infer_avx512.c): on random layers of
 * many shapes (channels not multiples of 4, 8, 16, 32 or 64, kernels 1..5,
 * strides 1..3, padding on every side, odd maps, maps smaller than the
 * kernel) with binary, ternary and synapse weights, every variant this CPU
 * supports (the AVX-512 one also with its vpshufb popcount) must equal the
 * scalar reference bit for bit, and the reference must equal the
 * specification (infer.h, "convolutions") computed here independently from
 * the packed codes: group lookup per tap for binary and ternary weights,
 * product tables for synapse weights, the padded taps left out. The
 * reference must agree with a double-precision sum, the xnor-popcount kernel
 * with exact integer sums; run with a sign stage, every variant must write
 * the bits of the reference's sums in random ranges; the sign packing kernels
 * must agree with their ranges
 * (bits past the channels zero); the ranges of a folded batch norm must give
 * exactly the float formula's signs. Nothing is written past the outputs. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deploy.h"
#include "fewmul.h"
#include "infer.h"
#include "internal.h"
#include "rng.h"

#define SUPPORT_NAME "infer-conv"
#include "support.h"
#include "kernel_checks.h"

/* ---- layers ---------------------------------------------------------------- */

typedef struct shape {
    int in_h, in_w, in_c, k_h, k_w, stride, pad_top, pad_left, pad_bottom, pad_right, out_c;
} shape;

/* A convolution record of shape sh with random codes (binary rows also get
 * ones in the unused bits of their last byte, which must be ignored). */
static void make_conv(fm_deploy_layer *L, const weight_kind *kind, const shape *sh, fm_rng *rng)
{
    memset(L, 0, sizeof *L);
    L->type = FM_DL_CONV;
    L->in_h = sh->in_h, L->in_w = sh->in_w, L->in_c = sh->in_c;
    L->k_h = sh->k_h, L->k_w = sh->k_w, L->stride = sh->stride;
    L->pad_top = sh->pad_top, L->pad_left = sh->pad_left;
    L->out_h = (sh->in_h + sh->pad_top + sh->pad_bottom - sh->k_h) / sh->stride + 1;
    L->out_w = (sh->in_w + sh->pad_left + sh->pad_right - sh->k_w) / sh->stride + 1;
    L->out_c = sh->out_c;
    L->in = sh->k_h * sh->k_w * sh->in_c;
    L->out = sh->out_c;
    L->weights = kind->weights;
    L->levels = kind->levels;
    L->bits = code_bits(kind);
    L->unit = 1.0f;
    assert_true(L->out_h >= 1 && L->out_w >= 1);
    assert_int_equal(fmi_deploy_layer_alloc(L), FM_OK);
    for (int k = 0; k < L->levels; k++)
        L->magnitudes[k] = k == 0 ? 0.01f + 0.01f * fmi_rng_uniform(rng)
                                  : L->magnitudes[k - 1] * (1.05f + fmi_rng_uniform(rng));
    const uint32_t index_bits = (uint32_t)L->bits - 1;
    for (int j = 0; j < L->out; j++) {
        for (int i = 0; i < L->in; i++) {
            uint32_t code;
            if (L->weights == FM_DW_BINARY)
                code = fmi_rng_below(rng, 2);
            else if (L->weights == FM_DW_TERNARY)
                code = (const uint32_t[]){0, 1, 3}[fmi_rng_below(rng, 3)];
            else
                code = fmi_rng_below(rng, (uint32_t)L->levels) | fmi_rng_below(rng, 2) << index_bits;
            fmi_deploy_set_code(L, j, i, code);
        }
        if (L->weights == FM_DW_BINARY && L->in % 8)
            L->packed[(size_t)j * L->row_bytes + L->row_bytes - 1] |= (uint8_t)(0xffu << (L->in % 8));
    }
    if (fmi_conv_prepare(L, &L->conv) != FM_OK)
        fail_msg("prepare %s: %s", kind->label, fm_last_error());
}

static void free_conv(fm_deploy_layer *L)
{
    fmi_free(L->packed);
    fmi_free(L->scale);
    fmi_free(L->offset);
    fmi_free(L->magnitudes);
    fmi_conv_weights_free(L->conv);
    memset(L, 0, sizeof *L);
}

static size_t in_values(const fm_deploy_layer *L) { return (size_t)L->in_h * L->in_w * (size_t)L->in_c; }
static size_t out_values(const fm_deploy_layer *L) { return (size_t)L->out_h * L->out_w * (size_t)L->out_c; }

/* A random shape: small odd maps, every padding, kernels 1..5, strides 1..3. */
static shape random_shape(fm_rng *rng)
{
    static const int channels[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 130};
    static const int outs[] = {1, 2, 3, 7, 8, 10, 15, 16, 17, 31, 32, 33, 40, 63, 65};
    shape sh;
    sh.k_h = 1 + (int)fmi_rng_below(rng, 5);
    sh.k_w = fmi_rng_below(rng, 3) ? sh.k_h : 1 + (int)fmi_rng_below(rng, 5);
    sh.stride = 1 + (int)(fmi_rng_below(rng, 4) / 2); /* 1, 1, 2, 2; 3 below */
    if (fmi_rng_below(rng, 8) == 0)
        sh.stride = 3;
    int padded = fmi_rng_below(rng, 2);
    sh.pad_top = padded ? (int)fmi_rng_below(rng, (uint32_t)sh.k_h) : 0;
    sh.pad_left = padded ? (int)fmi_rng_below(rng, (uint32_t)sh.k_w) : 0;
    sh.pad_bottom = padded ? (int)fmi_rng_below(rng, (uint32_t)sh.k_h) : 0;
    sh.pad_right = padded ? (int)fmi_rng_below(rng, (uint32_t)sh.k_w) : 0;
    /* maps from just large enough for one window to about 13 x 13 */
    int min_h = FM_MAX(1, sh.k_h - sh.pad_top - sh.pad_bottom), min_w = FM_MAX(1, sh.k_w - sh.pad_left - sh.pad_right);
    sh.in_h = min_h + (int)fmi_rng_below(rng, 11);
    sh.in_w = min_w + (int)fmi_rng_below(rng, 13);
    sh.in_c = channels[fmi_rng_below(rng, sizeof channels / sizeof channels[0])];
    sh.out_c = outs[fmi_rng_below(rng, sizeof outs / sizeof outs[0])];
    return sh;
}

/* ---- inputs -------------------------------------------------------------- */

enum input_pattern { INPUT_WIDE, INPUT_PLUS_MINUS_ONE, INPUT_SIGNED_ZEROS, INPUT_RELU, N_PATTERNS };
static const char *const pattern_names[] = {"wide", "+-1", "+-0", "relu-like"};

static void make_inputs(float *x, size_t n, enum input_pattern pattern, fm_rng *rng)
{
    for (size_t i = 0; i < n; i++) {
        switch (pattern) {
        case INPUT_WIDE: x[i] = wide_value(rng); break;
        case INPUT_PLUS_MINUS_ONE: x[i] = fmi_rng_below(rng, 2) ? 1.0f : -1.0f; break;
        case INPUT_SIGNED_ZEROS: x[i] = fmi_rng_below(rng, 2) ? 0.0f : -0.0f; break;
        default: x[i] = fmi_rng_below(rng, 3) ? fmi_rng_uniform(rng) * 4.0f : 0.0f; break;
        }
    }
}

/* ---- the specification, computed here from the codes ------------------------ */

static float weight_value(const fm_deploy_layer *L, int j, int i)
{
    return fmi_deploy_code_value(L, fmi_deploy_code(L, j, i));
}

/* Code of weight (output j, tap t, channel c), or binary -1 / ternary 0 for a
 * padding channel past in_c (its bits are 0). */
static uint32_t code_at(const fm_deploy_layer *L, int j, int t, int c)
{
    if (c >= L->in_c)
        return 0;
    return fmi_deploy_code(L, j, t * L->in_c + c);
}

static float flip(float v) { return -v; }

/* One output of the specification (infer.h, "convolutions"). */
static float spec_output(const fm_deploy_layer *L, const float *x, int oy, int ox, int j)
{
    float acc = 0.0f;
    const int iy0 = oy * L->stride - L->pad_top, ix0 = ox * L->stride - L->pad_left;
    for (int ky = 0; ky < L->k_h; ky++)
        for (int kx = 0; kx < L->k_w; kx++) {
            const int iy = iy0 + ky, ix = ix0 + kx, t = ky * L->k_w + kx;
            if (iy < 0 || iy >= L->in_h || ix < 0 || ix >= L->in_w)
                continue; /* padding: left out */
            const float *px = x + ((size_t)iy * L->in_w + (size_t)ix) * (size_t)L->in_c;
            if (L->weights == FM_DW_SYNAPSE) {
                for (int c = 0; c < L->in_c; c++) {
                    const uint32_t code = code_at(L, j, t, c), top = 1u << (L->bits - 1);
                    float product = px[c] * L->magnitudes[code & (top - 1)];
                    acc += code & top ? flip(product) : product;
                }
                continue;
            }
            for (int g = 0; 4 * g < L->in_c; g++) {
                float v[4];
                uint32_t code[4];
                for (int k = 0; k < 4; k++) {
                    v[k] = 4 * g + k < L->in_c ? px[4 * g + k] : 0.0f;
                    code[k] = code_at(L, j, t, 4 * g + k);
                }
                if (L->weights == FM_DW_BINARY) { /* T[n] = p01 + p23, n the +1 bits */
                    float p01 = (code[0] ? v[0] : flip(v[0])) + (code[1] ? v[1] : flip(v[1]));
                    float p23 = (code[2] ? v[2] : flip(v[2])) + (code[3] ? v[3] : flip(v[3]));
                    acc += p01 + p23;
                } else { /* S[pos] added, S[neg] subtracted */
                    float q01 = (code[0] == 1 ? v[0] : 0.0f) + (code[1] == 1 ? v[1] : 0.0f);
                    float q23 = (code[2] == 1 ? v[2] : 0.0f) + (code[3] == 1 ? v[3] : 0.0f);
                    float n01 = (code[0] == 3 ? v[0] : 0.0f) + (code[1] == 3 ? v[1] : 0.0f);
                    float n23 = (code[2] == 3 ? v[2] : 0.0f) + (code[3] == 3 ? v[3] : 0.0f);
                    acc += q01 + q23;
                    acc -= n01 + n23;
                }
            }
        }
    return acc;
}

/* The exact sum of x times the weights in double, and the sum of magnitudes. */
static double dot_output(const fm_deploy_layer *L, const float *x, int oy, int ox, int j, double *magnitude)
{
    double dot = 0;
    *magnitude = 0;
    const int iy0 = oy * L->stride - L->pad_top, ix0 = ox * L->stride - L->pad_left;
    for (int ky = 0; ky < L->k_h; ky++)
        for (int kx = 0; kx < L->k_w; kx++) {
            const int iy = iy0 + ky, ix = ix0 + kx, t = ky * L->k_w + kx;
            if (iy < 0 || iy >= L->in_h || ix < 0 || ix >= L->in_w)
                continue;
            for (int c = 0; c < L->in_c; c++) {
                double term = (double)x[((size_t)iy * L->in_w + (size_t)ix) * L->in_c + c] *
                              weight_value(L, j, t * L->in_c + c);
                dot += term;
                *magnitude += fabs(term);
            }
        }
    return dot;
}

/* ---- comparisons ------------------------------------------------------------ */

static void describe_layer(const fm_deploy_layer *L, const char *kind, char *out, size_t size)
{
    snprintf(out, size, "%s %dx%dx%d k%dx%d s%d pad %d,%d -> %dx%dx%d", kind, L->in_h, L->in_w, L->in_c,
             L->k_h, L->k_w, L->stride, L->pad_top, L->pad_left, L->out_h, L->out_w, L->out_c);
}

static long compared_calls, compared_outputs;

/* ---- the sign stage fused into the kernels ------------------------------------ */

static fm_rng range_rng;

/* Ranges per channel from the sums themselves (so that both signs occur):
 * upper, lower, two-sided, all and none. */
static void float_ranges(const float *sums, size_t positions, int channels, float *lo, float *hi)
{
    for (int j = 0; j < channels; j++) {
        float u = sums[(size_t)fmi_rng_below(&range_rng, (uint32_t)positions) * (size_t)channels + (size_t)j];
        float v = sums[(size_t)fmi_rng_below(&range_rng, (uint32_t)positions) * (size_t)channels + (size_t)j];
        switch (fmi_rng_below(&range_rng, 5)) {
        case 0: lo[j] = u, hi[j] = INFINITY; break;
        case 1: lo[j] = -INFINITY, hi[j] = u; break;
        case 2: lo[j] = fminf(u, v), hi[j] = fmaxf(u, v); break;
        case 3: lo[j] = -FLT_MAX, hi[j] = FLT_MAX; break;
        default: lo[j] = INFINITY, hi[j] = -INFINITY; break;
        }
    }
}

static void int_ranges(const int32_t *sums, size_t positions, int channels, int32_t *lo, int32_t *hi)
{
    for (int j = 0; j < channels; j++) {
        int32_t u = sums[(size_t)fmi_rng_below(&range_rng, (uint32_t)positions) * (size_t)channels + (size_t)j];
        int32_t v = sums[(size_t)fmi_rng_below(&range_rng, (uint32_t)positions) * (size_t)channels + (size_t)j];
        switch (fmi_rng_below(&range_rng, 5)) {
        case 0: lo[j] = u, hi[j] = INT32_MAX; break;
        case 1: lo[j] = INT32_MIN, hi[j] = u; break;
        case 2: lo[j] = u < v ? u : v, hi[j] = u < v ? v : u; break;
        case 3: lo[j] = INT32_MIN, hi[j] = INT32_MAX; break;
        default: lo[j] = 1, hi[j] = 0; break;
        }
    }
}

/* Every variant run with a sign stage (fm_conv_signs) writes exactly the
 * bits of the reference sums in the ranges into the map, bits past out_c
 * zero, nothing past the map; `run` calls variant v's kernel. */
typedef void (*fused_call)(const fm_kernels *k, const fm_deploy_layer *L, const void *input, float *scratch,
                           void *acc, const fm_conv_signs *signs);

static void compare_fused(const fm_deploy_layer *L, const void *input, const void *ref_sums, int integer,
                          fused_call run, const char *what)
{
    const size_t positions = (size_t)L->out_h * L->out_w, n = out_values(L);
    const int cw = fmi_conv_pixel_words(L->out_c);
    const size_t words = positions * (size_t)cw;
    int32_t *ilo = malloc((size_t)L->out_c * sizeof *ilo), *ihi = malloc((size_t)L->out_c * sizeof *ihi);
    float *flo = malloc((size_t)L->out_c * sizeof *flo), *fhi = malloc((size_t)L->out_c * sizeof *fhi);
    uint64_t *map = malloc((words + GUARD / 2) * sizeof *map), *expected = calloc(words, sizeof *expected);
    float *scratch = malloc((fmi_conv_kernel_scratch_floats(L->conv) + 1) * sizeof *scratch);
    void *acc = malloc(n * 4);
    assert_true(ilo && ihi && flo && fhi && map && expected && scratch && acc);
    if (integer)
        int_ranges(ref_sums, positions, L->out_c, ilo, ihi);
    else
        float_ranges(ref_sums, positions, L->out_c, flo, fhi);
    for (size_t p = 0; p < positions; p++)
        for (int j = 0; j < L->out_c; j++) {
            const size_t i = p * (size_t)L->out_c + (size_t)j;
            int plus;
            if (integer) {
                int32_t a = ((const int32_t *)ref_sums)[i];
                plus = ilo[j] <= a && a <= ihi[j];
            } else {
                float a = ((const float *)ref_sums)[i];
                plus = flo[j] <= a && a <= fhi[j];
            }
            expected[p * (size_t)cw + (size_t)(j / 64)] |= (uint64_t)plus << (j % 64);
        }
    const fm_conv_signs signs = {ilo, ihi, flo, fhi, map};
    for (int v = 0; v < n_variants; v++) {
        fill_canary(map, 2 * (words + GUARD / 2));
        run(variants[v].kernels, L, input, scratch + (v % 2), acc, &signs);
        check_canary(map + words, GUARD, variants[v].label);
        if (memcmp(map, expected, words * sizeof *map)) {
            size_t k = 0;
            while (map[k] == expected[k])
                k++;
            fail_msg("%s with signs: %s: word %zu (position %zu) is %016llx, expected %016llx", variants[v].label,
                     what, k, k / (size_t)cw, (unsigned long long)map[k], (unsigned long long)expected[k]);
        }
    }
    free(ilo);
    free(ihi);
    free(flo);
    free(fhi);
    free(map);
    free(expected);
    free(scratch);
    free(acc);
}

static void run_real(const fm_kernels *k, const fm_deploy_layer *L, const void *input, float *scratch, void *acc,
                     const fm_conv_signs *signs)
{
    k->conv_real(L->conv, input, acc, scratch, signs);
}

static void run_bits(const fm_kernels *k, const fm_deploy_layer *L, const void *input, float *scratch, void *acc,
                     const fm_conv_signs *signs)
{
    (void)scratch;
    k->conv_bits(L->conv, input, acc, signs);
}

/* Every variant's conv_real on x equals the reference, and the reference the
 * specification (and the double sum within rounding). */
static void compare_real(const fm_deploy_layer *L, const char *kind, const float *x, const char *pattern)
{
    const size_t n = out_values(L), scratch_floats = fmi_conv_kernel_scratch_floats(L->conv);
    float *scratch = malloc((scratch_floats + 1) * sizeof *scratch);
    float *acc = malloc((n + GUARD) * sizeof *acc), *ref = malloc(n * sizeof *ref);
    assert_true(scratch && acc && ref);
    char what[160];
    describe_layer(L, kind, what, sizeof what);
    for (int v = 0; v < n_variants; v++) {
        fill_canary(acc, n + GUARD);
        /* one float past a malloc'd start for every other variant: no alignment assumed */
        variants[v].kernels->conv_real(L->conv, x, acc, scratch + (v % 2), NULL);
        check_canary(acc + n, GUARD, variants[v].label);
        if (v == 0) {
            memcpy(ref, acc, n * sizeof *ref);
            continue;
        }
        if (memcmp(acc, ref, n * sizeof *ref)) {
            size_t i = 0;
            while (float_bits(acc[i]) == float_bits(ref[i]))
                i++;
            fail_msg("%s differs from ref: %s, %s inputs, value %zu (position %zu, channel %zu): %a, ref %a",
                     variants[v].label, what, pattern, i, i / (size_t)L->out_c, i % (size_t)L->out_c,
                     (double)acc[i], (double)ref[i]);
        }
        compared_calls++;
        compared_outputs += (long)n;
    }
    for (int oy = 0; oy < L->out_h; oy++)
        for (int ox = 0; ox < L->out_w; ox++)
            for (int j = 0; j < L->out_c; j++) {
                const size_t i = ((size_t)oy * L->out_w + (size_t)ox) * L->out_c + (size_t)j;
                float spec = spec_output(L, x, oy, ox, j);
                if (float_bits(spec) != float_bits(ref[i]))
                    fail_msg("ref is not the specification: %s, %s inputs, output (%d, %d, %d): %a, spec %a",
                             what, pattern, oy, ox, j, (double)ref[i], (double)spec);
                double magnitude, dot = dot_output(L, x, oy, ox, j, &magnitude);
                if (!(fabs(ref[i] - dot) <= 1e-5 * magnitude))
                    fail_msg("ref far from the exact sum: %s, output (%d, %d, %d): %.9g, %.9g", what, oy, ox,
                             j, (double)ref[i], dot);
            }
    compare_fused(L, x, ref, 0, run_real, what);
    free(scratch);
    free(acc);
    free(ref);
}

/* Every variant's conv_bits on the +-1 map of x's signs equals the exact
 * integer sum over the valid taps. */
static void compare_bits(const fm_deploy_layer *L, const float *x)
{
    const int cw = fmi_conv_pixel_words(L->in_c);
    const size_t pixels = (size_t)L->in_h * L->in_w, n = out_values(L);
    uint64_t *a = malloc(pixels * (size_t)cw * sizeof *a);
    int32_t *acc = malloc((n + GUARD) * sizeof *acc), *exact = malloc(n * sizeof *exact);
    assert_true(a && acc && exact);
    for (size_t p = 0; p < pixels; p++)
        fmi_pack_signs(x + p * (size_t)L->in_c, L->in_c, a + p * (size_t)cw);
    for (int oy = 0; oy < L->out_h; oy++)
        for (int ox = 0; ox < L->out_w; ox++)
            for (int j = 0; j < L->out_c; j++) {
                int32_t sum = 0;
                for (int ky = 0; ky < L->k_h; ky++)
                    for (int kx = 0; kx < L->k_w; kx++) {
                        int iy = oy * L->stride - L->pad_top + ky, ix = ox * L->stride - L->pad_left + kx;
                        if (iy < 0 || iy >= L->in_h || ix < 0 || ix >= L->in_w)
                            continue;
                        for (int c = 0; c < L->in_c; c++)
                            sum += (x[((size_t)iy * L->in_w + ix) * L->in_c + c] >= 0.0f ? 1 : -1) *
                                   (int32_t)weight_value(L, j, (ky * L->k_w + kx) * L->in_c + c);
                    }
                exact[((size_t)oy * L->out_w + ox) * L->out_c + j] = sum;
            }
    char what[160];
    describe_layer(L, "binary", what, sizeof what);
    for (int v = 0; v < n_variants; v++) {
        fill_canary(acc, n + GUARD);
        variants[v].kernels->conv_bits(L->conv, a, acc, NULL);
        check_canary(acc + n, GUARD, variants[v].label);
        for (size_t i = 0; i < n; i++)
            if (acc[i] != exact[i])
                fail_msg("%s conv_bits %s: value %zu (position %zu, channel %zu) is %d, exact %d",
                         variants[v].label, what, i, i / (size_t)L->out_c, i % (size_t)L->out_c, acc[i],
                         exact[i]);
        compared_calls++;
        compared_outputs += (long)n;
    }
    compare_fused(L, a, exact, 1, run_bits, what);
    free(a);
    free(acc);
    free(exact);
}

/* One layer of `kind` and shape sh, with every input pattern. */
static void check_layer(const weight_kind *kind, const shape *sh, fm_rng *rng)
{
    fm_deploy_layer L;
    make_conv(&L, kind, sh, rng);
    const size_t n = in_values(&L);
    float *block = malloc((n + 1) * sizeof *block);
    assert_non_null(block);
    float *x = block + 1; /* any alignment must do */
    for (int p = 0; p < N_PATTERNS; p++) {
        make_inputs(x, n, (enum input_pattern)p, rng);
        compare_real(&L, kind->label, x, pattern_names[p]);
        if (kind->weights == FM_DW_BINARY && (p == INPUT_WIDE || p == INPUT_PLUS_MINUS_ONE))
            compare_bits(&L, x);
    }
    free(block);
    free_conv(&L);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_random_shapes(void **state)
{
    (void)state;
    find_variants();
    print_variants();
    fmi_rng_seed(&range_rng, 3);
    compared_calls = compared_outputs = 0;
    fm_rng rng;
    fmi_rng_seed(&rng, 20261206);
    for (int r = 0; r < 60; r++) {
        shape sh = random_shape(&rng);
        for (size_t k = 0; k < N_KINDS; k++)
            check_layer(&kinds[k], &sh, &rng);
    }
    print_message("random shapes: %ld variant calls, %ld values equal to ref\n", compared_calls,
                  compared_outputs);
}

/* Every kernel size and stride with channel counts around the chunk and
 * block edges; maps smaller than the kernel with padding. */
static void test_edge_shapes(void **state)
{
    (void)state;
    find_variants();
    fm_rng rng;
    fmi_rng_seed(&rng, 77);
    for (int k = 1; k <= 5; k++)
        for (int s = 1; s <= 3; s++) {
            shape sh = {7 + k % 2, 9 - s, 1 + (k * 13 + s * 7) % 70, k, k, s, k / 2, (k - 1) / 2, k / 2, k / 2,
                        1 + (k * 5 + s) % 34};
            check_layer(&kinds[0], &sh, &rng);
            check_layer(&kinds[1], &sh, &rng);
            check_layer(&kinds[4], &sh, &rng);
        }
    /* a map smaller than the kernel: every window has padding */
    shape small = {2, 3, 5, 5, 5, 1, 2, 2, 2, 2, 18};
    for (size_t k = 0; k < N_KINDS; k++)
        check_layer(&kinds[k], &small, &rng);
    /* a 1x1 map and a 1x1 kernel */
    shape one = {1, 1, 33, 1, 1, 1, 0, 0, 0, 0, 17};
    for (size_t k = 0; k < N_KINDS; k++)
        check_layer(&kinds[k], &one, &rng);
}

/* Shapes of paper-cnn's layers (scaled down in the map), where the variants
 * run many positions, channel chunks and output blocks at once. */
static void test_network_shapes(void **state)
{
    (void)state;
    find_variants();
    compared_calls = compared_outputs = 0;
    fm_rng rng;
    fmi_rng_seed(&rng, 4242);
    const shape shapes[] = {
        {12, 12, 3, 3, 3, 1, 0, 0, 0, 0, 128},  {10, 11, 128, 3, 3, 1, 0, 0, 0, 0, 128},
        {7, 7, 128, 2, 2, 1, 0, 0, 0, 0, 256},  {5, 6, 256, 2, 2, 1, 0, 0, 0, 0, 64},
        {9, 9, 96, 3, 3, 1, 1, 1, 1, 1, 80},    {11, 13, 64, 5, 5, 2, 2, 2, 2, 2, 48},
        {28, 28, 1, 5, 5, 1, 2, 2, 2, 2, 20},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        check_layer(&kinds[0], &shapes[s], &rng);
        check_layer(&kinds[1], &shapes[s], &rng);
        check_layer(&kinds[5], &shapes[s], &rng);
    }
    print_message("network shapes: %ld variant calls, %ld values equal to ref\n", compared_calls,
                  compared_outputs);
}

/* Filters of all +1 and all -1 weights on maps of all +1 and all -1 with
 * more than 31 channel chunks per window: the extremes of the byte counters
 * of the vpshufb popcounts. */
static void test_bits_extremes(void **state)
{
    (void)state;
    find_variants();
    fm_rng rng;
    fmi_rng_seed(&rng, 31);
    const shape shapes[] = {{4, 4, 1024, 2, 2, 1, 0, 0, 1, 1, 35}, {3, 5, 1000, 3, 3, 1, 1, 1, 1, 1, 17}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        fm_deploy_layer L;
        make_conv(&L, &kinds[0], &shapes[s], &rng);
        fmi_conv_weights_free(L.conv);
        for (int i = 0; i < L.in; i++) {
            fmi_deploy_set_code(&L, 0, i, 0);
            fmi_deploy_set_code(&L, 1, i, 1);
            fmi_deploy_set_code(&L, 33 % L.out, i, 0);
        }
        assert_int_equal(fmi_conv_prepare(&L, &L.conv), FM_OK);
        const size_t n = in_values(&L);
        float *x = malloc(n * sizeof *x);
        assert_non_null(x);
        for (int sign = 0; sign < 2; sign++) {
            for (size_t i = 0; i < n; i++)
                x[i] = sign ? -1.0f : 1.0f;
            compare_bits(&L, x);
            compare_real(&L, "binary", x, sign ? "all -1" : "all +1");
        }
        free(x);
        free_conv(&L);
    }
}

/* signs_int and signs_float: every variant gives lo <= acc <= hi as bits,
 * bits past the channels zero, nothing written past the map; empty and full
 * ranges, NaN, infinities and signed zeros included. */
static void test_signs(void **state)
{
    (void)state;
    find_variants();
    fm_rng rng;
    fmi_rng_seed(&rng, 5);
    static const int channels[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 128, 130, 200, 256};
    for (size_t s = 0; s < sizeof channels / sizeof channels[0]; s++)
        for (size_t positions = 1; positions <= 9; positions += 4) {
            const int c = channels[s], cw = fmi_conv_pixel_words(c);
            const size_t n = positions * (size_t)c, words = positions * (size_t)cw;
            int32_t *acc = malloc(n * sizeof *acc), *ilo = malloc((size_t)c * sizeof *ilo);
            int32_t *ihi = malloc((size_t)c * sizeof *ihi);
            float *z = malloc(n * sizeof *z), *flo = malloc((size_t)c * sizeof *flo), *fhi = malloc((size_t)c * sizeof *fhi);
            uint64_t *map = malloc((words + GUARD / 2) * sizeof *map), *expected = malloc(words * sizeof *expected);
            assert_true(acc && ilo && ihi && z && flo && fhi && map && expected);
            for (int j = 0; j < c; j++) {
                int32_t a = (int32_t)fmi_rng_below(&rng, 41) - 20, b = (int32_t)fmi_rng_below(&rng, 41) - 20;
                switch (fmi_rng_below(&rng, 4)) {
                case 0: ilo[j] = a, ihi[j] = INT32_MAX; break;
                case 1: ilo[j] = INT32_MIN, ihi[j] = a; break;
                case 2: ilo[j] = a, ihi[j] = b; break; /* empty where a > b */
                default: ilo[j] = INT32_MIN, ihi[j] = INT32_MAX; break;
                }
                float u = wide_value(&rng), v = wide_value(&rng);
                switch (fmi_rng_below(&rng, 5)) {
                case 0: flo[j] = u, fhi[j] = INFINITY; break;
                case 1: flo[j] = -INFINITY, fhi[j] = u; break;
                case 2: flo[j] = u, fhi[j] = v; break;
                case 3: flo[j] = -FLT_MAX, fhi[j] = FLT_MAX; break;
                default: flo[j] = INFINITY, fhi[j] = -INFINITY; break;
                }
            }
            for (size_t i = 0; i < n; i++) {
                acc[i] = fmi_rng_below(&rng, 50) == 0 ? (fmi_rng_below(&rng, 2) ? INT32_MAX : INT32_MIN)
                                                      : (int32_t)fmi_rng_below(&rng, 41) - 20;
                z[i] = wide_value(&rng);
                if (fmi_rng_below(&rng, 40) == 0)
                    z[i] = (const float[]){NAN, INFINITY, -INFINITY, 0.0f, -0.0f}[fmi_rng_below(&rng, 5)];
            }
            for (int form = 0; form < 2; form++) {
                memset(expected, 0, words * sizeof *expected);
                for (size_t p = 0; p < positions; p++)
                    for (int j = 0; j < c; j++) {
                        size_t i = p * (size_t)c + (size_t)j;
                        int plus = form ? flo[j] <= z[i] && z[i] <= fhi[j] : ilo[j] <= acc[i] && acc[i] <= ihi[j];
                        expected[p * (size_t)cw + (size_t)(j / 64)] |= (uint64_t)plus << (j % 64);
                    }
                for (int v = 0; v < n_variants; v++) {
                    fill_canary(map, 2 * (words + GUARD / 2));
                    if (form)
                        variants[v].kernels->signs_float(z, positions, c, flo, fhi, map);
                    else
                        variants[v].kernels->signs_int(acc, positions, c, ilo, ihi, map);
                    check_canary(map + words, GUARD, variants[v].label);
                    if (memcmp(map, expected, words * sizeof *map))
                        fail_msg("%s signs_%s: %zu positions x %d channels differ from the ranges",
                                 variants[v].label, form ? "float" : "int", positions, c);
                }
            }
            free(acc);
            free(ilo);
            free(ihi);
            free(z);
            free(flo);
            free(fhi);
            free(map);
            free(expected);
        }
}

/* The ranges of the folded batch norm (fmi_sign_range_int, _float) give
 * exactly the float formula's sign, z = scale * acc + offset >= 0 rounded as
 * the engine rounds it, for every integer sum in [-n, n] and for float sums
 * around the range's ends, both zeros, infinities, subnormals and random
 * magnitudes; scales positive, negative, zero and of extreme sizes. */
static void test_sign_ranges(void **state)
{
    (void)state;
    fm_rng rng;
    fmi_rng_seed(&rng, 99);
    long checked = 0;
    for (int k = 0; k < 3000; k++) {
        float scale, offset;
        switch (k % 6) {
        case 0: scale = 0.0f; break;
        case 1: scale = -0.0f; break;
        case 2: scale = ldexpf(0.5f + fmi_rng_uniform(&rng), (int)fmi_rng_below(&rng, 60) - 30); break;
        case 3: scale = -ldexpf(0.5f + fmi_rng_uniform(&rng), (int)fmi_rng_below(&rng, 60) - 30); break;
        case 4: scale = (fmi_rng_below(&rng, 2) ? 1 : -1) * ldexpf(1.0f, (int)fmi_rng_below(&rng, 250) - 125); break;
        default: scale = wide_value(&rng); break;
        }
        offset = fmi_rng_below(&rng, 8) == 0 ? (fmi_rng_below(&rng, 2) ? 0.0f : -0.0f)
                                              : wide_value(&rng) * (float)(1 + fmi_rng_below(&rng, 100));
        if (k % 17 == 0)
            offset = ldexpf(fmi_rng_below(&rng, 2) ? 1.0f : -1.0f, -140); /* subnormal */
        /* integer sums */
        const int32_t n = 1 + (int32_t)fmi_rng_below(&rng, 300);
        int32_t ilo, ihi;
        fmi_sign_range_int(scale, offset, n, &ilo, &ihi);
        for (int32_t a = -n; a <= n; a++) {
            int want = fmi_deploy_z((float)a, scale, offset) >= 0.0f, got = ilo <= a && a <= ihi;
            if (want != got)
                fail_msg("int range [%d, %d] of scale %a offset %a, n %d: sum %d gives %d, z gives %d", ilo, ihi,
                         (double)scale, (double)offset, n, a, got, want);
            checked++;
        }
        /* float sums */
        float flo, fhi;
        fmi_sign_range_float(scale, offset, &flo, &fhi);
        float probes[64];
        int np = 0;
        const float ends[] = {flo, fhi};
        for (int e = 0; e < 2; e++)
            if (isfinite(ends[e])) {
                float v = ends[e];
                for (int d = 0; d < 4; d++)
                    v = nextafterf(v, -INFINITY);
                for (int d = 0; d < 9; d++, v = nextafterf(v, INFINITY))
                    probes[np++] = v;
            }
        const float fixed[] = {0.0f, -0.0f, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, 0x1p-149f, -0x1p-149f, 1.0f, -1.0f};
        for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++)
            probes[np++] = fixed[f];
        while (np < 64)
            probes[np++] = wide_value(&rng) * ldexpf(1.0f, (int)fmi_rng_below(&rng, 200) - 100);
        for (int i = 0; i < np; i++) {
            const float a = probes[i];
            int want = fmi_deploy_z(a, scale, offset) >= 0.0f, got = flo <= a && a <= fhi;
            if (want != got)
                fail_msg("float range [%a, %a] of scale %a offset %a: sum %a gives %d, z gives %d", (double)flo,
                         (double)fhi, (double)scale, (double)offset, (double)a, got, want);
            checked++;
        }
    }
    print_message("sign ranges: %ld sums checked against the formula\n", checked);
}

/* A layout that cannot be built is refused without leaks: invalid codes,
 * and every allocation failing in turn. */
static void test_prepare_refusals(void **state)
{
    (void)state;
    fm_rng rng;
    fmi_rng_seed(&rng, 9);
    const shape sh = {5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 19};
    fm_deploy_layer L;
    make_conv(&L, &kinds[1], &sh, &rng);
    fmi_conv_weights_free(L.conv);
    L.conv = NULL;
    fmi_deploy_set_code(&L, 4, 8, 2); /* ternary code 2 is invalid */
    fm_conv_weights *w = (fm_conv_weights *)(uintptr_t)1;
    assert_int_equal(fmi_conv_prepare(&L, &w), FM_EINVAL);
    assert_null(w);
    free_conv(&L);
    for (size_t k = 0; k < N_KINDS; k++) {
        make_conv(&L, &kinds[k], &sh, &rng);
        fmi_conv_weights_free(L.conv);
        L.conv = NULL;
        const long live = track.live;
        for (long n = 1;; n++) {
            track.calls = 0;
            track.fail_at = n;
            w = (fm_conv_weights *)(uintptr_t)1;
            int rc = fmi_conv_prepare(&L, &w);
            track.fail_at = 0;
            if (rc == FM_OK) {
                assert_true(n > 1);
                fmi_conv_weights_free(w);
                break;
            }
            assert_int_equal(rc, FM_ENOMEM);
            assert_null(w);
            assert_int_equal(track.live, live);
        }
        free_conv(&L);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_shapes, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_edge_shapes, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_network_shapes, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_bits_extremes, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_signs, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_sign_ranges, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_prepare_refusals, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
