/* test_export_c.c — tests of the C export (fm_deploy_export_c,
 * src/deploy/export_c.c): networks built by hand with every record and
 * weight kind, activation and shape the generated code treats apart (group
 * lookups with partial groups, xor and popcount on runs of bits at any
 * alignment, padding on every side, strides, overlapping pools, pools of
 * signs with negative and zero batch-norm scales, global average pools,
 * binary inputs to ternary and synapse layers) are exported, compiled with
 * the build's C compiler (-Wall -Wextra -Wpedantic -Wconversion -Werror,
 * AddressSanitizer and UndefinedBehaviorSanitizer where the compiler has
 * them) and run on pseudo-random pixels and floats of many magnitudes: the
 * classes and the scores' bits must be fm_deploy_predict's, with the
 * reference kernels and with the default ones. Also the refusals, and that a
 * failed export (a full disk, any failed allocation) leaves existing files as
 * they were. Without a C compiler the tests that need one are skipped (exit
 * 77, never a pass). */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
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
#include "internal.h"

#define SUPPORT_NAME "export-c"
#include "support.h"
#include "deploy_nets.h"
#include "data_tests.h"

#ifndef FM_TEST_CC
#define FM_TEST_CC "cc"
#endif
#ifndef FM_TEST_SOURCE_DIR
#error "FM_TEST_SOURCE_DIR: the repository (tests/export/host.c)"
#endif

#define COUNT(a) ((int)(sizeof(a) / sizeof *(a)))
#define EXAMPLES 40

/* ---- compiling and running the generated code ---------------------------- */

/* The flags the generated code must build cleanly with; the sanitizers when
 * the compiler has them (found once). */
static const char *const strict = "-std=c99 -O1 -Wall -Wextra -Wpedantic -Wconversion -Wshadow "
                                  "-Wstrict-prototypes -Wmissing-prototypes -Werror";
static const char *sanitize;
static int compiler_found = -1;

static int run_command(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

/* Whether the C compiler works (and with the sanitizers or not). */
static int have_compiler(void)
{
    if (compiler_found >= 0)
        return compiler_found;
    const char *probe = tpath("probe.c");
    FILE *f = fopen(probe, "w");
    assert_non_null(f);
    fprintf(f, "int main(void) { return 0; }\n");
    fclose(f);
    compiler_found = run_command("%s %s -o %s 2>/dev/null", FM_TEST_CC, probe, tpath("probe")) == 0;
    sanitize = compiler_found && run_command("%s -fsanitize=address,undefined %s -o %s 2>/dev/null",
                                             FM_TEST_CC, probe, tpath("probe")) == 0
                   ? "-fsanitize=address,undefined -fno-sanitize-recover=all"
                   : "";
    if (compiler_found)
        printf("  compiling with %s %s\n", FM_TEST_CC, sanitize[0] ? sanitize : "(no sanitizers)");
    return compiler_found;
}

/* One line of the driver's output: the class and the scores' bits. */
static int parse_line(FILE *f, int classes, int *cls, uint32_t *bits)
{
    if (fscanf(f, "%d", cls) != 1)
        return 0;
    for (int k = 0; k < classes; k++) {
        unsigned v;
        if (fscanf(f, "%x", &v) != 1)
            return 0;
        bits[k] = v;
    }
    return 1;
}

static uint32_t bits_of(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

/* Runs the compiled driver on `n` inputs (u8 pixels, or floats) and checks
 * its classes and scores against the library's (exact: bit for bit, else
 * within 1e-4 relative). */
static void check_driver(const char *what, int f32, const void *inputs, int n, int dim, int classes,
                         const uint8_t *want_classes, const float *want_scores, int exact)
{
    const char *in = tpath("inputs.raw"), *out = tpath("out.txt");
    write_whole_file(in, inputs, (size_t)n * (size_t)dim * (f32 ? sizeof(float) : 1));
    assert_int_equal(run_command("%s %s %d %s--scores > %s", tpath("driver"), in, n, f32 ? "--f32 " : "",
                                 out), 0);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    uint32_t bits[256];
    int differ = 0;
    for (int i = 0; i < n; i++) {
        int cls = -1;
        assert_true(parse_line(f, classes, &cls, bits));
        for (int k = 0; k < classes; k++) {
            const float want = want_scores[(size_t)i * classes + k];
            float got;
            memcpy(&got, &bits[k], sizeof got);
            if (exact ? bits[k] != bits_of(want)
                      : !(fabsf(got - want) <= 1e-4f * (1.0f + fabsf(want))))
                differ++;
        }
        if (exact || differ == 0)
            differ += cls != want_classes[i];
    }
    fclose(f);
    printf("  %-44s %s: %d of %d inputs, %d differences\n", what, f32 ? "f32" : "u8 ", n, n, differ);
    assert_int_equal(differ, 0);
}

/* Pseudo-random pixels, and floats of many magnitudes and signs (signed
 * zeros, subnormals, fractions, values up to 1e6). */
static void make_inputs(int dim, uint32_t seed, uint8_t *u8, float *f32)
{
    rng_state = seed;
    for (int i = 0; i < EXAMPLES * dim; i++)
        u8[i] = (uint8_t)(next_random() >> 4);
    for (int i = 0; i < EXAMPLES * dim; i++) {
        const uint32_t r = next_random();
        switch (r % 8) {
        case 0: f32[i] = r & 256 ? -0.0f : 0.0f; break;
        case 1: f32[i] = (r & 256 ? -1.0f : 1.0f) * 1e-40f * (float)(r % 97); break;
        case 2: f32[i] = ((float)(r % 200001) - 100000.0f) * 10.0f; break;
        default: f32[i] = ((float)(r % 65536) - 20000.0f) / 97.0f; break;
        }
    }
}

/* Exports d, compiles it with the driver and checks both entry points
 * against fm_deploy_predict with the reference kernels and the default. */
static void check_export(fm_deploy *d, const char *what, int exact)
{
    if (!have_compiler()) {
        SKIP_NO_DATA("no working C compiler (%s) to build the exported code", FM_TEST_CC);
        return;
    }
    const char *dir = tpath("gen");
    fm_export_c_info info;
    assert_int_equal(fm_deploy_export_c(d, dir, "net", &info), FM_OK);
    assert_int_equal(info.exact, exact);
    assert_true(info.scratch_bytes > 0 && info.scratch_bytes % 4 == 0);
    assert_int_equal(run_command("%s %s %s -I%s -DMODEL_H='\"net.h\"' -DMODEL=net -DMODEL_UPPER=NET "
                                 "%s/tests/export/host.c %s/net.c -o %s",
                                 FM_TEST_CC, strict, sanitize, dir, FM_TEST_SOURCE_DIR, dir, tpath("driver")),
                     0);
    const int dim = fm_deploy_input_shape(d, NULL, NULL, NULL), classes = fm_deploy_classes(d);
    uint8_t *u8 = malloc((size_t)EXAMPLES * dim), *want = malloc(EXAMPLES);
    float *f32 = malloc((size_t)EXAMPLES * dim * sizeof *f32);
    float *scores = malloc((size_t)EXAMPLES * classes * sizeof *scores);
    assert_true(u8 && want && f32 && scores);
    make_inputs(dim, 77, u8, f32);
    const char *variants[] = {"ref", NULL};
    for (int v = 0; v < COUNT(variants); v++) {
        assert_int_equal(fm_deploy_set_kernels(d, variants[v]), FM_OK);
        assert_int_equal(fm_deploy_predict(d, u8, EXAMPLES, 1, want, scores), FM_OK);
        check_driver(what, 0, u8, EXAMPLES, dim, classes, want, scores, exact);
        assert_int_equal(fm_deploy_predict_f32(d, f32, EXAMPLES, 1, want, scores), FM_OK);
        check_driver(what, 1, f32, EXAMPLES, dim, classes, want, scores, exact);
    }
    free(u8);
    free(want);
    free(f32);
    free(scores);
}

/* ---- networks ---------------------------------------------------------------- */

/* Batch-norm scales of every sign: some negative (z falls with the sum: a
 * pool of signs ANDs), some zero (all or nothing), offsets of both signs. */
static void vary_scales(fm_deploy *d)
{
    for (int l = 0; l < d->n_layers; l++) {
        fm_deploy_layer *L = &d->layers[l];
        if (!fmi_deploy_weighted(L))
            continue;
        for (int j = 0; j < L->out; j++) {
            if (j % 3 == 1)
                L->scale[j] = -L->scale[j];
            if (j % 7 == 5)
                L->scale[j] = 0.0f;
            if (j % 4 == 2)
                L->offset[j] = -L->offset[j] - 0.125f;
        }
    }
}

static fm_deploy *finished(fm_deploy *d)
{
    vary_scales(d);
    assert_int_equal(fmi_deploy_validate(d, "test"), FM_OK);
    assert_int_equal(fmi_deploy_finish(d), FM_OK);
    return d;
}

static void test_dense_nets(void **state)
{
    (void)state;
    static const layer_spec xnor[] = {{37, FM_DW_BINARY, 0, FM_ACT_SIGN},
                                      {70, FM_DW_BINARY, 0, FM_ACT_SIGN},
                                      {33, FM_DW_BINARY, 0, FM_ACT_SIGN},
                                      {10, FM_DW_BINARY, 0, FM_ACT_NONE}};
    static const layer_spec relu[] = {{64, FM_DW_BINARY, 0, FM_ACT_RELU},
                                      {19, FM_DW_BINARY, 0, FM_ACT_RELU},
                                      {7, FM_DW_BINARY, 0, FM_ACT_NONE}};
    static const layer_spec ternary[] = {{21, FM_DW_TERNARY, 0, FM_ACT_RELU},
                                         {30, FM_DW_TERNARY, 0, FM_ACT_SIGN},
                                         {9, FM_DW_TERNARY, 0, FM_ACT_NONE}};
    static const layer_spec synapse[] = {{17, FM_DW_SYNAPSE, 26, FM_ACT_RELU},
                                         {12, FM_DW_SYNAPSE, 16, FM_ACT_SIGN},
                                         {6, FM_DW_SYNAPSE, 32, FM_ACT_SIGN},
                                         {5, FM_DW_BINARY, 0, FM_ACT_NONE}};
    static const layer_spec one[] = {{3, FM_DW_BINARY, 0, FM_ACT_NONE}};
    const struct {
        const char *what;
        const layer_spec *specs;
        int n, h, w, c;
    } nets[] = {
        {"dense binary, signs (xnor, odd widths)", xnor, COUNT(xnor), 5, 7, 1},
        {"dense binary, relu (group lookups)", relu, COUNT(relu), 6, 5, 2},
        {"dense ternary, relu and sign", ternary, COUNT(ternary), 3, 11, 1},
        {"dense synapse 26, 16, 32 levels", synapse, COUNT(synapse), 1, 1, 29},
        {"one dense layer", one, COUNT(one), 2, 2, 1},
    };
    for (int i = 0; i < COUNT(nets); i++) {
        fm_deploy *d = finished(make_net(nets[i].h, nets[i].w, nets[i].c, nets[i].specs, nets[i].n,
                                         (uint32_t)(100 + i)));
        check_export(d, nets[i].what, 1);
        fm_deploy_free(d);
    }
}

/* Convolutional networks: each exercises what the generated code does apart. */
static fm_deploy *conv_net_of(int which)
{
    fm_deploy *d;
    int h, w, c, k = 0;
    switch (which) {
    case 0: /* padded binary sign conv, its pool, xnor relu conv, gap, ternary dense */
        d = start_net(7, 6, 2, 5, 3, 11);
        h = 7, w = 6, c = 2;
        add_conv(d, k++, &h, &w, &c, 5, 3, 3, 1, 1, 1, 7, 6, FM_DW_BINARY, 0, FM_ACT_SIGN, 0);
        add_pool(d, k++, &h, &w, c, 2, 2);
        add_conv(d, k++, &h, &w, &c, 4, 2, 2, 1, 0, 0, 2, 2, FM_DW_BINARY, 0, FM_ACT_RELU, 1);
        add_pool(d, k++, &h, &w, c, 0, 0);
        add_dense(d, k++, c, 3, FM_DW_TERNARY, 0, FM_ACT_NONE, 0);
        return d;
    case 1: /* xnor with stride 2 and padding, 37 channels (a map's bits across words),
             * an overlapping pool of signs, dense xnor on the flattened bits */
        d = start_net(9, 8, 3, 5, 4, 12);
        h = 9, w = 8, c = 3;
        add_conv(d, k++, &h, &w, &c, 6, 3, 3, 1, 1, 1, 9, 8, FM_DW_BINARY, 0, FM_ACT_SIGN, 0);
        add_conv(d, k++, &h, &w, &c, 37, 3, 3, 2, 0, 1, 4, 4, FM_DW_BINARY, 0, FM_ACT_SIGN, 1);
        add_pool(d, k++, &h, &w, c, 3, 1);
        add_dense(d, k++, h * w * c, 45, FM_DW_BINARY, 0, FM_ACT_SIGN, 1);
        add_dense(d, k++, 45, 4, FM_DW_BINARY, 0, FM_ACT_NONE, 1);
        return d;
    case 2: /* ternary on 5 channels (partial groups), 2x3 kernel, relu and an
             * overlapping pool of sums, ternary sign, gap of signs, synapse dense */
        d = start_net(8, 9, 5, 5, 6, 13);
        h = 8, w = 9, c = 5;
        add_conv(d, k++, &h, &w, &c, 7, 2, 3, 1, 1, 2, 8, 9, FM_DW_TERNARY, 0, FM_ACT_RELU, 0);
        add_pool(d, k++, &h, &w, c, 2, 1);
        add_conv(d, k++, &h, &w, &c, 9, 3, 3, 2, 0, 0, 3, 4, FM_DW_TERNARY, 0, FM_ACT_SIGN, 0);
        add_pool(d, k++, &h, &w, c, 0, 0);
        add_dense(d, k++, c, 6, FM_DW_SYNAPSE, 26, FM_ACT_NONE, 0);
        return d;
    case 3: /* synapse convolution with stride and padding, then synapse on
             * binary input, a pool of signs, binary dense */
        d = start_net(7, 6, 2, 4, 3, 14);
        h = 7, w = 6, c = 2;
        add_conv(d, k++, &h, &w, &c, 5, 3, 2, 2, 1, 0, 4, 3, FM_DW_SYNAPSE, 16, FM_ACT_SIGN, 0);
        add_conv(d, k++, &h, &w, &c, 8, 2, 2, 1, 1, 1, 4, 3, FM_DW_SYNAPSE, 26, FM_ACT_SIGN, 1);
        add_pool(d, k++, &h, &w, c, 2, 1);
        add_dense(d, k++, h * w * c, 3, FM_DW_BINARY, 0, FM_ACT_NONE, 1);
        return d;
    case 4: /* 70 channels (pixels of more than 64 bits), a map smaller than
             * the kernel, 1x1 kernels with stride 3, an xnor relu conv pooled */
        d = start_net(5, 5, 3, 5, 5, 15);
        h = 5, w = 5, c = 3;
        add_conv(d, k++, &h, &w, &c, 70, 1, 1, 3, 0, 0, 2, 2, FM_DW_BINARY, 0, FM_ACT_SIGN, 0);
        add_conv(d, k++, &h, &w, &c, 33, 3, 3, 1, 1, 1, 2, 2, FM_DW_BINARY, 0, FM_ACT_SIGN, 1);
        add_conv(d, k++, &h, &w, &c, 11, 2, 2, 1, 1, 1, 3, 3, FM_DW_BINARY, 0, FM_ACT_RELU, 1);
        add_pool(d, k++, &h, &w, c, 3, 3);
        add_dense(d, k++, h * w * c, 5, FM_DW_BINARY, 0, FM_ACT_NONE, 0);
        return d;
    default: /* the first layer of MNIST nets: 1 channel, valid 3x3, pool 2 */
        d = start_net(12, 12, 1, 5, 10, 16);
        h = 12, w = 12, c = 1;
        add_conv(d, k++, &h, &w, &c, 16, 3, 3, 1, 0, 0, 10, 10, FM_DW_BINARY, 0, FM_ACT_SIGN, 0);
        add_pool(d, k++, &h, &w, c, 2, 2);
        add_conv(d, k++, &h, &w, &c, 32, 3, 3, 1, 1, 1, 5, 5, FM_DW_BINARY, 0, FM_ACT_SIGN, 1);
        add_pool(d, k++, &h, &w, c, 2, 2);
        add_dense(d, k++, h * w * c, 10, FM_DW_BINARY, 0, FM_ACT_NONE, 1);
        return d;
    }
}

static void test_conv_nets(void **state)
{
    (void)state;
    static const char *const what[] = {
        "conv sign, pool, xnor relu, gap, ternary",   "conv xnor stride 2, 37 channels, pool 3/1",
        "conv ternary 5 channels, relu pool, gap",    "conv synapse, strides, pool of signs",
        "conv 70 channels, 1x1 stride 3, xnor relu", "conv 1 channel, pools (MNIST's first layer)"};
    for (int i = 0; i < COUNT(what); i++) {
        fm_deploy *d = finished(conv_net_of(i));
        check_export(d, what[i], 1);
        fm_deploy_free(d);
    }
}

/* fp32 weights: fewmul multiplies them through BLAS, in its own order; the
 * export says it is not exact, and its scores are close. */
static void test_fp32_close(void **state)
{
    (void)state;
    static const layer_spec mixed[] = {{24, FM_DW_FP32, 0, FM_ACT_RELU},
                                       {11, FM_DW_BINARY, 0, FM_ACT_SIGN},
                                       {4, FM_DW_FP32, 0, FM_ACT_NONE}};
    fm_deploy *d = finished(make_net(4, 4, 2, mixed, COUNT(mixed), 21));
    check_export(d, "dense fp32, binary sign, fp32", 0);
    fm_deploy_free(d);
}

/* ---- refusals and failures ------------------------------------------------------ */

static fm_deploy *small_net(void)
{
    static const layer_spec specs[] = {{9, FM_DW_BINARY, 0, FM_ACT_SIGN},
                                       {3, FM_DW_BINARY, 0, FM_ACT_NONE}};
    return finished(make_net(3, 3, 1, specs, COUNT(specs), 5));
}

static void expect_refusal(const fm_deploy *d, const char *dir, const char *name, int code,
                           const char *message)
{
    assert_int_equal(fm_deploy_export_c(d, dir, name, NULL), code);
    if (!strstr(fm_last_error(), message))
        fail_msg("message '%s' lacks '%s'", fm_last_error(), message);
}

static void test_refusals(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    expect_refusal(NULL, tpath("r"), "net", FM_EINVAL, "NULL");
    expect_refusal(d, NULL, "net", FM_EINVAL, "NULL");
    expect_refusal(d, "", "net", FM_EINVAL, "empty");
    static const char *const bad[] = {"", "1net", "_net", "net-1", "net.c", "n et",
                                      "a2345678901234567890123456789012345678901234567890123456789012345"};
    for (int i = 0; i < COUNT(bad); i++)
        expect_refusal(d, tpath("r"), bad[i], FM_EINVAL, "not a C identifier");
    /* the folder: a file, or under a missing folder */
    write_whole_file(tpath("plain"), "x", 1);
    expect_refusal(d, tpath("plain"), "net", FM_EIO, "not a folder");
    expect_refusal(d, tpath("missing/deeper"), "net", FM_ENOENT, "cannot create the folder");
    /* a header that is a folder: refused before either file is written */
    assert_int_equal(mkdir(tpath("r"), 0777), 0);
    assert_int_equal(mkdir(tpath("r/net.h"), 0777), 0);
    expect_refusal(d, tpath("r"), "net", FM_EIO, "not a regular file");
    struct stat st;
    assert_int_not_equal(stat(tpath("r/net.c"), &st), 0);
    /* the longest name, and a folder named with a final slash */
    char longest[65];
    memset(longest, 'a', 64);
    longest[64] = '\0';
    assert_int_equal(fm_deploy_export_c(d, tpath("r/"), longest, NULL), FM_OK);
    fm_deploy_free(d);
}

/* What is in DIR/net.h and DIR/net.c, for comparing before and after. */
static uint8_t *files_of(const char *dir, size_t *n)
{
    char h[600], c[600];
    snprintf(h, sizeof h, "%s/net.h", dir);
    snprintf(c, sizeof c, "%s/net.c", dir);
    size_t nh, nc;
    uint8_t *a = read_whole_file(h, &nh), *b = read_whole_file(c, &nc);
    uint8_t *all = malloc(nh + nc + 1);
    assert_non_null(all);
    memcpy(all, a, nh);
    memcpy(all + nh, b, nc);
    free(a);
    free(b);
    *n = nh + nc;
    return all;
}

/* The earlier export (d) and the one that fails (e), into dir. */
typedef struct keep_job {
    fm_deploy *d, *e;
    const char *dir;
} keep_job;
static int keep_attempt(void *user)
{
    const keep_job *j = user;
    return fm_deploy_export_c(j->e, j->dir, "net", NULL);
}
static void keep_restore(void *user)
{
    const keep_job *j = user;
    assert_int_equal(fm_deploy_export_c(j->d, j->dir, "net", NULL), FM_OK);
}
static uint8_t *keep_snapshot(void *user, size_t *n) { return files_of(((keep_job *)user)->dir, n); }

/* A failed export (a full disk at every size, any failed allocation) leaves
 * the files of an earlier export as they were, byte for byte. */
static void test_failures_keep_files(void **state)
{
    (void)state;
    static const layer_spec other[] = {{5, FM_DW_TERNARY, 0, FM_ACT_NONE}};
    keep_job job = {small_net(), finished(make_net(3, 3, 1, other, 1, 6)), tpath("keep")};
    const keep_check check = {keep_attempt, keep_restore, keep_snapshot, &job};
    int disk, alloc;
    failures_keep(&check, &disk, &alloc);
    assert_true(disk >= 5);
    fm_deploy_free(job.d);
    fm_deploy_free(job.e);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        T(test_dense_nets),
        T(test_conv_nets),
        T(test_fp32_close),
        T(test_refusals),
        T(test_failures_keep_files),
    };
    return RUN_DATA_TESTS(argc, argv, tests, group_setup, group_teardown);
}
