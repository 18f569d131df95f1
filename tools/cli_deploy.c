/* cli_deploy.c — what train, eval, infer and export share about deployed
 * (packed) models: the --set choices, a network's weight totals, telling the
 * two model files apart by their magic, loading a packed model, checking a
 * data set against a packed model and predicting it in batches. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --set of eval and infer: which set of the data to measure. */
const choice set_choices[] = {{"test", 0}, {"train", 1}, {NULL, 0}};

/* The weights of a deployed network, summed over its layers; 0 or -1. */
int weight_totals_of(const fm_deploy *d, weight_totals *t)
{
    memset(t, 0, sizeof *t);
    for (int l = 0; l < fm_deploy_layers(d); l++) {
        fm_deploy_layer_info info;
        if (fm_deploy_describe_layer(d, l, &info) != FM_OK)
            return -1; /* the library's message is set */
        if (!info.weight_count) /* pools */
            continue;
        t->weights += info.weight_count;
        t->bits += info.weight_count * (uint64_t)info.bits;
        t->bytes += info.weight_bytes;
        t->kind = !t->kind || strcmp(t->kind, info.weights) == 0 ? info.weights : "mixed";
    }
    return 0;
}

double bits_per_weight(const weight_totals *t)
{
    return t->weights ? (double)t->bits / (double)t->weights : 0;
}

/* The model files differ in their first 8 bytes (docs/model-format.md,
 * docs/format.md, docs/checkpoint-format.md). A file too short or unreadable is "other": the library's
 * reader then says what is wrong with it, naming it. */
model_file_kind model_file_kind_of(const char *path)
{
    char magic[8];
    int fd = fm_open_input(path, 0); /* a FIFO or a device is "other", unopened */
    if (fd < 0)
        return MODEL_FILE_OTHER;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return MODEL_FILE_OTHER;
    }
    size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (n == sizeof magic && memcmp(magic, "FMULPACK", 8) == 0)
        return MODEL_FILE_PACKED;
    if (n == sizeof magic && memcmp(magic, "FMULMODL", 8) == 0)
        return MODEL_FILE_STATE;
    if (n == sizeof magic && memcmp(magic, "FMULCKPT", 8) == 0)
        return MODEL_FILE_CHECKPOINT;
    return MODEL_FILE_OTHER;
}

int load_packed(const char *path, fm_deploy **out)
{
    if (model_file_kind_of(path) == MODEL_FILE_STATE)
        return failure_as(FM_EFORMAT, "%s: a training-state file (fewmul train --state); 'fewmul %s' reads "
                       "packed models (fewmul train --out)",
                       path, g_command ? g_command : "");
    if (fm_deploy_load(path, out) != FM_OK)
        return library_failure();
    return 0;
}

int check_input_shape(const char *model, const char *data, const char *set, const fm_images *images,
                      int h, int w, int c)
{
    const int dim = h * w * c, flat = h == dim && w == 1 && c == 1;
    if (input_dim_of(images) != dim ||
        (!flat && (images->height != h || images->width != w || images->channels != c)))
        return failure_as(FM_EMISMATCH, "%s: %s images are %dx%dx%d = %lld values, but model '%s' expects "
                       "%dx%dx%d = %d inputs",
                       data, set, images->height, images->width, images->channels,
                       (long long)images->height * images->width * images->channels, model, h, w,
                       c, dim);
    return 0;
}

/* Checks a set of images against a packed model: their shape and their
 * labels. */
int check_deploy_data(const char *model, const char *data, const char *set, const fm_deploy *d,
                      const fm_images *images)
{
    int h = 0, w = 0, c = 0;
    fm_deploy_input_shape(d, &h, &w, &c);
    int rc = check_input_shape(model, data, set, images, h, w, c);
    if (rc)
        return rc;
    if (classes_in(images) > fm_deploy_classes(d))
        return failure_as(FM_EMISMATCH, "%s: labels go up to %d, but model '%s' has %d classes", data,
                       classes_in(images) - 1, model, fm_deploy_classes(d));
    if (images->count <= 0)
        return failure_as(FM_EMISMATCH, "%s: the %s set is empty", data, set);
    return 0;
}

/* Predicts every image in batches of `batch` and counts the wrong classes;
 * each batch's seconds go to latency[] when it is not NULL. */
int predict_batches(const fm_deploy *d, const fm_images *images, int batch, int threads,
                    long *errors, double *latency, double *seconds)
{
    const size_t dim = (size_t)fm_deploy_input_shape(d, NULL, NULL, NULL);
    uint8_t *classes = malloc((size_t)batch);
    if (!classes)
        return failure_as(FM_ENOMEM, "out of memory");
    *errors = 0;
    *seconds = 0;
    for (int first = 0, b = 0; first < images->count; first += batch, b++) {
        int n = images->count - first < batch ? images->count - first : batch;
        double start = now_seconds();
        if (fm_deploy_predict(d, images->pixels + (size_t)first * dim, n, threads, classes, NULL) !=
            FM_OK) {
            free(classes);
            return library_failure();
        }
        double dt = now_seconds() - start;
        *seconds += dt;
        if (latency)
            latency[b] = dt;
        for (int i = 0; i < n; i++)
            *errors += classes[i] != images->labels[first + i];
    }
    free(classes);
    return 0;
}

