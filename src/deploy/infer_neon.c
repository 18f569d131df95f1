/* infer_neon.c — the NEON (Advanced SIMD) kernels of 64-bit Arm: the
 * reference's arithmetic vectorized across outputs, 4 outputs per q register
 * (a 16-output block of the prepared layout is four quarters), so every output
 * adds its table entries in the reference's order and the results equal
 * infer_ref.c and infer_conv.c bit for bit. A 16-float table is 64 bytes, four
 * q registers, and a lookup is one tbl (vqtbl4q_u8) on the byte indices 4n ..
 * 4n + 3 of entry n; 32-entry synapse tables are two tbl, whose out-of-range
 * indices give zero bytes. The xnor-popcount kernels count bits per byte
 * (cnt) and widen with pairwise adds. NEON is part of every ARMv8-A CPU, so
 * infer.c offers this variant wherever it is built (aarch64) without a check. */
#include "infer.h"

#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

#define QUARTER 4 /* outputs per q register */
#define QUARTERS (FM_KERNEL_BLOCK / QUARTER)
#define GROUPS_PER_CHUNK (FM_KERNEL_CHUNK / FM_KERNEL_GROUP)

/* ---- tables and lookups --------------------------------------------------- */

/* The 16-entry table of four inputs v (infer.h): binary T[b] = p01[b & 3] +
 * p23[b >> 2], p01[c] = (c & 1 ? v0 : -v0) + (c & 2 ? v1 : -v1); ternary the
 * subset sums S, q01[c] = (c & 1 ? v0 : 0) + (c & 2 ? v1 : 0). p01 and p23
 * are computed for c = 0 .. 3 at once, row h of T (entries 4h .. 4h + 3) is
 * p01 + p23[h], with the reference's operands in the reference's order. */
static ALWAYS_INLINE void group_table(const float v[4], const int ternary, float *T)
{
    const uint32x4_t sign = vdupq_n_u32(0x80000000u);
    const uint32x4_t bit0 = {0, ~0u, 0, ~0u}, bit1 = {0, 0, ~0u, ~0u};
    float32x4_t p01, p23;
    if (ternary) { /* a cleared lane is +0.0f, the reference's 0.0f */
        p01 = vaddq_f32(vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vdupq_n_f32(v[0])), bit0)),
                        vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vdupq_n_f32(v[1])), bit1)));
        p23 = vaddq_f32(vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vdupq_n_f32(v[2])), bit0)),
                        vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vdupq_n_f32(v[3])), bit1)));
    } else { /* -x is x with its sign bit flipped */
        const uint32x4_t negate0 = vbicq_u32(sign, bit0), negate1 = vbicq_u32(sign, bit1);
        p01 = vaddq_f32(vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(vdupq_n_f32(v[0])), negate0)),
                        vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(vdupq_n_f32(v[1])), negate1)));
        p23 = vaddq_f32(vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(vdupq_n_f32(v[2])), negate0)),
                        vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(vdupq_n_f32(v[3])), negate1)));
    }
    vst1q_f32(T, vaddq_f32(p01, vdupq_laneq_f32(p23, 0)));
    vst1q_f32(T + 4, vaddq_f32(p01, vdupq_laneq_f32(p23, 1)));
    vst1q_f32(T + 8, vaddq_f32(p01, vdupq_laneq_f32(p23, 2)));
    vst1q_f32(T + 12, vaddq_f32(p01, vdupq_laneq_f32(p23, 3)));
}

/* The tables of `groups` groups of inputs x[0 .. in) at T + 16g; inputs
 * past `in` are +0.0f, as the reference pads. */
static void group_tables(const float *x, int in, int groups, int ternary, float *T)
{
    for (int g = 0; g < groups; g++) {
        float v[4];
        for (int k = 0; k < 4; k++)
            v[k] = 4 * g + k < in ? x[4 * g + k] : 0.0f;
        if (ternary)
            group_table(v, 1, T + 16 * (size_t)g);
        else
            group_table(v, 0, T + 16 * (size_t)g);
    }
}

static ALWAYS_INLINE uint8x16x4_t load_table(const float *T)
{
    const uint8_t *b = (const uint8_t *)(const void *)T;
    uint8x16x4_t t;
    t.val[0] = vld1q_u8(b);
    t.val[1] = vld1q_u8(b + 16);
    t.val[2] = vld1q_u8(b + 32);
    t.val[3] = vld1q_u8(b + 48);
    return t;
}

/* Byte indices of entries n (0 .. 63, one per 32-bit lane, already times 4
 * in the lane's low byte): 4n, 4n + 1, 4n + 2, 4n + 3 in the lane's bytes. */
static ALWAYS_INLINE uint8x16_t entry_bytes(uint32x4_t four_n)
{
    const uint8x16_t low_byte = {0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12};
    const uint8x16_t offset = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    return vaddq_u8(vqtbl1q_u8(vreinterpretq_u8_u32(four_n), low_byte), offset);
}

/* Entry (word >> shift) & 15 of a 16-entry table, per lane. */
static ALWAYS_INLINE float32x4_t lookup16(uint8x16x4_t table, uint32x4_t word, int32x4_t shift)
{
    uint32x4_t four_n = vshlq_n_u32(vandq_u32(vshlq_u32(word, shift), vdupq_n_u32(15)), 2);
    return vreinterpretq_f32_u8(vqtbl4q_u8(table, entry_bytes(four_n)));
}

static ALWAYS_INLINE void store_quarter(float *acc, int left, float32x4_t v)
{
    if (left >= QUARTER) {
        vst1q_f32(acc, v);
    } else if (left > 0) {
        float spill[QUARTER];
        vst1q_f32(spill, v);
        for (int k = 0; k < left; k++)
            acc[k] = spill[k];
    }
}

/* ---- dense layers, real inputs ---------------------------------------------- */

/* Output block `block` of a binary or ternary layer: per group of inputs and
 * quarter, one lookup (binary, ternary +1) and one more (ternary -1). */
static ALWAYS_INLINE void group_block(const fm_kernel_weights *w, const float *T, int block, const int ternary,
                                      float *acc)
{
    const size_t sets = ternary ? 2 : 1;
    const uint32_t *words = w->words + (size_t)block * (size_t)w->chunks * sets * FM_KERNEL_BLOCK;
    float32x4_t sum[QUARTERS];
    for (int q = 0; q < QUARTERS; q++)
        sum[q] = vdupq_n_f32(0.0f);
    for (int g = 0; g < w->groups; g++) {
        const uint32_t *chunk = words + (size_t)(g / GROUPS_PER_CHUNK) * sets * FM_KERNEL_BLOCK;
        const int32x4_t shift = vdupq_n_s32(-4 * (g % GROUPS_PER_CHUNK));
        const uint8x16x4_t table = load_table(T + 16 * (size_t)g);
        for (int q = 0; q < QUARTERS; q++) {
            sum[q] = vaddq_f32(sum[q], lookup16(table, vld1q_u32(chunk + QUARTER * q), shift));
            if (ternary)
                sum[q] = vsubq_f32(sum[q],
                                   lookup16(table, vld1q_u32(chunk + FM_KERNEL_BLOCK + QUARTER * q), shift));
        }
    }
    const int first = block * FM_KERNEL_BLOCK;
    for (int q = 0; q < QUARTERS; q++)
        store_quarter(acc + first + QUARTER * q, w->out - first - QUARTER * q, sum[q]);
}

/* P[i * stride + index] = x_i * m[index] for n inputs: the only multiplies,
 * in a function of their own, never inlined, as in infer_ref.c
 * (tests/no_float_mul.sh exempts it by name). */
#if defined(__clang__)
__attribute__((noinline))
#elif defined(__GNUC__)
__attribute__((noinline, noclone))
#endif
static void synapse_products(const float *magnitudes, size_t stride, const float *x, size_t n, float *tables)
{
    for (size_t i = 0; i < n; i++)
        for (size_t index = 0; index < stride; index++)
            tables[i * stride + index] = x[i] * magnitudes[index];
}

/* The 16 codes of one input of a block (level | sign << 7) as, per quarter,
 * the table byte indices of the levels and the sign bits at bit 31. */
typedef struct synapse_codes {
    uint8x16_t four_level; /* 4 * level per byte */
    uint8x16_t sign;       /* 0x80 where negative */
} synapse_codes;

static ALWAYS_INLINE synapse_codes synapse_load(const uint8_t *codes)
{
    const uint8x16_t code = vld1q_u8(codes);
    synapse_codes s = {vshlq_n_u8(vandq_u8(code, vdupq_n_u8(0x7f)), 2), vandq_u8(code, vdupq_n_u8(0x80))};
    return s;
}

/* +-P[level] of quarter q's four outputs, from a table of 16 entries (lo) or
 * 32 (lo then hi): the second tbl reads indices 64 .. 127 less 64, and each
 * tbl gives zeros where the index is out of its range. */
static ALWAYS_INLINE float32x4_t synapse_term(synapse_codes s, int q, uint8x16x4_t lo, uint8x16x4_t hi,
                                              const int entries)
{
    static const uint8_t spread[QUARTERS][16] = {
        {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
        {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7},
        {8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11},
        {12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15},
    };
    /* the sign byte of output 4q + l to byte 3 of lane l (bit 31), zeros elsewhere */
    static const uint8_t top[QUARTERS][16] = {
        {255, 255, 255, 0, 255, 255, 255, 1, 255, 255, 255, 2, 255, 255, 255, 3},
        {255, 255, 255, 4, 255, 255, 255, 5, 255, 255, 255, 6, 255, 255, 255, 7},
        {255, 255, 255, 8, 255, 255, 255, 9, 255, 255, 255, 10, 255, 255, 255, 11},
        {255, 255, 255, 12, 255, 255, 255, 13, 255, 255, 255, 14, 255, 255, 255, 15},
    };
    const uint8x16_t offset = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    const uint8x16_t index = vaddq_u8(vqtbl1q_u8(s.four_level, vld1q_u8(spread[q])), offset);
    uint8x16_t bytes = vqtbl4q_u8(lo, index);
    if (entries > 16)
        bytes = vorrq_u8(bytes, vqtbl4q_u8(hi, vsubq_u8(index, vdupq_n_u8(64))));
    return vreinterpretq_f32_u8(veorq_u8(bytes, vqtbl1q_u8(s.sign, vld1q_u8(top[q]))));
}

static ALWAYS_INLINE void synapse_block(const fm_kernel_weights *w, const float *P, int block, const int entries,
                                        float *acc)
{
    const size_t stride = (size_t)w->table_stride;
    const uint8_t *codes = w->codes + (size_t)block * (size_t)w->in * FM_KERNEL_BLOCK;
    float32x4_t sum[QUARTERS];
    for (int q = 0; q < QUARTERS; q++)
        sum[q] = vdupq_n_f32(0.0f);
    for (int i = 0; i < w->in; i++) {
        const float *table = P + (size_t)i * stride;
        const uint8x16x4_t lo = load_table(table);
        const uint8x16x4_t hi = entries > 16 ? load_table(table + 16) : lo;
        const synapse_codes s = synapse_load(codes + (size_t)i * FM_KERNEL_BLOCK);
        for (int q = 0; q < QUARTERS; q++)
            sum[q] = vaddq_f32(sum[q], synapse_term(s, q, lo, hi, entries));
    }
    const int first = block * FM_KERNEL_BLOCK;
    for (int q = 0; q < QUARTERS; q++)
        store_quarter(acc + first + QUARTER * q, w->out - first - QUARTER * q, sum[q]);
}

static void real_neon(const fm_kernel_weights *w, const float *x, float *acc, float *scratch)
{
    float *tables = fmi_kernel_scratch_align(scratch);
    switch (w->weights) {
    case FM_DW_BINARY:
        group_tables(x, w->in, w->groups, 0, tables);
        for (int block = 0; block < w->blocks; block++)
            group_block(w, tables, block, 0, acc);
        break;
    case FM_DW_TERNARY:
        group_tables(x, w->in, w->groups, 1, tables);
        for (int block = 0; block < w->blocks; block++)
            group_block(w, tables, block, 1, acc);
        break;
    case FM_DW_SYNAPSE:
        synapse_products(w->magnitudes, (size_t)w->table_stride, x, (size_t)w->in, tables);
        for (int block = 0; block < w->blocks; block++) {
            if (w->table_stride > 16)
                synapse_block(w, tables, block, 32, acc);
            else
                synapse_block(w, tables, block, 16, acc);
        }
        break;
    default: /* the reference's answer for the kinds without packed kernels */
        fmi_infer_real_ref(w, x, acc, scratch);
        break;
    }
}

/* ---- binary inputs, binary weights ------------------------------------------ */

/* Set bits per 32-bit lane: byte counts, then pairwise widening adds. */
static ALWAYS_INLINE uint32x4_t popcount_lanes(uint32x4_t v)
{
    return vpaddlq_u16(vpaddlq_u8(vcntq_u8(vreinterpretq_u8_u32(v))));
}

static void bits_neon(const fm_kernel_weights *w, const uint64_t *a, int32_t *acc)
{
    if (w->weights != FM_DW_BINARY) {
        fmi_infer_bits_ref(w, a, acc);
        return;
    }
    for (int block = 0; block < w->blocks; block++) {
        const uint32_t *words = w->words + (size_t)block * (size_t)w->chunks * FM_KERNEL_BLOCK;
        uint32x4_t mismatches[QUARTERS];
        for (int q = 0; q < QUARTERS; q++)
            mismatches[q] = vdupq_n_u32(0);
        for (int c = 0; c < w->chunks; c++) {
            const uint32x4_t input = vdupq_n_u32((uint32_t)(a[c / 2] >> (32 * (c % 2))));
            for (int q = 0; q < QUARTERS; q++)
                mismatches[q] = vaddq_u32(mismatches[q],
                                          popcount_lanes(veorq_u32(input, vld1q_u32(words + (size_t)c * FM_KERNEL_BLOCK + QUARTER * q))));
        }
        const int first = block * FM_KERNEL_BLOCK;
        for (int q = 0; q < QUARTERS; q++) {
            int32x4_t v = vsubq_s32(vdupq_n_s32(w->in), vreinterpretq_s32_u32(vshlq_n_u32(mismatches[q], 1)));
            int left = w->out - first - QUARTER * q;
            if (left >= QUARTER) {
                vst1q_s32(acc + first + QUARTER * q, v);
            } else if (left > 0) {
                int32_t spill[QUARTER];
                vst1q_s32(spill, v);
                for (int k = 0; k < left; k++)
                    acc[first + QUARTER * q + k] = spill[k];
            }
        }
    }
}

/* ---- the weight gradient of quantized back-prop ------------------------------ */

/* Four terms q * e_j (infer.h): e's bits plus q's bits less those of 1.0f
 * where neither is a zero, else +0.0f; one integer add per term. */
static ALWAYS_INLINE float32x4_t pow2_terms(uint32_t q_bits, uint32x4_t e_bits)
{
    const uint32x4_t nonzero = vtstq_u32(e_bits, vdupq_n_u32(0x7fffffffu));
    return vreinterpretq_f32_u32(vandq_u32(vaddq_u32(e_bits, vdupq_n_u32(q_bits - 0x3f800000u)), nonzero));
}

static void pow2_grad_neon(const float *q, const float *e, float *dw, int batch, int in, int out, int i0, int i1)
{
    const int whole = out - out % QUARTER;
    for (int i = i0; i < i1; i++) {
        for (int j = 0; j < whole; j += QUARTER) {
            float32x4_t acc = vdupq_n_f32(0.0f);
            for (int b = 0; b < batch; b++) {
                uint32_t q_bits;
                memcpy(&q_bits, q + (size_t)b * in + i, sizeof q_bits);
                const uint32x4_t e_bits = vld1q_u32((const uint32_t *)(const void *)(e + (size_t)b * out + j));
                /* a zero q: every term is +0.0f, added all the same, as the reference adds it */
                const float32x4_t term = (q_bits & 0x7fffffffu) ? pow2_terms(q_bits, e_bits) : vdupq_n_f32(0.0f);
                acc = vaddq_f32(acc, term);
            }
            vst1q_f32(dw + (size_t)(i - i0) * out + j, acc);
        }
        for (int j = whole; j < out; j++) { /* the last outputs one at a time */
            float acc = 0.0f;
            for (int b = 0; b < batch; b++) {
                uint32_t q_bits, e_bits;
                memcpy(&q_bits, q + (size_t)b * in + i, sizeof q_bits);
                memcpy(&e_bits, e + (size_t)b * out + j, sizeof e_bits);
                uint32_t t_bits = (q_bits & 0x7fffffffu) && (e_bits & 0x7fffffffu) ? e_bits + (q_bits - 0x3f800000u) : 0u;
                float t;
                memcpy(&t, &t_bits, sizeof t);
                acc += t;
            }
            dw[(size_t)(i - i0) * out + j] = acc;
        }
    }
}

/* ---- convolutions ------------------------------------------------------------ */

/* Output position (oy, ox), block `block`, of a binary or ternary
 * convolution: per valid tap in (ky, kx) order and group, each quarter's
 * lookups, as position_real of infer_conv.c adds them. */
static ALWAYS_INLINE void conv_group_block(const fm_conv_weights *w, const float *T, const fm_conv_window *v,
                                           int block, const int ternary, float *out)
{
    const size_t sets = ternary ? 2 : 1, G = (size_t)w->groups;
    float32x4_t sum[QUARTERS];
    for (int q = 0; q < QUARTERS; q++)
        sum[q] = vdupq_n_f32(0.0f);
    for (int ky = v->ky0; ky < v->ky1; ky++)
        for (int kx = v->kx0; kx < v->kx1; kx++) {
            const size_t t = (size_t)(ky * w->k_w + kx);
            const size_t pixel = (size_t)(v->iy0 + ky) * (size_t)w->in_w + (size_t)(v->ix0 + kx);
            const uint32_t *wt = w->words + ((size_t)block * (size_t)w->taps + t) * (size_t)w->chunks * sets * FM_KERNEL_BLOCK;
            for (size_t g = 0; g < G; g++) {
                const uint32_t *chunk = wt + (g / GROUPS_PER_CHUNK) * sets * FM_KERNEL_BLOCK;
                const int32x4_t shift = vdupq_n_s32(-4 * (int)(g % GROUPS_PER_CHUNK));
                const uint8x16x4_t table = load_table(T + (pixel * G + g) * 16);
                for (int q = 0; q < QUARTERS; q++) {
                    sum[q] = vaddq_f32(sum[q], lookup16(table, vld1q_u32(chunk + QUARTER * q), shift));
                    if (ternary)
                        sum[q] = vsubq_f32(sum[q],
                                           lookup16(table, vld1q_u32(chunk + FM_KERNEL_BLOCK + QUARTER * q), shift));
                }
            }
        }
    const int first = block * FM_KERNEL_BLOCK;
    for (int q = 0; q < QUARTERS; q++)
        store_quarter(out + first + QUARTER * q, w->out_c - first - QUARTER * q, sum[q]);
}

/* The same for a synapse convolution: per valid tap and channel, the terms. */
static ALWAYS_INLINE void conv_synapse_block(const fm_conv_weights *w, const float *P, const fm_conv_window *v,
                                             int block, const int entries, float *out)
{
    const size_t ic = (size_t)w->in_c, ts = (size_t)w->table_stride;
    float32x4_t sum[QUARTERS];
    for (int q = 0; q < QUARTERS; q++)
        sum[q] = vdupq_n_f32(0.0f);
    for (int ky = v->ky0; ky < v->ky1; ky++)
        for (int kx = v->kx0; kx < v->kx1; kx++) {
            const size_t t = (size_t)(ky * w->k_w + kx);
            const size_t pixel = (size_t)(v->iy0 + ky) * (size_t)w->in_w + (size_t)(v->ix0 + kx);
            const uint8_t *codes = w->codes + ((size_t)block * (size_t)w->taps + t) * ic * FM_KERNEL_BLOCK;
            for (size_t c = 0; c < ic; c++) {
                const float *table = P + (pixel * ic + c) * ts;
                const uint8x16x4_t lo = load_table(table);
                const uint8x16x4_t hi = entries > 16 ? load_table(table + 16) : lo;
                const synapse_codes s = synapse_load(codes + c * FM_KERNEL_BLOCK);
                for (int q = 0; q < QUARTERS; q++)
                    sum[q] = vaddq_f32(sum[q], synapse_term(s, q, lo, hi, entries));
            }
        }
    const int first = block * FM_KERNEL_BLOCK;
    for (int q = 0; q < QUARTERS; q++)
        store_quarter(out + first + QUARTER * q, w->out_c - first - QUARTER * q, sum[q]);
}

static void signs_float_neon(const float *acc, size_t positions, int channels, const float *lo,
                             const float *hi, uint64_t *map);
static void signs_int_neon(const int32_t *acc, size_t positions, int channels, const int32_t *lo,
                           const int32_t *hi, uint64_t *map);

static void conv_real_neon(const fm_conv_weights *w, const float *x, float *acc, float *scratch,
                           const fm_conv_signs *signs)
{
    if (w->weights != FM_DW_BINARY && w->weights != FM_DW_TERNARY && w->weights != FM_DW_SYNAPSE) {
        fmi_conv_real_ref(w, x, acc, scratch, signs);
        return;
    }
    float *tables = fmi_kernel_scratch_align(scratch);
    const size_t pixels = (size_t)w->in_h * (size_t)w->in_w;
    const int ternary = w->weights == FM_DW_TERNARY;
    if (w->weights == FM_DW_SYNAPSE)
        synapse_products(w->magnitudes, (size_t)w->table_stride, x, pixels * (size_t)w->in_c, tables);
    else
        for (size_t p = 0; p < pixels; p++)
            group_tables(x + p * (size_t)w->in_c, w->in_c, w->groups, ternary,
                         tables + p * (size_t)w->groups * 16);
    for (int oy = 0; oy < w->out_h; oy++)
        for (int ox = 0; ox < w->out_w; ox++) {
            const fm_conv_window v = fmi_conv_window(w, oy, ox);
            float *out = acc + ((size_t)oy * (size_t)w->out_w + (size_t)ox) * (size_t)w->out_c;
            for (int block = 0; block < w->blocks; block++) {
                if (w->weights == FM_DW_BINARY)
                    conv_group_block(w, tables, &v, block, 0, out);
                else if (ternary)
                    conv_group_block(w, tables, &v, block, 1, out);
                else if (w->table_stride > 16)
                    conv_synapse_block(w, tables, &v, block, 32, out);
                else
                    conv_synapse_block(w, tables, &v, block, 16, out);
            }
        }
    if (signs) /* the sums are all in acc: the sign stage over them, as the reference */
        signs_float_neon(acc, (size_t)w->out_h * (size_t)w->out_w, w->out_c, signs->flo, signs->fhi, signs->map);
}

static void conv_bits_neon(const fm_conv_weights *w, const uint64_t *a, int32_t *acc,
                           const fm_conv_signs *signs)
{
    if (w->weights != FM_DW_BINARY) {
        fmi_conv_bits_ref(w, a, acc, signs);
        return;
    }
    const size_t cw = (size_t)w->cwords, oc = (size_t)w->out_c;
    for (int oy = 0; oy < w->out_h; oy++)
        for (int ox = 0; ox < w->out_w; ox++) {
            const fm_conv_window v = fmi_conv_window(w, oy, ox);
            int32_t *out = acc + ((size_t)oy * (size_t)w->out_w + (size_t)ox) * oc;
            const int32x4_t valid = vdupq_n_s32((v.ky1 - v.ky0) * (v.kx1 - v.kx0) * w->in_c);
            for (int block = 0; block < w->blocks; block++) {
                uint32x4_t mismatches[QUARTERS];
                for (int q = 0; q < QUARTERS; q++)
                    mismatches[q] = vdupq_n_u32(0);
                for (int ky = v.ky0; ky < v.ky1; ky++)
                    for (int kx = v.kx0; kx < v.kx1; kx++) {
                        const uint64_t *px = a + ((size_t)(v.iy0 + ky) * (size_t)w->in_w + (size_t)(v.ix0 + kx)) * cw;
                        const size_t t = (size_t)(ky * w->k_w + kx);
                        const uint32_t *wt = w->words + ((size_t)block * (size_t)w->taps + t) * (size_t)w->chunks * FM_KERNEL_BLOCK;
                        for (int c = 0; c < w->chunks; c++) {
                            const uint32x4_t input = vdupq_n_u32(fmi_conv_pixel_chunk(px, c));
                            for (int q = 0; q < QUARTERS; q++)
                                mismatches[q] = vaddq_u32(
                                    mismatches[q],
                                    popcount_lanes(veorq_u32(input, vld1q_u32(wt + (size_t)c * FM_KERNEL_BLOCK + QUARTER * q))));
                        }
                    }
                const int first = block * FM_KERNEL_BLOCK;
                for (int q = 0; q < QUARTERS; q++) {
                    const int32x4_t sums = vsubq_s32(valid, vreinterpretq_s32_u32(vshlq_n_u32(mismatches[q], 1)));
                    const int left = w->out_c - first - QUARTER * q;
                    if (left >= QUARTER) {
                        vst1q_s32(out + first + QUARTER * q, sums);
                    } else if (left > 0) {
                        int32_t spill[QUARTER];
                        vst1q_s32(spill, sums);
                        for (int k = 0; k < left; k++)
                            out[first + QUARTER * q + k] = spill[k];
                    }
                }
            }
        }
    if (signs)
        signs_int_neon(acc, (size_t)w->out_h * (size_t)w->out_w, w->out_c, signs->ilo, signs->ihi, signs->map);
}

/* ---- signs into packed maps ------------------------------------------------ */

/* Four channels' in-range masks (all ones: +1) as 4 bits, channel first + k at bit k. */
static ALWAYS_INLINE uint64_t mask_bits(uint32x4_t in_range)
{
    const uint32x4_t weight = {1, 2, 4, 8};
    return vaddvq_u32(vandq_u32(in_range, weight));
}

/* Bit j of each pixel's words: lo[j] <= acc <= hi[j] (a NaN compares false:
 * in no range), four channels per compare, the rest one at a time. */
static void signs_float_neon(const float *acc, size_t positions, int channels, const float *lo,
                             const float *hi, uint64_t *map)
{
    const int cw = fmi_conv_pixel_words(channels);
    for (size_t p = 0; p < positions; p++) {
        uint64_t *words = map + p * (size_t)cw;
        const float *a = acc + p * (size_t)channels;
        memset(words, 0, (size_t)cw * sizeof *words);
        int j = 0;
        for (; j + QUARTER <= channels; j += QUARTER) {
            const float32x4_t v = vld1q_f32(a + j);
            const uint32x4_t in_range = vandq_u32(vcleq_f32(vld1q_f32(lo + j), v), vcleq_f32(v, vld1q_f32(hi + j)));
            words[j / 64] |= mask_bits(in_range) << (j % 64);
        }
        for (; j < channels; j++)
            words[j / 64] |= (uint64_t)(lo[j] <= a[j] && a[j] <= hi[j]) << (j % 64);
    }
}

static void signs_int_neon(const int32_t *acc, size_t positions, int channels, const int32_t *lo,
                           const int32_t *hi, uint64_t *map)
{
    const int cw = fmi_conv_pixel_words(channels);
    for (size_t p = 0; p < positions; p++) {
        uint64_t *words = map + p * (size_t)cw;
        const int32_t *a = acc + p * (size_t)channels;
        memset(words, 0, (size_t)cw * sizeof *words);
        int j = 0;
        for (; j + QUARTER <= channels; j += QUARTER) {
            const int32x4_t v = vld1q_s32(a + j);
            const uint32x4_t in_range = vandq_u32(vcleq_s32(vld1q_s32(lo + j), v), vcleq_s32(v, vld1q_s32(hi + j)));
            words[j / 64] |= mask_bits(in_range) << (j % 64);
        }
        for (; j < channels; j++)
            words[j / 64] |= (uint64_t)(lo[j] <= a[j] && a[j] <= hi[j]) << (j % 64);
    }
}

static const fm_kernels neon_kernels = {"neon", real_neon, bits_neon, pow2_grad_neon, conv_real_neon,
                                        conv_bits_neon, signs_int_neon, signs_float_neon,
                                        NULL /* over the im2col columns */, NULL};

const fm_kernels *fmi_kernels_neon_table(void) { return &neon_kernels; }

#else

const fm_kernels *fmi_kernels_neon_table(void) { return NULL; }

#endif
