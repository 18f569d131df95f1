/* mulfree.c — the training products of `--exec mulfree` (mulfree.h): the
 * kernel table's `real` and `conv_real` kernels run per example, `pow2_grad`
 * over shares of rows (of a dense layer's inputs or a convolution's im2col
 * columns), `conv_pow2_grad` over shares of a convolution's output channels
 * (its weight gradient from the maps, over the nonzero errors), the
 * exactness fallback, and their ledger declarations. The only
 * float multiply here is times_h, the one multiply by H per output
 * (tests/no_float_mul.sh exempts it alone). */
#include "mulfree.h"
#include "internal.h"
#include "kernels.h"
#include "layers.h"
#include "quant.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

fm_deploy_weights fmi_mulfree_kind(fm_weight_mode mode)
{
    switch (mode) {
    case FM_WEIGHTS_BC:
    case FM_WEIGHTS_BC_DET:
        return FM_DW_BINARY;
    case FM_WEIGHTS_TC:
    case FM_WEIGHTS_TC_DET:
        return FM_DW_TERNARY;
    case FM_WEIGHTS_SYNAPSE:
        return FM_DW_SYNAPSE;
    default:
        return FM_DW_FP32;
    }
}

static int thread_index(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* y[i] *= h for i < n: the one multiply per output of a binary or ternary
 * product, kept in a function of its own, never inlined, so that a
 * disassembly shows no multiply anywhere else in this file. */
#if defined(__clang__)
__attribute__((noinline))
#elif defined(__GNUC__)
__attribute__((noinline, noclone))
#endif
static void times_h(float *y, size_t n, float h)
{
    for (size_t i = 0; i < n; i++)
        y[i] *= h;
}

void fmi_mulfree_product(const fm_kernels *k, const fm_kernel_weights *w, const float *x, float *y,
                        int batch, float scale, float *scratch, size_t slice, int threads)
{
    const int scaled = w->weights != FM_DW_SYNAPSE;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *tables = scratch + (size_t)thread_index() * slice;
#pragma omp for schedule(static)
        for (int b = 0; b < batch; b++) {
            float *row = y + (size_t)b * w->out;
            k->real(w, x + (size_t)b * w->in, row, tables);
            if (scaled)
                times_h(row, (size_t)w->out, scale);
        }
    }
    if (scaled)
        FM_TALLY(FM_OP_FMUL, (uint64_t)batch * w->out);
}

void fmi_mulfree_pow2_grad_rows(const fm_kernels *k, const float *q, const float *e, float *dw_rows,
                               int batch, int in, int out, int r0, int r1, int threads)
{
    /* the threads' shares are whole 16-row bands, so a kernel may block rows
     * as it likes */
    const int band = 16, bands = (r1 - r0 + band - 1) / band;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int t = 0; t < threads; t++) {
        int first = (int)((long)bands * t / threads), last = (int)((long)bands * (t + 1) / threads);
        int i0 = FM_MIN(r1, r0 + first * band), i1 = FM_MIN(r1, r0 + last * band);
        if (i0 < i1)
            k->pow2_grad(q, e, dw_rows + (size_t)(i0 - r0) * out, batch, in, out, i0, i1);
    }
}

/* Every row of dw among the threads; the caller has checked fmi_pow2_grad_exact. */
static void pow2_shared(const fm_kernels *k, const float *q, const float *e, float *dw, int batch,
                        int in, int out, int threads)
{
    fmi_mulfree_pow2_grad_rows(k, q, e, dw, batch, in, out, 0, in, threads);
}

int fmi_mulfree_pow2_grad(const fm_kernels *k, const float *q, const float *e, float *dw, int batch,
                         int in, int out, int threads)
{
    if (!fmi_pow2_grad_exact(q, (size_t)batch * in, e, (size_t)batch * out, threads)) {
        fmi_ref_dense_backward_weights(1, q, e, dw, batch, in, out);
        return 0;
    }
    pow2_shared(k, q, e, dw, batch, in, out, threads);
    return 1;
}

/* ---- convolutions ---- */

void fmi_mulfree_conv_transpose(const fm_conv_geom *g, fm_conv_geom *t)
{
    *t = (fm_conv_geom){(g->out_h - 1) * g->stride + 1, (g->out_w - 1) * g->stride + 1, g->out_c,
                        g->k_h, g->k_w, 1, g->k_h - 1 - g->pad_top, g->k_w - 1 - g->pad_left,
                        g->in_h, g->in_w, g->in_c};
}

size_t fmi_mulfree_conv_scratch_floats(const fm_conv_weights *w, int dilate)
{
    const size_t tables = fmi_conv_kernel_scratch_floats(w);
    return dilate > 1 ? tables + (size_t)w->in_h * (size_t)w->in_w * (size_t)w->in_c : tables;
}

void fmi_mulfree_conv(const fm_kernels *k, const fm_conv_weights *w, const float *x, float *y,
                     int batch, float scale, int dilate, float *scratch, size_t slice, int threads)
{
    const int scaled = w->weights != FM_DW_SYNAPSE;
    const size_t tables = fmi_conv_kernel_scratch_floats(w);
    const size_t out_size = (size_t)w->out_h * (size_t)w->out_w * (size_t)w->out_c;
    const int src_h = (w->in_h - 1) / dilate + 1, src_w = (w->in_w - 1) / dilate + 1;
    const size_t in_size = (size_t)src_h * (size_t)src_w * (size_t)w->in_c;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *mine = scratch + (size_t)thread_index() * slice, *dilated = mine + tables;
        if (dilate > 1) /* the zeros between the pixels, once */
            memset(dilated, 0, (size_t)w->in_h * (size_t)w->in_w * (size_t)w->in_c * sizeof(float));
#pragma omp for schedule(static)
        for (int b = 0; b < batch; b++) {
            const float *map = x + (size_t)b * in_size;
            if (dilate > 1) {
                fmi_conv_dilate(map, src_h, src_w, w->in_c, dilate, dilated);
                map = dilated;
            }
            float *out = y + (size_t)b * out_size;
            k->conv_real(w, map, out, mine, NULL);
            if (scaled)
                times_h(out, out_size, scale);
        }
    }
    if (scaled)
        FM_TALLY(FM_OP_FMUL, (uint64_t)batch * out_size);
}

typedef struct pow2_rows {
    const fm_kernels *k;
    int threads;
} pow2_rows;

static void pow2_rows_grad(void *ctx, const float *cols, const float *e, float *dw, int rows, int fan,
                           int oc, int accumulate)
{
    (void)accumulate; /* never asked: the driver adds the partial sums */
    const pow2_rows *r = ctx;
    pow2_shared(r->k, cols, e, dw, rows, fan, oc, r->threads);
}

static void ldexp_rows_grad(void *ctx, const float *cols, const float *e, float *dw, int rows, int fan,
                            int oc, int accumulate)
{
    (void)ctx, (void)accumulate;
    fmi_ref_dense_backward_weights(1, cols, e, dw, rows, fan, oc);
}

/* ---- the weight gradient from the maps -------------------------------------
 * Where the variant has conv_pow2_grad, every window lies inside the input
 * and the input channels come in whole slices, and most of e is zero
 * (max-pooling passes one error in four back to its convolution), the sums
 * are formed per output channel over that channel's nonzero errors only, each
 * term a window of the Q(x) map itself: no im2col columns, and no term of a
 * zero e. A zero term adds nothing to an accumulator that starts at +0.0f
 * (infer.h), and each channel keeps its terms in order (examples, then
 * positions) and the chunks of the im2col path, so the bits are that path's.
 * A channel's list runs in pieces of output rows, all channels' terms of a
 * piece while its rows of q are in cache (piece_rows); a piece's sums go on
 * from where the last one left them, so the order of the terms is the same.
 * The sums land transposed (out_c x fan_in, one channel's weights together)
 * and are turned into dw at the end. Threads take whole output channels. */

/* Most of e zero (fewer than half its values nonzero) takes the maps' path.
 * Per term it does a load, a test, an integer add and a float add for each 16
 * weights where the im2col path does about two adds, after writing the
 * columns; paper-cnn's pooled layers have a quarter nonzero, the others all. */
static int mostly_zero(const float *e, size_t n, int threads)
{
    /* a share of e per thread when it is large; the count picks a path,
     * never a bit of the sums (both give the same) */
    const int shares = n >= 65536 && threads > 1 ? threads : 1;
    size_t nonzero = 0;
#pragma omp parallel for num_threads(shares) schedule(static) if (shares > 1) reduction(+ : nonzero)
    for (int s = 0; s < shares; s++) {
        const size_t first = n * (size_t)s / (size_t)shares, end = n * (size_t)(s + 1) / (size_t)shares;
        size_t mine = 0;
        for (size_t i = first; i < end; i++)
            mine += e[i] != 0.0f;
        nonzero += mine;
    }
    return nonzero < n - nonzero;
}

static size_t maps_examples(const fm_conv_geom *g, int max_batch)
{
    return (size_t)FM_MIN(max_batch, fmi_conv_chunk_limit(g));
}

static int maps_fit(const fm_kernels *k, const fm_conv_geom *g, int max_batch)
{
    const size_t in_size = (size_t)g->in_h * (size_t)g->in_w * (size_t)g->in_c;
    return k && k->conv_pow2_grad && max_batch > 0 && g->pad_top == 0 && g->pad_left == 0 &&
           (g->out_h - 1) * g->stride + g->k_h <= g->in_h && (g->out_w - 1) * g->stride + g->k_w <= g->in_w &&
           g->in_c % FM_GRAD_SLICE == 0 && maps_examples(g, max_batch) * in_size <= INT32_MAX;
}

size_t fmi_mulfree_conv_grad_floats(const fm_kernels *k, const fm_conv_geom *g, int max_batch)
{
    if (!maps_fit(k, g, max_batch))
        return 0;
    const size_t fan = (size_t)fmi_conv_fan_in(g), oc = (size_t)g->out_c;
    const size_t cap = maps_examples(g, max_batch) * (size_t)fmi_conv_positions(g);
    /* the transposed sums and a chunk's partial sums, each channel's terms
     * (2 words each), the counts, the pieces' bounds, the slices' offsets in
     * a window; with conv_pow2_grad_codes, the batch's bytes of q and a
     * cache line to align them */
    const size_t codes = k->conv_pow2_grad_codes
                             ? (size_t)max_batch * (size_t)g->in_h * (size_t)g->in_w * (size_t)g->in_c / 4 + 16
                             : 0;
    return 2 * fan * oc + 2 * cap * oc + 3 * oc + fan / FM_GRAD_SLICE + codes;
}

/* The index of the lowest set bit of a nonzero x. */
static int lowest_bit(uint64_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(x);
#else
    int i = 0;
    while (!(x & 1u))
        x >>= 1, i++;
    return i;
#endif
}

/* Output channels j0 .. j1-1's terms of nb examples' errors e: for each
 * nonzero e, in order, the offset of its window in the chunk's maps and e's
 * bits less those of 1.0f (the code conv_pow2_grad adds to q). A position's
 * channels are read 64 at a time into a mask of the nonzero ones, and only
 * those are listed: pooling leaves one in four, and a slot written for every
 * channel (a zero's taken again by the next term) made the lists about a
 * fifth of the maps' path in a paper-cnn step, against about a seventh now. */
static void list_terms(const fm_conv_geom *g, const float *e, int nb, int j0, int j1, int32_t *terms,
                       int32_t *count, size_t cap)
{
    const int oc = g->out_c;
    const int32_t step = g->stride * g->in_c, row_step = g->stride * g->in_w * g->in_c;
    const int32_t in_size = g->in_h * g->in_w * g->in_c;
    for (int j = j0; j < j1; j++)
        count[j] = 0;
    int32_t image = 0;
    for (int b = 0; b < nb; b++, image += in_size)
        for (int oy = 0, row = image; oy < g->out_h; oy++, row += row_step)
            for (int ox = 0, window = row; ox < g->out_w; ox++, window += step, e += oc)
                for (int c0 = j0; c0 < j1; c0 += 64) {
                    const int c1 = FM_MIN(j1, c0 + 64);
                    uint64_t live = 0;
                    for (int j = c0; j < c1; j++) {
                        uint32_t bits;
                        memcpy(&bits, e + j, sizeof bits);
                        live |= (uint64_t)((bits & 0x7fffffffu) != 0) << (j - c0);
                    }
                    for (; live; live &= live - 1) {
                        const int j = c0 + lowest_bit(live);
                        uint32_t bits;
                        memcpy(&bits, e + j, sizeof bits);
                        int32_t *slot = terms + 2 * (cap * (size_t)j + (size_t)count[j]++);
                        slot[0] = window;
                        slot[1] = (int32_t)(bits - 0x3f800000u);
                    }
                }
}

/* Output rows (counted on across a chunk's examples) that a piece of the
 * lists covers: as many as keep the rows of q that one call's slices read (a
 * row of taps; k_h rows for a whole window) within MAPS_PIECE_BYTES, at
 * least one. Every channel runs its terms of a piece while those rows stay
 * in the core's caches, where a channel's whole list at once read all of a
 * chunk's maps again for each channel. Each piece loads and stores every
 * channel's partial sums, so a piece may not be small: maps_grad_bench on
 * one thread, against whole lists, took about as long on paper-cnn's second
 * convolution, 15% less on its fourth and 5% less on its sixth with 64 KB;
 * 16 KB pieces, up to 1.9 times as long (docs/bench.md). */
#define MAPS_PIECE_BYTES 65536
static int piece_rows(const fm_conv_geom *g)
{
    const size_t row = (size_t)g->stride * (size_t)g->in_w * (size_t)g->in_c * sizeof(float);
    return (int)FM_MAX((size_t)1, MAPS_PIECE_BYTES / row); /* at most 65536 */
}

/* A chunk's maps as the kernel reads them: the floats of q, or where codes
 * is set its bytes (conv_pow2_grad_codes, exponent fields from field_lo). */
typedef struct maps_view {
    const float *q;
    const uint8_t *codes;
    int field_lo;
} maps_view;

/* Channels j0 .. j1-1's sums over one chunk of nb examples (its maps, lists
 * from list_terms), piece by piece: for each piece, each group of up to
 * FM_GRAD_SLICES slices and each channel, the channel's terms of the piece,
 * carried from piece to piece in `partial`. A channel's last piece stores
 * its sums (the first chunk) or adds them to what the chunks before left
 * (one add, as the im2col path adds its chunks); a channel without terms
 * stores or adds zeros, as a whole list would. */
static void chunk_sums(const fm_kernels *k, const fm_conv_geom *g, maps_view maps, int nb, int first_chunk,
                       int j0, int j1, const int32_t *terms, const int32_t *count, size_t cap,
                       const int32_t *slice_at, int32_t *begin, int32_t *end, float *partial, float *sums)
{
    const int fan = fmi_conv_fan_in(g), slices = fan / FM_GRAD_SLICE, rows = piece_rows(g);
    const int32_t row_step = g->stride * g->in_w * g->in_c, in_size = g->in_h * g->in_w * g->in_c;
    const long all_rows = (long)nb * g->out_h;
    for (int j = j0; j < j1; j++)
        begin[j] = 0;
    for (long r0 = 0; r0 < all_rows; r0 += rows) {
        /* a piece's terms: windows before the first of the next piece's rows */
        const long next = r0 + rows;
        const int last_piece = next >= all_rows;
        const int32_t limit =
            last_piece ? 0 : (int32_t)(next / g->out_h) * in_size + (int32_t)(next % g->out_h) * row_step;
        for (int j = j0; j < j1; j++) {
            const int32_t *list = terms + 2 * cap * (size_t)j;
            int32_t t = begin[j];
            while (t < count[j] && (last_piece || list[2 * t] < limit))
                t++;
            end[j] = t;
        }
        for (int s0 = 0; s0 < slices; s0 += FM_GRAD_SLICES)
            for (int j = j0; j < j1; j++) {
                const int finished = end[j] == count[j];
                if (end[j] == begin[j] && !(last_piece && count[j] == 0))
                    continue;
                const size_t at = (size_t)j * fan + (size_t)s0 * FM_GRAD_SLICE;
                const int32_t *list = terms + 2 * (cap * (size_t)j + (size_t)begin[j]);
                const int n = end[j] - begin[j], in_call = FM_MIN(FM_GRAD_SLICES, slices - s0);
                const float *from = begin[j] > 0 ? partial + at : NULL;
                float *to = finished ? sums + at : partial + at;
                if (maps.codes)
                    k->conv_pow2_grad_codes(maps.codes, maps.field_lo, list, n, slice_at + s0, in_call, from, to,
                                            finished && !first_chunk);
                else
                    k->conv_pow2_grad(maps.q, list, n, slice_at + s0, in_call, from, to, finished && !first_chunk);
            }
        for (int j = j0; j < j1; j++)
            begin[j] = end[j];
    }
}

/* q_fields: the smallest and largest exponent fields of q's nonzero values
 * (fmi_pow2_grad_exact_fields); a spread the kernel's tables hold takes
 * conv_pow2_grad_codes, over bytes of q filled here, once for the batch.
 * Returns 3 when it did, else 2 (fmi_mulfree_conv_pow2_grad's paths). */
static int grad_from_maps(const fm_kernels *k, const fm_conv_geom *g, const float *q, const int q_fields[2],
                           const float *e, float *dw, int batch, float *scratch, int threads)
{
    const int fan = fmi_conv_fan_in(g), oc = g->out_c, slices = fan / FM_GRAD_SLICE;
    const int cb = fmi_conv_chunk_examples(g, batch);
    const size_t P = (size_t)fmi_conv_positions(g), cap = (size_t)cb * P;
    const size_t in_size = (size_t)g->in_h * (size_t)g->in_w * (size_t)g->in_c;
    float *sums = scratch, *partial = sums + (size_t)fan * oc;
    int32_t *terms = (int32_t *)(partial + (size_t)fan * oc), *count = terms + 2 * cap * oc;
    int32_t *begin = count + oc, *end = begin + oc, *slice_at = end + oc;
    uint8_t *codes = NULL;
    const int field_lo = q_fields[1] == 0 ? 1 : q_fields[0]; /* every q zero: every byte 0 */
    if (k->conv_pow2_grad_codes && q_fields[1] - q_fields[0] <= FM_GRAD_CODE_SPAN) {
        const uintptr_t after = (uintptr_t)(slice_at + slices);
        codes = (uint8_t *)(after + (64 - after % 64) % 64);
        fmi_grad_codes_fill(q, (size_t)batch * in_size, field_lo, codes, threads);
    }
    for (int s = 0; s < slices; s++) {
        const int i = s * FM_GRAD_SLICE, tap = i / g->in_c;
        slice_at[s] = ((tap / g->k_w) * g->in_w + tap % g->k_w) * g->in_c + i % g->in_c;
    }
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int t = 0; t < threads; t++) {
        const int j0 = (int)((long)oc * t / threads), j1 = (int)((long)oc * (t + 1) / threads);
        for (int b0 = 0; b0 < batch; b0 += cb) {
            const int nb = FM_MIN(cb, batch - b0);
            list_terms(g, e + (size_t)b0 * P * oc, nb, j0, j1, terms, count, cap);
            const maps_view maps = {q + (size_t)b0 * in_size, codes ? codes + (size_t)b0 * in_size : NULL,
                                    field_lo};
            chunk_sums(k, g, maps, nb, b0 == 0, j0, j1, terms, count, cap, slice_at, begin, end, partial, sums);
        }
    }
    /* the transpose in 16 x 16 tiles: a row of either side at a time walks
     * the other a row apart per value, a cache line each */
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int i0 = 0; i0 < fan; i0 += 16)
        for (int j0 = 0; j0 < oc; j0 += 16)
            for (int i = i0; i < FM_MIN(fan, i0 + 16); i++)
                for (int j = j0; j < FM_MIN(oc, j0 + 16); j++)
                    dw[(size_t)i * oc + j] = sums[(size_t)j * fan + i];
    return codes ? 3 : 2;
}

int fmi_mulfree_conv_pow2_grad(const fm_kernels *k, const fm_conv_geom *g, const float *q,
                              const float *e, float *dw, int batch, float *columns, float *maps,
                              size_t maps_floats, int threads)
{
    /* the columns hold the values of q and zeros: check q itself, once */
    const size_t in_size = (size_t)g->in_h * (size_t)g->in_w * (size_t)g->in_c;
    const size_t out_size = (size_t)fmi_conv_positions(g) * (size_t)g->out_c;
    pow2_rows ctx = {k, threads};
    int q_fields[2];
    const int exact =
        fmi_pow2_grad_exact_fields(q, (size_t)batch * in_size, e, (size_t)batch * out_size, threads, q_fields);
    const size_t maps_need = fmi_mulfree_conv_grad_floats(k, g, batch); /* 0: cannot */
    if (exact && maps && maps_need && maps_floats >= maps_need && mostly_zero(e, (size_t)batch * out_size, threads)) {
        return grad_from_maps(k, g, q, q_fields, e, dw, batch, maps, threads);
    }
    fmi_conv_backward_weights_rows(g, q, e, dw, batch, columns, exact ? pow2_rows_grad : ldexp_rows_grad,
                                  &ctx, 0);
    return exact;
}

/* ---- ledger declarations --------------------------------------------------
 * A lookup among S table entries is counted as the S - 1 two-way selects of a
 * select tree (`sign`), an upper bound on what a hardware multiplexer does. */

void fmi_mulfree_cost_fill(const fm_cost *c, fm_deploy_weights kind, int levels, int in, int out)
{
    const uint64_t n = (uint64_t)in * out;
    if (kind == FM_DW_TERNARY)
        fmi_cost_ops(c, FM_OP_CMP, 2 * n);
    if (kind == FM_DW_SYNAPSE) {
        const uint64_t steps = (uint64_t)fmi_search_steps(levels - 1); /* as fmi_kernel_fill */
        fmi_cost_ops(c, FM_OP_IADD, steps * n);
        fmi_cost_ops(c, FM_OP_CMP, (steps + 1) * n);
        fmi_cost_ops(c, FM_OP_SIGN, steps * n);
    }
    /* binary: the sign bit is the code, wiring */
}

void fmi_mulfree_cost_product(const fm_cost *c, fm_deploy_weights kind, int levels, int batch,
                             int in, int out)
{
    const uint64_t B = (uint64_t)batch, groups = ((uint64_t)in + 3) / 4;
    if (kind == FM_DW_SYNAPSE) {
        const uint64_t stride = levels <= 16 ? 16 : 32, terms = B * in * out;
        fmi_cost_ops(c, FM_OP_FMUL, B * in * stride); /* the product tables */
        fmi_cost_ops(c, FM_OP_SIGN, terms * stride);  /* lookup (stride - 1) and sign (1) */
        fmi_cost_ops(c, FM_OP_FADD, terms);
        return;
    }
    const uint64_t lookups = kind == FM_DW_TERNARY ? 2 : 1;
    /* per group and example: 8 pair sums of two selected inputs, 16 table sums */
    fmi_cost_ops(c, FM_OP_SIGN, B * groups * 16);
    fmi_cost_ops(c, FM_OP_FADD, B * groups * 24);
    /* per group, output and example: the lookups (15 selects each) and their adds */
    fmi_cost_ops(c, FM_OP_SIGN, B * groups * out * lookups * 15);
    fmi_cost_ops(c, FM_OP_FADD, B * groups * out * lookups);
    fmi_cost_ops(c, FM_OP_FMUL, B * out); /* times H */
}

void fmi_mulfree_cost_pow2_grad(const fm_cost *c, int batch, int in, int out)
{
    /* the exactness check: three compares per value of Q(x) and of e */
    fmi_cost_ops(c, FM_OP_CMP, 3 * (uint64_t)batch * ((uint64_t)in + out));
    fmi_dense_cost_backward_weights(c, 1, batch, in, out);
}

void fmi_mulfree_cost_conv(const fm_cost *c, const fm_conv_weights *w, int batch)
{
    const fm_conv_geom g = {w->in_h, w->in_w, w->in_c, w->k_h, w->k_w, w->stride,
                            w->pad_top, w->pad_left, w->out_h, w->out_w, w->out_c};
    const uint64_t B = (uint64_t)batch, oc = (uint64_t)w->out_c, taps = fmi_conv_valid_taps(&g);
    const uint64_t pixels = (uint64_t)w->in_h * (uint64_t)w->in_w;
    const uint64_t outputs = B * (uint64_t)w->out_h * (uint64_t)w->out_w * oc;
    if (w->weights == FM_DW_SYNAPSE) {
        const uint64_t stride = (uint64_t)w->table_stride, terms = B * taps * (uint64_t)w->in_c * oc;
        fmi_cost_ops(c, FM_OP_FMUL, B * pixels * (uint64_t)w->in_c * stride); /* the product tables */
        fmi_cost_ops(c, FM_OP_SIGN, terms * stride); /* lookup (stride - 1) and sign (1) */
        fmi_cost_ops(c, FM_OP_FADD, terms);
        return;
    }
    const uint64_t groups = (uint64_t)w->groups, lookups = (uint64_t)w->sets;
    /* per input pixel and group the table; per valid tap, group and output the lookups */
    fmi_cost_ops(c, FM_OP_SIGN, B * (pixels * groups * 16 + taps * groups * oc * lookups * 15));
    fmi_cost_ops(c, FM_OP_FADD, B * (pixels * groups * 24 + taps * groups * oc * lookups));
    fmi_cost_ops(c, FM_OP_FMUL, outputs); /* times H */
}

void fmi_mulfree_cost_conv_pow2_grad(const fm_cost *c, const fm_conv_geom *g, int batch)
{
    const uint64_t in_size = (uint64_t)g->in_h * (uint64_t)g->in_w * (uint64_t)g->in_c;
    const uint64_t out_size = (uint64_t)fmi_conv_positions(g) * (uint64_t)g->out_c;
    fmi_cost_ops(c, FM_OP_CMP, 3 * (uint64_t)batch * (in_size + out_size)); /* the exactness check */
    fmi_conv_cost_backward_weights(c, g, 1, batch);
}
