/* preprocess.h — the paper's input preprocessing, after pylearn2 (which the
 * authors' scripts call): global contrast normalization (GCN), ZCA whitening
 * fitted on a training split, and LeCun's local contrast normalization (LCN).
 * Images are channel-last (H x W x C) float rows of raw pixel values 0..255
 * (pylearn2 feeds both CIFAR-10 and SVHN unscaled). The constants and their
 * sources are in docs/data.md. */
#ifndef FEWMUL_PREPROCESS_H
#define FEWMUL_PREPROCESS_H

#include <stddef.h>

/* pylearn2's global_contrast_normalize on one example of dim values (the
 * order of the values does not matter): x -= mean(x); norm = sqrt(sqrt_bias +
 * var(x)) when use_std, with numpy's ddof=1 (divisor dim - 1; 0 when dim is
 * 1), else sqrt(sqrt_bias + sum(x^2)); normalizer = norm / scale, and a
 * normalizer below min_divisor counts as 1, i.e. the example is then only
 * centred, not scaled; x /= normalizer. Sums in double. Does nothing when x or
 * params is NULL or dim < 1; scale must be positive. */
typedef struct fm_gcn_params {
    float scale, sqrt_bias, min_divisor;
    int use_std;
} fm_gcn_params;
void fmi_gcn(float *x, int dim, const fm_gcn_params *params);
/* The parameters the paper's CIFAR-10 and SVHN pipelines use: CIFAR-10
 * {55, 0, 1e-8, 0} (CIFAR10(gcn=55.)), SVHN {1, 0, 1e-8, 0}
 * (GlobalContrastNormalization() with its defaults). */
extern const fm_gcn_params fmi_gcn_cifar10, fmi_gcn_svhn;

/* pylearn2's ZCA (n_components and n_drop_components unset, as the CIFAR-10
 * script leaves them): mean over the n examples, covariance C = Xcᵀ Xc / n
 * (divisor n) of the centred rows, filter_bias added to its diagonal before the
 * eigen-decomposition C + bias·I = V diag(mu) Vᵀ, P = V diag(1/sqrt(mu)) Vᵀ
 * (so mu = lambda + filter_bias; the whitened training data then has
 * covariance V diag(lambda / (lambda + filter_bias)) Vᵀ). mean: dim floats,
 * P: dim x dim floats (symmetric). The covariance is summed in float over
 * blocks of rows and in double across blocks; the eigen-problem is solved in
 * double. Memory besides P: dim² floats and a block of rows, plus 3·dim²
 * doubles with BLAS (covariance, dsyevd's workspace) or 2·dim² without (about
 * 290 MB and 200 MB in all at dim 3072). FM_EINVAL for bad arguments,
 * non-finite data, or a covariance that is not positive definite after the
 * bias (pylearn2 asserts the same); FM_ENOMEM. Uses LAPACK's dsyevd from
 * OpenBLAS when the build has BLAS, fmi_sym_eigen otherwise. */
int fmi_zca_fit(const float *x, int n, int dim, double filter_bias, float *mean, float *P);
/* out[n x dim] = (x - mean) · P, computed as x·P - mean·P with fmi_sgemm and no
 * scratch; out may not alias x. Parallel (fmi_sgemm's threads); the same
 * inputs and thread count give the same bits. Does nothing on NULL or n, dim
 * < 1. */
void fmi_zca_apply(const float *mean, const float *P, const float *x, float *out, int n, int dim);
/* The filter bias of the paper's CIFAR-10 pipeline (ZCA()'s default). */
#define FM_ZCA_FILTER_BIAS 0.1

/* Eigen-decomposition of the symmetric n x n matrix a (row-major; only its
 * lower triangle, j <= i, is read; a is overwritten as workspace): values
 * ascending, vectors[:, i] (column i, row-major n x n, not aliasing a) the unit
 * eigenvector of values[i]. Our own code in every build: Householder
 * tridiagonalization, then implicit QL with Wilkinson shifts, in double,
 * parallel over rows (results independent of the thread count). FM_OK,
 * FM_ENOMEM, or FM_EINVAL for bad arguments, non-finite entries, or when the
 * iteration fails to converge. */
int fmi_sym_eigen(double *a, int n, double *values, double *vectors);
/* The same contract through LAPACK's dsyevd (OpenBLAS), for comparison;
 * FM_EUNSUPPORTED in a build without BLAS. */
int fmi_sym_eigen_lapack(double *a, int n, double *values, double *vectors);

/* pylearn2's lecun_lcn on one h x w x c image, each channel separately (what
 * LeCunLCN with channels=None means; see fmi_lcn_channel for what 2014-2015
 * pylearn2 actually did): a kernel x kernel Gaussian (sigma
 * FM_LCN_SIGMA in pixels, whatever the kernel size; normalised to sum 1)
 * gives the local mean m = gauss * x, and the local norm
 * d = sqrt(gauss * x^2) — of x itself, not of x - m, exactly as pylearn2
 * computes it; divisor = max(mean of d over the image, d), then
 * max(divisor, threshold); x = (x - m) / divisor. Borders as pylearn2's 'full'
 * convolution cropped by kernel/2 on each side: zero padding, same size.
 * kernel must be odd (pylearn2's crop gives the wrong size otherwise); an even
 * or non-positive kernel, h, w or c < 1, or NULL pointers leave x unchanged.
 * Sums in double. Not parallel inside: run images in parallel, one scratch
 * each. scratch: fmi_lcn_scratch_floats(h, w, kernel) floats (0 for bad
 * sizes). */
void fmi_lcn(float *x, int h, int w, int c, int kernel, float threshold, float *scratch);
size_t fmi_lcn_scratch_floats(int h, int w, int kernel);
/* The same on channel `channel` alone (0 <= channel < c; others untouched).
 * pylearn2's LeCunLCN.transform from its 2014 reformatting on returns inside
 * its loop over channels, so the SVHN data made with those versions had LCN on
 * channel 0 only, the others GCN alone; fmi_lcn_channel(x, .., 0, ..)
 * reproduces that. The 2013 code (the maxout paper's) did every channel. */
void fmi_lcn_channel(float *x, int h, int w, int c, int channel, int kernel, float threshold, float *scratch);
/* The kernel size and threshold of the paper's SVHN pipeline (LeCunLCN's
 * defaults, which svhn_preprocessing.py keeps), and gaussian_filter's sigma. */
#define FM_LCN_KERNEL 7
#define FM_LCN_THRESHOLD 1e-4f
#define FM_LCN_SIGMA 2.0

#endif
