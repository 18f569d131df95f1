/* cmd_import.c — `fewmul import --onnx FILE -o OUT`: an ONNX model as a
 * packed model file (fm_deploy_import_onnx, fm_deploy_save; docs/deploy.md,
 * "ONNX"); its help text and parse function. */
#include "cli.h"

#include <string.h>

const char *const import_help[] = {
    "Usage: fewmul import --onnx FILE -o OUT [--json]",
    "",
    "Read an ONNX model and write it as a packed model file (the file fewmul",
    "train --out writes), for fewmul infer, info, bench and export. It reads",
    "the graphs fewmul export --onnx writes, in both dialects: export then",
    "import gives back the packed file byte for byte. It also reads graphs of",
    "the same operators from other tools: one input, float [batch, height,",
    "width, channels] or [batch, values], and a chain of MatMul or Conv (no",
    "bias) with constant weights, each followed by a Mul and an Add (the",
    "folded batch norm) and Relu or the sign (GreaterOrEqual 0 and Where",
    "+1/-1, or QONNX's BipolarQuant), MaxPool after a Conv, GlobalAveragePool,",
    "Transpose and Flatten; weights all +-1 become binary, all in {-1, 0, +1}",
    "ternary, others fp32. Anything else is refused with a message naming",
    "the node (exit 4). An input Mul and Sub are the packed file's input scale",
    "and mean; without them the scale is 1 and the mean 0 (the model takes the",
    "pixel values as they are). OUT is written whole or not at all. Needs a",
    "fewmul built with protobuf-c (exit 1 otherwise).",
    "",
    "  --onnx FILE        the ONNX model to read (required)",
    "  -o, --out OUT      the packed model file to write (required)",
    "  --json             print one JSON object, the last line of standard",
    "                     output, with the keys onnx, out, describe, layers,",
    "                     file_bytes",
    "  -h, --help         show this help",
    "",
    "Exit status: 0 success; 1 a fewmul built without protobuf-c; 2 usage",
    "error (bad option, no --onnx or -o, both naming one file); 3 FILE not",
    "found; 4 bad input: not an ONNX model, truncated, or a graph fewmul",
    "cannot run (the message names the node); 5 I/O error: FILE unreadable,",
    "OUT not writable or not a regular file; 6 out of memory. docs/errors.md",
    "lists the cases.",
    "",
    "Examples:",
    "  fewmul import --onnx bc.onnx -o bc.fmp",
    "  fewmul export --model bc.fmp --onnx bc.onnx --onnx-dialect qonnx",
    "  fewmul import --onnx bc.onnx -o copy.fmp && cmp bc.fmp copy.fmp",
    NULL};

#define IOPT(field) offsetof(import_opts, field)
static const option_def import_options[] = {
    {"onnx", T_STRING, IOPT(onnx), 0, 0, 0, NULL, 0, NULL},
    {"out", T_STRING, IOPT(out), 0, 0, 0, NULL, 0, NULL},
    {"json", T_FLAG, IOPT(json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef IOPT

/* -o is --out; every other argument goes through parse_options. */
int parse_import(int argc, char **argv, import_opts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            o->help = 1;
            return CLI_OK;
        }
        if (strcmp(arg, "-o") == 0) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return usage_error("option '-o' needs a value");
            if (argv[i + 1][0] == '\0')
                return usage_error("option '-o' needs a non-empty value");
            o->out = argv[++i];
            continue;
        }
        if (strncmp(arg, "--", 2) != 0)
            return usage_error("unexpected argument '%s'", elided(arg));
        int n = strchr(arg, '=') || i + 1 >= argc ? 1 : 2;
        int rc = parse_options(import_options, o, &o->help, i + n, argv, i, NULL);
        if (rc || o->help)
            return rc;
        i += n - 1;
    }
    if (!o->onnx)
        return usage_error("missing --onnx FILE");
    if (!o->onnx[0])
        return usage_error("--onnx needs a file name");
    if (!o->out)
        return usage_error("missing -o OUT (the packed model file to write)");
    if (!o->out[0])
        return usage_error("-o needs a file name");
    return CLI_OK;
}

int cmd_import(int argc, char **argv)
{
    import_opts o;
    int rc = parse_import(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, import_help);
        return CLI_OK;
    }
    if (!fm_onnx_available())
        return failure("--onnx: this fewmul was built without ONNX support; rebuild it with protobuf-c "
                       "(Debian: protobuf-c-compiler libprotobuf-c-dev python3-onnx)");
    const named_path in = {"--onnx", o.onnx}, out = {"-o", o.out};
    if ((rc = refuse_same_file(&out, &in)) != 0 || (rc = check_outputs(&out, 1)) != 0)
        return rc;
    fm_deploy *d = NULL;
    if (fm_deploy_import_onnx(o.onnx, &d) != FM_OK)
        return library_failure();
    if (fm_deploy_save(d, o.out) != FM_OK) {
        fm_deploy_free(d);
        return library_failure();
    }
    if (o.json) {
        json_writer w;
        json_begin(&w, stdout);
        json_string(&w, "onnx", o.onnx);
        json_string(&w, "out", o.out);
        json_string(&w, "describe", fm_deploy_describe(d));
        json_u64(&w, "layers", (uint64_t)fm_deploy_layers(d));
        json_u64(&w, "file_bytes", fm_deploy_file_bytes(d));
        json_end(&w);
    } else {
        char size[32];
        printf("wrote %s (%s) from %s: %s\n", o.out, fmt_size(size, sizeof size, fm_deploy_file_bytes(d)),
               o.onnx, fm_deploy_describe(d));
    }
    fm_deploy_free(d);
    return CLI_OK;
}
