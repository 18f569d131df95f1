/* test_preprocess.c — GCN, ZCA whitening, the symmetric eigensolver and
 * LeCun LCN (src/data/preprocess.c) against pylearn2's formulas, written out
 * again here in double precision and independently of the library's code
 * (direct 2-D convolutions, dense products), plus hand-computed small cases,
 * known spectra, error paths, allocation failures, and the same ZCA on 1 and
 * 2 threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "preprocess.h"
#include "rng.h"

/* ---- helpers --------------------------------------------------------------- */

static double urand(fm_rng *rng) { return 2.0 * fmi_rng_uniform(rng) - 1.0; }

static double *dalloc(size_t count)
{
    double *p = calloc(count, sizeof(double));
    assert_non_null(p);
    return p;
}

static float *falloc(size_t count)
{
    float *p = calloc(count, sizeof(float));
    assert_non_null(p);
    return p;
}

/* A random orthogonal n x n matrix: Gram-Schmidt (twice) on random columns. */
static void random_orthogonal(double *q, int n, fm_rng *rng)
{
    for (int i = 0; i < n * n; i++)
        q[i] = urand(rng);
    for (int c = 0; c < n; c++)
        for (int pass = 0; pass < 2; pass++) {
            for (int p = 0; p < c; p++) {
                double dot = 0;
                for (int r = 0; r < n; r++)
                    dot += q[r * n + c] * q[r * n + p];
                for (int r = 0; r < n; r++)
                    q[r * n + c] -= dot * q[r * n + p];
            }
            double norm = 0;
            for (int r = 0; r < n; r++)
                norm += q[r * n + c] * q[r * n + c];
            norm = sqrt(norm);
            for (int r = 0; r < n; r++)
                q[r * n + c] /= norm;
        }
}

/* a = q diag(lambda) qᵀ */
static void compose(double *a, const double *q, const double *lambda, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++)
                s += q[i * n + k] * lambda[k] * q[j * n + k];
            a[i * n + j] = s;
        }
}

/* Checks an eigen-decomposition of a0 (kept intact): ascending values,
 * orthonormal columns, A V = V diag(values); tol relative to the norm of a0. */
static void check_eigen(const double *a0, int n, const double *values, const double *v, double tol)
{
    double scale = 0;
    for (int i = 0; i < n * n; i++)
        scale = fmax(scale, fabs(a0[i]));
    scale = fmax(scale * n, 1e-300);
    for (int i = 1; i < n; i++)
        if (values[i] < values[i - 1])
            fail_msg("values not ascending at %d: %.17g < %.17g", i, values[i], values[i - 1]);
    for (int p = 0; p < n; p++)
        for (int q = p; q < n; q++) {
            double dot = 0;
            for (int r = 0; r < n; r++)
                dot += v[r * n + p] * v[r * n + q];
            double expect = p == q ? 1.0 : 0.0;
            if (fabs(dot - expect) > tol)
                fail_msg("n=%d: columns %d, %d have dot %.3e, expected %g", n, p, q, dot, expect);
        }
    for (int i = 0; i < n; i++)
        for (int c = 0; c < n; c++) {
            double av = 0;
            for (int k = 0; k < n; k++)
                av += a0[i * n + k] * v[k * n + c];
            if (fabs(av - values[c] * v[i * n + c]) > tol * scale)
                fail_msg("n=%d: (A v - lambda v)[%d] of vector %d is %.3e", n, i, c,
                         av - values[c] * v[i * n + c]);
        }
}

/* Runs fmi_sym_eigen on a copy of a0 and checks it; returns values/vectors. */
static void eigen_and_check(const double *a0, int n, double *values, double *v, double tol)
{
    double *a = dalloc((size_t)n * n);
    memcpy(a, a0, sizeof(double) * n * n);
    assert_int_equal(fmi_sym_eigen(a, n, values, v), FM_OK);
    check_eigen(a0, n, values, v, tol);
    free(a);
}

/* ---- GCN ------------------------------------------------------------------- */

static void test_gcn_constants(void **state)
{
    (void)state;
    assert_true(fmi_gcn_cifar10.scale == 55.0f && fmi_gcn_cifar10.sqrt_bias == 0.0f &&
                fmi_gcn_cifar10.min_divisor == 1e-8f && fmi_gcn_cifar10.use_std == 0);
    assert_true(fmi_gcn_svhn.scale == 1.0f && fmi_gcn_svhn.sqrt_bias == 0.0f && fmi_gcn_svhn.min_divisor == 1e-8f &&
                fmi_gcn_svhn.use_std == 0);
    assert_true(FM_ZCA_FILTER_BIAS == 0.1);
    assert_int_equal(FM_LCN_KERNEL, 7);
    assert_true(FM_LCN_THRESHOLD == 1e-4f);
    assert_true(FM_LCN_SIGMA == 2.0);
}

/* pylearn2's formula in double, straight from its definition */
static void gcn_reference(const float *in, double *out, int dim, double scale, double sqrt_bias, double min_div,
                          int use_std)
{
    double mean = 0;
    for (int i = 0; i < dim; i++)
        mean += in[i];
    mean /= dim;
    double ss = 0;
    for (int i = 0; i < dim; i++)
        ss += (in[i] - mean) * (in[i] - mean);
    double normalizer = (use_std ? sqrt(sqrt_bias + ss / (dim - 1)) : sqrt(sqrt_bias + ss)) / scale;
    if (normalizer < min_div)
        normalizer = 1;
    for (int i = 0; i < dim; i++)
        out[i] = (in[i] - mean) / normalizer;
}

static void test_gcn_norm(void **state)
{
    (void)state;
    enum { DIM = 192 };
    fm_rng rng;
    fmi_rng_seed(&rng, 1);
    float x[DIM], x0[DIM];
    double ref[DIM];
    for (int i = 0; i < DIM; i++)
        x[i] = x0[i] = (float)fmi_rng_below(&rng, 256);
    fmi_gcn(x, DIM, &fmi_gcn_cifar10);
    gcn_reference(x0, ref, DIM, 55, 0, 1e-8, 0);
    double sum = 0, ss = 0;
    for (int i = 0; i < DIM; i++) {
        sum += x[i];
        ss += (double)x[i] * x[i];
        assert_true(fabs(x[i] - ref[i]) < 1e-5 * 55);
    }
    assert_true(fabs(sum) < 1e-3);
    assert_true(fabs(sqrt(ss) - 55.0) < 1e-4);

    /* SVHN: unit L2 norm */
    memcpy(x, x0, sizeof x);
    fmi_gcn(x, DIM, &fmi_gcn_svhn);
    ss = 0;
    for (int i = 0; i < DIM; i++)
        ss += (double)x[i] * x[i];
    assert_true(fabs(sqrt(ss) - 1.0) < 1e-6);
}

/* use_std divides by the ddof=1 standard deviation (numpy's var(ddof=1)),
 * sqrt_bias goes inside the root */
static void test_gcn_std_and_bias(void **state)
{
    (void)state;
    enum { DIM = 10 };
    const float in[DIM] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
    float x[DIM];
    double ref[DIM];
    const fm_gcn_params std = {2.0f, 0.0f, 1e-8f, 1};
    memcpy(x, in, sizeof x);
    fmi_gcn(x, DIM, &std);
    double ss = 0;
    for (int i = 0; i < DIM; i++)
        ss += (double)x[i] * x[i];
    assert_true(fabs(sqrt(ss / (DIM - 1)) - 2.0) < 1e-6); /* sample std = scale */

    const fm_gcn_params biased = {1.0f, 10.0f, 1e-8f, 1};
    memcpy(x, in, sizeof x);
    fmi_gcn(x, DIM, &biased);
    gcn_reference(in, ref, DIM, 1, 10, 1e-8, 1);
    for (int i = 0; i < DIM; i++)
        assert_true(fabs(x[i] - ref[i]) < 1e-6);

    const fm_gcn_params norm_bias = {3.0f, 7.0f, 1e-8f, 0};
    memcpy(x, in, sizeof x);
    fmi_gcn(x, DIM, &norm_bias);
    gcn_reference(in, ref, DIM, 3, 7, 1e-8, 0);
    for (int i = 0; i < DIM; i++)
        assert_true(fabs(x[i] - ref[i]) < 1e-6);
}

/* a normalizer (norm / scale) under min_divisor is replaced by 1: the example
 * is centred but not scaled, and a constant one becomes zeros, not NaN */
static void test_gcn_min_divisor(void **state)
{
    (void)state;
    float flat[5] = {7, 7, 7, 7, 7};
    fmi_gcn(flat, 5, &fmi_gcn_cifar10);
    for (int i = 0; i < 5; i++)
        assert_true(flat[i] == 0.0f);
    float tiny[4] = {2e-9f, -2e-9f, 1e-9f, -1e-9f}; /* norm 3.2e-9: / 55 < 1e-8 */
    fmi_gcn(tiny, 4, &fmi_gcn_cifar10);
    const float expect[4] = {2e-9f, -2e-9f, 1e-9f, -1e-9f};
    for (int i = 0; i < 4; i++)
        assert_true(fabs(tiny[i] - expect[i]) < 1e-15);
    /* just above the cut it is scaled to norm 55 */
    float above[2] = {4e-7f, -4e-7f}; /* norm 5.7e-7: / 55 = 1.03e-8 */
    fmi_gcn(above, 2, &fmi_gcn_cifar10);
    assert_true(fabs(hypot(above[0], above[1]) - 55.0) < 1e-3);
    fmi_gcn(NULL, 4, &fmi_gcn_cifar10); /* no crash */
    fmi_gcn(tiny, 0, &fmi_gcn_cifar10);
}

/* ---- symmetric eigensolver -------------------------------------------------- */

static void test_eigen_small_known(void **state)
{
    (void)state;
    double a[4], values[2], v[4];
    a[0] = -3.5;
    assert_int_equal(fmi_sym_eigen(a, 1, values, v), FM_OK);
    assert_true(values[0] == -3.5 && fabs(v[0]) == 1.0);

    double a2[4] = {2, 1, 1, 2};
    memcpy(a, a2, sizeof a2);
    assert_int_equal(fmi_sym_eigen(a, 2, values, v), FM_OK);
    assert_true(fabs(values[0] - 1) < 1e-15 && fabs(values[1] - 3) < 1e-15);
    /* vector of 1 is ±(1, -1)/√2, of 3 is ±(1, 1)/√2 (columns) */
    const double h = sqrt(0.5);
    assert_true(fabs(fabs(v[0]) - h) < 1e-15 && fabs(v[0] + v[2]) < 1e-15);
    assert_true(fabs(fabs(v[1]) - h) < 1e-15 && fabs(v[1] - v[3]) < 1e-15);
    check_eigen(a2, 2, values, v, 1e-14);

    /* only the lower triangle is read */
    double a3[4] = {2, 1e300, 1, 2};
    assert_int_equal(fmi_sym_eigen(a3, 2, values, v), FM_OK);
    assert_true(fabs(values[0] - 1) < 1e-15 && fabs(values[1] - 3) < 1e-15);
}

static void test_eigen_diagonal(void **state)
{
    (void)state;
    enum { N = 7 };
    const double diag[N] = {4, -1, 0, 9, 2.5, -7, 3};
    const double sorted[N] = {-7, -1, 0, 2.5, 3, 4, 9};
    double a0[N * N] = {0}, values[N], v[N * N];
    for (int i = 0; i < N; i++)
        a0[i * N + i] = diag[i];
    eigen_and_check(a0, N, values, v, 1e-14);
    for (int i = 0; i < N; i++) {
        assert_true(values[i] == sorted[i]);
        /* each column is a unit basis vector, at the row of that diagonal entry */
        int row = -1;
        for (int r = 0; r < N; r++)
            if (diag[r] == sorted[i])
                row = r;
        assert_true(fabs(fabs(v[row * N + i]) - 1.0) < 1e-15);
    }
    /* the zero matrix */
    double z[16] = {0}, zv[16], zval[4];
    double z0[16] = {0};
    assert_int_equal(fmi_sym_eigen(z, 4, zval, zv), FM_OK);
    check_eigen(z0, 4, zval, zv, 1e-15);
}

static void test_eigen_repeated(void **state)
{
    (void)state;
    enum { N = 9 };
    const double lambda[N] = {5, 1, 9, 1, 5, 1, -2, 9, 5};
    const double sorted[N] = {-2, 1, 1, 1, 5, 5, 5, 9, 9};
    fm_rng rng;
    fmi_rng_seed(&rng, 7);
    double q[N * N], a0[N * N], values[N], v[N * N];
    random_orthogonal(q, N, &rng);
    compose(a0, q, lambda, N);
    eigen_and_check(a0, N, values, v, 1e-13);
    for (int i = 0; i < N; i++)
        assert_true(fabs(values[i] - sorted[i]) < 1e-13);
}

/* A random SPD matrix of a few hundred, and the Wilkinson matrix W21+ (pairs of
 * nearly equal eigenvalues), against LAPACK's dsyevd when the build has it. */
static void test_eigen_random_spd(void **state)
{
    (void)state;
    enum { N = 240, M = 300 };
    fm_rng rng;
    fmi_rng_seed(&rng, 11);
    double *b = dalloc((size_t)N * M), *a0 = dalloc((size_t)N * N), *a = dalloc((size_t)N * N);
    double *v = dalloc((size_t)N * N), *values = dalloc(N);
    for (int i = 0; i < N * M; i++)
        b[i] = urand(&rng);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < M; k++)
                s += b[i * M + k] * b[j * M + k];
            a0[i * N + j] = s / M + (i == j ? 0.01 : 0.0);
        }
    eigen_and_check(a0, N, values, v, 1e-12);
    double trace = 0, sum = 0;
    for (int i = 0; i < N; i++) {
        trace += a0[i * N + i];
        sum += values[i];
    }
    assert_true(fabs(trace - sum) < 1e-10 * trace);
    assert_true(values[0] > 0);

    /* the same through dsyevd: equal eigenvalues, eigenvectors equal up to sign
     * (all of this spectrum's gaps are far above the rounding) */
    double *lv = dalloc((size_t)N * N), *lvalues = dalloc(N);
    memcpy(a, a0, sizeof(double) * N * N);
    int rc = fmi_sym_eigen_lapack(a, N, lvalues, lv);
    print_message("fmi_sym_eigen vs dsyevd: %s\n", rc == FM_OK ? "compared" : "no LAPACK in this build");
    if (rc == FM_OK) {
        check_eigen(a0, N, lvalues, lv, 1e-12);
        for (int i = 0; i < N; i++) {
            assert_true(fabs(values[i] - lvalues[i]) < 1e-12 * values[N - 1]);
            double gap = INFINITY;
            if (i > 0)
                gap = fmin(gap, values[i] - values[i - 1]);
            if (i < N - 1)
                gap = fmin(gap, values[i + 1] - values[i]);
            if (gap < 1e-6 * values[N - 1])
                continue;
            double dot = 0;
            for (int r = 0; r < N; r++)
                dot += v[r * N + i] * lv[r * N + i];
            if (fabs(fabs(dot) - 1.0) > 1e-8)
                fail_msg("eigenvector %d: |dot| with dsyevd's = %.12f", i, fabs(dot));
        }
    } else {
        assert_int_equal(rc, FM_EUNSUPPORTED);
    }

    /* Wilkinson's W21+: tridiagonal, |i - 10| on the diagonal, 1 beside it */
    enum { W = 21 };
    double w0[W * W] = {0}, wv[W * W], wval[W];
    for (int i = 0; i < W; i++) {
        w0[i * W + i] = fabs(i - 10.0);
        if (i + 1 < W)
            w0[i * W + i + 1] = w0[(i + 1) * W + i] = 1.0;
    }
    eigen_and_check(w0, W, wval, wv, 1e-13);
    /* its two largest eigenvalues agree to about 1e-14: 10.7461941829033 */
    assert_true(fabs(wval[W - 1] - 10.7461941829033) < 1e-12);
    assert_true(fabs(wval[W - 2] - 10.7461941829033) < 1e-12);

    free(b);
    free(a0);
    free(a);
    free(v);
    free(values);
    free(lv);
    free(lvalues);
}

/* A big cluster of equal eigenvalues beside much larger ones, as a rank-k
 * covariance plus the filter bias has: the cluster's off-diagonals only get
 * down to rounding noise of eps·|A|, which must count as converged. */
static void test_eigen_cluster(void **state)
{
    (void)state;
    enum { N = 400, K = 12 };
    fm_rng rng;
    fmi_rng_seed(&rng, 13);
    double *x = dalloc((size_t)K * N), *a0 = dalloc((size_t)N * N), *v = dalloc((size_t)N * N), *values = dalloc(N);
    for (int i = 0; i < K * N; i++)
        x[i] = 100.0 * fmi_rng_uniform(&rng);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += x[k * N + i] * x[k * N + j];
            a0[i * N + j] = s + (i == j ? 0.1 : 0.0);
        }
    eigen_and_check(a0, N, values, v, 1e-12);
    for (int i = 0; i < N - K; i++)
        assert_true(fabs(values[i] - 0.1) < 1e-8);
    assert_true(values[N - K] > 1.0);
    free(x);
    free(a0);
    free(v);
    free(values);
}

static void test_eigen_bad_args(void **state)
{
    (void)state;
    double a[4] = {1, 0, 0, 1}, values[2], v[4];
    assert_int_equal(fmi_sym_eigen(a, 0, values, v), FM_EINVAL);
    assert_int_equal(fmi_sym_eigen(NULL, 2, values, v), FM_EINVAL);
    assert_int_equal(fmi_sym_eigen(a, 2, values, a), FM_EINVAL);
    a[2] = NAN;
    assert_int_equal(fmi_sym_eigen(a, 2, values, v), FM_EINVAL);
    double inf[4] = {INFINITY, 0, 0, 1};
    assert_int_equal(fmi_sym_eigen(inf, 2, values, v), FM_EINVAL);
}

/* ---- ZCA ------------------------------------------------------------------- */

/* Correlated data: rows are z · mix + offset with z uniform. */
static float *correlated_data(int n, int dim, uint64_t seed)
{
    fm_rng rng;
    fmi_rng_seed(&rng, seed);
    const int k = dim;
    double *mix = dalloc((size_t)k * dim);
    for (int i = 0; i < k * dim; i++)
        mix[i] = urand(&rng) * (1.0 + (i % 7));
    float *x = falloc((size_t)n * dim);
    double *z = dalloc(k);
    for (int r = 0; r < n; r++) {
        for (int i = 0; i < k; i++)
            z[i] = urand(&rng);
        for (int j = 0; j < dim; j++) {
            double s = 3.0 + 0.25 * j;
            for (int i = 0; i < k; i++)
                s += z[i] * mix[i * dim + j];
            x[(size_t)r * dim + j] = (float)s;
        }
    }
    free(mix);
    free(z);
    return x;
}

/* Checks a fitted (mean, P) against the data's double-precision mean and
 * covariance C: P symmetric positive definite with P² (C + bias I) = I, which
 * makes P the inverse square root pylearn2's ZCA computes; and the whitened
 * data's covariance I - bias P² (eigenvalues lambda / (lambda + bias)). */
static void check_zca(const float *x, int n, int dim, double bias, const float *mean, const float *P, double tol)
{
    double *mu = dalloc(dim), *C = dalloc((size_t)dim * dim), *P2 = dalloc((size_t)dim * dim);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < dim; j++)
            mu[j] += x[(size_t)r * dim + j];
    for (int j = 0; j < dim; j++) {
        mu[j] /= n;
        assert_true(fabs(mean[j] - mu[j]) < 1e-6 * (1 + fabs(mu[j])));
    }
    double *xc = dalloc((size_t)n * dim);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < dim; j++)
            xc[(size_t)r * dim + j] = x[(size_t)r * dim + j] - mu[j];
    for (int r = 0; r < n; r++)
        for (int i = 0; i < dim; i++) {
            const double xi = xc[(size_t)r * dim + i];
            for (int j = 0; j < dim; j++)
                C[(size_t)i * dim + j] += xi * xc[(size_t)r * dim + j];
        }
    for (int i = 0; i < dim * dim; i++)
        C[i] /= n;
    for (int i = 0; i < dim; i++)
        for (int j = 0; j < dim; j++) {
            assert_true(P[(size_t)i * dim + j] == P[(size_t)j * dim + i]);
            double s = 0;
            for (int k = 0; k < dim; k++)
                s += (double)P[(size_t)i * dim + k] * P[(size_t)k * dim + j];
            P2[(size_t)i * dim + j] = s;
        }
    for (int i = 0; i < dim; i++)
        for (int j = 0; j < dim; j++) {
            double s = bias * P2[(size_t)i * dim + j];
            for (int k = 0; k < dim; k++)
                s += P2[(size_t)i * dim + k] * C[(size_t)k * dim + j];
            if (fabs(s - (i == j)) > tol)
                fail_msg("dim %d: (P² (C + bias I))[%d,%d] = %.6g", dim, i, j, s);
        }
    /* positive definite: Cholesky of P succeeds */
    double *L = dalloc((size_t)dim * dim);
    for (int j = 0; j < dim; j++) {
        double s = P[(size_t)j * dim + j];
        for (int k = 0; k < j; k++)
            s -= L[(size_t)j * dim + k] * L[(size_t)j * dim + k];
        if (!(s > 0))
            fail_msg("P is not positive definite (pivot %d = %g)", j, s);
        L[(size_t)j * dim + j] = sqrt(s);
        for (int i = j + 1; i < dim; i++) {
            double t = P[(size_t)i * dim + j];
            for (int k = 0; k < j; k++)
                t -= L[(size_t)i * dim + k] * L[(size_t)j * dim + k];
            L[(size_t)i * dim + j] = t / L[(size_t)j * dim + j];
        }
    }
    /* the whitened data */
    float *out = falloc((size_t)n * dim);
    fmi_zca_apply(mean, P, x, out, n, dim);
    double *wm = dalloc(dim);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < dim; j++)
            wm[j] += out[(size_t)r * dim + j];
    for (int j = 0; j < dim; j++)
        assert_true(fabs(wm[j] / n) < 1e-3);
    for (int i = 0; i < dim; i++)
        for (int j = i; j < dim; j++) {
            double s = 0;
            for (int r = 0; r < n; r++)
                s += (double)out[(size_t)r * dim + i] * out[(size_t)r * dim + j];
            s /= n;
            double expect = (i == j) - bias * P2[(size_t)i * dim + j];
            if (fabs(s - expect) > 10 * tol)
                fail_msg("whitened covariance [%d,%d] = %.6g, expected %.6g", i, j, s, expect);
        }
    free(mu);
    free(C);
    free(P2);
    free(xc);
    free(L);
    free(out);
    free(wm);
}

static void test_zca_properties(void **state)
{
    (void)state;
    enum { N = 400, DIM = 8 * 8 * 3 };
    float *x = correlated_data(N, DIM, 3);
    float *mean = falloc(DIM), *P = falloc((size_t)DIM * DIM);
    assert_int_equal(fmi_zca_fit(x, N, DIM, FM_ZCA_FILTER_BIAS, mean, P), FM_OK);
    check_zca(x, N, DIM, FM_ZCA_FILTER_BIAS, mean, P, 2e-4);
    /* a larger bias, fitted with one thread: the same properties */
    fmi_threads_set(1);
    assert_int_equal(fmi_zca_fit(x, N, DIM, 2.0, mean, P), FM_OK);
    fmi_threads_set(2);
    check_zca(x, N, DIM, 2.0, mean, P, 2e-4);
    free(x);
    free(mean);
    free(P);
}

/* The same fit on 1 and 2 threads: the same bits (the covariance's products
 * and the eigen-decomposition, whichever this build runs) */
static void test_zca_threads_same_bits(void **state)
{
    (void)state;
    enum { N = 400, DIM = 300 }; /* smaller ones happened to agree before */
    float *x = correlated_data(N, DIM, 4);
    float *mean[2] = {falloc(DIM), falloc(DIM)};
    float *P[2] = {falloc((size_t)DIM * DIM), falloc((size_t)DIM * DIM)};
    for (int t = 0; t < 2; t++) {
        fmi_threads_set(t + 1);
        assert_int_equal(fmi_zca_fit(x, N, DIM, FM_ZCA_FILTER_BIAS, mean[t], P[t]), FM_OK);
    }
    fmi_threads_set(2);
    if (memcmp(mean[0], mean[1], sizeof(float) * DIM) ||
        memcmp(P[0], P[1], sizeof(float) * DIM * DIM))
        fail_msg("the ZCA fitted on 1 and 2 threads differs");
    free(x);
    for (int t = 0; t < 2; t++) {
        free(mean[t]);
        free(P[t]);
    }
}

/* more rows than one row block and more columns than one tile, with ragged
 * edges, in both the BLAS (2048 rows, 512 columns) and portable (256, 64)
 * builds */
static void test_zca_blocks(void **state)
{
    (void)state;
    enum { N = 2100, DIM = 530 };
    fm_rng rng;
    fmi_rng_seed(&rng, 5);
    float *x = falloc((size_t)N * DIM);
    /* smooth rows (neighbouring columns correlated), cheap to generate */
    for (int r = 0; r < N; r++) {
        double acc = 0;
        for (int j = 0; j < DIM; j++) {
            acc = 0.8 * acc + urand(&rng);
            x[(size_t)r * DIM + j] = (float)(acc + 0.01 * j);
        }
    }
    float *mean = falloc(DIM), *P = falloc((size_t)DIM * DIM);
    assert_int_equal(fmi_zca_fit(x, N, DIM, FM_ZCA_FILTER_BIAS, mean, P), FM_OK);
    check_zca(x, N, DIM, FM_ZCA_FILTER_BIAS, mean, P, 1e-3);
    free(x);
    free(mean);
    free(P);
}

static void test_zca_rank_deficient(void **state)
{
    (void)state;
    enum { N = 5, DIM = 12 };
    float *x = correlated_data(N, DIM, 9);
    float mean[DIM], P[DIM * DIM];
    /* 5 examples span at most 4 directions: singular without the bias */
    assert_int_equal(fmi_zca_fit(x, N, DIM, 0.0, mean, P), FM_EINVAL);
    assert_int_equal(fmi_zca_fit(x, N, DIM, 0.1, mean, P), FM_OK);
    check_zca(x, N, DIM, 0.1, mean, P, 1e-4);
    /* one example: the covariance is 0, P = I / sqrt(bias) */
    assert_int_equal(fmi_zca_fit(x, 1, DIM, 0.25, mean, P), FM_OK);
    for (int i = 0; i < DIM; i++)
        for (int j = 0; j < DIM; j++)
            assert_true(fabs(P[i * DIM + j] - (i == j ? 2.0 : 0.0)) < 1e-6);
    free(x);
}

static void test_zca_bad_args(void **state)
{
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 7}, mean[3], P[9];
    assert_int_equal(fmi_zca_fit(x, 0, 3, 0.1, mean, P), FM_EINVAL);
    assert_int_equal(fmi_zca_fit(x, 2, 0, 0.1, mean, P), FM_EINVAL);
    assert_int_equal(fmi_zca_fit(NULL, 2, 3, 0.1, mean, P), FM_EINVAL);
    assert_int_equal(fmi_zca_fit(x, 2, 3, -0.1, mean, P), FM_EINVAL);
    assert_int_equal(fmi_zca_fit(x, 2, 3, NAN, mean, P), FM_EINVAL);
    x[4] = NAN;
    assert_int_equal(fmi_zca_fit(x, 2, 3, 0.1, mean, P), FM_EINVAL);
    x[4] = INFINITY;
    assert_int_equal(fmi_zca_fit(x, 2, 3, 0.1, mean, P), FM_EINVAL);
}

/* an allocator that fails its n-th request and counts live blocks */
static struct {
    long calls, fail_at, live;
} hook;
static void *h_malloc(size_t n, void *user)
{
    (void)user;
    if (++hook.calls == hook.fail_at)
        return NULL;
    hook.live++;
    return malloc(n);
}
static void *h_realloc(void *p, size_t n, void *user)
{
    (void)user;
    if (++hook.calls == hook.fail_at)
        return NULL;
    if (!p)
        hook.live++;
    return realloc(p, n);
}
static void h_free(void *p, void *user)
{
    (void)user;
    if (p)
        hook.live--;
    free(p);
}

static void test_zca_enomem(void **state)
{
    (void)state;
    enum { N = 40, DIM = 10 };
    float *x = correlated_data(N, DIM, 4);
    float mean[DIM], P[DIM * DIM];
    const fm_allocator failing = {h_malloc, h_realloc, h_free, NULL};
    fm_set_allocator(&failing);
    int ok = 0;
    for (long k = 1; k < 50 && !ok; k++) {
        hook.calls = 0;
        hook.fail_at = k;
        hook.live = 0;
        int rc = fmi_zca_fit(x, N, DIM, 0.1, mean, P);
        assert_int_equal(hook.live, 0);
        if (rc == FM_OK)
            ok = 1;
        else
            assert_int_equal(rc, FM_ENOMEM);
    }
    assert_true(ok);
    /* the eigensolver's own allocations */
    double a[9] = {2, 0, 0, 1, 3, 0, 0, 1, 4}, values[3], v[9];
    hook.calls = 0;
    hook.fail_at = 1;
    assert_int_equal(fmi_sym_eigen(a, 3, values, v), FM_ENOMEM);
    assert_int_equal(hook.live, 0);
    fm_set_allocator(NULL);
    free(x);
}

static void test_zca_apply_reference(void **state)
{
    (void)state;
    enum { N = 37, DIM = 45 };
    fm_rng rng;
    fmi_rng_seed(&rng, 21);
    float *x = falloc((size_t)N * DIM), *P = falloc((size_t)DIM * DIM), mean[DIM];
    float *out = falloc((size_t)N * DIM), *again = falloc((size_t)N * DIM);
    for (int i = 0; i < N * DIM; i++)
        x[i] = (float)(3 * urand(&rng));
    for (int i = 0; i < DIM * DIM; i++)
        P[i] = (float)urand(&rng);
    for (int j = 0; j < DIM; j++)
        mean[j] = (float)urand(&rng);
    fmi_zca_apply(mean, P, x, out, N, DIM);
    fmi_zca_apply(mean, P, x, again, N, DIM);
    assert_memory_equal(out, again, sizeof(float) * N * DIM);
    for (int r = 0; r < N; r++)
        for (int j = 0; j < DIM; j++) {
            double s = 0;
            for (int k = 0; k < DIM; k++)
                s += ((double)x[r * DIM + k] - mean[k]) * P[k * DIM + j];
            if (fabs(out[r * DIM + j] - s) > 1e-5 * DIM)
                fail_msg("out[%d,%d] = %.7g, expected %.7g", r, j, out[r * DIM + j], s);
        }
    /* one row (BLAS may take another kernel for it: equal up to rounding) */
    fmi_zca_apply(mean, P, x, again, 1, DIM);
    for (int j = 0; j < DIM; j++)
        assert_true(fabs(out[j] - again[j]) < 1e-5 * DIM);
    free(x);
    free(P);
    free(out);
    free(again);
}

/* ---- LCN ------------------------------------------------------------------- */

/* pylearn2's lecun_lcn on one channel, literally: the kernel x kernel Gaussian
 * built and normalised in 2-D, the 'full' convolution of size
 * (h + k - 1) x (w + k - 1) cropped by k/2 on each side, sqrt of the blurred
 * x², per-image mean, then the two maxima. */
static void lcn_reference(const float *x, int h, int w, int c, int ch, int k, double threshold, double *out)
{
    const int mid = k / 2, fh = h + k - 1, fw = w + k - 1;
    double *kern = dalloc((size_t)k * k), *full = dalloc((size_t)fh * fw), *full2 = dalloc((size_t)fh * fw);
    double total = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            const double di = i - mid, dj = j - mid;
            kern[i * k + j] = exp(-(di * di + dj * dj) / (2 * 2.0 * 2.0)) / (2 * 3.14159265358979323846 * 4.0);
            total += kern[i * k + j];
        }
    for (int i = 0; i < k * k; i++)
        kern[i] /= total;
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            const double v = x[(i * w + j) * c + ch];
            for (int a = 0; a < k; a++)
                for (int b = 0; b < k; b++) {
                    /* convolution: the kernel flipped (it is symmetric anyway) */
                    full[(i + a) * fw + j + b] += v * kern[(k - 1 - a) * k + (k - 1 - b)];
                    full2[(i + a) * fw + j + b] += v * v * kern[(k - 1 - a) * k + (k - 1 - b)];
                }
        }
    double norm_mean = 0;
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++)
            norm_mean += sqrt(full2[(i + mid) * fw + j + mid]);
    norm_mean /= h * w;
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            const double m = full[(i + mid) * fw + j + mid], d = sqrt(full2[(i + mid) * fw + j + mid]);
            const double divisor = fmax(fmax(norm_mean, d), threshold);
            out[i * w + j] = (x[(i * w + j) * c + ch] - m) / divisor;
        }
    free(kern);
    free(full);
    free(full2);
}

static void lcn_against_reference(const float *x0, int h, int w, int c, int k, float threshold, double tol)
{
    float *x = falloc((size_t)h * w * c), *scratch = falloc(fmi_lcn_scratch_floats(h, w, k));
    double *ref = dalloc((size_t)h * w);
    memcpy(x, x0, sizeof(float) * h * w * c);
    fmi_lcn(x, h, w, c, k, threshold, scratch);
    for (int ch = 0; ch < c; ch++) {
        lcn_reference(x0, h, w, c, ch, k, threshold, ref);
        for (int i = 0; i < h * w; i++)
            if (!(fabs(x[i * c + ch] - ref[i]) <= tol * (1 + fabs(ref[i]))))
                fail_msg("%dx%dx%d kernel %d: channel %d pixel %d = %.7g, expected %.7g", h, w, c, k, ch, i,
                         x[i * c + ch], ref[i]);
    }
    free(x);
    free(scratch);
    free(ref);
}

/* 1 x 3 image (1, 2, 3), kernel 3: the 1-D weights are a, b, a with
 * b = 1 / (1 + 2 e^{-1/8}), a = e^{-1/8} b; in one row only the centre row of
 * the 2-D kernel (weight b) meets the image, so by hand
 * m = b (b + 2a, 4a + 2b, 2a + 3b), x² blurred = b (b + 4a, 10a + 4b, 4a + 9b). */
static void test_lcn_hand_case(void **state)
{
    (void)state;
    const double e = exp(-1.0 / 8.0), b = 1.0 / (1.0 + 2.0 * e), a = e * b;
    const double m[3] = {b * (b + 2 * a), b * (4 * a + 2 * b), b * (2 * a + 3 * b)};
    const double s[3] = {b * (b + 4 * a), b * (10 * a + 4 * b), b * (4 * a + 9 * b)};
    const double d[3] = {sqrt(s[0]), sqrt(s[1]), sqrt(s[2])};
    const double pm = (d[0] + d[1] + d[2]) / 3;
    double expect[3];
    for (int i = 0; i < 3; i++)
        expect[i] = (i + 1 - m[i]) / fmax(pm, d[i]);
    /* the same numbers from a literal Python transcription of lecun_lcn */
    const double python[3] = {0.572470923, 0.985700595, 1.856518447};
    float x[3] = {1, 2, 3}, scratch[16];
    assert_true(fmi_lcn_scratch_floats(1, 3, 3) <= 16);
    fmi_lcn(x, 1, 3, 1, 3, 1e-4f, scratch);
    for (int i = 0; i < 3; i++) {
        assert_true(fabs(expect[i] - python[i]) < 1e-8);
        assert_true(fabs(x[i] - expect[i]) < 1e-6);
    }
    /* 2 x 2, from the Python transcription */
    float y[4] = {1, -2, 0.5f, 4};
    const double py2[4] = {0.404782845, -1.493414830, 0.039005435, 2.165203152};
    fmi_lcn(y, 2, 2, 1, 3, 1e-4f, scratch);
    for (int i = 0; i < 4; i++)
        assert_true(fabs(y[i] - py2[i]) < 1e-6);
}

static void test_lcn_reference(void **state)
{
    (void)state;
    fm_rng rng;
    fmi_rng_seed(&rng, 31);
    enum { H = 9, W = 11, C = 3 };
    float x[H * W * C];
    for (int i = 0; i < H * W * C; i++)
        x[i] = (float)(urand(&rng) * (1 + (i % 5)));
    lcn_against_reference(x, H, W, C, 7, FM_LCN_THRESHOLD, 2e-6);
    lcn_against_reference(x, H, W, C, 5, FM_LCN_THRESHOLD, 2e-6);
    lcn_against_reference(x, H, W, C, 3, FM_LCN_THRESHOLD, 2e-6);
    lcn_against_reference(x, H, W, C, 1, FM_LCN_THRESHOLD, 2e-6);
    /* a kernel wider than the image */
    lcn_against_reference(x, 5, 6, 1, 13, FM_LCN_THRESHOLD, 2e-6);
    /* a large local norm somewhere, so the per-pixel branch of the max is taken */
    x[(4 * W + 5) * C + 1] = 40.0f;
    lcn_against_reference(x, H, W, C, 7, FM_LCN_THRESHOLD, 2e-6);

    /* the SVHN pipeline on a 32 x 32 x 3 image of bytes: GCN then LCN */
    float img[32 * 32 * 3];
    for (int i = 0; i < 32 * 32 * 3; i++)
        img[i] = (float)fmi_rng_below(&rng, 256);
    fmi_gcn(img, 32 * 32 * 3, &fmi_gcn_svhn);
    lcn_against_reference(img, 32, 32, 3, FM_LCN_KERNEL, FM_LCN_THRESHOLD, 2e-6);
}

/* each channel is normalised on its own, as if it were a 1-channel image */
static void test_lcn_channels_independent(void **state)
{
    (void)state;
    enum { H = 6, W = 7, C = 4 };
    fm_rng rng;
    fmi_rng_seed(&rng, 41);
    float x[H * W * C], one[H * W], scratch[3 * H * W + 7];
    for (int i = 0; i < H * W * C; i++)
        x[i] = (float)(urand(&rng) * (1 + i % C));
    float all[H * W * C];
    memcpy(all, x, sizeof x);
    fmi_lcn(all, H, W, C, 7, 1e-4f, scratch);
    for (int ch = 0; ch < C; ch++) {
        for (int i = 0; i < H * W; i++)
            one[i] = x[i * C + ch];
        fmi_lcn(one, H, W, 1, 7, 1e-4f, scratch);
        for (int i = 0; i < H * W; i++)
            assert_true(one[i] == all[i * C + ch]);
    }
    /* fmi_lcn_channel: that channel as fmi_lcn does it, the others untouched */
    for (int ch = 0; ch < C; ch++) {
        float some[H * W * C];
        memcpy(some, x, sizeof x);
        fmi_lcn_channel(some, H, W, C, ch, 7, 1e-4f, scratch);
        for (int i = 0; i < H * W * C; i++)
            assert_true(some[i] == (i % C == ch ? all[i] : x[i]));
    }
    float some[H * W * C];
    memcpy(some, x, sizeof x);
    fmi_lcn_channel(some, H, W, C, C, 7, 1e-4f, scratch); /* no such channel */
    fmi_lcn_channel(some, H, W, C, -1, 7, 1e-4f, scratch);
    assert_memory_equal(some, x, sizeof x);
}

static void test_lcn_threshold(void **state)
{
    (void)state;
    enum { H = 5, W = 5 };
    float scratch[3 * H * W + 7];
    float zero[H * W] = {0};
    fmi_lcn(zero, H, W, 1, 7, 1e-4f, scratch);
    for (int i = 0; i < H * W; i++)
        assert_true(zero[i] == 0.0f);
    /* a faint image: every local norm is under the threshold, which divides */
    fm_rng rng;
    fmi_rng_seed(&rng, 51);
    float faint[H * W];
    for (int i = 0; i < H * W; i++)
        faint[i] = (float)(1e-6 * urand(&rng));
    lcn_against_reference(faint, H, W, 1, 7, 1e-4f, 2e-6);
    float copy[H * W];
    memcpy(copy, faint, sizeof faint);
    fmi_lcn(copy, H, W, 1, 7, 1e-4f, scratch);
    double big = 0;
    for (int i = 0; i < H * W; i++)
        big = fmax(big, fabs(copy[i]));
    assert_true(big < 0.05); /* / 1e-4, not / the ~1e-6 local norm */
    lcn_against_reference(faint, H, W, 1, 7, 0.0f, 2e-6);
}

static void test_lcn_bad_args(void **state)
{
    (void)state;
    assert_int_equal(fmi_lcn_scratch_floats(32, 32, 7), 3 * 32 * 32 + 7);
    assert_int_equal(fmi_lcn_scratch_floats(0, 32, 7), 0);
    assert_int_equal(fmi_lcn_scratch_floats(32, 32, 0), 0);
    float x[4] = {1, 2, 3, 4}, scratch[64];
    const float keep[4] = {1, 2, 3, 4};
    fmi_lcn(x, 2, 2, 1, 4, 1e-4f, scratch); /* even kernel */
    fmi_lcn(x, 2, 2, 1, -3, 1e-4f, scratch);
    fmi_lcn(x, 2, 2, 0, 3, 1e-4f, scratch);
    fmi_lcn(x, 2, 2, 1, 3, 1e-4f, NULL);
    fmi_lcn(NULL, 2, 2, 1, 3, 1e-4f, scratch);
    assert_memory_equal(x, keep, sizeof keep);
}

int main(void)
{
    fmi_threads_set(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcn_constants),
        cmocka_unit_test(test_gcn_norm),
        cmocka_unit_test(test_gcn_std_and_bias),
        cmocka_unit_test(test_gcn_min_divisor),
        cmocka_unit_test(test_eigen_small_known),
        cmocka_unit_test(test_eigen_diagonal),
        cmocka_unit_test(test_eigen_repeated),
        cmocka_unit_test(test_eigen_random_spd),
        cmocka_unit_test(test_eigen_cluster),
        cmocka_unit_test(test_eigen_bad_args),
        cmocka_unit_test(test_zca_properties),
        cmocka_unit_test(test_zca_threads_same_bits),
        cmocka_unit_test(test_zca_blocks),
        cmocka_unit_test(test_zca_rank_deficient),
        cmocka_unit_test(test_zca_bad_args),
        cmocka_unit_test(test_zca_enomem),
        cmocka_unit_test(test_zca_apply_reference),
        cmocka_unit_test(test_lcn_hand_case),
        cmocka_unit_test(test_lcn_reference),
        cmocka_unit_test(test_lcn_channels_independent),
        cmocka_unit_test(test_lcn_threshold),
        cmocka_unit_test(test_lcn_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
