/* test_ledger.c — the energy ledger: hand-computed totals of two small
 * networks, the paper's multiplication count, totals that do not depend on
 * the thread count or the kernel variant, the reference kernels against the
 * BLAS path, pricing, and (in a counting build, -DFEWMUL_COUNT_OPS=ON) the
 * operations the kernels actually execute against what the layers declare. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fewmul.h"
#include "infer.h"
#include "internal.h"
#include "kernels.h"
#include "layers.h"
#include "ledger.h"
#include "loss.h"
#include "net.h"
#include "weighted.h"
#include "quant.h"
#include "rng.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixtures ---- */

typedef struct run {
    fm_model *model;
    fm_workspace *ws;
    fm_ledger *ledger;
    fm_images set;
    float *s1, *s2;
} run;

static void run_open_image(run *r, const fm_config *c, int height, int width, int channels,
                           int classes, int batch)
{
    const int input_dim = height * width * channels;
    memset(r, 0, sizeof *r);
    assert_int_equal(fm_model_create_image(c, height, width, channels, classes, &r->model), FM_OK);
    assert_int_equal(fmi_workspace_create(r->model, batch, 1, &r->ws), FM_OK);
    assert_int_equal(fm_ledger_create(&r->ledger), FM_OK);
    r->ws->ledger = r->ledger;
    r->set = (fm_images){.count = batch, .height = height, .width = width, .channels = channels};
    r->set.pixels = test_malloc((size_t)batch * input_dim);
    r->set.labels = test_malloc((size_t)batch);
    fm_rng rng;
    fmi_rng_seed(&rng, 99);
    for (int i = 0; i < batch * input_dim; i++)
        r->set.pixels[i] = (uint8_t)(fmi_rng_next(&rng) >> 56);
    for (int b = 0; b < batch; b++)
        r->set.labels[b] = (uint8_t)(b % classes);
    r->s1 = test_calloc(r->model->state_count, sizeof(float));
    r->s2 = test_calloc(r->model->state_count, sizeof(float));
}

static void run_open(run *r, const fm_config *c, int input_dim, int classes, int batch)
{
    run_open_image(r, c, input_dim, 1, 1, classes, batch);
}

static void run_close(run *r)
{
    fmi_workspace_free(r->model, r->ws);
    fm_ledger_free(r->ledger);
    fm_model_free(r->model);
    test_free(r->set.pixels);
    test_free(r->set.labels);
    test_free(r->s1);
    test_free(r->s2);
}

/* Loads the batch and runs training step `step` (0-based); run_update_at,
 * its optimizer step. run_step and run_update: the first. */
static void run_step_at(run *r, int batch, uint64_t step)
{
    fmi_load_batch(r->model, r->ws, &r->set, NULL, 0, batch);
    fmi_load_batch_cost(r->model, r->ws, FM_PHASE_FORWARD, batch, r->set.count);
    int errors = 0;
    r->ws->step_lr = 0.1;
    fmi_train_step(r->model, r->ws, r->set.labels, batch, step, &errors);
}

static void run_update_at(run *r, uint64_t step)
{
    r->ws->step_lr = 0.1;
    fmi_optimizer_step(r->model, r->ws, r->s1, r->s2, (long)step + 1);
}

static void run_step(run *r, int batch) { run_step_at(r, batch, 0); }
static void run_update(run *r) { run_update_at(r, 0); }

static void run_eval(run *r, int batch)
{
    fmi_load_batch(r->model, r->ws, &r->set, NULL, 0, batch);
    fmi_load_batch_cost(r->model, r->ws, FM_PHASE_EVAL, batch, r->set.count);
    const float *y = fmi_forward_eval(r->model, r->ws, batch, 1);
    (void)fmi_count_errors(y, r->set.labels, batch, r->model->classes);
    fmi_eval_errors_cost(r->model, r->ws, batch);
}

static uint64_t ops(const fm_ledger *l, int phase, fm_op op) { return fm_ledger_ops(l, -1, phase, op); }

/* Every kind of operation of a step's three phases, summed over layers. */
static void assert_step_ops(const fm_ledger *l, const uint64_t forward[FM_OP_KINDS],
                            const uint64_t backward[FM_OP_KINDS], const uint64_t update[FM_OP_KINDS])
{
    for (int op = 0; op < FM_OP_KINDS; op++) {
        assert_int_equal(ops(l, FM_PHASE_FORWARD, (fm_op)op), forward[op]);
        assert_int_equal(ops(l, FM_PHASE_BACKWARD, (fm_op)op), backward[op]);
        assert_int_equal(ops(l, FM_PHASE_UPDATE, (fm_op)op), update[op]);
    }
}

/* ---- hand-computed totals ---- */

/* Network A: 4 inputs, mlp:3, 2 classes, batch 5; stochastic binary weights,
 * quantized back-prop, squared hinge, SGD without momentum. Layers: input,
 * dense1 4x3, bn1 3, relu1 3, dense2 3x2, bn2 2, loss (B = 5).
 * forward:
 *   input  FMA 5*4 = 20
 *   dense1 sampling of 12 weights: FMA 12, RAND 12, CMP 12, SIGN 12;
 *          product: 15 sums of 4 terms: SIGN 60, FADD 60, FMUL 15 (times H)
 *   bn1    stats FADD 2*15, FMA 15, FMUL 2*3; var+eps FADD 3, sqrt and 1/ FSPECIAL 6;
 *          normalize FADD 15, FMUL 15, FMA 15
 *   relu1  CMP 15, SIGN 15
 *   dense2 sampling of 6: FMA 6, RAND 6, CMP 6, SIGN 6; 10 sums of 3: SIGN 30, FADD 30, FMUL 10
 *   bn2    FADD 20+2+10, FMA 10+10, FMUL 4+10, FSPECIAL 4
 *   loss   10 outputs: CMP 20, SIGN 20, FADD 10, FMA 10; errors CMP 10, SIGN 5, IADD 5
 *   => FMA 98, FADD 180, FMUL 60, FSPECIAL 10, SIGN 148, CMP 63, RAND 18, IADD 5
 * backward:
 *   loss   FMUL 10, SIGN 10
 *   bn2    FADD 20, FMUL 10, FMA 10; dx: FMUL 6, FADD 20, FMUL 20, FMA 10
 *   dense2 Q(x) of 15: RAND 15, CMP 75, IADD 15, SIGN 60; dW 30 terms: SHIFT 30,
 *          SIGN 60, FADD 30; dx 15 sums of 2: SIGN 30, FADD 30, FMUL 15
 *   relu1  CMP 15, SIGN 15
 *   bn1    FADD 30, FMUL 15, FMA 15; dx: FMUL 9, FADD 30, FMUL 30, FMA 15
 *   dense1 Q(x) of 20: RAND 20, CMP 100, IADD 20, SIGN 80; dW 60 terms: SHIFT 60,
 *          SIGN 120, FADD 60; no dx below the input
 *   => FMUL 115, SIGN 375, FADD 220, FMA 50, RAND 35, CMP 190, IADD 35, SHIFT 90
 * update: W 12 and 6 (clipped), BN 6 and 4: FMA 28, CMP 2*18, SIGN 2*18 */
static void run_network_a(run *r, fm_weight_mode weights, fm_optimizer opt)
{
    fm_config c;
    fm_config_default(&c);
    c.arch = "mlp:3";
    c.weights = weights;
    c.qb = 1;
    c.opt = opt;
    c.threads = 1;
    run_open(r, &c, 4, 2, 5);
    run_step(r, 5);
    run_update(r);
}

/* The index of a tensor in the ledger, -1 when it has none of that name. */
static int tensor_index(const fm_ledger *l, const char *name)
{
    for (int t = 0; t < fm_ledger_tensors(l); t++)
        if (strcmp(fm_ledger_tensor_name(l, t), name) == 0)
            return t;
    return -1;
}

static void test_hand_totals_binary_qb(void **state)
{
    (void)state;
    run r;
    run_network_a(&r, FM_WEIGHTS_BC, FM_OPT_SGD);
    const fm_ledger *l = r.ledger;
    static const uint64_t forward[FM_OP_KINDS] = {
        [FM_OP_FMA] = 98, [FM_OP_FADD] = 180, [FM_OP_FMUL] = 60, [FM_OP_FSPECIAL] = 10,
        [FM_OP_SIGN] = 148, [FM_OP_CMP] = 63, [FM_OP_RAND] = 18, [FM_OP_IADD] = 5};
    static const uint64_t backward[FM_OP_KINDS] = {
        [FM_OP_FMUL] = 115, [FM_OP_SIGN] = 375, [FM_OP_FADD] = 220, [FM_OP_FMA] = 50,
        [FM_OP_RAND] = 35, [FM_OP_CMP] = 190, [FM_OP_IADD] = 35, [FM_OP_SHIFT] = 90};
    static const uint64_t update[FM_OP_KINDS] = {
        [FM_OP_FMA] = 28, [FM_OP_CMP] = 36, [FM_OP_SIGN] = 36};
    assert_step_ops(l, forward, backward, update);
    /* layers in network order, the loss last */
    assert_int_equal(fm_ledger_layers(l), 7);
    assert_string_equal(fm_ledger_layer_name(l, 0), "input");
    assert_string_equal(fm_ledger_layer_name(l, 1), "dense1");
    assert_string_equal(fm_ledger_layer_shape(l, 1), "4x3");
    assert_string_equal(fm_ledger_layer_name(l, 4), "dense2");
    assert_string_equal(fm_ledger_layer_name(l, 6), "loss");
    /* per layer: dense1's forward product and sampling */
    assert_int_equal(fm_ledger_ops(l, 1, FM_PHASE_FORWARD, FM_OP_SIGN), 12 + 60);
    assert_int_equal(fm_ledger_ops(l, 1, FM_PHASE_BACKWARD, FM_OP_SHIFT), 60);
    /* bytes: binary weights are 1 bit each, Q(x) 9 bits (sign + exponent field) */
    const int wq = tensor_index(l, "dense1.Wq"), w = tensor_index(l, "dense1.W"),
              qx = tensor_index(l, "dense1.Qx");
    assert_true(wq >= 0 && w >= 0 && qx >= 0);
    assert_int_equal(fm_ledger_tensor_bytes(l, wq), 2);        /* 12 bits */
    assert_int_equal(fm_ledger_tensor_bytes(l, w), 48);        /* 12 floats */
    assert_int_equal(fm_ledger_tensor_bytes(l, qx), 23);       /* 20 * 9 bits = 180 bits */
    /* Wq: written by sampling, read by the forward product (no dx for dense1) */
    assert_int_equal(fm_ledger_bytes(l, 1, FM_PHASE_FORWARD, wq, 1), 2);
    assert_int_equal(fm_ledger_bytes(l, 1, FM_PHASE_FORWARD, wq, 0), 2);
    /* W: read by sampling, read and written by the update */
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_FORWARD, w, 0), 48);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, w, 0), 48);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, w, 1), 48);
    uint64_t examples;
    assert_int_equal(fm_ledger_passes(l, FM_PHASE_FORWARD, &examples), 1);
    assert_int_equal(examples, 5);
    run_close(&r);
}

/* Network A (above) with bop (bc-det+qb): no weight is sampled or
 * quantized, so dense1's forward is its product alone (SIGN 60, FADD 60,
 * FMUL 15); the update flips 12 + 6 weights (per weight FMUL gamma*g, FMA
 * (1-gamma)*m + ., SIGN |m| and the flip, CMP against the threshold and the
 * signs: FMUL 18, FMA 18, SIGN 36, CMP 36) and Adam moves batch norm's 6 + 4
 * parameters unclipped (FMUL 5, FMA 2, FSPECIAL 2, FADD 2 each: FMUL 50, FMA
 * 20, FSPECIAL 20, FADD 20). Bytes: W is 12 bits (2 bytes) wherever it is
 * read or written, never 48; the momentum 48 bytes read and written. */
static void test_hand_totals_bop(void **state)
{
    (void)state;
    run r;
    run_network_a(&r, FM_WEIGHTS_BC_DET, FM_OPT_BOP);
    const fm_ledger *l = r.ledger;
    static const uint64_t update[FM_OP_KINDS] = {
        [FM_OP_FMUL] = 68, [FM_OP_FMA] = 38, [FM_OP_FSPECIAL] = 20, [FM_OP_FADD] = 20,
        [FM_OP_SIGN] = 36, [FM_OP_CMP] = 36};
    for (int op = 0; op < FM_OP_KINDS; op++)
        assert_int_equal(ops(l, FM_PHASE_UPDATE, (fm_op)op), update[op]);
    assert_int_equal(fm_ledger_ops(l, 1, FM_PHASE_FORWARD, FM_OP_SIGN), 60);
    assert_int_equal(fm_ledger_ops(l, 1, FM_PHASE_FORWARD, FM_OP_FADD), 60);
    assert_int_equal(fm_ledger_ops(l, 1, FM_PHASE_FORWARD, FM_OP_FMUL), 15);
    assert_int_equal(fm_ledger_ops(l, 1, FM_PHASE_FORWARD, FM_OP_CMP), 0);
    assert_int_equal(fm_ledger_ops(l, 1, FM_PHASE_FORWARD, FM_OP_FMA), 0);
    /* no quantized copy of the weights: they are the bits */
    assert_true(tensor_index(l, "dense1.Wq") < 0 && tensor_index(l, "dense2.Wq") < 0);
    const int w = tensor_index(l, "dense1.W"), mom = tensor_index(l, "dense1.momentum"),
              dw = tensor_index(l, "dense1.dW");
    assert_true(w >= 0 && mom >= 0 && dw >= 0);
    assert_int_equal(fm_ledger_tensor_bytes(l, w), 2);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_FORWARD, w, 0), 2);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_FORWARD, w, 1), 0);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, w, 0), 2);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, w, 1), 2);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, mom, 0), 48);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, mom, 1), 48);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, dw, 0), 48);
    /* the evaluation weights are the bits too: nothing quantized */
    fm_ledger_clear(r.ledger);
    run_eval(&r, 5);
    assert_int_equal(fm_ledger_ops(l, 1, FM_PHASE_EVAL, FM_OP_CMP), 0);
    assert_true(tensor_index(l, "dense1.Wq") < 0);
    assert_int_equal(fm_ledger_tensor_bytes(l, tensor_index(l, "dense1.W")), 2);
    run_close(&r);
}

/* Network A with bop folded into the backward pass (as one process trains)
 * and bf16 momenta: the same operations plus the roundings (RAND and IADD
 * 18), declared in the update phase though they run in the backward pass;
 * no dW of a whole layer: a tile (here the whole 48 bytes of dense1's,
 * which fits) written in the backward pass and read by the update; the
 * momenta 24 bytes each way, 2 a value. */
static void test_hand_totals_bop_fused(void **state)
{
    (void)state;
    run r;
    fm_config c;
    fm_config_default(&c);
    c.arch = "mlp:3";
    c.weights = FM_WEIGHTS_BC_DET;
    c.qb = 1;
    c.opt = FM_OPT_BOP;
    c.latent = FM_LATENT_BF16;
    c.threads = 1;
    run_open(&r, &c, 4, 2, 5);
    assert_int_equal(fmi_update_fuse(r.model, r.ws, r.s1, r.s2), FM_OK);
    run_step(&r, 5);
    run_update(&r);
    const fm_ledger *l = r.ledger;
    static const uint64_t update[FM_OP_KINDS] = {
        [FM_OP_FMUL] = 68, [FM_OP_FMA] = 38, [FM_OP_FSPECIAL] = 20, [FM_OP_FADD] = 20,
        [FM_OP_SIGN] = 36, [FM_OP_CMP] = 36, [FM_OP_RAND] = 18, [FM_OP_IADD] = 18};
    for (int op = 0; op < FM_OP_KINDS; op++)
        if (ops(l, FM_PHASE_UPDATE, (fm_op)op) != update[op])
            fail_msg("update %s: %" PRIu64 ", expected %" PRIu64, fm_op_name((fm_op)op),
                     ops(l, FM_PHASE_UPDATE, (fm_op)op), update[op]);
    assert_true(tensor_index(l, "dense1.dW") < 0 && tensor_index(l, "dense2.dW") < 0);
    const int tile = tensor_index(l, "dense1.dW.tile"), mom = tensor_index(l, "dense1.momentum"),
              w = tensor_index(l, "dense1.W");
    assert_true(tile >= 0 && mom >= 0 && w >= 0);
    assert_int_equal(fm_ledger_tensor_bytes(l, tile), 48);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_BACKWARD, tile, 1), 48);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_BACKWARD, tile, 0), 0);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, tile, 0), 48);
    assert_int_equal(fm_ledger_tensor_bytes(l, mom), 24);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, mom, 0), 24);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, mom, 1), 24);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, w, 0), 2);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, w, 1), 2);
    run_close(&r);
}

/* Network A with --fuse, at its second step, whose weights the first step's
 * fused update drew (as fm_model_measure measures it): the forward pass
 * draws nothing (binary_qb's forward less 18 each of FMA, RAND, CMP and
 * SIGN) and reads no latent W; the update draws the next step's 18 weights
 * from the latent ones it updates (binary_qb's update plus those 18 each),
 * reads and writes them once (48 bytes of dense1's) and writes the packed
 * draws (2 bytes of dense1's); no dW of a whole layer. */
static void test_hand_totals_fuse(void **state)
{
    (void)state;
    run r;
    fm_config c;
    fm_config_default(&c);
    c.arch = "mlp:3";
    c.weights = FM_WEIGHTS_BC;
    c.qb = 1;
    c.threads = 1;
    c.fuse = 1;
    run_open(&r, &c, 4, 2, 5);
    assert_int_equal(fmi_update_fuse(r.model, r.ws, r.s1, r.s2), FM_OK);
    r.ws->ledger = NULL;
    run_step_at(&r, 5, 0);
    run_update_at(&r, 0);
    r.ws->ledger = r.ledger;
    run_step_at(&r, 5, 1);
    run_update_at(&r, 1);
    const fm_ledger *l = r.ledger;
    static const uint64_t forward[FM_OP_KINDS] = {
        [FM_OP_FMA] = 80, [FM_OP_FADD] = 180, [FM_OP_FMUL] = 60, [FM_OP_FSPECIAL] = 10,
        [FM_OP_SIGN] = 130, [FM_OP_CMP] = 45, [FM_OP_IADD] = 5};
    static const uint64_t backward[FM_OP_KINDS] = {
        [FM_OP_FMUL] = 115, [FM_OP_SIGN] = 375, [FM_OP_FADD] = 220, [FM_OP_FMA] = 50,
        [FM_OP_RAND] = 35, [FM_OP_CMP] = 190, [FM_OP_IADD] = 35, [FM_OP_SHIFT] = 90};
    static const uint64_t update[FM_OP_KINDS] = {
        [FM_OP_FMA] = 46, [FM_OP_CMP] = 54, [FM_OP_SIGN] = 54, [FM_OP_RAND] = 18};
    assert_step_ops(l, forward, backward, update);
    assert_true(tensor_index(l, "dense1.dW") < 0 && tensor_index(l, "dense2.dW") < 0);
    const int w = tensor_index(l, "dense1.W"), wq = tensor_index(l, "dense1.Wq"),
              tile = tensor_index(l, "dense1.dW.tile");
    assert_true(w >= 0 && wq >= 0 && tile >= 0);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_FORWARD, w, 0), 0);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_FORWARD, wq, 1), 0);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_FORWARD, wq, 0), 2);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, w, 0), 48);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, w, 1), 48);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, wq, 1), 2);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, tile, 0), 48);
    run_close(&r);
}

/* Network B: 3 inputs, mlp:2, 2 classes, batch 4; fp32 weights, cross-entropy,
 * SGD with momentum 0.9.
 * forward: input FMA 12; dense1 FMA 4*2*3 = 24; bn1 FADD 16+2+8, FMA 8+8,
 *   FMUL 4+8, FSPECIAL 4; relu1 CMP 8, SIGN 8; dense2 FMA 16; bn2 as bn1;
 *   loss (8 outputs) CMP 4, SIGN 4, FADD 2*8+3*4, FSPECIAL 8+4; errors CMP 8, SIGN 4, IADD 4
 *   => FMA 84, FADD 80, FMUL 24, FSPECIAL 20, CMP 20, SIGN 16, IADD 4
 * backward: loss FSPECIAL 4+8, FADD 16, FMUL 16, CMP 8, SIGN 8; bn2 FADD 32,
 *   FMUL 30, FMA 16; dense2 dW FMA 16, dx FMA 16; relu1 CMP 8, SIGN 8; bn1 as
 *   bn2; dense1 dW FMA 24
 *   => FSPECIAL 12, FADD 80, FMUL 76, FMA 88, CMP 16, SIGN 16
 * update: 6 + 4 + 4 + 4 = 18 parameters, each FMUL, FMA, FADD (momentum) */
static void test_hand_totals_fp32_momentum(void **state)
{
    (void)state;
    fm_config c;
    fm_config_default(&c);
    c.arch = "mlp:2";
    c.loss = FM_LOSS_XENT;
    c.momentum = 0.9;
    c.threads = 1;
    run r;
    run_open(&r, &c, 3, 2, 4);
    run_step(&r, 4);
    run_update(&r);
    const fm_ledger *l = r.ledger;
    static const uint64_t forward[FM_OP_KINDS] = {
        [FM_OP_FMA] = 84, [FM_OP_FADD] = 80, [FM_OP_FMUL] = 24, [FM_OP_FSPECIAL] = 20,
        [FM_OP_CMP] = 20, [FM_OP_SIGN] = 16, [FM_OP_IADD] = 4};
    static const uint64_t backward[FM_OP_KINDS] = {
        [FM_OP_FSPECIAL] = 12, [FM_OP_FADD] = 80, [FM_OP_FMUL] = 76, [FM_OP_FMA] = 88,
        [FM_OP_CMP] = 16, [FM_OP_SIGN] = 16};
    static const uint64_t update[FM_OP_KINDS] = {
        [FM_OP_FMUL] = 18, [FM_OP_FMA] = 18, [FM_OP_FADD] = 18};
    assert_step_ops(l, forward, backward, update);
    /* fp32 passes read the latent W itself; momentum moves the velocity */
    int w = -1, v = -1;
    for (int t = 0; t < fm_ledger_tensors(l); t++) {
        w = strcmp(fm_ledger_tensor_name(l, t), "dense1.W") == 0 ? t : w;
        v = strcmp(fm_ledger_tensor_name(l, t), "dense1.velocity") == 0 ? t : v;
    }
    assert_true(w >= 0 && v >= 0);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_FORWARD, w, 0), 24);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, v, 0), 24);
    assert_int_equal(fm_ledger_bytes(l, -1, FM_PHASE_UPDATE, v, 1), 24);
    run_close(&r);
}

/* ---- the paper's table ---- */

static void test_paper_mults(void **state)
{
    (void)state;
    fm_config c;
    fm_config_default(&c);
    c.arch = "paper-mlp";
    c.weights = FM_WEIGHTS_BC;
    c.qb = 1;
    fm_model *m;
    assert_int_equal(fm_model_create(&c, 784, 10, &m), FM_OK);
    uint64_t standard, method;
    assert_int_equal(fm_model_paper_mults(m, 200, &standard, &method), FM_OK);
    /* 200 * (3 * 2,910,208 + 3 * 3,082) and 200 * 3 * 3,082 */
    assert_int_equal(standard, UINT64_C(1747974000));
    assert_int_equal(method, UINT64_C(1849200));
    assert_true(fabs((double)standard - 1.7480e9) < 0.00005e9);
    assert_true(fabs((double)method - 1.8492e6) < 0.00005e6);
    fm_model_free(m);

    /* fp32 keeps every multiplication; BC without QB keeps the weight gradient */
    c.weights = FM_WEIGHTS_FP32;
    c.qb = 0;
    assert_int_equal(fm_model_create(&c, 784, 10, &m), FM_OK);
    assert_int_equal(fm_model_paper_mults(m, 200, &standard, &method), FM_OK);
    assert_int_equal(method, standard);
    fm_model_free(m);
    c.weights = FM_WEIGHTS_TC;
    assert_int_equal(fm_model_create(&c, 784, 10, &m), FM_OK);
    assert_int_equal(fm_model_paper_mults(m, 200, &standard, &method), FM_OK);
    assert_int_equal(method, UINT64_C(200) * (2910208 + 3 * 3082));
    assert_int_equal(fm_model_paper_mults(m, 0, &standard, &method), FM_EINVAL);
    fm_model_free(m);
}

/* ---- invariance ---- */

static void assert_ledgers_equal(const fm_ledger *a, const fm_ledger *b)
{
    assert_int_equal(fm_ledger_layers(a), fm_ledger_layers(b));
    for (int layer = 0; layer < fm_ledger_layers(a); layer++)
        for (int phase = 0; phase < FM_PHASES; phase++)
            for (int op = 0; op < FM_OP_KINDS; op++)
                assert_int_equal(fm_ledger_ops(a, layer, phase, (fm_op)op),
                                 fm_ledger_ops(b, layer, phase, (fm_op)op));
    assert_int_equal(fm_ledger_tensors(a), fm_ledger_tensors(b));
    for (int t = 0; t < fm_ledger_tensors(a); t++) {
        assert_string_equal(fm_ledger_tensor_name(a, t), fm_ledger_tensor_name(b, t));
        assert_int_equal(fm_ledger_tensor_bytes(a, t), fm_ledger_tensor_bytes(b, t));
        for (int phase = 0; phase < FM_PHASES; phase++)
            for (int wr = 0; wr < 2; wr++)
                assert_int_equal(fm_ledger_bytes(a, -1, phase, t, wr),
                                 fm_ledger_bytes(b, -1, phase, t, wr));
    }
}

/* The same step with 1 and 2 threads, and with the BLAS and reference kernels,
 * records the same ledger. */
static void test_invariant_threads_and_kernels(void **state)
{
    (void)state;
    for (int conv = 0; conv < 2; conv++) {
        fm_config c;
        fm_config_default(&c);
        c.arch = conv ? "conv:5k3,pool2,4k2same,fc6" : "mlp:33,17";
        c.weights = FM_WEIGHTS_TC;
        c.qb = 1;
        fm_ledger *first = NULL;
        for (int variant = 0; variant < 4; variant++) {
            c.threads = 1 + variant % 2;
            run r;
            if (conv)
                run_open_image(&r, &c, 9, 9, 5, 7, 13);
            else
                run_open(&r, &c, 45, 7, 13);
            r.ws->reference = variant >= 2;
            fmi_workspace_choose_products(r.model, r.ws);
            fmi_threads_set(c.threads);
            run_step(&r, 13);
            run_update(&r);
            run_eval(&r, 13);
            if (!first) {
                first = r.ledger;
                r.ledger = NULL;
            } else {
                assert_ledgers_equal(first, r.ledger);
            }
            run_close(&r);
        }
        fm_ledger_free(first);
    }
}

/* fm_model_measure: both ledgers filled, its inference uses the deployed
 * (deterministic binary) weights, and bad arguments are refused. */
static void test_measure(void **state)
{
    (void)state;
    fm_config c;
    fm_config_default(&c);
    c.arch = "mlp:16";
    c.weights = FM_WEIGHTS_BC;
    c.qb = 1;
    fm_model *m;
    assert_int_equal(fm_model_create(&c, 20, 3, &m), FM_OK);
    fm_ledger *step, *infer;
    assert_int_equal(fm_ledger_create(&step), FM_OK);
    assert_int_equal(fm_ledger_create(&infer), FM_OK);
    assert_int_equal(fm_model_measure(m, 8, step, infer), FM_OK);
    uint64_t ex;
    assert_int_equal(fm_ledger_passes(step, FM_PHASE_UPDATE, &ex), 1);
    assert_int_equal(ex, 8);
    assert_int_equal(fm_ledger_passes(infer, FM_PHASE_EVAL, &ex), 1);
    /* deployed binary inference: the 20x16 and 16x3 products are sign selects
     * and adds, with no multiply-adds in the dense layers */
    assert_int_equal(fm_ledger_ops(infer, 1, FM_PHASE_EVAL, FM_OP_FMA), 0);
    assert_int_equal(fm_ledger_ops(infer, 1, FM_PHASE_EVAL, FM_OP_FADD), 8 * 16 * 20);
    assert_int_equal(fm_ledger_ops(step, -1, FM_PHASE_BACKWARD, FM_OP_SHIFT), 8 * (20 * 16 + 16 * 3));
    assert_int_equal(fm_ledger_ops(infer, -1, FM_PHASE_FORWARD, FM_OP_FADD), 0);
    assert_int_equal(m->config.test_quantized, 0); /* restored */
    assert_int_equal(fm_model_measure(m, 0, step, infer), FM_EINVAL);
    assert_int_equal(fm_model_measure(NULL, 8, step, infer), FM_EINVAL);
    /* --fuse: the step measured is one whose weights the step before drew in
     * its update, so its forward pass draws nothing and its update draws the
     * next step's 20x16 + 16x3 weights: the same operations as the unfused
     * step in all, moved between phases; a counting build tallies the same
     * for both, so the step before is not in the tally */
    uint64_t tallied[2][FM_OP_KINDS], declared[2][FM_OP_KINDS];
    for (int fuse = 0; fuse < 2; fuse++) {
        fm_model_free(m);
        c.fuse = fuse;
        assert_int_equal(fm_model_create(&c, 20, 3, &m), FM_OK);
        fm_ledger_clear(step);
        fmi_tally_take(tallied[fuse]); /* clear */
        assert_int_equal(fm_model_measure(m, 8, step, NULL), FM_OK);
        fmi_tally_take(tallied[fuse]);
        for (int op = 0; op < FM_OP_KINDS; op++)
            declared[fuse][op] = fm_ledger_ops(step, -1, -1, (fm_op)op);
    }
    assert_int_equal(fm_ledger_ops(step, -1, FM_PHASE_FORWARD, FM_OP_RAND), 0);
    assert_int_equal(fm_ledger_ops(step, -1, FM_PHASE_UPDATE, FM_OP_RAND), 20 * 16 + 16 * 3);
    assert_memory_equal(declared[0], declared[1], sizeof declared[0]);
    assert_memory_equal(tallied[0], tallied[1], sizeof tallied[0]);
    fm_ledger_free(step);
    fm_ledger_free(infer);
    fm_model_free(m);
}

/* ---- reference kernels against the BLAS path ---- */

static void fill(float *v, size_t n, uint64_t seed)
{
    fm_rng rng;
    fmi_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        v[i] = 2.0f * fmi_rng_uniform(&rng) - 1.0f;
}

static void assert_close(const float *a, const float *b, size_t n, float tolerance)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= tolerance * (1.0f + fabsf(b[i]))))
            fail_msg("element %zu: %.9g vs %.9g", i, (double)a[i], (double)b[i]);
}

static void test_reference_kernels_match_blas(void **state)
{
    (void)state;
    const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 9}, {200, 31, 65}};
    const fm_weight_mode modes[] = {FM_WEIGHTS_FP32, FM_WEIGHTS_BC, FM_WEIGHTS_TC};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t k = 0; k < 3; k++) {
            int B = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
            const float h = 0.37f;
            float *x = test_malloc(sizeof(float) * B * in), *w = test_malloc(sizeof(float) * in * out);
            float *e = test_malloc(sizeof(float) * B * out), *q = test_malloc(sizeof(float) * B * in);
            float *y1 = test_malloc(sizeof(float) * B * out), *y2 = test_malloc(sizeof(float) * B * out);
            float *d1 = test_malloc(sizeof(float) * B * in), *d2 = test_malloc(sizeof(float) * B * in);
            float *g1 = test_malloc(sizeof(float) * in * out), *g2 = test_malloc(sizeof(float) * in * out);
            fill(x, (size_t)B * in, 1 + s);
            fill(e, (size_t)B * out, 2 + s);
            fill(w, (size_t)in * out, 3 + s);
            fmi_quantize_weights(modes[k], w, w, (size_t)in * out, h, 26, 60.0f, 77, 0);
            fm_weight_class wc = fmi_weight_class_of(modes[k]);
            fmi_dense_forward(x, w, y1, B, in, out);
            fmi_ref_dense_forward(wc, x, w, h, y2, B, in, out);
            assert_close(y2, y1, (size_t)B * out, 1e-5f * (float)in);
            fmi_dense_backward_input(e, w, d1, B, in, out);
            fmi_ref_dense_backward_input(wc, e, w, h, d2, B, in, out);
            assert_close(d2, d1, (size_t)B * in, 1e-5f * (float)out);
            fmi_pow2_quantize(x, q, (size_t)B * in, FM_QB_UNBOUNDED, 0, 5, 0);
            fmi_dense_backward_weights(q, e, g1, B, in, out);
            fmi_ref_dense_backward_weights(1, q, e, g2, B, in, out);
            assert_close(g2, g1, (size_t)in * out, 1e-5f * (float)B);
            fmi_dense_backward_weights(x, e, g1, B, in, out);
            fmi_ref_dense_backward_weights(0, x, e, g2, B, in, out);
            assert_close(g2, g1, (size_t)in * out, 1e-5f * (float)B);
            test_free(x), test_free(w), test_free(e), test_free(q), test_free(y1), test_free(y2);
            test_free(d1), test_free(d2), test_free(g1), test_free(g2);
        }
}

/* A power-of-two product is exact: e * 2^k by exponent arithmetic, added to a
 * zero sum, equals the float product added to zero, bit for bit. */
static void test_pow2_product_exact(void **state)
{
    (void)state;
    float x[6] = {0.25f, -8.0f, 0.0f, -0.0f, 0x1p-20f, 1.0f};
    float e[6] = {3.3f, 1.7f, -5.0f, 2.0f, 1e-30f, -0.1f};
    for (int i = 0; i < 6; i++) {
        float g;
        fmi_ref_dense_backward_weights(1, &x[i], &e[i], &g, 1, 1, 1);
        float want = 0.0f + x[i] * e[i];
        assert_memory_equal(&g, &want, sizeof g);
    }
}

/* ---- pricing ---- */

static const char tiny_table[] =
    "fewmul-energy-table 1\n"
    "name tiny\nsource test\nunit pJ 1e-12\n"
    "op fmul 3\nop fadd 1\nop fma 4\nop fspecial 10\nop iadd 0.5\nop shift 0.25\n"
    "op sign 0.125\nop xnor_popcount 0.01\nop cmp 0.5\nop rand 2\n"
    "level small 4KiB 8 16 64\nlevel big inf 800 800 64\n";

static void test_pricing(void **state)
{
    (void)state;
    fm_energy_table *t;
    assert_int_equal(fm_energy_table_parse(tiny_table, sizeof tiny_table - 1, "tiny", &t), FM_OK);
    fm_ledger *l;
    assert_int_equal(fm_ledger_create(&l), FM_OK);
    assert_int_equal(fmi_ledger_layer(l, 0, "a", "1"), FM_OK);
    assert_int_equal(fmi_ledger_layer(l, 1, "b", "2"), FM_OK);
    fm_cost a = {l, 0, FM_PHASE_FORWARD}, b = {l, 1, FM_PHASE_BACKWARD};
    fmi_cost_ops(&a, FM_OP_FMUL, 10);    /* 30 */
    fmi_cost_ops(&b, FM_OP_SHIFT, 8);    /* 2 */
    fmi_cost_ops(&b, FM_OP_CMP, 3);      /* 1.5 */
    fmi_cost_bytes(&a, "small", 4096, 800, 80);  /* fits 4 KiB: 800/8*8 + 80/8*16 = 960 */
    fmi_cost_bytes(&b, "large", 4097, 16, 0);    /* does not: 16/8*800 = 1600 */
    fmi_cost_bytes(&b, "small", 100, 8, 0);      /* footprint stays 4096: 8 */
    fm_energy e;
    assert_int_equal(fm_ledger_price(l, t, -1, -1, &e), FM_OK);
    assert_true(fabs(e.compute - 33.5) < 1e-9);
    assert_true(fabs(e.communication - (960.0 + 1600.0 + 8.0)) < 1e-9);
    assert_int_equal(e.read_bytes[0], 808);
    assert_int_equal(e.written_bytes[0], 80);
    assert_int_equal(e.read_bytes[1], 16);
    /* result bits: 18 words of 32, 3 compare bits, 80 bytes written */
    assert_true(fabs(e.landauer_bits - (18 * 32 + 3 + 640)) < 1e-9);
    assert_int_equal(fm_ledger_price(l, t, 1, FM_PHASE_BACKWARD, &e), FM_OK);
    assert_true(fabs(e.compute - 3.5) < 1e-9);
    assert_true(fabs(e.communication - 1608.0) < 1e-9);
    assert_int_equal(fm_ledger_price(l, t, 0, FM_PHASE_BACKWARD, &e), FM_OK);
    assert_true(e.compute == 0.0 && e.communication == 0.0);
    assert_int_equal(fm_ledger_tensor_level(l, t, 0), 0);
    assert_int_equal(fm_ledger_tensor_level(l, t, 1), 1);
    assert_int_equal(fm_ledger_price(l, NULL, -1, -1, &e), FM_EINVAL);
    /* the Landauer constant: kT ln 2 at 300 K */
    assert_true(fabs(FM_LANDAUER_J_PER_BIT - 2.871e-21) < 0.001e-21);
    fm_ledger_clear(l);
    assert_int_equal(fm_ledger_layers(l), 0);
    assert_int_equal(fm_ledger_bytes(l, -1, -1, -1, 0), 0);
    /* a cleared ledger records afresh: no count of before comes back */
    assert_int_equal(fmi_ledger_layer(l, 0, "a", "1"), FM_OK);
    fmi_cost_ops(&a, FM_OP_FMUL, 2);
    assert_int_equal(fm_ledger_ops(l, 0, FM_PHASE_FORWARD, FM_OP_FMUL), 2);
    assert_int_equal(fm_ledger_ops(l, -1, -1, FM_OP_FMUL), 2);
    fm_ledger_free(l);
    fm_energy_table_free(t);
}

/* ---- the run's ledger through fm_train ---- */

static void test_train_records_run(void **state)
{
    (void)state;
    fm_config c;
    fm_config_default(&c);
    c.arch = "mlp:8";
    c.weights = FM_WEIGHTS_BC;
    c.qb = 1;
    c.epochs = 2;
    c.batch = 10;
    c.valid = 20;
    c.threads = 1;
    fm_images set = {.count = 70, .height = 1, .width = 6, .channels = 1};
    set.pixels = test_malloc(70 * 6);
    set.labels = test_malloc(70);
    for (int i = 0; i < 70 * 6; i++)
        set.pixels[i] = (uint8_t)(i * 37);
    for (int i = 0; i < 70; i++)
        set.labels[i] = (uint8_t)(i % 3);
    fm_model *m;
    assert_int_equal(fm_model_create(&c, 6, 3, &m), FM_OK);
    fm_ledger *l;
    assert_int_equal(fm_ledger_create(&l), FM_OK);
    fm_callbacks cb = {.ledger = l};
    assert_int_equal(fm_train(m, &set, &set, &c, &cb, NULL), FM_OK);
    uint64_t ex;
    /* 50 training images in batches of 10, 2 epochs */
    assert_int_equal(fm_ledger_passes(l, FM_PHASE_FORWARD, &ex), 10);
    assert_int_equal(ex, 100);
    assert_int_equal(fm_ledger_passes(l, FM_PHASE_UPDATE, &ex), 10);
    /* each epoch, in batches of 10: BN statistics over 50 + 20 images, then
     * 20 validation and 70 test images: 5 + 2 + 2 + 7 passes */
    assert_int_equal(fm_ledger_passes(l, FM_PHASE_EVAL, &ex), 2 * 16);
    assert_int_equal(ex, 2 * (70 + 20 + 70));
    /* ten identical steps: ten times one step's quantized back-prop shifts */
    assert_int_equal(fm_ledger_ops(l, -1, FM_PHASE_BACKWARD, FM_OP_SHIFT), 10 * 10 * (6 * 8 + 8 * 3));
    fm_ledger_free(l);
    fm_model_free(m);
    test_free(set.pixels);
    test_free(set.labels);
}

/* ---- counting build: executed operations equal declared ones ---- */

static void assert_tally_equals(const fm_ledger *l, const int *phases, int n_phases,
                                const uint64_t before[FM_OP_KINDS], const char *what)
{
    uint64_t done[FM_OP_KINDS];
    fmi_tally_take(done);
    for (int op = 0; op < FM_OP_KINDS; op++) {
        uint64_t declared = 0;
        for (int i = 0; i < n_phases; i++)
            declared += fm_ledger_ops(l, -1, phases[i], (fm_op)op);
        declared -= before[op];
        if (done[op] != declared)
            fail_msg("%s: %s executed %" PRIu64 ", declared %" PRIu64, what, fm_op_name((fm_op)op),
                     done[op], declared);
    }
}

static void declared_now(const fm_ledger *l, const int *phases, int n, uint64_t out[FM_OP_KINDS])
{
    for (int op = 0; op < FM_OP_KINDS; op++) {
        out[op] = 0;
        for (int i = 0; i < n; i++)
            out[op] += fm_ledger_ops(l, -1, phases[i], (fm_op)op);
    }
}

static void tally_case(const fm_config *c, int threads, const char *what)
{
    fm_config cc = *c;
    cc.threads = threads;
    run r;
    if (fm_arch_is_conv(c->arch))
        run_open_image(&r, &cc, 7, 7, 3, 3, 7);
    else
        run_open(&r, &cc, 21, 3, 7);
    r.ws->reference = 1;
    if (cc.exec == FM_EXEC_MULFREE) /* the reference variant is the one that tallies */
        assert_int_equal(fmi_kernels_get("ref", &r.ws->kernels), FM_OK);
    fmi_workspace_choose_products(r.model, r.ws);
    fmi_threads_set(threads);
    /* bop, and --fuse, fold the update into the backward pass where a
     * trainer of one process does: the step's three phases are then tallied
     * together */
    const int fused = cc.opt == FM_OPT_BOP || cc.fuse;
    if (fused)
        assert_int_equal(fmi_update_fuse(r.model, r.ws, r.s1, r.s2), FM_OK);
    uint64_t before[FM_OP_KINDS];
    const int step_phases[] = {FM_PHASE_FORWARD, FM_PHASE_BACKWARD, FM_PHASE_UPDATE};
    const int update_phase[] = {FM_PHASE_UPDATE}, eval_phase[] = {FM_PHASE_EVAL};
    fmi_tally_take(before); /* clear */
    declared_now(r.ledger, step_phases, 3, before);
    run_step(&r, 7);
    if (!fused) {
        assert_tally_equals(r.ledger, step_phases, 2, before, what);
        memset(before, 0, sizeof before);
    }
    run_update(&r);
    assert_tally_equals(r.ledger, fused ? step_phases : update_phase, fused ? 3 : 1, before, what);
    if (fused) { /* a second step: --fuse drew its weights in the first */
        declared_now(r.ledger, step_phases, 3, before);
        run_step_at(&r, 7, 1);
        run_update_at(&r, 1);
        assert_tally_equals(r.ledger, step_phases, 3, before, what);
        memset(before, 0, sizeof before);
    }
    run_eval(&r, 7);
    assert_tally_equals(r.ledger, eval_phase, 1, before, what);
    declared_now(r.ledger, eval_phase, 1, before);
    const fm_images *sets[2] = {&r.set, &r.set};
    int firsts[2] = {0, 2}, counts[2] = {7, 5};
    assert_int_equal(fmi_bn_recompute(r.model, r.ws, sets, firsts, counts, 2, 3), FM_OK);
    assert_tally_equals(r.ledger, eval_phase, 1, before, what);
    run_close(&r);
}

static void test_counting_build_tally(void **state)
{
    (void)state;
    if (!fmi_tally_enabled()) {
        /* CI's counting build sets this, so the check cannot silently skip there */
        if (getenv("FEWMUL_REQUIRE_COUNTING"))
            fail_msg("FEWMUL_REQUIRE_COUNTING is set but this is not a counting build");
        print_message("skipped: not a counting build (configure with -DFEWMUL_COUNT_OPS=ON)\n");
        skip();
    }
    fm_config c;
    fm_config_default(&c);
    c.arch = "mlp:9,5";
    struct {
        const char *what;
        fm_weight_mode weights;
        int qb, emin, emax;
        fm_loss loss;
        fm_optimizer opt;
        double momentum, dropout;
        fm_bn_stats bn;
        int test_quantized;
        fm_acts acts;
    } cases[] = {
        {"fp32", FM_WEIGHTS_FP32, 0, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, FM_LOSS_HINGE, FM_OPT_SGD, 0, 0, FM_BN_PAPER, 0, FM_ACTS_RELU},
        {"bc+qb", FM_WEIGHTS_BC, 1, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, FM_LOSS_HINGE, FM_OPT_SGD, 0, 0, FM_BN_PAPER, 0, FM_ACTS_RELU},
        {"tc+qb[-4:3]", FM_WEIGHTS_TC, 1, -4, 3, FM_LOSS_HINGE, FM_OPT_SGD, 0, 0, FM_BN_PAPER, 1, FM_ACTS_RELU},
        {"bc-det", FM_WEIGHTS_BC_DET, 0, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, FM_LOSS_HINGE, FM_OPT_SGD, 0, 0, FM_BN_PAPER, 0, FM_ACTS_RELU},
        {"tc-det+qb", FM_WEIGHTS_TC_DET, 1, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, FM_LOSS_HINGE, FM_OPT_SGD, 0, 0, FM_BN_PAPER, 0, FM_ACTS_RELU},
        {"synapse+qb", FM_WEIGHTS_SYNAPSE, 1, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, FM_LOSS_HINGE, FM_OPT_SGD, 0, 0, FM_BN_PAPER, 1, FM_ACTS_RELU},
        {"bc xent momentum dropout running", FM_WEIGHTS_BC, 0, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, FM_LOSS_XENT,
         FM_OPT_SGD, 0.9, 0.25, FM_BN_RUNNING, 0, FM_ACTS_RELU},
        {"tc adam", FM_WEIGHTS_TC, 1, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, FM_LOSS_HINGE, FM_OPT_ADAM, 0, 0, FM_BN_PAPER, 0, FM_ACTS_RELU},
        {"bc-det+qb binary acts dropout", FM_WEIGHTS_BC_DET, 1, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED,
         FM_LOSS_HINGE, FM_OPT_SGD, 0, 0.25, FM_BN_PAPER, 0, FM_ACTS_BINARY},
        {"bop", FM_WEIGHTS_BC_DET, 0, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, FM_LOSS_HINGE, FM_OPT_BOP, 0, 0, FM_BN_PAPER, 0, FM_ACTS_RELU},
        {"bop+qb xent running", FM_WEIGHTS_BC_DET, 1, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, FM_LOSS_XENT, FM_OPT_BOP, 0, 0, FM_BN_RUNNING, 0, FM_ACTS_RELU},
    };
    /* the learning state in bf16: bop's momenta, SGD's and Adam's latent
     * weights; and --fuse: the update in the backward pass, drawing the next
     * step's weights */
    const char *bf16_cases[] = {"bc+qb", "tc adam", "bop+qb xent running"};
    const char *fuse_cases[] = {"fp32", "bc+qb", "tc+qb[-4:3]", "synapse+qb",
                                "bc xent momentum dropout running", "tc adam"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c.weights = cases[i].weights;
        c.qb = cases[i].qb;
        c.qb_emin = cases[i].emin;
        c.qb_emax = cases[i].emax;
        c.loss = cases[i].loss;
        c.opt = cases[i].opt;
        c.momentum = cases[i].momentum;
        c.dropout = cases[i].dropout;
        c.bn_stats = cases[i].bn;
        c.test_quantized = cases[i].test_quantized;
        c.acts = cases[i].acts;
        for (int variant = 0; variant < 3; variant++) { /* as is, bf16, fused */
            int listed = 0;
            const char *const *names = variant == 2 ? fuse_cases : bf16_cases;
            const size_t count = variant == 2 ? sizeof fuse_cases / sizeof fuse_cases[0]
                                              : sizeof bf16_cases / sizeof bf16_cases[0];
            for (size_t k = 0; k < count; k++)
                listed |= strcmp(names[k], cases[i].what) == 0;
            if (variant > 0 && !listed)
                continue;
            const int bf16 = variant == 1;
            char what[96];
            c.latent = bf16 ? FM_LATENT_BF16 : FM_LATENT_FP32;
            c.fuse = variant == 2;
            snprintf(what, sizeof what, "%s%s", cases[i].what,
                     bf16 ? " bf16" : variant == 2 ? " fuse" : "");
            c.exec = FM_EXEC_DEFAULT;
            tally_case(&c, 1, what);
            tally_case(&c, 2, what);
            if (c.qb && c.weights != FM_WEIGHTS_FP32) { /* and --exec mulfree */
                snprintf(what, sizeof what, "%s%s mulfree", cases[i].what,
                         bf16 ? " bf16" : variant == 2 ? " fuse" : "");
                c.exec = FM_EXEC_MULFREE;
                tally_case(&c, 1, what);
                tally_case(&c, 2, what);
            }
        }
    }
    c.latent = FM_LATENT_FP32;
    c.fuse = 0;
    /* convolutional networks (7x7x3 inputs): valid and same padding, stride
     * 2, pooling, batch norm per map, in each weight class, with the
     * convolutions' exponent clip and without, on both paths */
    const char *const conv_archs[] = {"conv:4k3,pool2,3k2same,fc5", "conv:3k3s2same,4k2,fc4",
                                      "conv:4k3,pool2,3k2same,gap,fc5"};
    const fm_weight_mode conv_modes[] = {FM_WEIGHTS_FP32, FM_WEIGHTS_BC, FM_WEIGHTS_TC_DET,
                                         FM_WEIGHTS_SYNAPSE};
    fm_config_default(&c);
    for (size_t a = 0; a < sizeof conv_archs / sizeof conv_archs[0]; a++)
        for (size_t k = 0; k < 4; k++) {
            char what[96];
            c.arch = conv_archs[a];
            c.weights = conv_modes[k];
            c.qb = k > 0;
            c.qb_conv_emin = k == 2 ? FM_QB_UNBOUNDED : -4;
            c.qb_conv_emax = k == 2 ? FM_QB_UNBOUNDED : 3;
            snprintf(what, sizeof what, "%s %s%s", c.arch, fm_weights_name(c.weights),
                     c.qb ? "+qb" : "");
            c.exec = FM_EXEC_DEFAULT;
            tally_case(&c, 1, what);
            tally_case(&c, 2, what);
            if (c.qb) { /* and --exec mulfree: the convolutions' kernels tally too */
                snprintf(what, sizeof what, "%s %s+qb mulfree", c.arch, fm_weights_name(c.weights));
                c.exec = FM_EXEC_MULFREE;
                tally_case(&c, 1, what);
                tally_case(&c, 2, what);
            }
        }
    /* bop on a convolutional network, both paths */
    fm_config_default(&c);
    c.arch = conv_archs[0];
    c.weights = FM_WEIGHTS_BC_DET;
    c.opt = FM_OPT_BOP;
    c.qb = 1;
    tally_case(&c, 1, "conv bop+qb");
    tally_case(&c, 2, "conv bop+qb");
    c.exec = FM_EXEC_MULFREE;
    tally_case(&c, 1, "conv bop+qb mulfree");
    tally_case(&c, 2, "conv bop+qb mulfree");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_totals_binary_qb),
        cmocka_unit_test(test_hand_totals_fp32_momentum),
        cmocka_unit_test(test_hand_totals_bop),
        cmocka_unit_test(test_hand_totals_bop_fused),
        cmocka_unit_test(test_hand_totals_fuse),
        cmocka_unit_test(test_paper_mults),
        cmocka_unit_test(test_invariant_threads_and_kernels),
        cmocka_unit_test(test_measure),
        cmocka_unit_test(test_reference_kernels_match_blas),
        cmocka_unit_test(test_pow2_product_exact),
        cmocka_unit_test(test_pricing),
        cmocka_unit_test(test_train_records_run),
        cmocka_unit_test(test_counting_build_tally),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
