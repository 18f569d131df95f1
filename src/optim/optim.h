/* optim.h — parameter updates. A parameter group is a run of scalars with its
 * own learning-rate multiplier and clip bound (0: no clip). */
#ifndef FEWMUL_OPTIM_H
#define FEWMUL_OPTIM_H

#include "ledger.h"

#include <stddef.h>
#include <stdint.h>

typedef struct fm_param_group {
    size_t offset, count; /* into the model's state and gradient arrays */
    float lr_scale;       /* multiplies the rate for this group */
    float clip;           /* > 0: clip to [-clip, clip] after the step (binary/ternary W) */
    int layer;            /* the model layer the parameters belong to */
} fm_param_group;

/* SGD with momentum, the authors' rule: v = m*v - lr*g; p = clip(p + v). */
void fmi_sgd_step(float *p, const float *g, float *v, size_t n, float lr, float momentum, float clip);

/* Adam (Kingma & Ba) with bias correction; t is the 1-based step count.
 * p = clip(p - lr * mhat/(sqrt(vhat)+eps)). */
void fmi_adam_step(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                  float beta2, float eps, long t, float clip);

/* Stochastic rounding to bfloat16 (latent.c, fm_config.latent): draw i of
 * stream `key` goes to the value at `first` + i of the stream, so a value's
 * rounding depends on its place in the model, never on the thread count. */
typedef struct fm_latent_round {
    uint64_t key, first;
} fm_latent_round;

/* v rounded to its top 16 bits, up with probability (the bits dropped) / 2^16,
 * from a 32-bit draw. */
float fmi_round_bf16(float v, uint32_t draw);
/* p[i] = fmi_round_bf16(p[i], draw first + i of round->key), i < n. */
void fmi_round_bf16_all(float *p, size_t n, const fm_latent_round *round);
void fmi_round_bf16_cost(const fm_cost *cost, uint64_t n);

/* Bop (bop.c) over n binary weights w (each +H or -H) with momenta m:
 * m = (1-gamma)*m + gamma*g, rounded to bf16 when `round` is given (else
 * kept in fp32), then w = -w where |m| > threshold and m has w's sign. */
void fmi_bop_step(float *w, const float *g, float *m, size_t n, float gamma, float threshold,
                  const fm_latent_round *round);

/* Ledger declarations of one step over n parameters. */
void fmi_sgd_cost(const fm_cost *cost, uint64_t n, int momentum, int clipped);
void fmi_adam_cost(const fm_cost *cost, uint64_t n, int clipped);
void fmi_bop_cost(const fm_cost *cost, uint64_t n, int bf16);

#endif
