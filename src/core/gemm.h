/* gemm.h — row-major single-precision matrix product C = alpha*op(A)*op(B) + beta*C,
 * through OpenBLAS when the build found it, else a portable OpenMP loop. */
#ifndef FEWMUL_GEMM_H
#define FEWMUL_GEMM_H

/* op(A) is M x K, op(B) is K x N, C is M x N; ta/tb nonzero mean transposed. */
void fmi_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

#endif
