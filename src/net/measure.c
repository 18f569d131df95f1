/* measure.c — one real training step and one inference pass of a model on a
 * synthetic batch, recorded into ledgers (what `fewmul energy` reports), and
 * the paper's multiplication count of its dense layers. */
#include "internal.h"
#include "kernels.h"
#include "loss.h"
#include "net.h"
#include "rng.h"
#include "weighted.h"

#include <string.h>

/* Ledger counts depend on shapes only, so any pixels do; the batch is the whole "set". */
#define MEASURE_MAX_BATCH (1 << 20)

int fm_model_measure(fm_model *m, int batch, fm_ledger *train_step, fm_ledger *inference)
{
    if (!m)
        return fmi_error(FM_EINVAL, "fm_model_measure: NULL model");
    if (batch < 1 || batch > MEASURE_MAX_BATCH)
        return fmi_error(FM_EINVAL, "batch %d out of range 1..%d", batch, MEASURE_MAX_BATCH);
    fmi_threads_set(m->config.threads);
    fm_images set = {.count = batch, .height = m->in_h, .width = m->in_w, .channels = m->in_c};
    set.pixels = fmi_alloc((size_t)batch * m->input_dim, 1);
    set.labels = fmi_alloc((size_t)batch, 1);
    float *s1 = fmi_alloc(m->state_count, sizeof(float));
    float *s2 = fmi_alloc(m->state_count, sizeof(float));
    fm_workspace *ws = NULL;
    int rc = set.pixels && set.labels && s1 && s2 ? fmi_workspace_create(m, batch, 1, &ws) : FM_ENOMEM;
    if (rc == FM_OK) /* as a training run of one process */
        rc = fmi_update_fuse(m, ws, s1, s2);
    if (rc == FM_OK) {
        fm_rng rng;
        fmi_rng_seed(&rng, m->config.seed);
        for (size_t i = 0; i < (size_t)batch * m->input_dim; i++)
            set.pixels[i] = (uint8_t)(fmi_rng_next(&rng) >> 56);
        for (int b = 0; b < batch; b++)
            set.labels[b] = (uint8_t)(b % m->classes);

        if (train_step) {
            uint64_t step = 0;
            ws->bop_gamma = fmi_bop_gamma_at(&m->config, 1);
            if (ws->wq_drawn) {
                /* a fused update draws the next step's weights: measure a
                 * step whose weights the one before drew, as every step of a
                 * run after its first, and keep the tally (counting builds)
                 * to the measured step too */
                uint64_t before[FM_OP_KINDS], discarded[FM_OP_KINDS];
                fmi_tally_take(before);
                fmi_load_batch(m, ws, &set, NULL, 0, batch);
                fmi_train_step(m, ws, set.labels, batch, step, NULL);
                fmi_optimizer_step(m, ws, s1, s2, (long)++step);
                fmi_tally_take(discarded);
                for (int op = 0; op < FM_OP_KINDS; op++)
                    FM_TALLY((fm_op)op, before[op]);
            }
            ws->ledger = train_step;
            fmi_load_batch(m, ws, &set, NULL, 0, batch);
            fmi_load_batch_cost(m, ws, FM_PHASE_FORWARD, batch, batch);
            fmi_train_step(m, ws, set.labels, batch, step, NULL);
            fmi_optimizer_step(m, ws, s1, s2, (long)step + 1);
            fmi_ledger_pass(ws->ledger, FM_PHASE_UPDATE, (uint64_t)batch);
            rc = fmi_ledger_status(train_step);
        }
        if (rc == FM_OK && inference) {
            /* inference as deployed: the deterministic quantized weights,
             * prepared beforehand (outside the ledger), as a model file holds them */
            int saved = m->config.test_quantized;
            m->config.test_quantized = 1;
            fmi_workspace_choose_products(m, ws); /* the evaluation weights changed */
            ws->ledger = NULL;
            fmi_eval_weights(m, ws);
            ws->ledger = inference;
            fmi_load_batch(m, ws, &set, NULL, 0, batch);
            fmi_load_batch_cost(m, ws, FM_PHASE_EVAL, batch, batch);
            const float *y = fmi_forward_eval(m, ws, batch, 0);
            (void)fmi_count_errors(y, set.labels, batch, m->classes);
            fmi_eval_errors_cost(m, ws, batch);
            m->config.test_quantized = saved;
            fmi_workspace_choose_products(m, ws);
            rc = fmi_ledger_status(inference);
        }
    }
    fmi_workspace_free(m, ws);
    fmi_free(set.pixels);
    fmi_free(set.labels);
    fmi_free(s1);
    fmi_free(s2);
    return rc;
}

int fm_model_paper_mults(const fm_model *m, int batch, uint64_t *standard, uint64_t *method)
{
    if (!m || !standard || !method)
        return fmi_error(FM_EINVAL, "fm_model_paper_mults: NULL argument");
    if (batch < 1)
        return fmi_error(FM_EINVAL, "batch %d must be at least 1", batch);
    /* Per example and dense layer of N inputs and M outputs, standard back-prop
     * multiplies MN times forward, MN for the error below, MN for the weight
     * gradient, and about 3M element-wise (the paper's accounting); binary or
     * ternary weights remove the first two, quantized back-prop the third. */
    const int signed_weights = fmi_weight_class_of(m->config.weights) != FM_WCLASS_REAL;
    uint64_t s = 0, k = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        if (!fmi_layer_weighted(L))
            continue;
        /* a convolution is a dense layer of fan-in x filters at each output position */
        uint64_t positions = L->kind == FM_LAYER_CONV ? (uint64_t)fmi_conv_positions(&L->conv) : 1;
        uint64_t mn = positions * L->w_rows * L->w_cols, mm = positions * L->w_cols;
        s += 3 * mn + 3 * mm;
        k += (signed_weights ? 0 : 2 * mn) + (m->config.qb ? 0 : mn) + 3 * mm;
    }
    *standard = (uint64_t)batch * s;
    *method = (uint64_t)batch * k;
    return FM_OK;
}
