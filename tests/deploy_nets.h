/* deploy_nets.h — deployed networks built by hand for the tests
 * (test_deploy_file.c, test_export_c.c): dense chains of any weight kind and
 * activation (make_net), and networks of convolutions and pools built
 * record by record (start_net, add_conv, add_pool, add_dense), every value
 * pseudo-random from a seed. Include after
 * cmocka.h, deploy.h and internal.h. */
#ifndef FEWMUL_TEST_DEPLOY_NETS_H
#define FEWMUL_TEST_DEPLOY_NETS_H

#include <string.h>

static uint32_t rng_state;
static uint32_t next_random(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

/* One layer of a hand-built network. */
typedef struct layer_spec {
    int out;
    fm_deploy_weights kind;
    int levels; /* synapse only */
    fm_deploy_act act;
} layer_spec;

static int synapse_bits_of(int levels)
{
    int bits = 1;
    while ((1 << (bits - 1)) < levels)
        bits++;
    return bits;
}

static void fill_layer(fm_deploy_layer *L)
{
    for (int k = 0; k < L->levels; k++)
        L->magnitudes[k] = 0.01f * (float)(k + 1) * (float)(k + 1);
    for (int j = 0; j < L->out; j++) {
        L->scale[j] = 0.5f + 0.01f * (float)(next_random() % 100);
        L->offset[j] = -0.25f + 0.003f * (float)(next_random() % 100);
        for (int i = 0; i < L->in; i++) {
            uint32_t r = next_random();
            switch (L->weights) {
            case FM_DW_FP32: {
                float w = ((float)(r % 2001) - 1000.0f) / 1024.0f;
                memcpy(L->packed + (size_t)j * L->row_bytes + 4 * (size_t)i, &w, 4);
                break;
            }
            case FM_DW_BINARY:
                fmi_deploy_set_code(L, j, i, r & 1u);
                break;
            case FM_DW_TERNARY: {
                static const uint32_t codes[3] = {0, 1, 3};
                fmi_deploy_set_code(L, j, i, codes[r % 3]);
                break;
            }
            case FM_DW_SYNAPSE: {
                uint32_t sign = (r >> 10) & 1u, index = r % (uint32_t)L->levels;
                fmi_deploy_set_code(L, j, i, sign << (L->bits - 1) | index);
                break;
            }
            }
        }
    }
}

/* A network of input h x w x c and the given layers; each layer after a sign
 * layer takes binary input. Values are pseudo-random from `seed`. */
static fm_deploy *make_net(int h, int w, int c, const layer_spec *specs, int n, uint32_t seed)
{
    rng_state = seed;
    fm_deploy *d;
    assert_int_equal(fmi_deploy_alloc(n, &d), FM_OK);
    d->height = h;
    d->width = w;
    d->channels = c;
    d->input_dim = h * w * c;
    d->classes = specs[n - 1].out;
    d->input_scale = 1.0f / 255.0f;
    d->source_mode = FM_WEIGHTS_BC_DET;
    d->export_how = FM_EXPORT_DET;
    d->input_mean = fmi_alloc((size_t)d->input_dim, sizeof *d->input_mean);
    assert_non_null(d->input_mean);
    for (int i = 0; i < d->input_dim; i++)
        d->input_mean[i] = 0.001f * (float)(next_random() % 500);
    int in = d->input_dim, binary_input = 0;
    for (int l = 0; l < n; l++) {
        fm_deploy_layer *L = &d->layers[l];
        L->in = in;
        L->out = specs[l].out;
        L->weights = specs[l].kind;
        L->levels = specs[l].kind == FM_DW_SYNAPSE ? specs[l].levels : 0;
        L->bits = specs[l].kind == FM_DW_FP32      ? 32
                  : specs[l].kind == FM_DW_BINARY  ? 1
                  : specs[l].kind == FM_DW_TERNARY ? 2
                                                   : synapse_bits_of(L->levels);
        L->unit = specs[l].kind == FM_DW_BINARY || specs[l].kind == FM_DW_TERNARY ? 0.0625f : 1.0f;
        L->act = specs[l].act;
        L->binary_input = binary_input;
        assert_int_equal(fmi_deploy_layer_alloc(L), FM_OK);
        fill_layer(L);
        in = L->out;
        binary_input = L->act == FM_ACT_SIGN;
    }
    assert_int_equal(fmi_deploy_validate(d, "make_net"), FM_OK);
    return d;
}

/* A network of `records` records on an h x w x c input, its input mean
 * pseudo-random from `seed`, the records to be added (add_conv, add_pool). */
static fm_deploy *start_net(int h, int w, int c, int records, int classes, uint32_t seed)
{
    rng_state = seed;
    fm_deploy *d;
    assert_int_equal(fmi_deploy_alloc(records, &d), FM_OK);
    d->height = h, d->width = w, d->channels = c;
    d->input_dim = h * w * c;
    d->classes = classes;
    d->source_mode = FM_WEIGHTS_BC_DET;
    d->export_how = FM_EXPORT_DET;
    d->input_mean = fmi_alloc((size_t)d->input_dim, sizeof *d->input_mean);
    assert_non_null(d->input_mean);
    for (int i = 0; i < d->input_dim; i++)
        d->input_mean[i] = 0.002f * (float)(next_random() % 300);
    return d;
}

/* Record k of a network under construction: a convolution of `out_c` filters
 * k_h x k_w on the current map, weights of `kind`. */
static fm_deploy_layer *add_conv(fm_deploy *d, int k, int *h, int *w, int *c, int out_c, int k_h,
                                 int k_w, int stride, int pad_top, int pad_left, int out_h,
                                 int out_w, fm_deploy_weights kind, int levels, fm_deploy_act act,
                                 int binary_input)
{
    fm_deploy_layer *L = &d->layers[k];
    L->type = FM_DL_CONV;
    L->in_h = *h, L->in_w = *w, L->in_c = *c;
    L->k_h = k_h, L->k_w = k_w, L->stride = stride, L->pad_top = pad_top, L->pad_left = pad_left;
    L->out_h = out_h, L->out_w = out_w, L->out_c = out_c;
    L->in = k_h * k_w * *c;
    L->out = out_c;
    L->weights = kind;
    L->levels = kind == FM_DW_SYNAPSE ? levels : 0;
    L->bits = kind == FM_DW_FP32 ? 32 : kind == FM_DW_BINARY ? 1 : kind == FM_DW_TERNARY ? 2
                                                                 : synapse_bits_of(levels);
    L->unit = kind == FM_DW_BINARY || kind == FM_DW_TERNARY ? 0.125f : 1.0f;
    L->act = act;
    L->binary_input = binary_input;
    assert_int_equal(fmi_deploy_layer_alloc(L), FM_OK);
    fill_layer(L);
    *h = out_h, *w = out_w, *c = out_c;
    return L;
}

/* A max-pool (size, stride) or, size 0, a global average pool of the map. */
static void add_pool(fm_deploy *d, int k, int *h, int *w, int c, int size, int stride)
{
    fm_deploy_layer *L = &d->layers[k];
    L->type = size ? FM_DL_POOL : FM_DL_GAP;
    L->weights = FM_DW_FP32;
    L->in_h = *h, L->in_w = *w, L->in_c = L->out_c = c;
    L->k_h = L->k_w = size;
    L->stride = stride;
    L->out_h = size ? (*h - size) / stride + 1 : 1;
    L->out_w = size ? (*w - size) / stride + 1 : 1;
    L->in = *h * *w * c;
    L->out = L->out_h * L->out_w * c;
    *h = L->out_h, *w = L->out_w;
}

/* Record k: a dense layer on the flattened map (or vector) of `in` values. */
static inline void add_dense(fm_deploy *d, int k, int in, int out, fm_deploy_weights kind, int levels,
                      fm_deploy_act act, int binary_input)
{
    fm_deploy_layer *L = &d->layers[k];
    L->type = FM_DL_DENSE;
    L->in = in;
    L->out = out;
    L->weights = kind;
    L->levels = kind == FM_DW_SYNAPSE ? levels : 0;
    L->bits = kind == FM_DW_FP32 ? 32 : kind == FM_DW_BINARY ? 1 : kind == FM_DW_TERNARY ? 2
                                                                 : synapse_bits_of(levels);
    L->unit = 1.0f;
    L->act = act;
    L->binary_input = binary_input;
    assert_int_equal(fmi_deploy_layer_alloc(L), FM_OK);
    fill_layer(L);
}

#endif
