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

static int check_layer(const fm_deploy_layer *L, int l, int prev_out, int prev_sign,
                       const char *origin)
{
    if (L->in < 1 || L->out < 1 || L->in > (1 << 24) || L->out > (1 << 24))
        return fmi_error(FM_EFORMAT, "%s: layer %d has shape %d x %d", origin, l + 1, L->in, L->out);
    if (L->in != prev_out)
        return fmi_error(FM_EFORMAT, "%s: layer %d takes %d inputs but receives %d", origin, l + 1,
                        L->in, prev_out);
    if (L->binary_input != prev_sign)
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
    int prev_out = d->input_dim, prev_sign = 0;
    for (int l = 0; l < d->n_layers; l++) {
        const fm_deploy_layer *L = &d->layers[l];
        int rc = check_layer(L, l, prev_out, prev_sign, origin);
        if (rc < 0)
            return rc;
        int last = l == d->n_layers - 1;
        if (last != (L->act == FM_ACT_NONE))
            return fmi_error(FM_EFORMAT, "%s: %s", origin,
                            last ? "the last layer must give class scores (activation none)"
                                 : "only the last layer may have no activation");
        prev_out = L->out;
        prev_sign = L->act == FM_ACT_SIGN;
    }
    if (prev_out != d->classes)
        return fmi_error(FM_EFORMAT, "%s: the last layer gives %d outputs for %d classes", origin,
                        prev_out, d->classes);
    return FM_OK;
}
