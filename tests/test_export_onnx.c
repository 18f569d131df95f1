/* test_export_onnx.c — tests of the ONNX export (fm_deploy_export_onnx,
 * src/deploy/export_onnx.c) on networks built by hand: a network of every
 * record kind (a padded binary convolution with a sign and a max-pool, a
 * ternary one with a stride and uneven padding on binary input, global
 * average pooling, a synapse dense layer) and dense chains of every weight
 * kind are written in both dialects, with the operators each dialect uses
 * and the sizes the call reports; the refusals (arguments, an output that is
 * a folder, a convolution whose output size no ONNX padding gives); and that
 * a failed export (a full disk at every size, any failed allocation) leaves
 * an existing file as it was and frees all it took. What the graphs compute
 * is checked in onnxruntime and by onnx.checker on trained networks
 * (tests/cli_onnx.sh). A build without protobuf-c must refuse every export
 * (FM_EUNSUPPORTED); the other tests are then skipped. */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "deploy.h"
#include "fewmul.h"
#include "internal.h"

#define SUPPORT_NAME "export_onnx"
#include "support.h"
#include "deploy_nets.h"
#include "data_tests.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof *(a)))

/* Does the file hold these bytes (an operator's or a domain's name)? */
static int holds(const uint8_t *data, size_t n, const char *text)
{
    size_t m = strlen(text);
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(data + i, text, m) == 0)
            return 1;
    return 0;
}

/* 8x8x2: conv 3k3 pad 1 binary sign, pool 2/2 (4x4x3), conv 4 filters 2x3
 * stride 2 padding top 1 ternary relu on binary input (2x1x4), gap, dense
 * synapse 4 -> 3. */
static fm_deploy *every_record(void)
{
    fm_deploy *d = start_net(8, 8, 2, 5, 3, 11);
    int h = 8, w = 8, c = 2;
    add_conv(d, 0, &h, &w, &c, 3, 3, 3, 1, 1, 1, 8, 8, FM_DW_BINARY, 0, FM_ACT_SIGN, 0);
    add_pool(d, 1, &h, &w, c, 2, 2);
    add_conv(d, 2, &h, &w, &c, 4, 2, 3, 2, 1, 0, 2, 1, FM_DW_TERNARY, 0, FM_ACT_RELU, 1);
    add_pool(d, 3, &h, &w, c, 0, 0);
    add_dense(d, 4, c, 3, FM_DW_SYNAPSE, 5, FM_ACT_NONE, 0);
    assert_int_equal(fmi_deploy_validate(d, "test"), FM_OK);
    return d;
}

static int64_t weights_of(const fm_deploy *d)
{
    int64_t n = 0;
    for (int l = 0; l < d->n_layers; l++)
        if (fmi_deploy_weighted(&d->layers[l]))
            n += (int64_t)d->layers[l].in * d->layers[l].out;
    return n;
}

/* Exports d in the dialect and returns the file's bytes (n), checking what
 * the call reports against them. */
static uint8_t *export_bytes(const fm_deploy *d, fm_onnx_dialect dialect, const char *name, size_t *n)
{
    fm_export_onnx_info info;
    int rc = fm_deploy_export_onnx(d, tpath(name), dialect, &info);
    if (rc != FM_OK)
        fail_msg("%s: %s", name, fm_last_error());
    uint8_t *data = read_whole_file(tpath(name), n);
    assert_int_equal(info.file_bytes, *n);
    assert_int_equal(info.weights, weights_of(d));
    assert_true(info.nodes > 0);
    return data;
}

static void test_unavailable(void **state)
{
    (void)state;
    if (fm_onnx_available())
        skip();
    fm_deploy *d = every_record();
    assert_int_equal(fm_deploy_export_onnx(d, tpath("none.onnx"), FM_ONNX_PLAIN, NULL), FM_EUNSUPPORTED);
    assert_non_null(strstr(fm_last_error(), "without ONNX support"));
    struct stat st;
    assert_int_not_equal(stat(tpath("none.onnx"), &st), 0);
    fm_deploy_free(d);
}

static void test_every_record(void **state)
{
    (void)state;
    if (!fm_onnx_available())
        skip();
    fm_deploy *d = every_record();
    size_t n, q;
    uint8_t *plain = export_bytes(d, FM_ONNX_PLAIN, "every.onnx", &n);
    uint8_t *qonnx = export_bytes(d, FM_ONNX_QONNX, "every_q.onnx", &q);
    static const char *const both[] = {"pixels", "scores", "Conv", "MaxPool", "GlobalAveragePool",
                                       "MatMul", "Transpose", "Flatten", "Relu", "fewmul"};
    for (int i = 0; i < COUNT(both); i++) {
        if (!holds(plain, n, both[i]) || !holds(qonnx, q, both[i]))
            fail_msg("no %s in a graph", both[i]);
    }
    assert_true(holds(plain, n, "GreaterOrEqual") && holds(plain, n, "Where"));
    assert_false(holds(plain, n, "qonnx.custom_op.general") || holds(plain, n, "Quant"));
    assert_true(holds(qonnx, q, "qonnx.custom_op.general") && holds(qonnx, q, "BipolarQuant") &&
                holds(qonnx, q, "IntQuant"));
    assert_false(holds(qonnx, q, "GreaterOrEqual") || holds(qonnx, q, "Where"));
    free(plain);
    free(qonnx);
    fm_deploy_free(d);
}

static void test_dense_kinds(void **state)
{
    (void)state;
    if (!fm_onnx_available())
        skip();
    static const layer_spec specs[] = {{7, FM_DW_FP32, 0, FM_ACT_RELU},
                                       {6, FM_DW_BINARY, 0, FM_ACT_SIGN},
                                       {5, FM_DW_TERNARY, 0, FM_ACT_SIGN},
                                       {4, FM_DW_SYNAPSE, 26, FM_ACT_RELU},
                                       {3, FM_DW_BINARY, 0, FM_ACT_NONE}};
    fm_deploy *d = make_net(3, 4, 1, specs, COUNT(specs), 9);
    size_t n, q;
    uint8_t *plain = export_bytes(d, FM_ONNX_PLAIN, "dense.onnx", &n);
    uint8_t *qonnx = export_bytes(d, FM_ONNX_QONNX, "dense_q.onnx", &q);
    assert_false(holds(plain, n, "Conv") || holds(plain, n, "Quant"));
    assert_true(holds(qonnx, q, "BipolarQuant") && holds(qonnx, q, "IntQuant"));
    free(plain);
    free(qonnx);
    fm_deploy_free(d);
}

static void expect_refusal(const fm_deploy *d, const char *path, fm_onnx_dialect dialect, int code,
                           const char *message)
{
    assert_int_equal(fm_deploy_export_onnx(d, path, dialect, NULL), code);
    if (!strstr(fm_last_error(), message))
        fail_msg("message '%s' lacks '%s'", fm_last_error(), message);
}

static void test_refusals(void **state)
{
    (void)state;
    if (!fm_onnx_available())
        skip();
    fm_deploy *d = every_record();
    expect_refusal(NULL, tpath("r.onnx"), FM_ONNX_PLAIN, FM_EINVAL, "NULL");
    expect_refusal(d, NULL, FM_ONNX_PLAIN, FM_EINVAL, "NULL");
    expect_refusal(d, tpath("r.onnx"), (fm_onnx_dialect)7, FM_EINVAL, "unknown dialect 7");
    assert_int_equal(mkdir(tpath("folder.onnx"), 0777), 0);
    expect_refusal(d, tpath("folder.onnx"), FM_ONNX_PLAIN, FM_EIO, "not a regular file");
    fm_deploy_free(d);
    /* 5x5, kernel 3, output 2x2: the format allows dropping the last window
     * row and column, ONNX's padding cannot say it */
    fm_deploy *e = start_net(5, 5, 1, 2, 2, 3);
    int h = 5, w = 5, c = 1;
    add_conv(e, 0, &h, &w, &c, 2, 3, 3, 1, 0, 0, 2, 2, FM_DW_BINARY, 0, FM_ACT_RELU, 0);
    add_dense(e, 1, 8, 2, FM_DW_BINARY, 0, FM_ACT_NONE, 0);
    assert_int_equal(fmi_deploy_validate(e, "test"), FM_OK);
    expect_refusal(e, tpath("crop.onnx"), FM_ONNX_PLAIN, FM_EUNSUPPORTED, "has no ONNX padding");
    struct stat st;
    assert_int_not_equal(stat(tpath("crop.onnx"), &st), 0);
    fm_deploy_free(e);
}

/* The earlier export (d, plain) and the one that fails (e, QONNX), at path. */
typedef struct keep_job {
    fm_deploy *d, *e;
    const char *path;
} keep_job;
static int keep_attempt(void *user)
{
    const keep_job *j = user;
    return fm_deploy_export_onnx(j->e, j->path, FM_ONNX_QONNX, NULL);
}
static void keep_restore(void *user)
{
    const keep_job *j = user;
    assert_int_equal(fm_deploy_export_onnx(j->d, j->path, FM_ONNX_PLAIN, NULL), FM_OK);
}
static uint8_t *keep_snapshot(void *user, size_t *n) { return read_whole_file(((keep_job *)user)->path, n); }

/* A failed export (a full disk at every size, any failed allocation) leaves
 * the file of an earlier export as it was, byte for byte. */
static void test_failures_keep_file(void **state)
{
    (void)state;
    if (!fm_onnx_available())
        skip();
    static const layer_spec small[] = {{5, FM_DW_TERNARY, 0, FM_ACT_NONE}};
    keep_job job = {make_net(3, 3, 1, small, 1, 6), every_record(), tpath("keep.onnx")};
    const keep_check check = {keep_attempt, keep_restore, keep_snapshot, &job};
    int disk, alloc;
    failures_keep(&check, &disk, &alloc);
    assert_true(disk >= 3);
    assert_true(alloc > 50);
    fm_deploy_free(job.d);
    fm_deploy_free(job.e);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        T(test_unavailable),   T(test_every_record),       T(test_dense_kinds),
        T(test_refusals),      T(test_failures_keep_file),
    };
    return RUN_DATA_TESTS(argc, argv, tests, group_setup, group_teardown);
}
