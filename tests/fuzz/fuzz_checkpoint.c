/* fuzz_checkpoint.c — libFuzzer target for the checkpoint reader,
 * fm_checkpoint_load (docs/checkpoint-format.md): a whole training model file
 * inside, then the run's configuration, data identity, position, optimizer
 * arrays, best weights, data order and ledger.
 *
 * The input is the file, written to a private tmpfs directory. A checkpoint
 * has two CRC-32s, the model file's own and the checkpoint's, and random
 * mutations almost never keep them right; so each input that starts with the
 * magic is loaded a second time with both recomputed, which lets mutated
 * fields reach the checks behind them. A refusal is a negative code and no
 * checkpoint. A loaded checkpoint must answer its queries consistently and
 * give a model (fm_checkpoint_model) whose state file saves and loads. Each
 * load is repeated with one allocation failing, which must be FM_ENOMEM and
 * leak nothing (fuzz_support.h). Built and run by tests/fuzz/run.sh.
 *
 * FUZZ_OPTIONS: -max_len=16384 */
#include "fuzz_support.h"

#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *g_path, *g_model_path;

static int read_once(void *ctx)
{
    (void)ctx;
    fm_checkpoint *ck = (fm_checkpoint *)(uintptr_t)1;
    int rc = fm_checkpoint_load(g_path, &ck);
    if (rc != FM_OK) {
        if (rc >= 0 || ck != NULL)
            abort(); /* a failure is a negative code and no checkpoint */
        return rc;
    }
    const fm_config *c = fm_checkpoint_config(ck);
    fm_checkpoint_info at;
    if (!c || !fm_checkpoint_data(ck) || fm_checkpoint_position(ck, &at) != FM_OK ||
        at.epoch < 1 || at.epoch > c->epochs + 1 || at.images_done < 0 ||
        at.images_done > at.images_total || at.best_epoch >= at.epoch)
        abort();
    fm_model *m = NULL;
    rc = fm_checkpoint_model(ck, &m);
    if (rc == FM_OK) {
        rc = fm_model_save(m, g_model_path);
        fm_model_free(m);
        m = NULL;
        if (rc == FM_OK) {
            rc = fm_model_load(g_model_path, &m);
            if (rc != FM_OK && rc != FM_ENOMEM) {
                fprintf(stderr, "fuzz_checkpoint: a checkpoint's model does not reload: %s\n",
                        fm_last_error());
                abort();
            }
            fm_model_free(m);
        }
    }
    fm_checkpoint_free(ck);
    return rc;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_crc(uint8_t *end4, const uint8_t *from, size_t n)
{
    uint32_t crc = (uint32_t)crc32(0L, from, (uInt)n);
    for (int k = 0; k < 4; k++)
        end4[k] = (uint8_t)(crc >> 8 * k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_path = fz_path("run.fmc");
    g_model_path = fz_path("model.fm");
    fz_write(g_path, data, size);
    fz_run_twice(data, size, read_once, NULL);
    if (size < 24 || memcmp(data, "FMULCKPT", 8) != 0)
        return 0;
    uint8_t *copy = malloc(size);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    /* the model file at offset 20, its length at 12 (low 32 bits; a larger
     * one is refused before its CRC matters) */
    uint32_t model_bytes = le32(copy + 12);
    if (le32(copy + 16) == 0 && model_bytes >= 16 && model_bytes <= size - 24)
        put_crc(copy + 20 + model_bytes - 4, copy + 20, model_bytes - 4);
    put_crc(copy + size - 4, copy, size - 4);
    if (memcmp(copy, data, size) != 0) {
        fz_write(g_path, copy, size);
        fz_run_twice(copy, size, read_once, NULL);
    }
    free(copy);
    return 0;
}
