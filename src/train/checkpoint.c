/* checkpoint.c — the checkpoint file of a training run (docs/checkpoint-format.md):
 * a whole training model file, the rest of the configuration, what identifies
 * the data, the run's position, the optimizer's arrays, the best epoch's
 * weights, the data order and the ledger, closed by a CRC-32. Written to
 * PATH.tmp, synced and renamed; read with every count checked first. */
#include "checkpoint.h"
#include "internal.h"
#include "ledger.h"
#include "model_file.h"
#include "net.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define CHECKPOINT_MAGIC "FMULCKPT"
#define CHECKPOINT_VERSION 1u
/* A checkpoint of the largest model file plus three more copies of its state. */
#define CHECKPOINT_MAX_BYTES ((size_t)1 << 34)
#define DATA_SPEC_MAX 4096u
#define NO_TEST UINT32_MAX

int fmi_run_optimizer_arrays(const fm_config *c)
{
    if (c->opt == FM_OPT_ADAM)
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

static int get_config(fm_reader *r, fm_config *c)
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

/* The position must be one fm_train can be at for this configuration. */
static int check_run(const fm_reader *r, const fm_checkpoint *ck)
{
    const fm_config *c = &ck->config;
    const fm_run *run = &ck->run;
    long expect = (long)ck->data.train_count - c->valid;
    if (c->train_limit > 0 && c->train_limit < expect)
        expect = c->train_limit;
    if (expect < 1 || run->n_train != expect)
        return bad(r, "order does not match the data and validation split");
    if (run->epoch < 1 || run->epoch > c->epochs + 1 || run->next > run->n_train ||
        (run->epoch == c->epochs + 1 && run->next != 0) || run->best_epoch >= run->epoch ||
        (run->best_epoch > 0) != run->have_best || run->have_best > run->evaluated)
        return bad(r, "position is not one a run can reach");
    if (!(run->lr > 0) || !isfinite(run->lr))
        return bad(r, "learning rate is not a positive number");
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
    if (version != CHECKPOINT_VERSION)
        return fmi_error(version > CHECKPOINT_VERSION ? FM_EUNSUPPORTED : FM_EFORMAT,
                        "%s: checkpoint version %u, this fewmul reads %u", r->path, version,
                        CHECKPOINT_VERSION);
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
    if ((rc = get_config(r, &ck->config)) < 0)
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

int fm_checkpoint_load(const char *path, fm_checkpoint **out)
{
    if (!path || !out)
        return fmi_error(FM_EINVAL, "fm_checkpoint_load: NULL argument");
    *out = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = fmi_file_read_all(path, CHECKPOINT_MAX_BYTES, "checkpoint", &data, &len);
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
