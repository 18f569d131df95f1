/* test_idx.c — tests of the IDX reader (fm_idx_read) and the data-spec loader
 * (fm_data_load): exact values from small raw and gzip files written to a
 * temporary directory, each malformed-file error with its code and message, a
 * FIFO without a writer, a loop of symbolic links in a data path,
 * and the real MNIST / Fashion-MNIST files when they are installed. */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "fewmul.h"

#define SUPPORT_NAME "idx"
#include "support.h"
#include "data_tests.h"


static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint8_t pixel_value(size_t i) { return (uint8_t)(i * 31 + 7); }

/* An image file: header as given, then `data` bytes of the pixel pattern. */
static size_t make_images(uint8_t *buf, uint32_t magic, uint32_t n, uint32_t rows,
                          uint32_t cols, size_t data)
{
    put_be32(buf, magic);
    put_be32(buf + 4, n);
    put_be32(buf + 8, rows);
    put_be32(buf + 12, cols);
    for (size_t i = 0; i < data; i++)
        buf[16 + i] = pixel_value(i);
    return 16 + data;
}

static size_t make_labels(uint8_t *buf, uint32_t magic, uint32_t n, const uint8_t *labels,
                          size_t data)
{
    put_be32(buf, magic);
    put_be32(buf + 4, n);
    memcpy(buf + 8, labels, data);
    return 8 + data;
}

static void write_raw(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *path, const void *buf, size_t n)
{
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, buf, (unsigned)n), (int)n);
    assert_int_equal(gzclose(g), Z_OK);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t buf[1 << 16];
    *n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

static const uint8_t good_labels[3] = {0, 9, 5};

/* The standard pair: 3 images of 2x3 and labels {0, 9, 5}. */
static void write_good(const char *images, const char *labels, int gz_images, int gz_labels)
{
    uint8_t buf[256];
    size_t n = make_images(buf, 0x803, 3, 2, 3, 18);
    (gz_images ? write_gz : write_raw)(images, buf, n);
    n = make_labels(buf, 0x801, 3, good_labels, 3);
    (gz_labels ? write_gz : write_raw)(labels, buf, n);
}

static void check_good(const fm_images *im)
{
    assert_int_equal(im->count, 3);
    assert_int_equal(im->height, 2);
    assert_int_equal(im->width, 3);
    assert_int_equal(im->channels, 1);
    assert_non_null(im->pixels);
    assert_non_null(im->labels);
    for (size_t i = 0; i < 18; i++)
        assert_int_equal(im->pixels[i], pixel_value(i));
    assert_memory_equal(im->labels, good_labels, 3);
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

/* Reads a pair expecting failure `code` with a message holding a, b and c
 * (NULL to skip); out must come back zeroed. */
static void expect_fail(const char *images, const char *labels, int code, const char *a,
                        const char *b, const char *c)
{
    fm_images out;
    memset(&out, 0x5a, sizeof out); /* garbage in must not matter */
    int err = fm_idx_read(images, labels, &out);
    if (err != code)
        fail_msg("expected %s, got %s: %s", fm_strerror(code), fm_strerror(err), fm_last_error());
    assert_zeroed(&out);
    assert_message_has(a);
    assert_message_has(b);
    assert_message_has(c);
}

/* ---- fm_idx_read: good files ---------------------------------------------- */

static void test_raw_loads(void **state)
{
    (void)state;
    const char *im = tpath("raw-images"), *lb = tpath("raw-labels");
    write_good(im, lb, 0, 0);
    fm_images out;
    assert_int_equal(fm_idx_read(im, lb, &out), FM_OK);
    check_good(&out);
    fm_images_free(&out);
    assert_zeroed(&out);
    fm_images_free(&out); /* twice is harmless */
    fm_images_free(NULL);
}

static void test_gzip_loads(void **state)
{
    (void)state;
    fm_images out;
    /* Detected by content: the names say nothing about compression. */
    const char *im = tpath("gz-images"), *lb = tpath("gz-labels");
    write_good(im, lb, 1, 1);
    assert_int_equal(fm_idx_read(im, lb, &out), FM_OK);
    check_good(&out);
    fm_images_free(&out);

    write_good(im, lb, 1, 0);
    assert_int_equal(fm_idx_read(im, lb, &out), FM_OK);
    check_good(&out);
    fm_images_free(&out);
}

static void test_gzip_multi_member(void **state)
{
    (void)state;
    /* Two gzip members back to back decompress as one stream, as with gzip(1). */
    uint8_t buf[256], cat[1024];
    size_t n = make_images(buf, 0x803, 3, 2, 3, 18), a, b;
    write_gz(tpath("part"), buf, 10);
    uint8_t *part = slurp(tpath("part"), &a);
    memcpy(cat, part, a);
    write_gz(tpath("part"), buf + 10, n - 10);
    part = slurp(tpath("part"), &b);
    memcpy(cat + a, part, b);
    write_raw(tpath("multi-images"), cat, a + b);
    n = make_labels(buf, 0x801, 3, good_labels, 3);
    write_raw(tpath("multi-labels"), buf, n);
    fm_images out;
    assert_int_equal(fm_idx_read(tpath("multi-images"), tpath("multi-labels"), &out), FM_OK);
    check_good(&out);
    fm_images_free(&out);
}

/* A pipe that delivers n bytes, then end of file, as the path /dev/fd/N of its
 * read end (*fd; close it after the read). Up to 32 KiB are written at once;
 * more come from a child process, so the reader sees them arrive in pieces. */
static const char *pipe_of(const void *buf, size_t n, int *fd, pid_t *child)
{
    static char path[2][32];
    static int next;
    int p[2];
    assert_int_equal(pipe(p), 0);
    *child = -1;
    if (n <= 32768) {
        assert_int_equal(write(p[1], buf, n), (ssize_t)n);
    } else {
        *child = fork();
        assert_true(*child >= 0);
        if (*child == 0) {
            close(p[0]);
            const uint8_t *b = buf;
            while (n > 0) {
                ssize_t w = write(p[1], b, n > 4096 ? 4096 : n);
                if (w <= 0)
                    _exit(1);
                b += w;
                n -= (size_t)w;
            }
            _exit(0);
        }
    }
    close(p[1]);
    *fd = p[0];
    char *out = path[next++ % 2];
    snprintf(out, sizeof path[0], "/dev/fd/%d", p[0]);
    return out;
}

static void pipe_done(int fd, pid_t child)
{
    close(fd);
    if (child > 0) {
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
    }
}

static void test_through_pipes(void **state)
{
    (void)state;
    /* A pipe has no size to check against: the data, raw or gzip, is read as
     * it arrives into a buffer that grows with it (past the first megabyte
     * here), and a short or long payload is found at its end. (fuzz_idx hands
     * parts over through pipes too.) */
    uint8_t buf[256];
    int fi, fl;
    pid_t ci, cl;
    size_t n = make_images(buf, 0x803, 3, 2, 3, 18);
    const char *lb = tpath("p-labels");
    write_good(tpath("p-images"), lb, 0, 0);
    fm_images out;
    const char *im = pipe_of(buf, n, &fi, &ci);
    uint8_t lbuf[16];
    size_t ln = make_labels(lbuf, 0x801, 3, good_labels, 3);
    const char *lp = pipe_of(lbuf, ln, &fl, &cl);
    assert_int_equal(fm_idx_read(im, lp, &out), FM_OK);
    pipe_done(fi, ci);
    pipe_done(fl, cl);
    check_good(&out);
    fm_images_free(&out);

    write_gz(tpath("p-gz"), buf, n);
    size_t g;
    uint8_t *gz = slurp(tpath("p-gz"), &g);
    im = pipe_of(gz, g, &fi, &ci);
    assert_int_equal(fm_idx_read(im, lb, &out), FM_OK);
    pipe_done(fi, ci);
    check_good(&out);
    fm_images_free(&out);

    n = make_images(buf, 0x803, 3, 2, 3, 19);
    im = pipe_of(buf, n, &fi, &ci);
    expect_fail(im, lb, FM_EFORMAT, im, "extra bytes after data (header declares 3 images of 2x3)",
                NULL);
    pipe_done(fi, ci);
    n = make_images(buf, 0x803, 3, 2, 3, 15);
    im = pipe_of(buf, n, &fi, &ci);
    expect_fail(im, lb, FM_ETRUNC, im,
                "header declares 3 images of 2x3 (18 bytes) but only 15 bytes follow", NULL);
    pipe_done(fi, ci);

    /* 1100 images of 32x32: 1.1 MB, more than the first buffer holds */
    static uint8_t big[16 + 1100 * 1024 + 1];
    static uint8_t labels[1100];
    n = make_images(big, 0x803, 1100, 32, 32, 1100 * 1024);
    for (int i = 0; i < 1100; i++)
        labels[i] = (uint8_t)(i % 10);
    write_raw(tpath("p-big-labels"), lbuf, make_labels(lbuf, 0x801, 1100, labels, 0));
    FILE *f = fopen(tpath("p-big-labels"), "ab");
    assert_non_null(f);
    assert_int_equal(fwrite(labels, 1, 1100, f), 1100);
    assert_int_equal(fclose(f), 0);
    im = pipe_of(big, n, &fi, &ci);
    assert_int_equal(fm_idx_read(im, tpath("p-big-labels"), &out), FM_OK);
    pipe_done(fi, ci);
    assert_int_equal(out.count, 1100);
    assert_int_equal(out.pixels[1100 * 1024 - 1], pixel_value(1100 * 1024 - 1));
    assert_memory_equal(out.labels, labels, 1100);
    fm_images_free(&out);
    /* cut short by one byte, and one byte too many */
    im = pipe_of(big, n - 1, &fi, &ci);
    expect_fail(im, tpath("p-big-labels"), FM_ETRUNC, im, "but only 1126399 bytes follow", NULL);
    pipe_done(fi, ci);
    big[n] = 0;
    im = pipe_of(big, n + 1, &fi, &ci);
    expect_fail(im, tpath("p-big-labels"), FM_EFORMAT, im, "extra bytes after data", NULL);
    pipe_done(fi, ci);
}

/* ---- fm_idx_read: errors --------------------------------------------------- */

static void test_missing_file(void **state)
{
    (void)state;
    const char *im = tpath("m-images"), *lb = tpath("m-labels");
    write_good(im, lb, 0, 0);
    const char *nope = tpath("no-such-file");
    expect_fail(nope, lb, FM_ENOENT, nope, "No such file", NULL);
    expect_fail(im, nope, FM_ENOENT, nope, "No such file", NULL);
    expect_fail(im, tpath("m-images/sub"), FM_ENOENT, "m-images/sub", NULL, NULL);
}

static void test_unreadable(void **state)
{
    (void)state;
    const char *im = tpath("u-images"), *lb = tpath("u-labels");
    write_good(im, lb, 0, 0);
    mkdir(tpath("a-directory"), 0700);
    expect_fail(tpath("a-directory"), lb, FM_EIO, "a-directory", "directory", NULL);
    if (geteuid() != 0) { /* root reads anything */
        chmod(lb, 0);
        expect_fail(im, lb, FM_EIO, lb, "ermission", NULL);
        chmod(lb, 0600);
    }
}

static void test_null_arguments(void **state)
{
    (void)state;
    fm_images out;
    assert_int_equal(fm_idx_read(NULL, "x", &out), FM_EINVAL);
    assert_zeroed(&out);
    assert_int_equal(fm_idx_read("x", "y", NULL), FM_EINVAL);
}

static void test_wrong_magic(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *im = tpath("w-images"), *lb = tpath("w-labels");
    write_good(im, lb, 0, 0);
    /* Label file given as the image file. */
    expect_fail(lb, lb, FM_EFORMAT, lb, "bad magic 0x00000801", "expected 0x00000803");
    /* Image file given as the label file. */
    expect_fail(im, im, FM_EFORMAT, im, "bad magic 0x00000803", "expected 0x00000801");
    size_t n = make_images(buf, 0x12345678, 3, 2, 3, 18);
    write_raw(tpath("w-bad"), buf, n);
    expect_fail(tpath("w-bad"), lb, FM_EFORMAT, tpath("w-bad"), "0x12345678", "bad magic");
    write_gz(tpath("w-badgz"), buf, n);
    expect_fail(tpath("w-badgz"), lb, FM_EFORMAT, tpath("w-badgz"), "0x12345678", NULL);
}

static void test_unsupported_type(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *im = tpath("t-images"), *lb = tpath("t-labels");
    write_good(im, lb, 0, 0);
    size_t n = make_images(buf, 0x00000D03, 3, 2, 3, 18); /* float images */
    write_raw(tpath("t-float"), buf, n);
    expect_fail(tpath("t-float"), lb, FM_EFORMAT, tpath("t-float"),
                "unsupported IDX element type 0x0d", NULL);
    n = make_labels(buf, 0x00000901, 3, good_labels, 3); /* signed byte labels */
    write_raw(tpath("t-sbyte"), buf, n);
    expect_fail(im, tpath("t-sbyte"), FM_EFORMAT, tpath("t-sbyte"),
                "unsupported IDX element type 0x09", NULL);
}

static void test_truncated_images(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *im = tpath("tr-images"), *lb = tpath("tr-labels");
    write_good(im, lb, 0, 0);
    size_t n = make_images(buf, 0x803, 3, 2, 3, 15);
    const char *want = "truncated: header declares 3 images of 2x3 (18 bytes) but only 15 bytes follow";
    write_raw(tpath("tr-raw"), buf, n);
    expect_fail(tpath("tr-raw"), lb, FM_ETRUNC, tpath("tr-raw"), want, NULL);
    write_gz(tpath("tr-gz"), buf, n);
    expect_fail(tpath("tr-gz"), lb, FM_ETRUNC, tpath("tr-gz"), want, NULL);
    /* Truncated labels too. */
    n = make_labels(buf, 0x801, 3, good_labels, 2);
    write_raw(tpath("tr-lraw"), buf, n);
    expect_fail(im, tpath("tr-lraw"), FM_ETRUNC, tpath("tr-lraw"),
                "header declares 3 labels (3 bytes) but only 2 bytes follow", NULL);
}

static void test_truncated_gzip_stream(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *im = tpath("ts-images"), *lb = tpath("ts-labels");
    write_good(im, lb, 1, 0);
    size_t n;
    uint8_t *gz = slurp(im, &n);
    memcpy(buf, gz, n);
    /* Cut inside the 8-byte trailer, and inside the deflate data. */
    write_raw(tpath("ts-cut"), buf, n - 4);
    expect_fail(tpath("ts-cut"), lb, FM_ETRUNC, tpath("ts-cut"), "truncated gzip stream", NULL);
    write_raw(tpath("ts-cut"), buf, 14);
    expect_fail(tpath("ts-cut"), lb, FM_ETRUNC, tpath("ts-cut"), "truncated", NULL);
    write_raw(tpath("ts-cut"), buf, 2); /* just the gzip magic */
    expect_fail(tpath("ts-cut"), lb, FM_ETRUNC, tpath("ts-cut"), "truncated", NULL);
}

static void test_truncated_header(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *im = tpath("th-images"), *lb = tpath("th-labels");
    write_good(im, lb, 0, 0);
    make_images(buf, 0x803, 3, 2, 3, 0);
    write_raw(tpath("th-10"), buf, 10);
    expect_fail(tpath("th-10"), lb, FM_ETRUNC, tpath("th-10"), "truncated header (10 of 16 bytes)", NULL);
    write_gz(tpath("th-10gz"), buf, 10);
    expect_fail(tpath("th-10gz"), lb, FM_ETRUNC, tpath("th-10gz"), "truncated header", NULL);
    write_raw(tpath("th-0"), buf, 0);
    expect_fail(tpath("th-0"), lb, FM_ETRUNC, tpath("th-0"), "truncated header (0 of 16 bytes)", NULL);
    make_labels(buf, 0x801, 3, good_labels, 0);
    write_raw(tpath("th-l"), buf, 7);
    expect_fail(im, tpath("th-l"), FM_ETRUNC, tpath("th-l"), "truncated header (7 of 8 bytes)", NULL);
}

static void test_count_mismatch(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *im = tpath("cm-images"), *lb = tpath("cm-labels");
    write_good(im, lb, 0, 0);
    const uint8_t four[4] = {1, 2, 3, 4};
    size_t n = make_labels(buf, 0x801, 4, four, 4);
    write_raw(tpath("cm-4"), buf, n);
    expect_fail(im, tpath("cm-4"), FM_EMISMATCH, "has 3 images", "has 4 labels", tpath("cm-4"));
    assert_message_has(im);
}

static void test_label_out_of_range(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *im = tpath("lr-images"), *lb = tpath("lr-labels");
    write_good(im, lb, 0, 0);
    const uint8_t bad[3] = {9, 10, 255};
    size_t n = make_labels(buf, 0x801, 3, bad, 3);
    write_raw(tpath("lr-bad"), buf, n);
    expect_fail(im, tpath("lr-bad"), FM_EFORMAT, tpath("lr-bad"),
                "label 10 at index 1 out of range 0..9", NULL);
}

static void test_extra_bytes(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *im = tpath("x-images"), *lb = tpath("x-labels");
    write_good(im, lb, 0, 0);
    size_t n = make_images(buf, 0x803, 3, 2, 3, 19);
    write_raw(tpath("x-raw"), buf, n);
    expect_fail(tpath("x-raw"), lb, FM_EFORMAT, tpath("x-raw"), "1 extra bytes after data", NULL);
    write_gz(tpath("x-gz"), buf, n);
    expect_fail(tpath("x-gz"), lb, FM_EFORMAT, tpath("x-gz"), "extra bytes after data", NULL);
    n = make_labels(buf, 0x801, 3, good_labels, 3);
    buf[n++] = 0;
    write_gz(tpath("x-lgz"), buf, n);
    expect_fail(im, tpath("x-lgz"), FM_EFORMAT, tpath("x-lgz"), "extra bytes after data", NULL);
    /* Garbage after the compressed stream itself. */
    size_t g;
    write_good(im, lb, 1, 0);
    uint8_t *gz = slurp(im, &g);
    memcpy(buf, gz, g);
    memcpy(buf + g, "junk", 4);
    write_raw(tpath("x-junk"), buf, g + 4);
    expect_fail(tpath("x-junk"), lb, FM_EFORMAT, tpath("x-junk"), "after the gzip stream", NULL);
}

static void test_corrupt_gzip(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *im = tpath("cg-images"), *lb = tpath("cg-labels");
    write_good(im, lb, 1, 0);
    size_t n;
    uint8_t *gz = slurp(im, &n);
    memcpy(buf, gz, n);
    buf[2] = 7; /* compression method: not deflate */
    write_raw(tpath("cg-method"), buf, n);
    expect_fail(tpath("cg-method"), lb, FM_EFORMAT, tpath("cg-method"),
                "corrupt gzip stream: unknown compression method", NULL);
    memcpy(buf, gz, n);
    buf[n - 8] ^= 0x55; /* CRC-32 of the data */
    write_raw(tpath("cg-crc"), buf, n);
    expect_fail(tpath("cg-crc"), lb, FM_EFORMAT, tpath("cg-crc"),
                "corrupt gzip stream: incorrect data check", NULL);
    memcpy(buf, gz, n);
    buf[n - 4] ^= 0x01; /* ISIZE */
    write_raw(tpath("cg-len"), buf, n);
    expect_fail(tpath("cg-len"), lb, FM_EFORMAT, tpath("cg-len"), "corrupt gzip stream", NULL);
}

static void test_zero_dims(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *im = tpath("z-images"), *lb = tpath("z-labels");
    write_good(im, lb, 0, 0);
    size_t n = make_images(buf, 0x803, 0, 2, 3, 0);
    write_raw(tpath("z-count"), buf, n);
    expect_fail(tpath("z-count"), lb, FM_EFORMAT, tpath("z-count"), "declares 0 images", NULL);
    n = make_images(buf, 0x803, 3, 0, 3, 0);
    write_raw(tpath("z-rows"), buf, n);
    expect_fail(tpath("z-rows"), lb, FM_EFORMAT, tpath("z-rows"), "3 images of 0x3", NULL);
    n = make_images(buf, 0x803, 3, 2, 0, 0);
    write_raw(tpath("z-cols"), buf, n);
    expect_fail(tpath("z-cols"), lb, FM_EFORMAT, tpath("z-cols"), "3 images of 2x0", NULL);
    n = make_labels(buf, 0x801, 0, good_labels, 0);
    write_raw(tpath("z-labels0"), buf, n);
    expect_fail(im, tpath("z-labels0"), FM_EFORMAT, tpath("z-labels0"), "declares 0 labels", NULL);
}

static void test_absurd_dims(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *im = tpath("ab-images"), *lb = tpath("ab-labels");
    write_good(im, lb, 0, 0);
    size_t n = make_images(buf, 0x803, 3, 4097, 3, 18);
    write_raw(tpath("ab-rows"), buf, n);
    expect_fail(tpath("ab-rows"), lb, FM_EFORMAT, tpath("ab-rows"), "implausible image size 4097x3", NULL);
    n = make_images(buf, 0x803, 3, 2, 0xffffffffu, 18);
    write_raw(tpath("ab-cols"), buf, n);
    expect_fail(tpath("ab-cols"), lb, FM_EFORMAT, tpath("ab-cols"), "implausible image size", NULL);
    n = make_images(buf, 0x803, 100000001u, 2, 3, 18);
    write_raw(tpath("ab-count"), buf, n);
    expect_fail(tpath("ab-count"), lb, FM_EFORMAT, tpath("ab-count"),
                "implausible image count 100000001", NULL);
    n = make_labels(buf, 0x801, 0x80000000u, good_labels, 3);
    write_raw(tpath("ab-lcount"), buf, n);
    expect_fail(im, tpath("ab-lcount"), FM_EFORMAT, tpath("ab-lcount"), "implausible label count", NULL);
}

static void test_huge_header_small_file(void **state)
{
    (void)state;
    /* Within the limits but ~1.6 PB declared: must fail as truncated without
     * ever asking for the declared size (raw: from the file size; gzip: the
     * buffer only grows with data that arrives). */
    uint8_t buf[256];
    const uint8_t many[1] = {0};
    size_t n = make_images(buf, 0x803, 100000000u, 4096, 4096, 18);
    write_raw(tpath("hg-raw"), buf, n);
    write_gz(tpath("hg-gz"), buf, n);
    n = make_labels(buf, 0x801, 100000000u, many, 1);
    write_raw(tpath("hg-labels"), buf, n);
    expect_fail(tpath("hg-raw"), tpath("hg-labels"), FM_ETRUNC, tpath("hg-raw"),
                "100000000 images of 4096x4096 (1677721600000000 bytes) but only 18 bytes follow", NULL);
    assert_true(track.largest < ((size_t)1 << 21));
    expect_fail(tpath("hg-gz"), tpath("hg-labels"), FM_ETRUNC, tpath("hg-gz"),
                "but only 18 bytes follow", NULL);
    assert_true(track.largest < ((size_t)1 << 21));
}

static void test_out_of_memory(void **state)
{
    (void)state;
    /* Fail each allocation in turn (zlib's included, and the growth of the
     * gzip buffer past its first megabyte): every failure must come back as
     * FM_ENOMEM with out zeroed and nothing leaked. */
    static uint8_t big[16 + 3000 * 20 * 20];
    size_t n = make_images(big, 0x803, 3000, 20, 20, 3000 * 20 * 20);
    write_gz(tpath("oom-images"), big, n);
    uint8_t labels[3000];
    for (int i = 0; i < 3000; i++)
        labels[i] = (uint8_t)(i % 10);
    n = make_labels(big, 0x801, 3000, labels, 3000);
    write_gz(tpath("oom-labels"), big, n);
    for (long k = 1;; k++) {
        memset(&track, 0, sizeof track);
        track.fail_at = k;
        fm_images out;
        int err = fm_idx_read(tpath("oom-images"), tpath("oom-labels"), &out);
        if (err == FM_OK) {
            assert_true(k > 4);
            assert_int_equal(out.count, 3000);
            assert_int_equal(out.pixels[1199999], pixel_value(1199999));
            fm_images_free(&out);
            assert_int_equal(track.live, 0);
            break;
        }
        if (err != FM_ENOMEM)
            fail_msg("allocation %ld: %s: %s", k, fm_strerror(err), fm_last_error());
        assert_zeroed(&out);
        assert_int_equal(track.live, 0);
    }
    track.fail_at = 0;
}

/* ---- fm_data_load -------------------------------------------------------- */

/* Writes the four files of a set into tmpdir/sub. dot: the '.' name variant. */
static void write_set(const char *sub, int dot, int gz, uint32_t ntrain, uint32_t ntest,
                      uint32_t test_cols)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, sub);
    assert_int_equal(mkdir(dir, 0700), 0);
    const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    static uint8_t buf[4096], labels[64];
    for (int i = 0; i < 4; i++) {
        uint32_t count = i < 2 ? ntrain : ntest, cols = i < 2 ? 3 : test_cols;
        for (uint32_t k = 0; k < count; k++)
            labels[k] = (uint8_t)((k + (uint32_t)i) % 10);
        size_t n = i % 2 == 0 ? make_images(buf, 0x803, count, 2, cols, (size_t)count * 2 * cols)
                              : make_labels(buf, 0x801, count, labels, count);
        char name[64];
        snprintf(name, sizeof name, "%s", names[i]);
        if (dot)
            *strstr(name, "-idx") = '.';
        snprintf(path, sizeof path, "%s/%s%s", dir, name, gz ? ".gz" : "");
        (gz ? write_gz : write_raw)(path, buf, n);
    }
}

static void test_load_unknown_spec(void **state)
{
    (void)state;
    const char *bad[] = {"foo", "mnist:", "idx:", "", "mnist", "Fashion", "cifar:/tmp"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fm_images train, test;
        assert_int_equal(fm_data_load(bad[i], &train, &test), FM_EINVAL);
        assert_zeroed(&train);
        assert_zeroed(&test);
        assert_message_has("unknown data spec");
        assert_message_has("expected fashion, mnist:DIR or idx:DIR");
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        assert_message_has(quoted);
    }
    assert_int_equal(fm_data_load(NULL, NULL, NULL), FM_EINVAL);
}

static void test_load_missing_dir(void **state)
{
    (void)state;
    char spec[600];
    snprintf(spec, sizeof spec, "mnist:%s/no-such-dir", tmpdir);
    fm_images train;
    assert_int_equal(fm_data_load(spec, &train, NULL), FM_ENOENT);
    assert_zeroed(&train);
    assert_message_has(spec + 6);
    assert_message_has("No such file");
}

static void test_load_set(void **state)
{
    (void)state;
    write_set("set-raw", 0, 0, 5, 4, 3);
    write_set("set-gz-dot", 1, 1, 7, 2, 3);
    char spec[600];
    fm_images train, test;

    snprintf(spec, sizeof spec, "mnist:%s/set-raw", tmpdir);
    assert_int_equal(fm_data_load(spec, &train, &test), FM_OK);
    assert_int_equal(train.count, 5);
    assert_int_equal(test.count, 4);
    assert_int_equal(train.height, 2);
    assert_int_equal(train.width, 3);
    assert_int_equal(test.labels[3], 6); /* (k + file index) % 10 */
    assert_int_equal(train.pixels[29], pixel_value(29));
    fm_images_free(&train);
    fm_images_free(&test);

    snprintf(spec, sizeof spec, "idx:%s/set-gz-dot/", tmpdir); /* trailing slash too */
    assert_int_equal(fm_data_load(spec, &train, &test), FM_OK);
    assert_int_equal(train.count, 7);
    assert_int_equal(test.count, 2);
    assert_int_equal(train.labels[6], 7);
    fm_images_free(&train);
    fm_images_free(&test);

    /* Either side may be skipped. */
    assert_int_equal(fm_data_load(spec, NULL, &test), FM_OK);
    assert_int_equal(test.count, 2);
    fm_images_free(&test);
    assert_int_equal(fm_data_load(spec, &train, NULL), FM_OK);
    assert_int_equal(train.count, 7);
    fm_images_free(&train);
}

static void test_load_missing_file(void **state)
{
    (void)state;
    write_set("set-partial", 0, 1, 5, 4, 3);
    char dir[512], path[600], spec[600];
    snprintf(dir, sizeof dir, "%s/set-partial", tmpdir);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
    assert_int_equal(unlink(path), 0);
    snprintf(spec, sizeof spec, "mnist:%s", dir);
    fm_images train, test;
    assert_int_equal(fm_data_load(spec, &train, &test), FM_ENOENT);
    assert_zeroed(&train); /* loaded, then freed */
    assert_zeroed(&test);
    assert_message_has(dir);
    assert_message_has("t10k-labels-idx1-ubyte");
    /* The train set alone is complete. */
    assert_int_equal(fm_data_load(spec, &train, NULL), FM_OK);
    fm_images_free(&train);
}

static void test_load_shape_mismatch(void **state)
{
    (void)state;
    write_set("set-shape", 0, 0, 5, 4, 4);
    char spec[600];
    snprintf(spec, sizeof spec, "mnist:%s/set-shape", tmpdir);
    fm_images train, test;
    assert_int_equal(fm_data_load(spec, &train, &test), FM_EMISMATCH);
    assert_zeroed(&train);
    assert_zeroed(&test);
    assert_message_has("train images are 2x3 but test images are 2x4");
}

static void test_load_bad_file_in_set(void **state)
{
    (void)state;
    write_set("set-bad", 0, 0, 5, 4, 3);
    char path[600], spec[600];
    snprintf(path, sizeof path, "%s/set-bad/t10k-images-idx3-ubyte", tmpdir);
    write_raw(path, "\0\0\x08\x03", 4);
    snprintf(spec, sizeof spec, "idx:%s/set-bad", tmpdir);
    fm_images train, test;
    assert_int_equal(fm_data_load(spec, &train, &test), FM_ETRUNC);
    assert_zeroed(&train);
    assert_zeroed(&test);
    assert_message_has(path);
}

/* ---- the real data sets ------------------------------------------------------ */

static int has_mnist_files(const char *dir)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);
    if (stat(path, &st) == 0)
        return 1;
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    return stat(path, &st) == 0;
}

static void check_real(const char *spec, int train_first, int test_first)
{
    fm_images train, test;
    int err = fm_data_load(spec, &train, &test);
    if (err)
        fail_msg("%s: %s", spec, fm_last_error());
    assert_int_equal(train.count, 60000);
    assert_int_equal(test.count, 10000);
    assert_int_equal(train.height, 28);
    assert_int_equal(train.width, 28);
    assert_int_equal(test.height, 28);
    assert_int_equal(test.width, 28);
    assert_int_equal(train.channels, 1);
    int seen[10] = {0};
    for (int i = 0; i < train.count; i++) {
        assert_true(train.labels[i] < 10);
        seen[train.labels[i]]++;
    }
    for (int i = 0; i < test.count; i++)
        assert_true(test.labels[i] < 10);
    for (int k = 0; k < 10; k++)
        assert_true(seen[k] > 5000); /* every class well represented */
    assert_int_equal(train.labels[0], train_first);
    assert_int_equal(test.labels[0], test_first);
    fm_images_free(&train);
    fm_images_free(&test);
}

static void test_real_mnist(void **state)
{
    (void)state;
    char dir[1024] = "";
#ifdef FM_TEST_DATA_DIR
    snprintf(dir, sizeof dir, "%s/mnist", FM_TEST_DATA_DIR);
#endif
    const char *env = getenv("FEWMUL_DATA");
    if ((!dir[0] || !has_mnist_files(dir)) && env && *env) {
        snprintf(dir, sizeof dir, "%s/mnist", env);
        if (!has_mnist_files(dir))
            snprintf(dir, sizeof dir, "%s", env);
    }
    if (!dir[0] || !has_mnist_files(dir)) {
        SKIP_NO_DATA("MNIST not found (looked in %s; set FEWMUL_DATA)",
                     dir[0] ? dir : "nowhere: FEWMUL_DATA is unset");
    }
    char spec[1100];
    snprintf(spec, sizeof spec, "mnist:%s", dir);
    check_real(spec, 5, 7);
}

static void test_real_fashion(void **state)
{
    (void)state;
    if (!has_mnist_files(FM_FASHION_DIR)) {
        SKIP_NO_DATA("Fashion-MNIST not found at %s (Debian's dataset-fashion-mnist)",
                     FM_FASHION_DIR);
    }
    check_real("fashion", 9, 9); /* an ankle boot starts both sets */
}

/* A named FIFO without a writer is read as a pipe that gives nothing: it is
 * refused at once (an alarm ends the test if open() waits for a writer), and
 * a device is no input at all. */
static void test_fifo_without_writer(void **state)
{
    (void)state;
    const char *im = tpath("f-images"), *lb = tpath("f-labels"), *fifo = tpath("f-fifo");
    write_good(im, lb, 0, 0);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(10);
    expect_fail(fifo, lb, FM_ETRUNC, fifo, "a pipe or FIFO that gave no data", NULL);
    expect_fail(im, fifo, FM_ETRUNC, fifo, "gave no data", NULL);
    expect_fail("/dev/zero", lb, FM_EIO, "/dev/zero", "not a regular file (a character device)",
                NULL);
    alarm(0);
    unlink(fifo);
}

/* A data file that cannot be looked at is no missing file: a loop of
 * symbolic links is FM_EIO naming it and the system's reason. */
static void test_load_symlink_loop(void **state)
{
    (void)state;
    write_set("set-loop", 0, 0, 5, 4, 3);
    char dir[512], path[600], spec[600];
    snprintf(dir, sizeof dir, "%s/set-loop", tmpdir);
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(symlink("train-images-idx3-ubyte", path), 0);
    snprintf(spec, sizeof spec, "idx:%s", dir);
    fm_images train;
    assert_int_equal(fm_data_load(spec, &train, NULL), FM_EIO);
    assert_zeroed(&train);
    assert_message_has(path);
    assert_message_has("Too many levels of symbolic links");
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        T(test_raw_loads),
        T(test_gzip_loads),
        T(test_gzip_multi_member),
        T(test_through_pipes),
        T(test_missing_file),
        T(test_unreadable),
        T(test_fifo_without_writer),
        T(test_null_arguments),
        T(test_wrong_magic),
        T(test_unsupported_type),
        T(test_truncated_images),
        T(test_truncated_gzip_stream),
        T(test_truncated_header),
        T(test_count_mismatch),
        T(test_label_out_of_range),
        T(test_extra_bytes),
        T(test_corrupt_gzip),
        T(test_zero_dims),
        T(test_absurd_dims),
        T(test_huge_header_small_file),
        T(test_out_of_memory),
        T(test_load_unknown_spec),
        T(test_load_missing_dir),
        T(test_load_set),
        T(test_load_missing_file),
        T(test_load_shape_mismatch),
        T(test_load_bad_file_in_set),
        T(test_load_symlink_loop),
        T(test_real_mnist),
        T(test_real_fashion),
    };
    return RUN_DATA_TESTS(argc, argv, tests, group_setup, group_teardown);
}
