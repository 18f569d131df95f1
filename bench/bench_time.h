/* bench_time.h — the clock and the median of the kernel benchmarks in this
 * folder (fill_bench, maps_grad_bench, pow2_grad_bench, gemm_loop): header
 * only, so each stays one program of one file and this header. */
#ifndef FEWMUL_BENCH_TIME_H
#define FEWMUL_BENCH_TIME_H

#include <stdlib.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline int bench_by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of t[0 .. n-1] (n > 0; the upper one of an even count), sorting t. */
static inline double bench_median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, bench_by_value);
    return t[n / 2];
}

#endif
