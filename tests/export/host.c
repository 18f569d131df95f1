/* host.c — runs a network exported by `fewmul export --c` on the host
 * (MODEL_H names its header, MODEL its name, MODEL_UPPER its macros'
 * prefix): reads COUNT inputs of the model's size from a raw file (pixels as
 * bytes, as IDX files hold them after their header, or with --f32 as floats,
 * for NAME_predict_f32) and prints one line per input, "CLASS", and with
 * --scores the scores' bits in hex; with --time N, instead, the median over
 * N rounds of the seconds per image of one prediction at a time (batch 1,
 * one thread). The exported code uses no library: this driver only feeds it.
 * Used by tests/cli_export.sh and tests/test_export_c.c. */
#define _POSIX_C_SOURCE 200809L
#include MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define PREDICT CAT(MODEL, _predict)
#define PREDICT_F32 CAT(MODEL, _predict_f32)
#define INPUTS CAT(MODEL_UPPER, _INPUTS)
#define CLASSES CAT(MODEL_UPPER, _CLASSES)
#define SCRATCH_WORDS CAT(MODEL_UPPER, _SCRATCH_WORDS)

static uint32_t scratch[SCRATCH_WORDS];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s IMAGES COUNT [--f32] [--scores] [--time N]\n", argv[0]);
        return 2;
    }
    const long count = strtol(argv[2], NULL, 10);
    int f32 = 0, scores_wanted = 0, rounds = 0;
    for (int a = 3; a < argc; a++) {
        if (strcmp(argv[a], "--f32") == 0)
            f32 = 1;
        else if (strcmp(argv[a], "--scores") == 0)
            scores_wanted = 1;
        else if (strcmp(argv[a], "--time") == 0 && a + 1 < argc)
            rounds = atoi(argv[++a]);
    }
    const size_t size = f32 ? sizeof(float) : 1; /* of one input value in the file */
    uint8_t *data = malloc((size_t)count * INPUTS * size);
    FILE *f = fopen(argv[1], "rb");
    if (count < 1 || !data || !f || fread(data, INPUTS * size, (size_t)count, f) != (size_t)count) {
        fprintf(stderr, "%s: cannot read %ld inputs of %d values\n", argv[1], count, INPUTS);
        return 1;
    }
    fclose(f);
    if (rounds > 0) {
        double *t = malloc((size_t)rounds * sizeof *t);
        volatile int sink = 0;
        for (long i = 0; i < count; i++) /* warm the caches */
            sink += PREDICT(data + i * INPUTS, NULL, scratch);
        for (int r = 0; r < rounds; r++) {
            double start = now();
            for (long i = 0; i < count; i++)
                sink += PREDICT(data + i * INPUTS, NULL, scratch);
            t[r] = (now() - start) / (double)count;
        }
        qsort(t, (size_t)rounds, sizeof *t, compare);
        printf("%.9f\n", t[rounds / 2]);
        free(t);
        free(data);
        return sink < 0;
    }
    for (long i = 0; i < count; i++) {
        float scores[CLASSES];
        float *out = scores_wanted ? scores : NULL;
        int c = f32 ? PREDICT_F32((const float *)(const void *)data + i * INPUTS, out, scratch)
                    : PREDICT(data + i * INPUTS, out, scratch);
        printf("%d", c);
        for (int k = 0; scores_wanted && k < CLASSES; k++) {
            uint32_t bits;
            memcpy(&bits, &scores[k], sizeof bits);
            printf(" %08x", (unsigned)bits);
        }
        printf("\n");
    }
    free(data);
    return 0;
}
