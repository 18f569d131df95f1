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
#include <string.h>

#if defined(__clang__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))
#elif defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline, noclone))
#else
#define ALWAYS_INLINE inline
#define NOINLINE
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

/* P_i[index] = x_i * m[index], `stride` per input: the only float multiplies
 * of this file, kept in a function of their own (never inlined or cloned) so
 * that a disassembly of the object shows none anywhere else
 * (tests/no_float_mul.sh). */
static NOINLINE void synapse_products(const fm_kernel_weights *w, const float *x, float *P)
{
    const size_t stride = (size_t)w->table_stride;
    const __m512 m_low = _mm512_loadu_ps(w->magnitudes), m_high = _mm512_loadu_ps(w->magnitudes + 16);
    for (int i = 0; i < w->in; i++) {
        __m512 xi = _mm512_set1_ps(x[i]);
        _mm512_store_ps(P + (size_t)i * stride, _mm512_mul_ps(xi, m_low));
        if (stride == 32)
            _mm512_store_ps(P + (size_t)i * stride + 16, _mm512_mul_ps(xi, m_high));
    }
}

static void real_synapse(const fm_kernel_weights *w, const float *x, float *acc, float *P)
{
    const size_t stride = (size_t)w->table_stride;
    synapse_products(w, x, P);
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
    float *tables = fmi_kernel_scratch_align(scratch);
    switch (w->weights) {
    case FM_DW_BINARY: real_binary(w, x, acc, tables); break;
    case FM_DW_TERNARY: real_ternary(w, x, acc, tables); break;
    case FM_DW_SYNAPSE: real_synapse(w, x, acc, tables); break;
    case FM_DW_FP32:
    default: fmi_infer_real_ref(w, x, acc, scratch); break;
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
        fmi_infer_bits_ref(w, a, acc);
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
        fmi_infer_bits_ref(w, a, acc);
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

/* ---- the weight gradient of quantized back-prop ---------------------------- */

/* Vectorized across outputs j, 16 per zmm, and blocked 6 rows (inputs i) x 4
 * zmm, so 24 accumulators stay in registers over the whole batch (with the 4
 * e vectors, a code, a term and two constants, all 32 zmm) and each dw
 * element still adds its terms in example order. Both zero tests are k-masks
 * applied for free inside the two adds: e's per vector (zeroing the integer
 * add), q's per row (merging the float add). The vector unit's ops bound the
 * loop, not the memory, and on AMD Zen 5 writes of mask registers are dear,
 * so the block is as large as the registers allow (10 mask tests per 24
 * float adds); masked loads and masked ops with memory operands measured
 * slower still, so e is loaded whole except in the last, partial block. */
#define GRAD_ROWS 6
#define GRAD_VECS 4
#define GRAD_CHUNK 256 /* examples whose codes are tabled at a time */

/* One row block's q over GRAD_CHUNK examples, as the code added to e's bits:
 * q's bits - those of 1.0f, which is (k << 23) plus the sign bit, so its low
 * 23 bits are clear; a zero q (or a padding row past the share, whose q is
 * never read) gets the odd code 1 instead, and the kernel reads "q is live"
 * off bit 0 with one vptestnmd: no second table of masks, and no slower than
 * moving such masks in from general registers (kmovw from memory, measured on
 * Zen 5, halves the speed). */
typedef struct grad_table {
    int32_t code[GRAD_CHUNK][GRAD_ROWS];
} grad_table;

static void grad_table_fill(grad_table *tab, const float *q, int in, int b0, int nb, int r0, int rows)
{
    /* one pointer step per example, no index multiply (nothing for a
     * vectorizer to turn into vpmuludq, which tests/no_float_mul.sh refuses) */
    const float *qb = q + (size_t)b0 * in + r0;
    for (int b = 0; b < nb; b++, qb += in) {
        for (int r = 0; r < GRAD_ROWS; r++) {
            uint32_t bits = 0;
            if (r < rows)
                memcpy(&bits, qb + r, sizeof bits);
            tab->code[b][r] = (bits & 0x7fffffffu) ? (int32_t)(bits - 0x3f800000u) : 1;
        }
    }
}

/* Outputs j0 .. j0 + 16 * GRAD_VECS - 1 of `rows` rows of dw (r0 on) over the
 * examples of one table: with `tail`, lane masks cut the block at `out` (a
 * masked-off lane reads and writes no memory). `first`: the accumulators
 * start at +0.0f; else at what an earlier chunk stored in dw (a float stored
 * and loaded again is the same float, so chunking changes no bit). */
static ALWAYS_INLINE void grad_block(const grad_table *tab, const float *e, float *dw, int nb, int out,
                                     int j0, int rows, int first, const int tail)
{
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff), one = _mm512_set1_epi32(1);
    __mmask16 lanes[GRAD_VECS];
#pragma GCC unroll 4
    for (int v = 0; v < GRAD_VECS; v++) {
        int left = out - j0 - 16 * v;
        lanes[v] = !tail || left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1u);
    }
    __m512 acc[GRAD_ROWS][GRAD_VECS];
#pragma GCC unroll 8
    for (int r = 0; r < GRAD_ROWS; r++)
#pragma GCC unroll 4
        for (int v = 0; v < GRAD_VECS; v++) {
            const float *at = dw + (size_t)r * out + j0 + 16 * v;
            acc[r][v] = first || r >= rows ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(lanes[v], at);
        }
    for (int b = 0; b < nb; b++) {
        const float *eb = e + (size_t)b * out + j0;
        __m512i ev[GRAD_VECS];
        __mmask16 nonzero[GRAD_VECS];
#pragma GCC unroll 4
        for (int v = 0; v < GRAD_VECS; v++) {
            ev[v] = tail ? _mm512_maskz_loadu_epi32(lanes[v], eb + 16 * v) : _mm512_loadu_si512(eb + 16 * v);
            nonzero[v] = _mm512_test_epi32_mask(ev[v], magnitude);
        }
#pragma GCC unroll 8
        for (int r = 0; r < GRAD_ROWS; r++) {
            const __m512i code = _mm512_set1_epi32(tab->code[b][r]);
            const __mmask16 live = _mm512_testn_epi32_mask(code, one);
#pragma GCC unroll 4
            for (int v = 0; v < GRAD_VECS; v++) {
                __m512 term = _mm512_castsi512_ps(_mm512_maskz_add_epi32(nonzero[v], ev[v], code));
                acc[r][v] = _mm512_mask_add_ps(acc[r][v], live, acc[r][v], term);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < GRAD_ROWS; r++)
#pragma GCC unroll 4
        for (int v = 0; v < GRAD_VECS; v++)
            if (r < rows) {
                float *at = dw + (size_t)r * out + j0 + 16 * v;
                if (tail)
                    _mm512_mask_storeu_ps(at, lanes[v], acc[r][v]);
                else
                    _mm512_storeu_ps(at, acc[r][v]);
            }
}

static void pow2_grad_avx512(const float *q, const float *e, float *dw, int batch, int in, int out, int i0,
                             int i1)
{
    if (i1 <= i0 || out <= 0)
        return;
    const int width = 16 * GRAD_VECS;
    grad_table tab;
    for (int r0 = i0; r0 < i1; r0 += GRAD_ROWS) {
        int rows = i1 - r0 < GRAD_ROWS ? i1 - r0 : GRAD_ROWS;
        float *rows_dw = dw + (size_t)r0 * out;
        /* batch 0: one empty chunk, which stores the zeros */
        for (int b0 = 0; b0 == 0 || b0 < batch; b0 += GRAD_CHUNK) {
            int nb = batch - b0 < GRAD_CHUNK ? batch - b0 : GRAD_CHUNK;
            grad_table_fill(&tab, q, in, b0, nb, r0, rows);
            const float *e_chunk = e + (size_t)b0 * out;
            int j0 = 0;
            for (; j0 + width <= out; j0 += width)
                grad_block(&tab, e_chunk, rows_dw, nb, out, j0, rows, b0 == 0, 0);
            if (j0 < out)
                grad_block(&tab, e_chunk, rows_dw, nb, out, j0, rows, b0 == 0, 1);
        }
    }
}

/* The convolutions run the reference kernels for now (docs/deploy.md). */
static const fm_kernels avx512_kernels = {"avx512", real_avx512, bits_vpopcntdq,
                                          pow2_grad_avx512, fmi_conv_real_ref,
                                          fmi_conv_bits_ref, fmi_signs_int_ref, fmi_signs_float_ref};
static const fm_kernels avx512_kernels_vpshufb = {"avx512", real_avx512, bits_vpshufb,
                                                  pow2_grad_avx512, fmi_conv_real_ref,
                                                  fmi_conv_bits_ref, fmi_signs_int_ref, fmi_signs_float_ref};

const fm_kernels *fmi_kernels_avx512_table(int with_vpopcntdq)
{
    return with_vpopcntdq ? &avx512_kernels : &avx512_kernels_vpshufb;
}

#else

const fm_kernels *fmi_kernels_avx512_table(int with_vpopcntdq)
{
    (void)with_vpopcntdq;
    return NULL;
}

#endif
