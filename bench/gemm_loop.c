/* gemm_loop: the GEMMs of one paper-mlp (784-1024-1024-1024-10) training step, and nothing else,
 * run through OpenBLAS sgemm in a timed loop. It is the ceiling a float trainer of this
 * network could reach on this machine: forward Y = X.W (4 layers), backward data dX = dY.W^T
 * (layers 2..4; layer 1's input gradient is not needed), weight gradient dW = X^T.dY (4 layers).
 * Prints one JSON line: {"peer":"openblas-gemm-loop","threads":T,"batch":B,"images_per_s":...}. */
#define _POSIX_C_SOURCE 200112L /* clock_gettime under -std=c11 */
#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_time.h"

/* OpenBLAS's own cblas.h declares this; restated so that another cblas.h still compiles. */
void openblas_set_num_threads(int num_threads);

#define NLAYERS 4
static const int dims[NLAYERS + 1] = {784, 1024, 1024, 1024, 10};

/* 64-byte aligned float buffer of n elements, filled uniformly in [lo, hi) by a fixed LCG. */
static float *alloc_fill(size_t n, float lo, float hi, unsigned *state) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) {
        fprintf(stderr, "gemm_loop: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        *state = *state * 1664525u + 1013904223u;
        p[i] = lo + (hi - lo) * (float)(*state >> 8) * (1.0f / 16777216.0f);
    }
    return p;
}

static int parse_int(const char *name, const char *s, int lo) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > INT_MAX) {
        fprintf(stderr, "gemm_loop: bad value for %s: '%s'\n", name, s);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv) {
    int batch = 200, threads = 2, steps = 50, warmup = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: gemm_loop [--batch 200] [--threads 2] [--steps 50] [--warmup 5]\n");
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "gemm_loop: %s needs a value (or unknown option)\n", a);
            return 2;
        }
        if (!strcmp(a, "--batch")) batch = parse_int(a, argv[++i], 1);
        else if (!strcmp(a, "--threads")) threads = parse_int(a, argv[++i], 1);
        else if (!strcmp(a, "--steps")) steps = parse_int(a, argv[++i], 1);
        else if (!strcmp(a, "--warmup")) warmup = parse_int(a, argv[++i], 0);
        else {
            fprintf(stderr, "gemm_loop: unknown option %s\n", a);
            return 2;
        }
    }
    openblas_set_num_threads(threads);

    /* x[l]: input of layer l, B x dims[l] (x[0] the images, x[l+1] layer l's output);
     * w[l], dw[l]: dims[l] x dims[l+1]; g[l]: gradient of layer l's output, B x dims[l+1]. */
    unsigned rng = 12345u;
    float *x[NLAYERS + 1], *w[NLAYERS], *dw[NLAYERS], *g[NLAYERS];
    for (int l = 0; l <= NLAYERS; l++) x[l] = alloc_fill((size_t)batch * dims[l], 0.0f, 1.0f, &rng);
    for (int l = 0; l < NLAYERS; l++) {
        w[l] = alloc_fill((size_t)dims[l] * dims[l + 1], -0.03f, 0.03f, &rng);
        dw[l] = alloc_fill((size_t)dims[l] * dims[l + 1], 0.0f, 0.0f, &rng);
        g[l] = alloc_fill((size_t)batch * dims[l + 1], -0.01f, 0.01f, &rng);
    }

    double t0 = 0.0;
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) t0 = bench_now();
        for (int l = 0; l < NLAYERS; l++) /* forward: x[l+1] = x[l] . w[l]   (B x in)(in x out) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, dims[l + 1], dims[l], 1.0f,
                        x[l], dims[l], w[l], dims[l + 1], 0.0f, x[l + 1], dims[l + 1]);
        for (int l = NLAYERS - 1; l >= 0; l--) {
            /* weight gradient: dw[l] = x[l]^T . g[l]   (in x B)(B x out) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dims[l], dims[l + 1], batch, 1.0f,
                        x[l], dims[l], g[l], dims[l + 1], 0.0f, dw[l], dims[l + 1]);
            /* data gradient: g[l-1] = g[l] . w[l]^T   (B x out)(out x in), not for layer 1 */
            if (l > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, dims[l], dims[l + 1], 1.0f,
                            g[l], dims[l + 1], w[l], dims[l + 1], 0.0f, g[l - 1], dims[l]);
        }
    }
    double dt = bench_now() - t0;

    /* 2 flops per multiply-add: forward and weight gradient on all layers, data gradient on 2..4. */
    double macs = 0.0;
    for (int l = 0; l < NLAYERS; l++) macs += (l > 0 ? 3.0 : 2.0) * dims[l] * dims[l + 1];
    double flops = 2.0 * macs * batch * steps;
    float check = 0.0f; /* keeps the results live; NaN/inf here would mean a broken run */
    for (int l = 0; l < NLAYERS; l++) check += dw[l][0] + x[l + 1][0];
    printf("{\"peer\":\"openblas-gemm-loop\",\"threads\":%d,\"batch\":%d,\"steps\":%d,"
           "\"images_per_s\":%.1f,\"gflop_per_s\":%.2f,\"finite\":%s}\n",
           threads, batch, steps, (double)batch * steps / dt, flops / dt * 1e-9,
           (check == check && check - check == 0.0f) ? "true" : "false");

    for (int l = 0; l <= NLAYERS; l++) free(x[l]);
    for (int l = 0; l < NLAYERS; l++) {
        free(w[l]);
        free(dw[l]);
        free(g[l]);
    }
    return 0;
}
