/* maps_grad_bench.c — a convolution's exponent-add weight gradient from its
 * maps (fmi_mulfree_conv_pow2_grad's path for pooled layers, mulfree.c) on
 * the shapes of paper-cnn's pooled convolutions, batch 100: Q(x) about half
 * zeros (the ReLU's), three errors in four zero (max-pooling's). One thread,
 * the median of --repeats calls, each result checked bit for bit against
 * the im2col path. A speed is only comparable between builds run on the same
 * machine in the same invocation of a shell loop.
 *
 * usage: bench/maps_grad_bench [--repeats N] [--kernels NAME] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_time.h"
#include "conv.h"
#include "infer.h"
#include "internal.h"
#include "mulfree.h"
#include "quant.h"
#include "rng.h"

typedef struct shape {
    const char *what;
    fm_conv_geom g;
} shape;

static const shape shapes[] = {
    {"paper-cnn conv 2", {30, 30, 128, 3, 3, 1, 0, 0, 28, 28, 128}},
    {"paper-cnn conv 4", {13, 13, 256, 2, 2, 1, 0, 0, 12, 12, 256}},
    {"paper-cnn conv 6", {5, 5, 512, 2, 2, 1, 0, 0, 4, 4, 512}},
};

enum { BATCH = 100 };


int main(int argc, char **argv)
{
    int repeats = 5;
    const char *name = NULL;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--repeats") == 0 && a + 1 < argc && atoi(argv[a + 1]) > 0 &&
            atoi(argv[a + 1]) <= 1000) {
            repeats = atoi(argv[++a]);
        } else if (strcmp(argv[a], "--kernels") == 0 && a + 1 < argc) {
            name = argv[++a];
        } else {
            fprintf(stderr, "usage: %s [--repeats N] [--kernels NAME]\n", argv[0]);
            return 2;
        }
    }
    const fm_kernels *k;
    if ((name ? fmi_kernels_get(name, &k) : fmi_kernels_default(&k)) < 0) {
        fprintf(stderr, "maps_grad_bench: no kernels '%s' on this CPU\n", name ? name : "default");
        return 1;
    }
    printf("%-18s %-7s %-6s %10s %12s  %s\n", "shape", "kernels", "maps", "median ms", "ns per term", "bits");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const fm_conv_geom *g = &shapes[s].g;
        const size_t qn = (size_t)BATCH * g->in_h * g->in_w * g->in_c;
        const size_t en = (size_t)BATCH * fmi_conv_positions(g) * g->out_c;
        const size_t wn = (size_t)fmi_conv_fan_in(g) * g->out_c;
        const size_t maps_floats = fmi_mulfree_conv_grad_floats(k, g, BATCH);
        const size_t columns_floats = fmi_conv_scratch_floats(g, BATCH);
        if (maps_floats == 0) {
            printf("%-18s %-7s: the kernels cannot form it from the maps\n", shapes[s].what, k->name);
            continue;
        }
        /* the library's allocations, aligned as training's buffers are */
        float *x = fmi_alloc(qn, sizeof *x), *q = fmi_alloc(qn, sizeof *q), *e = fmi_alloc(en, sizeof *e);
        float *want = fmi_alloc(wn, sizeof *want), *got = fmi_alloc(wn, sizeof *got);
        float *maps = fmi_alloc(maps_floats, sizeof *maps);
        float *columns = fmi_alloc(columns_floats ? columns_floats : 1, sizeof *columns);
        double *times = malloc((size_t)repeats * sizeof *times);
        if (!x || !q || !e || !want || !got || !maps || !columns || !times) {
            fprintf(stderr, "maps_grad_bench: out of memory\n");
            return 1;
        }
        fm_rng rng;
        fmi_rng_seed(&rng, 1234 + s);
        for (size_t i = 0; i < qn; i++) {
            const float u = fmi_rng_uniform(&rng);
            x[i] = u < 0.5f ? 0.0f : 3.0f * u;
        }
        fmi_pow2_quantize(x, q, qn, -4, 3, 5, 0);
        size_t terms = 0;
        for (size_t i = 0; i < en; i++) {
            const float u = fmi_rng_uniform(&rng);
            e[i] = u < 0.75f ? 0.0f : ldexpf(u - 0.875f, -3); /* within the exact range */
            terms += e[i] != 0.0f;
        }
        int path = fmi_mulfree_conv_pow2_grad(k, g, q, e, want, BATCH, columns, NULL, 0, 1);
        if (path != 1) {
            fprintf(stderr, "maps_grad_bench: the im2col path did not run exactly (%d)\n", path);
            return 1;
        }
        int same = 1;
        for (int r = 0; r < repeats; r++) {
            const double t0 = bench_now();
            path = fmi_mulfree_conv_pow2_grad(k, g, q, e, got, BATCH, columns, maps, maps_floats, 1);
            times[r] = bench_now() - t0;
            same &= path >= 2 && memcmp(got, want, wn * sizeof *got) == 0;
        }
        const double median = bench_median(times, repeats);
        printf("%-18s %-7s %-6s %10.2f %12.2f  %s   (%zu terms)\n", shapes[s].what, k->name,
               path == 3 ? "bytes" : "floats", 1e3 * median,
               1e9 * median / (double)terms, same ? "= im2col" : "DIFFER FROM IM2COL", terms);
        if (!same)
            return 1;
        fmi_free(x), fmi_free(q), fmi_free(e), fmi_free(want), fmi_free(got), fmi_free(maps), fmi_free(columns);
        free(times);
    }
    return 0;
}
