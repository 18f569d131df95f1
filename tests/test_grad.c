/* test_grad.c — finite-difference gradient checks: dense, batch norm, both
 * losses, and a whole full-precision network through fmi_train_step. Each
 * check perturbs inputs in double-sided steps and compares with the analytic
 * gradient at a relative tolerance suited to float arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "layers.h"
#include "loss.h"
#include "net.h"
#include "rng.h"

static fm_rng rng;
static void fill(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (2.0f * fmi_rng_uniform(&rng) - 1.0f) * scale;
}

/* Compares analytic and numeric gradients: |a - n| <= tol * max(1, |a|, |n|)
 * scaled by the largest gradient seen, so tiny components don't dominate. */
static void assert_grad_close(const float *analytic, const double *numeric, size_t n, double tol,
                              const char *what)
{
    double top = 1e-12;
    for (size_t i = 0; i < n; i++)
        top = fmax(top, fabs(numeric[i]));
    for (size_t i = 0; i < n; i++)
        if (fabs(analytic[i] - numeric[i]) > tol * top)
            fail_msg("%s[%zu]: analytic %.6g numeric %.6g (scale %.3g)", what, i, analytic[i],
                     numeric[i], top);
}

/* Objective used for layer checks: L = sum(r .* y). */
static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

enum { B = 6, N = 7, M = 5 };

/* d/dp of sum(r .* (x · w)) for each element of p, which is x or w. */
static void numeric_dense(float *p, int n, const float *x, const float *w, const float *r,
                          double *out)
{
    const float h = 1e-2f;
    float y[B * M];
    for (int i = 0; i < n; i++) {
        float keep = p[i];
        p[i] = keep + h;
        fmi_dense_forward(x, w, y, B, N, M);
        double up = dot(r, y, B * M);
        p[i] = keep - h;
        fmi_dense_forward(x, w, y, B, N, M);
        out[i] = (up - dot(r, y, B * M)) / (2 * h);
        p[i] = keep;
    }
}

static void test_dense_gradients(void **state)
{
    (void)state;
    float x[B * N], w[N * M], r[B * M], dx[B * N], dw[N * M];
    double num_x[B * N], num_w[N * M];
    fill(x, B * N, 1.0f);
    fill(w, N * M, 0.5f);
    fill(r, B * M, 1.0f);
    fmi_dense_backward_input(r, w, dx, B, N, M);
    fmi_dense_backward_weights(x, r, dw, B, N, M);
    numeric_dense(x, B * N, x, w, r, num_x);
    numeric_dense(w, N * M, x, w, r, num_w);
    assert_grad_close(dx, num_x, B * N, 1e-3, "dense dx");
    assert_grad_close(dw, num_w, N * M, 1e-3, "dense dw");
}

static void test_batchnorm_gradients(void **state)
{
    (void)state;
    enum { D = 9 };
    float x[B * D], y[B * D], r[B * D], dx[B * D], gamma[D], beta[D], dgamma[D], dbeta[D];
    float mean[D], invstd[D];
    double num_x[B * D], num_g[D], num_b[D];
    fill(x, B * D, 2.0f);
    fill(gamma, D, 1.5f);
    fill(beta, D, 1.0f);
    fill(r, B * D, 1.0f);
    const float eps = 1e-4f;
    fmi_bn_forward_train(x, y, B, D, gamma, beta, eps, mean, invstd);
    fmi_bn_backward(x, r, dx, B, D, gamma, mean, invstd, dgamma, dbeta);
    const float h = 1e-2f;
#define NUMERIC(arr, i, out)                                                   \
    do {                                                                       \
        float keep = arr[i];                                                   \
        arr[i] = keep + h;                                                     \
        fmi_bn_forward_train(x, y, B, D, gamma, beta, eps, mean, invstd);       \
        double up = dot(r, y, B * D);                                          \
        arr[i] = keep - h;                                                     \
        fmi_bn_forward_train(x, y, B, D, gamma, beta, eps, mean, invstd);       \
        out = (up - dot(r, y, B * D)) / (2 * h);                               \
        arr[i] = keep;                                                         \
    } while (0)
    for (int i = 0; i < B * D; i++)
        NUMERIC(x, i, num_x[i]);
    for (int i = 0; i < D; i++) {
        NUMERIC(gamma, i, num_g[i]);
        NUMERIC(beta, i, num_b[i]);
    }
#undef NUMERIC
    assert_grad_close(dx, num_x, B * D, 5e-3, "bn dx");
    assert_grad_close(dgamma, num_g, D, 1e-3, "bn dgamma");
    assert_grad_close(dbeta, num_b, D, 1e-3, "bn dbeta");
    /* the forward output is normalised: per feature mean beta, variance gamma^2 */
    fmi_bn_forward_train(x, y, B, D, gamma, beta, eps, mean, invstd);
    float m2[D], v2[D];
    fmi_bn_batch_stats(y, B, D, m2, v2);
    for (int j = 0; j < D; j++) {
        assert_float_equal(m2[j], beta[j], 1e-5);
        assert_float_equal(v2[j], gamma[j] * gamma[j], 2e-3 * gamma[j] * gamma[j] + 1e-5);
    }
}

typedef double (*loss_fn)(const float *, const uint8_t *, int, int, float *, int *);

static void check_loss(loss_fn f, const char *name)
{
    enum { C = 10 };
    float y[B * C], dy[B * C];
    double num[B * C];
    uint8_t labels[B];
    fill(y, B * C, 1.5f);
    for (int b = 0; b < B; b++)
        labels[b] = (uint8_t)fmi_rng_below(&rng, C);
    int errors;
    f(y, labels, B, C, dy, &errors);
    const float h = 1e-3f;
    for (int i = 0; i < B * C; i++) {
        float keep = y[i];
        y[i] = keep + h;
        double up = f(y, labels, B, C, NULL, NULL);
        y[i] = keep - h;
        num[i] = (up - f(y, labels, B, C, NULL, NULL)) / (2 * h);
        y[i] = keep;
    }
    assert_grad_close(dy, num, B * C, 2e-3, name);
    assert_int_equal(errors, fmi_count_errors(y, labels, B, C));
}

static void test_hinge_gradient(void **state)
{
    (void)state;
    check_loss(fmi_loss_hinge, "hinge");
    /* value by hand: one example, two classes, label 0, outputs (0.5, 0.25):
     * (1 - 0.5)^2 + (1 + 0.25)^2 = 0.25 + 1.5625 */
    float y[2] = {0.5f, 0.25f};
    uint8_t label = 0;
    assert_float_equal(fmi_loss_hinge(y, &label, 1, 2, NULL, NULL), 1.8125, 1e-9);
}

/* A diverged network's outputs are NaN: its loss is NaN, never the 0 of a
 * perfect fit (max(0, NaN) taken as 0 reported a diverged run's loss as 0). */
static void test_losses_keep_nan(void **state)
{
    (void)state;
    float y[3] = {NAN, 0.5f, 0.25f}, dy[3];
    uint8_t label = 1;
    assert_true(isnan(fmi_loss_hinge(y, &label, 1, 3, dy, NULL)));
    assert_true(isnan(fmi_loss_xent(y, &label, 1, 3, dy, NULL)));
    float inf[2] = {-INFINITY, 0.0f};
    label = 0;
    assert_true(isinf(fmi_loss_hinge(inf, &label, 1, 2, NULL, NULL)));
    /* finite outputs are unchanged: margins <= 0 count 0 */
    float fit[2] = {2.0f, -3.0f};
    assert_true(fmi_loss_hinge(fit, &label, 1, 2, NULL, NULL) == 0.0);
}

static void test_xent_gradient(void **state)
{
    (void)state;
    check_loss(fmi_loss_xent, "xent");
    float y[2] = {0.0f, 0.0f};
    uint8_t label = 1;
    assert_float_equal(fmi_loss_xent(y, &label, 1, 2, NULL, NULL), log(2.0), 1e-7);
}

/* The whole network: every parameter's gradient from fmi_train_step against
 * finite differences of the loss it returns (fp32 weights, no dropout, so the
 * loss is a deterministic function of the state). */
static void check_network(fm_loss loss, const char *arch, int height, int width, int channels,
                          int samples_per_group)
{
    fm_config c;
    fm_config_default(&c);
    c.arch = arch;
    c.loss = loss;
    c.batch = B;
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, height, width, channels, 4, &m), FM_OK);
    const int dim = height * width * channels;
    /* BN gamma away from 1 so its gradient is not trivially symmetric */
    for (int g = 0; g < m->n_groups; g++)
        if (m->groups[g].clip == 0.0f && m->groups[g].lr_scale == 1.0f && g % 2 == 1)
            for (size_t i = 0; i < m->groups[g].count / 2; i++)
                m->state[m->groups[g].offset + i] = 0.5f + fmi_rng_uniform(&rng);
    fm_workspace *ws;
    assert_int_equal(fmi_workspace_create(m, B, 1, &ws), FM_OK);
    uint8_t labels[B];
    float *x = malloc((size_t)B * dim * sizeof *x);
    const size_t x_bytes = (size_t)B * dim * sizeof *x;
    fill(x, (size_t)B * dim, 1.0f);
    for (int b = 0; b < B; b++)
        labels[b] = (uint8_t)(b % 4);
    memcpy(ws->act[0], x, x_bytes);
    fmi_train_step(m, ws, labels, B, 0, NULL);
    float *analytic = malloc(m->state_count * sizeof(float));
    memcpy(analytic, ws->grad_state, m->state_count * sizeof(float));
    /* One-sided differences that disagree reveal a ReLU kink or hinge corner
     * inside the step; such samples are skipped, and at most a quarter may be. */
    const float h = 2e-3f;
    memcpy(ws->act[0], x, x_bytes);
    double center = fmi_train_step(m, ws, labels, B, 0, NULL);
    int checked = 0, skipped = 0;
    for (int g = 0; g < m->n_groups; g++) {
        const fm_param_group *G = &m->groups[g];
        for (int s = 0; s < samples_per_group; s++) {
            size_t i = G->offset + fmi_rng_below(&rng, (uint32_t)G->count);
            float keep = m->state[i];
            m->state[i] = keep + h;
            memcpy(ws->act[0], x, x_bytes);
            double up = fmi_train_step(m, ws, labels, B, 0, NULL);
            m->state[i] = keep - h;
            memcpy(ws->act[0], x, x_bytes);
            double down = fmi_train_step(m, ws, labels, B, 0, NULL);
            m->state[i] = keep;
            double forward = (up - center) / h, backward = (center - down) / h;
            double numeric = (up - down) / (2 * h);
            double tol = 2e-2 * fmax(fabs(numeric), 1e-2);
            if (fabs(forward - backward) > 0.1 * fmax(fabs(numeric), 1e-2)) {
                skipped++;
                continue;
            }
            checked++;
            if (fabs(numeric - analytic[i]) > tol)
                fail_msg("group %d index %zu: analytic %.6g numeric %.6g", g, i - G->offset,
                         analytic[i], numeric);
        }
    }
    assert_true(skipped * 3 <= checked);
    free(analytic);
    free(x);
    fmi_workspace_free(m, ws);
    fm_model_free(m);
}

/* Sign activations: +1 for x >= 0 (zero and negative zero included), and the
 * straight-through gradient passes exactly where |x| <= 1. */
static void test_sign_straight_through(void **state)
{
    (void)state;
    const float x[] = {-2.0f, -1.0f, -0.5f, -0.0f, 0.0f, 1e-30f, 1.0f, 1.0000001f, 3.0f};
    const float want_y[] = {-1, -1, -1, 1, 1, 1, 1, 1, 1};
    const float want_dx[] = {0, 7, 7, 7, 7, 7, 7, 0, 0};
    enum { n = sizeof x / sizeof x[0] };
    float y[n], dy[n], dx[n];
    for (int i = 0; i < n; i++)
        dy[i] = 7.0f;
    fmi_sign_forward(x, y, n);
    fmi_sign_backward(x, dy, dx, n);
    for (int i = 0; i < n; i++) {
        assert_float_equal(y[i], want_y[i], 0.0f);
        assert_float_equal(dx[i], want_dx[i], 0.0f);
    }
}

static void test_network_gradient_hinge(void **state)
{
    (void)state;
    check_network(FM_LOSS_HINGE, "mlp:6,5", N, 1, 1, 20);
}

static void test_network_gradient_xent(void **state)
{
    (void)state;
    check_network(FM_LOSS_XENT, "mlp:6,5", N, 1, 1, 20);
}

/* Convolutional networks end to end: valid and same padding, stride 2,
 * max-pooling, batch norm per feature map, the flattened map into a dense
 * layer. */
static void test_conv_network_gradient(void **state)
{
    (void)state;
    check_network(FM_LOSS_HINGE, "conv:3k3,pool2,4k2same,fc5", 7, 7, 2, 12);
    check_network(FM_LOSS_XENT, "conv:3k3s2same,4k2,pool2,fc5", 8, 8, 2, 12);
    /* global average pooling of small maps: the mean of many ReLU outputs
     * puts a kink near almost every step of the finite differences */
    check_network(FM_LOSS_HINGE, "conv:3k3,pool2,gap,fc5", 7, 7, 2, 12);
    check_network(FM_LOSS_XENT, "conv:4k3s2,gap", 6, 6, 2, 12);
}

/* Batch norm after a convolution and pool normalises each feature map over
 * the batch and every position: in training, each channel of its output has
 * mean beta and variance gamma^2 (up to eps) over B x H x W values. */
static void test_conv_batchnorm_per_map(void **state)
{
    (void)state;
    fm_config c;
    fm_config_default(&c);
    c.arch = "conv:3k3,pool2,fc5";
    fm_model *m;
    assert_int_equal(fm_model_create_image(&c, 9, 9, 2, 4, &m), FM_OK);
    fm_workspace *ws;
    assert_int_equal(fmi_workspace_create(m, B, 1, &ws), FM_OK);
    fill(ws->act[0], (size_t)B * m->input_dim, 1.0f);
    uint8_t labels[B] = {0};
    fmi_train_step(m, ws, labels, B, 0, NULL);
    int l = 0;
    while (m->layers[l].kind != FM_LAYER_BN)
        l++;
    const fm_layer *L = &m->layers[l];
    assert_int_equal(L->channels, 3);
    assert_int_equal(L->out, 3 * 3 * 3); /* 9 -> 7 -> pool 3 */
    float *p = m->state + L->offset;
    for (int ch = 0; ch < 3; ch++) { /* gamma, beta away from 1 and 0 */
        p[ch] = 0.5f + (float)ch;
        p[3 + ch] = 0.25f * (float)(ch + 1);
    }
    fmi_train_step(m, ws, labels, B, 0, NULL);
    const int rows = B * L->out / 3;
    for (int ch = 0; ch < 3; ch++) {
        double sum = 0, sq = 0;
        for (int r = 0; r < rows; r++)
            sum += ws->act[l + 1][r * 3 + ch];
        double mean = sum / rows;
        for (int r = 0; r < rows; r++) {
            double d = ws->act[l + 1][r * 3 + ch] - mean;
            sq += d * d;
        }
        assert_true(fabs(mean - p[3 + ch]) < 1e-4);
        assert_true(fabs(sq / rows - (double)p[ch] * p[ch]) < 2e-3 * p[ch] * p[ch]);
    }
    fmi_workspace_free(m, ws);
    fm_model_free(m);
}

int main(void)
{
    fmi_rng_seed(&rng, 42);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_gradients),
        cmocka_unit_test(test_batchnorm_gradients),
        cmocka_unit_test(test_hinge_gradient),
        cmocka_unit_test(test_losses_keep_nan),
        cmocka_unit_test(test_sign_straight_through),
        cmocka_unit_test(test_xent_gradient),
        cmocka_unit_test(test_network_gradient_hinge),
        cmocka_unit_test(test_network_gradient_xent),
        cmocka_unit_test(test_conv_network_gradient),
        cmocka_unit_test(test_conv_batchnorm_per_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
