/* test_train.c — end to end on MNIST (../shared/data/mnist), or Debian's
 * Fashion-MNIST where MNIST is absent (train_data.h): a short run per weight
 * mode must reach a stated test error; the same seed and thread count give
 * bit-identical weights; a saved model reloads to the same predictions. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fewmul.h"
#include "train_data.h"

/* A short run: 10,000 training images, the paper's 10,000 validation images. */
static void short_config(fm_config *c, const char *weights, int qb)
{
    fm_config_default(c);
    assert_int_equal(fm_parse_weights(weights, c), FM_OK);
    c->arch = "mlp:512,512";
    c->qb = qb;
    c->epochs = 3;
    c->batch = 100;
    c->train_limit = 10000;
    c->threads = 2;
}

static double run_mode_opt(const char *weights, int qb, fm_optimizer opt)
{
    fm_config c;
    short_config(&c, weights, qb);
    c.opt = opt;
    fm_model *m;
    assert_int_equal(fm_model_create(&c, 784, 10, &m), FM_OK);
    fm_result r;
    int rc = fm_train(m, &train_set, &test_set, &c, NULL, &r);
    if (rc != FM_OK)
        fail_msg("%s: %s", weights, fm_last_error());
    printf("  %-10s qb=%d  test %.2f%%  valid %.2f%%  best epoch %d  %.0f img/s\n", weights, qb,
           r.test_error_pct, r.valid_error_pct, r.best_epoch, r.train_images_per_s);
    assert_true(r.best_epoch >= 1 && r.best_epoch <= 3);
    fm_model_free(m);
    return r.test_error_pct;
}

static double run_mode(const char *weights, int qb) { return run_mode_opt(weights, qb, FM_OPT_SGD); }

/* Thresholds: the errors measured on this machine at commit time (2 threads)
 * plus about half again on MNIST (fp32 3.96, fp32+qb 3.93, bc 5.19, bc+qb
 * 5.35, bc-det 4.06, tc 4.15, tc+qb 4.16, tc-det 3.85, synapse 3.72 %), and a
 * quarter to a third again on Fashion-MNIST, whose modes lie closer together
 * (fp32 15.13, fp32+qb 15.29, bc 16.33, bc+qb 16.52, bc-det 15.13, tc 15.15,
 * tc+qb 15.49, tc-det 14.82, synapse 14.69 %), so a broken mode fails and
 * BLAS rounding differences do not. Chance is 90 %. */
#define MODE_TEST(name, weights, qb, mnist_limit, fashion_limit)               \
    static void name(void **state)                                             \
    {                                                                          \
        (void)state;                                                           \
        REQUIRE_DATA();                                                        \
        assert_true(run_mode(weights, qb) < LIMIT(mnist_limit, fashion_limit)); \
    }
MODE_TEST(test_fp32, "fp32", 0, 6.0, 19.0)
MODE_TEST(test_fp32_qb, "fp32", 1, 6.0, 19.5)
MODE_TEST(test_bc, "bc", 0, 7.5, 20.5)
MODE_TEST(test_bc_qb, "bc", 1, 8.0, 21.0)
MODE_TEST(test_bc_det, "bc-det", 0, 6.0, 19.0)
MODE_TEST(test_tc, "tc", 0, 6.0, 19.0)
MODE_TEST(test_tc_qb, "tc", 1, 6.5, 20.0)
MODE_TEST(test_tc_det, "tc-det", 0, 6.0, 19.0)
MODE_TEST(test_synapse, "synapse", 0, 6.0, 19.0)

/* Bop (--opt bop, bc-det+qb): binary weights flipped by their momenta, batch
 * norm by Adam. Measured at commit time on MNIST: 5.28 %, limit half again;
 * Fashion-MNIST was not measured: bc+qb's limit. */
#define BOP_MNIST_LIMIT 8.0
#define BOP_FASHION_LIMIT 21.0
static void test_bop_qb(void **state)
{
    (void)state;
    REQUIRE_DATA();
    assert_true(run_mode_opt("bc-det", 1, FM_OPT_BOP) < LIMIT(BOP_MNIST_LIMIT, BOP_FASHION_LIMIT));
}

/* Measured error of test_cnn_bc_qb (see there) and its limit. */
#define CNN_BC_QB_LIMIT LIMIT(4.0, 25.0)

static void train_small(const fm_config *c, float *weights, long n)
{
    fm_model *m;
    assert_int_equal(fm_model_create(c, 784, 10, &m), FM_OK);
    assert_int_equal(fm_train(m, &train_set, NULL, c, NULL, NULL), FM_OK);
    assert_int_equal(fm_model_weights(m, 0, weights, (size_t)n), n);
    fm_model_free(m);
}

static void test_determinism(void **state)
{
    (void)state;
    REQUIRE_DATA();
    fm_config c;
    short_config(&c, "bc", 1);
    c.arch = "mlp:64";
    c.epochs = 1;
    c.train_limit = 3000;
    c.dropout = 0.2;
    long n = 784 * 64;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    train_small(&c, a, n);
    train_small(&c, b, n);
    assert_memory_equal(a, b, n * sizeof *a);
    c.seed = 1235;
    train_small(&c, b, n);
    assert_true(memcmp(a, b, n * sizeof *a) != 0);
    free(a);
    free(b);
}

static void test_save_load_roundtrip(void **state)
{
    (void)state;
    REQUIRE_DATA();
    fm_config c;
    short_config(&c, "tc", 1);
    c.arch = "mlp:128";
    c.epochs = 1;
    c.train_limit = 5000;
    c.test_quantized = 1;
    fm_model *m, *loaded;
    assert_int_equal(fm_model_create(&c, 784, 10, &m), FM_OK);
    assert_int_equal(fm_train(m, &train_set, &test_set, &c, NULL, NULL), FM_OK);
    char dir[] = "/tmp/fewmul-test-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.fm", dir);
    assert_int_equal(fm_model_save(m, path), FM_OK);
    assert_int_equal(fm_model_load(path, &loaded), FM_OK);
    assert_string_equal(fm_model_describe(m), fm_model_describe(loaded));
    double e1, e2;
    assert_int_equal(fm_model_evaluate(m, &test_set, 2, &e1), FM_OK);
    assert_int_equal(fm_model_evaluate(loaded, &test_set, 2, &e2), FM_OK);
    assert_true(e1 == e2);
    uint8_t *p1 = malloc(1000), *p2 = malloc(1000);
    assert_int_equal(fm_model_predict(m, &test_set, 0, 1000, 2, p1), FM_OK);
    assert_int_equal(fm_model_predict(loaded, &test_set, 0, 1000, 2, p2), FM_OK);
    assert_memory_equal(p1, p2, 1000);

    /* a damaged copy is refused, and saving over it leaves no temporary file */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 100, SEEK_SET);
    fputc(0x5a ^ fgetc(f), f);
    fclose(f);
    fm_model *bad = NULL;
    assert_int_equal(fm_model_load(path, &bad), FM_EFORMAT);
    assert_null(bad);
    assert_non_null(strstr(fm_last_error(), "checksum"));
    assert_int_equal(truncate(path, 50), 0);
    assert_true(fm_model_load(path, &bad) < 0);
    assert_int_equal(fm_model_save(m, path), FM_OK);
    char tmp[80];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(fm_model_load(path, &bad), FM_OK);
    fm_model_free(bad);
    unlink(path);
    rmdir(dir);
    free(p1);
    free(p2);
    fm_model_free(m);
    fm_model_free(loaded);
}

/* The model as fm_model_save writes it and fm_model_load reads it back. */
static fm_model *saved_copy(const fm_model *m)
{
    char dir[] = "/tmp/fewmul-test-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.fm", dir);
    fm_model *loaded = NULL;
    assert_int_equal(fm_model_save(m, path), FM_OK);
    assert_int_equal(fm_model_load(path, &loaded), FM_OK);
    unlink(path);
    rmdir(dir);
    return loaded;
}

/* A small convolutional network, binary weights with quantized back-prop
 * (the convolutions' exponent clip -4:3, the authors'), trained on MNIST
 * images as 28x28x1 maps: conv 5x5 16, pool, conv 5x5 32, pool, dense 128.
 * Measured at commit time (2 threads): 2.41 % test error after 3 epochs of
 * 10,000 images (Fashion-MNIST 19.26 %); the limits allow about half and a
 * third again (chance is 90 %). It is
 * also saved, reloaded and must predict identically. */
static void test_cnn_bc_qb(void **state)
{
    (void)state;
    REQUIRE_DATA();
    fm_config c;
    short_config(&c, "bc", 1);
    c.arch = "conv:16k5,pool2,32k5,pool2,fc128";
    fm_model *m, *loaded;
    assert_int_equal(fm_model_create_image(&c, 28, 28, 1, 10, &m), FM_OK);
    fm_result r;
    if (fm_train(m, &train_set, &test_set, &c, NULL, &r) != FM_OK)
        fail_msg("cnn: %s", fm_last_error());
    printf("  cnn bc+qb  test %.2f%%  valid %.2f%%  best epoch %d  %.0f img/s\n",
           r.test_error_pct, r.valid_error_pct, r.best_epoch, r.train_images_per_s);
    assert_true(r.test_error_pct < CNN_BC_QB_LIMIT);

    loaded = saved_copy(m);
    int h = 0, w = 0, ch = 0;
    assert_int_equal(fm_model_input_shape(loaded, &h, &w, &ch), 784);
    assert_true(h == 28 && w == 28 && ch == 1);
    uint8_t *p1 = malloc(500), *p2 = malloc(500);
    assert_int_equal(fm_model_predict(m, &test_set, 0, 500, 2, p1), FM_OK);
    assert_int_equal(fm_model_predict(loaded, &test_set, 0, 500, 2, p2), FM_OK);
    assert_memory_equal(p1, p2, 500);
    /* images of another shape with the same number of values are refused */
    fm_images flat = test_set;
    flat.height = 784;
    flat.width = 1;
    assert_int_equal(fm_model_predict(m, &flat, 0, 10, 2, p1), FM_EMISMATCH);
    free(p1);
    free(p2);
    fm_model_free(m);
    fm_model_free(loaded);
}

/* The CIFAR-10 and SVHN preprocessing pipelines run end to end on MNIST
 * images (one epoch of 5,000 images of a small fp32 CNN each; measured at
 * commit time 8.02 % with gcn-zca, 6.47 % with gcn-lcn; on Fashion-MNIST
 * 19.92 % and 18.15 %: they must learn), and
 * the preprocessing (a gcn-zca model's whitening matrix) survives a save and
 * load. */
static void test_preprocessing_pipelines(void **state)
{
    (void)state;
    REQUIRE_DATA();
    const fm_preproc kinds[] = {FM_PRE_GCN_ZCA, FM_PRE_GCN_LCN};
    for (int k = 0; k < 2; k++) {
        fm_config c;
        short_config(&c, "fp32", 0);
        c.arch = "conv:8k5,pool2,fc64";
        c.preproc = kinds[k];
        c.epochs = 1;
        c.train_limit = 5000;
        fm_model *m, *loaded;
        assert_int_equal(fm_model_create_image(&c, 28, 28, 1, 10, &m), FM_OK);
        fm_result r;
        if (fm_train(m, &train_set, &test_set, &c, NULL, &r) != FM_OK)
            fail_msg("preproc %d: %s", (int)kinds[k], fm_last_error());
        printf("  preproc %s  test %.2f%%\n", k == 0 ? "gcn-zca" : "gcn-lcn", r.test_error_pct);
        assert_true(r.test_error_pct < LIMIT(15.0, 27.0));
        loaded = saved_copy(m);
        double e1, e2;
        assert_int_equal(fm_model_evaluate(m, &test_set, 2, &e1), FM_OK);
        assert_int_equal(fm_model_evaluate(loaded, &test_set, 2, &e2), FM_OK);
        assert_true(e1 == e2);
        fm_model_free(m);
        fm_model_free(loaded);
    }
}

/* ---- values checked as training uses them (no data needed) ---- */

/* fm_config_check with one field set: FM_EINVAL and a message holding
 * `reason`, or FM_OK when reason is NULL. */
static void check_field(void (*set)(fm_config *), const char *reason, const char *what)
{
    fm_config c;
    fm_config_default(&c);
    set(&c);
    int rc = fm_config_check(&c);
    if (!reason && rc != FM_OK)
        fail_msg("%s refused: %s", what, fm_last_error());
    if (reason && (rc != FM_EINVAL || !strstr(fm_last_error(), reason)))
        fail_msg("%s: rc %d, '%s' (expected '%s')", what, rc, rc ? fm_last_error() : "",
                 reason);
}

#define FIELD(name, body) \
    static void name(fm_config *c) { body; }
FIELD(lr_inf_as_float, c->lr = 1e39)
FIELD(lr_zero_as_float, c->lr = 1e-50)
FIELD(lr_subnormal, c->lr = 1e-40)
FIELD(lr_smallest, c->lr = 1.17549435e-38)
FIELD(lr_largest, c->lr = 3.4e38)
FIELD(lr_final_zero_as_float, c->lr_final = 1e-50)
FIELD(momentum_one_as_float, c->momentum = 0.99999999999)
FIELD(momentum_below_one, c->momentum = 0.9999999)
FIELD(dropout_one_as_float, c->dropout = 0.999999999999)
FIELD(bn_eps_zero_as_float, c->bn_eps = 1e-50)
FIELD(bn_momentum_zero_as_float, c->bn_momentum = 1e-50)
FIELD(range_inf_as_float, c->synapse_range = 1e39)
FIELD(range_1e30, c->synapse_range = 1e30)
FIELD(range_2_63, c->synapse_range = 0x1p63)
FIELD(range_one_as_float, c->synapse_range = 1.00000001)
FIELD(range_close_synapse, (void)fm_parse_weights("synapse:26", c); c->synapse_range = 1.00002)
FIELD(range_enough_synapse, (void)fm_parse_weights("synapse:26", c); c->synapse_range = 1.0001)

static void test_config_values_as_floats(void **state)
{
    (void)state;
    check_field(lr_inf_as_float, "learning rate 1e+39 overflows a 32-bit float", "lr 1e39");
    check_field(lr_zero_as_float, "learning rate 1e-50 becomes 0 as a 32-bit float", "lr 1e-50");
    check_field(lr_subnormal, "below the smallest normal 32-bit float", "lr 1e-40");
    check_field(lr_smallest, NULL, "lr FLT_MIN");
    check_field(lr_largest, NULL, "lr 3.4e38");
    check_field(lr_final_zero_as_float, "final learning rate 1e-50 becomes 0", "lr_final 1e-50");
    check_field(momentum_one_as_float, "momentum 0.99999999999 rounds to 1", "momentum");
    check_field(momentum_below_one, NULL, "momentum 0.9999999");
    check_field(dropout_one_as_float, "dropout 0.999999999999 rounds to 1 as a 32-bit float (it must stay below 1)", "dropout");
    check_field(bn_eps_zero_as_float, "batch-norm epsilon 1e-50 becomes 0",
                "bn_eps");
    check_field(bn_momentum_zero_as_float, "batch-norm momentum 1e-50 becomes 0", "bn_momentum");
    check_field(range_inf_as_float, "synapse range 1e+39 overflows a 32-bit float", "range 1e39");
    /* 1e30 was refused as "must be greater than 1"; the reason is the underflow */
    check_field(range_1e30, "synapse range 1e+30 is too large: the smallest magnitude H/R would "
                            "be below 2^-63", "range 1e30");
    check_field(range_2_63, NULL, "range 2^63");
    check_field(range_one_as_float, "synapse range 1.00000001 rounds to 1 as a 32-bit float",
                "range 1.00000001");
    check_field(range_close_synapse, "is too close to 1 for 26 levels", "range 1.00002");
    check_field(range_enough_synapse, NULL, "range 1.0001");
}

/* Each layer's smallest synapse level H/R, checked where H is known: a
 * range the configuration allows can still be too large for a layer. */
static void test_synapse_range_per_layer(void **state)
{
    (void)state;
    fm_config c;
    fm_config_default(&c);
    c.arch = "mlp:16";
    assert_int_equal(fm_parse_weights("synapse", &c), FM_OK);
    c.synapse_range = 9e18;
    fm_model *m = NULL;
    assert_int_equal(fm_model_create(&c, 64, 10, &m), FM_EINVAL);
    assert_null(m);
    assert_non_null(strstr(fm_last_error(), "too large for weighted layer 1 (64 x 16)"));
    c.scale = FM_SCALE_ONE; /* H = 1: 1/9e18 is above 2^-63 */
    assert_int_equal(fm_model_create(&c, 64, 10, &m), FM_OK);
    fm_model_free(m);
}

/* A run that diverges: its loss is NaN (reported as 0 before), and its
 * weights are refused by the export, not written as NaN. */
static void test_diverged_run(void **state)
{
    (void)state;
    enum { N = 300, SIDE = 8 };
    uint8_t pixels[N * SIDE * SIDE], labels[N];
    for (int i = 0; i < N; i++) {
        labels[i] = (uint8_t)(i % 4);
        for (int p = 0; p < SIDE * SIDE; p++)
            pixels[i * SIDE * SIDE + p] = (uint8_t)((p % 4 == i % 4) ? 200 : (i * 7 + p) % 50);
    }
    fm_images set = {N, SIDE, SIDE, 1, pixels, labels};
    fm_config c;
    fm_config_default(&c);
    c.arch = "mlp:16";
    c.epochs = 3;
    c.batch = 50;
    c.valid = 50;
    c.threads = 1;
    c.lr = 1e30;
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, SIDE, SIDE, 1, 4, &m), FM_OK);
    fm_result r;
    assert_int_equal(fm_train(m, &set, NULL, &c, NULL, &r), FM_OK);
    if (!isnan(r.final_train_loss))
        fail_msg("final loss %g after diverging", r.final_train_loss);
    assert_int_equal(fm_model_check_finite(m), FM_EINVAL);
    fm_deploy *d = NULL;
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 0, 0, 0, &d), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "is nan"));
    fm_model_free(m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp32),        cmocka_unit_test(test_fp32_qb),
        cmocka_unit_test(test_bc),          cmocka_unit_test(test_bc_qb),
        cmocka_unit_test(test_bc_det),      cmocka_unit_test(test_tc),
        cmocka_unit_test(test_tc_qb),       cmocka_unit_test(test_tc_det),
        cmocka_unit_test(test_synapse),     cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_bop_qb),
        cmocka_unit_test(test_save_load_roundtrip),
        cmocka_unit_test(test_cnn_bc_qb),   cmocka_unit_test(test_preprocessing_pipelines),
        cmocka_unit_test(test_config_values_as_floats),
        cmocka_unit_test(test_synapse_range_per_layer),
        cmocka_unit_test(test_diverged_run),
    };
    return RUN_DATA_TESTS(argc, argv, tests, load_train_data, free_train_data);
}
