/* fuzz_onnx_import.c — libFuzzer target for the ONNX reader
 * (fm_deploy_import_onnx_memory, `fewmul import --onnx`; docs/deploy.md,
 * "ONNX"). Any input must either be refused with a negative code and no
 * network, or become a network that validates (the reader runs
 * fmi_deploy_validate) and whose packed size is positive; nothing may crash,
 * read out of bounds, leak, or allocate much more than the input holds
 * (run.sh's -malloc_limit_mb). The seeds (corpus/onnx_import) are small
 * models fewmul exported in both dialects and graphs of tests/onnx/
 * make_graph.py. Built and run by tests/fuzz/run.sh.
 * FUZZ_OPTIONS: -max_len=16384 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fewmul.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fm_deploy *deploy = NULL;
    int rc = fm_deploy_import_onnx_memory(data, size, "fuzz.onnx", &deploy);
    if (rc == FM_OK) {
        if (!deploy || fm_deploy_file_bytes(deploy) == 0 || fm_deploy_layers(deploy) < 1)
            abort(); /* an accepted graph is a whole network */
        fm_deploy_free(deploy);
    } else if (rc >= 0 || deploy != NULL) {
        abort(); /* a failure is a negative code and leaves no network */
    }
    return 0;
}
