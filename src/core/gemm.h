/* gemm.h — row-major single-precision matrix product C = alpha*op(A)*op(B) + beta*C,
 * through OpenBLAS and/or oneDNN when the build found them and may call them,
 * else a portable OpenMP loop. */
#ifndef FEWMUL_GEMM_H
#define FEWMUL_GEMM_H

/* op(A) is M x K, op(B) is K x N, C is M x N; ta/tb nonzero mean transposed.
 * The result does not depend on the thread count: the portable loop sums each
 * element alone, and the libraries' products are cut in a grid of the
 * shape's, each tile to the library its shape picks (gemm.c). */
void fmi_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* The libraries a product's tiles may go to: FEWMUL_GEMM=auto|openblas|dnnl. */
enum { FMI_GEMM_AUTO = 0, FMI_GEMM_OPENBLAS = 1, FMI_GEMM_DNNL = 2 };
/* FEWMUL_GEMM's choice, read once (auto when unset or invalid: the command
 * checks it first, fm_gemm_check). */
int fmi_gemm_choice(void);
/* fmi_sgemm with the library choice given instead of FEWMUL_GEMM's (the
 * tests); choice must name a library of this build, or be auto. */
void fmi_sgemm_with(int choice, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* 1 when this build has oneDNN and its library opens (it is opened at the
 * first product that calls it; a build whose library cannot be opened runs
 * those tiles in OpenBLAS, else in the portable loop). */
int fmi_gemm_dnnl_opened(void);
/* The portable loop alone, in every build: what fmi_sgemm runs without OpenBLAS. */
void fmi_sgemm_portable(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc);
/* 1 when OpenBLAS (and LAPACK) routines may be called: the build has them and the process
 * has no finite memory limit (fmi_memory_limited; gemm.c says why). Every
 * caller of OpenBLAS or LAPACK asks this first. */
int fmi_blas_enabled(void);

#endif
