/* fuzz_deploy_file.c — libFuzzer target for the packed model reader
 * (fm_deploy_load_memory, docs/format.md; versions 1 and 2, whose seeds hold
 * dense layers, convolutions, max-pools and global average pooling). Any input must either be refused
 * with a negative code and no network, or load into a network whose file is
 * exactly the input's size (the reader accepts one byte form per network);
 * nothing may crash, read out of bounds or leak. Built and run by
 * tests/fuzz/run.sh.
 *
 * Random mutations almost never keep a CRC-32 right, so on its own the fuzzer
 * would only ever test the checksum. Each input is therefore loaded twice: as
 * it is, and as a copy whose declared file size and section checksums are
 * recomputed, which lets mutated counts, codes and floats reach the checks
 * behind the checksums. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fewmul.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int k = bytes - 1; k >= 0; k--)
        v = v << 8 | p[k];
    return v;
}

static void set_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int k = 0; k < bytes; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static void set_crc(uint8_t *p, size_t body)
{
    set_le(p + body, (uint32_t)crc32(0L, p, (uInt)body), 4);
}

/* Makes the declared size and every checksum that can be located right,
 * following the file's own length fields as far as they stay inside it. */
static void repair(uint8_t *p, size_t size)
{
    if (size < 64 || memcmp(p, "FMULPACK", 8) != 0)
        return;
    set_le(p + 48, size, 8);
    uint64_t header = le(p + 12, 4);
    if (header < 64 || header > size)
        return;
    set_crc(p, (size_t)header - 4);
    size_t at = (size_t)header;
    for (int layer = 0; layer < 128 && size - at >= 16; layer++) {
        uint64_t payload = le(p + at + 4, 8);
        if (payload > size - at - 16)
            return;
        set_crc(p + at, 12 + (size_t)payload);
        at += 16 + (size_t)payload;
    }
}

static void load_and_check(const uint8_t *data, size_t size)
{
    fm_deploy *deploy = NULL;
    int rc = fm_deploy_load_memory(data, size, &deploy);
    if (rc == FM_OK) {
        if (!deploy || fm_deploy_file_bytes(deploy) != (uint64_t)size)
            abort(); /* accepted bytes must be the exact file of what was loaded */
        fm_deploy_free(deploy);
    } else if (rc >= 0 || deploy != NULL) {
        abort(); /* a failure is a negative code and leaves no network */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_and_check(data, size);
    if (size < 64 || memcmp(data, "FMULPACK", 8) != 0)
        return 0;
    uint8_t *copy = malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    repair(copy, size);
    if (memcmp(copy, data, size) != 0)
        load_and_check(copy, size);
    free(copy);
    return 0;
}
