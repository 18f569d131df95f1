/* engine.c — running a deployed network: the kernel choice and prediction. A packed layer is one
 * kernel call (adds, lookups, popcounts) followed by the few multiplies that
 * remain per output: the folded batch norm's scale. The "fp32" variant runs
 * the same network on unpacked float weights through BLAS (gemm.c's loop
 * where BLAS may not be called): the yardstick. */
#include "deploy.h"
#include "gemm.h"
#include "infer.h"
#include "internal.h"

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
        float *w = fmi_alloc((size_t)L->out * (size_t)L->in, sizeof *w);
        if (!w)
            return FM_ENOMEM;
        for (int j = 0; j < L->out; j++)
            for (int i = 0; i < L->in; i++)
                w[(size_t)j * L->in + i] = fmi_deploy_code_value(L, fmi_deploy_code(L, j, i));
        L->unpacked = w;
    }
    return FM_OK;
}

int fmi_deploy_finish(fm_deploy *d)
{
    describe(d);
    const fm_kernels *k;
    int rc = fmi_kernels_default(&k);
    if (rc < 0)
        return rc;
    for (int l = 0; l < d->n_layers; l++) {
        fm_deploy_layer *L = &d->layers[l];
        if (L->weights != FM_DW_FP32 && !L->kernel && (rc = fmi_kernel_prepare(L, &L->kernel)) < 0)
            return rc;
    }
    d->kernels = k;
    fmi_blas_single_thread();
    return FM_OK;
}

int fm_deploy_set_kernels(fm_deploy *d, const char *name)
{
    if (!d)
        return fmi_error(FM_EINVAL, "fm_deploy_set_kernels: NULL network");
    const fm_kernels *k = NULL;
    int rc;
    if (name && strcmp(name, "fp32") == 0)
        rc = unpack_all(d);
    else
        rc = name ? fmi_kernels_get(name, &k) : fmi_kernels_default(&k);
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
    const fm_kernels *k = fmi_kernels_supported(index);
    if (k)
        return k->name;
    return fmi_kernels_supported(index - 1) ? "fp32" : NULL;
}

/* ---- queries ---- */

int fm_deploy_input_shape(const fm_deploy *d, int *height, int *width, int *channels)
{
    if (!d)
        return fmi_error(FM_EINVAL, "fm_deploy_input_shape: NULL network");
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
uint64_t fm_deploy_file_bytes(const fm_deploy *d) { return d ? fmi_deploy_serialized_bytes(d) : 0; }

int fm_deploy_describe_layer(const fm_deploy *d, int layer, fm_deploy_layer_info *info)
{
    if (!d || !info)
        return fmi_error(FM_EINVAL, "fm_deploy_describe_layer: NULL argument");
    if (layer < 0 || layer >= d->n_layers)
        return fmi_error(FM_EINVAL, "layer %d out of range (network has %d)", layer, d->n_layers);
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
            kernel = FM_MAX(kernel, fmi_kernel_scratch_floats(d->layers[l].kernel));
    size_t words = fmi_kernel_bit_words((int)w);
    /* x, y, acc (floats), iacc (int32), bits (uint64, 8-aligned first) */
    size_t bytes = words * 8 + (3 * w + kernel) * sizeof(float) + w * sizeof(int32_t);
    s->block = fmi_alloc_raw(bytes);
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
    if (fmi_blas_enabled()) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1, 0.0f, acc, 1);
        return;
    }
#endif
    for (int j = 0; j < out; j++) {
        const float *row = w + (size_t)j * in;
        float sum = 0.0f;
        for (int i = 0; i < in; i++)
            sum += row[i] * x[i];
        acc[j] = sum;
    }
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
            fmi_pack_signs(y, L->out, bits);
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
    return FM_MAX(1, FM_MIN(fmi_threads_usable(threads), count));
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
                 (scores || (row = fmi_alloc((size_t)d->classes, sizeof *row)) != NULL);
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
        fmi_free(row);
        fmi_free(s.block);
    }
    return failed ? fmi_error(FM_ENOMEM, "out of memory for prediction buffers") : FM_OK;
}

/* Y = X · Wᵀ over a block of examples (W out x in). */
static void fp32_block(const float *w, const float *x, float *y, int n, int in, int out, int threads)
{
    if (n == 1) {
        fp32_vector(w, x, y, in, out);
        return;
    }
#ifdef FM_HAVE_CBLAS
    if (threads == 1 && fmi_blas_enabled()) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f,
                    y, out);
        return;
    }
#endif
    (void)threads;
    fmi_sgemm(0, 1, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
}

/* The fp32 yardstick: whole blocks of examples through matrix products. */
static int predict_fp32(const fm_deploy *d, const uint8_t *u8, const float *f32, int count,
                        int threads, uint8_t *classes, float *scores)
{
    const int nt = threads_for(threads, count);
    const size_t w = (size_t)widest(d), block = (size_t)FM_MIN(count, FP32_BLOCK);
    float *x = fmi_alloc(block * w, sizeof *x), *y = fmi_alloc(block * w, sizeof *y);
    float *acc = fmi_alloc(block * w, sizeof *acc);
    if (!x || !y || !acc) {
        fmi_free(x);
        fmi_free(y);
        fmi_free(acc);
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
    fmi_free(x);
    fmi_free(y);
    fmi_free(acc);
    return FM_OK;
}

static int predict(const fm_deploy *d, const uint8_t *u8, const float *f32, int count, int threads,
                   uint8_t *classes, float *scores)
{
    if (!d || (!u8 && !f32 && count > 0))
        return fmi_error(FM_EINVAL, "fm_deploy_predict: NULL network or inputs");
    if (count < 0)
        return fmi_error(FM_EINVAL, "fm_deploy_predict: negative count %d", count);
    if (!classes && !scores)
        return fmi_error(FM_EINVAL, "fm_deploy_predict: neither classes nor scores requested");
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
