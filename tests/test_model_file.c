/* test_model_file.c — the training model file (docs/model-format.md) against
 * damage behind its checksum: a state count that is not the architecture's, an
 * architecture that does not fit the input shape, one that asks for more state
 * than the file holds, an input size beyond the file, every truncation, a
 * large file's head read before the rest, a sparse file. Each is
 * refused with its code and a message naming the file, allocates nothing
 * sized by the damage, and leaks nothing. The first two came from fuzz_model
 * (a use after free, and an error that did not name the file). */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define SUPPORT_NAME "model-file"
#include "support.h"

#include "bytes.h"
#include "fewmul.h"

/* The bytes of a saved model of `arch` for h x w x 1 images, malloc'ed. */
static uint8_t *saved_model(const char *arch, int h, int w, size_t *len)
{
    fm_config c;
    fm_config_default(&c);
    c.arch = arch;
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, h, w, 1, 4, &m), FM_OK);
    const char *path = tpath("saved.fm");
    assert_int_equal(fm_model_save(m, path), FM_OK);
    fm_model_free(m);
    return read_whole_file(path, len);
}

static uint32_t get32(const uint8_t *p) { return fmi_load_le32(p); }

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void fix_crc(uint8_t *data, size_t len) { put32(data + len - 4, fmi_crc32(data, len - 4)); }

/* Loads bytes as a model file; returns the code, checks the failure's form. */
static int load(const uint8_t *data, size_t len, const char *name)
{
    const char *path = tpath(name);
    write_whole_file(path, data, len);
    fm_model *m = (fm_model *)(uintptr_t)1;
    memset(&track, 0, sizeof track);
    int rc = fm_model_load(path, &m);
    if (rc == FM_OK) {
        fm_model_free(m);
    } else {
        assert_null(m);
        assert_non_null(strstr(fm_last_error(), name)); /* the message names the file */
        assert_true(track.largest < 1u << 20);           /* nothing sized by the damage */
    }
    return rc;
}

static int load_path(const char *path)
{
    fm_model *m = NULL;
    int rc = fm_model_load(path, &m);
    fm_model_free(m);
    return rc;
}

/* Offsets in a version-3 file: the input size, the shape, the architecture. */
enum { AT_INPUTS = 12, AT_HEIGHT = 104, AT_WIDTH = 108, AT_ARCH_LEN = 124, AT_ARCH = 128 };

static void test_state_count_not_the_architectures(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = saved_model("mlp:8", 8, 8, &len);
    assert_int_equal(load(data, len, "good.fm"), FM_OK);
    const size_t at_count = AT_ARCH + get32(data + AT_ARCH_LEN) + 4 * 64;
    for (int delta = -1; delta <= 1; delta += 2) {
        put32(data + at_count, get32(data + at_count) + (uint32_t)delta);
        fix_crc(data, len);
        assert_int_equal(load(data, len, "count.fm"), FM_EFORMAT);
        assert_non_null(strstr(fm_last_error(), "the architecture needs"));
        put32(data + at_count, get32(data + at_count) - (uint32_t)delta);
    }
    free(data);
}

/* The input mean behind a valid CRC: a value that is not finite is refused,
 * naming it. */
static void test_input_mean_finite(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = saved_model("mlp:8", 8, 8, &len);
    const size_t at_mean = AT_ARCH + get32(data + AT_ARCH_LEN);
    put32(data + at_mean + 4 * 3, 0x7fc00000u); /* a NaN */
    fix_crc(data, len);
    assert_int_equal(load(data, len, "mean.fm"), FM_EFORMAT);
    assert_non_null(strstr(fm_last_error(), "input mean value 3 is nan"));
    free(data);
}

static void test_architecture_misfits_the_shape(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = saved_model("conv:2k3,pool2,fc4", 8, 8, &len);
    /* a 2x32 image: the 3x3 kernel no longer fits (same input size) */
    put32(data + AT_HEIGHT, 2);
    put32(data + AT_WIDTH, 32);
    fix_crc(data, len);
    assert_int_equal(load(data, len, "misfit.fm"), FM_EFORMAT);
    assert_non_null(strstr(fm_last_error(), "larger than"));
    free(data);
}

/* The architecture string rewritten to one that asks for billions of values. */
static void test_architecture_larger_than_the_file(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = saved_model("mlp:8", 8, 8, &len);
    const char *huge = "mlp:65536,65536,65536";
    const uint32_t old_len = get32(data + AT_ARCH_LEN), new_len = (uint32_t)strlen(huge);
    size_t n = len - old_len + new_len;
    uint8_t *bad = malloc(n);
    memcpy(bad, data, AT_ARCH_LEN);
    put32(bad + AT_ARCH_LEN, new_len);
    memcpy(bad + AT_ARCH, huge, new_len);
    memcpy(bad + AT_ARCH + new_len, data + AT_ARCH + old_len, len - AT_ARCH - old_len);
    fix_crc(bad, n);
    assert_int_equal(load(bad, n, "huge-arch.fm"), FM_ETRUNC);
    assert_non_null(strstr(fm_last_error(), "state values"));
    /* an input size of 2^24 values over a few hundred bytes */
    memcpy(bad, data, len);
    put32(bad + AT_INPUTS, 1u << 24);
    put32(bad + AT_HEIGHT, 1u << 24);
    put32(bad + AT_WIDTH, 1);
    fix_crc(bad, len);
    assert_int_equal(load(bad, len, "huge-input.fm"), FM_ETRUNC);
    free(bad);
    free(data);
}

/* Every cut, read whole first and (fmi_read_whole_max 0) from its head first. */
static void test_every_truncation(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = saved_model("mlp:4", 4, 4, &len);
    const size_t whole = fmi_read_whole_max;
    for (int pass = 0; pass < 2; pass++, fmi_read_whole_max = 0)
        for (size_t n = 0; n < len; n++) {
            int rc = load(data, n, "cut.fm");
            if (rc != FM_ETRUNC && rc != FM_EFORMAT)
                fail_msg("cut to %zu of %zu bytes: %d (%s)", n, len, rc, fm_last_error());
        }
    fmi_read_whole_max = whole;
    free(data);
}

/* A model file larger than what is read whole at once has its head checked
 * first, against the file's size: with every file put through that check,
 * good files (dense, convolutional, with a whitening matrix) still load and a
 * padded one is refused (cut ones: test_every_truncation); a 3 GiB sparse
 * file behind a good model, or behind its magic alone, is refused before
 * anything its size is allocated or read. */
static void test_head_checked_before_reading(void **state)
{
    (void)state;
    const size_t whole = fmi_read_whole_max;
    fmi_read_whole_max = 0;
    size_t len;
    uint8_t *conv = saved_model("conv:2k3,pool2,fc4", 8, 8, &len);
    assert_int_equal(load(conv, len, "conv.fm"), FM_OK);
    free(conv);
    fm_config c;
    fm_config_default(&c);
    c.arch = "mlp:4";
    c.preproc = FM_PRE_GCN_ZCA;
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, 4, 4, 1, 4, &m), FM_OK);
    assert_int_equal(fm_model_save(m, tpath("zca.fm")), FM_OK);
    fm_model_free(m);
    uint8_t *zca = read_whole_file(tpath("zca.fm"), &len);
    assert_int_equal(load(zca, len, "zca.fm"), FM_OK);
    free(zca);
    uint8_t *data = saved_model("mlp:4", 4, 4, &len);
    assert_int_equal(load(data, len, "good.fm"), FM_OK);
    uint8_t *longer = calloc(len + 5, 1);
    memcpy(longer, data, len);
    assert_int_equal(load(longer, len + 5, "long.fm"), FM_EFORMAT);
    assert_non_null(strstr(fm_last_error(), "5 unexpected bytes after the parameters"));
    free(longer);
    fmi_read_whole_max = whole;

    const off_t hole = (off_t)3 << 30;
    expect_sparse_refused(load_path, "sparse.fm", data, len, (off_t)len + hole, FM_EFORMAT,
                          "3221225472 unexpected bytes after the parameters");
    expect_sparse_refused(load_path, "magic.fm", "FMULMODL", 8, hole, FM_EUNSUPPORTED,
                          "model file version 0");
    free(data);
}

/* A dense state keeps the image shape it was made for: loaded back, it
 * evaluates 8x8 images and refuses 4x16 ones of as many values; a model made
 * for a flat input of 64 values (as files of before version 3 load) takes
 * both. */
static void test_dense_state_keeps_its_shape(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = saved_model("mlp:4", 8, 8, &len);
    write_whole_file(tpath("shape.fm"), data, len);
    free(data);
    fm_model *m;
    assert_int_equal(fm_model_load(tpath("shape.fm"), &m), FM_OK);
    int h, w, c;
    assert_int_equal(fm_model_input_shape(m, &h, &w, &c), 64);
    assert_int_equal(h * 100 + w * 10 + c, 881);
    static uint8_t pixels[4 * 64], labels[4] = {0, 1, 2, 3};
    fm_images square = {4, 8, 8, 1, pixels, labels}, wide = {4, 4, 16, 1, pixels, labels};
    double err;
    assert_int_equal(fm_model_evaluate(m, &square, 1, &err), FM_OK);
    assert_int_equal(fm_model_evaluate(m, &wide, 1, &err), FM_EMISMATCH);
    assert_non_null(strstr(fm_last_error(), "images are 4x16x1, the dense model expects 8x8x1"));
    fm_model_free(m);
    fm_config cfg;
    fm_config_default(&cfg);
    cfg.arch = "mlp:4";
    assert_int_equal(fm_model_create(&cfg, 64, 4, &m), FM_OK);
    assert_int_equal(fm_model_evaluate(m, &square, 1, &err), FM_OK);
    assert_int_equal(fm_model_evaluate(m, &wide, 1, &err), FM_OK);
    fm_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_state_count_not_the_architectures, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_input_mean_finite, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_architecture_misfits_the_shape, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_architecture_larger_than_the_file, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_every_truncation, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_head_checked_before_reading, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_dense_state_keeps_its_shape, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
