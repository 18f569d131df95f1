/* export_c.c — a deployed network as a self-contained C source pair
 * (fm_deploy_export_c, `fewmul export --c DIR`; docs/deploy.md, "C for
 * microcontrollers"): NAME.h states the input, the classes and the size of
 * the one scratch buffer a prediction uses; NAME.c holds the weights as const
 * byte arrays in the packed file's bit layout and one function per record,
 * specialized to its shape. The generated code allocates nothing, keeps no
 * state, calls no function it does not define and includes only <stdint.h>,
 * <limits.h> and <float.h>, so a freestanding compiler builds it for a
 * microcontroller.
 *
 * Its results are the engine's bit for bit, since it computes the same float
 * sums in the same order (infer_ref.c, infer_conv.c, engine.c): group-table
 * lookups per group of 4 inputs, in order, from +0; synapse products x * m;
 * the folded batch norm as two roundings; pools of the sums before the batch
 * norm. Binary weights on binary inputs are xor and popcount on packed words,
 * and every sign is a compare with a range of the sum (fmi_sign_range_int,
 * _float: the engine's own thresholds). Only fp32 weights, which the engine
 * multiplies through BLAS, are summed in another order. Where the engine
 * keeps a table per input pixel, the generated code forms a window tap's
 * table when it reads it: a little more adds, no RAM per pixel. Every float
 * value in the scratch buffer is kept as its uint32_t bits, so the buffer has
 * one type whatever a record stores in it (no aliasing question). */
#include "bytes.h"
#include "deploy.h"
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define NAME_MAX_CHARS 64

/* ---- the plan: records, their value forms, the scratch buffer ------------- */

/* One step of the generated forward pass: a dense layer, a convolution with
 * the max-pool after it (done inside it), or a global average pool. */
typedef struct step {
    const fm_deploy_layer *L, *P; /* P: the max-pool after the convolution, or NULL */
    int number;                   /* L's record number in the file, from 1 */
    int in_bits, out_bits;        /* the values in and out as packed bits (else floats) */
    int integer;                  /* binary weights on binary inputs: xnor sums */
    int last;                     /* writes the class scores */
    int64_t out_words;            /* uint32_t words of its output */
    int64_t adds, mults, compares, converts; /* float operations per prediction */
} step;

typedef struct plan {
    const fm_deploy *d;
    const char *name;
    char upper[NAME_MAX_CHARS + 1];
    step steps[256];
    int n;
    int64_t values_words, acc_words, pool_words; /* scratch regions, uint32_t words */
    int exact;
    uint32_t id;
    uint64_t const_bytes, weight_bytes;
    unsigned need; /* NEED_* helpers of the generated file */
    int64_t input_mults, input_adds, argmax_compares;
} plan;

enum {
    NEED_Z = 1u << 0,
    NEED_POPCOUNT = 1u << 1,
    NEED_BITS8 = 1u << 2,
    NEED_BITS32 = 1u << 3,
    NEED_LE32 = 1u << 4,
    NEED_MAP32 = 1u << 5,
    NEED_BINARY_TABLE = 1u << 6,
    NEED_SUBSET_TABLE = 1u << 7,
    NEED_PAIRS = 1u << 8
};

static int64_t words_of_bits(int64_t bits) { return (bits + 31) / 32 + 1; /* + 1: read ahead */ }

/* Valid taps of conv output position (cy, cx), as fmi_conv_window counts them. */
static int64_t valid_taps(const fm_deploy_layer *L, int cy, int cx)
{
    const int iy0 = cy * L->stride - L->pad_top, ix0 = cx * L->stride - L->pad_left;
    const int ky0 = iy0 < 0 ? -iy0 : 0, kx0 = ix0 < 0 ? -ix0 : 0;
    const int ky1 = L->in_h - iy0 < L->k_h ? L->in_h - iy0 : L->k_h;
    const int kx1 = L->in_w - ix0 < L->k_w ? L->in_w - ix0 : L->k_w;
    return (int64_t)FM_MAX(0, ky1 - ky0) * FM_MAX(0, kx1 - kx0);
}

/* The adds that form the group tables of n inputs: 8 pair sums per group of
 * 4, and one sum per entry of its table (16, fewer for a partial group). */
static int64_t table_adds(int n)
{
    const int last = n % 4;
    return (int64_t)(n / 4) * 24 + (last ? 8 + (1 << last) : 0);
}

/* The float operations a step's generated code executes per prediction. */
static void count_step(step *s)
{
    const fm_deploy_layer *L = s->L, *P = s->P;
    if (L->type == FM_DL_GAP) {
        const int64_t positions = (int64_t)L->in_h * L->in_w;
        s->adds = (positions - 1) * L->in_c;
        s->mults = L->in_c;
        return;
    }
    const int64_t outs = L->out;
    int64_t finishes; /* outputs that get a batch norm or a range */
    if (L->type == FM_DL_DENSE) {
        const int64_t groups = (L->in + 3) / 4, in = L->in;
        finishes = outs;
        if (s->integer) {
            /* xor and popcount */
        } else if (L->weights == FM_DW_BINARY) {
            s->adds = table_adds(L->in) + groups * outs;
        } else if (L->weights == FM_DW_TERNARY) {
            s->adds = table_adds(L->in) + 2 * groups * outs;
        } else if (L->weights == FM_DW_SYNAPSE) {
            s->mults = in * L->levels;
            s->adds = in * outs;
        } else {
            s->mults = in * outs;
            s->adds = in * outs;
        }
    } else {
        const int k = P ? P->k_h : 1, stride = P ? P->stride : 1;
        const int oh = P ? P->out_h : L->out_h, ow = P ? P->out_w : L->out_w;
        const int64_t groups = (L->in_c + 3) / 4;
        int64_t taps = 0, positions = 0;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int dy = 0; dy < k; dy++)
                    for (int dx = 0; dx < k; dx++) {
                        taps += valid_taps(L, oy * stride + dy, ox * stride + dx);
                        positions++;
                    }
        finishes = (int64_t)oh * ow * outs;
        if (s->integer) {
            /* xor and popcount */
        } else if (L->weights == FM_DW_BINARY) {
            s->adds = taps * (table_adds(L->in_c) + groups * outs);
        } else if (L->weights == FM_DW_TERNARY) {
            s->adds = taps * (table_adds(L->in_c) + 2 * groups * outs);
        } else {
            s->mults = taps * L->in_c * outs;
            s->adds = taps * L->in_c * outs;
        }
        if (P && L->act != FM_ACT_SIGN) /* the maxima of the sums */
            s->compares += (positions - (int64_t)oh * ow) * outs;
        if (P && L->act == FM_ACT_SIGN)
            finishes = positions * outs; /* a range per sum, pooled as bits */
    }
    if (L->act == FM_ACT_SIGN) {
        if (!s->integer)
            s->compares += 2 * finishes;
    } else {
        s->mults += finishes;
        s->adds += finishes;
        s->converts += s->integer ? finishes : 0;
        s->compares += L->act == FM_ACT_RELU ? finishes : 0;
    }
}

static uint32_t export_id(const fm_deploy *d, const char *name)
{
    uint32_t crc = fmi_crc32(FM_VERSION_STRING, sizeof FM_VERSION_STRING);
    crc = fmi_crc32_update(crc, name, strlen(name));
    crc = fmi_crc32_update(crc, &d->input_scale, sizeof d->input_scale);
    crc = fmi_crc32_update(crc, d->input_mean, (size_t)d->input_dim * sizeof *d->input_mean);
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        const int32_t shape[] = {L->type, L->in, L->out, L->in_h, L->in_w, L->in_c, L->out_h,
                                 L->out_w, L->out_c, L->k_h, L->k_w, L->stride, L->pad_top,
                                 L->pad_left, L->weights, L->bits, L->levels, L->act,
                                 L->binary_input};
        crc = fmi_crc32_update(crc, shape, sizeof shape);
        if (!fmi_deploy_weighted(L))
            continue;
        crc = fmi_crc32_update(crc, L->packed, (size_t)L->out * L->row_bytes);
        crc = fmi_crc32_update(crc, L->scale, (size_t)L->out * sizeof *L->scale);
        crc = fmi_crc32_update(crc, L->offset, (size_t)L->out * sizeof *L->offset);
        if (L->levels > 0)
            crc = fmi_crc32_update(crc, L->magnitudes, (size_t)L->levels * sizeof *L->magnitudes);
    }
    return crc;
}

static int valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NAME_MAX_CHARS ||
        !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z')))
        return 0;
    for (size_t i = 0; i < n; i++) {
        const char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

/* Bytes of a packed weight array in the generated file: the rows and 4 zero
 * bytes that the bit readers may read past the last row. */
static uint64_t packed_array_bytes(const fm_deploy_layer *L)
{
    return (uint64_t)L->out * L->row_bytes + 4;
}

static int make_plan(const fm_deploy *d, const char *name, plan *p)
{
    memset(p, 0, sizeof *p);
    p->d = d;
    p->name = name;
    for (size_t i = 0; name[i]; i++)
        p->upper[i] = name[i] >= 'a' && name[i] <= 'z' ? (char)(name[i] - 'a' + 'A') : name[i];
    p->exact = 1;
    p->id = export_id(d, name);
    p->values_words = d->input_dim;
    p->const_bytes = (uint64_t)d->input_dim * 4;
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        if (L->type == FM_DL_POOL) /* validated: only after a convolution */
            return fmi_error(FM_EINVAL, "fm_deploy_export_c: layer %d: a max-pool not after a "
                                        "convolution", l + 1);
        step *s = &p->steps[p->n++];
        s->L = L;
        s->number = l + 1;
        if (L->type == FM_DL_CONV && l + 1 < d->n_layers && d->layers[l + 1].type == FM_DL_POOL)
            s->P = &d->layers[++l];
    }
    for (int k = 0; k < p->n; k++) {
        step *s = &p->steps[k];
        const fm_deploy_layer *L = s->L, *O = s->P ? s->P : s->L;
        s->last = k == p->n - 1;
        s->in_bits = k > 0 && p->steps[k - 1].out_bits;
        const fm_deploy_layer *next = s->last ? NULL : p->steps[k + 1].L;
        s->out_bits = next && fmi_deploy_weighted(next) && next->binary_input &&
                      next->weights == FM_DW_BINARY;
        if (s->out_bits && L->act != FM_ACT_SIGN)
            return fmi_error(FM_EINVAL, "fm_deploy_export_c: layer %d reads binary input after a "
                                        "layer without sign", s[1].number);
        s->integer = s->in_bits && fmi_deploy_weighted(L) && L->weights == FM_DW_BINARY;
        const int64_t values = fmi_deploy_values_out(O);
        s->out_words = s->out_bits ? words_of_bits(values) : values;
        p->values_words = FM_MAX(p->values_words, s->out_words);
        if (L->type == FM_DL_CONV)
            p->acc_words = FM_MAX(p->acc_words, (int64_t)L->out_c);
        if (L->type == FM_DL_DENSE && !s->integer && L->weights != FM_DW_FP32)
            p->acc_words = FM_MAX(p->acc_words, (int64_t)L->out);
        if (s->P)
            p->pool_words = FM_MAX(p->pool_words, (int64_t)L->out_c);
        count_step(s);
        if (!fmi_deploy_weighted(L))
            continue;
        if (L->weights == FM_DW_FP32) {
            p->exact = 0;
            p->weight_bytes += (uint64_t)L->out * L->row_bytes;
            p->const_bytes += (uint64_t)L->out * L->row_bytes;
        } else {
            p->weight_bytes += (uint64_t)L->out * L->row_bytes;
            p->const_bytes += packed_array_bytes(L);
        }
        p->const_bytes += (uint64_t)L->levels * 4;
        if (L->act == FM_ACT_SIGN) /* ranges, and the pool's directions */
            p->const_bytes += (uint64_t)L->out * 8 + (s->P ? (uint64_t)(L->out + 31) / 32 * 4 : 0);
        else
            p->const_bytes += (uint64_t)L->out * 8;
    }
    p->input_mults = d->input_dim;
    p->input_adds = d->input_dim;
    p->argmax_compares = d->classes - 1;
    return FM_OK;
}

static uint64_t scratch_words(const plan *p)
{
    return 2 * (uint64_t)p->values_words + (uint64_t)p->acc_words + (uint64_t)p->pool_words;
}

/* ---- writing text ----------------------------------------------------------- */

static void put(FILE *f, const char *fmt, ...) FM_PRINTF(2, 3);
static void put(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
}

/* A float as an exact C99 literal (every value written is finite). */
static void put_float(FILE *f, float v) { put(f, "%af", (double)v); }

static uint32_t float_bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static void put_bytes_array(FILE *f, const char *name, const uint8_t *b, size_t n, size_t pad)
{
    put(f, "static const uint8_t %s[%zu] = {", name, n + pad);
    for (size_t i = 0; i < n + pad; i++)
        put(f, "%s0x%02x%s", i % 16 ? " " : "\n    ", i < n ? b[i] : 0u, i + 1 < n + pad ? "," : "\n");
    put(f, "};\n");
}

static void put_float_array(FILE *f, const char *name, const float *v, size_t n)
{
    put(f, "static const float %s[%zu] = {", name, n);
    for (size_t i = 0; i < n; i++) {
        put(f, "%s", i % 6 ? " " : "\n    ");
        put_float(f, v[i]);
        put(f, "%s", i + 1 < n ? "," : "\n");
    }
    put(f, "};\n");
}

static void put_words_array(FILE *f, const char *type, const char *name, const uint32_t *v, size_t n,
                            int is_signed)
{
    put(f, "static const %s %s[%zu] = {", type, name, n);
    for (size_t i = 0; i < n; i++) {
        put(f, "%s", i % 8 ? " " : "\n    ");
        if (!is_signed)
            put(f, "0x%08" PRIx32 "u", v[i]);
        else if ((int32_t)v[i] == INT32_MIN)
            put(f, "-2147483647 - 1");
        else
            put(f, "%" PRId32, (int32_t)v[i]);
        put(f, "%s", i + 1 < n ? "," : "\n");
    }
    put(f, "};\n");
}

/* ---- the generated helpers ------------------------------------------------ */

static const char *const helper_common[] = {
    "/* Floats live in the scratch buffer as their bits: one type for every value. */",
    "typedef union fmx_word {",
    "    uint32_t u;",
    "    float f;",
    "} fmx_word;",
    "static float fmx_f(uint32_t u)",
    "{",
    "    fmx_word w;",
    "    w.u = u;",
    "    return w.f;",
    "}",
    "static uint32_t fmx_u(float f)",
    "{",
    "    fmx_word w;",
    "    w.f = f;",
    "    return w.u;",
    "}",
    NULL};

static const char *const helper_z[] = {
    "/* The folded batch norm: the product rounded, then the sum (fewmul's order). */",
    "static float fmx_z(float acc, float scale, float offset)",
    "{",
    "    const float product = acc * scale;",
    "    return product + offset;",
    "}",
    NULL};

static const char *const helper_popcount[] = {
    "/* Set bits of v: the popcnt instruction where the target has one, else",
    " * shifts, masks and adds (no multiply, no library call). */",
    "static int fmx_popcount(uint32_t v)",
    "{",
    "#if defined(__GNUC__) && defined(__POPCNT__)",
    "    return __builtin_popcount(v);",
    "#else",
    "    v = v - ((v >> 1) & 0x55555555u);",
    "    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);",
    "    v = (v + (v >> 4)) & 0x0f0f0f0fu;",
    "    return (int)((v + (v >> 8) + (v >> 16) + (v >> 24)) & 0x3fu);",
    "#endif",
    "}",
    NULL};

static const char *const helper_bits8[] = {
    "/* The bits of a packed array from bit `bit` on (at least 9 of them; bit k",
    " * of an array is bit k % 8 of byte k / 8, as in the packed file). */",
    "static uint32_t fmx_bits8(const uint8_t *p, uint32_t bit)",
    "{",
    "    const uint8_t *q = p + (bit >> 3);",
    "    return ((uint32_t)q[0] | (uint32_t)q[1] << 8) >> (bit & 7u);",
    "}",
    NULL};

static const char *const helper_bits32[] = {
    "/* 32 bits of a packed array from bit `bit` on. */",
    "static uint32_t fmx_bits32(const uint8_t *p, uint32_t bit)",
    "{",
    "    const uint8_t *q = p + (bit >> 3);",
    "    const uint32_t s = bit & 7u;",
    "    const uint32_t v = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;",
    "    return s ? v >> s | (uint32_t)q[4] << (32u - s) : v;",
    "}",
    NULL};

static const char *const helper_le32[] = {
    "/* The 32-bit little-endian word at p: packed bits 0 .. 31 from p. */",
    "static uint32_t fmx_le32(const uint8_t *p)",
    "{",
    "    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;",
    "}",
    NULL};

static const char *const helper_map32[] = {
    "/* 32 bits of a packed +-1 map (bit k: value k is +1) from bit `bit` on. */",
    "static uint32_t fmx_map32(const uint32_t *m, uint32_t bit)",
    "{",
    "    const uint32_t *q = m + (bit >> 5);",
    "    const uint32_t s = bit & 31u;",
    "    return s ? q[0] >> s | q[1] << (32u - s) : q[0];",
    "}",
    NULL};

static const char *const helper_binary_table[] = {
    "/* T[b] for b < 2^k, k the inputs of first .. first + 3 that are there (of n):",
    " * the four inputs each added (bit set) or subtracted, as pair sums",
    " * p01[b & 3] + p23[b >> 2] (fewmul's group table, infer_ref.c); a missing",
    " * input is +0.0f, and its weight bit 0, so the other entries are not read. */",
    "static void fmx_binary_table(const uint32_t *x, int n, int first, float T[16])",
    "{",
    "    const int k = n - first < 4 ? n - first : 4;",
    "    float v[4], p01[4], p23[4];",
    "    for (int i = 0; i < 4; i++)",
    "        v[i] = i < k ? fmx_f(x[first + i]) : 0.0f;",
    "    for (int c = 0; c < 4; c++) {",
    "        p01[c] = (c & 1 ? v[0] : -v[0]) + (c & 2 ? v[1] : -v[1]);",
    "        p23[c] = (c & 1 ? v[2] : -v[2]) + (c & 2 ? v[3] : -v[3]);",
    "    }",
    "    for (int b = 0; b < 1 << k; b++)",
    "        T[b] = p01[b & 3] + p23[b >> 2];",
    "}",
    NULL};

static const char *const helper_subset_table[] = {
    "/* S[b] for b < 2^k: the sum of the inputs whose bit is set, as pair sums. */",
    "static void fmx_subset_table(const uint32_t *x, int n, int first, float S[16])",
    "{",
    "    const int k = n - first < 4 ? n - first : 4;",
    "    float v[4], q01[4], q23[4];",
    "    for (int i = 0; i < 4; i++)",
    "        v[i] = i < k ? fmx_f(x[first + i]) : 0.0f;",
    "    for (int c = 0; c < 4; c++) {",
    "        q01[c] = (c & 1 ? v[0] : 0.0f) + (c & 2 ? v[1] : 0.0f);",
    "        q23[c] = (c & 1 ? v[2] : 0.0f) + (c & 2 ? v[3] : 0.0f);",
    "    }",
    "    for (int b = 0; b < 1 << k; b++)",
    "        S[b] = q01[b & 3] + q23[b >> 2];",
    "}",
    NULL};

static const char *const helper_pairs[] = {
    "/* Bits 0, 2, 4, 6 of v as a 4-bit number (ternary codes: 1 is +1, 3 is -1). */",
    "static unsigned fmx_pairs(unsigned v)",
    "{",
    "    v = (v | v >> 1) & 0x33u;",
    "    return (v | v >> 2) & 0x0fu;",
    "}",
    NULL};

static void put_lines(FILE *f, const char *const *lines)
{
    for (const char *const *l = lines; *l; l++)
        put(f, "%s\n", *l);
}

/* ---- the records ---------------------------------------------------------- */

static const char *const kind_names[] = {"fp32", "binary", "ternary", "synapse"};
static const char *const act_names[] = {"none (class scores)", "relu", "sign"};

/* The const tables of a dense layer or convolution: weights, magnitudes,
 * scale and offset, or the sign's ranges and the pool's directions. */
static int put_tables(FILE *f, const step *s)
{
    const fm_deploy_layer *L = s->L;
    const int n = s->number;
    char name[32];
    snprintf(name, sizeof name, "fmx_w%d", n);
    if (L->weights == FM_DW_FP32) {
        put(f, "/* filter / output j's %d weights from [j * %d] */\n", L->in, L->in);
        put_float_array(f, name, (const float *)(const void *)L->packed, (size_t)L->out * (size_t)L->in);
    } else {
        put(f, "/* %d rows of %zu bytes: row j holds output j's %d codes of %d bit%s, code i at bit %d * i",
            L->out, L->row_bytes, L->in, L->bits, L->bits == 1 ? "" : "s", L->bits);
        put(f, "%s */\n", L->type == FM_DL_CONV ? ", in (ky, kx, channel) order" : "");
        put_bytes_array(f, name, L->packed, (size_t)L->out * L->row_bytes, 4);
    }
    if (L->levels > 0) {
        snprintf(name, sizeof name, "fmx_m%d", n);
        put_float_array(f, name, L->magnitudes, (size_t)L->levels);
    }
    if (L->act != FM_ACT_SIGN) {
        snprintf(name, sizeof name, "fmx_s%d", n);
        put_float_array(f, name, L->scale, (size_t)L->out);
        snprintf(name, sizeof name, "fmx_o%d", n);
        put_float_array(f, name, L->offset, (size_t)L->out);
        return FM_OK;
    }
    /* +1 exactly where lo <= acc <= hi (the engine's ranges): no multiply */
    uint32_t *r = fmi_alloc((size_t)L->out * 2 + (size_t)(L->out + 31) / 32, sizeof *r);
    if (!r)
        return FM_ENOMEM;
    uint32_t *above = r + 2 * (size_t)L->out;
    for (int j = 0; j < L->out; j++) {
        if (s->integer) {
            int32_t lo, hi;
            fmi_sign_range_int(L->scale[j], L->offset[j], L->in, &lo, &hi);
            r[2 * j] = (uint32_t)lo, r[2 * j + 1] = (uint32_t)hi;
        } else {
            float lo, hi;
            fmi_sign_range_float(L->scale[j], L->offset[j], &lo, &hi);
            r[2 * j] = float_bits(lo), r[2 * j + 1] = float_bits(hi);
        }
        above[j / 32] |= (uint32_t)!(L->scale[j] < 0.0f) << (j % 32);
    }
    snprintf(name, sizeof name, "fmx_t%d", n);
    put(f, "/* sign: +1 where t[2j] <= sum <= t[2j + 1]%s */\n",
        s->integer ? "" : " (floats, as their bits)");
    put_words_array(f, s->integer ? "int32_t" : "uint32_t", name, r, 2 * (size_t)L->out, s->integer);
    if (s->P) {
        snprintf(name, sizeof name, "fmx_a%d", n);
        put(f, "/* bit j: channel j's z grows with its sum (a pool of signs ORs them, else ANDs) */\n");
        put_words_array(f, "uint32_t", name, above, (size_t)(L->out + 31) / 32, 0);
    }
    fmi_free(r);
    return FM_OK;
}

/* The statements that finish output `j` of step s from its sum, `a` (float)
 * or `sum` (int32_t, xnor steps), into y: a sign as a bit (packed output) or
 * +-1, else the batch norm and the activation. `index` is the output's value
 * index (an expression), `indent` the spaces before each line. */
static void put_finish(FILE *f, const step *s, const char *index, const char *indent)
{
    const fm_deploy_layer *L = s->L;
    const int n = s->number;
    if (L->act == FM_ACT_SIGN) {
        if (s->integer)
            put(f, "%sconst uint32_t plus = fmx_t%d[2 * j] <= sum && sum <= fmx_t%d[2 * j + 1];\n",
                indent, n, n);
        else
            put(f, "%sconst uint32_t plus = fmx_f(fmx_t%d[2 * j]) <= a && a <= fmx_f(fmx_t%d[2 * j + 1]);\n",
                indent, n, n);
    }
    if (L->act == FM_ACT_SIGN && s->out_bits) {
        put(f, "%sword |= plus << (bit & 31u);\n", indent);
        put(f, "%sif ((bit & 31u) == 31u) {\n", indent);
        put(f, "%s    y[bit >> 5] = word;\n", indent);
        put(f, "%s    word = 0;\n", indent);
        put(f, "%s}\n", indent);
        put(f, "%sbit++;\n", indent);
        return;
    }
    if (L->act == FM_ACT_SIGN) {
        put(f, "%sy[%s] = fmx_u(plus ? 1.0f : -1.0f);\n", indent, index);
        return;
    }
    if (s->integer)
        put(f, "%sconst float a = (float)sum;\n", indent);
    put(f, "%sconst float z = fmx_z(a, fmx_s%d[j], fmx_o%d[j]);\n", indent, n, n);
    if (L->act == FM_ACT_RELU)
        put(f, "%sy[%s] = fmx_u(z > 0.0f ? z : 0.0f);\n", indent, index);
    else
        put(f, "%sy[%s] = fmx_u(z);\n", indent, index);
}

/* The end of a packed output of `bits` values: the last partial word and a
 * zero word after it, which readers of 32 bits at a time may touch. */
static void put_flush(FILE *f, const step *s, int64_t bits)
{
    if (!s->out_bits)
        return;
    put(f, "    y[%" PRId64 "] = word;\n", bits / 32);
    if (bits % 32)
        put(f, "    y[%" PRId64 "] = 0;\n", bits / 32 + 1);
}

/* The end of a dense layer's function, inside its loop over the outputs j
 * with the sum in `a` or `sum`: the output, the loop's end, the last word. */
static void put_dense_end(FILE *f, const step *s)
{
    put_finish(f, s, "j", "        ");
    put(f, "    }\n");
    put_flush(f, s, s->L->out);
    put(f, "}\n\n");
}

static void put_dense(FILE *f, const step *s)
{
    const fm_deploy_layer *L = s->L;
    const int n = s->number, in = L->in, out = L->out, groups = (in + 3) / 4;
    const size_t rb = L->row_bytes;
    const char *acc_param = !s->integer && L->weights != FM_DW_FP32 ? ", uint32_t *acc" : "";
    put(f, "static void fmx_r%d(const uint32_t *x, uint32_t *y%s)\n{\n", n, acc_param);
    if (s->out_bits)
        put(f, "    uint32_t word = 0, bit = 0;\n");
    if (s->integer) {
        put(f, "    for (int j = 0; j < %d; j++) {\n", out);
        put(f, "        const uint8_t *w = fmx_w%d + j * %zu;\n", n, rb);
        put(f, "        int m = 0; /* inputs that differ from their weight: -1 each */\n");
        if (in / 32 > 0) {
            put(f, "        for (int k = 0; k < %d; k++)\n", in / 32);
            put(f, "            m += fmx_popcount(x[k] ^ fmx_le32(w + 4 * k));\n");
        }
        if (in % 32)
            put(f, "        m += fmx_popcount((x[%d] ^ fmx_le32(w + %d)) & 0x%08" PRIx32 "u);\n", in / 32,
                4 * (in / 32), (uint32_t)((1ull << (in % 32)) - 1u));
        put(f, "        const int32_t sum = %d - 2 * m;\n", in);
        put_dense_end(f, s);
        return;
    }
    if (L->weights == FM_DW_FP32) {
        put(f, "    for (int j = 0; j < %d; j++) {\n", out);
        put(f, "        const float *w = fmx_w%d + j * %d;\n", n, in);
        put(f, "        float a = 0.0f;\n");
        put(f, "        for (int i = 0; i < %d; i++) {\n", in);
        put(f, "            const float product = w[i] * fmx_f(x[i]);\n");
        put(f, "            a = a + product;\n");
        put(f, "        }\n");
        put_dense_end(f, s);
        return;
    }
    /* the sums, groups (or inputs) outside and outputs inside: each output
     * adds its terms in order, from +0 */
    if (L->weights == FM_DW_SYNAPSE) {
        put(f, "    for (int i = 0; i < %d; i++) {\n", in);
        put(f, "        float P[%d];\n", L->levels);
        put(f, "        const float xi = fmx_f(x[i]);\n");
        put(f, "        for (int k = 0; k < %d; k++)\n", L->levels);
        put(f, "            P[k] = xi * fmx_m%d[k];\n", n);
        put(f, "        const uint32_t at = (uint32_t)i * %du; /* code i's first bit */\n", L->bits);
        put(f, "        for (int j = 0; j < %d; j++) {\n", out);
        put(f, "            const uint32_t code = fmx_bits8(fmx_w%d + j * %zu, at) & 0x%xu;\n", n, rb,
            (1u << L->bits) - 1u);
        put(f, "            const float p = P[code & 0x%xu], a = i ? fmx_f(acc[j]) : 0.0f;\n",
            (1u << (L->bits - 1)) - 1u);
        put(f, "            acc[j] = fmx_u(code >> %d ? a - p : a + p);\n", L->bits - 1);
        put(f, "        }\n");
        put(f, "    }\n");
    } else {
        /* groups outside, outputs inside, each output adding its terms in
         * order; binary: the two groups of a weight byte at once */
        const int ternary = L->weights == FM_DW_TERNARY;
        if (ternary) {
            put(f, "    for (int g = 0; g < %d; g++) {\n", groups);
            put(f, "        float T[16];\n");
            put(f, "        fmx_subset_table(x, %d, 4 * g, T);\n", in);
            put(f, "        for (int j = 0; j < %d; j++) {\n", out);
            put(f, "            const unsigned c = fmx_w%d[j * %zu + g], plus = c & 0x55u, minus = c >> 1 & 0x55u;\n",
                n, rb);
            put(f, "            float a = g ? fmx_f(acc[j]) : 0.0f;\n");
            put(f, "            a = a + T[fmx_pairs(plus & ~minus)];\n");
            put(f, "            acc[j] = fmx_u(a - T[fmx_pairs(minus)]);\n");
        } else {
            put(f, "    for (int g = 0; g < %d; g += 2) {\n", groups);
            put(f, "        float T0[16], T1[16];\n");
            put(f, "        const int pair = g + 1 < %d;\n", groups);
            put(f, "        fmx_binary_table(x, %d, 4 * g, T0);\n", in);
            put(f, "        if (pair)\n");
            put(f, "            fmx_binary_table(x, %d, 4 * g + 4, T1);\n", in);
            put(f, "        for (int j = 0; j < %d; j++) {\n", out);
            put(f, "            const unsigned b = fmx_w%d[j * %zu + g / 2]; /* groups g, g + 1 */\n", n, rb);
            put(f, "            float a = g ? fmx_f(acc[j]) : 0.0f;\n");
            put(f, "            a = a + T0[b & 15u];\n");
            put(f, "            if (pair)\n");
            put(f, "                a = a + T1[b >> 4];\n");
            put(f, "            acc[j] = fmx_u(a);\n");
        }
        put(f, "        }\n");
        put(f, "    }\n");
    }
    put(f, "    for (int j = 0; j < %d; j++) {\n", out);
    put(f, "        const float a = fmx_f(acc[j]);\n");
    put_dense_end(f, s);
}

/* The sums of one output position (cy, cx) of a convolution, every channel,
 * into acc (float bits, or int32_t for xnor sums), over the taps of the
 * window inside the input. */
static void put_conv_position(FILE *f, const step *s)
{
    const fm_deploy_layer *L = s->L;
    const int n = s->number, ic = L->in_c, oc = L->out_c, groups = (ic + 3) / 4;
    const size_t rb = L->row_bytes;
    put(f, "static void fmx_p%d(const uint32_t *x, int cy, int cx, uint32_t *acc)\n{\n", n);
    put(f, "    const int iy0 = cy * %d - %d, ix0 = cx * %d - %d;\n", L->stride, L->pad_top, L->stride,
        L->pad_left);
    put(f, "    const int ky0 = iy0 < 0 ? -iy0 : 0, kx0 = ix0 < 0 ? -ix0 : 0;\n");
    put(f, "    const int ky1 = %d - iy0 < %d ? %d - iy0 : %d, kx1 = %d - ix0 < %d ? %d - ix0 : %d;\n",
        L->in_h, L->k_h, L->in_h, L->k_h, L->in_w, L->k_w, L->in_w, L->k_w);
    if (s->integer) {
        /* a row of the window's taps is one run of bits in the map and in the row */
        put(f, "    const uint32_t run = (uint32_t)(kx1 - kx0) * %du;\n", ic);
        put(f, "    const int32_t valid = (int32_t)(ky1 - ky0) * (int32_t)run;\n");
        put(f, "    for (int j = 0; j < %d; j++) {\n", oc);
        put(f, "        const uint8_t *w = fmx_w%d + j * %zu;\n", n, rb);
        put(f, "        int m = 0; /* valid taps' values that differ from their weight */\n");
        put(f, "        for (int ky = ky0; ky < ky1; ky++) {\n");
        put(f, "            uint32_t ib = (uint32_t)(((iy0 + ky) * %d + ix0 + kx0) * %d);\n", L->in_w, ic);
        put(f, "            uint32_t wb = (uint32_t)((ky * %d + kx0) * %d);\n", L->k_w, ic);
        put(f, "            uint32_t left = run;\n");
        put(f, "            for (; left >= 32u; left -= 32u, ib += 32u, wb += 32u)\n");
        put(f, "                m += fmx_popcount(fmx_map32(x, ib) ^ fmx_bits32(w, wb));\n");
        put(f, "            if (left)\n");
        put(f, "                m += fmx_popcount((fmx_map32(x, ib) ^ fmx_bits32(w, wb)) & ((1u << left) - 1u));\n");
        put(f, "        }\n");
        put(f, "        acc[j] = (uint32_t)(valid - 2 * m);\n");
        put(f, "    }\n");
        put(f, "}\n\n");
        return;
    }
    put(f, "    int first = 1;\n");
    put(f, "    for (int ky = ky0; ky < ky1; ky++)\n");
    put(f, "        for (int kx = kx0; kx < kx1; kx++) {\n");
    put(f, "            const uint32_t *px = x + ((iy0 + ky) * %d + ix0 + kx) * %d;\n", L->in_w, ic);
    put(f, "            const uint32_t tap = (uint32_t)(ky * %d + kx) * %du;\n", L->k_w, ic);
    if (L->weights == FM_DW_BINARY || L->weights == FM_DW_TERNARY) {
        const int ternary = L->weights == FM_DW_TERNARY;
        const int last = ic - 4 * (groups - 1); /* channels in the last group */
        const unsigned full = ternary ? 0xffu : 0xfu;
        const unsigned last_mask = ternary ? (1u << (2 * last)) - 1u : (1u << last) - 1u;
        put(f, "            for (int g0 = 0; g0 < %d; g0 += 8) { /* 8 groups at a time */\n", groups);
        put(f, "                const int n = %d - g0 < 8 ? %d - g0 : 8;\n", groups, groups);
        put(f, "                float T[8][16];\n");
        put(f, "                for (int k = 0; k < n; k++)\n");
        put(f, "                    fmx_%s_table(px, %d, 4 * (g0 + k), T[k]);\n", ternary ? "subset" : "binary", ic);
        put(f, "                for (int j = 0; j < %d; j++) {\n", oc);
        put(f, "                    const uint8_t *w = fmx_w%d + j * %zu;\n", n, rb);
        put(f, "                    float a = first ? 0.0f : fmx_f(acc[j]);\n");
        put(f, "                    for (int k = 0; k < n; k++) {\n");
        put(f, "                        const uint32_t bit = %s(tap + 4u * (uint32_t)(g0 + k));\n", ternary ? "2u * " : "");
        if (last_mask == full)
            put(f, "                        const unsigned c = fmx_bits8(w, bit) & 0x%xu;\n", full);
        else /* the tap's channels only */
            put(f, "                        const unsigned c = fmx_bits8(w, bit) & (g0 + k == %d ? 0x%xu : 0x%xu);\n",
                groups - 1, last_mask, full);
        if (ternary) {
            put(f, "                        const unsigned plus = c & 0x55u, minus = c >> 1 & 0x55u;\n");
            put(f, "                        a = a + T[k][fmx_pairs(plus & ~minus)];\n");
            put(f, "                        a = a - T[k][fmx_pairs(minus)];\n");
        } else {
            put(f, "                        a = a + T[k][c];\n");
        }
        put(f, "                    }\n");
        put(f, "                    acc[j] = fmx_u(a);\n");
        put(f, "                }\n");
        put(f, "                first = 0;\n");
        put(f, "            }\n");
    } else {
        put(f, "            for (int c = 0; c < %d; c++) {\n", ic);
        put(f, "                const float xc = fmx_f(px[c]);\n");
        if (L->weights == FM_DW_SYNAPSE)
            put(f, "                const uint32_t bit = (tap + (uint32_t)c) * %du;\n", L->bits);
        put(f, "                for (int j = 0; j < %d; j++) {\n", oc);
        put(f, "                    const float a = first ? 0.0f : fmx_f(acc[j]);\n");
        if (L->weights == FM_DW_SYNAPSE) {
            put(f, "                    const uint32_t code = fmx_bits8(fmx_w%d + j * %zu, bit) & 0x%xu;\n", n,
                rb, (1u << L->bits) - 1u);
            put(f, "                    const float p = xc * fmx_m%d[code & 0x%xu];\n", n,
                (1u << (L->bits - 1)) - 1u);
            put(f, "                    acc[j] = fmx_u(code >> %d ? a - p : a + p);\n", L->bits - 1);
        } else {
            put(f, "                    const float p = fmx_w%d[j * %d + (int)tap + c] * xc;\n", n, L->in);
            put(f, "                    acc[j] = fmx_u(a + p);\n");
        }
        put(f, "                }\n");
        put(f, "                first = 0;\n");
        put(f, "            }\n");
    }
    put(f, "        }\n");
    put(f, "}\n\n");
}

static void put_conv(FILE *f, const step *s)
{
    const fm_deploy_layer *L = s->L, *P = s->P;
    const int n = s->number, oc = L->out_c;
    const int oh = P ? P->out_h : L->out_h, ow = P ? P->out_w : L->out_w;
    const int sign = L->act == FM_ACT_SIGN;
    put_conv_position(f, s);
    put(f, "static void fmx_r%d(const uint32_t *x, uint32_t *y, uint32_t *acc%s)\n{\n", n,
        P ? ", uint32_t *pool" : "");
    if (s->out_bits)
        put(f, "    uint32_t word = 0, bit = 0;\n");
    put(f, "    for (int oy = 0; oy < %d; oy++)\n", oh);
    put(f, "        for (int ox = 0; ox < %d; ox++) {\n", ow);
    if (!P) {
        put(f, "            fmx_p%d(x, oy, ox, acc);\n", n);
        put(f, "            for (int j = 0; j < %d; j++) {\n", oc);
        if (s->integer)
            put(f, "                const int32_t sum = (int32_t)acc[j];\n");
        else
            put(f, "                const float a = fmx_f(acc[j]);\n");
        char index[64];
        snprintf(index, sizeof index, "(oy * %d + ox) * %d + j", ow, oc);
        put_finish(f, s, index, "                ");
    } else {
        /* the pool's window of sums, in the engine's order: the first, then
         * each later one strictly greater; for a sign, the bits ORed where z
         * grows with the sum, ANDed where it falls (engine.c, pool_bits) */
        put(f, "            for (int dy = 0; dy < %d; dy++)\n", P->k_h);
        put(f, "                for (int dx = 0; dx < %d; dx++) {\n", P->k_w);
        put(f, "                    const int first = dy == 0 && dx == 0;\n");
        put(f, "                    fmx_p%d(x, oy * %d + dy, ox * %d + dx, acc);\n", n, P->stride, P->stride);
        put(f, "                    for (int j = 0; j < %d; j++) {\n", oc);
        if (sign) {
            if (s->integer) {
                put(f, "                        const int32_t sum = (int32_t)acc[j];\n");
                put(f, "                        const uint32_t plus = fmx_t%d[2 * j] <= sum && sum <= fmx_t%d[2 * j + 1];\n",
                    n, n);
            } else {
                put(f, "                        const float a = fmx_f(acc[j]);\n");
                put(f, "                        const uint32_t plus = fmx_f(fmx_t%d[2 * j]) <= a && a <= fmx_f(fmx_t%d[2 * j + 1]);\n",
                    n, n);
            }
            put(f, "                        pool[j] = first ? plus : fmx_a%d[j >> 5] >> (j & 31) & 1u ? pool[j] | plus : pool[j] & plus;\n",
                n);
        } else {
            if (s->integer)
                put(f, "                        const float v = (float)(int32_t)acc[j];\n");
            else
                put(f, "                        const float v = fmx_f(acc[j]);\n");
            put(f, "                        if (first || v > fmx_f(pool[j]))\n");
            put(f, "                            pool[j] = fmx_u(v);\n");
        }
        put(f, "                    }\n");
        put(f, "                }\n");
        put(f, "            for (int j = 0; j < %d; j++) {\n", oc);
        if (sign) {
            put(f, "                const uint32_t plus = pool[j];\n");
            /* put_finish without its range: the bits are pooled already */
            if (s->out_bits) {
                put(f, "                word |= plus << (bit & 31u);\n");
                put(f, "                if ((bit & 31u) == 31u) {\n");
                put(f, "                    y[bit >> 5] = word;\n");
                put(f, "                    word = 0;\n");
                put(f, "                }\n");
                put(f, "                bit++;\n");
            } else {
                put(f, "                y[(oy * %d + ox) * %d + j] = fmx_u(plus ? 1.0f : -1.0f);\n", ow, oc);
            }
        } else {
            step plain = *s;
            plain.integer = 0; /* the pooled sums are floats */
            put(f, "                const float a = fmx_f(pool[j]);\n");
            char index[64];
            snprintf(index, sizeof index, "(oy * %d + ox) * %d + j", ow, oc);
            put_finish(f, &plain, index, "                ");
        }
    }
    put(f, "            }\n");
    put(f, "        }\n");
    put_flush(f, s, (int64_t)oh * ow * oc);
    put(f, "}\n\n");
}

static void put_gap(FILE *f, const step *s)
{
    const fm_deploy_layer *L = s->L;
    const int positions = L->in_h * L->in_w, c = L->in_c;
    put(f, "static void fmx_r%d(const uint32_t *x, uint32_t *y)\n{\n", s->number);
    put(f, "    for (int j = 0; j < %d; j++) {\n", c);
    put(f, "        float sum = fmx_f(x[j]);\n");
    if (positions > 1) {
        put(f, "        for (int p = 1; p < %d; p++)\n", positions);
        put(f, "            sum = sum + fmx_f(x[p * %d + j]);\n", c);
    }
    put(f, "        y[j] = fmx_u(sum * ");
    put_float(f, 1.0f / (float)positions);
    put(f, "); /* 1 / %d */\n", positions);
    put(f, "    }\n");
    put(f, "}\n\n");
}

/* Which helpers the generated file needs (an unused static function would be
 * a warning there). */
static unsigned helpers_of(const plan *p)
{
    unsigned need = 0;
    for (int k = 0; k < p->n; k++) {
        const step *s = &p->steps[k];
        const fm_deploy_layer *L = s->L;
        if (!fmi_deploy_weighted(L))
            continue;
        if (L->act != FM_ACT_SIGN)
            need |= NEED_Z;
        if (s->integer) {
            need |= NEED_POPCOUNT | (L->type == FM_DL_DENSE ? NEED_LE32 : NEED_BITS32 | NEED_MAP32);
        } else if (L->weights == FM_DW_BINARY || L->weights == FM_DW_TERNARY) {
            need |= L->weights == FM_DW_BINARY ? NEED_BINARY_TABLE : NEED_SUBSET_TABLE | NEED_PAIRS;
            if (L->type == FM_DL_CONV)
                need |= NEED_BITS8;
        } else if (L->weights == FM_DW_SYNAPSE) {
            need |= NEED_BITS8;
        }
    }
    return need;
}

static const char *const *const helper_texts[] = {
    helper_z, helper_popcount, helper_bits8, helper_bits32, helper_le32, helper_map32,
    helper_binary_table, helper_subset_table, helper_pairs};

/* A step as one line of text: "dense 784 > 256, binary weights, real input, sign". */
static void describe_step(const step *s, char *buf, size_t cap)
{
    const fm_deploy_layer *L = s->L, *P = s->P;
    if (L->type == FM_DL_GAP) {
        snprintf(buf, cap, "global average pool %dx%dx%d > %d", L->in_h, L->in_w, L->in_c, L->in_c);
        return;
    }
    char geometry[160] = "";
    if (L->type == FM_DL_CONV) {
        int len = snprintf(geometry, sizeof geometry, "conv %dx%dx%d > %dx%d stride %d pad %d,%d > %dx%dx%d",
                           L->in_h, L->in_w, L->in_c, L->k_h, L->k_w, L->stride, L->pad_top,
                           L->pad_left, L->out_h, L->out_w, L->out_c);
        if (P && len > 0 && (size_t)len < sizeof geometry)
            snprintf(geometry + len, sizeof geometry - (size_t)len, ", max-pool %dx%d stride %d > %dx%dx%d",
                     P->k_h, P->k_w, P->stride, P->out_h, P->out_w, P->out_c);
    } else {
        snprintf(geometry, sizeof geometry, "dense %d > %d", L->in, L->out);
    }
    snprintf(buf, cap, "%s, %s weights, %s input, %s", geometry, kind_names[L->weights],
             s->in_bits ? "binary" : "real", act_names[L->act]);
}

/* How a step computes, for the header's list. */
static const char *method_of(const step *s)
{
    const fm_deploy_layer *L = s->L;
    if (L->type == FM_DL_GAP)
        return "adds, then one multiply per channel (x 1/positions)";
    if (s->integer)
        return L->act == FM_ACT_SIGN ? "xor and popcount, integer ranges: no float operation"
                                     : "xor and popcount; the batch norm in floats";
    switch (L->weights) {
    case FM_DW_BINARY: return "group lookup: the signed sums of each group of 4 inputs (16; 2^k of k < 4), one add per weight group";
    case FM_DW_TERNARY: return "group lookup: the subset sums of each group of 4 inputs (16; 2^k of k < 4), two adds per weight group";
    case FM_DW_SYNAPSE: return "level products x * m, then an add per weight";
    default: return "float multiply-adds (fp32 weights)";
    }
}

typedef struct export_job {
    const plan *p;
    int rc; /* a failure of the generator's own (FM_ENOMEM) */
} export_job;

static int fill_source(FILE *f, export_job *job)
{
    const plan *p = job->p;
    const fm_deploy *d = p->d;
    const char *name = p->name, *up = p->upper;
    put(f, "/* %s.c - generated by fewmul %s (fewmul export --c) from a packed model:\n", name,
        FM_VERSION_STRING);
    put(f, " * %s.\n", d->description);
    put(f, " * Do not edit: export the model again. %s.h says how to call it and what it computes. */\n",
        name);
    put(f, "#include \"%s.h\"\n\n", name);
    put(f, "#include <float.h>\n#include <limits.h>\n#include <stdint.h>\n\n");
    put(f, "#if %s_EXPORT_ID != 0x%08" PRIx32 "u\n", up, p->id);
    put(f, "#error \"%s.h is not the header of this %s.c: export the model again\"\n#endif\n", name, name);
    put(f, "#if INT_MAX < 2147483647\n#error \"%s.c needs an int of 32 bits at least\"\n#endif\n", name);
    put(f, "#if defined(__FAST_MATH__)\n");
    put(f, "#error \"compile %s.c without -ffast-math: its float sums must round as fewmul's do\"\n#endif\n",
        name);
    put(f, "#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD > 0\n");
    put(f, "#error \"%s.c needs float arithmetic in float precision (FLT_EVAL_METHOD 0: SSE, not x87)\"\n",
        name);
    put(f, "#endif\n");
    put(f, "/* a * b + c stays two roundings, as in fewmul: no fused multiply-add (GCC\n");
    put(f, " * fuses them in its GNU modes unless told not to); no call of memset or\n");
    put(f, " * memcpy made up from a loop, so that nothing outside this file is needed */\n");
    put(f, "#if defined(__GNUC__) && !defined(__clang__)\n");
    put(f, "#pragma GCC optimize(\"fp-contract=off\", \"no-tree-loop-distribute-patterns\")\n");
    put(f, "#else\n#pragma STDC FP_CONTRACT OFF\n#endif\n\n");
    put_lines(f, helper_common);
    for (size_t h = 0; h < sizeof helper_texts / sizeof *helper_texts; h++)
        if (p->need & (1u << h))
            put_lines(f, helper_texts[h]);
    put(f, "\n/* the input: x = pixel * scale - mean[i] */\n");
    put_float_array(f, "fmx_mean", d->input_mean, (size_t)d->input_dim);
    put(f, "\nstatic void fmx_input(const uint8_t *u8, const float *f32, uint32_t *x)\n{\n");
    put(f, "    for (int i = 0; i < %d; i++) {\n", d->input_dim);
    put(f, "        const float pixel = u8 ? (float)u8[i] : f32[i];\n");
    put(f, "        const float scaled = pixel * ");
    put_float(f, d->input_scale);
    put(f, ";\n        x[i] = fmx_u(scaled - fmx_mean[i]);\n    }\n}\n\n");
    for (int k = 0; k < p->n; k++) {
        const step *s = &p->steps[k];
        char what[400];
        describe_step(s, what, sizeof what);
        put(f, "/* ---- record %d: %s */\n", s->number, what);
        if (fmi_deploy_weighted(s->L) && (job->rc = put_tables(f, s)) < 0)
            return ENOMEM;
        put(f, "\n");
        if (s->L->type == FM_DL_GAP)
            put_gap(f, s);
        else if (s->L->type == FM_DL_CONV)
            put_conv(f, s);
        else
            put_dense(f, s);
    }
    const int64_t v = p->values_words;
    put(f, "/* scratch: two buffers of %" PRId64 " words for the values between records", v);
    if (p->acc_words)
        put(f, ", %" PRId64 " for sums", p->acc_words);
    if (p->pool_words)
        put(f, ", %" PRId64 " for pooled sums", p->pool_words);
    put(f, " */\nstatic int fmx_run(const uint8_t *u8, const float *f32, float *scores, uint32_t *scratch)\n{\n");
    put(f, "    uint32_t *a = scratch, *b = scratch + %" PRId64 ";\n", v);
    if (p->acc_words)
        put(f, "    uint32_t *acc = scratch + %" PRId64 ";\n", 2 * v);
    if (p->pool_words)
        put(f, "    uint32_t *pool = scratch + %" PRId64 ";\n", 2 * v + p->acc_words);
    put(f, "    fmx_input(u8, f32, a);\n");
    for (int k = 0; k < p->n; k++) {
        const step *s = &p->steps[k];
        const char *in = k % 2 ? "b" : "a", *out = k % 2 ? "a" : "b";
        const fm_deploy_layer *L = s->L;
        int uses_acc = L->type == FM_DL_CONV ||
                       (L->type == FM_DL_DENSE && !s->integer && L->weights != FM_DW_FP32);
        put(f, "    fmx_r%d(%s, %s%s%s);\n", s->number, in, out, uses_acc ? ", acc" : "",
            s->P ? ", pool" : "");
    }
    put(f, "    const uint32_t *z = %s;\n", p->n % 2 ? "b" : "a");
    put(f, "    int best = 0;\n");
    put(f, "    for (int k = 0; k < %d; k++) {\n", d->classes);
    put(f, "        const float score = fmx_f(z[k]);\n");
    put(f, "        if (scores)\n            scores[k] = score;\n");
    put(f, "        if (score > fmx_f(z[best]))\n            best = k;\n");
    put(f, "    }\n    return best;\n}\n\n");
    put(f, "int %s_predict(const uint8_t *pixels, float *scores, uint32_t *scratch)\n{\n", name);
    put(f, "    return fmx_run(pixels, 0, scores, scratch);\n}\n\n");
    put(f, "int %s_predict_f32(const float *pixels, float *scores, uint32_t *scratch)\n{\n", name);
    put(f, "    return fmx_run(0, pixels, scores, scratch);\n}\n");
    return 0;
}

static void put_count(FILE *f, const char *what, int64_t n, int *first)
{
    if (!n)
        return;
    put(f, "%s%" PRId64 " %s", *first ? "" : ", ", n, what);
    *first = 0;
}

static void put_op_counts(FILE *f, int64_t mults, int64_t adds, int64_t compares, int64_t converts)
{
    int first = 1;
    put_count(f, "multiplies", mults, &first);
    put_count(f, "adds", adds, &first);
    put_count(f, "compares", compares, &first);
    put_count(f, "int-to-float conversions", converts, &first);
    if (first)
        put(f, "none");
}

static int fill_header(FILE *f, const plan *p)
{
    const fm_deploy *d = p->d;
    const char *name = p->name, *up = p->upper;
    put(f, "/* %s.h - a fewmul network as self-contained C: %s.\n", name, d->description);
    put(f, " * Generated by fewmul %s (fewmul export --c); do not edit: export the model again.\n",
        FM_VERSION_STRING);
    put(f, " *\n");
    put(f, " *     static uint32_t scratch[%s_SCRATCH_WORDS];\n", up);
    put(f, " *     float scores[%s_CLASSES];                    (or pass NULL)\n", up);
    put(f, " *     int predicted = %s_predict(pixels, scores, scratch);\n", name);
    put(f, " *\n");
    put(f, " * pixels: %s_INPUTS bytes, the image row by row with the channel fastest\n", up);
    put(f, " * (as IDX files store it); %s_predict_f32 takes the same values as floats.\n", name);
    put(f, " * Returns the predicted class, the first largest score. Every value a\n");
    put(f, " * prediction keeps lives in `scratch` (%s_SCRATCH_BYTES bytes): nothing\n", up);
    put(f, " * is allocated, no state is kept, so predictions with separate scratch\n");
    put(f, " * buffers may run at once. %s.c uses only <stdint.h>, <limits.h> and\n", name);
    put(f, " * <float.h>: no library function, no math library (freestanding C99).\n");
    put(f, " *\n");
    if (p->exact) {
        put(f, " * The classes and scores are those of fewmul (fm_deploy_predict, fewmul\n");
        put(f, " * infer) bit for bit: the same float sums in the same order. This holds\n");
        put(f, " * with IEEE-754 single precision, round to nearest and subnormals kept\n");
        put(f, " * (no flush-to-zero); not under -ffast-math, nor clang's\n");
        put(f, " * -ffp-contract=fast (%s.c turns GCC's contraction off itself).\n", name);
    } else {
        put(f, " * fp32 weights: fewmul multiplies them through BLAS, whose order of\n");
        put(f, " * additions differs from this file's, so scores may differ from fewmul's in\n");
        put(f, " * their last bits (and a class, where two scores are that close).\n");
    }
    put(f, " *\n");
    put(f, " * Memory: %" PRIu64 " bytes of const tables (%" PRIu64 " of packed weights), the\n",
        p->const_bytes, p->weight_bytes);
    put(f, " * caller's scratch of %s_SCRATCH_BYTES, and a few hundred bytes of stack.\n", up);
    put(f, " *\n");
    put(f, " * Float operations per prediction (everything else is integer: bit\n");
    put(f, " * extraction, xor, popcount, compares with integer ranges):\n");
    put(f, " *   input: %" PRId64 " multiplies, %" PRId64 " subtractions (pixel * scale - mean)\n",
        p->input_mults, p->input_adds);
    for (int k = 0; k < p->n; k++) {
        const step *s = &p->steps[k];
        char what[400];
        describe_step(s, what, sizeof what);
        put(f, " *   record %d: %s\n", s->number, what);
        put(f, " *     %s: ", method_of(s));
        put_op_counts(f, s->mults, s->adds, s->compares, s->converts);
        put(f, "\n");
    }
    put(f, " *   the class: %" PRId64 " compares\n", p->argmax_compares);
    put(f, " * (a sign is a compare of the sum with its range: integer where the sums\n");
    put(f, " * are integers, float otherwise; the batch norm z = scale * sum + offset is\n");
    put(f, " * one multiply and one add per value it reaches.) */\n");
    put(f, "#ifndef %s_H_INCLUDED\n#define %s_H_INCLUDED\n\n#include <stdint.h>\n\n", up, up);
    put(f, "#define %s_INPUT_HEIGHT %d\n", up, d->height);
    put(f, "#define %s_INPUT_WIDTH %d\n", up, d->width);
    put(f, "#define %s_INPUT_CHANNELS %d\n", up, d->channels);
    put(f, "#define %s_INPUTS %d\n", up, d->input_dim);
    put(f, "#define %s_CLASSES %d\n", up, d->classes);
    put(f, "/* the scratch buffer of one prediction: uint32_t words, and bytes */\n");
    put(f, "#define %s_SCRATCH_WORDS %" PRIu64 "\n", up, scratch_words(p));
    put(f, "#define %s_SCRATCH_BYTES %" PRIu64 "\n", up, 4 * scratch_words(p));
    put(f, "/* identifies this export: %s.c refuses to compile with another's header */\n", name);
    put(f, "#define %s_EXPORT_ID 0x%08" PRIx32 "u\n\n", up, p->id);
    put(f, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    put(f, "int %s_predict(const uint8_t *pixels, float *scores, uint32_t *scratch);\n", name);
    put(f, "int %s_predict_f32(const float *pixels, float *scores, uint32_t *scratch);\n\n", name);
    put(f, "#ifdef __cplusplus\n}\n#endif\n#endif\n");
    return 0;
}

static int fill_file(FILE *f, void *user, int index)
{
    export_job *job = user;
    return index == 0 ? fill_source(f, job) : fill_header(f, job->p);
}

/* DIR, made when it is missing (its parent must exist). */
static int make_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return fmi_error(FM_EIO, "%s: not a folder", dir);
        return FM_OK;
    }
    if (errno != ENOENT)
        return fmi_error(FM_EIO, "%s: %s", dir, strerror(errno));
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return fmi_error(errno == ENOENT ? FM_ENOENT : FM_EIO, "%s: cannot create the folder: %s", dir,
                         strerror(errno));
    return FM_OK;
}

static char *join(const char *dir, const char *name, const char *ext)
{
    size_t n = strlen(dir) + strlen(name) + strlen(ext) + 2;
    char *path = fmi_alloc_raw(n);
    if (path)
        snprintf(path, n, "%s%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", name, ext);
    return path;
}

int fm_deploy_export_c(const fm_deploy *d, const char *dir, const char *name, fm_export_c_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    if (!d || !dir || !name)
        return fmi_error(FM_EINVAL, "fm_deploy_export_c: NULL argument");
    if (!dir[0])
        return fmi_error(FM_EINVAL, "fm_deploy_export_c: empty folder name");
    if (!valid_name(name))
        return fmi_error(FM_EINVAL, "fm_deploy_export_c: name '%s' is not a C identifier of at most "
                                    "%d characters starting with a letter", name, NAME_MAX_CHARS);
    if (d->n_layers > (int)(sizeof ((plan *)0)->steps / sizeof(step)))
        return fmi_error(FM_EINVAL, "fm_deploy_export_c: %d records", d->n_layers);
    plan *p = fmi_alloc(1, sizeof *p);
    if (!p)
        return FM_ENOMEM;
    int rc = make_plan(d, name, p);
    char *header = NULL, *source = NULL;
    if (rc == FM_OK) {
        p->need = helpers_of(p);
        header = join(dir, name, ".h");
        source = join(dir, name, ".c");
        rc = header && source ? FM_OK : FM_ENOMEM;
    }
    if (rc == FM_OK)
        rc = make_dir(dir);
    /* both written before either replaces what is there */
    export_job job = {p, FM_OK};
    if (rc == FM_OK) {
        const char *const paths[2] = {source, header};
        rc = fmi_write_files_atomic(2, paths, fill_file, &job);
        if (job.rc < 0)
            rc = job.rc;
    }
    if (rc == FM_OK && info) {
        struct stat st;
        info->scratch_bytes = 4 * scratch_words(p);
        info->const_bytes = p->const_bytes;
        info->weight_bytes = p->weight_bytes;
        info->source_bytes = stat(source, &st) == 0 ? (uint64_t)st.st_size : 0;
        info->exact = p->exact;
    }
    fmi_free(header);
    fmi_free(source);
    fmi_free(p);
    return rc;
}
