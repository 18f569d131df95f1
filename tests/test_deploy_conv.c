/* test_deploy_conv.c — convolutional networks deployed (docs/deploy.md):
 * small conv nets are trained briefly on MNIST (or Fashion-MNIST where it is
 * absent: train_data.h) with binary, ternary, synapse and fully binary
 * (--acts binary) weights, with pools, padded convolutions and global average
 * pooling, and one on a CIFAR-10 folder written here (3 channels); each is
 * exported and every kernel variant and the fp32 yardstick must predict
 * exactly what the trainer's deterministic evaluation predicts, on every test
 * image. A saved and reloaded conv file is byte-identical when saved again
 * and predicts the same. On +-1 inputs a fully binary net's sums are exact
 * integers, so the packed path (xnor and popcount with the padding left out,
 * thresholds for batch norm, max-pool on bits) must give the fp32 path's
 * scores bit for bit, also with negative and zero batch-norm scales. */
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

#include "deploy.h"
#include "fewmul.h"
#include "train_data.h"
#define DEPLOY_RECORD_PROGRAM "deploy_conv" /* its recorded cases' names */
#include "deploy_checks.h"
#include "net.h"

/* A short run of `weights` (a --weights spec) on `train` with images h x w x c. */
static fm_model *train_conv(const char *weights, int qb, fm_acts acts, const char *arch,
                            const fm_images *train, int limit)
{
    fm_config c;
    fm_config_default(&c);
    assert_int_equal(fm_parse_weights(weights, &c), FM_OK);
    c.arch = arch;
    c.qb = qb;
    c.acts = acts;
    c.epochs = 1;
    c.batch = 50;
    c.train_limit = limit;
    c.valid = 200;
    c.threads = 2;
    c.preproc = FM_PRE_UNIT;
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, train->height, train->width, train->channels, 10, &m),
                     FM_OK);
    fm_result r;
    if (fm_train(m, train, NULL, &c, NULL, &r) != FM_OK)
        fail_msg("%s %s: %s", weights, arch, fm_last_error());
    return m;
}

/* Exports m and checks every variant against the trainer's deterministic
 * evaluation on `set`; returns the deployed network. */
static fm_deploy *check_conv(fm_model *m, const fm_images *set, fm_export_weights how,
                             const char *what)
{
    fm_deploy *d;
    if (fm_deploy_from_model(m, how, 0, 0, 0, &d) != FM_OK)
        fail_msg("%s: %s", what, fm_last_error());
    int h, w, c;
    fm_deploy_input_shape(d, &h, &w, &c);
    assert_true(h == set->height && w == set->width && c == set->channels);
    fm_deploy_layer_info info;
    assert_int_equal(fm_deploy_describe_layer(d, 0, &info), FM_OK);
    assert_string_equal(info.type, "conv");
    uint8_t *expected = training_classes_of(m, set, how == FM_EXPORT_DET);
    printf("  %s: %s, file %llu bytes\n", what, fm_deploy_describe(d),
           (unsigned long long)fm_deploy_file_bytes(d));
    double err = check_variants_on(d, set, expected, what, 0);
    assert_true(err < 85.0); /* better than chance (90%) after one short epoch */
    free(expected);
    return d;
}

static void check_mode(const char *weights, int qb, fm_acts acts, const char *arch,
                       const char *want_kind)
{
    fm_model *m = train_conv(weights, qb, acts, arch, &train_set, 3000);
    char what[128];
    snprintf(what, sizeof what, "%s%s%s %s", weights, qb ? "+qb" : "",
             acts == FM_ACTS_BINARY ? " binary acts" : "", arch);
    fm_deploy *d = check_conv(m, &test_set, FM_EXPORT_DET, what);
    for (int l = 0; l < fm_deploy_layers(d); l++) {
        fm_deploy_layer_info info;
        assert_int_equal(fm_deploy_describe_layer(d, l, &info), FM_OK);
        if (strcmp(info.type, "conv") == 0 || strcmp(info.type, "dense") == 0)
            assert_string_equal(info.weights, want_kind);
        /* the second convolution of a fully binary net reads +-1 maps */
        if (l > 0 && acts == FM_ACTS_BINARY && strcmp(info.type, "conv") == 0)
            assert_string_equal(info.input, "binary");
    }
    fm_deploy_free(d);
    fm_model_free(m);
}

static void test_binary_conv_matches_training(void **state)
{
    (void)state;
    REQUIRE_DATA();
    check_mode("bc", 1, FM_ACTS_RELU, "conv:8k3,pool2,16k3same,pool2,fc32", "binary");
}

static void test_ternary_conv_matches_training(void **state)
{
    (void)state;
    REQUIRE_DATA();
    check_mode("tc", 1, FM_ACTS_RELU, "conv:8k3,pool2,16k3s2same,fc32", "ternary");
}

static void test_synapse_conv_matches_training(void **state)
{
    (void)state;
    REQUIRE_DATA();
    check_mode("synapse", 1, FM_ACTS_RELU, "conv:8k3,pool2,16k3,gap", "synapse");
    check_mode("synapse:16", 0, FM_ACTS_RELU, "conv:8k5s2same,16k3,pool2,fc32", "synapse");
}

static void test_fully_binary_conv_matches_training(void **state)
{
    (void)state;
    REQUIRE_DATA();
    check_mode("bc-det", 0, FM_ACTS_BINARY, "conv:16k3,pool2,32k3same,pool2,fc64", "binary");
    check_mode("bc-det", 0, FM_ACTS_BINARY, "conv:16k3,pool3s2,32k3same,gap", "binary");
}

/* fp32 weights run as im2col and a matrix product in every variant; --export
 * mean deploys a stochastic mode's real weights, which the trainer evaluates. */
static void test_fp32_and_mean_conv(void **state)
{
    (void)state;
    REQUIRE_DATA();
    fm_model *m = train_conv("fp32", 0, FM_ACTS_RELU, "conv:8k3,pool2,16k3,fc32", &train_set, 2000);
    fm_deploy *d = check_conv(m, &test_set, FM_EXPORT_DET, "fp32 conv");
    fm_deploy_free(d);
    fm_model_free(m);
    m = train_conv("bc", 0, FM_ACTS_RELU, "conv:8k3,pool2,16k3,fc32", &train_set, 2000);
    d = check_conv(m, &test_set, FM_EXPORT_MEAN, "bc conv --export mean");
    fm_deploy_layer_info info;
    assert_int_equal(fm_deploy_describe_layer(d, 0, &info), FM_OK);
    assert_string_equal(info.weights, "fp32");
    fm_deploy_free(d);
    fm_model_free(m);
}

/* ---- a CIFAR-10 folder (3 channels) ---- */

/* CIFAR-10 binary batches in dir: records of a label and 32x32 R, G, B
 * planes, whose brightness tells the class (learnable in one short epoch). */
static void write_cifar(const char *dir)
{
    assert_true(mkdir(dir, 0700) == 0 || access(dir, F_OK) == 0);
    uint32_t r = 7;
    const char *names[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                           "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    uint8_t record[3073];
    for (int f = 0; f < 6; f++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, names[f]);
        FILE *out = fopen(path, "wb");
        assert_non_null(out);
        for (int n = 0; n < 240; n++) {
            r = r * 1664525u + 1013904223u;
            const int label = (int)((r >> 16) % 10);
            record[0] = (uint8_t)label;
            for (int i = 1; i < 3073; i++) {
                r = r * 1664525u + 1013904223u;
                int v = 20 * label + (int)((r >> 24) / 3);
                record[i] = (uint8_t)(v > 255 ? 255 : v);
            }
            assert_int_equal(fwrite(record, 1, sizeof record, out), sizeof record);
        }
        assert_int_equal(fclose(out), 0);
    }
}

static void test_cifar_folder_conv(void **state)
{
    (void)state;
    char dir[] = "/tmp/fewmul-cifar-XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_cifar(dir);
    char spec[64];
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    fm_images train = {0}, test = {0};
    assert_int_equal(fm_data_load(spec, &train, &test), FM_OK);
    assert_int_equal(train.channels, 3);
    static const struct {
        const char *weights;
        int qb;
        fm_acts acts;
        const char *arch;
    } runs[] = {
        {"bc", 1, FM_ACTS_RELU, "conv:8k3,pool2,16k3s2same,fc32"},
        {"tc", 1, FM_ACTS_RELU, "conv:8k3same,pool2,16k3,gap"},
        {"bc-det", 0, FM_ACTS_BINARY, "conv:16k3,pool2,32k3same,pool2,fc32"},
    };
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        fm_model *m = train_conv(runs[k].weights, runs[k].qb, runs[k].acts, runs[k].arch, &train, 0);
        char what[128];
        snprintf(what, sizeof what, "cifar %s %s", runs[k].weights, runs[k].arch);
        fm_deploy *d = check_conv(m, &test, FM_EXPORT_DET, what);
        fm_deploy_free(d);
        fm_model_free(m);
    }
    fm_images_free(&train);
    fm_images_free(&test);
    const char *names[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                           "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    for (int f = 0; f < 6; f++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, names[f]);
        remove(path);
    }
    rmdir(dir);
}

/* ---- files ---- */

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)size + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return p;
}

static void test_conv_file_round_trip(void **state)
{
    (void)state;
    REQUIRE_DATA();
    fm_model *m = train_conv("bc-det", 0, FM_ACTS_BINARY, "conv:8k3,pool2,16k3same,gap", &train_set,
                             1000);
    fm_deploy *d, *back;
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 0, 0, 0, &d), FM_OK);
    char a[] = "/tmp/fewmul-conv-a-XXXXXX", b[] = "/tmp/fewmul-conv-b-XXXXXX";
    int fa = mkstemp(a), fb = mkstemp(b);
    assert_true(fa >= 0 && fb >= 0);
    close(fa);
    close(fb);
    assert_int_equal(fm_deploy_save(d, a), FM_OK);
    assert_int_equal(fm_deploy_load(a, &back), FM_OK);
    assert_int_equal(fm_deploy_save(back, b), FM_OK);
    size_t na, nb;
    uint8_t *pa = read_all(a, &na), *pb = read_all(b, &nb);
    assert_int_equal(na, fm_deploy_file_bytes(d));
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na);
    assert_int_equal(pa[8], 2); /* a network with maps is a version 2 file */
    assert_string_equal(fm_deploy_describe(back), fm_deploy_describe(d));
    const int n = test_set.count;
    uint8_t *ca = malloc((size_t)n), *cb = malloc((size_t)n);
    assert_int_equal(fm_deploy_predict(d, test_set.pixels, n, 2, ca, NULL), FM_OK);
    assert_int_equal(fm_deploy_predict(back, test_set.pixels, n, 2, cb, NULL), FM_OK);
    assert_memory_equal(ca, cb, (size_t)n);
    free(ca);
    free(cb);
    free(pa);
    free(pb);
    remove(a);
    remove(b);
    fm_deploy_free(back);
    fm_deploy_free(d);
    fm_model_free(m);
}

/* ---- the packed binary path against the fp32 path, bit for bit ---- */

/* A fully binary net read as +-1 inputs (input scale 1, mean 0): every sum is
 * an exact integer on both paths, so their scores must be identical. The
 * batch-norm scales of the convolutions are made negative (a third) and zero
 * (a few): the thresholds must then test acc <= T, the pools AND the bits. */
static void test_binary_paths_bit_identical(void **state)
{
    (void)state;
    REQUIRE_DATA();
    fm_model *m = train_conv("bc-det", 0, FM_ACTS_BINARY, "conv:16k3,pool2,32k3same,pool2,fc32",
                             &train_set, 1000);
    fm_deploy *d;
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 0, 0, 0, &d), FM_OK);
    fm_model_free(m);
    d->input_scale = 1.0f;
    memset(d->input_mean, 0, (size_t)d->input_dim * sizeof *d->input_mean);
    int negative = 0, zero = 0;
    for (int l = 0; l < d->n_layers; l++) {
        fm_deploy_layer *L = &d->layers[l];
        if (L->type != FM_DL_CONV)
            continue;
        for (int j = 0; j < L->out; j++) {
            if (j % 3 == 1) {
                L->scale[j] = -L->scale[j];
                negative++;
            }
            if (j % 11 == 5) {
                L->scale[j] = 0.0f;
                L->offset[j] = j % 2 ? 0.25f : -0.25f;
                zero++;
            }
        }
    }
    assert_true(negative > 5 && zero > 1);
    /* reloaded, so that the engine prepares the changed network afresh */
    char path[] = "/tmp/fewmul-conv-bits-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(fm_deploy_save(d, path), FM_OK);
    fm_deploy_free(d);
    assert_int_equal(fm_deploy_load(path, &d), FM_OK);
    remove(path);

    const int n = 500, dim = d->input_dim, classes = d->classes;
    float *pixels = malloc((size_t)n * dim * sizeof *pixels);
    float *ref = malloc((size_t)n * classes * sizeof *ref), *got = malloc((size_t)n * classes * sizeof *got);
    assert_true(pixels && ref && got);
    uint32_t r = 99;
    for (size_t i = 0; i < (size_t)n * dim; i++) {
        r = r * 1664525u + 1013904223u;
        pixels[i] = r >> 31 ? 1.0f : -1.0f;
    }
    uint8_t *cls = malloc((size_t)n);
    assert_int_equal(fm_deploy_set_kernels(d, "ref"), FM_OK);
    assert_int_equal(fm_deploy_predict_f32(d, pixels, n, 2, cls, ref), FM_OK);
    int spread = 0;
    for (int i = 1; i < n; i++)
        spread += cls[i] != cls[0];
    assert_true(spread > 0); /* not one class for every input */
    for (int v = 0; fm_kernels_name(v); v++) {
        assert_int_equal(fm_deploy_set_kernels(d, fm_kernels_name(v)), FM_OK);
        assert_int_equal(fm_deploy_predict_f32(d, pixels, n, 2, NULL, got), FM_OK);
        printf("  %-7s scores %s ref's\n", fm_kernels_name(v),
               memcmp(got, ref, (size_t)n * classes * sizeof *got) ? "differ from" : "equal");
        assert_memory_equal(got, ref, (size_t)n * classes * sizeof *got);
    }
    free(cls);
    free(pixels);
    free(ref);
    free(got);
    fm_deploy_free(d);
}

/* A convolutional model deploys with its own input shape only. */
static void test_conv_export_shape(void **state)
{
    (void)state;
    fm_config c;
    fm_config_default(&c);
    c.arch = "conv:4k3,pool2,gap";
    c.preproc = FM_PRE_UNIT;
    assert_int_equal(fm_parse_weights("bc", &c), FM_OK);
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, 6, 6, 2, 3, &m), FM_OK);
    fm_deploy *d = (fm_deploy *)1;
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 72, 1, 1, &d), FM_EINVAL);
    assert_null(d);
    assert_non_null(strstr(fm_last_error(), "reads 6 x 6 x 2 images"));
    assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 6, 6, 2, &d), FM_OK);
    assert_int_equal(fm_deploy_layers(d), 4); /* conv, pool, gap, dense */
    fm_deploy_layer_info info;
    assert_int_equal(fm_deploy_describe_layer(d, 0, &info), FM_OK);
    assert_string_equal(info.type, "conv");
    assert_true(info.in_h == 6 && info.in_c == 2 && info.out_h == 4 && info.out_c == 4);
    assert_true(info.kernel_h == 3 && info.stride == 1 && info.pad_top == 0);
    assert_int_equal(info.weight_count, 3 * 3 * 2 * 4);
    assert_int_equal(fm_deploy_describe_layer(d, 1, &info), FM_OK);
    assert_string_equal(info.type, "maxpool");
    assert_true(info.out_h == 2 && info.kernel_h == 2 && info.weight_count == 0);
    assert_int_equal(fm_deploy_describe_layer(d, 2, &info), FM_OK);
    assert_string_equal(info.type, "gap");
    assert_true(info.in == 16 && info.out == 4);
    assert_string_equal(fm_deploy_describe(d), "6x6x2-4k3-pool2-gap-3, binary weights, relu activations");
    fm_deploy_free(d);
    fm_model_free(m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_export_shape),
        cmocka_unit_test(test_cifar_folder_conv),
        cmocka_unit_test(test_binary_conv_matches_training),
        cmocka_unit_test(test_ternary_conv_matches_training),
        cmocka_unit_test(test_synapse_conv_matches_training),
        cmocka_unit_test(test_fully_binary_conv_matches_training),
        cmocka_unit_test(test_fp32_and_mean_conv),
        cmocka_unit_test(test_conv_file_round_trip),
        cmocka_unit_test(test_binary_paths_bit_identical),
    };
    return RUN_DATA_TESTS(argc, argv, tests, load_train_data, free_train_data);
}
