/* bytes.h — what fewmul's binary file formats share: a growing little-endian
 * byte writer, a bounds-checked little-endian reader, CRC-32 over buffers of
 * any length, reading a whole regular file with a size cap, and the atomic
 * write (a temporary file of an unpredictable name, flushed, fsynced and
 * renamed) that never damages an existing file. Used by the training model
 * file, the packed model file and the checkpoint. */
#ifndef FEWMUL_BYTES_H
#define FEWMUL_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- writing ------------------------------------------------------------- */

/* Appends to buf, growing it through fmi_realloc. After an allocation failure
 * every further put is ignored and `failed` stays set, so a serializer checks
 * once at the end. */
typedef struct fm_writer {
    uint8_t *buf;
    size_t len, cap;
    int failed;
} fm_writer;

/* Makes room for `bytes` more without further growth (sets failed on failure). */
void fmi_put_reserve(fm_writer *w, size_t bytes);
void fmi_put_bytes(fm_writer *w, const void *src, size_t n);
void fmi_put_u32(fm_writer *w, uint32_t v);
void fmi_put_u64(fm_writer *w, uint64_t v);
void fmi_put_f32(fm_writer *w, float f);
void fmi_put_f64(fm_writer *w, double d);
void fmi_put_f32s(fm_writer *w, const float *f, size_t n);

/* ---- reading ------------------------------------------------------------- */

/* Reads forward through `left` bytes at p. A read past the end fails with
 * FM_ETRUNC "PATH: truncated KIND (reading WHAT)" and leaves the reader where it
 * was; the destination is then zeroed. */
typedef struct fm_reader {
    const uint8_t *p;
    size_t left;
    const char *path; /* names the file in messages */
    const char *kind; /* "model file" */
} fm_reader;

int fmi_get_bytes(fm_reader *r, void *dst, size_t n, const char *what);
int fmi_get_u32(fm_reader *r, uint32_t *v, const char *what);
int fmi_get_u64(fm_reader *r, uint64_t *v, const char *what);
int fmi_get_f32(fm_reader *r, float *f, const char *what);
int fmi_get_f64(fm_reader *r, double *d, const char *what);
int fmi_get_f32s(fm_reader *r, float *f, size_t n, const char *what);

/* Little-endian values at a byte address, without bounds checks. */
static inline uint32_t fmi_load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t fmi_load_le64(const uint8_t *p)
{
    return (uint64_t)fmi_load_le32(p + 4) << 32 | fmi_load_le32(p);
}

/* zlib's CRC-32 of n bytes (any n: zlib's length argument is only 32 bits),
 * and the CRC of more bytes following those a crc was computed over. */
uint32_t fmi_crc32(const void *data, size_t n);
uint32_t fmi_crc32_update(uint32_t crc, const void *data, size_t n);

/* ---- files --------------------------------------------------------------- */

/* Reads the whole of a regular file of at most max_bytes into a new buffer
 * (freed with fmi_free; one byte is allocated even for an empty file).
 * FM_ENOENT when missing, FM_EIO when unreadable or not a regular file,
 * FM_EFORMAT "PATH: N bytes is larger than any KIND" past max_bytes. */
int fmi_file_read_all(const char *path, size_t max_bytes, const char *kind, uint8_t **data,
                     size_t *len);

/* fm_open_input (fewmul.h), which also gives the size of a regular file
 * (UINT64_MAX for a pipe or FIFO, accepted when streams is not 0). */
int fmi_open_input(const char *path, int streams, uint64_t *size);

/* A file being read by fmi_file_read_checked: its descriptor and size, and
 * the path and kind ("model file") that messages name. */
typedef struct fmi_file_head {
    int fd;
    uint64_t size;
    const char *path;
    const char *kind;
} fmi_file_head;

/* Reads n bytes at offset `at` of the file; FM_ETRUNC "PATH: truncated KIND
 * (reading WHAT at offset N of M bytes)" when they are not all there. */
int fmi_head_read(const fmi_file_head *h, uint64_t at, void *dst, size_t n, const char *what);

/* fmi_file_read_all, but a file larger than fmi_read_whole_max is first given
 * to check_head, which reads what it needs (fmi_head_read) and refuses the
 * file, with a code and a message, when its fields are out of range or the
 * size they declare is not the file's: nothing the size of the file is
 * allocated or read before. A smaller file is read whole at once, so that the
 * format's own reader checks its CRC first. */
int fmi_file_read_checked(const char *path, size_t max_bytes, const char *kind,
                          int (*check_head)(const fmi_file_head *head, void *user), void *user,
                          uint8_t **data, size_t *len);

/* 16 MiB; a test sets it to 0 to put every file through its head check. */
extern size_t fmi_read_whole_max;

/* fm_write_file_atomic (fewmul.h) of len bytes: a temporary file beside path
 * written, flushed, fsynced and renamed over path. On any failure the
 * temporary file is removed, an existing file at path is left as it was, and
 * FM_EIO names the step and the system's reason; anything at path but a
 * regular file is refused (fm_check_output). */
int fmi_file_write_atomic(const char *path, const void *data, size_t len);

/* Several files written as one, for outputs that belong together (the C
 * export's header and source): each as fm_write_file_atomic writes it, but
 * every temporary file is created, filled, flushed and synced before the
 * first rename, so that any failure until then (a full disk, an allocation,
 * fm_check_output's refusal of any path) leaves every existing file as it
 * was. Only a failed rename, after the first, leaves the files renamed
 * before it new. fill(f, user, i) writes file i (returns 0 or an errno
 * value, as for fm_write_file_atomic). At most FMI_ATOMIC_FILES_MAX files. */
#define FMI_ATOMIC_FILES_MAX 8
int fmi_write_files_atomic(int n, const char *const *paths,
                           int (*fill)(FILE *f, void *user, int index), void *user);

#endif
