/* infer.c — what the inference kernel variants share: the prepared weight
 * layout (built here once per layer from its packed rows, read by every
 * variant), the scratch size, packing of +-1 activations, and the choice of
 * variant: by name, by FEWMUL_KERNELS, or the best the CPU supports (cpuid). */
#include "infer.h"
#include "internal.h"
#include "quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- preparation ------------------------------------------------------- */

/* Bits 32c .. 32c+31 of packed row `row` (1 bit per weight), bits at or past
 * `in` cleared: the file may leave anything in a row's last byte. */
static uint32_t binary_row_word(const uint8_t *row, size_t row_bytes, int in, int c)
{
    uint32_t word = 0;
    for (int k = 0; k < 4; k++) {
        size_t byte = (size_t)c * 4 + (size_t)k;
        if (byte < row_bytes)
            word |= (uint32_t)row[byte] << (8 * k);
    }
    int valid = in - c * FM_KERNEL_CHUNK;
    if (valid < FM_KERNEL_CHUNK)
        word &= (1u << valid) - 1u;
    return word;
}

static void fill_binary(const fm_deploy_layer *L, fm_kernel_weights *w, uint32_t *words)
{
    for (int j = 0; j < L->out; j++) {
        const uint8_t *row = L->packed + (size_t)j * L->row_bytes;
        int block = j / FM_KERNEL_BLOCK, lane = j % FM_KERNEL_BLOCK;
        for (int c = 0; c < w->chunks; c++)
            words[((size_t)block * w->chunks + c) * FM_KERNEL_BLOCK + lane] =
                binary_row_word(row, L->row_bytes, L->in, c);
    }
}

static int fill_ternary(const fm_deploy_layer *L, fm_kernel_weights *w, uint32_t *words)
{
    for (int j = 0; j < L->out; j++) {
        int block = j / FM_KERNEL_BLOCK, lane = j % FM_KERNEL_BLOCK;
        for (int i = 0; i < L->in; i++) {
            uint32_t code = fm_deploy_code(L, j, i);
            if (code == 0)
                continue;
            if (code == 2)
                return fm_error(FM_EINVAL, "ternary weight (%d, %d) has the invalid code 2", i, j);
            int c = i / FM_KERNEL_CHUNK, negative = code == 3;
            size_t at = (((size_t)block * w->chunks + c) * 2 + (size_t)negative) * FM_KERNEL_BLOCK + lane;
            words[at] |= 1u << (i % FM_KERNEL_CHUNK);
        }
    }
    return FM_OK;
}

static int fill_synapse(const fm_deploy_layer *L, fm_kernel_weights *w, uint8_t *codes)
{
    const uint32_t index_mask = (1u << (L->bits - 1)) - 1u;
    for (int j = 0; j < L->out; j++) {
        int block = j / FM_KERNEL_BLOCK, lane = j % FM_KERNEL_BLOCK;
        for (int i = 0; i < L->in; i++) {
            uint32_t code = fm_deploy_code(L, j, i);
            uint32_t index = code & index_mask, negative = code >> (L->bits - 1);
            if (index >= (uint32_t)L->levels)
                return fm_error(FM_EINVAL, "synapse weight (%d, %d) has level %u of %d", i, j,
                                index, L->levels);
            codes[((size_t)block * w->in + i) * FM_KERNEL_BLOCK + lane] =
                (uint8_t)(index | negative << 7);
        }
    }
    return FM_OK;
}

/* a * b + c, or 0 when it does not fit a size_t */
static size_t checked_madd(size_t a, size_t b, size_t c)
{
    if (b && a > (SIZE_MAX - c) / b)
        return 0;
    return a * b + c;
}

int fm_kernel_prepare(const fm_deploy_layer *L, fm_kernel_weights **out)
{
    *out = NULL;
    if (L->weights != FM_DW_BINARY && L->weights != FM_DW_TERNARY && L->weights != FM_DW_SYNAPSE)
        return fm_error(FM_EINVAL, "only binary, ternary and synapse layers have packed kernels");
    if (L->in < 1 || L->out < 1 || !L->packed)
        return fm_error(FM_EINVAL, "kernel layout of a %d x %d layer without weights", L->in, L->out);
    int want_bits = L->weights == FM_DW_BINARY ? 1 : 2;
    if (L->weights == FM_DW_SYNAPSE) {
        if (L->levels < 2 || L->levels > FM_KERNEL_MAX_LEVELS || !L->magnitudes)
            return fm_error(FM_EINVAL, "synapse layer with %d levels (2 .. %d)", L->levels,
                            FM_KERNEL_MAX_LEVELS);
        want_bits = (int)fm_weight_bits(FM_WEIGHTS_SYNAPSE, L->levels); /* sign + index */
    }
    if (L->bits != want_bits)
        return fm_error(FM_EINVAL, "layer stores %d bits per weight (expected %d)", L->bits, want_bits);

    fm_kernel_weights *w = fm_alloc(1, sizeof *w);
    if (!w)
        return FM_ENOMEM;
    w->weights = L->weights;
    w->in = L->in;
    w->out = L->out;
    w->blocks = (L->out + FM_KERNEL_BLOCK - 1) / FM_KERNEL_BLOCK;
    w->groups = (L->in + FM_KERNEL_GROUP - 1) / FM_KERNEL_GROUP;
    w->chunks = (L->in + FM_KERNEL_CHUNK - 1) / FM_KERNEL_CHUNK;

    /* bytes of the layout (the tail padding and alignment slack come on top) */
    size_t per_block;
    if (L->weights == FM_DW_SYNAPSE) {
        w->levels = L->levels;
        w->table_stride = L->levels <= 16 ? 16 : 32;
        memcpy(w->magnitudes, L->magnitudes, (size_t)L->levels * sizeof(float));
        per_block = checked_madd((size_t)L->in, FM_KERNEL_BLOCK, 0);
    } else {
        size_t words_per_chunk = L->weights == FM_DW_TERNARY ? 2 * FM_KERNEL_BLOCK : FM_KERNEL_BLOCK;
        per_block = checked_madd((size_t)w->chunks, words_per_chunk * sizeof(uint32_t), 0);
    }
    size_t layout = per_block ? checked_madd((size_t)w->blocks, per_block, 0) : 0;
    size_t total = layout ? checked_madd(1, layout, FM_KERNEL_TAIL + 63) : 0;
    if (!total) {
        fm_free(w);
        return fm_error(FM_ENOMEM, "kernel layout of a %d x %d layer overflows", L->in, L->out);
    }
    w->allocation = fm_alloc_raw(total);
    if (!w->allocation) {
        fm_free(w);
        return FM_ENOMEM;
    }
    uint8_t *base = w->allocation;
    uint8_t *aligned = base + (64 - (uintptr_t)base % 64) % 64;
    memset(aligned, 0, layout + FM_KERNEL_TAIL); /* padding outputs and inputs: code 0 */

    int rc = FM_OK;
    if (L->weights == FM_DW_BINARY)
        fill_binary(L, w, (uint32_t *)(void *)aligned);
    else if (L->weights == FM_DW_TERNARY)
        rc = fill_ternary(L, w, (uint32_t *)(void *)aligned);
    else
        rc = fill_synapse(L, w, aligned);
    if (rc < 0) {
        fm_kernel_weights_free(w);
        return rc;
    }
    if (L->weights == FM_DW_SYNAPSE)
        w->codes = aligned;
    else
        w->words = (const uint32_t *)(const void *)aligned;
    *out = w;
    return FM_OK;
}

void fm_kernel_weights_free(fm_kernel_weights *w)
{
    if (!w)
        return;
    fm_free(w->allocation);
    fm_free(w);
}

size_t fm_kernel_scratch_floats(const fm_kernel_weights *w)
{
    /* 16 floats of slack let a variant start its tables 64-byte aligned */
    if (w->weights == FM_DW_SYNAPSE)
        return (size_t)w->in * (size_t)w->table_stride + 16;
    return (size_t)w->chunks * (FM_KERNEL_CHUNK / FM_KERNEL_GROUP) * 16 + 16;
}

void fm_pack_signs(const float *x, int n, uint64_t *a)
{
    size_t words = fm_kernel_bit_words(n);
    memset(a, 0, words * sizeof *a);
    for (int i = 0; i < n; i++)
        if (x[i] >= 0.0f)
            a[i / 64] |= (uint64_t)1 << (i % 64);
}

/* ---- choosing a variant -------------------------------------------------- */

static const fm_kernels ref_kernels = {"ref", fm_infer_real_ref, fm_infer_bits_ref};

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FM_X86_DISPATCH 1
#endif

/* The variant `name` on this CPU and build: FM_OK with *out set; otherwise an
 * error code with the reason in `why` (a phrase that follows "name: "). */
static int lookup(const char *name, const fm_kernels **out, char *why, size_t why_size)
{
    *out = NULL;
    if (!strcmp(name, "ref")) {
        *out = &ref_kernels;
        return FM_OK;
    }
    int is_avx2 = !strcmp(name, "avx2"), is_avx512 = !strcmp(name, "avx512");
    if (!is_avx2 && !is_avx512) {
        snprintf(why, why_size, "unknown kernel variant (ref, avx2, avx512)");
        return FM_EINVAL;
    }
#ifdef FM_X86_DISPATCH
    __builtin_cpu_init();
    if (is_avx2) {
        if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("popcnt")) {
            snprintf(why, why_size, "this CPU lacks AVX2 (needs avx2, popcnt)");
            return FM_EUNSUPPORTED;
        }
        *out = fm_kernels_avx2_table();
    } else {
        if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
            !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx2") ||
            !__builtin_cpu_supports("popcnt")) {
            snprintf(why, why_size, "this CPU lacks AVX-512 (needs avx512f, avx512bw, avx512vl)");
            return FM_EUNSUPPORTED;
        }
        /* without VPOPCNTDQ (Skylake-X, Ice Lake has it) `bits` counts with vpshufb */
        *out = fm_kernels_avx512_table(__builtin_cpu_supports("avx512vpopcntdq") != 0);
    }
    if (!*out) {
        snprintf(why, why_size, "this build has no %s kernels (the compiler lacked the flags)",
                 is_avx2 ? "AVX2" : "AVX-512");
        return FM_EUNSUPPORTED;
    }
    return FM_OK;
#else
    snprintf(why, why_size, "this build has no %s kernels (not built for x86 with GCC or Clang)",
             is_avx2 ? "AVX2" : "AVX-512");
    return FM_EUNSUPPORTED;
#endif
}

int fm_kernels_get(const char *name, const fm_kernels **out)
{
    char why[128];
    int rc = lookup(name ? name : "", out, why, sizeof why);
    if (rc < 0)
        return fm_error(rc, "%s: %s", name ? name : "(null)", why);
    return FM_OK;
}

const fm_kernels *fm_kernels_supported(int index)
{
    static const char *const best_last[] = {"ref", "avx2", "avx512"};
    int found = 0;
    for (size_t k = 0; k < sizeof best_last / sizeof best_last[0]; k++) {
        const fm_kernels *kernels;
        char why[128];
        if (lookup(best_last[k], &kernels, why, sizeof why) == FM_OK && found++ == index)
            return kernels;
    }
    return NULL;
}

int fm_kernels_default(const fm_kernels **out)
{
    *out = NULL;
    const char *name = getenv("FEWMUL_KERNELS");
    if (name && *name) {
        char why[128];
        int rc = lookup(name, out, why, sizeof why);
        if (rc < 0)
            return fm_error(rc, "FEWMUL_KERNELS=%s: %s", name, why);
        return FM_OK;
    }
    for (int k = 0; fm_kernels_supported(k); k++)
        *out = fm_kernels_supported(k);
    return FM_OK;
}
