/* idx.c — reading MNIST-style IDX files (raw or gzip-compressed) into
 * fm_images (data.c finds the files of a data spec). Every declared size is
 * checked against the bytes actually present before a large buffer is
 * allocated, so a damaged or hostile header can neither crash the caller nor
 * make it allocate gigabytes. */
#define _POSIX_C_SOURCE 200809L

#include "bytes.h"
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* fewmul's output layer has this many classes; a label outside 0..9 means the
 * file is not what we think it is, and would index past the output. */
#define FM_IDX_MAX_CLASSES 10

/* Bounds that no real IDX data set comes near; beyond them the header is
 * damaged, and rejecting early keeps size arithmetic far from overflow. */
#define FM_IDX_MAX_SIDE 4096u
#define FM_IDX_MAX_COUNT 100000000u

#define FM_IDX_TYPE_UBYTE 0x08
#define FM_IDX_MAGIC_IMAGES 0x00000803u
#define FM_IDX_MAGIC_LABELS 0x00000801u

/* Compressed input is read in blocks of this size; decompressed data of unknown
 * true length is accumulated starting from a buffer of FIRST_CHUNK bytes. */
#define FM_IDX_IN_CHUNK (64u * 1024u)
#define FM_IDX_FIRST_CHUNK ((size_t)1 << 20)

/* One open IDX file, raw or gzip. The first two bytes are peeked to detect gzip
 * and kept in `peek`, so the file is read strictly forward (pipes work too). */
typedef struct idx_file {
    const char *path;
    int fd;
    int gzip;
    uint8_t peek[2];
    size_t npeek;
    int have_size;       /* raw regular file: `remaining` is exact */
    uint64_t remaining;  /* bytes of the raw file not yet read */
    z_stream zs;
    int zs_ready, zs_end, in_eof;
    uint8_t *in;
} idx_file;

/* zlib allocates through the library's hook too, so a custom allocator sees
 * (and can fail) every byte the reader uses. */
static voidpf idx_zalloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return fmi_alloc_raw((size_t)items * size);
}

static void idx_zfree(voidpf opaque, voidpf ptr)
{
    (void)opaque;
    fmi_free(ptr);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* read() until n bytes, EOF or an error; *got is what arrived. */
static int fd_read(idx_file *f, uint8_t *buf, size_t n, size_t *got)
{
    size_t done = 0;
    while (done < n) {
        size_t want = FM_MIN(n - done, (size_t)1 << 30);
        ssize_t r = read(f->fd, buf + done, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return fmi_error(FM_EIO, "%s: %s", f->path, strerror(errno));
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *got = done;
    return FM_OK;
}

static int idx_open(idx_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    /* a regular file, or a pipe or FIFO (read as it arrives) */
    uint64_t size;
    f->fd = fmi_open_input(path, 1, &size);
    if (f->fd < 0)
        return f->fd;

    int err = fd_read(f, f->peek, 2, &f->npeek);
    if (err)
        return err;
    if (size == UINT64_MAX && f->npeek == 0)
        return fmi_error(FM_ETRUNC, "%s: a pipe or FIFO that gave no data (no writer?)", path);
    f->gzip = f->npeek == 2 && f->peek[0] == 0x1f && f->peek[1] == 0x8b;
    if (!f->gzip) {
        if (size != UINT64_MAX) {
            f->have_size = 1;
            f->remaining = size; /* counts the peeked bytes */
        }
        return FM_OK;
    }

    f->in = fmi_alloc_raw(FM_IDX_IN_CHUNK);
    if (!f->in)
        return FM_ENOMEM;
    memcpy(f->in, f->peek, 2);
    f->npeek = 0;
    f->zs.zalloc = idx_zalloc;
    f->zs.zfree = idx_zfree;
    f->zs.next_in = f->in;
    f->zs.avail_in = 2;
    /* 16 + MAX_WBITS: gzip wrapper only, since we detected its magic. */
    int zr = inflateInit2(&f->zs, 16 + MAX_WBITS);
    if (zr != Z_OK)
        return zr == Z_MEM_ERROR ? FM_ENOMEM
                                 : fmi_error(FM_EIO, "%s: zlib: %s", path, zError(zr));
    f->zs_ready = 1;
    return FM_OK;
}

static void idx_close(idx_file *f)
{
    if (f->zs_ready)
        inflateEnd(&f->zs);
    fmi_free(f->in);
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->zs_ready = 0;
    f->in = NULL;
}

/* Moves unread input to the front of the buffer and tops it up from the file. */
static int gz_refill(idx_file *f)
{
    if (f->in_eof)
        return FM_OK;
    if (f->zs.avail_in && f->zs.next_in != f->in)
        memmove(f->in, f->zs.next_in, f->zs.avail_in);
    size_t got = 0;
    int err = fd_read(f, f->in + f->zs.avail_in, FM_IDX_IN_CHUNK - f->zs.avail_in, &got);
    if (err)
        return err;
    if (got == 0)
        f->in_eof = 1;
    f->zs.next_in = f->in;
    f->zs.avail_in += (uInt)got;
    return FM_OK;
}

static int gz_read(idx_file *f, uint8_t *buf, size_t n, size_t *got)
{
    size_t done = 0;
    while (done < n) {
        size_t want = FM_MIN(n - done, (size_t)UINT_MAX);
        f->zs.next_out = buf + done;
        f->zs.avail_out = (uInt)want;
        if (f->zs_end) {
            /* A gzip file may hold several members back to back (gzip(1)
             * decompresses them as one); anything else after the stream means
             * a damaged or mislabeled file. */
            if (f->zs.avail_in < 2) {
                int err = gz_refill(f);
                if (err)
                    return err;
            }
            if (f->zs.avail_in == 0)
                break;
            if (f->zs.avail_in < 2 || f->zs.next_in[0] != 0x1f || f->zs.next_in[1] != 0x8b)
                return fmi_error(FM_EFORMAT, "%s: unexpected bytes after the gzip stream",
                                f->path);
            inflateReset(&f->zs);
            f->zs_end = 0;
        }
        if (f->zs.avail_in == 0) {
            int err = gz_refill(f);
            if (err)
                return err;
        }
        int zr = inflate(&f->zs, Z_NO_FLUSH);
        done += want - f->zs.avail_out;
        if (zr == Z_STREAM_END) {
            f->zs_end = 1;
        } else if (zr == Z_BUF_ERROR) {
            /* No progress possible: input exhausted mid-stream (zlib always
             * progresses while it has input and output room). */
            if (f->zs.avail_in == 0 && f->in_eof)
                return fmi_error(FM_ETRUNC,
                                "%s: truncated gzip stream (unexpected end of file)", f->path);
            if (f->zs.avail_in != 0)
                return fmi_error(FM_EFORMAT, "%s: corrupt gzip stream: no progress", f->path);
        } else if (zr == Z_MEM_ERROR) {
            return FM_ENOMEM;
        } else if (zr != Z_OK) {
            return fmi_error(FM_EFORMAT, "%s: corrupt gzip stream: %s", f->path,
                            f->zs.msg ? f->zs.msg : zError(zr));
        }
    }
    *got = done;
    return FM_OK;
}

/* Reads up to n bytes; *got < n only at end of data. */
static int idx_read(idx_file *f, uint8_t *buf, size_t n, size_t *got)
{
    if (f->gzip)
        return gz_read(f, buf, n, got);
    size_t done = 0;
    while (f->npeek && done < n) {
        buf[done++] = f->peek[0];
        f->peek[0] = f->peek[1];
        f->npeek--;
    }
    size_t more = 0;
    int err = fd_read(f, buf + done, n - done, &more);
    done += more;
    if (f->have_size)
        f->remaining -= FM_MIN(f->remaining, (uint64_t)done);
    *got = done;
    return err;
}

/* Reads the magic and the `ndims` dimensions and checks them. */
static int read_header(idx_file *f, uint32_t expected_magic, uint32_t *dims)
{
    unsigned ndims = expected_magic & 0xffu;
    size_t need = 4 + 4 * (size_t)ndims, got;
    uint8_t h[16];
    int err = idx_read(f, h, need, &got);
    if (err)
        return err;
    const char *kind = ndims == 3 ? "an IDX image file" : "an IDX label file";
    if (got < 4)
        return fmi_error(FM_ETRUNC, "%s: truncated header (%zu of %zu bytes)", f->path, got, need);
    uint32_t magic = be32(h);
    /* The element type is judged only when the rest of the magic is right, so
     * a label file given as images reads "bad magic", not "unsupported". */
    if (h[0] != 0 || h[1] != 0 || h[3] != ndims)
        return fmi_error(FM_EFORMAT, "%s: bad magic 0x%08x (expected 0x%08x, %s)", f->path,
                        (unsigned)magic, (unsigned)expected_magic, kind);
    if (h[2] != FM_IDX_TYPE_UBYTE)
        return fmi_error(FM_EFORMAT,
                        "%s: unsupported IDX element type 0x%02x in magic 0x%08x "
                        "(only unsigned bytes, 0x08, are supported)",
                        f->path, h[2], (unsigned)magic);
    if (got < need)
        return fmi_error(FM_ETRUNC, "%s: truncated header (%zu of %zu bytes)", f->path, got, need);
    for (unsigned i = 0; i < ndims; i++)
        dims[i] = be32(h + 4 + 4 * i);
    return FM_OK;
}

/* Reads exactly `declared` bytes of payload into a new buffer, requiring that
 * nothing follows. `what` describes the payload for messages. */
static int read_payload(idx_file *f, uint64_t declared, const char *what, uint8_t **out)
{
    *out = NULL;
    if (declared > SIZE_MAX)
        return fmi_error(FM_EFORMAT, "%s: header declares %s, too large for this machine",
                        f->path, what);
    if (f->have_size) {
        if (f->remaining < declared)
            return fmi_error(FM_ETRUNC,
                            "%s: truncated: header declares %s (%llu bytes) but only %llu "
                            "bytes follow",
                            f->path, what, (unsigned long long)declared,
                            (unsigned long long)f->remaining);
        if (f->remaining > declared)
            return fmi_error(FM_EFORMAT,
                            "%s: %llu extra bytes after data (header declares %s, %llu bytes)",
                            f->path, (unsigned long long)(f->remaining - declared), what,
                            (unsigned long long)declared);
    }

    /* Without a known size (gzip, pipes) the buffer grows with the data that
     * actually arrives, never past the declared size. */
    size_t cap = f->have_size ? (size_t)declared : FM_MIN((size_t)declared, FM_IDX_FIRST_CHUNK);
    size_t len = 0;
    uint8_t *buf = fmi_alloc_raw(cap);
    if (!buf)
        return FM_ENOMEM;
    for (;;) {
        size_t got = 0;
        int err = idx_read(f, buf + len, cap - len, &got);
        if (err) {
            fmi_free(buf);
            return err;
        }
        len += got;
        if (len < cap || cap == declared)
            break;
        size_t next = cap > ((size_t)declared) / 2 ? (size_t)declared : cap * 2;
        uint8_t *grown = fmi_realloc(buf, next);
        if (!grown) {
            fmi_free(buf);
            return FM_ENOMEM;
        }
        buf = grown;
        cap = next;
    }
    if (len < declared) {
        fmi_free(buf);
        return fmi_error(FM_ETRUNC,
                        "%s: truncated: header declares %s (%llu bytes) but only %zu bytes "
                        "follow",
                        f->path, what, (unsigned long long)declared, len);
    }
    uint8_t probe;
    size_t extra;
    int err = idx_read(f, &probe, 1, &extra);
    if (err || extra) {
        fmi_free(buf);
        return err ? err
                   : fmi_error(FM_EFORMAT, "%s: extra bytes after data (header declares %s)",
                              f->path, what);
    }
    *out = buf;
    return FM_OK;
}

int fm_idx_read(const char *images_path, const char *labels_path, fm_images *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!images_path || !labels_path || !out)
        return fmi_error(FM_EINVAL, "fm_idx_read: NULL argument");

    idx_file fi, fl;
    fl.fd = -1;
    fl.zs_ready = 0;
    fl.in = NULL;
    uint8_t *pixels = NULL, *labels = NULL;
    uint32_t idims[3] = {0}, ldims[1] = {0};
    char what[96];

    int err = idx_open(&fi, images_path);
    if (!err)
        err = read_header(&fi, FM_IDX_MAGIC_IMAGES, idims);
    if (!err) {
        if (idims[0] == 0 || idims[1] == 0 || idims[2] == 0)
            err = fmi_error(FM_EFORMAT, "%s: header declares %u images of %ux%u pixels",
                           images_path, idims[0], idims[1], idims[2]);
        else if (idims[1] > FM_IDX_MAX_SIDE || idims[2] > FM_IDX_MAX_SIDE)
            err = fmi_error(FM_EFORMAT, "%s: implausible image size %ux%u (limit %ux%u)",
                           images_path, idims[1], idims[2], FM_IDX_MAX_SIDE, FM_IDX_MAX_SIDE);
        else if (idims[0] > FM_IDX_MAX_COUNT)
            err = fmi_error(FM_EFORMAT, "%s: implausible image count %u (limit %u)",
                           images_path, idims[0], FM_IDX_MAX_COUNT);
    }
    /* Both headers are checked before any payload is read, so a mismatched
     * pair fails at once instead of after decompressing 47 MB. */
    if (!err)
        err = idx_open(&fl, labels_path);
    if (!err)
        err = read_header(&fl, FM_IDX_MAGIC_LABELS, ldims);
    if (!err) {
        if (ldims[0] == 0)
            err = fmi_error(FM_EFORMAT, "%s: header declares 0 labels", labels_path);
        else if (ldims[0] > FM_IDX_MAX_COUNT)
            err = fmi_error(FM_EFORMAT, "%s: implausible label count %u (limit %u)",
                           labels_path, ldims[0], FM_IDX_MAX_COUNT);
        else if (ldims[0] != idims[0])
            err = fmi_error(FM_EMISMATCH, "%s has %u images but %s has %u labels", images_path,
                           idims[0], labels_path, ldims[0]);
    }
    if (!err) {
        snprintf(what, sizeof what, "%u images of %ux%u", idims[0], idims[1], idims[2]);
        err = read_payload(&fi, (uint64_t)idims[0] * idims[1] * idims[2], what, &pixels);
    }
    if (!err) {
        snprintf(what, sizeof what, "%u labels", ldims[0]);
        err = read_payload(&fl, ldims[0], what, &labels);
    }
    for (uint32_t i = 0; !err && i < ldims[0]; i++)
        if (labels[i] >= FM_IDX_MAX_CLASSES)
            err = fmi_error(FM_EFORMAT, "%s: label %u at index %u out of range 0..%d",
                           labels_path, (unsigned)labels[i], (unsigned)i, FM_IDX_MAX_CLASSES - 1);
    idx_close(&fi);
    idx_close(&fl);
    if (err) {
        fmi_free(pixels);
        fmi_free(labels);
        return err;
    }
    out->count = (int32_t)idims[0];
    out->height = (int32_t)idims[1];
    out->width = (int32_t)idims[2];
    out->channels = 1;
    out->pixels = pixels;
    out->labels = labels;
    return FM_OK;
}
