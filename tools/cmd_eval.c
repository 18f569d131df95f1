/* cmd_eval.c — `fewmul eval`: its help, parse_eval, and the measurement of a
 * saved model's error on a data set, a training state as training evaluates
 * it, a packed model by its kernels. */
#include "cli.h"

#include <string.h>

const char *const eval_help[] = {
    "Usage: fewmul eval --model FILE [OPTIONS]",
    "",
    "Load a model saved by 'fewmul train' and print its classification error on",
    "a data set, with the preprocessing stored in the model. Both files are",
    "read, told apart by their first 8 bytes: a training state (--state,",
    "FMULMODL) is evaluated as training evaluates it; a packed model (--out,",
    "FMULPACK) is run by its kernels, as 'fewmul infer' runs it.",
    "Options take their value as '--opt VALUE' or '--opt=VALUE'.",
    "",
    "  --model FILE       the model file (required)",
    "  --data SPEC        fashion (default), mnist:DIR, idx:DIR, cifar10:DIR or",
    "                     svhn:DIR, as for train;",
    "                     the images must have the model's input shape",
    "  --set test|train   which set of the data to measure (default test)",
    "  --threads T        worker threads, 1..1024 (default: all cores)",
    "  --json             print the result as one JSON object, the last line of",
    "                     standard output, with the keys error_pct, images,",
    "                     model, describe, format (state or packed), kernels",
    "                     (null for a state), data, set, seconds, threads",
    "  -h, --help         show this help",
    "",
    "Exit status: 0 success; 1 FEWMUL_KERNELS invalid; 2 usage error (bad",
    "option or value);",
    "3 a file or folder not found; 4 bad input: a malformed, truncated or",
    "unsupported file, or data that do not fit the model; 5 I/O error: a file",
    "that cannot be read or written (permission, disk full); 6 out of memory.",
    "docs/errors.md lists the cases.",
    NULL};

#define EOPT(field) offsetof(eval_opts, field)
static const option_def eval_options[] = {
    {"model", T_STRING, EOPT(model), 0, 0, 0, NULL, 0, NULL},
    {"data", T_STRING, EOPT(data), 0, 0, 0, NULL, 0, NULL},
    {"set", T_CHOICE, EOPT(set), 0, 0, 0, set_choices, 0, NULL},
    {"threads", T_INT, EOPT(threads), 1, 1024, 0, NULL, 0, NULL},
    {"json", T_FLAG, EOPT(json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef EOPT

static int check_eval_data(const eval_opts *o, const fm_model *model, const fm_images *images)
{
    int h, w, c;
    fm_model_input_shape(model, &h, &w, &c);
    int rc = check_input_shape(o->model, o->data, choice_name(set_choices, o->set), images, h, w, c);
    if (rc)
        return rc;
    if (classes_in(images) > fm_model_classes(model))
        return failure_as(FM_EMISMATCH, "%s: labels go up to %d, but model '%s' has %d classes", o->data,
                       classes_in(images) - 1, o->model, fm_model_classes(model));
    if (images->count <= 0)
        return failure_as(FM_EMISMATCH, "%s: the %s set is empty", o->data, choice_name(set_choices, o->set));
    return 0;
}

/* The models eval may hold: a training state or a packed network. */
typedef struct eval_models {
    fm_model *model;
    fm_deploy *deploy;
} eval_models;

/* The training state is evaluated as training does (fm_model_evaluate); a
 * packed file by its kernels, told apart by the first 8 bytes. */
static int eval_with(const eval_opts *o, eval_models *m, fm_images *images)
{
    const char *set = choice_name(set_choices, o->set);
    if (model_file_kind_of(o->model) == MODEL_FILE_PACKED) {
        if (fm_deploy_load(o->model, &m->deploy) != FM_OK)
            return library_failure();
    } else if (fm_model_load(o->model, &m->model) != FM_OK) {
        return library_failure();
    }
    int want_train = o->set == 1;
    if (fm_data_load(o->data, want_train ? images : NULL, want_train ? NULL : images) != FM_OK)
        return library_failure();
    int rc = m->deploy ? check_deploy_data(o->model, o->data, set, m->deploy, images)
                       : check_eval_data(o, m->model, images);
    if (rc)
        return rc;
    double error_pct = 0, seconds = 0, start = now_seconds();
    if (m->deploy) {
        long errors = 0;
        rc = predict_batches(m->deploy, images, images->count, o->threads, &errors, NULL, &seconds);
        if (rc)
            return rc;
        error_pct = 100.0 * (double)errors / (double)images->count;
    } else {
        if (fm_model_evaluate(m->model, images, o->threads, &error_pct) != FM_OK)
            return library_failure();
        seconds = now_seconds() - start;
    }
    const char *describe = m->deploy ? fm_deploy_describe(m->deploy) : fm_model_describe(m->model);
    if (o->json) {
        json_writer w;
        json_begin(&w, stdout);
        json_number(&w, "error_pct", error_pct);
        json_int(&w, "images", images->count);
        json_string(&w, "model", o->model);
        json_string(&w, "describe", describe);
        json_string(&w, "format", m->deploy ? "packed" : "state");
        json_string(&w, "kernels", m->deploy ? fm_deploy_kernels(m->deploy) : NULL);
        json_string(&w, "data", o->data);
        json_string(&w, "set", set);
        json_number(&w, "seconds", seconds);
        json_int(&w, "threads", threads_reported(o->threads));
        json_end(&w);
    } else {
        printf("%s error %.2f%% on %d images of %s (%s; %.1f s)\n", set, error_pct,
               (int)images->count, o->data, describe, seconds);
    }
    return CLI_OK;
}

int parse_eval(int argc, char **argv, eval_opts *o)
{
    *o = (eval_opts){.data = "fashion"};
    int rc = parse_options(eval_options, o, &o->help, argc, argv, 2, NULL);
    if (rc || o->help)
        return rc;
    if (!o->model)
        return usage_error("missing --model FILE");
    return check_data_spec(o->data);
}

int cmd_eval(int argc, char **argv)
{
    eval_opts o;
    int rc = parse_eval(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, eval_help);
        return CLI_OK;
    }
    threads_reported(o.threads);
    eval_models m = {NULL, NULL};
    fm_images images;
    memset(&images, 0, sizeof images);
    rc = eval_with(&o, &m, &images);
    fm_images_free(&images);
    fm_model_free(m.model);
    fm_deploy_free(m.deploy);
    return rc;
}
