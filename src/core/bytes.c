/* bytes.c — little-endian writer and reader, CRC-32, whole-file reading
 * (bytes.h), and fm_write_file_atomic (fewmul.h): the one tmp + fsync +
 * rename write that fewmul's file formats and the command's outputs share. */
#define _POSIX_C_SOURCE 200809L
#include "bytes.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- writing ------------------------------------------------------------- */

void fmi_put_reserve(fm_writer *w, size_t bytes)
{
    if (w->failed || w->cap - w->len >= bytes)
        return;
    if (bytes > SIZE_MAX - w->len) {
        w->failed = 1;
        return;
    }
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + bytes)
        cap = cap > SIZE_MAX / 2 ? w->len + bytes : cap * 2;
    uint8_t *grown = fmi_realloc(w->buf, cap);
    if (!grown) {
        w->failed = 1;
        return;
    }
    w->buf = grown;
    w->cap = cap;
}

void fmi_put_bytes(fm_writer *w, const void *src, size_t n)
{
    fmi_put_reserve(w, n);
    if (w->failed || n == 0)
        return;
    memcpy(w->buf + w->len, src, n);
    w->len += n;
}

void fmi_put_u32(fm_writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    fmi_put_bytes(w, b, 4);
}

void fmi_put_u64(fm_writer *w, uint64_t v)
{
    fmi_put_u32(w, (uint32_t)v);
    fmi_put_u32(w, (uint32_t)(v >> 32));
}

void fmi_put_f32(fm_writer *w, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    fmi_put_u32(w, v);
}

void fmi_put_f64(fm_writer *w, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    fmi_put_u64(w, v);
}

void fmi_put_f32s(fm_writer *w, const float *f, size_t n)
{
    if (n > SIZE_MAX / 4) {
        w->failed = 1;
        return;
    }
    fmi_put_reserve(w, 4 * n); /* one growth instead of one check per value */
    for (size_t i = 0; i < n && !w->failed; i++)
        fmi_put_f32(w, f[i]);
}

/* ---- reading ------------------------------------------------------------- */

static int truncated(const fm_reader *r, const char *what)
{
    return fmi_error(FM_ETRUNC, "%s: truncated %s (reading %s)", r->path, r->kind, what);
}

int fmi_get_bytes(fm_reader *r, void *dst, size_t n, const char *what)
{
    if (r->left < n) {
        if (n)
            memset(dst, 0, n);
        return truncated(r, what);
    }
    if (n)
        memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
    return FM_OK;
}

int fmi_get_u32(fm_reader *r, uint32_t *v, const char *what)
{
    uint8_t b[4];
    int rc = fmi_get_bytes(r, b, 4, what);
    *v = fmi_load_le32(b);
    return rc;
}

int fmi_get_u64(fm_reader *r, uint64_t *v, const char *what)
{
    uint8_t b[8];
    int rc = fmi_get_bytes(r, b, 8, what);
    *v = fmi_load_le64(b);
    return rc;
}

int fmi_get_f32(fm_reader *r, float *f, const char *what)
{
    uint32_t v;
    int rc = fmi_get_u32(r, &v, what);
    memcpy(f, &v, 4);
    return rc;
}

int fmi_get_f64(fm_reader *r, double *d, const char *what)
{
    uint64_t v;
    int rc = fmi_get_u64(r, &v, what);
    memcpy(d, &v, 8);
    return rc;
}

int fmi_get_f32s(fm_reader *r, float *f, size_t n, const char *what)
{
    if (r->left / 4 < n) {
        if (n)
            memset(f, 0, n * sizeof *f);
        return truncated(r, what);
    }
    for (size_t i = 0; i < n; i++)
        fmi_get_f32(r, &f[i], what);
    return FM_OK;
}

uint32_t fmi_crc32_update(uint32_t crc, const void *data, size_t n)
{
    const Bytef *p = data;
    uLong c = crc;
    /* zlib takes 32-bit lengths: feed it in pieces well below that */
    while (n > 0) {
        uInt piece = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, piece);
        p += piece;
        n -= piece;
    }
    return (uint32_t)c;
}

uint32_t fmi_crc32(const void *data, size_t n) { return fmi_crc32_update(0, data, n); }

/* ---- files --------------------------------------------------------------- */

int fmi_file_read_all(const char *path, size_t max_bytes, const char *kind, uint8_t **data,
                     size_t *len)
{
    return fmi_file_read_checked(path, max_bytes, kind, NULL, NULL, data, len);
}

/* The rename is durable only once the directory entry is on disk: a power
 * loss right after it could otherwise bring back the old file, or none. Best
 * effort: some file systems cannot sync a directory, and the data is safe. */
static void sync_directory(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static void record_failure(fm_write_failure *failure, fm_write_step step, int sys_errno)
{
    if (failure) {
        failure->step = step;
        failure->sys_errno = sys_errno;
    }
}

/* The first failure's reason is the one kept: later steps fail because of it. */
static int first_error(int err)
{
    return err ? err : errno ? errno : EIO;
}

int fm_write_file_atomic(const char *path, int (*fill)(FILE *f, void *user), void *user,
                         fm_write_failure *failure)
{
    record_failure(failure, FM_WRITE_STEP_NONE, 0);
    if (!path || !fill)
        return fmi_error(FM_EINVAL, "fm_write_file_atomic: no path or no fill function");
    size_t plen = strlen(path);
    char *tmp = fmi_alloc_raw(plen + 5);
    if (!tmp)
        return FM_ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int err = errno;
        record_failure(failure, FM_WRITE_STEP_CREATE, err);
        int rc = fmi_error(FM_EIO, "%s: cannot create: %s", tmp, strerror(err));
        fmi_free(tmp);
        return rc;
    }
    errno = 0;
    int err = fill(f, user);
    if (!err && ferror(f))
        err = first_error(0);
    if (fflush(f) != 0)
        err = first_error(err);
    /* EINVAL: a special file, which cannot be synced; what it took is gone */
    if (fsync(fileno(f)) != 0 && errno != EINVAL)
        err = first_error(err);
    if (fclose(f) != 0)
        err = first_error(err);
    if (err) {
        remove(tmp);
        record_failure(failure, FM_WRITE_STEP_WRITE, err);
        int rc = fmi_error(FM_EIO, "%s: write failed: %s", tmp, strerror(err));
        fmi_free(tmp);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        record_failure(failure, FM_WRITE_STEP_RENAME, err);
        int rc = fmi_error(FM_EIO, "%s: cannot rename into place: %s", path, strerror(err));
        remove(tmp);
        fmi_free(tmp);
        return rc;
    }
    fmi_free(tmp);
    sync_directory(path);
    return FM_OK;
}

typedef struct byte_span {
    const void *data;
    size_t len;
} byte_span;

static int write_span(FILE *f, void *user)
{
    const byte_span *span = user;
    return fwrite(span->data, 1, span->len, f) == span->len ? 0 : first_error(0);
}

int fmi_file_write_atomic(const char *path, const void *data, size_t len)
{
    byte_span span = {data, len};
    return fm_write_file_atomic(path, write_span, &span, NULL);
}
