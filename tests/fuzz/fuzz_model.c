/* fuzz_model.c — libFuzzer target for the training-state model file reader,
 * fm_model_load (docs/model-format.md), which rebuilds the network the file's
 * configuration and architecture string describe and fills its state.
 *
 * The input is the file, written to a private tmpfs directory. Random
 * mutations almost never keep the CRC-32 right, so on its own the fuzzer
 * would only ever test the checksum: each input that starts with the magic is
 * therefore loaded twice, as it is and with its last 4 bytes replaced by the
 * CRC of the rest, which lets mutated fields reach the checks behind it.
 *
 * A refusal is a negative code, no model and a message naming the file. A loaded model must save
 * (fm_model_save) to a file that loads again, and for a version-3 input that
 * file must be the input byte for byte: the format has one encoding of each
 * model. Nothing may crash, leak or ask for memory the file does not justify,
 * and each load is repeated with one allocation failing, which must be
 * FM_ENOMEM (fuzz_support.h). Built and run by tests/fuzz/run.sh.
 *
 * FUZZ_OPTIONS: -max_len=16384 */
#include "fuzz_support.h"

#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct job {
    const char *path, *again;
    const uint8_t *data;
    size_t size;
} job;

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        abort();
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf)
            abort();
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    fclose(f);
    *n = len;
    return buf;
}

static int read_once(void *ctx)
{
    const job *j = ctx;
    fm_model *m = (fm_model *)(uintptr_t)1;
    int rc = fm_model_load(j->path, &m);
    if (rc != FM_OK) {
        if (rc >= 0 || m != NULL)
            abort(); /* a failure is a negative code and no model */
        fz_check_message(rc, j->path, 1); /* "each failure ... naming the file" */
        return rc;
    }
    if (!m || fm_model_input_dim(m) < 1 || fm_model_classes(m) < 2)
        abort();
    rc = fm_model_save(m, j->again);
    fm_model_free(m);
    if (rc != FM_OK) {
        if (rc != FM_ENOMEM) {
            fprintf(stderr, "fuzz_model: a loaded model does not save: %s\n", fm_last_error());
            abort();
        }
        return rc;
    }
    uint32_t version = (uint32_t)j->data[8] | (uint32_t)j->data[9] << 8 |
                       (uint32_t)j->data[10] << 16 | (uint32_t)j->data[11] << 24;
    size_t n;
    uint8_t *saved = slurp(j->again, &n);
    int same = n == j->size && memcmp(saved, j->data, n) == 0;
    free(saved);
    if (version == 3 && !same) {
        fprintf(stderr, "fuzz_model: a loaded version-3 file saves to other bytes\n");
        abort();
    }
    m = NULL;
    rc = fm_model_load(j->again, &m);
    if (rc != FM_OK && rc != FM_ENOMEM) {
        fprintf(stderr, "fuzz_model: a saved model does not load: %s\n", fm_last_error());
        abort();
    }
    fm_model_free(m);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    job j = {fz_path("model.fm"), fz_path("again.fm"), data, size};
    fz_write(j.path, data, size);
    fz_run_twice(data, size, read_once, &j);
    if (size < 16 || memcmp(data, "FMULMODL", 8) != 0)
        return 0;
    uint8_t *copy = malloc(size);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    uint32_t crc = (uint32_t)crc32(0L, copy, (uInt)(size - 4));
    for (int k = 0; k < 4; k++)
        copy[size - 4 + k] = (uint8_t)(crc >> 8 * k);
    if (memcmp(copy, data, size) != 0) {
        j.data = copy;
        fz_write(j.path, copy, size);
        fz_run_twice(copy, size, read_once, &j);
    }
    free(copy);
    return 0;
}
