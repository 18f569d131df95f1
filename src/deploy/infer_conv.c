/* infer_conv.c — the convolution kernels of deployed networks: the layout
 * (infer.h, struct fm_conv_weights) built once per layer from its packed rows,
 * shared by every variant, and the scalar reference kernels, which are the
 * specification (infer.h, "convolutions"): real inputs times binary or
 * ternary weights by group lookup, times synapse weights by product tables
 * (no multiply per weight), binary inputs times binary weights as xor and
 * popcount over bit-packed channels, and the packing of signs. The window runs
 * over the taps inside the input only: the trainer pads with zeros, and a zero
 * adds nothing. */
#include "conv.h"
#include "infer.h"
#include "internal.h"
#include "ledger.h"
#include "quant.h"

#include <string.h>

/* ---- preparation ------------------------------------------------------- */

void fmi_conv_weights_free(fm_conv_weights *w)
{
    if (!w)
        return;
    fmi_free(w->layout);
    fmi_free(w);
}

size_t fmi_conv_kernel_scratch_floats(const fm_conv_weights *w)
{
    if (!w)
        return 0;
    const size_t pixels = (size_t)w->in_h * (size_t)w->in_w;
    /* 16 floats of slack let the tables start 64-byte aligned */
    switch (w->weights) {
    case FM_DW_BINARY:
    case FM_DW_TERNARY: return pixels * (size_t)w->groups * 16 + 16;
    case FM_DW_SYNAPSE: return pixels * (size_t)w->in_c * (size_t)w->table_stride + 16;
    default: return 0;
    }
}

/* A zeroed block of `bytes` followed by FM_KERNEL_TAIL zero bytes, 64-byte
 * aligned as every buffer is (FM_ALLOC_ALIGN). */
static void *layout_alloc(size_t bytes)
{
    return bytes > SIZE_MAX - FM_KERNEL_TAIL ? NULL : fmi_alloc(bytes + FM_KERNEL_TAIL, 1);
}

/* A layout of a kind and geometry with every code zero (fp32: no layout, the
 * caller points w->w at its rows); synapse: `levels` ascending magnitudes. */
static int conv_alloc(fm_deploy_weights kind, const fm_conv_geom *g, int levels,
                      const float *magnitudes, fm_conv_weights **out)
{
    *out = NULL;
    if (kind == FM_DW_SYNAPSE && (levels < 2 || levels > FM_KERNEL_MAX_LEVELS || !magnitudes))
        return fmi_error(FM_EINVAL, "synapse layer with %d levels (2 .. %d)", levels,
                        FM_KERNEL_MAX_LEVELS);
    if (kind != FM_DW_FP32 && kind != FM_DW_BINARY && kind != FM_DW_TERNARY && kind != FM_DW_SYNAPSE)
        return fmi_error(FM_EINVAL, "unknown weight kind %d", (int)kind);
    fm_conv_weights *w = fmi_alloc(1, sizeof *w);
    if (!w)
        return FM_ENOMEM;
    w->weights = kind;
    w->in_h = g->in_h, w->in_w = g->in_w, w->in_c = g->in_c;
    w->k_h = g->k_h, w->k_w = g->k_w, w->stride = g->stride;
    w->pad_top = g->pad_top, w->pad_left = g->pad_left;
    w->out_h = g->out_h, w->out_w = g->out_w, w->out_c = g->out_c;
    w->taps = g->k_h * g->k_w;
    w->fan_in = w->taps * g->in_c;
    w->cwords = fmi_conv_pixel_words(g->in_c);
    w->cwords_out = fmi_conv_pixel_words(g->out_c);
    w->blocks = (g->out_c + FM_KERNEL_BLOCK - 1) / FM_KERNEL_BLOCK;
    w->chunks = (g->in_c + FM_KERNEL_CHUNK - 1) / FM_KERNEL_CHUNK;
    w->groups = (g->in_c + FM_KERNEL_GROUP - 1) / FM_KERNEL_GROUP;
    w->sets = kind == FM_DW_TERNARY ? 2 : 1;
    if (kind == FM_DW_FP32) {
        *out = w;
        return FM_OK;
    }
    if (kind == FM_DW_SYNAPSE) {
        w->levels = levels;
        w->table_stride = levels <= 16 ? 16 : 32;
        memcpy(w->magnitudes, magnitudes, (size_t)levels * sizeof(float));
    }
    /* one block's weights of one tap: 16 words per chunk and set, or 16 codes per channel */
    const size_t per_tap = kind == FM_DW_SYNAPSE
                               ? (size_t)g->in_c * FM_KERNEL_BLOCK
                               : (size_t)w->chunks * (size_t)w->sets * FM_KERNEL_BLOCK * sizeof(uint32_t);
    const size_t bytes = (size_t)w->blocks * (size_t)w->taps * per_tap;
    w->layout = layout_alloc(bytes);
    if (!w->layout) {
        fmi_free(w);
        return FM_ENOMEM;
    }
    w->layout_bytes = bytes;
    if (kind == FM_DW_SYNAPSE)
        w->codes = w->layout;
    else
        w->words = w->layout;
    *out = w;
    return FM_OK;
}

int fmi_conv_layout(fm_deploy_weights kind, const fm_conv_geom *g, int levels,
                    const float *magnitudes, fm_conv_weights **out)
{
    *out = NULL;
    if (kind == FM_DW_FP32)
        return fmi_error(FM_EINVAL, "only binary, ternary and synapse layers have packed kernels");
    return conv_alloc(kind, g, levels, magnitudes, out);
}

int fmi_conv_prepare(const fm_deploy_layer *L, fm_conv_weights **out)
{
    *out = NULL;
    if (L->type != FM_DL_CONV || !L->packed)
        return fmi_error(FM_EINVAL, "convolution layout of a record without convolution weights");
    const fm_conv_geom g = {L->in_h, L->in_w, L->in_c, L->k_h, L->k_w, L->stride,
                            L->pad_top, L->pad_left, L->out_h, L->out_w, L->out_c};
    fm_conv_weights *w;
    int rc = conv_alloc(L->weights, &g, L->levels, L->magnitudes, &w);
    if (rc < 0)
        return rc;
    w->fan_in = L->in;
    switch (L->weights) {
    case FM_DW_FP32:
        w->w = (const float *)(const void *)L->packed;
        break;
    case FM_DW_BINARY:
    case FM_DW_TERNARY: {
        uint32_t *words = w->layout;
        for (int j = 0; j < L->out_c; j++)
            for (int i = 0; i < L->in; i++) {
                const uint32_t code = fmi_deploy_code(L, j, i);
                const int t = i / L->in_c, c = i % L->in_c;
                const size_t block = (size_t)(j / FM_KERNEL_BLOCK), lane = (size_t)(j % FM_KERNEL_BLOCK);
                const size_t chunk = (block * (size_t)w->taps + (size_t)t) * (size_t)w->chunks +
                                     (size_t)(c / FM_KERNEL_CHUNK);
                const uint32_t bit = 1u << (c % FM_KERNEL_CHUNK);
                if (code == 1u) /* +1 in both kinds */
                    words[(chunk * (size_t)w->sets) * FM_KERNEL_BLOCK + lane] |= bit;
                else if (L->weights == FM_DW_TERNARY && code == 3u)
                    words[(chunk * 2 + 1) * FM_KERNEL_BLOCK + lane] |= bit;
                else if (L->weights == FM_DW_TERNARY && code != 0u)
                    rc = fmi_error(FM_EINVAL, "ternary weight (%d, %d) has the invalid code %u", i,
                                  j, code);
            }
        break;
    }
    default: { /* synapse */
        uint8_t *codes = w->layout;
        const uint32_t index_mask = (1u << (L->bits - 1)) - 1u;
        for (int j = 0; j < L->out_c; j++)
            for (int i = 0; i < L->in; i++) {
                const uint32_t code = fmi_deploy_code(L, j, i);
                const uint32_t index = code & index_mask, negative = code >> (L->bits - 1);
                if (index >= (uint32_t)L->levels)
                    rc = fmi_error(FM_EINVAL, "synapse weight (%d, %d) has level %u of %d", i, j,
                                   index, L->levels);
                const size_t block = (size_t)(j / FM_KERNEL_BLOCK), lane = (size_t)(j % FM_KERNEL_BLOCK);
                const size_t at = ((block * (size_t)w->taps + (size_t)(i / L->in_c)) * (size_t)L->in_c +
                                   (size_t)(i % L->in_c)) * FM_KERNEL_BLOCK + lane;
                codes[at] = (uint8_t)(index | negative << 7);
            }
        break;
    }
    }
    if (rc < 0) {
        fmi_conv_weights_free(w);
        return rc;
    }
    *out = w;
    return FM_OK;
}

/* ---- filling a layout from float weights (training's --exec mulfree) ------ */

static inline uint32_t sign_of(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits >> 31;
}

/* Output block `block` of the layout from m (as fmi_conv_fill); 0, or 1
 * where a synapse weight is off the levels (its code is left 0). */
static int conv_fill_block(fm_conv_weights *w, const float *m, int transposed, int steps, int block)
{
    const int taps = w->taps, ic = w->in_c, oc = w->out_c;
    const size_t t_stride = transposed ? (size_t)oc * ic : (size_t)ic * oc;
    const size_t c_stride = transposed ? 1 : (size_t)oc, j_stride = transposed ? (size_t)ic : 1;
    const int first = block * FM_KERNEL_BLOCK, lanes = FM_MIN(FM_KERNEL_BLOCK, oc - first);
    int off = 0;
    for (int t = 0; t < taps; t++) {
        const float *tap = m + (size_t)(transposed ? taps - 1 - t : t) * t_stride + (size_t)first * j_stride;
        for (int c = 0; c < ic; c++) {
            const float *v = tap + (size_t)c * c_stride;
            if (w->weights == FM_DW_SYNAPSE) {
                uint8_t *codes = (uint8_t *)w->layout +
                                 (((size_t)block * (size_t)taps + (size_t)t) * (size_t)ic + (size_t)c) * FM_KERNEL_BLOCK;
                for (int lane = 0; lane < lanes; lane++) {
                    const float x = v[(size_t)lane * j_stride];
                    const int index = fmi_kernel_level_of(w->magnitudes, w->levels, x, steps);
                    off |= index < 0;
                    codes[lane] = (uint8_t)((uint32_t)(index < 0 ? 0 : index) | sign_of(x) << 7);
                }
                continue;
            }
            const size_t chunk = ((size_t)block * (size_t)taps + (size_t)t) * (size_t)w->chunks +
                                 (size_t)(c / FM_KERNEL_CHUNK);
            const int shift = c % FM_KERNEL_CHUNK;
            uint32_t *words = (uint32_t *)w->layout + chunk * (size_t)w->sets * FM_KERNEL_BLOCK;
            if (w->weights == FM_DW_BINARY) /* +1 where the sign bit is clear */
                for (int lane = 0; lane < lanes; lane++)
                    words[lane] |= (sign_of(v[(size_t)lane * j_stride]) ^ 1u) << shift;
            else
                for (int lane = 0; lane < lanes; lane++) {
                    const float x = v[(size_t)lane * j_stride];
                    words[lane] |= (uint32_t)(x > 0.0f) << shift;
                    words[FM_KERNEL_BLOCK + lane] |= (uint32_t)(x < 0.0f) << shift;
                }
        }
    }
    return off;
}

int fmi_conv_fill(fm_conv_weights *w, const float *m, int transposed, int threads)
{
    const int taps = w->taps, ic = w->in_c, oc = w->out_c;
    const int steps = w->weights == FM_DW_SYNAPSE ? fmi_search_steps(w->levels - 1) : 0;
    /* weight (tap t, input channel c, output j) of m: the layer's rows
     * (t, c) x j, or with `transposed` the rows of the layer this one
     * transposes, whose inputs are our outputs, at the tap rotated by 180
     * degrees. Output blocks among the threads: each block's words or codes
     * are its own stretch of the layout, zeroed and written by one thread. */
    const size_t n = (size_t)w->fan_in * (size_t)oc, block_bytes = w->layout_bytes / (size_t)w->blocks;
    const int shares = fmi_fill_threads(n, w->blocks, threads);
    int off = 0;
#pragma omp parallel for num_threads(shares) schedule(static) if (shares > 1) reduction(| : off)
    for (int block = 0; block < w->blocks; block++) {
        memset((uint8_t *)w->layout + (size_t)block * block_bytes, 0, block_bytes);
        off |= conv_fill_block(w, m, transposed, steps, block);
    }
    if (off) { /* the first weight off the levels, in the order (tap, channel, output) */
        const size_t t_stride = transposed ? (size_t)oc * ic : (size_t)ic * oc;
        const size_t c_stride = transposed ? 1 : (size_t)oc, j_stride = transposed ? (size_t)ic : 1;
        for (int t = 0; t < taps; t++)
            for (int c = 0; c < ic; c++)
                for (int j = 0; j < oc; j++) {
                    const float v = m[(size_t)(transposed ? taps - 1 - t : t) * t_stride + (size_t)c * c_stride +
                                      (size_t)j * j_stride];
                    if (fmi_kernel_level_of(w->magnitudes, w->levels, v, steps) < 0)
                        return fmi_error(FM_EINVAL, "weight (tap %d, %d, %d) = %g is not a synapse level",
                                        t, c, j, (double)v);
                }
    }
    /* as fmi_kernel_fill: binary the sign bit is the code (wiring); ternary
     * two compares per weight; synapse the search and its equality test */
    if (w->weights == FM_DW_TERNARY)
        FM_TALLY(FM_OP_CMP, 2 * (uint64_t)n);
    if (w->weights == FM_DW_SYNAPSE) {
        FM_TALLY(FM_OP_IADD, (uint64_t)steps * n);
        FM_TALLY(FM_OP_CMP, (uint64_t)(steps + 1) * n);
        FM_TALLY(FM_OP_SIGN, (uint64_t)steps * n);
    }
    return FM_OK;
}

void fmi_conv_dilate(const float *e, int height, int width, int channels, int s, float *out)
{
    const size_t wide = (size_t)(width - 1) * (size_t)s + 1, c = (size_t)channels;
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
            memcpy(out + ((size_t)y * (size_t)s * wide + (size_t)x * (size_t)s) * c,
                   e + ((size_t)y * (size_t)width + (size_t)x) * c, c * sizeof *e);
}

/* ---- real inputs ------------------------------------------------------- */

/* v negated when `negative` (1): its sign bit flipped, exactly what -v is. */
static float with_sign(float v, unsigned negative)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    bits ^= (uint32_t)negative << 31;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* P[i * stride + index] = x_i * m[index] for every value of the input map:
 * the only multiplies of these kernels, `stride` per input value and example
 * (not per weight, nor per window that reads the value), kept in a function of
 * their own, never inlined, so that a disassembly shows none anywhere else
 * (tests/no_float_mul.sh). */
#if defined(__clang__)
__attribute__((noinline))
#elif defined(__GNUC__)
__attribute__((noinline, noclone))
#endif
static void synapse_products(const fm_conv_weights *w, const float *x, float *tables)
{
    const size_t stride = (size_t)w->table_stride;
    const size_t n = (size_t)w->in_h * (size_t)w->in_w * (size_t)w->in_c;
    for (size_t i = 0; i < n; i++)
        for (size_t index = 0; index < stride; index++)
            tables[i * stride + index] = x[i] * w->magnitudes[index];
}

/* The group tables of every input pixel: binary T or ternary S (infer.h). */
static void group_tables(const fm_conv_weights *w, const float *x, float *tables)
{
    const size_t pixels = (size_t)w->in_h * (size_t)w->in_w;
    for (size_t p = 0; p < pixels; p++)
        for (int g = 0; g < w->groups; g++) {
            float v[4];
            for (int k = 0; k < 4; k++) {
                int c = 4 * g + k;
                v[k] = c < w->in_c ? x[p * (size_t)w->in_c + (size_t)c] : 0.0f;
            }
            float *T = tables + (p * (size_t)w->groups + (size_t)g) * 16;
            if (w->weights == FM_DW_TERNARY)
                fmi_subset_table(v, T);
            else
                fmi_binary_table(v, T);
        }
}

/* The 4-bit pattern of output j in group g of tap t: the +1 weights (s = 0)
 * or a ternary layer's -1 weights (s = 1). */
static unsigned conv_pattern(const fm_conv_weights *w, int j, int t, int g, int s)
{
    const size_t block = (size_t)(j / FM_KERNEL_BLOCK), lane = (size_t)(j % FM_KERNEL_BLOCK);
    const size_t chunk = (block * (size_t)w->taps + (size_t)t) * (size_t)w->chunks + (size_t)(g / 8);
    uint32_t word = w->words[(chunk * (size_t)w->sets + (size_t)s) * FM_KERNEL_BLOCK + lane];
    return (word >> (4 * (g % 8))) & 15u;
}

/* The terms of one output position, every output channel at once: the taps
 * and groups (or channels) outside, the outputs inside, so each output adds
 * its terms in the specified order. */
static void position_real(const fm_conv_weights *w, const float *tables, const fm_conv_window *v,
                          float *acc)
{
    const int oc = w->out_c, ic = w->in_c;
    for (int j = 0; j < oc; j++)
        acc[j] = 0.0f;
    for (int ky = v->ky0; ky < v->ky1; ky++)
        for (int kx = v->kx0; kx < v->kx1; kx++) {
            const int t = ky * w->k_w + kx;
            const size_t pixel = (size_t)(v->iy0 + ky) * (size_t)w->in_w + (size_t)(v->ix0 + kx);
            switch (w->weights) {
            case FM_DW_BINARY:
            case FM_DW_TERNARY:
                for (int g = 0; g < w->groups; g++) {
                    const float *T = tables + (pixel * (size_t)w->groups + (size_t)g) * 16;
                    for (int j = 0; j < oc; j++) {
                        acc[j] += T[conv_pattern(w, j, t, g, 0)];
                        if (w->weights == FM_DW_TERNARY)
                            acc[j] -= T[conv_pattern(w, j, t, g, 1)];
                    }
                }
                break;
            case FM_DW_SYNAPSE:
                for (int c = 0; c < ic; c++) {
                    const float *P = tables + (pixel * (size_t)ic + (size_t)c) * (size_t)w->table_stride;
                    const uint8_t *codes = w->codes + ((size_t)t * (size_t)ic + (size_t)c) * FM_KERNEL_BLOCK;
                    const size_t block_codes = (size_t)w->taps * (size_t)ic * FM_KERNEL_BLOCK;
                    for (int j = 0; j < oc; j++) {
                        uint8_t code = codes[(size_t)(j / FM_KERNEL_BLOCK) * block_codes + (size_t)(j % FM_KERNEL_BLOCK)];
                        acc[j] += with_sign(P[code & 0x7fu], code >> 7);
                    }
                }
                break;
            case FM_DW_FP32:
            default:
                break;
            }
        }
}

void fmi_conv_real_ref(const fm_conv_weights *w, const float *x, float *acc, float *scratch,
                       const fm_conv_signs *signs)
{
    float *tables = fmi_kernel_scratch_align(scratch);
    if (w->weights == FM_DW_SYNAPSE)
        synapse_products(w, x, tables);
    else if (w->weights == FM_DW_BINARY || w->weights == FM_DW_TERNARY)
        group_tables(w, x, tables);
    uint64_t taps = 0;
    for (int oy = 0; oy < w->out_h; oy++)
        for (int ox = 0; ox < w->out_w; ox++) {
            fm_conv_window v = fmi_conv_window(w, oy, ox);
            position_real(w, tables, &v, acc + ((size_t)oy * w->out_w + (size_t)ox) * w->out_c);
            taps += (uint64_t)(v.ky1 - v.ky0) * (uint64_t)(v.kx1 - v.kx0);
        }
    /* counting builds, as the dense kernels count (infer_ref.c): per pixel and
     * group a table (16 sign selects, 24 adds), per valid tap, group and
     * output each lookup among 16 entries (15 selects) and its add; synapse
     * the products, and per term a lookup, the sign flip and the add */
    const uint64_t pixels = (uint64_t)w->in_h * (uint64_t)w->in_w, oc = (uint64_t)w->out_c;
    if (w->weights == FM_DW_SYNAPSE) {
        const uint64_t terms = taps * (uint64_t)w->in_c * oc;
        FM_TALLY(FM_OP_FMUL, pixels * (uint64_t)w->in_c * (uint64_t)w->table_stride);
        FM_TALLY(FM_OP_SIGN, terms * (uint64_t)w->table_stride);
        FM_TALLY(FM_OP_FADD, terms);
        (void)terms;
    } else if (w->weights != FM_DW_FP32) {
        const uint64_t groups = (uint64_t)w->groups, lookups = (uint64_t)w->sets;
        FM_TALLY(FM_OP_SIGN, pixels * groups * 16 + taps * groups * oc * lookups * 15);
        FM_TALLY(FM_OP_FADD, pixels * groups * 24 + taps * groups * oc * lookups);
        (void)groups;
        (void)lookups;
    }
    (void)pixels;
    (void)oc;
    if (signs)
        fmi_signs_float_ref(acc, (size_t)w->out_h * (size_t)w->out_w, w->out_c, signs->flo, signs->fhi,
                            signs->map);
}

/* ---- binary inputs, binary weights -------------------------------------- */

/* Set bits of v, counted in parallel within v (no multiply), or the popcnt
 * instruction where the build targets it. */
static int popcount32(uint32_t v)
{
#if defined(__POPCNT__) && (defined(__GNUC__) || defined(__clang__))
    return __builtin_popcount(v);
#else
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0f0f0f0fu;
    return (int)((v + (v >> 8) + (v >> 16) + (v >> 24)) & 0x3fu);
#endif
}

void fmi_conv_bits_ref(const fm_conv_weights *w, const uint64_t *a, int32_t *acc,
                       const fm_conv_signs *signs)
{
    const int oc = w->out_c, cw = w->cwords;
    if (w->weights != FM_DW_BINARY) {
        memset(acc, 0, (size_t)w->out_h * w->out_w * (size_t)oc * sizeof *acc);
        if (signs)
            fmi_signs_int_ref(acc, (size_t)w->out_h * (size_t)w->out_w, oc, signs->ilo, signs->ihi, signs->map);
        return;
    }
    for (int oy = 0; oy < w->out_h; oy++)
        for (int ox = 0; ox < w->out_w; ox++) {
            fm_conv_window v = fmi_conv_window(w, oy, ox);
            int32_t *out = acc + ((size_t)oy * w->out_w + (size_t)ox) * oc;
            const int valid = (v.ky1 - v.ky0) * (v.kx1 - v.kx0) * w->in_c;
            for (int j = 0; j < oc; j++) {
                const size_t block = (size_t)(j / FM_KERNEL_BLOCK), lane = (size_t)(j % FM_KERNEL_BLOCK);
                int mismatches = 0; /* valid taps where input and weight differ: -1 each */
                for (int ky = v.ky0; ky < v.ky1; ky++)
                    for (int kx = v.kx0; kx < v.kx1; kx++) {
                        const uint64_t *px =
                            a + ((size_t)(v.iy0 + ky) * w->in_w + (size_t)(v.ix0 + kx)) * cw;
                        const size_t t = (size_t)(ky * w->k_w + kx);
                        const uint32_t *wt = w->words + (block * (size_t)w->taps + t) * (size_t)w->chunks * FM_KERNEL_BLOCK;
                        for (int c = 0; c < w->chunks; c++)
                            mismatches += popcount32(fmi_conv_pixel_chunk(px, c) ^ wt[(size_t)c * FM_KERNEL_BLOCK + lane]);
                    }
                out[j] = valid - 2 * mismatches;
            }
        }
    if (signs)
        fmi_signs_int_ref(acc, (size_t)w->out_h * (size_t)w->out_w, oc, signs->ilo, signs->ihi, signs->map);
}

/* ---- signs into packed maps ------------------------------------------------ */

/* Bit j of each pixel's words: lo[j] <= acc <= hi[j], integer or real sums. */
static void signs_ref(const void *acc, const void *lo, const void *hi, const int integer, size_t positions,
                      int channels, uint64_t *map)
{
    const int cw = fmi_conv_pixel_words(channels);
    for (size_t p = 0; p < positions; p++) {
        uint64_t *words = map + p * (size_t)cw;
        memset(words, 0, (size_t)cw * sizeof *words);
        for (int j = 0; j < channels; j++) {
            const size_t i = p * (size_t)channels + (size_t)j;
            int plus;
            if (integer) {
                const int32_t a = ((const int32_t *)acc)[i];
                plus = ((const int32_t *)lo)[j] <= a && a <= ((const int32_t *)hi)[j];
            } else {
                const float a = ((const float *)acc)[i];
                plus = ((const float *)lo)[j] <= a && a <= ((const float *)hi)[j];
            }
            words[j / 64] |= (uint64_t)plus << (j % 64);
        }
    }
}

void fmi_signs_int_ref(const int32_t *acc, size_t positions, int channels, const int32_t *lo,
                       const int32_t *hi, uint64_t *map)
{
    signs_ref(acc, lo, hi, 1, positions, channels, map);
}

void fmi_signs_float_ref(const float *acc, size_t positions, int channels, const float *lo,
                         const float *hi, uint64_t *map)
{
    signs_ref(acc, lo, hi, 0, positions, channels, map);
}
