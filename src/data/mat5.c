/* mat5.c — the MAT level-5 reader of mat5.h: header checks, element tags in
 * both the full and the small data element form, miCOMPRESSED elements
 * inflated as they are consumed (neither the compressed nor the inflated
 * element is ever held whole), and the array flags, dimensions and name that
 * open every miMATRIX variable. */
#define _POSIX_C_SOURCE 200809L

#include "mat5.h"

#include "bytes.h"
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAT5_HEADER 128u
#define MAT5_VERSION 0x0100u
/* MATLAB 7.3 files carry this version: they are HDF5 files behind a MAT header. */
#define MAT5_VERSION_HDF5 0x0200u
#define MAT5_BUF (256u * 1024u)
/* Deflate cannot expand data by more than 1032:1 (zlib's technical notes), so
 * a compressed element whose contents declare more is damaged or hostile; the
 * check refuses it before a single byte is inflated. */
#define MAT5_MAX_RATIO 1032u

static uint16_t get16(const mat5_file *f, const uint8_t *p)
{
    return f->big ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static uint32_t get32(const mat5_file *f, const uint8_t *p)
{
    if (f->big)
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint64_t get64(const mat5_file *f, const uint8_t *p)
{
    uint64_t a = get32(f, p), b = get32(f, p + 4);
    return f->big ? a << 32 | b : b << 32 | a;
}

static uint32_t pad8(uint64_t n) { return (uint32_t)((8 - n % 8) % 8); }

/* zlib allocates through the library's hook, so a custom allocator sees (and
 * can fail) every byte the reader uses. */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return fmi_alloc_raw((size_t)items * size);
}

static void z_free(voidpf opaque, voidpf ptr)
{
    (void)opaque;
    fmi_free(ptr);
}

size_t fmi_mat5_type_size(int type)
{
    switch (type) {
    case MAT5_INT8:
    case MAT5_UINT8:
        return 1;
    case MAT5_INT16:
    case MAT5_UINT16:
        return 2;
    case MAT5_INT32:
    case MAT5_UINT32:
    case MAT5_SINGLE:
        return 4;
    case MAT5_DOUBLE:
    case MAT5_INT64:
    case MAT5_UINT64:
        return 8;
    default:
        return 0;
    }
}

const char *fmi_mat5_type_name(int type)
{
    static const char *const names[] = {
        NULL,       "miINT8",   "miUINT8",  "miINT16",  "miUINT16",     "miINT32", "miUINT32",
        "miSINGLE", NULL,       "miDOUBLE", NULL,       NULL,           "miINT64", "miUINT64",
        "miMATRIX", "miCOMPRESSED", "miUTF8", "miUTF16", "miUTF32"};
    if (type < 0 || type >= (int)(sizeof names / sizeof *names) || !names[type])
        return NULL;
    return names[type];
}

const char *fmi_mat5_class_name(int klass)
{
    static const char *const names[] = {"empty",  "cell",  "struct", "object", "char",
                                        "sparse", "double", "single", "int8",  "uint8",
                                        "int16",  "uint16", "int32",  "uint32", "int64",
                                        "uint64", "function", "opaque"};
    if (klass < 0 || klass >= (int)(sizeof names / sizeof *names))
        return "unknown";
    return names[klass];
}

double fmi_mat5_value(const mat5_file *f, int type, const uint8_t *p)
{
    switch (type) {
    case MAT5_INT8:
        return (double)(int8_t)p[0];
    case MAT5_UINT8:
        return p[0];
    case MAT5_INT16:
        return (double)(int16_t)get16(f, p);
    case MAT5_UINT16:
        return get16(f, p);
    case MAT5_INT32:
        return (double)(int32_t)get32(f, p);
    case MAT5_UINT32:
        return get32(f, p);
    case MAT5_INT64:
        return (double)(int64_t)get64(f, p);
    case MAT5_UINT64:
        return (double)get64(f, p);
    case MAT5_SINGLE: {
        uint32_t u = get32(f, p);
        float x;
        memcpy(&x, &u, sizeof x);
        return x;
    }
    case MAT5_DOUBLE: {
        uint64_t u = get64(f, p);
        double x;
        memcpy(&x, &u, sizeof x);
        return x;
    }
    default:
        return -1.0;
    }
}

/* "variable 'X' at offset 128", for messages. */
static const char *var_label(const mat5_file *f, char *buf, size_t size)
{
    if (f->var.name[0])
        snprintf(buf, size, "variable '%s' at offset %llu", f->var.name,
                 (unsigned long long)f->var.offset);
    else
        snprintf(buf, size, "variable at offset %llu", (unsigned long long)f->var.offset);
    return buf;
}

/* ---- the file ----------------------------------------------------------- */

/* read() exactly n bytes; the size was checked against fstat, so running out
 * means the file shrank while being read. */
static int fd_read_exact(mat5_file *f, uint8_t *dst, size_t n)
{
    while (n > 0) {
        ssize_t r = read(f->fd, dst, FM_MIN(n, (size_t)1 << 30));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return fmi_error(FM_EIO, "%s: %s", f->path, strerror(errno));
        if (r == 0)
            return fmi_error(FM_ETRUNC, "%s: unexpected end of file (it shrank while being read)",
                            f->path);
        dst += r;
        n -= (size_t)r;
    }
    return FM_OK;
}

/* Tops up the read-ahead with at most what the file still holds. */
static int file_fill(mat5_file *f)
{
    if (f->off > 0) {
        memmove(f->buf, f->buf + f->off, f->len - f->off);
        f->len -= f->off;
        f->off = 0;
    }
    uint64_t behind = f->size - f->pos - f->len; /* file bytes after the buffer */
    size_t want = (size_t)FM_MIN((uint64_t)(MAT5_BUF - f->len), behind);
    if (want == 0)
        return FM_OK;
    int err = fd_read_exact(f, f->buf + f->len, want);
    if (!err)
        f->len += want;
    return err;
}

/* Callers have checked that n bytes lie inside the file. */
static int file_read(mat5_file *f, uint8_t *dst, size_t n)
{
    while (n > 0) {
        if (f->off == f->len) {
            if (n >= MAT5_BUF) { /* big reads bypass the buffer */
                int err = fd_read_exact(f, dst, n);
                if (!err)
                    f->pos += n;
                return err;
            }
            int err = file_fill(f);
            if (err)
                return err;
            if (f->off == f->len)
                return fmi_error(FM_ETRUNC, "%s: unexpected end of file", f->path);
        }
        size_t take = FM_MIN(n, f->len - f->off);
        memcpy(dst, f->buf + f->off, take);
        f->off += take;
        f->pos += take;
        dst += take;
        n -= take;
    }
    return FM_OK;
}

static int file_skip(mat5_file *f, uint64_t n)
{
    size_t take = (size_t)FM_MIN(n, (uint64_t)(f->len - f->off));
    f->off += take;
    f->pos += take;
    n -= take;
    if (n == 0)
        return FM_OK;
    /* The buffer is empty, so the descriptor's offset is f->pos. */
    if (n > (uint64_t)INT64_MAX || lseek(f->fd, (off_t)n, SEEK_CUR) < 0)
        return fmi_error(FM_EIO, "%s: seek: %s", f->path, strerror(errno));
    f->pos += n;
    return FM_OK;
}

/* ---- compressed contents -------------------------------------------------- */

/* Inflates up to n bytes into dst, stopping early only where the zlib stream
 * ends (*got < n then). The input is the element's own compressed bytes,
 * never more. */
static int z_pull(mat5_file *f, uint8_t *dst, size_t n, size_t *got)
{
    char where[128];
    *got = 0;
    while (*got < n && !f->z_end) {
        if (f->off == f->len && f->z_left > 0) {
            int err = file_fill(f);
            if (err)
                return err;
        }
        size_t avail = (size_t)FM_MIN((uint64_t)(f->len - f->off), f->z_left);
        size_t want = FM_MIN(n - *got, (size_t)UINT_MAX);
        f->zs.next_in = f->buf + f->off;
        f->zs.avail_in = (uInt)avail;
        f->zs.next_out = dst + *got;
        f->zs.avail_out = (uInt)want;
        int zr = inflate(&f->zs, Z_NO_FLUSH);
        size_t used = avail - f->zs.avail_in, made = want - f->zs.avail_out;
        f->off += used;
        f->pos += used;
        f->z_left -= used;
        f->z_inflated += made;
        *got += made;
        if (zr == Z_STREAM_END) {
            f->z_end = 1;
        } else if (zr == Z_MEM_ERROR) {
            return FM_ENOMEM;
        } else if (zr == Z_NEED_DICT || zr == Z_DATA_ERROR || zr == Z_STREAM_ERROR) {
            return fmi_error(FM_EFORMAT, "%s: %s: corrupt zlib stream: %s", f->path,
                            var_label(f, where, sizeof where),
                            zr == Z_NEED_DICT ? "needs a preset dictionary"
                                              : f->zs.msg ? f->zs.msg : zError(zr));
        } else if (used == 0 && made == 0) {
            /* No progress: zlib has all of the element's bytes and wants more. */
            if (f->z_left == 0)
                return fmi_error(FM_ETRUNC,
                                "%s: %s: truncated zlib stream: the compressed element's bytes "
                                "end after %llu inflated bytes",
                                f->path, var_label(f, where, sizeof where),
                                (unsigned long long)f->z_inflated);
            return fmi_error(FM_EFORMAT, "%s: %s: corrupt zlib stream: no progress", f->path,
                            var_label(f, where, sizeof where));
        }
    }
    return FM_OK;
}

/* Inflates exactly n bytes; a stream that ends first is shorter than the
 * miMATRIX element inside it declares. */
static int z_read(mat5_file *f, uint8_t *dst, size_t n)
{
    size_t got;
    int err = z_pull(f, dst, n, &got);
    if (!err && got < n) {
        char where[128];
        return fmi_error(FM_EFORMAT,
                        "%s: %s: inflated data ends after %llu bytes, short of the %llu its "
                        "miMATRIX element declares (tag included)",
                        f->path, var_label(f, where, sizeof where),
                        (unsigned long long)f->z_inflated, (unsigned long long)f->z_declared);
    }
    return err;
}

/* ---- the open variable's contents ----------------------------------------- */

/* Callers keep n <= f->elem_left. */
static int src_read(mat5_file *f, uint8_t *dst, size_t n)
{
    int err = f->in_z ? z_read(f, dst, n) : file_read(f, dst, n);
    if (!err)
        f->elem_left -= n;
    return err;
}

static int src_skip(mat5_file *f, uint64_t n)
{
    if (!f->in_z) {
        int err = file_skip(f, n);
        if (!err)
            f->elem_left -= n;
        return err;
    }
    uint8_t scratch[16384];
    while (n > 0) {
        size_t step = (size_t)FM_MIN(n, (uint64_t)sizeof scratch);
        int err = src_read(f, scratch, step);
        if (err)
            return err;
        n -= step;
    }
    return FM_OK;
}

/* Reads a subelement's tag: the full form (type, byte count, data padded to
 * 8 bytes) or the small data element form (byte count 1..4 in the upper 16
 * bits of the first word, data in the tag's last 4 bytes). */
static int sub_begin(mat5_file *f, const char *what, uint32_t *type, uint32_t *bytes)
{
    char where[128];
    if (f->elem_left < 8)
        return fmi_error(FM_EFORMAT, "%s: %s: no %s (the variable ends first)",
                        f->path, var_label(f, where, sizeof where), what);
    uint8_t tag[8];
    int err = src_read(f, tag, 8);
    if (err)
        return err;
    uint32_t w0 = get32(f, tag);
    f->sub_sde = 0;
    f->sub_pad = 0;
    if (w0 >> 16) {
        *type = w0 & 0xffffu;
        *bytes = w0 >> 16;
        if (*bytes > 4)
            return fmi_error(FM_EFORMAT,
                            "%s: %s: %s: small data element declares %u bytes (at most 4 fit)",
                            f->path, var_label(f, where, sizeof where), what, (unsigned)*bytes);
        memcpy(f->sde, tag + 4, 4);
        f->sde_off = 0;
        f->sub_sde = 1;
    } else {
        *type = w0;
        *bytes = get32(f, tag + 4);
        if (*bytes > f->elem_left)
            return fmi_error(FM_EFORMAT,
                            "%s: %s: %s declares %u bytes but only %llu of the variable are left",
                            f->path, var_label(f, where, sizeof where), what, (unsigned)*bytes,
                            (unsigned long long)f->elem_left);
        /* The last subelement may lack its padding if the variable's own byte
         * count ends first; nothing is lost by tolerating that. */
        f->sub_pad = (uint32_t)FM_MIN((uint64_t)pad8(*bytes), f->elem_left - *bytes);
    }
    f->sub_left = *bytes;
    return FM_OK;
}

static int sub_read(mat5_file *f, uint8_t *dst, size_t n)
{
    if (n > f->sub_left)
        return fmi_error(FM_EINVAL, "%s: internal: read past a subelement", f->path);
    int err = FM_OK;
    if (f->sub_sde) {
        memcpy(dst, f->sde + f->sde_off, n);
        f->sde_off += (uint32_t)n;
    } else {
        err = src_read(f, dst, n);
    }
    if (err)
        return err;
    f->sub_left -= n;
    if (f->sub_left == 0 && f->sub_pad) {
        err = src_skip(f, f->sub_pad);
        f->sub_pad = 0;
    }
    return err;
}

static int sub_skip(mat5_file *f)
{
    uint8_t scratch[256];
    while (f->sub_left > 0) {
        int err = sub_read(f, scratch, (size_t)FM_MIN(f->sub_left, (uint64_t)sizeof scratch));
        if (err)
            return err;
    }
    return FM_OK;
}

/* Array flags, dimensions and name, in the order the format fixes. */
static int read_array_header(mat5_file *f)
{
    mat5_var *v = &f->var;
    char where[128];
    uint32_t type = 0, bytes = 0;
    uint8_t b[8];
    if (f->elem_left == 0) /* an empty miMATRIX: no flags, no name */
        return FM_OK;
    int err = sub_begin(f, "array flags", &type, &bytes);
    if (err)
        return err;
    if (type != MAT5_UINT32 || bytes != 8)
        return fmi_error(FM_EFORMAT,
                        "%s: %s: array flags are %s (type %u) of %u bytes, expected miUINT32 of 8",
                        f->path, var_label(f, where, sizeof where),
                        fmi_mat5_type_name((int)type) ? fmi_mat5_type_name((int)type) : "unknown",
                        (unsigned)type, (unsigned)bytes);
    err = sub_read(f, b, 8);
    if (err)
        return err;
    uint32_t word = get32(f, b);
    v->klass = (int)(word & 0xffu);
    v->complex = (word >> 8 & 0x08u) != 0;
    v->logical = (word >> 8 & 0x02u) != 0;
    /* Function handles and objects (classes past uint64) lay out their
     * contents differently; such variables are skipped unread. */
    if (v->klass < MAT5_CLASS_CELL || v->klass > MAT5_CLASS_UINT64)
        return FM_OK;

    err = sub_begin(f, "dimensions", &type, &bytes);
    if (err)
        return err;
    if (type != MAT5_INT32 || bytes % 4 || bytes < 8 || bytes > 4 * MAT5_MAX_DIMS)
        return fmi_error(FM_EFORMAT,
                        "%s: %s: dimensions are %s (type %u) of %u bytes, expected miINT32 "
                        "holding 2 to %d dimensions",
                        f->path, var_label(f, where, sizeof where),
                        fmi_mat5_type_name((int)type) ? fmi_mat5_type_name((int)type) : "unknown",
                        (unsigned)type, (unsigned)bytes, MAT5_MAX_DIMS);
    v->ndims = (int)(bytes / 4);
    v->numel = 1;
    for (int i = 0; i < v->ndims; i++) {
        err = sub_read(f, b, 4);
        if (err)
            return err;
        int32_t d = (int32_t)get32(f, b);
        if (d < 0)
            return fmi_error(FM_EFORMAT, "%s: %s: negative dimension %d", f->path,
                            var_label(f, where, sizeof where), (int)d);
        v->dims[i] = (uint32_t)d;
        if (v->numel == 0 || d == 0)
            v->numel = 0;
        else if ((uint64_t)d > UINT64_MAX / v->numel)
            v->numel = UINT64_MAX;
        else
            v->numel *= (uint64_t)d;
    }

    err = sub_begin(f, "name", &type, &bytes);
    if (err)
        return err;
    if (type != MAT5_INT8 && type != MAT5_UINT8 && type != MAT5_UTF8)
        return fmi_error(FM_EFORMAT, "%s: %s: its name is %s (type %u), expected miINT8 text",
                        f->path, var_label(f, where, sizeof where),
                        fmi_mat5_type_name((int)type) ? fmi_mat5_type_name((int)type) : "unknown",
                        (unsigned)type);
    if (bytes <= MAT5_MAX_NAME) {
        err = sub_read(f, (uint8_t *)v->name, bytes);
        v->name[bytes] = '\0';
        /* A name with a NUL inside is no name a caller could ask for. */
        if (!err && strlen(v->name) != bytes)
            v->name[0] = '\0';
        return err;
    }
    return sub_skip(f);
}

/* ---- public entry points ------------------------------------------------- */

int fmi_mat5_open(mat5_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    f->fd = fmi_open_input(path, 0, &f->size); /* its size bounds every element */
    if (f->fd < 0)
        return f->fd;
    f->buf = fmi_alloc_raw(MAT5_BUF);
    if (!f->buf)
        return FM_ENOMEM;
    if (f->size < MAT5_HEADER)
        return fmi_error(FM_ETRUNC, "%s: truncated MAT header (%llu of %u bytes)", path,
                        (unsigned long long)f->size, MAT5_HEADER);
    uint8_t h[MAT5_HEADER];
    int err = file_read(f, h, MAT5_HEADER);
    if (err)
        return err;
    if (h[126] == 'I' && h[127] == 'M')
        f->big = 0;
    else if (h[126] == 'M' && h[127] == 'I')
        f->big = 1;
    else
        return fmi_error(FM_EFORMAT,
                        "%s: not a level-5 MAT file: endian indicator 0x%02x 0x%02x at offset "
                        "126 (expected 'IM' or 'MI')",
                        path, h[126], h[127]);
    unsigned version = get16(f, h + 124);
    if (version == MAT5_VERSION_HDF5)
        return fmi_error(FM_EUNSUPPORTED,
                        "%s: MAT version 0x0200 (MATLAB 7.3, an HDF5 file) is not supported; "
                        "save it with -v7 or -v6",
                        path);
    if (version != MAT5_VERSION)
        return fmi_error(FM_EFORMAT, "%s: unknown MAT version 0x%04x (expected 0x0100)", path,
                        version);
    return FM_OK;
}

void fmi_mat5_close(mat5_file *f)
{
    if (f->zs_ready)
        inflateEnd(&f->zs);
    f->zs_ready = 0;
    fmi_free(f->buf);
    f->buf = NULL;
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->open = 0;
}

int fmi_mat5_next(mat5_file *f, mat5_var *var)
{
    int err = fmi_mat5_end(f, 0);
    if (err)
        return err;
    if (f->pos == f->size)
        return 0;
    uint64_t at = f->pos, left = f->size - f->pos;
    if (left < 8)
        return fmi_error(FM_ETRUNC, "%s: truncated element tag at offset %llu (%llu of 8 bytes)",
                        f->path, (unsigned long long)at, (unsigned long long)left);
    uint8_t tag[8];
    err = file_read(f, tag, 8);
    if (err)
        return err;
    left -= 8;
    uint32_t w0 = get32(f, tag), count = get32(f, tag + 4);
    /* The small form holds at most 4 bytes, so it is never a variable. */
    int small = (w0 >> 16) != 0;
    uint32_t type = small ? w0 & 0xffffu : w0;
    memset(&f->var, 0, sizeof f->var);
    f->var.offset = at;
    f->sub_left = 0;
    f->sub_sde = 0;
    f->sub_pad = 0;
    if (!small && (type == MAT5_MATRIX || type == MAT5_COMPRESSED) && count > left)
        return fmi_error(FM_ETRUNC, "%s: element at offset %llu declares %u bytes but only %llu follow",
                        f->path, (unsigned long long)at, (unsigned)count,
                        (unsigned long long)left);

    if (!small && type == MAT5_MATRIX) {
        f->in_z = 0;
        f->elem_left = count;
        /* Uncompressed data is aligned to 8 bytes; padding cut off by the end
         * of the file is not worth an error. */
        f->next = FM_MIN(at + 8 + count + pad8(count), f->size);
    } else if (!small && type == MAT5_COMPRESSED) {
        if (count == 0)
            return fmi_error(FM_EFORMAT, "%s: empty compressed element at offset %llu", f->path,
                            (unsigned long long)at);
        /* Only uncompressed data is aligned: the next tag follows at once. */
        f->next = at + 8 + count;
        f->in_z = 1;
        f->var.compressed = 1;
        f->z_left = count;
        f->z_inflated = 0;
        f->z_declared = 8;
        f->z_end = 0;
        memset(&f->zs, 0, sizeof f->zs);
        f->zs.zalloc = z_alloc;
        f->zs.zfree = z_free;
        int zr = inflateInit(&f->zs);
        if (zr != Z_OK)
            return zr == Z_MEM_ERROR ? FM_ENOMEM
                                     : fmi_error(FM_EIO, "%s: zlib: %s", f->path, zError(zr));
        f->zs_ready = 1;
        f->open = 1;
        f->elem_left = 8;
        err = src_read(f, tag, 8);
        if (err)
            return err;
        uint32_t inner = get32(f, tag), inner_count = get32(f, tag + 4);
        if (inner != MAT5_MATRIX) {
            const char *name = fmi_mat5_type_name((int)(inner & 0xffffu));
            return fmi_error(FM_EFORMAT,
                            "%s: compressed element at offset %llu holds a %s element (type "
                            "0x%08x), expected miMATRIX",
                            f->path, (unsigned long long)at, name ? name : "unknown",
                            (unsigned)inner);
        }
        if ((uint64_t)inner_count > (uint64_t)count * MAT5_MAX_RATIO)
            return fmi_error(FM_EFORMAT,
                            "%s: compressed element at offset %llu: its miMATRIX declares %u "
                            "bytes, more than %u compressed bytes can inflate to",
                            f->path, (unsigned long long)at, (unsigned)inner_count,
                            (unsigned)count);
        f->elem_left = inner_count;
        f->z_declared = 8 + (uint64_t)inner_count;
    } else {
        const char *name = fmi_mat5_type_name((int)type);
        if (name)
            return fmi_error(FM_EFORMAT,
                            "%s: %s element at offset %llu where a variable (miMATRIX or "
                            "miCOMPRESSED) must be",
                            f->path, name, (unsigned long long)at);
        return fmi_error(FM_EFORMAT, "%s: unknown element type %u at offset %llu", f->path,
                        (unsigned)type, (unsigned long long)at);
    }
    f->open = 1;
    err = read_array_header(f);
    if (err)
        return err;
    *var = f->var;
    return 1;
}

int fmi_mat5_data_begin(mat5_file *f, int *type, uint64_t *count)
{
    char where[128];
    uint32_t t = 0, bytes = 0;
    if (!f->open)
        return fmi_error(FM_EINVAL, "%s: internal: no open variable", f->path);
    int err = sub_begin(f, "real part", &t, &bytes);
    if (err)
        return err;
    size_t size = fmi_mat5_type_size((int)t);
    if (size == 0) {
        const char *name = fmi_mat5_type_name((int)t);
        return fmi_error(FM_EFORMAT, "%s: %s: its data is %s (type %u), not numbers", f->path,
                        var_label(f, where, sizeof where), name ? name : "unknown", (unsigned)t);
    }
    if (bytes % size)
        return fmi_error(FM_EFORMAT,
                        "%s: %s: its data of %u bytes is not a whole number of %zu-byte %s values",
                        f->path, var_label(f, where, sizeof where), (unsigned)bytes, size,
                        fmi_mat5_type_name((int)t));
    *type = (int)t;
    *count = bytes / size;
    return FM_OK;
}

int fmi_mat5_data_read(mat5_file *f, void *buf, size_t n)
{
    return sub_read(f, buf, n);
}

int fmi_mat5_end(mat5_file *f, int verify)
{
    if (!f->open)
        return FM_OK;
    int err = FM_OK;
    char where[128];
    if (!f->in_z) {
        err = file_skip(f, f->next - f->pos);
    } else if (!verify) {
        err = file_skip(f, f->z_left);
    } else {
        err = src_skip(f, f->elem_left);
        size_t got = 0;
        uint8_t probe;
        if (!err)
            err = z_pull(f, &probe, 1, &got);
        if (!err && got)
            err = fmi_error(FM_EFORMAT,
                           "%s: %s: inflated data runs past the %llu bytes its miMATRIX "
                           "element declares (tag included)",
                           f->path, var_label(f, where, sizeof where),
                           (unsigned long long)f->z_declared);
        if (!err && f->z_left)
            err = fmi_error(FM_EFORMAT,
                           "%s: %s: %llu bytes follow the zlib stream inside its compressed "
                           "element",
                           f->path, var_label(f, where, sizeof where),
                           (unsigned long long)f->z_left);
    }
    if (f->zs_ready)
        inflateEnd(&f->zs);
    f->zs_ready = 0;
    f->in_z = 0;
    f->open = 0;
    f->sub_left = 0;
    return err;
}
