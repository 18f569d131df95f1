/* test_deploy_replay.c — the deploy tests' checks again on cases another
 * machine recorded (deploy_checks.h, FEWMUL_DEPLOY_RECORD): every kernel
 * variant of this build must predict the recorded classes, the packed variants
 * with scores equal to ref's bit for bit, and where every weighted layer is
 * packed ref's scores must equal the recording machine's. CI records on x86-64 while test_deploy and
 * test_deploy_conv train, and replays here under qemu-aarch64, where training
 * them takes too long: so the NEON kernels meet trained networks of every
 * weight mode, dense and convolutional, binary activations included.
 * FEWMUL_DEPLOY_REPLAY=DIR names the records; without it the test skips. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fewmul.h"
#include "deploy_checks.h"

static const char *replay_dir;
static int replayed_bits; /* cases whose ref scores matched the recording's bit for bit */

static int case_file(const struct dirent *e)
{
    const size_t n = strlen(e->d_name);
    return n > 5 && strcmp(e->d_name + n - 5, ".case") == 0;
}

static void read_exact(FILE *f, void *to, size_t bytes, const char *path)
{
    if (fread(to, 1, bytes, f) != bytes)
        fail_msg("%s: truncated", path);
}

/* Checks one recorded case, NAME.case beside NAME.fmp. */
static void replay_case(const char *dir, const char *case_name)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, case_name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s: cannot open it", path);
    deploy_case_header h;
    read_exact(f, &h, sizeof h, path);
    if (memcmp(h.magic, "fmcase1", 8) != 0 || h.count < 1 || h.count > DEPLOY_RECORD_IMAGES ||
        h.height < 1 || h.width < 1 || h.channels < 1 ||
        (int64_t)h.height * h.width * h.channels > 1 << 16 ||
        h.classes < 2 || h.classes > 256 || h.what_len < 0 || h.what_len > 200)
        fail_msg("%s: not a recorded case", path);
    char what[256];
    read_exact(f, what, (size_t)h.what_len, path);
    what[h.what_len] = 0;
    const size_t n = (size_t)h.count, pixels = (size_t)h.height * h.width * h.channels;
    fm_images set = {h.count, h.height, h.width, h.channels, malloc(n * pixels), malloc(n)};
    uint8_t *expected = malloc(n);
    float *ref_scores = malloc(n * h.classes * sizeof *ref_scores);
    assert_true(set.pixels && set.labels && expected && ref_scores);
    read_exact(f, set.pixels, n * pixels, path);
    read_exact(f, set.labels, n, path);
    read_exact(f, expected, n, path);
    read_exact(f, ref_scores, n * h.classes * sizeof *ref_scores, path);
    fclose(f);

    strcpy(path + strlen(path) - 5, ".fmp");
    fm_deploy *d;
    if (fm_deploy_load(path, &d) != FM_OK)
        fail_msg("%s: %s", path, fm_last_error());
    assert_int_equal(fm_deploy_classes(d), h.classes);
    /* fp32 weights go through each machine's BLAS or loop, in its order of
     * sums: only a network packed throughout has ref's bits everywhere */
    int packed = 1;
    for (int l = 0; l < fm_deploy_layers(d); l++) {
        fm_deploy_layer_info info;
        assert_int_equal(fm_deploy_describe_layer(d, l, &info), FM_OK);
        packed &= strcmp(info.weights, "fp32") != 0;
    }
    check_variants_against(d, &set, expected, what, h.binary_acts, packed ? ref_scores : NULL);
    replayed_bits += packed;
    fm_deploy_free(d);
    free(set.pixels);
    free(set.labels);
    free(expected);
    free(ref_scores);
}

static void test_recorded_cases(void **state)
{
    (void)state;
    struct dirent **names;
    const int n = scandir(replay_dir, &names, case_file, alphasort);
    if (n < 0)
        fail_msg("%s: cannot read the folder", replay_dir);
    if (n == 0)
        fail_msg("%s holds no recorded case (*.case)", replay_dir);
    for (int i = 0; i < n; i++) {
        replay_case(replay_dir, names[i]->d_name);
        free(names[i]);
    }
    free(names);
    printf("  %d recorded cases (%d with ref's scores equal to the recording machine's), every"
           " variant of this build: %s", n, replayed_bits, fm_kernels_name(0));
    for (int v = 1; fm_kernels_name(v); v++)
        printf(", %s", fm_kernels_name(v));
    printf("\n");
}

int main(void)
{
    replay_dir = getenv("FEWMUL_DEPLOY_REPLAY");
    if (!replay_dir || !*replay_dir) {
        printf("skipped: FEWMUL_DEPLOY_REPLAY names no folder of recorded cases (.ci/run sets it"
               " for the aarch64 build; FEWMUL_DEPLOY_RECORD=DIR records them while test_deploy"
               " and test_deploy_conv run)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_recorded_cases)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
