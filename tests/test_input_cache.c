/* test_input_cache.c — gcn-zca and gcn-lcn inputs preprocessed once per run
 * (net.h, fm_input_cache): the rows a batch copies from the cache are the bits
 * the batch would compute, and fm_train really does read each image's pixels
 * only once (a run whose pixels are overwritten after its first epoch ends
 * exactly as one whose are not), while center, not cached, still reads them
 * at every batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fewmul.h"
#include "gemm.h"
#include "internal.h"
#include "net.h"
#include "rng.h"

enum { SIDE = 16, CH = 3, DIM = SIDE * SIDE * CH, CLASSES = 4 };

/* count 16x16x3 images, the class a bright quadrant of one channel over noise. */
static void make_set(fm_images *set, int count, uint32_t seed)
{
    set->count = count;
    set->height = set->width = SIDE;
    set->channels = CH;
    set->pixels = malloc((size_t)count * DIM);
    set->labels = malloc((size_t)count);
    assert_non_null(set->pixels);
    assert_non_null(set->labels);
    uint32_t x = seed;
    for (int i = 0; i < count; i++) {
        const int label = i % CLASSES;
        set->labels[i] = (uint8_t)label;
        for (int p = 0; p < DIM; p++) {
            x = x * 1664525u + 1013904223u;
            const int pix = p / CH, r = pix / SIDE, c = pix % SIDE;
            const int quadrant = (r >= SIDE / 2) * 2 + (c >= SIDE / 2);
            set->pixels[(size_t)i * DIM + p] =
                (uint8_t)((x >> 25) + (quadrant == label && p % CH == label % CH ? 120 : 0));
        }
    }
}

static void free_set(fm_images *set)
{
    free(set->pixels);
    free(set->labels);
}

static void config(fm_config *c, fm_preproc pre)
{
    fm_config_default(c);
    c->arch = "conv:4k3,pool2,fc8";
    assert_int_equal(fm_parse_weights("bc", c), FM_OK);
    c->qb = 1;
    c->preproc = pre;
    c->epochs = 2;
    c->batch = 20;
    c->valid = 60;
    c->threads = 2;
}

/* ---- the cached rows are the computed rows ------------------------------- */

/* Loads the batch through both workspaces and compares act[0]: `exact` bit
 * for bit, else within a rounding of the whitening GEMM's sums. */
static void same_batch(const fm_model *m, fm_workspace *cached, fm_workspace *plain,
                       const fm_images *set, const int *index, int first, int count, int exact,
                       const char *what)
{
    fmi_load_batch(m, cached, set, index, first, count);
    fmi_load_batch(m, plain, set, index, first, count);
    const float *a = cached->act[0], *b = plain->act[0];
    const size_t n = (size_t)count * DIM;
    if (exact) {
        if (memcmp(a, b, n * sizeof *a) != 0)
            fail_msg("%s: the cached rows differ from the computed rows", what);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= 1e-4f * (1.0f + fabsf(b[i]))))
            fail_msg("%s: value %zu cached %.9g, computed %.9g", what, i, a[i], b[i]);
}

static void cached_equals_computed(fm_preproc pre, int threads)
{
    fm_images set;
    make_set(&set, 230, 11);
    fm_config c;
    config(&c, pre);
    c.threads = threads;
    fmi_threads_set(threads);
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, SIDE, SIDE, CH, CLASSES, &m), FM_OK);
    assert_int_equal(fmi_preprocess_fit(m, &set, 170), FM_OK);
    const int B = c.batch;
    fm_workspace *cached, *plain;
    assert_int_equal(fmi_workspace_create(m, B, 1, &cached), FM_OK);
    assert_int_equal(fmi_workspace_create(m, B, 1, &plain), FM_OK);
    assert_true(fmi_input_cache_wanted(m, 230, (size_t)1 << 20));
    /* a run's parts: its training images and, apart, its validation images */
    assert_int_equal(fmi_input_cache_add(m, cached, &set, 0, 150), FM_OK);
    assert_int_equal(fmi_input_cache_add(m, cached, &set, 170, 60), FM_OK);
    assert_int_equal(cached->input.n_parts, 2);

    /* evaluation: batches of contiguous images from a part's start, as the
     * cache was filled: the same bits in every build */
    for (int b0 = 0; b0 < 150; b0 += B)
        same_batch(m, cached, plain, &set, NULL, b0, FM_MIN(B, 150 - b0), 1, "training part, in order");
    for (int b0 = 170; b0 < 230; b0 += B)
        same_batch(m, cached, plain, &set, NULL, b0, FM_MIN(B, 230 - b0), 1, "validation part, in order");
    /* images the cache lacks (150..169) or that straddle two parts are computed */
    same_batch(m, cached, plain, &set, NULL, 150, B, 1, "outside the parts");
    same_batch(m, cached, plain, &set, NULL, 140, B, 1, "straddling a part's end");

    /* training: shuffled batches and a short last one. Each image's row is
     * its own in a portable GEMM (and in GCN and LCN); OpenBLAS's kernels may
     * round a row differently beside other rows (docs/data.md) */
    int order[150];
    for (int i = 0; i < 150; i++)
        order[i] = i;
    fm_rng rng;
    fmi_rng_seed(&rng, 99);
    for (int i = 149; i > 0; i--) {
        const int j = (int)fmi_rng_below(&rng, (uint32_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    const int exact = pre == FM_PRE_GCN_LCN || !fmi_blas_enabled();
    for (int b0 = 0; b0 < 150; b0 += B)
        same_batch(m, cached, plain, &set, order, b0, FM_MIN(B, 150 - b0), exact, "shuffled");
    same_batch(m, cached, plain, &set, order, 3, 7, exact, "a short batch");

    /* the cache copies: changed pixels do not reach a cached batch */
    memset(set.pixels, 0, (size_t)set.count * DIM);
    fmi_load_batch(m, plain, &set, NULL, 0, B);
    fmi_load_batch(m, cached, &set, NULL, 0, B);
    assert_true(memcmp(cached->act[0], plain->act[0], (size_t)B * DIM * sizeof(float)) != 0);

    fmi_workspace_free(m, cached);
    fmi_workspace_free(m, plain);
    fm_model_free(m);
    free_set(&set);
}

static void test_zca_rows(void **state)
{
    (void)state;
    cached_equals_computed(FM_PRE_GCN_ZCA, 1);
    cached_equals_computed(FM_PRE_GCN_ZCA, 2);
}

static void test_lcn_rows(void **state)
{
    (void)state;
    cached_equals_computed(FM_PRE_GCN_LCN, 1);
    cached_equals_computed(FM_PRE_GCN_LCN, 2);
}

/* What is cached and what is refused. */
static void test_wanted_and_bad_parts(void **state)
{
    (void)state;
    fm_images set;
    make_set(&set, 40, 5);
    const fm_preproc kinds[] = {FM_PRE_CENTER, FM_PRE_UNIT, FM_PRE_GCN_ZCA, FM_PRE_GCN_LCN};
    for (int k = 0; k < 4; k++) {
        fm_config c;
        config(&c, kinds[k]);
        fm_model *m;
        assert_int_equal(fm_model_create_image(&c, SIDE, SIDE, CH, CLASSES, &m), FM_OK);
        const int gcn = kinds[k] == FM_PRE_GCN_ZCA || kinds[k] == FM_PRE_GCN_LCN;
        const size_t mib = (size_t)1 << 20, fit = mib / sizeof(float) / DIM;
        assert_int_equal(fmi_input_cache_wanted(m, 1, mib), gcn);
        assert_int_equal(fmi_input_cache_wanted(m, fit, mib), gcn);
        assert_int_equal(fmi_input_cache_wanted(m, fit + 1, mib), 0);
        assert_int_equal(fmi_input_cache_wanted(m, 0, mib), 0);
        assert_int_equal(fmi_input_cache_wanted(m, 1, 0), 0);
        assert_int_equal(fmi_input_cache_wanted(m, 1, SIZE_MAX), gcn);
        if (!gcn) {
            fm_model_free(m);
            continue;
        }
        assert_int_equal(fmi_preprocess_fit(m, &set, 40), FM_OK);
        fm_workspace *ws;
        assert_int_equal(fmi_workspace_create(m, 10, 0, &ws), FM_OK);
        assert_int_equal(fmi_input_cache_add(m, ws, &set, 30, 11), FM_EINVAL);
        assert_int_equal(fmi_input_cache_add(m, ws, &set, -1, 5), FM_EINVAL);
        assert_int_equal(fmi_input_cache_add(m, ws, &set, 0, 0), FM_EINVAL);
        for (int p = 0; p < FM_INPUT_PARTS; p++)
            assert_int_equal(fmi_input_cache_add(m, ws, &set, p, 5), FM_OK);
        assert_int_equal(fmi_input_cache_add(m, ws, &set, 0, 5), FM_EINVAL);
        fmi_workspace_free(m, ws);
        fm_model_free(m);
    }
    free_set(&set);
}

/* ---- fm_train reads the pixels once -------------------------------------- */

typedef struct spoiler {
    fm_images *sets[2];
} spoiler;

/* After the first epoch: every pixel of both sets overwritten. */
static void spoil_after_epoch_1(const fm_epoch_report *rep, void *user)
{
    spoiler *s = user;
    if (rep->epoch != 1)
        return;
    for (int i = 0; i < 2; i++)
        for (size_t p = 0; p < (size_t)s->sets[i]->count * DIM; p++)
            s->sets[i]->pixels[p] = (uint8_t)(255 - s->sets[i]->pixels[p]);
}

/* The trained state (weights, batch-norm values, input statistics),
 * malloc'ed, and the result of one run on fresh copies of the sets, spoiled
 * after epoch 1 or not. */
static float *train_run(const fm_config *c, int spoil, long cache_mib, fm_result *r, size_t *len)
{
    fm_images train, test;
    make_set(&train, 300, 21);
    make_set(&test, 80, 22);
    fm_model *m;
    assert_int_equal(fm_model_create_image(c, SIDE, SIDE, CH, CLASSES, &m), FM_OK);
    spoiler s = {{&train, &test}};
    fm_callbacks cb = {.on_epoch = spoil ? spoil_after_epoch_1 : NULL, .user = &s,
                       .preproc_cache_mib = cache_mib};
    if (fm_train(m, &train, &test, c, &cb, r) != FM_OK)
        fail_msg("fm_train: %s", fm_last_error());
    const size_t zca = m->zca ? (size_t)DIM * DIM : 0;
    *len = m->state_count + DIM + zca;
    float *all = malloc(*len * sizeof *all);
    assert_non_null(all);
    memcpy(all, m->state, m->state_count * sizeof *all);
    memcpy(all + m->state_count, m->input_mean, DIM * sizeof *all);
    if (zca)
        memcpy(all + m->state_count + DIM, m->zca, zca * sizeof *all);
    fm_model_free(m);
    free_set(&train);
    free_set(&test);
    return all;
}

/* Two runs' states and results alike, bit for bit. */
static int same_run(const float *a, size_t n1, const fm_result *ra, const float *b, size_t n2,
                    const fm_result *rb)
{
    return n1 == n2 && memcmp(a, b, n1 * sizeof *a) == 0 && ra->test_error_pct == rb->test_error_pct &&
           ra->valid_error_pct == rb->valid_error_pct && ra->final_train_loss == rb->final_train_loss;
}

/* With the default limit the gcn-* rows are kept: pixels spoiled after epoch
 * 1 change nothing. Where they are not kept (center; gcn-* with a limit of
 * -1, never, or of 1 MiB, less than the run's 380 rows of 768 floats) the
 * spoiled pixels change the run, so the test would see a cache not used. */
static void test_train_reads_pixels_once(void **state)
{
    (void)state;
    const fm_preproc kinds[] = {FM_PRE_GCN_ZCA, FM_PRE_GCN_LCN, FM_PRE_CENTER};
    const char *names[] = {"gcn-zca", "gcn-lcn", "center"};
    for (int k = 0; k < 3; k++) {
        const long limits[] = {0, -1, 1};
        for (int l = 0; l < (kinds[k] == FM_PRE_CENTER ? 1 : 3); l++) {
            fm_config c;
            config(&c, kinds[k]);
            fm_result plain, spoiled;
            size_t n1, n2;
            float *a = train_run(&c, 0, limits[l], &plain, &n1);
            float *b = train_run(&c, 1, limits[l], &spoiled, &n2);
            const int kept = kinds[k] != FM_PRE_CENTER && limits[l] == 0;
            printf("  %s, limit %ld MiB: test error %.2f%% / %.2f%% with the pixels spoiled after epoch 1\n",
                   names[k], limits[l], plain.test_error_pct, spoiled.test_error_pct);
            if (same_run(a, n1, &plain, b, n2, &spoiled) != kept)
                fail_msg("%s, limit %ld MiB: epoch 2 %s the pixels again", names[k], limits[l],
                         kept ? "read" : "did not read");
            free(a);
            free(b);
        }
    }
}

/* A run whose rows are kept ends with the bits of one whose rows are made at
 * each load: always with gcn-lcn, and with gcn-zca where each row of the
 * whitening GEMM is computed alone (the portable GEMM; docs/data.md). */
static void test_kept_equals_per_batch(void **state)
{
    (void)state;
    const fm_preproc kinds[] = {FM_PRE_GCN_LCN, FM_PRE_GCN_ZCA};
    for (int k = 0; k < 2; k++) {
        if (kinds[k] == FM_PRE_GCN_ZCA && fmi_blas_enabled()) {
            printf("  gcn-zca: OpenBLAS's kernels may round a row by its batch; not compared here\n");
            continue;
        }
        for (int threads = 1; threads <= 2; threads++) {
            fm_config c;
            config(&c, kinds[k]);
            c.threads = threads;
            fm_result kept, per_batch;
            size_t n1, n2;
            float *a = train_run(&c, 0, 0, &kept, &n1), *b = train_run(&c, 0, -1, &per_batch, &n2);
            if (!same_run(a, n1, &kept, b, n2, &per_batch))
                fail_msg("%s, %d threads: the run with kept rows differs from the per-batch run",
                         kinds[k] == FM_PRE_GCN_LCN ? "gcn-lcn" : "gcn-zca", threads);
            free(a);
            free(b);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zca_rows),
        cmocka_unit_test(test_lcn_rows),
        cmocka_unit_test(test_wanted_and_bad_parts),
        cmocka_unit_test(test_train_reads_pixels_once),
        cmocka_unit_test(test_kept_equals_per_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
