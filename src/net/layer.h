/* layer.h — the layer interface. Each layer kind is one file (layer_*.c) that
 * fills one fm_layer_ops table: its ledger shape, its workspace buffers, its
 * initial parameters, its forward passes (training and evaluation) and
 * backward pass, each running its kernels and declaring their operations and
 * bytes to the ledger where the work is, and its export to the deployed form.
 * The passes (net.c) walk the layer list through the table; layer_table.c is
 * the registry, the one place that maps a layer kind to its table. */
#ifndef FEWMUL_LAYER_H
#define FEWMUL_LAYER_H

#include "deploy.h"
#include "ledger.h"
#include "net.h"
#include "rng.h"

#include <stddef.h>
#include <stdint.h>

/* One pass over a batch: the model, the workspace it runs in, the batch's
 * examples, the training step that keys its random draws, and the phase its
 * forward work is recorded in (forward or eval). */
typedef struct fm_pass {
    const fm_model *model;
    fm_workspace *ws;
    int batch;
    uint64_t step;
    fm_phase phase;
} fm_pass;

/* Sizes the workspace shares among layers, grown by each layer's reserve. */
typedef struct fm_workspace_sizes {
    size_t widest_input;  /* weighted layers: the Q(x) scratch's row */
    size_t conv_scratch;  /* im2col columns */
} fm_workspace_sizes;

/* Building a deployed network from a model, layer by layer (export.c). */
typedef struct fm_export_state {
    const fm_model *model;
    fm_export_weights how;
    fm_deploy *deploy;
    int current;          /* the weighted record being completed (its batch norm and
                             activation follow): -1 before the first */
    int count;            /* records filled */
} fm_export_state;

typedef struct fm_layer_ops {
    const char *name;     /* the ledger's names: "dense1", "bn2", ... */
    /* The ledger's shape text of layer L ("784x1024", "8x8x3>16k3>6x6x16"). */
    void (*shape)(const fm_layer *L, char *text, size_t size);
    /* Allocates layer l's own buffers in ws (NULL: none) and grows sizes. */
    int (*reserve)(const fm_model *m, int l, fm_workspace *ws, int training,
                   fm_workspace_sizes *sizes);
    /* Initial parameters at p (NULL: none); draws only from rng. */
    void (*init)(const fm_layer *L, float *p, fm_rng *rng);
    /* Training forward: act[l] -> act[l+1], keeping what backward needs. */
    void (*forward)(const fm_pass *p, int l);
    /* Evaluation forward with the inference parameters. */
    void (*forward_eval)(const fm_pass *p, int l);
    /* Backward: grad[l+1] -> grad[l] (l > 0) and the parameters' gradients. */
    void (*backward)(const fm_pass *p, int l);
    /* Inference statistics refitted from the batch in act[l] before its
     * evaluation forward (the authors' batch-norm recomputation), with
     * stats_floats(L) floats of running sums, zeroed at the start, after
     * `seen` batches (this one included). NULL: none. */
    size_t (*stats_floats)(const fm_layer *L);
    void (*refit)(const fm_pass *p, int l, float *sums, long seen);
    /* Weighted layers: the product (product.h) that runs layer l's training
     * passes (evaluation = 0) or evaluation passes in workspace ws, chosen
     * once when the workspace is made. NULL: no product. */
    const struct fm_product_ops *(*product)(const fm_model *m, const fm_workspace *ws, int l,
                                            int evaluation);
    /* Adds layer L to the deployed network; NULL: the packed format cannot
     * hold this kind (the export is refused before it starts). */
    int (*export)(fm_export_state *e, const fm_layer *L);
} fm_layer_ops;

/* The registry: the table of a layer kind. */
const fm_layer_ops *fmi_layer_ops_of(fm_layer_kind kind);

/* The shape of a layer that keeps its input's shape: its value count. */
void fmi_layer_shape_flat(const fm_layer *L, char *text, size_t size);

/* ---- the ledger's view of a pass (layer_cost.c) ---- */

/* Where layer l's work in a phase is recorded (layer l is ledger index l+1). */
static inline fm_cost fmi_pass_cost(const fm_pass *p, int l, fm_phase phase)
{
    return (fm_cost){p->ws->ledger, l + 1, phase};
}
/* "<layer l>.<what>": a tensor's name in the ledger ("dense2.W"). */
typedef struct fm_tensor_name {
    char text[48];
} fm_tensor_name;
fm_tensor_name fmi_tensor_of(const fm_model *m, int l, const char *what);
/* Bytes of the B x dim activation l (or its gradient) read or written. */
void fmi_bytes_activation(const fm_cost *c, const fm_model *m, int l, int gradient, int B,
                         int written);
/* A whole tensor "<layer l>.<what>" read (written = 0) or written once. */
void fmi_bytes_tensor(const fm_cost *c, const fm_model *m, int l, const char *what, uint64_t bytes,
                     int written);
/* An element-wise layer's bytes: act[l] read and act[l+1] written, or
 * backward the gradient of l+1 read and that of l written. */
void fmi_bytes_elementwise(const fm_cost *c, const fm_model *m, int l, int B, int backward);

#endif
