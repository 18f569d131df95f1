/* quant.h — the weight quantizers (binary, ternary, log-spaced "synapse" levels)
 * and the power-of-two quantizer Q(x) of quantized back-propagation.
 * Stochastic variants draw element i from number first + i of counter-based
 * stream `key` (rng.h), so results depend on (key, first + i) only: a tile of
 * rows of a matrix, drawn with its offset as `first`, draws what the whole would. */
#ifndef FEWMUL_QUANT_H
#define FEWMUL_QUANT_H

#include "fewmul.h"
#include "ledger.h"

#include <stddef.h>
#include <stdint.h>

/* Binary: out = +h with p = clip((w/h + 1)/2, 0, 1), else -h. */
void fmi_binarize_stochastic(const float *w, float *out, size_t n, float h, uint64_t key,
                            uint64_t first);
/* Binary, deterministic: out = h * sign(w), sign(0) = +1. */
void fmi_binarize_det(const float *w, float *out, size_t n, float h);
/* Ternary: out = h * sign(w) with p = clip(|w|/h, 0, 1), else 0. */
void fmi_ternarize_stochastic(const float *w, float *out, size_t n, float h, uint64_t key,
                             uint64_t first);
/* Ternary, deterministic: out = h * sign(w) if |w| > h/2, else 0 (the rounding of
 * the stochastic rule's expected value). */
void fmi_ternarize_det(const float *w, float *out, size_t n, float h);

/* The most synapse levels a quantizer takes (fm_config_check allows 2..255). */
#define FM_SYNAPSE_MAX_LEVELS 256
/* The smallest synapse level h/range the deterministic quantizer takes: its
 * geometric midpoints sqrtf(m_i * m_(i+1)) need a product of at least the
 * smallest normal float, 2^-126 (fm_config_check, fmi_model_build). */
#define FMI_SYNAPSE_MIN_LEVEL 0x1p-63f

/* Synapse levels: `levels` (1..FM_SYNAPSE_MAX_LEVELS) magnitudes m_i = h * range^(-(levels-1-i)/(levels-1)),
 * i = 0..levels-1, uniform on a log scale from h/range to h, with the sign of w
 * (sign(0) = +1). Stochastic: |w| between m_i and m_(i+1) rounds up with
 * probability (|w| - m_i)/(m_(i+1) - m_i), which is unbiased; |w| below m_0
 * becomes m_0, above h becomes h. Deterministic: the level nearest in log. */
void fmi_synapse_stochastic(const float *w, float *out, size_t n, float h, int levels, float range,
                           uint64_t key, uint64_t first);
void fmi_synapse_det(const float *w, float *out, size_t n, float h, int levels, float range);
/* The magnitude of level i (for tests and the ledger). */
float fmi_synapse_level(float h, int levels, float range, int i);

/* Quantized back-prop: Q(x) = sign(x) * 2^(k + Bernoulli(|x|/2^k - 1)),
 * k = floor(log2 |x|), so E[Q(x)] = x. With emin > FM_QB_UNBOUNDED, k is first
 * clipped to [emin, emax] as the authors' conv code does: |x| < 2^emin becomes
 * 2^emin and |x| >= 2^(emax+1) becomes 2^(emax+1). Q(0) = 0 always (see
 * docs/method.md; the authors' conv code maps 0 to -2^emin). Subnormal inputs
 * count as 0. Inf and NaN pass through. */
/* As the weight quantizers, value i draws number first + i of stream `key`:
 * a rank's rows of a global minibatch draw what the whole would. */
void fmi_pow2_quantize(const float *x, float *out, size_t n, int emin, int emax, uint64_t key,
                      uint64_t first);

/* Steps of a branch-free binary search over `count` sorted bounds (each an
 * add, a compare and a select): ceil(log2(count + 1)). Finding one of N
 * levels takes fmi_search_steps(N - 1). */
int fmi_search_steps(int count);

/* Applies a weight mode: training (stochastic modes sample) or the
 * deterministic counterpart used for evaluation and deployment. */
void fmi_quantize_weights(fm_weight_mode mode, const float *w, float *out, size_t n, float h,
                         int levels, float range, uint64_t key, uint64_t first);
void fmi_quantize_weights_det(fm_weight_mode mode, const float *w, float *out, size_t n, float h,
                             int levels, float range);

/* Declare to the ledger what the quantizers execute for n elements:
 * fmi_quantize_weights (stochastic = 1) or fmi_quantize_weights_det (0). */
void fmi_quantize_weights_cost(const fm_cost *cost, fm_weight_mode mode, int stochastic, uint64_t n,
                              int levels);
void fmi_pow2_quantize_cost(const fm_cost *cost, uint64_t n);
/* Bits of one stored weight of a mode (1, 2, sign + level index, or 32) and of
 * one Q(x) code (sign and exponent; 9 when the exponent is unbounded). */
unsigned fmi_weight_bits(fm_weight_mode mode, int levels);
unsigned fmi_pow2_bits(int emin, int emax);

#endif
