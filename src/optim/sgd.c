/* sgd.c — stochastic gradient descent with momentum and the clip of latent
 * binary/ternary weights to [-H, H] that follows every step (authors' code). */
#include "optim.h"

void fm_sgd_step(float *p, const float *g, float *v, size_t n, float lr, float momentum, float clip)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float step = momentum * v[i] - lr * g[i];
        float q = p[i] + step;
        if (clip > 0.0f)
            q = q > clip ? clip : (q < -clip ? -clip : q);
        v[i] = step;
        p[i] = q;
    }
}
