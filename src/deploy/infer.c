/* infer.c — what the inference kernel variants share: the prepared weight
 * layout (built here once per layer from its packed rows, read by every
 * variant), the scratch size, packing of +-1 activations, and the choice of
 * variant: by name, by FEWMUL_KERNELS, or the best the CPU supports (cpuid on
 * x86; NEON on every aarch64). */
#include "infer.h"
#include "internal.h"
#include "ledger.h"
#include "quant.h"

#include <math.h>
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
            uint32_t code = fmi_deploy_code(L, j, i);
            if (code == 0)
                continue;
            if (code == 2)
                return fmi_error(FM_EINVAL, "ternary weight (%d, %d) has the invalid code 2", i, j);
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
            uint32_t code = fmi_deploy_code(L, j, i);
            uint32_t index = code & index_mask, negative = code >> (L->bits - 1);
            if (index >= (uint32_t)L->levels)
                return fmi_error(FM_EINVAL, "synapse weight (%d, %d) has level %u of %d", i, j,
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

int fmi_kernel_layout(fm_deploy_weights kind, int in, int out, int levels, const float *magnitudes,
                     fm_kernel_weights **result)
{
    *result = NULL;
    if (kind != FM_DW_BINARY && kind != FM_DW_TERNARY && kind != FM_DW_SYNAPSE)
        return fmi_error(FM_EINVAL, "only binary, ternary and synapse layers have packed kernels");
    if (in < 1 || out < 1)
        return fmi_error(FM_EINVAL, "kernel layout of a %d x %d layer", in, out);
    if (kind == FM_DW_SYNAPSE && (levels < 2 || levels > FM_KERNEL_MAX_LEVELS || !magnitudes))
        return fmi_error(FM_EINVAL, "synapse layer with %d levels (2 .. %d)", levels,
                        FM_KERNEL_MAX_LEVELS);

    fm_kernel_weights *w = fmi_alloc(1, sizeof *w);
    if (!w)
        return FM_ENOMEM;
    w->weights = kind;
    w->in = in;
    w->out = out;
    w->blocks = (out + FM_KERNEL_BLOCK - 1) / FM_KERNEL_BLOCK;
    w->groups = (in + FM_KERNEL_GROUP - 1) / FM_KERNEL_GROUP;
    w->chunks = (in + FM_KERNEL_CHUNK - 1) / FM_KERNEL_CHUNK;

    /* bytes of the layout (the tail padding and alignment slack come on top) */
    size_t per_block;
    if (kind == FM_DW_SYNAPSE) {
        w->levels = levels;
        w->table_stride = levels <= 16 ? 16 : 32;
        memcpy(w->magnitudes, magnitudes, (size_t)levels * sizeof(float));
        per_block = checked_madd((size_t)in, FM_KERNEL_BLOCK, 0);
    } else {
        size_t words_per_chunk = kind == FM_DW_TERNARY ? 2 * FM_KERNEL_BLOCK : FM_KERNEL_BLOCK;
        per_block = checked_madd((size_t)w->chunks, words_per_chunk * sizeof(uint32_t), 0);
    }
    size_t layout = per_block ? checked_madd((size_t)w->blocks, per_block, 0) : 0;
    size_t total = layout ? checked_madd(1, layout, FM_KERNEL_TAIL) : 0;
    if (!total) {
        fmi_free(w);
        return fmi_error(FM_ENOMEM, "kernel layout of a %d x %d layer overflows", in, out);
    }
    w->layout = fmi_alloc_raw(total); /* on a cache line, as every buffer (FM_ALLOC_ALIGN) */
    if (!w->layout) {
        fmi_free(w);
        return FM_ENOMEM;
    }
    w->layout_bytes = layout;
    memset(w->layout, 0, layout + FM_KERNEL_TAIL); /* padding outputs and inputs: code 0 */
    if (kind == FM_DW_SYNAPSE)
        w->codes = w->layout;
    else
        w->words = w->layout;
    *result = w;
    return FM_OK;
}

int fmi_kernel_prepare(const fm_deploy_layer *L, fm_kernel_weights **out)
{
    *out = NULL;
    if (!L->packed)
        return fmi_error(FM_EINVAL, "kernel layout of a %d x %d layer without weights", L->in, L->out);
    int want_bits = L->weights == FM_DW_BINARY ? 1 : 2;
    if (L->weights == FM_DW_SYNAPSE)
        want_bits = (int)fmi_weight_bits(FM_WEIGHTS_SYNAPSE, L->levels); /* sign + index */
    fm_kernel_weights *w;
    int rc = fmi_kernel_layout(L->weights, L->in, L->out, L->levels, L->magnitudes, &w);
    if (rc < 0)
        return rc;
    if (L->bits != want_bits) {
        fmi_kernel_weights_free(w);
        return fmi_error(FM_EINVAL, "layer stores %d bits per weight (expected %d)", L->bits, want_bits);
    }
    if (L->weights == FM_DW_BINARY)
        fill_binary(L, w, w->layout);
    else if (L->weights == FM_DW_TERNARY)
        rc = fill_ternary(L, w, w->layout);
    else
        rc = fill_synapse(L, w, w->layout);
    if (rc < 0) {
        fmi_kernel_weights_free(w);
        return rc;
    }
    *out = w;
    return FM_OK;
}

/* ---- filling a layout from float weights (training's --exec mulfree) ------ */

static inline uint32_t float_bits(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
}

/* The codes of up to 32 weights v[t * stride], t < n, bit t for weight t:
 * binary's (sign bit clear) in *plus; ternary's +1s in *plus, -1s in *minus. */
static inline void word_codes(const float *v, size_t stride, int n, int ternary, uint32_t *plus,
                              uint32_t *minus)
{
    uint32_t p = 0, q = 0;
    if (!ternary) {
        for (int t = 0; t < n; t++)
            p |= ((float_bits(v[(size_t)t * stride]) >> 31) ^ 1u) << t;
    } else {
        for (int t = 0; t < n; t++) {
            p |= (uint32_t)(v[(size_t)t * stride] > 0.0f) << t;
            q |= (uint32_t)(v[(size_t)t * stride] < 0.0f) << t;
        }
    }
    *plus = p;
    *minus = q;
}

/* Binary weights of `lanes` outputs for inputs 32c .. 32c + n - 1 (n <= 32):
 * word[lane] bit k set where weight (32c + k, lane) has a clear sign bit. */
static void binary_words(const float *m, size_t in_stride, size_t out_stride, int first_in, int n,
                         int lanes, uint32_t *word)
{
    if (out_stride == 1) { /* the lanes are contiguous: loop over them inside */
        for (int k = 0; k < n; k++) {
            const float *row = m + (size_t)(first_in + k) * in_stride;
            for (int lane = 0; lane < lanes; lane++)
                word[lane] |= ((float_bits(row[lane]) >> 31) ^ 1u) << k;
        }
        return;
    }
    for (int lane = 0; lane < lanes; lane++) { /* the inputs are contiguous */
        uint32_t unused;
        word_codes(m + (size_t)lane * out_stride + (size_t)first_in * in_stride, in_stride, n, 0, &word[lane],
                   &unused);
    }
}

/* Ternary: the +1 bits into pos[lane], the -1 bits into neg[lane]. */
static void ternary_words(const float *m, size_t in_stride, size_t out_stride, int first_in, int n,
                          int lanes, uint32_t *pos, uint32_t *neg)
{
    for (int lane = 0; lane < lanes; lane++)
        word_codes(m + (size_t)lane * out_stride + (size_t)first_in * in_stride, in_stride, n, 1, &pos[lane],
                   &neg[lane]);
}

int fmi_kernel_level_of(const float *magnitudes, int levels, float v, int steps)
{
    float a = fabsf(v);
    int index = 0;
    for (int step = steps > 0 ? 1 << (steps - 1) : 0; step > 0; step >>= 1) {
        int probe = index + step;
        index = probe < levels && magnitudes[probe] <= a ? probe : index;
    }
    return magnitudes[index] == a ? index : -1;
}

/* Weights below which a fill runs on one thread (a 1024 x 1024 layer takes
 * about 0.3 ms alone, most of it reading the floats). */
#define FILL_PARALLEL 65536

int fmi_fill_threads(size_t weights, int blocks, int threads)
{
    return weights >= FILL_PARALLEL && blocks > 1 && threads > 1 ? FM_MIN(threads, blocks) : 1;
}

/* Synapse codes of output block `block`; 0, or 1 where a weight is off the levels. */
static int synapse_block(fm_kernel_weights *w, const float *m, size_t in_stride, size_t out_stride,
                         int steps, int block)
{
    uint8_t *codes = w->layout;
    int off = 0;
    const int first_out = block * FM_KERNEL_BLOCK, lanes = FM_MIN(FM_KERNEL_BLOCK, w->out - first_out);
    for (int lane = 0; lane < lanes; lane++) {
        const int j = first_out + lane;
        for (int i = 0; i < w->in; i++) {
            float v = m[(size_t)i * in_stride + (size_t)j * out_stride];
            int index = fmi_kernel_level_of(w->magnitudes, w->levels, v, steps);
            off |= index < 0;
            codes[((size_t)block * (size_t)w->in + (size_t)i) * FM_KERNEL_BLOCK + (size_t)lane] =
                (uint8_t)((uint32_t)(index < 0 ? 0 : index) | (float_bits(v) >> 31) << 7);
        }
    }
    return off;
}

int fmi_kernel_fill(fm_kernel_weights *w, const float *m, size_t in_stride, size_t out_stride, int threads)
{
    /* output blocks among the threads: each block's codes or words are its
     * own stretch of the layout, zeroed and written by one thread */
    const int shares = fmi_fill_threads((size_t)w->in * (size_t)w->out, w->blocks, threads);
    if (w->weights == FM_DW_SYNAPSE) {
        const int steps = fmi_search_steps(w->levels - 1);
        int off = 0;
#pragma omp parallel for num_threads(shares) schedule(static) if (shares > 1) reduction(| : off)
        for (int block = 0; block < w->blocks; block++) {
            memset((uint8_t *)w->layout + (size_t)block * (size_t)w->in * FM_KERNEL_BLOCK, 0,
                   (size_t)w->in * FM_KERNEL_BLOCK);
            off |= synapse_block(w, m, in_stride, out_stride, steps, block);
        }
        if (off) /* the first weight off the levels, in the order (output, input) */
            for (int j = 0; j < w->out; j++)
                for (int i = 0; i < w->in; i++) {
                    float v = m[(size_t)i * in_stride + (size_t)j * out_stride];
                    if (fmi_kernel_level_of(w->magnitudes, w->levels, v, steps) < 0)
                        return fmi_error(FM_EINVAL, "weight (%d, %d) = %g is not a synapse level", i, j,
                                        (double)v);
                }
        FM_TALLY(FM_OP_IADD, (uint64_t)steps * w->in * w->out);
        FM_TALLY(FM_OP_CMP, (uint64_t)(steps + 1) * w->in * w->out);
        FM_TALLY(FM_OP_SIGN, (uint64_t)steps * w->in * w->out);
        return FM_OK;
    }
    uint32_t *words = w->layout;
    const size_t per_chunk = w->weights == FM_DW_TERNARY ? 2 : 1;
    const size_t block_words = (size_t)w->chunks * per_chunk * FM_KERNEL_BLOCK;
#pragma omp parallel for num_threads(shares) schedule(static) if (shares > 1)
    for (int block = 0; block < w->blocks; block++) {
        int first_out = block * FM_KERNEL_BLOCK;
        int lanes = FM_MIN(FM_KERNEL_BLOCK, w->out - first_out);
        const float *first = m + (size_t)first_out * out_stride;
        memset(words + (size_t)block * block_words, 0, block_words * sizeof *words);
        for (int c = 0; c < w->chunks; c++) {
            int n = FM_MIN(FM_KERNEL_CHUNK, w->in - c * FM_KERNEL_CHUNK);
            uint32_t *at = words + (size_t)block * block_words + (size_t)c * per_chunk * FM_KERNEL_BLOCK;
            if (w->weights == FM_DW_BINARY)
                binary_words(first, in_stride, out_stride, c * FM_KERNEL_CHUNK, n, lanes, at);
            else
                ternary_words(first, in_stride, out_stride, c * FM_KERNEL_CHUNK, n, lanes, at,
                              at + FM_KERNEL_BLOCK);
        }
    }
    /* binary: the sign bit is the code (wiring); ternary: two compares per weight */
    if (w->weights == FM_DW_TERNARY)
        FM_TALLY(FM_OP_CMP, 2 * (uint64_t)w->in * w->out);
    return FM_OK;
}

/* ---- both layouts of a dense layer in one pass over its weights -----------
 * The forward layout wants, for each 32 inputs, a word per output; the
 * transposed one, for each 32 outputs, a word per input. fmi_kernel_fill
 * builds each by output blocks, and for the forward layout that walks the
 * row-major matrix down its columns, a page apart per row (0.4 ms for a
 * 1024 x 1024 binary layer on one thread, against 0.14 ms for the transposed
 * one, which reads along the rows). Here both come from one read along each
 * row: the row's codes go as bit k into its chunk's forward words, gathered
 * 256 outputs at a time in a tile that stays in L1 over the chunk's 32 rows,
 * and as whole words into the row's lane of the transposed layout (0.2 ms for
 * both). The words are those of the two fmi_kernel_fill calls. */

/* Output blocks of a forward chunk's words gathered in a local tile before
 * they are stored: a layout's blocks lie chunks * 64 bytes apart, 2 KB for
 * 1024 inputs, and 64 such lines share two sets of the L1 cache. */
#define PAIR_TILE 16

/* Rows 32c .. 32c + n - 1: chunk c of the forward layout f, and those rows'
 * lanes of the transposed layout t (its blocks 2c and 2c + 1) unless t is NULL. */
static void pair_chunk(fm_kernel_weights *f, fm_kernel_weights *t, const float *m, int c)
{
    const int in = f->in, out = f->out, ternary = f->weights == FM_DW_TERNARY;
    const int per = ternary ? 2 * FM_KERNEL_BLOCK : FM_KERNEL_BLOCK; /* words per chunk of a block */
    const size_t f_block = (size_t)f->chunks * (size_t)per, t_block = t ? (size_t)t->chunks * (size_t)per : 0;
    uint32_t *f_words = (uint32_t *)f->layout + (size_t)c * (size_t)per, *t_words = t ? t->layout : NULL;
    const int n = FM_MIN(FM_KERNEL_CHUNK, in - c * FM_KERNEL_CHUNK);
    uint32_t plus_tile[PAIR_TILE * FM_KERNEL_BLOCK], minus_tile[PAIR_TILE * FM_KERNEL_BLOCK];
    for (int b0 = 0; b0 < f->blocks; b0 += PAIR_TILE) {
        const int blocks = FM_MIN(PAIR_TILE, f->blocks - b0);
        const int j0 = b0 * FM_KERNEL_BLOCK, width = FM_MIN(blocks * FM_KERNEL_BLOCK, out - j0);
        memset(plus_tile, 0, sizeof plus_tile);
        memset(minus_tile, 0, sizeof minus_tile);
        for (int k = 0; k < n; k++) {
            const int i = c * FM_KERNEL_CHUNK + k;
            const float *v = m + (size_t)i * out + j0;
            /* forward: bit k of each output's word; the lanes past out stay zero */
            if (!ternary) {
                for (int j = 0; j < width; j++)
                    plus_tile[j] |= ((float_bits(v[j]) >> 31) ^ 1u) << k;
            } else {
                for (int j = 0; j < width; j++) {
                    plus_tile[j] |= (uint32_t)(v[j] > 0.0f) << k;
                    minus_tile[j] |= (uint32_t)(v[j] < 0.0f) << k;
                }
            }
            /* transposed: row i is lane i % 16 of block i / 16, whole words */
            if (!t)
                continue;
            uint32_t *lane_at = t_words + (size_t)(i / FM_KERNEL_BLOCK) * t_block + (size_t)(i % FM_KERNEL_BLOCK);
            for (int j = 0; j < width; j += FM_KERNEL_CHUNK) {
                uint32_t plus, minus;
                if (width - j >= FM_KERNEL_CHUNK) /* a constant count: the loop vectorizes */
                    word_codes(v + j, 1, FM_KERNEL_CHUNK, ternary, &plus, &minus);
                else
                    word_codes(v + j, 1, width - j, ternary, &plus, &minus);
                uint32_t *at = lane_at + (size_t)((j0 + j) / FM_KERNEL_CHUNK) * (size_t)per;
                at[0] = plus;
                if (ternary)
                    at[FM_KERNEL_BLOCK] = minus;
            }
        }
        for (int b = 0; b < blocks; b++) {
            uint32_t *at = f_words + (size_t)(b0 + b) * f_block;
            memcpy(at, plus_tile + b * FM_KERNEL_BLOCK, FM_KERNEL_BLOCK * sizeof *at);
            if (ternary)
                memcpy(at + FM_KERNEL_BLOCK, minus_tile + b * FM_KERNEL_BLOCK, FM_KERNEL_BLOCK * sizeof *at);
        }
    }
    /* inputs past `in` in the transposed layout's last block: zero lanes */
    for (int i = in; t && c == f->chunks - 1 && i < t->blocks * FM_KERNEL_BLOCK; i++)
        for (int cj = 0; cj < t->chunks; cj++) {
            uint32_t *at = t_words + (size_t)(i / FM_KERNEL_BLOCK) * t_block + (size_t)cj * (size_t)per +
                           (size_t)(i % FM_KERNEL_BLOCK);
            at[0] = 0;
            if (ternary)
                at[FM_KERNEL_BLOCK] = 0;
        }
}

int fmi_kernel_fill_pair(fm_kernel_weights *forward, fm_kernel_weights *transposed, const float *m,
                         int threads)
{
    if (transposed && (transposed->weights != forward->weights || transposed->in != forward->out ||
                       transposed->out != forward->in))
        return fmi_error(FM_EINVAL, "layouts of a %d x %d and a %d x %d layer are not each other's transpose",
                         forward->in, forward->out, transposed->in, transposed->out);
    if (forward->weights == FM_DW_SYNAPSE) {
        const int rc = fmi_kernel_fill(forward, m, (size_t)forward->out, 1, threads);
        return rc < 0 || !transposed ? rc : fmi_kernel_fill(transposed, m, 1, (size_t)forward->out, threads);
    }
    /* chunks of 32 rows among the threads: a chunk's forward words and its
     * rows' transposed lanes (two whole blocks) are written by one thread */
    const int shares = fmi_fill_threads((size_t)forward->in * (size_t)forward->out, forward->chunks, threads);
#pragma omp parallel for num_threads(shares) schedule(static) if (shares > 1)
    for (int c = 0; c < forward->chunks; c++)
        pair_chunk(forward, transposed, m, c);
    if (forward->weights == FM_DW_TERNARY) /* each layout's two compares per weight */
        FM_TALLY(FM_OP_CMP, (transposed ? 4 : 2) * (uint64_t)forward->in * forward->out);
    return FM_OK;
}

void fmi_kernel_weights_free(fm_kernel_weights *w)
{
    if (!w)
        return;
    fmi_free(w->layout);
    fmi_free(w);
}

size_t fmi_kernel_scratch_floats(const fm_kernel_weights *w)
{
    /* 16 floats of slack let a variant start its tables 64-byte aligned */
    if (w->weights == FM_DW_SYNAPSE)
        return (size_t)w->in * (size_t)w->table_stride + 16;
    return (size_t)w->chunks * (FM_KERNEL_CHUNK / FM_KERNEL_GROUP) * 16 + 16;
}

void fmi_pack_signs(const float *x, int n, uint64_t *a)
{
    /* a word at a time, without a branch on the signs (random: mispredicted) */
    for (int i0 = 0; i0 < n; i0 += 64) {
        const int m = n - i0 < 64 ? n - i0 : 64;
        uint64_t word = 0;
        for (int k = 0; k < m; k++)
            word |= (uint64_t)(x[i0 + k] >= 0.0f) << k;
        a[i0 / 64] = word;
    }
}

/* ---- the SIMD weight gradients' lists of nonzero q ------------------------- */

void fmi_grad_lists_fill(fm_grad_lists *ls, const float *q, int in, int b0, int nb, int r0, int rows,
                         int32_t tile_row)
{
    /* without a branch per entry (half are taken, at random): every entry is
     * written, and the count steps only past a nonzero q */
    for (int r = 0; r < rows; r++)
        ls->count[r] = 0;
    const float *qb = q + (size_t)b0 * in + r0;
    int32_t at = 0;
    for (int b = 0; b < nb; b++, qb += in, at += tile_row)
        for (int r = 0; r < rows; r++) {
            uint32_t bits;
            memcpy(&bits, qb + r, sizeof bits);
            const int slot = ls->count[r];
            ls->at[r][slot] = at;
            ls->code[r][slot] = (int32_t)(bits - 0x3f800000u);
            ls->count[r] = slot + ((bits & 0x7fffffffu) != 0);
        }
}

/* ---- exactness of the exponent-add weight gradient ------------------------ */

/* The exponent fields of a stretch of values: the smallest among the nonzero
 * ones (255 when all are zero), the largest (0 when all are zero), and the
 * OR of their mantissas. */
typedef struct {
    uint32_t lo, hi, mantissas;
} exponent_fields;

/* A plain reduction, which the compiler vectorizes: this scan runs over every
 * Q(x) and error of every step. A subnormal shows as field 0, Inf and NaN as 255. */
static exponent_fields scan_fields(const float *v, size_t n)
{
    uint32_t min_field = 255, max_field = 0, mantissas = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t bits;
        memcpy(&bits, v + k, sizeof bits);
        bits &= 0x7fffffffu;
        uint32_t field = bits >> 23;
        uint32_t low = bits ? field : 255u;
        min_field = low < min_field ? low : min_field;
        max_field = field > max_field ? field : max_field;
        mantissas |= bits & 0x7fffffu;
    }
    return (exponent_fields){min_field, max_field, mantissas};
}

/* Values below which the scan runs on one thread: waking the other threads
 * costs about what they save on paper-mlp's layers (409,600 values); a
 * paper-cnn convolution's maps hold millions. */
#define EXACT_PARALLEL (1 << 20)

int fmi_pow2_grad_exact(const float *q, size_t q_count, const float *e, size_t e_count, int threads)
{
    return fmi_pow2_grad_exact_fields(q, q_count, e, e_count, threads, NULL);
}

int fmi_pow2_grad_exact_fields(const float *q, size_t q_count, const float *e, size_t e_count, int threads,
                               int q_fields[2])
{
    uint32_t q_lo = 255, q_hi = 0, q_mantissas = 0, e_lo = 255, e_hi = 0;
    /* `threads` shares of q and of e, a share each per thread: min, max and
     * or do not depend on the order, so neither does the answer */
    const int shares = q_count + e_count >= EXACT_PARALLEL && threads > 1 ? threads : 1;
#pragma omp parallel for num_threads(shares) schedule(static) if (shares > 1) \
    reduction(min : q_lo, e_lo) reduction(max : q_hi, e_hi) reduction(| : q_mantissas)
    for (int s = 0; s < shares; s++) {
        const size_t q0 = q_count * (size_t)s / (size_t)shares, q1 = q_count * (size_t)(s + 1) / (size_t)shares;
        const size_t e0 = e_count * (size_t)s / (size_t)shares, e1 = e_count * (size_t)(s + 1) / (size_t)shares;
        const exponent_fields fq = scan_fields(q + q0, q1 - q0), fe = scan_fields(e + e0, e1 - e0);
        q_lo = fq.lo < q_lo ? fq.lo : q_lo;
        q_hi = fq.hi > q_hi ? fq.hi : q_hi;
        q_mantissas |= fq.mantissas;
        e_lo = fe.lo < e_lo ? fe.lo : e_lo;
        e_hi = fe.hi > e_hi ? fe.hi : e_hi;
    }
    FM_TALLY(FM_OP_CMP, 3 * ((uint64_t)q_count + e_count)); /* zero, below, above, per value */
    if (q_fields)
        q_fields[0] = (int)q_lo, q_fields[1] = (int)q_hi;
    /* a subnormal (field 0) or an Inf or NaN (255) anywhere, or a q that is
     * not a power of two */
    if (q_lo == 0 || q_hi == 255 || q_mantissas || e_lo == 0 || e_hi == 255)
        return 0;
    if (q_hi == 0 || e_hi == 0) /* all zero: every term is a zero */
        return 1;
    /* product exponent field = e's field + k, k = q's field - 127 */
    return (int)e_lo + ((int)q_lo - 127) >= 1 && (int)e_hi + ((int)q_hi - 127) <= 254;
}

/* ---- q as one byte per value (conv_pow2_grad_codes) ---------------------- */

/* Values below which the bytes are filled on one thread, as the scan above. */
#define CODES_PARALLEL (1 << 20)

void fmi_grad_codes_fill(const float *q, size_t n, int field_lo, uint8_t *codes, int threads)
{
    const size_t slices = n / 64;
    const int shares = n >= CODES_PARALLEL && threads > 1 ? threads : 1;
#pragma omp parallel for num_threads(shares) schedule(static) if (shares > 1)
    for (int s = 0; s < shares; s++) {
        const size_t first = slices * (size_t)s / (size_t)shares, end = slices * (size_t)(s + 1) / (size_t)shares;
        for (size_t slice = first; slice < end; slice++) {
            /* value 16 v + c at byte 4 c + v: byte v of little-endian word c */
            uint32_t words[16] = {0};
            for (int v = 0; v < 4; v++)
                for (int c = 0; c < 16; c++) {
                    uint32_t bits;
                    memcpy(&bits, q + 64 * slice + 16 * v + c, sizeof bits);
                    const uint32_t code = 1u + ((bits >> 23) & 0xffu) - (uint32_t)field_lo + ((bits >> 31) << 4);
                    const uint32_t live = 0u - (uint32_t)((bits & 0x7fffffffu) != 0); /* no branch */
                    words[c] |= (code & live) << (8 * v);
                }
            for (int c = 0; c < 16; c++) {
                const uint8_t bytes[4] = {(uint8_t)words[c], (uint8_t)(words[c] >> 8), (uint8_t)(words[c] >> 16),
                                          (uint8_t)(words[c] >> 24)};
                memcpy(codes + 64 * slice + 4 * c, bytes, sizeof bytes);
            }
        }
    }
}

/* ---- choosing a variant -------------------------------------------------- */

static const fm_kernels ref_kernels = {"ref", fmi_infer_real_ref, fmi_infer_bits_ref, fmi_pow2_grad_ref,
                                       fmi_conv_real_ref, fmi_conv_bits_ref, fmi_signs_int_ref,
                                       fmi_signs_float_ref,
                                       NULL /* over the im2col columns: the counted sums, every term */,
                                       NULL};
static const fm_kernels *ref_table(void) { return &ref_kernels; }

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
}
static int cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("popcnt");
}
/* without VPOPCNTDQ (Skylake-X; Ice Lake has it) `bits` counts with vpshufb */
static const fm_kernels *avx512_table(void)
{
    return fmi_kernels_avx512_table(__builtin_cpu_supports("avx512vpopcntdq") != 0);
}
#define X86_VARIANT(has, table) has, table
#else
#define X86_VARIANT(has, table) NULL, NULL
#endif

/* NEON is part of ARMv8-A: every aarch64 CPU has it, no check at run time. */
#if defined(__aarch64__) && defined(__ARM_NEON)
#define ARM_VARIANT(table) NULL, table
#else
#define ARM_VARIANT(table) NULL, NULL
#endif

/* The variants, the best last: the name FEWMUL_KERNELS takes, the CPU
 * features it needs (for messages: a label, the feature list and the
 * architecture a build must target), whether this CPU has them (NULL: every
 * CPU of that architecture has), and its table (NULL both where the build has
 * none). A new variant is its file, its compile flags and one line here. */
typedef struct variant {
    const char *name, *label, *needs, *built_for;
    int (*cpu_has)(void);
    const fm_kernels *(*table)(void);
} variant;

static const variant variants[] = {
    {"ref", "reference", "", "", NULL, ref_table},
    {"avx2", "AVX2", "avx2, popcnt", "x86 with GCC or Clang",
     X86_VARIANT(cpu_has_avx2, fmi_kernels_avx2_table)},
    {"avx512", "AVX-512", "avx512f, avx512bw, avx512vl", "x86 with GCC or Clang",
     X86_VARIANT(cpu_has_avx512, avx512_table)},
    {"neon", "NEON", "neon", "aarch64", ARM_VARIANT(fmi_kernels_neon_table)},
};
enum { N_VARIANTS = sizeof variants / sizeof variants[0] };

/* The variant `name` on this CPU and build: FM_OK with *out set; otherwise an
 * error code with the reason in `why` (a phrase that follows "name: "). */
static int lookup(const char *name, const fm_kernels **out, char *why, size_t why_size)
{
    *out = NULL;
    const variant *v = NULL;
    for (int k = 0; k < N_VARIANTS && !v; k++)
        if (!strcmp(name, variants[k].name))
            v = &variants[k];
    if (!v) {
        int len = snprintf(why, why_size, "unknown kernel variant (");
        for (int k = 0; k < N_VARIANTS && len > 0 && (size_t)len < why_size; k++)
            len += snprintf(why + len, why_size - (size_t)len, "%s%s", k ? ", " : "",
                            variants[k].name);
        if (len > 0 && (size_t)len < why_size)
            snprintf(why + len, why_size - (size_t)len, ")");
        return FM_EINVAL;
    }
    if (!v->table) {
        snprintf(why, why_size, "this build has no %s kernels (not built for %s)", v->label,
                 v->built_for);
        return FM_EUNSUPPORTED;
    }
    if (v->cpu_has && !v->cpu_has()) {
        snprintf(why, why_size, "this CPU lacks %s (needs %s)", v->label, v->needs);
        return FM_EUNSUPPORTED;
    }
    if (!(*out = v->table())) {
        snprintf(why, why_size, "this build has no %s kernels (the compiler lacked the flags)",
                 v->label);
        return FM_EUNSUPPORTED;
    }
    return FM_OK;
}

int fmi_kernels_get(const char *name, const fm_kernels **out)
{
    char why[128];
    int rc = lookup(name ? name : "", out, why, sizeof why);
    if (rc < 0)
        return fmi_error(rc, "%s: %s", name ? name : "(null)", why);
    return FM_OK;
}

const fm_kernels *fmi_kernels_supported(int index)
{
    int found = 0;
    for (int k = 0; k < N_VARIANTS; k++) {
        const fm_kernels *kernels;
        char why[128];
        if (lookup(variants[k].name, &kernels, why, sizeof why) == FM_OK && found++ == index)
            return kernels;
    }
    return NULL;
}

int fmi_kernels_default(const fm_kernels **out)
{
    *out = NULL;
    const char *name = getenv("FEWMUL_KERNELS");
    if (name && *name) {
        char why[128];
        /* a variant this CPU or build lacks is, like an unknown name, a bad
         * setting of the environment rather than unsupported input: FM_EINVAL
         * (exit status 1 in the command, as docs/cli.md says), not
         * FM_EUNSUPPORTED, which the command reports as bad input (4) */
        if (lookup(name, out, why, sizeof why) < 0)
            return fmi_error(FM_EINVAL, "FEWMUL_KERNELS=%s: %s", name, why);
        return FM_OK;
    }
    for (int k = 0; fmi_kernels_supported(k); k++)
        *out = fmi_kernels_supported(k);
    return FM_OK;
}
