/* test_quant.c — statistics of every quantizer: stochastic binarization's mean
 * is the clipped W scaled by H, ternarization's likewise, the synapse quantizer
 * and Q(x) of quantized back-prop are unbiased inside their range; the
 * deterministic modes are exact; draws depend on (key, index) alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "quant.h"
#include "rng.h"

#define SAMPLES 40000

/* Mean of out[i] over SAMPLES independent draws of one value w, each draw from
 * its own index of one stream (counter-based streams make that a sample). */
typedef void (*sampler)(const float *w, float *out, size_t n, uint64_t key);
static float h_global = 0.03f;
static void bc(const float *w, float *o, size_t n, uint64_t k) { fmi_binarize_stochastic(w, o, n, h_global, k, 0); }
static void tc(const float *w, float *o, size_t n, uint64_t k) { fmi_ternarize_stochastic(w, o, n, h_global, k, 0); }
static void syn(const float *w, float *o, size_t n, uint64_t k) { fmi_synapse_stochastic(w, o, n, h_global, 26, 60.0f, k, 0); }
static void qb(const float *w, float *o, size_t n, uint64_t k) { fmi_pow2_quantize(w, o, n, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, k, 0); }

static double sample_mean(sampler f, float w, uint64_t key, double *sd_out)
{
    static float in[SAMPLES], out[SAMPLES];
    for (int i = 0; i < SAMPLES; i++)
        in[i] = w;
    f(in, out, SAMPLES, key);
    double s = 0, s2 = 0;
    for (int i = 0; i < SAMPLES; i++) {
        s += out[i];
        s2 += (double)out[i] * out[i];
    }
    double mean = s / SAMPLES;
    *sd_out = sqrt(fmax(s2 / SAMPLES - mean * mean, 0.0));
    return mean;
}

/* Asserts |mean - expected| within 5 standard errors (plus float slack). */
static void assert_mean_close(double mean, double sd, double expected)
{
    double tol = 5.0 * sd / sqrt((double)SAMPLES) + 1e-6 * fabs(expected) + 1e-9;
    if (fabs(mean - expected) > tol)
        fail_msg("mean %.8g, expected %.8g (tolerance %.3g)", mean, expected, tol);
}

static void test_binary_stochastic_mean(void **state)
{
    (void)state;
    const float h = h_global;
    /* inside the box the mean is w; outside, the clipped value times H */
    const float ws[] = {-0.05f, -0.03f, -0.021f, -0.004f, 0.0f, 0.0007f, 0.012f, 0.029f, 0.08f};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
        double sd, mean = sample_mean(bc, ws[i], 100 + i, &sd);
        double clipped = fmax(-1.0, fmin(1.0, ws[i] / h)) * h;
        assert_mean_close(mean, sd, clipped);
    }
    /* every value is exactly +-H */
    float w[1000], out[1000];
    for (int i = 0; i < 1000; i++)
        w[i] = (float)(i - 500) * 1e-4f;
    fmi_binarize_stochastic(w, out, 1000, h, 7, 0);
    for (int i = 0; i < 1000; i++)
        assert_true(out[i] == h || out[i] == -h);
}

static void test_ternary_stochastic_mean(void **state)
{
    (void)state;
    const float h = h_global;
    const float ws[] = {-0.04f, -0.02f, -0.001f, 0.0f, 0.005f, 0.0299f, 0.5f};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
        double sd, mean = sample_mean(tc, ws[i], 200 + i, &sd);
        double clipped = fmax(-1.0, fmin(1.0, ws[i] / h)) * h;
        assert_mean_close(mean, sd, clipped);
    }
    float w[3] = {0.0f, 0.01f, -0.01f}, out[3];
    fmi_ternarize_stochastic(w, out, 3, h, 9, 0);
    assert_true(out[0] == 0.0f); /* p = 0 at w = 0 */
    assert_true(out[1] == 0.0f || out[1] == h);
    assert_true(out[2] == 0.0f || out[2] == -h);
}

static void test_deterministic_modes_exact(void **state)
{
    (void)state;
    const float h = 0.25f;
    float w[] = {-1.0f, -0.2f, -0.125f, -0.1f, -0.0f, 0.0f, 0.1f, 0.125f, 0.126f, 0.7f};
    float b[10], t[10];
    fmi_binarize_det(w, b, 10, h);
    fmi_ternarize_det(w, t, 10, h);
    const float b_expect[] = {-h, -h, -h, -h, h, h, h, h, h, h}; /* sign(0) = +1, also for -0 */
    const float t_expect[] = {-h, -h, 0, 0, 0, 0, 0, 0, h, h};  /* threshold |w| > H/2 */
    for (int i = 0; i < 10; i++) {
        assert_true(b[i] == b_expect[i]);
        assert_true(t[i] == t_expect[i]);
    }
    /* the dispatcher's deterministic counterparts are the same functions */
    float d[10];
    fmi_quantize_weights_det(FM_WEIGHTS_BC, w, d, 10, h, 0, 0);
    assert_memory_equal(d, b, sizeof d);
    fmi_quantize_weights_det(FM_WEIGHTS_TC_DET, w, d, 10, h, 0, 0);
    assert_memory_equal(d, t, sizeof d);
    fmi_quantize_weights_det(FM_WEIGHTS_FP32, w, d, 10, h, 0, 0);
    assert_memory_equal(d, w, sizeof d);
}

static void test_synapse_levels(void **state)
{
    (void)state;
    const float h = h_global;
    /* 26 levels from h/60 to h, equal ratios */
    double ratio = pow(60.0, 1.0 / 25.0);
    assert_float_equal(fmi_synapse_level(h, 26, 60.0f, 25), h, 1e-9);
    assert_float_equal(fmi_synapse_level(h, 26, 60.0f, 0), h / 60.0f, 1e-9);
    for (int i = 0; i < 25; i++)
        assert_float_equal(fmi_synapse_level(h, 26, 60.0f, i + 1) / fmi_synapse_level(h, 26, 60.0f, i),
                           ratio, 1e-5);
    /* stochastic rounding is unbiased between the smallest level and h */
    const float ws[] = {0.0006f, 0.001f, 0.0033f, -0.0071f, 0.0152f, -0.0299f};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
        double sd, mean = sample_mean(syn, ws[i], 300 + i, &sd);
        assert_mean_close(mean, sd, ws[i]);
    }
    /* every output is a level with the input's sign; deterministic picks the
     * nearest level in log */
    float w[200], out[200], det[200];
    for (int i = 0; i < 200; i++)
        w[i] = (i % 2 ? -1.0f : 1.0f) * h * powf(70.0f, -(float)i / 199.0f);
    fmi_synapse_stochastic(w, out, 200, h, 26, 60.0f, 11, 0);
    fmi_synapse_det(w, det, 200, h, 26, 60.0f);
    for (int i = 0; i < 200; i++) {
        int found_s = 0, found_d = 0;
        double best = INFINITY;
        int nearest = -1;
        for (int k = 0; k < 26; k++) {
            float level = fmi_synapse_level(h, 26, 60.0f, k);
            found_s |= fabsf(out[i]) == level;
            found_d |= fabsf(det[i]) == level;
            double d = fabs(log(fabs(w[i])) - log(level));
            if (d < best) {
                best = d;
                nearest = k;
            }
        }
        assert_true(found_s && found_d);
        assert_true((out[i] < 0) == (w[i] < 0));
        assert_float_equal(fabsf(det[i]), fmi_synapse_level(h, 26, 60.0f, nearest), 1e-9);
    }
}

static void test_pow2_unbiased_and_powers(void **state)
{
    (void)state;
    const float xs[] = {0.3f, -0.3f, 1.0f, 1.7f, -5.9f, 1e-3f, 123.4f, 0.75f};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        double sd, mean = sample_mean(qb, xs[i], 400 + i, &sd);
        assert_mean_close(mean, sd, xs[i]);
    }
    /* outputs are signed powers of two bracketing x */
    float x[1000], q[1000];
    for (int i = 0; i < 1000; i++)
        x[i] = (float)((i * 7919) % 2001 - 1000) / 97.0f;
    fmi_pow2_quantize(x, q, 1000, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, 5, 0);
    for (int i = 0; i < 1000; i++) {
        if (x[i] == 0.0f) {
            assert_true(q[i] == 0.0f);
            continue;
        }
        int e;
        float m = frexpf(fabsf(q[i]), &e);
        assert_true(m == 0.5f); /* a power of two */
        assert_true((q[i] < 0) == (x[i] < 0));
        float k = floorf(log2f(fabsf(x[i])));
        assert_true(fabsf(q[i]) == exp2f(k) || fabsf(q[i]) == exp2f(k + 1));
    }
    /* exact powers of two stay put */
    float p2[] = {0.25f, -2.0f, 64.0f}, qp[3];
    fmi_pow2_quantize(p2, qp, 3, FM_QB_UNBOUNDED, FM_QB_UNBOUNDED, 1, 0);
    assert_memory_equal(p2, qp, sizeof p2);
}

static void test_pow2_clip_and_zero(void **state)
{
    (void)state;
    /* the authors' conv range [-4, 3]: magnitudes 2^-4 .. 2^4 */
    float x[] = {0.0f, 1e-3f, -0.05f, 0.0625f, 20.0f, -100.0f, 15.0f, 1e-40f};
    float q[8];
    fmi_pow2_quantize(x, q, 8, -4, 3, 3, 0);
    assert_true(q[0] == 0.0f);         /* Q(0) = 0, our documented choice */
    assert_true(q[1] == 0.0625f);      /* below range: up to 2^emin */
    assert_true(q[2] == -0.0625f);
    assert_true(q[3] == 0.0625f);
    assert_true(q[4] == 16.0f);        /* above range: saturates at 2^(emax+1) */
    assert_true(q[5] == -16.0f);
    assert_true(q[6] == 8.0f || q[6] == 16.0f);
    assert_true(q[7] == 0.0f);         /* subnormal counts as zero */
    /* unbiased inside the range */
    double sd, mean;
    static float in[SAMPLES], out[SAMPLES];
    for (int i = 0; i < SAMPLES; i++)
        in[i] = 0.37f;
    fmi_pow2_quantize(in, out, SAMPLES, -4, 3, 77, 0);
    double s = 0, s2 = 0;
    for (int i = 0; i < SAMPLES; i++) {
        s += out[i];
        s2 += (double)out[i] * out[i];
    }
    mean = s / SAMPLES;
    sd = sqrt(s2 / SAMPLES - mean * mean);
    assert_mean_close(mean, sd, 0.37);
}

static void test_counter_streams(void **state)
{
    (void)state;
    /* a draw depends on (key, index) only: a slice gives the same values */
    float w[5000], a[5000], b[5000];
    for (int i = 0; i < 5000; i++)
        w[i] = (float)(i % 61 - 30) * 1e-3f;
    fmi_binarize_stochastic(w, a, 5000, 0.03f, 99, 0);
    fmi_binarize_stochastic(w, b, 5000, 0.03f, 99, 0);
    assert_memory_equal(a, b, sizeof a);
    fmi_binarize_stochastic(w, b, 5000, 0.03f, 100, 0);
    assert_true(memcmp(a, b, sizeof a) != 0);
    /* tiles drawn with their offsets as `first` give the whole's draws, in
     * every stochastic mode (the fused update draws a tile of rows at a time) */
    const fm_weight_mode modes[3] = {FM_WEIGHTS_BC, FM_WEIGHTS_TC, FM_WEIGHTS_SYNAPSE};
    for (int k = 0; k < 3; k++) {
        fmi_quantize_weights(modes[k], w, a, 5000, 0.03f, 26, 60.0f, 41, 0);
        memset(b, 0xff, sizeof b);
        for (size_t at = 0; at < 5000; at += 1536) {
            const size_t count = at + 1536 < 5000 ? 1536 : 5000 - at;
            fmi_quantize_weights(modes[k], w + at, b + at, count, 0.03f, 26, 60.0f, 41, at);
        }
        assert_memory_equal(a, b, sizeof a);
        fmi_quantize_weights(modes[k], w + 1, b, 4999, 0.03f, 26, 60.0f, 41, 0);
        assert_true(memcmp(a + 1, b, 4999 * sizeof *b) != 0); /* the offset matters */
    }
    /* keys from different identifiers differ */
    assert_true(fmi_rng_key(1, 1, 0, 0) != fmi_rng_key(1, 1, 0, 1));
    assert_true(fmi_rng_key(1, 1, 0, 0) != fmi_rng_key(1, 2, 0, 0));
    assert_true(fmi_rng_key(1, 1, 0, 0) != fmi_rng_key(2, 1, 0, 0));
    /* uniforms are uniform enough: mean 1/2, variance 1/12 */
    double s = 0, s2 = 0;
    for (int i = 0; i < 100000; i++) {
        double u = fmi_rand_uniform(1234, (uint64_t)i);
        assert_true(u >= 0.0 && u < 1.0);
        s += u;
        s2 += u * u;
    }
    assert_float_equal(s / 100000, 0.5, 0.005);
    assert_float_equal(s2 / 100000 - 0.25, 1.0 / 12.0, 0.002);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_stochastic_mean),
        cmocka_unit_test(test_ternary_stochastic_mean),
        cmocka_unit_test(test_deterministic_modes_exact),
        cmocka_unit_test(test_synapse_levels),
        cmocka_unit_test(test_pow2_unbiased_and_powers),
        cmocka_unit_test(test_pow2_clip_and_zero),
        cmocka_unit_test(test_counter_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
