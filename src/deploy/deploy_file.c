/* deploy_file.c — the packed deployment model file (docs/format.md): writer
 * and reader of a deployed network. A header section (shape, classes, input
 * normalization) and one section per record (a dense layer or a convolution
 * with its packed weight codes and folded batch norm, a max-pool, a global
 * average pool), little-endian, each section closed by its own CRC-32.
 * Version 1 holds dense layers only; the writer uses it for dense networks,
 * so that older readers still read them, and version 2 for the others.
 *
 * The reader works in two passes over bytes already in memory. The first
 * walks every section and checks each length, count, offset and checksum
 * against the bytes present, allocating nothing, so a malformed or hostile
 * file can never make it allocate more than the file itself holds. The second
 * allocates and copies, then fmi_deploy_validate checks the meaning (shapes
 * chain, codes valid, floats finite). */
#define _POSIX_C_SOURCE 200809L
#include "bytes.h"
#include "deploy.h"
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define PACK_MAGIC "FMULPACK"
#define PACK_VERSION 2u
#define PACK_KIND "packed model file"
/* Bytes of the header section before the input mean, and of a layer section
 * around its payload (tag, length; CRC), and of the payload's fixed fields. */
#define HEADER_FIXED 60u
#define SECTION_FRAME 16u
#define LAYER_FIXED 32u
#define LAYER_TAG "LAYR"
/* Version 2's other records: their tags and the fixed bytes before (conv) or
 * making up (pool, gap) their payload. */
#define CONV_TAG "CONV"
#define POOL_TAG "POOL"
#define GAP_TAG "GAVG"
#define CONV_GEOMETRY 40u
#define POOL_PAYLOAD 20u
#define GAP_PAYLOAD 12u
/* Limits of the format (docs/format.md), checked before anything is sized. */
#define PACK_MAX_BYTES ((uint64_t)1 << 30)
#define PACK_MAX_DIM (1u << 24)
#define PACK_MAX_LAYERS_V1 64u
#define PACK_MAX_LAYERS 128u
#define PACK_MAX_LEVELS 32u
#define PACK_MAX_BITS 32u
#define PACK_KNOWN_FLAGS 0u

/* ---- sizes --------------------------------------------------------------- */

/* Saturating arithmetic: a size that overflows 64 bits becomes UINT64_MAX,
 * which is larger than any file, so the check against the file refuses it. */
static uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }
static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    return a && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

static uint64_t row_bytes_of(uint64_t in, uint64_t bits)
{
    return add_sat(mul_sat(in, bits), 7) / 8;
}

/* Bytes of a layer section's payload: fixed fields, magnitudes, scale,
 * offset and the packed rows. */
static uint64_t layer_payload_bytes(uint64_t in, uint64_t out, uint64_t bits, uint64_t levels)
{
    uint64_t bytes = add_sat(LAYER_FIXED, mul_sat(4, levels));
    bytes = add_sat(bytes, mul_sat(8, out));
    return add_sat(bytes, mul_sat(out, row_bytes_of(in, bits)));
}

static uint64_t header_bytes_of(uint64_t input_dim)
{
    return add_sat(HEADER_FIXED + 4, mul_sat(4, input_dim));
}

/* Counts of an in-memory network as the file stores them (negative values
 * become huge, so a broken network sizes as absurdly large, never small). */
static uint64_t count_of(int32_t v) { return (uint64_t)(uint32_t)v; }

/* Payload bytes of record L as the file stores it. */
static uint64_t record_payload_bytes(const fm_deploy_layer *L)
{
    if (L->type == FM_DL_POOL)
        return POOL_PAYLOAD;
    if (L->type == FM_DL_GAP)
        return GAP_PAYLOAD;
    uint64_t dense = layer_payload_bytes(count_of(L->in), count_of(L->out), count_of(L->bits),
                                         count_of(L->levels));
    return L->type == FM_DL_CONV ? add_sat(CONV_GEOMETRY, dense) : dense;
}

/* The version a network is written in: 1 when it is dense layers alone. */
static uint32_t version_of(const fm_deploy *d)
{
    for (int l = 0; l < d->n_layers; l++)
        if (d->layers[l].type != FM_DL_DENSE)
            return 2u;
    return 1u;
}

uint64_t fmi_deploy_serialized_bytes(const fm_deploy *d)
{
    if (!d)
        return 0;
    uint64_t total = header_bytes_of(count_of(d->input_dim));
    for (int l = 0; l < d->n_layers; l++)
        total = add_sat(total, add_sat(SECTION_FRAME, record_payload_bytes(&d->layers[l])));
    return total;
}

/* ---- writing ------------------------------------------------------------- */

static void put_i32s(fm_writer *w, const int32_t *v, int n)
{
    for (int k = 0; k < n; k++)
        fmi_put_u32(w, (uint32_t)v[k]);
}

static void put_layer(fm_writer *w, const fm_deploy_layer *L)
{
    size_t start = w->len;
    uint64_t payload = record_payload_bytes(L);
    const int32_t map_in[3] = {L->in_h, L->in_w, L->in_c};
    if (L->type == FM_DL_POOL || L->type == FM_DL_GAP) {
        fmi_put_bytes(w, L->type == FM_DL_POOL ? POOL_TAG : GAP_TAG, 4);
        fmi_put_u64(w, payload);
        put_i32s(w, map_in, 3);
        if (L->type == FM_DL_POOL) {
            fmi_put_u32(w, (uint32_t)L->k_h);
            fmi_put_u32(w, (uint32_t)L->stride);
        }
        if (!w->failed)
            fmi_put_u32(w, fmi_crc32(w->buf + start, w->len - start));
        return;
    }
    fmi_put_bytes(w, L->type == FM_DL_CONV ? CONV_TAG : LAYER_TAG, 4);
    fmi_put_u64(w, payload);
    if (L->type == FM_DL_CONV) {
        const int32_t geometry[7] = {L->k_h, L->k_w, L->stride, L->pad_top, L->pad_left, L->out_h,
                                     L->out_w};
        put_i32s(w, map_in, 3);
        put_i32s(w, geometry, 7);
    }
    fmi_put_u32(w, (uint32_t)L->in);
    fmi_put_u32(w, (uint32_t)L->out);
    fmi_put_u32(w, (uint32_t)L->weights);
    fmi_put_u32(w, (uint32_t)L->bits);
    fmi_put_u32(w, (uint32_t)L->levels);
    fmi_put_u32(w, (uint32_t)L->act);
    fmi_put_u32(w, (uint32_t)L->binary_input);
    fmi_put_f32(w, L->unit);
    fmi_put_f32s(w, L->magnitudes, (size_t)L->levels);
    fmi_put_f32s(w, L->scale, (size_t)L->out);
    fmi_put_f32s(w, L->offset, (size_t)L->out);
    /* Rows as stored, but with the bits past the last code cleared: the
     * reader insists on zero padding, so a file has one byte form only. */
    size_t row = (size_t)row_bytes_of(count_of(L->in), count_of(L->bits));
    size_t used_bits = (size_t)L->in * (size_t)L->bits;
    unsigned pad = (unsigned)(row * 8 - used_bits);
    for (int j = 0; j < L->out && !w->failed; j++) {
        const uint8_t *src = L->packed + (size_t)j * L->row_bytes;
        fmi_put_bytes(w, src, row);
        if (pad && !w->failed)
            w->buf[w->len - 1] &= (uint8_t)(0xFFu >> pad);
    }
    if (!w->failed)
        fmi_put_u32(w, fmi_crc32(w->buf + start, w->len - start));
}

/* The whole file in a new buffer of exactly fmi_deploy_serialized_bytes. */
static int serialize(const fm_deploy *d, uint64_t size, fm_writer *w)
{
    fmi_put_reserve(w, (size_t)size);
    fmi_put_bytes(w, PACK_MAGIC, 8);
    fmi_put_u32(w, version_of(d));
    fmi_put_u32(w, (uint32_t)header_bytes_of(count_of(d->input_dim)));
    fmi_put_u32(w, PACK_KNOWN_FLAGS);
    fmi_put_u32(w, (uint32_t)d->height);
    fmi_put_u32(w, (uint32_t)d->width);
    fmi_put_u32(w, (uint32_t)d->channels);
    fmi_put_u32(w, (uint32_t)d->classes);
    fmi_put_u32(w, (uint32_t)d->n_layers);
    fmi_put_u32(w, d->source_mode);
    fmi_put_u32(w, d->export_how);
    fmi_put_u64(w, size);
    fmi_put_f32(w, d->input_scale);
    fmi_put_f32s(w, d->input_mean, (size_t)d->input_dim);
    if (!w->failed)
        fmi_put_u32(w, fmi_crc32(w->buf, w->len));
    for (int l = 0; l < d->n_layers; l++)
        put_layer(w, &d->layers[l]);
    if (w->failed)
        return fmi_error(FM_ENOMEM, "out of memory serializing the packed model");
    if (w->len != size) /* the size formula and the writer disagree: a bug here */
        return fmi_error(FM_EINVAL, "packed model serialized to %zu bytes, expected %llu", w->len,
                        (unsigned long long)size);
    return FM_OK;
}

int fm_deploy_save(const fm_deploy *d, const char *path)
{
    if (!d || !path)
        return fmi_error(FM_EINVAL, "fm_deploy_save: NULL argument");
    /* never write a file the reader would refuse */
    if (fmi_deploy_validate(d, "fm_deploy_save") < 0)
        return FM_EINVAL;
    if (d->source_mode > FM_WEIGHTS_SYNAPSE || d->export_how > FM_EXPORT_MEAN)
        return fmi_error(FM_EINVAL,
                        "fm_deploy_save: unknown source weight mode %u or export kind %u",
                        d->source_mode, d->export_how);
    if ((uint32_t)d->n_layers > (version_of(d) == 1u ? PACK_MAX_LAYERS_V1 : PACK_MAX_LAYERS))
        return fmi_error(FM_EINVAL, "fm_deploy_save: %d layers, more than a version %u file holds",
                        d->n_layers, version_of(d));
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        if (fmi_deploy_weighted(L) && L->row_bytes != row_bytes_of(count_of(L->in), count_of(L->bits)))
            return fmi_error(FM_EINVAL, "fm_deploy_save: layer %d rows of %zu bytes, expected %llu",
                            l + 1, L->row_bytes,
                            (unsigned long long)row_bytes_of(count_of(L->in), count_of(L->bits)));
    }
    uint64_t size = fmi_deploy_serialized_bytes(d);
    if (size > PACK_MAX_BYTES)
        return fmi_error(FM_EINVAL,
                        "fm_deploy_save: the network needs %llu bytes, more than a packed model "
                        "file may hold (%llu)",
                        (unsigned long long)size, (unsigned long long)PACK_MAX_BYTES);
    fm_writer w = {0};
    int rc = serialize(d, size, &w);
    if (rc == FM_OK)
        rc = fmi_file_write_atomic(path, w.buf, w.len);
    fmi_free(w.buf);
    return rc;
}

/* ---- reading: pass 1, structure ----------------------------------------- */

/* Where each section lies in the file, found by pass 1. */
typedef struct layer_span {
    fm_deploy_type type;
    const uint8_t *geometry; /* conv, pool, gap: at the input map's height */
    const uint8_t *payload;  /* dense, conv: at the `in` field */
    uint32_t in, out, bits, levels;
} layer_span;

typedef struct file_plan {
    uint32_t version, height, width, channels, classes, n_layers, source_mode, export_how;
    uint32_t input_dim;
    const uint8_t *input; /* at the input scale */
    layer_span layers[PACK_MAX_LAYERS];
} file_plan;

static int truncated(const char *origin, const char *what, uint64_t need, uint64_t at,
                     uint64_t size)
{
    return fmi_error(FM_ETRUNC,
                    "%s: truncated packed model: %s needs %llu bytes at offset %llu, the file has "
                    "%llu",
                    origin, what, (unsigned long long)need, (unsigned long long)at,
                    (unsigned long long)size);
}

/* The magic as text for a message: printable bytes as they are, others \xNN. */
static void show_magic(const uint8_t *p, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 5 < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, isprint(p[i]) && p[i] != '"' && p[i] != '\\'
                                                    ? "%c" : "\\x%02x", p[i]);
    out[k] = '\0';
}

static int check_magic_version(const uint8_t *p, size_t size, const char *origin)
{
    size_t have = size < 8 ? size : 8;
    if (memcmp(p, PACK_MAGIC, have) != 0) {
        char shown[40];
        show_magic(p, have, shown, sizeof shown);
        if (size >= 8 && memcmp(p, "FMULMODL", 8) == 0)
            return fmi_error(FM_EFORMAT,
                            "%s: not a fewmul packed model (magic \"%s\" is the training model "
                            "file; expected \"%s\")",
                            origin, shown, PACK_MAGIC);
        return fmi_error(FM_EFORMAT, "%s: not a fewmul packed model (magic \"%s\", expected \"%s\")",
                        origin, shown, PACK_MAGIC);
    }
    if (size < 12)
        return truncated(origin, "the magic and version", 12, 0, size);
    uint32_t version = fmi_load_le32(p + 8);
    if (version == 0)
        return fmi_error(FM_EFORMAT, "%s: format version 0 is not valid", origin);
    if (version > PACK_VERSION)
        return fmi_error(FM_EUNSUPPORTED, "%s: format version %u is newer than this fewmul (%u)",
                        origin, version, PACK_VERSION);
    return FM_OK;
}

/* The file-bytes field of the header against the file's real size. */
static int check_declared_size(const char *origin, uint64_t declared_size, uint64_t size)
{
    if (declared_size > size)
        return fmi_error(FM_ETRUNC,
                        "%s: truncated packed model: %llu bytes, the header declares %llu", origin,
                        (unsigned long long)size, (unsigned long long)declared_size);
    if (declared_size < size)
        return fmi_error(FM_EFORMAT,
                        "%s: %llu unexpected bytes after the end of the packed model (%llu bytes)",
                        origin, (unsigned long long)(size - declared_size),
                        (unsigned long long)declared_size);
    return FM_OK;
}

static int plan_header(const uint8_t *p, size_t size, const char *origin, file_plan *plan)
{
    int rc = check_magic_version(p, size, origin);
    if (rc < 0)
        return rc;
    if (size < HEADER_FIXED)
        return truncated(origin, "the header", HEADER_FIXED, 0, size);
    uint32_t header_bytes = fmi_load_le32(p + 12), flags = fmi_load_le32(p + 16);
    plan->height = fmi_load_le32(p + 20);
    plan->width = fmi_load_le32(p + 24);
    plan->channels = fmi_load_le32(p + 28);
    plan->classes = fmi_load_le32(p + 32);
    plan->n_layers = fmi_load_le32(p + 36);
    plan->source_mode = fmi_load_le32(p + 40);
    plan->export_how = fmi_load_le32(p + 44);
    uint64_t declared_size = fmi_load_le64(p + 48);
    plan->input = p + 56;
    plan->version = fmi_load_le32(p + 8);

    /* The shape fixes where the header's checksum lies: bound it first. */
    uint64_t dim = mul_sat(mul_sat(plan->height, plan->width), plan->channels);
    if (plan->height < 1 || plan->width < 1 || plan->channels < 1 || dim > PACK_MAX_DIM)
        return fmi_error(FM_EFORMAT, "%s: bad input shape %u x %u x %u (at most 2^24 values)",
                        origin, plan->height, plan->width, plan->channels);
    plan->input_dim = (uint32_t)dim;
    if (header_bytes != header_bytes_of(dim))
        return fmi_error(FM_EFORMAT,
                        "%s: header declares %u bytes, its input shape %u x %u x %u needs %llu",
                        origin, header_bytes, plan->height, plan->width, plan->channels,
                        (unsigned long long)header_bytes_of(dim));
    if (header_bytes > size)
        return truncated(origin, "the header", header_bytes, 0, size);
    if (fmi_crc32(p, header_bytes - 4) != fmi_load_le32(p + header_bytes - 4))
        return fmi_error(FM_EFORMAT, "%s: header checksum mismatch (file damaged)", origin);

    if (flags & ~PACK_KNOWN_FLAGS)
        return fmi_error(FM_EUNSUPPORTED, "%s: unknown feature flags 0x%08x", origin,
                        flags & ~PACK_KNOWN_FLAGS);
    if ((rc = check_declared_size(origin, declared_size, size)) < 0)
        return rc;
    if (plan->classes < 2 || plan->classes > 256)
        return fmi_error(FM_EFORMAT, "%s: %u classes (2 .. 256)", origin, plan->classes);
    const uint32_t max_layers = plan->version == 1u ? PACK_MAX_LAYERS_V1 : PACK_MAX_LAYERS;
    if (plan->n_layers < 1 || plan->n_layers > max_layers)
        return fmi_error(FM_EFORMAT, "%s: %u layers (1 .. %u in version %u)", origin,
                        plan->n_layers, max_layers, plan->version);
    if (plan->source_mode > FM_WEIGHTS_SYNAPSE)
        return fmi_error(FM_EFORMAT, "%s: unknown source weight mode %u", origin, plan->source_mode);
    if (plan->export_how > FM_EXPORT_MEAN)
        return fmi_error(FM_EFORMAT, "%s: unknown export kind %u", origin, plan->export_how);
    return FM_OK;
}

/* The record type a section's tag names (version 1: dense only); -1 if none. */
static int type_of_tag(const uint8_t *tag, uint32_t version)
{
    if (memcmp(tag, LAYER_TAG, 4) == 0)
        return FM_DL_DENSE;
    if (version < 2u)
        return -1;
    if (memcmp(tag, CONV_TAG, 4) == 0)
        return FM_DL_CONV;
    if (memcmp(tag, POOL_TAG, 4) == 0)
        return FM_DL_POOL;
    if (memcmp(tag, GAP_TAG, 4) == 0)
        return FM_DL_GAP;
    return -1;
}

/* Layer section l at offset `at`: frame, checksum, counts and the payload size
 * they imply, padding bits. */
static int plan_layer(const uint8_t *p, size_t size, size_t at, uint32_t l, uint32_t version,
                      const char *origin, layer_span *span, size_t *next)
{
    char what[48];
    snprintf(what, sizeof what, "layer %u section", l + 1);
    size_t left = size - at;
    if (left < 12)
        return truncated(origin, what, 12, at, size);
    const uint8_t *s = p + at;
    const int type = type_of_tag(s, version);
    if (type < 0)
        return fmi_error(FM_EFORMAT, "%s: layer %u section at offset %zu has a bad tag", origin,
                        l + 1, at);
    span->type = (fm_deploy_type)type;
    /* the fixed payload: a pool's or gap's whole, a convolution's geometry */
    const uint64_t fixed = type == FM_DL_POOL  ? POOL_PAYLOAD
                           : type == FM_DL_GAP ? GAP_PAYLOAD
                           : type == FM_DL_CONV ? CONV_GEOMETRY + LAYER_FIXED
                                                : LAYER_FIXED;
    uint64_t payload = fmi_load_le64(s + 4);
    if (payload < fixed)
        return fmi_error(FM_EFORMAT,
                        "%s: layer %u section declares %llu payload bytes (at least %llu)", origin,
                        l + 1, (unsigned long long)payload, (unsigned long long)fixed);
    if (left < SECTION_FRAME || payload > left - SECTION_FRAME)
        return truncated(origin, what, add_sat(payload, SECTION_FRAME), at, size);
    size_t body = 12 + (size_t)payload;
    if (fmi_crc32(s, body) != fmi_load_le32(s + body))
        return fmi_error(FM_EFORMAT, "%s: layer %u section checksum mismatch (file damaged)", origin,
                        l + 1);
    *next = at + body + 4;
    span->geometry = s + 12;
    if (type == FM_DL_POOL || type == FM_DL_GAP) {
        if (payload != fixed)
            return fmi_error(FM_EFORMAT, "%s: layer %u section holds %llu payload bytes, a %s needs %llu",
                            origin, l + 1, (unsigned long long)payload,
                            type == FM_DL_POOL ? "max-pool" : "global average pool",
                            (unsigned long long)fixed);
        return FM_OK;
    }
    const uint64_t extra = type == FM_DL_CONV ? CONV_GEOMETRY : 0;
    const uint8_t *f = s + 12 + extra;
    span->payload = f;
    span->in = fmi_load_le32(f);
    span->out = fmi_load_le32(f + 4);
    span->bits = fmi_load_le32(f + 12);
    span->levels = fmi_load_le32(f + 16);
    if (span->in < 1 || span->in > PACK_MAX_DIM || span->out < 1 || span->out > PACK_MAX_DIM)
        return fmi_error(FM_EFORMAT, "%s: layer %u has shape %u x %u (1 .. 2^24 each)", origin,
                        l + 1, span->in, span->out);
    if (span->bits < 1 || span->bits > PACK_MAX_BITS)
        return fmi_error(FM_EFORMAT, "%s: layer %u stores %u bits per weight (1 .. 32)", origin,
                        l + 1, span->bits);
    if (span->levels > PACK_MAX_LEVELS)
        return fmi_error(FM_EFORMAT, "%s: layer %u has %u synapse levels (at most %u)", origin,
                        l + 1, span->levels, PACK_MAX_LEVELS);
    uint64_t want = add_sat(extra, layer_payload_bytes(span->in, span->out, span->bits, span->levels));
    if (payload != want)
        return fmi_error(FM_EFORMAT,
                        "%s: layer %u section holds %llu payload bytes, its counts (%u x %u, %u "
                        "bits, %u levels) need %llu",
                        origin, l + 1, (unsigned long long)payload, span->in, span->out,
                        span->bits, span->levels, (unsigned long long)want);

    /* Bits past the last code of a row must be zero: one file per network. */
    uint64_t row = row_bytes_of(span->in, span->bits);
    unsigned pad = (unsigned)(row * 8 - (uint64_t)span->in * span->bits);
    if (pad) {
        const uint8_t *rows = f + LAYER_FIXED + 4 * (size_t)span->levels + 8 * (size_t)span->out;
        uint8_t mask = (uint8_t)(0xFFu << (8 - pad));
        for (uint32_t j = 0; j < span->out; j++)
            if (rows[(size_t)j * row + row - 1] & mask)
                return fmi_error(FM_EFORMAT, "%s: layer %u row %u has nonzero padding bits", origin,
                                l + 1, j);
    }
    return FM_OK;
}

static int plan_file(const uint8_t *p, size_t size, const char *origin, file_plan *plan)
{
    if ((uint64_t)size > PACK_MAX_BYTES)
        return fmi_error(FM_EFORMAT, "%s: %zu bytes is larger than any %s", origin, size, PACK_KIND);
    int rc = plan_header(p, size, origin, plan);
    if (rc < 0)
        return rc;
    size_t at = header_bytes_of(plan->input_dim);
    for (uint32_t l = 0; l < plan->n_layers; l++)
        if ((rc = plan_layer(p, size, at, l, plan->version, origin, &plan->layers[l], &at)) < 0)
            return rc;
    if (at != size)
        return fmi_error(FM_EFORMAT, "%s: %zu unexpected bytes after the last of %u layers", origin,
                        size - at, plan->n_layers);
    return FM_OK;
}

/* ---- reading: pass 2, copy ----------------------------------------------- */

static void read_f32s(const uint8_t *p, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t v = fmi_load_le32(p + 4 * i);
        memcpy(&dst[i], &v, 4);
    }
}

/* An int32 field of the file: values above INT32_MAX become negative, which
 * validation refuses (never a huge count). */
static int32_t load_i32(const uint8_t *p) { return (int32_t)fmi_load_le32(p); }

static int fill_layer(const layer_span *span, fm_deploy_layer *L)
{
    L->type = span->type;
    const uint8_t *g = span->geometry;
    if (span->type != FM_DL_DENSE) {
        L->in_h = load_i32(g);
        L->in_w = load_i32(g + 4);
        L->in_c = load_i32(g + 8);
    }
    if (span->type == FM_DL_POOL || span->type == FM_DL_GAP) {
        /* pools carry no weights: the counts of values they take and give */
        L->weights = FM_DW_FP32;
        if (span->type == FM_DL_POOL) {
            L->k_h = L->k_w = load_i32(g + 12);
            L->stride = load_i32(g + 16);
            const int ok = L->k_h >= 1 && L->stride >= 1 && L->in_h >= L->k_h && L->in_w >= L->k_w;
            L->out_h = ok ? (L->in_h - L->k_h) / L->stride + 1 : 0;
            L->out_w = ok ? (L->in_w - L->k_w) / L->stride + 1 : 0;
        } else {
            L->out_h = L->out_w = 1;
        }
        L->out_c = L->in_c;
        const int64_t in = fmi_deploy_values_in(L), out = fmi_deploy_values_out(L);
        L->in = in >= 1 && in <= INT32_MAX ? (int32_t)in : -1;
        L->out = out >= 1 && out <= INT32_MAX ? (int32_t)out : -1;
        return FM_OK;
    }
    if (span->type == FM_DL_CONV) {
        L->k_h = load_i32(g + 12);
        L->k_w = load_i32(g + 16);
        L->stride = load_i32(g + 20);
        L->pad_top = load_i32(g + 24);
        L->pad_left = load_i32(g + 28);
        L->out_h = load_i32(g + 32);
        L->out_w = load_i32(g + 36);
        L->out_c = (int32_t)span->out;
    }
    const uint8_t *f = span->payload;
    L->in = (int32_t)span->in;
    L->out = (int32_t)span->out;
    L->weights = (fm_deploy_weights)fmi_load_le32(f + 8);
    L->bits = (int32_t)span->bits;
    L->levels = (int32_t)span->levels;
    L->act = (fm_deploy_act)fmi_load_le32(f + 20);
    uint32_t binary_input = fmi_load_le32(f + 24);
    /* any value other than 0 and 1 must fail validation, not become 1 */
    L->binary_input = binary_input > 1 ? -1 : (int)binary_input;
    read_f32s(f + 28, &L->unit, 1);
    if (fmi_deploy_layer_alloc(L) < 0)
        return FM_ENOMEM;
    const uint8_t *q = f + LAYER_FIXED;
    read_f32s(q, L->magnitudes, span->levels);
    q += 4 * (size_t)span->levels;
    read_f32s(q, L->scale, span->out);
    q += 4 * (size_t)span->out;
    read_f32s(q, L->offset, span->out);
    q += 4 * (size_t)span->out;
    memcpy(L->packed, q, (size_t)span->out * L->row_bytes);
    return FM_OK;
}

static int build_network(const file_plan *plan, const char *origin, fm_deploy **out)
{
    fm_deploy *d;
    int rc = fmi_deploy_alloc((int)plan->n_layers, &d);
    if (rc < 0)
        return rc;
    d->height = (int32_t)plan->height;
    d->width = (int32_t)plan->width;
    d->channels = (int32_t)plan->channels;
    d->input_dim = (int32_t)plan->input_dim;
    d->classes = (int32_t)plan->classes;
    d->source_mode = plan->source_mode;
    d->export_how = plan->export_how;
    read_f32s(plan->input, &d->input_scale, 1);
    d->input_mean = fmi_alloc(plan->input_dim, sizeof *d->input_mean);
    if (!d->input_mean) {
        fm_deploy_free(d);
        return FM_ENOMEM;
    }
    read_f32s(plan->input + 4, d->input_mean, plan->input_dim);
    for (uint32_t l = 0; l < plan->n_layers; l++)
        if ((rc = fill_layer(&plan->layers[l], &d->layers[l])) < 0) {
            fm_deploy_free(d);
            return rc;
        }
    if ((rc = fmi_deploy_validate(d, origin)) < 0 || (rc = fmi_deploy_finish(d)) < 0) {
        fm_deploy_free(d);
        return rc;
    }
    *out = d;
    return FM_OK;
}

static int parse(const uint8_t *p, size_t size, const char *origin, fm_deploy **out)
{
    file_plan plan = {0}; /* about 2 KB on the stack: pass 1 allocates nothing */
    int rc = plan_file(p, size, origin, &plan);
    if (rc == FM_OK)
        rc = build_network(&plan, origin, out);
    return rc;
}

int fm_deploy_load_memory(const void *data, size_t size, fm_deploy **out)
{
    if (!out)
        return fmi_error(FM_EINVAL, "fm_deploy_load_memory: NULL argument");
    *out = NULL;
    if (!data && size)
        return fmi_error(FM_EINVAL, "fm_deploy_load_memory: NULL data of %zu bytes", size);
    static const uint8_t empty[1];
    return parse(data ? data : empty, size, "<memory>", out);
}

/* A packed model larger than fmi_read_whole_max: the magic, the version and
 * the file-bytes field against the file's size, before it is read whole. */
static int check_pack_head(const fmi_file_head *f, void *user)
{
    (void)user;
    uint8_t head[HEADER_FIXED];
    size_t n = (size_t)FM_MIN(f->size, (uint64_t)HEADER_FIXED);
    int rc = fmi_head_read(f, 0, head, n, "header");
    if (rc == FM_OK)
        rc = check_magic_version(head, n, f->path);
    if (rc == FM_OK && n < HEADER_FIXED)
        rc = truncated(f->path, "the header", HEADER_FIXED, 0, f->size);
    if (rc == FM_OK)
        rc = check_declared_size(f->path, fmi_load_le64(head + 48), f->size);
    return rc;
}

int fm_deploy_load(const char *path, fm_deploy **out)
{
    if (!path || !out)
        return fmi_error(FM_EINVAL, "fm_deploy_load: NULL argument");
    *out = NULL;
    uint8_t *data;
    size_t size;
    int rc = fmi_file_read_checked(path, (size_t)PACK_MAX_BYTES, PACK_KIND, check_pack_head, NULL,
                                   &data, &size);
    if (rc < 0)
        return rc;
    rc = parse(data, size, path, out);
    fmi_free(data);
    return rc;
}
