/* export_onnx.c — a deployed network as an ONNX model (fm_deploy_export_onnx,
 * `fewmul export --onnx FILE`; docs/deploy.md, "ONNX"): one graph of standard
 * operators (opset 13) that onnxruntime and other ONNX engines run, or the
 * QONNX dialect of it, whose quantizers (BipolarQuant, IntQuant of domain
 * qonnx.custom_op.general) mark the binary and ternary weights and the sign
 * activations for FINN-style tool chains.
 *
 * The graph computes what the engine computes, in floats: the input scaling
 * and mean of the packed file, each weight as its code's value (+-1, 0, the
 * synapse magnitude with its sign, or the fp32 weight), the folded batch norm
 * as a Mul and an Add per output (the product rounded before the add, as
 * fmi_deploy_z), max-pools on the sums before that (the trainer's order), and
 * signs as +1 where z >= 0 (ONNX's Sign gives 0 at 0, so a compare and a
 * select instead). Only the order of the additions in a sum is the engine's
 * choice, so scores may differ in their last bits.
 *
 * The model is built with protobuf-c's structures of onnx.proto (generated at
 * build time, under the package name fmi_onnx so that its symbols stay in the
 * library's namespace), every piece allocated in one arena freed at the end,
 * then packed into memory and written whole or not at all. A build without
 * protobuf-c keeps fm_onnx_available() at 0 and refuses the export. */
#include "bytes.h"
#include "deploy.h"
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifndef FM_HAVE_ONNX

int fm_onnx_available(void) { return 0; }

int fm_deploy_export_onnx(const fm_deploy *d, const char *path, fm_onnx_dialect dialect,
                          fm_export_onnx_info *info)
{
    (void)d, (void)path, (void)dialect;
    if (info)
        memset(info, 0, sizeof *info);
    return fmi_error(FM_EUNSUPPORTED, "this fewmul was built without ONNX support; rebuild it with "
                                      "protobuf-c (Debian: libprotobuf-c-dev protobuf-c-compiler python3-onnx)");
}

#else

#include <fmi_onnx.pb-c.h>

#define OPSET 13
#define IR_VERSION 7
#define QONNX_DOMAIN "qonnx.custom_op.general"
/* protobuf's limit on one message */
#define MAX_MODEL_BYTES ((uint64_t)2000 * 1024 * 1024)

int fm_onnx_available(void) { return 1; }

/* ---- the builder: an arena and the graph's growing lists ------------------ */

typedef struct builder {
    void **blocks;
    size_t n_blocks, cap_blocks;
    FmiOnnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    FmiOnnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    int failed; /* an allocation failed: everything after is a no-op */
    int qonnx;
    const char *path; /* the file, for messages */
    int64_t weights;  /* initialiser values of weights */
} builder;

static void *take(builder *b, size_t count, size_t size)
{
    if (b->failed)
        return NULL;
    if (b->n_blocks == b->cap_blocks) {
        size_t cap = b->cap_blocks ? 2 * b->cap_blocks : 256;
        void **grown = fmi_alloc(cap, sizeof *grown);
        if (!grown) {
            b->failed = 1;
            return NULL;
        }
        if (b->n_blocks)
            memcpy(grown, b->blocks, b->n_blocks * sizeof *grown);
        fmi_free(b->blocks);
        b->blocks = grown;
        b->cap_blocks = cap;
    }
    void *p = fmi_alloc(count ? count : 1, size);
    if (!p) {
        b->failed = 1;
        return NULL;
    }
    b->blocks[b->n_blocks++] = p;
    return p;
}

static void builder_free(builder *b)
{
    for (size_t i = 0; i < b->n_blocks; i++)
        fmi_free(b->blocks[i]);
    fmi_free(b->blocks);
    fmi_free(b->nodes);
    fmi_free(b->inits);
}

/* Appends p to a growing array of pointers (nodes, initialisers). */
static void push(builder *b, void ***list, size_t *n, size_t *cap, void *p)
{
    if (b->failed || !p)
        return;
    if (*n == *cap) {
        size_t grown_cap = *cap ? 2 * *cap : 64;
        void **grown = fmi_alloc(grown_cap, sizeof *grown);
        if (!grown) {
            b->failed = 1;
            return;
        }
        if (*n)
            memcpy(grown, *list, *n * sizeof *grown);
        fmi_free(*list);
        *list = grown;
        *cap = grown_cap;
    }
    (*list)[(*n)++] = p;
}

static char *name_of(builder *b, const char *fmt, ...) FM_PRINTF(2, 3);
static char *name_of(builder *b, const char *fmt, ...)
{
    char buf[96];
    va_list args;
    va_start(args, fmt);
    vsnprintf(buf, sizeof buf, fmt, args);
    va_end(args);
    char *s = take(b, strlen(buf) + 1, 1);
    if (s)
        memcpy(s, buf, strlen(buf) + 1);
    return s;
}

/* A float initialiser of the given shape; its values (n of them, the product
 * of dims) are stored by the caller in the returned array, little-endian raw
 * data written at the end (tensor_seal). */
static float *float_init(builder *b, const char *name, int rank, const int64_t *dims, int64_t n)
{
    FmiOnnx__TensorProto *t = take(b, 1, sizeof *t);
    int64_t *d = take(b, (size_t)rank, sizeof *d);
    float *values = take(b, (size_t)n, sizeof *values);
    if (!t || !d || !values)
        return NULL;
    *t = (FmiOnnx__TensorProto)FMI_ONNX__TENSOR_PROTO__INIT;
    if (rank > 0)
        memcpy(d, dims, (size_t)rank * sizeof *d);
    t->n_dims = (size_t)rank;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = FMI_ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->name = (char *)name;
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)n * 4;
    t->raw_data.data = (uint8_t *)values; /* made little-endian in seal_floats */
    push(b, (void ***)&b->inits, &b->n_inits, &b->cap_inits, t);
    return values;
}

/* A scalar float initialiser (rank 0). */
static const char *scalar(builder *b, const char *name, float v)
{
    float *p = float_init(b, name, 0, NULL, 1);
    if (p)
        *p = v;
    return name;
}

/* Raw data is little-endian: rewrite each float's bits in that order (a no-op
 * on a little-endian host). */
static void seal_floats(builder *b)
{
    for (size_t t = 0; t < b->n_inits; t++) {
        uint8_t *p = b->inits[t]->raw_data.data;
        for (size_t i = 0; i + 4 <= b->inits[t]->raw_data.len; i += 4) {
            uint32_t u;
            memcpy(&u, p + i, 4);
            p[i] = (uint8_t)u, p[i + 1] = (uint8_t)(u >> 8), p[i + 2] = (uint8_t)(u >> 16),
            p[i + 3] = (uint8_t)(u >> 24);
        }
    }
}

/* An attribute of the given name and type, its value set by the caller. */
static FmiOnnx__AttributeProto *attr(builder *b, const char *name, FmiOnnx__AttributeProto__AttributeType type)
{
    FmiOnnx__AttributeProto *a = take(b, 1, sizeof *a);
    if (!a)
        return NULL;
    *a = (FmiOnnx__AttributeProto)FMI_ONNX__ATTRIBUTE_PROTO__INIT;
    a->name = (char *)name;
    a->has_type = 1;
    a->type = type;
    return a;
}

static FmiOnnx__AttributeProto *attr_ints(builder *b, const char *name, int n, const int64_t *v)
{
    FmiOnnx__AttributeProto *a = attr(b, name, FMI_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *ints = take(b, (size_t)n, sizeof *ints);
    if (!a || !ints)
        return NULL;
    memcpy(ints, v, (size_t)n * sizeof *ints);
    a->n_ints = (size_t)n;
    a->ints = ints;
    return a;
}

static FmiOnnx__AttributeProto *attr_int(builder *b, const char *name, int64_t v)
{
    FmiOnnx__AttributeProto *a = attr(b, name, FMI_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a)
        a->has_i = 1, a->i = v;
    return a;
}

static FmiOnnx__AttributeProto *attr_string(builder *b, const char *name, const char *v)
{
    FmiOnnx__AttributeProto *a = attr(b, name, FMI_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    if (a) {
        a->has_s = 1;
        a->s.data = (uint8_t *)v;
        a->s.len = strlen(v);
    }
    return a;
}

/* A node op(inputs...) -> output (one output); attributes added after. */
static FmiOnnx__NodeProto *node(builder *b, const char *op, const char *output, int n_in, ...)
{
    FmiOnnx__NodeProto *nd = take(b, 1, sizeof *nd);
    char **in = take(b, (size_t)n_in, sizeof *in);
    char **out = take(b, 1, sizeof *out);
    FmiOnnx__AttributeProto **attrs = take(b, 8, sizeof *attrs);
    if (!nd || !in || !out || !attrs)
        return NULL;
    *nd = (FmiOnnx__NodeProto)FMI_ONNX__NODE_PROTO__INIT;
    va_list args;
    va_start(args, n_in);
    for (int i = 0; i < n_in; i++)
        in[i] = (char *)va_arg(args, const char *);
    va_end(args);
    out[0] = (char *)output;
    nd->op_type = (char *)op;
    nd->name = name_of(b, "%s_%zu", op, b->n_nodes);
    nd->n_input = (size_t)n_in;
    nd->input = in;
    nd->n_output = 1;
    nd->output = out;
    nd->attribute = attrs;
    push(b, (void ***)&b->nodes, &b->n_nodes, &b->cap_nodes, nd);
    return nd;
}

static void add_attr(FmiOnnx__NodeProto *nd, FmiOnnx__AttributeProto *a)
{
    if (nd && a && nd->n_attribute < 8)
        nd->attribute[nd->n_attribute++] = a;
}

/* A float tensor's type: [batch, dims...] (batch a named dimension). */
static FmiOnnx__ValueInfoProto *value_info(builder *b, const char *name, int rank, const int64_t *dims)
{
    FmiOnnx__ValueInfoProto *v = take(b, 1, sizeof *v);
    FmiOnnx__TypeProto *type = take(b, 1, sizeof *type);
    FmiOnnx__TypeProto__Tensor *tensor = take(b, 1, sizeof *tensor);
    FmiOnnx__TensorShapeProto *shape = take(b, 1, sizeof *shape);
    FmiOnnx__TensorShapeProto__Dimension **dim = take(b, (size_t)rank + 1, sizeof *dim);
    FmiOnnx__TensorShapeProto__Dimension *dims_of = take(b, (size_t)rank + 1, sizeof *dims_of);
    if (!v || !type || !tensor || !shape || !dim || !dims_of)
        return NULL;
    for (int i = 0; i <= rank; i++) {
        dims_of[i] = (FmiOnnx__TensorShapeProto__Dimension)FMI_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        if (i == 0) {
            dims_of[i].value_case = FMI_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dims_of[i].dim_param = "batch";
        } else {
            dims_of[i].value_case = FMI_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dims_of[i].dim_value = dims[i - 1];
        }
        dim[i] = &dims_of[i];
    }
    *shape = (FmiOnnx__TensorShapeProto)FMI_ONNX__TENSOR_SHAPE_PROTO__INIT;
    shape->n_dim = (size_t)rank + 1;
    shape->dim = dim;
    *tensor = (FmiOnnx__TypeProto__Tensor)FMI_ONNX__TYPE_PROTO__TENSOR__INIT;
    tensor->has_elem_type = 1;
    tensor->elem_type = FMI_ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tensor->shape = shape;
    *type = (FmiOnnx__TypeProto)FMI_ONNX__TYPE_PROTO__INIT;
    type->value_case = FMI_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tensor;
    *v = (FmiOnnx__ValueInfoProto)FMI_ONNX__VALUE_INFO_PROTO__INIT;
    v->name = (char *)name;
    v->type = type;
    return v;
}

/* ---- the graph ------------------------------------------------------------ */

typedef enum { MAP_NHWC, MAP_NCHW, FLAT } layout;

/* The value of weight i of output j (binary and ternary: the code's value,
 * +-1 or 0, the unit being in the scale; fp32: the stored float). */
static float weight_value(const fm_deploy_layer *L, int j, int i)
{
    if (L->weights == FM_DW_FP32) {
        uint32_t u = fmi_load_le32(L->packed + (size_t)j * L->row_bytes + 4 * (size_t)i);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return fmi_deploy_code_value(L, fmi_deploy_code(L, j, i));
}

/* The QONNX quantizer of a layer's weight tensor w: BipolarQuant for binary
 * codes, IntQuant (2 bits, signed, narrow: -1, 0, +1) for ternary; the other
 * kinds go out as their dequantised floats. */
static const char *quantize_weights(builder *b, const fm_deploy_layer *L, int l, const char *w)
{
    if (!b->qonnx || (L->weights != FM_DW_BINARY && L->weights != FM_DW_TERNARY))
        return w;
    const char *q = name_of(b, "l%d_weights_q", l);
    FmiOnnx__NodeProto *nd;
    if (L->weights == FM_DW_BINARY) {
        nd = node(b, "BipolarQuant", q, 2, w, "one");
    } else {
        nd = node(b, "IntQuant", q, 4, w, "one", "zero", "two");
        add_attr(nd, attr_int(b, "signed", 1));
        add_attr(nd, attr_int(b, "narrow", 1));
        add_attr(nd, attr_string(b, "rounding_mode", "ROUND"));
    }
    if (nd)
        nd->domain = QONNX_DOMAIN;
    return q;
}

/* z = acc * scale + offset, then the activation: the record's output name.
 * map: per channel of an NCHW map (scale shaped [1, C, 1, 1]). */
static const char *finish_layer(builder *b, const fm_deploy_layer *L, int l, const char *acc, int map,
                                const char *out_name)
{
    int64_t dims[4] = {1, L->out, 1, 1}, flat = L->out;
    const char *sname = name_of(b, "l%d_scale", l), *oname = name_of(b, "l%d_offset", l);
    float *s = map ? float_init(b, sname, 4, dims, L->out) : float_init(b, sname, 1, &flat, L->out);
    float *o = map ? float_init(b, oname, 4, dims, L->out) : float_init(b, oname, 1, &flat, L->out);
    if (!s || !o)
        return NULL;
    memcpy(s, L->scale, (size_t)L->out * sizeof *s);
    memcpy(o, L->offset, (size_t)L->out * sizeof *o);
    const char *scaled = name_of(b, "l%d_scaled", l);
    const char *z = L->act == FM_ACT_NONE && out_name ? out_name : name_of(b, "l%d_z", l);
    node(b, "Mul", scaled, 2, acc, sname);
    node(b, "Add", z, 2, scaled, oname);
    if (L->act == FM_ACT_RELU) {
        const char *r = name_of(b, "l%d_relu", l);
        node(b, "Relu", r, 1, z);
        return r;
    }
    if (L->act == FM_ACT_SIGN) {
        const char *sign = name_of(b, "l%d_sign", l);
        if (b->qonnx) {
            FmiOnnx__NodeProto *nd = node(b, "BipolarQuant", sign, 2, z, "one");
            if (nd)
                nd->domain = QONNX_DOMAIN;
        } else {
            const char *ge = name_of(b, "l%d_nonnegative", l);
            node(b, "GreaterOrEqual", ge, 2, z, "zero");
            node(b, "Where", sign, 3, ge, "one", "minus_one");
        }
        return sign;
    }
    return z;
}

static const char *to_layout(builder *b, const char *cur, layout *have, layout want, int l)
{
    if (*have == want)
        return cur;
    const char *t = cur;
    if (want == MAP_NCHW) { /* only from the input image */
        static const int64_t perm[4] = {0, 3, 1, 2};
        t = name_of(b, "l%d_nchw", l);
        add_attr(node(b, "Transpose", t, 1, cur), attr_ints(b, "perm", 4, perm));
    } else { /* FLAT: values in the packed file's order, row-major, channel last */
        if (*have == MAP_NCHW) {
            static const int64_t perm[4] = {0, 2, 3, 1};
            const char *nhwc = name_of(b, "l%d_nhwc", l);
            add_attr(node(b, "Transpose", nhwc, 1, cur), attr_ints(b, "perm", 4, perm));
            cur = nhwc;
        }
        t = name_of(b, "l%d_flat", l);
        add_attr(node(b, "Flatten", t, 1, cur), attr_int(b, "axis", 1));
    }
    *have = want;
    return t;
}

/* Layer l's weight initialiser of the given shape (out x in values, filled
 * by the caller), and its name in *name. */
static float *weights_init(builder *b, const fm_deploy_layer *L, int l, int rank, const int64_t *dims,
                           const char **name)
{
    *name = name_of(b, "l%d_weights", l);
    b->weights += (int64_t)L->in * L->out;
    return float_init(b, *name, rank, dims, (int64_t)L->in * L->out);
}

static int dense(builder *b, const fm_deploy_layer *L, int l, const char **cur, layout *have, int last)
{
    *cur = to_layout(b, *cur, have, FLAT, l);
    int64_t dims[2] = {L->in, L->out};
    const char *wname;
    float *w = weights_init(b, L, l, 2, dims, &wname);
    if (!w)
        return FM_ENOMEM;
    for (int j = 0; j < L->out; j++)
        for (int i = 0; i < L->in; i++)
            w[(size_t)i * (size_t)L->out + (size_t)j] = weight_value(L, j, i);
    const char *acc = name_of(b, "l%d_acc", l);
    node(b, "MatMul", acc, 2, *cur, quantize_weights(b, L, l, wname));
    *cur = finish_layer(b, L, l, acc, 0, last ? "scores" : NULL);
    return b->failed ? FM_ENOMEM : FM_OK;
}

static int conv(builder *b, const fm_deploy_layer *L, const fm_deploy_layer *P, int l, const char **cur,
                layout *have)
{
    /* ONNX sizes the output from the padding after the input too:
     * floor((in + top + bottom - k) / s) + 1; the packed file gives the
     * output size, from which the bottom and right padding follow. */
    int64_t pad_bottom = (int64_t)(L->out_h - 1) * L->stride + L->k_h - L->in_h - L->pad_top;
    int64_t pad_right = (int64_t)(L->out_w - 1) * L->stride + L->k_w - L->in_w - L->pad_left;
    if (pad_bottom < 0)
        pad_bottom = 0;
    if (pad_right < 0)
        pad_right = 0;
    if ((L->in_h + L->pad_top + pad_bottom - L->k_h) / L->stride + 1 != L->out_h ||
        (L->in_w + L->pad_left + pad_right - L->k_w) / L->stride + 1 != L->out_w)
        return fmi_error(FM_EUNSUPPORTED, "%s: layer %d: a convolution's output of %dx%d from %dx%d with "
                                          "stride %d has no ONNX padding", b->path, l, L->out_h, L->out_w,
                         L->in_h, L->in_w, L->stride);
    *cur = to_layout(b, *cur, have, MAP_NCHW, l);
    int64_t dims[4] = {L->out_c, L->in_c, L->k_h, L->k_w};
    const char *wname;
    float *w = weights_init(b, L, l, 4, dims, &wname);
    if (!w)
        return FM_ENOMEM;
    /* fewmul's codes run (ky, kx, c) per filter; ONNX's weights (o, c, ky, kx) */
    for (int j = 0; j < L->out_c; j++)
        for (int ky = 0; ky < L->k_h; ky++)
            for (int kx = 0; kx < L->k_w; kx++)
                for (int c = 0; c < L->in_c; c++)
                    w[(((size_t)j * (size_t)L->in_c + (size_t)c) * (size_t)L->k_h + (size_t)ky) *
                          (size_t)L->k_w + (size_t)kx] =
                        weight_value(L, j, (ky * L->k_w + kx) * L->in_c + c);
    const char *acc = name_of(b, "l%d_acc", l);
    FmiOnnx__NodeProto *nd = node(b, "Conv", acc, 2, *cur, quantize_weights(b, L, l, wname));
    const int64_t kernel[2] = {L->k_h, L->k_w}, strides[2] = {L->stride, L->stride};
    const int64_t pads[4] = {L->pad_top, L->pad_left, pad_bottom, pad_right};
    add_attr(nd, attr_ints(b, "kernel_shape", 2, kernel));
    add_attr(nd, attr_ints(b, "strides", 2, strides));
    add_attr(nd, attr_ints(b, "pads", 4, pads));
    if (P) { /* the max-pool of the sums, before the scale and offset */
        const char *pooled = name_of(b, "l%d_pooled", l + 1);
        const int64_t window[2] = {P->k_h, P->k_w}, pstrides[2] = {P->stride, P->stride};
        FmiOnnx__NodeProto *pool = node(b, "MaxPool", pooled, 1, acc);
        add_attr(pool, attr_ints(b, "kernel_shape", 2, window));
        add_attr(pool, attr_ints(b, "strides", 2, pstrides));
        acc = pooled;
    }
    *cur = finish_layer(b, L, l, acc, 1, NULL);
    return b->failed ? FM_ENOMEM : FM_OK;
}

/* The bytes of the float initialisers, in 64 bits, to refuse a model larger
 * than protobuf's limit before any of it is made. */
static uint64_t float_bytes(const fm_deploy *d)
{
    uint64_t n = (uint64_t)d->input_dim + 8;
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        if (fmi_deploy_weighted(L))
            n += (uint64_t)L->in * (uint64_t)L->out + 2 * (uint64_t)L->out;
    }
    return 4 * n;
}

static int build(builder *b, const fm_deploy *d, FmiOnnx__GraphProto *g)
{
    /* the constants the nodes share */
    scalar(b, "zero", 0.0f);
    scalar(b, "one", 1.0f);
    scalar(b, "minus_one", -1.0f);
    if (b->qonnx)
        scalar(b, "two", 2.0f);
    scalar(b, "input_scale", d->input_scale);
    int64_t shape[3] = {d->height, d->width, d->channels};
    float *mean = float_init(b, "input_mean", 3, shape, d->input_dim);
    if (!mean)
        return FM_ENOMEM;
    memcpy(mean, d->input_mean, (size_t)d->input_dim * sizeof *mean);
    /* x = pixel * scale - mean, the engine's two roundings */
    node(b, "Mul", "input_scaled", 2, "pixels", "input_scale");
    node(b, "Sub", "input", 2, "input_scaled", "input_mean");
    const char *cur = "input";
    layout have = MAP_NHWC;
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        int rc = FM_OK;
        if (L->type == FM_DL_DENSE) {
            rc = dense(b, L, l + 1, &cur, &have, l == d->n_layers - 1);
        } else if (L->type == FM_DL_CONV) {
            const fm_deploy_layer *P =
                l + 1 < d->n_layers && d->layers[l + 1].type == FM_DL_POOL ? &d->layers[l + 1] : NULL;
            rc = conv(b, L, P, l + 1, &cur, &have);
            if (P)
                l++;
        } else if (L->type == FM_DL_GAP) {
            cur = to_layout(b, cur, &have, MAP_NCHW, l + 1);
            const char *avg = name_of(b, "l%d_gap", l + 1);
            node(b, "GlobalAveragePool", avg, 1, cur);
            cur = avg;
        } else {
            rc = fmi_error(FM_EUNSUPPORTED, "%s: layer %d: a max-pool not after a convolution", b->path, l + 1);
        }
        if (rc != FM_OK)
            return rc;
    }
    int64_t in_dims[3] = {d->height, d->width, d->channels}, out_dims[1] = {d->classes};
    FmiOnnx__ValueInfoProto **in = take(b, 1, sizeof *in), **out = take(b, 1, sizeof *out);
    if (!in || !out)
        return FM_ENOMEM;
    in[0] = value_info(b, "pixels", 3, in_dims);
    out[0] = value_info(b, "scores", 1, out_dims);
    if (b->failed)
        return FM_ENOMEM;
    g->name = "fewmul";
    g->n_input = 1;
    g->input = in;
    g->n_output = 1;
    g->output = out;
    g->n_node = b->n_nodes;
    g->node = b->nodes;
    g->n_initializer = b->n_inits;
    g->initializer = b->inits;
    return FM_OK;
}

/* What the graph cannot say exactly, for fm_deploy_import_onnx to rebuild
 * the packed file byte for byte: the training mode and export kind, and per
 * weighted record ("fewmul.layerN", N its graph number) the weight kind, the
 * synapse levels, the unit H and the magnitudes, floats as the 8 hex digits
 * of their bits. Other tools ignore metadata_props. */
static int add_metadata(builder *b, const fm_deploy *d, FmiOnnx__ModelProto *model)
{
    FmiOnnx__StringStringEntryProto **list = take(b, (size_t)d->n_layers + 2, sizeof *list);
    if (!list)
        return FM_ENOMEM;
    size_t n = 0;
    for (int l = -2; l < d->n_layers; l++) {
        const fm_deploy_layer *L = l >= 0 ? &d->layers[l] : NULL;
        if (L && !fmi_deploy_weighted(L))
            continue;
        FmiOnnx__StringStringEntryProto *e = take(b, 1, sizeof *e);
        char *value = take(b, 24 + 9 * (size_t)(L ? L->levels : 0), 1);
        if (!e || !value)
            return FM_ENOMEM;
        *e = (FmiOnnx__StringStringEntryProto)FMI_ONNX__STRING_STRING_ENTRY_PROTO__INIT;
        if (!L) {
            e->key = l == -2 ? "fewmul.source_mode" : "fewmul.export_how";
            sprintf(value, "%u", l == -2 ? d->source_mode : d->export_how);
        } else {
            e->key = name_of(b, "fewmul.layer%d", l + 1);
            uint32_t u;
            memcpy(&u, &L->unit, 4);
            int at = sprintf(value, "%d %d %08x", (int)L->weights, (int)L->levels, (unsigned)u);
            for (int k = 0; k < L->levels; k++) {
                memcpy(&u, &L->magnitudes[k], 4);
                at += sprintf(value + at, " %08x", (unsigned)u);
            }
        }
        e->value = value;
        list[n++] = e;
    }
    model->n_metadata_props = n;
    model->metadata_props = list;
    return b->failed ? FM_ENOMEM : FM_OK;
}

int fm_deploy_export_onnx(const fm_deploy *d, const char *path, fm_onnx_dialect dialect,
                          fm_export_onnx_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    if (!d || !path)
        return fmi_error(FM_EINVAL, "fm_deploy_export_onnx: NULL argument");
    if (dialect != FM_ONNX_PLAIN && dialect != FM_ONNX_QONNX)
        return fmi_error(FM_EINVAL, "fm_deploy_export_onnx: unknown dialect %d", (int)dialect);
    int rc = fmi_deploy_validate(d, "fm_deploy_export_onnx");
    if (rc != FM_OK)
        return rc == FM_EFORMAT ? FM_EINVAL : rc;
    if (float_bytes(d) > MAX_MODEL_BYTES)
        return fmi_error(FM_EUNSUPPORTED, "%s: the network's weights as floats take %llu bytes, more than "
                                          "one ONNX file holds (2 GB)", path,
                         (unsigned long long)float_bytes(d));
    rc = fm_check_output(path);
    if (rc != FM_OK)
        return rc;
    builder b = {0};
    b.qonnx = dialect == FM_ONNX_QONNX;
    b.path = path;
    FmiOnnx__GraphProto graph = FMI_ONNX__GRAPH_PROTO__INIT;
    FmiOnnx__OperatorSetIdProto opsets[2] = {FMI_ONNX__OPERATOR_SET_ID_PROTO__INIT,
                                             FMI_ONNX__OPERATOR_SET_ID_PROTO__INIT};
    FmiOnnx__OperatorSetIdProto *opset_list[2] = {&opsets[0], &opsets[1]};
    opsets[0].domain = "";
    opsets[0].has_version = 1;
    opsets[0].version = OPSET;
    opsets[1].domain = QONNX_DOMAIN;
    opsets[1].has_version = 1;
    opsets[1].version = 1;
    FmiOnnx__ModelProto model = FMI_ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = 1;
    model.ir_version = IR_VERSION;
    model.n_opset_import = b.qonnx ? 2 : 1;
    model.opset_import = opset_list;
    model.producer_name = "fewmul";
    model.producer_version = FM_VERSION_STRING;
    model.doc_string = (char *)d->description;
    model.graph = &graph;
    uint8_t *bytes = NULL;
    size_t len = 0;
    rc = build(&b, d, &graph);
    if (rc == FM_OK)
        rc = add_metadata(&b, d, &model);
    if (rc == FM_OK) {
        seal_floats(&b);
        len = fmi_onnx__model_proto__get_packed_size(&model);
        bytes = fmi_alloc(len, 1);
        rc = bytes ? FM_OK : FM_ENOMEM;
    }
    if (rc == FM_OK && fmi_onnx__model_proto__pack(&model, bytes) != len)
        rc = fmi_error(FM_EINVAL, "fm_deploy_export_onnx: the model packed to an unexpected size");
    if (rc == FM_OK)
        rc = fmi_file_write_atomic(path, bytes, len);
    if (rc == FM_OK && info) {
        info->file_bytes = len;
        info->nodes = (int64_t)b.n_nodes;
        info->weights = b.weights;
    }
    if (b.failed && rc == FM_OK)
        rc = FM_ENOMEM;
    fmi_free(bytes);
    builder_free(&b);
    return rc;
}

#endif
