/* test_data_defaults.c — each data set's setup as the library gives it:
 * fm_data_kind_of (the kind a spec names), fm_data_defaults (the paper's
 * preprocessing and validation size per kind), fm_data_default_valid, and
 * fm_data_split_validation (SVHN's class-balanced split of 400 + 200 images
 * per class, or 600 without extra images; every other split moves nothing),
 * on synthetic sets whose pixels record each image's original index. */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fewmul.h"

#define SUPPORT_NAME "data-defaults"
#include "support.h"

#define CLASSES 10
/* SVHN's split as fm_data_split_validation documents it */
#define SVHN_VALID 6000
#define PER_CLASS_TRAIN 400
#define PER_CLASS_EXTRA 200
#define PER_CLASS_ALONE 600

static void assert_message_has(const char *part)
{
    if (!strstr(fm_last_error(), part))
        fail_msg("message \"%s\" lacks \"%s\"", fm_last_error(), part);
}

/* ---- synthetic sets ---------------------------------------------------------- */

/* The original index of image i of a set made by make_set (its 4 pixel bytes). */
static int32_t index_of(const fm_images *set, int32_t i)
{
    const uint8_t *p = set->pixels + (size_t)i * 4;
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

/* Shuffles labels[0..n) with a small LCG, so classes interleave unevenly. */
static void shuffle_labels(uint8_t *labels, int32_t n, uint32_t seed)
{
    for (int32_t i = n - 1; i > 0; i--) {
        seed = seed * 1664525u + 1013904223u;
        int32_t j = (int32_t)((seed >> 8) % (uint32_t)(i + 1));
        uint8_t t = labels[i];
        labels[i] = labels[j];
        labels[j] = t;
    }
}

/* head images then tail images of 1x1x4 pixels holding the image's index,
 * each part with labels 0..9 in equal numbers, shuffled within the part (as
 * train_32x32.mat followed by extra_32x32.mat). Freed with free_set. */
static void make_set(fm_images *set, int32_t head, int32_t tail, uint32_t seed)
{
    int32_t n = head + tail;
    memset(set, 0, sizeof *set);
    set->count = n;
    set->height = set->width = 1;
    set->channels = 4;
    set->pixels = malloc((size_t)n * 4);
    set->labels = malloc((size_t)n);
    assert_non_null(set->pixels);
    assert_non_null(set->labels);
    for (int32_t i = 0; i < n; i++) {
        set->labels[i] = (uint8_t)((i < head ? i : i - head) % CLASSES);
        for (int b = 0; b < 4; b++)
            set->pixels[(size_t)i * 4 + (size_t)b] = (uint8_t)((uint32_t)i >> (8 * b));
    }
    shuffle_labels(set->labels, head, seed);
    shuffle_labels(set->labels + head, tail, seed + 1);
}

static void copy_set(fm_images *dst, const fm_images *src)
{
    *dst = *src;
    dst->pixels = malloc((size_t)src->count * 4);
    dst->labels = malloc((size_t)src->count);
    assert_non_null(dst->pixels);
    assert_non_null(dst->labels);
    memcpy(dst->pixels, src->pixels, (size_t)src->count * 4);
    memcpy(dst->labels, src->labels, (size_t)src->count);
}

static void free_set(fm_images *set)
{
    free(set->pixels);
    free(set->labels);
    memset(set, 0, sizeof *set);
}

static int same_set(const fm_images *a, const fm_images *b)
{
    return a->count == b->count && memcmp(a->pixels, b->pixels, (size_t)a->count * 4) == 0 &&
           memcmp(a->labels, b->labels, (size_t)a->count) == 0;
}

/* The split of `after` from `before`: every image once, labels moved with
 * pixels, the kept images first in their order, then the held-out ones in
 * theirs, per class `head` from before `boundary` and `tail` after it. */
static void check_split(const fm_images *before, const fm_images *after, int32_t boundary, int head,
                        int tail)
{
    int32_t n = before->count, held = CLASSES * (head + tail);
    assert_int_equal(after->count, n);
    uint8_t *seen = calloc((size_t)n, 1);
    assert_non_null(seen);
    int from_head[CLASSES] = {0}, from_tail[CLASSES] = {0};
    for (int32_t i = 0; i < n; i++) {
        int32_t orig = index_of(after, i);
        assert_true(orig >= 0 && orig < n);
        assert_int_equal(seen[orig], 0);
        seen[orig] = 1;
        assert_int_equal(after->labels[i], before->labels[orig]);
        if (i > 0 && i != n - held)
            assert_true(orig > index_of(after, i - 1)); /* order kept in both parts */
        if (i >= n - held)
            (orig < boundary ? from_head : from_tail)[after->labels[i]]++;
    }
    free(seen);
    for (int k = 0; k < CLASSES; k++) {
        assert_int_equal(from_head[k], head);
        assert_int_equal(from_tail[k], tail);
    }
}

/* ---- kinds and defaults --------------------------------------------------------- */

static void test_kind_of(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        fm_data_kind kind;
    } good[] = {{"fashion", FM_DATA_FASHION}, {"mnist:/x", FM_DATA_IDX},      {"idx:x", FM_DATA_IDX},
                {"cifar10:/x", FM_DATA_CIFAR10}, {"svhn:/x/", FM_DATA_SVHN}};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        fm_data_kind kind = (fm_data_kind)99;
        assert_int_equal(fm_data_kind_of(good[i].spec, &kind), FM_OK);
        assert_int_equal(kind, good[i].kind);
        assert_int_equal(fm_data_kind_of(good[i].spec, NULL), FM_OK);
    }
    const char *bad[] = {"cifar10:", "svhn:", "svhn", "SVHN:/x", "fashion:", "", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fm_data_kind kind = FM_DATA_CIFAR10;
        assert_int_equal(fm_data_kind_of(bad[i], &kind), FM_EINVAL);
        assert_int_equal(kind, FM_DATA_CIFAR10); /* untouched */
        assert_message_has("unknown data spec");
        assert_int_equal(fm_data_kind_of(bad[i], NULL), FM_EINVAL);
    }
}

static void test_defaults(void **state)
{
    (void)state;
    static const struct {
        fm_data_kind kind;
        fm_preproc preproc;
        int valid;
        const char *spec;
    } table[] = {{FM_DATA_FASHION, FM_PRE_CENTER, 10000, "fashion"},
                 {FM_DATA_IDX, FM_PRE_CENTER, 10000, "mnist:/x"},
                 {FM_DATA_CIFAR10, FM_PRE_GCN_ZCA, 5000, "cifar10:/x"},
                 {FM_DATA_SVHN, FM_PRE_GCN_LCN, SVHN_VALID, "svhn:/x"}};
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        fm_preproc preproc = FM_PRE_UNIT;
        int valid = -1;
        assert_int_equal(fm_data_defaults(table[i].kind, &preproc, &valid), FM_OK);
        assert_int_equal(preproc, table[i].preproc);
        assert_int_equal(valid, table[i].valid);
        /* either output may be NULL */
        preproc = FM_PRE_UNIT;
        assert_int_equal(fm_data_defaults(table[i].kind, &preproc, NULL), FM_OK);
        assert_int_equal(preproc, table[i].preproc);
        valid = -1;
        assert_int_equal(fm_data_defaults(table[i].kind, NULL, &valid), FM_OK);
        assert_int_equal(valid, table[i].valid);
        assert_int_equal(fm_data_defaults(table[i].kind, NULL, NULL), FM_OK);
        /* the spec shorthand agrees */
        assert_int_equal(fm_data_default_valid(table[i].spec), table[i].valid);
    }
    fm_preproc preproc = FM_PRE_UNIT;
    int valid = 7;
    assert_int_equal(fm_data_defaults((fm_data_kind)4, &preproc, &valid), FM_EINVAL);
    assert_message_has("fm_data_defaults: unknown data set kind 4");
    assert_int_equal(preproc, FM_PRE_UNIT);
    assert_int_equal(valid, 7);
    assert_int_equal(fm_data_defaults((fm_data_kind)-1, NULL, NULL), FM_EINVAL);
    assert_int_equal(fm_data_default_valid("svhn"), FM_EINVAL);
}

/* ---- fm_data_split_validation ------------------------------------------------------ */

/* With extra images: 400 per class from train_32x32's part, 200 from extra's. */
static void test_svhn_split_with_extra(void **state)
{
    (void)state;
    const int32_t head = 4500, tail = 2500;
    fm_images before, a, b;
    make_set(&before, head, tail, 11);
    copy_set(&a, &before);
    assert_int_equal(fm_data_split_validation(FM_DATA_SVHN, &a, head, SVHN_VALID, CLASSES, 1234), FM_OK);
    check_split(&before, &a, head, PER_CLASS_TRAIN, PER_CLASS_EXTRA);
    /* the images fm_images_split_balanced picks with the same seed */
    copy_set(&b, &before);
    assert_int_equal(fm_images_split_balanced(&b, head, PER_CLASS_TRAIN, PER_CLASS_EXTRA, CLASSES, 1234),
                     FM_OK);
    assert_true(same_set(&a, &b));
    free_set(&b);
    /* deterministic per seed: the same seed picks the same images ... */
    copy_set(&b, &before);
    assert_int_equal(fm_data_split_validation(FM_DATA_SVHN, &b, head, SVHN_VALID, CLASSES, 1234), FM_OK);
    assert_true(same_set(&a, &b));
    free_set(&b);
    /* ... and another seed others, still 400 + 200 per class */
    copy_set(&b, &before);
    assert_int_equal(fm_data_split_validation(FM_DATA_SVHN, &b, head, SVHN_VALID, CLASSES, 7), FM_OK);
    check_split(&before, &b, head, PER_CLASS_TRAIN, PER_CLASS_EXTRA);
    assert_false(same_set(&a, &b));
    free_set(&b);
    free_set(&a);
    free_set(&before);
}

/* Without extra images (train_part == count): 600 per class from train_32x32. */
static void test_svhn_split_alone(void **state)
{
    (void)state;
    const int32_t head = 6500;
    fm_images before, a, b;
    make_set(&before, head, 0, 5);
    copy_set(&a, &before);
    assert_int_equal(fm_data_split_validation(FM_DATA_SVHN, &a, head, SVHN_VALID, CLASSES, 99), FM_OK);
    check_split(&before, &a, head, PER_CLASS_ALONE, 0);
    copy_set(&b, &before);
    assert_int_equal(fm_data_split_validation(FM_DATA_SVHN, &b, head, SVHN_VALID, CLASSES, 99), FM_OK);
    assert_true(same_set(&a, &b));
    free_set(&b);
    free_set(&a);
    free_set(&before);
}

/* Every other kind, and SVHN with another size: the last `valid` images as
 * loaded, nothing moves. */
static void test_split_moves_nothing(void **state)
{
    (void)state;
    fm_images before, a;
    make_set(&before, 4500, 2500, 3);
    copy_set(&a, &before);
    const fm_data_kind kinds[] = {FM_DATA_FASHION, FM_DATA_IDX, FM_DATA_CIFAR10};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        int valid = 0;
        assert_int_equal(fm_data_defaults(kinds[i], NULL, &valid), FM_OK);
        assert_int_equal(fm_data_split_validation(kinds[i], &a, a.count, valid, CLASSES, 1), FM_OK);
        assert_int_equal(fm_data_split_validation(kinds[i], &a, 4500, SVHN_VALID, CLASSES, 1), FM_OK);
        assert_true(same_set(&a, &before));
    }
    const int sizes[] = {0, 5, SVHN_VALID - 1, SVHN_VALID + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        assert_int_equal(fm_data_split_validation(FM_DATA_SVHN, &a, 4500, sizes[i], CLASSES, 1), FM_OK);
        assert_true(same_set(&a, &before));
    }
    free_set(&a);
    free_set(&before);
}

static void test_split_errors(void **state)
{
    (void)state;
    fm_images before, a;
    make_set(&before, 6500, 0, 8);
    copy_set(&a, &before);
    assert_int_equal(fm_data_split_validation(FM_DATA_SVHN, NULL, 0, SVHN_VALID, CLASSES, 1), FM_EINVAL);
    assert_message_has("fm_data_split_validation: NULL training set");
    assert_int_equal(fm_data_split_validation(FM_DATA_SVHN, &a, -1, SVHN_VALID, CLASSES, 1), FM_EINVAL);
    assert_message_has("train_part -1 outside 0..6500");
    assert_int_equal(fm_data_split_validation(FM_DATA_IDX, &a, 6501, 10000, CLASSES, 1), FM_EINVAL);
    assert_message_has("train_part 6501 outside 0..6500");
    assert_int_equal(fm_data_split_validation(FM_DATA_CIFAR10, &a, 6500, -1, CLASSES, 1), FM_EINVAL);
    assert_message_has("fm_data_split_validation: -1 validation images");
    assert_int_equal(fm_data_split_validation((fm_data_kind)9, &a, 6500, SVHN_VALID, CLASSES, 1), FM_EINVAL);
    assert_message_has("unknown data set kind 9");
    /* with extra images, but too few of them for 200 per class */
    assert_int_equal(fm_data_split_validation(FM_DATA_SVHN, &a, 5000, SVHN_VALID, CLASSES, 1), FM_EINVAL);
    assert_message_has("fewer than the 200 per class to hold out");
    assert_true(same_set(&a, &before));
    free_set(&a);
    free_set(&before);

    /* a class with 500 images where 600 are held out: nothing moves */
    make_set(&before, 6500, 0, 8);
    int moved = 0;
    for (int32_t i = 0; i < before.count && moved < 100; i++)
        if (before.labels[i] == 3) {
            before.labels[i] = 4;
            moved++;
        }
    copy_set(&a, &before);
    assert_int_equal(fm_data_split_validation(FM_DATA_SVHN, &a, 6500, SVHN_VALID, CLASSES, 1), FM_EINVAL);
    assert_message_has("class 3 has 550 images in [0, 6500), fewer than the 600 per class");
    assert_true(same_set(&a, &before));
    free_set(&a);
    free_set(&before);
}

/* An allocation that fails: FM_ENOMEM, nothing moved, nothing leaked. */
static void test_split_out_of_memory(void **state)
{
    (void)state;
    fm_images before, a;
    make_set(&before, 4500, 2500, 21);
    copy_set(&a, &before);
    for (long at = 1; at <= 3; at++) {
        memset(&track, 0, sizeof track);
        track.fail_at = at;
        assert_int_equal(fm_data_split_validation(FM_DATA_SVHN, &a, 4500, SVHN_VALID, CLASSES, 1), FM_ENOMEM);
        assert_int_equal(track.live, 0);
        assert_true(same_set(&a, &before));
    }
    track.fail_at = 0;
    free_set(&a);
    free_set(&before);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_kind_of),
        T(test_defaults),
        T(test_svhn_split_with_extra),
        T(test_svhn_split_alone),
        T(test_split_moves_nothing),
        T(test_split_errors),
        T(test_split_out_of_memory),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
