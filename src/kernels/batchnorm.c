/* batchnorm.c — batch normalization per feature (Ioffe & Szegedy), as the
 * authors use it after every layer: eps 1e-4, biased batch variance, learned
 * scale gamma and shift beta. Features are split across threads in blocks.
 * Per-feature factors are formed once, so each element costs the same few
 * operations, which fm_bn_cost_* declare to the energy ledger. */
#include "layers.h"

#include <math.h>
#include <string.h>

/* Features per thread block: wide enough to vectorize the inner loop. */
#define BN_BLOCK 64
/* Parallel above this many elements. */
#define BN_PARALLEL 32768

void fmi_bn_batch_stats(const float *x, int batch, int dim, float *mean, float *var)
{
    const float inv_b = 1.0f / (float)batch;
#pragma omp parallel for schedule(static) if ((long)batch * dim > BN_PARALLEL)
    for (int j0 = 0; j0 < dim; j0 += BN_BLOCK) {
        int j1 = j0 + BN_BLOCK < dim ? j0 + BN_BLOCK : dim;
        float sum[BN_BLOCK] = {0}, sq[BN_BLOCK] = {0};
        for (int b = 0; b < batch; b++) {
            const float *row = x + (long)b * dim;
            for (int j = j0; j < j1; j++)
                sum[j - j0] += row[j];
        }
        for (int j = j0; j < j1; j++)
            mean[j] = sum[j - j0] * inv_b;
        /* two passes: the variance of centred values loses no precision */
        for (int b = 0; b < batch; b++) {
            const float *row = x + (long)b * dim;
            for (int j = j0; j < j1; j++) {
                float d = row[j] - mean[j];
                sq[j - j0] += d * d;
            }
        }
        for (int j = j0; j < j1; j++)
            var[j] = sq[j - j0] * inv_b;
    }
    FM_TALLY(FM_OP_FADD, 2 * (uint64_t)batch * dim);
    FM_TALLY(FM_OP_FMA, (uint64_t)batch * dim);
    FM_TALLY(FM_OP_FMUL, 2 * (uint64_t)dim);
}

void fmi_bn_cost_batch_stats(const fm_cost *c, int batch, int dim)
{
    fmi_cost_ops(c, FM_OP_FADD, 2 * (uint64_t)batch * dim); /* sum; x - mean */
    fmi_cost_ops(c, FM_OP_FMA, (uint64_t)batch * dim);      /* sq += d*d */
    fmi_cost_ops(c, FM_OP_FMUL, 2 * (uint64_t)dim);         /* times 1/B */
}

void fmi_bn_forward_train(const float *x, float *y, int batch, int dim, const float *gamma,
                         const float *beta, float eps, float *mean, float *invstd)
{
    /* invstd holds the variance until converted below */
    fmi_bn_batch_stats(x, batch, dim, mean, invstd);
    for (int j = 0; j < dim; j++)
        invstd[j] = 1.0f / sqrtf(invstd[j] + eps);
#pragma omp parallel for schedule(static) if ((long)batch * dim > BN_PARALLEL)
    for (int b = 0; b < batch; b++) {
        const float *xr = x + (long)b * dim;
        float *yr = y + (long)b * dim;
        for (int j = 0; j < dim; j++)
            yr[j] = gamma[j] * ((xr[j] - mean[j]) * invstd[j]) + beta[j];
    }
    FM_TALLY(FM_OP_FADD, (uint64_t)dim);
    FM_TALLY(FM_OP_FSPECIAL, 2 * (uint64_t)dim);
    FM_TALLY(FM_OP_FADD, (uint64_t)batch * dim);
    FM_TALLY(FM_OP_FMUL, (uint64_t)batch * dim);
    FM_TALLY(FM_OP_FMA, (uint64_t)batch * dim);
}

void fmi_bn_cost_forward_train(const fm_cost *c, int batch, int dim)
{
    uint64_t n = (uint64_t)batch * dim;
    fmi_bn_cost_batch_stats(c, batch, dim);
    fmi_cost_ops(c, FM_OP_FADD, (uint64_t)dim);         /* var + eps */
    fmi_cost_ops(c, FM_OP_FSPECIAL, 2 * (uint64_t)dim); /* sqrt, 1/ */
    fmi_cost_ops(c, FM_OP_FADD, n);                     /* x - mean */
    fmi_cost_ops(c, FM_OP_FMUL, n);                     /* * invstd */
    fmi_cost_ops(c, FM_OP_FMA, n);                      /* gamma * . + beta */
}

void fmi_bn_forward_infer(const float *x, float *y, int batch, int dim, const float *gamma,
                         const float *beta, float eps, const float *mean, const float *var)
{
    /* y = x * s + t with s = gamma / sqrt(var + eps), t = beta - mean * s */
#pragma omp parallel for schedule(static) if ((long)batch * dim > BN_PARALLEL)
    for (int j0 = 0; j0 < dim; j0 += BN_BLOCK) {
        int j1 = j0 + BN_BLOCK < dim ? j0 + BN_BLOCK : dim;
        float s[BN_BLOCK], t[BN_BLOCK];
        for (int j = j0; j < j1; j++)
            fmi_bn_fold(gamma[j], beta[j], mean[j], var[j], eps, &s[j - j0], &t[j - j0]);
        for (int b = 0; b < batch; b++) {
            const float *xr = x + (long)b * dim;
            float *yr = y + (long)b * dim;
            for (int j = j0; j < j1; j++)
                yr[j] = xr[j] * s[j - j0] + t[j - j0];
        }
    }
    FM_TALLY(FM_OP_FADD, (uint64_t)dim);
    FM_TALLY(FM_OP_FSPECIAL, 2 * (uint64_t)dim);
    FM_TALLY(FM_OP_FMA, (uint64_t)dim + (uint64_t)batch * dim);
}

void fmi_bn_cost_forward_infer(const fm_cost *c, int batch, int dim)
{
    fmi_cost_ops(c, FM_OP_FADD, (uint64_t)dim);                       /* var + eps */
    fmi_cost_ops(c, FM_OP_FSPECIAL, 2 * (uint64_t)dim);               /* sqrt, gamma / */
    fmi_cost_ops(c, FM_OP_FMA, (uint64_t)dim + (uint64_t)batch * dim); /* t; x * s + t */
}

void fmi_bn_backward(const float *x, const float *dy, float *dx, int batch, int dim,
                    const float *gamma, const float *mean, const float *invstd, float *dgamma,
                    float *dbeta)
{
    /* With xhat = (x-mean)*invstd:
     *   dbeta = sum dy, dgamma = sum dy*xhat,
     *   dx = gamma*invstd * (dy - (dbeta + xhat*dgamma)/B). */
    const float inv_b = 1.0f / (float)batch;
#pragma omp parallel for schedule(static) if ((long)batch * dim > BN_PARALLEL)
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
        float k[BN_BLOCK], mb[BN_BLOCK], mg[BN_BLOCK];
        for (int j = j0; j < j1; j++) {
            k[j - j0] = gamma[j] * invstd[j];
            mb[j - j0] = sb[j - j0] * inv_b;
            mg[j - j0] = sg[j - j0] * inv_b;
        }
        for (int b = 0; b < batch; b++) {
            const float *xr = x + (long)b * dim, *dr = dy + (long)b * dim;
            float *out = dx + (long)b * dim;
            for (int j = j0; j < j1; j++) {
                float xhat = (xr[j] - mean[j]) * invstd[j];
                out[j] = k[j - j0] * (dr[j] - (mb[j - j0] + xhat * mg[j - j0]));
            }
        }
    }
    uint64_t n = (uint64_t)batch * dim;
    FM_TALLY(FM_OP_FADD, 2 * n);
    FM_TALLY(FM_OP_FMUL, n);
    FM_TALLY(FM_OP_FMA, n);
    if (dx) {
        FM_TALLY(FM_OP_FMUL, 3 * (uint64_t)dim);
        FM_TALLY(FM_OP_FADD, 2 * n);
        FM_TALLY(FM_OP_FMUL, 2 * n);
        FM_TALLY(FM_OP_FMA, n);
    }
    (void)n;
}

/* ---- a minibatch split over ranks ----
 * The same arithmetic as above, cut where the statistics need every rank's
 * rows: the caller sums the partial sums over the ranks between the calls and
 * divides by the whole minibatch's rows. The operations per element are those
 * of the undivided functions, so their ledger declarations hold. */

void fmi_bn_sums(const float *x, int rows, int dim, float *sum)
{
    memset(sum, 0, (size_t)dim * sizeof *sum);
    for (int b = 0; b < rows; b++) {
        const float *row = x + (long)b * dim;
        for (int j = 0; j < dim; j++)
            sum[j] += row[j];
    }
    FM_TALLY(FM_OP_FADD, (uint64_t)rows * dim);
}

void fmi_bn_centred_squares(const float *x, int rows, int dim, const float *mean, float *sq)
{
    memset(sq, 0, (size_t)dim * sizeof *sq);
    for (int b = 0; b < rows; b++) {
        const float *row = x + (long)b * dim;
        for (int j = 0; j < dim; j++) {
            float d = row[j] - mean[j];
            sq[j] += d * d;
        }
    }
    FM_TALLY(FM_OP_FADD, (uint64_t)rows * dim);
    FM_TALLY(FM_OP_FMA, (uint64_t)rows * dim);
}

void fmi_bn_normalize(const float *x, float *y, int rows, int dim, const float *gamma,
                     const float *beta, const float *mean, const float *invstd)
{
#pragma omp parallel for schedule(static) if ((long)rows * dim > BN_PARALLEL)
    for (int b = 0; b < rows; b++) {
        const float *xr = x + (long)b * dim;
        float *yr = y + (long)b * dim;
        for (int j = 0; j < dim; j++)
            yr[j] = gamma[j] * ((xr[j] - mean[j]) * invstd[j]) + beta[j];
    }
    FM_TALLY(FM_OP_FADD, (uint64_t)rows * dim);
    FM_TALLY(FM_OP_FMUL, (uint64_t)rows * dim);
    FM_TALLY(FM_OP_FMA, (uint64_t)rows * dim);
}

void fmi_bn_backward_sums(const float *x, const float *dy, int rows, int dim, const float *mean,
                         const float *invstd, float *dgamma, float *dbeta)
{
    memset(dgamma, 0, (size_t)dim * sizeof *dgamma);
    memset(dbeta, 0, (size_t)dim * sizeof *dbeta);
    for (int b = 0; b < rows; b++) {
        const float *xr = x + (long)b * dim, *dr = dy + (long)b * dim;
        for (int j = 0; j < dim; j++) {
            float xhat = (xr[j] - mean[j]) * invstd[j];
            dbeta[j] += dr[j];
            dgamma[j] += dr[j] * xhat;
        }
    }
    uint64_t n = (uint64_t)rows * dim;
    FM_TALLY(FM_OP_FADD, 2 * n);
    FM_TALLY(FM_OP_FMUL, n);
    FM_TALLY(FM_OP_FMA, n);
    (void)n;
}

void fmi_bn_backward_input(const float *x, const float *dy, float *dx, int rows, int total_rows,
                          int dim, const float *gamma, const float *mean, const float *invstd,
                          const float *dgamma, const float *dbeta)
{
    const float inv_b = 1.0f / (float)total_rows;
#pragma omp parallel for schedule(static) if ((long)rows * dim > BN_PARALLEL)
    for (int j0 = 0; j0 < dim; j0 += BN_BLOCK) {
        int j1 = j0 + BN_BLOCK < dim ? j0 + BN_BLOCK : dim;
        float k[BN_BLOCK], mb[BN_BLOCK], mg[BN_BLOCK];
        for (int j = j0; j < j1; j++) {
            k[j - j0] = gamma[j] * invstd[j];
            mb[j - j0] = dbeta[j] * inv_b;
            mg[j - j0] = dgamma[j] * inv_b;
        }
        for (int b = 0; b < rows; b++) {
            const float *xr = x + (long)b * dim, *dr = dy + (long)b * dim;
            float *out = dx + (long)b * dim;
            for (int j = j0; j < j1; j++) {
                float xhat = (xr[j] - mean[j]) * invstd[j];
                out[j] = k[j - j0] * (dr[j] - (mb[j - j0] + xhat * mg[j - j0]));
            }
        }
    }
    uint64_t n = (uint64_t)rows * dim;
    FM_TALLY(FM_OP_FMUL, 3 * (uint64_t)dim);
    FM_TALLY(FM_OP_FADD, 2 * n);
    FM_TALLY(FM_OP_FMUL, 2 * n);
    FM_TALLY(FM_OP_FMA, n);
    (void)n;
}

void fmi_bn_cost_backward(const fm_cost *c, int batch, int dim, int with_dx)
{
    uint64_t n = (uint64_t)batch * dim;
    fmi_cost_ops(c, FM_OP_FADD, 2 * n); /* x - mean; sb += dy */
    fmi_cost_ops(c, FM_OP_FMUL, n);     /* xhat */
    fmi_cost_ops(c, FM_OP_FMA, n);      /* sg += dy * xhat */
    if (with_dx) {
        fmi_cost_ops(c, FM_OP_FMUL, 3 * (uint64_t)dim); /* k, mb, mg */
        fmi_cost_ops(c, FM_OP_FADD, 2 * n);             /* x - mean; dy - . */
        fmi_cost_ops(c, FM_OP_FMUL, 2 * n);             /* xhat; k * . */
        fmi_cost_ops(c, FM_OP_FMA, n);                  /* mb + xhat * mg */
    }
}
