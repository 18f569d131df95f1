/* test_cifar10.c — tests of the CIFAR-10 reader (fm_cifar10_read) and of the
 * data specs around it (fm_data_load / fm_data_load_parts with "cifar10:DIR",
 * fm_data_default_valid, the unknown-spec message): exact pixels from small
 * files written record by record, every truncation length, and each error
 * with its code and message. */
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
#include <unistd.h>

#include "fewmul.h"

#define SUPPORT_NAME "cifar10"
#include "support.h"
#include "data_tests.h"

#define REC 3073
#define IMG 3072

/* Pixel (channel ch, plane position i) of record rec of file `file`: distinct
 * enough that a wrong plane, position or record shows. */
static uint8_t rec_pixel(int file, int rec, int ch, int i)
{
    uint32_t h = (uint32_t)(((file * 16 + rec) * 3 + ch) * 1024 + i) * 2654435761u;
    return (uint8_t)(h >> 13);
}

static uint8_t rec_label(int file, int rec) { return (uint8_t)((file * 3 + rec) % 10); }

/* n records of file `file`, as the CIFAR-10 binary version stores them. */
static size_t make_records(uint8_t *buf, int file, int n)
{
    for (int r = 0; r < n; r++) {
        uint8_t *rec = buf + (size_t)r * REC;
        rec[0] = rec_label(file, r);
        for (int ch = 0; ch < 3; ch++)
            for (int i = 0; i < 1024; i++)
                rec[1 + ch * 1024 + i] = rec_pixel(file, r, ch, i);
    }
    return (size_t)n * REC;
}

static void write_raw(const char *path, const void *buf, size_t n)
{
    /* A new file each time: ext4 flushes a file truncated and rewritten on
     * close, which would make the many rewrites here slow. */
    unlink(path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Image `index` of im must be record rec of file `file`, channel last. */
static void check_record(const fm_images *im, int index, int file, int rec)
{
    assert_int_equal(im->labels[index], rec_label(file, rec));
    const uint8_t *px = im->pixels + (size_t)index * IMG;
    for (int row = 0; row < 32; row++)
        for (int col = 0; col < 32; col++)
            for (int ch = 0; ch < 3; ch++)
                if (px[(row * 32 + col) * 3 + ch] != rec_pixel(file, rec, ch, row * 32 + col))
                    fail_msg("image %d (file %d record %d): pixel row %d col %d channel %d is %u, "
                             "expected %u",
                             index, file, rec, row, col, ch, px[(row * 32 + col) * 3 + ch],
                             rec_pixel(file, rec, ch, row * 32 + col));
}

static void assert_zeroed(const fm_images *im)
{
    fm_images zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(im, &zero, sizeof zero);
}

static void assert_message_has(const char *needle)
{
    if (needle && !strstr(fm_last_error(), needle))
        fail_msg("message \"%s\" lacks \"%s\"", fm_last_error(), needle);
}

static void expect_fail(const char *path, int code, const char *a, const char *b)
{
    fm_images out;
    memset(&out, 0x5a, sizeof out);
    int err = fm_cifar10_read(path, &out);
    if (err != code)
        fail_msg("%s: expected %s, got %s: %s", path, fm_strerror(code), fm_strerror(err),
                 fm_last_error());
    assert_zeroed(&out);
    assert_message_has(a);
    assert_message_has(b);
}

static uint8_t big[8 * REC];

/* ---- fm_cifar10_read -------------------------------------------------------- */

static void test_read_records(void **state)
{
    (void)state;
    const char *path = tpath("three.bin");
    write_raw(path, big, make_records(big, 0, 3));
    fm_images out;
    assert_int_equal(fm_cifar10_read(path, &out), FM_OK);
    assert_int_equal(out.count, 3);
    assert_int_equal(out.height, 32);
    assert_int_equal(out.width, 32);
    assert_int_equal(out.channels, 3);
    for (int r = 0; r < 3; r++)
        check_record(&out, r, 0, r);
    /* The first record's red plane starts the image; green follows red at
     * every pixel: channel last. */
    assert_int_equal(out.pixels[0], big[1]);
    assert_int_equal(out.pixels[1], big[1 + 1024]);
    assert_int_equal(out.pixels[2], big[1 + 2048]);
    assert_int_equal(out.pixels[3], big[2]);
    assert_int_equal(out.pixels[3 * 32], big[1 + 32]); /* row 1, column 0 */
    fm_images_free(&out);
    assert_zeroed(&out);

    write_raw(path, big, make_records(big, 4, 1));
    assert_int_equal(fm_cifar10_read(path, &out), FM_OK);
    assert_int_equal(out.count, 1);
    check_record(&out, 0, 4, 0);
    fm_images_free(&out);
}

static void test_every_label(void **state)
{
    (void)state;
    make_records(big, 0, 2);
    const char *path = tpath("labels.bin");
    for (int label = 0; label < 256; label++) {
        big[REC] = (uint8_t)label;
        write_raw(path, big, 2 * REC);
        fm_images out;
        int err = fm_cifar10_read(path, &out);
        if (label <= 9) {
            assert_int_equal(err, FM_OK);
            assert_int_equal(out.labels[1], label);
            fm_images_free(&out);
        } else {
            assert_int_equal(err, FM_EFORMAT);
            assert_zeroed(&out);
            char want[64];
            snprintf(want, sizeof want, "record 1: label %d out of range 0..9", label);
            assert_message_has(want);
            assert_message_has(path);
        }
    }
}

static void test_every_truncation(void **state)
{
    (void)state;
    /* Every length up to two records: whole records read, anything else fails
     * before a byte of pixels is allocated. */
    make_records(big, 2, 2);
    const char *path = tpath("cut.bin");
    write_raw(path, big, 2 * REC);
    /* Shortening one file is much cheaper than writing thousands. */
    for (size_t len = 2 * REC; len != (size_t)-1; len--) {
        assert_int_equal(truncate(path, (off_t)len), 0);
        memset(&track, 0, sizeof track);
        fm_images out;
        int err = fm_cifar10_read(path, &out);
        if (len == 0) {
            assert_int_equal(err, FM_EFORMAT);
            assert_message_has("empty file");
        } else if (len % REC) {
            if (err != FM_ETRUNC)
                fail_msg("length %zu: %s: %s", len, fm_strerror(err), fm_last_error());
            char want[128];
            snprintf(want, sizeof want, "%zu bytes is not a whole number of 3073-byte records (%zu records and %zu bytes over)",
                     len, len / REC, len % REC);
            assert_message_has(want);
            assert_message_has(path);
            assert_int_equal(track.largest, 0);
        } else {
            assert_int_equal(err, FM_OK);
            assert_int_equal(out.count, (int)(len / REC));
            check_record(&out, (int)(len / REC) - 1, 2, (int)(len / REC) - 1);
            fm_images_free(&out);
            continue;
        }
        assert_zeroed(&out);
        assert_int_equal(track.live, 0);
    }
}

static void test_missing_and_odd_files(void **state)
{
    (void)state;
    const char *nope = tpath("no-such.bin");
    expect_fail(nope, FM_ENOENT, nope, "No such file");
    expect_fail(tpath("no-such-dir/data_batch_1.bin"), FM_ENOENT, "no-such-dir", NULL);
    mkdir(tpath("a-dir"), 0700);
    expect_fail(tpath("a-dir"), FM_EIO, "a-dir", "directory");
    expect_fail("/dev/null", FM_EIO, "/dev/null", "not a regular file");
    if (geteuid() != 0) { /* root reads anything */
        const char *locked = tpath("locked.bin");
        write_raw(locked, big, make_records(big, 0, 1));
        chmod(locked, 0);
        expect_fail(locked, FM_EIO, locked, "ermission");
        chmod(locked, 0600);
    }
    fm_images out;
    assert_int_equal(fm_cifar10_read(NULL, &out), FM_EINVAL);
    assert_zeroed(&out);
    assert_int_equal(fm_cifar10_read("x", NULL), FM_EINVAL);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    /* 70 records: more than one read chunk. Every allocation failure comes
     * back as FM_ENOMEM with nothing leaked. */
    const char *path = tpath("oom.bin");
    write_raw(path, big, make_records(big, 1, 8));
    FILE *f = fopen(path, "ab");
    for (int i = 0; i < 62; i++)
        fwrite(big + (size_t)(i % 8) * REC, 1, REC, f);
    fclose(f);
    for (long k = 1;; k++) {
        memset(&track, 0, sizeof track);
        track.fail_at = k;
        fm_images out;
        int err = fm_cifar10_read(path, &out);
        if (err == FM_OK) {
            assert_true(k > 3);
            assert_int_equal(out.count, 70);
            check_record(&out, 69, 1, (69 - 8) % 8);
            fm_images_free(&out);
            break;
        }
        if (err != FM_ENOMEM)
            fail_msg("allocation %ld: %s: %s", k, fm_strerror(err), fm_last_error());
        assert_zeroed(&out);
        assert_int_equal(track.live, 0);
    }
    track.fail_at = 0;
}

/* ---- "cifar10:DIR" ---------------------------------------------------------- */

static const char *const names[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                     "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
static const int counts[6] = {2, 1, 3, 1, 2, 3};

/* The six files in tmpdir/sub, file i holding counts[i] records of pattern i. */
static void write_set(const char *sub)
{
    char dir[512], path[700];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, sub);
    char *slash = dir + strlen(tmpdir);
    while ((slash = strchr(slash + 1, '/'))) { /* intermediate folders */
        *slash = '\0';
        mkdir(dir, 0700);
        *slash = '/';
    }
    assert_int_equal(mkdir(dir, 0700), 0);
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        write_raw(path, big, make_records(big, i, counts[i]));
    }
}

static void check_set(const fm_images *train, const fm_images *test)
{
    if (train) {
        assert_int_equal(train->count, 9);
        int index = 0;
        for (int i = 0; i < 5; i++) /* batches 1..5, in order */
            for (int r = 0; r < counts[i]; r++)
                check_record(train, index++, i, r);
    }
    if (test) {
        assert_int_equal(test->count, 3);
        assert_int_equal(test->channels, 3);
        for (int r = 0; r < 3; r++)
            check_record(test, r, 5, r);
    }
}

static void test_load_dir(void **state)
{
    (void)state;
    write_set("set");
    char spec[600];
    snprintf(spec, sizeof spec, "cifar10:%s/set", tmpdir);
    fm_images train, test;
    assert_int_equal(fm_data_load(spec, &train, &test), FM_OK);
    check_set(&train, &test);
    fm_images_free(&train);
    fm_images_free(&test);

    int32_t part = -1;
    snprintf(spec, sizeof spec, "cifar10:%s/set/", tmpdir); /* trailing slash */
    assert_int_equal(fm_data_load_parts(spec, &train, &test, &part), FM_OK);
    assert_int_equal(part, 9); /* one part: the whole training set */
    check_set(&train, &test);
    fm_images_free(&train);
    fm_images_free(&test);

    assert_int_equal(fm_data_load_parts(spec, NULL, &test, &part), FM_OK);
    assert_int_equal(part, 0);
    check_set(NULL, &test);
    fm_images_free(&test);
    assert_int_equal(fm_data_load(spec, &train, NULL), FM_OK);
    check_set(&train, NULL);
    fm_images_free(&train);
}

static void test_load_archive_folder(void **state)
{
    (void)state;
    /* DIR may be the folder the archive was unpacked in. */
    write_set("unpacked/cifar-10-batches-bin");
    char spec[600];
    snprintf(spec, sizeof spec, "cifar10:%s/unpacked", tmpdir);
    fm_images train, test;
    assert_int_equal(fm_data_load(spec, &train, &test), FM_OK);
    check_set(&train, &test);
    fm_images_free(&train);
    fm_images_free(&test);
}

static void test_load_missing_files(void **state)
{
    (void)state;
    char dir[600], path[700], spec[700];
    for (int i = 0; i < 6; i++) {
        char sub[32];
        snprintf(sub, sizeof sub, "missing-%d", i);
        write_set(sub);
        snprintf(dir, sizeof dir, "%s/%s", tmpdir, sub);
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        assert_int_equal(unlink(path), 0);
        snprintf(spec, sizeof spec, "cifar10:%s", dir);
        fm_images train, test;
        memset(&track, 0, sizeof track);
        assert_int_equal(fm_data_load(spec, &train, &test), FM_ENOENT);
        assert_zeroed(&train);
        assert_zeroed(&test);
        assert_message_has(dir);
        assert_message_has(names[i]);
        assert_message_has("CIFAR-10 binary version");
        assert_int_equal(track.largest, 0); /* found missing before reading any */
        /* The other side alone is complete. */
        if (i < 5) {
            assert_int_equal(fm_data_load(spec, NULL, &test), FM_OK);
            fm_images_free(&test);
        } else {
            assert_int_equal(fm_data_load(spec, &train, NULL), FM_OK);
            fm_images_free(&train);
        }
    }
    snprintf(spec, sizeof spec, "cifar10:%s/no-such-dir", tmpdir);
    fm_images train;
    assert_int_equal(fm_data_load(spec, &train, NULL), FM_ENOENT);
    assert_message_has("no-such-dir");
    snprintf(spec, sizeof spec, "cifar10:%s/missing-0/test_batch.bin", tmpdir);
    assert_int_equal(fm_data_load(spec, &train, NULL), FM_EINVAL);
    assert_message_has("Not a directory");
}

static void test_load_bad_file(void **state)
{
    (void)state;
    write_set("bad");
    char path[700], spec[700];
    snprintf(path, sizeof path, "%s/bad/data_batch_4.bin", tmpdir);
    write_raw(path, big, REC + 5);
    snprintf(spec, sizeof spec, "cifar10:%s/bad", tmpdir);
    fm_images train, test;
    assert_int_equal(fm_data_load(spec, &train, &test), FM_ETRUNC);
    assert_zeroed(&train); /* three batches were read, then freed */
    assert_zeroed(&test);
    assert_message_has(path);
    make_records(big, 3, 1);
    big[0] = 10;
    write_raw(path, big, REC);
    assert_int_equal(fm_data_load(spec, &train, &test), FM_EFORMAT);
    assert_zeroed(&train);
    assert_message_has("data_batch_4.bin: record 0: label 10 out of range 0..9");
}

/* ---- specs ----------------------------------------------------------------- */

static void test_specs(void **state)
{
    (void)state;
    assert_int_equal(fm_data_default_valid("fashion"), 10000);
    assert_int_equal(fm_data_default_valid("mnist:/x"), 10000);
    assert_int_equal(fm_data_default_valid("idx:x"), 10000);
    assert_int_equal(fm_data_default_valid("cifar10:/x"), 5000);
    assert_int_equal(fm_data_default_valid("svhn:/x"), 6000);
    const char *bad[] = {"cifar10:", "svhn:", "cifar10", "svhn", "cifar:/tmp", "CIFAR10:/tmp",
                         "", "fashion:", "mnist:"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(fm_data_default_valid(bad[i]), FM_EINVAL);
        assert_message_has("unknown data spec");
        fm_images train, test;
        int32_t part = 7;
        assert_int_equal(fm_data_load_parts(bad[i], &train, &test, &part), FM_EINVAL);
        assert_zeroed(&train);
        assert_zeroed(&test);
        assert_int_equal(part, 0);
        assert_message_has("unknown data spec");
        /* every form is named */
        assert_message_has("fashion, mnist:DIR or idx:DIR");
        assert_message_has("cifar10:DIR");
        assert_message_has("svhn:DIR");
    }
    assert_int_equal(fm_data_default_valid(NULL), FM_EINVAL);
    assert_message_has("'(null)'");
}

/* ---- the real data set, where a user has it ------------------------------------ */

static void test_real_cifar10(void **state)
{
    (void)state;
    /* DIR/cifar10, holding the batches or the archive's cifar-10-batches-bin/ */
    const char *roots[2] = {NULL, getenv("FEWMUL_DATA")};
#ifdef FM_TEST_DATA_DIR
    roots[0] = FM_TEST_DATA_DIR;
#endif
    char spec[1100] = "";
    for (int i = 0; i < 2 && !spec[0]; i++) {
        char path[1024];
        struct stat st;
        if (!roots[i] || !*roots[i])
            continue;
        snprintf(path, sizeof path, "%s/cifar10/data_batch_1.bin", roots[i]);
        int found = stat(path, &st) == 0;
        snprintf(path, sizeof path, "%s/cifar10/cifar-10-batches-bin/data_batch_1.bin", roots[i]);
        found |= stat(path, &st) == 0;
        if (found)
            snprintf(spec, sizeof spec, "cifar10:%s/cifar10", roots[i]);
    }
    if (!spec[0]) {
        SKIP_NO_DATA("CIFAR-10 not found (looked for cifar10/ in ../shared/data and $FEWMUL_DATA)");
    }
    fm_images train, test;
    int err = fm_data_load(spec, &train, &test);
    if (err)
        fail_msg("%s: %s", spec, fm_last_error());
    assert_int_equal(train.count, 50000);
    assert_int_equal(test.count, 10000);
    int seen[10] = {0};
    for (int i = 0; i < train.count; i++)
        seen[train.labels[i]]++;
    for (int k = 0; k < 10; k++)
        assert_int_equal(seen[k], 5000);
    assert_int_equal(train.labels[0], 6); /* a frog opens data_batch_1.bin */
    assert_int_equal(test.labels[0], 3);  /* and a cat test_batch.bin */
    fm_images_free(&train);
    fm_images_free(&test);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        T(test_read_records),
        T(test_every_label),
        T(test_every_truncation),
        T(test_missing_and_odd_files),
        T(test_out_of_memory),
        T(test_load_dir),
        T(test_load_archive_folder),
        T(test_load_missing_files),
        T(test_load_bad_file),
        T(test_specs),
        T(test_real_cifar10),
    };
    return RUN_DATA_TESTS(argc, argv, tests, group_setup, group_teardown);
}
