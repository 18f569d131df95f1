/* test_gemm.c — fmi_sgemm (OpenBLAS or the portable loop, whichever this build
 * uses) against a double-precision reference, for every transpose case, odd
 * shapes, alpha/beta, and the sizes that split across threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "gemm.h"
#include "internal.h"
#include "rng.h"

static void check_case(int ta, int tb, int M, int N, int K, float alpha, float beta, int threads)
{
    fm_rng rng;
    fmi_rng_seed(&rng, (uint64_t)(M * 131 + N * 7 + K + ta * 3 + tb));
    int lda = ta ? M : K, ldb = tb ? K : N;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
    float *C = malloc(sizeof(float) * M * N), *C0 = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++)
        A[i] = 2.0f * fmi_rng_uniform(&rng) - 1.0f;
    for (int i = 0; i < K * N; i++)
        B[i] = 2.0f * fmi_rng_uniform(&rng) - 1.0f;
    for (int i = 0; i < M * N; i++)
        C[i] = C0[i] = 2.0f * fmi_rng_uniform(&rng) - 1.0f;
    fmi_threads_set(threads);
    fmi_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                     (tb ? B[j * ldb + k] : B[k * ldb + j]);
            double expect = alpha * s + beta * C0[i * N + j];
            double tol = 1e-5 * (K + 1);
            if (fabs(C[i * N + j] - expect) > tol)
                fail_msg("ta=%d tb=%d %dx%dx%d: C[%d,%d] = %.7g, expected %.7g", ta, tb, M, N, K,
                         i, j, C[i * N + j], expect);
        }
    free(A);
    free(B);
    free(C);
    free(C0);
}

static void test_all_transposes(void **state)
{
    (void)state;
    const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 9}, {200, 130, 70}, {64, 300, 129}};
    for (int s = 0; s < 5; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int threads = 1; threads <= 2; threads++) {
                    check_case(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f, threads);
                    check_case(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], -0.5f, 0.75f,
                               threads);
                }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_all_transposes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
