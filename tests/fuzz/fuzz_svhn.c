/* fuzz_svhn.c — libFuzzer target for the SVHN reader, fm_svhn_read, and the
 * MATLAB level-5 reader under it (src/data/mat5.c; docs/data.md, "SVHN").
 *
 * The input is the MAT file, written to a private tmpfs directory, and read
 * twice more in other forms:
 *
 *  - recompressed: every top-level miMATRIX element that fits in the file is
 *    replaced by a miCOMPRESSED element holding it (zlib), the rest kept as
 *    is. Mutations of the plain element's contents then reach the compressed
 *    path inside valid zlib streams (raw mutations of a compressed element
 *    mostly stop at its checksum). Both forms must give the same answer:
 *    refused both, or the same images and labels;
 *  - padded (one input in four, chosen by its hash): a plain variable 'pad' of
 *    about 256 KiB, which the reader skips, is put before the first one, so
 *    that the rest straddles the end of the reader's 256 KiB read-ahead at
 *    some point (the skip seeks, the buffer refills part-way). It must give
 *    the same code as the file itself, and the same images;
 *  - appended: an accepted file is appended to the images it gave
 *    (fmi_svhn_read_append, as svhn:DIR appends extra_32x32.mat), which must
 *    double them.
 *
 * A refusal is a negative code with a zeroed output; accepted images are
 * 32x32x3 with labels 0..9. Nothing may crash, leak or ask for memory the
 * file does not justify, and each read is repeated with one allocation
 * failing, which must be FM_ENOMEM (fuzz_support.h). Built and run by
 * tests/fuzz/run.sh.
 *
 * FUZZ_OPTIONS: -max_len=16384 */
#include "fuzz_support.h"

#include <zlib.h>

#include "readers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct job {
    const char *path;
    fm_images keep; /* kept.count 0: refused */
    int kept;
} job;

static int read_once(void *ctx)
{
    job *j = ctx;
    fm_images im, zero;
    memset(&im, 0xa5, sizeof im);
    memset(&zero, 0, sizeof zero);
    int rc = fm_svhn_read(j->path, &im);
    if (rc != FM_OK) {
        if (rc >= 0 || memcmp(&im, &zero, sizeof im) != 0)
            abort();
        fz_check_message(rc, j->path, 0);
        return rc;
    }
    if (im.count < 1 || im.height != 32 || im.width != 32 || im.channels != 3 || !im.pixels ||
        !im.labels)
        abort();
    size_t n = (size_t)im.count;
    for (size_t i = 0; i < n; i++)
        if (im.labels[i] > 9)
            abort();
    int arc = fmi_svhn_read_append(j->path, &im);
    if (arc == FM_OK) {
        if (im.count != (int32_t)(2 * n) || memcmp(im.pixels, im.pixels + n * 3072, n * 3072) ||
            memcmp(im.labels, im.labels + n, n))
            abort();
    } else if (arc >= 0 || im.count != (int32_t)n || arc != FM_ENOMEM) {
        abort(); /* the same file appends as it reads; only memory can fail */
    }
    if (!j->kept && arc == FM_OK) {
        j->keep = im;
        j->keep.count = (int32_t)n;
        j->kept = 1;
    } else {
        fm_images_free(&im);
    }
    return arc;
}

static uint32_t get32(const uint8_t *p, int big)
{
    return big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
               : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static void put32(uint8_t *p, uint32_t v, int big)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> 8 * (big ? 3 - i : i));
}

/* The file with its plain top-level variables compressed; NULL when it has
 * none (or no MAT header). */
static uint8_t *recompress(const uint8_t *data, size_t size, size_t *out_len)
{
    if (size < 128 + 8)
        return NULL;
    int big;
    if (data[126] == 'I' && data[127] == 'M')
        big = 0;
    else if (data[126] == 'M' && data[127] == 'I')
        big = 1;
    else
        return NULL;
    size_t cap = 128 + 2 * size + 64;
    uint8_t *out = malloc(cap);
    if (!out)
        abort();
    memcpy(out, data, 128);
    size_t pos = 128, len = 128;
    int changed = 0, level = size % 3 == 0 ? 0 : Z_DEFAULT_COMPRESSION;
    while (size - pos >= 8) {
        uint32_t type = get32(data + pos, big), count = get32(data + pos + 4, big);
        if (type != 14 || count > size - pos - 8)
            break;
        uLong body = 8 + (uLong)count, bound = compressBound(body);
        if (len + 8 + bound > cap) {
            cap = len + 8 + bound + size;
            out = realloc(out, cap);
            if (!out)
                abort();
        }
        uLongf clen = bound;
        if (compress2(out + len + 8, &clen, data + pos, body, level) != Z_OK)
            abort();
        put32(out + len, 15, big);
        put32(out + len + 4, (uint32_t)clen, big);
        len += 8 + clen;
        changed = 1;
        pos += 8 + (size_t)count;
        pos += (size - pos) < (8 - count % 8) % 8 ? size - pos : (8 - count % 8) % 8;
    }
    if (!changed) {
        free(out);
        return NULL;
    }
    if (len + (size - pos) > cap) {
        out = realloc(out, len + (size - pos));
        if (!out)
            abort();
    }
    memcpy(out + len, data + pos, size - pos);
    *out_len = len + (size - pos);
    return out;
}

/* The file with a 'pad' variable of about 256 KiB before its first variable;
 * NULL when it has no MAT header. */
static uint8_t *pad_front(const uint8_t *data, size_t size, uint64_t hash, size_t *out_len)
{
    if (size < 128 || !((data[126] == 'I' && data[127] == 'M') || (data[126] == 'M' && data[127] == 'I')))
        return NULL;
    int big = data[126] == 'M';
    /* the read-ahead ends somewhere in the 4 KiB after the pad */
    uint32_t n = (uint32_t)(256u * 1024u - 128u - 64u - (hash >> 8) % 4096u) & ~7u;
    size_t element = 8 + 16 + 16 + 16 + 8 + n;
    uint8_t *out = calloc(1, size + element);
    if (!out)
        abort();
    memcpy(out, data, 128);
    uint8_t *p = out + 128;
    put32(p, 14, big), put32(p + 4, (uint32_t)(element - 8), big);           /* miMATRIX */
    put32(p + 8, 6, big), put32(p + 12, 8, big), put32(p + 16, 9, big);      /* flags: uint8 */
    put32(p + 24, 5, big), put32(p + 28, 8, big), put32(p + 32, 1, big), put32(p + 36, n, big);
    put32(p + 40, 1, big), put32(p + 44, 3, big), memcpy(p + 48, "pad", 3);  /* name */
    put32(p + 56, 2, big), put32(p + 60, n, big);                            /* n bytes */
    memcpy(out + 128 + element, data + 128, size - 128);
    *out_len = size + element;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    job plain = {fz_path("plain.mat"), {0}, 0};
    fz_write(plain.path, data, size);
    int rc = fz_run_twice(data, size, read_once, &plain);

    size_t zlen;
    uint8_t *z = recompress(data, size, &zlen);
    if (z) {
        job packed = {fz_path("packed.mat"), {0}, 0};
        fz_write(packed.path, z, zlen);
        int zrc = fz_run_twice(z, zlen, read_once, &packed);
        if ((rc == FM_OK) != (zrc == FM_OK)) {
            fprintf(stderr, "fuzz_svhn: the plain file gives %d, the recompressed one %d\n", rc,
                    zrc);
            abort();
        }
        if (plain.kept && packed.kept &&
            (plain.keep.count != packed.keep.count ||
             memcmp(plain.keep.pixels, packed.keep.pixels, (size_t)plain.keep.count * 3072) ||
             memcmp(plain.keep.labels, packed.keep.labels, (size_t)plain.keep.count)))
            abort();
        fm_images_free(&packed.keep);
        free(z);
    }
    uint64_t hash = fz_hash(data, size);
    size_t plen;
    uint8_t *padded = hash % 4 == 0 ? pad_front(data, size, hash, &plen) : NULL;
    if (padded) {
        job big = {fz_path("padded.mat"), {0}, 0};
        fz_write(big.path, padded, plen);
        int prc = fz_run_twice(padded, plen, read_once, &big);
        if (prc != rc) {
            fprintf(stderr, "fuzz_svhn: the file gives %d, with a pad variable before it %d\n",
                    rc, prc);
            abort();
        }
        if (plain.kept && big.kept &&
            (plain.keep.count != big.keep.count ||
             memcmp(plain.keep.pixels, big.keep.pixels, (size_t)plain.keep.count * 3072) ||
             memcmp(plain.keep.labels, big.keep.labels, (size_t)plain.keep.count)))
            abort();
        fm_images_free(&big.keep);
        free(padded);
    }
    fm_images_free(&plain.keep);
    return 0;
}
