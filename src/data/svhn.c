/* svhn.c — SVHN cropped digits (train_32x32.mat, test_32x32.mat,
 * extra_32x32.mat): the variables X (32x32x3xN uint8, column-major) and y
 * (N labels 1..10, 10 standing for the digit 0) of a level-5 MAT file, read
 * through mat5.h into fm_images' channel-last layout with labels 0..9. */
#include "internal.h"
#include "mat5.h"
#include "readers.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define SVHN_CLASSES 10
/* Images converted per read: large enough that zlib and the copy loop run
 * long stretches, small enough to stay in cache. */
#define SVHN_CHUNK 64
/* Labels converted per read (at most 8 bytes each). */
#define SVHN_LABEL_CHUNK 4096
/* Before compressed data has shown it exists, room for this many images (or
 * labels) is reserved; the buffers then double as data arrives, so a small
 * file that declares millions of images cannot claim gigabytes. */
#define SVHN_FIRST_RESERVE 1024

typedef struct svhn_read {
    const char *path;
    fm_images *acc;
    size_t base;            /* acc->count on entry */
    size_t cap_pixels;      /* images acc->pixels has room for */
    size_t cap_labels;      /* labels acc->labels has room for */
    int have_x, have_y;
    uint64_t nx, ny;
} svhn_read;

/* Ensures room for `want` entries of `unit` bytes. exact: the size is backed
 * by bytes in the file, so take it at once; otherwise double toward `limit`. */
static int reserve(uint8_t **buf, size_t unit, size_t *cap, size_t want, size_t limit, int exact)
{
    if (want <= *cap)
        return FM_OK;
    size_t next = exact ? limit : FM_MAX(want, FM_MIN(limit, FM_MAX(*cap * 2, (size_t)SVHN_FIRST_RESERVE)));
    int err = fmi_data_resize(buf, next * unit);
    if (!err)
        *cap = next;
    return err;
}

/* X(r, c, ch) lies at r + 32c + 1024ch (column-major); fm_images wants
 * (r*32 + c)*3 + ch. */
static void to_channel_last(const uint8_t *in, uint8_t *out)
{
    for (int ch = 0; ch < FM_DATA_RGB; ch++)
        for (int c = 0; c < FM_DATA_SIDE; c++)
            for (int r = 0; r < FM_DATA_SIDE; r++)
                out[(r * FM_DATA_SIDE + c) * FM_DATA_RGB + ch] =
                    in[ch * FM_DATA_SIDE * FM_DATA_SIDE + c * FM_DATA_SIDE + r];
}

static void dims_text(const mat5_var *v, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < v->ndims && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? "x%u" : "%u", (unsigned)v->dims[i]);
}

static int read_x(mat5_file *f, const mat5_var *v, svhn_read *s)
{
    char dims[160];
    if (s->have_x)
        return fmi_error(FM_EFORMAT, "%s: a second variable X at offset %llu", s->path,
                        (unsigned long long)v->offset);
    if (v->klass != MAT5_CLASS_UINT8 || v->complex || v->logical)
        return fmi_error(FM_EFORMAT, "%s: X is %s%s%s, expected a real uint8 array", s->path,
                        v->complex ? "complex " : "", v->logical ? "logical " : "",
                        fmi_mat5_class_name(v->klass));
    dims_text(v, dims, sizeof dims);
    /* MATLAB drops trailing singleton dimensions: one image is 32x32x3. */
    int shape = v->ndims >= 3 && v->ndims <= 4 && v->dims[0] == FM_DATA_SIDE &&
                v->dims[1] == FM_DATA_SIDE && v->dims[2] == FM_DATA_RGB;
    if (!shape)
        return fmi_error(FM_EFORMAT, "%s: X is %s, expected 32x32x3xN (N images of 32x32 pixels, 3 colours)",
                        s->path, dims);
    uint64_t n = v->ndims == 4 ? v->dims[3] : 1;
    if (n == 0)
        return fmi_error(FM_EFORMAT, "%s: X is %s: no images", s->path, dims);
    if (s->have_y && n != s->ny)
        return fmi_error(FM_EMISMATCH, "%s: X has %llu images but y has %llu labels", s->path,
                        (unsigned long long)n, (unsigned long long)s->ny);
    if (n > (uint64_t)INT32_MAX - s->base)
        return fmi_error(FM_EFORMAT, "%s: X holds %llu images, more than %d in all", s->path,
                        (unsigned long long)n, INT32_MAX);
    int type;
    uint64_t count;
    int err = fmi_mat5_data_begin(f, &type, &count);
    if (err)
        return err;
    if (type != MAT5_UINT8)
        return fmi_error(FM_EFORMAT, "%s: X's data is stored as %s, expected miUINT8", s->path,
                        fmi_mat5_type_name(type));
    if (count != n * FM_DATA_IMAGE_BYTES)
        return fmi_error(FM_EFORMAT, "%s: X's data holds %llu values but its dimensions %s need %llu",
                        s->path, (unsigned long long)count, dims,
                        (unsigned long long)(n * FM_DATA_IMAGE_BYTES));

    size_t total = s->base + (size_t)n;
    uint8_t *chunk = fmi_alloc_raw((size_t)SVHN_CHUNK * FM_DATA_IMAGE_BYTES);
    if (!chunk)
        return FM_ENOMEM;
    for (size_t i = 0; !err && i < n; i += SVHN_CHUNK) {
        size_t k = (size_t)FM_MIN((uint64_t)SVHN_CHUNK, n - i);
        err = reserve(&s->acc->pixels, FM_DATA_IMAGE_BYTES, &s->cap_pixels, s->base + i + k, total,
                      !v->compressed);
        if (!err)
            err = fmi_mat5_data_read(f, chunk, k * FM_DATA_IMAGE_BYTES);
        for (size_t j = 0; !err && j < k; j++)
            to_channel_last(chunk + j * FM_DATA_IMAGE_BYTES,
                            s->acc->pixels + (s->base + i + j) * FM_DATA_IMAGE_BYTES);
    }
    fmi_free(chunk);
    if (!err)
        err = fmi_mat5_end(f, 1);
    s->have_x = 1;
    s->nx = n;
    return err;
}

static int read_y(mat5_file *f, const mat5_var *v, svhn_read *s)
{
    char dims[160];
    if (s->have_y)
        return fmi_error(FM_EFORMAT, "%s: a second variable y at offset %llu", s->path,
                        (unsigned long long)v->offset);
    if (v->klass < MAT5_CLASS_DOUBLE || v->klass > MAT5_CLASS_UINT64 || v->complex)
        return fmi_error(FM_EFORMAT, "%s: y is %s%s, expected real numbers", s->path,
                        v->complex ? "complex " : "", fmi_mat5_class_name(v->klass));
    dims_text(v, dims, sizeof dims);
    int long_dims = 0;
    for (int i = 0; i < v->ndims; i++)
        long_dims += v->dims[i] > 1;
    if (long_dims > 1)
        return fmi_error(FM_EFORMAT, "%s: y is %s, expected a vector of labels", s->path, dims);
    uint64_t n = v->numel;
    if (n == 0)
        return fmi_error(FM_EFORMAT, "%s: y is %s: no labels", s->path, dims);
    if (s->have_x && n != s->nx)
        return fmi_error(FM_EMISMATCH, "%s: y has %llu labels but X has %llu images", s->path,
                        (unsigned long long)n, (unsigned long long)s->nx);
    if (n > (uint64_t)INT32_MAX - s->base)
        return fmi_error(FM_EFORMAT, "%s: y holds %llu labels, more than %d in all", s->path,
                        (unsigned long long)n, INT32_MAX);
    int type;
    uint64_t count;
    int err = fmi_mat5_data_begin(f, &type, &count);
    if (err)
        return err;
    if (count != n)
        return fmi_error(FM_EFORMAT, "%s: y's data holds %llu values but its dimensions %s need %llu",
                        s->path, (unsigned long long)count, dims, (unsigned long long)n);

    size_t size = fmi_mat5_type_size(type), total = s->base + (size_t)n;
    uint8_t *chunk = fmi_alloc_raw(SVHN_LABEL_CHUNK * size);
    if (!chunk)
        return FM_ENOMEM;
    for (size_t i = 0; !err && i < n; i += SVHN_LABEL_CHUNK) {
        size_t k = (size_t)FM_MIN((uint64_t)SVHN_LABEL_CHUNK, n - i);
        err = reserve(&s->acc->labels, 1, &s->cap_labels, s->base + i + k, total, !v->compressed);
        if (!err)
            err = fmi_mat5_data_read(f, chunk, k * size);
        for (size_t j = 0; !err && j < k; j++) {
            double x = fmi_mat5_value(f, type, chunk + j * size);
            if (x != floor(x)) /* NaN included */
                err = fmi_error(FM_EFORMAT, "%s: y: label %g at index %llu is not an integer 1..10",
                               s->path, x, (unsigned long long)(i + j));
            else if (x < 1 || x > SVHN_CLASSES)
                err = fmi_error(FM_EFORMAT, "%s: y: label %g at index %llu out of range 1..10",
                               s->path, x, (unsigned long long)(i + j));
            else /* SVHN's 10 is the digit 0 */
                s->acc->labels[s->base + i + j] = (uint8_t)((int)x % SVHN_CLASSES);
        }
    }
    fmi_free(chunk);
    if (!err)
        err = fmi_mat5_end(f, 1);
    s->have_y = 1;
    s->ny = n;
    return err;
}

int fmi_svhn_read_append(const char *path, fm_images *acc)
{
    if (!path || !acc)
        return fmi_error(FM_EINVAL, "fm_svhn_read: NULL argument");
    if (acc->count < 0 || (acc->count > 0 && (acc->height != FM_DATA_SIDE || acc->width != FM_DATA_SIDE ||
                                             acc->channels != FM_DATA_RGB)))
        return fmi_error(FM_EINVAL, "%s: cannot append 32x32x3 images to %dx%dx%d images", path,
                        acc->height, acc->width, acc->channels);
    svhn_read s;
    memset(&s, 0, sizeof s);
    s.path = path;
    s.acc = acc;
    s.base = (size_t)acc->count;
    s.cap_pixels = s.cap_labels = s.base;

    mat5_file f;
    int err = fmi_mat5_open(&f, path);
    while (!err) {
        mat5_var v;
        int r = fmi_mat5_next(&f, &v);
        if (r <= 0) {
            err = r;
            break;
        }
        if (strcmp(v.name, "X") == 0)
            err = read_x(&f, &v, &s);
        else if (strcmp(v.name, "y") == 0)
            err = read_y(&f, &v, &s);
        /* anything else is skipped by the next fmi_mat5_next */
    }
    fmi_mat5_close(&f);
    if (!err && !s.have_x)
        err = fmi_error(FM_EFORMAT, "%s: no variable X (the images)", path);
    if (!err && !s.have_y)
        err = fmi_error(FM_EFORMAT, "%s: no variable y (the labels)", path);
    size_t total = s.base + (size_t)s.nx;
    /* Doubling may have left slack; give it back. */
    if (!err && s.cap_pixels != total)
        err = fmi_data_resize(&acc->pixels, total * FM_DATA_IMAGE_BYTES);
    if (!err && s.cap_labels != total)
        err = fmi_data_resize(&acc->labels, total);
    if (err)
        return err;
    acc->count = (int32_t)total;
    acc->height = acc->width = FM_DATA_SIDE;
    acc->channels = FM_DATA_RGB;
    return FM_OK;
}

int fm_svhn_read(const char *path, fm_images *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!path || !out)
        return fmi_error(FM_EINVAL, "fm_svhn_read: NULL argument");
    fm_images acc;
    memset(&acc, 0, sizeof acc);
    int err = fmi_svhn_read_append(path, &acc);
    if (err) {
        fm_images_free(&acc);
        return err;
    }
    *out = acc;
    return FM_OK;
}
