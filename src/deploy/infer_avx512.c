/* infer_avx512.c — the AVX-512 inference kernels: the reference's arithmetic
 * vectorized across outputs, 16 outputs per zmm lane-wise, so every output
 * still adds its table entries one group (or input) at a time in index order
 * and the results equal infer_ref.c bit for bit. A 16-entry table lookup is
 * one vpermps (it reads the low 4 bits of each index lane); several output
 * blocks run interleaved to hide the latency of the add chains. The
 * convolutions vectorize the same way across output channels. Built with
 * -mavx512f -mavx512bw -mavx512vl -mavx512vpopcntdq (CMakeLists.txt); only
 * called after infer.c has checked the CPU, which picks the vpshufb popcount
 * of `bits` and `conv_bits` where VPOPCNTDQ is missing. */
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

/* The tables of `groups` groups of the inputs x[0 .. in), 16 floats each at
 * T + 16g: binary T[b] = p01[b & 3] + p23[b >> 2], ternary the subset sums
 * S[b] = q01[b & 3] + q23[b >> 2] (infer.h); inputs past `in` are +0.0f. */
static ALWAYS_INLINE void group_tables(const float *x, int in, int groups, const int ternary, float *T)
{
    for (int g = 0; g < groups; g++) {
        float padded[4];
        const float *v = group_inputs(x, in, g, padded);
        __m512 a, b, c, d;
        if (ternary) {
            a = _mm512_maskz_mov_ps(bit_set[0], _mm512_set1_ps(v[0]));
            b = _mm512_maskz_mov_ps(bit_set[1], _mm512_set1_ps(v[1]));
            c = _mm512_maskz_mov_ps(bit_set[2], _mm512_set1_ps(v[2]));
            d = _mm512_maskz_mov_ps(bit_set[3], _mm512_set1_ps(v[3]));
        } else {
            a = flip_sign(_mm512_set1_ps(v[0]), (__mmask16)~bit_set[0]);
            b = flip_sign(_mm512_set1_ps(v[1]), (__mmask16)~bit_set[1]);
            c = flip_sign(_mm512_set1_ps(v[2]), (__mmask16)~bit_set[2]);
            d = flip_sign(_mm512_set1_ps(v[3]), (__mmask16)~bit_set[3]);
        }
        _mm512_store_ps(T + 16 * (size_t)g, _mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
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
    group_tables(x, w->in, w->chunks * GROUPS_PER_CHUNK, 0, T);
    int block = 0;
    for (; block + INTERLEAVE <= w->blocks; block += INTERLEAVE)
        group_blocks(w, T, block, INTERLEAVE, 0, acc);
    for (; block < w->blocks; block++)
        group_blocks(w, T, block, 1, 0, acc);
}

static void real_ternary(const fm_kernel_weights *w, const float *x, float *acc, float *S)
{
    group_tables(x, w->in, w->chunks * GROUPS_PER_CHUNK, 1, S);
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

/* P[i * stride + index] = x_i * m[index] for the n inputs x, `stride` (16 or
 * 32) per input: the only float multiplies of this file, kept in a function
 * of their own (never inlined or cloned) so that a disassembly of the object
 * shows none anywhere else (tests/no_float_mul.sh). */
static NOINLINE void synapse_products(const float *magnitudes, size_t stride, const float *x, size_t n,
                                      float *P)
{
    const __m512 m_low = _mm512_loadu_ps(magnitudes), m_high = _mm512_loadu_ps(magnitudes + 16);
    for (size_t i = 0; i < n; i++) {
        __m512 xi = _mm512_set1_ps(x[i]);
        _mm512_store_ps(P + i * stride, _mm512_mul_ps(xi, m_low));
        if (stride == 32)
            _mm512_store_ps(P + i * stride + 16, _mm512_mul_ps(xi, m_high));
    }
}

static void real_synapse(const fm_kernel_weights *w, const float *x, float *acc, float *P)
{
    const size_t stride = (size_t)w->table_stride;
    synapse_products(w->magnitudes, stride, x, (size_t)w->in, P);
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

/* Rows r0 .. r0 + rows - 1 of dw (from dw_rows on) over one chunk of
 * examples, in blocks of GRAD_ROWS rows. */
static void blocked_rows(const float *q, const float *e_chunk, float *dw_rows, int in, int out, int b0, int nb,
                         int r0, int rows, int first)
{
    const int width = 16 * GRAD_VECS;
    grad_table tab;
    for (int r = 0; r < rows; r += GRAD_ROWS) {
        const int n = rows - r < GRAD_ROWS ? rows - r : GRAD_ROWS;
        float *block_dw = dw_rows + (size_t)r * out;
        grad_table_fill(&tab, q, in, b0, nb, r0 + r, n);
        int j0 = 0;
        for (; j0 + width <= out; j0 += width)
            grad_block(&tab, e_chunk, block_dw, nb, out, j0, n, first, 0);
        if (j0 < out)
            grad_block(&tab, e_chunk, block_dw, nb, out, j0, n, first, 1);
    }
}

/* ---- the weight gradient over lists of each row's nonzero q -----------------
 * A layer's Q(x) is about half zeros (the ReLU's), on which the blocked
 * kernel spends a masked-off float add each. Lists skip them: per row (input
 * i) and LIST_CHUNK examples, the examples whose q is nonzero, with their
 * codes; per listed term and vector, one integer add with e loaded from
 * memory and one float add. No e vector is shared between rows, so a term
 * costs more than in the blocked kernel (measured on Zen 5: about 1.6 times,
 * the loads), and the lists win only where q is sparse enough: a row group
 * whose q is more than LIST_DENSE_PCT percent nonzero takes the blocked
 * kernel (paper-mlp's first layer, a CNN's first convolution). So does a
 * chunk whose e holds a zero, which must add nothing: a test of e per term
 * made the lists no faster than the blocked kernel's test per example and
 * vector, shared by six rows. The e block that LIST_VECS vectors of outputs
 * span is copied into a tile (32 KB, in L1 while every listed row reads it):
 * rows of e lie `out` floats apart, and at 1024 outputs they fall into the
 * same few L1 sets. */
#define LIST_CHUNK FM_LIST_CHUNK /* examples listed at a time: a GRAD_CHUNK holds whole ones */
#define LIST_ROWS FM_LIST_ROWS
#define LIST_VECS 16
#define LIST_DENSE_PCT 75

/* The nonzero q of rows r0 .. r0 + rows - 1 over examples b0 .. b0 + nb - 1. */
static long count_nonzero(const float *q, int in, int b0, int nb, int r0, int rows)
{
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
    const float *qb = q + (size_t)b0 * in + r0;
    long n = 0;
    for (int b = 0; b < nb; b++, qb += in)
        for (int r = 0; r < rows; r += 16) {
            const __mmask16 live = rows - r >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (rows - r)) - 1u);
            n += _mm_popcnt_u32(_mm512_mask_test_epi32_mask(live, _mm512_maskz_loadu_epi32(live, qb + r), magnitude));
        }
    return n;
}

/* Row r's sums over its list for outputs j0 .. j0 + 16 * vecs - 1 (`lanes`:
 * the last vector's live lanes; a dead lane is never stored), into dw_row,
 * starting at +0.0f (`first`) or at what an earlier chunk stored there. */
static ALWAYS_INLINE void list_row(const fm_grad_lists *ls, int r, const float *e, float *dw_row, int j0,
                                   const int vecs, __mmask16 lanes, int first)
{
    __m512 acc[LIST_VECS];
#pragma GCC unroll 16
    for (int v = 0; v < vecs; v++) {
        const __mmask16 live = v == vecs - 1 ? lanes : (__mmask16)0xffff;
        acc[v] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(live, dw_row + j0 + 16 * v);
    }
    const int n = ls->count[r];
    const int32_t *at = ls->at[r], *code = ls->code[r];
    for (int t = 0; t < n; t++) {
        const float *et = e + at[t];
        const __m512i c = _mm512_set1_epi32(code[t]);
#pragma GCC unroll 16
        for (int v = 0; v < vecs; v++) {
            const __m512i term = _mm512_add_epi32(_mm512_load_si512(et + 16 * v), c);
            acc[v] = _mm512_add_ps(acc[v], _mm512_castsi512_ps(term));
        }
    }
#pragma GCC unroll 16
    for (int v = 0; v < vecs; v++)
        _mm512_mask_storeu_ps(dw_row + j0 + 16 * v, v == vecs - 1 ? lanes : (__mmask16)0xffff, acc[v]);
}

static void list_rows(const fm_grad_lists *ls, int rows, const float *e, float *dw, int out, int j0, int vecs,
                      __mmask16 lanes, int first)
{
    for (int r = 0; r < rows; r++) {
        float *dw_row = dw + (size_t)r * out;
#define LIST_ROW(V)                                                                                  \
    case V: list_row(ls, r, e, dw_row, j0, V, lanes, first); break;
        switch (vecs) {
            LIST_ROW(1) LIST_ROW(2) LIST_ROW(3) LIST_ROW(4) LIST_ROW(5) LIST_ROW(6) LIST_ROW(7)
            LIST_ROW(8) LIST_ROW(9) LIST_ROW(10) LIST_ROW(11) LIST_ROW(12) LIST_ROW(13) LIST_ROW(14) LIST_ROW(15)
            default: LIST_ROW(16)
        }
#undef LIST_ROW
    }
}

/* 1 when one of the n floats is +-0. */
static int any_zero(const float *e, size_t n)
{
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
    __mmask16 zero = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        zero |= _mm512_testn_epi32_mask(_mm512_loadu_si512(e + i), magnitude);
    if (i < n) {
        const __mmask16 live = (__mmask16)((1u << (n - i)) - 1u);
        zero |= _mm512_mask_testn_epi32_mask(live, _mm512_maskz_loadu_epi32(live, e + i), magnitude);
    }
    return zero != 0;
}

/* Rows r0 .. r0 + rows - 1 (from dw_rows on) over the listed terms of
 * examples b0 .. b0 + nb - 1 (e_sub: their e), a tile of outputs at a time. */
static void listed_rows(fm_grad_lists *ls, float (*tile)[16 * LIST_VECS], const float *q, const float *e_sub,
                        float *dw_rows, int in, int out, int b0, int nb, int r0, int rows, int first)
{
    const int width = 16 * LIST_VECS;
    fmi_grad_lists_fill(ls, q, in, b0, nb, r0, rows, 16 * LIST_VECS);
    for (int j0 = 0; j0 < out; j0 += width) {
        const int left = out - j0, vecs = left >= width ? LIST_VECS : (left + 15) / 16;
        const int last = left - 16 * (vecs - 1);
        const __mmask16 lanes = last >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << last) - 1u);
        for (int b = 0; b < nb; b++)
            for (int v = 0; v < vecs; v++)
                _mm512_store_ps(tile[b] + 16 * v, _mm512_maskz_loadu_ps(v == vecs - 1 ? lanes : (__mmask16)0xffff,
                                                                        e_sub + (size_t)b * out + j0 + 16 * v));
        list_rows(ls, rows, tile[0], dw_rows, out, j0, vecs, lanes, first);
    }
}

static void pow2_grad_avx512(const float *q, const float *e, float *dw, int batch, int in, int out, int i0,
                             int i1)
{
    if (i1 <= i0 || out <= 0)
        return;
    fm_grad_lists ls;
    _Alignas(64) float tile[LIST_CHUNK][16 * LIST_VECS];
    /* Chunks of examples outside, row groups inside: a chunk's e stays in L2
     * while every row group reads it (a convolution's e is an example's 784
     * positions in paper-cnn's second layer: this order took a quarter fewer
     * cycles there than row blocks outside). A dense row group, or any where
     * the chunk's e holds a zero, runs the blocked kernel over the whole
     * chunk; a sparse one, the lists over each LIST_CHUNK examples of it.
     * Each dw value adds its terms in example order; a sum stored after one
     * chunk and loaded in the next is the same float, so neither the chunks
     * nor the kernel chosen changes a bit. batch 0: one empty chunk, which
     * stores the zeros. */
    for (int b0 = 0; b0 == 0 || b0 < batch; b0 += GRAD_CHUNK) {
        const int nb = batch - b0 < GRAD_CHUNK ? batch - b0 : GRAD_CHUNK, first = b0 == 0;
        const float *e_chunk = e + (size_t)b0 * out;
        const int e_zero = any_zero(e_chunk, (size_t)nb * out);
        for (int r0 = i0; r0 < i1; r0 += LIST_ROWS) {
            const int rows = i1 - r0 < LIST_ROWS ? i1 - r0 : LIST_ROWS;
            float *rows_dw = dw + (size_t)(r0 - i0) * out;
            if (e_zero || 100 * count_nonzero(q, in, b0, nb, r0, rows) > (long)LIST_DENSE_PCT * rows * nb) {
                blocked_rows(q, e_chunk, rows_dw, in, out, b0, nb, r0, rows, first);
                continue;
            }
            for (int s0 = 0; s0 == 0 || s0 < nb; s0 += LIST_CHUNK) {
                const int ns = nb - s0 < LIST_CHUNK ? nb - s0 : LIST_CHUNK;
                listed_rows(&ls, tile, q, e_chunk + (size_t)s0 * out, rows_dw, in, out, b0 + s0, ns, r0, rows,
                            first && s0 == 0);
            }
        }
    }
}

/* v, loaded once into a register: without this the compiler folds the load
 * into every instruction that reads v (one load per position and block
 * instead of one), and the loads, not the arithmetic, bound the loops. */
static ALWAYS_INLINE __m512 in_register(__m512 v)
{
    __asm__("" : "+v"(v));
    return v;
}

static ALWAYS_INLINE __m512i in_register_int(__m512i v)
{
    __asm__("" : "+v"(v));
    return v;
}

/* ---- a convolution's weight gradient from its maps ------------------------
 * Vectorized across the weights of a window (a slice: 64 channels of one
 * tap, four zmm), where pow2_grad is across outputs: one output channel's
 * terms come as a list of its nonzero errors (mulfree.c), so the zeros that
 * max-pooling leaves in e (three in four) cost nothing, and each term adds
 * its e to up to FM_GRAD_SLICES slices of one window of q: 24 accumulators.
 * q comes as floats (conv_pow2_grad) or as one byte per value
 * (conv_pow2_grad_codes). */

/* The accumulators of `slices` slices: +0.0f, or the sums at `from`. */
static ALWAYS_INLINE void slices_start(__m512 acc[FM_GRAD_SLICES][4], const int slices, const float *from)
{
#pragma GCC unroll 6
    for (int s = 0; s < slices; s++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[s][v] = from ? _mm512_loadu_ps(from + FM_GRAD_SLICE * s + 16 * v) : _mm512_setzero_ps();
}

/* The sums stored at dw, or with `accumulate` added to what it holds. */
static ALWAYS_INLINE void slices_store(__m512 acc[FM_GRAD_SLICES][4], const int slices, float *dw, int accumulate)
{
#pragma GCC unroll 6
    for (int s = 0; s < slices; s++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            float *at = dw + FM_GRAD_SLICE * s + 16 * v;
            _mm512_storeu_ps(at, accumulate ? _mm512_add_ps(_mm512_loadu_ps(at), acc[s][v]) : acc[s][v]);
        }
}

/* From the float maps: per vector a load, a test of q's zeros, the exponent
 * add and the masked float add. */
static ALWAYS_INLINE void grad_slices(const float *q, const int32_t *terms, int n_terms, const int32_t *slice_at,
                                      const int slices, const float *from, float *dw, int accumulate)
{
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
    __m512 acc[FM_GRAD_SLICES][4];
    slices_start(acc, slices, from);
    for (int t = 0; t < n_terms; t++) {
        const float *window = q + terms[2 * t];
        const __m512i code = _mm512_set1_epi32(terms[2 * t + 1]);
#pragma GCC unroll 6
        for (int s = 0; s < slices; s++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                const __m512i qv = _mm512_loadu_si512(window + slice_at[s] + 16 * v);
                const __mmask16 live = _mm512_test_epi32_mask(qv, magnitude);
                acc[s][v] = _mm512_mask_add_ps(acc[s][v], live, acc[s][v],
                                               _mm512_castsi512_ps(_mm512_add_epi32(qv, code)));
            }
    }
    slices_store(acc, slices, dw, accumulate);
}

static void conv_pow2_grad_avx512(const float *q, const int32_t *terms, int n_terms, const int32_t *slice_at,
                                  int slices, const float *from, float *dw, int accumulate)
{
    switch (slices) { /* each count its own loop, its accumulators in registers */
    case 1: grad_slices(q, terms, n_terms, slice_at, 1, from, dw, accumulate); break;
    case 2: grad_slices(q, terms, n_terms, slice_at, 2, from, dw, accumulate); break;
    case 3: grad_slices(q, terms, n_terms, slice_at, 3, from, dw, accumulate); break;
    case 4: grad_slices(q, terms, n_terms, slice_at, 4, from, dw, accumulate); break;
    case 5: grad_slices(q, terms, n_terms, slice_at, 5, from, dw, accumulate); break;
    default: grad_slices(q, terms, n_terms, slice_at, 6, from, dw, accumulate); break;
    }
}

/* The same sums from q's bytes (infer.h, conv_pow2_grad_codes): per term,
 * its e's table of products (the positive q in one zmm, the negative in the
 * other, entry 0 of each a zero) by two masked integer adds; per slice one
 * load of its 64 bytes, and per vector a shift, a vpermt2ps and the float
 * add. The float maps' kernel reads 64 bytes per vector, which in a
 * paper-cnn step come from the second-level cache more than the first: a
 * quarter of those bytes. */
static ALWAYS_INLINE void grad_slices_codes(const uint8_t *codes, __m512i fields, const int32_t *terms,
                                            int n_terms, const int32_t *slice_at, const int slices,
                                            const float *from, float *dw, int accumulate)
{
    const __m512i negative_fields = _mm512_xor_si512(fields, _mm512_set1_epi32(INT32_MIN));
    __m512 acc[FM_GRAD_SLICES][4];
    slices_start(acc, slices, from);
    for (int t = 0; t < n_terms; t++) {
        const uint8_t *window = codes + terms[2 * t];
        const __m512i code = _mm512_set1_epi32(terms[2 * t + 1]);
        const __m512 positive = _mm512_castsi512_ps(_mm512_maskz_add_epi32(0xfffe, code, fields));
        const __m512 negative = _mm512_castsi512_ps(_mm512_maskz_add_epi32(0xfffe, code, negative_fields));
#pragma GCC unroll 6
        for (int s = 0; s < slices; s++) {
            const __m512i bytes = in_register_int(_mm512_load_si512(window + slice_at[s]));
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                const __m512i index = v == 0 ? bytes : _mm512_srli_epi32(bytes, 8 * v);
                acc[s][v] = _mm512_add_ps(acc[s][v], _mm512_permutex2var_ps(positive, index, negative));
            }
        }
    }
    slices_store(acc, slices, dw, accumulate);
}

static void conv_pow2_grad_codes_avx512(const uint8_t *codes, int field_lo, const int32_t *terms, int n_terms,
                                        const int32_t *slice_at, int slices, const float *from, float *dw,
                                        int accumulate)
{
    /* entry i >= 1 of the positive table: q's field field_lo + i - 1, the
     * code's addend (field << 23) as conv_pow2_grad's q bits; the negative
     * table adds the sign bit too. Entry 0 is masked to +0.0f per term. */
    const __m512i entry = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i fields = _mm512_slli_epi32(_mm512_add_epi32(entry, _mm512_set1_epi32(field_lo - 1)), 23);
    switch (slices) {
    case 1: grad_slices_codes(codes, fields, terms, n_terms, slice_at, 1, from, dw, accumulate); break;
    case 2: grad_slices_codes(codes, fields, terms, n_terms, slice_at, 2, from, dw, accumulate); break;
    case 3: grad_slices_codes(codes, fields, terms, n_terms, slice_at, 3, from, dw, accumulate); break;
    case 4: grad_slices_codes(codes, fields, terms, n_terms, slice_at, 4, from, dw, accumulate); break;
    case 5: grad_slices_codes(codes, fields, terms, n_terms, slice_at, 5, from, dw, accumulate); break;
    default: grad_slices_codes(codes, fields, terms, n_terms, slice_at, 6, from, dw, accumulate); break;
    }
}

/* ---- convolutions ---------------------------------------------------------
 * Vectorized across output channels, 16 per zmm, as the dense kernels; the
 * window's taps and a tap's groups (or channels, or channel words) run
 * outside, so every output adds its terms in the reference's order. Where a
 * row's windows have all their columns inside the input, CONV_POSITIONS
 * neighbouring positions run at once and share each weight vector (a lookup
 * index, a code, a weight word) that is loaded; the window's taps are the
 * same for all of them. Up to CONV_BLOCKS output blocks run at once and share
 * each table or input word loaded. */
#define CONV_POSITIONS 4
#define CONV_BLOCKS 4

/* Each 16 channels' bits are one k-mask, stored as 16 bits of the pixel's
 * words (little endian: bit j of the words is channel j). */
static ALWAYS_INLINE void signs_store(uint64_t *pixel, int block, __mmask16 bits)
{
    uint16_t piece = (uint16_t)bits;
    memcpy((uint8_t *)pixel + 2 * (size_t)block, &piece, sizeof piece);
}

/* The channels of block `block` that exist (out_c need not fill it). */
static ALWAYS_INLINE __mmask16 block_live(int out_c, int block)
{
    int left = out_c - block * FM_KERNEL_BLOCK;
    return left >= FM_KERNEL_BLOCK ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

/* The sums v of block `block` of one position: stored at `at`, masked past
 * out_c; or with `signs`, their bits (in the block's ranges) into the
 * position's pixel of the map. */
static ALWAYS_INLINE void conv_store(float *at, const fm_conv_signs *signs, size_t position, int cw, int out_c,
                                     int block, __m512 v)
{
    const __mmask16 live = block_live(out_c, block);
    if (signs) {
        const __m512 lo = _mm512_maskz_loadu_ps(live, signs->flo + (size_t)block * FM_KERNEL_BLOCK);
        const __m512 hi = _mm512_maskz_loadu_ps(live, signs->fhi + (size_t)block * FM_KERNEL_BLOCK);
        const __mmask16 ge = _mm512_mask_cmp_ps_mask(live, v, lo, _CMP_GE_OQ);
        signs_store(signs->map + position * (size_t)cw, block, _mm512_mask_cmp_ps_mask(ge, v, hi, _CMP_LE_OQ));
    } else if (live == 0xffff) {
        _mm512_storeu_ps(at, v);
    } else {
        _mm512_mask_storeu_ps(at, live, v);
    }
}

static ALWAYS_INLINE void conv_store_int(int32_t *at, const fm_conv_signs *signs, size_t position, int cw,
                                         int out_c, int block, __m512i v)
{
    const __mmask16 live = block_live(out_c, block);
    if (signs) {
        const __m512i lo = _mm512_maskz_loadu_epi32(live, signs->ilo + (size_t)block * FM_KERNEL_BLOCK);
        const __m512i hi = _mm512_maskz_loadu_epi32(live, signs->ihi + (size_t)block * FM_KERNEL_BLOCK);
        const __mmask16 ge = _mm512_mask_cmpge_epi32_mask(live, v, lo);
        signs_store(signs->map + position * (size_t)cw, block, _mm512_mask_cmple_epi32_mask(ge, v, hi));
    } else if (live == 0xffff) {
        _mm512_storeu_si512(at, v);
    } else {
        _mm512_mask_storeu_epi32(at, live, v);
    }
}

/* Zeroes a sign convolution's map: the kernels then store only their blocks'
 * bits, and the bits past out_c stay zero. */
static void signs_clear(const fm_conv_weights *w, const fm_conv_signs *signs)
{
    if (signs)
        memset(signs->map, 0,
               (size_t)w->out_h * (size_t)w->out_w * (size_t)fmi_conv_pixel_words(w->out_c) * sizeof(uint64_t));
}

/* np positions (ox0 on, row oy, window v of the first) times nb output
 * blocks (block on) of a binary or ternary layer: per valid tap, per pair of
 * groups, one load of each block's index words at the pair's byte (the low
 * nibble is the even group, a shift by 4 brings the odd one) and a vpermps
 * per group, block and position. */
static ALWAYS_INLINE void conv_groups_run(const fm_conv_weights *w, const float *T, int oy, int ox0,
                                          const int np, const fm_conv_window *v, int block, const int nb,
                                          const int ternary, float *acc, const fm_conv_signs *signs)
{
    const int G = w->groups;
    const size_t chunk_bytes = (size_t)w->sets * FM_KERNEL_BLOCK * sizeof(uint32_t);
    const size_t tap_bytes = (size_t)w->chunks * chunk_bytes, block_bytes = (size_t)w->taps * tap_bytes;
    const uint8_t *base = (const uint8_t *)w->words + (size_t)block * block_bytes;
    const size_t pixel_floats = (size_t)G * 16, step = (size_t)w->stride * pixel_floats;
    __m512 sum[CONV_POSITIONS][CONV_BLOCKS];
#pragma GCC unroll 4
    for (int p = 0; p < np; p++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++)
            sum[p][b] = _mm512_setzero_ps();
    for (int ky = v->ky0; ky < v->ky1; ky++)
        for (int kx = v->kx0; kx < v->kx1; kx++) {
            const float *t0 = T + ((size_t)(v->iy0 + ky) * (size_t)w->in_w + (size_t)(v->ix0 + kx)) * pixel_floats;
            const uint8_t *wt = base + (size_t)(ky * w->k_w + kx) * tap_bytes;
            for (int g = 0; g < G; g += 2) {
                const uint8_t *at = wt + (size_t)(g / 8) * chunk_bytes + (size_t)((g % 8) / 2);
                __m512i plus[CONV_BLOCKS], minus[CONV_BLOCKS];
#pragma GCC unroll 4
                for (int b = 0; b < nb; b++) {
                    plus[b] = _mm512_loadu_si512(at + (size_t)b * block_bytes);
                    if (ternary)
                        minus[b] = _mm512_loadu_si512(at + (size_t)b * block_bytes + FM_KERNEL_BLOCK * sizeof(uint32_t));
                }
#pragma GCC unroll 4
                for (int p = 0; p < np; p++) {
                    const __m512 table = in_register(_mm512_load_ps(t0 + (size_t)p * step + 16 * (size_t)g));
#pragma GCC unroll 4
                    for (int b = 0; b < nb; b++) {
                        sum[p][b] = _mm512_add_ps(sum[p][b], _mm512_permutexvar_ps(plus[b], table));
                        if (ternary)
                            sum[p][b] = _mm512_sub_ps(sum[p][b], _mm512_permutexvar_ps(minus[b], table));
                    }
                }
                if (g + 1 == G)
                    break;
#pragma GCC unroll 4
                for (int b = 0; b < nb; b++) {
                    plus[b] = _mm512_srli_epi32(plus[b], 4);
                    if (ternary)
                        minus[b] = _mm512_srli_epi32(minus[b], 4);
                }
#pragma GCC unroll 4
                for (int p = 0; p < np; p++) {
                    const __m512 table = in_register(_mm512_load_ps(t0 + (size_t)p * step + 16 * (size_t)(g + 1)));
#pragma GCC unroll 4
                    for (int b = 0; b < nb; b++) {
                        sum[p][b] = _mm512_add_ps(sum[p][b], _mm512_permutexvar_ps(plus[b], table));
                        if (ternary)
                            sum[p][b] = _mm512_sub_ps(sum[p][b], _mm512_permutexvar_ps(minus[b], table));
                    }
                }
            }
        }
    const size_t position = (size_t)oy * (size_t)w->out_w + (size_t)ox0;
    float *out = acc + position * (size_t)w->out_c + (size_t)block * FM_KERNEL_BLOCK;
#pragma GCC unroll 4
    for (int p = 0; p < np; p++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++)
            conv_store(out + (size_t)p * (size_t)w->out_c + (size_t)b * FM_KERNEL_BLOCK, signs, position + (size_t)p,
                       w->cwords_out, w->out_c, block + b, sum[p][b]);
}

/* np positions times nb output blocks of a synapse layer: per valid tap and
 * channel, each block's 16 codes are widened once and pick, per position, the
 * product of that position's input value (vpermps of 16 levels, vpermt2ps of
 * 32); bit 7 of the code, moved to the sign, negates it. */
static ALWAYS_INLINE void conv_synapse_run(const fm_conv_weights *w, const float *P, int oy, int ox0,
                                           const int np, const fm_conv_window *v, int block, const int nb,
                                           const int wide, float *acc, const fm_conv_signs *signs)
{
    const int ic = w->in_c;
    const size_t ts = (size_t)w->table_stride, block_codes = (size_t)w->taps * (size_t)ic * FM_KERNEL_BLOCK;
    const size_t pixel_floats = (size_t)ic * ts, step = (size_t)w->stride * pixel_floats;
    const uint8_t *base = w->codes + (size_t)block * block_codes;
    const __m512i sign_bit = _mm512_set1_epi32(INT32_MIN);
    __m512 sum[CONV_POSITIONS][CONV_BLOCKS];
#pragma GCC unroll 4
    for (int p = 0; p < np; p++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++)
            sum[p][b] = _mm512_setzero_ps();
    for (int ky = v->ky0; ky < v->ky1; ky++)
        for (int kx = v->kx0; kx < v->kx1; kx++) {
            const float *p0 = P + ((size_t)(v->iy0 + ky) * (size_t)w->in_w + (size_t)(v->ix0 + kx)) * pixel_floats;
            const uint8_t *ct = base + (size_t)(ky * w->k_w + kx) * (size_t)ic * FM_KERNEL_BLOCK;
            for (int c = 0; c < ic; c++) {
                __m512i code[CONV_BLOCKS], sign[CONV_BLOCKS];
#pragma GCC unroll 4
                for (int b = 0; b < nb; b++) {
                    const uint8_t *at = ct + (size_t)b * block_codes + (size_t)c * FM_KERNEL_BLOCK;
                    code[b] = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)at));
                    sign[b] = _mm512_slli_epi32(code[b], 24);
                }
#pragma GCC unroll 4
                for (int p = 0; p < np; p++) {
                    const float *table = p0 + (size_t)p * step + (size_t)c * ts;
                    const __m512 low = _mm512_load_ps(table), high = wide ? _mm512_load_ps(table + 16) : low;
#pragma GCC unroll 4
                    for (int b = 0; b < nb; b++) {
                        __m512 product = wide ? _mm512_permutex2var_ps(low, code[b], high)
                                              : _mm512_permutexvar_ps(code[b], low);
                        /* product ^ (code << 24 & sign bit): 0x78 is A ^ (B & C) */
                        __m512i signed_bits = _mm512_ternarylogic_epi32(_mm512_castps_si512(product), sign[b],
                                                                        sign_bit, 0x78);
                        sum[p][b] = _mm512_add_ps(sum[p][b], _mm512_castsi512_ps(signed_bits));
                    }
                }
            }
        }
    const size_t position = (size_t)oy * (size_t)w->out_w + (size_t)ox0;
    float *out = acc + position * (size_t)w->out_c + (size_t)block * FM_KERNEL_BLOCK;
#pragma GCC unroll 4
    for (int p = 0; p < np; p++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++)
            conv_store(out + (size_t)p * (size_t)w->out_c + (size_t)b * FM_KERNEL_BLOCK, signs, position + (size_t)p,
                       w->cwords_out, w->out_c, block + b, sum[p][b]);
}

/* np positions, every output block: nb at a time, then one at a time. */
#define CONV_ALL_BLOCKS(run, nb_max, ...)                                                          \
    do {                                                                                           \
        int block_ = 0;                                                                            \
        for (; block_ + (nb_max) <= w->blocks; block_ += (nb_max))                                 \
            run(__VA_ARGS__, block_, (nb_max));                                                    \
        for (; block_ < w->blocks; block_++)                                                       \
            run(__VA_ARGS__, block_, 1);                                                           \
    } while (0)

#define GROUPS_RUN(np_, ternary_)                                                                  \
    do {                                                                                           \
        if (ternary_) {                                                                            \
            CONV_ALL_BLOCKS(GROUPS_RUN_T, 2, np_);                                                 \
        } else {                                                                                   \
            CONV_ALL_BLOCKS(GROUPS_RUN_B, CONV_BLOCKS, np_);                                       \
        }                                                                                          \
    } while (0)
#define GROUPS_RUN_B(np_, block_, nb_) conv_groups_run(w, T, oy, ox, np_, &v, block_, nb_, 0, acc, signs)
#define GROUPS_RUN_T(np_, block_, nb_) conv_groups_run(w, T, oy, ox, np_, &v, block_, nb_, 1, acc, signs)

static void conv_groups(const fm_conv_weights *w, const float *T, const int ternary, float *acc,
                        const fm_conv_signs *signs)
{
    int first, end;
    fmi_conv_full_columns(w, &first, &end);
    for (int oy = 0; oy < w->out_h; oy++)
        for (int ox = 0; ox < w->out_w;) {
            const fm_conv_window v = fmi_conv_window(w, oy, ox);
            if (ox >= first && ox + CONV_POSITIONS <= end) {
                GROUPS_RUN(CONV_POSITIONS, ternary);
                ox += CONV_POSITIONS;
            } else {
                GROUPS_RUN(1, ternary);
                ox++;
            }
        }
}

#define SYNAPSE_RUN(np_, block_, nb_) conv_synapse_run(w, P, oy, ox, np_, &v, block_, nb_, wide, acc, signs)

static ALWAYS_INLINE void conv_synapse(const fm_conv_weights *w, const float *P, const int wide, float *acc,
                                       const fm_conv_signs *signs)
{
    int first, end;
    fmi_conv_full_columns(w, &first, &end);
    for (int oy = 0; oy < w->out_h; oy++)
        for (int ox = 0; ox < w->out_w;) {
            const fm_conv_window v = fmi_conv_window(w, oy, ox);
            if (ox >= first && ox + CONV_POSITIONS <= end) {
                CONV_ALL_BLOCKS(SYNAPSE_RUN, 2, CONV_POSITIONS);
                ox += CONV_POSITIONS;
            } else {
                CONV_ALL_BLOCKS(SYNAPSE_RUN, 2, 1);
                ox++;
            }
        }
}

static void conv_real_avx512(const fm_conv_weights *w, const float *x, float *acc, float *scratch,
                             const fm_conv_signs *signs)
{
    float *tables = fmi_kernel_scratch_align(scratch);
    if (w->weights != FM_DW_BINARY && w->weights != FM_DW_TERNARY && w->weights != FM_DW_SYNAPSE) {
        fmi_conv_real_ref(w, x, acc, scratch, signs);
        return;
    }
    signs_clear(w, signs);
    const size_t pixels = (size_t)w->in_h * (size_t)w->in_w;
    switch (w->weights) {
    case FM_DW_BINARY:
    case FM_DW_TERNARY: {
        const int ternary = w->weights == FM_DW_TERNARY;
        const size_t pixel_floats = (size_t)w->groups * 16;
        for (size_t p = 0; p < pixels; p++) {
            if (ternary)
                group_tables(x + p * (size_t)w->in_c, w->in_c, w->groups, 1, tables + p * pixel_floats);
            else
                group_tables(x + p * (size_t)w->in_c, w->in_c, w->groups, 0, tables + p * pixel_floats);
        }
        conv_groups(w, tables, ternary, acc, signs);
        break;
    }
    default: /* synapse */
        synapse_products(w->magnitudes, (size_t)w->table_stride, x, pixels * (size_t)w->in_c, tables);
        if (w->table_stride == 32)
            conv_synapse(w, tables, 1, acc, signs);
        else
            conv_synapse(w, tables, 0, acc, signs);
        break;
    }
}

/* Channel chunk c of a packed pixel, read as 32 bits (little endian: as
 * fmi_conv_pixel_chunk), so that it is broadcast straight from memory. */
static ALWAYS_INLINE int32_t pixel_chunk(const uint64_t *pixel, int c)
{
    int32_t word;
    memcpy(&word, (const uint8_t *)pixel + 4 * (size_t)c, sizeof word);
    return word;
}

/* np positions times nb output blocks of xnor and popcount: per valid tap and
 * channel word, each block's weight words are loaded once and xored with each
 * position's input word (broadcast). vpshufb: byte counts (at most 8 a step)
 * are widened to 32-bit lanes every 31 steps. */
static ALWAYS_INLINE void conv_popcount_run(const fm_conv_weights *w, const uint64_t *a, int oy, int ox0,
                                            const int np, const fm_conv_window *v, int block, const int nb,
                                            const int vpshufb, int32_t *acc, const fm_conv_signs *signs)
{
    const size_t block_words = (size_t)w->taps * (size_t)w->chunks * FM_KERNEL_BLOCK;
    const uint32_t *base = w->words + (size_t)block * block_words;
    const size_t cw = (size_t)w->cwords, step = (size_t)w->stride * cw;
    __m512i sum[CONV_POSITIONS][CONV_BLOCKS], bytes[CONV_POSITIONS][CONV_BLOCKS];
#pragma GCC unroll 4
    for (int p = 0; p < np; p++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++)
            sum[p][b] = bytes[p][b] = _mm512_setzero_si512();
    int steps = 0;
    for (int ky = v->ky0; ky < v->ky1; ky++)
        for (int kx = v->kx0; kx < v->kx1; kx++) {
            const uint64_t *px = a + ((size_t)(v->iy0 + ky) * (size_t)w->in_w + (size_t)(v->ix0 + kx)) * cw;
            const uint32_t *wt = base + (size_t)(ky * w->k_w + kx) * (size_t)w->chunks * FM_KERNEL_BLOCK;
            for (int c = 0; c < w->chunks; c++) {
                __m512i weight[CONV_BLOCKS];
#pragma GCC unroll 4
                for (int b = 0; b < nb; b++)
                    weight[b] = in_register_int(_mm512_load_si512(wt + (size_t)b * block_words + (size_t)c * FM_KERNEL_BLOCK));
#pragma GCC unroll 4
                for (int p = 0; p < np; p++) {
                    const __m512i input = _mm512_set1_epi32(pixel_chunk(px + (size_t)p * step, c));
#pragma GCC unroll 4
                    for (int b = 0; b < nb; b++) {
                        __m512i differ = _mm512_xor_si512(input, weight[b]);
                        if (vpshufb)
                            bytes[p][b] = _mm512_add_epi8(bytes[p][b], byte_counts(differ));
                        else
                            sum[p][b] = _mm512_add_epi32(sum[p][b], _mm512_popcnt_epi32(differ));
                    }
                }
                if (vpshufb && ++steps == 31) {
#pragma GCC unroll 4
                    for (int p = 0; p < np; p++)
#pragma GCC unroll 4
                        for (int b = 0; b < nb; b++) {
                            sum[p][b] = _mm512_add_epi32(sum[p][b], widen_byte_counts(bytes[p][b]));
                            bytes[p][b] = _mm512_setzero_si512();
                        }
                    steps = 0;
                }
            }
        }
    const __m512i valid = _mm512_set1_epi32((v->ky1 - v->ky0) * (v->kx1 - v->kx0) * w->in_c);
    const size_t position = (size_t)oy * (size_t)w->out_w + (size_t)ox0;
    int32_t *out = acc + position * (size_t)w->out_c + (size_t)block * FM_KERNEL_BLOCK;
#pragma GCC unroll 4
    for (int p = 0; p < np; p++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) {
            __m512i mismatches = sum[p][b];
            if (vpshufb)
                mismatches = _mm512_add_epi32(mismatches, widen_byte_counts(bytes[p][b]));
            conv_store_int(out + (size_t)p * (size_t)w->out_c + (size_t)b * FM_KERNEL_BLOCK, signs, position + (size_t)p,
                           w->cwords_out, w->out_c, block + b, _mm512_sub_epi32(valid, _mm512_slli_epi32(mismatches, 1)));
        }
}

#define POPCOUNT_RUN(np_, block_, nb_) conv_popcount_run(w, a, oy, ox, np_, &v, block_, nb_, vpshufb, acc, signs)

static ALWAYS_INLINE void conv_bits_all(const fm_conv_weights *w, const uint64_t *a, int32_t *acc,
                                        const fm_conv_signs *signs, const int vpshufb)
{
    if (w->weights != FM_DW_BINARY) {
        fmi_conv_bits_ref(w, a, acc, signs);
        return;
    }
    signs_clear(w, signs);
    int first, end;
    fmi_conv_full_columns(w, &first, &end);
    for (int oy = 0; oy < w->out_h; oy++)
        for (int ox = 0; ox < w->out_w;) {
            const fm_conv_window v = fmi_conv_window(w, oy, ox);
            if (vpshufb) { /* its byte counters take registers: 2 x 2 */
                if (ox >= first && ox + 2 <= end) {
                    CONV_ALL_BLOCKS(POPCOUNT_RUN, 2, 2);
                    ox += 2;
                } else {
                    CONV_ALL_BLOCKS(POPCOUNT_RUN, 2, 1);
                    ox++;
                }
            } else if (ox >= first && ox + CONV_POSITIONS <= end) {
                CONV_ALL_BLOCKS(POPCOUNT_RUN, CONV_BLOCKS, CONV_POSITIONS);
                ox += CONV_POSITIONS;
            } else {
                CONV_ALL_BLOCKS(POPCOUNT_RUN, CONV_BLOCKS, 1);
                ox++;
            }
        }
}

static void conv_bits_vpopcntdq(const fm_conv_weights *w, const uint64_t *a, int32_t *acc,
                                const fm_conv_signs *signs)
{
    conv_bits_all(w, a, acc, signs, 0);
}

static void conv_bits_vpshufb(const fm_conv_weights *w, const uint64_t *a, int32_t *acc,
                              const fm_conv_signs *signs)
{
    conv_bits_all(w, a, acc, signs, 1);
}

/* ---- signs into packed maps ------------------------------------------------ */


/* The sign stage of the kernels (conv_store), applied to stored sums: for
 * the sign convolutions whose sums the kernels do not make (fp32 weights). */
static void signs_int_avx512(const int32_t *acc, size_t positions, int channels, const int32_t *lo,
                             const int32_t *hi, uint64_t *map)
{
    const int cw = fmi_conv_pixel_words(channels), blocks = (channels + 15) / 16;
    const fm_conv_signs signs = {lo, hi, NULL, NULL, map};
    memset(map, 0, positions * (size_t)cw * sizeof *map);
    for (size_t p = 0; p < positions; p++)
        for (int b = 0; b < blocks; b++)
            conv_store_int(NULL, &signs, p, cw, channels, b,
                           _mm512_maskz_loadu_epi32(block_live(channels, b), acc + p * (size_t)channels + 16 * (size_t)b));
}

static void signs_float_avx512(const float *acc, size_t positions, int channels, const float *lo,
                               const float *hi, uint64_t *map)
{
    const int cw = fmi_conv_pixel_words(channels), blocks = (channels + 15) / 16;
    const fm_conv_signs signs = {NULL, NULL, lo, hi, map};
    memset(map, 0, positions * (size_t)cw * sizeof *map);
    for (size_t p = 0; p < positions; p++)
        for (int b = 0; b < blocks; b++)
            conv_store(NULL, &signs, p, cw, channels, b,
                       _mm512_maskz_loadu_ps(block_live(channels, b), acc + p * (size_t)channels + 16 * (size_t)b));
}

static const fm_kernels avx512_kernels = {"avx512", real_avx512, bits_vpopcntdq,
                                          pow2_grad_avx512, conv_real_avx512,
                                          conv_bits_vpopcntdq, signs_int_avx512, signs_float_avx512,
                                          conv_pow2_grad_avx512, conv_pow2_grad_codes_avx512};
static const fm_kernels avx512_kernels_vpshufb = {"avx512", real_avx512, bits_vpshufb,
                                                  pow2_grad_avx512, conv_real_avx512,
                                                  conv_bits_vpshufb, signs_int_avx512, signs_float_avx512,
                                                  conv_pow2_grad_avx512, conv_pow2_grad_codes_avx512};

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
