/* layer_table.c — the registry of layer kinds: the one place that maps an
 * fm_layer_kind to the table its file fills (layer.h). A new kind adds its
 * enum value (net.h), its file and one line here. */
#include "layer.h"

extern const fm_layer_ops fm_layer_dense, fm_layer_bn, fm_layer_relu, fm_layer_dropout,
    fm_layer_sign, fm_layer_conv, fm_layer_pool, fm_layer_gap;

static const fm_layer_ops *const registry[] = {
    [FM_LAYER_DENSE] = &fm_layer_dense,     [FM_LAYER_BN] = &fm_layer_bn,
    [FM_LAYER_RELU] = &fm_layer_relu,       [FM_LAYER_DROPOUT] = &fm_layer_dropout,
    [FM_LAYER_SIGN] = &fm_layer_sign,       [FM_LAYER_CONV] = &fm_layer_conv,
    [FM_LAYER_POOL] = &fm_layer_pool,       [FM_LAYER_GAP] = &fm_layer_gap,
};

const fm_layer_ops *fm_layer_ops_of(fm_layer_kind kind) { return registry[kind]; }
