/* infer.h — the multiplication-free inference kernels of deployed layers, in
 * three variants (scalar reference, AVX2, AVX-512) that give bit-identical
 * results: every variant builds the same tables with the same additions and
 * adds into each output in the same order; only the width differs.
 *
 * Real inputs times binary or ternary weights (group lookup): the inputs are
 * taken in groups of four (the last group padded with zeros). For each group
 * the kernel builds a 16-entry table once per example and each output then
 * adds one entry per group, chosen by its 4 weight bits, so a weight costs a
 * quarter of an add and no multiply:
 *   binary   T[b] = p01[b & 3] + p23[b >> 2], where
 *            p01[c] = (c & 1 ? x0 : -x0) + (c & 2 ? x1 : -x1), p23 likewise
 *            from x2, x3; acc_j = (((0 + T_0[n_j0]) + T_1[n_j1]) + ...)
 *            where n_jg is the 4-bit pattern (bit k: weight of input 4g+k
 *            is +1) of output j in group g.
 *   ternary  S[b] = q01[b & 3] + q23[b >> 2], q01[c] = (c & 1 ? x0 : 0) +
 *            (c & 2 ? x1 : 0); acc_j = 0, then for g = 0, 1, ...:
 *            acc_j += S_g[pos_jg]; acc_j -= S_g[neg_jg] (pos: bits of +1
 *            weights, neg: bits of -1 weights).
 * Real inputs times synapse weights: each input's products with the N level
 * magnitudes are formed once per example (N multiplies per input, instead of
 * one per weight), and each weight then adds its entry with its sign applied:
 *   acc_j = (((0 + P_0[c_j0]) + P_1[c_j1]) + ...), P_i[c] = +-(x_i * m[idx]).
 * Binary inputs times binary weights (xnor and popcount): with inputs a and
 * weights w both +-1 and packed as bits (1: +1), acc_j = in - 2 *
 * popcount(a xor w_j), exact integers.
 * Float results are exactly those of the formulas above, in that order, so the
 * scalar reference is the specification and the SIMD variants equal it bit
 * for bit. */
#ifndef FEWMUL_INFER_H
#define FEWMUL_INFER_H

#include "deploy.h"

#include <stddef.h>
#include <stdint.h>

/* A layer's weights in the layout the kernels read, built from its packed rows. */
typedef struct fm_kernel_weights fm_kernel_weights;
int fm_kernel_prepare(const fm_deploy_layer *layer, fm_kernel_weights **out);
void fm_kernel_weights_free(fm_kernel_weights *weights);
/* Floats of scratch one call of `real` needs for this layer. */
size_t fm_kernel_scratch_floats(const fm_kernel_weights *weights);
/* 64-bit words holding `in` packed +-1 inputs (the bits input of `bits`). */
static inline size_t fm_kernel_bit_words(int in) { return ((size_t)in + 63) / 64; }

typedef struct fm_kernels {
    const char *name; /* "ref", "avx2", "avx512" */
    /* acc[out] from x[in] real inputs, for a binary, ternary or synapse layer.
     * scratch: fm_kernel_scratch_floats floats, any alignment. */
    void (*real)(const fm_kernel_weights *w, const float *x, float *acc, float *scratch);
    /* acc[out] from bit-packed +-1 inputs (bit i of word i/64: input i is +1;
     * bits past `in` are zero), for a binary layer. */
    void (*bits)(const fm_kernel_weights *w, const uint64_t *a, int32_t *acc);
} fm_kernels;

/* The variant called `name` ("ref", "avx2", "avx512"): FM_OK, FM_EINVAL for an
 * unknown name, FM_EUNSUPPORTED where this CPU or build lacks it. */
int fm_kernels_get(const char *name, const fm_kernels **out);
/* The variant to use by default: FEWMUL_KERNELS when set (errors as above,
 * naming the variable), else the best this CPU supports (cpuid). */
int fm_kernels_default(const fm_kernels **out);
/* Variants this CPU and build support, best last; NULL past the end. */
const fm_kernels *fm_kernels_supported(int index);

/* Packs +-1 activations given as floats (>= 0 means +1) into bits as `bits` reads them. */
void fm_pack_signs(const float *x, int n, uint64_t *a);

/* ---- the prepared layout (shared by the variants; not for the engine) -----
 * Outputs come in blocks of FM_KERNEL_BLOCK (one zmm of floats); the padding
 * outputs of the last block have zero codes and their results are dropped.
 * Binary and ternary inputs come in chunks of 32 (8 groups of 4), the padding
 * inputs past `in` have zero codes: a padding group of +0.0f inputs adds a
 * zero (T[0] = -0.0f, S[0] = +0.0f), and adding a zero of either sign leaves
 * an accumulator that started at +0.0f unchanged (it is never -0.0f: x + y is
 * -0.0f only when both are), so a variant may run whole chunks while the
 * reference stops at the last real group.
 *   binary:  words[(block * chunks + c) * 16 + lane] holds bits 32c .. 32c+31
 *            of output 16 * block + lane's packed row (nibble k: group 8c + k),
 *            so 1 bit per weight; `bits` reads the same words.
 *   ternary: words[((block * chunks + c) * 2 + s) * 16 + lane], the same bits
 *            of the +1 weights (s = 0) and of the -1 weights (s = 1).
 *   synapse: codes[(block * in + i) * 16 + lane] = level index | sign << 7 of
 *            weight (i, 16 * block + lane), one byte per weight.
 * words and codes start 64-byte aligned and are followed by FM_KERNEL_TAIL
 * readable padding bytes, so a variant may load a whole vector at any byte
 * offset inside the last chunk. */
#define FM_KERNEL_BLOCK 16
#define FM_KERNEL_GROUP 4
#define FM_KERNEL_CHUNK 32 /* inputs per 32-bit word: 8 groups */
#define FM_KERNEL_TAIL 64
#define FM_KERNEL_MAX_LEVELS 32

struct fm_kernel_weights {
    fm_deploy_weights weights; /* FM_DW_BINARY, FM_DW_TERNARY or FM_DW_SYNAPSE */
    int in, out;
    int blocks;                /* ceil(out / 16) */
    int groups;                /* binary, ternary: ceil(in / 4) */
    int chunks;                /* binary, ternary: ceil(in / 32) */
    int levels;                /* synapse: magnitudes in use */
    int table_stride;          /* synapse: floats per input's product table, 16 or 32 */
    float magnitudes[FM_KERNEL_MAX_LEVELS]; /* synapse: ascending, zeros past levels */
    const uint32_t *words;     /* binary, ternary (see above) */
    const uint8_t *codes;      /* synapse (see above) */
    void *allocation;          /* what fm_free releases */
};

/* The variants' entry points (infer_ref.c, infer_avx2.c, infer_avx512.c). A
 * SIMD file built without its instruction set (not x86, or a compiler without
 * the flags) returns NULL from its table function; the caller still checks the
 * CPU before using one. `bits` of a layer that is not binary writes zeros. */
void fm_infer_real_ref(const fm_kernel_weights *w, const float *x, float *acc, float *scratch);
void fm_infer_bits_ref(const fm_kernel_weights *w, const uint64_t *a, int32_t *acc);
const fm_kernels *fm_kernels_avx2_table(void);
/* with_vpopcntdq: the `bits` kernel may use VPOPCNTDQ (else a vpshufb count). */
const fm_kernels *fm_kernels_avx512_table(int with_vpopcntdq);

/* The 64-byte-aligned start of a scratch buffer of fm_kernel_scratch_floats
 * floats (which include the slack for this). */
static inline float *fm_kernel_scratch_align(float *scratch)
{
    uintptr_t p = (uintptr_t)scratch;
    return scratch + ((64 - p % 64) % 64) / sizeof(float);
}

#endif
