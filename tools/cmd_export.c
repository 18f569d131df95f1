/* cmd_export.c — `fewmul export`: a packed model as a self-contained C source
 * pair for a microcontroller (fm_deploy_export_c; docs/deploy.md, "C for
 * microcontrollers") or as an ONNX model (fm_deploy_export_onnx;
 * docs/deploy.md, "ONNX"); its help text and parse function. */
#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const char *const export_help[] = {
    "Usage: fewmul export --model FILE --c DIR [--name NAME] [--json]",
    "       fewmul export --model FILE --onnx FILE [--onnx-dialect D] [--json]",
    "",
    "Write a packed model (written by 'fewmul train --out') as C for a",
    "microcontroller or any C99 compiler: DIR/NAME.h and DIR/NAME.c, a pair",
    "that needs no other file. NAME.c holds the weights as const arrays in the",
    "packed bit layout and NAME_predict(pixels, scores, scratch), which",
    "allocates nothing, calls no library function (libc's included) and needs",
    "no math library: its only memory is the caller's scratch buffer of",
    "NAME_SCRATCH_BYTES bytes, a macro of NAME.h. Binary activations run as",
    "xor and popcount with integer thresholds; NAME.h lists the float",
    "operations that remain. The classes and scores are those of fewmul infer,",
    "bit for bit (except with fp32 weights, which fewmul sums through BLAS in",
    "another order). DIR is created if missing; each file is written whole or",
    "not at all, so a failed export leaves the files there as they were.",
    "",
    "With --onnx, the network as one ONNX model (opset 13) instead: input",
    "'pixels', float [batch, height, width, channels] raw pixel values (0 ..",
    "255, the IDX files' order; the graph scales them and subtracts the mean),",
    "output 'scores', float [batch, classes]. It predicts what fewmul infer",
    "predicts; scores may differ in their last bits (another order of float",
    "additions). Binary, ternary and synapse weights are float initialisers",
    "of their values, batch norm a Mul and an Add, signs a compare and a",
    "select. Needs a fewmul built with protobuf-c (exit 1 otherwise).",
    "",
    "  --model FILE       the packed model file (required)",
    "  --c DIR            the folder to write the C files into",
    "  --onnx FILE        the ONNX file to write (one of --c and --onnx is",
    "                     required)",
    "  --onnx-dialect D   plain: standard operators only, for onnxruntime",
    "                     (default); qonnx: binary weights and sign",
    "                     activations through QONNX's BipolarQuant, ternary",
    "                     weights through IntQuant (domain",
    "                     qonnx.custom_op.general), for FINN-style tools;",
    "                     synapse and fp32 weights stay dequantised floats",
    "  --name NAME        the files' name and the prefix of the functions and",
    "                     macros: a letter, then letters, digits or '_', at",
    "                     most 64 (default model)",
    "  --json             print one JSON object, the last line of standard",
    "                     output, with the keys model, describe, name, header,",
    "                     source, scratch_bytes, const_bytes, weight_bytes,",
    "                     source_bytes, exact (with --onnx: model, describe,",
    "                     onnx, dialect, file_bytes, nodes, weights)",
    "  -h, --help         show this help",
    "",
    "Exit status: 0 success; 1 --onnx in a fewmul built without protobuf-c;",
    "2 usage error (bad option or value, no --model, neither or both of --c",
    "and --onnx); 3 the model, or the folder DIR is to be made in, not found;",
    "4 bad input: a malformed, truncated or unsupported file, or a",
    "training-state file; 5 I/O error: DIR or a file in it, or the ONNX",
    "file, that cannot be written (permission, not a folder, not a regular",
    "file, disk full); 6 out of memory. docs/errors.md lists the cases.",
    "",
    "Examples:",
    "  fewmul export --model bc.fmp --c firmware/net --name mnist_bc",
    "  fewmul export --model bc.fmp --onnx bc.onnx",
    NULL};

static const choice dialect_choices[] = {{"plain", FM_ONNX_PLAIN}, {"qonnx", FM_ONNX_QONNX}, {NULL, 0}};

#define XOPT(field) offsetof(export_opts, field)
static const option_def export_options[] = {
    {"model", T_STRING, XOPT(model), 0, 0, 0, NULL, 0, NULL},
    {"c", T_STRING, XOPT(dir), 0, 0, 0, NULL, 0, NULL},
    {"name", T_STRING, XOPT(name), 0, 0, 0, NULL, 0, NULL},
    {"onnx", T_STRING, XOPT(onnx), 0, 0, 0, NULL, 0, NULL},
    {"onnx-dialect", T_CHOICE, XOPT(dialect), 0, 0, 0, dialect_choices, 0, NULL},
    {"json", T_FLAG, XOPT(json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef XOPT

/* A C identifier of at most 64 characters that starts with a letter. */
static int c_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

int parse_export(int argc, char **argv, export_opts *o)
{
    *o = (export_opts){.name = NULL, .dialect = -1};
    int rc = parse_options(export_options, o, &o->help, argc, argv, 2, NULL);
    if (rc || o->help)
        return rc;
    if (!o->model)
        return usage_error("missing --model FILE");
    if (o->dir && o->onnx)
        return usage_error("--c and --onnx are two exports: give one");
    if (o->onnx) {
        if (o->name)
            return usage_error("--name names the C files: it goes with --c, not --onnx");
        if (!o->onnx[0])
            return usage_error("--onnx needs a file name");
        return CLI_OK;
    }
    if (o->dialect >= 0)
        return usage_error("--onnx-dialect goes with --onnx FILE");
    if (!o->dir)
        return usage_error("missing --c DIR (the folder of the C files) or --onnx FILE");
    if (!o->name)
        o->name = "model";
    if (!c_name(o->name))
        return usage_error("--name '%s' is not a C identifier: a letter, then letters, digits or '_', "
                           "at most 64", elided(o->name));
    return CLI_OK;
}

/* DIR/NAME.EXT as the library names it. */
static void path_of(char *buf, size_t cap, const export_opts *o, const char *ext)
{
    size_t n = strlen(o->dir);
    snprintf(buf, cap, "%s%s%s%s", o->dir, n && o->dir[n - 1] == '/' ? "" : "/", o->name, ext);
}

/* export --onnx FILE */
static int export_onnx(const export_opts *o)
{
    if (!fm_onnx_available())
        return failure("--onnx: this fewmul was built without ONNX support; rebuild it with protobuf-c "
                       "(Debian: protobuf-c-compiler libprotobuf-c-dev python3-onnx)");
    fm_deploy *d = NULL;
    int rc = load_packed(o->model, &d);
    if (rc != 0)
        return rc;
    const fm_onnx_dialect dialect = o->dialect < 0 ? FM_ONNX_PLAIN : (fm_onnx_dialect)o->dialect;
    fm_export_onnx_info info;
    if (fm_deploy_export_onnx(d, o->onnx, dialect, &info) != FM_OK) {
        fm_deploy_free(d);
        return library_failure();
    }
    const char *name = dialect == FM_ONNX_QONNX ? "qonnx" : "plain";
    if (o->json) {
        json_writer w;
        json_begin(&w, stdout);
        json_string(&w, "model", o->model);
        json_string(&w, "describe", fm_deploy_describe(d));
        json_string(&w, "onnx", o->onnx);
        json_string(&w, "dialect", name);
        json_u64(&w, "file_bytes", info.file_bytes);
        json_u64(&w, "nodes", (uint64_t)info.nodes);
        json_u64(&w, "weights", (uint64_t)info.weights);
        json_end(&w);
    } else {
        char size[32];
        printf("wrote %s (ONNX opset 13, %s): %s\n", o->onnx, name, fm_deploy_describe(d));
        printf("%" PRId64 " nodes, %" PRId64 " weights as floats, %s\n", info.nodes, info.weights,
               fmt_size(size, sizeof size, info.file_bytes));
    }
    fm_deploy_free(d);
    return CLI_OK;
}

int cmd_export(int argc, char **argv)
{
    export_opts o;
    int rc = parse_export(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, export_help);
        return CLI_OK;
    }
    if (o.onnx)
        return export_onnx(&o);
    fm_deploy *d = NULL;
    if ((rc = load_packed(o.model, &d)) != 0)
        return rc;
    fm_export_c_info info;
    if (fm_deploy_export_c(d, o.dir, o.name, &info) != FM_OK) {
        fm_deploy_free(d);
        return library_failure();
    }
    const size_t cap = strlen(o.dir) + strlen(o.name) + 8;
    char *header = malloc(cap), *source = malloc(cap);
    if (!header || !source) {
        free(header);
        free(source);
        fm_deploy_free(d);
        return failure_as(FM_ENOMEM, "out of memory");
    }
    path_of(header, cap, &o, ".h");
    path_of(source, cap, &o, ".c");
    if (o.json) {
        json_writer w;
        json_begin(&w, stdout);
        json_string(&w, "model", o.model);
        json_string(&w, "describe", fm_deploy_describe(d));
        json_string(&w, "name", o.name);
        json_string(&w, "header", header);
        json_string(&w, "source", source);
        json_u64(&w, "scratch_bytes", info.scratch_bytes);
        json_u64(&w, "const_bytes", info.const_bytes);
        json_u64(&w, "weight_bytes", info.weight_bytes);
        json_u64(&w, "source_bytes", info.source_bytes);
        json_bool(&w, "exact", info.exact);
        json_end(&w);
    } else {
        char scratch[32], tables[32], weights[32];
        printf("wrote %s and %s: %s\n", header, source, fm_deploy_describe(d));
        printf("const tables %s (weights %s), scratch %s (%" PRIu64 " bytes)\n",
               fmt_size(tables, sizeof tables, info.const_bytes),
               fmt_size(weights, sizeof weights, info.weight_bytes),
               fmt_size(scratch, sizeof scratch, info.scratch_bytes), info.scratch_bytes);
        printf("%s\n", info.exact ? "predicts what fewmul infer predicts, bit for bit"
                                  : "fp32 weights: scores may differ from fewmul infer's in their last "
                                    "bits (BLAS sums in another order)");
    }
    free(header);
    free(source);
    fm_deploy_free(d);
    return CLI_OK;
}
