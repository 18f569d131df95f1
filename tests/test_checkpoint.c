/* test_checkpoint.c — a run interrupted at any step and resumed from its
 * checkpoint ends with the same bits as a run never interrupted (weights, result,
 * ledger), across optimizers, modes, batch-norm statistics, dropout,
 * convolutions and the multiplication-free path; a run gives the same bits on
 * 1 and 2 threads, and resumed on the other count; checkpoints are refused when
 * truncated, damaged or hostile (every field of the run out of its range
 * behind a valid CRC, a sparse file behind a good header), and when the data
 * or configuration differ;
 * every allocation of a checkpoint load, a model load, a training step and a
 * resume fails cleanly in turn, leaking nothing; a failed write leaves the old
 * checkpoint as it was. Synthetic data: needs nothing from ../shared. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define SUPPORT_NAME "checkpoint"
#include "support.h"

#include "bytes.h"
#include "fewmul.h"

#include <math.h>

/* ---- synthetic data: 8x8 images whose bright quadrant is the class ------- */

static fm_images train_set, test_set;


static int data_setup(void **state)
{
    make_quadrant_set(&train_set, 500, 1);
    make_quadrant_set(&test_set, 120, 2);
    return group_setup(state);
}

static int data_teardown(void **state)
{
    free(train_set.pixels);
    free(train_set.labels);
    free(test_set.pixels);
    free(test_set.labels);
    return group_teardown(state);
}

/* ---- runs ----------------------------------------------------------------- */

/* 400 training images in batches of 40 (10 steps an epoch), 100 validation. */
static void base_config(fm_config *c, const char *arch, const char *weights)
{
    fm_config_default(c);
    c->arch = arch;
    assert_int_equal(fm_parse_weights(weights, c), FM_OK);
    c->epochs = 3;
    c->batch = 40;
    c->valid = 100;
    c->threads = 1;
}

typedef struct stopper {
    long polls, stop_at;     /* should_stop answers yes at the stop_at-th poll (0: never) */
    long checkpoints, copy_at; /* on_checkpoint copies the copy_at-th checkpoint aside */
    const char *copy_to;
    fm_checkpoint_info last;
} stopper;

static int stop_when_told(void *user)
{
    stopper *s = user;
    return s->stop_at > 0 && ++s->polls == s->stop_at;
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    uint8_t *bytes = read_whole_file(from, &n);
    write_whole_file(to, bytes, n);
    free(bytes);
}

static void on_checkpoint(const char *path, const fm_checkpoint_info *where, void *user)
{
    stopper *s = user;
    s->last = *where;
    if (++s->checkpoints == s->copy_at)
        copy_file(path, s->copy_to);
}

typedef struct outcome {
    int rc;
    fm_result result;
    uint8_t *state; /* the final model file's bytes (whole_state) */
    long state_count;
    fm_ledger *ledger;
} outcome;

static void outcome_free(outcome *o)
{
    free(o->state);
    fm_ledger_free(o->ledger);
    memset(o, 0, sizeof *o);
}

/* A model as its training model file holds it (configuration, input
 * statistics, every weight and batch-norm value), malloc'ed; *count: bytes. */
static uint8_t *whole_state(const fm_model *m, long *count)
{
    const char *path = tpath("state.fm");
    assert_int_equal(fm_model_save(m, path), FM_OK);
    size_t n;
    uint8_t *bytes = read_whole_file(path, &n);
    *count = (long)n;
    return bytes;
}

/* One call of fm_train, fresh or resumed, with a checkpoint path or none. */
static outcome train_once(const fm_config *c, const char *checkpoint, long every,
                          const fm_checkpoint *resume, stopper *s, int with_ledger)
{
    outcome o = {0};
    fm_model *m;
    if (resume)
        assert_int_equal(fm_checkpoint_model(resume, &m), FM_OK);
    else
        assert_int_equal(fm_model_create_image(c, 8, 8, 1, 4, &m), FM_OK);
    if (with_ledger)
        assert_int_equal(fm_ledger_create(&o.ledger), FM_OK);
    fm_callbacks cb = {.should_stop = stop_when_told,
                       .on_checkpoint = on_checkpoint,
                       .user = s,
                       .ledger = o.ledger,
                       .checkpoint = checkpoint,
                       .checkpoint_every = every,
                       .data_spec = "synthetic:8x8",
                       .resume = resume};
    o.rc = fm_train(m, &train_set, &test_set, c, &cb, &o.result);
    if (o.rc == FM_OK)
        o.state = whole_state(m, &o.state_count);
    fm_model_free(m);
    return o;
}

static void assert_ledgers_equal(const fm_ledger *a, const fm_ledger *b)
{
    assert_int_equal(fm_ledger_layers(a), fm_ledger_layers(b));
    for (int l = 0; l < fm_ledger_layers(a); l++)
        for (int p = 0; p < FM_PHASES; p++) {
            for (int op = 0; op < FM_OP_KINDS; op++)
                assert_true(fm_ledger_ops(a, l, p, (fm_op)op) == fm_ledger_ops(b, l, p, (fm_op)op));
            assert_true(fm_ledger_bytes(a, l, p, -1, 0) == fm_ledger_bytes(b, l, p, -1, 0));
            assert_true(fm_ledger_bytes(a, l, p, -1, 1) == fm_ledger_bytes(b, l, p, -1, 1));
        }
    for (int p = 0; p < FM_PHASES; p++) {
        uint64_t ea, eb;
        assert_true(fm_ledger_passes(a, p, &ea) == fm_ledger_passes(b, p, &eb));
        assert_true(ea == eb);
    }
}

static void assert_same_run(const outcome *a, const outcome *b, const char *what)
{
    assert_int_equal(a->rc, FM_OK);
    assert_int_equal(b->rc, FM_OK);
    if (a->state_count != b->state_count ||
        memcmp(a->state, b->state, (size_t)a->state_count) != 0)
        fail_msg("%s: the resumed run's model differs from the uninterrupted run's", what);
    assert_int_equal(a->result.best_epoch, b->result.best_epoch);
    assert_int_equal(a->result.epochs, b->result.epochs);
    assert_true(a->result.test_error_pct == b->result.test_error_pct);
    assert_true(a->result.valid_error_pct == b->result.valid_error_pct);
    assert_true(a->result.final_train_loss == b->result.final_train_loss);
    assert_int_equal(a->result.ldexp_fallbacks, b->result.ldexp_fallbacks);
    if (a->ledger || b->ledger)
        assert_ledgers_equal(a->ledger, b->ledger);
}

/* Interrupts the run at each listed step (1-based, counted over the whole run,
 * resumed runs included), resuming from the checkpoint each time, and holds
 * the end against the uninterrupted run. */
static void interrupted_equals_uninterrupted(const fm_config *c, const long *stops, int n_stops,
                                             int with_ledger, const char *what)
{
    stopper quiet = {0};
    outcome plain = train_once(c, NULL, 0, NULL, &quiet, with_ledger);
    assert_int_equal(plain.rc, FM_OK);

    const char *path = tpath("run.fmc");
    remove(path);
    fm_checkpoint *ck = NULL;
    long done = 0;
    outcome last = {0};
    for (int i = 0; i <= n_stops; i++) {
        stopper s = {.stop_at = i < n_stops ? stops[i] - done : 0};
        outcome o = train_once(c, path, 0, ck, &s, with_ledger);
        fm_checkpoint_free(ck);
        ck = NULL;
        if (i < n_stops) {
            if (o.rc != FM_ECANCELED)
                fail_msg("%s: expected the run to stop at step %ld, got %d (%s)", what, stops[i], o.rc,
                         fm_last_error());
            assert_true((long)s.last.step == stops[i]);
            done = stops[i];
            outcome_free(&o);
            assert_int_equal(fm_checkpoint_load(path, &ck), FM_OK);
        } else {
            last = o;
        }
    }
    assert_same_run(&plain, &last, what);
    outcome_free(&plain);
    outcome_free(&last);
}

/* Steps 1, 7, 10 (an epoch's last batch, before its evaluation), 11, 29. */
static const long some_stops[] = {1, 7, 10, 11, 29};

static void test_resume_fp32_sgd(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:16", "fp32");
    interrupted_equals_uninterrupted(&c, some_stops, 5, 0, "fp32 sgd");
}

static void test_resume_bc_qb_momentum_ledger(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:16,12", "bc");
    c.qb = 1;
    c.momentum = 0.9;
    interrupted_equals_uninterrupted(&c, some_stops, 5, 1, "bc+qb momentum, ledger");
}

static void test_resume_tc_adam_running_dropout(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:16", "tc");
    c.qb = 1;
    c.opt = FM_OPT_ADAM;
    c.bn_stats = FM_BN_RUNNING;
    c.dropout = 0.2;
    c.loss = FM_LOSS_XENT;
    interrupted_equals_uninterrupted(&c, some_stops, 5, 0, "tc+qb adam, running bn, dropout");
}

static void test_resume_synapse_eval_every(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:12", "synapse:26");
    c.qb = 1;
    c.epochs = 4;
    c.eval_every = 3;
    c.train_limit = 300; /* 8 batches of 40 then one of 20 */
    const long stops[] = {3, 8, 17, 31};
    interrupted_equals_uninterrupted(&c, stops, 4, 0, "synapse, eval every 3, partial batch");
}

static void test_resume_conv(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "conv:4k3,pool2,fc8", "bc-det");
    c.qb = 1;
    c.threads = 2;
    const long stops[] = {5, 20};
    interrupted_equals_uninterrupted(&c, stops, 2, 1, "conv bc-det+qb, 2 threads");
}

/* gcn-zca and gcn-lcn inputs are preprocessed once at the start of a run
 * (net.h, fm_input_cache): a resumed run preprocesses them again, into the
 * same bits, from its own start in the middle of the run. */
static void test_resume_gcn(void **state)
{
    (void)state;
    const fm_preproc kinds[] = {FM_PRE_GCN_ZCA, FM_PRE_GCN_LCN};
    for (int k = 0; k < 2; k++) {
        fm_config c;
        base_config(&c, "conv:4k3,pool2,fc8", "bc");
        c.qb = 1;
        c.threads = 2;
        c.preproc = kinds[k];
        const long stops[] = {4, 10, 23};
        interrupted_equals_uninterrupted(&c, stops, 3, 1, k == 0 ? "conv, gcn-zca" : "conv, gcn-lcn");
    }
}

static void test_resume_mulfree(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:16", "bc");
    c.qb = 1;
    c.exec = FM_EXEC_MULFREE;
    c.preproc = FM_PRE_UNIT;
    interrupted_equals_uninterrupted(&c, some_stops, 5, 0, "bc+qb mulfree");
}

/* Bop: the checkpoint holds the bits (the model's weights), the momenta
 * and batch norm's Adam moments, and bop's gamma and threshold. */
static void test_resume_bop_ledger(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:16,12", "bc-det");
    c.opt = FM_OPT_BOP;
    c.qb = 1;
    c.bop_gamma = 0.01;
    c.bop_threshold = 1e-5;
    interrupted_equals_uninterrupted(&c, some_stops, 5, 1, "bop+qb, ledger");
}

static void test_resume_bop_mulfree_conv(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:16", "bc-det");
    c.opt = FM_OPT_BOP;
    c.qb = 1;
    c.exec = FM_EXEC_MULFREE;
    c.preproc = FM_PRE_UNIT;
    interrupted_equals_uninterrupted(&c, some_stops, 5, 0, "bop+qb mulfree");
    base_config(&c, "conv:4k3,pool2,fc8", "bc-det");
    c.opt = FM_OPT_BOP;
    c.qb = 1;
    c.threads = 2;
    const long stops[] = {5, 20};
    interrupted_equals_uninterrupted(&c, stops, 2, 1, "conv bop+qb, 2 threads");
}

/* The learning state in bf16 (its stochastic roundings keyed by the step)
 * and bop's decaying gamma (from the epoch) resume bit for bit: bop fused
 * and with bf16 momenta, and SGD's latent weights in bf16. */
static void test_resume_bf16_gamma_decay(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:16,12", "bc-det");
    c.opt = FM_OPT_BOP;
    c.qb = 1;
    c.bop_gamma = 0.01;
    c.bop_gamma_final = 1e-4;
    c.bop_threshold = 1e-5;
    c.latent = FM_LATENT_BF16;
    interrupted_equals_uninterrupted(&c, some_stops, 5, 1, "bop+qb bf16 decay, ledger");
    c.threads = 2;
    c.exec = FM_EXEC_MULFREE;
    c.preproc = FM_PRE_UNIT;
    interrupted_equals_uninterrupted(&c, some_stops, 5, 0, "bop+qb bf16 decay mulfree, 2 threads");
    base_config(&c, "mlp:16", "bc");
    c.qb = 1;
    c.latent = FM_LATENT_BF16;
    interrupted_equals_uninterrupted(&c, some_stops, 5, 0, "bc+qb bf16");
}

/* --fuse (the update in the backward pass, the next step's weights drawn
 * there) resumes bit for bit, and a run may add or drop it when it resumes:
 * each segment, fused or not, gives the unfused run's bits. */
static void test_resume_fuse(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:16,12", "bc");
    c.qb = 1;
    c.latent = FM_LATENT_BF16;
    c.fuse = 1;
    interrupted_equals_uninterrupted(&c, some_stops, 5, 0, "bc+qb bf16 fuse");
    c.weights = FM_WEIGHTS_TC;
    c.opt = FM_OPT_ADAM;
    c.test_quantized = 1; /* evaluations overwrite the drawn weights */
    c.threads = 2;
    interrupted_equals_uninterrupted(&c, some_stops, 5, 0, "tc+qb adam bf16 fuse, 2 threads");
    stopper quiet = {0};
    c.fuse = 0;
    outcome plain = train_once(&c, NULL, 0, NULL, &quiet, 0);
    const char *path = tpath("run.fmc");
    remove(path);
    fm_checkpoint *ck = NULL;
    long done = 0;
    outcome last = {0};
    for (int i = 0; i <= 3; i++) { /* fused, unfused, fused, then unfused to the end */
        c.fuse = i % 2 == 0;
        stopper s = {.stop_at = i < 3 ? some_stops[i + 1] - done : 0};
        outcome o = train_once(&c, path, 0, ck, &s, 0);
        fm_checkpoint_free(ck);
        ck = NULL;
        if (i == 3) {
            last = o;
            break;
        }
        assert_int_equal(o.rc, FM_ECANCELED);
        done = some_stops[i + 1];
        outcome_free(&o);
        assert_int_equal(fm_checkpoint_load(path, &ck), FM_OK);
    }
    assert_same_run(&plain, &last, "tc+qb adam bf16, --fuse added and dropped on resume");
    outcome_free(&plain);
    outcome_free(&last);
}

/* A bop run resumes only with its own gamma, threshold, final gamma and
 * latent precision. */
static void test_resume_bop_other_gamma_refused(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:16", "bc-det");
    c.opt = FM_OPT_BOP;
    const char *path = tpath("bop.fmc");
    remove(path);
    stopper s = {.stop_at = 3};
    outcome o = train_once(&c, path, 0, NULL, &s, 0);
    assert_int_equal(o.rc, FM_ECANCELED);
    outcome_free(&o);
    fm_checkpoint *ck;
    /* walked from its head first, as a large checkpoint is: bop's two fields
     * counted there too */
    const size_t whole = fmi_read_whole_max;
    fmi_read_whole_max = 0;
    int rc = fm_checkpoint_load(path, &ck);
    fmi_read_whole_max = whole;
    if (rc != FM_OK)
        fail_msg("%s", fm_last_error());
    fm_checkpoint_free(ck);
    assert_int_equal(fm_checkpoint_load(path, &ck), FM_OK);
    assert_true(fm_checkpoint_config(ck)->bop_gamma == c.bop_gamma);
    assert_true(fm_checkpoint_config(ck)->bop_threshold == c.bop_threshold);
    const char *names[4] = {"bop_gamma", "bop_threshold", "bop_gamma_final", "latent"};
    for (int i = 0; i < 4; i++) {
        fm_config changed = c;
        if (i == 0)
            changed.bop_gamma *= 2;
        else if (i == 1)
            changed.bop_threshold *= 2;
        else if (i == 2)
            changed.bop_gamma_final = 1e-5;
        else
            changed.latent = FM_LATENT_BF16;
        stopper quiet = {0};
        outcome r = train_once(&changed, NULL, 0, ck, &quiet, 0);
        assert_int_equal(r.rc, FM_EMISMATCH);
        assert_non_null(strstr(fm_last_error(), names[i]));
        outcome_free(&r);
    }
    fm_checkpoint_free(ck);
}

static void test_resume_no_validation(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:16", "tc-det");
    c.valid = 0;
    c.train_limit = 400;
    const long stops[] = {4, 15};
    interrupted_equals_uninterrupted(&c, stops, 2, 0, "no validation set");
}

/* ---- thread counts ---------------------------------------------------------- */

/* The same run on 1 and on 2 threads, and one stopped at step `stop` on
 * `first` threads and resumed on the other count, all end with the same bits
 * (model file, result, ledger). The layers are wide enough (products of
 * millions of multiply-adds) for the float products to be shared among
 * threads. */
static void threads_change_nothing(const fm_config *c, long stop, int first, const char *what)
{
#ifdef _OPENMP
    fm_config on[3] = {*c, *c, *c};
    on[1].threads = 1;
    on[2].threads = 2;
    stopper quiet = {0};
    outcome one = train_once(&on[1], NULL, 0, NULL, &quiet, 1);
    quiet = (stopper){0};
    outcome two = train_once(&on[2], NULL, 0, NULL, &quiet, 1);
    assert_int_equal(one.rc, FM_OK);
    assert_int_equal(two.rc, FM_OK);
    if (one.state_count != two.state_count || memcmp(one.state, two.state, (size_t)one.state_count))
        fail_msg("%s: 1 and 2 threads end with different models", what);
    assert_same_run(&one, &two, what);

    const char *path = tpath("threads.fmc");
    remove(path);
    stopper s = {.stop_at = stop};
    outcome part = train_once(&on[first], path, 0, NULL, &s, 1);
    assert_int_equal(part.rc, FM_ECANCELED);
    assert_true((long)s.last.step == stop);
    outcome_free(&part);
    fm_checkpoint *ck;
    assert_int_equal(fm_checkpoint_load(path, &ck), FM_OK);
    quiet = (stopper){0};
    outcome resumed = train_once(&on[3 - first], NULL, 0, ck, &quiet, 1);
    fm_checkpoint_free(ck);
    assert_int_equal(resumed.rc, FM_OK);
    if (resumed.state_count != one.state_count ||
        memcmp(resumed.state, one.state, (size_t)one.state_count))
        fail_msg("%s: stopped on %d threads and resumed on %d, the model differs from the "
                 "uninterrupted run's", what, first, 3 - first);
    assert_same_run(&one, &resumed, what);
    outcome_free(&one);
    outcome_free(&two);
    outcome_free(&resumed);
#else
    (void)c, (void)stop, (void)first, (void)what;
    print_message("skipped: built without OpenMP\n");
    skip();
#endif
}

static void test_threads_dense(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:256,256", "bc");
    c.qb = 1;
    c.momentum = 0.9;
    c.epochs = 2;
    c.train_limit = 200; /* 5 steps an epoch */
    threads_change_nothing(&c, 7, 2, "dense bc+qb");
}

static void test_threads_dense_fp32_adam(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:256,256", "fp32");
    c.opt = FM_OPT_ADAM;
    c.epochs = 2;
    c.train_limit = 200; /* 5 steps an epoch */
    threads_change_nothing(&c, 7, 1, "dense fp32 adam");
}

static void test_threads_conv(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "conv:16k3,pool2,fc256", "tc");
    c.qb = 1;
    c.epochs = 2;
    c.train_limit = 200; /* 5 steps an epoch */
    threads_change_nothing(&c, 7, 1, "conv tc+qb");
}

static void test_threads_mulfree(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:256,256", "tc");
    c.qb = 1;
    c.exec = FM_EXEC_MULFREE;
    c.epochs = 2;
    c.train_limit = 200; /* 5 steps an epoch */
    threads_change_nothing(&c, 7, 1, "tc+qb mulfree");
}

/* A CNN on the mulfree kernels, a strided convolution's input gradient (the
 * dilated error map) included. */
static void test_threads_conv_mulfree(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "conv:8k3,16k3s2same,pool2,fc64", "bc");
    c.qb = 1;
    c.exec = FM_EXEC_MULFREE;
    c.epochs = 2;
    c.train_limit = 200; /* 5 steps an epoch */
    threads_change_nothing(&c, 7, 2, "conv bc+qb mulfree");
}

/* A periodic checkpoint taken mid-run, the run then killed (here: simply
 * finished, its later checkpoints ignored), resumes to the same end; so does
 * the checkpoint of a finished run. */
static void test_resume_from_periodic_and_final(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:16", "bc");
    c.qb = 1;
    const char *path = tpath("periodic.fmc"), *copy = tpath("crash.fmc");
    stopper s = {.copy_at = 3, .copy_to = copy};
    outcome plain = train_once(&c, path, 4, NULL, &s, 0);
    assert_int_equal(plain.rc, FM_OK);
    /* every 4 steps within epochs (4, 8 | 12, 16 | ...) and each epoch's end:
     * the third checkpoint is the end of epoch 1 */
    assert_int_equal(s.checkpoints, 3 * 2 + 3);
    assert_int_equal(s.last.epoch, 4);
    fm_checkpoint *ck;
    assert_int_equal(fm_checkpoint_load(copy, &ck), FM_OK);
    fm_checkpoint_info where;
    assert_int_equal(fm_checkpoint_position(ck, &where), FM_OK);
    assert_int_equal(where.epoch, 2);
    assert_int_equal(where.images_done, 0);
    assert_true(where.step == 10);
    assert_string_equal(fm_checkpoint_data(ck), "synthetic:8x8");
    stopper none = {0};
    outcome resumed = train_once(&c, NULL, 0, ck, &none, 0);
    fm_checkpoint_free(ck);
    assert_same_run(&plain, &resumed, "periodic checkpoint");
    outcome_free(&resumed);

    assert_int_equal(fm_checkpoint_load(path, &ck), FM_OK);
    assert_int_equal(fm_checkpoint_position(ck, &where), FM_OK);
    assert_int_equal(where.epoch, c.epochs + 1);
    outcome again = train_once(&c, NULL, 0, ck, &none, 0);
    fm_checkpoint_free(ck);
    assert_same_run(&plain, &again, "finished run's checkpoint");
    outcome_free(&again);
    outcome_free(&plain);
}

/* ---- refusals ------------------------------------------------------------- */

/* A small checkpoint file's bytes (the run stopped mid-epoch 2), malloc'ed. */
static uint8_t *small_checkpoint(size_t *len, const fm_config *c, int with_ledger)
{
    const char *path = tpath("small.fmc");
    stopper s = {.stop_at = 13};
    outcome o = train_once(c, path, 0, NULL, &s, with_ledger);
    assert_int_equal(o.rc, FM_ECANCELED);
    outcome_free(&o);
    return read_whole_file(path, len);
}

static int load_path(const char *path)
{
    fm_checkpoint *ck = NULL;
    int rc = fm_checkpoint_load(path, &ck);
    if (rc == FM_OK)
        fm_checkpoint_free(ck);
    else
        assert_null(ck);
    return rc;
}

static int load_bytes(const uint8_t *data, size_t len)
{
    const char *path = tpath("bad.fmc");
    write_whole_file(path, data, len);
    return load_path(path);
}

static void fix_crc(uint8_t *data, size_t len)
{
    uint32_t crc = fmi_crc32(data, len - 4);
    for (int i = 0; i < 4; i++)
        data[len - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
}

static void test_truncations_and_flips_refused(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:4", "bc");
    c.momentum = 0.5;
    size_t len;
    uint8_t *data = small_checkpoint(&len, &c, 1);
    assert_int_equal(load_bytes(data, len), FM_OK);
    for (size_t n = 0; n < len; n++) {
        int rc = load_bytes(data, n);
        if (rc != FM_ETRUNC && rc != FM_EFORMAT)
            fail_msg("truncated to %zu of %zu bytes: %d (%s)", n, len, rc, fm_last_error());
    }
    /* a flipped bit anywhere: the CRC (or the magic) refuses it */
    for (size_t i = 0; i < len; i += 7) {
        data[i] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(load_bytes(data, len), FM_EFORMAT);
        data[i] ^= (uint8_t)(1u << (i % 8));
    }
    free(data);
}

/* Little-endian u32 at a byte offset. */
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Damage behind the checksum: counts and fields rewritten, CRC recomputed. */
static void test_hostile_fields_refused(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:4", "bc");
    size_t len;
    uint8_t *data = small_checkpoint(&len, &c, 0);
    uint8_t *bad = malloc(len);
    /* the model file's length */
    memcpy(bad, data, len);
    put32(bad + 12, 0xffffff00u);
    fix_crc(bad, len);
    assert_int_equal(load_bytes(bad, len), FM_ETRUNC);
    /* the order: its length is the 4 bytes before n_train indices and the
     * ledger flag at the end (no ledger here) */
    const size_t n_train = 400, order_at = len - 4 - 4 - 4 * n_train - 4;
    uint32_t stored = (uint32_t)data[order_at] | (uint32_t)data[order_at + 1] << 8;
    assert_int_equal(stored, n_train);
    const uint32_t lengths[] = {0, 399, 401, 0x7fffffffu, 0xffffffffu};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        memcpy(bad, data, len);
        put32(bad + order_at, lengths[i]);
        fix_crc(bad, len);
        memset(&track, 0, sizeof track);
        int rc = load_bytes(bad, len);
        assert_true(rc == FM_ETRUNC || rc == FM_EFORMAT);
        assert_true(track.largest < 1u << 20); /* nothing sized by the hostile count */
    }
    /* an index repeated, or past the end: not a permutation */
    const uint32_t indices[] = {400, 0xffffffffu};
    for (size_t i = 0; i < 2; i++) {
        memcpy(bad, data, len);
        put32(bad + order_at + 4, indices[i]);
        fix_crc(bad, len);
        assert_int_equal(load_bytes(bad, len), FM_EFORMAT);
    }
    memcpy(bad, data, len);
    memcpy(bad + order_at + 4, bad + order_at + 8, 4);
    fix_crc(bad, len);
    assert_int_equal(load_bytes(bad, len), FM_EFORMAT);
    /* a newer version, the wrong magic, trailing bytes */
    memcpy(bad, data, len);
    put32(bad + 8, 3);
    fix_crc(bad, len);
    assert_int_equal(load_bytes(bad, len), FM_EUNSUPPORTED);
    memcpy(bad, data, len);
    bad[0] = 'X';
    assert_int_equal(load_bytes(bad, len), FM_EFORMAT);
    uint8_t *longer = malloc(len + 4);
    memcpy(longer, data, len - 4);
    memset(longer + len - 4, 0, 4);
    fix_crc(longer, len + 4);
    assert_int_equal(load_bytes(longer, len + 4), FM_EFORMAT);
    free(longer);
    /* a training model file is not a checkpoint */
    const char *model = tpath("model-not-ck.fm");
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, 8, 8, 1, 4, &m), FM_OK);
    assert_int_equal(fm_model_save(m, model), FM_OK);
    fm_model_free(m);
    fm_checkpoint *ck = NULL;
    assert_int_equal(fm_checkpoint_load(model, &ck), FM_EFORMAT);
    assert_int_equal(fm_checkpoint_load(tpath("absent.fmc"), &ck), FM_ENOENT);
    free(bad);
    free(data);
}

/* A version-1 checkpoint (before the latent precision and bop's final
 * gamma) still loads, as fp32 without a decay; its bytes are a version-2
 * file's without those fields. */
static void test_version_1_reads(void **state)
{
    (void)state;
    for (int bop = 0; bop < 2; bop++) {
        fm_config c;
        base_config(&c, "mlp:4", bop ? "bc-det" : "bc");
        if (bop) {
            c.opt = FM_OPT_BOP;
            c.bop_gamma_final = 1e-5;
        }
        size_t len;
        uint8_t *data = small_checkpoint(&len, &c, 0);
        const size_t config = 20 + (size_t)fmi_load_le64(data + 12);
        assert_int_equal(fmi_load_le32(data + 8), 2);
        assert_int_equal(fmi_load_le32(data + config + 64), FM_LATENT_FP32);
        /* version 1: no latent field at +64, no final gamma after bop's two */
        uint8_t *old = malloc(len);
        size_t n = 0;
        memcpy(old, data, config + 64);
        n = config + 64;
        const size_t rest = config + 68 + (bop ? 16 + 8 : 0);
        if (bop) {
            memcpy(old + n, data + config + 68, 16);
            n += 16;
        }
        memcpy(old + n, data + rest, len - rest);
        n += len - rest;
        put32(old + 8, 1);
        fix_crc(old, n);
        fm_checkpoint *ck = NULL;
        const char *path = tpath("v1.fmc");
        write_whole_file(path, old, n);
        if (fm_checkpoint_load(path, &ck) != FM_OK)
            fail_msg("version 1 (%s): %s", bop ? "bop" : "sgd", fm_last_error());
        assert_int_equal(fm_checkpoint_config(ck)->latent, FM_LATENT_FP32);
        assert_true(fm_checkpoint_config(ck)->bop_gamma_final == 0.0);
        if (bop)
            assert_true(fm_checkpoint_config(ck)->bop_gamma == c.bop_gamma);
        fm_checkpoint_free(ck);
        /* and the version-2 original keeps what the run had */
        write_whole_file(path, data, len);
        assert_int_equal(fm_checkpoint_load(path, &ck), FM_OK);
        assert_true(fm_checkpoint_config(ck)->bop_gamma_final == c.bop_gamma_final);
        fm_checkpoint_free(ck);
        free(old);
        free(data);
    }
}

/* Little-endian f64 and u64 at a byte offset. */
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void putf64(uint8_t *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put64(p, v);
}

/* Where the run's position starts: after the header, the model file, the
 * configuration (64 bytes and version 2's latent precision; not bop), the
 * data spec and the data identity (28). */
static size_t run_offset(const uint8_t *data)
{
    const size_t model = (size_t)fmi_load_le64(data + 12), config = 20 + model;
    return config + 68 + 4 + fmi_load_le32(data + config + 68) + 28;
}

/* Every field of the run checked for its range: each value rewritten behind a
 * valid CRC is refused with a message that names the field. */
static void test_run_fields_in_range(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:4", "bc");
    c.momentum = 0.5;
    size_t len;
    uint8_t *data = small_checkpoint(&len, &c, 0);
    uint8_t *bad = malloc(len);
    const size_t run = run_offset(data), config = 20 + (size_t)fmi_load_le64(data + 12);
    assert_int_equal(fmi_load_le32(data + run), 2); /* paused in epoch 2, step 13 */
    assert_int_equal(fmi_load_le64(data + run + 8), 13);
    static const struct {
        size_t at; /* offset from the run's start; config: from the configuration's */
        int config, f64;
        double value;
        const char *says;
    } cases[] = {
        {72, 0, 1, 500, "best test error 500%"},
        {72, 0, 1, NAN, "best test error nan%"},
        {64, 0, 1, -3, "best validation error -3%"},
        {0, 0, 0, 0, "epoch 0 is outside 1..4"},
        {0, 0, 0, 9, "epoch 9 is outside 1..4"},
        {8, 0, 0, 14, "step 14 is not the 13 steps"},
        {8, 0, 0, 1e18, "step 1000000000000000000"},
        {16, 0, 1, INFINITY, "learning rate inf"},
        {16, 0, 1, -0.5, "learning rate -0.5"},
        {32, 0, 1, -1, "loss sum -1 is negative"},
        {40, 0, 0, 1000, "training errors 1000"},
        {48, 0, 0, 2, "minibatch count 2"},
        {56, 0, 1, -1, "this epoch's training time -1 s is not a duration"},
        {100, 0, 1, INFINITY, "elapsed time inf s"},
        {108, 0, 1, -2, "final loss -2"},
        {80, 0, 0, 2, "best epoch 2"},
        {8, 1, 1, NAN, "learning rates must be finite"},
        {16, 1, 1, INFINITY, "learning rates must be finite"},
        {24, 1, 1, 1.5, "momentum 1.5"},
        {64, 1, 0, 2, "latent precision out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(bad, data, len);
        uint8_t *at = bad + (cases[i].config ? config : run) + cases[i].at;
        if (cases[i].f64)
            putf64(at, cases[i].value);
        else if (cases[i].at == 8 || cases[i].at == 40 || cases[i].at == 48)
            put64(at, (uint64_t)cases[i].value);
        else
            put32(at, (uint32_t)cases[i].value);
        fix_crc(bad, len);
        int rc = load_bytes(bad, len);
        if (rc != FM_EFORMAT || !strstr(fm_last_error(), cases[i].says))
            fail_msg("case %zu: %d, '%s' (expected '%s')", i, rc, fm_last_error(), cases[i].says);
        assert_non_null(strstr(fm_last_error(), "bad.fmc: "));
    }
    /* a flag of the model file inside, behind both CRCs */
    memcpy(bad, data, len);
    const size_t model = (size_t)fmi_load_le64(data + 12);
    put32(bad + 20 + 40, 7); /* quantized back-prop */
    put32(bad + 20 + model - 4, fmi_crc32(bad + 20, model - 4));
    fix_crc(bad, len);
    assert_int_equal(load_bytes(bad, len), FM_EFORMAT);
    assert_non_null(strstr(fm_last_error(), "quantized back-prop flag is 7"));
    free(bad);
    free(data);
}

/* A checkpoint larger than what is read whole at once: its head is checked
 * first, against the file's size. With every file put through that check,
 * real checkpoints still load (with and without a ledger, each optimizer),
 * and every truncation is refused; a sparse file of 3 GiB
 * behind a good checkpoint, or behind its magic alone, is refused before
 * anything its size is allocated or read. */
static void test_head_checked_before_reading(void **state)
{
    (void)state;
    const size_t whole = fmi_read_whole_max;
    fmi_read_whole_max = 0;
    fm_config c;
    base_config(&c, "mlp:4", "tc");
    size_t len;
    uint8_t *plain = small_checkpoint(&len, &c, 0);
    assert_int_equal(load_bytes(plain, len), FM_OK);
    free(plain);
    c.momentum = 0.5;
    uint8_t *ledger = small_checkpoint(&len, &c, 1);
    assert_int_equal(load_bytes(ledger, len), FM_OK);
    free(ledger);
    c.opt = FM_OPT_ADAM;
    uint8_t *data = small_checkpoint(&len, &c, 1);
    assert_int_equal(load_bytes(data, len), FM_OK);
    for (size_t n = 0; n < len; n += (n < 64 || len - n < 64) ? 1 : 97) {
        memset(&track, 0, sizeof track);
        int rc = load_bytes(data, n);
        if (rc != FM_ETRUNC && rc != FM_EFORMAT)
            fail_msg("truncated to %zu of %zu bytes: %d (%s)", n, len, rc, fm_last_error());
    }
    fmi_read_whole_max = whole;

    const off_t hole = (off_t)3 << 30;
    expect_sparse_refused(load_path, "sparse.fmc", data, len, (off_t)len + hole, FM_EFORMAT,
                          "unexpected bytes at the end of the checkpoint");
    expect_sparse_refused(load_path, "magic.fmc", "FMULCKPT", 8, hole, FM_EFORMAT,
                          "checkpoint version 0");
    free(data);
}

/* The data, the configuration and the ledger of a resumed run must be the
 * paused run's. */
static void test_resume_mismatch_refused(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:4", "bc");
    size_t len;
    free(small_checkpoint(&len, &c, 0));
    fm_checkpoint *ck;
    assert_int_equal(fm_checkpoint_load(tpath("small.fmc"), &ck), FM_OK);
    fm_model *m;
    assert_int_equal(fm_checkpoint_model(ck, &m), FM_OK);
    fm_callbacks cb = {.resume = ck};
    fm_config other = *fm_checkpoint_config(ck);
    other.epochs = 4;
    assert_int_equal(fm_train(m, &train_set, &test_set, &other, &cb, NULL), FM_EMISMATCH);
    assert_non_null(strstr(fm_last_error(), "epochs"));
    other = *fm_checkpoint_config(ck);
    other.lr = 0.25;
    assert_int_equal(fm_train(m, &train_set, &test_set, &other, &cb, NULL), FM_EMISMATCH);
    assert_non_null(strstr(fm_last_error(), "lr"));
    /* threads may differ */
    other = *fm_checkpoint_config(ck);
    other.threads = 2;
    other.epochs = fm_checkpoint_config(ck)->epochs;
    fm_images changed = train_set;
    changed.pixels = malloc((size_t)train_set.count * 64);
    memcpy(changed.pixels, train_set.pixels, (size_t)train_set.count * 64);
    changed.pixels[12345] ^= 1;
    assert_int_equal(fm_train(m, &changed, &test_set, &other, &cb, NULL), FM_EMISMATCH);
    assert_non_null(strstr(fm_last_error(), "training set"));
    free(changed.pixels);
    assert_int_equal(fm_train(m, &train_set, NULL, &other, &cb, NULL), FM_EMISMATCH);
    assert_non_null(strstr(fm_last_error(), "test set"));
    fm_ledger *l;
    assert_int_equal(fm_ledger_create(&l), FM_OK);
    cb.ledger = l;
    assert_int_equal(fm_train(m, &train_set, &test_set, &other, &cb, NULL), FM_EMISMATCH);
    assert_non_null(strstr(fm_last_error(), "ledger"));
    fm_ledger_free(l);
    cb.ledger = NULL;
    assert_int_equal(fm_train(m, &train_set, &test_set, &other, &cb, NULL), FM_OK);
    fm_model_free(m);
    fm_checkpoint_free(ck);
}

/* A checkpoint that cannot be written ends the run with FM_EIO and leaves the
 * one before as it was. */
static void test_failed_write_keeps_old_checkpoint(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "mlp:4", "bc");
    const char *path = tpath("keep.fmc");
    stopper s = {.stop_at = 5};
    outcome o = train_once(&c, path, 0, NULL, &s, 0);
    assert_int_equal(o.rc, FM_ECANCELED);
    size_t before_len, after_len;
    uint8_t *before = read_whole_file(path, &before_len);
    /* a full disk: the next write fails part-way */
    stopper again = {0};
    limit_file_size(before_len / 2);
    outcome failed = train_once(&c, path, 0, NULL, &again, 0);
    limit_file_size(0);
    assert_int_equal(failed.rc, FM_EIO);
    assert_non_null(strstr(fm_last_error(), "keep.fmc: write failed"));
    uint8_t *after = read_whole_file(path, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(before, after, before_len);
    free(before);
    free(after);
    outcome_free(&o);
    outcome_free(&failed);
    /* a folder that does not exist */
    stopper third = {0};
    o = train_once(&c, tpath("no/such/dir/run.fmc"), 0, NULL, &third, 0);
    assert_int_equal(o.rc, FM_EIO);
}

/* ---- allocation failure, each allocation in turn ------------------------- */

/* Fails allocation 1, 2, ... of `body` until it runs through: each failure
 * must give FM_ENOMEM and leak nothing, and at least a few must be tried. */
static void each_allocation_fails(int (*body)(const void *arg), const void *arg, const char *what)
{
    long failures = 0;
    for (long k = 1;; k++) {
        memset(&track, 0, sizeof track);
        track.fail_at = k;
        int rc = body(arg);
        if (track.calls < k) { /* no allocation k: the body ran through */
            assert_int_equal(rc, FM_OK);
            assert_int_equal(track.live, 0);
            break;
        }
        if (rc != FM_ENOMEM)
            fail_msg("%s, allocation %ld failed: got %d (%s)", what, k, rc, fm_last_error());
        if (track.live != 0)
            fail_msg("%s, allocation %ld failed: %ld blocks leaked", what, k, track.live);
        failures++;
    }
    printf("  %s: each of %ld allocations failed in turn, cleanly\n", what, failures);
    assert_true(failures > 3);
    track.fail_at = 0;
}

typedef struct alloc_case {
    const fm_config *config;
    const char *model, *checkpoint;
} alloc_case;

static int load_model_body(const void *arg)
{
    const alloc_case *a = arg;
    fm_model *loaded = NULL;
    int rc = fm_model_load(a->model, &loaded);
    fm_model_free(loaded);
    return rc;
}

/* A fresh model's training step, its evaluation and its checkpoint, with a ledger. */
static int train_step_body(const void *arg)
{
    const alloc_case *a = arg;
    fm_model *fresh = NULL;
    fm_ledger *l = NULL;
    int rc = fm_model_create_image(a->config, 8, 8, 1, 4, &fresh);
    if (rc == FM_OK)
        rc = fm_ledger_create(&l);
    fm_callbacks run = {.checkpoint = tpath("alloc-run.fmc"), .ledger = l};
    if (rc == FM_OK)
        rc = fm_train(fresh, &train_set, &test_set, a->config, &run, NULL);
    fm_model_free(fresh);
    fm_ledger_free(l);
    return rc;
}

static int resume_body(const void *arg)
{
    const alloc_case *a = arg;
    fm_checkpoint *ck = NULL;
    fm_model *resumed = NULL;
    fm_ledger *l = NULL;
    int rc = fm_checkpoint_load(a->checkpoint, &ck);
    if (rc == FM_OK)
        rc = fm_checkpoint_model(ck, &resumed);
    if (rc == FM_OK)
        rc = fm_ledger_create(&l);
    fm_callbacks run = {.resume = ck, .ledger = l};
    if (rc == FM_OK)
        rc = fm_train(resumed, &train_set, &test_set, fm_checkpoint_config(ck), &run, NULL);
    fm_model_free(resumed);
    fm_ledger_free(l);
    fm_checkpoint_free(ck);
    return rc;
}

static void test_allocation_failures(void **state)
{
    (void)state;
    fm_config c;
    base_config(&c, "conv:2k3,pool2,fc4", "bc");
    c.qb = 1;
    c.opt = FM_OPT_ADAM;
    c.epochs = 2;
    c.train_limit = 40; /* one training step an epoch */
    c.preproc = FM_PRE_GCN_ZCA;
    alloc_case a = {&c, tpath("alloc.fm"), tpath("alloc.fmc")};
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, 8, 8, 1, 4, &m), FM_OK);
    fm_ledger *ledger;
    assert_int_equal(fm_ledger_create(&ledger), FM_OK);
    stopper s = {.stop_at = 1}; /* paused after epoch 1's step */
    fm_callbacks cb = {.checkpoint = a.checkpoint, .ledger = ledger, .should_stop = stop_when_told,
                       .user = &s};
    assert_int_equal(fm_train(m, &train_set, &test_set, &c, &cb, NULL), FM_ECANCELED);
    assert_int_equal(fm_model_save(m, a.model), FM_OK);
    fm_model_free(m);
    fm_ledger_free(ledger);

    each_allocation_fails(load_model_body, &a, "model load");
    each_allocation_fails(train_step_body, &a, "training step, evaluation and checkpoint");
    each_allocation_fails(resume_body, &a, "checkpoint load and resume");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resume_fp32_sgd, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_bc_qb_momentum_ledger, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_tc_adam_running_dropout, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_synapse_eval_every, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_conv, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_gcn, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_mulfree, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_bop_ledger, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_bop_mulfree_conv, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_fuse, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_bop_other_gamma_refused, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_no_validation, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_from_periodic_and_final, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_threads_dense, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_threads_dense_fp32_adam, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_threads_conv, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_threads_mulfree, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_threads_conv_mulfree, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_truncations_and_flips_refused, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_fields_refused, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_run_fields_in_range, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_bf16_gamma_decay, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_version_1_reads, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_head_checked_before_reading, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_mismatch_refused, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_keeps_old_checkpoint, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_allocation_failures, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, data_setup, data_teardown);
}
