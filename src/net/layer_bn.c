/* layer_bn.c — batch norm per feature (a dense layer's outputs, or a map's
 * channels over its positions): training normalises with the batch's
 * statistics (over every rank's rows in a data-parallel run) and keeps
 * running averages when asked; evaluation uses the inference statistics,
 * which the authors recompute after each epoch (refit); the export folds
 * everything into the deployed layer's scale and offset. State: gamma, beta,
 * mean, var, `channels` floats each. */
#include "dist.h"
#include "internal.h"
#include "layer.h"
#include "layers.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Rows batch norm normalises over: B examples times the positions of a map. */
static int bn_rows(const fm_layer *L, int B) { return B * (L->out / L->channels); }

/* Batch-norm state tensors: gamma and beta ("params"), inference mean and
 * variance ("stats"), the batch mean and 1/std of the last pass ("batch"). */
static void bn_bytes(const fm_cost *c, const fm_model *m, int l, const char *what, int written)
{
    fmi_bytes_tensor(c, m, l, what, 8 * (uint64_t)m->layers[l].channels, written);
}

static int bn_reserve(const fm_model *m, int l, fm_workspace *ws, int training,
                      fm_workspace_sizes *sizes)
{
    (void)training, (void)sizes;
    const size_t C = (size_t)m->layers[l].channels;
    ws->bn_mean[l] = fmi_alloc(C, sizeof(float));
    ws->bn_invstd[l] = fmi_alloc(C, sizeof(float));
    return ws->bn_mean[l] && ws->bn_invstd[l] ? FM_OK : FM_ENOMEM;
}

static void bn_init(const fm_layer *L, float *p, fm_rng *rng)
{
    (void)rng;
    const int n = L->channels;
    for (int j = 0; j < n; j++) {
        p[j] = 1.0f;          /* gamma */
        p[n + j] = 0.0f;      /* beta */
        p[2 * n + j] = 0.0f;  /* mean */
        p[3 * n + j] = 1.0f;  /* var */
    }
}

/* ---- a minibatch spread over ranks ---- */

/* Batch norm over a global minibatch spread over ranks: the partial sums of
 * this rank's rows are summed over the ranks before each use, and divided by
 * the whole minibatch's rows. A failed collective is kept in ws->status (the
 * rank's other collectives of the step are skipped: the communicator is gone). */
static void shared_sum(const fm_cost *cost, fm_workspace *ws, float *x, size_t n)
{
    if (ws->status == FM_EPEER)
        return;
    char name[64] = "sums";
    if (cost->ledger)
        snprintf(name, sizeof name, "%s.sums", fm_ledger_layer_name(cost->ledger, cost->layer));
    int rc = fmi_dist_allreduce(ws->dist, cost, name, x, n);
    if (rc < 0)
        ws->status = rc;
}

static void bn_forward_shared(const fm_cost *cost, fm_workspace *ws, const fm_layer *L, int l,
                              const float *p, int B, float eps)
{
    const int C = L->channels, rows = bn_rows(L, B), total = bn_rows(L, ws->rows_total);
    const float *x = ws->act[l];
    float *mean = ws->bn_mean[l], *invstd = ws->bn_invstd[l];
    const float inv_b = 1.0f / (float)total;
    fmi_bn_sums(x, rows, C, mean);
    shared_sum(cost, ws, mean, (size_t)C);
    for (int j = 0; j < C; j++)
        mean[j] *= inv_b;
    fmi_bn_centred_squares(x, rows, C, mean, invstd);
    shared_sum(cost, ws, invstd, (size_t)C);
    for (int j = 0; j < C; j++)
        invstd[j] = 1.0f / sqrtf(invstd[j] * inv_b + eps);
    FM_TALLY(FM_OP_FMUL, 2 * (uint64_t)C);
    FM_TALLY(FM_OP_FADD, (uint64_t)C);
    FM_TALLY(FM_OP_FSPECIAL, 2 * (uint64_t)C);
    fmi_bn_normalize(x, ws->act[l + 1], rows, C, p, p + L->channels, mean, invstd);
}

static void bn_backward_shared(const fm_cost *cost, fm_workspace *ws, const fm_layer *L, int l,
                               float *dx, float *g, const float *p, int B)
{
    const int C = L->channels, rows = bn_rows(L, B);
    const float *x = ws->act[l], *dy = ws->grad[l + 1];
    /* g keeps this rank's own sums: the gradient exchange adds them up */
    fmi_bn_backward_sums(x, dy, rows, C, ws->bn_mean[l], ws->bn_invstd[l], g, g + C);
    if (!dx)
        return;
    float *total = ws->dist->scratch;
    memcpy(total, g, 2 * (size_t)C * sizeof *total);
    shared_sum(cost, ws, total, 2 * (size_t)C);
    fmi_bn_backward_input(x, dy, dx, rows, bn_rows(L, ws->rows_total), C, p, ws->bn_mean[l],
                         ws->bn_invstd[l], total, total + C);
}

/* ---- passes ---- */

/* --bn-stats running: the inference statistics move towards the batch's. */
static void bn_running_update(const fm_cost *cost, const fm_model *m, const fm_workspace *ws,
                              int l)
{
    const fm_layer *L = &m->layers[l];
    const int C = L->channels;
    const float a = (float)m->config.bn_momentum, eps = (float)m->config.bn_eps;
    float *mean = m->state + L->offset + 2 * C, *var = mean + C;
    for (int j = 0; j < C; j++) {
        float inv = ws->bn_invstd[l][j];
        float batch_var = 1.0f / (inv * inv) - eps;
        mean[j] += a * (ws->bn_mean[l][j] - mean[j]);
        var[j] += a * (batch_var - var[j]);
    }
    /* per feature: inv*inv, 1/., - eps; two differences and two multiply-adds */
    FM_TALLY(FM_OP_FMUL, C);
    FM_TALLY(FM_OP_FSPECIAL, C);
    FM_TALLY(FM_OP_FADD, 3 * (uint64_t)C);
    FM_TALLY(FM_OP_FMA, 2 * (uint64_t)C);
    fmi_cost_ops(cost, FM_OP_FMUL, (uint64_t)C);
    fmi_cost_ops(cost, FM_OP_FSPECIAL, (uint64_t)C);
    fmi_cost_ops(cost, FM_OP_FADD, 3 * (uint64_t)C);
    fmi_cost_ops(cost, FM_OP_FMA, 2 * (uint64_t)C);
    bn_bytes(cost, m, l, "stats", 0);
    bn_bytes(cost, m, l, "stats", 1);
}

static void bn_forward(const fm_pass *p, int l)
{
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    fm_workspace *ws = p->ws;
    const int C = L->channels, B = p->batch;
    const float eps = (float)m->config.bn_eps;
    const float *params = m->state + L->offset;
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_FORWARD);
    if (ws->dist)
        bn_forward_shared(&cost, ws, L, l, params, B, eps);
    else
        fmi_bn_forward_train(ws->act[l], ws->act[l + 1], bn_rows(L, B), C, params, params + C, eps,
                            ws->bn_mean[l], ws->bn_invstd[l]);
    fmi_bn_cost_forward_train(&cost, bn_rows(L, B), C);
    fmi_bytes_elementwise(&cost, m, l, B, 0);
    bn_bytes(&cost, m, l, "params", 0);
    bn_bytes(&cost, m, l, "batch", 1);
    if (m->config.bn_stats == FM_BN_RUNNING)
        bn_running_update(&cost, m, ws, l);
}

static void bn_forward_eval(const fm_pass *p, int l)
{
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    const int C = L->channels, B = p->batch;
    const float *params = m->state + L->offset;
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_EVAL);
    fmi_bn_forward_infer(p->ws->act[l], p->ws->act[l + 1], bn_rows(L, B), C, params, params + C,
                        (float)m->config.bn_eps, params + 2 * C, params + 3 * C);
    fmi_bn_cost_forward_infer(&cost, bn_rows(L, B), C);
    fmi_bytes_elementwise(&cost, m, l, B, 0);
    bn_bytes(&cost, m, l, "params", 0);
    bn_bytes(&cost, m, l, "stats", 0);
}

static void bn_backward(const fm_pass *p, int l)
{
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    fm_workspace *ws = p->ws;
    const int C = L->channels, B = p->batch;
    const float *params = m->state + L->offset;
    float *dx = l > 0 ? ws->grad[l] : NULL;
    float *g = ws->grad_state + L->offset;
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_BACKWARD);
    if (ws->dist)
        bn_backward_shared(&cost, ws, L, l, dx, g, params, B);
    else
        fmi_bn_backward(ws->act[l], ws->grad[l + 1], dx, bn_rows(L, B), C, params, ws->bn_mean[l],
                       ws->bn_invstd[l], g, g + C);
    fmi_bn_cost_backward(&cost, bn_rows(L, B), C, dx != NULL);
    fmi_bytes_activation(&cost, m, l, 0, B, 0);
    fmi_bytes_activation(&cost, m, l + 1, 1, B, 0);
    bn_bytes(&cost, m, l, "params", 0);
    bn_bytes(&cost, m, l, "batch", 0);
    bn_bytes(&cost, m, l, "dparams", 1);
    if (dx)
        fmi_bytes_activation(&cost, m, l, 1, B, 1);
}

/* ---- the authors' recomputation of the inference statistics ---- */

static size_t bn_stats_floats(const fm_layer *L) { return 4 * (size_t)L->channels; }

/* sums: the running sums of per-batch means and variances, then this
 * batch's. The batch joins the average before it is normalised, so the
 * first batch uses its own statistics (the authors' can_fit) and later ones
 * the running average. */
static void bn_refit(const fm_pass *p, int l, float *sums, long seen)
{
    const fm_model *m = p->model;
    const fm_layer *L = &m->layers[l];
    const int C = L->channels, B = p->batch;
    float *stats = m->state + L->offset + 2 * C; /* mean, then var */
    float *sum_mean = sums, *sum_var = sums + C, *bm = sums + 2 * C, *bv = sums + 3 * C;
    fmi_bn_batch_stats(p->ws->act[l], bn_rows(L, B), C, bm, bv);
    for (int j = 0; j < C; j++) {
        sum_mean[j] += bm[j];
        sum_var[j] += bv[j];
        stats[j] = sum_mean[j] / (float)seen;
        stats[C + j] = sum_var[j] / (float)seen;
    }
    FM_TALLY(FM_OP_FADD, 2 * (uint64_t)C);
    FM_TALLY(FM_OP_FSPECIAL, 2 * (uint64_t)C);
    const fm_cost cost = fmi_pass_cost(p, l, FM_PHASE_EVAL);
    fmi_bn_cost_batch_stats(&cost, bn_rows(L, B), C);
    fmi_cost_ops(&cost, FM_OP_FADD, 2 * (uint64_t)C);     /* the sums */
    fmi_cost_ops(&cost, FM_OP_FSPECIAL, 2 * (uint64_t)C); /* / seen */
    fmi_bytes_activation(&cost, m, l, 0, B, 0);
    bn_bytes(&cost, m, l, "sums", 0);
    bn_bytes(&cost, m, l, "sums", 1);
    bn_bytes(&cost, m, l, "stats", 1);
}

/* Folds batch norm (gamma, beta, mean, var) into the current deployed
 * layer's scale and offset, computed as training's inference pass computes
 * its factors. */
static int bn_export(fm_export_state *e, const fm_layer *bn)
{
    const fm_model *m = e->model;
    fm_deploy_layer *L = &e->deploy->layers[e->current];
    const float *p = m->state + bn->offset;
    const int C = bn->channels; /* a dense layer's outputs, or a map's channels */
    const float *gamma = p, *beta = p + C, *mean = p + 2 * C, *var = p + 3 * C;
    const float eps = (float)m->config.bn_eps;
    for (int j = 0; j < C; j++) {
        float s;
        fmi_bn_fold(gamma[j], beta[j], mean[j], var[j], eps, &s, &L->offset[j]);
        L->scale[j] = s * L->unit;
    }
    return FM_OK;
}

const fm_layer_ops fmi_layer_bn = {
    .name = "bn",
    .shape = fmi_layer_shape_flat,
    .reserve = bn_reserve,
    .init = bn_init,
    .forward = bn_forward,
    .forward_eval = bn_forward_eval,
    .backward = bn_backward,
    .stats_floats = bn_stats_floats,
    .refit = bn_refit,
    .export = bn_export,
};
