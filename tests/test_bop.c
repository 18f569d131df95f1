/* test_bop.c — the bop optimizer (--opt bop, src/optim/bop.c): its flip rule
 * on hand-computed cases, the configurations it takes and refuses, binary
 * initial weights, and a short run on synthetic data that learns with
 * weights that stay binary, exports as the bits and reloads from its model
 * file. Synthetic data: needs nothing from ../shared. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define SUPPORT_NAME "bop"
#include "support.h"

#include "fewmul.h"
#include "optim.h"

#include <math.h>

/* gamma 0.5, threshold 0.1 (both exact in binary), weights +-1:
 *   0: m = 0.5*0 + 0.5*1    =  0.5 > 0.1, agrees with w = +1: flips to -1
 *   1: m = -0.5, disagrees with w = +1: stays
 *   2: m = -0.5, agrees with w = -1: flips to +1
 *   3: m =  0.5, disagrees with w = -1: stays
 *   4: m = 0.5*0.4 + 0      =  0.2 > 0.1 (the old momentum alone), w = +1: flips
 *   5: m = 0.5*0.1          =  0.05, agrees but below the threshold: stays
 *   6: m = 0.5*0.2          =  0.1, at the threshold (not above): stays
 *   7: m = 0.5*0 + 0.5*(-0) = -0 (|m| = 0): stays */
static void test_flip_rule(void **state)
{
    (void)state;
    float w[8] = {1, 1, -1, -1, 1, 1, 1, -1};
    float m[8] = {0, 0, 0, 0, 0.4f, 0, 0, 0};
    const float g[8] = {1, -1, -1, 1, 0, 0.1f, 0.2f, -0.0f};
    fmi_bop_step(w, g, m, 8, 0.5f, 0.1f);
    const float w1[8] = {-1, 1, 1, -1, -1, 1, 1, -1};
    const float m1[8] = {0.5f, -0.5f, -0.5f, 0.5f, 0.2f, 0.05f, 0.1f, 0};
    for (int i = 0; i < 8; i++) {
        if (w[i] != w1[i] || m[i] != m1[i])
            fail_msg("weight %d: w %g m %g, expected w %g m %g", i, w[i], m[i], w1[i], m1[i]);
    }
    /* the momentum is kept after a flip (no reset): weight 0's m = 0.25 now
     * disagrees with its new -1, so it stays; weight 1's m = -0.25 still
     * disagrees with +1 */
    const float zero[2] = {0, 0};
    fmi_bop_step(w, zero, m, 2, 0.5f, 0.1f);
    assert_true(w[0] == -1.0f && m[0] == 0.25f);
    assert_true(w[1] == 1.0f && m[1] == -0.25f);
    /* a weight at +-H (H = 0.25) flips to -+H, exactly */
    float h[2] = {0.25f, -0.25f}, mh[2] = {0, 0};
    const float gh[2] = {1, -1};
    fmi_bop_step(h, gh, mh, 2, 0.5f, 0.0f);
    assert_true(h[0] == -0.25f && h[1] == 0.25f);
}

static void bop_config(fm_config *c)
{
    fm_config_default(c);
    c->arch = "mlp:16";
    c->weights = FM_WEIGHTS_BC_DET;
    c->opt = FM_OPT_BOP;
    c->epochs = 4;
    c->batch = 40;
    c->valid = 100;
    c->threads = 1;
}

static void test_config(void **state)
{
    (void)state;
    fm_config c;
    bop_config(&c);
    assert_int_equal(fm_config_check(&c), FM_OK);
    /* the real parameters take Adam's rates */
    double lr, lr_final;
    fm_config_learning_rates(&c, &lr, &lr_final);
    assert_true(lr == 3e-3 && lr_final == 2e-6);
    c.bop_threshold = 0.0; /* flip on any agreeing momentum */
    assert_int_equal(fm_config_check(&c), FM_OK);
    c.exec = FM_EXEC_MULFREE;
    c.qb = 1;
    assert_int_equal(fm_config_check(&c), FM_OK);
    /* binary deterministic weights only: the others have no bits to flip
     * (fp32, ternary, synapse) or draw them from a latent weight (bc) */
    const fm_weight_mode refused[] = {FM_WEIGHTS_FP32, FM_WEIGHTS_BC, FM_WEIGHTS_TC,
                                      FM_WEIGHTS_TC_DET, FM_WEIGHTS_SYNAPSE};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        bop_config(&c);
        c.weights = refused[i];
        assert_int_equal(fm_config_check(&c), FM_EINVAL);
        assert_non_null(strstr(fm_last_error(), "bc-det"));
    }
    const double gammas[] = {0.0, 1.0, -0.1, NAN, 1e-50};
    for (size_t i = 0; i < sizeof gammas / sizeof gammas[0]; i++) {
        bop_config(&c);
        c.bop_gamma = gammas[i];
        assert_int_equal(fm_config_check(&c), FM_EINVAL);
    }
    const double thresholds[] = {-1e-6, INFINITY, NAN, 1e300, 1e-50};
    for (size_t i = 0; i < sizeof thresholds / sizeof thresholds[0]; i++) {
        bop_config(&c);
        c.bop_threshold = thresholds[i];
        assert_int_equal(fm_config_check(&c), FM_EINVAL);
    }
    bop_config(&c);
    c.momentum = 0.9; /* SGD's */
    assert_int_equal(fm_config_check(&c), FM_EINVAL);
}

/* Every weight of every weighted layer is +H or -H (the same H per layer);
 * returns how many differ from `before` (may be NULL). */
static long assert_binary(const fm_model *m, const float *before)
{
    long changed = 0, at = 0;
    for (int k = 0;; k++) {
        long n = fm_model_weights(m, k, NULL, 0);
        if (n < 0)
            break;
        float *w = test_malloc((size_t)n * sizeof *w);
        assert_int_equal(fm_model_weights(m, k, w, (size_t)n), n);
        const float h = fabsf(w[0]);
        assert_true(h > 0.0f);
        for (long i = 0; i < n; i++) {
            if (fabsf(w[i]) != h)
                fail_msg("layer %d weight %ld is %g, not +-%g", k, i, w[i], h);
            changed += before && w[i] != before[at + i];
        }
        at += n;
        test_free(w);
    }
    return changed;
}

static float *all_weights(const fm_model *m, long *count)
{
    long total = 0;
    for (int k = 0; fm_model_weights(m, k, NULL, 0) >= 0; k++)
        total += fm_model_weights(m, k, NULL, 0);
    float *w = test_malloc((size_t)total * sizeof *w);
    long at = 0;
    for (int k = 0; fm_model_weights(m, k, NULL, 0) >= 0; k++)
        at += fm_model_weights(m, k, w + at, (size_t)(total - at));
    *count = total;
    return w;
}

static void test_initial_weights_binary(void **state)
{
    (void)state;
    fm_config c;
    bop_config(&c);
    c.arch = "conv:4k3,pool2,fc8";
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, 8, 8, 1, 4, &m), FM_OK);
    assert_binary(m, NULL);
    fm_model_free(m);
}

/* 400 training images of 4 classes: bop learns them (chance is 75 % error),
 * flipping weights that stay binary; the model file and the packed export
 * carry the bits. */
static void test_learns_and_exports(void **state)
{
    (void)state;
    fm_images train, test;
    make_quadrant_set(&train, 500, 1);
    make_quadrant_set(&test, 120, 2);
    const int qbs[] = {0, 1};
    for (int q = 0; q < 2; q++) {
        fm_config c;
        bop_config(&c);
        c.qb = qbs[q];
        fm_model *m;
        assert_int_equal(fm_model_create_image(&c, 8, 8, 1, 4, &m), FM_OK);
        long n;
        float *before = all_weights(m, &n);
        fm_result r;
        if (fm_train(m, &train, &test, &c, NULL, &r) != FM_OK)
            fail_msg("bop%s: %s", q ? "+qb" : "", fm_last_error());
        print_message("bop%s: test error %.2f %%\n", q ? "+qb" : "", r.test_error_pct);
        assert_true(r.test_error_pct < 10.0);
        long flipped = assert_binary(m, before);
        assert_true(flipped > 0 && flipped < n);
        /* the model file keeps the optimizer and the bits */
        const char *path = tpath("bop.fmm");
        assert_int_equal(fm_model_save(m, path), FM_OK);
        fm_model *back;
        assert_int_equal(fm_model_load(path, &back), FM_OK);
        long n2;
        float *reloaded = all_weights(back, &n2);
        assert_int_equal(n2, n);
        assert_int_equal(assert_binary(back, reloaded), 0);
        assert_int_equal(assert_binary(m, reloaded), 0);
        /* the packed export is the bits: 1 bit a weight, and it predicts as
         * the model does */
        fm_deploy *d;
        assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 0, 0, 0, &d), FM_OK);
        fm_deploy_layer_info info;
        assert_int_equal(fm_deploy_describe_layer(d, 0, &info), FM_OK);
        assert_string_equal(info.weights, "binary");
        assert_int_equal(info.bits, 1);
        uint8_t *a = test_malloc((size_t)test.count), *b = test_malloc((size_t)test.count);
        assert_int_equal(fm_model_predict(m, &test, 0, test.count, 1, a), FM_OK);
        assert_int_equal(fm_deploy_predict(d, test.pixels, test.count, 1, b, NULL), FM_OK);
        int same = 0;
        for (int i = 0; i < test.count; i++)
            same += a[i] == b[i];
        assert_true(same >= test.count - 2); /* batch norm folded: float rounding only */
        test_free(a);
        test_free(b);
        fm_deploy_free(d);
        test_free(reloaded);
        fm_model_free(back);
        test_free(before);
        fm_model_free(m);
    }
    free(train.pixels);
    free(train.labels);
    free(test.pixels);
    free(test.labels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flip_rule, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_config, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_initial_weights_binary, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_learns_and_exports, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
