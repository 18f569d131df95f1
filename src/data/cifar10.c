/* cifar10.c — one file of the CIFAR-10 binary version (data_batch_1.bin ..
 * data_batch_5.bin, test_batch.bin): 3073-byte records, each a label byte
 * 0..9 and a 32x32 image stored plane by plane (1024 red, 1024 green, 1024
 * blue bytes, each plane row-major), read into fm_images' channel-last
 * layout. The file size fixes the record count before anything is allocated. */
#define _POSIX_C_SOURCE 200809L

#include "bytes.h"
#include "internal.h"
#include "readers.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CIFAR_PLANE (FM_DATA_SIDE * FM_DATA_SIDE)
#define CIFAR_RECORD (1 + FM_DATA_IMAGE_BYTES)
#define CIFAR_CLASSES 10
/* Records converted per read. */
#define CIFAR_CHUNK 64

/* read() exactly n bytes; *got tells how far a short file went. */
static int read_exact(int fd, const char *path, uint8_t *buf, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t r = read(fd, buf + *got, FM_MIN(n - *got, (size_t)1 << 30));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return fmi_error(FM_EIO, "%s: %s", path, strerror(errno));
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return FM_OK;
}

static void record_to_image(const uint8_t *rec, uint8_t *out)
{
    for (int ch = 0; ch < FM_DATA_RGB; ch++)
        for (int i = 0; i < CIFAR_PLANE; i++)
            out[i * FM_DATA_RGB + ch] = rec[ch * CIFAR_PLANE + i];
}

int fmi_cifar10_read_append(const char *path, fm_images *acc)
{
    if (!path || !acc)
        return fmi_error(FM_EINVAL, "fm_cifar10_read: NULL argument");
    if (acc->count < 0 || (acc->count > 0 && (acc->height != FM_DATA_SIDE || acc->width != FM_DATA_SIDE ||
                                             acc->channels != FM_DATA_RGB)))
        return fmi_error(FM_EINVAL, "%s: cannot append 32x32x3 images to %dx%dx%d images", path,
                        acc->height, acc->width, acc->channels);
    uint64_t size;
    int fd = fmi_open_input(path, 0, &size); /* its size must be known */
    if (fd < 0)
        return fd;
    int err = FM_OK;
    if (size == 0)
        err = fmi_error(FM_EFORMAT, "%s: empty file (expected 3073-byte records: a label, then 3072 pixels)",
                       path);
    else if (size % CIFAR_RECORD)
        err = fmi_error(FM_ETRUNC,
                       "%s: truncated: %lld bytes is not a whole number of 3073-byte records "
                       "(%lld records and %lld bytes over)",
                       path, (long long)size, (long long)(size / CIFAR_RECORD),
                       (long long)(size % CIFAR_RECORD));
    else if (size / CIFAR_RECORD > (uint64_t)(INT32_MAX - acc->count))
        err = fmi_error(FM_EFORMAT, "%s: %lld records, more than %d in all", path,
                       (long long)(size / CIFAR_RECORD), INT32_MAX);
    if (err) {
        close(fd);
        return err;
    }

    size_t base = (size_t)acc->count, n = (size_t)(size / CIFAR_RECORD);
    uint8_t *chunk = NULL;
    err = fmi_data_resize(&acc->pixels, (base + n) * FM_DATA_IMAGE_BYTES);
    if (!err)
        err = fmi_data_resize(&acc->labels, base + n);
    if (!err && !(chunk = fmi_alloc_raw((size_t)CIFAR_CHUNK * CIFAR_RECORD)))
        err = FM_ENOMEM;
    for (size_t i = 0; !err && i < n; i += CIFAR_CHUNK) {
        size_t k = FM_MIN((size_t)CIFAR_CHUNK, n - i), got;
        err = read_exact(fd, path, chunk, k * CIFAR_RECORD, &got);
        if (!err && got < k * CIFAR_RECORD)
            err = fmi_error(FM_ETRUNC, "%s: unexpected end of file in record %zu (it shrank while being read)",
                           path, i + got / CIFAR_RECORD);
        for (size_t j = 0; !err && j < k; j++) {
            const uint8_t *rec = chunk + j * CIFAR_RECORD;
            if (rec[0] >= CIFAR_CLASSES)
                err = fmi_error(FM_EFORMAT, "%s: record %zu: label %u out of range 0..9", path, i + j,
                               (unsigned)rec[0]);
            acc->labels[base + i + j] = rec[0];
            record_to_image(rec + 1, acc->pixels + (base + i + j) * FM_DATA_IMAGE_BYTES);
        }
    }
    fmi_free(chunk);
    close(fd);
    if (err)
        return err;
    acc->count = (int32_t)(base + n);
    acc->height = acc->width = FM_DATA_SIDE;
    acc->channels = FM_DATA_RGB;
    return FM_OK;
}

int fm_cifar10_read(const char *path, fm_images *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!path || !out)
        return fmi_error(FM_EINVAL, "fm_cifar10_read: NULL argument");
    fm_images acc;
    memset(&acc, 0, sizeof acc);
    int err = fmi_cifar10_read_append(path, &acc);
    if (err) {
        fm_images_free(&acc);
        return err;
    }
    *out = acc;
    return FM_OK;
}
