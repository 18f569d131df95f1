/* checkpoint.c — the checkpoint file of a training run (docs/checkpoint-format.md):
 * a whole training model file, the rest of the configuration, what identifies
 * the data, the run's position, the optimizer's arrays, the best epoch's
 * weights, the data order and the ledger, closed by a CRC-32. Written through
 * a temporary file, synced and renamed (fmi_file_write_atomic); read with
 * every count checked first. */
#include "checkpoint.h"
#include "internal.h"
#include "ledger.h"
#include "model_file.h"
#include "net.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CHECKPOINT_MAGIC "FMULCKPT"
/* version 2 added the latent precision (fm_config.latent) and bop's final
 * gamma; version 1 files read as fp32 and no decay */
#define CHECKPOINT_VERSION 2u
/* A checkpoint of the largest model file plus three more copies of its state. */
#define CHECKPOINT_MAX_BYTES ((size_t)1 << 34)
#define DATA_SPEC_MAX 4096u
#define NO_TEST UINT32_MAX

int fmi_run_optimizer_arrays(const fm_config *c)
{
    if (c->opt == FM_OPT_ADAM || c->opt == FM_OPT_BOP) /* bop: momenta in s1, Adam's for batch norm */
        return 2;
    return c->momentum != 0.0 ? 1 : 0; /* SGD without momentum keeps no velocity */
}

void fmi_run_position(const fm_run *run, const fm_config *c, int has_ledger, fm_checkpoint_info *info)
{
    memset(info, 0, sizeof *info);
    info->epoch = run->epoch;
    info->epochs = c->epochs;
    info->images_done = run->next;
    info->images_total = run->n_train;
    info->step = run->step;
    info->lr = run->lr;
    info->best_epoch = run->best_epoch;
    info->best_valid_error_pct = run->best_epoch > 0 && isfinite(run->best_valid) ? run->best_valid : -1;
    info->best_test_error_pct = run->best_epoch > 0 ? run->best_test : -1;
    info->has_ledger = has_ledger;
}

/* ---- writing ------------------------------------------------------------- */

static void put_config(fm_writer *w, const fm_config *c)
{
    fmi_put_u32(w, (uint32_t)c->epochs);
    fmi_put_u32(w, (uint32_t)c->batch);
    fmi_put_f64(w, c->lr);
    fmi_put_f64(w, c->lr_final);
    fmi_put_f64(w, c->momentum);
    fmi_put_u32(w, (uint32_t)c->valid);
    fmi_put_u32(w, (uint32_t)c->train_limit);
    fmi_put_f64(w, c->bn_momentum);
    fmi_put_u32(w, (uint32_t)c->eval_every);
    fmi_put_u32(w, (uint32_t)c->no_eval);
    fmi_put_u32(w, (uint32_t)c->exec);
    fmi_put_u32(w, (uint32_t)c->threads);
    fmi_put_u32(w, (uint32_t)c->latent);
    if (c->opt == FM_OPT_BOP) { /* only bop's runs have them (the model file says bop) */
        fmi_put_f64(w, c->bop_gamma);
        fmi_put_f64(w, c->bop_threshold);
        fmi_put_f64(w, c->bop_gamma_final);
    }
}

static void put_data(fm_writer *w, const char *spec, const fm_data_id *d)
{
    size_t n = spec ? strlen(spec) : 0;
    if (n > DATA_SPEC_MAX)
        n = DATA_SPEC_MAX; /* a longer spec is recorded cut short; it only names the data */
    fmi_put_u32(w, (uint32_t)n);
    fmi_put_bytes(w, spec, n);
    fmi_put_u32(w, (uint32_t)d->train_count);
    fmi_put_u32(w, d->test_count < 0 ? NO_TEST : (uint32_t)d->test_count);
    fmi_put_u32(w, (uint32_t)d->height);
    fmi_put_u32(w, (uint32_t)d->width);
    fmi_put_u32(w, (uint32_t)d->channels);
    fmi_put_u32(w, d->train_crc);
    fmi_put_u32(w, d->test_crc);
}

static void put_run(fm_writer *w, const fm_run *r)
{
    fmi_put_u32(w, (uint32_t)r->epoch);
    fmi_put_u32(w, (uint32_t)r->next);
    fmi_put_u64(w, r->step);
    fmi_put_f64(w, r->lr);
    fmi_put_u64(w, r->shuffle);
    fmi_put_f64(w, r->loss_sum);
    fmi_put_u64(w, (uint64_t)r->errors);
    fmi_put_u64(w, (uint64_t)r->batches);
    fmi_put_f64(w, r->epoch_train_seconds);
    fmi_put_f64(w, r->best_valid);
    fmi_put_f64(w, r->best_test);
    fmi_put_u32(w, (uint32_t)r->best_epoch);
    fmi_put_u32(w, (uint32_t)r->have_best);
    fmi_put_u32(w, (uint32_t)r->evaluated);
    fmi_put_f64(w, r->train_seconds);
    fmi_put_f64(w, r->elapsed_seconds);
    fmi_put_f64(w, r->final_train_loss);
    fmi_put_u64(w, r->mulfree_fallbacks);
}

int fmi_checkpoint_write(const char *path, const fm_model *m, const char *data_spec,
                        const fm_data_id *data, const fm_run *run, const fm_ledger *ledger)
{
    const fm_config *c = &m->config;
    const size_t S = m->state_count;
    const int arrays = fmi_run_optimizer_arrays(c);
    fm_writer w = {0};
    /* one growth: the model file, up to three more copies of the state, the order */
    fmi_put_reserve(&w, (size_t)m->input_dim * 4 + (m->zca ? (size_t)m->input_dim * m->input_dim * 4 : 0) +
                           (4 + (size_t)arrays) * 4 * S + 4 * (size_t)run->n_train + 65536);
    fmi_put_bytes(&w, CHECKPOINT_MAGIC, 8);
    fmi_put_u32(&w, CHECKPOINT_VERSION);
    const size_t length_at = w.len;
    fmi_put_u64(&w, 0); /* the model file's length, filled in below */
    int rc = fmi_model_serialize(m, &w);
    if (rc < 0) {
        fmi_free(w.buf);
        return rc;
    }
    const uint64_t model_bytes = w.len - length_at - 8;
    for (int i = 0; i < 8; i++)
        w.buf[length_at + (size_t)i] = (uint8_t)(model_bytes >> (8 * i));
    put_config(&w, c);
    put_data(&w, data_spec, data);
    put_run(&w, run);
    fmi_put_u64(&w, (uint64_t)S);
    fmi_put_u32(&w, (uint32_t)arrays);
    if (arrays >= 1)
        fmi_put_f32s(&w, run->s1, S);
    if (arrays >= 2)
        fmi_put_f32s(&w, run->s2, S);
    if (run->have_best)
        fmi_put_f32s(&w, run->best, S);
    fmi_put_u32(&w, (uint32_t)run->n_train);
    for (int i = 0; i < run->n_train; i++)
        fmi_put_u32(&w, (uint32_t)run->order[i]);
    fmi_put_u32(&w, ledger ? 1 : 0);
    if (ledger)
        fmi_ledger_serialize(ledger, &w);
    if (!w.failed)
        fmi_put_u32(&w, fmi_crc32(w.buf, w.len));
    if (w.failed) {
        fmi_free(w.buf);
        return fmi_error(FM_ENOMEM, "out of memory serializing the checkpoint");
    }
    rc = fmi_file_write_atomic(path, w.buf, w.len);
    fmi_free(w.buf);
    return rc;
}

/* ---- reading ------------------------------------------------------------- */

static int bad(const fm_reader *r, const char *what)
{
    return fmi_error(FM_EFORMAT, "%s: checkpoint %s", r->path, what);
}

static int get_config(fm_reader *r, fm_config *c, uint32_t version)
{
    uint32_t u[8];
    const char *names[] = {"epochs", "batch", "valid", "train limit", "eval every", "no eval",
                           "exec", "threads"};
    int rc;
    if ((rc = fmi_get_u32(r, &u[0], names[0])) < 0 || (rc = fmi_get_u32(r, &u[1], names[1])) < 0 ||
        (rc = fmi_get_f64(r, &c->lr, "learning rate")) < 0 ||
        (rc = fmi_get_f64(r, &c->lr_final, "final learning rate")) < 0 ||
        (rc = fmi_get_f64(r, &c->momentum, "momentum")) < 0 ||
        (rc = fmi_get_u32(r, &u[2], names[2])) < 0 || (rc = fmi_get_u32(r, &u[3], names[3])) < 0 ||
        (rc = fmi_get_f64(r, &c->bn_momentum, "batch-norm momentum")) < 0)
        return rc;
    for (int i = 4; i < 8; i++)
        if ((rc = fmi_get_u32(r, &u[i], names[i])) < 0)
            return rc;
    /* fm_config_check bounds them all; here they only have to fit an int */
    for (int i = 0; i < 8; i++)
        if (u[i] > INT32_MAX && i != 7)
            return bad(r, "configuration out of range");
    c->epochs = (int)u[0];
    c->batch = (int)u[1];
    c->valid = (int)u[2];
    c->train_limit = (int)u[3];
    c->eval_every = (int)u[4];
    c->no_eval = (int)u[5];
    c->exec = (fm_exec)u[6];
    c->threads = (int32_t)u[7];
    if (u[5] > 1 || u[6] > FM_EXEC_MULFREE)
        return bad(r, "configuration out of range");
    c->latent = FM_LATENT_FP32;
    if (version >= 2) {
        uint32_t latent;
        if ((rc = fmi_get_u32(r, &latent, "latent precision")) < 0)
            return rc;
        if (latent > FM_LATENT_BF16)
            return bad(r, "latent precision out of range");
        c->latent = (fm_latent)latent;
    }
    if (c->opt == FM_OPT_BOP && ((rc = fmi_get_f64(r, &c->bop_gamma, "bop gamma")) < 0 ||
                                 (rc = fmi_get_f64(r, &c->bop_threshold, "bop threshold")) < 0 ||
                                 (version >= 2 &&
                                  (rc = fmi_get_f64(r, &c->bop_gamma_final, "bop final gamma")) < 0)))
        return rc;
    return FM_OK;
}

static int get_data(fm_reader *r, fm_checkpoint *ck)
{
    uint32_t n, u[7];
    int rc = fmi_get_u32(r, &n, "data spec length");
    if (rc < 0)
        return rc;
    if (n > DATA_SPEC_MAX)
        return bad(r, "data spec is too long");
    if (!(ck->data_spec = fmi_alloc_raw(n + 1)))
        return FM_ENOMEM;
    if ((rc = fmi_get_bytes(r, ck->data_spec, n, "data spec")) < 0)
        return rc;
    ck->data_spec[n] = '\0';
    if (memchr(ck->data_spec, '\0', n))
        return bad(r, "data spec holds a NUL byte");
    for (int i = 0; i < 7; i++)
        if ((rc = fmi_get_u32(r, &u[i], "data identity")) < 0)
            return rc;
    if (u[0] < 1 || u[0] > INT32_MAX || (u[1] > INT32_MAX && u[1] != NO_TEST))
        return bad(r, "data counts out of range");
    fm_data_id *d = &ck->data;
    d->train_count = (int32_t)u[0];
    d->test_count = u[1] == NO_TEST ? -1 : (int32_t)u[1];
    const fm_model *m = ck->model;
    if ((uint64_t)u[2] * u[3] * u[4] != (uint64_t)m->input_dim || u[2] < 1 || u[3] < 1 || u[4] < 1)
        return bad(r, "data shape does not match the model's input");
    d->height = (int32_t)u[2];
    d->width = (int32_t)u[3];
    d->channels = (int32_t)u[4];
    d->train_crc = u[5];
    d->test_crc = u[6];
    if (d->test_count < 0 && d->test_crc != 0)
        return bad(r, "test set CRC without a test set");
    return FM_OK;
}

static int get_run(fm_reader *r, fm_run *run)
{
    uint32_t epoch, next, best_epoch, have_best, evaluated;
    uint64_t errors, batches;
    int rc;
    if ((rc = fmi_get_u32(r, &epoch, "epoch")) < 0 || (rc = fmi_get_u32(r, &next, "position")) < 0 ||
        (rc = fmi_get_u64(r, &run->step, "step")) < 0 || (rc = fmi_get_f64(r, &run->lr, "rate")) < 0 ||
        (rc = fmi_get_u64(r, &run->shuffle, "shuffle state")) < 0 ||
        (rc = fmi_get_f64(r, &run->loss_sum, "loss sum")) < 0 ||
        (rc = fmi_get_u64(r, &errors, "errors")) < 0 || (rc = fmi_get_u64(r, &batches, "batches")) < 0 ||
        (rc = fmi_get_f64(r, &run->epoch_train_seconds, "epoch time")) < 0 ||
        (rc = fmi_get_f64(r, &run->best_valid, "best validation error")) < 0 ||
        (rc = fmi_get_f64(r, &run->best_test, "best test error")) < 0 ||
        (rc = fmi_get_u32(r, &best_epoch, "best epoch")) < 0 ||
        (rc = fmi_get_u32(r, &have_best, "best flag")) < 0 ||
        (rc = fmi_get_u32(r, &evaluated, "evaluated flag")) < 0 ||
        (rc = fmi_get_f64(r, &run->train_seconds, "training time")) < 0 ||
        (rc = fmi_get_f64(r, &run->elapsed_seconds, "elapsed time")) < 0 ||
        (rc = fmi_get_f64(r, &run->final_train_loss, "final loss")) < 0 ||
        (rc = fmi_get_u64(r, &run->mulfree_fallbacks, "fallbacks")) < 0)
        return rc;
    if (epoch > INT32_MAX || next > INT32_MAX || best_epoch > INT32_MAX ||
        have_best > 1 || evaluated > 1 || errors > INT64_MAX || batches > INT64_MAX)
        return bad(r, "position out of range");
    run->epoch = (int)epoch;
    run->next = (int)next;
    run->errors = (int64_t)errors;
    run->batches = (int64_t)batches;
    run->best_epoch = (int)best_epoch;
    run->have_best = (int)have_best;
    run->evaluated = (int)evaluated;
    return FM_OK;
}

static int bad_field(const fm_reader *r, const char *fmt, ...) FM_PRINTF(2, 3);
static int bad_field(const fm_reader *r, const char *fmt, ...)
{
    char what[384];
    va_list args;
    va_start(args, fmt);
    vsnprintf(what, sizeof what, fmt, args);
    va_end(args);
    return bad(r, what);
}

/* A duration in seconds: finite and not negative. */
static int is_seconds(double s) { return isfinite(s) && s >= 0.0; }
/* An error rate: a percentage; `none` is the value that means "not measured". */
static int is_percent(double p, double none) { return p == none || (p >= 0.0 && p <= 100.0); }

/* The position must be one fm_train can be at for this configuration, and
 * every figure of the run one it can have there; a failure names the field. */
static int check_run(const fm_reader *r, const fm_checkpoint *ck)
{
    const fm_config *c = &ck->config;
    const fm_run *run = &ck->run;
    long expect = (long)ck->data.train_count - c->valid;
    if (c->train_limit > 0 && c->train_limit < expect)
        expect = c->train_limit;
    if (expect < 1 || run->n_train != expect)
        return bad(r, "order does not match the data and validation split");
    if (run->epoch < 1 || run->epoch > c->epochs + 1)
        return bad_field(r, "epoch %d is outside 1..%d", run->epoch, c->epochs + 1);
    if (run->next > run->n_train || (run->epoch == c->epochs + 1 && run->next != 0))
        return bad_field(r, "position %d is not one epoch %d of %d images can be at", run->next,
                         run->epoch, run->n_train);
    /* a minibatch takes `batch` images of the order, the last one the rest;
     * before an epoch starts (position 0) its figures are the last epoch's */
    const uint64_t per_epoch = ((uint64_t)run->n_train + (uint64_t)c->batch - 1) / (uint64_t)c->batch;
    const uint64_t batches = ((uint64_t)run->next + (uint64_t)c->batch - 1) / (uint64_t)c->batch;
    if (run->next ? (uint64_t)run->batches != batches : (uint64_t)run->batches > per_epoch)
        return bad_field(r, "minibatch count %lld does not match position %d (batch %d)",
                         (long long)run->batches, run->next, c->batch);
    const uint64_t steps = (uint64_t)(run->epoch - 1) * per_epoch + batches;
    if (run->step != steps)
        return bad_field(r, "step %llu is not the %llu steps of epoch %d, position %d",
                         (unsigned long long)run->step, (unsigned long long)steps, run->epoch,
                         run->next);
    if (run->errors > (run->next ? run->next : run->n_train))
        return bad_field(r, "training errors %lld are more than the epoch's images so far",
                         (long long)run->errors);
    if (run->loss_sum < 0.0 || run->final_train_loss < 0.0) /* a diverged run's NaN or +inf stays */
        return bad_field(r, "%s %g is negative", run->loss_sum < 0.0 ? "loss sum" : "final loss",
                         run->loss_sum < 0.0 ? run->loss_sum : run->final_train_loss);
    const double times[] = {run->epoch_train_seconds, run->train_seconds, run->elapsed_seconds};
    const char *time_names[] = {"this epoch's training", "training", "elapsed"};
    for (int i = 0; i < 3; i++)
        if (!is_seconds(times[i]))
            return bad_field(r, "%s time %g s is not a duration", time_names[i], times[i]);
    if (!is_percent(run->best_valid, INFINITY) || (run->best_epoch == 0 && run->best_valid != INFINITY))
        return bad_field(r, "best validation error %g%% is not a percentage (+inf before any)",
                         run->best_valid);
    if (!is_percent(run->best_test, -1.0) || (run->best_epoch == 0 && run->best_test != -1.0))
        return bad_field(r, "best test error %g%% is not a percentage (-1 when not measured)",
                         run->best_test);
    if (run->best_epoch >= run->epoch || (run->best_epoch > 0) != run->have_best ||
        run->have_best > run->evaluated)
        return bad_field(r, "best epoch %d (weights kept: %d, evaluated: %d) is not one epoch %d "
                         "can have", run->best_epoch, run->have_best, run->evaluated, run->epoch);
    if (!(run->lr > 0) || !isfinite(run->lr))
        return bad_field(r, "learning rate %g is not a positive number", run->lr);
    return FM_OK;
}

/* order[] must be a permutation of 0..n-1: training indexes images with it. */
static int get_order(fm_reader *r, fm_run *run)
{
    uint32_t n;
    int rc = fmi_get_u32(r, &n, "order length");
    if (rc < 0)
        return rc;
    if (n < 1 || n > INT32_MAX || (uint64_t)n * 4 > r->left)
        return fmi_error(FM_ETRUNC, "%s: truncated checkpoint (an order of %u images)", r->path, n);
    run->n_train = (int)n;
    uint8_t *seen = fmi_alloc(n, 1);
    if (!(run->order = fmi_alloc(n, sizeof *run->order)) || !seen) {
        fmi_free(seen);
        return FM_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v;
        fmi_get_u32(r, &v, "order");
        if (v >= n || seen[v]) {
            fmi_free(seen);
            return bad(r, "data order is not a permutation");
        }
        seen[v] = 1;
        run->order[i] = (int)v;
    }
    fmi_free(seen);
    return FM_OK;
}

static int get_state_copy(fm_reader *r, float **dst, size_t S, const char *what)
{
    if (r->left / 4 < S)
        return fmi_error(FM_ETRUNC, "%s: truncated checkpoint (reading %s)", r->path, what);
    if (!(*dst = fmi_alloc(S, sizeof **dst)))
        return FM_ENOMEM;
    return fmi_get_f32s(r, *dst, S, what);
}

static int check_version(const char *path, uint32_t version)
{
    if (version < 1 || version > CHECKPOINT_VERSION)
        return fmi_error(version > CHECKPOINT_VERSION ? FM_EUNSUPPORTED : FM_EFORMAT,
                        "%s: checkpoint version %u, this fewmul reads 1 to %u", path, version,
                        CHECKPOINT_VERSION);
    return FM_OK;
}

static int parse_checkpoint(fm_reader *r, fm_checkpoint *ck)
{
    char magic[8];
    uint32_t version;
    uint64_t model_bytes;
    int rc;
    if ((rc = fmi_get_bytes(r, magic, 8, "magic")) < 0)
        return rc;
    if (memcmp(magic, CHECKPOINT_MAGIC, 8) != 0)
        return fmi_error(FM_EFORMAT, "%s: not a fewmul checkpoint (bad magic)", r->path);
    if ((rc = fmi_get_u32(r, &version, "version")) < 0)
        return rc;
    if ((rc = check_version(r->path, version)) < 0)
        return rc;
    if ((rc = fmi_get_u64(r, &model_bytes, "model length")) < 0)
        return rc;
    if (model_bytes > r->left)
        return fmi_error(FM_ETRUNC, "%s: truncated checkpoint (a model of %llu bytes)", r->path,
                        (unsigned long long)model_bytes);
    if ((rc = fmi_model_parse(r->p, (size_t)model_bytes, r->path, &ck->model)) < 0)
        return rc;
    r->p += model_bytes;
    r->left -= (size_t)model_bytes;
    fm_model *m = ck->model;
    ck->config = m->config;
    ck->config.arch = m->arch;
    if ((rc = get_config(r, &ck->config, version)) < 0)
        return rc;
    if ((rc = fm_config_check(&ck->config)) < 0) {
        char why[FMI_MESSAGE_CAP]; /* fmi_error formats into the buffer fm_last_error() returns */
        snprintf(why, sizeof why, "%s", fm_last_error());
        return fmi_error(FM_EFORMAT, "%s: bad configuration: %s", r->path, why);
    }
    m->config = ck->config;
    if ((rc = get_data(r, ck)) < 0 || (rc = get_run(r, &ck->run)) < 0)
        return rc;
    uint64_t S;
    uint32_t arrays;
    if ((rc = fmi_get_u64(r, &S, "state size")) < 0 ||
        (rc = fmi_get_u32(r, &arrays, "optimizer arrays")) < 0)
        return rc;
    if (S != m->state_count)
        return bad(r, "state size does not match the model");
    if (arrays != (uint32_t)fmi_run_optimizer_arrays(&ck->config))
        return bad(r, "optimizer arrays do not match the optimizer");
    if ((arrays >= 1 && (rc = get_state_copy(r, &ck->run.s1, S, "optimizer state")) < 0) ||
        (arrays >= 2 && (rc = get_state_copy(r, &ck->run.s2, S, "optimizer state")) < 0) ||
        (ck->run.have_best && (rc = get_state_copy(r, &ck->run.best, S, "best weights")) < 0))
        return rc;
    if ((rc = get_order(r, &ck->run)) < 0 || (rc = check_run(r, ck)) < 0)
        return rc;
    uint32_t has_ledger;
    if ((rc = fmi_get_u32(r, &has_ledger, "ledger flag")) < 0)
        return rc;
    if (has_ledger > 1)
        return bad(r, "ledger flag out of range");
    if (has_ledger) {
        if ((rc = fm_ledger_create(&ck->ledger)) < 0)
            return rc;
        fm_reader lr = *r;
        lr.kind = "checkpoint";
        if ((rc = fmi_ledger_parse(&lr, ck->ledger)) < 0)
            return rc;
        *r = lr;
    }
    if (r->left != 0)
        return fmi_error(FM_EFORMAT, "%s: %zu unexpected bytes at the end of the checkpoint",
                        r->path, r->left);
    return FM_OK;
}

/* ---- the head of a large checkpoint -------------------------------------- */

/* The bytes put_config writes, put_data after the data spec and put_run, and
 * the offset of the best-weights flag in the last. */
#define CONFIG_BYTES 64u
#define LATENT_CONFIG_BYTES 4u /* version 2's latent precision */
#define BOP_CONFIG_BYTES 16u /* bop's gamma and threshold, after the rest */
#define BOP_FINAL_BYTES 8u /* version 2: bop's final gamma, after them */
#define DATA_FIXED_BYTES 28u
#define RUN_BYTES 124u
#define RUN_HAVE_BEST_AT 84u
/* A ledger's counts of layers, tensors and traffic records and its pass
 * counts; a run's ledger is kilobytes, and none comes near the maximum. */
#define LEDGER_MIN_BYTES (12u + 16u * FM_PHASES)
#define LEDGER_MAX_BYTES ((uint64_t)64 << 20)

static int head_u32(const fmi_file_head *f, uint64_t at, uint32_t *v, const char *what)
{
    uint8_t b[4];
    int rc = fmi_head_read(f, at, b, 4, what);
    *v = fmi_load_le32(b);
    return rc;
}

/* Walks a checkpoint larger than fmi_read_whole_max by its counts, reading only
 * them, and checks the size they add up to against the file's: the model file
 * inside (its own head), the configuration, the data spec's length, the state
 * and optimizer arrays, the best weights' flag, the order's length and the
 * ledger's flag (a ledger at most LEDGER_MAX_BYTES). */
static int check_checkpoint_head(const fmi_file_head *f, void *user)
{
    (void)user;
    uint8_t b[CONFIG_BYTES + LATENT_CONFIG_BYTES + BOP_CONFIG_BYTES + BOP_FINAL_BYTES];
    int rc = fmi_head_read(f, 0, b, 20, "header");
    if (rc < 0)
        return rc;
    if (memcmp(b, CHECKPOINT_MAGIC, 8) != 0)
        return fmi_error(FM_EFORMAT, "%s: not a fewmul checkpoint (bad magic)", f->path);
    const uint32_t version = fmi_load_le32(b + 8);
    if ((rc = check_version(f->path, version)) < 0)
        return rc;
    const uint64_t model_bytes = fmi_load_le64(b + 12);
    if (f->size < 24 || model_bytes > f->size - 24)
        return fmi_error(FM_ETRUNC, "%s: truncated checkpoint (a model of %llu bytes)", f->path,
                        (unsigned long long)model_bytes);
    fmi_model_head model;
    if ((rc = fmi_model_file_head(f, 20, model_bytes, &model)) < 0)
        return rc;
    if (model.bytes != model_bytes)
        return fmi_error(FM_EFORMAT, "%s: the checkpoint's model file of %llu bytes declares %llu",
                        f->path, (unsigned long long)model_bytes, (unsigned long long)model.bytes);
    uint64_t at = 20 + model_bytes;
    fm_config c;
    fm_config_default(&c);
    c.opt = model.opt;
    const size_t config_bytes =
        CONFIG_BYTES + (version >= 2 ? LATENT_CONFIG_BYTES : 0) +
        (c.opt == FM_OPT_BOP ? BOP_CONFIG_BYTES + (version >= 2 ? BOP_FINAL_BYTES : 0) : 0);
    fm_reader r = {b, config_bytes, f->path, "checkpoint"};
    if ((rc = fmi_head_read(f, at, b, config_bytes, "configuration")) < 0 ||
        (rc = get_config(&r, &c, version)) < 0)
        return rc;
    const uint64_t arrays = (uint64_t)fmi_run_optimizer_arrays(&c);
    uint32_t n, have_best, has_ledger;
    at += config_bytes;
    if ((rc = head_u32(f, at, &n, "data spec length")) < 0)
        return rc;
    if (n > DATA_SPEC_MAX)
        return bad(&r, "data spec is too long");
    at += 4 + n + DATA_FIXED_BYTES;
    if ((rc = head_u32(f, at + RUN_HAVE_BEST_AT, &have_best, "best flag")) < 0)
        return rc;
    if (have_best > 1)
        return bad(&r, "position out of range");
    at += RUN_BYTES;
    if ((rc = fmi_head_read(f, at, b, 12, "state size")) < 0)
        return rc;
    if (fmi_load_le64(b) != (uint64_t)model.state_count)
        return bad(&r, "state size does not match the model");
    if (fmi_load_le32(b + 8) != arrays)
        return bad(&r, "optimizer arrays do not match the optimizer");
    at += 12 + 4 * (uint64_t)model.state_count * (arrays + have_best);
    if ((rc = head_u32(f, at, &n, "order length")) < 0)
        return rc;
    at += 4 + 4 * (uint64_t)n;
    if ((rc = head_u32(f, at, &has_ledger, "ledger flag")) < 0)
        return rc;
    if (has_ledger > 1)
        return bad(&r, "ledger flag out of range");
    const uint64_t end = at + 4 + 4; /* the flag, then the CRC */
    const uint64_t ledger_min = has_ledger ? LEDGER_MIN_BYTES : 0;
    const uint64_t ledger_max = has_ledger ? LEDGER_MAX_BYTES : 0;
    if (f->size < end + ledger_min)
        return fmi_error(FM_ETRUNC, "%s: truncated checkpoint: its counts declare at least %llu bytes, "
                        "the file has %llu", f->path, (unsigned long long)(end + ledger_min),
                        (unsigned long long)f->size);
    if (f->size - end > ledger_max)
        return fmi_error(FM_EFORMAT, "%s: %llu unexpected bytes at the end of the checkpoint (its "
                        "counts declare %llu bytes%s)", f->path,
                        (unsigned long long)(f->size - end - ledger_max), (unsigned long long)end,
                        has_ledger ? " and a ledger of at most 64 MiB" : "");
    return FM_OK;
}

int fm_checkpoint_load(const char *path, fm_checkpoint **out)
{
    if (!path || !out)
        return fmi_error(FM_EINVAL, "fm_checkpoint_load: NULL argument");
    *out = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = fmi_file_read_checked(path, CHECKPOINT_MAX_BYTES, "checkpoint", check_checkpoint_head,
                                   NULL, &data, &len);
    if (rc < 0)
        return rc;
    fm_checkpoint *ck = NULL;
    if (len < 16) {
        rc = fmi_error(FM_ETRUNC, "%s: %zu bytes is too short for a checkpoint", path, len);
    } else if (memcmp(data, CHECKPOINT_MAGIC, 8) == 0 &&
               fmi_crc32(data, len - 4) != fmi_load_le32(data + len - 4)) {
        rc = fmi_error(FM_EFORMAT, "%s: checksum mismatch (checkpoint damaged or truncated)", path);
    } else if (!(ck = fmi_alloc(1, sizeof *ck))) {
        rc = FM_ENOMEM;
    } else {
        fm_reader r = {data, len - 4, path, "checkpoint"};
        rc = parse_checkpoint(&r, ck);
    }
    fmi_free(data);
    if (rc < 0) {
        fm_checkpoint_free(ck);
        return rc;
    }
    *out = ck;
    return FM_OK;
}

void fm_checkpoint_free(fm_checkpoint *ck)
{
    if (!ck)
        return;
    fm_model_free(ck->model);
    fmi_free(ck->data_spec);
    fmi_free(ck->run.s1);
    fmi_free(ck->run.s2);
    fmi_free(ck->run.best);
    fmi_free(ck->run.order);
    fm_ledger_free(ck->ledger);
    fmi_free(ck);
}

const fm_config *fm_checkpoint_config(const fm_checkpoint *ck) { return ck ? &ck->config : NULL; }

const char *fm_checkpoint_data(const fm_checkpoint *ck) { return ck ? ck->data_spec : NULL; }

int fm_checkpoint_position(const fm_checkpoint *ck, fm_checkpoint_info *info)
{
    if (!ck || !info)
        return fmi_error(FM_EINVAL, "fm_checkpoint_position: NULL argument");
    fmi_run_position(&ck->run, &ck->config, ck->ledger != NULL, info);
    return FM_OK;
}

int fm_checkpoint_model(const fm_checkpoint *ck, fm_model **out)
{
    if (!ck || !out)
        return fmi_error(FM_EINVAL, "fm_checkpoint_model: NULL argument");
    const fm_model *src = ck->model;
    int rc = fmi_model_build(&ck->config, src->in_h, src->in_w, src->in_c, src->classes, SIZE_MAX, out);
    if (rc < 0)
        return rc;
    fm_model *m = *out;
    memcpy(m->state, src->state, src->state_count * sizeof *m->state);
    memcpy(m->input_mean, src->input_mean, (size_t)src->input_dim * sizeof *m->input_mean);
    if (src->zca)
        memcpy(m->zca, src->zca, (size_t)src->input_dim * src->input_dim * sizeof *m->zca);
    return FM_OK;
}
