/* infer_avx512.c — the AVX-512 inference kernels: the reference's arithmetic
 * vectorized across outputs, 16 outputs per zmm lane-wise, so every output
 * still adds its table entries one group (or input) at a time in index order
 * and the results equal infer_ref.c bit for bit. A 16-entry table lookup is
 * one vpermps (it reads the low 4 bits of each index lane); several output
 * blocks run interleaved to hide the latency of the add chains. Built with
 * -mavx512f -mavx512bw -mavx512vl -mavx512vpopcntdq (CMakeLists.txt); only
 * called after infer.c has checked the CPU, which picks the vpshufb popcount
 * of `bits` where VPOPCNTDQ is missing. */
#include "infer.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512VPOPCNTDQ__)

#include <immintrin.h>

#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* Output blocks whose add chains run interleaved: with an add latency of
 * 3-4 cycles, four chains keep the adder busy. */
#define INTERLEAVE 4
#define GROUPS_PER_CHUNK (FM_KERNEL_CHUNK / FM_KERNEL_GROUP)

/* bit_set[k]: the lanes b (0 .. 15) of a table whose bit k is set. */
static const __mmask16 bit_set[4] = {0xAAAA, 0xCCCC, 0xF0F0, 0xFF00};

static ALWAYS_INLINE __m512 flip_sign(__m512 v, __mmask16 lanes)
{
    __m512i bits = _mm512_castps_si512(v);
    return _mm512_castsi512_ps(_mm512_mask_xor_epi32(bits, lanes, bits, _mm512_set1_epi32(INT32_MIN)));
}

/* The group's four inputs; x itself when the group is whole, else a zero-padded copy. */
static ALWAYS_INLINE const float *group_inputs(const float *x, int in, int g, float padded[4])
{
    if (4 * g + 4 <= in)
        return x + 4 * g;
    for (int k = 0; k < 4; k++)
        padded[k] = 4 * g + k < in ? x[4 * g + k] : 0.0f;
    return padded;
}

/* Binary tables of every group of every chunk (infer.h: T[b] = p01[b & 3] +
 * p23[b >> 2]), 16 floats per group; padding groups get all-zero inputs. */
static void binary_tables(const fm_kernel_weights *w, const float *x, float *T)
{
    const int groups = w->chunks * GROUPS_PER_CHUNK;
    for (int g = 0; g < groups; g++) {
        float padded[4];
        const float *v = group_inputs(x, w->in, g, padded);
        __m512 a = flip_sign(_mm512_set1_ps(v[0]), (__mmask16)~bit_set[0]);
        __m512 b = flip_sign(_mm512_set1_ps(v[1]), (__mmask16)~bit_set[1]);
        __m512 c = flip_sign(_mm512_set1_ps(v[2]), (__mmask16)~bit_set[2]);
        __m512 d = flip_sign(_mm512_set1_ps(v[3]), (__mmask16)~bit_set[3]);
        _mm512_store_ps(T + 16 * (size_t)g, _mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
    }
}

/* Subset-sum tables (S[b] = q01[b & 3] + q23[b >> 2]); a missing input is +0.0f. */
static void ternary_tables(const fm_kernel_weights *w, const float *x, float *S)
{
    const int groups = w->chunks * GROUPS_PER_CHUNK;
    for (int g = 0; g < groups; g++) {
        float padded[4];
        const float *v = group_inputs(x, w->in, g, padded);
        __m512 a = _mm512_maskz_mov_ps(bit_set[0], _mm512_set1_ps(v[0]));
        __m512 b = _mm512_maskz_mov_ps(bit_set[1], _mm512_set1_ps(v[1]));
        __m512 c = _mm512_maskz_mov_ps(bit_set[2], _mm512_set1_ps(v[2]));
        __m512 d = _mm512_maskz_mov_ps(bit_set[3], _mm512_set1_ps(v[3]));
        _mm512_store_ps(S + 16 * (size_t)g, _mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
    }
}

static ALWAYS_INLINE void store_block(float *acc, int out, int block, __m512 v)
{
    int first = block * FM_KERNEL_BLOCK, left = out - first;
    if (left >= FM_KERNEL_BLOCK)
        _mm512_storeu_ps(acc + first, v);
    else
        _mm512_mask_storeu_ps(acc + first, (__mmask16)((1u << left) - 1u), v);
}

/* `nb` output blocks from `block` on, of a binary (ternary = 0) or ternary
 * layer. A chunk holds one 32-bit word per output (ternary: then the -1 word);
 * a vector loaded at byte offset k of it has byte k of each output's word in
 * the low byte of its lane: groups 2k (low nibble) and 2k + 1 (after a 4-bit
 * shift). Four loads and four shifts per chunk instead of seven shifts keep
 * the shift and permute ports from competing. */
static ALWAYS_INLINE void group_blocks(const fm_kernel_weights *w, const float *T, int block,
                                       const int nb, const int ternary, float *acc)
{
    const size_t chunk_bytes = (size_t)(ternary ? 2 : 1) * FM_KERNEL_BLOCK * sizeof(uint32_t);
    const uint8_t *base = (const uint8_t *)w->words + (size_t)block * w->chunks * chunk_bytes;
    const size_t block_bytes = (size_t)w->chunks * chunk_bytes;
    __m512 sum[INTERLEAVE];
#pragma GCC unroll 4
    for (int b = 0; b < nb; b++)
        sum[b] = _mm512_setzero_ps();
    for (int c = 0; c < w->chunks; c++) {
        const float *table = T + (size_t)c * GROUPS_PER_CHUNK * 16;
        const uint8_t *chunk = base + (size_t)c * chunk_bytes;
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m512 even = _mm512_load_ps(table + 32 * k), odd = _mm512_load_ps(table + 32 * k + 16);
#pragma GCC unroll 4
            for (int b = 0; b < nb; b++) {
                const uint8_t *at = chunk + (size_t)b * block_bytes + k;
                __m512i plus = _mm512_loadu_si512(at);
                sum[b] = _mm512_add_ps(sum[b], _mm512_permutexvar_ps(plus, even));
                if (ternary) {
                    __m512i minus = _mm512_loadu_si512(at + FM_KERNEL_BLOCK * sizeof(uint32_t));
                    sum[b] = _mm512_sub_ps(sum[b], _mm512_permutexvar_ps(minus, even));
                    sum[b] = _mm512_add_ps(sum[b], _mm512_permutexvar_ps(_mm512_srli_epi32(plus, 4), odd));
                    sum[b] = _mm512_sub_ps(sum[b], _mm512_permutexvar_ps(_mm512_srli_epi32(minus, 4), odd));
                } else {
                    sum[b] = _mm512_add_ps(sum[b], _mm512_permutexvar_ps(_mm512_srli_epi32(plus, 4), odd));
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int b = 0; b < nb; b++)
        store_block(acc, w->out, block + b, sum[b]);
}

static void real_binary(const fm_kernel_weights *w, const float *x, float *acc, float *T)
{
    binary_tables(w, x, T);
    int block = 0;
    for (; block + INTERLEAVE <= w->blocks; block += INTERLEAVE)
        group_blocks(w, T, block, INTERLEAVE, 0, acc);
    for (; block < w->blocks; block++)
        group_blocks(w, T, block, 1, 0, acc);
}

static void real_ternary(const fm_kernel_weights *w, const float *x, float *acc, float *S)
{
    ternary_tables(w, x, S);
    int block = 0;
    for (; block + INTERLEAVE <= w->blocks; block += INTERLEAVE)
        group_blocks(w, S, block, INTERLEAVE, 1, acc);
    for (; block < w->blocks; block++)
        group_blocks(w, S, block, 1, 1, acc);
}

/* `nb` output blocks of a synapse layer: per input, the level index of each
 * code (bits 0-4) picks its product with vpermps (16 levels) or vpermt2ps (32),
 * and bit 7 of the code, shifted to the float's sign, negates it. */
static ALWAYS_INLINE void synapse_blocks(const fm_kernel_weights *w, const float *P, int block,
                                         const int nb, const int wide, float *acc)
{
    const size_t stride = (size_t)w->table_stride, block_bytes = (size_t)w->in * FM_KERNEL_BLOCK;
    const uint8_t *codes = w->codes + (size_t)block * block_bytes;
    const __m512i sign_bit = _mm512_set1_epi32(INT32_MIN);
    __m512 sum[INTERLEAVE];
#pragma GCC unroll 4
    for (int b = 0; b < nb; b++)
        sum[b] = _mm512_setzero_ps();
    for (int i = 0; i < w->in; i++) {
        __m512 low = _mm512_load_ps(P + (size_t)i * stride);
        __m512 high = wide ? _mm512_load_ps(P + (size_t)i * stride + 16) : low;
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) {
            const uint8_t *at = codes + (size_t)b * block_bytes + (size_t)i * FM_KERNEL_BLOCK;
            __m512i code = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)at));
            __m512 product = wide ? _mm512_permutex2var_ps(low, code, high) : _mm512_permutexvar_ps(code, low);
            /* product ^ (code << 24 & sign bit): 0x78 is A ^ (B & C) */
            __m512i signed_bits = _mm512_ternarylogic_epi32(_mm512_castps_si512(product),
                                                            _mm512_slli_epi32(code, 24), sign_bit, 0x78);
            sum[b] = _mm512_add_ps(sum[b], _mm512_castsi512_ps(signed_bits));
        }
    }
#pragma GCC unroll 4
    for (int b = 0; b < nb; b++)
        store_block(acc, w->out, block + b, sum[b]);
}

static void real_synapse(const fm_kernel_weights *w, const float *x, float *acc, float *P)
{
    const size_t stride = (size_t)w->table_stride;
    const __m512 m_low = _mm512_loadu_ps(w->magnitudes), m_high = _mm512_loadu_ps(w->magnitudes + 16);
    for (int i = 0; i < w->in; i++) {
        __m512 xi = _mm512_set1_ps(x[i]);
        _mm512_store_ps(P + (size_t)i * stride, _mm512_mul_ps(xi, m_low));
        if (stride == 32)
            _mm512_store_ps(P + (size_t)i * stride + 16, _mm512_mul_ps(xi, m_high));
    }
    int block = 0;
    if (stride == 32) {
        for (; block + INTERLEAVE <= w->blocks; block += INTERLEAVE)
            synapse_blocks(w, P, block, INTERLEAVE, 1, acc);
        for (; block < w->blocks; block++)
            synapse_blocks(w, P, block, 1, 1, acc);
    } else {
        for (; block + INTERLEAVE <= w->blocks; block += INTERLEAVE)
            synapse_blocks(w, P, block, INTERLEAVE, 0, acc);
        for (; block < w->blocks; block++)
            synapse_blocks(w, P, block, 1, 0, acc);
    }
}

static void real_avx512(const fm_kernel_weights *w, const float *x, float *acc, float *scratch)
{
    float *tables = fm_kernel_scratch_align(scratch);
    switch (w->weights) {
    case FM_DW_BINARY: real_binary(w, x, acc, tables); break;
    case FM_DW_TERNARY: real_ternary(w, x, acc, tables); break;
    case FM_DW_SYNAPSE: real_synapse(w, x, acc, tables); break;
    case FM_DW_FP32:
    default: fm_infer_real_ref(w, x, acc, scratch); break;
    }
}

/* ---- binary inputs: xnor and popcount ------------------------------------ */

static ALWAYS_INLINE uint32_t input_word(const uint64_t *a, int c)
{
    return (uint32_t)(a[c / 2] >> (32 * (c % 2)));
}

static ALWAYS_INLINE void store_counts(int32_t *acc, const fm_kernel_weights *w, int block, __m512i mismatches)
{
    __m512i v = _mm512_sub_epi32(_mm512_set1_epi32(w->in), _mm512_slli_epi32(mismatches, 1));
    int first = block * FM_KERNEL_BLOCK, left = w->out - first;
    if (left >= FM_KERNEL_BLOCK)
        _mm512_storeu_si512(acc + first, v);
    else
        _mm512_mask_storeu_epi32(acc + first, (__mmask16)((1u << left) - 1u), v);
}

/* `nb` output blocks from `block` on; they share each chunk's broadcast input word. */
static ALWAYS_INLINE void popcount_blocks(const fm_kernel_weights *w, const uint64_t *a, int block,
                                          const int nb, int32_t *acc)
{
    const size_t block_words = (size_t)w->chunks * FM_KERNEL_BLOCK;
    const uint32_t *words = w->words + (size_t)block * block_words;
    __m512i mismatches[INTERLEAVE];
#pragma GCC unroll 4
    for (int b = 0; b < nb; b++)
        mismatches[b] = _mm512_setzero_si512();
    for (int c = 0; c < w->chunks; c++) {
        __m512i input = _mm512_set1_epi32((int32_t)input_word(a, c));
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) {
            __m512i weight = _mm512_load_si512(words + (size_t)b * block_words + (size_t)c * FM_KERNEL_BLOCK);
            mismatches[b] = _mm512_add_epi32(mismatches[b], _mm512_popcnt_epi32(_mm512_xor_si512(input, weight)));
        }
    }
#pragma GCC unroll 4
    for (int b = 0; b < nb; b++)
        store_counts(acc, w, block + b, mismatches[b]);
}

static void bits_vpopcntdq(const fm_kernel_weights *w, const uint64_t *a, int32_t *acc)
{
    if (w->weights != FM_DW_BINARY) {
        fm_infer_bits_ref(w, a, acc);
        return;
    }
    int block = 0;
    for (; block + INTERLEAVE <= w->blocks; block += INTERLEAVE)
        popcount_blocks(w, a, block, INTERLEAVE, acc);
    for (; block < w->blocks; block++)
        popcount_blocks(w, a, block, 1, acc);
}

/* Without VPOPCNTDQ: vpshufb looks up the bit count of every nibble (Mula);
 * byte counts (at most 8 per chunk) add up for 31 chunks before they are
 * widened to 32-bit lanes. */
static ALWAYS_INLINE __m512i byte_counts(__m512i v)
{
    const __m512i nibble_counts = _mm512_set4_epi32(0x04030302, 0x03020201, 0x03020201, 0x02010100);
    const __m512i low_nibbles = _mm512_set1_epi8(0x0f);
    __m512i low = _mm512_and_si512(v, low_nibbles);
    __m512i high = _mm512_and_si512(_mm512_srli_epi16(v, 4), low_nibbles);
    return _mm512_add_epi8(_mm512_shuffle_epi8(nibble_counts, low), _mm512_shuffle_epi8(nibble_counts, high));
}

static ALWAYS_INLINE __m512i widen_byte_counts(__m512i bytes)
{
    const __m512i even_bytes = _mm512_set1_epi32(0x00ff00ff), low_half = _mm512_set1_epi32(0xffff);
    __m512i pairs = _mm512_add_epi32(_mm512_and_si512(bytes, even_bytes),
                                     _mm512_and_si512(_mm512_srli_epi32(bytes, 8), even_bytes));
    return _mm512_add_epi32(_mm512_and_si512(pairs, low_half), _mm512_srli_epi32(pairs, 16));
}

static void bits_vpshufb(const fm_kernel_weights *w, const uint64_t *a, int32_t *acc)
{
    if (w->weights != FM_DW_BINARY) {
        fm_infer_bits_ref(w, a, acc);
        return;
    }
    for (int block = 0; block < w->blocks; block++) {
        const uint32_t *words = w->words + (size_t)block * w->chunks * FM_KERNEL_BLOCK;
        __m512i mismatches = _mm512_setzero_si512();
        for (int c0 = 0; c0 < w->chunks; c0 += 31) {
            int c1 = c0 + 31 < w->chunks ? c0 + 31 : w->chunks;
            __m512i bytes = _mm512_setzero_si512();
            for (int c = c0; c < c1; c++) {
                __m512i differ = _mm512_xor_si512(_mm512_set1_epi32((int32_t)input_word(a, c)),
                                                  _mm512_load_si512(words + (size_t)c * FM_KERNEL_BLOCK));
                bytes = _mm512_add_epi8(bytes, byte_counts(differ));
            }
            mismatches = _mm512_add_epi32(mismatches, widen_byte_counts(bytes));
        }
        store_counts(acc, w, block, mismatches);
    }
}

static const fm_kernels avx512_kernels = {"avx512", real_avx512, bits_vpopcntdq};
static const fm_kernels avx512_kernels_vpshufb = {"avx512", real_avx512, bits_vpshufb};

const fm_kernels *fm_kernels_avx512_table(int with_vpopcntdq)
{
    return with_vpopcntdq ? &avx512_kernels : &avx512_kernels_vpshufb;
}

#else

const fm_kernels *fm_kernels_avx512_table(int with_vpopcntdq)
{
    (void)with_vpopcntdq;
    return NULL;
}

#endif
