/* threads.c — the clock and the one place that sets thread counts for both
 * OpenMP (our loops) and OpenBLAS (float GEMM). */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef FM_HAVE_CBLAS
#include <cblas.h>
#endif

double fmi_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int fmi_threads_available(void)
{
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
#endif
}

void fmi_blas_single_thread(void)
{
#ifdef FM_HAVE_CBLAS
    openblas_set_num_threads(1);
#endif
}

int fmi_threads_set(int threads)
{
    if (threads <= 0)
        threads = fmi_threads_available();
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
#ifdef FM_HAVE_CBLAS
    /* fmi_sgemm splits GEMMs across OpenMP threads itself (see gemm.c) */
    openblas_set_num_threads(1);
#endif
    return threads;
}
