/* train.c — the training loop (shuffle, steps, per-epoch learning-rate decay,
 * evaluation, best-validation model selection) and evaluation of a model. */
#include "checkpoint.h"
#include "dist.h"
#include "infer.h"
#include "internal.h"
#include "loss.h"
#include "net.h"
#include "optim.h"
#include "rng.h"
#include "weighted.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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

/* A model takes images of its input shape; a dense model made for a flat
 * input (N x 1 x 1: fm_model_create, or a model file of before version 3)
 * takes any shape of N values. */
static int check_shape(const fm_model *m, const fm_images *im, const char *what)
{
    long dim = (long)im->height * im->width * im->channels;
    const int flat = m->in_h == m->input_dim && m->in_w == 1 && m->in_c == 1 && !has_conv(m);
    if (!flat && (im->height != m->in_h || im->width != m->in_w || im->channels != m->in_c))
        return fmi_error(FM_EMISMATCH, "%s images are %dx%dx%d, the %s model expects %dx%dx%d",
                        what, (int)im->height, (int)im->width, (int)im->channels,
                        has_conv(m) ? "convolutional" : "dense", m->in_h, m->in_w, m->in_c);
    if (dim != m->input_dim)
        return fmi_error(FM_EMISMATCH, "%s images have %ldx%ldx%ld = %ld values, the model expects %d",
                        what, (long)im->height, (long)im->width, (long)im->channels, dim, m->input_dim);
    return FM_OK;
}

static int check_images(const fm_model *m, const fm_images *im, const char *what)
{
    if (!im || !im->pixels || !im->labels || im->count < 1)
        return fmi_error(FM_EINVAL, "%s set is empty", what);
    int rc = check_shape(m, im, what);
    if (rc < 0)
        return rc;
    for (int i = 0; i < im->count; i++)
        if (im->labels[i] >= m->classes)
            return fmi_error(FM_EMISMATCH, "%s label %d at index %d exceeds the model's %d classes",
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
        fmi_load_batch(m, ws, im, NULL, first + b0, B);
        fmi_load_batch_cost(m, ws, FM_PHASE_EVAL, B, im->count);
        const float *y = fmi_forward_eval(m, ws, B, refresh && b0 == 0);
        errors += fmi_count_errors(y, im->labels + first + b0, B, m->classes);
        fmi_eval_errors_cost(m, ws, B);
    }
    return errors;
}

/* A training run in progress: the model and data, the run's buffers and
 * position (fm_run, what a checkpoint saves), and the clocks. */
typedef struct run_buffers {
    fm_model *m;
    const fm_images *train, *test;
    const fm_callbacks *cb;
    int n_total, n_valid, n_train;
    fm_workspace *ws;
    fm_dist *dist;     /* a data-parallel run's collectives, else NULL */
    uint8_t *labels;
    fm_run run;
    fm_data_id data;   /* filled when the run checkpoints or resumes */
    double decay;      /* the learning rate's factor per epoch */
    double start, last_checkpoint;
    int checkpointing;
} run_buffers;

static void free_run(const fm_model *m, run_buffers *r)
{
    fmi_workspace_free(m, r->ws);
    fmi_free(r->labels);
    fmi_free(r->run.order);
    fmi_free(r->run.s1);
    fmi_free(r->run.s2);
    fmi_free(r->run.best);
}

/* A paused run continues only as itself: same configuration (threads
 * aside), architecture, shapes and ledger presence. */
static int check_resume(const fm_model *m, const fm_checkpoint *ck, const fm_config *cfg,
                        const fm_ledger *ledger)
{
    const fm_model *saved = ck->model;
    const char *field = fmi_config_differs(cfg, &ck->config);
    if (field)
        return fmi_error(FM_EMISMATCH, "resume: the configuration's %s differs from the "
                                      "checkpoint's run (a resumed run keeps its configuration)",
                        field);
    if (strcmp(m->arch, saved->arch) != 0 || m->in_h != saved->in_h || m->in_w != saved->in_w ||
        m->in_c != saved->in_c || m->classes != saved->classes ||
        m->state_count != saved->state_count)
        return fmi_error(FM_EMISMATCH, "resume: the model (%s, %dx%dx%d inputs, %d classes) is not "
                                      "the checkpoint's (%s, %dx%dx%d inputs, %d classes)",
                        m->arch, m->in_h, m->in_w, m->in_c, m->classes, saved->arch, saved->in_h,
                        saved->in_w, saved->in_c, saved->classes);
    if (!ledger != !ck->ledger)
        return fmi_error(FM_EMISMATCH, ck->ledger ? "resume: the checkpoint's run keeps an energy "
                                                   "ledger; give one to continue it"
                                                 : "resume: the checkpoint's run kept no energy "
                                                   "ledger, so a ledger could not cover the whole run");
    return FM_OK;
}

static int check_resume_data(const fm_data_id *now, const fm_data_id *then)
{
    if (now->train_count != then->train_count || now->train_crc != then->train_crc ||
        now->height != then->height || now->width != then->width ||
        now->channels != then->channels)
        return fmi_error(FM_EMISMATCH, "resume: the training set (%d images of %dx%dx%d, CRC %08x) is "
                                      "not the checkpoint's run's (%d images of %dx%dx%d, CRC %08x)",
                        (int)now->train_count, (int)now->height, (int)now->width,
                        (int)now->channels, (unsigned)now->train_crc, (int)then->train_count,
                        (int)then->height, (int)then->width, (int)then->channels,
                        (unsigned)then->train_crc);
    if (now->test_count != then->test_count || now->test_crc != then->test_crc)
        return fmi_error(FM_EMISMATCH, "resume: the test set (%d images, CRC %08x) is not the "
                                      "checkpoint's run's (%d images, CRC %08x)",
                        (int)now->test_count, (unsigned)now->test_crc, (int)then->test_count,
                        (unsigned)then->test_crc);
    return FM_OK;
}

/* Takes the paused run's weights, input statistics, position and arrays. */
static int take_checkpoint(fm_model *m, const fm_checkpoint *ck, run_buffers *r, fm_ledger *ledger)
{
    const fm_model *saved = ck->model;
    const size_t S = m->state_count;
    memcpy(m->state, saved->state, S * sizeof *m->state);
    memcpy(m->input_mean, saved->input_mean, (size_t)m->input_dim * sizeof *m->input_mean);
    if (saved->zca && m->zca)
        memcpy(m->zca, saved->zca, (size_t)m->input_dim * m->input_dim * sizeof *m->zca);
    fm_run *run = &r->run;
    const fm_run *from = &ck->run;
    if (from->n_train != run->n_train)
        return fmi_error(FM_EMISMATCH, "resume: the run trains on %d images, the checkpoint's on %d",
                        run->n_train, from->n_train);
    /* the arrays stay this run's own; everything else is the checkpoint's */
    float *s1 = run->s1, *s2 = run->s2, *best = run->best;
    int *order = run->order;
    *run = *from;
    run->s1 = s1;
    run->s2 = s2;
    run->best = best;
    run->order = order;
    memcpy(order, from->order, (size_t)run->n_train * sizeof *order);
    if (from->s1)
        memcpy(s1, from->s1, S * sizeof *s1);
    if (from->s2 && s2)
        memcpy(s2, from->s2, S * sizeof *s2);
    if (from->have_best)
        memcpy(best, from->best, S * sizeof *best);
    r->ws->mf_fallbacks = from->mulfree_fallbacks;
    return ledger ? fmi_ledger_copy(ledger, ck->ledger) : FM_OK;
}

static int write_checkpoint(const fm_model *m, run_buffers *r, const fm_callbacks *cb,
                            const fm_ledger *ledger)
{
    r->run.mulfree_fallbacks = r->ws->mf_fallbacks;
    int rc = fmi_checkpoint_write(cb->checkpoint, m, cb->data_spec, &r->data, &r->run, ledger);
    if (rc == FM_OK && cb->on_checkpoint) {
        fm_checkpoint_info info;
        fmi_run_position(&r->run, &m->config, cb->ledger != NULL, &info);
        cb->on_checkpoint(cb->checkpoint, &info, cb->user);
    }
    return rc;
}

/* A data-parallel run's shares of a minibatch of B images, as the ranks
 * split it: every rank needs at least one image of every minibatch. */
static int check_shares(const fm_dist *d, int n_train, int B)
{
    const int last = n_train % B;
    if (B < d->size || (last > 0 && last < d->size))
        return fmi_error(FM_EINVAL, "a minibatch of %d images cannot be shared by %d ranks "
                                   "(the last of each epoch has %d): every rank needs at least "
                                   "one image; use fewer ranks or another --batch or --valid",
                        B, d->size, last > 0 ? last : B);
    return FM_OK;
}

/* Errors over images[first .. first+count), this rank's share of them in a
 * data-parallel run (the caller sums the shares at its next agreement). */
static long shared_errors(const fm_model *m, fm_workspace *ws, const fm_images *im, int first,
                          int count)
{
    int lo, n;
    fmi_dist_share(ws->dist, count, &lo, &n);
    return n > 0 ? count_errors(m, ws, im, first + lo, n, 0) : 0;
}

/* A failure before the run's first agreement still reaches it, so that no
 * rank waits for one that has given up. */
static int start_failed(const fm_comm *comm, const fm_model *m, int rc)
{
    if (comm && comm->size > 1) {
        fm_dist start = {.comm = comm, .rank = comm->rank, .size = comm->size,
                         .control_layer = fmi_ledger_loss_index(m)};
        fmi_dist_agree(&start, rc, NULL);
    }
    return rc;
}

/* Saves the run: rank 0 writes, every rank takes part in the ledger's merge
 * and learns whether the write succeeded. */
static int checkpoint_run(const fm_model *m, run_buffers *r, const fm_callbacks *cb)
{
    if (!r->dist)
        return write_checkpoint(m, r, cb, cb->ledger);
    int rc = FM_OK;
    fm_ledger *merged = NULL;
    if (cb->ledger && (rc = fm_ledger_create(&merged)) == FM_OK)
        rc = fmi_dist_merge_ledger(r->dist, cb->ledger, merged);
    if (rc == FM_OK) /* what rank 0 saves is every rank's state */
        rc = fmi_dist_check_weights(r->dist, m, r->run.step);
    if (rc == FM_OK && r->dist->rank == 0)
        rc = write_checkpoint(m, r, cb, merged);
    fm_ledger_free(merged);
    return fmi_dist_agree(r->dist, rc, NULL);
}

/* The checks that need only the arguments, before anything is allocated. */
static int check_run(const fm_model *m, const fm_images *train, const fm_images *test,
                     const fm_config *cfg, const fm_callbacks *cb)
{
    int rc = fm_config_check(cfg);
    if (rc < 0)
        return rc;
    if (strcmp(cfg->arch, m->arch) != 0 || cfg->weights != m->config.weights ||
        cfg->scale != m->config.scale || cfg->opt != m->config.opt ||
        (cfg->dropout > 0.0) != (m->config.dropout > 0.0))
        return fmi_error(FM_EINVAL, "training configuration does not match the model's "
                                   "(architecture, weights, scale, optimizer and dropout must agree)");
    if ((rc = check_images(m, train, "training")) < 0 ||
        (test && (rc = check_images(m, test, "test")) < 0))
        return rc;
    if (cb && cb->resume && (rc = check_resume(m, cb->resume, cfg, cb->ledger)) < 0)
        return rc;
    if (cfg->valid >= train->count)
        return fmi_error(FM_EINVAL, "validation size %d leaves no training images (of %d)",
                        cfg->valid, train->count);
    return FM_OK;
}

/* The run's buffers: workspace, data order, labels, optimizer arrays, the
 * best weights, and the collectives of a data-parallel run. */
static int allocate_run(run_buffers *r, const fm_comm *comm)
{
    fm_model *m = r->m;
    const fm_config *c = &m->config;
    const int B = c->batch;
    fm_run *run = &r->run;
    int rc = fmi_workspace_create(m, B, 1, &r->ws);
    if (rc < 0)
        return rc;
    r->ws->ledger = r->cb ? r->cb->ledger : NULL;
    run->n_train = r->n_train;
    run->order = fmi_alloc((size_t)r->n_train, sizeof *run->order);
    r->labels = fmi_alloc((size_t)B, 1);
    /* SGD without momentum never touches s1, but takes it */
    run->s1 = fmi_alloc(m->state_count, sizeof(float));
    const int adam = c->opt == FM_OPT_ADAM || c->opt == FM_OPT_BOP; /* bop: for batch norm */
    run->s2 = adam ? fmi_alloc(m->state_count, sizeof(float)) : NULL;
    run->best = fmi_alloc(m->state_count, sizeof(float));
    if (!run->order || !r->labels || !run->s1 || !run->best || (adam && !run->s2))
        return FM_ENOMEM;
    rc = fmi_dist_create(comm, m, r->ws->ledger, &r->dist);
    r->ws->dist = r->dist;
    /* one process folds the update into the backward pass (bop, --fuse);
     * ranks sum the whole weight gradient first */
    if (rc == FM_OK && !r->dist)
        rc = fmi_update_fuse(m, r->ws, run->s1, run->s2);
    return rc;
}

/* A new run's position: the first epoch, the data in order before its
 * first shuffle, the initial learning rate, no best epoch yet. */
static void start_position(run_buffers *r, double lr0)
{
    fm_run *run = &r->run;
    for (int i = 0; i < r->n_train; i++)
        run->order[i] = i;
    fm_rng shuffle;
    fmi_rng_seed(&shuffle, fmi_rng_key(r->m->config.seed, FM_STREAM_SHUFFLE, 0, 0));
    run->shuffle = shuffle.state;
    run->epoch = 1;
    run->lr = lr0;
    run->best_valid = INFINITY;
    run->best_test = -1;
}

/* The images the run will load again and again, preprocessed once when the
 * model's preprocessing is worth it and they fit the callbacks' limit
 * (fmi_input_cache_wanted): the training images, the validation images when
 * evaluated or used for the batch-norm statistics, and the test set when
 * evaluated. The rows are those the loads would compute (the BLAS whitening
 * in batches of the run's size). */
static int preprocess_once(run_buffers *r)
{
    const fm_config *c = &r->m->config;
    const long mib = r->cb && r->cb->preproc_cache_mib ? r->cb->preproc_cache_mib
                                                       : FM_PREPROC_CACHE_DEFAULT_MIB;
    const size_t bytes = mib < 0 ? 0 : (unsigned long)mib > SIZE_MAX >> 20 ? SIZE_MAX : (size_t)mib << 20;
    const int valid = r->n_valid > 0 && (!c->no_eval || c->bn_stats == FM_BN_PAPER) ? r->n_valid : 0;
    const int test = r->test && !c->no_eval ? r->test->count : 0;
    if (!fmi_input_cache_wanted(r->m, (size_t)r->n_train + (size_t)valid + (size_t)test, bytes))
        return FM_OK;
    int rc = fmi_input_cache_add(r->m, r->ws, r->train, 0, r->n_train);
    if (rc == FM_OK && valid)
        rc = fmi_input_cache_add(r->m, r->ws, r->train, r->n_total - valid, valid);
    if (rc == FM_OK && test)
        rc = fmi_input_cache_add(r->m, r->ws, r->test, 0, test);
    return rc;
}

/* Everything before the first step: the model takes the configuration, the
 * input statistics are fitted (or resumed), the buffers made, the position
 * set, the inputs preprocessed once where they are worth it, and the ranks of
 * a data-parallel run agree to start. On failure the caller frees r. */
static int open_run(run_buffers *r, const fm_config *cfg, const fm_comm *comm)
{
    fm_model *m = r->m;
    const fm_callbacks *cb = r->cb;
    const fm_checkpoint *resume = cb ? cb->resume : NULL;
    m->config = *cfg;
    m->config.arch = m->arch;
    const fm_config *c = &m->config;
    fmi_threads_set(c->threads);
    int rc;
    if (r->checkpointing || resume || (comm && comm->size > 1)) {
        fmi_data_identify(r->train, r->test, &r->data);
        if (resume && (rc = check_resume_data(&r->data, &resume->data)) < 0)
            return start_failed(comm, m, rc);
    }
    /* pylearn2's MNIST(center=True) subtracts the mean of all 60,000 training
     * images from train and validation alike (test uses the same mean here);
     * ZCA is fitted on the training split only. A resumed run has them. */
    const int fit = c->preproc == FM_PRE_GCN_ZCA ? r->n_total - r->n_valid : r->n_total;
    if (!resume && (rc = fmi_preprocess_fit(m, r->train, fit)) < 0)
        return start_failed(comm, m, rc);
    double lr0, lr_end;
    fm_config_learning_rates(c, &lr0, &lr_end);
    r->decay = pow(lr_end / lr0, 1.0 / c->epochs);
    rc = allocate_run(r, comm);
    if (rc == FM_OK && resume)
        rc = take_checkpoint(m, resume, r, cb->ledger);
    else if (rc == FM_OK)
        start_position(r, lr0);
    if (rc == FM_OK)
        rc = preprocess_once(r);
    if (rc < 0)
        return start_failed(comm, m, rc);
    if (!r->dist)
        return FM_OK;
    /* a resumed run's ledger is the whole run's so far: rank 0 carries it */
    if (resume && cb->ledger && r->dist->rank != 0)
        fm_ledger_clear(cb->ledger);
    if ((rc = fmi_dist_agree(r->dist, FM_OK, NULL)) == FM_OK &&
        (rc = fmi_dist_check_start(r->dist, m, &r->data, r->n_train)) == FM_OK)
        rc = check_shares(r->dist, r->n_train, c->batch);
    return rc;
}

/* A new epoch's data order and running sums. */
static void start_epoch(run_buffers *r)
{
    fm_run *run = &r->run;
    fm_rng shuffle = {run->shuffle};
    for (int i = r->n_train - 1; i > 0; i--) {
        int j = (int)fmi_rng_below(&shuffle, (uint32_t)i + 1);
        int t = run->order[i];
        run->order[i] = run->order[j];
        run->order[j] = t;
    }
    run->shuffle = shuffle.state;
    run->loss_sum = 0.0;
    run->errors = run->batches = 0;
    run->epoch_train_seconds = 0.0;
}

/* One step on the minibatch at b0 of bs images: this rank's rows loaded,
 * the training pass, the gradient exchange of a data-parallel run, the
 * update. A failure is left in ws->status. */
static void train_minibatch(run_buffers *r, int b0, int bs)
{
    fm_model *m = r->m;
    fm_workspace *ws = r->ws;
    fm_run *run = &r->run;
    /* this rank's rows of the minibatch (all of it in one process) */
    int lo, rows;
    fmi_dist_share(r->dist, bs, &lo, &rows);
    ws->row0 = lo;
    ws->rows_total = r->dist ? bs : 0;
    fmi_load_batch(m, ws, r->train, run->order, b0 + lo, rows);
    fmi_load_batch_cost(m, ws, FM_PHASE_FORWARD, rows, r->train->count);
    for (int b = 0; b < rows; b++)
        r->labels[b] = r->train->labels[run->order[b0 + lo + b]];
    int batch_errors = 0;
    ws->bop_gamma = fmi_bop_gamma_at(&m->config, run->epoch);
    ws->step_lr = run->lr;
    double loss = fmi_train_step(m, ws, r->labels, rows, run->step, &batch_errors);
    /* a rank whose step failed still takes part, then says so at the agreement */
    if (r->dist && ws->status != FM_EPEER) {
        int x = fmi_dist_exchange(r->dist, m, ws, &loss, &batch_errors);
        if (x < 0 && (ws->status == FM_OK || x == FM_EPEER))
            ws->status = x;
    }
    if (r->dist && ws->status == FM_EPEER) /* the communicator is gone */
        return;
    run->loss_sum += loss;
    run->step++;
    if (ws->status == FM_OK)
        fmi_optimizer_step(m, ws, run->s1, run->s2, (long)run->step);
    fmi_ledger_pass(ws->ledger, FM_PHASE_UPDATE, (uint64_t)rows);
    run->errors += batch_errors;
    run->batches++;
    run->next = b0 + bs;
}

/* After a step: progress reported, then a stop or a checkpoint when asked
 * for or due (agreed by the ranks). FM_OK to go on. */
static int after_step(run_buffers *r, double epoch_start)
{
    const fm_callbacks *cb = r->cb;
    const fm_config *c = &r->m->config;
    fm_run *run = &r->run;
    const double now = fmi_now();
    if (cb && cb->on_progress) {
        fm_progress pr = {run->epoch, c->epochs, run->next, r->n_train,
                          run->loss_sum / run->batches,
                          run->next / FM_MAX(now - epoch_start, 1e-9), now - r->start};
        cb->on_progress(&pr, cb->user);
    }
    int stop = cb && cb->should_stop && cb->should_stop(cb->user);
    /* the end of an epoch has its own checkpoint, after evaluation */
    const int mid_epoch = r->checkpointing && run->next < r->n_train;
    const int counted = mid_epoch && cb->checkpoint_every > 0 &&
                        run->step % (uint64_t)cb->checkpoint_every == 0;
    int timed = mid_epoch && cb->checkpoint_seconds > 0 &&
                now - r->last_checkpoint >= cb->checkpoint_seconds;
    int rc = r->ws->status;
    if (r->dist) {
        /* one rank's stop stops all; rank 0's clock times the checkpoints */
        double flags[FM_DIST_VALUES] = {stop, timed && r->dist->rank == 0};
        rc = fmi_dist_agree(r->dist, rc, flags);
        stop = flags[0] > 0;
        timed = flags[1] > 0;
    }
    if (rc < 0)
        return rc;
    if (r->checkpointing && (stop || counted || timed)) {
        run->epoch_train_seconds = now - epoch_start;
        run->elapsed_seconds = now - r->start;
        if ((rc = checkpoint_run(r->m, r, cb)) < 0)
            return rc;
        r->last_checkpoint = fmi_now();
    }
    if (stop)
        return fmi_error(FM_ECANCELED, "training interrupted in epoch %d", run->epoch);
    return FM_OK;
}

/* The steps of the epoch from the run's position on. */
static int train_epoch_steps(run_buffers *r, double epoch_start)
{
    const int B = r->m->config.batch;
    for (int b0 = r->run.next; b0 < r->n_train; b0 += B) {
        train_minibatch(r, b0, FM_MIN(B, r->n_train - b0));
        if (r->dist && r->ws->status == FM_EPEER)
            return r->ws->status;
        int rc = after_step(r, epoch_start);
        if (rc < 0)
            return rc;
    }
    return FM_OK;
}

/* The authors' batch-norm statistics over the training and validation images. */
static int recompute_bn(run_buffers *r)
{
    const fm_images *sets[2] = {r->train, r->train};
    int firsts[2] = {0, r->n_total - r->n_valid}, counts[2] = {r->n_train, r->n_valid};
    r->ws->row0 = r->ws->rows_total = 0;
    return fmi_bn_recompute(r->m, r->ws, sets, firsts, counts, 2, r->m->config.batch);
}

/* The end of an epoch's evaluation: validation and test errors (each rank
 * counting its share), and the best epoch kept. */
static int evaluate_epoch(run_buffers *r, fm_epoch_report *rep)
{
    fm_model *m = r->m;
    fm_run *run = &r->run;
    const int n_valid = r->n_valid;
    int rc = FM_OK;
    r->ws->row0 = r->ws->rows_total = 0;
    if (m->config.bn_stats == FM_BN_PAPER)
        rc = recompute_bn(r);
    if (rc == FM_OK) {
        fmi_eval_weights(m, r->ws);
        rc = r->ws->status;
    }
    double errors[FM_DIST_VALUES] = {0};
    if (rc == FM_OK && n_valid > 0)
        errors[0] = (double)shared_errors(m, r->ws, r->train, r->n_total - n_valid, n_valid);
    if (rc == FM_OK && r->test)
        errors[1] = (double)shared_errors(m, r->ws, r->test, 0, r->test->count);
    if (r->dist)
        rc = fmi_dist_agree(r->dist, rc, errors);
    if (rc < 0)
        return rc;
    if (n_valid > 0)
        rep->valid_error_pct = 100.0 * errors[0] / n_valid;
    if (r->test)
        rep->test_error_pct = 100.0 * errors[1] / r->test->count;
    run->evaluated = 1;
    /* the authors keep the later epoch on ties (<=) */
    if (n_valid == 0 || rep->valid_error_pct <= run->best_valid) {
        run->best_valid = n_valid > 0 ? rep->valid_error_pct : run->best_valid;
        run->best_test = rep->test_error_pct;
        run->best_epoch = run->epoch;
        memcpy(run->best, m->state, m->state_count * sizeof(float));
        run->have_best = 1;
    }
    return FM_OK;
}

/* One epoch from the run's position: its steps, its evaluation when due,
 * the learning rate's decay, the report and the epoch's checkpoint. */
static int train_epoch(run_buffers *r)
{
    const fm_config *c = &r->m->config;
    const fm_callbacks *cb = r->cb;
    fm_run *run = &r->run;
    const int epoch = run->epoch;
    if (run->next == 0)
        start_epoch(r);
    const double epoch_start = fmi_now() - run->epoch_train_seconds;
    int rc = train_epoch_steps(r, epoch_start);
    if (rc != FM_OK)
        return rc;
    double train_time = fmi_now() - epoch_start;
    run->train_seconds += train_time;
    fm_epoch_report rep = {.epoch = epoch, .epochs = c->epochs, .lr = run->lr,
                           .train_loss = run->loss_sum / FM_MAX(run->batches, 1),
                           .train_error_pct = 100.0 * (double)run->errors / r->n_train,
                           .valid_error_pct = -1, .test_error_pct = -1,
                           .train_seconds = train_time,
                           .images_per_s = r->n_train / FM_MAX(train_time, 1e-9)};
    run->final_train_loss = rep.train_loss;
    if (!c->no_eval && (epoch % c->eval_every == 0 || epoch == c->epochs) &&
        (rc = evaluate_epoch(r, &rep)) < 0)
        return rc;
    rep.best_epoch = run->best_epoch;
    rep.best_test_error_pct = run->best_test;
    rep.epoch_seconds = fmi_now() - epoch_start;
    run->lr *= r->decay;
    run->epoch++;
    run->next = 0;
    run->epoch_train_seconds = 0.0;
    if (cb && cb->on_epoch)
        cb->on_epoch(&rep, cb->user);
    if (r->checkpointing) {
        run->elapsed_seconds = fmi_now() - r->start;
        if ((rc = checkpoint_run(r->m, r, cb)) < 0)
            return rc;
        r->last_checkpoint = fmi_now();
    }
    return FM_OK;
}

/* After the last epoch (rc: how the epochs ended): usable inference
 * statistics even without an evaluation, the ledger's status, the last
 * agreement of a data-parallel run, and the best epoch's weights. Every
 * failure inside the epochs came from (or through) an agreement: all ranks
 * know of it and have left together. */
static int close_run(run_buffers *r, int rc)
{
    fm_model *m = r->m;
    const int failed_together = rc < 0;
    if (rc == FM_OK && !r->run.evaluated && m->config.bn_stats == FM_BN_PAPER)
        rc = recompute_bn(r);
    if (rc == FM_OK && r->ws->ledger)
        rc = fmi_ledger_status(r->ws->ledger);
    /* the last agreement: every rank has finished, with the same weights,
     * and holds the ledger of the whole run (all ranks' work) */
    if (r->dist && !failed_together) {
        rc = fmi_dist_agree(r->dist, rc, NULL);
        if (rc == FM_OK)
            rc = fmi_dist_check_weights(r->dist, m, r->run.step);
        if (rc == FM_OK && r->ws->ledger) {
            fm_ledger *merged = NULL;
            if ((rc = fm_ledger_create(&merged)) == FM_OK &&
                (rc = fmi_dist_merge_ledger(r->dist, r->ws->ledger, merged)) == FM_OK)
                rc = fmi_ledger_copy(r->ws->ledger, merged);
            fm_ledger_free(merged);
        }
    }
    if (rc == FM_OK && r->run.have_best)
        memcpy(m->state, r->run.best, m->state_count * sizeof(float));
    return rc;
}

static fm_result run_result(const run_buffers *r)
{
    const fm_run *run = &r->run;
    fm_result res = {.test_error_pct = -1, .valid_error_pct = -1};
    res.epochs = run->epoch - 1;
    res.best_epoch = run->best_epoch;
    res.train_seconds = run->train_seconds;
    res.final_train_loss = run->final_train_loss;
    res.total_seconds = fmi_now() - r->start;
    res.train_images_per_s =
        res.train_seconds > 0 ? (double)r->n_train * res.epochs / res.train_seconds : 0;
    res.valid_error_pct = run->have_best && r->n_valid > 0 ? run->best_valid : -1;
    res.test_error_pct = run->have_best ? run->best_test : -1;
    res.kernels = r->ws->kernels ? r->ws->kernels->name : NULL;
    res.ldexp_fallbacks = (long)r->ws->mf_fallbacks;
    return res;
}

int fm_train(fm_model *m, const fm_images *train, const fm_images *test, const fm_config *cfg,
             const fm_callbacks *cb, fm_result *result)
{
    if (!m || !train || !cfg)
        return fmi_error(FM_EINVAL, "fm_train: NULL argument");
    const fm_comm *comm = cb ? cb->comm : NULL;
    int rc = check_run(m, train, test, cfg, cb);
    if (rc < 0)
        return start_failed(comm, m, rc);
    run_buffers r = {.m = m, .train = train, .test = test, .cb = cb, .n_total = train->count,
                     .n_valid = cfg->valid, .checkpointing = cb && cb->checkpoint};
    r.n_train = r.n_total - r.n_valid;
    if (cfg->train_limit > 0 && cfg->train_limit < r.n_train)
        r.n_train = cfg->train_limit;
    if ((rc = open_run(&r, cfg, comm)) < 0) {
        fmi_dist_free(r.dist);
        free_run(m, &r);
        return rc;
    }
    r.start = fmi_now() - r.run.elapsed_seconds;
    r.last_checkpoint = fmi_now();
    while (r.run.epoch <= m->config.epochs && rc == FM_OK)
        rc = train_epoch(&r);
    rc = close_run(&r, rc);
    const fm_result res = run_result(&r);
    fmi_dist_free(r.dist);
    free_run(m, &r);
    if (result)
        *result = res;
    return rc;
}

int fm_model_evaluate(const fm_model *m, const fm_images *images, int threads, double *error_pct)
{
    if (!m || !images || !error_pct)
        return fmi_error(FM_EINVAL, "fm_model_evaluate: NULL argument");
    int rc = check_images(m, images, "evaluation");
    if (rc < 0)
        return rc;
    fmi_threads_set(threads);
    fm_workspace *ws;
    if ((rc = fmi_workspace_create(m, FM_MIN(eval_batch(m), images->count), 0, &ws)) < 0)
        return rc;
    long errors = count_errors(m, ws, images, 0, images->count, 1);
    fmi_workspace_free(m, ws);
    *error_pct = 100.0 * errors / images->count;
    return FM_OK;
}

int fm_model_predict(const fm_model *m, const fm_images *images, int first, int count, int threads,
                     uint8_t *classes)
{
    if (!m || !images || !classes)
        return fmi_error(FM_EINVAL, "fm_model_predict: NULL argument");
    if (first < 0 || count < 1 || first > images->count - count)
        return fmi_error(FM_EINVAL, "images %d..%d out of range (set has %d)", first,
                        first + count - 1, images->count);
    int rc = check_shape(m, images, "the");
    if (rc < 0)
        return rc;
    fmi_threads_set(threads);
    fm_workspace *ws;
    rc = fmi_workspace_create(m, FM_MIN(eval_batch(m), count), 0, &ws);
    if (rc < 0)
        return rc;
    for (int b0 = 0; b0 < count; b0 += ws->max_batch) {
        int B = FM_MIN(ws->max_batch, count - b0);
        fmi_load_batch(m, ws, images, NULL, first + b0, B);
        const float *y = fmi_forward_eval(m, ws, B, b0 == 0);
        for (int b = 0; b < B; b++) {
            const float *row = y + (long)b * m->classes;
            int best = 0;
            for (int k = 1; k < m->classes; k++)
                if (row[k] > row[best])
                    best = k;
            classes[b0 + b] = (uint8_t)best;
        }
    }
    fmi_workspace_free(m, ws);
    return FM_OK;
}
