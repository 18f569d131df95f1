/* quant.c — binary, ternary, synapse-level and power-of-two quantizers.
 * Loops are written flat (no branches on random data) so the compiler
 * vectorizes them; every random draw is fm_rand_u32(key, i). */
#include "quant.h"
#include "rng.h"

#include <math.h>
#include <string.h>

/* 24 random bits as a float in [0,1): compare `u < p` so p <= 0 never fires and
 * p >= 1 always does, as Theano's binomial(p) = (u < p). */
static inline float uniform24(uint64_t key, size_t i) { return (float)(fm_rand_u32(key, i) >> 8) * 0x1p-24f; }

void fm_binarize_stochastic(const float *w, float *out, size_t n, float h, uint64_t key)
{
    const float inv = 0.5f / h;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float p = w[i] * inv + 0.5f; /* hard sigmoid of w/h; the compare clips it */
        out[i] = uniform24(key, i) < p ? h : -h;
    }
}

void fm_binarize_det(const float *w, float *out, size_t n, float h)
{
    for (size_t i = 0; i < n; i++)
        out[i] = w[i] >= 0.0f ? h : -h;
}

void fm_ternarize_stochastic(const float *w, float *out, size_t n, float h, uint64_t key)
{
    const float inv = 1.0f / h;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float p = fabsf(w[i]) * inv;
        float s = w[i] > 0.0f ? h : -h;
        out[i] = uniform24(key, i) < p ? s : 0.0f;
    }
}

void fm_ternarize_det(const float *w, float *out, size_t n, float h)
{
    const float half = 0.5f * h;
    for (size_t i = 0; i < n; i++)
        out[i] = w[i] > half ? h : (w[i] < -half ? -h : 0.0f);
}

float fm_synapse_level(float h, int levels, float range, int i)
{
    if (levels <= 1)
        return h;
    return h * powf(range, -(float)(levels - 1 - i) / (float)(levels - 1));
}

/* Position of magnitude a on the level scale: t = (levels-1) * (1 + log(a/h)/log(range)),
 * so level i sits at t = i. */
static inline float level_position(float a, float h, int levels, float log_range)
{
    return (float)(levels - 1) * (1.0f + logf(a / h) / log_range);
}

/* The level magnitudes of fm_synapse_level, once per call instead of a powf
 * per weight; levels is 2..FM_SYNAPSE_MAX_LEVELS. */
static void fill_levels(float *level, float h, int levels, float range)
{
    for (int k = 0; k < levels; k++)
        level[k] = fm_synapse_level(h, levels, range, k);
}

void fm_synapse_stochastic(const float *w, float *out, size_t n, float h, int levels, float range,
                           uint64_t key)
{
    if (levels <= 1) { /* one magnitude with a sign is the binary rule */
        fm_binarize_det(w, out, n, h);
        return;
    }
    float level[FM_SYNAPSE_MAX_LEVELS];
    fill_levels(level, h, levels, range);
    const float log_range = logf(range);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(w[i]);
        float s = w[i] >= 0.0f ? 1.0f : -1.0f;
        float q;
        if (a <= level[0]) {
            q = level[0];
        } else if (a >= h) {
            q = h;
        } else {
            int k = (int)floorf(level_position(a, h, levels, log_range));
            k = k < 0 ? 0 : (k > levels - 2 ? levels - 2 : k);
            /* logf's rounding can land one level off near a boundary: step
             * into [level[k], level[k+1]) so the probability stays in [0, 1] */
            k = a < level[k] && k > 0 ? k - 1 : k;
            k = a >= level[k + 1] && k < levels - 2 ? k + 1 : k;
            float lo = level[k], hi = level[k + 1];
            float p = (a - lo) / (hi - lo);
            q = uniform24(key, i) < p ? hi : lo;
        }
        out[i] = s * q;
    }
}

void fm_synapse_det(const float *w, float *out, size_t n, float h, int levels, float range)
{
    if (levels <= 1) {
        fm_binarize_det(w, out, n, h);
        return;
    }
    float level[FM_SYNAPSE_MAX_LEVELS];
    fill_levels(level, h, levels, range);
    const float log_range = logf(range);
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(w[i]);
        float s = w[i] >= 0.0f ? 1.0f : -1.0f;
        int k = 0;
        if (a > 0.0f) {
            float t = level_position(a, h, levels, log_range);
            k = t <= 0.0f ? 0 : (t >= (float)(levels - 1) ? levels - 1 : (int)lrintf(t));
        }
        out[i] = s * level[k];
    }
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

void fm_pow2_quantize(const float *x, float *out, size_t n, int emin, int emax, uint64_t key)
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
        q = pow2_bits(b, fm_rand_u32(key, i) >> 9, efield_min, efield_max);
        memcpy(&out[i], &q, sizeof q);
    }
}

void fm_quantize_weights(fm_weight_mode mode, const float *w, float *out, size_t n, float h,
                         int levels, float range, uint64_t key)
{
    switch (mode) {
    case FM_WEIGHTS_BC:
        fm_binarize_stochastic(w, out, n, h, key);
        break;
    case FM_WEIGHTS_TC:
        fm_ternarize_stochastic(w, out, n, h, key);
        break;
    case FM_WEIGHTS_SYNAPSE:
        fm_synapse_stochastic(w, out, n, h, levels, range, key);
        break;
    default:
        fm_quantize_weights_det(mode, w, out, n, h, levels, range);
        break;
    }
}

void fm_quantize_weights_det(fm_weight_mode mode, const float *w, float *out, size_t n, float h,
                             int levels, float range)
{
    switch (mode) {
    case FM_WEIGHTS_BC:
    case FM_WEIGHTS_BC_DET:
        fm_binarize_det(w, out, n, h);
        break;
    case FM_WEIGHTS_TC:
    case FM_WEIGHTS_TC_DET:
        fm_ternarize_det(w, out, n, h);
        break;
    case FM_WEIGHTS_SYNAPSE:
        fm_synapse_det(w, out, n, h, levels, range);
        break;
    case FM_WEIGHTS_FP32:
    default:
        if (out != w)
            memcpy(out, w, n * sizeof *out);
        break;
    }
}
