/* pow2_grad_bench.c — the exponent-add weight gradient kernel (pow2_grad,
 * src/deploy/infer*.c) alone, per kernel variant this CPU supports, on the
 * shapes paper-mlp and paper-cnn give it: a hidden layer's Q(x) about half
 * zeros (the ReLU's), the first layer's mostly nonzero, and the im2col
 * columns of paper-cnn's unpooled convolutions. One thread, all rows, the
 * best of --repeats calls; each variant's result is checked bit for bit
 * against the reference before it is timed. A speed is only comparable
 * between builds run on the same machine in the same invocation of a shell
 * loop (docs/bench.md, "The exponent-add weight gradient alone").
 *
 * usage: bench/pow2_grad_bench [--repeats N] [--variants "ref avx2 avx512"] */
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
    int batch, in, out;
    int zero_percent; /* of Q(x) */
} shape;

static const shape shapes[] = {
    {"paper-mlp hidden layer", 200, 1024, 1024, 50},
    {"paper-mlp first layer", 200, 784, 1024, 8},
    {"paper-cnn conv 3 columns", 2028, 512, 256, 50},
    {"paper-cnn conv 5 columns", 850, 1024, 512, 50},
};


int main(int argc, char **argv)
{
    int repeats = 7;
    const char *wanted = NULL;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--repeats") == 0 && a + 1 < argc && atoi(argv[a + 1]) > 0) {
            repeats = atoi(argv[++a]);
        } else if (strcmp(argv[a], "--variants") == 0 && a + 1 < argc) {
            wanted = argv[++a];
        } else {
            fprintf(stderr, "usage: %s [--repeats N] [--variants \"ref avx2 avx512\"]\n", argv[0]);
            return 2;
        }
    }
    printf("%-26s %-7s %10s %9s  %s\n", "shape (batch x in x out)", "variant", "q zero", "best ms",
           "bits");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        const size_t qn = (size_t)sh->batch * sh->in, en = (size_t)sh->batch * sh->out;
        const size_t wn = (size_t)sh->in * sh->out;
        float *x = malloc(qn * sizeof *x), *q = malloc(qn * sizeof *q), *e = malloc(en * sizeof *e);
        float *want = malloc(wn * sizeof *want), *got = malloc(wn * sizeof *got);
        if (!x || !q || !e || !want || !got) {
            fprintf(stderr, "pow2_grad_bench: out of memory\n");
            return 1;
        }
        fm_rng rng;
        fmi_rng_seed(&rng, 1234 + s);
        for (size_t i = 0; i < qn; i++) {
            const float u = fmi_rng_uniform(&rng);
            x[i] = u * 100.0f < (float)sh->zero_percent ? 0.0f : 3.0f * u;
        }
        fmi_pow2_quantize(x, q, qn, -4, 3, 5, 0);
        for (size_t i = 0; i < en; i++)
            e[i] = fmi_rng_uniform(&rng) - 0.5f;
        size_t zeros = 0;
        for (size_t i = 0; i < qn; i++)
            zeros += q[i] == 0.0f;
        fmi_pow2_grad_ref(q, e, want, sh->batch, sh->in, sh->out, 0, sh->in);
        for (int v = 0; fmi_kernels_supported(v); v++) {
            const fm_kernels *k = fmi_kernels_supported(v);
            if (wanted ? !strstr(wanted, k->name) : strcmp(k->name, "ref") == 0)
                continue; /* the reference only when asked: it is slow */
            k->pow2_grad(q, e, got, sh->batch, sh->in, sh->out, 0, sh->in);
            const int same = memcmp(got, want, wn * sizeof *got) == 0;
            double best = 1e30;
            for (int r = 0; r < repeats; r++) {
                const double t0 = bench_now();
                k->pow2_grad(q, e, got, sh->batch, sh->in, sh->out, 0, sh->in);
                const double t = bench_now() - t0;
                best = t < best ? t : best;
            }
            printf("%-26s %-7s %9.1f%% %9.2f  %s   (%d x %d x %d)\n", sh->what, k->name,
                   100.0 * (double)zeros / (double)qn, 1e3 * best, same ? "= ref" : "DIFFER FROM REF",
                   sh->batch, sh->in, sh->out);
            if (!same)
                return 1;
        }
        free(x), free(q), free(e), free(want), free(got);
    }
    return 0;
}
