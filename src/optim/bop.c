/* bop.c — Bop, the binary optimizer of Helwegen et al., "Latent Weights Do
 * Not Exist: Rethinking Binarized Neural Network Optimization" (NeurIPS
 * 2019): the binary weights are the state, with one momentum each, and a
 * weight flips when its momentum is strong enough and agrees with it. There
 * is no latent real weight to sample, clip or update. */
#include "optim.h"
#include "rng.h"

#include <math.h>

/* One momentum and weight; m_new is the momentum as kept. */
static inline float bop_flip(float wi, float m_new, float threshold)
{
    /* a positive momentum says the loss falls as w falls: a weight at +H goes
     * to -H (and the reverse) once the signal passes the threshold; a select,
     * not a branch, so that the loops vectorize */
    return fabsf(m_new) > threshold && (m_new > 0.0f) == (wi > 0.0f) ? -wi : wi;
}

void fmi_bop_step(float *w, const float *g, float *m, size_t n, float gamma, float threshold,
                  const fm_latent_round *round)
{
    const float keep = 1.0f - gamma;
    if (round) {
        const uint64_t key = round->key, first = round->first;
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            const float mi = fmi_round_bf16(keep * m[i] + gamma * g[i], fmi_rand_u32(key, first + i));
            m[i] = mi;
            w[i] = bop_flip(w[i], mi, threshold);
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            const float mi = keep * m[i] + gamma * g[i];
            m[i] = mi;
            w[i] = bop_flip(w[i], mi, threshold);
        }
    }
    FM_TALLY(FM_OP_FMUL, n);     /* gamma*g */
    FM_TALLY(FM_OP_FMA, n);      /* keep*m + . */
    FM_TALLY(FM_OP_SIGN, 2 * n); /* |m|, the flip (a select of -w) */
    FM_TALLY(FM_OP_CMP, 2 * n);  /* |m| > threshold, sign(m) == sign(w) */
    if (round) {
        FM_TALLY(FM_OP_RAND, n); /* the rounding's draw and add */
        FM_TALLY(FM_OP_IADD, n);
    }
}

void fmi_bop_cost(const fm_cost *c, uint64_t n, int bf16)
{
    fmi_cost_ops(c, FM_OP_FMUL, n);
    fmi_cost_ops(c, FM_OP_FMA, n);
    fmi_cost_ops(c, FM_OP_SIGN, 2 * n);
    fmi_cost_ops(c, FM_OP_CMP, 2 * n);
    if (bf16)
        fmi_round_bf16_cost(c, n);
}
