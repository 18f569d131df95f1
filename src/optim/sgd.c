/* sgd.c — stochastic gradient descent with momentum and the clip of latent
 * binary/ternary weights to [-H, H] that follows every step (authors' code).
 * Without momentum (the paper) the velocity is neither read nor written. */
#include "optim.h"

static inline float clip_to(float q, float clip)
{
    return q > clip ? clip : (q < -clip ? -clip : q);
}

void fmi_sgd_step(float *p, const float *g, float *v, size_t n, float lr, float momentum, float clip)
{
    const float neg_lr = -lr;
    if (momentum == 0.0f) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            float q = neg_lr * g[i] + p[i];
            p[i] = clip > 0.0f ? clip_to(q, clip) : q;
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            float step = momentum * v[i] + neg_lr * g[i];
            float q = p[i] + step;
            v[i] = step;
            p[i] = clip > 0.0f ? clip_to(q, clip) : q;
        }
    }
    FM_TALLY(momentum == 0.0f ? FM_OP_FMA : FM_OP_FMUL, n); /* -lr*g + p, or m*v */
    if (momentum != 0.0f) {
        FM_TALLY(FM_OP_FMA, n);  /* + -lr*g */
        FM_TALLY(FM_OP_FADD, n); /* p + step */
    }
    if (clip > 0.0f) {
        FM_TALLY(FM_OP_CMP, 2 * n);
        FM_TALLY(FM_OP_SIGN, 2 * n);
    }
}

void fmi_sgd_cost(const fm_cost *c, uint64_t n, int momentum, int clipped)
{
    if (momentum) {
        fmi_cost_ops(c, FM_OP_FMUL, n);
        fmi_cost_ops(c, FM_OP_FMA, n);
        fmi_cost_ops(c, FM_OP_FADD, n);
    } else {
        fmi_cost_ops(c, FM_OP_FMA, n);
    }
    if (clipped) {
        fmi_cost_ops(c, FM_OP_CMP, 2 * n);
        fmi_cost_ops(c, FM_OP_SIGN, 2 * n);
    }
}
