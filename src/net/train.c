/* train.c — the training loop (shuffle, steps, per-epoch learning-rate decay,
 * evaluation, best-validation model selection) and evaluation of a model. */
#include "infer.h"
#include "internal.h"
#include "loss.h"
#include "net.h"
#include "optim.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { STREAM_SHUFFLE = 4 };
/* Whether a model has convolutions, so its input must have the exact image shape. */
static int has_conv(const fm_model *m)
{
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].kind == FM_LAYER_CONV)
            return 1;
    return 0;
}

/* Examples per evaluation pass: fewer for convolutional nets, whose
 * activations are whole maps. */
static int eval_batch(const fm_model *m) { return has_conv(m) ? 100 : 500; }

static int check_shape(const fm_model *m, const fm_images *im, const char *what)
{
    long dim = (long)im->height * im->width * im->channels;
    if (has_conv(m) && (im->height != m->in_h || im->width != m->in_w || im->channels != m->in_c))
        return fm_error(FM_EMISMATCH, "%s images are %dx%dx%d, the convolutional model expects %dx%dx%d",
                        what, (int)im->height, (int)im->width, (int)im->channels, m->in_h, m->in_w,
                        m->in_c);
    if (dim != m->input_dim)
        return fm_error(FM_EMISMATCH, "%s images have %ldx%ldx%ld = %ld values, the model expects %d",
                        what, (long)im->height, (long)im->width, (long)im->channels, dim, m->input_dim);
    return FM_OK;
}

static int check_images(const fm_model *m, const fm_images *im, const char *what)
{
    if (!im || !im->pixels || !im->labels || im->count < 1)
        return fm_error(FM_EINVAL, "%s set is empty", what);
    int rc = check_shape(m, im, what);
    if (rc < 0)
        return rc;
    for (int i = 0; i < im->count; i++)
        if (im->labels[i] >= m->classes)
            return fm_error(FM_EMISMATCH, "%s label %d at index %d exceeds the model's %d classes",
                            what, im->labels[i], i, m->classes);
    return FM_OK;
}

/* Errors of the evaluation pass over images[first .. first+count). */
static long count_errors(const fm_model *m, fm_workspace *ws, const fm_images *im, int first,
                         int count, int refresh)
{
    long errors = 0;
    for (int b0 = 0; b0 < count; b0 += ws->max_batch) {
        int B = FM_MIN(ws->max_batch, count - b0);
        fm_load_batch(m, ws, im, NULL, first + b0, B);
        fm_load_batch_cost(m, ws, FM_PHASE_EVAL, B, im->count);
        const float *y = fm_forward_eval(m, ws, B, refresh && b0 == 0);
        errors += fm_count_errors(y, im->labels + first + b0, B, m->classes);
        fm_eval_errors_cost(m, ws, B);
    }
    return errors;
}

void fm_optimizer_step(fm_model *m, const fm_workspace *ws, float *s1, float *s2, double lr, long t)
{
    const fm_config *c = &m->config;
    for (int g = 0; g < m->n_groups; g++) {
        const fm_param_group *G = &m->groups[g];
        float *p = m->state + G->offset;
        const float *grad = ws->grad_state + G->offset;
        float rate = (float)lr * G->lr_scale;
        if (c->opt == FM_OPT_ADAM)
            fm_adam_step(p, grad, s1 + G->offset, s2 + G->offset, G->count, rate, 0.9f, 0.999f,
                         1e-8f, t, G->clip);
        else
            fm_sgd_step(p, grad, s1 + G->offset, G->count, rate, (float)c->momentum, G->clip);
        if (!ws->ledger)
            continue;
        /* dense groups hold W and its gradient dW; batch-norm groups gamma and
         * beta ("params") and theirs ("dparams") */
        const fm_cost cost = {ws->ledger, G->layer + 1, FM_PHASE_UPDATE};
        const int dense = fm_layer_weighted(&m->layers[G->layer]);
        const uint64_t n = G->count, bytes = 4 * n;
        char name[4][64];
        const char *layer = fm_ledger_layer_name(ws->ledger, G->layer + 1);
        snprintf(name[0], sizeof name[0], "%s.%s", layer, dense ? "W" : "params");
        snprintf(name[1], sizeof name[1], "%s.%s", layer, dense ? "dW" : "dparams");
        snprintf(name[2], sizeof name[2], "%s.velocity", layer);
        snprintf(name[3], sizeof name[3], "%s.adam", layer);
        fm_cost_bytes(&cost, name[0], bytes, bytes, bytes);
        fm_cost_bytes(&cost, name[1], bytes, bytes, 0);
        if (c->opt == FM_OPT_ADAM) {
            fm_adam_cost(&cost, n, G->clip > 0.0f);
            fm_cost_bytes(&cost, name[3], 2 * bytes, 2 * bytes, 2 * bytes);
        } else {
            fm_sgd_cost(&cost, n, c->momentum != 0.0, G->clip > 0.0f);
            if (c->momentum != 0.0)
                fm_cost_bytes(&cost, name[2], bytes, bytes, bytes);
        }
    }
}

typedef struct run_buffers {
    fm_workspace *ws;
    int *order;
    uint8_t *labels;
    float *s1, *s2, *best;
} run_buffers;

static void free_run(const fm_model *m, run_buffers *r)
{
    fm_workspace_free(m, r->ws);
    fm_free(r->order);
    fm_free(r->labels);
    fm_free(r->s1);
    fm_free(r->s2);
    fm_free(r->best);
}

int fm_train(fm_model *m, const fm_images *train, const fm_images *test, const fm_config *cfg,
             const fm_callbacks *cb, fm_result *result)
{
    if (!m || !train || !cfg)
        return fm_error(FM_EINVAL, "fm_train: NULL argument");
    int rc = fm_config_check(cfg);
    if (rc < 0)
        return rc;
    if (strcmp(cfg->arch, m->arch) != 0 || cfg->weights != m->config.weights ||
        cfg->scale != m->config.scale || cfg->opt != m->config.opt ||
        (cfg->dropout > 0.0) != (m->config.dropout > 0.0))
        return fm_error(FM_EINVAL, "training configuration does not match the model's "
                                   "(architecture, weights, scale, optimizer and dropout must agree)");
    if ((rc = check_images(m, train, "training")) < 0 ||
        (test && (rc = check_images(m, test, "test")) < 0))
        return rc;
    const int n_total = train->count;
    const int n_valid = cfg->valid;
    if (n_valid >= n_total)
        return fm_error(FM_EINVAL, "validation size %d leaves no training images (of %d)", n_valid,
                        n_total);
    int n_train = n_total - n_valid;
    if (cfg->train_limit > 0 && cfg->train_limit < n_train)
        n_train = cfg->train_limit;

    m->config = *cfg;
    m->config.arch = m->arch;
    const fm_config *c = &m->config;
    fm_threads_set(c->threads);
    /* pylearn2's MNIST(center=True) subtracts the mean of all 60,000 training
     * images from train and validation alike (test uses the same mean here);
     * ZCA is fitted on the training split only */
    rc = fm_preprocess_fit(m, train, c->preproc == FM_PRE_GCN_ZCA ? n_total - n_valid : n_total);
    if (rc < 0)
        return rc;

    run_buffers r = {0};
    const int B = c->batch;
    if ((rc = fm_workspace_create(m, B, 1, &r.ws)) < 0)
        return rc;
    r.ws->ledger = cb ? cb->ledger : NULL;
    r.order = fm_alloc((size_t)n_train, sizeof *r.order);
    r.labels = fm_alloc((size_t)B, 1);
    r.s1 = fm_alloc(m->state_count, sizeof(float));
    r.s2 = c->opt == FM_OPT_ADAM ? fm_alloc(m->state_count, sizeof(float)) : NULL;
    r.best = fm_alloc(m->state_count, sizeof(float));
    if (!r.order || !r.labels || !r.s1 || !r.best || (c->opt == FM_OPT_ADAM && !r.s2)) {
        free_run(m, &r);
        return FM_ENOMEM;
    }
    for (int i = 0; i < n_train; i++)
        r.order[i] = i;

    double lr0, lr_end;
    fm_config_learning_rates(c, &lr0, &lr_end);
    const double decay = pow(lr_end / lr0, 1.0 / c->epochs);
    double lr = lr0;
    fm_rng shuffle;
    fm_rng_seed(&shuffle, fm_rng_key(c->seed, STREAM_SHUFFLE, 0, 0));

    fm_result res = {.test_error_pct = -1, .valid_error_pct = -1};
    double best_valid = INFINITY, best_test = -1;
    int have_best = 0, evaluated = 0;
    uint64_t step = 0;
    const double start = fm_now();
    rc = FM_OK;

    for (int epoch = 1; epoch <= c->epochs && rc == FM_OK; epoch++) {
        for (int i = n_train - 1; i > 0; i--) {
            int j = (int)fm_rng_below(&shuffle, (uint32_t)i + 1);
            int t = r.order[i];
            r.order[i] = r.order[j];
            r.order[j] = t;
        }
        double epoch_start = fm_now(), loss_sum = 0.0;
        long errors = 0, batches = 0;
        for (int b0 = 0; b0 < n_train; b0 += B) {
            int bs = FM_MIN(B, n_train - b0);
            fm_load_batch(m, r.ws, train, r.order, b0, bs);
            fm_load_batch_cost(m, r.ws, FM_PHASE_FORWARD, bs, train->count);
            for (int b = 0; b < bs; b++)
                r.labels[b] = train->labels[r.order[b0 + b]];
            int batch_errors = 0;
            loss_sum += fm_train_step(m, r.ws, r.labels, bs, step, &batch_errors);
            if (r.ws->status < 0) {
                rc = r.ws->status;
                break;
            }
            step++;
            fm_optimizer_step(m, r.ws, r.s1, r.s2, lr, (long)step);
            fm_ledger_pass(r.ws->ledger, FM_PHASE_UPDATE, (uint64_t)bs);
            errors += batch_errors;
            batches++;
            if (cb && cb->on_progress) {
                double now = fm_now();
                fm_progress pr = {epoch, c->epochs, b0 + bs, n_train, loss_sum / batches,
                                  (b0 + bs) / FM_MAX(now - epoch_start, 1e-9), now - start};
                cb->on_progress(&pr, cb->user);
            }
            if (cb && cb->should_stop && cb->should_stop(cb->user)) {
                rc = fm_error(FM_ECANCELED, "training interrupted in epoch %d", epoch);
                break;
            }
        }
        if (rc != FM_OK)
            break;
        double train_time = fm_now() - epoch_start;
        res.train_seconds += train_time;
        fm_epoch_report rep = {.epoch = epoch, .epochs = c->epochs, .lr = lr,
                               .train_loss = loss_sum / FM_MAX(batches, 1),
                               .train_error_pct = 100.0 * errors / n_train,
                               .valid_error_pct = -1, .test_error_pct = -1,
                               .train_seconds = train_time,
                               .images_per_s = n_train / FM_MAX(train_time, 1e-9)};
        res.final_train_loss = rep.train_loss;
        lr *= decay;

        int eval_now = !c->no_eval && (epoch % c->eval_every == 0 || epoch == c->epochs);
        if (eval_now) {
            if (c->bn_stats == FM_BN_PAPER) {
                const fm_images *sets[2] = {train, train};
                int firsts[2] = {0, n_total - n_valid}, counts[2] = {n_train, n_valid};
                if ((rc = fm_bn_recompute(m, r.ws, sets, firsts, counts, 2, B)) < 0)
                    break;
            }
            fm_eval_weights(m, r.ws);
            if ((rc = r.ws->status) < 0)
                break;
            if (n_valid > 0)
                rep.valid_error_pct = 100.0 * count_errors(m, r.ws, train, n_total - n_valid, n_valid, 0) / n_valid;
            if (test)
                rep.test_error_pct = 100.0 * count_errors(m, r.ws, test, 0, test->count, 0) / test->count;
            evaluated = 1;
            /* the authors keep the later epoch on ties (<=) */
            if (n_valid == 0 || rep.valid_error_pct <= best_valid) {
                best_valid = n_valid > 0 ? rep.valid_error_pct : best_valid;
                best_test = rep.test_error_pct;
                res.best_epoch = epoch;
                memcpy(r.best, m->state, m->state_count * sizeof(float));
                have_best = 1;
            }
        }
        rep.best_epoch = res.best_epoch;
        rep.best_test_error_pct = best_test;
        rep.epoch_seconds = fm_now() - epoch_start;
        res.epochs = epoch;
        if (cb && cb->on_epoch)
            cb->on_epoch(&rep, cb->user);
    }

    if (rc == FM_OK && !evaluated && c->bn_stats == FM_BN_PAPER) {
        /* no evaluation ran: still leave usable inference statistics */
        const fm_images *sets[2] = {train, train};
        int firsts[2] = {0, n_total - n_valid}, counts[2] = {n_train, n_valid};
        rc = fm_bn_recompute(m, r.ws, sets, firsts, counts, 2, B);
    }
    if (rc == FM_OK && have_best)
        memcpy(m->state, r.best, m->state_count * sizeof(float));
    res.total_seconds = fm_now() - start;
    res.train_images_per_s = res.train_seconds > 0 ? (double)n_train * res.epochs / res.train_seconds : 0;
    res.valid_error_pct = have_best && n_valid > 0 ? best_valid : -1;
    res.test_error_pct = have_best ? best_test : -1;
    if (rc == FM_OK && r.ws->ledger)
        rc = fm_ledger_status(r.ws->ledger);
    res.kernels = r.ws->kernels ? r.ws->kernels->name : NULL;
    res.ldexp_fallbacks = (long)r.ws->mf_fallbacks;
    free_run(m, &r);
    if (result)
        *result = res;
    return rc;
}

int fm_model_evaluate(const fm_model *m, const fm_images *images, int threads, double *error_pct)
{
    if (!m || !images || !error_pct)
        return fm_error(FM_EINVAL, "fm_model_evaluate: NULL argument");
    int rc = check_images(m, images, "evaluation");
    if (rc < 0)
        return rc;
    fm_threads_set(threads);
    fm_workspace *ws;
    if ((rc = fm_workspace_create(m, FM_MIN(eval_batch(m), images->count), 0, &ws)) < 0)
        return rc;
    long errors = count_errors(m, ws, images, 0, images->count, 1);
    fm_workspace_free(m, ws);
    *error_pct = 100.0 * errors / images->count;
    return FM_OK;
}

int fm_model_predict(const fm_model *m, const fm_images *images, int first, int count, int threads,
                     uint8_t *classes)
{
    if (!m || !images || !classes)
        return fm_error(FM_EINVAL, "fm_model_predict: NULL argument");
    if (first < 0 || count < 1 || first > images->count - count)
        return fm_error(FM_EINVAL, "images %d..%d out of range (set has %d)", first,
                        first + count - 1, images->count);
    int rc = check_shape(m, images, "the");
    if (rc < 0)
        return rc;
    fm_threads_set(threads);
    fm_workspace *ws;
    rc = fm_workspace_create(m, FM_MIN(eval_batch(m), count), 0, &ws);
    if (rc < 0)
        return rc;
    for (int b0 = 0; b0 < count; b0 += ws->max_batch) {
        int B = FM_MIN(ws->max_batch, count - b0);
        fm_load_batch(m, ws, images, NULL, first + b0, B);
        const float *y = fm_forward_eval(m, ws, B, b0 == 0);
        for (int b = 0; b < B; b++) {
            const float *row = y + (long)b * m->classes;
            int best = 0;
            for (int k = 1; k < m->classes; k++)
                if (row[k] > row[best])
                    best = k;
            classes[b0 + b] = (uint8_t)best;
        }
    }
    fm_workspace_free(m, ws);
    return FM_OK;
}
