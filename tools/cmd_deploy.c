/* cmd_deploy.c — the commands that run a packed (deployed) model: `fewmul
 * infer` predicts a data set and times it, `fewmul info` describes the model,
 * `fewmul bench infer` times every kernel variant against fp32; their help
 * texts and parse functions. */
#include "cli.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const infer_help[] = {
    "Usage: fewmul infer --model FILE [OPTIONS]",
    "",
    "Load a packed model (written by 'fewmul train --out') and predict every",
    "image of a data set in batches, as a deployed program would: report the",
    "classification error, the images per second and the median time of one",
    "batch. One untimed batch goes first, to start the threads and warm the",
    "caches. Options take their value as '--opt VALUE' or '--opt=VALUE'.",
    "",
    "  --model FILE       the packed model file (required)",
    "  --data SPEC        fashion (default), mnist:DIR, idx:DIR, cifar10:DIR or",
    "                     svhn:DIR, as for train;",
    "                     the images must have the model's input shape",
    "                     (height x width x channels) and no label may reach",
    "                     the model's class count",
    "  --set test|train   which set of the data to predict (default test)",
    "  --batch B          examples per call of fm_deploy_predict, 1..65536",
    "                     (default 256)",
    "  --threads T        worker threads, 1..1024 (default: all cores); the",
    "                     examples of a batch are spread over them",
    "  --kernels ref|avx2|avx512|neon|fp32",
    "                     the kernel variant (default: FEWMUL_KERNELS, else the",
    "                     best this CPU supports). ref is portable C; avx2,",
    "                     avx512 (x86) and neon (aarch64) give bit-identical",
    "                     results faster; fp32 is the",
    "                     yardstick: the same network with its weights unpacked",
    "                     to floats and multiplied through BLAS. A variant this",
    "                     CPU lacks fails (exit 1)",
    "  --show N           also print the predictions for the first N images of",
    "                     the set (at most all), one line each: 'image I: class",
    "                     C, label L' and 'wrong' where they differ (0..1000000,",
    "                     default 0)",
    "  --json             print the result as one JSON object, the last line of",
    "                     standard output, with the keys error_pct, images,",
    "                     images_per_s, latency_us_median, batch, batches,",
    "                     seconds, kernels, threads, model, describe, input,",
    "                     input_dim, classes, data, set, and with --show the",
    "                     arrays shown_classes and shown_labels",
    "  -h, --help         show this help",
    "",
    "Environment: FEWMUL_KERNELS=ref|avx2|avx512|neon chooses the variant at",
    "load; an invalid value fails (exit 1).",
    "",
    "Exit status: 0 success; 1 a variant unsupported here, FEWMUL_KERNELS",
    "invalid; 2 usage error (bad option or value);",
    "3 a file or folder not found; 4 bad input: a malformed, truncated or",
    "unsupported file, or data that do not fit the model; 5 I/O error: a file",
    "that cannot be read or written (permission, disk full); 6 out of memory.",
    "docs/errors.md lists the cases.",
    "",
    "Example:",
    "  fewmul infer --model bc.fmp --data mnist:/data/mnist --batch 1 --threads 1",
    "  fewmul infer --model bc.fmp --show 10",
    NULL};

const char *const info_help[] = {
    "Usage: fewmul info FILE [--json]",
    "",
    "A checkpoint (written by 'fewmul train --checkpoint') is described as the",
    "run it holds: its network, data spec, the epoch and images it has done,",
    "its steps, learning rate, best epoch so far and whether it keeps a ledger;",
    "with --json the keys file, format (\"checkpoint\"), describe, data, epoch,",
    "epochs, images_done, images_total, step, lr, best_epoch,",
    "best_valid_error_pct, best_test_error_pct, ledger, finished.",
    "",
    "Otherwise:",
    "Describe a packed model (written by 'fewmul train --out'): its network,",
    "input shape, classes and file size; per layer its type (dense, conv,",
    "maxpool, gap), its inputs and outputs, the kind of its weights (fp32,",
    "binary, ternary, synapse), their bits and levels, whether its input is",
    "real or binary (+-1 from a sign layer), its activation (relu, sign, or",
    "none for the class scores) and its weight bytes, and for a map its input,",
    "kernel or window, stride, padding and output; the total weight bits and",
    "bits per weight; the kernel variant that would run it here and the",
    "variants available.",
    "",
    "  --json             print one JSON object, the last line of standard",
    "                     output, with the keys file, describe, input, input_dim,",
    "                     classes, file_bytes, layers (type, in, out, weights,",
    "                     bits, levels, input, activation, weight_count,",
    "                     weight_bytes; maps also in_map, out_map; conv and",
    "                     maxpool kernel_h, kernel_w, stride, pad_top,",
    "                     pad_left), weights, weight_bits, weight_bytes,",
    "                     bits_per_weight, kernels, kernels_available",
    "  -h, --help         show this help",
    "",
    "Environment: FEWMUL_KERNELS=ref|avx2|avx512|neon chooses the variant at",
    "load; an invalid value fails (exit 1).",
    "",
    "Exit status: 0 success; 1 FEWMUL_KERNELS invalid; 2 usage error (no FILE,",
    "bad option); 4 also for a training-state file;",
    "3 a file or folder not found; 4 bad input: a malformed, truncated or",
    "unsupported file, or data that do not fit the model; 5 I/O error: a file",
    "that cannot be read or written (permission, disk full); 6 out of memory.",
    "docs/errors.md lists the cases.",
    NULL};

const char *const bench_help[] = {
    "Usage: fewmul bench infer --model FILE [--runs N] [--threads T]",
    "                          [--kernels LIST] [--json]",
    "",
    "Time a packed model (written by 'fewmul train --out') with every kernel",
    "variant available here (ref; avx2, avx512 or neon where the CPU has them;",
    "fp32, the yardstick that multiplies unpacked float weights through BLAS),",
    "in one invocation, on pseudo-random pixels of the model's input size",
    "(256 images from a fixed seed, the same on every run and machine):",
    "  batch-1 latency: one example per fm_deploy_predict call on 1 thread,",
    "    the median of N runs, in microseconds; each timed call follows an",
    "    untimed one of the same variant, so its weights are in cache as when",
    "    serving steadily",
    "  throughput: batches of 256 on --threads threads, the median of",
    "    max(5, N/20) runs, in images per second",
    "Each variant is warmed up first. The runs are interleaved: every round",
    "runs each variant once, so machine noise hits them all alike. The report",
    "gives each variant's speedup over fp32 for both measurements, and the",
    "number of the 256 inputs whose predicted class differs from the first",
    "variant's (ref's unless --kernels says otherwise; the packed variants are",
    "bit-identical; fp32 adds in another order). A mismatch is printed, but is",
    "not an error.",
    "",
    "  --model FILE       the packed model file (required)",
    "  --runs N           batch-1 runs per variant, 1..1000000 (default 200)",
    "  --threads T        threads of the throughput runs, 1..1024 (default: all",
    "                     cores)",
    "  --kernels LIST     time only these variants, in this order: names from",
    "                     ref, avx2, avx512, neon, fp32 separated by commas",
    "                     (default: every variant available here); a variant",
    "                     this CPU lacks fails (exit 1)",
    "  --json             print one JSON object, the last line of standard",
    "                     output, instead of the table: command, model, describe,",
    "                     input, classes, runs, throughput_runs, batch, threads,",
    "                     seed, default_kernels, variants (name, latency_us,",
    "                     images_per_s, latency_speedup_vs_fp32,",
    "                     throughput_speedup_vs_fp32, mismatches), mismatches",
    "  -h, --help         show this help",
    "",
    "Environment: FEWMUL_KERNELS=ref|avx2|avx512|neon sets only the variant the",
    "model is loaded with (reported as default_kernels); an invalid value fails",
    "(exit 1).",
    "",
    "Exit status: 0 success (also with mismatches); 1 FEWMUL_KERNELS invalid,",
    "or a --kernels variant this CPU lacks; 2 usage error (no or unknown",
    "subcommand, bad option or value, an unknown or repeated --kernels name);",
    "3 a file or folder not found; 4 bad input: a malformed, truncated or",
    "unsupported file, or data that do not fit the model; 5 I/O error: a file",
    "that cannot be read or written (permission, disk full); 6 out of memory.",
    "docs/errors.md lists the cases.",
    "",
    "Example:",
    "  fewmul bench infer --model bc.fmp --runs 500 --json",
    NULL};

/* ---- infer --------------------------------------------------------------- */

/* Every variant name the library knows; which of them this CPU runs is
 * fm_kernels_name's business (an unsupported one fails, exit 1). */
static const choice kernel_choices[] = {
    {"ref", 0}, {"avx2", 1}, {"avx512", 2}, {"neon", 3}, {"fp32", 4}, {NULL, 0}};

#define IOPT(field) offsetof(infer_opts, field)
static const option_def infer_options[] = {
    {"model", T_STRING, IOPT(model), 0, 0, 0, NULL, 0, NULL},
    {"data", T_STRING, IOPT(data), 0, 0, 0, NULL, 0, NULL},
    {"set", T_CHOICE, IOPT(set), 0, 0, 0, set_choices, 0, NULL},
    {"batch", T_INT, IOPT(batch), 1, 65536, 0, NULL, 0, NULL},
    {"threads", T_INT, IOPT(threads), 1, 1024, 0, NULL, 0, NULL},
    {"kernels", T_CHOICE, IOPT(kernels), 0, 0, 0, kernel_choices, 0, NULL},
    {"show", T_INT, IOPT(show), 0, 1000000, 0, NULL, 0, NULL},
    {"json", T_FLAG, IOPT(json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef IOPT

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n values (sorted in place); the mean of the middle two when n
 * is even. */
static double median(double *v, int n)
{
    if (n <= 0)
        return NAN;
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* "28x28x1" */
static const char *fmt_shape(char *buf, size_t cap, const fm_deploy *d)
{
    int h = 0, w = 0, c = 0;
    fm_deploy_input_shape(d, &h, &w, &c);
    snprintf(buf, cap, "%dx%dx%d", h, w, c);
    return buf;
}

/* --kernels NAME: a variant this CPU lacks is a failure with the library's
 * message, not a usage error: the same line works on another machine. */
static int apply_kernels(fm_deploy *d, int choice_index)
{
    if (choice_index < 0)
        return 0;
    if (fm_deploy_set_kernels(d, choice_name(kernel_choices, choice_index)) != FM_OK)
        return failure("--kernels: %s", fm_last_error());
    return 0;
}

/* --show N: the classes of the first n images (untimed), to be printed
 * beside their labels. */
static int predict_shown(const fm_deploy *d, const fm_images *images, int n, int threads,
                         uint8_t **classes)
{
    *classes = malloc(n > 0 ? (size_t)n : 1);
    if (!*classes)
        return failure_as(FM_ENOMEM, "out of memory");
    if (n > 0 && fm_deploy_predict(d, images->pixels, n, threads, *classes, NULL) != FM_OK)
        return library_failure();
    return 0;
}

static void print_shown_json(json_writer *w, const fm_images *images, const uint8_t *classes,
                             int n)
{
    json_open(w, "shown_classes", '[');
    for (int i = 0; i < n; i++)
        json_int(w, NULL, classes[i]);
    json_close(w, ']');
    json_open(w, "shown_labels", '[');
    for (int i = 0; i < n; i++)
        json_int(w, NULL, images->labels[i]);
    json_close(w, ']');
}

static int infer_with(const infer_opts *o, fm_deploy **d, fm_images *images)
{
    const char *set = choice_name(set_choices, o->set);
    int rc = load_packed(o->model, d);
    if (rc || (rc = apply_kernels(*d, o->kernels)) != 0)
        return rc;
    int want_train = o->set == 1;
    if (fm_data_load(o->data, want_train ? images : NULL, want_train ? NULL : images) != FM_OK)
        return library_failure();
    if ((rc = check_deploy_data(o->model, o->data, set, *d, images)) != 0)
        return rc;
    /* One untimed batch first: the first call pays for starting the threads
     * and bringing the weights into cache, which no later batch does. */
    int warm_count = images->count < o->batch ? images->count : o->batch;
    uint8_t *warm = malloc((size_t)warm_count);
    if (!warm)
        return failure_as(FM_ENOMEM, "out of memory");
    rc = fm_deploy_predict(*d, images->pixels, warm_count, o->threads, warm, NULL);
    free(warm);
    if (rc != FM_OK)
        return library_failure();
    const int batches = (int)((images->count + (long)o->batch - 1) / o->batch);
    double *latency = malloc(sizeof *latency * (size_t)batches);
    if (!latency)
        return failure_as(FM_ENOMEM, "out of memory");
    long errors = 0;
    double seconds = 0;
    rc = predict_batches(*d, images, o->batch, o->threads, &errors, latency, &seconds);
    double latency_us = median(latency, batches) * 1e6;
    free(latency);
    if (rc)
        return rc;
    double error_pct = 100.0 * (double)errors / (double)images->count;
    double images_per_s = seconds > 0 ? (double)images->count / seconds : NAN;
    const int shown = o->show < images->count ? o->show : images->count;
    uint8_t *classes = NULL;
    if (shown > 0 && (rc = predict_shown(*d, images, shown, o->threads, &classes)) != 0) {
        free(classes);
        return rc;
    }
    char shape[64];
    fmt_shape(shape, sizeof shape, *d);
    if (o->json) {
        json_writer w;
        json_begin(&w, stdout);
        json_number(&w, "error_pct", error_pct);
        json_int(&w, "images", images->count);
        json_number(&w, "images_per_s", images_per_s);
        json_number(&w, "latency_us_median", latency_us);
        json_int(&w, "batch", o->batch);
        json_int(&w, "batches", batches);
        json_number(&w, "seconds", seconds);
        json_string(&w, "kernels", fm_deploy_kernels(*d));
        json_int(&w, "threads", threads_reported(o->threads));
        json_string(&w, "model", o->model);
        json_string(&w, "describe", fm_deploy_describe(*d));
        json_string(&w, "input", shape);
        json_int(&w, "input_dim", fm_deploy_input_shape(*d, NULL, NULL, NULL));
        json_int(&w, "classes", fm_deploy_classes(*d));
        json_string(&w, "data", o->data);
        json_string(&w, "set", set);
        if (shown > 0)
            print_shown_json(&w, images, classes, shown);
        json_end(&w);
    } else {
        for (int i = 0; i < shown; i++)
            printf("image %d: class %d, label %d%s\n", i, classes[i], images->labels[i],
                   classes[i] != images->labels[i] ? " (wrong)" : "");
        printf("%s error %.2f%% on %d images of %s (%s)\n", set, error_pct, (int)images->count,
               o->data, fm_deploy_describe(*d));
        printf("kernels %s, batch %d, %d thread%s: %.0f images/s, median batch latency %.1f "
               "\xc2\xb5s over %d batch%s (%.3f s in all)\n",
               fm_deploy_kernels(*d), o->batch, threads_reported(o->threads),
               threads_reported(o->threads) == 1 ? "" : "s", images_per_s, latency_us, batches,
               batches == 1 ? "" : "es", seconds);
    }
    free(classes);
    return CLI_OK;
}

int parse_infer(int argc, char **argv, infer_opts *o)
{
    *o = (infer_opts){.data = "fashion", .batch = 256, .kernels = -1};
    int rc = parse_options(infer_options, o, &o->help, argc, argv, 2, NULL);
    if (rc || o->help)
        return rc;
    if (!o->model)
        return usage_error("missing --model FILE");
    return check_data_spec(o->data);
}

int cmd_infer(int argc, char **argv)
{
    infer_opts o;
    int rc = parse_infer(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, infer_help);
        return CLI_OK;
    }
    threads_reported(o.threads);
    fm_deploy *d = NULL;
    fm_images images;
    memset(&images, 0, sizeof images);
    rc = infer_with(&o, &d, &images);
    fm_images_free(&images);
    fm_deploy_free(d);
    return rc;
}

/* ---- info ---------------------------------------------------------------- */

static const option_def info_options[] = {
    {"json", T_FLAG, offsetof(info_opts, json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};

static int print_info_json(const info_opts *o, const fm_deploy *d, const weight_totals *t)
{
    char shape[64];
    json_writer w;
    json_begin(&w, stdout);
    json_string(&w, "file", o->file);
    json_string(&w, "describe", fm_deploy_describe(d));
    json_string(&w, "input", fmt_shape(shape, sizeof shape, d));
    json_int(&w, "input_dim", fm_deploy_input_shape(d, NULL, NULL, NULL));
    json_int(&w, "classes", fm_deploy_classes(d));
    json_u64(&w, "file_bytes", fm_deploy_file_bytes(d));
    json_open(&w, "layers", '[');
    for (int l = 0; l < fm_deploy_layers(d); l++) {
        fm_deploy_layer_info info;
        if (fm_deploy_describe_layer(d, l, &info) != FM_OK)
            return library_failure();
        json_open(&w, NULL, '{');
        json_string(&w, "type", info.type);
        json_int(&w, "in", info.in);
        json_int(&w, "out", info.out);
        json_string(&w, "weights", info.weights);
        json_int(&w, "bits", info.bits);
        json_int(&w, "levels", info.levels);
        json_string(&w, "input", info.input);
        json_string(&w, "activation", info.activation);
        json_u64(&w, "weight_count", info.weight_count);
        json_u64(&w, "weight_bytes", info.weight_bytes);
        if (strcmp(info.type, "dense") != 0) {
            const int maps[2][3] = {{info.in_h, info.in_w, info.in_c},
                                    {info.out_h, info.out_w, info.out_c}};
            for (int k = 0; k < 2; k++) {
                json_open(&w, k ? "out_map" : "in_map", '[');
                for (int i = 0; i < 3; i++)
                    json_int(&w, NULL, maps[k][i]);
                json_close(&w, ']');
            }
        }
        if (strcmp(info.type, "conv") == 0 || strcmp(info.type, "maxpool") == 0) {
            json_int(&w, "kernel_h", info.kernel_h);
            json_int(&w, "kernel_w", info.kernel_w);
            json_int(&w, "stride", info.stride);
            json_int(&w, "pad_top", info.pad_top);
            json_int(&w, "pad_left", info.pad_left);
        }
        json_close(&w, '}');
    }
    json_close(&w, ']');
    json_u64(&w, "weights", t->weights);
    json_u64(&w, "weight_bits", t->bits);
    json_u64(&w, "weight_bytes", t->bytes);
    json_number(&w, "bits_per_weight", bits_per_weight(t));
    json_string(&w, "kernels", fm_deploy_kernels(d));
    json_open(&w, "kernels_available", '[');
    for (int i = 0; fm_kernels_name(i); i++)
        json_string(&w, NULL, fm_kernels_name(i));
    json_close(&w, ']');
    json_end(&w);
    return 0;
}

static int print_info_text(const info_opts *o, const fm_deploy *d, const weight_totals *t)
{
    char shape[64], size[32], fp32[32];
    uint64_t file_bytes = fm_deploy_file_bytes(d);
    printf("%s: packed model, %s\n", o->file, fm_deploy_describe(d));
    printf("input %s (%d values), %d classes, file %s (%" PRIu64 " bytes)\n",
           fmt_shape(shape, sizeof shape, d), fm_deploy_input_shape(d, NULL, NULL, NULL),
           fm_deploy_classes(d), fmt_size(size, sizeof size, file_bytes), file_bytes);
    printf("%5s  %-7s %8s %8s  %-8s %4s %6s  %-6s  %-10s %12s\n", "layer", "type", "in", "out",
           "weights", "bits", "levels", "input", "activation", "weight bytes");
    for (int l = 0; l < fm_deploy_layers(d); l++) {
        fm_deploy_layer_info info;
        if (fm_deploy_describe_layer(d, l, &info) != FM_OK)
            return library_failure();
        char levels[16] = "-", map[96] = "";
        if (info.levels > 0)
            snprintf(levels, sizeof levels, "%d", info.levels);
        /* maps: input > kernel or window, stride, padding > output */
        if (strcmp(info.type, "conv") == 0)
            snprintf(map, sizeof map, "  %dx%dx%d > %dx%d s%d pad %d,%d > %dx%dx%d", info.in_h,
                     info.in_w, info.in_c, info.kernel_h, info.kernel_w, info.stride, info.pad_top,
                     info.pad_left, info.out_h, info.out_w, info.out_c);
        else if (strcmp(info.type, "maxpool") == 0)
            snprintf(map, sizeof map, "  %dx%dx%d > %dx%d s%d > %dx%dx%d", info.in_h, info.in_w,
                     info.in_c, info.kernel_h, info.kernel_w, info.stride, info.out_h, info.out_w,
                     info.out_c);
        else if (strcmp(info.type, "gap") == 0)
            snprintf(map, sizeof map, "  %dx%dx%d > %d", info.in_h, info.in_w, info.in_c,
                     info.out_c);
        printf("%5d  %-7s %8d %8d  %-8s %4d %6s  %-6s  %-10s %12" PRIu64 "%s\n", l + 1, info.type,
               info.in, info.out, info.weights, info.bits, levels, info.input, info.activation,
               info.weight_bytes, map);
    }
    printf("weights: %" PRIu64 " in %" PRIu64 " bits (%s), %.3g bit%s per weight; as fp32 %s\n",
           t->weights, t->bits, fmt_size(size, sizeof size, t->bytes), bits_per_weight(t),
           bits_per_weight(t) == 1 ? "" : "s", fmt_size(fp32, sizeof fp32, 4 * t->weights));
    printf("kernels here: %s (%s); available:", fm_deploy_kernels(d),
           getenv("FEWMUL_KERNELS") ? "FEWMUL_KERNELS" : "the best this CPU supports");
    for (int i = 0; fm_kernels_name(i); i++)
        printf("%s %s", i ? "," : "", fm_kernels_name(i));
    putchar('\n');
    return 0;
}

int parse_info(int argc, char **argv, info_opts *o)
{
    *o = (info_opts){NULL, 0, 0};
    int rc = parse_options(info_options, o, &o->help, argc, argv, 2, &o->file);
    if (rc || o->help)
        return rc;
    if (!o->file)
        return usage_error("missing FILE (fewmul info FILE)");
    return CLI_OK;
}

/* `fewmul info CHECKPOINT`: where the paused run stands. */
static int print_checkpoint_info(const info_opts *o)
{
    fm_checkpoint *ck;
    if (fm_checkpoint_load(o->file, &ck) != FM_OK)
        return library_failure();
    fm_checkpoint_info at;
    fm_checkpoint_position(ck, &at);
    fm_model *m = NULL;
    if (fm_checkpoint_model(ck, &m) != FM_OK) {
        fm_checkpoint_free(ck);
        return library_failure();
    }
    const int finished = at.epoch > at.epochs;
    if (o->json) {
        json_writer w;
        json_begin(&w, stdout);
        json_string(&w, "file", o->file);
        json_string(&w, "format", "checkpoint");
        json_string(&w, "describe", fm_model_describe(m));
        json_string(&w, "data", fm_checkpoint_data(ck));
        json_int(&w, "epoch", at.epoch);
        json_int(&w, "epochs", at.epochs);
        json_int(&w, "images_done", at.images_done);
        json_int(&w, "images_total", at.images_total);
        json_u64(&w, "step", at.step);
        json_number(&w, "lr", at.lr);
        json_int(&w, "best_epoch", at.best_epoch);
        json_pct(&w, "best_valid_error_pct", at.best_valid_error_pct);
        json_pct(&w, "best_test_error_pct", at.best_test_error_pct);
        json_bool(&w, "ledger", at.has_ledger);
        json_bool(&w, "finished", finished);
        json_end(&w);
    } else {
        printf("%s: checkpoint of a training run\n", o->file);
        printf("  network    %s\n", fm_model_describe(m));
        printf("  data       %s\n", fm_checkpoint_data(ck)[0] ? fm_checkpoint_data(ck) : "(not recorded)");
        if (finished)
            printf("  position   finished: all %d epochs (step %" PRIu64 ")\n", at.epochs, at.step);
        else
            printf("  position   epoch %d/%d, %ld of %ld images done (step %" PRIu64 "), lr %.4g\n",
                   at.epoch, at.epochs, at.images_done, at.images_total, at.step, at.lr);
        if (at.best_epoch > 0 && at.best_valid_error_pct >= 0)
            printf("  best       epoch %d: validation %.2f%%, test %.2f%%\n", at.best_epoch,
                   at.best_valid_error_pct, at.best_test_error_pct);
        else
            printf("  best       none yet\n");
        printf("  ledger     %s\n", at.has_ledger ? "kept (the run was started with --ledger)" : "none");
        printf("  resume     fewmul train --resume %s\n", o->file);
    }
    fm_model_free(m);
    fm_checkpoint_free(ck);
    return 0;
}

int cmd_info(int argc, char **argv)
{
    info_opts o;
    int rc = parse_info(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, info_help);
        return CLI_OK;
    }
    if (model_file_kind_of(o.file) == MODEL_FILE_CHECKPOINT)
        return print_checkpoint_info(&o);
    fm_deploy *d = NULL;
    if ((rc = load_packed(o.file, &d)) != 0)
        return rc;
    weight_totals t;
    if (weight_totals_of(d, &t) != 0)
        rc = library_failure();
    else
        rc = o.json ? print_info_json(&o, d, &t) : print_info_text(&o, d, &t);
    fm_deploy_free(d);
    return rc;
}

/* ---- bench infer --------------------------------------------------------- */

/* The examples of a throughput run, and the pseudo-random inputs' seed. */
enum { BENCH_BATCH = 256, BENCH_MAX_VARIANTS = 8 };
#define BENCH_SEED UINT64_C(1234)

#define BOPT(field) offsetof(bench_opts, field)
static const option_def bench_infer_options[] = {
    {"model", T_STRING, BOPT(model), 0, 0, 0, NULL, 0, NULL},
    {"runs", T_INT, BOPT(runs), 1, 1000000, 0, NULL, 0, NULL},
    {"threads", T_INT, BOPT(threads), 1, 1024, 0, NULL, 0, NULL},
    {"kernels", T_STRING, BOPT(kernels), 0, 0, 0, NULL, 0, NULL},
    {"json", T_FLAG, BOPT(json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef BOPT

/* splitmix64: the same inputs on every machine and every run. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

typedef struct bench_variant {
    const char *name;
    double *latency;     /* seconds of each batch-1 run */
    double *throughput;  /* seconds of each batch run */
    uint8_t classes[BENCH_BATCH];
    double latency_us, images_per_s;
    long mismatches;     /* classes that differ from the first variant's (ref) */
} bench_variant;

typedef struct bench_run {
    fm_deploy *d;
    uint8_t *pixels;
    int n;               /* variants */
    bench_variant v[BENCH_MAX_VARIANTS];
    int latency_runs, throughput_runs, fp32; /* fp32: index of the yardstick, -1 if none */
} bench_run;

static void bench_run_free(bench_run *b)
{
    for (int i = 0; i < b->n; i++) {
        free(b->v[i].latency);
        free(b->v[i].throughput);
    }
    free(b->pixels);
    fm_deploy_free(b->d);
}

static int predict_timed(const bench_run *b, int first, int count, int threads, uint8_t *classes,
                         double *seconds)
{
    const size_t dim = (size_t)fm_deploy_input_shape(b->d, NULL, NULL, NULL);
    double start = now_seconds();
    if (fm_deploy_predict(b->d, b->pixels + (size_t)first * dim, count, threads, classes, NULL) !=
        FM_OK)
        return library_failure();
    if (seconds)
        *seconds = now_seconds() - start;
    return 0;
}

static int use_variant(bench_run *b, int i)
{
    if (fm_deploy_set_kernels(b->d, b->v[i].name) != FM_OK)
        return library_failure();
    return 0;
}

/* Warm-up and the agreement check, then the timed runs, interleaved: round r
 * runs every variant once, so that whatever else the machine does in that
 * moment slows all of them alike. */
static int bench_measure(bench_run *b, int threads)
{
    int rc;
    uint8_t one[1];
    for (int i = 0; i < b->n; i++) {
        if ((rc = use_variant(b, i)) != 0 ||
            (rc = predict_timed(b, 0, BENCH_BATCH, threads, b->v[i].classes, NULL)) != 0 ||
            (rc = predict_timed(b, 0, 1, 1, one, NULL)) != 0)
            return rc;
    }
    for (int r = 0; r < b->latency_runs; r++)
        for (int i = 0; i < b->n; i++) {
            /* an untimed run of the same variant first: a steadily serving
             * network has its own weights in cache, not the previous one's */
            int example = r % BENCH_BATCH;
            if ((rc = use_variant(b, i)) != 0 ||
                (rc = predict_timed(b, example, 1, 1, one, NULL)) != 0 ||
                (rc = predict_timed(b, example, 1, 1, one, &b->v[i].latency[r])) != 0)
                return rc;
        }
    uint8_t classes[BENCH_BATCH];
    for (int r = 0; r < b->throughput_runs; r++)
        for (int i = 0; i < b->n; i++)
            if ((rc = use_variant(b, i)) != 0 ||
                (rc = predict_timed(b, 0, BENCH_BATCH, threads, classes,
                                    &b->v[i].throughput[r])) != 0)
                return rc;
    for (int i = 0; i < b->n; i++) {
        bench_variant *v = &b->v[i];
        v->latency_us = median(v->latency, b->latency_runs) * 1e6;
        v->images_per_s = BENCH_BATCH / median(v->throughput, b->throughput_runs);
        v->mismatches = 0;
        for (int k = 0; k < BENCH_BATCH; k++)
            v->mismatches += v->classes[k] != b->v[0].classes[k];
    }
    return 0;
}

static long bench_mismatches(const bench_run *b)
{
    long n = 0;
    for (int i = 0; i < b->n; i++)
        n += b->v[i].mismatches;
    return n;
}

/* Speedups over the fp32 yardstick: its latency over the variant's, the
 * variant's images/s over its. */
static double latency_speedup(const bench_run *b, int i)
{
    return b->fp32 < 0 ? NAN : b->v[b->fp32].latency_us / b->v[i].latency_us;
}

static double throughput_speedup(const bench_run *b, int i)
{
    return b->fp32 < 0 ? NAN : b->v[i].images_per_s / b->v[b->fp32].images_per_s;
}

/* "6.28", or "-" without an fp32 variant to compare with. */
static void fmt_speedup(char *buf, size_t cap, double ratio)
{
    if (isfinite(ratio))
        snprintf(buf, cap, "%.3g", ratio);
    else
        snprintf(buf, cap, "-");
}

static void print_bench_json(const bench_opts *o, const bench_run *b, const char *loaded)
{
    char shape[64];
    json_writer w;
    json_begin(&w, stdout);
    json_string(&w, "command", "bench infer");
    json_string(&w, "model", o->model);
    json_string(&w, "describe", fm_deploy_describe(b->d));
    json_string(&w, "input", fmt_shape(shape, sizeof shape, b->d));
    json_int(&w, "classes", fm_deploy_classes(b->d));
    json_int(&w, "runs", b->latency_runs);
    json_int(&w, "throughput_runs", b->throughput_runs);
    json_int(&w, "batch", BENCH_BATCH);
    json_int(&w, "threads", threads_reported(o->threads));
    json_uint(&w, "seed", (unsigned long long)BENCH_SEED);
    json_string(&w, "default_kernels", loaded);
    json_open(&w, "variants", '[');
    for (int i = 0; i < b->n; i++) {
        json_open(&w, NULL, '{');
        json_string(&w, "name", b->v[i].name);
        json_number(&w, "latency_us", b->v[i].latency_us);
        json_number(&w, "images_per_s", b->v[i].images_per_s);
        json_number(&w, "latency_speedup_vs_fp32", latency_speedup(b, i));
        json_number(&w, "throughput_speedup_vs_fp32", throughput_speedup(b, i));
        json_int(&w, "mismatches", b->v[i].mismatches);
        json_close(&w, '}');
    }
    json_close(&w, ']');
    json_int(&w, "mismatches", bench_mismatches(b));
    json_end(&w);
}

static void print_bench_text(const bench_opts *o, const bench_run *b, const char *loaded)
{
    char shape[64];
    int threads = threads_reported(o->threads);
    printf("fewmul bench infer: %s (%s; input %s)\n", o->model, fm_deploy_describe(b->d),
           fmt_shape(shape, sizeof shape, b->d));
    printf("batch 1: median of %d runs on 1 thread; batch %d: median of %d runs on %d thread%s;\n"
           "variants interleaved run by run; inputs: %d pseudo-random images (seed %" PRIu64 ")\n",
           b->latency_runs, BENCH_BATCH, b->throughput_runs, threads, threads == 1 ? "" : "s",
           BENCH_BATCH, BENCH_SEED);
    printf("%-8s %14s %8s %17s %8s %11s\n", "variant", "batch-1 \xc2\xb5s", "vs fp32",
           "batch-256 img/s", "vs fp32", "mismatches");
    for (int i = 0; i < b->n; i++) {
        char a[32], c[32];
        fmt_speedup(a, sizeof a, latency_speedup(b, i));
        fmt_speedup(c, sizeof c, throughput_speedup(b, i));
        printf("%-8s %13.1f %7sx %17.0f %7sx %11ld\n", b->v[i].name, b->v[i].latency_us, a,
               b->v[i].images_per_s, c, b->v[i].mismatches);
    }
    printf("default variant here: %s (%s)\n", loaded,
           getenv("FEWMUL_KERNELS") ? "FEWMUL_KERNELS" : "the best this CPU supports");
    long mismatches = bench_mismatches(b);
    if (mismatches)
        printf("MISMATCH: %ld predicted classes differ from %s's on the %d inputs\n", mismatches,
               b->v[0].name, BENCH_BATCH);
    else
        printf("all variants predict the same classes for the %d inputs\n", BENCH_BATCH);
}

static int bench_infer_with(const bench_opts *o, bench_run *b)
{
    int rc = load_packed(o->model, &b->d);
    if (rc)
        return rc;
    char loaded[32];
    snprintf(loaded, sizeof loaded, "%s", fm_deploy_kernels(b->d));
    b->latency_runs = o->runs;
    b->throughput_runs = o->runs / 20 > 5 ? o->runs / 20 : 5;
    b->fp32 = -1;
    const char *names[BENCH_MAX_VARIANTS];
    int count = 0;
    if (o->kernels) { /* checked by parse_bench: known names, each once */
        for (const char *at = o->kernels; *at && count < BENCH_MAX_VARIANTS; count++) {
            size_t len = strcspn(at, ",");
            for (int c = 0; kernel_choices[c].name; c++)
                if (strlen(kernel_choices[c].name) == len && !strncmp(kernel_choices[c].name, at, len))
                    names[count] = kernel_choices[c].name;
            at += len + (at[len] == ',');
        }
    } else {
        for (; fm_kernels_name(count) && count < BENCH_MAX_VARIANTS; count++)
            names[count] = fm_kernels_name(count);
    }
    for (int i = 0; i < count; i++) {
        bench_variant *v = &b->v[b->n++];
        v->name = names[i];
        if (o->kernels && fm_deploy_set_kernels(b->d, v->name) != FM_OK)
            return failure("--kernels: %s", fm_last_error());
        v->latency = malloc(sizeof *v->latency * (size_t)b->latency_runs);
        v->throughput = malloc(sizeof *v->throughput * (size_t)b->throughput_runs);
        if (!v->latency || !v->throughput)
            return failure_as(FM_ENOMEM, "out of memory");
        if (strcmp(v->name, "fp32") == 0)
            b->fp32 = b->n - 1;
    }
    if (b->n == 0)
        return failure("no kernel variant is available");
    const size_t dim = (size_t)fm_deploy_input_shape(b->d, NULL, NULL, NULL);
    if (!(b->pixels = malloc(dim * BENCH_BATCH)))
        return failure_as(FM_ENOMEM, "out of memory");
    uint64_t state = BENCH_SEED;
    for (size_t i = 0; i < dim * BENCH_BATCH; i++)
        b->pixels[i] = (uint8_t)(splitmix64(&state) >> 56);
    if ((rc = bench_measure(b, o->threads)) != 0)
        return rc;
    if (o->json)
        print_bench_json(o, b, loaded);
    else
        print_bench_text(o, b, loaded);
    return CLI_OK;
}

/* `fewmul bench SUBCOMMAND`: only `infer` so far. From the subcommand on,
 * usage errors point to 'fewmul bench infer --help'. */
int parse_bench(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.runs = 200};
    if (argc < 3)
        return usage_error("missing subcommand: fewmul bench infer --model FILE");
    const char *sub = argv[2];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        o->help = 1;
        return CLI_OK;
    }
    if (strcmp(sub, "infer") != 0) {
        if (sub[0] == '-')
            return usage_error("'bench' takes its subcommand first: fewmul bench infer %s ...",
                               sub);
        return usage_error("unknown bench subcommand '%s' (expected infer)", sub);
    }
    g_command = "bench infer";
    int rc = parse_options(bench_infer_options, o, &o->help, argc, argv, 3, NULL);
    if (rc || o->help)
        return rc;
    if (!o->model)
        return usage_error("missing --model FILE");
    if (o->kernels) { /* names of the variants, each once, separated by commas */
        const char *seen[BENCH_MAX_VARIANTS];
        int n = 0;
        for (const char *at = o->kernels;; n++) {
            size_t len = strcspn(at, ",");
            const char *name = NULL;
            for (int c = 0; kernel_choices[c].name; c++)
                if (strlen(kernel_choices[c].name) == len && !strncmp(kernel_choices[c].name, at, len))
                    name = kernel_choices[c].name;
            if (!name)
                return usage_error("--kernels: unknown kernel variant '%.*s' (ref, avx2, avx512, neon, "
                                   "fp32, separated by commas)", (int)len, at);
            for (int k = 0; k < n; k++)
                if (seen[k] == name)
                    return usage_error("--kernels: '%s' is named twice", name);
            seen[n] = name;
            if (!at[len])
                break;
            at += len + 1;
        }
    }
    return CLI_OK;
}

int cmd_bench(int argc, char **argv)
{
    bench_opts o;
    int rc = parse_bench(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, bench_help);
        return CLI_OK;
    }
    threads_reported(o.threads);
    bench_run b;
    memset(&b, 0, sizeof b);
    rc = bench_infer_with(&o, &b);
    bench_run_free(&b);
    return rc;
}
