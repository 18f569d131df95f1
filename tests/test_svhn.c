/* test_svhn.c — tests of the SVHN reader (fm_svhn_read) on MAT files built byte
 * by byte from the level-5 format: plain and compressed elements, both byte
 * orders, small data elements, labels of every numeric type, variables in any
 * order among others; every truncation and malformed variant with its error;
 * "svhn:DIR" with and without extra_32x32.mat; fm_images_split_balanced. */
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
#include <zlib.h>

#include "fewmul.h"

#define SUPPORT_NAME "svhn"
#include "support.h"
#include "data_tests.h"

#define IMG 3072

/* Data types and array classes of the MAT-File Format document. */
enum {
    miINT8 = 1, miUINT8, miINT16, miUINT16, miINT32, miUINT32, miSINGLE,
    miDOUBLE = 9, miINT64 = 12, miUINT64, miMATRIX, miCOMPRESSED, miUTF8
};
enum {
    mxCELL = 1, mxSTRUCT, mxOBJECT, mxCHAR, mxSPARSE, mxDOUBLE, mxSINGLE, mxINT8, mxUINT8,
    mxINT16, mxUINT16, mxINT32, mxUINT32, mxINT64, mxUINT64, mxFUNCTION, mxOPAQUE
};
#define FLAG_COMPLEX 0x0800u
#define FLAG_LOGICAL 0x0200u

/* ---- a MAT file builder ------------------------------------------------------ */

typedef struct mat {
    uint8_t *b;
    size_t n, cap;
    int big;
    size_t starts[16]; /* offsets of the top-level elements */
    int nstarts;
} mat;

static void put(mat *m, const void *p, size_t n)
{
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2 + 64;
        m->b = realloc(m->b, m->cap);
        assert_non_null(m->b);
    }
    if (n)
        memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void put8(mat *m, uint8_t v) { put(m, &v, 1); }

static void put_uint(mat *m, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        put8(m, (uint8_t)(v >> 8 * (m->big ? bytes - 1 - i : i)));
}

static void put16(mat *m, uint32_t v) { put_uint(m, v, 2); }
static void put32(mat *m, uint32_t v) { put_uint(m, v, 4); }

static void put_pad(mat *m)
{
    while (m->n % 8)
        put8(m, 0);
}

static void put_tag(mat *m, uint32_t type, uint32_t bytes)
{
    put32(m, type);
    put32(m, bytes);
}

static int type_size(int type)
{
    switch (type) {
    case miINT8: case miUINT8: return 1;
    case miINT16: case miUINT16: return 2;
    case miINT32: case miUINT32: case miSINGLE: return 4;
    default: return 8;
    }
}

/* One value v of data type `type`, in m's byte order. */
static void put_value(mat *m, int type, double v)
{
    switch (type) {
    case miINT8: put8(m, (uint8_t)(int8_t)v); break;
    case miUINT8: put8(m, (uint8_t)v); break;
    case miINT16: put16(m, (uint16_t)(int16_t)v); break;
    case miUINT16: put16(m, (uint16_t)v); break;
    case miINT32: put32(m, (uint32_t)(int32_t)v); break;
    case miUINT32: put32(m, (uint32_t)v); break;
    case miINT64: put_uint(m, (uint64_t)(int64_t)v, 8); break;
    case miUINT64: put_uint(m, (uint64_t)v, 8); break;
    case miSINGLE: {
        float f = (float)v;
        uint32_t u;
        memcpy(&u, &f, 4);
        put32(m, u);
        break;
    }
    default: {
        uint64_t u;
        memcpy(&u, &v, 8);
        put_uint(m, u, 8);
        break;
    }
    }
}

/* The 128-byte header: text, subsystem offset, version, endian indicator. */
static void put_header(mat *m, int big, unsigned version, const char *endian)
{
    memset(m, 0, sizeof *m);
    m->big = big;
    char text[117];
    snprintf(text, sizeof text, "%-116s", "MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by fewmul's tests");
    put(m, text, 116);
    for (int i = 0; i < 8; i++)
        put8(m, ' ');
    put16(m, version);
    put(m, endian ? endian : big ? "MI" : "IM", 2);
}

typedef struct var {
    const char *name;
    int klass;
    uint32_t flags;         /* FLAG_COMPLEX, FLAG_LOGICAL */
    int ndims;
    uint32_t dims[5];
    int type;               /* the real part's data type */
    const uint8_t *bytes;   /* miUINT8 data as is, or ... */
    const double *values;   /* ... values converted to `type` */
    size_t count;
    int name_sde, data_sde; /* small data element form where it fits */
    int compressed;
    uint32_t inner_extra;   /* added to the miMATRIX byte count (mismatch tests) */
    size_t stream_junk;     /* zero bytes inflated after the element */
    size_t after_stream;    /* bytes after the zlib stream inside the element */
    size_t cut_stream;      /* keep only this many compressed bytes (0: all) */
} var;

/* A miMATRIX element: array flags, dimensions, name, real part. */
static void put_matrix(mat *out, const var *v)
{
    mat body;
    memset(&body, 0, sizeof body);
    body.big = out->big;
    put_tag(&body, miUINT32, 8);
    put32(&body, (uint32_t)v->klass | v->flags);
    put32(&body, 0);
    put_tag(&body, miINT32, 4u * (uint32_t)v->ndims);
    for (int i = 0; i < v->ndims; i++)
        put32(&body, v->dims[i]);
    put_pad(&body);
    uint32_t len = (uint32_t)strlen(v->name);
    if (v->name_sde && len > 0 && len <= 4) {
        put32(&body, len << 16 | miINT8);
        put(&body, v->name, len);
    } else {
        put_tag(&body, miINT8, len);
        put(&body, v->name, len);
    }
    put_pad(&body);
    uint32_t bytes = (uint32_t)(v->count * (size_t)type_size(v->type));
    if (v->data_sde && bytes > 0 && bytes <= 4)
        put32(&body, bytes << 16 | (uint32_t)v->type);
    else
        put_tag(&body, (uint32_t)v->type, bytes);
    if (v->bytes)
        put(&body, v->bytes, v->count);
    else
        for (size_t i = 0; i < v->count; i++)
            put_value(&body, v->type, v->values[i]);
    put_pad(&body);
    put_tag(out, miMATRIX, (uint32_t)body.n + v->inner_extra);
    put(out, body.b, body.n);
    free(body.b);
}

/* Appends variable v, plain or as a miCOMPRESSED element (zlib's compress2
 * of the whole miMATRIX element, no padding after it). */
static void put_var(mat *m, const var *v)
{
    m->starts[m->nstarts++] = m->n;
    if (!v->compressed) {
        put_matrix(m, v);
        return;
    }
    mat inner;
    memset(&inner, 0, sizeof inner);
    inner.big = m->big;
    put_matrix(&inner, v);
    for (size_t i = 0; i < v->stream_junk; i++)
        put8(&inner, 0);
    uLongf clen = compressBound(inner.n);
    uint8_t *z = malloc(clen);
    assert_int_equal(compress2(z, &clen, inner.b, inner.n, 6), Z_OK);
    if (v->cut_stream)
        clen = v->cut_stream;
    put_tag(m, miCOMPRESSED, (uint32_t)(clen + v->after_stream));
    put(m, z, clen);
    for (size_t i = 0; i < v->after_stream; i++)
        put8(m, 0xa5);
    free(z);
    free(inner.b);
}

static void write_mat(const char *path, const mat *m)
{
    /* A new file each time: ext4 flushes a file truncated and rewritten on
     * close, which would make the many rewrites here slow. */
    unlink(path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(m->b, 1, m->n, f), m->n);
    assert_int_equal(fclose(f), 0);
}

/* ---- SVHN content ------------------------------------------------------------ */

/* Pixel (row r, column c, channel ch) of image n of data set `set`. */
static uint8_t pix(int set, int n, int r, int c, int ch)
{
    /* a full-avalanche mix, so that the pixels do not compress */
    uint32_t h = (uint32_t)(((set * 4096 + n) * 3 + ch) * 1024 + c * 32 + r) * 0x9e3779b1u;
    h ^= h >> 15;
    h *= 0x85ebca77u;
    h ^= h >> 13;
    return (uint8_t)h;
}

/* X as MATLAB stores it: column-major, X(r, c, ch, n) at r + 32c + 1024ch + 3072n. */
static uint8_t *make_x(int set, int n)
{
    uint8_t *x = malloc((size_t)n * IMG);
    assert_non_null(x);
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < 3; ch++)
            for (int c = 0; c < 32; c++)
                for (int r = 0; r < 32; r++)
                    x[r + 32 * c + 1024 * ch + (size_t)IMG * i] = pix(set, i, r, c, ch);
    return x;
}

static double label_of(int set, int n) { return (double)((set * 7 + n * 3) % 10 + 1); }

/* How test files vary. */
typedef struct svhn_file {
    int set, n;            /* pattern and image count */
    int big, compressed, y_first;
    int y_type, y_class;   /* default miDOUBLE, mxDOUBLE */
    int sde;               /* small data elements for names and short data */
    int others;            /* unrelated variables around X and y */
    const double *labels;  /* default label_of() */
    int ny;                /* y count if not n */
    int omit_x, omit_y;
    uint32_t pad;          /* bytes of a plain uint8 variable 'pad' put first (0: none) */
} svhn_file;

static void put_others(mat *m, const svhn_file *s, int where)
{
    if (!s->others)
        return;
    static const double junk[4] = {1.5, -2, 3e9, 0.25};
    var a = {.name = where ? "Xtra" : "yy", .klass = mxDOUBLE, .ndims = 2, .dims = {2, 2},
             .type = miDOUBLE, .values = junk, .count = 4, .compressed = !s->compressed};
    put_var(m, &a);
    /* A char array, an unnamed one, a long name, an opaque object: all skipped. */
    static const double text[5] = {'h', 'e', 'l', 'l', 'o'};
    var b = {.name = where ? "X_" : "__header__", .klass = mxCHAR, .ndims = 2, .dims = {1, 5},
             .type = miUINT16, .values = text, .count = 5, .compressed = s->compressed};
    put_var(m, &b);
    var c = {.name = "", .klass = mxUINT8, .ndims = 2, .dims = {1, 3}, .type = miUINT8,
             .bytes = (const uint8_t *)"abc", .count = 3};
    put_var(m, &c);
    var d = {.name = "a_name_longer_than_the_sixty_three_characters_matlab_allows_it_at_all",
             .klass = mxDOUBLE, .ndims = 2, .dims = {1, 1}, .type = miDOUBLE, .values = junk,
             .count = 1, .compressed = s->compressed};
    put_var(m, &d);
    if (where) { /* flags saying "opaque", then bytes no reader could parse */
        m->starts[m->nstarts++] = m->n;
        put_tag(m, miMATRIX, 32);
        put_tag(m, miUINT32, 8);
        put32(m, mxOPAQUE);
        put32(m, 0);
        put(m, "not dims or a name here!", 16);
    }
}

static void build(mat *m, const svhn_file *s)
{
    put_header(m, s->big, 0x0100, NULL);
    if (s->pad) {
        uint8_t *zeros = calloc(s->pad, 1);
        assert_non_null(zeros);
        var vp = {.name = "pad", .klass = mxUINT8, .ndims = 2, .dims = {1, s->pad},
                  .type = miUINT8, .bytes = zeros, .count = s->pad};
        put_var(m, &vp);
        free(zeros);
    }
    uint8_t *x = make_x(s->set, s->n);
    int ny = s->ny ? s->ny : s->n;
    double *y = malloc(sizeof(double) * (size_t)ny);
    for (int i = 0; i < ny; i++)
        y[i] = s->labels ? s->labels[i] : label_of(s->set, i);
    var vx = {.name = "X", .klass = mxUINT8, .ndims = s->n == 1 ? 3 : 4, .dims = {32, 32, 3, (uint32_t)s->n},
              .type = miUINT8, .bytes = x, .count = (size_t)s->n * IMG, .name_sde = s->sde,
              .compressed = s->compressed};
    var vy = {.name = "y", .klass = s->y_class ? s->y_class : mxDOUBLE, .ndims = 2, .dims = {(uint32_t)ny, 1},
              .type = s->y_type ? s->y_type : miDOUBLE, .values = y, .count = (size_t)ny,
              .name_sde = s->sde, .data_sde = s->sde, .compressed = s->compressed};
    put_others(m, s, 0);
    if (!s->omit_y && s->y_first)
        put_var(m, &vy);
    if (!s->omit_x)
        put_var(m, &vx);
    put_others(m, s, 1);
    if (!s->omit_y && !s->y_first)
        put_var(m, &vy);
    free(x);
    free(y);
}

static void check_images(const fm_images *im, int offset, const svhn_file *s)
{
    assert_int_equal(im->height, 32);
    assert_int_equal(im->width, 32);
    assert_int_equal(im->channels, 3);
    for (int i = 0; i < s->n; i++) {
        double want = s->labels ? s->labels[i] : label_of(s->set, i);
        assert_int_equal(im->labels[offset + i], (int)want % 10);
        const uint8_t *px = im->pixels + (size_t)(offset + i) * IMG;
        for (int r = 0; r < 32; r++)
            for (int c = 0; c < 32; c++)
                for (int ch = 0; ch < 3; ch++)
                    if (px[(r * 32 + c) * 3 + ch] != pix(s->set, i, r, c, ch))
                        fail_msg("image %d: row %d col %d channel %d is %u, expected %u", i, r, c,
                                 ch, px[(r * 32 + c) * 3 + ch], pix(s->set, i, r, c, ch));
    }
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

static void expect_ok(const char *path, const svhn_file *s)
{
    fm_images out;
    int err = fm_svhn_read(path, &out);
    if (err)
        fail_msg("%s: %s", fm_strerror(err), fm_last_error());
    assert_int_equal(out.count, s->n);
    check_images(&out, 0, s);
    fm_images_free(&out);
}

static void expect_fail(const char *path, int code, const char *a, const char *b)
{
    fm_images out;
    memset(&out, 0x5a, sizeof out);
    int err = fm_svhn_read(path, &out);
    if (err != code)
        fail_msg("%s: expected %s, got %s: %s", path, fm_strerror(code), fm_strerror(err),
                 fm_last_error());
    assert_zeroed(&out);
    assert_message_has(path);
    assert_message_has(a);
    assert_message_has(b);
}

/* Builds s, writes it to name and expects the failure. */
static void build_fail(const char *name, const svhn_file *s, int code, const char *a, const char *b)
{
    mat m;
    build(&m, s);
    write_mat(tpath(name), &m);
    free(m.b);
    expect_fail(tpath(name), code, a, b);
}

/* ---- good files ------------------------------------------------------------- */

static void test_plain_little_endian(void **state)
{
    (void)state;
    static const double labels[3] = {1, 10, 5}; /* 10 is the digit 0 */
    svhn_file s = {.n = 3, .labels = labels};
    mat m;
    build(&m, &s);
    /* The layout the format document gives: header, then X's miMATRIX. */
    assert_int_equal(m.starts[0], 128);
    assert_memory_equal(m.b + 128, "\x0e\0\0\0", 4);
    write_mat(tpath("plain.mat"), &m);
    free(m.b);
    fm_images out;
    assert_int_equal(fm_svhn_read(tpath("plain.mat"), &out), FM_OK);
    assert_int_equal(out.count, 3);
    assert_int_equal(out.labels[0], 1);
    assert_int_equal(out.labels[1], 0);
    assert_int_equal(out.labels[2], 5);
    check_images(&out, 0, &s);
    fm_images_free(&out);
    assert_zeroed(&out);
}

static void test_every_variant(void **state)
{
    (void)state;
    /* Byte order x compression x variable order x label type x small data
     * elements x unrelated variables: every combination reads the same. */
    static const int y_types[2] = {miDOUBLE, miUINT8};
    for (int k = 0; k < 64; k++) {
        svhn_file s = {.set = k, .n = 2 + k % 3, .big = k & 1, .compressed = k >> 1 & 1,
                       .y_first = k >> 2 & 1, .y_type = y_types[k >> 3 & 1], .sde = k >> 4 & 1,
                       .others = k >> 5 & 1};
        mat m;
        build(&m, &s);
        write_mat(tpath("variant.mat"), &m);
        free(m.b);
        memset(&track, 0, sizeof track);
        expect_ok(tpath("variant.mat"), &s);
        assert_int_equal(track.live, 0);
    }
}

static void test_read_ahead_boundaries(void **state)
{
    (void)state;
    /* The reader reads the file 256 KiB at a time. A variable 'pad' before X
     * and y, skipped inside the read-ahead or seeked over past its end, moves
     * the end of the read-ahead through X's tag, its subelements, its data and
     * y, plain or compressed, and nothing changes. (fuzz_svhn reads every
     * fourth input with such a pad too.) */
    static const uint32_t before_end[] = {0, 8, 24, 40, 56, 64, 3000, 9304};
    const uint32_t buffer = 256u * 1024u, pad_overhead = 64; /* pad's tag, flags, dims, name */
    for (int far = 0; far < 2; far++)
        for (size_t k = 0; k < sizeof before_end / sizeof *before_end; k++)
            for (int compressed = 0; compressed < 2; compressed++) {
                svhn_file s = {.set = (int)k, .n = 3, .compressed = compressed, .big = (int)k & 1,
                               .pad = (far + 1) * buffer - 128 - pad_overhead - before_end[k]};
                mat m;
                build(&m, &s);
                assert_int_equal(m.starts[1], (size_t)(far + 1) * buffer - before_end[k]);
                write_mat(tpath("read-ahead.mat"), &m);
                free(m.b);
                memset(&track, 0, sizeof track);
                expect_ok(tpath("read-ahead.mat"), &s);
                assert_int_equal(track.live, 0);
            }
}

static void test_label_types(void **state)
{
    (void)state;
    /* MATLAB stores y's values in the smallest type that holds them, whatever
     * its class; every numeric type and class reads. */
    static const int types[10] = {miINT8, miUINT8, miINT16, miUINT16, miINT32,
                                  miUINT32, miSINGLE, miDOUBLE, miINT64, miUINT64};
    static const int classes[5] = {mxDOUBLE, mxSINGLE, mxUINT8, mxINT32, mxUINT64};
    for (int t = 0; t < 10; t++)
        for (int c = 0; c < 5; c++)
            for (int big = 0; big < 2; big++) {
                svhn_file s = {.set = t, .n = 4, .big = big, .y_type = types[t], .y_class = classes[c],
                               .compressed = c & 1};
                mat m;
                build(&m, &s);
                write_mat(tpath("types.mat"), &m);
                free(m.b);
                expect_ok(tpath("types.mat"), &s);
            }
}

static void test_small_data_elements(void **state)
{
    (void)state;
    /* Names of up to 4 characters and data of up to 4 bytes may sit in the
     * tag itself: check the form is really used, in both byte orders. */
    for (int big = 0; big < 2; big++) {
        svhn_file s = {.set = 3, .n = 3, .big = big, .y_type = miUINT8, .sde = 1, .y_first = 1};
        mat m;
        build(&m, &s);
        /* y first: tag, flags (16), dims (16), then the name "y" in a small element */
        const uint8_t *name = m.b + 128 + 8 + 16 + 16;
        static const uint8_t le[8] = {1, 0, 1, 0, 'y', 0, 0, 0}, be[8] = {0, 1, 0, 1, 'y', 0, 0, 0};
        assert_memory_equal(name, big ? be : le, 8);
        const uint8_t *data = name + 8;
        static const uint8_t le_d[4] = {2, 0, 3, 0}, be_d[4] = {0, 3, 0, 2};
        assert_memory_equal(data, big ? be_d : le_d, 4);
        write_mat(tpath("sde.mat"), &m);
        free(m.b);
        expect_ok(tpath("sde.mat"), &s);
    }
}

static void test_single_image(void **state)
{
    (void)state;
    /* MATLAB drops the trailing singleton dimension: one image is 32x32x3. */
    svhn_file s = {.set = 9, .n = 1, .sde = 1, .y_type = miUINT8};
    mat m;
    build(&m, &s);
    write_mat(tpath("one.mat"), &m);
    free(m.b);
    expect_ok(tpath("one.mat"), &s);
}

/* ---- malformed files ------------------------------------------------------------ */

static void test_every_truncation(void **state)
{
    (void)state;
    for (int compressed = 0; compressed < 2; compressed++) {
        svhn_file s = {.n = 2, .compressed = compressed, .big = compressed, .y_type = miUINT8, .sde = 1};
        mat m;
        build(&m, &s);
        const char *path = tpath("cut.mat");
        write_mat(path, &m);
        /* Shortening one file is much cheaper than writing thousands. */
        for (size_t len = m.n - 1; len != (size_t)-1; len--) {
            assert_int_equal(truncate(path, (off_t)len), 0);
            memset(&track, 0, sizeof track);
            fm_images out;
            int err = fm_svhn_read(path, &out);
            int boundary = len == 128 || len == m.starts[1];
            if (err != (boundary ? FM_EFORMAT : FM_ETRUNC))
                fail_msg("%s, %zu of %zu bytes: %s: %s", compressed ? "compressed" : "plain", len,
                         m.n, fm_strerror(err), fm_last_error());
            assert_message_has(path);
            if (len < 128)
                assert_message_has("truncated MAT header");
            else if (boundary)
                assert_message_has(len == 128 ? "no variable X" : "no variable y");
            assert_zeroed(&out);
            assert_int_equal(track.live, 0);
            assert_true(track.largest <= 256 * 1024 + FM_ALLOC_ALIGN); /* never the declared sizes */
        }
        free(m.b);
    }
}

static void test_bad_header(void **state)
{
    (void)state;
    svhn_file s = {.n = 2};
    mat m;
    build(&m, &s);
    const char *path = tpath("header.mat");
    memcpy(m.b + 126, "XY", 2);
    write_mat(path, &m);
    expect_fail(path, FM_EFORMAT, "not a level-5 MAT file", "endian indicator 0x58 0x59");
    memcpy(m.b + 126, "IM", 2);
    m.b[124] = 0x00; /* version 0x0200: MATLAB 7.3, HDF5 */
    m.b[125] = 0x02;
    write_mat(path, &m);
    expect_fail(path, FM_EUNSUPPORTED, "0x0200", "HDF5");
    m.b[124] = 0x01;
    m.b[125] = 0x01;
    write_mat(path, &m);
    expect_fail(path, FM_EFORMAT, "unknown MAT version 0x0101", NULL);
    m.b[124] = 0x01; /* 0x0100 in big-endian order, in a little-endian file */
    m.b[125] = 0x00;
    write_mat(path, &m);
    expect_fail(path, FM_EFORMAT, "unknown MAT version 0x0001", NULL);
    /* A little-endian file claiming to be big-endian: its first tag, 0e 00 00
     * 00, reads as a small data element of type 0. */
    memcpy(m.b + 126, "MI", 2);
    write_mat(path, &m);
    expect_fail(path, FM_EFORMAT, "unknown element type 0 at offset 128", NULL);
    free(m.b);
    write_mat(path, &(mat){.b = (uint8_t *)"MATLAB 5.0 MAT-file", .n = 19});
    expect_fail(path, FM_ETRUNC, "truncated MAT header (19 of 128 bytes)", NULL);
}

static void test_bad_elements(void **state)
{
    (void)state;
    const char *path = tpath("elements.mat");
    mat m;
    /* A type the format does not define. */
    put_header(&m, 0, 0x0100, NULL);
    put_tag(&m, 99, 8);
    put32(&m, 0);
    put32(&m, 0);
    write_mat(path, &m);
    free(m.b);
    expect_fail(path, FM_EFORMAT, "unknown element type 99 at offset 128", NULL);
    /* A defined type where a variable must be. */
    put_header(&m, 1, 0x0100, NULL);
    put_tag(&m, miUINT8, 3);
    put(&m, "abc\0\0\0\0\0", 8);
    write_mat(path, &m);
    free(m.b);
    expect_fail(path, FM_EFORMAT, "miUINT8 element at offset 128 where a variable", NULL);
    /* A small data element at the top. */
    put_header(&m, 0, 0x0100, NULL);
    put32(&m, 2u << 16 | miMATRIX);
    put32(&m, 0);
    write_mat(path, &m);
    free(m.b);
    expect_fail(path, FM_EFORMAT, "miMATRIX element at offset 128 where a variable", NULL);
    /* A variable larger than the file. */
    put_header(&m, 0, 0x0100, NULL);
    put_tag(&m, miMATRIX, 1000);
    put_tag(&m, miUINT32, 8);
    put32(&m, mxUINT8);
    put32(&m, 0);
    write_mat(path, &m);
    free(m.b);
    expect_fail(path, FM_ETRUNC, "element at offset 128 declares 1000 bytes but only 16 follow", NULL);
    put_header(&m, 1, 0x0100, NULL);
    put_tag(&m, miCOMPRESSED, 0xffffffffu);
    put32(&m, 0);
    write_mat(path, &m);
    free(m.b);
    expect_fail(path, FM_ETRUNC, "declares 4294967295 bytes but only 4 follow", NULL);
    put_header(&m, 0, 0x0100, NULL);
    put_tag(&m, miCOMPRESSED, 0);
    write_mat(path, &m);
    free(m.b);
    expect_fail(path, FM_EFORMAT, "empty compressed element at offset 128", NULL);
    /* A variable that ends after its array flags. */
    put_header(&m, 0, 0x0100, NULL);
    put_tag(&m, miMATRIX, 16);
    put_tag(&m, miUINT32, 8);
    put32(&m, mxDOUBLE);
    put32(&m, 0);
    write_mat(path, &m);
    free(m.b);
    expect_fail(path, FM_EFORMAT, "variable at offset 128: no dimensions (the variable ends first)", NULL);
}

/* X's element with one thing changed, as a whole file with y after it. */
static void build_x_variant(mat *m, int big, const var *x)
{
    put_header(m, big, 0x0100, NULL);
    put_var(m, x);
    static const double y[2] = {1, 2};
    var vy = {.name = "y", .klass = mxDOUBLE, .ndims = 2, .dims = {2, 1}, .type = miDOUBLE,
              .values = y, .count = 2};
    put_var(m, &vy);
}

static var x_var(const uint8_t *x)
{
    return (var){.name = "X", .klass = mxUINT8, .ndims = 4, .dims = {32, 32, 3, 2}, .type = miUINT8,
                 .bytes = x, .count = 2 * IMG, .name_sde = 1};
}

static void expect_x_variant(const char *name, const var *v, int code, const char *a, const char *b)
{
    for (int big = 0; big < 2; big++) {
        mat m;
        build_x_variant(&m, big, v);
        write_mat(tpath(name), &m);
        free(m.b);
        expect_fail(tpath(name), code, a, b);
    }
}

static void test_bad_subelements(void **state)
{
    (void)state;
    uint8_t *x = make_x(0, 2);
    var v = x_var(x);
    /* The real part claims more than the variable holds. */
    mat m;
    put_header(&m, 0, 0x0100, NULL);
    put_var(&m, &v);
    size_t data_tag = 128 + 8 + 16 + 24 + 8; /* flags, dims (4), name "X" (small form) */
    m.b[data_tag + 4] = 0x10; /* 6144 -> 6160 bytes */
    write_mat(tpath("sub.mat"), &m);
    expect_fail(tpath("sub.mat"), FM_EFORMAT, "real part declares 6160 bytes but only 6144 of the variable are left", NULL);
    m.b[data_tag + 4] = 0x00;
    /* A small data element claiming 5 bytes. */
    assert_int_equal(m.b[data_tag - 8 + 2], 1);
    m.b[data_tag - 8 + 2] = 5;
    write_mat(tpath("sub.mat"), &m);
    expect_fail(tpath("sub.mat"), FM_EFORMAT, "name: small data element declares 5 bytes", NULL);
    m.b[data_tag - 8 + 2] = 1;
    /* Array flags of the wrong type. */
    m.b[128 + 8] = miINT32;
    write_mat(tpath("sub.mat"), &m);
    expect_fail(tpath("sub.mat"), FM_EFORMAT, "array flags are miINT32 (type 5) of 8 bytes", NULL);
    m.b[128 + 8] = miUINT32;
    /* One dimension only. */
    m.b[128 + 8 + 16 + 4] = 4;
    write_mat(tpath("sub.mat"), &m);
    expect_fail(tpath("sub.mat"), FM_EFORMAT, "dimensions are miINT32 (type 5) of 4 bytes", NULL);
    m.b[128 + 8 + 16 + 4] = 16;
    /* A negative dimension. */
    m.b[128 + 8 + 16 + 8 + 15] = 0x80;
    write_mat(tpath("sub.mat"), &m);
    expect_fail(tpath("sub.mat"), FM_EFORMAT, "negative dimension", NULL);
    m.b[128 + 8 + 16 + 8 + 15] = 0;
    /* Text where the data should be. */
    m.b[data_tag] = miUTF8;
    write_mat(tpath("sub.mat"), &m);
    expect_fail(tpath("sub.mat"), FM_EFORMAT, "variable 'X' at offset 128: its data is miUTF8", NULL);
    m.b[data_tag] = miUINT8;
    write_mat(tpath("sub.mat"), &m);
    expect_fail(tpath("sub.mat"), FM_EFORMAT, "no variable y", NULL);
    free(m.b);
    free(x);
}

static void test_bad_x(void **state)
{
    (void)state;
    uint8_t *x = make_x(0, 2);
    var v = x_var(x);
    v.klass = mxDOUBLE;
    expect_x_variant("x.mat", &v, FM_EFORMAT, "X is double, expected a real uint8 array", NULL);
    v = x_var(x);
    v.flags = FLAG_COMPLEX;
    expect_x_variant("x.mat", &v, FM_EFORMAT, "X is complex uint8", NULL);
    v = x_var(x);
    v.flags = FLAG_LOGICAL;
    expect_x_variant("x.mat", &v, FM_EFORMAT, "X is logical uint8", NULL);
    v = x_var(x);
    v.dims[2] = 1;
    v.dims[3] = 6;
    expect_x_variant("x.mat", &v, FM_EFORMAT, "X is 32x32x1x6, expected 32x32x3xN", NULL);
    v = x_var(x);
    v.ndims = 2;
    v.dims[0] = 3072;
    v.dims[1] = 2;
    expect_x_variant("x.mat", &v, FM_EFORMAT, "X is 3072x2, expected 32x32x3xN", NULL);
    v = x_var(x);
    v.ndims = 5;
    v.dims[4] = 1;
    expect_x_variant("x.mat", &v, FM_EFORMAT, "X is 32x32x3x2x1", NULL);
    v = x_var(x);
    v.dims[3] = 0;
    v.count = 0;
    expect_x_variant("x.mat", &v, FM_EFORMAT, "X is 32x32x3x0: no images", NULL);
    v = x_var(x);
    v.type = miINT8;
    expect_x_variant("x.mat", &v, FM_EFORMAT, "X's data is stored as miINT8, expected miUINT8", NULL);
    v = x_var(x);
    v.count = IMG;
    expect_x_variant("x.mat", &v, FM_EFORMAT, "X's data holds 3072 values but its dimensions 32x32x3x2 need 6144", NULL);
    /* A second X. */
    mat m;
    build_x_variant(&m, 0, &v);
    v = x_var(x);
    put_var(&m, &v);
    write_mat(tpath("x.mat"), &m);
    free(m.b);
    expect_fail(tpath("x.mat"), FM_EFORMAT, "X's data holds", NULL);
    svhn_file s = {.n = 2, .others = 1};
    build(&m, &s);
    v = x_var(x);
    put_var(&m, &v);
    write_mat(tpath("x.mat"), &m);
    free(m.b);
    expect_fail(tpath("x.mat"), FM_EFORMAT, "a second variable X at offset", NULL);
    free(x);
}

static void test_bad_y(void **state)
{
    (void)state;
    for (int y_first = 0; y_first < 2; y_first++) {
        svhn_file s = {.n = 3, .ny = 2, .y_first = y_first};
        build_fail("y.mat", &s, FM_EMISMATCH, y_first ? "X has 3 images but y has 2 labels" : "y has 2 labels but X has 3 images", NULL);
        s.ny = 4;
        s.compressed = 1;
        build_fail("y.mat", &s, FM_EMISMATCH, y_first ? "X has 3 images but y has 4 labels" : "y has 4 labels but X has 3 images", NULL);
    }
    static const double zero[3] = {1, 0, 2}, eleven[3] = {1, 2, 11}, half[3] = {2.5, 1, 1},
                        negative[3] = {1, 1, -1}, nan3[3] = {3, NAN, 1}, big3[3] = {1, 1e300, 1};
    struct {
        const double *labels;
        int type;
        const char *want;
    } cases[] = {
        {zero, miDOUBLE, "y: label 0 at index 1 out of range 1..10"},
        {zero, miUINT8, "y: label 0 at index 1 out of range 1..10"},
        {eleven, miUINT8, "y: label 11 at index 2 out of range 1..10"},
        {eleven, miINT64, "y: label 11 at index 2 out of range 1..10"},
        {half, miDOUBLE, "y: label 2.5 at index 0 is not an integer 1..10"},
        {half, miSINGLE, "y: label 2.5 at index 0 is not an integer"},
        {negative, miINT8, "y: label -1 at index 2 out of range"},
        {negative, miINT32, "y: label -1 at index 2 out of range"},
        {nan3, miDOUBLE, "at index 1 is not an integer"},
        {big3, miDOUBLE, "y: label 1e+300 at index 1 out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int compressed = 0; compressed < 2; compressed++) {
            svhn_file s = {.n = 3, .labels = cases[i].labels, .y_type = cases[i].type, .big = (int)i & 1,
                           .compressed = compressed, .y_first = compressed};
            build_fail("y.mat", &s, FM_EFORMAT, cases[i].want, NULL);
        }
    /* y as a matrix, y of a non-numeric class, complex y. */
    mat m;
    uint8_t *x = make_x(0, 2);
    static const double four[4] = {1, 2, 3, 4};
    var vx = x_var(x);
    var vy = {.name = "y", .klass = mxDOUBLE, .ndims = 2, .dims = {2, 2}, .type = miDOUBLE,
              .values = four, .count = 4};
    put_header(&m, 0, 0x0100, NULL);
    put_var(&m, &vy);
    put_var(&m, &vx);
    write_mat(tpath("y.mat"), &m);
    free(m.b);
    expect_fail(tpath("y.mat"), FM_EFORMAT, "y is 2x2, expected a vector of labels", NULL);
    vy.dims[0] = 2;
    vy.dims[1] = 1;
    vy.count = 2;
    vy.klass = mxCHAR;
    put_header(&m, 0, 0x0100, NULL);
    put_var(&m, &vx);
    put_var(&m, &vy);
    write_mat(tpath("y.mat"), &m);
    free(m.b);
    expect_fail(tpath("y.mat"), FM_EFORMAT, "y is char, expected real numbers", NULL);
    vy.klass = mxDOUBLE;
    vy.flags = FLAG_COMPLEX;
    put_header(&m, 0, 0x0100, NULL);
    put_var(&m, &vx);
    put_var(&m, &vy);
    write_mat(tpath("y.mat"), &m);
    free(m.b);
    expect_fail(tpath("y.mat"), FM_EFORMAT, "y is complex double", NULL);
    vy.flags = 0;
    vy.count = 3;
    put_header(&m, 0, 0x0100, NULL);
    put_var(&m, &vx);
    put_var(&m, &vy);
    write_mat(tpath("y.mat"), &m);
    free(m.b);
    expect_fail(tpath("y.mat"), FM_EFORMAT, "y's data holds 3 values but its dimensions 2x1 need 2", NULL);
    /* 2 labels of miDOUBLE, their byte count made 12 */
    vy.count = 2;
    put_header(&m, 1, 0x0100, NULL);
    put_var(&m, &vx);
    size_t y_at = m.n;
    put_var(&m, &vy);
    size_t count_at = y_at + 8 + 16 + 16 + 16 + 4; /* tag, flags, dims, name "y", data tag */
    assert_int_equal(m.b[count_at + 3], 16);
    m.b[count_at + 3] = 12;
    write_mat(tpath("y.mat"), &m);
    free(m.b);
    char want[160];
    snprintf(want, sizeof want, "variable 'y' at offset %zu: its data of 12 bytes is not a whole "
             "number of 8-byte miDOUBLE values", y_at);
    expect_fail(tpath("y.mat"), FM_EFORMAT, want, NULL);
    free(x);
}

static void test_missing_variables(void **state)
{
    (void)state;
    svhn_file s = {.n = 2, .omit_x = 1, .others = 1};
    build_fail("vars.mat", &s, FM_EFORMAT, "no variable X (the images)", NULL);
    s = (svhn_file){.n = 2, .omit_y = 1, .others = 1, .compressed = 1};
    build_fail("vars.mat", &s, FM_EFORMAT, "no variable y (the labels)", NULL);
    s = (svhn_file){.n = 2, .omit_x = 1, .omit_y = 1};
    build_fail("vars.mat", &s, FM_EFORMAT, "no variable X", NULL);
    /* Names are case-sensitive. */
    mat m;
    put_header(&m, 0, 0x0100, NULL);
    uint8_t *x = make_x(0, 2);
    var v = x_var(x);
    v.name = "x";
    put_var(&m, &v);
    write_mat(tpath("vars.mat"), &m);
    free(m.b);
    free(x);
    expect_fail(tpath("vars.mat"), FM_EFORMAT, "no variable X", NULL);
}

static void test_bad_compression(void **state)
{
    (void)state;
    uint8_t *x = make_x(0, 2);
    var v = x_var(x);
    v.compressed = 1;
    mat m;
    build_x_variant(&m, 0, &v);
    /* zlib header 2 bytes, then deflate data: damage it in the middle. */
    size_t z = 128 + 8;
    size_t zlen = m.starts[1] - z;
    m.b[z + zlen / 2] ^= 0xff;
    m.b[z + zlen / 2 + 1] ^= 0x55;
    write_mat(tpath("z.mat"), &m);
    expect_fail(tpath("z.mat"), FM_EFORMAT, "variable 'X' at offset 128: corrupt zlib stream", NULL);
    m.b[z + zlen / 2] ^= 0xff;
    m.b[z + zlen / 2 + 1] ^= 0x55;
    m.b[z + zlen - 1] ^= 0x01; /* the Adler-32 checksum */
    write_mat(tpath("z.mat"), &m);
    expect_fail(tpath("z.mat"), FM_EFORMAT, "corrupt zlib stream: incorrect data check", NULL);
    m.b[z + zlen - 1] ^= 0x01;
    m.b[z] = 0x00; /* not a zlib header */
    write_mat(tpath("z.mat"), &m);
    expect_fail(tpath("z.mat"), FM_EFORMAT, "variable at offset 128: corrupt zlib stream", NULL);
    free(m.b);

    /* The stream cut short inside a well-formed element. */
    v.cut_stream = 1000;
    expect_x_variant("z.mat", &v, FM_ETRUNC, "variable 'X' at offset 128: truncated zlib stream", NULL);
    v.cut_stream = 5;
    expect_x_variant("z.mat", &v, FM_ETRUNC, "truncated zlib stream", "after 0 inflated bytes");
    v.cut_stream = 0;
    /* Bytes after the stream inside its element. */
    v.after_stream = 3;
    expect_x_variant("z.mat", &v, FM_EFORMAT, "3 bytes follow the zlib stream inside its compressed element", NULL);
    v.after_stream = 0;
    /* The inflated size disagrees with the miMATRIX tag inside. */
    v.inner_extra = 8;
    expect_x_variant("z.mat", &v, FM_EFORMAT, "inflated data ends after 6208 bytes, short of the 6216 its miMATRIX element declares", NULL);
    v.inner_extra = 0;
    v.stream_junk = 8;
    expect_x_variant("z.mat", &v, FM_EFORMAT, "inflated data runs past the 6208 bytes its miMATRIX element declares", NULL);
    v.stream_junk = 0;

    /* A compressed element holding something other than a variable. */
    mat inner, out;
    memset(&inner, 0, sizeof inner);
    put_tag(&inner, miUINT8, 8);
    put(&inner, "12345678", 8);
    uLongf clen = compressBound(inner.n);
    uint8_t *zbuf = malloc(clen);
    assert_int_equal(compress2(zbuf, &clen, inner.b, inner.n, 6), Z_OK);
    put_header(&out, 0, 0x0100, NULL);
    put_tag(&out, miCOMPRESSED, (uint32_t)clen);
    put(&out, zbuf, clen);
    write_mat(tpath("z.mat"), &out);
    free(out.b);
    expect_fail(tpath("z.mat"), FM_EFORMAT, "compressed element at offset 128 holds a miUINT8 element", "expected miMATRIX");

    /* A bomb: a few compressed bytes whose miMATRIX claims 4 GB. */
    inner.n = 0;
    put_tag(&inner, miMATRIX, 0xfffffff0u);
    put_tag(&inner, miUINT32, 8);
    clen = compressBound(inner.n);
    assert_int_equal(compress2(zbuf, &clen, inner.b, inner.n, 6), Z_OK);
    put_header(&out, 0, 0x0100, NULL);
    put_tag(&out, miCOMPRESSED, (uint32_t)clen);
    put(&out, zbuf, clen);
    write_mat(tpath("z.mat"), &out);
    free(out.b);
    memset(&track, 0, sizeof track);
    expect_fail(tpath("z.mat"), FM_EFORMAT, "its miMATRIX declares 4294967280 bytes", "compressed bytes can inflate to");
    assert_true(track.largest <= 256 * 1024 + FM_ALLOC_ALIGN);
    free(inner.b);
    free(zbuf);
    free(x);
}

static void test_declared_sizes_not_trusted(void **state)
{
    (void)state;
    /* X declares 1100 images; the plain file is cut after 10 of them. */
    uint8_t *x = make_x(0, 1100);
    var v = x_var(x);
    v.dims[3] = 1100;
    v.count = 1100 * IMG;
    mat m;
    build_x_variant(&m, 0, &v);
    write_mat(tpath("big.mat"), &(mat){.b = m.b, .n = 128 + 8 + 64 + 10 * IMG});
    memset(&track, 0, sizeof track);
    expect_fail(tpath("big.mat"), FM_ETRUNC, "element at offset 128 declares 3379256 bytes but only 30784 follow", NULL);
    assert_true(track.largest <= 256 * 1024 + FM_ALLOC_ALIGN);
    free(m.b);
    /* Compressed, the stream really holds 10 images: the pixel buffer grows
     * with what inflates, never to the declared 1100 images at once. */
    v.compressed = 1;
    v.count = 10 * IMG;
    /* The real part of 10 images, its byte count patched to 1100 images and
     * the miMATRIX count to match. */
    v.inner_extra = 1090 * IMG;
    put_header(&m, 0, 0x0100, NULL);
    {
        mat inner;
        memset(&inner, 0, sizeof inner);
        put_matrix(&inner, &v);
        uint32_t want = 1100 * IMG;
        memcpy(inner.b + 8 + 16 + 24 + 8 + 4, &want, 4); /* the real part's byte count */
        uLongf clen = compressBound(inner.n);
        uint8_t *z = malloc(clen);
        assert_int_equal(compress2(z, &clen, inner.b, inner.n, 6), Z_OK);
        put_tag(&m, miCOMPRESSED, (uint32_t)clen);
        put(&m, z, clen);
        free(z);
        free(inner.b);
    }
    write_mat(tpath("big.mat"), &m);
    free(m.b);
    memset(&track, 0, sizeof track);
    expect_fail(tpath("big.mat"), FM_EFORMAT, "inflated data ends after", NULL);
    assert_true(track.largest <= 1024 * IMG + FM_ALLOC_ALIGN);
    free(x);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    /* 1100 compressed images: the pixel buffer grows past its first
     * reservation. Every allocation failure is FM_ENOMEM, nothing leaked. */
    svhn_file s = {.set = 2, .n = 1100, .compressed = 1, .y_type = miUINT8, .others = 1};
    mat m;
    build(&m, &s);
    write_mat(tpath("oom.mat"), &m);
    free(m.b);
    for (long k = 1;; k++) {
        memset(&track, 0, sizeof track);
        track.fail_at = k;
        fm_images out;
        int err = fm_svhn_read(tpath("oom.mat"), &out);
        if (err == FM_OK) {
            assert_true(k > 6);
            assert_int_equal(out.count, 1100);
            check_images(&out, 0, &s);
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

static void test_files(void **state)
{
    (void)state;
    const char *nope = tpath("no-such.mat");
    expect_fail(nope, FM_ENOENT, "No such file", NULL);
    mkdir(tpath("a-dir"), 0700);
    expect_fail(tpath("a-dir"), FM_EIO, "directory", NULL);
    fm_images out;
    assert_int_equal(fm_svhn_read(NULL, &out), FM_EINVAL);
    assert_zeroed(&out);
    assert_int_equal(fm_svhn_read("x", NULL), FM_EINVAL);
}

/* ---- "svhn:DIR" ---------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const svhn_file *s)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mat m;
    build(&m, s);
    write_mat(path, &m);
    free(m.b);
}

static void test_load_dir(void **state)
{
    (void)state;
    char dir[600], spec[700], path[700];
    snprintf(dir, sizeof dir, "%s/set", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    svhn_file train = {.set = 1, .n = 3}, test = {.set = 2, .n = 2, .compressed = 1, .big = 1},
              extra = {.set = 3, .n = 4, .compressed = 1, .y_first = 1, .y_type = miUINT8};
    write_file(dir, "train_32x32.mat", &train);
    write_file(dir, "test_32x32.mat", &test);
    snprintf(spec, sizeof spec, "svhn:%s", dir);

    fm_images tr, te;
    int32_t part = -1;
    assert_int_equal(fm_data_load_parts(spec, &tr, &te, &part), FM_OK);
    assert_int_equal(part, 3);
    assert_int_equal(tr.count, 3);
    assert_int_equal(te.count, 2);
    check_images(&tr, 0, &train);
    check_images(&te, 0, &test);
    fm_images_free(&tr);
    fm_images_free(&te);

    write_file(dir, "extra_32x32.mat", &extra);
    assert_int_equal(fm_data_load_parts(spec, &tr, &te, &part), FM_OK);
    assert_int_equal(part, 3); /* train_32x32.mat's images come first */
    assert_int_equal(tr.count, 7);
    check_images(&tr, 0, &train);
    check_images(&tr, 3, &extra);
    check_images(&te, 0, &test);
    fm_images_free(&tr);
    fm_images_free(&te);
    assert_int_equal(fm_data_load(spec, &tr, NULL), FM_OK);
    assert_int_equal(tr.count, 7);
    fm_images_free(&tr);

    /* A broken extra file fails the load; a missing one is fine. */
    snprintf(path, sizeof path, "%s/extra_32x32.mat", dir);
    write_mat(path, &(mat){.b = (uint8_t *)"junk", .n = 4});
    assert_int_equal(fm_data_load_parts(spec, &tr, &te, &part), FM_ETRUNC);
    assert_zeroed(&tr);
    assert_zeroed(&te);
    assert_int_equal(part, 0);
    assert_message_has(path);
    unlink(path);

    snprintf(path, sizeof path, "%s/test_32x32.mat", dir);
    unlink(path);
    memset(&track, 0, sizeof track);
    assert_int_equal(fm_data_load_parts(spec, &tr, &te, &part), FM_ENOENT);
    assert_int_equal(track.largest, 0); /* found missing before reading any */
    assert_message_has(dir);
    assert_message_has("missing test_32x32.mat (SVHN cropped digits");
    assert_int_equal(fm_data_load_parts(spec, &tr, NULL, &part), FM_OK);
    assert_int_equal(part, 3);
    fm_images_free(&tr);
    snprintf(path, sizeof path, "%s/train_32x32.mat", dir);
    unlink(path);
    assert_int_equal(fm_data_load_parts(spec, &tr, NULL, &part), FM_ENOENT);
    assert_message_has("missing train_32x32.mat");
    snprintf(spec, sizeof spec, "svhn:%s/nothing-here", tmpdir);
    assert_int_equal(fm_data_load(spec, NULL, &te), FM_ENOENT);
    assert_message_has("nothing-here");
}

/* ---- fm_images_split_balanced ------------------------------------------------- */

/* count images of 2x1x1: pixel 0 the original index (mod 256), pixel 1 the label. */
static void make_set(fm_images *set, int count, int classes, unsigned seed)
{
    memset(set, 0, sizeof *set);
    set->count = count;
    set->height = 2;
    set->width = 1;
    set->channels = 1;
    set->pixels = malloc((size_t)count * 2);
    set->labels = malloc((size_t)count);
    srand(seed);
    for (int i = 0; i < count; i++) {
        set->labels[i] = (uint8_t)((i + rand() % 3) % classes);
        set->pixels[2 * i] = (uint8_t)i;
        set->pixels[2 * i + 1] = set->labels[i];
    }
}

static void free_set(fm_images *set)
{
    free(set->pixels);
    free(set->labels);
}

/* Checks the split: the first count - held images are the unpicked ones in
 * their order, the held ones follow in theirs, per class `head` from before
 * the boundary and `tail` after. count <= 256 so pixel 0 is the index. */
static void check_split(const fm_images *before, const fm_images *after, int boundary, int head,
                        int tail, int classes)
{
    int held = classes * (head + tail), n = before->count;
    assert_int_equal(after->count, n);
    int seen[256] = {0}, from_head[16] = {0}, from_tail[16] = {0};
    for (int i = 0; i < n; i++) {
        int orig = after->pixels[2 * i];
        assert_int_equal(after->pixels[2 * i + 1], after->labels[i]); /* labels moved along */
        assert_int_equal(after->labels[i], before->labels[orig]);
        seen[orig]++;
        if (i > 0 && i != n - held)
            assert_true(orig > after->pixels[2 * (i - 1)]); /* order kept in both parts */
        if (i >= n - held)
            (orig < boundary ? from_head : from_tail)[after->labels[i]]++;
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
    for (int k = 0; k < classes; k++) {
        assert_int_equal(from_head[k], head);
        assert_int_equal(from_tail[k], tail);
    }
}

static void test_split_balanced(void **state)
{
    (void)state;
    fm_images before, a, b;
    make_set(&before, 200, 4, 1);
    for (int head = 0; head <= 5; head += 5)
        for (int tail = 0; tail <= 3; tail += 3) {
            make_set(&a, 200, 4, 1);
            assert_int_equal(fm_images_split_balanced(&a, 120, head, tail, 4, 42), FM_OK);
            check_split(&before, &a, 120, head, tail, 4);
            /* the same seed picks the same images */
            make_set(&b, 200, 4, 1);
            assert_int_equal(fm_images_split_balanced(&b, 120, head, tail, 4, 42), FM_OK);
            assert_memory_equal(a.pixels, b.pixels, 400);
            free_set(&b);
            free_set(&a);
        }
    /* Another seed picks others. */
    make_set(&a, 200, 4, 1);
    assert_int_equal(fm_images_split_balanced(&a, 120, 5, 3, 4, 42), FM_OK);
    int differ = 0;
    for (uint64_t seed = 1; seed < 4; seed++) {
        make_set(&b, 200, 4, 1);
        assert_int_equal(fm_images_split_balanced(&b, 120, 5, 3, 4, seed), FM_OK);
        check_split(&before, &b, 120, 5, 3, 4);
        differ += memcmp(a.pixels, b.pixels, 400) != 0;
        free_set(&b);
    }
    assert_true(differ >= 2);
    free_set(&a);
    /* Everything held out: nothing is left ahead of it. */
    fm_images tiny = {.count = 4, .height = 2, .width = 1, .channels = 1};
    uint8_t px[8] = {0, 1, 1, 0, 2, 1, 3, 0}, lb[4] = {1, 0, 1, 0};
    tiny.pixels = px;
    tiny.labels = lb;
    assert_int_equal(fm_images_split_balanced(&tiny, 2, 1, 1, 2, 7), FM_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(px[2 * i], i);
    /* boundary at either end */
    make_set(&a, 200, 4, 1);
    assert_int_equal(fm_images_split_balanced(&a, 200, 10, 0, 4, 1), FM_OK);
    check_split(&before, &a, 200, 10, 0, 4);
    free_set(&a);
    make_set(&a, 200, 4, 1);
    assert_int_equal(fm_images_split_balanced(&a, 0, 0, 10, 4, 1), FM_OK);
    check_split(&before, &a, 0, 0, 10, 4);
    free_set(&a);
    free_set(&before);
}

static void test_split_errors(void **state)
{
    (void)state;
    fm_images a, copy;
    make_set(&a, 100, 3, 5);
    make_set(&copy, 100, 3, 5);
    int per_class[2][3] = {{0}};
    for (int i = 0; i < 100; i++)
        per_class[i >= 60][a.labels[i]]++;
    /* One more than class 1 has after the boundary. */
    assert_int_equal(fm_images_split_balanced(&a, 60, 1, per_class[1][1] + 1, 3, 1), FM_EINVAL);
    char want[128];
    snprintf(want, sizeof want, "class 0 has %d images in [60, 100), fewer than the %d per class",
             per_class[1][0], per_class[1][1] + 1);
    if (per_class[1][0] >= per_class[1][1] + 1)
        snprintf(want, sizeof want, "class 1 has %d images in [60, 100)", per_class[1][1]);
    assert_message_has(want);
    assert_memory_equal(a.pixels, copy.pixels, 200); /* nothing moved */
    assert_int_equal(fm_images_split_balanced(&a, 60, 100, 0, 3, 1), FM_EINVAL);
    assert_message_has("in [0, 60), fewer than the 100 per class");
    assert_int_equal(fm_images_split_balanced(&a, 101, 1, 1, 3, 1), FM_EINVAL);
    assert_message_has("boundary 101 outside 0..100");
    assert_int_equal(fm_images_split_balanced(&a, -1, 1, 1, 3, 1), FM_EINVAL);
    assert_int_equal(fm_images_split_balanced(&a, 50, -1, 1, 3, 1), FM_EINVAL);
    assert_int_equal(fm_images_split_balanced(&a, 50, 1, 1, 0, 1), FM_EINVAL);
    assert_int_equal(fm_images_split_balanced(&a, 50, 1, 1, 257, 1), FM_EINVAL);
    assert_int_equal(fm_images_split_balanced(&a, 50, 1, 1, 2, 1), FM_EINVAL);
    assert_message_has("label 2 at index");
    assert_message_has("is not below 2 classes");
    assert_int_equal(fm_images_split_balanced(NULL, 0, 0, 0, 1, 1), FM_EINVAL);
    assert_memory_equal(a.pixels, copy.pixels, 200);
    assert_memory_equal(a.labels, copy.labels, 100);
    /* Holding out nothing moves nothing. */
    assert_int_equal(fm_images_split_balanced(&a, 60, 0, 0, 3, 1), FM_OK);
    assert_memory_equal(a.pixels, copy.pixels, 200);
    fm_images empty = {0};
    assert_int_equal(fm_images_split_balanced(&empty, 0, 0, 0, 10, 1), FM_OK);
    assert_int_equal(fm_images_split_balanced(&empty, 0, 1, 0, 10, 1), FM_EINVAL);
    /* Every allocation failure is FM_ENOMEM with the set untouched. */
    for (long k = 1; k <= 3; k++) {
        memset(&track, 0, sizeof track);
        track.fail_at = k;
        assert_int_equal(fm_images_split_balanced(&a, 60, 2, 2, 3, 1), FM_ENOMEM);
        assert_int_equal(track.live, 0);
        assert_memory_equal(a.pixels, copy.pixels, 200);
    }
    track.fail_at = 0;
    free_set(&a);
    free_set(&copy);
}

/* ---- the real data set, where a user has it ------------------------------------ */

static void test_real_svhn(void **state)
{
    (void)state;
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
        snprintf(path, sizeof path, "%s/svhn/train_32x32.mat", roots[i]);
        if (stat(path, &st) == 0)
            snprintf(spec, sizeof spec, "svhn:%s/svhn", roots[i]);
    }
    if (!spec[0]) {
        SKIP_NO_DATA("SVHN not found (looked for svhn/ in ../shared/data and $FEWMUL_DATA)");
    }
    fm_images train, test;
    int32_t part = 0;
    int err = fm_data_load_parts(spec, &train, &test, &part);
    if (err)
        fail_msg("%s: %s", spec, fm_last_error());
    assert_int_equal(part, 73257);
    assert_true(train.count == 73257 || train.count == 73257 + 531131);
    assert_int_equal(test.count, 26032);
    int seen[10] = {0};
    for (int i = 0; i < train.count; i++) {
        assert_true(train.labels[i] < 10);
        seen[train.labels[i]]++;
    }
    for (int k = 0; k < 10; k++)
        assert_true(seen[k] > 4000);
    fm_images_free(&train);
    fm_images_free(&test);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        T(test_plain_little_endian),
        T(test_every_variant),
        T(test_read_ahead_boundaries),
        T(test_label_types),
        T(test_small_data_elements),
        T(test_single_image),
        T(test_every_truncation),
        T(test_bad_header),
        T(test_bad_elements),
        T(test_bad_subelements),
        T(test_bad_x),
        T(test_bad_y),
        T(test_missing_variables),
        T(test_bad_compression),
        T(test_declared_sizes_not_trusted),
        T(test_out_of_memory),
        T(test_files),
        T(test_load_dir),
        T(test_split_balanced),
        T(test_split_errors),
        T(test_real_svhn),
    };
    return RUN_DATA_TESTS(argc, argv, tests, group_setup, group_teardown);
}
