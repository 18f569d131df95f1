/* net.c — the passes through the layer list: the training step (forward,
 * loss, backward), the evaluation forward pass, and the authors'
 * recomputation of batch-norm statistics. Each layer runs through its table
 * (layer.h) and declares its own work to ws->ledger; the passes add the
 * loss's and count the passes (docs/ledger.md). */
#include "internal.h"
#include "layer.h"
#include "loss.h"

/* The loss of the training pass over act[n_layers] and its gradient into
 * grad[n_layers], declared at the loss's ledger index. A rank's share of a
 * global minibatch divides by the whole minibatch. */
static double loss_forward_backward(const fm_pass *p, const uint8_t *labels, int *errors)
{
    const fm_model *m = p->model;
    const fm_workspace *ws = p->ws;
    const int B = p->batch, n = m->n_layers;
    const int norm = ws->rows_total > 0 ? ws->rows_total : B;
    const int xent = m->config.loss == FM_LOSS_XENT;
    const double loss =
        xent ? fmi_loss_xent_part(ws->act[n], labels, B, norm, m->classes, ws->grad[n], errors)
             : fmi_loss_hinge_part(ws->act[n], labels, B, norm, m->classes, ws->grad[n], errors);
    const fm_cost fwd = fmi_pass_cost(p, n, FM_PHASE_FORWARD);
    const fm_cost bwd = fmi_pass_cost(p, n, FM_PHASE_BACKWARD);
    if (xent)
        fmi_loss_xent_cost(&fwd, &bwd, B, m->classes);
    else
        fmi_loss_hinge_cost(&fwd, &bwd, B, m->classes);
    fmi_bytes_activation(&fwd, m, n, 0, B, 0);
    fmi_cost_bytes(&fwd, "labels", (uint64_t)B, (uint64_t)B, 0);
    fmi_bytes_activation(&bwd, m, n, 1, B, 1);
    return loss;
}

double fmi_train_step(fm_model *m, fm_workspace *ws, const uint8_t *labels, int B, uint64_t step,
                     int *errors)
{
    int unused_errors;
    if (!errors) /* the loss counts errors either way, as its ledger entry says */
        errors = &unused_errors;
    fmi_ledger_declare_layers(m, ws->ledger);
    const fm_pass pass = {m, ws, B, step, FM_PHASE_FORWARD};
    for (int l = 0; l < m->n_layers; l++)
        fmi_layer_ops_of(m->layers[l].kind)->forward(&pass, l);
    const double loss = loss_forward_backward(&pass, labels, errors);
    for (int l = m->n_layers - 1; l >= 0; l--)
        fmi_layer_ops_of(m->layers[l].kind)->backward(&pass, l);
    fmi_ledger_pass(ws->ledger, FM_PHASE_FORWARD, (uint64_t)B);
    fmi_ledger_pass(ws->ledger, FM_PHASE_BACKWARD, (uint64_t)B);
    return loss;
}

const float *fmi_forward_eval(const fm_model *m, fm_workspace *ws, int B, int refresh)
{
    fmi_ledger_declare_layers(m, ws->ledger);
    if (refresh)
        fmi_eval_weights(m, ws);
    const fm_pass pass = {m, ws, B, 0, FM_PHASE_EVAL};
    for (int l = 0; l < m->n_layers; l++)
        fmi_layer_ops_of(m->layers[l].kind)->forward_eval(&pass, l);
    fmi_ledger_pass(ws->ledger, FM_PHASE_EVAL, (uint64_t)B);
    return ws->act[m->n_layers];
}

void fmi_eval_errors_cost(const fm_model *m, fm_workspace *ws, int batch)
{
    const fm_cost cost = {ws->ledger, fmi_ledger_loss_index(m), FM_PHASE_EVAL};
    fmi_count_errors_cost(&cost, batch, m->classes);
    fmi_bytes_activation(&cost, m, m->n_layers, 0, batch, 0);
    fmi_cost_bytes(&cost, "labels", (uint64_t)batch, (uint64_t)batch, 0);
}

/* Running sums of every layer that refits statistics, one after another. */
static size_t stats_floats(const fm_model *m)
{
    size_t total = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer_ops *ops = fmi_layer_ops_of(m->layers[l].kind);
        total += ops->stats_floats ? ops->stats_floats(&m->layers[l]) : 0;
    }
    return total;
}

/* One evaluation pass over the batch in act[0] in which each layer that
 * refits its statistics does so before its forward. */
static void refit_pass(const fm_pass *p, float *sums, long seen)
{
    const fm_model *m = p->model;
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer_ops *ops = fmi_layer_ops_of(m->layers[l].kind);
        if (ops->refit) {
            ops->refit(p, l, sums, seen);
            sums += ops->stats_floats(&m->layers[l]);
        }
        ops->forward_eval(p, l);
    }
    fmi_ledger_pass(p->ws->ledger, FM_PHASE_EVAL, (uint64_t)p->batch);
}

int fmi_bn_recompute(fm_model *m, fm_workspace *ws, const fm_images *sets[], const int *firsts,
                    const int *counts, int n_sets, int batch)
{
    float *sums = fmi_alloc(stats_floats(m), sizeof *sums);
    if (!sums)
        return FM_ENOMEM;
    batch = FM_MIN(batch, ws->max_batch);
    fmi_ledger_declare_layers(m, ws->ledger);
    fmi_eval_weights(m, ws);
    long seen = 0;
    for (int s = 0; s < n_sets; s++) {
        for (int b0 = 0; b0 < counts[s]; b0 += batch) {
            const fm_pass pass = {m, ws, FM_MIN(batch, counts[s] - b0), 0, FM_PHASE_EVAL};
            fmi_load_batch(m, ws, sets[s], NULL, firsts[s] + b0, pass.batch);
            fmi_load_batch_cost(m, ws, FM_PHASE_EVAL, pass.batch, sets[s]->count);
            refit_pass(&pass, sums, ++seen);
        }
    }
    fmi_free(sums);
    return ws->status < 0 ? ws->status : FM_OK;
}
