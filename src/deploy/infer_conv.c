/* infer_conv.c — the convolution kernels of deployed networks: the layout
 * (infer.h, struct fm_conv_weights) built once per layer from its packed rows,
 * and the scalar reference kernels, which are the specification: real inputs
 * times binary, ternary or synapse weights as sums of signed inputs (no
 * multiply per weight), and binary inputs times binary weights as xor and
 * popcount over bit-packed channels. The window runs over the taps inside the
 * input only: the trainer pads with zeros, and a zero adds nothing. */
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
    fmi_free(w->allocation);
    fmi_free(w);
}

size_t fmi_conv_kernel_scratch_floats(const fm_conv_weights *w)
{
    if (!w || w->weights != FM_DW_SYNAPSE)
        return 0;
    return (size_t)w->in_h * (size_t)w->in_w * (size_t)w->in_c * (size_t)w->table_stride;
}

int fmi_conv_prepare(const fm_deploy_layer *L, fm_conv_weights **out)
{
    *out = NULL;
    if (L->type != FM_DL_CONV || !L->packed)
        return fmi_error(FM_EINVAL, "convolution layout of a record without convolution weights");
    fm_conv_weights *w = fmi_alloc(1, sizeof *w);
    if (!w)
        return FM_ENOMEM;
    w->weights = L->weights;
    w->in_h = L->in_h, w->in_w = L->in_w, w->in_c = L->in_c;
    w->k_h = L->k_h, w->k_w = L->k_w, w->stride = L->stride;
    w->pad_top = L->pad_top, w->pad_left = L->pad_left;
    w->out_h = L->out_h, w->out_w = L->out_w, w->out_c = L->out_c;
    w->taps = L->k_h * L->k_w;
    w->fan_in = L->in;
    w->cwords = fmi_conv_pixel_words(L->in_c);
    const size_t rows = (size_t)L->out_c * (size_t)w->taps;
    int rc = FM_OK;
    switch (L->weights) {
    case FM_DW_FP32:
        w->w = (const float *)(const void *)L->packed;
        break;
    case FM_DW_BINARY:
    case FM_DW_TERNARY: {
        const size_t words = rows * (size_t)w->cwords, sets = L->weights == FM_DW_TERNARY ? 2 : 1;
        uint64_t *bits = fmi_alloc(words * sets, sizeof *bits);
        if (!bits) {
            rc = FM_ENOMEM;
            break;
        }
        w->allocation = bits;
        for (int j = 0; j < L->out_c; j++)
            for (int i = 0; i < L->in; i++) {
                const uint32_t code = fmi_deploy_code(L, j, i);
                const int t = i / L->in_c, c = i % L->in_c;
                const size_t at = ((size_t)j * w->taps + (size_t)t) * w->cwords + (size_t)(c / 64);
                const uint64_t bit = (uint64_t)1 << (c % 64);
                if (code == 1u) /* +1 in both kinds */
                    bits[at] |= bit;
                else if (L->weights == FM_DW_TERNARY && code == 3u)
                    bits[words + at] |= bit;
                else if (L->weights == FM_DW_TERNARY && code != 0u)
                    rc = fmi_error(FM_EINVAL, "ternary weight (%d, %d) has the invalid code %u", i,
                                  j, code);
            }
        w->pos = bits;
        w->neg = L->weights == FM_DW_TERNARY ? bits + words : NULL;
        break;
    }
    case FM_DW_SYNAPSE: {
        if (L->levels < 2 || L->levels > FM_KERNEL_MAX_LEVELS) {
            rc = fmi_error(FM_EINVAL, "synapse layer with %d levels (2 .. %d)", L->levels,
                           FM_KERNEL_MAX_LEVELS);
            break;
        }
        uint8_t *codes = fmi_alloc(rows * (size_t)L->in_c, 1);
        if (!codes) {
            rc = FM_ENOMEM;
            break;
        }
        w->allocation = codes;
        w->levels = L->levels;
        w->table_stride = L->levels <= 16 ? 16 : 32;
        memcpy(w->magnitudes, L->magnitudes, (size_t)L->levels * sizeof(float));
        const uint32_t index_mask = (1u << (L->bits - 1)) - 1u;
        for (int j = 0; j < L->out_c; j++)
            for (int i = 0; i < L->in; i++) {
                const uint32_t code = fmi_deploy_code(L, j, i);
                const uint32_t index = code & index_mask, negative = code >> (L->bits - 1);
                if (index >= (uint32_t)L->levels)
                    rc = fmi_error(FM_EINVAL, "synapse weight (%d, %d) has level %u of %d", i, j,
                                   index, L->levels);
                codes[(size_t)j * L->in + (size_t)i] = (uint8_t)(index | negative << 7);
            }
        w->codes = codes;
        break;
    }
    default:
        rc = fmi_error(FM_EINVAL, "unknown weight kind %d", (int)L->weights);
    }
    if (rc < 0) {
        fmi_conv_weights_free(w);
        return rc;
    }
    *out = w;
    return FM_OK;
}

/* ---- the window ---------------------------------------------------------- */

/* Taps [ky0, ky1) x [kx0, kx1) of the window of output (oy, ox) lie inside
 * the input; the rest are padding. */
typedef struct window {
    int iy0, ix0;             /* input row and column of tap (0, 0) */
    int ky0, ky1, kx0, kx1;
} window;

static window window_at(const fm_conv_weights *w, int oy, int ox)
{
    window v;
    v.iy0 = oy * w->stride - w->pad_top;
    v.ix0 = ox * w->stride - w->pad_left;
    v.ky0 = FM_MAX(0, -v.iy0);
    v.kx0 = FM_MAX(0, -v.ix0);
    v.ky1 = FM_MIN(w->k_h, w->in_h - v.iy0);
    v.kx1 = FM_MIN(w->k_w, w->in_w - v.ix0);
    return v;
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

/* The terms of one output position, every output channel at once: the taps
 * outside, the channels, then the outputs inside, so each output still adds
 * its terms in (ky, kx, c) order. */
static void position_real(const fm_conv_weights *w, const float *x, const float *tables,
                          const window *v, float *acc)
{
    const int oc = w->out_c, ic = w->in_c, cw = w->cwords;
    for (int j = 0; j < oc; j++)
        acc[j] = 0.0f;
    for (int ky = v->ky0; ky < v->ky1; ky++)
        for (int kx = v->kx0; kx < v->kx1; kx++) {
            const int t = ky * w->k_w + kx;
            const size_t pixel = (size_t)(v->iy0 + ky) * (size_t)w->in_w + (size_t)(v->ix0 + kx);
            const float *px = x + pixel * (size_t)ic;
            for (int c = 0; c < ic; c++) {
                const size_t word = (size_t)t * (size_t)cw + (size_t)(c / 64);
                const unsigned shift = (unsigned)(c % 64);
                switch (w->weights) {
                case FM_DW_BINARY:
                    for (int j = 0; j < oc; j++) {
                        unsigned plus = (unsigned)(w->pos[(size_t)j * w->taps * cw + word] >> shift) & 1u;
                        acc[j] += with_sign(px[c], plus ^ 1u);
                    }
                    break;
                case FM_DW_TERNARY:
                    for (int j = 0; j < oc; j++) {
                        size_t at = (size_t)j * w->taps * cw + word;
                        if ((w->pos[at] >> shift) & 1u)
                            acc[j] += px[c];
                        else if ((w->neg[at] >> shift) & 1u)
                            acc[j] -= px[c];
                    }
                    break;
                case FM_DW_SYNAPSE: {
                    const float *P = tables + (pixel * (size_t)ic + (size_t)c) * (size_t)w->table_stride;
                    for (int j = 0; j < oc; j++) {
                        uint8_t code = w->codes[(size_t)j * w->fan_in + (size_t)t * ic + (size_t)c];
                        acc[j] += with_sign(P[code & 0x7fu], code >> 7);
                    }
                    break;
                }
                case FM_DW_FP32:
                default:
                    break;
                }
            }
        }
}

void fmi_conv_real_ref(const fm_conv_weights *w, const float *x, float *acc, float *scratch)
{
    const float *tables = NULL;
    if (w->weights == FM_DW_SYNAPSE) {
        synapse_products(w, x, scratch);
        tables = scratch;
    }
    uint64_t terms = 0;
    for (int oy = 0; oy < w->out_h; oy++)
        for (int ox = 0; ox < w->out_w; ox++) {
            window v = window_at(w, oy, ox);
            position_real(w, x, tables, &v, acc + ((size_t)oy * w->out_w + (size_t)ox) * w->out_c);
            terms += (uint64_t)FM_MAX(0, v.ky1 - v.ky0) * (uint64_t)FM_MAX(0, v.kx1 - v.kx0);
        }
    /* counting builds: per term a sign select and an add; synapse the products */
    terms *= (uint64_t)w->in_c * (uint64_t)w->out_c;
    FM_TALLY(FM_OP_SIGN, terms);
    FM_TALLY(FM_OP_FADD, terms);
    FM_TALLY(FM_OP_FMUL, w->weights == FM_DW_SYNAPSE ? fmi_conv_kernel_scratch_floats(w) : 0);
    (void)terms;
}

/* ---- binary inputs, binary weights -------------------------------------- */

/* Set bits of v, counted in parallel within v (no multiply), or the popcnt
 * instruction where the build targets it. */
static int popcount64(uint64_t v)
{
#if defined(__POPCNT__) && (defined(__GNUC__) || defined(__clang__))
    return __builtin_popcountll(v);
#else
    v = v - ((v >> 1) & 0x5555555555555555u);
    v = (v & 0x3333333333333333u) + ((v >> 2) & 0x3333333333333333u);
    v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fu;
    v = v + (v >> 8);
    v = v + (v >> 16);
    v = v + (v >> 32);
    return (int)(v & 0x7fu);
#endif
}

void fmi_conv_bits_ref(const fm_conv_weights *w, const uint64_t *a, int32_t *acc)
{
    const int oc = w->out_c, cw = w->cwords;
    if (w->weights != FM_DW_BINARY) {
        memset(acc, 0, (size_t)w->out_h * w->out_w * (size_t)oc * sizeof *acc);
        return;
    }
    for (int oy = 0; oy < w->out_h; oy++)
        for (int ox = 0; ox < w->out_w; ox++) {
            window v = window_at(w, oy, ox);
            int32_t *out = acc + ((size_t)oy * w->out_w + (size_t)ox) * oc;
            const int valid = FM_MAX(0, v.ky1 - v.ky0) * FM_MAX(0, v.kx1 - v.kx0) * w->in_c;
            for (int j = 0; j < oc; j++) {
                const uint64_t *wj = w->pos + (size_t)j * w->taps * cw;
                int mismatches = 0; /* valid taps where input and weight differ: -1 each */
                for (int ky = v.ky0; ky < v.ky1; ky++)
                    for (int kx = v.kx0; kx < v.kx1; kx++) {
                        const uint64_t *px =
                            a + ((size_t)(v.iy0 + ky) * w->in_w + (size_t)(v.ix0 + kx)) * cw;
                        const uint64_t *wt = wj + (size_t)(ky * w->k_w + kx) * cw;
                        for (int k = 0; k < cw; k++)
                            mismatches += popcount64(px[k] ^ wt[k]);
                    }
                out[j] = valid - 2 * mismatches;
            }
        }
}
