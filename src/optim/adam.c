/* adam.c — Adam with bias correction, with the same post-step clip as SGD. The
 * per-group learning-rate multiplier carries BinaryConnect's Glorot scaling. */
#include "optim.h"

#include <math.h>

void fm_adam_step(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                  float beta2, float eps, long t, float clip)
{
    const float c1 = 1.0f / (1.0f - powf(beta1, (float)t));
    const float c2 = 1.0f / (1.0f - powf(beta2, (float)t));
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        float q = p[i] - lr * (m[i] * c1) / (sqrtf(v[i] * c2) + eps);
        if (clip > 0.0f)
            q = q > clip ? clip : (q < -clip ? -clip : q);
        p[i] = q;
    }
}
