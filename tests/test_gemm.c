/* test_gemm.c — fmi_sgemm (OpenBLAS or the portable loop, whichever this build
 * uses) against a double-precision reference, for every transpose case, odd
 * shapes, alpha/beta, and the sizes that split across threads, and the same
 * bits on 1, 2 and 3 threads; the portable loop (every build has it: the BLAS
 * build runs it under a memory limit) bit for bit against the sums it
 * defines, its copies of a transposed B included; each library of the build
 * forced on every tile (FEWMUL_GEMM's choices): the same bits on 1, 2 and 3
 * threads and sums within float rounding of the portable loop's; the
 * thread counts fmi_threads_usable grants; and products under a storm of
 * signals (oneDNN's kernels, unguarded, let a signal's frame overwrite the
 * heap). */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

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

/* The portable loop's arithmetic, written plainly: each element starts at
 * beta*C (0 when beta is 0) and adds (alpha*a_ik)*b_kj for k = 0, 1, ... */
static void defined_sums(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float c = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
            for (int k = 0; k < K; k++) {
                float a = alpha * (ta ? A[(long)k * lda + i] : A[(long)i * lda + k]);
                c += a * (tb ? B[(long)j * ldb + k] : B[(long)k * ldb + j]);
            }
            C[(long)i * ldc + j] = c;
        }
}

static void *failing_malloc(size_t size, void *user)
{
    (void)size;
    (void)user;
    return NULL;
}
static void *failing_realloc(void *ptr, size_t size, void *user)
{
    (void)ptr;
    (void)size;
    (void)user;
    return NULL;
}
static void plain_free(void *ptr, void *user)
{
    (void)user;
    free(ptr);
}

/* n uniform values in [-1, 1), drawn in order from rng. */
static void fill_signed(fm_rng *rng, float *p, long n)
{
    for (long i = 0; i < n; i++)
        p[i] = 2.0f * fmi_rng_uniform(rng) - 1.0f;
}

static void check_portable(int ta, int tb, int M, int N, int K, float alpha, float beta)
{
    fm_rng rng;
    fmi_rng_seed(&rng, (uint64_t)(M * 31 + N * 17 + K * 5 + ta * 2 + tb));
    int lda = ta ? M : K, ldb = tb ? K : N, ldc = N + 3;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
    float *C0 = malloc(sizeof(float) * M * ldc), *C = malloc(sizeof(float) * M * ldc);
    float *E = malloc(sizeof(float) * M * ldc);
    fill_signed(&rng, A, M * K);
    fill_signed(&rng, B, K * N);
    fill_signed(&rng, C0, M * ldc);
    memcpy(E, C0, sizeof(float) * M * ldc);
    defined_sums(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, E, ldc);
    for (int pass = 0; pass < 2; pass++) {
        /* pass 1: no memory for the copy of a transposed B, the strided sums */
        if (pass == 1) {
            const fm_allocator none = {failing_malloc, failing_realloc, plain_free, NULL};
            fm_set_allocator(&none);
        }
        for (int threads = 1; threads <= 2; threads++) {
            memcpy(C, C0, sizeof(float) * M * ldc);
            fmi_threads_set(threads);
            fmi_sgemm_portable(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            if (memcmp(C, E, sizeof(float) * M * ldc) != 0)
                fail_msg("portable ta=%d tb=%d %dx%dx%d (%s, %d threads) differs from its defined sums",
                         ta, tb, M, N, K, pass ? "no copy" : "copied", threads);
        }
        fm_set_allocator(NULL);
    }
    free(A);
    free(B);
    free(C0);
    free(C);
    free(E);
}

static void test_portable_exact(void **state)
{
    (void)state;
    /* 300 and 600 columns: a transposed B copied in panels of 256 and a tail */
    const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {37, 300, 19}, {5, 600, 33}, {64, 16, 257}};
    for (int s = 0; s < 5; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                check_portable(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f);
                check_portable(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], -0.5f, 0.75f);
            }
}

/* fmi_sgemm (OpenBLAS or portable) gives the same bits on 1, 2 and 3 threads,
 * on shapes large enough to be shared among threads (over 10^6
 * multiply-adds), with ragged edges and strided C. */
static void test_same_bits_any_threads(void **state)
{
    (void)state;
    const int shapes[][3] = {{200, 130, 70}, {64, 300, 129}, {301, 517, 40}, {1000, 37, 90}};
    for (int s = 0; s < 4; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ldc = N + 5;
                const int lda = ta ? M : K, ldb = tb ? K : N;
                fm_rng rng;
                fmi_rng_seed(&rng, (uint64_t)(s * 4 + ta * 2 + tb));
                float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
                float *C0 = malloc(sizeof(float) * M * ldc), *C[3];
                fill_signed(&rng, A, M * K);
                fill_signed(&rng, B, K * N);
                fill_signed(&rng, C0, M * ldc);
                for (int t = 0; t < 3; t++) {
                    C[t] = malloc(sizeof(float) * M * ldc);
                    memcpy(C[t], C0, sizeof(float) * M * ldc);
                    fmi_threads_set(t + 1);
                    fmi_sgemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, C[t], ldc);
                }
                fmi_threads_set(2);
                for (int t = 1; t < 3; t++)
                    if (memcmp(C[0], C[t], sizeof(float) * M * ldc) != 0)
                        fail_msg("ta=%d tb=%d %dx%dx%d: 1 and %d threads give different bits", ta,
                                 tb, M, N, K, t + 1);
                free(A), free(B), free(C0), free(C[0]), free(C[1]), free(C[2]);
            }
}

/* The library choices this build has (FEWMUL_GEMM): auto always, openblas and
 * dnnl when fm_gemm_libraries names them. */
static int choices(int *out)
{
    int n = 0;
    out[n++] = FMI_GEMM_AUTO;
    if (strstr(fm_gemm_libraries(), "OpenBLAS"))
        out[n++] = FMI_GEMM_OPENBLAS;
    if (strstr(fm_gemm_libraries(), "oneDNN")) {
        /* the library is there, so a oneDNN tile runs in it, not elsewhere */
        assert_true(fmi_gemm_dnnl_opened());
        out[n++] = FMI_GEMM_DNNL;
    }
    return n;
}

/* Products of one tile (under 10^6 multiply-adds) with a long K, which a
 * library left to its own threads may split among them, and products of
 * several tiles; paper-cnn's and paper-mlp's tile shapes among them. */
static const int lib_shapes[][3] = {{8, 8, 15000},  {27, 64, 28800}, {64, 64, 60000}, {200, 130, 70},
                                    {301, 517, 40}, {208, 128, 1152}, {200, 1024, 784},
                                    {128, 256, 800}};
#define LIB_SHAPES ((int)(sizeof lib_shapes / sizeof lib_shapes[0]))

/* Each library this build has, forced on every tile, gives the same bits on
 * 1, 2 and 3 threads, and sums within float rounding of the portable loop's
 * (the same sums in another order). */
static void test_each_library(void **state)
{
    (void)state;
    int choice[3];
    const int nc = choices(choice);
    for (int c = 0; c < nc; c++)
        for (int s = 0; s < LIB_SHAPES; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    const int M = lib_shapes[s][0], N = lib_shapes[s][1], K = lib_shapes[s][2];
                    const int ldc = N + 3, lda = ta ? M : K, ldb = tb ? K : N;
                    fm_rng rng;
                    fmi_rng_seed(&rng, (uint64_t)(s * 4 + ta * 2 + tb + 100));
                    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
                    float *C0 = malloc(sizeof(float) * M * ldc), *P = malloc(sizeof(float) * M * ldc);
                    float *C[3];
                    fill_signed(&rng, A, (long)M * K);
                    fill_signed(&rng, B, (long)K * N);
                    fill_signed(&rng, C0, (long)M * ldc);
                    memcpy(P, C0, sizeof(float) * M * ldc);
                    fmi_threads_set(2);
                    fmi_sgemm_portable(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, P, ldc);
                    for (int t = 0; t < 3; t++) {
                        C[t] = malloc(sizeof(float) * M * ldc);
                        memcpy(C[t], C0, sizeof(float) * M * ldc);
                        fmi_threads_set(t + 1);
                        fmi_sgemm_with(choice[c], ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f,
                                       C[t], ldc);
                    }
                    fmi_threads_set(2);
                    for (int t = 1; t < 3; t++)
                        if (memcmp(C[0], C[t], sizeof(float) * M * ldc) != 0)
                            fail_msg("choice %d ta=%d tb=%d %dx%dx%d: 1 and %d threads give "
                                     "different bits",
                                     choice[c], ta, tb, M, N, K, t + 1);
                    /* each term is under 0.5 in size: K of them round within
                     * K * 2^-24 * 0.5 * K of each other's order (a loose
                     * bound: sqrt(K) is typical) */
                    const double tol = 1e-6 * K;
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < N; j++)
                            if (fabs((double)C[0][(long)i * ldc + j] - P[(long)i * ldc + j]) > tol)
                                fail_msg("choice %d ta=%d tb=%d %dx%dx%d: C[%d,%d] = %.7g, the "
                                         "portable loop %.7g",
                                         choice[c], ta, tb, M, N, K, i, j,
                                         C[0][(long)i * ldc + j], P[(long)i * ldc + j]);
                    free(A), free(B), free(C0), free(P), free(C[0]), free(C[1]), free(C[2]);
                }
}

/* The library names: the build's, and FEWMUL_GEMM's check of a value
 * (checked here before the first product reads it). */
static void test_gemm_choice(void **state)
{
    (void)state;
    const char *libs = fm_gemm_libraries();
    assert_true(strcmp(libs, "OpenBLAS and oneDNN") == 0 || strcmp(libs, "OpenBLAS") == 0 ||
                strcmp(libs, "oneDNN") == 0 || strcmp(libs, "portable loop") == 0);
    const char *saved = getenv("FEWMUL_GEMM");
    setenv("FEWMUL_GEMM", "auto", 1);
    assert_int_equal(fm_gemm_check(), FM_OK);
    setenv("FEWMUL_GEMM", "", 1);
    assert_int_equal(fm_gemm_check(), FM_OK);
    setenv("FEWMUL_GEMM", "mkl", 1);
    assert_int_equal(fm_gemm_check(), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "FEWMUL_GEMM=mkl"));
    setenv("FEWMUL_GEMM", "dnnl", 1);
    assert_int_equal(fm_gemm_check(), strstr(libs, "oneDNN") ? FM_OK : FM_EUNSUPPORTED);
    setenv("FEWMUL_GEMM", "openblas", 1);
    assert_int_equal(fm_gemm_check(), strstr(libs, "OpenBLAS") ? FM_OK : FM_EUNSUPPORTED);
    if (saved)
        setenv("FEWMUL_GEMM", saved, 1);
    else
        unsetenv("FEWMUL_GEMM");
}

/* Without a limit here every count asked for is granted (at least 1), and
 * fm_threads_usable names what was asked. */
static volatile sig_atomic_t alarms;
static void count_alarm(int sig)
{
    (void)sig;
    alarms++;
}

/* Products on the training shapes while a timer raises SIGALRM every 50 µs,
 * a handler installed: each product keeps its bits, and the heap survives
 * (Debian's oneDNN 2.6, called with signals open, aborted this within a
 * second with "corrupted size vs. prev_size"; src/core/gemm.c). */
static void test_signals_during_products(void **state)
{
    (void)state;
    const int M = 200, N = 512, K = 784;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
    float *C = malloc(sizeof(float) * M * N), *C0 = malloc(sizeof(float) * M * N);
    assert_true(A && B && C && C0);
    for (int i = 0; i < M * K; i++)
        A[i] = (float)(i * 7 % 13) - 6.0f;
    for (int i = 0; i < K * N; i++)
        B[i] = (float)(i * 5 % 11) - 5.0f;
    fmi_threads_set(1);
    fmi_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C0, N);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count_alarm;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
    struct itimerval every = {{0, 50}, {0, 50}}, off = {{0, 0}, {0, 0}};
    assert_int_equal(setitimer(ITIMER_REAL, &every, NULL), 0);
    int wrong = 0;
    for (int r = 0; r < 600; r++) {
        fmi_threads_set(1 + r % 2);
        fmi_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        wrong += memcmp(C, C0, sizeof(float) * M * N) != 0;
        free(malloc(1000 + (size_t)r)); /* the allocator walks its chunks */
    }
    assert_int_equal(setitimer(ITIMER_REAL, &off, NULL), 0);
    assert_int_equal(sigaction(SIGALRM, &old, NULL), 0);
    print_message("%d signals during 600 products\n", (int)alarms);
    assert_true(alarms > 0);
    assert_int_equal(wrong, 0);
    free(A);
    free(B);
    free(C);
    free(C0);
}

static void test_threads_usable(void **state)
{
    (void)state;
    int wanted = 0;
    assert_int_equal(fm_threads_usable(3, &wanted), 3);
    assert_int_equal(wanted, 3);
    assert_int_equal(fmi_threads_usable(1), 1);
    const int all = fm_threads_usable(0, &wanted);
    assert_true(all >= 1);
    assert_int_equal(all, wanted);
    assert_int_equal(fmi_threads_set(2), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_all_transposes),
                                       cmocka_unit_test(test_portable_exact),
                                       cmocka_unit_test(test_same_bits_any_threads),
                                       cmocka_unit_test(test_each_library),
                                       cmocka_unit_test(test_gemm_choice),
                                       cmocka_unit_test(test_threads_usable),
                                       cmocka_unit_test(test_signals_during_products)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
