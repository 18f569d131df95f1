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
/* Bytes of one value of the learning state kept per weight: 4, or 2 with
 * bf16 (fm_config.latent). */
uint64_t fmi_latent_bytes(const fm_config *c);

/* The update folded into the backward pass (weighted.c): fmi_update_fuse
 * makes a training workspace of a model with bop, or with fm_config.fuse,
 * take the optimizer's state s1 and s2 (aligned with model->state) and
 * update each dense layer's weights there, a tile of weight-gradient rows
 * at a time (FMI_FUSED_TILE_BYTES, or one row where a row is larger: a
 * first-level cache's worth per thread), as soon as the layer's input
 * gradient is formed; the optimizer step then leaves those layers alone
 * (fmi_update_fused). With fm_config.fuse, each updated tile of a quantized
 * mode's latent weights is quantized there for the next step too, so the
 * latent weights are read and written once a step. Not for a data-parallel
 * run, whose ranks sum the whole dW first. The bits are the unfused run's. */
#define FMI_FUSED_TILE_BYTES 32768
int fmi_update_fuse(const fm_model *m, fm_workspace *ws, float *s1, float *s2);
int fmi_update_fused(const fm_model *m, const fm_workspace *ws, int l);

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
