/* fuzz_idx.c — libFuzzer target for the IDX reader, fm_idx_read(images,
 * labels) (docs/data.md, "IDX files"), raw and gzip.
 *
 * An input is a 4-byte header and two files:
 *
 *   byte 0     flags: bit 0 gzip the image part, bit 1 gzip the label part,
 *              bit 2 write each gzipped part as two gzip members back to back,
 *              bit 3 hand the images over through a pipe (/dev/fd/N) instead
 *              of a file, bit 4 the labels: no size known in advance
 *   byte 1     zlib level, modulo 10 (0: stored blocks)
 *   bytes 2..3 u16 little-endian: length of the image part (clipped to what
 *              is there)
 *   then       the image part, then the label part (the rest)
 *
 * Each part is written to a file in a private tmpfs directory (or a pipe),
 * compressed by the harness first where its flag says so: the fuzzer then reaches the gzip
 * path with valid streams of any content, while a part that itself starts
 * with 1f 8b reaches it with raw corruption. The reader must accept or refuse
 * every input with a documented result: a negative code and a zeroed output,
 * or images whose sizes and labels are right, and a refusal's message names
 * the file; nothing may crash, leak, or ask
 * for memory the bytes present do not justify (fuzz_support.h). Each input is
 * read a second time with one allocation failing, which must be FM_ENOMEM.
 * Built and run by tests/fuzz/run.sh. */
#include "fuzz_support.h"

#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* gzip of n bytes into a malloc'd buffer, as one member or two. */
static uint8_t *gzip(const uint8_t *p, size_t n, int level, int members, size_t *out_len)
{
    size_t cap = 64;
    size_t part[2] = {members == 2 ? n / 2 : n, members == 2 ? n - n / 2 : 0};
    for (int m = 0; m < members; m++)
        cap += compressBound((uLong)part[m]) + 32;
    uint8_t *out = malloc(cap);
    if (!out)
        abort();
    size_t len = 0;
    for (int m = 0; m < members; m++) {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            abort();
        zs.next_in = (Bytef *)(uintptr_t)p;
        zs.avail_in = (uInt)part[m];
        zs.next_out = out + len;
        zs.avail_out = (uInt)(cap - len);
        if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
            abort();
        len += zs.total_out;
        deflateEnd(&zs);
        p += part[m];
    }
    *out_len = len;
    return out;
}

typedef struct job {
    const char *images, *labels;
    size_t image_bytes, label_bytes; /* sizes of the (inflated) files when known, else 0 */
    const uint8_t *pipe_data[2];     /* parts handed over through a pipe, else NULL */
    size_t pipe_len[2];
} job;

/* A pipe holding n bytes, its write end closed: /dev/fd/N of its read end
 * opens without waiting and reads the bytes, then end of file. */
static int pipe_with(const uint8_t *p, size_t n, char *path, size_t size)
{
    int fd[2];
    if (pipe(fd) != 0)
        abort();
    while (n > 0) { /* at most max_len plus gzip's overhead: fits a pipe's 64 KiB */
        ssize_t w = write(fd[1], p, n);
        if (w <= 0)
            abort();
        p += w;
        n -= (size_t)w;
    }
    close(fd[1]);
    snprintf(path, size, "/dev/fd/%d", fd[0]);
    return fd[0];
}

static int read_once(void *ctx)
{
    job j = *(const job *)ctx;
    char pipe_path[2][64];
    int pipe_fd[2] = {-1, -1};
    for (int k = 0; k < 2; k++)
        if (j.pipe_data[k]) {
            pipe_fd[k] = pipe_with(j.pipe_data[k], j.pipe_len[k], pipe_path[k], sizeof pipe_path[k]);
            *(k ? &j.labels : &j.images) = pipe_path[k];
        }
    fm_images im;
    memset(&im, 0xa5, sizeof im);
    int rc = fm_idx_read(j.images, j.labels, &im);
    for (int k = 0; k < 2; k++)
        if (pipe_fd[k] >= 0)
            close(pipe_fd[k]);
    if (rc != FM_OK) {
        fm_images zero;
        memset(&zero, 0, sizeof zero);
        if (rc >= 0 || memcmp(&im, &zero, sizeof im) != 0)
            abort(); /* a failure is a negative code and a zeroed output */
        /* the message begins with the file it is about (the images for a
         * count mismatch) */
        if (strncmp(fm_last_error(), j.labels, strlen(j.labels)) != 0)
            fz_check_message(rc, j.images, 0);
        return rc;
    }
    if (im.count < 1 || im.height < 1 || im.height > 4096 || im.width < 1 || im.width > 4096 ||
        im.channels != 1 || !im.pixels || !im.labels)
        abort();
    size_t pixels = (size_t)im.count * (size_t)im.height * (size_t)im.width;
    if ((j.image_bytes && j.image_bytes != 16 + pixels) ||
        (j.label_bytes && j.label_bytes != 8 + (size_t)im.count))
        abort(); /* a raw file holds exactly its header and data */
    for (int32_t i = 0; i < im.count; i++)
        if (im.labels[i] > 9)
            abort();
    volatile uint8_t sink = im.pixels[0] ^ im.pixels[pixels - 1]; /* the buffer is that big */
    (void)sink;
    fm_images_free(&im);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    unsigned flags = data[0], level = data[1] % 10u;
    size_t split = (size_t)data[2] | (size_t)data[3] << 8;
    data += 4;
    size -= 4;
    if (split > size)
        split = size;
    const uint8_t *part[2] = {data, data + split};
    size_t len[2] = {split, size - split};

    job j = {fz_path("images"), fz_path("labels"), 0, 0, {NULL, NULL}, {0, 0}};
    uint8_t *packed[2] = {NULL, NULL};
    const char *path[2] = {j.images, j.labels};
    size_t *raw[2] = {&j.image_bytes, &j.label_bytes};
    for (int k = 0; k < 2; k++) {
        const uint8_t *bytes = part[k];
        size_t n = len[k];
        if (flags >> k & 1u) {
            packed[k] = gzip(part[k], len[k], (int)level, flags & 4u ? 2 : 1, &n);
            bytes = packed[k];
            *raw[k] = len[k]; /* what inflates */
        } else if (!(len[k] >= 2 && part[k][0] == 0x1f && part[k][1] == 0x8b)) {
            *raw[k] = len[k];
        }
        if (flags >> (3 + k) & 1u) {
            j.pipe_data[k] = bytes;
            j.pipe_len[k] = n;
        } else {
            fz_write(path[k], bytes, n);
        }
    }
    fz_run_twice(data, size, read_once, &j);
    free(packed[0]);
    free(packed[1]);
    return 0;
}
