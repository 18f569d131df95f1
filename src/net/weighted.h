/* weighted.h — what the two weighted layer kinds, dense and convolution,
 * share: the weights a pass uses (the latent fp32 W, a stochastic sample or
 * the deterministic quantization), their ledger declarations, quantized
 * back-prop's Q(x), and the passes around the layer's product (product.h). */
#ifndef FEWMUL_WEIGHTED_H
#define FEWMUL_WEIGHTED_H

#include "layer.h"

/* Bytes of weighted layer l's weights as a pass reads them: latent fp32 W, or
 * the quantized weights packed at the mode's bits per weight. */
uint64_t fmi_layer_weight_bytes(const fm_model *m, int l, int quantized);

/* The table entries' common parts: the weight matrix and the Q(x) row in
 * the workspace, U(-2H, 2H) initial weights, the training forward (weights
 * sampled or quantized, then the product), the evaluation forward. */
int fmi_weighted_reserve(const fm_model *m, int l, fm_workspace *ws, int training,
                        fm_workspace_sizes *sizes);
void fmi_weighted_init(const fm_layer *L, float *p, fm_rng *rng);
void fmi_weighted_forward(const fm_pass *p, int l);
void fmi_weighted_forward_eval(const fm_pass *p, int l);
/* Backward with the error taken at act[e_at]'s gradient for the weight
 * gradient and Q(x) clipped to exponents [emin, emax]. */
void fmi_weighted_backward(const fm_pass *p, int l, int e_at, int emin, int emax);

/* Export: the next deployed record, begun for a weighted layer (its input
 * kind set from the records before it; e->current points at it, for the
 * batch norm and activation that complete it). */
fm_deploy_layer *fmi_export_weighted(fm_export_state *e);
/* Packs weighted layer `dl` of the model (latent weights fan-in x units) into
 * L: its kind, bits, unit, codes (the deterministic weights exactly as
 * training evaluates them) or floats. */
int fmi_export_weights(const fm_model *m, const fm_layer *dl, fm_export_weights how,
                       fm_deploy_layer *L);

#endif
