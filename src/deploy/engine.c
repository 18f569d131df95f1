/* engine.c — running a deployed network: the kernel choice and prediction. A packed layer is one
 * kernel call (adds, lookups, popcounts) followed by the few multiplies that
 * remain per output: the folded batch norm's scale (none where a sign follows
 * a convolution: a range of the sum per channel, compared inside the kernel,
 * which writes the packed bits). Sign layers pass their packed maps on to
 * the binary layers after them; floats are made only where a record reads
 * floats. Max-pools take the maxima of a convolution's sums before its batch
 * norm and activation, as the trainer does, or where the activation is a
 * sign, combine the packed output bits (exactly the same result). The "fp32"
 * variant runs the same network on unpacked float weights through BLAS
 * (gemm.c's loop where BLAS may not be called), convolutions as im2col and a
 * matrix product over chunks of examples: the yardstick. */
#include "deploy.h"
#include "gemm.h"
#include "infer.h"
#include "internal.h"

#include <float.h>
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
static const char *const type_names[] = {"dense", "conv", "maxpool", "gap"};

/* ---- description and kernels ---- */

/* A dense network: "784-256-10"; with maps: "28x28x1-8k3-pool2-16k3s2p1-gap-10"
 * (a convolution F filters kK, stride sS, padding pP; pools and gap by name). */
static void describe(fm_deploy *d)
{
    char *s = d->description;
    const size_t size = sizeof d->description;
    int maps = 0;
    for (int l = 0; l < d->n_layers; l++)
        maps |= d->layers[l].type != FM_DL_DENSE;
    int len = maps ? snprintf(s, size, "%dx%dx%d", d->height, d->width, d->channels)
                   : snprintf(s, size, "%d", d->input_dim);
    for (int l = 0; l < d->n_layers && len < (int)size; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        char *at = s + len;
        size_t left = size - (size_t)len;
        if (L->type == FM_DL_CONV) {
            len += snprintf(at, left, "-%dk%d", L->out_c, L->k_h);
            if (len < (int)size && L->k_w != L->k_h)
                len += snprintf(s + len, size - (size_t)len, "x%d", L->k_w);
            if (len < (int)size && L->stride != 1)
                len += snprintf(s + len, size - (size_t)len, "s%d", L->stride);
            if (len < (int)size && (L->pad_top || L->pad_left))
                len += snprintf(s + len, size - (size_t)len, "p%d", L->pad_top);
        } else if (L->type == FM_DL_POOL) {
            len += snprintf(at, left, "-pool%d", L->k_h);
            if (len < (int)size && L->stride != L->k_h)
                len += snprintf(s + len, size - (size_t)len, "s%d", L->stride);
        } else if (L->type == FM_DL_GAP) {
            len += snprintf(at, left, "-gap");
        } else {
            len += snprintf(at, left, "-%d", L->out);
        }
    }
    const fm_deploy_layer *first = &d->layers[0];
    int same = 1;
    for (int l = 1; l < d->n_layers; l++)
        if (fmi_deploy_weighted(&d->layers[l]))
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
        if (!fmi_deploy_weighted(L) || L->weights == FM_DW_FP32 || L->unpacked)
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

/* Whether z = scale * acc + offset >= 0, as every path rounds it. */
static int passes(float acc, float scale, float offset) { return fmi_deploy_z(acc, scale, offset) >= 0.0f; }

void fmi_sign_range_int(float scale, float offset, int32_t n, int32_t *lo, int32_t *hi)
{
    *lo = INT32_MIN;
    *hi = INT32_MAX;
    if (scale > 0.0f) { /* the smallest sum that passes, n + 1 if none */
        int32_t a = -n, b = n + 1;
        while (a < b) {
            int32_t mid = a + (b - a) / 2;
            if (passes((float)mid, scale, offset))
                b = mid;
            else
                a = mid + 1;
        }
        *lo = a;
    } else if (scale < 0.0f) { /* the largest sum that passes, -n - 1 if none */
        int32_t a = -n - 1, b = n;
        while (a < b) {
            int32_t mid = b - (b - a) / 2;
            if (passes((float)mid, scale, offset))
                a = mid;
            else
                b = mid - 1;
        }
        *hi = a;
    } else if (!passes(0.0f, scale, offset)) {
        *lo = n + 1;
        *hi = -n - 1;
    }
}

/* Floats in the order of their values as integers: -inf .. -0 and +0 .. +inf
 * map to -0x7f800000 .. 0 .. 0x7f800000 (both zeros to 0: z is the same for
 * them); NaNs are never asked for. */
static int32_t float_key(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits >> 31 ? -(int32_t)(bits & 0x7fffffffu) : (int32_t)bits;
}

static float key_float(int32_t key)
{
    uint32_t bits = key < 0 ? (uint32_t)-key | 0x80000000u : (uint32_t)key;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

void fmi_sign_range_float(float scale, float offset, float *lo, float *hi)
{
    *lo = -INFINITY;
    *hi = INFINITY;
    const int64_t bottom = float_key(-INFINITY), top = float_key(INFINITY);
    if (scale > 0.0f) { /* +inf passes (z = +inf): the smallest key that passes */
        int64_t a = bottom, b = top;
        while (a < b) {
            int64_t mid = a + (b - a) / 2;
            if (passes(key_float((int32_t)mid), scale, offset))
                b = mid;
            else
                a = mid + 1;
        }
        *lo = key_float((int32_t)a);
    } else if (scale < 0.0f) { /* -inf passes: the largest key that passes */
        int64_t a = bottom, b = top;
        while (a < b) {
            int64_t mid = b - (b - a) / 2;
            if (passes(key_float((int32_t)mid), scale, offset))
                a = mid;
            else
                b = mid - 1;
        }
        *hi = key_float((int32_t)a);
    } else if (passes(0.0f, scale, offset)) { /* every finite sum (0 * inf is NaN) */
        *lo = -FLT_MAX;
        *hi = FLT_MAX;
    } else {
        *lo = INFINITY;
        *hi = -INFINITY;
    }
}

/* A sign convolution's folded batch norm as a range of the sum per channel
 * (deploy.h): integer sums in [-n, n], n the fan-in, or real ones, so its
 * bits come from two compares and no multiply. `above` is also what a
 * max-pool of the bits combines with: a window's maximum sum passes the test
 * where any passes (OR, z grows with the sum) or where all pass (AND). */
static int sign_ranges(fm_deploy_layer *L)
{
    const int channels = L->out;
    const int integer = L->binary_input && L->weights == FM_DW_BINARY;
    L->above = fmi_alloc((size_t)fmi_conv_pixel_words(channels), sizeof *L->above);
    if (integer) {
        L->ilo = fmi_alloc((size_t)channels, sizeof *L->ilo);
        L->ihi = fmi_alloc((size_t)channels, sizeof *L->ihi);
    } else {
        L->flo = fmi_alloc((size_t)channels, sizeof *L->flo);
        L->fhi = fmi_alloc((size_t)channels, sizeof *L->fhi);
    }
    if (!L->above || (integer ? !L->ilo || !L->ihi : !L->flo || !L->fhi))
        return FM_ENOMEM;
    for (int j = 0; j < channels; j++) {
        L->above[j / 64] |= (uint64_t)!(L->scale[j] < 0.0f) << (j % 64);
        if (integer)
            fmi_sign_range_int(L->scale[j], L->offset[j], L->in, &L->ilo[j], &L->ihi[j]);
        else
            fmi_sign_range_float(L->scale[j], L->offset[j], &L->flo[j], &L->fhi[j]);
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
        if (L->type == FM_DL_DENSE && L->weights != FM_DW_FP32 && !L->kernel &&
            (rc = fmi_kernel_prepare(L, &L->kernel)) < 0)
            return rc;
        if (L->type == FM_DL_CONV && !L->conv && (rc = fmi_conv_prepare(L, &L->conv)) < 0)
            return rc;
        if (L->type == FM_DL_CONV && L->act == FM_ACT_SIGN && !L->above &&
            (rc = sign_ranges(L)) < 0)
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
    memset(info, 0, sizeof *info);
    const int weighted = fmi_deploy_weighted(L);
    info->type = type_names[L->type];
    info->in = (int)fmi_deploy_values_in(L);
    info->out = (int)fmi_deploy_values_out(L);
    info->weights = weighted ? weight_kind_names[L->weights] : "none";
    info->bits = L->bits;
    info->levels = L->levels;
    info->input = L->binary_input ? "binary" : "real";
    info->activation = act_names[L->act];
    info->weight_count = weighted ? (uint64_t)L->in * (uint64_t)L->out : 0;
    info->weight_bytes = weighted ? (uint64_t)L->out * L->row_bytes : 0;
    if (L->type != FM_DL_DENSE) {
        info->in_h = L->in_h, info->in_w = L->in_w, info->in_c = L->in_c;
        info->out_h = L->out_h, info->out_w = L->out_w, info->out_c = L->out_c;
        info->kernel_h = L->k_h, info->kernel_w = L->k_w, info->stride = L->stride;
        info->pad_top = L->pad_top, info->pad_left = L->pad_left;
    }
    return FM_OK;
}

/* ---- prediction ---- */

/* One thread's buffers for single examples. The maps are packed +-1 maps of
 * sign convolutions (fmi_conv_pixel_words words per pixel): the input of the
 * next convolution, the bits before a pool and after it. */
typedef struct scratch {
    float *x, *y, *acc, *kernel, *col;
    int32_t *iacc;
    uint64_t *bits, *map_in, *map_pre, *map_out;
    void *block;
} scratch;

/* The most values an example has between records, or in a convolution's
 * sums before its pool. */
static size_t widest(const fm_deploy *d)
{
    int64_t w = d->input_dim;
    for (int l = 0; l < d->n_layers; l++)
        w = FM_MAX(w, FM_MAX(fmi_deploy_values_in(&d->layers[l]), fmi_deploy_values_out(&d->layers[l])));
    return (size_t)w;
}

/* Floats of im2col columns of one example for the fp32 convolutions (all of
 * them when `all`, else those with fp32 weights). */
static size_t col_floats(const fm_deploy *d, int all)
{
    size_t n = 0;
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        if (L->type == FM_DL_CONV && (all || L->weights == FM_DW_FP32))
            n = FM_MAX(n, (size_t)L->out_h * (size_t)L->out_w * (size_t)L->in);
    }
    return n;
}

static int scratch_create(const fm_deploy *d, scratch *s)
{
    size_t w = widest(d), kernel = 0, map = 0;
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        if (L->kernel)
            kernel = FM_MAX(kernel, fmi_kernel_scratch_floats(L->kernel));
        if (L->conv && !(L->binary_input && L->weights == FM_DW_BINARY)) /* conv_real's tables */
            kernel = FM_MAX(kernel, fmi_conv_kernel_scratch_floats(L->conv));
        if (L->type == FM_DL_CONV) {
            map = FM_MAX(map, (size_t)L->in_h * L->in_w * (size_t)fmi_conv_pixel_words(L->in_c));
            map = FM_MAX(map, (size_t)L->out_h * L->out_w * (size_t)fmi_conv_pixel_words(L->out_c));
        }
    }
    const size_t col = col_floats(d, 0);
    size_t words = fmi_kernel_bit_words((int)w) + 3 * map;
    /* words (uint64, 8-aligned first), then x, y, acc, kernel, col (floats), iacc (int32) */
    size_t bytes = words * 8 + (3 * w + kernel + col) * sizeof(float) + w * sizeof(int32_t);
    s->block = fmi_alloc_raw(bytes);
    if (!s->block)
        return FM_ENOMEM;
    uint8_t *p = s->block;
    s->bits = (uint64_t *)p;
    s->map_in = s->bits + fmi_kernel_bit_words((int)w);
    s->map_pre = s->map_in + map;
    s->map_out = s->map_pre + map;
    p += words * 8;
    s->x = (float *)p;
    s->y = s->x + w;
    s->acc = s->y + w;
    s->kernel = s->acc + w;
    s->col = s->kernel + kernel;
    s->iacc = (int32_t *)(s->col + col);
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

/* The windows of one example's map x copied into col (positions x fan-in,
 * zeros for the padding): im2col. */
static void im2col(const fm_deploy_layer *L, const float *x, float *col)
{
    const int fan = L->in, ic = L->in_c;
    for (int oy = 0; oy < L->out_h; oy++)
        for (int ox = 0; ox < L->out_w; ox++) {
            float *row = col + ((size_t)oy * L->out_w + (size_t)ox) * (size_t)fan;
            for (int ky = 0; ky < L->k_h; ky++)
                for (int kx = 0; kx < L->k_w; kx++) {
                    const int iy = oy * L->stride - L->pad_top + ky;
                    const int ix = ox * L->stride - L->pad_left + kx;
                    float *dst = row + (size_t)(ky * L->k_w + kx) * (size_t)ic;
                    if (iy < 0 || iy >= L->in_h || ix < 0 || ix >= L->in_w)
                        memset(dst, 0, (size_t)ic * sizeof *dst);
                    else
                        memcpy(dst, x + ((size_t)iy * L->in_w + (size_t)ix) * (size_t)ic,
                               (size_t)ic * sizeof *dst);
                }
        }
}

/* A convolution of one example with float weights w (out_c x fan-in): im2col,
 * then acc = col · wᵀ, one matrix product. */
static void fp32_conv(const fm_deploy_layer *L, const float *w, const float *x, float *acc, float *col)
{
    const int fan = L->in, positions = L->out_h * L->out_w;
    im2col(L, x, col);
#ifdef FM_HAVE_CBLAS
    if (fmi_blas_enabled()) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, positions, L->out, fan, 1.0f, col, fan,
                    w, fan, 0.0f, acc, L->out);
        return;
    }
#endif
    fmi_sgemm(0, 1, positions, L->out, fan, 1.0f, col, fan, w, fan, 0.0f, acc, L->out);
}

/* z = scale * acc + offset per value of `positions` x L->out values (the
 * channel runs fastest) and the activation; sign gives +-1 floats. One loop
 * per activation, channels inside: the compiler vectorizes them. */
static void finish_values(const fm_deploy_layer *L, const float *acc, float *y, size_t positions)
{
    const size_t channels = (size_t)L->out;
    const float *scale = L->scale, *offset = L->offset;
    for (size_t p = 0; p < positions; p++) {
        const float *a = acc + p * channels;
        float *o = y + p * channels;
        switch (L->act) {
        case FM_ACT_NONE:
            for (size_t j = 0; j < channels; j++)
                o[j] = fmi_deploy_z(a[j], scale[j], offset[j]);
            break;
        case FM_ACT_RELU:
            for (size_t j = 0; j < channels; j++) {
                float z = fmi_deploy_z(a[j], scale[j], offset[j]);
                o[j] = z > 0.0f ? z : 0.0f;
            }
            break;
        case FM_ACT_SIGN:
            for (size_t j = 0; j < channels; j++)
                o[j] = fmi_deploy_z(a[j], scale[j], offset[j]) >= 0.0f ? 1.0f : -1.0f;
            break;
        }
    }
}

/* Max-pool P of a map of c channels (the sums of the convolution before it):
 * the window's first value, replaced by each later one strictly greater, as
 * the trainer's pool chooses. */
static void pool_floats(const fm_deploy_layer *P, const float *x, float *y)
{
    const int c = P->in_c, iw = P->in_w;
    for (int oy = 0; oy < P->out_h; oy++)
        for (int ox = 0; ox < P->out_w; ox++) {
            float *yo = y + ((size_t)oy * P->out_w + (size_t)ox) * (size_t)c;
            const float *first = x + ((size_t)oy * P->stride * iw + (size_t)ox * P->stride) * (size_t)c;
            memcpy(yo, first, (size_t)c * sizeof *yo);
            for (int dy = 0; dy < P->k_h; dy++)
                for (int dx = 0; dx < P->k_w; dx++) {
                    const float *v = first + ((size_t)dy * iw + (size_t)dx) * (size_t)c;
                    for (int ch = 0; ch < c; ch++)
                        yo[ch] = v[ch] > yo[ch] ? v[ch] : yo[ch];
                }
        }
}

/* Max-pool P on the packed output bits of sign convolution L: a window's
 * maximum sum gives +1 where any of its sums does (OR) for a channel whose z
 * grows with the sum, where all do (AND) for one whose z falls with it
 * (`above`, sign_ranges), so this equals pooling the sums first. */
static void pool_bits(const fm_deploy_layer *L, const fm_deploy_layer *P, const uint64_t *in,
                      uint64_t *out)
{
    const int cw = fmi_conv_pixel_words(L->out_c), iw = P->in_w;
    const uint64_t *mask = L->above;
    for (int oy = 0; oy < P->out_h; oy++)
        for (int ox = 0; ox < P->out_w; ox++) {
            uint64_t *o = out + ((size_t)oy * P->out_w + (size_t)ox) * (size_t)cw;
            for (int k = 0; k < cw; k++) {
                uint64_t any = 0, all = ~(uint64_t)0;
                for (int dy = 0; dy < P->k_h; dy++)
                    for (int dx = 0; dx < P->k_w; dx++) {
                        size_t pixel = (size_t)(oy * P->stride + dy) * (size_t)iw +
                                       (size_t)(ox * P->stride + dx);
                        uint64_t v = in[pixel * (size_t)cw + (size_t)k];
                        any |= v;
                        all &= v;
                    }
                o[k] = (any & mask[k]) | (all & ~mask[k]);
            }
        }
}

/* +-1 floats of a packed map of `positions` pixels of c channels. */
static void unpack_map(const uint64_t *map, size_t positions, int c, float *y)
{
    const int cw = fmi_conv_pixel_words(c);
    for (size_t p = 0; p < positions; p++)
        for (int j = 0; j < c; j++)
            y[p * (size_t)c + (size_t)j] =
                (map[p * (size_t)cw + (size_t)(j / 64)] >> (j % 64)) & 1u ? 1.0f : -1.0f;
}

/* Global average pooling: each channel's positions summed in order, then
 * times 1/positions (the trainer's gap). */
static void gap_values(const fm_deploy_layer *G, const float *x, float *y)
{
    const int c = G->in_c, positions = G->in_h * G->in_w;
    const float inv = 1.0f / (float)positions;
    for (int j = 0; j < c; j++)
        y[j] = x[j];
    for (int p = 1; p < positions; p++)
        for (int j = 0; j < c; j++)
            y[j] += x[(size_t)p * c + (size_t)j];
    for (int j = 0; j < c; j++)
        y[j] *= inv;
}

static void swap_maps(uint64_t **a, uint64_t **b)
{
    uint64_t *t = *a;
    *a = *b;
    *b = t;
}

/* What one example's values between records are: floats in x, and where
 * the record before was a sign layer, the same +-1 values packed in
 * s->map_in (fmi_conv_pixel_words words per pixel of `channels`). Binary
 * layers read the bits and leave the floats unmade unless a record needs
 * them. */
typedef struct values {
    float *x;
    int floats, bits;    /* which forms hold the values */
    size_t positions;    /* pixels of the packed map */
    int channels;
} values;

/* The floats of v, made from its bits if they are not there yet. */
static const float *values_floats(values *v, const scratch *s)
{
    if (!v->floats) {
        unpack_map(s->map_in, v->positions, v->channels, v->x);
        v->floats = 1;
    }
    return v->x;
}

/* Convolution L (with the max-pool P after it, or NULL) of one example: its
 * input `in`, its output into y (floats) or, for a sign layer, into
 * s->map_in (bits), as `out` says. */
static void conv_one(const fm_kernels *k, scratch *s, const fm_deploy_layer *L,
                     const fm_deploy_layer *P, values *in, float *y, values *out)
{
    const int sign = L->act == FM_ACT_SIGN && k != NULL;
    /* a sign layer's kernel writes its bits into map_pre (fm_conv_signs) */
    const fm_conv_signs signs = {L->ilo, L->ihi, L->flo, L->fhi, s->map_pre};
    int integer = 0, packed = 0;
    if (!k || L->weights == FM_DW_FP32) {
        fp32_conv(L, float_weights(L), values_floats(in, s), s->acc, s->col);
    } else if (L->binary_input && L->weights == FM_DW_BINARY) {
        if (!in->bits) { /* bits from the floats */
            const size_t pixels = (size_t)L->in_h * (size_t)L->in_w, cw = (size_t)fmi_conv_pixel_words(L->in_c);
            for (size_t p = 0; p < pixels; p++)
                fmi_pack_signs(in->x + p * (size_t)L->in_c, L->in_c, s->map_in + p * cw);
        }
        k->conv_bits(L->conv, s->map_in, s->iacc, sign ? &signs : NULL);
        integer = 1, packed = sign;
    } else {
        k->conv_real(L->conv, values_floats(in, s), s->acc, s->kernel, sign ? &signs : NULL);
        packed = sign;
    }
    const fm_deploy_layer *O = P ? P : L; /* the output map */
    const size_t positions = (size_t)O->out_h * (size_t)O->out_w;
    const size_t sums = (size_t)L->out_h * (size_t)L->out_w;
    out->x = y;
    out->positions = positions;
    out->channels = L->out_c;
    if (sign) {
        if (!packed) /* fp32 weights: the sums' bits */
            k->signs_float(s->acc, sums, L->out_c, L->flo, L->fhi, s->map_pre);
        if (P) {
            pool_bits(L, P, s->map_pre, s->map_out);
            swap_maps(&s->map_in, &s->map_out);
        } else {
            swap_maps(&s->map_in, &s->map_pre);
        }
        out->bits = 1;
        out->floats = 0;
        return;
    }
    if (integer)
        for (size_t i = 0; i < sums * (size_t)L->out_c; i++)
            s->acc[i] = (float)s->iacc[i];
    if (P) {
        pool_floats(P, s->acc, y);
        finish_values(L, y, y, positions);
    } else {
        finish_values(L, s->acc, y, sums);
    }
    out->bits = 0;
    out->floats = 1;
}

/* A dense layer of one example: binary weights on binary inputs read the
 * input's bits (the packed map itself where its pixels' words hold the
 * vector's bits in order: one pixel, or whole words of channels). */
static void dense_one(const fm_kernels *k, scratch *s, const fm_deploy_layer *L, values *in,
                      float *y, values *out)
{
    if (!k || L->weights == FM_DW_FP32) {
        fp32_vector(float_weights(L), values_floats(in, s), s->acc, L->in, L->out);
    } else if (L->binary_input && L->weights == FM_DW_BINARY) {
        const uint64_t *bits = s->map_in;
        if (!in->bits || (in->positions > 1 && in->channels % 64)) {
            fmi_pack_signs(values_floats(in, s), L->in, s->bits);
            bits = s->bits;
        }
        k->bits(L->kernel, bits, s->iacc);
        for (int j = 0; j < L->out; j++)
            s->acc[j] = (float)s->iacc[j];
    } else {
        k->real(L->kernel, values_floats(in, s), s->acc, s->kernel);
    }
    finish_values(L, s->acc, y, 1);
    out->x = y;
    out->floats = 1;
    out->bits = 0;
}

/* One example through every record; the class scores end in `scores`. */
static void forward_one(const fm_deploy *d, scratch *s, float *scores)
{
    const fm_kernels *k = d->kernels;
    values v = {s->x, 1, 0, 1, d->input_dim};
    float *spare = s->y;
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        const fm_deploy_layer *P = l + 1 < d->n_layers && d->layers[l + 1].type == FM_DL_POOL
                                       ? &d->layers[l + 1] : NULL;
        float *dst = l + 1 + (P != NULL) < d->n_layers ? spare : scores;
        values next;
        if (L->type == FM_DL_CONV) {
            conv_one(k, s, L, P, &v, dst, &next);
            l += P != NULL; /* the pool is done */
        } else if (L->type == FM_DL_GAP) {
            gap_values(L, values_floats(&v, s), dst);
            next = (values){dst, 1, 0, 1, L->out_c};
        } else {
            dense_one(k, s, L, &v, dst, &next);
        }
        spare = v.x;
        v = next;
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

/* Floats per buffer of the fp32 path's blocks: a block holds fewer examples
 * where an example's maps are large; and of im2col columns, which take a
 * chunk of a block's examples at a time. */
#define FP32_BLOCK_FLOATS ((size_t)1 << 22)
#define FP32_COL_FLOATS ((size_t)1 << 22)

/* Convolution L of n examples (maps `vin` floats apart) into acc (positions
 * x out_c per example, one after the other): as many examples as the columns
 * hold are copied into them (on the threads, an example each), then one
 * matrix product of (examples x positions) x fan-in by the weights, threaded
 * by rows: the weights are read once per chunk, not once per example. */
static void fp32_conv_block(const fm_deploy_layer *L, const float *w, const float *in, size_t vin, int n,
                            float *acc, float *col, size_t col_cap, int threads)
{
    const size_t fan = (size_t)L->in, positions = (size_t)L->out_h * (size_t)L->out_w;
    const int chunk = (int)FM_MAX((size_t)1, FM_MIN((size_t)n, col_cap / (positions * fan)));
    for (int b0 = 0; b0 < n; b0 += chunk) {
        const int m = FM_MIN(chunk, n - b0);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && m > 1)
        for (int b = 0; b < m; b++)
            im2col(L, in + (size_t)(b0 + b) * vin, col + (size_t)b * positions * fan);
        fp32_block(w, col, acc + (size_t)b0 * positions * (size_t)L->out, m * (int)positions, L->in,
                   L->out, threads);
    }
}

/* The fp32 yardstick: whole blocks of examples through matrix products, each
 * convolution as the trainer computes it (its sums, the pool's maxima, then
 * the batch norm and the activation). */
static int predict_fp32(const fm_deploy *d, const uint8_t *u8, const float *f32, int count,
                        int threads, uint8_t *classes, float *scores)
{
    const int nt = threads_for(threads, count);
    const size_t w = widest(d), cols = col_floats(d, 1);
    const size_t fit = FM_MAX((size_t)1, FP32_BLOCK_FLOATS / w);
    const size_t block = FM_MIN(FM_MIN((size_t)count, (size_t)FP32_BLOCK), fit);
    const size_t col_cap = FM_MIN(block * cols, FM_MAX(cols, FP32_COL_FLOATS));
    float *x = fmi_alloc(block * w, sizeof *x), *y = fmi_alloc(block * w, sizeof *y);
    float *acc = fmi_alloc(block * w, sizeof *acc);
    float *col = cols ? fmi_alloc(col_cap, sizeof *col) : NULL;
    if (!x || !y || !acc || (cols && !col)) {
        fmi_free(x);
        fmi_free(y);
        fmi_free(acc);
        fmi_free(col);
        return FM_ENOMEM;
    }
    for (int b0 = 0; b0 < count; b0 += (int)block) {
        const int n = FM_MIN((int)block, count - b0);
        for (int b = 0; b < n; b++)
            load_input(d, u8, f32, b0 + b, x + (size_t)b * d->input_dim);
        float *in = x, *out = y;
        for (int l = 0; l < d->n_layers; l++) {
            const fm_deploy_layer *L = &d->layers[l];
            const fm_deploy_layer *P = l + 1 < d->n_layers && d->layers[l + 1].type == FM_DL_POOL
                                           ? &d->layers[l + 1] : NULL;
            const size_t vin = (size_t)fmi_deploy_values_in(L);
            if (L->type == FM_DL_DENSE) {
                fp32_block(float_weights(L), in, acc, n, L->in, L->out, nt);
                finish_values(L, acc, out, (size_t)n);
            } else if (L->type == FM_DL_GAP) {
                for (int b = 0; b < n; b++)
                    gap_values(L, in + (size_t)b * vin, out + (size_t)b * (size_t)L->out_c);
            } else { /* a convolution, and its pool */
                const fm_deploy_layer *O = P ? P : L;
                const size_t vout = (size_t)fmi_deploy_values_out(O);
                const size_t sums = (size_t)fmi_deploy_values_out(L);
                fp32_conv_block(L, float_weights(L), in, vin, n, acc, col, col_cap, nt);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && n > 1)
                for (int b = 0; b < n; b++) {
                    float *o = out + (size_t)b * vout;
                    const float *a = acc + (size_t)b * sums;
                    if (P)
                        pool_floats(P, a, o);
                    finish_values(L, P ? o : a, o, vout / (size_t)L->out);
                }
                l += P != NULL;
            }
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
    fmi_free(col);
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
        packed |= fmi_deploy_weighted(&d->layers[l]) && d->layers[l].weights != FM_DW_FP32;
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
