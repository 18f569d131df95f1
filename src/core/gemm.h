/* gemm.h — row-major single-precision matrix product C = alpha*op(A)*op(B) + beta*C,
 * through OpenBLAS when the build found it and may call it, else a portable
 * OpenMP loop. */
#ifndef FEWMUL_GEMM_H
#define FEWMUL_GEMM_H

/* op(A) is M x K, op(B) is K x N, C is M x N; ta/tb nonzero mean transposed.
 * The result does not depend on the thread count: the portable loop sums each
 * element alone, and OpenBLAS's products are cut in a grid of the shape's
 * (gemm.c). */
void fmi_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* The portable loop alone, in every build: what fmi_sgemm runs without OpenBLAS. */
void fmi_sgemm_portable(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc);
/* 1 when OpenBLAS routines may be called: the build has them and the process
 * has no finite memory limit (fmi_memory_limited; gemm.c says why). Every
 * caller of OpenBLAS or LAPACK asks this first. */
int fmi_blas_enabled(void);

#endif
