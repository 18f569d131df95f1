/* optim.h — parameter updates. A parameter group is a run of scalars with its
 * own learning-rate multiplier and clip bound (0: no clip). */
#ifndef FEWMUL_OPTIM_H
#define FEWMUL_OPTIM_H

#include "ledger.h"

#include <stddef.h>

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

/* Bop (bop.c) over n binary weights w (each +H or -H) with momenta m:
 * m = (1-gamma)*m + gamma*g, then w = -w where |m| > threshold and m has
 * w's sign. */
void fmi_bop_step(float *w, const float *g, float *m, size_t n, float gamma, float threshold);

/* Ledger declarations of one step over n parameters. */
void fmi_sgd_cost(const fm_cost *cost, uint64_t n, int momentum, int clipped);
void fmi_adam_cost(const fm_cost *cost, uint64_t n, int clipped);
void fmi_bop_cost(const fm_cost *cost, uint64_t n);

#endif
