/* infer_avx2.c — the AVX2 inference kernels: the reference's arithmetic
 * vectorized across outputs, 8 outputs per ymm lane-wise (a 16-output block of
 * the prepared layout is two halves), so every output adds its table entries
 * in the reference's order and the results equal infer_ref.c bit for bit.
 * vpermps reads only 3 index bits, so a 16-entry lookup is two of them and a
 * blend on bit 3. The convolutions vectorize the same way across output
 * channels. Built with -mavx2 -mpopcnt (CMakeLists.txt); only called after
 * infer.c has checked the CPU. */
#include "infer.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__AVX2__)

/* In a -march=native build on an AVX-512 CPU, GCC would turn each vblendvps
 * into a compare into a mask register and a masked move, one instruction more
 * per lookup (a quarter slower); this is the AVX2 variant, built for AVX2 alone. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("no-avx512f")
#endif

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

#define HALF 8 /* outputs per ymm */
#define INTERLEAVE 2 /* output blocks at a time: 4 add chains */
#define GROUPS_PER_CHUNK (FM_KERNEL_CHUNK / FM_KERNEL_GROUP)

/* All ones in lanes b (0 .. 7) whose bit k is set. */
static ALWAYS_INLINE __m256i lanes_with_bit(int k)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i bit = _mm256_and_si256(_mm256_srli_epi32(lane, k), _mm256_set1_epi32(1));
    return _mm256_cmpeq_epi32(bit, _mm256_set1_epi32(1));
}

static ALWAYS_INLINE __m256 xor_ps(__m256 v, __m256i bits)
{
    return _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(v), bits));
}

static ALWAYS_INLINE __m256 and_ps(__m256 v, __m256i bits)
{
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(v), bits));
}

static ALWAYS_INLINE const float *group_inputs(const float *x, int in, int g, float padded[4])
{
    if (4 * g + 4 <= in)
        return x + 4 * g;
    for (int k = 0; k < 4; k++)
        padded[k] = 4 * g + k < in ? x[4 * g + k] : 0.0f;
    return padded;
}

/* The tables of `groups` groups of the inputs x[0 .. in), 16 floats each at
 * T + 16g, entries 0-7 then 8-15 (infer.h): binary T[b] = p01[b & 3] +
 * p23[b >> 2] (entries 0-7 have input 3 negated, 8-15 not), ternary the
 * subset sums S[b] = q01[b & 3] + q23[b >> 2]; inputs past `in` are +0.0f. */
static ALWAYS_INLINE void group_tables(const float *x, int in, int groups, const int ternary, float *T)
{
    const __m256i sign_bit = _mm256_set1_epi32(INT32_MIN);
    const __m256i keep0 = lanes_with_bit(0), keep1 = lanes_with_bit(1), keep2 = lanes_with_bit(2);
    const __m256i negate0 = _mm256_andnot_si256(keep0, sign_bit);
    const __m256i negate1 = _mm256_andnot_si256(keep1, sign_bit);
    const __m256i negate2 = _mm256_andnot_si256(keep2, sign_bit);
    for (int g = 0; g < groups; g++) {
        float padded[4];
        const float *v = group_inputs(x, in, g, padded);
        __m256 low, high;
        if (ternary) {
            __m256 q01 = _mm256_add_ps(and_ps(_mm256_set1_ps(v[0]), keep0), and_ps(_mm256_set1_ps(v[1]), keep1));
            __m256 x2 = and_ps(_mm256_set1_ps(v[2]), keep2);
            low = _mm256_add_ps(q01, _mm256_add_ps(x2, _mm256_setzero_ps()));
            high = _mm256_add_ps(q01, _mm256_add_ps(x2, _mm256_set1_ps(v[3])));
        } else {
            __m256 p01 = _mm256_add_ps(xor_ps(_mm256_set1_ps(v[0]), negate0), xor_ps(_mm256_set1_ps(v[1]), negate1));
            __m256 x2 = xor_ps(_mm256_set1_ps(v[2]), negate2), x3 = _mm256_set1_ps(v[3]);
            low = _mm256_add_ps(p01, _mm256_add_ps(x2, xor_ps(x3, sign_bit)));
            high = _mm256_add_ps(p01, _mm256_add_ps(x2, x3));
        }
        _mm256_store_ps(T + 16 * (size_t)g, low);
        _mm256_store_ps(T + 16 * (size_t)g + 8, high);
    }
}

/* Entry (index & 15) of a 16-entry table held as entries 0-7 and 8-15. */
static ALWAYS_INLINE __m256 lookup16(__m256i index, __m256 low, __m256 high)
{
    __m256 bit3_at_sign = _mm256_castsi256_ps(_mm256_slli_epi32(index, 28));
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, index), _mm256_permutevar8x32_ps(high, index),
                            bit3_at_sign);
}

static ALWAYS_INLINE void store_half(float *acc, int out, int first, __m256 v)
{
    int left = out - first;
    if (left >= HALF) {
        _mm256_storeu_ps(acc + first, v);
    } else if (left > 0) {
        float spill[HALF];
        _mm256_storeu_ps(spill, v);
        for (int k = 0; k < left; k++)
            acc[first + k] = spill[k];
    }
}

/* `nb` output blocks from `block` on, of a binary (ternary = 0) or ternary
 * layer; as in infer_avx512.c, a vector loaded at byte offset k of a chunk's
 * words brings groups 2k (low nibble) and 2k + 1 (after a shift by 4). */
static ALWAYS_INLINE void group_blocks(const fm_kernel_weights *w, const float *T, int block,
                                       const int nb, const int ternary, float *acc)
{
    const size_t chunk_bytes = (size_t)(ternary ? 2 : 1) * FM_KERNEL_BLOCK * sizeof(uint32_t);
    const size_t block_bytes = (size_t)w->chunks * chunk_bytes;
    const uint8_t *base = (const uint8_t *)w->words + (size_t)block * block_bytes;
    const size_t minus_offset = FM_KERNEL_BLOCK * sizeof(uint32_t);
    __m256 sum[2 * INTERLEAVE];
#pragma GCC unroll 4
    for (int h = 0; h < 2 * nb; h++)
        sum[h] = _mm256_setzero_ps();
    for (int c = 0; c < w->chunks; c++) {
        const float *table = T + (size_t)c * GROUPS_PER_CHUNK * 16;
        const uint8_t *chunk = base + (size_t)c * chunk_bytes;
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256 even_low = _mm256_load_ps(table + 32 * k), even_high = _mm256_load_ps(table + 32 * k + 8);
            __m256 odd_low = _mm256_load_ps(table + 32 * k + 16), odd_high = _mm256_load_ps(table + 32 * k + 24);
#pragma GCC unroll 4
            for (int h = 0; h < 2 * nb; h++) {
                const uint8_t *at = chunk + (size_t)(h / 2) * block_bytes + (size_t)(h % 2) * HALF * 4 + k;
                __m256i plus = _mm256_loadu_si256((const __m256i *)(const void *)at);
                sum[h] = _mm256_add_ps(sum[h], lookup16(plus, even_low, even_high));
                if (ternary) {
                    __m256i minus = _mm256_loadu_si256((const __m256i *)(const void *)(at + minus_offset));
                    sum[h] = _mm256_sub_ps(sum[h], lookup16(minus, even_low, even_high));
                    sum[h] = _mm256_add_ps(sum[h], lookup16(_mm256_srli_epi32(plus, 4), odd_low, odd_high));
                    sum[h] = _mm256_sub_ps(sum[h], lookup16(_mm256_srli_epi32(minus, 4), odd_low, odd_high));
                } else {
                    sum[h] = _mm256_add_ps(sum[h], lookup16(_mm256_srli_epi32(plus, 4), odd_low, odd_high));
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < 2 * nb; h++)
        store_half(acc, w->out, block * FM_KERNEL_BLOCK + h * HALF, sum[h]);
}

static void real_groups(const fm_kernel_weights *w, const float *T, const int ternary, float *acc)
{
    int block = 0;
    for (; block + INTERLEAVE <= w->blocks; block += INTERLEAVE)
        group_blocks(w, T, block, INTERLEAVE, ternary, acc);
    for (; block < w->blocks; block++)
        group_blocks(w, T, block, 1, ternary, acc);
}

/* An input's product table of 8, 16 or 32 entries in 8-entry registers
 * (the ones past `entries` repeat the first). */
static ALWAYS_INLINE void product_table(const float *table, const int entries, __m256 t[4])
{
    t[0] = t[1] = t[2] = t[3] = _mm256_load_ps(table);
    if (entries > 8)
        t[1] = _mm256_load_ps(table + 8);
    if (entries > 16) {
        t[2] = _mm256_load_ps(table + 16);
        t[3] = _mm256_load_ps(table + 24);
    }
}

/* The product a synapse code picks, with its sign: the level index (bits
 * 0-4) picks it out of 8, 16 or 32 entries (t[0] .. t[3], 8 each) with vpermps
 * and blends, bit 7, moved to the float's sign, negates it. */
static ALWAYS_INLINE __m256 synapse_term(__m256i code, const __m256 t[4], const int entries, __m256i sign_bit)
{
    __m256 product;
    if (entries <= 8) {
        product = _mm256_permutevar8x32_ps(t[0], code);
    } else if (entries <= 16) {
        product = lookup16(code, t[0], t[1]);
    } else {
        __m256 bit4_at_sign = _mm256_castsi256_ps(_mm256_slli_epi32(code, 27));
        product = _mm256_blendv_ps(lookup16(code, t[0], t[1]), lookup16(code, t[2], t[3]), bit4_at_sign);
    }
    return xor_ps(product, _mm256_and_si256(_mm256_slli_epi32(code, 24), sign_bit));
}

/* `nb` output blocks of a synapse layer: the level index (bits 0-4 of a code)
 * picks its product out of 8, 16 or 32 with vpermps and blends, bit 7 of the
 * code, moved to the float's sign, negates it. */
static ALWAYS_INLINE void synapse_blocks(const fm_kernel_weights *w, const float *P, int block,
                                         const int nb, const int entries, float *acc)
{
    const size_t stride = (size_t)w->table_stride, block_bytes = (size_t)w->in * FM_KERNEL_BLOCK;
    const uint8_t *codes = w->codes + (size_t)block * block_bytes;
    const __m256i sign_bit = _mm256_set1_epi32(INT32_MIN);
    __m256 sum[2 * INTERLEAVE];
#pragma GCC unroll 4
    for (int h = 0; h < 2 * nb; h++)
        sum[h] = _mm256_setzero_ps();
    for (int i = 0; i < w->in; i++) {
        const float *table = P + (size_t)i * stride;
        __m256 t[4];
        product_table(table, entries, t);
#pragma GCC unroll 4
        for (int h = 0; h < 2 * nb; h++) {
            const uint8_t *at = codes + (size_t)(h / 2) * block_bytes + (size_t)i * FM_KERNEL_BLOCK + (size_t)(h % 2) * HALF;
            __m256i code = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)at));
            sum[h] = _mm256_add_ps(sum[h], synapse_term(code, t, entries, sign_bit));
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < 2 * nb; h++)
        store_half(acc, w->out, block * FM_KERNEL_BLOCK + h * HALF, sum[h]);
}

static ALWAYS_INLINE void synapse_all_blocks(const fm_kernel_weights *w, const float *P, const int entries,
                                             float *acc)
{
    int block = 0;
    for (; block + INTERLEAVE <= w->blocks; block += INTERLEAVE)
        synapse_blocks(w, P, block, INTERLEAVE, entries, acc);
    for (; block < w->blocks; block++)
        synapse_blocks(w, P, block, 1, entries, acc);
}

/* P[i * stride + index] = x_i * m[index] for the n inputs x, `stride` (16 or
 * 32) per input: the only float multiplies of this file, kept in a function
 * of their own (never inlined or cloned) so that a disassembly of the object
 * shows none anywhere else (tests/no_float_mul.sh). */
static NOINLINE void synapse_products(const float *magnitudes, size_t stride, const float *x, size_t n,
                                      float *P)
{
    for (size_t i = 0; i < n; i++) {
        __m256 xi = _mm256_set1_ps(x[i]);
        for (size_t k = 0; k < stride; k += 8)
            _mm256_store_ps(P + i * stride + k, _mm256_mul_ps(xi, _mm256_loadu_ps(magnitudes + k)));
    }
}

static void real_synapse(const fm_kernel_weights *w, const float *x, float *acc, float *P)
{
    synapse_products(w->magnitudes, (size_t)w->table_stride, x, (size_t)w->in, P);
    if (w->levels <= 8)
        synapse_all_blocks(w, P, 8, acc);
    else if (w->levels <= 16)
        synapse_all_blocks(w, P, 16, acc);
    else
        synapse_all_blocks(w, P, 32, acc);
}

static void real_avx2(const fm_kernel_weights *w, const float *x, float *acc, float *scratch)
{
    float *tables = fmi_kernel_scratch_align(scratch);
    switch (w->weights) {
    case FM_DW_BINARY:
        group_tables(x, w->in, w->chunks * GROUPS_PER_CHUNK, 0, tables);
        real_groups(w, tables, 0, acc);
        break;
    case FM_DW_TERNARY:
        group_tables(x, w->in, w->chunks * GROUPS_PER_CHUNK, 1, tables);
        real_groups(w, tables, 1, acc);
        break;
    case FM_DW_SYNAPSE: real_synapse(w, x, acc, tables); break;
    case FM_DW_FP32:
    default: fmi_infer_real_ref(w, x, acc, scratch); break;
    }
}

/* ---- binary inputs: xnor and popcount ------------------------------------ */

/* Bit counts of every byte: vpshufb looks up each nibble's count (Mula). */
static ALWAYS_INLINE __m256i byte_counts(__m256i v)
{
    const __m256i nibble_counts = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                                   0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low_nibbles = _mm256_set1_epi8(0x0f);
    __m256i low = _mm256_and_si256(v, low_nibbles);
    __m256i high = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles);
    return _mm256_add_epi8(_mm256_shuffle_epi8(nibble_counts, low), _mm256_shuffle_epi8(nibble_counts, high));
}

/* The sum of the four byte counts of each 32-bit lane. */
static ALWAYS_INLINE __m256i widen_byte_counts(__m256i bytes)
{
    const __m256i even_bytes = _mm256_set1_epi32(0x00ff00ff), low_half = _mm256_set1_epi32(0xffff);
    __m256i pairs = _mm256_add_epi32(_mm256_and_si256(bytes, even_bytes),
                                     _mm256_and_si256(_mm256_srli_epi32(bytes, 8), even_bytes));
    return _mm256_add_epi32(_mm256_and_si256(pairs, low_half), _mm256_srli_epi32(pairs, 16));
}

/* `nb` output blocks from `block` on; they share each chunk's broadcast input
 * word. Byte counts grow by at most 8 per chunk: they are widened every 31. */
static ALWAYS_INLINE void popcount_blocks(const fm_kernel_weights *w, const uint64_t *a, int block,
                                          const int nb, int32_t *acc)
{
    const size_t block_words = (size_t)w->chunks * FM_KERNEL_BLOCK;
    const uint32_t *words = w->words + (size_t)block * block_words;
    __m256i mismatches[2 * INTERLEAVE];
#pragma GCC unroll 4
    for (int h = 0; h < 2 * nb; h++)
        mismatches[h] = _mm256_setzero_si256();
    for (int c0 = 0; c0 < w->chunks; c0 += 31) {
        int c1 = c0 + 31 < w->chunks ? c0 + 31 : w->chunks;
        __m256i bytes[2 * INTERLEAVE];
#pragma GCC unroll 4
        for (int h = 0; h < 2 * nb; h++)
            bytes[h] = _mm256_setzero_si256();
        for (int c = c0; c < c1; c++) {
            __m256i input = _mm256_set1_epi32((int32_t)(uint32_t)(a[c / 2] >> (32 * (c % 2))));
#pragma GCC unroll 4
            for (int h = 0; h < 2 * nb; h++) {
                const uint32_t *at = words + (size_t)(h / 2) * block_words + (size_t)c * FM_KERNEL_BLOCK + (h % 2) * HALF;
                __m256i weight = _mm256_load_si256((const __m256i *)(const void *)at);
                bytes[h] = _mm256_add_epi8(bytes[h], byte_counts(_mm256_xor_si256(input, weight)));
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < 2 * nb; h++)
            mismatches[h] = _mm256_add_epi32(mismatches[h], widen_byte_counts(bytes[h]));
    }
#pragma GCC unroll 4
    for (int h = 0; h < 2 * nb; h++) {
        __m256i v = _mm256_sub_epi32(_mm256_set1_epi32(w->in), _mm256_slli_epi32(mismatches[h], 1));
        int first = block * FM_KERNEL_BLOCK + h * HALF, left = w->out - first;
        if (left >= HALF) {
            _mm256_storeu_si256((__m256i *)(void *)(acc + first), v);
        } else if (left > 0) {
            int32_t spill[HALF];
            _mm256_storeu_si256((__m256i *)(void *)spill, v);
            for (int k = 0; k < left; k++)
                acc[first + k] = spill[k];
        }
    }
}

static void bits_avx2(const fm_kernel_weights *w, const uint64_t *a, int32_t *acc)
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

/* ---- the weight gradient of quantized back-prop ---------------------------- */

/* Vectorized across outputs j, 8 per ymm, and blocked 6 rows (inputs i) x 2
 * ymm: 12 accumulators stay in registers over the whole batch and each dw
 * element adds its terms in example order. Without mask registers each zero
 * test costs an op, so both are arranged to cost one between them per term:
 *   e = +-0: the term is e + (code & ~zero_e), which is e itself (a zero) in
 *     those lanes; zero_e is one compare per vector and example, for 6 rows.
 *   q = +-0: the row's code is 0 and its e operand is read from a vector of
 *     zeros instead of e's row (a pointer chosen without a branch: zero q is
 *     common and unpredictable), so the term is +0.0f.
 * A term then costs an andn, an integer add (e its memory operand) and the
 * float add. */
#define GRAD_ROWS 6
#define GRAD_VECS 2
#define GRAD_WIDTH (HALF * GRAD_VECS) /* outputs per block */
#define GRAD_CHUNK 128                 /* examples tabled at a time */

/* One row block's q over GRAD_CHUNK examples: the code added to e's bits
 * (q's bits - those of 1.0f: (k << 23) plus the sign bit), and `live`, all
 * ones where q != +-0, which selects e's row over the zeros. Rows past the
 * share (padding of the last block) are dead and their q is never read. */
typedef struct grad_table {
    int32_t code[GRAD_CHUNK][GRAD_ROWS];
    int32_t live[GRAD_CHUNK][GRAD_ROWS];
} grad_table;

static const float grad_zeros[GRAD_WIDTH] __attribute__((aligned(32)));

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
            int live = (bits & 0x7fffffffu) != 0;
            tab->code[b][r] = live ? (int32_t)(bits - 0x3f800000u) : 0;
            tab->live[b][r] = -live;
        }
    }
}

/* `rows` rows of dw from `dw` on (row stride `out`), GRAD_WIDTH outputs from
 * `e` on (example stride `e_stride`), over one table's examples. With `spill`
 * (the last, partial block) e is a zero-padded copy and only the first
 * `width` outputs are loaded and stored. `first`: the accumulators start at
 * +0.0f; else at what an earlier chunk stored in dw (the same floats). */
static ALWAYS_INLINE void grad_block(const grad_table *tab, const float *e, size_t e_stride, float *dw,
                                     int out, int nb, int rows, int first, const int spill, int width)
{
    const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
    __m256 acc[GRAD_ROWS][GRAD_VECS];
#pragma GCC unroll 8
    for (int r = 0; r < GRAD_ROWS; r++) {
        float part[GRAD_WIDTH] = {0};
        const float *from = dw + (size_t)r * out;
        if (!first && r < rows && spill) {
            for (int k = 0; k < width; k++)
                part[k] = from[k];
            from = part;
        }
#pragma GCC unroll 2
        for (int v = 0; v < GRAD_VECS; v++)
            acc[r][v] = first || r >= rows ? _mm256_setzero_ps() : _mm256_loadu_ps(from + HALF * v);
    }
    for (int b = 0; b < nb; b++) {
        const float *eb = e + (size_t)b * e_stride;
        __m256i zero_e[GRAD_VECS];
#pragma GCC unroll 2
        for (int v = 0; v < GRAD_VECS; v++) {
            __m256i ev = _mm256_loadu_si256((const __m256i *)(const void *)(eb + HALF * v));
            zero_e[v] = _mm256_cmpeq_epi32(_mm256_and_si256(ev, magnitude), _mm256_setzero_si256());
        }
        const uintptr_t to_row = (uintptr_t)eb - (uintptr_t)grad_zeros;
#pragma GCC unroll 8
        for (int r = 0; r < GRAD_ROWS; r++) {
            const __m256i code = _mm256_set1_epi32(tab->code[b][r]);
            uintptr_t at = (uintptr_t)grad_zeros + (to_row & (uintptr_t)(intptr_t)tab->live[b][r]);
            /* hide that `at` is eb or grad_zeros: else the compiler branches
             * on `live` to reuse the e vectors it holds */
            __asm__("" : "+r"(at));
            const float *operand = (const float *)at;
#pragma GCC unroll 2
            for (int v = 0; v < GRAD_VECS; v++) {
                __m256i ev = _mm256_loadu_si256((const __m256i *)(const void *)(operand + HALF * v));
                __m256i term = _mm256_add_epi32(_mm256_andnot_si256(zero_e[v], code), ev);
                acc[r][v] = _mm256_add_ps(acc[r][v], _mm256_castsi256_ps(term));
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < GRAD_ROWS; r++) {
        if (r >= rows)
            continue;
        float *to = dw + (size_t)r * out;
        if (spill) {
            float part[GRAD_WIDTH];
#pragma GCC unroll 2
            for (int v = 0; v < GRAD_VECS; v++)
                _mm256_storeu_ps(part + HALF * v, acc[r][v]);
            for (int k = 0; k < width; k++)
                to[k] = part[k];
        } else {
#pragma GCC unroll 2
            for (int v = 0; v < GRAD_VECS; v++)
                _mm256_storeu_ps(to + HALF * v, acc[r][v]);
        }
    }
}

/* Rows r0 .. r0 + rows - 1 of dw (from dw_rows on) over one chunk of
 * examples, in blocks of GRAD_ROWS rows; `padded`: the chunk's last
 * out % GRAD_WIDTH outputs, zero-padded to a block. */
static void blocked_rows(const float *q, const float *e_chunk, const float *padded, float *dw_rows, int in,
                         int out, int b0, int nb, int r0, int rows, int first)
{
    grad_table tab;
    const int whole = out - out % GRAD_WIDTH, width = out - whole;
    for (int r = 0; r < rows; r += GRAD_ROWS) {
        const int n = rows - r < GRAD_ROWS ? rows - r : GRAD_ROWS;
        float *block_dw = dw_rows + (size_t)r * out;
        grad_table_fill(&tab, q, in, b0, nb, r0 + r, n);
        for (int j0 = 0; j0 < whole; j0 += GRAD_WIDTH)
            grad_block(&tab, e_chunk + j0, (size_t)out, block_dw + j0, out, nb, n, first, 0, GRAD_WIDTH);
        if (width)
            grad_block(&tab, padded, GRAD_WIDTH, block_dw + whole, out, nb, n, first, 1, width);
    }
}

/* ---- the weight gradient over lists of each row's nonzero q -----------------
 * As in the AVX-512 kernel (infer_avx512.c): per row and chunk of examples,
 * a list of the examples whose q is nonzero, and per listed term and vector
 * an integer add (e from the L1 tile as its memory operand) and a float add,
 * where the blocked kernel also spends an and-not on every term, zero or
 * not. A group of rows more than LIST_DENSE_PCT percent nonzero takes the
 * blocked kernel. Where the chunk's e holds a zero, each term tests e (a
 * compare and an and-not per vector). */
#define LIST_CHUNK FM_LIST_CHUNK /* examples listed at a time: a GRAD_CHUNK holds whole ones */
#define LIST_ROWS FM_LIST_ROWS
#define LIST_VECS 8 /* 64 outputs: 8 accumulators of the 16 ymm */
#define LIST_WIDTH (HALF * LIST_VECS)
#define LIST_DENSE_PCT 75

/* The nonzero q of rows r0 .. r0 + rows - 1 over examples b0 .. b0 + nb - 1. */
static long count_nonzero(const float *q, int in, int b0, int nb, int r0, int rows)
{
    const float *qb = q + (size_t)b0 * in + r0;
    long n = 0;
    for (int b = 0; b < nb; b++, qb += in)
        for (int r = 0; r < rows; r++) {
            uint32_t bits;
            memcpy(&bits, qb + r, sizeof bits);
            n += (bits & 0x7fffffffu) != 0;
        }
    return n;
}

/* All ones in the first `width` lanes of 8. */
static ALWAYS_INLINE __m256i first_lanes(int width)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(width), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Row r's sums over its list for outputs j0 .. j0 + width - 1 (width <=
 * HALF * vecs), into dw_row, from +0.0f (`first`) or from what an earlier
 * chunk stored there; the tile's lanes past `width` hold zeros, and are
 * neither loaded from dw nor stored. */
static ALWAYS_INLINE void list_row(const fm_grad_lists *ls, int r, const float *tile, float *dw_row, int j0,
                                   const int vecs, int width, int first, const int masked)
{
    const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
    __m256 acc[LIST_VECS];
#pragma GCC unroll 8
    for (int v = 0; v < vecs; v++) {
        const __m256i live = first_lanes(width - HALF * v);
        acc[v] = first ? _mm256_setzero_ps() : _mm256_maskload_ps(dw_row + j0 + HALF * v, live);
    }
    const int n = ls->count[r];
    const int32_t *at = ls->at[r], *code = ls->code[r];
    for (int t = 0; t < n; t++) {
        const float *et = tile + at[t];
        const __m256i c = _mm256_set1_epi32(code[t]);
#pragma GCC unroll 8
        for (int v = 0; v < vecs; v++) {
            const __m256i ev = _mm256_load_si256((const __m256i *)(const void *)(et + HALF * v));
            __m256i term;
            if (masked) {
                const __m256i zero_e = _mm256_cmpeq_epi32(_mm256_and_si256(ev, magnitude), _mm256_setzero_si256());
                term = _mm256_add_epi32(_mm256_andnot_si256(zero_e, c), ev);
            } else {
                term = _mm256_add_epi32(c, ev);
            }
            acc[v] = _mm256_add_ps(acc[v], _mm256_castsi256_ps(term));
        }
    }
#pragma GCC unroll 8
    for (int v = 0; v < vecs; v++)
        _mm256_maskstore_ps(dw_row + j0 + HALF * v, first_lanes(width - HALF * v), acc[v]);
}

static void list_rows(const fm_grad_lists *ls, int rows, const float *tile, float *dw, int out, int j0, int vecs,
                      int width, int first, int masked)
{
    for (int r = 0; r < rows; r++) {
        float *dw_row = dw + (size_t)r * out;
#define LIST_ROW(V)                                                                                  \
    case V:                                                                                          \
        if (masked)                                                                                  \
            list_row(ls, r, tile, dw_row, j0, V, width, first, 1);                                   \
        else                                                                                         \
            list_row(ls, r, tile, dw_row, j0, V, width, first, 0);                                   \
        break;
        switch (vecs) {
            LIST_ROW(1) LIST_ROW(2) LIST_ROW(3) LIST_ROW(4) LIST_ROW(5) LIST_ROW(6) LIST_ROW(7)
            default: LIST_ROW(8)
        }
#undef LIST_ROW
    }
}

/* 1 when one of the n floats is +-0. */
static int any_zero(const float *e, size_t n)
{
    int zero = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, e + i, sizeof bits);
        zero |= (bits & 0x7fffffffu) == 0;
    }
    return zero;
}

/* Rows r0 .. r0 + rows - 1 (from dw_rows on) over the listed terms of
 * examples b0 .. b0 + nb - 1 (e_sub: their e), a tile of outputs at a time. */
static void listed_rows(fm_grad_lists *ls, float (*tile)[LIST_WIDTH], const float *q, const float *e_sub,
                        float *dw_rows, int in, int out, int b0, int nb, int r0, int rows, int first, int masked)
{
    fmi_grad_lists_fill(ls, q, in, b0, nb, r0, rows, LIST_WIDTH);
    for (int j0 = 0; j0 < out; j0 += LIST_WIDTH) {
        const int left = out - j0, block = left < LIST_WIDTH ? left : LIST_WIDTH;
        const int vecs = (block + HALF - 1) / HALF;
        const float *from = e_sub + j0;
        for (int b = 0; b < nb; b++, from += out) {
            if (block == LIST_WIDTH) {
#pragma GCC unroll 8
                for (int v = 0; v < LIST_VECS; v++)
                    _mm256_store_ps(tile[b] + HALF * v, _mm256_loadu_ps(from + HALF * v));
            } else {
                for (int k = 0; k < HALF * vecs; k++)
                    tile[b][k] = k < block ? from[k] : 0.0f;
            }
        }
        list_rows(ls, rows, &tile[0][0], dw_rows, out, j0, vecs, block, first, masked);
    }
}

static void pow2_grad_avx2(const float *q, const float *e, float *dw, int batch, int in, int out, int i0,
                           int i1)
{
    if (i1 <= i0 || out <= 0)
        return;
    fm_grad_lists ls;
    /* the last outputs (out % GRAD_WIDTH of them), zero-padded to a block,
     * for the blocked kernel; and the tile of the lists' e block */
    float padded[GRAD_CHUNK][GRAD_WIDTH] __attribute__((aligned(32)));
    float tile[LIST_CHUNK][LIST_WIDTH] __attribute__((aligned(32)));
    int masked[GRAD_CHUNK / LIST_CHUNK];
    const int whole = out - out % GRAD_WIDTH, width = out - whole;
    /* Chunks of examples outside, row groups inside, as in the AVX-512
     * kernel: a dense row group runs the blocked kernel over the whole chunk,
     * a sparse one the lists over each LIST_CHUNK examples of it; neither the
     * chunks nor the kernel chosen changes a bit. batch 0: one empty chunk,
     * which stores zeros. */
    for (int b0 = 0; b0 == 0 || b0 < batch; b0 += GRAD_CHUNK) {
        const int nb = batch - b0 < GRAD_CHUNK ? batch - b0 : GRAD_CHUNK, first = b0 == 0;
        const float *e_chunk = e + (size_t)b0 * out;
        if (width)
            for (int b = 0; b < nb; b++)
                for (int k = 0; k < GRAD_WIDTH; k++)
                    padded[b][k] = k < width ? e_chunk[(size_t)b * out + whole + k] : 0.0f;
        for (int s0 = 0; s0 == 0 || s0 < nb; s0 += LIST_CHUNK) {
            const int ns = nb - s0 < LIST_CHUNK ? nb - s0 : LIST_CHUNK;
            masked[s0 / LIST_CHUNK] = any_zero(e_chunk + (size_t)s0 * out, (size_t)ns * out);
        }
        for (int r0 = i0; r0 < i1; r0 += LIST_ROWS) {
            const int rows = i1 - r0 < LIST_ROWS ? i1 - r0 : LIST_ROWS;
            float *rows_dw = dw + (size_t)(r0 - i0) * out;
            if (100 * count_nonzero(q, in, b0, nb, r0, rows) > (long)LIST_DENSE_PCT * rows * nb) {
                blocked_rows(q, e_chunk, &padded[0][0], rows_dw, in, out, b0, nb, r0, rows, first);
                continue;
            }
            for (int s0 = 0; s0 == 0 || s0 < nb; s0 += LIST_CHUNK) {
                const int ns = nb - s0 < LIST_CHUNK ? nb - s0 : LIST_CHUNK;
                listed_rows(&ls, tile, q, e_chunk + (size_t)s0 * out, rows_dw, in, out, b0 + s0, ns, r0, rows,
                            first && s0 == 0, masked[s0 / LIST_CHUNK]);
            }
        }
    }
}

/* 8 values from v, or the `left` < 8 there and zeros: a partial last group
 * of channels is read through a zero-padded copy. */
static ALWAYS_INLINE __m256i load_int8(const int32_t *v, int left)
{
    if (left >= HALF)
        return _mm256_loadu_si256((const __m256i *)(const void *)v);
    int32_t part[HALF] = {0};
    memcpy(part, v, (size_t)left * sizeof *part);
    return _mm256_loadu_si256((const __m256i *)(void *)part);
}

static ALWAYS_INLINE __m256 load_float8(const float *v, int left)
{
    if (left >= HALF)
        return _mm256_loadu_ps(v);
    float part[HALF] = {0};
    memcpy(part, v, (size_t)left * sizeof *part);
    return _mm256_loadu_ps(part);
}

/* ---- a convolution's weight gradient from its maps ------------------------
 * As the AVX-512 kernel (infer_avx512.c): vectorized across a window's
 * weights, one slice (64 channels of a tap, eight ymm) at a time, over the
 * list of one output channel's nonzero errors. Per vector: a load, a compare
 * of q with zero (a zero of either sign), the exponent add, an and-not that
 * makes a zero q's term +0 (which leaves the sum as it was) and the add. */
static ALWAYS_INLINE void grad_slice(const float *q, const int32_t *terms, int n_terms, int32_t slice_at,
                                     const float *from, float *dw, int accumulate)
{
    __m256 acc[8];
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++)
        acc[v] = _mm256_setzero_ps();
    if (from)
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++)
            acc[v] = _mm256_loadu_ps(from + 8 * v);
    for (int t = 0; t < n_terms; t++) {
        const float *window = q + terms[2 * t] + slice_at;
        const __m256i code = _mm256_set1_epi32(terms[2 * t + 1]);
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) {
            const __m256 qv = _mm256_loadu_ps(window + 8 * v);
            const __m256 zero = _mm256_cmp_ps(qv, _mm256_setzero_ps(), _CMP_EQ_OQ);
            const __m256 term = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(qv), code));
            acc[v] = _mm256_add_ps(acc[v], _mm256_andnot_ps(zero, term));
        }
    }
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++)
        _mm256_storeu_ps(dw + 8 * v, accumulate ? _mm256_add_ps(_mm256_loadu_ps(dw + 8 * v), acc[v]) : acc[v]);
}

static void conv_pow2_grad_avx2(const float *q, const int32_t *terms, int n_terms, const int32_t *slice_at,
                                int slices, const float *from, float *dw, int accumulate)
{
    for (int s = 0; s < slices; s++)
        grad_slice(q, terms, n_terms, slice_at[s], from ? from + FM_GRAD_SLICE * s : NULL, dw + FM_GRAD_SLICE * s,
                   accumulate);
}

/* ---- convolutions ---------------------------------------------------------
 * As infer_avx512.c's, 8 output channels per ymm (a block is two halves):
 * the window's taps and a tap's groups, channels or channel words outside,
 * so every output adds its terms in the reference's order; where a row's
 * windows lie inside the input, CONV_POSITIONS neighbouring positions share
 * each weight vector loaded. Sixteen ymm registers hold fewer accumulators
 * than AVX-512's 32. */
#define CONV_POSITIONS 2

/* Half h (8 channels) of block `block` of one position's sums: stored at
 * acc + first, first = 16 * block + 8 * h, up to out_c; or with `signs`, its
 * bits (in the channels' ranges) as one byte of the position's pixel. */
static ALWAYS_INLINE void conv_out_float(float *acc, const fm_conv_signs *signs, size_t position, int cw,
                                         int out_c, int first, __m256 v)
{
    if (!signs) {
        store_half(acc, out_c, first, v);
        return;
    }
    const int left = out_c - first;
    if (left <= 0)
        return;
    const __m256 lo = load_float8(signs->flo + first, left), hi = load_float8(signs->fhi + first, left);
    const __m256 in = _mm256_and_ps(_mm256_cmp_ps(v, lo, _CMP_GE_OQ), _mm256_cmp_ps(v, hi, _CMP_LE_OQ));
    const unsigned live = left >= HALF ? 0xffu : (1u << left) - 1u;
    ((uint8_t *)(signs->map + position * (size_t)cw))[first / HALF] = (uint8_t)((unsigned)_mm256_movemask_ps(in) & live);
}

static ALWAYS_INLINE void conv_out_int(int32_t *acc, const fm_conv_signs *signs, size_t position, int cw,
                                       int out_c, int first, __m256i v)
{
    const int left = out_c - first;
    if (left <= 0)
        return;
    if (signs) {
        const __m256i lo = load_int8(signs->ilo + first, left), hi = load_int8(signs->ihi + first, left);
        const __m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(lo, v), _mm256_cmpgt_epi32(v, hi));
        const unsigned live = left >= HALF ? 0xffu : (1u << left) - 1u;
        ((uint8_t *)(signs->map + position * (size_t)cw))[first / HALF] =
            (uint8_t)(~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(out)) & live);
    } else if (left >= HALF) {
        _mm256_storeu_si256((__m256i *)(void *)(acc + first), v);
    } else {
        int32_t spill[HALF];
        _mm256_storeu_si256((__m256i *)(void *)spill, v);
        for (int k = 0; k < left; k++)
            acc[first + k] = spill[k];
    }
}

/* Zeroes a sign convolution's map: the kernels then store only their
 * channels' bits, and the bits past out_c stay zero. */
static void signs_clear(const fm_conv_weights *w, const fm_conv_signs *signs)
{
    if (signs)
        memset(signs->map, 0,
               (size_t)w->out_h * (size_t)w->out_w * (size_t)fmi_conv_pixel_words(w->out_c) * sizeof(uint64_t));
}

/* np positions (ox0 on, row oy, window v of the first) of output block
 * `block` of a binary or ternary layer: per valid tap and pair of groups one
 * load of each half's index words (the odd group after a shift by 4), and per
 * group, half and position a 16-entry lookup (two vpermps and a blend). */
static ALWAYS_INLINE void conv_groups_run(const fm_conv_weights *w, const float *T, int oy, int ox0,
                                          const int np, const fm_conv_window *v, int block, const int ternary,
                                          float *acc, const fm_conv_signs *signs)
{
    const int G = w->groups;
    const size_t chunk_bytes = (size_t)w->sets * FM_KERNEL_BLOCK * sizeof(uint32_t);
    const size_t tap_bytes = (size_t)w->chunks * chunk_bytes;
    const uint8_t *base = (const uint8_t *)w->words + (size_t)block * (size_t)w->taps * tap_bytes;
    const size_t pixel_floats = (size_t)G * 16, step = (size_t)w->stride * pixel_floats;
    __m256 sum[CONV_POSITIONS][2];
#pragma GCC unroll 2
    for (int p = 0; p < np; p++)
        sum[p][0] = sum[p][1] = _mm256_setzero_ps();
    for (int ky = v->ky0; ky < v->ky1; ky++)
        for (int kx = v->kx0; kx < v->kx1; kx++) {
            const float *t0 = T + ((size_t)(v->iy0 + ky) * (size_t)w->in_w + (size_t)(v->ix0 + kx)) * pixel_floats;
            const uint8_t *wt = base + (size_t)(ky * w->k_w + kx) * tap_bytes;
            for (int g = 0; g < G; g++) {
                const uint8_t *at = wt + (size_t)(g / 8) * chunk_bytes + (size_t)((g % 8) / 2);
                const int shift = 4 * (g % 2);
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    const uint8_t *half = at + (size_t)h * HALF * sizeof(uint32_t);
                    __m256i plus = _mm256_srli_epi32(_mm256_loadu_si256((const __m256i *)(const void *)half), shift);
                    __m256i minus = plus;
                    if (ternary)
                        minus = _mm256_srli_epi32(
                            _mm256_loadu_si256((const __m256i *)(const void *)(half + FM_KERNEL_BLOCK * sizeof(uint32_t))),
                            shift);
#pragma GCC unroll 2
                    for (int p = 0; p < np; p++) {
                        const float *table = t0 + (size_t)p * step + 16 * (size_t)g;
                        const __m256 low = _mm256_load_ps(table), high = _mm256_load_ps(table + 8);
                        sum[p][h] = _mm256_add_ps(sum[p][h], lookup16(plus, low, high));
                        if (ternary)
                            sum[p][h] = _mm256_sub_ps(sum[p][h], lookup16(minus, low, high));
                    }
                }
            }
        }
    const size_t position = (size_t)oy * (size_t)w->out_w + (size_t)ox0;
    float *out = acc + position * (size_t)w->out_c;
#pragma GCC unroll 2
    for (int p = 0; p < np; p++)
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++)
            conv_out_float(out + (size_t)p * (size_t)w->out_c, signs, position + (size_t)p, w->cwords_out, w->out_c,
                           block * FM_KERNEL_BLOCK + h * HALF, sum[p][h]);
}

/* One position of output block `block` of a synapse layer: per valid tap
 * and channel, each half's codes pick their products (synapse_term). */
static ALWAYS_INLINE void conv_synapse_run(const fm_conv_weights *w, const float *P, int oy, int ox,
                                           const fm_conv_window *v, int block, const int entries, float *acc,
                                           const fm_conv_signs *signs)
{
    const int ic = w->in_c;
    const size_t ts = (size_t)w->table_stride, pixel_floats = (size_t)ic * ts;
    const uint8_t *base = w->codes + (size_t)block * (size_t)w->taps * (size_t)ic * FM_KERNEL_BLOCK;
    const __m256i sign_bit = _mm256_set1_epi32(INT32_MIN);
    __m256 sum[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int ky = v->ky0; ky < v->ky1; ky++)
        for (int kx = v->kx0; kx < v->kx1; kx++) {
            const float *p0 = P + ((size_t)(v->iy0 + ky) * (size_t)w->in_w + (size_t)(v->ix0 + kx)) * pixel_floats;
            const uint8_t *ct = base + (size_t)(ky * w->k_w + kx) * (size_t)ic * FM_KERNEL_BLOCK;
            for (int c = 0; c < ic; c++) {
                const float *table = p0 + (size_t)c * ts;
                __m256 t[4];
                product_table(table, entries, t);
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    const uint8_t *at = ct + (size_t)c * FM_KERNEL_BLOCK + (size_t)h * HALF;
                    __m256i code = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)at));
                    sum[h] = _mm256_add_ps(sum[h], synapse_term(code, t, entries, sign_bit));
                }
            }
        }
    const size_t position = (size_t)oy * (size_t)w->out_w + (size_t)ox;
    float *out = acc + position * (size_t)w->out_c;
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++)
        conv_out_float(out, signs, position, w->cwords_out, w->out_c, block * FM_KERNEL_BLOCK + h * HALF, sum[h]);
}

static void conv_groups(const fm_conv_weights *w, const float *T, const int ternary, float *acc,
                        const fm_conv_signs *signs)
{
    int first, end;
    fmi_conv_full_columns(w, &first, &end);
    for (int oy = 0; oy < w->out_h; oy++)
        for (int ox = 0; ox < w->out_w;) {
            const fm_conv_window v = fmi_conv_window(w, oy, ox);
            const int np = ox >= first && ox + CONV_POSITIONS <= end ? CONV_POSITIONS : 1;
            for (int block = 0; block < w->blocks; block++) {
                if (np == CONV_POSITIONS && ternary)
                    conv_groups_run(w, T, oy, ox, CONV_POSITIONS, &v, block, 1, acc, signs);
                else if (np == CONV_POSITIONS)
                    conv_groups_run(w, T, oy, ox, CONV_POSITIONS, &v, block, 0, acc, signs);
                else if (ternary)
                    conv_groups_run(w, T, oy, ox, 1, &v, block, 1, acc, signs);
                else
                    conv_groups_run(w, T, oy, ox, 1, &v, block, 0, acc, signs);
            }
            ox += np;
        }
}

static ALWAYS_INLINE void conv_synapse(const fm_conv_weights *w, const float *P, const int entries, float *acc,
                                       const fm_conv_signs *signs)
{
    for (int oy = 0; oy < w->out_h; oy++)
        for (int ox = 0; ox < w->out_w; ox++) {
            const fm_conv_window v = fmi_conv_window(w, oy, ox);
            for (int block = 0; block < w->blocks; block++)
                conv_synapse_run(w, P, oy, ox, &v, block, entries, acc, signs);
        }
}

static void conv_real_avx2(const fm_conv_weights *w, const float *x, float *acc, float *scratch,
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
        if (w->levels <= 8)
            conv_synapse(w, tables, 8, acc, signs);
        else if (w->levels <= 16)
            conv_synapse(w, tables, 16, acc, signs);
        else
            conv_synapse(w, tables, 32, acc, signs);
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

/* np positions of output block `block`, xnor and popcount: per valid tap and
 * channel word, each half's weight words are loaded once and xored with each
 * position's input word; the vpshufb byte counts are widened every 31 steps. */
static ALWAYS_INLINE void conv_popcount_run(const fm_conv_weights *w, const uint64_t *a, int oy, int ox0,
                                            const int np, const fm_conv_window *v, int block, int32_t *acc,
                                            const fm_conv_signs *signs)
{
    const uint32_t *base = w->words + (size_t)block * (size_t)w->taps * (size_t)w->chunks * FM_KERNEL_BLOCK;
    const size_t cw = (size_t)w->cwords, step = (size_t)w->stride * cw;
    __m256i sum[CONV_POSITIONS][2], bytes[CONV_POSITIONS][2];
#pragma GCC unroll 2
    for (int p = 0; p < np; p++)
        sum[p][0] = sum[p][1] = bytes[p][0] = bytes[p][1] = _mm256_setzero_si256();
    int steps = 0;
    for (int ky = v->ky0; ky < v->ky1; ky++)
        for (int kx = v->kx0; kx < v->kx1; kx++) {
            const uint64_t *px = a + ((size_t)(v->iy0 + ky) * (size_t)w->in_w + (size_t)(v->ix0 + kx)) * cw;
            const uint32_t *wt = base + (size_t)(ky * w->k_w + kx) * (size_t)w->chunks * FM_KERNEL_BLOCK;
            for (int c = 0; c < w->chunks; c++) {
                const __m256i *at = (const __m256i *)(const void *)(wt + (size_t)c * FM_KERNEL_BLOCK);
                const __m256i weight[2] = {_mm256_load_si256(at), _mm256_load_si256(at + 1)};
#pragma GCC unroll 2
                for (int p = 0; p < np; p++) {
                    const __m256i input = _mm256_set1_epi32(pixel_chunk(px + (size_t)p * step, c));
#pragma GCC unroll 2
                    for (int h = 0; h < 2; h++)
                        bytes[p][h] = _mm256_add_epi8(bytes[p][h], byte_counts(_mm256_xor_si256(input, weight[h])));
                }
                if (++steps == 31) {
#pragma GCC unroll 2
                    for (int p = 0; p < np; p++)
#pragma GCC unroll 2
                        for (int h = 0; h < 2; h++) {
                            sum[p][h] = _mm256_add_epi32(sum[p][h], widen_byte_counts(bytes[p][h]));
                            bytes[p][h] = _mm256_setzero_si256();
                        }
                    steps = 0;
                }
            }
        }
    const __m256i valid = _mm256_set1_epi32((v->ky1 - v->ky0) * (v->kx1 - v->kx0) * w->in_c);
    const size_t position = (size_t)oy * (size_t)w->out_w + (size_t)ox0;
    int32_t *out = acc + position * (size_t)w->out_c;
#pragma GCC unroll 2
    for (int p = 0; p < np; p++)
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i mismatches = _mm256_add_epi32(sum[p][h], widen_byte_counts(bytes[p][h]));
            conv_out_int(out + (size_t)p * (size_t)w->out_c, signs, position + (size_t)p, w->cwords_out, w->out_c,
                         block * FM_KERNEL_BLOCK + h * HALF, _mm256_sub_epi32(valid, _mm256_slli_epi32(mismatches, 1)));
        }
}

static void conv_bits_avx2(const fm_conv_weights *w, const uint64_t *a, int32_t *acc,
                           const fm_conv_signs *signs)
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
            const int np = ox >= first && ox + CONV_POSITIONS <= end ? CONV_POSITIONS : 1;
            for (int block = 0; block < w->blocks; block++) {
                if (np == CONV_POSITIONS)
                    conv_popcount_run(w, a, oy, ox, CONV_POSITIONS, &v, block, acc, signs);
                else
                    conv_popcount_run(w, a, oy, ox, 1, &v, block, acc, signs);
            }
            ox += np;
        }
}

/* ---- signs into packed maps ------------------------------------------------ */

/* The sign stage of the kernels (conv_out_int, conv_out_float), applied to
 * stored sums: for the sign convolutions whose sums the kernels do not make
 * (fp32 weights). */
static void signs_int_avx2(const int32_t *acc, size_t positions, int channels, const int32_t *lo,
                           const int32_t *hi, uint64_t *map)
{
    const int cw = fmi_conv_pixel_words(channels);
    const fm_conv_signs signs = {lo, hi, NULL, NULL, map};
    memset(map, 0, positions * (size_t)cw * sizeof *map);
    for (size_t p = 0; p < positions; p++)
        for (int first = 0; first < channels; first += HALF)
            conv_out_int(NULL, &signs, p, cw, channels, first, load_int8(acc + p * (size_t)channels + first, channels - first));
}

static void signs_float_avx2(const float *acc, size_t positions, int channels, const float *lo,
                             const float *hi, uint64_t *map)
{
    const int cw = fmi_conv_pixel_words(channels);
    const fm_conv_signs signs = {NULL, NULL, lo, hi, map};
    memset(map, 0, positions * (size_t)cw * sizeof *map);
    for (size_t p = 0; p < positions; p++)
        for (int first = 0; first < channels; first += HALF)
            conv_out_float(NULL, &signs, p, cw, channels, first,
                           load_float8(acc + p * (size_t)channels + first, channels - first));
}

static const fm_kernels avx2_kernels = {"avx2", real_avx2, bits_avx2, pow2_grad_avx2, conv_real_avx2,
                                        conv_bits_avx2, signs_int_avx2, signs_float_avx2,
                                        conv_pow2_grad_avx2, NULL /* the float maps' kernel only */};

const fm_kernels *fmi_kernels_avx2_table(void) { return &avx2_kernels; }

#else

const fm_kernels *fmi_kernels_avx2_table(void) { return NULL; }

#endif
