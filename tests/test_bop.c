/* test_bop.c — the bop optimizer (--opt bop, src/optim/bop.c): its flip rule
 * on hand-computed cases, the configurations it takes and refuses, binary
 * initial weights, a short run on synthetic data that learns with weights
 * that stay binary, exports as the bits and reloads from its model file;
 * the update folded into the backward pass (the same bits as the optimizer
 * step's, on any thread count), for bop and, with --fuse, for SGD and Adam
 * with the next step's weights drawn there; the learning state in bf16
 * (latent.c) and the decay of gamma. Synthetic data: needs nothing from ../shared. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define SUPPORT_NAME "bop"
#include "support.h"

#include "fewmul.h"
#include "infer.h"
#include "internal.h"
#include "net.h"
#include "optim.h"
#include "weighted.h"

#include <math.h>
#include <string.h>

/* gamma 0.5, threshold 0.1 (both exact in binary), weights +-1:
 *   0: m = 0.5*0 + 0.5*1    =  0.5 > 0.1, agrees with w = +1: flips to -1
 *   1: m = -0.5, disagrees with w = +1: stays
 *   2: m = -0.5, agrees with w = -1: flips to +1
 *   3: m =  0.5, disagrees with w = -1: stays
 *   4: m = 0.5*0.4 + 0      =  0.2 > 0.1 (the old momentum alone), w = +1: flips
 *   5: m = 0.5*0.1          =  0.05, agrees but below the threshold: stays
 *   6: m = 0.5*0.2          =  0.1, at the threshold (not above): stays
 *   7: m = 0.5*0 + 0.5*(-0) = -0 (|m| = 0): stays */
static void test_flip_rule(void **state)
{
    (void)state;
    float w[8] = {1, 1, -1, -1, 1, 1, 1, -1};
    float m[8] = {0, 0, 0, 0, 0.4f, 0, 0, 0};
    const float g[8] = {1, -1, -1, 1, 0, 0.1f, 0.2f, -0.0f};
    fmi_bop_step(w, g, m, 8, 0.5f, 0.1f, NULL);
    const float w1[8] = {-1, 1, 1, -1, -1, 1, 1, -1};
    const float m1[8] = {0.5f, -0.5f, -0.5f, 0.5f, 0.2f, 0.05f, 0.1f, 0};
    for (int i = 0; i < 8; i++) {
        if (w[i] != w1[i] || m[i] != m1[i])
            fail_msg("weight %d: w %g m %g, expected w %g m %g", i, w[i], m[i], w1[i], m1[i]);
    }
    /* the momentum is kept after a flip (no reset): weight 0's m = 0.25 now
     * disagrees with its new -1, so it stays; weight 1's m = -0.25 still
     * disagrees with +1 */
    const float zero[2] = {0, 0};
    fmi_bop_step(w, zero, m, 2, 0.5f, 0.1f, NULL);
    assert_true(w[0] == -1.0f && m[0] == 0.25f);
    assert_true(w[1] == 1.0f && m[1] == -0.25f);
    /* a weight at +-H (H = 0.25) flips to -+H, exactly */
    float h[2] = {0.25f, -0.25f}, mh[2] = {0, 0};
    const float gh[2] = {1, -1};
    fmi_bop_step(h, gh, mh, 2, 0.5f, 0.0f, NULL);
    assert_true(h[0] == -0.25f && h[1] == 0.25f);
}

static void bop_config(fm_config *c)
{
    fm_config_default(c);
    c->arch = "mlp:16";
    c->weights = FM_WEIGHTS_BC_DET;
    c->opt = FM_OPT_BOP;
    c->epochs = 4;
    c->batch = 40;
    c->valid = 100;
    c->threads = 1;
}

static void test_config(void **state)
{
    (void)state;
    fm_config c;
    bop_config(&c);
    assert_int_equal(fm_config_check(&c), FM_OK);
    /* the real parameters take Adam's rates */
    double lr, lr_final;
    fm_config_learning_rates(&c, &lr, &lr_final);
    assert_true(lr == 3e-3 && lr_final == 2e-6);
    c.bop_threshold = 0.0; /* flip on any agreeing momentum */
    assert_int_equal(fm_config_check(&c), FM_OK);
    c.exec = FM_EXEC_MULFREE;
    c.qb = 1;
    assert_int_equal(fm_config_check(&c), FM_OK);
    /* binary deterministic weights only: the others have no bits to flip
     * (fp32, ternary, synapse) or draw them from a latent weight (bc) */
    const fm_weight_mode refused[] = {FM_WEIGHTS_FP32, FM_WEIGHTS_BC, FM_WEIGHTS_TC,
                                      FM_WEIGHTS_TC_DET, FM_WEIGHTS_SYNAPSE};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        bop_config(&c);
        c.weights = refused[i];
        assert_int_equal(fm_config_check(&c), FM_EINVAL);
        assert_non_null(strstr(fm_last_error(), "bc-det"));
    }
    const double gammas[] = {0.0, 1.0, -0.1, NAN, 1e-50};
    for (size_t i = 0; i < sizeof gammas / sizeof gammas[0]; i++) {
        bop_config(&c);
        c.bop_gamma = gammas[i];
        assert_int_equal(fm_config_check(&c), FM_EINVAL);
    }
    const double thresholds[] = {-1e-6, INFINITY, NAN, 1e300, 1e-50};
    for (size_t i = 0; i < sizeof thresholds / sizeof thresholds[0]; i++) {
        bop_config(&c);
        c.bop_threshold = thresholds[i];
        assert_int_equal(fm_config_check(&c), FM_EINVAL);
    }
    bop_config(&c);
    c.momentum = 0.9; /* SGD's */
    assert_int_equal(fm_config_check(&c), FM_EINVAL);
}

/* Every weight of every weighted layer is +H or -H (the same H per layer);
 * returns how many differ from `before` (may be NULL). */
static long assert_binary(const fm_model *m, const float *before)
{
    long changed = 0, at = 0;
    for (int k = 0;; k++) {
        long n = fm_model_weights(m, k, NULL, 0);
        if (n < 0)
            break;
        float *w = test_malloc((size_t)n * sizeof *w);
        assert_int_equal(fm_model_weights(m, k, w, (size_t)n), n);
        const float h = fabsf(w[0]);
        assert_true(h > 0.0f);
        for (long i = 0; i < n; i++) {
            if (fabsf(w[i]) != h)
                fail_msg("layer %d weight %ld is %g, not +-%g", k, i, w[i], h);
            changed += before && w[i] != before[at + i];
        }
        at += n;
        test_free(w);
    }
    return changed;
}

static float *all_weights(const fm_model *m, long *count)
{
    long total = 0;
    for (int k = 0; fm_model_weights(m, k, NULL, 0) >= 0; k++)
        total += fm_model_weights(m, k, NULL, 0);
    float *w = test_malloc((size_t)total * sizeof *w);
    long at = 0;
    for (int k = 0; fm_model_weights(m, k, NULL, 0) >= 0; k++)
        at += fm_model_weights(m, k, w + at, (size_t)(total - at));
    *count = total;
    return w;
}

static void test_initial_weights_binary(void **state)
{
    (void)state;
    fm_config c;
    bop_config(&c);
    c.arch = "conv:4k3,pool2,fc8";
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, 8, 8, 1, 4, &m), FM_OK);
    assert_binary(m, NULL);
    fm_model_free(m);
}

/* 400 training images of 4 classes: bop learns them (chance is 75 % error),
 * flipping weights that stay binary; the model file and the packed export
 * carry the bits. */
static void test_learns_and_exports(void **state)
{
    (void)state;
    fm_images train, test;
    make_quadrant_set(&train, 500, 1);
    make_quadrant_set(&test, 120, 2);
    const int qbs[] = {0, 1};
    for (int q = 0; q < 2; q++) {
        fm_config c;
        bop_config(&c);
        c.qb = qbs[q];
        fm_model *m;
        assert_int_equal(fm_model_create_image(&c, 8, 8, 1, 4, &m), FM_OK);
        long n;
        float *before = all_weights(m, &n);
        fm_result r;
        if (fm_train(m, &train, &test, &c, NULL, &r) != FM_OK)
            fail_msg("bop%s: %s", q ? "+qb" : "", fm_last_error());
        print_message("bop%s: test error %.2f %%\n", q ? "+qb" : "", r.test_error_pct);
        assert_true(r.test_error_pct < 10.0);
        long flipped = assert_binary(m, before);
        assert_true(flipped > 0 && flipped < n);
        /* the model file keeps the optimizer and the bits */
        const char *path = tpath("bop.fmm");
        assert_int_equal(fm_model_save(m, path), FM_OK);
        fm_model *back;
        assert_int_equal(fm_model_load(path, &back), FM_OK);
        long n2;
        float *reloaded = all_weights(back, &n2);
        assert_int_equal(n2, n);
        assert_int_equal(assert_binary(back, reloaded), 0);
        assert_int_equal(assert_binary(m, reloaded), 0);
        /* the packed export is the bits: 1 bit a weight, and it predicts as
         * the model does */
        fm_deploy *d;
        assert_int_equal(fm_deploy_from_model(m, FM_EXPORT_DET, 0, 0, 0, &d), FM_OK);
        fm_deploy_layer_info info;
        assert_int_equal(fm_deploy_describe_layer(d, 0, &info), FM_OK);
        assert_string_equal(info.weights, "binary");
        assert_int_equal(info.bits, 1);
        uint8_t *a = test_malloc((size_t)test.count), *b = test_malloc((size_t)test.count);
        assert_int_equal(fm_model_predict(m, &test, 0, test.count, 1, a), FM_OK);
        assert_int_equal(fm_deploy_predict(d, test.pixels, test.count, 1, b, NULL), FM_OK);
        int same = 0;
        for (int i = 0; i < test.count; i++)
            same += a[i] == b[i];
        assert_true(same >= test.count - 2); /* batch norm folded: float rounding only */
        test_free(a);
        test_free(b);
        fm_deploy_free(d);
        test_free(reloaded);
        fm_model_free(back);
        test_free(before);
        fm_model_free(m);
    }
    free(train.pixels);
    free(train.labels);
    free(test.pixels);
    free(test.labels);
}

/* ---- the fused update, bf16 state, gamma's decay ---- */

typedef struct steps_out {
    float *state, *momentum;
    size_t count;
} steps_out;

/* Six steps of a model on 40 synthetic images: fused (the update in the
 * backward pass) or by the optimizer step from the whole dW, on `threads`
 * threads, through the reference products or the default (BLAS) ones or,
 * with c->exec mulfree, the reference mulfree kernels. */
static steps_out run_steps(const fm_config *c, int fused, int threads, int reference)
{
    fm_images set;
    make_quadrant_set(&set, 40, 3);
    fm_config cc = *c;
    cc.threads = threads;
    cc.fuse = fused && c->opt != FM_OPT_BOP; /* bop fuses without it */
    fm_model *m;
    assert_int_equal(fm_model_create_image(&cc, 8, 8, 1, 4, &m), FM_OK);
    fm_workspace *ws;
    assert_int_equal(fmi_workspace_create(m, 40, 1, &ws), FM_OK);
    ws->reference = reference;
    if (cc.exec == FM_EXEC_MULFREE)
        assert_int_equal(reference ? fmi_kernels_get("ref", &ws->kernels) : fmi_kernels_default(&ws->kernels),
                         FM_OK);
    fmi_workspace_choose_products(m, ws);
    fmi_threads_set(threads);
    ws->step_lr = 1e-3;
    float *s1 = test_calloc(m->state_count, sizeof(float));
    float *s2 = test_calloc(m->state_count, sizeof(float));
    if (fused) {
        assert_int_equal(fmi_update_fuse(m, ws, s1, s2), FM_OK);
        assert_non_null(ws->fused_s1);
    }
    for (int step = 0; step < 6; step++) {
        fmi_load_batch(m, ws, &set, NULL, 0, 40);
        ws->bop_gamma = fmi_bop_gamma_at(&m->config, 1 + step / 2);
        fmi_train_step(m, ws, set.labels, 40, (uint64_t)step, NULL);
        fmi_optimizer_step(m, ws, s1, s2, step + 1);
        assert_int_equal(ws->status, FM_OK);
        if (step == 2) /* an evaluation between steps overwrites drawn weights */
            (void)fmi_forward_eval(m, ws, 40, 1);
    }
    steps_out out = {test_malloc(m->state_count * sizeof(float)),
                     test_malloc(m->state_count * sizeof(float)), m->state_count};
    memcpy(out.state, m->state, out.count * sizeof(float));
    memcpy(out.momentum, s1, out.count * sizeof(float));
    test_free(s1);
    test_free(s2);
    fmi_workspace_free(m, ws);
    fm_model_free(m);
    free(set.pixels);
    free(set.labels);
    return out;
}

/* The bop run of these steps: two hidden layers, Q(x), a gamma that flips
 * weights within six steps. */
static void steps_config(fm_config *c)
{
    bop_config(c);
    c->arch = "mlp:24,16";
    c->qb = 1;
    c->bop_gamma = 0.05;
    c->bop_threshold = 1e-4;
}

static void steps_free(steps_out *o)
{
    test_free(o->state);
    test_free(o->momentum);
}

static void assert_same_steps(const steps_out *a, const steps_out *b, const char *what)
{
    assert_int_equal(a->count, b->count);
    if (memcmp(a->state, b->state, a->count * sizeof(float)) != 0)
        fail_msg("%s: the parameters differ", what);
    if (memcmp(a->momentum, b->momentum, a->count * sizeof(float)) != 0)
        fail_msg("%s: the momenta differ", what);
}

/* The steps fused on 1 and on 2 threads, each held to the unfused steps'
 * bits (the reference products, or c's mulfree kernels); returns the fused. */
static steps_out fused_as_unfused(const fm_config *c, const char *what)
{
    steps_out whole = run_steps(c, 0, 1, 1);
    steps_out fused = run_steps(c, 1, 1, 1);
    steps_out fused2 = run_steps(c, 1, 2, 1);
    assert_same_steps(&whole, &fused, what);
    assert_same_steps(&fused, &fused2, what);
    steps_free(&whole);
    steps_free(&fused2);
    return fused;
}

/* The fused update gives the optimizer step's bits, and the same bits on 1
 * and 2 threads, with fp32 and bf16 momenta, on the reference products and
 * the mulfree kernels; it flips some weights. */
static void test_fused_equals_unfused(void **state)
{
    (void)state;
    for (int mulfree = 0; mulfree < 2; mulfree++)
        for (int bf16 = 0; bf16 < 2; bf16++) {
            fm_config c;
            steps_config(&c);
            c.bop_gamma_final = 0.01;
            c.exec = mulfree ? FM_EXEC_MULFREE : FM_EXEC_DEFAULT;
            c.latent = bf16 ? FM_LATENT_BF16 : FM_LATENT_FP32;
            char what[64];
            snprintf(what, sizeof what, "%s, %s", mulfree ? "mulfree" : "reference",
                     bf16 ? "bf16" : "fp32");
            steps_out fused = fused_as_unfused(&c, what);
            /* something happened: momenta moved, some weights flipped */
            fm_model *m0;
            assert_int_equal(fm_model_create_image(&c, 8, 8, 1, 4, &m0), FM_OK);
            long flipped = 0, moved = 0;
            for (size_t i = 0; i < fused.count; i++)
                moved += fused.momentum[i] != 0.0f;
            for (int l = 0; l < m0->n_layers; l++) {
                const fm_layer *L = &m0->layers[l];
                if (L->kind == FM_LAYER_DENSE)
                    for (size_t i = 0; i < fmi_layer_weight_count(L); i++)
                        flipped += m0->state[L->offset + i] != fused.state[L->offset + i];
            }
            fm_model_free(m0);
            if (flipped == 0 || moved == 0)
                fail_msg("%s: %ld weights flipped, %ld momenta moved", what, flipped, moved);
            steps_free(&fused);
        }
}

/* --fuse (fm_config.fuse): SGD's and Adam's updates folded into the
 * backward pass, with the next step's weights drawn there, give the bits of
 * the optimizer step over the whole dW and of weights drawn in the forward
 * pass, on 1 and 2 threads, on the reference products and the mulfree
 * kernels, in each quantized mode, with bf16 latent weights and momentum
 * too; an evaluation between steps (which overwrites the drawn weights) is
 * followed by a fresh draw. */
static void test_fuse_equals_unfused(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        fm_weight_mode weights;
        fm_optimizer opt;
        double momentum;
        fm_latent latent;
        int test_quantized; /* evaluation by quantized weights, in ws->wq */
    } cases[] = {
        {"bc+qb sgd", FM_WEIGHTS_BC, FM_OPT_SGD, 0.0, FM_LATENT_FP32, 0},
        {"bc+qb sgd bf16 quantized test", FM_WEIGHTS_BC, FM_OPT_SGD, 0.0, FM_LATENT_BF16, 1},
        {"tc+qb adam bf16", FM_WEIGHTS_TC, FM_OPT_ADAM, 0.0, FM_LATENT_BF16, 0},
        {"synapse+qb sgd momentum", FM_WEIGHTS_SYNAPSE, FM_OPT_SGD, 0.9, FM_LATENT_FP32, 1},
        {"bc-det+qb sgd", FM_WEIGHTS_BC_DET, FM_OPT_SGD, 0.0, FM_LATENT_FP32, 0},
        {"fp32+qb sgd momentum", FM_WEIGHTS_FP32, FM_OPT_SGD, 0.9, FM_LATENT_FP32, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int mulfree = 0; mulfree < 2; mulfree++) {
            if (mulfree && cases[k].weights == FM_WEIGHTS_FP32)
                continue; /* mulfree needs quantized weights */
            fm_config c;
            fm_config_default(&c);
            c.arch = "mlp:24,16";
            c.weights = cases[k].weights;
            c.qb = 1;
            c.opt = cases[k].opt;
            c.momentum = cases[k].momentum;
            c.latent = cases[k].latent;
            c.test_quantized = cases[k].test_quantized;
            c.exec = mulfree ? FM_EXEC_MULFREE : FM_EXEC_DEFAULT;
            char what[96];
            snprintf(what, sizeof what, "%s, %s", cases[k].what, mulfree ? "mulfree" : "reference");
            steps_out fused = fused_as_unfused(&c, what);
            /* the weights moved */
            fm_model *m0;
            assert_int_equal(fm_model_create_image(&c, 8, 8, 1, 4, &m0), FM_OK);
            long moved = 0;
            for (size_t i = 0; i < fused.count; i++)
                moved += m0->state[i] != fused.state[i];
            fm_model_free(m0);
            if (moved == 0)
                fail_msg("%s: no parameter moved", what);
            steps_free(&fused);
        }
}

/* The default path's BLAS forms dW a tile at a time when fused: equal to
 * the whole product up to the order of its sums, so the runs stay close. */
static void test_fused_blas_close(void **state)
{
    (void)state;
    fm_config c;
    steps_config(&c);
    steps_out whole = run_steps(&c, 0, 1, 0);
    steps_out fused = run_steps(&c, 1, 1, 0);
    double worst = 0.0;
    for (size_t i = 0; i < whole.count; i++) {
        double d = fabs((double)whole.momentum[i] - fused.momentum[i]);
        worst = fmax(worst, d / fmax(1e-6, fabs((double)whole.momentum[i])));
    }
    print_message("largest relative momentum difference, BLAS tiles vs whole: %.3g\n", worst);
    assert_true(worst < 1e-4);
    steps_free(&whole);
    steps_free(&fused);
}

/* Stochastic rounding to bf16: values already bf16 stay; others go to one of
 * their two neighbours, up with probability (dropped bits) / 2^16, so the
 * mean of many roundings is the value; a bop run's momenta and an SGD run's
 * latent weights hold only bf16 values. */
static void test_bf16_rounding(void **state)
{
    (void)state;
    const float exact = 0x1.fep-3f; /* 8 significant bits */
    for (uint32_t d = 0; d < 1000; d++)
        assert_true(fmi_round_bf16(exact, d * 4294967u) == exact);
    const float values[] = {1.0f + 0x1p-10f, -3.14159f, 1e-7f, -2.5e-6f};
    for (size_t k = 0; k < sizeof values / sizeof values[0]; k++) {
        const float v = values[k];
        uint32_t bits;
        memcpy(&bits, &v, 4);
        float down, up;
        uint32_t lo = bits & 0xffff0000u, hi = lo + 0x10000u;
        memcpy(&down, &lo, 4);
        memcpy(&up, &hi, 4);
        double sum = 0.0;
        const int n = 65536;
        for (int i = 0; i < n; i++) { /* every 16-bit draw once: the mean is exact */
            float r = fmi_round_bf16(v, (uint32_t)i << 16);
            assert_true(r == down || r == up);
            sum += r;
        }
        double mean = sum / n;
        if (fabs(mean - v) > 1e-6 * fabs(v))
            fail_msg("value %a: mean of the roundings %a", (double)v, mean);
    }
    fm_config c;
    steps_config(&c);
    c.latent = FM_LATENT_BF16;
    steps_out o = run_steps(&c, 1, 1, 1);
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, 8, 8, 1, 4, &m), FM_OK);
    long weights = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        if (L->kind != FM_LAYER_DENSE)
            continue;
        for (size_t i = 0; i < fmi_layer_weight_count(L); i++, weights++) {
            uint32_t b;
            memcpy(&b, &o.momentum[L->offset + i], 4);
            if (b & 0xffffu)
                fail_msg("momentum %zu of layer %d is %a, not a bf16 value", i, l,
                         (double)o.momentum[L->offset + i]);
        }
    }
    assert_true(weights > 0);
    steps_free(&o);
    fm_model_free(m);
    /* SGD: the latent weights behind binary ones */
    fm_config_default(&c);
    c.arch = "mlp:24,16";
    c.weights = FM_WEIGHTS_BC;
    c.qb = 1;
    c.threads = 1;
    c.latent = FM_LATENT_BF16;
    o = run_steps(&c, 0, 1, 1);
    assert_int_equal(fm_model_create_image(&c, 8, 8, 1, 4, &m), FM_OK);
    for (int l = 0; l < m->n_layers; l++) {
        const fm_layer *L = &m->layers[l];
        if (L->kind != FM_LAYER_DENSE)
            continue;
        for (size_t i = 0; i < fmi_layer_weight_count(L); i++) {
            uint32_t b;
            memcpy(&b, &o.state[L->offset + i], 4);
            if (b & 0xffffu)
                fail_msg("latent weight %zu of layer %d is %a", i, l, (double)o.state[L->offset + i]);
        }
    }
    steps_free(&o);
    fm_model_free(m);
    /* fp32 weights have no latent state to shrink */
    c.weights = FM_WEIGHTS_FP32;
    assert_int_equal(fm_config_check(&c), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "bf16"));
}

/* gamma decays per epoch as the learning rate: the initial value in epoch
 * 1, geometric steps, the final value after the last epoch; none without a
 * final gamma; a final gamma outside (0, 1) is refused. */
static void test_gamma_decay(void **state)
{
    (void)state;
    fm_config c;
    bop_config(&c);
    c.epochs = 4;
    c.bop_gamma = 1e-3;
    assert_true(fmi_bop_gamma_at(&c, 3) == 1e-3);
    c.bop_gamma_final = 1e-5;
    assert_int_equal(fm_config_check(&c), FM_OK);
    assert_true(fmi_bop_gamma_at(&c, 1) == 1e-3);
    assert_true(fabs(fmi_bop_gamma_at(&c, 3) - 1e-4) < 1e-15);
    assert_true(fabs(fmi_bop_gamma_at(&c, 5) - 1e-5) < 1e-16);
    const double finals[] = {1.0, 1.5, NAN, 1e-50};
    for (size_t i = 0; i < sizeof finals / sizeof finals[0]; i++) {
        c.bop_gamma_final = finals[i];
        if (fm_config_check(&c) != FM_EINVAL)
            fail_msg("final gamma %g accepted", finals[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flip_rule, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_config, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_initial_weights_binary, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_learns_and_exports, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_fused_equals_unfused, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_fuse_equals_unfused, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_fused_blas_close, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_bf16_rounding, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_gamma_decay, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
