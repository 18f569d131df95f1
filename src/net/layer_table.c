/* layer_table.c — the registry of layer kinds: the one place that maps an
 * fm_layer_kind to the table its file fills (layer.h). A new kind adds its
 * enum value (net.h), its file and one line here. */
#include "layer.h"

extern const fm_layer_ops fmi_layer_dense, fmi_layer_bn, fmi_layer_relu, fmi_layer_dropout,
    fmi_layer_sign, fmi_layer_conv, fmi_layer_pool, fmi_layer_gap;

static const fm_layer_ops *const registry[] = {
    [FM_LAYER_DENSE] = &fmi_layer_dense,     [FM_LAYER_BN] = &fmi_layer_bn,
    [FM_LAYER_RELU] = &fmi_layer_relu,       [FM_LAYER_DROPOUT] = &fmi_layer_dropout,
    [FM_LAYER_SIGN] = &fmi_layer_sign,       [FM_LAYER_CONV] = &fmi_layer_conv,
    [FM_LAYER_POOL] = &fmi_layer_pool,       [FM_LAYER_GAP] = &fmi_layer_gap,
};

const fm_layer_ops *fmi_layer_ops_of(fm_layer_kind kind) { return registry[kind]; }
