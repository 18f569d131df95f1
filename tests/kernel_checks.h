/* kernel_checks.h — what the tests of the inference kernels share
 * (test_infer_kernels.c, test_infer_conv.c): the weight kinds of random
 * layers, inputs of a wide range of magnitudes with signed zeros, the kernel
 * variants this CPU supports (the AVX-512 one also with its vpshufb
 * popcount), and canaries past the outputs; test_pow2_grad.c uses the
 * variants and the canary value. Include after cmocka.h; the helpers a test
 * may not need are inline, so that leaving them unused warns of nothing. */
#ifndef FEWMUL_TEST_KERNEL_CHECKS_H
#define FEWMUL_TEST_KERNEL_CHECKS_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "deploy.h"
#include "infer.h"
#include "rng.h"

/* ---- layers and inputs ---------------------------------------------------- */

typedef struct weight_kind {
    const char *label;
    fm_deploy_weights weights;
    int levels;
} weight_kind;

static const weight_kind kinds[] = {
    {"binary", FM_DW_BINARY, 0},       {"ternary", FM_DW_TERNARY, 0},
    {"synapse-2", FM_DW_SYNAPSE, 2},   {"synapse-5", FM_DW_SYNAPSE, 5},
    {"synapse-16", FM_DW_SYNAPSE, 16}, {"synapse-26", FM_DW_SYNAPSE, 26},
    {"synapse-32", FM_DW_SYNAPSE, 32},
};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

static inline int code_bits(const weight_kind *kind)
{
    if (kind->weights == FM_DW_BINARY)
        return 1;
    if (kind->weights == FM_DW_TERNARY)
        return 2;
    int bits = 1;
    while ((1 << (bits - 1)) < kind->levels)
        bits++;
    return bits;
}

/* Magnitudes over 2^-10 .. 2^10, so a changed order of additions shows in
 * the low bits; about one value in eight is +0.0 or -0.0. */
static inline float wide_value(fm_rng *rng)
{
    uint32_t r = fmi_rng_below(rng, 16);
    if (r == 0)
        return 0.0f;
    if (r == 1)
        return -0.0f;
    float magnitude = ldexpf(0.5f + fmi_rng_uniform(rng), (int)fmi_rng_below(rng, 21) - 10);
    return fmi_rng_below(rng, 2) ? magnitude : -magnitude;
}

/* ---- variants -------------------------------------------------------------- */

typedef struct variant {
    const fm_kernels *kernels;
    char label[48];
} variant;

static variant variants[8];
static int n_variants; /* variants[0] is the reference */

static void find_variants(void)
{
    n_variants = 0;
    for (int k = 0; fmi_kernels_supported(k); k++) {
        variants[n_variants].kernels = fmi_kernels_supported(k);
        snprintf(variants[n_variants].label, sizeof variants[0].label, "%s", fmi_kernels_supported(k)->name);
        n_variants++;
    }
    assert_true(n_variants >= 1);
    assert_string_equal(variants[0].kernels->name, "ref");
    /* where AVX-512 runs, its popcount fallback for CPUs without VPOPCNTDQ runs too */
    const fm_kernels *avx512;
    if (fmi_kernels_get("avx512", &avx512) == FM_OK && fmi_kernels_avx512_table(0) != avx512) {
        variants[n_variants].kernels = fmi_kernels_avx512_table(0);
        snprintf(variants[n_variants].label, sizeof variants[0].label, "avx512 (vpshufb popcount)");
        n_variants++;
    }
}

/* ---- canaries -------------------------------------------------------------- */

#define GUARD 16 /* 32-bit values past the end that must stay untouched */
static const uint32_t canary = 0x7fc0dead;

static inline void fill_canary(void *p, size_t words)
{
    for (size_t k = 0; k < words; k++)
        memcpy((char *)p + 4 * k, &canary, 4);
}

static inline void check_canary(const void *p, size_t words, const char *what)
{
    for (size_t k = 0; k < words; k++)
        if (memcmp((const char *)p + 4 * k, &canary, 4))
            fail_msg("%s wrote past the last output (%zu past)", what, k);
}

static inline uint32_t float_bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static void print_variants(void)
{
    char names[256] = "";
    for (int v = 0; v < n_variants; v++) {
        strncat(names, v ? ", " : "", sizeof names - strlen(names) - 1);
        strncat(names, variants[v].label, sizeof names - strlen(names) - 1);
    }
    print_message("kernel variants tested against ref: %s\n", names);
}

#endif
