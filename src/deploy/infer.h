/* infer.h — the multiplication-free kernels, of deployed layers and of the
 * training path `--exec mulfree` (mulfree.h), in four variants (scalar
 * reference, AVX2 and AVX-512 on x86, NEON on aarch64) that give
 * bit-identical results: every variant builds the same tables with the same
 * additions and adds into each output in the same order; only the width
 * differs.
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
int fmi_kernel_prepare(const fm_deploy_layer *layer, fm_kernel_weights **out);
/* A zeroed layout for an in x out layer of a kind (synapse: `levels` ascending
 * magnitudes, H included), for fmi_kernel_fill to fill. */
int fmi_kernel_layout(fm_deploy_weights kind, int in, int out, int levels, const float *magnitudes,
                     fm_kernel_weights **result);
/* Refills a layout from float weights: weight (input i, output j) is
 * m[i * in_stride + j * out_stride], so a row-major in x out matrix fills the
 * forward layout with (out, 1) and the transposed one (out -> in) with (1, out).
 * Binary: +1 where the sign bit is clear; ternary: +1 above zero, -1 below,
 * 0 for +-0; synapse: |w| must equal one of the magnitudes (else FM_EINVAL),
 * the sign from the sign bit. Large layers are filled by up to `threads`
 * threads, a share of the output blocks each: the same layout for any count. */
int fmi_kernel_fill(fm_kernel_weights *w, const float *m, size_t in_stride, size_t out_stride, int threads);
/* Both layouts of a row-major in x out matrix m at once: forward (in -> out,
 * as fmi_kernel_fill(forward, m, out, 1)) and transposed (out -> in, as
 * fmi_kernel_fill(transposed, m, 1, out); none where transposed is NULL), of
 * the same kind, the same words or codes; binary and ternary in one pass
 * along m's rows, synapse as the fills. */
int fmi_kernel_fill_pair(fm_kernel_weights *forward, fm_kernel_weights *transposed, const float *m,
                         int threads);
/* The threads a fill of `weights` weights in `blocks` output blocks takes, of
 * `threads`: one for a small layer (waking others costs more than they save). */
int fmi_fill_threads(size_t weights, int blocks, int threads);
/* The index of magnitude |v| among `levels` ascending magnitudes, or -1: a
 * search of `steps` = fmi_search_steps(levels - 1) steps (each an add, a
 * compare and a select), then a compare for equality, so every weight costs
 * the same (docs/ledger.md). */
int fmi_kernel_level_of(const float *magnitudes, int levels, float v, int steps);
void fmi_kernel_weights_free(fm_kernel_weights *weights);
/* Floats of scratch one call of `real` needs for this layer. */
size_t fmi_kernel_scratch_floats(const fm_kernel_weights *weights);
/* 64-bit words holding `in` packed +-1 inputs (the bits input of `bits`). */
static inline size_t fmi_kernel_bit_words(int in) { return ((size_t)in + 63) / 64; }

/* A convolution's weights in the layout its kernels read (below), built from
 * its packed rows. */
typedef struct fm_conv_weights fm_conv_weights;
/* Where a sign follows a convolution: the ranges of its sums that give +1
 * (deploy.h) and the packed map its kernel writes the bits into (out_h x
 * out_w pixels of fmi_conv_pixel_words(out_c) words each). */
typedef struct fm_conv_signs {
    const int32_t *ilo, *ihi; /* integer sums (conv_bits) */
    const float *flo, *fhi;   /* real sums (conv_real) */
    uint64_t *map;
} fm_conv_signs;
int fmi_conv_prepare(const fm_deploy_layer *layer, fm_conv_weights **out);
/* A layout with every code zero for a binary, ternary or synapse convolution
 * of geometry g (conv.h; synapse: `levels` ascending magnitudes, H
 * included), for fmi_conv_fill to fill. */
struct fm_conv_geom;
int fmi_conv_layout(fm_deploy_weights kind, const struct fm_conv_geom *g, int levels,
                    const float *magnitudes, fm_conv_weights **out);
/* Refills a layout from float weights m, the rows of a trainer's
 * convolution ((tap, input channel) x output channel, conv.h). transposed =
 * 0: m is this layout's own layer. transposed = 1: m is the layer whose input
 * gradient this layout computes (fmi_mulfree_conv_transpose): its outputs
 * are our inputs, its inputs our outputs, and our tap t is its tap
 * taps - 1 - t (the filter turned by 180 degrees). Codes as fmi_kernel_fill
 * (binary: +1 where the sign bit is clear; ternary: +1 above zero, -1 below,
 * 0 for +-0; synapse: |w| must be a magnitude, else FM_EINVAL). Up to
 * `threads` threads, as fmi_kernel_fill. */
int fmi_conv_fill(fm_conv_weights *w, const float *m, int transposed, int threads);
/* out = the height x width x channels map e with s - 1 zero pixels between
 * neighbours ((height-1)s+1 x (width-1)s+1 x channels): only the pixels at
 * multiples of s are written, so the caller zeroes out once and may reuse it. */
void fmi_conv_dilate(const float *e, int height, int width, int channels, int s, float *out);
void fmi_conv_weights_free(fm_conv_weights *weights);
/* Floats of scratch one call of `conv_real` needs (synapse product tables). */
size_t fmi_conv_kernel_scratch_floats(const fm_conv_weights *weights);
/* 64-bit words holding one pixel's `channels` packed +-1 values. */
static inline int fmi_conv_pixel_words(int channels) { return (channels + 63) / 64; }

typedef struct fm_kernels {
    const char *name; /* "ref", "avx2", "avx512", "neon" */
    /* acc[out] from x[in] real inputs, for a binary, ternary or synapse layer.
     * scratch: fmi_kernel_scratch_floats floats, any alignment. */
    void (*real)(const fm_kernel_weights *w, const float *x, float *acc, float *scratch);
    /* acc[out] from bit-packed +-1 inputs (bit i of word i/64: input i is +1;
     * bits past `in` are zero), for a binary layer. */
    void (*bits)(const fm_kernel_weights *w, const uint64_t *a, int32_t *acc);
    /* The weight gradient of quantized back-prop, rows i0 .. i1-1 of the
     * in x out matrix (one thread's share, or one tile of a fused update),
     * stored from dw on: dw[(i-i0)*out + j] = the sum over b = 0, 1, ..., batch-1, in
     * that order, of q[b*in + i] * e[b*out + j], added one term at a time to an
     * accumulator that starts at +0.0f. Every q is +-0 or +-2^k, and the caller
     * has checked fmi_pow2_grad_exact(), so every product is exact: a nonzero
     * term is e's bit pattern plus (k << 23) plus q's sign bit, one integer add
     * (the exponent add and the sign flip; no multiply). A term with q = +-0 or
     * e = +-0 is a zero (of either sign: an accumulator that starts at +0.0f
     * is never -0.0f, so the sign of a zero term never shows). */
    void (*pow2_grad)(const float *q, const float *e, float *dw, int batch, int in, int out,
                      int i0, int i1);
    /* A convolution of one example's real input map x (in_h x in_w x in_c,
     * channel last) into acc (out_h x out_w x out_c), binary, ternary or
     * synapse weights, as below ("Convolutions"). scratch:
     * fmi_conv_kernel_scratch_floats floats, any alignment. With `signs`
     * (a sign convolution), the output bits go to signs->map instead, as
     * signs_float gives them from the sums (flo, fhi), and acc is scratch. */
    void (*conv_real)(const fm_conv_weights *w, const float *x, float *acc, float *scratch,
                      const fm_conv_signs *signs);
    /* A binary convolution of one example's +-1 input map, packed per pixel
     * (fmi_conv_pixel_words(in_c) words, bit c: channel c is +1; bits past
     * in_c zero), into exact integer sums: acc[p, j] = n_valid - 2 *
     * popcount((a xor w) over the valid taps), n_valid = in_c times the taps
     * of the window inside the input (the trainer pads with zeros, which add
     * nothing; a padded tap is left out, not counted as -1). With `signs`,
     * the bits as signs_int gives them (ilo, ihi) go to signs->map instead. */
    void (*conv_bits)(const fm_conv_weights *w, const uint64_t *a, int32_t *acc,
                      const fm_conv_signs *signs);
    /* The packed +-1 map of `positions` pixels of `channels` (pixel words as
     * conv_bits reads them, bits past `channels` zero) from the sums acc
     * (positions x channels): channel j is +1 where lo[j] <= acc <= hi[j]
     * (a sign convolution's ranges, deploy.h), integer or real sums (a NaN
     * is in no range). */
    void (*signs_int)(const int32_t *acc, size_t positions, int channels, const int32_t *lo,
                      const int32_t *hi, uint64_t *map);
    void (*signs_float)(const float *acc, size_t positions, int channels, const float *lo,
                        const float *hi, uint64_t *map);
    /* Sums of shifted slices of a convolution's Q(x) maps, the inner loop of
     * its weight gradient taken straight from the maps (mulfree.c, "the
     * weight gradient from the maps"); NULL where a variant has none (the
     * caller then forms pow2_grad's sums over im2col columns, the same bits).
     * For s < slices and c < 64: dw[64 s + c] = the sum over t = 0, 1, ...,
     * n_terms - 1, in that order, of q[terms[2t] + slice_at[s] + c] times the
     * e whose bits are terms[2t + 1] + the bits of 1.0f (never +-0), each
     * term formed by one integer add as in pow2_grad, a zero q adding
     * nothing, into an accumulator that starts at +0.0f, or with `from` at
     * from[64 s + c] (the sum that earlier terms left: a list cut in pieces
     * gives the whole list's bits); stored, or with `accumulate` added to
     * what dw holds (one float add). `from` may be dw. */
    void (*conv_pow2_grad)(const float *q, const int32_t *terms, int n_terms,
                           const int32_t *slice_at, int slices, const float *from, float *dw,
                           int accumulate);
    /* conv_pow2_grad with the maps given as one byte per value of q, a
     * quarter of the bytes that a window brings into the caches (the float
     * maps' kernel waits on them); NULL where a variant has none. The byte of
     * q = +-0 is 0; of q = +-2^k, 1 + (k + 127 - field_lo) + 16 (q < 0):
     * exponent fields field_lo .. field_lo + 14 (FM_GRAD_CODE_SPAN). The
     * bytes of each 64 values of q (a slice; the map starts 64-byte aligned)
     * are interleaved: value 16 v + c at byte 4 c + v, so that one load holds
     * the slice and a shift by 8 v brings value 16 v + c's byte to the bottom
     * of lane c (fmi_grad_codes_fill). A term is the entry of its byte in a
     * table of its e's 30 products and two zeros: the bits of every product
     * as conv_pow2_grad's integer add forms them, and a zero term adds +0.0f
     * (no change to an accumulator that is never -0.0f). The same bits. */
    void (*conv_pow2_grad_codes)(const uint8_t *codes, int field_lo, const int32_t *terms,
                                 int n_terms, const int32_t *slice_at, int slices,
                                 const float *from, float *dw, int accumulate);
} fm_kernels;

/* Weights of one slice of conv_pow2_grad. */
#define FM_GRAD_SLICE 64
/* Most slices one conv_pow2_grad call takes. */
#define FM_GRAD_SLICES 6
/* The widest spread of q's exponent fields (largest less smallest) that
 * conv_pow2_grad_codes takes: 15 exponents a sign, and a zero. */
#define FM_GRAD_CODE_SPAN 14

/* The bytes conv_pow2_grad_codes reads for the n values of q (n a multiple
 * of 64; codes 64-byte aligned), as that kernel lays them out; every nonzero
 * q is +-2^k with an exponent field in field_lo .. field_lo +
 * FM_GRAD_CODE_SPAN. Up to `threads` threads. */
void fmi_grad_codes_fill(const float *q, size_t n, int field_lo, uint8_t *codes, int threads);

/* The lists of the SIMD pow2_grad kernels (infer_avx2.c, infer_avx512.c):
 * for each of up to FM_LIST_ROWS rows (inputs) and FM_LIST_CHUNK examples,
 * the examples whose q is nonzero, in order, each as its row in the kernel's
 * tile of e (`at`) and the code added to e's bits (q's bits - those of
 * 1.0f), so that the zeros of Q(x) (half of a hidden layer's, the ReLU's)
 * cost nothing. 60 rows: ten of the blocked kernels' 6-row blocks. */
#define FM_LIST_ROWS 60
#define FM_LIST_CHUNK 32
typedef struct fm_grad_lists {
    int32_t at[FM_LIST_ROWS][FM_LIST_CHUNK];
    int32_t code[FM_LIST_ROWS][FM_LIST_CHUNK];
    int count[FM_LIST_ROWS];
} fm_grad_lists;

/* The lists of rows r0 .. r0 + rows - 1 (rows <= FM_LIST_ROWS) of q (rows
 * of `in`) over examples b0 .. b0 + nb - 1 (nb <= FM_LIST_CHUNK), example b's
 * tile row at b * tile_row. */
void fmi_grad_lists_fill(fm_grad_lists *ls, const float *q, int in, int b0, int nb, int r0, int rows,
                         int32_t tile_row);

/* 1 when every product pow2_grad would form from these q (batch x in) and e
 * (batch x out) is exact as an exponent add: each nonzero q is +-2^k with a
 * normal exponent, each nonzero e is a finite float with a normal exponent
 * (no subnormal, infinity or NaN), and min exponent(e) + min k and max
 * exponent(e) + max k stay in the normal range. Otherwise 0, and the caller
 * forms the products with ldexpf (fmi_ref_dense_backward_weights). Scanned
 * by up to `threads` threads (large q and e); the answer does not depend on
 * how many. */
int fmi_pow2_grad_exact(const float *q, size_t q_count, const float *e, size_t e_count, int threads);
/* As fmi_pow2_grad_exact, and with q_fields, the smallest exponent field of
 * q's nonzero values in q_fields[0] and the largest in q_fields[1] (255 and
 * 0 where every q is zero), from the same scan. */
int fmi_pow2_grad_exact_fields(const float *q, size_t q_count, const float *e, size_t e_count, int threads,
                               int q_fields[2]);

/* The variant called `name` ("ref", "avx2", "avx512", "neon"): FM_OK, FM_EINVAL for an
 * unknown name, FM_EUNSUPPORTED where this CPU or build lacks it. */
int fmi_kernels_get(const char *name, const fm_kernels **out);
/* The variant to use by default: FEWMUL_KERNELS when set (FM_EINVAL, naming
 * the variable, for an unknown variant and for one this CPU or build lacks),
 * else the best this CPU supports (cpuid; neon on aarch64). */
int fmi_kernels_default(const fm_kernels **out);
/* Variants this CPU and build support, best last; NULL past the end. */
const fm_kernels *fmi_kernels_supported(int index);

/* Packs +-1 activations given as floats (>= 0 means +1) into bits as `bits` reads them. */
void fmi_pack_signs(const float *x, int n, uint64_t *a);

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
    void *layout;              /* words or codes, writable (fmi_kernel_fill); its allocation */
    size_t layout_bytes;       /* bytes of words or codes, without the tail */
};

/* ---- convolutions (infer_conv.c) ------------------------------------------
 * Maps are channel last: value (y, x, c) of an h x w x c map at (y * w + x) *
 * c + c. Output (oy, ox)'s window has tap t = ky * k_w + kx on input pixel
 * (oy * stride - pad_top + ky, ox * stride - pad_left + kx); taps outside the
 * input are padding and are skipped whole (the trainer pads with zeros, which
 * add nothing). Every output adds its terms over the valid taps in (ky, kx)
 * order, one add at a time from +0.0f:
 *   binary, ternary (group lookup, as the dense kernels): a tap's channels in
 *            groups of four, 4g .. 4g+3, the last group of a tap padded with
 *            +0.0f inputs whose weight bits are 0. The tables T (binary) and S
 *            (ternary) of infer.h's top comment are formed once per example
 *            for every input pixel and group, and output j adds, per valid
 *            tap and group g = 0, 1, ...: binary acc += T[n], ternary
 *            acc += S[pos]; acc -= S[neg], n, pos and neg its 4-bit patterns
 *            of the group (bit k: channel 4g + k). A weight costs a quarter
 *            of an add (ternary a half) and no multiply.
 *   synapse: per valid tap and channel c, acc += +-P[level], P the product
 *            table of that input value (formed once per example: N
 *            multiplies per input value, not per weight nor per window).
 *   binary inputs (conv_bits): acc = n_valid - 2 * popcount of (input xor
 *            weight) over the valid taps' channel words: exact integers.
 * Layout: outputs in blocks of FM_KERNEL_BLOCK (16; the padding outputs of
 * the last block have zero codes and their results are not stored), a tap's
 * channels in chunks of 32, one 32-bit word per output (nibble k of the word
 * of chunk c: group 8c + k):
 *   binary, ternary: words[(((block * taps + t) * chunks + c) * sets + s) * 16
 *            + lane] holds bits 32c .. 32c+31 of tap t's channels of output
 *            16 * block + lane: s = 0 the +1 weights (binary: a clear bit is
 *            -1), s = 1 the -1 weights of a ternary layer (sets = 2). The
 *            binary words are also what conv_bits xors with a pixel's 32-bit
 *            channel chunks.
 *   synapse: codes[((block * taps + t) * in_c + c) * 16 + lane] = level index
 *            | sign << 7, one byte per weight;
 *   fp32:    w[j * fan_in + t * in_c + c] (the layer's own rows).
 * Bits past in_c are zero. words and codes start 64-byte aligned and are
 * followed by FM_KERNEL_TAIL readable bytes, so a variant may load a whole
 * vector at any byte offset of the last chunk. The scratch of conv_real holds
 * the tables of every input pixel: binary, ternary ((pixel * groups + g) *
 * 16 + b), synapse ((pixel * in_c + c) * table_stride + level), 64-byte
 * aligned (fmi_kernel_scratch_align). */
struct fm_conv_weights {
    fm_deploy_weights weights;
    int in_h, in_w, in_c, k_h, k_w, stride, pad_top, pad_left, out_h, out_w, out_c;
    int taps;                  /* k_h * k_w */
    int fan_in;                /* taps * in_c */
    int cwords;                /* fmi_conv_pixel_words(in_c) */
    int cwords_out;            /* fmi_conv_pixel_words(out_c) */
    int blocks;                /* ceil(out_c / 16) */
    int chunks;                /* ceil(in_c / 32): 32-bit channel words per tap */
    int groups;                /* ceil(in_c / 4): groups of 4 channels per tap */
    int sets;                  /* binary 1, ternary 2 */
    int levels, table_stride;  /* synapse: magnitudes, floats per product table */
    float magnitudes[FM_KERNEL_MAX_LEVELS];
    const uint32_t *words;     /* binary, ternary */
    const uint8_t *codes;      /* synapse */
    const float *w;            /* fp32 */
    void *layout;              /* words or codes, writable (fmi_conv_fill); its allocation */
    size_t layout_bytes;       /* bytes of words or codes, without the tail */
};

/* Taps [ky0, ky1) x [kx0, kx1) of output (oy, ox)'s window lie inside the
 * input; (iy0, ix0) is the input pixel of tap (0, 0). */
typedef struct fm_conv_window {
    int iy0, ix0, ky0, ky1, kx0, kx1;
} fm_conv_window;

static inline fm_conv_window fmi_conv_window(const fm_conv_weights *w, int oy, int ox)
{
    fm_conv_window v;
    v.iy0 = oy * w->stride - w->pad_top;
    v.ix0 = ox * w->stride - w->pad_left;
    v.ky0 = v.iy0 < 0 ? -v.iy0 : 0;
    v.kx0 = v.ix0 < 0 ? -v.ix0 : 0;
    v.ky1 = w->in_h - v.iy0 < w->k_h ? w->in_h - v.iy0 : w->k_h;
    v.kx1 = w->in_w - v.ix0 < w->k_w ? w->in_w - v.ix0 : w->k_w;
    if (v.ky1 < v.ky0)
        v.ky1 = v.ky0;
    if (v.kx1 < v.kx0)
        v.kx1 = v.kx0;
    return v;
}

/* The output columns [*first, *end) whose windows have all k_w columns
 * inside the input: there a row of positions shares its taps, so a variant
 * may run several positions at once. */
static inline void fmi_conv_full_columns(const fm_conv_weights *w, int *first, int *end)
{
    int lo = (w->pad_left + w->stride - 1) / w->stride;
    int room = w->in_w + w->pad_left - w->k_w;
    int hi = room < 0 ? 0 : room / w->stride + 1;
    hi = hi < w->out_w ? hi : w->out_w;
    *first = lo < hi ? lo : hi;
    *end = hi;
}

/* Channel chunk c (32 channels) of a packed pixel. */
static inline uint32_t fmi_conv_pixel_chunk(const uint64_t *pixel, int c)
{
    return (uint32_t)(pixel[c / 2] >> (32 * (c % 2)));
}

/* The reference convolution kernels (infer_conv.c): the specification. */
void fmi_conv_real_ref(const fm_conv_weights *w, const float *x, float *acc, float *scratch,
                       const fm_conv_signs *signs);
void fmi_conv_bits_ref(const fm_conv_weights *w, const uint64_t *a, int32_t *acc,
                       const fm_conv_signs *signs);
void fmi_signs_int_ref(const int32_t *acc, size_t positions, int channels, const int32_t *lo,
                       const int32_t *hi, uint64_t *map);
void fmi_signs_float_ref(const float *acc, size_t positions, int channels, const float *lo,
                         const float *hi, uint64_t *map);
/* The group tables of infer.h's top comment, of four inputs v (infer_ref.c). */
void fmi_binary_table(const float v[4], float T[16]);
void fmi_subset_table(const float v[4], float S[16]);

/* The variants' entry points (infer_ref.c, infer_avx2.c, infer_avx512.c,
 * infer_neon.c). A SIMD file built without its instruction set (not its
 * architecture, or a compiler without
 * the flags) returns NULL from its table function; the caller still checks the
 * CPU before using one. `bits` of a layer that is not binary writes zeros. */
void fmi_infer_real_ref(const fm_kernel_weights *w, const float *x, float *acc, float *scratch);
void fmi_infer_bits_ref(const fm_kernel_weights *w, const uint64_t *a, int32_t *acc);
void fmi_pow2_grad_ref(const float *q, const float *e, float *dw, int batch, int in, int out, int i0,
                      int i1);
const fm_kernels *fmi_kernels_avx2_table(void);
/* with_vpopcntdq: the `bits` kernel may use VPOPCNTDQ (else a vpshufb count). */
const fm_kernels *fmi_kernels_avx512_table(int with_vpopcntdq);
/* infer_neon.c: NULL unless built for aarch64 (every ARMv8-A CPU has NEON). */
const fm_kernels *fmi_kernels_neon_table(void);

/* The 64-byte-aligned start of a scratch buffer of fmi_kernel_scratch_floats
 * floats (which include the slack for this). */
static inline float *fmi_kernel_scratch_align(float *scratch)
{
    uintptr_t p = (uintptr_t)scratch;
    return scratch + ((64 - p % 64) % 64) / sizeof(float);
}

#endif
