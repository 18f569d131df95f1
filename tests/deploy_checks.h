/* deploy_checks.h — what the tests of deployed networks against their trainer
 * share (test_deploy.c, test_deploy_conv.c, test_deploy_replay.c): the classes
 * training's evaluation gives a set, and the check that every kernel variant
 * and the fp32 yardstick predict exactly those, image for image, the packed
 * variants with bit-identical scores. With FEWMUL_DEPLOY_RECORD=DIR each check
 * also leaves its case in DIR (the packed file, the images, the classes and
 * ref's scores), for test_deploy_replay to check again where training is too
 * slow: the aarch64 build under an emulator. Include after cmocka.h. */
#ifndef FEWMUL_TEST_DEPLOY_CHECKS_H
#define FEWMUL_TEST_DEPLOY_CHECKS_H

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fewmul.h"
#include "net.h"

#ifndef DEPLOY_RECORD_PROGRAM
#define DEPLOY_RECORD_PROGRAM "deploy"
#endif

/* The classes training's evaluation gives `set`; quantized: with the
 * deterministic weights (a stochastic mode's deployed form). */
static inline uint8_t *training_classes_of(fm_model *m, const fm_images *set, int quantized)
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

/* A recorded case (FEWMUL_DEPLOY_RECORD): NAME.fmp, the packed network, and
 * NAME.case: the header below, `what` (its length first), then the images'
 * pixels, labels, the expected classes and ref's scores (count x classes
 * floats), all in the machine's byte order (both machines that share records,
 * x86-64 and aarch64, are little-endian). */
typedef struct deploy_case_header {
    char magic[8]; /* "fmcase1" */
    int32_t count, height, width, channels, classes, binary_acts, what_len;
} deploy_case_header;

/* The first images of a set a record keeps: enough to reach every kernel's
 * every branch, few enough to predict quickly under an emulator. */
enum { DEPLOY_RECORD_IMAGES = 500 };

static void record_deploy_case(fm_deploy *d, const fm_images *set, const uint8_t *expected,
                        const float *ref_scores, const char *what, int binary_acts)
{
    const char *dir = getenv("FEWMUL_DEPLOY_RECORD");
    if (!dir || !*dir)
        return;
    static int cases;
    char name[256], path[4400];
    int k = snprintf(name, sizeof name, "%s-%02d-", DEPLOY_RECORD_PROGRAM, cases++);
    for (const char *c = what; *c && k < (int)sizeof name - 1; c++)
        name[k++] = (char)(isalnum((unsigned char)*c) ? *c : '_');
    name[k] = 0;
    snprintf(path, sizeof path, "%s/%s.fmp", dir, name);
    if (fm_deploy_save(d, path) != FM_OK)
        fail_msg("recording %s: %s", path, fm_last_error());
    const int n = set->count < DEPLOY_RECORD_IMAGES ? set->count : DEPLOY_RECORD_IMAGES;
    deploy_case_header h = {"fmcase1", n, set->height, set->width, set->channels,
                            fm_deploy_classes(d), binary_acts, (int32_t)strlen(what)};
    const size_t pixels = (size_t)set->height * set->width * set->channels;
    snprintf(path, sizeof path, "%s/%s.case", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("recording %s: cannot create it", path);
    int ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(what, 1, h.what_len, f) == (size_t)h.what_len &&
             fwrite(set->pixels, pixels, n, f) == (size_t)n && fwrite(set->labels, 1, n, f) == (size_t)n &&
             fwrite(expected, 1, n, f) == (size_t)n &&
             fwrite(ref_scores, sizeof *ref_scores * h.classes, n, f) == (size_t)n;
    if (fclose(f) != 0 || !ok)
        fail_msg("recording %s: write failed", path);
}

/* Every kernel variant and the fp32 yardstick predict `expected` for every
 * image of `set`; packed variants give bit-identical scores, fp32 close ones.
 * With binary activations a unit whose input lies within rounding of its
 * threshold may take the other sign in the yardstick's order of sums, which
 * moves that image's scores: allowed for 1 image in 1000 (binary_acts).
 * want_ref, when given, are the scores ref must give (another machine's).
 * Returns the error. */
static double check_variants_against(fm_deploy *d, const fm_images *set, const uint8_t *expected,
                                     const char *what, int binary_acts, const float *want_ref)
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
            if (want_ref && memcmp(ref_scores, want_ref, (size_t)n * classes * sizeof *scores) != 0)
                fail_msg("%s: ref's scores differ from the recording machine's", what);
            record_deploy_case(d, set, expected, ref_scores, what, binary_acts);
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

static inline double check_variants_on(fm_deploy *d, const fm_images *set, const uint8_t *expected,
                                const char *what, int binary_acts)
{
    return check_variants_against(d, set, expected, what, binary_acts, NULL);
}

#endif
