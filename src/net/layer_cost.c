/* layer_cost.c — the ledger's names for a model's layers and tensors, and the
 * byte declarations the layers make for the activations they read and write
 * (docs/ledger.md). Layer l is ledger index l + 1; index 0 is the input and
 * the last the loss. */
#include "layer.h"

#include <stdio.h>

/* "dense2", "bn2", "relu1", "conv3": the kind's name and its 1-based count. */
static void layer_name(const fm_model *m, int l, char *name, size_t size)
{
    int k = 1;
    for (int i = 0; i < l; i++)
        k += m->layers[i].kind == m->layers[l].kind;
    snprintf(name, size, "%s%d", fmi_layer_ops_of(m->layers[l].kind)->name, k);
}

void fmi_layer_shape_flat(const fm_layer *L, char *text, size_t size)
{
    snprintf(text, size, "%d", L->out);
}

void fmi_ledger_declare_layers(const fm_model *m, fm_ledger *ledger)
{
    if (!ledger)
        return;
    char name[32], shape[48];
    snprintf(shape, sizeof shape, "%d", m->input_dim);
    fmi_ledger_layer(ledger, 0, "input", shape);
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        layer_name(m, l, name, sizeof name);
        fmi_layer_ops_of(L->kind)->shape(L, shape, sizeof shape);
        fmi_ledger_layer(ledger, l + 1, name, shape);
    }
    snprintf(shape, sizeof shape, "%d", m->classes);
    fmi_ledger_layer(ledger, fmi_ledger_loss_index(m), "loss", shape);
}

fm_tensor_name fmi_tensor_of(const fm_model *m, int l, const char *what)
{
    fm_tensor_name t;
    char name[32];
    layer_name(m, l, name, sizeof name);
    snprintf(t.text, sizeof t.text, "%s.%s", name, what);
    return t;
}

/* Activation l is "input.x" or "<layer l-1>.y", its gradient "<layer l-1>.dy". */
static fm_tensor_name activation(const fm_model *m, int l, int gradient)
{
    if (l == 0) {
        fm_tensor_name t = {"input.x"};
        return t;
    }
    return fmi_tensor_of(m, l - 1, gradient ? "dy" : "y");
}

void fmi_bytes_activation(const fm_cost *c, const fm_model *m, int l, int gradient, int B,
                         int written)
{
    if (!c->ledger)
        return;
    int dim = l == 0 ? m->input_dim : m->layers[l - 1].out;
    uint64_t bytes = 4 * (uint64_t)B * dim;
    fmi_cost_bytes(c, activation(m, l, gradient).text, bytes, written ? 0 : bytes,
                  written ? bytes : 0);
}

void fmi_bytes_tensor(const fm_cost *c, const fm_model *m, int l, const char *what, uint64_t bytes,
                     int written)
{
    if (!c->ledger)
        return;
    fmi_cost_bytes(c, fmi_tensor_of(m, l, what).text, bytes, written ? 0 : bytes, written ? bytes : 0);
}

void fmi_bytes_elementwise(const fm_cost *c, const fm_model *m, int l, int B, int backward)
{
    if (backward) {
        fmi_bytes_activation(c, m, l + 1, 1, B, 0);
        fmi_bytes_activation(c, m, l, 1, B, 1);
    } else {
        fmi_bytes_activation(c, m, l, 0, B, 0);
        fmi_bytes_activation(c, m, l + 1, 0, B, 1);
    }
}
