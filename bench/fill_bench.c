/* fill_bench.c — the refill of a dense layer's packed layouts from drawn
 * weights, as every `--exec mulfree` step does it: fmi_kernel_fill_pair (one
 * pass along the rows for the forward and transposed layouts, or the forward
 * one alone) against fmi_kernel_fill once per layout (by output blocks), in
 * the same process, interleaved, on paper-mlp's shapes and weight kinds, 1
 * and 2 threads, medians of --repeats calls. Each call's layouts are checked
 * byte for byte against the fills'; it exits 1 otherwise. The weights are
 * drawn anew (fmi_binarize_stochastic, fmi_ternarize_stochastic) before each
 * call, as in training, so they come from the cache a step leaves them in.
 *
 * Run it as the command runs, with OMP_WAIT_POLICY=PASSIVE (README).
 *
 * usage: bench/fill_bench [--repeats N] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_time.h"
#include "infer.h"
#include "quant.h"
#include "rng.h"

typedef struct shape {
    const char *what;
    int in, out, transposed; /* transposed: the layer has the input gradient's layout too */
    fm_deploy_weights kind;
} shape;

static const shape shapes[] = {
    {"paper-mlp first layer", 784, 1024, 0, FM_DW_BINARY},
    {"paper-mlp hidden layer", 1024, 1024, 1, FM_DW_BINARY},
    {"paper-mlp first layer", 784, 1024, 0, FM_DW_TERNARY},
    {"paper-mlp hidden layer", 1024, 1024, 1, FM_DW_TERNARY},
};


static void draw(const shape *sh, const float *w, float *wq, size_t n, uint64_t round)
{
    if (sh->kind == FM_DW_TERNARY)
        fmi_ternarize_stochastic(w, wq, n, 1.0f, 7, round * n);
    else
        fmi_binarize_stochastic(w, wq, n, 1.0f, 7, round * n);
}

int main(int argc, char **argv)
{
    int repeats = 51;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--repeats") == 0 && a + 1 < argc && atoi(argv[a + 1]) > 0 &&
            atoi(argv[a + 1]) <= 100000) {
            repeats = atoi(argv[++a]);
        } else {
            fprintf(stderr, "usage: %s [--repeats N]\n", argv[0]);
            return 2;
        }
    }
    double *fills = malloc((size_t)repeats * sizeof *fills), *pairs = malloc((size_t)repeats * sizeof *pairs);
    if (!fills || !pairs) {
        fprintf(stderr, "fill_bench: out of memory\n");
        return 1;
    }
    printf("%-24s %-8s %-10s %7s %12s %12s %7s\n", "shape", "kind", "layouts", "threads", "fills us",
           "pair us", "ratio");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        const size_t n = (size_t)sh->in * sh->out;
        float *w = malloc(n * sizeof *w), *wq = malloc(n * sizeof *wq);
        if (!w || !wq) {
            fprintf(stderr, "fill_bench: out of memory\n");
            return 1;
        }
        fm_rng rng;
        fmi_rng_seed(&rng, 1234 + s);
        for (size_t i = 0; i < n; i++)
            w[i] = 2.0f * fmi_rng_uniform(&rng) - 1.0f;
        fm_kernel_weights *f1, *t1 = NULL, *f2, *t2 = NULL;
        if (fmi_kernel_layout(sh->kind, sh->in, sh->out, 0, NULL, &f1) < 0 ||
            fmi_kernel_layout(sh->kind, sh->in, sh->out, 0, NULL, &f2) < 0 ||
            (sh->transposed && (fmi_kernel_layout(sh->kind, sh->out, sh->in, 0, NULL, &t1) < 0 ||
                                fmi_kernel_layout(sh->kind, sh->out, sh->in, 0, NULL, &t2) < 0))) {
            fprintf(stderr, "fill_bench: %s\n", fm_last_error());
            return 1;
        }
        for (int threads = 1; threads <= 2; threads++) {
            int same = 1;
            for (int r = 0; r < repeats; r++) {
                draw(sh, w, wq, n, 2 * (uint64_t)r);
                double t0 = bench_now();
                fmi_kernel_fill(f1, wq, (size_t)sh->out, 1, threads);
                if (t1)
                    fmi_kernel_fill(t1, wq, 1, (size_t)sh->out, threads);
                fills[r] = bench_now() - t0;
                draw(sh, w, wq, n, 2 * (uint64_t)r); /* the same draw, back in the cache */
                t0 = bench_now();
                fmi_kernel_fill_pair(f2, t2, wq, threads);
                pairs[r] = bench_now() - t0;
                same &= memcmp(f1->layout, f2->layout, f1->layout_bytes) == 0 &&
                        (!t1 || memcmp(t1->layout, t2->layout, t1->layout_bytes) == 0);
            }
            const double a = bench_median(fills, repeats), b = bench_median(pairs, repeats);
            printf("%-24s %-8s %-10s %7d %12.1f %12.1f %7.2f%s\n", sh->what,
                   sh->kind == FM_DW_TERNARY ? "ternary" : "binary", t1 ? "both" : "forward", threads, 1e6 * a,
                   1e6 * b, a / b, same ? "" : "  LAYOUTS DIFFER");
            if (!same)
                return 1;
        }
        fmi_kernel_weights_free(f1), fmi_kernel_weights_free(f2);
        fmi_kernel_weights_free(t1), fmi_kernel_weights_free(t2);
        free(w), free(wq);
    }
    free(fills), free(pairs);
    return 0;
}
