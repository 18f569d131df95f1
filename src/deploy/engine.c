/* engine.c — running a deployed network: the export of a trained model into
 * its deployed form, the kernel choice, and prediction. A packed layer is one
 * kernel call (adds, lookups, popcounts) followed by the few multiplies that
 * remain per output: the folded batch norm's scale. The "fp32" variant runs
 * the same network on unpacked float weights through BLAS: the yardstick. */
#include "deploy.h"
#include "gemm.h"
#include "infer.h"
#include "internal.h"
#include "layers.h"
#include "net.h"
#include "quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef FM_HAVE_CBLAS
#include <cblas.h>
#endif

/* Examples per block of the fp32 path's matrix products. */
#define FP32_BLOCK 256

static const char *const weight_kind_names[] = {"fp32", "binary", "ternary", "synapse"};
static const char *const act_names[] = {"none", "relu", "sign"};

/* ---- description and kernels ---- */

static void describe(fm_deploy *d)
{
    char *s = d->description;
    const size_t size = sizeof d->description;
    int len = snprintf(s, size, "%d", d->input_dim);
    for (int l = 0; l < d->n_layers && len < (int)size; l++)
        len += snprintf(s + len, size - (size_t)len, "-%d", d->layers[l].out);
    const fm_deploy_layer *first = &d->layers[0];
    int same = 1;
    for (int l = 1; l < d->n_layers; l++)
        same &= d->layers[l].weights == first->weights && d->layers[l].levels == first->levels;
    if (len < (int)size) {
        if (same && first->weights == FM_DW_SYNAPSE)
            len += snprintf(s + len, size - (size_t)len, ", synapse:%d weights (%d bits)",
                            first->levels, first->bits);
        else
            len += snprintf(s + len, size - (size_t)len, ", %s weights",
                            same ? weight_kind_names[first->weights] : "mixed");
    }
    if (len < (int)size && d->n_layers > 1)
        snprintf(s + len, size - (size_t)len, ", %s activations",
                 d->layers[0].act == FM_ACT_SIGN ? "binary" : "relu");
}

/* Unpacked code values of every packed layer, for the fp32 variant. */
static int unpack_all(fm_deploy *d)
{
    for (int l = 0; l < d->n_layers; l++) {
        fm_deploy_layer *L = &d->layers[l];
        if (L->weights == FM_DW_FP32 || L->unpacked)
            continue;
        float *w = fm_alloc((size_t)L->out * (size_t)L->in, sizeof *w);
        if (!w)
            return FM_ENOMEM;
        for (int j = 0; j < L->out; j++)
            for (int i = 0; i < L->in; i++)
                w[(size_t)j * L->in + i] = fm_deploy_code_value(L, fm_deploy_code(L, j, i));
        L->unpacked = w;
    }
    return FM_OK;
}

int fm_deploy_finish(fm_deploy *d)
{
    describe(d);
    const fm_kernels *k;
    int rc = fm_kernels_default(&k);
    if (rc < 0)
        return rc;
    for (int l = 0; l < d->n_layers; l++) {
        fm_deploy_layer *L = &d->layers[l];
        if (L->weights != FM_DW_FP32 && !L->kernel && (rc = fm_kernel_prepare(L, &L->kernel)) < 0)
            return rc;
    }
    d->kernels = k;
    fm_blas_single_thread();
    return FM_OK;
}

int fm_deploy_set_kernels(fm_deploy *d, const char *name)
{
    if (!d)
        return fm_error(FM_EINVAL, "fm_deploy_set_kernels: NULL network");
    const fm_kernels *k = NULL;
    int rc;
    if (name && strcmp(name, "fp32") == 0)
        rc = unpack_all(d);
    else
        rc = name ? fm_kernels_get(name, &k) : fm_kernels_default(&k);
    if (rc < 0)
        return rc;
    d->kernels = k;
    return FM_OK;
}

const char *fm_deploy_kernels(const fm_deploy *d)
{
    return !d ? NULL : d->kernels ? d->kernels->name : "fp32";
}

const char *fm_kernels_name(int index)
{
    if (index < 0)
        return NULL;
    const fm_kernels *k = fm_kernels_supported(index);
    if (k)
        return k->name;
    return fm_kernels_supported(index - 1) ? "fp32" : NULL;
}

/* ---- queries ---- */

int fm_deploy_input_shape(const fm_deploy *d, int *height, int *width, int *channels)
{
    if (!d)
        return fm_error(FM_EINVAL, "fm_deploy_input_shape: NULL network");
    if (height)
        *height = d->height;
    if (width)
        *width = d->width;
    if (channels)
        *channels = d->channels;
    return d->input_dim;
}

int fm_deploy_classes(const fm_deploy *d) { return d ? d->classes : FM_EINVAL; }
const char *fm_deploy_describe(const fm_deploy *d) { return d ? d->description : ""; }
int fm_deploy_layers(const fm_deploy *d) { return d ? d->n_layers : FM_EINVAL; }
uint64_t fm_deploy_file_bytes(const fm_deploy *d) { return d ? fm_deploy_serialized_bytes(d) : 0; }

int fm_deploy_describe_layer(const fm_deploy *d, int layer, fm_deploy_layer_info *info)
{
    if (!d || !info)
        return fm_error(FM_EINVAL, "fm_deploy_describe_layer: NULL argument");
    if (layer < 0 || layer >= d->n_layers)
        return fm_error(FM_EINVAL, "layer %d out of range (network has %d)", layer, d->n_layers);
    const fm_deploy_layer *L = &d->layers[layer];
    info->in = L->in;
    info->out = L->out;
    info->weights = weight_kind_names[L->weights];
    info->bits = L->bits;
    info->levels = L->levels;
    info->input = L->binary_input ? "binary" : "real";
    info->activation = act_names[L->act];
    info->weight_bytes = (uint64_t)L->out * L->row_bytes;
    return FM_OK;
}

/* ---- export ---- */

/* The code of a deterministic synapse value: its magnitude's index and sign. */
static uint32_t synapse_code(const fm_deploy_layer *L, float value)
{
    float a = fabsf(value);
    uint32_t index = 0;
    while ((int)index + 1 < L->levels && L->magnitudes[index] != a)
        index++;
    return (value < 0.0f ? 1u << (L->bits - 1) : 0u) | index;
}

/* Packs dense layer `dl` of the model (latent weights w, in x out) into L. */
static int export_weights(const fm_model *m, const fm_layer *dl, fm_export_weights how,
                          fm_deploy_layer *L)
{
    const fm_config *c = &m->config;
    const float *w = m->state + dl->offset;
    const int packed = c->weights != FM_WEIGHTS_FP32 &&
                       !(how == FM_EXPORT_MEAN && (c->weights == FM_WEIGHTS_BC ||
                                                   c->weights == FM_WEIGHTS_TC ||
                                                   c->weights == FM_WEIGHTS_SYNAPSE));
    L->in = dl->in;
    L->out = dl->out;
    L->unit = 1.0f;
    if (!packed) {
        L->weights = FM_DW_FP32;
        L->bits = 32;
    } else if (c->weights == FM_WEIGHTS_SYNAPSE && c->synapse_levels > 32) {
        return fm_error(FM_EUNSUPPORTED, "packed files hold at most 32 synapse levels (model has %d);"
                        " export the real weights instead", c->synapse_levels);
    } else if (c->weights == FM_WEIGHTS_SYNAPSE && c->synapse_levels > 1) {
        L->weights = FM_DW_SYNAPSE;
        L->levels = c->synapse_levels;
        L->bits = (int)fm_weight_bits(c->weights, c->synapse_levels); /* sign + index */
    } else {
        /* one synapse level with a sign is the binary rule */
        const int binary = c->weights != FM_WEIGHTS_TC && c->weights != FM_WEIGHTS_TC_DET;
        L->weights = binary ? FM_DW_BINARY : FM_DW_TERNARY;
        L->bits = binary ? 1 : 2;
        L->unit = dl->h;
    }
    int rc = fm_deploy_layer_alloc(L);
    if (rc < 0)
        return rc;
    if (!packed) {
        for (int j = 0; j < L->out; j++)
            for (int i = 0; i < L->in; i++)
                memcpy(L->packed + (size_t)j * L->row_bytes + 4 * (size_t)i,
                       &w[(size_t)i * L->out + j], 4);
        return FM_OK;
    }
    for (int k = 0; k < L->levels; k++)
        L->magnitudes[k] = fm_synapse_level(dl->h, L->levels, (float)c->synapse_range, k);
    /* The deterministic weights exactly as training evaluates them, then coded. */
    const size_t n = (size_t)L->in * L->out;
    float *q = fm_alloc(n, sizeof *q);
    if (!q)
        return FM_ENOMEM;
    fm_quantize_weights_det(c->weights, w, q, n, dl->h, c->synapse_levels, (float)c->synapse_range);
    for (int i = 0; i < L->in; i++)
        for (int j = 0; j < L->out; j++) {
            float v = q[(size_t)i * L->out + j];
            uint32_t code;
            if (L->weights == FM_DW_BINARY)
                code = v > 0.0f;
            else if (L->weights == FM_DW_TERNARY)
                code = v > 0.0f ? 1u : v < 0.0f ? 3u : 0u;
            else
                code = synapse_code(L, v);
            fm_deploy_set_code(L, j, i, code);
        }
    fm_free(q);
    return FM_OK;
}

/* Folds batch norm (gamma, beta, mean, var of `bn`) into L's scale and offset,
 * computed as training's inference pass computes its factors. */
static void export_bn(const fm_model *m, const fm_layer *bn, fm_deploy_layer *L)
{
    const float *p = m->state + bn->offset;
    const float *gamma = p, *beta = p + bn->out, *mean = p + 2 * bn->out, *var = p + 3 * bn->out;
    const float eps = (float)m->config.bn_eps;
    for (int j = 0; j < bn->out; j++) {
        float s;
        fm_bn_fold(gamma[j], beta[j], mean[j], var[j], eps, &s, &L->offset[j]);
        L->scale[j] = s * L->unit;
    }
}

int fm_deploy_from_model(const fm_model *m, fm_export_weights how, int height, int width,
                         int channels, fm_deploy **out)
{
    if (!out)
        return fm_error(FM_EINVAL, "fm_deploy_from_model: NULL output");
    *out = NULL;
    if (!m)
        return fm_error(FM_EINVAL, "fm_deploy_from_model: NULL model");
    if (how != FM_EXPORT_DET && how != FM_EXPORT_MEAN)
        return fm_error(FM_EINVAL, "unknown export choice %d", (int)how);
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].kind == FM_LAYER_CONV)
            return fm_error(FM_EUNSUPPORTED, "the packed format holds dense networks; this model "
                                             "has convolutions (%s)", m->arch);
    if (m->config.preproc != FM_PRE_CENTER && m->config.preproc != FM_PRE_UNIT)
        return fm_error(FM_EUNSUPPORTED, "the packed format stores a mean-subtraction input "
                                         "step; this model's GCN preprocessing cannot be packed");
    if (height == 0 && width == 0 && channels == 0) {
        height = m->in_h;
        width = m->in_w;
        channels = m->in_c;
    }
    if (height < 1 || width < 1 || channels < 1 ||
        (int64_t)height * width * channels != m->input_dim)
        return fm_error(FM_EINVAL, "input shape %d x %d x %d does not hold the model's %d inputs",
                        height, width, channels, m->input_dim);
    int n_dense = 0;
    for (int l = 0; l < m->n_layers; l++)
        n_dense += m->layers[l].kind == FM_LAYER_DENSE;
    fm_deploy *d;
    int rc = fm_deploy_alloc(n_dense, &d);
    if (rc < 0)
        return rc;
    d->height = height;
    d->width = width;
    d->channels = channels;
    d->input_dim = m->input_dim;
    d->classes = m->classes;
    d->source_mode = (uint32_t)m->config.weights;
    d->export_how = (uint32_t)how;
    d->input_mean = fm_alloc((size_t)m->input_dim, sizeof *d->input_mean);
    if (!d->input_mean) {
        fm_deploy_free(d);
        return FM_ENOMEM;
    }
    memcpy(d->input_mean, m->input_mean, (size_t)m->input_dim * sizeof *d->input_mean);
    int k = -1;
    for (int l = 0; l < m->n_layers && rc == FM_OK; l++) {
        const fm_layer *ml = &m->layers[l];
        switch (ml->kind) {
        case FM_LAYER_DENSE:
            k++;
            d->layers[k].binary_input = k > 0 && d->layers[k - 1].act == FM_ACT_SIGN;
            rc = export_weights(m, ml, how, &d->layers[k]);
            break;
        case FM_LAYER_BN:
            export_bn(m, ml, &d->layers[k]);
            break;
        case FM_LAYER_RELU:
            d->layers[k].act = FM_ACT_RELU;
            break;
        case FM_LAYER_SIGN:
            d->layers[k].act = FM_ACT_SIGN;
            break;
        case FM_LAYER_DROPOUT: /* the identity at inference */
            break;
        case FM_LAYER_CONV: /* refused above */
        case FM_LAYER_POOL:
            break;
        }
    }
    if (rc == FM_OK)
        rc = fm_deploy_validate(d, "exported model");
    if (rc == FM_OK)
        rc = fm_deploy_finish(d);
    if (rc < 0) {
        fm_deploy_free(d);
        return rc;
    }
    *out = d;
    return FM_OK;
}

/* ---- prediction ---- */

/* One thread's buffers for single examples. */
typedef struct scratch {
    float *x, *y, *acc, *kernel;
    int32_t *iacc;
    uint64_t *bits;
    void *block;
} scratch;

static int widest(const fm_deploy *d)
{
    int w = d->input_dim;
    for (int l = 0; l < d->n_layers; l++)
        w = FM_MAX(w, d->layers[l].out);
    return w;
}

static int scratch_create(const fm_deploy *d, scratch *s)
{
    size_t w = (size_t)widest(d), kernel = 0;
    for (int l = 0; l < d->n_layers; l++)
        if (d->layers[l].kernel)
            kernel = FM_MAX(kernel, fm_kernel_scratch_floats(d->layers[l].kernel));
    size_t words = fm_kernel_bit_words((int)w);
    /* x, y, acc (floats), iacc (int32), bits (uint64, 8-aligned first) */
    size_t bytes = words * 8 + (3 * w + kernel) * sizeof(float) + w * sizeof(int32_t);
    s->block = fm_alloc_raw(bytes);
    if (!s->block)
        return FM_ENOMEM;
    uint8_t *p = s->block;
    s->bits = (uint64_t *)p;
    p += words * 8;
    s->x = (float *)p;
    s->y = s->x + w;
    s->acc = s->y + w;
    s->kernel = s->acc + w;
    s->iacc = (int32_t *)(s->kernel + kernel);
    return FM_OK;
}

/* x = pixel * scale - mean, as training loads a batch. */
static void load_input(const fm_deploy *d, const uint8_t *u8, const float *f32, long example,
                       float *x)
{
    const long dim = d->input_dim;
    const float scale = d->input_scale;
    if (u8)
        for (long i = 0; i < dim; i++)
            x[i] = (float)u8[example * dim + i] * scale - d->input_mean[i];
    else
        for (long i = 0; i < dim; i++)
            x[i] = f32[example * dim + i] * scale - d->input_mean[i];
}

/* acc = x · wᵀ for a layer of float weights w (out x in), one example. */
static void fp32_vector(const float *w, const float *x, float *acc, int in, int out)
{
#ifdef FM_HAVE_CBLAS
    cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1, 0.0f, acc, 1);
#else
    for (int j = 0; j < out; j++) {
        const float *row = w + (size_t)j * in;
        float sum = 0.0f;
        for (int i = 0; i < in; i++)
            sum += row[i] * x[i];
        acc[j] = sum;
    }
#endif
}

static const float *float_weights(const fm_deploy_layer *L)
{
    return L->weights == FM_DW_FP32 ? (const float *)(const void *)L->packed : L->unpacked;
}

/* z = scale * acc + offset and the activation, into y (and, for a sign layer
 * whose next layer is binary, into bits; bits is unused when next is NULL). */
static void finish_layer(const fm_deploy_layer *L, const fm_deploy_layer *next, const float *acc,
                         float *y, uint64_t *bits)
{
    switch (L->act) {
    case FM_ACT_NONE:
        for (int j = 0; j < L->out; j++)
            y[j] = acc[j] * L->scale[j] + L->offset[j];
        break;
    case FM_ACT_RELU:
        for (int j = 0; j < L->out; j++) {
            float z = acc[j] * L->scale[j] + L->offset[j];
            y[j] = z > 0.0f ? z : 0.0f;
        }
        break;
    case FM_ACT_SIGN:
        for (int j = 0; j < L->out; j++)
            y[j] = acc[j] * L->scale[j] + L->offset[j] >= 0.0f ? 1.0f : -1.0f;
        if (next && next->weights == FM_DW_BINARY)
            fm_pack_signs(y, L->out, bits);
        break;
    }
}

/* One example through every layer; the class scores end in `scores`. */
static void forward_one(const fm_deploy *d, scratch *s, float *scores)
{
    const fm_kernels *k = d->kernels;
    float *x = s->x, *y = s->y;
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        const fm_deploy_layer *next = l + 1 < d->n_layers ? &d->layers[l + 1] : NULL;
        if (!k || L->weights == FM_DW_FP32) {
            fp32_vector(float_weights(L), x, s->acc, L->in, L->out);
        } else if (L->binary_input && L->weights == FM_DW_BINARY) {
            k->bits(L->kernel, s->bits, s->iacc);
            for (int j = 0; j < L->out; j++)
                s->acc[j] = (float)s->iacc[j];
        } else {
            k->real(L->kernel, x, s->acc, s->kernel);
        }
        float *dst = next ? y : scores;
        finish_layer(L, next, s->acc, dst, s->bits);
        float *t = x;
        x = y;
        y = t;
    }
}

static int argmax(const float *row, int n)
{
    int best = 0;
    for (int k = 1; k < n; k++)
        if (row[k] > row[best])
            best = k;
    return best;
}

static int threads_for(int threads, int count)
{
    if (threads <= 0)
        threads = fm_threads_available();
    return FM_MAX(1, FM_MIN(threads, count));
}

/* The packed kernels: examples split across threads, each with its buffers. */
static int predict_packed(const fm_deploy *d, const uint8_t *u8, const float *f32, int count,
                          int threads, uint8_t *classes, float *scores)
{
    const int nt = threads_for(threads, count);
    int failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        scratch s = {0};
        float *row = NULL;
        int ok = scratch_create(d, &s) == FM_OK &&
                 (scores || (row = fm_alloc((size_t)d->classes, sizeof *row)) != NULL);
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int b = 0; b < count; b++) {
            if (!ok)
                continue;
            float *out = scores ? scores + (size_t)b * d->classes : row;
            load_input(d, u8, f32, b, s.x);
            forward_one(d, &s, out);
            if (classes)
                classes[b] = (uint8_t)argmax(out, d->classes);
        }
        fm_free(row);
        fm_free(s.block);
    }
    return failed ? fm_error(FM_ENOMEM, "out of memory for prediction buffers") : FM_OK;
}

/* Y = X · Wᵀ over a block of examples (W out x in). */
static void fp32_block(const float *w, const float *x, float *y, int n, int in, int out, int threads)
{
    if (n == 1) {
        fp32_vector(w, x, y, in, out);
        return;
    }
#ifdef FM_HAVE_CBLAS
    if (threads == 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f,
                    y, out);
        return;
    }
#endif
    (void)threads;
    fm_sgemm(0, 1, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
}

/* The fp32 yardstick: whole blocks of examples through matrix products. */
static int predict_fp32(const fm_deploy *d, const uint8_t *u8, const float *f32, int count,
                        int threads, uint8_t *classes, float *scores)
{
    const int nt = threads_for(threads, count);
    const size_t w = (size_t)widest(d), block = (size_t)FM_MIN(count, FP32_BLOCK);
    float *x = fm_alloc(block * w, sizeof *x), *y = fm_alloc(block * w, sizeof *y);
    float *acc = fm_alloc(block * w, sizeof *acc);
    if (!x || !y || !acc) {
        fm_free(x);
        fm_free(y);
        fm_free(acc);
        return FM_ENOMEM;
    }
    for (int b0 = 0; b0 < count; b0 += (int)block) {
        const int n = FM_MIN((int)block, count - b0);
        for (int b = 0; b < n; b++)
            load_input(d, u8, f32, b0 + b, x + (size_t)b * d->input_dim);
        float *in = x, *out = y;
        for (int l = 0; l < d->n_layers; l++) {
            const fm_deploy_layer *L = &d->layers[l];
            fp32_block(float_weights(L), in, acc, n, L->in, L->out, nt);
            for (int b = 0; b < n; b++) /* no next layer given: sign outputs stay floats */
                finish_layer(L, NULL, acc + (size_t)b * L->out, out + (size_t)b * L->out, NULL);
            float *t = in;
            in = out;
            out = t;
        }
        for (int b = 0; b < n; b++) {
            const float *row = in + (size_t)b * d->classes;
            if (scores)
                memcpy(scores + (size_t)(b0 + b) * d->classes, row, (size_t)d->classes * sizeof *row);
            if (classes)
                classes[b0 + b] = (uint8_t)argmax(row, d->classes);
        }
    }
    fm_free(x);
    fm_free(y);
    fm_free(acc);
    return FM_OK;
}

static int predict(const fm_deploy *d, const uint8_t *u8, const float *f32, int count, int threads,
                   uint8_t *classes, float *scores)
{
    if (!d || (!u8 && !f32 && count > 0))
        return fm_error(FM_EINVAL, "fm_deploy_predict: NULL network or inputs");
    if (count < 0)
        return fm_error(FM_EINVAL, "fm_deploy_predict: negative count %d", count);
    if (!classes && !scores)
        return fm_error(FM_EINVAL, "fm_deploy_predict: neither classes nor scores requested");
    if (count == 0)
        return FM_OK;
    /* A network with no packed layer (fp32, or --export mean) gains nothing from
     * the per-example kernels' path: whole blocks through BLAS are faster. */
    int packed = 0;
    for (int l = 0; l < d->n_layers; l++)
        packed |= d->layers[l].weights != FM_DW_FP32;
    return d->kernels && packed ? predict_packed(d, u8, f32, count, threads, classes, scores)
                                : predict_fp32(d, u8, f32, count, threads, classes, scores);
}

int fm_deploy_predict(const fm_deploy *d, const uint8_t *pixels, int count, int threads,
                      uint8_t *classes, float *scores)
{
    return predict(d, pixels, NULL, count, threads, classes, scores);
}

int fm_deploy_predict_f32(const fm_deploy *d, const float *pixels, int count, int threads,
                          uint8_t *classes, float *scores)
{
    return predict(d, NULL, pixels, count, threads, classes, scores);
}
