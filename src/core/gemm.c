/* gemm.c — fmi_sgemm: OpenBLAS when available (the fast path), otherwise a
 * straightforward row-parallel loop that is correct for every transpose case. */
#include "gemm.h"

#ifdef FM_HAVE_CBLAS
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Threads: OpenBLAS runs single-threaded (fmi_threads_set) and this function
 * splits C into column blocks, one per OpenMP thread. One thread pool instead
 * of two: OpenMP threads spinning between our loops would otherwise steal the
 * cores OpenBLAS's own threads need (measured: 2.5x slower training). */
void fmi_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    const CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
    int threads = 1;
#ifdef _OPENMP
    if ((double)M * N * K > 1e6)
        threads = omp_get_max_threads();
#endif
    if (threads <= 1) {
        cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Split the larger of M and N, in multiples of 16 to keep kernel tails rare. */
    const int split_rows = M >= N;
    const int extent = split_rows ? M : N;
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        int t = 0, nt = 1;
#endif
        int chunk = ((extent + nt - 1) / nt + 15) / 16 * 16;
        int lo = t * chunk, hi = lo + chunk < extent ? lo + chunk : extent;
        if (lo < hi) {
            if (split_rows) {
                const float *a = ta ? A + lo : A + (long)lo * lda;
                cblas_sgemm(CblasRowMajor, opa, opb, hi - lo, N, K, alpha, a, lda, B, ldb, beta,
                            C + (long)lo * ldc, ldc);
            } else {
                const float *b = tb ? B + (long)lo * ldb : B + lo;
                cblas_sgemm(CblasRowMajor, opa, opb, M, hi - lo, K, alpha, A, lda, b, ldb, beta,
                            C + lo, ldc);
            }
        }
    }
}

#else

void fmi_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    /* Row i of C is independent of the others, so rows split across threads and
     * each element sums over k in the same order whatever the thread count. */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *c = C + (long)i * ldc;
        for (int j = 0; j < N; j++)
            c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        for (int k = 0; k < K; k++) {
            float a = alpha * (ta ? A[(long)k * lda + i] : A[(long)i * lda + k]);
            if (tb) {
                for (int j = 0; j < N; j++)
                    c[j] += a * B[(long)j * ldb + k];
            } else {
                const float *b = B + (long)k * ldb;
                for (int j = 0; j < N; j++)
                    c[j] += a * b[j];
            }
        }
    }
}

#endif
