/* deploy.c — the deployed network's storage: allocation, packed weight codes
 * and the checks every deployed network passes, whether it was read from a file
 * or exported from a trained model. */
#include "deploy.h"
#include "infer.h"
#include "internal.h"
#include "quant.h"

#include <math.h>
#include <string.h>

int fmi_deploy_alloc(int n_layers, fm_deploy **out)
{
    *out = NULL;
    fm_deploy *d = fmi_alloc(1, sizeof *d);
    if (!d)
        return FM_ENOMEM;
    d->layers = fmi_alloc((size_t)(n_layers > 0 ? n_layers : 1), sizeof *d->layers);
    if (!d->layers) {
        fmi_free(d);
        return FM_ENOMEM;
    }
    d->n_layers = n_layers;
    d->input_scale = 1.0f / 255.0f;
    *out = d;
    return FM_OK;
}

int fmi_deploy_layer_alloc(fm_deploy_layer *L)
{
    if (!fmi_deploy_weighted(L))
        return FM_OK;
    L->row_bytes = ((size_t)L->in * (size_t)L->bits + 7) / 8;
    L->packed = fmi_alloc((size_t)L->out, L->row_bytes);
    L->scale = fmi_alloc((size_t)L->out, sizeof *L->scale);
    L->offset = fmi_alloc((size_t)L->out, sizeof *L->offset);
    if (L->levels > 0)
        L->magnitudes = fmi_alloc((size_t)L->levels, sizeof *L->magnitudes);
    if (!L->packed || !L->scale || !L->offset || (L->levels > 0 && !L->magnitudes))
        return FM_ENOMEM;
    return FM_OK;
}

void fm_deploy_free(fm_deploy *d)
{
    if (!d)
        return;
    for (int l = 0; l < d->n_layers; l++) {
        fm_deploy_layer *L = &d->layers[l];
        fmi_free(L->packed);
        fmi_free(L->scale);
        fmi_free(L->offset);
        fmi_free(L->magnitudes);
        fmi_free(L->unpacked);
        fmi_kernel_weights_free(L->kernel);
        fmi_conv_weights_free(L->conv);
        fmi_free(L->ilo);
        fmi_free(L->ihi);
        fmi_free(L->flo);
        fmi_free(L->fhi);
        fmi_free(L->above);
    }
    fmi_free(d->layers);
    fmi_free(d->input_mean);
    fmi_free(d);
}

uint32_t fmi_deploy_code(const fm_deploy_layer *L, int j, int i)
{
    const uint8_t *row = L->packed + (size_t)j * L->row_bytes;
    size_t bit = (size_t)i * (size_t)L->bits;
    uint32_t code = 0;
    for (int b = 0; b < L->bits; b++, bit++)
        code |= (uint32_t)((row[bit / 8] >> (bit % 8)) & 1u) << b;
    return code;
}

void fmi_deploy_set_code(fm_deploy_layer *L, int j, int i, uint32_t code)
{
    uint8_t *row = L->packed + (size_t)j * L->row_bytes;
    size_t bit = (size_t)i * (size_t)L->bits;
    for (int b = 0; b < L->bits; b++, bit++) {
        uint8_t mask = (uint8_t)(1u << (bit % 8));
        row[bit / 8] = (uint8_t)((code >> b) & 1u ? row[bit / 8] | mask : row[bit / 8] & ~mask);
    }
}

float fmi_deploy_code_value(const fm_deploy_layer *L, uint32_t code)
{
    switch (L->weights) {
    case FM_DW_BINARY:
        return code & 1u ? 1.0f : -1.0f;
    case FM_DW_TERNARY:
        return code == 1u ? 1.0f : code == 3u ? -1.0f : 0.0f;
    case FM_DW_SYNAPSE: {
        uint32_t sign = code >> (L->bits - 1), index = code & ((1u << (L->bits - 1)) - 1u);
        float m = index < (uint32_t)L->levels ? L->magnitudes[index] : 0.0f;
        return sign ? -m : m;
    }
    case FM_DW_FP32:
    default:
        return 0.0f;
    }
}

/* h x w x c, or -1 when a size is below 1, or INT64_MAX when the product
 * passes 2^54 (a file's fields are any 32-bit values: never overflow). */
static int64_t map_values(int32_t h, int32_t w, int32_t c)
{
    if (h < 1 || w < 1 || c < 1)
        return -1;
    int64_t hw = (int64_t)h * w; /* < 2^62 */
    if (hw > ((int64_t)1 << 30) || c > (1 << 24))
        return INT64_MAX;
    return hw * c;
}

int64_t fmi_deploy_values_in(const fm_deploy_layer *L)
{
    if (L->type == FM_DL_DENSE)
        return L->in;
    return map_values(L->in_h, L->in_w, L->in_c);
}

int64_t fmi_deploy_values_out(const fm_deploy_layer *L)
{
    if (L->type == FM_DL_DENSE)
        return L->out;
    return map_values(L->out_h, L->out_w, L->out_c);
}

/* What flows between records while they are checked: the values, the map
 * they form (h = 0: a flat vector), whether they are +-1, the record before. */
typedef struct flow {
    int64_t values;
    int32_t h, w, c;
    int sign;
    int prev_type; /* -1: the input */
} flow;

#define MAP_MAX (1 << 24)

/* A map dimension or count in 1 .. 2^24. */
static int in_range(int64_t v) { return v >= 1 && v <= MAP_MAX; }

/* The geometry of a convolution, pool or gap record against its input map. */
static int check_map(const fm_deploy_layer *L, int l, const flow *f, const char *origin)
{
    static const char *const names[] = {"dense", "convolution", "max-pool", "average pool"};
    const char *name = names[L->type];
    if (!in_range(L->in_h) || !in_range(L->in_w) || !in_range(L->in_c) ||
        !in_range(fmi_deploy_values_in(L)))
        return fmi_error(FM_EFORMAT, "%s: layer %d (%s) has input map %d x %d x %d", origin, l + 1,
                        name, L->in_h, L->in_w, L->in_c);
    if (f->h == 0 || L->in_h != f->h || L->in_w != f->w || L->in_c != f->c)
        return fmi_error(FM_EFORMAT, "%s: layer %d (%s) takes a %d x %d x %d map but receives %s",
                        origin, l + 1, name, L->in_h, L->in_w, L->in_c,
                        f->h ? "another map" : "no map (a flat vector)");
    if (L->type == FM_DL_CONV) {
        if (L->k_h < 1 || L->k_w < 1 || L->k_h > 256 || L->k_w > 256 || L->stride < 1 ||
            L->stride > 256 || L->pad_top < 0 || L->pad_left < 0 || L->pad_top >= L->k_h ||
            L->pad_left >= L->k_w)
            return fmi_error(FM_EFORMAT,
                            "%s: layer %d (convolution) has kernel %d x %d, stride %d, padding %d, "
                            "%d (kernel and stride 1 .. 256, padding below the kernel)",
                            origin, l + 1, L->k_h, L->k_w, L->stride, L->pad_top, L->pad_left);
        /* every window starts inside the input (the last one before its end) */
        if (!in_range(L->out_h) || !in_range(L->out_w) || L->out_c != L->out ||
            (int64_t)(L->out_h - 1) * L->stride - L->pad_top >= L->in_h ||
            (int64_t)(L->out_w - 1) * L->stride - L->pad_left >= L->in_w ||
            !in_range(fmi_deploy_values_out(L)))
            return fmi_error(FM_EFORMAT,
                            "%s: layer %d (convolution) output %d x %d x %d does not fit its input "
                            "%d x %d, kernel, stride and padding",
                            origin, l + 1, L->out_h, L->out_w, L->out_c, L->in_h, L->in_w);
        if ((int64_t)L->out_h * L->out_w * L->in > ((int64_t)1 << 28))
            return fmi_error(FM_EFORMAT, "%s: layer %d (convolution) reads %lld window values per "
                            "example (at most 2^28)", origin, l + 1,
                            (long long)L->out_h * L->out_w * L->in);
        if ((int64_t)L->k_h * L->k_w * L->in_c != L->in)
            return fmi_error(FM_EFORMAT, "%s: layer %d (convolution) has %d weights per output, its "
                            "%d x %d kernel on %d channels needs %lld", origin, l + 1, L->in,
                            L->k_h, L->k_w, L->in_c, (long long)L->k_h * L->k_w * L->in_c);
        return FM_OK;
    }
    if (L->type == FM_DL_POOL) {
        if (f->prev_type != FM_DL_CONV)
            return fmi_error(FM_EFORMAT, "%s: layer %d (max-pool) does not follow a convolution",
                            origin, l + 1);
        if (L->k_h < 1 || L->k_h != L->k_w || L->stride < 1 || L->k_h > L->in_h ||
            L->k_w > L->in_w || L->stride > 256)
            return fmi_error(FM_EFORMAT, "%s: layer %d (max-pool) has window %d x %d, stride %d on "
                            "a %d x %d map", origin, l + 1, L->k_h, L->k_w, L->stride, L->in_h,
                            L->in_w);
        if (L->out_h != (L->in_h - L->k_h) / L->stride + 1 ||
            L->out_w != (L->in_w - L->k_w) / L->stride + 1 || L->out_c != L->in_c)
            return fmi_error(FM_EFORMAT, "%s: layer %d (max-pool) output %d x %d x %d", origin,
                            l + 1, L->out_h, L->out_w, L->out_c);
        return FM_OK;
    }
    /* gap */
    if (f->prev_type != FM_DL_CONV && f->prev_type != FM_DL_POOL)
        return fmi_error(FM_EFORMAT, "%s: layer %d (average pool) does not follow a convolution "
                        "or a max-pool", origin, l + 1);
    if (L->out_h != 1 || L->out_w != 1 || L->out_c != L->in_c)
        return fmi_error(FM_EFORMAT, "%s: layer %d (average pool) output %d x %d x %d", origin, l + 1,
                        L->out_h, L->out_w, L->out_c);
    return FM_OK;
}

/* Pool and gap records carry nothing else: no weights, batch norm or
 * activation of their own. */
static int check_plain(const fm_deploy_layer *L, int l, const char *origin)
{
    if (L->bits || L->levels || L->act != FM_ACT_NONE || L->binary_input || L->packed ||
        L->weights != FM_DW_FP32)
        return fmi_error(FM_EFORMAT, "%s: layer %d (a pool) declares weights or an activation",
                        origin, l + 1);
    return FM_OK;
}

static int check_layer(const fm_deploy_layer *L, int l, const flow *f, const char *origin)
{
    if (L->in < 1 || L->out < 1 || L->in > (1 << 24) || L->out > (1 << 24))
        return fmi_error(FM_EFORMAT, "%s: layer %d has shape %d x %d", origin, l + 1, L->in, L->out);
    if (L->type == FM_DL_DENSE && L->in != f->values)
        return fmi_error(FM_EFORMAT, "%s: layer %d takes %d inputs but receives %lld", origin, l + 1,
                        L->in, (long long)f->values);
    if (L->binary_input != f->sign)
        return fmi_error(FM_EFORMAT, "%s: layer %d input kind does not match layer %d's activation",
                        origin, l + 1, l);
    int want_bits;
    switch (L->weights) {
    case FM_DW_FP32: want_bits = 32; break;
    case FM_DW_BINARY: want_bits = 1; break;
    case FM_DW_TERNARY: want_bits = 2; break;
    case FM_DW_SYNAPSE:
        if (L->levels < 2 || L->levels > 32)
            return fmi_error(FM_EFORMAT, "%s: layer %d has %d synapse levels (2 .. 32)", origin,
                            l + 1, L->levels);
        want_bits = (int)fmi_weight_bits(FM_WEIGHTS_SYNAPSE, L->levels); /* sign + index */
        break;
    default:
        return fmi_error(FM_EFORMAT, "%s: layer %d has unknown weight kind %d", origin, l + 1,
                        (int)L->weights);
    }
    if (L->bits != want_bits)
        return fmi_error(FM_EFORMAT, "%s: layer %d stores %d bits per weight (expected %d)", origin,
                        l + 1, L->bits, want_bits);
    if (L->weights != FM_DW_SYNAPSE && L->levels != 0)
        return fmi_error(FM_EFORMAT, "%s: layer %d is not synapse but declares levels", origin, l + 1);
    if ((unsigned)L->act > FM_ACT_SIGN)
        return fmi_error(FM_EFORMAT, "%s: layer %d has unknown activation %d", origin, l + 1,
                        (int)L->act);
    if (!(isfinite(L->unit) && L->unit > 0.0f))
        return fmi_error(FM_EFORMAT, "%s: layer %d has weight unit %g", origin, l + 1, (double)L->unit);
    for (int k = 0; k < L->levels; k++)
        if (!(isfinite(L->magnitudes[k]) && L->magnitudes[k] > 0.0f) ||
            (k > 0 && !(L->magnitudes[k] > L->magnitudes[k - 1])))
            return fmi_error(FM_EFORMAT, "%s: layer %d synapse magnitudes are not positive and ascending",
                            origin, l + 1);
    for (int j = 0; j < L->out; j++)
        if (!isfinite(L->scale[j]) || !isfinite(L->offset[j]))
            return fmi_error(FM_EFORMAT, "%s: layer %d output %d has a non-finite scale or offset",
                            origin, l + 1, j);
    if (L->weights == FM_DW_TERNARY || L->weights == FM_DW_SYNAPSE) {
        const uint32_t index_mask = L->weights == FM_DW_SYNAPSE ? (1u << (L->bits - 1)) - 1u : 0;
        for (int j = 0; j < L->out; j++)
            for (int i = 0; i < L->in; i++) {
                uint32_t code = fmi_deploy_code(L, j, i);
                if (L->weights == FM_DW_TERNARY ? code == 2u : (code & index_mask) >= (uint32_t)L->levels)
                    return fmi_error(FM_EFORMAT, "%s: layer %d weight (%d, %d) has invalid code %u",
                                    origin, l + 1, i, j, code);
            }
    }
    if (L->weights == FM_DW_FP32)
        for (int j = 0; j < L->out; j++)
            for (int i = 0; i < L->in; i++) {
                float w;
                memcpy(&w, L->packed + (size_t)j * L->row_bytes + 4 * (size_t)i, 4);
                if (!isfinite(w))
                    return fmi_error(FM_EFORMAT, "%s: layer %d weight (%d, %d) is not finite", origin,
                                    l + 1, i, j);
            }
    return FM_OK;
}

int fmi_deploy_validate(const fm_deploy *d, const char *origin)
{
    if (d->input_dim < 1 || d->input_dim > (1 << 24) || d->height < 1 || d->width < 1 ||
        d->channels < 1 || (int64_t)d->height * d->width * d->channels != d->input_dim)
        return fmi_error(FM_EFORMAT, "%s: bad input shape %d x %d x %d (%d values)", origin, d->height,
                        d->width, d->channels, d->input_dim);
    if (d->classes < 2 || d->classes > 256)
        return fmi_error(FM_EFORMAT, "%s: %d classes (2 .. 256)", origin, d->classes);
    if (d->n_layers < 1 || d->n_layers > 64)
        return fmi_error(FM_EFORMAT, "%s: %d layers (1 .. 64)", origin, d->n_layers);
    if (!(isfinite(d->input_scale) && d->input_scale > 0.0f))
        return fmi_error(FM_EFORMAT, "%s: input scale %g", origin, (double)d->input_scale);
    for (int i = 0; i < d->input_dim; i++)
        if (!isfinite(d->input_mean[i]))
            return fmi_error(FM_EFORMAT, "%s: input mean %d is not finite", origin, i);
    flow f = {d->input_dim, d->height, d->width, d->channels, 0, -1};
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        const int last = l == d->n_layers - 1;
        if ((unsigned)L->type > FM_DL_GAP)
            return fmi_error(FM_EFORMAT, "%s: layer %d has unknown type %d", origin, l + 1,
                            (int)L->type);
        int rc = L->type == FM_DL_DENSE ? FM_OK : check_map(L, l, &f, origin);
        if (rc == FM_OK)
            rc = fmi_deploy_weighted(L) ? check_layer(L, l, &f, origin) : check_plain(L, l, origin);
        if (rc < 0)
            return rc;
        if (fmi_deploy_weighted(L) && last != (L->act == FM_ACT_NONE))
            return fmi_error(FM_EFORMAT, "%s: %s", origin,
                            last ? "the last layer must give class scores (activation none)"
                                 : "only the last layer may have no activation");
        if (last && L->type != FM_DL_DENSE)
            return fmi_error(FM_EFORMAT, "%s: the last layer must be dense (class scores)", origin);
        f.values = fmi_deploy_values_out(L);
        if (L->type == FM_DL_DENSE) {
            f.h = f.w = f.c = 0;
        } else {
            f.h = L->out_h;
            f.w = L->out_w;
            f.c = L->out_c;
        }
        if (fmi_deploy_weighted(L))
            f.sign = L->act == FM_ACT_SIGN;
        else if (L->type == FM_DL_GAP)
            f.sign = 0; /* channel means are real */
        f.prev_type = (int)L->type;
    }
    int64_t prev_out = f.values;
    if (prev_out != d->classes)
        return fmi_error(FM_EFORMAT, "%s: the last layer gives %lld outputs for %d classes", origin,
                        (long long)prev_out, d->classes);
    return FM_OK;
}
