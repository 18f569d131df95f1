/* batchnorm.c — batch normalization per feature (Ioffe & Szegedy), as the
 * authors use it after every layer: eps 1e-4, biased batch variance, learned
 * scale gamma and shift beta. Features are split across threads in blocks. */
#include "layers.h"

#include <math.h>
#include <string.h>

/* Features per thread block: wide enough to vectorize the inner loop. */
#define BN_BLOCK 64

void fm_bn_batch_stats(const float *x, int batch, int dim, float *mean, float *var)
{
#pragma omp parallel for schedule(static) if ((long)batch * dim > 32768)
    for (int j0 = 0; j0 < dim; j0 += BN_BLOCK) {
        int j1 = j0 + BN_BLOCK < dim ? j0 + BN_BLOCK : dim;
        float sum[BN_BLOCK] = {0}, sq[BN_BLOCK] = {0};
        for (int b = 0; b < batch; b++) {
            const float *row = x + (long)b * dim;
            for (int j = j0; j < j1; j++)
                sum[j - j0] += row[j];
        }
        for (int j = j0; j < j1; j++)
            mean[j] = sum[j - j0] / (float)batch;
        /* two passes: the variance of centred values loses no precision */
        for (int b = 0; b < batch; b++) {
            const float *row = x + (long)b * dim;
            for (int j = j0; j < j1; j++) {
                float d = row[j] - mean[j];
                sq[j - j0] += d * d;
            }
        }
        for (int j = j0; j < j1; j++)
            var[j] = sq[j - j0] / (float)batch;
    }
}

void fm_bn_forward_train(const float *x, float *y, int batch, int dim, const float *gamma,
                         const float *beta, float eps, float *mean, float *invstd)
{
    /* invstd holds the variance until converted below */
    fm_bn_batch_stats(x, batch, dim, mean, invstd);
    for (int j = 0; j < dim; j++)
        invstd[j] = 1.0f / sqrtf(invstd[j] + eps);
#pragma omp parallel for schedule(static) if ((long)batch * dim > 32768)
    for (int b = 0; b < batch; b++) {
        const float *xr = x + (long)b * dim;
        float *yr = y + (long)b * dim;
        for (int j = 0; j < dim; j++)
            yr[j] = gamma[j] * ((xr[j] - mean[j]) * invstd[j]) + beta[j];
    }
}

void fm_bn_forward_infer(const float *x, float *y, int batch, int dim, const float *gamma,
                         const float *beta, float eps, const float *mean, const float *var)
{
#pragma omp parallel for schedule(static) if ((long)batch * dim > 32768)
    for (int b = 0; b < batch; b++) {
        const float *xr = x + (long)b * dim;
        float *yr = y + (long)b * dim;
        for (int j = 0; j < dim; j++)
            yr[j] = gamma[j] * ((xr[j] - mean[j]) / sqrtf(var[j] + eps)) + beta[j];
    }
}

void fm_bn_backward(const float *x, const float *dy, float *dx, int batch, int dim,
                    const float *gamma, const float *mean, const float *invstd, float *dgamma,
                    float *dbeta)
{
    /* With xhat = (x-mean)*invstd:
     *   dbeta = sum dy, dgamma = sum dy*xhat,
     *   dx = gamma*invstd/B * (B*dy - dbeta - xhat*dgamma). */
#pragma omp parallel for schedule(static) if ((long)batch * dim > 32768)
    for (int j0 = 0; j0 < dim; j0 += BN_BLOCK) {
        int j1 = j0 + BN_BLOCK < dim ? j0 + BN_BLOCK : dim;
        float sg[BN_BLOCK] = {0}, sb[BN_BLOCK] = {0};
        for (int b = 0; b < batch; b++) {
            const float *xr = x + (long)b * dim, *dr = dy + (long)b * dim;
            for (int j = j0; j < j1; j++) {
                float xhat = (xr[j] - mean[j]) * invstd[j];
                sb[j - j0] += dr[j];
                sg[j - j0] += dr[j] * xhat;
            }
        }
        for (int j = j0; j < j1; j++) {
            dgamma[j] = sg[j - j0];
            dbeta[j] = sb[j - j0];
        }
        if (!dx)
            continue;
        const float inv_b = 1.0f / (float)batch;
        for (int b = 0; b < batch; b++) {
            const float *xr = x + (long)b * dim, *dr = dy + (long)b * dim;
            float *out = dx + (long)b * dim;
            for (int j = j0; j < j1; j++) {
                float xhat = (xr[j] - mean[j]) * invstd[j];
                out[j] = gamma[j] * invstd[j] *
                         (dr[j] - (sb[j - j0] + xhat * sg[j - j0]) * inv_b);
            }
        }
    }
}
