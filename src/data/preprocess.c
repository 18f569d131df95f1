/* preprocess.c — pylearn2's preprocessing as the paper's pipelines use it:
 * global contrast normalization, ZCA whitening (covariance summed in float
 * tiles and double across row blocks; eigen-decomposition by LAPACK's dsyevd
 * or our own Householder + implicit QL solver) and LeCun's local contrast
 * normalization. The semantics and constants are documented in preprocess.h. */
#include "preprocess.h"

#include "gemm.h"
#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- global contrast normalization --------------------------------------- */

/* CIFAR10(gcn=55.) calls global_contrast_normalize(X, scale=55.) with the
 * other defaults; svhn_preprocessing.py's GlobalContrastNormalization() keeps
 * the class defaults (scale 1, sqrt_bias 0, use_std False, min_divisor 1e-8). */
const fm_gcn_params fmi_gcn_cifar10 = {55.0f, 0.0f, 1e-8f, 0};
const fm_gcn_params fmi_gcn_svhn = {1.0f, 0.0f, 1e-8f, 0};

void fmi_gcn(float *x, int dim, const fm_gcn_params *params)
{
    if (!x || !params || dim < 1)
        return;
    double sum = 0.0;
    for (int i = 0; i < dim; i++)
        sum += x[i];
    const double mean = sum / dim;
    double ss = 0.0;
    for (int i = 0; i < dim; i++) {
        const double d = x[i] - mean;
        ss += d * d;
    }
    double norm;
    if (params->use_std) /* numpy's var(ddof=1); one value has no spread */
        norm = sqrt(params->sqrt_bias + (dim > 1 ? ss / (dim - 1) : 0.0));
    else
        norm = sqrt(params->sqrt_bias + ss);
    /* pylearn2 compares norm / scale with min_divisor and replaces it by 1, so
     * a (nearly) constant example comes out centred but unscaled. */
    double normalizer = norm / params->scale;
    if (normalizer < params->min_divisor)
        normalizer = 1.0;
    for (int i = 0; i < dim; i++)
        x[i] = (float)((x[i] - mean) / normalizer);
}

/* ---- symmetric eigen-decomposition (our own) ------------------------------ */

/* Sweeps allowed per eigenvalue before the QL iteration is declared stuck;
 * EISPACK's tql2 allows 30, and 2-3 are typical. */
#define FM_EIGEN_MAX_SWEEPS 60
/* Loops over fewer elements than this stay on one thread. */
#define FM_PAR_MIN 32768
/* Rotations buffered before they are applied to the eigenvectors (see
 * rotations_flush), and the width of the column blocks they are applied to. */
#define FM_ROT_BUFFER 262144
#define FM_ROT_COLUMNS 64

/* Dot product with eight partial sums: they vectorize (one chain would not,
 * without reassociation) and their fixed order keeps results reproducible. */
static double dot8(const double *x, const double *y, int n)
{
    double acc[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int t = 0; t < 8; t++)
            acc[t] += x[j + t] * y[j + t];
    double s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; j < n; j++)
        s += x[j] * y[j];
    return s;
}

/* Makes the reflector H = I - beta v vᵀ with H x = alpha e_0 from x (m values,
 * overwritten by v); alpha takes the sign opposite to x_0 so v_0 = x_0 - alpha
 * never cancels. beta 0 (H = I) when x is already a multiple of e_0. */
static void householder(double *x, int m, double *alpha, double *beta)
{
    double sigma = 0.0;
    for (int i = 1; i < m; i++)
        sigma += x[i] * x[i];
    const double x0 = x[0];
    if (sigma == 0.0) {
        *alpha = x0;
        *beta = 0.0;
        return;
    }
    const double mu = sqrt(x0 * x0 + sigma);
    *alpha = x0 > 0.0 ? -mu : mu;
    *beta = 1.0 / (mu * (mu + fabs(x0)));
    x[0] = x0 - *alpha;
}

/* Householder reduction of the symmetric a (full storage) to tridiagonal form
 * T = Qᵀ A Q with Q = H_0 ... H_{n-3}: d gets the diagonal, e the sub-diagonal
 * (e[n-1] = 0). Row k of a keeps reflector v_k in columns k+1..n-1 and beta[k]
 * its scale. Step k turns the trailing block B (rows and columns k+1..) into
 * H B H = B - v wᵀ - w vᵀ with p = beta B v, w = p - (beta/2)(pᵀv) v. One pass
 * over B per step: each row gets step k's update and, while it is in cache,
 * its product with the next reflector (the next step's p). Full storage keeps
 * every row contiguous. p: 2n doubles, the next p parked behind w while the
 * rows still read w. */
static void tridiagonalize(double *a, int n, double *d, double *e, double *beta, double *p)
{
    e[n - 1] = 0.0;
    if (n < 3) {
        d[0] = a[0];
        if (n == 2) {
            e[0] = a[n];
            d[1] = a[n + 1];
        }
        return;
    }
    /* the first reflector and its product with B_0 */
    householder(a + 1, n - 1, &e[0], &beta[0]);
    d[0] = a[0];
    {
        const double *v = a + 1;
        const double b = beta[0];
#pragma omp parallel for schedule(static) if ((size_t)n * n >= FM_PAR_MIN)
        for (int i = 1; i < n; i++)
            p[i - 1] = b * dot8(a + (size_t)i * n + 1, v, n - 1);
    }
    for (int k = 0; k <= n - 3; k++) {
        const int m = n - k - 1;
        const double *v = a + (size_t)k * n + k + 1;
        const double b = beta[k];
        if (b != 0.0) {
            double K = 0.5 * b * dot8(p, v, m);
            for (int i = 0; i < m; i++)
                p[i] -= K * v[i]; /* p is w now */
        }
        /* row k+1 first: it holds the next reflector's x */
        double *row = a + (size_t)(k + 1) * n + k + 1;
        if (b != 0.0)
            for (int j = 0; j < m; j++)
                row[j] -= v[0] * p[j] + p[0] * v[j];
        d[k + 1] = row[0];
        const int next = k + 1 <= n - 3;
        double nb = 0.0;
        if (next) {
            householder(row + 1, m - 1, &e[k + 1], &beta[k + 1]);
            nb = beta[k + 1];
        }
        const double *nv = row + 1;
        /* rows k+2..: this step's update, then the next step's p */
#pragma omp parallel for schedule(static) if ((size_t)m * m >= FM_PAR_MIN)
        for (int i = 1; i < m; i++) {
            double *r = a + (size_t)(k + 1 + i) * n + k + 1;
            if (b != 0.0) {
                const double vi = v[i], wi = p[i];
                for (int j = 0; j < m; j++)
                    r[j] -= vi * p[j] + wi * v[j];
            }
            if (next)
                p[m + i - 1] = nb * dot8(r + 1, nv, m - 1);
        }
        if (next)
            memmove(p, p + m, sizeof(double) * (size_t)(m - 1));
    }
    d[n - 1] = a[(size_t)(n - 1) * n + n - 1];
    e[n - 2] = a[(size_t)(n - 1) * n + n - 2];
}

/* zt = Qᵀ = H_{n-3} ... H_0, i.e. row i of zt is e_iᵀ H_{n-3} ... H_0: rows
 * evolve independently, and only reflectors k < i touch row i. Threads take
 * blocks of rows that stay in cache while every reflector streams past once. */
static void form_qt(const double *a, int n, const double *beta, double *zt)
{
    enum { ROWS = 16 };
    const int blocks = (n + ROWS - 1) / ROWS;
#pragma omp parallel for schedule(dynamic, 1) if ((size_t)n * n >= FM_PAR_MIN)
    for (int blk = 0; blk < blocks; blk++) {
        const int i0 = blk * ROWS, i1 = FM_MIN(n, i0 + ROWS);
        memset(zt + (size_t)i0 * n, 0, sizeof(double) * (size_t)(i1 - i0) * n);
        for (int i = i0; i < i1; i++)
            zt[(size_t)i * n + i] = 1.0;
        for (int k = FM_MIN(i1 - 2, n - 3); k >= 0; k--) {
            if (beta[k] == 0.0)
                continue;
            const double *v = a + (size_t)k * n + k + 1;
            const int m = n - k - 1;
            for (int i = FM_MAX(i0, k + 1); i < i1; i++) {
                double *zi = zt + (size_t)i * n + k + 1;
                const double s = beta[k] * dot8(zi, v, m);
                for (int j = 0; j < m; j++)
                    zi[j] -= s * v[j];
            }
        }
    }
}

/* The QL iteration on (d, e) never looks at the eigenvectors, so its plane
 * rotations are recorded here and applied in batches: threads take narrow
 * column blocks of zt (rows are the eigenvectors), which stay in cache through
 * the whole batch instead of streaming all of zt from memory once per sweep.
 * Every element sees the same operations in the same order, whatever the
 * thread count. */
typedef struct rotations {
    int *row;  /* rotation t acts on rows row[t], row[t] + 1 */
    double *cs; /* its cosine and sine */
    int count, capacity;
} rotations;

static void rotations_flush(rotations *rot, double *zt, int n)
{
    const int blocks = (n + FM_ROT_COLUMNS - 1) / FM_ROT_COLUMNS, count = rot->count;
    const int *row = rot->row;
    const double *cs = rot->cs;
#pragma omp parallel for schedule(static) if ((size_t)count * n >= FM_PAR_MIN)
    for (int blk = 0; blk < blocks; blk++) {
        const int c0 = blk * FM_ROT_COLUMNS, width = FM_MIN(n, c0 + FM_ROT_COLUMNS) - c0;
        for (int t = 0; t < count; t++) {
            const double c = cs[2 * t], s = cs[2 * t + 1];
            double *zi = zt + (size_t)row[t] * n + c0, *zn = zi + n;
            for (int k = 0; k < width; k++) {
                const double f = zn[k];
                zn[k] = s * zi[k] + c * f;
                zi[k] = c * zi[k] - s * f;
            }
        }
    }
    rot->count = 0;
}

static void rotations_add(rotations *rot, double *zt, int n, int i, double c, double s)
{
    if (rot->count == rot->capacity)
        rotations_flush(rot, zt, n);
    rot->row[rot->count] = i;
    rot->cs[2 * rot->count] = c;
    rot->cs[2 * rot->count + 1] = s;
    rot->count++;
}

/* Implicit QL with Wilkinson shifts on the tridiagonal (d, e) (tql2's
 * iteration), rotating the rows of zt along.
 * An off-diagonal counts as zero below eps times its two diagonal neighbours
 * (tql2's test) or below eps times the norm of T: the latter costs no accuracy
 * the Householder step has not already spent (its errors are eps·|A| too), and
 * without it a large cluster of equal eigenvalues beside much larger ones
 * stalls, its off-diagonals stuck at rounding noise of eps·|A|. */
static int ql_implicit(double *d, double *e, int n, double *zt, rotations *rot)
{
    double norm = 0.0;
    for (int i = 0; i < n; i++)
        norm = fmax(norm, fabs(d[i]) + fabs(e[i]) + (i > 0 ? fabs(e[i - 1]) : 0.0));
    const double floor = DBL_EPSILON * norm;
    for (int l = 0; l < n; l++) {
        int sweeps = 0;
        for (;;) {
            int m;
            for (m = l; m < n - 1; m++) {
                const double dd = fabs(d[m]) + fabs(d[m + 1]);
                if (fabs(e[m]) <= fmax(DBL_EPSILON * dd, floor))
                    break;
            }
            if (m == l)
                break;
            if (++sweeps > FM_EIGEN_MAX_SWEEPS)
                return fmi_error(FM_EINVAL, "symmetric eigen-decomposition: no convergence for eigenvalue %d of %d", l, n);
            double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            double r = hypot(g, 1.0);
            g = d[m] - d[l] + e[l] / (g + copysign(r, g));
            double s = 1.0, c = 1.0, p = 0.0;
            int i, underflow = 0;
            for (i = m - 1; i >= l; i--) {
                const double f = s * e[i], b = c * e[i];
                e[i + 1] = r = hypot(f, g);
                if (r == 0.0) { /* the matrix split: restart on the smaller block */
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = 1;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
                rotations_add(rot, zt, n, i, c, s);
            }
            if (underflow)
                continue;
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    rotations_flush(rot, zt, n);
    return FM_OK;
}

typedef struct keyed {
    double value;
    int index;
} keyed;

static int by_value(const void *pa, const void *pb)
{
    const keyed *a = pa, *b = pb;
    if (a->value != b->value)
        return a->value < b->value ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

/* Eigenvalues ascending into values and the matching unit eigenvectors as the
 * rows of zt. a: symmetric, lower triangle read, overwritten. */
static int eigen_rows_own(double *a, int n, double *values, double *zt)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            const double v = a[(size_t)i * n + j];
            if (!isfinite(v))
                return fmi_error(FM_EINVAL, "symmetric eigen-decomposition: entry (%d, %d) is not finite", i, j);
            a[(size_t)j * n + i] = v;
        }
    /* a small matrix needs no more than about 2n² rotations in all */
    const int buffered = (int)FM_MIN((size_t)FM_ROT_BUFFER, 2 * (size_t)n * n + 16);
    double *work = fmi_alloc((size_t)n * 5, sizeof(double));
    keyed *order = fmi_alloc((size_t)n, sizeof(keyed));
    rotations rot = {fmi_alloc_raw(sizeof(int) * (size_t)buffered), fmi_alloc_raw(sizeof(double) * 2 * (size_t)buffered), 0,
                     buffered};
    int rc = FM_ENOMEM;
    if (!work || !order || !rot.row || !rot.cs)
        goto done;
    double *d = work, *e = d + n, *beta = e + n, *p = beta + n; /* p: 2n */
    tridiagonalize(a, n, d, e, beta, p);
    form_qt(a, n, beta, zt);
    rc = ql_implicit(d, e, n, zt, &rot);
    if (rc == FM_OK) {
        /* QL leaves the eigenvalues unordered; a (free now) holds the rows
         * while they are put in ascending order */
        for (int i = 0; i < n; i++)
            order[i] = (keyed){d[i], i};
        qsort(order, (size_t)n, sizeof(keyed), by_value);
        memcpy(a, zt, sizeof(double) * (size_t)n * n);
        for (int i = 0; i < n; i++) {
            values[i] = order[i].value;
            memcpy(zt + (size_t)i * n, a + (size_t)order[i].index * n, sizeof(double) * (size_t)n);
        }
    }
done:
    fmi_free(work);
    fmi_free(order);
    fmi_free(rot.row);
    fmi_free(rot.cs);
    return rc;
}

static void transpose_square(double *m, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            const double t = m[(size_t)i * n + j];
            m[(size_t)i * n + j] = m[(size_t)j * n + i];
            m[(size_t)j * n + i] = t;
        }
}

int fmi_sym_eigen(double *a, int n, double *values, double *vectors)
{
    if (!a || !values || !vectors || n < 1 || vectors == a)
        return fmi_error(FM_EINVAL, "fmi_sym_eigen: bad arguments (n = %d)", n);
    int rc = eigen_rows_own(a, n, values, vectors);
    if (rc == FM_OK)
        transpose_square(vectors, n);
    return rc;
}

/* ---- LAPACK's dsyevd (OpenBLAS) ------------------------------------------- */

#ifdef FM_HAVE_CBLAS
/* The Fortran interface, with the hidden lengths of the two character
 * arguments that gfortran-built LAPACKs expect. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t uplo_len);

/* Same output as eigen_rows_own: a, row-major and symmetric, is column-major
 * Aᵀ = A to Fortran, and the eigenvectors dsyevd writes as its columns are
 * our rows. It runs on one thread, as every OpenBLAS call of fewmul: split
 * among threads its sums would depend on their count (docs/method.md,
 * "Reproducibility"). Callers check fmi_blas_enabled first. */
static int eigen_rows_lapack(double *a, int n, double *values)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++)
            if (!isfinite(a[(size_t)i * n + j]))
                return fmi_error(FM_EINVAL, "dsyevd: entry (%d, %d) is not finite", i, j);
    int lwork = -1, liwork = -1, info = 0, iwork_size = 0;
    double work_size = 0.0;
    dsyevd_("V", "U", &n, a, &n, values, &work_size, &lwork, &iwork_size, &liwork, &info, 1, 1);
    if (info != 0)
        return fmi_error(FM_EINVAL, "dsyevd workspace query failed (info %d)", info);
    lwork = (int)work_size + 1;
    liwork = iwork_size;
    double *work = fmi_alloc_raw(sizeof(double) * (size_t)lwork);
    int *iwork = fmi_alloc_raw(sizeof(int) * (size_t)FM_MAX(liwork, 1));
    if (!work || !iwork) {
        fmi_free(work);
        fmi_free(iwork);
        return FM_ENOMEM;
    }
    fmi_blas_single_thread();
    dsyevd_("V", "U", &n, a, &n, values, work, &lwork, iwork, &liwork, &info, 1, 1);
    fmi_free(work);
    fmi_free(iwork);
    if (info != 0)
        return fmi_error(FM_EINVAL, "dsyevd failed (info %d)", info);
    return FM_OK;
}
#endif

int fmi_sym_eigen_lapack(double *a, int n, double *values, double *vectors)
{
    if (!a || !values || !vectors || n < 1 || vectors == a)
        return fmi_error(FM_EINVAL, "fmi_sym_eigen_lapack: bad arguments (n = %d)", n);
#ifdef FM_HAVE_CBLAS
    if (!fmi_blas_enabled())
        return fmi_error(FM_EUNSUPPORTED, "LAPACK is not called under a memory limit (ulimit -v, -d)");
    int rc = eigen_rows_lapack(a, n, values);
    if (rc == FM_OK) {
        memcpy(vectors, a, sizeof(double) * (size_t)n * n);
        transpose_square(vectors, n);
    }
    return rc;
#else
    (void)a;
    return fmi_error(FM_EUNSUPPORTED, "this build has no LAPACK (built without BLAS)");
#endif
}

/* ---- ZCA ------------------------------------------------------------------- */

/* The Gram matrix is built from blocks of rows (centred into a buffer) and
 * square tiles on or above the diagonal; each tile is a float product over
 * one row block, summed in double across blocks. OpenBLAS wants large
 * products; our own kernel wants tiles that stay in L2. The BLAS build takes
 * the own kernel too where OpenBLAS may not be called (fmi_blas_enabled). */
#define GRAM_ROWS_BLAS 2048
#define GRAM_TILE_BLAS 512
#define GRAM_ROWS_OWN 256
#define GRAM_TILE_OWN 64

/* C[i0.., j0..] += Σ_r xs[r, i0+a] xs[r, j0+b] over the m rows of the block:
 * 4 x 16 register tiles, the inner loop an outer product along contiguous j. */
static void gram_tile(const float *xs, int m, int ld, int i0, int mi, int j0, int mj, double *C, int ldc)
{
    for (int jb = 0; jb < mj; jb += 16) {
        const int nj = FM_MIN(16, mj - jb);
        for (int ib = 0; ib < mi; ib += 4) {
            const int ni = FM_MIN(4, mi - ib);
            float acc[4][16] = {{0}};
            const float *p = xs + i0 + ib, *q = xs + j0 + jb;
            if (ni == 4 && nj == 16) {
                for (int r = 0; r < m; r++, p += ld, q += ld) {
                    const float a0 = p[0], a1 = p[1], a2 = p[2], a3 = p[3];
                    for (int b = 0; b < 16; b++) {
                        const float v = q[b];
                        acc[0][b] += a0 * v;
                        acc[1][b] += a1 * v;
                        acc[2][b] += a2 * v;
                        acc[3][b] += a3 * v;
                    }
                }
            } else {
                for (int r = 0; r < m; r++, p += ld, q += ld)
                    for (int a = 0; a < ni; a++)
                        for (int b = 0; b < nj; b++)
                            acc[a][b] += p[a] * q[b];
            }
            for (int a = 0; a < ni; a++) {
                double *c = C + (size_t)(i0 + ib + a) * ldc + j0 + jb;
                for (int b = 0; b < nj; b++)
                    c[b] += acc[a][b];
            }
        }
    }
}

/* C (dim x dim doubles, zeroed by the caller) += Σ_r (x_r - centre)(x_r - centre)ᵀ
 * over the n rows of x; centre NULL means zero. Fills the upper triangle and
 * mirrors it, so C is exactly symmetric. */
static int gram(const float *x, int n, int dim, const double *centre, double *C)
{
    const int blas = fmi_blas_enabled();
    const int grows = blas ? GRAM_ROWS_BLAS : GRAM_ROWS_OWN;
    const int gtile = blas ? GRAM_TILE_BLAS : GRAM_TILE_OWN;
    const int rows = FM_MIN(n, grows);
    const int tiles = (dim + gtile - 1) / gtile;
    float *block = centre ? fmi_alloc_raw(sizeof(float) * (size_t)rows * dim) : NULL;
    if (centre && !block)
        return FM_ENOMEM;
    const int tile_side = FM_MIN(dim, gtile);
    float *tile = blas ? fmi_alloc_raw(sizeof(float) * (size_t)tile_side * tile_side) : NULL;
    if (blas && !tile) {
        fmi_free(block);
        return FM_ENOMEM;
    }
    for (int r0 = 0; r0 < n; r0 += rows) {
        const int m = FM_MIN(rows, n - r0);
        const float *xs = x + (size_t)r0 * dim;
        if (centre) {
#pragma omp parallel for schedule(static) if ((size_t)m * dim >= FM_PAR_MIN)
            for (int r = 0; r < m; r++)
                for (int j = 0; j < dim; j++)
                    block[(size_t)r * dim + j] = (float)(xs[(size_t)r * dim + j] - centre[j]);
            xs = block;
        }
        if (blas) {
            for (int ti = 0; ti < tiles; ti++)
                for (int tj = ti; tj < tiles; tj++) {
                    const int i0 = ti * gtile, j0 = tj * gtile;
                    const int mi = FM_MIN(gtile, dim - i0), mj = FM_MIN(gtile, dim - j0);
                    fmi_sgemm(1, 0, mi, mj, m, 1.0f, xs + i0, dim, xs + j0, dim, 0.0f, tile, mj);
#pragma omp parallel for schedule(static) if ((size_t)mi * mj >= FM_PAR_MIN)
                    for (int a = 0; a < mi; a++) {
                        double *c = C + (size_t)(i0 + a) * dim + j0;
                        const float *t = tile + (size_t)a * mj;
                        for (int b = 0; b < mj; b++)
                            c[b] += t[b];
                    }
                }
            continue;
        }
        /* one tile per iteration: no two threads write the same element */
#pragma omp parallel for schedule(dynamic, 1) if (tiles > 1)
        for (int t = 0; t < tiles * tiles; t++) {
            const int ti = t / tiles, tj = t % tiles;
            if (tj < ti)
                continue;
            const int i0 = ti * gtile, j0 = tj * gtile;
            gram_tile(xs, m, dim, i0, FM_MIN(gtile, dim - i0), j0, FM_MIN(gtile, dim - j0), C, dim);
        }
    }
    for (int i = 1; i < dim; i++)
        for (int j = 0; j < i; j++)
            C[(size_t)i * dim + j] = C[(size_t)j * dim + i];
    fmi_free(block);
    fmi_free(tile);
    return FM_OK;
}

int fmi_zca_fit(const float *x, int n, int dim, double filter_bias, float *mean, float *P)
{
    if (!x || !mean || !P || n < 1 || dim < 1 || !isfinite(filter_bias) || filter_bias < 0.0)
        return fmi_error(FM_EINVAL, "fmi_zca_fit: bad arguments (n %d, dim %d, filter_bias %g)", n, dim, filter_bias);
    const size_t dd = (size_t)dim * dim;
    double *mu = fmi_alloc((size_t)dim * 2, sizeof(double));
    double *cov = fmi_alloc(dd, sizeof(double));
    const int lapack = fmi_blas_enabled();
    /* dsyevd returns the eigenvectors in place */
    double *zt = lapack ? cov : fmi_alloc_raw(sizeof(double) * dd);
    float *wt = fmi_alloc_raw(sizeof(float) * dd);
    int rc = FM_OK;
    if (!mu || !cov || !zt || !wt) {
        rc = FM_ENOMEM;
        goto done;
    }
    double *values = mu + dim;

    /* column means; each column summed in row order by one thread */
    {
        enum { COLS = 64 };
        const int blocks = (dim + COLS - 1) / COLS;
#pragma omp parallel for schedule(static) if ((size_t)n * dim >= FM_PAR_MIN)
        for (int blk = 0; blk < blocks; blk++) {
            const int j0 = blk * COLS, nj = FM_MIN(COLS, dim - j0);
            double s[COLS] = {0};
            for (int r = 0; r < n; r++) {
                const float *row = x + (size_t)r * dim + j0;
                for (int j = 0; j < nj; j++)
                    s[j] += row[j];
            }
            for (int j = 0; j < nj; j++)
                mu[j0 + j] = s[j] / n;
        }
    }
    for (int j = 0; j < dim; j++)
        if (!isfinite(mu[j])) {
            rc = fmi_error(FM_EINVAL, "fmi_zca_fit: the data has non-finite values (column %d)", j);
            goto done;
        }

    if ((rc = gram(x, n, dim, mu, cov)) != FM_OK)
        goto done;
    for (size_t i = 0; i < dd; i++)
        cov[i] /= n;
    for (int i = 0; i < dim; i++)
        cov[(size_t)i * dim + i] += filter_bias;

#ifdef FM_HAVE_CBLAS
    if (lapack)
        rc = eigen_rows_lapack(cov, dim, values);
    else
#endif
        rc = eigen_rows_own(cov, dim, values, zt);
    if (rc != FM_OK)
        goto done;
    if (!(values[0] > 0.0)) {
        rc = fmi_error(FM_EINVAL, "fmi_zca_fit: covariance + filter_bias %g is not positive definite (smallest eigenvalue %g)",
                      filter_bias, values[0]);
        goto done;
    }

    /* P = V diag(mu^-1/2) Vᵀ = Wᵀ W with the rows of W the eigenvectors scaled
     * by mu^-1/4: a Gram matrix again, so the same tiled, double-summed code
     * forms it (symmetric by construction). */
#pragma omp parallel for schedule(static) if (dd >= FM_PAR_MIN)
    for (int i = 0; i < dim; i++) {
        const double f = 1.0 / sqrt(sqrt(values[i]));
        for (int j = 0; j < dim; j++)
            wt[(size_t)i * dim + j] = (float)(zt[(size_t)i * dim + j] * f);
    }
    memset(cov, 0, sizeof(double) * dd); /* zt is free now (and may be cov) */
    if ((rc = gram(wt, dim, dim, NULL, cov)) != FM_OK)
        goto done;
    for (size_t i = 0; i < dd; i++)
        P[i] = (float)cov[i];
    for (int j = 0; j < dim; j++)
        mean[j] = (float)mu[j];

done:
    fmi_free(mu);
    fmi_free(cov);
    if (!lapack)
        fmi_free(zt);
    fmi_free(wt);
    return rc;
}

void fmi_zca_apply(const float *mean, const float *P, const float *x, float *out, int n, int dim)
{
    if (!mean || !P || !x || !out || n < 1 || dim < 1)
        return;
    /* (x - mean)·P = x·P - mean·P: row 0 of out receives -mean·P, every row
     * a copy of it, and one GEMM with beta = 1 adds x·P — no scratch. */
    fmi_sgemm(0, 0, 1, dim, dim, -1.0f, mean, dim, P, dim, 0.0f, out, dim);
#pragma omp parallel for schedule(static) if ((size_t)n * dim >= FM_PAR_MIN)
    for (int r = 1; r < n; r++)
        memcpy(out + (size_t)r * dim, out, sizeof(float) * (size_t)dim);
    fmi_sgemm(0, 0, n, dim, dim, 1.0f, x, dim, P, dim, 1.0f, out, dim);
}

/* ---- LeCun local contrast normalization ----------------------------------- */

size_t fmi_lcn_scratch_floats(int h, int w, int kernel)
{
    if (h < 1 || w < 1 || kernel < 1)
        return 0;
    return 3 * (size_t)h * w + (size_t)kernel;
}

/* out = gauss * (x or x²) over one channel (stride c) with zero padding: the
 * normalised 2-D Gaussian is the outer product of the normalised 1-D one, so a
 * horizontal pass into tmp and a vertical one into out give the same sums. */
static void blur(const float *x, int c, int h, int w, const float *g, int mid, int square, float *tmp, float *out)
{
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            const int t0 = FM_MAX(0, mid - j), t1 = FM_MIN(2 * mid, w - 1 - j + mid);
            double s = 0.0;
            for (int t = t0; t <= t1; t++) {
                const double v = x[((size_t)i * w + j + t - mid) * c];
                s += g[t] * (square ? v * v : v);
            }
            tmp[(size_t)i * w + j] = (float)s;
        }
    for (int i = 0; i < h; i++) {
        const int t0 = FM_MAX(0, mid - i), t1 = FM_MIN(2 * mid, h - 1 - i + mid);
        for (int j = 0; j < w; j++) {
            double s = 0.0;
            for (int t = t0; t <= t1; t++)
                s += (double)g[t] * tmp[(size_t)(i + t - mid) * w + j];
            out[(size_t)i * w + j] = (float)s;
        }
    }
}

void fmi_lcn_channel(float *x, int h, int w, int c, int channel, int kernel, float threshold, float *scratch)
{
    if (!x || !scratch || h < 1 || w < 1 || c < 1 || channel < 0 || channel >= c || kernel < 1 || kernel % 2 == 0)
        return;
    const int mid = kernel / 2;
    const size_t hw = (size_t)h * w;
    float *g = scratch, *tmp = g + kernel, *local_mean = tmp + hw, *local_norm = local_mean + hw;
    /* gaussian_filter: exp(-(i² + j²) / (2 sigma²)) around the centre, / sum */
    double total = 0.0;
    for (int t = 0; t < kernel; t++)
        total += exp(-(double)(t - mid) * (t - mid) / (2.0 * FM_LCN_SIGMA * FM_LCN_SIGMA));
    for (int t = 0; t < kernel; t++)
        g[t] = (float)(exp(-(double)(t - mid) * (t - mid) / (2.0 * FM_LCN_SIGMA * FM_LCN_SIGMA)) / total);

    float *xc = x + channel;
    blur(xc, c, h, w, g, mid, 0, tmp, local_mean);
    blur(xc, c, h, w, g, mid, 1, tmp, local_norm);
    double sum = 0.0;
    for (size_t i = 0; i < hw; i++) {
        local_norm[i] = sqrtf(FM_MAX(local_norm[i], 0.0f));
        sum += local_norm[i];
    }
    const float image_mean = (float)(sum / (double)hw);
    for (size_t i = 0; i < hw; i++) {
        float divisor = FM_MAX(image_mean, local_norm[i]);
        divisor = FM_MAX(divisor, threshold);
        xc[i * c] = (xc[i * c] - local_mean[i]) / divisor;
    }
}

void fmi_lcn(float *x, int h, int w, int c, int kernel, float threshold, float *scratch)
{
    for (int ch = 0; ch < c; ch++)
        fmi_lcn_channel(x, h, w, c, ch, kernel, threshold, scratch);
}
