/* import_onnx.c — an ONNX model as a deployed network (fm_deploy_import_onnx,
 * `fewmul import --onnx FILE`; docs/deploy.md, "ONNX"): the reverse of
 * export_onnx.c. It reads the graphs fewmul exports, in both dialects, and
 * graphs of the same operators written by other tools, and refuses anything
 * else with a message naming the node.
 *
 * The bytes are unpacked by protobuf-c (onnx.proto compiled at build time),
 * whose allocations go through fmi_alloc and are bounded by the bytes present
 * (a repeated field or a byte string is sized from the data it holds, never
 * from a count alone). The graph is then walked from its one input along the
 * chain of nodes, each value consumed by exactly one node, matching the
 * patterns the exporter writes and PyTorch's exporter writes: the input
 * scaling (Mul, Sub), layouts (Transpose, Flatten), MatMul, Gemm or Conv with
 * constant weights, MaxPool of the sums, the batch norm (Mul, Add, Sub,
 * BatchNormalization: folded into a scale and offset per output), the
 * activation (Relu; GreaterOrEqual and Where, Sign or BipolarQuant as the
 * sign), a MaxPool after them (moved before the scale where it is >= 0),
 * GlobalAveragePool, up to the graph's one output. Constants are
 * initialisers, Constant nodes, or a few elementwise operators on them,
 * evaluated here (a weight binarised in the forward pass), within limits of
 * depth, steps and values so that no graph makes the evaluation explode.
 *
 * What the graph cannot say exactly (the weight kind of a layer whose ternary
 * codes happen to hold no zero, the weight unit H, the synapse magnitudes and
 * the training mode) the exporter writes as metadata_props ("fewmul.*"); with
 * them export then import gives back the packed file byte for byte. Without
 * them (another tool's graph) the kinds follow from the values: all +-1 is
 * binary, all in {-1, 0, +1} ternary (unit 1); all +-a or {-a, 0, +a} the
 * same with unit a, folded into the scale; anything else fp32. */
#include "bytes.h"
#include "deploy.h"
#include "internal.h"
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef FM_HAVE_ONNX

int fm_deploy_import_onnx_memory(const void *data, size_t size, const char *origin, fm_deploy **out)
{
    (void)data, (void)size, (void)origin;
    if (out)
        *out = NULL;
    return fmi_error(FM_EUNSUPPORTED, "this fewmul was built without ONNX support; rebuild it with "
                                      "protobuf-c (Debian: libprotobuf-c-dev protobuf-c-compiler python3-onnx)");
}

#else

#include <fmi_onnx.pb-c.h>

#define QONNX_DOMAIN "qonnx.custom_op.general"
/* Bounds on what a graph may hold, far above what fewmul writes (about 8
 * nodes per record, at most 64 records), so that the lookups by name, which
 * scan, stay cheap on any input. */
#define MAX_NODES 4096u
#define MAX_INITS 4096u
#define MAX_RECORDS 64
#define MAX_VALUES ((int64_t)1 << 28)

/* protobuf-c's allocations through the library's hook (counted, failable) */
static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    return fmi_alloc_raw(size ? size : 1);
}
static void pb_free(void *data, void *p)
{
    (void)data;
    fmi_free(p);
}

/* Constant values the reader evaluated, freed together at the end. */
typedef struct arena {
    float **blocks;
    size_t n, cap;
    int64_t values; /* evaluated so far, against MAX_EVALUATED */
    int quant;      /* the last weights evaluated passed a quantizer: 1 BipolarQuant, 2 IntQuant */
    int64_t steps;  /* nodes visited evaluating constants, against MAX_STEPS */
} arena;

/* Nodes the constant evaluation may visit in all: a graph's weights take a
 * few per layer, and a hostile graph of shared inputs cannot make the
 * recursion's paths multiply past it. */
#define MAX_STEPS 100000

typedef struct reader {
    const FmiOnnx__GraphProto *g;
    const char *origin;
    fm_deploy *d;
    int n;          /* records so far */
    int flat_input; /* the input is [batch, values] */
    int nchw_input; /* another tool's [batch, C, H, W] input (fewmul's own is NHWC) */
    arena *owned;
} reader;

/* A constant: an initialiser, a Constant node's value, or what a few
 * elementwise operators (Identity, Sign, Neg, Mul, GreaterOrEqual, Where,
 * a 2-D Transpose, QONNX's quantizers) make of constants, as PyTorch writes a
 * weight binarised in the forward pass; values owned by the arena. */
typedef struct tensor {
    float *v;
    int64_t n;
    int rank;
    int64_t dims[4];
} tensor;

#define MAX_EVALUATED ((int64_t)1 << 28)

static const char *safe(const char *s) { return s && s[0] ? s : "?"; }

static int refuse_node(const reader *r, const FmiOnnx__NodeProto *nd, const char *why)
{
    return fmi_error(FM_EUNSUPPORTED, "%s: node '%s' (%s): %s", r->origin, safe(nd->name),
                     safe(nd->op_type), why);
}

static float tensor_at(const tensor *t, int64_t i) { return t->v[t->n == 1 ? 0 : i]; }

static const FmiOnnx__TensorProto *find_init(const reader *r, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < r->g->n_initializer; i++)
        if (r->g->initializer[i]->name && !strcmp(r->g->initializer[i]->name, name))
            return r->g->initializer[i];
    return NULL;
}

static const FmiOnnx__NodeProto *producer(const reader *r, const char *name)
{
    for (size_t i = 0; i < r->g->n_node; i++) {
        const FmiOnnx__NodeProto *nd = r->g->node[i];
        for (size_t k = 0; k < nd->n_output; k++)
            if (nd->output[k] && !strcmp(nd->output[k], name))
                return nd;
    }
    return NULL;
}

static const FmiOnnx__AttributeProto *attr(const FmiOnnx__NodeProto *nd, const char *name)
{
    for (size_t i = 0; i < nd->n_attribute; i++)
        if (nd->attribute[i]->name && !strcmp(nd->attribute[i]->name, name))
            return nd->attribute[i];
    return NULL;
}

static int64_t attr_int(const FmiOnnx__NodeProto *nd, const char *name, int64_t dflt)
{
    const FmiOnnx__AttributeProto *a = attr(nd, name);
    return a && a->has_i ? a->i : dflt;
}

static int is_op(const FmiOnnx__NodeProto *nd, const char *op, int qonnx)
{
    if (!nd->op_type || strcmp(nd->op_type, op))
        return 0;
    const char *dom = nd->domain ? nd->domain : "";
    return qonnx ? !strcmp(dom, QONNX_DOMAIN) : (!dom[0] || !strcmp(dom, "ai.onnx"));
}

/* n values (a new block of the arena), counted against MAX_EVALUATED. */
static float *arena_take(const reader *r, const FmiOnnx__NodeProto *nd, int64_t n)
{
    arena *a = r->owned;
    if (n > MAX_EVALUATED - a->values) {
        if (nd)
            refuse_node(r, nd, "constants of more than 2^28 values in all");
        else
            fmi_error(FM_EUNSUPPORTED, "%s: constants of more than 2^28 values in all", r->origin);
        return NULL;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        float **grown = fmi_alloc(cap, sizeof *grown);
        if (!grown) {
            fmi_error(FM_ENOMEM, "out of memory reading %s", r->origin);
            return NULL;
        }
        if (a->n)
            memcpy(grown, a->blocks, a->n * sizeof *grown);
        fmi_free(a->blocks);
        a->blocks = grown;
        a->cap = cap;
    }
    float *v = fmi_alloc((size_t)(n ? n : 1), sizeof *v);
    if (!v) {
        fmi_error(FM_ENOMEM, "out of memory reading %s", r->origin);
        return NULL;
    }
    a->blocks[a->n++] = v;
    a->values += n;
    return v;
}

/* A TensorProto's floats (float32 only) into t. */
static int tensor_proto(const reader *r, const FmiOnnx__NodeProto *nd, const FmiOnnx__TensorProto *p, tensor *t)
{
    if (!p->has_data_type || p->data_type != FMI_ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return nd ? refuse_node(r, nd, "a constant that is not float32")
                  : fmi_error(FM_EUNSUPPORTED, "%s: initialiser '%s' is not float32", r->origin, safe(p->name));
    if (p->n_dims > 4)
        return fmi_error(FM_EUNSUPPORTED, "%s: constant '%s' has rank %zu (at most 4)", r->origin, safe(p->name),
                         p->n_dims);
    memset(t, 0, sizeof *t);
    t->rank = (int)p->n_dims;
    t->n = 1;
    for (size_t k = 0; k < p->n_dims; k++) {
        if (p->dims[k] < 1 || p->dims[k] > MAX_VALUES)
            return fmi_error(FM_EFORMAT, "%s: constant '%s' has a dimension of %lld", r->origin, safe(p->name),
                             (long long)p->dims[k]);
        t->dims[k] = p->dims[k];
        t->n *= p->dims[k];
        if (t->n > MAX_VALUES)
            return fmi_error(FM_EFORMAT, "%s: constant '%s' has more than 2^28 values", r->origin, safe(p->name));
    }
    /* the sizes against the bytes present, before anything is allocated */
    if (p->has_raw_data && p->raw_data.len) {
        if (p->raw_data.len != (size_t)t->n * 4)
            return fmi_error(FM_EFORMAT, "%s: initialiser '%s' holds %zu bytes for %lld floats", r->origin,
                             safe(p->name), p->raw_data.len, (long long)t->n);
    } else if (p->n_float_data != (size_t)t->n) {
        return fmi_error(FM_EFORMAT, "%s: initialiser '%s' holds %zu floats for its %lld values", r->origin,
                         safe(p->name), p->n_float_data, (long long)t->n);
    }
    if (!(t->v = arena_take(r, nd, t->n)))
        return fm_last_error_code();
    for (int64_t i = 0; i < t->n; i++) {
        if (p->has_raw_data && p->raw_data.len) {
            const uint8_t *b = p->raw_data.data + 4 * i;
            uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            memcpy(&t->v[i], &u, 4);
        } else {
            t->v[i] = p->float_data[i];
        }
        if (!isfinite(t->v[i]))
            return fmi_error(FM_EFORMAT, "%s: constant '%s' value %lld is not finite", r->origin, safe(p->name),
                             (long long)i);
    }
    return FM_OK;
}

static int eval_const(const reader *r, const FmiOnnx__NodeProto *user, const char *name, tensor *t, int depth);

/* Elementwise op of a and b (same count, or one a scalar) into t. */
static int elementwise(const reader *r, const FmiOnnx__NodeProto *nd, const tensor *a, const tensor *b, tensor *t)
{
    if (a->n != b->n && a->n != 1 && b->n != 1)
        return refuse_node(r, nd, "constants of different sizes (only a scalar broadcasts)");
    *t = a->n >= b->n ? *a : *b;
    if (!(t->v = arena_take(r, nd, t->n)))
        return fm_last_error_code();
    return FM_OK;
}

static int eval_const(const reader *r, const FmiOnnx__NodeProto *user, const char *name, tensor *t, int depth)
{
    if (!name || !name[0])
        return refuse_node(r, user, "an input that should be a constant is missing");
    const FmiOnnx__TensorProto *p = find_init(r, name);
    if (p)
        return tensor_proto(r, user, p, t);
    const FmiOnnx__NodeProto *nd = producer(r, name);
    if (!nd || depth > 16 || ++r->owned->steps > MAX_STEPS)
        return refuse_node(r, user, "an input that should be a constant is not one (an initialiser, or "
                                    "elementwise operators on them, at most 16 deep)");
    tensor a, b, c;
    int rc;
    if (is_op(nd, "Constant", 0)) {
        const FmiOnnx__AttributeProto *v = attr(nd, "value");
        if (!v || !v->t || nd->n_attribute != 1)
            return refuse_node(r, nd, "a constant other than a tensor value");
        return tensor_proto(r, nd, v->t, t);
    }
    if (nd->n_input < 1)
        return refuse_node(r, nd, "an operator fewmul does not evaluate on constants");
    if ((rc = eval_const(r, nd, nd->input[0], &a, depth + 1)) < 0)
        return rc;
    if (is_op(nd, "Identity", 0) || is_op(nd, "Sign", 0) || is_op(nd, "Neg", 0)) {
        *t = a;
        if (!(t->v = arena_take(r, nd, a.n)))
            return fm_last_error_code();
        for (int64_t i = 0; i < a.n; i++)
            t->v[i] = is_op(nd, "Identity", 0) ? a.v[i] : is_op(nd, "Neg", 0) ? -a.v[i]
                    : a.v[i] > 0 ? 1.0f : a.v[i] < 0 ? -1.0f : 0.0f; /* ONNX's Sign: 0 at 0 */
        return FM_OK;
    }
    if (is_op(nd, "Transpose", 0)) {
        const FmiOnnx__AttributeProto *perm = attr(nd, "perm");
        if (a.rank != 2 || (perm && (perm->n_ints != 2 || perm->ints[0] != 1 || perm->ints[1] != 0)))
            return refuse_node(r, nd, "a transpose of a constant other than a matrix's");
        *t = a;
        t->dims[0] = a.dims[1], t->dims[1] = a.dims[0];
        if (!(t->v = arena_take(r, nd, a.n)))
            return fm_last_error_code();
        for (int64_t i = 0; i < a.dims[0]; i++)
            for (int64_t j = 0; j < a.dims[1]; j++)
                t->v[j * a.dims[0] + i] = a.v[i * a.dims[1] + j];
        return FM_OK;
    }
    if (is_op(nd, "BipolarQuant", 1) || is_op(nd, "IntQuant", 1)) {
        const int bipolar = is_op(nd, "BipolarQuant", 1);
        int ok = nd->n_input == (bipolar ? 2u : 4u) && eval_const(r, nd, nd->input[1], &b, depth + 1) == FM_OK &&
                 b.n == 1 && b.v[0] == 1.0f;
        if (ok && !bipolar)
            ok = eval_const(r, nd, nd->input[2], &b, depth + 1) == FM_OK && b.n == 1 && b.v[0] == 0.0f &&
                 eval_const(r, nd, nd->input[3], &c, depth + 1) == FM_OK && c.n == 1 && c.v[0] == 2.0f &&
                 attr_int(nd, "signed", 1) == 1 && attr_int(nd, "narrow", 0) == 1;
        if (!ok)
            return refuse_node(r, nd, "a quantizer other than BipolarQuant or 2-bit narrow signed IntQuant of "
                                      "scale 1 and zero point 0");
        *t = a;
        if (!(t->v = arena_take(r, nd, a.n)))
            return fm_last_error_code();
        for (int64_t i = 0; i < a.n; i++) /* IntQuant rounds half to even, then clips to -1 .. 1 */
            t->v[i] = bipolar ? (a.v[i] >= 0 ? 1.0f : -1.0f)
                    : fabsf(a.v[i]) <= 0.5f ? 0.0f : a.v[i] > 0 ? 1.0f : -1.0f;
        r->owned->quant = bipolar ? 1 : 2;
        return FM_OK;
    }
    if (is_op(nd, "Mul", 0) || is_op(nd, "GreaterOrEqual", 0)) {
        if (nd->n_input != 2 || (rc = eval_const(r, nd, nd->input[1], &b, depth + 1)) < 0 ||
            (rc = elementwise(r, nd, &a, &b, t)) < 0)
            return rc < 0 ? rc : refuse_node(r, nd, "not two inputs");
        for (int64_t i = 0; i < t->n; i++) {
            float x = tensor_at(&a, i), y = tensor_at(&b, i);
            t->v[i] = is_op(nd, "Mul", 0) ? x * y : (float)(x >= y);
        }
        return FM_OK;
    }
    if (is_op(nd, "Where", 0)) {
        if (nd->n_input != 3 || (rc = eval_const(r, nd, nd->input[1], &b, depth + 1)) < 0 ||
            (rc = eval_const(r, nd, nd->input[2], &c, depth + 1)) < 0)
            return rc < 0 ? rc : refuse_node(r, nd, "not three inputs");
        tensor ab;
        if ((rc = elementwise(r, nd, &b, &c, &ab)) < 0 || (rc = elementwise(r, nd, &a, &ab, t)) < 0)
            return rc;
        for (int64_t i = 0; i < t->n; i++)
            t->v[i] = tensor_at(&a, i) != 0.0f ? tensor_at(&b, i) : tensor_at(&c, i);
        return FM_OK;
    }
    return refuse_node(r, nd, "an operator fewmul does not evaluate on constants");
}

/* Constant `name` (an input of node nd). */
static int get_tensor(const reader *r, const FmiOnnx__NodeProto *nd, const char *name, tensor *t)
{
    return eval_const(r, nd, name, t, 0);
}

/* Whether `name` is a constant (an initialiser or a Constant node's value,
 * possibly through the evaluated operators), without an error when not. */
static int is_const_at(const reader *r, const char *name, int depth)
{
    if (!name || find_init(r, name))
        return name != NULL;
    /* a cycle, or a lattice of nodes whose paths multiply: not a constant */
    if (depth > 16 || ++r->owned->steps > MAX_STEPS)
        return 0;
    const FmiOnnx__NodeProto *nd = producer(r, name);
    if (!nd)
        return 0;
    if (is_op(nd, "Constant", 0))
        return 1;
    if (nd->n_input < 1 || is_op(nd, "MatMul", 0) || is_op(nd, "Gemm", 0) || is_op(nd, "Conv", 0))
        return 0;
    for (size_t k = 0; k < nd->n_input; k++)
        if (!is_const_at(r, nd->input[k], depth + 1))
            return 0;
    return 1;
}

static int is_const(const reader *r, const char *name) { return is_const_at(r, name, 0); }

static int scalar_is(const reader *r, const FmiOnnx__NodeProto *nd, const char *name, float want)
{
    tensor t;
    return get_tensor(r, nd, name, &t) == FM_OK && t.n == 1 && tensor_at(&t, 0) == want;
}

/* The one node that reads value `name` (NULL with *count 0 or above 1). */
static const FmiOnnx__NodeProto *consumer(const reader *r, const char *name, int *count)
{
    const FmiOnnx__NodeProto *found = NULL;
    *count = 0;
    for (size_t i = 0; i < r->g->n_node; i++) {
        const FmiOnnx__NodeProto *nd = r->g->node[i];
        for (size_t k = 0; k < nd->n_input; k++)
            if (nd->input[k] && !strcmp(nd->input[k], name)) {
                found = nd;
                ++*count;
                break;
            }
    }
    return *count == 1 ? found : NULL;
}


/* Ints attribute `name` of exactly n values into v; absent: 0 (v untouched). */
static int attr_ints(const reader *r, const FmiOnnx__NodeProto *nd, const char *name, size_t n,
                     int64_t *v, int *present)
{
    const FmiOnnx__AttributeProto *a = attr(nd, name);
    *present = a != NULL;
    if (!a)
        return FM_OK;
    if (a->n_ints != n) {
        char why[96];
        snprintf(why, sizeof why, "attribute %s has %zu values (expected %zu)", name, a->n_ints, n);
        return refuse_node(r, nd, why);
    }
    memcpy(v, a->ints, n * sizeof *v);
    return FM_OK;
}


static const char *out0(const FmiOnnx__NodeProto *nd)
{
    return nd->n_output >= 1 && nd->output[0] ? nd->output[0] : "";
}

/* The node's input other than `cur` among two (cur first or second). */
static const char *other(const FmiOnnx__NodeProto *nd, const char *cur)
{
    if (nd->n_input != 2 || !nd->input[0] || !nd->input[1])
        return NULL;
    return !strcmp(nd->input[0], cur) ? nd->input[1] : !strcmp(nd->input[1], cur) ? nd->input[0] : NULL;
}

/* ---- the exporter's metadata ---------------------------------------------- */

static const char *meta(const FmiOnnx__ModelProto *m, const char *key)
{
    for (size_t i = 0; i < m->n_metadata_props; i++)
        if (m->metadata_props[i]->key && m->metadata_props[i]->value && !strcmp(m->metadata_props[i]->key, key))
            return m->metadata_props[i]->value;
    return NULL;
}

/* What the metadata says of a weighted record. */
typedef struct layer_meta {
    int present;
    int weights, levels;
    float unit;
    float magnitudes[32];
} layer_meta;

static int hex_float(const char **s, float *f)
{
    char *end;
    unsigned long u = strtoul(*s, &end, 16);
    if (end == *s || end - *s != 8)
        return 0;
    uint32_t v = (uint32_t)u;
    memcpy(f, &v, 4);
    *s = end;
    return 1;
}

/* "fewmul.layerN": "WEIGHTS LEVELS UNIT [MAGNITUDE ...]" (floats as the
 * 8 hex digits of their bits, so that they come back exactly). */
static int read_layer_meta(const reader *r, const FmiOnnx__ModelProto *m, int record, layer_meta *lm)
{
    memset(lm, 0, sizeof *lm);
    char key[32];
    snprintf(key, sizeof key, "fewmul.layer%d", record);
    const char *s = meta(m, key);
    if (!s)
        return FM_OK;
    char *end;
    long w = strtol(s, &end, 10);
    long lv = end != s ? strtol(end, &end, 10) : -1;
    const char *p = end;
    while (*p == ' ')
        p++;
    int ok = w >= FM_DW_FP32 && w <= FM_DW_SYNAPSE && lv >= 0 && lv <= 32 && hex_float(&p, &lm->unit);
    for (long k = 0; ok && k < lv; k++) {
        while (*p == ' ')
            p++;
        ok = hex_float(&p, &lm->magnitudes[k]);
    }
    if (!ok || *p)
        return fmi_error(FM_EFORMAT, "%s: metadata %s is malformed", r->origin, key);
    lm->present = 1;
    lm->weights = (int)w;
    lm->levels = (int)lv;
    return FM_OK;
}

/* ---- records ---------------------------------------------------------------- */

static fm_deploy_layer *new_record(reader *r, const FmiOnnx__NodeProto *nd)
{
    if (r->n >= MAX_RECORDS) {
        refuse_node(r, nd, "more than 64 layers");
        return NULL;
    }
    fm_deploy_layer *L = &r->d->layers[r->n++];
    r->d->n_layers = r->n;
    return L;
}

/* The code of weight value v in layer L (binary, ternary, synapse), or -1. */
static int64_t code_of(const fm_deploy_layer *L, float v)
{
    switch (L->weights) {
    case FM_DW_BINARY:
        return v == 1.0f ? 1 : v == -1.0f ? 0 : -1;
    case FM_DW_TERNARY:
        return v == 0.0f ? 0 : v == 1.0f ? 1 : v == -1.0f ? 3 : -1;
    case FM_DW_SYNAPSE:
        for (int k = 0; k < L->levels; k++)
            if (fabsf(v) == L->magnitudes[k])
                return (int64_t)k | (signbit(v) ? (int64_t)1 << (L->bits - 1) : 0);
        return -1;
    default:
        return -1;
    }
}

/* The weight initialiser of a MatMul or Conv (input 1), through a QONNX
 * quantizer or not; *quant: 0 none, 1 BipolarQuant, 2 IntQuant. */
static int weight_tensor(const reader *r, const FmiOnnx__NodeProto *nd, tensor *t, int *quant)
{
    *quant = 0;
    if (nd->n_input < 2 || !nd->input[1])
        return refuse_node(r, nd, "no weight input");
    r->owned->quant = 0;
    int rc = eval_const(r, nd, nd->input[1], t, 0);
    *quant = r->owned->quant;
    return rc;
}

/* Sets L's kind from the metadata, the quantizer or the values, allocates it
 * and stores weight (j, i) = w[index(j, i)]. */
static int fill_weights(reader *r, const FmiOnnx__NodeProto *nd, fm_deploy_layer *L, const tensor *t, int quant,
                        const layer_meta *lm, int conv)
{
    if (lm->present) {
        L->weights = (fm_deploy_weights)lm->weights;
        L->levels = L->weights == FM_DW_SYNAPSE ? lm->levels : 0;
        L->unit = lm->unit;
        if (L->weights == FM_DW_SYNAPSE && L->levels < 2)
            return fmi_error(FM_EFORMAT, "%s: metadata gives layer %d fewer than 2 synapse levels", r->origin,
                             r->n);
    } else {
        int binary = 1, ternary = 1;
        for (int64_t i = 0; i < t->n && (binary || ternary); i++) {
            float v = tensor_at(t, i);
            binary &= v == 1.0f || v == -1.0f;
            ternary &= v == 1.0f || v == -1.0f || v == 0.0f;
        }
        L->weights = quant == 1 || (!quant && binary) ? FM_DW_BINARY
                   : quant == 2 || (!quant && ternary) ? FM_DW_TERNARY
                                                        : FM_DW_FP32;
        L->unit = 1.0f;
        if (L->weights == FM_DW_FP32) { /* +-a or {-a, 0, +a}: codes, with a folded into the scale */
            float a = 0.0f;
            for (int64_t i = 0; i < t->n && a == 0.0f; i++)
                a = fabsf(tensor_at(t, i));
            int scaled = a > 0.0f, zero = 0;
            for (int64_t i = 0; i < t->n && scaled; i++) {
                float v = fabsf(tensor_at(t, i));
                scaled = v == a || v == 0.0f;
                zero |= v == 0.0f;
            }
            if (scaled) {
                L->weights = zero ? FM_DW_TERNARY : FM_DW_BINARY;
                L->unit = a;
            }
        }
    }
    L->bits = L->weights == FM_DW_FP32 ? 32 : L->weights == FM_DW_BINARY ? 1 : L->weights == FM_DW_TERNARY ? 2
            : (int32_t)fmi_weight_bits(FM_WEIGHTS_SYNAPSE, L->levels);
    if (fmi_deploy_layer_alloc(L) < 0)
        return FM_ENOMEM;
    if (L->levels)
        memcpy(L->magnitudes, lm->magnitudes, (size_t)L->levels * sizeof *L->magnitudes);
    for (int j = 0; j < L->out; j++)
        for (int i = 0; i < L->in; i++) {
            int64_t at;
            if (conv == 1) { /* ONNX (o, c, ky, kx); fewmul's codes (ky, kx, c) per filter */
                int c = i % L->in_c, kx = (i / L->in_c) % L->k_w, ky = i / L->in_c / L->k_w;
                at = (((int64_t)j * L->in_c + c) * L->k_h + ky) * L->k_w + kx;
            } else if (conv == 2) { /* Gemm's transposed [out, in] */
                at = (int64_t)j * L->in + i;
            } else { /* MatMul's [in, out] */
                at = (int64_t)i * L->out + j;
            }
            float v = tensor_at(t, at);
            if (L->weights == FM_DW_FP32) {
                memcpy(L->packed + (size_t)j * L->row_bytes + 4 * (size_t)i, &v, 4);
                continue;
            }
            int64_t code = code_of(L, lm->present || L->weights == FM_DW_SYNAPSE ? v : v / L->unit);
            if (code < 0) {
                char why[128];
                snprintf(why, sizeof why, "weight %g is not a value of its %s weights", (double)v,
                         L->weights == FM_DW_BINARY ? "binary (+-1)" : L->weights == FM_DW_TERNARY
                                                                          ? "ternary (-1, 0, +1)"
                                                                          : "synapse levels'");
                return refuse_node(r, nd, why);
            }
            fmi_deploy_set_code(L, j, i, (uint32_t)code);
        }
    return FM_OK;
}

/* After the sums `acc` of a record: Mul by a scale and Add an offset (out
 * values each), then Relu, the sign (GreaterOrEqual 0 and Where +1/-1, or
 * BipolarQuant), or the graph's output. *cur becomes the record's output. */
static int tail(reader *r, fm_deploy_layer *L, const char **cur, const char *graph_out, const tensor *bias,
                int fold_unit)
{
    /* z = s * acc + o, built from what follows: fewmul's own Mul and Add
     * give s and o exactly; another tool's bias, Mul, Add, Sub and
     * BatchNormalization are folded in (in double, rounded once) */
    int have_s = 0, have_o = 0, count;
    for (int j = 0; j < L->out; j++) {
        L->scale[j] = 1.0f;
        L->offset[j] = bias ? tensor_at(bias, j) : 0.0f;
    }
    have_o = bias != NULL;
    const FmiOnnx__NodeProto *nd;
    for (size_t steps = 0;; steps++) {
        if (!strcmp(*cur, graph_out))
            break;
        if (steps > r->g->n_node)
            return fmi_error(FM_EFORMAT, "%s: the graph has a cycle", r->origin);
        nd = consumer(r, *cur, &count);
        if (!nd)
            return fmi_error(FM_EUNSUPPORTED, "%s: value '%s' is read by %d nodes (fewmul reads a chain: one)",
                             r->origin, *cur, count);
        const char *c = other(nd, *cur);
        const int arith = (is_op(nd, "Mul", 0) || is_op(nd, "Add", 0) ||
                           (is_op(nd, "Sub", 0) && nd->n_input == 2 && !strcmp(safe(nd->input[0]), *cur))) &&
                          c && is_const(r, c);
        if (arith) {
            tensor k;
            int rc = get_tensor(r, nd, c, &k);
            if (rc < 0)
                return rc;
            if (k.n != L->out && k.n != 1)
                return refuse_node(r, nd, "a constant of neither one value nor one per output");
            for (int j = 0; j < L->out; j++) {
                float x = tensor_at(&k, j);
                if (is_op(nd, "Mul", 0)) {
                    L->scale[j] = have_s ? L->scale[j] * x : x;
                    L->offset[j] = have_o ? L->offset[j] * x : 0.0f;
                } else {
                    x = is_op(nd, "Sub", 0) ? -x : x;
                    L->offset[j] = have_o ? L->offset[j] + x : x;
                }
            }
            have_s |= is_op(nd, "Mul", 0);
            have_o |= !is_op(nd, "Mul", 0);
        } else if (is_op(nd, "BatchNormalization", 0)) {
            tensor g, b, mean, var;
            int rc;
            if (nd->n_input != 5 || nd->n_output != 1 || strcmp(safe(nd->input[0]), *cur))
                return refuse_node(r, nd, "a batch norm other than inference's (five inputs, one output)");
            if ((rc = get_tensor(r, nd, nd->input[1], &g)) < 0 || (rc = get_tensor(r, nd, nd->input[2], &b)) < 0 ||
                (rc = get_tensor(r, nd, nd->input[3], &mean)) < 0 || (rc = get_tensor(r, nd, nd->input[4], &var)) < 0)
                return rc;
            if (g.n != L->out || b.n != L->out || mean.n != L->out || var.n != L->out)
                return refuse_node(r, nd, "not one scale, bias, mean and variance per output");
            const FmiOnnx__AttributeProto *e = attr(nd, "epsilon");
            const double eps = e && e->has_f ? e->f : 1e-5;
            for (int j = 0; j < L->out; j++) {
                double sd = sqrt((double)var.v[j] + eps);
                if (!(sd > 0))
                    return refuse_node(r, nd, "a variance plus epsilon that is not positive");
                double k = (double)g.v[j] / sd;
                double s0 = have_s ? L->scale[j] : 1.0, o0 = have_o ? L->offset[j] : 0.0;
                L->scale[j] = (float)(s0 * k);
                L->offset[j] = (float)((o0 - mean.v[j]) * k + b.v[j]);
            }
            have_s = have_o = 1;
        } else if (is_op(nd, "Identity", 0) || is_op(nd, "Dropout", 0)) {
            if (nd->n_input < 1 || strcmp(safe(nd->input[0]), *cur))
                return refuse_node(r, nd, "its data is not its first input");
        } else {
            break;
        }
        *cur = out0(nd);
    }
    if (fold_unit)
        for (int j = 0; j < L->out; j++)
            L->scale[j] *= L->unit;
    for (int j = 0; j < L->out; j++)
        if (!isfinite(L->scale[j]) || !isfinite(L->offset[j]))
            return fmi_error(FM_EUNSUPPORTED, "%s: layer %d's folded scale or offset is not finite", r->origin, r->n);
    L->act = FM_ACT_NONE;
    if (!strcmp(*cur, graph_out))
        return FM_OK;
    const FmiOnnx__NodeProto *a = consumer(r, *cur, &count);
    if (!a)
        return fmi_error(FM_EUNSUPPORTED, "%s: value '%s' is read by %d nodes (fewmul reads a chain: one)",
                         r->origin, *cur, count);
    if (is_op(a, "Relu", 0)) {
        L->act = FM_ACT_RELU;
    } else if (is_op(a, "Sign", 0)) {
        L->act = FM_ACT_SIGN; /* ONNX's Sign(0) is 0, fewmul's sign +1 (docs/deploy.md) */
    } else if (is_op(a, "BipolarQuant", 1) && a->n_input == 2 && !strcmp(safe(a->input[0]), *cur) &&
               scalar_is(r, a, a->input[1], 1.0f)) {
        L->act = FM_ACT_SIGN;
    } else if (is_op(a, "GreaterOrEqual", 0) && a->n_input == 2 && !strcmp(safe(a->input[0]), *cur) &&
               scalar_is(r, a, a->input[1], 0.0f)) {
        const FmiOnnx__NodeProto *w = consumer(r, out0(a), &count);
        if (!w || !is_op(w, "Where", 0) || w->n_input != 3 || !scalar_is(r, w, w->input[1], 1.0f) ||
            !scalar_is(r, w, w->input[2], -1.0f))
            return refuse_node(r, a, "a compare not followed by Where(z >= 0, +1, -1), the sign");
        a = w;
        L->act = FM_ACT_SIGN;
    } else {
        return refuse_node(r, a, "not an activation fewmul has (Relu, or the sign as GreaterOrEqual 0 "
                                 "and Where +1/-1, Sign or BipolarQuant), nor the graph's output");
    }
    *cur = out0(a);
    return FM_OK;
}

typedef enum { MAP_NHWC, MAP_NCHW, FLAT } layout;

/* The record of a max-pool node over an h x w x c map: a square window inside
 * the map, equal strides, no padding; h and w become the pooled map's. */
static int pool_record(reader *r, const FmiOnnx__NodeProto *pool, int32_t *h, int32_t *w, int32_t c)
{
    int64_t win[2] = {0}, ps[2] = {1, 1}, pp[4] = {0};
    int present, rc;
    if ((rc = attr_ints(r, pool, "kernel_shape", 2, win, &present)) < 0 ||
        (rc = attr_ints(r, pool, "strides", 2, ps, &present)) < 0 ||
        (rc = attr_ints(r, pool, "pads", 4, pp, &present)) < 0)
        return rc;
    if (win[0] < 1 || win[0] != win[1] || ps[0] != ps[1] || ps[0] < 1 || ps[0] > 256 || win[0] > *h ||
        win[0] > *w || pp[0] || pp[1] || pp[2] || pp[3] || attr_int(pool, "ceil_mode", 0) != 0 ||
        pool->n_output != 1 || attr(pool, "dilations"))
        return refuse_node(r, pool, "a max-pool other than a square window inside the map, equal "
                                    "strides, no padding");
    fm_deploy_layer *P = new_record(r, pool);
    if (!P)
        return fm_last_error_code();
    P->type = FM_DL_POOL;
    P->weights = FM_DW_FP32;
    P->in_h = *h, P->in_w = *w, P->in_c = c;
    P->k_h = P->k_w = (int32_t)win[0];
    P->stride = (int32_t)ps[0];
    P->out_h = (*h - P->k_h) / P->stride + 1;
    P->out_w = (*w - P->k_w) / P->stride + 1;
    P->out_c = c;
    P->in = (int32_t)((int64_t)*h * *w * c);
    P->out = P->out_h * P->out_w * c;
    *h = P->out_h, *w = P->out_w;
    return FM_OK;
}

/* Where the walk along the chain stands: the value it follows, that
 * value's layout and map shape, and its count of values per example. */
typedef struct walk_at {
    const char *cur;
    layout have;
    int32_t h, w, c;
    int64_t values;
} walk_at;

/* A dense layer from MatMul or Gemm nd and what follows it (tail). */
static int dense_layer(reader *r, const FmiOnnx__ModelProto *m, const FmiOnnx__NodeProto *nd,
                       const char *graph_out, walk_at *at)
{
    const char *cur = at->cur;
    tensor t;
    const int gemm = is_op(nd, "Gemm", 0);
    const int trans = gemm && attr_int(nd, "transB", 0) == 1;
    if (nd->n_input < 2 || nd->n_input > (gemm ? 3u : 2u) || strcmp(safe(nd->input[0]), cur))
        return refuse_node(r, nd, "the data is not its first input");
    if (gemm && (attr_int(nd, "transA", 0) != 0 || (attr(nd, "alpha") && attr(nd, "alpha")->f != 1.0f) ||
                 (attr(nd, "beta") && attr(nd, "beta")->f != 1.0f) || attr_int(nd, "transB", 0) > 1))
        return refuse_node(r, nd, "a Gemm other than data times weights (transposed or not) plus a bias");
    if (at->have != FLAT)
        return refuse_node(r, nd, "a matrix product of a map that was not flattened");
    int quant, rc = weight_tensor(r, nd, &t, &quant);
    if (rc < 0)
        return rc;
    if (t.rank != 2 || t.dims[trans ? 1 : 0] != at->values)
        return refuse_node(r, nd, "its weights are not a matrix [inputs, outputs] of the values it "
                                  "receives");
    fm_deploy_layer *L = new_record(r, nd);
    if (!L)
        return fm_last_error_code();
    L->type = FM_DL_DENSE;
    L->in = (int32_t)t.dims[trans ? 1 : 0];
    L->out = (int32_t)t.dims[trans ? 0 : 1];
    tensor bias, *b = NULL;
    if (gemm && nd->n_input == 3 && nd->input[2] && nd->input[2][0]) {
        if ((rc = get_tensor(r, nd, nd->input[2], &bias)) < 0)
            return rc;
        if (bias.n != L->out && bias.n != 1)
            return refuse_node(r, nd, "a bias of neither one value nor one per output");
        b = &bias;
    }
    layer_meta lm;
    if ((rc = read_layer_meta(r, m, r->n, &lm)) < 0 ||
        (rc = fill_weights(r, nd, L, &t, quant, &lm, trans ? 2 : 0)) < 0)
        return rc;
    cur = out0(nd);
    if ((rc = tail(r, L, &cur, graph_out, b, !lm.present && L->unit != 1.0f)) < 0)
        return rc;
    at->values = L->out;
    at->have = FLAT;
    at->cur = cur;
    return FM_OK;
}

/* A convolution from Conv nd, its max-pool (before or after the batch norm
 * and activation) and what follows it (tail). */
static int conv_layer(reader *r, const FmiOnnx__ModelProto *m, const FmiOnnx__NodeProto *nd,
                      const char *graph_out, walk_at *at)
{
    const char *cur = at->cur;
    int32_t h = at->h, w = at->w, c = at->c;
    int count;
    tensor t;
    if (at->have != MAP_NCHW)
        return refuse_node(r, nd, "a convolution of data that is not an NCHW map");
    if (nd->n_input != 2 || strcmp(safe(nd->input[0]), cur))
        return refuse_node(r, nd, "a bias input, or the data not first (fewmul's convolutions have "
                                  "no bias: the offset follows)");
    int quant, rc = weight_tensor(r, nd, &t, &quant);
    if (rc < 0)
        return rc;
    if (t.rank != 4 || t.dims[1] != c || t.dims[2] > 256 || t.dims[3] > 256)
        return refuse_node(r, nd, "its weights are not [outputs, channels, kh, kw] of the channels it "
                                  "receives, with kernels of at most 256");
    int64_t strides[2] = {1, 1}, pads[4] = {0}, kernel[2] = {t.dims[2], t.dims[3]}, dil[2] = {1, 1};
    int present;
    if ((rc = attr_ints(r, nd, "strides", 2, strides, &present)) < 0 ||
        (rc = attr_ints(r, nd, "pads", 4, pads, &present)) < 0 ||
        (rc = attr_ints(r, nd, "kernel_shape", 2, kernel, &present)) < 0 ||
        (rc = attr_ints(r, nd, "dilations", 2, dil, &present)) < 0)
        return rc;
    if (attr_int(nd, "group", 1) != 1 || dil[0] != 1 || dil[1] != 1)
        return refuse_node(r, nd, "grouped or dilated convolutions are not supported");
    if (attr(nd, "auto_pad") && attr(nd, "auto_pad")->has_s && attr(nd, "auto_pad")->s.len &&
        !(attr(nd, "auto_pad")->s.len == 6 && !memcmp(attr(nd, "auto_pad")->s.data, "NOTSET", 6)))
        return refuse_node(r, nd, "auto_pad is not supported (give pads)");
    if (kernel[0] != t.dims[2] || kernel[1] != t.dims[3] || strides[0] != strides[1] ||
        strides[0] < 1 || strides[0] > 256)
        return refuse_node(r, nd, "kernel_shape differs from the weights', or the strides are not "
                                  "equal (1 .. 256)");
    for (int k = 0; k < 4; k++)
        if (pads[k] < 0 || pads[k] >= kernel[k % 2])
            return refuse_node(r, nd, "padding below 0 or not below the kernel");
    int64_t oh = (h + pads[0] + pads[2] - kernel[0]) / strides[0] + 1;
    int64_t ow = (w + pads[1] + pads[3] - kernel[1]) / strides[0] + 1;
    if (h + pads[0] + pads[2] < kernel[0] || w + pads[1] + pads[3] < kernel[1])
        return refuse_node(r, nd, "a kernel larger than its padded input");
    fm_deploy_layer *L = new_record(r, nd);
    if (!L)
        return fm_last_error_code();
    L->type = FM_DL_CONV;
    L->in_h = h, L->in_w = w, L->in_c = c;
    L->k_h = (int32_t)kernel[0], L->k_w = (int32_t)kernel[1], L->stride = (int32_t)strides[0];
    L->pad_top = (int32_t)pads[0], L->pad_left = (int32_t)pads[1];
    L->out_h = (int32_t)oh, L->out_w = (int32_t)ow, L->out_c = (int32_t)t.dims[0];
    L->in = (int32_t)(kernel[0] * kernel[1] * c);
    L->out = L->out_c;
    if (oh * ow * L->in > MAX_VALUES)
        return refuse_node(r, nd, "more than 2^28 window values per example");
    layer_meta lm;
    if ((rc = read_layer_meta(r, m, r->n, &lm)) < 0 || (rc = fill_weights(r, nd, L, &t, quant, &lm, 1)) < 0)
        return rc;
    h = L->out_h, w = L->out_w, c = L->out_c;
    cur = out0(nd);
    /* the max-pool of the sums, before the scale and offset */
    const FmiOnnx__NodeProto *pool = consumer(r, cur, &count);
    const int pooled = pool && is_op(pool, "MaxPool", 0);
    if (pooled) {
        if ((rc = pool_record(r, pool, &h, &w, c)) < 0)
            return rc;
        cur = out0(pool);
    }
    if ((rc = tail(r, L, &cur, graph_out, NULL, !lm.present && L->unit != 1.0f)) < 0)
        return rc;
    /* other tools pool after the batch norm and the activation: the
     * same as pooling the sums where every folded scale is >= 0, for
     * s*x + o, the sign and relu never decrease as x grows, so the
     * largest sum of a window gives its largest output (exactly:
     * float rounding is monotone too) */
    pool = strcmp(cur, graph_out) ? consumer(r, cur, &count) : NULL;
    if (!pooled && pool && is_op(pool, "MaxPool", 0)) {
        for (int j = 0; j < L->out; j++)
            if (!(L->scale[j] >= 0.0f))
                return refuse_node(r, pool, "a max-pool after a batch norm with a negative scale "
                                            "(fewmul pools the sums, before the scale)");
        if ((rc = pool_record(r, pool, &h, &w, c)) < 0)
            return rc;
        cur = out0(pool);
    }
    at->values = (int64_t)h * w * c;
    at->h = h, at->w = w, at->c = c;
    at->cur = cur;
    return FM_OK;
}

static int walk(reader *r, const FmiOnnx__ModelProto *m, const char *input, const char *graph_out)
{
    fm_deploy *d = r->d;
    const char *cur = input;
    layout have = r->flat_input ? FLAT : r->nchw_input ? MAP_NCHW : MAP_NHWC;
    int32_t h = d->height, w = d->width, c = d->channels;
    int64_t values = d->input_dim;
    int count;
    const FmiOnnx__NodeProto *nd;
    tensor t;
    /* the input scaling before the first layer: x = pixel * scale - mean */
    int have_scale = 0, have_mean = 0;
    for (int steps = 0; strcmp(cur, graph_out); steps++) {
        if ((size_t)steps > r->g->n_node)
            return fmi_error(FM_EFORMAT, "%s: the graph has a cycle", r->origin);
        nd = consumer(r, cur, &count);
        if (!nd)
            return fmi_error(FM_EUNSUPPORTED, "%s: value '%s' is read by %d nodes (fewmul reads a chain "
                             "from the input to the output: one)", r->origin, cur, count);
        if (nd->n_output != 1)
            return refuse_node(r, nd, "more than one output");
        const char *k = other(nd, cur);
        if (r->n == 0 && !have_scale && !have_mean && is_op(nd, "Mul", 0) && k && is_const(r, k)) {
            int rc = get_tensor(r, nd, k, &t);
            if (rc < 0)
                return rc;
            if (t.n != 1 || !(t.v[0] > 0.0f))
                return refuse_node(r, nd, "an input scaling other than by one positive number");
            d->input_scale = t.v[0];
            have_scale = 1;
            cur = out0(nd);
        } else if (r->n == 0 && !have_mean && is_op(nd, "Sub", 0) && k && !strcmp(safe(nd->input[0]), cur) &&
                   is_const(r, k)) {
            int rc = get_tensor(r, nd, k, &t);
            if (rc < 0)
                return rc;
            if (t.n != d->input_dim && t.n != 1)
                return refuse_node(r, nd, "an input mean of neither one value nor one per input value");
            for (int i = 0; i < d->input_dim; i++)
                d->input_mean[i] = tensor_at(&t, i);
            have_mean = 1;
            cur = out0(nd);
        } else if (is_op(nd, "Identity", 0) || is_op(nd, "Dropout", 0)) {
            if (strcmp(safe(nd->input[0]), cur))
                return refuse_node(r, nd, "its data is not its first input");
            cur = out0(nd);
        } else if (is_op(nd, "Transpose", 0)) {
            int64_t perm[4] = {0};
            int present;
            int rc = attr_ints(r, nd, "perm", 4, perm, &present);
            if (rc < 0)
                return rc;
            if (have == MAP_NHWC && perm[0] == 0 && perm[1] == 3 && perm[2] == 1 && perm[3] == 2)
                have = MAP_NCHW;
            else if (have == MAP_NCHW && perm[0] == 0 && perm[1] == 2 && perm[2] == 3 && perm[3] == 1)
                have = MAP_NHWC;
            else
                return refuse_node(r, nd, "a transpose other than NHWC to NCHW of a map, or back");
            cur = out0(nd);
        } else if (is_op(nd, "Flatten", 0)) {
            if (attr_int(nd, "axis", 1) != 1)
                return refuse_node(r, nd, "a flatten whose axis is not 1");
            if (have == MAP_NCHW && c > 1 && (int64_t)h * w > 1)
                return refuse_node(r, nd, "a flatten of an NCHW map (fewmul's vectors run channel last)");
            have = FLAT;
            cur = out0(nd);
        } else if (is_op(nd, "MatMul", 0) || is_op(nd, "Gemm", 0) || is_op(nd, "Conv", 0)) {
            walk_at at = {cur, have, h, w, c, values};
            int rc = is_op(nd, "Conv", 0) ? conv_layer(r, m, nd, graph_out, &at)
                                          : dense_layer(r, m, nd, graph_out, &at);
            if (rc < 0)
                return rc;
            cur = at.cur, have = at.have, h = at.h, w = at.w, c = at.c, values = at.values;
        } else if (is_op(nd, "GlobalAveragePool", 0)) {
            if (have != MAP_NCHW)
                return refuse_node(r, nd, "an average pool of data that is not an NCHW map");
            fm_deploy_layer *L = new_record(r, nd);
            if (!L)
                return fm_last_error_code();
            L->type = FM_DL_GAP;
            L->weights = FM_DW_FP32;
            L->in_h = h, L->in_w = w, L->in_c = c;
            L->out_h = L->out_w = 1, L->out_c = c;
            L->in = (int32_t)((int64_t)h * w * c);
            L->out = c;
            h = w = 1;
            values = c;
            cur = out0(nd);
        } else {
            return refuse_node(r, nd, "an operator fewmul does not import (docs/deploy.md, \"ONNX\")");
        }
    }
    if (r->n == 0)
        return fmi_error(FM_EUNSUPPORTED, "%s: the graph has no layer", r->origin);
    return FM_OK;
}

/* The graph's input: the one not an initialiser, float [batch, H, W, C] with
 * H, W, C fixed. */
static int graph_input(reader *r, const char **name)
{
    const FmiOnnx__ValueInfoProto *in = NULL;
    for (size_t i = 0; i < r->g->n_input; i++) {
        const FmiOnnx__ValueInfoProto *v = r->g->input[i];
        if (v->name && find_init(r, v->name))
            continue;
        if (in)
            return fmi_error(FM_EUNSUPPORTED, "%s: the graph has more than one input", r->origin);
        in = v;
    }
    if (!in || !in->name || !in->name[0])
        return fmi_error(FM_EFORMAT, "%s: the graph has no input", r->origin);
    const FmiOnnx__TypeProto *t = in->type;
    if (!t || t->value_case != FMI_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type ||
        t->tensor_type->elem_type != FMI_ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || !t->tensor_type->shape)
        return fmi_error(FM_EUNSUPPORTED, "%s: input '%s' is not a float tensor of known rank", r->origin,
                         in->name);
    const FmiOnnx__TensorShapeProto *s = t->tensor_type->shape;
    int64_t dims[3] = {1, 1, 1};
    if (s->n_dim < 2 || s->n_dim > 4)
        return fmi_error(FM_EUNSUPPORTED, "%s: input '%s' has rank %zu (fewmul reads [batch, height, width, "
                         "channels])", r->origin, in->name, s->n_dim);
    for (size_t k = 1; k < s->n_dim; k++) {
        const FmiOnnx__TensorShapeProto__Dimension *dm = s->dim[k];
        if (dm->value_case != FMI_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE || dm->dim_value < 1 ||
            dm->dim_value > (1 << 24))
            return fmi_error(FM_EUNSUPPORTED, "%s: input '%s' dimension %zu is not a fixed size (1 .. 2^24); "
                             "only the batch may be dynamic", r->origin, in->name, k);
        dims[k - 1] = dm->dim_value;
    }
    if (s->n_dim == 2) /* a flat vector: values x 1 x 1, as fewmul shapes one */
        r->flat_input = 1;
    if (s->n_dim == 4 && r->nchw_input) { /* [batch, C, H, W] */
        int64_t ch = dims[0];
        dims[0] = dims[1], dims[1] = dims[2], dims[2] = ch;
    }
    if (dims[0] * dims[1] * dims[2] > (1 << 24))
        return fmi_error(FM_EUNSUPPORTED, "%s: input '%s' has more than 2^24 values", r->origin, in->name);
    r->d->height = (int32_t)dims[0];
    r->d->width = (int32_t)dims[1];
    r->d->channels = (int32_t)dims[2];
    r->d->input_dim = (int32_t)(dims[0] * dims[1] * dims[2]);
    *name = in->name;
    return FM_OK;
}

static int import_model(reader *r, const FmiOnnx__ModelProto *m)
{
    const FmiOnnx__GraphProto *g = m->graph;
    if (!g)
        return fmi_error(FM_EFORMAT, "%s: the model has no graph", r->origin);
    if (g->n_node > MAX_NODES || g->n_initializer > MAX_INITS)
        return fmi_error(FM_EUNSUPPORTED, "%s: the graph has %zu nodes and %zu initialisers (at most %u each)",
                         r->origin, g->n_node, g->n_initializer, MAX_NODES);
    r->g = g;
    for (size_t i = 0; i < g->n_node; i++)
        if (!g->node[i]->op_type || !g->node[i]->op_type[0])
            return fmi_error(FM_EFORMAT, "%s: node %zu has no operator", r->origin, i);
    if (g->n_output != 1 || !g->output[0]->name || !g->output[0]->name[0])
        return fmi_error(FM_EUNSUPPORTED, "%s: the graph has %zu outputs (fewmul reads one: the class "
                         "scores)", r->origin, g->n_output);
    int rc = fmi_deploy_alloc(MAX_RECORDS, &r->d);
    if (rc < 0)
        return rc;
    r->d->n_layers = 0;
    const char *input = NULL;
    /* fewmul's graphs (with its metadata) take NHWC maps; another tool's a
     * rank-4 input is NCHW, PyTorch's order */
    r->nchw_input = !meta(m, "fewmul.source_mode");
    if ((rc = graph_input(r, &input)) < 0)
        return rc;
    r->d->input_scale = 1.0f;
    r->d->input_mean = fmi_alloc((size_t)r->d->input_dim, sizeof *r->d->input_mean);
    if (!r->d->input_mean)
        return FM_ENOMEM;
    if ((rc = walk(r, m, input, g->output[0]->name)) < 0)
        return rc;
    fm_deploy *d = r->d;
    const fm_deploy_layer *last = &d->layers[d->n_layers - 1];
    d->classes = last->type == FM_DL_DENSE ? last->out : 0;
    /* the input kinds follow from the activations, as the trainer sets them */
    int sign = 0;
    int any_binary = 0, any_ternary = 0, any_synapse = 0;
    for (int l = 0; l < d->n_layers; l++) {
        fm_deploy_layer *L = &d->layers[l];
        if (fmi_deploy_weighted(L)) {
            L->binary_input = sign;
            sign = L->act == FM_ACT_SIGN;
            any_binary |= L->weights == FM_DW_BINARY;
            any_ternary |= L->weights == FM_DW_TERNARY;
            any_synapse |= L->weights == FM_DW_SYNAPSE;
        } else if (L->type == FM_DL_GAP) {
            sign = 0;
        }
    }
    const char *mode = meta(m, "fewmul.source_mode"), *how = meta(m, "fewmul.export_how");
    if (mode && how) {
        char *e1, *e2;
        unsigned long a = strtoul(mode, &e1, 10), b = strtoul(how, &e2, 10);
        if (e1 == mode || *e1 || e2 == how || *e2 || a > FM_WEIGHTS_SYNAPSE || b > FM_EXPORT_MEAN)
            return fmi_error(FM_EFORMAT, "%s: metadata fewmul.source_mode or fewmul.export_how is malformed",
                             r->origin);
        d->source_mode = (uint32_t)a;
        d->export_how = (uint32_t)b;
    } else {
        d->source_mode = any_synapse ? FM_WEIGHTS_SYNAPSE : any_ternary ? FM_WEIGHTS_TC_DET
                       : any_binary ? FM_WEIGHTS_BC_DET : FM_WEIGHTS_FP32;
        d->export_how = FM_EXPORT_DET;
    }
    if ((rc = fmi_deploy_validate(d, r->origin)) < 0)
        return rc == FM_EFORMAT ? fmi_error(FM_EUNSUPPORTED, "%s", fm_last_error()) : rc;
    return fmi_deploy_finish(d);
}

int fm_deploy_import_onnx_memory(const void *data, size_t size, const char *origin, fm_deploy **out)
{
    if (!out)
        return fmi_error(FM_EINVAL, "fm_deploy_import_onnx_memory: NULL argument");
    *out = NULL;
    if (!data && size)
        return fmi_error(FM_EINVAL, "fm_deploy_import_onnx_memory: NULL data of %zu bytes", size);
    if (!origin)
        origin = "<memory>";
    if (size == 0)
        return fmi_error(FM_ETRUNC, "%s: empty file (not an ONNX model)", origin);
    ProtobufCAllocator alloc = {pb_alloc, pb_free, NULL};
    FmiOnnx__ModelProto *m = fmi_onnx__model_proto__unpack(&alloc, size, data);
    if (!m)
        return fmi_error(FM_EFORMAT, "%s: not an ONNX model (the protobuf message is malformed or truncated)",
                         origin);
    reader r = {0};
    arena owned = {0};
    r.origin = origin;
    r.owned = &owned;
    int rc = import_model(&r, m);
    for (size_t i = 0; i < owned.n; i++)
        fmi_free(owned.blocks[i]);
    fmi_free(owned.blocks);
    fmi_onnx__model_proto__free_unpacked(m, &alloc);
    if (rc < 0) {
        fm_deploy_free(r.d);
        return rc;
    }
    *out = r.d;
    return FM_OK;
}

#endif

int fm_deploy_import_onnx(const char *path, fm_deploy **out)
{
    if (!path || !out)
        return fmi_error(FM_EINVAL, "fm_deploy_import_onnx: NULL argument");
    *out = NULL;
    uint8_t *data;
    size_t size;
    int rc = fmi_file_read_all(path, (size_t)1 << 31, "ONNX model", &data, &size);
    if (rc < 0)
        return rc;
    rc = fm_deploy_import_onnx_memory(data, size, path, out);
    fmi_free(data);
    return rc;
}
