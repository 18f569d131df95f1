/* adam.c — Adam with bias correction, with the same post-step clip as SGD. The
 * per-group learning-rate multiplier carries BinaryConnect's Glorot scaling. */
#include "optim.h"

#include <math.h>

void fmi_adam_step(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                  float beta2, float eps, long t, float clip)
{
    /* step scalars, formed once per call (not counted by the ledger) */
    const float c2 = 1.0f / (1.0f - powf(beta2, (float)t));
    const float rate = lr / (1.0f - powf(beta1, (float)t));
    const float a1 = 1.0f - beta1, a2 = 1.0f - beta2;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        m[i] = beta1 * m[i] + a1 * g[i];
        v[i] = beta2 * v[i] + a2 * g[i] * g[i];
        float q = p[i] - rate * m[i] / (sqrtf(v[i] * c2) + eps);
        if (clip > 0.0f)
            q = q > clip ? clip : (q < -clip ? -clip : q);
        p[i] = q;
    }
    FM_TALLY(FM_OP_FMUL, 5 * n);     /* a1*g, a2*g, *g, v*c2, rate*m */
    FM_TALLY(FM_OP_FMA, 2 * n);      /* beta1*m + ., beta2*v + . */
    FM_TALLY(FM_OP_FSPECIAL, 2 * n); /* sqrt, divide */
    FM_TALLY(FM_OP_FADD, 2 * n);     /* + eps, p - . */
    if (clip > 0.0f) {
        FM_TALLY(FM_OP_CMP, 2 * n);
        FM_TALLY(FM_OP_SIGN, 2 * n);
    }
}

void fmi_adam_cost(const fm_cost *c, uint64_t n, int clipped)
{
    fmi_cost_ops(c, FM_OP_FMUL, 5 * n);
    fmi_cost_ops(c, FM_OP_FMA, 2 * n);
    fmi_cost_ops(c, FM_OP_FSPECIAL, 2 * n);
    fmi_cost_ops(c, FM_OP_FADD, 2 * n);
    if (clipped) {
        fmi_cost_ops(c, FM_OP_CMP, 2 * n);
        fmi_cost_ops(c, FM_OP_SIGN, 2 * n);
    }
}
