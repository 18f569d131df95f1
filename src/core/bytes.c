/* bytes.c — little-endian writer and reader, CRC-32, whole-file reading
 * (bytes.h), and fm_write_file_atomic (fewmul.h): the one write that fewmul's
 * file formats and the command's outputs share: a temporary file of an
 * unpredictable name created O_EXCL beside the target, fsynced and renamed
 * over it, never over anything but a regular file (fm_check_output); and
 * fmi_write_files_atomic, the same for files that belong together, all
 * written before any is renamed. */
#define _POSIX_C_SOURCE 200809L
#include "bytes.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#ifdef __linux__
#include <sys/random.h>
#endif

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
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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

/* "a character device": what a file that is not a regular one is, in a message. */
static const char *file_kind(mode_t mode)
{
    return S_ISDIR(mode)    ? "a directory"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISFIFO(mode) ? "a FIFO"
           : S_ISSOCK(mode) ? "a socket"
                            : "a special file";
}

int fm_check_output(const char *path)
{
    if (!path)
        return fmi_error(FM_EINVAL, "fm_check_output: no path");
    struct stat st, to;
    if (lstat(path, &st) != 0 || S_ISREG(st.st_mode))
        return FM_OK; /* nothing there, or unreachable: creating the file says why */
    if (!S_ISLNK(st.st_mode))
        return fmi_error(FM_EIO, "'%s' is %s, not a regular file; fewmul replaces only regular "
                                 "files", path, file_kind(st.st_mode));
    /* the rename replaces the link itself, never what it leads to; a link to
     * a device or a folder is refused all the same, as what it stands for */
    if (stat(path, &to) != 0 || S_ISREG(to.st_mode))
        return FM_OK;
    return fmi_error(FM_EIO, "'%s' is a symbolic link to %s, not to a regular file; fewmul "
                             "replaces only regular files", path, file_kind(to.st_mode));
}

/* 64 bits no other process can guess: the kernel's, else (never on Linux
 * since 3.17) the clock, the pid and a counter mixed. The name they make is
 * created with O_EXCL, so a guess costs an attacker nothing but a retry. */
static uint64_t random_bits(void)
{
    uint64_t r;
#ifdef __linux__
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r)
        return r;
#endif
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 40 ^
        (uint64_t)++counter << 20 ^ (uint64_t)(uintptr_t)&r;
    /* splitmix64's finalizer */
    r = (r ^ (r >> 30)) * 0xbf58476d1ce4e5b9u;
    r = (r ^ (r >> 27)) * 0x94d049bb133111ebu;
    return r ^ (r >> 31);
}

#define TMP_SUFFIX ".tmp."
#define TMP_RANDOM 10 /* letters and digits: 62^10, about 2^59 names */

/* Creates PATH.tmp.XXXXXXXXXX, the X random, beside path: O_EXCL, so that
 * nothing planted at the name (a symbolic link, a hard link to another file)
 * is ever opened, and mode 0666 less the umask, as fopen would. Returns the
 * descriptor, or -1 with errno. */
static int create_tmp(char *tmp, size_t plen)
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char *x = tmp + plen + sizeof TMP_SUFFIX - 1;
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t r = random_bits();
        for (int i = 0; i < TMP_RANDOM; i++, r /= 62)
            x[i] = letters[r % 62];
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1; /* errno EEXIST: a hundred names taken */
}

/* A file being written: its target, its temporary file beside it, and the
 * stream left open when the caller keeps it. */
typedef struct staged_file {
    const char *path;
    char *tmp;
    FILE *f;
} staged_file;

/* The first half of an atomic write: the temporary file beside s->path
 * created, filled, flushed, synced and closed (left open in s->f with keep).
 * On failure it is removed and FM_EIO (or FM_ENOMEM) returned. */
static int stage(staged_file *s, int (*fill)(FILE *f, void *user), void *user,
                 fm_write_failure *failure, int keep)
{
    const char *path = s->path;
    size_t plen = strlen(path);
    char *tmp = fmi_alloc_raw(plen + sizeof TMP_SUFFIX + TMP_RANDOM);
    if (!tmp)
        return FM_ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, TMP_SUFFIX, sizeof TMP_SUFFIX - 1);
    tmp[plen + sizeof TMP_SUFFIX - 1 + TMP_RANDOM] = '\0';
    int fd = create_tmp(tmp, plen);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        int err = errno;
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        fmi_free(tmp);
        record_failure(failure, FM_WRITE_STEP_CREATE, err);
        return fmi_error(FM_EIO, "%s: cannot create a temporary file beside it: %s", path,
                        strerror(err));
    }
    errno = 0;
    int err = fill(f, user);
    if (!err && ferror(f))
        err = first_error(0);
    if (fflush(f) != 0)
        err = first_error(err);
    /* EINVAL: a file system that cannot sync; the data is written */
    if (fsync(fileno(f)) != 0 && errno != EINVAL)
        err = first_error(err);
    if (!keep && fclose(f) != 0)
        err = first_error(err);
    if (err) {
        record_failure(failure, FM_WRITE_STEP_WRITE, err);
        fmi_error(FM_EIO, "%s: write failed: %s", path, strerror(err));
        if (keep)
            fclose(f);
        unlink(tmp);
        fmi_free(tmp);
        return FM_EIO;
    }
    s->tmp = tmp;
    s->f = keep ? f : NULL;
    return FM_OK;
}

/* Drops a staged file that will not be renamed. */
static void unstage(staged_file *s)
{
    if (s->f)
        fclose(s->f);
    if (s->tmp) {
        unlink(s->tmp);
        fmi_free(s->tmp);
    }
    s->f = NULL;
    s->tmp = NULL;
}

/* The second half: the temporary file renamed over the target, and the
 * folder synced; on failure it is removed. */
static int commit(staged_file *s, fm_write_failure *failure)
{
    if (rename(s->tmp, s->path) != 0) {
        int err = errno;
        record_failure(failure, FM_WRITE_STEP_RENAME, err);
        fmi_error(FM_EIO, "%s: cannot rename into place: %s", s->path, strerror(err));
        unstage(s);
        return FM_EIO;
    }
    fmi_free(s->tmp);
    s->tmp = NULL;
    sync_directory(s->path);
    return FM_OK;
}

/* fm_write_file_atomic and fm_write_file_atomic_open: the file is left open
 * in *keep when keep is not NULL. */
static int write_atomic(const char *path, int (*fill)(FILE *f, void *user), void *user,
                        fm_write_failure *failure, FILE **keep)
{
    record_failure(failure, FM_WRITE_STEP_NONE, 0);
    if (keep)
        *keep = NULL;
    if (!path || !fill)
        return fmi_error(FM_EINVAL, "fm_write_file_atomic: no path or no fill function");
    if (fm_check_output(path) != FM_OK) {
        record_failure(failure, FM_WRITE_STEP_TARGET, 0);
        return FM_EIO;
    }
    staged_file s = {path, NULL, NULL};
    int rc = stage(&s, fill, user, failure, keep != NULL);
    if (rc == FM_OK)
        rc = commit(&s, failure);
    if (rc == FM_OK && keep)
        *keep = s.f;
    return rc;
}

int fm_write_file_atomic(const char *path, int (*fill)(FILE *f, void *user), void *user,
                         fm_write_failure *failure)
{
    return write_atomic(path, fill, user, failure, NULL);
}

int fm_write_file_atomic_open(const char *path, int (*fill)(FILE *f, void *user), void *user,
                              fm_write_failure *failure, FILE **f)
{
    if (!f)
        return fmi_error(FM_EINVAL, "fm_write_file_atomic_open: no FILE pointer");
    return write_atomic(path, fill, user, failure, f);
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

/* fill(f, user, index) as stage() calls a fill function. */
typedef struct indexed_fill {
    int (*fill)(FILE *f, void *user, int index);
    void *user;
    int index;
} indexed_fill;

static int fill_indexed(FILE *f, void *user)
{
    const indexed_fill *job = user;
    return job->fill(f, job->user, job->index);
}

int fmi_write_files_atomic(int n, const char *const *paths,
                           int (*fill)(FILE *f, void *user, int index), void *user)
{
    staged_file s[FMI_ATOMIC_FILES_MAX];
    if (n < 1 || n > FMI_ATOMIC_FILES_MAX || !paths || !fill)
        return fmi_error(FM_EINVAL, "fmi_write_files_atomic: %d files", n);
    for (int i = 0; i < n; i++)
        if (fm_check_output(paths[i]) != FM_OK)
            return FM_EIO;
    int rc = FM_OK, staged = 0;
    for (; staged < n && rc == FM_OK; staged++) {
        s[staged] = (staged_file){paths[staged], NULL, NULL};
        indexed_fill job = {fill, user, staged};
        rc = stage(&s[staged], fill_indexed, &job, NULL, 0);
    }
    for (int i = 0; i < staged; i++)
        if (rc != FM_OK)
            unstage(&s[i]);
        else if ((rc = commit(&s[i], NULL)) != FM_OK)
            for (int j = i + 1; j < staged; j++)
                unstage(&s[j]);
    return rc;
}
