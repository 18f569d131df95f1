/* test_infer_kernels.c — the multiplication-free inference kernels
 * (src/deploy/infer*.c): every variant this CPU supports (the AVX-512 one
 * also with its vpshufb popcount) must equal the scalar reference bit for bit
 * on binary, ternary and synapse layers of many odd shapes and on inputs with
 * signed zeros and a wide range of magnitudes; the reference must agree with
 * a double-precision dot product, `bits` with an exact integer sum; nothing is
 * written past the outputs. Also the choice of variant (names, FEWMUL_KERNELS),
 * fmi_pack_signs, and preparation errors and allocation failures without leaks. */
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

#include "deploy.h"
#include "fewmul.h"
#include "infer.h"
#include "internal.h"
#include "rng.h"

#define SUPPORT_NAME "infer-kernels"
#include "support.h"
#include "kernel_checks.h"

/* ---- layers ---------------------------------------------------------------- */

/* A layer with random codes; binary rows also get ones in the unused bits of
 * their last byte, which the kernels must ignore. */
static void make_layer(fm_deploy_layer *L, const weight_kind *kind, int in, int out, fm_rng *rng)
{
    memset(L, 0, sizeof *L);
    L->in = in;
    L->out = out;
    L->weights = kind->weights;
    L->levels = kind->levels;
    L->bits = code_bits(kind);
    L->unit = 1.0f;
    assert_int_equal(fmi_deploy_layer_alloc(L), FM_OK);
    for (int k = 0; k < L->levels; k++)
        L->magnitudes[k] = k == 0 ? 0.01f + 0.01f * fmi_rng_uniform(rng)
                                  : L->magnitudes[k - 1] * (1.05f + fmi_rng_uniform(rng));
    const uint32_t index_bits = (uint32_t)L->bits - 1;
    for (int j = 0; j < out; j++) {
        for (int i = 0; i < in; i++) {
            uint32_t code;
            if (L->weights == FM_DW_BINARY)
                code = fmi_rng_below(rng, 2);
            else if (L->weights == FM_DW_TERNARY)
                code = (const uint32_t[]){0, 1, 3}[fmi_rng_below(rng, 3)];
            else
                code = fmi_rng_below(rng, (uint32_t)L->levels) | fmi_rng_below(rng, 2) << index_bits;
            fmi_deploy_set_code(L, j, i, code);
        }
        if (L->weights == FM_DW_BINARY && in % 8)
            L->packed[(size_t)j * L->row_bytes + L->row_bytes - 1] |= (uint8_t)(0xffu << (in % 8));
    }
}

static void free_layer(fm_deploy_layer *L)
{
    fmi_free(L->packed);
    fmi_free(L->scale);
    fmi_free(L->offset);
    fmi_free(L->magnitudes);
    fmi_kernel_weights_free(L->kernel);
    memset(L, 0, sizeof *L);
}

static float weight_value(const fm_deploy_layer *L, int j, int i)
{
    return fmi_deploy_code_value(L, fmi_deploy_code(L, j, i));
}

/* ---- inputs -------------------------------------------------------------- */

enum input_pattern { INPUT_WIDE, INPUT_PLUS_MINUS_ONE, INPUT_MINUS_ZERO, INPUT_SIGNED_ZEROS, N_PATTERNS };
static const char *const pattern_names[] = {"wide", "+-1", "-0", "+-0"};

static void make_inputs(float *x, int in, enum input_pattern pattern, fm_rng *rng)
{
    for (int i = 0; i < in; i++) {
        switch (pattern) {
        case INPUT_WIDE: x[i] = wide_value(rng); break;
        case INPUT_PLUS_MINUS_ONE: x[i] = fmi_rng_below(rng, 2) ? 1.0f : -1.0f; break;
        case INPUT_MINUS_ZERO: x[i] = -0.0f; break;
        default: x[i] = fmi_rng_below(rng, 2) ? 0.0f : -0.0f; break;
        }
    }
}

/* ---- comparing variants --------------------------------------------------- */

typedef struct case_stats {
    long calls_compared, outputs_compared;
} case_stats;
static case_stats stats;

/* Runs every variant on one layer and input and requires the reference's bytes. */
static void compare_real(const fm_deploy_layer *L, const fm_kernel_weights *w, const float *x,
                         const char *pattern, float *ref_out)
{
    size_t scratch_floats = fmi_kernel_scratch_floats(w);
    /* one float past a malloc'd start: the kernels must not assume alignment */
    float *scratch_block = malloc((scratch_floats + 1) * sizeof(float));
    float *acc = malloc(((size_t)L->out + GUARD) * sizeof(float));
    assert_non_null(scratch_block);
    assert_non_null(acc);
    for (int v = 0; v < n_variants; v++) {
        fill_canary(acc, (size_t)L->out + GUARD);
        variants[v].kernels->real(w, x, acc, scratch_block + (v % 2));
        check_canary(acc + L->out, GUARD, variants[v].label);
        if (v == 0) {
            memcpy(ref_out, acc, (size_t)L->out * sizeof(float));
            continue;
        }
        if (memcmp(acc, ref_out, (size_t)L->out * sizeof(float))) {
            int j = 0;
            while (float_bits(acc[j]) == float_bits(ref_out[j]))
                j++;
            fail_msg("%s differs from ref: %d x %d %s weights, %s inputs, output %d: %a (0x%08x), "
                     "ref %a (0x%08x)",
                     variants[v].label, L->in, L->out, L->weights == FM_DW_BINARY    ? "binary"
                                                       : L->weights == FM_DW_TERNARY ? "ternary"
                                                                                     : "synapse",
                     pattern, j, (double)acc[j], float_bits(acc[j]), (double)ref_out[j],
                     float_bits(ref_out[j]));
        }
        stats.calls_compared++;
        stats.outputs_compared += L->out;
    }
    free(scratch_block);
    free(acc);
}

/* The reference against sum_i x_i * w_ij in double. */
static void check_ref_against_dot(const fm_deploy_layer *L, const float *x, const float *ref_out)
{
    for (int j = 0; j < L->out; j++) {
        double dot = 0, magnitude = 0;
        for (int i = 0; i < L->in; i++) {
            double term = (double)x[i] * weight_value(L, j, i);
            dot += term;
            magnitude += fabs(term);
        }
        double tolerance = 1e-5 * magnitude;
        if (!(fabs(ref_out[j] - dot) <= tolerance))
            fail_msg("ref %d x %d output %d: %.9g, dot product %.9g (tolerance %.3g)", L->in, L->out, j,
                     (double)ref_out[j], dot, tolerance);
    }
}

/* `bits`: every variant equals the exact integer sum of a_i * w_ij. */
static void compare_bits(const fm_deploy_layer *L, const fm_kernel_weights *w, const float *x,
                         const float *ref_real)
{
    size_t words = fmi_kernel_bit_words(L->in);
    uint64_t *a = malloc(words * sizeof *a);
    int32_t *acc = malloc(((size_t)L->out + GUARD) * sizeof *acc);
    int32_t *expected = malloc((size_t)L->out * sizeof *expected);
    assert_true(a && acc && expected);
    fmi_pack_signs(x, L->in, a);
    for (int j = 0; j < L->out; j++) {
        int32_t sum = 0;
        for (int i = 0; i < L->in; i++)
            sum += (x[i] >= 0.0f ? 1 : -1) * (int32_t)weight_value(L, j, i);
        expected[j] = sum;
        /* on +-1 inputs the real kernel's sums of small integers are exact too */
        if (ref_real && ref_real[j] != (float)sum)
            fail_msg("ref real %d x %d output %d on +-1 inputs: %g, expected %d", L->in, L->out, j,
                     (double)ref_real[j], sum);
    }
    for (int v = 0; v < n_variants; v++) {
        fill_canary(acc, (size_t)L->out + GUARD);
        variants[v].kernels->bits(w, a, acc);
        check_canary(acc + L->out, GUARD, variants[v].label);
        for (int j = 0; j < L->out; j++)
            if (acc[j] != expected[j])
                fail_msg("%s bits %d x %d output %d: %d, expected %d", variants[v].label, L->in,
                         L->out, j, acc[j], expected[j]);
        stats.calls_compared++;
        stats.outputs_compared += L->out;
    }
    free(a);
    free(acc);
    free(expected);
}

/* `bits` of a layer that is not binary writes zeros (infer.h). */
static void check_bits_zero(const fm_deploy_layer *L, const fm_kernel_weights *w, const float *x)
{
    uint64_t *a = malloc(fmi_kernel_bit_words(L->in) * sizeof *a);
    int32_t *acc = malloc(((size_t)L->out + GUARD) * sizeof *acc);
    assert_true(a && acc);
    fmi_pack_signs(x, L->in, a);
    for (int v = 0; v < n_variants; v++) {
        fill_canary(acc, (size_t)L->out + GUARD);
        variants[v].kernels->bits(w, a, acc);
        check_canary(acc + L->out, GUARD, variants[v].label);
        for (int j = 0; j < L->out; j++)
            if (acc[j] != 0)
                fail_msg("%s bits of a non-binary layer: output %d is %d", variants[v].label, j, acc[j]);
    }
    free(a);
    free(acc);
}

static void check_shape(const weight_kind *kind, int in, int out, fm_rng *rng)
{
    fm_deploy_layer L;
    make_layer(&L, kind, in, out, rng);
    fm_kernel_weights *w;
    int rc = fmi_kernel_prepare(&L, &w);
    if (rc != FM_OK)
        fail_msg("prepare %s %d x %d: %s", kind->label, in, out, fm_last_error());
    L.kernel = w;
    /* x sits one float past a malloc'd start: any alignment must do */
    float *x_block = malloc(((size_t)in + 1) * sizeof(float));
    float *ref_out = malloc((size_t)out * sizeof(float));
    assert_true(x_block && ref_out);
    float *x = x_block + 1;
    for (int p = 0; p < N_PATTERNS; p++) {
        make_inputs(x, in, (enum input_pattern)p, rng);
        compare_real(&L, w, x, pattern_names[p], ref_out);
        if (p == INPUT_WIDE || p == INPUT_PLUS_MINUS_ONE)
            check_ref_against_dot(&L, x, ref_out);
        if (kind->weights == FM_DW_BINARY && (p == INPUT_WIDE || p == INPUT_PLUS_MINUS_ONE))
            compare_bits(&L, w, x, p == INPUT_PLUS_MINUS_ONE ? ref_out : NULL);
    }
    if (kind->weights != FM_DW_BINARY)
        check_bits_zero(&L, w, x);
    free(x_block);
    free(ref_out);
    free_layer(&L);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_variants_equal_ref_small_shapes(void **state)
{
    (void)state;
    find_variants();
    print_variants();
    memset(&stats, 0, sizeof stats);
    fm_rng rng;
    fmi_rng_seed(&rng, 20240601);
    static const int odd_outs[] = {63, 65, 127, 40};
    for (size_t k = 0; k < N_KINDS; k++)
        for (int in = 1; in <= 70; in++) {
            check_shape(&kinds[k], in, 1 + (in * 7 + (int)k) % 40, &rng);
            check_shape(&kinds[k], in, odd_outs[in % 4], &rng);
        }
    print_message("in 1..70: %ld variant calls, %ld outputs equal to ref\n", stats.calls_compared,
                  stats.outputs_compared);
}

static void test_variants_equal_ref_every_out(void **state)
{
    (void)state;
    find_variants();
    fm_rng rng;
    fmi_rng_seed(&rng, 77);
    for (size_t k = 0; k < N_KINDS; k++)
        for (int out = 1; out <= 40; out++)
            check_shape(&kinds[k], (const int[]){3, 32, 33, 37}[out % 4], out, &rng);
}

static void test_variants_equal_ref_large_shapes(void **state)
{
    (void)state;
    find_variants();
    memset(&stats, 0, sizeof stats);
    fm_rng rng;
    fmi_rng_seed(&rng, 4242);
    static const int ins[] = {97, 131, 255, 785};
    static const int outs[] = {1, 17, 63, 65, 127};
    for (size_t k = 0; k < N_KINDS; k++)
        for (size_t a = 0; a < sizeof ins / sizeof ins[0]; a++)
            for (size_t b = 0; b < sizeof outs / sizeof outs[0]; b++)
                check_shape(&kinds[k], ins[a], outs[b], &rng);
    /* the paper MLP's first layer, whose speed the layout is for */
    check_shape(&kinds[0], 784, 1024, &rng);
    print_message("large shapes: %ld variant calls, %ld outputs equal to ref\n", stats.calls_compared,
                  stats.outputs_compared);
}

/* Rows of all -1 and all +1 weights against inputs of all +1 and all -1:
 * every chunk of 32 inputs then differs in all bits (or none), the extremes of
 * the popcount kernels' byte counters, over more than 31 chunks. */
static void test_bits_extremes(void **state)
{
    (void)state;
    find_variants();
    fm_rng rng;
    fmi_rng_seed(&rng, 31);
    static const int ins[] = {992, 993, 1024, 2049, 4000};
    for (size_t s = 0; s < sizeof ins / sizeof ins[0]; s++) {
        int in = ins[s];
        fm_deploy_layer L;
        make_layer(&L, &kinds[0], in, 35, &rng);
        for (int i = 0; i < in; i++) {
            fmi_deploy_set_code(&L, 0, i, 0);
            fmi_deploy_set_code(&L, 1, i, 1);
            fmi_deploy_set_code(&L, 33, i, 0);
        }
        fm_kernel_weights *w;
        assert_int_equal(fmi_kernel_prepare(&L, &w), FM_OK);
        L.kernel = w;
        float *x = malloc((size_t)in * sizeof *x), *ref_out = malloc((size_t)L.out * sizeof *ref_out);
        assert_true(x && ref_out);
        for (int sign = 0; sign < 2; sign++) {
            for (int i = 0; i < in; i++)
                x[i] = sign ? -1.0f : 1.0f;
            compare_real(&L, w, x, sign ? "all -1" : "all +1", ref_out);
            compare_bits(&L, w, x, ref_out);
            assert_int_equal((int)ref_out[0], sign ? in : -in);
        }
        free(x);
        free(ref_out);
        free_layer(&L);
    }
}

static void test_pack_signs(void **state)
{
    (void)state;
    fm_rng rng;
    fmi_rng_seed(&rng, 5);
    for (int n = 1; n <= 200; n++) {
        float x[200];
        uint64_t a[5];
        memset(a, 0xff, sizeof a);
        for (int i = 0; i < n; i++)
            x[i] = wide_value(&rng);
        fmi_pack_signs(x, n, a);
        size_t words = fmi_kernel_bit_words(n);
        for (int i = 0; i < (int)(64 * words); i++) {
            int bit = (int)(a[i / 64] >> (i % 64) & 1);
            int expected = i < n && x[i] >= 0.0f; /* +0.0 and -0.0 both count as +1 */
            if (bit != expected)
                fail_msg("n = %d: bit %d is %d (x = %g)", n, i, bit, i < n ? (double)x[i] : 0.0);
        }
        for (size_t k = words; k < 5; k++)
            assert_true(a[k] == UINT64_MAX); /* nothing past the last word */
    }
}

/* Restores FEWMUL_KERNELS as the test found it. */
static char saved_env[64];
static int had_env;

static void save_env(void)
{
    const char *v = getenv("FEWMUL_KERNELS");
    had_env = v != NULL;
    snprintf(saved_env, sizeof saved_env, "%s", v ? v : "");
}

static void restore_env(void)
{
    if (had_env)
        setenv("FEWMUL_KERNELS", saved_env, 1);
    else
        unsetenv("FEWMUL_KERNELS");
}

static void test_choosing_variants(void **state)
{
    (void)state;
    const fm_kernels *k = (const fm_kernels *)(uintptr_t)1;
    assert_int_equal(fmi_kernels_get("nonsense", &k), FM_EINVAL);
    assert_null(k);
    assert_non_null(strstr(fm_last_error(), "nonsense"));
    assert_int_equal(fmi_kernels_get("ref", &k), FM_OK);
    assert_string_equal(k->name, "ref");

    const fm_kernels *best = NULL;
    for (int i = 0; fmi_kernels_supported(i); i++)
        best = fmi_kernels_supported(i);
    assert_non_null(best);
    for (int i = 0; i < 4; i++) {
        const char *name = (const char *[]){"ref", "avx2", "avx512", "neon"}[i];
        int rc = fmi_kernels_get(name, &k);
        int listed = 0;
        for (int s = 0; fmi_kernels_supported(s); s++)
            listed |= !strcmp(fmi_kernels_supported(s)->name, name);
        if (rc == FM_OK) {
            assert_string_equal(k->name, name);
            assert_true(listed);
        } else {
            assert_int_equal(rc, FM_EUNSUPPORTED);
            assert_false(listed);
            print_message("%s unsupported here: %s\n", name, fm_last_error());
        }
    }
    print_message("best variant on this CPU: %s\n", best->name);
    /* NEON is in every aarch64 CPU: built there, it is the best; elsewhere refused */
#if defined(__aarch64__)
    assert_string_equal(best->name, "neon");
#else
    assert_int_equal(fmi_kernels_get("neon", &k), FM_EUNSUPPORTED);
    assert_null(k);
    assert_string_equal(fm_last_error(), "neon: this build has no NEON kernels (not built for aarch64)");
#endif

    save_env();
    unsetenv("FEWMUL_KERNELS");
    assert_int_equal(fmi_kernels_default(&k), FM_OK);
    assert_ptr_equal(k, best);
    setenv("FEWMUL_KERNELS", "", 1);
    assert_int_equal(fmi_kernels_default(&k), FM_OK);
    assert_ptr_equal(k, best);
    setenv("FEWMUL_KERNELS", "ref", 1);
    assert_int_equal(fmi_kernels_default(&k), FM_OK);
    assert_string_equal(k->name, "ref");
    setenv("FEWMUL_KERNELS", "foo", 1);
    assert_int_equal(fmi_kernels_default(&k), FM_EINVAL);
    assert_null(k);
    assert_string_equal(fm_last_error(), "FEWMUL_KERNELS=foo: unknown kernel variant (ref, avx2, avx512, neon)");
    for (int i = 0; i < 3; i++) {
        const char *name = (const char *[]){"avx2", "avx512", "neon"}[i];
        setenv("FEWMUL_KERNELS", name, 1);
        const fm_kernels *direct;
        int rc = fmi_kernels_get(name, &direct);
        /* a variant missing here is the setting's fault: FM_EINVAL (exit 1), not bad input */
        assert_int_equal(fmi_kernels_default(&k), rc == FM_OK ? FM_OK : FM_EINVAL);
        if (rc == FM_OK) {
            assert_ptr_equal(k, direct);
        } else {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "FEWMUL_KERNELS=%s: ", name);
            assert_memory_equal(fm_last_error(), prefix, strlen(prefix));
        }
    }
    restore_env();
}

static void test_prepare_rejects(void **state)
{
    (void)state;
    fm_rng rng;
    fmi_rng_seed(&rng, 9);
    fm_kernel_weights *w = (fm_kernel_weights *)(uintptr_t)1;

    fm_deploy_layer L;
    memset(&L, 0, sizeof L);
    L.in = 3;
    L.out = 2;
    L.weights = FM_DW_FP32;
    L.bits = 32;
    L.unit = 1.0f;
    assert_int_equal(fmi_deploy_layer_alloc(&L), FM_OK);
    assert_int_equal(fmi_kernel_prepare(&L, &w), FM_EINVAL); /* fp32 goes through BLAS */
    assert_null(w);
    free_layer(&L);

    make_layer(&L, &kinds[1], 9, 5, &rng);
    fmi_deploy_set_code(&L, 4, 8, 2); /* ternary code 2 is invalid */
    assert_int_equal(fmi_kernel_prepare(&L, &w), FM_EINVAL);
    assert_null(w);
    free_layer(&L);

    make_layer(&L, &kinds[3], 9, 5, &rng); /* 5 levels: 3 index bits */
    fmi_deploy_set_code(&L, 2, 7, 6);
    assert_int_equal(fmi_kernel_prepare(&L, &w), FM_EINVAL);
    assert_null(w);
    assert_non_null(strstr(fm_last_error(), "level 6"));
    free_layer(&L);

    make_layer(&L, &kinds[0], 9, 5, &rng);
    L.bits = 2; /* a binary layer must store 1 bit per weight */
    assert_int_equal(fmi_kernel_prepare(&L, &w), FM_EINVAL);
    L.bits = 1;
    free_layer(&L);
}

static void test_prepare_out_of_memory(void **state)
{
    (void)state;
    fm_rng rng;
    fmi_rng_seed(&rng, 11);
    for (size_t k = 0; k < N_KINDS; k++) {
        fm_deploy_layer L;
        make_layer(&L, &kinds[k], 45, 19, &rng);
        const long live = track.live; /* the layer above */
        for (long n = 1;; n++) {
            track.calls = 0;
            track.fail_at = n;
            fm_kernel_weights *w = (fm_kernel_weights *)(uintptr_t)1;
            int rc = fmi_kernel_prepare(&L, &w);
            track.fail_at = 0;
            if (rc == FM_OK) {
                assert_true(n > 1);
                fmi_kernel_weights_free(w);
                break;
            }
            if (rc != FM_ENOMEM)
                fail_msg("allocation %ld: %s", n, fm_last_error());
            assert_null(w);
            assert_int_equal(track.live, live);
        }
        assert_int_equal(track.live, live);
        free_layer(&L);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_variants_equal_ref_small_shapes, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_variants_equal_ref_every_out, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_variants_equal_ref_large_shapes, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_bits_extremes, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_pack_signs, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_choosing_variants, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_prepare_rejects, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_prepare_out_of_memory, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
