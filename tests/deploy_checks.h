/* deploy_checks.h — what the tests of deployed networks against their trainer
 * share (test_deploy.c, test_deploy_conv.c): the classes training's evaluation
 * gives a set, and the check that every kernel variant and the fp32 yardstick
 * predict exactly those, image for image, the packed variants with
 * bit-identical scores. Include after cmocka.h. */
#ifndef FEWMUL_TEST_DEPLOY_CHECKS_H
#define FEWMUL_TEST_DEPLOY_CHECKS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fewmul.h"
#include "net.h"

/* The classes training's evaluation gives `set`; quantized: with the
 * deterministic weights (a stochastic mode's deployed form). */
static uint8_t *training_classes_of(fm_model *m, const fm_images *set, int quantized)
{
    uint8_t *classes = malloc((size_t)set->count);
    assert_non_null(classes);
    const int saved = m->config.test_quantized;
    m->config.test_quantized = quantized;
    assert_int_equal(fm_model_predict(m, set, 0, set->count, 2, classes), FM_OK);
    m->config.test_quantized = saved;
    return classes;
}

static double error_pct_of(const fm_images *set, const uint8_t *classes)
{
    int wrong = 0;
    for (int i = 0; i < set->count; i++)
        wrong += classes[i] != set->labels[i];
    return 100.0 * wrong / set->count;
}

/* Every kernel variant and the fp32 yardstick predict `expected` for every
 * image of `set`; packed variants give bit-identical scores, fp32 close ones.
 * With binary activations a unit whose input lies within rounding of its
 * threshold may take the other sign in the yardstick's order of sums, which
 * moves that image's scores: allowed for 1 image in 1000 (binary_acts).
 * Returns the error. */
static double check_variants_on(fm_deploy *d, const fm_images *set, const uint8_t *expected,
                                const char *what, int binary_acts)
{
    const int n = set->count, classes = fm_deploy_classes(d);
    uint8_t *got = malloc((size_t)n);
    float *scores = malloc((size_t)n * classes * sizeof *scores);
    float *ref_scores = malloc((size_t)n * classes * sizeof *ref_scores);
    assert_true(got && scores && ref_scores);
    int variants = 0;
    for (int v = 0; fm_kernels_name(v); v++, variants++) {
        const char *name = fm_kernels_name(v);
        assert_int_equal(fm_deploy_set_kernels(d, name), FM_OK);
        assert_string_equal(fm_deploy_kernels(d), name);
        assert_int_equal(fm_deploy_predict(d, set->pixels, n, 2, got, scores), FM_OK);
        int diff = 0;
        for (int i = 0; i < n; i++)
            diff += got[i] != expected[i];
        printf("  %-28s %-7s error %.2f%%  differs from training on %d of %d images\n", what, name,
               error_pct_of(set, got), diff, n);
        assert_int_equal(diff, 0);
        if (strcmp(name, "ref") == 0) {
            memcpy(ref_scores, scores, (size_t)n * classes * sizeof *scores);
        } else if (strcmp(name, "fp32") != 0) {
            assert_memory_equal(scores, ref_scores, (size_t)n * classes * sizeof *scores);
        } else { /* the yardstick sums in another order: close, not equal */
            int moved = 0;
            for (size_t e = 0; e < (size_t)n; e++) {
                int far = 0;
                for (size_t i = e * classes; i < (e + 1) * classes; i++)
                    far |= !(fabsf(scores[i] - ref_scores[i]) <= 1e-3f * (1.0f + fabsf(ref_scores[i])));
                moved += far;
            }
            printf("  %-28s fp32    scores off ref's on %d of %d images\n", what, moved, n);
            if (moved > (binary_acts ? n / 1000 : 0))
                fail_msg("%s: the fp32 yardstick's scores are off ref's on %d images", what, moved);
        }
    }
    assert_true(variants >= 2); /* ref and fp32 at least */
    double err = error_pct_of(set, got);
    free(got);
    free(scores);
    free(ref_scores);
    return err;
}

#endif
