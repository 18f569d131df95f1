/* fuzz_cifar10.c — libFuzzer target for the CIFAR-10 binary-version reader,
 * fm_cifar10_read (docs/data.md, "CIFAR-10 binary version").
 *
 * The input is the file, written to a private tmpfs directory. It must be
 * refused with a negative code and a zeroed output, or read as exactly
 * size / 3073 images of 32x32x3 with labels 0..9; an accepted file is then
 * appended to the images it gave (fmi_cifar10_read_append, as cifar10:DIR
 * joins its batches), which must double them. Nothing may crash, leak or ask
 * for memory the file does not hold; each input is read a second time with
 * one allocation failing, which must be FM_ENOMEM (fuzz_support.h). Built and
 * run by tests/fuzz/run.sh.
 *
 * FUZZ_OPTIONS: -max_len=13000 */
#include "fuzz_support.h"

#include "readers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct job {
    const char *path;
    const uint8_t *data;
    size_t size;
} job;

static int read_once(void *ctx)
{
    const job *j = ctx;
    fm_images im, zero;
    memset(&im, 0xa5, sizeof im);
    memset(&zero, 0, sizeof zero);
    int rc = fm_cifar10_read(j->path, &im);
    if (rc != FM_OK) {
        if (rc >= 0 || memcmp(&im, &zero, sizeof im) != 0)
            abort();
        fz_check_message(rc, j->path, 0);
        return rc;
    }
    size_t n = j->size / 3073;
    if (j->size % 3073 || im.count != (int32_t)n || im.height != 32 || im.width != 32 ||
        im.channels != 3 || !im.pixels || !im.labels)
        abort();
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = j->data + i * 3073;
        if (im.labels[i] != rec[0] || im.pixels[i * 3072] != rec[1] ||
            im.pixels[i * 3072 + 3071] != rec[3072])
            abort(); /* label, red (0,0), blue (31,31) */
    }
    rc = fmi_cifar10_read_append(j->path, &im);
    if (rc == FM_OK) {
        if (im.count != (int32_t)(2 * n) || memcmp(im.pixels, im.pixels + n * 3072, n * 3072) ||
            memcmp(im.labels, im.labels + n, n))
            abort();
    } else if (rc >= 0 || im.count != (int32_t)n) {
        abort(); /* a failed append leaves the count */
    }
    fm_images_free(&im);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    job j = {fz_path("batch.bin"), data, size};
    fz_write(j.path, data, size);
    fz_run_twice(data, size, read_once, &j);
    return 0;
}
