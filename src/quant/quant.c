/* quant.c — binary, ternary, synapse-level and power-of-two quantizers.
 * Loops are written flat (no branches on random data) so the compiler
 * vectorizes them and every element costs the same operations, which
 * fm_*_cost declare to the energy ledger; every random draw is fmi_rand_u32(key, first + i). */
#include "quant.h"
#include "ledger.h"
#include "rng.h"

#include <math.h>
#include <string.h>

/* 24 random bits as a float in [0,1): compare `u < p` so p <= 0 never fires and
 * p >= 1 always does, as Theano's binomial(p) = (u < p). */
static inline float uniform24(uint64_t key, uint64_t i) { return (float)(fmi_rand_u32(key, i) >> 8) * 0x1p-24f; }

void fmi_binarize_stochastic(const float *w, float *out, size_t n, float h, uint64_t key,
                            uint64_t first)
{
    const float inv = 0.5f / h;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float p = w[i] * inv + 0.5f; /* hard sigmoid of w/h; the compare clips it */
        out[i] = uniform24(key, first + i) < p ? h : -h;
    }
    FM_TALLY(FM_OP_FMA, n);
    FM_TALLY(FM_OP_RAND, n);
    FM_TALLY(FM_OP_CMP, n);
    FM_TALLY(FM_OP_SIGN, n);
}

void fmi_binarize_det(const float *w, float *out, size_t n, float h)
{
    for (size_t i = 0; i < n; i++)
        out[i] = w[i] >= 0.0f ? h : -h;
    FM_TALLY(FM_OP_CMP, n);
    FM_TALLY(FM_OP_SIGN, n);
}

void fmi_ternarize_stochastic(const float *w, float *out, size_t n, float h, uint64_t key,
                             uint64_t first)
{
    const float inv = 1.0f / h;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float p = fabsf(w[i]) * inv;
        float s = w[i] > 0.0f ? h : -h;
        out[i] = uniform24(key, first + i) < p ? s : 0.0f;
    }
    FM_TALLY(FM_OP_SIGN, 3 * n);
    FM_TALLY(FM_OP_FMUL, n);
    FM_TALLY(FM_OP_CMP, 2 * n);
    FM_TALLY(FM_OP_RAND, n);
}

void fmi_ternarize_det(const float *w, float *out, size_t n, float h)
{
    const float half = 0.5f * h, neg_half = -half;
    for (size_t i = 0; i < n; i++)
        out[i] = w[i] > half ? h : (w[i] < neg_half ? -h : 0.0f);
    FM_TALLY(FM_OP_CMP, 2 * n);
    FM_TALLY(FM_OP_SIGN, 2 * n);
}

float fmi_synapse_level(float h, int levels, float range, int i)
{
    if (levels <= 1)
        return h;
    return h * powf(range, -(float)(levels - 1 - i) / (float)(levels - 1));
}

/* The level magnitudes of fmi_synapse_level; levels is 2..FM_SYNAPSE_MAX_LEVELS. */
static void fill_levels(float *level, float h, int levels, float range)
{
    for (int k = 0; k < levels; k++)
        level[k] = fmi_synapse_level(h, levels, range, k);
}

int fmi_search_steps(int count)
{
    int steps = 0;
    while ((1 << steps) < count + 1)
        steps++;
    return steps;
}

/* Pads bounds[count .. 2^steps - 2] with +inf so the search needs no range check. */
static void pad_bounds(float *bound, int count, int steps)
{
    for (int j = count; j < (1 << steps) - 1; j++)
        bound[j] = INFINITY;
}

/* How many of the sorted bounds are <= a (0 for NaN): one compare, select and
 * integer add per step, the same for every element. */
static inline int count_at_most(const float *bound, int steps, float a)
{
    int k = 0;
    for (int step = (1 << steps) >> 1; step >= 1; step >>= 1)
        k = bound[k + step - 1] <= a ? k + step : k;
    return k;
}

void fmi_synapse_stochastic(const float *w, float *out, size_t n, float h, int levels, float range,
                           uint64_t key, uint64_t first)
{
    if (levels <= 1) { /* one magnitude with a sign is the binary rule */
        fmi_binarize_det(w, out, n, h);
        return;
    }
    /* |w| in [level[k], level[k+1]) rounds up with p = (|w| - level[k]) / gap[k];
     * below level[0] p < 0 keeps level[0], above h p >= 1 gives h, so no
     * branch is needed. k counts the inner levels 1..levels-2 at most |w|. */
    float level[FM_SYNAPSE_MAX_LEVELS], inv_gap[FM_SYNAPSE_MAX_LEVELS], bound[FM_SYNAPSE_MAX_LEVELS];
    fill_levels(level, h, levels, range);
    for (int k = 0; k + 1 < levels; k++)
        inv_gap[k] = 1.0f / (level[k + 1] - level[k]);
    const int count = levels - 2, steps = fmi_search_steps(count);
    memcpy(bound, level + 1, (size_t)count * sizeof *bound);
    pad_bounds(bound, count, steps);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(w[i]);
        int k = count_at_most(bound, steps, a);
        float p = (a - level[k]) * inv_gap[k];
        float q = uniform24(key, first + i) < p ? level[k + 1] : level[k];
        out[i] = w[i] >= 0.0f ? q : -q;
    }
    FM_TALLY(FM_OP_SIGN, n * (3 + (uint64_t)steps));
    FM_TALLY(FM_OP_IADD, n * (uint64_t)steps);
    FM_TALLY(FM_OP_CMP, n * (2 + (uint64_t)steps));
    FM_TALLY(FM_OP_FADD, n);
    FM_TALLY(FM_OP_FMUL, n);
    FM_TALLY(FM_OP_RAND, n);
}

void fmi_synapse_det(const float *w, float *out, size_t n, float h, int levels, float range)
{
    if (levels <= 1) {
        fmi_binarize_det(w, out, n, h);
        return;
    }
    /* The level nearest in log: count the geometric midpoints at most |w|. */
    float level[FM_SYNAPSE_MAX_LEVELS], bound[FM_SYNAPSE_MAX_LEVELS];
    fill_levels(level, h, levels, range);
    const int count = levels - 1, steps = fmi_search_steps(count);
    for (int k = 0; k < count; k++)
        bound[k] = sqrtf(level[k] * level[k + 1]);
    pad_bounds(bound, count, steps);
    for (size_t i = 0; i < n; i++) {
        float q = level[count_at_most(bound, steps, fabsf(w[i]))];
        out[i] = w[i] >= 0.0f ? q : -q;
    }
    FM_TALLY(FM_OP_SIGN, n * (2 + (uint64_t)steps));
    FM_TALLY(FM_OP_IADD, n * (uint64_t)steps);
    FM_TALLY(FM_OP_CMP, n * (1 + (uint64_t)steps));
}

/* Q(x) of one element from its bits b and 23 random bits r; clip fields in
 * [efield_min, efield_max], or [1, 254] for no clip. */
static inline uint32_t pow2_bits(uint32_t b, uint32_t r, uint32_t efield_min, uint32_t efield_max)
{
    uint32_t sign = b & 0x80000000u, efield = (b >> 23) & 0xffu, mant = b & 0x7fffffu;
    uint32_t e = efield + (r < mant ? 1u : 0u);
    /* k < emin: p = |x|/2^emin - 1 < 0, never rounds up -> 2^emin;
     * k > emax: p >= 1, always rounds up -> 2^(emax+1). */
    e = efield < efield_min ? efield_min : e;
    e = efield > efield_max ? efield_max + 1u : e;
    uint32_t q = sign | (e << 23);
    q = efield == 0u ? sign : q;   /* zero and subnormals */
    q = efield == 0xffu ? b : q;   /* inf, nan */
    return q;
}

void fmi_pow2_quantize(const float *x, float *out, size_t n, int emin, int emax, uint64_t key,
                      uint64_t first)
{
    /* For a normal float |x| = (1 + f) * 2^k with the 23-bit mantissa f, so the
     * round-up probability |x|/2^k - 1 is exactly f: draw 23 random bits r and
     * round up when r < mantissa. Zeroing the mantissa gives 2^k; adding one
     * to the exponent field gives 2^(k+1). Without a clip the bounds are the
     * normal range, where they change nothing. */
    const int clipped = emin > FM_QB_UNBOUNDED;
    const uint32_t efield_min = clipped ? (uint32_t)(emin + 127) : 1u;
    const uint32_t efield_max = clipped ? (uint32_t)(emax + 127) : 254u;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        uint32_t b, q;
        memcpy(&b, &x[i], sizeof b);
        q = pow2_bits(b, fmi_rand_u32(key, first + i) >> 9, efield_min, efield_max);
        memcpy(&out[i], &q, sizeof q);
    }
    /* the draw, r < mantissa, the exponent add, and four compare-selects
     * (clip below, clip above, zero, inf/nan); field masks are wiring */
    FM_TALLY(FM_OP_RAND, n);
    FM_TALLY(FM_OP_CMP, 5 * n);
    FM_TALLY(FM_OP_IADD, n);
    FM_TALLY(FM_OP_SIGN, 4 * n);
}

/* ---- ledger declarations: what the loops above execute per element ---- */

void fmi_pow2_quantize_cost(const fm_cost *c, uint64_t n)
{
    fmi_cost_ops(c, FM_OP_RAND, n);
    fmi_cost_ops(c, FM_OP_CMP, 5 * n);
    fmi_cost_ops(c, FM_OP_IADD, n);
    fmi_cost_ops(c, FM_OP_SIGN, 4 * n);
}

void fmi_quantize_weights_cost(const fm_cost *c, fm_weight_mode mode, int stochastic, uint64_t n,
                              int levels)
{
    int det = !stochastic || mode == FM_WEIGHTS_BC_DET || mode == FM_WEIGHTS_TC_DET;
    switch (mode) {
    case FM_WEIGHTS_BC:
    case FM_WEIGHTS_BC_DET:
        if (det) {
            fmi_cost_ops(c, FM_OP_CMP, n);
            fmi_cost_ops(c, FM_OP_SIGN, n);
        } else {
            fmi_cost_ops(c, FM_OP_FMA, n);
            fmi_cost_ops(c, FM_OP_RAND, n);
            fmi_cost_ops(c, FM_OP_CMP, n);
            fmi_cost_ops(c, FM_OP_SIGN, n);
        }
        break;
    case FM_WEIGHTS_TC:
    case FM_WEIGHTS_TC_DET:
        if (det) {
            fmi_cost_ops(c, FM_OP_CMP, 2 * n);
            fmi_cost_ops(c, FM_OP_SIGN, 2 * n);
        } else {
            fmi_cost_ops(c, FM_OP_SIGN, 3 * n);
            fmi_cost_ops(c, FM_OP_FMUL, n);
            fmi_cost_ops(c, FM_OP_CMP, 2 * n);
            fmi_cost_ops(c, FM_OP_RAND, n);
        }
        break;
    case FM_WEIGHTS_SYNAPSE: {
        if (levels <= 1) {
            fmi_cost_ops(c, FM_OP_CMP, n);
            fmi_cost_ops(c, FM_OP_SIGN, n);
            break;
        }
        uint64_t steps = (uint64_t)fmi_search_steps(det ? levels - 1 : levels - 2);
        fmi_cost_ops(c, FM_OP_SIGN, n * ((det ? 2 : 3) + steps));
        fmi_cost_ops(c, FM_OP_IADD, n * steps);
        fmi_cost_ops(c, FM_OP_CMP, n * ((det ? 1 : 2) + steps));
        if (!det) {
            fmi_cost_ops(c, FM_OP_FADD, n);
            fmi_cost_ops(c, FM_OP_FMUL, n);
            fmi_cost_ops(c, FM_OP_RAND, n);
        }
        break;
    }
    case FM_WEIGHTS_FP32:
    default:
        break;
    }
}

unsigned fmi_weight_bits(fm_weight_mode mode, int levels)
{
    switch (mode) {
    case FM_WEIGHTS_BC:
    case FM_WEIGHTS_BC_DET:
        return 1;
    case FM_WEIGHTS_TC:
    case FM_WEIGHTS_TC_DET:
        return 2;
    case FM_WEIGHTS_SYNAPSE: {
        unsigned bits = 1; /* sign, then the level index */
        while ((1 << (bits - 1)) < levels)
            bits++;
        return bits;
    }
    default:
        return 32;
    }
}

unsigned fmi_pow2_bits(int emin, int emax)
{
    if (emin <= FM_QB_UNBOUNDED)
        return 9; /* sign and the 8-bit exponent field (zero included) */
    unsigned codes = (unsigned)(emax - emin + 3), bits = 1; /* 2^emin..2^(emax+1), and zero */
    while ((1u << (bits - 1)) < codes)
        bits++;
    return bits;
}

void fmi_quantize_weights(fm_weight_mode mode, const float *w, float *out, size_t n, float h,
                         int levels, float range, uint64_t key, uint64_t first)
{
    switch (mode) {
    case FM_WEIGHTS_BC:
        fmi_binarize_stochastic(w, out, n, h, key, first);
        break;
    case FM_WEIGHTS_TC:
        fmi_ternarize_stochastic(w, out, n, h, key, first);
        break;
    case FM_WEIGHTS_SYNAPSE:
        fmi_synapse_stochastic(w, out, n, h, levels, range, key, first);
        break;
    default:
        fmi_quantize_weights_det(mode, w, out, n, h, levels, range);
        break;
    }
}

void fmi_quantize_weights_det(fm_weight_mode mode, const float *w, float *out, size_t n, float h,
                             int levels, float range)
{
    switch (mode) {
    case FM_WEIGHTS_BC:
    case FM_WEIGHTS_BC_DET:
        fmi_binarize_det(w, out, n, h);
        break;
    case FM_WEIGHTS_TC:
    case FM_WEIGHTS_TC_DET:
        fmi_ternarize_det(w, out, n, h);
        break;
    case FM_WEIGHTS_SYNAPSE:
        fmi_synapse_det(w, out, n, h, levels, range);
        break;
    case FM_WEIGHTS_FP32:
    default:
        if (out != w)
            memcpy(out, w, n * sizeof *out);
        break;
    }
}
