/* test_deploy_file.c — tests of the packed deployment model file
 * (docs/format.md; src/deploy/deploy_file.c): exact round trips of every weight
 * kind and activation through a file and through memory, the documented
 * layout and size formula, the size of binary against fp32 networks, and the
 * refusal of every truncation, every single-bit flip, oversized counts (before
 * anything is allocated), newer versions, trailing bytes and invalid codes,
 * each with its error code and a message naming the file. Also the atomic
 * save and allocation failures, and the fuzzer's seed files. */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "bytes.h"
#include "deploy.h"
#include "fewmul.h"
#include "internal.h"

#define SUPPORT_NAME "deploy-file"
#include "support.h"
#include "deploy_nets.h"

/* ---- networks with maps (version 2; the builders are in deploy_nets.h) --- */

/* The small convolutional network most version 2 tests use, on a 7 x 6 x 2
 * input: a padded binary convolution (sign) and its max-pool, a binary
 * convolution of the +-1 map (relu), global average pooling, a ternary dense
 * layer. With `other` set: a synapse convolution (3 x 2 kernel, stride 2,
 * padding 1, 0; relu) and an fp32 dense layer instead. */
static fm_deploy *conv_net(uint32_t seed, int other)
{
    fm_deploy *d = start_net(7, 6, 2, other ? 2 : 5, 3, seed);
    d->source_mode = other ? FM_WEIGHTS_SYNAPSE : FM_WEIGHTS_BC_DET;
    int h = 7, w = 6, c = 2;
    int k = 0;
    if (other) {
        add_conv(d, k++, &h, &w, &c, 5, 3, 2, 2, 1, 0, 4, 3, FM_DW_SYNAPSE, 16, FM_ACT_RELU, 0);
    } else {
        add_conv(d, k++, &h, &w, &c, 5, 3, 3, 1, 1, 1, 7, 6, FM_DW_BINARY, 0, FM_ACT_SIGN, 0);
        add_pool(d, k++, &h, &w, c, 2, 2);
        add_conv(d, k++, &h, &w, &c, 4, 2, 2, 1, 0, 0, 2, 2, FM_DW_BINARY, 0, FM_ACT_RELU, 1);
        add_pool(d, k++, &h, &w, c, 0, 0);
    }
    fm_deploy_layer *L = &d->layers[k];
    L->type = FM_DL_DENSE;
    L->in = h * w * c;
    L->out = 3;
    L->weights = other ? FM_DW_FP32 : FM_DW_TERNARY;
    L->bits = other ? 32 : 2;
    L->unit = 1.0f;
    L->act = FM_ACT_NONE;
    assert_int_equal(fmi_deploy_layer_alloc(L), FM_OK);
    fill_layer(L);
    assert_int_equal(fmi_deploy_validate(d, "conv_net"), FM_OK);
    return d;
}

/* The size docs/format.md gives, computed here independently of the library. */
static uint64_t documented_bytes(const fm_deploy *d)
{
    uint64_t bytes = 64 + 4 * (uint64_t)d->input_dim;
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        if (L->type == FM_DL_POOL || L->type == FM_DL_GAP) {
            bytes += L->type == FM_DL_POOL ? 36 : 28;
            continue;
        }
        uint64_t row = ((uint64_t)L->in * (uint64_t)L->bits + 7) / 8;
        bytes += 48 + 4 * (uint64_t)L->levels + 8 * (uint64_t)L->out + (uint64_t)L->out * row;
        bytes += L->type == FM_DL_CONV ? 40 : 0;
    }
    return bytes;
}

static void assert_floats_identical(const float *a, const float *b, size_t n)
{
    if (n)
        assert_memory_equal(a, b, n * sizeof *a);
}

/* Every field the file carries, and every packed byte. */
static void assert_nets_equal(const fm_deploy *a, const fm_deploy *b)
{
    assert_int_equal(a->height, b->height);
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->channels, b->channels);
    assert_int_equal(a->input_dim, b->input_dim);
    assert_int_equal(a->classes, b->classes);
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->source_mode, b->source_mode);
    assert_int_equal(a->export_how, b->export_how);
    assert_floats_identical(&a->input_scale, &b->input_scale, 1);
    assert_floats_identical(a->input_mean, b->input_mean, (size_t)a->input_dim);
    for (int l = 0; l < a->n_layers; l++) {
        const fm_deploy_layer *x = &a->layers[l], *y = &b->layers[l];
        assert_int_equal(x->type, y->type);
        const int32_t gx[11] = {x->in_h, x->in_w, x->in_c, x->out_h, x->out_w, x->out_c,
                                x->k_h, x->k_w, x->stride, x->pad_top, x->pad_left};
        const int32_t gy[11] = {y->in_h, y->in_w, y->in_c, y->out_h, y->out_w, y->out_c,
                                y->k_h, y->k_w, y->stride, y->pad_top, y->pad_left};
        assert_memory_equal(gx, gy, sizeof gx);
        assert_int_equal(x->in, y->in);
        assert_int_equal(x->out, y->out);
        assert_int_equal(x->weights, y->weights);
        assert_int_equal(x->bits, y->bits);
        assert_int_equal(x->levels, y->levels);
        assert_int_equal(x->act, y->act);
        assert_int_equal(x->binary_input, y->binary_input);
        assert_int_equal(x->row_bytes, y->row_bytes);
        assert_floats_identical(&x->unit, &y->unit, 1);
        assert_floats_identical(x->magnitudes, y->magnitudes, (size_t)x->levels);
        if (!fmi_deploy_weighted(x)) { /* pools: no weights, scales or offsets */
            assert_true(!x->packed && !y->packed && !x->scale && !y->scale);
            continue;
        }
        assert_floats_identical(x->scale, y->scale, (size_t)x->out);
        assert_floats_identical(x->offset, y->offset, (size_t)x->out);
        assert_memory_equal(x->packed, y->packed, (size_t)x->out * x->row_bytes);
    }
}

/* ---- files and bytes ---------------------------------------------------- */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p + 4) << 32 | le32(p); }
static void set_le32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}
static void set_le64(uint8_t *p, uint64_t v)
{
    set_le32(p, (uint32_t)v);
    set_le32(p + 4, (uint32_t)(v >> 32));
}
static uint32_t crc_of(const uint8_t *p, size_t n) { return (uint32_t)crc32(0L, p, (uInt)n); }

/* A network saved to tmpdir/name and its bytes (malloc'ed). */
static uint8_t *saved_bytes(const fm_deploy *d, const char *name, size_t *n)
{
    assert_int_equal(fm_deploy_save(d, tpath(name)), FM_OK);
    return read_whole_file(tpath(name), n);
}

/* Offsets of a file's sections, from its own length fields. */
typedef struct layout {
    size_t header_bytes;
    int n_layers;
    size_t layer_at[128]; /* offset of each layer section's tag */
} layout;

static layout layout_of(const uint8_t *p, size_t n)
{
    layout lay = {0};
    lay.header_bytes = le32(p + 12);
    lay.n_layers = (int)le32(p + 36);
    size_t at = lay.header_bytes;
    for (int l = 0; l < lay.n_layers; l++) {
        assert_true(at + 12 <= n);
        lay.layer_at[l] = at;
        at += 16 + (size_t)le64(p + at + 4);
    }
    assert_int_equal(at, n);
    return lay;
}

/* Recomputes the CRC of the header section and of every layer section, so a
 * patched field reaches the reader's own checks instead of the checksum's. */
static void fix_crcs(uint8_t *p, size_t n)
{
    layout lay = layout_of(p, n);
    set_le32(p + lay.header_bytes - 4, crc_of(p, lay.header_bytes - 4));
    for (int l = 0; l < lay.n_layers; l++) {
        size_t at = lay.layer_at[l], body = 12 + (size_t)le64(p + at + 4);
        set_le32(p + at + body, crc_of(p + at, body));
    }
}

/* Fixes only the header CRC and one layer's (for files whose later sections
 * no longer parse after a patch). */
static void fix_header_crc(uint8_t *p)
{
    size_t header_bytes = le32(p + 12);
    set_le32(p + header_bytes - 4, crc_of(p, header_bytes - 4));
}
static void fix_layer_crc(uint8_t *p, size_t at)
{
    size_t body = 12 + (size_t)le64(p + at + 4);
    set_le32(p + at + body, crc_of(p + at, body));
}

/* Loading these bytes from memory fails with `err`, the message names
 * "<memory>" and holds `expect` (when not NULL); nothing leaks. */
static void expect_memory_fail(const uint8_t *p, size_t n, int err, const char *expect)
{
    fm_deploy *d = (fm_deploy *)(uintptr_t)1;
    int rc = fm_deploy_load_memory(p, n, &d);
    if (rc != err)
        fail_msg("expected %s, got %s: %s", fm_strerror(err), fm_strerror(rc), fm_last_error());
    assert_null(d);
    assert_int_equal(strncmp(fm_last_error(), "<memory>: ", 10), 0);
    if (expect && !strstr(fm_last_error(), expect))
        fail_msg("message \"%s\" lacks \"%s\"", fm_last_error(), expect);
}

/* The same through a file: the message names the file. */
static void expect_file_fail(const uint8_t *p, size_t n, const char *name, int err,
                             const char *expect)
{
    write_whole_file(tpath(name), p, n);
    fm_deploy *d = (fm_deploy *)(uintptr_t)1;
    int rc = fm_deploy_load(tpath(name), &d);
    if (rc != err)
        fail_msg("expected %s, got %s: %s", fm_strerror(err), fm_strerror(rc), fm_last_error());
    assert_null(d);
    assert_int_equal(strncmp(fm_last_error(), tpath(name), strlen(tpath(name))), 0);
    if (expect && !strstr(fm_last_error(), expect))
        fail_msg("message \"%s\" lacks \"%s\"", fm_last_error(), expect);
}

/* ---- the networks the tests use ----------------------------------------- */

static const layer_spec fp32_layers[] = {
    {5, FM_DW_FP32, 0, FM_ACT_RELU}, {3, FM_DW_FP32, 0, FM_ACT_NONE}};
/* binary with sign activations feeding binary-input layers, then ternary */
static const layer_spec binary_layers[] = {{13, FM_DW_BINARY, 0, FM_ACT_SIGN},
                                           {9, FM_DW_BINARY, 0, FM_ACT_SIGN},
                                           {11, FM_DW_BINARY, 0, FM_ACT_RELU},
                                           {4, FM_DW_TERNARY, 0, FM_ACT_NONE}};
static const layer_spec ternary_layers[] = {
    {7, FM_DW_TERNARY, 0, FM_ACT_RELU}, {3, FM_DW_TERNARY, 0, FM_ACT_NONE}};
/* synapse with 26 levels (6 bits) and 16 levels (5 bits) */
static const layer_spec synapse_layers[] = {{6, FM_DW_SYNAPSE, 26, FM_ACT_RELU},
                                            {5, FM_DW_SYNAPSE, 16, FM_ACT_SIGN},
                                            {2, FM_DW_BINARY, 0, FM_ACT_NONE}};
#define COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

/* The small network most refusal tests damage: every section kind, padding. */
static fm_deploy *small_net(void)
{
    return make_net(2, 3, 1, binary_layers, COUNT(binary_layers), 7);
}

/* ---- round trips --------------------------------------------------------- */

static void round_trip(const fm_deploy *d, const char *name)
{
    uint64_t bytes = fm_deploy_file_bytes(d);
    assert_int_equal(bytes, fmi_deploy_serialized_bytes(d));
    assert_int_equal(bytes, documented_bytes(d));

    size_t n;
    uint8_t *file = saved_bytes(d, name, &n);
    assert_int_equal(n, bytes);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", tpath(name));
    assert_int_equal(access(tmp, F_OK), -1); /* no temporary left behind */

    fm_deploy *from_file, *from_memory;
    assert_int_equal(fm_deploy_load(tpath(name), &from_file), FM_OK);
    assert_nets_equal(d, from_file);
    assert_int_equal(fm_deploy_load_memory(file, n, &from_memory), FM_OK);
    assert_nets_equal(d, from_memory);
    assert_int_equal(fm_deploy_file_bytes(from_memory), n);

    /* saving what was loaded gives the same bytes: one file per network */
    size_t n2;
    uint8_t *again = saved_bytes(from_file, "again.fmp", &n2);
    assert_int_equal(n2, n);
    assert_memory_equal(again, file, n);
    free(again);
    free(file);
    fm_deploy_free(from_file);
    fm_deploy_free(from_memory);
}

static void test_round_trip_fp32(void **state)
{
    (void)state;
    fm_deploy *d = make_net(1, 6, 1, fp32_layers, COUNT(fp32_layers), 1);
    d->source_mode = FM_WEIGHTS_FP32;
    round_trip(d, "fp32.fmp");
    fm_deploy_free(d);
}

static void test_round_trip_binary_sign(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    assert_int_equal(d->layers[1].binary_input, 1);
    assert_int_equal(d->layers[2].binary_input, 1);
    assert_int_equal(d->layers[3].binary_input, 0);
    round_trip(d, "binary.fmp");
    fm_deploy_free(d);
}

static void test_round_trip_ternary(void **state)
{
    (void)state;
    fm_deploy *d = make_net(3, 3, 1, ternary_layers, COUNT(ternary_layers), 3);
    d->source_mode = FM_WEIGHTS_TC;
    d->export_how = FM_EXPORT_DET;
    round_trip(d, "ternary.fmp");
    fm_deploy_free(d);
}

static void test_round_trip_synapse(void **state)
{
    (void)state;
    fm_deploy *d = make_net(1, 1, 9, synapse_layers, COUNT(synapse_layers), 4);
    assert_int_equal(d->layers[0].bits, 6);
    assert_int_equal(d->layers[1].bits, 5);
    d->source_mode = FM_WEIGHTS_SYNAPSE;
    d->export_how = FM_EXPORT_MEAN;
    round_trip(d, "synapse.fmp");
    fm_deploy_free(d);
}

static void test_round_trip_conv(void **state)
{
    (void)state;
    for (int other = 0; other < 2; other++) {
        fm_deploy *d = conv_net(21 + (uint32_t)other, other);
        size_t n;
        uint8_t *p = saved_bytes(d, "conv-version.fmp", &n);
        assert_int_equal(le32(p + 8), 2); /* maps need version 2 */
        free(p);
        round_trip(d, other ? "conv-synapse.fmp" : "conv.fmp");
        fm_deploy_free(d);
    }
    /* dense networks are still written as version 1 */
    fm_deploy *d = small_net();
    size_t n;
    uint8_t *p = saved_bytes(d, "dense-version.fmp", &n);
    assert_int_equal(le32(p + 8), 1);
    free(p);
    fm_deploy_free(d);
}

/* The bytes sit where docs/format.md says. */
static void test_documented_layout(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    size_t n;
    uint8_t *p = saved_bytes(d, "layout.fmp", &n);
    const size_t D = 6, header = 64 + 4 * D;
    assert_memory_equal(p, "FMULPACK", 8);
    assert_int_equal(le32(p + 8), 1);
    assert_int_equal(le32(p + 12), header);
    assert_int_equal(le32(p + 16), 0);
    assert_int_equal(le32(p + 20), 2);
    assert_int_equal(le32(p + 24), 3);
    assert_int_equal(le32(p + 28), 1);
    assert_int_equal(le32(p + 32), 4);
    assert_int_equal(le32(p + 36), 4);
    assert_int_equal(le32(p + 40), FM_WEIGHTS_BC_DET);
    assert_int_equal(le32(p + 44), FM_EXPORT_DET);
    assert_int_equal(le64(p + 48), n);
    assert_floats_identical((const float *)(const void *)(p + 56), &d->input_scale, 1);
    assert_floats_identical((const float *)(const void *)(p + 60), d->input_mean, D);
    assert_int_equal(le32(p + header - 4), crc_of(p, header - 4));

    /* first layer: 6 -> 13 binary, rows of one byte (6 codes, 2 padding bits) */
    const uint8_t *s = p + header;
    const fm_deploy_layer *L = &d->layers[0];
    assert_memory_equal(s, "LAYR", 4);
    uint64_t payload = 32 + 8 * 13 + 13 * 1;
    assert_int_equal(le64(s + 4), payload);
    assert_int_equal(le32(s + 12), 6);
    assert_int_equal(le32(s + 16), 13);
    assert_int_equal(le32(s + 20), FM_DW_BINARY);
    assert_int_equal(le32(s + 24), 1);
    assert_int_equal(le32(s + 28), 0);
    assert_int_equal(le32(s + 32), FM_ACT_SIGN);
    assert_int_equal(le32(s + 36), 0);
    assert_floats_identical((const float *)(const void *)(s + 40), &L->unit, 1);
    assert_floats_identical((const float *)(const void *)(s + 44), L->scale, 13);
    assert_floats_identical((const float *)(const void *)(s + 44 + 52), L->offset, 13);
    const uint8_t *rows = s + 44 + 104;
    for (int j = 0; j < 13; j++)
        for (int i = 0; i < 6; i++)
            assert_int_equal((rows[j] >> i) & 1u, fmi_deploy_code(L, j, i));
    assert_int_equal(le32(s + 12 + payload), crc_of(s, 12 + payload));
    assert_int_equal(le32(p + header + 16 + payload + 12 + 4), 9); /* layer 2's out */
    free(p);
    fm_deploy_free(d);
}

/* ---- size ---------------------------------------------------------------- */

static void test_binary_much_smaller_than_fp32(void **state)
{
    (void)state;
    const int dims[] = {1024, 1024, 1024, 10};
    fm_deploy *net[2];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(fmi_deploy_alloc(4, &net[k]), FM_OK);
        fm_deploy *d = net[k];
        d->height = 28;
        d->width = 28;
        d->channels = 1;
        d->input_dim = 784;
        d->classes = 10;
        d->input_mean = fmi_alloc(784, sizeof(float));
        assert_non_null(d->input_mean);
        int in = 784;
        for (int l = 0; l < 4; l++) {
            fm_deploy_layer *L = &d->layers[l];
            L->in = in;
            L->out = dims[l];
            L->weights = k ? FM_DW_BINARY : FM_DW_FP32;
            L->bits = k ? 1 : 32;
            L->unit = 1.0f;
            L->act = l == 3 ? FM_ACT_NONE : FM_ACT_RELU;
            assert_int_equal(fmi_deploy_layer_alloc(L), FM_OK);
            for (int j = 0; j < L->out; j++)
                L->scale[j] = 1.0f;
            in = L->out;
        }
        assert_int_equal(fmi_deploy_validate(d, "paper-mlp"), FM_OK);
    }
    uint64_t fp32 = fmi_deploy_serialized_bytes(net[0]), binary = fmi_deploy_serialized_bytes(net[1]);
    assert_int_equal(fp32, documented_bytes(net[0]));
    assert_int_equal(binary, documented_bytes(net[1]));
    assert_int_equal(fp32, 11668880);
    assert_int_equal(binary, 391824);
    double ratio = (double)fp32 / (double)binary;
    print_message("paper-mlp 784-1024-1024-1024-10: fp32 %llu bytes, binary %llu bytes, "
                  "%.1fx smaller\n",
                  (unsigned long long)fp32, (unsigned long long)binary, ratio);
    if (!(ratio >= 25.0))
        fail_msg("binary file only %.2fx smaller than fp32 (want >= 25)", ratio);
    /* and the file written really has that size */
    assert_int_equal(fm_deploy_save(net[1], tpath("paper-binary.fmp")), FM_OK);
    struct stat st;
    assert_int_equal(stat(tpath("paper-binary.fmp"), &st), 0);
    assert_int_equal((uint64_t)st.st_size, binary);
    fm_deploy_free(net[0]);
    fm_deploy_free(net[1]);
}

/* ---- refusals ------------------------------------------------------------ */

/* Every prefix of the file p (n bytes) is refused as truncated, before any
 * allocation. */
static void refuse_every_prefix(const uint8_t *p, size_t n)
{
    for (size_t len = 0; len < n; len++) {
        memset(&track, 0, sizeof track);
        /* a fresh copy of exactly len bytes, so ASan sees any read past it */
        uint8_t *cut = malloc(len ? len : 1);
        assert_non_null(cut);
        memcpy(cut, p, len);
        fm_deploy *out = (fm_deploy *)(uintptr_t)1;
        int rc = fm_deploy_load_memory(cut, len, &out);
        if (rc != FM_ETRUNC)
            fail_msg("%zu of %zu bytes: %s: %s", len, n, fm_strerror(rc), fm_last_error());
        assert_null(out);
        assert_non_null(strstr(fm_last_error(), "truncated"));
        assert_int_equal(track.calls, 0); /* refused before any allocation */
        free(cut);
    }
}

static void test_every_truncation(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    size_t n;
    uint8_t *p = saved_bytes(d, "trunc.fmp", &n);
    fm_deploy_free(d);
    refuse_every_prefix(p, n);
    /* the same through a file names the file */
    expect_file_fail(p, 5, "cut-magic.fmp", FM_ETRUNC, "truncated");
    expect_file_fail(p, 40, "cut-header.fmp", FM_ETRUNC, "truncated");
    expect_file_fail(p, n - 1, "cut-end.fmp", FM_ETRUNC, "the header declares");
    expect_file_fail(p, 0, "empty.fmp", FM_ETRUNC, "truncated");
    free(p);
}

/* Every single-bit flip of the file p (n bytes) is refused; p is restored. */
static void refuse_every_bit_flip(uint8_t *p, size_t n)
{
    long counts[3] = {0};
    for (size_t bit = 0; bit < 8 * n; bit++) {
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        fm_deploy *out = (fm_deploy *)(uintptr_t)1;
        int rc = fm_deploy_load_memory(p, n, &out);
        if (rc != FM_EFORMAT && rc != FM_ETRUNC && rc != FM_EUNSUPPORTED)
            fail_msg("bit %zu of byte %zu: %s: %s", bit % 8, bit / 8, fm_strerror(rc),
                     fm_last_error());
        assert_null(out);
        counts[rc == FM_EFORMAT ? 0 : rc == FM_ETRUNC ? 1 : 2]++;
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    print_message("%zu bit flips: %ld malformed, %ld truncated, %ld unsupported\n", 8 * n,
                  counts[0], counts[1], counts[2]);
    /* most flips are caught by a checksum */
    assert_true(counts[0] > (long)(6 * n));
    fm_deploy *ok;
    assert_int_equal(fm_deploy_load_memory(p, n, &ok), FM_OK); /* restored */
    fm_deploy_free(ok);
}

static void test_every_bit_flip(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    size_t n;
    uint8_t *p = saved_bytes(d, "flip.fmp", &n);
    fm_deploy_free(d);
    refuse_every_bit_flip(p, n);
    /* a damaged file names itself and its section */
    p[n - 10] ^= 0x10;
    expect_file_fail(p, n, "damaged.fmp", FM_EFORMAT, "layer 4 section checksum mismatch");
    p[n - 10] ^= 0x10;
    p[60] ^= 0x01;
    expect_file_fail(p, n, "damaged-header.fmp", FM_EFORMAT, "header checksum mismatch");
    free(p);
}

/* The same for networks with maps: every truncation and single-bit flip of
 * both conv networks' files is refused. */
static void test_conv_truncations_and_bit_flips(void **state)
{
    (void)state;
    for (int other = 0; other < 2; other++) {
        fm_deploy *d = conv_net(21 + (uint32_t)other, other);
        size_t n;
        uint8_t *p = saved_bytes(d, "conv-damage.fmp", &n);
        fm_deploy_free(d);
        refuse_every_prefix(p, n);
        refuse_every_bit_flip(p, n);
        free(p);
    }
}

/* The version 2 sections sit where docs/format.md says. */
static void test_documented_layout_v2(void **state)
{
    (void)state;
    fm_deploy *d = conv_net(21, 0);
    size_t n;
    uint8_t *p = saved_bytes(d, "layout-v2.fmp", &n);
    assert_int_equal(le32(p + 8), 2);
    layout lay = layout_of(p, n);
    assert_int_equal(lay.n_layers, 5);
    /* the convolution: tag, geometry, then a dense layer's fields */
    const uint8_t *s = p + lay.layer_at[0];
    const fm_deploy_layer *L = &d->layers[0];
    assert_memory_equal(s, "CONV", 4);
    const uint64_t row = (18 + 7) / 8; /* 3 x 3 x 2 codes of 1 bit */
    assert_int_equal(le64(s + 4), 40 + 32 + 8 * 5 + 5 * row);
    const uint32_t geometry[10] = {7, 6, 2, 3, 3, 1, 1, 1, 7, 6};
    for (int k = 0; k < 10; k++)
        assert_int_equal(le32(s + 12 + 4 * k), geometry[k]);
    assert_int_equal(le32(s + 52), 18);
    assert_int_equal(le32(s + 56), 5);
    assert_int_equal(le32(s + 60), FM_DW_BINARY);
    assert_int_equal(le32(s + 72), FM_ACT_SIGN);
    assert_int_equal(le32(s + 76), 0);
    assert_floats_identical((const float *)(const void *)(s + 84), L->scale, 5);
    const uint8_t *rows = s + 84 + 40;
    for (int j = 0; j < 5; j++)
        for (int i = 0; i < 18; i++)
            assert_int_equal((rows[j * row + i / 8] >> (i % 8)) & 1u, fmi_deploy_code(L, j, i));
    /* the pool: its input map, window and stride */
    s = p + lay.layer_at[1];
    assert_memory_equal(s, "POOL", 4);
    assert_int_equal(le64(s + 4), 20);
    const uint32_t pool[5] = {7, 6, 5, 2, 2};
    for (int k = 0; k < 5; k++)
        assert_int_equal(le32(s + 12 + 4 * k), pool[k]);
    assert_int_equal(le32(s + 32), crc_of(s, 32));
    /* the second convolution reads the +-1 map */
    s = p + lay.layer_at[2];
    assert_memory_equal(s, "CONV", 4);
    assert_int_equal(le32(s + 76), 1);
    /* global average pooling: its input map */
    s = p + lay.layer_at[3];
    assert_memory_equal(s, "GAVG", 4);
    assert_int_equal(le64(s + 4), 12);
    const uint32_t gap[3] = {2, 2, 4};
    for (int k = 0; k < 3; k++)
        assert_int_equal(le32(s + 12 + 4 * k), gap[k]);
    assert_memory_equal(p + lay.layer_at[4], "LAYR", 4);
    free(p);
    fm_deploy_free(d);
}

/* A field of a version 2 record patched (checksums made right again) is
 * refused with a message that names it. */
typedef struct geometry_case {
    int layer;
    size_t offset; /* of the u32 field in its section */
    uint32_t value;
    const char *expect;
} geometry_case;

static void test_invalid_conv_values(void **state)
{
    (void)state;
    fm_deploy *d = conv_net(21, 0);
    size_t n;
    uint8_t *good = saved_bytes(d, "conv-values.fmp", &n);
    fm_deploy_free(d);
    const geometry_case cases[] = {
        {0, 12, 8, "takes a 8 x 6 x 2 map but receives another map"},
        {0, 12, 0x80000000u, "input map -2147483648 x 6 x 2"},
        {0, 24, 0, "kernel 0 x 3"},
        {0, 24, 4, "has 18 weights per output"},
        {0, 36, 3, "padding 3, 1"},
        {0, 32, 300, "stride 300"},
        {0, 44, 9, "output 9 x 6 x 5 does not fit"},
        {0, 48, 0, "output 7 x 0 x 5"},
        {0, 72, FM_ACT_NONE, "only the last layer may have no activation"},
        {1, 12, 6, "(max-pool) takes a 6 x 6 x 5 map"},
        {1, 24, 0, "window 0 x 0"},
        {1, 24, 8, "window 8 x 8"},
        {1, 28, 0, "stride 0"},
        {2, 76, 0, "layer 3 input kind does not match"},
        {2, 20, 4, "takes a 3 x 3 x 4 map"},
        {3, 20, 3, "takes a 2 x 2 x 3 map"},
    };
    uint8_t *p = malloc(n);
    assert_non_null(p);
    layout lay = layout_of(good, n);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(p, good, n);
        set_le32(p + lay.layer_at[cases[k].layer] + cases[k].offset, cases[k].value);
        fix_layer_crc(p, lay.layer_at[cases[k].layer]);
        expect_memory_fail(p, n, FM_EFORMAT, cases[k].expect);
    }
    /* a map of three huge fields: its value count is never formed by
     * overflowing arithmetic (UBSan's check in the sanitized build) */
    memcpy(p, good, n);
    for (int k = 0; k < 3; k++)
        set_le32(p + lay.layer_at[3] + 12 + 4 * (size_t)k, 0x7FFFFFFFu);
    fix_layer_crc(p, lay.layer_at[3]);
    expect_memory_fail(p, n, FM_EFORMAT, "input map 2147483647 x 2147483647 x 2147483647");
    /* records out of order: the pool's tag and the gap's swapped keep sizes wrong */
    memcpy(p, good, n);
    memcpy(p + lay.layer_at[1], "GAVG", 4);
    fix_layer_crc(p, lay.layer_at[1]);
    expect_memory_fail(p, n, FM_EFORMAT, "a global average pool needs 12");
    /* a version 1 file holds dense layers only: its reader's tag is LAYR */
    memcpy(p, good, n);
    set_le32(p + 8, 1);
    fix_header_crc(p);
    expect_memory_fail(p, n, FM_EFORMAT, "layer 1 section at offset 400 has a bad tag");
    /* a convolution's weight kind out of range */
    fm_deploy *e = conv_net(22, 1);
    uint8_t *q = saved_bytes(e, "conv-other.fmp", &n);
    fm_deploy_free(e);
    layout lq = layout_of(q, n);
    memcpy(q + lq.layer_at[0] + 12 + 40 + 8, "\x09\x00\x00\x00", 4); /* weight kind 9 */
    fix_layer_crc(q, lq.layer_at[0]);
    expect_memory_fail(q, n, FM_EFORMAT, "unknown weight kind 9");
    free(q);
    free(p);
    free(good);
}

/* A field patched to a huge count, checksums made right again: the reader's
 * count checks, not the CRC, refuse it, and before allocating anything. */
typedef struct count_case {
    const char *what;
    int layer;       /* -1: header field */
    size_t offset;   /* of the field in its section */
    int wide;        /* 1: u64 */
    uint64_t value;
    int err;
    const char *expect;
} count_case;

static void test_oversized_counts(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    size_t n;
    uint8_t *good = saved_bytes(d, "counts.fmp", &n);
    fm_deploy_free(d);
    const count_case cases[] = {
        {"layers", -1, 36, 0, 0xFFFFFFFFu, FM_EFORMAT, "4294967295 layers (1 .. 64 in version 1)"},
        {"layers at the cap", -1, 36, 0, 64, FM_ETRUNC, "layer 5 section needs 12 bytes"},
        {"no layers", -1, 36, 0, 0, FM_EFORMAT, "0 layers"},
        {"classes", -1, 32, 0, 1u << 30, FM_EFORMAT, "1073741824 classes"},
        {"height", -1, 20, 0, 1u << 23, FM_EFORMAT, "bad input shape 8388608 x 3 x 1"},
        {"zero width", -1, 24, 0, 0, FM_EFORMAT, "bad input shape 2 x 0 x 1"},
        {"shape against header size", -1, 20, 0, 4, FM_EFORMAT,
         "header declares 88 bytes, its input shape 4 x 3 x 1 needs 112"},
        {"file size", -1, 48, 1, UINT64_MAX, FM_ETRUNC, "the header declares 18446744073709551615"},
        {"in", 0, 12, 0, 0xFFFFFFFFu, FM_EFORMAT, "has shape 4294967295 x 13"},
        {"in at the cap", 0, 12, 0, 1u << 24, FM_EFORMAT, "need 27263112"},
        {"out", 1, 16, 0, 0x80000000u, FM_EFORMAT, "x 2147483648"},
        {"out at the cap", 1, 16, 0, 1u << 24, FM_EFORMAT, "need 167772192"},
        {"bits", 2, 24, 0, 1000, FM_EFORMAT, "stores 1000 bits"},
        {"levels", 2, 28, 0, 0x7FFFFFFFu, FM_EFORMAT, "2147483647 synapse levels"},
        {"levels at the cap", 2, 28, 0, 32, FM_EFORMAT, "need"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const count_case *c = &cases[k];
        uint8_t *p = malloc(n);
        assert_non_null(p);
        memcpy(p, good, n);
        layout lay = layout_of(p, n);
        size_t at = c->layer < 0 ? c->offset : lay.layer_at[c->layer] + c->offset;
        if (c->wide)
            set_le64(p + at, c->value);
        else
            set_le32(p + at, (uint32_t)c->value);
        if (c->layer < 0)
            fix_header_crc(p);
        else
            fix_layer_crc(p, lay.layer_at[c->layer]);
        memset(&track, 0, sizeof track);
        fm_deploy *out = (fm_deploy *)(uintptr_t)1;
        int rc = fm_deploy_load_memory(p, n, &out);
        if (rc != c->err || !strstr(fm_last_error(), c->expect))
            fail_msg("%s: %s: %s", c->what, fm_strerror(rc), fm_last_error());
        assert_null(out);
        assert_int_equal(track.calls, 0); /* nothing allocated, let alone something large */
        free(p);
    }

    /* A header that claims 2^24 inputs needs 64 MiB: refused as truncated
     * before its checksum (which would lie past the end) is even looked at. */
    uint8_t *p = malloc(n);
    memcpy(p, good, n);
    set_le32(p + 20, 4096);
    set_le32(p + 24, 4096);
    set_le32(p + 28, 1);
    set_le32(p + 12, 64 + 4 * (1u << 24));
    memset(&track, 0, sizeof track);
    expect_memory_fail(p, n, FM_ETRUNC, "the header needs 67108928 bytes");
    assert_int_equal(track.calls, 0);
    /* ...and a header size that does not match its shape is malformed */
    set_le32(p + 12, 64 + 4 * 6);
    expect_memory_fail(p, n, FM_EFORMAT, "needs 67108928");

    /* A layer whose counts and payload length agree but run past the end:
     * 2^24 x 2^24 binary weights would be 32 TiB. */
    memcpy(p, good, n);
    layout lay = layout_of(p, n);
    uint8_t *s = p + lay.layer_at[3];
    set_le32(s + 12, 1u << 24);
    set_le32(s + 16, 1u << 24);
    set_le64(s + 4, 32 + 8 * ((uint64_t)1 << 24) + ((uint64_t)1 << 24) * ((uint64_t)1 << 21));
    memset(&track, 0, sizeof track);
    expect_memory_fail(p, n, FM_ETRUNC, "layer 4 section needs 35184506306608 bytes");
    assert_int_equal(track.calls, 0);
    /* a payload length near 2^64 does not wrap around */
    set_le64(s + 4, UINT64_MAX - 3);
    expect_memory_fail(p, n, FM_ETRUNC, "layer 4 section needs 18446744073709551615 bytes");
    set_le64(s + 4, 8);
    expect_memory_fail(p, n, FM_EFORMAT, "declares 8 payload bytes");
    free(p);
    free(good);
}

static void test_bad_magic(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    size_t n;
    uint8_t *p = saved_bytes(d, "magic.fmp", &n);
    fm_deploy_free(d);
    memcpy(p, "FMULMODL", 8);
    expect_memory_fail(p, n, FM_EFORMAT, "training model file");
    memcpy(p, "GIF89a\x01\xff", 8);
    expect_file_fail(p, n, "gif.fmp", FM_EFORMAT,
                     "not a fewmul packed model (magic \"GIF89a\\x01\\xff\", "
                     "expected \"FMULPACK\")");
    expect_memory_fail(p, 3, FM_EFORMAT, "magic \"GIF\"");
    free(p);
}

static void test_newer_version(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    size_t n;
    uint8_t *p = saved_bytes(d, "version.fmp", &n);
    fm_deploy_free(d);
    set_le32(p + 8, 3);
    expect_file_fail(p, n, "v3.fmp", FM_EUNSUPPORTED,
                     "format version 3 is newer than this fewmul (2)");
    /* whatever follows the version in a newer file is not looked at */
    expect_memory_fail(p, 12, FM_EUNSUPPORTED, "format version 3");
    set_le32(p + 8, 0);
    expect_memory_fail(p, n, FM_EFORMAT, "format version 0 is not valid");
    set_le32(p + 8, 1);
    set_le32(p + 16, 0x4);
    fix_crcs(p, n);
    expect_memory_fail(p, n, FM_EUNSUPPORTED, "unknown feature flags 0x00000004");
    free(p);
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    size_t n;
    uint8_t *p = saved_bytes(d, "trail.fmp", &n);
    fm_deploy_free(d);
    uint8_t *q = malloc(n + 7);
    assert_non_null(q);
    memcpy(q, p, n);
    memset(q + n, 0, 7);
    expect_file_fail(q, n + 1, "trail1.fmp", FM_EFORMAT, "1 unexpected bytes after the end");
    expect_memory_fail(q, n + 7, FM_EFORMAT, "7 unexpected bytes");
    /* the declared size covering them too: found after the last layer */
    set_le64(q + 48, n + 7);
    fix_header_crc(q);
    expect_memory_fail(q, n + 7, FM_EFORMAT, "7 unexpected bytes after the last of 4 layers");
    free(q);
    free(p);
}

/* Semantic faults with every checksum right: fmi_deploy_validate's turn. */
static void test_invalid_values(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    size_t n;
    uint8_t *good = saved_bytes(d, "values.fmp", &n);
    uint8_t *p = malloc(n);
    assert_non_null(p);
    layout lay = layout_of(good, n);

    /* ternary code 2 at weight (0, 0) of layer 4: 11 inputs x 2 bits = 3-byte rows */
    memcpy(p, good, n);
    uint8_t *s = p + lay.layer_at[3];
    uint8_t *rows = s + 12 + 32 + 8 * 4;
    rows[0] = (uint8_t)((rows[0] & ~3u) | 2u);
    fix_layer_crc(p, lay.layer_at[3]);
    expect_file_fail(p, n, "code2.fmp", FM_EFORMAT, "layer 4 weight (0, 0) has invalid code 2");

    /* nonzero padding bits after the last code of a row */
    memcpy(p, good, n);
    rows = p + lay.layer_at[3] + 12 + 32 + 8 * 4;
    rows[2] |= 0x80;
    fix_layer_crc(p, lay.layer_at[3]);
    expect_memory_fail(p, n, FM_EFORMAT, "layer 4 row 0 has nonzero padding bits");

    /* a NaN scale */
    memcpy(p, good, n);
    set_le32(p + lay.layer_at[1] + 12 + 32 + 4 * 2, 0x7FC00000u);
    fix_layer_crc(p, lay.layer_at[1]);
    expect_memory_fail(p, n, FM_EFORMAT, "layer 2 output 2 has a non-finite scale");

    /* a NaN input mean */
    memcpy(p, good, n);
    set_le32(p + 60 + 4 * 5, 0xFF800000u);
    fix_header_crc(p);
    expect_memory_fail(p, n, FM_EFORMAT, "input mean 5 is not finite");

    /* binary input flag that is neither 0 nor 1 */
    memcpy(p, good, n);
    set_le32(p + lay.layer_at[1] + 12 + 24, 7);
    fix_layer_crc(p, lay.layer_at[1]);
    expect_memory_fail(p, n, FM_EFORMAT, "layer 2 input kind");

    /* unknown weight kind and activation */
    memcpy(p, good, n);
    set_le32(p + lay.layer_at[0] + 12 + 8, 9);
    fix_layer_crc(p, lay.layer_at[0]);
    expect_memory_fail(p, n, FM_EFORMAT, "unknown weight kind 9");
    memcpy(p, good, n);
    set_le32(p + lay.layer_at[2] + 12 + 20, 5);
    fix_layer_crc(p, lay.layer_at[2]);
    expect_memory_fail(p, n, FM_EFORMAT, "unknown activation 5");

    /* classes that disagree with the last layer; unknown source mode */
    memcpy(p, good, n);
    set_le32(p + 32, 5);
    fix_header_crc(p);
    expect_memory_fail(p, n, FM_EFORMAT, "gives 4 outputs for 5 classes");
    memcpy(p, good, n);
    set_le32(p + 40, 6);
    fix_header_crc(p);
    expect_memory_fail(p, n, FM_EFORMAT, "unknown source weight mode 6");

    /* a bad section tag */
    memcpy(p, good, n);
    memcpy(p + lay.layer_at[2], "LAYX", 4);
    expect_memory_fail(p, n, FM_EFORMAT, "layer 3 section at offset");
    free(p);
    free(good);
    fm_deploy_free(d);
}

/* The synapse layer: an index past the levels, magnitudes out of order. */
static void test_invalid_synapse(void **state)
{
    (void)state;
    fm_deploy *d = make_net(1, 1, 9, synapse_layers, COUNT(synapse_layers), 4);
    size_t n;
    uint8_t *p = saved_bytes(d, "syn.fmp", &n);
    layout lay = layout_of(p, n);
    /* layer 1: 9 inputs x 6 bits, 26 levels; code 0 := index 30 */
    uint8_t *rows = p + lay.layer_at[0] + 12 + 32 + 4 * 26 + 8 * 6;
    rows[0] = (uint8_t)((rows[0] & ~0x3Fu) | 30u);
    fix_layer_crc(p, lay.layer_at[0]);
    expect_memory_fail(p, n, FM_EFORMAT, "layer 1 weight (0, 0) has invalid code 30");
    free(p);
    p = saved_bytes(d, "syn.fmp", &n);
    set_le32(p + lay.layer_at[0] + 12 + 32 + 4 * 3, 0); /* magnitude 3 := 0 */
    fix_layer_crc(p, lay.layer_at[0]);
    expect_memory_fail(p, n, FM_EFORMAT, "magnitudes are not positive and ascending");
    free(p);
    fm_deploy_free(d);
}

static void test_missing_and_unreadable(void **state)
{
    (void)state;
    fm_deploy *d = (fm_deploy *)(uintptr_t)1;
    assert_int_equal(fm_deploy_load(tpath("no-such.fmp"), &d), FM_ENOENT);
    assert_null(d);
    assert_non_null(strstr(fm_last_error(), tpath("no-such.fmp")));
    assert_int_equal(fm_deploy_load(tmpdir, &d), FM_EIO); /* a directory */
    assert_non_null(strstr(fm_last_error(), "Is a directory"));
    assert_int_equal(fm_deploy_load(NULL, &d), FM_EINVAL);
    assert_int_equal(fm_deploy_load_memory(NULL, 5, &d), FM_EINVAL);
    assert_int_equal(fm_deploy_load_memory(NULL, 0, &d), FM_ETRUNC);
    assert_int_equal(fm_deploy_save(NULL, tpath("x.fmp")), FM_EINVAL);
    assert_int_equal(fm_deploy_file_bytes(NULL), 0);
    fm_deploy_free(NULL);
}

/* ---- saving -------------------------------------------------------------- */

static void assert_file_is(const char *path, const uint8_t *want, size_t n)
{
    size_t have;
    uint8_t *p = read_whole_file(path, &have);
    assert_int_equal(have, n);
    assert_memory_equal(p, want, n);
    free(p);
}

static void test_atomic_save(void **state)
{
    (void)state;
    fm_deploy *a = small_net();
    fm_deploy *b = make_net(1, 6, 1, fp32_layers, COUNT(fp32_layers), 1);
    size_t n;
    uint8_t *old = saved_bytes(a, "keep.fmp", &n);
    /* the temporary file cannot be created: a name of 250 characters leaves
     * no room for its own, 15 longer (NAME_MAX 255) */
    char name[251];
    memset(name, 'k', 250);
    name[250] = '\0';
    const char *long_name = tpath(name);
    write_whole_file(long_name, old, n);
    assert_int_equal(fm_deploy_save(b, long_name), FM_EIO);
    assert_non_null(strstr(fm_last_error(), "cannot create a temporary file beside it"));
    assert_file_is(long_name, old, n);
    assert_int_equal(unlink(long_name), 0);

    /* writing fails (a full disk): the temporary file is removed */
    limit_file_size(n / 2);
    int rc = fm_deploy_save(b, tpath("keep.fmp"));
    limit_file_size(0);
    assert_int_equal(rc, FM_EIO);
    assert_non_null(strstr(fm_last_error(), "keep.fmp: write failed"));
    assert_file_is(tpath("keep.fmp"), old, n);

    /* the directory is not writable */
    char dir[600];
    snprintf(dir, sizeof dir, "%s", tpath("ro"));
    assert_int_equal(mkdir(dir, 0700), 0);
    char inside[700];
    snprintf(inside, sizeof inside, "%s/keep.fmp", dir);
    assert_int_equal(fm_deploy_save(a, inside), FM_OK);
    assert_int_equal(chmod(dir, 0500), 0);
    if (geteuid() != 0) { /* root writes anywhere */
        assert_int_equal(fm_deploy_save(b, inside), FM_EIO);
        assert_non_null(strstr(fm_last_error(), "cannot create"));
        assert_file_is(inside, old, n);
    }
    assert_int_equal(chmod(dir, 0700), 0);

    /* a missing directory */
    assert_int_equal(fm_deploy_save(a, tpath("no-dir/x.fmp")), FM_EIO);
    assert_non_null(strstr(fm_last_error(), "no-dir/x.fmp: cannot create"));

    /* a folder has the name: refused, nothing written */
    char busy[600], child[700];
    snprintf(busy, sizeof busy, "%s", tpath("busy"));
    snprintf(child, sizeof child, "%s/child", busy);
    assert_int_equal(mkdir(busy, 0700), 0);
    write_whole_file(child, "x", 1);
    assert_int_equal(fm_deploy_save(a, busy), FM_EIO);
    assert_non_null(strstr(fm_last_error(), "is a directory, not a regular file"));
    assert_int_equal(access(child, F_OK), 0);
    /* and no temporary file is left of any of these */
    DIR *dir_list = opendir(tmpdir);
    assert_non_null(dir_list);
    for (struct dirent *e; (e = readdir(dir_list));)
        assert_null(strstr(e->d_name, ".tmp."));
    closedir(dir_list);

    /* and a save that works replaces the file whole */
    assert_int_equal(fm_deploy_save(b, tpath("keep.fmp")), FM_OK);
    fm_deploy *back;
    assert_int_equal(fm_deploy_load(tpath("keep.fmp"), &back), FM_OK);
    assert_nets_equal(b, back);
    fm_deploy_free(back);
    free(old);
    fm_deploy_free(a);
    fm_deploy_free(b);
}

/* A network the reader would refuse is not written. */
static void test_save_refuses_invalid(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    fmi_deploy_set_code(&d->layers[3], 1, 2, 2u); /* ternary code 2 */
    assert_int_equal(fm_deploy_save(d, tpath("invalid.fmp")), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "invalid code 2"));
    assert_int_equal(access(tpath("invalid.fmp"), F_OK), -1);
    fmi_deploy_set_code(&d->layers[3], 1, 2, 0u);
    d->export_how = 2;
    assert_int_equal(fm_deploy_save(d, tpath("invalid.fmp")), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "export kind 2"));
    assert_int_equal(access(tpath("invalid.fmp"), F_OK), -1);
    d->export_how = FM_EXPORT_DET;
    /* padding bits set in memory are cleared in the file */
    d->layers[0].packed[0] |= 0xC0; /* 6 codes in the byte: bits 6, 7 are padding */
    assert_int_equal(fm_deploy_save(d, tpath("padded.fmp")), FM_OK);
    fm_deploy *back;
    assert_int_equal(fm_deploy_load(tpath("padded.fmp"), &back), FM_OK);
    assert_int_equal(back->layers[0].packed[0], d->layers[0].packed[0] & 0x3F);
    fm_deploy_free(back);
    fm_deploy_free(d);
}

/* ---- allocation failures ------------------------------------------------- */

/* Loading d's file p (n bytes, also saved as oom.fmp) with each allocation
 * failing in turn: FM_ENOMEM and nothing left allocated, until it loads. */
static void fail_each_load_allocation(const fm_deploy *d, const uint8_t *p, size_t n)
{
    const long live = track.live; /* the network d */
    for (int from_file = 0; from_file < 2; from_file++) {
        for (long k = 1;; k++) {
            track.calls = 0;
            track.fail_at = k;
            fm_deploy *out = (fm_deploy *)(uintptr_t)1;
            int rc = from_file ? fm_deploy_load(tpath("oom.fmp"), &out)
                               : fm_deploy_load_memory(p, n, &out);
            if (rc == FM_OK) {
                assert_true(k > 4);
                assert_nets_equal(d, out);
                fm_deploy_free(out);
                assert_int_equal(track.live, live);
                break;
            }
            if (rc != FM_ENOMEM)
                fail_msg("allocation %ld: %s: %s", k, fm_strerror(rc), fm_last_error());
            assert_null(out);
            assert_int_equal(track.live, live);
        }
    }
    track.fail_at = 0;
}

static void test_out_of_memory(void **state)
{
    (void)state;
    fm_deploy *c = conv_net(21, 0);
    size_t n;
    uint8_t *p = saved_bytes(c, "oom.fmp", &n);
    fail_each_load_allocation(c, p, n);
    free(p);
    fm_deploy_free(c);
    fm_deploy *d = small_net();
    p = saved_bytes(d, "oom.fmp", &n);
    fail_each_load_allocation(d, p, n);
    const long live = track.live;
    /* saving: the failure is reported and the old file stays */
    for (long k = 1;; k++) {
        track.calls = 0;
        track.fail_at = k;
        int rc = fm_deploy_save(d, tpath("oom.fmp"));
        if (rc == FM_OK)
            break;
        assert_int_equal(rc, FM_ENOMEM);
        assert_int_equal(track.live, live);
        assert_file_is(tpath("oom.fmp"), p, n);
    }
    track.fail_at = 0;
    free(p);
    fm_deploy_free(d);
}

/* ---- the fuzzer's seeds -------------------------------------------------- */

/* tests/fuzz/corpus/deploy beside this source file. */
static void corpus_dir(char *out, size_t cap)
{
    snprintf(out, cap, "%s", __FILE__);
    char *slash = strrchr(out, '/');
    if (slash)
        snprintf(slash + 1, cap - (size_t)(slash + 1 - out), "fuzz/corpus/deploy");
    else
        snprintf(out, cap, "fuzz/corpus/deploy");
}

/* The seed files of tests/fuzz/corpus/deploy are these networks' files. With
 * FEWMUL_WRITE_FUZZ_SEEDS=1 in the environment this test (re)writes them. */
static void test_fuzz_seeds(void **state)
{
    (void)state;
    static const layer_spec tiny_binary[] = {{8, FM_DW_BINARY, 0, FM_ACT_SIGN},
                                             {5, FM_DW_BINARY, 0, FM_ACT_RELU},
                                             {3, FM_DW_TERNARY, 0, FM_ACT_NONE}};
    static const layer_spec tiny_synapse[] = {{4, FM_DW_SYNAPSE, 26, FM_ACT_RELU},
                                              {3, FM_DW_SYNAPSE, 16, FM_ACT_NONE}};
    static const layer_spec tiny_fp32[] = {{3, FM_DW_FP32, 0, FM_ACT_RELU},
                                           {2, FM_DW_FP32, 0, FM_ACT_NONE}};
    struct {
        const char *name;
        fm_deploy *net;
    } seeds[] = {
        /* version 1 files, as fewmul wrote them before version 2 existed */
        {"binary-sign-ternary.fmp", make_net(2, 5, 1, tiny_binary, 3, 11)},
        {"synapse-26-16.fmp", make_net(1, 7, 1, tiny_synapse, 2, 12)},
        {"fp32.fmp", make_net(1, 1, 4, tiny_fp32, 2, 13)},
        /* version 2: convolutions, pools, gap */
        {"conv-binary-pool-gap.fmp", conv_net(21, 0)},
        {"conv-synapse-stride.fmp", conv_net(22, 1)},
    };
    char dir[512], path[700];
    corpus_dir(dir, sizeof dir);
    const char *write = getenv("FEWMUL_WRITE_FUZZ_SEEDS");
    for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++) {
        size_t n;
        uint8_t *want = saved_bytes(seeds[k].net, seeds[k].name, &n);
        assert_true(n < 4096);
        assert_int_equal(want[8], k < 3 ? 1 : 2); /* the version */
        snprintf(path, sizeof path, "%s/%s", dir, seeds[k].name);
        if (write && *write == '1')
            assert_int_equal(fm_deploy_save(seeds[k].net, path), FM_OK);
        if (access(path, F_OK) == 0) { /* the committed seed is this network's file */
            fm_deploy *back;
            assert_int_equal(fm_deploy_load(path, &back), FM_OK);
            assert_nets_equal(seeds[k].net, back);
            fm_deploy_free(back);
            assert_file_is(path, want, n);
        } else {
            print_message("no seed %s (source tree not here)\n", path);
        }
        free(want);
        fm_deploy_free(seeds[k].net);
    }
}

static int load_path(const char *path)
{
    fm_deploy *d = NULL;
    int rc = fm_deploy_load(path, &d);
    fm_deploy_free(d);
    return rc;
}

/* A packed model larger than what is read whole at once has its head checked
 * first: with every file put through that check, good files still load and
 * cut or padded ones are refused; a sparse file of 900 MiB (the format allows
 * 1 GiB) behind a good model, or behind its magic alone, is refused before
 * anything its size is allocated. */
static void test_head_checked_before_reading(void **state)
{
    (void)state;
    fm_deploy *d = small_net();
    size_t n;
    uint8_t *p = saved_bytes(d, "head.fmp", &n);
    const size_t whole = fmi_read_whole_max;
    fmi_read_whole_max = 0;
    fm_deploy *out = NULL;
    assert_int_equal(fm_deploy_load(tpath("head.fmp"), &out), FM_OK);
    assert_nets_equal(d, out);
    fm_deploy_free(out);
    expect_file_fail(p, 5, "head-magic.fmp", FM_ETRUNC, "truncated");
    expect_file_fail(p, 40, "head-header.fmp", FM_ETRUNC, "truncated");
    expect_file_fail(p, n - 1, "head-end.fmp", FM_ETRUNC, "the header declares");
    uint8_t *longer = calloc(n + 3, 1);
    memcpy(longer, p, n);
    expect_file_fail(longer, n + 3, "head-long.fmp", FM_EFORMAT, "3 unexpected bytes");
    free(longer);
    fmi_read_whole_max = whole;
    fm_deploy_free(d);

    const off_t hole = (off_t)900 << 20;
    expect_sparse_refused(load_path, "sparse.fmp", p, n, (off_t)n + hole, FM_EFORMAT,
                          "943718400 unexpected bytes after the end");
    expect_sparse_refused(load_path, "magic.fmp", "FMULPACK", 8, hole, FM_EFORMAT,
                          "format version 0");
    free(p);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_round_trip_fp32),
        T(test_round_trip_binary_sign),
        T(test_round_trip_ternary),
        T(test_round_trip_synapse),
        T(test_round_trip_conv),
        T(test_documented_layout),
        T(test_documented_layout_v2),
        T(test_conv_truncations_and_bit_flips),
        T(test_invalid_conv_values),
        T(test_binary_much_smaller_than_fp32),
        T(test_every_truncation),
        T(test_every_bit_flip),
        T(test_oversized_counts),
        T(test_bad_magic),
        T(test_newer_version),
        T(test_trailing_bytes),
        T(test_invalid_values),
        T(test_invalid_synapse),
        T(test_missing_and_unreadable),
        T(test_head_checked_before_reading),
        T(test_atomic_save),
        T(test_save_refuses_invalid),
        T(test_out_of_memory),
        T(test_fuzz_seeds),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
