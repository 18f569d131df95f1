/* test_deploy.c — deployed networks against the trainer that made them, on
 * MNIST (../shared/data/mnist, or Debian's Fashion-MNIST where it is absent:
 * train_data.h): a model of each weight mode is trained briefly,
 * exported, and its packed predictions must equal the training-side evaluation
 * of the same deterministic weights image for image, with every kernel variant
 * and with the fp32 yardstick; packed variants must agree bit for bit on the
 * scores; a saved and reloaded file predicts the same; one handle serves
 * concurrent threads. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fewmul.h"
#include "train_data.h"
#include "deploy_checks.h"
#include "net.h"

/* A short run of `weights` (a --weights spec) with `acts` hidden activations. */
static fm_model *train_model(const char *weights, int qb, fm_acts acts, const char *arch)
{
    fm_config c;
    fm_config_default(&c);
    assert_int_equal(fm_parse_weights(weights, &c), FM_OK);
    c.arch = arch;
    c.qb = qb;
    c.acts = acts;
    c.epochs = 2;
    c.batch = 100;
    c.train_limit = 8000;
    c.valid = 2000;
    c.threads = 2;
    fm_model *m;
    assert_int_equal(fm_model_create(&c, 784, 10, &m), FM_OK);
    fm_result r;
    if (fm_train(m, &train_set, NULL, &c, NULL, &r) != FM_OK)
        fail_msg("%s: %s", weights, fm_last_error());
    return m;
}

/* Test-set classes as training evaluates the model (deploy_checks.h). */
static uint8_t *training_classes(fm_model *m, int quantized)
{
    return training_classes_of(m, &test_set, quantized);
}

static double check_variants(fm_deploy *d, const uint8_t *expected, const char *what,
                             int binary_acts)
{
    return check_variants_on(d, &test_set, expected, what, binary_acts);
}

static void check_mode(const char *weights, int qb, fm_acts acts, const char *want_kind, int want_bits)
{
    fm_model *m = train_model(weights, qb, acts, "mlp:256,256");
    fm_deploy *d;
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 28, 28, 1, &d), FM_OK);
    fm_deploy_layer_info info;
    assert_int_equal(fm_deploy_describe_layer(d, 1, &info), FM_OK);
    assert_string_equal(info.weights, want_kind);
    assert_int_equal(info.bits, want_bits);
    assert_string_equal(info.input, acts == FM_ACTS_BINARY ? "binary" : "real");
    uint8_t *expected = training_classes(m, 1);
    char what[96];
    snprintf(what, sizeof what, "%s%s%s", weights, qb ? "+qb" : "",
             acts == FM_ACTS_BINARY ? " binary acts" : "");
    double err = check_variants(d, expected, what, acts == FM_ACTS_BINARY);
    assert_true(err < LIMIT(20.0, 30.0)); /* it learned something in two short epochs */
    free(expected);
    fm_deploy_free(d);
    fm_model_free(m);
}

static void test_binary_matches_training(void **state)
{
    (void)state;
    REQUIRE_DATA();
    check_mode("bc", 1, FM_ACTS_RELU, "binary", 1);
}

static void test_ternary_matches_training(void **state)
{
    (void)state;
    REQUIRE_DATA();
    check_mode("tc", 1, FM_ACTS_RELU, "ternary", 2);
}

static void test_synapse_matches_training(void **state)
{
    (void)state;
    REQUIRE_DATA();
    check_mode("synapse", 1, FM_ACTS_RELU, "synapse", 6);
    check_mode("synapse:16", 0, FM_ACTS_RELU, "synapse", 5);
}

static void test_fully_binary_matches_training(void **state)
{
    (void)state;
    REQUIRE_DATA();
    check_mode("bc-det", 0, FM_ACTS_BINARY, "binary", 1);
}

/* --export mean deploys the real weights the paper evaluates with: fp32 layers
 * whose predictions equal training's evaluation with real weights. */
static void test_mean_export(void **state)
{
    (void)state;
    REQUIRE_DATA();
    fm_model *m = train_model("bc", 0, FM_ACTS_RELU, "mlp:128");
    fm_deploy *d;
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_MEAN, 0, 0, 0, &d), FM_OK);
    fm_deploy_layer_info info;
    assert_int_equal(fm_deploy_describe_layer(d, 0, &info), FM_OK);
    assert_string_equal(info.weights, "fp32");
    assert_int_equal(info.bits, 32);
    int h, w, c;
    assert_int_equal(fm_deploy_input_shape(d, &h, &w, &c), 784);
    assert_true(h == 784 && w == 1 && c == 1);
    uint8_t *expected = training_classes(m, 0);
    check_variants(d, expected, "bc --export mean", 0);
    free(expected);
    fm_deploy_free(d);
    fm_model_free(m);
}

static void test_file_round_trip(void **state)
{
    (void)state;
    REQUIRE_DATA();
    fm_model *m = train_model("tc", 1, FM_ACTS_RELU, "mlp:128");
    fm_deploy *d, *back;
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 28, 28, 1, &d), FM_OK);
    char path[] = "/tmp/fewmul-deploy-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(fm_deploy_save(d, path), FM_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, fm_deploy_file_bytes(d));
    assert_int_equal(fm_deploy_load(path, &back), FM_OK);
    remove(path);
    assert_string_equal(fm_deploy_describe(back), fm_deploy_describe(d));
    const int n = test_set.count;
    uint8_t *a = malloc((size_t)n), *b = malloc((size_t)n);
    assert_int_equal(fm_deploy_predict(d, test_set.pixels, n, 2, a, NULL), FM_OK);
    assert_int_equal(fm_deploy_predict(back, test_set.pixels, n, 2, b, NULL), FM_OK);
    assert_memory_equal(a, b, (size_t)n);
    free(a);
    free(b);
    fm_deploy_free(back);
    fm_deploy_free(d);
    fm_model_free(m);
}

/* ---- one handle, many threads ---- */

typedef struct worker {
    const fm_deploy *deploy;
    int first, count, rc;
    uint8_t *classes;
} worker;

static void *predict_part(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < w->count && w->rc == FM_OK; i += 50) /* small calls interleave */
        w->rc = fm_deploy_predict(w->deploy, test_set.pixels + (size_t)(w->first + i) * 784,
                                  w->count - i < 50 ? w->count - i : 50, 1, w->classes + w->first + i,
                                  NULL);
    return NULL;
}

static void test_concurrent_predictions(void **state)
{
    (void)state;
    REQUIRE_DATA();
    fm_model *m = train_model("bc", 1, FM_ACTS_RELU, "mlp:128");
    fm_deploy *d;
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 28, 28, 1, &d), FM_OK);
    const int n = test_set.count, threads = 4;
    uint8_t *alone = malloc((size_t)n), *together = malloc((size_t)n);
    assert_int_equal(fm_deploy_predict(d, test_set.pixels, n, 1, alone, NULL), FM_OK);
    memset(together, 0xff, (size_t)n);
    pthread_t tid[4];
    worker w[4];
    for (int t = 0; t < threads; t++) {
        w[t] = (worker){d, t * (n / threads), t == threads - 1 ? n - t * (n / threads) : n / threads,
                        FM_OK, together};
        assert_int_equal(pthread_create(&tid[t], NULL, predict_part, &w[t]), 0);
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        assert_int_equal(w[t].rc, FM_OK);
    }
    assert_memory_equal(alone, together, (size_t)n);
    free(alone);
    free(together);
    fm_deploy_free(d);
    fm_model_free(m);
}

/* ---- arguments ---- */

/* A fresh 12-8-3 bc model, untrained. */
static fm_model *small_bc_model(void)
{
    fm_config c;
    fm_config_default(&c);
    c.arch = "mlp:8";
    assert_int_equal(fm_parse_weights("bc", &c), FM_OK);
    fm_model *m;
    assert_int_equal(fm_model_create(&c, 12, 3, &m), FM_OK);
    return m;
}

static void test_bad_arguments(void **state)
{
    (void)state;
    fm_model *m = small_bc_model();
    fm_deploy *d = (fm_deploy *)1;
    assert_int_equal(fm_deploy_from_model(NULL, FM_EXPORT_DET, 0, 0, 0, &d), FM_EINVAL);
    assert_null(d);
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 3, 3, 1, &d), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "12 inputs"));
    assert_int_equal(fm_deploy_from_model(m, (fm_export_weights)7, 0, 0, 0, &d), FM_EINVAL);
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 2, 3, 2, &d), FM_OK);
    uint8_t pixels[24] = {0}, classes[2];
    float scores[6];
    assert_int_equal(fm_deploy_predict(d, pixels, -1, 1, classes, NULL), FM_EINVAL);
    assert_int_equal(fm_deploy_predict(d, NULL, 2, 1, classes, NULL), FM_EINVAL);
    assert_int_equal(fm_deploy_predict(d, pixels, 2, 1, NULL, NULL), FM_EINVAL);
    assert_int_equal(fm_deploy_predict(d, pixels, 0, 1, classes, NULL), FM_OK);
    assert_int_equal(fm_deploy_predict(d, pixels, 2, 1, classes, scores), FM_OK);
    assert_true(classes[0] < 3 && classes[1] < 3);
    assert_int_equal(fm_deploy_set_kernels(d, "nonsense"), FM_EINVAL);
    assert_int_equal(fm_deploy_describe_layer(d, 5, &(fm_deploy_layer_info){0}), FM_EINVAL);
    assert_string_equal(fm_deploy_describe(d), "12-8-3, binary weights, relu activations");
    fm_deploy_free(d);
    fm_model_free(m);
}

/* A model whose values are not all finite (a diverged run) is refused by
 * fm_model_check_finite and by the export, naming the first such value,
 * instead of an export that fails with "non-finite scale or offset". */
static void test_not_finite_refused(void **state)
{
    (void)state;
    fm_model *m = small_bc_model();
    assert_int_equal(fm_model_check_finite(m), FM_OK);
    fm_deploy *d = NULL;
    const fm_layer *dense2 = NULL, *bn1 = NULL;
    for (int l = 0; l < m->n_layers; l++) {
        if (m->layers[l].kind == FM_LAYER_DENSE && m->layers[l].weight_index == 1)
            dense2 = &m->layers[l];
        if (m->layers[l].kind == FM_LAYER_BN && !bn1)
            bn1 = &m->layers[l];
    }
    assert_non_null(dense2);
    assert_non_null(bn1);
    float *w = m->state + dense2->offset + 4;
    *w = NAN;
    assert_int_equal(fm_model_check_finite(m), FM_EINVAL);
    assert_string_equal(fm_last_error(), "weight 5 of weighted layer 2 (8 x 3) is nan");
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 0, 0, 0, &d), FM_EINVAL);
    assert_null(d);
    assert_string_equal(fm_last_error(), "weight 5 of weighted layer 2 (8 x 3) is nan");
    *w = 0.0f;
    m->state[bn1->offset + 3 * bn1->channels] = INFINITY; /* the first variance */
    assert_int_equal(fm_model_check_finite(m), FM_EINVAL);
    assert_string_equal(fm_last_error(), "a batch-norm variance of weighted layer 1 is inf");
    m->state[bn1->offset + 3 * bn1->channels] = 1.0f;
    m->input_mean[11] = -INFINITY;
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_MEAN, 0, 0, 0, &d), FM_EINVAL);
    assert_string_equal(fm_last_error(), "input mean 12 is -inf");
    m->input_mean[11] = 0.0f;
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 0, 0, 0, &d), FM_OK);
    fm_deploy_free(d);
    fm_model_free(m);
    assert_int_equal(fm_model_check_finite(NULL), FM_EINVAL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_not_finite_refused),
        cmocka_unit_test(test_binary_matches_training),
        cmocka_unit_test(test_ternary_matches_training),
        cmocka_unit_test(test_synapse_matches_training),
        cmocka_unit_test(test_fully_binary_matches_training),
        cmocka_unit_test(test_mean_export),
        cmocka_unit_test(test_file_round_trip),
        cmocka_unit_test(test_concurrent_predictions),
    };
    return RUN_DATA_TESTS(argc, argv, tests, load_train_data, free_train_data);
}
